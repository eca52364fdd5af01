//! Watch streams: the registry of live watchers the writer publishes to, and the stream that
//! replays history from disk and then follows live events.
//!
//! Seam: registering a watcher and reading `published` (the highest revision already handed
//! to watchers) happen under the registry lock, and the writer publishes under that lock
//! too. So every event `<= published` is on disk (it was committed before being published)
//! and every event `> published` reaches the watcher's channel. The stream replays
//! `(from, published]` from the log, then delivers channel events whose revision is past
//! the last one delivered: no gap, no duplicate.
//!
//! Backpressure: each watcher has a bounded channel. The writer only ever `try_send`s; when a
//! watcher's channel is full the watcher is dropped from the registry and its stream ends,
//! after the events already buffered, with [`StoreError::WatcherTooSlow`]. The caller is
//! expected to watch again from the last revision it saw (history replay then covers what it
//! missed, as long as it has not been compacted).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::store::encoding;
use crate::store::sled_backend::{lock, storage, Shared};
use crate::store::{Event, StoreError};

/// Log entries read from disk per replay step.
const REPLAY_CHUNK: usize = 256;

struct Slot {
    prefix: String,
    events: mpsc::Sender<Event>,
    lagged: Arc<AtomicBool>,
}

/// Live watchers, owned by [`Shared`] and fed by the writer.
pub(crate) struct Registry {
    watchers: Vec<Slot>,
    /// Highest revision whose events have been published.
    published: i64,
    closed: bool,
}

impl Registry {
    pub(crate) fn new(published: i64) -> Self {
        Self {
            watchers: Vec::new(),
            published,
            closed: false,
        }
    }

    /// Hands the events of one commit (ending at `revision`) to every interested watcher.
    pub(crate) fn publish(&mut self, events: Vec<Event>, revision: i64) {
        self.watchers.retain(|slot| {
            if slot.events.is_closed() {
                return false;
            }
            for event in events.iter().filter(|e| e.kv.key.starts_with(&slot.prefix)) {
                match slot.events.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            prefix = %slot.prefix,
                            revision = event.kv.mod_revision,
                            "watcher too slow, dropping it"
                        );
                        slot.lagged.store(true, Ordering::SeqCst);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        self.published = revision;
    }

    /// Ends every watch stream (store shutting down).
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.watchers.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.watchers.len()
    }
}

pub(crate) fn watch(
    shared: &Arc<Shared>,
    prefix: &str,
    from_revision: i64,
) -> Result<BoxStream<'static, Result<Event, StoreError>>, StoreError> {
    let from_revision = from_revision.max(0);
    let (sender, live) = mpsc::channel(shared.watch_buffer);
    let lagged = Arc::new(AtomicBool::new(false));
    let replay_until = {
        let mut registry = lock(&shared.watchers);
        if registry.closed {
            return Err(StoreError::Closed);
        }
        let compacted = shared.compacted.load(Ordering::SeqCst);
        if from_revision < compacted {
            return Err(StoreError::Expired {
                requested: from_revision,
                compacted,
            });
        }
        registry.watchers.push(Slot {
            prefix: prefix.to_owned(),
            events: sender,
            lagged: Arc::clone(&lagged),
        });
        registry.published
    };
    let state = WatchState {
        shared: Arc::downgrade(shared),
        prefix: prefix.to_owned(),
        position: from_revision,
        replay_until,
        buffered: VecDeque::new(),
        live,
        lagged,
        capacity: shared.watch_buffer,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        },
    )))
}

struct WatchState {
    /// Weak so that a forgotten stream does not keep the database open.
    shared: Weak<Shared>,
    prefix: String,
    /// Every event up to this revision has been delivered (or was not wanted).
    position: i64,
    /// Events up to this revision come from disk, later ones from `live`.
    replay_until: i64,
    buffered: VecDeque<Event>,
    live: mpsc::Receiver<Event>,
    lagged: Arc<AtomicBool>,
    capacity: usize,
    done: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.position < self.replay_until {
                if let Err(e) = self.replay_chunk() {
                    self.done = true;
                    return Some(Err(e));
                }
                if self.buffered.is_empty() {
                    // Long stretches of other prefixes: do not hog the executor.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            match self.live.recv().await {
                Some(event) if event.kv.mod_revision > self.position => {
                    self.position = event.kv.mod_revision;
                    return Some(Ok(event));
                }
                Some(_) => {}
                None => {
                    self.done = true;
                    return Some(Err(if self.lagged.load(Ordering::SeqCst) {
                        StoreError::WatcherTooSlow {
                            capacity: self.capacity,
                        }
                    } else {
                        StoreError::Closed
                    }));
                }
            }
        }
    }

    /// Reads the next chunk of `(position, replay_until]` from the log into `buffered`.
    fn replay_chunk(&mut self) -> Result<(), StoreError> {
        let shared = self.shared.upgrade().ok_or(StoreError::Closed)?;
        let range = encoding::log_key(self.position + 1)..=encoding::log_key(self.replay_until);
        let mut events = Vec::new();
        let mut failure = None;
        let mut last = self.replay_until;
        for (scanned, entry) in shared.tree.range(range).enumerate() {
            let read = entry
                .map_err(storage("replaying the log"))
                .and_then(|(raw_key, raw)| {
                    Ok((
                        encoding::decode_log_key(&raw_key)?,
                        encoding::decode_log(&raw)?,
                    ))
                });
            let (revision, record) = match read {
                Ok(read) => read,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if record.key.starts_with(&self.prefix) {
                match shared.event_at(revision, record) {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if scanned + 1 == REPLAY_CHUNK {
                last = revision;
                break;
            }
        }
        // A compaction past our position may have removed what we just read.
        let compacted = shared.compacted.load(Ordering::SeqCst);
        if compacted > self.position {
            return Err(StoreError::Expired {
                requested: self.position,
                compacted,
            });
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.buffered.extend(events);
        self.position = last;
        Ok(())
    }
}
