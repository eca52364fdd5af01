//! The ReplicaSet controller's decisions, without I/O: how many pods to create from the
//! template, which pods to delete (ranked as kube-controller-manager ranks them), the
//! status to report, the pod object to create, and which pods to adopt or release.
//!
//! The loop around it (watchers, expectations, the API calls, retries) belongs to the
//! caller: it passes the ReplicaSet and the pods it controls, executes the plan, and writes
//! `status` back through the status subresource when `status_changed`.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use crate::apimachinery::labels;
use crate::controllers::pod_util::{
    controller_of, is_pod_active, is_pod_available, is_pod_ready, rank_pods_for_deletion_at,
};

/// At most this many pods are created or deleted in one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: u32 = 500;

/// The condition type a ReplicaSet reports when it cannot create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What one sync of a ReplicaSet should do.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSetPlan {
    /// Pods to create from the template ([`pod_from_template`]), at most [`BURST_REPLICAS`].
    pub create: u32,
    /// Names of owned pods to delete, the best candidates first, at most [`BURST_REPLICAS`].
    pub delete: Vec<String>,
    /// The status computed from the pods as they are now (before this plan runs).
    pub status: ReplicaSetStatus,
    /// Whether `status` differs from the ReplicaSet's current status (write it only then).
    pub status_changed: bool,
}

/// Why creating or deleting pods failed, for the `ReplicaFailure` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFailureReason {
    FailedCreate,
    FailedDelete,
}

impl ReplicaFailureReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::FailedCreate => "FailedCreate",
            Self::FailedDelete => "FailedDelete",
        }
    }
}

fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

/// Whether `pod`'s controller reference points at `rs` (by UID when the ReplicaSet has one).
fn owned_by(rs: &ReplicaSet, pod: &Pod) -> bool {
    crate::controllers::pod_util::is_controlled_by(
        &pod.metadata,
        "ReplicaSet",
        rs_name(rs),
        rs.metadata.uid.as_deref(),
    )
}

fn same_namespace(rs: &ReplicaSet, pod: &Pod) -> bool {
    match (&rs.metadata.namespace, &pod.metadata.namespace) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn selects(rs: &ReplicaSet, pod: &Pod) -> bool {
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    // An empty selector would claim every pod in the namespace; validation forbids it, and
    // the controller must not act on it either.
    selector.is_some_and(|s| !labels::is_empty(s))
        && labels::selector_matches(selector, pod.metadata.labels.as_ref())
}

/// Whether the ReplicaSet should adopt this orphan: same namespace, its selector matches the
/// pod's labels, the pod has no controller, is active (not terminal, not being deleted), and
/// the ReplicaSet itself is not being deleted.
pub fn should_adopt(rs: &ReplicaSet, pod: &Pod) -> bool {
    rs.metadata.deletion_timestamp.is_none()
        && controller_of(&pod.metadata).is_none()
        && is_pod_active(pod)
        && same_namespace(rs, pod)
        && selects(rs, pod)
}

/// Whether the ReplicaSet should release (orphan) a pod it controls because its selector no
/// longer matches. Pods already being deleted are left alone, as upstream does.
pub fn should_release(rs: &ReplicaSet, pod: &Pod) -> bool {
    owned_by(rs, pod) && pod.metadata.deletion_timestamp.is_none() && !selects(rs, pod)
}

/// The pod to create for `rs`: `generateName: <rs>-`, the template's labels, annotations,
/// finalizers and spec, and a controller reference to the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let name = rs_name(rs);
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            finalizers: tmeta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: name.to_string(),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// Plans one sync of `rs` given the pods it controls (`owned_pods`; terminal, deleting and
/// no-longer-selected pods among them are ignored, as upstream filters them out).
pub fn plan_replicaset<P: Borrow<Pod>>(
    rs: &ReplicaSet,
    owned_pods: &[P],
    now: DateTime<Utc>,
) -> ReplicaSetPlan {
    let spec = rs.spec.as_ref();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let active: Vec<&Pod> = owned_pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| is_pod_active(p) && !should_release(rs, p))
        .collect();

    let mut create = 0;
    let mut delete = Vec::new();
    // A ReplicaSet being deleted only reports status; the garbage collector removes pods.
    if rs.metadata.deletion_timestamp.is_none() {
        let have = active.len();
        let want = usize::try_from(desired).unwrap_or(0);
        if have < want {
            create = u32::try_from(want - have)
                .unwrap_or(u32::MAX)
                .min(BURST_REPLICAS);
        } else if have > want {
            let burst = usize::try_from(BURST_REPLICAS).unwrap_or(usize::MAX);
            let n = (have - want).min(burst);
            let mut ranked = active.clone();
            if n < ranked.len() {
                rank_pods_for_deletion_at(&mut ranked, &active, Some(now));
            }
            delete = ranked
                .iter()
                .take(n)
                .filter_map(|p| p.metadata.name.clone())
                .collect();
        }
    }

    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let template_selector = LabelSelector {
        match_labels: template_labels,
        match_expressions: None,
    };
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p| labels::matches(&template_selector, p.metadata.labels.as_ref()));
    let ready = count(&|p| is_pod_ready(p));
    let available = count(&|p| is_pod_available(p, min_ready, now));
    let old = rs.status.clone().unwrap_or_default();
    let nonzero = |v: i32| (v != 0).then_some(v);
    let status = ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation.filter(|g| *g != 0),
        conditions: old.conditions.clone(),
    };
    let status_changed = !same_status(&status, &old);
    ReplicaSetPlan {
        create,
        delete,
        status,
        status_changed,
    }
}

