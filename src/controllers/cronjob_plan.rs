//! The CronJob controller's decisions: which scheduled time is due, whether to start a Job
//! for it (`suspend`, `startingDeadlineSeconds`, `concurrencyPolicy`), the Job built from
//! `jobTemplate`, history cleanup (`successfulJobsHistoryLimit`,
//! `failedJobsHistoryLimit`), the status (`active`, `lastScheduleTime`,
//! `lastSuccessfulTime`) and when to look again.
//!
//! Scheduling follows kube-controller-manager 1.32: the due time is the most recent
//! schedule time after `lastScheduleTime` (or the creation time) that is not in the future;
//! missed earlier times are not run; a Job is named `<cronjob>-<scheduled minutes since the
//! epoch>` so a time is never run twice. Schedules are evaluated in `spec.timeZone` (UTC
//! without one); an unknown zone is reported with an `UnknownTimeZone` event and nothing
//! runs.

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::cron::{Schedule, TimeZone, ZoneSource};
use super::job_plan::finished_condition;
use super::pod_util::is_controlled_by_uid;
use super::workload::{api_time, controller_ref, name_of, Event, WorkloadError};

const KIND: &str = "CronJob";
const API_VERSION: &str = "batch/v1";
/// Annotation on a scheduled Job with its nominal start time (RFC 3339, in the zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Annotation `kubectl create job --from=cronjob/x` puts on the Job it makes.
pub const INSTANTIATE_ANNOTATION: &str = "cronjob.kubernetes.io/instantiate";
/// Missed schedules beyond this many are not worth listing (and get a warning).
const TOO_MANY_MISSED: i64 = 100;
/// Requeues land this long after the schedule time, against clock skew.
const REQUEUE_PADDING_MS: i64 = 100;

/// One step of a CronJob sync. Execute in order; stop at the first failure and plan again.
#[derive(Debug, Clone, PartialEq)]
pub enum CronJobAction {
    /// Create this Job. On `AlreadyExists`, carry on: the Job is the one this plan meant.
    CreateJob(Box<Job>),
    /// Delete a child Job with background propagation.
    DeleteJob { name: String },
    /// Replace the CronJob's status. A Job created by a preceding `CreateJob` appears in
    /// `active` by name; [`fill_active_reference`] adds its uid once it is known.
    UpdateStatus(Box<CronJobStatus>),
    /// Record an event on the CronJob.
    Event(Event),
}

