//! The StatefulSet controller's decisions: stable pod identities `<set>-<ordinal>`, their
//! claims from `volumeClaimTemplates`, ordered or parallel scaling, rolling updates with a
//! partition, the set's `ControllerRevision` history, and its status.
//!
//! With `podManagementPolicy: OrderedReady` (the default) a sync creates at most one pod,
//! and only once every lower ordinal is Running and Ready (and available after
//! `minReadySeconds`); scale-down deletes one pod at a time from the highest ordinal and
//! waits for it to be gone. `Parallel` creates and deletes everything at once. Rolling
//! updates go from the highest ordinal down to `partition`, one pod at a time, each
//! waiting for the replaced pod to be healthy. Pods below the partition are (re)created
//! from the current revision's template, which comes from its `ControllerRevision`.
//!
//! Claims are created before their pod and never deleted (the `Retain` retention policy;
//! `Delete` policies are not implemented). Pods whose identity or volumes drifted from the
//! spec are not patched back.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod_util::{
    available_at, is_controlled_by_uid, is_pod_available, is_pod_ready, is_terminating, pod_phase,
};
use super::workload::{
    controller_ref, delay_until, earliest, label, name_of, pod_from_template, revision_step,
    revisions_to_prune, set_label, template_hash, template_of_revision, template_revision, Event,
    RevisionStep, WorkloadError, CONTROLLER_REVISION_HASH_LABEL, REVISION_HASH_LABEL,
};
use crate::apimachinery::labels;

const KIND: &str = "StatefulSet";
const API_VERSION: &str = "apps/v1";

/// Label with the pod's own name, so a Service can select exactly one member.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// One step of a StatefulSet sync. Execute in order; stop at the first failure (except an
/// `AlreadyExists` on `CreateClaim`, which means the claim is there) and plan again.
#[derive(Debug, Clone, PartialEq)]
pub enum StatefulSetAction {
    /// Create this `ControllerRevision` (the template's snapshot).
    CreateRevision(Box<ControllerRevision>),
    /// Set `revision` of an existing `ControllerRevision` (after a rollback to it).
    RenumberRevision { name: String, revision: i64 },
    /// Delete an old `ControllerRevision` beyond `revisionHistoryLimit`.
    DeleteRevision { name: String },
    /// Create the claim `pod` will mount.
    CreateClaim {
        claim: Box<PersistentVolumeClaim>,
        pod: String,
        set: String,
    },
    /// Create a member pod (it has its final name).
    CreatePod { pod: Box<Pod>, set: String },
    /// Delete a member pod.
    DeletePod { name: String, set: String },
    /// Replace the StatefulSet's status (the `status` subresource).
    UpdateStatus(Box<StatefulSetStatus>),
    /// Record an event on the StatefulSet.
    Event(Event),
}

