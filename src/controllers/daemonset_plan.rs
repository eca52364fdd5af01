//! The DaemonSet controller's decisions: which nodes get a daemon pod, which daemon pods
//! go (extras, failed ones, ones on nodes that no longer qualify, old revisions during a
//! rolling update), the set's `ControllerRevision` history, and its status.
//!
//! A node qualifies like upstream's `NodeShouldRunDaemonPod`: the pod's `nodeName` (if
//! any), `nodeSelector` and required node affinity must match it, and it must carry no
//! `NoSchedule`/`NoExecute` taint the pod does not tolerate. Daemon pods tolerate the
//! node-condition taints (not-ready, unreachable, disk/memory/pid pressure,
//! unschedulable; network-unavailable for host-network pods), so those never keep a
//! daemon off a node. A pod already running on a node that gained only a `NoSchedule`
//! taint stays; an untolerated `NoExecute` taint removes it. Pods are created unbound,
//! pinned to their node by required node affinity on `metadata.name`, and the scheduler
//! binds them.
//!
//! Rolling updates replace pods whose `controller-revision-hash` label differs from the
//! template's hash, keeping at most `maxUnavailable` daemon pods unavailable (surge is not
//! implemented: a `maxSurge` above zero is treated as zero). `OnDelete` never replaces.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};

use super::pod_util::{
    available_at, is_controlled_by_uid, is_pod_available, is_pod_ready, pod_phase,
};
use super::workload::{
    controller_ref, delay_until, earliest, label, name_of, pod_create_failed_event,
    pod_created_event, pod_delete_failed_event, pod_deleted_event, pod_from_template,
    revision_step, revisions_to_prune, scaled_int_or_percent, set_label, template_hash,
    template_revision, Event, RevisionStep, WorkloadError, CONTROLLER_REVISION_HASH_LABEL,
};
use crate::apimachinery::labels;

const KIND: &str = "DaemonSet";
const API_VERSION: &str = "apps/v1";

/// Annotation the API server keeps on DaemonSets with the template generation; copied to
/// pods as the `pod-template-generation` label when present.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// One step of a DaemonSet sync. Execute in order; stop at the first failure and plan
/// again from fresh caches.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonSetAction {
    /// Create this `ControllerRevision` (the template's snapshot, for `kubectl rollout
    /// history/undo`).
    CreateRevision(Box<ControllerRevision>),
    /// Set `revision` of an existing `ControllerRevision` (after a rollback to it).
    RenumberRevision { name: String, revision: i64 },
    /// Delete an old `ControllerRevision` beyond `revisionHistoryLimit`.
    DeleteRevision { name: String },
    /// Create a daemon pod for `node` (the pod has `generateName`, not a name).
    CreatePod { node: String, pod: Box<Pod> },
    /// Delete a daemon pod.
    DeletePod { name: String },
    /// Replace the DaemonSet's status (the `status` subresource).
    UpdateStatus(Box<DaemonSetStatus>),
    /// Record an event on the DaemonSet.
    Event(Event),
}

impl DaemonSetAction {
    /// The event to record after the action succeeded; `created_name` is the name the API
    /// server returned for a created object.
    pub fn success_event(&self, created_name: &str) -> Option<Event> {
        match self {
            DaemonSetAction::CreatePod { .. } => Some(pod_created_event(created_name)),
            DaemonSetAction::DeletePod { name } => Some(pod_deleted_event(name)),
            _ => None,
        }
    }

    /// The event to record after the action failed with `error`.
    pub fn failure_event(&self, error: &str) -> Option<Event> {
        match self {
            DaemonSetAction::CreatePod { .. } => Some(pod_create_failed_event(error)),
            DaemonSetAction::DeletePod { .. } => Some(pod_delete_failed_event(error)),
            _ => None,
        }
    }
}

/// The result of one DaemonSet sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonSetPlan {
    pub actions: Vec<DaemonSetAction>,
    /// Sync again after this long even without a watch event (a pod becoming available
    /// after `minReadySeconds`).
    pub requeue_after: Option<std::time::Duration>,
}

