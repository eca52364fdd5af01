//! PodDisruptionBudgets, the eviction subresource and `kubectl drain`/`cordon`/`uncordon`
//! with the real kubectl against `skiff server` plus simulated nodes.

use serde_json::{json, Value};

use crate::harness::{eventually, Server};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: NAME}
  template:
    metadata:
      labels: {app: NAME}
    spec:
      containers:
      - name: app
        image: busybox:1
"#;

fn deploy(s: &Server, name: &str, replicas: u32) {
    let yaml = DEPLOYMENT
        .replace("NAME", name)
        .replace("REPLICAS", &replicas.to_string());
    s.ok_stdin(&["apply", "-f", "-"], &yaml);
    s.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
}

/// (name, node, ready) of the live pods of `app`.
fn pods(s: &Server, app: &str) -> Vec<(String, String, bool)> {
    let out = s.ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("pod list JSON");
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
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect()
}

fn pdb_status(s: &Server, name: &str) -> Value {
    let out = s.ok(&["get", "pdb", name, "-o", "json"]);
    let pdb: Value = serde_json::from_str(&out).expect("pdb JSON");
    pdb["status"].clone()
}

/// Wait until the budget's controller has seen generation `generation` and allows
/// `allowed` disruptions.
fn wait_allowed(s: &Server, name: &str, generation: i64, allowed: i64) -> Value {
    eventually(30, &format!("pdb {name} allowing {allowed}"), || {
        let st = pdb_status(s, name);
        (st["observedGeneration"] == generation && st["disruptionsAllowed"] == allowed)
            .then_some(st)
    })
}

fn eviction(pod: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"},
    }))
    .expect("eviction JSON")
}

#[test]
fn drain_respects_the_budget_then_evicts_and_uncordon_restores_scheduling() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    deploy(&s, "web", 2);
    s.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    let st = wait_allowed(&s, "web", 1, 0);
    assert_eq!(st["expectedPods"], 2, "{st}");
    assert_eq!(st["currentHealthy"], 2, "{st}");
    assert_eq!(st["desiredHealthy"], 2, "{st}");
    let cond = &st["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed", "{st}");
    assert_eq!(cond["status"], "False", "{st}");
    assert_eq!(cond["reason"], "InsufficientPods", "{st}");

    // The table has upstream's columns.
    let table = s.ok(&["get", "pdb"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2", "N/A", "0"], "{table}");

    let running = pods(&s, "web");
    assert_eq!(running.len(), 2, "{running:?}");
    let (victim, node, _) = running[0].clone();

    // The budget forbids: drain cordons the node, keeps retrying and times out.
    let out = s.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=8s",
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "drain succeeded: {said}");
    assert!(said.contains(&format!("node/{node} cordoned")), "{said}");
    assert!(
        said.contains(&format!(
            "error when evicting pods/\"{victim}\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
        )),
        "{said}"
    );
    let nodes = s.ok(&["get", "node", &node]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    // Nothing was evicted.
    assert!(pods(&s, "web").iter().any(|(n, _, _)| *n == victim));

    // Relax the budget; once the controller caught up, drain evicts and the pod is
    // replaced on another node.
    s.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    let st = wait_allowed(&s, "web", 2, 1);
    assert_eq!(st["conditions"][0]["reason"], "SufficientPods", "{st}");
    let drained = s.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&drained.stdout),
        String::from_utf8_lossy(&drained.stderr)
    );
    assert!(drained.status.success(), "drain failed: {out}");
    assert!(
        out.contains(&format!("evicting pod default/{victim}")),
        "{out}"
    );
    assert!(out.contains(&format!("pod/{victim} evicted")), "{out}");
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    let replaced = eventually(30, "two ready web pods off the drained node", || {
        let now = pods(&s, "web");
        (now.len() == 2
            && now
                .iter()
                .all(|(n, on, ready)| *ready && *on != node && *n != victim))
        .then_some(now)
    });
    assert_eq!(replaced.len(), 2);
    // The eviction's bookkeeping is dropped once the pod is gone, and the budget is
    // whole again.
    let st = eventually(30, "pdb recovered", || {
        let st = pdb_status(&s, "web");
        (st["currentHealthy"] == 2
            && st["disruptionsAllowed"] == 1
            && st["disruptedPods"].is_null())
        .then_some(st)
    });
    assert_eq!(st["expectedPods"], 2, "{st}");

    // uncordon makes the node schedulable again.
    let out = s.ok(&["uncordon", &node]);
    assert!(out.contains(&format!("node/{node} uncordoned")), "{out}");
    let nodes = s.ok(&["get", "node", &node]);
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");
    let spec = s.ok(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(spec.trim(), "", "spec.unschedulable: {spec}");
}

