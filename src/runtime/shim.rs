//! `skiff shim`: the per-container process. The agent re-executes the skiff binary once
//! per container (`skiff shim --run-dir <run> --id <id>`); `cli::main` dispatches here
//! before anything else runs, so this process is single-threaded when libcontainer
//! clones the container (libcontainer is only safe there: DESIGN.md §5).
//!
//! The shim:
//! 1. forks once and lets the first process exit, then `setsid`s: it is nobody's child
//!    and no terminal's, so the agent can stop or restart without touching it;
//! 2. creates and starts the container with libcontainer from the bundle the agent wrote
//!    into the state dir (state root `<run>/oci`, cgroupfs, the spec's absolute
//!    `cgroupsPath`), with the container's stdout/stderr on pipes it owns (or a pty, for
//!    `tty`), and, for `stdin: true`, the write end of its stdin (a pipe, or the pty);
//! 3. reports `Started {pid}` or `Failed {message}` as one JSON line on its original
//!    stdout (the agent's readiness pipe);
//! 4. runs a `poll` loop: copies output into the CRI log, reaps the container's init
//!    (pidfd), answers [`Request`]s on `shim.sock` (an `Attach`ed connection stays: it
//!    gets the output as it comes and feeds stdin and terminal resizes), records the
//!    [`ExitStatus`] (with OOM kills from the cgroup) in `exit.json`, and on `Delete`
//!    removes the container (cgroup, libcontainer state, its state dir) and exits;
//!    when it has been idle for a second it unmaps the code pages it touched, so a
//!    shim's resident set holds little more than its heap and stack.
//!
//! Sealing: when the agent runs with a sealed copy of the binary (a memfd,
//! `Runtime::new`), this process and the container's init before its `execve` run from
//! that immutable copy, so a container cannot overwrite skiff's binary through
//! `/proc/<pid>/exe` (CVE-2019-5736).

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use super::cgroup;
use super::logs::{CriLog, LineSplitter, Stream};
use super::protocol::{
    attach, oci_root, write_json_atomic, ContainerState, ExitStatus, Ready, Request, Response,
    StateDir, Status,
};
use super::spec::ContainerSpec;

/// How long output may still arrive after the init process exited (from processes that
/// outlive it for a moment) before the exit is recorded.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Output an attached client may fall behind by before the shim lets it go (the
/// container and the log must not wait for a slow client).
const MAX_ATTACH_BACKLOG: usize = 4 << 20;

/// Input waiting for the container's stdin beyond which the shim stops reading from
/// attached clients until the container catches up.
const MAX_STDIN_BACKLOG: usize = 1 << 20;

/// How long the shim must have had nothing to do before it drops the code pages its
/// last work touched again ([`drop_clean_file_pages`]).
const TRIM_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn pipe_cloexec() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds on success; we own them from then on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(errno());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; failure leaves it blocking, which poll tolerates.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Entry point of `skiff shim`. Returns the process exit code.
pub fn main(run_dir: &Path, id: &str) -> i32 {
    // The readiness pipe is our stdout: keep it on a close-on-exec fd and point 0 and 1
    // at /dev/null so that no child inherits it by accident.
    // SAFETY: plain fd syscalls on fds 0 and 1 of this (single-threaded) process.
    let ready_fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if ready_fd < 0 {
        eprintln!("shim {id}: duplicating the readiness pipe: {}", errno());
        return 1;
    }
    // SAFETY: ready_fd was just created by F_DUPFD_CLOEXEC.
    let mut ready = unsafe { File::from_raw_fd(ready_fd) };
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto the standard fds; `null` stays valid for the calls.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    // Detach: the first process exits at once (the agent reaps it), the second becomes
    // a session leader that init adopts.
    // SAFETY: no other thread exists yet, so fork is safe.
    match unsafe { libc::fork() } {
        -1 => {
            let msg = format!("fork: {}", errno());
            report(&mut ready, &Ready::Failed { message: msg });
            return 1;
        }
        0 => {}
        _ => {
            // SAFETY: leave without running destructors twice (the child owns the work).
            unsafe { libc::_exit(0) }
        }
    }
    // SAFETY: setsid in the child; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
    init_tracing();

    let paths = StateDir::new(run_dir, id);
    match start(run_dir, id, &paths) {
        Ok(mut shim) => {
            report(
                &mut ready,
                &Ready::Started {
                    pid: shim.pid,
                    shim_pid: std::process::id() as i32,
                },
            );
            drop(ready);
            release_memory();
            shim.run()
        }
        Err(message) => {
            eprintln!("shim {id}: {message}");
            report(&mut ready, &Ready::Failed { message });
            1
        }
    }
}

