//! Decisions of the PersistentVolume controller (kube's `persistentvolume` binder plus
//! k3s's local-path provisioner), from one look at every claim, volume, class and node:
//!
//! * volumes: no `claimRef` → `Available`; bound to an existing claim (same uid) →
//!   `Bound`; their claim gone → `Released` (the node's agent then deletes released
//!   local-path volumes with reclaim policy `Delete`, directory and object);
//! * unbound claims: a volume that already names the claim is bound to it; otherwise the
//!   smallest fitting `Available` volume of the claim's class (on the selected node for
//!   `WaitForFirstConsumer`), else provisioning: for `local-path` a `hostPath` volume
//!   under the storage dir, pinned to the node the scheduler chose
//!   (`volume.kubernetes.io/selected-node`); a `WaitForFirstConsumer` claim without a
//!   chosen node waits;
//! * bound claims: `status.phase: Bound` with the volume's capacity and access modes;
//!   their volume gone → `Lost`;
//! * terminating claims: the `kubernetes.io/pvc-protection` finalizer comes off once no
//!   running pod uses the claim.
//!
//! Writes are separate steps (volume `claimRef`, then claim `volumeName`, then the
//! statuses) as in kube; each pass plans from what the caches show, so a step that lost
//! a race is simply planned again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::apimachinery::storage::{
    self as st, claim_class, claim_ref_matches, volume_fits_claim, volume_node_matches,
};

/// What the controller sees.
pub struct World<'a> {
    pub claims: &'a [PersistentVolumeClaim],
    pub volumes: &'a [PersistentVolume],
    pub classes: &'a [StorageClass],
    /// Node name → labels.
    pub nodes: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// `namespace/claim` of the claims that pods not yet finished use.
    pub claims_in_use: &'a HashSet<String>,
    /// Where local-path volumes live on the nodes.
    pub storage_dir: &'a Path,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Claim { namespace: String, name: String },
    Volume(String),
}

