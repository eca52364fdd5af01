//! One task per pod of this node, doing what kubelet's pod worker does: set up the
//! sandbox (network namespace from [`crate::net`], shared IPC and UTS namespaces, the
//! pod's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`), its volumes, pull images,
//! start containers in the order [`super::plan`] decides, report status, and on deletion
//! stop containers within the grace period (SIGTERM, then SIGKILL), remove everything
//! the pod made and delete the pod object. A pod the eviction manager evicts (or that
//! kubelet's admission refuses under node pressure) ends `Failed`/`Evicted`: its
//! containers are killed at once and its resources removed, its object stays.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodCondition, PodStatus, Secret, Service, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};

use super::containerspec::{self, ConfigError, ImageDefaults, Inputs, Sandbox};
use super::plan::{self, Action, Attempt, Observed, Waiting};
use super::probe::{self, Hook, PodProbes};
use super::status::{self, Known};
use super::volumes;
use crate::agent::eviction::{self, REASON};
use crate::client::events::{reference, EventType, Recorder};
use crate::net::{self, HostPort, PodKey, PodNetwork, Protocol};
use crate::runtime::image::{
    credentials_from_dockerconfigjson, Image, ImageStore, PullPolicy, RegistryCredential,
};
use crate::runtime::Runtime;

/// How often a worker syncs when nothing wakes it (kubelet's resync).
const RESYNC: Duration = Duration::from_secs(10);
/// The grace period when the pod says none (kubelet's default).
const DEFAULT_GRACE: i64 = 30;

/// What every pod worker of the node shares.
pub struct NodeContext {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: String,
    pub runtime: Arc<Runtime>,
    pub images: ImageStore,
    pub network: Arc<PodNetwork>,
    /// `<data-dir>/agent/pods`: per-pod dirs (namespaces, etc files, volumes).
    pub pods_dir: PathBuf,
    /// `/var/log/pods` (CRI log layout).
    pub log_root: PathBuf,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub host_resolv_conf: String,
    pub node_cpu_milli: i64,
    pub node_memory: i64,
    pub recorder: Recorder,
    /// How often the projected volumes of a running pod are refreshed (zero: never).
    pub sync_frequency: Duration,
    /// Node pressure: the conditions that are on and the pods to evict.
    pub eviction: crate::agent::eviction::Shared,
}

impl NodeContext {
    /// The id of the running container `name` of pod `uid` (its latest attempt), for
    /// exec and port-forward; kubelet's message when there is none.
    pub async fn running_container(&self, uid: &str, name: &str) -> Result<String, String> {
        let ids: Vec<String> = self
            .runtime
            .ids()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|id| {
                plan::parse_container_id(id).is_some_and(|(u, n, _)| u == uid && n == name)
            })
            .collect();
        let states = self.runtime.states(ids).await.map_err(|e| e.to_string())?;
        states
            .into_iter()
            .filter(|s| s.status == crate::runtime::Status::Running)
            .max_by_key(|s| plan::parse_container_id(&s.id).map(|(_, _, a)| a))
            .map(|s| s.id)
            .ok_or_else(|| format!("container not found ({name:?})"))
    }
}

/// Messages to a worker.
#[derive(Debug)]
pub enum Wake {
    /// A container of the pod exited.
    Exited,
    /// A probe's result changed.
    Probe,
}

/// The worker's memory of its pod between syncs.
#[derive(Default)]
struct PodState {
    observed: Observed,
    sandbox: Option<(Sandbox, String)>,
    images: BTreeMap<String, Image>,
    /// Waiting reasons of the worker's own (image pulls, config and create errors), by
    /// container; cleared when the container starts.
    held: BTreeMap<String, Waiting>,
    /// Image pull failures by container: (failures, retry not before).
    pull_backoff: BTreeMap<String, (u32, tokio::time::Instant)>,
    volumes_ready: bool,
    volume_paths: BTreeMap<String, PathBuf>,
    /// When the projected volumes were last brought up to date.
    volumes_synced: Option<tokio::time::Instant>,
    /// The files last written into each projected volume, by volume.
    projected: BTreeMap<String, Vec<volumes::File>>,
    /// The service-account token of each projected volume that has one.
    tokens: BTreeMap<String, Token>,
    last_status: Option<serde_json::Value>,
    watched: std::collections::HashSet<String>,
    /// The probes of the running containers.
    probes: PodProbes,
    /// The pod passed admission (or was running already).
    admitted: bool,
    /// The pod was evicted or refused: nothing runs any more until it is deleted.
    ended: bool,
    /// `Started` events of this sync, written while its status is posted (they are not
    /// on the way to Running).
    started_events: Vec<String>,
    /// Root filesystems mounted ahead of their container's start (while the sandbox was
    /// being set up) that no container holds yet; removed with the pod.
    prefetched: Vec<String>,
}

/// A projected service-account token and when it needs replacing.
struct Token {
    token: String,
    /// 80 % into its lifetime, as kubelet rotates them.
    renew_at: tokio::time::Instant,
}

