//! Unpacking one layer (a tar, plain or gzip or zstd compressed) into a snapshot dir in
//! the form overlayfs reads, as containerd's overlayfs snapshotter does:
//!
//! - an OCI whiteout `.wh.<name>` becomes a character device 0/0 named `<name>`;
//! - an opaque marker `.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on its
//!   directory (other `.wh..wh.*` entries are aufs bookkeeping and are skipped);
//! - modes (with setuid/setgid/sticky), owners, mtimes, symlinks, hard links, fifos and
//!   (as root) devices and `SCHILY.xattr.*` extended attributes are kept.
//!
//! A layer is untrusted input: a path with `..`, a path through a symlink or a hard link
//! to anything outside the snapshot is rejected ([`ImageError::PathEscape`]), and files
//! are created with `O_NOFOLLOW|O_EXCL` after removing what was there. The uncompressed
//! stream is hashed while it is read, so the caller can check the layer's diffID.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::blobs::HashingReader;
use super::{io_err, ImageError};

/// What unpacking a layer found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:` of the uncompressed tar (the layer's diffID).
    pub diff_id: String,
    /// Bytes of regular file content written.
    pub size: u64,
    pub entries: u64,
}

/// How a layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wrap `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut buffered = BufReader::with_capacity(128 << 10, reader);
    let head = buffered
        .fill_buf()
        .map_err(io_err("reading the start of a layer"))?;
    Ok(match detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ruzstd::decoding::StreamingDecoder::new(buffered).map_err(
            |e| ImageError::Corrupt {
                what: "zstd layer".into(),
                reason: e.to_string(),
            },
        )?),
    })
}

/// Unpack the layer read from `reader` (compressed or not) into `dest`, an existing
/// empty dir. `lowers`: the snapshots below it, topmost first (a directory the layer
/// writes into without listing it is created with the mode and owner it has there, as
/// overlayfs' copy-up would keep them). `privileged`: running as root (owners, devices,
/// whiteouts, xattrs).
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    lowers: &[PathBuf],
    privileged: bool,
) -> Result<Unpacked, ImageError> {
    let plain = decompress(reader)?;
    let mut hashing = HashingReader::new(plain);
    let mut out = Unpacked::default();
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|e| corrupt("reading the layer tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt("reading a layer tar entry", e))?;
            out.entries += 1;
            apply_entry(&mut entry, dest, lowers, privileged, &mut out, &mut dirs)?;
        }
    }
    // Hash what follows the end-of-archive blocks too: the diffID covers the whole stream.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_err("reading a layer"))?;
    // Directory metadata last (deepest first): writing into a dir changes its mtime.
    for (path, meta) in dirs.iter().rev() {
        meta.apply(path, privileged, false)?;
    }
    out.diff_id = hashing.digest();
    Ok(out)
}