/// One step for the loop to carry out. Steps of one claim or volume (same [`Action::key`])
/// stop at the first that fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a provisioned volume.
    Provision(Box<PersistentVolume>),
    /// Point a volume's `claimRef` at a claim (`resource_version`: the volume's, as
    /// cached, so two claims can never take one volume).
    BindVolume {
        volume: String,
        resource_version: Option<String>,
        claim_ref: ObjectReference,
    },
    /// Set a claim's `volumeName` and binding annotations.
    BindClaim {
        namespace: String,
        name: String,
        resource_version: Option<String>,
        volume: String,
        by_controller: bool,
    },
    /// Annotate a claim with the provisioner asked to provision it.
    AnnotateProvisioner {
        namespace: String,
        name: String,
        provisioner: String,
    },
    VolumePhase {
        volume: String,
        phase: &'static str,
    },
    /// A claim's status: phase, and for `Bound` the volume's capacity and access modes.
    ClaimStatus {
        namespace: String,
        name: String,
        phase: &'static str,
        capacity: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
        access_modes: Option<Vec<String>>,
    },
    /// Drop `kubernetes.io/pvc-protection` from a terminating claim.
    ReleaseClaimFinalizer {
        namespace: String,
        name: String,
        resource_version: Option<String>,
        finalizers: Vec<String>,
    },
    Event {
        subject: Subject,
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

impl Action {
    /// The object the step is about (claims as `ns/name`, volumes as `pv/name`).
    pub fn key(&self) -> String {
        let claim = |ns: &str, n: &str| format!("{ns}/{n}");
        match self {
            Action::Provision(pv) => pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .map(|r| {
                    claim(
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or(""),
                    )
                })
                .unwrap_or_default(),
            Action::BindVolume { claim_ref: r, .. } => claim(
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or(""),
            ),
            Action::BindClaim {
                namespace, name, ..
            }
            | Action::AnnotateProvisioner {
                namespace, name, ..
            }
            | Action::ClaimStatus {
                namespace, name, ..
            }
            | Action::ReleaseClaimFinalizer {
                namespace, name, ..
            } => claim(namespace, name),
            Action::VolumePhase { volume, .. } => format!("pv/{volume}"),
            Action::Event { subject, .. } => match subject {
                Subject::Claim { namespace, name } => claim(namespace, name),
                Subject::Volume(v) => format!("pv/{v}"),
            },
        }
    }
}

fn ns_name(pvc: &PersistentVolumeClaim) -> (String, String) {
    (
        pvc.metadata.namespace.clone().unwrap_or_default(),
        pvc.metadata.name.clone().unwrap_or_default(),
    )
}

fn claim_event(
    pvc: &PersistentVolumeClaim,
    warning: bool,
    reason: &'static str,
    message: String,
) -> Action {
    let (namespace, name) = ns_name(pvc);
    Action::Event {
        subject: Subject::Claim { namespace, name },
        warning,
        reason,
        message,
    }
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn claim_reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: pvc.metadata.namespace.clone(),
        name: pvc.metadata.name.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Everything to do now.
pub fn plan(world: &World) -> Vec<Action> {
    let mut out = Vec::new();
    let claim_by_name: BTreeMap<(String, String), &PersistentVolumeClaim> =
        world.claims.iter().map(|c| (ns_name(c), c)).collect();

    // Volumes.
    for pv in world.volumes {
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        let phase = volume_phase(pv);
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let wanted = match claim_ref {
            None => "Available",
            Some(r) => {
                let key = (
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                );
                let pre_bound = r.uid.as_deref().is_none_or(str::is_empty);
                match claim_by_name.get(&key) {
                    _ if pre_bound => "Available",
                    Some(c) if c.metadata.uid == r.uid => "Bound",
                    // The claim is gone (or is another claim of the same name now).
                    _ if phase == "Failed" => "Failed",
                    _ => "Released",
                }
            }
        };
        if phase != wanted {
            out.push(Action::VolumePhase {
                volume: name,
                phase: wanted,
            });
        }
    }

    // Claims, oldest first (kube binds in the order the claims come).
    let mut claims: Vec<&PersistentVolumeClaim> = world.claims.iter().collect();
    claims.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &a.metadata.name,
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &b.metadata.name,
            ))
    });
    // Volumes taken by an earlier claim of this pass.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for pvc in claims {
        let (namespace, name) = ns_name(pvc);
        if pvc.metadata.deletion_timestamp.is_some() {
            let finalizers = pvc.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == st::PVC_PROTECTION_FINALIZER)
                && !world.claims_in_use.contains(&format!("{namespace}/{name}"))
            {
                out.push(Action::ReleaseClaimFinalizer {
                    namespace,
                    name,
                    resource_version: pvc.metadata.resource_version.clone(),
                    finalizers: finalizers
                        .into_iter()
                        .filter(|f| f != st::PVC_PROTECTION_FINALIZER)
                        .collect(),
                });
            }
            continue;
        }
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty());
        match volume_name {
            Some(v) => plan_bound_claim(world, pvc, v, &mut out),
            None => plan_unbound_claim(world, pvc, &mut taken, &mut out),
        }
    }
    out
}

