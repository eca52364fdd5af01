//! The scheduling loop: watches nodes, namespaces, pods, claims, volumes and storage
//! classes through the client, keeps the
//! [`Snapshot`] current, schedules pending pods one by one (FIFO), assumes the chosen node
//! at once so a burst spreads, and binds through `pods/binding` in the background (after
//! promising the pod's waiting claims to the node, `volume.kubernetes.io/selected-node`). Pods
//! that fit nowhere get a `FailedScheduling` event and a `PodScheduled=False` condition
//! with kube-scheduler's message, and are retried when nodes or pods change. Events
//! (`Scheduled`, `FailedScheduling`) go through a queue to a writer of their own, as
//! kube-scheduler's event broadcaster does: a binding never waits for its event.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::{schedule, Snapshot};
use crate::client::events::{reference, EventType, Recorder};

/// The scheduler's name; pods asking for another scheduler are left alone.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once. Each waits for the store's group commit (one flush per
/// group of writes); more in flight make bigger groups. 64 left the store writer flushing
/// groups of 5–8 writes and binding ~650 pods/s on the busy 2-CPU test machine, 256 made
/// it ~1,000 (docs/benchmarks.md). kube-scheduler has no fixed limit (a goroutine per
/// binding, bounded by its client's QPS).
const BIND_CONCURRENCY: usize = 256;
/// Events the event writer has in flight at once (kube-scheduler's broadcaster writes
/// one at a time; a few keep up with a burst of bindings without competing with them).
const EVENT_CONCURRENCY: usize = 4;
/// Unschedulable pods are retried at least this often even when nothing changed.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(30);
/// How long binding a pod waits for the claims it just promised to a node to be bound.
const CLAIM_BIND_WAIT: Duration = Duration::from_secs(10);
/// After a cluster change, wait this long before retrying unschedulable pods (batching).
const RETRY_DEBOUNCE: Duration = Duration::from_millis(200);

/// Why the scheduling loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("watching {kind}: {message}")]
    Watch { kind: &'static str, message: String },
}

enum Input {
    Node(Box<watcher::Event<Node>>),
    Namespace(Box<watcher::Event<Namespace>>),
    Pod(Box<watcher::Event<Pod>>),
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Volume(Box<watcher::Event<PersistentVolume>>),
    Class(Box<watcher::Event<StorageClass>>),
}

/// An event waiting for the event writer.
struct QueuedEvent {
    object: ObjectReference,
    kind: EventType,
    reason: &'static str,
    message: String,
}

type EventQueue = mpsc::UnboundedSender<QueuedEvent>;

/// Start the event writer: it records queued events, [`EVENT_CONCURRENCY`] at a time,
/// until every sender is gone.
fn event_writer(recorder: Recorder) -> EventQueue {
    let (tx, rx) = mpsc::unbounded_channel::<QueuedEvent>();
    tokio::spawn(async move {
        let queued = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        queued
            .for_each_concurrent(EVENT_CONCURRENCY, |e| {
                let recorder = &recorder;
                async move {
                    recorder
                        .record(&e.object, e.kind, e.reason, &e.message)
                        .await
                }
            })
            .await;
    });
    tx
}

/// The outcome of one binding, sent back to the loop.
struct Bound {
    pod: Pod,
    node: String,
    result: Result<(), kube::Error>,
    /// How long the binding request took.
    took: Duration,
}

/// Where the loop's time went over the last second or so (the `skiff::scheduler` debug
/// log; for benchmarks): attempts and their CPU time, pauses for a binding slot, bindings
/// and their latency.
struct Timing {
    since: std::time::Instant,
    attempts: u64,
    schedule: Duration,
    /// Times scheduling paused because every binding slot was taken.
    slots_full: u64,
    bound: u64,
    bind_total: Duration,
    bind_longest: Duration,
}