fn corrupt(what: &str, e: std::io::Error) -> ImageError {
    ImageError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Owner, mode and mtime of an entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Meta {
    fn of(h: &tar::Header) -> Meta {
        Meta {
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime: h.mtime().unwrap_or(0) as i64,
        }
    }

    /// chown (as root), then chmod (chown clears setuid), then times.
    fn apply(&self, path: &Path, privileged: bool, symlink: bool) -> Result<(), ImageError> {
        let c = cpath(path)?;
        if privileged {
            // SAFETY: a valid NUL-terminated path; lchown does not follow symlinks.
            if unsafe { libc::lchown(c.as_ptr(), self.uid, self.gid) } != 0 {
                return Err(io_err(format!("chown {}", path.display()))(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        if !symlink {
            // SAFETY: as above; the path is not a symlink (checked by the caller).
            if unsafe { libc::chmod(c.as_ptr(), self.mode as libc::mode_t) } != 0 {
                return Err(io_err(format!("chmod {}", path.display()))(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        let t = libc::timespec {
            tv_sec: self.mtime as libc::time_t,
            tv_nsec: 0,
        };
        let times = [t, t];
        // SAFETY: valid path and a two-element timespec array.
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        Ok(())
    }
}

fn cpath(p: &Path) -> Result<CString, ImageError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| ImageError::Corrupt {
        what: format!("path {}", p.display()),
        reason: "contains a NUL byte".into(),
    })
}

/// The entry's path as normal components, or an escape error.
pub fn clean_path(raw: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::PathEscape {
                    path: raw.display().to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Make sure every ancestor of `rel` inside `root` is a real directory (creating missing
/// ones, replacing non-directories); a symlink on the way is an escape.
fn prepare_parents(
    root: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    privileged: bool,
) -> Result<(), ImageError> {
    let mut cur = root.to_path_buf();
    let mut sub = PathBuf::new();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        sub.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::PathEscape {
                    path: format!(
                        "{} (through the symlink {})",
                        rel.display(),
                        c.as_os_str().to_string_lossy()
                    ),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&cur)
                    .map_err(io_err(format!("replacing {}", cur.display())))?;
                mkdir(&cur)?;
                inherit(&cur, &sub, lowers, privileged)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                mkdir(&cur)?;
                inherit(&cur, &sub, lowers, privileged)?;
            }
            Err(e) => return Err(io_err(format!("inspecting {}", cur.display()))(e)),
        }
    }
    Ok(())
}

/// Give the new dir `dir` (at `sub` in the image) the mode, owner and mtime of the
/// topmost lower snapshot's dir at `sub`, if one has it.
fn inherit(dir: &Path, sub: &Path, lowers: &[PathBuf], privileged: bool) -> Result<(), ImageError> {
    use std::os::unix::fs::MetadataExt;
    for lower in lowers {
        match std::fs::symlink_metadata(lower.join(sub)) {
            Ok(m) if m.is_dir() => {
                let meta = Meta {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: m.mtime(),
                };
                return meta.apply(dir, privileged, false);
            }
            // A file, device (whiteout) or symlink there: this layer's dir is new.
            Ok(_) => return Ok(()),
            Err(_) => continue,
        }
    }
    Ok(())
}

/// Whether a manifest's layer media type is one skiff unpacks (OCI and Docker layer
/// tars, plain, gzip or zstd; the compression is read from the blob itself).
pub fn is_layer_media_type(t: &str) -> bool {
    t.is_empty() || ((t.contains(".layer.") || t.contains(".rootfs.")) && t.contains("tar"))
}

fn mkdir(p: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(io_err(format!("creating {}", p.display())))
}

/// Remove whatever is at `p` (nothing there is fine).
fn remove_any(p: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(io_err(format!("removing {}", p.display())))
}

fn mknod(
    p: &Path,
    kind: libc::mode_t,
    mode: u32,
    major: u32,
    minor: u32,
) -> Result<(), ImageError> {
    let c = cpath(p)?;
    // SAFETY: valid path; makedev/mknod have no memory preconditions.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (mode as libc::mode_t & 0o7777),
            libc::makedev(major, minor),
        )
    };
    if rc != 0 {
        return Err(io_err(format!("mknod {}", p.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> Result<(), ImageError> {
    let c = cpath(p)?;
    let n = CString::new(name).map_err(|_| ImageError::Corrupt {
        what: format!("xattr name of {}", p.display()),
        reason: "contains a NUL byte".into(),
    })?;
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_err(format!("setting xattr {name} on {}", p.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    lowers: &[PathBuf],
    privileged: bool,
    out: &mut Unpacked,
    dirs: &mut Vec<(PathBuf, Meta)>,
) -> Result<(), ImageError> {
    let raw = entry
        .path()
        .map_err(|e| corrupt("reading an entry's path", e))?
        .into_owned();
    let rel = clean_path(&raw)?;
    let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        // The layer's root dir itself ("./"): the snapshot dir stands for it.
        return Ok(());
    };
    prepare_parents(dest, &rel, lowers, privileged)?;
    let target = dest.join(&rel);
    let header = entry.header().clone();
    let meta = Meta::of(&header);

    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        // `.wh..` and `.wh...` would whiteout the dir itself or its parent.
        if hidden == "." || hidden == ".." {
            return Err(ImageError::PathEscape {
                path: raw.display().to_string(),
            });
        }
        if !privileged {
            return Err(ImageError::NotImplemented(
                "layers with whiteouts unpack only as root (overlayfs whiteouts are devices)"
                    .into(),
            ));
        }
        let parent = target.parent().unwrap_or(dest).to_path_buf();
        if name == OPAQUE {
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
        } else if !hidden.starts_with(WHITEOUT_PREFIX) && !hidden.is_empty() {
            let hidden_path = parent.join(hidden);
            remove_any(&hidden_path)?;
            mknod(&hidden_path, libc::S_IFCHR, 0, 0, 0)?;
        }
        return Ok(());
    }

    let kind = header.entry_type();
    let existing = std::fs::symlink_metadata(&target).ok();
    if kind.is_dir() {
        match &existing {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                remove_any(&target)?;
                mkdir(&target)?;
            }
            None => mkdir(&target)?,
        }
        dirs.push((target.clone(), meta));
        apply_xattrs(entry, &target, privileged)?;
        return Ok(());
    }
    if existing.is_some() {
        remove_any(&target)?;
    }
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(io_err(format!("creating {}", target.display())))?;
            let n = std::io::copy(entry, &mut file)
                .map_err(io_err(format!("writing {}", target.display())))?;
            out.size += n;
            drop::<File>(file);
            meta.apply(&target, privileged, false)?;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(|e| corrupt("reading a symlink target", e))?
                .ok_or_else(|| ImageError::Corrupt {
                    what: format!("symlink {}", rel.display()),
                    reason: "no target".into(),
                })?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(io_err(format!("creating symlink {}", target.display())))?;
            meta.apply(&target, privileged, true)?;
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(|e| corrupt("reading a hard link target", e))?
                .ok_or_else(|| ImageError::Corrupt {
                    what: format!("hard link {}", rel.display()),
                    reason: "no target".into(),
                })?;
            let src_rel = clean_path(&link)?;
            // The source must be inside the snapshot, not reached through a symlink.
            let mut cur = dest.to_path_buf();
            for c in src_rel.parent().unwrap_or(Path::new("")).components() {
                cur.push(c);
                if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(ImageError::PathEscape {
                        path: link.display().to_string(),
                    });
                }
            }
            let src = dest.join(&src_rel);
            match std::fs::symlink_metadata(&src) {
                Ok(m) if !m.is_dir() => {}
                _ => {
                    return Err(ImageError::Corrupt {
                        what: format!("hard link {}", rel.display()),
                        reason: format!(
                            "its target {} is not a file of this layer",
                            src_rel.display()
                        ),
                    })
                }
            }
            std::fs::hard_link(&src, &target)
                .map_err(io_err(format!("linking {}", target.display())))?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let ty = match kind {
                tar::EntryType::Char => libc::S_IFCHR,
                tar::EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            if ty != libc::S_IFIFO && !privileged {
                tracing::debug!(path = %rel.display(), "skipping a device node (not root)");
                return Ok(());
            }
            mknod(&target, ty, meta.mode, major, minor)?;
            meta.apply(&target, privileged, false)?;
        }
        // pax and GNU long-name headers are folded into their entries by `tar`; other
        // kinds (sockets, volume labels) carry nothing a root filesystem needs.
        _ => return Ok(()),
    }
    apply_xattrs(entry, &target, privileged)?;
    Ok(())
}

fn apply_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    privileged: bool,
) -> Result<(), ImageError> {
    if !privileged {
        return Ok(());
    }
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Ok(());
    };
    let mut attrs = Vec::new();
    for ext in exts.flatten() {
        if let Ok(key) = ext.key() {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                attrs.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    for (name, value) in attrs {
        // Overlay's own attributes from a layer would forge whiteouts: never copied.
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Err(e) = set_xattr(target, &name, &value) {
            tracing::debug!(error = %e, "skipping an extended attribute");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// A tar built entry by entry; raw names are written into the header as is (so
    /// tests can make the hostile ones the `tar` builder refuses).
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn entry(&mut self, name: &str, kind: tar::EntryType, mode: u32, link: &str, data: &[u8]) {
            let mut h = tar::Header::new_gnu();
            {
                let gnu = h.as_gnu_mut().expect("gnu header");
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mtime(1_600_000_000);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                let gnu = h.as_gnu_mut().expect("gnu header");
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            self.0.append(&h, data).expect("append");
        }
        fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
            self.entry(name, tar::EntryType::Regular, mode, "", data);
        }
        fn dir(&mut self, name: &str) {
            self.entry(name, tar::EntryType::Directory, 0o755, "", b"");
        }
        fn done(self) -> Vec<u8> {
            self.0.into_inner().expect("tar")
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<Unpacked, ImageError>) {
        let dir = tempfile::tempdir().expect("tmp");
        let r = unpack_layer(bytes, dir.path(), &[], is_root());
        (dir, r)
    }

    #[test]
    fn files_modes_owners_links_and_diff_id() {
        let mut t = Tar::new();
        t.dir("etc/");
        t.file("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n");
        t.file("bin/tool", 0o4755, b"#!/bin/sh\n");
        t.entry("bin/sh", tar::EntryType::Symlink, 0o777, "tool", b"");
        t.entry("bin/hard", tar::EntryType::Link, 0o755, "bin/tool", b"");
        t.entry("run/fifo", tar::EntryType::Fifo, 0o600, "", b"");
        let bytes = t.done();
        let (dir, r) = unpack(&bytes);
        let u = r.expect("unpacks");
        assert_eq!(u.diff_id, super::super::blobs::digest_of(&bytes));
        assert_eq!(u.entries, 6);
        let root = dir.path();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/passwd")).expect("passwd"),
            "root:x:0:0::/:/bin/sh\n"
        );
        let tool = std::fs::metadata(root.join("bin/tool")).expect("tool");
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_600_000_000);
        if is_root() {
            assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
        }
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).expect("link"),
            Path::new("tool")
        );
        let hard = std::fs::metadata(root.join("bin/hard")).expect("hard");
        assert_eq!(hard.ino(), tool.ino());
        assert!(std::fs::symlink_metadata(root.join("run/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo());
    }

    #[test]
    fn gzip_and_zstd_layers_give_the_diff_id_of_the_plain_tar() {
        let mut t = Tar::new();
        t.file("a", 0o644, b"alpha");
        let plain = t.done();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).expect("gz");
        let gz = gz.finish().expect("gz");
        let (dir, r) = unpack(&gz);
        assert_eq!(
            r.expect("gzip").diff_id,
            super::super::blobs::digest_of(&plain)
        );
        assert_eq!(std::fs::read(dir.path().join("a")).expect("a"), b"alpha");

        let zst = ruzstd::encoding::compress_to_vec(
            &plain[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(detect(&zst), Compression::Zstd);
        let (dir, r) = unpack(&zst);
        assert_eq!(
            r.expect("zstd").diff_id,
            super::super::blobs::digest_of(&plain)
        );
        assert_eq!(std::fs::read(dir.path().join("a")).expect("a"), b"alpha");
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        if !is_root() {
            let mut t = Tar::new();
            t.file("etc/.wh.gone", 0o644, b"");
            let (_d, r) = unpack(&t.done());
            assert!(matches!(r, Err(ImageError::NotImplemented(_))));
            return;
        }
        let mut t = Tar::new();
        t.file("etc/.wh.gone", 0o644, b"");
        t.file("old/.wh..wh..opq", 0o644, b"");
        t.file("old/new", 0o644, b"n");
        t.file("x/.wh..wh.plnk", 0o644, b"");
        let (dir, r) = unpack(&t.done());
        r.expect("unpacks");
        let wh = std::fs::symlink_metadata(dir.path().join("etc/gone")).expect("whiteout");
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!dir.path().join("etc/.wh.gone").exists());
        let c = cpath(&dir.path().join("old")).expect("path");
        let name = CString::new("trusted.overlay.opaque").expect("name");
        let mut buf = [0u8; 4];
        // SAFETY: valid strings and buffer.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 1, "opaque xattr set");
        assert_eq!(buf[0], b'y');
        assert!(dir.path().join("old/new").exists());
        assert!(!dir.path().join("x/.wh..wh.plnk").exists());
    }

    #[test]
    fn paths_escaping_the_snapshot_are_rejected() {
        let outside = tempfile::tempdir().expect("outside");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dot-dot", {
                let mut t = Tar::new();
                t.file("../evil", 0o644, b"x");
                t.done()
            }),
            ("nested dot-dot", {
                let mut t = Tar::new();
                t.file("a/../../evil", 0o644, b"x");
                t.done()
            }),
            ("through a symlink", {
                let mut t = Tar::new();
                let target = outside.path().to_string_lossy().into_owned();
                t.entry("link", tar::EntryType::Symlink, 0o777, &target, b"");
                t.file("link/evil", 0o644, b"x");
                t.done()
            }),
            ("whiteout of the parent", {
                let mut t = Tar::new();
                t.file("a/.wh...", 0o644, b"");
                t.done()
            }),
            ("whiteout of the root", {
                let mut t = Tar::new();
                t.file(".wh...", 0o644, b"");
                t.done()
            }),
            ("hard link out", {
                let mut t = Tar::new();
                t.entry("h", tar::EntryType::Link, 0o644, "../../etc/passwd", b"");
                t.done()
            }),
        ];
        for (what, bytes) in cases {
            let (_dir, r) = unpack(&bytes);
            assert!(
                matches!(r, Err(ImageError::PathEscape { .. })),
                "{what}: {r:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("outside").count(),
            0,
            "nothing was written outside"
        );
        // An absolute path is taken as relative to the snapshot.
        let mut t = Tar::new();
        t.file("/abs/file", 0o644, b"x");
        let (dir, r) = unpack(&t.done());
        r.expect("absolute paths are rooted in the snapshot");
        assert!(dir.path().join("abs/file").is_file());
    }

    #[test]
    fn unlisted_parent_dirs_keep_the_lower_layers_mode_and_owner() {
        let mut t = Tar::new();
        t.entry("tmp/", tar::EntryType::Directory, 0o1777, "", b"");
        let (lower, r) = unpack(&t.done());
        r.expect("lower");
        let mut t = Tar::new();
        t.file("tmp/x", 0o644, b"x");
        t.file("new/y", 0o644, b"y");
        let upper = tempfile::tempdir().expect("tmp");
        unpack_layer(
            &t.done()[..],
            upper.path(),
            &[lower.path().to_path_buf()],
            is_root(),
        )
        .expect("upper");
        let m = std::fs::metadata(upper.path().join("tmp")).expect("tmp");
        assert_eq!(m.permissions().mode() & 0o7777, 0o1777);
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (1000, 1001));
        }
        let m = std::fs::metadata(upper.path().join("new")).expect("new");
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn layer_media_types() {
        for ok in [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ] {
            assert!(is_layer_media_type(ok), "{ok}");
        }
        for bad in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ] {
            assert!(!is_layer_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_symlinks() {
        let outside = tempfile::tempdir().expect("outside");
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let mut t = Tar::new();
        t.entry(
            "f",
            tar::EntryType::Symlink,
            0o777,
            &victim.to_string_lossy(),
            b"",
        );
        t.file("f", 0o644, b"new");
        let (dir, r) = unpack(&t.done());
        r.expect("unpacks");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).expect("f"),
            "new"
        );
    }
}
