//! Server-side apply and `metadata.managedFields` bookkeeping.
//!
//! Owns the structured merge used by `kubectl apply --server-side`
//! ([`server_side_apply`]) and the ownership tracking done for every other
//! write ([`record_update`], [`record_subresource_update`]), modelled on
//! kube-apiserver's field manager:
//!
//! * each `managedFields` entry is a manager (`manager`, `operation`,
//!   `apiVersion`, `subresource`) with the [`FieldSet`] it owns;
//! * applying merges the configuration into the live object (associative
//!   lists by key, sets by value, atomic fields replaced), takes ownership of
//!   exactly the fields in the configuration, and removes fields the manager
//!   applied last time but no longer specifies unless someone else owns them;
//! * changing a field another manager owns is a conflict unless `force`,
//!   which moves the ownership; applying the value the field already has
//!   shares ownership instead;
//! * non-apply writes take ownership of every field they change.
//!
//! The schema of built-in kinds comes from [`super::schema`]; other kinds
//! are handled schemalessly (objects merge per key, lists are atomic).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::fieldset::{path_string, FieldSet, Path, PathElement};
use super::schema::{looks_like_map, schema, FieldDef, ListKey, ListType, Shape, TypeDef};
use super::{values_equal, Gvk, PatchError};

/// Operation recorded for server-side apply.
pub const OPERATION_APPLY: &str = "Apply";
/// Operation recorded for create, update and patch.
pub const OPERATION_UPDATE: &str = "Update";
/// Manager that is given ownership of an object's existing fields when it is
/// first applied to without any managedFields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// A field another manager owns with a different value than the applied one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Name of the manager that owns the field.
    pub manager: String,
    /// Its operation (`Apply` or `Update`).
    pub operation: String,
    /// API version it wrote with.
    pub api_version: String,
    /// Subresource it wrote through (`""` for the main resource).
    pub subresource: String,
    /// The conflicting field, e.g. `.spec.replicas`.
    pub field: String,
}

impl Conflict {
    /// The manager as kube-apiserver prints it: `"kubectl"` for appliers,
    /// `"kubectl-client-side-apply" using apps/v1` for updaters.
    pub fn manager_description(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == OPERATION_UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    /// Message of the `FieldManagerConflict` status cause for this conflict.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_description(),
            c.field
        );
    }
    let mut managers: Vec<String> = conflicts
        .iter()
        .map(Conflict::manager_description)
        .collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager_description() == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Failure of a server-side apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; answer 409 with one
    /// `FieldManagerConflict` cause per entry (see [`Conflict::cause_message`]).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not acceptable.
    #[error(transparent)]
    Invalid(#[from] PatchError),
}

impl ApplyError {
    /// HTTP status code kube-apiserver uses for this failure.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(e) => e.status_code(),
        }
    }

    /// The `reason` field of the `metav1.Status`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::Invalid(e) => e.reason(),
        }
    }
}

// ---------------------------------------------------------------------------
// Schema-driven walking

/// How a value at some position is merged and owned.
#[derive(Clone, Copy)]
enum Kind<'s> {
    /// Owned and replaced as a whole: scalars, atomic lists, structs, maps.
    Leaf,
    /// Merged per field. `map` marks string-keyed maps (as opposed to structs).
    Object { ty: Option<&'s TypeDef>, map: bool },
    /// List of scalars owned per value.
    Set,
    /// List of objects owned per key.
    Assoc {
        keys: &'s [ListKey],
        item: Option<&'s TypeDef>,
    },
}

fn root_kind(ty: Option<&TypeDef>) -> Kind<'_> {
    Kind::Object { ty, map: false }
}

/// Kind of the value of field `name` described by `fd`.
fn field_kind<'s>(fd: Option<&'s FieldDef>, name: &str, v: &Value) -> Kind<'s> {
    match v {
        Value::Object(_) => match fd {
            Some(fd) => {
                let child = fd.child();
                if fd.atomic || child.is_some_and(|t| t.atomic) {
                    Kind::Leaf
                } else {
                    Kind::Object {
                        ty: child,
                        map: fd.shape == Shape::Map,
                    }
                }
            }
            None => Kind::Object {
                ty: None,
                map: looks_like_map(name),
            },
        },
        Value::Array(_) => match fd {
            Some(fd) if fd.shape == Shape::List => match &fd.list_type {
                ListType::Atomic => Kind::Leaf,
                ListType::Set => Kind::Set,
                ListType::Map(keys) => Kind::Assoc {
                    keys,
                    item: fd.child(),
                },
            },
            _ => Kind::Leaf,
        },
        _ => Kind::Leaf,
    }
}

