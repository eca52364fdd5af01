//! Node-pressure eviction, as kubelet's eviction manager does it. Every monitoring
//! interval (kubelet's housekeeping, 10 s) the agent observes its signals —
//! `memory.available` (capacity minus the working set: MemFree plus inactive file pages),
//! `nodefs.available` and `nodefs.inodesFree` of the data dir's filesystem,
//! `imagefs.available` and `imagefs.inodesFree` of the image store's, `pid.available` — and
//! compares them with the hard thresholds (`--eviction-hard`, kubelet's syntax, k3s's
//! defaults). A met threshold turns on its node condition (MemoryPressure, DiskPressure,
//! PIDPressure), which stays on for the pressure transition period after the last
//! observation; [`super::node`] reports the conditions and allocatable keeps the
//! thresholds back, so the thresholds here are the one source of truth.
//!
//! Under pressure the agent first reclaims node-level resources for disk signals (unused
//! images, through [`super::imagegc`]), then ranks the pods as kubelet does (memory:
//! usage above requests first, then priority, then usage above requests; disk: the same
//! with ephemeral usage — emptyDirs, writable layers and logs; PIDs: priority) and evicts
//! ONE pod, then waits for it to be cleaned up before the next round. The pod's worker
//! does the killing (grace period 0: these are hard thresholds) and reports the pod
//! `Failed`/`Evicted` with kubelet's message and the DisruptionTarget condition. While a
//! condition is on, [`admit`] refuses new pods as kubelet's admit handler does.
//!
//! Not done: soft thresholds and grace periods, minimum reclaim, memcg threshold
//! notifications, per-container ephemeral-storage limits (local storage isolation), and
//! removing dead containers' logs as node-level reclaim (the pod workers already remove
//! the containers of earlier attempts).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Node, Pod, Toleration};
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::pods::worker::NodeContext;
use super::pods::{containerspec, plan};
use crate::apimachinery::quantity::{parse_quantity, Quantity, QuantityFormat};
use crate::client::events::{reference, EventType};
use crate::runtime::cgroup::Hierarchies;

/// kubelet's status reason for evicted (and pressure-rejected) pods.
pub const REASON: &str = "Evicted";
/// Pods at or above this priority (`system-cluster-critical` and up) are critical:
/// never evicted, always admitted.
const CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// How long the manager waits for an evicted pod to be cleaned up.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A bad `--eviction-hard`.
#[derive(Debug, thiserror::Error)]
#[error("eviction threshold {statement:?}: {reason}")]
pub struct ThresholdError {
    pub statement: String,
    pub reason: String,
}

/// An eviction signal (kubelet's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The resource the signal measures, as eviction messages name it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition a met threshold of this signal turns on.
    pub fn condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "MemoryPressure",
            Signal::PidAvailable => "PIDPressure",
            _ => "DiskPressure",
        }
    }

    fn is_disk(self) -> bool {
        self.condition() == "DiskPressure"
    }

    fn format(self) -> QuantityFormat {
        match self.resource() {
            "memory" | "ephemeral-storage" => QuantityFormat::BinarySI,
            _ => QuantityFormat::DecimalSI,
        }
    }
}

/// The node conditions eviction drives, in the order kubelet reports them.
pub const CONDITIONS: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

/// A threshold's value: a quantity, or a share of the signal's capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Quantity(Quantity),
    /// 0.1 for `10%`.
    Percent(f64),
}

/// One hard threshold: `signal < value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

impl Threshold {
    /// The threshold as a quantity for a signal of `capacity`.
    pub fn quantity(&self, capacity: u64) -> Quantity {
        match &self.value {
            Value::Quantity(q) => *q,
            Value::Percent(p) => Quantity {
                nano: ((capacity as f64 * p) as i128).saturating_mul(1_000_000_000),
                format: QuantityFormat::BinarySI,
            },
        }
    }

    /// The threshold in the signal's unit (bytes, inodes, PIDs).
    pub fn amount(&self, capacity: u64) -> i128 {
        i128::from(self.quantity(capacity).value())
    }
}

