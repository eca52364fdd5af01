//! The watch cache: an in-memory copy of every stored object and a window of recent
//! events, fed by one store watch. LIST, GET and WATCH are served from here (as
//! kube-apiserver's cacher does), so reads do not touch sled in the steady state.
//!
//! Objects are kept as their encoded JSON (resourceVersion stamped) plus the labels and
//! field values selectors test, taken once when the object arrives. LIST and WATCH copy
//! those bytes into responses without decoding them, every watcher shares one encoding
//! of each event, and the cache costs about the objects' JSON size rather than the
//! several times more of decoded trees.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};

use crate::registry::fields::FieldSet;
use crate::store::{EventKind, KeyValue, Store, StoreError};

/// How many events the cache keeps for watches that resume from an older revision.
const EVENT_WINDOW: usize = 10_000;

/// How long the cache keeps an event for such watches (kube-apiserver's watch cache keeps
/// at least 75 s of history). Without an age limit a quiet node's Lease renewals alone
/// (six a minute) would fill the window in a day and hold ~10 000 old object versions,
/// megabytes that no watch needs; a watch resuming from an older revision gets
/// `410 Gone` and lists again.
const EVENT_WINDOW_AGE: Duration = Duration::from_secs(300);

/// The kind of a cached event, as watch clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEventKind {
    Added,
    Modified,
    Deleted,
}

impl From<EventKind> for CacheEventKind {
    fn from(kind: EventKind) -> Self {
        match kind {
            EventKind::Create => CacheEventKind::Added,
            EventKind::Update => CacheEventKind::Modified,
            EventKind::Delete => CacheEventKind::Deleted,
        }
    }
}

/// A stored object as the cache keeps it: its JSON with the resourceVersion set, and the
/// attributes label and field selectors test.
#[derive(Debug)]
pub struct CachedObject {
    /// The object's JSON, as clients receive it.
    pub json: Bytes,
    pub mod_revision: i64,
    labels: Option<Box<Map<String, Value>>>,
    fields: FieldSet,
}

impl CachedObject {
    /// Decode a stored value once: stamp its resourceVersion and take its attributes.
    pub fn from_kv(kv: &KeyValue) -> Result<CachedObject, serde_json::Error> {
        let object = decode(kv)?;
        CachedObject::new(&object, kv.mod_revision)
    }

    /// Keep `object` (already carrying resourceVersion `mod_revision`).
    pub fn new(object: &Value, mod_revision: i64) -> Result<CachedObject, serde_json::Error> {
        let json = Bytes::from(serde_json::to_vec(object)?);
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .filter(|l| !l.is_empty())
            .map(|l| Box::new(l.clone()));
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = object["kind"].as_str().unwrap_or_default();
        Ok(CachedObject {
            json,
            mod_revision,
            labels,
            fields: FieldSet::of(group, kind, object),
        })
    }

    /// The object, decoded.
    pub fn value(&self) -> Value {
        self.parse().unwrap_or(Value::Null)
    }

    /// The object as a typed value.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// Its `metadata.labels`, for label selectors.
    pub fn labels(&self) -> Option<&Map<String, Value>> {
        self.labels.as_deref()
    }

    /// Its field set, for field selectors.
    pub fn fields(&self) -> &FieldSet {
        &self.fields
    }
}

/// One change, with the object before it (to move objects in and out of selectors).
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: CacheEventKind,
    pub key: String,
    pub revision: i64,
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

impl CacheEvent {
    /// The event a store watch reports, decoded (for watches served from the store).
    pub fn from_store(
        kind: EventKind,
        kv: &KeyValue,
        prev: Option<&KeyValue>,
    ) -> Result<CacheEvent, serde_json::Error> {
        Ok(CacheEvent {
            kind: CacheEventKind::from(kind),
            key: kv.key.clone(),
            revision: kv.mod_revision,
            object: Arc::new(CachedObject::from_kv(kv)?),
            prev: prev
                .and_then(|p| CachedObject::from_kv(p).ok())
                .map(Arc::new),
        })
    }
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// The window, oldest first, each event with the time it arrived.
    events: VecDeque<(Instant, Arc<CacheEvent>)>,
    /// Events older than or equal to this are gone from the window.
    window_start: i64,
}