/// The shim's own diagnostics go to its stderr (`shim.log`) through a private copy of
/// the descriptor: libcontainer's container init process is a clone of the shim that
/// logs after it has moved the container's stdio onto fds 0-2, and those lines must not
/// end up in the container's log.
fn init_tracing() {
    // SAFETY: fcntl duplicates our own stderr; a new fd or -1.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let log = std::sync::Mutex::new(unsafe { File::from_raw_fd(fd) });
    let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(log);
    // Without SKIFF_SHIM_LOG a plain level: an EnvFilter (and its regexes) costs every
    // shim memory for the whole life of its container.
    let _ = match std::env::var("SKIFF_SHIM_LOG") {
        Ok(directives) => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
            .try_init(),
        Err(_) => builder.with_max_level(tracing::Level::WARN).try_init(),
    };
}

// The allocator's own calls (the skiff binary's global allocator is mimalloc,
// src/main.rs); `use` keeps the crate, and so the C library, linked.
use mimalloc as _;
extern "C" {
    fn mi_collect(force: bool);
}

/// Once the container runs, give back what starting it took (the bundle, libcontainer's
/// builder, the parsed spec's temporaries): the shim lives as long as its container.
fn release_memory() {
    // SAFETY: mi_collect only walks the allocator's own heaps.
    unsafe { mi_collect(true) };
}

/// Unmap the clean file pages this process touched so far: the code of libcontainer, the
/// bundle parser and whatever the last requests ran. The poll loop calls this once it has
/// been idle for [`TRIM_WHEN_IDLE_FOR`]. The pages stay in the page cache (shared with
/// the agent and the other shims); only this process's page tables forget them, and the
/// few the loop needs next fault back in from memory. Without this a shim's resident set
/// keeps ~6 MiB of code it ran once.
///
/// Only whole mappings without an anonymous page are dropped: an anonymous page in a
/// file mapping is this process's private copy (relocated data, say), which the kernel
/// would replace by the file's original. The others map nothing but page-cache pages of
/// the file (dirty ones too, for a file written a moment ago), so dropping them cannot
/// change what the process reads.
fn drop_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for mapping in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole private file mapping of this process without a
        // page of its own (see `clean_file_mappings`); MADV_DONTNEED on it drops page-table
        // entries, and the next access reads the same bytes from the file again. The
        // shim is single-threaded here, so nothing maps or writes these pages meanwhile.
        unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

/// An address range of this process.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// The private file mappings in `/proc/self/smaps` text that hold no page of their own:
/// no anonymous (copied-on-write or swapped) page, nothing locked.
fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    struct Current {
        mapping: Mapping,
        file: bool,
        clean: bool,
    }
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    let mut finish = |c: Option<Current>| {
        if let Some(c) = c.filter(|c| c.file && c.clean) {
            out.push(c.mapping);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            finish(current.take());
            // address perms offset dev inode [path]
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            current = Some(Current {
                mapping: Mapping { start, end },
                // A file (a path, or the sealed memfd): not [heap], [stack], [vdso], …,
                // and not shared memory, whose pages are nobody's copy to drop.
                file: !path.is_empty() && !path.starts_with('[') && perms.ends_with('p'),
                clean: true,
            });
            continue;
        }
        let Some(c) = current.as_mut() else {
            continue;
        };
        let kib = fields.next().and_then(|v| v.parse::<u64>().ok());
        if matches!(first, "Anonymous:" | "Locked:" | "Swap:") && kib != Some(0) {
            c.clean = false;
        }
    }
    finish(current.take());
    out
}

fn report(ready: &mut File, msg: &Ready) {
    if let Ok(mut line) = serde_json::to_vec(msg) {
        line.push(b'\n');
        let _ = ready.write_all(&line);
    }
}

