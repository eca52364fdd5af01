//! The Deployment loop: rolls ReplicaSets toward the deployment's template (RollingUpdate
//! or Recreate), keeps revisions and history, and writes status. Decisions are in
//! [`super::deployment_plan`]; this module feeds it from the caches and executes the
//! actions in order. A conflict stops the sync; the next one plans from fresh objects.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::deployment_plan::{plan_deployment, progress_check_after, DeploymentAction};
use super::informers::Informers;
use super::{retry_later, ControllerError};
use crate::client::events::{reference, EventType, Recorder};

struct Context {
    client: kube::Client,
    informers: Informers,
    recorder: Recorder,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client: client.clone(),
        informers,
    });
    Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(ctx.informers.replicasets.changes())
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = d.name_any();
    let ns = d.namespace().unwrap_or_default();
    let in_ns = |n: Option<&String>| n.map(String::as_str) == Some(ns.as_str());
    let rss: Vec<ReplicaSet> = ctx
        .informers
        .replicasets
        .state()
        .iter()
        .filter(|r| in_ns(r.metadata.namespace.as_ref()))
        .map(|r| (**r).clone())
        .collect();
    // The cache's own copies: a namespace may hold tens of thousands of pods.
    let pods: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| in_ns(p.metadata.namespace.as_ref()))
        .collect();
    let now = Utc::now();
    let actions = plan_deployment(&d, &rss, &pods, now);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let d_ref = reference(d.as_ref());
    let what = |action: &str| format!("{action} for deployment {ns}/{name}");
    for action in actions {
        let result = match action {
            DeploymentAction::CreateReplicaSet(rs) => rs_api
                .create(&PostParams::default(), &rs)
                .await
                .map(|_| ())
                .map_err(|e| (what("creating replicaset"), e)),
            DeploymentAction::UpdateReplicaSet(rs) => {
                let rs_name = rs.name_any();
                rs_api
                    .replace(&rs_name, &PostParams::default(), &rs)
                    .await
                    .map(|_| ())
                    .map_err(|e| (what("updating replicaset"), e))
            }
            DeploymentAction::ScaleReplicaSet {
                name: rs_name,
                replicas,
                annotations,
            } => {
                let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": replicas}});
                rs_api
                    .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| (what("scaling replicaset"), e))
            }
            DeploymentAction::DeleteReplicaSet { name: rs_name } => {
                match rs_api.delete(&rs_name, &DeleteParams::background()).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    r => r
                        .map(|_| ())
                        .map_err(|e| (what("deleting old replicaset"), e)),
                }
            }
            DeploymentAction::UpdateDeploymentAnnotations(annotations) => {
                let patch = json!({"metadata": {"annotations": annotations}});
                d_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| (what("annotating"), e))
            }
            DeploymentAction::UpdateStatus(status) => {
                let mut next = (*d).clone();
                next.status = Some(status);
                let body =
                    serde_json::to_vec(&next).map_err(|e| ControllerError::Other(e.to_string()))?;
                d_api
                    .replace_status(&name, &PostParams::default(), body)
                    .await
                    .map(|_| ())
                    .map_err(|e| (what("updating status"), e))
            }
            DeploymentAction::Event {
                type_,
                reason,
                message,
            } => {
                let kind = if type_ == "Warning" {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                ctx.recorder.record(&d_ref, kind, &reason, &message).await;
                Ok(())
            }
        };
        match result {
            Ok(()) => {}
            // Someone changed an object since our caches saw it: plan again shortly.
            Err((_, kube::Error::Api(s))) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err((action, e)) => return Err(ControllerError::api(action)(e)),
        }
    }
    match progress_check_after(&d, now).and_then(|d| d.to_std().ok()) {
        Some(after) => Ok(Action::requeue(after.max(Duration::from_secs(1)))),
        None => Ok(Action::await_change()),
    }
}
