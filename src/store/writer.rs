//! The single writer thread: group commit and compaction.
//!
//! Every write request arrives over one channel. The writer takes everything queued (up to
//! `max_batch`), checks each request against the current state (sled plus an overlay of this
//! group's own writes), assigns revisions, stages all mutations of the group into ONE
//! `sled::Batch` (current keyspace + history + log, atomic across a crash), applies it,
//! issues ONE flush, then raises `committed`, publishes the events to watchers and answers
//! every request. Requests that arrive during the flush form the next group, so the number
//! of flushes adapts to the load. Failed requests (conflicts…) are answered after the flush
//! too, since they may describe state written by an earlier request of the same group.
//!
//! A storage failure while applying or flushing makes the writer refuse all further writes
//! ([`StoreError::Unavailable`]): what is on disk is then unknown, so, like etcd on a WAL
//! error, we stop rather than guess. Readers keep serving the last committed revision.
//!
//! Compaction runs here too, in chunks between write groups, so it never races writers
//! and never stalls them for long.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::store::encoding;
use crate::store::sled_backend::{lock, storage, Shared};
use crate::store::{Event, EventKind, KeyValue, StoreError};

/// Log entries (revisions) compacted per chunk between two write groups.
const COMPACTION_CHUNK: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Request {
    Create {
        key: String,
        value: Bytes,
        reply: Reply<KeyValue>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: i64,
        reply: Reply<KeyValue>,
    },
    Delete {
        key: String,
        expected: Option<i64>,
        reply: Reply<KeyValue>,
    },
    Compact {
        revision: i64,
        reply: Reply<()>,
    },
}

struct CompactionJob {
    target: i64,
    waiters: Vec<Reply<()>>,
}

/// Stages one write of `kv.key` at revision `kv.mod_revision` into `batch`.
/// `kind == Delete` removes the key (its history gets a tombstone).
pub(crate) fn stage(batch: &mut sled::Batch, kind: EventKind, kv: &KeyValue) {
    let revision = kv.mod_revision;
    let deleted = kind == EventKind::Delete;
    if deleted {
        batch.remove(encoding::current_key(&kv.key));
    } else {
        batch.insert(
            encoding::current_key(&kv.key),
            encoding::encode_current(kv.create_revision, revision).to_vec(),
        );
    }
    batch.insert(
        encoding::history_key(&kv.key, revision),
        encoding::encode_history(deleted).to_vec(),
    );
    let value: &[u8] = if deleted { &[] } else { &kv.value };
    batch.insert(
        encoding::log_key(revision),
        encoding::encode_log(kind, kv.create_revision, &kv.key, value),
    );
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    requests: Receiver<Request>,
    /// Last revision assigned (== `applied`).
    revision: i64,
    max_batch: usize,
    /// Set after a storage failure; every later write gets it.
    failure: Option<String>,
    compaction: Option<CompactionJob>,
    /// Log entries up to here have been compacted.
    compact_cursor: i64,
    /// Where the writer's time goes, logged at debug level about once a second.
    timing: Timing,
}

/// The writer's time over the last second or so: how many groups and writes, how long
/// applying and flushing them took (the `skiff::store` debug log; for benchmarks).
struct Timing {
    since: std::time::Instant,
    groups: u64,
    requests: u64,
    busy: std::time::Duration,
    flush: std::time::Duration,
    longest_flush: std::time::Duration,
}

impl Timing {
    fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            groups: 0,
            requests: 0,
            busy: std::time::Duration::ZERO,
            flush: std::time::Duration::ZERO,
            longest_flush: std::time::Duration::ZERO,
        }
    }

    fn record(&mut self, requests: usize, busy: std::time::Duration) {
        self.groups += 1;
        self.requests += requests as u64;
        self.busy += busy;
        let elapsed = self.since.elapsed();
        if elapsed >= std::time::Duration::from_secs(1) {
            tracing::debug!(
                elapsed_ms = elapsed.as_millis() as u64,
                groups = self.groups,
                requests = self.requests,
                busy_ms = self.busy.as_millis() as u64,
                flush_ms = self.flush.as_millis() as u64,
                longest_flush_us = self.longest_flush.as_micros() as u64,
                "store writer"
            );
            *self = Self::new();
        }
    }
}

