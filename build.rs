//! Link settings of the `skiff` executable.
//!
//! The executable is linked position-dependent (`-no-pie`): a PIE build carries ~60 000
//! relative relocations (vtables, string tables in `.data.rel.ro`, the GOT) that the
//! dynamic loader writes at every start, so each process gets ~1.1 MiB of private copies
//! of those pages. Every container has one `skiff shim` process for its whole life
//! (docs/benchmarks.md, "Pod start latency and node memory"), and without relocations those
//! pages stay shared with the page cache (or the sealed memfd) and the loader has nothing
//! to do. The cost is that the executable's own code and data are not address-randomized
//! (the heap, stacks and shared libraries still are).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
