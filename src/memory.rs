//! The process's heap: handing freed memory back to the kernel after a burst of
//! short-lived allocations.
//!
//! The `skiff` executable's global allocator is mimalloc (src/main.rs). mimalloc keeps
//! pages that became free resident for a while (its `purge_delay`, 1 s) so that the next
//! allocations can reuse them cheaply; after a one-off burst (an OpenAPI document built
//! from ~10× its size in temporary JSON values) the following small allocations land in
//! those still-resident pages one by one, and the burst's footprint stays in RSS for good
//! (docs/benchmarks.md, "Pod start latency and node memory"). [`release_freed`] right
//! after such a burst purges them while they are still free. glibc's `malloc_trim` does
//! nothing here: Rust code does not allocate through glibc's malloc.

// `use` keeps the crate, and so mimalloc's C library, linked also into binaries that
// keep the system allocator (the unit tests), where collecting is a no-op.
use mimalloc as _;

extern "C" {
    fn mi_collect(force: bool);
}

/// Return the calling thread's free heap pages to the kernel now instead of after
/// mimalloc's purge delay. Costs about a millisecond; meant for after a burst, not for
/// hot paths.
pub fn release_freed() {
    // SAFETY: mi_collect has no preconditions; it walks only the allocator's own
    // structures (the calling thread's heap and the arenas) and frees nothing live.
    unsafe { mi_collect(true) };
}
