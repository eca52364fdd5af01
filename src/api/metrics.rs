//! The resource metrics API (`metrics.k8s.io/v1beta1`) served by the API server itself,
//! as metrics-server would serve it through aggregation: `NodeMetrics` and `PodMetrics`
//! for `kubectl top` and the HorizontalPodAutoscaler controller.
//!
//! The metrics live only in memory, in a [`MetricsStore`] of the latest report of each node;
//! nothing is written to the store, and a node that stops reporting drops out of the
//! metrics after [`REPORT_TTL`]. The public group is read-only (get, list; label selectors
//! as metrics-server applies them, against the labels the node or pod has now); metrics of
//! pods or nodes that no longer exist are not served.
//!
//! **How nodes report.** A node (the simulated kubelet of `skiff simulate` today, skiff's
//! own kubelet later) sends its usage and its pods' usage with
//! `PUT /apis/skiff.io/v1/nodemetrics/{node}`, authenticated like every request, a JSON
//! [`NodeUsageReport`]:
//!
//! ```json
//! {"apiVersion": "skiff.io/v1", "kind": "NodeUsageReport", "windowSeconds": 15,
//!  "usage": {"cpu": "250m", "memory": "1Gi"},
//!  "pods": [{"namespace": "default", "name": "web-1",
//!            "containers": [{"name": "nginx", "usage": {"cpu": "100m", "memory": "20Mi"}}]}]}
//! ```
//!
//! The report replaces the node's previous one (pods missing from it have no metrics any
//! more); the server stamps it with the time it arrived. The answer is the node's
//! `NodeMetrics`. The path is skiff-internal and not advertised in discovery.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{Method, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::{self, Body};
use super::cache::{CachedObject, WatchCache};
use super::objects::object_key;
use super::request::Query;
use super::selector::LabelSelector;
use super::status::{ApiError, ApiResult};
use crate::apimachinery::quantity::parse_quantity;
use crate::registry::resources;

/// The served group and version.
pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";
/// Where nodes send their reports (followed by `/{node}`).
pub const REPORT_PREFIX: &str = "/apis/skiff.io/v1/nodemetrics";
/// How long a node's report counts (metrics-server drops nodes it cannot scrape too).
pub const REPORT_TTL: Duration = Duration::from_secs(120);
/// The window a report claims when it names none.
const DEFAULT_WINDOW_SECONDS: f64 = 15.0;

/// Resource name to quantity (`cpu`, `memory`), as in metrics-server's JSON.
pub type Usage = BTreeMap<String, String>;
/// Object labels.
pub type Labels = BTreeMap<String, String>;

/// What a node sends: its own usage and its running pods' usage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsageReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The measurement window in seconds (how far back the averages reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    pub usage: Usage,
    #[serde(default)]
    pub pods: Vec<PodUsage>,
}

/// One pod's usage inside a [`NodeUsageReport`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerMetrics>,
}

/// metrics.k8s.io `ContainerMetrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: Usage,
}

/// The metadata metrics-server puts on NodeMetrics and PodMetrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// metrics.k8s.io `NodeMetrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    pub metadata: MetricsMeta,
    /// RFC 3339: the end of the measurement window.
    pub timestamp: String,
    /// A Go duration (`15s`).
    pub window: String,
    pub usage: Usage,
}

/// metrics.k8s.io `PodMetrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    pub metadata: MetricsMeta,
    pub timestamp: String,
    pub window: String,
    pub containers: Vec<ContainerMetrics>,
}

/// metrics.k8s.io `PodMetricsList` (what the HPA controller reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsList {
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

struct StoredReport {
    received: Instant,
    timestamp: DateTime<Utc>,
    window_seconds: f64,
    report: NodeUsageReport,
}

/// The latest report of every node, in memory only.
#[derive(Default)]
pub struct MetricsStore {
    reports: RwLock<HashMap<String, StoredReport>>,
}

