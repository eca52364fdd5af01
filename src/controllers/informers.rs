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
use k8s_openapi::api::core::v1::{Container, Node, PersistentVolume, PersistentVolumeClaim, Pod};
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
            pods: Cache::start(Api::all(client.clone()), set, trim_pod),
            replicasets: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            nodes: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            leases: Cache::start(
                Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
                set,
                drop_managed_fields,
            ),
            controller_revisions: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            claims: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            volumes: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            storage_classes: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
            jobs: Cache::start(Api::all(client.clone()), set, drop_managed_fields),
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

/// Loops never read managedFields (kube-controller-manager's informers drop them too);
/// without them a cached object takes a fraction of the memory.
fn drop_managed_fields<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A pod as the loops read it. Besides its metadata, status and scheduling fields they
/// read its claims (the PersistentVolume loop), its containers' names, images, ports
/// (endpoints) and requests (the autoscaler); nothing else of the containers and no other
/// volume. Typed, the rest is most of a pod: every `Volume` holds a slot for each of the
/// ~30 volume sources, so a pod's service-account token volume alone costs kilobytes,
/// which at 30,000 pods is hundreds of megabytes.
fn trim_pod(pod: &mut Pod) {
    drop_managed_fields(pod);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.persistent_volume_claim.is_some());
    }
    spec.ephemeral_containers = None;
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        *c = Container {
            name: std::mem::take(&mut c.name),
            image: c.image.take(),
            ports: c.ports.take(),
            resources: c.resources.take(),
            restart_policy: c.restart_policy.take(),
            ..Container::default()
        };
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
    /// the store holds it. `trim` drops what no loop reads before an object is kept.
    fn start(api: Api<K>, set: &mut JoinSet<()>, trim: fn(&mut K)) -> Cache<K> {
        let (reader, writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let sender = changes.clone();
        let held = reader.clone();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(trim)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trimmed_pods_keep_what_the_loops_read() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {
                "nodeName": "n1",
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                    {"name": "kube-api-access", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "cache", "emptyDir": {}}
                ],
                "initContainers": [{"name": "init", "image": "busybox",
                    "command": ["sh", "-c", "true"], "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "nginx",
                    "env": [{"name": "A", "value": "1"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "ports": [{"name": "http", "containerPort": 80}],
                    "resources": {"requests": {"cpu": "100m"}}}]
            },
            "status": {"phase": "Running", "podIP": "10.42.0.5"}
        }))
        .expect("pod");
        trim_pod(&mut pod);
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.metadata.labels.as_ref().expect("labels")["app"], "web");
        let claims: Vec<_> = crate::apimachinery::storage::pod_claims(&pod).collect();
        assert_eq!(claims, [("data-web-0", false)]);
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.volumes.as_ref().map(Vec::len), Some(1));
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(1));
        let app = &spec.containers[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.image.as_deref(), Some("nginx"));
        assert_eq!(app.ports.as_ref().expect("ports")[0].container_port, 80);
        assert!(app
            .resources
            .as_ref()
            .expect("resources")
            .requests
            .is_some());
        assert!(app.env.is_none() && app.volume_mounts.is_none());
        let init = &spec.init_containers.as_ref().expect("init")[0];
        assert_eq!(init.restart_policy.as_deref(), Some("Always"));
        assert!(init.command.is_none());
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            Some("10.42.0.5")
        );
    }
}