impl Timing {
    fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            attempts: 0,
            schedule: Duration::ZERO,
            slots_full: 0,
            bound: 0,
            bind_total: Duration::ZERO,
            bind_longest: Duration::ZERO,
        }
    }

    fn maybe_log(&mut self, active: usize, binding: usize) {
        let elapsed = self.since.elapsed();
        if elapsed < Duration::from_secs(1) || (self.attempts == 0 && self.bound == 0) {
            return;
        }
        tracing::debug!(
            elapsed_ms = elapsed.as_millis() as u64,
            attempts = self.attempts,
            schedule_us = self.schedule.as_micros() as u64,
            slots_full = self.slots_full,
            bound = self.bound,
            bind_mean_us = (self.bind_total.as_micros() as u64)
                .checked_div(self.bound)
                .unwrap_or(0),
            bind_longest_ms = self.bind_longest.as_millis() as u64,
            active,
            binding,
            "scheduler timing"
        );
        *self = Self::new();
    }
}

struct Scheduler {
    client: kube::Client,
    events: EventQueue,
    snapshot: Snapshot,
    next_start: usize,
    /// Pods waiting for a node, by uid, in arrival order.
    active: VecDeque<String>,
    /// Pending pods (latest version seen), by uid.
    pending: HashMap<String, Pod>,
    /// Pods that fit nowhere at their last attempt, by uid.
    unschedulable: HashMap<String, Pod>,
    /// Pods being bound right now, by uid.
    binding: HashMap<String, String>,
    cluster_changed: bool,
    timing: Timing,
}

pub async fn run(client: kube::Client) -> Result<(), SchedulerError> {
    let watch = |kind: &'static str| {
        move |e: watcher::Error| SchedulerError::Watch {
            kind,
            message: e.to_string(),
        }
    };
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(move |e| e.map(|e| Input::Node(Box::new(e))).map_err(watch("nodes")))
        .boxed();
    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(move |e| {
        e.map(|e| Input::Namespace(Box::new(e)))
            .map_err(watch("namespaces"))
    })
    .boxed();
    // managedFields never matter to scheduling; pending pods are kept without them.
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| p.metadata.managed_fields = None)
        .map(move |e| e.map(|e| Input::Pod(Box::new(e))).map_err(watch("pods")))
        .boxed();
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|c| c.metadata.managed_fields = None)
    .map(move |e| {
        e.map(|e| Input::Claim(Box::new(e)))
            .map_err(watch("persistentvolumeclaims"))
    })
    .boxed();
    let volumes = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|v| v.metadata.managed_fields = None)
    .map(move |e| {
        e.map(|e| Input::Volume(Box::new(e)))
            .map_err(watch("persistentvolumes"))
    })
    .boxed();
    let classes = watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(move |e| {
        e.map(|e| Input::Class(Box::new(e)))
            .map_err(watch("storageclasses"))
    })
    .boxed();
    let mut inputs: BoxStream<'static, Result<Input, SchedulerError>> =
        stream::select_all([nodes, namespaces, pods, claims, volumes, classes]).boxed();

    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel::<Bound>();
    let permits = Arc::new(Semaphore::new(BIND_CONCURRENCY));
    let mut s = Scheduler {
        events: event_writer(Recorder::new(client.clone(), SCHEDULER_NAME)),
        client,
        snapshot: Snapshot::new(),
        next_start: 0,
        active: VecDeque::new(),
        pending: HashMap::new(),
        unschedulable: HashMap::new(),
        binding: HashMap::new(),
        cluster_changed: false,
        timing: Timing::new(),
    };
    let mut retry = tokio::time::interval(UNSCHEDULABLE_RETRY);
    let mut debounce = Box::pin(tokio::time::sleep(Duration::MAX / 4));
    loop {
        tokio::select! {
            input = inputs.next() => {
                match input {
                    None => return Ok(()),
                    Some(Err(e)) => tracing::debug!(error = %e, "scheduler watch error; the watcher retries"),
                    Some(Ok(input)) => s.observe(input),
                }
                // Take whatever else is already waiting before scheduling.
                while let Some(Some(more)) = futures::FutureExt::now_or_never(inputs.next()) {
                    if let Ok(input) = more {
                        s.observe(input);
                    }
                }
            }
            Some(done) = bound_rx.recv() => {
                s.bound(done);
                while let Ok(more) = bound_rx.try_recv() {
                    s.bound(more);
                }
            }
            _ = retry.tick() => s.retry_unschedulable(),
            _ = &mut debounce => {
                s.retry_unschedulable();
                debounce.as_mut().reset(tokio::time::Instant::now() + Duration::MAX / 4);
            }
        }
        if s.cluster_changed && !s.unschedulable.is_empty() {
            s.cluster_changed = false;
            debounce
                .as_mut()
                .reset(tokio::time::Instant::now() + RETRY_DEBOUNCE);
        }
        s.schedule_pending(&bound_tx, &permits);
        s.timing.maybe_log(s.active.len(), s.binding.len());
    }
}

