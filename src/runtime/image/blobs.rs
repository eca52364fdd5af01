//! The content-addressed blob store: `blobs/sha256/<hex>` under the store's root.
//!
//! Every blob is written to `tmp/` first while its SHA-256 is computed, checked against the
//! digest it should have (when one is known) and renamed into place, so a blob that
//! exists is complete and correct. Temp names start with the writer's pid, so a store
//! opened later can remove what a dead writer left.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{io_err, ImageError};

/// The blob store's directories.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    pub fn new(root: &Path) -> Blobs {
        Blobs {
            dir: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
        }
    }

    pub fn create_dirs(&self) -> Result<(), ImageError> {
        for d in [&self.dir, &self.tmp] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        Ok(())
    }

    /// Where the blob `digest` (`sha256:<hex>`) lives.
    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        super::reference::validate_digest(digest).map_err(|reason| ImageError::Corrupt {
            what: format!("digest {digest:?}"),
            reason,
        })?;
        Ok(self.dir.join(&digest["sha256:".len()..]))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(digest)?;
        std::fs::read(&p).map_err(io_err(format!("reading blob {digest}")))
    }

    pub fn open(&self, digest: &str) -> Result<File, ImageError> {
        let p = self.path(digest)?;
        File::open(&p).map_err(io_err(format!("opening blob {digest}")))
    }

    /// Start writing a blob; `expected` is checked at [`BlobWriter::commit`].
    pub fn writer(&self, expected: Option<&str>) -> Result<BlobWriter, ImageError> {
        let tmp = temp_path(&self.tmp, "blob");
        let file = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        Ok(BlobWriter {
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            expected: expected.map(str::to_string),
            dir: self.dir.clone(),
        })
    }

    /// Copy `reader` into the store; returns (digest, size).
    pub fn write_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let mut w = self.writer(expected)?;
        std::io::copy(reader, &mut w).map_err(io_err("copying a blob into the store"))?;
        w.commit()
    }

    pub fn write_bytes(&self, data: &[u8], expected: Option<&str>) -> Result<String, ImageError> {
        let mut w = self.writer(expected)?;
        w.write_all(data).map_err(io_err("writing a blob"))?;
        Ok(w.commit()?.0)
    }

    /// Every stored digest with its size.
    pub fn list(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((format!("sha256:{name}"), size));
            }
        }
        out
    }

    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.path(digest)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing blob {digest}"))(e)),
        }
    }
}

/// A blob being written; dropped without [`commit`](Self::commit), its temp file goes.
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    expected: Option<String>,
    dir: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// Verify the digest, fsync and rename into place; (digest, size).
    pub fn commit(self) -> Result<(String, u64), ImageError> {
        self.commit_with(&|_| Ok(()))
    }

    /// [`commit`](Self::commit), calling `before` with the digest just before the blob
    /// becomes visible (to lease it against pruning).
    pub fn commit_with(
        mut self,
        before: &dyn Fn(&str) -> Result<(), ImageError>,
    ) -> Result<(String, u64), ImageError> {
        let file = self.file.take().ok_or_else(|| ImageError::Corrupt {
            what: "blob writer".into(),
            reason: "committed twice".into(),
        })?;
        let digest = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(expected) = &self.expected {
            if *expected != digest {
                return Err(ImageError::DigestMismatch {
                    what: "blob".into(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_all()
            .map_err(io_err(format!("syncing {}", self.tmp.display())))?;
        drop(file);
        before(&digest)?;
        let dest = self.dir.join(&digest["sha256:".len()..]);
        std::fs::rename(&self.tmp, &dest).map_err(io_err(format!("storing blob {digest}")))?;
        Ok((digest, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A fresh name in `dir`: `<pid>-<what>-<random>`.
pub fn temp_path(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!(
        "{}-{what}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Remove temp files and dirs whose writer (the pid in their name) is gone.
pub fn clean_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let path = e.path();
            if path.is_dir() && !path.is_symlink() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The SHA-256 digest of `data`, `sha256:<hex>`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A reader that hashes what passes through it (for diffIDs of compressed layers).
pub struct HashingReader<R> {
    pub inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_digests_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().expect("tmp");
        let blobs = Blobs::new(root.path());
        blobs.create_dirs().expect("dirs");
        let good = digest_of(b"hello");
        assert_eq!(blobs.write_bytes(b"hello", Some(&good)).expect("ok"), good);
        assert_eq!(blobs.read(&good).expect("read"), b"hello");
        let err = blobs
            .write_bytes(b"other", Some(&good))
            .expect_err("mismatch");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert_eq!(blobs.list().len(), 1);
        assert_eq!(
            std::fs::read_dir(root.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
        assert!(blobs.path("sha256:../../etc").is_err());
    }
}