/// Kind of a child of `parent` holding `v`.
fn child_kind<'s>(parent: Kind<'s>, name: &str, v: &Value) -> Kind<'s> {
    match parent {
        Kind::Object { ty, .. } => field_kind(ty.and_then(|t| t.field(name)), name, v),
        Kind::Assoc { item, .. } => match v {
            Value::Object(_) if item.is_some_and(|t| t.atomic) => Kind::Leaf,
            Value::Object(_) => Kind::Object {
                ty: item,
                map: false,
            },
            _ => Kind::Leaf,
        },
        Kind::Leaf | Kind::Set => Kind::Leaf,
    }
}

/// Kind for a position present on one or both sides; positions whose sides
/// disagree are leaves.
fn pair_kind<'s>(parent: Kind<'s>, name: &str, l: Option<&Value>, r: Option<&Value>) -> Kind<'s> {
    match (l, r) {
        (Some(l), Some(r)) => {
            let (a, b) = (child_kind(parent, name, l), child_kind(parent, name, r));
            if std::mem::discriminant(&a) == std::mem::discriminant(&b) {
                a
            } else {
                Kind::Leaf
            }
        }
        (Some(v), None) | (None, Some(v)) => child_kind(parent, name, v),
        (None, None) => Kind::Leaf,
    }
}

/// Path element identifying item `index` of a list of the given kind.
fn item_element(kind: Kind, item: &Value, index: usize) -> PathElement {
    match kind {
        Kind::Set => PathElement::value(item),
        Kind::Assoc { keys, .. } => {
            let fields: Vec<(&str, &Value)> = keys
                .iter()
                .filter_map(|k| {
                    item.get(&k.name)
                        .or(k.default.as_ref())
                        .map(|v| (k.name.as_str(), v))
                })
                .collect();
            if fields.is_empty() {
                PathElement::Index(index)
            } else {
                PathElement::key(&fields)
            }
        }
        _ => PathElement::Index(index),
    }
}

/// Items of a keyed list with their path elements; later duplicates of an
/// element are dropped.
fn keyed_items(kind: Kind, list: &[Value]) -> Vec<(PathElement, usize)> {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, v)| (item_element(kind, v, i), i))
        .filter(|(pe, _)| seen.insert(pe.clone()))
        .collect()
}

/// The set of fields present in `v` (what a configuration owns when applied).
fn field_set(v: &Value, kind: Kind) -> FieldSet {
    let mut out = FieldSet::new();
    walk_field_set(v, kind, &mut Vec::new(), &mut out);
    out
}

fn walk_field_set(v: &Value, kind: Kind, path: &mut Path, out: &mut FieldSet) {
    match (kind, v) {
        (Kind::Object { map, .. }, Value::Object(m)) => {
            for (k, cv) in m {
                path.push(PathElement::Field(k.clone()));
                walk_field_set(cv, child_kind(kind, k, cv), path, out);
                if map || cv.is_null() || cv.as_object().is_some_and(Map::is_empty) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        (Kind::Set | Kind::Assoc { .. }, Value::Array(items)) => {
            for (pe, i) in keyed_items(kind, items) {
                path.push(pe);
                if matches!(kind, Kind::Assoc { .. }) {
                    walk_field_set(&items[i], child_kind(kind, "", &items[i]), path, out);
                }
                out.insert(path);
                path.pop();
            }
        }
        _ => out.insert(path),
    }
}

/// Field-level difference between two versions of an object.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    fn filter(self, keep: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: keep(&self.added),
            modified: keep(&self.modified),
            removed: keep(&self.removed),
        }
    }
}

fn compare(old: &Value, new: &Value, kind: Kind) -> Comparison {
    let mut c = Comparison::default();
    walk_compare(Some(old), Some(new), kind, "", &mut Vec::new(), &mut c);
    c
}

