//! Field selectors (`fieldSelector=` on list and watch), evaluated over the stored JSON
//! form of objects.
//!
//! Which field labels a kind accepts, and the error for one it does not, follow
//! kube-apiserver: every kind takes `metadata.name` and `metadata.namespace`, a few
//! kinds add their own (`spec.nodeName` on pods, `involvedObject.*` on events, …) and
//! then reject anything else with `field label not supported: <label>`. Selecting on
//! a field the object does not carry compares against the empty string, as kube's
//! field sets do.
//!
//! The syntax is apimachinery's: comma-separated `field=value`, `field==value` or
//! `field!=value` terms, where a value escapes `\`, `,` and `=` with a backslash.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

/// A field selector that cannot be parsed, or names a field its kind does not offer.
/// Every variant is a `400 BadRequest` for the API layer; the message is kube's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldSelectorError {
    /// A term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` inside a value (kube prints the code point).
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedChar(u32),
    /// A field label the kind does not support.
    #[error("{message}")]
    UnsupportedField { field: String, message: String },
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// True for `!=`.
    pub not_equal: bool,
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.not_equal { "!=" } else { "=" };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A parsed field selector: all terms must hold. The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parse `metadata.name=x,status.phase!=Running`. Terms are kept in sorted
    /// order, as apimachinery keeps them (it also decides which error comes first).
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                value: unescape_value(rhs)?,
                not_equal: op == "!=",
            });
        }
        Ok(FieldSelector { terms })
    }

    /// A selector from already-split terms (controllers building one in code).
    pub fn from_terms(mut terms: Vec<FieldTerm>) -> Self {
        terms.sort_by_key(|t| t.to_string());
        FieldSelector { terms }
    }

    /// True when the selector has no terms and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The name this selector pins with `metadata.name=<name>` (as `kubectl get
    /// pod x --watch` sends), if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.requires_exact_match("metadata.name")
    }

    /// The value a `field=value` term demands of `field`, if there is one.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.not_equal && t.field == field)
            .map(|t| t.value.as_str())
    }

    /// Check every term names a field the kind supports, without an object at hand
    /// (so an invalid selector fails even on an empty list).
    pub fn validate(&self, group: &str, kind: &str) -> Result<(), FieldSelectorError> {
        for term in &self.terms {
            supported_field(group, kind, &term.field)?;
        }
        Ok(())
    }

    /// Whether the object satisfies every term; an unsupported field is an error.
    pub fn matches(
        &self,
        group: &str,
        kind: &str,
        obj: &Value,
    ) -> Result<bool, FieldSelectorError> {
        self.matches_set(group, kind, &FieldSet::of(group, kind, obj))
    }

    /// Like [`FieldSelector::matches`], over the field set the cache took of the object.
    pub fn matches_set(
        &self,
        group: &str,
        kind: &str,
        set: &FieldSet,
    ) -> Result<bool, FieldSelectorError> {
        let mut all = true;
        for term in &self.terms {
            let equal = set.get(supported_field(group, kind, &term.field)?) == term.value;
            if equal == term.not_equal {
                all = false;
            }
        }
        Ok(all)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// The value kube's field set holds for `field` on this object: `Ok(Some(_))` for a
/// field the kind offers (the empty string, `0` or `false` where the object leaves it
/// unset), `Ok(None)` for a label kube accepts but never fills (`status.podIPs`; it
/// compares as the empty string), and an error for a label the kind rejects.
pub fn field_value(
    group: &str,
    kind: &str,
    obj: &Value,
    field: &str,
) -> Result<Option<String>, FieldSelectorError> {
    let field = supported_field(group, kind, field)?;
    let text = |path: &[&str]| Some(string_at(obj, path));
    Ok(match field {
        "metadata.name" => text(&["metadata", "name"]),
        "metadata.namespace" => text(&["metadata", "namespace"]),
        _ => match (group, kind) {
            ("", "Pod") => pod_field(obj, field),
            ("", "Event") => match field {
                "source" => {
                    let component = string_at(obj, &["source", "component"]);
                    if component.is_empty() {
                        text(&["reportingComponent"])
                    } else {
                        Some(component)
                    }
                }
                _ => {
                    let path: Vec<&str> = field.split('.').collect();
                    text(&path)
                }
            },
            ("events.k8s.io", "Event") => {
                let path: Vec<&str> = field.split('.').collect();
                text(&path)
            }
            ("", "Node") => Some(bool_at(obj, &["spec", "unschedulable"]).to_string()),
            ("", "Namespace") => text(&["status", "phase"]),
            ("", "Secret") => text(&["type"]),
            ("", "Service") => match field {
                "spec.clusterIP" => text(&["spec", "clusterIP"]),
                _ => text(&["spec", "type"]),
            },
            ("", "ReplicationController") | ("apps", "ReplicaSet") => {
                Some(int_at(obj, &["status", "replicas"]).to_string())
            }
            ("batch", "Job") => Some(int_at(obj, &["status", "succeeded"]).to_string()),
            ("certificates.k8s.io", "CertificateSigningRequest") => text(&["spec", "signerName"]),
            _ => None,
        },
    })
}

fn pod_field(obj: &Value, field: &str) -> Option<String> {
    let text = |path: &[&str]| Some(string_at(obj, path));
    match field {
        "spec.nodeName" => text(&["spec", "nodeName"]),
        "spec.restartPolicy" => text(&["spec", "restartPolicy"]),
        "spec.schedulerName" => text(&["spec", "schedulerName"]),
        "spec.serviceAccountName" => text(&["spec", "serviceAccountName"]),
        "spec.hostNetwork" => Some(bool_at(obj, &["spec", "hostNetwork"]).to_string()),
        "status.phase" => text(&["status", "phase"]),
        "status.nominatedNodeName" => text(&["status", "nominatedNodeName"]),
        "status.podIP" => {
            let first = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            Some(match first {
                Some(ip) => ip.to_string(),
                None => string_at(obj, &["status", "podIP"]),
            })
        }
        _ => None,
    }
}

/// Resolve a field label to the one the kind's field set uses, or reject it with
/// kube-apiserver's message for that kind.
fn supported_field<'a>(
    group: &str,
    kind: &str,
    field: &'a str,
) -> Result<&'a str, FieldSelectorError> {
    if (group, kind) == ("", "Pod") && field == "spec.host" {
        return Ok("spec.nodeName");
    }
    let labels = field_labels(group, kind);
    if labels.unwrap_or(METADATA_ONLY).contains(&field) {
        return Ok(field);
    }
    let message = match (group, kind, labels) {
        ("batch", "Job", _) => format!("field label \"{field}\" not supported for batchv1.Job"),
        (_, _, None) => format!(
            "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ),
        _ => format!("field label not supported: {field}"),
    };
    Err(FieldSelectorError::UnsupportedField {
        field: field.to_string(),
        message,
    })
}

