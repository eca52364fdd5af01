//! What the scheduler reads from a pod, parsed once: the resources it asks of a node
//! (kube-scheduler's effective requests: regular containers summed, init containers taken
//! at their peak with the sidecars started before them, sidecars also counted alongside the
//! regular containers, plus the pod overhead), the host ports it binds, its controller owner
//! and its inter-pod (anti-)affinity terms.
//!
//! Pods already on nodes are parsed once, when the snapshot learns about them; the pod being
//! scheduled is parsed once per attempt into an [`Incoming`] view.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodAffinityTerm, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::apimachinery::labels::{matches, selector_matches};
use crate::apimachinery::quantity::parse_quantity;

/// CPU (millicores) the scorers assume for a container that requests none, so that
/// request-less pods still spread (upstream's `DefaultMilliCPURequest`).
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory (bytes) assumed likewise: 200 MiB (upstream's `DefaultMemoryRequest`).
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The host IP a port binds when `hostIP` is empty: every address.
pub(crate) const ANY_IP: &str = "0.0.0.0";

/// Amounts of the resources the scheduler accounts: cpu in millicores, memory and
/// ephemeral storage in bytes, extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, …)
/// in whole units. Quantities that do not parse count as zero (the API server validates
/// them, so that only happens to objects that bypassed it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) cpu: i64,
    pub(crate) memory: i64,
    pub(crate) ephemeral: i64,
    /// Non-zero extended resources, in first-seen order.
    pub(crate) scalars: Vec<(String, i64)>,
}

impl Resources {
    /// The amount of an extended resource (0 when absent).
    pub(crate) fn scalar(&self, name: &str) -> i64 {
        self.scalars
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let pos = match self.scalars.iter().position(|(n, _)| n == name) {
            Some(p) => p,
            None => {
                self.scalars.push((name.to_string(), 0));
                self.scalars.len() - 1
            }
        };
        &mut self.scalars[pos].1
    }

    pub(crate) fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.ephemeral += other.ephemeral;
        for (name, v) in &other.scalars {
            *self.scalar_mut(name) += v;
        }
    }

    pub(crate) fn subtract(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.ephemeral -= other.ephemeral;
        for (name, v) in &other.scalars {
            *self.scalar_mut(name) -= v;
        }
        self.scalars.retain(|(_, v)| *v != 0);
    }

    /// Raise every amount to at least `other`'s.
    fn raise_to(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral = self.ephemeral.max(other.ephemeral);
        for (name, v) in &other.scalars {
            let mine = self.scalar_mut(name);
            *mine = (*mine).max(*v);
        }
    }
}

fn milli(q: &Quantity) -> i64 {
    parse_quantity(&q.0).map_or(0, |q| q.milli_value())
}

fn whole(q: &Quantity) -> i64 {
    parse_quantity(&q.0).map_or(0, |q| q.value())
}

/// Whether the scheduler accounts `name` as an extended ("scalar") resource: a
/// domain-prefixed name (`nvidia.com/gpu`), huge pages, or attachable volumes.
pub(crate) fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || name.contains('/')
}

/// A `ResourceList` (requests, overhead, or a node's allocatable) as [`Resources`];
/// `pods` is not part of it (see [`allowed_pods`]).
pub(crate) fn resource_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut r = Resources::default();
    for (name, q) in list.into_iter().flatten() {
        match name.as_str() {
            "cpu" => r.cpu += milli(q),
            "memory" => r.memory += whole(q),
            "ephemeral-storage" => r.ephemeral += whole(q),
            n if is_scalar_resource(n) => {
                let v = whole(q);
                if v != 0 {
                    *r.scalar_mut(n) += v;
                }
            }
            _ => {}
        }
    }
    r
}

