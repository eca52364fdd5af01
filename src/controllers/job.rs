//! The Job loop: runs pods until `completions` succeed or the Job fails (backoff limit,
//! active deadline), with the pod-failure backoff, and writes the Job's status and its
//! `Complete`/`Failed` conditions; once finished, it deletes Jobs whose
//! `ttlSecondsAfterFinished` has passed (the TTL-after-finished controller's work).
//! Decisions are in [`super::job_plan`]; this module reads the shared pod cache, executes
//! the plan through the API, records events and remembers its pod writes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::informers::{Expectations, Informers};
use super::job_plan::{finished_condition, plan_job, ttl_after_finished, JobAction, TtlDecision};
use super::replicaset::api_message;
use super::workload_loop::{
    controller_config, expectations_met, gone_is_fine, in_namespace, next_sync, record,
    replace_status,
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
        recorder: Recorder::new(client.clone(), "job-controller"),
        client: client.clone(),
        informers,
        expectations: Expectations::default(),
    });
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns_stream(ctx.informers.pods.changes())
        .with_config(controller_config())
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = job.name_any();
    let ns = job.namespace().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if finished_condition(&job).is_some() {
        return match ttl_after_finished(&job, Utc::now()) {
            TtlDecision::NotApplicable => Ok(Action::await_change()),
            TtlDecision::RequeueAfter(after) => Ok(Action::requeue(after)),
            TtlDecision::Delete => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                gone_is_fine(jobs_api.delete(&name, &params).await).map_err(
                    ControllerError::api(format!("deleting finished job {ns}/{name}")),
                )?;
                Ok(Action::await_change())
            }
        };
    }
    let pods = in_namespace(&ctx.informers.pods, &ns);
    if !expectations_met(&ctx.expectations, &uid, &pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let plan = plan_job(&job, &pods, Utc::now())
        .map_err(|e| ControllerError::Other(format!("planning job {ns}/{name}: {e}")))?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let object = reference(job.as_ref());
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    let mut failed = false;
    for action in plan.actions {
        let result: Result<String, kube::Error> = match &action {
            JobAction::Event(e) => {
                record(&ctx.recorder, &object, Some(e.clone())).await;
                continue;
            }
            JobAction::CreatePod(pod) => {
                pods_api.create(&PostParams::default(), pod).await.map(|p| {
                    created.push(p.name_any());
                    p.name_any()
                })
            }
            JobAction::DeletePod { name } => {
                gone_is_fine(pods_api.delete(name, &DeleteParams::background()).await).map(|()| {
                    deleted.push(name.clone());
                    name.clone()
                })
            }
            JobAction::UpdateStatus(status) => replace_status(&jobs_api, job.as_ref(), |next| {
                next.status = Some((**status).clone())
            })
            .await
            .map(|()| name.clone()),
        };
        match result {
            Ok(done) => record(&ctx.recorder, &object, action.success_event(&done)).await,
            Err(e) => {
                let message = api_message(&e);
                tracing::debug!(job = %name, error = %message, "job action failed");
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
