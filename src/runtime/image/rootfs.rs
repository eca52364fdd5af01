//! Containers' root filesystems: an overlayfs mount per container at `ct/<id>/r`, with
//! the image's layer snapshots as lowerdirs (topmost first) and `ct/<id>/u` and
//! `ct/<id>/w` as its private upper and work dirs. `ct/<id>/layers` names the snapshots
//! it uses, so pruning keeps them while the container exists.
//!
//! The kernel takes at most a page of mount options. Lowerdirs are absolute paths while
//! they fit; beyond that the mount is made by a forked child that `chdir`s into `sn/`
//! and names the lowerdirs relative to it (as containerd does), since changing the
//! directory of the multi-threaded agent itself would race with its other threads.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{io_err, ImageError, Inner};
use crate::runtime::mounts::is_mount_point;

/// Longest option string written with absolute paths (a page, less some margin).
pub const MOUNT_OPTIONS_MAX: usize = 4000;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn cstr(p: &[u8]) -> Result<CString, ImageError> {
    CString::new(p).map_err(|_| ImageError::Corrupt {
        what: String::from_utf8_lossy(p).into_owned(),
        reason: "contains a NUL byte".into(),
    })
}

pub(crate) fn prepare(inner: &Inner, id: &str, image_id: &str) -> Result<PathBuf, ImageError> {
    let bad = |reason: String| ImageError::Rootfs {
        id: id.to_string(),
        reason,
    };
    if !valid_id(id) {
        return Err(bad("invalid container id".into()));
    }
    let lock = inner.lock()?;
    let keys = inner.layer_keys_for(image_id, &lock)?;
    if keys.is_empty() {
        return Err(bad(format!("image {image_id} has no layers")));
    }
    let sn = inner.root().join("sn");
    for k in &keys {
        if !sn.join(k).is_dir() {
            return Err(bad(format!("layer snapshot {k} is missing")));
        }
    }
    let dir = inner.root().join("ct").join(id);
    let (upper, work, root) = (dir.join("u"), dir.join("w"), dir.join("r"));
    if is_mount_point(&root) {
        return Ok(root);
    }
    for d in [&dir, &upper, &work, &root] {
        std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    std::fs::write(dir.join("layers"), keys.join("\n"))
        .map_err(io_err(format!("writing {}", dir.join("layers").display())))?;
    drop(lock);

    let top_first: Vec<&String> = keys.iter().rev().collect();
    let absolute: Vec<String> = top_first
        .iter()
        .map(|k| sn.join(k).to_string_lossy().into_owned())
        .collect();
    let tail = format!(
        ",upperdir={},workdir={}",
        upper.to_string_lossy(),
        work.to_string_lossy()
    );
    let options = format!("lowerdir={}{tail}", absolute.join(":"));
    let result = if options.len() <= inner.mount_option_limit() {
        mount_overlay(&root, &options, None)
    } else {
        let relative: Vec<&str> = top_first.iter().map(|k| k.as_str()).collect();
        let options = format!("lowerdir={}{tail}", relative.join(":"));
        mount_overlay(&root, &options, Some(&sn))
    };
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(bad(e));
    }
    Ok(root)
}

/// mount(2) an overlay at `target`; with `cwd`, in a forked child that changes into it
/// first (relative lowerdirs).
fn mount_overlay(target: &Path, options: &str, cwd: Option<&Path>) -> Result<(), String> {
    let overlay = cstr(b"overlay").map_err(|e| e.to_string())?;
    let t = cstr(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let o = cstr(options.as_bytes()).map_err(|e| e.to_string())?;
    let Some(cwd) = cwd else {
        // SAFETY: valid C strings; data is the option string mount(2) expects.
        let rc = unsafe {
            libc::mount(
                overlay.as_ptr(),
                t.as_ptr(),
                overlay.as_ptr(),
                0,
                o.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mounting overlay at {}: {}",
                target.display(),
                std::io::Error::last_os_error()
            ));
        }
        return Ok(());
    };
    let c = cstr(cwd.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: the child only makes async-signal-safe system calls (chdir, mount,
    // _exit) on memory prepared before the fork, then exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::chdir(c.as_ptr()) != 0 {
                libc::_exit(100);
            }
            if libc::mount(
                overlay.as_ptr(),
                t.as_ptr(),
                overlay.as_ptr(),
                0,
                o.as_ptr().cast(),
            ) != 0
            {
                let errno = *libc::__errno_location();
                libc::_exit(errno.clamp(1, 99));
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for the child forked above.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waiting for the mount helper: {e}"));
        }
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(100) => Err(format!("chdir {}", cwd.display())),
        Some(errno) => Err(format!(
            "mounting overlay at {} (relative lowerdirs): {}",
            target.display(),
            std::io::Error::from_raw_os_error(errno)
        )),
        None => Err("the mount helper was killed".into()),
    }
}

pub(crate) fn release(inner: &Inner, id: &str) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::Rootfs {
        id: id.to_string(),
        reason,
    };
    if !valid_id(id) {
        return Err(bad("invalid container id".into()));
    }
    let dir = inner.root().join("ct").join(id);
    if !dir.exists() {
        return Ok(());
    }
    let root = dir.join("r");
    if is_mount_point(&root) {
        let t = cstr(root.as_os_str().as_bytes())?;
        // SAFETY: valid C string.
        if unsafe { libc::umount2(t.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                // Still open somewhere (a process in the container's mount namespace
                // that is being torn down): detach; it goes when the last user does.
                // SAFETY: valid C string.
                if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
                    return Err(bad(format!(
                        "unmounting {}: {}",
                        root.display(),
                        std::io::Error::last_os_error()
                    )));
                }
            } else if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(bad(format!("unmounting {}: {e}", root.display())));
            }
        }
        if is_mount_point(&root) {
            return Err(bad(format!("{} is still mounted", root.display())));
        }
    }
    std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// Snapshot keys used by prepared container root filesystems.
pub(crate) fn keys_in_use(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("ct")) {
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("layers")) {
                out.extend(text.lines().map(str::to_string));
            }
        }
    }
    out
}
