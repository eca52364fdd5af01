//! Scenarios a Kubernetes user would check: where pods land and what
//! `kubectl describe pod` says when they cannot.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::*;

struct N(Value);

impl N {
    fn new(name: &str) -> N {
        N(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
    }
    fn label(mut self, k: &str, v: &str) -> N {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn alloc(mut self, resource: &str, v: &str) -> N {
        self.0["status"]["allocatable"][resource] = json!(v);
        self
    }
    fn taint(mut self, key: &str, value: &str, effect: &str) -> N {
        let t = json!({"key": key, "value": value, "effect": effect});
        match self.0["spec"]["taints"].as_array_mut() {
            Some(a) => a.push(t),
            None => self.0["spec"]["taints"] = json!([t]),
        }
        self
    }
    fn cordon(mut self) -> N {
        self.0["spec"]["unschedulable"] = json!(true);
        self
    }
    fn ready(mut self, status: &str) -> N {
        self.0["status"]["conditions"][0]["status"] = json!(status);
        self
    }
    fn build(self) -> Node {
        serde_json::from_value(self.0).expect("valid node")
    }
}

struct P(Value);

impl P {
    fn new(name: &str) -> P {
        P(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c"}]}
        }))
    }
    fn req(mut self, resource: &str, v: &str) -> P {
        self.0["spec"]["containers"][0]["resources"]["requests"][resource] = json!(v);
        self
    }
    fn label(mut self, k: &str, v: &str) -> P {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn owner(mut self, uid: &str) -> P {
        self.0["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        self
    }
    fn on(mut self, node: &str) -> P {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }
    fn spec(mut self, key: &str, v: Value) -> P {
        self.0["spec"][key] = v;
        self
    }
    fn port(mut self, host_port: i32) -> P {
        self.0["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80, "hostPort": host_port}]);
        self
    }
    fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("valid pod")
    }
}

fn cluster(nodes: Vec<N>) -> Snapshot {
    let mut s = Snapshot::new();
    for n in nodes {
        s.add_node(&n.build());
    }
    s
}

fn place(s: &Snapshot, p: &Pod) -> Result<String, String> {
    schedule(p, s, &mut 0).map_err(|e| e.to_string())
}

/// Schedule and assume, as the loop does in a burst.
fn place_all(s: &mut Snapshot, pods: &[Pod], start: &mut usize) -> BTreeMap<String, usize> {
    let mut per_node = BTreeMap::new();
    for p in pods {
        let node = schedule(p, s, start).expect("schedulable");
        s.assume(p, &node);
        *per_node.entry(node).or_insert(0) += 1;
    }
    per_node
}

const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

#[test]
fn failed_scheduling_message_is_kube_schedulers() {
    let s = cluster(vec![
        N::new("cp").taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
        N::new("w1").alloc("cpu", "2"),
        N::new("w2").alloc("cpu", "2"),
    ]);
    let err = place(&s, &P::new("big").req("cpu", "3").build());
    assert_eq!(
        err,
        Err(format!(
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {{node-role.kubernetes.io/control-plane: }}, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 1 {NOT_HELPFUL}, 2 {NO_VICTIMS}."
        ))
    );
    assert_eq!(
        place(&Snapshot::new(), &P::new("p").build()),
        Err("no nodes available to schedule pods".to_string())
    );
}

#[test]
fn not_ready_and_cordoned_nodes_are_skipped() {
    let mut s = cluster(vec![
        N::new("down").ready("False"),
        N::new("gone").ready("Unknown"),
        N::new("cordoned").cordon(),
        N::new("ok"),
    ]);
    assert_eq!(place(&s, &P::new("p").build()), Ok("ok".into()));
    s.remove_node(&N::new("ok").build());
    assert_eq!(
        place(&s, &P::new("p").build()),
        Err(format!(
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {{node.kubernetes.io/not-ready: }}, 1 node(s) had untolerated taint \
             {{node.kubernetes.io/unreachable: }}, 1 node(s) were unschedulable. preemption: \
             0/3 nodes are available: 3 {NOT_HELPFUL}."
        ))
    );
    let tolerant = P::new("ds")
        .spec(
            "tolerations",
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                    "effect": "NoSchedule"}]),
        )
        .build();
    assert_eq!(place(&s, &tolerant), Ok("cordoned".into()));
}

