//! DaemonSets, StatefulSets, Jobs and CronJobs with the real kubectl against `skiff
//! server` plus `skiff simulate`: what a user sees from `kubectl get`, `rollout status`
//! and `wait`.

use crate::harness::{eventually, Server};

/// Names and nodes of the live pods matching `selector`, sorted by name.
fn pods_on_nodes(s: &Server, selector: &str) -> Vec<(String, String)> {
    let out = s.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("pod list JSON");
    let mut pods: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    pods.sort();
    pods
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1
"#;

#[test]
fn daemonset_covers_every_node_it_tolerates() {
    let s = Server::start();
    let _plain = s.simulate(&["--nodes", "3"]);
    let _tainted = s.simulate(&[
        "--nodes",
        "1",
        "--name-prefix",
        "tainted-",
        "--first-index",
        "3",
        "--node-taint",
        "dedicated=infra:NoSchedule",
    ]);
    s.ok_stdin(&["apply", "-f", "-"], DAEMONSET);
    s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);

    let nodes: Vec<String> = pods_on_nodes(&s, "app=agent")
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["sim-0", "sim-1", "sim-2"],
        "one daemon per untainted node"
    );
    let counts = s.ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.desiredNumberScheduled}/{.status.numberReady}",
    ]);
    assert_eq!(counts, "3/3");

    // Lifting the taint lets the daemon onto the fourth node.
    s.ok(&["taint", "node", "tainted-3", "dedicated=infra:NoSchedule-"]);
    eventually(30, "a daemon pod on tainted-3", || {
        pods_on_nodes(&s, "app=agent")
            .iter()
            .any(|(_, node)| node == "tainted-3")
            .then_some(())
    });
    s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert_eq!(pods_on_nodes(&s, "app=agent").len(), 4);
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        simulate.skiff.io/ready: "false"
    spec:
      containers:
      - name: web
        image: nginx:1
        volumeMounts:
        - {name: www, mountPath: /usr/share/nginx/html}
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
"#;

fn names(pods: &[(String, String)]) -> Vec<&str> {
    pods.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn statefulset_creates_members_in_order_with_their_claims() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    s.ok_stdin(&["apply", "-f", "-"], STATEFULSET);

    // Each member waits for its predecessor to be Ready; the simulator keeps them unready
    // until the annotation flips.
    for (i, expected) in [
        vec!["web-0"],
        vec!["web-0", "web-1"],
        vec!["web-0", "web-1", "web-2"],
    ]
    .iter()
    .enumerate()
    {
        let member = format!("web-{i}");
        eventually(30, &format!("{member} created"), || {
            (names(&pods_on_nodes(&s, "app=web")).len() == expected.len()).then_some(())
        });
        // Nothing further appears while this member is unready.
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_eq!(names(&pods_on_nodes(&s, "app=web")), *expected);
        let claim = s.ok(&[
            "get",
            "pvc",
            &format!("www-{member}"),
            "-o",
            "jsonpath={.metadata.name}",
        ]);
        assert_eq!(claim, format!("www-{member}"));
        // Simulated nodes get their claims provisioned like real ones: a local-path
        // volume pinned to the member's node (no directory is made for a fake node).
        let node = s.ok(&["get", "pod", &member, "-o", "jsonpath={.spec.nodeName}"]);
        eventually(20, &format!("www-{member} bound"), || {
            let pv = s.ok(&[
                "get",
                "pvc",
                &format!("www-{member}"),
                "-o",
                "jsonpath={.status.phase}/{.spec.storageClassName}/{.spec.volumeName}",
            ]);
            let pv = pv.strip_prefix("Bound/local-path/")?.to_string();
            let pinned = s.ok(&["get", "pv", &pv, "-o",
                "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"]);
            (pinned == node).then_some(())
        });
        s.ok(&[
            "annotate",
            "pod",
            &member,
            "--overwrite",
            "simulate.skiff.io/ready=true",
        ]);
    }
    s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let ready = s.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(ready, "3");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=StatefulSet,involvedObject.name=web",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    for i in 0..3 {
        assert!(
            events.contains(&format!(
                "create Claim www-web-{i} Pod web-{i} in StatefulSet web success"
            )),
            "{events}"
        );
        assert!(
            events.contains(&format!("create Pod web-{i} in StatefulSet web successful")),
            "{events}"
        );
    }

    // Claims outlive their set; deleting one (once no pod uses it) releases its volume,
    // which the simulator deletes for its node.
    let pv = s.ok(&[
        "get",
        "pvc",
        "www-web-0",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    s.ok(&["delete", "sts", "web", "--wait=true"]);
    eventually(30, "the members are gone", || {
        pods_on_nodes(&s, "app=web").is_empty().then_some(())
    });
    s.ok(&["delete", "pvc", "www-web-0", "--wait=true", "--timeout=30s"]);
    eventually(30, "the released volume is deleted", || {
        (!s.ok(&["get", "pv", "-o", "name"]).contains(&pv)).then_some(())
    });
    let left = s.ok(&["get", "pvc", "-o", "name"]);
    assert!(
        left.contains("www-web-1") && left.contains("www-web-2"),
        "{left}"
    );
}

const FAILING_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: broken
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1
        command: ["sh", "-c", "exit 1"]
"#;

#[test]
fn jobs_complete_or_fail_past_their_backoff_limit() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    s.ok(&[
        "create",
        "job",
        "fine",
        "--image=busybox:1",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    s.ok_stdin(&["apply", "-f", "-"], FAILING_JOB);

    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/fine",
        "--timeout=60s",
    ]);
    let done = s.ok(&["get", "job", "fine", "-o", "jsonpath={.status.succeeded}"]);
    assert_eq!(done, "1");
    let table = s.ok(&["get", "job", "fine"]);
    assert!(
        table.contains("Complete") && table.contains("1/1"),
        "{table}"
    );

    s.ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=60s",
    ]);
    let failed = s.ok(&[
        "get",
        "job",
        "broken",
        "-o",
        "jsonpath={.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}",
    ]);
    assert_eq!(failed, "2 BackoffLimitExceeded");
    let describe = s.ok(&["describe", "job", "broken"]);
    assert!(
        describe.contains("BackoffLimitExceeded") && describe.contains("SuccessfulCreate"),
        "{describe}"
    );
}

#[test]
fn cronjob_fires_on_schedule_and_instantiates_by_hand() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "3"]);
    s.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1",
        "--schedule=*/1 * * * *",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);

    // `create job --from` builds the Job client side from the CronJob's template.
    s.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/by-hand",
        "--timeout=60s",
    ]);
    let owner = s.ok(&[
        "get",
        "job",
        "by-hand",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}",
    ]);
    assert_eq!(owner, "CronJob/tick manual");

    // The next minute boundary fires a scheduled Job and records lastScheduleTime.
    let last = eventually(70, "the cronjob to fire", || {
        let t = s.ok(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ]);
        (!t.is_empty()).then_some(t)
    });
    assert!(
        last.ends_with(":00Z"),
        "scheduled on a minute boundary: {last}"
    );
    let scheduled = eventually(30, "the scheduled job", || {
        let jobs = s.ok(&["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"]);
        jobs.split_whitespace()
            .find(|j| j.starts_with("tick-"))
            .map(str::to_string)
    });
    s.ok(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{scheduled}"),
        "--timeout=60s",
    ]);
    let events = s.ok(&["describe", "cronjob", "tick"]);
    assert!(
        events.contains(&format!("Created job {scheduled}")),
        "{events}"
    );
}