/// Parse kubelet's `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`).
/// Empty: no thresholds (eviction off).
pub fn parse_thresholds(text: &str) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out: Vec<Threshold> = Vec::new();
    for statement in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |reason: &str| ThresholdError {
            statement: statement.to_string(),
            reason: reason.to_string(),
        };
        let (name, value) = statement
            .split_once('<')
            .ok_or_else(|| bad("expected <signal><<quantity or percentage>"))?;
        let signal = Signal::parse(name.trim()).ok_or_else(|| {
            bad(&format!(
                "unknown signal (known: {})",
                Signal::ALL.map(Signal::name).join(", ")
            ))
        })?;
        let value = value.trim();
        let value = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("a percentage must be above 0 and at most 100"));
            }
            Value::Percent(p / 100.0)
        } else {
            let q = parse_quantity(value).map_err(|e| bad(&e.to_string()))?;
            if q.nano < 0 {
                return Err(bad("must not be negative"));
            }
            Value::Quantity(q)
        };
        if out.iter().any(|t| t.signal == signal) {
            return Err(bad("the signal has a threshold already"));
        }
        out.push(Threshold { signal, value });
    }
    Ok(out)
}

/// The default hard thresholds: k3s's, which it passes to its kubelet in place of
/// kubelet's own (`memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,
/// nodefs.inodesFree<5%`). Only a nearly full disk evicts, so a build machine or a small
/// VM with a busy disk keeps running pods.
pub const DEFAULT_HARD: &str = "imagefs.available<5%,nodefs.available<5%";

/// How eviction runs (from `skiff server` flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub hard: Vec<Threshold>,
    /// How often signals are observed (kubelet's housekeeping interval).
    pub monitoring_interval: Duration,
    /// How long a pressure condition stays on after its threshold was last met
    /// (`--eviction-pressure-transition-period`).
    pub pressure_transition_period: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hard: parse_thresholds(DEFAULT_HARD).unwrap_or_default(),
            monitoring_interval: Duration::from_secs(10),
            pressure_transition_period: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// The hard threshold of `signal` as an amount for `capacity` (allocatable keeps it
    /// back); 0 without one.
    pub fn reserved(&self, signal: Signal, capacity: u64) -> u64 {
        self.hard
            .iter()
            .find(|t| t.signal == signal)
            .map_or(0, |t| u64::try_from(t.amount(capacity)).unwrap_or(0))
    }
}

/// One signal's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: i64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

fn meminfo_bytes(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// `memory.available` from `/proc/meminfo` as kubelet computes it for the node: capacity
/// minus the working set (usage minus inactive file pages), i.e. MemFree + Inactive(file).
pub fn memory_observation(meminfo: &str) -> Option<Observation> {
    let total = meminfo_bytes(meminfo, "MemTotal")?;
    let free = meminfo_bytes(meminfo, "MemFree")?;
    let inactive_file = meminfo_bytes(meminfo, "Inactive(file)").unwrap_or(0);
    let working_set = total.saturating_sub(free).saturating_sub(inactive_file);
    Some(Observation {
        available: i64::try_from(total - working_set).unwrap_or(i64::MAX),
        capacity: total,
    })
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    Some(unsafe { st.assume_init() })
}

fn filesystem_observations(path: &Path) -> Option<(Observation, Observation)> {
    let st = statvfs(path)?;
    let bytes = Observation {
        available: i64::try_from(st.f_bavail * st.f_frsize).unwrap_or(i64::MAX),
        capacity: st.f_blocks * st.f_frsize,
    };
    let inodes = Observation {
        available: i64::try_from(st.f_ffree).unwrap_or(i64::MAX),
        capacity: st.f_files,
    };
    Some((bytes, inodes))
}

/// Read every signal of the node (a signal that cannot be read is left out).
pub fn observe(data_dir: &Path, image_root: &Path) -> Observations {
    let mut out = Observations::new();
    if let Some(m) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| memory_observation(&t))
    {
        out.insert(Signal::MemoryAvailable, m);
    }
    if let Some((bytes, inodes)) = filesystem_observations(data_dir) {
        out.insert(Signal::NodeFsAvailable, bytes);
        out.insert(Signal::NodeFsInodesFree, inodes);
    }
    if let Some((bytes, inodes)) = filesystem_observations(image_root) {
        out.insert(Signal::ImageFsAvailable, bytes);
        out.insert(Signal::ImageFsInodesFree, inodes);
    }
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let processes = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| super::host::parse_loadavg_processes(&t));
    if let (Some(pid_max), Some(processes)) = (pid_max, processes) {
        out.insert(
            Signal::PidAvailable,
            Observation {
                available: i64::try_from(pid_max.saturating_sub(processes)).unwrap_or(0),
                capacity: pid_max,
            },
        );
    }
    out
}

/// The thresholds whose signal is below them now.
pub fn thresholds_met(thresholds: &[Threshold], observations: &Observations) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            observations
                .get(&t.signal)
                .is_some_and(|o| t.amount(o.capacity) > i128::from(o.available))
        })
        .cloned()
        .collect()
}

