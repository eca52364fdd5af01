//! The `skiff` executable: everything is in the library; this only runs the CLI.

fn main() {
    std::process::exit(skiff::cli::main());
}
