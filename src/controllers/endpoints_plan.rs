//! What the Endpoints controller decides, without I/O, plus the pod and port rules it
//! shares with the EndpointSlice controller: which Services are managed (a selector, not
//! ExternalName), which pods a Service selects and publishes, how a Service port resolves
//! on a pod (a named `targetPort` becomes that container port), and the desired
//! `Endpoints` object (ready `addresses` vs `notReadyAddresses`, grouped by port set).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::pod_util::is_pod_ready;

/// Label set on the Endpoints and EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Whether the endpoint controllers manage this Service's endpoints: it has a selector
/// and is not ExternalName (selectorless Services' endpoints belong to the user).
pub fn is_managed(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else {
        return false;
    };
    spec.selector.is_some() && spec.type_.as_deref() != Some("ExternalName")
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether `svc` selects `pod` (same namespace, every selector label present).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    if svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ips = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .chain(status.pod_ip.clone());
    ips.into_iter()
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Whether the pod belongs in endpoints at all: not finished, has an address, and (unless
/// `include_terminating`) is not being deleted.
pub fn should_publish(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod)
        && pod_ipv4(pod).is_some()
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod port a Service port reaches: a number as is, a name looked up among the
/// containers' ports with the same protocol. `None` when the name is not found.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// `(name, port, protocol, appProtocol)` of each Service port the pod serves.
pub fn resolved_ports(svc: &Service, pod: &Pod) -> Vec<(String, i32, String, Option<String>)> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| {
                (
                    sp.name.clone().unwrap_or_default(),
                    port,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    sp.app_protocol.clone(),
                )
            })
        })
        .collect()
}

/// The pod's DNS hostname under a headless Service it is the subdomain of.
pub fn hostname_for(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then(|| hostname.clone())
}

pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The labels endpoints objects carry: the Service's own, plus the headless marker.
pub fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The `Endpoints` object `svc` should have, given the pods in its namespace.
pub fn desired_endpoints(svc: &Service, pods: &[&Pod]) -> Endpoints {
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let no_ports = svc
        .spec
        .as_ref()
        .is_none_or(|s| s.ports.as_ref().is_none_or(Vec::is_empty));
    // Port set (as a sortable key) -> (ports, ready, not ready).
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !selects(svc, pod) || !should_publish(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let ports = resolved_ports(svc, pod);
        if ports.is_empty() && !(no_ports && is_headless(svc)) {
            continue;
        }
        let mut ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| EndpointPort {
                name: (!name.is_empty()).then_some(name),
                port,
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let group = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_not_ready || is_pod_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        let ka: Option<std::net::Ipv4Addr> = a.ip.parse().ok();
        let kb: Option<std::net::Ipv4Addr> = b.ip.parse().ok();
        ka.cmp(&kb).then_with(|| a.ip.cmp(&b.ip))
    };
    let subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(endpoint_labels(svc)).filter(|l| !l.is_empty()),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// Whether `current` must be rewritten to match `desired` (subsets or labels differ).
pub fn needs_update(current: &Endpoints, desired: &Endpoints) -> bool {
    let empty = |s: &Option<Vec<EndpointSubset>>| s.as_ref().is_none_or(Vec::is_empty);
    let subsets_differ = if empty(&current.subsets) && empty(&desired.subsets) {
        false
    } else {
        current.subsets != desired.subsets
    };
    let labels = |e: &Endpoints| e.metadata.labels.clone().unwrap_or_default();
    subsets_differ || labels(current) != labels(desired)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .expect("service")
    }

    pub fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx",
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        crate::controllers::endpoints_plan::tests::merge(&mut v, extra);
        serde_json::from_value(v).expect("pod")
    }

    pub fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn ips(addrs: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        addrs.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_target_port() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}),
        );
        let a = pod("a", "10.42.0.5", true, json!({}));
        let b = pod("b", "10.42.0.4", false, json!({}));
        let other = pod(
            "c",
            "10.42.0.6",
            true,
            json!({"metadata": {"labels": {"app": "db"}}}),
        );
        let no_ip = pod(
            "d",
            "",
            true,
            json!({"status": {"podIP": null, "podIPs": null}}),
        );
        let ep = desired_endpoints(&svc, &[&a, &b, &other, &no_ip]);
        let subsets = ep.subsets.expect("one subset");
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), vec!["10.42.0.5"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.42.0.4"]);
        let ports = subsets[0].ports.clone().unwrap();
        assert_eq!(ports[0].port, 8080);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        let addr = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(addr.node_name.as_deref(), Some("node-1"));
        let target = addr.target_ref.as_ref().unwrap();
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Pod"), Some("a"))
        );
        assert_eq!(
            ep.metadata.labels.unwrap().get("app").map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn publish_not_ready_terminating_and_finished_pods() {
        let svc = service(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
        );
        let unready = pod("a", "10.42.0.5", false, json!({}));
        let done = pod(
            "b",
            "10.42.0.6",
            true,
            json!({"status": {"phase": "Succeeded"}}),
        );
        let ep = desired_endpoints(&svc, &[&unready, &done]);
        let subsets = ep.subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses), vec!["10.42.0.5"]);
        assert!(subsets[0].not_ready_addresses.is_none());
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 80);

        let plain = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let terminating = pod(
            "c",
            "10.42.0.7",
            true,
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        assert!(desired_endpoints(&plain, &[&terminating]).subsets.is_none());
    }

    #[test]
    fn unresolvable_port_name_and_headless_without_ports() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "missing"}]}),
        );
        let a = pod("a", "10.42.0.5", true, json!({}));
        assert!(desired_endpoints(&svc, &[&a]).subsets.is_none());
        let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let ep = desired_endpoints(&headless, &[&a]);
        assert_eq!(ips(&ep.subsets.unwrap()[0].addresses), vec!["10.42.0.5"]);
        assert!(ep.metadata.labels.unwrap().contains_key(HEADLESS_LABEL));
    }

    #[test]
    fn pods_with_different_ports_get_separate_subsets() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
        );
        let a = pod("a", "10.42.0.5", true, json!({}));
        let mut b = pod("b", "10.42.0.6", true, json!({}));
        if let Some(spec) = b.spec.as_mut() {
            spec.containers[0].ports.as_mut().unwrap()[0].container_port = 9090;
        }
        let subsets = desired_endpoints(&svc, &[&a, &b]).subsets.unwrap();
        assert_eq!(subsets.len(), 2);
    }

    #[test]
    fn managed_services() {
        assert!(is_managed(&service(json!({"selector": {"app": "web"}}))));
        assert!(!is_managed(&service(json!({"ports": [{"port": 443}]}))));
        assert!(!is_managed(&service(
            json!({"type": "ExternalName", "externalName": "x.example", "selector": {"app": "web"}})
        )));
    }

    #[test]
    fn update_only_on_change() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let a = pod("a", "10.42.0.5", true, json!({}));
        let desired = desired_endpoints(&svc, &[&a]);
        assert!(!needs_update(&desired.clone(), &desired));
        let empty = Endpoints::default();
        assert!(needs_update(&empty, &desired));
    }
}
