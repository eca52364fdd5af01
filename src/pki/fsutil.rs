//! Small file helpers: atomic writes with explicit permissions.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::PkiError;

/// Mode for private keys and secrets.
pub const KEY_MODE: u32 = 0o600;
/// Mode for certificates and public keys.
pub const CERT_MODE: u32 = 0o644;

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory is written, synced, given `mode` (independent of the umask) and
/// renamed over `path`. Parent directories are created (mode 0755 subject to
/// umask) when missing.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| PkiError::io("creating directory", &parent, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| PkiError::InvalidInput(format!("{} has no file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let tmp = parent.join(tmp_name);

    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| PkiError::io("creating temp file", &tmp, e))?;
        // The mode given to open() is filtered by the umask; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| PkiError::io("setting permissions on", &tmp, e))?;
        f.write_all(contents)
            .map_err(|e| PkiError::io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| PkiError::io("syncing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| PkiError::io("renaming temp file to", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a UTF-8 file, returning `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| PkiError::parse(path.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("reading", path, e)),
    }
}
