//! The node's container runtime: containers run by youki's `libcontainer`, one
//! re-executed `skiff shim` process per container (see [`shim`] for why and what it
//! does), and the async [`Runtime`] API the agent uses to create, watch, signal and
//! remove them.
//!
//! This module owns, under a run dir it is given (the agent uses `<data-dir>/agent/run`,
//! on a tmpfs the runtime mounts there as containerd keeps its state under `/run`):
//! - `containers/<id>/`: skiff's per-container state (spec, OCI bundle config, the shim's
//!   socket, pid and diagnostics, `exit.json`; layout in [`protocol`]);
//! - `oci/<id>/`: libcontainer's state root;
//! - the cgroup of every container, `<cgroup parent>/<id>` (cgroupfs, absolute path,
//!   `/skiff` unless the spec names a parent such as `/skiff/pod-<uid>`).
//!
//! Images and root filesystems are made by [`image`] (the node's image store); a spec
//! names the rootfs dir it prepared.
//! Fail-static: nothing here stops containers when the [`Runtime`] is dropped or the
//! process exits; [`Runtime::list`] finds the shims again.
//!
//! Seccomp: libcontainer is built without `libseccomp` (no C library, no `-dev`
//! package). Kubernetes' default seccomp profile for pods is `Unconfined`; a spec cannot
//! ask for a profile yet (`RuntimeDefault` and `Localhost` are left for later).

pub mod attach;
pub mod bench;
pub mod cgroup;
pub mod exec;
pub mod image;
pub mod logs;
pub mod mounts;
pub mod protocol;
pub mod shim;
pub mod spec;

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub use protocol::{ContainerState, ExitStatus, Request, Response, Status};
pub use spec::{BindMount, ContainerSpec, NamespaceMode, Namespaces, Resources, SpecError};

use protocol::{containers_dir, oci_root, Ready, StateDir};

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("container {id} already exists")]
    AlreadyExists { id: String },
    #[error("container {id} not found")]
    NotFound { id: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("container {id} failed to start: {message}")]
    Start { id: String, message: String },
    #[error("container {id}: shim: {message}")]
    Shim { id: String, message: String },
    #[error("container {id}: its shim is gone (no socket answers and no exit was recorded)")]
    ShimGone { id: String },
    #[error("container {id}: cleaning up without its shim: {message}")]
    Cleanup { id: String, message: String },
    #[error("container {id}: exec: {message}")]
    Exec { id: String, message: String },
    #[error("runtime task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

/// How to run the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where state dirs, sockets and libcontainer's state live.
    pub run_dir: PathBuf,
    /// The skiff binary to re-execute as `skiff shim` (the agent passes its own
    /// executable; tests pass the built `skiff`).
    pub shim_binary: PathBuf,
    /// Run shims from a sealed in-memory copy of `shim_binary` (CVE-2019-5736).
    pub seal_binary: bool,
    /// Keep the run dir on a tmpfs mounted there (see [`keep_in_memory`]).
    pub in_memory: bool,
}

impl RuntimeConfig {
    /// A config that re-executes the running binary, sealed.
    pub fn new(run_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        Ok(RuntimeConfig {
            run_dir: run_dir.into(),
            shim_binary: std::env::current_exe().map_err(io_err("finding skiff's own binary"))?,
            seal_binary: true,
            in_memory: false,
        })
    }
}

/// Mount a tmpfs on `run_dir` unless one is there or the dir already holds containers'
/// state (kept on disk then, so that containers started by an earlier skiff are found
/// again). A container start writes a dozen small files there (bundle, shim socket and
/// pid, libcontainer's state): on memory that costs no inode allocation on the node's
/// disk, and the state goes with a reboot as the containers do. The mount outlives
/// skiff, as the containers do.
fn keep_in_memory(run_dir: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(run_dir).map_err(io_err(format!("creating {}", run_dir.display())))?;
    if mounts::is_mount_point(run_dir) {
        return Ok(());
    }
    let holds_state = [containers_dir(run_dir), oci_root(run_dir)]
        .iter()
        .any(|d| std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()));
    if holds_state {
        tracing::info!(dir = %run_dir.display(),
            "the runtime's state stays on disk: it holds containers started earlier");
        return Ok(());
    }
    mounts::mount_tmpfs(run_dir, "mode=0700,size=10%")
        .map_err(io_err(format!("mounting a tmpfs on {}", run_dir.display())))
}