#[test]
fn resources_count_requests_pod_slots_and_extended_resources() {
    let mut s = cluster(vec![N::new("n1").alloc("cpu", "2").alloc("pods", "2")]);
    s.add_pod(&P::new("a").req("cpu", "500m").on("n1").build());
    assert_eq!(
        place(&s, &P::new("fits").req("cpu", "1500m").build()),
        Ok("n1".into())
    );
    let err = place(
        &s,
        &P::new("big")
            .req("cpu", "1501m")
            .req("memory", "9Gi")
            .build(),
    );
    assert_eq!(
        err,
        Err(format!(
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: \
             0/1 nodes are available: 1 {NO_VICTIMS}."
        ))
    );
    // An init container's peak counts even when the app containers are small.
    let init = P::new("init")
        .req("cpu", "100m")
        .spec(
            "initContainers",
            json!([{"name": "i", "resources": {"requests": {"cpu": "1600m"}}}]),
        )
        .build();
    assert!(place(&s, &init).is_err_and(|e| e.contains("1 Insufficient cpu.")));
    let gpu = P::new("gpu").req("nvidia.com/gpu", "1").build();
    assert!(place(&s, &gpu).is_err_and(|e| e.contains("1 Insufficient nvidia.com/gpu.")));
    s.add_pod(&P::new("b").on("n1").build());
    assert!(place(&s, &P::new("third").build()).is_err_and(|e| e.contains("1 Too many pods.")));
}

#[test]
fn finished_and_deleted_pods_free_their_node() {
    let mut s = cluster(vec![N::new("n1").alloc("cpu", "1")]);
    let job = P::new("job").req("cpu", "1").on("n1");
    s.add_pod(&job.build());
    assert!(place(&s, &P::new("p").req("cpu", "1").build()).is_err());
    let mut done = P::new("job").req("cpu", "1").on("n1").build();
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    s.update_pod(&done);
    assert_eq!(
        place(&s, &P::new("p").req("cpu", "1").build()),
        Ok("n1".into())
    );
}

#[test]
fn node_selector_and_required_node_affinity_pick_the_node() {
    let s = cluster(vec![
        N::new("hdd").label("disk", "hdd").label("cores", "4"),
        N::new("ssd").label("disk", "ssd").label("cores", "16"),
    ]);
    let sel = P::new("p")
        .spec("nodeSelector", json!({"disk": "ssd"}))
        .build();
    assert_eq!(place(&s, &sel), Ok("ssd".into()));
    let gt = P::new("p")
        .spec(
            "affinity",
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "cores", "operator": "Lt", "values": ["8"]}]}]}}}),
        )
        .build();
    assert_eq!(place(&s, &gt), Ok("hdd".into()));
    let none = P::new("p")
        .spec("nodeSelector", json!({"disk": "nvme"}))
        .build();
    assert_eq!(
        place(&s, &none),
        Err(format!(
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/2 nodes are available: 2 {NOT_HELPFUL}."
        ))
    );
}

#[test]
fn daemonset_pod_pinned_by_name_reports_the_other_nodes_as_not_named() {
    let mut s = cluster(vec![
        N::new("n1"),
        N::new("n2").alloc("cpu", "1"),
        N::new("n3"),
    ]);
    let ds = || {
        P::new("ds-x")
            .req("cpu", "500m")
            .spec(
                "affinity",
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}),
            )
            .build()
    };
    assert_eq!(place(&s, &ds()), Ok("n2".into()));
    s.add_pod(&P::new("hog").req("cpu", "800m").on("n2").build());
    assert_eq!(
        place(&s, &ds()),
        Err(format!(
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) \
             [NodeAffinity]. preemption: 0/3 nodes are available: 1 {NO_VICTIMS}, 2 \
             {NOT_HELPFUL}."
        ))
    );
}

#[test]
fn taints_need_tolerations_and_prefer_no_schedule_is_avoided() {
    let s = cluster(vec![
        N::new("db").taint("dedicated", "db", "NoSchedule"),
        N::new("soft").taint("spot", "", "PreferNoSchedule"),
        N::new("plain"),
    ]);
    for start in 0..3 {
        let node = schedule(&P::new("p").build(), &s, &mut start.clone());
        assert_eq!(node, Ok("plain".to_string()), "start {start}");
    }
    let s = cluster(vec![
        N::new("db").taint("dedicated", "db", "NoSchedule"),
        N::new("soft").taint("spot", "", "PreferNoSchedule"),
    ]);
    assert_eq!(place(&s, &P::new("p").build()), Ok("soft".into()));
    let tol = P::new("p")
        .spec(
            "tolerations",
            json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]),
        )
        .build();
    assert_eq!(place(&s, &tol), Ok("db".into()));
}

