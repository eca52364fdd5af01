//! RFC 6902 JSON patch (`application/json-patch+json`).
//!
//! Owns the operation interpreter (`add`, `remove`, `replace`, `move`,
//! `copy`, `test`) and RFC 6901 JSON pointer handling (`~0`/`~1` escapes,
//! the `-` end-of-array index). Operations are applied in order to a copy of
//! the document; the first failing operation aborts the whole patch and the
//! original document is left untouched. kubectl sends this format for
//! `kubectl patch --type=json` and `kubectl rollout undo`.

use serde_json::{Map, Value};

use super::{values_equal, PatchError};

/// Applies an RFC 6902 JSON patch to `doc` and returns the patched copy.
///
/// Errors name the operation and the JSON pointer that failed, e.g.
/// `replace operation does not apply: doc is missing path: "/spec/foo": missing value`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::bad(format!(
            "json patch must be a JSON array of operations, got {}",
            kind_name(patch)
        ))
    })?;
    let mut doc = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut doc, op, i)?;
    }
    Ok(doc)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn apply_op(doc: &mut Value, op: &Value, index: usize) -> Result<(), PatchError> {
    let obj = op.as_object().ok_or_else(|| {
        PatchError::bad(format!(
            "json patch operation {index} must be a JSON object, got {}",
            kind_name(op)
        ))
    })?;
    let name = match obj.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(PatchError::bad(format!(
                "json patch operation {index}: \"op\" must be a string"
            )))
        }
        None => {
            return Err(PatchError::bad(format!(
                "json patch operation {index} is missing the \"op\" member"
            )))
        }
    };
    let path = member_str(obj, "path", name, index)?;
    let tokens = parse_pointer(path)?;
    match name {
        "add" => {
            let value = member_value(obj, name, index)?;
            add(doc, &tokens, value.clone(), name, path)
        }
        "remove" => remove(doc, &tokens, name, path).map(|_| ()),
        "replace" => {
            let value = member_value(obj, name, index)?;
            replace(doc, &tokens, value.clone(), name, path)
        }
        "move" => {
            let from = member_str(obj, "from", name, index)?;
            let from_tokens = parse_pointer(from)?;
            if from_tokens == tokens {
                // Moving a value onto itself only requires that it exists.
                return get(doc, &tokens).map(|_| ()).ok_or_else(|| missing(name, from));
            }
            if tokens.len() > from_tokens.len() && tokens[..from_tokens.len()] == from_tokens[..] {
                return Err(PatchError::Invalid(format!(
                    "move operation does not apply: \"from\" location \"{from}\" is a prefix of \"path\" location \"{path}\""
                )));
            }
            let value = remove(doc, &from_tokens, name, from)?;
            add(doc, &tokens, value, name, path)
        }
        "copy" => {
            let from = member_str(obj, "from", name, index)?;
            let from_tokens = parse_pointer(from)?;
            let value = get(doc, &from_tokens)
                .cloned()
                .ok_or_else(|| missing(name, from))?;
            add(doc, &tokens, value, name, path)
        }
        "test" => {
            let expected = member_value(obj, name, index)?;
            match get(doc, &tokens) {
                Some(actual) if values_equal(actual, expected) => Ok(()),
                Some(_) => Err(PatchError::TestFailed {
                    path: path.to_string(),
                }),
                None => Err(missing(name, path)),
            }
        }
        other => Err(PatchError::bad(format!(
            "json patch operation {index}: unknown operation {other:?} (expected add, remove, replace, move, copy or test)"
        ))),
    }
}

fn member_str<'a>(
    obj: &'a Map<String, Value>,
    member: &str,
    op: &str,
    index: usize,
) -> Result<&'a str, PatchError> {
    match obj.get(member) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(PatchError::bad(format!(
            "json patch {op} operation {index}: \"{member}\" must be a string"
        ))),
        None => Err(PatchError::bad(format!(
            "json patch {op} operation {index} is missing the \"{member}\" member"
        ))),
    }
}

fn member_value<'a>(
    obj: &'a Map<String, Value>,
    op: &str,
    index: usize,
) -> Result<&'a Value, PatchError> {
    obj.get("value").ok_or_else(|| {
        PatchError::bad(format!(
            "json patch {op} operation {index} is missing the \"value\" member"
        ))
    })
}

fn missing(op: &str, path: &str) -> PatchError {
    PatchError::MissingPath {
        op: op.to_string(),
        path: path.to_string(),
    }
}

fn bad_index(op: &str, path: &str, token: &str) -> PatchError {
    PatchError::BadIndex {
        op: op.to_string(),
        path: path.to_string(),
        index: token.to_string(),
    }
}

