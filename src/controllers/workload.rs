//! What the DaemonSet, StatefulSet, Job and CronJob planners share (their decision logic
//! lives in `daemonset_plan`, `statefulset_plan`, `job_plan` and `cronjob_plan`).
//!
//! Every planner is a pure function: it takes the controller's object, the objects it
//! owns (pods, claims, revisions, jobs) as the watch caches hold them, and `now`, and
//! returns the actions that bring the cluster one step closer to the spec, in the order
//! they must be executed. Nothing here talks to the API server, sleeps, or keeps state
//! between calls; the control loops around the planners own the watches, execute the
//! actions (stopping at the first failure, then re-planning), retry on conflicts, and
//! requeue after the returned delay.
//!
//! This module owns what the planners share: the [`Event`] they ask to record, the
//! [`WorkloadError`] they fail with, building a pod from a template with a controller
//! reference, and the template hash and `ControllerRevision` bookkeeping of DaemonSets and
//! StatefulSets. Pod predicates are in [`super::pod_util`].

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Pod label holding the revision a pod was built from: the template hash for DaemonSet
/// pods, the `ControllerRevision` name for StatefulSet pods.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Label on a `ControllerRevision` holding its hash (StatefulSet revisions).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Why a plan could not be made. Problems a user fixes in the spec (a bad schedule, an
/// unknown time zone) are reported as events instead; these errors mean the input itself
/// is not a usable object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// The object lacks a field every stored object has (`metadata.name`, `metadata.uid`).
    #[error("{kind} has no {field}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    /// An int-or-percent field (`maxUnavailable`) holds neither an integer nor `N%`.
    #[error("invalid value {value:?} for {field}: must be an integer or a percentage")]
    InvalidIntOrPercent { field: &'static str, value: String },
    /// A cron schedule that does not parse.
    #[error("{0}")]
    Schedule(String),
    /// A time zone name with no zone information.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    /// A zone information file that is not valid TZif data.
    #[error("invalid time zone data for {name}: {reason}")]
    TimeZoneData { name: String, reason: String },
}

pub use crate::client::events::EventType;

/// An event to record on the controller's object (the involved object), with the
/// reason and message kube-controller-manager uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Event {
    pub(crate) fn normal(reason: &str, message: String) -> Self {
        Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            message,
        }
    }

    pub(crate) fn warning(reason: &str, message: String) -> Self {
        Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            message,
        }
    }
}

/// `SuccessfulCreate` for a pod made by the DaemonSet or Job controller; `name` is the
/// name the API server gave the pod (they create with `generateName`).
pub(crate) fn pod_created_event(name: &str) -> Event {
    Event::normal("SuccessfulCreate", format!("Created pod: {name}"))
}

pub(crate) fn pod_create_failed_event(error: &str) -> Event {
    Event::warning("FailedCreate", format!("Error creating: {error}"))
}

pub(crate) fn pod_deleted_event(name: &str) -> Event {
    Event::normal("SuccessfulDelete", format!("Deleted pod: {name}"))
}

pub(crate) fn pod_delete_failed_event(error: &str) -> Event {
    Event::warning("FailedDelete", format!("Error deleting: {error}"))
}

// ---------------------------------------------------------------------------
// Building children
// ---------------------------------------------------------------------------

pub(crate) fn name_of(meta: &ObjectMeta, kind: &'static str) -> Result<String, WorkloadError> {
    meta.name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(WorkloadError::MissingField {
            kind,
            field: "metadata.name",
        })
}

