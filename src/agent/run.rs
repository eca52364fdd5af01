//! The agent's whole start: the node (registration, lease, status), then what pods
//! need (the container runtime, the image store with its auto-imported tarballs, the pod
//! network on the node's pod range), then the pod manager, the usage reports, image GC
//! and the eviction manager. The node turns Ready once
//! the pod network is up.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::pods::{manager, worker::NodeContext};
use super::{Agent, AgentConfig, AgentError};
use crate::apimachinery::quantity::parse_quantity;
use crate::client::events::Recorder;
use crate::net::{Ipv4Cidr, NetConfig, PodNetwork};
use crate::runtime::image::{ImageStore, RegistriesConfig};
use crate::runtime::{Runtime, RuntimeConfig};

/// What pods need beyond [`AgentConfig`].
#[derive(Debug, Clone)]
pub struct PodSettings {
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// k3s's `--private-registry` (registries.yaml); missing file: defaults.
    pub private_registry: PathBuf,
    /// Where CRI-format container logs go (`/var/log/pods`).
    pub pod_logs_dir: PathBuf,
    /// Where local-path volumes live on this node (`--default-local-storage-path`).
    pub local_storage_path: PathBuf,
    /// The binary to re-execute as `skiff shim` (this executable).
    pub shim_binary: PathBuf,
    /// How often usage goes to `metrics.k8s.io` (zero: never).
    pub metrics_interval: std::time::Duration,
    /// How often projected volumes of running pods are refreshed (zero: never).
    pub sync_frequency: std::time::Duration,
}

fn setup(what: &str) -> impl FnOnce(String) -> AgentError + '_ {
    move |message| AgentError::Setup {
        what: what.to_string(),
        message,
    }
}

/// Start the node and its pods; the tasks run in `tasks`. Returns what the pod workers
/// share (the API server's log streaming reads through it).
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    pods: PodSettings,
    tasks: &mut JoinSet<()>,
) -> Result<Arc<NodeContext>, AgentError> {
    let agent = Agent::start(client.clone(), config.clone(), tasks).await?;
    let agent_dir = config.data_dir.join("agent");

    let mut runtime_config = RuntimeConfig::new(agent_dir.join("run"))
        .map_err(|e| setup("the container runtime")(e.to_string()))?;
    runtime_config.shim_binary = pods.shim_binary.clone();
    runtime_config.in_memory = true;
    let runtime = Arc::new(
        Runtime::new(runtime_config).map_err(|e| setup("the container runtime")(e.to_string()))?,
    );

    let registries = RegistriesConfig::load(&pods.private_registry)
        .map_err(|e| setup("the private registry configuration")(e.to_string()))?;
    let images = ImageStore::open(agent_dir.join("content"), registries)
        .map_err(|e| setup("the image store")(e.to_string()))?;
    let import_dir = agent_dir.join("images");
    if import_dir.is_dir() {
        match images.import_dir(&import_dir).await {
            Ok(imported) => {
                for image in imported {
                    tracing::info!(image = %image.references.join(","), "imported an image tarball");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %import_dir.display(), error = %e, "importing image tarballs")
            }
        }
    }

    let cidr = |flag: &str, s: &str| {
        s.parse::<Ipv4Cidr>()
            .map_err(|e| setup("the pod network")(format!("{flag} {s:?}: {e}")))
    };
    let mut net_config = NetConfig::new(
        cidr("the node's pod range", &agent.pod_cidr)?,
        agent_dir.join("net"),
    );
    net_config.cluster_cidr = cidr("--cluster-cidr", &pods.cluster_cidr)?;
    net_config.service_cidr = cidr("--service-cidr", &pods.service_cidr)?;
    let network = Arc::new(
        PodNetwork::new(net_config)
            .await
            .map_err(|e| setup("the pod network")(e.to_string()))?,
    );

    let allocatable = agent
        .node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let quantity = |name: &str| {
        allocatable
            .get(name)
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    let client_for_storage = client.clone();
    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.to_string(),
        runtime,
        images,
        network,
        pods_dir: agent_dir.join("pods"),
        log_root: pods.pod_logs_dir.clone(),
        cluster_dns: pods.cluster_dns.clone(),
        cluster_domain: pods.cluster_domain.clone(),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        node_cpu_milli: quantity("cpu").map_or(0, |q| q.milli_value()),
        node_memory: quantity("memory").map_or(0, |q| q.value()),
        recorder: Recorder::new(client, "kubelet"),
        sync_frequency: pods.sync_frequency,
        eviction: agent.pressure.clone(),
    });
    tasks.spawn(manager::run(ctx.clone()));
    tasks.spawn(super::imagegc::run(ctx.clone()));
    tasks.spawn(super::eviction::run(
        ctx.clone(),
        config.eviction.clone(),
        config.data_dir.clone(),
    ));
    tasks.spawn(super::metrics::run(
        ctx.client.clone(),
        ctx.node_name.clone(),
        ctx.runtime.clone(),
        pods.metrics_interval,
    ));
    let own = config.node_name.clone();
    tasks.spawn(super::storage::reclaim(
        client_for_storage,
        move |node| (node == own).then(|| node.to_string()),
        Some(pods.local_storage_path.clone()),
    ));
    let _ = agent.not_ready.send(None);
    tracing::info!(node = %config.node_name, "the node is ready for pods");
    Ok(ctx)
}
