//! The HorizontalPodAutoscaler loop (autoscaling/v2; v1 objects are stored as v2 and reach
//! it the same way). Every [`plan::SYNC_PERIOD`] per HPA (at once when it is created or
//! its spec changes) it reads the scale subresource of `scaleTargetRef`, the pods the
//! scale's `status.selector` selects (from the shared pod cache), and their metrics from
//! `metrics.k8s.io` through the API; [`super::podautoscaler_plan`] decides; this module
//! writes the scale, the HPA status and the events (`horizontal-pod-autoscaler`).
//!
//! Recommendations and past scale events are kept in memory per HPA, as upstream keeps
//! them: a restart forgets them (and so restarts the scale-down stabilization window).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::Value;

use super::informers::Informers;
use super::podautoscaler_plan::{self as plan, History, PodSample, Samples, ScaleView};
use super::{retry_later, ControllerError};
use crate::api::metrics::PodMetricsList;
use crate::api::selector::LabelSelector;
use crate::apimachinery::quantity::parse_quantity;
use crate::client::events::{reference, EventType, Recorder};
use crate::registry::resources;

struct Context {
    client: kube::Client,
    informers: Informers,
    recorder: Recorder,
    histories: Mutex<HashMap<String, History>>,
    /// When each HPA (uid) was last evaluated, and at which generation.
    last_sync: Mutex<HashMap<String, (Instant, Option<i64>)>>,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client: client.clone(),
        informers,
        histories: Mutex::new(HashMap::new()),
        last_sync: Mutex::new(HashMap::new()),
    });
    Controller::new(
        Api::<HorizontalPodAutoscaler>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

/// The time left before this HPA is due, when it was evaluated recently at the same
/// generation (its own status writes must not make it sync faster than the period).
fn not_due(ctx: &Context, uid: &str, generation: Option<i64>) -> Option<Duration> {
    let mut last = ctx.last_sync.lock().ok()?;
    if let Some((at, gen)) = last.get(uid) {
        let elapsed = at.elapsed();
        if *gen == generation && elapsed < plan::SYNC_PERIOD {
            return Some(plan::SYNC_PERIOD - elapsed);
        }
    }
    last.insert(uid.to_string(), (Instant::now(), generation));
    None
}

async fn reconcile(
    hpa: Arc<HorizontalPodAutoscaler>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let uid = hpa.metadata.uid.clone().unwrap_or_default();
    if hpa.metadata.deletion_timestamp.is_some() {
        forget(&ctx, &uid);
        return Ok(Action::await_change());
    }
    if let Some(wait) = not_due(&ctx, &uid, hpa.metadata.generation) {
        return Ok(Action::requeue(wait));
    }
    let ns = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let now = Utc::now();
    let hpa_ref = reference(hpa.as_ref());
    let target = hpa
        .spec
        .as_ref()
        .map(|s| s.scale_target_ref.clone())
        .unwrap_or_default();

    let api_version = target.api_version.as_deref().unwrap_or("");
    let scale_path = match scale_path(&ns, api_version, &target.kind, &target.name) {
        Ok(p) => p,
        Err(e) => {
            let planned = plan::failed_get_scale(&hpa, &e, now);
            finish(&ctx, &hpa, planned, &hpa_ref).await?;
            return Ok(Action::requeue(plan::SYNC_PERIOD));
        }
    };
    let scale = match get_json(&ctx.client, &scale_path).await {
        Ok(s) => s,
        Err(e) => {
            let planned = plan::failed_get_scale(&hpa, &e, now);
            finish(&ctx, &hpa, planned, &hpa_ref).await?;
            return Ok(Action::requeue(plan::SYNC_PERIOD));
        }
    };
    let view = ScaleView {
        spec_replicas: scale["spec"]["replicas"].as_i64().unwrap_or(0) as i32,
        status_replicas: scale["status"]["replicas"].as_i64().unwrap_or(0) as i32,
        selector: scale["status"]["selector"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    let (pods, samples) = match &view.selector {
        Some(sel) => (
            selected_pods(&ctx, &ns, sel),
            pod_samples(&ctx.client, &ns, sel).await,
        ),
        None => (Vec::new(), Ok(HashMap::new())),
    };

    let mut history = ctx
        .histories
        .lock()
        .ok()
        .and_then(|h| h.get(&uid).cloned())
        .unwrap_or_default();
    let mut planned = plan::plan(&hpa, &view, &pods, &samples, &mut history, now);
    if planned.rescale {
        let patch = serde_json::json!({"spec": {"replicas": planned.desired}});
        match patch_json(&ctx.client, &scale_path, &patch).await {
            Ok(_) => {
                let behavior_set = hpa.spec.as_ref().is_some_and(|s| s.behavior.is_some());
                planned.rescaled(&mut history, behavior_set, now);
                tracing::info!(hpa = %format!("{ns}/{name}"), from = planned.current, to = planned.desired, reason = %planned.reason, "rescaled");
            }
            Err(e) => planned.rescale_failed(&e, now),
        }
    }
    if let Ok(mut h) = ctx.histories.lock() {
        h.insert(uid, history);
    }
    finish(&ctx, &hpa, planned, &hpa_ref).await?;
    Ok(Action::requeue(plan::SYNC_PERIOD))
}

fn forget(ctx: &Context, uid: &str) {
    if let Ok(mut h) = ctx.histories.lock() {
        h.remove(uid);
    }
    if let Ok(mut l) = ctx.last_sync.lock() {
        l.remove(uid);
    }
}

/// Record the plan's events and write the status when it changed.
async fn finish(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    planned: plan::Plan,
    hpa_ref: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<(), ControllerError> {
    for e in &planned.events {
        let kind = if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.recorder
            .record(hpa_ref, kind, &e.reason, &e.message)
            .await;
    }
    if hpa.status.as_ref() == Some(&planned.status) {
        return Ok(());
    }
    let ns = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let mut next = hpa.clone();
    next.status = Some(planned.status);
    let body = serde_json::to_vec(&next).map_err(|e| ControllerError::Other(e.to_string()))?;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), body)
        .await
    {
        Ok(_) => Ok(()),
        // A newer version is on its way; the next sync writes again.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api(format!(
            "updating status of horizontalpodautoscaler {ns}/{name}"
        ))(e)),
    }
}

