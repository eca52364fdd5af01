//! kube-scheduler's VolumeBinding plugin, for the claims a pod's volumes name:
//!
//! * pre-filter: a missing or terminating claim, or an unbound claim of an `Immediate`
//!   class, rejects the pod before any node is looked at (upstream's wording);
//! * filter: a bound claim's volume must accept the node (`nodeAffinity`; "node(s) had
//!   volume node affinity conflict"); an unbound `WaitForFirstConsumer` claim needs a
//!   free static volume that accepts the node when its class cannot provision
//!   (`kubernetes.io/no-provisioner`), otherwise any node will do: the volume is made
//!   where the pod goes. A claim already promised to a node (`selected-node`) keeps the
//!   pod on that node;
//! * after the choice, [`claims_to_select`] names the claims the scheduler annotates with
//!   `volume.kubernetes.io/selected-node` before binding the pod, which is what the
//!   PersistentVolume controller provisions or binds on.
//!
//! The loop then waits a little (10 s at most, upstream waits 10 min) for those claims
//! to be bound before binding the pod; past that the kubelet waits (`FailedMount`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::filter::Failure;
use super::snapshot::NodeInfo;
use crate::apimachinery::storage as st;

/// Claims, volumes and classes as the scheduler's watches last showed them.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    /// By `namespace/name`.
    pub(crate) claims: HashMap<String, PersistentVolumeClaim>,
    pub(crate) volumes: HashMap<String, PersistentVolume>,
    pub(crate) classes: HashMap<String, StorageClass>,
}

/// The provisioner name of classes whose volumes are only ever made by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// What the filter checks on every node for one pod.
#[derive(Debug, Default)]
pub(crate) struct FilterState<'a> {
    /// Volumes of the pod's bound claims.
    bound: Vec<&'a PersistentVolume>,
    /// Unbound claims that only a static volume can serve.
    static_only: Vec<&'a PersistentVolumeClaim>,
    /// Nodes already chosen for unbound claims.
    selected: Vec<&'a str>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn is_wait_for_first_consumer(storage: &Storage, pvc: &PersistentVolumeClaim) -> bool {
    storage
        .classes
        .get(st::claim_class(pvc))
        .and_then(|c| c.volume_binding_mode.as_deref())
        .is_some_and(|m| m == st::WAIT_FOR_FIRST_CONSUMER)
}

fn bound_volume(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// The pre-filter: `Ok(None)` when the pod names no claims, the per-node state
/// otherwise, or the reason no node can take the pod.
pub(crate) fn compute<'a>(
    pod: &Pod,
    storage: &'a Storage,
) -> Result<Option<FilterState<'a>>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut state = FilterState::default();
    let mut any = false;
    for (claim, _) in st::pod_claims(pod) {
        any = true;
        let pvc = storage
            .claims
            .get(&key(ns, claim))
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "persistentvolumeclaim \"{claim}\" is being deleted"
            ));
        }
        match bound_volume(pvc) {
            Some(v) => {
                match storage.volumes.get(v) {
                    Some(pv) => state.bound.push(pv),
                    None => return Err(
                        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                            .into(),
                    ),
                }
            }
            None if !is_wait_for_first_consumer(storage, pvc) => {
                return Err("pod has unbound immediate PersistentVolumeClaims".into())
            }
            None => {
                if let Some(node) = pvc
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(st::SELECTED_NODE_ANNOTATION))
                {
                    state.selected.push(node);
                }
                let provisioner = storage
                    .classes
                    .get(st::claim_class(pvc))
                    .map(|c| c.provisioner.as_str());
                if provisioner == Some(NO_PROVISIONER) {
                    state.static_only.push(pvc);
                }
            }
        }
    }
    Ok(any.then_some(state))
}

impl FilterState<'_> {
    pub(crate) fn check(&self, storage: &Storage, node: &NodeInfo) -> Result<(), Failure> {
        let conflict = self
            .bound
            .iter()
            .any(|pv| !st::volume_node_matches(pv, &node.name, &node.labels))
            || self.selected.iter().any(|n| *n != node.name);
        if conflict {
            return Err(Failure::VolumeNodeAffinity);
        }
        for pvc in &self.static_only {
            let found = storage.volumes.values().any(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_none()
                    && st::volume_fits_claim(pv, pvc)
                    && st::volume_node_matches(pv, &node.name, &node.labels)
            });
            if !found {
                return Err(Failure::VolumeBind);
            }
        }
        Ok(())
    }
}

/// The pod's unbound `WaitForFirstConsumer` claims not yet promised to a node, as
/// (namespace, name): the scheduler annotates them with the node it chose.
pub(crate) fn claims_to_select(pod: &Pod, storage: &Storage) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    st::pod_claims(pod)
        .filter_map(|(claim, _)| {
            let pvc = storage.claims.get(&key(ns, claim))?;
            let selected = pvc
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(st::SELECTED_NODE_ANNOTATION));
            (bound_volume(pvc).is_none() && !selected && is_wait_for_first_consumer(storage, pvc))
                .then(|| (ns.to_string(), claim.to_string()))
        })
        .collect()
}

/// Remember that `claims` were promised to `node` (until the watch shows it).
pub(crate) fn assume_selected(storage: &mut Storage, claims: &[(String, String)], node: &str) {
    for (ns, name) in claims {
        if let Some(pvc) = storage.claims.get_mut(&key(ns, name)) {
            pvc.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(st::SELECTED_NODE_ANNOTATION.into(), node.into());
        }
    }
}
