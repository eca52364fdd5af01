//! Running a command in a running container (`kubectl exec`, exec probes and hooks).
//!
//! The agent re-executes skiff as `skiff shim-exec --run-dir <run> --id <id> [--tty] --
//! <argv>` ([`main`]): a short-lived, single-threaded child of the agent that uses
//! libcontainer's tenant builder to start the command inside the container (its
//! namespaces, cgroup, user, capabilities, environment and working directory, as the
//! container's own process has them in `config.json`), waits for it and exits with its
//! exit code (128 + N when signal N ended it). Unlike a container's shim it does not
//! outlive the agent: an exec session ends with the agent that serves it.
//!
//! Without a TTY the command inherits the helper's stdin/stdout/stderr (pipes from the
//! agent). With a TTY libcontainer makes a pty in the container and passes its master
//! over a console socket; the helper hands it on to the agent, which then reads, writes
//! and resizes it ([`Pty`]). The helper reports on fd 3 (a socket pair with the agent)
//! one JSON line, [`ExecReady`], with the pty master attached for a TTY.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::protocol::{oci_root, StateDir};
use super::{io_err, Runtime, RuntimeError};

/// The fd on which `skiff shim-exec` reports to the agent.
const REPORT_FD: RawFd = 3;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub tty: bool,
    /// Give the command a stdin (a pipe, or the pty); otherwise it reads /dev/null.
    pub stdin: bool,
}

/// The helper's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum ExecReady {
    Started { pid: i32 },
    Failed { message: String },
}

/// A command running in a container.
pub struct ExecProcess {
    /// The command's stdin (the pty for a TTY), when asked for.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its stdout (the pty for a TTY).
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Its stderr (none with a TTY: the pty carries both).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// The pty, for resizing.
    pub pty: Option<Pty>,
    /// The command's process (in the host's PID namespace).
    pub pid: i32,
    child: tokio::process::Child,
}

