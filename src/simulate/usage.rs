//! Fake resource usage: every `--metrics-interval` each simulated node reports the CPU and
//! memory its running pods use, and its own, to the API server's metrics store
//! (`PUT /apis/skiff.io/v1/nodemetrics/{node}`, see [`crate::api::metrics`]), so that
//! `kubectl top` and the HorizontalPodAutoscaler have numbers to work with.
//!
//! A pod uses what its annotations say, for the whole pod, split evenly among its
//! containers: `simulate.skiff.io/cpu-usage` (default 1m per container) and
//! `simulate.skiff.io/memory-usage` (default 4Mi per container). A node uses the sum of its
//! running pods plus a base of 100m CPU and 256Mi memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use super::nodes::Fleet;
use super::{CPU_USAGE_ANNOTATION, MEMORY_USAGE_ANNOTATION};
use crate::apimachinery::quantity::parse_quantity;
use crate::client::metrics::{self, ContainerMetrics, NodeUsageReport, PodUsage};

const NANO: i128 = 1_000_000_000;
/// Per-container defaults when the pod has no usage annotation.
const DEFAULT_CPU_NANO: i128 = NANO / 1000; // 1m
const DEFAULT_MEMORY_BYTES: i128 = 4 * 1024 * 1024; // 4Mi
/// What a node uses besides its pods.
const NODE_BASE_CPU_NANO: i128 = 100 * NANO / 1000; // 100m
const NODE_BASE_MEMORY_BYTES: i128 = 256 * 1024 * 1024; // 256Mi

pub use crate::client::metrics::parse_interval;

/// The per-container usage of a pod: the annotation (a pod total) split evenly, the
/// remainder going to the first containers; the default per container without it.
fn split(total: Option<&str>, containers: usize, default_each: i128, scale: i128) -> Vec<i128> {
    let n = containers.max(1) as i128;
    match total.and_then(|t| parse_quantity(t).ok()) {
        Some(q) => {
            let each = q.nano.max(0) / n;
            let rest = q.nano.max(0) % n;
            (0..n).map(|i| each + i128::from(i < rest)).collect()
        }
        None => (0..n).map(|_| default_each * scale).collect(),
    }
}

fn cpu(nano: i128) -> String {
    metrics::cpu_quantity(nano)
}

fn memory(nano: i128) -> String {
    // Whole bytes, in binary units where they divide (4Mi, 1Gi).
    metrics::memory_quantity((nano + NANO - 1) / NANO)
}

fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The usage one pod reports, and its CPU and memory totals in nano-units.
pub(crate) fn pod_usage(pod: &Pod) -> (PodUsage, i128, i128) {
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone())
        .collect();
    let annotations = pod.annotations();
    let cpus = split(
        annotations.get(CPU_USAGE_ANNOTATION).map(String::as_str),
        names.len(),
        DEFAULT_CPU_NANO,
        1,
    );
    let mems = split(
        annotations.get(MEMORY_USAGE_ANNOTATION).map(String::as_str),
        names.len(),
        DEFAULT_MEMORY_BYTES,
        NANO,
    );
    let containers = names
        .iter()
        .zip(cpus.iter().zip(mems.iter()))
        .map(|(name, (c, m))| ContainerMetrics {
            name: name.clone(),
            usage: BTreeMap::from([
                ("cpu".to_string(), cpu(*c)),
                ("memory".to_string(), memory(*m)),
            ]),
        })
        .collect();
    let usage = PodUsage {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        containers,
    };
    let total_cpu = if names.is_empty() {
        0
    } else {
        cpus.iter().sum()
    };
    let total_mem = if names.is_empty() {
        0
    } else {
        mems.iter().sum()
    };
    (usage, total_cpu, total_mem)
}