/// Plan one sync of `ds`. `nodes` are all nodes; `pods` and `revisions` may hold anything
/// in the namespace: only those controlled by `ds` (and, for pods, selected by it) count.
pub fn plan_daemonset(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    revisions: &[ControllerRevision],
    now: DateTime<Utc>,
) -> Result<DaemonSetPlan, WorkloadError> {
    let mut plan = DaemonSetPlan::default();
    let name = name_of(&ds.metadata, KIND)?;
    let owner = controller_ref(API_VERSION, KIND, &ds.metadata)?;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(plan);
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(plan);
    };
    if labels::is_empty(&spec.selector) {
        plan.actions.push(DaemonSetAction::Event(Event::warning(
            "SelectingAll",
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        )));
        return Ok(plan);
    }
    let status = ds.status.clone().unwrap_or_default();
    let hash = template_hash(&spec.template, status.collision_count);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    // History: one revision per template, the current one numbered highest.
    let own_revisions: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| is_controlled_by_uid(&r.metadata, &owner.uid))
        .collect();
    let current_revision = format!("{name}-{hash}");
    match revision_step(&own_revisions, &current_revision, |number| {
        template_revision(
            &current_revision,
            &ds.metadata,
            &owner,
            &spec.template,
            (CONTROLLER_REVISION_HASH_LABEL, &hash),
            number,
        )
    }) {
        RevisionStep::UpToDate => {}
        RevisionStep::Create(rev) => plan.actions.push(DaemonSetAction::CreateRevision(rev)),
        RevisionStep::Renumber { name, revision } => plan
            .actions
            .push(DaemonSetAction::RenumberRevision { name, revision }),
    }

    // The set's pods, grouped by the node they are (or will be) on.
    let own_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            is_controlled_by_uid(&p.metadata, &owner.uid)
                && labels::matches(&spec.selector, p.metadata.labels.as_ref())
        })
        .collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &own_pods {
        let terminal = matches!(pod_phase(pod), "Succeeded" | "Failed");
        if terminal && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| {
            let scheduled = |p: &Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty())
            };
            scheduled(b)
                .cmp(&scheduled(a))
                .then_with(|| {
                    a.metadata
                        .creation_timestamp
                        .cmp(&b.metadata.creation_timestamp)
                })
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
    }

    let daemon_spec = daemon_pod_spec(spec.template.spec.as_ref());
    let known_nodes: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();

    // Manage: one pod on every node that should run one, none elsewhere.
    let mut to_create: Vec<String> = Vec::new();
    let mut to_delete: Vec<String> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut desired_nodes: Vec<&str> = Vec::new();
    for node in nodes {
        let Some(node_name) = node.metadata.name.as_deref() else {
            continue;
        };
        let (should_run, should_continue) = node_should_run(node, &daemon_spec);
        if should_run {
            desired_nodes.push(node_name);
        }
        let node_pods = by_node.get(node_name).map(Vec::as_slice).unwrap_or(&[]);
        if should_run && node_pods.is_empty() {
            to_create.push(node_name.to_string());
        } else if should_continue {
            let mut running: Vec<&Pod> = Vec::new();
            for pod in node_pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                match pod_phase(pod) {
                    "Failed" => {
                        events.push(Event::warning(
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {}/{pod_name} on node {node_name}, will try to kill it",
                                pod.metadata.namespace.as_deref().unwrap_or_default()
                            ),
                        ));
                        to_delete.push(pod_name);
                    }
                    "Succeeded" => to_delete.push(pod_name),
                    _ => running.push(pod),
                }
            }
            // More than one live pod: keep the oldest (already sorted first).
            to_delete.extend(
                running
                    .iter()
                    .skip(1)
                    .filter_map(|p| p.metadata.name.clone()),
            );
        } else {
            to_delete.extend(
                node_pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| p.metadata.name.clone()),
            );
        }
    }
    // Unbound pods aimed at nodes that no longer exist.
    for (node_name, node_pods) in &by_node {
        if known_nodes.contains(node_name.as_str()) {
            continue;
        }
        to_delete.extend(
            node_pods
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_none_or(str::is_empty)
                })
                .filter_map(|p| p.metadata.name.clone()),
        );
    }

    // Rolling update, only once manage has nothing left to do (upstream waits for its
    // expectations in the same way).
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling && to_create.is_empty() && to_delete.is_empty() {
        let max_unavailable = max_unavailable(ds, desired_nodes.len() as i32)?;
        let mut slots: BTreeMap<&str, Vec<&Pod>> = by_node
            .iter()
            .map(|(n, p)| (n.as_str(), p.clone()))
            .collect();
        for n in &desired_nodes {
            slots.entry(n).or_default();
        }
        to_delete.extend(rolling_update_victims(
            &slots,
            &hash,
            max_unavailable,
            min_ready,
            now,
        ));
    }

    for node in to_create {
        let pod = new_daemon_pod(ds, &daemon_spec, &node, &hash)?;
        plan.actions.push(DaemonSetAction::CreatePod {
            node,
            pod: Box::new(pod),
        });
    }
    plan.actions
        .extend(events.into_iter().map(DaemonSetAction::Event));
    plan.actions.extend(
        to_delete
            .into_iter()
            .map(|name| DaemonSetAction::DeletePod { name }),
    );

    // History cleanup: keep revisionHistoryLimit old revisions besides the ones pods use.
    let live_hashes: BTreeSet<&str> = own_pods
        .iter()
        .filter_map(|p| label(&p.metadata, CONTROLLER_REVISION_HASH_LABEL))
        .collect();
    let is_live = |r: &ControllerRevision| {
        r.metadata.name.as_deref() == Some(current_revision.as_str())
            || label(&r.metadata, CONTROLLER_REVISION_HASH_LABEL)
                .is_some_and(|h| live_hashes.contains(h))
    };
    let old: Vec<&ControllerRevision> = own_revisions
        .iter()
        .copied()
        .filter(|r| r.metadata.name.as_deref() != Some(current_revision.as_str()))
        .collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    // Only revisions beyond the limit are candidates; live ones are skipped, not counted.
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    let prunable = revisions_to_prune(&old, &is_live, 0);
    plan.actions.extend(
        prunable
            .into_iter()
            .take(excess)
            .map(|name| DaemonSetAction::DeleteRevision { name }),
    );

    // Status, from what the caches show now.
    let mut next = DaemonSetStatus {
        collision_count: status.collision_count,
        conditions: status.conditions.clone(),
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    let template_generation = template_generation(ds);
    let (mut available, mut updated, mut wake) = (0, 0, None);
    for node in nodes {
        let Some(node_name) = node.metadata.name.as_deref() else {
            continue;
        };
        let should_run = desired_nodes.contains(&node_name);
        let first = by_node.get(node_name).and_then(|p| p.first());
        match (should_run, first) {
            (true, Some(pod)) => {
                next.desired_number_scheduled += 1;
                next.current_number_scheduled += 1;
                if is_pod_ready(pod) {
                    next.number_ready += 1;
                    if is_pod_available(pod, min_ready, now) {
                        available += 1;
                    } else {
                        wake = earliest(wake, available_at(pod, min_ready, now));
                    }
                }
                if is_pod_updated(pod, &hash, template_generation.as_deref()) {
                    updated += 1;
                }
            }
            (true, None) => next.desired_number_scheduled += 1,
            (false, Some(_)) => next.number_misscheduled += 1,
            (false, None) => {}
        }
    }
    next.number_available = Some(available);
    next.updated_number_scheduled = Some(updated);
    next.number_unavailable = Some(next.desired_number_scheduled - available);
    if ds.status.as_ref() != Some(&next) {
        plan.actions
            .push(DaemonSetAction::UpdateStatus(Box::new(next)));
    }
    plan.requeue_after = wake.map(|at| delay_until(at, now));
    Ok(plan)
}

