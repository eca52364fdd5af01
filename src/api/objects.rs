//! Object handlers: get, list, create, update, patch, delete and deletecollection of
//! stored resources, including the `status` and `scale` subresources. This is where the
//! generic API machinery lives (metadata, preconditions, field validation, dry-run,
//! graceful deletion, finalizers); kind knowledge comes from `crate::registry`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::Response;
use serde_json::{json, Map, Value};

use super::body::{self, Body, ContentType};
use super::cache::{decode, set_resource_version, CachedObject};
use super::request::{Accept, Query, ResourcePath};
use super::selector::LabelSelector;
use super::status::{success_status, ApiError, ApiResult, Cause};
use super::{patch, table, ApiServer, UserInfo};
use crate::registry::fields::FieldSelector;
use crate::registry::resources::{self, ResourceInfo};
use crate::registry::{defaults, typed, validation};
use crate::store::{KeyValue, StoreError};

/// How many times a write retries after losing a compare-and-swap race it did not ask for.
const WRITE_RETRIES: usize = 8;

/// The storage key of an object.
pub fn object_key(r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/{name}", r.storage_prefix()),
        _ => format!("{}{name}", r.storage_prefix()),
    }
}

/// The key prefix of a list (one namespace, or everything).
/// A list body: `head` (kind, apiVersion, metadata) with the cached objects' JSON copied
/// in as `items`, without decoding them.
fn list_json(head: &Value, items: &[Arc<CachedObject>]) -> Vec<u8> {
    let mut out = serde_json::to_vec(head).unwrap_or_else(|_| b"{}".to_vec());
    out.pop(); // the closing brace
    if out.len() > 1 {
        out.push(b',');
    }
    out.reserve(items.iter().map(|o| o.json.len() + 1).sum::<usize>() + 12);
    out.extend_from_slice(b"\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&o.json);
    }
    out.extend_from_slice(b"]}");
    out
}

pub fn list_prefix(r: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/", r.storage_prefix()),
        _ => r.storage_prefix(),
    }
}

pub(crate) fn not_found(r: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        qualified: r.qualified_plural(),
        name: name.to_string(),
    }
}

fn conflict(r: &ResourceInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        qualified: r.qualified_plural(),
        name: name.to_string(),
        detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

pub fn store_error(r: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => not_found(r, name),
        StoreError::AlreadyExists { .. } => ApiError::AlreadyExists {
            qualified: r.qualified_plural(),
            name: name.to_string(),
        },
        StoreError::Conflict { .. } => conflict(r, name),
        StoreError::Expired {
            requested,
            compacted,
        } => ApiError::Expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        other => ApiError::Internal(format!("storage error: {other}")),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Kinds whose spec changes bump `metadata.generation` (controllers compare it with
/// `status.observedGeneration`).
fn tracks_generation(r: &ResourceInfo) -> bool {
    matches!(
        r.group,
        "apps" | "batch" | "autoscaling" | "policy" | "networking.k8s.io"
    ) || matches!(r.kind, "ReplicationController" | "Pod")
}

fn has_status(r: &ResourceInfo) -> bool {
    r.has_subresource("status").is_some()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// Whether two objects are equal apart from the top-level fields in `skip` and the
/// metadata fields in `skip_meta` (compared in place: objects are not copied).
fn equal_except(a: &Value, b: &Value, skip: &[&str], skip_meta: &[&str]) -> bool {
    fn entries<'v>(v: &'v Value, skip: &[&str], also: &str) -> BTreeMap<&'v str, &'v Value> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != also && !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
    entries(a, skip, "metadata") == entries(b, skip, "metadata")
        && (skip.contains(&"metadata")
            || entries(&a["metadata"], skip_meta, "") == entries(&b["metadata"], skip_meta, ""))
}

/// Whether an update changes the spec (what bumps `metadata.generation`).
fn spec_changed(next: &Value, current: &Value) -> bool {
    !equal_except(next, current, &["metadata", "status"], &[])
}

/// Whether an update changes nothing but resourceVersion and managedFields (a no-op).
fn unchanged(next: &Value, current: &Value) -> bool {
    equal_except(next, current, &[], &["resourceVersion", "managedFields"])
}

/// Field validation mode (`fieldValidation`): the server default is Warn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(q: &Query) -> ApiResult<FieldValidation> {
    match q.field_validation.as_deref() {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
        ))),
    }
}

/// Serialize for storage: everything but the resourceVersion.
fn to_stored(obj: &Value) -> ApiResult<Bytes> {
    encode_stored(obj.clone())
}

/// [`to_stored`] of an object the caller no longer needs (no copy).
fn encode_stored(mut v: Value) -> ApiResult<Bytes> {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}

fn with_rv(mut obj: Value, rev: i64) -> Value {
    set_resource_version(&mut obj, rev);
    obj
}

/// Check `apiVersion`/`kind` of a body against the resource.
fn check_type(r: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let api_version = r.api_version();
    let kind_ok = obj.get("kind").and_then(Value::as_str);
    let version_ok = obj.get("apiVersion").and_then(Value::as_str);
    match (version_ok, kind_ok) {
        (None, None) => {
            obj["apiVersion"] = json!(api_version);
            obj["kind"] = json!(r.kind);
            Ok(())
        }
        (Some(v), Some(k)) if v == api_version && k == r.kind => Ok(()),
        (_, Some(k)) if k != r.kind => Err(ApiError::BadRequest(format!(
            "the API version in the data ({}) does not match the expected API version ({api_version}) or the kind {k} is not {}",
            version_ok.unwrap_or(""),
            r.kind
        ))),
        (Some(v), _) if v != api_version => Err(ApiError::BadRequest(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        ))),
        _ => {
            obj["apiVersion"] = json!(api_version);
            obj["kind"] = json!(r.kind);
            Ok(())
        }
    }
}