impl PodState {
    /// The pod's IP once its sandbox exists.
    fn pod_ip(&self) -> Option<&str> {
        self.sandbox.as_ref().map(|s| s.1.as_str())
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn pod_dir(ctx: &NodeContext, uid: &str) -> PathBuf {
    ctx.pods_dir.join(uid)
}

/// The worker of one pod: runs until the pod is gone and cleaned up.
pub async fn run(
    ctx: Arc<NodeContext>,
    uid: String,
    mut pods: watch::Receiver<Option<Pod>>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    mut wake: mpsc::UnboundedReceiver<Wake>,
) {
    let mut state = PodState::default();
    let mut evictions = ctx.eviction.evictions();
    // Containers found from an earlier run of the agent.
    refresh_observed(&ctx, &uid, &mut state).await;
    loop {
        let current = pods.borrow_and_update().clone();
        let requeue = match current {
            None => {
                terminate(&ctx, &uid, None, &mut state, 2).await;
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or(pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(DEFAULT_GRACE);
                terminate(&ctx, &uid, Some(&pod), &mut state, grace).await;
                return;
            }
            Some(_) if state.ended => None,
            Some(pod) => match ended_why(&ctx, &pod, &mut state) {
                Some(End::Evicted { message, post }) => {
                    evict(&ctx, &pod, &mut state, &message, post).await;
                    None
                }
                Some(End::Rejected(message)) => {
                    reject(&ctx, &pod, &mut state, &message).await;
                    None
                }
                None => sync(&ctx, &pod, &mut state, &wake_tx).await,
            },
        };
        let sleep = requeue.unwrap_or(RESYNC).min(RESYNC);
        tokio::select! {
            changed = pods.changed() => if changed.is_err() {
                terminate(&ctx, &uid, None, &mut state, 2).await;
                return;
            },
            _ = wake.recv() => {}
            _ = evictions.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Why a live pod must not run (any more).
enum End {
    /// The eviction manager evicts it (`post`: report it), or its status says it was
    /// evicted already (after a restart of the agent).
    Evicted { message: String, post: bool },
    /// Admission refuses it under node pressure.
    Rejected(String),
}

fn ended_why(ctx: &NodeContext, pod: &Pod, state: &mut PodState) -> Option<End> {
    let uid = uid_of(pod);
    if let Some(message) = ctx.eviction.eviction_of(&uid) {
        return Some(End::Evicted {
            message,
            post: true,
        });
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if phase == Some("Failed") && status.and_then(|s| s.reason.as_deref()) == Some(REASON) {
        return Some(End::Evicted {
            message: String::new(),
            post: false,
        });
    }
    if !state.admitted {
        let started = !state.observed.is_empty()
            || !matches!(phase, None | Some("Pending"))
            || status
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.container_id.is_some()));
        if !started {
            if let Err(message) = eviction::admit(pod, &ctx.eviction.current_conditions()) {
                return Some(End::Rejected(message));
            }
        }
        state.admitted = true;
    }
    None
}

/// Evict the pod: kill its containers at once, report it `Failed`/`Evicted` with the
/// DisruptionTarget condition (as kubelet 1.32 does), and remove what it made.
async fn evict(ctx: &NodeContext, pod: &Pod, state: &mut PodState, message: &str, post: bool) {
    let uid = uid_of(pod);
    refresh_observed(ctx, &uid, state).await;
    state.probes.clear();
    let pod_ip = state.pod_ip().map(str::to_string);
    let running: Vec<String> = state
        .observed
        .values()
        .flatten()
        .filter(|a| a.running())
        .map(|a| a.state.id.clone())
        .collect();
    let stops = running
        .iter()
        .map(|id| stop_container(ctx, Some(pod), id, 0, None, pod_ip.as_deref()));
    futures::future::join_all(stops).await;
    refresh_observed(ctx, &uid, state).await;
    if post {
        let mut status = status_now(ctx, pod, state, false, true);
        status.phase = Some("Failed".into());
        status.reason = Some(REASON.into());
        status.message = Some(message.to_string());
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(Utc::now())),
            last_probe_time: None,
        });
        post_status(ctx, pod, state, &status).await;
    }
    cleanup(ctx, &uid, state).await;
    state.ended = true;
    tracing::info!(pod = %pod_name(pod), "the pod is evicted");
}

/// Refuse the pod as kubelet's admission does: `Failed`, reason `Evicted`, and a
/// Warning event; nothing of it is started.
async fn reject(ctx: &NodeContext, pod: &Pod, state: &mut PodState, message: &str) {
    ctx.recorder
        .record(&reference(pod), EventType::Warning, REASON, message)
        .await;
    let status = PodStatus {
        phase: Some("Failed".into()),
        reason: Some(REASON.into()),
        message: Some(format!("Pod was rejected: {message}")),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..Default::default()
    };
    post_status(ctx, pod, state, &status).await;
    state.ended = true;
    tracing::info!(pod = %pod_name(pod), %message, "the pod was rejected under node pressure");
}

/// Reload what the runtime shows of this pod's containers (only theirs are asked).
async fn refresh_observed(ctx: &NodeContext, uid: &str, state: &mut PodState) {
    let prefix = format!("{uid}_");
    let ids = ctx.runtime.ids().map(|ids| {
        ids.into_iter()
            .filter(|id| id.starts_with(&prefix))
            .collect()
    });
    let listed = match ids {
        Ok(ids) => ctx.runtime.states(ids).await,
        Err(e) => Err(e),
    };
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(pod_uid = %uid, error = %e, "listing containers");
            return;
        }
    };
    let mut observed = Observed::new();
    for c in listed {
        let Some((owner, name, attempt)) = plan::parse_container_id(&c.id) else {
            continue;
        };
        if owner != uid {
            continue;
        }
        let name = name.to_string();
        observed
            .entry(name)
            .or_default()
            .push(Attempt { attempt, state: c });
    }
    for attempts in observed.values_mut() {
        attempts.sort_by_key(|a| a.attempt);
    }
    state.observed = observed;
}