impl State {
    /// Drop the events beyond [`EVENT_WINDOW`] and those older than [`EVENT_WINDOW_AGE`]
    /// at `now`, moving `window_start` past them.
    fn trim(&mut self, now: Instant) {
        while let Some((at, e)) = self.events.front() {
            let too_many = self.events.len() > EVENT_WINDOW;
            if !too_many && now.saturating_duration_since(*at) <= EVENT_WINDOW_AGE {
                break;
            }
            self.window_start = e.revision;
            self.events.pop_front();
        }
    }
}

/// Replayed events plus the receiver of live ones.
pub type Subscription = (Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>);

/// The cache. Cheap to share behind an `Arc`.
pub struct WatchCache {
    state: RwLock<State>,
    events_tx: broadcast::Sender<Arc<CacheEvent>>,
    revision_tx: watch::Sender<i64>,
    store: Arc<dyn Store>,
}

/// Decode a stored value and stamp its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(&kv.value)?;
    set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

pub fn set_resource_version(v: &mut Value, rev: i64) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Every decodable object of a store listing, by key.
fn load(items: &[KeyValue]) -> BTreeMap<String, Arc<CachedObject>> {
    let mut objects = BTreeMap::new();
    for kv in items {
        match CachedObject::from_kv(kv) {
            Ok(o) => {
                objects.insert(kv.key.clone(), Arc::new(o));
            }
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e, "skipping undecodable stored object")
            }
        }
    }
    objects
}