/// One output the shim copies into the log.
struct Source {
    fd: OwnedFd,
    stream: Stream,
    splitter: LineSplitter,
}

/// The write end of the container's stdin and what waits to go in.
struct StdinSink {
    fd: OwnedFd,
    pending: Vec<u8>,
    /// Close once `pending` is written (`stdinOnce` and the writer left).
    close_when_drained: bool,
}

impl StdinSink {
    fn new(fd: OwnedFd) -> Self {
        StdinSink {
            fd,
            pending: Vec::new(),
            close_when_drained: false,
        }
    }
}

/// A client attached to the container's stdio.
struct Attached {
    stream: UnixStream,
    /// Bytes received and not yet a whole frame.
    input: Vec<u8>,
    /// Frames not yet written to the client.
    output: Vec<u8>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    /// Detached, or dropped for falling behind: removed after this poll round.
    gone: bool,
}

/// A connected client with the bytes of its request so far.
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// The running shim's state.
struct Shim {
    id: String,
    paths: StateDir,
    spec: ContainerSpec,
    container: Container,
    pid: i32,
    pidfd: OwnedFd,
    started_at: String,
    log: Option<CriLog>,
    sources: Vec<Source>,
    /// The container's stdin (`stdin: true` only) while it is open.
    stdin: Option<StdinSink>,
    /// A copy of the pty master (`tty` only), to resize the terminal.
    terminal: Option<OwnedFd>,
    attached: Vec<Attached>,
    listener: UnixListener,
    clients: Vec<Client>,
    waiters: Vec<UnixStream>,
    deleter: Option<UnixStream>,
    /// (exit code, signal, when) once the init process is reaped.
    reaped: Option<(i32, Option<i32>, Instant)>,
    exit: Option<ExitStatus>,
    /// When the poll loop last had something to do, and whether the pages that work
    /// touched were dropped since.
    last_busy: Instant,
    trimmed: bool,
}

