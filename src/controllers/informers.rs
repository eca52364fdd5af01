//! Shared read caches: one watcher per kind feeds a kube-rs reflector store that every
//! loop reads, so the controllers keep one copy of the pods, not one each. Loops still get
//! their triggers from their own `Controller` watches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

/// The caches the workload controllers read.
#[derive(Clone)]
pub struct Informers {
    pub pods: Store<Pod>,
    pub replicasets: Store<ReplicaSet>,
    pub nodes: Store<Node>,
    /// Node leases (`kube-node-lease`).
    pub leases: Store<Lease>,
    pub controller_revisions: Store<ControllerRevision>,
    pub claims: Store<PersistentVolumeClaim>,
    pub jobs: Store<Job>,
    /// Set once every cache holds a full list. Loops wait on this rather than on the
    /// stores: a store's readiness signal wakes only one of several concurrent waiters
    /// (kube-runtime's `DelayedInit` keeps a single waker), which left loops unstarted.
    synced: Arc<OnceCell<()>>,
}

impl Informers {
    /// Start the watchers (as tasks in `set`) and return their stores.
    pub fn start(client: &kube::Client, set: &mut JoinSet<()>) -> Informers {
        Informers {
            pods: cache(Api::all(client.clone()), set),
            replicasets: cache(Api::all(client.clone()), set),
            nodes: cache(Api::all(client.clone()), set),
            leases: cache(Api::namespaced(client.clone(), "kube-node-lease"), set),
            controller_revisions: cache(Api::all(client.clone()), set),
            claims: cache(Api::all(client.clone()), set),
            jobs: cache(Api::all(client.clone()), set),
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
        let _ = self.jobs.wait_until_ready().await;
    }
}

fn cache<K>(api: Api<K>, set: &mut JoinSet<()>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    set.spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::debug!(kind = %K::kind(&()), error = %e, "informer watch error");
                }
            })
            .await;
    });
    reader
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
