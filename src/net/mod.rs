//! The pod network of one node: the bridge `skiff0` holding the gateway (`.1` of the
//! node's pod CIDR), a network namespace per pod (the sandbox; no pause container)
//! joined to the bridge by a veth pair, IPAM over the pod CIDR that survives restarts,
//! hostPorts, and masquerade for pod traffic that leaves the cluster CIDR.
//!
//! This module owns, in the network namespace of the process that uses it (the host on
//! a real node; tests run it inside a namespace of their own):
//! - the bridge (created if missing, never deleted: pods of a restarted skiff keep it);
//! - `net.ipv4.ip_forward = 1`;
//! - the nftables table `ip skiff` ([`nft`]), replaced whole at every change;
//! - one veth per pod, host end `veth<10 hex of sha256(uid)>` on the bridge;
//!
//! and under `state_dir` (the agent uses `<data-dir>/agent/net`):
//! - `netns/<pod uid>`: the pods' namespaces, bind-mounted ([`netns`]); `netns/` itself is
//!   a shared bind mount of itself, as iproute2 makes `/run/netns`;
//! - `sandboxes.json`: uid → IP and hostPorts ([`ipam`]).
//!
//! Links, addresses and routes go through rtnetlink ([`link`]); the nftables table goes
//! through Debian's `nft -f -` in one transaction. `/etc/resolv.conf` and `/etc/hosts`
//! for pods are rendered by [`files`]. IPv4 only; cross-node routes are not built yet.

pub mod cidr;
pub mod files;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use cidr::Ipv4Cidr;
pub use files::{hosts_file, resolv_conf, DnsConfig, DnsPolicy, HostAlias, PodDns, PodHostname};
use ipam::{NetState, SandboxRecord, STATE_FILE};
use netns::TaskGuard;

/// The pod side of every veth.
pub const POD_IFACE: &str = "eth0";

/// Everything that can go wrong in the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        source: rtnetlink::Error,
    },
    #[error("applying the nftables table ip {}: {message}", nft::TABLE)]
    Nft { message: String },
    #[error("pod network config: {message}")]
    Config { message: String },
    #[error("invalid pod uid {uid:?}: only letters, digits and '-' are allowed")]
    InvalidUid { uid: String },
    #[error("pod CIDR {cidr} has no free address left")]
    Exhausted { cidr: Ipv4Cidr },
    #[error("hostPort {port} is already used by pod {owner}")]
    HostPortConflict { port: String, owner: String },
    #[error("state file {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}

impl NetError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let context = context.into();
        move |source| NetError::Io { context, source }
    }
}

/// How the node's pod network looks.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This node's pod CIDR (its `spec.podCIDR`), a /24 of the cluster CIDR by default.
    pub pod_cidr: Ipv4Cidr,
    /// All pods of the cluster (10.42.0.0/16): not masqueraded among themselves.
    pub cluster_cidr: Ipv4Cidr,
    /// Service cluster IPs (10.43.0.0/16): not masqueraded either.
    pub service_cidr: Ipv4Cidr,
    /// The bridge (`skiff0`).
    pub bridge: String,
    /// Where namespaces and the IPAM state live (`<data-dir>/agent/net`).
    pub state_dir: PathBuf,
    /// MTU of the bridge and the veths.
    pub mtu: u32,
    /// The `nft` binary (Debian's `nftables` package).
    pub nft: PathBuf,
}

