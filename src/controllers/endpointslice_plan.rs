//! What the EndpointSlice controller decides, without I/O: the slices a Service with a
//! selector should have (one address type, IPv4; endpoints grouped by the ports they
//! resolve to, at most [`MAX_ENDPOINTS_PER_SLICE`] per slice; a placeholder slice when
//! nothing is selected), and how to get there from the slices it already manages
//! (update in place, create with `generateName: <service>-`, delete the rest).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::endpoints_plan::{
    endpoint_labels, hostname_for, pod_ipv4, pod_reference, resolved_ports, selects, should_publish,
};
use crate::controllers::pod_util::is_pod_ready;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// kube-controller-manager's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What one sync should write.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether `slice` is one this controller manages for `service` (by labels).
pub fn managed_for(slice: &EndpointSlice, service: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get(SERVICE_NAME_LABEL) == Some(service) && get(MANAGED_BY_LABEL) == Some(CONTROLLER_NAME)
}

fn owner_reference(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(svc);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

fn endpoint_for(svc: &Service, pod: &Pod, ip: String) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            // A terminating pod is never ready, unless not-ready addresses are published.
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(svc, pod),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pod_reference(pod)),
        ..Default::default()
    }
}

/// Endpoints grouped by their port set: the ports, and (sort key, endpoint) pairs.
type PortGroup = (Vec<EndpointPort>, Vec<(String, Endpoint)>);

/// The slices' content `svc` should have: per port set, its endpoints in chunks.
/// Each entry is (ports, endpoints); an empty result means the placeholder slice.
pub fn desired_groups(svc: &Service, pods: &[&Pod]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, PortGroup> = BTreeMap::new();
    for pod in pods {
        if !selects(svc, pod) || !should_publish(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut ports: Vec<EndpointPort> = resolved_ports(svc, pod)
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| EndpointPort {
                name: Some(name),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push((name, endpoint_for(svc, pod, ip)));
    }
    let mut out = Vec::new();
    for (_, (ports, mut endpoints)) in groups {
        endpoints.sort_by(|a, b| a.0.cmp(&b.0));
        let endpoints: Vec<Endpoint> = endpoints.into_iter().map(|(_, e)| e).collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

fn ports_key(ports: &Option<Vec<EndpointPort>>) -> String {
    serde_json::to_string(&ports.clone().unwrap_or_default()).unwrap_or_default()
}

/// Plan the writes that turn `existing` (this Service's managed slices) into the desired
/// slices for `svc` and `pods`.
pub fn plan_slices(svc: &Service, pods: &[&Pod], existing: &[EndpointSlice]) -> SlicePlan {
    let service_name = svc.metadata.name.clone().unwrap_or_default();
    let labels = slice_labels(svc);
    let owner = owner_reference(svc);
    let mut desired = desired_groups(svc, pods);
    if desired.is_empty() {
        // The placeholder: a Service always has at least one slice.
        desired.push((Vec::new(), Vec::new()));
    }
    // Existing slices by port set, oldest names first for stability.
    let mut pool: HashMap<String, Vec<&EndpointSlice>> = HashMap::new();
    let mut sorted: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| managed_for(s, &service_name) && s.metadata.deletion_timestamp.is_none())
        .collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        pool.entry(ports_key(&s.ports)).or_default().push(s);
    }
    for v in pool.values_mut() {
        v.reverse();
    }
    let mut plan = SlicePlan::default();
    for (ports, endpoints) in desired {
        let ports = (!ports.is_empty()).then_some(ports);
        let key = ports_key(&ports);
        match pool.get_mut(&key).and_then(Vec::pop) {
            Some(current) => {
                let has_owner = current
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == owner.uid && r.controller == Some(true));
                let current_labels = current.metadata.labels.clone().unwrap_or_default();
                if current.endpoints != endpoints
                    || current.address_type != "IPv4"
                    || current_labels != labels
                    || !has_owner
                {
                    let mut next = current.clone();
                    next.endpoints = endpoints;
                    next.address_type = "IPv4".into();
                    next.metadata.labels = Some(labels.clone());
                    if !has_owner {
                        next.metadata
                            .owner_references
                            .get_or_insert_with(Vec::new)
                            .push(owner.clone());
                    }
                    plan.update.push(next);
                }
            }
            None => plan.create.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{service_name}-")),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports,
            }),
        }
    }
    let mut leftovers: Vec<String> = pool
        .into_values()
        .flatten()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    leftovers.sort();
    plan.delete = leftovers;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints_plan::tests::{pod, service};
    use serde_json::json;

    fn web() -> Service {
        service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}),
        )
    }

    fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    }

    #[test]
    fn new_service_gets_one_slice_with_labels_owner_and_conditions() {
        let a = pod("a", "10.42.0.5", true, json!({}));
        let b = pod("b", "10.42.0.6", false, json!({}));
        let c = pod(
            "c",
            "10.42.0.7",
            true,
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        let plan = plan_slices(&web(), &[&a, &b, &c], &[]);
        assert_eq!(plan.create.len(), 1);
        let s = &plan.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        assert_eq!(s.address_type, "IPv4");
        let ports = s.ports.clone().unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), Some(8080))
        );
        assert_eq!(s.endpoints.len(), 3);
        assert_eq!(
            conditions(&s.endpoints[0]),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(
            conditions(&s.endpoints[1]),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(
            conditions(&s.endpoints[2]),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("node-1"));
        assert_eq!(
            s.endpoints[0]
                .target_ref
                .as_ref()
                .and_then(|r| r.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn no_pods_gives_a_placeholder_and_steady_state_writes_nothing() {
        let plan = plan_slices(&web(), &[], &[]);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].ports.is_none() && plan.create[0].endpoints.is_empty());
        let mut existing = plan.create[0].clone();
        existing.metadata.name = Some("web-abcde".into());
        assert!(plan_slices(&web(), &[], &[existing.clone()]).is_empty());
        // A pod appears: the placeholder cannot hold its ports, so it is replaced.
        let a = pod("a", "10.42.0.5", true, json!({}));
        let plan = plan_slices(&web(), &[&a], &[existing]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.delete, vec!["web-abcde".to_string()]);
    }

    #[test]
    fn readiness_change_updates_in_place() {
        let a = pod("a", "10.42.0.5", true, json!({}));
        let mut slice = plan_slices(&web(), &[&a], &[]).create.remove(0);
        slice.metadata.name = Some("web-xyz12".into());
        assert!(plan_slices(&web(), &[&a], &[slice.clone()]).is_empty());
        let unready = pod("a", "10.42.0.5", false, json!({}));
        let plan = plan_slices(&web(), &[&unready], &[slice]);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].metadata.name.as_deref(), Some("web-xyz12"));
        assert_eq!(conditions(&plan.update[0].endpoints[0]).0, Some(false));
    }

    #[test]
    fn more_than_a_hundred_endpoints_are_split() {
        let pods: Vec<Pod> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.42.1.{}", i % 250),
                    true,
                    json!({}),
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan_slices(&web(), &refs, &[]);
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 50]);
    }

    #[test]
    fn slices_of_other_services_or_controllers_are_left_alone() {
        let mut foreign = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-manual".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_string(),
                    "web".to_string(),
                )])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![],
            ports: None,
        };
        let plan = plan_slices(&web(), &[], &[foreign.clone()]);
        assert!(plan.delete.is_empty());
        foreign.metadata.labels = None;
        assert!(!managed_for(&foreign, "web"));
    }
}