/// A container the runtime started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// The init process, in the host's PID namespace.
    pub pid: i32,
    pub shim_pid: i32,
    pub log_path: PathBuf,
}

/// The agent's handle on its containers. Cheap to share behind an `Arc`; holds no
/// per-container state in memory (all of it is in the shims and their state dirs).
#[derive(Debug)]
pub struct Runtime {
    run_dir: PathBuf,
    exe: PathBuf,
    /// The sealed copy `exe` points into (`/proc/self/fd/N`); kept open while we live.
    _sealed: Option<OwnedFd>,
    /// Container starts that run at once; the others queue in arrival order (see
    /// [`concurrent_starts`]).
    starts: tokio::sync::Semaphore,
}

/// How many shims may be starting their containers at once: twice the CPUs, at least 4.
/// A start is mostly CPU and kernel work under node-wide kernel locks (mounts, cgroups,
/// clone/exec), so a burst started all at once makes every container wait for the
/// slowest; queued in arrival order, the first ones run early and the last no later.
pub fn concurrent_starts() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cpus).max(4)
}

/// After this long a start no longer holds back the queue (a shim that hangs must not
/// stop every other start of the node).
const START_SLOT_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

impl Runtime {
    /// Prepare the run dir (and the sealed binary copy, if asked for).
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        if config.in_memory {
            keep_in_memory(&config.run_dir)?;
        }
        for dir in [containers_dir(&config.run_dir), oci_root(&config.run_dir)] {
            std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let run_dir = std::fs::canonicalize(&config.run_dir)
            .map_err(io_err(format!("resolving {}", config.run_dir.display())))?;
        let (exe, sealed) = if config.seal_binary {
            let fd = seal_copy(&config.shim_binary)?;
            (
                PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                Some(fd),
            )
        } else {
            (config.shim_binary.clone(), None)
        };
        Ok(Runtime {
            run_dir,
            exe,
            _sealed: sealed,
            starts: tokio::sync::Semaphore::new(concurrent_starts()),
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Write the bundle, start a shim for it and wait until the container runs.
    pub async fn create_and_start(&self, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let oci = spec::to_oci(spec)?;
        let id = spec.id.clone();
        let paths = StateDir::new(&self.run_dir, &id);
        match std::fs::create_dir(&paths.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id })
            }
            Err(e) => return Err(io_err(format!("creating {}", paths.dir.display()))(e)),
        }
        let mut slot = self.starts.acquire().await.ok();
        let start = self.spawn_shim(spec, &oci, &paths);
        tokio::pin!(start);
        let result = match tokio::time::timeout(START_SLOT_HOLD, &mut start).await {
            Ok(result) => result,
            Err(_) => {
                slot = None;
                start.await
            }
        };
        drop(slot);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        result
    }