/// When each pressure condition was last observed; a condition stays on for the
/// transition period after that (kubelet's anti-flapping rule).
#[derive(Debug, Default)]
pub struct ConditionClock {
    last_observed: BTreeMap<&'static str, Instant>,
}

impl ConditionClock {
    /// Record the conditions of `met` at `now`; returns the conditions that are on.
    pub fn observe(
        &mut self,
        met: &[Threshold],
        now: Instant,
        period: Duration,
    ) -> Vec<&'static str> {
        for t in met {
            self.last_observed.insert(t.signal.condition(), now);
        }
        self.last_observed
            .retain(|_, at| now.saturating_duration_since(*at) < period || *at == now);
        CONDITIONS
            .into_iter()
            .filter(|c| self.last_observed.contains_key(c))
            .collect()
    }
}

/// The threshold to act on: memory before everything else, then as configured.
pub fn to_reclaim(met: &[Threshold]) -> Option<&Threshold> {
    met.iter()
        .find(|t| t.signal == Signal::MemoryAvailable)
        .or_else(|| met.first())
}

/// What one container uses (`None`: unknown).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    /// Working set, bytes.
    pub memory: Option<u64>,
    /// Writable layer plus logs, bytes.
    pub disk: Option<u64>,
}

/// What one pod uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    /// Working set of the pod's cgroup, bytes.
    pub memory: Option<u64>,
    /// Ephemeral storage: emptyDirs, writable layers and logs, bytes.
    pub disk: Option<u64>,
    pub inodes: Option<u64>,
    pub containers: Vec<ContainerUsage>,
}

impl PodUsage {
    fn of(&self, resource: &str) -> Option<u64> {
        match resource {
            "memory" => self.memory,
            "ephemeral-storage" => self.disk,
            "inodes" => self.inodes,
            _ => None,
        }
    }
}

/// A pod that could be evicted, with what it uses (`None`: no stats).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pod: Pod,
    pub usage: Option<PodUsage>,
}

fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

fn request_value(c: &Container, resource: &str) -> i128 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| parse_quantity(&q.0).ok())
        .map_or(0, |q| i128::from(q.value()))
}

/// The pod's request of `resource`, as the scheduler counts it: the larger of the sum of
/// its containers' and the largest init container's, plus the pod overhead.
pub fn pod_request(pod: &Pod, resource: &str) -> i128 {
    let Some(spec) = &pod.spec else { return 0 };
    let sum: i128 = spec
        .containers
        .iter()
        .map(|c| request_value(c, resource))
        .sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| request_value(c, resource))
        .max()
        .unwrap_or(0);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| parse_quantity(&q.0).ok())
        .map_or(0, |q| i128::from(q.value()));
    sum.max(init) + overhead
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn is_critical(pod: &Pod) -> bool {
    priority(pod) >= CRITICAL_PRIORITY
}

/// `true` before `false`.
fn true_first(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// Order `candidates` for eviction under pressure of `signal`, first to go first, as
/// kubelet ranks them: pods without stats first; for memory and disk, pods using more
/// than they request, then lower priority, then more usage above the request; for PIDs,
/// lower priority.
pub fn rank(candidates: &mut [Candidate], signal: Signal) {
    let resource = signal.resource();
    let request_resource = match resource {
        "inodes" => None,
        r => Some(r),
    };
    let usage = |c: &Candidate| c.usage.as_ref().and_then(|u| u.of(resource));
    let above = |c: &Candidate| {
        let request = request_resource.map_or(0, |r| pod_request(&c.pod, r));
        usage(c).map(|u| i128::from(u) - request)
    };
    candidates.sort_by(|a, b| {
        if signal == Signal::PidAvailable {
            return priority(&a.pod).cmp(&priority(&b.pod));
        }
        let (ua, ub) = (above(a), above(b));
        true_first(ua.is_none(), ub.is_none())
            .then_with(|| match (ua, ub) {
                (Some(x), Some(y)) => true_first(x > 0, y > 0),
                _ => Ordering::Equal,
            })
            .then_with(|| priority(&a.pod).cmp(&priority(&b.pod)))
            .then_with(|| ub.cmp(&ua))
    });
}

fn binary(bytes: u64) -> String {
    Quantity {
        nano: i128::from(bytes) * 1_000_000_000,
        format: QuantityFormat::BinarySI,
    }
    .canonical()
}

/// kubelet's eviction message: the starved resource, the threshold and what was
/// available, and each container using more than it requests.
pub fn eviction_message(
    signal: Signal,
    pod: &Pod,
    usage: Option<&PodUsage>,
    met: &[Threshold],
    observations: &Observations,
) -> String {
    let resource = signal.resource();
    let mut message = format!("The node was low on resource: {resource}. ");
    if let Some((t, o)) = met
        .iter()
        .filter(|t| t.signal.resource() == resource)
        .find_map(|t| Some((t, observations.get(&t.signal)?)))
    {
        let available = Quantity {
            nano: i128::from(o.available) * 1_000_000_000,
            format: t.signal.format(),
        };
        message.push_str(&format!(
            "Threshold quantity: {}, available: {}. ",
            t.quantity(o.capacity).canonical(),
            available.canonical()
        ));
    }
    let Some(usage) = usage else { return message };
    for stats in &usage.containers {
        let Some(c) = containers(pod).find(|c| c.name == stats.name) else {
            continue;
        };
        let used = match resource {
            "memory" => stats.memory,
            "ephemeral-storage" => stats.disk,
            _ => None,
        };
        let Some(used) = used else { continue };
        if i128::from(used) > request_value(c, resource) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| parse_quantity(&q.0).ok())
                .map_or_else(|| "0".to_string(), |q| q.canonical());
            message.push_str(&format!(
                "Container {} was using {}, request is {request}, has larger consumption of {resource}. ",
                c.name,
                binary(used)
            ));
        }
    }
    message
}

