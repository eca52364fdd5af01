//! Node IPAM, as kube-controller-manager's range allocator does it with
//! `--allocate-node-cidrs`: every node without a pod range gets the first free /24 of the
//! cluster CIDR (`--cluster-cidr`, 10.42.0.0/16 by default) in `spec.podCIDR` and
//! `spec.podCIDRs`. Ranges already on nodes (set by this loop earlier, by `skiff simulate`
//! or by hand) are taken as used; a deleted node's range is free again. The node's agent
//! waits for its range before it sets up the pod network.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::informers::Informers;
use super::ControllerError;

/// Prefix length of every node's pod range (kube-controller-manager's
/// `--node-cidr-mask-size` for IPv4).
pub const NODE_MASK: u8 = 24;

/// A cluster CIDR carved into node ranges of [`NODE_MASK`] bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeAllocator {
    network: u32,
    bits: u8,
}

impl RangeAllocator {
    /// `a.b.c.d/n` with n ≤ 24 (room for at least one node range).
    pub fn parse(cidr: &str) -> Result<RangeAllocator, ControllerError> {
        let bad = |why: &str| ControllerError::Other(format!("cluster CIDR {cidr:?}: {why}"));
        let (ip, bits) = cidr
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let bits: u8 = bits.parse().map_err(|_| bad("bad prefix length"))?;
        if !(1..=NODE_MASK).contains(&bits) {
            return Err(bad("the prefix must be between /1 and /24"));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(RangeAllocator {
            network: u32::from(ip) & mask,
            bits,
        })
    }

    fn ranges(&self) -> u32 {
        1 << (NODE_MASK - self.bits)
    }

    /// Index of the node range `cidr` names, if it is one of ours.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if bits.parse::<u8>().ok()? != NODE_MASK {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.network)?;
        let index = offset >> (32 - NODE_MASK);
        (index < self.ranges() && offset & 0xff == 0).then_some(index)
    }

    /// The node range with this index, as `a.b.c.0/24`.
    pub fn range(&self, index: u32) -> String {
        let ip = Ipv4Addr::from(self.network + (index << (32 - NODE_MASK)));
        format!("{ip}/{NODE_MASK}")
    }

    /// The first range whose index is not in `used`.
    pub fn first_free(&self, used: &BTreeSet<u32>) -> Option<u32> {
        (0..self.ranges()).find(|i| !used.contains(i))
    }
}

/// The node's pod range, if it has one.
fn pod_cidr(node: &Node) -> Option<&str> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .as_deref()
        .or_else(|| spec.pod_cidrs.as_ref()?.first().map(String::as_str))
}

pub async fn run(
    client: kube::Client,
    informers: Informers,
    cluster_cidr: String,
) -> Result<(), ControllerError> {
    let allocator = RangeAllocator::parse(&cluster_cidr)?;
    let nodes: Api<Node> = Api::all(client);
    informers.ready().await;
    // Ranges this loop handed out that the cache may not show yet, by node name.
    let mut assigned: std::collections::BTreeMap<String, u32> = Default::default();
    let mut changes = informers.nodes.changes().boxed();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        let cached = informers.nodes.state();
        let mut used: BTreeSet<u32> = cached
            .iter()
            .filter_map(|n| allocator.index_of(pod_cidr(n)?))
            .collect();
        // Keep our own recent assignments reserved (and their nodes skipped) until the
        // cache shows them.
        assigned.retain(|_, i| !used.contains(i));
        used.extend(assigned.values().copied());
        let waiting: Vec<_> = cached
            .iter()
            .filter(|n| pod_cidr(n).is_none() && !assigned.contains_key(&n.name_any()))
            .collect();
        for node in waiting {
            let Some(index) = allocator.first_free(&used) else {
                tracing::warn!(node = %node.name_any(), cidr = %cluster_cidr, "no pod range left for the node");
                break;
            };
            let range = allocator.range(index);
            // Against the version read: a range is never set twice.
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"podCIDR": range, "podCIDRs": [range]},
            });
            match nodes
                .patch(
                    &node.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %node.name_any(), %range, "assigned the node's pod range");
                    used.insert(index);
                    assigned.insert(node.name_any(), index);
                }
                // Gone, or changed since the cache saw it: the next round decides.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    return Err(ControllerError::api(format!(
                        "setting the pod range of node {}",
                        node.name_any()
                    ))(e))
                }
            }
        }
        tokio::select! {
            change = changes.next() => if change.is_none() { return Ok(()) },
            _ = resync.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_the_24s_of_the_cluster_cidr() {
        let a = RangeAllocator::parse("10.42.0.0/16").expect("valid");
        assert_eq!(a.range(0), "10.42.0.0/24");
        assert_eq!(a.range(255), "10.42.255.0/24");
        assert_eq!(a.index_of("10.42.7.0/24"), Some(7));
        // Not ours: another network, another size, not on a range boundary.
        assert_eq!(a.index_of("10.43.0.0/24"), None);
        assert_eq!(a.index_of("10.42.7.0/25"), None);
        assert_eq!(a.index_of("10.42.7.5/24"), None);
        assert_eq!(a.index_of("garbage"), None);
    }

    #[test]
    fn first_free_skips_used_and_runs_out() {
        let a = RangeAllocator::parse("10.42.0.0/23").expect("valid");
        assert_eq!(a.first_free(&BTreeSet::new()), Some(0));
        assert_eq!(a.first_free(&[0].into()), Some(1));
        assert_eq!(a.first_free(&[1].into()), Some(0));
        assert_eq!(a.first_free(&[0, 1].into()), None);
    }

    #[test]
    fn bad_cluster_cidrs_are_refused() {
        for bad in ["10.42.0.0", "10.42.0.0/25", "10.42.0.0/0", "x/16"] {
            assert!(RangeAllocator::parse(bad).is_err(), "{bad}");
        }
        // Host bits are cleared.
        assert_eq!(
            RangeAllocator::parse("10.42.3.4/16")
                .expect("valid")
                .range(1),
            "10.42.1.0/24"
        );
    }
}
