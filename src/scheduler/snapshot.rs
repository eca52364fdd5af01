//! The scheduler's view of the cluster, kept incrementally from watch events: per node the
//! allocatable resources and effective taints, and the sums over the pods placed there
//! (requests, host ports, pods per controller owner, pod label sets for affinity and
//! spreading). Each event costs O(pods on one node); scheduling never rescans every pod.
//!
//! Pods count once they have `spec.nodeName` (or were [`Snapshot::assume`]d onto a node)
//! and until they are deleted or reach a terminal phase. A pod is keyed by uid (by
//! `namespace/name` when it has none), so the bound pod arriving through the watch replaces
//! its assumed copy instead of counting twice.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Taint,
};
use k8s_openapi::api::storage::v1::StorageClass;

use super::podinfo::{
    allowed_pods, controller_uid, host_ports, pod_requests, resource_list, HostPort, PodAffinity,
    Resources,
};

/// Taint the node lifecycle controller puts on a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint it puts on a node whose Ready condition is Unknown (the kubelet stopped reporting).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint it puts on a cordoned node; tolerating it lets a pod onto an unschedulable node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Node conditions that, when True, make the node lifecycle controller taint the node
/// `NoSchedule` (upstream's TaintNodesByCondition).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// What is requested of one node, as `kubectl describe node` sums it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeUsage {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub pods: i64,
}

/// A namespace and label set shared by pods: selectors are evaluated once per distinct
/// set and attempt, not once per pod (replicas of one workload share one set).
#[derive(Debug)]
pub(crate) struct LabelSet {
    pub(crate) namespace: String,
    pub(crate) labels: BTreeMap<String, String>,
    hash: u64,
    /// Counted pods with this set.
    refs: usize,
}

fn label_hash(namespace: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut h = DefaultHasher::new();
    namespace.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

/// Pods on one node with the same label set and phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LabelGroup {
    /// Id of the [`LabelSet`].
    pub(crate) set: u32,
    /// Being deleted: still occupies the node, no longer counts for spreading.
    pub(crate) terminating: bool,
    pub(crate) count: u32,
}

/// A placed pod that carries inter-pod (anti-)affinity terms of its own.
#[derive(Debug)]
pub(crate) struct AffinityPod {
    pub(crate) terms: PodAffinity,
}

/// One node and the sums over the pods on it.
#[derive(Debug)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// The node's taints plus the ones its conditions imply (not-ready, pressure, …).
    pub(crate) taints: Vec<Taint>,
    pub(crate) has_prefer_no_schedule: bool,
    pub(crate) unschedulable: bool,
    pub(crate) allocatable: Resources,
    pub(crate) allowed_pods: i64,
    pub(crate) requested: Resources,
    pub(crate) non_zero_cpu: i64,
    pub(crate) non_zero_memory: i64,
    pub(crate) pod_count: i64,
    pub(crate) used_ports: Vec<(HostPort, u32)>,
    /// (interned controller uid, pods) for the pods on this node.
    pub(crate) owners: Vec<(u32, u32)>,
    pub(crate) groups: Vec<LabelGroup>,
    pub(crate) affinity_pods: Vec<(String, Arc<AffinityPod>)>,
}

