//! What the DaemonSet, StatefulSet, Job and CronJob loops share when they execute a plan
//! from the planners in [`super::workload`]: reading one namespace out of a shared cache,
//! checking their expectations against it, recording the planners' events, writing a
//! status subresource, telling harmless API answers (gone, already there) apart, and how
//! their `Controller`s are paced.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::informers::Expectations;
use super::workload::Event;
use crate::client::events::Recorder;

/// Sync every object at least this often: a loop is woken by its own watches but reads
/// the shared caches, a separate watch that may not have delivered the triggering change
/// yet; the next sync sees it.
const RESYNC: Duration = Duration::from_secs(10);

/// The `Controller` settings of the workload loops: a short debounce, so a burst of child
/// events makes one sync and the shared caches have usually caught up by then.
pub(crate) fn controller_config() -> Config {
    Config::default().debounce(Duration::from_millis(200))
}

/// When to sync again: when the plan asks, and at the latest after [`RESYNC`].
pub(crate) fn next_sync(requeue_after: Option<Duration>) -> Action {
    Action::requeue(requeue_after.map_or(RESYNC, |d| d.min(RESYNC)))
}

/// The cached objects of `namespace`, cloned so planners can take slices.
pub(crate) fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .map(Arc::unwrap_or_clone)
        .collect()
}

/// Whether the cache holds what `owner` created last time and no longer holds (or shows
/// terminating) what it deleted.
pub(crate) fn expectations_met<K>(expectations: &Expectations, owner: &str, cached: &[K]) -> bool
where
    K: Resource,
{
    let find = |n: &str| cached.iter().find(|o| o.meta().name.as_deref() == Some(n));
    expectations.satisfied(
        owner,
        |n| find(n).is_some(),
        |n| find(n).is_none_or(|o| o.meta().deletion_timestamp.is_some()),
    )
}

/// Record a planner's event (if any) on `object`.
pub(crate) async fn record(recorder: &Recorder, object: &ObjectReference, event: Option<Event>) {
    if let Some(e) = event {
        recorder
            .record(object, e.type_, &e.reason, &e.message)
            .await;
    }
}

/// Replace the status subresource of `obj` with `status` set by `set_status`. A conflict
/// or a vanished object is not an error: a newer version is on its way through the watch
/// and brings the loop back.
pub(crate) async fn replace_status<K>(
    api: &Api<K>,
    obj: &K,
    set_status: impl FnOnce(&mut K),
) -> Result<(), kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let mut next = obj.clone();
    set_status(&mut next);
    let body = serde_json::to_vec(&next).map_err(kube::Error::SerdeError)?;
    match api
        .replace_status(&obj.name_any(), &PostParams::default(), body)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// One write to a set's `ControllerRevision` history (DaemonSet and StatefulSet plans).
pub(crate) enum RevisionWrite<'a> {
    Create(&'a ControllerRevision),
    /// Give an older revision the next number (a rollback to it).
    Renumber {
        name: &'a str,
        revision: i64,
    },
    /// Drop a revision beyond `revisionHistoryLimit`; already gone is fine.
    Delete {
        name: &'a str,
    },
}

/// Carry out `write`; answers the revision's name.
pub(crate) async fn write_revision(
    api: &Api<ControllerRevision>,
    write: RevisionWrite<'_>,
) -> Result<String, kube::Error> {
    match write {
        RevisionWrite::Create(rev) => api
            .create(&PostParams::default(), rev)
            .await
            .map(|r| r.name_any()),
        RevisionWrite::Renumber { name, revision } => api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "revision": revision })),
            )
            .await
            .map(|r| r.name_any()),
        RevisionWrite::Delete { name } => {
            gone_is_fine(api.delete(name, &DeleteParams::default()).await).map(|()| name.into())
        }
    }
}

/// A delete that found nothing to delete succeeded.
pub(crate) fn gone_is_fine<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the API answered `AlreadyExists`.
pub(crate) fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}