impl ExecProcess {
    /// Wait for the command; its exit code (128 + N for a signal).
    pub async fn wait(&mut self) -> Result<i32, RuntimeError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(io_err("waiting for the exec helper"))?;
        use std::os::unix::process::ExitStatusExt as _;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1))
    }

    /// SIGKILL the command (its helper then exits with 137).
    pub fn kill(&self) {
        // SAFETY: kill(2) on the command's pid, which its helper (our child) has not
        // reaped while this process exists.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Runtime {
    /// Run `spec` in the running container `id`.
    pub async fn exec(&self, id: &str, spec: ExecSpec) -> Result<ExecProcess, RuntimeError> {
        let paths = StateDir::new(&self.run_dir, id);
        if !paths.dir.is_dir() {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        if spec.argv.is_empty() {
            return Err(RuntimeError::Exec {
                id: id.into(),
                message: "no command given".into(),
            });
        }
        let (ours, theirs) = UnixStream::pair().map_err(io_err("exec report socket"))?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg0("skiff")
            .arg("shim-exec")
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--id")
            .arg(id);
        if spec.tty {
            cmd.arg("--tty");
        }
        cmd.arg("--").args(&spec.argv);
        let piped = !spec.tty;
        cmd.stdin(if piped && spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if piped { Stdio::piped() } else { Stdio::null() })
        .stderr(if piped { Stdio::piped() } else { Stdio::null() })
        .env_remove("RUST_LOG");
        let report = theirs.as_raw_fd();
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(report, REPORT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(io_err(format!("starting {}", self.exe.display())))?;
        drop(theirs);
        let id2 = id.to_string();
        let (ready, master) =
            tokio::task::spawn_blocking(move || read_report(ours, &id2)).await??;
        let pid = match ready {
            ExecReady::Started { pid } => pid,
            ExecReady::Failed { message } => {
                let _ = child.wait().await;
                return Err(RuntimeError::Exec {
                    id: id.into(),
                    message,
                });
            }
        };
        let mut process = ExecProcess {
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
            pid,
            child,
        };
        if let Some(master) = master {
            let pty = Pty::new(master).map_err(io_err("making the pty master non-blocking"))?;
            if spec.stdin {
                process.stdin = Some(Box::pin(pty.clone()));
            }
            process.stdout = Some(Box::pin(pty.clone()));
            process.pty = Some(pty);
        } else {
            process.stdin = process
                .child
                .stdin
                .take()
                .map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>);
            process.stdout = process
                .child
                .stdout
                .take()
                .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>);
            process.stderr = process
                .child
                .stderr
                .take()
                .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>);
        }
        Ok(process)
    }

    /// Run `argv` without stdin and collect its output (stdout and stderr together, at
    /// most `limit` bytes), killing it after `timeout`: exec probes and hooks.
    pub async fn exec_output(
        &self,
        id: &str,
        argv: Vec<String>,
        limit: usize,
        timeout: std::time::Duration,
    ) -> Result<(i32, Vec<u8>), RuntimeError> {
        use tokio::io::AsyncReadExt as _;
        let mut p = self
            .exec(
                id,
                ExecSpec {
                    argv: argv.clone(),
                    tty: false,
                    stdin: false,
                },
            )
            .await?;
        let (stdout, stderr) = (p.stdout.take(), p.stderr.take());
        let read_all = |r: Option<Pin<Box<dyn AsyncRead + Send>>>| async move {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(limit as u64).read_to_end(&mut buf).await;
            }
            buf
        };
        let run = async {
            let (a, b) = tokio::join!(read_all(stdout), read_all(stderr));
            let code = p.wait().await;
            (a, b, code)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok((mut out, err, code)) => {
                out.extend(err);
                out.truncate(limit);
                Ok((code?, out))
            }
            Err(_) => {
                p.kill();
                let _ = p.wait().await;
                Err(RuntimeError::Exec {
                    id: id.into(),
                    message: format!("command {argv:?} timed out after {timeout:?}"),
                })
            }
        }
    }
}

/// Read the helper's report line (and, for a TTY, the pty master sent with it).
fn read_report(sock: UnixStream, id: &str) -> Result<(ExecReady, Option<OwnedFd>), RuntimeError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut line = Vec::new();
    let mut fd = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| RuntimeError::Exec {
            id: id.into(),
            message: format!("reading the exec helper's report: {e}"),
        })?;
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel installed this fd in our table for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if line.contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line);
    let first = text.lines().next().unwrap_or_default();
    let ready = serde_json::from_str(first).map_err(|_| RuntimeError::Exec {
        id: id.into(),
        message: format!("the exec helper exited without reporting ({first:?})"),
    })?;
    Ok((ready, fd))
}

/// A pty master, shared by the reader, the writer and whoever resizes it.
#[derive(Clone)]
pub struct Pty(Arc<AsyncFd<OwnedFd>>);

impl Pty {
    fn new(master: OwnedFd) -> std::io::Result<Self> {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            if flags < 0
                || libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: `master` is an open descriptor we own; it moves into the AsyncFd, which
        // deregisters it before closing it.
        let fd = unsafe { AsyncFd::register(master) }?;
        Ok(Pty(Arc::new(fd)))
    }

    /// Set the terminal's size (the command gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        set_window_size(self.0.as_raw_fd(), width, height)
    }
}

