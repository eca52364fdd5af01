//! `skiff simulate`: simulated nodes, in the spirit of kwok. Registers N nodes with the
//! given capacity and labels, renews their Leases, and plays kubelet for the pods bound to
//! them without running anything: pods become Running and Ready with an IP from the node's
//! pod CIDR, finish (Job pods) with the exit code their annotation or command asks for,
//! and leave when deleted; claims of their pods are provisioned as on a real node (a
//! local-path volume pinned to the simulated node, no directory made), and released
//! volumes of its nodes are deleted. It talks to the API only through the client, so it works
//! against any skiff (or Kubernetes) server. Users test controllers and scale with it.
//!
//! Pod behaviour is steered by annotations:
//! - `simulate.skiff.io/ready: "false"` keeps the pod not Ready (flip it to change readiness);
//! - `simulate.skiff.io/run-seconds: "N"` makes a pod whose restartPolicy is not `Always`
//!   finish N seconds after it started (default 1);
//! - `simulate.skiff.io/exit-code: "N"` decides how it finishes; without it a command
//!   ending in `exit N` (e.g. `sh -c "exit 1"`) decides, otherwise 0;
//! - `simulate.skiff.io/cpu-usage: "300m"` and `simulate.skiff.io/memory-usage: "64Mi"`
//!   set what the running pod uses (split evenly among its containers; default 1m and 4Mi
//!   per container). Every `--metrics-interval` each node reports its pods' usage and its
//!   own (the sum plus a small base) to the API server's `metrics.k8s.io`, which
//!   `kubectl top` and the HorizontalPodAutoscaler read. Change usage with
//!   `kubectl annotate pod NAME simulate.skiff.io/cpu-usage=300m --overwrite`.

mod nodes;
mod pods;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

/// Annotation keys that steer simulated pods.
pub const READY_ANNOTATION: &str = "simulate.skiff.io/ready";
pub const RUN_SECONDS_ANNOTATION: &str = "simulate.skiff.io/run-seconds";
pub const EXIT_CODE_ANNOTATION: &str = "simulate.skiff.io/exit-code";
pub const CPU_USAGE_ANNOTATION: &str = "simulate.skiff.io/cpu-usage";
pub const MEMORY_USAGE_ANNOTATION: &str = "simulate.skiff.io/memory-usage";

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Node names are this prefix followed by a number (sim-0, sim-1, ...).
    #[arg(long, default_value = "sim-")]
    pub name_prefix: String,
    /// Number of the first node (for several simulators against one server).
    #[arg(long, default_value_t = 0)]
    pub first_index: u32,
    /// Allocatable CPU of each node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Allocatable memory of each node.
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// Pods each node accepts.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Extra node labels (k=v), repeatable.
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// Taints for every node (key=value:Effect or key:Effect), repeatable.
    #[arg(long = "node-taint")]
    pub node_taints: Vec<String>,
    /// Node lease duration in seconds (the kubelet's `nodeLeaseDurationSeconds`); leases
    /// are renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub lease_duration_seconds: u32,
    /// How often each node reports its pods' CPU and memory usage to `metrics.k8s.io`
    /// (`15s`, `1s`, `500ms`; `0` turns reporting off); usage comes from the
    /// `simulate.skiff.io/cpu-usage` and `simulate.skiff.io/memory-usage` pod annotations.
    #[arg(long, default_value = "15s", value_parser = usage::parse_interval)]
    pub metrics_interval: std::time::Duration,
    /// Pod CIDR from which each node gets a /24 (node i gets the i-th).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Kubeconfig to reach the API server.
    #[arg(long, env = "KUBECONFIG", conflicts_with = "server")]
    pub kubeconfig: Option<PathBuf>,
    /// API server URL (with --token).
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// Bearer token (with --server).
    #[arg(long, requires = "server")]
    pub token: Option<String>,
    /// Log filter (tracing syntax).
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    pub log: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or use --server and --token")]
    NoServer,
}

impl SimulateError {
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> SimulateError {
        let action = action.into();
        move |source| SimulateError::Api {
            action,
            source: Box::new(source),
        }
    }
}

pub fn run(args: SimulateArgs) -> Result<(), SimulateError> {
    crate::cli::init_logging(&args.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skiff-simulate")
        .build()
        .map_err(SimulateError::Runtime)?;
    runtime.block_on(simulate(args))
}

async fn simulate(args: SimulateArgs) -> Result<(), SimulateError> {
    let client = match (&args.server, &args.token, &args.kubeconfig) {
        (Some(server), Some(token), _) => crate::client::from_token(server, token, None)?,
        (_, _, Some(path)) => crate::client::from_kubeconfig(path).await?,
        _ => {
            let default = crate::cli::default_kubeconfig();
            if !default.exists() {
                return Err(SimulateError::NoServer);
            }
            crate::client::from_kubeconfig(&default).await?
        }
    };
    let fleet = Arc::new(nodes::Fleet::new(&args)?);
    fleet.register(&client).await?;
    tracing::info!(nodes = fleet.len(), first = %fleet.names().next().unwrap_or_default(), "simulated nodes registered");
    let leases = tokio::spawn(nodes::renew_leases(client.clone(), fleet.clone()));
    let usage = tokio::spawn(usage::run(
        client.clone(),
        fleet.clone(),
        args.metrics_interval,
    ));
    // Released local-path volumes of these nodes: no directory was ever made for them,
    // so only the objects go.
    let reclaimed = fleet.clone();
    let volumes = tokio::spawn(crate::agent::storage::reclaim(
        client.clone(),
        move |node| reclaimed.get(node).map(|_| node.to_string()),
        None,
    ));
    let kubelet = tokio::spawn(pods::run(client, fleet));
    tokio::select! {
        _ = crate::cli::shutdown_signal() => tracing::info!("stopping; the nodes stay registered and go NotReady"),
        r = kubelet => if let Ok(Err(e)) = r { return Err(e) },
    }
    leases.abort();
    usage.abort();
    volumes.abort();
    Ok(())
}
