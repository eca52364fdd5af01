//! Pod predicates shared by the workload controllers (readiness, availability, activity,
//! controller references) and the scale-down ranking the ReplicaSet controller uses to
//! pick which pods to delete, with kube-controller-manager's rules (`ActivePodsWithRanks`).
//!
//! Everything here is pure: time is passed in, nothing talks to the API.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// Annotation whose (int32) value orders pods for deletion: lower cost goes first.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pod's `Ready` condition, if it reports one.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (strictly
/// longer, as upstream compares; with 0 a ready pod is available at once).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    let Some(cond) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &cond.last_transition_time {
        Some(Time(since)) => *since + chrono::Duration::seconds(i64::from(min_ready_seconds)) < now,
        None => false,
    }
}

/// When a ready pod that is not yet available becomes available, so the loop can look
/// again then (`None` if it is not ready, already available, or carries no ready time).
pub fn available_at(
    pod: &Pod,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if min_ready_seconds <= 0 || is_pod_available(pod, min_ready_seconds, now) {
        return None;
    }
    let cond = ready_condition(pod).filter(|c| c.status == "True")?;
    let since = cond.last_transition_time.as_ref()?.0;
    Some(since + chrono::Duration::seconds(i64::from(min_ready_seconds) + 1))
}

/// The pod's `status.phase` (empty when it has none yet).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod still counts as a replica: not `Succeeded`/`Failed` and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether the pod is being deleted (it has a deletion timestamp).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether `meta`'s controller reference carries `uid` (the owner's kind and name are
/// implied by the UID).
pub fn is_controlled_by_uid(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// Whether `meta`'s controller reference points at the object of `kind` named `name` (and,
/// when `uid` is known, with that UID: a same-named successor is a different owner).
pub fn is_controlled_by(meta: &ObjectMeta, kind: &str, name: &str, uid: Option<&str>) -> bool {
    controller_of(meta).is_some_and(|r| {
        r.kind == kind && r.name == name && uid.is_none_or(|u| u.is_empty() || r.uid == u)
    })
}

/// Orders pods so that the ones to delete first come first, for a scale-down. Colocation is
/// counted among `pods` themselves, and times are compared without logarithmic bucketing;
/// [`rank_pods_for_deletion_at`] takes the related pods and the clock.
pub fn rank_pods_for_deletion(pods: &mut [&Pod]) {
    let related: Vec<&Pod> = pods.to_vec();
    rank_pods_for_deletion_at(pods, &related, None);
}

/// Orders `pods` for deletion with upstream's `ActivePodsWithRanks` rules, in order:
/// unassigned before assigned; phase Pending < Unknown < Running; not ready before ready;
/// lower `pod-deletion-cost` first; more active `related` pods on the same node first
/// (doubled-up pods go first); ready for a shorter time first; more container restarts
/// first; newer first. With `now`, the two time rules compare `log2` of the age (as the
/// LogarithmicScaleDown feature does, on by default), ties broken by UID.
pub fn rank_pods_for_deletion_at(pods: &mut [&Pod], related: &[&Pod], now: Option<DateTime<Utc>>) {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related.iter().filter(|p| is_pod_active(p)) {
        *per_node.entry(node_name(p)).or_default() += 1;
    }
    let rank = |p: &Pod| per_node.get(node_name(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| compare_for_deletion(a, b, rank(a), rank(b), now));
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod_phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// "Later first", with a missing time before any time (upstream's `afterOrZero`).
fn later_or_missing_first(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    }
}

/// `floor(log2(age in ns))`, or -1 for a time not in the past.
fn log_age(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    match (now - t).num_nanoseconds() {
        Some(ns) if ns > 0 => i64::from(63 - ns.leading_zeros() as i32),
        Some(_) => -1,
        None => 63,
    }
}

/// Compares two times for deletion order: younger first, missing first; with a clock, by
/// logarithmic age bucket and then by UID.
fn compare_times(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
    now: Option<DateTime<Utc>>,
    pa: &Pod,
    pb: &Pod,
) -> Ordering {
    match (now, a, b) {
        (Some(now), Some(x), Some(y)) => match log_age(x, now).cmp(&log_age(y, now)) {
            Ordering::Equal => pa.metadata.uid.cmp(&pb.metadata.uid),
            other => other,
        },
        _ => later_or_missing_first(a, b),
    }
}

fn compare_for_deletion(
    a: &Pod,
    b: &Pod,
    rank_a: usize,
    rank_b: usize,
    now: Option<DateTime<Utc>>,
) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let by_phase = phase_ordinal(a).cmp(&phase_ordinal(b));
    if by_phase != Ordering::Equal {
        return by_phase;
    }
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let by_cost = deletion_cost(a).cmp(&deletion_cost(b));
    if by_cost != Ordering::Equal {
        return by_cost;
    }
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    if ra && rb {
        let (ta, tb) = (ready_since(a), ready_since(b));
        if ta != tb {
            return compare_times(ta, tb, now, a, b);
        }
    }
    let by_restarts = max_restarts(b).cmp(&max_restarts(a));
    if by_restarts != Ordering::Equal {
        return by_restarts;
    }
    let (ca, cb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ca != cb {
        return compare_times(ca, cb, now, a, b);
    }
    Ordering::Equal
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};

    pub(crate) fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    /// A pod named `name`, created at `created`, on `node` ("" = unscheduled), in `phase`,
    /// ready since `ready` (None = not ready).
    pub(crate) fn pod(
        name: &str,
        created: i64,
        node: &str,
        phase: &str,
        ready: Option<i64>,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(t(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(t(ready.unwrap_or(created)))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn available_at_is_when_min_ready_seconds_have_passed() {
        let ready10s = pod("a", 0, "n1", "Running", Some(0));
        let now = t(10);
        assert!(is_pod_available(&ready10s, 9, now));
        assert!(!is_pod_available(&ready10s, 10, now));
        assert_eq!(available_at(&ready10s, 30, now), Some(t(31)));
        assert_eq!(available_at(&ready10s, 5, now), None);
        let not_ready = pod("b", 0, "n1", "Running", None);
        assert_eq!(available_at(&not_ready, 30, now), None);
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn readiness_and_availability_follow_the_ready_condition() {
        let ready = pod("a", 0, "n1", "Running", Some(10));
        let not_ready = pod("b", 0, "n1", "Running", None);
        assert!(is_pod_ready(&ready));
        assert!(!is_pod_ready(&not_ready));
        assert!(is_pod_available(&ready, 0, t(10)));
        // minReadySeconds=5: ready at 10, available only strictly after 15.
        assert!(!is_pod_available(&ready, 5, t(15)));
        assert!(is_pod_available(&ready, 5, t(16)));
        assert!(!is_pod_available(&not_ready, 0, t(100)));
        let mut no_status = ready.clone();
        no_status.status = None;
        assert!(!is_pod_ready(&no_status));
    }

    #[test]
    fn terminal_or_deleting_pods_are_not_active() {
        let running = pod("a", 0, "n1", "Running", Some(1));
        assert!(is_pod_active(&running));
        assert!(!is_pod_active(&pod("b", 0, "n1", "Succeeded", None)));
        assert!(!is_pod_active(&pod("c", 0, "n1", "Failed", None)));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp = Some(Time(t(5)));
        assert!(!is_pod_active(&deleting));
    }

    #[test]
    fn controller_of_picks_the_controller_reference() {
        let mut meta = ObjectMeta::default();
        assert!(controller_of(&meta).is_none());
        meta.owner_references = Some(vec![
            OwnerReference {
                kind: "ConfigMap".into(),
                name: "x".into(),
                uid: "1".into(),
                ..Default::default()
            },
            OwnerReference {
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "2".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        assert_eq!(controller_of(&meta).map(|r| r.name.as_str()), Some("web-1"));
        assert!(is_controlled_by(&meta, "ReplicaSet", "web-1", Some("2")));
        assert!(!is_controlled_by(&meta, "ReplicaSet", "web-1", Some("3")));
        assert!(!is_controlled_by(&meta, "ConfigMap", "x", None));
    }

    #[test]
    fn scale_down_ranking_follows_upstream_order() {
        let unscheduled = pod("unscheduled", 0, "", "Pending", None);
        let pending = pod("pending", 0, "n1", "Pending", None);
        let unknown = pod("unknown", 0, "n2", "Unknown", None);
        let not_ready = pod("not-ready", 0, "n3", "Running", None);
        let ready_new = pod("ready-recently", 0, "n4", "Running", Some(50));
        let ready_old = pod("ready-long", 0, "n5", "Running", Some(10));
        let mut pods = vec![
            &ready_old,
            &ready_new,
            &not_ready,
            &unknown,
            &pending,
            &unscheduled,
        ];
        rank_pods_for_deletion(&mut pods);
        assert_eq!(
            names(&pods),
            [
                "unscheduled",
                "pending",
                "unknown",
                "not-ready",
                "ready-recently",
                "ready-long"
            ]
        );
    }

    #[test]
    fn restarts_then_age_break_ties_and_cost_and_colocation_come_first() {
        let mut crashy = pod("crashy", 0, "n1", "Running", Some(10));
        if let Some(s) = crashy.status.as_mut() {
            s.container_statuses = Some(vec![ContainerStatus {
                restart_count: 4,
                ..Default::default()
            }]);
        }
        let older = pod("older", 0, "n2", "Running", Some(10));
        let newer = pod("newer", 5, "n3", "Running", Some(10));
        let mut pods = vec![&older, &newer, &crashy];
        rank_pods_for_deletion(&mut pods);
        assert_eq!(names(&pods), ["crashy", "newer", "older"]);

        // A high deletion cost protects a pod that would otherwise go first.
        let mut precious = pod("precious", 5, "n3", "Running", Some(10));
        precious.metadata.annotations = Some(BTreeMap::from([(
            POD_DELETION_COST_ANNOTATION.to_string(),
            "100".to_string(),
        )]));
        let mut pods = vec![&precious, &older];
        rank_pods_for_deletion(&mut pods);
        assert_eq!(names(&pods), ["older", "precious"]);

        // Two pods doubled up on n1: they go before the lone pod on n2 even if older.
        let a = pod("a", 0, "n1", "Running", Some(10));
        let b = pod("b", 0, "n1", "Running", Some(10));
        let lone = pod("lone", 9, "n2", "Running", Some(10));
        let mut pods = vec![&lone, &a, &b];
        rank_pods_for_deletion(&mut pods);
        assert_eq!(names(&pods)[2], "lone");
    }

    #[test]
    fn logarithmic_buckets_treat_similar_ages_alike() {
        // Ready 1000s and 1010s before now fall in the same log2 bucket, so the UID decides
        // (y's UID sorts first); without the clock the more recently ready x goes first.
        let now = t(2000);
        let mut x = pod("x", 0, "n1", "Running", Some(1000));
        x.metadata.uid = Some("uid-zz".into());
        let y = pod("y", 0, "n2", "Running", Some(990));
        let mut pods = vec![&x, &y];
        rank_pods_for_deletion_at(&mut pods, &[], Some(now));
        assert_eq!(names(&pods), ["y", "x"]);
        let mut pods = vec![&y, &x];
        rank_pods_for_deletion(&mut pods);
        assert_eq!(names(&pods), ["x", "y"]);
        // Ages in different buckets keep "ready more recently goes first".
        let z = pod("z", 0, "n2", "Running", Some(10));
        let mut pods = vec![&z, &x];
        rank_pods_for_deletion_at(&mut pods, &[], Some(now));
        assert_eq!(names(&pods), ["x", "z"]);
    }
}