/// A claim that names its volume: bind the volume to it if it is still free, then
/// report `Bound`; a volume that vanished makes the claim `Lost`.
fn plan_bound_claim(
    world: &World,
    pvc: &PersistentVolumeClaim,
    volume: &str,
    out: &mut Vec<Action>,
) {
    let (namespace, name) = ns_name(pvc);
    let Some(pv) = world
        .volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(volume))
    else {
        if claim_phase(pvc) == "Bound" {
            out.push(Action::ClaimStatus {
                namespace,
                name,
                phase: "Lost",
                capacity: None,
                access_modes: None,
            });
            out.push(claim_event(
                pvc,
                true,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
            ));
        }
        return;
    };
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let ours = claim_ref.is_some_and(|r| r.uid.is_some() && r.uid == pvc.metadata.uid);
    if !ours {
        let free = claim_ref.is_none() || claim_ref_matches(pv, pvc);
        if free && volume_fits_claim(pv, pvc) {
            out.push(Action::BindVolume {
                volume: volume.to_string(),
                resource_version: pv.metadata.resource_version.clone(),
                claim_ref: claim_reference(pvc),
            });
        } else if free {
            out.push(claim_event(
                pvc,
                true,
                "VolumeMismatch",
                "Cannot bind to requested volume: the volume does not fit the claim (class, size, access modes or volume mode)".into(),
            ));
            return;
        } else {
            out.push(claim_event(
                pvc,
                true,
                "FailedBinding",
                format!("volume \"{volume}\" already bound to a different claim."),
            ));
            return;
        }
    }
    let spec = pv.spec.as_ref();
    let capacity = spec.and_then(|s| s.capacity.clone());
    let access_modes = spec.and_then(|s| s.access_modes.clone());
    let status = pvc.status.as_ref();
    let reported = claim_phase(pvc) == "Bound"
        && status.and_then(|s| s.capacity.as_ref()) == capacity.as_ref()
        && status.and_then(|s| s.access_modes.as_ref()) == access_modes.as_ref();
    if !reported {
        out.push(Action::ClaimStatus {
            namespace,
            name,
            phase: "Bound",
            capacity,
            access_modes,
        });
    }
}

fn plan_unbound_claim(
    world: &World,
    pvc: &PersistentVolumeClaim,
    taken: &mut BTreeSet<String>,
    out: &mut Vec<Action>,
) {
    let (namespace, name) = ns_name(pvc);
    // A volume already pointing at this claim (provisioned for it, or pre-bound by a user).
    if let Some(pv) = world
        .volumes
        .iter()
        .find(|v| v.metadata.deletion_timestamp.is_none() && claim_ref_matches(v, pvc))
    {
        let volume = pv.metadata.name.clone().unwrap_or_default();
        let needs_uid = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.as_deref().is_none_or(str::is_empty));
        if needs_uid {
            if !volume_fits_claim(pv, pvc) {
                return;
            }
            out.push(Action::BindVolume {
                volume: volume.clone(),
                resource_version: pv.metadata.resource_version.clone(),
                claim_ref: claim_reference(pvc),
            });
        }
        taken.insert(volume.clone());
        out.push(Action::BindClaim {
            namespace,
            name,
            resource_version: pvc.metadata.resource_version.clone(),
            volume,
            by_controller: needs_uid,
        });
        return;
    }

    let class_name = claim_class(pvc);
    let class = world
        .classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name));
    let wait_for_consumer = class
        .and_then(|c| c.volume_binding_mode.as_deref())
        .is_some_and(|m| m == st::WAIT_FOR_FIRST_CONSUMER);
    let selected = annotation(&pvc.metadata, st::SELECTED_NODE_ANNOTATION);
    if wait_for_consumer && selected.is_none() {
        out.push(claim_event(
            pvc,
            false,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ));
        return;
    }

    // A free static volume: the smallest that fits (and suits the chosen node).
    let no_labels = BTreeMap::new();
    let node_fits = |pv: &PersistentVolume| match selected {
        Some(node) if wait_for_consumer => {
            volume_node_matches(pv, node, world.nodes.get(node).unwrap_or(&no_labels))
        }
        _ => true,
    };
    let best = world
        .volumes
        .iter()
        .filter(|v| {
            v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none()
                && !taken.contains(v.metadata.name.as_deref().unwrap_or(""))
                && volume_phase(v) != "Released"
                && volume_fits_claim(v, pvc)
                && node_fits(v)
        })
        .min_by_key(|v| (st::capacity_bytes(v), v.metadata.name.clone()));
    if let Some(pv) = best {
        let volume = pv.metadata.name.clone().unwrap_or_default();
        taken.insert(volume.clone());
        out.push(Action::BindVolume {
            volume: volume.clone(),
            resource_version: pv.metadata.resource_version.clone(),
            claim_ref: claim_reference(pvc),
        });
        out.push(Action::BindClaim {
            namespace,
            name,
            resource_version: pvc.metadata.resource_version.clone(),
            volume,
            by_controller: true,
        });
        return;
    }

    let Some(class) = class else {
        if class_name.is_empty() {
            out.push(claim_event(
                pvc,
                false,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            ));
        } else {
            out.push(claim_event(
                pvc,
                true,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            ));
        }
        return;
    };
    if class.provisioner != st::LOCAL_PATH_PROVISIONER {
        out.push(claim_event(
            pvc,
            false,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        ));
        return;
    }
    if annotation(&pvc.metadata, st::STORAGE_PROVISIONER_ANNOTATION).is_none() {
        out.push(Action::AnnotateProvisioner {
            namespace: namespace.clone(),
            name: name.clone(),
            provisioner: class.provisioner.clone(),
        });
    }
    let Some(node) = selected else {
        out.push(claim_event(
            pvc,
            true,
            "ProvisioningFailed",
            "failed to provision volume with StorageClass \"local-path\": configuration error, no node was specified".replace("local-path", class_name),
        ));
        return;
    };
    let Some(pv) = local_path_volume(pvc, class, node, world.storage_dir) else {
        out.push(claim_event(
            pvc,
            true,
            "ProvisioningFailed",
            "the claim requests no storage size".into(),
        ));
        return;
    };
    out.push(claim_event(
        pvc,
        false,
        "Provisioning",
        format!("External provisioner is provisioning volume for claim \"{namespace}/{name}\""),
    ));
    let volume = pv.metadata.name.clone().unwrap_or_default();
    out.push(Action::Provision(Box::new(pv)));
    out.push(claim_event(
        pvc,
        false,
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {volume}"),
    ));
}