/// One sync of a live pod; returns when to sync again at the latest.
async fn sync(
    ctx: &Arc<NodeContext>,
    pod: &Pod,
    state: &mut PodState,
    wake_tx: &mpsc::UnboundedSender<Wake>,
) -> Option<Duration> {
    let uid = uid_of(pod);
    let mut timing = SyncTiming::new();
    refresh_observed(ctx, &uid, state).await;
    if kill_unhealthy(ctx, pod, state).await {
        refresh_observed(ctx, &uid, state).await;
    }
    let phase = plan::phase(pod, &state.observed);
    let terminal = matches!(phase, "Succeeded" | "Failed")
        && state.observed.values().flatten().all(|a| !a.running());
    let mut requeue = None;
    if !terminal {
        // The first sync mounts the root filesystems of the containers it will start
        // (images already present) while the sandbox is set up: neither needs the other.
        let prefetch = match state.sandbox {
            None => rootfs_to_prefetch(ctx, pod, state),
            Some(_) => Vec::new(),
        };
        state
            .prefetched
            .extend(prefetch.iter().map(|(id, _)| id.clone()));
        let mount_ahead = futures::future::join_all(
            prefetch
                .iter()
                .map(|(id, image)| ctx.images.prepare_rootfs(id, image)),
        );
        // A failed mount is left to the start, which reports it.
        let (sandbox, _) = tokio::join!(ensure_sandbox(ctx, pod, state), mount_ahead);
        timing.lap("sandbox");
        match sandbox {
            Ok(()) => {}
            Err(message) => {
                tracing::warn!(pod = %pod_name(pod), %message, "pod sandbox");
                ctx.recorder
                    .record(
                        &reference(pod),
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        &message,
                    )
                    .await;
                report(ctx, pod, state, false).await;
                return Some(Duration::from_secs(5));
            }
        }
        // The inputs read to make the volumes serve this sync's starts too (read in
        // the same sync, as fresh as a second read).
        let mut fresh_inputs = None;
        if state.volumes_ready {
            let due = state
                .volumes_synced
                .is_some_and(|t| t.elapsed() >= ctx.sync_frequency);
            if due && !ctx.sync_frequency.is_zero() {
                refresh_volumes(ctx, pod, state).await;
            }
        } else {
            match prepare_volumes(ctx, pod, state).await {
                Ok(inputs) => {
                    state.volumes_ready = true;
                    state.volumes_synced = Some(tokio::time::Instant::now());
                    fresh_inputs = Some(inputs);
                }
                Err(message) => {
                    ctx.recorder
                        .record(&reference(pod), EventType::Warning, "FailedMount", &message)
                        .await;
                    report(ctx, pod, state, false).await;
                    return Some(Duration::from_secs(5));
                }
            }
        }
        // The plan's own waiting reasons (back-off, init) are merged in when reporting.
        let decided = plan::plan(pod, &state.observed, Utc::now());
        requeue = decided.requeue_after;
        // ConfigMaps, Secrets and service links are read once per sync that starts
        // something (fresh for every start, as kubelet reads them).
        let inputs = match (decided.actions.is_empty(), fresh_inputs) {
            (true, _) => None,
            (false, fresh) => {
                let read = match fresh {
                    Some(inputs) => Ok(inputs),
                    None => {
                        let pod_ip = state.pod_ip().unwrap_or_default().to_string();
                        inputs(ctx, pod, &pod_ip).await
                    }
                };
                Some(read.map(|mut i| {
                    i.volumes = state.volume_paths.clone();
                    i.read_only_volumes = read_only_claims(pod);
                    i
                }))
            }
        };
        timing.lap("volumes_inputs");
        for action in decided.actions {
            let Action::Start {
                name,
                attempt,
                replaces,
                ..
            } = action;
            if let Some(old) = replaces {
                let message = format!("Container {name} definition changed, will be restarted");
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(DEFAULT_GRACE);
                let pod_ip = state.pod_ip().map(str::to_string);
                stop_container(
                    ctx,
                    Some(pod),
                    &old,
                    grace,
                    Some(message),
                    pod_ip.as_deref(),
                )
                .await;
            }
            let started = match &inputs {
                Some(Ok(inputs)) => start_container(ctx, pod, state, &name, attempt, inputs).await,
                Some(Err(message)) => {
                    state.held.insert(
                        name.clone(),
                        Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: message.clone(),
                        },
                    );
                    Err(Duration::from_secs(5))
                }
                None => Ok(()),
            };
            match started {
                Ok(()) => {
                    state.held.remove(&name);
                }
                Err(retry) => {
                    requeue = Some(requeue.map_or(retry, |r: Duration| r.min(retry)));
                }
            }
        }
        timing.lap("start");
        refresh_observed(ctx, &uid, state).await;
        let observed = &state.observed;
        state
            .prefetched
            .retain(|id| !observed.values().flatten().any(|a| a.state.id == *id));
        for id in plan::removable(&state.observed) {
            if let Err(e) = ctx.runtime.delete(&id).await {
                tracing::debug!(container = %id, error = %e, "removing an old container");
            }
            let _ = ctx.images.release_rootfs(&id).await;
        }
        watch_exits(ctx, state, wake_tx);
    }
    let pod_ip = state.pod_ip().map(str::to_string);
    state
        .probes
        .sync(ctx, pod, &state.observed, pod_ip.as_deref(), wake_tx);
    timing.lap("refresh");
    let started_events = std::mem::take(&mut state.started_events);
    let obj = reference(pod);
    let record_started = async {
        for name in &started_events {
            record_started(ctx, &obj, name).await;
        }
    };
    let sandbox_ready = state.sandbox.is_some();
    tokio::join!(report(ctx, pod, state, sandbox_ready), record_started);
    timing.lap("report");
    timing.log(pod);
    requeue
}

