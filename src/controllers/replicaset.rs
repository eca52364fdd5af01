//! The ReplicaSet loop: keeps `spec.replicas` pods of each ReplicaSet alive, adopting
//! matching orphans and releasing pods that no longer match, and writes its status.
//! Decisions are in [`super::replicaset_plan`]; this module reads the caches, executes
//! the plan through the API, records events and remembers its writes (expectations).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::informers::{Expectations, Informers};
use super::pod_util::controller_of;
use super::replicaset_plan::{self as plan, ReplicaFailureReason};
use super::{retry_later, ControllerError};
use crate::client::events::{reference, EventType, Recorder};

/// Concurrent pod creates or deletes per sync.
const WRITE_CONCURRENCY: usize = 32;

struct Context {
    client: kube::Client,
    informers: Informers,
    recorder: Recorder,
    expectations: Expectations,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "replicaset-controller"),
        client: client.clone(),
        informers,
        expectations: Expectations::default(),
    });
    Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(ctx.informers.pods.changes())
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = rs.name_any();
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods.
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let in_namespace: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let find = |n: &str| {
        in_namespace
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
    };
    if !ctx.expectations.satisfied(
        &uid,
        |n| find(n).is_some(),
        |n| find(n).is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
    ) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache's own copies: a ReplicaSet may own tens of thousands of pods.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in &in_namespace {
        if plan::should_adopt(&rs, pod) {
            let mut refs: Vec<serde_json::Value> = pod
                .owner_references()
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            refs.push(owner_ref(&rs));
            let refs = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
            match pods
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&refs),
                )
                .await
            {
                Ok(adopted) => owned.push(Arc::new(adopted)),
                Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "adopting pod"),
            }
        } else if plan::should_release(&rs, pod) {
            let kept: Vec<_> = pod
                .owner_references()
                .iter()
                .filter(|r| r.uid != uid)
                .cloned()
                .collect();
            let patch = json!({"metadata": {"ownerReferences": kept, "uid": pod.metadata.uid}});
            if let Err(e) = pods
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::debug!(pod = %pod.name_any(), error = %e, "releasing pod");
            }
        } else if controller_of(&pod.metadata).is_some_and(|r| r.uid == uid) {
            owned.push(Arc::clone(pod));
        }
    }

    let now = Utc::now();
    let mut planned = plan::plan_replicaset(&rs, &owned, now);
    let rs_ref = reference(rs.as_ref());
    let mut failure: Option<(ReplicaFailureReason, String)> = None;

    let template = plan::pod_from_template(&rs);
    let results: Vec<_> = stream::iter(0..planned.create)
        .map(|_| {
            let pods = pods.clone();
            let template = template.clone();
            async move { pods.create(&PostParams::default(), &template).await }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(pod) => {
                let pod_name = pod.name_any();
                ctx.recorder
                    .record(
                        &rs_ref,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {pod_name}"),
                    )
                    .await;
                created.push(pod_name);
            }
            Err(e) => {
                let message = format!("Error creating: {}", api_message(&e));
                ctx.recorder
                    .record(&rs_ref, EventType::Warning, "FailedCreate", &message)
                    .await;
                failure.get_or_insert((ReplicaFailureReason::FailedCreate, message));
            }
        }
    }

    let results: Vec<_> = stream::iter(planned.delete.clone())
        .map(|pod_name| {
            let pods = pods.clone();
            async move {
                let r = pods.delete(&pod_name, &DeleteParams::default()).await;
                (pod_name, r)
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    let mut deleted = Vec::new();
    for (pod_name, result) in results {
        match result {
            Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {
                ctx.recorder
                    .record(
                        &rs_ref,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                deleted.push(pod_name);
            }
            Err(e) => {
                let message = format!("Error deleting: {}", api_message(&e));
                ctx.recorder
                    .record(&rs_ref, EventType::Warning, "FailedDelete", &message)
                    .await;
                failure.get_or_insert((ReplicaFailureReason::FailedDelete, message));
            }
        }
    }
    ctx.expectations.expect(&uid, created, deleted);

    let before = planned.status.conditions.clone();
    plan::record_manage_result(
        &mut planned.status,
        failure.as_ref().map(|(r, m)| (*r, m.as_str())),
        now,
    );
    if planned.status_changed || planned.status.conditions != before {
        let mut next = (*rs).clone();
        next.status = Some(planned.status);
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::to_vec(&next).map_err(|e| ControllerError::Other(e.to_string()))?;
        match api
            .replace_status(&name, &PostParams::default(), body)
            .await
        {
            Ok(_) => {}
            // A newer version is on its way through the watch; it brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => {
                return Err(ControllerError::api(format!(
                    "updating status of replicaset {ns}/{name}"
                ))(e))
            }
        }
    }
    if failure.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // Pods become available `minReadySeconds` after they are ready; look again then.
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    if min_ready > 0 {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

fn owner_ref(rs: &ReplicaSet) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": rs.name_any(),
        "uid": rs.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The API's message for an error (what upstream puts in events).
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
