//! End-to-end tests: the real `skiff` binary driven by the real kubectl.

mod harness;

mod apply;
mod crash;
mod errors;
mod get;
mod mutate;
mod server;
mod services;
mod workloads;