/// Whether `path` belongs to this module (the metrics group or the report path).
pub fn handles(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p == "/apis/metrics.k8s.io"
        || p.starts_with("/apis/metrics.k8s.io/")
        || p == REPORT_PREFIX
        || p.starts_with(&format!("{REPORT_PREFIX}/"))
}

/// Whether a request to `path` carries a body this module reads.
pub fn wants_body(path: &str, method: &Method) -> bool {
    path.starts_with(REPORT_PREFIX) && matches!(*method, Method::PUT | Method::POST)
}

fn go_duration(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}s", seconds as i64)
    } else {
        let n = format!("{seconds:.3}");
        format!("{}s", n.trim_end_matches('0'))
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn labels_of(obj: &CachedObject) -> Option<Labels> {
    let labels = obj.labels()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

fn check_usage(usage: &Usage, what: &str) -> ApiResult<()> {
    for (resource, q) in usage {
        parse_quantity(q)
            .map_err(|e| ApiError::BadRequest(format!("{what}: usage of {resource} {q:?}: {e}")))?;
    }
    Ok(())
}

/// The object of the cache at `key`, if present.
fn cached(cache: &WatchCache, key: &str) -> Option<std::sync::Arc<CachedObject>> {
    cache.get(key)
}

fn node_key(name: &str) -> Option<String> {
    resources::find("", "v1", "nodes").map(|r| object_key(r, None, name))
}

fn pod_key(namespace: &str, name: &str) -> Option<String> {
    resources::find("", "v1", "pods").map(|r| object_key(r, Some(namespace), name))
}

impl MetricsStore {
    /// Take a node's report (replacing its previous one).
    pub fn report(&self, node: &str, report: NodeUsageReport, now: DateTime<Utc>) {
        let window_seconds = report
            .window_seconds
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(DEFAULT_WINDOW_SECONDS);
        if let Ok(mut reports) = self.reports.write() {
            reports.retain(|_, r| r.received.elapsed() < REPORT_TTL);
            reports.insert(
                node.to_string(),
                StoredReport {
                    received: Instant::now(),
                    timestamp: now,
                    window_seconds,
                    report,
                },
            );
        }
    }

    fn with_fresh<T>(&self, f: impl FnOnce(Vec<(&String, &StoredReport)>) -> T) -> T {
        let reports = self.reports.read().unwrap_or_else(|p| p.into_inner());
        let mut fresh: Vec<_> = reports
            .iter()
            .filter(|(_, r)| r.received.elapsed() < REPORT_TTL)
            .collect();
        fresh.sort_by(|a, b| a.0.cmp(b.0));
        f(fresh)
    }

    /// NodeMetrics of the nodes that reported recently and still exist.
    pub fn nodes(&self, cache: &WatchCache) -> Vec<NodeMetrics> {
        self.with_fresh(|fresh| {
            fresh
                .into_iter()
                .filter_map(|(name, r)| {
                    let node = cached(cache, &node_key(name)?)?;
                    Some(NodeMetrics {
                        kind: "NodeMetrics".into(),
                        api_version: GROUP_VERSION.into(),
                        metadata: MetricsMeta {
                            name: name.clone(),
                            namespace: None,
                            creation_timestamp: Some(rfc3339(Utc::now())),
                            labels: labels_of(&node),
                        },
                        timestamp: rfc3339(r.timestamp),
                        window: go_duration(r.window_seconds),
                        usage: r.report.usage.clone(),
                    })
                })
                .collect()
        })
    }

    /// PodMetrics of pods (in `namespace`, or everywhere) whose node reported recently and
    /// that still exist, sorted by namespace and name.
    pub fn pods(&self, cache: &WatchCache, namespace: Option<&str>) -> Vec<PodMetrics> {
        let mut out: Vec<PodMetrics> = self.with_fresh(|fresh| {
            fresh
                .into_iter()
                .flat_map(|(_, r)| r.report.pods.iter().map(move |p| (r, p)))
                .filter(|(_, p)| namespace.is_none_or(|ns| p.namespace == ns))
                .filter_map(|(r, p)| {
                    let pod = cached(cache, &pod_key(&p.namespace, &p.name)?)?;
                    Some(PodMetrics {
                        kind: "PodMetrics".into(),
                        api_version: GROUP_VERSION.into(),
                        metadata: MetricsMeta {
                            name: p.name.clone(),
                            namespace: Some(p.namespace.clone()),
                            creation_timestamp: Some(rfc3339(Utc::now())),
                            labels: labels_of(&pod),
                        },
                        timestamp: rfc3339(r.timestamp),
                        window: go_duration(r.window_seconds),
                        containers: p.containers.clone(),
                    })
                })
                .collect()
        });
        out.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        out
    }

    /// Serve a request under [`handles`]: the read-only metrics group and the report path.
    pub fn serve(
        &self,
        cache: &WatchCache,
        path: &str,
        method: &Method,
        q: &Query,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        if let ["apis", "skiff.io", "v1", "nodemetrics", node] = parts.as_slice() {
            if !matches!(*method, Method::PUT | Method::POST) {
                return Err(ApiError::MethodNotAllowed(format!(
                    "the server does not allow this method on the requested resource ({method} nodemetrics.skiff.io)"
                )));
            }
            return self.take_report(cache, node, bytes);
        }
        let read_only = || {
            ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method} {GROUP})"
            ))
        };
        match parts.as_slice() {
            ["apis", "metrics.k8s.io"] if *method == Method::GET => {
                let mut g = group_json();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                return Ok(body::json(200, &g));
            }
            ["apis", "metrics.k8s.io", "v1beta1"] if *method == Method::GET => {
                return Ok(body::json(200, &resource_list()));
            }
            ["apis", "metrics.k8s.io", "v1beta1", ..] => {}
            _ => return Err(ApiError::NoRoute),
        }
        if *method != Method::GET {
            return Err(read_only());
        }
        if q.watch {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource (watch {GROUP})"
            )));
        }
        let selector = match q.label_selector.as_deref() {
            Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let selected = |labels: &Option<Labels>| {
            let map: serde_json::Map<String, Value> = labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            selector.matches(Some(&map))
        };
        let not_found = |plural: &str, name: &str| ApiError::NotFound {
            qualified: format!("{plural}.{GROUP}"),
            name: name.to_string(),
        };
        match &parts[3..] {
            ["nodes"] => {
                let items: Vec<Value> = self
                    .nodes(cache)
                    .iter()
                    .filter(|n| selected(&n.metadata.labels))
                    .map(to_value)
                    .collect();
                Ok(body::json(200, &list("NodeMetricsList", items)))
            }
            ["nodes", name] => {
                let n = self
                    .nodes(cache)
                    .into_iter()
                    .find(|n| n.metadata.name == *name)
                    .ok_or_else(|| not_found("nodes", name))?;
                Ok(body::json(200, &to_value(&n)))
            }
            ["pods"] => Ok(body::json(
                200,
                &list("PodMetricsList", self.pod_items(cache, None, &selected)),
            )),
            ["namespaces", ns, "pods"] => Ok(body::json(
                200,
                &list("PodMetricsList", self.pod_items(cache, Some(ns), &selected)),
            )),
            ["namespaces", ns, "pods", name] => {
                let p = self
                    .pods(cache, Some(ns))
                    .into_iter()
                    .find(|p| p.metadata.name == *name)
                    .ok_or_else(|| not_found("pods", name))?;
                Ok(body::json(200, &to_value(&p)))
            }
            _ => Err(ApiError::NoRoute),
        }
    }

    fn pod_items(
        &self,
        cache: &WatchCache,
        namespace: Option<&str>,
        selected: &dyn Fn(&Option<Labels>) -> bool,
    ) -> Vec<Value> {
        self.pods(cache, namespace)
            .iter()
            .filter(|p| selected(&p.metadata.labels))
            .map(to_value)
            .collect()
    }

    fn take_report(
        &self,
        cache: &WatchCache,
        node: &str,
        bytes: &[u8],
    ) -> ApiResult<Response<Body>> {
        let report: NodeUsageReport = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("decoding NodeUsageReport: {e}")))?;
        check_usage(&report.usage, &format!("node {node}"))?;
        for p in &report.pods {
            for c in &p.containers {
                check_usage(
                    &c.usage,
                    &format!("container {} of pod {}/{}", c.name, p.namespace, p.name),
                )?;
            }
        }
        let known = node_key(node).is_some_and(|k| cache.get(&k).is_some());
        if !known {
            return Err(ApiError::NotFound {
                qualified: "nodes".into(),
                name: node.to_string(),
            });
        }
        self.report(node, report, Utc::now());
        let n = self
            .nodes(cache)
            .into_iter()
            .find(|n| n.metadata.name == node)
            .map(|n| to_value(&n))
            .unwrap_or(Value::Null);
        Ok(body::json(200, &n))
    }
}

