//! The Job controller's decisions: how many pods run (`parallelism`, `completions`,
//! work-queue jobs without `completions`, `Indexed` completion), when a Job has
//! succeeded or failed (`backoffLimit`, container restarts under `restartPolicy:
//! OnFailure`, `activeDeadlineSeconds`), suspension, the pod-failure backoff, the status
//! with its conditions, and `ttlSecondsAfterFinished`.
//!
//! Conditions follow kube-controller-manager 1.32: a Job that met its completions first
//! gets `SuccessCriteriaMet` and then, once no pod is terminating, `Complete` (reason
//! `CompletionsReached`); a failing Job first gets `FailureTarget` and then `Failed` with
//! the same reason and message, after its remaining pods were deleted and are gone.
//!
//! Terminated pods are counted from the pods the caches hold, never below what the status
//! already says: skiff does not put the `batch.kubernetes.io/job-tracking` finalizer on
//! pods or use `status.uncountedTerminatedPods`, so a finished pod deleted before any sync
//! saw it is not counted, and a pod only counts as failed once its phase is `Failed`
//! (upstream also counts running pods deleted by someone else). Pods still running when
//! the Job fails are deleted and counted as failed. `podFailurePolicy`, `successPolicy`,
//! `backoffLimitPerIndex` and adoption of orphan pods are not implemented.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

use super::pod_util::{is_controlled_by_uid, is_pod_active, is_pod_ready, pod_phase};
use super::workload::{
    api_time, controller_ref, delay_until, earliest, name_of, pod_create_failed_event,
    pod_created_event, pod_delete_failed_event, pod_deleted_event, pod_from_template, set_label,
    Event, WorkloadError,
};
use crate::apimachinery::labels;

const KIND: &str = "Job";
const API_VERSION: &str = "batch/v1";

/// Annotation (and label) with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
const JOB_CONTROLLER: &str = "kubernetes.io/job-controller";
/// First delay before replacing a failed pod; it doubles per consecutive failure.
const POD_FAILURE_BACKOFF: i64 = 10;
/// Upper bound of the pod-failure backoff, in seconds.
const MAX_POD_FAILURE_BACKOFF: i64 = 600;
/// At most this many pods are created or deleted in one sync.
const MAX_POD_CHANGES_PER_SYNC: usize = 500;

/// One step of a Job sync. Execute in order; stop at the first failure and plan again.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Create a pod (it has `generateName`, not a name).
    CreatePod(Box<Pod>),
    /// Delete a pod.
    DeletePod { name: String },
    /// Replace the Job's status (the `status` subresource).
    UpdateStatus(Box<JobStatus>),
    /// Record an event on the Job.
    Event(Event),
}

impl JobAction {
    /// The event to record after the action succeeded; `created_name` is the name the API
    /// server returned for a created pod.
    pub fn success_event(&self, created_name: &str) -> Option<Event> {
        match self {
            JobAction::CreatePod(_) => Some(pod_created_event(created_name)),
            JobAction::DeletePod { name } => Some(pod_deleted_event(name)),
            _ => None,
        }
    }

    /// The event to record after the action failed with `error`.
    pub fn failure_event(&self, error: &str) -> Option<Event> {
        match self {
            JobAction::CreatePod(_) => Some(pod_create_failed_event(error)),
            JobAction::DeletePod { .. } => Some(pod_delete_failed_event(error)),
            _ => None,
        }
    }
}

/// The result of one Job sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobPlan {
    pub actions: Vec<JobAction>,
    /// Sync again after this long even without a watch event (active deadline, pod
    /// failure backoff).
    pub requeue_after: Option<std::time::Duration>,
}

/// What the TTL-after-finished controller does with a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlDecision {
    /// No TTL, not finished, or already being deleted: nothing to do.
    NotApplicable,
    /// The TTL has expired: delete the Job with foreground propagation (and a UID
    /// precondition), so its pods go first.
    Delete,
    /// Look again after this long.
    RequeueAfter(std::time::Duration),
}

