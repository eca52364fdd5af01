//! `skiff runtime-bench` (hidden): times create+start+wait+delete of one trivial
//! container through [`Runtime`], N times in a row, and can write the same container's
//! OCI `config.json` so that `benches/runtime.sh` runs runc and crun on the identical
//! bundle.

use std::path::PathBuf;
use std::time::Instant;

use super::spec::{to_oci, ContainerSpec};
use super::{Runtime, RuntimeConfig, RuntimeError};

/// Arguments of `skiff runtime-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The container's root filesystem (a busybox dir).
    #[arg(long)]
    pub rootfs: PathBuf,
    /// The runtime's run dir (state, sockets).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// How many lifecycles to time.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub iterations: usize,
    /// The command to run, split at whitespace (default: `true`).
    #[arg(long, default_value = "true")]
    pub command: String,
    /// Also write the container's OCI bundle (`config.json`) into this dir and exit.
    #[arg(long)]
    pub bundle_out: Option<PathBuf>,
    /// Do not seal the re-executed binary into a memfd.
    #[arg(long)]
    pub no_seal: bool,
}

fn bench_spec(args: &BenchArgs) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        "skiff-bench",
        &args.rootfs,
        args.command.split_whitespace().map(String::from).collect(),
    );
    spec.cgroup_parent = Some("/skiff-bench".into());
    spec.log_path = args.run_dir.join("bench.log");
    spec
}

/// Run the benchmark; prints one line: `skiff n=<N> median_ms=<m> p90_ms=<p> mean_ms=<a>`.
pub fn run(args: BenchArgs) -> Result<(), RuntimeError> {
    let spec = bench_spec(&args);
    if let Some(dir) = &args.bundle_out {
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let oci = to_oci(&spec)?;
        let path = dir.join("config.json");
        oci.save(&path).map_err(|e| RuntimeError::Io {
            context: format!("writing {}", path.display()),
            source: std::io::Error::other(e),
        })?;
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| RuntimeError::Io {
            context: "starting tokio".into(),
            source,
        })?;
    rt.block_on(async {
        let mut config = RuntimeConfig::new(&args.run_dir)?;
        config.seal_binary = !args.no_seal;
        let runtime = Runtime::new(config)?;
        let mut times = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations {
            let t = Instant::now();
            runtime.create_and_start(&spec).await?;
            let state = runtime.wait(&spec.id).await?;
            runtime.delete(&spec.id).await?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if let Some(exit) = state.exit.filter(|e| e.exit_code != 0) {
                eprintln!("warning: the container exited {}", exit.exit_code);
            }
        }
        // The parent cgroup is the caller's to remove (the agent's pod cgroup); here that
        // is us.
        if let Err(e) = super::cgroup::remove("/skiff-bench") {
            eprintln!("warning: {e}");
        }
        times.sort_by(f64::total_cmp);
        let n = times.len();
        if n == 0 {
            return Ok(());
        }
        let mean = times.iter().sum::<f64>() / n as f64;
        println!(
            "skiff n={n} median_ms={:.2} p90_ms={:.2} mean_ms={:.2}",
            times[n / 2],
            times[(n * 9 / 10).min(n - 1)],
            mean
        );
        Ok(())
    })
}
