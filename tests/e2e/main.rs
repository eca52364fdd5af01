//! End-to-end tests: the real `skiff` binary driven by the real kubectl.

mod harness;
#[path = "../support/image.rs"]
mod image;
#[path = "../support/registry.rs"]
mod registry;

mod apply;
mod autoscale;
mod batch;
mod crash;
mod drain;
mod errors;
mod gc;
mod get;
mod mutate;
mod node;
mod openapi;
mod server;
mod services;
mod tokens;
mod workloads;