impl NetConfig {
    /// skiff's defaults (k3s's CIDRs, bridge `skiff0`, MTU 1500) for a pod CIDR.
    pub fn new(pod_cidr: Ipv4Cidr, state_dir: impl Into<PathBuf>) -> NetConfig {
        NetConfig {
            pod_cidr,
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16).unwrap_or(pod_cidr),
            service_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 43, 0, 0), 16).unwrap_or(pod_cidr),
            bridge: "skiff0".into(),
            state_dir: state_dir.into(),
            mtu: 1500,
            nft: "nft".into(),
        }
    }

    fn validate(&self) -> Result<Ipv4Addr, NetError> {
        let bad = |message: String| Err(NetError::Config { message });
        if self.pod_cidr.prefix_len() > 29 {
            return bad(format!(
                "pod CIDR {} is too small (at most /29)",
                self.pod_cidr
            ));
        }
        if !self.cluster_cidr.contains_net(&self.pod_cidr) {
            return bad(format!(
                "pod CIDR {} is not inside the cluster CIDR {}",
                self.pod_cidr, self.cluster_cidr
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains('/') {
            return bad(format!("bad bridge name {:?}", self.bridge));
        }
        if !(68..=65535).contains(&self.mtu) {
            return bad(format!("MTU {} out of range", self.mtu));
        }
        match self.pod_cidr.gateway() {
            Some(gw) => Ok(gw),
            None => bad(format!("pod CIDR {} has no gateway address", self.pod_cidr)),
        }
    }
}

/// Which pod a sandbox belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// A port protocol of a hostPort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The protocol named by a container port's `protocol` (absent: TCP).
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }

    fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// A container port with a `hostPort`: traffic to the node's `host_port` (on `host_ip`,
/// or on any local address) goes to the pod's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPort {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl HostPort {
    /// Whether two mappings claim the same node port.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}/{}", self.host_port, self.protocol)
    }
}

/// A pod's network sandbox, as the agent needs it: the namespace to put containers in
/// and the address to report as `podIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxNet {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The bind-mounted network namespace (`NamespaceMode::Join` of every container).
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// The host end of the pod's veth.
    pub host_veth: String,
    pub host_ports: Vec<HostPort>,
}

/// The name of the host end of pod `uid`'s veth: deterministic, so that a restarted
/// skiff finds it, and at most 15 bytes (IFNAMSIZ - 1).
pub fn host_veth_name(uid: &str) -> String {
    let digest = sha2::Sha256::digest(uid.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("veth{hex}")
}

fn validate_uid(uid: &str) -> Result<(), NetError> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidUid {
            uid: uid.chars().take(140).collect(),
        })
    }
}

/// The node's pod network (see the module docs). `Send + Sync`: the agent shares one.
pub struct PodNetwork {
    config: NetConfig,
    gateway: Ipv4Addr,
    host: rtnetlink::Handle,
    _host_conn: TaskGuard,
    state: Mutex<NetState>,
    /// How many changes `state` has had (changed only while `state` is locked).
    generation: std::sync::atomic::AtomicU64,
    /// The generation `sandboxes.json` holds; locked while a save runs, so saves are
    /// one at a time and one save covers every change made before it began (a burst of
    /// pod setups shares a few fsyncs instead of making two each).
    saved: tokio::sync::Mutex<u64>,
    /// Setup and teardown of one pod run one at a time; different pods' in parallel,
    /// never waiting for each other (IPAM changes are atomic under `state`). One lock
    /// per pod uid that is being worked on.
    ops: Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Pod setups that run at once; the others queue in arrival order. Links and
    /// addresses change under the kernel's one rtnl lock, so a burst set up all at once
    /// finishes every pod late; queued, the first pods are ready early.
    setups: tokio::sync::Semaphore,
    /// The bridge check (and repair) runs one at a time; it holds the bridge's index
    /// and when it was last checked, so a burst of pod setups checks it once
    /// ([`BRIDGE_RECHECK`]) instead of once per pod. A failed setup forgets it.
    bridge_op: tokio::sync::Mutex<Option<(u32, std::time::Instant)>>,
    /// The nftables table is rendered from the current state and applied one at a time,
    /// so the last one applied is never older than the state.
    rules_op: tokio::sync::Mutex<()>,
}

/// How many pod network setups run at once: twice the CPUs, at least 4.
fn concurrent_setups() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cpus).max(4)
}