/// Whether the pod is BestEffort (no container requests or limits cpu or memory).
pub fn best_effort(pod: &Pod) -> bool {
    !containers(pod).any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            [r.requests.as_ref(), r.limits.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| m.contains_key("cpu") || m.contains_key("memory"))
        })
    })
}

fn tolerates_memory_pressure(t: &Toleration) -> bool {
    let key = t.key.as_deref().unwrap_or_default();
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == "NoSchedule");
    let key_ok = match t.operator.as_deref() {
        Some("Exists") => key.is_empty() || key == "node.kubernetes.io/memory-pressure",
        _ => {
            key == "node.kubernetes.io/memory-pressure"
                && t.value.as_deref().unwrap_or_default().is_empty()
        }
    };
    effect_ok && key_ok
}

/// kubelet's eviction admit handler: with pressure conditions on, a new pod is refused
/// (the message says why) unless it is critical, or the only condition is MemoryPressure
/// and the pod is not BestEffort or tolerates the memory-pressure taint.
pub fn admit(pod: &Pod, conditions: &[&str]) -> Result<(), String> {
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if conditions == ["MemoryPressure"] {
        let tolerates = pod
            .spec
            .iter()
            .flat_map(|s| s.tolerations.iter().flatten())
            .any(tolerates_memory_pressure);
        if !best_effort(pod) || tolerates {
            return Ok(());
        }
    }
    Err(format!(
        "The node had condition: [{}]. ",
        conditions.join(" ")
    ))
}

/// What the eviction manager shares with the node status loop and the pod workers: the
/// pressure conditions that are on, and the pods it decided to evict (uid → message).
#[derive(Clone)]
pub struct Shared {
    conditions: Arc<watch::Sender<Vec<&'static str>>>,
    evictions: Arc<watch::Sender<BTreeMap<String, String>>>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            conditions: Arc::new(watch::channel(Vec::new()).0),
            evictions: Arc::new(watch::channel(BTreeMap::new()).0),
        }
    }
}

impl Shared {
    pub fn conditions(&self) -> watch::Receiver<Vec<&'static str>> {
        self.conditions.subscribe()
    }

    pub fn current_conditions(&self) -> Vec<&'static str> {
        self.conditions.borrow().clone()
    }

    pub fn evictions(&self) -> watch::Receiver<BTreeMap<String, String>> {
        self.evictions.subscribe()
    }

    /// The eviction message of pod `uid`, when it is to be evicted.
    pub fn eviction_of(&self, uid: &str) -> Option<String> {
        self.evictions.borrow().get(uid).cloned()
    }

    fn set_conditions(&self, conditions: Vec<&'static str>) {
        self.conditions.send_if_modified(|c| {
            let changed = *c != conditions;
            *c = conditions;
            changed
        });
    }

    fn evict(&self, uid: &str, message: String) {
        self.evictions.send_modify(|e| {
            e.insert(uid.to_string(), message);
        });
    }

    /// Forget evictions of pods that no longer exist.
    fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.evictions.send_if_modified(|e| {
            let before = e.len();
            e.retain(|uid, _| exists(uid));
            e.len() != before
        });
    }
}

