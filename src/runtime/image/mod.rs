//! The node's image store: what turns an image reference into a container's root
//! filesystem.
//!
//! Layout under its root (the agent uses `<data-dir>/agent/content`):
//! - `blobs/sha256/<hex>`: content-addressed configs and layer blobs ([`blobs`]);
//! - `sn/<key>`: one unpacked layer in overlayfs form ([`unpack`]), keyed by the first
//!   32 hex digits of the layer's chain ID (so images share layers, and the mount
//!   options stay short), with `sn/<key>.json` holding the full chain ID and size;
//! - `ct/<container>/{u,w,r}`: a container's overlay upper, work and mounted root
//!   ([`rootfs`]);
//! - `images.json`: the image records (references, layers, config, pinned, last use);
//! - `leases/`: what running pulls/imports have written but not yet recorded;
//! - `tmp/`: blobs and snapshots being written; `lock`: a `flock` taken by every change,
//!   so the agent and `skiff images …` can share a store.
//!
//! Where images come from: [`archive`] (OCI layout and `docker save` tars) and [`pull`]
//! (registries through `oci-client`, configured by [`registries`], with pull secrets
//! from [`credentials`]). [`reference`] normalizes names as Docker does.

pub mod archive;
pub mod blobs;
pub mod credentials;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod rootfs;
pub mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use credentials::{credentials_from_dockerconfigjson, RegistryCredential};
pub use reference::Reference;
pub use registries::RegistriesConfig;

use blobs::Blobs;

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("layer entry {path:?} escapes the snapshot")]
    PathEscape { path: String },
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error("registries config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("image pull secret: {reason}")]
    Credentials { reason: String },
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    /// The kubelet's wording for `ErrImageNeverPull`.
    #[error("Container image {reference:?} is not present with pull policy of Never")]
    NeverPull { reference: String },
    /// containerd's wording, which the agent shows in `ErrImagePull` messages.
    #[error("failed to pull and unpack image {reference:?}: {message}")]
    Pull {
        reference: String,
        kind: PullErrorKind,
        message: String,
    },
    #[error("importing {file}: {reason}")]
    Import { file: String, reason: String },
    #[error("container root filesystem {id}: {reason}")]
    Rootfs { id: String, reason: String },
    #[error("image store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Why a pull failed (the agent may treat them differently, as the kubelet does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullErrorKind {
    NotFound,
    Unauthorized,
    Other,
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(format!("unknown pull policy {other:?}")),
        }
    }
}

/// What the image's config says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRuntimeConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
}

/// An image in the store, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<config digest>` (the kubelet's imageID).
    pub id: String,
    /// Normalized names: `docker.io/library/busybox:latest`.
    pub references: Vec<String>,
    /// `docker.io/library/busybox@sha256:<manifest or index digest>`.
    pub repo_digests: Vec<String>,
    /// Bytes of its config and (compressed) layer blobs.
    pub size: u64,
    /// Imported images are pinned: image GC never removes them.
    pub pinned: bool,
    pub config: ImageRuntimeConfig,
}

/// A layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LayerRecord {
    /// The (possibly compressed) blob.
    digest: String,
    diff_id: String,
    /// Snapshot key: the first 32 hex digits of the chain ID.
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImageRecord {
    image: Image,
    layers: Vec<LayerRecord>,
    /// Unix milliseconds of the last pull, import or container start.
    last_used: u64,
}

/// A file `import_dir` already imported, by size and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImportMark {
    size: u64,
    mtime_ns: i128,
    ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    images: BTreeMap<String, ImageRecord>,
    #[serde(default)]
    imports: BTreeMap<String, ImportMark>,
}

impl State {
    fn find(&self, reference: &str) -> Option<&ImageRecord> {
        if let Some(r) = self.images.get(reference) {
            return Some(r);
        }
        let hex_prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        let normalized = Reference::parse(reference).ok().map(|r| r.to_string());
        self.images.values().find(|rec| {
            let img = &rec.image;
            normalized.as_ref().is_some_and(|n| {
                img.references.iter().any(|r| r == n) || img.repo_digests.iter().any(|r| r == n)
            }) || (hex_prefix.len() >= 12
                && hex_prefix.bytes().all(|b| b.is_ascii_hexdigit())
                && img.id["sha256:".len()..].starts_with(hex_prefix))
        })
    }
}

