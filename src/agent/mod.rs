//! The node agent (skiff's kubelet). It learns the world only through the client, as a
//! remote agent would, and owns the node's side of the cluster:
//! - [`host`]: capacity and identity of the machine;
//! - [`node`]: registration, the pod range the server assigns, node status and conditions;
//! - [`lease`]: the heartbeat Lease in `kube-node-lease`;
//! - [`metrics`]: the node's and its containers' CPU and memory usage for `kubectl top`;
//! - [`logs`]: reading CRI log files for `pods/log`;
//! - [`pods`]: the pod workers (plans, container specs, volumes, probes, status) that run
//!   pods with [`crate::runtime`], images and the pod network ([`crate::net`]);
//! - [`storage`]: claim volumes and the local-path reclaimer;
//! - [`imagegc`]: removing unused images when the disk fills up;
//! - [`eviction`]: node-pressure eviction (signals, thresholds, pressure conditions,
//!   ranking and evicting pods, admission under pressure);
//! - [`portforward`]: connections into a pod's network namespace for `pods/portforward`;
//! - [`run`]: wiring it all together for `skiff server`.
//!
//! Not built yet (issue 4): joining a server from another machine (`skiff agent`).

pub mod eviction;
pub mod host;
pub mod imagegc;
pub mod lease;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod run;
pub mod storage;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What went wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the host: {0}")]
    Host(String),
    #[error("setting up {what}: {message}")]
    Setup { what: String, message: String },
}

impl AgentError {
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> AgentError {
        let action = action.into();
        move |source| AgentError::Api {
            action,
            source: Box::new(source),
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
        let context = context.into();
        move |source| AgentError::Io { context, source }
    }
}

/// How the agent runs (from `skiff server`/`skiff agent` flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// `<data-dir>`: the agent keeps its state under `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// The node's InternalIP (`--node-ip`, or detected).
    pub node_ip: IpAddr,
    /// Extra node labels (`--node-label`).
    pub labels: BTreeMap<String, String>,
    /// A server node: carries k3s's control-plane role labels.
    pub control_plane: bool,
    /// kubelet's `--max-pods`.
    pub max_pods: u32,
    /// Node-pressure eviction: thresholds and timing.
    pub eviction: eviction::Config,
}

/// The agent, started: register the node, then keep its lease and status current.
pub struct Agent {
    pub node: Node,
    /// The node's pod range, once the server assigned it.
    pub pod_cidr: String,
    /// Why the node is not Ready (`None`: Ready).
    pub not_ready: watch::Sender<Option<String>>,
    /// The eviction manager's pressure conditions and evictions.
    pub pressure: eviction::Shared,
}

impl Agent {
    /// Register the node, start its heartbeat and status loops in `tasks`, and wait for
    /// the server to assign the node's pod range.
    pub async fn start(
        client: kube::Client,
        config: AgentConfig,
        tasks: &mut JoinSet<()>,
    ) -> Result<Agent, AgentError> {
        let agent_dir = config.data_dir.join("agent");
        std::fs::create_dir_all(&agent_dir)
            .map_err(AgentError::io(format!("creating {}", agent_dir.display())))?;
        let facts = host::HostFacts::read(&config.data_dir)?;
        let nodes: Api<Node> = Api::all(client.clone());
        let node = node::register(&nodes, &node::node_object(&config, &facts)).await?;
        let leases = Api::namespaced(client.clone(), lease::NAMESPACE);
        lease::renew(
            &leases,
            &nodes,
            &config.node_name,
            true,
            lease::DURATION_SECONDS,
        )
        .await?;
        tasks.spawn(lease::keep_renewing(
            client.clone(),
            config.node_name.clone(),
        ));
        let (not_ready, rx) = watch::channel(Some(
            "container runtime network not ready: the node has no pod range yet".to_string(),
        ));
        let pressure = eviction::Shared::default();
        tasks.spawn(node::keep_status(
            client.clone(),
            config.clone(),
            rx,
            pressure.conditions(),
        ));
        let pod_cidr = node::wait_for_pod_cidr(&nodes, &config.node_name).await?;
        tracing::info!(node = %config.node_name, %pod_cidr, "the node has its pod range");
        Ok(Agent {
            node,
            pod_cidr,
            not_ready,
            pressure,
        })
    }
}

#[cfg(test)]
mod tests;
