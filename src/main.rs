//! The `skiff` executable: everything is in the library; this only runs the CLI.

/// mimalloc instead of glibc's malloc: the API path allocates many small, short-lived
/// objects from many threads; glibc's malloc/free/consolidation took ~20 % of the server's
/// CPU under 64 concurrent creates (docs/benchmarks.md). Its arenas are committed on demand
/// (`.cargo/config.toml`), which keeps the idle RSS where glibc had it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(skiff::cli::main());
}
