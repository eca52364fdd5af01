//! The sled-backed [`Store`]: opening/recovering the database, the read paths (`get`,
//! `list` at the current or a past revision) and the glue that hands writes to the
//! group-commit writer thread ([`crate::store::writer`]) and watches to
//! [`crate::store::watch`]. Layout on disk: [`crate::store::encoding`].
//!
//! Visibility: the writer applies a batch to sled *before* flushing it, so sled may hold
//! writes that are not durable yet (revisions in `(committed, applied]`). Readers never show
//! them: every read is answered as of `committed`. `get` and the current-revision `list`
//! scan the current index and fall back to the history index for keys written after
//! `committed` (found via their `mod_revision`, or via the log tail for deletions). Lists at
//! an older revision scan the history index. Values are then read from the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::oneshot;

use crate::store::encoding::{self, LogRecord};
use crate::store::watch::{self, Registry};
use crate::store::writer::{Request, Writer};
use crate::store::{Event, EventKind, KeyValue, ListResult, Store, StoreError};

/// Tuning knobs of [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Upper bound of sled's page cache. sled's own default is 1 GiB; ours is 16 MiB.
    pub cache_capacity_bytes: u64,
    /// Events a watcher may lag behind before its stream is ended with
    /// [`StoreError::WatcherTooSlow`].
    pub watch_buffer: usize,
    /// Maximum number of write requests committed by one flush.
    pub max_batch: usize,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 16 * 1024 * 1024,
            // The watch cache's one store watch must not fall behind during a burst of
            // writes on a busy machine (ended, it resumes by replaying from sled); the
            // channel allocates only as events queue up.
            watch_buffer: 8192,
            max_batch: 1024,
        }
    }
}

/// Counters of the writer, for tests, metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Write requests handled (successful or not).
    pub requests: u64,
    /// Successful writes (revisions consumed).
    pub writes: u64,
    /// Group commits: batches of writes made durable by one flush.
    pub commits: u64,
    /// Every `flush` the writer issued (commits, compaction, shutdown).
    pub flushes: u64,
    /// Largest number of requests handled as one group.
    pub largest_group: u64,
    /// Finished compactions.
    pub compactions: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) largest_group: AtomicU64,
    pub(crate) compactions: AtomicU64,
}

/// State shared by the store handle, the writer thread and watch streams.
pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    /// Highest durable revision; everything readers show is as of this revision.
    pub(crate) committed: AtomicI64,
    /// Highest revision applied to sled (maybe not yet durable). Raised *before* a batch is
    /// applied, so `applied == committed` observed after a read proves the read saw no
    /// uncommitted write.
    pub(crate) applied: AtomicI64,
    pub(crate) compacted: AtomicI64,
    pub(crate) watchers: Mutex<Registry>,
    pub(crate) watch_buffer: usize,
    pub(crate) counters: Counters,
}

