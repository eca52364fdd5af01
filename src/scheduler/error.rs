//! Why a pod could not be scheduled, rendered exactly as kube-scheduler 1.32 words the
//! FailedScheduling event and the PodScheduled condition message:
//!
//! `0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: },
//! 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for
//! scheduling, 2 No preemption victims found for incoming pod.`
//!
//! Each part is a histogram "count reason", the entries sorted as strings. skiff does not
//! preempt, but it reports what upstream's preemption reports when it finds no victims:
//! nodes rejected for reasons eviction cannot fix are "not helpful", the others have "no
//! victims".

use std::collections::BTreeMap;
use std::fmt;

/// Why a pod fits no node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// The cluster has no nodes.
    #[error("no nodes available to schedule pods")]
    NoNodes,
    /// No node passed the filters.
    #[error("{0}")]
    Unschedulable(Diagnosis),
}

/// What the preemption step reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preemption {
    /// The pod has `preemptionPolicy: Never`.
    NotEligible,
    /// Nodes where evicting pods could not help, and nodes without lower-priority pods.
    NoCandidates {
        not_helpful: usize,
        no_victims: usize,
    },
}

/// The per-node reasons behind a [`FitError::Unschedulable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Nodes in the cluster.
    pub num_all_nodes: usize,
    /// Set when the pod was rejected before any node was looked at.
    pub pre_filter: Option<String>,
    /// Reason → number of nodes that gave it (a node may give several).
    pub reasons: BTreeMap<String, usize>,
    pub preemption: Preemption,
}

fn histogram<'a>(entries: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut parts: Vec<String> = entries
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    parts.join(", ")
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter {
            write!(f, " {msg}.")?;
        } else if !self.reasons.is_empty() {
            let h = histogram(self.reasons.iter().map(|(r, n)| (r.as_str(), *n)));
            write!(f, " {h}.")?;
        }
        match &self.preemption {
            Preemption::NotEligible => {
                write!(
                    f,
                    " preemption: not eligible due to preemptionPolicy=Never."
                )
            }
            Preemption::NoCandidates {
                not_helpful,
                no_victims,
            } => {
                let h = histogram(
                    [
                        ("Preemption is not helpful for scheduling", *not_helpful),
                        ("No preemption victims found for incoming pod", *no_victims),
                    ]
                    .into_iter(),
                );
                write!(
                    f,
                    " preemption: 0/{} nodes are available: {h}.",
                    self.num_all_nodes
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_kube_scheduler() {
        let d = Diagnosis {
            num_all_nodes: 3,
            pre_filter: None,
            reasons: [
                ("Insufficient cpu".to_string(), 2),
                (
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
                        .to_string(),
                    1,
                ),
            ]
            .into(),
            preemption: Preemption::NoCandidates {
                not_helpful: 1,
                no_victims: 2,
            },
        };
        assert_eq!(
            FitError::Unschedulable(d).to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption \
             victims found for incoming pod."
        );
        assert_eq!(
            FitError::NoNodes.to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn histogram_sorts_as_strings_like_go() {
        // "12 …" sorts before "3 …": the counts are part of the string.
        let h = histogram([("b", 3), ("a", 12), ("c", 0)].into_iter());
        assert_eq!(h, "12 a, 3 b");
    }

    #[test]
    fn pre_filter_message_replaces_node_reasons() {
        let d = Diagnosis {
            num_all_nodes: 2,
            pre_filter: Some("pod affinity terms conflict".into()),
            reasons: BTreeMap::new(),
            preemption: Preemption::NotEligible,
        };
        assert_eq!(
            d.to_string(),
            "0/2 nodes are available: pod affinity terms conflict. preemption: not eligible \
             due to preemptionPolicy=Never."
        );
    }
}
