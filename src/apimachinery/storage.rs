//! What the storage pieces (the PersistentVolume controller, the scheduler's volume
//! filter, the kubelet's claim volumes, the local-path reclaimer) share about claims,
//! volumes and classes: the well-known names and annotations, a claim's class and size,
//! whether a volume can serve a claim, a volume's node affinity, and where the built-in
//! local-path provisioner keeps a volume. Pure functions on typed objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;

use super::quantity::parse_quantity;

/// The provisioner name of skiff's built-in local-path provisioner (k3s's name).
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// The StorageClass every server creates at start (the default class).
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Marks the cluster's default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling, still honoured by kube's DefaultStorageClass admission.
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta claim annotation naming a class (wins over `spec.storageClassName`).
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node the scheduler chose for a WaitForFirstConsumer claim.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Which provisioner made a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Which provisioner is asked to provision a claim.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a claim once its binding is complete.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume the controller (not the user) bound.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Keeps a claim while pods use it (kube's StorageObjectInUseProtection).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The node label local volumes are pinned with.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// `volumeBindingMode` that waits for a pod before binding.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// A claim's class: the beta annotation if set, else `spec.storageClassName`; `""`
/// means "no class".
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    if let Some(c) = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
    {
        return c;
    }
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// A volume's class (`""` for none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i128> {
    let q = parse_quantity(&q?.0).ok()?;
    Some((q.nano + 999_999_999) / 1_000_000_000)
}

/// The storage a claim requests, in bytes.
pub fn requested_bytes(pvc: &PersistentVolumeClaim) -> Option<i128> {
    bytes(
        pvc.spec
            .as_ref()?
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage"),
    )
}

/// The storage a volume offers, in bytes.
pub fn capacity_bytes(pv: &PersistentVolume) -> Option<i128> {
    bytes(pv.spec.as_ref()?.capacity.as_ref()?.get("storage"))
}

fn claim_volume_mode(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_mode(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

/// Whether `pv`'s `claimRef` names `pvc` (namespace and name, and the uid when the
/// reference carries one; a reference without uid is a user's pre-binding).
pub fn claim_ref_matches(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.namespace == pvc.metadata.namespace
        && r.name == pvc.metadata.name
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == pvc.metadata.uid.as_deref())
}

/// Whether `pv` could serve `pvc` (kube's `FindMatchingVolume` checks, node aside): same
/// class, enough capacity, every requested access mode, the same volume mode, and the
/// claim's selector (if any) accepts the volume's labels. Claim references are not
/// looked at here.
pub fn volume_fits_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    if pv.metadata.deletion_timestamp.is_some() || volume_class(pv) != claim_class(pvc) {
        return false;
    }
    match (capacity_bytes(pv), requested_bytes(pvc)) {
        (Some(have), Some(want)) if have >= want => {}
        _ => return false,
    }
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    let wanted = pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    if !wanted.iter().all(|m| offered.contains(m)) || volume_mode(pv) != claim_volume_mode(pvc) {
        return false;
    }
    match pvc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) => super::labels::matches(sel, pv.metadata.labels.as_ref()),
        None => true,
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => match (
            values.first().and_then(|b| number(b)),
            value.and_then(number),
        ) {
            (Some(bound), Some(v)) if req.operator == "Gt" => v > bound,
            (Some(bound), Some(v)) => v < bound,
            _ => false,
        },
        _ => false,
    }
}

/// Whether a node selector accepts the node `name` with `labels`: terms are ORed,
/// requirements within a term ANDed, an empty term matches nothing; `matchFields` know
/// `metadata.name` only.
pub fn node_selector_matches(
    sel: &NodeSelector,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs
                .iter()
                .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                let actual = (r.key == "metadata.name").then_some(name);
                requirement_matches(r, actual)
            })
    })
}

/// Whether a volume may be used on the node `name` (its `nodeAffinity.required`; none
/// means anywhere).
pub fn volume_node_matches(
    pv: &PersistentVolume,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|sel| node_selector_matches(sel, name, labels))
}

