//! Small pieces of Kubernetes' API machinery that every layer needs on typed objects:
//! resource quantities, label selectors and what the storage pieces share about claims
//! and volumes. No I/O; nothing here knows about the store or
//! the API server, so the control loops and the agent can use it as well.

pub mod labels;
pub mod quantity;
pub mod storage;

/// The Kubernetes version skiff serves and its kubelet reports (`kubectl version`,
/// `kubectl get nodes`).
pub const GIT_VERSION: &str = concat!("v1.32.0+skiff-", env!("CARGO_PKG_VERSION"));
