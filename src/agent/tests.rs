//! The agent against a real API server (in-process, temporary store) with the controller
//! manager running: it registers its node, gets a pod range from node IPAM, renews its
//! lease and reports why it is not Ready yet.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::task::JoinSet;

use super::{Agent, AgentConfig};
use crate::api::{ApiConfig, ApiServer, UserInfo};
use crate::store::{SledOptions, SledStore, Store};

#[tokio::test]
async fn registers_gets_a_pod_range_and_reports_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        SledStore::open(&dir.path().join("db"), SledOptions::default()).expect("open store");
    let api = ApiServer::new(store, Default::default(), ApiConfig::default())
        .await
        .expect("api server");
    let admin = crate::client::in_process(api.clone(), UserInfo::system());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    for ns in ["default", "kube-node-lease"] {
        let obj = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .expect("namespace");
        namespaces
            .create(&Default::default(), &obj)
            .await
            .expect("create namespace");
    }
    let _controllers = crate::controllers::spawn(
        crate::client::in_process(api.clone(), UserInfo::controller_manager()),
        crate::controllers::Settings {
            root_ca_pem: String::new(),
            node_monitor_grace_period: Duration::from_secs(40),
            cluster_cidr: "10.42.0.0/16".into(),
            local_storage_path: dir.path().join("storage"),
        },
    );
    let config = AgentConfig {
        node_name: "node-a".into(),
        data_dir: dir.path().to_path_buf(),
        node_ip: "10.0.0.5".parse().expect("ip"),
        labels: [("zone".to_string(), "lab".to_string())].into(),
        control_plane: true,
        max_pods: 110,
        eviction: Default::default(),
    };
    let mut tasks = JoinSet::new();
    let agent = tokio::time::timeout(
        Duration::from_secs(30),
        Agent::start(admin.clone(), config, &mut tasks),
    )
    .await
    .expect("the agent starts within 30 s")
    .expect("the agent starts");
    assert_eq!(agent.pod_cidr, "10.42.0.0/24");
    let allocatable = agent
        .node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref());
    assert!(
        allocatable.is_some_and(|a| a.contains_key("cpu") && a.contains_key("memory")),
        "the agent keeps the node as stored, status included: {allocatable:?}"
    );

    let nodes: Api<Node> = Api::all(admin.clone());
    let node = nodes.get("node-a").await.expect("node");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("zone").map(String::as_str), Some("lab"));
    assert_eq!(
        labels
            .get("node-role.kubernetes.io/control-plane")
            .map(String::as_str),
        Some("true")
    );
    let status = node.status.clone().unwrap_or_default();
    let capacity = status.capacity.unwrap_or_default();
    assert!(capacity.contains_key("cpu") && capacity.contains_key("memory"));
    let internal = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address);
    assert_eq!(internal.as_deref(), Some("10.0.0.5"));

    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let lease = leases.get("node-a").await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("node-a")
    );

    // Pods cannot run yet: the node says so in its Ready condition.
    let ready = async {
        loop {
            let node = nodes.get("node-a").await.expect("node");
            let cond = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready");
            if let Some(c) = cond {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ready = tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("a Ready condition within 10 s");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));

    // A second node gets the next range.
    let second = crate::agent::node::node_object(
        &AgentConfig {
            node_name: "node-b".into(),
            data_dir: dir.path().to_path_buf(),
            node_ip: "10.0.0.6".parse().expect("ip"),
            labels: Default::default(),
            control_plane: false,
            max_pods: 110,
            eviction: Default::default(),
        },
        &crate::agent::host::HostFacts::read(dir.path()).expect("facts"),
    );
    crate::agent::node::register(&nodes, &second)
        .await
        .expect("register b");
    let cidr = tokio::time::timeout(
        Duration::from_secs(10),
        crate::agent::node::wait_for_pod_cidr(&nodes, "node-b"),
    )
    .await
    .expect("a range within 10 s")
    .expect("range");
    assert_eq!(cidr, "10.42.1.0/24");
}
