//! Shared read caches: one watcher per kind feeds a kube-rs reflector store that every
//! loop reads, so the controllers keep one copy of the pods, not one each. Each cache also
//! fans out the changes it applied ([`Cache::changes`]); loops take their triggers from
//! there, so a loop woken by a change always reads a cache that already holds it.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, OnceCell};
use tokio::task::JoinSet;

/// Changes a slow subscriber may fall behind before it skips some (it is told, and the
/// loops also resync on their own timers).
const CHANGE_BUFFER: usize = 4096;

/// Where nodes keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The caches the workload controllers read.
#[derive(Clone)]
pub struct Informers {
    pub pods: Cache<Pod>,
    pub replicasets: Cache<ReplicaSet>,
    pub nodes: Cache<Node>,
    /// Node leases (`kube-node-lease`).
    pub leases: Cache<Lease>,
    pub controller_revisions: Cache<ControllerRevision>,
    pub claims: Cache<PersistentVolumeClaim>,
    pub volumes: Cache<PersistentVolume>,
    pub storage_classes: Cache<StorageClass>,
    pub jobs: Cache<Job>,
    /// Set once every cache holds a full list. Loops wait on this rather than on the
    /// stores: a store's readiness signal wakes only one of several concurrent waiters
    /// (kube-runtime's `DelayedInit` keeps a single waker), which left loops unstarted.
    synced: Arc<OnceCell<()>>,
}

impl Informers {
    /// Start the watchers (as tasks in `set`) and return their caches.
    pub fn start(client: &kube::Client, set: &mut JoinSet<()>) -> Informers {
        Informers {
            pods: Cache::start(Api::all(client.clone()), set),
            replicasets: Cache::start(Api::all(client.clone()), set),
            nodes: Cache::start(Api::all(client.clone()), set),
            leases: Cache::start(Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE), set),
            controller_revisions: Cache::start(Api::all(client.clone()), set),
            claims: Cache::start(Api::all(client.clone()), set),
            volumes: Cache::start(Api::all(client.clone()), set),
            storage_classes: Cache::start(Api::all(client.clone()), set),
            jobs: Cache::start(Api::all(client.clone()), set),
            synced: Arc::new(OnceCell::new()),
        }
    }

    /// Wait until every cache holds a full list. Safe to call from many loops at once:
    /// only the first waits on the stores, the others on it.
    pub async fn ready(&self) {
        self.synced.get_or_init(|| self.wait_for_stores()).await;
    }

    async fn wait_for_stores(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.replicasets.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.leases.wait_until_ready().await;
        let _ = self.controller_revisions.wait_until_ready().await;
        let _ = self.claims.wait_until_ready().await;
        let _ = self.volumes.wait_until_ready().await;
        let _ = self.storage_classes.wait_until_ready().await;
        let _ = self.jobs.wait_until_ready().await;
    }
}

/// One kind's shared cache: the reflector store (reachable through `Deref`) and the
/// changes it applied, in order.
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Deref for Cache<K> {
    type Target = Store<K>;
    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Watch `api` in a task of `set`, keeping the store and announcing every change after
    /// the store holds it.
    fn start(api: Api<K>, set: &mut JoinSet<()>) -> Cache<K> {
        let (reader, writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let sender = changes.clone();
        let held = reader.clone();
        // Loops never read managedFields (kube-controller-manager's informers drop them
        // too); without them a cached pod takes a fraction of the memory.
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None)
            .reflect(writer);
        set.spawn(async move {
            stream
                .for_each(|event| {
                    match event {
                        Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                            // Announce the store's own copy rather than another one.
                            let held = held
                                .get(&ObjectRef::from_obj(&obj))
                                .unwrap_or_else(|| Arc::new(obj));
                            // No subscriber yet is fine: nobody to wake.
                            let _ = sender.send(held);
                        }
                        Ok(watcher::Event::Delete(obj)) => {
                            let _ = sender.send(Arc::new(obj));
                        }
                        Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                        Err(e) => {
                            tracing::debug!(kind = %K::kind(&()), error = %e, "informer watch error")
                        }
                    }
                    std::future::ready(())
                })
                .await;
        });
        Cache {
            store: reader,
            changes,
        }
    }

    /// The objects this cache changes from now on (added, modified or deleted), each
    /// yielded once the store holds the change: a trigger stream for
    /// `Controller::owns_stream` / `watches_stream`.
    pub fn changes(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        futures::stream::unfold(self.changes.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(obj) => return Some((Ok(K::clone(&obj)), rx)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(kind = %K::kind(&()), missed, "a controller fell behind its cache; skipped changes wait for its resync")
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// How long a loop waits for its own writes to show up in the caches before acting again
/// regardless (a lost watch event must not wedge an object).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a controller expects to see in the cache after its last writes, per owner uid:
/// kube-controller-manager's "expectations", so a loop does not create the same pods twice
/// because the watch had not delivered its first creates yet.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    at: Instant,
}

impl Expectations {
    /// Remember that `owner` created and deleted these objects just now.
    pub fn expect(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                owner.to_string(),
                Pending {
                    created: created.into_iter().collect(),
                    deleted: deleted.into_iter().collect(),
                    at: Instant::now(),
                },
            );
        }
    }

    /// Whether the cache has caught up with `owner`'s last writes: every created name is
    /// `present`, every deleted name is `gone` (absent or terminating).
    pub fn satisfied(
        &self,
        owner: &str,
        present: impl Fn(&str) -> bool,
        gone: impl Fn(&str) -> bool,
    ) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return true;
        };
        let Some(entry) = p.get(owner) else {
            return true;
        };
        let done = entry.at.elapsed() > EXPECTATION_TIMEOUT
            || (entry.created.iter().all(|n| present(n)) && entry.deleted.iter().all(|n| gone(n)));
        if done {
            p.remove(owner);
        }
        done
    }

    /// Forget an owner (it was deleted).
    pub fn forget(&self, owner: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(owner);
        }
    }
}
