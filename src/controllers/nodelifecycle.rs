//! Node lifecycle, as kube-controller-manager's node lifecycle controller and taint
//! manager do it: a node whose Lease (in `kube-node-lease`) and Ready heartbeat are older
//! than the grace period (40 s) gets its conditions set to `Unknown` ("Kubelet stopped
//! posting node status.") and the `node.kubernetes.io/unreachable` taints; a node reporting
//! Ready=False gets `node.kubernetes.io/not-ready`; a cordoned node gets
//! `node.kubernetes.io/unschedulable:NoSchedule`; MemoryPressure, DiskPressure,
//! PIDPressure and NetworkUnavailable conditions that are True give their `NoSchedule`
//! taints (TaintNodesByCondition). Pods on a node with NoExecute taints
//! they do not tolerate are deleted, at once or after their `tolerationSeconds` (300 s by
//! default, added at admission); pods on an unreachable node are marked not Ready first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use super::informers::{Informers, NODE_LEASE_NAMESPACE};
use super::ControllerError;
use crate::client::events::{reference, EventType, Recorder};

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Conditions that taint the node `NoSchedule` while True (upstream's
/// TaintNodesByCondition).
pub const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// How often node health is checked (kube-controller-manager's `--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// What the controller concludes about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    NotReady,
    /// Nothing heard from the kubelet within the grace period.
    Unknown,
}

/// The node's health from its Ready condition and how recently it (or its Lease) was
/// heard from.
pub fn node_health(
    node: &Node,
    lease: Option<&Lease>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Health {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let heartbeat = ready
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let last = [heartbeat, renewed, created].into_iter().flatten().max();
    if last.is_none_or(|t| now - t > grace) {
        return Health::Unknown;
    }
    match ready.map(|c| c.status.as_str()) {
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        // Unknown set by us earlier while the lease is fresh again: the kubelet is back
        // but has not posted its status yet. Treat as not ready until it does.
        _ => Health::NotReady,
    }
}

/// The node's taints as they should be for `health` (others are kept as they are).
pub fn desired_taints(node: &Node, health: Health, now: DateTime<Utc>) -> Vec<Taint> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut want: Vec<(&str, &str)> = Vec::new();
    match health {
        Health::Ready => {}
        Health::NotReady => want.extend([
            (TAINT_NOT_READY, "NoSchedule"),
            (TAINT_NOT_READY, "NoExecute"),
        ]),
        Health::Unknown => want.extend([
            (TAINT_UNREACHABLE, "NoSchedule"),
            (TAINT_UNREACHABLE, "NoExecute"),
        ]),
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    // Pressure conditions, as the kubelet last reported them (not while it is silent).
    if health != Health::Unknown {
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (condition, taint) in CONDITION_TAINTS {
            if conditions
                .iter()
                .any(|c| c.type_ == condition && c.status == "True")
            {
                want.push((taint, "NoSchedule"));
            }
        }
    }
    let managed = |t: &Taint| {
        [TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE].contains(&t.key.as_str())
            || CONDITION_TAINTS.iter().any(|(_, key)| *key == t.key)
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in want {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                // Only NoExecute taints carry the time (tolerationSeconds count from it).
                time_added: (effect == "NoExecute").then_some(Time(now)),
            });
        }
    }
    out
}