/// `metav1.NewControllerRef`: the owner reference a controller puts on what it creates.
pub(crate) fn controller_ref(
    api_version: &str,
    kind: &'static str,
    meta: &ObjectMeta,
) -> Result<OwnerReference, WorkloadError> {
    let name = name_of(meta, kind)?;
    let uid = meta
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or(WorkloadError::MissingField {
            kind,
            field: "metadata.uid",
        })?;
    Ok(OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// `GetPodFromTemplate`: labels, annotations, finalizers and spec of the template, the
/// controller reference, the namespace; the caller sets the name or `generateName`.
pub(crate) fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    namespace: &str,
) -> Pod {
    let tmeta = template.metadata.as_ref();
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()).filter(|n| !n.is_empty()),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            finalizers: tmeta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub(crate) fn set_label(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// A timestamp as the API stores it (whole seconds).
pub(crate) fn api_time(t: DateTime<Utc>) -> Time {
    Time(t.trunc_subsecs(0))
}

/// `GetScaledValueFromIntOrPercent`: an integer as is, `N%` of `total` rounded up or down.
pub(crate) fn scaled_int_or_percent(
    value: &IntOrString,
    total: i32,
    round_up: bool,
    field: &'static str,
) -> Result<i32, WorkloadError> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let bad = || WorkloadError::InvalidIntOrPercent {
                field,
                value: s.clone(),
            };
            let pct: i64 = s
                .strip_suffix('%')
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// Whole seconds (at least one) until `at`, as the requeue delay.
pub(crate) fn delay_until(at: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    let ms = (at - now).num_milliseconds().max(1000);
    std::time::Duration::from_millis(ms as u64)
}

pub(crate) fn earliest(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

// ---------------------------------------------------------------------------
// Template hashes and ControllerRevisions (DaemonSet, StatefulSet)
// ---------------------------------------------------------------------------

/// `rand.SafeEncodeString`: digits mapped onto an alphabet without vowels, so a hash never
/// spells a word.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash of a pod template plus the object's collision count (FNV-1a over the
/// template's JSON), encoded like kube's: a short lowercase string for names and labels.
/// A missing collision count and zero hash alike.
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    // Serializing a typed struct cannot fail; an empty input would still hash.
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count.filter(|c| *c != 0) {
        feed(c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// A revision's data: the template as a replace patch of `spec.template`, which is what
/// `kubectl rollout undo` applies back to the object.
pub(crate) fn revision_data(template: &PodTemplateSpec) -> RawExtension {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), serde_json::Value::from("replace"));
    }
    RawExtension(serde_json::json!({ "spec": { "template": t } }))
}

/// The `ControllerRevision` numbered `number` that snapshots `template` for the set
/// described by `set_meta` (owned through `owner`): named `name`, labelled with the
/// template's labels plus `hash_label: hash`, carrying the set's annotations.
pub(crate) fn template_revision(
    name: &str,
    set_meta: &ObjectMeta,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    (hash_label, hash): (&str, &str),
    number: i64,
) -> ControllerRevision {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(hash_label.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: set_meta.namespace.clone(),
            labels: Some(labels),
            annotations: set_meta.annotations.clone(),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(revision_data(template)),
        revision: number,
    }
}

/// The template a revision holds.
pub(crate) fn template_of_revision(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// What to do with the owner's `ControllerRevision`s so that one of them holds the
/// current template with the highest revision number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RevisionStep {
    /// The newest revision already holds the template.
    UpToDate,
    /// No revision holds the template: create this one.
    Create(Box<ControllerRevision>),
    /// An older revision holds it (a rollback): give it the next revision number.
    Renumber { name: String, revision: i64 },
}

/// Decide the revision step for a template whose revision is named `name`.
pub(crate) fn revision_step(
    revisions: &[&ControllerRevision],
    name: &str,
    build: impl FnOnce(i64) -> ControllerRevision,
) -> RevisionStep {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    match revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
    {
        Some(r) if r.revision == max => RevisionStep::UpToDate,
        Some(_) => RevisionStep::Renumber {
            name: name.to_string(),
            revision: max + 1,
        },
        None => RevisionStep::Create(Box::new(build(max + 1))),
    }
}

/// Names of revisions to delete so at most `limit` revisions that are not live remain,
/// oldest (lowest revision number) first.
pub(crate) fn revisions_to_prune(
    revisions: &[&ControllerRevision],
    live: &dyn Fn(&ControllerRevision) -> bool,
    limit: i32,
) -> Vec<String> {
    let mut history: Vec<&&ControllerRevision> = revisions.iter().filter(|r| !live(r)).collect();
    let excess = history.len().saturating_sub(limit.max(0) as usize);
    history.sort_by_key(|r| r.revision);
    history
        .into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    #[test]
    fn percentages_scale_with_rounding() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(scaled_int_or_percent(&pct, 10, true, "f"), Ok(3));
        assert_eq!(scaled_int_or_percent(&pct, 10, false, "f"), Ok(2));
        assert_eq!(
            scaled_int_or_percent(&IntOrString::Int(4), 10, true, "f"),
            Ok(4)
        );
        assert!(matches!(
            scaled_int_or_percent(&IntOrString::String("x".into()), 10, true, "f"),
            Err(WorkloadError::InvalidIntOrPercent { .. })
        ));
    }

    #[test]
    fn template_hash_follows_the_template_and_collisions() {
        let mut t = PodTemplateSpec {
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let h1 = template_hash(&t, None);
        assert_eq!(h1, template_hash(&t.clone(), None));
        assert!(h1
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(h1, template_hash(&t, Some(1)));
        assert_eq!(h1, template_hash(&t, Some(0)));
        t.metadata = Some(ObjectMeta {
            labels: Some([("app".to_string(), "x".to_string())].into()),
            ..Default::default()
        });
        assert_ne!(h1, template_hash(&t, None));
        let rev = ControllerRevision {
            data: Some(revision_data(&t)),
            ..Default::default()
        };
        assert_eq!(template_of_revision(&rev), Some(t));
    }

    #[test]
    fn revision_steps_create_renumber_and_prune() {
        let rev = |name: &str, n: i64| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            revision: n,
            ..Default::default()
        };
        let (a, b, c) = (rev("x-a", 1), rev("x-b", 2), rev("x-c", 3));
        let all = [&a, &b, &c];
        assert_eq!(
            revision_step(&all, "x-c", |_| rev("", 0)),
            RevisionStep::UpToDate
        );
        assert_eq!(
            revision_step(&all, "x-a", |_| rev("", 0)),
            RevisionStep::Renumber {
                name: "x-a".into(),
                revision: 4
            }
        );
        match revision_step(&all, "x-d", |n| rev("x-d", n)) {
            RevisionStep::Create(r) => assert_eq!(r.revision, 4),
            other => panic!("expected a new revision, got {other:?}"),
        }
        let live = |r: &ControllerRevision| r.metadata.name.as_deref() == Some("x-c");
        assert_eq!(revisions_to_prune(&all, &live, 1), vec!["x-a".to_string()]);
        assert!(revisions_to_prune(&all, &live, 2).is_empty());
    }
}
