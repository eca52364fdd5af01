//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! Owns the merge algorithm: maps merge recursively and `null` deletes a
//! key; lists whose field is declared mergeable in [`super::schema`] merge
//! item by item (objects by their merge key, scalars as a set) and all other
//! lists are replaced. The patch directives kubectl generates are honoured:
//!
//! * `$patch: replace | delete | merge` on maps and on list items,
//! * `$retainKeys: [...]` (drop every other key of the target map),
//! * `$setElementOrder/<list>: [...]` (final order of a merged list),
//! * `$deleteFromPrimitiveList/<list>: [...]` (remove scalars from a set).
//!
//! Directives never end up in the stored object. Kinds without patch
//! metadata (custom resources) are rejected with
//! [`PatchError::UnsupportedKind`], as kube-apiserver does.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::schema::{schema, FieldDef, TypeDef};
use super::{brief, values_equal, Gvk, PatchError};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, an object of kind `gvk`.
///
/// Returns [`PatchError::UnsupportedKind`] for kinds without patch metadata
/// and [`PatchError::BadRequest`] for malformed patches (e.g. a list item
/// without its merge key).
pub fn strategic_merge_patch(doc: &Value, patch: &Value, gvk: Gvk) -> Result<Value, PatchError> {
    let (group, version, kind) = gvk;
    let root = schema()
        .root(group, kind)
        .ok_or_else(|| PatchError::UnsupportedKind {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        })?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::bad(format!(
            "strategic merge patch must be a JSON object, got {}",
            brief(patch)
        )));
    };
    let merged = merge_map(doc.as_object(), patch, Some(root), "")?;
    Ok(Value::Object(merged))
}

fn child_path(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the object root"
    } else {
        path
    }
}

fn is_delete(m: &Map<String, Value>) -> bool {
    m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ORDER)
        || k.starts_with(DELETE_PRIMITIVE)
}

/// Removes directives and `null`s from a value that is taken over from the
/// patch as is. Returns `None` when the value itself asks to be deleted.
fn clean_value(v: &Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if is_delete(m) {
                return None;
            }
            Some(Value::Object(clean_map(m)))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter(|i| !i.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)))
                .filter_map(clean_value)
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn clean_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .filter_map(|(k, v)| clean_value(v).map(|v| (k.clone(), v)))
        .collect()
}

