//! Serving a resource at a version other than its stored one (autoscaling/v1
//! HorizontalPodAutoscalers over autoscaling/v2 storage): requests are converted to the
//! stored version on the way in and answers back to the served version on the way out,
//! so both versions show the same objects.

use std::sync::Arc;

use http::{Method, Response};
use serde_json::{json, Value};

use super::body::{self, Body, ContentType};
use super::cache::decode;
use super::request::{Accept, Query, ResourcePath};
use super::status::{ApiError, ApiResult};
use super::{patch, ApiServer, UserInfo};
use crate::registry::convert::{from_storage, to_storage};
use crate::registry::resources::{self, ResourceInfo};

const PATCH_RETRIES: usize = 5;

impl ApiServer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn converted(
        self: &Arc<Self>,
        p: &ResourcePath,
        method: &Method,
        q: &Query,
        accept: Accept,
        ct: impl Fn() -> ApiResult<ContentType>,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let served = p.resource;
        let stored = resources::find(served.group, served.storage_version, served.plural)
            .ok_or_else(|| {
                ApiError::Internal(format!("no storage version for {}", served.plural))
            })?;
        let sp = ResourcePath {
            resource: stored,
            ..p.clone()
        };
        let sub = p.subresource.as_deref();
        if !matches!(sub, None | Some("status")) {
            return Err(ApiError::MethodNotAllowed(format!(
                "{}/{} is not served at {}",
                served.plural,
                sub.unwrap_or(""),
                served.api_version()
            )));
        }
        let resp = match *method {
            Method::GET if q.watch => return self.watch_as(&sp, served, q, accept).await,
            Method::GET if p.name.is_none() => self.list(&sp, q, accept).await?,
            Method::GET => self.get(&sp, q, accept).await?,
            Method::POST => {
                let obj = body::decode_object(ct()?, bytes)?;
                let stored_obj = to_storage(served, &checked(served, obj)?, None);
                self.create(&sp, q, ContentType::Json, &to_json(&stored_obj)?, user)
                    .await?
            }
            Method::PUT => {
                let obj = checked(served, body::decode_object(ct()?, bytes)?)?;
                let current = self.stored_object(&sp)?;
                let stored_obj = to_storage(served, &obj, current.as_ref());
                self.update(&sp, q, ContentType::Json, &to_json(&stored_obj)?, user)
                    .await?
            }
            Method::PATCH => self.patch_as(&sp, served, q, ct()?, bytes, user).await?,
            Method::DELETE if p.name.is_none() => self.delete_collection(&sp, q, bytes).await?,
            Method::DELETE => self.delete(&sp, q, bytes).await?,
            _ => {
                return Err(ApiError::MethodNotAllowed(format!(
                    "the server does not allow this method on the requested resource ({method} {})",
                    served.qualified_plural()
                )))
            }
        };
        if accept == Accept::Table {
            return Ok(resp);
        }
        convert_response(served, resp).await
    }

    fn stored_object(&self, sp: &ResourcePath) -> ApiResult<Option<Value>> {
        let key = super::objects::object_key(
            sp.resource,
            sp.namespace.as_deref(),
            sp.name.as_deref().unwrap_or(""),
        );
        match self.store.get(&key) {
            Ok(Some(kv)) => decode(&kv)
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("decoding {key}: {e}"))),
            Ok(None) => Ok(None),
            Err(e) => Err(super::objects::store_error(sp.resource, "", e)),
        }
    }

    /// PATCH in the served version's shape: patch the converted current object, convert
    /// back, and write it with the current resourceVersion as precondition.
    async fn patch_as(
        self: &Arc<Self>,
        sp: &ResourcePath,
        served: &'static ResourceInfo,
        q: &Query,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        if ct == ContentType::ApplyPatch {
            return Err(ApiError::NotImplemented(format!(
                "server-side apply of {} is not implemented; apply it as {}",
                served.api_version(),
                sp.resource.api_version()
            )));
        }
        let patch_doc = body::parse_json(bytes)?;
        let name = sp.name.clone().unwrap_or_default();
        for _ in 0..PATCH_RETRIES {
            let current = self.stored_object(sp)?.ok_or_else(|| ApiError::NotFound {
                qualified: served.qualified_plural(),
                name: name.clone(),
            })?;
            let view = from_storage(served, &current);
            let gvk = (served.group, served.version, served.kind);
            let bad = |e: patch::PatchError| ApiError::BadRequest(e.to_string());
            let patched = match ct {
                ContentType::JsonPatch => patch::json_patch(&view, &patch_doc).map_err(bad)?,
                ContentType::MergePatch => patch::merge_patch(&view, &patch_doc),
                _ => patch::strategic_merge_patch(&view, &patch_doc, gvk).map_err(bad)?,
            };
            let mut stored_obj = to_storage(served, &patched, Some(&current));
            stored_obj["metadata"]["resourceVersion"] =
                current["metadata"]["resourceVersion"].clone();
            match self
                .update(sp, q, ContentType::Json, &to_json(&stored_obj)?, user)
                .await
            {
                Err(ApiError::Conflict { .. })
                    if patch_doc["metadata"].get("resourceVersion").is_none() =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(ApiError::Conflict {
            qualified: served.qualified_plural(),
            name,
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        })
    }
}

/// A body must name the served version (or nothing).
fn checked(served: &ResourceInfo, mut obj: Value) -> ApiResult<Value> {
    let want = served.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None => {
            obj["apiVersion"] = json!(want);
            obj["kind"] = json!(served.kind);
        }
        Some(v) if v == want && obj["kind"] == served.kind => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )))
        }
    }
    Ok(obj)
}

fn to_json(v: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ApiError::Internal(format!("encoding: {e}")))
}

/// Convert a successful JSON answer (object or list) to the served version.
async fn convert_response(
    served: &ResourceInfo,
    resp: Response<Body>,
) -> ApiResult<Response<Body>> {
    let status = resp.status().as_u16();
    let (parts, b) = resp.into_parts();
    let bytes = body::read(b).await?;
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, body::full(bytes)));
    };
    if v["kind"] == format!("{}List", served.kind) {
        if let Some(items) = v["items"].as_array_mut() {
            for item in items.iter_mut() {
                *item = from_storage(served, item);
            }
        }
        v["apiVersion"] = json!(served.api_version());
    } else if v["kind"] == served.kind {
        v = from_storage(served, &v);
    }
    let mut out = body::json(status, &v);
    for (k, val) in parts.headers.iter() {
        if k != http::header::CONTENT_LENGTH && k != http::header::CONTENT_TYPE {
            out.headers_mut().append(k, val.clone());
        }
    }
    Ok(out)
}