/// The scale subresource's path for a target reference (the RESTMapper's job upstream).
fn scale_path(ns: &str, api_version: &str, kind: &str, name: &str) -> Result<String, String> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let r = resources::find_kind(group, version, kind)
        .filter(|r| r.namespaced && r.has_subresource("scale").is_some())
        .ok_or_else(|| {
            format!("the server could not find the requested resource: no scale subresource for {kind} in {api_version:?}")
        })?;
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    Ok(format!(
        "{prefix}/namespaces/{ns}/{}/{}/scale",
        r.plural,
        encode(name)
    ))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}

async fn get_json(client: &kube::Client, path: &str) -> Result<Value, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client.request::<Value>(req).await.map_err(api_message)
}

async fn patch_json(client: &kube::Client, path: &str, patch: &Value) -> Result<Value, String> {
    let body = serde_json::to_vec(patch).map_err(|e| e.to_string())?;
    let req = http::Request::patch(path)
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(body)
        .map_err(|e| e.to_string())?;
    client.request::<Value>(req).await.map_err(api_message)
}

fn selected_pods(ctx: &Context, ns: &str, selector: &str) -> Vec<Pod> {
    let Ok(sel) = LabelSelector::parse(selector) else {
        return Vec::new();
    };
    ctx.informers
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| {
            let labels: serde_json::Map<String, Value> = p
                .labels()
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            sel.matches(Some(&labels))
        })
        .map(|p| (*p).clone())
        .collect()
}

/// Pod samples from `metrics.k8s.io`, summed over containers per resource.
async fn pod_samples(client: &kube::Client, ns: &str, selector: &str) -> Samples {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
        encode(selector)
    );
    let list = get_json(client, &path)
        .await
        .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
    let list: PodMetricsList = serde_json::from_value(list)
        .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
    let mut out = HashMap::new();
    for item in list.items {
        let Ok(timestamp) = DateTime::parse_from_rfc3339(&item.timestamp) else {
            continue;
        };
        let window = parse_window(&item.window).unwrap_or(chrono::Duration::seconds(15));
        let mut milli: BTreeMap<String, i64> = BTreeMap::new();
        for c in &item.containers {
            for (res, q) in &c.usage {
                if let Ok(q) = parse_quantity(q) {
                    *milli.entry(res.clone()).or_default() += q.milli_value();
                }
            }
        }
        out.insert(
            item.metadata.name.clone(),
            PodSample {
                timestamp: timestamp.with_timezone(&Utc),
                window,
                milli,
            },
        );
    }
    Ok(out)
}

/// A metrics window (`15s`, `1.5s`, `500ms`, `1m0s`).
fn parse_window(s: &str) -> Option<chrono::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..digits].parse().ok()?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        total += n * match &rest[digits..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_end..];
    }
    Some(chrono::Duration::milliseconds((total * 1000.0) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_paths_follow_the_target_kind() {
        assert_eq!(
            scale_path("default", "apps/v1", "Deployment", "web").unwrap(),
            "/apis/apps/v1/namespaces/default/deployments/web/scale"
        );
        assert_eq!(
            scale_path("ns", "v1", "ReplicationController", "rc").unwrap(),
            "/api/v1/namespaces/ns/replicationcontrollers/rc/scale"
        );
        assert!(scale_path("default", "v1", "Pod", "p").is_err());
    }

    #[test]
    fn windows_parse_as_go_durations() {
        assert_eq!(parse_window("15s"), Some(chrono::Duration::seconds(15)));
        assert_eq!(
            parse_window("1.5s"),
            Some(chrono::Duration::milliseconds(1500))
        );
        assert_eq!(parse_window("1m0s"), Some(chrono::Duration::seconds(60)));
        assert_eq!(parse_window("bogus"), None);
    }
}