/// Outcome of one request of a group, answered after the group's flush.
enum Answer {
    Write(Reply<KeyValue>, Result<KeyValue, StoreError>),
    Compact(i64, Reply<()>),
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        requests: Receiver<Request>,
        revision: i64,
        max_batch: usize,
        compact_cursor: i64,
        resume_compaction: Option<i64>,
    ) -> Self {
        Self {
            shared,
            requests,
            revision,
            max_batch,
            failure: None,
            compact_cursor,
            compaction: resume_compaction.map(|target| CompactionJob {
                target,
                waiters: Vec::new(),
            }),
            timing: Timing::new(),
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let first = if self.compaction.is_some() {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match self.requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                let mut group = vec![first];
                while group.len() < self.max_batch {
                    match self.requests.try_recv() {
                        Ok(request) => group.push(request),
                        Err(_) => break,
                    }
                }
                let (started, requests) = (std::time::Instant::now(), group.len());
                self.process_group(group);
                self.timing.record(requests, started.elapsed());
            }
            if self.compaction.is_some() {
                self.compaction_step();
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "final flush of the store failed");
        }
        lock(&self.shared.watchers).close();
        tracing::debug!("store writer stopped");
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.shared
            .db
            .flush()
            .map_err(storage("flushing to disk"))?;
        self.shared.counters.flushes.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        self.timing.flush += took;
        self.timing.longest_flush = self.timing.longest_flush.max(took);
        Ok(())
    }

    fn unavailable(&self) -> Option<StoreError> {
        self.failure.as_ref().map(|reason| StoreError::Unavailable {
            reason: reason.clone(),
        })
    }

    fn process_group(&mut self, group: Vec<Request>) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        counters
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        counters
            .largest_group
            .fetch_max(group.len() as u64, Ordering::Relaxed);

        let first_revision = self.revision;
        let mut revision = first_revision;
        let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(group.len());

        for request in group {
            let (reply, result) = match request {
                Request::Compact { revision, reply } => {
                    answers.push(Answer::Compact(revision, reply));
                    continue;
                }
                Request::Create { key, value, reply } => {
                    let result = self.exists(&overlay, &key).and_then(|exists| {
                        if exists {
                            return Err(StoreError::AlreadyExists { key });
                        }
                        revision += 1;
                        Ok(Event {
                            kind: EventKind::Create,
                            kv: KeyValue {
                                key,
                                value,
                                create_revision: revision,
                                mod_revision: revision,
                            },
                            prev: None,
                        })
                    });
                    (reply, result)
                }
                Request::Update {
                    key,
                    value,
                    expected,
                    reply,
                } => {
                    let result = self.current(&overlay, &key).and_then(|current| {
                        let prev = check(key.clone(), current, Some(expected))?;
                        revision += 1;
                        Ok(Event {
                            kind: EventKind::Update,
                            kv: KeyValue {
                                key,
                                value,
                                create_revision: prev.create_revision,
                                mod_revision: revision,
                            },
                            prev: Some(prev),
                        })
                    });
                    (reply, result)
                }
                Request::Delete {
                    key,
                    expected,
                    reply,
                } => {
                    let result = self.current(&overlay, &key).and_then(|current| {
                        let prev = check(key.clone(), current, expected)?;
                        revision += 1;
                        Ok(Event {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key,
                                value: prev.value.clone(),
                                create_revision: prev.create_revision,
                                mod_revision: revision,
                            },
                            prev: Some(prev),
                        })
                    });
                    (reply, result)
                }
            };
            let result = result.map(|event| {
                stage(&mut batch, event.kind, &event.kv);
                let after = (event.kind != EventKind::Delete).then(|| event.kv.clone());
                overlay.insert(event.kv.key.clone(), after);
                let kv = event.kv.clone();
                events.push(event);
                kv
            });
            answers.push(Answer::Write(reply, result));
        }

        if revision > first_revision {
            if let Err(e) = self.commit(batch, revision) {
                tracing::error!(error = %e, "group commit failed; refusing further writes");
                self.failure = Some(e.to_string());
                for answer in &mut answers {
                    if let Answer::Write(_, result) = answer {
                        if result.is_ok() {
                            *result = Err(e.clone());
                        }
                    }
                }
            } else {
                counters
                    .writes
                    .fetch_add((revision - first_revision) as u64, Ordering::Relaxed);
                lock(&shared.watchers).publish(events, revision);
            }
        }

        for answer in answers {
            match answer {
                Answer::Write(reply, result) => {
                    // The requester may have gone away; the write stands regardless.
                    let _ = reply.send(result);
                }
                Answer::Compact(revision, reply) => self.begin_compaction(revision, reply),
            }
        }
    }

    /// Whether `key` exists, as this group sees it.
    fn exists(
        &self,
        overlay: &HashMap<String, Option<KeyValue>>,
        key: &str,
    ) -> Result<bool, StoreError> {
        if let Some(err) = self.unavailable() {
            return Err(err);
        }
        if let Some(state) = overlay.get(key) {
            return Ok(state.is_some());
        }
        self.shared
            .tree
            .contains_key(encoding::current_key(key))
            .map_err(storage(format!("reading {key:?}")))
    }

    /// Current version of `key`, as this group sees it.
    fn current(
        &self,
        overlay: &HashMap<String, Option<KeyValue>>,
        key: &str,
    ) -> Result<Option<KeyValue>, StoreError> {
        if let Some(err) = self.unavailable() {
            return Err(err);
        }
        if let Some(state) = overlay.get(key) {
            return Ok(state.clone());
        }
        let Some(raw) = self
            .shared
            .tree
            .get(encoding::current_key(key))
            .map_err(storage(format!("reading {key:?}")))?
        else {
            return Ok(None);
        };
        let (_, mod_revision) = encoding::decode_current(&raw)?;
        // Nothing compacts concurrently with the writer: a missing value is corruption.
        self.shared
            .load_version(key, mod_revision)?
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                context: format!("value of {key:?} at revision {mod_revision} is missing"),
            })
    }

    /// Applies and flushes one group, then makes it visible.
    fn commit(&mut self, batch: sled::Batch, revision: i64) -> Result<(), StoreError> {
        self.shared.applied.store(revision, Ordering::SeqCst);
        self.shared
            .tree
            .apply_batch(batch)
            .map_err(storage("applying a write batch"))?;
        self.flush()?;
        self.revision = revision;
        self.shared.committed.store(revision, Ordering::SeqCst);
        self.shared.counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn begin_compaction(&mut self, target: i64, reply: Reply<()>) {
        if let Some(err) = self.unavailable() {
            let _ = reply.send(Err(err));
            return;
        }
        if target > self.revision {
            let _ = reply.send(Err(StoreError::FutureRevision {
                requested: target,
                current: self.revision,
            }));
            return;
        }
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if target <= compacted {
            match &mut self.compaction {
                // Still removing history up to `target`: answer when that is done.
                Some(job) => job.waiters.push(reply),
                None => {
                    let _ = reply.send(Ok(()));
                }
            }
            return;
        }
        // Make the new compaction point durable before removing anything, so a crash never
        // leaves history removed while the old point still claims it readable.
        let persisted = self
            .shared
            .tree
            .insert(encoding::META_COMPACTED, &encoding::encode_meta(target))
            .map_err(storage("recording the compaction revision"))
            .and_then(|_| self.flush());
        if let Err(e) = persisted {
            let _ = reply.send(Err(e));
            return;
        }
        self.shared.compacted.store(target, Ordering::SeqCst);
        let job = self.compaction.get_or_insert_with(|| CompactionJob {
            target,
            waiters: Vec::new(),
        });
        job.target = job.target.max(target);
        job.waiters.push(reply);
    }

    fn compaction_step(&mut self) {
        let Some(target) = self.compaction.as_ref().map(|job| job.target) else {
            return;
        };
        let step = compact_chunk(&self.shared, self.compact_cursor, target, COMPACTION_CHUNK);
        let done = step.and_then(|cursor| {
            self.compact_cursor = cursor;
            if cursor < target {
                return Ok(false);
            }
            self.flush().map(|()| true)
        });
        let result = match done {
            Ok(false) => return,
            Ok(true) => {
                self.shared
                    .counters
                    .compactions
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "compaction failed");
                Err(e)
            }
        };
        if let Some(job) = self.compaction.take() {
            tracing::debug!(target = job.target, "compaction finished");
            for waiter in job.waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

/// The CAS check shared by update and delete: returns the current version.
fn check(
    key: String,
    current: Option<KeyValue>,
    expected: Option<i64>,
) -> Result<KeyValue, StoreError> {
    match current {
        None => Err(StoreError::NotFound { key }),
        Some(current) if expected.is_some_and(|e| e != current.mod_revision) => {
            Err(StoreError::Conflict { key, current })
        }
        Some(current) => Ok(current),
    }
}

/// Compacts the keys written by up to `chunk` log entries in `(cursor, target]` and
/// returns the new cursor (`target` once everything is done), persisted in the same batch.
///
/// Only keys written since the previous compaction can have history to drop: for each,
/// every version at or below `target` but the newest goes (index entry and log entry with
/// its value), and the newest goes too if it is a tombstone.
fn compact_chunk(
    shared: &Shared,
    cursor: i64,
    target: i64,
    chunk: usize,
) -> Result<i64, StoreError> {
    let tree = &shared.tree;
    let mut batch = sled::Batch::default();
    let mut seen = HashSet::new();
    let mut reached = target;
    let log = tree.range(encoding::log_key(cursor + 1)..=encoding::log_key(target));
    for (taken, entry) in log.enumerate() {
        let (raw_key, raw) = entry.map_err(storage("reading the log for compaction"))?;
        let revision = encoding::decode_log_key(&raw_key)?;
        if taken == chunk {
            reached = revision - 1;
            break;
        }
        let (_, key) = encoding::decode_log_key_of(&raw)?;
        if !seen.insert(key.clone()) {
            continue;
        }
        let mut versions = Vec::new();
        let range = encoding::history_key(&key, 0)..=encoding::history_key(&key, target);
        for version in tree.range(range) {
            let (raw_key, raw) = version.map_err(storage(format!("reading history of {key:?}")))?;
            let (_, revision) = encoding::split_history_key(&raw_key)?;
            versions.push((revision, encoding::decode_history(&raw)?));
        }
        let Some((newest, tombstone)) = versions.pop() else {
            continue;
        };
        if tombstone {
            versions.push((newest, tombstone));
        }
        for (revision, _) in versions {
            batch.remove(encoding::history_key(&key, revision));
            batch.remove(encoding::log_key(revision));
        }
    }
    batch.insert(
        encoding::META_COMPACT_CURSOR,
        encoding::encode_meta(reached).to_vec(),
    );
    tree.apply_batch(batch)
        .map_err(storage("applying a compaction batch"))?;
    Ok(reached)
}
