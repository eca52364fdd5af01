//! Services with the real kubectl: ClusterIP and NodePort allocation (`kubectl expose`,
//! conflicts with kube-apiserver's errors, release on delete, survival across a restart),
//! the `kubernetes` Service, and Endpoints / EndpointSlices following pod readiness on
//! simulated nodes.

use serde_json::Value;

use crate::harness::{eventually, Server};

fn json(s: &Server, args: &[&str]) -> Value {
    serde_json::from_str(&s.ok(args)).expect("kubectl JSON output")
}

fn node_port(s: &Server, svc: &str) -> i64 {
    json(s, &["get", "svc", svc, "-o", "json"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap_or_else(|| panic!("service {svc} has no nodePort"))
}

#[test]
fn kubernetes_service_and_allocation_through_kubectl() {
    let mut s = Server::start();

    // The kubernetes Service and its endpoints.
    let out = s.ok(&["get", "svc", "kubernetes"]);
    let row = out.lines().nth(1).expect("a row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP"],
        "{out}"
    );
    let ep = s.ok(&["get", "endpoints", "kubernetes"]);
    assert!(ep.contains("127.0.0.1:"), "{ep}");
    let slice = json(&s, &["get", "endpointslice", "kubernetes", "-o", "json"]);
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");

    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--port=8080",
    ]);
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--type=NodePort",
    ]);
    let np = node_port(&s, "web");
    assert!((30000..=32767).contains(&np), "{np}");
    let svc = json(&s, &["get", "svc", "web", "-o", "json"]);
    let ip = svc["spec"]["clusterIP"].as_str().expect("cluster IP");
    assert!(
        ip.starts_with("10.43.") && ip != "10.43.0.1" && ip != "10.43.0.10",
        "{ip}"
    );
    assert_eq!(svc["spec"]["clusterIPs"][0], ip);
    let out = s.ok(&["get", "svc", "web"]);
    assert!(out.contains(&format!("80:{np}/TCP")), "{out}");

    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-lb",
        "--port",
        "80",
        "--type=LoadBalancer",
    ]);
    let lb_port = node_port(&s, "web-lb");
    assert_ne!(lb_port, np);
    let out = s.ok(&["get", "svc", "web-lb"]);
    let cols: Vec<&str> = out
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(cols[1], "LoadBalancer", "{out}");
    assert_eq!(cols[3], "<pending>", "{out}");
    assert_eq!(cols[4], format!("80:{lb_port}/TCP"), "{out}");

    // Taken values give kube-apiserver's errors.
    let err = s.fails(&[
        "create",
        "service",
        "nodeport",
        "taken",
        "--tcp=80:80",
        &format!("--node-port={np}"),
    ]);
    assert!(
        err.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {np}: provided port is already allocated"
        )),
        "{err}"
    );
    let err = s.fails(&[
        "create",
        "service",
        "clusterip",
        "dup",
        "--tcp=80:80",
        "--clusterip=10.43.0.1",
    ]);
    assert!(
        err.contains(r#"spec.clusterIPs: Invalid value: []string{"10.43.0.1"}: failed to allocate IP 10.43.0.1: provided IP is already allocated"#),
        "{err}"
    );
    let err = s.fails(&[
        "create",
        "service",
        "clusterip",
        "away",
        "--tcp=80:80",
        "--clusterip=10.99.0.1",
    ]);
    assert!(
        err.contains("The range of valid IPs is 10.43.0.0/16"),
        "{err}"
    );

    // Type change: NodePort -> ClusterIP releases the node port, keeps the IP.
    s.ok(&[
        "patch",
        "svc",
        "web-lb",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let after = json(&s, &["get", "svc", "web-lb", "-o", "json"]);
    assert!(after["spec"]["ports"][0]["nodePort"].is_null(), "{after}");
    s.ok(&[
        "create",
        "service",
        "nodeport",
        "reuse",
        "--tcp=81:81",
        &format!("--node-port={lb_port}"),
    ]);

    // A restart derives the used set from the stored Services.
    s.restart();
    let err = s.fails(&[
        "create",
        "service",
        "nodeport",
        "taken2",
        "--tcp=80:80",
        &format!("--node-port={np}"),
    ]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    let again = json(&s, &["get", "svc", "web", "-o", "json"]);
    assert_eq!(again["spec"]["clusterIP"], ip);
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}"
        ]),
        "10.43.0.1"
    );

    // Deleting releases.
    s.ok(&["delete", "svc", "web"]);
    s.ok(&[
        "create",
        "service",
        "nodeport",
        "taken",
        "--tcp=80:80",
        &format!("--node-port={np}"),
    ]);
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "pinned",
        "--tcp=80:80",
        &format!("--clusterip={ip}"),
    ]);
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: nginx
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: web, port: 80, targetPort: http}]
"#;

