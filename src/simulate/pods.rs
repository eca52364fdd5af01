//! Playing kubelet for pods bound to simulated nodes: start them (Running, Ready unless
//! the ready annotation says otherwise, an IP from the node's /24), finish pods whose
//! restartPolicy is not `Always` after their run time with their exit code, follow the
//! ready annotation, and remove deleted pods (their "containers" stop at once).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::nodes::Fleet;
use super::{SimulateError, EXIT_CODE_ANNOTATION, READY_ANNOTATION, RUN_SECONDS_ANNOTATION};

/// Default run time of a pod that finishes (restartPolicy Never or OnFailure).
const DEFAULT_RUN_SECONDS: f64 = 1.0;
/// Pod writes (status patches, removals) in flight at once. One simulator plays every
/// node through one HTTP/1.1 client, where each request in flight is a connection of its
/// own: unbounded, a burst of 10,000 bound pods became ~1,000 concurrent patches and
/// connections, and every other client of the server (the scheduler's bindings among
/// them) queued behind them for seconds. Real kubelets are bounded too (client QPS).
const WRITES_IN_FLIGHT: usize = 32;

struct Kubelet {
    client: kube::Client,
    fleet: Arc<Fleet>,
    /// Pod IPs in use per node (last octet).
    ips: Mutex<HashMap<String, BTreeSet<u8>>>,
    /// Pods (uid) this simulator has started or is finishing, so events caused by its own
    /// writes do not start them twice.
    started: Mutex<HashSet<String>>,
    /// Pods (uid) whose removal is under way.
    removing: Mutex<HashSet<String>>,
    /// Permits for pod writes ([`WRITES_IN_FLIGHT`]); waiting writes queue in order.
    writes: tokio::sync::Semaphore,
}