pub(crate) fn storage(context: impl Into<String>) -> impl FnOnce(sled::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Storage { context, source }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The log entry at `revision`, if it is (still) there.
    pub(crate) fn log_record(&self, revision: i64) -> Result<Option<LogRecord>, StoreError> {
        self.tree
            .get(encoding::log_key(revision))
            .map_err(storage(format!("reading log entry {revision}")))?
            .map(|raw| encoding::decode_log(&raw))
            .transpose()
    }

    /// The version of `key` written at `mod_revision`, with its value from the log.
    /// `None` if that log entry is gone (see [`Shared::vanished`]).
    pub(crate) fn load_version(
        &self,
        key: &str,
        mod_revision: i64,
    ) -> Result<Option<KeyValue>, StoreError> {
        let Some(record) = self.log_record(mod_revision)? else {
            return Ok(None);
        };
        if record.key != key || record.kind == EventKind::Delete {
            return Err(StoreError::Corrupt {
                context: format!(
                    "log entry {mod_revision} is a {:?} of {:?}, expected a write of {key:?}",
                    record.kind, record.key
                ),
            });
        }
        Ok(Some(KeyValue {
            key: record.key,
            value: record.value,
            create_revision: record.create_revision,
            mod_revision,
        }))
    }

    /// The error for a version an index pointed to but whose log entry is gone: a
    /// compaction past `read_revision` ran concurrently with the read, or the data is
    /// corrupt.
    pub(crate) fn vanished(&self, key: &str, mod_revision: i64, read_revision: i64) -> StoreError {
        self.check_not_compacted(read_revision)
            .err()
            .unwrap_or_else(|| StoreError::Corrupt {
                context: format!("value of {key:?} at revision {mod_revision} is missing"),
            })
    }

    /// The version of `key` visible at `revision` (`None` if absent or deleted then).
    pub(crate) fn version_at(
        &self,
        key: &str,
        revision: i64,
    ) -> Result<Option<KeyValue>, StoreError> {
        let range = encoding::history_key(key, 0)..=encoding::history_key(key, revision);
        let Some(entry) = self.tree.range(range).next_back() else {
            return Ok(None);
        };
        let (raw_key, raw) = entry.map_err(storage(format!("reading history of {key:?}")))?;
        let (_, mod_revision) = encoding::split_history_key(&raw_key)?;
        if encoding::decode_history(&raw)? {
            return Ok(None);
        }
        match self.load_version(key, mod_revision)? {
            Some(kv) => Ok(Some(kv)),
            None => Err(self.vanished(key, mod_revision, revision)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        // A compaction past the revision we read at (possible once newer versions were
        // committed meanwhile) can remove what we were reading: then simply read again.
        let mut attempts = 0;
        loop {
            match self.get_once(key) {
                Err(StoreError::Expired { .. }) if attempts < 3 => attempts += 1,
                result => return result,
            }
        }
    }

    fn get_once(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let committed = self.committed.load(Ordering::SeqCst);
        let found = self.get_at(key, committed);
        self.check_not_compacted(committed)?;
        found
    }

    fn get_at(&self, key: &str, committed: i64) -> Result<Option<KeyValue>, StoreError> {
        let raw = self
            .tree
            .get(encoding::current_key(key))
            .map_err(storage(format!("reading {key:?}")))?;
        match raw {
            Some(raw) => {
                let (_, mod_revision) = encoding::decode_current(&raw)?;
                if mod_revision > committed {
                    return self.version_at(key, committed);
                }
                match self.load_version(key, mod_revision)? {
                    Some(kv) => Ok(Some(kv)),
                    None => Err(self.vanished(key, mod_revision, committed)),
                }
            }
            // Absent now; if nothing uncommitted was applied it was absent at `committed`.
            None if self.applied.load(Ordering::SeqCst) == committed => Ok(None),
            None => self.version_at(key, committed),
        }
    }

    pub(crate) fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<i64>,
    ) -> Result<ListResult, StoreError> {
        let at_revision = at_revision.filter(|r| *r > 0);
        let mut attempts = 0;
        loop {
            match self.list_once(prefix, start_after, limit, at_revision) {
                // "Latest" cannot be too old: a compaction overtook the read, read again.
                Err(StoreError::Expired { .. }) if at_revision.is_none() && attempts < 5 => {
                    attempts += 1;
                }
                result => return result,
            }
        }
    }

    fn list_once(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<i64>,
    ) -> Result<ListResult, StoreError> {
        let committed = self.committed.load(Ordering::SeqCst);
        let revision = at_revision.unwrap_or(committed);
        if revision > committed {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: committed,
            });
        }
        self.check_not_compacted(revision)?;
        let (items, more) = if revision == committed {
            self.list_current(prefix, start_after, limit, revision)?
        } else {
            self.list_history(prefix, start_after, limit, revision)?
        };
        // A compaction that ran while we read may have removed versions we needed.
        self.check_not_compacted(revision)?;
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    fn check_not_compacted(&self, revision: i64) -> Result<(), StoreError> {
        let compacted = self.compacted.load(Ordering::SeqCst);
        if revision < compacted {
            return Err(StoreError::Expired {
                requested: revision,
                compacted,
            });
        }
        Ok(())
    }

    /// List as of `revision`, reading the current index and patching in keys that
    /// writes after `revision` changed or removed. Cheap when `revision` is recent.
    pub(crate) fn list_current(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<(Vec<KeyValue>, bool), StoreError> {
        let want = if limit == 0 {
            usize::MAX
        } else {
            limit.saturating_add(1)
        };
        let scan_prefix = encoding::current_key(prefix);
        let start_after = start_after.filter(|after| *after >= prefix);
        let start = start_after.map_or_else(|| scan_prefix.clone(), encoding::current_key_after);
        let mut items = Vec::new();
        let mut stopped_at: Option<String> = None;
        for entry in self.tree.range(start..) {
            let (raw_key, raw) = entry.map_err(storage(format!("listing {prefix:?}")))?;
            if !raw_key.starts_with(&scan_prefix) {
                break;
            }
            let key = encoding::decode_current_key(&raw_key)?;
            let (_, mod_revision) = encoding::decode_current(&raw)?;
            let visible = if mod_revision <= revision {
                match self.load_version(&key, mod_revision)? {
                    Some(kv) => Some(kv),
                    None => return Err(self.vanished(&key, mod_revision, revision)),
                }
            } else {
                self.version_at(&key, revision)?
            };
            if let Some(kv) = visible {
                items.push(kv);
                if items.len() >= want {
                    stopped_at = Some(key);
                    break;
                }
            }
        }
        // Keys deleted after `revision` are missing from the current index; the log entries
        // after `revision` name them. Checked after the scan so that deletions applied
        // during the scan are covered too.
        if self.applied.load(Ordering::SeqCst) > revision {
            let mut missing = BTreeMap::new();
            for entry in self
                .tree
                .range(encoding::log_key(revision.saturating_add(1))..)
            {
                let (raw_key, raw) = entry.map_err(storage("reading the log tail"))?;
                if raw_key.first() != Some(&encoding::LOG) {
                    break;
                }
                let (_, key) = encoding::decode_log_key_of(&raw)?;
                let in_window = key.starts_with(prefix)
                    && start_after.is_none_or(|after| key.as_str() > after)
                    && stopped_at.as_deref().is_none_or(|end| key.as_str() <= end);
                if !in_window
                    || missing.contains_key(&key)
                    || items
                        .binary_search_by(|kv: &KeyValue| kv.key.cmp(&key))
                        .is_ok()
                {
                    continue;
                }
                let version = self.version_at(&key, revision)?;
                missing.insert(key, version);
            }
            if !missing.is_empty() {
                items.extend(missing.into_values().flatten());
                items.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        Ok(truncate(items, limit))
    }

    /// List as of `revision` from the history index alone.
    pub(crate) fn list_history(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<(Vec<KeyValue>, bool), StoreError> {
        let want = if limit == 0 {
            usize::MAX
        } else {
            limit.saturating_add(1)
        };
        let scan_prefix = encoding::history_prefix(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => encoding::history_key_after(after),
            _ => scan_prefix.clone(),
        };
        let mut items = Vec::new();
        let mut scanned: Option<ScannedKey> = None;
        for entry in self.tree.range(start..) {
            let (raw_key, raw) = entry.map_err(storage(format!("listing {prefix:?} history")))?;
            if !raw_key.starts_with(&scan_prefix) {
                break;
            }
            let (escaped, entry_revision) = encoding::split_history_key(&raw_key)?;
            if scanned.as_ref().is_some_and(|s| s.escaped != escaped) {
                if let Some(kv) = self.visible_version(scanned.take(), revision)? {
                    items.push(kv);
                    if items.len() >= want {
                        return Ok(truncate(items, limit));
                    }
                }
            }
            let current = scanned.get_or_insert_with(|| ScannedKey {
                escaped: escaped.to_vec(),
                newest: None,
            });
            if entry_revision <= revision {
                current.newest = Some((entry_revision, encoding::decode_history(&raw)?));
            }
        }
        if let Some(kv) = self.visible_version(scanned, revision)? {
            items.push(kv);
        }
        Ok(truncate(items, limit))
    }

    /// The version a history scan settled on for one key, if it is live.
    fn visible_version(
        &self,
        scanned: Option<ScannedKey>,
        revision: i64,
    ) -> Result<Option<KeyValue>, StoreError> {
        let Some(ScannedKey {
            escaped,
            newest: Some((mod_revision, false)),
        }) = scanned
        else {
            return Ok(None);
        };
        let key = encoding::history_user_key(&escaped)?;
        match self.load_version(&key, mod_revision)? {
            Some(kv) => Ok(Some(kv)),
            None => Err(self.vanished(&key, mod_revision, revision)),
        }
    }

    /// Builds the event the log entry at `revision` stands for.
    pub(crate) fn event_at(&self, revision: i64, record: LogRecord) -> Result<Event, StoreError> {
        let LogRecord {
            kind,
            create_revision,
            key,
            value,
        } = record;
        let prev = match kind {
            EventKind::Create => None,
            EventKind::Update | EventKind::Delete => match self.version_at(&key, revision - 1)? {
                Some(prev) => Some(prev),
                None => {
                    return Err(StoreError::Corrupt {
                        context: format!(
                            "{kind:?} of {key:?} at revision {revision} has no previous version"
                        ),
                    })
                }
            },
        };
        let value = match (&prev, kind) {
            (Some(prev), EventKind::Delete) => prev.value.clone(),
            _ => value,
        };
        Ok(Event {
            kind,
            kv: KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            },
            prev,
        })
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            requests: c.requests.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            largest_group: c.largest_group.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
        }
    }
}

/// A key met while scanning history, with its newest version at or before the revision
/// being listed: (revision, is tombstone).
struct ScannedKey {
    escaped: Vec<u8>,
    newest: Option<(i64, bool)>,
}

fn truncate(mut items: Vec<KeyValue>, limit: usize) -> (Vec<KeyValue>, bool) {
    let more = limit > 0 && items.len() > limit;
    if more {
        items.truncate(limit);
    }
    (items, more)
}

/// Longest key accepted (etcd's request limit is 1.5 MiB; Kubernetes keys are short).
pub const MAX_KEY_LEN: usize = 64 * 1024;

fn validate_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "keys must not be empty"
    } else if key.len() > MAX_KEY_LEN {
        "keys must not be longer than 64 KiB"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: key.chars().take(128).collect(),
        reason,
    })
}

