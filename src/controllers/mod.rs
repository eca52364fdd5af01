//! The controller manager: reconcile loops that drive the cluster toward what its objects
//! ask for. Each loop learns the world through kube-rs watchers on the [`crate::client`]
//! and writes through the API, exactly as kube-controller-manager does, so the same loops
//! would work against any conformant API server.
//!
//! [`spawn`] starts every loop under a supervisor that logs failures and restarts the loop
//! with a backoff; a loop never takes the server down.

pub mod cron;
pub mod cronjob;
pub mod cronjob_plan;
pub mod daemonset;
pub mod daemonset_plan;
pub mod deployment;
pub mod deployment_plan;
pub mod disruption;
pub mod disruption_plan;
pub mod endpoints;
pub mod endpoints_plan;
pub mod endpointslice;
pub mod endpointslice_plan;
pub mod garbagecollector;
pub mod garbagecollector_plan;
pub mod informers;
pub mod job;
pub mod job_plan;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod persistentvolume_plan;
pub mod pod_util;
pub mod podautoscaler;
pub mod podautoscaler_plan;
pub mod replicaset;
pub mod replicaset_plan;
pub mod serviceaccount;
pub mod statefulset;
pub mod statefulset_plan;
pub mod workload;
pub mod workload_loop;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

/// Why a reconcile failed (the loop logs it and retries the object later).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0}")]
    Other(String),
}

impl ControllerError {
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ControllerError {
        let action = action.into();
        move |source| ControllerError::Api {
            action,
            source: Box::new(source),
        }
    }
}

/// What the loops need to know about the cluster that is not in any object.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster CA (PEM) published to every namespace as `kube-root-ca.crt`.
    pub root_ca_pem: String,
    /// How long a node may stay silent before it is NotReady (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: std::time::Duration,
    /// The cluster's pod network (`--cluster-cidr`), carved into one /24 per node.
    pub cluster_cidr: String,
    /// Where the built-in local-path provisioner puts volumes on the nodes
    /// (`--default-local-storage-path`).
    pub local_storage_path: std::path::PathBuf,
}

/// Start every controller on `client`. The tasks run until the set is dropped.
pub fn spawn(client: kube::Client, settings: Settings) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let c = client.clone();
    set.spawn(supervise("namespace", move || namespace::run(c.clone())));
    let c = client.clone();
    let ca = settings.root_ca_pem.clone();
    set.spawn(supervise("serviceaccount", move || {
        serviceaccount::run(c.clone(), ca.clone())
    }));
    let c = client.clone();
    set.spawn(supervise("garbagecollector", move || {
        garbagecollector::run(c.clone())
    }));
    let informers = informers::Informers::start(&client, &mut set);
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("endpoints", move || {
        endpoints::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("endpointslice", move || {
        endpointslice::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("replicaset", move || {
        replicaset::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("deployment", move || {
        deployment::run(c.clone(), i.clone())
    }));
    let (c, i, grace) = (
        client.clone(),
        informers.clone(),
        settings.node_monitor_grace_period,
    );
    set.spawn(supervise("nodelifecycle", move || {
        nodelifecycle::run(c.clone(), i.clone(), grace)
    }));
    let (c, i, cidr) = (
        client.clone(),
        informers.clone(),
        settings.cluster_cidr.clone(),
    );
    set.spawn(supervise("nodeipam", move || {
        nodeipam::run(c.clone(), i.clone(), cidr.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("daemonset", move || {
        daemonset::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("statefulset", move || {
        statefulset::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("job", move || job::run(c.clone(), i.clone())));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("cronjob", move || {
        cronjob::run(c.clone(), i.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("disruption", move || {
        disruption::run(c.clone(), i.clone())
    }));
    let (c, i, dir) = (
        client.clone(),
        informers.clone(),
        settings.local_storage_path.clone(),
    );
    set.spawn(supervise("persistentvolume", move || {
        persistentvolume::run(c.clone(), i.clone(), dir.clone())
    }));
    let (c, i) = (client.clone(), informers.clone());
    set.spawn(supervise("podautoscaler", move || {
        podautoscaler::run(c.clone(), i.clone())
    }));
    set
}

/// Run `start()` forever: when the loop ends or fails, log it and start it again after a
/// backoff (1 s doubling to 30 s, reset after a minute of healthy running).
pub async fn supervise<F, Fut>(name: &'static str, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), ControllerError>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        let began = tokio::time::Instant::now();
        match start().await {
            Ok(()) => tracing::warn!(controller = name, "controller loop ended; restarting"),
            Err(e) => {
                tracing::error!(controller = name, error = %e, "controller loop failed; restarting")
            }
        }
        if began.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The usual error policy of a kube-rs `Controller`: log and retry the object in a while.
pub fn retry_later<K>(
    _obj: std::sync::Arc<K>,
    err: &ControllerError,
    _ctx: std::sync::Arc<impl Send + Sync>,
) -> kube::runtime::controller::Action {
    tracing::debug!(error = %err, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(Duration::from_secs(2))
}
