//! The StatefulSet loop: member pods `<set>-0..N-1` with stable names, created in order
//! (each waits for its predecessor to be ready under `OrderedReady`) together with the
//! claims of their `volumeClaimTemplates`, rolling updates from the highest ordinal,
//! revision history and status. Decisions are in [`super::statefulset_plan`]; this module
//! reads the shared caches, executes the plan through the API, records events and
//! remembers its pod writes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::informers::{Expectations, Informers};
use super::replicaset::api_message;
use super::statefulset_plan::{plan_statefulset, StatefulSetAction};
use super::workload_loop::{
    already_exists, controller_config, expectations_met, gone_is_fine, in_namespace, next_sync,
    record, replace_status, write_revision, RevisionWrite,
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
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
        client: client.clone(),
        informers,
        expectations: Expectations::default(),
    });
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(ctx.informers.pods.changes())
    .with_config(controller_config())
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    if set.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods and revisions; claims stay.
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let pods = in_namespace(&ctx.informers.pods, &ns);
    if !expectations_met(&ctx.expectations, &uid, &pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let claims = in_namespace(&ctx.informers.claims, &ns);
    let revisions = in_namespace(&ctx.informers.controller_revisions, &ns);
    let plan = plan_statefulset(&set, &pods, &claims, &revisions, Utc::now())
        .map_err(|e| ControllerError::Other(format!("planning statefulset {ns}/{name}: {e}")))?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let sets_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let object = reference(set.as_ref());
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    let mut failed = false;
    for action in plan.actions {
        let result: Result<String, kube::Error> = match &action {
            StatefulSetAction::Event(e) => {
                record(&ctx.recorder, &object, Some(e.clone())).await;
                continue;
            }
            StatefulSetAction::CreateRevision(rev) => {
                write_revision(&revisions_api, RevisionWrite::Create(rev)).await
            }
            StatefulSetAction::RenumberRevision { name, revision } => {
                let write = RevisionWrite::Renumber {
                    name,
                    revision: *revision,
                };
                write_revision(&revisions_api, write).await
            }
            StatefulSetAction::DeleteRevision { name } => {
                write_revision(&revisions_api, RevisionWrite::Delete { name }).await
            }
            StatefulSetAction::CreateClaim { claim, .. } => {
                match claims_api.create(&PostParams::default(), claim).await {
                    // The cache had not shown it yet: the claim is there, as wanted.
                    Err(e) if already_exists(&e) => Ok(claim.name_any()),
                    other => other.map(|c| c.name_any()),
                }
            }
            StatefulSetAction::CreatePod { pod, .. } => {
                pods_api.create(&PostParams::default(), pod).await.map(|p| {
                    created.push(p.name_any());
                    p.name_any()
                })
            }
            StatefulSetAction::DeletePod { name, .. } => {
                gone_is_fine(pods_api.delete(name, &DeleteParams::default()).await).map(|()| {
                    deleted.push(name.clone());
                    name.clone()
                })
            }
            StatefulSetAction::UpdateStatus(status) => {
                replace_status(&sets_api, set.as_ref(), |next| {
                    next.status = Some((**status).clone())
                })
                .await
                .map(|()| name.clone())
            }
        };
        match result {
            Ok(_) => record(&ctx.recorder, &object, action.success_event()).await,
            Err(e) => {
                let message = api_message(&e);
                tracing::debug!(statefulset = %name, error = %message, "statefulset action failed");
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