/// Round-trip through the typed struct, apply the field-validation mode, defaults and
/// validation. Returns the canonical object and warnings.
fn canonicalize(
    r: &ResourceInfo,
    obj: Value,
    old: Option<&Value>,
    mode: FieldValidation,
    duplicates: &[String],
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let name = meta_str(&obj, "name").unwrap_or("").to_string();
    let mut value = match typed::roundtrip(r.group, r.version, r.kind, &obj) {
        Some(Ok(t)) => {
            if !t.unknown_fields.is_empty() || !duplicates.is_empty() {
                let msgs: Vec<String> = duplicates
                    .iter()
                    .map(|f| format!("duplicate field \"{f}\""))
                    .chain(
                        t.unknown_fields
                            .iter()
                            .map(|f| format!("unknown field \"{f}\"")),
                    )
                    .collect();
                match mode {
                    FieldValidation::Strict => {
                        return Err(ApiError::BadRequest(format!(
                            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                            msgs.join(", "),
                            kind = r.kind,
                            v = r.version
                        )))
                    }
                    FieldValidation::Warn => warnings.extend(msgs),
                    FieldValidation::Ignore => {}
                }
            }
            t.value
        }
        Some(Err(e)) => {
            return Err(ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                kind = r.kind,
                v = r.version
            )))
        }
        None => obj,
    };
    prune_empty_metadata(&mut value);
    defaults::apply_defaults(r.group, r.kind, &mut value);
    let errs = match old {
        None => validation::validate_create(r.group, r.kind, &value, r.namespaced),
        Some(old) => validation::validate_update(r.group, r.kind, &value, old, r.namespaced),
    };
    if !errs.is_empty() {
        return Err(invalid(r, &name, &errs));
    }
    Ok(value)
}

/// How a read-modify-write identifies itself and what it checks.
struct Write<'a> {
    /// The resourceVersion the client based its write on, if any.
    precondition: Option<i64>,
    manager: String,
    /// `Update` or `Apply`, as managedFields records it.
    operation: &'a str,
    duplicates: &'a [String],
}

/// Duplicate keys of a JSON body, when field validation cares about them.
fn json_duplicates(ct: ContentType, bytes: &[u8], mode: FieldValidation) -> Vec<String> {
    if ct == ContentType::Json && mode != FieldValidation::Ignore {
        body::duplicate_fields(bytes)
    } else {
        Vec::new()
    }
}

/// Go's `omitempty`: empty metadata maps and lists are not part of the object (a label
/// removed with `key-` leaves no `labels: {}` behind).
fn prune_empty_metadata(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            let empty = match v {
                Value::Object(o) => o.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::String(s) => s.is_empty() && k != "name",
                _ => false,
            };
            !empty
        });
    }
}