/// Bytes and inodes under `dir` on its own filesystem (other mounts, e.g. tmpfs
/// emptyDirs, are not disk).
pub fn dir_usage(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::symlink_metadata(dir).ok()?;
    let device = root.dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != device {
                continue;
            }
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some((bytes, inodes))
}

/// What `pod` uses now: its cgroup's working set, and its emptyDirs, writable layers and
/// logs on disk (`states`: the runtime's containers of the pod).
fn pod_usage(
    ctx: &NodeContext,
    hierarchies: &Hierarchies,
    uid: &str,
    states: &[crate::runtime::ContainerState],
) -> PodUsage {
    let mut usage = PodUsage {
        memory: hierarchies
            .usage(&containerspec::pod_cgroup(uid))
            .map(|u| u.working_set_bytes),
        ..Default::default()
    };
    let (mut disk, mut inodes) =
        dir_usage(&ctx.pods_dir.join(uid).join("volumes/empty-dir")).unwrap_or((0, 0));
    // The latest attempt of each container.
    let mut latest: BTreeMap<String, (u32, &crate::runtime::ContainerState)> = BTreeMap::new();
    for s in states {
        if let Some((_, name, attempt)) = plan::parse_container_id(&s.id) {
            if latest.get(name).is_none_or(|(a, _)| *a < attempt) {
                latest.insert(name.to_string(), (attempt, s));
            }
        }
    }
    for (name, (_, s)) in latest {
        let layer = dir_usage(&ctx.images.writable_layer(&s.id));
        let logs = s.log_path.parent().and_then(dir_usage);
        let container_disk = match (layer, logs) {
            (None, None) => None,
            (l, g) => {
                let (lb, li) = l.unwrap_or((0, 0));
                let (gb, gi) = g.unwrap_or((0, 0));
                disk += lb + gb;
                inodes += li + gi;
                Some(lb + gb)
            }
        };
        usage.containers.push(ContainerUsage {
            name,
            memory: (s.status == crate::runtime::Status::Running)
                .then(|| hierarchies.usage(&s.cgroups_path))
                .flatten()
                .map(|u| u.working_set_bytes),
            disk: container_disk,
        });
    }
    usage.disk = Some(disk);
    usage.inodes = Some(inodes);
    usage
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Run the eviction manager forever.
pub async fn run(ctx: Arc<NodeContext>, config: Config, data_dir: std::path::PathBuf) {
    if config.hard.is_empty() {
        tracing::info!("no eviction thresholds: node-pressure eviction is off");
        return;
    }
    let mut clock = ConditionClock::default();
    loop {
        match synchronize(&ctx, &config, &data_dir, &mut clock).await {
            Some(uid) => wait_for_cleanup(&ctx, &uid).await,
            None => tokio::time::sleep(config.monitoring_interval).await,
        }
    }
}

async fn observe_now(ctx: &NodeContext, data_dir: &Path) -> Observations {
    let (data_dir, images) = (data_dir.to_path_buf(), ctx.images.root().to_path_buf());
    tokio::task::spawn_blocking(move || observe(&data_dir, &images))
        .await
        .unwrap_or_default()
}

/// One round: observe, update the conditions, and under pressure reclaim or evict one
/// pod. Returns the uid of the pod being evicted.
async fn synchronize(
    ctx: &Arc<NodeContext>,
    config: &Config,
    data_dir: &Path,
    clock: &mut ConditionClock,
) -> Option<String> {
    let observations = observe_now(ctx, data_dir).await;
    let met = thresholds_met(&config.hard, &observations);
    let on = clock.observe(&met, Instant::now(), config.pressure_transition_period);
    ctx.eviction.set_conditions(on);
    let threshold = to_reclaim(&met)?.clone();
    let resource = threshold.signal.resource();
    tracing::info!(
        signal = threshold.signal.name(),
        "eviction manager: attempting to reclaim {resource}"
    );
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if let Ok(node) = nodes.get(&ctx.node_name).await {
        ctx.recorder
            .record(
                &reference(&node),
                EventType::Warning,
                "EvictionThresholdMet",
                &format!("Attempting to reclaim {resource}"),
            )
            .await;
    }
    if threshold.signal.is_disk() {
        match super::imagegc::free_unused(ctx).await {
            Ok(freed) => tracing::info!(freed, "eviction manager: removed unused images"),
            Err(e) => tracing::warn!(error = %e, "eviction manager: removing unused images"),
        }
        let after = observe_now(ctx, data_dir).await;
        if thresholds_met(&config.hard, &after).is_empty() {
            tracing::info!("eviction manager: reclaimed node-level resources, no pod evicted");
            return None;
        }
    }
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let listed = match pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name)))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(error = %e, "eviction manager: listing the node's pods");
            return None;
        }
    };
    let uids: std::collections::HashSet<String> = listed.iter().map(uid_of).collect();
    ctx.eviction.retain(|uid| uids.contains(uid));
    let ids = ctx.runtime.ids().unwrap_or_default();
    let states = ctx.runtime.states(ids).await.unwrap_or_default();
    let hierarchies = Hierarchies::read_or_conventional();
    let mut candidates = Vec::new();
    for pod in listed {
        let uid = uid_of(&pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
            || ctx.eviction.eviction_of(&uid).is_some()
        {
            continue;
        }
        let own: Vec<_> = states
            .iter()
            .filter(|s| plan::parse_container_id(&s.id).is_some_and(|(u, _, _)| u == uid))
            .cloned()
            .collect();
        if !own
            .iter()
            .any(|s| s.status == crate::runtime::Status::Running)
        {
            continue;
        }
        let usage = pod_usage(ctx, &hierarchies, &uid, &own);
        candidates.push(Candidate {
            pod,
            usage: Some(usage),
        });
    }
    if candidates.is_empty() {
        tracing::warn!("eviction manager: thresholds are met, but no pod is running to evict");
        return None;
    }
    rank(&mut candidates, threshold.signal);
    let ranked: Vec<String> = candidates
        .iter()
        .map(|c| c.pod.metadata.name.clone().unwrap_or_default())
        .collect();
    tracing::info!(pods = ?ranked, "eviction manager: pods ranked for eviction");
    for c in candidates {
        if is_critical(&c.pod) {
            continue;
        }
        let message = eviction_message(
            threshold.signal,
            &c.pod,
            c.usage.as_ref(),
            &met,
            &observations,
        );
        let uid = uid_of(&c.pod);
        ctx.recorder
            .record(&reference(&c.pod), EventType::Warning, REASON, &message)
            .await;
        tracing::info!(pod = ?c.pod.metadata.name, %message, "eviction manager: evicting");
        ctx.eviction.evict(&uid, message);
        return Some(uid);
    }
    tracing::warn!("eviction manager: unable to evict any pod from the node");
    None
}

