//! Namespace lifecycle: a deleted namespace is `Terminating`; this loop deletes everything
//! inside it (every namespaced resource the API's discovery lists), waits until it is gone
//! (pods on nodes leave only when their kubelet lets them), then removes the `kubernetes`
//! finalizer through `/finalize` and deletes the namespace for good, as
//! kube-controller-manager's namespace controller does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio::sync::Mutex;

use super::{retry_later, ControllerError};

/// How long a discovery result is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

struct Context {
    client: kube::Client,
    discovered: Mutex<Option<(Instant, Arc<Vec<ApiResource>>)>>,
}

impl Context {
    /// Namespaced resources that can be listed and deleted (cached briefly).
    async fn resources(&self) -> Result<Arc<Vec<ApiResource>>, ControllerError> {
        let mut cached = self.discovered.lock().await;
        if let Some((at, list)) = cached.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(list.clone());
            }
        }
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(ControllerError::api("discovering resources"))?;
        let list: Vec<ApiResource> = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .filter(|(_, caps): &(ApiResource, ApiCapabilities)| {
                caps.scope == Scope::Namespaced
                    && caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::DELETE)
            })
            .map(|(ar, _)| ar)
            .collect();
        let list = Arc::new(list);
        *cached = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

pub async fn run(client: kube::Client) -> Result<(), ControllerError> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        discovered: Mutex::new(None),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(reconcile, retry_later, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let mut remaining = 0usize;
    for ar in ctx.resources().await?.iter() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, ar);
        let items = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list.items,
            // A resource that went away since discovery has nothing left to delete.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
            Err(e) => {
                return Err(ControllerError::api(format!(
                    "listing {} in {name}",
                    ar.plural
                ))(e))
            }
        };
        for item in items {
            remaining += 1;
            if item.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api
                .delete(&item.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    return Err(ControllerError::api(format!(
                        "deleting {} {}/{}",
                        ar.plural,
                        name,
                        item.name_any()
                    ))(e))
                }
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace not empty yet");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = spec
            .finalizers
            .take()
            .map(|f| f.into_iter().filter(|f| f != "kubernetes").collect());
    }
    let body = serde_json::to_vec(&finalized).map_err(|e| ControllerError::Other(e.to_string()))?;
    api.replace_subresource("finalize", &name, &PostParams::default(), body)
        .await
        .map_err(ControllerError::api(format!("finalizing namespace {name}")))?;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return Err(ControllerError::api(format!("deleting namespace {name}"))(
                e,
            ))
        }
    }
    tracing::info!(namespace = %name, "namespace deleted");
    Ok(Action::await_change())
}
