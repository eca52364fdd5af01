//! The PersistentVolume loop: binds claims to volumes, provisions `local-path` volumes,
//! keeps volume and claim phases, and lifts `kubernetes.io/pvc-protection` from claims no
//! pod uses any more. Decisions are in [`super::persistentvolume_plan`]; this module
//! reads the shared caches (claims, volumes, classes, nodes, pods), carries the steps out
//! through the API and records events (each reason once per claim until it changes, as
//! a claim waiting for its first consumer would otherwise repeat itself every pass).
//!
//! The cluster's claims and volumes are few, so every pass plans over all of them;
//! passes run on any change of those kinds (debounced) and every 15 s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::informers::Informers;
use super::persistentvolume_plan::{self as plan, Action, Subject};
use super::ControllerError;
use crate::apimachinery::storage as st;
use crate::client::events::{reference, EventType, Recorder};

/// A pass at least this often, whatever the watches say.
const RESYNC: Duration = Duration::from_secs(15);
/// Changes arriving within this window make one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub async fn run(
    client: kube::Client,
    informers: Informers,
    storage_dir: PathBuf,
) -> Result<(), ControllerError> {
    informers.ready().await;
    let recorder = Recorder::new(client.clone(), "persistentvolume-controller");
    let mut triggers = futures::stream::select_all([
        informers.claims.changes().map(|_| ()).boxed(),
        informers.volumes.changes().map(|_| ()).boxed(),
        informers.storage_classes.changes().map(|_| ()).boxed(),
        // Pods matter only when they use claims (protection) or are gone.
        informers
            .pods
            .changes()
            .filter(|p| {
                let uses_claims = p.as_ref().is_ok_and(|p| st::pod_claims(p).next().is_some());
                std::future::ready(uses_claims)
            })
            .map(|_| ())
            .boxed(),
    ]);
    let mut said: HashMap<String, (&'static str, String)> = HashMap::new();
    loop {
        pass(&client, &informers, &recorder, &storage_dir, &mut said).await;
        tokio::select! {
            next = triggers.next() => if next.is_none() {
                return Ok(());
            },
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while let Some(Some(())) = triggers.next().now_or_never() {}
    }
}

async fn pass(
    client: &kube::Client,
    informers: &Informers,
    recorder: &Recorder,
    storage_dir: &std::path::Path,
    said: &mut HashMap<String, (&'static str, String)>,
) {
    let claims: Vec<PersistentVolumeClaim> = informers
        .claims
        .state()
        .iter()
        .map(|c| (**c).clone())
        .collect();
    let volumes: Vec<PersistentVolume> = informers
        .volumes
        .state()
        .iter()
        .map(|v| (**v).clone())
        .collect();
    let classes: Vec<_> = informers
        .storage_classes
        .state()
        .iter()
        .map(|c| (**c).clone())
        .collect();
    let nodes: BTreeMap<String, BTreeMap<String, String>> = informers
        .nodes
        .state()
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                n.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect();
    let in_use: HashSet<String> = informers
        .pods
        .state()
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .flat_map(|p| {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            st::pod_claims(p)
                .map(move |(c, _)| format!("{ns}/{c}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let actions = plan::plan(&plan::World {
        claims: &claims,
        volumes: &volumes,
        classes: &classes,
        nodes: &nodes,
        claims_in_use: &in_use,
        storage_dir,
    });
    // Forget what was said about claims that are gone.
    let present: HashSet<String> = claims
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c.metadata.namespace.as_deref().unwrap_or(""),
                c.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    said.retain(|k, _| present.contains(k) || k.starts_with("pv/"));

    let mut failed: HashSet<String> = HashSet::new();
    for action in actions {
        let key = action.key();
        if failed.contains(&key) {
            continue;
        }
        if let Action::Event {
            subject,
            warning,
            reason,
            message,
        } = &action
        {
            if said
                .get(&key)
                .is_some_and(|(r, m)| r == reason && m == message)
            {
                continue;
            }
            let object = match subject {
                Subject::Claim { namespace, name } => claims
                    .iter()
                    .find(|c| {
                        c.metadata.namespace.as_deref() == Some(namespace)
                            && c.metadata.name.as_deref() == Some(name)
                    })
                    .map(reference),
                Subject::Volume(v) => volumes
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(v))
                    .map(reference),
            };
            if let Some(object) = object {
                let kind = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                recorder.record(&object, kind, reason, message).await;
            }
            said.insert(key, (reason, message.clone()));
            continue;
        }
        if let Err(e) = execute(client, &action).await {
            tracing::debug!(object = %key, error = %e, "persistentvolume step failed; replanning");
            failed.insert(key);
        }
    }
}

async fn execute(client: &kube::Client, action: &Action) -> Result<(), ControllerError> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims = |ns: &str| Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let pp = PatchParams::default();
    match action {
        Action::Provision(pv) => match volumes.create(&PostParams::default(), pv).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(ControllerError::api(format!(
                "creating persistentvolume {}",
                pv.metadata.name.as_deref().unwrap_or("")
            ))(e)),
        },
        Action::BindVolume {
            volume,
            resource_version,
            claim_ref,
        } => {
            let patch = json!({
                "metadata": {
                    "resourceVersion": resource_version,
                    "annotations": {st::BOUND_BY_CONTROLLER_ANNOTATION: "yes"},
                },
                "spec": {"claimRef": claim_ref},
            });
            volumes
                .patch(volume, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(ControllerError::api(format!(
                    "binding persistentvolume {volume}"
                )))
        }
        Action::BindClaim {
            namespace,
            name,
            resource_version,
            volume,
            by_controller,
        } => {
            let mut annotations = serde_json::Map::new();
            annotations.insert(st::BIND_COMPLETED_ANNOTATION.into(), json!("yes"));
            if *by_controller {
                annotations.insert(st::BOUND_BY_CONTROLLER_ANNOTATION.into(), json!("yes"));
            }
            let patch = json!({
                "metadata": {"resourceVersion": resource_version, "annotations": annotations},
                "spec": {"volumeName": volume},
            });
            claims(namespace)
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(ControllerError::api(format!(
                    "binding persistentvolumeclaim {namespace}/{name}"
                )))
        }
        Action::AnnotateProvisioner {
            namespace,
            name,
            provisioner,
        } => {
            let patch = json!({"metadata": {"annotations": {
                st::STORAGE_PROVISIONER_ANNOTATION: provisioner,
                st::BETA_STORAGE_PROVISIONER_ANNOTATION: provisioner,
            }}});
            claims(namespace)
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(ControllerError::api(format!(
                    "annotating persistentvolumeclaim {namespace}/{name}"
                )))
        }
        Action::VolumePhase { volume, phase } => {
            let patch = json!({"status": {"phase": phase}});
            volumes
                .patch_status(volume, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(ControllerError::api(format!(
                    "updating the phase of persistentvolume {volume}"
                )))
        }
        Action::ClaimStatus {
            namespace,
            name,
            phase,
            capacity,
            access_modes,
        } => {
            let patch = json!({"status": {
                "phase": phase, "capacity": capacity, "accessModes": access_modes,
            }});
            claims(namespace)
                .patch_status(name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(ControllerError::api(format!(
                    "updating the status of persistentvolumeclaim {namespace}/{name}"
                )))
        }
        Action::ReleaseClaimFinalizer {
            namespace,
            name,
            resource_version,
            finalizers,
        } => {
            let patch = json!({"metadata": {
                "resourceVersion": resource_version, "finalizers": finalizers,
            }});
            match claims(namespace)
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(ControllerError::api(format!(
                    "removing the protection finalizer of persistentvolumeclaim {namespace}/{name}"
                ))(e)),
            }
        }
        Action::Event { .. } => Ok(()),
    }
}
