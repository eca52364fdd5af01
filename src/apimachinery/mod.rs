//! Small pieces of Kubernetes' API machinery that every layer needs on typed objects:
//! resource quantities and label selectors. No I/O; nothing here knows about the store or
//! the API server, so the control loops and the agent can use it as well.

pub mod labels;
pub mod quantity;