impl NodeInfo {
    fn new(node: &Node) -> Self {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            has_prefer_no_schedule: false,
            unschedulable: false,
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            non_zero_cpu: 0,
            non_zero_memory: 0,
            pod_count: 0,
            used_ports: Vec::new(),
            owners: Vec::new(),
            groups: Vec::new(),
            affinity_pods: Vec::new(),
        };
        info.set_node(node);
        info
    }

    /// Refresh what comes from the Node object itself; pod sums stay.
    fn set_node(&mut self, node: &Node) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = effective_taints(node);
        self.has_prefer_no_schedule = self.taints.iter().any(|t| t.effect == "PreferNoSchedule");
        self.unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        let status = node.status.as_ref();
        // A kubelet always reports allocatable; fall back to capacity if it is missing.
        let list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        self.allocatable = resource_list(list);
        self.allowed_pods = allowed_pods(list);
    }

    pub(crate) fn owner_count(&self, owner: u32) -> i64 {
        self.owners
            .iter()
            .find(|(o, _)| *o == owner)
            .map_or(0, |(_, n)| i64::from(*n))
    }

    fn add(&mut self, key: &str, rec: &PodRecord) {
        self.requested.add(&rec.requests);
        self.non_zero_cpu += rec.non_zero_cpu;
        self.non_zero_memory += rec.non_zero_memory;
        self.pod_count += 1;
        for p in &rec.ports {
            match self.used_ports.iter_mut().find(|(q, _)| q == p) {
                Some(entry) => entry.1 += 1,
                None => self.used_ports.push((p.clone(), 1)),
            }
        }
        if let Some(owner) = rec.owner {
            match self.owners.iter_mut().find(|(o, _)| *o == owner) {
                Some(entry) => entry.1 += 1,
                None => self.owners.push((owner, 1)),
            }
        }
        let same = |g: &&mut LabelGroup| g.set == rec.labels && g.terminating == rec.terminating;
        match self.groups.iter_mut().find(same) {
            Some(g) => g.count += 1,
            None => self.groups.push(LabelGroup {
                set: rec.labels,
                terminating: rec.terminating,
                count: 1,
            }),
        }
        if let Some(a) = &rec.affinity {
            self.affinity_pods.push((key.to_string(), a.clone()));
        }
    }

    fn remove(&mut self, key: &str, rec: &PodRecord) {
        self.requested.subtract(&rec.requests);
        self.non_zero_cpu -= rec.non_zero_cpu;
        self.non_zero_memory -= rec.non_zero_memory;
        self.pod_count -= 1;
        for p in &rec.ports {
            if let Some(i) = self.used_ports.iter().position(|(q, _)| q == p) {
                self.used_ports[i].1 -= 1;
                if self.used_ports[i].1 == 0 {
                    self.used_ports.swap_remove(i);
                }
            }
        }
        if let Some(owner) = rec.owner {
            if let Some(i) = self.owners.iter().position(|(o, _)| *o == owner) {
                self.owners[i].1 -= 1;
                if self.owners[i].1 == 0 {
                    self.owners.swap_remove(i);
                }
            }
        }
        let same = |g: &LabelGroup| g.set == rec.labels && g.terminating == rec.terminating;
        if let Some(i) = self.groups.iter().position(same) {
            self.groups[i].count -= 1;
            if self.groups[i].count == 0 {
                self.groups.swap_remove(i);
            }
        }
        if rec.affinity.is_some() {
            self.affinity_pods.retain(|(k, _)| k != key);
        }
    }
}

fn taint(key: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    }
}

/// The node's taints plus those the node lifecycle controller derives from its
/// conditions, so a node that is not Ready is avoided even before the controller acts.
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let status_of = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    };
    let mut implied = Vec::new();
    match status_of("Ready") {
        Some("True") => {}
        Some("Unknown") => implied.push(TAINT_UNREACHABLE),
        _ => implied.push(TAINT_NOT_READY),
    }
    for (cond, key) in CONDITION_TAINTS {
        if status_of(cond) == Some("True") {
            implied.push(key);
        }
    }
    for key in implied {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(taint(key));
        }
    }
    taints
}

/// A counted pod and exactly what it added to its node.
#[derive(Debug)]
struct PodRecord {
    node: String,
    assumed: bool,
    requests: Resources,
    non_zero_cpu: i64,
    non_zero_memory: i64,
    ports: Vec<HostPort>,
    owner: Option<u32>,
    owner_uid: Option<String>,
    /// Id of its [`LabelSet`].
    labels: u32,
    terminating: bool,
    affinity: Option<Arc<AffinityPod>>,
}

