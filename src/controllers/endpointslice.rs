//! The EndpointSlice loop: keeps the `discovery.k8s.io/v1` EndpointSlices of each Service
//! with a selector (labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, owned by
//! the Service) in step with the selected pods and their readiness, and removes them when
//! the Service goes. Decisions are in [`super::endpointslice_plan`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::endpoints::{api_message, on_service_deleted, selected_pods, PodIndex};
use super::endpoints_plan::is_managed;
use super::endpointslice_plan::{
    self as plan, CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};
use super::informers::Informers;
use super::{retry_later, ControllerError};
use crate::client::events::{reference, EventType, Recorder};

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
        recorder: Recorder::new(client.clone(), "endpoint-slice-controller"),
        client: client.clone(),
        informers,
    });
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let index = PodIndex::new(controller.store());
    let managed =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}"));
    let looping = controller
        .watches_stream(pod_changes, move |pod| index.services_for(&pod))
        .owns(Api::<EndpointSlice>::all(client.clone()), managed)
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {});
    futures::future::join(looping, on_service_deleted(client, delete_slices)).await;
    Ok(())
}

fn managed_selector(service: &str) -> String {
    format!("{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={CONTROLLER_NAME}")
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = svc.name_any();
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::requeue(RESYNC));
    }
    if !is_managed(&svc) {
        // A Service that lost its selector (or became ExternalName) keeps no managed slices.
        delete_slices(ctx.client.clone(), (*svc).clone()).await;
        return Ok(Action::requeue(RESYNC));
    }
    let pods = selected_pods(&ctx.informers.pods, &svc);
    let refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let existing = api
        .list(&ListParams::default().labels(&managed_selector(&name)))
        .await
        .map_err(ControllerError::api(format!(
            "listing endpointslices of {ns}/{name}"
        )))?;
    let planned = plan::plan_slices(&svc, &refs, &existing.items);
    let mut failure: Option<kube::Error> = None;
    let mut conflict = false;
    for slice in &planned.create {
        if let Err(e) = api.create(&PostParams::default(), slice).await {
            failure.get_or_insert(e);
        }
    }
    for slice in &planned.update {
        match api
            .replace(&slice.name_any(), &PostParams::default(), slice)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => conflict = true,
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    for slice in &planned.delete {
        match api.delete(slice, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        let message = format!(
            "Error updating Endpoint Slices for Service {ns}/{name}: {}",
            api_message(&e)
        );
        ctx.recorder
            .record(
                &reference(svc.as_ref()),
                EventType::Warning,
                "FailedToUpdateEndpointSlices",
                &message,
            )
            .await;
        return Err(ControllerError::api(format!(
            "writing endpointslices of {ns}/{name}"
        ))(e));
    }
    if conflict {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(RESYNC))
}

async fn delete_slices(client: kube::Client, svc: Service) {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client, &ns);
    let params = ListParams::default().labels(&managed_selector(&svc.name_any()));
    let Ok(list) = api.list(&params).await else {
        return;
    };
    for slice in list.items {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
            Err(e) => {
                tracing::warn!(slice = %slice.name_any(), error = %e, "deleting endpointslice")
            }
        }
    }
}
