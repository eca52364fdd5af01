//! Pod topology spread (`spec.topologySpreadConstraints`) and the default spreading of a
//! controller's replicas.
//!
//! Domains are the values of the constraint's `topologyKey` label on eligible nodes: nodes
//! carrying every constraint's key and, per `nodeAffinityPolicy` (default Honor) and
//! `nodeTaintsPolicy` (default Ignore), accepted by the pod's node selection and taints.
//! Matching pods are the non-terminating pods of the incoming pod's namespace selected by
//! `labelSelector` (with `matchLabelKeys` folded in).
//!
//! - `DoNotSchedule` filters: placing the pod on a node must keep
//!   `matching(domain) + self - min(matching over domains) <= maxSkew`, where the minimum
//!   is 0 while fewer than `minDomains` domains exist.
//! - `ScheduleAnyway` scores: fewer matching pods in the node's domain is better.
//! - A pod without any constraint is spread like upstream's system default constraint on
//!   hostname (maxSkew 3, ScheduleAnyway), with "matching" meaning "same controller
//!   owner": replicas of a Deployment end up evenly across nodes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::apimachinery::labels::selector_matches;

use super::filter::{untolerated_taint, Failure};
use super::nodeaffinity;
use super::podinfo::Incoming;
use super::snapshot::{NodeInfo, Snapshot};

/// The hostname topology key: one domain per node.
pub(crate) const HOSTNAME: &str = "kubernetes.io/hostname";
/// maxSkew of the default spreading of a controller's replicas.
const DEFAULT_MAX_SKEW: i64 = 3;

struct Constraint<'a> {
    max_skew: i64,
    key: &'a str,
    selector: Option<LabelSelector>,
    min_domains: Option<i64>,
    honor_affinity: bool,
    honor_taints: bool,
    self_match: bool,
}

fn constraints<'a>(pod: &Incoming<'a>, when: &str) -> Vec<Constraint<'a>> {
    let all: &'a [TopologySpreadConstraint] = pod
        .spec()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    all.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let selector = c.label_selector.clone().map(|mut sel| {
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels.and_then(|l| l.get(key)) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: key.clone(),
                                operator: "In".to_string(),
                                values: Some(vec![v.clone()]),
                            },
                        );
                    }
                }
                sel
            });
            Constraint {
                max_skew: i64::from(c.max_skew),
                key: c.topology_key.as_str(),
                self_match: selector_matches(selector.as_ref(), pod.labels),
                selector,
                min_domains: c.min_domains.map(i64::from),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_all_keys(cs: &[Constraint], node: &NodeInfo) -> bool {
    cs.iter().all(|c| node.labels.contains_key(c.key))
}

fn included(c: &Constraint, pod: &Incoming, node: &NodeInfo) -> bool {
    (!c.honor_affinity || nodeaffinity::required_matches(pod.pod, node))
        && (!c.honor_taints || untolerated_taint(pod.tolerations, &node.taints).is_none())
}

/// Which label sets hold pods the constraint counts: in the pod's namespace and selected.
fn selected_sets(c: &Constraint, pod: &Incoming, snap: &Snapshot) -> Vec<bool> {
    snap.classify(|set| {
        set.namespace == pod.namespace && selector_matches(c.selector.as_ref(), Some(&set.labels))
    })
}

/// Non-terminating pods on the node whose label set is `selected`.
fn matching(node: &NodeInfo, selected: &[bool]) -> i64 {
    node.groups
        .iter()
        .filter(|g| !g.terminating && selected.get(g.set as usize).copied().unwrap_or(false))
        .map(|g| i64::from(g.count))
        .sum()
}

/// Matching pods per domain for the `DoNotSchedule` constraints.
pub(crate) struct FilterState<'a> {
    constraints: Vec<Constraint<'a>>,
    counts: Vec<HashMap<&'a str, i64>>,
    min: Vec<i64>,
}

impl<'a> FilterState<'a> {
    pub(crate) fn compute(pod: &Incoming<'a>, snap: &'a Snapshot) -> Option<Self> {
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return None;
        }
        let mut counts: Vec<HashMap<&'a str, i64>> = cs.iter().map(|_| HashMap::new()).collect();
        let selected: Vec<Vec<bool>> = cs.iter().map(|c| selected_sets(c, pod, snap)).collect();
        for node in snap.nodes.iter().filter(|n| has_all_keys(&cs, n)) {
            for ((c, domains), sel) in cs.iter().zip(counts.iter_mut()).zip(&selected) {
                if !included(c, pod, node) {
                    continue;
                }
                let Some(domain) = node.labels.get(c.key) else {
                    continue;
                };
                *domains.entry(domain.as_str()).or_default() += matching(node, sel);
            }
        }
        let min = cs
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                if c.min_domains.is_some_and(|m| (domains.len() as i64) < m) {
                    0
                } else {
                    domains.values().copied().min().unwrap_or(i64::MAX / 2)
                }
            })
            .collect();
        Some(FilterState {
            constraints: cs,
            counts,
            min,
        })
    }

    pub(crate) fn check(&self, node: &NodeInfo) -> Result<(), Failure> {
        for ((c, domains), min) in self.constraints.iter().zip(&self.counts).zip(&self.min) {
            let Some(domain) = node.labels.get(c.key) else {
                return Err(Failure::SpreadMissingLabel);
            };
            let here = domains.get(domain.as_str()).copied().unwrap_or(0);
            if here + i64::from(c.self_match) - min > c.max_skew {
                return Err(Failure::Spread);
            }
        }
        Ok(())
    }
}

