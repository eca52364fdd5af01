//! Service-account tokens: the JWTs `kubectl create token` asks for, their verification, and
//! the TokenRequest subresource (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`).
//!
//! Tokens are ES256 JWTs signed with the cluster's service-account key (`service.key` in the
//! TLS directory, made by [`crate::pki`] on first start and reused afterwards), with the
//! claim layout kube-apiserver uses: `aud`, `exp`, `iat`, `iss`
//! ([`ISSUER`]), `jti`, `nbf`, `sub` (`system:serviceaccount:NS:NAME`) and the private
//! `kubernetes.io` claim naming the namespace, the ServiceAccount (name and uid) and the
//! object the token is bound to (a Pod, with its Node when scheduled; a Secret; a Node).
//!
//! A presented token is accepted when the signature and issuer check, it is inside its
//! lifetime (60 s leeway, as upstream), one of its audiences is wanted, and the
//! ServiceAccount and bound object still exist with the uids the token names (so deleting
//! the ServiceAccount, or deleting and recreating it, revokes its tokens). Those lookups read
//! the watch cache; signature checks are remembered for a few seconds per token, so a client
//! sending the same token on every request costs a map lookup, not an ECDSA verification.
//!
//! The pure parts (claims, checks, request parsing) are functions with unit tests; the
//! [`ApiServer`] methods wire them to the cache. Bearer authentication lives in `auth.rs`,
//! TokenReview and SelfSubjectReview in `authentication.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::UserInfo;
use super::body::{self, Body, ContentType};
use super::objects::object_key;
use super::request::ResourcePath;
use super::status::{ApiError, ApiResult, Cause};
use super::ApiServer;
use crate::pki::PkiError;
use crate::registry::resources;

/// The issuer of every token, and the API server's only audience (kube-apiserver's
/// default `--service-account-issuer` in k3s).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// `spec.expirationSeconds` when a TokenRequest names none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime a TokenRequest may ask for.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Clock skew tolerated on `exp` and `nbf`, and on deletion times of bound objects.
pub const LEEWAY_SECONDS: i64 = 60;
/// How long a verified signature is remembered.
const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// At most this many remembered signatures (the map is cleared when full).
const VERIFIED_MAX: usize = 4096;

/// The `extra` keys of a service-account user, as kube-apiserver names them.
pub mod extra {
    pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
    pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
    pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
    pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
    pub const NODE_UID: &str = "authentication.kubernetes.io/node-uid";
}

/// Why a token could not be issued or was refused. The refusal messages are the ones
/// kube-apiserver puts in a TokenReview's `status.error`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("service-account token signing is not configured on this server")]
    NotConfigured,
    #[error("signing the service-account token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("invalid bearer token: {0}")]
    Malformed(String),
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotYetValid,
    #[error("token audiences {token:?} is invalid for the target audiences {wanted:?}")]
    Audience {
        token: Vec<String>,
        wanted: Vec<String>,
    },
    #[error("serviceaccounts \"{0}\" not found")]
    ServiceAccountNotFound(String),
    #[error("service account {namespace}/{name} has been deleted")]
    ServiceAccountDeleted { namespace: String, name: String },
    #[error("service account UID ({current}) does not match claim ({claim})")]
    ServiceAccountUid { current: String, claim: String },
    #[error("service account token has been invalidated")]
    Invalidated,
    #[error("{kind} UID ({current}) does not match service account {kind} ref claim ({claim})")]
    BoundUid {
        kind: &'static str,
        current: String,
        claim: String,
    },
}

/// A name and uid inside the `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> ObjectRef {
        ObjectRef {
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn of(obj: &Value) -> ObjectRef {
        ObjectRef::new(meta(obj, "name"), meta(obj, "uid"))
    }
}

/// The private `kubernetes.io` claim (fields in the order kube-apiserver writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default)]
    pub serviceaccount: ObjectRef,
}

/// Every claim of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
    #[serde(default)]
    pub nbf: i64,
    pub sub: String,
}

/// What a token is bound to, besides its ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    /// A pod, and the node it runs on when it is scheduled.
    Pod {
        pod: ObjectRef,
        node: Option<ObjectRef>,
    },
    Secret(ObjectRef),
    Node(ObjectRef),
}