/// When a pod on a node with `taints` must be evicted: `None` = never (all NoExecute taints
/// tolerated forever), `Some(t)` = at `t` (now or in the past = at once).
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut due: Option<DateTime<Utc>> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching = tolerations.iter().filter(|t| tolerates(t, taint));
        // The longest matching toleration wins; none without seconds means forever.
        let mut seconds: Option<Option<i64>> = None;
        for t in matching {
            seconds = Some(match (seconds, t.toleration_seconds) {
                (None, s) => s,
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.max(b)),
            });
        }
        let at = match seconds {
            None => now,
            Some(None) => continue,
            Some(Some(s)) => {
                taint.time_added.as_ref().map(|t| t.0).unwrap_or(now)
                    + chrono::Duration::seconds(s.max(0))
            }
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

pub async fn run(
    client: kube::Client,
    informers: Informers,
    grace: Duration,
) -> Result<(), ControllerError> {
    informers.ready().await;
    let recorder = Recorder::new(client.clone(), "node-controller");
    let evictions = Recorder::new(client.clone(), "taint-eviction-controller");
    let grace =
        chrono::Duration::from_std(grace).map_err(|e| ControllerError::Other(e.to_string()))?;
    let mut last_health: HashMap<String, Health> = HashMap::new();
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    let mut changed = std::pin::pin!(informers.nodes.changes());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            node = changed.next() => {
                // A node's taints follow its status and `unschedulable` at once, not at
                // the next health pass (upstream's NoSchedule tainting pass): a node that
                // just turned Ready takes pods right away. Silence is the health pass's.
                match node {
                    Some(Ok(node)) => {
                        let lease = informers
                            .leases
                            .get(&ObjectRef::new(&node.name_any()).within(NODE_LEASE_NAMESPACE));
                        let health = node_health(&node, lease.as_deref(), Utc::now(), grace);
                        if health != Health::Unknown {
                            update_taints(&client, &node, health, Utc::now()).await;
                        }
                        continue;
                    }
                    Some(Err(_)) => continue,
                    None => return Ok(()),
                }
            }
        }
        let now = Utc::now();
        let nodes = informers.nodes.state();
        let pods = informers.pods.state();
        let mut by_node: HashMap<&str, Vec<&Arc<Pod>>> = HashMap::new();
        for p in &pods {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                by_node.entry(n).or_default().push(p);
            }
        }
        for node in &nodes {
            let name = node.name_any();
            let lease = informers
                .leases
                .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
            let health = node_health(node, lease.as_deref(), now, grace);
            let previous = last_health.insert(name.clone(), health);
            if health == Health::Unknown {
                mark_unknown(&client, node, now).await;
                if previous != Some(Health::Unknown) {
                    recorder
                        .record(
                            &reference(node.as_ref()),
                            EventType::Normal,
                            "NodeNotReady",
                            &format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                    for pod in by_node.get(name.as_str()).into_iter().flatten() {
                        mark_pod_not_ready(&client, pod, now).await;
                    }
                }
            } else if previous == Some(Health::Unknown) && health == Health::Ready {
                recorder
                    .record(
                        &reference(node.as_ref()),
                        EventType::Normal,
                        "NodeReady",
                        &format!("Node {name} status is now: NodeReady"),
                    )
                    .await;
            }
            let taints = update_taints(&client, node, health, now).await;
            // Taint-based eviction.
            for pod in by_node.get(name.as_str()).into_iter().flatten() {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if eviction_time(pod, &taints, now).is_some_and(|at| at <= now) {
                    let ns = pod.namespace().unwrap_or_default();
                    evictions
                        .record(
                            &reference(pod.as_ref()),
                            EventType::Normal,
                            "TaintManagerEviction",
                            &format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
                        )
                        .await;
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: pod.metadata.uid.clone(),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    if let Err(e) = api.delete(&pod.name_any(), &params).await {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "evicting pod");
                    }
                }
            }
        }
        last_health.retain(|n, _| {
            nodes
                .iter()
                .any(|node| node.metadata.name.as_deref() == Some(n.as_str()))
        });
    }
}

/// Give `node` the taints `health` and its status call for, if it lacks them; the taints
/// it should have.
async fn update_taints(
    client: &kube::Client,
    node: &Node,
    health: Health,
    now: DateTime<Utc>,
) -> Vec<Taint> {
    let taints = desired_taints(node, health, now);
    let current = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    if taints != current.unwrap_or_default() {
        let nodes_api: Api<Node> = Api::all(client.clone());
        let patch = json!({"spec": {"taints": taints}});
        if let Err(e) = nodes_api
            .patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(node = %node.name_any(), error = %e, "updating node taints");
        }
    }
    taints
}

/// Set every condition the kubelet owns to Unknown, as upstream does for a silent node.
async fn mark_unknown(client: &kube::Client, node: &Node, now: DateTime<Utc>) {
    let Some(conditions) = node.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return;
    };
    if conditions.iter().all(|c| c.status == "Unknown") {
        return;
    }
    let updated: Vec<_> = conditions
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            c
        })
        .collect();
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": updated}});
    if let Err(e) = api
        .patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(node = %node.name_any(), error = %e, "marking node status unknown");
    }
}