impl StatefulSetAction {
    /// The event to record after the action succeeded.
    pub fn success_event(&self) -> Option<Event> {
        match self {
            StatefulSetAction::CreateClaim { claim, pod, set } => Some(Event::normal(
                "SuccessfulCreate",
                format!(
                    "create Claim {} Pod {pod} in StatefulSet {set} success",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            StatefulSetAction::CreatePod { pod, set } => Some(Event::normal(
                "SuccessfulCreate",
                format!(
                    "create Pod {} in StatefulSet {set} successful",
                    pod.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            StatefulSetAction::DeletePod { name, set } => Some(Event::normal(
                "SuccessfulDelete",
                format!("delete Pod {name} in StatefulSet {set} successful"),
            )),
            _ => None,
        }
    }

    /// The event to record after the action failed with `error`.
    pub fn failure_event(&self, error: &str) -> Option<Event> {
        match self {
            StatefulSetAction::CreateClaim { claim, pod, set } => Some(Event::warning(
                "FailedCreate",
                format!(
                    "create Claim {} for Pod {pod} in StatefulSet {set} failed error: {error}",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            StatefulSetAction::CreatePod { pod, set } => Some(Event::warning(
                "FailedCreate",
                format!(
                    "create Pod {} in StatefulSet {set} failed error: {error}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            StatefulSetAction::DeletePod { name, set } => Some(Event::warning(
                "FailedDelete",
                format!("delete Pod {name} in StatefulSet {set} failed error: {error}"),
            )),
            _ => None,
        }
    }
}

/// The result of one StatefulSet sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatefulSetPlan {
    pub actions: Vec<StatefulSetAction>,
    /// Sync again after this long even without a watch event (`minReadySeconds`).
    pub requeue_after: Option<std::time::Duration>,
}

/// The ordinal in a member pod's name `<set>-<ordinal>`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let (parent, ord) = pod_name.rsplit_once('-')?;
    if parent != set_name || ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ord.parse().ok()
}

fn running_and_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running" && is_pod_ready(pod)
}

fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !is_terminating(pod)
}

/// Everything the planner derives from the set once.
struct Ctx<'a> {
    set: &'a StatefulSet,
    name: String,
    namespace: String,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    min_ready: i32,
    now: DateTime<Utc>,
    claims: BTreeSet<&'a str>,
}

impl Ctx<'_> {
    fn pod_name(&self, ord: i32) -> String {
        format!("{}-{ord}", self.name)
    }

    /// The set's claims for ordinal `ord`: `<template>-<set>-<ord>`, labelled with the
    /// template's labels plus the selector's `matchLabels`.
    fn claims_for(&self, ord: i32) -> Vec<PersistentVolumeClaim> {
        let spec = self.set.spec.as_ref();
        let selector_labels = spec.and_then(|s| s.selector.match_labels.clone());
        spec.and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let tname = t.metadata.name.as_deref().filter(|n| !n.is_empty())?;
                let mut labels = t.metadata.labels.clone().unwrap_or_default();
                labels.extend(selector_labels.clone().unwrap_or_default());
                Some(PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(format!("{tname}-{}-{ord}", self.name)),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(labels).filter(|l| !l.is_empty()),
                        annotations: t.metadata.annotations.clone(),
                        ..Default::default()
                    },
                    spec: t.spec.clone(),
                    status: None,
                })
            })
            .collect()
    }

