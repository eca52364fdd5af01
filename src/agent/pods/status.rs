//! A pod's status as kubelet reports it, computed (purely) from what the runtime shows of
//! its containers and what the worker knows: phase, the conditions
//! (PodReadyToStartContainers, Initialized, ContainersReady, Ready; PodScheduled is the
//! scheduler's and kept), container statuses with state, lastState, restartCount, ready,
//! image and imageID, and the pod's and host's IPs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{self, Attempt, Observed, Waiting};

/// The prefix of container ids in statuses (`containerd://…` on a k3s node).
pub const CONTAINER_ID_PREFIX: &str = "skiff://";

/// What the worker knows beyond the runtime's containers.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// The pod's sandbox exists (network set up).
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    /// Containers held back, by name (from the plan, or image pull and config errors).
    pub waiting: BTreeMap<String, Waiting>,
    /// imageID of each container's image, by container name.
    pub image_ids: BTreeMap<String, String>,
    /// Readiness by container name, from the probes (no entry: ready when running).
    pub readiness: BTreeMap<String, bool>,
    /// Whether the startup probe let a running container count as started, by name (no
    /// entry: started when running).
    pub started: BTreeMap<String, bool>,
}

fn time(t: Option<DateTime<Utc>>) -> Option<Time> {
    t.map(Time)
}

fn terminated(a: &Attempt) -> ContainerStateTerminated {
    let exit = a.state.exit.as_ref();
    let code = a.exit_code().unwrap_or(0);
    let reason = match exit {
        Some(e) if e.oom_killed => "OOMKilled",
        _ if code == 0 => "Completed",
        _ if a.state.status == crate::runtime::Status::Unknown => "Unknown",
        _ => "Error",
    };
    ContainerStateTerminated {
        exit_code: code,
        signal: exit.and_then(|e| e.signal),
        reason: Some(reason.into()),
        started_at: time(a.started_at()),
        finished_at: time(a.finished_at()),
        container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", a.state.id)),
        message: None,
    }
}

fn state_of(a: &Attempt) -> ContainerState {
    if a.running() {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(a.started_at()),
            }),
            ..Default::default()
        }
    } else {
        ContainerState {
            terminated: Some(terminated(a)),
            ..Default::default()
        }
    }
}

fn container_status(c: &Container, attempts: &[Attempt], known: &Known) -> ContainerStatus {
    let last = attempts.last();
    let previous = attempts.len().checked_sub(2).map(|i| &attempts[i]);
    let waiting = known.waiting.get(&c.name);
    let (state, last_state) = match (waiting, last) {
        // Held back (back-off, image pull, config error): waiting, the last run before.
        (Some(w), _) => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(w.reason.clone()),
                    message: (!w.message.is_empty()).then(|| w.message.clone()),
                }),
                ..Default::default()
            },
            last.map(state_of),
        ),
        (None, Some(a)) => (state_of(a), previous.map(state_of)),
        (None, None) => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            },
            None,
        ),
    };
    let running = waiting.is_none() && last.is_some_and(Attempt::running);
    let started = running && known.started.get(&c.name).copied().unwrap_or(true);
    let ready = started && known.readiness.get(&c.name).copied().unwrap_or(true);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: known.image_ids.get(&c.name).cloned().unwrap_or_default(),
        container_id: last.map(|a| format!("{CONTAINER_ID_PREFIX}{}", a.state.id)),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready,
        restart_count: last.map_or(0, |a| a.attempt as i32),
        started: Some(started),
        ..Default::default()
    }
}

/// A condition, keeping its transition time from `previous` when its status is unchanged.
fn condition(
    previous: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    why: Option<(&str, String)>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let (reason, message) = match why {
        Some((r, m)) if !ok => (Some(r.to_string()), Some(m)),
        _ => (None, None),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason,
        message,
        last_transition_time: Some(transition),
        last_probe_time: None,
    }
}

fn names(list: &[&str]) -> String {
    format!("[{}]", list.join(" "))
}

