//! The node's side of persistent storage: resolving a pod's `persistentVolumeClaim`
//! volume to a directory on this node (claim → bound volume → `hostPath` or `local`
//! path, created for `DirectoryOrCreate`), and the local-path reclaimer, which removes
//! the directory of a released local-path volume with reclaim policy `Delete` that lives
//! on this node and then deletes the volume object (the storage is on the node, so the
//! node does it; the server's controller only marks the volume `Released`).
//!
//! Both learn the world through the client only. `skiff simulate` runs the reclaimer for
//! its fake nodes without a storage dir: it deletes the volume objects and touches no
//! disk (no directory was ever made for them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};

use super::pods::volumes;
use crate::apimachinery::storage as st;
use crate::client::events::{reference, EventType, Recorder};

/// Why a claim's volume cannot be set up yet (the pod waits: `FailedMount`).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim \"{0}\" is being deleted")]
    ClaimDeleting(String),
    #[error("PersistentVolumeClaim {namespace}/{name} is not bound")]
    Unbound { namespace: String, name: String },
    #[error("persistentvolume \"{0}\" not found")]
    VolumeNotFound(String),
    #[error("persistentvolume \"{0}\" is not bound to claim {1}")]
    NotOurs(String, String),
    #[error(
        "persistentvolume \"{0}\": only hostPath and local volumes can be mounted on this node"
    )]
    Unsupported(String),
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(transparent)]
    Volume(#[from] volumes::VolumeError),
}

/// The host directory behind claim `claim` of namespace `namespace`.
pub async fn claim_path(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, ClaimError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| ClaimError::Api {
            what: format!("persistentvolumeclaim {namespace}/{claim}"),
            source: Box::new(e),
        })?
        .ok_or_else(|| ClaimError::ClaimNotFound(claim.to_string()))?;
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err(ClaimError::ClaimDeleting(claim.to_string()));
    }
    let bound = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Bound");
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty() && bound)
        .ok_or_else(|| ClaimError::Unbound {
            namespace: namespace.to_string(),
            name: claim.to_string(),
        })?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&volume)
        .await
        .map_err(|e| ClaimError::Api {
            what: format!("persistentvolume {volume}"),
            source: Box::new(e),
        })?
        .ok_or_else(|| ClaimError::VolumeNotFound(volume.clone()))?;
    if !st::claim_ref_matches(&pv, &pvc) {
        return Err(ClaimError::NotOurs(volume, format!("{namespace}/{claim}")));
    }
    volume_path(&pv)
}

/// The directory of a `hostPath` or `local` volume, after the `hostPath` type check
/// (which creates `DirectoryOrCreate` directories).
pub fn volume_path(pv: &PersistentVolume) -> Result<PathBuf, ClaimError> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(volumes::host_path(&h.path, h.type_.as_deref())?);
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        // A local volume must exist already (kube's local plugin does not create it).
        return Ok(volumes::host_path(&l.path, Some("Directory"))?);
    }
    Err(ClaimError::Unsupported(name))
}

/// The directory a released local-path volume of `node` leaves to remove, when the
/// node should remove it: provisioned here, on that node, reclaim policy `Delete`,
/// `Released`, and a path that is a direct child of `storage_dir` named after the volume
/// (never anything else on the host).
pub fn reclaimable_dir(pv: &PersistentVolume, node: &str, storage_dir: &Path) -> Option<PathBuf> {
    let path = PathBuf::from(&pv.spec.as_ref()?.host_path.as_ref()?.path);
    let name = pv.metadata.name.as_deref()?;
    let named = path
        .file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f.starts_with(&format!("{name}_")));
    (is_reclaimable(pv, node) && path.parent() == Some(storage_dir) && named).then_some(path)
}

/// Whether `pv` is a released local-path volume of `node` to be deleted.
pub fn is_reclaimable(pv: &PersistentVolume, node: &str) -> bool {
    let annotations = pv.metadata.annotations.as_ref();
    let ours = annotations
        .and_then(|a| a.get(st::PROVISIONED_BY_ANNOTATION))
        .is_some_and(|p| p == st::LOCAL_PATH_PROVISIONER);
    let on_node = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .is_some()
        && st::volume_node_matches(
            pv,
            node,
            &[(st::HOSTNAME_LABEL.to_string(), node.to_string())].into(),
        );
    let released = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .is_some_and(|p| p == "Delete");
    ours && on_node && released && delete && pv.metadata.deletion_timestamp.is_none()
}