    fn missing_claims(&self, ord: i32, pod: &str) -> Vec<StatefulSetAction> {
        self.claims_for(ord)
            .into_iter()
            .filter(|c| {
                !c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| self.claims.contains(n))
            })
            .map(|claim| StatefulSetAction::CreateClaim {
                claim: Box::new(claim),
                pod: pod.to_string(),
                set: self.name.clone(),
            })
            .collect()
    }

    /// `newStatefulSetPod` from `template` at `revision`: identity, hostname/subdomain,
    /// claim volumes in place of same-named template volumes.
    fn new_pod(&self, template: &PodTemplateSpec, ord: i32, revision: &str) -> Pod {
        let name = self.pod_name(ord);
        let mut pod = pod_from_template(template, self.owner.clone(), &self.namespace);
        pod.metadata.name = Some(name.clone());
        set_label(&mut pod.metadata, POD_NAME_LABEL, &name);
        set_label(&mut pod.metadata, POD_INDEX_LABEL, &ord.to_string());
        set_label(&mut pod.metadata, CONTROLLER_REVISION_HASH_LABEL, revision);
        let mut spec = pod.spec.take().unwrap_or_default();
        spec.hostname = Some(name.clone());
        spec.subdomain = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|s| !s.is_empty());
        let templates = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_deref())
            .unwrap_or_default();
        let mut volumes: Vec<Volume> = Vec::new();
        for (t, claim) in templates
            .iter()
            .filter(|t| t.metadata.name.as_deref().is_some_and(|n| !n.is_empty()))
            .zip(self.claims_for(ord))
        {
            volumes.push(Volume {
                name: t.metadata.name.clone().unwrap_or_default(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.metadata.name.unwrap_or_default(),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        let claimed: BTreeSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
        volumes.extend(
            spec.volumes
                .take()
                .into_iter()
                .flatten()
                .filter(|v| !claimed.contains(&v.name)),
        );
        spec.volumes = Some(volumes).filter(|v| !v.is_empty());
        pod.spec = Some(spec);
        pod
    }

    fn available(&self, pod: &Pod) -> bool {
        is_pod_available(pod, self.min_ready, self.now)
    }
}

/// Plan one sync of `set`. `pods`, `claims` and `revisions` may hold anything in the
/// namespace: only pods and revisions controlled by the set count, and `claims` is only
/// consulted for which claim names exist.
pub fn plan_statefulset(
    set: &StatefulSet,
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    revisions: &[ControllerRevision],
    now: DateTime<Utc>,
) -> Result<StatefulSetPlan, WorkloadError> {
    let mut plan = StatefulSetPlan::default();
    let name = name_of(&set.metadata, KIND)?;
    let owner = controller_ref(API_VERSION, KIND, &set.metadata)?;
    let Some(spec) = set.spec.as_ref() else {
        return Ok(plan);
    };
    let cx = Ctx {
        set,
        name: name.clone(),
        namespace: set.metadata.namespace.clone().unwrap_or_default(),
        owner: owner.clone(),
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        now,
        claims: claims
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect(),
    };
    let old_status = set.status.clone().unwrap_or_default();

    // Revisions: the update revision holds the template; the current one is what the
    // status says, as long as it still exists.
    let own_revisions: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| is_controlled_by_uid(&r.metadata, &owner.uid))
        .collect();
    let hash = template_hash(&spec.template, old_status.collision_count);
    let update_revision = format!("{name}-{hash}");
    match revision_step(&own_revisions, &update_revision, |number| {
        template_revision(
            &update_revision,
            &set.metadata,
            &owner,
            &spec.template,
            (REVISION_HASH_LABEL, &hash),
            number,
        )
    }) {
        RevisionStep::UpToDate => {}
        RevisionStep::Create(r) => plan.actions.push(StatefulSetAction::CreateRevision(r)),
        RevisionStep::Renumber { name, revision } => plan
            .actions
            .push(StatefulSetAction::RenumberRevision { name, revision }),
    }
    let current = old_status
        .current_revision
        .as_deref()
        .and_then(|c| {
            own_revisions
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(c))
        })
        .copied();
    let current_revision = current
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_else(|| update_revision.clone());
    let current_template = current
        .filter(|_| current_revision != update_revision)
        .and_then(template_of_revision)
        .unwrap_or_else(|| spec.template.clone());

    // Members by ordinal: the live range [start, start+replicas) and the condemned rest.
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let mut slots: Vec<Option<&Pod>> = vec![None; replicas as usize];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    let mut members: Vec<&Pod> = Vec::new();
    for pod in pods {
        if !is_controlled_by_uid(&pod.metadata, &owner.uid)
            || !labels::matches(&spec.selector, pod.metadata.labels.as_ref())
        {
            continue;
        }
        let Some(ord) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| ordinal_of(&name, n))
        else {
            continue;
        };
        members.push(pod);
        if ord >= start && ord < start + replicas {
            slots[(ord - start) as usize] = Some(pod);
        } else {
            condemned.push((ord, pod));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate");
    let rolling = strategy == "RollingUpdate";
    // New pods below the partition keep the current revision.
    let version_for = |ord: i32| -> (&PodTemplateSpec, &str) {
        if rolling && ord < start + partition {
            (&current_template, current_revision.as_str())
        } else {
            (&spec.template, update_revision.as_str())
        }
    };

    // The lowest-ordinal unhealthy member (missing ones count), for scale-down.
    let first_unhealthy: Option<i32> = slots
        .iter()
        .enumerate()
        .find(|(_, p)| !p.is_some_and(healthy))
        .map(|(i, _)| start + i as i32)
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !healthy(p))
                .map(|(o, _)| *o)
        });

    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut current_delta = 0;

    let mut blocked = set.metadata.deletion_timestamp.is_some();
    // Live range, lowest ordinal first.
    if !blocked {
        for (i, slot) in slots.iter_mut().enumerate() {
            let ord = start + i as i32;
            let pod_name = cx.pod_name(ord);
            if let Some(pod) = *slot {
                let phase = pod_phase(pod);
                if (phase == "Failed" || phase == "Succeeded") && !is_terminating(pod) {
                    let (reason, type_word) = if phase == "Failed" {
                        ("RecreatingFailedPod", "failed")
                    } else {
                        ("RecreatingTerminatedPod", "terminated")
                    };
                    let message = format!(
                        "StatefulSet {}/{name} is recreating {type_word} Pod {pod_name}",
                        cx.namespace
                    );
                    plan.actions
                        .push(StatefulSetAction::Event(if phase == "Failed" {
                            Event::warning(reason, message)
                        } else {
                            Event::normal(reason, message)
                        }));
                    plan.actions.push(StatefulSetAction::DeletePod {
                        name: pod_name.clone(),
                        set: name.clone(),
                    });
                    deleted.insert(pod_name.clone());
                    *slot = None;
                }
            }
            match *slot {
                None => {
                    plan.actions.extend(cx.missing_claims(ord, &pod_name));
                    let (template, revision) = version_for(ord);
                    plan.actions.push(StatefulSetAction::CreatePod {
                        pod: Box::new(cx.new_pod(template, ord, revision)),
                        set: name.clone(),
                    });
                    if monotonic {
                        blocked = true;
                        break;
                    }
                }
                Some(pod) => {
                    if pod_phase(pod) == "Pending" {
                        plan.actions.extend(cx.missing_claims(ord, &pod_name));
                    }
                    if monotonic
                        && (is_terminating(pod) || !running_and_ready(pod) || !cx.available(pod))
                    {
                        blocked = true;
                        break;
                    }
                }
            }
        }
    }

    // Condemned members, highest ordinal first.
    if !blocked {
        for (ord, pod) in &condemned {
            if is_terminating(pod) {
                if monotonic {
                    blocked = true;
                    break;
                }
                continue;
            }
            let is_first_unhealthy = first_unhealthy == Some(*ord);
            if monotonic && !is_first_unhealthy && (!running_and_ready(pod) || !cx.available(pod)) {
                blocked = true;
                break;
            }
            let pod_name = cx.pod_name(*ord);
            plan.actions.push(StatefulSetAction::DeletePod {
                name: pod_name.clone(),
                set: name.clone(),
            });
            if monotonic {
                blocked = true;
                break;
            }
        }
    }

    // Rolling update: highest ordinal first, down to the partition.
    if !blocked && rolling {
        for i in (partition.max(0)..replicas).rev() {
            match slots[i as usize] {
                // Created in this sync: wait for it.
                None => break,
                Some(pod) => {
                    let revision = label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL);
                    if revision != Some(update_revision.as_str()) && !is_terminating(pod) {
                        plan.actions.push(StatefulSetAction::DeletePod {
                            name: cx.pod_name(start + i),
                            set: name.clone(),
                        });
                        if revision == Some(current_revision.as_str()) {
                            current_delta += 1;
                        }
                        break;
                    }
                    if !healthy(pod) {
                        break;
                    }
                }
            }
        }
    }

    // Status over the members still standing after this sync's recreations.
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current_revision.clone()),
        update_revision: Some(update_revision.clone()),
        collision_count: Some(old_status.collision_count.unwrap_or(0)),
        conditions: old_status.conditions.clone(),
        ..Default::default()
    };
    let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
    let mut wake = None;
    for pod in members.iter().filter(|p| {
        !p.metadata
            .name
            .as_ref()
            .is_some_and(|n| deleted.contains(n))
    }) {
        status.replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            if cx.available(pod) {
                available += 1;
            } else {
                wake = earliest(wake, available_at(pod, cx.min_ready, now));
            }
        }
        if !is_terminating(pod) {
            let revision = label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL);
            if revision == Some(current_revision.as_str()) {
                cur += 1;
            }
            if revision == Some(update_revision.as_str()) {
                upd += 1;
            }
        }
    }
    cur -= current_delta;
    if rolling && upd == status.replicas && ready == status.replicas {
        cur = upd;
        status.current_revision = Some(update_revision.clone());
    }
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(cur);
    status.updated_replicas = Some(upd);

    // History beyond revisionHistoryLimit, keeping every revision a member uses.
    let live: BTreeSet<&str> = members
        .iter()
        .filter_map(|p| label(&p.metadata, CONTROLLER_REVISION_HASH_LABEL))
        .chain([current_revision.as_str(), update_revision.as_str()])
        .collect();
    let is_live =
        |r: &ControllerRevision| r.metadata.name.as_deref().is_some_and(|n| live.contains(n));
    plan.actions.extend(
        revisions_to_prune(
            &own_revisions,
            &is_live,
            spec.revision_history_limit.unwrap_or(10),
        )
        .into_iter()
        .map(|name| StatefulSetAction::DeleteRevision { name }),
    );

    if set.status.as_ref() != Some(&status) {
        plan.actions
            .push(StatefulSetAction::UpdateStatus(Box::new(status)));
    }
    plan.requeue_after = wake.map(|at| delay_until(at, now));
    Ok(plan)
}

