//! A whole node: `skiff server` with its agent, inside a network namespace the test makes,
//! running real containers (busybox-static images the test builds and imports) that the
//! real kubectl drives.

use std::time::{Duration, Instant};

use crate::harness::{eventually, Server};
use crate::image::TestImage;

const IMAGE: &str = "docker.io/library/testbox:1";

/// A node with the test image imported (as `skiff images import` does it).
fn node() -> Server {
    node_with(&[])
}

/// [`node`] with more flags for `skiff server`.
fn node_with(extra: &[&str]) -> Server {
    let s = Server::start_node(extra);
    import_as(&s, IMAGE);
    eventually(60, "the node is Ready", || {
        let out = s.ok(&["get", "nodes", "--no-headers"]);
        out.contains(" Ready ").then_some(())
    });
    s
}

/// Import the test image as `reference` (as `skiff images import` does it).
fn import_as(s: &Server, reference: &str) {
    let tar = s.path().join("testbox.tar");
    std::fs::write(&tar, TestImage::new().oci_tar(reference)).expect("write image tar");
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
    let containers = s.node_data_dir().join("agent/run/containers");
    eventually(20, "the pod's containers are removed", || {
        let n = std::fs::read_dir(&containers)
            .map(|d| d.count())
            .unwrap_or(0);
        (n == 0).then_some(())
    });
    let netns = s.data_dir().join("agent/net/netns");
    eventually(20, "the pod's network namespace is removed", || {
        let left = std::fs::read_dir(&netns)
            .into_iter()
            .flatten()
            .flatten()
            .count();
        (left == 0).then_some(())
    });
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
fn exec_and_cp_reach_into_a_running_container() {
    let s = node();
    s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=COLOR=blue",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=PASSWORD=hunter2",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: box}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    workingDir: /tmp
    readinessProbe:
      exec: {{command: ["test", "-f", "/tmp/ready"]}}
      periodSeconds: 1
    env:
    - name: COLOR
      valueFrom: {{configMapKeyRef: {{name: settings, key: COLOR}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: PASSWORD}}}}