#[test]
fn host_ports_cannot_be_shared() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2")]);
    s.add_pod(&P::new("a").port(8080).on("n1").build());
    assert_eq!(place(&s, &P::new("b").port(8080).build()), Ok("n2".into()));
    s.add_pod(&P::new("c").port(8080).on("n2").build());
    assert_eq!(
        place(&s, &P::new("d").port(8080).build()),
        Err(format!(
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod \
             ports. preemption: 0/2 nodes are available: 2 {NO_VICTIMS}."
        ))
    );
    assert!(place(&s, &P::new("e").port(8081).build()).is_ok());
}

fn anti_affinity(app: &str) -> Value {
    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"app": app}}}]}})
}

#[test]
fn required_anti_affinity_puts_one_replica_per_node() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2")]);
    let replica = |i: usize| {
        P::new(&format!("web-{i}"))
            .label("app", "web")
            .spec("affinity", anti_affinity("web"))
            .build()
    };
    let placed = place_all(&mut s, &[replica(0), replica(1)], &mut 0);
    assert_eq!(placed.values().copied().collect::<Vec<_>>(), vec![1, 1]);
    assert_eq!(
        place(&s, &replica(2)),
        Err(format!(
            "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/2 nodes are available: 2 {NO_VICTIMS}."
        ))
    );
    // Same labels in another namespace are not selected (the term defaults to its own).
    let mut other = P::new("web-x")
        .label("app", "web")
        .spec("affinity", anti_affinity("web"));
    other.0["metadata"]["namespace"] = json!("staging");
    assert!(place(&s, &other.build()).is_ok());
}

#[test]
fn placed_pods_anti_affinity_keeps_newcomers_away() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2")]);
    s.add_pod(
        &P::new("quiet")
            .spec("affinity", anti_affinity("noisy"))
            .on("n1")
            .build(),
    );
    let noisy = P::new("noisy").label("app", "noisy").build();
    for start in 0..2 {
        assert_eq!(
            schedule(&noisy, &s, &mut start.clone()),
            Ok("n2".to_string())
        );
    }
    s.remove_node(&N::new("n2").build());
    assert_eq!(
        place(&s, &noisy),
        Err(format!(
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity \
             rules. preemption: 0/1 nodes are available: 1 {NO_VICTIMS}."
        ))
    );
}

#[test]
fn required_pod_affinity_follows_its_target() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2"), N::new("n3")]);
    let near = |app: &str| {
        json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app": app}}}]}})
    };
    let web = P::new("web")
        .label("app", "web")
        .spec("affinity", near("db"))
        .build();
    assert_eq!(
        place(&s, &web),
        Err(format!(
            "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. preemption: \
             0/3 nodes are available: 3 {NOT_HELPFUL}."
        ))
    );
    // The first pod of a self-affine group may start anywhere.
    let first = P::new("cache-0")
        .label("app", "cache")
        .spec("affinity", near("cache"))
        .build();
    assert!(place(&s, &first).is_ok());
    s.add_pod(&P::new("db").label("app", "db").on("n2").build());
    for start in 0..3 {
        assert_eq!(schedule(&web, &s, &mut start.clone()), Ok("n2".to_string()));
    }
}

fn spread(max_skew: i32, key: &str, when: &str, extra: Value) -> Value {
    let mut c = json!({"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
                       "labelSelector": {"matchLabels": {"app": "web"}}});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    json!([c])
}

