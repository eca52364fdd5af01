//! The node's heartbeat: its Lease in `kube-node-lease`, owned by the Node and renewed
//! every quarter of its duration, as the kubelet does. The node lifecycle controller reads
//! it; `skiff simulate` renews its nodes' leases through the same function.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::AgentError;

/// Namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";

/// kubelet's `nodeLeaseDurationSeconds`.
pub const DURATION_SECONDS: u32 = 40;

/// Renew node `name`'s lease; create it (owned by its Node) when missing, or when
/// `create` (at registration).
pub async fn renew(
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    name: &str,
    create: bool,
    lease_seconds: u32,
) -> Result<(), AgentError> {
    let now = MicroTime(Utc::now());
    let patch = serde_json::json!({"spec": {"renewTime": now, "holderIdentity": name}});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || create => {}
        Err(e) => return Err(AgentError::api(format!("renewing lease of {name}"))(e)),
    }
    let owner = nodes
        .get_opt(name)
        .await
        .map_err(AgentError::api(format!("reading node {name}")))?
        .and_then(|node| node.metadata.uid)
        .map(|uid| OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: name.to_string(),
            uid,
            ..Default::default()
        });
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.into()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(lease_seconds as i32),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(AgentError::api(format!("creating lease of {name}"))(e)),
    }
}

/// Renew `name`'s lease forever, every quarter of [`DURATION_SECONDS`].
pub async fn keep_renewing(client: kube::Client, name: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let every = Duration::from_millis(u64::from(DURATION_SECONDS) * 250);
    loop {
        if let Err(e) = renew(&leases, &nodes, &name, false, DURATION_SECONDS).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        tokio::time::sleep(every).await;
    }
}