/// The volume the local-path provisioner makes for `pvc` on `node`: a `hostPath`
/// directory (created on first use) under `storage_dir`, pinned to the node.
pub fn local_path_volume(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    storage_dir: &Path,
) -> Option<PersistentVolume> {
    let (namespace, name) = ns_name(pvc);
    let uid = pvc.metadata.uid.as_deref()?;
    let request = pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .clone();
    let volume = st::provisioned_volume_name(uid);
    let path = storage_dir.join(st::local_path_dir_name(&volume, &namespace, &name));
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume),
            annotations: Some(BTreeMap::from([
                (
                    st::PROVISIONED_BY_ANNOTATION.to_string(),
                    st::LOCAL_PATH_PROVISIONER.to_string(),
                ),
                (
                    "local.path.provisioner/selected-node".to_string(),
                    node.to_string(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            access_modes: pvc.spec.as_ref().and_then(|s| s.access_modes.clone()),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: st::HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(claim_reference(pvc)),
            mount_options: class.mount_options.clone(),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(name: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "5", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).expect("claim")
    }

    fn volume(name: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name, "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"},
                     "storageClassName": "manual", "hostPath": {"path": format!("/mnt/{name}")}},
            "status": {"phase": "Available"},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).expect("volume")
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
            for (k, v) in e {
                match (b.get_mut(&k), v) {
                    (
                        Some(old @ serde_json::Value::Object(_)),
                        v @ serde_json::Value::Object(_),
                    ) => merge(old, v),
                    (_, v) => {
                        b.insert(k, v);
                    }
                }
            }
        }
    }

    fn local_path(mode: &str) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": st::LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": mode,
        }))
        .expect("class")
    }

    struct Fixture {
        claims: Vec<PersistentVolumeClaim>,
        volumes: Vec<PersistentVolume>,
        classes: Vec<StorageClass>,
        nodes: BTreeMap<String, BTreeMap<String, String>>,
        in_use: HashSet<String>,
    }

    impl Fixture {
        fn new(claims: Vec<PersistentVolumeClaim>, volumes: Vec<PersistentVolume>) -> Fixture {
            Fixture {
                claims,
                volumes,
                classes: vec![local_path(st::WAIT_FOR_FIRST_CONSUMER)],
                nodes: ["n1", "n2"]
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            BTreeMap::from([(st::HOSTNAME_LABEL.to_string(), n.to_string())]),
                        )
                    })
                    .collect(),
                in_use: HashSet::new(),
            }
        }

        fn plan(&self) -> Vec<Action> {
            plan(&World {
                claims: &self.claims,
                volumes: &self.volumes,
                classes: &self.classes,
                nodes: &self.nodes,
                claims_in_use: &self.in_use,
                storage_dir: Path::new("/var/lib/skiff/storage"),
            })
        }
    }

    fn reasons(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn wait_for_first_consumer_claims_wait_for_a_node() {
        let f = Fixture::new(vec![claim("data", json!({}))], vec![]);
        let actions = f.plan();
        assert_eq!(reasons(&actions), ["WaitForFirstConsumer"]);
        assert_eq!(actions.len(), 1, "{actions:?}");
        let Action::Event { message, .. } = &actions[0] else {
            panic!("an event")
        };
        assert_eq!(
            message,
            "waiting for first consumer to be created before binding"
        );
    }

    #[test]
    fn a_chosen_node_gets_a_local_path_volume_pinned_to_it() {
        let f = Fixture::new(
            vec![claim(
                "data",
                json!({"metadata": {"annotations": {st::SELECTED_NODE_ANNOTATION: "n2"}}}),
            )],
            vec![],
        );
        let actions = f.plan();
        assert_eq!(reasons(&actions), ["Provisioning", "ProvisioningSucceeded"]);
        let pv = actions
            .iter()
            .find_map(|a| match a {
                Action::Provision(pv) => Some(pv),
                _ => None,
            })
            .expect("a volume is provisioned");
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-uid-data"));
        let spec = pv.spec.as_ref().expect("spec");
        assert_eq!(
            spec.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/var/lib/skiff/storage/pvc-uid-data_default_data")
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(
            spec.capacity.as_ref().map(|c| c["storage"].0.as_str()),
            Some("1Gi")
        );
        assert_eq!(
            spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()),
            Some("uid-data")
        );
        let labels = |n: &str| BTreeMap::from([(st::HOSTNAME_LABEL.to_string(), n.to_string())]);
        assert!(volume_node_matches(pv, "n2", &labels("n2")));
        assert!(!volume_node_matches(pv, "n1", &labels("n1")));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::AnnotateProvisioner { .. })));
    }

    #[test]
    fn a_provisioned_volume_binds_its_claim_then_both_report_bound() {
        let pvc = claim(
            "data",
            json!({"metadata": {"annotations": {st::SELECTED_NODE_ANNOTATION: "n1"}}}),
        );
        let class = local_path(st::WAIT_FOR_FIRST_CONSUMER);
        let mut pv = local_path_volume(&pvc, &class, "n1", Path::new("/s")).expect("pv");
        pv.status = Some(Default::default());
        let f = Fixture::new(vec![pvc.clone()], vec![pv.clone()]);
        let actions = f.plan();
        assert!(
            actions.contains(&Action::VolumePhase {
                volume: "pvc-uid-data".into(),
                phase: "Bound"
            }),
            "{actions:?}"
        );
        assert!(actions.iter().any(|a| matches!(a, Action::BindClaim { volume, by_controller: false, .. } if volume == "pvc-uid-data")), "{actions:?}");
        assert!(!actions.iter().any(|a| matches!(a, Action::Provision(_))));

        // Next pass: the claim names the volume.
        let mut bound = pvc;
        bound.spec.as_mut().expect("spec").volume_name = Some("pvc-uid-data".into());
        let f = Fixture::new(vec![bound], vec![pv]);
        let actions = f.plan();
        let status = actions.iter().find_map(|a| match a {
            Action::ClaimStatus {
                phase,
                capacity,
                access_modes,
                ..
            } => Some((*phase, capacity.clone(), access_modes.clone())),
            _ => None,
        });
        let (phase, capacity, modes) = status.expect("claim status");
        assert_eq!(phase, "Bound");
        assert_eq!(capacity.map(|c| c["storage"].0.clone()), Some("1Gi".into()));
        assert_eq!(modes, Some(vec!["ReadWriteOnce".to_string()]));
    }

    #[test]
    fn static_volumes_bind_smallest_fit_once_and_respect_the_chosen_node() {
        let manual = json!({"spec": {"storageClassName": "manual"}});
        let pinned = |node: &str| {
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": st::HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}}})
        };
        let mut small = volume("small", pinned("n1"));
        small.spec.as_mut().expect("spec").capacity = Some(BTreeMap::from([(
            "storage".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
        )]));
        let big = volume("big", json!({}));
        let mut f = Fixture::new(
            vec![claim("a", manual.clone()), claim("b", manual.clone())],
            vec![small, big],
        );
        let actions = f.plan();
        let bound: Vec<(String, String)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::BindVolume {
                    volume, claim_ref, ..
                } => Some((volume.clone(), claim_ref.name.clone().unwrap_or_default())),
                _ => None,
            })
            .collect();
        assert_eq!(
            bound,
            [
                ("small".to_string(), "a".to_string()),
                ("big".to_string(), "b".to_string())
            ]
        );

        // With WaitForFirstConsumer, a volume pinned to another node is not taken.
        f.classes = vec![serde_json::from_value(json!({"metadata": {"name": "manual"},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})).expect("class")];
        f.claims = vec![claim(
            "a",
            json!({"spec": {"storageClassName": "manual"},
            "metadata": {"annotations": {st::SELECTED_NODE_ANNOTATION: "n2"}}}),
        )];
        let actions = f.plan();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::BindVolume { volume, .. } if volume == "big")),
            "{actions:?}"
        );
    }

    #[test]
    fn volumes_of_deleted_claims_are_released_and_lost_volumes_reported() {
        let pvc = claim("data", json!({}));
        let class = local_path(st::WAIT_FOR_FIRST_CONSUMER);
        let mut pv = local_path_volume(&pvc, &class, "n1", Path::new("/s")).expect("pv");
        pv.status = Some(serde_json::from_value(json!({"phase": "Bound"})).expect("status"));
        let f = Fixture::new(vec![], vec![pv]);
        assert_eq!(
            f.plan(),
            [Action::VolumePhase {
                volume: "pvc-uid-data".into(),
                phase: "Released"
            }]
        );
        let lost = claim(
            "data",
            json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Bound"}}),
        );
        let actions = Fixture::new(vec![lost], vec![]).plan();
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::ClaimStatus { phase: "Lost", .. })));
        assert_eq!(reasons(&actions), ["ClaimLost"]);
    }

    #[test]
    fn protection_finalizer_waits_for_pods() {
        let deleting = claim(
            "data",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:01Z",
            "finalizers": [st::PVC_PROTECTION_FINALIZER, "other"]}}),
        );
        let mut f = Fixture::new(vec![deleting], vec![]);
        f.in_use.insert("default/data".into());
        assert!(f.plan().is_empty());
        f.in_use.clear();
        assert!(
            matches!(&f.plan()[..], [Action::ReleaseClaimFinalizer { finalizers, .. }] if finalizers == &["other".to_string()])
        );
    }

    #[test]
    fn claims_without_a_way_to_bind_say_why() {
        let missing = claim("a", json!({"spec": {"storageClassName": "nope"}}));
        let classless = claim("b", json!({"spec": {"storageClassName": ""}}));
        let external = claim("c", json!({"spec": {"storageClassName": "ebs"}}));
        let mut f = Fixture::new(vec![missing, classless, external], vec![]);
        f.classes.push(
            serde_json::from_value(
                json!({"metadata": {"name": "ebs"}, "provisioner": "ebs.csi.aws.com"}),
            )
            .expect("class"),
        );
        assert_eq!(
            reasons(&f.plan()),
            [
                "ProvisioningFailed",
                "FailedBinding",
                "ExternalProvisioning"
            ]
        );
    }
}