fn merge_map(
    original: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
    ty: Option<&TypeDef>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return Ok(clean_map(patch)),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::bad(format!(
                    "invalid patch: unknown patch type {} in map at {}",
                    brief(directive),
                    display_path(path)
                )))
            }
        }
    }
    let mut out = original.cloned().unwrap_or_default();

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                PatchError::bad(format!(
                    "invalid patch: $retainKeys at {} must be a list of field names",
                    display_path(path)
                ))
            })?;
        if let Some(k) = patch
            .iter()
            .find(|(k, v)| !v.is_null() && !is_directive_key(k) && !keys.contains(&k.as_str()))
            .map(|(k, _)| k)
        {
            return Err(PatchError::bad(format!(
                "invalid patch: field {k:?} at {} is not listed in $retainKeys",
                display_path(path)
            )));
        }
        out.retain(|k, _| keys.contains(&k.as_str()));
    }

    let mut ordered: HashSet<&str> = HashSet::new();
    for (k, order) in patch {
        let Some(field) = k.strip_prefix(SET_ORDER) else {
            continue;
        };
        let fpath = child_path(path, field);
        let order = order.as_array().ok_or_else(|| {
            PatchError::bad(format!(
                "invalid patch: {k} at {} must be a list",
                display_path(path)
            ))
        })?;
        let fd = ty.and_then(|t| t.field(field));
        let key = fd.and_then(|f| f.merge_key.as_deref());
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(other) => {
                return Err(PatchError::bad(format!(
                    "invalid patch: {fpath} must be a list to be used with {k}, got {}",
                    brief(other)
                )))
            }
        };
        let original_list = out.get(field).and_then(Value::as_array).cloned();
        if let Some(pl) = patch_list {
            validate_order(pl, order, key, &fpath)?;
        }
        let merged = match (&original_list, patch_list) {
            (Some(o), None) => o.clone(),
            (o, Some(p)) => merge_list(o.as_ref(), p, fd, &fpath)?,
            (None, None) => continue,
        };
        let server_order = original_list.unwrap_or_default();
        let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| position(order, item, key).is_some());
        let in_order = sort_by(in_order, order, key);
        let server_only = sort_by(server_only, &server_order, key);
        out.insert(
            field.to_string(),
            Value::Array(interleave(server_only, in_order, &server_order, key)),
        );
        ordered.insert(field);
    }

    for (k, pv) in patch {
        if k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let remove = pv.as_array().ok_or_else(|| {
                PatchError::bad(format!(
                    "invalid patch: {k} at {} must be a list of values",
                    display_path(path)
                ))
            })?;
            if let Some(Value::Array(current)) = out.get_mut(field) {
                current.retain(|x| !remove.iter().any(|r| values_equal(r, x)));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(PatchError::bad(format!(
                "invalid patch: unknown directive {k:?} at {}",
                display_path(path)
            )));
        }
        if ordered.contains(k.as_str()) {
            continue;
        }
        if pv.is_null() {
            out.shift_remove(k);
            continue;
        }
        let fd = ty.and_then(|t| t.field(k));
        let fpath = child_path(path, k);
        let merged = match pv {
            Value::Object(p) => {
                let current = out.get(k).and_then(Value::as_object);
                if current.is_none() && is_delete(p) {
                    continue;
                }
                if fd.is_some_and(|f| f.smp_replace) {
                    Value::Object(clean_map(p))
                } else {
                    Value::Object(merge_map(current, p, fd.and_then(FieldDef::child), &fpath)?)
                }
            }
            Value::Array(p) => {
                let current = out.get(k).and_then(Value::as_array);
                Value::Array(merge_list(current, p, fd, &fpath)?)
            }
            scalar => scalar.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(out)
}

/// Merges a patch list into the original list of field `fd`.
fn merge_list(
    original: Option<&Vec<Value>>,
    patch: &[Value],
    fd: Option<&FieldDef>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let Some(fd) = fd.filter(|f| f.smp_merge) else {
        // Lists without a merge strategy are replaced.
        return match clean_value(&Value::Array(patch.to_vec())) {
            Some(Value::Array(items)) => Ok(items),
            _ => Ok(Vec::new()),
        };
    };
    let original = original.cloned().unwrap_or_default();
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let objects = patch
        .iter()
        .chain(&original)
        .filter(|v| v.is_object())
        .count();
    if patch.iter().chain(&original).any(Value::is_array) {
        return Err(PatchError::bad(format!(
            "invalid patch: lists of lists are not supported ({path})"
        )));
    }
    if objects == 0 {
        return Ok(merge_scalars(original, patch));
    }
    if objects != patch.len() + original.len() {
        return Err(PatchError::bad(format!(
            "invalid patch: the items of list {path} are not all of the same type"
        )));
    }
    let key = fd.merge_key.as_deref().ok_or_else(|| {
        PatchError::bad(format!(
            "invalid patch: cannot merge lists without merge key for {path}"
        ))
    })?;
    let item_type = fd.child();

    let mut base = original;
    let mut plain: Vec<&Map<String, Value>> = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(m) = item else { continue };
        match m.get(DIRECTIVE) {
            None => plain.push(m),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let kv = m.get(key).ok_or_else(|| no_merge_key(item, key, path))?;
                    base.retain(|o| !key_matches(o, key, kv));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::bad(format!(
                        "invalid patch: merging lists cannot yet be specified in the patch ({path})"
                    )))
                }
                _ => {
                    return Err(PatchError::bad(format!(
                        "invalid patch: unknown patch type {} in list {path}",
                        brief(d)
                    )))
                }
            },
        }
    }
    if replace {
        base = plain
            .iter()
            .map(|m| merge_map(None, m, item_type, path).map(Value::Object))
            .collect::<Result<_, _>>()?;
        plain.clear();
    }
    let server_order = base.clone();
    for p in &plain {
        let kv = p
            .get(key)
            .ok_or_else(|| no_merge_key(&Value::Object((*p).clone()), key, path))?;
        match base.iter().position(|o| key_matches(o, key, kv)) {
            Some(i) => {
                let merged = merge_map(base[i].as_object(), p, item_type, path)?;
                base[i] = Value::Object(merged);
            }
            None => base.push(Value::Object(merge_map(None, p, item_type, path)?)),
        }
    }
    let patch_order: Vec<Value> = plain.iter().map(|m| Value::Object((*m).clone())).collect();
    let (from_patch, server_only): (Vec<Value>, Vec<Value>) = base
        .into_iter()
        .partition(|item| position(&patch_order, item, Some(key)).is_some());
    let from_patch = sort_by(from_patch, &patch_order, Some(key));
    let server_only = sort_by(server_only, &server_order, Some(key));
    Ok(interleave(
        server_only,
        from_patch,
        &server_order,
        Some(key),
    ))
}