/// The report of `node` given every pod the simulator knows.
pub(crate) fn node_report<'a>(
    node: &str,
    pods: impl Iterator<Item = &'a Pod>,
    window: Duration,
) -> NodeUsageReport {
    let mut total_cpu = NODE_BASE_CPU_NANO;
    let mut total_mem = NODE_BASE_MEMORY_BYTES * NANO;
    let mut reports = Vec::new();
    for pod in pods {
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
        if !on_node || !is_running(pod) {
            continue;
        }
        let (usage, c, m) = pod_usage(pod);
        total_cpu += c;
        total_mem += m;
        reports.push(usage);
    }
    reports.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    NodeUsageReport {
        api_version: Some("skiff.io/v1".into()),
        kind: Some("NodeUsageReport".into()),
        window_seconds: Some(window.as_secs_f64()),
        usage: BTreeMap::from([
            ("cpu".to_string(), cpu(total_cpu)),
            ("memory".to_string(), memory(total_mem)),
        ]),
        pods: reports,
    }
}

/// Report every node's usage every `interval`, forever (not at all for a zero interval).
pub async fn run(client: kube::Client, fleet: Arc<Fleet>, interval: Duration) {
    if interval.is_zero() {
        tracing::info!("usage reporting is off (--metrics-interval 0)");
        return;
    }
    let (pods, writer): (Store<Pod>, _) = reflector::store();
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(stream.for_each(|_| async {}));
    let _ = pods.wait_until_ready().await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reports: Vec<(String, NodeUsageReport)> = {
            let state = pods.state();
            let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
            for p in &state {
                if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                    by_node.entry(node).or_default().push(p.as_ref());
                }
            }
            fleet
                .nodes
                .iter()
                .map(|n| {
                    let on_node = by_node.get(n.name.as_str()).into_iter().flatten().copied();
                    (n.name.clone(), node_report(&n.name, on_node, interval))
                })
                .collect()
        };
        for chunk in reports.chunks(16) {
            futures::future::join_all(chunk.iter().map(|(name, r)| send(&client, name, r))).await;
        }
    }
}

async fn send(client: &kube::Client, node: &str, report: &NodeUsageReport) {
    if let Err(e) = metrics::send_usage_report(client, node, report).await {
        tracing::debug!(%node, error = %e, "sending usage report");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(node: &str, containers: &[&str], annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "annotations": annotations},
            "spec": {"nodeName": node, "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
            "status": {"phase": "Running"},
        }))
        .unwrap()
    }

    #[test]
    fn annotation_is_split_among_containers() {
        let p = pod(
            "sim-0",
            &["a", "b"],
            json!({"simulate.skiff.io/cpu-usage": "300m", "simulate.skiff.io/memory-usage": "64Mi"}),
        );
        let (u, c, _) = pod_usage(&p);
        assert_eq!(u.containers[0].usage["cpu"], "150m");
        assert_eq!(u.containers[1].usage["cpu"], "150m");
        assert_eq!(u.containers[1].usage["memory"], "32Mi");
        assert_eq!(c, 300 * NANO / 1000);
    }

    #[test]
    fn defaults_are_per_container_and_node_adds_a_base() {
        let p = pod("sim-0", &["a", "b"], json!({}));
        let other = pod("sim-1", &["a"], json!({"simulate.skiff.io/cpu-usage": "5"}));
        let r = node_report("sim-0", [&p, &other].into_iter(), Duration::from_secs(1));
        assert_eq!(r.pods.len(), 1);
        assert_eq!(r.pods[0].containers[0].usage["cpu"], "1m");
        assert_eq!(r.pods[0].containers[0].usage["memory"], "4Mi");
        assert_eq!(r.usage["cpu"], "102m");
        assert_eq!(r.usage["memory"], "264Mi");
        assert_eq!(r.window_seconds, Some(1.0));
    }

    #[test]
    fn pods_that_are_not_running_use_nothing() {
        let mut p = pod("sim-0", &["a"], json!({"simulate.skiff.io/cpu-usage": "1"}));
        p.status = None;
        let r = node_report("sim-0", [&p].into_iter(), Duration::from_secs(1));
        assert!(r.pods.is_empty());
        assert_eq!(r.usage["cpu"], "100m");
    }
}
