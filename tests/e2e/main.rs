//! End-to-end tests: the real `skiff` binary driven by the real kubectl.

mod harness;

mod apply;
mod autoscale;
mod batch;
mod crash;
mod drain;
mod errors;
mod gc;
mod get;
mod mutate;
mod openapi;
mod server;
mod services;
mod tokens;
mod workloads;