/// Status equality that treats an omitted count as 0, as the JSON form does.
fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let z = |v: Option<i32>| v.unwrap_or(0);
    let conds = |s: &ReplicaSetStatus| s.conditions.clone().unwrap_or_default();
    a.replicas == b.replicas
        && z(a.fully_labeled_replicas) == z(b.fully_labeled_replicas)
        && z(a.ready_replicas) == z(b.ready_replicas)
        && z(a.available_replicas) == z(b.available_replicas)
        && a.observed_generation.unwrap_or(0) == b.observed_generation.unwrap_or(0)
        && conds(a) == conds(b)
}

/// Records the outcome of executing a plan in `status`: a failure adds a `ReplicaFailure`
/// condition (kept as first reported while failures continue), success removes it.
pub fn record_manage_result(
    status: &mut ReplicaSetStatus,
    failure: Option<(ReplicaFailureReason, &str)>,
    now: DateTime<Utc>,
) {
    let mut conditions = status.conditions.take().unwrap_or_default();
    let present = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some((reason, message)) if !present => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(reason.as_str().into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(now)),
        }),
        None => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        Some(_) => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pod_util::tests::{label_map, pod, t};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-5d7c8".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: None,
                selector: LabelSelector {
                    match_labels: Some(label_map(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(label_map(&[("app", "web"), ("tier", "front")])),
                        annotations: Some(label_map(&[("note", "x")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "nginx".into(),
                            image: Some("nginx:1.27".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
            }),
            status: None,
        }
    }

    fn owned(mut p: Pod, rs: &ReplicaSet) -> Pod {
        p.metadata.namespace = Some("default".into());
        p.metadata.labels = Some(label_map(&[("app", "web"), ("tier", "front")]));
        p.metadata.owner_references = pod_from_template(rs).metadata.owner_references;
        p
    }

    #[test]
    fn creates_missing_pods_and_reports_status() {
        let r = rs(3);
        let pods = vec![owned(pod("a", 0, "n1", "Running", Some(5)), &r)];
        let plan = plan_replicaset(&r, &pods, t(10));
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.replicas, 1);
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.available_replicas, Some(1));
        assert_eq!(plan.status.fully_labeled_replicas, Some(1));
        assert_eq!(plan.status.observed_generation, Some(3));
        assert!(plan.status_changed);

        // Once the status is written back, the same pods report no change.
        let mut synced = r.clone();
        synced.status = Some(plan.status.clone());
        assert!(!plan_replicaset(&synced, &pods, t(10)).status_changed);
    }

    #[test]
    fn creation_is_capped_at_the_burst() {
        let plan = plan_replicaset(&rs(2000), &[] as &[Pod], t(0));
        assert_eq!(plan.create, BURST_REPLICAS);
        assert_eq!(plan.status.replicas, 0);
        assert_eq!(plan.status.ready_replicas, None);
    }

    #[test]
    fn scale_down_deletes_the_worst_pods_first() {
        let r = rs(2);
        let pods = vec![
            owned(pod("ready-old", 0, "n1", "Running", Some(5)), &r),
            owned(pod("pending", 20, "", "Pending", None), &r),
            owned(pod("ready-new", 10, "n2", "Running", Some(15)), &r),
            owned(pod("not-ready", 1, "n3", "Running", None), &r),
        ];
        let plan = plan_replicaset(&r, &pods, t(100));
        assert_eq!(plan.create, 0);
        assert_eq!(plan.delete, ["pending", "not-ready"]);
        assert_eq!(plan.status.replicas, 4);
        assert_eq!(plan.status.ready_replicas, Some(2));
    }

    #[test]
    fn terminal_and_deleting_pods_do_not_count() {
        let r = rs(2);
        let mut deleting = owned(pod("going", 0, "n1", "Running", Some(1)), &r);
        deleting.metadata.deletion_timestamp = Some(Time(t(50)));
        let pods = vec![
            owned(pod("done", 0, "n1", "Succeeded", None), &r),
            deleting,
            owned(pod("live", 0, "n1", "Running", Some(1)), &r),
        ];
        let plan = plan_replicaset(&r, &pods, t(60));
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.replicas, 1);
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_labels_are_checked() {
        let mut r = rs(2);
        if let Some(s) = r.spec.as_mut() {
            s.min_ready_seconds = Some(30);
        }
        let mut partial = owned(pod("partial", 0, "n1", "Running", Some(10)), &r);
        partial.metadata.labels = Some(label_map(&[("app", "web")]));
        let pods = vec![
            owned(pod("full", 0, "n1", "Running", Some(10)), &r),
            partial,
        ];
        let early = plan_replicaset(&r, &pods, t(20));
        assert_eq!(early.status.ready_replicas, Some(2));
        assert_eq!(early.status.available_replicas, None);
        assert_eq!(early.status.fully_labeled_replicas, Some(1));
        let later = plan_replicaset(&r, &pods, t(41));
        assert_eq!(later.status.available_replicas, Some(2));
    }

    #[test]
    fn a_replicaset_being_deleted_neither_creates_nor_deletes() {
        let mut r = rs(3);
        r.metadata.deletion_timestamp = Some(Time(t(1)));
        let plan = plan_replicaset(&r, &[] as &[Pod], t(2));
        assert_eq!(plan.create, 0);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn pod_from_template_carries_template_and_owner() {
        let r = rs(1);
        let p = pod_from_template(&r);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-5d7c8-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            p.metadata.labels,
            Some(label_map(&[("app", "web"), ("tier", "front")]))
        );
        assert_eq!(p.metadata.annotations, Some(label_map(&[("note", "x")])));
        let owner = controller_of(&p.metadata).expect("controller reference");
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.uid.as_str()
            ),
            ("apps/v1", "ReplicaSet", "rs-uid")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref());
        assert_eq!(image, Some("nginx:1.27"));
    }

    #[test]
    fn adoption_and_release_rules() {
        let r = rs(1);
        let mut orphan = pod("orphan", 0, "n1", "Running", Some(1));
        orphan.metadata.namespace = Some("default".into());
        orphan.metadata.labels = Some(label_map(&[("app", "web")]));
        assert!(should_adopt(&r, &orphan));

        let mut other_ns = orphan.clone();
        other_ns.metadata.namespace = Some("kube-system".into());
        assert!(!should_adopt(&r, &other_ns));

        let mut wrong_labels = orphan.clone();
        wrong_labels.metadata.labels = Some(label_map(&[("app", "db")]));
        assert!(!should_adopt(&r, &wrong_labels));

        let mut deleting = orphan.clone();
        deleting.metadata.deletion_timestamp = Some(Time(t(3)));
        assert!(!should_adopt(&r, &deleting));

        let mine = owned(orphan.clone(), &r);
        assert!(!should_adopt(&r, &mine), "already has a controller");
        assert!(!should_release(&r, &mine));

        let mut relabeled = mine.clone();
        relabeled.metadata.labels = Some(label_map(&[("app", "debug")]));
        assert!(should_release(&r, &relabeled));
        // A relabeled pod no longer counts towards the ReplicaSet.
        let plan = plan_replicaset(&r, &[relabeled], t(5));
        assert_eq!((plan.create, plan.status.replicas), (1, 0));
    }

    #[test]
    fn replica_failure_condition_is_set_once_and_cleared_on_success() {
        let mut status = ReplicaSetStatus::default();
        record_manage_result(
            &mut status,
            Some((ReplicaFailureReason::FailedCreate, "quota exceeded")),
            t(1),
        );
        record_manage_result(
            &mut status,
            Some((ReplicaFailureReason::FailedCreate, "still exceeded")),
            t(2),
        );
        let conds = status.conditions.clone().unwrap_or_default();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        assert_eq!(conds[0].message.as_deref(), Some("quota exceeded"));
        // The plan keeps the condition; only a recorded success removes it.
        let mut r = rs(0);
        r.status = Some(status.clone());
        assert_eq!(
            plan_replicaset(&r, &[] as &[Pod], t(3)).status.conditions,
            status.conditions
        );
        record_manage_result(&mut status, None, t(4));
        assert_eq!(status.conditions, None);
    }
}