/// Splits an RFC 6901 JSON pointer into unescaped reference tokens.
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::bad(format!(
            "invalid JSON pointer {pointer:?}: it must be empty or start with \"/\""
        )));
    };
    rest.split('/')
        .map(|raw| {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(PatchError::bad(format!(
                                "invalid JSON pointer {pointer:?}: \"~\" must be followed by \"0\" or \"1\""
                            )))
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Parses an array index token: a decimal number without leading zeros.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

/// Resolves a parsed pointer inside `doc`.
pub fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => array_index(t).and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => array_index(t).and_then(move |i| a.get_mut(i)),
        _ => None,
    })
}

fn add(
    doc: &mut Value,
    tokens: &[String],
    value: Value,
    op: &str,
    path: &str,
) -> Result<(), PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_tokens).ok_or_else(|| missing(op, path))?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            match array_index(last) {
                Some(i) if i <= a.len() => {
                    a.insert(i, value);
                    Ok(())
                }
                _ => Err(bad_index(op, path, last)),
            }
        }
        _ => Err(missing(op, path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value, PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err(PatchError::Invalid(format!(
            "{op} operation does not apply: the document root cannot be removed"
        )));
    };
    let parent = get_mut(doc, parent_tokens).ok_or_else(|| missing(op, path))?;
    match parent {
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| missing(op, path)),
        Value::Array(a) => match array_index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            Some(_) => Err(missing(op, path)),
            None => Err(bad_index(op, path, last)),
        },
        _ => Err(missing(op, path)),
    }
}

fn replace(
    doc: &mut Value,
    tokens: &[String],
    value: Value,
    op: &str,
    path: &str,
) -> Result<(), PatchError> {
    let target = get_mut(doc, tokens).ok_or_else(|| missing(op, path))?;
    *target = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "a/b": "x", "c~d": "y"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}
            }
        })
    }

    #[test]
    fn rollout_undo_replaces_template() {
        let patch = json!([{"op": "replace", "path": "/spec/template",
            "value": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.24"}]}}}]);
        let out = json_patch(&deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.24"
        );
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn add_remove_and_escapes() {
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/tier", "value": "frontend"},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
            {"op": "replace", "path": "/metadata/labels/c~0d", "value": "z"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "side"}},
            {"op": "add", "path": "/spec/template/spec/containers/0", "value": {"name": "first"}},
        ]);
        let out = json_patch(&deployment(), &patch).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "c~d": "z", "tier": "frontend"})
        );
        let names: Vec<_> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["first", "nginx", "side"]);
    }

    #[test]
    fn move_copy_test() {
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 2.0},
            {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
            {"op": "move", "from": "/metadata/labels/copy", "path": "/metadata/annotations"},
        ]);
        let out = json_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"], "web");
        assert!(out["metadata"]["labels"].get("copy").is_none());
    }

    #[test]
    fn errors_name_the_path() {
        let err = json_patch(
            &deployment(),
            &json!([{"op": "replace", "path": "/spec/strategy/type", "value": "x"}]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422);
        assert!(err.to_string().contains("\"/spec/strategy/type\""), "{err}");
        assert!(err
            .to_string()
            .starts_with("replace operation does not apply"));

        let err = json_patch(
            &deployment(),
            &json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/metadata/labels/nope"));

        let err = json_patch(
            &deployment(),
            &json!([{"op": "test", "path": "/spec/replicas", "value": 3}]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                path: "/spec/replicas".into()
            }
        );

        let err = json_patch(
            &deployment(),
            &json!([{"op": "add", "path": "/spec/template/spec/containers/5", "value": {}}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::BadIndex { .. }), "{err}");

        let err = json_patch(&deployment(), &json!({"op": "add"})).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(&deployment(), &json!([{"op": "frob", "path": "/a"}])).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(
            &deployment(),
            &json!([{"op": "add", "path": "a", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(
            &deployment(),
            &json!([{"op": "move", "from": "/spec", "path": "/spec/x"}]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn failed_patch_is_atomic_and_root_ops() {
        let doc = deployment();
        let res = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/x", "value": 1},
                {"op": "remove", "path": "/nope"}
            ]),
        );
        assert!(res.is_err());
        let out = json_patch(
            &doc,
            &json!([{"op": "replace", "path": "", "value": {"a": 1}}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": 1}));
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": ""}])).is_err());
        assert_eq!(json_patch(&doc, &json!([])).unwrap(), doc);
    }

    #[test]
    fn pointer_parsing() {
        assert_eq!(
            parse_pointer("/a~1b/c~0d/").unwrap(),
            vec!["a/b", "c~d", ""]
        );
        assert!(parse_pointer("/a~2").is_err());
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("10"), Some(10));
    }
}