/// (ready IPs, not-ready IPs, ports) of `kubectl get endpoints api`.
fn endpoints(s: &Server) -> (Vec<String>, Vec<String>, Vec<i64>) {
    let ep = json(s, &["get", "endpoints", "api", "-o", "json"]);
    let ips = |key: &str| -> Vec<String> {
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[key].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    let ports = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    (ips("addresses"), ips("notReadyAddresses"), ports)
}

/// (pod name, ready) per endpoint of the Service's managed slices.
fn slice_endpoints(s: &Server) -> Vec<(String, bool)> {
    let list = json(
        s,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=api",
            "-o",
            "json",
        ],
    );
    let mut out: Vec<(String, bool)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["conditions"]["ready"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn endpoints_and_endpointslices_follow_pod_readiness() {
    let s = Server::start();
    let _nodes = s.simulate(&["--nodes", "2"]);
    s.ok_stdin(&["apply", "-f", "-"], APP);
    s.ok(&["rollout", "status", "deployment/api", "--timeout=90s"]);

    let (ready, not_ready, ports) = eventually(30, "two ready endpoints", || {
        let e = endpoints(&s);
        (e.0.len() == 2).then_some(e)
    });
    assert!(not_ready.is_empty());
    assert_eq!(
        ports,
        vec![8080],
        "named targetPort resolves to the container port"
    );
    let out = s.ok(&["get", "endpoints", "api"]);
    for ip in &ready {
        assert!(out.contains(&format!("{ip}:8080")), "{out}");
    }

    let list = json(
        &s,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=api",
            "-o",
            "json",
        ],
    );
    let slice = &list["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["ports"][0]["name"], "web");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert!(slice["endpoints"][0]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));

    // Make one pod unready through the simulated kubelet.
    let pods = json(&s, &["get", "pods", "-l", "app=api", "-o", "json"]);
    let victim = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_string();
    let victim_ip = pods["items"][0]["status"]["podIP"]
        .as_str()
        .expect("pod IP")
        .to_string();
    s.ok(&[
        "annotate",
        "pod",
        &victim,
        "simulate.skiff.io/ready=false",
        "--overwrite",
    ]);
    let (ready, not_ready, _) = eventually(30, "one not-ready address", || {
        let e = endpoints(&s);
        (e.1.len() == 1).then_some(e)
    });
    assert_eq!(not_ready, vec![victim_ip.clone()]);
    assert_eq!(ready.len(), 1);
    eventually(30, "slice shows the pod not ready", || {
        let eps = slice_endpoints(&s);
        (eps.len() == 2 && eps.iter().any(|(n, r)| *n == victim && !r)).then_some(())
    });

    s.ok(&[
        "annotate",
        "pod",
        &victim,
        "simulate.skiff.io/ready=true",
        "--overwrite",
    ]);
    eventually(30, "both ready again", || {
        let e = endpoints(&s);
        (e.0.len() == 2 && e.1.is_empty()).then_some(())
    });
    eventually(30, "slice shows both ready", || {
        let eps = slice_endpoints(&s);
        (eps.len() == 2 && eps.iter().all(|(_, r)| *r)).then_some(())
    });

    // Scale to zero: the Endpoints empty out, the slice stays as a placeholder.
    s.ok(&["scale", "deployment/api", "--replicas=0"]);
    eventually(60, "no endpoints left", || {
        let e = endpoints(&s);
        (e.0.is_empty() && e.1.is_empty()).then_some(())
    });
    eventually(30, "empty slice", || {
        slice_endpoints(&s).is_empty().then_some(())
    });

    // Deleting the Service removes its Endpoints and slices.
    s.ok(&["delete", "svc", "api"]);
    eventually(30, "endpoints gone", || {
        s.kubectl(&["get", "endpoints", "api"])
            .status
            .success()
            .then_some(())
            .xor(Some(()))
    });
    eventually(30, "slices gone", || {
        let list = json(
            &s,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=api",
                "-o",
                "json",
            ],
        );
        list["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
}