pub async fn run(client: kube::Client, fleet: Arc<Fleet>) -> Result<(), SimulateError> {
    let kubelet = Arc::new(Kubelet {
        client: client.clone(),
        fleet,
        ips: Mutex::new(HashMap::new()),
        started: Mutex::new(HashSet::new()),
        removing: Mutex::new(HashSet::new()),
        writes: tokio::sync::Semaphore::new(WRITES_IN_FLIGHT),
    });
    let pods: Api<Pod> = Api::all(client);
    // One unpaginated initial list, answered whole from the API server's watch cache
    // (kwok's informers list with resourceVersion=0, which kube-apiserver also serves
    // whole from its cache); pages after the first would each be read from the store.
    let config = watcher::Config {
        page_size: None,
        ..watcher::Config::default()
    };
    let mut events = watcher(pods, config).default_backoff().boxed();
    while let Some(event) = events
        .try_next()
        .await
        .map_err(|e| SimulateError::Invalid {
            what: "pod watch",
            value: String::new(),
            why: e.to_string(),
        })?
    {
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => kubelet.observe(pod),
            watcher::Event::Delete(pod) => kubelet.forget(&pod),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
    Ok(())
}

impl Kubelet {
    fn observe(self: &Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if self.fleet.get(&node).is_none() {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(ip) = pod_ip(&pod) {
            self.claim_ip(&node, ip);
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if self.removing.lock().is_ok_and(|mut r| r.insert(uid)) {
                let me = self.clone();
                tokio::spawn(async move { me.remove(pod).await });
            }
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Succeeded" | "Failed" => {}
            "Running" => {
                // Follow the ready annotation.
                let want = wants_ready(&pod);
                if is_ready(&pod) != want && self.started.lock().is_ok_and(|s| s.contains(&uid)) {
                    let me = self.clone();
                    tokio::spawn(async move { me.set_ready(&pod, want).await });
                } else if !self.started.lock().is_ok_and(|s| s.contains(&uid)) {
                    // Started by an earlier simulator run: take it over.
                    if let Ok(mut s) = self.started.lock() {
                        s.insert(uid);
                    }
                    self.schedule_finish(pod);
                }
            }
            _ => {
                if self.started.lock().is_ok_and(|mut s| s.insert(uid)) {
                    let me = self.clone();
                    tokio::spawn(async move { me.start(pod, node).await });
                }
            }
        }
    }

    fn forget(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Ok(mut s) = self.started.lock() {
            s.remove(&uid);
        }
        if let Ok(mut r) = self.removing.lock() {
            r.remove(&uid);
        }
        if let (Some(node), Some(ip)) = (
            pod.spec.as_ref().and_then(|s| s.node_name.as_ref()),
            pod_ip(pod),
        ) {
            if let Ok(mut ips) = self.ips.lock() {
                if let Some(used) = ips.get_mut(node) {
                    used.remove(&ip.octets()[3]);
                }
            }
        }
    }

    fn claim_ip(&self, node: &str, ip: Ipv4Addr) {
        if let Ok(mut ips) = self.ips.lock() {
            ips.entry(node.to_string())
                .or_default()
                .insert(ip.octets()[3]);
        }
    }

    fn allocate_ip(&self, node: &str) -> Option<Ipv4Addr> {
        let base = self.fleet.get(node)?.pod_net;
        let mut ips = self.ips.lock().ok()?;
        let used = ips.entry(node.to_string()).or_default();
        // .1 is the node's gateway, as on a real skiff node.
        let free = (2u8..=254).find(|o| !used.contains(o))?;
        used.insert(free);
        Some(Ipv4Addr::from(u32::from(base) + u32::from(free)))
    }

    async fn start(self: Arc<Self>, pod: Pod, node: String) {
        let Some(ip) = self.allocate_ip(&node) else {
            tracing::warn!(pod = %pod.name_any(), %node, "no free pod IP on the node");
            return;
        };
        let host_ip = self
            .fleet
            .get(&node)
            .map(|n| n.address.to_string())
            .unwrap_or_default();
        let now = Time(Utc::now());
        let ready = wants_ready(&pod);
        let containers: Vec<Value> = containers(&pod)
            .map(|(name, image)| {
                json!({
                    "name": name,
                    "image": image,
                    "imageID": format!("sim://{image}"),
                    "containerID": format!("sim://{}-{name}", pod.metadata.uid.as_deref().unwrap_or_default()),
                    "ready": ready,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                })
            })
            .collect();
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "startTime": now,
            "conditions": conditions(ready, &now),
            "containerStatuses": containers,
        }});
        if self.patch_status(&pod, &status).await {
            self.schedule_finish(pod);
        }
    }

    /// Pods that are not restarted forever finish after their run time.
    fn schedule_finish(self: &Arc<Self>, pod: Pod) {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_default();
        if policy == "Always" || policy.is_empty() {
            return;
        }
        let seconds = pod
            .annotations()
            .get(RUN_SECONDS_ANNOTATION)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(DEFAULT_RUN_SECONDS);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            me.finish(pod, policy == "OnFailure").await;
        });
    }

    async fn finish(self: Arc<Self>, pod: Pod, restart_on_failure: bool) {
        let code = exit_code(&pod);
        let now = Time(Utc::now());
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(|| now.clone());
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated = json!({"terminated": {
            "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now,
        }});
        if code != 0 && restart_on_failure {
            // The kubelet restarts the container in place; the pod stays Running.
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .map(|c| c.restart_count)
                .unwrap_or(0);
            let containers: Vec<Value> = containers(&pod)
                .map(|(name, image)| {
                    json!({
                        "name": name, "image": image, "imageID": format!("sim://{image}"),
                        "ready": false, "started": true, "restartCount": restarts + 1,
                        "state": {"running": {"startedAt": now}},
                        "lastState": terminated,
                    })
                })
                .collect();
            let status = json!({"status": {"containerStatuses": containers}});
            if self.patch_status(&pod, &status).await {
                let mut again = pod;
                if let Some(s) = again.status.as_mut() {
                    if let Some(c) = s.container_statuses.as_mut().and_then(|c| c.first_mut()) {
                        c.restart_count = restarts + 1;
                    }
                }
                self.schedule_finish(again);
            }
            return;
        }
        let containers: Vec<Value> = containers(&pod)
            .map(|(name, image)| {
                json!({
                    "name": name, "image": image, "imageID": format!("sim://{image}"),
                    "ready": false, "started": false, "restartCount": 0, "state": terminated,
                })
            })
            .collect();
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        let mut conds = conditions(false, &now);
        if let Some(c) = conds
            .iter_mut()
            .find(|c| c["type"] == "Ready" || c["type"] == "ContainersReady")
        {
            c["reason"] = json!("PodCompleted");
        }
        let status = json!({"status": {"phase": phase, "conditions": conds, "containerStatuses": containers}});
        self.patch_status(&pod, &status).await;
    }

    async fn set_ready(&self, pod: &Pod, ready: bool) {
        let now = Time(Utc::now());
        let mut containers: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| {
                c.iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        for c in &mut containers {
            c["ready"] = json!(ready);
        }
        let status = json!({"status": {"conditions": conditions(ready, &now), "containerStatuses": containers}});
        self.patch_status(pod, &status).await;
    }

    /// A deleted pod's containers stop at once; remove the pod (uid-checked, so a new pod
    /// of the same name is never hit).
    async fn remove(&self, pod: Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        // The semaphore is never closed.
        let _permit = self.writes.acquire().await.ok();
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "removing deleted pod"),
        }
    }

    async fn patch_status(&self, pod: &Pod, status: &Value) -> bool {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        // The semaphore is never closed.
        let _permit = self.writes.acquire().await.ok();
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "updating pod status");
                false
            }
        }
    }
}

