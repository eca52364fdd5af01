//! RFC 7386 JSON merge patch (`application/merge-patch+json`).
//!
//! Owns the schema-less merge: objects merge key by key, `null` deletes a
//! key, anything else (including arrays) replaces the target wholesale.
//! kubectl sends this for `kubectl patch --type=merge` and for
//! `kubectl label/annotate` on custom resources, e.g.
//! `{"metadata":{"labels":{"k":null}}}` to remove a label.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch to `doc` and returns the result.
///
/// Keys keep their position in `doc`; keys new to `doc` are appended in
/// patch order.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            out.shift_remove(key);
            continue;
        }
        let merged = merge_patch(out.get(key).unwrap_or(&Value::Null), value);
        out.insert(key.clone(), merged);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_removal_and_addition() {
        let doc = json!({"metadata": {"name": "x", "labels": {"a": "1", "k": "v", "z": "2"}}});
        let out = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"k": null, "new": "n"}}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"name": "x", "labels": {"a": "1", "z": "2", "new": "n"}}})
        );
        // Order of surviving keys is kept.
        let keys: Vec<_> = out["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["a", "z", "new"]);
    }

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch), want, "doc={doc} patch={patch}");
        }
    }
}