/// A metrics object as JSON (cannot fail: plain strings and maps).
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// The group as an `/apis` (legacy) entry.
pub fn group_json() -> Value {
    let v = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The group as an aggregated discovery (`apidiscovery.k8s.io/v2`) item.
pub fn aggregated_group() -> Value {
    let row = |plural: &str, kind: &str, scope: &str| {
        json!({
            "resource": plural,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": GROUP},
        "versions": [{
            "version": VERSION,
            "resources": [row("nodes", "NodeMetrics", "Cluster"), row("pods", "PodMetrics", "Namespaced")],
            "freshness": "Current",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_as_documented() {
        let doc = r#"{"apiVersion": "skiff.io/v1", "kind": "NodeUsageReport", "windowSeconds": 15,
            "usage": {"cpu": "250m", "memory": "1Gi"},
            "pods": [{"namespace": "default", "name": "web-1",
                      "containers": [{"name": "nginx", "usage": {"cpu": "100m", "memory": "20Mi"}}]}]}"#;
        let r: NodeUsageReport = serde_json::from_str(doc).unwrap();
        assert_eq!(r.window_seconds, Some(15.0));
        assert_eq!(r.usage["cpu"], "250m");
        assert_eq!(r.pods[0].containers[0].usage["memory"], "20Mi");
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(15.0), "15s");
        assert_eq!(go_duration(1.5), "1.5s");
    }

    #[test]
    fn reports_expire() {
        let store = MetricsStore::default();
        store.report("sim-0", NodeUsageReport::default(), Utc::now());
        store.report("sim-1", NodeUsageReport::default(), Utc::now());
        if let Some(old) = Instant::now().checked_sub(REPORT_TTL + Duration::from_secs(1)) {
            if let Ok(mut r) = store.reports.write() {
                if let Some(r) = r.get_mut("sim-1") {
                    r.received = old;
                }
            }
            let fresh: Vec<String> =
                store.with_fresh(|f| f.iter().map(|(n, _)| (*n).clone()).collect());
            assert_eq!(fresh, ["sim-0"]);
        }
    }

    #[test]
    fn paths_owned_by_the_module() {
        assert!(handles("/apis/metrics.k8s.io"));
        assert!(handles("/apis/metrics.k8s.io/v1beta1/nodes"));
        assert!(handles("/apis/skiff.io/v1/nodemetrics/sim-0"));
        assert!(!handles("/apis/metrics.k8s.io.evil/v1"));
        assert!(!handles("/apis/apps/v1"));
    }

    #[test]
    fn aggregated_item_names_both_resources() {
        let g = aggregated_group();
        assert_eq!(g["metadata"]["name"], "metrics.k8s.io");
        let rs = g["versions"][0]["resources"].as_array().unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[1]["responseKind"]["kind"], "PodMetrics");
    }
}
