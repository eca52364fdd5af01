//! Node selection by the pod: `spec.nodeSelector`, required and preferred node affinity
//! (`matchExpressions` with In/NotIn/Exists/DoesNotExist/Gt/Lt, `matchFields` on
//! `metadata.name`), and the pre-filter that narrows the search to the nodes a
//! `metadata.name` affinity names (how DaemonSet pods are pinned).
//!
//! Terms are ORed, requirements within a term ANDed; an empty term, or one with an invalid
//! requirement, matches no node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use super::snapshot::NodeInfo;

/// The only field a node selector term may match on.
const FIELD_NAME: &str = "metadata.name";

/// Whether a label requirement holds for a node label `value`; `None` when the
/// requirement itself is invalid (such a term matches nothing).
fn expression_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> Option<bool> {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    Some(match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => return None,
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" | "DoesNotExist" if !values.is_empty() => return None,
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return None };
            let bound = number(bound)?;
            match value.and_then(number) {
                None => false,
                Some(v) if req.operator == "Gt" => v > bound,
                Some(v) => v < bound,
            }
        }
        _ => return None,
    })
}

/// Whether a field requirement holds for the node named `name`.
fn field_matches(req: &NodeSelectorRequirement, name: &str) -> Option<bool> {
    let values = req.values.as_deref().unwrap_or_default();
    let [value] = values else { return None };
    let actual = if req.key == FIELD_NAME { name } else { "" };
    match req.operator.as_str() {
        "In" => Some(actual == value),
        "NotIn" => Some(actual != value),
        _ => None,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| expression_matches(r, node.labels.get(&r.key).map(String::as_str)) == Some(true))
        && fields
            .iter()
            .all(|r| field_matches(r, &node.name) == Some(true))
}

fn selector_matches(sel: &NodeSelector, node: &NodeInfo) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

fn required(pod: &Pod) -> Option<&NodeSelector> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// The pod's `nodeSelector` and required node affinity both accept the node.
pub(crate) fn required_matches(pod: &Pod, node: &NodeInfo) -> bool {
    let selector_ok = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)));
    selector_ok && required(pod).is_none_or(|sel| selector_matches(sel, node))
}

/// Whether the pod states any preferred node affinity.
pub(crate) fn has_preferred(pod: &Pod) -> bool {
    preferred_terms(pod).next().is_some()
}

fn preferred_terms(pod: &Pod) -> impl Iterator<Item = (i64, &NodeSelectorTerm)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0)
        .map(|t| (i64::from(t.weight), &t.preference))
}

/// Sum of the weights of the preferred terms the node matches.
pub(crate) fn preferred_score(pod: &Pod, node: &NodeInfo) -> i64 {
    preferred_terms(pod)
        .filter(|(_, t)| term_matches(t, node))
        .map(|(w, _)| w)
        .sum()
}

/// Which nodes the required node affinity can possibly accept, judged by name alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameScope<'a> {
    /// No restriction by name.
    All,
    /// Only these nodes (every term pins `metadata.name In [...]`).
    Only(BTreeSet<&'a str>),
    /// The terms name no node at all.
    Conflict,
}

/// Upstream's NodeAffinity pre-filter: when every term pins `metadata.name`, only the
/// named nodes are evaluated.
pub(crate) fn name_scope(pod: &Pod) -> NameScope<'_> {
    let Some(sel) = required(pod) else {
        return NameScope::All;
    };
    if sel.node_selector_terms.is_empty() {
        return NameScope::All;
    }
    let mut names = BTreeSet::new();
    for term in &sel.node_selector_terms {
        let mut term_names: Option<BTreeSet<&str>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == FIELD_NAME && r.operator == "In" {
                let these: BTreeSet<&str> = r.values.iter().flatten().map(String::as_str).collect();
                term_names = Some(match term_names {
                    None => these,
                    Some(prev) => prev.intersection(&these).copied().collect(),
                });
            }
        }
        match term_names {
            // A term not pinned by name may match any node.
            None => return NameScope::All,
            Some(n) => names.extend(n),
        }
    }
    if names.is_empty() {
        NameScope::Conflict
    } else {
        NameScope::Only(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn info(name: &str, labels: serde_json::Value) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .expect("valid node");
        let mut s = super::super::snapshot::Snapshot::new();
        s.add_node(&node);
        s.nodes.pop().expect("one node")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("valid pod")
    }

    fn required_terms(terms: serde_json::Value) -> Pod {
        pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }}}))
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = info("n1", json!({"disk": "ssd", "zone": "a"}));
        let p = |sel: serde_json::Value| pod(json!({"containers": [], "nodeSelector": sel}));
        assert!(required_matches(&p(json!({"disk": "ssd"})), &n));
        assert!(!required_matches(
            &p(json!({"disk": "ssd", "zone": "b"})),
            &n
        ));
    }

    #[test]
    fn expression_operators() {
        let n = info("n1", json!({"disk": "ssd", "cores": "16"}));
        let check = |key: &str, op: &str, values: serde_json::Value| {
            let p = required_terms(json!([{"matchExpressions": [
                {"key": key, "operator": op, "values": values}
            ]}]));
            required_matches(&p, &n)
        };
        assert!(check("disk", "In", json!(["hdd", "ssd"])));
        assert!(!check("disk", "NotIn", json!(["ssd"])));
        assert!(check("gpu", "NotIn", json!(["a100"])));
        assert!(check("disk", "Exists", json!(null)));
        assert!(check("gpu", "DoesNotExist", json!(null)));
        assert!(check("cores", "Gt", json!(["8"])));
        assert!(!check("cores", "Lt", json!(["8"])));
        assert!(
            !check("disk", "Gt", json!(["8"])),
            "non-numeric label never compares"
        );
        assert!(
            !check("disk", "In", json!([])),
            "invalid requirement matches nothing"
        );
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let n = info("n1", json!({"disk": "ssd"}));
        let p = required_terms(json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]));
        assert!(required_matches(&p, &n));
        assert!(!required_matches(&required_terms(json!([{}])), &n));
    }

    #[test]
    fn name_scope_follows_metadata_name_pins() {
        let ds = required_terms(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
        ]));
        assert_eq!(name_scope(&ds), NameScope::Only(["n2"].into()));
        let mixed = required_terms(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
        ]));
        assert_eq!(name_scope(&mixed), NameScope::All);
        let conflict = required_terms(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a"]},
            {"key": "metadata.name", "operator": "In", "values": ["b"]}
        ]}]));
        assert_eq!(name_scope(&conflict), NameScope::Conflict);
    }

    #[test]
    fn preferred_terms_sum_matching_weights() {
        let n = info("n1", json!({"disk": "ssd", "zone": "a"}));
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 50, "preference": {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b"]}]}}
            ]
        }}}));
        assert!(has_preferred(&p));
        assert_eq!(preferred_score(&p, &n), 15);
    }
}
