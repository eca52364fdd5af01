//! `skiff-bench`: skiff's benchmark driver (built with `--features bench`; see
//! `docs/benchmarks.md` and `benches/run.sh`).
//!
//! Parts, each a subcommand (`all` runs every one and prints one markdown report):
//! - `creates`: durable creates per second and p50/p99 latency at 1, 16 and 64 concurrent
//!   clients for three systems measured in the same run, interleaved per repetition:
//!   the store alone (`SledStore::create` in-process, through the `Store` trait), etcd
//!   (`Put` through `etcd-client`, one gRPC connection per client, etcd started here with
//!   default fsync durability) and the whole API path (`POST .../configmaps` over HTTPS
//!   with the admin client certificate, one TLS connection per client) of a
//!   `skiff server --disable-agent` started here.
//! - `list`: full LIST of 10,000 ConfigMaps over HTTPS, as JSON and as a kubectl Table
//!   (whole, and paged by 500 the way `kubectl get` pages).
//! - `rss`: idle VmRSS of a fresh `skiff server --disable-agent`, some seconds after ready.
//! - `startup`: time from process start to `/readyz` OK on a fresh data dir.
//!
//! Every run is bounded (a fixed number of operations and a timeout). Everything started
//! (processes, temp dirs) is stopped by PID / removed on the way out.

// A crate root finds modules beside itself (src/bin/); ours live in src/bin/skiff-bench/.
#[path = "skiff-bench/https.rs"]
mod https;
#[path = "skiff-bench/load.rs"]
mod load;
#[path = "skiff-bench/proc.rs"]
mod proc;
#[path = "skiff-bench/targets.rs"]
mod targets;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{Method, StatusCode};
use skiff::store::{SledOptions, SledStore};

use https::{Conn, Proto};
use load::{median, ms, percentile, Run};
use targets::{payload, ApiWorker, Etcd, EtcdWorker, Skiff, StoreWorker};

/// The error type of this binary: any error, with its context in the message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An [`Error`] from a message.
pub fn err(message: impl Into<String>) -> Error {
    message.into().into()
}

#[derive(Debug, Parser)]
#[command(
    name = "skiff-bench",
    version,
    about = "Benchmarks skiff's store and API server against etcd"
)]
struct Cli {
    #[command(subcommand)]
    part: Part,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Part {
    /// Durable creates/s and latency: store alone, etcd, skiff API over HTTPS.
    Creates,
    /// LIST of many ConfigMaps over HTTPS (JSON and Table).
    List,
    /// Idle RSS of a fresh `skiff server --disable-agent`.
    Rss,
    /// Time from process start to /readyz OK on a fresh data dir.
    Startup,
    /// Every part, one markdown report.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// SledStore in-process, through the Store trait.
    Store,
    /// etcd Put through etcd-client.
    Etcd,
    /// skiff server, POST configmaps over HTTPS.
    Api,
}

#[derive(Debug, Clone, Args)]
struct Opts {
    /// The skiff binary (default: `skiff` next to this executable).
    #[arg(long, global = true)]
    skiff: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, global = true, default_value = "etcd")]
    etcd: PathBuf,
    /// Where temp dirs (data dirs) go; its file system decides what fsync costs.
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// HTTP version of the HTTPS clients.
    #[arg(long, global = true, value_enum, default_value_t = Proto::H2)]
    http: Proto,
    /// Concurrency levels (clients) of `creates`.
    #[arg(long, global = true, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    clients: Vec<usize>,
    /// Systems `creates` measures.
    #[arg(long, global = true, value_delimiter = ',', value_enum,
          default_values_t = [System::Store, System::Etcd, System::Api])]
    systems: Vec<System>,
    /// Operations per run (each repetition of each level of each system).
    #[arg(long, global = true, default_value_t = 5000)]
    ops: u64,
    /// Repetitions per level (the table shows the median run's rate).
    #[arg(long, global = true, default_value_t = 5)]
    repeat: usize,
    /// Value size in bytes (store and etcd values; the ConfigMap's data value).
    #[arg(long, global = true, default_value_t = 1024)]
    value_size: usize,
    /// A run stops taking new operations after this many seconds.
    #[arg(long, global = true, default_value_t = 120)]
    timeout_secs: u64,
    /// ConfigMaps for `list`.
    #[arg(long, global = true, default_value_t = 10_000)]
    list_objects: u64,
    /// Timed LISTs per format.
    #[arg(long, global = true, default_value_t = 7)]
    list_runs: usize,
    /// Seconds between ready and reading VmRSS.
    #[arg(long, global = true, default_value_t = 5)]
    settle_secs: u64,
    /// Fresh servers measured for `rss`.
    #[arg(long, global = true, default_value_t = 3)]
    rss_runs: usize,
    /// Fresh starts measured for `startup`.
    #[arg(long, global = true, default_value_t = 10)]
    startup_runs: usize,
}