/// The scheduler's incremental view of nodes and placed pods.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(crate) nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodRecord>,
    /// Controller uid → (interned id, pods referencing it).
    owners: HashMap<String, (u32, usize)>,
    next_owner: u32,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Interned label sets by id (None: free slot), free ids, ids by content hash.
    label_sets: Vec<Option<LabelSet>>,
    free_label_sets: Vec<u32>,
    label_set_ids: HashMap<u64, Vec<u32>>,
    /// Placed pods (on known nodes) with any pod (anti-)affinity term.
    pub(crate) with_affinity: usize,
    /// Placed pods (on known nodes) with a required anti-affinity term.
    pub(crate) with_required_anti: usize,
    /// Claims, volumes and classes (the VolumeBinding filter).
    pub(crate) storage: super::volumebinding::Storage,
}

fn pod_key(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes the scheduler can consider.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// What the counted pods request of `node` (None for an unknown node).
    pub fn usage(&self, node: &str) -> Option<NodeUsage> {
        let n = &self.nodes[*self.index.get(node)?];
        Some(NodeUsage {
            cpu_millis: n.requested.cpu,
            memory_bytes: n.requested.memory,
            ephemeral_storage_bytes: n.requested.ephemeral,
            pods: n.pod_count,
        })
    }

    /// Whether `pod` is counted through [`Snapshot::assume`] and not yet confirmed by
    /// the watch.
    pub fn is_assumed(&self, pod: &Pod) -> bool {
        self.pods.get(&pod_key(pod)).is_some_and(|r| r.assumed)
    }

    pub(crate) fn owner_id(&self, uid: &str) -> Option<u32> {
        self.owners.get(uid).map(|(id, _)| *id)
    }

    pub(crate) fn namespace_labels(&self, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(ns)
    }

    pub(crate) fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    // ----- nodes -----

    /// A node appeared (an existing name is treated as an update).
    pub fn add_node(&mut self, node: &Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if let Some(&i) = self.index.get(name) {
            self.nodes[i].set_node(node);
            return;
        }
        let mut info = NodeInfo::new(node);
        // Pods bound before their node was seen (or while it was gone) count now.
        for (key, rec) in self.pods.iter().filter(|(_, r)| r.node == name) {
            info.add(key, rec);
            if let Some(a) = &rec.affinity {
                self.with_affinity += 1;
                if !a.terms.required_anti.is_empty() {
                    self.with_required_anti += 1;
                }
            }
        }
        self.index.insert(info.name.clone(), self.nodes.len());
        self.nodes.push(info);
    }

    /// A node changed: labels, taints, conditions, allocatable or cordon state.
    pub fn update_node(&mut self, node: &Node) {
        self.add_node(node);
    }

    /// A node went away. Its pods stay known and count again if it comes back.
    pub fn remove_node(&mut self, node: &Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        for (_, a) in &info.affinity_pods {
            self.with_affinity -= 1;
            if !a.terms.required_anti.is_empty() {
                self.with_required_anti -= 1;
            }
        }
    }

    // ----- claims, volumes, classes (VolumeBinding) -----

    /// A claim appeared or changed.
    pub fn upsert_claim(&mut self, pvc: &PersistentVolumeClaim) {
        let key = format!(
            "{}/{}",
            pvc.metadata.namespace.as_deref().unwrap_or_default(),
            pvc.metadata.name.as_deref().unwrap_or_default()
        );
        self.storage.claims.insert(key, pvc.clone());
    }

    /// A claim went away.
    pub fn remove_claim(&mut self, pvc: &PersistentVolumeClaim) {
        let key = format!(
            "{}/{}",
            pvc.metadata.namespace.as_deref().unwrap_or_default(),
            pvc.metadata.name.as_deref().unwrap_or_default()
        );
        self.storage.claims.remove(&key);
    }

    /// A volume appeared or changed.
    pub fn upsert_volume(&mut self, pv: &PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.storage.volumes.insert(name, pv.clone());
    }

    /// A volume went away.
    pub fn remove_volume(&mut self, pv: &PersistentVolume) {
        self.storage
            .volumes
            .remove(pv.metadata.name.as_deref().unwrap_or_default());
    }

    /// A storage class appeared or changed.
    pub fn upsert_class(&mut self, sc: &StorageClass) {
        let name = sc.metadata.name.clone().unwrap_or_default();
        self.storage.classes.insert(name, sc.clone());
    }

    /// A storage class went away.
    pub fn remove_class(&mut self, sc: &StorageClass) {
        self.storage
            .classes
            .remove(sc.metadata.name.as_deref().unwrap_or_default());
    }

    /// The pod's claims to promise to the node it is about to be bound to (annotated
    /// `volume.kubernetes.io/selected-node` before the binding), assumed promised now.
    pub fn select_claims(&mut self, pod: &Pod, node: &str) -> Vec<(String, String)> {
        let claims = super::volumebinding::claims_to_select(pod, &self.storage);
        super::volumebinding::assume_selected(&mut self.storage, &claims, node);
        claims
    }

    // ----- namespaces (for namespaceSelector in pod affinity terms) -----

    /// A namespace appeared or its labels changed.
    pub fn upsert_namespace(&mut self, ns: &Namespace) {
        if let Some(name) = ns.metadata.name.as_deref() {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            self.namespaces.insert(name.to_string(), labels);
        }
    }

    /// A namespace went away.
    pub fn remove_namespace(&mut self, ns: &Namespace) {
        if let Some(name) = ns.metadata.name.as_deref() {
            self.namespaces.remove(name);
        }
    }

    // ----- pods -----

    /// A pod appeared. Only pods with `spec.nodeName` that are not terminal count.
    pub fn add_pod(&mut self, pod: &Pod) {
        self.update_pod(pod);
    }

    /// A pod changed: bound, relabelled, finished or started terminating.
    pub fn update_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if is_terminal(pod) {
            self.drop_record(&key);
            return;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                let rec = self.record(pod, node, false);
                self.put_record(key, rec);
            }
            // Not bound yet: an assumed copy stays until the binding shows up or the
            // scheduler forgets it.
            None => {
                if self.pods.get(&key).is_some_and(|r| !r.assumed) {
                    self.drop_record(&key);
                }
            }
        }
    }

    /// A pod was deleted: whatever it held on its node is free again.
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.drop_record(&pod_key(pod));
    }

    /// Count `pod` on `node` now, before the binding comes back through the watch, so the
    /// next pods of a burst see it. A later `add_pod`/`update_pod` of the bound pod
    /// replaces this copy. A pod the watch already reported bound is left as it is.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let key = pod_key(pod);
        if is_terminal(pod) || self.pods.get(&key).is_some_and(|r| !r.assumed) {
            return;
        }
        let rec = self.record(pod, node, true);
        self.put_record(key, rec);
    }

    /// Undo [`Snapshot::assume`] (binding failed). A pod the watch confirmed stays.
    pub fn forget(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if self.pods.get(&key).is_some_and(|r| r.assumed) {
            self.drop_record(&key);
        }
    }

    fn record(&mut self, pod: &Pod, node: &str, assumed: bool) -> PodRecord {
        let spec = pod.spec.as_ref();
        let requests = spec.map(|s| pod_requests(s, false)).unwrap_or_default();
        let non_zero = spec.map(|s| pod_requests(s, true)).unwrap_or_default();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let labels = self.intern_labels(pod);
        // Terminating replicas no longer count toward their owner's spread.
        let owner_uid = if terminating {
            None
        } else {
            controller_uid(pod).map(str::to_string)
        };
        let owner = owner_uid.as_deref().map(|uid| self.intern_owner(uid));
        let terms = PodAffinity::of(pod);
        let affinity = (!terms.is_empty()).then(|| Arc::new(AffinityPod { terms }));
        PodRecord {
            node: node.to_string(),
            assumed,
            requests,
            non_zero_cpu: non_zero.cpu,
            non_zero_memory: non_zero.memory,
            ports: spec.map(host_ports).unwrap_or_default(),
            owner,
            owner_uid,
            labels,
            terminating,
            affinity,
        }
    }

    /// Evaluate `pred` once per distinct label set; the result is indexed by set id.
    pub(crate) fn classify(&self, mut pred: impl FnMut(&LabelSet) -> bool) -> Vec<bool> {
        self.label_sets
            .iter()
            .map(|s| s.as_ref().is_some_and(&mut pred))
            .collect()
    }

    fn intern_labels(&mut self, pod: &Pod) -> u32 {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let hash = label_hash(namespace, labels);
        let ids = self.label_set_ids.entry(hash).or_default();
        for &id in ids.iter() {
            if let Some(Some(set)) = self.label_sets.get_mut(id as usize) {
                if set.namespace == namespace && &set.labels == labels {
                    set.refs += 1;
                    return id;
                }
            }
        }
        let set = LabelSet {
            namespace: namespace.to_string(),
            labels: labels.clone(),
            hash,
            refs: 1,
        };
        let id = match self.free_label_sets.pop() {
            Some(id) => {
                self.label_sets[id as usize] = Some(set);
                id
            }
            None => {
                self.label_sets.push(Some(set));
                (self.label_sets.len() - 1) as u32
            }
        };
        ids.push(id);
        id
    }

    fn release_labels(&mut self, id: u32) {
        let Some(slot) = self.label_sets.get_mut(id as usize) else {
            return;
        };
        let Some(set) = slot else { return };
        set.refs -= 1;
        if set.refs > 0 {
            return;
        }
        let hash = set.hash;
        *slot = None;
        self.free_label_sets.push(id);
        if let Some(ids) = self.label_set_ids.get_mut(&hash) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.label_set_ids.remove(&hash);
            }
        }
    }

    fn intern_owner(&mut self, uid: &str) -> u32 {
        if let Some(entry) = self.owners.get_mut(uid) {
            entry.1 += 1;
            return entry.0;
        }
        let id = self.next_owner;
        self.next_owner = self.next_owner.wrapping_add(1);
        self.owners.insert(uid.to_string(), (id, 1));
        id
    }

    fn release_owner(&mut self, uid: Option<&str>) {
        let Some(uid) = uid else { return };
        if let Some(entry) = self.owners.get_mut(uid) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.owners.remove(uid);
            }
        }
    }

    fn put_record(&mut self, key: String, rec: PodRecord) {
        self.drop_record(&key);
        self.link(&key, &rec);
        self.pods.insert(key, rec);
    }

    fn drop_record(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            self.unlink(key, &old);
            self.release_owner(old.owner_uid.as_deref());
            self.release_labels(old.labels);
        }
    }

    fn link(&mut self, key: &str, rec: &PodRecord) {
        if let Some(&i) = self.index.get(&rec.node) {
            self.nodes[i].add(key, rec);
            if let Some(a) = &rec.affinity {
                self.with_affinity += 1;
                if !a.terms.required_anti.is_empty() {
                    self.with_required_anti += 1;
                }
            }
        }
    }

    fn unlink(&mut self, key: &str, rec: &PodRecord) {
        if let Some(&i) = self.index.get(&rec.node) {
            self.nodes[i].remove(key, rec);
            if let Some(a) = &rec.affinity {
                self.with_affinity -= 1;
                if !a.terms.required_anti.is_empty() {
                    self.with_required_anti -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": ready}]
            }
        }))
        .expect("valid node")
    }

    fn pod(uid: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid,
                         "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "web", "uid": "rs-1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}},
                 "ports": [{"containerPort": 80, "hostPort": 8080}]}
            ]}
        }))
        .expect("valid pod")
    }

    fn with_phase(mut p: Pod, phase: &str) -> Pod {
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn bound_pods_add_up_and_deleted_or_finished_pods_free_their_share() {
        let mut s = Snapshot::new();
        s.add_node(&node("n1", "True"));
        s.add_pod(&pod("a", Some("n1"), "500m"));
        s.add_pod(&pod("b", Some("n1"), "250m"));
        s.add_pod(&pod("pending", None, "1"));
        let u = s.usage("n1").expect("known node");
        assert_eq!((u.cpu_millis, u.memory_bytes, u.pods), (750, 256 << 20, 2));
        s.update_pod(&with_phase(pod("b", Some("n1"), "250m"), "Succeeded"));
        s.remove_pod(&pod("a", Some("n1"), "500m"));
        let u = s.usage("n1").expect("known node");
        assert_eq!((u.cpu_millis, u.pods), (0, 0));
        let n = &s.nodes[0];
        assert!(n.used_ports.is_empty() && n.owners.is_empty() && n.groups.is_empty());
        // Their interned label set and owner are released too.
        assert!(s.label_set_ids.is_empty() && s.owners.is_empty());
    }

    #[test]
    fn assumed_pod_is_not_counted_twice_when_its_binding_arrives() {
        let mut s = Snapshot::new();
        s.add_node(&node("n1", "True"));
        let p = pod("a", None, "300m");
        s.assume(&p, "n1");
        assert!(s.is_assumed(&p));
        // The watch may still show the unbound pod: the assumed copy stays.
        s.update_pod(&p);
        assert_eq!(s.usage("n1").map(|u| u.pods), Some(1));
        s.add_pod(&pod("a", Some("n1"), "300m"));
        assert!(!s.is_assumed(&p));
        assert_eq!(
            s.usage("n1").map(|u| (u.pods, u.cpu_millis)),
            Some((1, 300))
        );
        // Forgetting a confirmed pod does nothing.
        s.forget(&p);
        assert_eq!(s.usage("n1").map(|u| u.pods), Some(1));
    }

    #[test]
    fn forget_undoes_an_assume() {
        let mut s = Snapshot::new();
        s.add_node(&node("n1", "True"));
        let p = pod("a", None, "300m");
        s.assume(&p, "n1");
        s.forget(&p);
        assert_eq!(s.usage("n1").map(|u| (u.pods, u.cpu_millis)), Some((0, 0)));
        assert!(s.owners.is_empty());
    }

    #[test]
    fn pods_bound_to_a_node_seen_later_count_when_it_arrives_and_survive_its_removal() {
        let mut s = Snapshot::new();
        s.add_pod(&pod("a", Some("n2"), "100m"));
        s.add_node(&node("n1", "True"));
        s.add_node(&node("n2", "True"));
        assert_eq!(s.usage("n2").map(|u| u.cpu_millis), Some(100));
        s.remove_node(&node("n1", "True"));
        assert_eq!(s.node_index("n2"), Some(0));
        s.remove_node(&node("n2", "True"));
        assert_eq!(s.num_nodes(), 0);
        s.add_node(&node("n2", "True"));
        assert_eq!(s.usage("n2").map(|u| u.cpu_millis), Some(100));
    }

    #[test]
    fn node_that_is_not_ready_carries_the_lifecycle_taint() {
        let t = |n: &Node| {
            effective_taints(n)
                .iter()
                .map(|t| t.key.clone())
                .collect::<Vec<_>>()
        };
        assert!(t(&node("n", "True")).is_empty());
        assert_eq!(t(&node("n", "False")), vec![TAINT_NOT_READY]);
        assert_eq!(t(&node("n", "Unknown")), vec![TAINT_UNREACHABLE]);
        let mut tainted = node("n", "False");
        tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![taint(TAINT_NOT_READY)]),
            ..Default::default()
        });
        assert_eq!(t(&tainted), vec![TAINT_NOT_READY], "no duplicate");
    }

    #[test]
    fn relabelled_pod_moves_between_label_groups() {
        let mut s = Snapshot::new();
        s.add_node(&node("n1", "True"));
        s.add_pod(&pod("a", Some("n1"), "100m"));
        s.add_pod(&pod("b", Some("n1"), "100m"));
        assert_eq!(s.nodes[0].groups.len(), 1);
        assert_eq!(s.nodes[0].groups[0].count, 2);
        let mut relabelled = pod("b", Some("n1"), "100m");
        relabelled.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        s.update_pod(&relabelled);
        let mut counts: Vec<_> = s.nodes[0].groups.iter().map(|g| g.count).collect();
        counts.sort();
        assert_eq!(counts, vec![1, 1]);
        assert_eq!(s.usage("n1").map(|u| u.pods), Some(2));
    }
}