impl Scheduler {
    fn observe(&mut self, input: Input) {
        match input {
            Input::Node(event) => {
                self.cluster_changed = true;
                match *event {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                        self.snapshot.update_node(&n)
                    }
                    watcher::Event::Delete(n) => self.snapshot.remove_node(&n),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
            Input::Namespace(event) => match *event {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    self.snapshot.upsert_namespace(&n)
                }
                watcher::Event::Delete(n) => self.snapshot.remove_namespace(&n),
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
            Input::Pod(event) => match *event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => self.pod_changed(p),
                watcher::Event::Delete(p) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    self.pending.remove(&uid);
                    self.unschedulable.remove(&uid);
                    self.snapshot.remove_pod(&p);
                    self.cluster_changed = true;
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
            // A claim, volume or class may be what an unschedulable pod waits for.
            Input::Claim(event) => {
                self.cluster_changed = true;
                match *event {
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                        self.snapshot.upsert_claim(&c)
                    }
                    watcher::Event::Delete(c) => self.snapshot.remove_claim(&c),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
            Input::Volume(event) => {
                self.cluster_changed = true;
                match *event {
                    watcher::Event::Apply(v) | watcher::Event::InitApply(v) => {
                        self.snapshot.upsert_volume(&v)
                    }
                    watcher::Event::Delete(v) => self.snapshot.remove_volume(&v),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
            Input::Class(event) => {
                self.cluster_changed = true;
                match *event {
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                        self.snapshot.upsert_class(&c)
                    }
                    watcher::Event::Delete(c) => self.snapshot.remove_class(&c),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
        }
    }

    fn pod_changed(&mut self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound || is_finished(&pod) {
            self.pending.remove(&uid);
            self.unschedulable.remove(&uid);
            if bound {
                // A bound pod that terminates or finishes frees room for others.
                if pod.metadata.deletion_timestamp.is_some() || is_finished(&pod) {
                    self.cluster_changed = true;
                }
                self.snapshot.update_pod(&pod);
            }
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() || !ours(&pod) {
            self.pending.remove(&uid);
            self.unschedulable.remove(&uid);
            return;
        }
        if let Some(waiting) = self.unschedulable.get_mut(&uid) {
            // A changed pod (say, new tolerations) deserves a new attempt.
            let changed =
                waiting.spec != pod.spec || waiting.metadata.labels != pod.metadata.labels;
            *waiting = pod;
            if changed {
                if let Some(p) = self.unschedulable.remove(&uid) {
                    self.pending.insert(uid.clone(), p);
                    self.active.push_back(uid);
                }
            }
            return;
        }
        if self.pending.insert(uid.clone(), pod).is_none() && !self.binding.contains_key(&uid) {
            self.active.push_back(uid);
        }
    }

    fn retry_unschedulable(&mut self) {
        for (uid, pod) in self.unschedulable.drain() {
            self.pending.insert(uid.clone(), pod);
            self.active.push_back(uid);
        }
    }

    /// Schedule pods from the active queue while a binding slot is free. With every slot
    /// taken it returns, so the loop keeps reading its watches (a watch left unread for
    /// long is ended by the server as too slow) and comes back when a binding finishes.
    fn schedule_pending(
        &mut self,
        bound_tx: &mpsc::UnboundedSender<Bound>,
        permits: &Arc<Semaphore>,
    ) {
        while !self.active.is_empty() {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.timing.slots_full += 1;
                return;
            };
            let Some(uid) = self.active.pop_front() else {
                return;
            };
            if self.binding.contains_key(&uid) {
                continue;
            }
            let Some(pod) = self.pending.remove(&uid) else {
                continue;
            };
            let started = std::time::Instant::now();
            let attempt = schedule(&pod, &self.snapshot, &mut self.next_start);
            self.timing.attempts += 1;
            self.timing.schedule += started.elapsed();
            self.timing.maybe_log(self.active.len(), self.binding.len());
            match attempt {
                Ok(node) => {
                    self.snapshot.assume(&pod, &node);
                    let claims = self.snapshot.select_claims(&pod, &node);
                    self.binding.insert(uid, node.clone());
                    let (client, events, tx) =
                        (self.client.clone(), self.events.clone(), bound_tx.clone());
                    tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        let result = match select_node(&client, &claims, &node).await {
                            Ok(()) => bind(&client, &events, &pod, &node).await,
                            Err(e) => Err(e),
                        };
                        drop(permit);
                        let took = started.elapsed();
                        let _ = tx.send(Bound {
                            pod,
                            node,
                            result,
                            took,
                        });
                    });
                }
                Err(fit) => {
                    let message = fit.to_string();
                    tracing::debug!(pod = %pod.name_any(), %message, "pod does not fit");
                    let (client, p) = (self.client.clone(), pod.clone());
                    let _ = self.events.send(QueuedEvent {
                        object: reference(&pod),
                        kind: EventType::Warning,
                        reason: "FailedScheduling",
                        message: message.clone(),
                    });
                    tokio::spawn(async move { mark_unschedulable(&client, &p, message).await });
                    self.unschedulable.insert(uid, pod);
                }
            }
        }
    }

    fn bound(&mut self, done: Bound) {
        let uid = done.pod.metadata.uid.clone().unwrap_or_default();
        self.binding.remove(&uid);
        self.timing.bound += 1;
        self.timing.bind_total += done.took;
        self.timing.bind_longest = self.timing.bind_longest.max(done.took);
        if let Err(e) = done.result {
            tracing::debug!(pod = %done.pod.name_any(), node = %done.node, error = %e, "binding failed");
            self.snapshot.forget(&done.pod);
            // Gone or already bound elsewhere: the watch tells; otherwise try again.
            let retry = !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
            if retry && !self.pending.contains_key(&uid) {
                self.pending.insert(uid.clone(), done.pod);
                self.active.push_back(uid);
            }
        }
    }
}

/// Pods this scheduler is responsible for.
fn ours(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Promise the pod's unbound `WaitForFirstConsumer` claims to `node`
/// (`volume.kubernetes.io/selected-node`): the PersistentVolume controller provisions or
/// binds their volumes there; then wait (up to [`CLAIM_BIND_WAIT`]) until they are bound.
async fn select_node(
    client: &kube::Client,
    claims: &[(String, String)],
    node: &str,
) -> Result<(), kube::Error> {
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let patch = json!({"metadata": {"annotations": {
            crate::apimachinery::storage::SELECTED_NODE_ANNOTATION: node,
        }}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    // As upstream's PreBind, give the volumes a moment to be provisioned and bound so
    // the kubelet finds them; past that the pod is bound anyway and the kubelet waits.
    let deadline = tokio::time::Instant::now() + CLAIM_BIND_WAIT;
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        while tokio::time::Instant::now() < deadline {
            let bound = api
                .get_opt(name)
                .await?
                .is_none_or(|c| c.status.and_then(|s| s.phase).as_deref() == Some("Bound"));
            if bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn bind(
    client: &kube::Client,
    events: &EventQueue,
    pod: &Pod,
    node: &str,
) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let body = serde_json::to_vec(&binding).map_err(kube::Error::SerdeError)?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    api.create_subresource::<serde_json::Value>("binding", &name, &PostParams::default(), body)
        .await?;
    let _ = events.send(QueuedEvent {
        object: reference(pod),
        kind: EventType::Normal,
        reason: "Scheduled",
        message: format!("Successfully assigned {ns}/{name} to {node}"),
    });
    Ok(())
}

/// Set the pod's `PodScheduled=False` condition (reason `Unschedulable`) to `message`.
async fn mark_unschedulable(client: &kube::Client, pod: &Pod, message: String) {
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled" && c.message.as_deref() == Some(message.as_str())
            })
        });
    if already {
        return;
    }
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Time(Utc::now()),
    }]}});
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "marking pod unschedulable");
    }
}
