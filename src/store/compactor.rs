//! Background compaction policy, for any [`Store`].
//!
//! Like kine: every `interval` the compactor compacts up to the revision that was current
//! one interval ago, but never within the newest `min_retain` revisions. History is thus
//! kept for at least one interval (default 5 minutes) and at least `min_retain` revisions
//! (default 1000), which is what watchers and paginated lists need to resume.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// When and how much the background compactor compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactorConfig {
    /// Time between compactions, and the minimum age of compacted history.
    pub interval: Duration,
    /// Number of newest revisions never compacted.
    pub min_retain: i64,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5 * 60),
            min_retain: 1000,
        }
    }
}

/// The revision to compact to at a tick, if any: the revision current at the previous tick,
/// capped to keep `min_retain` revisions, and only if it moves the compaction point.
pub fn compaction_target(
    previous_tick_revision: i64,
    current_revision: i64,
    compacted_revision: i64,
    min_retain: i64,
) -> Option<i64> {
    let target = previous_tick_revision.min(current_revision.saturating_sub(min_retain.max(0)));
    (target > compacted_revision).then_some(target)
}

/// Spawns the compactor on the current tokio runtime (panics outside one, like
/// `tokio::spawn`). It holds the store weakly and stops once the store is dropped; abort
/// the returned handle to stop it earlier.
pub fn start_compactor<S: Store + ?Sized>(
    store: &Arc<S>,
    config: CompactorConfig,
) -> tokio::task::JoinHandle<()> {
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        let Some(mut previous_tick_revision) = store.upgrade().map(|s| s.current_revision()) else {
            return;
        };
        loop {
            ticker.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            let current = store.current_revision();
            if let Some(target) = compaction_target(
                previous_tick_revision,
                current,
                store.compacted_revision(),
                config.min_retain,
            ) {
                match store.compact(target).await {
                    Ok(()) => tracing::debug!(target, current, "compacted store history"),
                    Err(e) => tracing::warn!(target, error = %e, "store compaction failed"),
                }
            }
            previous_tick_revision = current;
        }
    })
}
