//! PodDisruptionBudget decisions, without I/O: which pods a budget covers, how many pods
//! it expects and needs healthy, the status the disruption controller writes (with the
//! `DisruptionAllowed` condition and the `disruptedPods` bookkeeping), and the checks the
//! eviction subresource makes before it lets a pod go (and the status it then writes).
//!
//! The disruption loop ([`super::disruption`]) and the eviction handler
//! ([`crate::api::eviction`]) read the world, call these functions, and do the writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

use crate::apimachinery::labels;
use crate::controllers::deployment_plan::scaled_value;
use crate::controllers::pod_util::{is_pod_ready, pod_phase};

/// How long an eviction's entry in `disruptedPods` keeps the pod out of the healthy count
/// when the pod is not deleted (upstream's `DeletionTimeout`).
pub fn deletion_timeout() -> Duration {
    Duration::minutes(2)
}

/// The eviction subresource refuses to approve more evictions the controller has not
/// confirmed than this (upstream's `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// The condition type a budget reports.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Reasons of the `DisruptionAllowed` condition.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// The cause type the eviction subresource puts in its 429 answers.
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// What controls a pod, for the expected pod count: the scale of its top controller
/// (Deployment for a ReplicaSet it owns, else the ReplicaSet, StatefulSet or
/// ReplicationController itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodController {
    /// The pod has no controller reference.
    Unmanaged,
    /// The controller was found; `uid` identifies it so its scale is counted once.
    Scale { uid: String, replicas: i32 },
    /// The pod names a controller that could not be found (or is of an unknown kind).
    NotFound,
}

/// Why a budget's expected counts could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisruptionPlanError {
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("{0}")]
    BadValue(String),
}

/// Whether a budget's selector covers `pod` for the disruption controller: same namespace,
/// and its selector (a missing one selects nothing, an empty one everything) matches.
pub fn covers(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.metadata.namespace == pod.metadata.namespace
        && labels::selector_matches(
            pdb.spec.as_ref().and_then(|s| s.selector.as_ref()),
            pod.metadata.labels.as_ref(),
        )
}

/// Whether a budget guards `pod` against eviction: as [`covers`], except that an empty
/// selector matches nothing here, as upstream's eviction handler has it.
pub fn guards(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    selector.is_some_and(|s| !labels::is_empty(s)) && covers(pdb, pod)
}

/// The expected pod count, the healthy pods the budget needs, and the pods without a
/// controller (reported, not fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCounts {
    pub expected: i32,
    pub desired_healthy: i32,
    pub unmanaged: Vec<String>,
}

/// Whether computing the counts needs the pods' controllers (a `maxUnavailable`, or a
/// percentage `minAvailable`). An integer `minAvailable` counts the pods themselves.
pub fn needs_controllers(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_))
        )
}

/// kube-controller-manager's `getExpectedPodCount`: with `maxUnavailable`, the expected
/// count is the sum of the controllers' scales and the budget needs that minus
/// `maxUnavailable` (a percentage rounded up); with an integer `minAvailable` the pods are
/// counted and `minAvailable` is needed; a percentage `minAvailable` is taken (rounded up)
/// of the controllers' scales.
pub fn expected_counts(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    controller_of: impl Fn(&Pod) -> PodController,
) -> Result<ExpectedCounts, DisruptionPlanError> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let spec = pdb.spec.as_ref();
    let bad = |e: crate::controllers::deployment_plan::DeploymentPlanError| {
        DisruptionPlanError::BadValue(e.to_string())
    };
    let mut out = ExpectedCounts {
        expected: 0,
        desired_healthy: 0,
        unmanaged: Vec::new(),
    };
    if let Some(max_unavailable) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let (expected, unmanaged) = expected_scale(pods, &controller_of)?;
        let unavailable = scaled_value(max_unavailable, expected, true).map_err(bad)?;
        out.expected = expected;
        out.unmanaged = unmanaged;
        out.desired_healthy = (expected - unavailable).max(0);
    } else if let Some(min_available) = spec.and_then(|s| s.min_available.as_ref()) {
        match min_available {
            IntOrString::Int(n) => {
                out.desired_healthy = *n;
                out.expected = i32::try_from(pods.len()).unwrap_or(i32::MAX);
            }
            IntOrString::String(_) => {
                let (expected, unmanaged) = expected_scale(pods, &controller_of)?;
                out.expected = expected;
                out.unmanaged = unmanaged;
                out.desired_healthy = scaled_value(min_available, expected, true).map_err(bad)?;
            }
        }
    }
    Ok(out)
}