/// Whether a class is marked as the default.
pub fn is_default_class(sc: &StorageClass) -> bool {
    sc.metadata.annotations.as_ref().is_some_and(|a| {
        [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
            .iter()
            .any(|k| a.get(*k).map(String::as_str) == Some("true"))
    })
}

/// The folder name of a local-path volume under the storage dir (k3s's
/// `<pv>_<namespace>_<claim>`).
pub fn local_path_dir_name(pv: &str, namespace: &str, claim: &str) -> String {
    format!("{pv}_{namespace}_{claim}")
}

/// The name the provisioner gives the volume of a claim (`pvc-<claim uid>`, as kube's
/// provisioning controller names them).
pub fn provisioned_volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The claims a pod's volumes name, with their `readOnly`.
pub fn pod_claims(pod: &Pod) -> impl Iterator<Item = (&str, bool)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| (c.claim_name.as_str(), c.read_only.unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "c-1"},
            "spec": spec,
        }))
        .expect("pvc")
    }

    fn pv(spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(
            json!({"metadata": {"name": "pv1", "labels": {"tier": "fast"}}, "spec": spec}),
        )
        .expect("pv")
    }

    #[test]
    fn volumes_fit_claims_by_class_size_modes_and_selector() {
        let claim = pvc(
            json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
            "resources": {"requests": {"storage": "1Gi"}}}),
        );
        let base = json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "manual",
            "capacity": {"storage": "2Gi"}, "hostPath": {"path": "/x"}});
        assert!(volume_fits_claim(&pv(base.clone()), &claim));
        let mut small = base.clone();
        small["capacity"]["storage"] = json!("512Mi");
        assert!(!volume_fits_claim(&pv(small), &claim), "too small");
        let mut exact = base.clone();
        exact["capacity"]["storage"] = json!("1073741824");
        assert!(
            volume_fits_claim(&pv(exact), &claim),
            "1Gi in bytes is enough"
        );
        let mut other_class = base.clone();
        other_class["storageClassName"] = json!("local-path");
        assert!(!volume_fits_claim(&pv(other_class), &claim));
        let mut rwx_only = base.clone();
        rwx_only["accessModes"] = json!(["ReadWriteMany"]);
        assert!(!volume_fits_claim(&pv(rwx_only), &claim), "modes");
        let mut block = base.clone();
        block["volumeMode"] = json!("Block");
        assert!(!volume_fits_claim(&pv(block), &claim), "volume mode");
        let picky = pvc(
            json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
            "resources": {"requests": {"storage": "1Gi"}}, "selector": {"matchLabels": {"tier": "slow"}}}),
        );
        assert!(!volume_fits_claim(&pv(base), &picky), "selector");
        let classless = pvc(
            json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}}}),
        );
        let plain = pv(
            json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/x"}}),
        );
        assert!(
            volume_fits_claim(&plain, &classless),
            "no class on either side"
        );
    }

    #[test]
    fn claim_refs_match_by_name_and_uid_when_given() {
        let claim = pvc(json!({}));
        let with = |r: serde_json::Value| pv(json!({"claimRef": r}));
        assert!(claim_ref_matches(
            &with(json!({"namespace": "shop", "name": "data", "uid": "c-1"})),
            &claim
        ));
        assert!(claim_ref_matches(
            &with(json!({"namespace": "shop", "name": "data"})),
            &claim
        ));
        assert!(!claim_ref_matches(
            &with(json!({"namespace": "shop", "name": "data", "uid": "old"})),
            &claim
        ));
        assert!(!claim_ref_matches(
            &with(json!({"namespace": "other", "name": "data"})),
            &claim
        ));
        assert!(!claim_ref_matches(&pv(json!({})), &claim));
    }

    #[test]
    fn node_affinity_of_volumes() {
        let pinned = pv(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}}));
        let labels = |n: &str| BTreeMap::from([(HOSTNAME_LABEL.to_string(), n.to_string())]);
        assert!(volume_node_matches(&pinned, "n1", &labels("n1")));
        assert!(!volume_node_matches(&pinned, "n2", &labels("n2")));
        let by_field = pv(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}));
        assert!(volume_node_matches(&by_field, "n2", &BTreeMap::new()));
        assert!(!volume_node_matches(&by_field, "n1", &BTreeMap::new()));
        let empty_term = pv(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{}]}}}));
        assert!(!volume_node_matches(&empty_term, "n1", &labels("n1")));
        assert!(volume_node_matches(&pv(json!({})), "any", &BTreeMap::new()));
    }

    #[test]
    fn names_and_classes() {
        assert_eq!(
            local_path_dir_name("pvc-1234", "shop", "data"),
            "pvc-1234_shop_data"
        );
        assert_eq!(provisioned_volume_name("abc"), "pvc-abc");
        let mut claim = pvc(json!({"storageClassName": "fast"}));
        assert_eq!(claim_class(&claim), "fast");
        claim.metadata.annotations = Some(BTreeMap::from([(
            BETA_CLASS_ANNOTATION.to_string(),
            "beta".to_string(),
        )]));
        assert_eq!(claim_class(&claim), "beta");
        assert_eq!(
            requested_bytes(&pvc(json!({"resources": {"requests": {"storage": "1Ki"}}}))),
            Some(1024)
        );
        let sc: StorageClass = serde_json::from_value(json!({"metadata": {"name": "local-path",
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}, "provisioner": LOCAL_PATH_PROVISIONER}))
        .expect("sc");
        assert!(is_default_class(&sc));
    }
}