fn invalid(r: &ResourceInfo, name: &str, errs: &[validation::FieldError]) -> ApiError {
    let kind = if r.group.is_empty() {
        r.kind.to_string()
    } else {
        format!("{}.{}", r.kind, r.group)
    };
    let summary = if errs.len() == 1 {
        errs[0].to_string()
    } else {
        format!(
            "[{}]",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    ApiError::Invalid {
        kind,
        group: r.group.to_string(),
        name: name.to_string(),
        summary,
        causes: errs
            .iter()
            .map(|e| Cause {
                reason: e.cause_reason().to_string(),
                message: e
                    .to_string()
                    .strip_prefix(&format!("{}: ", e.field))
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string()),
                field: e.field.clone(),
            })
            .collect(),
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn gvk_tuple(r: &ResourceInfo) -> (&'static str, &'static str, &'static str) {
    (r.group, r.version, r.kind)
}

fn is_service(r: &ResourceInfo) -> bool {
    r.group.is_empty() && r.kind == "Service"
}

impl ApiServer {
    /// Service writes that may allocate are serialized, so two never pick the same IP or
    /// port (the guard is held until the write is durable).
    async fn lock_services(
        &self,
        r: &ResourceInfo,
        sub: Option<&str>,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if is_service(r) && sub.is_none() {
            Some(self.services.lock().await)
        } else {
            None
        }
    }

    /// Fill in `svc`'s cluster IP and node ports from what the stored Services leave free.
    fn allocate_service(
        &self,
        r: &ResourceInfo,
        svc: &mut Value,
        old: Option<&Value>,
        key: Option<&str>,
    ) -> ApiResult<()> {
        let name = meta_str(svc, "name").unwrap_or("").to_string();
        let used = self
            .services
            .used(self.store.as_ref(), key)
            .map_err(|e| store_error(r, &name, e))?;
        self.services
            .allocate(svc, old, &used)
            .map_err(|e| match e {
                super::services::AllocError::Invalid(errs) => invalid(r, &name, &errs),
                super::services::AllocError::Internal(m) => ApiError::Internal(m),
            })
    }

    /// `DefaultStorageClass` and the protection finalizer for a claim being created
    /// (see [`defaults::claim_admission`]); other kinds are left alone.
    async fn claim_admission(&self, r: &ResourceInfo, obj: &mut Value) {
        if !r.group.is_empty() || r.kind != "PersistentVolumeClaim" {
            return;
        }
        let Some(classes) = resources::find("storage.k8s.io", "v1", "storageclasses") else {
            return;
        };
        self.cache.sync().await;
        let (items, _) = self.cache.list(&list_prefix(classes, None), None);
        let classes: Vec<Value> = items.iter().map(|(_, o)| o.value()).collect();
        defaults::claim_admission(obj, &classes);
    }

    /// Read one object, consistently with every acknowledged write.
    pub(crate) async fn read_object(&self, key: &str) -> Option<Value> {
        self.cache.sync().await;
        self.cache.get(key).map(|o| o.value())
    }

    pub(crate) async fn namespace_gate(&self, r: &ResourceInfo, ns: Option<&str>) -> ApiResult<()> {
        if !r.namespaced {
            return Ok(());
        }
        let Some(ns) = ns else {
            return Err(ApiError::BadRequest(
                "the namespace of the object is required".into(),
            ));
        };
        let ns_res = resources::find("", "v1", "namespaces").ok_or(ApiError::NoRoute)?;
        let key = object_key(ns_res, None, ns);
        // The cache is enough when it has the namespace; only a miss needs a consistent read.
        let found = match self.cache.get(&key) {
            Some(o) => Some(o.value()),
            None => self.read_object(&key).await,
        };
        match found {
            None => Err(ApiError::NotFound {
                qualified: "namespaces".into(),
                name: ns.to_string(),
            }),
            Some(n) if n["status"]["phase"] == "Terminating" || meta(&n).is_some_and(|m| m.contains_key("deletionTimestamp")) => {
                Err(ApiError::Forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    r.qualified_plural(),
                    "",
                )))
            }
            Some(_) => Ok(()),
        }
    }

    // ---------------------------------------------------------------- read

    pub(crate) async fn get(
        &self,
        p: &ResourcePath,
        q: &Query,
        accept: Accept,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let name = p.name.as_deref().unwrap_or("");
        let obj = self
            .read_object(&object_key(r, p.namespace.as_deref(), name))
            .await
            .ok_or_else(|| not_found(r, name))?;
        if accept == Accept::Table {
            let rv = meta_str(&obj, "resourceVersion")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let t = table::table(
                r,
                std::iter::once(&obj),
                rv,
                None,
                q.include_object.as_deref(),
                true,
            );
            return Ok(body::json(200, &t));
        }
        Ok(body::json(200, &obj))
    }

    pub(crate) async fn list(
        &self,
        p: &ResourcePath,
        q: &Query,
        accept: Accept,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let label = parse_label_selector(q)?;
        let field = parse_field_selector(r, q)?;
        let prefix = list_prefix(r, p.namespace.as_deref());
        let limit = q.limit.filter(|l| *l > 0);

        let token = match q.continue_token.as_deref().filter(|c| !c.is_empty()) {
            Some(t) => Some(ContinueToken::decode(t)?),
            None => None,
        };
        let mut matched: Vec<Arc<CachedObject>> = Vec::new();
        let mut last_key: Option<String> = None;
        let mut more = false;
        let revision;
        let matches = |obj: &CachedObject| -> ApiResult<bool> {
            Ok(label.as_ref().is_none_or(|l| l.matches(obj.labels()))
                && match &field {
                    Some(f) => f
                        .matches_set(r.group, r.kind, obj.fields())
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                    None => true,
                })
        };
        match token {
            None => {
                if q.resource_version.as_deref() != Some("0") {
                    self.cache.sync().await;
                }
                let (items, rev) = self.cache.list(&prefix, None);
                revision = rev;
                for (key, obj) in items {
                    if !matches(&obj)? {
                        continue;
                    }
                    if limit.is_some_and(|l| matched.len() >= l) {
                        more = true;
                        break;
                    }
                    matched.push(obj);
                    last_key = Some(key);
                }
            }
            Some(token) => {
                revision = token.rv;
                let page = self
                    .cache
                    .store()
                    .list(&prefix, Some(&token.start), 0, Some(token.rv))
                    .map_err(|e| match e {
                        StoreError::Expired { .. } => ApiError::Expired(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                        ),
                        other => store_error(r, "", other),
                    })?;
                for kv in page.items {
                    let obj = CachedObject::from_kv(&kv)
                        .map_err(|e| ApiError::Internal(format!("decoding {}: {e}", kv.key)))?;
                    if !matches(&obj)? {
                        continue;
                    }
                    if limit.is_some_and(|l| matched.len() >= l) {
                        more = true;
                        break;
                    }
                    matched.push(Arc::new(obj));
                    last_key = Some(kv.key);
                }
            }
        }
        let continue_token = match (more, last_key) {
            (true, Some(start)) => Some(
                ContinueToken {
                    rv: revision,
                    start,
                }
                .encode(),
            ),
            _ => None,
        };
        if accept == Accept::Table {
            let values: Vec<Value> = matched.iter().map(|o| o.value()).collect();
            let t = table::table(
                r,
                values.iter(),
                revision,
                continue_token.as_deref(),
                q.include_object.as_deref(),
                true,
            );
            return Ok(body::json(200, &t));
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(c) = continue_token {
            metadata["continue"] = json!(c);
        }
        let head = json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": metadata,
        });
        Ok(body::respond(
            200,
            "application/json",
            list_json(&head, &matched),
        ))
    }

    // ---------------------------------------------------------------- create

    pub(crate) async fn create(
        &self,
        p: &ResourcePath,
        q: &Query,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let mut obj = body::decode_object(ct, bytes)?;
        check_type(r, &mut obj)?;
        let mode = field_validation(q)?;
        let duplicates = json_duplicates(ct, bytes, mode);
        let mut warnings = Vec::new();
        {
            let m = meta_mut(&mut obj);
            if let Some(ns) = &p.namespace {
                match m.get("namespace").and_then(Value::as_str) {
                    Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ))
                    }
                    _ => {
                        m.insert("namespace".into(), json!(ns));
                    }
                }
            } else if !r.namespaced {
                m.remove("namespace");
            }
            if m.get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::BadRequest(
                    "resourceVersion should not be set on objects to be created".into(),
                ));
            }
            let has_name = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !has_name {
                if let Some(g) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    let name = format!("{g}{}", random_suffix());
                    m.insert("name".into(), json!(name));
                }
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(f);
            }
            if tracks_generation(r) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if r.namespaced && p.namespace.is_none() {
            return Err(ApiError::BadRequest(
                "the server could not find the requested resource (POST must name a namespace)"
                    .into(),
            ));
        }
        reset_status_on_create(r, &mut obj);
        let _allocating = self.lock_services(r, None).await;
        if is_service(r) {
            self.allocate_service(r, &mut obj, None, None)?;
        }
        if r.kind == "Pod" {
            // Admission (DefaultTolerationSeconds): pods tolerate a not-ready or
            // unreachable node for 300 s before eviction. (ServiceAccount): the pod's
            // service account and its API credentials volume.
            defaults::default_tolerations(&mut obj);
            defaults::service_account_admission(&mut obj, &random_suffix());
        }
        self.claim_admission(r, &mut obj).await;
        let mut obj = canonicalize(r, obj, None, mode, &duplicates, &mut warnings)?;
        let manager = field_manager(q, user, "create")?;
        obj = patch::record_update(
            None,
            obj,
            &manager,
            "Update",
            gvk_tuple(r),
            chrono::Utc::now(),
        );
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        self.namespace_gate(r, p.namespace.as_deref()).await?;
        let key = object_key(r, p.namespace.as_deref(), &name);
        let out = if q.dry_run {
            if self.read_object(&key).await.is_some() {
                return Err(ApiError::AlreadyExists {
                    qualified: r.qualified_plural(),
                    name,
                });
            }
            obj
        } else {
            let kv = self
                .store
                .create(&key, to_stored(&obj)?)
                .await
                .map_err(|e| store_error(r, &name, e))?;
            with_rv(obj, kv.mod_revision)
        };
        let mut resp = body::json(201, &out);
        body::add_warnings(&mut resp, &warnings);
        Ok(resp)
    }

    // ---------------------------------------------------------------- update

    /// PUT of an object or of its `status`.
    pub(crate) async fn update(
        &self,
        p: &ResourcePath,
        q: &Query,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let name = p.name.clone().unwrap_or_default();
        let mut obj = body::decode_object(ct, bytes)?;
        check_type(r, &mut obj)?;
        match meta_str(&obj, "name") {
            Some(n) if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            None => {
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            _ => {}
        }
        if let (Some(ns), Some(body_ns)) = (&p.namespace, meta_str(&obj, "namespace")) {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
        }
        let precondition: Option<i64> = meta_str(&obj, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {s:?}")))
            })
            .transpose()?;
        let manager = field_manager(q, user, "update")?;
        let duplicates = json_duplicates(ct, bytes, field_validation(q)?);
        let how = Write {
            precondition,
            manager,
            operation: "Update",
            duplicates: &duplicates,
        };
        self.write_existing(p, q, how, |_current| Ok(obj.clone()))
            .await
    }

    /// PATCH of an object or a subresource, with any of the four patch types.
    pub(crate) async fn patch(
        &self,
        p: &ResourcePath,
        q: &Query,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let patch_doc = match ct {
            ContentType::ApplyPatch => body::parse_yaml(bytes)?,
            ContentType::JsonPatch | ContentType::MergePatch | ContentType::StrategicMergePatch => {
                body::parse_json(bytes)?
            }
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".into(),
                ))
            }
        };
        if ct == ContentType::ApplyPatch {
            return self.apply(p, q, patch_doc, user).await;
        }
        let manager = field_manager(q, user, "patch")?;
        let gvk = gvk_tuple(r);
        let duplicates = match ct {
            ContentType::ApplyPatch => Vec::new(),
            _ => json_duplicates(ContentType::Json, bytes, field_validation(q)?),
        };
        self.write_existing(
            p,
            q,
            Write {
                precondition: None,
                manager,
                operation: "Update",
                duplicates: &duplicates,
            },
            |current| {
                let patched = match ct {
                    ContentType::JsonPatch => patch::json_patch(current, &patch_doc)
                        .map_err(|e| patch_error(r, meta_str(current, "name").unwrap_or(""), e))?,
                    ContentType::MergePatch => patch::merge_patch(current, &patch_doc),
                    _ => patch::strategic_merge_patch(current, &patch_doc, gvk)
                        .map_err(|e| patch_error(r, meta_str(current, "name").unwrap_or(""), e))?,
                };
                // A resourceVersion in the patch is a precondition.
                if let (Some(want), Some(have)) = (
                    meta_str(&patched, "resourceVersion"),
                    meta_str(current, "resourceVersion"),
                ) {
                    if want != have {
                        return Err(conflict(r, meta_str(current, "name").unwrap_or("")));
                    }
                }
                Ok(patched)
            },
        )
        .await
    }

    /// Server-side apply (`application/apply-patch+yaml`): creates when absent.
    async fn apply(
        &self,
        p: &ResourcePath,
        q: &Query,
        applied: Value,
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let manager = q
            .field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "PATCH, application/apply-patch+yaml requests must have a fieldManager".into(),
                )
            })?;
        let _ = user;
        if !applied.is_object() {
            return Err(ApiError::BadRequest(
                "the apply body must be an object".into(),
            ));
        }
        let name = p.name.clone().unwrap_or_default();
        let key = object_key(r, p.namespace.as_deref(), &name);
        let gvk = gvk_tuple(r);
        let force = q.force;
        let mut applied_checked = applied.clone();
        check_type(r, &mut applied_checked)?;
        if self.read_object(&key).await.is_none() && p.subresource.is_none() {
            // Create from the applied configuration.
            let created = patch::server_side_apply(
                None,
                &applied_checked,
                &manager,
                force,
                gvk,
                chrono::Utc::now(),
            )
            .map_err(|e| apply_error(r, e))?;
            let mut q2 = q.clone();
            q2.field_manager = Some(manager.clone());
            let bytes =
                serde_json::to_vec(&created).map_err(|e| ApiError::Internal(e.to_string()))?;
            let resp = self.create_prepared(p, &q2, &bytes).await;
            match resp {
                Err(ApiError::AlreadyExists { .. }) => {} // raced with a create: fall through to update
                other => return other,
            }
        }
        self.write_existing(
            p,
            q,
            Write {
                precondition: None,
                manager: manager.clone(),
                operation: "Apply",
                duplicates: &[],
            },
            |current| {
                patch::server_side_apply(
                    Some(current),
                    &applied_checked,
                    &manager,
                    force,
                    gvk,
                    chrono::Utc::now(),
                )
                .map_err(|e| apply_error(r, e))
            },
        )
        .await
    }

    /// Create an object whose managedFields are already set (server-side apply).
    async fn create_prepared(
        &self,
        p: &ResourcePath,
        q: &Query,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let mut obj = body::parse_json(bytes)?;
        let managed = meta(&obj).and_then(|m| m.get("managedFields")).cloned();
        {
            let m = meta_mut(&mut obj);
            if let Some(ns) = &p.namespace {
                m.insert("namespace".into(), json!(ns));
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("resourceVersion");
            if tracks_generation(r) {
                m.insert("generation".into(), json!(1));
            }
        }
        reset_status_on_create(r, &mut obj);
        let _allocating = self.lock_services(r, None).await;
        if is_service(r) {
            self.allocate_service(r, &mut obj, None, None)?;
        }
        self.claim_admission(r, &mut obj).await;
        let mut warnings = Vec::new();
        let mut obj = canonicalize(r, obj, None, field_validation(q)?, &[], &mut warnings)?;
        if let Some(mf) = managed {
            meta_mut(&mut obj).insert("managedFields".into(), mf);
        }
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        self.namespace_gate(r, p.namespace.as_deref()).await?;
        let key = object_key(r, p.namespace.as_deref(), &name);
        let out = if q.dry_run {
            obj
        } else {
            let kv = self
                .store
                .create(&key, to_stored(&obj)?)
                .await
                .map_err(|e| store_error(r, &name, e))?;
            with_rv(obj, kv.mod_revision)
        };
        let mut resp = body::json(201, &out);
        body::add_warnings(&mut resp, &warnings);
        Ok(resp)
    }

    /// The read-modify-write loop shared by update, patch and apply: `mutate` turns the
    /// current object into the desired one; subresource rules, metadata preservation,
    /// validation and the compare-and-swap happen here.
    async fn write_existing<F>(
        &self,
        p: &ResourcePath,
        q: &Query,
        how: Write<'_>,
        mutate: F,
    ) -> ApiResult<Response<Body>>
    where
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let Write {
            precondition,
            manager,
            operation,
            duplicates,
        } = how;
        let r = p.resource;
        let name = p.name.clone().unwrap_or_default();
        let key = object_key(r, p.namespace.as_deref(), &name);
        let mode = field_validation(q)?;
        let sub = p.subresource.as_deref();
        let _allocating = self.lock_services(r, sub).await;
        for _ in 0..WRITE_RETRIES {
            let kv = self
                .store
                .get(&key)
                .map_err(|e| store_error(r, &name, e))?
                .ok_or_else(|| not_found(r, &name))?;
            if precondition.is_some_and(|want| want != kv.mod_revision) {
                return Err(conflict(r, &name));
            }
            let current =
                decode(&kv).map_err(|e| ApiError::Internal(format!("decoding {key}: {e}")))?;
            let (desired, scale_view) = if sub == Some("scale") {
                let scale = scale_of(r, &current)?;
                let new_scale = mutate(&scale)?;
                (apply_scale(r, &current, &new_scale)?, true)
            } else {
                (mutate(&current)?, false)
            };
            let mut warnings = Vec::new();
            let mut next = merge_for_update(r, sub, &current, desired);
            if is_service(r) && sub.is_none() {
                self.allocate_service(r, &mut next, Some(&current), Some(&key))?;
            }
            next = canonicalize(r, next, Some(&current), mode, duplicates, &mut warnings)?;
            if tracks_generation(r) && spec_changed(&next, &current) {
                let g = meta(&current)
                    .and_then(|m| m.get("generation"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(&mut next).insert("generation".into(), json!(g + 1));
            }
            if sub == Some("status") {
                next = patch::record_subresource_update(
                    Some(&current),
                    next,
                    &manager,
                    "status",
                    gvk_tuple(r),
                    chrono::Utc::now(),
                );
            } else if operation != "Apply" {
                next = patch::record_update(
                    Some(&current),
                    next,
                    &manager,
                    operation,
                    gvk_tuple(r),
                    chrono::Utc::now(),
                );
            }
            // Removing the last finalizer of an object being deleted completes the delete.
            let deleting = meta(&next).is_some_and(|m| m.contains_key("deletionTimestamp"));
            let finalizers_left = meta(&next)
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let result = if unchanged(&next, &current) {
                current.clone()
            } else if q.dry_run {
                with_rv(next, kv.mod_revision)
            } else if deleting && !finalizers_left && r.kind != "Namespace" {
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(d) => with_rv(next, d.mod_revision),
                    Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                    Err(e) => return Err(store_error(r, &name, e)),
                }
            } else {
                match self
                    .store
                    .update(&key, to_stored(&next)?, kv.mod_revision)
                    .await
                {
                    Ok(kv) => with_rv(next, kv.mod_revision),
                    Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                    Err(e) => return Err(store_error(r, &name, e)),
                }
            };
            let out = if scale_view {
                scale_of(r, &result)?
            } else {
                result
            };
            let mut resp = body::json(200, &out);
            body::add_warnings(&mut resp, &warnings);
            return Ok(resp);
        }
        Err(conflict(r, &name))
    }

    // ---------------------------------------------------------------- delete

    pub(crate) async fn delete(
        &self,
        p: &ResourcePath,
        q: &Query,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let name = p.name.clone().unwrap_or_default();
        let opts = DeleteOptions::from(q, bytes)?;
        let key = object_key(r, p.namespace.as_deref(), &name);
        for _ in 0..WRITE_RETRIES {
            let kv = self
                .store
                .get(&key)
                .map_err(|e| store_error(r, &name, e))?
                .ok_or_else(|| not_found(r, &name))?;
            let current =
                decode(&kv).map_err(|e| ApiError::Internal(format!("decoding {key}: {e}")))?;
            opts.check_preconditions(r, &name, &current, kv.mod_revision)?;
            match self.delete_one(r, &key, &kv, current, &opts).await {
                Err(ApiError::Conflict { .. }) => continue,
                other => return other.map(|v| body::json(200, &v)),
            }
        }
        Err(conflict(r, &name))
    }

    /// Delete (or start deleting) one object; returns what the client is shown.
    async fn delete_one(
        &self,
        r: &ResourceInfo,
        key: &str,
        kv: &KeyValue,
        current: Value,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let name = meta_str(&current, "name").unwrap_or("").to_string();
        let finalizers: Vec<Value> = meta(&current)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let grace = self.grace_period(r, &current, opts);
        let is_namespace = r.kind == "Namespace";
        // The garbage collector's finalizers, as the propagation policy asks.
        let finalizers = if is_namespace {
            finalizers
        } else {
            deletion_finalizers(&finalizers, opts, orphans_by_default(r))
        };
        let finalizers_changed = meta(&current)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .map_or(!finalizers.is_empty(), |old| *old != finalizers);
        // A namespace goes Terminating first; once its controller has emptied it and
        // removed the `kubernetes` finalizer (`/finalize`), the next delete removes it.
        let namespace_finalized = is_namespace
            && meta(&current).is_some_and(|m| m.contains_key("deletionTimestamp"))
            && current
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if finalizers.is_empty() && grace == 0 && (!is_namespace || namespace_finalized) {
            if opts.dry_run {
                return Ok(current);
            }
            let d = self
                .store
                .delete(key, Some(kv.mod_revision))
                .await
                .map_err(|e| store_error(r, &name, e))?;
            return Ok(with_rv(current, d.mod_revision));
        }
        // Graceful: mark for deletion and let finalizers / the kubelet finish.
        let mut next = current.clone();
        let already = meta(&current).is_some_and(|m| m.contains_key("deletionTimestamp"));
        {
            let m = meta_mut(&mut next);
            if !already {
                let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else if let Some(old) = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64) {
                // A shorter grace period may replace a longer one.
                if grace < old {
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
            }
            if tracks_generation(r) {
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                m.insert("generation".into(), json!(g + 1));
            }
            if finalizers_changed {
                if finalizers.is_empty() {
                    m.remove("finalizers");
                } else {
                    m.insert("finalizers".into(), Value::Array(finalizers.clone()));
                }
            }
        }
        if is_namespace {
            next["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run || (already && next == current) {
            return Ok(current);
        }
        let kv = self
            .store
            .update(key, to_stored(&next)?, kv.mod_revision)
            .await
            .map_err(|e| store_error(r, &name, e))?;
        Ok(with_rv(next, kv.mod_revision))
    }

    fn grace_period(&self, r: &ResourceInfo, obj: &Value, opts: &DeleteOptions) -> i64 {
        if r.kind != "Pod" {
            return 0;
        }
        // An unscheduled pod has no kubelet to wait for; a finished one has nothing to stop.
        let scheduled = obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if !scheduled || finished {
            return 0;
        }
        opts.grace_period_seconds
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0)
    }

    pub(crate) async fn delete_collection(
        &self,
        p: &ResourcePath,
        q: &Query,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let label = parse_label_selector(q)?;
        let field = parse_field_selector(r, q)?;
        let opts = DeleteOptions::from(q, bytes)?;
        self.cache.sync().await;
        let (items, rev) = self
            .cache
            .list(&list_prefix(r, p.namespace.as_deref()), None);
        let mut deleted = Vec::new();
        for (key, obj) in items {
            if !label.as_ref().is_none_or(|l| l.matches(obj.labels())) {
                continue;
            }
            if let Some(f) = &field {
                if !f
                    .matches_set(r.group, r.kind, obj.fields())
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
                {
                    continue;
                }
            }
            let Some(kv) = self.store.get(&key).map_err(|e| store_error(r, "", e))? else {
                continue;
            };
            let current = decode(&kv).map_err(|e| ApiError::Internal(e.to_string()))?;
            match self.delete_one(r, &key, &kv, current, &opts).await {
                Ok(v) => deleted.push(v),
                Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": rev.to_string()},
            "items": deleted,
        });
        Ok(body::json(200, &list))
    }

    // ---------------------------------------------------------------- subresources

    pub(crate) async fn get_scale(&self, p: &ResourcePath) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let name = p.name.as_deref().unwrap_or("");
        let obj = self
            .read_object(&object_key(r, p.namespace.as_deref(), name))
            .await
            .ok_or_else(|| not_found(r, name))?;
        Ok(body::json(200, &scale_of(r, &obj)?))
    }

    /// `pods/binding` (POST): assign a node, as the scheduler does.
    pub(crate) async fn bind(&self, p: &ResourcePath, bytes: &[u8]) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let binding = body::parse_json(bytes)?;
        let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::Invalid {
                kind: "Binding".into(),
                group: String::new(),
                name: p.name.clone().unwrap_or_default(),
                summary: "target.name: Required value".into(),
                causes: vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "target.name".into(),
                }],
            });
        }
        // As kube-apiserver's binding storage: a compare-and-swap of `spec.nodeName` on the
        // stored pod, outside the update path. Nothing else changes, so there is no typed
        // round trip, no pod update validation and no managedFields entry (upstream's
        // binding bypasses the field manager too), and the pod is not echoed back.
        let name = p.name.clone().unwrap_or_default();
        let key = object_key(r, p.namespace.as_deref(), &name);
        for _ in 0..WRITE_RETRIES {
            let kv = self
                .store
                .get(&key)
                .map_err(|e| store_error(r, &name, e))?
                .ok_or_else(|| not_found(r, &name))?;
            let mut pod =
                decode(&kv).map_err(|e| ApiError::Internal(format!("decoding {key}: {e}")))?;
            if let Some(assigned) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::Conflict {
                    qualified: r.qualified_plural(),
                    name: name.clone(),
                    detail: format!("pod {name} is already assigned to node \"{assigned}\""),
                });
            }
            match pod.get_mut("spec").and_then(Value::as_object_mut) {
                Some(spec) => {
                    spec.insert("nodeName".into(), Value::String(node.clone()));
                }
                None => return Err(ApiError::Internal(format!("stored pod {key} has no spec"))),
            }
            match self
                .store
                .update(&key, encode_stored(pod)?, kv.mod_revision)
                .await
            {
                Ok(_) => return Ok(body::json(201, &success_status(None))),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(r, &name, e)),
            }
        }
        Err(conflict(r, &name))
    }
}