fn start(run_dir: &Path, id: &str, paths: &StateDir) -> Result<Shim, String> {
    let spec: ContainerSpec = std::fs::read(paths.spec())
        .map_err(|e| format!("reading {}: {e}", paths.spec().display()))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| format!("parsing {}: {e}", paths.spec().display()))
        })?;
    if spec.id != id {
        return Err(format!("spec.json is for {:?}, not {id:?}", spec.id));
    }
    let log = CriLog::open(&spec.log_path, spec.log_max_size, spec.log_max_files)
        .map_err(|e| format!("opening log {}: {e}", spec.log_path.display()))?;

    let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(oci_root(run_dir))
        .map_err(|e| format!("libcontainer state root: {e}"))?;
    let mut sources = Vec::new();
    let mut stdin = None;
    let mut terminal = None;
    let console = if spec.tty {
        let path = paths.console_socket();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("binding console socket {}: {e}", path.display()))?;
        builder = builder.with_console_socket(Some(&path));
        Some(listener)
    } else {
        let stdin_r = if spec.stdin {
            let (r, w) = pipe_cloexec().map_err(|e| format!("stdin pipe: {e}"))?;
            stdin = Some(StdinSink::new(w));
            r
        } else {
            OwnedFd::from(File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?)
        };
        let (out_r, out_w) = pipe_cloexec().map_err(|e| format!("stdout pipe: {e}"))?;
        let (err_r, err_w) = pipe_cloexec().map_err(|e| format!("stderr pipe: {e}"))?;
        builder = builder
            .with_stdin(stdin_r)
            .with_stdout(out_w)
            .with_stderr(err_w);
        sources.push(Source {
            fd: out_r,
            stream: Stream::Stdout,
            splitter: LineSplitter::default(),
        });
        sources.push(Source {
            fd: err_r,
            stream: Stream::Stderr,
            splitter: LineSplitter::default(),
        });
        None
    };
    let mut container = builder
        .validate_id()
        .map_err(|e| format!("container id: {e}"))?
        .as_init(&paths.dir)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| {
            cleanup_failed(run_dir, id);
            format!("creating container: {e}")
        })?;
    let fail = |container: &mut Container, msg: String| {
        if let Err(e) = container.delete(true) {
            eprintln!("shim {id}: cleaning up after failure: {e}");
        }
        msg
    };
    if let Err(e) = container.start() {
        return Err(fail(&mut container, format!("starting container: {e}")));
    }
    let Some(pid) = container.pid() else {
        return Err(fail(&mut container, "container has no init pid".into()));
    };
    let pid = pid.as_raw();
    // SAFETY: pidfd_open returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if raw < 0 {
        return Err(fail(
            &mut container,
            format!("pidfd_open({pid}): {}", errno()),
        ));
    }
    // SAFETY: a fresh fd from pidfd_open.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };

    if let Some(listener) = console {
        match receive_console(&listener) {
            Ok(master) => {
                // Copies of the master: one to resize the terminal, one for stdin.
                let copy = || {
                    master
                        .try_clone()
                        .map_err(|e| format!("duplicating the pty master: {e}"))
                };
                terminal = match copy() {
                    Ok(fd) => Some(fd),
                    Err(e) => return Err(fail(&mut container, e)),
                };
                if spec.stdin {
                    match copy() {
                        Ok(fd) => stdin = Some(StdinSink::new(fd)),
                        Err(e) => return Err(fail(&mut container, e)),
                    }
                }
                sources.push(Source {
                    fd: master,
                    stream: Stream::Stdout,
                    splitter: LineSplitter::default(),
                })
            }
            Err(e) => return Err(fail(&mut container, format!("console: {e}"))),
        }
        let _ = std::fs::remove_file(paths.console_socket());
    }
    for s in &sources {
        set_nonblocking(s.fd.as_raw_fd());
    }
    if let Some(sink) = &stdin {
        set_nonblocking(sink.fd.as_raw_fd());
    }

    let sock = paths.socket();
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            return Err(fail(
                &mut container,
                format!("binding {}: {e}", sock.display()),
            ))
        }
    };
    let _ = listener.set_nonblocking(true);
    let started_at = now();
    let _ = std::fs::write(paths.pid_file(), std::process::id().to_string());
    let _ = write_json_atomic(
        &paths.started_file(),
        &serde_json::json!({ "pid": pid, "startedAt": started_at }),
    );
    // Only now, after the container's processes were cloned with default signal
    // dispositions: a client that hangs up must not kill the shim.
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    Ok(Shim {
        id: id.to_string(),
        paths: paths.clone(),
        spec,
        container,
        pid,
        pidfd,
        started_at,
        log: Some(log),
        sources,
        stdin,
        terminal,
        attached: Vec::new(),
        listener,
        clients: Vec::new(),
        waiters: Vec::new(),
        deleter: None,
        reaped: None,
        exit: None,
        last_busy: Instant::now(),
        trimmed: false,
    })
}

