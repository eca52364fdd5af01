//! `skiff server`: wires the store, PKI, API server and (later) the agent together, with
//! k3s's flag names and defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use crate::api::{self, ApiServer};
use crate::pki::{self, Pki};
use crate::store::{self, Store};

#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Folder to hold state.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTPS listen port.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// IP address that clients and agents should use (defaults to the node IP or 127.0.0.1).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Add additional hostnames or IPs as Subject Alternative Names in the serving certificate.
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Write the admin kubeconfig to this file.
    #[arg(long, short = 'o', env = "SKIFF_KUBECONFIG_OUTPUT")]
    pub write_kubeconfig: Option<PathBuf>,
    /// Mode of the written kubeconfig (octal, e.g. 0644).
    #[arg(long, default_value = "0600", env = "SKIFF_KUBECONFIG_MODE")]
    pub write_kubeconfig_mode: String,
    /// Do not run a local agent (kubelet and runtime).
    #[arg(long)]
    pub disable_agent: bool,
    /// Node name (default: the hostname, lowercased).
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,
    /// IPv4 address to advertise for the node (default: the address of the interface
    /// holding the default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Registering and starting the node with this label (key=value), repeatable.
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// Private registry configuration file (k3s's registries.yaml format).
    #[arg(long, default_value = "/etc/skiff/registries.yaml")]
    pub private_registry: PathBuf,
    /// Where container logs are written (kubelet's `podLogsDir`).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// How often the local node reports its CPU and memory usage to `metrics.k8s.io`
    /// (`15s`, `5s`, `500ms`; `0` turns reporting off).
    #[arg(long, default_value = "15s", value_parser = crate::client::metrics::parse_interval)]
    pub metrics_interval: std::time::Duration,
    /// How often running pods' configMap, secret, downwardAPI and projected volumes are
    /// brought up to date (kubelet's sync-frequency; `0` never refreshes them).
    #[arg(long, default_value = "1m", value_parser = crate::client::metrics::parse_interval)]
    pub sync_frequency: std::time::Duration,
    /// Hard eviction thresholds of the local node (kubelet's `--eviction-hard`, k3s's
    /// defaults; e.g. `memory.available<100Mi,nodefs.available<10%`; signals memory.available,
    /// nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree,
    /// pid.available; empty turns eviction off).
    #[arg(long, default_value = crate::agent::eviction::DEFAULT_HARD)]
    pub eviction_hard: String,
    /// How long a pressure condition stays on after its threshold was last met
    /// (kubelet's `--eviction-pressure-transition-period`).
    #[arg(long, default_value = "5m", value_parser = crate::client::metrics::parse_interval)]
    pub eviction_pressure_transition_period: std::time::Duration,
    /// How often the eviction manager observes the node's signals (kubelet's
    /// housekeeping interval).
    #[arg(long, default_value = "10s", value_parser = crate::client::metrics::parse_interval)]
    pub eviction_monitoring_interval: std::time::Duration,
    /// IPv4 network CIDR to use for pod IPs.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// IPv4 network CIDR to use for service IPs.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Port range to reserve for services with NodePort visibility.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// IPv4 cluster IP for the DNS service.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Static bearer tokens (kube-apiserver's CSV format: token,user,uid,"groups").
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Config file (YAML; keys are these flags' names).
    #[arg(long, short = 'c', default_value = super::config::DEFAULT_CONFIG, env = "SKIFF_CONFIG_FILE")]
    pub config: PathBuf,
    /// Seconds a node may go without renewing its lease before it is marked NotReady
    /// (kube-controller-manager's `--node-monitor-grace-period`).
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    /// Bound of the store's page cache, in MiB.
    #[arg(long, default_value_t = 16)]
    pub store_cache_mb: u64,
    /// Where the built-in local-path provisioner keeps volumes on the nodes (default:
    /// `<data-dir>/storage`; k3s's flag).
    #[arg(long)]
    pub default_local_storage_path: Option<PathBuf>,
    /// Log filter (tracing's EnvFilter syntax), e.g. "info" or "skiff=debug".
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    pub log: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the agent: {0}")]
    Agent(#[from] crate::agent::AgentError),
    #[error("--eviction-hard: {0}")]
    BadEvictionThreshold(#[from] crate::agent::eviction::ThresholdError),
    #[error("--node-label {0:?}: expected key=value")]
    BadNodeLabel(String),
    #[error("--write-kubeconfig-mode {0:?} is not an octal file mode")]
    BadMode(String),
    #[error("--cluster-cidr: {0}")]
    BadClusterCidr(crate::controllers::ControllerError),
    #[error("--service-cidr {0:?} is not an IPv4 CIDR")]
    BadServiceCidr(String),
    #[error(transparent)]
    ServiceRanges(#[from] api::services::ConfigError),
    #[error("creating {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Auth(#[from] api::auth::AuthError),
    #[error(transparent)]
    Serve(#[from] api::server::ServeError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("creating the {name} namespace: {message}")]
    Bootstrap { name: String, message: String },
}

/// The first usable address of a CIDR (the `kubernetes` Service IP).
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, ServerError> {
    let bad = || ServerError::BadServiceCidr(cidr.to_string());
    let (net, _bits) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = net.parse().map_err(|_| bad())?;
    Ok(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(ip) + 1)))
}

pub fn run(args: ServerArgs) -> Result<(), ServerError> {
    let started = Instant::now();
    init_logging(&args.log);
    crate::controllers::nodeipam::RangeAllocator::parse(&args.cluster_cidr)
        .map_err(ServerError::BadClusterCidr)?;
    let agent = if args.disable_agent {
        None
    } else {
        Some(agent_settings(&args)?)
    };
    let mode = u32::from_str_radix(args.write_kubeconfig_mode.trim_start_matches("0o"), 8)
        .map_err(|_| ServerError::BadMode(args.write_kubeconfig_mode.clone()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skiff")
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async move { serve(args, agent, mode, started).await })
}

/// Log to stderr with a tracing filter (`info`, `skiff=debug`, …).
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn serve(
    args: ServerArgs,
    agent: Option<(crate::agent::AgentConfig, crate::agent::run::PodSettings)>,
    mode: u32,
    started: Instant,
) -> Result<(), ServerError> {
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir).map_err(|source| ServerError::Io {
        path: server_dir.clone(),
        source,
    })?;

    // Certificates (reused on restart).
    let service_ip = first_service_ip(&args.service_cidr)?;
    let mut extra = args.tls_san.clone();
    if let Some(a) = args.advertise_address {
        extra.push(a.to_string());
    }
    if !args.bind_address.is_unspecified() {
        extra.push(args.bind_address.to_string());
    }
    let sans = pki::ServingSans::defaults(service_ip, &extra);
    let pki = Pki::load_or_create(&server_dir.join("tls"), &sans)?;
    let token = pki::load_or_create_server_token(&server_dir, pki.server_ca_pem())?;
    tracing::debug!(token_len = token.len(), "server token ready");

    // Store and API server.
    let sled = store::SledStore::open(
        &server_dir.join("db"),
        store::SledOptions {
            cache_capacity_bytes: args.store_cache_mb * 1024 * 1024,
            ..Default::default()
        },
    )?;
    store::start_compactor(&sled, Default::default());
    let store: Arc<dyn Store> = sled;
    let tokens = match &args.token_auth_file {
        Some(p) => api::auth::TokenAuthenticator::from_file(p)?,
        None => api::auth::TokenAuthenticator::default(),
    };
    let advertise = args
        .advertise_address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let api = ApiServer::new(
        store,
        tokens,
        api::ApiConfig {
            advertise_address: format!("{advertise}:{}", args.https_listen_port),
            service_cidr: api::services::Ipv4Cidr::parse(&args.service_cidr)?,
            service_node_ports: api::services::parse_node_port_range(
                &args.service_node_port_range,
            )?,
        },
    )
    .await?;
    api.enable_service_account_tokens(pki.service_account_key_pem())?;
    bootstrap(&api).await?;
    bootstrap_storage_class(&api).await?;
    super::kubernetes_service::reconcile(
        &api,
        &service_ip.to_string(),
        &advertise,
        args.https_listen_port,
    )
    .await
    .map_err(|e| ServerError::Bootstrap {
        name: "kubernetes Service".into(),
        message: e.to_string(),
    })?;
    let controller_client =
        crate::client::in_process(api.clone(), api::UserInfo::controller_manager());
    let scheduler_client = crate::client::in_process(api.clone(), api::UserInfo::scheduler());
    let _scheduler = tokio::spawn(crate::controllers::supervise("scheduler", move || {
        let client = scheduler_client.clone();
        async move {
            crate::scheduler::run::run(client)
                .await
                .map_err(|e| crate::controllers::ControllerError::Other(e.to_string()))
        }
    }));
    let _controllers = crate::controllers::spawn(
        controller_client,
        crate::controllers::Settings {
            root_ca_pem: pki.server_ca_pem().to_string(),
            node_monitor_grace_period: std::time::Duration::from_secs(
                args.node_monitor_grace_period,
            ),
            cluster_cidr: args.cluster_cidr.clone(),
            local_storage_path: local_storage_path(&args),
        },
    );

    // Admin kubeconfig.
    let kubeconfig_path = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(super::default_kubeconfig);
    let server_url = format!("https://127.0.0.1:{}", args.https_listen_port);
    let (cert, key) = (pki.admin_cert_pem(), pki.admin_key_pem());
    let kubeconfig = pki::kubeconfig(&server_url, pki.server_ca_pem(), cert, key, "default");
    pki::write_kubeconfig(&kubeconfig_path, &kubeconfig, mode)?;

    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = api::server::bind(addr).await?;
    let tls = pki.server_tls_config(true)?;
    tracing::info!(
        %addr,
        kubeconfig = %kubeconfig_path.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "skiff API server is ready"
    );
    notify_systemd_ready();
    let serving = tokio::spawn(api::server::serve(listener, tls, api.clone()));
    let (agent_failed, mut agent_failure) = tokio::sync::oneshot::channel();
    if let Some((config, pods)) = agent {
        tokio::spawn(run_agent(api, config, pods, agent_failed));
    }
    tokio::select! {
        _ = shutdown_signal() => {}
        Ok(e) = &mut agent_failure => {
            serving.abort();
            return Err(ServerError::Agent(e));
        }
    }
    tracing::info!("shutting down");
    serving.abort();
    Ok(())
}

/// Where local-path volumes live (`--default-local-storage-path`, else
/// `<data-dir>/storage`).
fn local_storage_path(args: &ServerArgs) -> PathBuf {
    args.default_local_storage_path
        .clone()
        .unwrap_or_else(|| args.data_dir.join("storage"))
}

/// The local agent's settings from the server's flags.
fn agent_settings(
    args: &ServerArgs,
) -> Result<(crate::agent::AgentConfig, crate::agent::run::PodSettings), ServerError> {
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => crate::agent::host::hostname()?,
    };
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.node_labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| ServerError::BadNodeLabel(l.clone()))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let shim_binary = std::env::current_exe().map_err(|source| ServerError::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    Ok((
        crate::agent::AgentConfig {
            node_name,
            data_dir: args.data_dir.clone(),
            node_ip: args
                .node_ip
                .unwrap_or_else(crate::agent::host::detect_node_ip),
            labels,
            control_plane: true,
            max_pods: 110,
            eviction: crate::agent::eviction::Config {
                hard: crate::agent::eviction::parse_thresholds(&args.eviction_hard)?,
                monitoring_interval: args.eviction_monitoring_interval,
                pressure_transition_period: args.eviction_pressure_transition_period,
            },
        },
        crate::agent::run::PodSettings {
            cluster_cidr: args.cluster_cidr.clone(),
            service_cidr: args.service_cidr.clone(),
            cluster_dns: vec![args.cluster_dns],
            cluster_domain: args.cluster_domain.clone(),
            private_registry: args.private_registry.clone(),
            pod_logs_dir: args.pod_logs_dir.clone(),
            local_storage_path: local_storage_path(args),
            shim_binary,
            metrics_interval: args.metrics_interval,
            sync_frequency: args.sync_frequency,
        },
    ))
}

/// Start the local agent; report a failure to start on `failed`. Its loops run until the
/// process ends.
async fn run_agent(
    api: Arc<ApiServer>,
    config: crate::agent::AgentConfig,
    pods: crate::agent::run::PodSettings,
    failed: tokio::sync::oneshot::Sender<crate::agent::AgentError>,
) {
    let client = crate::client::in_process(api.clone(), api::UserInfo::node(&config.node_name));
    let mut tasks = tokio::task::JoinSet::new();
    match crate::agent::run::run(client, config, pods, &mut tasks).await {
        Ok(node) => {
            api.set_port_forward(Arc::new(crate::agent::portforward::LocalPortForward(
                node.clone(),
            )));
            api.set_pod_logs(Arc::new(LocalPodLogs(node.clone())));
            api.set_pod_exec(Arc::new(LocalPodExec(node)));
            while tasks.join_next().await.is_some() {}
        }
        Err(e) => {
            let _ = failed.send(e);
        }
    }
}

/// `pods/log` from this server's own agent.
struct LocalPodLogs(Arc<crate::agent::pods::worker::NodeContext>);

impl api::podlogs::PodLogs for LocalPodLogs {
    fn open(
        &self,
        req: api::podlogs::LogRequest,
    ) -> futures::future::BoxFuture<
        'static,
        Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, String>,
    > {
        let node = self.0.clone();
        Box::pin(async move {
            if req.node != node.node_name {
                return Err(format!(
                    "pod {}/{} runs on node {:?}; this server serves the logs of node {:?} only",
                    req.namespace, req.pod, req.node, node.node_name
                ));
            }
            let live = crate::agent::pods::containerspec::container_log_path(
                &node.log_root,
                &req.namespace,
                &req.pod,
                &req.uid,
                &req.container,
                req.attempt,
            );
            let id = crate::agent::pods::plan::container_id(&req.uid, &req.container, req.attempt);
            let runtime = node.runtime.clone();
            let running: crate::agent::logs::StillRunning = Arc::new(move || {
                let (runtime, id) = (runtime.clone(), id.clone());
                Box::pin(async move {
                    matches!(runtime.status(&id).await, Ok(s) if s.status == crate::runtime::Status::Running)
                })
            });
            let opts = crate::agent::logs::LogOptions {
                follow: req.follow,
                tail_lines: req.tail_lines,
                since: req.since,
                timestamps: req.timestamps,
                limit_bytes: req.limit_bytes,
            };
            crate::agent::logs::stream(live, opts, running)
                .await
                .map_err(|e| format!("reading the log of container {:?}: {e}", req.container))
        })
    }
}

/// `pods/exec` on this server's own agent.
struct LocalPodExec(Arc<crate::agent::pods::worker::NodeContext>);

impl LocalPodExec {
    /// The id of the running container the request names, on this node.
    async fn container(&self, req: &api::exec::ExecRequest) -> Result<String, String> {
        let node = &self.0;
        if req.node != node.node_name {
            return Err(format!(
                "pod {}/{} runs on node {:?}; this server serves node {:?} only",
                req.namespace, req.pod, req.node, node.node_name
            ));
        }
        node.running_container(&req.uid, &req.container).await
    }
}

impl api::exec::PodExec for LocalPodExec {
    fn exec(
        &self,
        req: api::exec::ExecRequest,
    ) -> futures::future::BoxFuture<'static, Result<api::exec::ExecSession, String>> {
        let this = LocalPodExec(self.0.clone());
        Box::pin(async move {
            let id = this.container(&req).await?;
            let spec = crate::runtime::exec::ExecSpec {
                argv: req.command,
                tty: req.tty,
                stdin: req.stdin,
            };
            let mut process = this
                .0
                .runtime
                .exec(&id, spec)
                .await
                .map_err(|e| format!("error executing command in container: {e}"))?;
            let pty = process.pty.take();
            Ok(api::exec::ExecSession {
                stdin: process.stdin.take(),
                stdout: process.stdout.take(),
                stderr: process.stderr.take(),
                resize: pty.map(|pty| {
                    Box::new(move |w, h| {
                        if let Err(e) = pty.resize(w, h) {
                            tracing::debug!(error = %e, "resizing an exec terminal");
                        }
                    }) as Box<dyn Fn(u16, u16) + Send + Sync>
                }),
                exit: Box::pin(async move { process.wait().await.map_err(|e| e.to_string()) }),
            })
        })
    }

    fn attach(
        &self,
        req: api::exec::ExecRequest,
    ) -> futures::future::BoxFuture<'static, Result<api::exec::ExecSession, String>> {
        let this = LocalPodExec(self.0.clone());
        Box::pin(async move {
            let id = this.container(&req).await?;
            let spec = crate::runtime::attach::AttachSpec {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            };
            let mut attachment = this
                .0
                .runtime
                .attach(&id, spec)
                .await
                .map_err(|e| format!("error attaching to container: {e}"))?;
            let boxed = |s: Option<tokio::io::DuplexStream>| s.map(Box::pin);
            Ok(api::exec::ExecSession {
                stdin: boxed(attachment.stdin.take()).map(|s| s as _),
                stdout: boxed(attachment.stdout.take()).map(|s| s as _),
                stderr: boxed(attachment.stderr.take()).map(|s| s as _),
                resize: req
                    .tty
                    .then(|| Box::new(attachment.resizer()) as Box<dyn Fn(u16, u16) + Send + Sync>),
                exit: Box::pin(async move {
                    attachment.finish().await;
                    Ok(0)
                }),
            })
        })
    }
}