/// The `pods` entry of a node's allocatable list.
pub(crate) fn allowed_pods(list: Option<&BTreeMap<String, Quantity>>) -> i64 {
    list.and_then(|l| l.get("pods")).map_or(0, whole)
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = resource_list(list);
    if non_zero {
        let has = |k: &str| list.is_some_and(|l| l.contains_key(k));
        if !has("cpu") {
            r.cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective requests. With `non_zero`, a container that requests no cpu
/// (memory) counts as requesting the defaults above: the view the scorers use.
pub(crate) fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    // Init containers run one at a time, each next to the sidecars started before it;
    // sidecars keep running next to the regular containers.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut during = container_requests(c, non_zero);
        if is_sidecar(c) {
            total.add(&during);
            sidecars.add(&during);
            during = sidecars.clone();
        } else {
            during.add(&sidecars);
        }
        init_peak.raise_to(&during);
    }
    total.raise_to(&init_peak);
    total.add(&resource_list(spec.overhead.as_ref()));
    total
}

/// One host port a pod binds on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) protocol: String,
    pub(crate) ip: String,
    pub(crate) port: i32,
}

impl HostPort {
    /// Two bindings collide when protocol and port agree and either binds every address
    /// or both bind the same one.
    pub(crate) fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == ANY_IP || other.ip == ANY_IP || self.ip == other.ip)
    }
}

/// The host ports of the pod's containers and sidecars (ports without `hostPort` bind
/// nothing on the node).
pub(crate) fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&h| h > 0)?;
            let protocol = p
                .protocol
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP");
            let ip = p
                .host_ip
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(ANY_IP);
            Some(HostPort {
                protocol: protocol.to_string(),
                ip: ip.to_string(),
                port,
            })
        })
        .collect()
}

/// The uid of the pod's controller (the owner reference with `controller: true`).
pub(crate) fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
        .filter(|u| !u.is_empty())
}

/// A pod (anti-)affinity term, resolved against the pod that carries it: the namespaces
/// it looks in (its own when the term names none and has no namespace selector) and its
/// label selector with `matchLabelKeys` / `mismatchLabelKeys` folded in.
#[derive(Debug, Clone)]
pub(crate) struct AffinityTerm {
    namespaces: Vec<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    pub(crate) topology_key: String,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, ns: &str, labels: Option<&BTreeMap<String, String>>) -> Self {
        let listed = term.namespaces.as_ref().filter(|n| !n.is_empty());
        let namespaces = match (listed, &term.namespace_selector) {
            (None, None) => vec![ns.to_string()],
            (listed, _) => listed.cloned().unwrap_or_default(),
        };
        let selector = term.label_selector.clone().map(|mut sel| {
            let keys = [
                (term.match_label_keys.as_ref(), "In"),
                (term.mismatch_label_keys.as_ref(), "NotIn"),
            ];
            for (keys, op) in keys {
                for key in keys.into_iter().flatten() {
                    if let Some(v) = labels.and_then(|l| l.get(key)) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: key.clone(),
                                operator: op.to_string(),
                                values: Some(vec![v.clone()]),
                            },
                        );
                    }
                }
            }
            sel
        });
        AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.clone(),
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects a pod in `namespace` carrying `labels`; `ns_labels` are
    /// that namespace's labels (for a namespace selector).
    pub(crate) fn matches(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
        ns_labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let in_scope = self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| matches(s, ns_labels));
        in_scope && selector_matches(self.selector.as_ref(), labels)
    }
}

/// A pod's inter-pod affinity terms (weights as i64, ready to sum).
#[derive(Debug, Clone, Default)]
pub(crate) struct PodAffinity {
    pub(crate) required_affinity: Vec<AffinityTerm>,
    pub(crate) required_anti: Vec<AffinityTerm>,
    pub(crate) preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub(crate) preferred_anti: Vec<(i64, AffinityTerm)>,
}

