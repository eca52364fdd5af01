//! The garbage collector: owns the owner graph (who references whom through
//! `metadata.ownerReferences`, matched by uid) and acts on it through the API, as
//! kube-controller-manager's garbage collector does. Decisions are in
//! [`super::garbagecollector_plan`]; this module feeds the graph and executes them.
//!
//! Which kinds: every resource the API's discovery lists with `list`, `watch` and `delete`
//! (except Events, as upstream), found at start and again every [`DISCOVERY_INTERVAL`],
//! each followed by a metadata-only watcher. The graph keeps uids, names and owner
//! references only, never whole objects, so it stays small with tens of thousands of pods.
//! (skiff's API server does not serve `as=PartialObjectMetadata` yet and answers with full
//! objects; only their metadata is decoded here.)
//!
//! Absent owners are verified with a live GET before a dependent is deleted (the graph may
//! lag behind the API). An ownerReference to a namespaced owner in another namespace (or
//! from a cluster-scoped dependent) is invalid: it counts as absent and gets a
//! `OwnerRefInvalidNamespace` warning Event on the dependent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::{metadata_watcher, watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::garbagecollector_plan::{
    self as plan, Decision, Dependent, Item, OwnerState, Propagation, FOREGROUND, ORPHAN,
};
use super::ControllerError;
use crate::client::events::{EventType, Recorder};

/// How often discovery looks for new resources (CRDs) to watch.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// Objects processed at once.
const WORKERS: usize = 8;
/// How long a failed or waiting object rests before it is looked at again.
const RETRY: Duration = Duration::from_secs(2);
/// Safety net for foreground deletions: look again even without an event.
const WAIT_RECHECK: Duration = Duration::from_secs(10);
/// How long the workers wait for the first full lists before acting anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A watched resource.
struct Res {
    ar: ApiResource,
    namespaced: bool,
}

/// One owner reference, as kept in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnerRef {
    uid: String,
    api_version: String,
    kind: String,
    name: String,
    block: bool,
}

/// One object in the graph.
#[derive(Debug)]
struct Node {
    res: usize,
    namespace: Option<Arc<str>>,
    name: Box<str>,
    owners: Vec<OwnerRef>,
    deleting: bool,
    foreground: bool,
    orphan: bool,
}

#[derive(Default)]
struct Graph {
    resources: Vec<Res>,
    nodes: HashMap<String, Node>,
    /// owner uid → uids of objects that reference it (the owner may not exist).
    dependents: HashMap<String, HashSet<String>>,
    /// Interned namespace names.
    namespaces: HashSet<Arc<str>>,
    /// Per resource: uids seen since the watcher's last (re)list began.
    relisting: HashMap<usize, HashSet<String>>,
}

enum GraphEvent {
    Apply(usize, PartialObjectMeta<DynamicObject>),
    Delete(PartialObjectMeta<DynamicObject>),
    Init(usize),
    InitDone(usize),
}

struct Context {
    client: kube::Client,
    graph: Mutex<Graph>,
    queue: mpsc::UnboundedSender<String>,
    queued: Mutex<HashSet<String>>,
    recorder: Recorder,
}

impl Context {
    fn enqueue(&self, uid: &str) {
        if let Ok(mut q) = self.queued.lock() {
            if !q.insert(uid.to_string()) {
                return;
            }
        }
        let _ = self.queue.send(uid.to_string());
    }

    fn enqueue_later(self: &Arc<Self>, uid: String, after: Duration) {
        let ctx = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            ctx.enqueue(&uid);
        });
    }
}