fn walk_compare(
    l: Option<&Value>,
    r: Option<&Value>,
    kind: Kind,
    name: &str,
    path: &mut Path,
    c: &mut Comparison,
) {
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    let container = match kind {
        Kind::Object { .. } => l.is_none_or(Value::is_object) && r.is_none_or(Value::is_object),
        Kind::Set | Kind::Assoc { .. } => {
            l.is_none_or(Value::is_array) && r.is_none_or(Value::is_array)
        }
        Kind::Leaf => false,
    };
    if !container || (empty(l) && empty(r)) {
        match (l, r) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if !values_equal(a, b) => c.modified.insert(path),
            _ => {}
        }
        return;
    }
    match kind {
        Kind::Object { .. } => {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let mut keys: Vec<&String> = lm.map(|m| m.keys().collect()).unwrap_or_default();
            for k in rm.into_iter().flat_map(|m| m.keys()) {
                if !lm.is_some_and(|m| m.contains_key(k)) {
                    keys.push(k);
                }
            }
            for k in keys {
                if k == "managedFields"
                    && matches!(path.as_slice(), [PathElement::Field(m)] if m == "metadata")
                {
                    continue;
                }
                let (lv, rv) = (lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)));
                path.push(PathElement::Field(k.clone()));
                walk_compare(lv, rv, pair_kind(kind, k, lv, rv), k, path, c);
                path.pop();
            }
        }
        _ => {
            let la: &[Value] = l.and_then(Value::as_array).map_or(&[], Vec::as_slice);
            let ra: &[Value] = r.and_then(Value::as_array).map_or(&[], Vec::as_slice);
            let li = keyed_items(kind, la);
            let ri = keyed_items(kind, ra);
            let mut pes: Vec<&PathElement> = li.iter().map(|(pe, _)| pe).collect();
            pes.extend(
                ri.iter()
                    .map(|(pe, _)| pe)
                    .filter(|pe| !li.iter().any(|(p, _)| p == *pe)),
            );
            for pe in pes {
                let lv = li.iter().find(|(p, _)| p == pe).map(|(_, i)| &la[*i]);
                let rv = ri.iter().find(|(p, _)| p == pe).map(|(_, i)| &ra[*i]);
                path.push(pe.clone());
                let item_kind = if matches!(kind, Kind::Set) {
                    Kind::Leaf
                } else {
                    pair_kind(kind, "", lv, rv)
                };
                walk_compare(lv, rv, item_kind, "", path, c);
                path.pop();
            }
        }
    }
    // A container that appears or disappears is itself added or removed.
    // Structs are not recorded (kube's typed objects always carry them);
    // maps, lists and list items are.
    let records_itself = match kind {
        Kind::Object { map, .. } => {
            map || matches!(
                path.last(),
                Some(PathElement::Key(_) | PathElement::Index(_))
            )
        }
        _ => name != "containers",
    };
    if records_itself {
        match (l, r) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            _ => {}
        }
    }
}