/// The containers the pod's next sync starts whose images are present (and not to be
/// pulled again): their ids and images, to mount their root filesystems early.
fn rootfs_to_prefetch(ctx: &NodeContext, pod: &Pod, state: &PodState) -> Vec<(String, Image)> {
    let uid = uid_of(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    plan::plan(pod, &state.observed, Utc::now())
        .actions
        .into_iter()
        .filter_map(|action| {
            let Action::Start {
                name,
                attempt,
                replaces,
                ..
            } = action;
            if replaces.is_some() || state.pull_backoff.contains_key(&name) {
                return None;
            }
            let container = spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
                .find(|c| c.name == name)?;
            if pull_policy(container) == PullPolicy::Always {
                return None;
            }
            let image = ctx.images.get(container.image.as_deref()?)?;
            Some((plan::container_id(&uid, &name, attempt), image))
        })
        .collect()
}

/// Where the time of one sync went (a debug event, `SKIFF_LOG=info,skiff::agent=debug`):
/// milliseconds per step since the previous one.
struct SyncTiming {
    start: std::time::Instant,
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl SyncTiming {
    fn new() -> SyncTiming {
        let now = std::time::Instant::now();
        SyncTiming {
            start: now,
            last: now,
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, step: &'static str) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let now = std::time::Instant::now();
            self.laps
                .push((step, (now - self.last).as_secs_f64() * 1000.0));
            self.last = now;
        }
    }

    fn log(&self, pod: &Pod) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let laps: Vec<String> = self
                .laps
                .iter()
                .map(|(step, ms)| format!("{step}={ms:.1}"))
                .collect();
            tracing::debug!(
                pod = %pod_name(pod),
                total_ms = format!("{:.1}", self.start.elapsed().as_secs_f64() * 1000.0),
                laps_ms = %laps.join(","),
                "pod sync"
            );
        }
    }
}

/// Kill the running containers whose liveness or startup probe failed (they restart
/// as `restartPolicy` says, after the usual back-off); whether any was killed.
/// kubelet's `Started` event for a container.
async fn record_started(ctx: &NodeContext, obj: &ObjectReference, name: &str) {
    ctx.recorder
        .record(
            obj,
            EventType::Normal,
            "Started",
            &format!("Started container {name}"),
        )
        .await;
}

async fn kill_unhealthy(ctx: &NodeContext, pod: &Pod, state: &mut PodState) -> bool {
    let failed = state.probes.failed(&state.observed);
    if failed.is_empty() {
        return false;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let restarts = spec.restart_policy.as_deref() != Some("Never");
    let pod_ip = state.pod_ip().map(str::to_string);
    let kills = failed.iter().map(|f| {
        let container = spec.containers.iter().find(|c| c.name == f.name);
        let probe = container.and_then(|c| match f.kind {
            probe::Kind::Startup => c.startup_probe.as_ref(),
            _ => c.liveness_probe.as_ref(),
        });
        let grace = probe
            .and_then(|p| p.termination_grace_period_seconds)
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE);
        let mut message = format!(
            "Container {} failed {} probe",
            f.name,
            f.kind.as_str().to_ascii_lowercase()
        );
        if restarts {
            message.push_str(", will be restarted");
        }
        let pod_ip = pod_ip.clone();
        async move {
            stop_container(
                ctx,
                Some(pod),
                &f.id,
                grace,
                Some(message),
                pod_ip.as_deref(),
            )
            .await
        }
    });
    futures::future::join_all(kills).await;
    true
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Wake the worker when a running container exits.
fn watch_exits(
    ctx: &Arc<NodeContext>,
    state: &mut PodState,
    wake_tx: &mpsc::UnboundedSender<Wake>,
) {
    for a in state.observed.values().flatten().filter(|a| a.running()) {
        if state.watched.insert(a.state.id.clone()) {
            let (runtime, id, tx) = (ctx.runtime.clone(), a.state.id.clone(), wake_tx.clone());
            tokio::spawn(async move {
                let _ = runtime.wait(&id).await;
                let _ = tx.send(Wake::Exited);
            });
        }
    }
}

/// The sandbox: network, IPC and UTS namespaces and the pod's etc files.
async fn ensure_sandbox(ctx: &NodeContext, pod: &Pod, state: &mut PodState) -> Result<(), String> {
    if state.sandbox.is_some() {
        return Ok(());
    }
    let uid = uid_of(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        return Err("hostNetwork pods are not supported by skiff's agent yet".into());
    }
    let key = PodKey {
        uid: uid.clone(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    };
    let host_ports: Vec<HostPort> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: Protocol::parse(p.protocol.as_deref())?,
                host_ip: p.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    let dir = pod_dir(ctx, &uid);
    std::fs::create_dir_all(dir.join("ns"))
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| key.name.chars().take(63).collect());
    let ipcns = dir.join("ns/ipc");
    let utsns = dir.join("ns/uts");
    // The three namespaces are independent: made at once (each by its own thread).
    let (net, ipc, uts) = tokio::join!(
        ctx.network.setup(&key, &host_ports),
        net::netns::create_namespace(&ipcns, net::netns::Kind::Ipc, None),
        net::netns::create_namespace(&utsns, net::netns::Kind::Uts, Some(hostname.clone())),
    );
    let net = net.map_err(|e| format!("setting up the pod network: {e}"))?;
    ipc.map_err(|e| format!("creating the pod's IPC namespace: {e}"))?;
    uts.map_err(|e| format!("creating the pod's UTS namespace: {e}"))?;
    let dns_config = spec.dns_config.as_ref().map(|c| net::DnsConfig {
        nameservers: c.nameservers.clone().unwrap_or_default(),
        searches: c.searches.clone().unwrap_or_default(),
        options: c
            .options
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone()?, o.value.clone())))
            .collect(),
    });
    let resolv = net::resolv_conf(&net::PodDns {
        namespace: &key.namespace,
        policy: net::DnsPolicy::parse(spec.dns_policy.as_deref()),
        host_network: false,
        dns_config: dns_config.as_ref(),
        cluster_dns: &ctx.cluster_dns,
        cluster_domain: &ctx.cluster_domain,
        host_resolv_conf: &ctx.host_resolv_conf,
    });
    let aliases: Vec<net::HostAlias> = spec
        .host_aliases
        .iter()
        .flatten()
        .map(|a| net::HostAlias {
            ip: a.ip.clone(),
            hostnames: a.hostnames.clone().unwrap_or_default(),
        })
        .collect();
    let hosts = net::hosts_file(
        IpAddr::V4(net.ip),
        &net::PodHostname {
            hostname: &hostname,
            subdomain: spec.subdomain.as_deref(),
            namespace: &key.namespace,
            cluster_domain: &ctx.cluster_domain,
        },
        &aliases,
    );
    let files = [
        ("hosts", hosts),
        ("resolv.conf", resolv),
        ("hostname", format!("{hostname}\n")),
    ];
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    state.sandbox = Some((
        Sandbox {
            netns: net.netns.clone(),
            ipcns,
            utsns,
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
        },
        net.ip.to_string(),
    ));
    Ok(())
}