impl CronJobAction {
    /// The event to record after the action succeeded.
    pub fn success_event(&self) -> Option<Event> {
        match self {
            CronJobAction::CreateJob(job) => Some(Event::normal(
                "SuccessfulCreate",
                format!(
                    "Created job {}",
                    job.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            CronJobAction::DeleteJob { name } => Some(Event::normal(
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            )),
            _ => None,
        }
    }

    /// The event to record after the action failed with `error`.
    pub fn failure_event(&self, error: &str) -> Option<Event> {
        match self {
            CronJobAction::CreateJob(_) => Some(Event::warning(
                "FailedCreate",
                format!("Error creating job: {error}"),
            )),
            CronJobAction::DeleteJob { .. } => Some(Event::warning(
                "FailedDelete",
                format!("Deleted job: {error}"),
            )),
            _ => None,
        }
    }
}

/// The result of one CronJob sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CronJobPlan {
    pub actions: Vec<CronJobAction>,
    /// Sync again after this long: just after the next schedule time.
    pub requeue_after: Option<std::time::Duration>,
}

/// Set the uid (and resourceVersion) of the `active` reference to `created`, after the
/// API server returned it. References without a uid still work (they match by name).
pub fn fill_active_reference(status: &mut CronJobStatus, created: &Job) {
    for r in status.active.iter_mut().flatten() {
        if r.name == created.metadata.name && r.uid.is_none() {
            r.uid = created.metadata.uid.clone();
            r.resource_version = created.metadata.resource_version.clone();
        }
    }
}

/// The Job the controller creates from `cj`, named `job_name`: the template's labels,
/// annotations and spec, owned by the CronJob. (The scheduled-time annotation is added
/// by the planner, which knows the time.)
pub fn job_from_cronjob(cj: &CronJob, job_name: &str) -> Job {
    let template = cj.spec.as_ref().map(|s| &s.job_template);
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// The Job `kubectl create job <name> --from=cronjob/x` submits: like the controller's,
/// plus `cronjob.kubernetes.io/instantiate: manual`, and an owner reference without
/// `blockOwnerDeletion`.
pub fn manual_job_from_cronjob(cj: &CronJob, job_name: &str) -> Job {
    let mut job = job_from_cronjob(cj, job_name);
    let mut annotations = std::collections::BTreeMap::from([(
        INSTANTIATE_ANNOTATION.to_string(),
        "manual".to_string(),
    )]);
    annotations.extend(job.metadata.annotations.take().unwrap_or_default());
    job.metadata.annotations = Some(annotations);
    for r in job.metadata.owner_references.iter_mut().flatten() {
        r.block_owner_deletion = None;
    }
    job
}

/// `<cronjob>-<minutes since the epoch>` of the scheduled time.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp().div_euclid(60))
}

fn reference_matches(r: &ObjectReference, job: &Job) -> bool {
    match (&r.uid, &job.metadata.uid) {
        (Some(a), Some(b)) if !a.is_empty() => a == b,
        _ => r.name.is_some() && r.name == job.metadata.name,
    }
}

/// How many schedule times were missed before the most recent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    None,
    Few,
    Many,
}

/// What `mostRecentScheduleTime` finds.
struct Due {
    /// The time schedules are counted from.
    earliest: DateTime<Utc>,
    /// The latest schedule time not after `now`, if any came since `earliest`.
    most_recent: Option<DateTime<Utc>>,
    missed: Missed,
}

/// `mostRecentScheduleTime`. The error is upstream's for schedules that fire (almost)
/// never.
fn most_recent_schedule_time(
    cj: &CronJob,
    status: &CronJobStatus,
    now: DateTime<Utc>,
    schedule: &Schedule,
    zone: &TimeZone,
    with_deadline: bool,
) -> Result<Due, String> {
    let mut earliest = status
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if with_deadline {
        if let Some(d) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            earliest = earliest.max(now - Duration::seconds(d));
        }
    }
    let too_close = || "time difference between two schedules is less than 1 second".to_string();
    let t1 = schedule.next(earliest, zone).ok_or_else(too_close)?;
    let due = |most_recent, missed| Due {
        earliest,
        most_recent,
        missed,
    };
    if now < t1 {
        return Ok(due(None, Missed::None));
    }
    let t2 = schedule.next(t1, zone).ok_or_else(too_close)?;
    if now < t2 {
        return Ok(due(Some(t1), Missed::None));
    }
    let between = (t2 - t1).num_seconds();
    if between < 1 {
        return Err(too_close());
    }
    let missed = (now - t1).num_seconds() / between + 1;
    let mut t = t1 + Duration::seconds((missed - 2) * between);
    let mut most_recent = None;
    while let Some(next) = schedule.next(t, zone).filter(|n| *n <= now) {
        most_recent = Some(next);
        t = next;
    }
    let missed = if missed > TOO_MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(due(most_recent, missed))
}

