//! Patch machinery of the API server: everything that turns "the stored
//! object + a client-supplied document" into "the next object".
//!
//! * [`json_patch`](mod@json_patch) — RFC 6902 JSON patch (`application/json-patch+json`).
//! * [`merge_patch`](mod@merge_patch) — RFC 7386 JSON merge patch (`application/merge-patch+json`).
//! * [`strategic`] — Kubernetes strategic merge patch
//!   (`application/strategic-merge-patch+json`), used by kubectl's
//!   client-side `apply`, `edit`, `label`, `scale`, ...
//! * [`schema`] — the compact, hand-written description of built-in kinds:
//!   which lists are merged by key, which are sets, which structs are atomic.
//!   Shared by strategic merge patch and server-side apply.
//! * [`fieldset`] — field paths and sets of field paths, and their
//!   `FieldsV1` encoding as stored in `metadata.managedFields`.
//! * [`apply`] — server-side apply (`application/apply-patch+yaml`) and the
//!   `managedFields` bookkeeping done for every other write.
//!
//! This module owns the [`PatchError`] type shared by the patch formats; the
//! server-side apply entry point reports conflicts through
//! [`apply::ApplyError`].

pub mod apply;
pub mod fieldset;
pub mod json_patch;
pub mod merge_patch;
pub mod schema;
pub mod strategic;

pub use apply::{
    record_subresource_update, record_update, server_side_apply, ApplyError, Conflict,
};
pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use strategic::strategic_merge_patch;

use serde_json::Value;

/// Group, version and kind of the object being patched, e.g.
/// `("apps", "v1", "Deployment")` or `("", "v1", "Pod")`.
pub type Gvk<'a> = (&'a str, &'a str, &'a str);

/// Everything that can go wrong while applying a patch document.
///
/// Messages are written for kubectl users: they end up verbatim in the
/// `message` of the `metav1.Status` the API server answers with. Use
/// [`PatchError::status_code`] and [`PatchError::reason`] to fill in the rest
/// of that Status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not well formed (wrong JSON shape, unknown
    /// operation, bad JSON pointer, malformed directive, ...).
    #[error("{0}")]
    BadRequest(String),

    /// A JSON patch operation refers to a location that does not exist.
    #[error("{op} operation does not apply: doc is missing path: \"{path}\": missing value")]
    MissingPath {
        /// The JSON patch operation (`add`, `remove`, ...).
        op: String,
        /// The JSON pointer that could not be resolved.
        path: String,
    },

    /// A JSON patch operation refers to an array index that is out of range
    /// or not a number.
    #[error("{op} operation does not apply: invalid array index {index:?} in path \"{path}\"")]
    BadIndex {
        /// The JSON patch operation.
        op: String,
        /// The JSON pointer.
        path: String,
        /// The offending reference token.
        index: String,
    },

    /// A JSON patch `test` operation did not match.
    #[error("testing value {path} failed: test failed")]
    TestFailed {
        /// The JSON pointer that was tested.
        path: String,
    },

    /// The patch is well formed but cannot be applied to this object.
    #[error("{0}")]
    Invalid(String),

    /// Strategic merge patch was requested for a kind this server has no
    /// patch metadata for (custom resources). kube-apiserver answers 415.
    #[error("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {kind}{})", if group.is_empty() { String::new() } else { format!(".{group}") })]
    UnsupportedKind {
        /// API group of the kind.
        group: String,
        /// API version of the kind.
        version: String,
        /// The kind.
        kind: String,
    },
}

impl PatchError {
    /// HTTP status code kube-apiserver uses for this kind of failure.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::UnsupportedKind { .. } => 415,
            PatchError::MissingPath { .. }
            | PatchError::BadIndex { .. }
            | PatchError::TestFailed { .. }
            | PatchError::Invalid(_) => 422,
        }
    }

    /// The `reason` field of the `metav1.Status`.
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            400 => "BadRequest",
            415 => "UnsupportedMediaType",
            _ => "Invalid",
        }
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        PatchError::BadRequest(msg.into())
    }
}

/// JSON equality that treats numbers by value (`80`, `80.0` and `8e1` are
/// equal), the way decoded Kubernetes objects compare.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Short, single-line rendering of a JSON value for error messages.
pub(crate) fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(values_equal(&json!(80), &json!(80.0)));
        assert!(values_equal(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]})));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!values_equal(&json!("80"), &json!(80)));
    }

    #[test]
    fn error_codes() {
        let e = PatchError::UnsupportedKind {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
        };
        assert_eq!(e.status_code(), 415);
        assert!(e.to_string().contains("Widget.example.com"));
        assert_eq!(PatchError::bad("x").reason(), "BadRequest");
    }
}