/// After a failed `build`, libcontainer may have left its state dir: remove it (and the
/// cgroup) so the id can be used again.
fn cleanup_failed(run_dir: &Path, id: &str) {
    let dir = oci_root(run_dir).join(id);
    if let Ok(mut c) = Container::load(dir.clone()) {
        let _ = c.delete(true);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Accept libcontainer's connection on the console socket and take the pty master it
/// sends (SCM_RIGHTS).
pub(crate) fn receive_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("control message: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd in our table for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("no pty master received".into())
}

enum Event {
    Pid,
    Source(usize),
    Listener,
    Client(usize),
    Attached(usize),
    Stdin,
}

impl Shim {
    fn state(&self) -> ContainerState {
        ContainerState {
            id: self.id.clone(),
            status: if self.exit.is_some() {
                Status::Exited
            } else {
                Status::Running
            },
            pid: self.pid,
            shim_pid: std::process::id() as i32,
            started_at: self.started_at.clone(),
            exit: self.exit.clone(),
            log_path: self.spec.log_path.clone(),
            cgroups_path: self.spec.cgroups_path(),
            image: self.spec.image.clone(),
        }
    }

    fn run(&mut self) -> i32 {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some((_, _, at)) = self.reaped {
                if self.exit.is_none()
                    && (self.sources.is_empty() || at.elapsed() > DRAIN_AFTER_EXIT)
                {
                    self.finalize();
                }
            }
            if self.exit.is_some() && self.deleter.is_some() {
                return self.delete();
            }

            let mut fds = Vec::new();
            let mut events = Vec::new();
            let mut watch = |fd: RawFd, ev: Event, flags: libc::c_short| {
                fds.push(libc::pollfd {
                    fd,
                    events: flags,
                    revents: 0,
                });
                events.push(ev);
            };
            if self.reaped.is_none() {
                watch(self.pidfd.as_raw_fd(), Event::Pid, libc::POLLIN);
            }
            for (i, s) in self.sources.iter().enumerate() {
                watch(s.fd.as_raw_fd(), Event::Source(i), libc::POLLIN);
            }
            watch(self.listener.as_raw_fd(), Event::Listener, libc::POLLIN);
            for (i, c) in self.clients.iter().enumerate() {
                watch(c.stream.as_raw_fd(), Event::Client(i), libc::POLLIN);
            }
            let stdin_full = self
                .stdin
                .as_ref()
                .is_some_and(|s| s.pending.len() >= MAX_STDIN_BACKLOG);
            for (i, a) in self.attached.iter().enumerate() {
                let mut flags = 0;
                if !stdin_full {
                    flags |= libc::POLLIN;
                }
                if !a.output.is_empty() {
                    flags |= libc::POLLOUT;
                }
                watch(a.stream.as_raw_fd(), Event::Attached(i), flags);
            }
            if let Some(sink) = self.stdin.as_ref().filter(|s| !s.pending.is_empty()) {
                watch(sink.fd.as_raw_fd(), Event::Stdin, libc::POLLOUT);
            }
            let idle = self.last_busy.elapsed();
            let timeout = if self.reaped.is_some() && self.exit.is_none() {
                100
            } else if !self.trimmed {
                // Wake up when the loop will have been idle long enough to trim.
                TRIM_WHEN_IDLE_FOR.saturating_sub(idle).as_millis() as i32 + 1
            } else {
                -1
            };
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = errno();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("shim {}: poll: {e}", self.id);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if n == 0 {
                if !self.trimmed && self.last_busy.elapsed() >= TRIM_WHEN_IDLE_FOR {
                    drop_clean_file_pages();
                    self.trimmed = true;
                }
                continue;
            }
            // Output and attached clients keep the shim busy; a one-off request (the
            // agent asks for the status every few seconds) is answered, and its pages
            // are dropped again right away.
            self.trimmed = false;
            if fds.iter().zip(&events).any(|(pfd, ev)| {
                pfd.revents != 0 && !matches!(ev, Event::Listener | Event::Client(_))
            }) {
                self.last_busy = Instant::now();
            }
            let mut closed_sources = Vec::new();
            let mut closed_clients = Vec::new();
            for (pfd, ev) in fds.iter().zip(events) {
                if pfd.revents == 0 {
                    continue;
                }
                match ev {
                    Event::Pid => self.reap(),
                    Event::Source(i) => {
                        if !self.read_source(i, &mut buf) {
                            closed_sources.push(i);
                        }
                    }
                    Event::Listener => self.accept(),
                    Event::Client(i) => {
                        if !self.read_client(i) {
                            closed_clients.push(i);
                        }
                    }
                    Event::Attached(i) => {
                        if pfd.revents & libc::POLLOUT != 0 {
                            self.flush_attached(i);
                        }
                        if pfd.revents & !libc::POLLOUT != 0 {
                            self.read_attached(i);
                        }
                    }
                    Event::Stdin => {}
                }
            }
            self.drop_gone_attached();
            self.flush_stdin();
            for i in closed_sources.into_iter().rev() {
                let mut s = self.sources.remove(i);
                let log = &mut self.log;
                s.splitter
                    .finish(|text, partial| write_log(log, s.stream, partial, text));
            }
            for i in closed_clients.into_iter().rev() {
                let client = self.clients.remove(i);
                self.handle(client);
            }
        }
    }

    fn reap(&mut self) {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            let (code, signal) = if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                (128 + sig, Some(sig))
            } else {
                (libc::WEXITSTATUS(status), None)
            };
            self.reaped = Some((code, signal, Instant::now()));
        } else if r < 0 {
            // Not our child (cannot happen unless someone reaped it): record what we can.
            eprintln!("shim {}: waitpid({}): {}", self.id, self.pid, errno());
            self.reaped = Some((255, None, Instant::now()));
        }
        // Reap anything else that ended up as our child.
        // SAFETY: non-blocking waitpid for any child.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }

    /// Copy available output into the log; false at end of stream.
    fn read_source(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let s = &mut self.sources[i];
        // SAFETY: reading into a buffer we own from an fd we own.
        let n = unsafe { libc::read(s.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let log = &mut self.log;
            let stream = s.stream;
            let data = &buf[..n as usize];
            s.splitter
                .push(data, |text, partial| write_log(log, stream, partial, text));
            self.fan_out(stream, data);
            return true;
        }
        if n < 0 {
            let e = errno();
            if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted {
                return true;
            }
            // EIO on a pty master: the terminal's last user is gone.
        }
        false
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(true);
                    self.clients.push(Client {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("shim {}: accept: {e}", self.id);
                    return;
                }
            }
        }
    }

    /// Read from a client; false once its request line is complete (or it hung up).
    fn read_client(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        let mut chunk = [0u8; 1024];
        match c.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                c.buf.extend_from_slice(&chunk[..n]);
                !c.buf.contains(&b'\n') && c.buf.len() < 64 * 1024
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                true
            }
            Err(_) => false,
        }
    }

    fn handle(&mut self, client: Client) {
        let Client { mut stream, buf } = client;
        let (line, rest) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (&buf[..end], &buf[end + 1..]),
            None => (&buf[..], &[][..]),
        };
        if line.is_empty() {
            return;
        }
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let request: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                answer(
                    &mut stream,
                    &Response::Error {
                        message: format!("bad request: {e}"),
                    },
                );
                return;
            }
        };
        match request {
            Request::Status => answer(&mut stream, &Response::State(self.state())),
            Request::Kill { signal } => {
                let r = self.kill(signal);
                answer(&mut stream, &r);
            }
            Request::Wait => {
                if self.exit.is_some() {
                    answer(&mut stream, &Response::State(self.state()));
                } else {
                    self.waiters.push(stream);
                }
            }
            Request::Delete => {
                if self.exit.is_none() && self.reaped.is_none() {
                    // SAFETY: our unreaped child, so the pid cannot have been reused.
                    unsafe { libc::kill(self.pid, libc::SIGKILL) };
                }
                self.deleter = Some(stream);
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                if self.reaped.is_some() {
                    answer(
                        &mut stream,
                        &Response::Error {
                            message: format!("container {} is not running", self.id),
                        },
                    );
                    return;
                }
                answer(&mut stream, &Response::Ok);
                let _ = stream.set_nonblocking(true);
                self.attached.push(Attached {
                    stream,
                    input: rest.to_vec(),
                    output: Vec::new(),
                    stdin: stdin && self.stdin.is_some(),
                    stdout,
                    stderr,
                    gone: false,
                });
                let last = self.attached.len() - 1;
                self.take_input(last);
            }
        }
    }

    /// Queue output of `stream` for the attached clients that want it.
    fn fan_out(&mut self, stream: Stream, data: &[u8]) {
        for i in 0..self.attached.len() {
            let a = &mut self.attached[i];
            let wanted = match stream {
                Stream::Stdout => a.stdout,
                Stream::Stderr => a.stderr,
            };
            if !wanted || a.gone {
                continue;
            }
            let kind = match stream {
                Stream::Stdout => attach::STDOUT,
                Stream::Stderr => attach::STDERR,
            };
            a.output.extend(attach::frame(kind, data));
            if a.output.len() > MAX_ATTACH_BACKLOG {
                eprintln!(
                    "shim {}: an attached client fell {} bytes behind; detaching it",
                    self.id,
                    a.output.len()
                );
                a.gone = true;
                continue;
            }
            self.flush_attached(i);
        }
    }

    /// Write what the client can take now.
    fn flush_attached(&mut self, i: usize) {
        let a = &mut self.attached[i];
        while !a.output.is_empty() {
            match a.stream.write(&a.output) {
                Ok(0) => {
                    a.gone = true;
                    return;
                }
                Ok(n) => {
                    a.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    a.gone = true;
                    return;
                }
            }
        }
    }

    /// Read frames from an attached client; at its end it has detached.
    fn read_attached(&mut self, i: usize) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let a = &mut self.attached[i];
            match a.stream.read(&mut chunk) {
                Ok(0) => {
                    a.gone = true;
                    break;
                }
                Ok(n) => {
                    a.input.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    a.gone = true;
                    break;
                }
            }
        }
        self.take_input(i);
    }

    /// Act on the whole frames an attached client sent.
    fn take_input(&mut self, i: usize) {
        let mut used = 0;
        loop {
            let a = &self.attached[i];
            let (kind, payload, n) = match attach::parse(&a.input[used..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("shim {}: attached client: {e}; detaching it", self.id);
                    self.attached[i].gone = true;
                    break;
                }
            };
            let writes_stdin = a.stdin;
            match kind {
                attach::STDIN if writes_stdin => {
                    if let Some(sink) = self.stdin.as_mut() {
                        sink.pending.extend_from_slice(payload);
                    }
                }
                attach::RESIZE => {
                    if let (Some(fd), Some((w, h))) =
                        (self.terminal.as_ref(), attach::parse_resize(payload))
                    {
                        if let Err(e) = super::exec::set_window_size(fd.as_raw_fd(), w, h) {
                            eprintln!("shim {}: resizing the terminal: {e}", self.id);
                        }
                    }
                }
                attach::CLOSE_STDIN if writes_stdin => {
                    self.attached[i].stdin = false;
                    self.stdin_writer_left();
                }
                _ => {}
            }
            used += n;
        }
        self.attached[i].input.drain(..used);
    }

    /// With `stdinOnce`, the container's stdin closes when its writer leaves (a pipe's
    /// reader then sees its end; a terminal stays as it is).
    fn stdin_writer_left(&mut self) {
        if self.spec.stdin_once && !self.spec.tty {
            if let Some(sink) = self.stdin.as_mut() {
                sink.close_when_drained = true;
            }
        }
    }

    fn drop_gone_attached(&mut self) {
        let mut writer_left = false;
        self.attached.retain(|a| {
            writer_left |= a.gone && a.stdin;
            !a.gone
        });
        if writer_left {
            self.stdin_writer_left();
        }
    }

    /// Write pending input into the container's stdin; close it when asked and done.
    fn flush_stdin(&mut self) {
        let Some(sink) = self.stdin.as_mut() else {
            return;
        };
        while !sink.pending.is_empty() {
            // SAFETY: writing from a buffer we own to an fd we own.
            let n = unsafe {
                libc::write(
                    sink.fd.as_raw_fd(),
                    sink.pending.as_ptr().cast(),
                    sink.pending.len(),
                )
            };
            if n > 0 {
                sink.pending.drain(..n as usize);
                continue;
            }
            let e = errno();
            match e.kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock => return,
                // The container closed its stdin (or is gone): nothing more goes in.
                _ => {
                    self.stdin = None;
                    return;
                }
            }
        }
        if sink.close_when_drained {
            self.stdin = None;
        }
    }

    fn kill(&mut self, signal: i32) -> Response {
        if self.reaped.is_some() {
            return Response::Error {
                message: format!("container {} is not running", self.id),
            };
        }
        // SAFETY: the init process is our unreaped child, so its pid is still its own.
        if unsafe { libc::kill(self.pid, signal) } != 0 {
            return Response::Error {
                message: format!("kill({}, {signal}): {}", self.pid, errno()),
            };
        }
        Response::Ok
    }

    /// The init process is gone and its output drained: record how it ended.
    fn finalize(&mut self) {
        for mut s in std::mem::take(&mut self.sources) {
            let log = &mut self.log;
            s.splitter
                .finish(|text, partial| write_log(log, s.stream, partial, text));
        }
        let (code, signal, _) = self.reaped.unwrap_or((255, None, Instant::now()));
        let oom_killed =
            cgroup::Hierarchies::read_or_conventional().oom_killed(&self.spec.cgroups_path());
        let exit = ExitStatus {
            exit_code: code,
            signal,
            oom_killed,
            finished_at: now(),
        };
        if let Err(e) = write_json_atomic(&self.paths.exit_file(), &exit) {
            eprintln!("shim {}: writing exit.json: {e}", self.id);
        }
        self.exit = Some(exit);
        let state = Response::State(self.state());
        for mut w in std::mem::take(&mut self.waiters) {
            answer(&mut w, &state);
        }
        // Attached clients get the rest of the output, then their end.
        self.stdin = None;
        for mut a in std::mem::take(&mut self.attached) {
            let _ = a.stream.set_nonblocking(false);
            let _ = a.stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = a.stream.write_all(&a.output);
        }
    }

    /// Remove the container (cgroup, libcontainer state, our state dir) and exit.
    fn delete(&mut self) -> i32 {
        let mut result = Ok(());
        // A cgroup can stay busy for a moment while the last killed tasks leave it.
        for attempt in 0..20 {
            result = self.container.delete(true);
            if result.is_ok() {
                break;
            }
            if attempt < 19 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let response = match result {
            Ok(()) => match std::fs::remove_dir_all(&self.paths.dir) {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error {
                    message: format!("removing {}: {e}", self.paths.dir.display()),
                },
            },
            Err(e) => Response::Error {
                message: format!("deleting container {}: {e}", self.id),
            },
        };
        let ok = response == Response::Ok;
        if let Some(mut d) = self.deleter.take() {
            answer(&mut d, &response);
        }
        let state = Response::State(self.state());
        for mut w in std::mem::take(&mut self.waiters) {
            answer(&mut w, &state);
        }
        if ok {
            0
        } else {
            if let Response::Error { message } = &response {
                eprintln!("shim {}: {message}", self.id);
            }
            1
        }
    }
}