    async fn spawn_shim(
        &self,
        spec: &ContainerSpec,
        oci: &libcontainer::oci_spec::runtime::Spec,
        paths: &StateDir,
    ) -> Result<Container, RuntimeError> {
        let id = spec.id.clone();
        let json = serde_json::to_vec_pretty(spec).map_err(|e| RuntimeError::Shim {
            id: id.clone(),
            message: format!("encoding spec: {e}"),
        })?;
        std::fs::write(paths.spec(), json)
            .map_err(io_err(format!("writing {}", paths.spec().display())))?;
        oci.save(paths.config()).map_err(|e| RuntimeError::Shim {
            id: id.clone(),
            message: format!("writing {}: {e}", paths.config().display()),
        })?;
        let log = std::fs::File::create(paths.shim_log())
            .map_err(io_err(format!("creating {}", paths.shim_log().display())))?;
        let t_shim = std::time::Instant::now();
        // The shim detaches itself (fork + setsid); its first process exits at once and
        // is reaped here, the readiness line comes over the pipe. Awaited, not on a
        // blocking thread: a burst of pod starts would otherwise make one thread (and
        // one allocator heap) per container being started.
        let mut child = tokio::process::Command::new(&self.exe)
            .arg0("skiff")
            .arg("shim")
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--id")
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .env_remove("RUST_LOG")
            .spawn()
            .map_err(io_err(format!("starting shim {}", self.exe.display())))?;
        let out = child.stdout.take();
        let _ = child.wait().await;
        let mut line = Vec::new();
        if let Some(out) = out {
            let _ = BufReader::new(out).read_until(b'\n', &mut line).await;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let ready = String::from_utf8_lossy(&line).into_owned();
        tracing::debug!(container = %id, shim_ms = format!("{:.1}", t_shim.elapsed().as_secs_f64() * 1000.0),
            "shim reported");
        match serde_json::from_str::<Ready>(&ready) {
            Ok(Ready::Started { pid, shim_pid }) => Ok(Container {
                id,
                pid,
                shim_pid,
                log_path: spec.log_path.clone(),
            }),
            Ok(Ready::Failed { message }) => Err(RuntimeError::Start { id, message }),
            Err(_) => {
                let diag = std::fs::read_to_string(paths.shim_log()).unwrap_or_default();
                Err(RuntimeError::Start {
                    id,
                    message: format!(
                        "the shim exited without reporting (its log: {:?})",
                        diag.trim()
                    ),
                })
            }
        }
    }

    /// Connect to the shim of `id` and send `request`.
    async fn send(&self, id: &str, request: &Request) -> Result<UnixStream, RuntimeError> {
        let paths = StateDir::new(&self.run_dir, id);
        if !paths.dir.is_dir() {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        let mut stream = UnixStream::connect(paths.socket())
            .await
            .map_err(|_| RuntimeError::ShimGone { id: id.into() })?;
        let mut line = serde_json::to_vec(request).map_err(|e| RuntimeError::Shim {
            id: id.into(),
            message: format!("encoding request: {e}"),
        })?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|_| RuntimeError::ShimGone { id: id.into() })?;
        Ok(stream)
    }

    async fn request(&self, id: &str, request: &Request) -> Result<Response, RuntimeError> {
        let stream = self.send(id, request).await?;
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        let n = reader
            .read_line(&mut answer)
            .await
            .map_err(io_err(format!("reading the answer of shim {id}")))?;
        if n == 0 {
            return Err(RuntimeError::ShimGone { id: id.into() });
        }
        serde_json::from_str(&answer).map_err(|e| RuntimeError::Shim {
            id: id.into(),
            message: format!("bad answer {answer:?}: {e}"),
        })
    }

    fn expect_state(id: &str, r: Response) -> Result<ContainerState, RuntimeError> {
        match r {
            Response::State(s) => Ok(s),
            Response::Error { message } => Err(RuntimeError::Shim {
                id: id.into(),
                message,
            }),
            Response::Ok => Err(RuntimeError::Shim {
                id: id.into(),
                message: "answered ok where a state was expected".into(),
            }),
        }
    }

    /// The state a gone shim left behind (exit.json), if any.
    fn recorded_state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let paths = StateDir::new(&self.run_dir, id);
        if !paths.dir.is_dir() {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        let spec: Option<ContainerSpec> = std::fs::read(paths.spec())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let started: Option<serde_json::Value> = std::fs::read(paths.started_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let exit: Option<ExitStatus> = std::fs::read(paths.exit_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(ContainerState {
            id: id.into(),
            status: if exit.is_some() {
                Status::Exited
            } else {
                Status::Unknown
            },
            pid: started
                .as_ref()
                .and_then(|s| s.get("pid")?.as_i64())
                .unwrap_or(0) as i32,
            shim_pid: 0,
            started_at: started
                .as_ref()
                .and_then(|s| Some(s.get("startedAt")?.as_str()?.to_string()))
                .unwrap_or_default(),
            exit,
            log_path: spec
                .as_ref()
                .map(|s| s.log_path.clone())
                .unwrap_or_default(),
            cgroups_path: spec.as_ref().map(|s| s.cgroups_path()).unwrap_or_default(),
            image: spec.map(|s| s.image).unwrap_or_default(),
        })
    }

    /// The container's state (from its shim, or from what a gone shim recorded).
    pub async fn status(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        match self.request(id, &Request::Status).await {
            Ok(r) => Self::expect_state(id, r),
            Err(RuntimeError::ShimGone { .. }) => self.recorded_state(id),
            Err(e) => Err(e),
        }
    }

    /// Send `signal` to the container's init process.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        match self.request(id, &Request::Kill { signal }).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(RuntimeError::Shim {
                id: id.into(),
                message,
            }),
            Response::State(_) => Ok(()),
        }
    }

    /// Wait until the container has exited; its final state.
    pub async fn wait(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        match self.request(id, &Request::Wait).await {
            Ok(r) => Self::expect_state(id, r),
            Err(RuntimeError::ShimGone { .. }) => {
                let s = self.recorded_state(id)?;
                if s.exit.is_some() {
                    Ok(s)
                } else {
                    Err(RuntimeError::ShimGone { id: id.into() })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Kill the container if it runs, remove its cgroup and all its state; its shim
    /// exits. Works without the shim too (if it was killed), from the state on disk.
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        match self.request(id, &Request::Delete).await {
            Ok(Response::Ok) => Ok(()),
            Ok(Response::Error { message }) => Err(RuntimeError::Shim {
                id: id.into(),
                message,
            }),
            Ok(Response::State(_)) => Ok(()),
            Err(RuntimeError::ShimGone { .. }) => self.delete_without_shim(id).await,
            Err(e) => Err(e),
        }
    }

    async fn delete_without_shim(&self, id: &str) -> Result<(), RuntimeError> {
        let run_dir = self.run_dir.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let paths = StateDir::new(&run_dir, &id);
            let oci_dir = oci_root(&run_dir).join(&id);
            if oci_dir.exists() {
                // Container::delete only kills and removes cgroups and files: no clone,
                // no chdir, so it is safe in a multi-threaded process.
                let mut c =
                    libcontainer::container::Container::load(oci_dir.clone()).map_err(|e| {
                        RuntimeError::Cleanup {
                            id: id.clone(),
                            message: format!("loading libcontainer state: {e}"),
                        }
                    })?;
                c.delete(true).map_err(|e| RuntimeError::Cleanup {
                    id: id.clone(),
                    message: format!("{e}"),
                })?;
            }
            std::fs::remove_dir_all(&paths.dir)
                .map_err(io_err(format!("removing {}", paths.dir.display())))
        })
        .await?
    }

    /// The ids of every container with a state dir, sorted (no shim is asked).
    pub fn ids(&self) -> Result<Vec<String>, RuntimeError> {
        let dir = containers_dir(&self.run_dir);
        let mut ids = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
            if let Some(name) = entry.file_name().to_str() {
                if spec::valid_id(name) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every container with a state dir: running ones answer through their shims (also
    /// shims started by an earlier process), the others report what they recorded.
    pub async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.states(self.ids()?).await
    }

    /// The states of the containers `ids` that exist (a pod's, say).
    pub async fn states(&self, ids: Vec<String>) -> Result<Vec<ContainerState>, RuntimeError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.status(&id).await {
                Ok(s) => out.push(s),
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// An immutable in-memory copy of `path`: a memfd, sealed against writes, resizes and
/// further seal changes.
fn seal_copy(path: &Path) -> Result<OwnedFd, RuntimeError> {
    let mut src = std::fs::File::open(path)
        .map_err(io_err(format!("opening {} to seal it", path.display())))?;
    let name = CString::new("skiff-shim").map_err(|e| RuntimeError::Io {
        context: "memfd name".into(),
        source: std::io::Error::other(e),
    })?;
    // SAFETY: memfd_create with a valid C string; returns a new fd or -1.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io_err("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd from memfd_create.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(io_err("copying the binary into a memfd"))?;
    dst.flush()
        .map_err(io_err("copying the binary into a memfd"))?;
    let fd = OwnedFd::from(dst);
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our memfd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io_err("sealing the memfd")(std::io::Error::last_os_error()));
    }
    Ok(fd)
}