/// Wait (at most [`CLEANUP_TIMEOUT`]) until the evicted pod's containers and dir are gone.
async fn wait_for_cleanup(ctx: &NodeContext, uid: &str) {
    let deadline = tokio::time::Instant::now() + CLEANUP_TIMEOUT;
    let prefix = format!("{uid}_");
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let containers_left = ctx
            .runtime
            .ids()
            .map(|ids| ids.iter().any(|id| id.starts_with(&prefix)))
            .unwrap_or(true);
        if !containers_left && !ctx.pods_dir.join(uid).exists() {
            tracing::info!(pod_uid = %uid, "eviction manager: the evicted pod is cleaned up");
            return;
        }
    }
    tracing::info!(pod_uid = %uid, "eviction manager: timed out waiting for the evicted pod's cleanup");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, priority: i32, memory_request: Option<&str>) -> Pod {
        let resources = match memory_request {
            Some(r) => serde_json::json!({"requests": {"memory": r}, "limits": {"memory": r}}),
            None => serde_json::json!({}),
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
        }))
        .expect("pod")
    }

    fn using(memory: u64, disk: u64) -> Option<PodUsage> {
        Some(PodUsage {
            memory: Some(memory),
            disk: Some(disk),
            inodes: Some(10),
            containers: vec![ContainerUsage {
                name: "c".into(),
                memory: Some(memory),
                disk: Some(disk),
            }],
        })
    }

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter()
            .map(|c| c.pod.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    const MI: u64 = 1024 * 1024;

    #[test]
    fn parses_kubelet_threshold_flags() {
        let t = parse_thresholds("memory.available<100Mi, nodefs.available<10%").expect("ok");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].signal, Signal::MemoryAvailable);
        assert_eq!(t[0].amount(1 << 40), 100 * 1024 * 1024);
        assert_eq!(t[0].quantity(0).canonical(), "100Mi");
        assert_eq!(t[1].signal, Signal::NodeFsAvailable);
        assert_eq!(t[1].amount(1000), 100);
        assert!(parse_thresholds("").expect("empty").is_empty());
        for bad in [
            "memory.available>100Mi",
            "memory.free<1Gi",
            "nodefs.available<150%",
            "nodefs.available<0%",
            "memory.available<-1",
            "memory.available<1Mi,memory.available<2Mi",
            "memory.available<lots",
        ] {
            assert!(parse_thresholds(bad).is_err(), "{bad} should not parse");
        }
        let defaults = Config::default();
        let signals: Vec<_> = defaults.hard.iter().map(|t| t.signal.name()).collect();
        assert_eq!(signals, ["imagefs.available", "nodefs.available"]);
        assert_eq!(defaults.reserved(Signal::NodeFsAvailable, 1000), 50);
        assert_eq!(defaults.reserved(Signal::MemoryAvailable, 1000), 0);
        assert_eq!(defaults.reserved(Signal::PidAvailable, 1000), 0);
    }

    #[test]
    fn memory_available_is_capacity_minus_working_set() {
        let text =
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nInactive(file): 300 kB\n";
        let o = memory_observation(text).expect("observation");
        assert_eq!(o.capacity, 1000 * 1024);
        assert_eq!(o.available, 400 * 1024);
        assert_eq!(memory_observation("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn thresholds_are_met_below_their_quantity_or_share() {
        let t = parse_thresholds("memory.available<100Mi,nodefs.available<10%,pid.available<5")
            .expect("ok");
        let mut obs = Observations::new();
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available: (200 * MI) as i64,
                capacity: 1 << 30,
            },
        );
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 99,
                capacity: 1000,
            },
        );
        let met = thresholds_met(&t, &obs);
        assert_eq!(met.len(), 1);
        assert_eq!(met[0].signal, Signal::NodeFsAvailable);
        // Exactly at the threshold is not below it.
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 100,
                capacity: 1000,
            },
        );
        assert!(thresholds_met(&t, &obs).is_empty());
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available: (50 * MI) as i64,
                capacity: 1 << 30,
            },
        );
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 10,
                capacity: 1000,
            },
        );
        let met = thresholds_met(&t, &obs);
        assert_eq!(met.len(), 2);
        // Memory is reclaimed first.
        assert_eq!(
            to_reclaim(&met).map(|t| t.signal),
            Some(Signal::MemoryAvailable)
        );
    }

    #[test]
    fn conditions_stay_on_for_the_transition_period() {
        let t = parse_thresholds("nodefs.available<10%,memory.available<1Mi").expect("ok");
        let period = Duration::from_secs(300);
        let mut clock = ConditionClock::default();
        let start = Instant::now();
        assert!(clock.observe(&[], start, period).is_empty());
        let disk = vec![t[0].clone()];
        assert_eq!(clock.observe(&disk, start, period), ["DiskPressure"]);
        let later = start + Duration::from_secs(200);
        assert_eq!(clock.observe(&[], later, period), ["DiskPressure"]);
        let both = vec![t[1].clone(), t[0].clone()];
        assert_eq!(
            clock.observe(&both, later, period),
            ["MemoryPressure", "DiskPressure"]
        );
        let after = later + Duration::from_secs(301);
        assert!(clock.observe(&[], after, period).is_empty());
        // A zero period follows the observations.
        let mut quick = ConditionClock::default();
        assert_eq!(
            quick.observe(&disk, start, Duration::ZERO),
            ["DiskPressure"]
        );
        assert!(quick
            .observe(&[], start + Duration::from_millis(1), Duration::ZERO)
            .is_empty());
    }

    #[test]
    fn memory_ranking_puts_pods_over_their_requests_first_then_priority_then_usage() {
        let mut c = vec![
            // Guaranteed, within its request.
            Candidate {
                pod: pod("guaranteed", 0, Some("500Mi")),
                usage: using(100 * MI, 0),
            },
            // BestEffort, small.
            Candidate {
                pod: pod("small", 0, None),
                usage: using(10 * MI, 0),
            },
            // BestEffort, big.
            Candidate {
                pod: pod("big", 0, None),
                usage: using(300 * MI, 0),
            },
            // BestEffort but important.
            Candidate {
                pod: pod("important", 1000, None),
                usage: using(900 * MI, 0),
            },
            // Over its request.
            Candidate {
                pod: pod("over", 0, Some("100Mi")),
                usage: using(150 * MI, 0),
            },
            // No stats at all.
            Candidate {
                pod: pod("unknown", 0, Some("1Gi")),
                usage: None,
            },
        ];
        rank(&mut c, Signal::MemoryAvailable);
        assert_eq!(
            names(&c),
            ["unknown", "big", "over", "small", "important", "guaranteed"]
        );
    }

    #[test]
    fn disk_ranking_uses_ephemeral_usage_and_pid_ranking_priority() {
        let mut c = vec![
            Candidate {
                pod: pod("quiet", 0, Some("100Mi")),
                usage: using(0, MI),
            },
            Candidate {
                pod: pod("writer", 0, Some("100Mi")),
                usage: using(0, 50 * MI),
            },
            Candidate {
                pod: pod("low", -5, None),
                usage: using(0, 0),
            },
        ];
        rank(&mut c, Signal::NodeFsAvailable);
        // Everyone with usage exceeds a zero ephemeral-storage request; "low" (zero usage)
        // does not, so it goes last despite its priority.
        assert_eq!(names(&c), ["writer", "quiet", "low"]);
        rank(&mut c, Signal::PidAvailable);
        assert_eq!(names(&c)[0], "low");
    }

    #[test]
    fn messages_say_what_ran_low_and_who_used_it() {
        let t = parse_thresholds("memory.available<100Mi").expect("ok");
        let mut obs = Observations::new();
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available: 51200 * 1024,
                capacity: 1 << 30,
            },
        );
        let p = pod("hog", 0, None);
        let m = eviction_message(
            Signal::MemoryAvailable,
            &p,
            using(200 * MI, 0).as_ref(),
            &t,
            &obs,
        );
        assert_eq!(
            m,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container c was using 200Mi, request is 0, has larger consumption of memory. "
        );
        let within = pod("ok", 0, Some("500Mi"));
        let m = eviction_message(
            Signal::MemoryAvailable,
            &within,
            using(200 * MI, 0).as_ref(),
            &t,
            &obs,
        );
        assert_eq!(
            m,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        );
        let disk = parse_thresholds("nodefs.available<10%").expect("ok");
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 1000 * 1024 + 1,
                capacity: 100 * 1024 * 1024,
            },
        );
        let m = eviction_message(
            Signal::NodeFsAvailable,
            &p,
            using(0, 3 * MI).as_ref(),
            &disk,
            &obs,
        );
        assert_eq!(
            m,
            "The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, \
             available: 1024001. Container c was using 3Mi, request is 0, has larger consumption \
             of ephemeral-storage. "
        );
    }

    #[test]
    fn admission_under_pressure_follows_kubelet() {
        let best_effort_pod = pod("be", 0, None);
        let guaranteed = pod("g", 0, Some("10Mi"));
        assert!(best_effort(&best_effort_pod) && !best_effort(&guaranteed));
        assert_eq!(admit(&best_effort_pod, &[]), Ok(()));
        assert_eq!(
            admit(&best_effort_pod, &["MemoryPressure"]),
            Err("The node had condition: [MemoryPressure]. ".to_string())
        );
        assert_eq!(admit(&guaranteed, &["MemoryPressure"]), Ok(()));
        assert_eq!(
            admit(&guaranteed, &["MemoryPressure", "DiskPressure"]),
            Err("The node had condition: [MemoryPressure DiskPressure]. ".to_string())
        );
        let mut tolerant = best_effort_pod.clone();
        if let Some(spec) = tolerant.spec.as_mut() {
            spec.tolerations = Some(vec![Toleration {
                key: Some("node.kubernetes.io/memory-pressure".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]);
        }
        assert_eq!(admit(&tolerant, &["MemoryPressure"]), Ok(()));
        assert!(admit(&tolerant, &["DiskPressure"]).is_err());
        let critical = pod("critical", 2_000_001_000, None);
        assert_eq!(admit(&critical, &["DiskPressure"]), Ok(()));
    }

    #[test]
    fn requests_count_init_containers_and_overhead() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"memory": "100Mi"}}},
                    {"name": "b", "resources": {"requests": {"memory": "50Mi"}}},
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"memory": "200Mi"}}}],
                "overhead": {"memory": "1Mi"},
            }
        }))
        .expect("pod");
        assert_eq!(pod_request(&p, "memory"), (201 * MI) as i128);
        assert_eq!(pod_request(&p, "ephemeral-storage"), 0);
    }

    #[test]
    fn dir_usage_counts_blocks_and_inodes() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 64 * 1024]).expect("write");
        let (bytes, inodes) = dir_usage(dir.path()).expect("usage");
        assert_eq!(inodes, 2);
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(dir_usage(&dir.path().join("missing")), None);
    }
}