#[test]
fn do_not_schedule_spread_keeps_the_skew() {
    let mut s = cluster(vec![
        N::new("n1").label("zone", "a"),
        N::new("n2").label("zone", "b"),
    ]);
    s.add_pod(&P::new("w0").label("app", "web").on("n1").build());
    let pod = |c: Value| {
        P::new("w")
            .label("app", "web")
            .spec("topologySpreadConstraints", c)
    };
    let hard = spread(1, "kubernetes.io/hostname", "DoNotSchedule", json!({}));
    for start in 0..2 {
        let got = schedule(&pod(hard.clone()).build(), &s, &mut start.clone());
        assert_eq!(got, Ok("n2".to_string()));
    }
    // A node the pod's selector excludes is not a domain (nodeAffinityPolicy: Honor).
    let only_a = pod(hard.clone())
        .spec("nodeSelector", json!({"zone": "a"}))
        .build();
    assert_eq!(place(&s, &only_a), Ok("n1".into()));
    // Fewer domains than minDomains: the global minimum counts as 0.
    s.add_pod(&P::new("w1").label("app", "web").on("n2").build());
    let min3 = spread(
        1,
        "kubernetes.io/hostname",
        "DoNotSchedule",
        json!({"minDomains": 3}),
    );
    assert_eq!(
        place(&s, &pod(min3).build()),
        Err(format!(
            "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints. \
             preemption: 0/2 nodes are available: 2 {NO_VICTIMS}."
        ))
    );
    let rack = spread(1, "rack", "DoNotSchedule", json!({}));
    assert_eq!(
        place(&s, &pod(rack).build()),
        Err(format!(
            "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints \
             (missing required label). preemption: 0/2 nodes are available: 2 {NOT_HELPFUL}."
        ))
    );
}

#[test]
fn schedule_anyway_spread_prefers_the_emptier_zone() {
    let mut s = cluster(vec![
        N::new("n1").label("zone", "a"),
        N::new("n2").label("zone", "b"),
        N::new("n3").label("zone", "b"),
    ]);
    s.add_pod(&P::new("w0").label("app", "web").on("n2").build());
    s.add_pod(&P::new("w1").label("app", "web").on("n2").build());
    let soft = spread(1, "zone", "ScheduleAnyway", json!({}));
    let pod = P::new("w")
        .label("app", "web")
        .spec("topologySpreadConstraints", soft)
        .build();
    for start in 0..3 {
        // n1 and n3 are equally empty; only the zone count tells them apart.
        assert_eq!(schedule(&pod, &s, &mut start.clone()), Ok("n1".to_string()));
    }
}

#[test]
fn replicas_of_one_owner_spread_evenly_in_a_burst() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2"), N::new("n3")]);
    let pods: Vec<Pod> = (0..6)
        .map(|i| {
            P::new(&format!("web-{i}"))
                .label("app", "web")
                .owner("rs-web")
                .build()
        })
        .collect();
    let placed = place_all(&mut s, &pods, &mut 0);
    assert_eq!(placed.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);

    // Also with an uneven start: a node already busy with other work.
    let mut s = cluster((0..10).map(|i| N::new(&format!("n{i}"))).collect());
    s.add_pod(&P::new("other").req("cpu", "1").on("n0").build());
    let pods: Vec<Pod> = (0..30)
        .map(|i| P::new(&format!("api-{i}")).owner("rs-api").build())
        .collect();
    let placed = place_all(&mut s, &pods, &mut 7);
    assert_eq!(placed.len(), 10);
    assert!(placed.values().all(|&n| n == 3), "{placed:?}");
}

#[test]
fn scores_prefer_free_nodes_and_preferred_affinity() {
    let mut s = cluster(vec![N::new("busy"), N::new("free")]);
    s.add_pod(
        &P::new("hog")
            .req("cpu", "3")
            .req("memory", "6Gi")
            .on("busy")
            .build(),
    );
    for start in 0..2 {
        let got = schedule(
            &P::new("p").req("cpu", "100m").build(),
            &s,
            &mut start.clone(),
        );
        assert_eq!(got, Ok("free".to_string()));
    }
    let s = cluster(vec![
        N::new("a").label("disk", "hdd"),
        N::new("b").label("disk", "ssd"),
    ]);
    let pref = P::new("p")
        .spec(
            "affinity",
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}),
        )
        .build();
    for start in 0..2 {
        assert_eq!(schedule(&pref, &s, &mut start.clone()), Ok("b".to_string()));
    }
}

#[test]
fn preferred_pod_affinity_and_anti_affinity_steer_placement() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2"), N::new("n3")]);
    s.add_pod(&P::new("cache").label("app", "cache").on("n3").build());
    let term = json!([{"weight": 100, "podAffinityTerm": {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"app": "cache"}}}}]);
    let near = P::new("near")
        .spec(
            "affinity",
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": term}}),
        )
        .build();
    let far = P::new("far")
        .spec(
            "affinity",
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": term}}),
        )
        .build();
    for start in 0..3 {
        assert_eq!(
            schedule(&near, &s, &mut start.clone()),
            Ok("n3".to_string())
        );
        assert_ne!(schedule(&far, &s, &mut start.clone()), Ok("n3".to_string()));
    }
}