/// The sum of the scales of the pods' controllers (each counted once), and the pods that
/// have no controller.
fn expected_scale(
    pods: &[&Pod],
    controller_of: &impl Fn(&Pod) -> PodController,
) -> Result<(i32, Vec<String>), DisruptionPlanError> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match controller_of(pod) {
            PodController::Unmanaged => unmanaged.push(name),
            PodController::Scale { uid, replicas } => {
                scales.insert(uid, replicas);
            }
            PodController::NotFound => return Err(DisruptionPlanError::NoController(name)),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// The `disruptedPods` entries still in force: those of pods that still exist, are not yet
/// being deleted, and were evicted less than [`deletion_timeout`] ago. Also returns when
/// the earliest of them expires (look again then) and the pods whose entry expired without
/// the pod being deleted (upstream records `NotDeleted` for them).
pub fn build_disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: DateTime<Utc>,
) -> (BTreeMap<String, Time>, Option<DateTime<Utc>>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    let mut not_deleted = Vec::new();
    let Some(recorded) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck, not_deleted);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expires = at.0 + deletion_timeout();
        if expires < now {
            not_deleted.push(name);
        } else {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck, not_deleted)
}

/// Ready pods not being deleted and not recently evicted.
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: DateTime<Utc>) -> i32 {
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            disrupted
                .get(name)
                .is_none_or(|at| at.0 + deletion_timeout() <= now)
        })
        .filter(|p| is_pod_ready(p))
        .count();
    i32::try_from(healthy).unwrap_or(i32::MAX)
}

/// Set the `DisruptionAllowed` condition from `status.disruptionsAllowed`, as
/// `UpdateDisruptionAllowedCondition` does (the transition time moves only when the
/// condition's status changes).
pub fn update_disruption_allowed_condition(
    status: &mut PodDisruptionBudgetStatus,
    now: DateTime<Utc>,
) {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let observed = status.observed_generation;
    set_condition(status, value, reason, "", observed, now);
}

fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    value: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) => {
            if c.status != value {
                c.status = value.to_string();
                c.last_transition_time = Time(now);
            }
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: DISRUPTION_ALLOWED.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// Whether the condition already says what `disruptionsAllowed` says, for this generation.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else {
        return false;
    };
    let Some(cond) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        cond.status == "True" && cond.reason == SUFFICIENT_PODS
    } else {
        cond.status == "False" && cond.reason == INSUFFICIENT_PODS
    }
}

/// An event the loop should record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// `None`: on the budget; `Some(pod)`: on that pod.
    pub pod: Option<String>,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One sync of a budget.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPlan {
    pub status: PodDisruptionBudgetStatus,
    /// Whether `status` differs from what the budget reports (write it only then).
    pub changed: bool,
    /// When a `disruptedPods` entry expires: sync again then.
    pub recheck_at: Option<DateTime<Utc>>,
    pub events: Vec<PlannedEvent>,
}

