//! The agent's Node object: registration (labels, addresses, capacity and allocatable
//! from the host, node info), the pod range the server assigns, and node status with
//! kubelet's conditions (Ready, and MemoryPressure, DiskPressure, PIDPressure as the
//! eviction manager ([`super::eviction`]) observes them), posted when a condition changes
//! and at least every [`STATUS_REPORT_EVERY`] (the Lease is the frequent heartbeat).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;

use super::eviction::Signal;
use super::host::HostFacts;
use super::{AgentConfig, AgentError};

/// How often conditions are computed (kubelet's `nodeStatusUpdateFrequency`).
pub const STATUS_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often status is posted when nothing changed (`nodeStatusReportFrequency`).
pub const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);

fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// The node's labels: kubelet's well-known ones, k3s's role labels on servers, then the
/// user's `--node-label`s.
pub fn labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("kubernetes.io/hostname", config.node_name.clone()),
        ("kubernetes.io/os", "linux".into()),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux".into()),
        ("beta.kubernetes.io/arch", arch()),
        ("node.kubernetes.io/instance-type", "skiff".into()),
    ] {
        labels.insert(k.to_string(), v);
    }
    if config.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
        labels.insert("node-role.kubernetes.io/master".into(), "true".into());
    }
    labels.extend(config.labels.clone());
    labels
}

fn kib(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}

/// Capacity and allocatable: allocatable keeps back the hard eviction thresholds of
/// `memory.available` and `nodefs.available`, as kubelet does when no reservations are
/// configured.
pub fn resources(
    config: &AgentConfig,
    facts: &HostFacts,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(facts.cpus.to_string()));
    capacity.insert("memory".to_string(), kib(facts.memory_bytes));
    capacity.insert("ephemeral-storage".to_string(), kib(facts.storage_bytes));
    capacity.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    capacity.insert("hugepages-1Gi".to_string(), Quantity("0".into()));
    capacity.insert("hugepages-2Mi".to_string(), Quantity("0".into()));
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".to_string(),
        kib(facts.memory_bytes.saturating_sub(
            config
                .eviction
                .reserved(Signal::MemoryAvailable, facts.memory_bytes),
        )),
    );
    allocatable.insert(
        "ephemeral-storage".to_string(),
        Quantity(
            facts
                .storage_bytes
                .saturating_sub(
                    config
                        .eviction
                        .reserved(Signal::NodeFsAvailable, facts.storage_bytes),
                )
                .to_string(),
        ),
    );
    (capacity, allocatable)
}

/// The Node as the agent registers it.
pub fn node_object(config: &AgentConfig, facts: &HostFacts) -> Node {
    let (capacity, allocatable) = resources(config, facts);
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels(config)),
            annotations: Some(
                [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("skiff://{}", config.node_name)),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: config.node_ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: facts.hostname.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints::default()),
            node_info: Some(NodeSystemInfo {
                architecture: arch(),
                operating_system: "linux".into(),
                os_image: facts.os_image.clone(),
                kernel_version: facts.kernel_version.clone(),
                container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
                kubelet_version: crate::apimachinery::GIT_VERSION.to_string(),
                kube_proxy_version: String::new(),
                machine_id: facts.machine_id.clone(),
                system_uuid: facts.machine_id.clone(),
                boot_id: facts.boot_id.clone(),
            }),
            ..Default::default()
        }),
    }
}

/// One condition's state without its timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// kubelet's four node conditions from the pressure conditions that are on (`pressure`,
/// from the eviction manager) and the agent's own readiness (`not_ready`: why pods cannot
/// run yet, e.g. the pod network is not set up).
pub fn conditions(pressure: &[&str], not_ready: Option<&str>) -> Vec<ConditionState> {
    let c = |type_, status, reason, message: &str| ConditionState {
        type_,
        status,
        reason,
        message: message.to_string(),
    };
    let on = |condition: &str| pressure.contains(&condition);
    let memory = if on("MemoryPressure") {
        c(
            "MemoryPressure",
            "True",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let disk = if on("DiskPressure") {
        c(
            "DiskPressure",
            "True",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        )
    } else {
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        )
    };
    let pid = if on("PIDPressure") {
        c(
            "PIDPressure",
            "True",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        )
    } else {
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        )
    };
    let ready = match not_ready {
        None => c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        Some(why) => c("Ready", "False", "KubeletNotReady", why),
    };
    vec![memory, disk, pid, ready]
}