impl PodAffinity {
    pub(crate) fn of(pod: &Pod) -> Self {
        let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return PodAffinity::default();
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let labels = pod.metadata.labels.as_ref();
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, ns, labels))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .filter(|t| t.weight != 0)
                    .map(|t| {
                        (
                            i64::from(t.weight),
                            AffinityTerm::new(&t.pod_affinity_term, ns, labels),
                        )
                    })
                    .collect::<Vec<_>>()
            };
        let aff = affinity.pod_affinity.as_ref();
        let anti = affinity.pod_anti_affinity.as_ref();
        PodAffinity {
            required_affinity: required(aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti: preferred(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// The pod being scheduled, parsed once per attempt.
pub(crate) struct Incoming<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) namespace: &'a str,
    pub(crate) labels: Option<&'a BTreeMap<String, String>>,
    pub(crate) requests: Resources,
    pub(crate) non_zero_cpu: i64,
    pub(crate) non_zero_memory: i64,
    pub(crate) ports: Vec<HostPort>,
    pub(crate) tolerations: &'a [Toleration],
    pub(crate) node_name: Option<&'a str>,
    pub(crate) owner_uid: Option<&'a str>,
    pub(crate) affinity: PodAffinity,
    pub(crate) preemption_never: bool,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(pod: &'a Pod) -> Self {
        let spec = pod.spec.as_ref();
        let non_zero = spec.map(|s| pod_requests(s, true)).unwrap_or_default();
        Incoming {
            pod,
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
            labels: pod.metadata.labels.as_ref(),
            requests: spec.map(|s| pod_requests(s, false)).unwrap_or_default(),
            non_zero_cpu: non_zero.cpu,
            non_zero_memory: non_zero.memory,
            ports: spec.map(host_ports).unwrap_or_default(),
            tolerations: spec
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            owner_uid: controller_uid(pod),
            affinity: PodAffinity::of(pod),
            preemption_never: spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never"),
        }
    }

    pub(crate) fn spec(&self) -> Option<&'a PodSpec> {
        self.pod.spec.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("valid pod spec")
    }

    #[test]
    fn requests_take_the_larger_of_containers_and_each_init_container_plus_overhead() {
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m", "memory": "50Mi"}}}
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
                {"name": "i2", "resources": {"requests": {"memory": "1Gi", "nvidia.com/gpu": "1"}}}
            ],
            "overhead": {"cpu": "10m", "memory": "1Mi"}
        }));
        let r = pod_requests(&s, false);
        assert_eq!(r.cpu, 1000 + 10);
        assert_eq!(r.memory, (1 << 30) + (1 << 20));
        assert_eq!(r.scalar("nvidia.com/gpu"), 1);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_containers() {
        let s = spec(json!({
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "500m"}}}],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "200m"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "600m"}}}
            ]
        }));
        // Steady state: app + proxy = 700m; during `migrate`: 600m + proxy = 800m.
        assert_eq!(pod_requests(&s, false).cpu, 800);
    }

    #[test]
    fn non_zero_view_defaults_missing_cpu_and_memory_only() {
        let s = spec(json!({"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "0", "memory": "64Mi"}}}
        ]}));
        let r = pod_requests(&s, true);
        assert_eq!(r.cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + (64 << 20));
        let actual = pod_requests(&s, false);
        assert_eq!((actual.cpu, actual.memory), (0, 64 << 20));
    }

    #[test]
    fn host_ports_default_protocol_and_address_and_conflict_like_kubelet_would() {
        let s = spec(json!({"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 9090}
        ]}]}));
        let ports = host_ports(&s);
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].protocol.as_str(), ports[0].ip.as_str()),
            ("TCP", ANY_IP)
        );
        let p = |proto: &str, ip: &str, port| HostPort {
            protocol: proto.into(),
            ip: ip.into(),
            port,
        };
        assert!(ports[0].conflicts(&p("TCP", "10.0.0.9", 8080)));
        assert!(!ports[0].conflicts(&p("UDP", ANY_IP, 8080)));
        assert!(ports[1].conflicts(&p("UDP", ANY_IP, 53)));
        assert!(!ports[1].conflicts(&p("UDP", "10.0.0.2", 53)));
    }

    #[test]
    fn affinity_term_defaults_to_own_namespace_and_folds_match_label_keys() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "web", "labels": {"app": "a", "rev": "7"}},
            "spec": {"containers": [], "affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app": "a"}},
                    "matchLabelKeys": ["rev"]
                }]
            }}}
        }))
        .expect("valid pod");
        let aff = PodAffinity::of(&pod);
        let term = &aff.required_anti[0];
        let l = |rev: &str| -> BTreeMap<String, String> {
            [("app", "a"), ("rev", rev)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(term.matches("web", Some(&l("7")), None));
        assert!(!term.matches("web", Some(&l("8")), None));
        assert!(!term.matches("other", Some(&l("7")), None));
    }
}
