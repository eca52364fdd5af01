//! The scheduling core: which node a pending pod goes to, with kube-scheduler 1.32's
//! default plugins, and why none fits when none does. Pure logic, no I/O: the scheduling
//! loop (watches, binding, retries) feeds a [`Snapshot`] from watch events and calls
//! [`schedule`] for each pending pod, then [`Snapshot::assume`]s the chosen node until the
//! binding comes back through the watch (or [`Snapshot::forget`]s it if binding fails).
//!
//! The loop itself is [`run`].
//!
//! One attempt:
//! 1. pre-filter: `metadata.name` node affinity narrows the nodes to evaluate; counts for
//!    pod (anti-)affinity and topology spread are computed once;
//! 2. filter, node by node from a rotating start, stopping once enough
//!    feasible nodes are found (upstream's adaptive percentageOfNodesToScore:
//!    `max(5, 50 - nodes/125)` percent, at least 100 nodes);
//! 3. score the feasible nodes and take the best (ties go to the node evaluated first).

mod error;
mod filter;
mod interpod;
mod nodeaffinity;
mod podinfo;
pub mod run;
mod score;
mod snapshot;
mod spread;
mod volumebinding;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub use error::{Diagnosis, FitError, Preemption};
pub use snapshot::{NodeUsage, Snapshot, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE};

use filter::Failure;
use nodeaffinity::NameScope;
use podinfo::Incoming;

/// Fewest feasible nodes to look for before scoring (when the cluster has that many).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Lowest adaptive percentage of nodes to look for.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Reason given for the nodes a `metadata.name` node affinity leaves out.
const REASON_NOT_NAMED: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
/// Pre-filter message when the `metadata.name` terms name no node at all.
const REASON_NAME_CONFLICT: &str = "pod affinity terms conflict";

/// How many feasible nodes to find before scoring, out of `nodes` candidates.
pub fn num_feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = 50usize
        .saturating_sub(nodes / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Choose a node for `pod`. `next_start` is the rotating index the search starts from;
/// keep it across calls (start at 0).
pub fn schedule(pod: &Pod, snap: &Snapshot, next_start: &mut usize) -> Result<String, FitError> {
    let all = snap.num_nodes();
    if all == 0 {
        return Err(FitError::NoNodes);
    }
    let incoming = Incoming::new(pod);

    let named: Option<Vec<usize>> = match nodeaffinity::name_scope(pod) {
        NameScope::All => None,
        NameScope::Only(names) => Some(names.iter().filter_map(|n| snap.node_index(n)).collect()),
        NameScope::Conflict => {
            return Err(FitError::Unschedulable(Diagnosis {
                num_all_nodes: all,
                pre_filter: Some(REASON_NAME_CONFLICT.to_string()),
                reasons: BTreeMap::new(),
                preemption: preemption(&incoming, all, 0),
            }));
        }
    };
    let volumes = match volumebinding::compute(pod, &snap.storage) {
        Ok(v) => v,
        Err(reason) => {
            return Err(FitError::Unschedulable(Diagnosis {
                num_all_nodes: all,
                pre_filter: Some(reason),
                reasons: BTreeMap::new(),
                preemption: preemption(&incoming, all, 0),
            }));
        }
    };
    let spread = spread::FilterState::compute(&incoming, snap);
    let inter = interpod::FilterState::compute(&incoming, snap);

    let candidates = named.as_ref().map_or(all, Vec::len);
    let wanted = num_feasible_nodes_to_find(candidates);
    let start = *next_start % all;
    let mut feasible = Vec::with_capacity(wanted);
    let mut failed: Vec<(usize, Failure)> = Vec::new();
    for i in 0..candidates {
        if feasible.len() >= wanted {
            break;
        }
        let pos = (start + i) % candidates;
        let idx = named.as_ref().map_or(pos, |n| n[pos]);
        let vols = volumes.as_ref().map(|v| (v, &snap.storage));
        match filter::run(
            &incoming,
            spread.as_ref(),
            inter.as_ref(),
            vols,
            &snap.nodes[idx],
        ) {
            Ok(()) => feasible.push(idx),
            Err(f) => failed.push((idx, f)),
        }
    }

    // Upstream advances by the nodes it processed; when that is the whole cluster (small
    // clusters, or no fit) the start would not move, so move it by one: equal nodes then
    // take turns instead of the first one winning every tie.
    let processed = feasible.len() + failed.len();
    let step = if processed.is_multiple_of(all) {
        1
    } else {
        processed
    };
    *next_start = (start + step) % all;

    let chosen = match feasible.len() {
        0 => return Err(FitError::Unschedulable(diagnose(&incoming, snap, &failed))),
        1 => feasible[0],
        _ => feasible[score::pick(&incoming, snap, &feasible)],
    };
    Ok(snap.nodes[chosen].name.clone())
}

fn preemption(pod: &Incoming, all: usize, resolvable: usize) -> Preemption {
    if pod.preemption_never {
        Preemption::NotEligible
    } else {
        Preemption::NoCandidates {
            not_helpful: all - resolvable,
            no_victims: resolvable,
        }
    }
}

fn diagnose(pod: &Incoming, snap: &Snapshot, failed: &[(usize, Failure)]) -> Diagnosis {
    let all = snap.num_nodes();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut buf = Vec::new();
    for (idx, f) in failed {
        buf.clear();
        f.reasons(pod, &snap.nodes[*idx], &mut buf);
        for r in buf.drain(..) {
            *reasons.entry(r).or_default() += 1;
        }
    }
    // Nodes a metadata.name affinity left out were never evaluated.
    if failed.len() < all {
        *reasons.entry(REASON_NOT_NAMED.to_string()).or_default() += all - failed.len();
    }
    let resolvable = failed.iter().filter(|(_, f)| !f.unresolvable()).count();
    Diagnosis {
        num_all_nodes: all,
        pre_filter: None,
        reasons,
        preemption: preemption(pod, all, resolvable),
    }
}