#[test]
fn equal_nodes_take_turns() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2"), N::new("n3")]);
    let zero = |i: usize| {
        P::new(&format!("p{i}"))
            .req("cpu", "0")
            .req("memory", "0")
            .build()
    };
    let placed = place_all(&mut s, &[zero(0), zero(1), zero(2)], &mut 0);
    assert_eq!(placed.len(), 3, "{placed:?}");
}

#[test]
fn preemption_policy_never_changes_the_suffix_and_node_name_pins() {
    let s = cluster(vec![N::new("n1").alloc("cpu", "1")]);
    let p = P::new("p")
        .req("cpu", "2")
        .spec("preemptionPolicy", json!("Never"))
        .build();
    assert_eq!(
        place(&s, &p),
        Err(
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to \
             preemptionPolicy=Never."
                .to_string()
        )
    );
    let s = cluster(vec![N::new("n1"), N::new("n2")]);
    assert_eq!(place(&s, &P::new("p").on("n2").build()), Ok("n2".into()));
    assert!(place(&s, &P::new("p").on("n9").build())
        .is_err_and(|e| e.contains("2 node(s) didn't match the requested node name.")));
}

#[test]
fn large_clusters_stop_at_the_adaptive_share_of_nodes() {
    assert_eq!(num_feasible_nodes_to_find(50), 50);
    assert_eq!(num_feasible_nodes_to_find(150), 100);
    assert_eq!(num_feasible_nodes_to_find(1000), 420);
    assert_eq!(num_feasible_nodes_to_find(5000), 500);
    assert_eq!(num_feasible_nodes_to_find(6000), 300);
    let s = cluster((0..1000).map(|i| N::new(&format!("n{i}"))).collect());
    let mut start = 990;
    assert!(schedule(&P::new("p").build(), &s, &mut start).is_ok());
    assert_eq!(start, (990 + 420) % 1000);
}

/// `cargo test --release -- --ignored --nocapture throughput`
#[test]
#[ignore]
fn throughput_10k_pods_on_1k_nodes() {
    let mut s = cluster(
        (0..1000)
            .map(|i| {
                N::new(&format!("node-{i:04}"))
                    .alloc("cpu", "32")
                    .alloc("memory", "128Gi")
            })
            .collect(),
    );
    let pods: Vec<Pod> = (0..10_000)
        .map(|i| {
            P::new(&format!("app{}-{i}", i % 500))
                .label("app", &format!("app{}", i % 500))
                .owner(&format!("rs-{}", i % 500))
                .req("cpu", "100m")
                .req("memory", "128Mi")
                .build()
        })
        .collect();
    let t = Instant::now();
    let placed = place_all(&mut s, &pods, &mut 0);
    let secs = t.elapsed().as_secs_f64();
    let most = placed.values().copied().max().unwrap_or(0);
    println!(
        "scheduled 10000 pods on 1000 nodes in {secs:.3}s: {:.0} pods/s; busiest node {most}",
        10_000.0 / secs
    );
    assert_eq!(placed.values().sum::<usize>(), 10_000);
    assert!(most <= 12, "uneven placement: {most} pods on one node");
}

/// `cargo test --release -- --ignored --nocapture throughput`: every pod carries a
/// hostname spread constraint, so each attempt counts matching pods on every node.
#[test]
#[ignore]
fn throughput_10k_spread_constrained_pods_on_1k_nodes() {
    let mut s = cluster(
        (0..1000)
            .map(|i| {
                N::new(&format!("node-{i:04}"))
                    .alloc("cpu", "32")
                    .alloc("memory", "128Gi")
            })
            .collect(),
    );
    let hard = spread(1, "kubernetes.io/hostname", "DoNotSchedule", json!({}));
    let pods: Vec<(usize, Pod)> = (0..10_000)
        .map(|i| {
            let app = i % 500;
            let mut c = hard.clone();
            c[0]["labelSelector"]["matchLabels"]["app"] = json!(format!("app{app}"));
            let pod = P::new(&format!("app{app}-{i}"))
                .label("app", &format!("app{app}"))
                .owner(&format!("rs-{app}"))
                .req("cpu", "100m")
                .spec("topologySpreadConstraints", c)
                .build();
            (app, pod)
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut start = 0;
    let t = Instant::now();
    for (app, p) in &pods {
        let node = schedule(p, &s, &mut start).expect("schedulable");
        s.assume(p, &node);
        assert!(
            seen.insert((*app, node)),
            "two replicas of app{app} on one node"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "scheduled 10000 spread-constrained pods on 1000 nodes in {secs:.3}s: {:.0} pods/s",
        10_000.0 / secs
    );
}

fn with_claim(p: P, claim: &str) -> P {
    p.spec(
        "volumes",
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]),
    )
}

fn storage_class(
    name: &str,
    mode: &str,
    provisioner: &str,
) -> k8s_openapi::api::storage::v1::StorageClass {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "provisioner": provisioner,
        "volumeBindingMode": mode}),
    )
    .expect("class")
}

