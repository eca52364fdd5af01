//! API errors and their wire form: every failure leaves the server as a metav1 `Status`
//! with the code, reason and message formats kubectl prints.

use serde_json::{json, Value};

/// One cause inside `details.causes` (field errors, conflicts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// Everything the API server can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{qualified} \"{name}\" not found")]
    NotFound { qualified: String, name: String },
    #[error("{qualified} \"{name}\" already exists")]
    AlreadyExists { qualified: String, name: String },
    #[error("Operation cannot be fulfilled on {qualified} \"{name}\": {detail}")]
    Conflict {
        qualified: String,
        name: String,
        detail: String,
    },
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{kind} \"{name}\" is invalid: {summary}")]
    Invalid {
        /// `Deployment.apps`, or `ConfigMap` for the core group.
        kind: String,
        group: String,
        name: String,
        summary: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A 404 for a path that names no resource (no details, like kube's plain 404).
    #[error("the server could not find the requested resource")]
    NoRoute,
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Gone(_) | ApiError::Expired(_) => 410,
            ApiError::NotImplemented(_) => 501,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Gone(_) => "Gone",
            ApiError::Expired(_) => "Expired",
            ApiError::NotImplemented(_) => "NotImplemented",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    /// The metav1 Status body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { qualified, name }
            | ApiError::AlreadyExists { qualified, name }
            | ApiError::Conflict {
                qualified, name, ..
            } => Some(details(qualified, name, &[])),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
                ..
            } => {
                let bare_kind = kind.split('.').next().unwrap_or(kind);
                let mut d = json!({"name": name, "kind": bare_kind, "causes": causes_json(causes)});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({"causes": causes_json(causes)})),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        if matches!(self, ApiError::NoRoute) {
            status["message"] = json!("the server could not find the requested resource");
        }
        status
    }
}

/// `details` for errors about one named object: `{name, group, kind}` where kind is the
/// plural resource, as kube-apiserver sets it.
fn details(qualified: &str, name: &str, causes: &[Cause]) -> Value {
    let (resource, group) = qualified.split_once('.').unwrap_or((qualified, ""));
    let mut d = json!({"name": name, "kind": resource});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    if !causes.is_empty() {
        d["causes"] = causes_json(causes);
    }
    d
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect(),
    )
}

/// A success Status (delete of a collection, eviction).
pub fn success_status(details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kube() {
        let e = ApiError::NotFound {
            qualified: "deployments.apps".into(),
            name: "web".into(),
        };
        let s = e.to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn conflict_message() {
        let e = ApiError::Conflict {
            qualified: "configmaps".into(),
            name: "c".into(),
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        };
        assert_eq!(e.to_string(), "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again");
        assert_eq!(e.code(), 409);
    }
}