/// What every kind's field set holds.
const METADATA_ONLY: &[&str] = &["metadata.name", "metadata.namespace"];

/// The field labels of a kind that adds its own to [`METADATA_ONLY`] (`None` for the
/// kinds that offer only those two).
fn field_labels(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["metadata.name", "spec.unschedulable"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("", "Namespace") => &["status.phase", "metadata.name"],
        ("", "Secret") => &["type", "metadata.namespace", "metadata.name"],
        ("", "Service") => &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        ("batch", "Job") => &["metadata.name", "metadata.namespace", "status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &["metadata.name", "spec.signerName"]
        }
        _ => return None,
    })
}

/// The field values of one object, taken once when it enters the watch cache (as
/// kube-apiserver's cacher keeps them), so selectors are tested without the object.
/// Only non-empty values are kept; a missing label compares as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    values: Box<[(&'static str, Box<str>)]>,
}

impl FieldSet {
    /// The field set of `obj`, a `group`/`kind` object in its stored form.
    pub fn of(group: &str, kind: &str, obj: &Value) -> FieldSet {
        let labels = field_labels(group, kind).unwrap_or(METADATA_ONLY);
        let values = labels
            .iter()
            .filter_map(|label| {
                let value = field_value(group, kind, obj, label).ok()??;
                (!value.is_empty()).then(|| (*label, value.into_boxed_str()))
            })
            .collect();
        FieldSet { values }
    }

    /// The value of a label of this set ("" when the object leaves it empty).
    fn get(&self, label: &str) -> &str {
        self.values
            .iter()
            .find(|(l, _)| *l == label)
            .map_or("", |(_, v)| v)
    }
}

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, key| cur.get(*key))
}

