//! skiff: a lightweight, single-binary Kubernetes distribution.
//!
//! One folder per component; dependencies point down: `cli` → `api` → `registry` →
//! `store`, with `pki` beside them. See `docs/architecture.md`.

pub mod agent;
pub mod api;
pub mod apimachinery;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod memory;
pub mod net;
pub mod pki;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod simulate;
pub mod store;