/// Merges an applied configuration into the live object.
fn merge(live: &Value, applied: &Value, kind: Kind) -> Value {
    match (kind, live, applied) {
        (Kind::Object { .. }, Value::Object(lm), Value::Object(rm)) => {
            let mut out = lm.clone();
            for (k, rv) in rm {
                let merged = match lm.get(k) {
                    Some(lv) => merge(lv, rv, pair_kind(kind, k, Some(lv), Some(rv))),
                    None => rv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Kind::Set | Kind::Assoc { .. }, Value::Array(la), Value::Array(ra)) => {
            let li = keyed_items(kind, la);
            let ri = keyed_items(kind, ra);
            let order = merge_order(
                &li.iter().map(|(pe, _)| pe.clone()).collect::<Vec<_>>(),
                &ri.iter().map(|(pe, _)| pe.clone()).collect::<Vec<_>>(),
            );
            let items = order
                .into_iter()
                .map(
                    |(l, r)| match (l.map(|i| &la[li[i].1]), r.map(|i| &ra[ri[i].1])) {
                        (Some(lv), Some(rv)) if matches!(kind, Kind::Assoc { .. }) => {
                            merge(lv, rv, pair_kind(kind, "", Some(lv), Some(rv)))
                        }
                        (_, Some(rv)) => rv.clone(),
                        (Some(lv), None) => lv.clone(),
                        (None, None) => Value::Null,
                    },
                )
                .collect();
            Value::Array(items)
        }
        _ => applied.clone(),
    }
}

/// Order of a merged keyed list as `(live index, applied index)` pairs:
/// applied items keep the applied order, live-only items stay where they
/// were relative to the items around them.
fn merge_order(
    live: &[PathElement],
    applied: &[PathElement],
) -> Vec<(Option<usize>, Option<usize>)> {
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let mut emitted = std::collections::HashSet::new();
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < applied.len() {
        if let Some(pe) = live.get(li) {
            let in_applied = applied.iter().position(|a| a == pe);
            if in_applied.is_none() {
                out.push((Some(li), None));
                li += 1;
                continue;
            }
            if emitted.contains(pe) {
                li += 1;
                continue;
            }
        }
        if let Some(pe) = applied.get(ri) {
            out.push((live.iter().position(|l| l == pe), Some(ri)));
            emitted.insert(pe.clone());
            ri += 1;
        } else {
            li += 1;
        }
    }
    out
}

/// Removes from `v` every field the applier owned last time (`last`) that no
/// manager owns now (`owned`), with everything below it.
fn prune(v: &mut Value, kind: Kind, last: &FieldSet, owned: Option<&FieldSet>) {
    let drop = |pe: &PathElement| last.has_member(pe) && !owned.is_some_and(|o| o.has_member(pe));
    match (kind, v) {
        (Kind::Object { .. }, Value::Object(m)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = PathElement::Field(k.clone());
                if drop(&pe) {
                    m.shift_remove(&k);
                } else if let (Some(lc), Some(cv)) = (last.child(&pe), m.get_mut(&k)) {
                    let ck = child_kind(kind, &k, cv);
                    prune(cv, ck, lc, owned.and_then(|o| o.child(&pe)));
                }
            }
        }
        (Kind::Set | Kind::Assoc { .. }, Value::Array(items)) => {
            let pes: Vec<PathElement> = items
                .iter()
                .enumerate()
                .map(|(i, it)| item_element(kind, it, i))
                .collect();
            let mut i = 0;
            items.retain(|_| {
                let keep = !drop(&pes[i]);
                i += 1;
                keep
            });
            let kept: Vec<&PathElement> = pes.iter().filter(|pe| !drop(pe)).collect();
            for (item, pe) in items.iter_mut().zip(kept) {
                if let Some(lc) = last.child(pe) {
                    let ck = child_kind(kind, "", item);
                    prune(item, ck, lc, owned.and_then(|o| o.child(pe)));
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// managedFields entries

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// Appliers are identified regardless of the version they applied with.
    fn same_manager(
        &self,
        manager: &str,
        operation: &str,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == OPERATION_APPLY || self.api_version == api_version)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        Some(Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            subresource: s("subresource").unwrap_or_default(),
            time: s("time"),
            set: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&json!({}))).ok()?,
        })
    }
}

fn decode_entries(list: Option<&Value>) -> Option<Vec<Entry>> {
    match list {
        Some(Value::Array(items)) => items.iter().map(Entry::from_json).collect(),
        _ => None,
    }
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata").and_then(|m| m.get("managedFields"))
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    out
}

fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            a.time.as_deref().unwrap_or(""),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                b.time.as_deref().unwrap_or(""),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Value::Object(root) = obj else { return };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else { return };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        let list = Value::Array(entries.iter().map(Entry::to_json).collect());
        meta.insert("managedFields".into(), list);
    }
}

fn api_version_of(gvk: Gvk) -> String {
    let (group, version, _) = gvk;
    if group.is_empty() || group == "core" {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn timestamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// Server-owned fields never recorded in managedFields.
fn stripped_fields() -> FieldSet {
    let mut s = FieldSet::new();
    s.insert(&[field("apiVersion")]);
    s.insert(&[field("kind")]);
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        s.insert(&[field("metadata"), field(f)]);
    }
    s
}

/// Which part of the object a write may change and be recorded for.
fn scope(set: &FieldSet, subresource: &str) -> FieldSet {
    let status = field("status");
    match subresource {
        "" => {
            let mut ignored = stripped_fields();
            ignored.insert(&[status]);
            set.recursive_difference(&ignored)
        }
        "status" => set.only_under(&status),
        _ => set.recursive_difference(&stripped_fields()),
    }
}

fn type_of(gvk: Gvk) -> Option<&'static TypeDef> {
    schema().root_or_unstructured(gvk.0, gvk.2)
}

/// Drops `null` members from an applied configuration.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Entry points