/// `nextScheduleTimeDuration`: until just after the next schedule time.
fn requeue_after(
    cj: &CronJob,
    status: &CronJobStatus,
    now: DateTime<Utc>,
    schedule: &Schedule,
    zone: &TimeZone,
) -> Option<std::time::Duration> {
    let base = match most_recent_schedule_time(cj, status, now, schedule, zone, false) {
        Err(_) => now,
        Ok(Due {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Due {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let next = schedule.next(base, zone)?;
    let ms = (next - now).num_milliseconds() + REQUEUE_PADDING_MS;
    Some(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// Plan one sync of `cj`. `jobs` may hold anything in the namespace: only Jobs controlled
/// by the CronJob count. Pass Jobs from a cache that has seen this controller's own
/// creations: an `active` Job missing from `jobs` is dropped from the status.
pub fn plan_cronjob(
    cj: &CronJob,
    jobs: &[Job],
    now: DateTime<Utc>,
    zones: &dyn ZoneSource,
) -> Result<CronJobPlan, WorkloadError> {
    let mut plan = CronJobPlan::default();
    let name = name_of(&cj.metadata, KIND)?;
    let owner = controller_ref(API_VERSION, KIND, &cj.metadata)?;
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(plan);
    };
    let mut status = cj.status.clone().unwrap_or_default();
    let children: Vec<&Job> = jobs
        .iter()
        .filter(|j| is_controlled_by_uid(&j.metadata, &owner.uid))
        .collect();

    // Reconcile `active` with the children.
    let mut active = status.active.take().unwrap_or_default();
    for job in &children {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let found = active.iter().any(|r| reference_matches(r, job));
        let finished = finished_condition(job).map(|(t, _)| t.to_string());
        match (&finished, found) {
            (None, false) => plan.actions.push(CronJobAction::Event(Event::warning(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {job_name}"),
            ))),
            (Some(condition), true) => {
                active.retain(|r| !reference_matches(r, job));
                plan.actions.push(CronJobAction::Event(Event::normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {job_name}, condition: {condition}"),
                )));
            }
            _ => {}
        }
        if finished.as_deref() == Some("Complete") {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
            if let Some(c) = completed {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| c.0 > l.0)
                {
                    status.last_successful_time = Some(c);
                }
            }
        }
    }
    active.retain(|r| {
        let present = children.iter().any(|j| reference_matches(r, j));
        if !present {
            plan.actions.push(CronJobAction::Event(Event::normal(
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.as_deref().unwrap_or_default()
                ),
            )));
        }
        present
    });

    let mut runnable = cj.metadata.deletion_timestamp.is_none();
    let zone = match spec.time_zone.as_deref() {
        Some(tz) if runnable => match zones.load(tz) {
            Ok(z) => Some(z),
            Err(e) => {
                plan.actions.push(CronJobAction::Event(Event::warning(
                    "UnknownTimeZone",
                    format!("invalid timeZone: {tz:?}: {e}"),
                )));
                runnable = false;
                None
            }
        },
        _ => Some(TimeZone::utc()),
    };
    if spec.suspend == Some(true) {
        runnable = false;
    }
    let schedule = if runnable {
        match Schedule::parse(&spec.schedule) {
            Ok(s) => Some(s),
            Err(e) => {
                plan.actions.push(CronJobAction::Event(Event::warning(
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )));
                None
            }
        }
    } else {
        None
    };

    let mut deletes: Vec<String> = Vec::new();
    if let (Some(schedule), Some(zone)) = (schedule.as_ref(), zone.as_ref()) {
        let due = most_recent_schedule_time(cj, &status, now, schedule, zone, true);
        match due {
            Err(e) => {
                plan.actions.push(CronJobAction::Event(Event::warning(
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                )));
            }
            Ok(Due {
                most_recent: scheduled,
                missed,
                ..
            }) => {
                if missed == Missed::Many {
                    plan.actions.push(CronJobAction::Event(Event::warning(
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                    )));
                }
                if let Some(scheduled) = scheduled {
                    let started =
                        start_due_job(cj, &name, scheduled, zone, &mut active, &mut plan, now);
                    if started {
                        status.last_schedule_time = Some(api_time(scheduled));
                    }
                }
                let current = CronJobStatus {
                    active: Some(active.clone()),
                    ..status.clone()
                };
                plan.requeue_after = requeue_after(cj, &current, now, schedule, zone);
            }
        }
    }

    // History: keep the newest successful and failed Jobs up to their limits.
    let mut complete: Vec<&Job> = Vec::new();
    let mut failed: Vec<&Job> = Vec::new();
    for job in &children {
        match finished_condition(job).map(|(t, _)| t) {
            Some("Complete") => complete.push(job),
            Some("Failed") => failed.push(job),
            _ => {}
        }
    }
    for (mut list, limit) in [
        (complete, spec.successful_jobs_history_limit),
        (failed, spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let excess = list.len().saturating_sub(limit.max(0) as usize);
        list.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.metadata.name.cmp(&b.metadata.name),
            }
        });
        for job in list.into_iter().take(excess) {
            let n = job.metadata.name.clone().unwrap_or_default();
            active.retain(|r| !reference_matches(r, job));
            deletes.push(n);
        }
    }
    plan.actions.extend(
        deletes
            .into_iter()
            .map(|name| CronJobAction::DeleteJob { name }),
    );

    status.active = Some(active).filter(|a| !a.is_empty());
    let old = cj.status.clone().unwrap_or_default();
    if old != status {
        plan.actions
            .push(CronJobAction::UpdateStatus(Box::new(status)));
    }
    Ok(plan)
}

