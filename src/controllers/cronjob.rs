//! The CronJob loop: creates a Job at each scheduled time (in the CronJob's time zone,
//! honouring `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`), keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and prunes finished Jobs
//! beyond the history limits. Decisions are in [`super::cronjob_plan`]; this module reads
//! the shared Job cache, executes the plan through the API, records events, and wakes
//! each CronJob again just after its next schedule time.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::cron::ZoneInfoDir;
use super::cronjob_plan::{fill_active_reference, plan_cronjob, CronJobAction};
use super::informers::{Expectations, Informers};
use super::replicaset::api_message;
use super::workload_loop::{
    already_exists, controller_config, expectations_met, gone_is_fine, in_namespace, next_sync,
    record, replace_status,
};
use super::{retry_later, ControllerError};
use crate::client::events::{reference, Recorder};

struct Context {
    client: kube::Client,
    informers: Informers,
    recorder: Recorder,
    expectations: Expectations,
    zones: ZoneInfoDir,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client: client.clone(),
        informers,
        expectations: Expectations::default(),
        zones: ZoneInfoDir::system(),
    });
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(ctx.informers.jobs.changes())
    .with_config(controller_config())
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = cj.name_any();
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    // The planner drops `active` Jobs it cannot see: wait for our own creations.
    let jobs = in_namespace(&ctx.informers.jobs, &ns);
    if !expectations_met(&ctx.expectations, &uid, &jobs) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let plan = plan_cronjob(&cj, &jobs, Utc::now(), &ctx.zones)
        .map_err(|e| ControllerError::Other(format!("planning cronjob {ns}/{name}: {e}")))?;

    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cronjobs_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let object = reference(cj.as_ref());
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    let mut created_job: Option<Job> = None;
    let mut failed = false;
    for action in plan.actions {
        let result: Result<(), kube::Error> = match &action {
            CronJobAction::Event(e) => {
                record(&ctx.recorder, &object, Some(e.clone())).await;
                continue;
            }
            CronJobAction::CreateJob(job) => {
                match jobs_api.create(&PostParams::default(), job).await {
                    Ok(j) => {
                        created.push(j.name_any());
                        created_job = Some(j);
                        Ok(())
                    }
                    // Made by an earlier sync whose status write was lost: it is this
                    // schedule's Job, carry on to record it.
                    Err(e) if already_exists(&e) => continue,
                    Err(e) => Err(e),
                }
            }
            CronJobAction::DeleteJob { name } => {
                gone_is_fine(jobs_api.delete(name, &DeleteParams::background()).await).map(|()| {
                    deleted.push(name.clone());
                })
            }
            CronJobAction::UpdateStatus(status) => {
                let mut status = (**status).clone();
                if let Some(j) = &created_job {
                    fill_active_reference(&mut status, j);
                }
                replace_status(&cronjobs_api, cj.as_ref(), |next| {
                    next.status = Some(status)
                })
                .await
            }
        };
        match result {
            Ok(()) => record(&ctx.recorder, &object, action.success_event()).await,
            Err(e) => {
                let message = api_message(&e);
                tracing::debug!(cronjob = %name, error = %message, "cronjob action failed");
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
