//! Network namespaces as files: pod sandboxes are network namespaces bind-mounted on
//! `<state_dir>/netns/<pod uid>` (no process has to live for them to exist), and
//! netlink sockets opened inside them.
//!
//! Namespaces belong to threads, and a tokio process has many: a namespace is created
//! by a short-lived dedicated OS thread that `unshare(CLONE_NEWNET)`s itself, bind-mounts
//! its `/proc/thread-self/ns/net` on the file and ends. A netlink socket belongs to the
//! namespace of the thread that opened it, so the socket that configures a pod's
//! interfaces is opened by a dedicated thread that `setns`es into the pod's namespace
//! first; the socket is then driven from the async runtime like any other. No thread of
//! the runtime ever changes namespace.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::NetError;

/// `statfs` magic of nsfs, the filesystem of `/proc/*/ns/*` files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn sys_err(context: impl Into<String>) -> impl FnOnce(nix::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Sys { context, source }
}

/// Whether `path` is a namespace file (a bind-mounted nsfs inode, of any kind).
pub fn is_netns(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC
    }
}

/// Makes `dir` a mount point with shared propagation (bind-mounted on itself), as
/// iproute2 does for `/run/netns`: an unmount of a namespace file under it then also
/// reaches mount namespaces that were copied while it was mounted, so the namespace is
/// really freed.
pub fn ensure_shared_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(dir).map_err(NetError::io(format!("creating {}", dir.display())))?;
    let share = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        // Not a mount point yet.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys_err(format!(
                "bind-mounting {} on itself",
                dir.display()
            )))?;
            share().map_err(sys_err(format!("making {} shared", dir.display())))
        }
        Err(e) => Err(sys_err(format!("making {} shared", dir.display()))(e)),
    }
}

/// A kind of namespace a pod sandbox holds as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Net,
    Ipc,
    Uts,
}

impl Kind {
    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }
}

/// Creates a new network namespace bind-mounted on `path` (which must not be a
/// namespace yet). The namespace has only `lo`, down.
pub async fn create(path: &Path) -> Result<(), NetError> {
    create_namespace(path, Kind::Net, None).await
}

/// Creates a new namespace of `kind` bind-mounted on `path`; an existing namespace file
/// there is kept. A UTS namespace gets `hostname`. The pod sandbox's IPC and UTS
/// namespaces are made this way too, so the containers of a pod share them.
pub async fn create_namespace(
    path: &Path,
    kind: Kind,
    hostname: Option<String>,
) -> Result<(), NetError> {
    if is_netns(path) {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(NetError::io(format!("creating {}", path.display())))?;
    let target = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns".into())
        .spawn(move || {
            // This thread alone moves into the new namespace, pins it with the bind
            // mount and ends; no other thread is affected.
            let name = kind.proc_name();
            let r = unshare(kind.flag())
                .map_err(sys_err(format!("unshare({name} namespace)")))
                .and_then(|()| match &hostname {
                    Some(h) => nix::unistd::sethostname(h)
                        .map_err(sys_err(format!("setting the hostname {h:?}"))),
                    None => Ok(()),
                })
                .and_then(|()| {
                    mount(
                        Some(format!("/proc/thread-self/ns/{name}").as_str()),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(sys_err(format!(
                        "bind-mounting the new {name} namespace on {}",
                        target.display()
                    )))
                });
            let _ = tx.send(r);
        })
        .map_err(NetError::io("starting the namespace thread"))?;
    let result = rx.await.unwrap_or_else(|_| {
        Err(NetError::Io {
            context: "the namespace thread ended without an answer".into(),
            source: std::io::Error::other("thread panicked"),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Unmounts and removes the namespace file at `path`; a missing file or a plain file
/// (not mounted) is fine. The namespace itself ends when nothing else holds it.
pub fn remove(path: &Path) -> Result<(), NetError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys_err(format!("unmounting {}", path.display()))(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io(format!("removing {}", path.display()))(e)),
    }
}

/// An rtnetlink connection inside the namespace of `path`, driven by a task on the
/// current runtime; the task ends when the returned guard is dropped.
pub async fn netlink_in(path: &Path) -> Result<(rtnetlink::Handle, TaskGuard), NetError> {
    let file = File::open(path).map_err(NetError::io(format!("opening {}", path.display())))?;
    let runtime = tokio::runtime::Handle::current();
    let display = path.display().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns-nl".into())
        .spawn(move || {
            let r = setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(sys_err(format!("setns into {display}")))
                .and_then(|()| {
                    // The socket is registered with the runtime's reactor, and belongs
                    // to this thread's (the pod's) namespace for good.
                    let _entered = runtime.enter();
                    rtnetlink::new_connection()
                        .map_err(NetError::io(format!("netlink socket in {display}")))
                });
            let _ = tx.send(r.map(|(conn, handle, _)| (conn, handle)));
        })
        .map_err(NetError::io("starting the netlink thread"))?;
    let (conn, handle) = rx.await.unwrap_or_else(|_| {
        Err(NetError::Io {
            context: "the netlink thread ended without an answer".into(),
            source: std::io::Error::other("thread panicked"),
        })
    })?;
    Ok((handle, TaskGuard(tokio::spawn(conn))))
}

/// Aborts a background task when dropped.
#[derive(Debug)]
pub struct TaskGuard(pub tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The namespace file of pod `uid` under the state dir.
pub fn pod_netns_path(state_dir: &Path, uid: &str) -> PathBuf {
    state_dir.join("netns").join(uid)
}