pub async fn run(client: kube::Client) -> Result<(), ControllerError> {
    let (queue, mut rx) = mpsc::unbounded_channel::<String>();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "garbage-collector-controller"),
        client: client.clone(),
        graph: Mutex::new(Graph::default()),
        queue,
        queued: Mutex::new(HashSet::new()),
    });
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<GraphEvent>();
    let mut tasks = tokio::task::JoinSet::new();

    // Discovery: start a watcher per new resource, now and periodically.
    let watched = discover(&ctx, &events_tx, &mut tasks, &mut HashSet::new()).await?;
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    {
        let ctx = ctx.clone();
        let events_tx = events_tx.clone();
        tasks.spawn(async move {
            let mut seen = watched.0;
            let mut inner = tokio::task::JoinSet::new();
            loop {
                tokio::time::sleep(DISCOVERY_INTERVAL).await;
                if let Err(e) = discover(&ctx, &events_tx, &mut inner, &mut seen).await {
                    tracing::debug!(error = %e, "garbage collector rediscovery failed");
                }
            }
        });
    }

    // The graph builder: one task applies every watch event.
    {
        let ctx = ctx.clone();
        let mut pending_sync: HashSet<usize> = (0..watched.1).collect();
        tasks.spawn(async move {
            while let Some(ev) = events_rx.recv().await {
                if let GraphEvent::InitDone(r) = &ev {
                    pending_sync.remove(r);
                    if pending_sync.is_empty() {
                        let _ = synced_tx.send(true);
                    }
                }
                let wake = match ctx.graph.lock() {
                    Ok(mut g) => g.apply(ev),
                    Err(_) => Vec::new(),
                };
                for uid in wake {
                    ctx.enqueue(&uid);
                }
            }
        });
    }

    // The workers.
    let mut synced = synced_rx;
    let _ = tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|s| *s)).await;
    tracing::info!("garbage collector graph synced");
    let items = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    items
        .for_each_concurrent(WORKERS, |uid| {
            let ctx = ctx.clone();
            async move {
                if let Ok(mut q) = ctx.queued.lock() {
                    q.remove(&uid);
                }
                match process(&ctx, &uid).await {
                    Ok(Some(after)) => ctx.enqueue_later(uid, after),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(uid = %uid, error = %e, "garbage collection failed; retrying");
                        ctx.enqueue_later(uid, RETRY);
                    }
                }
            }
        })
        .await;
    Ok(())
}

/// Find resources not watched yet and start their watchers. Returns the set of watched
/// resources and how many were started.
async fn discover(
    ctx: &Arc<Context>,
    events: &mpsc::UnboundedSender<GraphEvent>,
    tasks: &mut tokio::task::JoinSet<()>,
    seen: &mut HashSet<(String, String, String)>,
) -> Result<(HashSet<(String, String, String)>, usize), ControllerError> {
    let discovery =
        Discovery::new(ctx.client.clone())
            .run()
            .await
            .map_err(ControllerError::api(
                "discovering resources for garbage collection",
            ))?;
    let mut started = 0;
    for (ar, caps) in discovery.groups().flat_map(|g| g.recommended_resources()) {
        let caps: ApiCapabilities = caps;
        if ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io") {
            continue;
        }
        if !(caps.supports_operation(verbs::LIST)
            && caps.supports_operation(verbs::WATCH)
            && caps.supports_operation(verbs::DELETE))
        {
            continue;
        }
        let key = (ar.group.clone(), ar.version.clone(), ar.plural.clone());
        if !seen.insert(key) {
            continue;
        }
        let idx = match ctx.graph.lock() {
            Ok(mut g) => {
                g.resources.push(Res {
                    ar: ar.clone(),
                    namespaced: caps.scope == Scope::Namespaced,
                });
                g.resources.len() - 1
            }
            Err(_) => continue,
        };
        let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
        let tx = events.clone();
        tasks.spawn(async move {
            let stream = metadata_watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        GraphEvent::Apply(idx, o)
                    }
                    Ok(watcher::Event::Delete(o)) => GraphEvent::Delete(o),
                    Ok(watcher::Event::Init) => GraphEvent::Init(idx),
                    Ok(watcher::Event::InitDone) => GraphEvent::InitDone(idx),
                    Err(e) => {
                        tracing::debug!(error = %e, "garbage collector watch error");
                        continue;
                    }
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        });
        started += 1;
    }
    Ok((seen.clone(), started))
}

fn has_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

impl Graph {
    fn intern(&mut self, ns: Option<String>) -> Option<Arc<str>> {
        let ns = ns.filter(|n| !n.is_empty())?;
        if let Some(n) = self.namespaces.get(ns.as_str()) {
            return Some(n.clone());
        }
        let n: Arc<str> = Arc::from(ns);
        self.namespaces.insert(n.clone());
        Some(n)
    }

