//! The node's resource usage for `metrics.k8s.io` (what kubelet's summary API and
//! metrics-server give `kubectl top` and the HorizontalPodAutoscaler): a sample every
//! `--metrics-interval` (15 s, metrics-server's resolution; the first a few seconds after
//! start), sent as a [`NodeUsageReport`] through [`crate::client::metrics`].
//!
//! - Containers: every running container of the runtime; CPU is the rate of its cgroup's
//!   cumulative CPU time between two samples (for a container first seen, since it
//!   started, as metrics-server does for containers started between scrapes); memory is
//!   the cgroup's working set ([`crate::runtime::cgroup::Hierarchies::usage`]). The pod a
//!   container belongs to comes from the runtime alone: the container id holds the pod uid
//!   and container name, the CRI log directory `<namespace>_<pod>_<uid>` the pod's name.
//! - The node: CPU from the busy time in `/proc/stat` (everything but idle and iowait),
//!   memory as MemTotal − MemAvailable of `/proc/meminfo`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::host::parse_meminfo;
use super::pods::plan::parse_container_id;
use crate::client::metrics::{self, ContainerMetrics, NodeUsageReport, PodUsage};
use crate::runtime::cgroup::{CgroupUsage, Hierarchies};
use crate::runtime::{ContainerState, Runtime, Status};

/// How soon after start the first report goes out (the first window).
pub const FIRST_WINDOW: Duration = Duration::from_secs(3);

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// The shortest time since its start over which a container first seen gets a CPU rate
/// (shorter, and one CFS period's burst would look like a whole core); younger ones wait
/// for the next sample.
const MIN_FIRST_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Busy CPU time of the whole machine from `/proc/stat`'s `cpu` line, in clock ticks:
/// user, nice, system, irq, softirq and steal (guest time is inside user already).
pub fn parse_proc_stat_busy_ticks(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal guest guest_nice
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// `(namespace, pod, uid)` from a CRI log path `<root>/<ns>_<pod>_<uid>/<container>/<n>.log`
/// (namespaces, pod names and uids hold no `_`).
pub fn pod_of_log_path(log_path: &Path) -> Option<(String, String, String)> {
    let dir = log_path.parent()?.parent()?.file_name()?.to_str()?;
    let mut parts = dir.split('_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || ns.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some((ns.to_string(), pod.to_string(), uid.to_string()))
}

/// One running container as sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub started_at: Option<DateTime<Utc>>,
    pub usage: CgroupUsage,
}

/// The CPU rate in nano-cores between `(then, then_ns)` and `(now, now_ns)`.
fn rate(then: DateTime<Utc>, then_ns: u64, now: DateTime<Utc>, now_ns: u64) -> Option<i128> {
    let elapsed = (now - then).num_nanoseconds()?;
    if elapsed <= 0 || now_ns < then_ns {
        return None;
    }
    Some(i128::from(now_ns - then_ns) * NANOS_PER_SECOND / i128::from(elapsed))
}

/// Cumulative readings between samples, and the report they make.
#[derive(Debug, Default)]
pub struct Sampler {
    /// When the node was last sampled and its busy CPU time then (ns).
    node: Option<(DateTime<Utc>, u64)>,
    /// The last cumulative CPU time of each container id.
    containers: HashMap<String, (DateTime<Utc>, u64)>,
}

impl Sampler {
    /// Take the readings of `now`: the node's busy CPU time (ns) and memory in use, and
    /// its running containers. Returns the report over the window since the previous
    /// sample (none for the first).
    pub fn report(
        &mut self,
        now: DateTime<Utc>,
        node_cpu_ns: u64,
        node_memory_bytes: u64,
        samples: &[ContainerSample],
    ) -> Option<NodeUsageReport> {
        let previous = self.node.replace((now, node_cpu_ns));
        let mut pods: BTreeMap<(String, String), Vec<ContainerMetrics>> = BTreeMap::new();
        let mut seen = HashMap::new();
        for s in samples {
            let cpu = match self.containers.get(&s.id) {
                Some(&(then, then_ns)) => rate(then, then_ns, now, s.usage.cpu_ns),
                None => s
                    .started_at
                    .filter(|started| now - *started >= MIN_FIRST_WINDOW)
                    .and_then(|started| rate(started, 0, now, s.usage.cpu_ns)),
            };
            seen.insert(s.id.clone(), (now, s.usage.cpu_ns));
            let Some(cpu) = cpu else { continue };
            pods.entry((s.namespace.clone(), s.pod.clone()))
                .or_default()
                .push(ContainerMetrics {
                    name: s.container.clone(),
                    usage: metrics::usage(cpu, i128::from(s.usage.working_set_bytes)),
                });
        }
        self.containers = seen;
        let (then, then_ns) = previous?;
        let node_cpu = rate(then, then_ns, now, node_cpu_ns)?;
        let window = (now - then).num_milliseconds() as f64 / 1000.0;
        Some(NodeUsageReport {
            api_version: Some("skiff.io/v1".into()),
            kind: Some("NodeUsageReport".into()),
            window_seconds: Some(window),
            usage: metrics::usage(node_cpu, i128::from(node_memory_bytes)),
            pods: pods
                .into_iter()
                .map(|((namespace, name), mut containers)| {
                    containers.sort_by(|a, b| a.name.cmp(&b.name));
                    PodUsage {
                        namespace,
                        name,
                        containers,
                    }
                })
                .collect(),
        })
    }
}

/// The running containers of `states` with their pods and cgroup usage; of several
/// running attempts of one container, the latest.
pub fn container_samples(
    states: &[ContainerState],
    hierarchies: &Hierarchies,
) -> Vec<ContainerSample> {
    let mut latest: BTreeMap<(String, String, String), (u32, ContainerSample)> = BTreeMap::new();
    for state in states {
        if state.status != Status::Running {
            continue;
        }
        let Some((uid, container, attempt)) = parse_container_id(&state.id) else {
            continue;
        };
        let Some((namespace, pod, log_uid)) = pod_of_log_path(&state.log_path) else {
            continue;
        };
        if log_uid != uid {
            continue;
        }
        let Some(usage) = hierarchies.usage(&state.cgroups_path) else {
            continue;
        };
        let sample = ContainerSample {
            id: state.id.clone(),
            namespace: namespace.clone(),
            pod: pod.clone(),
            container: container.to_string(),
            started_at: DateTime::parse_from_rfc3339(&state.started_at)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            usage,
        };
        let key = (namespace, pod, container.to_string());
        match latest.get(&key) {
            Some((a, _)) if *a > attempt => {}
            _ => {
                latest.insert(key, (attempt, sample));
            }
        }
    }
    latest.into_values().map(|(_, s)| s).collect()
}

/// The node's busy CPU time (ns) and memory in use (bytes), from /proc.
fn node_readings() -> Option<(u64, u64)> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_second = u64::try_from(ticks_per_second).ok().filter(|t| *t > 0)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let busy_ns =
        parse_proc_stat_busy_ticks(&stat)?.saturating_mul(1_000_000_000) / ticks_per_second;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let (total, available) = parse_meminfo(&meminfo)?;
    Some((busy_ns, total.saturating_sub(available)))
}

