//! The simulated nodes themselves: their Node objects (capacity, labels, taints, pod CIDR,
//! addresses, Ready) and their Leases in `kube-node-lease`, renewed as a kubelet does.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
    Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::{SimulateArgs, SimulateError};
use crate::apimachinery::quantity::parse_quantity;

const CONCURRENCY: usize = 32;

/// One simulated node.
pub struct SimNode {
    pub name: String,
    /// The node's address (a made-up InternalIP; nothing listens there).
    pub address: Ipv4Addr,
    /// The first address of the node's /24 pod range.
    pub pod_net: Ipv4Addr,
}

/// Every node this simulator plays, and what they all share.
pub struct Fleet {
    pub nodes: Vec<SimNode>,
    cpu: Quantity,
    memory: Quantity,
    max_pods: u32,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    lease_seconds: u32,
}

impl Fleet {
    pub fn new(args: &SimulateArgs) -> Result<Fleet, SimulateError> {
        let invalid = |what: &'static str, value: &str, why: String| SimulateError::Invalid {
            what,
            value: value.to_string(),
            why,
        };
        for (what, q) in [("--cpu", &args.cpu), ("--memory", &args.memory)] {
            parse_quantity(q).map_err(|e| invalid(what, q, e.to_string()))?;
        }
        let (net, bits) = args.cluster_cidr.split_once('/').ok_or_else(|| {
            invalid(
                "--cluster-cidr",
                &args.cluster_cidr,
                "expected a.b.c.d/n".into(),
            )
        })?;
        let base: Ipv4Addr = net.parse().map_err(|e: std::net::AddrParseError| {
            invalid("--cluster-cidr", &args.cluster_cidr, e.to_string())
        })?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 24).ok_or_else(|| {
            invalid(
                "--cluster-cidr",
                &args.cluster_cidr,
                "the prefix must be at most /24".into(),
            )
        })?;
        let subnets = 1u64 << (24 - bits);
        let last = u64::from(args.first_index) + u64::from(args.nodes);
        if last > subnets || last > 65_000 {
            return Err(invalid(
                "--nodes",
                &args.nodes.to_string(),
                format!("{} has room for {subnets} node /24s", args.cluster_cidr),
            ));
        }
        let mut labels = BTreeMap::new();
        for l in &args.node_labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| invalid("--node-label", l, "expected key=value".into()))?;
            labels.insert(k.to_string(), v.to_string());
        }
        let taints = args
            .node_taints
            .iter()
            .map(|t| {
                parse_taint(t)
                    .ok_or_else(|| invalid("--node-taint", t, "expected key[=value]:Effect".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = (args.first_index..args.first_index + args.nodes)
            .map(|i| SimNode {
                name: format!("{}{i}", args.name_prefix),
                address: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 20, 0, 0)) + 1 + i),
                pod_net: Ipv4Addr::from(u32::from(base) + (i << 8)),
            })
            .collect();
        Ok(Fleet {
            nodes,
            cpu: Quantity(args.cpu.clone()),
            memory: Quantity(args.memory.clone()),
            max_pods: args.max_pods,
            labels,
            taints,
            lease_seconds: args.lease_duration_seconds.max(1),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.iter().map(|n| n.name.clone())
    }

    pub fn get(&self, name: &str) -> Option<&SimNode> {
        // Names are `<prefix><i>` in order; a linear scan is fine for lookups off the hot path.
        self.nodes.iter().find(|n| n.name == name)
    }

    fn node_object(&self, n: &SimNode) -> Node {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), n.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert(
            "kubernetes.io/arch".into(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        );
        labels.insert("type".into(), "skiff-simulated".into());
        Node {
            metadata: ObjectMeta {
                name: Some(n.name.clone()),
                labels: Some(labels),
                annotations: Some(
                    [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(format!("{}/24", n.pod_net)),
                pod_cidrs: Some(vec![format!("{}/24", n.pod_net)]),
                provider_id: Some(format!("skiff-simulate://{}", n.name)),
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: Some(self.node_status(n)),
        }
    }

    fn node_status(&self, n: &SimNode) -> NodeStatus {
        let now = Time(Utc::now());
        let resources: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), self.cpu.clone()),
            ("memory".to_string(), self.memory.clone()),
            ("pods".to_string(), Quantity(self.max_pods.to_string())),
            ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
        ]
        .into();
        let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        };
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status (simulated)",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: n.address.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: n.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints::default()),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
                operating_system: "linux".into(),
                os_image: "skiff simulated node".into(),
                kernel_version: "simulated".into(),
                container_runtime_version: "skiff-simulate://0.1".into(),
                kubelet_version: format!("v1.32.0-skiff-sim+{}", env!("CARGO_PKG_VERSION")),
                kube_proxy_version: String::new(),
                machine_id: n.name.clone(),
                system_uuid: n.name.clone(),
                boot_id: n.name.clone(),
            }),
            ..Default::default()
        }
    }

    /// Create (or refresh) every Node and its Lease.
    pub async fn register(&self, client: &kube::Client) -> Result<(), SimulateError> {
        let nodes: Api<Node> = Api::all(client.clone());
        let results: Vec<Result<(), SimulateError>> = stream::iter(&self.nodes)
            .map(|n| {
                let nodes = nodes.clone();
                async move {
                    let node = self.node_object(n);
                    match nodes.create(&PostParams::default(), &node).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            // Restarted simulator: take the node back (labels, taints, Ready).
                            let patch = serde_json::json!({
                                "metadata": {"labels": node.metadata.labels},
                                "spec": {"taints": node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()},
                            });
                            nodes
                                .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await
                                .map_err(SimulateError::api(format!("updating node {}", n.name)))?;
                            let status = serde_json::json!({"status": self.node_status(n)});
                            nodes
                                .patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&status))
                                .await
                                .map_err(SimulateError::api(format!("updating status of node {}", n.name)))?;
                        }
                        Err(e) => return Err(SimulateError::api(format!("registering node {}", n.name))(e)),
                    }
                    Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        renew_all(client, self, true).await
    }
}

/// Renew every node's lease every quarter of its duration (as the kubelet does), forever.
pub async fn renew_leases(client: kube::Client, fleet: Arc<Fleet>) {
    let every = Duration::from_millis(u64::from(fleet.lease_seconds) * 250);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = renew_all(&client, &fleet, false).await {
            tracing::warn!(error = %e, "renewing node leases");
        }
    }
}

async fn renew_all(
    client: &kube::Client,
    fleet: &Fleet,
    create: bool,
) -> Result<(), SimulateError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let results: Vec<Result<(), SimulateError>> = stream::iter(fleet.names().collect::<Vec<_>>())
        .map(|name| {
            let (leases, nodes) = (&leases, &nodes);
            async move {
                crate::agent::lease::renew(leases, nodes, &name, create, fleet.lease_seconds)
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `key[=value]:Effect`, as `kubectl taint` writes it.
fn parse_taint(s: &str) -> Option<Taint> {
    let (kv, effect) = s.rsplit_once(':')?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return None;
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    (!key.is_empty()).then(|| Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_like_kubectl_taint() {
        let t = parse_taint("dedicated=gpu:NoSchedule").expect("valid");
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("spot:NoExecute").expect("valid");
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("spot", None, "NoExecute")
        );
        assert!(parse_taint("x=y:Sometimes").is_none());
        assert!(parse_taint("=y:NoSchedule").is_none());
        assert!(parse_taint("novalue").is_none());
    }
}