    /// Apply one watch event; returns the uids to look at.
    fn apply(&mut self, ev: GraphEvent) -> Vec<String> {
        match ev {
            GraphEvent::Init(r) => {
                self.relisting.insert(r, HashSet::new());
                Vec::new()
            }
            GraphEvent::InitDone(r) => {
                let Some(seen) = self.relisting.remove(&r) else {
                    return Vec::new();
                };
                let gone: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(uid, n)| n.res == r && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                let mut wake = Vec::new();
                for uid in gone {
                    wake.extend(self.remove(&uid));
                }
                wake
            }
            GraphEvent::Apply(r, o) => {
                let Some(uid) = o.metadata.uid.clone() else {
                    return Vec::new();
                };
                if let Some(seen) = self.relisting.get_mut(&r) {
                    seen.insert(uid.clone());
                }
                self.upsert(r, uid, o.metadata)
            }
            GraphEvent::Delete(o) => match o.metadata.uid {
                Some(uid) => self.remove(&uid),
                None => Vec::new(),
            },
        }
    }

    fn upsert(&mut self, res: usize, uid: String, mut meta: kube::api::ObjectMeta) -> Vec<String> {
        let owners: Vec<OwnerRef> = meta
            .owner_references
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|o| OwnerRef {
                uid: o.uid,
                api_version: o.api_version,
                kind: o.kind,
                name: o.name,
                block: o.block_owner_deletion.unwrap_or(false),
            })
            .collect();
        let deleting = meta.deletion_timestamp.is_some();
        let foreground = deleting && has_finalizer(&meta, FOREGROUND);
        let orphan = has_finalizer(&meta, ORPHAN);
        let namespace = self.intern(meta.namespace);
        let node = Node {
            res,
            namespace,
            name: meta.name.unwrap_or_default().into_boxed_str(),
            owners,
            deleting,
            foreground,
            orphan,
        };
        let mut wake = vec![uid.clone()];
        let old = self.nodes.remove(&uid);
        let old_owners: Vec<OwnerRef> = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for o in &old_owners {
            if !node.owners.iter().any(|n| n.uid == o.uid) {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(&uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        // Owners waiting for their dependents care about any change of their dependents.
        for o in old_owners.iter().chain(node.owners.iter()) {
            if self.nodes.get(&o.uid).is_some_and(|n| n.deleting) {
                wake.push(o.uid.clone());
            }
        }
        // An object starting foreground deletion: its dependents are to be deleted.
        let was_waiting = old.as_ref().is_some_and(|o| o.deleting && o.foreground);
        if node.deleting && node.foreground && !was_waiting {
            if let Some(deps) = self.dependents.get(&uid) {
                wake.extend(deps.iter().cloned());
            }
        }
        self.nodes.insert(uid, node);
        wake
    }

    fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut wake = Vec::new();
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
            if self.nodes.contains_key(&o.uid) {
                wake.push(o.uid.clone());
            }
        }
        // Its dependents lost an owner.
        if let Some(deps) = self.dependents.get(uid) {
            wake.extend(deps.iter().cloned());
        }
        wake
    }

    /// The resource serving `api_version`/`kind` (the same group in another version will do).
    fn resource_for(&self, api_version: &str, kind: &str) -> Option<&Res> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.resources
            .iter()
            .find(|r| r.ar.api_version == api_version && r.ar.kind == kind)
            .or_else(|| {
                self.resources
                    .iter()
                    .find(|r| r.ar.group == group && r.ar.kind == kind)
            })
    }
}

/// What a worker needs to act on one object, copied out of the graph.
struct Snapshot {
    ar: ApiResource,
    namespace: Option<String>,
    name: String,
    item: Item,
    /// Owners the graph does not know (or knows only in another namespace): to verify.
    unknown: Vec<(OwnerRef, Option<(ApiResource, bool)>)>,
    /// Owners referenced invalidly (namespaced owner, other namespace or cluster-scoped
    /// dependent).
    invalid: Vec<OwnerRef>,
    /// Dependents (uid → resource, namespace, name) for orphaning.
    dependents: HashMap<String, (ApiResource, Option<String>, String)>,
}