/// Set the size of the terminal whose pty master is `master` (its processes get
/// SIGWINCH).
pub(crate) fn set_window_size(master: RawFd, width: u16, height: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize; a bad fd only makes it fail.
    if unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|fd| {
                // SAFETY: reading into an initialized buffer of the given length.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The other side (every holder of the pty's slave) has gone: end of output.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let result = guard.try_io(|fd| {
                // SAFETY: writing from a valid buffer of the given length.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `skiff shim-exec`: start `argv` in container `id`, hand over the pty (if any), wait
/// and exit with the command's code.
pub fn main(run_dir: &Path, id: &str, tty: bool, argv: Vec<OsString>) -> i32 {
    // SAFETY: checking that fd 3 is open before taking ownership of it.
    if unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) } < 0 {
        eprintln!("shim-exec: fd {REPORT_FD} (the report socket) is not open");
        return 125;
    }
    // SAFETY: fd 3 is open (checked above) and handed to us by the agent.
    let mut report = unsafe { UnixStream::from_raw_fd(REPORT_FD) };
    // SAFETY: marking our own fd close-on-exec.
    unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let paths = StateDir::new(run_dir, id);
    let process_file = paths.dir.join(format!("exec-{}.json", std::process::id()));
    let console = paths.dir.join(format!("exec-{}.sock", std::process::id()));
    let result = start(run_dir, id, &paths, &process_file, &console, tty, argv);
    let _ = std::fs::remove_file(&process_file);
    let _ = std::fs::remove_file(&console);
    let pid = match result {
        Ok((pid, master)) => {
            let line = format!(
                "{}\n",
                serde_json::to_string(&ExecReady::Started { pid }).unwrap_or_default()
            );
            if let Err(e) = send_report(&report, line.as_bytes(), master.as_ref()) {
                eprintln!("shim-exec: reporting to the agent: {e}");
            }
            drop(master);
            pid
        }
        Err(message) => {
            let line = serde_json::to_string(&ExecReady::Failed { message }).unwrap_or_default();
            let _ = writeln!(report, "{line}");
            return 126;
        }
    };
    drop(report);
    wait_pid(pid)
}

fn start(
    run_dir: &Path,
    id: &str,
    paths: &StateDir,
    process_file: &Path,
    console: &Path,
    tty: bool,
    argv: Vec<String>,
) -> Result<(i32, Option<OwnedFd>), String> {
    // The container's own process (user, env, cwd, capabilities) with our command.
    let spec = Spec::load(paths.config())
        .map_err(|e| format!("reading {}: {e}", paths.config().display()))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| format!("{} has no process", paths.config().display()))?;
    process.set_args(Some(argv)).set_terminal(Some(tty));
    let json = serde_json::to_vec(&process).map_err(|e| format!("encoding process: {e}"))?;
    std::fs::write(process_file, json)
        .map_err(|e| format!("writing {}: {e}", process_file.display()))?;
    let listener = if tty {
        let _ = std::fs::remove_file(console);
        Some(
            UnixListener::bind(console)
                .map_err(|e| format!("binding {}: {e}", console.display()))?,
        )
    } else {
        None
    };
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(oci_root(run_dir))
        .map_err(|e| format!("libcontainer state root: {e}"))?
        .with_console_socket(tty.then_some(console))
        .validate_id()
        .map_err(|e| format!("container id: {e}"))?
        .as_tenant()
        .with_process(Some(process_file))
        .with_detach(tty)
        .build()
        .map_err(|e| match e {
            libcontainer::error::LibcontainerError::IncorrectStatus(s) => {
                format!("container {id} is not running ({s:?})")
            }
            e => e.to_string(),
        })?
        .as_raw();
    let master = match listener {
        Some(l) => Some(super::shim::receive_console(&l)?),
        None => None,
    };
    Ok((pid, master))
}

fn send_report(sock: &UnixStream, line: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(line)];
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = fds
        .as_ref()
        .map(|f| vec![ControlMessage::ScmRights(f)])
        .unwrap_or_default();
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// Wait for our child `pid`; its exit code, or 128 + the signal that ended it.
fn wait_pid(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            eprintln!(
                "shim-exec: waitpid({pid}): {}",
                std::io::Error::last_os_error()
            );
            return 125;
        }
        if libc::WIFEXITED(status) {
            return libc::WEXITSTATUS(status);
        }
        if libc::WIFSIGNALED(status) {
            return 128 + libc::WTERMSIG(status);
        }
    }
}