/// Plan one sync of `pdb` over the pods of its namespace its selector covers (`pods`),
/// with `controller_of` resolving each pod's controller scale (only asked when
/// [`needs_controllers`]). On a failure the plan is upstream's fail-safe status: no
/// disruptions allowed, condition `SyncFailed` with the error.
pub fn plan_status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    controller_of: impl Fn(&Pod) -> PodController,
    now: DateTime<Utc>,
) -> StatusPlan {
    let mut events = Vec::new();
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    if pods.is_empty() {
        events.push(PlannedEvent {
            pod: None,
            warning: false,
            reason: "NoPods",
            message: "No matching pods found".into(),
        });
    }
    let old = pdb.status.clone().unwrap_or_default();
    let counts = match expected_counts(pdb, pods, controller_of) {
        Ok(c) => c,
        Err(e) => {
            events.push(PlannedEvent {
                pod: None,
                warning: true,
                reason: "CalculateExpectedPodCountFailed",
                message: format!("Failed to calculate the number of expected pods: {e}"),
            });
            let mut status = old.clone();
            status.disruptions_allowed = 0;
            let observed = status.observed_generation;
            set_condition(
                &mut status,
                "False",
                SYNC_FAILED,
                &e.to_string(),
                observed,
                now,
            );
            let changed = status_differs(&old, &status);
            return StatusPlan {
                status,
                changed,
                recheck_at: None,
                events,
            };
        }
    };
    if !counts.unmanaged.is_empty() {
        events.push(PlannedEvent {
            pod: None,
            warning: true,
            reason: "UnmanagedPods",
            message: format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                selector_text(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
            ),
        });
    }
    let (disrupted, recheck_at, not_deleted) = build_disrupted_pods(pdb, pods, now);
    for pod in not_deleted {
        events.push(PlannedEvent {
            pod: Some(pod),
            warning: true,
            reason: "NotDeleted",
            message: format!("Pod was expected by PDB {ns}/{name} to be deleted but it wasn't"),
        });
    }
    let current_healthy = count_healthy(pods, &disrupted, now);
    // A budget that expects no pods allows nothing, so pods that appear before the next
    // sync are safe.
    let allowed = if counts.expected <= 0 {
        0
    } else {
        (current_healthy - counts.desired_healthy).max(0)
    };
    let up_to_date = old.current_healthy == current_healthy
        && old.desired_healthy == counts.desired_healthy
        && old.expected_pods == counts.expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().unwrap_or_default() == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb);
    if up_to_date {
        return StatusPlan {
            status: old,
            changed: false,
            recheck_at,
            events,
        };
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    update_disruption_allowed_condition(&mut status, now);
    StatusPlan {
        status,
        changed: true,
        recheck_at,
        events,
    }
}

fn status_differs(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    a != b
}

/// A selector as Go prints a `*metav1.LabelSelector` in upstream's messages.
fn selector_text(selector: Option<&LabelSelector>) -> String {
    let Some(s) = selector else {
        return "nil".into();
    };
    let labels: String = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let exprs: String = s
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            let values: String = e.values.iter().flatten().map(|v| format!("{v},")).collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[]string{{{values}}},}},",
                e.key, e.operator
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

// ------------------------------------------------------------------ eviction

/// Whether a pod may be deleted without consulting any budget: it already finished, is
/// still pending, or is being deleted (it already caused its disruption, or none).
pub fn can_ignore_budgets(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed" | "Pending")
        || pod.metadata.deletion_timestamp.is_some()
}

/// Whether deleting a pod that skips the budgets must be guarded by its resourceVersion
/// (so it cannot become ready, and count, in between): all but finished or deleting pods.
pub fn should_enforce_resource_version(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Whether an unready pod may be evicted without spending a disruption: the budget's
/// `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (the default `IfHealthyBudget`) the
/// budget has the healthy pods it needs.
pub fn unready_pod_may_go(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if is_pod_ready(pod) {
        return false;
    }
    let always = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
        == Some("AlwaysAllow");
    let status = pdb.status.clone().unwrap_or_default();
    always || (status.current_healthy >= status.desired_healthy && status.desired_healthy > 0)
}

/// Why the eviction subresource refuses to spend a disruption of a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The controller has not yet seen the budget's current generation (429).
    StillProcessing { pdb: String },
    /// `disruptionsAllowed` is negative (403).
    NegativeAllowed { pdb: String },
    /// Too many approved evictions not yet confirmed by the controller (403).
    TooManyDisrupted { pdb: String },
    /// No disruption is allowed now (429).
    Budget {
        pdb: String,
        desired_healthy: i32,
        current_healthy: i32,
    },
}

