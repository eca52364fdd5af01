//! The authentication.k8s.io/v1 review endpoints, answered from what the request carries and
//! never stored: TokenReview (`POST /apis/authentication.k8s.io/v1/tokenreviews`, "who does
//! this bearer token name, for these audiences?") and SelfSubjectReview
//! (`POST /apis/authentication.k8s.io/v1/selfsubjectreviews`, "who am I?", which
//! `kubectl auth whoami` asks).

use http::Response;
use serde_json::{json, Map, Value};

use super::auth::UserInfo;
use super::body::{self, Body, ContentType};
use super::serviceaccount_token::ISSUER;
use super::status::{ApiError, ApiResult};
use super::ApiServer;

/// authentication/v1 `UserInfo` JSON (uid and extra only when set, as Go's omitempty).
pub fn user_info_json(user: &UserInfo) -> Value {
    let mut out = Map::new();
    out.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        out.insert("uid".into(), json!(user.uid));
    }
    out.insert("groups".into(), json!(user.groups));
    if !user.extra.is_empty() {
        out.insert("extra".into(), json!(user.extra));
    }
    Value::Object(out)
}

/// Fills `review.status` for a TokenReview. `authenticate(token, audiences)` is the server's
/// token authentication; an empty `spec.audiences` means the API server's own ([`ISSUER`]).
pub fn token_review(
    mut review: Value,
    authenticate: impl Fn(&str, &[String]) -> Result<(UserInfo, Vec<String>), String>,
) -> ApiResult<Value> {
    let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is required for TokenReview in authentication.k8s.io".into(),
        ));
    }
    let wanted: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    review["status"] = match authenticate(&token, &wanted) {
        Ok((user, audiences)) => json!({
            "authenticated": true,
            "user": user_info_json(&user),
            "audiences": audiences,
        }),
        Err(error) => json!({"user": {}, "error": error}),
    };
    set_type(&mut review, "TokenReview");
    Ok(review)
}

/// A SelfSubjectReview answered for `user`.
pub fn self_subject_review(mut review: Value, user: &UserInfo) -> Value {
    review["status"] = json!({"userInfo": user_info_json(user)});
    set_type(&mut review, "SelfSubjectReview");
    review
}

/// Sets kind and apiVersion and orders the fields as kube-apiserver writes them.
fn set_type(review: &mut Value, kind: &str) {
    let mut fields = match review.take() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut metadata = match fields.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    out.insert("metadata".into(), Value::Object(metadata));
    for key in ["spec", "status"] {
        if let Some(v) = fields.remove(key) {
            out.insert(key.into(), v);
        }
    }
    *review = Value::Object(out);
}

fn decode(ct: ContentType, bytes: &[u8]) -> ApiResult<Value> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    body::decode_object(ct, bytes)
}

impl ApiServer {
    /// `POST tokenreviews`: 201 with the review and its status.
    pub(crate) fn create_token_review(
        &self,
        ct: ContentType,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let review = token_review(decode(ct, bytes)?, |t, a| self.authenticate_token(t, a))?;
        Ok(body::json(201, &review))
    }

    /// `POST selfsubjectreviews`: 201 with the caller's user info.
    pub(crate) fn create_self_subject_review(
        &self,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        Ok(body::json(
            201,
            &self_subject_review(decode(ct, bytes)?, user),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot() -> UserInfo {
        let mut u = UserInfo::new(
            "system:serviceaccount:ns:robot",
            vec!["system:serviceaccounts".into()],
        );
        u.uid = "u1".into();
        u.extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec!["web".into()],
        );
        u
    }

    #[test]
    fn token_review_reports_user_and_audiences() {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                            "spec": {"token": "good"}});
        let out = token_review(review, |t, a| {
            assert_eq!(a, [ISSUER]);
            if t == "good" {
                Ok((robot(), a.to_vec()))
            } else {
                Err("invalid bearer token".into())
            }
        })
        .expect("review");
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(
            out["status"]["user"]["username"],
            "system:serviceaccount:ns:robot"
        );
        assert_eq!(out["status"]["user"]["uid"], "u1");
        assert_eq!(
            out["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["web"])
        );
        assert_eq!(out["status"]["audiences"], json!([ISSUER]));
        assert_eq!(out["metadata"]["creationTimestamp"], Value::Null);
    }

    #[test]
    fn token_review_of_a_bad_token_is_unauthenticated_and_needs_a_token() {
        let review = json!({"spec": {"token": "bad", "audiences": ["vault"]}});
        let out = token_review(review, |_, a| {
            assert_eq!(a, ["vault"]);
            Err("invalid bearer token".into())
        })
        .expect("review");
        assert!(out["status"].get("authenticated").is_none());
        assert_eq!(out["status"]["error"], "invalid bearer token");
        assert_eq!(out["kind"], "TokenReview");
        let err =
            token_review(json!({"spec": {}}), |_, _| Err(String::new())).expect_err("no token");
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn self_subject_review_shows_the_caller() {
        let out = self_subject_review(json!({}), &UserInfo::system());
        assert_eq!(
            out["status"]["userInfo"],
            json!({"username": "system:skiff", "groups": ["system:masters", "system:authenticated"]})
        );
        assert_eq!(out["kind"], "SelfSubjectReview");
    }
}