/// The type (`Complete` or `Failed`) and time of the Job's terminal condition.
pub fn finished_condition(job: &Job) -> Option<(&str, Option<DateTime<Utc>>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            (
                c.type_.as_str(),
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
}

/// `ttlSecondsAfterFinished`: delete once the finish time plus the TTL is not after `now`.
pub fn ttl_after_finished(job: &Job, now: DateTime<Utc>) -> TtlDecision {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return TtlDecision::NotApplicable;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return TtlDecision::NotApplicable;
    }
    let Some((_, Some(finished))) = finished_condition(job) else {
        return TtlDecision::NotApplicable;
    };
    let expire = finished + Duration::seconds(i64::from(ttl));
    if expire <= now {
        TtlDecision::Delete
    } else {
        TtlDecision::RequeueAfter(delay_until(expire, now))
    }
}

fn find_condition<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `ensureJobConditionStatus`: set a condition's status/reason/message (a new transition
/// time when any changes); a missing condition is only added when not `False`. Returns
/// whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let fresh = JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
        message: Some(message.to_string()).filter(|m| !m.is_empty()),
        last_probe_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    };
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != fresh.status || c.reason != fresh.reason || c.message != fresh.message {
            *c = fresh;
            return true;
        }
        return false;
    }
    if status != "False" {
        conditions.push(fresh);
        return true;
    }
    false
}

/// How the Job is ending, once decided.
#[derive(Debug, Clone, PartialEq)]
enum Finish {
    Success,
    Failure { reason: String, message: String },
}

/// When a terminated pod finished (`getFinishedTime`).
fn finished_time(pod: &Pod) -> DateTime<Utc> {
    let status = pod.status.as_ref();
    let terminal = matches!(pod_phase(pod), "Succeeded" | "Failed");
    if terminal {
        if let Some(t) = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
            })
            .and_then(|c| c.last_transition_time.as_ref())
        {
            return t.0;
        }
    }
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let ends: Option<Vec<DateTime<Utc>>> = containers
        .iter()
        .map(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0)
        })
        .collect();
    if let Some(latest) = ends.and_then(|e| e.into_iter().max()) {
        return latest;
    }
    if let Some(d) = pod.metadata.deletion_timestamp.as_ref() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d.0 - Duration::seconds(grace);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// When the pod-failure backoff lets the controller create pods again: 10s doubled per
/// failure since the last success, capped at 10 minutes, after the last failure.
fn backoff_until(failed: &[&Pod], succeeded: &[&Pod]) -> Option<DateTime<Utc>> {
    let last_success = succeeded.iter().map(|p| finished_time(p)).max();
    let failures: Vec<DateTime<Utc>> = failed
        .iter()
        .map(|p| finished_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last_failure = failures.iter().max()?;
    let mut delay = POD_FAILURE_BACKOFF;
    for _ in 1..failures.len() {
        delay = (delay * 2).min(MAX_POD_FAILURE_BACKOFF);
    }
    Some(*last_failure + Duration::seconds(delay))
}

/// `pastBackoffLimitOnFailure`: container restarts of running pods count as failures.
fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod], backoff_limit: i32) -> bool {
    let restart_policy = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pod_phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= backoff_limit
    }
}

/// The completion index a pod carries (annotation, else label).
fn completion_index(pod: &Pod) -> Option<i32> {
    let from = |m: Option<&BTreeMap<String, String>>| {
        m.and_then(|m| m.get(COMPLETION_INDEX_KEY))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|i| *i >= 0)
    };
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref()))
}

/// Parse `status.completedIndexes` (`1,3-5`).
fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend((a.max(0)..=b.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    out
}

/// Format indexes as ordered intervals (`1,3-5`).
fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    parts.join(",")
}