fn string_at(obj: &Value, path: &[&str]) -> String {
    match at(obj, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn bool_at(obj: &Value, path: &[&str]) -> bool {
    at(obj, path).and_then(Value::as_bool).unwrap_or(false)
}

/// Split on commas that are not backslash-escaped.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Split a term at the first operator; `!=` and `==` win over `=` at one position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(FieldSelectorError::InvalidEscape(format!("\\{other}"))),
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedChar(c as u32)),
            other => out.push(other),
        }
    }
    if escaped {
        return Err(FieldSelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

/// Escape `\`, `,` and `=` in a value so the selector string parses back.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}
        })
    }

    #[test]
    fn parses_operators_and_escapes() {
        let s = parse("status.phase!=Failed,metadata.name==a\\,b,spec.nodeName=n");
        assert_eq!(s.terms().len(), 3);
        assert_eq!(
            s.to_string(),
            "metadata.name=a\\,b,spec.nodeName=n,status.phase!=Failed"
        );
        assert_eq!(s.exact_name(), Some("a,b"));
        assert!(parse("").is_empty());
        assert!(parse(",").is_empty());
        assert_eq!(parse("metadata.name!=x").exact_name(), None);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            FieldSelector::parse("foo").map_err(|e| e.to_string()),
            Err("invalid selector: 'foo'; can't understand 'foo'".to_string())
        );
        assert_eq!(
            FieldSelector::parse("a=b\\x").map_err(|e| e.to_string()),
            Err("invalid field selector: invalid escape sequence: \\x".to_string())
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").map_err(|e| e.to_string()),
            Err("invalid field selector: unescaped character in value: 61".to_string())
        );
    }

    #[test]
    fn pod_fields() {
        let p = pod();
        assert!(parse("spec.nodeName=node-a").matches("", "Pod", &p) == Ok(true));
        assert!(parse("spec.host=node-a").matches("", "Pod", &p) == Ok(true));
        assert!(parse("status.phase!=Running").matches("", "Pod", &p) == Ok(false));
        assert!(
            parse("spec.hostNetwork=true,status.podIP=10.42.0.5").matches("", "Pod", &p)
                == Ok(true)
        );
        assert!(
            parse("metadata.namespace=default,metadata.name=web-1").matches("", "Pod", &p)
                == Ok(true)
        );
        assert!(parse("spec.schedulerName=").matches("", "Pod", &p) == Ok(true));
        assert_eq!(field_value("", "Pod", &p, "status.podIPs"), Ok(None));
        assert_eq!(
            parse("spec.containers=x")
                .matches("", "Pod", &p)
                .map_err(|e| e.to_string()),
            Err("field label not supported: spec.containers".to_string())
        );
    }

    #[test]
    fn kind_specific_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert_eq!(
            field_value("", "Node", &node, "spec.unschedulable"),
            Ok(Some("true".into()))
        );
        assert!(field_value("", "Node", &node, "metadata.namespace").is_err());
        let ev = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Scheduled", "type": "Normal",
            "reportingComponent": "default-scheduler"
        });
        assert!(
            parse("involvedObject.kind=Pod,involvedObject.name=web-1,type=Normal")
                .matches("", "Event", &ev)
                == Ok(true)
        );
        assert_eq!(
            field_value("", "Event", &ev, "source"),
            Ok(Some("default-scheduler".into()))
        );
        let sec = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        assert!(parse("type=Opaque").matches("", "Secret", &sec) == Ok(true));
        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 1}});
        assert!(parse("status.successful=1").matches("batch", "Job", &job) == Ok(true));
        assert_eq!(
            parse("status.failed=1")
                .matches("batch", "Job", &job)
                .map_err(|e| e.to_string()),
            Err("field label \"status.failed\" not supported for batchv1.Job".to_string())
        );
        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert!(parse("status.phase=Active").matches("", "Namespace", &ns) == Ok(true));
        let rs = json!({"metadata": {"name": "r"}, "status": {"replicas": 3}});
        assert!(parse("status.replicas=3").matches("apps", "ReplicaSet", &rs) == Ok(true));
    }

    #[test]
    fn default_kinds_take_only_metadata() {
        let cm = json!({"metadata": {"name": "c", "namespace": "ns"}});
        assert!(parse("metadata.name=c").matches("", "ConfigMap", &cm) == Ok(true));
        assert_eq!(
            parse("data.x=1").validate("networking.k8s.io", "Ingress").map_err(|e| e.to_string()),
            Err("\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".to_string())
        );
        let crole = json!({"metadata": {"name": "admin"}});
        assert!(
            parse("metadata.namespace=x").matches(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &crole
            ) == Ok(false)
        );
        assert!(
            parse("metadata.namespace=").matches(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                &crole
            ) == Ok(true)
        );
    }
}
