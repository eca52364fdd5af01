//! Inter-pod affinity and anti-affinity over topology domains (a domain is the value of
//! the term's `topologyKey` label on a node; with `kubernetes.io/hostname` each node is
//! one).
//!
//! Filter (required terms), computed once per attempt:
//! - the pod's affinity: every term needs a matching pod in the node's domain, except for
//!   the first pod of a group whose terms select itself;
//! - the pod's anti-affinity: no matching pod may be in the node's domain;
//! - placed pods' anti-affinity: no placed pod may select the incoming pod from a domain
//!   the node is in (symmetry).
//!
//! Score (preferred terms, plus placed pods' terms that select the incoming pod): the
//! weights are summed per domain, then scaled to 0..100 between the lowest and highest
//! node.

use std::collections::HashMap;

use super::filter::Failure;
use super::podinfo::{AffinityTerm, Incoming};
use super::snapshot::{LabelGroup, LabelSet, NodeInfo, Snapshot};

/// Weight of a placed pod's required affinity term that selects the incoming pod
/// (upstream's default `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// (topology key, value) → count.
type Counts<'a> = HashMap<(&'a str, &'a str), i64>;

fn bump<'a>(counts: &mut Counts<'a>, node: &'a NodeInfo, term: &'a AffinityTerm, by: i64) {
    if let Some(v) = node.labels.get(&term.topology_key) {
        *counts
            .entry((term.topology_key.as_str(), v.as_str()))
            .or_default() += by;
    }
}

/// Pre-computed counts for the inter-pod filter.
pub(crate) struct FilterState<'a> {
    affinity: Counts<'a>,
    anti: Counts<'a>,
    existing_anti: Counts<'a>,
    /// The incoming pod matches all of its own required affinity terms.
    self_affine: bool,
}

impl<'a> FilterState<'a> {
    /// None when neither the pod nor any placed pod has a required inter-pod term.
    pub(crate) fn compute(pod: &'a Incoming<'a>, snap: &'a Snapshot) -> Option<Self> {
        let terms = &pod.affinity;
        let own = !terms.required_affinity.is_empty() || !terms.required_anti.is_empty();
        if !own && snap.with_required_anti == 0 {
            return None;
        }
        let own_ns = snap.namespace_labels(pod.namespace);
        let mut st = FilterState {
            affinity: Counts::new(),
            anti: Counts::new(),
            existing_anti: Counts::new(),
            self_affine: terms
                .required_affinity
                .iter()
                .all(|t| t.matches(pod.namespace, pod.labels, own_ns)),
        };
        let ns_labels = |set: &LabelSet| snap.namespace_labels(&set.namespace);
        let selects = |t: &AffinityTerm, set: &LabelSet| {
            t.matches(&set.namespace, Some(&set.labels), ns_labels(set))
        };
        let aff = &terms.required_affinity;
        let all_affinity = if own && !aff.is_empty() {
            snap.classify(|set| aff.iter().all(|t| selects(t, set)))
        } else {
            Vec::new()
        };
        let anti: Vec<Vec<bool>> = if own {
            let per_term = |t: &AffinityTerm| snap.classify(|set| selects(t, set));
            terms.required_anti.iter().map(per_term).collect()
        } else {
            Vec::new()
        };
        let hit = |sel: &[bool], g: &LabelGroup| sel.get(g.set as usize).copied().unwrap_or(false);
        for node in &snap.nodes {
            if snap.with_required_anti > 0 {
                for (_, placed) in &node.affinity_pods {
                    for t in &placed.terms.required_anti {
                        if t.matches(pod.namespace, pod.labels, own_ns) {
                            bump(&mut st.existing_anti, node, t, 1);
                        }
                    }
                }
            }
            if !own {
                continue;
            }
            for g in &node.groups {
                let n = i64::from(g.count);
                if hit(&all_affinity, g) {
                    for t in aff {
                        bump(&mut st.affinity, node, t, n);
                    }
                }
                for (t, sel) in terms.required_anti.iter().zip(&anti) {
                    if hit(sel, g) {
                        bump(&mut st.anti, node, t, n);
                    }
                }
            }
        }
        Some(st)
    }