impl WatchCache {
    /// Load everything and start following the store. Returns when the cache is primed.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<WatchCache>, StoreError> {
        let list = store.list("/registry/", None, 0, None)?;
        let objects = load(&list.items);
        let (events_tx, _) = broadcast::channel(4096);
        let (revision_tx, _) = watch::channel(list.revision);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State {
                objects,
                events: VecDeque::new(),
                window_start: list.revision,
            }),
            events_tx,
            revision_tx,
            store: store.clone(),
        });
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(list.revision).await });
        Ok(cache)
    }

    /// Follow the store forever, re-watching from the last revision when a watch ends.
    async fn follow(self: Arc<Self>, mut from: i64) {
        loop {
            match self.store.watch("/registry/", from) {
                Ok(mut stream) => {
                    let mut too_slow = false;
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) => {
                                from = ev.kv.mod_revision;
                                self.apply(ev.kind, ev.kv, ev.prev);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "store watch ended; resuming");
                                too_slow = matches!(e, StoreError::WatcherTooSlow { .. });
                                break;
                            }
                        }
                    }
                    // Behind already: every consistent read waits for the cache, so resume
                    // at once.
                    if too_slow {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch cache cannot follow the store");
                    // A compacted revision means we missed events: reload everything.
                    if matches!(e, StoreError::Expired { .. }) {
                        if let Ok(r) = self.reload() {
                            from = r;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn reload(&self) -> Result<i64, StoreError> {
        let list = self.store.list("/registry/", None, 0, None)?;
        let objects = load(&list.items);
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        st.objects = objects;
        st.events.clear();
        st.window_start = list.revision;
        drop(st);
        self.revision_tx.send_replace(list.revision);
        Ok(list.revision)
    }

    fn apply(&self, kind: EventKind, kv: KeyValue, prev: Option<KeyValue>) {
        let object = match CachedObject::from_kv(&kv) {
            Ok(o) => Arc::new(o),
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e, "undecodable stored object");
                return;
            }
        };
        let rev = kv.mod_revision;
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        let old = match kind {
            EventKind::Delete => st.objects.remove(&kv.key),
            EventKind::Create | EventKind::Update => {
                st.objects.insert(kv.key.clone(), object.clone())
            }
        };
        let prev = old.or_else(|| {
            prev.and_then(|p| CachedObject::from_kv(&p).ok())
                .map(Arc::new)
        });
        let event = Arc::new(CacheEvent {
            kind: CacheEventKind::from(kind),
            key: kv.key,
            revision: rev,
            object,
            prev,
        });
        let now = Instant::now();
        st.events.push_back((now, event.clone()));
        st.trim(now);
        // Send while holding the lock so subscribers that replay under the lock never
        // miss or duplicate an event.
        let _ = self.events_tx.send(event);
        drop(st);
        self.revision_tx.send_replace(rev);
    }

    /// The newest revision the cache has seen.
    pub fn revision(&self) -> i64 {
        *self.revision_tx.borrow()
    }

    /// Wait until the cache has caught up with `rev` (a consistent read), at most `limit`.
    pub async fn wait_for(&self, rev: i64, limit: Duration) -> bool {
        let mut rx = self.revision_tx.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|r| *r >= rev)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Wait until the cache holds everything the store has acknowledged so far.
    pub async fn sync(&self) -> bool {
        let rev = self.store.current_revision();
        self.wait_for(rev, Duration::from_secs(3)).await
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        st.objects.get(key).cloned()
    }

    /// Objects under `prefix` with keys after `start_after`, in key order, and the
    /// revision they are consistent at.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> (Vec<(String, Arc<CachedObject>)>, i64) {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let start = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let items = st
            .objects
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (items, self.revision())
    }

    /// Subscribe to events after `from` (exclusive). Returns the replayed events and a
    /// receiver for live ones, or `None` when `from` is older than the window.
    pub fn subscribe(&self, from: i64) -> Option<Subscription> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        if from < st.window_start {
            return None;
        }
        let rx = self.events_tx.subscribe();
        let replay = st
            .events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.revision > from)
            .cloned()
            .collect();
        Some((replay, rx))
    }

    /// The oldest revision a watch may resume from.
    pub fn window_start(&self) -> i64 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .window_start
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fields::FieldSelector;

    fn event(revision: i64) -> Arc<CacheEvent> {
        let object = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        });
        Arc::new(CacheEvent {
            kind: CacheEventKind::Modified,
            key: "/registry/leases/kube-node-lease/node-1".into(),
            revision,
            object: Arc::new(CachedObject::new(&object, revision).expect("encodes")),
            prev: None,
        })
    }

    fn empty_state(window_start: i64) -> State {
        State {
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            window_start,
        }
    }

    #[test]
    fn the_window_forgets_events_older_than_its_age() {
        let start = Instant::now();
        let mut st = empty_state(10);
        // Events at 0, 90, 200 and 400 s after the start, one per revision.
        for (rev, secs) in [(11, 0), (12, 90), (13, 200), (14, 400)] {
            let at = start + Duration::from_secs(secs);
            st.events.push_back((at, event(rev)));
            st.trim(at);
        }
        // At 400 s, the events of 0 and 90 s are more than 300 s old.
        let revs: Vec<i64> = st.events.iter().map(|(_, e)| e.revision).collect();
        assert_eq!(revs, [13, 14]);
        assert_eq!(st.window_start, 12);
        // Nothing new for a long time: the window only moves when an event arrives.
        let later = start + Duration::from_secs(2000);
        st.events.push_back((later, event(15)));
        st.trim(later);
        assert_eq!(st.events.len(), 1);
        assert_eq!(st.window_start, 14);
    }

    #[test]
    fn the_window_keeps_at_most_its_count() {
        let now = Instant::now();
        let mut st = empty_state(0);
        let shared = event(1);
        for rev in 1..=(EVENT_WINDOW as i64 + 5) {
            let e = Arc::new(CacheEvent {
                kind: shared.kind,
                key: shared.key.clone(),
                revision: rev,
                object: shared.object.clone(),
                prev: None,
            });
            st.events.push_back((now, e));
            st.trim(now);
        }
        assert_eq!(st.events.len(), EVENT_WINDOW);
        assert_eq!(st.window_start, 5);
        assert_eq!(st.events.front().map(|(_, e)| e.revision), Some(6));
    }

    #[test]
    fn cached_objects_keep_json_labels_and_fields() {
        let stored = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running"},
        });
        let kv = KeyValue {
            key: "/registry/pods/prod/web-1".into(),
            value: serde_json::to_vec(&stored).expect("encodes").into(),
            create_revision: 3,
            mod_revision: 8,
        };
        let o = CachedObject::from_kv(&kv).expect("decodes");
        assert_eq!(o.value()["metadata"]["resourceVersion"], "8");
        assert_eq!(
            o.labels().and_then(|l| l.get("app")),
            Some(&serde_json::json!("web"))
        );
        let field = |s: &str| {
            FieldSelector::parse(s)
                .expect("parses")
                .matches_set("", "Pod", o.fields())
        };
        assert_eq!(field("spec.nodeName=n1,status.phase=Running"), Ok(true));
        assert_eq!(field("spec.host=n1"), Ok(true));
        assert_eq!(field("spec.nodeName="), Ok(false));
        assert_eq!(field("status.podIP="), Ok(true));
        assert_eq!(field("metadata.namespace!=prod"), Ok(false));
        assert!(field("spec.containers=x").is_err());
    }
}