fn merge_scalars(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for v in original.iter().chain(patch) {
        if !merged.iter().any(|m| values_equal(m, v)) {
            merged.push(v.clone());
        }
    }
    let (from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(patch, item, None).is_some());
    let from_patch = sort_by(from_patch, patch, None);
    let server_only = sort_by(server_only, &original, None);
    interleave(server_only, from_patch, &original, None)
}

fn no_merge_key(item: &Value, key: &str, path: &str) -> PatchError {
    PatchError::bad(format!(
        "invalid patch: map: {} does not contain declared merge key: {key} ({path})",
        brief(item)
    ))
}

fn key_matches(item: &Value, key: &str, wanted: &Value) -> bool {
    item.get(key).is_some_and(|v| values_equal(v, wanted))
}

/// Position of `item` in `list`, comparing merge key values for lists of
/// objects and whole values for lists of scalars.
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => {
            let wanted = item.get(key)?;
            list.iter().position(|v| key_matches(v, key, wanted))
        }
        None => list.iter().position(|v| values_equal(v, item)),
    }
}

/// Stable sort of `items` by their position in `order`; items missing from
/// `order` keep their relative order after the others.
fn sort_by(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut indexed: Vec<(usize, Value)> = items
        .into_iter()
        .map(|v| (position(order, &v, key).unwrap_or(usize::MAX), v))
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, v)| v).collect()
}

/// Merges two individually ordered lists: `server_only` items are slotted in
/// before the first `patched` item that comes after them in `server_order`.
fn interleave(
    server_only: Vec<Value>,
    patched: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + patched.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                let take_left = matches!(
                    (position(server_order, l, key), position(server_order, r, key)),
                    (Some(li), Some(ri)) if li < ri
                );
                let next = if take_left { left.next() } else { right.next() };
                out.extend(next);
            }
            (Some(_), None) => out.extend(left.by_ref()),
            (None, Some(_)) => out.extend(right.by_ref()),
            (None, None) => break,
        }
    }
    out
}

