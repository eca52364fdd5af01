//! Mount helpers of the node: whether a directory is a mount point, and tmpfs mounts
//! (the runtime's state dir; memory-backed volumes of the agent).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Is `dir` a mount point (its device differs from its parent's)?
pub fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    d.dev() != p.dev()
}

/// Mount a tmpfs (`nosuid,nodev`, with tmpfs `options` such as `mode=0700,size=10%`) on
/// the existing directory `dir`.
pub fn mount_tmpfs(dir: &Path, options: &str) -> std::io::Result<()> {
    let c = |b: &[u8]| CString::new(b).map_err(std::io::Error::other);
    let target = c(dir.as_os_str().as_bytes())?;
    let (tmpfs, data) = (c(b"tmpfs")?, c(options.as_bytes())?);
    // SAFETY: valid C strings; mount(2) does not keep the pointers.
    let rc = unsafe {
        libc::mount(
            tmpfs.as_ptr(),
            target.as_ptr(),
            tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
