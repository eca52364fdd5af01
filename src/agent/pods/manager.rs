//! The pod manager: watches the pods bound to this node (`spec.nodeName`) and gives each
//! its own worker ([`super::worker`]), feeding it every change of its pod. After the
//! first full list it removes what belongs to pods that no longer exist (containers,
//! sandboxes, pod dirs left by an earlier run), and leaves the containers of pods that
//! still exist running: their workers take them over (fail-static).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use tokio::sync::{mpsc, watch};

use super::plan;
use super::worker::{self, NodeContext};

struct Worker {
    pod: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Run the pod manager until the watch ends.
pub async fn run(ctx: Arc<NodeContext>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut cleaned_orphans = false;
    while let Some(event) = events.next().await {
        workers.retain(|_, w| !w.task.is_finished());
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                feed(&ctx, &mut workers, pod);
            }
            Ok(watcher::Event::Apply(pod)) => feed(&ctx, &mut workers, pod),
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down.
                for (uid, w) in &workers {
                    if !listed.contains(uid) {
                        let _ = w.pod.send(None);
                    }
                }
                if !cleaned_orphans {
                    cleaned_orphans = true;
                    let ctx = ctx.clone();
                    let known = listed.clone();
                    tokio::spawn(async move { remove_orphans(&ctx, &known).await });
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(w) = workers.get(&uid) {
                    let _ = w.pod.send(None);
                }
            }
            Err(e) => tracing::debug!(error = %e, "pod watch error"),
        }
    }
}

fn feed(ctx: &Arc<NodeContext>, workers: &mut HashMap<String, Worker>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(w) = workers.get(&uid) {
        let _ = w.pod.send(Some(pod));
        return;
    }
    tracing::debug!(pod_uid = %uid, pod = ?pod.metadata.name, "new pod worker");
    let (tx, rx) = watch::channel(Some(pod));
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(worker::run(ctx.clone(), uid.clone(), rx, wake_tx, wake_rx));
    workers.insert(uid, Worker { pod: tx, task });
}

/// Remove containers, sandboxes and pod dirs of pods that are not in `known`.
async fn remove_orphans(ctx: &NodeContext, known: &HashSet<String>) {
    let mut uids: HashSet<String> = HashSet::new();
    match ctx.runtime.ids() {
        Ok(ids) => {
            for id in ids {
                if let Some((uid, _, _)) = plan::parse_container_id(&id) {
                    uids.insert(uid.to_string());
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing containers"),
    }
    uids.extend(ctx.network.sandboxes().into_iter().map(|s| s.uid));
    if let Ok(entries) = std::fs::read_dir(&ctx.pods_dir) {
        uids.extend(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string)),
        );
    }
    for uid in uids.difference(known) {
        tracing::info!(pod_uid = %uid, "removing what is left of a pod that no longer exists");
        worker::cleanup_orphan(ctx, uid).await;
    }
}