/// Turn raw spread scores (more matching pods = higher; None = node ignored) into 0..100
/// where the emptiest node gets the most.
fn normalize(raw: &[Option<i64>], out: &mut [i64]) {
    let valid = raw.iter().flatten();
    let min = valid.clone().copied().min().unwrap_or(0);
    let max = valid.copied().max().unwrap_or(0);
    for (o, r) in out.iter_mut().zip(raw) {
        *o = match r {
            None => 0,
            Some(_) if max == 0 => 100,
            Some(s) => 100 * (max + min - s) / max,
        };
    }
}

/// Domain-count weight: constraints over more domains weigh more.
fn weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

/// Spread score of each feasible node into `out`; false when spreading does not apply.
pub(crate) fn score(pod: &Incoming, snap: &Snapshot, feasible: &[usize], out: &mut [i64]) -> bool {
    let cs = constraints(pod, "ScheduleAnyway");
    let has_constraints = pod
        .spec()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    if cs.is_empty() {
        return !has_constraints && owner_score(pod, snap, feasible, out);
    }
    let ignored: Vec<bool> = feasible
        .iter()
        .map(|&i| !has_all_keys(&cs, &snap.nodes[i]))
        .collect();
    let scored = ignored.iter().filter(|i| !**i).count();
    let selected: Vec<Vec<bool>> = cs.iter().map(|c| selected_sets(c, pod, snap)).collect();
    // Domains of the scored nodes, for non-hostname keys; counts over every eligible node.
    let mut domains: Vec<HashMap<&str, i64>> = cs.iter().map(|_| HashMap::new()).collect();
    for (pos, &i) in feasible.iter().enumerate() {
        if ignored[pos] {
            continue;
        }
        for (c, d) in cs.iter().zip(domains.iter_mut()) {
            if let (false, Some(v)) = (c.key == HOSTNAME, snap.nodes[i].labels.get(c.key)) {
                d.insert(v.as_str(), 0);
            }
        }
    }
    if cs.iter().any(|c| c.key != HOSTNAME) {
        for node in snap.nodes.iter().filter(|n| has_all_keys(&cs, n)) {
            for ((c, d), sel) in cs.iter().zip(domains.iter_mut()).zip(&selected) {
                if c.key == HOSTNAME || !included(c, pod, node) {
                    continue;
                }
                let Some(v) = node.labels.get(c.key) else {
                    continue;
                };
                if let Some(n) = d.get_mut(v.as_str()) {
                    *n += matching(node, sel);
                }
            }
        }
    }
    let weights: Vec<f64> = cs
        .iter()
        .zip(&domains)
        .map(|(c, d)| weight(if c.key == HOSTNAME { scored } else { d.len() }))
        .collect();
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&ignored)
        .map(|(&i, &skip)| {
            if skip {
                return None;
            }
            let node = &snap.nodes[i];
            let mut s = 0.0;
            for (((c, d), w), sel) in cs.iter().zip(&domains).zip(&weights).zip(&selected) {
                let Some(v) = node.labels.get(c.key) else {
                    continue;
                };
                let n = if c.key == HOSTNAME {
                    matching(node, sel)
                } else {
                    d.get(v.as_str()).copied().unwrap_or(0)
                };
                s += n as f64 * w + (c.max_skew - 1) as f64;
            }
            Some(s.round() as i64)
        })
        .collect();
    normalize(&raw, out);
    true
}

/// Default spreading of a controller's replicas over nodes.
fn owner_score(pod: &Incoming, snap: &Snapshot, feasible: &[usize], out: &mut [i64]) -> bool {
    let Some(owner) = pod.owner_uid.and_then(|uid| snap.owner_id(uid)) else {
        return false; // no replica placed yet: every node is equal
    };
    let w = weight(feasible.len());
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .map(|&i| {
            let n = snap.nodes[i].owner_count(owner);
            Some((n as f64 * w + (DEFAULT_MAX_SKEW - 1) as f64).round() as i64)
        })
        .collect();
    normalize(&raw, out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptier_domains_score_higher_and_ignored_nodes_score_zero() {
        let mut out = vec![0; 4];
        normalize(&[Some(2), Some(6), None, Some(4)], &mut out);
        assert_eq!(out, vec![100, 33, 0, 66]);
        normalize(&[Some(0), Some(0), None, Some(0)], &mut out);
        assert_eq!(out, vec![100, 100, 0, 100]);
    }
}
