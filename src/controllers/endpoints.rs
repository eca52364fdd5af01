//! The Endpoints loop: keeps an `Endpoints` object named after each Service with a
//! selector, listing the selected pods' addresses (ready or not) and resolved ports, and
//! removes it when the Service goes. Decisions are in [`super::endpoints_plan`].
//!
//! Pods come from the shared pod cache ([`Informers`]), whose change stream triggers the
//! syncs only once the cache holds the change, so a sync always sees the pod change that
//! triggered it. Pod changes map to the Services that select the pod now or did before
//! (a relabelled pod leaves its old Services).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::endpoints_plan as plan;
use super::informers::Informers;
use super::{retry_later, ControllerError};
use crate::client::events::{reference, EventType, Recorder};

/// A full resync of every Service this often, in case a trigger was lost.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: kube::Client,
    recorder: Recorder,
    informers: Informers,
}

pub async fn run(client: kube::Client, informers: Informers) -> Result<(), ControllerError> {
    informers.ready().await;
    let pod_changes = informers.pods.changes();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "endpoint-controller"),
        client: client.clone(),
        informers,
    });
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let index = PodIndex::new(controller.store());
    let looping = controller
        .watches_stream(pod_changes, move |pod| index.services_for(&pod))
        .watches(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            |ep| Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default())),
        )
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {});
    futures::future::join(looping, on_service_deleted(client, delete_endpoints)).await;
    Ok(())
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    if !plan::is_managed(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::requeue(RESYNC));
    }
    let name = svc.name_any();
    let ns = svc.namespace().unwrap_or_default();
    let pods = selected_pods(&ctx.informers.pods, &svc);
    let refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let desired = plan::desired_endpoints(&svc, &refs);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(ControllerError::api(format!(
            "reading endpoints {ns}/{name}"
        )))?;
    let result = match current {
        None => api
            .create(&PostParams::default(), &desired)
            .await
            .map(|_| ()),
        Some(current) if plan::needs_update(&current, &desired) => {
            let mut next = current.clone();
            next.subsets = desired.subsets.clone();
            next.metadata.labels = desired.metadata.labels.clone();
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map(|_| ())
        }
        Some(_) => Ok(()),
    };
    match result {
        Ok(()) => Ok(Action::requeue(RESYNC)),
        // Someone else wrote it first; their event brings us back.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => {
            let message = format!("Failed to update endpoint {ns}/{name}: {}", api_message(&e));
            ctx.recorder
                .record(
                    &reference(svc.as_ref()),
                    EventType::Warning,
                    "FailedToUpdateEndpoint",
                    &message,
                )
                .await;
            Err(ControllerError::api(format!(
                "writing endpoints {ns}/{name}"
            ))(e))
        }
    }
}

async fn delete_endpoints(client: kube::Client, svc: Service) {
    if !plan::is_managed(&svc) {
        return;
    }
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client, &ns);
    match api.delete(&svc.name_any(), &DeleteParams::default()).await {
        Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
        Err(e) => tracing::warn!(service = %svc.name_any(), error = %e, "deleting endpoints"),
    }
}

/// The pods in the Service's namespace that its selector matches, from the pod cache.
pub(crate) fn selected_pods(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|pod| plan::selects(svc, pod))
        .collect()
}

/// Run `cleanup` for every Service deletion seen by a watch (kube-rs controllers do not
/// reconcile objects that are gone).
pub(crate) async fn on_service_deleted<F, Fut>(client: kube::Client, cleanup: F)
where
    F: Fn(kube::Client, Service) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut events = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Delete(svc)) => cleanup(client.clone(), svc).await,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "service watch error");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Maps pod events to the Services to sync: those selecting the pod now, and those that
/// selected it at its previous event.
pub(crate) struct PodIndex {
    services: Store<Service>,
    last: Mutex<HashMap<(String, String), HashSet<String>>>,
}

impl PodIndex {
    pub(crate) fn new(services: Store<Service>) -> PodIndex {
        PodIndex {
            services,
            last: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn services_for(&self, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let now: HashSet<String> = self
            .services
            .state()
            .iter()
            .filter(|s| plan::is_managed(s) && plan::selects(s, pod))
            .map(|s| s.name_any())
            .collect();
        let key = (ns.clone(), pod.name_any());
        let mut all = now.clone();
        if let Ok(mut last) = self.last.lock() {
            if let Some(before) = last.get(&key) {
                all.extend(before.iter().cloned());
            }
            if pod.metadata.deletion_timestamp.is_some() && now.is_empty() {
                last.remove(&key);
            } else {
                last.insert(key, now);
            }
        }
        all.into_iter()
            .map(|name| ObjectRef::new(&name).within(&ns))
            .collect()
    }
}

pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