/// ConfigMaps, Secrets and service links the pod's containers and volumes use.
async fn inputs(ctx: &NodeContext, pod: &Pod, pod_ip: &str) -> Result<Inputs, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut cm_names = std::collections::BTreeSet::new();
    let mut secret_names = std::collections::BTreeSet::new();
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    for c in &all {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    cm_names.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secret_names.insert(r.name.clone());
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cm_names.insert(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secret_names.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cm_names.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret {
            secret_names.insert(s.secret_name.clone().unwrap_or_default());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                cm_names.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secret_names.insert(s.name.clone());
            }
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut inputs = Inputs {
        node_cpu_milli: ctx.node_cpu_milli,
        node_memory: ctx.node_memory,
        host_ip: ctx.node_ip.clone(),
        pod_ip: pod_ip.to_string(),
        ..Default::default()
    };
    for name in cm_names {
        if let Some(cm) = cms
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading configmap {name}: {e}"))?
        {
            let mut data = cm.data.unwrap_or_default();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            inputs.config_maps.insert(name, data);
        }
    }
    for name in secret_names {
        if let Some(s) = secrets
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading secret {name}: {e}"))?
        {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            inputs.secrets.insert(name, data);
        }
    }
    if spec.enable_service_links.unwrap_or(true) {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        let mut list = services
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing services: {e}"))?
            .items;
        if ns != "default" {
            let default: Api<Service> = Api::namespaced(ctx.client.clone(), "default");
            if let Some(k) = default
                .get_opt("kubernetes")
                .await
                .map_err(|e| format!("reading the kubernetes service: {e}"))?
            {
                list.push(k);
            }
        }
        inputs.service_env = containerspec::service_env(&list);
    } else {
        // The API server's own service is always there, service links or not.
        let default: Api<Service> = Api::namespaced(ctx.client.clone(), "default");
        if let Some(k) = default
            .get_opt("kubernetes")
            .await
            .map_err(|e| format!("reading the kubernetes service: {e}"))?
        {
            inputs.service_env = containerspec::service_env(&[k]);
        }
    }
    Ok(inputs)
}

/// A bound service-account token for the pod (TokenRequest, as kubelet asks for one).
async fn service_account_token(
    ctx: &NodeContext,
    pod: &Pod,
    expiration: i64,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(ctx.client.clone(), &ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(expiration),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let issued: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), body)
        .await
        .map_err(|e| format!("requesting a token for service account {ns}/{sa}: {e}"))?;
    issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| "the token request returned no token".to_string())
}

/// The pod's claim volumes mounted read-only (`persistentVolumeClaim.readOnly`).
fn read_only_claims(pod: &Pod) -> std::collections::BTreeSet<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.read_only == Some(true))
        })
        .map(|v| v.name.clone())
        .collect()
}

/// Make the pod's volumes; returns the inputs (ConfigMaps, Secrets, service links) read
/// for them, which the same sync's container starts use as well.
async fn prepare_volumes(
    ctx: &NodeContext,
    pod: &Pod,
    state: &mut PodState,
) -> Result<Inputs, String> {
    let uid = uid_of(pod);
    let dir = pod_dir(ctx, &uid).join("volumes");
    let pod_ip = state.pod_ip().unwrap_or_default().to_string();
    let inputs = inputs(ctx, pod, &pod_ip).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    for v in spec.volumes.iter().flatten() {
        let path = if let Some(e) = &v.empty_dir {
            let p = dir.join("empty-dir").join(&v.name);
            if e.medium.as_deref() == Some("Memory") {
                volumes::mount_tmpfs(&p, e.size_limit.as_ref().map(|q| q.0.as_str()))
                    .map_err(|e| e.to_string())?;
            } else {
                std::fs::create_dir_all(&p)
                    .map_err(|e| format!("creating {}: {e}", p.display()))?;
            }
            p
        } else if let Some(h) = &v.host_path {
            volumes::host_path(&h.path, h.type_.as_deref()).map_err(|e| e.to_string())?
        } else if let Some(c) = &v.persistent_volume_claim {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            crate::agent::storage::claim_path(&ctx.client, ns, &c.claim_name)
                .await
                .map_err(|e| format!("volume {:?}: {e}", v.name))?
        } else {
            project_volume(ctx, pod, v, &inputs, state)
                .await?
                .ok_or_else(|| {
                    format!("volume {:?}: this volume type is not supported yet", v.name)
                })?
        };
        state.volume_paths.insert(v.name.clone(), path);
    }
    Ok(inputs)
}

