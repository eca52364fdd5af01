//! kubectl get in every output format, selectors, sorting, watch, describe,
//! api-resources and version.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{eventually, Server};

fn seed(s: &Server) {
    for (name, tier, n) in [
        ("alpha", "front", "1"),
        ("beta", "back", "22"),
        ("gamma", "front", "333"),
    ] {
        s.ok(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=num={n}"),
        ]);
        s.ok(&["label", "configmap", name, &format!("tier={tier}")]);
    }
}

#[test]
fn output_formats() {
    let s = Server::start();
    seed(&s);
    let table = s.ok(&["get", "configmaps"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "DATA", "AGE"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha ") && l.split_whitespace().nth(1) == Some("1")),
        "{table}"
    );

    let wide = s.ok(&["get", "ns", "-o", "wide"]);
    assert!(
        wide.starts_with("NAME") && wide.contains("STATUS") && wide.contains("kube-system"),
        "{wide}"
    );

    assert_eq!(
        s.ok(&["get", "cm", "alpha", "-o", "name"]).trim(),
        "configmap/alpha"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "cm", "beta", "-o", "json"])).unwrap();
    assert_eq!(json["data"]["num"], "22");
    assert!(json["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(json["metadata"]["resourceVersion"].as_str().is_some());
    let yaml = s.ok(&["get", "cm", "beta", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("num: \"22\""),
        "{yaml}"
    );
    let cols = s.ok(&[
        "get",
        "cm",
        "-l",
        "tier",
        "-o",
        "custom-columns=N:.metadata.name,T:.metadata.labels.tier",
        "--no-headers",
    ]);
    let rows: Vec<Vec<&str>> = cols
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["alpha", "front"],
            vec!["beta", "back"],
            vec!["gamma", "front"]
        ]
    );
    let labels = s.ok(&["get", "cm", "alpha", "--show-labels"]);
    assert!(labels.contains("tier=front"), "{labels}");
    let l_col = s.ok(&["get", "cm", "-L", "tier", "-l", "tier"]);
    assert!(l_col.lines().next().unwrap().contains("TIER"), "{l_col}");
    let all_ns = s.ok(&["get", "cm", "-A", "-l", "tier"]);
    assert!(
        all_ns.lines().next().unwrap().starts_with("NAMESPACE"),
        "{all_ns}"
    );
}