fn write_log(log: &mut Option<CriLog>, stream: Stream, partial: bool, text: &[u8]) {
    if let Some(l) = log {
        if let Err(e) = l.write(stream, partial, text) {
            // A full disk must not stop the container: stop logging, say so once.
            eprintln!("writing container log: {e}; log output dropped from now on");
            *log = None;
        }
    }
}

fn answer(stream: &mut UnixStream, response: &Response) {
    if let Ok(mut line) = serde_json::to_vec(response) {
        line.push(b'\n');
        let _ = stream.write_all(&line);
    }
}

/// Where the shim of `id` would listen (for tests and tools).
pub fn socket_path(run_dir: &Path, id: &str) -> PathBuf {
    StateDir::new(run_dir, id).socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(range: &str, perms: &str, path: &str, fields: &[(&str, u64)]) -> String {
        let mut s =
            format!("{range} {perms} 00000000 fe:00 1234   {path}\nSize: 8 kB\nRss: 8 kB\n");
        for (name, kib) in fields {
            s.push_str(&format!("{name}: {kib} kB\n"));
        }
        s.push_str("VmFlags: rd ex mr mw me\n");
        s
    }

    #[test]
    fn only_clean_private_file_mappings_are_dropped() {
        let clean = [("Private_Dirty", 8), ("Anonymous", 0), ("Locked", 0)];
        let smaps = [
            entry("1000-3000", "r-xp", "/usr/bin/skiff", &clean),
            // Relocated data: a private copy the file does not have.
            entry(
                "3000-4000",
                "r--p",
                "/usr/lib/libc.so.6",
                &[("Private_Dirty", 4), ("Anonymous", 4)],
            ),
            entry("4000-5000", "rw-p", "", &clean),
            entry("5000-6000", "rw-p", "[heap]", &clean),
            entry("6000-7000", "rw-s", "/dev/shm/x", &clean),
            entry("7000-9000", "r-xp", "/memfd:skiff (deleted)", &clean),
            entry("9000-a000", "r--p", "/usr/lib/locked", &[("Locked", 4)]),
        ]
        .concat();
        assert_eq!(
            clean_file_mappings(&smaps),
            vec![
                Mapping {
                    start: 0x1000,
                    end: 0x3000
                },
                Mapping {
                    start: 0x7000,
                    end: 0x9000
                },
            ]
        );
    }

    #[test]
    fn this_process_has_clean_code_mappings() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("reading smaps");
        let ours = clean_file_mappings(&smaps);
        // The test binary's own code is a clean file mapping.
        let here = this_process_has_clean_code_mappings as *const () as usize;
        assert!(
            ours.iter().any(|m| m.start <= here && here < m.end),
            "{here:#x} is not in a clean mapping:\n{smaps}"
        );
    }
}