/// The user name of a ServiceAccount.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The claims of a new token issued at `now` (Unix seconds).
pub fn claims(
    namespace: &str,
    serviceaccount: ObjectRef,
    bound: Option<&BoundObject>,
    audiences: Vec<String>,
    expiration_seconds: i64,
    now: i64,
    jti: String,
) -> Claims {
    let mut k = KubernetesClaim {
        namespace: namespace.to_string(),
        serviceaccount,
        ..Default::default()
    };
    match bound {
        Some(BoundObject::Pod { pod, node }) => {
            k.pod = Some(pod.clone());
            k.node = node.clone();
        }
        Some(BoundObject::Secret(s)) => k.secret = Some(s.clone()),
        Some(BoundObject::Node(n)) => k.node = Some(n.clone()),
        None => {}
    }
    Claims {
        aud: audiences,
        exp: now + expiration_seconds,
        iat: now,
        iss: ISSUER.to_string(),
        jti,
        nbf: now,
        sub: username(namespace, &k.serviceaccount.name),
        kubernetes: k,
    }
}

/// Signs and verifies tokens with the service-account key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
    verified: Mutex<HashMap<String, (Arc<Claims>, Instant)>>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From the PKCS#8 PEM of an ECDSA P-256 key (`Pki::service_account_key_pem`).
    pub fn from_pem(key_pem: &str) -> Result<TokenIssuer, PkiError> {
        let what = "service-account signing key";
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| PkiError::Parse {
            what: what.into(),
            reason: e.to_string(),
        })?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::Parse {
                what: what.into(),
                reason: "not an ECDSA P-256 key (ES256)".into(),
            });
        }
        let mut header = Header::new(Algorithm::ES256);
        // Like kube-apiserver: no `typ`, and a key id derived from the public key.
        header.typ = None;
        header.kid = Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(key.public_key_der())),
        );
        let mut validation = Validation::new(Algorithm::ES256);
        // Lifetime and audience are checked by `check_lifetime`/`matching_audiences`
        // against an explicit clock, so they can be tested.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[ISSUER]);
        Ok(TokenIssuer {
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(key.public_key_raw()),
            header,
            validation,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding).map_err(TokenError::Sign)
    }

    /// Signature, algorithm and issuer; the claims when they hold.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let now = Instant::now();
        {
            let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((claims, at)) = cache.get(token) {
                if now.duration_since(*at) < VERIFIED_TTL {
                    return Ok(claims.clone());
                }
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        let claims = Arc::new(data.claims);
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_MAX {
            cache.retain(|_, (_, at)| now.duration_since(*at) < VERIFIED_TTL);
            if cache.len() >= VERIFIED_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (claims.clone(), now));
        Ok(claims)
    }
}