/// The order in which active pods are given up (`controller.ActivePods`): unbound before
/// bound, pending before running, not ready before ready, newer before older.
fn removal_order(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    bound(a)
        .cmp(&bound(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then_with(|| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        })
}

/// Plan one sync of `job`. `pods` may hold anything in the namespace: only pods
/// controlled by the Job count.
pub fn plan_job(job: &Job, pods: &[Pod], now: DateTime<Utc>) -> Result<JobPlan, WorkloadError> {
    let mut plan = JobPlan::default();
    let name = name_of(&job.metadata, KIND)?;
    let owner = controller_ref(API_VERSION, KIND, &job.metadata)?;
    let Some(spec) = job.spec.as_ref() else {
        return Ok(plan);
    };
    if finished_condition(job).is_some() {
        return Ok(plan);
    }
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != JOB_CONTROLLER)
    {
        return Ok(plan);
    }
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    if mode != "NonIndexed" && mode != "Indexed" {
        plan.actions.push(JobAction::Event(Event::warning(
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown".into(),
        )));
        return Ok(plan);
    }
    let indexed = mode == "Indexed";
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let completions = spec.completions;
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let only_replace_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();

    let pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            is_controlled_by_uid(&p.metadata, &owner.uid)
                && spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| labels::matches(s, p.metadata.labels.as_ref()))
        })
        .collect();
    let active_pods: Vec<&Pod> = pods.iter().copied().filter(|p| is_pod_active(p)).collect();
    let succeeded_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pod_phase(p) == "Succeeded")
        .collect();
    // Only pods seen in phase Failed count: a pod that is merely being deleted may be one
    // this controller removed (suspend, lower parallelism), which upstream never counts.
    let failed_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pod_phase(p) == "Failed")
        .collect();
    let mut active = active_pods.len() as i32;
    let mut ready = active_pods.iter().filter(|p| is_pod_ready(p)).count() as i32;
    let mut terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some()
                && !matches!(pod_phase(p), "Succeeded" | "Failed")
        })
        .count() as i32;

    // Completed indexes (Indexed) or succeeded pods, never fewer than already counted.
    let index_count = completions.unwrap_or(1).max(0);
    let mut done_indexes = BTreeSet::new();
    if indexed {
        done_indexes = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""), index_count);
        done_indexes.extend(
            succeeded_pods
                .iter()
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < index_count),
        );
    }
    let mut succeeded = if indexed {
        done_indexes.len() as i32
    } else {
        old.succeeded.unwrap_or(0).max(succeeded_pods.len() as i32)
    };
    let mut failed = old.failed.unwrap_or(0).max(failed_pods.len() as i32);

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(api_time(now));
    }
    let start_time = status.start_time.as_ref().map(|t| t.0);

    // Has the Job already met its end?
    let mut finish: Option<Finish> = None;
    if find_condition(&conditions, "SuccessCriteriaMet").is_some_and(|c| c.status == "True") {
        finish = Some(Finish::Success);
    } else if let Some(c) =
        find_condition(&conditions, "FailureTarget").filter(|c| c.status == "True")
    {
        finish = Some(Finish::Failure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    let mut wake: Option<DateTime<Utc>> = None;
    if finish.is_none() {
        let deadline = spec
            .active_deadline_seconds
            .zip(start_time)
            .filter(|_| !suspended)
            .map(|(secs, start)| start + Duration::seconds(secs));
        if failed > backoff_limit || past_backoff_limit_on_failure(job, &pods, backoff_limit) {
            finish = Some(Finish::Failure {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if deadline.is_some_and(|d| d <= now) {
            finish = Some(Finish::Failure {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            });
        } else {
            wake = deadline;
        }
    }

    if finish.is_some() {
        // Ending: every remaining pod goes; on failure they count as failed.
        let mut victims = active_pods.clone();
        victims.truncate(MAX_POD_CHANGES_PER_SYNC);
        for p in &victims {
            plan.actions.push(JobAction::DeletePod {
                name: p.metadata.name.clone().unwrap_or_default(),
            });
        }
        let n = victims.len() as i32;
        let n_ready = victims.iter().filter(|p| is_pod_ready(p)).count() as i32;
        active -= n;
        ready -= n_ready;
        terminating += n;
        if matches!(finish, Some(Finish::Failure { .. })) {
            failed += n;
        }
    } else {
        // Manage (not while the Job is being deleted): bring the active pods to what
        // parallelism and completions want.
        let manage = job.metadata.deletion_timestamp.is_none();
        let want = if !manage {
            active
        } else if suspended {
            0
        } else if let Some(c) = completions {
            (c - succeeded).clamp(0, parallelism)
        } else if succeeded > 0 {
            active
        } else {
            parallelism
        };
        let mut remove: Vec<&Pod> = Vec::new();
        let mut keep: Vec<&Pod> = active_pods.clone();
        if indexed {
            // Pods for an index that is done, out of range, unknown, or duplicated go.
            let mut seen: BTreeMap<i32, &Pod> = BTreeMap::new();
            let mut sorted = active_pods.clone();
            sorted.sort_by(|a, b| removal_order(b, a));
            keep.clear();
            for p in sorted {
                match completion_index(p) {
                    Some(i) if i < index_count && !done_indexes.contains(&i) => {
                        if let std::collections::btree_map::Entry::Vacant(e) = seen.entry(i) {
                            e.insert(p);
                            keep.push(p);
                        } else {
                            remove.push(p);
                        }
                    }
                    _ => remove.push(p),
                }
            }
        }
        let excess = (keep.len() as i32 - want).max(0) as usize;
        keep.sort_by(removal_order);
        remove.extend(keep.iter().take(excess).copied());
        remove.truncate(if manage { MAX_POD_CHANGES_PER_SYNC } else { 0 });
        if !remove.is_empty() {
            for p in &remove {
                plan.actions.push(JobAction::DeletePod {
                    name: p.metadata.name.clone().unwrap_or_default(),
                });
            }
            let n = remove.len() as i32;
            active -= n;
            ready -= remove.iter().filter(|p| is_pod_ready(p)).count() as i32;
            terminating += n;
        } else if manage {
            let blocked_by_terminating = if only_replace_failed { terminating } else { 0 };
            let diff = want - blocked_by_terminating - active;
            if diff > 0 {
                match backoff_until(&failed_pods, &succeeded_pods).filter(|t| *t > now) {
                    Some(until) => wake = earliest(wake, Some(until)),
                    None => {
                        let diff = (diff as usize).min(MAX_POD_CHANGES_PER_SYNC);
                        let indexes: Vec<Option<i32>> = if indexed {
                            let busy: BTreeSet<i32> = pods
                                .iter()
                                .filter(|p| {
                                    is_pod_active(p)
                                        || (only_replace_failed
                                            && p.metadata.deletion_timestamp.is_some()
                                            && !matches!(pod_phase(p), "Succeeded" | "Failed"))
                                })
                                .filter_map(|p| completion_index(p))
                                .collect();
                            (0..index_count)
                                .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                                .take(diff)
                                .map(Some)
                                .collect()
                        } else {
                            vec![None; diff]
                        };
                        for index in &indexes {
                            plan.actions.push(JobAction::CreatePod(Box::new(new_job_pod(
                                job, &name, &owner, *index,
                            ))));
                        }
                        active += indexes.len() as i32;
                    }
                }
            }
        }

        let complete = match completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finish = Some(Finish::Success);
        } else if manage && suspended {
            if ensure_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                plan.actions.push(JobAction::Event(Event::normal(
                    "Suspended",
                    "Job suspended".into(),
                )));
            }
        } else if manage
            && ensure_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            )
        {
            plan.actions.push(JobAction::Event(Event::normal(
                "Resumed",
                "Job resumed".into(),
            )));
            // The deadline counts from the resume.
            status.start_time = Some(api_time(now));
        }
    }

    // Conditions: the interim one first, the terminal one once nothing is terminating.
    let mut finished_event = None;
    match &finish {
        Some(Finish::Success) => {
            let (reason, message) = (
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            if find_condition(&conditions, "SuccessCriteriaMet").is_none() {
                ensure_condition(
                    &mut conditions,
                    "SuccessCriteriaMet",
                    "True",
                    reason,
                    message,
                    now,
                );
            }
            if terminating == 0 {
                ensure_condition(&mut conditions, "Complete", "True", reason, message, now);
                status.completion_time = Some(api_time(now));
                if completions.is_some_and(|c| succeeded > c) {
                    plan.actions.push(JobAction::Event(Event::warning(
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached".into(),
                    )));
                }
                finished_event = Some(Event::normal("Completed", "Job completed".into()));
            }
        }
        Some(Finish::Failure { reason, message }) => {
            if find_condition(&conditions, "FailureTarget").is_none() {
                ensure_condition(
                    &mut conditions,
                    "FailureTarget",
                    "True",
                    reason,
                    message,
                    now,
                );
            }
            if terminating == 0 {
                ensure_condition(&mut conditions, "Failed", "True", reason, message, now);
                finished_event = Some(Event::warning(reason, message.clone()));
            }
        }
        None => {}
    }
    if indexed {
        succeeded = done_indexes.len() as i32;
        status.completed_indexes = Some(format_indexes(&done_indexes));
    }

    status.active = Some(active.max(0)).filter(|a| *a > 0);
    status.ready = Some(ready.max(0));
    status.terminating = Some(terminating.max(0));
    status.succeeded = Some(succeeded).filter(|s| *s > 0);
    status.failed = Some(failed).filter(|f| *f > 0);
    status.conditions = Some(conditions).filter(|c| !c.is_empty());
    if status.uncounted_terminated_pods.is_none() {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    if job.status.as_ref() != Some(&status) {
        plan.actions.push(JobAction::UpdateStatus(Box::new(status)));
    }
    if let Some(e) = finished_event {
        plan.actions.push(JobAction::Event(e));
    }
    plan.requeue_after = wake.map(|at| delay_until(at, now));
    Ok(plan)
}

/// A pod of `job` (for `index` when Indexed): the template, the Job's labels, and for
/// Indexed Jobs the completion index as annotation, label, hostname and
/// `JOB_COMPLETION_INDEX`.
fn new_job_pod(
    job: &Job,
    name: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    index: Option<i32>,
) -> Pod {
    let spec = job.spec.as_ref();
    let template = spec.map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pod_from_template(
        &template,
        owner.clone(),
        job.metadata.namespace.as_deref().unwrap_or_default(),
    );
    if spec.and_then(|s| s.manual_selector) != Some(true) {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", owner.uid.as_str()),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", owner.uid.as_str()),
            ("job-name", name),
        ] {
            let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    match index {
        None => pod.metadata.generate_name = Some(format!("{name}-")),
        Some(i) => {
            pod.metadata.generate_name = Some(format!("{name}-{i}-"));
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX_KEY.into(), i.to_string());
            set_label(&mut pod.metadata, COMPLETION_INDEX_KEY, &i.to_string());
            if let Some(ps) = pod.spec.as_mut() {
                if ps.hostname.as_deref().is_none_or(str::is_empty) {
                    ps.hostname = Some(format!("{name}-{i}"));
                }
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.annotations['{COMPLETION_INDEX_KEY}']"),
                        }),
                        ..Default::default()
                    }),
                };
                let containers = ps
                    .containers
                    .iter_mut()
                    .chain(ps.init_containers.iter_mut().flatten());
                for c in containers {
                    let list = c.env.get_or_insert_with(Vec::new);
                    if !list.iter().any(|e| e.name == env.name) {
                        list.push(env.clone());
                    }
                }
            }
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition,
        PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    const UID: &str = "job-uid-1";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).expect("valid time")
    }

    fn job(completions: Option<i32>, parallelism: i32, backoff: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some(UID.into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "pi".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Container {
                            name: "pi".into(),
                            image: Some("perl".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    struct Cluster {
        job: Job,
        pods: Vec<Pod>,
        events: Vec<Event>,
        serial: u32,
    }

    impl Cluster {
        fn new(job: Job) -> Self {
            Cluster {
                job,
                pods: vec![],
                events: vec![],
                serial: 0,
            }
        }

        fn sync(&mut self, now: DateTime<Utc>) -> JobPlan {
            let plan = plan_job(&self.job, &self.pods, now).expect("plan");
            for a in &plan.actions {
                let mut created = String::new();
                match a {
                    JobAction::CreatePod(p) => {
                        self.serial += 1;
                        let mut p = (**p).clone();
                        created = format!(
                            "{}{:05}",
                            p.metadata.generate_name.clone().unwrap_or_default(),
                            self.serial
                        );
                        p.metadata.name = Some(created.clone());
                        p.metadata.creation_timestamp = Some(Time(now));
                        p.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(p);
                    }
                    JobAction::DeletePod { name } => {
                        for p in &mut self.pods {
                            if p.metadata.name.as_deref() == Some(name) {
                                p.metadata.deletion_timestamp = Some(Time(now));
                            }
                        }
                    }
                    JobAction::UpdateStatus(s) => self.job.status = Some((**s).clone()),
                    JobAction::Event(e) => self.events.push(e.clone()),
                }
                if let Some(e) = a.success_event(&created) {
                    self.events.push(e);
                }
            }
            plan
        }

        fn run(&mut self, name: &str, now: DateTime<Utc>) {
            self.set(name, "Running", true, now);
        }

        fn finish(&mut self, name: &str, phase: &str, now: DateTime<Utc>) {
            self.set(name, phase, false, now);
        }

        fn set(&mut self, name: &str, phase: &str, ready: bool, now: DateTime<Utc>) {
            for p in &mut self.pods {
                if p.metadata.name.as_deref() == Some(name) {
                    let terminated = phase != "Running";
                    p.status = Some(PodStatus {
                        phase: Some(phase.into()),
                        conditions: Some(vec![PodCondition {
                            type_: "Ready".into(),
                            status: if ready { "True" } else { "False" }.into(),
                            last_transition_time: Some(Time(now)),
                            ..Default::default()
                        }]),
                        container_statuses: Some(vec![ContainerStatus {
                            name: "pi".into(),
                            state: terminated.then(|| ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: if phase == "Succeeded" { 0 } else { 1 },
                                    finished_at: Some(Time(now)),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    });
                }
            }
        }

        /// Terminating pods finish deleting.
        fn reap(&mut self) {
            self.pods
                .retain(|p| p.metadata.deletion_timestamp.is_none());
        }

        fn active_names(&self) -> Vec<String> {
            self.pods
                .iter()
                .filter(|p| is_pod_active(p))
                .filter_map(|p| p.metadata.name.clone())
                .collect()
        }

        fn status(&self) -> JobStatus {
            self.job.status.clone().unwrap_or_default()
        }

        fn condition(&self, t: &str) -> Option<JobCondition> {
            self.status()
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == t)
        }
    }

    fn creates(plan: &JobPlan) -> usize {
        plan.actions
            .iter()
            .filter(|a| matches!(a, JobAction::CreatePod(_)))
            .count()
    }

    #[test]
    fn three_completions_two_at_a_time_reach_complete() {
        let mut c = Cluster::new(job(Some(3), 2, 6));
        let mut now = t0();
        let plan = c.sync(now);
        assert_eq!(creates(&plan), 2);
        let pod = &c.pods[0];
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        let l = pod.metadata.labels.clone().unwrap_or_default();
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", UID),
            ("batch.kubernetes.io/job-name", "pi"),
            ("controller-uid", UID),
            ("job-name", "pi"),
            ("app", "pi"),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "label {k}");
        }
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Job", "pi"));
        assert!(c
            .events
            .iter()
            .any(|e| e.message == "Created pod: pi-00001"));
        let s = c.status();
        assert_eq!((s.active, s.ready), (Some(2), Some(0)));
        assert_eq!(s.start_time, Some(Time(now)));

        now += Duration::seconds(2);
        c.run("pi-00001", now);
        c.run("pi-00002", now);
        assert_eq!(creates(&c.sync(now)), 0);
        assert_eq!(c.status().ready, Some(2));

        now += Duration::seconds(5);
        c.finish("pi-00001", "Succeeded", now);
        assert_eq!(creates(&c.sync(now)), 1, "one more to reach 3");
        assert_eq!(c.status().succeeded, Some(1));
        assert_eq!(c.status().active, Some(2));

        now += Duration::seconds(5);
        c.finish("pi-00002", "Succeeded", now);
        assert_eq!(
            creates(&c.sync(now)),
            0,
            "only one completion left, one pod running"
        );
        assert_eq!(
            (c.status().succeeded, c.status().active),
            (Some(2), Some(1))
        );
        assert!(c.condition("Complete").is_none());

        now += Duration::seconds(5);
        c.finish("pi-00003", "Succeeded", now);
        c.sync(now);
        let s = c.status();
        assert_eq!((s.succeeded, s.active, s.failed), (Some(3), None, None));
        let complete = c.condition("Complete").expect("Complete condition");
        assert_eq!(complete.status, "True");
        assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
        assert!(c.condition("SuccessCriteriaMet").is_some());
        assert_eq!(s.completion_time, Some(Time(now)));
        assert!(c
            .events
            .iter()
            .any(|e| e.reason == "Completed" && e.message == "Job completed"));
        // Finished Jobs are left alone.
        assert!(c.sync(now + Duration::seconds(1)).actions.is_empty());
    }

    #[test]
    fn failures_past_backoff_limit_fail_the_job_with_backoff_between_retries() {
        let mut c = Cluster::new(job(Some(1), 1, 2));
        let mut now = t0();
        c.sync(now);
        let mut attempts = 1;
        for round in 0..3 {
            let current = c.active_names()[0].clone();
            now += Duration::seconds(3);
            c.finish(&current, "Failed", now);
            let plan = c.sync(now);
            if round == 2 {
                break;
            }
            // Backoff: 10s after the first failure, 20s after the second.
            assert_eq!(creates(&plan), 0);
            let delay = plan.requeue_after.expect("requeue for backoff");
            assert_eq!(delay.as_secs(), 10 << round);
            assert_eq!(c.status().failed, Some(round + 1));
            now += Duration::seconds(5);
            assert_eq!(creates(&c.sync(now)), 0, "still backing off");
            now += Duration::seconds(i64::from(10 << round));
            assert_eq!(creates(&c.sync(now)), 1);
            attempts += 1;
        }
        assert_eq!(attempts, 3);
        let s = c.status();
        assert_eq!(s.failed, Some(3));
        let failed = c.condition("Failed").expect("Failed condition");
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            failed.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert!(c.condition("FailureTarget").is_some());
        assert!(s.completion_time.is_none());
        assert!(c
            .events
            .iter()
            .any(|e| e.type_ == crate::client::events::EventType::Warning
                && e.reason == "BackoffLimitExceeded"
                && e.message == "Job has reached the specified backoff limit"));
    }

    #[test]
    fn active_deadline_deletes_pods_then_fails_once_they_are_gone() {
        let mut j = job(Some(5), 2, 6);
        j.spec.as_mut().expect("spec").active_deadline_seconds = Some(30);
        let mut c = Cluster::new(j);
        let mut now = t0();
        let plan = c.sync(now);
        assert_eq!(plan.requeue_after.map(|d| d.as_secs()), Some(30));
        c.run("pi-00001", now);
        c.run("pi-00002", now);
        now += Duration::seconds(30);
        let plan = c.sync(now);
        let deletes = plan
            .actions
            .iter()
            .filter(|a| matches!(a, JobAction::DeletePod { .. }))
            .count();
        assert_eq!(deletes, 2);
        // Pods still terminating: only the interim condition.
        let target = c.condition("FailureTarget").expect("FailureTarget");
        assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
        assert!(c.condition("Failed").is_none());
        assert_eq!(c.status().terminating, Some(2));
        c.reap();
        now += Duration::seconds(1);
        c.sync(now);
        let failed = c.condition("Failed").expect("Failed");
        assert_eq!(
            failed.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
        assert_eq!(c.status().failed, Some(2));
        assert_eq!(c.status().active, None);
    }

    #[test]
    fn work_queue_job_completes_when_one_succeeds_and_none_run() {
        let mut c = Cluster::new(job(None, 3, 6));
        let mut now = t0();
        assert_eq!(creates(&c.sync(now)), 3);
        now += Duration::seconds(5);
        c.finish("pi-00001", "Succeeded", now);
        assert_eq!(creates(&c.sync(now)), 0, "no replacement after a success");
        assert!(c.condition("Complete").is_none());
        c.finish("pi-00002", "Succeeded", now);
        c.finish("pi-00003", "Succeeded", now);
        c.sync(now);
        assert!(c.condition("Complete").is_some());
        assert_eq!(c.status().succeeded, Some(3));
    }

    #[test]
    fn restarts_under_on_failure_count_toward_backoff() {
        let mut j = job(Some(1), 1, 2);
        if let Some(s) = j.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            s.restart_policy = Some("OnFailure".into());
        }
        let mut c = Cluster::new(j);
        let now = t0();
        c.sync(now);
        c.run("pi-00001", now);
        if let Some(cs) = c.pods[0]
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            cs[0].restart_count = 2;
        }
        let plan = c.sync(now + Duration::seconds(1));
        assert!(plan
            .actions
            .iter()
            .any(|a| matches!(a, JobAction::DeletePod { name } if name == "pi-00001")));
        assert_eq!(
            c.condition("FailureTarget").and_then(|c| c.reason),
            Some("BackoffLimitExceeded".into())
        );
    }

    #[test]
    fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
        let mut c = Cluster::new(job(Some(2), 2, 6));
        let now = t0();
        c.sync(now);
        c.job.spec.as_mut().expect("spec").suspend = Some(true);
        let plan = c.sync(now + Duration::seconds(5));
        let deletes = plan
            .actions
            .iter()
            .filter(|a| matches!(a, JobAction::DeletePod { .. }))
            .count();
        assert_eq!(deletes, 2);
        let s = c.condition("Suspended").expect("Suspended");
        assert_eq!(
            (s.status.as_str(), s.reason.as_deref()),
            ("True", Some("JobSuspended"))
        );
        assert!(c.events.iter().any(|e| e.reason == "Suspended"));
        assert_eq!(c.status().active, None);
        assert_eq!(c.status().terminating, Some(2));
        assert_eq!(
            c.status().failed,
            None,
            "pods removed by suspension are no failures"
        );
        c.reap();
        // Still suspended: nothing is created.
        assert_eq!(creates(&c.sync(now + Duration::seconds(6))), 0);
        c.job.spec.as_mut().expect("spec").suspend = Some(false);
        let later = now + Duration::seconds(60);
        assert_eq!(creates(&c.sync(later)), 2);
        let s = c.condition("Suspended").expect("Suspended");
        assert_eq!(
            (s.status.as_str(), s.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(c.status().start_time, Some(Time(later)));
    }

    #[test]
    fn indexed_job_runs_each_index_once() {
        let mut j = job(Some(3), 2, 6);
        j.spec.as_mut().expect("spec").completion_mode = Some("Indexed".into());
        let mut c = Cluster::new(j);
        let mut now = t0();
        c.sync(now);
        let idx: Vec<Option<i32>> = c.pods.iter().map(completion_index).collect();
        assert_eq!(idx, vec![Some(0), Some(1)]);
        let p0 = &c.pods[0];
        assert_eq!(p0.metadata.generate_name.as_deref(), Some("pi-0-"));
        assert_eq!(
            p0.spec.as_ref().and_then(|s| s.hostname.as_deref()),
            Some("pi-0")
        );
        let env = p0
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].env.clone())
            .unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        now += Duration::seconds(1);
        let second = c.pods[1].metadata.name.clone().unwrap_or_default();
        c.finish(&second, "Succeeded", now);
        c.sync(now);
        assert_eq!(c.status().completed_indexes.as_deref(), Some("1"));
        let new_idx = c.pods.last().and_then(completion_index);
        assert_eq!(new_idx, Some(2), "index 1 is done, index 0 is running");
        let names: Vec<String> = c.active_names();
        for n in names {
            c.finish(&n, "Succeeded", now);
        }
        c.sync(now + Duration::seconds(1));
        assert_eq!(c.status().completed_indexes.as_deref(), Some("0-2"));
        assert_eq!(c.status().succeeded, Some(3));
        assert!(c.condition("Complete").is_some());
    }

    #[test]
    fn index_intervals_round_trip() {
        let set = parse_indexes("0-2,4,7-8", 10);
        assert_eq!(
            set.iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 4, 7, 8]
        );
        assert_eq!(format_indexes(&set), "0-2,4,7-8");
        assert_eq!(parse_indexes("5-20", 8).len(), 3);
    }

    #[test]
    fn ttl_deletes_after_expiry_only() {
        let mut j = job(Some(1), 1, 6);
        j.spec.as_mut().expect("spec").ttl_seconds_after_finished = Some(100);
        assert_eq!(ttl_after_finished(&j, t0()), TtlDecision::NotApplicable);
        j.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                last_transition_time: Some(Time(t0())),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            ttl_after_finished(&j, t0() + Duration::seconds(40)),
            TtlDecision::RequeueAfter(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            ttl_after_finished(&j, t0() + Duration::seconds(100)),
            TtlDecision::Delete
        );
        j.spec.as_mut().expect("spec").ttl_seconds_after_finished = None;
        assert_eq!(
            ttl_after_finished(&j, t0() + Duration::seconds(500)),
            TtlDecision::NotApplicable
        );
    }
}
