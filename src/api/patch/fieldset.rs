//! Field paths and sets of field paths, as used by server-side apply to
//! record who owns what.
//!
//! Owns [`PathElement`] (a struct field `f:`, an associative-list item by
//! key `k:`, a set value `v:` or a list index `i:`), [`FieldSet`] (a tree of
//! owned paths with union / difference / intersection), the `FieldsV1` JSON
//! encoding stored in `metadata.managedFields[].fieldsV1`, and the
//! human-readable path syntax used in conflict messages
//! (`.spec.template.spec.containers[name="nginx"].image`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
///
/// The derived order (fields, then keys, then values, then indexes) is the
/// order in which `FieldsV1` lists entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A named field of a struct or a key of a map.
    Field(String),
    /// An associative-list item, identified by the canonical JSON object of
    /// its key fields (sorted by name), e.g. `{"containerPort":80,"protocol":"TCP"}`.
    Key(String),
    /// A set item, identified by its canonical JSON value.
    Value(String),
    /// A list item by position (lists without keys).
    Index(usize),
}

/// A field path from the object root.
pub type Path = Vec<PathElement>;

/// Canonical JSON text: object keys sorted, integral floats written as
/// integers, so that equal values always produce equal text.
pub fn canonical_json(v: &Value) -> String {
    fn canon(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), canon(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
            Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => v.clone(),
            },
            other => other.clone(),
        }
    }
    canon(v).to_string()
}

impl PathElement {
    /// Associative-list element from the key fields of an item.
    pub fn key(fields: &[(&str, &Value)]) -> PathElement {
        let obj: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect();
        PathElement::Key(canonical_json(&Value::Object(obj)))
    }

    /// Set element for a scalar value.
    pub fn value(v: &Value) -> PathElement {
        PathElement::Value(canonical_json(v))
    }

    /// The `FieldsV1` key for this element (`f:name`, `k:{...}`, `v:...`, `i:0`).
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(n) => format!("f:{n}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key.
    pub fn decode(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_at_checked(2)?;
        match kind {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                v.is_object().then(|| PathElement::Key(canonical_json(&v)))
            }
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| PathElement::Value(canonical_json(&v))),
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

impl fmt::Display for PathElement {
    /// Path syntax of kube conflict messages: `.name`, `[k="v",n=1]`,
    /// `[="value"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(k) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(k) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![k.clone()],
                };
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path the way kube-apiserver prints it in conflict messages.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, stored as a tree.
///
/// A path is a *member* when it is owned itself (a leaf, a list item, ...);
/// children hold the owned paths below it. Empty child sets are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no path is in the set.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` as a member. The empty path (the root) is never stored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` itself is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `pe` is a member at this level.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, if any.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let d = match other.children.get(pe) {
                    Some(o) => c.difference(o),
                    None => c.clone(),
                };
                (!d.is_empty()).then(|| (pe.clone(), d))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let o = other.children.get(pe)?;
                let i = c.intersection(o);
                (!i.is_empty()).then(|| (pe.clone(), i))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Removes every member of `other` from `self` together with everything
    /// below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !other.members.contains(pe))
            .filter_map(|(pe, c)| {
                let d = match other.children.get(pe) {
                    Some(o) => c.recursive_difference(o),
                    None => c.clone(),
                };
                (!d.is_empty()).then(|| (pe.clone(), d))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Keeps only the paths below the top-level field `name`.
    pub fn only_under(&self, pe: &PathElement) -> FieldSet {
        let mut out = FieldSet::new();
        if self.members.contains(pe) {
            out.members.insert(pe.clone());
        }
        if let Some(c) = self.children.get(pe) {
            out.children.insert(pe.clone(), c.clone());
        }
        out
    }

    /// The same set where every named field that has owned paths below it is
    /// also a member, so that a field is only considered unowned when nothing
    /// inside it is owned.
    pub fn with_field_parents(&self) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        for (pe, c) in &self.children {
            if matches!(pe, PathElement::Field(_)) {
                out.members.insert(pe.clone());
            }
            out.children.insert(pe.clone(), c.with_field_parents());
        }
        out
    }

    /// All member paths, depth first in `FieldsV1` order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Encodes the set as `FieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.encode())
    }

    fn encode(&self) -> Map<String, Value> {
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        keys.into_iter()
            .map(|pe| {
                let mut node = Map::new();
                if let Some(c) = self.children.get(pe) {
                    if self.members.contains(pe) {
                        node.insert(".".to_string(), Value::Object(Map::new()));
                    }
                    node.extend(c.encode());
                }
                (pe.encode(), Value::Object(node))
            })
            .collect()
    }

    /// Decodes `FieldsV1` JSON; the error names the offending key.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else {
            return Err(format!("expected a JSON object, got {v}"));
        };
        let mut out = FieldSet::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k).ok_or_else(|| format!("invalid path element {k:?}"))?;
            let Value::Object(cm) = child else {
                return Err(format!("value of {k:?} must be an object"));
            };
            if cm.is_empty() || cm.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let c = FieldSet::from_fields_v1(child)?;
            if !c.is_empty() {
                out.children.insert(pe, c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(n: &str) -> PathElement {
        PathElement::Field(n.to_string())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}},
                "f:finalizers": {"v:\"a\"": {}},
                "f:ports": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}
            }
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        let ctr = PathElement::key(&[("name", &json!("nginx"))]);
        assert!(set.has(&[f("spec"), f("containers"), ctr.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), ctr.clone(), f("image")]));
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("spec")]));
        let out = set.to_fields_v1();
        // Keys of associative items are canonicalised (sorted).
        assert!(out["f:spec"]["f:ports"]
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some());
        assert_eq!(out["f:metadata"], v["f:metadata"]);
        let first: Vec<&String> = out["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(first, [".", "f:image", "f:name"]);
        assert_eq!(FieldSet::from_fields_v1(&out).unwrap(), set);
        assert!(FieldSet::from_fields_v1(&json!({"x:1": {}})).is_err());
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata"), f("labels"), f("x")]);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![vec![f("spec"), f("replicas")]]
        );
        assert_eq!(a.difference(&b).paths(), vec![vec![f("spec"), f("paused")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        let mut spec = FieldSet::new();
        spec.insert(&[f("spec")]);
        assert_eq!(a.union(&b).recursive_difference(&spec).paths().len(), 1);
        assert!(a.with_field_parents().has(&[f("spec")]));
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn path_display() {
        let p = vec![
            f("spec"),
            f("containers"),
            PathElement::key(&[("name", &json!("nginx"))]),
            f("ports"),
            PathElement::key(&[("containerPort", &json!(80)), ("protocol", &json!("TCP"))]),
        ];
        assert_eq!(
            path_string(&p),
            ".spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            path_string(&[
                f("metadata"),
                f("finalizers"),
                PathElement::value(&json!("x"))
            ]),
            ".metadata.finalizers[=\"x\"]"
        );
        assert_eq!(
            canonical_json(&json!({"b": 1.0, "a": [2.5]})),
            "{\"a\":[2.5],\"b\":1}"
        );
    }
}
