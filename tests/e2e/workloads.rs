//! Control loops with the real kubectl against `skiff server` plus `skiff simulate`:
//! scheduling, Deployments and ReplicaSets, namespace deletion.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::Stdio;

use crate::harness::{eventually, Server};

/// `kubectl get pods` for a selector as (name, node, ready, image) rows.
fn pods(s: &Server, selector: &str) -> Vec<(String, String, bool, String)> {
    let out = s.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("pod list JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn rollout_status(s: &Server, what: &str) {
    s.ok(&["rollout", "status", what, "--timeout=90s"]);
}

#[test]
fn deployment_spreads_rolls_out_within_max_unavailable_and_rolls_back() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=6",
    ]);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":1,"maxSurge":1}}}}"#,
    ]);
    rollout_status(&s, "deployment/web");

    // Six replicas on three nodes land two per node.
    let running = pods(&s, "app=web");
    assert_eq!(running.len(), 6, "{running:?}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (_, node, ready, _) in &running {
        assert!(ready);
        *per_node.entry(node.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "replicas per node: {per_node:?}"
    );

    // Watch the pods through the rollout: ready, not-terminating pods never drop below
    // replicas - maxUnavailable = 5.
    let mut watch = s
        .kubectl_cmd(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    // Drain the watch while the rollout runs (a full pipe would stall kubectl).
    let mut out = watch.stdout.take().expect("watch stdout");
    let reader = std::thread::spawn(move || {
        let mut stream = String::new();
        let _ = out.read_to_string(&mut stream);
        stream
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    s.ok(&["set", "image", "deployment/web", "busybox=busybox:2"]);
    rollout_status(&s, "deployment/web");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    let stream = reader.join().expect("watch reader");
    let mut ready: HashMap<String, bool> = HashMap::new();
    let mut lowest = usize::MAX;
    let mut events = 0;
    // The last event may be cut off by the kill: parse up to it.
    for event in serde_json::Deserializer::from_str(&stream).into_iter::<serde_json::Value>() {
        let Ok(event) = event else { break };
        let pod = &event["object"];
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let is_ready = event["type"] != "DELETED"
            && pod["metadata"]["deletionTimestamp"].is_null()
            && pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.insert(name, is_ready);
        events += 1;
        if events >= 6 {
            lowest = lowest.min(ready.values().filter(|r| **r).count());
        }
    }
    assert!(events > 12, "the watch saw the rollout ({events} events)");
    assert!(
        lowest >= 5,
        "ready pods dropped to {lowest} during the rollout"
    );
    let updated = pods(&s, "app=web");
    assert_eq!(updated.len(), 6);
    assert!(updated.iter().all(|p| p.3 == "busybox:2"), "{updated:?}");

    // Undo restores the previous template; history keeps both revisions.
    s.ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&s, "deployment/web");
    let back = pods(&s, "app=web");
    assert_eq!(back.len(), 6);
    assert!(back.iter().all(|p| p.3 == "busybox:1"), "{back:?}");
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 "),
        "{history}"
    );
    let events = s.ok(&["describe", "deployment", "web"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    // A deleted pod is replaced.
    let victim = back[0].0.clone();
    s.ok(&["delete", "pod", &victim]);
    eventually(30, "a replacement pod", || {
        let now = pods(&s, "app=web");
        (now.len() == 6 && now.iter().all(|p| p.2 && p.0 != victim)).then_some(())
    });

    // Scale to zero and back.
    s.ok(&["scale", "deployment/web", "--replicas=0"]);
    eventually(30, "no pods", || {
        pods(&s, "app=web").is_empty().then_some(())
    });
    s.ok(&["scale", "deployment/web", "--replicas=2"]);
    rollout_status(&s, "deployment/web");
    eventually(30, "two ready pods", || {
        let now = pods(&s, "app=web");
        (now.len() == 2 && now.iter().all(|p| p.2)).then_some(())
    });
}

#[test]
fn unschedulable_pod_shows_the_reason_and_cordon_keeps_pods_away() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3", "--cpu", "1"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},
            "spec":{"containers":[{"name":"c","image":"busybox","resources":{"requests":{"cpu":"2"}}}]}}"#,
    );
    let described = eventually(30, "FailedScheduling in describe", || {
        let d = s.ok(&["describe", "pod", "big"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        described.contains("0/3 nodes are available: 3 Insufficient cpu."),
        "{described}"
    );
    assert!(s.ok(&["get", "pod", "big"]).contains("Pending"));

    // Cordon: the node shows SchedulingDisabled and new pods go elsewhere.
    s.ok(&["cordon", "sim-0"]);
    let nodes = s.ok(&["get", "node", "sim-0"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    s.ok(&[
        "create",
        "deployment",
        "app",
        "--image=busybox",
        "--replicas=4",
    ]);
    rollout_status(&s, "deployment/app");
    let placed = pods(&s, "app=app");
    assert_eq!(placed.len(), 4);
    assert!(placed.iter().all(|p| p.1 != "sim-0"), "{placed:?}");
    // Each placed pod gets its `Scheduled` event (written after the binding, off its path).
    let (name, node) = (&placed[0].0, &placed[0].1);
    let assigned = format!("Successfully assigned default/{name} to {node}");
    eventually(30, "the Scheduled event in describe", || {
        let d = s.ok(&["describe", "pod", name]);
        (d.contains("Scheduled") && d.contains(&assigned)).then_some(())
    });
    s.ok(&["uncordon", "sim-0"]);
    assert!(!s
        .ok(&["get", "node", "sim-0"])
        .contains("SchedulingDisabled"));
}

#[test]
fn deleting_a_namespace_removes_what_is_inside() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "1"]);
    s.ok(&["create", "namespace", "shop"]);
    s.ok(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "settings",
        "--from-literal=a=b",
    ]);
    s.ok(&[
        "-n",
        "shop",
        "create",
        "deployment",
        "cart",
        "--image=busybox",
        "--replicas=2",
    ]);
    s.ok(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deployment/cart",
        "--timeout=90s",
    ]);
    // A claim (protected by its finalizer) goes too.
    s.ok_stdin(
        &["-n", "shop", "apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: cart-data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    // Every namespace gets its default ServiceAccount and the root CA.
    let sa = s.ok(&[
        "-n",
        "shop",
        "get",
        "serviceaccount",
        "default",
        "-o",
        "name",
    ]);
    assert_eq!(sa.trim(), "serviceaccount/default");
    s.ok(&["-n", "shop", "get", "configmap", "kube-root-ca.crt"]);

    s.ok(&["delete", "namespace", "shop", "--timeout=60s"]);
    let err = s.fails(&["get", "namespace", "shop"]);
    assert!(err.contains("namespaces \"shop\" not found"), "{err}");
    let left = s.ok(&[
        "get",
        "pods,replicasets,deployments,configmaps,persistentvolumeclaims",
        "-A",
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("cart") && !left.contains("settings"),
        "{left}"
    );
}

#[test]
fn a_silent_node_goes_not_ready_and_its_pods_move() {
    // A short grace period and lease, and pods that tolerate an unreachable node for 2 s
    // (300 s by default), so the test takes seconds.
    let s = Server::start_with(&["--node-monitor-grace-period=10"]);
    let _steady = s.simulate(&["--nodes", "2", "--lease-duration-seconds", "4"]);
    let mut failing = s.simulate(&[
        "--nodes",
        "1",
        "--first-index",
        "2",
        "--name-prefix",
        "doomed-",
        "--lease-duration-seconds",
        "4",
    ]);
    s.ok(&[
        "create",
        "deployment",
        "app",
        "--image=busybox",
        "--replicas=3",
    ]);
    s.ok(&[
        "patch",
        "deployment",
        "app",
        "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":2}]}}}}"#,
    ]);
    rollout_status(&s, "deployment/app");
    let before = pods(&s, "app=app");
    assert!(
        before.iter().any(|p| p.1 == "doomed-2"),
        "one replica lands on each node: {before:?}"
    );
    // The admission default is still there for not-ready nodes.
    let spec = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=app",
        "-o",
        "jsonpath={.items[0].spec.tolerations}",
    ]);
    assert!(
        spec.contains("node.kubernetes.io/not-ready") && spec.contains("300"),
        "{spec}"
    );

    failing.stop();
    let status = eventually(30, "doomed-2 NotReady", || {
        let out = s.ok(&["get", "node", "doomed-2"]);
        out.contains("NotReady").then_some(out)
    });
    assert!(status.contains("doomed-2"), "{status}");
    let described = s.ok(&["describe", "node", "doomed-2"]);
    assert!(
        described.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{described}"
    );
    assert!(
        described.contains("Kubelet stopped posting node status."),
        "{described}"
    );
    eventually(30, "replicas moved off the silent node", || {
        let now = pods(&s, "app=app");
        (now.len() == 3 && now.iter().all(|p| p.2 && p.1 != "doomed-2")).then_some(())
    });
    let healthy = s.ok(&["get", "nodes", "sim-0", "sim-1"]);
    assert!(!healthy.contains("NotReady"), "{healthy}");
}
