//! What a pod worker does next, as kubelet's `computePodActions` decides it: a pure
//! function of the pod's spec and what the runtime shows of its containers. Init
//! containers run one at a time, in order, each to success; then every app container is
//! started; exited containers are restarted according to `restartPolicy`, after
//! kubelet's crash-loop back-off (10 s doubling to 5 min, reset after 10 min of running).
//! The pod's phase follows kubelet's `getPhase`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::{ContainerState, Status};

/// The first back-off after a container exits (kubelet's `backOffPeriod`).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off (kubelet's `MaxContainerBackOff`).
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Container ids are `<pod uid>_<container name>_<attempt>`: neither a uid nor a
/// container name contains `_`, so the id says whose container it is after a restart.
pub fn container_id(pod_uid: &str, name: &str, attempt: u32) -> String {
    format!("{pod_uid}_{name}_{attempt}")
}

/// (pod uid, container name, attempt) of a container id made by [`container_id`].
pub fn parse_container_id(id: &str) -> Option<(&str, &str, u32)> {
    let mut parts = id.split('_');
    let (uid, name, attempt) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || uid.is_empty() || name.is_empty() {
        return None;
    }
    Some((uid, name, attempt.parse().ok()?))
}

/// One run of one container, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub state: ContainerState,
}

impl Attempt {
    pub fn running(&self) -> bool {
        self.state.status == Status::Running
    }

    /// The exit code, if it has exited (an exit nobody recorded counts as failed).
    pub fn exit_code(&self) -> Option<i32> {
        match self.state.status {
            Status::Running => None,
            Status::Exited => Some(self.state.exit.as_ref().map_or(255, |e| e.exit_code)),
            Status::Unknown => Some(255),
        }
    }

    fn time(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        Self::time(&self.state.started_at)
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        Self::time(&self.state.exit.as_ref()?.finished_at)
    }
}

/// Every attempt of every container of one pod, by container name, oldest first.
pub type Observed = BTreeMap<String, Vec<Attempt>>;

/// What the worker should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start this container (init or app) as attempt `attempt`, after stopping the
    /// running container `replaces` (whose definition changed) if there is one.
    Start {
        name: String,
        init: bool,
        attempt: u32,
        replaces: Option<String>,
    },
}

/// Why a container is not running, as its `state.waiting` will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// The outcome of planning one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers held back, by name (CrashLoopBackOff, PodInitializing).
    pub waiting: BTreeMap<String, Waiting>,
    /// Sync again after this long (a back-off ends), even if nothing else happens.
    pub requeue_after: Option<Duration>,
    /// Every init container has succeeded.
    pub initialized: bool,
}

/// kubelet's back-off before restarting a container whose last run was attempt
/// `attempt` (0-based): 10 s, 20 s, 40 s, … up to 5 min.
pub fn backoff(attempt: u32) -> Duration {
    let doubled = BACKOFF_INITIAL.saturating_mul(1u32 << attempt.min(5));
    doubled.min(BACKOFF_MAX)
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an exited container with this exit code should run again.
fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The restart of `name` after its `last` attempt: now, or a CrashLoopBackOff wait.
fn restart(pod: &Pod, name: &str, init: bool, last: &Attempt, now: DateTime<Utc>, plan: &mut Plan) {
    let ran_for = match (last.started_at(), last.finished_at()) {
        (Some(s), Some(f)) => (f - s).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let delay = if ran_for >= BACKOFF_RESET_AFTER {
        Duration::ZERO
    } else {
        backoff(last.attempt)
    };
    let since = last
        .finished_at()
        .map(|f| (now - f).to_std().unwrap_or_default())
        .unwrap_or(delay);
    if since >= delay {
        plan.actions.push(Action::Start {
            name: name.to_string(),
            init,
            attempt: last.attempt + 1,
            replaces: None,
        });
        return;
    }
    let meta = &pod.metadata;
    plan.waiting.insert(
        name.to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                format_go_duration(delay),
                meta.name.as_deref().unwrap_or(""),
                meta.namespace.as_deref().unwrap_or(""),
                meta.uid.as_deref().unwrap_or(""),
            ),
        },
    );
    let left = delay - since;
    plan.requeue_after = Some(plan.requeue_after.map_or(left, |r| r.min(left)));
}

