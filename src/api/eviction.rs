//! The `pods/eviction` subresource (`POST .../pods/{name}/eviction` with a policy/v1 or
//! v1beta1 `Eviction`): a pod delete that PodDisruptionBudgets may refuse, as
//! kube-apiserver's eviction REST does. Pods that are finished, pending or already being
//! deleted go at once; otherwise the one budget guarding the pod must allow a disruption,
//! which the handler spends (recording the pod in `disruptedPods`, guarded by the budget's
//! resourceVersion) before it marks the pod `DisruptionTarget` and deletes it through the
//! ordinary delete path. A refusal is a 429 naming the budget. The decisions themselves are
//! in [`crate::controllers::disruption_plan`].

use std::sync::Arc;

use http::{header, HeaderValue, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::body::{self, Body, ContentType};
use super::cache::decode;
use super::objects::{list_prefix, object_key, store_error};
use super::request::{Query, ResourcePath};
use super::status::{ApiError, ApiResult};
use super::{ApiServer, UserInfo};
use crate::controllers::disruption_plan::{self as plan, Refusal, DISRUPTION_BUDGET_CAUSE};
use crate::registry::resources;

/// How often a write racing other writers is retried (upstream retries 20 times).
const RETRIES: usize = 20;

/// A metav1 Status failure with its code in the body and on the response.
fn failure(
    code: u16,
    reason: Option<&str>,
    message: &str,
    details: Option<Value>,
) -> Response<Body> {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code,
    });
    if let Some(r) = reason {
        s["reason"] = json!(r);
    }
    if let Some(d) = details {
        s["details"] = d;
    }
    body::json(code, &s)
}