/// The DaemonSet's `maxUnavailable` for `desired` nodes (percentages round up); at least
/// one when surge is zero, as upstream falls back to.
fn max_unavailable(ds: &DaemonSet, desired: i32) -> Result<i32, WorkloadError> {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| {
            scaled_int_or_percent(
                v,
                desired,
                true,
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
            )
        })
        .transpose()?
        .unwrap_or(1);
    // Surge is not implemented; without it a zero maxUnavailable could never progress.
    let surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .map(|v| {
            scaled_int_or_percent(
                v,
                desired,
                true,
                "spec.updateStrategy.rollingUpdate.maxSurge",
            )
        })
        .transpose()?
        .unwrap_or(0);
    if unavailable <= 0 && (surge > 0 || desired > 0) {
        return Ok(1);
    }
    Ok(unavailable.max(0))
}

/// Old pods to delete in this rolling-update step (maxSurge = 0): unavailable old pods
/// always; available old ones while the unavailable count stays within the budget.
fn rolling_update_victims(
    slots: &BTreeMap<&str, Vec<&Pod>>,
    hash: &str,
    max_unavailable: i32,
    min_ready: i32,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut unavailable = 0;
    let mut replace_anyway = Vec::new();
    let mut candidates = Vec::new();
    for pods in slots.values() {
        let live: Vec<&&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let (new, old): (Vec<&&Pod>, Vec<&&Pod>) = live
            .into_iter()
            .partition(|p| label(&p.metadata, CONTROLLER_REVISION_HASH_LABEL) == Some(hash));
        if new.len() > 1 || old.len() > 1 {
            unavailable += 1;
            continue;
        }
        match (new.first(), old.first()) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !is_pod_available(new, min_ready, now) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                let name = old.metadata.name.clone().unwrap_or_default();
                if !is_pod_available(old, min_ready, now) {
                    replace_anyway.push(name);
                } else if unavailable < max_unavailable {
                    candidates.push(name);
                }
            }
        }
    }
    let budget = (max_unavailable - unavailable).max(0) as usize;
    replace_anyway.extend(candidates.into_iter().take(budget));
    replace_anyway
}