/// Go's `time.Duration` text for whole seconds ("10s", "5m0s", "2m40s").
pub fn format_go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

fn containers(pod: &Pod) -> (&[Container], &[Container]) {
    match pod.spec.as_ref() {
        Some(s) => (
            s.init_containers.as_deref().unwrap_or_default(),
            s.containers.as_slice(),
        ),
        None => (&[], &[]),
    }
}

/// kubelet's `computePodActions` for a pod that is not being deleted.
pub fn plan(pod: &Pod, observed: &Observed, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let policy = restart_policy(pod);
    let (inits, apps) = containers(pod);
    let last = |name: &str| observed.get(name).and_then(|a| a.last());

    for init in inits {
        match last(&init.name) {
            None => {
                plan.actions.push(Action::Start {
                    name: init.name.clone(),
                    init: true,
                    attempt: 0,
                    replaces: None,
                });
                break_waiting(apps, &mut plan);
                return plan;
            }
            Some(a) if a.running() => {
                break_waiting(apps, &mut plan);
                return plan;
            }
            Some(a) if a.exit_code() == Some(0) => continue,
            Some(a) => {
                // A failed init container: the pod fails under Never, else it is retried.
                if policy != "Never" {
                    restart(pod, &init.name, true, a, now, &mut plan);
                }
                break_waiting(apps, &mut plan);
                return plan;
            }
        }
    }
    plan.initialized = true;
    for app in apps {
        match last(&app.name) {
            None => plan.actions.push(Action::Start {
                name: app.name.clone(),
                init: false,
                attempt: 0,
                replaces: None,
            }),
            // The pod names another image now: replace it whatever the restart policy
            // (kubelet's "definition changed").
            Some(a) if a.running() && definition_changed(app, a) => {
                plan.actions.push(Action::Start {
                    name: app.name.clone(),
                    init: false,
                    attempt: a.attempt + 1,
                    replaces: Some(a.state.id.clone()),
                })
            }
            Some(a) if a.running() => {}
            Some(a) => {
                let code = a.exit_code().unwrap_or(0);
                if should_restart(policy, code) {
                    restart(pod, &app.name, false, a, now, &mut plan);
                }
            }
        }
    }
    plan
}

/// Whether the running attempt `a` was made from another image than `c` names now (an
/// attempt that does not know its image never counts as changed).
fn definition_changed(c: &Container, a: &Attempt) -> bool {
    !a.state.image.is_empty() && c.image.as_deref() != Some(a.state.image.as_str())
}

/// App containers wait while init containers run.
fn break_waiting(apps: &[Container], plan: &mut Plan) {
    for app in apps {
        plan.waiting.insert(
            app.name.clone(),
            Waiting {
                reason: "PodInitializing".into(),
                message: String::new(),
            },
        );
    }
}