/// How long a checked bridge is taken as it was (a removed bridge is repaired by the
/// next setup after that, or by the retry of a setup that failed on it).
const BRIDGE_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

impl fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodNetwork")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PodNetwork {
    /// Brings the node's side up: the bridge with the gateway, ip_forward, the
    /// nftables table (from the recorded hostPorts). Idempotent and safe after a
    /// restart: recorded sandboxes whose namespace is gone (the node rebooted) are
    /// forgotten, the others are kept.
    pub async fn new(config: NetConfig) -> Result<PodNetwork, NetError> {
        let gateway = config.validate()?;
        std::fs::create_dir_all(&config.state_dir).map_err(NetError::io(format!(
            "creating {}",
            config.state_dir.display()
        )))?;
        netns::ensure_shared_dir(&config.state_dir.join("netns"))?;
        let state_path = config.state_dir.join(STATE_FILE);
        let mut state = NetState::load(&state_path)?;
        let before = state.sandboxes.len();
        state.sandboxes.retain(|uid, rec| {
            let alive = netns::is_netns(&netns::pod_netns_path(&config.state_dir, uid));
            if !alive {
                tracing::info!(uid, pod = %format!("{}/{}", rec.namespace, rec.name), ip = %rec.ip,
                    "pod network: namespace is gone, releasing its address");
                let _ = netns::remove(&netns::pod_netns_path(&config.state_dir, uid));
            }
            alive
        });
        if let Some(old) = state.pod_cidr.filter(|c| *c != config.pod_cidr) {
            tracing::warn!(%old, new = %config.pod_cidr,
                "pod network: the node's pod CIDR changed; existing pods keep their addresses");
        }
        if state.sandboxes.len() != before {
            state.save(&state_path)?;
        }

        let (conn, host, _) =
            rtnetlink::new_connection().map_err(NetError::io("opening a netlink socket"))?;
        let host_conn = TaskGuard(tokio::spawn(conn));
        link::ensure_bridge(
            &host,
            &config.bridge,
            config.mtu,
            gateway,
            config.pod_cidr.prefix_len(),
        )
        .await?;
        enable_ip_forward()?;
        let net = PodNetwork {
            config,
            gateway,
            host,
            _host_conn: host_conn,
            state: Mutex::new(state),
            generation: std::sync::atomic::AtomicU64::new(0),
            saved: tokio::sync::Mutex::new(0),
            ops: Mutex::new(std::collections::HashMap::new()),
            bridge_op: tokio::sync::Mutex::new(None),
            setups: tokio::sync::Semaphore::new(concurrent_setups()),
            rules_op: tokio::sync::Mutex::new(()),
        };
        net.apply_rules().await?;
        Ok(net)
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The pod's sandbox, set up if needed (idempotent per uid: a second call returns
    /// the same namespace and IP and repairs what is missing): namespace file, veth pair
    /// (`eth0` in the pod with its IP and a default route via the gateway, `lo` up),
    /// hostPort rules. On failure for a new pod, whatever was made is removed again.
    pub async fn setup(
        &self,
        pod: &PodKey,
        host_ports: &[HostPort],
    ) -> Result<PodSandboxNet, NetError> {
        validate_uid(&pod.uid)?;
        let started = std::time::Instant::now();
        let op = self.pod_lock(&pod.uid).await;
        let slot = self.setups.acquire().await.ok();
        let locked = started.elapsed();
        let known = self.lock_state().sandboxes.contains_key(&pod.uid);
        let mut laps = Laps::new();
        let result = self.setup_locked(pod, host_ports, &mut laps).await;
        if let Err(e) = &result {
            // The bridge may be what failed: check it again next time.
            *self.bridge_op.lock().await = None;
            if !known {
                tracing::warn!(uid = %pod.uid, error = %e, "pod network setup failed; cleaning up");
                if let Err(e2) = self.teardown_locked(&pod.uid).await {
                    tracing::warn!(uid = %pod.uid, error = %e2, "pod network cleanup failed");
                }
            }
        }
        drop(slot);
        drop(op);
        self.prune_locks();
        tracing::debug!(uid = %pod.uid, wait_ms = format!("{:.1}", locked.as_secs_f64() * 1000.0),
            total_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            laps_ms = %laps, "pod network setup");
        result
    }

    /// Pod `uid`'s own lock, taken.
    async fn pod_lock(&self, uid: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
            ops.entry(uid.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Forget the locks no task holds or waits for.
    fn prune_locks(&self) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
    }

    async fn setup_locked(
        &self,
        pod: &PodKey,
        host_ports: &[HostPort],
        laps: &mut Laps,
    ) -> Result<PodSandboxNet, NetError> {
        let cidr = self.config.pod_cidr;
        let (record, ports_changed, generation) = {
            let mut state = self.lock_state();
            let mut next = state.clone();
            let old_ports = next.sandboxes.get(&pod.uid).map(|r| r.host_ports.clone());
            let record = next.allocate(&cidr, pod, host_ports)?;
            let generation = (next != *state).then(|| {
                *state = next;
                self.generation.fetch_add(1, Ordering::SeqCst) + 1
            });
            let changed = old_ports.as_deref().unwrap_or(&[]) != host_ports;
            (record, changed, generation)
        };
        // The address is recorded on disk before anything uses it (the namespace is
        // made meanwhile: it does not need the address).
        let persist = async {
            match generation {
                Some(generation) => self.persist(generation).await,
                None => Ok(()),
            }
        };
        let ns_path = netns::pod_netns_path(&self.config.state_dir, &pod.uid);
        let namespace = async {
            if !netns::is_netns(&ns_path) {
                netns::create(&ns_path).await?;
            }
            netns::netlink_in(&ns_path).await
        };
        let (persisted, namespace) = tokio::join!(persist, namespace);
        persisted?;
        let (pod_nl, _pod_conn) = namespace?;
        laps.lap("ipam_netns");
        let bridge = {
            let mut checked = self.bridge_op.lock().await;
            match *checked {
                Some((idx, at)) if at.elapsed() < BRIDGE_RECHECK => idx,
                _ => {
                    let idx = link::ensure_bridge(
                        &self.host,
                        &self.config.bridge,
                        self.config.mtu,
                        self.gateway,
                        cidr.prefix_len(),
                    )
                    .await?;
                    *checked = Some((idx, std::time::Instant::now()));
                    idx
                }
            }
        };
        laps.lap("bridge");
        let host_veth = host_veth_name(&pod.uid);
        // The host's and the pod's sockets are independent: their requests overlap.
        let (host_idx, pod_idx) = tokio::join!(
            link::index(&self.host, &host_veth),
            link::index(&pod_nl, POD_IFACE)
        );
        let (host_idx, pod_idx) = match (host_idx?, pod_idx?) {
            (Some(h), Some(p)) => (h, p),
            (h, p) => {
                // Half a pair (or none): start the pair over.
                if let Some(h) = h {
                    link::delete(&self.host, h, &host_veth).await?;
                }
                if let Some(p) = p {
                    link::delete(&pod_nl, p, POD_IFACE).await?;
                }
                let ns_file = std::fs::File::open(&ns_path)
                    .map_err(NetError::io(format!("opening {}", ns_path.display())))?;
                link::create_veth(
                    &self.host,
                    &host_veth,
                    POD_IFACE,
                    ns_file.as_raw_fd(),
                    bridge,
                    self.config.mtu,
                )
                .await?;
                let missing = |what: &str| NetError::Config {
                    message: format!("{what} is missing right after creating the veth pair"),
                };
                let (h, p) = tokio::join!(
                    link::index(&self.host, &host_veth),
                    link::index(&pod_nl, POD_IFACE)
                );
                (
                    h?.ok_or_else(|| missing(&host_veth))?,
                    p?.ok_or_else(|| missing("the pod's eth0"))?,
                )
            }
        };
        laps.lap("veth");
        let (host_end, pod_side) = tokio::join!(
            link::attach_host_end(&self.host, host_idx, &host_veth, bridge),
            link::configure_pod_side(&pod_nl, pod_idx, record.ip, cidr.prefix_len(), self.gateway)
        );
        host_end?;
        pod_side?;
        laps.lap("attach_configure");
        if ports_changed {
            self.apply_rules().await?;
        }
        Ok(self.sandbox_of(&pod.uid, &record))
    }

    /// Removes everything of pod `uid`: its veth pair, the namespace mount and file, its
    /// IP and hostPort rules. Idempotent: an unknown uid is fine.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), NetError> {
        validate_uid(pod_uid)?;
        let op = self.pod_lock(pod_uid).await;
        let result = self.teardown_locked(pod_uid).await;
        drop(op);
        self.prune_locks();
        result
    }

    async fn teardown_locked(&self, uid: &str) -> Result<(), NetError> {
        let host_veth = host_veth_name(uid);
        if let Some(idx) = link::index(&self.host, &host_veth).await? {
            link::delete(&self.host, idx, &host_veth).await?;
        }
        netns::remove(&netns::pod_netns_path(&self.config.state_dir, uid))?;
        let released = {
            let mut state = self.lock_state();
            state.release(uid).map(|rec| {
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                (!rec.host_ports.is_empty(), generation)
            })
        };
        let had_ports = match released {
            Some((had_ports, generation)) => {
                self.persist(generation).await?;
                had_ports
            }
            None => false,
        };
        if had_ports {
            self.apply_rules().await?;
        }
        Ok(())
    }

    /// Every recorded sandbox (what survived a restart, too).
    pub fn sandboxes(&self) -> Vec<PodSandboxNet> {
        let state = self.lock_state();
        state
            .sandboxes
            .iter()
            .map(|(uid, rec)| self.sandbox_of(uid, rec))
            .collect()
    }

    /// The recorded sandbox of pod `uid`.
    pub fn sandbox(&self, uid: &str) -> Option<PodSandboxNet> {
        let state = self.lock_state();
        state
            .sandboxes
            .get(uid)
            .map(|rec| self.sandbox_of(uid, rec))
    }

    fn sandbox_of(&self, uid: &str, rec: &SandboxRecord) -> PodSandboxNet {
        PodSandboxNet {
            uid: uid.to_string(),
            namespace: rec.namespace.clone(),
            name: rec.name.clone(),
            netns: netns::pod_netns_path(&self.config.state_dir, uid),
            ip: rec.ip,
            gateway: self.gateway,
            prefix_len: self.config.pod_cidr.prefix_len(),
            host_veth: host_veth_name(uid),
            host_ports: rec.host_ports.clone(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.config.state_dir.join(STATE_FILE)
    }

    /// Make `sandboxes.json` hold at least generation `generation` of the state: a save
    /// that began after that change covers it, otherwise this one saves the current
    /// state (on a blocking thread: it fsyncs).
    async fn persist(&self, generation: u64) -> Result<(), NetError> {
        let mut saved = self.saved.lock().await;
        if *saved >= generation {
            return Ok(());
        }
        let (snapshot, current) = {
            let state = self.lock_state();
            (state.clone(), self.generation.load(Ordering::SeqCst))
        };
        let path = self.state_path();
        tokio::task::spawn_blocking(move || snapshot.save(&path))
            .await
            .map_err(|e| NetError::Io {
                context: "saving the pod network state".into(),
                source: std::io::Error::other(e),
            })??;
        *saved = current;
        Ok(())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, NetState> {
        // A panic while holding the lock leaves a consistent value (every change is
        // swapped in whole), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ruleset for the current state.
    pub fn ruleset(&self) -> String {
        let rules: Vec<nft::HostPortRule> = {
            let state = self.lock_state();
            state
                .sandboxes
                .values()
                .flat_map(|rec| {
                    rec.host_ports.iter().map(|hp| nft::HostPortRule {
                        protocol: hp.protocol,
                        host_ip: hp.host_ip,
                        host_port: hp.host_port,
                        pod_ip: rec.ip,
                        container_port: hp.container_port,
                        pod: format!("{}/{}", rec.namespace, rec.name),
                    })
                })
                .collect()
        };
        let no_masquerade = [self.config.cluster_cidr, self.config.service_cidr];
        nft::render(&self.config.pod_cidr, &no_masquerade, &rules)
    }

    async fn apply_rules(&self) -> Result<(), NetError> {
        let _rules = self.rules_op.lock().await;
        nft::apply(&self.config.nft, &self.ruleset()).await
    }
}

/// Milliseconds per step of a pod's network setup, for its debug event.
struct Laps {
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.laps
            .push((step, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }
}

impl fmt::Display for Laps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (step, ms)) in self.laps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{step}={ms:.1}")?;
        }
        Ok(())
    }
}

/// `net.ipv4.ip_forward = 1` in this process's network namespace.
fn enable_ip_forward() -> Result<(), NetError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current.trim() != "1" {
        std::fs::write(path, "1").map_err(NetError::io("enabling net.ipv4.ip_forward"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent shares one `PodNetwork` between tasks and spawns its futures.
    #[allow(dead_code)]
    fn shareable(net: &PodNetwork, pod: &PodKey) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        send_sync(net);
        send(net.setup(pod, &[]));
        send(net.teardown("uid"));
        send(PodNetwork::new(NetConfig::new(
            Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 24).unwrap(),
            "/x",
        )));
    }

    #[test]
    fn veth_names_fit_and_are_stable() {
        let a = host_veth_name("6f1c2c3e-8d7a-4f51-9a8e-3b7f2b8e1d20");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("veth"));
        assert_eq!(a, host_veth_name("6f1c2c3e-8d7a-4f51-9a8e-3b7f2b8e1d20"));
        assert_ne!(a, host_veth_name("another-uid"));
    }

    #[test]
    fn uids_are_checked_before_they_become_paths() {
        assert!(validate_uid("6f1c2c3e-8d7a-4f51-9a8e-3b7f2b8e1d20").is_ok());
        for bad in ["", "../etc", "a/b", "a b", "x\0"] {
            assert!(validate_uid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_is_validated() {
        let ok = NetConfig::new("10.42.3.0/24".parse().unwrap(), "/tmp/x");
        assert_eq!(ok.validate().unwrap(), Ipv4Addr::new(10, 42, 3, 1));
        let outside = NetConfig::new("10.99.0.0/24".parse().unwrap(), "/tmp/x");
        assert!(outside
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not inside"));
        let tiny = NetConfig::new("10.42.0.0/30".parse().unwrap(), "/tmp/x");
        assert!(tiny.validate().is_err());
        let mut long = ok.clone();
        long.bridge = "a-very-long-bridge-name".into();
        assert!(long.validate().is_err());
    }

    #[test]
    fn host_ports_print_and_conflict() {
        let a = HostPort {
            protocol: Protocol::Tcp,
            host_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            host_port: 80,
            container_port: 8080,
        };
        assert_eq!(a.to_string(), "192.0.2.1:80/TCP");
        assert!(a.conflicts(&HostPort { host_ip: None, ..a }));
        assert!(!a.conflicts(&HostPort {
            protocol: Protocol::Udp,
            ..a
        }));
        assert_eq!(Protocol::parse(None), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse(Some("SCTP")), Some(Protocol::Sctp));
        assert_eq!(Protocol::parse(Some("ICMP")), None);
    }
}