/// Server-side apply of `applied` (the decoded `application/apply-patch+yaml`
/// body) by `manager` onto `live` (`None` when the object does not exist
/// yet). Returns the object to persist, with `metadata.managedFields`
/// updated. When nothing changed the result equals `live`.
///
/// `status` in the configuration is ignored (it is reset to the live status,
/// as for any write to the main resource).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    gvk: Gvk,
    now: DateTime<Utc>,
) -> Result<Value, ApplyError> {
    let Value::Object(config) = applied else {
        return Err(PatchError::bad("the applied configuration must be a JSON object").into());
    };
    if managed_fields_of(applied).is_some_and(|m| !m.is_null()) {
        return Err(PatchError::bad("metadata.managedFields must be nil").into());
    }
    if manager.is_empty() {
        return Err(PatchError::bad(
            "PATCH, application/apply-patch+yaml requests must have a fieldManager",
        )
        .into());
    }
    let (_, _, expected_kind) = gvk;
    if let Some(kind) = config.get("kind").and_then(Value::as_str) {
        if kind != expected_kind {
            return Err(PatchError::bad(format!(
                "the kind in the applied configuration ({kind}) does not match the kind of the object ({expected_kind})"
            ))
            .into());
        }
    }
    let mut config = without_nulls(&Value::Object(config.clone()));
    if let Value::Object(m) = &mut config {
        m.shift_remove("status");
    }
    let kind = root_kind(type_of(gvk));
    let api_version = api_version_of(gvk);

    let live_clean = live.map_or_else(|| json!({}), without_managed_fields);
    let mut entries = live
        .and_then(|l| decode_entries(managed_fields_of(l)))
        .unwrap_or_default();
    if live.is_some() && entries.is_empty() {
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.to_string(),
            operation: OPERATION_UPDATE.to_string(),
            api_version: api_version.clone(),
            subresource: String::new(),
            time: Some(timestamp(now)),
            set: scope(&field_set(&live_clean, kind), ""),
        });
    }

    let mine = entries
        .iter()
        .position(|e| e.same_manager(manager, OPERATION_APPLY, &api_version, ""));
    let last = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
    let mut status_free = FieldSet::new();
    status_free.insert(&[field("status")]);
    // Owned by this apply, including server-owned metadata so that pruning
    // never removes the object's identity.
    let applied_set = field_set(&config, kind).recursive_difference(&status_free);

    let mut merged = merge(&live_clean, &config, kind);
    if !last.is_empty() {
        let owned = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != mine)
            .fold(applied_set.clone(), |acc, (_, e)| acc.union(&e.set));
        prune(
            &mut merged,
            kind,
            &last.with_field_parents(),
            Some(&owned.with_field_parents()),
        );
    }

    let diff = compare(&live_clean, &merged, kind).filter(|s| scope(s, ""));
    let changed = diff.changed();
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        let clash = e.set.intersection(&changed);
        if !force {
            conflicts.extend(clash.paths().iter().map(|p| Conflict {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                field: path_string(p),
            }));
        }
        e.set = e.set.difference(&clash).difference(&diff.removed);
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let object_changed = !values_equal(&live_clean, &merged);
    let new_set = scope(&applied_set, "");
    match mine {
        Some(i) => {
            let e = &mut entries[i];
            if object_changed || e.set != new_set || e.time.is_none() {
                e.time = Some(timestamp(now));
            }
            e.set = new_set;
            e.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: OPERATION_APPLY.to_string(),
            api_version,
            subresource: String::new(),
            time: Some(timestamp(now)),
            set: new_set,
        }),
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Records in `new`'s `metadata.managedFields` that `manager` wrote `new`
/// over `old` (`None` for a create) through the main resource with
/// `operation` (normally `"Update"`). Returns `new` with the updated
/// managedFields.
///
/// If the request itself carries managedFields they are taken as the
/// starting point (an explicit empty list resets them); otherwise the stored
/// ones are used.
pub fn record_update(
    old: Option<&Value>,
    new: Value,
    manager: &str,
    operation: &str,
    gvk: Gvk,
    now: DateTime<Utc>,
) -> Value {
    record(old, new, manager, operation, "", gvk, now)
}

/// Like [`record_update`] for writes through a subresource (`"status"`,
/// `"scale"`, ...): only the fields of that subresource are recorded and the
/// entry carries `subresource`.
pub fn record_subresource_update(
    old: Option<&Value>,
    new: Value,
    manager: &str,
    subresource: &str,
    gvk: Gvk,
    now: DateTime<Utc>,
) -> Value {
    record(old, new, manager, OPERATION_UPDATE, subresource, gvk, now)
}