async fn mark_pod_not_ready(client: &kube::Client, pod: &Pod, now: DateTime<Utc>) {
    let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return;
    };
    let updated: Vec<_> = conditions
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c.type_ == "Ready" && c.status == "True" {
                c.status = "False".into();
                c.last_transition_time = Some(Time(now));
            }
            c
        })
        .collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"status": {"conditions": updated}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "marking pod not ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("valid time")
    }

    fn node(ready: &str, heartbeat: i64) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(Time(at(heartbeat))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(at(renewed))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_goes_unknown_after_the_grace_period_without_lease_renewal() {
        let grace = chrono::Duration::seconds(40);
        let n = node("True", 0);
        assert_eq!(
            node_health(&n, Some(&lease(100)), at(130), grace),
            Health::Ready
        );
        assert_eq!(
            node_health(&n, Some(&lease(100)), at(141), grace),
            Health::Unknown
        );
        assert_eq!(node_health(&n, None, at(30), grace), Health::Ready);
        assert_eq!(node_health(&n, None, at(41), grace), Health::Unknown);
        assert_eq!(
            node_health(&node("False", 0), Some(&lease(10)), at(20), grace),
            Health::NotReady
        );
    }

    #[test]
    fn pressure_conditions_taint_the_node_no_schedule_while_true() {
        let mut n = node("True", 0);
        if let Some(conditions) = n.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions.push(NodeCondition {
                type_: "DiskPressure".into(),
                status: "True".into(),
                ..Default::default()
            });
            conditions.push(NodeCondition {
                type_: "MemoryPressure".into(),
                status: "False".into(),
                ..Default::default()
            });
        }
        let t = desired_taints(&n, Health::Ready, at(10));
        assert_eq!(
            t,
            [Taint {
                key: "node.kubernetes.io/disk-pressure".into(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: None,
            }]
        );
        // The pressure goes: so does the taint.
        n.spec = Some(NodeSpec {
            taints: Some(t),
            ..Default::default()
        });
        if let Some(conditions) = n.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions.retain(|c| c.type_ != "DiskPressure");
        }
        assert!(desired_taints(&n, Health::Ready, at(20)).is_empty());
    }

    #[test]
    fn taints_follow_health_and_cordon_and_keep_user_taints() {
        let mut n = node("True", 0);
        let user = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        n.spec = Some(NodeSpec {
            taints: Some(vec![user.clone()]),
            unschedulable: Some(true),
            ..Default::default()
        });
        let t = desired_taints(&n, Health::Unknown, at(50));
        let keys: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
                (TAINT_UNSCHEDULABLE, "NoSchedule"),
            ]
        );
        assert_eq!(t[2].time_added, Some(Time(at(50))));
        // Back to Ready (and uncordoned): only the user's taint stays.
        n.spec = Some(NodeSpec {
            taints: Some(t),
            unschedulable: Some(false),
            ..Default::default()
        });
        assert_eq!(desired_taints(&n, Health::Ready, at(60)), vec![user]);
    }

    #[test]
    fn eviction_waits_for_toleration_seconds_from_the_taint() {
        let taint = Taint {
            key: TAINT_UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(at(100))),
        };
        let pod = |tolerations: Vec<Toleration>| Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tol = |secs: Option<i64>| Toleration {
            key: Some(TAINT_UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        };
        assert_eq!(
            eviction_time(&pod(vec![]), std::slice::from_ref(&taint), at(120)),
            Some(at(120))
        );
        assert_eq!(
            eviction_time(
                &pod(vec![tol(Some(300))]),
                std::slice::from_ref(&taint),
                at(120)
            ),
            Some(at(400))
        );
        assert_eq!(
            eviction_time(&pod(vec![tol(None)]), std::slice::from_ref(&taint), at(120)),
            None
        );
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            eviction_time(
                &pod(vec![everything]),
                std::slice::from_ref(&taint),
                at(120)
            ),
            None
        );
        let no_schedule = Taint {
            effect: "NoSchedule".into(),
            ..taint
        };
        assert_eq!(eviction_time(&pod(vec![]), &[no_schedule], at(120)), None);
    }
}