/// Write projected volume `v` (configMap, secret, downwardAPI, projected), or bring it
/// up to date: unchanged content is not rewritten, and a service-account token is
/// requested again only when 80 % of its lifetime has passed. Its path; `None` for other
/// kinds.
async fn project_volume(
    ctx: &NodeContext,
    pod: &Pod,
    v: &Volume,
    inputs: &Inputs,
    state: &mut PodState,
) -> Result<Option<PathBuf>, String> {
    let wanted = v.projected.as_ref().and_then(|p| {
        p.sources
            .iter()
            .flatten()
            .find_map(|s| s.service_account_token.as_ref())
    });
    let token = match wanted {
        None => None,
        Some(t) => match state.tokens.get(&v.name) {
            Some(k) if tokio::time::Instant::now() < k.renew_at => Some(k.token.clone()),
            _ => {
                let seconds = t.expiration_seconds.unwrap_or(3607);
                let token = service_account_token(ctx, pod, seconds).await?;
                let lifetime = Duration::from_secs(seconds.max(0) as u64);
                let renew_at = tokio::time::Instant::now() + lifetime.mul_f64(0.8);
                state.tokens.insert(
                    v.name.clone(),
                    Token {
                        token: token.clone(),
                        renew_at,
                    },
                );
                Some(token)
            }
        },
    };
    let Some(files) =
        volumes::projected_files(pod, v, inputs, token.as_deref()).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let dir = pod_dir(ctx, &uid_of(pod))
        .join("volumes")
        .join("projected")
        .join(&v.name);
    if state.projected.get(&v.name) != Some(&files) {
        if v.secret.is_some() || v.projected.is_some() {
            volumes::memory_backed(&dir).map_err(|e| e.to_string())?;
        }
        volumes::write_atomic(&dir, &files).map_err(|e| e.to_string())?;
        state.projected.insert(v.name.clone(), files);
    }
    Ok(Some(dir))
}

/// Bring the running pod's projected volumes up to date with their ConfigMaps, Secrets,
/// its own metadata and fresh tokens (every `--sync-frequency`). A failure keeps the
/// old content and says so; the next round tries again.
async fn refresh_volumes(ctx: &NodeContext, pod: &Pod, state: &mut PodState) {
    state.volumes_synced = Some(tokio::time::Instant::now());
    let projected: Vec<&Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| state.projected.contains_key(&v.name))
        .collect();
    if projected.is_empty() {
        return;
    }
    let pod_ip = state.pod_ip().unwrap_or_default().to_string();
    let result = match inputs(ctx, pod, &pod_ip).await {
        Ok(inputs) => {
            let mut result = Ok(());
            for v in projected {
                if let Err(e) = project_volume(ctx, pod, v, &inputs, state).await {
                    result = Err(e);
                }
            }
            result
        }
        Err(e) => Err(e),
    };
    if let Err(message) = result {
        tracing::warn!(pod = %pod_name(pod), %message, "refreshing volumes");
        ctx.recorder
            .record(&reference(pod), EventType::Warning, "FailedMount", &message)
            .await;
    }
}

fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        // The API server always defaults the field (Always for `:latest`).
        _ => PullPolicy::IfNotPresent,
    }
}

async fn pull_credentials(ctx: &NodeContext, pod: &Pod) -> Vec<RegistryCredential> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::new();
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        let Ok(Some(secret)) = secrets.get_opt(&r.name).await else {
            tracing::warn!(pod = %pod_name(pod), secret = %r.name, "image pull secret not found");
            continue;
        };
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
                match credentials_from_dockerconfigjson(&v.0) {
                    Ok(c) => out.extend(c),
                    Err(e) => {
                        tracing::warn!(secret = %r.name, error = %e, "reading an image pull secret")
                    }
                }
            }
        }
    }
    out
}

