//! The in-process client against a real API server on a temporary store: typed writes,
//! lists and a kube-rs watcher see what kubectl would.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

use super::in_process;
use crate::api::{ApiConfig, ApiServer, UserInfo};
use crate::store::{SledOptions, SledStore, Store};

async fn api_server(dir: &std::path::Path) -> Arc<ApiServer> {
    let store: Arc<dyn Store> = SledStore::open(dir, SledOptions::default()).expect("open store");
    let config = ApiConfig {
        advertise_address: "127.0.0.1:6443".into(),
        ..Default::default()
    };
    ApiServer::new(store, Default::default(), config)
        .await
        .expect("api server")
}

/// Create namespace `name`.
async fn create_namespace(namespaces: &Api<Namespace>, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// An in-process client (system user) of a fresh API server that has namespace `default`.
async fn client_with_default_namespace(dir: &std::path::Path) -> kube::Client {
    let client = in_process(api_server(dir).await, UserInfo::system());
    create_namespace(&Api::all(client.clone()), "default").await;
    client
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn typed_writes_lists_and_errors_go_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client_with_default_namespace(dir.path()).await;

    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms
        .create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    assert!(
        created.metadata.uid.is_some(),
        "the server filled in the uid"
    );
    assert!(created.metadata.resource_version.is_some());

    // A second create of the same name is the API's AlreadyExists, as a typed error.
    match cms.create(&PostParams::default(), &cm("one")).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "AlreadyExists");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let list = cms.list(&ListParams::default()).await.expect("list");
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, ["one"]);
}

#[tokio::test]
async fn a_watcher_sees_objects_created_after_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = in_process(api_server(dir.path()).await, UserInfo::system());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut stream = watcher(namespaces.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    create_namespace(&namespaces, "watched").await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ns) = stream.try_next().await.expect("watch") {
            if ns.metadata.name.as_deref() == Some("watched") {
                return ns;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("the watcher saw the namespace within 10 s");
    assert_eq!(seen.status.and_then(|s| s.phase).as_deref(), Some("Active"));
}

fn binding(pod: &str, node: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }))
    .expect("binding JSON")
}

#[tokio::test]
async fn binding_assigns_the_node_once_and_leaves_the_rest_of_the_pod_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client_with_default_namespace(dir.path()).await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");

    let status: serde_json::Value = pods
        .create_subresource(
            "binding",
            "web",
            &PostParams::default(),
            binding("web", "n1"),
        )
        .await
        .expect("bind");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    let bound = pods.get("web").await.expect("get pod");
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n1")
    );
    assert_ne!(
        bound.metadata.resource_version,
        created.metadata.resource_version
    );
    // Only the node changed: the spec otherwise, the status and managedFields are as
    // they were (kube-apiserver's binding bypasses the field manager too).
    let mut spec = bound.spec.clone().expect("spec");
    spec.node_name = None;
    assert_eq!(Some(spec), created.spec);
    assert_eq!(bound.status, created.status);
    assert_eq!(
        bound.metadata.managed_fields,
        created.metadata.managed_fields
    );

    // A bound pod stays where it is.
    match pods
        .create_subresource::<serde_json::Value>(
            "binding",
            "web",
            &PostParams::default(),
            binding("web", "n2"),
        )
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message
                    .contains("pod web is already assigned to node \"n1\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match pods
        .create_subresource::<serde_json::Value>(
            "binding",
            "gone",
            &PostParams::default(),
            binding("gone", "n1"),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected not found, got {other:?}"),
    }
    match pods
        .create_subresource::<serde_json::Value>(
            "binding",
            "web",
            &PostParams::default(),
            binding("web", ""),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422),
        other => panic!("expected invalid, got {other:?}"),
    }
}