/// Checks that the items of the patch list appear in the same relative order
/// in the `$setElementOrder` list.
fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| !v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)))
        .collect();
    let mut next = 0;
    for item in items {
        let found = order[next.min(order.len())..]
            .iter()
            .position(|o| match key {
                Some(key) => item.get(key).is_some_and(|kv| key_matches(o, key, kv)),
                None => values_equal(o, item),
            });
        match found {
            Some(i) => next += i + 1,
            None => {
                return Err(PatchError::bad(format!(
                    "invalid patch: the order of the items of {path} does not match its $setElementOrder list (item {} is missing or out of order)",
                    brief(item)
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOY: Gvk = ("apps", "v1", "Deployment");

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["a", "b"]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": "nginx:1.25",
                             "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]},
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]}
                        ],
                        "tolerations": [{"key": "k", "operator": "Exists"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn containers(v: &Value) -> &Vec<Value> {
        v["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
    }

    fn names(list: &Value, key: &str) -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i[key]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| i[key].to_string())
            })
            .collect()
    }

    #[test]
    fn image_change_by_container_name_keeps_other_containers() {
        // What `kubectl apply` sends after editing the image in the manifest.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.26", "name": "nginx"}]
            }}}
        });
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        let cs = containers(&out);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "nginx:1.26");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 3);
        assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
        assert_eq!(cs[1]["name"], "sidecar");
        assert_eq!(cs[1]["args"], json!(["sleep", "3600"]));
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"new\":1}"
        );
        // No directive leaks into the object.
        assert!(!out.to_string().contains('$'));
        // kubectl set image style patch without order directive.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"], "name"),
            ["nginx", "sidecar"]
        );
        assert_eq!(containers(&out)[1]["image"], "busybox:2");
    }

    #[test]
    fn set_element_order_reorders_and_adds() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "nginx"}],
            "containers": [{"name": "new", "image": "redis"}]
        }}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"], "name"),
            ["sidecar", "new", "nginx"]
        );

        // Env order directive nested inside a container, with an added variable.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{
                "name": "nginx",
                "$setElementOrder/env": [{"name": "A"}, {"name": "D"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "D", "value": "4"}]
            }]
        }}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            names(&containers(&out)[0]["env"], "name"),
            ["A", "D", "B", "C"]
        );
        assert!(!out.to_string().contains("$setElementOrder"));

        // Items in the patch out of order w.r.t. the directive are rejected.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "x"}, {"name": "nginx", "image": "y"}]
        }}}});
        let err = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(err.to_string().contains("$setElementOrder"), "{err}");
    }

    #[test]
    fn delete_env_var_with_patch_delete() {
        // `kubectl apply` after removing env B from the manifest.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                "env": [{"$patch": "delete", "name": "B"}],
                "name": "nginx"
            }]
        }}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(names(&containers(&out)[0]["env"], "name"), ["A", "C"]);
        assert_eq!(containers(&out)[0]["image"], "nginx:1.25");

        // Deleting a whole container.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"], "name"),
            ["nginx"]
        );
    }

    #[test]
    fn add_port_and_replace_directive_on_list() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{
                "name": "nginx",
                "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                "ports": [{"containerPort": 443, "name": "https"}]
            }]
        }}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        let ports = &containers(&out)[0]["ports"];
        assert_eq!(
            ports,
            &json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}])
        );

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "x"}, {"$patch": "replace"}
        ]}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            containers(&out),
            &vec![json!({"name": "only", "image": "x"})]
        );
    }

    #[test]
    fn non_merge_lists_are_replaced_and_nulls_delete() {
        let patch = json!({
            "metadata": {"labels": {"app": null, "tier": "fe"}},
            "spec": {"replicas": null, "template": {"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}}}
        });
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "fe"}));
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "other", "operator": "Exists"}])
        );
        // Args are atomic: replaced whole.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["true"]}]}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(containers(&out)[1]["args"], json!(["true"]));
    }

    #[test]
    fn primitive_sets_and_delete_list() {
        let patch = json!({"metadata": {"finalizers": ["c", "a"]}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));

        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["b"],
            "$deleteFromPrimitiveList/finalizers": ["a"]
        }});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn retain_keys_and_map_directives() {
        // Switching the strategy type the way kubectl apply does it.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        assert!(strategic_merge_patch(&deployment(), &patch, DEPLOY).is_err());

        // Volumes carry retainKeys per item: replacing the source of a volume.
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}
        ]}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "cm"}}])
        );

        let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"x": "y"}}));

        let patch =
            json!({"spec": {"strategy": {"$patch": "delete"}, "paused": {"$patch": "delete"}}});
        let out = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({}));
        assert!(out["spec"].get("paused").is_none());

        let patch = json!({"spec": {"strategy": {"$patch": "frob"}}});
        assert_eq!(
            strategic_merge_patch(&deployment(), &patch, DEPLOY)
                .unwrap_err()
                .status_code(),
            400
        );
    }

    #[test]
    fn service_ports_and_pdb_selector() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "a", "tier": "b"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let patch = json!({"spec": {"selector": {"tier": null}, "ports": [{"port": 443, "targetPort": 8443}, {"port": 80.0, "name": "http"}]}});
        let out = strategic_merge_patch(&svc, &patch, ("", "v1", "Service")).unwrap();
        assert!(values_equal(
            &out["spec"]["ports"],
            &json!([
                {"port": 443, "targetPort": 8443},
                {"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}
            ])
        ));
        assert_eq!(out["spec"]["selector"], json!({"app": "a"}));

        let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "minAvailable": 1}});
        let patch = json!({"spec": {"selector": {"matchExpressions": []}}});
        let out =
            strategic_merge_patch(&pdb, &patch, ("policy", "v1", "PodDisruptionBudget")).unwrap();
        assert_eq!(out["spec"]["selector"], json!({"matchExpressions": []}));
    }

    #[test]
    fn errors() {
        let err = strategic_merge_patch(&json!({}), &json!({}), ("example.com", "v1", "Widget"))
            .unwrap_err();
        assert_eq!(err.status_code(), 415);
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = strategic_merge_patch(&deployment(), &patch, DEPLOY).unwrap_err();
        assert!(err.to_string().contains("merge key: name"), "{err}");
        assert!(
            err.to_string().contains(".spec.template.spec.containers"),
            "{err}"
        );
        assert!(strategic_merge_patch(&deployment(), &json!([1]), DEPLOY).is_err());
        let patch = json!({"spec": {"template": {"spec": {"containers": ["x"]}}}});
        assert!(strategic_merge_patch(&deployment(), &patch, DEPLOY).is_err());
    }

    #[test]
    fn pod_conditions_and_new_fields_are_cleaned() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]},
            "spec": {"containers": [{"name": "d", "image": "j", "env": [{"name": "X", "value": null}],
                "$setElementOrder/env": [{"name": "X"}]}]}});
        let out = strategic_merge_patch(&pod, &patch, ("", "v1", "Pod")).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}])
        );
        // Like kube, items new to the list come before the server-only ones
        // when the patch carries no $setElementOrder.
        assert_eq!(
            out["spec"]["containers"][0],
            json!({"name": "d", "image": "j", "env": [{"name": "X"}]})
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "c");
    }
}
