//! Revisioned key-value store with etcd semantics, as kube-apiserver uses them.
//!
//! This module owns the storage contract ([`Store`]), its value types ([`KeyValue`],
//! [`Event`], [`ListResult`]) and its single error type ([`StoreError`]). The sled-backed
//! implementation lives in [`sled_backend`] ([`SledStore`]); the background compactor in
//! [`compactor`].
//!
//! Semantics shared by every backend:
//! - One global, strictly increasing revision (`i64`); every successful write consumes the
//!   next one. An empty store reports `current_revision() == 0` and its first write gets
//!   revision 1. Failed writes consume no revision.
//! - Each key carries `create_revision` (revision of the write that created this incarnation
//!   of the key) and `mod_revision` (revision of its last write).
//! - A write is acknowledged only once durable. Reads (`get`, `list`, `watch`) only ever
//!   observe acknowledged-grade (durable) state: `list` is consistent at the returned
//!   revision, never at a half-applied batch.
//! - History older than `compacted_revision()` is gone: reading or watching from an older
//!   revision fails with [`StoreError::Expired`].
//! - Watch streams deliver every event with `revision > from_revision` under a prefix, in
//!   revision order, replaying history then following live writes, without gap or duplicate.
//!   A consumer that falls more than the per-watcher buffer behind gets its stream ended
//!   with [`StoreError::WatcherTooSlow`] (after the events still buffered); writers are never
//!   blocked by watchers. Callers re-watch from the last revision they saw. When the store
//!   shuts down, streams end with [`StoreError::Closed`].
//!
//! Deviations from the original design sketch: none in the trait signatures. `list` and
//! `watch` treat `at_revision: Some(r)` with `r <= 0` like `None` (latest), as etcd does
//! for revision 0. `compact(r)` with `r <= compacted_revision()` is a no-op `Ok(())`.
//! Write futures are lazy, but once polled the request is queued: dropping the future
//! afterwards does not cancel the write.

pub mod compactor;
mod encoding;
pub mod sled_backend;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use compactor::{compaction_target, start_compactor, CompactorConfig};
pub use sled_backend::{SledOptions, SledStore, StoreStats};

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key (any UTF-8, non-empty; Kubernetes uses `/registry/<resource>/<ns>/<name>`).
    pub key: String,
    /// The value (opaque bytes).
    pub value: Bytes,
    /// Revision at which this incarnation of the key was created.
    pub create_revision: i64,
    /// Revision of the last write to the key (for a deletion event: the deletion's revision).
    pub mod_revision: i64,
}

/// What a write did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key did not exist before.
    Create,
    /// The key existed and got a new value.
    Update,
    /// The key was removed.
    Delete,
}

/// One committed write, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What the write did.
    pub kind: EventKind,
    /// The key after the write. For `Delete`: the last value, with `mod_revision` set to the
    /// deletion's revision.
    pub kv: KeyValue,
    /// The key before the write (`None` for `Create`).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// Revision of the write this event describes.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Keys in lexical (byte) order.
    pub items: Vec<KeyValue>,
    /// Revision the page is consistent at; pass it as `at_revision` for the following pages.
    pub revision: i64,
    /// Whether keys after the last returned one exist (only possible with a `limit`).
    pub more: bool,
}

/// Everything that can go wrong in the store. Variants carry the context needed to act on
/// them (which key, which revision).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// `update`/`delete` of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key written.
        key: String,
    },
    /// `update`/`delete` whose expected `mod_revision` is not the key's.
    #[error(
        "conflict on key {key:?}: current mod_revision is {}",
        current.mod_revision
    )]
    Conflict {
        /// The key written.
        key: String,
        /// The key's current version.
        current: KeyValue,
    },
    /// A key the store cannot hold (empty, or too long).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (truncated to 128 characters).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The revision asked for has been compacted away; re-list (or re-watch) from a newer one.
    #[error("revision {requested} has been compacted (compacted revision is {compacted})")]
    Expired {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still readable.
        compacted: i64,
    },
    /// The revision asked for has not been written yet.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The newest committed revision.
        current: i64,
    },
    /// A watcher fell too far behind and was dropped; watch again from the last revision seen.
    #[error("watcher fell more than {capacity} events behind and was dropped; watch again")]
    WatcherTooSlow {
        /// The per-watcher buffer size it overflowed.
        capacity: usize,
    },
    /// The storage engine failed.
    #[error("storage failure while {context}: {source}")]
    Storage {
        /// What the store was doing.
        context: String,
        /// The engine's error.
        #[source]
        source: sled::Error,
    },
    /// Data on disk does not decode.
    #[error("corrupt store data: {context}")]
    Corrupt {
        /// What did not decode, and where.
        context: String,
    },
    /// The store refuses writes after a storage failure (reads keep working).
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// The failure that made it stop.
        reason: String,
    },
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
}

/// The storage contract the API server is written against. Writes are async (they wait for
/// a durable commit); reads are synchronous and cheap.
pub trait Store: Send + Sync + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    /// Replaces `key`'s value if its `mod_revision` is `expected_mod_revision`
    /// ([`StoreError::NotFound`] / [`StoreError::Conflict`] otherwise).
    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: i64,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    /// Deletes `key` (if `expected_mod_revision` is given, only when it matches). Returns the
    /// last value with `mod_revision` = the deletion's revision.
    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> BoxFuture<'_, Result<KeyValue, StoreError>>;

    /// Latest committed version of `key`.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, strictly after `start_after`, at most `limit` of them
    /// (0 = unlimited), as of `at_revision` (`None` = latest).
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_revision: Option<i64>,
    ) -> Result<ListResult, StoreError>;

    /// Every event with revision > `from_revision` under `prefix`: history first, then live.
    fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Result<Event, StoreError>>, StoreError>;

    /// Highest committed (durable, visible) revision.
    fn current_revision(&self) -> i64;

    /// Revisions below this one are no longer readable.
    fn compacted_revision(&self) -> i64;

    /// Drops history older than `revision` (each key keeps its version as of `revision`).
    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), StoreError>>;
}