/// kubelet's `getPhase`: Pending until every container has started once (and the init
/// containers are done); Succeeded/Failed when everything has ended for good; Running
/// otherwise.
pub fn phase(pod: &Pod, observed: &Observed) -> &'static str {
    let policy = restart_policy(pod);
    let (inits, apps) = containers(pod);
    let last = |name: &str| observed.get(name).and_then(|a| a.last());
    for init in inits {
        match last(&init.name).and_then(Attempt::exit_code) {
            Some(0) => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
    for app in apps {
        match last(&app.name) {
            None => waiting += 1,
            Some(a) if a.running() => running += 1,
            Some(a) => match a.exit_code() {
                Some(0) => succeeded += 1,
                _ => failed += 1,
            },
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match policy {
        // Exited containers restart: the pod stays Running.
        "Always" => "Running",
        "OnFailure" if failed > 0 => "Running",
        _ if failed > 0 => "Failed",
        _ if succeeded > 0 => "Succeeded",
        _ => "Pending",
    }
}

/// Attempts that may be removed: all but the newest two of each container (the newest
/// is the current state, the one before it `lastState` and `kubectl logs --previous`).
pub fn removable(observed: &Observed) -> Vec<String> {
    observed
        .values()
        .flat_map(|attempts| {
            let keep_from = attempts.len().saturating_sub(2);
            attempts[..keep_from]
                .iter()
                .filter(|a| !a.running())
                .map(|a| a.state.id.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ExitStatus;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox"});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
                "containers": apps.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .expect("pod")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    fn attempt(name: &str, n: u32, exit: Option<(i32, i64, i64)>) -> Attempt {
        let (status, exit, started) = match exit {
            None => (Status::Running, None, at(0)),
            Some((code, start, end)) => (
                Status::Exited,
                Some(ExitStatus {
                    exit_code: code,
                    signal: None,
                    oom_killed: false,
                    finished_at: at(end).to_rfc3339(),
                }),
                at(start),
            ),
        };
        Attempt {
            attempt: n,
            state: ContainerState {
                id: container_id("u1", name, n),
                status,
                pid: 1,
                shim_pid: 1,
                started_at: started.to_rfc3339(),
                exit,
                log_path: "/x".into(),
                cgroups_path: "/skiff/x".into(),
                image: String::new(),
            },
        }
    }

    fn observed(items: Vec<(&str, Vec<Attempt>)>) -> Observed {
        items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn start(name: &str, init: bool, attempt: u32) -> Action {
        Action::Start {
            name: name.into(),
            init,
            attempt,
            replaces: None,
        }
    }

    #[test]
    fn ids_round_trip() {
        let id = container_id("0b6c-11", "web", 3);
        assert_eq!(parse_container_id(&id), Some(("0b6c-11", "web", 3)));
        assert_eq!(parse_container_id("nope"), None);
        assert_eq!(parse_container_id("a_b_c_1"), None);
        assert_eq!(parse_container_id("a_b_x"), None);
    }

    #[test]
    fn init_containers_run_one_at_a_time_before_the_apps() {
        let p = pod("Always", &["i1", "i2"], &["app"]);
        let first = plan(&p, &Observed::new(), at(0));
        assert_eq!(first.actions, [start("i1", true, 0)]);
        assert_eq!(first.waiting["app"].reason, "PodInitializing");
        assert!(!first.initialized);
        assert_eq!(phase(&p, &Observed::new()), "Pending");

        let running = observed(vec![("i1", vec![attempt("i1", 0, None)])]);
        assert!(plan(&p, &running, at(1)).actions.is_empty());

        let one_done = observed(vec![("i1", vec![attempt("i1", 0, Some((0, 0, 1)))])]);
        assert_eq!(plan(&p, &one_done, at(2)).actions, [start("i2", true, 0)]);

        let both_done = observed(vec![
            ("i1", vec![attempt("i1", 0, Some((0, 0, 1)))]),
            ("i2", vec![attempt("i2", 0, Some((0, 1, 2)))]),
        ]);
        let apps = plan(&p, &both_done, at(3));
        assert_eq!(apps.actions, [start("app", false, 0)]);
        assert!(apps.initialized);
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_under_never_and_retries_otherwise() {
        let failed = observed(vec![("i1", vec![attempt("i1", 0, Some((1, 0, 1)))])]);
        let never = pod("Never", &["i1"], &["app"]);
        assert!(plan(&never, &failed, at(100)).actions.is_empty());
        assert_eq!(phase(&never, &failed), "Failed");
        let always = pod("Always", &["i1"], &["app"]);
        assert_eq!(
            plan(&always, &failed, at(100)).actions,
            [start("i1", true, 1)]
        );
        assert_eq!(phase(&always, &failed), "Pending");
    }

    #[test]
    fn crash_loops_back_off_doubling() {
        let p = pod("Always", &[], &["app"]);
        // Attempt 2 exited at t=100 after 1 s: back-off 40 s.
        let crashed = observed(vec![("app", vec![attempt("app", 2, Some((1, 99, 100)))])]);
        let early = plan(&p, &crashed, at(110));
        assert!(early.actions.is_empty());
        assert_eq!(early.requeue_after, Some(Duration::from_secs(30)));
        let w = &early.waiting["app"];
        assert_eq!(w.reason, "CrashLoopBackOff");
        assert_eq!(
            w.message,
            "back-off 40s restarting failed container=app pod=p_ns(u1)"
        );
        assert_eq!(
            plan(&p, &crashed, at(140)).actions,
            [start("app", false, 3)]
        );
        assert_eq!(phase(&p, &crashed), "Running");

        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(160));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(format_go_duration(BACKOFF_MAX), "5m0s");
        // A long run resets the back-off.
        let long = observed(vec![("app", vec![attempt("app", 7, Some((1, 0, 700)))])]);
        assert_eq!(plan(&p, &long, at(700)).actions, [start("app", false, 8)]);
    }

    #[test]
    fn restart_policies_decide_and_phases_follow() {
        let ok = observed(vec![("app", vec![attempt("app", 0, Some((0, 0, 1)))])]);
        let bad = observed(vec![("app", vec![attempt("app", 0, Some((3, 0, 1)))])]);
        let never = pod("Never", &[], &["app"]);
        assert!(plan(&never, &bad, at(100)).actions.is_empty());
        assert_eq!(phase(&never, &ok), "Succeeded");
        assert_eq!(phase(&never, &bad), "Failed");
        let on_failure = pod("OnFailure", &[], &["app"]);
        assert!(plan(&on_failure, &ok, at(100)).actions.is_empty());
        assert_eq!(phase(&on_failure, &ok), "Succeeded");
        assert_eq!(
            plan(&on_failure, &bad, at(100)).actions,
            [start("app", false, 1)]
        );
        assert_eq!(phase(&on_failure, &bad), "Running");
        let always = pod("Always", &[], &["app"]);
        assert_eq!(
            plan(&always, &ok, at(100)).actions,
            [start("app", false, 1)]
        );

        let two = pod("Always", &[], &["a", "b"]);
        let one_started = observed(vec![("a", vec![attempt("a", 0, None)])]);
        assert_eq!(phase(&two, &one_started), "Pending");
        assert_eq!(
            plan(&two, &one_started, at(1)).actions,
            [start("b", false, 0)]
        );
    }

    #[test]
    fn a_running_container_made_from_another_image_is_replaced_under_any_policy() {
        let mut running = attempt("app", 2, None);
        running.state.image = "busybox".into();
        let same = observed(vec![("app", vec![running.clone()])]);
        running.state.image = "busybox:old".into();
        let changed = observed(vec![("app", vec![running.clone()])]);
        running.state.image = String::new();
        let unknown = observed(vec![("app", vec![running])]);
        for policy in ["Always", "OnFailure", "Never"] {
            let p = pod(policy, &[], &["app"]);
            assert!(plan(&p, &same, at(1)).actions.is_empty(), "{policy}");
            assert!(plan(&p, &unknown, at(1)).actions.is_empty(), "{policy}");
            assert_eq!(
                plan(&p, &changed, at(1)).actions,
                [Action::Start {
                    name: "app".into(),
                    init: false,
                    attempt: 3,
                    replaces: Some(container_id("u1", "app", 2)),
                }],
                "{policy}"
            );
        }
    }

    #[test]
    fn only_the_newest_two_attempts_are_kept() {
        let o = observed(vec![(
            "app",
            vec![
                attempt("app", 0, Some((1, 0, 1))),
                attempt("app", 1, Some((1, 1, 2))),
                attempt("app", 2, Some((1, 2, 3))),
            ],
        )]);
        assert_eq!(removable(&o), [container_id("u1", "app", 0)]);
    }
}
