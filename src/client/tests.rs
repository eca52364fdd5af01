//! The in-process client against a real API server on a temporary store: typed writes,
//! lists and a kube-rs watcher see what kubectl would.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
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
    let client = in_process(api_server(dir.path()).await, UserInfo::system());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");

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
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("watched".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
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