impl Refusal {
    /// The HTTP code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::StillProcessing { .. } | Refusal::Budget { .. } => 429,
            Refusal::NegativeAllowed { .. } | Refusal::TooManyDisrupted { .. } => 403,
        }
    }

    /// The Status message (for 429s, the cause's message is [`Refusal::cause`]).
    pub fn message(&self) -> String {
        match self {
            Refusal::StillProcessing { .. } | Refusal::Budget { .. } => {
                "Cannot evict pod as it would violate the pod's disruption budget.".into()
            }
            Refusal::NegativeAllowed { pdb } => format!(
                "poddisruptionbudget.policy {pdb:?} is forbidden: pdb disruptions allowed is negative"
            ),
            Refusal::TooManyDisrupted { pdb } => format!(
                "poddisruptionbudget.policy {pdb:?} is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
            ),
        }
    }

    /// The `DisruptionBudget` cause a 429 carries.
    pub fn cause(&self) -> Option<String> {
        match self {
            Refusal::StillProcessing { pdb } => Some(format!(
                "The disruption budget {pdb} is still being processed by the server."
            )),
            Refusal::Budget {
                pdb,
                desired_healthy,
                current_healthy,
            } => Some(format!(
                "The disruption budget {pdb} needs {desired_healthy} healthy pods and has {current_healthy} currently"
            )),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying (upstream suggests 10 while the
    /// budget is being processed, nothing otherwise).
    pub fn retry_after_seconds(&self) -> Option<u32> {
        matches!(self, Refusal::StillProcessing { .. }).then_some(10)
    }

    pub fn pdb(&self) -> &str {
        match self {
            Refusal::StillProcessing { pdb }
            | Refusal::NegativeAllowed { pdb }
            | Refusal::TooManyDisrupted { pdb }
            | Refusal::Budget { pdb, .. } => pdb,
        }
    }
}

/// upstream's `checkAndDecrement`: whether the budget allows evicting `pod_name` now, and
/// if so the status to write (one disruption fewer, the pod recorded in `disruptedPods`
/// at `now`, the condition updated when no disruption is left). With `dry_run` the
/// status is not to be written at all (and does not record the pod).
pub fn check_and_decrement(
    pdb: &PodDisruptionBudget,
    pod_name: &str,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PodDisruptionBudgetStatus, Refusal> {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let mut status = pdb.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(Refusal::StillProcessing { pdb: name });
    }
    if status.disruptions_allowed < 0 {
        return Err(Refusal::NegativeAllowed { pdb: name });
    }
    if status.disrupted_pods.as_ref().map_or(0, BTreeMap::len) > MAX_DISRUPTED_POD_SIZE {
        return Err(Refusal::TooManyDisrupted { pdb: name });
    }
    if status.disruptions_allowed == 0 {
        return Err(Refusal::Budget {
            pdb: name,
            desired_healthy: status.desired_healthy,
            current_healthy: status.current_healthy,
        });
    }
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        update_disruption_allowed_condition(&mut status, now);
    }
    if !dry_run {
        status
            .disrupted_pods
            .get_or_insert_with(BTreeMap::new)
            .insert(pod_name.to_string(), Time(now));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn pod(name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs_of_three(_: &Pod) -> PodController {
        PodController::Scale {
            uid: "rs-1".into(),
            replicas: 3,
        }
    }

    fn condition(status: &PodDisruptionBudgetStatus) -> (String, String) {
        let c = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == DISRUPTION_ALLOWED)
            .expect("DisruptionAllowed condition");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn integer_min_available_counts_the_pods_and_needs_no_controller() {
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan_status(
            &pdb(Some(IntOrString::Int(1)), None),
            &refs,
            |_| PodController::NotFound,
            at(0),
        );
        assert!(plan.changed);
        let s = &plan.status;
        assert_eq!(
            (
                s.expected_pods,
                s.current_healthy,
                s.desired_healthy,
                s.disruptions_allowed
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(condition(s), ("True".into(), SUFFICIENT_PODS.into()));
    }

    #[test]
    fn min_available_equal_to_healthy_allows_nothing() {
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan_status(
            &pdb(Some(IntOrString::Int(3)), None),
            &refs,
            rs_of_three,
            at(0),
        );
        assert_eq!(plan.status.disruptions_allowed, 0);
        assert_eq!(
            condition(&plan.status),
            ("False".into(), INSUFFICIENT_PODS.into())
        );
    }

    #[test]
    fn percentages_and_max_unavailable_use_the_controller_scale() {
        // Two pods exist but the controller wants three.
        let pods = [pod("a", true), pod("b", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan_status(
            &pdb(None, Some(IntOrString::Int(1))),
            &refs,
            rs_of_three,
            at(0),
        );
        assert_eq!(
            (
                p.status.expected_pods,
                p.status.desired_healthy,
                p.status.disruptions_allowed
            ),
            (3, 2, 0)
        );
        // 50% of 3 rounds up to 2.
        let p = plan_status(
            &pdb(Some(IntOrString::String("50%".into())), None),
            &refs,
            rs_of_three,
            at(0),
        );
        assert_eq!((p.status.expected_pods, p.status.desired_healthy), (3, 2));
        // maxUnavailable 34% of 3 rounds up to 2 unavailable: 1 needed, 1 allowed.
        let p = plan_status(
            &pdb(None, Some(IntOrString::String("34%".into()))),
            &refs,
            rs_of_three,
            at(0),
        );
        assert_eq!(
            (p.status.desired_healthy, p.status.disruptions_allowed),
            (1, 1)
        );
    }

    #[test]
    fn a_missing_controller_fails_safe() {
        let pods = [pod("a", true), pod("b", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut budget = pdb(None, Some(IntOrString::Int(1)));
        budget.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 2,
            observed_generation: Some(1),
            ..Default::default()
        });
        let p = plan_status(&budget, &refs, |_| PodController::NotFound, at(0));
        assert!(p.changed);
        assert_eq!(p.status.disruptions_allowed, 0);
        let c = p.status.conditions.as_ref().unwrap();
        assert_eq!(c[0].reason, SYNC_FAILED);
        assert_eq!(c[0].message, "found no controllers for pod \"a\"");
        assert!(p
            .events
            .iter()
            .any(|e| e.reason == "CalculateExpectedPodCountFailed" && e.warning));
    }

    #[test]
    fn unmanaged_pods_are_reported_and_not_counted() {
        let pods = [pod("a", true), pod("b", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan_status(
            &pdb(Some(IntOrString::String("50%".into())), None),
            &refs,
            |_| PodController::Unmanaged,
            at(0),
        );
        assert_eq!(p.status.expected_pods, 0);
        assert_eq!(p.status.disruptions_allowed, 0);
        let e = p
            .events
            .iter()
            .find(|e| e.reason == "UnmanagedPods")
            .unwrap();
        assert!(e
            .message
            .contains("MatchLabels:map[string]string{app: web,}"));
    }

    #[test]
    fn no_pods_allows_nothing_and_says_so() {
        let p = plan_status(
            &pdb(Some(IntOrString::Int(0)), None),
            &[],
            rs_of_three,
            at(0),
        );
        assert_eq!(p.status.disruptions_allowed, 0);
        assert_eq!(p.events[0].reason, "NoPods");
        assert_eq!(p.events[0].message, "No matching pods found");
    }

    #[test]
    fn disrupted_pods_stop_counting_until_they_expire() {
        let pods = [pod("a", true), pod("b", true), pod("c", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(
                [
                    ("a".to_string(), Time(at(0))),
                    ("gone".to_string(), Time(at(0))),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let p = plan_status(&budget, &refs, rs_of_three, at(30));
        assert_eq!(p.status.current_healthy, 2);
        assert_eq!(p.status.disruptions_allowed, 1);
        // The deleted pod's entry is dropped; the other stays until two minutes passed.
        assert_eq!(
            p.status
                .disrupted_pods
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(p.recheck_at, Some(at(120)));
        // After the timeout the pod counts again and the entry is dropped.
        let p = plan_status(&budget, &refs, rs_of_three, at(121));
        assert_eq!(p.status.current_healthy, 3);
        assert_eq!(p.status.disrupted_pods, None);
        assert!(p.events.iter().any(|e| e.reason == "NotDeleted"));
    }

    #[test]
    fn terminating_pods_are_not_healthy() {
        let mut b = pod("b", true);
        b.metadata.deletion_timestamp = Some(Time(at(0)));
        let pods = [pod("a", true), b];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan_status(
            &pdb(Some(IntOrString::Int(1)), None),
            &refs,
            rs_of_three,
            at(0),
        );
        assert_eq!(p.status.current_healthy, 1);
        assert_eq!(p.status.disruptions_allowed, 0);
    }

    #[test]
    fn an_unchanged_status_is_not_rewritten() {
        let pods = [pod("a", true), pod("b", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        let first = plan_status(&budget, &refs, rs_of_three, at(0));
        budget.status = Some(first.status);
        let again = plan_status(&budget, &refs, rs_of_three, at(10));
        assert!(!again.changed);
        // A new generation must be observed.
        budget.metadata.generation = Some(2);
        let bumped = plan_status(&budget, &refs, rs_of_three, at(20));
        assert!(bumped.changed);
        assert_eq!(bumped.status.observed_generation, Some(2));
        // The condition kept its transition time (its status did not change).
        assert_eq!(
            bumped.status.conditions.unwrap()[0].last_transition_time,
            Time(at(0))
        );
    }

    #[test]
    fn eviction_spends_one_disruption_and_records_the_pod() {
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            current_healthy: 2,
            desired_healthy: 1,
            expected_pods: 2,
            observed_generation: Some(1),
            ..Default::default()
        });
        let s = check_and_decrement(&budget, "a", at(5), false).unwrap();
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.disrupted_pods.unwrap()["a"], Time(at(5)));
        assert_eq!(
            s.conditions.unwrap()[0].reason,
            INSUFFICIENT_PODS.to_string()
        );
        // A dry run records nothing.
        let s = check_and_decrement(&budget, "a", at(5), true).unwrap();
        assert_eq!(s.disrupted_pods, None);
    }

    #[test]
    fn eviction_refusals_read_like_upstream() {
        let mut budget = pdb(Some(IntOrString::Int(2)), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 0,
            current_healthy: 2,
            desired_healthy: 2,
            observed_generation: Some(1),
            ..Default::default()
        });
        let r = check_and_decrement(&budget, "a", at(0), false).unwrap_err();
        assert_eq!(r.code(), 429);
        assert_eq!(
            r.message(),
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            r.cause().unwrap(),
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        assert_eq!(r.retry_after_seconds(), None);

        budget.metadata.generation = Some(2);
        let r = check_and_decrement(&budget, "a", at(0), false).unwrap_err();
        assert_eq!(r, Refusal::StillProcessing { pdb: "web".into() });
        assert_eq!(r.retry_after_seconds(), Some(10));

        budget.metadata.generation = Some(1);
        budget.status.as_mut().unwrap().disruptions_allowed = -1;
        let r = check_and_decrement(&budget, "a", at(0), false).unwrap_err();
        assert_eq!(r.code(), 403);
    }

    #[test]
    fn which_pods_skip_the_budget() {
        let mut p = pod("a", true);
        assert!(!can_ignore_budgets(&p));
        p.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(can_ignore_budgets(&p));
        assert!(should_enforce_resource_version(&p));
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(can_ignore_budgets(&p));
        assert!(!should_enforce_resource_version(&p));
    }

    #[test]
    fn unready_pods_go_when_the_budget_is_healthy() {
        let mut budget = pdb(Some(IntOrString::Int(2)), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            current_healthy: 2,
            desired_healthy: 2,
            ..Default::default()
        });
        assert!(unready_pod_may_go(&budget, &pod("c", false)));
        assert!(!unready_pod_may_go(&budget, &pod("a", true)));
        budget.status.as_mut().unwrap().current_healthy = 1;
        assert!(!unready_pod_may_go(&budget, &pod("c", false)));
        budget.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
        assert!(unready_pod_may_go(&budget, &pod("c", false)));
    }

    #[test]
    fn empty_selectors_cover_everything_but_guard_nothing() {
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        budget.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert!(covers(&budget, &pod("a", true)));
        assert!(!guards(&budget, &pod("a", true)));
        budget.spec.as_mut().unwrap().selector = None;
        assert!(!covers(&budget, &pod("a", true)));
        let mut other_ns = pod("a", true);
        other_ns.metadata.namespace = Some("other".into());
        assert!(!covers(&pdb(Some(IntOrString::Int(1)), None), &other_ns));
    }
}
