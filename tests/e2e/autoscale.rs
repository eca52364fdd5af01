//! Resource metrics and autoscaling with the real kubectl: `skiff simulate` nodes report
//! fake usage to `metrics.k8s.io`, `kubectl top` shows it, and a HorizontalPodAutoscaler
//! made by `kubectl autoscale` scales a Deployment when the pods' usage is raised.

use crate::harness::{eventually, Server};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        simulate.skiff.io/cpu-usage: 20m
    spec:
      containers:
      - name: app
        image: nginx:1
        resources:
          requests: {cpu: 100m}
"#;

const BARE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bare
spec:
  replicas: 1
  selector:
    matchLabels: {app: bare}
  template:
    metadata:
      labels: {app: bare}
    spec:
      containers:
      - name: app
        image: nginx:1
"#;

/// The rows of a kubectl table (header first), split on whitespace.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The `kubectl get hpa NAME` row and its REPLICAS column.
fn hpa_row(s: &Server, name: &str) -> (String, String) {
    let table = s.ok(&["get", "hpa", name]);
    let line = table.lines().nth(1).unwrap_or_default().to_string();
    let replicas = line
        .split_whitespace()
        .rev()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (line, replicas)
}

fn millis(q: &str) -> u64 {
    q.strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .or_else(|| q.parse::<u64>().ok().map(|n| n * 1000))
        .unwrap_or_else(|| panic!("not a cpu quantity: {q}"))
}

#[test]
fn top_shows_simulated_usage_and_hpa_scales_on_it() {
    let s = Server::start();
    let _sim = s.simulate(&["--nodes", "3", "--metrics-interval", "1s"]);
    s.ok_stdin(&["apply", "-f", "-"], WEB);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);

    // kubectl top node: every node, 100m base each plus the one pod's 20m (once the
    // node's next report includes the running pod).
    let nodes = eventually(30, "kubectl top node to show 320m over three nodes", || {
        let out = s.kubectl(&["top", "node"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let r = rows(&text);
        let ok = out.status.success() && r.len() == 4 && !text.contains("<unknown>");
        let total: u64 = r.iter().skip(1).map(|r| millis(&r[1])).sum();
        (ok && total == 320).then_some(r)
    });
    assert_eq!(
        nodes[0],
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    );
    assert!(nodes[1..].iter().all(|r| r[0].starts_with("sim-")));
    assert!(
        nodes[1..].iter().any(|r| r[1] == "120m" && r[3] == "260Mi"),
        "{nodes:?}"
    );

    // kubectl top pod: the pod's annotation and the default memory.
    let pods = eventually(30, "kubectl top pod", || {
        let out = s.kubectl(&["top", "pod", "-l", "app=web"]);
        let r = rows(&String::from_utf8_lossy(&out.stdout));
        (out.status.success() && r.len() == 2).then_some(r)
    });
    assert_eq!(pods[0], ["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    assert!(pods[1][0].starts_with("web-"), "{pods:?}");
    assert_eq!(&pods[1][1..], ["20m", "4Mi"]);

    // The metrics API itself: a selector that matches nothing lists nothing.
    let none = s.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dnope",
    ]);
    let none: serde_json::Value = serde_json::from_str(&none).expect("PodMetricsList");
    assert_eq!(none["kind"], "PodMetricsList");
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    s.fails(&[
        "delete",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes/sim-0",
    ]);

    s.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=5",
    ]);
    let header = s.ok(&["get", "hpa"]);
    assert_eq!(
        rows(&header)[0],
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    eventually(40, "the HPA to report 20% of 50%", || {
        let (line, replicas) = hpa_row(&s, "web");
        (line.contains("cpu: 20%/50%") && replicas == "1").then_some(())
    });

    // Raise the running pod's usage: 300% of its request, six times the target.
    s.ok(&[
        "annotate",
        "pods",
        "-l",
        "app=web",
        "simulate.skiff.io/cpu-usage=300m",
        "--overwrite",
    ]);
    // It doubles at most per sync (1 → 4), then stops at maxReplicas: one pod at 300m and
    // four new ones at 20m use 380m of 500m requested.
    eventually(120, "the HPA to scale web to 5 at 76%", || {
        let (line, replicas) = hpa_row(&s, "web");
        (line.contains("cpu: 76%/50%") && replicas == "5").then_some(())
    });
    let ready = s.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(ready, "5");
    let describe = s.ok(&["describe", "hpa", "web"]);
    assert!(
        describe.contains(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{describe}"
    );
    assert!(describe.contains("New size: 5;"), "{describe}");
    assert!(describe.contains("TooManyReplicas"), "{describe}");
    assert!(describe.contains("ValidMetricFound"), "{describe}");
    // The v1 view of the same object.
    let v1 = s.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).expect("autoscaling/v1 HPA");
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 76);

    // Without a scale-down window, lowering usage scales it down at once.
    s.ok(&[
        "patch",
        "hpa",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#,
    ]);
    s.ok(&[
        "annotate",
        "pods",
        "-l",
        "app=web",
        "simulate.skiff.io/cpu-usage=20m",
        "--overwrite",
    ]);
    eventually(120, "the HPA to scale web back to 1", || {
        let (line, replicas) = hpa_row(&s, "web");
        (line.contains("cpu: 20%/50%") && replicas == "1").then_some(())
    });
    let describe = s.ok(&["describe", "hpa", "web"]);
    assert!(
        describe.contains("reason: All metrics below target"),
        "{describe}"
    );

    // Pods without a cpu request cannot be measured against one: the HPA says why.
    s.ok_stdin(&["apply", "-f", "-"], BARE);
    s.ok(&["rollout", "status", "deployment/bare", "--timeout=60s"]);
    s.ok(&[
        "autoscale",
        "deployment",
        "bare",
        "--cpu-percent=50",
        "--max=3",
    ]);
    let describe = eventually(40, "the HPA to report the missing request", || {
        let d = s.ok(&["describe", "hpa", "bare"]);
        d.contains("missing request for cpu in container app of Pod bare-")
            .then_some(d)
    });
    assert!(describe.contains("FailedGetResourceMetric"), "{describe}");
    let (line, replicas) = hpa_row(&s, "bare");
    assert!(line.contains("cpu: <unknown>/50%"), "{line}");
    assert_eq!(replicas, "1");
}