/// Report the node's usage every `interval` (the first after [`FIRST_WINDOW`]), forever;
/// not at all for a zero interval.
pub async fn run(client: kube::Client, node: String, runtime: Arc<Runtime>, interval: Duration) {
    if interval.is_zero() {
        tracing::info!("resource usage reporting is off (--metrics-interval 0)");
        return;
    }
    let hierarchies = match Hierarchies::read() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "no cgroup mounts: container usage is not reported");
            Hierarchies::default()
        }
    };
    tracing::debug!(?hierarchies, "cgroup hierarchies for resource usage");
    let mut sampler = Sampler::default();
    let mut first = true;
    loop {
        let states = match runtime.list().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "listing containers for usage");
                Vec::new()
            }
        };
        let samples = container_samples(&states, &hierarchies);
        match node_readings() {
            Some((cpu_ns, memory)) => {
                if let Some(report) = sampler.report(Utc::now(), cpu_ns, memory, &samples) {
                    if let Err(e) = metrics::send_usage_report(&client, &node, &report).await {
                        tracing::debug!(error = %e, "sending usage report");
                    }
                }
            }
            None => tracing::warn!("cannot read /proc/stat or /proc/meminfo for node usage"),
        }
        let wait = if first {
            FIRST_WINDOW.min(interval)
        } else {
            interval
        };
        first = false;
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("time")
    }

    fn sample(id: &str, pod: &str, container: &str, cpu_ns: u64, mem: u64) -> ContainerSample {
        ContainerSample {
            id: id.into(),
            namespace: "default".into(),
            pod: pod.into(),
            container: container.into(),
            started_at: Some(t(0)),
            usage: CgroupUsage {
                cpu_ns,
                working_set_bytes: mem,
            },
        }
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat_busy_ticks(stat), Some(161));
        assert_eq!(parse_proc_stat_busy_ticks("cpu  1 2\n"), None);
        assert_eq!(parse_proc_stat_busy_ticks("cpu  x 1 2 3\n"), None);
    }

    #[test]
    fn pods_from_log_paths() {
        let p = PathBuf::from("/var/log/pods/kube-system_coredns-5d_0a1b-2c/coredns/3.log");
        assert_eq!(
            pod_of_log_path(&p),
            Some(("kube-system".into(), "coredns-5d".into(), "0a1b-2c".into()))
        );
        assert_eq!(pod_of_log_path(Path::new("/x/a_b/c/0.log")), None);
        assert_eq!(pod_of_log_path(Path::new("")), None);
    }

    #[test]
    fn rates_between_samples_and_since_start() {
        let mut s = Sampler::default();
        // First sample: no window for the node yet.
        let first = [sample("u1_busy_0", "busy", "busy", 5_000_000_000, 1 << 20)];
        assert_eq!(s.report(t(10), 1_000_000_000, 100 << 20, &first), None);
        // 15 s later: the busy container used 15 s of CPU (1 core), the node 30 s (2).
        let second = [
            sample("u1_busy_0", "busy", "busy", 20_000_000_000, 3 << 20),
            // Started at t(0), first seen now: 2.5 s over 25 s.
            sample("u2_idle_0", "idle", "idle", 2_500_000_000, 512 << 10),
        ];
        let r = s
            .report(t(25), 31_000_000_000, 200 << 20, &second)
            .expect("a report");
        assert_eq!(r.window_seconds, Some(15.0));
        assert_eq!(r.usage["cpu"], "2");
        assert_eq!(r.usage["memory"], "200Mi");
        assert_eq!(r.pods.len(), 2);
        assert_eq!(r.pods[0].name, "busy");
        assert_eq!(r.pods[0].containers[0].usage["cpu"], "1");
        assert_eq!(r.pods[0].containers[0].usage["memory"], "3Mi");
        assert_eq!(r.pods[1].containers[0].usage["cpu"], "100m");
        // A container that went away is forgotten; a counter that went backwards (a
        // reused id) gives no rate rather than a wrong one.
        let third = [sample("u2_idle_0", "idle", "idle", 1, 0)];
        let r = s
            .report(t(40), 31_000_000_000, 0, &third)
            .expect("a report");
        assert!(r.pods.is_empty(), "{r:?}");
        assert_eq!(r.usage["cpu"], "0");
        assert!(!s.containers.contains_key("u1_busy_0"));

        // A container started half a second ago waits for the next sample.
        let mut young = sample("u3_new_0", "new", "new", 400_000_000, 1 << 20);
        young.started_at = Some(t(41) - chrono::TimeDelta::milliseconds(500));
        let r = s.report(t(41), 31_000_000_000, 0, &[young.clone()]);
        assert!(r.expect("a report").pods.is_empty());
        young.usage.cpu_ns = 1_900_000_000;
        let r = s
            .report(t(56), 31_000_000_000, 0, &[young])
            .expect("a report");
        assert_eq!(r.pods[0].containers[0].usage["cpu"], "100m");
    }

    #[test]
    fn samples_only_running_containers_latest_attempt() {
        let root = tempfile::tempdir().expect("tempdir");
        let h = Hierarchies {
            cpuacct: Some(root.path().join("cpuacct")),
            memory: Some(root.path().join("memory")),
            unified: None,
        };
        let state = |id: &str, status: Status, uid_in_log: &str| {
            let cg = format!("/skiff/podu1/{id}");
            for (dir, file, text) in [
                ("cpuacct", "cpuacct.usage", "7"),
                ("memory", "memory.usage_in_bytes", "4096"),
                ("memory", "memory.stat", "total_inactive_file 0\n"),
            ] {
                let d = root.path().join(dir).join(cg.trim_start_matches('/'));
                std::fs::create_dir_all(&d).expect("mkdir");
                std::fs::write(d.join(file), text).expect("write");
            }
            ContainerState {
                id: id.into(),
                status,
                pid: 1,
                shim_pid: 1,
                started_at: "2026-01-01T00:00:00.5Z".into(),
                exit: None,
                log_path: PathBuf::from(format!("/logs/ns_web_{uid_in_log}/app/0.log")),
                cgroups_path: cg,
                image: String::new(),
            }
        };
        let states = [
            state("u1_app_0", Status::Running, "u1"),
            state("u1_app_1", Status::Running, "u1"),
            state("u1_side_0", Status::Exited, "u1"),
            state("u1_other_0", Status::Running, "u9"),
        ];
        let samples = container_samples(&states, &h);
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].id, "u1_app_1");
        assert_eq!(samples[0].namespace, "ns");
        assert_eq!(samples[0].pod, "web");
        assert_eq!(samples[0].usage.cpu_ns, 7);
        assert_eq!(samples[0].usage.working_set_bytes, 4096);
        assert!(samples[0].started_at.is_some());
    }
}