fn snapshot(g: &Graph, uid: &str) -> Option<Snapshot> {
    let node = g.nodes.get(uid)?;
    let res = g.resources.get(node.res)?;
    let mut item = Item {
        deleting: node.deleting,
        foreground: node.foreground,
        orphan: node.orphan,
        ..Item::default()
    };
    let mut unknown = Vec::new();
    let mut invalid = Vec::new();
    for o in &node.owners {
        let owner_res = g.resource_for(&o.api_version, &o.kind);
        let owner_namespaced = owner_res.map(|r| r.namespaced);
        // A namespaced owner must be in the dependent's namespace.
        if owner_namespaced == Some(true) && node.namespace.is_none() {
            invalid.push(o.clone());
            item.owners.push((o.uid.clone(), OwnerState::Absent));
            continue;
        }
        match g.nodes.get(&o.uid) {
            Some(owner) if owner.namespace.is_none() || owner.namespace == node.namespace => {
                let state = if owner.deleting && owner.foreground {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                };
                item.owners.push((o.uid.clone(), state));
            }
            Some(_) => {
                invalid.push(o.clone());
                item.owners.push((o.uid.clone(), OwnerState::Absent));
            }
            None => {
                // Verified below; until then it counts as solid.
                unknown.push((o.clone(), owner_res.map(|r| (r.ar.clone(), r.namespaced))));
                item.owners.push((o.uid.clone(), OwnerState::Solid));
            }
        }
    }
    let mut dependents = HashMap::new();
    if let Some(deps) = g.dependents.get(uid) {
        for d in deps {
            let Some(dn) = g.nodes.get(d) else { continue };
            // A dependent in another namespace does not really reference a namespaced owner.
            if res.namespaced && dn.namespace != node.namespace {
                continue;
            }
            let blocks = dn.owners.iter().any(|o| o.uid == uid && o.block);
            item.dependents.push(Dependent {
                uid: d.clone(),
                blocks,
                deleting_dependents: dn.deleting && dn.foreground,
            });
            if let Some(dr) = g.resources.get(dn.res) {
                dependents.insert(
                    d.clone(),
                    (
                        dr.ar.clone(),
                        dn.namespace.as_deref().map(str::to_string),
                        dn.name.to_string(),
                    ),
                );
            }
        }
    }
    item.dependents.sort_by(|a, b| a.uid.cmp(&b.uid));
    Some(Snapshot {
        ar: res.ar.clone(),
        namespace: node.namespace.as_deref().map(str::to_string),
        name: node.name.to_string(),
        item,
        unknown,
        invalid,
        dependents,
    })
}