fn record(
    old: Option<&Value>,
    new: Value,
    manager: &str,
    operation: &str,
    subresource: &str,
    gvk: Gvk,
    now: DateTime<Utc>,
) -> Value {
    let kind = root_kind(type_of(gvk));
    let api_version = api_version_of(gvk);
    let stored = || {
        old.and_then(|o| decode_entries(managed_fields_of(o)))
            .unwrap_or_default()
    };
    let mut entries = match managed_fields_of(&new) {
        Some(Value::Array(a)) if a.is_empty() || (a.len() == 1 && a[0] == json!({})) => Vec::new(),
        Some(list) => match decode_entries(Some(list)) {
            Some(e) if !e.is_empty() => e,
            _ => stored(),
        },
        None => stored(),
    };
    // managedFields never take part in the comparison (`walk_compare` skips them), so
    // neither object is copied to drop them.
    let empty = json!({});
    let mut out = new;
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let diff = compare(old.unwrap_or(&empty), &out, kind).filter(|s| scope(s, subresource));
    let changed = diff.changed();
    for e in entries.iter_mut() {
        e.set = e.set.difference(&changed).difference(&diff.removed);
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_manager(manager, operation, &api_version, subresource))
        {
            Some(e) => {
                e.set = e.set.union(&changed);
                e.time = Some(timestamp(now));
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version,
                subresource: subresource.to_string(),
                time: Some(timestamp(now)),
                set: changed,
            }),
        }
    }
    write_entries(&mut out, entries);
    out
}