fn claim(
    name: &str,
    class: &str,
    extra: Value,
) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    let mut v = json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": "1Gi"}}}});
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(v).expect("claim")
}

fn local_volume(
    name: &str,
    node: &str,
    claim: Option<&str>,
) -> k8s_openapi::api::core::v1::PersistentVolume {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "storageClassName": "manual", "hostPath": {"path": "/x"},
            "claimRef": claim.map(|c| json!({"namespace": "default", "name": c, "uid": "u"})),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}))
    .expect("volume")
}

#[test]
fn pods_with_bound_local_claims_land_on_the_volumes_node() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2"), N::new("n3")]);
    s.upsert_class(&storage_class(
        "manual",
        "WaitForFirstConsumer",
        "kubernetes.io/no-provisioner",
    ));
    s.upsert_claim(&claim("data", "manual", json!({"volumeName": "pv2"})));
    s.upsert_volume(&local_volume("pv2", "n2", Some("data")));
    let p = with_claim(P::new("p"), "data").build();
    for start in 0..3 {
        assert_eq!(
            schedule(&p, &s, &mut start.clone()).map_err(|e| e.to_string()),
            Ok("n2".into())
        );
    }
    // Only n1 has the room, but the volume is on n2.
    s.add_node(&N::new("n1").alloc("cpu", "8").build());
    let crowded = with_claim(P::new("p"), "data").req("cpu", "5").build();
    assert_eq!(
        place(&s, &crowded),
        Err(format!(
            "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 \
             Insufficient cpu. preemption: 0/3 nodes are available: 1 {NOT_HELPFUL}, 2 \
             {NO_VICTIMS}."
        ))
    );
}

#[test]
fn unbound_claims_wait_for_first_consumer_or_block_immediately() {
    let mut s = cluster(vec![N::new("n1"), N::new("n2")]);
    s.upsert_class(&storage_class(
        "local-path",
        "WaitForFirstConsumer",
        "rancher.io/local-path",
    ));
    s.upsert_class(&storage_class("now", "Immediate", "rancher.io/local-path"));
    s.upsert_class(&storage_class(
        "manual",
        "WaitForFirstConsumer",
        "kubernetes.io/no-provisioner",
    ));
    let pod = |c: &str| with_claim(P::new("p"), c).build();

    assert_eq!(
        place(&s, &pod("missing")),
        Err(format!(
            "0/2 nodes are available: persistentvolumeclaim \"missing\" not found. preemption: \
             0/2 nodes are available: 2 {NOT_HELPFUL}."
        ))
    );
    s.upsert_claim(&claim("eager", "now", json!({})));
    assert!(place(&s, &pod("eager"))
        .expect_err("unbound immediate")
        .contains("pod has unbound immediate PersistentVolumeClaims"));

    // A provisioning class: any node, and the claim is promised to the chosen one.
    s.upsert_claim(&claim("lazy", "local-path", json!({})));
    let p = pod("lazy");
    let node = place(&s, &p).expect("fits");
    assert_eq!(
        s.select_claims(&p, &node),
        [("default".to_string(), "lazy".to_string())]
    );
    assert!(s.select_claims(&p, &node).is_empty(), "promised once");
    let other = if node == "n1" { "n2" } else { "n1" };
    for start in 0..2 {
        assert_eq!(
            schedule(&p, &s, &mut start.clone()).map_err(|e| e.to_string()),
            Ok(node.clone()),
            "a promised claim keeps the pod on {node}, not {other}"
        );
    }

    // A class that cannot provision needs a free static volume on the node.
    s.upsert_claim(&claim("static", "manual", json!({})));
    assert!(place(&s, &pod("static"))
        .expect_err("no volume")
        .contains("2 node(s) didn't find available persistent volumes to bind"));
    s.upsert_volume(&local_volume("pv1", "n1", None));
    assert_eq!(place(&s, &pod("static")), Ok("n1".into()));
}
