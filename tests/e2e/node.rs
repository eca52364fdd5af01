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

/// `kubectl top` cells like `298m` (CPU) or `17Mi` (memory) as numbers.
fn top_number(cell: &str, unit: &str) -> Option<u64> {
    cell.strip_suffix(unit)?.parse().ok()
}

#[test]
fn kubectl_top_shows_real_usage_of_the_node_and_a_busy_pod() {
    let s = node();
    // awk builds a 16 MiB string, then spins; the CFS quota holds it to 300m.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: busy
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: {IMAGE}
    command: ["awk", "BEGIN {{ s = \"x\"; for (i = 0; i < 24; i++) s = s s; while (1) n++ }}"]
    resources:
      limits: {{cpu: 300m, memory: 100Mi}}
"#
        ),
    );
    eventually(60, "the busy pod runs", || {
        (phase(&s, "busy") == "Running").then_some(())
    });
    // NAME CPU(cores) MEMORY(bytes), once the node has reported the container.
    let (cpu, memory) = eventually(60, "kubectl top pod shows the busy pod", || {
        let out = s.kubectl(&["top", "pod", "busy", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let cols: Vec<&str> = text.split_whitespace().collect();
        match cols.as_slice() {
            ["busy", cpu, mem] => Some((top_number(cpu, "m")?, top_number(mem, "Mi")?)),
            _ => None,
        }
    });
    eprintln!("kubectl top pod busy: {cpu}m {memory}Mi");
    assert!(
        (50..=450).contains(&cpu),
        "a spinning container held to 300m uses about that much: {cpu}m"
    );
    assert!(
        (16..100).contains(&memory),
        "the 16 MiB string is in the working set: {memory}Mi"
    );
    let containers = s.ok(&["top", "pod", "busy", "--containers", "--no-headers"]);
    assert!(containers.contains("spin"), "{containers}");

    // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
    let node = s.ok(&["top", "node", "--no-headers"]);
    let cols: Vec<&str> = node.split_whitespace().collect();
    eprintln!("kubectl top node: {node}");
    assert_eq!(cols.len(), 5, "{node}");
    let node_cpu = top_number(cols[1], "m").unwrap_or(0);
    let node_memory = top_number(cols[3], "Mi").unwrap_or(0);
    assert!(
        node_cpu >= 50,
        "the node's CPU includes the busy pod: {node}"
    );
    assert!(node_memory > 16, "the node uses memory: {node}");
    assert!(cols[2].ends_with('%') && cols[4].ends_with('%'), "{node}");
    s.ok(&["delete", "pod", "busy", "--wait=true"]);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let s = node();
    // dd allocates a 64M buffer and fills it; the limit is 20Mi.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: {IMAGE}
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    resources:
      limits: {{memory: 20Mi}}
"#
        ),
    );
    let last = eventually(90, "the container restarted after an OOM kill", || {
        let out = s.ok(&[
            "get", "pod", "hog", "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].lastState.terminated.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}",
        ]);
        let parts: Vec<&str> = out.split('/').collect();
        (parts.len() == 3 && parts[0] != "0" && !parts[1].is_empty()).then(|| out.clone())
    });
    let parts: Vec<&str> = last.split('/').collect();
    assert_eq!(parts[1..], ["OOMKilled", "137"], "{last}");
    s.ok(&["delete", "pod", "hog", "--grace-period=0", "--force"]);
}
