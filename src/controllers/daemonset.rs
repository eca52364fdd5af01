//! The DaemonSet loop: one daemon pod on every node the DaemonSet fits (node selector,
//! affinity, taints it does not tolerate), rolling updates, revision history and status.
//! Decisions are in [`super::daemonset_plan`]; this module reads the shared caches,
//! executes the plan through the API, records events and remembers its pod writes.
//! Node changes wake every DaemonSet, as a node joining or being tainted changes where
//! daemons belong.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use super::daemonset_plan::{plan_daemonset, DaemonSetAction};
use super::informers::{Expectations, Informers};
use super::replicaset::api_message;
use super::workload_loop::{
    controller_config, expectations_met, gone_is_fine, in_namespace, next_sync, record,
    replace_status, write_revision, RevisionWrite,
};
use super::{retry_later, ControllerError};
use crate::client::events::{reference, Recorder};

struct Context {
    client: kube::Client,
    informers: Informers,
    recorder: Recorder,
    expectations: Expectations,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client: client.clone(),
        informers,
        expectations: Expectations::default(),
    });
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(ctx.informers.pods.changes())
    .with_config(controller_config());
    let sets = controller.store();
    controller
        .watches_stream(ctx.informers.nodes.changes(), move |_node: Node| {
            sets.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = ds.name_any();
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    if ds.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods and revisions.
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let pods = in_namespace(&ctx.informers.pods, &ns);
    if !expectations_met(&ctx.expectations, &uid, &pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let nodes: Vec<Node> = ctx
        .informers
        .nodes
        .state()
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect();
    let revisions = in_namespace(&ctx.informers.controller_revisions, &ns);
    let plan = plan_daemonset(&ds, &nodes, &pods, &revisions, Utc::now())
        .map_err(|e| ControllerError::Other(format!("planning daemonset {ns}/{name}: {e}")))?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let sets_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let object = reference(ds.as_ref());
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    let mut failed = false;
    for action in plan.actions {
        let result: Result<String, kube::Error> = match &action {
            DaemonSetAction::Event(e) => {
                record(&ctx.recorder, &object, Some(e.clone())).await;
                continue;
            }
            DaemonSetAction::CreateRevision(rev) => {
                write_revision(&revisions_api, RevisionWrite::Create(rev)).await
            }
            DaemonSetAction::RenumberRevision { name, revision } => {
                let write = RevisionWrite::Renumber {
                    name,
                    revision: *revision,
                };
                write_revision(&revisions_api, write).await
            }
            DaemonSetAction::DeleteRevision { name } => {
                write_revision(&revisions_api, RevisionWrite::Delete { name }).await
            }
            DaemonSetAction::CreatePod { pod, .. } => {
                pods_api.create(&PostParams::default(), pod).await.map(|p| {
                    created.push(p.name_any());
                    p.name_any()
                })
            }
            DaemonSetAction::DeletePod { name } => {
                gone_is_fine(pods_api.delete(name, &DeleteParams::default()).await).map(|()| {
                    deleted.push(name.clone());
                    name.clone()
                })
            }
            DaemonSetAction::UpdateStatus(status) => {
                replace_status(&sets_api, ds.as_ref(), |next| {
                    next.status = Some((**status).clone())
                })
                .await
                .map(|()| name.clone())
            }
        };
        match result {
            Ok(done) => record(&ctx.recorder, &object, action.success_event(&done)).await,
            Err(e) => {
                let message = api_message(&e);
                tracing::debug!(daemonset = %name, error = %message, "daemonset action failed");
                record(&ctx.recorder, &object, action.failure_event(&message)).await;
                failed = true;
                break;
            }
        }
    }
    ctx.expectations.expect(&uid, created, deleted);
    if failed {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(next_sync(plan.requeue_after))
}
