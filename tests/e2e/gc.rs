//! Garbage collection and deletion propagation with the real kubectl against `skiff
//! server` plus `skiff simulate`: `kubectl delete` in background (default), foreground and
//! orphan cascades, and hand-made ownerReferences between ConfigMaps.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{eventually, Server};

fn json(s: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.ok(&all)).expect("kubectl JSON")
}

/// Names of the objects of `kind` matching `selector` (terminating ones included).
fn names(s: &Server, kind: &str, selector: &str) -> Vec<String> {
    json(s, &[kind, "-l", selector])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn exists(s: &Server, kind: &str, name: &str) -> bool {
    let out = s.kubectl(&["get", kind, name, "--ignore-not-found", "-o", "name"]);
    assert!(out.status.success(), "kubectl get {kind} {name} failed");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

fn deploy(s: &Server, name: &str) {
    s.ok(&[
        "create",
        "deployment",
        name,
        "--image=busybox:1",
        "--replicas=2",
    ]);
    s.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=90s",
    ]);
    assert_eq!(names(s, "pods", &format!("app={name}")).len(), 2);
}

#[test]
fn deleting_a_deployment_removes_its_replicasets_and_pods() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "2"]);
    deploy(&s, "web");
    assert_eq!(names(&s, "replicasets", "app=web").len(), 1);
    s.ok(&["delete", "deployment", "web"]);
    eventually(30, "the ReplicaSet and pods of web to be collected", || {
        (names(&s, "replicasets", "app=web").is_empty() && names(&s, "pods", "app=web").is_empty())
            .then_some(())
    });
}

#[test]
fn foreground_deletion_keeps_the_deployment_until_its_pods_are_gone() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "2"]);
    deploy(&s, "fg");
    // One pod carries a finalizer of ours, so it stays Terminating until we let it go.
    let pods = names(&s, "pods", "app=fg");
    let held = pods[0].clone();
    s.ok(&[
        "patch",
        "pod",
        &held,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);

    s.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let d = json(&s, &["deployment", "fg"]);
    assert!(!d["metadata"]["deletionTimestamp"].is_null(), "{d}");
    assert_eq!(finalizers(&d), ["foregroundDeletion"]);

    // The free pod goes; the held one is Terminating; the ReplicaSet and the Deployment
    // wait for it, each with the foregroundDeletion finalizer.
    eventually(30, "the unheld pod to be deleted", || {
        (names(&s, "pods", "app=fg") == [held.clone()]).then_some(())
    });
    let rs = eventually(30, "the ReplicaSet to be deleted in foreground", || {
        let list = json(&s, &["replicasets", "-l", "app=fg"]);
        let rs = list["items"][0].clone();
        (!rs["metadata"]["deletionTimestamp"].is_null()).then_some(rs)
    });
    assert_eq!(finalizers(&rs), ["foregroundDeletion"], "{rs}");
    let pod = json(&s, &["pod", &held]);
    assert!(!pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        exists(&s, "deployment", "fg"),
        "deployment left before its pods"
    );
    assert_eq!(names(&s, "replicasets", "app=fg").len(), 1);

    // Let the pod go: then the ReplicaSet, then the Deployment disappear.
    s.ok(&[
        "patch",
        "pod",
        &held,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    eventually(30, "the deployment to disappear", || {
        (!exists(&s, "deployment", "fg")).then_some(())
    });
    assert!(names(&s, "pods", "app=fg").is_empty());
    assert!(names(&s, "replicasets", "app=fg").is_empty());
}

#[test]
fn orphan_deletion_leaves_the_replicaset_and_pods_running() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "2"]);
    deploy(&s, "orph");
    let rs_name = names(&s, "replicasets", "app=orph")[0].clone();
    s.ok(&["delete", "deployment", "orph", "--cascade=orphan"]);
    assert!(!exists(&s, "deployment", "orph"));
    // Give the collector time to do wrong.
    std::thread::sleep(Duration::from_secs(3));
    let rs = json(&s, &["replicaset", &rs_name]);
    assert!(rs["metadata"]["ownerReferences"].is_null(), "{rs}");
    assert!(rs["metadata"]["deletionTimestamp"].is_null(), "{rs}");
    let pods = json(&s, &["pods", "-l", "app=orph"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{pods}");
    for p in &items {
        assert!(p["metadata"]["deletionTimestamp"].is_null(), "{p}");
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["name"],
            rs_name.as_str()
        );
    }
    let out = s.ok(&["get", "replicaset", &rs_name]);
    assert!(out.contains(&rs_name), "{out}");
}

#[test]
fn configmap_owned_by_a_deleted_configmap_is_collected() {
    let s = Server::start();
    for name in ["owner", "keeper"] {
        s.ok(&["create", "configmap", name]);
    }
    let uid = |name: &str| {
        json(&s, &["configmap", name])["metadata"]["uid"]
            .as_str()
            .expect("uid")
            .to_string()
    };
    let (owner, keeper) = (uid("owner"), uid("keeper"));
    let child = |name: &str, owners: &[(&str, &str)]| {
        let refs: Vec<String> = owners
            .iter()
            .map(|(n, u)| {
                format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","name":"{n}","uid":"{u}"}}"#)
            })
            .collect();
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","ownerReferences":[{}]}}}}"#,
            refs.join(",")
        )
    };
    s.ok_stdin(
        &["create", "-f", "-"],
        &child("child", &[("owner", &owner)]),
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &child("shared", &[("owner", &owner), ("keeper", &keeper)]),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        exists(&s, "configmap", "child"),
        "collected while its owner lives"
    );

    s.ok(&["delete", "configmap", "owner"]);
    eventually(30, "configmap child to be collected", || {
        (!exists(&s, "configmap", "child")).then_some(())
    });
    // `shared` keeps its other owner and loses the reference to the deleted one.
    let shared = eventually(30, "shared to drop the deleted owner", || {
        let cm = json(&s, &["configmap", "shared"]);
        (cm["metadata"]["ownerReferences"].as_array().map(Vec::len) == Some(1)).then_some(cm)
    });
    assert_eq!(shared["metadata"]["ownerReferences"][0]["name"], "keeper");
    assert!(shared["metadata"]["deletionTimestamp"].is_null());

    // An owner that never existed (wrong uid) does not keep a dependent alive.
    s.ok_stdin(
        &["create", "-f", "-"],
        &child(
            "stray",
            &[("keeper", "00000000-0000-0000-0000-000000000000")],
        ),
    );
    eventually(30, "configmap stray to be collected", || {
        (!exists(&s, "configmap", "stray")).then_some(())
    });
    assert!(exists(&s, "configmap", "keeper"));
}
