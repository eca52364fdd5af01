//! Every active namespace gets the `default` ServiceAccount and the `kube-root-ca.crt`
//! ConfigMap (the cluster CA, for in-cluster clients), recreated if someone deletes them,
//! as kube-controller-manager's serviceaccount and root-ca-cert-publisher do.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use super::{retry_later, ControllerError};

const ROOT_CA: &str = "kube-root-ca.crt";

struct Context {
    client: kube::Client,
    ca_pem: String,
}

pub async fn run(client: kube::Client, ca_pem: String) -> Result<(), ControllerError> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        ca_pem,
    });
    let by_namespace = |obj_ns: Option<String>| obj_ns.map(|ns| ObjectRef::<Namespace>::new(&ns));
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields("metadata.name=default"),
        move |sa| by_namespace(sa.namespace()),
    )
    .watches(
        Api::<ConfigMap>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}")),
        move |cm| by_namespace(cm.namespace()),
    )
    .run(reconcile, retry_later, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(name.clone()),
        ..Default::default()
    };
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let sa_missing = sas
        .get_opt("default")
        .await
        .map_err(ControllerError::api(format!(
            "reading serviceaccount {name}/default"
        )))?
        .is_none();
    if sa_missing {
        let sa = ServiceAccount {
            metadata: meta("default"),
            ..Default::default()
        };
        ignore_conflicts(sas.create(&PostParams::default(), &sa).await).map_err(
            ControllerError::api(format!("creating serviceaccount {name}/default")),
        )?;
    }

    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let want: BTreeMap<String, String> = [("ca.crt".to_string(), ctx.ca_pem.clone())].into();
    match cms
        .get_opt(ROOT_CA)
        .await
        .map_err(ControllerError::api(format!(
            "reading configmap {name}/{ROOT_CA}"
        )))? {
        Some(cm) if cm.data.as_ref() == Some(&want) => {}
        Some(mut cm) => {
            cm.data = Some(want);
            ignore_conflicts(cms.replace(ROOT_CA, &PostParams::default(), &cm).await).map_err(
                ControllerError::api(format!("updating configmap {name}/{ROOT_CA}")),
            )?;
        }
        None => {
            let mut m = meta(ROOT_CA);
            m.annotations = Some(
                [(
                    "kubernetes.io/description".to_string(),
                    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                )]
                .into(),
            );
            let cm = ConfigMap {
                metadata: m,
                data: Some(want),
                ..Default::default()
            };
            ignore_conflicts(cms.create(&PostParams::default(), &cm).await).map_err(
                ControllerError::api(format!("creating configmap {name}/{ROOT_CA}")),
            )?;
        }
    }
    Ok(Action::await_change())
}

/// A 409 means someone else got there first; the next event brings us back if needed.
fn ignore_conflicts<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