/// The pod's status now.
pub fn pod_status(
    pod: &Pod,
    observed: &Observed,
    initialized: bool,
    known: &Known,
    now: DateTime<Utc>,
) -> PodStatus {
    let previous = pod.status.as_ref();
    let now_time = Time(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.unwrap_or_default();
    let empty: Vec<Attempt> = Vec::new();
    let attempts = |name: &str| observed.get(name).unwrap_or(&empty);
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| {
            let mut s = container_status(c, attempts(&c.name), known);
            // A finished init container is not "ready" in kubelet's sense but is done.
            s.ready = s
                .state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            s
        })
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, attempts(&c.name), known))
        .collect();

    let pending_inits: Vec<&str> = init_statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let phase = plan::phase(pod, observed);
    // Containers of a finished pod are not ready; the pod is not either.
    let ended = matches!(phase, "Succeeded" | "Failed");
    let initialized = initialized || pending_inits.is_empty();
    let ready = unready.is_empty() && !ended;
    let ready_why = || {
        if ended {
            ("PodCompleted", String::new())
        } else {
            (
                "ContainersNotReady",
                format!("containers with unready status: {}", names(&unready)),
            )
        }
    };
    let mut conditions = vec![
        condition(
            previous,
            "PodReadyToStartContainers",
            known.sandbox_ready,
            None,
            &now_time,
        ),
        condition(
            previous,
            "Initialized",
            initialized,
            Some((
                "ContainersNotInitialized",
                format!(
                    "containers with incomplete status: {}",
                    names(&pending_inits)
                ),
            )),
            &now_time,
        ),
        condition(previous, "Ready", ready, Some(ready_why()), &now_time),
        condition(
            previous,
            "ContainersReady",
            ready,
            Some(ready_why()),
            &now_time,
        ),
    ];
    if let Some(scheduled) = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(scheduled.clone());
    }
    let start_time = previous
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(|| now_time.clone());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: known.host_ip.clone(),
        host_ips: known
            .host_ip
            .as_ref()
            .map(|ip| vec![HostIP { ip: ip.clone() }]),
        pod_ip: known.pod_ip.clone(),
        pod_ips: known
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: Some(start_time),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: previous.and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::pods::plan::container_id;
    use crate::runtime::{ContainerState as RtState, ExitStatus, Status};

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": "busybox:1.36"}],
            },
            "status": {"qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True"}
            ]}
        }))
        .expect("pod")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    fn attempt(name: &str, n: u32, exit: Option<(i32, bool)>) -> Attempt {
        Attempt {
            attempt: n,
            state: RtState {
                id: container_id("u1", name, n),
                status: if exit.is_some() {
                    Status::Exited
                } else {
                    Status::Running
                },
                pid: 10,
                shim_pid: 9,
                started_at: at(0).to_rfc3339(),
                exit: exit.map(|(code, oom)| ExitStatus {
                    exit_code: code,
                    signal: None,
                    oom_killed: oom,
                    finished_at: at(5).to_rfc3339(),
                }),
                log_path: "/x".into(),
                cgroups_path: "/x".into(),
                image: String::new(),
            },
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == t))
            .expect("condition")
    }

    #[test]
    fn a_running_pod_is_ready_with_ips() {
        let observed: Observed = [
            (
                "init".to_string(),
                vec![attempt("init", 0, Some((0, false)))],
            ),
            ("app".to_string(), vec![attempt("app", 0, None)]),
        ]
        .into();
        let known = Known {
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            host_ip: Some("192.168.1.2".into()),
            ..Default::default()
        };
        let s = pod_status(&pod("Always"), &observed, true, &known, at(10));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let app = &s.container_statuses.as_ref().expect("statuses")[0];
        assert!(app.ready && app.started == Some(true));
        assert_eq!(app.image, "busybox:1.36");
        assert_eq!(app.container_id.as_deref(), Some("skiff://u1_app_0"));
        let init = &s.init_container_statuses.as_ref().expect("init statuses")[0];
        let t = init
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }

    #[test]
    fn crash_loops_show_waiting_with_the_last_termination() {
        let observed: Observed = [
            (
                "init".to_string(),
                vec![attempt("init", 0, Some((0, false)))],
            ),
            (
                "app".to_string(),
                vec![
                    attempt("app", 2, Some((1, false))),
                    attempt("app", 3, Some((137, true))),
                ],
            ),
        ]
        .into();
        let known = Known {
            waiting: [(
                "app".to_string(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: "back-off 1m20s restarting failed container=app pod=p_ns(u1)".into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        let s = pod_status(&pod("Always"), &observed, true, &known, at(10));
        let app = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(app.restart_count, 3);
        assert!(!app.ready);
        let w = app
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = app
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last terminated");
        assert_eq!(
            (last.exit_code, last.reason.as_deref()),
            (137, Some("OOMKilled"))
        );
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [app]")
        );
    }

    #[test]
    fn probes_hold_back_started_and_ready() {
        let observed: Observed = [
            (
                "init".to_string(),
                vec![attempt("init", 0, Some((0, false)))],
            ),
            ("app".to_string(), vec![attempt("app", 0, None)]),
        ]
        .into();
        let mut known = Known {
            sandbox_ready: true,
            // The readiness probe passed, but the startup probe has not yet.
            readiness: [("app".to_string(), true)].into(),
            started: [("app".to_string(), false)].into(),
            ..Default::default()
        };
        let s = pod_status(&pod("Always"), &observed, true, &known, at(10));
        let app = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!((app.started, app.ready), (Some(false), false));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "ContainersReady").status, "False");
        known.started.insert("app".into(), true);
        known.readiness.insert("app".into(), false);
        let s = pod_status(&pod("Always"), &observed, true, &known, at(11));
        let app = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!((app.started, app.ready), (Some(true), false));
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [app]")
        );
        known.readiness.insert("app".into(), true);
        let s = pod_status(&pod("Always"), &observed, true, &known, at(12));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
    }

    #[test]
    fn a_pod_waiting_for_its_init_container_is_not_initialized() {
        let observed: Observed = [("init".to_string(), vec![attempt("init", 0, None)])].into();
        let s = pod_status(&pod("Always"), &observed, false, &Known::default(), at(1));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        let app = &s.container_statuses.as_ref().expect("statuses")[0];
        let w = app
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn transition_times_are_kept_while_a_condition_holds() {
        let mut p = pod("Never");
        let observed: Observed = [
            (
                "init".to_string(),
                vec![attempt("init", 0, Some((0, false)))],
            ),
            ("app".to_string(), vec![attempt("app", 0, Some((0, false)))]),
        ]
        .into();
        let first = pod_status(&p, &observed, true, &Known::default(), at(10));
        assert_eq!(first.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            cond(&first, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
        p.status = Some(first.clone());
        let later = pod_status(&p, &observed, true, &Known::default(), at(99));
        assert_eq!(
            cond(&later, "Initialized").last_transition_time,
            cond(&first, "Initialized").last_transition_time
        );
        assert_eq!(later.start_time, first.start_time);
    }
}