#[test]
fn selectors_sort_and_paging() {
    let s = Server::start();
    seed(&s);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["get", "cm", "-o", "jsonpath={.items[*].metadata.name}"];
        a.extend_from_slice(args);
        s.ok(&a).split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(names(&["-l", "tier=front"]), vec!["alpha", "gamma"]);
    assert_eq!(names(&["-l", "tier!=front,tier"]), vec!["beta"]);
    assert_eq!(names(&["-l", "tier in (back,nothing)"]), vec!["beta"]);
    // `notin` also matches objects without the label, like the namespace's CA bundle
    // (published by the service-account controller shortly after start).
    eventually(20, "kube-root-ca.crt in default", || {
        s.kubectl(&["get", "cm", "kube-root-ca.crt"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(
        names(&["-l", "tier notin (back)"]),
        vec!["alpha", "gamma", "kube-root-ca.crt"]
    );
    assert_eq!(
        names(&["--field-selector", "metadata.name=gamma"]),
        vec!["gamma"]
    );
    assert_eq!(
        names(&["--field-selector", "metadata.name!=gamma", "-l", "tier"]),
        vec!["alpha", "beta"]
    );
    // --sort-by asks for full objects in the Table.
    let sorted = s.ok(&[
        "get",
        "cm",
        "-l",
        "tier",
        "--sort-by=.data.num",
        "--no-headers",
        "-o",
        "custom-columns=N:.metadata.name",
    ]);
    assert_eq!(
        sorted.split_whitespace().collect::<Vec<_>>(),
        vec!["alpha", "beta", "gamma"]
    );
    let by_tier = s.ok(&[
        "get",
        "cm",
        "-l",
        "tier",
        "--sort-by=.metadata.labels.tier",
        "--no-headers",
    ]);
    assert!(
        by_tier.lines().next().unwrap().starts_with("beta"),
        "{by_tier}"
    );
    // Paging: --chunk-size makes kubectl follow continue tokens.
    for i in 0..12 {
        s.ok(&["create", "configmap", &format!("page-{i:02}")]);
    }
    let paged = s.ok(&["get", "cm", "--chunk-size=5", "-o", "name"]);
    assert_eq!(paged.lines().filter(|l| l.contains("page-")).count(), 12);
    let bad = s.fails(&["get", "cm", "--field-selector", "data.num=1"]);
    assert!(
        bad.contains("\"data.num\" is not a known field selector"),
        "{bad}"
    );
    let bad = s.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(
        bad.contains("field label not supported: spec.bogus"),
        "{bad}"
    );
}

#[test]
fn watch_sees_changes_made_by_another_kubectl() {
    let s = Server::start();
    s.ok(&["create", "configmap", "watched", "--from-literal=v=1"]);
    let mut watcher = s
        .kubectl_cmd(&[
            "get",
            "cm",
            "-w",
            "--no-headers",
            "-o",
            "custom-columns=N:.metadata.name,V:.data.v",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The initial listing also shows the namespace's kube-root-ca.crt.
    let mut initial = Vec::new();
    while !initial
        .iter()
        .any(|l: &String| l.starts_with("watched") && l.ends_with('1'))
    {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("initial listing lacks `watched`: {initial:?}"));
        initial.push(line);
    }
    s.ok(&["patch", "cm", "watched", "-p", r#"{"data":{"v":"2"}}"#]);
    s.ok(&["create", "configmap", "newcomer", "--from-literal=v=9"]);
    let mut seen = Vec::new();
    let got = eventually(20, "watch events", || {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        let changed = seen
            .iter()
            .any(|l| l.starts_with("watched") && l.ends_with('2'));
        let added = seen.iter().any(|l| l.starts_with("newcomer"));
        (changed && added).then(|| seen.clone())
    });
    assert!(!got.is_empty());
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn describe_api_resources_and_version() {
    let s = Server::start();
    s.ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    let d = s.ok(&["describe", "deployment", "web"]);
    assert!(
        d.contains("Name:") && d.contains("web") && d.contains("nginx:1.27"),
        "{d}"
    );
    assert!(
        d.contains("StrategyType:") && d.contains("RollingUpdate"),
        "{d}"
    );

    let res = s.ok(&["api-resources"]);
    for needle in [
        "deployments",
        "deploy",
        "apps/v1",
        "pods",
        "po",
        "horizontalpodautoscalers",
        "leases",
        "endpointslices",
        "priorityclasses",
    ] {
        assert!(res.contains(needle), "api-resources lacks {needle}: {res}");
    }
    let v = s.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "32");
    // The four namespaces exist from the first start.
    let ns = s.ok(&["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
}

#[test]
fn tables_show_the_columns_kubectl_users_know() {
    let s = Server::start();
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    let header = |kind: &str, extra: &[&str]| -> Vec<String> {
        let mut a = vec!["get", kind];
        a.extend_from_slice(extra);
        let out = s.ok(&a);
        let l = out.lines().next().unwrap_or("").to_string();
        // Multi-word headers (NOMINATED NODE) are split; compare the words.
        l.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        header("deployments", &[]),
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert_eq!(
        header("services", &[]),
        vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    s.ok_stdin(&["apply", "-f", "-"], pod);
    assert_eq!(
        header("pods", &[]),
        vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let wide = header("pods", &["-o", "wide"]);
    assert!(
        wide.starts_with(&[
            "NAME".into(),
            "READY".into(),
            "STATUS".into(),
            "RESTARTS".into(),
            "AGE".into(),
            "IP".into(),
            "NODE".into()
        ]),
        "{wide:?}"
    );
    let row = s.ok(&["get", "pod", "p", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], &["p", "0/1", "Pending", "0"], "{row}");
}