    pub(crate) fn check(&self, pod: &Incoming, node: &NodeInfo) -> Result<(), Failure> {
        let count = |m: &Counts, key: &str, value: &str| m.get(&(key, value)).copied().unwrap_or(0);
        let aff = &pod.affinity.required_affinity;
        if !aff.is_empty() {
            let mut found_everywhere = true;
            for t in aff {
                let Some(v) = node.labels.get(&t.topology_key) else {
                    return Err(Failure::PodAffinity);
                };
                if count(&self.affinity, &t.topology_key, v) <= 0 {
                    found_everywhere = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere.
            let first_of_group = self.affinity.is_empty() && self.self_affine;
            if !(found_everywhere || first_of_group) {
                return Err(Failure::PodAffinity);
            }
        }
        for t in &pod.affinity.required_anti {
            if let Some(v) = node.labels.get(&t.topology_key) {
                if count(&self.anti, &t.topology_key, v) > 0 {
                    return Err(Failure::PodAntiAffinity);
                }
            }
        }
        if !self.existing_anti.is_empty()
            && node
                .labels
                .iter()
                .any(|(k, v)| count(&self.existing_anti, k, v) > 0)
        {
            return Err(Failure::ExistingAntiAffinity);
        }
        Ok(())
    }
}

/// Per-domain preference sums for the score; None when nothing prefers anything.
pub(crate) struct ScoreState<'a> {
    sums: Counts<'a>,
    keys: Vec<&'a str>,
}

impl<'a> ScoreState<'a> {
    pub(crate) fn compute(pod: &'a Incoming<'a>, snap: &'a Snapshot) -> Option<Self> {
        let terms = &pod.affinity;
        let own = !terms.preferred_affinity.is_empty() || !terms.preferred_anti.is_empty();
        if !own && snap.with_affinity == 0 {
            return None;
        }
        let own_ns = snap.namespace_labels(pod.namespace);
        // (weight, term, label sets it selects) for the pod's preferred terms.
        let weighted: Vec<(i64, &AffinityTerm, Vec<bool>)> = if own {
            let with = |sign: i64| {
                move |(w, t): &'a (i64, AffinityTerm)| {
                    let sel = snap.classify(|set| {
                        let nsl = snap.namespace_labels(&set.namespace);
                        t.matches(&set.namespace, Some(&set.labels), nsl)
                    });
                    (sign * w, t, sel)
                }
            };
            let aff = terms.preferred_affinity.iter().map(with(1));
            aff.chain(terms.preferred_anti.iter().map(with(-1)))
                .collect()
        } else {
            Vec::new()
        };
        let mut sums = Counts::new();
        for node in &snap.nodes {
            for g in &node.groups {
                for (w, t, sel) in &weighted {
                    if sel.get(g.set as usize).copied().unwrap_or(false) {
                        bump(&mut sums, node, t, w * i64::from(g.count));
                    }
                }
            }
            for (_, placed) in &node.affinity_pods {
                let selects = |t: &AffinityTerm| t.matches(pod.namespace, pod.labels, own_ns);
                for t in placed.terms.required_affinity.iter().filter(|t| selects(t)) {
                    bump(&mut sums, node, t, HARD_POD_AFFINITY_WEIGHT);
                }
                for (w, t) in placed
                    .terms
                    .preferred_affinity
                    .iter()
                    .filter(|(_, t)| selects(t))
                {
                    bump(&mut sums, node, t, *w);
                }
                for (w, t) in placed
                    .terms
                    .preferred_anti
                    .iter()
                    .filter(|(_, t)| selects(t))
                {
                    bump(&mut sums, node, t, -*w);
                }
            }
        }
        if sums.is_empty() {
            return None;
        }
        let mut keys: Vec<&str> = sums.keys().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        Some(ScoreState { sums, keys })
    }

    /// The node's raw preference: the sums of every domain it belongs to.
    pub(crate) fn raw(&self, node: &NodeInfo) -> i64 {
        self.keys
            .iter()
            .filter_map(|k| {
                let v = node.labels.get(*k)?;
                self.sums.get(&(*k, v.as_str()))
            })
            .sum()
    }
}

/// Scale raw preferences to 0..100 between the lowest and the highest (all 0 when equal).
pub(crate) fn normalize(raw: &mut [i64]) {
    let (Some(&min), Some(&max)) = (raw.iter().min(), raw.iter().max()) else {
        return;
    };
    let span = max - min;
    for s in raw.iter_mut() {
        *s = if span > 0 { 100 * (*s - min) / span } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_spans_lowest_to_highest() {
        let mut raw = vec![-5, 0, 15];
        normalize(&mut raw);
        assert_eq!(raw, vec![0, 25, 100]);
        let mut flat = vec![7, 7];
        normalize(&mut flat);
        assert_eq!(flat, vec![0, 0]);
    }
}
