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

/// What `kubectl get events` says about `name` (reason: message, one per line).
fn events_of(s: &Server, name: &str) -> String {
    s.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

fn claim_pod(name: &str, claim: &str, read_only: bool, script: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{extra}  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", {script:?}]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}, readOnly: {read_only}}}
"#
    )
}

#[test]
fn a_local_path_claim_keeps_data_across_pods_and_goes_with_its_volume() {
    let s = node();
    let classes = s.ok(&["get", "storageclass"]);
    assert!(
        classes.contains("local-path (default)")
            && classes.contains("rancher.io/local-path")
            && classes.contains("Delete")
            && classes.contains("WaitForFirstConsumer"),
        "{classes}"
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 64Mi}
"#,
    );
    // No class named: the default one. No pod yet: it waits.
    let pending = s.ok(&["get", "pvc", "data", "--no-headers"]);
    assert!(
        pending.contains("Pending") && pending.contains("local-path"),
        "{pending}"
    );
    eventually(20, "the WaitForFirstConsumer event", || {
        events_of(&s, "data")
            .contains(
                "WaitForFirstConsumer: waiting for first consumer to be created before binding",
            )
            .then_some(())
    });

    let created = Instant::now();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &claim_pod(
            "writer",
            "data",
            false,
            "echo kept-by-the-claim > /data/note",
            "",
        ),
    );
    eventually(30, "the claim is bound", || {
        (s.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]) == "Bound").then_some(())
    });
    println!(
        "claim bound {:?} after its first pod was created",
        created.elapsed()
    );
    eventually(60, "the writer Succeeded", || {
        (phase(&s, "writer") == "Succeeded").then_some(())
    });
    println!("writer done {:?} after it was created", created.elapsed());
    // The scheduler waited for the volume before binding: the kubelet never had to.
    let writer_events = events_of(&s, "writer");
    assert!(!writer_events.contains("FailedMount"), "{writer_events}");
    let bound = s.ok(&[
        "get", "pvc", "data", "-o",
        "jsonpath={.status.phase}/{.spec.storageClassName}/{.status.capacity.storage}/{.status.accessModes[0]}",
    ]);
    assert_eq!(bound, "Bound/local-path/64Mi/ReadWriteOnce");
    let table = s.ok(&["get", "pvc", "data"]);
    assert!(
        table.contains("Bound") && table.contains("local-path"),
        "{table}"
    );
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let selected = s.ok(&[
        "get",
        "pvc",
        "data",
        "-o",
        "jsonpath={.metadata.annotations.volume\\.kubernetes\\.io/selected-node}",
    ]);
    assert_eq!(selected, node);
    let pv = s.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let pv_state = s.ok(&[
        "get", "pv", &pv, "-o",
        "jsonpath={.status.phase}/{.spec.persistentVolumeReclaimPolicy}/{.spec.claimRef.name}/{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    assert_eq!(pv_state, format!("Bound/Delete/data/{node}"));
    let dir =
        std::path::PathBuf::from(s.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"]));
    assert_eq!(
        dir,
        s.data_dir()
            .join("storage")
            .join(format!("{pv}_default_data"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("note")).expect("the note on the node's disk"),
        "kept-by-the-claim\n"
    );
    s.ok(&["delete", "pod", "writer", "--wait=true"]);

    // A second pod, read-only, finds the note and cannot write.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &claim_pod(
            "reader",
            "data",
            true,
            "cat /data/note; touch /data/other || echo cannot-write",
            "",
        ),
    );
    eventually(60, "the reader Succeeded", || {
        (phase(&s, "reader") == "Succeeded").then_some(())
    });
    let logs = s.ok(&["logs", "reader"]);
    assert!(logs.contains("kept-by-the-claim"), "{logs}");
    assert!(logs.contains("cannot-write"), "readOnly honoured: {logs}");
    assert!(!dir.join("other").exists());

    // The claim is protected while a pod uses it.
    let protected = s.ok(&[
        "get",
        "pvc",
        "data",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(
        protected.contains("kubernetes.io/pvc-protection"),
        "{protected}"
    );
    s.ok(&["delete", "pod", "reader", "--wait=true"]);
    s.ok(&["delete", "pvc", "data", "--wait=true", "--timeout=30s"]);
    eventually(30, "the volume is deleted", || {
        s.ok(&["get", "pv", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    assert!(!dir.exists(), "the volume's directory is removed");
}

#[test]
fn static_volumes_bind_pods_wait_for_unbound_claims_and_respect_volume_nodes() {
    let s = node();
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    // A claim without a class and no volume for it: a pod pinned to the node waits.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: manual
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 32Mi}
"#,
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &claim_pod(
            "pinned",
            "manual",
            false,
            "cat /data/hello",
            &format!("  nodeName: {node}\n"),
        ),
    );
    eventually(30, "FailedMount while the claim is unbound", || {
        events_of(&s, "pinned")
            .contains(
                "FailedMount: volume \"data\": PersistentVolumeClaim default/manual is not bound",
            )
            .then_some(())
    });
    assert_eq!(phase(&s, "pinned"), "Pending");

    // An administrator's volume appears: the claim binds, the pod runs.
    let host_dir = s.path().join("static-volume");
    std::fs::create_dir_all(&host_dir).expect("static volume dir");
    std::fs::write(host_dir.join("hello"), "from a static volume\n").expect("file");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: static
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {}}}
"#,
            host_dir.display()
        ),
    );
    eventually(30, "the claim binds to the static volume", || {
        let state = s.ok(&[
            "get",
            "pvc",
            "manual",
            "-o",
            "jsonpath={.status.phase}/{.spec.volumeName}",
        ]);
        (state == "Bound/static").then_some(())
    });
    eventually(60, "the pinned pod Succeeded", || {
        (phase(&s, "pinned") == "Succeeded").then_some(())
    });
    assert!(s.ok(&["logs", "pinned"]).contains("from a static volume"));
    s.ok(&["delete", "pod", "pinned", "--wait=true"]);
    s.ok(&["delete", "pvc", "manual", "--wait=true", "--timeout=30s"]);
    eventually(30, "the retained volume is Released", || {
        (s.ok(&["get", "pv", "static", "-o", "jsonpath={.status.phase}"]) == "Released")
            .then_some(())
    });
    assert!(host_dir.join("hello").exists(), "Retain keeps the data");

    // A claim bound to a volume of another node: the pod cannot be scheduled here.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: elsewhere
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /nonexistent}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [another-node]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: far
spec:
  storageClassName: ""
  volumeName: elsewhere
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
"#,
    );
    eventually(30, "the far claim binds", || {
        (s.ok(&["get", "pvc", "far", "-o", "jsonpath={.status.phase}"]) == "Bound").then_some(())
    });
    s.ok_stdin(
        &["apply", "-f", "-"],
        &claim_pod("far-pod", "far", false, "true", ""),
    );
    eventually(30, "FailedScheduling for the volume's node", || {
        events_of(&s, "far-pod")
            .contains(
                "FailedScheduling: 0/1 nodes are available: 1 node(s) had volume node affinity conflict.",
            )
            .then_some(())
    });
}
