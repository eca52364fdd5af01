//! The filters a node must pass, in kube-scheduler's plugin order: NodeUnschedulable,
//! NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding,
//! PodTopologySpread,
//! InterPodAffinity. The first one that rejects a node decides its [`Failure`], which keeps
//! only indices and flags; the reason strings of the FailedScheduling message are built
//! only when no node fits.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::interpod;
use super::nodeaffinity;
use super::podinfo::Incoming;
use super::snapshot::{NodeInfo, TAINT_UNSCHEDULABLE};
use super::spread;
use super::volumebinding;

/// Which resources a node lacks for the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shortage {
    pub(crate) pods: bool,
    pub(crate) cpu: bool,
    pub(crate) memory: bool,
    pub(crate) ephemeral: bool,
    /// Bit i: the pod's i-th extended resource (first 64).
    pub(crate) scalars: u64,
}

/// Why a node was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Unschedulable,
    NodeName,
    /// Index into the node's effective taints.
    Taint(usize),
    NodeAffinity,
    Ports,
    Resources(Shortage),
    SpreadMissingLabel,
    Spread,
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    /// A bound volume of the pod (or a claim promised to another node) excludes the node.
    VolumeNodeAffinity,
    /// No free static volume on the node for a claim that cannot be provisioned.
    VolumeBind,
}

impl Failure {
    /// Whether evicting pods could never help (upstream's UnschedulableAndUnresolvable),
    /// which decides the preemption part of the message.
    pub(crate) fn unresolvable(&self) -> bool {
        matches!(
            self,
            Failure::Unschedulable
                | Failure::NodeName
                | Failure::Taint(_)
                | Failure::NodeAffinity
                | Failure::SpreadMissingLabel
                | Failure::PodAffinity
                | Failure::VolumeNodeAffinity
                | Failure::VolumeBind
        )
    }

    /// The reason strings kube-scheduler reports for this rejection.
    pub(crate) fn reasons(&self, pod: &Incoming, node: &NodeInfo, out: &mut Vec<String>) {
        let fixed = match self {
            Failure::Unschedulable => "node(s) were unschedulable",
            Failure::NodeName => "node(s) didn't match the requested node name",
            Failure::NodeAffinity => "node(s) didn't match Pod's node affinity/selector",
            Failure::Ports => "node(s) didn't have free ports for the requested pod ports",
            Failure::SpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
            }
            Failure::Spread => "node(s) didn't match pod topology spread constraints",
            Failure::PodAffinity => "node(s) didn't match pod affinity rules",
            Failure::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules",
            Failure::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules"
            }
            Failure::VolumeNodeAffinity => "node(s) had volume node affinity conflict",
            Failure::VolumeBind => "node(s) didn't find available persistent volumes to bind",
            Failure::Taint(i) => {
                if let Some(t) = node.taints.get(*i) {
                    out.push(format!(
                        "node(s) had untolerated taint {{{}: {}}}",
                        t.key,
                        t.value.as_deref().unwrap_or_default()
                    ));
                }
                return;
            }
            Failure::Resources(s) => {
                let flags = [
                    (s.pods, "Too many pods"),
                    (s.cpu, "Insufficient cpu"),
                    (s.memory, "Insufficient memory"),
                    (s.ephemeral, "Insufficient ephemeral-storage"),
                ];
                out.extend(flags.iter().filter(|(f, _)| *f).map(|(_, r)| r.to_string()));
                for (i, (name, _)) in pod.requests.scalars.iter().enumerate().take(64) {
                    if s.scalars & (1 << i) != 0 {
                        out.push(format!("Insufficient {name}"));
                    }
                }
                return;
            }
        };
        out.push(fixed.to_string());
    }
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`): effect and key
/// must agree unless left empty; `Exists` ignores the value, `Equal` (the default)
/// compares it.
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "Exists" => true,
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint none of the tolerations tolerate.
pub(crate) fn untolerated_taint(tolerations: &[Toleration], taints: &[Taint]) -> Option<usize> {
    taints.iter().position(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

fn tolerates_cordon(tolerations: &[Toleration]) -> bool {
    let cordon = Taint {
        key: TAINT_UNSCHEDULABLE.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    };
    tolerations.iter().any(|t| tolerates(t, &cordon))
}

fn fits_resources(pod: &Incoming, node: &NodeInfo) -> Result<(), Failure> {
    let mut s = Shortage {
        pods: node.pod_count + 1 > node.allowed_pods,
        ..Shortage::default()
    };
    let want = &pod.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    s.cpu = want.cpu > 0 && want.cpu > alloc.cpu - used.cpu;
    s.memory = want.memory > 0 && want.memory > alloc.memory - used.memory;
    s.ephemeral = want.ephemeral > 0 && want.ephemeral > alloc.ephemeral - used.ephemeral;
    for (i, (name, amount)) in want.scalars.iter().enumerate().take(64) {
        if *amount > alloc.scalar(name) - used.scalar(name) {
            s.scalars |= 1 << i;
        }
    }
    if s == Shortage::default() {
        Ok(())
    } else {
        Err(Failure::Resources(s))
    }
}

/// Run every filter on one node.
pub(crate) fn run(
    pod: &Incoming,
    spread: Option<&spread::FilterState>,
    inter: Option<&interpod::FilterState>,
    volumes: Option<(&volumebinding::FilterState, &volumebinding::Storage)>,
    node: &NodeInfo,
) -> Result<(), Failure> {
    if node.unschedulable && !tolerates_cordon(pod.tolerations) {
        return Err(Failure::Unschedulable);
    }
    if pod.node_name.is_some_and(|n| n != node.name) {
        return Err(Failure::NodeName);
    }
    if let Some(i) = untolerated_taint(pod.tolerations, &node.taints) {
        return Err(Failure::Taint(i));
    }
    if !nodeaffinity::required_matches(pod.pod, node) {
        return Err(Failure::NodeAffinity);
    }
    if pod
        .ports
        .iter()
        .any(|p| node.used_ports.iter().any(|(u, _)| p.conflicts(u)))
    {
        return Err(Failure::Ports);
    }
    fits_resources(pod, node)?;
    if let Some((v, storage)) = volumes {
        v.check(storage, node)?;
    }
    if let Some(s) = spread {
        s.check(node)?;
    }
    if let Some(s) = inter {
        s.check(pod, node)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("valid toleration")
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_matching_rules() {
        let gpu = taint("gpu", Some("a100"), "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "value": "a100", "effect": "NoSchedule"})),
            &gpu
        ));
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "operator": "Equal", "value": "a100"})),
            &gpu
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "gpu", "value": "t4"})),
            &gpu
        ));
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "operator": "Exists"})),
            &gpu
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"})),
            &gpu
        ));
        assert!(
            tolerates(&toleration(json!({"operator": "Exists"})), &gpu),
            "tolerates all"
        );
        assert!(!tolerates(
            &toleration(json!({"key": "other", "operator": "Exists"})),
            &gpu
        ));
    }

    #[test]
    fn only_no_schedule_and_no_execute_taints_block() {
        let taints = vec![
            taint("soft", None, "PreferNoSchedule"),
            taint("dedicated", Some("db"), "NoExecute"),
        ];
        assert_eq!(untolerated_taint(&[], &taints), Some(1));
        let tol = [toleration(
            json!({"key": "dedicated", "operator": "Exists"}),
        )];
        assert_eq!(untolerated_taint(&tol, &taints), None);
    }
}