/// Start one attempt of one container. On failure the container is held with kubelet's
/// waiting reason and the returned delay says when to try again.
async fn start_container(
    ctx: &NodeContext,
    pod: &Pod,
    state: &mut PodState,
    name: &str,
    attempt: u32,
    inputs: &Inputs,
) -> Result<(), Duration> {
    let spec = pod.spec.clone().unwrap_or_default();
    let Some(container) = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == name)
        .cloned()
    else {
        return Err(RESYNC);
    };
    let reference_name = container.image.clone().unwrap_or_default();
    let obj = reference(pod);
    // Image (with kubelet's pull back-off: ErrImagePull, then ImagePullBackOff).
    if let Some((_, until)) = state.pull_backoff.get(name) {
        if tokio::time::Instant::now() < *until {
            let w = state
                .held
                .entry(name.to_string())
                .or_insert_with(|| Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: String::new(),
                });
            w.reason = "ImagePullBackOff".into();
            w.message = format!("Back-off pulling image {reference_name:?}");
            return Err(*until - tokio::time::Instant::now());
        }
    }
    let policy = pull_policy(&container);
    let image = match ctx
        .images
        .get(&reference_name)
        .filter(|_| policy != PullPolicy::Always)
    {
        Some(image) => image,
        None => {
            if policy != PullPolicy::Never {
                ctx.recorder
                    .record(
                        &obj,
                        EventType::Normal,
                        "Pulling",
                        &format!("Pulling image {reference_name:?}"),
                    )
                    .await;
            }
            let started = std::time::Instant::now();
            let creds = pull_credentials(ctx, pod).await;
            match ctx.images.ensure(&reference_name, policy, &creds).await {
                Ok(image) => {
                    if policy != PullPolicy::Never {
                        ctx.recorder
                            .record(
                                &obj,
                                EventType::Normal,
                                "Pulled",
                                &format!(
                                    "Successfully pulled image {reference_name:?} in {:.3}s",
                                    started.elapsed().as_secs_f64()
                                ),
                            )
                            .await;
                    }
                    state.pull_backoff.remove(name);
                    image
                }
                Err(e) => {
                    let never = policy == PullPolicy::Never;
                    let reason = if never {
                        "ErrImageNeverPull"
                    } else {
                        "ErrImagePull"
                    };
                    let message = e.to_string();
                    ctx.recorder
                        .record(&obj, EventType::Warning, "Failed", &message)
                        .await;
                    let failures = state.pull_backoff.get(name).map_or(0, |f| f.0) + 1;
                    let delay = plan::backoff(failures - 1);
                    state.pull_backoff.insert(
                        name.to_string(),
                        (failures, tokio::time::Instant::now() + delay),
                    );
                    state.held.insert(
                        name.to_string(),
                        Waiting {
                            reason: reason.into(),
                            message,
                        },
                    );
                    return Err(delay);
                }
            }
        }
    };
    state.images.insert(name.to_string(), image.clone());
    let Some((sandbox, _)) = state.sandbox.clone() else {
        return Err(RESYNC);
    };
    let id = plan::container_id(&uid_of(pod), name, attempt);
    let hold = |state: &mut PodState, reason: &str, message: String| {
        state.held.insert(
            name.to_string(),
            Waiting {
                reason: reason.into(),
                message,
            },
        );
    };
    let t_rootfs = std::time::Instant::now();
    let rootfs = match ctx.images.prepare_rootfs(&id, &image).await {
        Ok(r) => r,
        Err(e) => {
            hold(state, "CreateContainerError", e.to_string());
            return Err(Duration::from_secs(5));
        }
    };
    let defaults = ImageDefaults {
        entrypoint: image.config.entrypoint.clone(),
        cmd: image.config.cmd.clone(),
        env: image.config.env.clone(),
        working_dir: Some(image.config.working_dir.clone()).filter(|w| !w.is_empty()),
        user: Some(image.config.user.clone()).filter(|u| !u.is_empty()),
    };
    let log = containerspec::log_path(&ctx.log_root, pod, name, attempt);
    let spec = match containerspec::container_spec(
        pod,
        &container,
        id.clone(),
        rootfs,
        &defaults,
        &sandbox,
        inputs,
        log,
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = ctx.images.release_rootfs(&id).await;
            let reason = match e {
                ConfigError::NoCommand => "CreateContainerError",
                _ => "CreateContainerConfigError",
            };
            ctx.recorder
                .record(&obj, EventType::Warning, "Failed", &format!("Error: {e}"))
                .await;
            hold(state, reason, e.to_string());
            return Err(Duration::from_secs(5));
        }
    };
    let t_runtime = std::time::Instant::now();
    // The Created event is written while the runtime starts the container, not before:
    // it is not on the way to Running.
    let created_message = format!("Created container {name}");
    let (_, started) = tokio::join!(
        ctx.recorder
            .record(&obj, EventType::Normal, "Created", &created_message),
        ctx.runtime.create_and_start(&spec)
    );
    tracing::debug!(
        container = %id,
        rootfs_spec_ms = format!("{:.1}", (t_runtime - t_rootfs).as_secs_f64() * 1000.0),
        runtime_ms = format!("{:.1}", t_runtime.elapsed().as_secs_f64() * 1000.0),
        "container start"
    );
    match started {
        Ok(_) => {
            let hook = probe::hook_of(&container, Hook::PostStart);
            if hook.is_some() {
                // The hook's own events come after this one.
                record_started(ctx, &obj, name).await;
            } else {
                state.started_events.push(name.to_string());
            }
            if let Some(hook) = hook {
                let pod_ip = state.pod_ip().unwrap_or_default().to_string();
                if let Err(message) =
                    probe::run_hook(ctx, pod, &container, &id, hook, &pod_ip).await
                {
                    ctx.recorder
                        .record(
                            &probe::container_ref(pod, name),
                            EventType::Warning,
                            "FailedPostStartHook",
                            &message,
                        )
                        .await;
                    let grace = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                        .unwrap_or(DEFAULT_GRACE);
                    stop_container(
                        ctx,
                        Some(pod),
                        &id,
                        grace,
                        Some("FailedPostStartHook".into()),
                        Some(&pod_ip),
                    )
                    .await;
                }
            }
            Ok(())
        }
        Err(e) => {
            let _ = ctx.runtime.delete(&id).await;
            let _ = ctx.images.release_rootfs(&id).await;
            ctx.recorder
                .record(&obj, EventType::Warning, "Failed", &format!("Error: {e}"))
                .await;
            hold(state, "CreateContainerError", e.to_string());
            Err(Duration::from_secs(5))
        }
    }
}

/// Post the pod's status if it changed since the last report.
async fn report(ctx: &NodeContext, pod: &Pod, state: &mut PodState, sandbox_ready: bool) {
    let status = status_now(ctx, pod, state, sandbox_ready, false);
    post_status(ctx, pod, state, &status).await;
}

/// The pod's status from what the worker observed and knows; `last`: the pod ends, so
/// nothing waits (its containers show how they ended).
fn status_now(
    ctx: &NodeContext,
    pod: &Pod,
    state: &PodState,
    sandbox_ready: bool,
    last: bool,
) -> PodStatus {
    let decided = plan::plan(pod, &state.observed, Utc::now());
    let mut waiting = decided.waiting.clone();
    for (k, v) in &state.held {
        waiting.insert(k.clone(), v.clone());
    }
    if last {
        waiting.clear();
    }
    let mut known = Known {
        sandbox_ready,
        pod_ip: state.pod_ip().map(str::to_string),
        host_ip: Some(ctx.node_ip.clone()),
        waiting,
        image_ids: state
            .images
            .iter()
            .map(|(c, img)| {
                (
                    c.clone(),
                    img.repo_digests
                        .first()
                        .cloned()
                        .unwrap_or_else(|| img.id.clone()),
                )
            })
            .collect(),
        readiness: BTreeMap::new(),
        started: BTreeMap::new(),
    };
    (known.started, known.readiness) = state.probes.view(pod, &state.observed);
    status::pod_status(
        pod,
        &state.observed,
        decided.initialized,
        &known,
        Utc::now(),
    )
}