/// An image read from an archive or a registry, its blobs in the store.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub references: Vec<Reference>,
    pub repo_digests: Vec<String>,
    pub config_digest: String,
    pub layers: Vec<String>,
}

/// What [`ImageStore::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Image>,
    pub usage_before: u64,
    pub usage_after: u64,
}

/// The node's images. Cheap to clone (shared state); `Send + Sync`.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    root: PathBuf,
    blobs: Blobs,
    registries: RegistriesConfig,
    privileged: bool,
    /// Longest overlay mount options written with absolute lowerdirs (then relative).
    mount_option_limit: std::sync::atomic::AtomicUsize,
    cache: Mutex<Option<(FileStamp, Arc<State>)>>,
    /// One pull at a time per normalized reference in this process: pods starting
    /// together with one image download it once.
    pulls: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What identifies one version of `images.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

/// How precisely an image's last use is recorded (it only orders image GC).
const LAST_USE_GRANULARITY_MS: u64 = 60_000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An exclusive `flock` on the store; released on drop.
pub(crate) struct StoreLock(File);

impl Drop for StoreLock {
    fn drop(&mut self) {
        // SAFETY: our own open fd.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Blobs a running pull/import wrote and has not recorded yet: a file of digests in
/// `leases/` named by our pid, which pruning reads (and ignores once the pid is gone).
pub(crate) struct Lease {
    path: PathBuf,
    file: Mutex<File>,
}

impl Lease {
    pub(crate) fn add(&self, digest: &str) -> Result<(), ImageError> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(f, "{digest}").map_err(io_err(format!("writing {}", self.path.display())))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ImageStore {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: PathBuf, registries: RegistriesConfig) -> Result<ImageStore, ImageError> {
        std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        let root = std::fs::canonicalize(&root)
            .map_err(io_err(format!("resolving {}", root.display())))?;
        let text = root.to_string_lossy();
        if text.contains(',') || text.contains(':') {
            return Err(ImageError::Config {
                path: text.into_owned(),
                reason: "an image store path cannot contain ',' or ':' (overlayfs options)".into(),
            });
        }
        let blobs = Blobs::new(&root);
        blobs.create_dirs()?;
        for d in ["sn", "ct", "leases"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        let inner = Inner {
            blobs,
            registries,
            // SAFETY: no preconditions.
            privileged: unsafe { libc::geteuid() } == 0,
            mount_option_limit: rootfs::MOUNT_OPTIONS_MAX.into(),
            cache: Mutex::new(None),
            pulls: Mutex::new(BTreeMap::new()),
            root,
        };
        {
            let _lock = inner.lock()?;
            blobs::clean_stale_temps(&inner.root.join("tmp"));
            blobs::clean_stale_temps(&inner.root.join("leases"));
        }
        Ok(ImageStore {
            inner: Arc::new(inner),
        })
    }

    /// Force relative lowerdirs for option strings longer than `limit` (tests use a
    /// small limit to exercise the path taken by images with very many layers).
    #[doc(hidden)]
    pub fn with_mount_option_limit(self, limit: usize) -> ImageStore {
        self.inner
            .mount_option_limit
            .store(limit, std::sync::atomic::Ordering::Relaxed);
        self
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The container's writable layer (its overlay upper dir), for disk usage.
    pub fn writable_layer(&self, container_id: &str) -> PathBuf {
        self.inner.root.join("ct").join(container_id).join("u")
    }

    /// Pull if needed according to `policy`.
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        creds: &[RegistryCredential],
    ) -> Result<Image, ImageError> {
        let normalized = Reference::parse(reference)?.to_string();
        match policy {
            PullPolicy::Always => self.pull(reference, creds).await,
            PullPolicy::IfNotPresent => {
                if let Some(img) = self.get(reference) {
                    return Ok(img);
                }
                let _turn = self.pull_turn(&normalized).await;
                // Another task may have pulled it while we waited.
                match self.get(reference) {
                    Some(img) => Ok(img),
                    None => self.pull_now(reference, creds).await,
                }
            }
            PullPolicy::Never => self.get(reference).ok_or(ImageError::NeverPull {
                reference: normalized,
            }),
        }
    }

    /// Wait for our turn to pull `normalized` (see `Inner::pulls`).
    async fn pull_turn(&self, normalized: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut pulls = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the turns nobody holds or waits for.
            pulls.retain(|_, m| Arc::strong_count(m) > 1);
            pulls.entry(normalized.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Pull `reference` from its registry (or mirrors), unpack and record it.
    pub async fn pull(
        &self,
        reference: &str,
        creds: &[RegistryCredential],
    ) -> Result<Image, ImageError> {
        let normalized = Reference::parse(reference)?.to_string();
        let _turn = self.pull_turn(&normalized).await;
        self.pull_now(reference, creds).await
    }

    async fn pull_now(
        &self,
        reference: &str,
        creds: &[RegistryCredential],
    ) -> Result<Image, ImageError> {
        let r = Reference::parse(reference)?;
        let lease = self.inner.lease()?;
        let candidate = pull::pull(&self.inner, &r, creds, &lease).await?;
        let inner = self.inner.clone();
        let image = tokio::task::spawn_blocking(move || {
            let image = inner.commit(&candidate, false);
            drop(lease);
            image
        })
        .await??;
        Ok(image)
    }

    /// Import an OCI layout or `docker save` tar (plain, gzip or zstd); the images are
    /// pinned.
    pub async fn import(&self, tar: &Path) -> Result<Vec<Image>, ImageError> {
        let inner = self.inner.clone();
        let tar = tar.to_path_buf();
        tokio::task::spawn_blocking(move || inner.import_file(&tar)).await?
    }

    /// Import every `*.tar`, `*.tar.gz`, `*.tgz`, `*.tar.zst` in `dir` that changed since
    /// it was last imported; the images imported now.
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let inner = self.inner.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || inner.import_dir(&dir)).await?
    }

    pub fn list(&self) -> Vec<Image> {
        match self.inner.state() {
            Ok(s) => s.images.values().map(|r| r.image.clone()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the image store");
                Vec::new()
            }
        }
    }

    /// By reference (normalized as Docker does), repo digest, ID or ID prefix (≥ 12).
    pub fn get(&self, reference: &str) -> Option<Image> {
        let state = self.inner.state().ok()?;
        state.find(reference).map(|r| r.image.clone())
    }

    /// Remove the image (all its names) and whatever only it used.
    pub async fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let inner = self.inner.clone();
        let reference = reference.to_string();
        tokio::task::spawn_blocking(move || inner.remove(&reference)).await?
    }

    /// Mount an overlay root filesystem for `container_id` from `image`'s layers; its
    /// upper and work dirs are private to the container. Returns the mounted dir.
    pub async fn prepare_rootfs(
        &self,
        container_id: &str,
        image: &Image,
    ) -> Result<PathBuf, ImageError> {
        let inner = self.inner.clone();
        let id = container_id.to_string();
        let image_id = image.id.clone();
        tokio::task::spawn_blocking(move || rootfs::prepare(&inner, &id, &image_id)).await?
    }

    /// Unmount and remove the container's root filesystem; fine if it is gone.
    pub async fn release_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        let inner = self.inner.clone();
        let id = container_id.to_string();
        tokio::task::spawn_blocking(move || rootfs::release(&inner, &id)).await?
    }

    /// Bytes the store uses on disk (blobs and unpacked layers).
    pub fn disk_usage(&self) -> u64 {
        self.inner.usage()
    }

    /// Remove unpinned images not named in `in_use` (by ID or reference), least recently
    /// used first, until the store uses at most `target_bytes`.
    pub async fn gc(
        &self,
        in_use: &HashSet<String>,
        target_bytes: u64,
    ) -> Result<GcReport, ImageError> {
        let inner = self.inner.clone();
        let in_use = in_use.clone();
        tokio::task::spawn_blocking(move || inner.gc(&in_use, target_bytes)).await?
    }
}

impl Inner {
    pub(crate) fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(crate) fn registries(&self) -> &RegistriesConfig {
        &self.registries
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn mount_option_limit(&self) -> usize {
        self.mount_option_limit
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        loop {
            // SAFETY: our own open fd.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(StoreLock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err(format!("locking {}", path.display()))(e));
            }
        }
    }

    pub(crate) fn lease(&self) -> Result<Lease, ImageError> {
        let path = blobs::temp_path(&self.root.join("leases"), "lease");
        let file = File::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
        Ok(Lease {
            path,
            file: Mutex::new(file),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// The current state (cached until `images.json` changes).
    fn state(&self) -> Result<Arc<State>, ImageError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.state_path();
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => Some(FileStamp {
                ino: m.ino(),
                mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                size: m.len(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let Some(stamp) = stamp else {
            return Ok(Arc::new(State::default()));
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, state)) = cache.as_ref() {
            if *s == stamp {
                return Ok(state.clone());
            }
        }
        let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
        let state: State = serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let state = Arc::new(state);
        *cache = Some((stamp, state.clone()));
        Ok(state)
    }

    /// Write the state (call with the lock held).
    fn save(&self, state: &State, _lock: &StoreLock) -> Result<(), ImageError> {
        let path = self.state_path();
        let tmp = blobs::temp_path(&self.root.join("tmp"), "state");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| ImageError::Corrupt {
            what: "image records".into(),
            reason: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(io_err(format!("writing {}", tmp.display())))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io_err(format!("replacing {}", path.display())))?;
        Ok(())
    }

    /// Read the config, unpack missing layers and record the image (one lock).
    pub(crate) fn commit(&self, c: &Candidate, pinned: bool) -> Result<Image, ImageError> {
        let config_bytes = self.blobs.read(&c.config_digest)?;
        let (runtime_config, diff_ids) = parse_config(&config_bytes, &c.config_digest)?;
        if diff_ids.len() != c.layers.len() {
            return Err(ImageError::Corrupt {
                what: format!("image {}", c.config_digest),
                reason: format!(
                    "{} layers but {} diff_ids in its config",
                    c.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let lock = self.lock()?;
        let mut layers = Vec::with_capacity(diff_ids.len());
        let mut chain: Option<String> = None;
        let mut size = config_bytes.len() as u64;
        for (digest, diff_id) in c.layers.iter().zip(&diff_ids) {
            let chain_id = match &chain {
                None => diff_id.clone(),
                Some(parent) => blobs::digest_of(format!("{parent} {diff_id}").as_bytes()),
            };
            let key = chain_id["sha256:".len()..][..32].to_string();
            let lowers: Vec<PathBuf> = layers
                .iter()
                .rev()
                .map(|l: &LayerRecord| self.root.join("sn").join(&l.key))
                .collect();
            self.ensure_snapshot(digest, diff_id, &chain_id, &key, &lowers)?;
            size += std::fs::metadata(self.blobs.path(digest)?)
                .map(|m| m.len())
                .unwrap_or(0);
            layers.push(LayerRecord {
                digest: digest.clone(),
                diff_id: diff_id.clone(),
                key,
            });
            chain = Some(chain_id);
        }
        let mut state = (*self.state()?).clone();
        let refs: Vec<String> = c.references.iter().map(|r| r.to_string()).collect();
        for rec in state.images.values_mut() {
            rec.image.references.retain(|r| !refs.contains(r));
        }
        let rec = state
            .images
            .entry(c.config_digest.clone())
            .or_insert_with(|| ImageRecord {
                image: Image {
                    id: c.config_digest.clone(),
                    references: Vec::new(),
                    repo_digests: Vec::new(),
                    size,
                    pinned,
                    config: runtime_config.clone(),
                },
                layers: layers.clone(),
                last_used: 0,
            });
        for r in refs {
            if !rec.image.references.contains(&r) {
                rec.image.references.push(r);
            }
        }
        for d in &c.repo_digests {
            if !rec.image.repo_digests.contains(d) {
                rec.image.repo_digests.push(d.clone());
            }
        }
        rec.image.pinned |= pinned;
        rec.last_used = now();
        let image = rec.image.clone();
        self.save(&state, &lock)?;
        Ok(image)
    }

    /// Unpack the layer into `sn/<key>` unless it is there (call with the lock held).
    fn ensure_snapshot(
        &self,
        digest: &str,
        diff_id: &str,
        chain_id: &str,
        key: &str,
        lowers: &[PathBuf],
    ) -> Result<(), ImageError> {
        let dest = self.root.join("sn").join(key);
        if dest.is_dir() {
            return Ok(());
        }
        let blob = self.blobs.open(digest)?;
        let tmp = blobs::temp_path(&self.root.join("tmp"), "snap");
        std::fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        let started = std::time::Instant::now();
        let result = unpack::unpack_layer(blob, &tmp, lowers, self.privileged);
        let unpacked = match result {
            Ok(u) => u,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if unpacked.diff_id != diff_id {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(ImageError::DigestMismatch {
                what: format!("layer {digest} (uncompressed)"),
                expected: diff_id.to_string(),
                actual: unpacked.diff_id,
            });
        }
        tracing::debug!(
            layer = digest,
            entries = unpacked.entries,
            bytes = unpacked.size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "unpacked a layer"
        );
        let info =
            serde_json::json!({ "chainID": chain_id, "diffID": diff_id, "size": unpacked.size });
        let info_path = self.root.join("sn").join(format!("{key}.json"));
        std::fs::write(&info_path, info.to_string())
            .map_err(io_err(format!("writing {}", info_path.display())))?;
        std::fs::rename(&tmp, &dest).map_err(io_err(format!("storing snapshot {key}")))?;
        Ok(())
    }

    fn import_file(&self, file: &Path) -> Result<Vec<Image>, ImageError> {
        let lease = self.lease()?;
        let candidates = archive::read(self, file, &lease)?;
        let mut out = Vec::new();
        for c in &candidates {
            out.push(self.commit(c, true)?);
        }
        Ok(out)
    }

    fn import_dir(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        use std::os::unix::fs::MetadataExt;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                [".tar", ".tar.gz", ".tgz", ".tar.zst"]
                    .iter()
                    .any(|s| n.ends_with(s))
            })
            .collect();
        files.sort();
        let mut imported = Vec::new();
        for f in files {
            let Ok(m) = std::fs::metadata(&f) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            let key = f.to_string_lossy().into_owned();
            let mtime_ns = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            let state = self.state()?;
            let unchanged = state.imports.get(&key).is_some_and(|mark| {
                mark.size == m.len()
                    && mark.mtime_ns == mtime_ns
                    && mark.ids.iter().all(|id| state.images.contains_key(id))
            });
            if unchanged {
                continue;
            }
            let images = self.import_file(&f)?;
            let lock = self.lock()?;
            let mut state = (*self.state()?).clone();
            state.imports.insert(
                key,
                ImportMark {
                    size: m.len(),
                    mtime_ns,
                    ids: images.iter().map(|i| i.id.clone()).collect(),
                },
            );
            self.save(&state, &lock)?;
            imported.extend(images);
        }
        Ok(imported)
    }

    fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let lock = self.lock()?;
        let mut state = (*self.state()?).clone();
        let id = state
            .find(reference)
            .map(|r| r.image.id.clone())
            .ok_or_else(|| ImageError::NotFound {
                reference: Reference::parse(reference)
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| reference.to_string()),
            })?;
        state.images.remove(&id);
        self.save(&state, &lock)?;
        self.prune(&state, &lock)
    }

    /// Remove blobs and snapshots nothing uses: no image, no container rootfs, no lease.
    fn prune(&self, state: &State, _lock: &StoreLock) -> Result<(), ImageError> {
        // List first, then read the leases: a blob listed here was committed after its
        // lease line was written, so that line is visible below.
        let stored = self.blobs.list();
        let snapshots = self.snapshot_keys();
        let mut keep: HashSet<String> = HashSet::new();
        for rec in state.images.values() {
            keep.insert(rec.image.id.clone());
            for l in &rec.layers {
                keep.insert(l.digest.clone());
                keep.insert(l.key.clone());
            }
        }
        keep.extend(rootfs::keys_in_use(&self.root));
        keep.extend(self.leased());
        for (digest, _) in stored {
            if !keep.contains(&digest) {
                self.blobs.remove(&digest)?;
            }
        }
        for key in snapshots {
            if !keep.contains(&key) {
                let dir = self.root.join("sn").join(&key);
                std::fs::remove_dir_all(&dir)
                    .map_err(io_err(format!("removing snapshot {}", dir.display())))?;
                let _ = std::fs::remove_file(self.root.join("sn").join(format!("{key}.json")));
            }
        }
        Ok(())
    }

    fn snapshot_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.root.join("sn")) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    fn leased(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        if let Ok(entries) = std::fs::read_dir(self.root.join("leases")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let alive = name
                    .split('-')
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if alive {
                    if let Ok(text) = std::fs::read_to_string(e.path()) {
                        out.extend(text.lines().map(str::to_string));
                    }
                }
            }
        }
        out
    }

    fn usage(&self) -> u64 {
        let blobs: u64 = self.blobs.list().iter().map(|(_, s)| s).sum();
        let snaps: u64 = self
            .snapshot_keys()
            .iter()
            .filter_map(|k| {
                let text =
                    std::fs::read_to_string(self.root.join("sn").join(format!("{k}.json"))).ok()?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()?
                    .get("size")?
                    .as_u64()
            })
            .sum();
        blobs + snaps
    }

    fn gc(&self, in_use: &HashSet<String>, target: u64) -> Result<GcReport, ImageError> {
        let lock = self.lock()?;
        let mut report = GcReport {
            usage_before: self.usage(),
            ..GcReport::default()
        };
        let mut state = (*self.state()?).clone();
        let used = |img: &Image| {
            in_use.contains(&img.id)
                || img
                    .references
                    .iter()
                    .chain(&img.repo_digests)
                    .any(|r| in_use.contains(r))
        };
        let mut candidates: Vec<(u64, String)> = state
            .images
            .values()
            .filter(|r| !r.image.pinned && !used(&r.image))
            .map(|r| (r.last_used, r.image.id.clone()))
            .collect();
        candidates.sort();
        let mut usage = report.usage_before;
        for (_, id) in candidates {
            if usage <= target {
                break;
            }
            if let Some(rec) = state.images.remove(&id) {
                self.save(&state, &lock)?;
                self.prune(&state, &lock)?;
                usage = self.usage();
                report.removed.push(rec.image);
            }
        }
        report.usage_after = usage;
        Ok(report)
    }

    /// The record of image `id` with its layer keys, bumping its last use.
    pub(crate) fn layer_keys_for(
        &self,
        id: &str,
        lock: &StoreLock,
    ) -> Result<Vec<String>, ImageError> {
        let state = self.state()?;
        let rec = state.images.get(id).ok_or_else(|| ImageError::NotFound {
            reference: id.to_string(),
        })?;
        let keys: Vec<String> = rec.layers.iter().map(|l| l.key.clone()).collect();
        // Recorded to the minute: a burst of containers of one image writes the records
        // once, not once per container.
        let now = now();
        if now.saturating_sub(rec.last_used) >= LAST_USE_GRANULARITY_MS {
            let mut state = (*state).clone();
            if let Some(rec) = state.images.get_mut(id) {
                rec.last_used = now;
            }
            self.save(&state, lock)?;
        }
        Ok(keys)
    }
}

/// The runtime config and diffIDs of an image config blob.
fn parse_config(
    bytes: &[u8],
    digest: &str,
) -> Result<(ImageRuntimeConfig, Vec<String>), ImageError> {
    #[derive(Deserialize)]
    struct Cfg {
        #[serde(default)]
        config: Option<RunCfg>,
        rootfs: RootFs,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct RunCfg {
        #[serde(default)]
        entrypoint: Option<Vec<String>>,
        #[serde(default)]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        env: Option<Vec<String>>,
        #[serde(default)]
        working_dir: Option<String>,
        #[serde(default)]
        user: Option<String>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let cfg: Cfg = serde_json::from_slice(bytes).map_err(|e| ImageError::Corrupt {
        what: format!("image config {digest}"),
        reason: e.to_string(),
    })?;
    for d in &cfg.rootfs.diff_ids {
        reference::validate_digest(d).map_err(|reason| ImageError::Corrupt {
            what: format!("image config {digest}"),
            reason,
        })?;
    }
    let rc = cfg.config.unwrap_or_default();
    Ok((
        ImageRuntimeConfig {
            entrypoint: rc.entrypoint.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            env: rc.env.unwrap_or_default(),
            working_dir: rc.working_dir.unwrap_or_default(),
            user: rc.user.unwrap_or_default(),
        },
        cfg.rootfs.diff_ids,
    ))
}