/// The namespaces every cluster has from the first start.
async fn bootstrap(api: &Arc<ApiServer>) -> Result<(), ServerError> {
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .map_err(|e| ServerError::Bootstrap {
                name: name.into(),
                message: e.to_string(),
            })?;
        let resp = api.handle(req, Some(api::UserInfo::system())).await;
        let code = resp.status().as_u16();
        if code != 201 && code != 409 {
            return Err(ServerError::Bootstrap {
                name: name.into(),
                message: format!("HTTP {code}"),
            });
        }
    }
    Ok(())
}

/// The `local-path` StorageClass (the default class, k3s's), created when missing; a
/// class the user changed or removed the default mark from is left as it is.
async fn bootstrap_storage_class(api: &Arc<ApiServer>) -> Result<(), ServerError> {
    use crate::apimachinery::storage as st;
    let body = serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": st::LOCAL_PATH_CLASS,
                     "annotations": {st::DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": st::LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": st::WAIT_FOR_FIRST_CONSUMER,
    });
    let fail = |message: String| ServerError::Bootstrap {
        name: "local-path StorageClass".into(),
        message,
    };
    let req = http::Request::builder()
        .method("POST")
        .uri("/apis/storage.k8s.io/v1/storageclasses")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| fail(e.to_string()))?;
    let resp = api.handle(req, Some(api::UserInfo::system())).await;
    match resp.status().as_u16() {
        201 | 409 => Ok(()),
        code => Err(fail(format!("HTTP {code}"))),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Tell systemd (Type=notify) that we are ready, if it is listening.
fn notify_systemd_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let path = path.to_string_lossy().to_string();
    let result = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip_is_dot_one() {
        assert_eq!(
            first_service_ip("10.43.0.0/16").unwrap().to_string(),
            "10.43.0.1"
        );
        assert!(first_service_ip("nonsense").is_err());
    }
}