fn api_for(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Look at one object; returns when to look again, if it must be.
async fn process(ctx: &Arc<Context>, uid: &str) -> Result<Option<Duration>, ControllerError> {
    let snap = match ctx.graph.lock() {
        Ok(g) => snapshot(&g, uid),
        Err(_) => None,
    };
    let Some(mut snap) = snap else {
        return Ok(None);
    };
    // Verify owners the graph does not hold with a live read.
    for (o, res) in &snap.unknown {
        let Some((ar, namespaced)) = res else {
            // A kind nobody serves: keep the reference (upstream retries too).
            continue;
        };
        let ns = if *namespaced {
            snap.namespace.as_deref()
        } else {
            None
        };
        let api = api_for(&ctx.client, ar, ns);
        let found = api
            .get_metadata_opt(&o.name)
            .await
            .map_err(ControllerError::api(format!(
                "looking up owner {} {}",
                o.kind, o.name
            )))?;
        let present = found.is_some_and(|m| m.metadata.uid.as_deref() == Some(o.uid.as_str()));
        if !present {
            for (u, s) in snap.item.owners.iter_mut() {
                if *u == o.uid {
                    *s = OwnerState::Absent;
                }
            }
        }
    }
    for o in &snap.invalid {
        let object = ObjectReference {
            api_version: Some(snap.ar.api_version.clone()),
            kind: Some(snap.ar.kind.clone()),
            name: Some(snap.name.clone()),
            namespace: snap.namespace.clone(),
            uid: Some(uid.to_string()),
            ..Default::default()
        };
        let message = format!(
            "ownerRef [{}, {} {}, uid {}] is not valid here: namespaced owners must be in namespace {:?}",
            o.api_version,
            o.kind,
            o.name,
            o.uid,
            snap.namespace.as_deref().unwrap_or("")
        );
        ctx.recorder
            .record(
                &object,
                EventType::Warning,
                "OwnerRefInvalidNamespace",
                &message,
            )
            .await;
    }
    let api = api_for(&ctx.client, &snap.ar, snap.namespace.as_deref());
    match plan::decide(&snap.item) {
        Decision::Nothing => Ok(None),
        Decision::WaitForDependents { requeue } => {
            for d in requeue {
                ctx.enqueue(&d);
            }
            Ok(Some(WAIT_RECHECK))
        }
        Decision::RemoveFinalizer(f) => {
            remove_finalizer(&api, &snap.name, uid, f).await?;
            Ok(None)
        }
        Decision::Orphan { dependents } => {
            for d in dependents {
                if let Some((ar, ns, name)) = snap.dependents.get(&d) {
                    let dapi = api_for(&ctx.client, ar, ns.as_deref());
                    edit_owner_refs(&dapi, name, &d, |refs| {
                        refs.retain(|r| r["uid"] != uid);
                    })
                    .await?;
                }
            }
            remove_finalizer(&api, &snap.name, uid, ORPHAN).await?;
            Ok(None)
        }
        Decision::RemoveOwnerRefs(owners) => {
            edit_owner_refs(&api, &snap.name, uid, |refs| {
                refs.retain(|r| !owners.iter().any(|o| r["uid"] == o.as_str()));
            })
            .await?;
            Ok(None)
        }
        Decision::Delete {
            propagation,
            unblock,
        } => {
            if !unblock.is_empty() {
                edit_owner_refs(&api, &snap.name, uid, |refs| {
                    for r in refs.iter_mut() {
                        if unblock.iter().any(|o| r["uid"] == o.as_str()) {
                            r["blockOwnerDeletion"] = json!(false);
                        }
                    }
                })
                .await?;
            }
            delete(&api, &snap.name, uid, propagation).await?;
            Ok(None)
        }
    }
}

fn ignorable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Delete the object if it still has `uid`.
async fn delete(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    propagation: Propagation,
) -> Result<(), ControllerError> {
    let dp = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        }),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            tracing::info!(
                name,
                uid,
                propagation = propagation.as_str(),
                "garbage collected"
            );
            Ok(())
        }
        // Gone already, or replaced by another object of the same name.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(ControllerError::api(format!("deleting {name}"))(e)),
    }
}

