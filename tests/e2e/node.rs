//! A whole node: `skiff server` with its agent, inside a network namespace the test makes,
//! running real containers (busybox-static images the test builds and imports) that the
//! real kubectl drives.

use std::time::{Duration, Instant};

use crate::harness::{eventually, Server};
use crate::image::TestImage;

const IMAGE: &str = "docker.io/library/testbox:1";

/// A node with the test image imported (as `skiff images import` does it).
fn node() -> Server {
    let s = Server::start_node(&[]);
    let tar = s.path().join("testbox.tar");
    std::fs::write(&tar, TestImage::new().oci_tar(IMAGE)).expect("write image tar");
    let out = std::process::Command::new(crate::harness::skiff_bin())
        .args(["images", "import", "--data-dir"])
        .arg(s.data_dir())
        .arg(&tar)
        .output()
        .expect("run skiff images import");
    assert!(
        out.status.success(),
        "skiff images import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(60, "the node is Ready", || {
        let out = s.ok(&["get", "nodes", "--no-headers"]);
        out.contains(" Ready ").then_some(())
    });
    s
}

fn phase(s: &Server, pod: &str) -> String {
    s.ok(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
}

#[test]
fn a_pod_runs_to_completion_and_logs_its_output() {
    let s = node();
    s.ok(&[
        "run",
        "hello",
        "--image",
        IMAGE,
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo hello from skiff; echo to stderr >&2; cat /hello.txt; exit 0",
    ]);
    eventually(60, "the pod Succeeded", || {
        (phase(&s, "hello") == "Succeeded").then_some(())
    });
    let logs = s.ok(&["logs", "hello"]);
    assert!(logs.contains("hello from skiff"), "{logs}");
    assert!(logs.contains("to stderr"), "{logs}");
    assert!(
        logs.contains("hello from layer 2"),
        "the image's files are there: {logs}"
    );
    let exit = s.ok(&[
        "get", "pod", "hello", "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}",
    ]);
    assert_eq!(exit, "Completed/0");
    s.ok(&["delete", "pod", "hello", "--wait=true"]);
}

#[test]
fn a_running_pod_has_an_ip_env_volumes_and_stops_on_sigterm() {
    let s = node();
    s.ok(&["create", "configmap", "cfg", "--from-literal=color=blue"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 30
  initContainers:
  - name: init
    image: {IMAGE}
    command: ["sh", "-c", "echo prepared-by-init > /work/ready"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; cat /work/ready; echo COLOR=$COLOR PASSWORD=$PASSWORD; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; while true; do sleep 1; done"]
    env:
    - name: COLOR
      valueFrom: {{configMapKeyRef: {{name: cfg, key: color}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    volumeMounts: [{{name: work, mountPath: /work}}]
  volumes:
  - name: work
    emptyDir: {{}}
"#
        ),
    );
    eventually(60, "the pod is Running and Ready", || {
        let ready = s.ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.phase}/{.status.containerStatuses[0].ready}",
        ]);
        (ready == "Running/true").then_some(())
    });
    let ip = s.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let uid = s.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    assert!(
        ip.starts_with("10.42.0."),
        "pod IP from the node's range: {ip:?}"
    );
    let logs = eventually(20, "the app's first lines", || {
        let l = s.ok(&["logs", "web"]);
        l.contains("COLOR=").then_some(l)
    });
    assert!(
        logs.contains("prepared-by-init"),
        "the init container ran first: {logs}"
    );
    assert!(logs.contains("COLOR=blue PASSWORD=s3cret"), "{logs}");
    assert!(
        logs.contains("default"),
        "the service account volume: {logs}"
    );

    let tail = s.ok(&["logs", "web", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let waiting = s.fails(&["logs", "web", "--previous"]);
    assert!(
        waiting.contains("previous terminated container \"app\" in pod \"web\" not found"),
        "{waiting}"
    );

    // Graceful deletion: a follower sees the trap's output, and the trap ends the
    // container long before the 30 s grace period.
    let follower = s
        .kubectl_cmd(&["logs", "-f", "web"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    s.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "SIGTERM reached the container (deletion took {:?})",
        started.elapsed()
    );
    let followed = follower.wait_with_output().expect("kubectl logs -f output");
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.contains("got TERM"), "kubectl logs -f: {followed}");
    let left = s.ok(&["get", "pods", "--no-headers"]);
    assert!(left.trim().is_empty(), "{left}");
    // Nothing of the pod is left on the node.
    let containers = s.data_dir().join("agent/run/containers");
    eventually(20, "the pod's containers are removed", || {
        let n = std::fs::read_dir(&containers)
            .map(|d| d.count())
            .unwrap_or(0);
        (n == 0).then_some(())
    });
    let netns = s.data_dir().join("agent/net/netns");
    let left: Vec<_> = std::fs::read_dir(&netns)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "network namespaces left: {left:?}");
    let uid_cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/memory/skiff")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&uid))
        .collect();
    assert!(
        uid_cgroups.is_empty(),
        "the pod's cgroup is left: {uid_cgroups:?}"
    );
}

#[test]
fn a_crashing_container_backs_off_and_restarts() {
    let s = node();
    s.ok(&[
        "run",
        "crash",
        "--image",
        IMAGE,
        "--command",
        "--",
        "sh",
        "-c",
        "echo crashing; exit 3",
    ]);
    let restarts = eventually(90, "CrashLoopBackOff with a restart", || {
        let out = s.ok(&[
            "get", "pod", "crash", "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}/{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].lastState.terminated.exitCode}",
        ]);
        let parts: Vec<&str> = out.split('/').collect();
        (parts.len() == 3 && parts[0] == "CrashLoopBackOff" && parts[1] != "0" && parts[2] == "3")
            .then(|| parts[1].to_string())
    });
    assert!(restarts.parse::<u32>().unwrap_or(0) >= 1);
    let table = s.ok(&["get", "pod", "crash"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    s.ok(&["delete", "pod", "crash", "--grace-period=0", "--force"]);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let s = node();
    // `sick` serves nothing at /healthz (404); `well` answers its TCP probe. httpd as
    // PID 1 ignores SIGTERM: only the probe's own 1 s grace period (the pod's is 30 s)
    // lets the restart come quickly.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: sick
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www; exec httpd -f -p 8080 -h /www"]
    livenessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
  - name: well
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www; exec httpd -f -p 8081 -h /www"]
    ports: [{{name: web, containerPort: 8081}}]
    livenessProbe:
      tcpSocket: {{port: web}}
      initialDelaySeconds: 2
      periodSeconds: 1
      failureThreshold: 1
"#
        ),
    );
    let counts = |s: &Server| {
        s.ok(&[
            "get",
            "pod",
            "live",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}/{.status.containerStatuses[1].restartCount}",
        ])
    };
    let started = Instant::now();
    eventually(
        45,
        "the sick container restarted after its liveness kill",
        || {
            let sick = counts(&s).split('/').next()?.parse::<u32>().ok()?;
            (sick >= 1).then_some(())
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the probe's grace period was used, not the pod's ({:?})",
        started.elapsed()
    );
    let last = s.ok(&[
        "get",
        "pod",
        "live",
        "-o",
        "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}",
    ]);
    assert_eq!(last, "137", "httpd ignored SIGTERM and was killed");
    let describe = eventually(20, "the probe's events", || {
        let d = s.ok(&["describe", "pod", "live"]);
        (d.contains("Killing") && d.contains("Unhealthy")).then_some(d)
    });
    assert!(
        describe.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{describe}"
    );
    assert!(
        describe.contains("Container sick failed liveness probe, will be restarted"),
        "{describe}"
    );
    // The healthy container's probe passes: it never restarted.
    let well = counts(&s);
    assert!(well.ends_with("/0"), "restart counts sick/well: {well}");
    s.ok(&["delete", "pod", "live", "--grace-period=0", "--force"]);
}

#[test]
fn readiness_gates_the_ready_condition_and_the_service_endpoints() {
    let s = node();
    // Ready from 8 s after the start until 16 s, then unready again.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: gated
  labels: {{app: gated}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir /www; (sleep 8; echo ok > /www/ready; sleep 8; rm /www/ready) & exec httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /ready, port: http}}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata:
  name: gated
spec:
  selector: {{app: gated}}
  ports: [{{port: 80, targetPort: http}}]
"#
        ),
    );
    let view = |s: &Server| {
        s.ok(&[
            "get",
            "pod",
            "gated",
            "-o",
            "jsonpath={.status.phase}/{.status.containerStatuses[0].ready}/{.status.conditions[?(@.type==\"Ready\")].status}/{.status.podIP}",
        ])
    };
    let endpoints = |s: &Server| {
        s.ok(&[
            "get",
            "endpoints",
            "gated",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}/{.subsets[0].notReadyAddresses[*].ip}",
        ])
    };
    let ip = eventually(30, "the pod Running but not ready", || {
        let v = view(&s);
        let parts: Vec<&str> = v.split('/').collect();
        (parts.len() == 4 && parts[0] == "Running" && parts[1] == "false" && parts[2] == "False")
            .then(|| parts[3].to_string())
    });
    let table = s.ok(&["get", "pod", "gated", "--no-headers"]);
    assert!(table.contains("0/1"), "{table}");
    eventually(10, "the unready address in the endpoints", || {
        (endpoints(&s) == format!("/{ip}")).then_some(())
    });
    eventually(30, "the pod ready once /ready exists", || {
        let v = view(&s);
        v.starts_with("Running/true/True/").then_some(())
    });
    let table = s.ok(&["get", "pod", "gated", "--no-headers"]);
    assert!(table.contains("1/1"), "{table}");
    eventually(10, "the ready address in the endpoints", || {
        (endpoints(&s) == format!("{ip}/")).then_some(())
    });
    eventually(30, "the pod unready again once /ready is gone", || {
        view(&s).starts_with("Running/false/False/").then_some(())
    });
    eventually(10, "the address back among the unready ones", || {
        (endpoints(&s) == format!("/{ip}")).then_some(())
    });
    let describe = s.ok(&["describe", "pod", "gated"]);
    assert!(
        describe.contains("Readiness probe failed: HTTP probe failed with statuscode: 404"),
        "{describe}"
    );
    let restarts = s.ok(&[
        "get",
        "pod",
        "gated",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(restarts, "0", "readiness never restarts a container");
    s.ok(&["delete", "pod", "gated", "--grace-period=0", "--force"]);
}

#[test]
fn lifecycle_hooks_run_around_the_container() {
    let s = node();
    // preStop sleeps 3 s before the SIGTERM that ends the container at once; a postStart
    // hook that reaches nothing kills its container.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: stopper
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 1; done"]
    lifecycle:
      preStop:
        sleep: {{seconds: 3}}
---
apiVersion: v1
kind: Pod
metadata:
  name: badhook
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart:
        httpGet: {{path: /started, port: 9999}}
"#
        ),
    );
    eventually(60, "stopper is running", || {
        (phase(&s, "stopper") == "Running").then_some(())
    });
    let describe = eventually(30, "the failed postStart hook", || {
        let d = s.ok(&["describe", "pod", "badhook"]);
        d.contains("FailedPostStartHook").then_some(d)
    });
    assert!(
        describe.contains(
            "HTTP lifecycle hook (/started) for Container \"app\" in Pod \"badhook_default("
        ),
        "{describe}"
    );
    assert!(describe.contains("connection refused"), "{describe}");
    eventually(
        30,
        "the badhook container stopped after its hook failed",
        || {
            let last = s.ok(&[
            "get",
            "pod",
            "badhook",
            "-o",
            "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}{.status.containerStatuses[0].state.terminated.reason}",
        ]);
            (!last.is_empty()).then_some(())
        },
    );

    let started = Instant::now();
    s.ok(&["delete", "pod", "stopper", "--wait=true", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the preStop sleep ran before SIGTERM (deletion took {took:?})"
    );
    assert!(
        took < Duration::from_secs(15),
        "SIGTERM followed the hook, long before the grace period ran out ({took:?})"
    );
    s.ok(&["delete", "pod", "badhook", "--grace-period=0", "--force"]);
}