"#
        ),
    );
    eventually(60, "the pod runs", || {
        (phase(&s, "box") == "Running").then_some(())
    });

    // The exit code comes back as kubectl's own.
    let out = s.kubectl(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // The container's environment, user and working directory.
    let env = s.ok(&["exec", "box", "--", "env"]);
    assert!(env.contains("COLOR=blue"), "{env}");
    assert!(env.contains("PASSWORD=hunter2"), "{env}");
    assert_eq!(s.ok(&["exec", "box", "--", "pwd"]), "/tmp\n");
    let hostname = s.ok(&["exec", "box", "--", "hostname"]);
    assert_eq!(hostname.trim(), "box");

    // stdin, to its end.
    let out = s.kubectl_stdin(
        &[
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "cat > /tmp/in; wc -c < /tmp/in",
        ],
        "hello from stdin\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "17");

    // A missing program is an error, not a hang.
    let out = s.kubectl(&["exec", "box", "--", "no-such-program"]);
    assert!(!out.status.success(), "{out:?}");

    // kubectl cp, both ways (tar through exec).
    let local = s.write("upload.txt", "copied in\n");
    s.ok(&[
        "cp",
        local.to_str().expect("utf-8 path"),
        "box:/tmp/upload.txt",
    ]);
    assert_eq!(
        s.ok(&["exec", "box", "--", "cat", "/tmp/upload.txt"]),
        "copied in\n"
    );
    s.ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/d && echo made inside > /tmp/d/f",
    ]);
    let back = s.path().join("back");
    s.ok(&["cp", "box:/tmp/d", back.to_str().expect("utf-8 path")]);
    assert_eq!(
        std::fs::read_to_string(back.join("f")).expect("copied out"),
        "made inside\n"
    );

    // An exec readiness probe: not ready until the file exists.
    let ready = || {
        s.ok(&[
            "get",
            "pod",
            "box",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
    };
    assert_eq!(ready(), "False");
    s.ok(&["exec", "box", "--", "touch", "/tmp/ready"]);
    eventually(30, "the exec readiness probe passes", || {
        (ready() == "True").then_some(())
    });

    // A terminal: `kubectl exec -it` under a pty.
    let out = s.kubectl_on_terminal("exec -it box -- sh -c 'tty; echo $((6*7))'", "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("/dev/pts/"), "a tty in the container: {text}");
    assert!(text.contains("42"), "{text}");

    s.ok(&["delete", "pod", "box", "--wait=true"]);
}

fn jsonpath(s: &Server, pod: &str, path: &str) -> String {
    s.ok(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

#[test]
fn containers_of_a_pod_share_localhost_and_a_pod_calls_the_api_with_its_token() {
    let s = node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: duo}}
spec:
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo hello over localhost > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
  - name: client
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    env:
    - name: KUBERNETES_SERVICE_HOST
      valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}
    - name: KUBERNETES_SERVICE_PORT
      value: "{port}"
    - name: HOME
      value: /tmp
    volumeMounts:
    - {{name: kubectl, mountPath: /opt/kubectl, readOnly: true}}
  volumes:
  - name: kubectl
    hostPath: {{path: /usr/bin/kubectl, type: File}}
"#,
            port = s.port()
        ),
    );
    eventually(60, "both containers run", || {
        (jsonpath(
            &s,
            "duo",
            "{.status.containerStatuses[*].state.running.startedAt}",
        )
        .split(' ')
        .filter(|t| !t.is_empty())
        .count()
            == 2)
            .then_some(())
    });
    // The web server listens on 127.0.0.1 only: the client reaches it over the pod's
    // shared loopback.
    let page = eventually(30, "the client fetches the page over localhost", || {
        let out = s.kubectl(&[
            "exec",
            "duo",
            "-c",
            "client",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(page, "hello over localhost\n");

    // The service-account token, CA and namespace, and a call to the API with them.
    let ns = s.ok(&[
        "exec",
        "duo",
        "-c",
        "client",
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    ]);
    assert_eq!(ns, "default");
    // As kubelet does, the token volume is a tmpfs: its files never touch the node's disk.
    let mounts = s.ok(&["exec", "duo", "-c", "client", "--", "cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /var/run/secrets/kubernetes.io/serviceaccount ")),
        "{mounts}"
    );
    // kubectl inside the pod (the host's static binary, through a hostPath volume) finds
    // the API with the in-cluster config: the service env (pointed at the node, as
    // skiff has no service proxy yet), the token and the CA of the service-account volume.
    let pods = s.ok(&[
        "exec",
        "duo",
        "-c",
        "client",
        "--",
        "/opt/kubectl",
        "get",
        "pods",
        "-o",
        "name",
    ]);
    assert_eq!(pods, "pod/duo\n");
    let who = s.ok(&[
        "exec",
        "duo",
        "-c",
        "client",
        "--",
        "/opt/kubectl",
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "system:serviceaccount:default:default");
    // Without the token the API refuses.
    let anon = s.kubectl(&[
        "exec",
        "duo",
        "-c",
        "client",
        "--",
        "sh",
        "-c",
        "/opt/kubectl get pods --token=not-a-token",
    ]);
    assert!(!anon.status.success(), "{anon:?}");
    assert!(
        String::from_utf8_lossy(&anon.stderr).contains("Unauthorized"),
        "{anon:?}"
    );

    // Force deletion removes the pod at once, and the node cleans up.
    let uid = jsonpath(&s, "duo", "{.metadata.uid}");
    let started = Instant::now();
    s.ok(&["delete", "pod", "duo", "--force", "--grace-period=0"]);
    assert!(s.ok(&["get", "pods", "-o", "name"]).trim().is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
    eventually(30, "the node removed the pod's containers", || {
        (!s.node_mounts().contains(&uid) && containers_of(&s, &uid).is_empty()).then_some(())
    });
}

/// The runtime's containers of pod `uid` (state dirs under the agent's run dir, a tmpfs
/// in the node's mount namespace).
fn containers_of(s: &Server, uid: &str) -> Vec<String> {
    std::fs::read_dir(s.node_data_dir().join("agent/run/containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| id.starts_with(uid))
        .collect()
}

/// `skiff shim` processes of this node's containers.
fn shims_of(s: &Server) -> Vec<u32> {
    let data = s.data_dir().canonicalize().expect("data dir");
    let data = data.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(" shim ") && cmd.contains(&data)).then_some(pid)
        })
        .collect()
}

#[test]
fn restarting_skiff_leaves_containers_running_and_deleted_pods_leave_nothing() {
    let mut s = node();
    s.ok(&[
        "run",
        "keeper",
        "--image",
        IMAGE,
        "--command",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do echo tick; sleep 1; done",
    ]);
    s.ok(&[
        "run",
        "quitter",
        "--image",
        IMAGE,
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "sleep 6; exit 7",
    ]);
    eventually(60, "both pods run", || {
        (phase(&s, "keeper") == "Running" && phase(&s, "quitter") == "Running").then_some(())
    });
    let uids = [
        jsonpath(&s, "keeper", "{.metadata.uid}"),
        jsonpath(&s, "quitter", "{.metadata.uid}"),
    ];
    let keeper_id = jsonpath(&s, "keeper", "{.status.containerStatuses[0].containerID}");
    let keeper_ip = jsonpath(&s, "keeper", "{.status.podIP}");
    let shims = shims_of(&s);
    assert_eq!(shims.len(), 2, "one shim per container: {shims:?}");

    // skiff crashes; the quitter exits while it is down.
    s.kill();
    std::thread::sleep(Duration::from_secs(8));
    for pid in &shims {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "shim {pid} outlived skiff"
        );
    }
    s.restart();

    eventually(60, "the quitter's exit is reported", || {
        (phase(&s, "quitter") == "Failed").then_some(())
    });
    assert_eq!(
        jsonpath(
            &s,
            "quitter",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "7"
    );
    // The keeper ran on: the same container, no restart, the same address.
    assert_eq!(phase(&s, "keeper"), "Running");
    assert_eq!(
        jsonpath(&s, "keeper", "{.status.containerStatuses[0].containerID}"),
        keeper_id
    );
    assert_eq!(
        jsonpath(&s, "keeper", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    assert_eq!(jsonpath(&s, "keeper", "{.status.podIP}"), keeper_ip);
    assert_eq!(s.ok(&["exec", "keeper", "--", "echo", "alive"]), "alive\n");

    // Deleted pods leave no shim, container, cgroup, mount, namespace file or veth.
    s.ok(&["delete", "pod", "keeper", "quitter", "--wait=true"]);
    eventually(30, "every shim is gone", || {
        shims_of(&s).is_empty().then_some(())
    });
    for uid in &uids {
        eventually(20, "the pod's mounts are gone", || {
            let mounts: Vec<String> = s
                .node_mounts()
                .lines()
                .filter(|l| l.contains(uid.as_str()))
                .map(str::to_string)
                .collect();
            mounts.is_empty().then_some(())
        });
        assert!(
            containers_of(&s, uid).is_empty(),
            "containers of {uid} remain"
        );
        assert!(
            !s.data_dir().join("agent/net/netns").join(uid).exists(),
            "the netns file of {uid} remains"
        );
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroups")
            .flatten()
        {
            let pod = h.path().join("skiff").join(format!("pod{uid}"));
            assert!(!pod.exists(), "cgroup {} remains", pod.display());
        }
    }
    let links = s.in_node("ip", &["-o", "link", "show"]);
    assert!(!links.contains("veth"), "no veth remains:\n{links}");
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

/// `kubectl port-forward` running in the node's netns; killed (by its PID) when dropped.
struct PortForward {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl PortForward {
    /// Starts `kubectl port-forward <args>` and waits for its "Forwarding from" lines.
    fn start(s: &Server, args: &[&str], env: &[(&str, &str)], forwards: usize) -> PortForward {
        use std::io::{BufRead, BufReader};
        let mut all = vec!["port-forward", "-v=6"];
        all.extend_from_slice(args);
        let mut cmd = s.kubectl_cmd(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = 0;
        while seen < forwards {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("Forwarding from 127.0.0.1:") => seen += 1,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "kubectl port-forward {args:?} did not start forwarding: {}",
                        stderr.lock().map(|s| s.clone()).unwrap_or_default()
                    );
                }
            }
        }
        PortForward { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wget -qO- http://127.0.0.1:<port><path>` from the node's netns (where kubectl
/// listens); the body, or `None` when the fetch failed.
fn fetch(s: &Server, port: u16, path: &str) -> Option<Vec<u8>> {
    let out = s
        .in_netns("timeout")
        // Not wget's own `-T`: Debian's static busybox crashes with it on the host.
        .args(["20", crate::image::BUSYBOX, "wget", "-O-"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run busybox wget");
    if !out.status.success() {
        eprintln!(
            "wget :{port}{path} failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out.status.success().then_some(out.stdout)
}

#[test]
fn port_forward_reaches_pods_and_services_over_websocket_and_spdy() {
    let s = node();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  containers:
  - name: httpd
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo hello through port-forward > /www/index.html && dd if=/dev/urandom of=/www/big bs=1024 count=4096 2>/dev/null && httpd -p 127.0.0.1:8081 -h /www && exec httpd -f -p 80 -h /www"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 8000, targetPort: 80}}
"#
        ),
    );
    eventually(60, "the pod is Running", || {
        (phase(&s, "web") == "Running").then_some(())
    });

    // kubectl 1.32 tunnels SPDY in a WebSocket first. Two ports at once, one of them a
    // server bound to the pod's own 127.0.0.1.
    let pf = PortForward::start(&s, &["pod/web", "18080:80", "18081:8081"], &[], 2);
    let page = (0..20)
        .find_map(|_| {
            fetch(&s, 18080, "/").or_else(|| {
                std::thread::sleep(Duration::from_secs(1));
                None
            })
        })
        .unwrap_or_else(|| panic!("no page through the forward; kubectl: {}", pf.stderr()));
    assert_eq!(
        String::from_utf8_lossy(&page),
        "hello through port-forward\n"
    );
    let local = fetch(&s, 18081, "/").expect("the pod's localhost-only server");
    assert_eq!(
        String::from_utf8_lossy(&local),
        "hello through port-forward\n"
    );
    // Several connections at once, each 4 MiB.
    let started = Instant::now();
    let fetches: Vec<_> = (0..4)
        .map(|_| {
            s.in_netns("timeout")
                .args([
                    "30",
                    crate::image::BUSYBOX,
                    "wget",
                    "-qO-",
                    "http://127.0.0.1:18080/big",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("busybox wget")
        })
        .collect();
    // Every wget's output is read at the same time. A wget whose stdout pipe is full
    // (64 KiB) stops reading its socket; once kubectl's send buffer to it fills, kubectl's
    // SPDY session (spdystream: one frame reader, no flow control) stops for every stream,
    // so reading the outputs one after the other stalled all four until the timeout
    // whenever the kernel's buffers could not hold the rest of a 4 MiB file.
    let readers: Vec<_> = fetches
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().expect("wget output")))
        .collect();
    let bodies: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("the wget output reader"))
        .collect();
    let elapsed = started.elapsed();
    let first = &bodies[0].stdout;
    for b in &bodies {
        assert!(
            b.status.success(),
            "wget through the forward: {} (124: the 30 s timeout), {} bytes, stderr {:?}; kubectl: {}",
            b.status,
            b.stdout.len(),
            String::from_utf8_lossy(&b.stderr),
            pf.stderr()
        );
        assert_eq!(b.stdout.len(), 4096 * 1024);
        assert!(&b.stdout == first, "the same bytes on every connection");
    }
    eprintln!("port-forward (WebSocket): 4 x 4 MiB in {elapsed:?}");
    let log = pf.stderr();
    assert!(
        !log.contains("falling back to SPDY") && !log.contains("fallback"),
        "the WebSocket tunnel was used: {log}"
    );
    drop(pf);

    // The SPDY/3.1 upgrade kubectl falls back to, to a Service (kubectl picks its pod and
    // maps the service port to the target port).
    let pf = PortForward::start(
        &s,
        &["svc/web", "18082:8000"],
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        1,
    );
    let page = eventually(20, "a page through the service forward", || {
        fetch(&s, 18082, "/")
    });
    assert_eq!(
        String::from_utf8_lossy(&page),
        "hello through port-forward\n"
    );
    let started = Instant::now();
    let big = fetch(&s, 18082, "/big").expect("a big file over SPDY");
    eprintln!("port-forward (SPDY): 4 MiB in {:?}", started.elapsed());
    assert_eq!(big.len(), 4096 * 1024);
    assert!(&big == first);
    drop(pf);

    // Nothing listens on 9999: the error stream carries the kubelet's message and kubectl
    // gives up.
    let mut pf = PortForward::start(&s, &["pod/web", "18083:9999"], &[], 1);
    assert_eq!(fetch(&s, 18083, "/"), None);
    let exited = eventually(20, "kubectl port-forward exits", || {
        pf.child.try_wait().ok().flatten()
    });
    assert!(!exited.success());
    let log = pf.stderr();
    assert!(
        log.contains("error forwarding port 9999 to pod ")
            && log.contains("failed to connect to localhost:9999"),
        "{log}"
    );
    assert!(log.contains("lost connection to pod"), "{log}");
}

#[test]
fn a_pod_runs_an_image_pulled_from_a_mirror_registry() {
    // docker.io is mirrored to a local registry (k3s's registries.yaml), which runs inside
    // the node's network namespace.
    let port = crate::harness::free_port();
    let config_dir = tempfile::tempdir().expect("temp dir");
    let registries = config_dir.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!("mirrors:\n  docker.io:\n    endpoint:\n    - \"http://127.0.0.1:{port}\"\n"),
    )
    .expect("registries.yaml");
    let s = Server::start_node(&[&format!("--private-registry={}", registries.display())]);
    eventually(60, "the node is Ready", || {
        s.ok(&["get", "nodes", "--no-headers"])
            .contains(" Ready ")
            .then_some(())
    });
    let registry = crate::registry::Registry::start_in(s.netns(), port);
    registry.push_blocking(
        &TestImage::with_hello("pulled from the registry\n"),
        "library/pulled:1",
    );

    // The image's own entrypoint and command (`sh -c 'cat /hello.txt'`).
    s.ok(&["run", "pulled", "--image", "pulled:1", "--restart=Never"]);
    eventually(60, "the pulled pod Succeeded", || {
        (phase(&s, "pulled") == "Succeeded").then_some(())
    });
    assert_eq!(s.ok(&["logs", "pulled"]), "pulled from the registry\n");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pulled",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Pulling: Pulling image \"pulled:1\""),
        "{events}"
    );
    assert!(
        events.contains("Pulled: Successfully pulled image"),
        "{events}"
    );

    // A tag the registry does not have: ErrImagePull, then ImagePullBackOff.
    s.ok(&[
        "run",
        "missing",
        "--image",
        "pulled:nope",
        "--restart=Never",
    ]);
    let reason = eventually(60, "the pull fails", || {
        let r = jsonpath(
            &s,
            "missing",
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        matches!(r.as_str(), "ErrImagePull" | "ImagePullBackOff").then_some(r)
    });
    assert!(!reason.is_empty());
    s.ok(&["delete", "pod", "pulled", "missing", "--wait=true"]);
}

/// Lines kubectl prints, as they come (a reader thread feeds the channel).
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn attach_and_run_join_a_containers_own_stdio() {
    let s = node();
    let image = format!("--image={IMAGE}");

    // `kubectl run -i`: our stdin is the container's, closed at our end (stdinOnce).
    let out = s.kubectl_stdin(
        &[
            "run",
            "piped",
            "-i",
            "--rm",
            "--restart=Never",
            &image,
            "--command",
            "--",
            "sh",
            "-c",
            "cat; echo done-$((40+2))",
        ],
        "through stdin\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("through stdin\ndone-42\n"), "{stdout}");
    assert!(stdout.contains(r#"pod "piped" deleted"#), "{stdout}");

    // `kubectl run -it` on a terminal: a shell with a tty; its exit code is kubectl's.
    let out = s.kubectl_on_terminal(
        &format!("run shell -it --rm --restart=Never {image} --command -- sh"),
        "tty; echo typed-$((6*7))\nexit 3\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("/dev/pts/"), "a tty in the container: {text}");
    assert!(text.contains("typed-42"), "{text}");

    // `kubectl attach -i` to a pod made with stdin and nobody attached.
    s.ok(&[
        "run",
        "reader",
        "-i",
        "--attach=false",
        "--restart=Never",
        &image,
        "--command",
        "--",
        "sh",
        "-c",
        "read line; echo got-$line",
    ]);
    let out = s.kubectl_stdin(&["attach", "-i", "reader"], "hello\n");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got-hello"),
        "{out:?}"
    );
    eventually(30, "the reader ends", || {
        (phase(&s, "reader") == "Succeeded").then_some(())
    });

    // `kubectl attach` without stdin follows the output; leaving does not stop the
    // container.
    s.ok(&[
        "run",
        "ticker",
        "--restart=Never",
        &image,
        "--command",
        "--",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
    ]);
    eventually(60, "the ticker runs", || {
        (phase(&s, "ticker") == "Running").then_some(())
    });
    let mut child = s
        .kubectl_cmd(&["attach", "ticker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl attach");
    let lines = lines_of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ticks = 0;
    while ticks < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("tick-") => ticks += 1,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("kubectl output");
                panic!("no ticks through attach ({e}): {out:?}");
            }
        }
    }
    child.kill().expect("stop kubectl attach");
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(phase(&s, "ticker"), "Running");
    assert_eq!(
        jsonpath(&s, "ticker", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    s.ok(&[
        "delete",
        "pod",
        "ticker",
        "reader",
        "--grace-period=0",
        "--force",
    ]);
}

#[test]
fn configmap_secret_and_downward_api_volumes_follow_their_sources() {
    let s = node_with(&["--sync-frequency", "1s"]);
    s.ok(&["create", "configmap", "live", "--from-literal=color=blue"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=pass=one",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader, labels: {{app: reader}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: info, mountPath: /etc/info}}
  volumes:
  - name: cfg
    configMap: {{name: live}}
  - name: sec
    secret: {{secretName: pw}}
  - name: info
    downwardAPI:
      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
"#
        ),
    );
    eventually(60, "the pod runs", || {
        (phase(&s, "reader") == "Running").then_some(())
    });
    let read = |path: &str| s.ok(&["exec", "reader", "--", "cat", path]);
    assert_eq!(read("/etc/cfg/color"), "blue");
    assert_eq!(read("/etc/sec/pass"), "one");
    assert_eq!(read("/etc/info/labels"), "app=\"reader\"");

    s.ok(&[
        "patch",
        "configmap",
        "live",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ]);
    // "two", base64.
    s.ok(&["patch", "secret", "pw", "-p", r#"{"data":{"pass":"dHdv"}}"#]);
    s.ok(&["label", "pod", "reader", "tier=gold"]);
    eventually(60, "the volumes follow their sources", || {
        (read("/etc/cfg/color") == "green"
            && read("/etc/sec/pass") == "two"
            && read("/etc/info/labels").contains("tier=\"gold\""))
        .then_some(())
    });
    // Still the same container: updates do not restart it.
    assert_eq!(
        jsonpath(&s, "reader", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    s.ok(&["delete", "pod", "reader", "--grace-period=0", "--force"]);
}

#[test]
fn a_new_image_replaces_the_running_container() {
    let s = node();
    let next = "docker.io/library/testbox:2";
    import_as(&s, next);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: swap}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; while true; do sleep 1; done"]
"#
        ),
    );
    eventually(60, "the pod runs", || {
        (phase(&s, "swap") == "Running").then_some(())
    });
    let first = jsonpath(&s, "swap", "{.status.containerStatuses[0].containerID}");

    s.ok(&["set", "image", "pod/swap", &format!("main={next}")]);
    let status = eventually(60, "a new container from the new image", || {
        let id = jsonpath(&s, "swap", "{.status.containerStatuses[0].containerID}");
        let running = jsonpath(&s, "swap", "{.status.containerStatuses[0].state.running}");
        (id != first && !running.is_empty()).then_some(id)
    });
    assert!(!status.is_empty());
    // Replaced although restartPolicy is Never, gracefully, and counted as a restart.
    assert_eq!(phase(&s, "swap"), "Running");
    assert_eq!(
        jsonpath(&s, "swap", "{.status.containerStatuses[0].restartCount}"),
        "1"
    );
    assert_eq!(
        jsonpath(&s, "swap", "{.status.containerStatuses[0].image}"),
        next
    );
    let previous = s.ok(&["logs", "swap", "--previous"]);
    assert!(previous.contains("got TERM"), "{previous}");
    let events = events_of(&s, "swap");
    assert!(
        events.contains("Container main definition changed, will be restarted"),
        "{events}"
    );
    s.ok(&["delete", "pod", "swap", "--grace-period=0", "--force"]);
}

/// The status of the node's condition `type_` (True/False).
fn node_condition(s: &Server, type_: &str) -> String {
    s.ok(&[
        "get",
        "nodes",
        "-o",
        &format!("jsonpath={{.items[0].status.conditions[?(@.type==\"{type_}\")].status}}"),
    ])
}

/// Bytes available on the node's data dir filesystem, as `df` inside the node sees it.
fn data_dir_available(s: &Server) -> u64 {
    let out = s
        .in_node_mounts("df")
        .args(["-B1", "--output=avail"])
        .arg(s.data_dir())
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("df's available bytes")
}

#[test]
fn disk_pressure_evicts_the_best_effort_pod_first_and_refuses_new_pods() {
    const MIB: u64 = 1024 * 1024;
    // The node's data dir (store, images, pod dirs, emptyDirs, writable layers) is a
    // 160 MiB filesystem of its own; DiskPressure below 48 MiB available.
    let s = Server::start_node_on_tmpfs(
        "160m",
        &[
            "--eviction-hard=nodefs.available<48Mi",
            "--eviction-monitoring-interval=1s",
            "--eviction-pressure-transition-period=20s",
        ],
    );
    let tar = s.path().join("testbox.tar");
    std::fs::write(&tar, TestImage::new().oci_tar(IMAGE)).expect("write image tar");
    let out = s
        .in_node_mounts(crate::harness::skiff_bin())
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
    assert_eq!(node_condition(&s, "DiskPressure"), "False");
    // Allocatable ephemeral-storage keeps the threshold back from the capacity.
    let storage = |field: &str| -> u64 {
        s.ok(&[
            "get",
            "nodes",
            "-o",
            &format!("jsonpath={{.items[0].status.{field}.ephemeral-storage}}"),
        ])
        .trim_end_matches("Ki")
        .parse::<u64>()
        .map(|v| if field == "capacity" { v * 1024 } else { v })
        .expect("ephemeral-storage")
    };
    assert_eq!(storage("capacity") - storage("allocatable"), 48 * MIB);

    // A Guaranteed pod that writes nothing.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "steady"}},
  "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "steady",
    "image": "{IMAGE}", "command": ["sleep", "3600"],
    "resources": {{"requests": {{"cpu": "100m", "memory": "32Mi"}},
                  "limits": {{"cpu": "100m", "memory": "32Mi"}}}}}}]}}}}"#
        ),
    );
    eventually(60, "steady runs", || {
        (phase(&s, "steady") == "Running").then_some(())
    });
    let available = data_dir_available(&s);
    assert!(
        available > 80 * MIB,
        "the data dir should have room before the test fills it: {available} bytes"
    );
    // A BestEffort pod that fills its emptyDir to 16 MiB below the threshold.
    let fill = (available - 48 * MIB) / MIB + 16;
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "filler"}},
  "spec": {{"terminationGracePeriodSeconds": 30, "containers": [{{"name": "filler",
    "image": "{IMAGE}", "command": ["sh", "-c",
      "dd if=/dev/zero of=/scratch/fill bs=1M count={fill} && echo filled && sleep 3600"],
    "volumeMounts": [{{"name": "scratch", "mountPath": "/scratch"}}]}}],
  "volumes": [{{"name": "scratch", "emptyDir": {{}}}}]}}}}"#
        ),
    );
    let filler_uid = eventually(60, "the filler pod exists", || {
        Some(jsonpath(&s, "filler", "{.metadata.uid}")).filter(|u| !u.is_empty())
    });
    eventually(60, "DiskPressure is True", || {
        (node_condition(&s, "DiskPressure") == "True").then_some(())
    });
    // Under disk pressure admission refuses new pods (bound here by hand: the
    // scheduler keeps them off the node's disk-pressure taint).
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "late"}},
  "spec": {{"nodeName": "{node}", "containers": [{{"name": "late",
    "image": "{IMAGE}", "command": ["sleep", "3600"],
    "resources": {{"requests": {{"memory": "8Mi"}}}}}}]}}}}"#
        ),
    );
    eventually(60, "the filler pod is evicted", || {
        (phase(&s, "filler") == "Failed").then_some(())
    });
    assert_eq!(jsonpath(&s, "filler", "{.status.reason}"), "Evicted");
    let message = jsonpath(&s, "filler", "{.status.message}");
    assert!(
        message.starts_with(
            "The node was low on resource: ephemeral-storage. Threshold quantity: 48Mi, available: "
        ) && message.contains("Container filler was using ")
            && message
                .ends_with("request is 0, has larger consumption of ephemeral-storage. "),
        "{message}"
    );
    assert_eq!(
        jsonpath(
            &s,
            "filler",
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
        ),
        "TerminationByKubelet"
    );
    // The killed container ended (kubectl 1.32 shows its reason, Error, as the STATUS, as
    // it does for pods a kubelet evicts); describe shows the pod's reason.
    assert_eq!(
        jsonpath(
            &s,
            "filler",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );
    let row = s.ok(&["get", "pod", "filler", "--no-headers"]);
    assert!(row.contains(" Error "), "{row}");
    let described = s.ok(&["describe", "pod", "filler"]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("Reason:") && l.trim_end().ends_with("Evicted")),
        "{described}"
    );
    assert!(
        events_of(&s, "filler")
            .contains("Evicted: The node was low on resource: ephemeral-storage."),
        "{}",
        events_of(&s, "filler")
    );
    let node_events = events_of(&s, &node);
    assert!(
        node_events.contains("EvictionThresholdMet: Attempting to reclaim ephemeral-storage"),
        "{node_events}"
    );
    // The Guaranteed pod keeps running.
    assert_eq!(phase(&s, "steady"), "Running");
    assert_eq!(
        jsonpath(&s, "steady", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    // The refused pod never ran.
    eventually(30, "the late pod is refused", || {
        (phase(&s, "late") == "Failed").then_some(())
    });
    assert_eq!(jsonpath(&s, "late", "{.status.reason}"), "Evicted");
    assert_eq!(
        jsonpath(&s, "late", "{.status.message}"),
        "Pod was rejected: The node had condition: [DiskPressure]. "
    );
    let late_uid = jsonpath(&s, "late", "{.metadata.uid}");
    assert!(containers_of(&s, &late_uid).is_empty());
    // Everything of the evicted pod is gone (its object stays): containers, emptyDir,
    // pod dir and mounts; the space is back.
    eventually(30, "the evicted pod is cleaned up", || {
        (containers_of(&s, &filler_uid).is_empty()
            && !s
                .node_data_dir()
                .join("agent/pods")
                .join(&filler_uid)
                .exists()
            && !s.node_mounts().contains(&filler_uid))
        .then_some(())
    });
    assert!(data_dir_available(&s) > 60 * MIB);
    // The taint comes and goes with the condition.
    eventually(30, "the node has the disk-pressure taint", || {
        s.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].spec.taints[*].key}",
        ])
        .contains("node.kubernetes.io/disk-pressure")
        .then_some(())
    });
    eventually(60, "DiskPressure is False again", || {
        (node_condition(&s, "DiskPressure") == "False").then_some(())
    });
    eventually(30, "the disk-pressure taint is gone", || {
        (!s.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].spec.taints[*].key}",
        ])
        .contains("node.kubernetes.io/disk-pressure"))
        .then_some(())
    });
    assert_eq!(phase(&s, "steady"), "Running");
    s.ok(&["delete", "pod", "filler", "late", "steady", "--wait=true"]);
    eventually(30, "no pod dir is left", || {
        std::fs::read_dir(s.node_data_dir().join("agent/pods"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
            .then_some(())
    });
}