/// Read the object, change its ownerReferences with `edit`, and write them back guarded by
/// the resourceVersion read (a concurrent writer makes this fail and retry).
async fn edit_owner_refs(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    edit: impl FnOnce(&mut Vec<Value>),
) -> Result<(), ControllerError> {
    let current = match api.get_metadata_opt(name).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(()),
        Err(e) if ignorable(&e) => return Ok(()),
        Err(e) => return Err(ControllerError::api(format!("reading {name}"))(e)),
    };
    if current.metadata.uid.as_deref() != Some(uid) {
        return Ok(());
    }
    let before: Vec<Value> = current
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let mut after = before.clone();
    edit(&mut after);
    if after == before {
        return Ok(());
    }
    let refs = if after.is_empty() {
        Value::Null
    } else {
        Value::Array(after)
    };
    let patch = json!({"metadata": {
        "resourceVersion": current.metadata.resource_version,
        "ownerReferences": refs,
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if ignorable(&e) => Ok(()),
        Err(e) => Err(ControllerError::api(format!(
            "updating ownerReferences of {name}"
        ))(e)),
    }
}

/// Remove `finalizer` from the object, guarded by the resourceVersion read.
async fn remove_finalizer(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    finalizer: &str,
) -> Result<(), ControllerError> {
    let current = match api.get_metadata_opt(name).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(()),
        Err(e) if ignorable(&e) => return Ok(()),
        Err(e) => return Err(ControllerError::api(format!("reading {name}"))(e)),
    };
    if current.metadata.uid.as_deref() != Some(uid) || !has_finalizer(&current.metadata, finalizer)
    {
        return Ok(());
    }
    let left: Vec<String> = current
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    let finalizers = if left.is_empty() {
        Value::Null
    } else {
        json!(left)
    };
    let patch = json!({"metadata": {
        "resourceVersion": current.metadata.resource_version,
        "finalizers": finalizers,
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(name, uid, finalizer, "garbage collector removed finalizer");
            Ok(())
        }
        Err(e) if ignorable(&e) => Ok(()),
        Err(e) => Err(ControllerError::api(format!(
            "removing finalizer {finalizer} of {name}"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn res(kind: &str, namespaced: bool) -> Res {
        Res {
            ar: ApiResource {
                group: "apps".into(),
                version: "v1".into(),
                api_version: "apps/v1".into(),
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
            },
            namespaced,
        }
    }

    fn meta(uid: &str, ns: &str, owners: &[(&str, &str)]) -> PartialObjectMeta<DynamicObject> {
        let mut m = PartialObjectMeta::<DynamicObject> {
            types: None,
            metadata: Default::default(),
            _phantom: std::marker::PhantomData,
        };
        m.metadata.uid = Some(uid.into());
        m.metadata.name = Some(uid.into());
        m.metadata.namespace = Some(ns.into());
        m.metadata.owner_references = Some(
            owners
                .iter()
                .map(|(kind, u)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: kind.to_string(),
                    name: u.to_string(),
                    uid: u.to_string(),
                    block_owner_deletion: Some(true),
                    controller: Some(true),
                })
                .collect(),
        );
        m
    }

    fn graph() -> Graph {
        Graph {
            resources: vec![res("Deployment", true), res("ReplicaSet", true)],
            ..Graph::default()
        }
    }

    #[test]
    fn graph_links_dependents_and_wakes_them_when_the_owner_goes() {
        let mut g = graph();
        g.apply(GraphEvent::Apply(0, meta("d", "default", &[])));
        g.apply(GraphEvent::Apply(
            1,
            meta("rs", "default", &[("Deployment", "d")]),
        ));
        let snap = snapshot(&g, "d").expect("deployment in graph");
        assert_eq!(snap.item.dependents.len(), 1);
        assert!(snap.item.dependents[0].blocks);
        let wake = g.apply(GraphEvent::Delete(meta("d", "default", &[])));
        assert_eq!(wake, vec!["rs".to_string()]);
        let snap = snapshot(&g, "rs").expect("replicaset in graph");
        // The owner is gone from the graph: to be verified by a live read.
        assert_eq!(snap.unknown.len(), 1);
    }

    #[test]
    fn owner_in_another_namespace_is_invalid() {
        let mut g = graph();
        g.apply(GraphEvent::Apply(0, meta("d", "other", &[])));
        g.apply(GraphEvent::Apply(
            1,
            meta("rs", "default", &[("Deployment", "d")]),
        ));
        let snap = snapshot(&g, "rs").expect("replicaset in graph");
        assert_eq!(snap.invalid.len(), 1);
        assert_eq!(
            snap.item.owners,
            vec![("d".to_string(), OwnerState::Absent)]
        );
        // And the owner does not wait for it.
        assert!(snapshot(&g, "d").expect("owner").item.dependents.is_empty());
    }

    #[test]
    fn foreground_deletion_wakes_dependents_and_relist_drops_vanished_objects() {
        let mut g = graph();
        g.apply(GraphEvent::Apply(0, meta("d", "default", &[])));
        g.apply(GraphEvent::Apply(
            1,
            meta("rs", "default", &[("Deployment", "d")]),
        ));
        let mut deleting = meta("d", "default", &[]);
        deleting.metadata.deletion_timestamp = Some(Time(chrono::Utc::now()));
        deleting.metadata.finalizers = Some(vec![FOREGROUND.into()]);
        let wake = g.apply(GraphEvent::Apply(0, deleting));
        assert!(wake.contains(&"rs".to_string()));
        let snap = snapshot(&g, "rs").expect("replicaset");
        assert_eq!(
            snap.item.owners,
            vec![("d".to_string(), OwnerState::WaitingForDependents)]
        );
        g.apply(GraphEvent::Init(1));
        let wake = g.apply(GraphEvent::InitDone(1));
        assert_eq!(wake, vec!["d".to_string()]);
        assert!(snapshot(&g, "rs").is_none());
        assert!(snapshot(&g, "d").expect("owner").item.dependents.is_empty());
    }
}