/// Post `status` unless it is what was posted last.
async fn post_status(ctx: &NodeContext, pod: &Pod, state: &mut PodState, status: &PodStatus) {
    let Ok(mut value) = serde_json::to_value(status) else {
        return;
    };
    // Compare without timestamps that move on their own.
    if state.last_status.as_ref() == Some(&value) {
        return;
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"status": value.take()});
    let started = std::time::Instant::now();
    match pods
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {
            tracing::debug!(pod = %pod_name(pod), ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
                "status posted");
            state.last_status = patch.get("status").cloned();
        }
        Err(e) => tracing::debug!(pod = %pod_name(pod), error = %e, "posting pod status"),
    }
}

/// Stop every container of the pod (SIGTERM, then SIGKILL after `grace` seconds), remove
/// them and everything the pod made; then delete the pod object if it still exists.
async fn terminate(
    ctx: &NodeContext,
    uid: &str,
    pod: Option<&Pod>,
    state: &mut PodState,
    grace: i64,
) {
    refresh_observed(ctx, uid, state).await;
    let running: Vec<String> = state
        .observed
        .values()
        .flatten()
        .filter(|a| a.running())
        .map(|a| a.state.id.clone())
        .collect();
    state.probes.clear();
    let pod_ip = state.pod_ip().map(str::to_string);
    let stops = running
        .iter()
        .map(|id| stop_container(ctx, pod, id, grace, None, pod_ip.as_deref()));
    futures::future::join_all(stops).await;
    // Final statuses (the terminated states) before the containers go.
    refresh_observed(ctx, uid, state).await;
    // An evicted or refused pod keeps the status it ended with.
    if let Some(pod) = pod.filter(|_| !state.ended) {
        report(ctx, pod, state, false).await;
    }
    cleanup(ctx, uid, state).await;
    if let Some(pod) = pod {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod_name(pod), error = %e, "deleting the pod object"),
        }
    }
}

/// Stop one container as kubelet's `killContainer` does: a `Killing` event (with
/// `message`, or "Stopping container <name>"), its preStop hook within the grace period
/// (`FailedPreStopHook` when it fails), SIGTERM, and SIGKILL when the rest of the grace
/// period (at least 2 s after a hook) has passed. Without the pod (leftovers) only the
/// signals.
async fn stop_container(
    ctx: &NodeContext,
    pod: Option<&Pod>,
    id: &str,
    grace: i64,
    message: Option<String>,
    pod_ip: Option<&str>,
) {
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    let mut deadline = tokio::time::Instant::now() + grace;
    let name = plan::parse_container_id(id).map(|(_, n, _)| n.to_string());
    if let (Some(pod), Some(name)) = (pod, name) {
        let container = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .find(|c| c.name == name);
        ctx.recorder
            .record(
                &probe::container_ref(pod, &name),
                EventType::Normal,
                "Killing",
                &message.unwrap_or_else(|| format!("Stopping container {name}")),
            )
            .await;
        if let Some((c, hook)) = container
            .and_then(|c| Some((c, probe::hook_of(c, Hook::PreStop)?)))
            .filter(|_| !grace.is_zero())
        {
            let ran = tokio::time::timeout_at(
                deadline,
                probe::run_hook(ctx, pod, c, id, hook, pod_ip.unwrap_or_default()),
            )
            .await;
            if let Ok(Err(message)) = ran {
                ctx.recorder
                    .record(
                        &probe::container_ref(pod, &name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        &message,
                    )
                    .await;
            }
            deadline = deadline.max(tokio::time::Instant::now() + probe::MIN_GRACE_AFTER_HOOK);
        }
    }
    let _ = ctx.runtime.kill(id, libc::SIGTERM).await;
    let waited = tokio::time::timeout_at(deadline, ctx.runtime.wait(id)).await;
    if waited.is_err() {
        let _ = ctx.runtime.kill(id, libc::SIGKILL).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), ctx.runtime.wait(id)).await;
    }
}

/// Remove every container, root filesystem, namespace, volume and file of pod `uid`.
async fn cleanup(ctx: &NodeContext, uid: &str, state: &mut PodState) {
    for a in state.observed.values().flatten() {
        if let Err(e) = ctx.runtime.delete(&a.state.id).await {
            tracing::debug!(container = %a.state.id, error = %e, "removing a container");
        }
        if let Err(e) = ctx.images.release_rootfs(&a.state.id).await {
            tracing::warn!(container = %a.state.id, error = %e, "removing a root filesystem");
        }
    }
    state.observed.clear();
    for id in std::mem::take(&mut state.prefetched) {
        if let Err(e) = ctx.images.release_rootfs(&id).await {
            tracing::warn!(container = %id, error = %e, "removing a root filesystem");
        }
    }
    if let Err(e) = crate::runtime::cgroup::remove(&containerspec::pod_cgroup(uid)) {
        tracing::warn!(pod_uid = %uid, error = %e, "removing the pod's cgroup");
    }
    if let Err(e) = ctx.network.teardown(uid).await {
        tracing::warn!(pod_uid = %uid, error = %e, "removing the pod network");
    }
    let dir = pod_dir(ctx, uid);
    for ns in ["ns/ipc", "ns/uts"] {
        if let Err(e) = net::netns::remove(&dir.join(ns)) {
            tracing::warn!(pod_uid = %uid, error = %e, "removing a pod namespace");
        }
    }
    volumes::unmount_all(&dir.join("volumes"));
    // The pod's log dir (`<ns>_<name>_<uid>`), as kubelet removes it with the pod.
    for entry in std::fs::read_dir(&ctx.log_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(&format!("_{uid}"))
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(pod_uid = %uid, error = %e, "removing the pod dir");
        }
    }
    state.sandbox = None;
    state.volumes_ready = false;
    state.projected.clear();
}

/// Used by the pod manager for pods known only from leftovers (containers or sandboxes
/// of pods that no longer exist).
pub async fn cleanup_orphan(ctx: &NodeContext, uid: &str) {
    let mut state = PodState::default();
    refresh_observed(ctx, uid, &mut state).await;
    terminate(ctx, uid, None, &mut state, 2).await;
}
