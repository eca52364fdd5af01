//! The pods of this node: what to do next for each ([`plan`], kubelet's
//! `computePodActions` and `getPhase`), the runtime spec of each container
//! ([`containerspec`]), the files of its volumes ([`volumes`]) and the status to report
//! ([`status`]), the probes and lifecycle hooks ([`probe`]), and the workers that carry
//! the plans out with the runtime, images and the pod network ([`worker`], [`manager`]).

pub mod containerspec;
pub mod manager;
pub mod plan;
pub mod probe;
pub mod status;
pub mod volumes;
pub mod worker;
