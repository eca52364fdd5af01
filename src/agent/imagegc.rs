//! Image garbage collection, as kubelet's image manager does it: every few minutes the
//! agent looks at the filesystem holding the image store; when it is at least
//! [`HIGH_PERCENT`] full, unused unpinned images go (least recently used first) until it
//! would be at [`LOW_PERCENT`] (kubelet's `imageGCHighThresholdPercent` and
//! `imageGCLowThresholdPercent`, 85 and 80). Images of the node's pods are in use; imported
//! (pinned) images are never removed (the store's rule). A failure is a `FreeDiskSpaceFailed`
//! warning on the Node, kubelet's event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::client::events::EventType;
use crate::runtime::image::reference::Reference;

use super::pods::worker::NodeContext;

pub const HIGH_PERCENT: u64 = 85;
pub const LOW_PERCENT: u64 = 80;
/// How often kubelet's image manager checks (`ImageGCPeriod`).
const PERIOD: Duration = Duration::from_secs(5 * 60);

/// Bytes to free from a filesystem of `capacity` with `available` left, or `None` while
/// it is under `high` percent full.
pub fn amount_to_free(capacity: u64, available: u64, high: u64, low: u64) -> Option<u64> {
    if capacity == 0 {
        return None;
    }
    let used = capacity.saturating_sub(available);
    if used.saturating_mul(100) < capacity.saturating_mul(high) {
        return None;
    }
    Some(used.saturating_sub(capacity / 100 * low))
}

/// The images the node's pods name, normalized as the store names them (and as given).
fn pod_images(pods: &[Pod]) -> HashSet<String> {
    let mut names = HashSet::new();
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for image in containers.filter_map(|c| c.image.as_deref()) {
            names.insert(image.to_string());
            if let Ok(r) = Reference::parse(image) {
                names.insert(r.to_string());
            }
        }
    }
    names
}

/// Check every [`PERIOD`] and collect when the disk is full enough.
pub async fn run(ctx: Arc<NodeContext>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(message) = collect(&ctx).await {
            tracing::warn!(%message, "image garbage collection failed");
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            if let Ok(node) = nodes.get(&ctx.node_name).await {
                let reference = crate::client::events::reference(&node);
                ctx.recorder
                    .record(
                        &reference,
                        EventType::Warning,
                        "FreeDiskSpaceFailed",
                        &message,
                    )
                    .await;
            }
        }
    }
}

/// The images the node's pods use.
async fn images_in_use(ctx: &NodeContext) -> Result<HashSet<String>, String> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name)))
        .await
        .map_err(|e| format!("listing the node's pods: {e}"))?;
    Ok(pod_images(&on_node.items))
}

/// Remove every unused unpinned image (kubelet's `DeleteUnusedImages`, the eviction
/// manager's node-level reclaim under disk pressure); returns the bytes freed.
pub async fn free_unused(ctx: &NodeContext) -> Result<u64, String> {
    let in_use = images_in_use(ctx).await?;
    let report = ctx.images.gc(&in_use, 0).await.map_err(|e| e.to_string())?;
    Ok(report.usage_before.saturating_sub(report.usage_after))
}

async fn collect(ctx: &NodeContext) -> Result<(), String> {
    let (capacity, available) =
        super::host::filesystem(ctx.images.root()).map_err(|e| e.to_string())?;
    let Some(to_free) = amount_to_free(capacity, available, HIGH_PERCENT, LOW_PERCENT) else {
        return Ok(());
    };
    let in_use = images_in_use(ctx).await?;
    let usage = ctx.images.disk_usage();
    let report = ctx
        .images
        .gc(&in_use, usage.saturating_sub(to_free))
        .await
        .map_err(|e| e.to_string())?;
    let freed = report.usage_before.saturating_sub(report.usage_after);
    tracing::info!(
        removed = report.removed.len(),
        freed,
        "image garbage collection"
    );
    if freed < to_free {
        return Err(format!(
            "Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frees_down_to_the_low_threshold_only_above_the_high_one() {
        // 100 GB disk, 84 GB used: nothing to do.
        assert_eq!(amount_to_free(100_000, 16_000, 85, 80), None);
        // 90 GB used: free 10 GB, down to 80 %.
        assert_eq!(amount_to_free(100_000, 10_000, 85, 80), Some(10_000));
        // Exactly at the high threshold counts.
        assert_eq!(amount_to_free(100_000, 15_000, 85, 80), Some(5_000));
        assert_eq!(amount_to_free(0, 0, 85, 80), None);
    }

    #[test]
    fn pod_images_are_in_use_under_their_normalized_names() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [{"name": "a", "image": "busybox"}],
                "initContainers": [{"name": "i", "image": "registry.local:5000/tools/init:2"}],
            }
        }))
        .expect("pod");
        let names = pod_images(&[pod]);
        assert!(
            names.contains("docker.io/library/busybox:latest"),
            "{names:?}"
        );
        assert!(names.contains("busybox"));
        assert!(names.contains("registry.local:5000/tools/init:2"));
    }
}