impl Opts {
    fn skiff_bin(&self) -> Result<PathBuf> {
        if let Some(p) = &self.skiff {
            return Ok(p.clone());
        }
        let me = std::env::current_exe().map_err(|e| err(format!("finding myself: {e}")))?;
        Ok(me.with_file_name("skiff"))
    }

    fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skiff-bench: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("skiff-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<String> {
    let opts = cli.opts;
    let skiff = opts.skiff_bin()?;
    if !skiff.exists() {
        return Err(err(format!(
            "no skiff binary at {} (build it, or pass --skiff)",
            skiff.display()
        )));
    }
    let mut out = String::new();
    let _ = writeln!(out, "## skiff-bench results\n");
    let _ = writeln!(
        out,
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(out, "- machine: {}", proc::machine());
    let _ = writeln!(out, "- work dir (data dirs): {}", opts.work_dir().display());
    let _ = writeln!(
        out,
        "- skiff: {} ({})",
        skiff.display(),
        proc::version_of(&skiff)
    );
    if matches!(cli.part, Part::Creates | Part::All) && opts.systems.contains(&System::Etcd) {
        let _ = writeln!(out, "- etcd: {}", proc::version_of(&opts.etcd));
    }
    let _ = writeln!(out, "- HTTPS clients: {}", opts.http.label());
    let _ = writeln!(out, "- 1-min load average at start: {}", proc::loadavg());
    let parts: &[Part] = match cli.part {
        Part::All => &[Part::Creates, Part::List, Part::Rss, Part::Startup],
        ref one => std::slice::from_ref(one),
    };
    for part in parts {
        let started = Instant::now();
        eprintln!("skiff-bench: {part:?}…");
        let section = match part {
            Part::Creates => creates(&opts, &skiff).await?,
            Part::List => list(&opts, &skiff).await?,
            Part::Rss => rss(&opts, &skiff).await?,
            Part::Startup => startup(&opts, &skiff).await?,
            Part::All => String::new(),
        };
        out.push('\n');
        out.push_str(&section);
        eprintln!(
            "skiff-bench: {part:?} done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let _ = writeln!(out, "\n- 1-min load average at end: {}", proc::loadavg());
    Ok(out)
}

/// The runs of one system at one concurrency level.
#[derive(Default)]
struct Cell {
    runs: Vec<Run>,
    /// Store alone: successful writes and group commits (flushes) over the runs.
    writes: u64,
    commits: u64,
    /// etcd and API: CPU time the server process used during the runs.
    server_cpu: Duration,
}

impl Cell {
    fn median_rate(&self) -> f64 {
        median(&self.runs.iter().map(Run::ops_per_sec).collect::<Vec<_>>())
    }

    fn rate(&self) -> String {
        if self.runs.is_empty() {
            return "–".into();
        }
        let rates: Vec<f64> = self.runs.iter().map(Run::ops_per_sec).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        let timed_out = if self.runs.iter().any(|r| r.timed_out) {
            " (timed out)"
        } else {
            ""
        };
        format!("**{:.0}** ({lo:.0}–{hi:.0}){timed_out}", self.median_rate())
    }

    fn latencies(&self) -> Vec<Duration> {
        self.runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect()
    }

    /// Server CPU per operation, in microseconds.
    fn cpu_per_op(&self) -> String {
        let ops: u64 = self.runs.iter().map(|r| r.ops).sum();
        if ops == 0 || self.server_cpu.is_zero() {
            return "–".into();
        }
        format!("{:.0} µs", self.server_cpu.as_secs_f64() * 1e6 / ops as f64)
    }

    fn p(&self, p: f64) -> String {
        if self.runs.is_empty() {
            return "–".into();
        }
        ms(percentile(&self.latencies(), p))
    }
}

fn ratio(a: &Cell, b: &Cell) -> String {
    if a.runs.is_empty() || b.runs.is_empty() {
        return "–".into();
    }
    format!("{:.2}×", a.median_rate() / b.median_rate())
}

async fn creates(opts: &Opts, skiff_bin: &Path) -> Result<String> {
    let base = opts.work_dir();
    let value = Bytes::from(payload(opts.value_size));
    let data: Arc<str> = Arc::from(payload(opts.value_size));
    let want = |s| opts.systems.contains(&s);

    // Everything is started once and kept for all levels and repetitions.
    let store_dir = proc::TempDir::new(&base, "store")?;
    let store = if want(System::Store) {
        Some(SledStore::open(
            &store_dir.path().join("db"),
            SledOptions::default(),
        )?)
    } else {
        None
    };
    let mut etcd = if want(System::Etcd) {
        Some(Etcd::start(&opts.etcd, &base).await?)
    } else {
        None
    };
    let mut server = None;
    if want(System::Api) {
        let mut s = Skiff::spawn(skiff_bin, &base)?;
        let (_, target) = s.wait_ready(opts.http, Duration::from_secs(30)).await?;
        server = Some((s, target));
    }

    let mut cells: Vec<[Cell; 3]> = Vec::new();
    for &clients in &opts.clients {
        let clients = clients.max(1);
        let mut row: [Cell; 3] = Default::default();
        for rep in 0..opts.repeat.max(1) {
            let prefix = format!("bench-c{clients}-r{rep}-");
            if let Some(store) = &store {
                let before = store.stats();
                let workers = (0..clients)
                    .map(|_| StoreWorker {
                        store: Arc::clone(store),
                        prefix: format!("/registry/configmaps/default/{prefix}"),
                        value: value.clone(),
                    })
                    .collect();
                let run = load::run(workers, opts.ops, opts.timeout()).await?;
                let after = store.stats();
                row[0].writes += after.writes - before.writes;
                row[0].commits += after.commits - before.commits;
                progress("store", clients, rep, &run);
                row[0].runs.push(run);
            }
            if let Some(etcd) = &etcd {
                let mut workers = Vec::with_capacity(clients);
                for _ in 0..clients {
                    workers.push(
                        EtcdWorker::connect(
                            &etcd.endpoint,
                            format!("/registry/configmaps/default/{prefix}"),
                            value.clone(),
                        )
                        .await?,
                    );
                }
                let cpu = proc::cpu_time(etcd.pid())?;
                let run = load::run(workers, opts.ops, opts.timeout()).await?;
                row[1].server_cpu += proc::cpu_time(etcd.pid())?.saturating_sub(cpu);
                progress("etcd", clients, rep, &run);
                row[1].runs.push(run);
            }
            if let Some((s, target)) = server.as_mut() {
                s.proc.check_running()?;
                let mut workers = Vec::with_capacity(clients);
                for _ in 0..clients {
                    workers.push(
                        ApiWorker::connect(target, "default", prefix.clone(), Arc::clone(&data))
                            .await?,
                    );
                }
                let cpu = proc::cpu_time(s.proc.pid())?;
                let run = load::run(workers, opts.ops, opts.timeout()).await?;
                row[2].server_cpu += proc::cpu_time(s.proc.pid())?.saturating_sub(cpu);
                progress("api", clients, rep, &run);
                row[2].runs.push(run);
            }
        }
        cells.push(row);
    }
    if let Some(e) = etcd.as_mut() {
        e.stop();
    }
    drop(server);
    drop(store);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Durable creates ({} ops per run, {} runs per cell, {} B values)\n",
        opts.ops,
        opts.repeat.max(1),
        opts.value_size
    );
    let _ = writeln!(
        out,
        "Creates/s: **median run** (slowest–fastest run). API = `POST configmaps` over HTTPS \
         ({}, one TLS connection per client, admin client certificate).\n",
        opts.http.label()
    );
    let _ = writeln!(
        out,
        "| clients | store alone | etcd put | skiff API | store ÷ etcd | API ÷ etcd | store writes per flush |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for (clients, row) in opts.clients.iter().zip(&cells) {
        let per_flush = if row[0].commits > 0 {
            format!("{:.1}", row[0].writes as f64 / row[0].commits as f64)
        } else {
            "–".into()
        };
        let _ = writeln!(
            out,
            "| {clients} | {} | {} | {} | {} | {} | {per_flush} |",
            row[0].rate(),
            row[1].rate(),
            row[2].rate(),
            ratio(&row[0], &row[1]),
            ratio(&row[2], &row[1]),
        );
    }
    let _ = writeln!(
        out,
        "\nLatency per create (all runs of the cell pooled), and the server process's CPU \
         time (user + system) per create:\n"
    );
    let _ = writeln!(
        out,
        "| clients | store p50 | store p99 | etcd p50 | etcd p99 | API p50 | API p99 | etcd CPU/op | skiff CPU/op |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (clients, row) in opts.clients.iter().zip(&cells) {
        let _ = writeln!(
            out,
            "| {clients} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row[0].p(50.0),
            row[0].p(99.0),
            row[1].p(50.0),
            row[1].p(99.0),
            row[2].p(50.0),
            row[2].p(99.0),
            row[1].cpu_per_op(),
            row[2].cpu_per_op(),
        );
    }
    Ok(out)
}

fn progress(system: &str, clients: usize, rep: usize, run: &Run) {
    eprintln!(
        "  {system:5} clients={clients:<3} run={rep} {:>8.0} ops/s  p50={} p99={}{}",
        run.ops_per_sec(),
        ms(percentile(&run.latencies, 50.0)),
        ms(percentile(&run.latencies, 99.0)),
        if run.timed_out { " TIMED OUT" } else { "" }
    );
}

/// kubectl's Accept header for `kubectl get` (Table, falling back to plain JSON).
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,\
                            application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn list(opts: &Opts, skiff_bin: &Path) -> Result<String> {
    let base = opts.work_dir();
    let mut server = Skiff::spawn(skiff_bin, &base)?;
    let (_, target) = server
        .wait_ready(opts.http, Duration::from_secs(30))
        .await?;
    let ns = "bench-list";
    let mut conn = Conn::open(&target).await?;
    conn.post_json(
        "/api/v1/namespaces",
        Bytes::from(format!(
            r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#
        )),
        StatusCode::CREATED,
    )
    .await?;

    // Fill with 64 concurrent HTTPS clients.
    let data: Arc<str> = Arc::from(payload(opts.value_size));
    let mut workers = Vec::new();
    for _ in 0..64 {
        workers.push(ApiWorker::connect(&target, ns, "cm-".into(), Arc::clone(&data)).await?);
    }
    let fill = load::run(
        workers,
        opts.list_objects,
        opts.timeout().max(Duration::from_secs(300)),
    )
    .await?;
    if fill.ops != opts.list_objects {
        return Err(err(format!(
            "filling: only {} of {} ConfigMaps created before the timeout",
            fill.ops, opts.list_objects
        )));
    }
    eprintln!(
        "  filled {} ConfigMaps at {:.0}/s",
        fill.ops,
        fill.ops_per_sec()
    );

    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut rows = Vec::new();
    for (label, accept, page) in [
        ("JSON, one request", "application/json", None),
        (
            "Table (`kubectl get cm` format), one request",
            TABLE_ACCEPT,
            None,
        ),
        (
            "Table, paged by 500 (`kubectl get cm` default)",
            TABLE_ACCEPT,
            Some(500),
        ),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        // One untimed warm-up, then the timed runs.
        for i in 0..=opts.list_runs.max(1) {
            let (items, size, elapsed) = full_list(&mut conn, &path, accept, page).await?;
            if items != opts.list_objects {
                return Err(err(format!(
                    "LIST {label}: {items} items, expected {}",
                    opts.list_objects
                )));
            }
            if i > 0 {
                times.push(elapsed.as_secs_f64());
                bytes = size;
            }
        }
        let secs = median(&times);
        let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = times.iter().copied().fold(0.0, f64::max);
        eprintln!("  {label}: median {:.1} ms", secs * 1000.0);
        rows.push(format!(
            "| {label} | **{:.1} ms** ({:.1}–{:.1}) | {:.1} MiB | {:.0} |",
            secs * 1000.0,
            lo * 1000.0,
            hi * 1000.0,
            bytes as f64 / 1024.0 / 1024.0,
            opts.list_objects as f64 / secs
        ));
    }
    server.proc.check_running()?;
    let pid = server.proc.pid();
    let rss_mib = proc::proc_status_kb(pid, "VmRSS")? as f64 / 1024.0 / 1024.0;
    let hwm_mib = proc::proc_status_kb(pid, "VmHWM")? as f64 / 1024.0 / 1024.0;
    drop(conn);
    drop(server);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "### LIST of {} ConfigMaps over HTTPS ({}, {} B data each, median of {} lists)\n",
        opts.list_objects,
        opts.http.label(),
        opts.value_size,
        opts.list_runs.max(1)
    );
    let _ = writeln!(
        out,
        "Filled by 64 HTTPS clients at {:.0} creates/s. Time per full list: from sending \
         the request to the last byte of the response (summed over pages when paged; the \
         client's JSON parsing, done to count the items and follow `continue`, is not \
         counted). One warm-up list first, on the same connection.\n",
        fill.ops_per_sec()
    );
    let _ = writeln!(
        out,
        "| format | time per full list (fastest–slowest) | response size | objects/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(out, "{r}");
    }
    let _ = writeln!(
        out,
        "\nServer memory after the fill and the lists: VmRSS {rss_mib:.1} MiB, peak (VmHWM) \
         {hwm_mib:.1} MiB."
    );
    Ok(out)
}

/// LISTs `path` to the end (following `continue` when paged); returns the number of items
/// (or Table rows), the bytes received and the time spent in requests (from sending each
/// request to the last byte of its response; parsing the JSON here is not counted).
async fn full_list(
    conn: &mut Conn,
    path: &str,
    accept: &str,
    page: Option<u32>,
) -> Result<(u64, usize, Duration)> {
    let mut items = 0;
    let mut bytes = 0;
    let mut spent = Duration::ZERO;
    let mut cont: Option<String> = None;
    loop {
        let mut uri = path.to_string();
        if let Some(limit) = page {
            uri.push_str(&format!("?limit={limit}"));
            if let Some(c) = &cont {
                uri.push_str("&continue=");
                uri.push_str(&form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>());
            }
        }
        let t = Instant::now();
        let reply = conn
            .request(Method::GET, &uri, &[("accept", accept)], Bytes::new())
            .await?;
        spent += t.elapsed();
        if reply.status != StatusCode::OK {
            return Err(err(format!(
                "GET {uri}: HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            )));
        }
        bytes += reply.body.len();
        let v: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| err(format!("GET {uri}: not JSON: {e}")))?;
        let list = if v["kind"] == "Table" {
            &v["rows"]
        } else {
            &v["items"]
        };
        items += list.as_array().map(|a| a.len() as u64).unwrap_or(0);
        cont = v["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if page.is_none() || cont.is_none() {
            return Ok((items, bytes, spent));
        }
    }
}

async fn rss(opts: &Opts, skiff_bin: &Path) -> Result<String> {
    let base = opts.work_dir();
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    for _ in 0..opts.rss_runs.max(1) {
        let mut server = Skiff::spawn(skiff_bin, &base)?;
        server
            .wait_ready(opts.http, Duration::from_secs(30))
            .await?;
        tokio::time::sleep(Duration::from_secs(opts.settle_secs)).await;
        server.proc.check_running()?;
        let pid = server.proc.pid();
        let r = proc::proc_status_kb(pid, "VmRSS")? as f64 / 1024.0 / 1024.0;
        let h = proc::proc_status_kb(pid, "VmHWM")? as f64 / 1024.0 / 1024.0;
        eprintln!("  VmRSS {r:.1} MiB (peak {h:.1} MiB)");
        rss.push(r);
        hwm.push(h);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Idle RSS of `skiff server --disable-agent` (fresh data dir, {} s after ready, {} servers)\n",
        opts.settle_secs,
        rss.len()
    );
    let _ = writeln!(out, "| VmRSS median | runs | VmHWM (peak) median | goal |");
    let _ = writeln!(out, "|---:|---|---:|---:|");
    let _ = writeln!(
        out,
        "| **{:.1} MiB** | {} | {:.1} MiB | ≤ 30 MiB |",
        median(&rss),
        rss.iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        median(&hwm)
    );
    Ok(out)
}

async fn startup(opts: &Opts, skiff_bin: &Path) -> Result<String> {
    let base = opts.work_dir();
    let mut times = Vec::new();
    let mut logged = Vec::new();
    for _ in 0..opts.startup_runs.max(1) {
        let mut server = Skiff::spawn(skiff_bin, &base)?;
        let (t, _) = server
            .wait_ready(opts.http, Duration::from_secs(30))
            .await?;
        times.push(t.as_secs_f64() * 1000.0);
        if let Some(ms) = server.logged_ready_ms() {
            logged.push(ms as f64);
        }
        eprintln!("  ready after {:.0} ms", t.as_secs_f64() * 1000.0);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Start to `/readyz` OK (fresh data dir each time, {} starts)\n",
        times.len()
    );
    let _ = writeln!(
        out,
        "Measured from spawning the process to the first 200 from `/readyz` over TLS (polled \
         every 2 ms). \"Logged\" is the server's own `ready_ms` (from `main` to the listener).\n"
    );
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| median | fastest–slowest | logged ready_ms median | goal |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| **{:.0} ms** | {lo:.0}–{hi:.0} ms | {} | ≤ 500 ms |",
        median(&times),
        if logged.is_empty() {
            "–".to_string()
        } else {
            format!("{:.0} ms", median(&logged))
        }
    );
    Ok(out)
}