/// The answer for a budget that refuses the eviction.
fn refusal(r: &Refusal) -> Response<Body> {
    let code = r.code();
    let (reason, details) = if code == 429 {
        let mut d = json!({
            "causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": r.cause().unwrap_or_default()}],
        });
        if let Some(secs) = r.retry_after_seconds() {
            d["retryAfterSeconds"] = json!(secs);
        }
        ("TooManyRequests", d)
    } else {
        (
            "Forbidden",
            json!({"name": r.pdb(), "group": "policy", "kind": "poddisruptionbudget"}),
        )
    };
    let mut resp = failure(code, Some(reason), &r.message(), Some(details));
    if let Some(secs) = r.retry_after_seconds() {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn evicted() -> Response<Body> {
    body::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// What the eviction asks of the delete.
struct Request {
    /// The Eviction's `deleteOptions` (JSON), passed on to the delete.
    delete_options: Value,
    dry_run: bool,
    /// Whether the client itself set a resourceVersion precondition.
    client_rv: bool,
}

impl Request {
    fn parse(eviction: &Value, name: &str, q: &Query) -> ApiResult<Request> {
        let api_version = eviction["apiVersion"].as_str().unwrap_or("");
        let kind = eviction["kind"].as_str().unwrap_or("");
        if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
            return Err(ApiError::BadRequest(format!(
                "not a Eviction object: {api_version}, Kind={kind}"
            )));
        }
        if eviction["metadata"]["name"].as_str() != Some(name) {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
        let mut delete_options = match &eviction["deleteOptions"] {
            Value::Object(_) => eviction["deleteOptions"].clone(),
            _ => json!({}),
        };
        let body_dry_run: Vec<String> = delete_options["dryRun"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if q.dry_run && !body_dry_run.is_empty() && body_dry_run != ["All"] {
            return Err(ApiError::BadRequest(format!(
                "Non-matching dry-run options in request and content: [All] and {body_dry_run:?}"
            )));
        }
        if q.dry_run {
            delete_options["dryRun"] = json!(["All"]);
        }
        let dry_run = q.dry_run || body_dry_run.iter().any(|d| d == "All");
        let client_rv = delete_options["preconditions"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        Ok(Request {
            delete_options,
            dry_run,
            client_rv,
        })
    }

    /// The delete options, with `rv` as the resourceVersion precondition when given.
    fn options(&self, rv: Option<i64>) -> Value {
        let mut o = self.delete_options.clone();
        if let Some(rv) = rv {
            if !o["preconditions"].is_object() {
                o["preconditions"] = json!({});
            }
            o["preconditions"]["resourceVersion"] = json!(rv.to_string());
        }
        o
    }
}

impl ApiServer {
    /// `POST pods/{name}/eviction`.
    pub(crate) async fn evict(
        self: &Arc<Self>,
        p: &ResourcePath,
        q: &Query,
        ct: ContentType,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let name = p.name.clone().unwrap_or_default();
        let ns = p.namespace.clone().unwrap_or_default();
        let eviction = body::decode_object(ct, bytes)?;
        let req = Request::parse(&eviction, &name, q)?;
        let pod_path = ResourcePath {
            subresource: None,
            ..p.clone()
        };
        let key = object_key(r, Some(&ns), &name);

        // Pods that already caused their disruption (or none) are deleted at once.
        let mut attempt = 0;
        let (pod, pod_rev) = loop {
            attempt += 1;
            let kv = self
                .store
                .get(&key)
                .map_err(|e| store_error(r, &name, e))?
                .ok_or_else(|| ApiError::NotFound {
                    qualified: r.qualified_plural(),
                    name: name.clone(),
                })?;
            let value =
                decode(&kv).map_err(|e| ApiError::Internal(format!("decoding {key}: {e}")))?;
            let pod: Pod = serde_json::from_value(value)
                .map_err(|e| ApiError::Internal(format!("decoding pod {ns}/{name}: {e}")))?;
            if !plan::can_ignore_budgets(&pod) {
                break (pod, kv.mod_revision);
            }
            let guard = (plan::should_enforce_resource_version(&pod) && !req.client_rv)
                .then_some(kv.mod_revision);
            match self.delete_pod(&pod_path, &req, guard).await {
                Err(ApiError::Conflict { .. }) if !req.client_rv && attempt < RETRIES => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(evicted()),
            }
        };

        let budgets = self.budgets_guarding(&pod).await?;
        if budgets.len() > 1 {
            return Ok(failure(
                500,
                None,
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                None,
            ));
        }
        // Whether the delete must be guarded by the pod's resourceVersion (an unready pod
        // let go without spending a disruption must not have become ready meanwhile).
        let mut guard_unready = false;
        let mut budget_name = String::new();
        if let Some(first) = budgets.into_iter().next() {
            budget_name = first.metadata.name.clone().unwrap_or_default();
            if plan::unready_pod_may_go(&first, &pod) {
                guard_unready = true;
            } else if let Some(resp) = self
                .spend_disruption(first, &name, req.dry_run, user)
                .await?
            {
                return Ok(resp);
            }
        }

        let guard = (guard_unready && !req.client_rv).then_some(pod_rev);
        let guard = if req.dry_run {
            guard
        } else {
            match self
                .mark_disruption_target(&pod_path, &req, guard, user)
                .await
            {
                // The condition changed the pod: a precondition now names the new version.
                Ok(new_rev) => (guard.is_some() || req.client_rv).then_some(new_rev),
                Err(ApiError::Conflict { .. }) if guard.is_some() && !req.client_rv => {
                    return Ok(refusal(&Refusal::StillProcessing { pdb: budget_name }))
                }
                Err(e) => return Err(e),
            }
        };
        match self.delete_pod(&pod_path, &req, guard).await {
            Ok(()) => Ok(evicted()),
            // The pod changed (became ready?) since the budget was consulted: try again.
            Err(ApiError::Conflict { .. }) if guard_unready && !req.client_rv => {
                Ok(refusal(&Refusal::StillProcessing { pdb: budget_name }))
            }
            Err(e) => Err(e),
        }
    }

    /// The budgets in the pod's namespace whose selector guards it.
    async fn budgets_guarding(&self, pod: &Pod) -> ApiResult<Vec<PodDisruptionBudget>> {
        let res = resources::find("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not registered".into()))?;
        self.cache.sync().await;
        let (items, _) = self
            .cache
            .list(&list_prefix(res, pod.metadata.namespace.as_deref()), None);
        Ok(items
            .into_iter()
            .filter_map(|(_, o)| o.parse::<PodDisruptionBudget>().ok())
            .filter(|b| plan::guards(b, pod))
            .collect())
    }

    /// Spend one disruption of `budget` for `pod_name`: write its status guarded by its
    /// resourceVersion, re-reading it on conflicts. Returns the refusal to answer with, if
    /// the budget does not allow it.
    async fn spend_disruption(
        &self,
        mut budget: PodDisruptionBudget,
        pod_name: &str,
        dry_run: bool,
        user: &UserInfo,
    ) -> ApiResult<Option<Response<Body>>> {
        let res = resources::find("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not registered".into()))?;
        let ns = budget.metadata.namespace.clone().unwrap_or_default();
        let name = budget.metadata.name.clone().unwrap_or_default();
        let key = object_key(res, Some(&ns), &name);
        let path = ResourcePath {
            resource: res,
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            subresource: Some("status".into()),
        };
        for attempt in 0..RETRIES {
            if attempt > 0 {
                let kv = self
                    .store
                    .get(&key)
                    .map_err(|e| store_error(res, &name, e))?
                    .ok_or_else(|| ApiError::NotFound {
                        qualified: res.qualified_plural(),
                        name: name.clone(),
                    })?;
                let value =
                    decode(&kv).map_err(|e| ApiError::Internal(format!("decoding {key}: {e}")))?;
                budget = serde_json::from_value(value).map_err(|e| {
                    ApiError::Internal(format!("decoding poddisruptionbudget {ns}/{name}: {e}"))
                })?;
            }
            let status =
                match plan::check_and_decrement(&budget, pod_name, chrono::Utc::now(), dry_run) {
                    Ok(s) => s,
                    Err(r) => return Ok(Some(refusal(&r))),
                };
            if dry_run {
                return Ok(None);
            }
            let mut next = budget.clone();
            next.status = Some(status);
            next.metadata.managed_fields = None;
            let bytes = serde_json::to_vec(&next)
                .map_err(|e| ApiError::Internal(format!("encoding poddisruptionbudget: {e}")))?;
            match self
                .update(&path, &Query::default(), ContentType::Json, &bytes, user)
                .await
            {
                Ok(_) => return Ok(None),
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Some(failure(
            504,
            Some("Timeout"),
            &format!("couldn't update PodDisruptionBudget {name:?} due to conflicts"),
            Some(json!({"retryAfterSeconds": 10})),
        )))
    }

    /// Add the `DisruptionTarget` condition (`EvictionByEvictionAPI`) to the pod before it
    /// is deleted, checking `guard` (or the client's precondition) as the delete would.
    /// Returns the pod's new resourceVersion.
    async fn mark_disruption_target(
        &self,
        pod_path: &ResourcePath,
        req: &Request,
        guard: Option<i64>,
        user: &UserInfo,
    ) -> ApiResult<i64> {
        let opts = req.options(guard);
        let mut patch = json!({
            "status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
                "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }]},
        });
        if let Some(rv) = opts["preconditions"]["resourceVersion"].as_str() {
            patch["metadata"]["resourceVersion"] = json!(rv);
        }
        let path = ResourcePath {
            subresource: Some("status".into()),
            ..pod_path.clone()
        };
        let bytes = serde_json::to_vec(&patch)
            .map_err(|e| ApiError::Internal(format!("encoding pod condition: {e}")))?;
        let resp = self
            .patch(
                &path,
                &Query::default(),
                ContentType::StrategicMergePatch,
                &bytes,
                user,
            )
            .await?;
        let out = body::read(resp.into_body()).await?;
        let pod: Value = body::parse_json(&out)?;
        pod["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::Internal("the patched pod has no resourceVersion".into()))
    }

    /// Delete the pod through the ordinary (graceful) delete path with the eviction's
    /// options, `guard` as its resourceVersion precondition when given.
    async fn delete_pod(
        &self,
        pod_path: &ResourcePath,
        req: &Request,
        guard: Option<i64>,
    ) -> ApiResult<()> {
        let q = Query {
            dry_run: req.dry_run,
            ..Query::default()
        };
        let bytes = serde_json::to_vec(&req.options(guard))
            .map_err(|e| ApiError::Internal(format!("encoding delete options: {e}")))?;
        self.delete(pod_path, &q, &bytes).await.map(|_| ())
    }
}