/// Whether a string looks like a JWT (three base64url parts), so static tokens and other
/// garbage are not reported as broken service-account tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `exp` and `nbf` against `now` (Unix seconds), with [`LEEWAY_SECONDS`].
pub fn check_lifetime(c: &Claims, now: i64) -> Result<(), TokenError> {
    if now > c.exp + LEEWAY_SECONDS {
        return Err(TokenError::Expired);
    }
    if c.nbf > now + LEEWAY_SECONDS {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The wanted audiences the token carries (in the order wanted); an error when none.
pub fn matching_audiences(token: &[String], wanted: &[String]) -> Result<Vec<String>, TokenError> {
    let matched: Vec<String> = wanted
        .iter()
        .filter(|w| token.contains(w))
        .cloned()
        .collect();
    if matched.is_empty() {
        return Err(TokenError::Audience {
            token: token.to_vec(),
            wanted: wanted.to_vec(),
        });
    }
    Ok(matched)
}

/// Who a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pod: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    pub jti: String,
}

impl ServiceAccountInfo {
    /// The authenticated user, as kube-apiserver builds it for a service account.
    pub fn user_info(&self) -> UserInfo {
        let mut u = UserInfo::new(
            username(&self.namespace, &self.name),
            vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{}", self.namespace),
            ],
        );
        u.uid = self.uid.clone();
        if !self.jti.is_empty() {
            u.extra.insert(
                extra::CREDENTIAL_ID.into(),
                vec![format!("JTI={}", self.jti)],
            );
        }
        if let Some(pod) = &self.pod {
            u.extra
                .insert(extra::POD_NAME.into(), vec![pod.name.clone()]);
            u.extra.insert(extra::POD_UID.into(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &self.node {
            u.extra
                .insert(extra::NODE_NAME.into(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                u.extra
                    .insert(extra::NODE_UID.into(), vec![node.uid.clone()]);
            }
        }
        u
    }
}

/// Whether an object was deleted (has a deletionTimestamp) before `now - leeway`.
fn deleted_before_leeway(obj: &Value, now: i64) -> bool {
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < now - LEEWAY_SECONDS)
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

/// Checks that the ServiceAccount and the bound object still exist with the uids in the
/// claims. `get(plural, namespace, name)` reads a core/v1 object.
pub fn check_objects(
    c: &Claims,
    now: i64,
    get: impl Fn(&str, Option<&str>, &str) -> Option<Arc<Value>>,
) -> Result<ServiceAccountInfo, TokenError> {
    let k = &c.kubernetes;
    let ns = k.namespace.as_str();
    let sa_ref = &k.serviceaccount;
    if ns.is_empty() || sa_ref.name.is_empty() {
        return Err(TokenError::Malformed(
            "the token names no service account".into(),
        ));
    }
    let sa = get("serviceaccounts", Some(ns), &sa_ref.name)
        .ok_or_else(|| TokenError::ServiceAccountNotFound(sa_ref.name.clone()))?;
    if deleted_before_leeway(&sa, now) {
        return Err(TokenError::ServiceAccountDeleted {
            namespace: ns.to_string(),
            name: sa_ref.name.clone(),
        });
    }
    if meta(&sa, "uid") != sa_ref.uid {
        return Err(TokenError::ServiceAccountUid {
            current: meta(&sa, "uid").to_string(),
            claim: sa_ref.uid.clone(),
        });
    }
    let check_bound = |plural: &str,
                       kind: &'static str,
                       namespace: Option<&str>,
                       r: &ObjectRef|
     -> Result<(), TokenError> {
        let obj = get(plural, namespace, &r.name).ok_or(TokenError::Invalidated)?;
        if deleted_before_leeway(&obj, now) {
            return Err(TokenError::Invalidated);
        }
        if meta(&obj, "uid") != r.uid {
            return Err(TokenError::BoundUid {
                kind,
                current: meta(&obj, "uid").to_string(),
                claim: r.uid.clone(),
            });
        }
        Ok(())
    };
    if let Some(secret) = &k.secret {
        check_bound("secrets", "secret", Some(ns), secret)?;
    }
    if let Some(pod) = &k.pod {
        check_bound("pods", "pod", Some(ns), pod)?;
    } else if let Some(node) = &k.node {
        // A token bound to the node itself (for pod-bound tokens the node is information).
        check_bound("nodes", "node", None, node)?;
    }
    Ok(ServiceAccountInfo {
        namespace: ns.to_string(),
        name: sa_ref.name.clone(),
        uid: sa_ref.uid.clone(),
        pod: k.pod.clone(),
        node: k.node.clone(),
        jti: c.jti.clone(),
    })
}

/// `spec.boundObjectRef` of a TokenRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObjectRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// A decoded, defaulted and validated TokenRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSpec {
    /// Empty means the API server's audiences.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundObjectRef>,
}

const TOKEN_REQUEST_KIND: &str = "TokenRequest.authentication.k8s.io";
const AUTHN_GROUP: &str = "authentication.k8s.io";

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    let message = format!("Invalid value: {value}: {detail}");
    ApiError::Invalid {
        kind: TOKEN_REQUEST_KIND.into(),
        group: AUTHN_GROUP.into(),
        name: name.into(),
        summary: format!("{field}: {message}"),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    }
}

fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Reads a TokenRequest body for ServiceAccount `namespace/name`: metadata must match the
/// ServiceAccount when given, `expirationSeconds` defaults to an hour and must lie in
/// [10 minutes, 2^32 seconds] (kube-apiserver's validation and wording).
pub fn parse_token_request(
    req: &Value,
    namespace: &str,
    name: &str,
) -> ApiResult<TokenRequestSpec> {
    let req_name = meta(req, "name");
    if !req_name.is_empty() && req_name != name {
        return Err(invalid(
            name,
            "metadata.name",
            &go_quote(req_name),
            "must match the service account name if specified",
        ));
    }
    let req_ns = meta(req, "namespace");
    if !req_ns.is_empty() && req_ns != namespace {
        return Err(invalid(
            name,
            "metadata.namespace",
            &go_quote(req_ns),
            "must match the service account namespace if specified",
        ));
    }
    let spec = &req["spec"];
    let audiences = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "spec.expirationSeconds must be an integer, got {v}"
            ))
        })?,
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match &spec["boundObjectRef"] {
        Value::Object(r) => {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(BoundObjectRef {
                api_version: s("apiVersion"),
                kind: s("kind"),
                name: s("name"),
                uid: s("uid"),
            })
        }
        _ => None,
    };
    Ok(TokenRequestSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl ApiServer {
    /// Turns on TokenRequest and service-account bearer tokens, signing with `key_pem`.
    pub fn enable_service_account_tokens(&self, key_pem: &str) -> Result<(), PkiError> {
        let issuer = TokenIssuer::from_pem(key_pem)?;
        if self.service_account_tokens.set(issuer).is_err() {
            tracing::warn!(
                "service-account token signing was already enabled; keeping the first key"
            );
        }
        Ok(())
    }

    /// A core/v1 object from the watch cache.
    fn cached_core(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let r = resources::find("", "v1", plural)?;
        self.cache
            .get(&object_key(r, namespace, name))
            .map(|o| Arc::new(o.value()))
    }

    /// Authenticates a service-account token for one of `audiences`; returns who it names and
    /// the audiences it was accepted for.
    pub fn authenticate_service_account_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(ServiceAccountInfo, Vec<String>), TokenError> {
        let issuer = self
            .service_account_tokens
            .get()
            .ok_or(TokenError::NotConfigured)?;
        let claims = issuer.verify(token)?;
        let now = chrono::Utc::now().timestamp();
        check_lifetime(&claims, now)?;
        let matched = matching_audiences(&claims.aud, audiences)?;
        let info = check_objects(&claims, now, |plural, ns, name| {
            self.cached_core(plural, ns, name)
        })?;
        Ok((info, matched))
    }

    /// `POST .../serviceaccounts/{name}/token`: issue a token (201 with the TokenRequest and
    /// `status.token`).
    pub(crate) async fn create_token(
        &self,
        p: &ResourcePath,
        ct: ContentType,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let issuer = self
            .service_account_tokens
            .get()
            .ok_or_else(|| ApiError::NotImplemented(TokenError::NotConfigured.to_string()))?;
        let namespace = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        let req = if bytes.is_empty() {
            json!({})
        } else {
            body::decode_object(ct, bytes)?
        };
        let spec = parse_token_request(&req, &namespace, &name)?;

        let read = |plural: &'static str, ns: Option<String>, obj_name: String| async move {
            let r = resources::find("", "v1", plural).ok_or(ApiError::NoRoute)?;
            self.read_object(&object_key(r, ns.as_deref(), &obj_name))
                .await
                .ok_or(ApiError::NotFound {
                    qualified: plural.to_string(),
                    name: obj_name,
                })
        };
        let sa = read("serviceaccounts", Some(namespace.clone()), name.clone()).await?;

        let bound = match &spec.bound {
            None => None,
            Some(r) => {
                let (group, version) = r
                    .api_version
                    .rsplit_once('/')
                    .unwrap_or(("", &r.api_version));
                let (obj, bound) = match (group, r.kind.as_str()) {
                    ("", "Pod") => {
                        let pod = read("pods", Some(namespace.clone()), r.name.clone()).await?;
                        // Pods without one run as `default` (the ServiceAccount
                        // admission step writes it on create; older pods may lack it).
                        let pod_sa = pod["spec"]["serviceAccountName"]
                            .as_str()
                            .filter(|s| !s.is_empty())
                            .unwrap_or("default");
                        if pod_sa != name {
                            return Err(ApiError::BadRequest(format!(
                                "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                                go_quote(&name)
                            )));
                        }
                        // The node a scheduled pod runs on goes into the claims too; only
                        // its name when the Node object is gone.
                        let node = pod["spec"]["nodeName"]
                            .as_str()
                            .filter(|n| !n.is_empty())
                            .map(|node_name| {
                                self.cached_core("nodes", None, node_name)
                                    .map(|n| ObjectRef::of(&n))
                                    .unwrap_or_else(|| ObjectRef::new(node_name, ""))
                            });
                        let b = BoundObject::Pod {
                            pod: ObjectRef::of(&pod),
                            node,
                        };
                        (pod, b)
                    }
                    ("", "Secret") => {
                        let secret =
                            read("secrets", Some(namespace.clone()), r.name.clone()).await?;
                        let b = BoundObject::Secret(ObjectRef::of(&secret));
                        (secret, b)
                    }
                    ("", "Node") => {
                        let node = read("nodes", None, r.name.clone()).await?;
                        let b = BoundObject::Node(ObjectRef::of(&node));
                        (node, b)
                    }
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "cannot bind token to object of type {group}/{version}, Kind={}",
                            r.kind
                        )))
                    }
                };
                if !r.uid.is_empty() && meta(&obj, "uid") != r.uid {
                    return Err(ApiError::Conflict {
                        qualified: r.kind.clone(),
                        name: r.name.clone(),
                        detail: format!(
                            "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                            r.uid
                        ),
                    });
                }
                Some(bound)
            }
        };

        let audiences = if spec.audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            spec.audiences.clone()
        };
        let now = chrono::Utc::now().timestamp();
        let c = claims(
            &namespace,
            ObjectRef::of(&sa),
            bound.as_ref(),
            audiences.clone(),
            spec.expiration_seconds,
            now,
            uuid::Uuid::new_v4().to_string(),
        );
        let token = issuer
            .sign(&c)
            .map_err(|e| ApiError::Internal(format!("failed to generate token: {e}")))?;
        tracing::debug!(namespace = %namespace, serviceaccount = %name, exp = c.exp, "issued service-account token");

        let mut spec_json = json!({
            "audiences": audiences,
            "expirationSeconds": spec.expiration_seconds,
            "boundObjectRef": null,
        });
        if let Some(r) = &spec.bound {
            let uid = bound
                .as_ref()
                .map(|b| match b {
                    BoundObject::Pod { pod, .. } => pod.uid.clone(),
                    BoundObject::Secret(o) | BoundObject::Node(o) => o.uid.clone(),
                })
                .unwrap_or_default();
            spec_json["boundObjectRef"] = json!({
                "kind": r.kind, "apiVersion": r.api_version, "name": r.name, "uid": uid,
            });
        }
        let mut metadata = req["metadata"].as_object().cloned().unwrap_or_default();
        metadata.insert("name".into(), json!(name));
        metadata.insert("namespace".into(), json!(namespace));
        metadata.insert("creationTimestamp".into(), json!(rfc3339(now)));
        let out = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": metadata,
            "spec": spec_json,
            "status": {
                "token": token,
                "expirationTimestamp": rfc3339(c.exp),
            },
        });
        Ok(body::json(201, &out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_pem()
    }

    fn sample(now: i64, bound: Option<&BoundObject>) -> Claims {
        claims(
            "team",
            ObjectRef::new("robot", "sa-uid"),
            bound,
            vec![ISSUER.to_string()],
            600,
            now,
            "jti-1".into(),
        )
    }

    fn obj(name: &str, uid: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "uid": uid}}))
    }

    fn b64_json(part: &str) -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn token_has_upstream_claim_layout_and_verifies() {
        let issuer = TokenIssuer::from_pem(&key_pem()).expect("issuer");
        let pod = BoundObject::Pod {
            pod: ObjectRef::new("web-0", "pod-uid"),
            node: Some(ObjectRef::new("node-1", "node-uid")),
        };
        let c = sample(1_700_000_000, Some(&pod));
        let token = issuer.sign(&c).expect("sign");
        assert!(looks_like_jwt(&token));
        let parts: Vec<&str> = token.split('.').collect();
        let header = b64_json(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert!(header.get("typ").is_none());
        assert!(header["kid"].as_str().is_some_and(|k| k.len() == 43));
        let payload = b64_json(parts[1]);
        let keys: Vec<&str> = payload
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "aud",
                "exp",
                "iat",
                "iss",
                "jti",
                "kubernetes.io",
                "nbf",
                "sub"
            ]
        );
        assert_eq!(payload["sub"], "system:serviceaccount:team:robot");
        assert_eq!(payload["iss"], ISSUER);
        assert_eq!(payload["exp"], 1_700_000_600);
        assert_eq!(
            payload["kubernetes.io"],
            json!({"namespace": "team", "node": {"name": "node-1", "uid": "node-uid"},
                   "pod": {"name": "web-0", "uid": "pod-uid"},
                   "serviceaccount": {"name": "robot", "uid": "sa-uid"}})
        );
        assert_eq!(*issuer.verify(&token).expect("verify"), c);
        // Cached: the same answer again.
        assert_eq!(*issuer.verify(&token).expect("verify twice"), c);
    }

    #[test]
    fn other_keys_tampering_and_foreign_issuers_are_refused() {
        let issuer = TokenIssuer::from_pem(&key_pem()).expect("issuer");
        let other = TokenIssuer::from_pem(&key_pem()).expect("other");
        let c = sample(1_700_000_000, None);
        let token = other.sign(&c).expect("sign");
        assert!(matches!(
            issuer.verify(&token),
            Err(TokenError::Malformed(_))
        ));

        let good = issuer.sign(&c).expect("sign");
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged = c.clone();
        forged.kubernetes.serviceaccount.name = "admin".into();
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).expect("json"));
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(issuer.verify(&tampered).is_err());

        let mut foreign = c.clone();
        foreign.iss = "https://elsewhere".into();
        let t = issuer.sign(&foreign).expect("sign");
        assert!(issuer.verify(&t).is_err());
        assert!(issuer.verify("not-a-jwt").is_err());
        assert!(!looks_like_jwt("abc"));
        assert!(!looks_like_jwt("a.b.c d"));
    }

    #[test]
    fn lifetime_is_checked_with_a_minute_of_leeway() {
        let c = sample(1000, None); // valid 1000..1600
        assert!(check_lifetime(&c, 1000).is_ok());
        assert!(check_lifetime(&c, 1660).is_ok());
        assert!(matches!(check_lifetime(&c, 1661), Err(TokenError::Expired)));
        assert!(check_lifetime(&c, 940).is_ok());
        assert!(matches!(
            check_lifetime(&c, 939),
            Err(TokenError::NotYetValid)
        ));
        assert_eq!(
            TokenError::Expired.to_string(),
            "service account token has expired"
        );
    }

    #[test]
    fn audiences_must_intersect() {
        let tok = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            matching_audiences(&tok, &["b".into(), "c".into()]).expect("match"),
            vec!["b".to_string()]
        );
        assert!(matching_audiences(&tok, &["c".into()]).is_err());
    }

    #[test]
    fn service_account_and_bound_objects_must_still_exist() {
        let now = 1_700_000_000;
        let pod = BoundObject::Pod {
            pod: ObjectRef::new("web-0", "pod-uid"),
            node: Some(ObjectRef::new("node-1", "")),
        };
        let c = sample(now, Some(&pod));
        let all = |plural: &str, _: Option<&str>, name: &str| match (plural, name) {
            ("serviceaccounts", "robot") => Some(obj("robot", "sa-uid")),
            ("pods", "web-0") => Some(obj("web-0", "pod-uid")),
            _ => None,
        };
        let info = check_objects(&c, now, all).expect("valid");
        let user = info.user_info();
        assert_eq!(user.name, "system:serviceaccount:team:robot");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(user.extra[extra::POD_NAME], ["web-0"]);
        assert_eq!(user.extra[extra::POD_UID], ["pod-uid"]);
        assert_eq!(user.extra[extra::NODE_NAME], ["node-1"]);
        assert!(!user.extra.contains_key(extra::NODE_UID));
        assert_eq!(user.extra[extra::CREDENTIAL_ID], ["JTI=jti-1"]);

        // The ServiceAccount deleted, or recreated with another uid.
        let gone = |_: &str, _: Option<&str>, _: &str| None;
        assert!(matches!(
            check_objects(&c, now, gone),
            Err(TokenError::ServiceAccountNotFound(_))
        ));
        let recreated = |plural: &str, _: Option<&str>, name: &str| match plural {
            "serviceaccounts" => Some(obj(name, "new-uid")),
            _ => Some(obj(name, "pod-uid")),
        };
        let err = check_objects(&c, now, recreated).expect_err("uid changed");
        assert_eq!(
            err.to_string(),
            "service account UID (new-uid) does not match claim (sa-uid)"
        );
        // The bound pod gone, recreated, or deleted for longer than the leeway.
        let no_pod = |plural: &str, _: Option<&str>, name: &str| {
            (plural == "serviceaccounts").then(|| obj(name, "sa-uid"))
        };
        assert!(matches!(
            check_objects(&c, now, no_pod),
            Err(TokenError::Invalidated)
        ));
        let pod_recreated = |plural: &str, _: Option<&str>, name: &str| match plural {
            "serviceaccounts" => Some(obj(name, "sa-uid")),
            _ => Some(obj(name, "other")),
        };
        assert!(matches!(
            check_objects(&c, now, pod_recreated),
            Err(TokenError::BoundUid { kind: "pod", .. })
        ));
        let deleting = |when: i64| {
            move |plural: &str, _: Option<&str>, name: &str| match plural {
                "serviceaccounts" => Some(obj(name, "sa-uid")),
                _ => Some(Arc::new(
                    json!({"metadata": {"name": name, "uid": "pod-uid",
                    "deletionTimestamp": rfc3339(when)}}),
                )),
            }
        };
        assert!(check_objects(&c, now, deleting(now - 30)).is_ok());
        assert!(check_objects(&c, now, deleting(now - 61)).is_err());
    }

    #[test]
    fn node_bound_tokens_check_the_node() {
        let now = 1_700_000_000;
        let c = sample(now, Some(&BoundObject::Node(ObjectRef::new("n1", "n-uid"))));
        let with_node = |uid: &'static str| {
            move |plural: &str, _: Option<&str>, name: &str| match plural {
                "serviceaccounts" => Some(obj(name, "sa-uid")),
                "nodes" => Some(obj(name, uid)),
                _ => None,
            }
        };
        let info = check_objects(&c, now, with_node("n-uid")).expect("valid");
        assert_eq!(info.user_info().extra[extra::NODE_UID], ["n-uid"]);
        assert!(check_objects(&c, now, with_node("other")).is_err());
    }

    #[test]
    fn token_request_defaults_and_validation() {
        let spec = parse_token_request(&json!({"spec": {}}), "default", "default").expect("ok");
        assert_eq!(spec.expiration_seconds, 3600);
        assert!(spec.audiences.is_empty());
        assert!(spec.bound.is_none());

        let spec = parse_token_request(
            &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u"}}}),
            "default",
            "default",
        )
        .expect("ok");
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.expiration_seconds, 600);
        assert_eq!(
            spec.bound,
            Some(BoundObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: "web".into(),
                uid: "u".into()
            })
        );

        let err = parse_token_request(&json!({"spec": {"expirationSeconds": 60}}), "d", "d")
            .expect_err("too short");
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        let err = parse_token_request(
            &json!({"spec": {"expirationSeconds": 5_000_000_000_i64}}),
            "d",
            "d",
        )
        .expect_err("too long");
        assert!(err.to_string().contains("larger than 2^32 seconds"));
        let err = parse_token_request(&json!({"metadata": {"name": "x"}, "spec": {}}), "d", "d")
            .expect_err("name mismatch");
        assert!(err.to_string().contains(
            "metadata.name: Invalid value: \"x\": must match the service account name if specified"
        ));
    }
}
