//! apply (client-side and server-side), diff, dry-run, create -f, replace, explain.

use crate::harness::Server;

pub const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
"#;

#[test]
fn apply_reapply_and_configure() {
    let s = Server::start();
    let f = s.write("deploy.yaml", DEPLOYMENT);
    let f = f.to_str().unwrap();
    assert_eq!(
        s.ok(&["apply", "-f", f]).trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        s.ok(&["apply", "-f", f]).trim(),
        "deployment.apps/web unchanged"
    );
    let changed = DEPLOYMENT
        .replace("nginx:1.27", "nginx:1.28")
        .replace("replicas: 2", "replicas: 3");
    let f2 = s.write("deploy2.yaml", &changed);
    assert_eq!(
        s.ok(&["apply", "-f", f2.to_str().unwrap()]).trim(),
        "deployment.apps/web configured"
    );
    let img = s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas} {.metadata.generation}"]);
    assert_eq!(img, "nginx:1.28 3 2");
    // Defaults are filled in, as kube-apiserver does.
    let strategy = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.strategy.type} {.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(strategy, "RollingUpdate IfNotPresent");
}

#[test]
fn server_side_apply_tracks_managers_and_conflicts() {
    let s = Server::start();
    let f = s.write("deploy.yaml", DEPLOYMENT);
    let f = f.to_str().unwrap();
    assert_eq!(
        s.ok(&["apply", "--server-side", "-f", f]).trim(),
        "deployment.apps/web serverside-applied"
    );
    let managers = s.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "managers: {managers}");
    // Another manager changes replicas; a re-apply by kubectl now conflicts.
    s.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 4");
    let f2 = s.write("deploy2.yaml", &changed);
    let err = s.fails(&["apply", "--server-side", "-f", f2.to_str().unwrap()]);
    assert!(err.contains("conflict"), "stderr: {err}");
    assert!(err.contains(".spec.replicas"), "stderr: {err}");
    s.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        f2.to_str().unwrap(),
    ]);
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
}

#[test]
fn diff_and_server_dry_run_change_nothing() {
    let s = Server::start();
    let f = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  a: \"1\"\n",
    );
    let f = f.to_str().unwrap();
    assert_eq!(
        s.ok(&["apply", "--dry-run=server", "-f", f]).trim(),
        "configmap/demo created (server dry run)"
    );
    s.fails(&["get", "configmap", "demo"]);
    s.ok(&["apply", "-f", f]);
    let f2 = s.write(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  a: \"2\"\n",
    );
    let out = s.kubectl(&["diff", "-f", f2.to_str().unwrap()]);
    // kubectl diff exits 1 when there are differences.
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  a: \"1\"") && diff.contains("+  a: \"2\""),
        "diff: {diff}"
    );
    assert_eq!(
        s.ok(&["get", "cm", "demo", "-o", "jsonpath={.data.a}"]),
        "1"
    );
}

#[test]
fn create_replace_and_explain() {
    let s = Server::start();
    let f = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  k: v\n",
    );
    assert_eq!(
        s.ok(&["create", "-f", f.to_str().unwrap()]).trim(),
        "configmap/c1 created"
    );
    let f2 = s.write(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  k: w\n",
    );
    assert_eq!(
        s.ok(&["replace", "-f", f2.to_str().unwrap()]).trim(),
        "configmap/c1 replaced"
    );
    assert_eq!(s.ok(&["get", "cm", "c1", "-o", "jsonpath={.data.k}"]), "w");

    let explain = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        explain.contains("KIND:") && explain.contains("Deployment"),
        "{explain}"
    );
    assert!(
        explain.contains("replicas") && explain.contains("<integer>"),
        "{explain}"
    );
    let explain = s.ok(&["explain", "pods.spec.containers"]);
    assert!(
        explain.contains("image") && explain.contains("<string>"),
        "{explain}"
    );
}

#[test]
fn create_generators_send_protobuf() {
    let s = Server::start();
    assert_eq!(
        s.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=3",
            "--port=80"
        ])
        .trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]),
        "3 nginx:1.27 80"
    );
    assert_eq!(
        s.ok(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=password=hunter2"
        ])
        .trim(),
        "secret/s created"
    );
    assert_eq!(
        s.ok(&["get", "secret", "s", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    assert_eq!(
        s.ok(&[
            "create",
            "configmap",
            "c",
            "--from-literal=a=1",
            "--from-literal=b=two"
        ])
        .trim(),
        "configmap/c created"
    );
    assert_eq!(s.ok(&["get", "cm", "c", "-o", "jsonpath={.data.b}"]), "two");
    assert_eq!(
        s.ok(&["create", "namespace", "team-a"]).trim(),
        "namespace/team-a created"
    );
    assert_eq!(
        s.ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
}

#[test]
fn autoscale_v1_and_v2_show_the_same_object() {
    let s = Server::start();
    s.ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    // kubectl autoscale speaks autoscaling/v1; skiff stores v2.
    assert_eq!(
        s.ok(&[
            "autoscale",
            "deployment",
            "web",
            "--max=5",
            "--cpu-percent=60"
        ])
        .trim(),
        "horizontalpodautoscaler.autoscaling/web autoscaled"
    );
    let v1 = s.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    let v2 = s.ok(&["get", "hpa.v2.autoscaling", "web", "-o", "json"]);
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    assert_eq!(v2["spec"]["maxReplicas"], 5);
    // A v1 merge patch lands in the v2 object (kubectl patch prefers v2, so send it raw).
    let (code, patched) = s.curl(
        "PATCH",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
        "application/merge-patch+json",
        br#"{"spec":{"targetCPUUtilizationPercentage":75}}"#,
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["apiVersion"], "autoscaling/v1");
    assert_eq!(patched["spec"]["targetCPUUtilizationPercentage"], 75);
    let u = s.ok(&[
        "get",
        "hpa.v2.autoscaling",
        "web",
        "-o",
        "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
    ]);
    assert_eq!(u, "75");
    let row = s.ok(&["get", "hpa", "web", "--no-headers"]);
    assert!(
        row.starts_with("web") && row.contains("Deployment/web"),
        "{row}"
    );
}