/// Decide about the due time `scheduled`: skip it (too late, already run, Forbid), or
/// replace/keep the running Jobs and create its Job. Returns whether a Job is created.
fn start_due_job(
    cj: &CronJob,
    name: &str,
    scheduled: DateTime<Utc>,
    zone: &TimeZone,
    active: &mut Vec<ObjectReference>,
    plan: &mut CronJobPlan,
    now: DateTime<Utc>,
) -> bool {
    let Some(spec) = cj.spec.as_ref() else {
        return false;
    };
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + Duration::seconds(deadline) < now {
            plan.actions.push(CronJobAction::Event(Event::warning(
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.format("%a, %d %b %Y %H:%M:%S %z")
                ),
            )));
            return false;
        }
    }
    let job_name = job_name(name, scheduled);
    let already = active
        .iter()
        .any(|r| r.name.as_deref() == Some(job_name.as_str()))
        || cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return false;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            plan.actions.push(CronJobAction::Event(Event::normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            )));
            return false;
        }
        Some("Replace") => {
            for r in active.drain(..) {
                if let Some(n) = r.name {
                    plan.actions.push(CronJobAction::DeleteJob { name: n });
                }
            }
        }
        _ => {}
    }
    let mut job = job_from_cronjob(cj, &job_name);
    job.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            SCHEDULED_TIMESTAMP_ANNOTATION.into(),
            zone.rfc3339(scheduled),
        );
    plan.actions.push(CronJobAction::CreateJob(Box::new(job)));
    active.push(ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some("Job".into()),
        name: Some(job_name),
        namespace: cj.metadata.namespace.clone(),
        ..Default::default()
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::cron::tests::berlin;
    use k8s_openapi::api::batch::v1::{
        CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
    };
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    const UID: &str = "cj-uid-1";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid timestamp")
            .with_timezone(&Utc)
    }

    fn cronjob(schedule: &str, created: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("default".into()),
                uid: Some(UID.into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Allow".into()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "hello".into())])),
                        annotations: Some(BTreeMap::from([("team".into(), "a".into())])),
                        ..Default::default()
                    }),
                    spec: Some(JobSpec {
                        template: PodTemplateSpec::default(),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Applies plans like the lead's loop; Jobs get a uid when created.
    struct Cluster {
        cj: CronJob,
        jobs: Vec<Job>,
        events: Vec<Event>,
        zones: BTreeMap<String, TimeZone>,
    }

    impl Cluster {
        fn new(cj: CronJob) -> Self {
            Cluster {
                cj,
                jobs: vec![],
                events: vec![],
                zones: BTreeMap::from([("Europe/Berlin".to_string(), berlin())]),
            }
        }

        fn sync(&mut self, now: DateTime<Utc>) -> CronJobPlan {
            let plan = plan_cronjob(&self.cj, &self.jobs, now, &self.zones).expect("plan");
            let mut last_created: Option<Job> = None;
            for a in &plan.actions {
                match a {
                    CronJobAction::CreateJob(j) => {
                        let mut j = (**j).clone();
                        j.metadata.uid = Some(format!("uid-{}", self.jobs.len()));
                        j.status = Some(JobStatus {
                            start_time: Some(Time(now)),
                            ..Default::default()
                        });
                        last_created = Some(j.clone());
                        self.jobs.push(j);
                    }
                    CronJobAction::DeleteJob { name } => self
                        .jobs
                        .retain(|j| j.metadata.name.as_deref() != Some(name)),
                    CronJobAction::UpdateStatus(s) => {
                        let mut s = (**s).clone();
                        if let Some(created) = &last_created {
                            fill_active_reference(&mut s, created);
                        }
                        self.cj.status = Some(s);
                    }
                    CronJobAction::Event(e) => self.events.push(e.clone()),
                }
                if let Some(e) = a.success_event() {
                    self.events.push(e);
                }
            }
            plan
        }

        fn finish(&mut self, name: &str, condition: &str, now: DateTime<Utc>) {
            for j in &mut self.jobs {
                if j.metadata.name.as_deref() == Some(name) {
                    let s = j.status.get_or_insert_with(Default::default);
                    s.conditions = Some(vec![JobCondition {
                        type_: condition.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(now)),
                        ..Default::default()
                    }]);
                    if condition == "Complete" {
                        s.completion_time = Some(Time(now));
                    }
                }
            }
        }

        fn created(plan: &CronJobPlan) -> Vec<Job> {
            plan.actions
                .iter()
                .filter_map(|a| match a {
                    CronJobAction::CreateJob(j) => Some((**j).clone()),
                    _ => None,
                })
                .collect()
        }

        fn active_names(&self) -> Vec<String> {
            self.cj
                .status
                .as_ref()
                .and_then(|s| s.active.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.name)
                .collect()
        }
    }

    #[test]
    fn every_minute_fires_at_the_minute_with_a_deterministic_name() {
        let mut c = Cluster::new(cronjob("*/1 * * * *", "2025-06-01T10:00:30Z"));
        let plan = c.sync(at("2025-06-01T10:00:30Z"));
        assert!(Cluster::created(&plan).is_empty());
        assert_eq!(
            plan.requeue_after,
            Some(std::time::Duration::from_millis(30_100))
        );

        let now = at("2025-06-01T10:01:00.200Z");
        let plan = c.sync(now);
        let jobs = Cluster::created(&plan);
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        let minutes = at("2025-06-01T10:01:00Z").timestamp() / 60;
        assert_eq!(job.metadata.name, Some(format!("hello-{minutes}")));
        let ann = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2025-06-01T10:01:00Z")
        );
        assert_eq!(ann.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            job.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("hello")
        );
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CronJob", UID));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(c
            .events
            .iter()
            .any(|e| e.message == format!("Created job hello-{minutes}")));
        let s = c.cj.status.clone().expect("status");
        assert_eq!(s.last_schedule_time, Some(Time(at("2025-06-01T10:01:00Z"))));
        let r = &s.active.expect("active")[0];
        assert_eq!(
            (r.kind.as_deref(), r.uid.as_deref()),
            (Some("Job"), Some("uid-0"))
        );
        assert_eq!(
            plan.requeue_after,
            Some(std::time::Duration::from_millis(59_900))
        );

        // The same minute again: nothing new.
        assert!(Cluster::created(&c.sync(at("2025-06-01T10:01:30Z"))).is_empty());
        // The job completes; the next minute starts another.
        c.finish(
            &format!("hello-{minutes}"),
            "Complete",
            at("2025-06-01T10:01:40Z"),
        );
        let plan = c.sync(at("2025-06-01T10:01:45Z"));
        assert!(Cluster::created(&plan).is_empty());
        assert!(c.events.iter().any(|e| e.reason == "SawCompletedJob"
            && e.message == format!("Saw completed job: hello-{minutes}, condition: Complete")));
        let s = c.cj.status.clone().expect("status");
        assert_eq!(s.active, None);
        assert_eq!(
            s.last_successful_time,
            Some(Time(at("2025-06-01T10:01:40Z")))
        );
        assert_eq!(
            Cluster::created(&c.sync(at("2025-06-01T10:02:00Z"))).len(),
            1
        );
    }

    #[test]
    fn forbid_skips_while_a_job_runs_replace_swaps_it() {
        let mut cj = cronjob("*/1 * * * *", "2025-06-01T10:00:30Z");
        cj.spec.as_mut().expect("spec").concurrency_policy = Some("Forbid".into());
        let mut c = Cluster::new(cj);
        assert_eq!(
            Cluster::created(&c.sync(at("2025-06-01T10:01:00Z"))).len(),
            1
        );
        let first = c.active_names();
        let plan = c.sync(at("2025-06-01T10:02:00Z"));
        assert!(Cluster::created(&plan).is_empty());
        assert!(c.events.iter().any(|e| e.reason == "JobAlreadyActive"
            && e.message
                == "Not starting job because prior execution is running and concurrency policy is Forbid"));
        assert_eq!(c.active_names(), first);
        // Allow would have started a second one; Replace deletes the running one first.
        c.cj.spec.as_mut().expect("spec").concurrency_policy = Some("Replace".into());
        let plan = c.sync(at("2025-06-01T10:03:00Z"));
        let del = plan
            .actions
            .iter()
            .position(|a| matches!(a, CronJobAction::DeleteJob { name } if *name == first[0]));
        let create = plan
            .actions
            .iter()
            .position(|a| matches!(a, CronJobAction::CreateJob(_)));
        assert!(del.is_some() && del < create, "delete before create");
        let minutes = at("2025-06-01T10:03:00Z").timestamp() / 60;
        assert_eq!(c.active_names(), vec![format!("hello-{minutes}")]);
        assert_eq!(c.jobs.len(), 1);
    }

    #[test]
    fn berlin_schedule_fires_on_local_wall_clock_across_dst() {
        let mut cj = cronjob("0 9 * * *", "2025-03-28T12:00:00Z");
        cj.spec.as_mut().expect("spec").time_zone = Some("Europe/Berlin".into());
        let mut c = Cluster::new(cj);
        let plan = c.sync(at("2025-03-28T12:00:00Z"));
        // 09:00 CET on the 29th is 08:00Z.
        assert_eq!(
            plan.requeue_after,
            Some(std::time::Duration::from_millis(20 * 3_600_000 + 100))
        );
        assert!(Cluster::created(&c.sync(at("2025-03-29T07:59:59Z"))).is_empty());
        let jobs = Cluster::created(&c.sync(at("2025-03-29T08:00:00Z")));
        let ann = jobs[0].metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2025-03-29T09:00:00+01:00")
        );
        // After the change to summer time, 09:00 local is 07:00Z.
        let plan = c.sync(at("2025-03-29T08:00:05Z"));
        assert_eq!(
            plan.requeue_after,
            Some(std::time::Duration::from_millis(
                23 * 3_600_000 - 5_000 + 100
            ))
        );
        assert!(Cluster::created(&c.sync(at("2025-03-30T06:59:00Z"))).is_empty());
        let jobs = Cluster::created(&c.sync(at("2025-03-30T07:00:01Z")));
        assert_eq!(jobs.len(), 1);
        let ann = jobs[0].metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2025-03-30T09:00:00+02:00")
        );
        assert_eq!(
            jobs[0].metadata.name,
            Some(format!(
                "hello-{}",
                at("2025-03-30T07:00:00Z").timestamp() / 60
            ))
        );
    }

    #[test]
    fn every_minute_in_berlin_across_spring_forward() {
        let mut cj = cronjob("*/1 * * * *", "2025-03-30T00:58:30Z");
        cj.spec.as_mut().expect("spec").time_zone = Some("Europe/Berlin".into());
        let mut c = Cluster::new(cj);
        let mut stamps = Vec::new();
        for now in [
            "2025-03-30T00:59:00Z",
            "2025-03-30T01:00:00Z",
            "2025-03-30T01:01:00Z",
        ] {
            for j in Cluster::created(&c.sync(at(now))) {
                stamps.push(
                    j.metadata
                        .annotations
                        .unwrap_or_default()
                        .get(SCHEDULED_TIMESTAMP_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
        }
        assert_eq!(
            stamps,
            [
                "2025-03-30T01:59:00+01:00",
                "2025-03-30T03:00:00+02:00",
                "2025-03-30T03:01:00+02:00"
            ]
        );
    }

    #[test]
    fn unknown_zone_and_bad_schedule_are_reported_not_run() {
        let mut cj = cronjob("*/1 * * * *", "2025-06-01T10:00:00Z");
        cj.spec.as_mut().expect("spec").time_zone = Some("Mars/Olympus_Mons".into());
        let mut c = Cluster::new(cj);
        let plan = c.sync(at("2025-06-01T10:05:00Z"));
        assert!(Cluster::created(&plan).is_empty());
        assert_eq!(plan.requeue_after, None);
        let e = c
            .events
            .iter()
            .find(|e| e.reason == "UnknownTimeZone")
            .expect("event");
        assert_eq!(
            e.message,
            "invalid timeZone: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons"
        );
        let mut c = Cluster::new(cronjob("61 * * * *", "2025-06-01T10:00:00Z"));
        assert!(Cluster::created(&c.sync(at("2025-06-01T12:00:00Z"))).is_empty());
        assert!(c.events.iter().any(|e| e.reason == "UnparseableSchedule"));
    }

    #[test]
    fn suspended_cronjobs_do_not_start_jobs() {
        let mut cj = cronjob("*/1 * * * *", "2025-06-01T10:00:00Z");
        cj.spec.as_mut().expect("spec").suspend = Some(true);
        let mut c = Cluster::new(cj);
        assert!(Cluster::created(&c.sync(at("2025-06-01T10:05:00Z"))).is_empty());
        c.cj.spec.as_mut().expect("spec").suspend = Some(false);
        // Resumed: only the most recent missed time runs.
        let jobs = Cluster::created(&c.sync(at("2025-06-01T10:05:10Z")));
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            jobs[0].metadata.name,
            Some(format!(
                "hello-{}",
                at("2025-06-01T10:05:00Z").timestamp() / 60
            ))
        );
    }

    #[test]
    fn starting_deadline_limits_how_far_back_a_missed_time_runs() {
        let mut cj = cronjob("0 * * * *", "2025-06-01T09:30:00Z");
        cj.spec.as_mut().expect("spec").starting_deadline_seconds = Some(60);
        let mut c = Cluster::new(cj);
        // 10:00 was missed by 5 minutes, beyond the 60 s deadline: nothing runs.
        let plan = c.sync(at("2025-06-01T10:05:00Z"));
        assert!(Cluster::created(&plan).is_empty());
        assert_eq!(
            plan.requeue_after,
            Some(std::time::Duration::from_millis(55 * 60_000 + 100))
        );
        assert_eq!(
            Cluster::created(&c.sync(at("2025-06-01T11:00:30Z"))).len(),
            1
        );
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let mut c = Cluster::new(cronjob("*/1 * * * *", "2025-06-01T10:00:00Z"));
        let mut now = at("2025-06-01T10:01:00Z");
        for i in 0..6 {
            c.sync(now);
            let name = c.active_names()[0].clone();
            c.finish(
                &name,
                if i == 4 || i == 5 {
                    "Failed"
                } else {
                    "Complete"
                },
                now,
            );
            now += Duration::seconds(60);
        }
        c.sync(now);
        let mut names: Vec<String> = c
            .jobs
            .iter()
            .filter(|j| finished_condition(j).is_some())
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        names.sort();
        let m = |s: &str| format!("hello-{}", at(s).timestamp() / 60);
        assert_eq!(
            names,
            vec![
                m("2025-06-01T10:02:00Z"),
                m("2025-06-01T10:03:00Z"),
                m("2025-06-01T10:04:00Z"),
                m("2025-06-01T10:06:00Z"),
            ],
            "three successful and one failed job are kept"
        );
        assert!(c.events.iter().any(|e| e.reason == "SuccessfulDelete"
            && e.message == format!("Deleted job {}", m("2025-06-01T10:01:00Z"))));
    }

    #[test]
    fn missing_active_job_is_dropped() {
        let mut c = Cluster::new(cronjob("0 * * * *", "2025-06-01T09:30:00Z"));
        c.sync(at("2025-06-01T10:00:10Z"));
        assert_eq!(c.active_names().len(), 1);
        c.jobs.clear();
        c.sync(at("2025-06-01T10:10:00Z"));
        assert!(c.active_names().is_empty());
        assert!(c.events.iter().any(|e| e.reason == "MissingJob"));
    }

    #[test]
    fn manual_job_carries_the_instantiate_annotation() {
        let cj = cronjob("0 * * * *", "2025-06-01T09:30:00Z");
        let job = manual_job_from_cronjob(&cj, "hello-manual");
        let ann = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(INSTANTIATE_ANNOTATION).map(String::as_str),
            Some("manual")
        );
        assert_eq!(ann.get("team").map(String::as_str), Some("a"));
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, None);
        let controller_job = job_from_cronjob(&cj, "x");
        assert!(!controller_job
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(INSTANTIATE_ANNOTATION));
    }
}