fn template_generation(ds: &DaemonSet) -> Option<String> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .cloned()
}

/// `IsPodUpdated`: the pod carries the current hash (or the current template generation).
fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<&str>) -> bool {
    label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL) == Some(hash)
        || generation.is_some_and(|g| label(&pod.metadata, TEMPLATE_GENERATION_LABEL) == Some(g))
}

/// The node a daemon pod is bound to, or pinned to by its node affinity.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

/// The tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut all = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    all
}

/// The template's pod spec with the daemon tolerations added (identical ones not twice).
fn daemon_pod_spec(template: Option<&PodSpec>) -> PodSpec {
    let mut spec = template.cloned().unwrap_or_default();
    let extra = daemon_tolerations(spec.host_network == Some(true));
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in extra {
        let same = |o: &Toleration| {
            o.key == t.key
                && o.effect == t.effect
                && o.operator.as_deref().unwrap_or("Equal")
                    == t.operator.as_deref().unwrap_or("Equal")
                && o.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
        };
        if !list.iter().any(same) {
            list.push(t);
        }
    }
    spec
}

/// `NodeShouldRunDaemonPod` for a daemon pod spec: (should run, may keep running).
fn node_should_run(node: &Node, spec: &PodSpec) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != node_name {
            return (false, false);
        }
    }
    if !node_selector_matches(spec, node) || !required_affinity_matches(spec, node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|t| tolerates(t, taint))
        })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

/// `Toleration.ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &k8s_openapi::api::core::v1::Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

fn node_selector_matches(spec: &PodSpec, node: &Node) -> bool {
    let node_labels = node.metadata.labels.as_ref();
    spec.node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node_labels.and_then(|l| l.get(k)) == Some(v))
}

fn required_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, node))
}

/// A node selector term: all its requirements hold; a term without any matches nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let node_labels = node.metadata.labels.as_ref();
    exprs.iter().all(|r| {
        requirement_matches(
            r,
            node_labels.and_then(|l| l.get(&r.key)).map(String::as_str),
        )
    }) && fields.iter().all(|r| {
        r.key == "metadata.name"
            && matches!(r.operator.as_str(), "In" | "NotIn")
            && requirement_matches(r, node.metadata.name.as_deref())
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => match (value.and_then(as_int), values) {
            (Some(v), [bound]) => match as_int(bound) {
                Some(b) if r.operator == "Gt" => v > b,
                Some(b) => v < b,
                None => false,
            },
            _ => false,
        },
        _ => false,
    }
}