/// The conditions as NodeConditions: transition times kept from `previous` where the
/// status did not change, heartbeat now.
pub fn node_conditions(
    states: &[ConditionState],
    previous: &[NodeCondition],
) -> Vec<NodeCondition> {
    let now = Time(Utc::now());
    states
        .iter()
        .map(|s| {
            let transition = previous
                .iter()
                .find(|p| p.type_ == s.type_ && p.status == s.status)
                .and_then(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: s.type_.to_string(),
                status: s.status.to_string(),
                reason: Some(s.reason.to_string()),
                message: Some(s.message.clone()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// Create the Node, or take an existing one of that name back (its labels), then post
/// its status (a create does not write status). Returns the Node as stored.
pub async fn register(nodes: &Api<Node>, node: &Node) -> Result<Node, AgentError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    match nodes.create(&PostParams::default(), node).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::info!(node = %name, "the node is registered already; updating it");
            let patch = serde_json::json!({"metadata": {"labels": node.metadata.labels}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(AgentError::api(format!("updating node {name}")))?;
        }
        Err(e) => return Err(AgentError::api(format!("registering node {name}"))(e)),
    }
    let status = serde_json::json!({"status": node.status});
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(AgentError::api(format!(
            "posting the status of node {name}"
        )))
}

/// Wait until the server has given the node its pod range; returns it (`a.b.c.0/24`).
pub async fn wait_for_pod_cidr(nodes: &Api<Node>, name: &str) -> Result<String, AgentError> {
    let mut logged = false;
    loop {
        let node = nodes
            .get(name)
            .await
            .map_err(AgentError::api(format!("reading node {name}")))?;
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
            return Ok(cidr);
        }
        if !logged {
            tracing::info!(node = %name, "waiting for the server to assign the node's pod range");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keep the node's status current: every [`STATUS_CHECK_EVERY`] compute the conditions;
/// post them when one changed (readiness and pressure changes wake the loop at once), or
/// every [`STATUS_REPORT_EVERY`].
pub async fn keep_status(
    client: kube::Client,
    config: AgentConfig,
    mut not_ready: watch::Receiver<Option<String>>,
    mut pressure: watch::Receiver<Vec<&'static str>>,
) {
    let nodes: Api<Node> = Api::all(client);
    let name = config.node_name.clone();
    let mut posted: Option<(Vec<ConditionState>, tokio::time::Instant)> = None;
    let mut previous: Vec<NodeCondition> = Vec::new();
    let mut readiness_final = false;
    let mut pressure_final = false;
    loop {
        let why = not_ready.borrow_and_update().clone();
        let on = pressure.borrow_and_update().clone();
        let states = conditions(&on, why.as_deref());
        let due = posted
            .as_ref()
            .is_none_or(|(last, at)| *last != states || at.elapsed() >= STATUS_REPORT_EVERY);
        if due {
            let conds = node_conditions(&states, &previous);
            let patch = serde_json::json!({"status": {"conditions": conds}});
            match nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    if posted.as_ref().is_none_or(|(last, _)| *last != states) {
                        let summary: Vec<String> = states
                            .iter()
                            .map(|s| format!("{}={}", s.type_, s.status))
                            .collect();
                        tracing::info!(node = %name, conditions = %summary.join(","), "node status posted");
                    }
                    previous = conds;
                    posted = Some((states, tokio::time::Instant::now()));
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "posting node status"),
            }
        }
        // Readiness and pressure changes wake the loop early; a closed channel is final.
        tokio::select! {
            _ = tokio::time::sleep(STATUS_CHECK_EVERY) => {}
            changed = not_ready.changed(), if !readiness_final => readiness_final = changed.is_err(),
            changed = pressure.changed(), if !pressure_final => pressure_final = changed.is_err(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(control_plane: bool) -> AgentConfig {
        AgentConfig {
            node_name: "box".into(),
            data_dir: "/var/lib/skiff".into(),
            node_ip: "192.168.1.5".parse().expect("ip"),
            labels: [("team".to_string(), "a".to_string())].into(),
            control_plane,
            max_pods: 110,
            eviction: Default::default(),
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            hostname: "box".into(),
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            storage_bytes: 100 * 1024 * 1024 * 1024,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn servers_carry_k3s_role_labels_and_agents_do_not() {
        let l = labels(&config(true));
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(l["kubernetes.io/hostname"], "box");
        assert_eq!(l["team"], "a");
        assert!(!labels(&config(false)).contains_key("node-role.kubernetes.io/control-plane"));
    }

    #[test]
    fn allocatable_keeps_back_the_eviction_thresholds() {
        let (cap, alloc) = resources(&config(false), &facts());
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        // k3s's defaults keep no memory back.
        assert_eq!(alloc["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let storage: u64 = alloc["ephemeral-storage"].0.parse().expect("bytes");
        // k3s's default nodefs.available<5% is kept back.
        assert_eq!(storage, 100 * 1024 * 1024 * 1024 / 20 * 19);
    }

    #[test]
    fn conditions_follow_the_pressure_conditions() {
        let ok = conditions(&[], None);
        let status: Vec<_> = ok.iter().map(|c| (c.type_, c.status)).collect();
        assert_eq!(
            status,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True")
            ]
        );
        let bad = conditions(
            &["MemoryPressure", "DiskPressure", "PIDPressure"],
            Some("network not ready"),
        );
        let status: Vec<_> = bad.iter().map(|c| (c.type_, c.status)).collect();
        assert_eq!(
            status,
            [
                ("MemoryPressure", "True"),
                ("DiskPressure", "True"),
                ("PIDPressure", "True"),
                ("Ready", "False")
            ]
        );
        assert_eq!(bad[1].reason, "KubeletHasDiskPressure");
        assert_eq!(bad[3].message, "network not ready");
    }

    #[test]
    fn transition_times_survive_unchanged_statuses() {
        let states = conditions(&[], None);
        let mut previous = node_conditions(&states, &[]);
        let old = Time(Utc::now() - chrono::Duration::hours(1));
        for c in &mut previous {
            c.last_transition_time = Some(old.clone());
        }
        let again = node_conditions(&states, &previous);
        assert!(again
            .iter()
            .all(|c| c.last_transition_time.as_ref() == Some(&old)));
        let flipped = conditions(&[], Some("x"));
        let after = node_conditions(&flipped, &previous);
        let ready = after.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_ne!(ready.last_transition_time.as_ref(), Some(&old));
    }
}