/// Delete released local-path volumes of the nodes `owns` accepts: with a storage dir,
/// remove their directory first. Runs until the watch ends.
pub async fn reclaim(
    client: kube::Client,
    owns: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    storage_dir: Option<PathBuf>,
) {
    let recorder = Recorder::new(client.clone(), "local-path-provisioner");
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut changes = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let batch: Vec<PersistentVolume> = tokio::select! {
            next = changes.next() => match next {
                None => return,
                Some(Ok(pv)) => vec![pv],
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watching persistentvolumes");
                    continue;
                }
            },
            // Retry what failed before (a busy directory, an API hiccup).
            _ = tick.tick() => match api.list(&Default::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    tracing::debug!(error = %e, "listing persistentvolumes");
                    continue;
                }
            },
        };
        for pv in batch {
            let Some(node) = node_of(&pv).and_then(&owns) else {
                continue;
            };
            if !is_reclaimable(&pv, &node) {
                continue;
            }
            if let Err(message) = reclaim_one(&api, &pv, &node, storage_dir.as_deref()).await {
                tracing::warn!(volume = ?pv.metadata.name, %message, "deleting a local-path volume");
                recorder
                    .record(
                        &reference(&pv),
                        EventType::Warning,
                        "VolumeFailedDelete",
                        &message,
                    )
                    .await;
            }
        }
    }
}

/// The node a local-path volume was provisioned on.
fn node_of(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == st::HOSTNAME_LABEL && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

async fn reclaim_one(
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    node: &str,
    storage_dir: Option<&Path>,
) -> Result<(), String> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    if let Some(dir) = storage_dir {
        let path = reclaimable_dir(pv, node, dir).ok_or_else(|| {
            format!(
                "refusing to remove the directory of volume {name}: it is not a volume directory under {}",
                dir.display()
            )
        })?;
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(volume = %name, path = %path.display(), "removed a released local-path volume")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", path.display())),
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(format!("deleting persistentvolume {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(phase: &str, policy: &str, path: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "uid": "u",
                "annotations": {st::PROVISIONED_BY_ANNOTATION: st::LOCAL_PATH_PROVISIONER}},
            "spec": {"hostPath": {"path": path, "type": "DirectoryOrCreate"},
                "persistentVolumeReclaimPolicy": policy,
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": st::HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}},
            "status": {"phase": phase},
        }))
        .expect("pv")
    }

    #[test]
    fn only_released_local_path_volumes_of_this_node_under_the_storage_dir_go() {
        let dir = Path::new("/var/lib/skiff/storage");
        let good = pv(
            "Released",
            "Delete",
            "/var/lib/skiff/storage/pvc-1_default_data",
        );
        assert_eq!(node_of(&good), Some("n1"));
        assert_eq!(
            reclaimable_dir(&good, "n1", dir),
            Some(PathBuf::from("/var/lib/skiff/storage/pvc-1_default_data"))
        );
        assert_eq!(reclaimable_dir(&good, "n2", dir), None, "another node's");
        let bound = pv(
            "Bound",
            "Delete",
            "/var/lib/skiff/storage/pvc-1_default_data",
        );
        assert_eq!(reclaimable_dir(&bound, "n1", dir), None);
        let retained = pv(
            "Released",
            "Retain",
            "/var/lib/skiff/storage/pvc-1_default_data",
        );
        assert_eq!(reclaimable_dir(&retained, "n1", dir), None);
        let elsewhere = pv("Released", "Delete", "/etc");
        assert!(is_reclaimable(&elsewhere, "n1"));
        assert_eq!(
            reclaimable_dir(&elsewhere, "n1", dir),
            None,
            "never outside the storage dir"
        );
        let deeper = pv(
            "Released",
            "Delete",
            "/var/lib/skiff/storage/pvc-1_x/../../..",
        );
        assert_eq!(reclaimable_dir(&deeper, "n1", dir), None);
        let mut static_pv = good.clone();
        static_pv.metadata.annotations = None;
        assert!(
            !is_reclaimable(&static_pv, "n1"),
            "not provisioned by local-path"
        );
    }

    #[test]
    fn volume_paths_check_their_type() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = tmp.path().join("pvc-1_default_data");
        let created =
            volume_path(&pv("Bound", "Delete", &made.to_string_lossy())).expect("created");
        assert!(created.is_dir());
        let local: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "l"},
            "spec": {"local": {"path": tmp.path().join("missing")}}}))
        .expect("pv");
        assert!(volume_path(&local).is_err(), "local volumes must exist");
        let nfs: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "n"},
            "spec": {"nfs": {"server": "x", "path": "/"}}}))
        .expect("pv");
        assert!(matches!(volume_path(&nfs), Err(ClaimError::Unsupported(_))));
    }
}