#[test]
fn eviction_subresource_answers_429_dry_run_multiple_budgets_and_no_budget() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "2"]);
    deploy(&s, "solo", 1);
    s.ok(&[
        "create",
        "pdb",
        "solo",
        "--selector=app=solo",
        "--min-available=1",
    ]);
    wait_allowed(&s, "solo", 1, 0);
    let (pod, _, _) = pods(&s, "solo")[0].clone();
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");

    // The budget forbids: 429 with upstream's Status.
    let (code, body) = s.curl("POST", &path, "application/json", &eviction(&pod));
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["reason"], "TooManyRequests", "{body}");
    assert_eq!(
        body["message"], "Cannot evict pod as it would violate the pod's disruption budget.",
        "{body}"
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget solo needs 1 healthy pods and has 1 currently"
    );
    // kubectl shows the same refusal.
    let err = s.fails_stdin(
        &["create", "--raw", &path, "-f", "-"],
        &String::from_utf8_lossy(&eviction(&pod)),
    );
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    // A mismatched name is a bad request; an unknown pod is not found.
    let (code, _) = s.curl("POST", &path, "application/json", &eviction("other"));
    assert_eq!(code, 400);
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/pods/nope/eviction",
        "application/json",
        &eviction("nope"),
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "pods \"nope\" not found");

    // With a second replica one disruption is allowed; a dry run changes nothing.
    s.ok(&["scale", "deployment/solo", "--replicas=2"]);
    s.ok(&["rollout", "status", "deployment/solo", "--timeout=60s"]);
    wait_allowed(&s, "solo", 1, 1);
    let (code, body) = s.curl(
        "POST",
        &format!("{path}?dryRun=All"),
        "application/json",
        &eviction(&pod),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"], "Success", "{body}");
    let st = pdb_status(&s, "solo");
    assert_eq!(st["disruptionsAllowed"], 1, "{st}");
    assert!(st["disruptedPods"].is_null(), "{st}");
    s.ok(&["get", "pod", &pod]);

    // Two budgets over one pod: upstream's 500.
    s.ok(&[
        "create",
        "pdb",
        "solo-too",
        "--selector=app=solo",
        "--max-unavailable=1",
    ]);
    wait_allowed(&s, "solo-too", 1, 1);
    let (code, body) = s.curl("POST", &path, "application/json", &eviction(&pod));
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    s.ok(&["delete", "pdb", "solo-too"]);

    // Now the eviction goes through: the budget records the pod, the pod is deleted and
    // replaced.
    let out = s.ok_stdin(
        &["create", "--raw", &path, "-f", "-"],
        &String::from_utf8_lossy(&eviction(&pod)),
    );
    let status: Value = serde_json::from_str(&out).expect("Status JSON");
    assert_eq!(status["status"], "Success", "{out}");
    eventually(30, "evicted pod gone and replaced", || {
        let now = pods(&s, "solo");
        (now.len() == 2 && now.iter().all(|(n, _, ready)| *ready && *n != pod)).then_some(())
    });
    // The budget records nothing once the pod is gone.
    eventually(30, "disruptedPods emptied", || {
        pdb_status(&s, "solo")["disruptedPods"]
            .is_null()
            .then_some(())
    });

    // A pod no budget guards is simply deleted.
    s.ok(&["run", "lonely", "--image=busybox:1", "--labels=app=lonely"]);
    eventually(30, "lonely running", || {
        pods(&s, "lonely")
            .first()
            .is_some_and(|p| p.2)
            .then_some(())
    });
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/pods/lonely/eviction",
        "application/json",
        &eviction("lonely"),
    );
    assert_eq!(code, 201, "{body}");
    eventually(30, "lonely deleted", || {
        let out = s.kubectl(&["get", "pod", "lonely"]);
        (!out.status.success()).then_some(())
    });
}

#[test]
fn unready_pods_are_evicted_without_spending_a_disruption_while_the_budget_is_healthy() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    deploy(&s, "api", 3);
    s.ok(&[
        "create",
        "pdb",
        "api",
        "--selector=app=api",
        "--min-available=2",
    ]);
    wait_allowed(&s, "api", 1, 1);
    let running = pods(&s, "api");
    let (sick, _, _) = running[0].clone();
    let (well, _, _) = running[1].clone();
    // The simulated kubelet follows this annotation: the pod turns unready.
    s.ok(&["annotate", "pod", &sick, "simulate.skiff.io/ready=false"]);
    let st = wait_allowed(&s, "api", 1, 0);
    assert_eq!(st["currentHealthy"], 2, "{st}");
    assert_eq!(st["desiredHealthy"], 2, "{st}");

    // A ready pod may not go: that would leave one healthy pod of the two needed.
    let (code, body) = s.curl(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{well}/eviction"),
        "application/json",
        &eviction(&well),
    );
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget api needs 2 healthy pods and has 2 currently"
    );
    // The unready one may (IfHealthyBudget): the budget still has its two healthy pods,
    // and nothing is spent or recorded.
    let (code, body) = s.curl(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{sick}/eviction"),
        "application/json",
        &eviction(&sick),
    );
    assert_eq!(code, 201, "{body}");
    let st = pdb_status(&s, "api");
    assert!(st["disruptedPods"].is_null(), "{st}");
    eventually(30, "unready pod replaced by a ready one", || {
        let now = pods(&s, "api");
        (now.len() == 3 && now.iter().all(|(n, _, ready)| *ready && *n != sick)).then_some(())
    });
    wait_allowed(&s, "api", 1, 1);
}