/// Objects created through the main resource start with the status kube gives them.
fn reset_status_on_create(r: &ResourceInfo, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match r.kind {
        "Pod" => {
            let qos = qos_class(o.get("spec").unwrap_or(&Value::Null));
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        "Namespace" => {
            o.insert("status".into(), json!({"phase": "Active"}));
        }
        "Service" => {
            o.insert("status".into(), json!({"loadBalancer": {}}));
        }
        "Node" | "PersistentVolume" | "PersistentVolumeClaim" | "Event" => {}
        _ if has_status(r) => {
            o.remove("status");
        }
        _ => {}
    }
}

/// The pod's QoS class from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut containers: Vec<&Value> = Vec::new();
    for field in ["containers", "initContainers"] {
        if let Some(a) = spec[field].as_array() {
            containers.extend(a.iter());
        }
    }
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c["resources"]["requests"].as_object();
        let lim = c["resources"]["limits"].as_object();
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let r = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Combine what the client sent with what it may not change.
fn merge_for_update(
    r: &ResourceInfo,
    sub: Option<&str>,
    current: &Value,
    mut desired: Value,
) -> Value {
    let cm = meta(current).cloned().unwrap_or_default();
    if sub == Some("status") {
        // Status writes change status only.
        let mut next = current.clone();
        if let Some(s) = desired.get("status") {
            next["status"] = s.clone();
        }
        return next;
    }
    if r.kind == "Namespace" {
        // Only `/finalize` changes a namespace's finalizers; other writes keep them.
        let finalizers = if sub == Some("finalize") {
            desired.pointer("/spec/finalizers")
        } else {
            current.pointer("/spec/finalizers")
        };
        let finalizers = finalizers.cloned();
        let target = if sub == Some("finalize") {
            current.clone()
        } else {
            desired
        };
        desired = target;
        match finalizers {
            Some(f) => desired["spec"]["finalizers"] = f,
            None => {
                if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
        if sub == Some("finalize") {
            return desired;
        }
    }
    {
        let m = meta_mut(&mut desired);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match cm.get(f) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        if !m.contains_key("managedFields") {
            if let Some(mf) = cm.get("managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
    }
    if has_status(r) && sub.is_none() {
        match current.get("status") {
            Some(s) => desired["status"] = s.clone(),
            None => {
                if let Some(o) = desired.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    desired
}

/// The autoscaling/v1 Scale view of a scalable object.
fn scale_of(r: &ResourceInfo, obj: &Value) -> ApiResult<Value> {
    let m = meta(obj).cloned().unwrap_or_default();
    let selector = match &obj["spec"]["selector"] {
        Value::Object(sel)
            if sel.contains_key("matchLabels") || sel.contains_key("matchExpressions") =>
        {
            LabelSelector::from_label_selector_json(&obj["spec"]["selector"])
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Value::Object(sel) => sel
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let _ = r;
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    }))
}

fn apply_scale(r: &ResourceInfo, current: &Value, scale: &Value) -> ApiResult<Value> {
    let replicas = &scale["spec"]["replicas"];
    let Some(n) = replicas.as_i64() else {
        return Err(ApiError::BadRequest(
            "spec.replicas of a Scale must be an integer".into(),
        ));
    };
    if n < 0 {
        return Err(ApiError::Invalid {
            kind: "Scale.autoscaling".into(),
            group: "autoscaling".into(),
            name: meta_str(current, "name").unwrap_or("").into(),
            summary: format!(
                "spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
            ),
            causes: vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {n}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        });
    }
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        if Some(rv) != meta_str(current, "resourceVersion") {
            return Err(conflict(r, meta_str(current, "name").unwrap_or("")));
        }
    }
    let mut next = current.clone();
    next["spec"]["replicas"] = json!(n);
    Ok(next)
}

fn apply_error(r: &ResourceInfo, e: patch::ApplyError) -> ApiError {
    match e {
        patch::ApplyError::Conflicts(ref conflicts) => ApiError::ApplyConflict {
            message: e.to_string(),
            causes: conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause_message(),
                    field: c.field.clone(),
                })
                .collect(),
        },
        patch::ApplyError::Invalid(p) => patch_error(r, "", p),
    }
}

/// A patch that cannot be applied: 400, 422 or 415 as kube-apiserver answers.
fn patch_error(r: &ResourceInfo, name: &str, e: patch::PatchError) -> ApiError {
    match e.status_code() {
        415 => ApiError::UnsupportedMediaType(e.to_string()),
        422 => ApiError::Invalid {
            kind: r.kind.to_string(),
            group: r.group.to_string(),
            name: name.to_string(),
            summary: e.to_string(),
            causes: vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: e.to_string(),
                field: String::new(),
            }],
        },
        _ => ApiError::BadRequest(e.to_string()),
    }
}

fn field_manager(q: &Query, user: &UserInfo, _verb: &str) -> ApiResult<String> {
    match q.field_manager.as_deref() {
        Some(m) if m.len() > 128 => Err(ApiError::BadRequest(
            "fieldManager: Too long: may not be longer than 128".into(),
        )),
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Ok(user.default_manager()),
    }
}

fn parse_label_selector(q: &Query) -> ApiResult<Option<LabelSelector>> {
    match q.label_selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => LabelSelector::parse(s)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        None => Ok(None),
    }
}

pub(crate) fn parse_field_selector(
    r: &ResourceInfo,
    q: &Query,
) -> ApiResult<Option<FieldSelector>> {
    match q.field_selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => FieldSelector::parse(s)
            .and_then(|f| f.validate(r.group, r.kind).map(|_| f))
            .map(Some)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        None => Ok(None),
    }
}