/// The daemon pod for `node`: the template with daemon tolerations, the revision labels,
/// and required node affinity on the node's name in place of the template's required
/// node selector terms (`ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn new_daemon_pod(
    ds: &DaemonSet,
    daemon_spec: &PodSpec,
    node: &str,
    hash: &str,
) -> Result<Pod, WorkloadError> {
    let name = name_of(&ds.metadata, KIND)?;
    let owner = controller_ref(API_VERSION, KIND, &ds.metadata)?;
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_from_template(
        &template,
        owner,
        ds.metadata.namespace.as_deref().unwrap_or_default(),
    );
    pod.metadata.generate_name = Some(format!("{name}-"));
    if let Some(g) = template_generation(ds) {
        set_label(&mut pod.metadata, TEMPLATE_GENERATION_LABEL, &g);
    }
    set_label(&mut pod.metadata, CONTROLLER_REVISION_HASH_LABEL, hash);
    let mut spec = daemon_spec.clone();
    let pin = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            ..Default::default()
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(pin);
    pod.spec = Some(spec);
    Ok(pod)
}

/// What `kubectl rollout status ds/x` reports: `Ok(true)` once the rollout is finished.
pub fn rollout_complete(ds: &DaemonSet) -> Result<bool, String> {
    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate");
    if strategy != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let Some(status) = ds.status.as_ref() else {
        return Ok(false);
    };
    if ds.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return Ok(false);
    }
    Ok(
        status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled
            && status.number_available.unwrap_or(0) >= status.desired_number_scheduled,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{
        Container, NodeSpec, PodCondition, PodStatus, PodTemplateSpec, Taint,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    const UID: &str = "ds-uid-1";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).expect("valid time")
    }

    fn node(name: &str, taints: Vec<Taint>, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn daemonset(image: &str) -> DaemonSet {
        let app: BTreeMap<String, String> = [("app".to_string(), "agent".to_string())].into();
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some(UID.into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(app.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(app),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "agent".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(1)),
                        max_surge: Some(IntOrString::Int(0)),
                    }),
                }),
                revision_history_limit: Some(10),
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    /// A tiny cluster: applies a plan the way the lead's loop would, and lets the test
    /// play scheduler and kubelet.
    struct Cluster {
        ds: DaemonSet,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        revisions: Vec<ControllerRevision>,
        serial: u32,
        events: Vec<Event>,
    }

    impl Cluster {
        fn sync(&mut self, now: DateTime<Utc>) -> DaemonSetPlan {
            let plan = plan_daemonset(&self.ds, &self.nodes, &self.pods, &self.revisions, now)
                .expect("plan");
            for action in &plan.actions {
                let mut created = String::new();
                match action {
                    DaemonSetAction::CreateRevision(r) => self.revisions.push((**r).clone()),
                    DaemonSetAction::RenumberRevision { name, revision } => {
                        for r in &mut self.revisions {
                            if r.metadata.name.as_deref() == Some(name) {
                                r.revision = *revision;
                            }
                        }
                    }
                    DaemonSetAction::DeleteRevision { name } => self
                        .revisions
                        .retain(|r| r.metadata.name.as_deref() != Some(name)),
                    DaemonSetAction::CreatePod { pod, .. } => {
                        self.serial += 1;
                        let mut p = (**pod).clone();
                        created = format!(
                            "{}{:05}",
                            p.metadata.generate_name.clone().unwrap_or_default(),
                            self.serial
                        );
                        p.metadata.name = Some(created.clone());
                        p.metadata.creation_timestamp = Some(Time(
                            now + chrono::Duration::milliseconds(self.serial.into()),
                        ));
                        p.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(p);
                    }
                    DaemonSetAction::DeletePod { name } => self
                        .pods
                        .retain(|p| p.metadata.name.as_deref() != Some(name)),
                    DaemonSetAction::UpdateStatus(s) => self.ds.status = Some((**s).clone()),
                    DaemonSetAction::Event(e) => self.events.push(e.clone()),
                }
                if let Some(e) = action.success_event(&created) {
                    self.events.push(e);
                }
            }
            plan
        }

        /// Bind every pending pod to its pinned node and make it Running and Ready.
        fn run_all(&mut self, now: DateTime<Utc>) {
            for p in &mut self.pods {
                let node = target_node(p);
                if let Some(spec) = p.spec.as_mut() {
                    spec.node_name = node;
                }
                if pod_phase(p) == "Pending" {
                    p.status = Some(ready_status(now));
                }
            }
        }

        fn pods_on(&self, node: &str) -> Vec<&Pod> {
            self.pods
                .iter()
                .filter(|p| target_node(p).as_deref() == Some(node))
                .collect()
        }
    }

    fn ready_status(now: DateTime<Utc>) -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn three_nodes_one_tainted() -> Cluster {
        Cluster {
            ds: daemonset("agent:1"),
            nodes: vec![
                node("n1", vec![], &[]),
                node("n2", vec![], &[]),
                node("n3", vec![taint("dedicated", "NoSchedule")], &[]),
            ],
            pods: vec![],
            revisions: vec![],
            serial: 0,
            events: vec![],
        }
    }

    #[test]
    fn one_pod_per_untainted_node_pinned_by_affinity() {
        let mut c = three_nodes_one_tainted();
        let plan = c.sync(t0());
        let creates: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                DaemonSetAction::CreatePod { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(creates, vec!["n1", "n2"]);
        let pod = c.pods_on("n1")[0];
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name, None, "the scheduler binds daemon pods");
        let term = &spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("required node affinity")
            .node_selector_terms[0];
        let field = &term.match_fields.as_ref().expect("matchFields")[0];
        assert_eq!(
            (field.key.as_str(), field.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(field.values.as_deref(), Some(&["n1".to_string()][..]));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("DaemonSet", "agent", UID)
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let keys: Vec<&str> = spec
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.as_deref())
            .collect();
        for k in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/disk-pressure",
            "node.kubernetes.io/memory-pressure",
            "node.kubernetes.io/pid-pressure",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(keys.contains(&k), "missing toleration {k}");
        }
        assert!(label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL).is_some());
        assert_eq!(label(&pod.metadata, "app"), Some("agent"));
        assert_eq!(c.revisions.len(), 1, "the template's revision is recorded");
        assert!(c
            .events
            .iter()
            .any(|e| e.reason == "SuccessfulCreate" && e.message == "Created pod: agent-00001"));

        // The status follows the caches: once they hold the pending pods, it shows them
        // scheduled but not ready.
        let s = c.ds.status.clone().expect("status");
        assert_eq!(
            (s.desired_number_scheduled, s.current_number_scheduled),
            (2, 0)
        );
        c.sync(t0() + chrono::Duration::seconds(1));
        let s = c.ds.status.clone().expect("status");
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready
            ),
            (2, 2, 0)
        );
        assert_eq!(s.number_unavailable, Some(2));
        assert_eq!(rollout_complete(&c.ds), Ok(false));

        c.run_all(t0());
        let plan = c.sync(t0() + chrono::Duration::seconds(5));
        assert!(!plan.actions.iter().any(|a| matches!(
            a,
            DaemonSetAction::CreatePod { .. } | DaemonSetAction::DeletePod { .. }
        )));
        let s = c.ds.status.clone().expect("status");
        assert_eq!(s.number_ready, 2);
        assert_eq!(s.number_available, Some(2));
        assert_eq!(s.updated_number_scheduled, Some(2));
        assert_eq!(s.number_misscheduled, 0);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(rollout_complete(&c.ds), Ok(true));
        // A converged set plans nothing at all.
        assert!(c
            .sync(t0() + chrono::Duration::seconds(6))
            .actions
            .is_empty());
    }

    #[test]
    fn tolerating_the_taint_or_condition_taints_admits_the_node() {
        let mut c = three_nodes_one_tainted();
        c.nodes[1] = node(
            "n2",
            vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")],
            &[],
        );
        if let Some(spec) = c.ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            spec.tolerations = Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
        }
        c.sync(t0());
        assert_eq!(
            c.pods.len(),
            3,
            "cordoned and tolerated-taint nodes both run the daemon"
        );
    }

    #[test]
    fn node_selector_and_affinity_pick_nodes_and_changes_evict() {
        let mut c = three_nodes_one_tainted();
        c.nodes = vec![
            node("n1", vec![], &[("disk", "ssd"), ("cores", "8")]),
            node("n2", vec![], &[("disk", "hdd"), ("cores", "16")]),
            node("n3", vec![], &[("disk", "ssd"), ("cores", "2")]),
        ];
        if let Some(spec) = c.ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            spec.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
            spec.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "cores".into(),
                                operator: "Gt".into(),
                                values: Some(vec!["4".into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        c.sync(t0());
        assert_eq!(c.pods.len(), 1);
        assert_eq!(c.pods_on("n1").len(), 1);
        c.run_all(t0());
        // n1 loses the label: its pod goes, and the status stops counting the node.
        c.nodes[0] = node("n1", vec![], &[("disk", "hdd"), ("cores", "8")]);
        let plan = c.sync(t0() + chrono::Duration::seconds(1));
        assert!(plan
            .actions
            .iter()
            .any(|a| matches!(a, DaemonSetAction::DeletePod { name } if name == "agent-00001")));
        assert!(c.pods.is_empty());
        assert!(c
            .events
            .iter()
            .any(|e| e.message == "Deleted pod: agent-00001"));
    }

    #[test]
    fn noexecute_evicts_noschedule_keeps_running_pod() {
        let mut c = three_nodes_one_tainted();
        c.sync(t0());
        c.run_all(t0());
        c.nodes[0] = node("n1", vec![taint("maintenance", "NoSchedule")], &[]);
        c.sync(t0() + chrono::Duration::seconds(1));
        assert_eq!(c.pods_on("n1").len(), 1, "NoSchedule does not evict");
        let s = c.ds.status.clone().expect("status");
        assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (1, 1));
        c.nodes[0] = node("n1", vec![taint("maintenance", "NoExecute")], &[]);
        c.sync(t0() + chrono::Duration::seconds(2));
        assert!(c.pods_on("n1").is_empty(), "NoExecute evicts");
    }

    #[test]
    fn failed_and_duplicate_pods_are_removed_then_replaced() {
        let mut c = three_nodes_one_tainted();
        c.sync(t0());
        c.run_all(t0());
        // A second pod shows up on n1 (e.g. a stale create) and n2's pod fails.
        let mut dup = c.pods_on("n1")[0].clone();
        dup.metadata.name = Some("agent-zzzzz".into());
        dup.metadata.creation_timestamp = Some(Time(t0() + chrono::Duration::seconds(30)));
        c.pods.push(dup);
        for p in &mut c.pods {
            if target_node(p).as_deref() == Some("n2") {
                p.status = Some(PodStatus {
                    phase: Some("Failed".into()),
                    ..Default::default()
                });
            }
        }
        let plan = c.sync(t0() + chrono::Duration::seconds(40));
        let mut deleted: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                DaemonSetAction::DeletePod { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            vec!["agent-00002", "agent-zzzzz"],
            "the newer duplicate goes"
        );
        assert!(c.events.iter().any(|e| {
            e.reason == "FailedDaemonPod"
            && e.message
                == "Found failed daemon pod kube-system/agent-00002 on node n2, will try to kill it"
        }));
        // Next sync recreates n2's pod.
        c.sync(t0() + chrono::Duration::seconds(41));
        assert_eq!(c.pods_on("n2").len(), 1);
        assert_eq!(c.pods_on("n1").len(), 1);
    }

    #[test]
    fn rolling_update_replaces_one_node_at_a_time() {
        let mut c = three_nodes_one_tainted();
        c.nodes[2] = node("n3", vec![], &[]);
        c.sync(t0());
        c.run_all(t0());
        c.sync(t0());
        assert_eq!(rollout_complete(&c.ds), Ok(true));
        let old_hash = label(&c.pods[0].metadata, CONTROLLER_REVISION_HASH_LABEL)
            .expect("hash")
            .to_string();

        // New image: generation 2.
        c.ds = DaemonSet {
            status: c.ds.status.clone(),
            ..daemonset("agent:2")
        };
        c.ds.metadata.generation = Some(2);
        let mut now = t0() + chrono::Duration::seconds(10);
        let mut max_down = 0;
        for _ in 0..20 {
            c.sync(now);
            let down = 3 - c
                .pods
                .iter()
                .filter(|p| is_pod_available(p, 0, now))
                .count();
            max_down = max_down.max(down);
            if rollout_complete(&c.ds) == Ok(true) {
                break;
            }
            // kubelet: new pods become ready a little later.
            now += chrono::Duration::seconds(5);
            c.run_all(now);
        }
        assert_eq!(rollout_complete(&c.ds), Ok(true));
        assert_eq!(max_down, 1, "maxUnavailable=1 keeps two of three serving");
        assert_eq!(c.pods.len(), 3);
        assert!(
            c.pods
                .iter()
                .all(|p| label(&p.metadata, CONTROLLER_REVISION_HASH_LABEL)
                    != Some(old_hash.as_str()))
        );
        let image = c.pods[0]
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("agent:2"));
        assert_eq!(c.revisions.len(), 2);
        assert_eq!(
            c.ds.status.as_ref().and_then(|s| s.observed_generation),
            Some(2)
        );
    }

    #[test]
    fn on_delete_never_replaces_and_rollback_renumbers() {
        let mut c = three_nodes_one_tainted();
        if let Some(s) = c.ds.spec.as_mut() {
            s.update_strategy = Some(DaemonSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            });
        }
        c.sync(t0());
        c.run_all(t0());
        let mut v2 = daemonset("agent:2");
        v2.spec = v2.spec.map(|mut s| {
            s.update_strategy = c.ds.spec.as_ref().and_then(|x| x.update_strategy.clone());
            s
        });
        v2.status = c.ds.status.clone();
        c.ds = v2;
        let plan = c.sync(t0() + chrono::Duration::seconds(1));
        assert!(!plan
            .actions
            .iter()
            .any(|a| matches!(a, DaemonSetAction::DeletePod { .. })));
        assert_eq!(
            c.ds.status
                .as_ref()
                .and_then(|s| s.updated_number_scheduled),
            Some(0)
        );
        assert_eq!(c.revisions.len(), 2);
        // Rolling back to the first template reuses its revision with a new number.
        let mut v1 = daemonset("agent:1");
        v1.spec = v1.spec.map(|mut s| {
            s.update_strategy = c.ds.spec.as_ref().and_then(|x| x.update_strategy.clone());
            s
        });
        v1.status = c.ds.status.clone();
        c.ds = v1;
        let plan = c.sync(t0() + chrono::Duration::seconds(2));
        assert!(plan
            .actions
            .iter()
            .any(|a| matches!(a, DaemonSetAction::RenumberRevision { revision: 3, .. })));
        assert_eq!(
            c.ds.status
                .as_ref()
                .and_then(|s| s.updated_number_scheduled),
            Some(2)
        );
    }

    #[test]
    fn percentage_max_unavailable_rounds_up() {
        let mut ds = daemonset("x");
        if let Some(ru) = ds
            .spec
            .as_mut()
            .and_then(|s| s.update_strategy.as_mut())
            .and_then(|u| u.rolling_update.as_mut())
        {
            ru.max_unavailable = Some(IntOrString::String("30%".into()));
        }
        assert_eq!(max_unavailable(&ds, 10), Ok(3));
        assert_eq!(max_unavailable(&ds, 5), Ok(2));
        assert_eq!(max_unavailable(&ds, 0), Ok(0));
    }

    #[test]
    fn host_network_pods_tolerate_network_unavailable() {
        let spec = daemon_pod_spec(Some(&PodSpec {
            host_network: Some(true),
            ..Default::default()
        }));
        let n = node(
            "n",
            vec![taint(
                "node.kubernetes.io/network-unavailable",
                "NoSchedule",
            )],
            &[],
        );
        assert_eq!(node_should_run(&n, &spec), (true, true));
        let plain = daemon_pod_spec(None);
        assert_eq!(node_should_run(&n, &plain), (false, true));
    }
}
