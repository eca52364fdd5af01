//! Scoring of the feasible nodes, kube-scheduler's default score plugins and weights:
//!
//! | plugin | weight | prefers |
//! |---|---|---|
//! | TaintToleration | 3 | fewer untolerated `PreferNoSchedule` taints |
//! | NodeAffinity | 2 | more preferred-term weight |
//! | NodeResourcesFit (LeastAllocated) | 1 | more free cpu and memory |
//! | PodTopologySpread | 2 | fewer matching pods / fewer replicas of the same owner |
//! | InterPodAffinity | 2 | preferred (anti-)affinity satisfied |
//! | NodeResourcesBalancedAllocation | 1 | cpu and memory used in equal fractions |
//!
//! Each plugin yields 0..100 per node; the weighted sum decides. Ties go to the node met
//! first in this attempt's evaluation order, which starts at a rotating index.

use super::filter::tolerates;
use super::interpod;
use super::nodeaffinity;
use super::podinfo::Incoming;
use super::snapshot::{NodeInfo, Snapshot};
use super::spread;

const MAX_SCORE: i64 = 100;
const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_RESOURCES_FIT: i64 = 1;
const WEIGHT_TOPOLOGY_SPREAD: i64 = 2;
const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

/// Position (in `feasible`) of the best node.
pub(crate) fn pick(pod: &Incoming, snap: &Snapshot, feasible: &[usize]) -> usize {
    let nodes = || feasible.iter().map(|&i| &snap.nodes[i]);
    let mut total = vec![0i64; feasible.len()];
    let mut buf = vec![0i64; feasible.len()];
    let mut add = |buf: &[i64], weight: i64| {
        for (t, s) in total.iter_mut().zip(buf) {
            *t += weight * s;
        }
    };

    if nodes().any(|n| n.has_prefer_no_schedule) {
        for (b, n) in buf.iter_mut().zip(nodes()) {
            *b = intolerable_preferences(pod, n);
        }
        reverse_normalize(&mut buf);
        add(&buf, WEIGHT_TAINT_TOLERATION);
    }
    if nodeaffinity::has_preferred(pod.pod) {
        for (b, n) in buf.iter_mut().zip(nodes()) {
            *b = nodeaffinity::preferred_score(pod.pod, n);
        }
        normalize(&mut buf);
        add(&buf, WEIGHT_NODE_AFFINITY);
    }
    for (b, n) in buf.iter_mut().zip(nodes()) {
        *b = least_allocated(pod, n);
    }
    add(&buf, WEIGHT_RESOURCES_FIT);
    if spread::score(pod, snap, feasible, &mut buf) {
        add(&buf, WEIGHT_TOPOLOGY_SPREAD);
    }
    if let Some(state) = interpod::ScoreState::compute(pod, snap) {
        for (b, n) in buf.iter_mut().zip(nodes()) {
            *b = state.raw(n);
        }
        interpod::normalize(&mut buf);
        add(&buf, WEIGHT_INTER_POD_AFFINITY);
    }
    // Best-effort pods skip balancing (it would pile them onto the emptiest node).
    if pod.requests.cpu != 0 || pod.requests.memory != 0 {
        for (b, n) in buf.iter_mut().zip(nodes()) {
            *b = balanced_allocation(pod, n);
        }
        add(&buf, WEIGHT_BALANCED_ALLOCATION);
    }

    let mut best = 0;
    for (pos, t) in total.iter().enumerate() {
        if *t > total[best] {
            best = pos;
        }
    }
    best
}

/// `PreferNoSchedule` taints of the node the pod does not tolerate.
fn intolerable_preferences(pod: &Incoming, node: &NodeInfo) -> i64 {
    let relevant = |e: Option<&str>| e.is_none_or(|e| e.is_empty() || e == "PreferNoSchedule");
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| {
            !pod.tolerations
                .iter()
                .any(|t| relevant(t.effect.as_deref()) && tolerates(t, taint))
        })
        .count() as i64
}

/// Scale to 0..100 by the highest value (all 0 stay 0).
fn normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max > 0 {
        for s in scores.iter_mut() {
            *s = MAX_SCORE * *s / max;
        }
    }
}

/// Like [`normalize`] but fewer is better (all 0 become 100).
fn reverse_normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = if max == 0 {
            MAX_SCORE
        } else {
            MAX_SCORE - MAX_SCORE * *s / max
        };
    }
}

fn free_share(requested: i64, capacity: i64) -> i64 {
    if requested > capacity {
        0
    } else {
        (capacity - requested) * MAX_SCORE / capacity
    }
}

/// Mean free share of cpu and memory after placing the pod, counting request-less
/// containers at the default requests.
fn least_allocated(pod: &Incoming, node: &NodeInfo) -> i64 {
    let pairs = [
        (node.non_zero_cpu + pod.non_zero_cpu, node.allocatable.cpu),
        (
            node.non_zero_memory + pod.non_zero_memory,
            node.allocatable.memory,
        ),
    ];
    let (sum, n) = pairs
        .iter()
        .filter(|(_, cap)| *cap > 0)
        .fold((0, 0), |(sum, n), (req, cap)| {
            (sum + free_share(*req, *cap), n + 1)
        });
    if n == 0 {
        0
    } else {
        sum / n
    }
}

/// 100 when cpu and memory would be used in the same fraction, less as they diverge.
fn balanced_allocation(pod: &Incoming, node: &NodeInfo) -> i64 {
    let fraction = |req: i64, cap: i64| (cap > 0).then(|| (req as f64 / cap as f64).min(1.0));
    let cpu = fraction(node.requested.cpu + pod.requests.cpu, node.allocatable.cpu);
    let mem = fraction(
        node.requested.memory + pod.requests.memory,
        node.allocatable.memory,
    );
    let std = match (cpu, mem) {
        (Some(c), Some(m)) => (c - m).abs() / 2.0,
        _ => 0.0,
    };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_share_is_proportional_and_zero_when_overcommitted() {
        assert_eq!(free_share(1000, 4000), 75);
        assert_eq!(free_share(5000, 4000), 0);
    }

    #[test]
    fn normalizers() {
        let mut s = vec![0, 5, 10];
        normalize(&mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut r = vec![0, 1, 2];
        reverse_normalize(&mut r);
        assert_eq!(r, vec![100, 50, 0]);
        let mut none = vec![0, 0];
        reverse_normalize(&mut none);
        assert_eq!(none, vec![100, 100]);
    }
}
