//! The pods of this node: what to do next for each ([`plan`], kubelet's
//! `computePodActions` and `getPhase`), the runtime spec of each container
//! ([`containerspec`]) and the status to report ([`status`]). All three are pure; the workers that carry the plans out with the runtime, images and the pod
//! network come next (issue 4).

pub mod containerspec;
pub mod plan;
pub mod status;