/// What `kubectl rollout status sts/x` reports: `Ok(true)` once the rollout is finished.
pub fn rollout_complete(set: &StatefulSet) -> Result<bool, String> {
    let spec = set.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if strategy
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let Some(status) = set.status.as_ref() else {
        return Ok(false);
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || set.metadata.generation.unwrap_or(0) > observed {
        return Ok(false);
    }
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    if status.ready_replicas.unwrap_or(0) < replicas {
        return Ok(false);
    }
    if let Some(partition) = strategy
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
    {
        return Ok(status.updated_replicas.unwrap_or(0) >= replicas - partition);
    }
    Ok(status.update_revision == status.current_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{
        Container, EmptyDirVolumeSource, PersistentVolumeClaimSpec, PodCondition, PodSpec,
        PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use std::collections::BTreeMap;

    const UID: &str = "sts-uid-1";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).expect("valid time")
    }

    fn web(replicas: i32, image: &str) -> StatefulSet {
        let app: BTreeMap<String, String> = [("app".to_string(), "nginx".to_string())].into();
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some(UID.into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
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
                            name: "nginx".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        volumes: Some(vec![
                            Volume {
                                name: "www".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            },
                            Volume {
                                name: "cache".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        ..Default::default()
                    }),
                    status: None,
                }]),
                pod_management_policy: Some("OrderedReady".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: None,
                }),
                revision_history_limit: Some(10),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Applies plans like the lead's loop and plays kubelet: created pods start Pending;
    /// deleted pods linger as Terminating until `kubelet` runs.
    struct Cluster {
        set: StatefulSet,
        pods: Vec<Pod>,
        claims: Vec<PersistentVolumeClaim>,
        revisions: Vec<ControllerRevision>,
        events: Vec<Event>,
    }

    impl Cluster {
        fn new(set: StatefulSet) -> Self {
            Cluster {
                set,
                pods: vec![],
                claims: vec![],
                revisions: vec![],
                events: vec![],
            }
        }

        fn sync(&mut self, now: DateTime<Utc>) -> StatefulSetPlan {
            let plan = plan_statefulset(&self.set, &self.pods, &self.claims, &self.revisions, now)
                .expect("plan");
            for a in &plan.actions {
                match a {
                    StatefulSetAction::CreateRevision(r) => self.revisions.push((**r).clone()),
                    StatefulSetAction::RenumberRevision { name, revision } => {
                        for r in &mut self.revisions {
                            if r.metadata.name.as_deref() == Some(name) {
                                r.revision = *revision;
                            }
                        }
                    }
                    StatefulSetAction::DeleteRevision { name } => self
                        .revisions
                        .retain(|r| r.metadata.name.as_deref() != Some(name)),
                    StatefulSetAction::CreateClaim { claim, .. } => {
                        self.claims.push((**claim).clone())
                    }
                    StatefulSetAction::CreatePod { pod, .. } => {
                        let mut p = (**pod).clone();
                        p.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(p);
                    }
                    StatefulSetAction::DeletePod { name, .. } => {
                        for p in &mut self.pods {
                            if p.metadata.name.as_deref() == Some(name) {
                                p.metadata.deletion_timestamp = Some(Time(now));
                            }
                        }
                    }
                    StatefulSetAction::UpdateStatus(s) => self.set.status = Some((**s).clone()),
                    StatefulSetAction::Event(e) => self.events.push(e.clone()),
                }
                if let Some(e) = a.success_event() {
                    self.events.push(e);
                }
            }
            plan
        }

        /// Terminating pods go away; pending pods become Running and Ready.
        fn kubelet(&mut self, now: DateTime<Utc>) {
            self.pods
                .retain(|p| p.metadata.deletion_timestamp.is_none());
            for p in &mut self.pods {
                if pod_phase(p) == "Pending" {
                    p.status = Some(PodStatus {
                        phase: Some("Running".into()),
                        conditions: Some(vec![PodCondition {
                            type_: "Ready".into(),
                            status: "True".into(),
                            last_transition_time: Some(Time(now)),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    });
                }
            }
        }

        fn names(&self) -> Vec<String> {
            let mut n: Vec<String> = self
                .pods
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            n.sort();
            n
        }

        fn pod(&self, name: &str) -> &Pod {
            self.pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .expect("pod exists")
        }

        fn image(&self, name: &str) -> String {
            self.pod(name)
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default()
        }
    }

    fn created(plan: &StatefulSetPlan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                StatefulSetAction::CreatePod { pod, .. } => pod.metadata.name.clone(),
                _ => None,
            })
            .collect()
    }

    fn deleted(plan: &StatefulSetPlan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                StatefulSetAction::DeletePod { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ordered_ready_scale_up_creates_one_pod_per_ready_predecessor() {
        let mut c = Cluster::new(web(3, "nginx:1"));
        let mut now = t0();
        let plan = c.sync(now);
        assert_eq!(created(&plan), vec!["web-0"]);
        // The claim comes before the pod.
        let claim_at = plan
            .actions
            .iter()
            .position(|a| matches!(a, StatefulSetAction::CreateClaim { .. }));
        let pod_at = plan
            .actions
            .iter()
            .position(|a| matches!(a, StatefulSetAction::CreatePod { .. }));
        assert!(claim_at < pod_at && claim_at.is_some());
        assert_eq!(c.claims[0].metadata.name.as_deref(), Some("www-web-0"));
        assert_eq!(
            c.claims[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("nginx")
        );
        assert!(c
            .events
            .iter()
            .any(|e| e.message == "create Claim www-web-0 Pod web-0 in StatefulSet web success"));
        assert!(c.events.iter().any(|e| e.reason == "SuccessfulCreate"
            && e.message == "create Pod web-0 in StatefulSet web successful"));

        let p0 = c.pod("web-0");
        let labels = p0.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(POD_NAME_LABEL).map(String::as_str),
            Some("web-0")
        );
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("0"));
        let rev = c
            .set
            .status
            .as_ref()
            .and_then(|s| s.update_revision.clone());
        assert_eq!(labels.get(CONTROLLER_REVISION_HASH_LABEL), rev.as_ref());
        assert!(rev.as_deref().is_some_and(|r| r.starts_with("web-")));
        let spec = p0.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().expect("volumes");
        let www: Vec<&Volume> = vols.iter().filter(|v| v.name == "www").collect();
        assert_eq!(www.len(), 1, "the claim replaces the template's www volume");
        assert_eq!(
            www[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("www-web-0")
        );
        assert!(vols
            .iter()
            .any(|v| v.name == "cache" && v.empty_dir.is_some()));
        let owner = &p0.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", UID)
        );

        // web-0 still pending: nothing more happens.
        now += chrono::Duration::seconds(1);
        assert!(created(&c.sync(now)).is_empty());
        for expect in ["web-1", "web-2"] {
            c.kubelet(now);
            now += chrono::Duration::seconds(1);
            assert_eq!(created(&c.sync(now)), vec![expect.to_string()]);
            now += chrono::Duration::seconds(1);
            assert!(created(&c.sync(now)).is_empty(), "waits for {expect}");
        }
        c.kubelet(now);
        now += chrono::Duration::seconds(1);
        let plan = c.sync(now);
        assert!(created(&plan).is_empty());
        assert_eq!(c.names(), vec!["web-0", "web-1", "web-2"]);
        let s = c.set.status.clone().expect("status");
        assert_eq!(
            (
                s.replicas,
                s.ready_replicas,
                s.current_replicas,
                s.updated_replicas
            ),
            (3, Some(3), Some(3), Some(3))
        );
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.current_revision, s.update_revision);
        assert_eq!(rollout_complete(&c.set), Ok(true));
    }

    #[test]
    fn ordered_scale_down_removes_highest_first_one_at_a_time_and_keeps_claims() {
        let mut c = Cluster::new(web(3, "nginx:1"));
        let mut now = t0();
        for _ in 0..4 {
            c.sync(now);
            c.kubelet(now);
            now += chrono::Duration::seconds(1);
        }
        assert_eq!(c.names(), vec!["web-0", "web-1", "web-2"]);
        c.set.spec.as_mut().expect("spec").replicas = Some(1);
        let plan = c.sync(now);
        assert_eq!(deleted(&plan), vec!["web-2"]);
        assert!(c
            .events
            .iter()
            .any(|e| e.message == "delete Pod web-2 in StatefulSet web successful"));
        // web-2 is still terminating: web-1 must wait.
        now += chrono::Duration::seconds(1);
        assert!(deleted(&c.sync(now)).is_empty());
        c.kubelet(now);
        now += chrono::Duration::seconds(1);
        assert_eq!(deleted(&c.sync(now)), vec!["web-1"]);
        c.kubelet(now);
        now += chrono::Duration::seconds(1);
        assert!(deleted(&c.sync(now)).is_empty());
        assert_eq!(c.names(), vec!["web-0"]);
        assert_eq!(c.claims.len(), 3, "claims are retained");
        assert_eq!(c.set.status.as_ref().map(|s| s.replicas), Some(1));
    }

    #[test]
    fn parallel_policy_creates_and_deletes_all_at_once() {
        let mut set = web(3, "nginx:1");
        set.spec.as_mut().expect("spec").pod_management_policy = Some("Parallel".into());
        let mut c = Cluster::new(set);
        let plan = c.sync(t0());
        assert_eq!(created(&plan), vec!["web-0", "web-1", "web-2"]);
        c.set.spec.as_mut().expect("spec").replicas = Some(0);
        let plan = c.sync(t0() + chrono::Duration::seconds(1));
        let mut d = deleted(&plan);
        d.sort();
        assert_eq!(d, vec!["web-0", "web-1", "web-2"]);
    }

    #[test]
    fn rolling_update_goes_down_from_highest_waiting_for_readiness() {
        let mut c = Cluster::new(web(3, "nginx:1"));
        let mut now = t0();
        for _ in 0..4 {
            c.sync(now);
            c.kubelet(now);
            now += chrono::Duration::seconds(1);
        }
        c.sync(now);
        let old_rev = c
            .set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone());
        let mut v2 = web(3, "nginx:2");
        v2.metadata.generation = Some(2);
        v2.status = c.set.status.clone();
        c.set = v2;

        let mut order = Vec::new();
        for _ in 0..20 {
            now += chrono::Duration::seconds(1);
            let plan = c.sync(now);
            let d = deleted(&plan);
            assert!(d.len() <= 1, "one pod at a time");
            order.extend(d);
            let unhealthy = c.pods.iter().filter(|p| !healthy(p)).count();
            assert!(unhealthy <= 1);
            if rollout_complete(&c.set) == Ok(true) {
                break;
            }
            c.kubelet(now);
        }
        assert_eq!(order, vec!["web-2", "web-1", "web-0"]);
        assert_eq!(rollout_complete(&c.set), Ok(true));
        for n in ["web-0", "web-1", "web-2"] {
            assert_eq!(c.image(n), "nginx:2");
        }
        let s = c.set.status.clone().expect("status");
        assert_ne!(s.current_revision, old_rev);
        assert_eq!(s.current_revision, s.update_revision);
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(c.revisions.len(), 2);
    }

    #[test]
    fn partition_keeps_lower_ordinals_on_current_revision_even_when_recreated() {
        let mut c = Cluster::new(web(3, "nginx:1"));
        let mut now = t0();
        for _ in 0..4 {
            c.sync(now);
            c.kubelet(now);
            now += chrono::Duration::seconds(1);
        }
        c.sync(now);
        let mut v2 = web(3, "nginx:2");
        v2.metadata.generation = Some(2);
        v2.spec.as_mut().expect("spec").update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        v2.status = c.set.status.clone();
        c.set = v2;
        for _ in 0..6 {
            now += chrono::Duration::seconds(1);
            c.sync(now);
            c.kubelet(now);
        }
        assert_eq!(c.image("web-2"), "nginx:2");
        assert_eq!(c.image("web-1"), "nginx:1");
        assert_eq!(
            rollout_complete(&c.set),
            Ok(true),
            "partitioned roll out complete"
        );
        let s = c.set.status.clone().expect("status");
        assert_eq!((s.updated_replicas, s.current_replicas), (Some(1), Some(2)));
        assert_ne!(s.current_revision, s.update_revision);

        // web-0 fails: it is recreated from the current (old) template.
        for p in &mut c.pods {
            if p.metadata.name.as_deref() == Some("web-0") {
                p.status = Some(PodStatus {
                    phase: Some("Failed".into()),
                    ..Default::default()
                });
            }
        }
        now += chrono::Duration::seconds(1);
        let plan = c.sync(now);
        assert_eq!(deleted(&plan), vec!["web-0"]);
        assert_eq!(created(&plan), vec!["web-0"]);
        assert!(c.events.iter().any(|e| e.reason == "RecreatingFailedPod"
            && e.message == "StatefulSet default/web is recreating failed Pod web-0"));
        let recreated = plan
            .actions
            .iter()
            .find_map(|a| match a {
                StatefulSetAction::CreatePod { pod, .. } => Some(pod.clone()),
                _ => None,
            })
            .expect("recreated");
        let image = recreated
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("nginx:1"));
        assert_eq!(
            label(&recreated.metadata, CONTROLLER_REVISION_HASH_LABEL),
            s.current_revision.as_deref()
        );
    }

    #[test]
    fn on_delete_leaves_pods_alone() {
        let mut set = web(2, "nginx:1");
        set.spec.as_mut().expect("spec").update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        let mut c = Cluster::new(set.clone());
        let mut now = t0();
        for _ in 0..3 {
            c.sync(now);
            c.kubelet(now);
            now += chrono::Duration::seconds(1);
        }
        let mut v2 = set;
        if let Some(s) = v2.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            s.containers[0].image = Some("nginx:2".into());
        }
        v2.status = c.set.status.clone();
        c.set = v2;
        let plan = c.sync(now);
        assert!(deleted(&plan).is_empty());
        assert_eq!(
            c.set.status.as_ref().and_then(|s| s.updated_replicas),
            Some(0)
        );
        assert!(rollout_complete(&c.set).is_err());
    }

    #[test]
    fn ordinals_parse_only_for_members() {
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("my-web", "my-web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-"), None);
    }
}
