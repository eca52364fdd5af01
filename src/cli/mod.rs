//! The command line: `skiff server`, `skiff kubectl`, `skiff images`, `skiff --version`, with k3s's flag
//! names and a config file (`/etc/skiff/config.yaml`) whose keys are the flag names.

pub mod config;
pub mod images;
pub mod kubectl;
pub mod kubernetes_service;
pub mod server;

pub use server::{init_logging, shutdown_signal};

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// skiff: a lightweight, single-binary Kubernetes distribution.
#[derive(Debug, Parser)]
#[command(name = "skiff", version = concat!(env!("CARGO_PKG_VERSION"), " (kubernetes v1.32)"), args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (API server, store) and, unless disabled, the agent.
    Server(Box<server::ServerArgs>),
    /// Run the system kubectl with skiff's admin kubeconfig.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Manage the node's images: import, ls, rm, pull.
    Images(images::ImagesArgs),
    /// Simulate nodes (like kwok): register them, renew their leases and play kubelet for
    /// their pods without running containers.
    Simulate(Box<crate::simulate::SimulateArgs>),
    /// The per-container shim the agent re-executes (internal).
    #[command(hide = true)]
    Shim(ShimArgs),
    /// Runs a command in a running container for the agent (internal).
    #[command(hide = true)]
    ShimExec(ShimExecArgs),
    /// Time container lifecycles through the embedded runtime (internal, benchmarks).
    #[command(hide = true)]
    RuntimeBench(crate::runtime::bench::BenchArgs),
}

/// Arguments of `skiff shim`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShimArgs {
    /// The runtime's run dir.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// The container to run (its bundle is in `<run-dir>/containers/<id>`).
    #[arg(long)]
    pub id: String,
}

/// Arguments of `skiff shim-exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShimExecArgs {
    /// The runtime's run dir.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// The running container to run the command in.
    #[arg(long)]
    pub id: String,
    /// Run the command on a new pty (handed to the agent).
    #[arg(long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Images(#[from] crate::runtime::image::ImageError),
    #[error("running {program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
}

/// Parse the process arguments (with the config file folded in) and run.
pub fn main() -> i32 {
    let raw: Vec<OsString> = std::env::args_os().collect();
    // `skiff shim` first, before any config file, runtime or thread: libcontainer must
    // clone from a single-threaded process (src/runtime/shim.rs).
    if raw.get(1).is_some_and(|a| a == "shim") {
        // The form the runtime uses, read without building the whole command line (clap's
        // tree of every subcommand): a shim lives as long as its container, so what it
        // touches stays resident. Anything else goes through clap (and its errors).
        if let [_, _, f1, run_dir, f2, id] = raw.as_slice() {
            if f1 == "--run-dir" && f2 == "--id" {
                if let Some(id) = id.to_str() {
                    return crate::runtime::shim::main(std::path::Path::new(run_dir), id);
                }
            }
        }
    }
    if raw.get(1).is_some_and(|a| a == "shim" || a == "shim-exec") {
        return match Cli::try_parse_from(&raw) {
            Ok(Cli {
                command: Command::Shim(args),
            }) => crate::runtime::shim::main(&args.run_dir, &args.id),
            Ok(Cli {
                command: Command::ShimExec(a),
            }) => crate::runtime::exec::main(&a.run_dir, &a.id, a.tty, a.argv),
            Ok(_) => 2,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        };
    }
    let argv = match config::merge_config_file(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let cli = Cli::parse_from(argv);
    let result = match cli.command {
        Command::Server(args) => server::run(*args).map_err(CliError::from),
        Command::Kubectl { args } => kubectl::run(args),
        Command::Images(args) => images::run(args).map_err(CliError::from),
        Command::Simulate(args) => crate::simulate::run(*args).map_err(CliError::from),
        Command::Shim(args) => return crate::runtime::shim::main(&args.run_dir, &args.id),
        Command::ShimExec(a) => {
            return crate::runtime::exec::main(&a.run_dir, &a.id, a.tty, a.argv)
        }
        Command::RuntimeBench(args) => crate::runtime::bench::run(args).map_err(CliError::from),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Where skiff keeps the admin kubeconfig unless told otherwise.
pub fn default_kubeconfig() -> PathBuf {
    PathBuf::from("/etc/skiff/skiff.yaml")
}
