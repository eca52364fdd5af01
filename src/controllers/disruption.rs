//! The disruption controller: keeps every PodDisruptionBudget's status (expected and
//! healthy pods, disruptions allowed, the `disruptedPods` the eviction subresource
//! recorded, the `DisruptionAllowed` condition) current, so evictions can be approved or
//! refused. Decisions are in [`super::disruption_plan`]; this module reads the shared pod
//! cache (and the pods' controllers when a budget needs their scale), writes the status
//! subresource and records events.
//!
//! Triggers: budget changes, and changes of pods the budgets select; a budget with
//! pending `disruptedPods` entries is looked at again when the earliest expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use super::disruption_plan::{self as plan, PodController};
use super::informers::Informers;
use super::pod_util::controller_of;
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
        // kube-controller-manager's disruption controller reports as this component.
        recorder: Recorder::new(client.clone(), "controllermanager"),
        client: client.clone(),
        informers,
    });
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    controller
        .watches_stream(ctx.informers.pods.changes(), move |pod: Pod| {
            budgets
                .state()
                .into_iter()
                .filter(|b| plan::covers(b, &pod))
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = pdb.name_any();
    let ns = pdb.namespace().unwrap_or_default();
    let cached = ctx.informers.pods.state();
    let pods: Vec<&Pod> = cached
        .iter()
        .map(Arc::as_ref)
        .filter(|p| plan::covers(&pdb, p))
        .collect();

    // The scales of the pods' controllers, by controller uid, when the budget needs them.
    let mut scales: HashMap<String, PodController> = HashMap::new();
    if plan::needs_controllers(&pdb) {
        for pod in &pods {
            if let Some(r) = controller_of(&pod.metadata) {
                if !scales.contains_key(&r.uid) {
                    let found = resolve_controller(&ctx, &ns, r).await?;
                    scales.insert(r.uid.clone(), found);
                }
            }
        }
    }
    let now = Utc::now();
    let planned = plan::plan_status(
        &pdb,
        &pods,
        |pod| match controller_of(&pod.metadata) {
            None => PodController::Unmanaged,
            Some(r) => scales
                .get(&r.uid)
                .cloned()
                .unwrap_or(PodController::NotFound),
        },
        now,
    );

    let pdb_ref = reference(pdb.as_ref());
    for e in &planned.events {
        let kind = if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let object = match &e.pod {
            None => pdb_ref.clone(),
            Some(pod_name) => match pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()))
            {
                Some(p) => reference(*p),
                None => continue,
            },
        };
        ctx.recorder
            .record(&object, kind, e.reason, &e.message)
            .await;
    }

    if planned.changed {
        let mut next = (*pdb).clone();
        next.status = Some(planned.status);
        next.metadata.managed_fields = None;
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::to_vec(&next).map_err(|e| {
            ControllerError::Other(format!("encoding poddisruptionbudget {ns}/{name}: {e}"))
        })?;
        match api
            .replace_status(&name, &PostParams::default(), body)
            .await
        {
            Ok(_) => {}
            // An eviction or a spec change got there first; the watch brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => {
                return Err(ControllerError::api(format!(
                    "updating status of poddisruptionbudget {ns}/{name}"
                ))(e))
            }
        }
    }
    match planned.recheck_at {
        Some(at) => {
            let wait = (at - now).to_std().unwrap_or_default() + Duration::from_millis(100);
            Ok(Action::requeue(wait))
        }
        None => Ok(Action::await_change()),
    }
}

/// The scale of the controller `r` names (in `ns`): for a ReplicaSet owned by a
/// Deployment the Deployment's, else the ReplicaSet's, StatefulSet's or
/// ReplicationController's own. Unknown kinds and missing objects give `NotFound`.
async fn resolve_controller(
    ctx: &Context,
    ns: &str,
    r: &OwnerReference,
) -> Result<PodController, ControllerError> {
    let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
    let scale = |uid: Option<&String>, replicas: Option<i32>| match uid {
        Some(uid) if *uid == r.uid => PodController::Scale {
            uid: uid.clone(),
            replicas: replicas.unwrap_or(1),
        },
        _ => PodController::NotFound,
    };
    match (group, r.kind.as_str()) {
        ("apps" | "extensions", "ReplicaSet") => {
            let Some(rs) = ctx.informers.replicasets.state().into_iter().find(|rs| {
                rs.metadata.namespace.as_deref() == Some(ns)
                    && rs.metadata.name.as_deref() == Some(r.name.as_str())
            }) else {
                return Ok(PodController::NotFound);
            };
            if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
                return Ok(PodController::NotFound);
            }
            let own = || PodController::Scale {
                uid: r.uid.clone(),
                replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            };
            match controller_of(&rs.metadata) {
                Some(d) if d.kind == "Deployment" => {
                    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
                    let found =
                        api.get_opt(&d.name)
                            .await
                            .map_err(ControllerError::api(format!(
                                "reading deployment {ns}/{}",
                                d.name
                            )))?;
                    Ok(match found {
                        Some(dep) if dep.metadata.uid.as_deref() == Some(d.uid.as_str()) => {
                            PodController::Scale {
                                uid: d.uid.clone(),
                                replicas: dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                            }
                        }
                        // The ReplicaSet's own scale, as upstream's scale fallback finds.
                        _ => own(),
                    })
                }
                _ => Ok(own()),
            }
        }
        ("apps", "StatefulSet") => {
            let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
            let found = api
                .get_opt(&r.name)
                .await
                .map_err(ControllerError::api(format!(
                    "reading statefulset {ns}/{}",
                    r.name
                )))?;
            Ok(found.map_or(PodController::NotFound, |s| {
                scale(
                    s.metadata.uid.as_ref(),
                    s.spec.as_ref().and_then(|s| s.replicas),
                )
            }))
        }
        ("", "ReplicationController") => {
            let api: Api<ReplicationController> = Api::namespaced(ctx.client.clone(), ns);
            let found = api
                .get_opt(&r.name)
                .await
                .map_err(ControllerError::api(format!(
                    "reading replicationcontroller {ns}/{}",
                    r.name
                )))?;
            Ok(found.map_or(PodController::NotFound, |c| {
                scale(
                    c.metadata.uid.as_ref(),
                    c.spec.as_ref().and_then(|s| s.replicas),
                )
            }))
        }
        _ => Ok(PodController::NotFound),
    }
}