/// A `continue` token: the revision of the first page and the last key returned.
struct ContinueToken {
    rv: i64,
    start: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let raw = json!({"v": "skiff.continue/1", "rv": self.rv, "start": self.start});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
    }

    fn decode(token: &str) -> ApiResult<ContinueToken> {
        let bad = || {
            ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version skiff.continue/1)".into())
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        Ok(ContinueToken {
            rv: v["rv"].as_i64().ok_or_else(bad)?,
            start: v["start"].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

/// The garbage collector's finalizers.
const FINALIZER_ORPHAN: &str = "orphan";
const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Whether deleting `r` orphans its dependents when the client names no policy: upstream
/// keeps that for core/v1 ReplicationControllers and the old beta workload versions;
/// everything else (apps/v1 included) deletes dependents in the background.
fn orphans_by_default(r: &ResourceInfo) -> bool {
    (r.group.is_empty() && r.kind == "ReplicationController")
        || r.group == "extensions"
        || (r.group == "apps" && r.version.starts_with("v1beta"))
}

/// The finalizers an object keeps when deleted with `opts`: the client's policy replaces
/// the garbage collector's finalizers (`orphan`, `foregroundDeletion`); without a policy
/// the ones already there stay, else the resource's default applies.
fn deletion_finalizers(
    existing: &[Value],
    opts: &DeleteOptions,
    default_orphan: bool,
) -> Vec<Value> {
    let has = |f: &str| existing.iter().any(|v| v == f);
    let policy = opts.propagation.as_deref();
    let orphan = match (opts.orphan_dependents, policy) {
        (Some(b), _) => b,
        (None, Some(p)) => p == "Orphan",
        (None, None) if has(FINALIZER_ORPHAN) => true,
        (None, None) if has(FINALIZER_FOREGROUND) => false,
        (None, None) => default_orphan,
    };
    let foreground = match (opts.orphan_dependents, policy) {
        (Some(_), _) => false,
        (None, Some(p)) => p == "Foreground",
        (None, None) => has(FINALIZER_FOREGROUND),
    };
    let mut out: Vec<Value> = existing
        .iter()
        .filter(|v| *v != FINALIZER_ORPHAN && *v != FINALIZER_FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(json!(FINALIZER_ORPHAN));
    } else if foreground {
        out.push(json!(FINALIZER_FOREGROUND));
    }
    // Keep the order the object had when nothing changes.
    if out.len() == existing.len() && out.iter().all(|f| existing.contains(f)) {
        return existing.to_vec();
    }
    out
}

/// `DeleteOptions`, from the body or the query.
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
    dry_run: bool,
    /// `propagationPolicy`: `Background`, `Foreground` or `Orphan`.
    propagation: Option<String>,
    /// The deprecated `orphanDependents`.
    orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    fn from(q: &Query, bytes: &[u8]) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions {
            grace_period_seconds: q.grace_period_seconds,
            precondition_uid: None,
            precondition_rv: None,
            dry_run: q.dry_run,
            propagation: q.propagation_policy.clone(),
            orphan_dependents: q
                .raw
                .iter()
                .find(|(k, _)| k == "orphanDependents")
                .map(|(_, v)| v == "true" || v == "1"),
        };
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            let v = body::parse_json(bytes)?;
            if let Some(g) = v["gracePeriodSeconds"].as_i64() {
                o.grace_period_seconds = Some(g);
            }
            o.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
            o.precondition_rv = v["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if let Some(d) = v["dryRun"].as_array() {
                o.dry_run |= d.iter().any(|x| x == "All");
            }
            if let Some(p) = v["propagationPolicy"].as_str() {
                o.propagation = Some(p.to_string());
            }
            if let Some(b) = v["orphanDependents"].as_bool() {
                o.orphan_dependents = Some(b);
            }
        }
        if let Some(p) = &o.propagation {
            if !matches!(p.as_str(), "Background" | "Foreground" | "Orphan") {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
            if o.orphan_dependents.is_some() {
                return Err(ApiError::BadRequest(
                    "propagationPolicy: Invalid value: orphanDependents and propagationPolicy cannot be both set".into(),
                ));
            }
        }
        Ok(o)
    }

    fn check_preconditions(
        &self,
        r: &ResourceInfo,
        name: &str,
        obj: &Value,
        mod_rev: i64,
    ) -> ApiResult<()> {
        if let Some(uid) = &self.precondition_uid {
            let have = meta_str(obj, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::Conflict {
                    qualified: r.qualified_plural(),
                    name: name.into(),
                    detail: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                });
            }
        }
        if let Some(rv) = &self.precondition_rv {
            if *rv != mod_rev.to_string() {
                return Err(ApiError::Conflict {
                    qualified: r.qualified_plural(),
                    name: name.into(),
                    detail: format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {mod_rev}"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod gc_finalizer_tests {
    use super::*;

    fn opts(policy: Option<&str>, orphan: Option<bool>) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: None,
            precondition_uid: None,
            precondition_rv: None,
            dry_run: false,
            propagation: policy.map(str::to_string),
            orphan_dependents: orphan,
        }
    }

    #[test]
    fn policy_sets_the_garbage_collector_finalizer() {
        let none: Vec<Value> = vec![];
        assert_eq!(
            deletion_finalizers(&none, &opts(Some("Foreground"), None), false),
            vec![json!("foregroundDeletion")]
        );
        assert_eq!(
            deletion_finalizers(&none, &opts(Some("Orphan"), None), false),
            vec![json!("orphan")]
        );
        assert!(deletion_finalizers(&none, &opts(Some("Background"), None), false).is_empty());
        assert!(deletion_finalizers(&none, &opts(None, None), false).is_empty());
    }

    #[test]
    fn resource_default_and_existing_finalizers_apply_without_a_policy() {
        let none: Vec<Value> = vec![];
        assert_eq!(
            deletion_finalizers(&none, &opts(None, None), true),
            vec![json!("orphan")]
        );
        let fg = vec![json!("example.com/keep"), json!("foregroundDeletion")];
        assert_eq!(deletion_finalizers(&fg, &opts(None, None), true), fg);
        // An explicit policy replaces it; other finalizers stay.
        assert_eq!(
            deletion_finalizers(&fg, &opts(Some("Orphan"), None), false),
            vec![json!("example.com/keep"), json!("orphan")]
        );
        assert_eq!(
            deletion_finalizers(&fg, &opts(None, Some(false)), false),
            vec![json!("example.com/keep")]
        );
        assert_eq!(
            deletion_finalizers(&none, &opts(None, Some(true)), false),
            vec![json!("orphan")]
        );
    }

    #[test]
    fn only_old_workload_versions_orphan_by_default() {
        let find = crate::registry::resources::find_kind;
        let rc = find("", "v1", "ReplicationController").expect("rc served");
        let rs = find("apps", "v1", "ReplicaSet").expect("replicasets served");
        let cm = find("", "v1", "ConfigMap").expect("configmaps served");
        assert!(orphans_by_default(rc));
        assert!(!orphans_by_default(rs));
        assert!(!orphans_by_default(cm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(rv: &str, image: &str, phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"},
                         "resourceVersion": rv, "managedFields": [{"manager": rv}]},
            "spec": {"containers": [{"name": "c", "image": image}]},
            "status": {"phase": phase},
        })
    }

    #[test]
    fn updates_compare_without_copying() {
        let current = pod("5", "busybox", "Pending");
        assert!(unchanged(&pod("6", "busybox", "Pending"), &current));
        assert!(!unchanged(&pod("5", "busybox", "Running"), &current));
        let mut relabelled = pod("5", "busybox", "Pending");
        relabelled["metadata"]["labels"]["app"] = json!("db");
        assert!(!unchanged(&relabelled, &current));

        assert!(!spec_changed(&pod("5", "busybox", "Running"), &current));
        assert!(!spec_changed(&relabelled, &current));
        assert!(spec_changed(&pod("5", "nginx", "Pending"), &current));
        let mut extra = pod("5", "busybox", "Pending");
        extra["spec"]["nodeName"] = json!("n1");
        assert!(spec_changed(&extra, &current));
    }

    #[test]
    fn lists_copy_cached_json_into_items() {
        let a = Arc::new(CachedObject::new(&pod("7", "busybox", "Running"), 7).expect("encodes"));
        let head =
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}});
        let list: Value = serde_json::from_slice(&list_json(&head, &[a.clone(), a])).expect("JSON");
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["metadata"]["resourceVersion"], "9");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(list["items"][1]["status"]["phase"], "Running");
        let empty: Value = serde_json::from_slice(&list_json(&head, &[])).expect("JSON");
        assert_eq!(empty["items"], json!([]));
    }
}