fn containers(pod: &Pod) -> impl Iterator<Item = (String, String)> + '_ {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
}

fn conditions(ready: bool, now: &Time) -> Vec<Value> {
    let ready_s = if ready { "True" } else { "False" };
    let mut out = vec![
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": now}),
    ];
    for t in ["Ready", "ContainersReady"] {
        let mut c = json!({"type": t, "status": ready_s, "lastTransitionTime": now});
        if !ready {
            c["reason"] = json!("ContainersNotReady");
        }
        out.push(c);
    }
    out.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}));
    out
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn wants_ready(pod: &Pod) -> bool {
    pod.annotations().get(READY_ANNOTATION).map(String::as_str) != Some("false")
}

/// The exit code the pod's "containers" finish with: the annotation, else a command that
/// ends in `exit N`, else 0.
fn exit_code(pod: &Pod) -> i32 {
    if let Some(code) = pod
        .annotations()
        .get(EXIT_CODE_ANNOTATION)
        .and_then(|c| c.trim().parse().ok())
    {
        return code;
    }
    let words: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.first())
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .flat_map(|w| w.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    match words.as_slice() {
        [.., exit, code] if exit.trim_start_matches([';', '&']) == "exit" => {
            code.trim_end_matches(';').parse().unwrap_or(0)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(command: &[&str], annotation: Option<&str>) -> Pod {
        let mut p = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    command: Some(command.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(a) = annotation {
            p.metadata.annotations =
                Some([(EXIT_CODE_ANNOTATION.to_string(), a.to_string())].into());
        }
        p
    }

    #[test]
    fn exit_codes_come_from_the_annotation_or_the_command() {
        assert_eq!(exit_code(&pod(&["sh", "-c", "exit 3"], None)), 3);
        assert_eq!(exit_code(&pod(&["sh", "-c", "echo hi; exit 1"], None)), 1);
        assert_eq!(exit_code(&pod(&["sleep", "1"], None)), 0);
        assert_eq!(exit_code(&pod(&["sh", "-c", "exit 3"], Some("7"))), 7);
        assert_eq!(exit_code(&pod(&[], None)), 0);
    }
}