/// The sled implementation of [`Store`]. Dropping it stops the writer thread (after it
/// finished the queued requests and flushed) and ends all watch streams.
pub struct SledStore {
    shared: Arc<Shared>,
    requests: Option<std::sync::mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl SledStore {
    /// Opens (or creates) the store at `path`, recovering the revision counter from disk.
    /// Spawns the writer thread; needs no async runtime.
    pub fn open(path: &Path, options: SledOptions) -> Result<Arc<SledStore>, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity_bytes)
            // We flush explicitly after every group commit; no background flusher thread.
            .flush_every_ms(None)
            .open()
            .map_err(storage(format!(
                "opening sled database at {}",
                path.display()
            )))?;
        let tree = db
            .open_tree("mvcc")
            .map_err(storage("opening the mvcc tree"))?;

        let meta = |name: &[u8]| -> Result<Option<i64>, StoreError> {
            tree.get(name)
                .map_err(storage("reading metadata"))?
                .map(|raw| encoding::decode_meta(name, &raw))
                .transpose()
        };
        match meta(encoding::META_FORMAT)? {
            Some(encoding::FORMAT_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt {
                    context: format!(
                        "store format version {other} is not supported (expected {})",
                        encoding::FORMAT_VERSION
                    ),
                })
            }
            None => {
                tree.insert(
                    encoding::META_FORMAT,
                    &encoding::encode_meta(encoding::FORMAT_VERSION),
                )
                .map_err(storage("writing the format version"))?;
                db.flush().map_err(storage("flushing the format version"))?;
            }
        }
        let compacted = meta(encoding::META_COMPACTED)?.unwrap_or(0);
        let compact_cursor = meta(encoding::META_COMPACT_CURSOR)?.unwrap_or(0);
        let log_bound = |entry: Option<sled::Result<(sled::IVec, sled::IVec)>>| {
            entry
                .map(|e| {
                    let (raw_key, _) = e.map_err(storage("reading the log"))?;
                    encoding::decode_log_key(&raw_key)
                })
                .transpose()
        };
        // Compaction never removes a log entry after the compaction point, nor the newest
        // version of a live key: the newest revision is the last log entry, or the compaction
        // point if compaction removed everything.
        let last_logged = log_bound(tree.scan_prefix([encoding::LOG]).next_back())?;
        let revision = last_logged.unwrap_or(0).max(compacted);
        let resume_compaction = compact_cursor < compacted;
        tracing::info!(
            path = %path.display(),
            revision,
            compacted,
            resume_compaction,
            "opened sled store"
        );

        let shared = Arc::new(Shared {
            db,
            tree,
            committed: AtomicI64::new(revision),
            applied: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            watchers: Mutex::new(Registry::new(revision)),
            watch_buffer: options.watch_buffer.max(1),
            counters: Counters::default(),
        });
        let (requests, receiver) = std::sync::mpsc::channel();
        let writer = Writer::new(
            Arc::clone(&shared),
            receiver,
            revision,
            options.max_batch.max(1),
            compact_cursor,
            resume_compaction.then_some(compacted),
        );
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Unavailable {
                reason: format!("spawning the writer thread: {e}"),
            })?;
        Ok(Arc::new(SledStore {
            shared,
            requests: Some(requests),
            writer: Some(handle),
        }))
    }

    /// Writer counters (group commits vs writes etc.).
    pub fn stats(&self) -> StoreStats {
        self.shared.stats()
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    async fn submit<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, response) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(request(reply))
            .map_err(|_| StoreError::Closed)?;
        response.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Closing the channel makes the writer drain the queue, flush and exit.
        drop(self.requests.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

impl Store for SledStore {
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move {
            validate_key(&key)?;
            self.submit(|reply| Request::Create { key, value, reply })
                .await
        })
    }

    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: i64,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move {
            validate_key(&key)?;
            self.submit(|reply| Request::Update {
                key,
                value,
                expected: expected_mod_revision,
                reply,
            })
            .await
        })
    }

    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move {
            validate_key(&key)?;
            self.submit(|reply| Request::Delete {
                key,
                expected: expected_mod_revision,
                reply,
            })
            .await
        })
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.shared.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<i64>,
    ) -> Result<ListResult, StoreError> {
        self.shared.list(prefix, start_after, limit, at_revision)
    }

    fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Result<Event, StoreError>>, StoreError> {
        watch::watch(&self.shared, prefix, from_revision)
    }

    fn current_revision(&self) -> i64 {
        self.shared.committed.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> i64 {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.submit(move |reply| Request::Compact { revision, reply }))
    }
}