/// The fields `manager` owns in `obj` (any operation), as paths like
/// `.spec.replicas`; useful for diagnostics and tests.
pub fn owned_fields(obj: &Value, manager: &str) -> Vec<String> {
    decode_entries(managed_fields_of(obj))
        .unwrap_or_default()
        .iter()
        .filter(|e| e.manager == manager)
        .flat_map(|e| e.set.paths())
        .map(|p| path_string(&p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DEPLOY: Gvk = ("apps", "v1", "Deployment");

    fn t(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + sec, 0).single().unwrap()
    }

    fn config(image: &str, replicas: Option<i64>) -> Value {
        let mut c = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image,
                        "ports": [{"containerPort": 80}]}]}
                }
            }
        });
        if let Some(r) = replicas {
            c["spec"]["replicas"] = json!(r);
        }
        c
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("no entry for {manager} in {obj:#}"))
    }

    #[test]
    fn create_records_apply_entry() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let e = entry(&obj, "kubectl");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], "2023-11-14T22:13:20Z");
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            })
        );
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn reapply_unchanged_is_a_no_op() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        let again = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(60),
        )
        .unwrap();
        assert_eq!(again, obj);
    }

    #[test]
    fn apply_removing_a_field_removes_it() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        let mut cfg = config("nginx:1.25", None);
        cfg["metadata"]["labels"] = json!({});
        let out = server_side_apply(Some(&obj), &cfg, "kubectl", false, DEPLOY, t(60)).unwrap();
        assert!(out["spec"].get("replicas").is_none(), "{out:#}");
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["metadata"]["name"], "web");
        assert_eq!(entry(&out, "kubectl")["time"], "2023-11-14T22:14:20Z");
        assert!(!owned_fields(&out, "kubectl").contains(&".spec.replicas".to_string()));

        // Removing a container from the config removes it from the object.
        let mut two = config("nginx:1.25", Some(2));
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "busybox"}));
        let obj = server_side_apply(None, &two, "kubectl", false, DEPLOY, t(0)).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let out = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(1),
        )
        .unwrap();
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["name"], "nginx");
    }

    #[test]
    fn fields_owned_by_others_survive_pruning() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        // Another applier takes co-ownership of replicas with the same value.
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2}});
        let obj = server_side_apply(Some(&obj), &other, "autoscaler", false, DEPLOY, t(1)).unwrap();
        let out = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", None),
            "kubectl",
            false,
            DEPLOY,
            t(2),
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(
            owned_fields(&out, "autoscaler"),
            vec![".spec.replicas".to_string()]
        );
    }

    fn client_side_applied() -> Value {
        // Created by `kubectl apply` (client-side): an Update manager.
        let mut obj = config("nginx:1.25", Some(2));
        obj["metadata"]["uid"] = json!("1234");
        obj["metadata"]["resourceVersion"] = json!("7");
        record_update(
            None,
            obj,
            "kubectl-client-side-apply",
            "Update",
            DEPLOY,
            t(0),
        )
    }

    #[test]
    fn conflicting_managers() {
        let obj = client_side_applied();
        let e = entry(&obj, "kubectl-client-side-apply");
        assert_eq!(e["operation"], "Update");
        assert!(e["fieldsV1"]["f:metadata"].get("f:uid").is_none());
        assert_eq!(
            e["fieldsV1"]["f:metadata"]["f:labels"],
            json!({".": {}, "f:app": {}})
        );

        let err = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(5)),
            "kubectl",
            false,
            DEPLOY,
            t(10),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 409);
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let ApplyError::Conflicts(cs) = &err else {
            panic!()
        };
        assert_eq!(cs[0].field, ".spec.replicas");
        assert_eq!(
            cs[0].cause_message(),
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );

        let err = server_side_apply(
            Some(&obj),
            &config("nginx:1.26", Some(5)),
            "kubectl",
            false,
            DEPLOY,
            t(10),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- "), "{msg}");
        assert!(
            msg.contains("- .spec.template.spec.containers[name=\"nginx\"].image"),
            "{msg}"
        );

        // Same values: no conflict, ownership is shared.
        let shared = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(10),
        )
        .unwrap();
        assert!(owned_fields(&shared, "kubectl").contains(&".spec.replicas".to_string()));
        assert!(owned_fields(&shared, "kubectl-client-side-apply")
            .contains(&".spec.replicas".to_string()));
        assert_eq!(
            without_managed_fields(&shared),
            without_managed_fields(&obj)
        );
    }

    #[test]
    fn force_moves_ownership() {
        let obj = client_side_applied();
        let out = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(5)),
            "kubectl",
            true,
            DEPLOY,
            t(10),
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert!(owned_fields(&out, "kubectl").contains(&".spec.replicas".to_string()));
        assert!(!owned_fields(&out, "kubectl-client-side-apply")
            .contains(&".spec.replicas".to_string()));
        assert!(
            owned_fields(&out, "kubectl-client-side-apply").contains(&".spec.selector".to_string())
        );
        // Entries are ordered Apply before Update.
        assert_eq!(out["metadata"]["managedFields"][0]["manager"], "kubectl");
        assert_eq!(out["metadata"]["uid"], "1234");
    }

    #[test]
    fn update_after_apply_takes_ownership() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        // `kubectl scale` / `kubectl edit` style write.
        let mut edited = obj.clone();
        edited["spec"]["replicas"] = json!(7);
        let out = record_update(Some(&obj), edited, "kubectl-edit", "Update", DEPLOY, t(5));
        assert_eq!(
            owned_fields(&out, "kubectl-edit"),
            vec![".spec.replicas".to_string()]
        );
        assert!(!owned_fields(&out, "kubectl").contains(&".spec.replicas".to_string()));
        assert_eq!(entry(&out, "kubectl-edit")["time"], "2023-11-14T22:13:25Z");
        // The applier now conflicts when it wants its old value back.
        let err = server_side_apply(
            Some(&out),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(9),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
        );
        // And since it no longer owns replicas, dropping it from the config keeps the value.
        let kept = server_side_apply(
            Some(&out),
            &config("nginx:1.25", None),
            "kubectl",
            false,
            DEPLOY,
            t(9),
        )
        .unwrap();
        assert_eq!(kept["spec"]["replicas"], 7);
    }

    #[test]
    fn update_without_changes_keeps_entries() {
        let obj = client_side_applied();
        let same = record_update(Some(&obj), obj.clone(), "other", "Update", DEPLOY, t(50));
        assert_eq!(same, obj);
        // A client that drops managedFields does not wipe them.
        let stripped = without_managed_fields(&obj);
        assert_eq!(
            record_update(Some(&obj), stripped, "other", "Update", DEPLOY, t(50)),
            obj
        );
        // An explicit empty list resets them.
        let mut reset = obj.clone();
        reset["metadata"]["managedFields"] = json!([]);
        let out = record_update(Some(&obj), reset, "other", "Update", DEPLOY, t(50));
        assert!(out["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn status_writes_are_scoped() {
        let obj = client_side_applied();
        let mut with_status = obj.clone();
        with_status["status"] =
            json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
        let out = record_subresource_update(
            Some(&obj),
            with_status,
            "kube-controller-manager",
            "status",
            DEPLOY,
            t(3),
        );
        let e = entry(&out, "kube-controller-manager");
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
        );
        // Applying the spec does not touch status.
        let applied = server_side_apply(
            Some(&out),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(4),
        )
        .unwrap();
        assert_eq!(applied["status"]["replicas"], 2);
    }

    #[test]
    fn custom_resources_and_sets() {
        let gvk = ("example.com", "v1", "Widget");
        let cfg = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "finalizers": ["a"]},
            "spec": {"size": 1, "tags": ["x"]}});
        let obj = server_side_apply(None, &cfg, "mgr", false, gvk, t(0)).unwrap();
        assert_eq!(
            entry(&obj, "mgr")["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}}, "f:spec": {"f:size": {}, "f:tags": {}}})
        );
        let mut cfg2 = cfg.clone();
        cfg2["metadata"]["finalizers"] = json!(["b"]);
        let obj2 = server_side_apply(Some(&obj), &cfg2, "other", false, gvk, t(1)).unwrap();
        assert_eq!(obj2["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn bad_configurations() {
        let mut cfg = config("x", None);
        cfg["metadata"]["managedFields"] = json!([]);
        let err = server_side_apply(None, &cfg, "kubectl", false, DEPLOY, t(0)).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(server_side_apply(None, &json!([1]), "kubectl", false, DEPLOY, t(0)).is_err());
        assert!(server_side_apply(None, &config("x", None), "", false, DEPLOY, t(0)).is_err());
        let err = server_side_apply(
            None,
            &config("x", None),
            "kubectl",
            false,
            ("apps", "v1", "StatefulSet"),
            t(0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("(Deployment)"), "{err}");
    }

    #[test]
    fn first_apply_on_unmanaged_object() {
        let obj = config("nginx:1.25", Some(3));
        let out = server_side_apply(
            Some(&obj),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap_err();
        assert!(out.to_string().contains("before-first-apply"), "{out}");
    }

    #[test]
    fn client_side_apply_flow_then_server_side() {
        // kubectl apply (client-side): create, then a strategic merge patch.
        let obj = client_side_applied();
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}]
        }}}});
        let patched = super::super::strategic_merge_patch(&obj, &patch, DEPLOY).unwrap();
        let recorded = record_update(
            Some(&obj),
            patched,
            "kubectl-client-side-apply",
            "Update",
            DEPLOY,
            t(30),
        );
        assert_eq!(
            recorded["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            entry(&recorded, "kubectl-client-side-apply")["time"],
            "2023-11-14T22:13:50Z"
        );
        assert_eq!(
            recorded["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.26"
        );

        // Switching to server-side apply with a different image conflicts...
        let err = server_side_apply(
            Some(&recorded),
            &config("nginx:1.27", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(40),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.template.spec.containers[name=\"nginx\"].image"
        );
        // ...but the same manifest is accepted and shares ownership.
        let ok = server_side_apply(
            Some(&recorded),
            &config("nginx:1.26", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(40),
        )
        .unwrap();
        assert_eq!(ok["metadata"]["managedFields"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn defaulted_key_fields_match() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        // The server defaulted the protocol of the port.
        let mut live = obj.clone();
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let out = server_side_apply(
            Some(&live),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(5),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(out, live);
    }

    #[test]
    fn new_items_follow_the_applied_order() {
        let obj = server_side_apply(
            None,
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(0),
        )
        .unwrap();
        let mut cfg = config("nginx:1.25", Some(2));
        let cs = cfg["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        cs.insert(0, json!({"name": "init-like", "image": "busybox"}));
        cs.push(json!({"name": "sidecar", "image": "envoy"}));
        let out = server_side_apply(Some(&obj), &cfg, "kubectl", false, DEPLOY, t(1)).unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["init-like", "nginx", "sidecar"]);
        // Another manager's container stays when this applier does not mention it.
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "injected", "image": "proxy"}]}}}});
        let out = server_side_apply(Some(&out), &other, "injector", false, DEPLOY, t(2)).unwrap();
        let out = server_side_apply(
            Some(&out),
            &config("nginx:1.25", Some(2)),
            "kubectl",
            false,
            DEPLOY,
            t(3),
        )
        .unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nginx", "injected"]);
    }
}
