//! The Deployment controller's decisions, without I/O, following kube-controller-manager
//! 1.32 (`pkg/controller/deployment`): which ReplicaSet is the new one (template equal to
//! the deployment's, ignoring `pod-template-hash`), creating it under a stable hashed name,
//! the revision bookkeeping (`deployment.kubernetes.io/revision`, `revision-history`,
//! `desired-replicas`, `max-replicas`), RollingUpdate and Recreate rollouts, proportional
//! scaling of a paused or mid-rollout deployment, history cleanup, and the status
//! (`Available`/`Progressing` conditions) that `kubectl rollout status` reads.
//!
//! [`plan_deployment`] runs one sync: it returns the writes in the order upstream makes
//! them. The caller executes them in order and, on a conflict or error, re-plans from fresh
//! objects. Every plan is computed from the objects passed in, so re-planning is safe.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::apimachinery::{labels, quantity::parse_quantity};
use crate::controllers::pod_util::is_controlled_by;

/// The rollout sequence number of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet served, comma-separated (set when a rollback reuses it).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's `spec.replicas` when the ReplicaSet was last scaled for it.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled for it.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The label that keeps each ReplicaSet's pods apart: the hash of the pod template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations never copied onto its ReplicaSets.
const ANNOTATIONS_NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];
/// The revision-history annotation is kept under this many characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

// Condition types and reasons, as upstream spells them.
const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const REPLICA_FAILURE: &str = "ReplicaFailure";
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";
const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// One write the deployment controller wants made, in the order of the returned list.
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentAction {
    /// Create the new ReplicaSet for the current template (name fixed, no generateName).
    CreateReplicaSet(ReplicaSet),
    /// Update an existing ReplicaSet (annotations, `minReadySeconds`) to this object.
    UpdateReplicaSet(ReplicaSet),
    /// Set `spec.replicas` and the complete annotation map of a ReplicaSet.
    ScaleReplicaSet {
        name: String,
        replicas: i32,
        annotations: BTreeMap<String, String>,
    },
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet { name: String },
    /// Set the deployment's annotations to this complete map (only the revision changes).
    UpdateDeploymentAnnotations(BTreeMap<String, String>),
    /// Write the deployment's status subresource.
    UpdateStatus(DeploymentStatus),
    /// Record an event on the deployment.
    Event {
        type_: String,
        reason: String,
        message: String,
    },
}

/// Why a deployment's strategy could not be resolved (validation normally prevents it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentPlanError {
    #[error("invalid value for IntOrString {0:?}: a string must be a percentage like \"25%\"")]
    NotAPercentage(String),
    #[error("invalid value for IntOrString {0:?}: the percentage is not an integer")]
    BadPercentage(String),
}

/// `value` as an absolute count of `total`: an int as is, a percentage rounded up or down.
pub fn scaled_value(
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, DeploymentPlanError> {
    match value {
        IntOrString::Int(v) => Ok(*v),
        IntOrString::String(s) => {
            let digits = s
                .strip_suffix('%')
                .ok_or_else(|| DeploymentPlanError::NotAPercentage(s.clone()))?;
            let percent: i64 = digits
                .parse()
                .map_err(|_| DeploymentPlanError::BadPercentage(s.clone()))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                -(-product).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(scaled).unwrap_or(if scaled < 0 { i32::MIN } else { i32::MAX }))
        }
    }
}

/// Resolves `maxSurge` (rounded up) and `maxUnavailable` (rounded down) against `desired`
/// replicas; when both come to 0, `maxUnavailable` becomes 1 so a rollout can proceed.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), DeploymentPlanError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The pod-template hash used in new ReplicaSet names and the `pod-template-hash` label:
/// 32-bit FNV-1a over the template's JSON (plus `collisionCount`, little-endian, when set),
/// its decimal digits spelled in the alphabet upstream uses for generated names.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(SAFE[usize::from(b) % SAFE.len()]))
        .collect()
}

/// Whether two pod templates are the same apart from the `pod-template-hash` label, with
/// omitted and empty fields treated alike and resource quantities compared by value.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized_template(a) == normalized_template(b)
}

fn normalized_template(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if let Some(spec) = t.spec.as_mut() {
        let canon = |m: &mut Option<BTreeMap<String, Quantity>>| {
            for q in m.iter_mut().flat_map(|m| m.values_mut()) {
                if let Ok(parsed) = parse_quantity(&q.0) {
                    q.0 = format!("{}n", parsed.nano);
                }
            }
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            if let Some(r) = c.resources.as_mut() {
                canon(&mut r.limits);
                canon(&mut r.requests);
            }
        }
        canon(&mut spec.overhead);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(serde_json::Value::Null);
    prune(&mut v);
    v
}

/// Drops nulls, empty strings, empty arrays and empty objects, recursively.
fn prune(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            !items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, item| prune(item));
            !map.is_empty()
        }
        _ => true,
    }
}

/// Whether the deployment's current status shows a finished rollout: every desired replica
/// updated and available, no old replicas left, and the latest generation observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = desired_replicas(d);
    let z = |v: Option<i32>| v.unwrap_or(0);
    z(status.updated_replicas) == want
        && z(status.replicas) == want
        && z(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// How long until the deployment should be synced again to check its progress deadline, if
/// it has a rollout in flight (upstream's `requeueStuckDeployment`).
pub fn progress_check_after(d: &Deployment, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let deadline = progress_deadline(d)?;
    let spec = d.spec.as_ref()?;
    if spec.paused == Some(true) {
        return None;
    }
    let status = d.status.clone().unwrap_or_default();
    let cond = find_condition(&status, PROGRESSING)?;
    if deployment_complete(d, &status) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    let after = from + chrono::Duration::seconds(i64::from(deadline)) - now;
    Some(after.max(chrono::Duration::zero()))
}

fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The progress deadline in seconds, unless disabled (`i32::MAX`); 600 when unset.
fn progress_deadline(d: &Deployment) -> Option<i32> {
    let v = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    (v != i32::MAX).then_some(v)
}

fn find_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// Upstream's `SetDeploymentCondition`: same status and reason leaves the condition alone;
/// same status keeps its transition time; the new condition goes last.
fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = find_condition(status, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The status as its JSON form has it: zero counts omitted, no empty condition list.
fn compact(s: &DeploymentStatus) -> DeploymentStatus {
    let nz = |v: Option<i32>| v.filter(|v| *v != 0);
    DeploymentStatus {
        available_replicas: nz(s.available_replicas),
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
        observed_generation: s.observed_generation.filter(|g| *g != 0),
        ready_replicas: nz(s.ready_replicas),
        replicas: nz(s.replicas),
        unavailable_replicas: nz(s.unavailable_replicas),
        updated_replicas: nz(s.updated_replicas),
    }
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// The revision annotation: absent is 0, unparsable is an error (skipped by callers).
fn revision(rs: &ReplicaSet) -> Result<i64, std::num::ParseIntError> {
    annotation(rs, REVISION_ANNOTATION).map_or(Ok(0), str::parse)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ts = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ts(a)
        .cmp(&ts(b))
        .then_with(|| name_of(&a.metadata).cmp(name_of(&b.metadata)))
}

/// Plans one sync of deployment `d`. `rss` are the ReplicaSets in its namespace (those it
/// controls and still selects are managed; the others only matter for name collisions),
/// `pods` the pods of its namespace (used by Recreate to wait for old pods to stop).
pub fn plan_deployment<P: Borrow<Pod>>(
    d: &Deployment,
    rss: &[ReplicaSet],
    pods: &[P],
    now: DateTime<Utc>,
) -> Vec<DeploymentAction> {
    let Some(spec) = d.spec.as_ref() else {
        return Vec::new();
    };
    if labels::is_empty(&spec.selector) {
        let mut actions = vec![event(
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        )];
        let mut status = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or(0);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            actions.push(DeploymentAction::UpdateStatus(compact(&status)));
        }
        return actions;
    }
    let mut p = match Planner::new(d, rss, now) {
        Ok(p) => p,
        Err(e) => {
            return vec![event("Warning", "InvalidStrategy", e.to_string())];
        }
    };
    let outcome = if d.metadata.deletion_timestamp.is_some() {
        p.sync_revision(false)
            .map(|()| p.final_status = Some(p.calculate_status()))
    } else {
        p.check_paused_conditions();
        if spec.paused == Some(true) {
            p.sync()
        } else {
            match p.is_scaling_event() {
                Ok(true) => p.sync(),
                Ok(false) if p.rolling => p.rollout_rolling(),
                Ok(false) => p.rollout_recreate(pods),
                Err(c) => Err(c),
            }
        }
    };
    if outcome.is_err() {
        // The new ReplicaSet's name is taken: bump collisionCount so the next sync hashes to
        // another name, as upstream does.
        let mut status = p.status.clone();
        status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
        p.final_status = Some(status);
    }
    p.finish()
}

fn event(type_: &str, reason: &str, message: String) -> DeploymentAction {
    DeploymentAction::Event {
        type_: type_.into(),
        reason: reason.into(),
        message,
    }
}

/// The name the new ReplicaSet would take is held by another ReplicaSet.
struct Collision;

struct Planner<'a> {
    d: &'a Deployment,
    all: &'a [ReplicaSet],
    name: String,
    now: DateTime<Utc>,
    replicas: i32,
    rolling: bool,
    /// `MaxSurge(d)`: 0 unless RollingUpdate.
    surge: i32,
    /// `MaxUnavailable(d)`: 0 unless RollingUpdate with replicas, at most `replicas`.
    unavailable: i32,
    /// Working copies of the ReplicaSets the deployment controls, oldest first.
    rss: Vec<ReplicaSet>,
    new_idx: Option<usize>,
    /// Working copy of the deployment's status (conditions change as upstream's do).
    status: DeploymentStatus,
    annotations: BTreeMap<String, String>,
    actions: Vec<DeploymentAction>,
    final_status: Option<DeploymentStatus>,
}

impl<'a> Planner<'a> {
    fn new(
        d: &'a Deployment,
        all: &'a [ReplicaSet],
        now: DateTime<Utc>,
    ) -> Result<Self, DeploymentPlanError> {
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = desired_replicas(d);
        let strategy = spec.strategy.unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("Recreate");
        let (surge, unavailable) = if rolling {
            // API defaulting fills 25%/25% when unset.
            let default = IntOrString::String("25%".into());
            let ru = strategy.rolling_update.unwrap_or_default();
            let (s, u) = resolve_fenceposts(
                Some(ru.max_surge.as_ref().unwrap_or(&default)),
                Some(ru.max_unavailable.as_ref().unwrap_or(&default)),
                replicas,
            )?;
            (s, if replicas == 0 { 0 } else { u.min(replicas) })
        } else {
            (0, 0)
        };
        let name = name_of(&d.metadata).to_string();
        let mut rss: Vec<ReplicaSet> = all
            .iter()
            .filter(|rs| {
                is_controlled_by(&rs.metadata, "Deployment", &name, d.metadata.uid.as_deref())
                    && labels::matches(&spec.selector, rs.metadata.labels.as_ref())
            })
            .cloned()
            .collect();
        rss.sort_by(by_creation);
        let new_idx = rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &spec.template))
        });
        Ok(Planner {
            d,
            all,
            name,
            now,
            replicas,
            rolling,
            surge,
            unavailable,
            rss,
            new_idx,
            status: d.status.clone().unwrap_or_default(),
            annotations: d.metadata.annotations.clone().unwrap_or_default(),
            actions: Vec::new(),
            final_status: None,
        })
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused) == Some(true)
    }

    fn min_ready_seconds(&self) -> Option<i32> {
        self.d.spec.as_ref().and_then(|s| s.min_ready_seconds)
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new_idx)
            .collect()
    }

    fn active_old_indices(&self) -> Vec<usize> {
        self.old_indices()
            .into_iter()
            .filter(|i| spec_replicas(&self.rss[*i]) > 0)
            .collect()
    }

    fn all_indices(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    fn sum(&self, idx: &[usize], f: fn(&ReplicaSet) -> i32) -> i32 {
        idx.iter().map(|i| f(&self.rss[*i])).sum()
    }

    fn finish(mut self) -> Vec<DeploymentAction> {
        if self.annotations != self.d.metadata.annotations.clone().unwrap_or_default() {
            self.actions
                .push(DeploymentAction::UpdateDeploymentAnnotations(
                    self.annotations.clone(),
                ));
        }
        if let Some(status) = self.final_status.take() {
            let new = compact(&status);
            if new != compact(&self.d.status.clone().unwrap_or_default()) {
                self.actions.push(DeploymentAction::UpdateStatus(new));
            }
        }
        self.actions
    }

    fn has_progress_deadline(&self) -> bool {
        progress_deadline(self.d).is_some()
    }

    /// Upstream's `checkPausedConditions`: mark pausing and resuming in `Progressing`, so a
    /// long pause never reads as a missed deadline.
    fn check_paused_conditions(&mut self) {
        if !self.has_progress_deadline() {
            return;
        }
        let reason = find_condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED);
        let paused = self.paused();
        if paused && !paused_recorded {
            let c = condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                self.now,
            );
            set_condition(&mut self.status, c);
        } else if !paused && paused_recorded {
            let c = condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                self.now,
            );
            set_condition(&mut self.status, c);
        }
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: bring the new ReplicaSet's annotations
    /// and revision up to date (or create it when `create`), and copy its revision onto the
    /// deployment.
    fn sync_revision(&mut self, create: bool) -> Result<(), Collision> {
        let max_old = self
            .old_indices()
            .iter()
            .filter_map(|i| revision(&self.rss[*i]).ok())
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new_idx {
            let mut rs = self.rss[i].clone();
            let annotations_changed = self.set_new_rs_annotations(&mut rs, new_revision, true);
            let min_ready = self.min_ready_seconds();
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if annotations_changed || min_ready_changed {
                if min_ready_changed {
                    spec.min_ready_seconds = min_ready;
                    rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
                }
                self.actions
                    .push(DeploymentAction::UpdateReplicaSet(rs.clone()));
                self.rss[i] = rs;
            }
            if let Some(rev) = annotation(&self.rss[i], REVISION_ANNOTATION) {
                self.annotations
                    .insert(REVISION_ANNOTATION.into(), rev.to_string());
            }
            if self.has_progress_deadline() && find_condition(&self.status, PROGRESSING).is_none() {
                let msg = format!("Found new replica set {:?}", name_of(&self.rss[i].metadata));
                let c = condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now);
                set_condition(&mut self.status, c);
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        self.create_new_replicaset(new_revision)
    }

    fn create_new_replicaset(&mut self, new_revision: i64) -> Result<(), Collision> {
        let d = self.d;
        let Some(dspec) = d.spec.as_ref() else {
            return Ok(());
        };
        let hash = compute_hash(&dspec.template, self.status.collision_count);
        let rs_name = format!("{}-{hash}", self.name);
        if let Some(existing) = self.all.iter().find(|r| name_of(&r.metadata) == rs_name) {
            let ours = is_controlled_by(
                &existing.metadata,
                "Deployment",
                &self.name,
                d.metadata.uid.as_deref(),
            );
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &dspec.template));
            // Ours and equal but not selected: nothing to do until it is sorted out.
            return if ours && same { Ok(()) } else { Err(Collision) };
        }
        let mut template = dspec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = dspec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: self.name.clone(),
                    uid: d.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: dspec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        self.rss.push(rs.clone());
        let idx = self.rss.len() - 1;
        self.new_idx = Some(idx);
        let replicas = self.new_rs_new_replicas(idx);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        self.set_new_rs_annotations(&mut rs, new_revision, false);
        self.actions
            .push(DeploymentAction::CreateReplicaSet(rs.clone()));
        if replicas > 0 {
            self.actions.push(event(
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            ));
        }
        self.annotations
            .insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        if self.has_progress_deadline() {
            let msg = format!("Created new replica set {rs_name:?}");
            let c = condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now);
            set_condition(&mut self.status, c);
        }
        rs.metadata.creation_timestamp = Some(Time(self.now));
        rs.metadata.generation = Some(1);
        self.rss[idx] = rs;
        Ok(())
    }

    /// Upstream's `SetNewReplicaSetAnnotations`; returns whether anything changed.
    fn set_new_rs_annotations(&self, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
        let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
        let mut changed = false;
        for (k, v) in &self.annotations {
            if ANNOTATIONS_NOT_COPIED.contains(&k.as_str()) || ann.get(k) == Some(v) {
                continue;
            }
            ann.insert(k.clone(), v.clone());
            changed = true;
        }
        let old = ann.get(REVISION_ANNOTATION).cloned();
        let old_int = match old.as_deref().map(str::parse::<i64>) {
            None => 0,
            Some(Ok(v)) => v,
            Some(Err(_)) if old.as_deref() == Some("") => 0,
            Some(Err(_)) => return false,
        };
        if old_int < new_revision {
            ann.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
            changed = true;
            if let Some(old) = old {
                let history = ann
                    .get(REVISION_HISTORY_ANNOTATION)
                    .cloned()
                    .unwrap_or_default();
                if history.is_empty() {
                    ann.insert(REVISION_HISTORY_ANNOTATION.into(), old);
                } else {
                    let parts: Vec<&str> = history.split(',').collect();
                    let mut total = history.len() + old.len() + 1;
                    let mut start = 0;
                    while total > MAX_REVISION_HISTORY_CHARS && start < parts.len() {
                        total -= parts[start].len() + 1;
                        start += 1;
                    }
                    if total <= MAX_REVISION_HISTORY_CHARS {
                        let mut kept: Vec<&str> = parts[start..].to_vec();
                        kept.push(&old);
                        ann.insert(REVISION_HISTORY_ANNOTATION.into(), kept.join(","));
                    }
                }
            }
        }
        if !exists {
            changed |= self.set_replicas_annotations(ann);
        }
        changed
    }

    fn set_replicas_annotations(&self, ann: &mut BTreeMap<String, String>) -> bool {
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.surge).to_string();
        let mut changed = false;
        for (k, v) in [
            (DESIRED_REPLICAS_ANNOTATION, desired),
            (MAX_REPLICAS_ANNOTATION, max),
        ] {
            if ann.get(k) != Some(&v) {
                ann.insert(k.into(), v);
                changed = true;
            }
        }
        changed
    }

    /// Upstream's `NewRSNewReplicas`: how far the new ReplicaSet may grow now.
    fn new_rs_new_replicas(&self, new: usize) -> i32 {
        if !self.rolling {
            return self.replicas;
        }
        let current = self.sum(&self.all_indices(), spec_replicas);
        let new_replicas = spec_replicas(&self.rss[new]);
        let max_total = self.replicas + self.surge;
        if current >= max_total {
            return new_replicas;
        }
        let up = (max_total - current).min(self.replicas - new_replicas);
        new_replicas + up
    }

    /// Upstream's `scaleReplicaSet`: writes the size and replicas annotations when either
    /// differs; returns whether the size changed (then an event is recorded).
    fn scale_rs(&mut self, idx: usize, new_scale: i32, operation: &str) -> bool {
        let rs = &self.rss[idx];
        let old_scale = spec_replicas(rs);
        let size_changed = old_scale != new_scale;
        let mut ann = rs.metadata.annotations.clone().unwrap_or_default();
        let ann_changed = self.set_replicas_annotations(&mut ann);
        if !size_changed && !ann_changed {
            return false;
        }
        let name = name_of(&rs.metadata).to_string();
        let rs = &mut self.rss[idx];
        rs.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
        rs.metadata.annotations = Some(ann.clone());
        if size_changed {
            rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
        }
        self.actions.push(DeploymentAction::ScaleReplicaSet {
            name: name.clone(),
            replicas: new_scale,
            annotations: ann,
        });
        if size_changed {
            self.actions.push(event(
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled {operation} replica set {name} from {old_scale} to {new_scale}"),
            ));
        }
        size_changed
    }

    fn scale_and_record(&mut self, idx: usize, new_scale: i32) -> bool {
        let cur = spec_replicas(&self.rss[idx]);
        if cur == new_scale {
            return false;
        }
        let op = if cur < new_scale { "up" } else { "down" };
        self.scale_rs(idx, new_scale, op)
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was last sized for another
    /// `spec.replicas`.
    fn is_scaling_event(&mut self) -> Result<bool, Collision> {
        self.sync_revision(false)?;
        Ok(self.all_indices().into_iter().any(|i| {
            let rs = &self.rss[i];
            spec_replicas(rs) > 0
                && int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
                    .is_some_and(|v| v != self.replicas)
        }))
    }

    /// Upstream's `sync`: scaling of a paused deployment or during a scaling event.
    fn sync(&mut self) -> Result<(), Collision> {
        self.sync_revision(false)?;
        self.scale();
        if self.paused() {
            self.cleanup();
        }
        self.final_status = Some(self.calculate_status());
        Ok(())
    }

    /// Upstream's `scale`: size the only active ReplicaSet, finish a saturated rollout, or
    /// spread a replica change over the active ReplicaSets in proportion to their size.
    fn scale(&mut self) {
        let mut olds_newest_first = self.old_indices();
        olds_newest_first.sort_by(|a, b| by_creation(&self.rss[*b], &self.rss[*a]));
        let mut candidates = olds_newest_first.clone();
        candidates.extend(self.new_idx);
        let active: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|i| spec_replicas(&self.rss[*i]) > 0)
            .collect();
        let only = match active.len() {
            0 => self.new_idx.or(olds_newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            if spec_replicas(&self.rss[i]) != self.replicas {
                self.scale_and_record(i, self.replicas);
            }
            return;
        }
        if self.new_idx.is_some_and(|n| self.is_saturated(n)) {
            for i in self.active_old_indices() {
                self.scale_and_record(i, 0);
            }
            return;
        }
        if !self.rolling {
            return;
        }
        let total = self.sum(&active, spec_replicas);
        let allowed = if self.replicas > 0 {
            self.replicas + self.surge
        } else {
            0
        };
        let to_add = allowed - total;
        let mut order = active.clone();
        let (operation, newer_first) = match to_add.cmp(&0) {
            Ordering::Greater => ("up", true),
            Ordering::Less => ("down", false),
            Ordering::Equal => ("", false),
        };
        if to_add != 0 {
            order.sort_by(|a, b| {
                let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
                spec_replicas(rb).cmp(&spec_replicas(ra)).then_with(|| {
                    if newer_first {
                        by_creation(rb, ra)
                    } else {
                        by_creation(ra, rb)
                    }
                })
            });
        }
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for i in &order {
            let cur = spec_replicas(&self.rss[*i]);
            let proportion = if to_add != 0 {
                self.proportion(*i, to_add, added)
            } else {
                0
            };
            added += proportion;
            sizes.push((*i, cur + proportion));
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, size) in sizes {
            self.scale_rs(i, size, operation);
        }
    }

    /// Upstream's `GetProportion`/`getReplicaSetFraction`.
    fn proportion(&self, idx: usize, to_add: i32, added: i32) -> i32 {
        let rs = &self.rss[idx];
        let cur = spec_replicas(rs);
        if cur == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = if self.replicas == 0 {
            -cur
        } else {
            let target = self.replicas + self.surge;
            let annotated = int_annotation(rs, MAX_REPLICAS_ANNOTATION)
                .unwrap_or_else(|| self.status.replicas.unwrap_or(0));
            if annotated <= 0 {
                0
            } else {
                let size = f64::from(cur) * f64::from(target) / f64::from(annotated);
                // Bounded by cur * target, so the conversion cannot overflow.
                size.round() as i32 - cur
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn is_saturated(&self, idx: usize) -> bool {
        let rs = &self.rss[idx];
        int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(self.replicas)
            && spec_replicas(rs) == self.replicas
            && available(rs) == self.replicas
    }

    /// Upstream's `cleanupDeployment`: delete the oldest revisions beyond the history limit
    /// that are fully scaled down and observed so.
    fn cleanup(&mut self) {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        if limit == i32::MAX {
            return;
        }
        let mut cleanable: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            match (revision(ra), revision(rb)) {
                (Ok(x), Ok(y)) if x != y => x.cmp(&y),
                _ => by_creation(ra, rb),
            }
        });
        let excess = usize::try_from(excess).unwrap_or(usize::MAX);
        for i in cleanable.into_iter().take(excess) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.actions.push(DeploymentAction::DeleteReplicaSet {
                name: name_of(&rs.metadata).to_string(),
            });
        }
    }

    /// Upstream's `calculateStatus`: counts from the ReplicaSets' statuses, and the
    /// `Available` condition against `replicas - maxUnavailable`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all_indices();
        let available_total = self.sum(&all, available);
        let unavailable = (self.sum(&all, spec_replicas) - available_total).max(0);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(self.sum(&all, status_replicas)),
            updated_replicas: Some(self.new_idx.map_or(0, |i| status_replicas(&self.rss[i]))),
            ready_replicas: Some(self.sum(&all, ready)),
            available_replicas: Some(available_total),
            unavailable_replicas: Some(unavailable),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
        };
        let c = if available_total >= self.replicas - self.unavailable {
            condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Upstream's `syncRolloutStatus`: the status plus the `Progressing` estimate and any
    /// `ReplicaFailure` carried over from the ReplicaSets.
    fn rollout_status(&self) -> DeploymentStatus {
        let mut new = self.calculate_status();
        let has_deadline = self.has_progress_deadline();
        if !has_deadline {
            remove_condition(&mut new, PROGRESSING);
        }
        let z = |v: Option<i32>| v.unwrap_or(0);
        let current = find_condition(&self.status, PROGRESSING);
        let complete_before = z(new.replicas) == z(new.updated_replicas)
            && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let subject = match self.new_idx {
            Some(i) => format!("ReplicaSet {:?}", name_of(&self.rss[i].metadata)),
            None => format!("Deployment {:?}", self.name),
        };
        if has_deadline && !complete_before {
            if deployment_complete(self.d, &new) {
                let msg = format!("{subject} has successfully progressed.");
                let c = condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now);
                set_condition(&mut new, c);
            } else if self.progressed(&new) {
                let msg = format!("{subject} is progressing.");
                let mut c = condition(PROGRESSING, "True", RS_UPDATED, msg, self.now);
                if let Some(cur) = current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut new, PROGRESSING);
                }
                set_condition(&mut new, c);
            } else if self.timed_out(&new) {
                let msg = format!("{subject} has timed out progressing.");
                let c = condition(PROGRESSING, "False", TIMED_OUT, msg, self.now);
                set_condition(&mut new, c);
            }
        }
        match self.replica_failure() {
            Some(c) => set_condition(&mut new, c),
            None => remove_condition(&mut new, REPLICA_FAILURE),
        }
        new
    }

    /// Upstream's `DeploymentProgressing`: more updated, ready or available replicas, or
    /// fewer old ones, than the status last reported.
    fn progressed(&self, new: &DeploymentStatus) -> bool {
        let z = |v: Option<i32>| v.unwrap_or(0);
        let old = &self.status;
        let old_old = z(old.replicas) - z(old.updated_replicas);
        let new_old = z(new.replicas) - z(new.updated_replicas);
        z(new.updated_replicas) > z(old.updated_replicas)
            || new_old < old_old
            || z(new.ready_replicas) > z(old.ready_replicas)
            || z(new.available_replicas) > z(old.available_replicas)
    }

    /// Upstream's `DeploymentTimedOut`: no progress reported within the deadline.
    fn timed_out(&self, new: &DeploymentStatus) -> bool {
        let Some(deadline) = progress_deadline(self.d) else {
            return false;
        };
        let Some(cond) = find_condition(new, PROGRESSING) else {
            return false;
        };
        match cond.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => return false,
            Some(TIMED_OUT) => return true,
            _ => {}
        }
        let from = cond
            .last_update_time
            .as_ref()
            .or(cond.last_transition_time.as_ref());
        from.is_some_and(|t| t.0 + chrono::Duration::seconds(i64::from(deadline)) < self.now)
    }

    /// The first `ReplicaFailure` of the new ReplicaSet, else of any ReplicaSet.
    fn replica_failure(&self) -> Option<DeploymentCondition> {
        let mut order: Vec<usize> = self.new_idx.into_iter().collect();
        order.extend(self.all_indices());
        order.into_iter().find_map(|i| {
            let conds = self.rss[i].status.as_ref()?.conditions.as_ref()?;
            conds
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE)
                .map(|c| DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
        })
    }

    /// Upstream's `rolloutRolling`.
    fn rollout_rolling(&mut self) -> Result<(), Collision> {
        self.sync_revision(true)?;
        let Some(new) = self.new_idx else {
            self.final_status = Some(self.rollout_status());
            return Ok(());
        };
        let scaled = self.reconcile_new_replicaset(new) || self.reconcile_old_replicasets(new);
        if !scaled && deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.final_status = Some(self.rollout_status());
        Ok(())
    }

    fn reconcile_new_replicaset(&mut self, new: usize) -> bool {
        let cur = spec_replicas(&self.rss[new]);
        if cur == self.replicas {
            return false;
        }
        let target = if cur > self.replicas {
            self.replicas
        } else {
            self.new_rs_new_replicas(new)
        };
        self.scale_and_record(new, target)
    }

    /// Upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down as far as keeping
    /// `replicas - maxUnavailable` pods available allows, unhealthy replicas first.
    fn reconcile_old_replicasets(&mut self, new: usize) -> bool {
        let mut olds = self.active_old_indices();
        if self.sum(&olds, spec_replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all_indices(), spec_replicas);
        let min_available = self.replicas - self.unavailable;
        let new_rs = &self.rss[new];
        let new_unavailable = spec_replicas(new_rs) - available(new_rs);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        olds.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let Some(cleaned) = self.cleanup_unhealthy_replicas(&olds, max_scaled_down) else {
            return false;
        };
        let scaled = self.scale_down_old_for_rolling_update(&olds, new);
        cleaned + scaled > 0
    }

    /// Scales old ReplicaSets down by their unavailable replicas (at most `max_cleanup` in
    /// total). `None` when a ReplicaSet reports more available pods than it wants (a stale
    /// status): upstream then gives up on this sync.
    fn cleanup_unhealthy_replicas(&mut self, olds: &[usize], max_cleanup: i32) -> Option<i32> {
        let mut total = 0;
        for &i in olds {
            if total >= max_cleanup {
                break;
            }
            let rs = &self.rss[i];
            let (cur, avail) = (spec_replicas(rs), available(rs));
            if cur == 0 || cur == avail {
                continue;
            }
            let down = (max_cleanup - total).min(cur - avail);
            if down < 0 {
                return None;
            }
            self.scale_and_record(i, cur - down);
            total += down;
        }
        Some(total)
    }

    fn scale_down_old_for_rolling_update(&mut self, olds: &[usize], new: usize) -> i32 {
        let min_available = self.replicas - self.unavailable;
        let mut considered = olds.to_vec();
        considered.push(new);
        let available_pods = self.sum(&considered, available);
        if available_pods <= min_available {
            return 0;
        }
        let budget = available_pods - min_available;
        let mut total = 0;
        for &i in olds {
            if total >= budget {
                break;
            }
            let cur = spec_replicas(&self.rss[i]);
            if cur == 0 {
                continue;
            }
            let down = cur.min(budget - total);
            self.scale_and_record(i, cur - down);
            total += down;
        }
        total
    }

    /// Upstream's `rolloutRecreate`: all old ReplicaSets to 0, wait until no old pod runs,
    /// then create or scale up the new one.
    fn rollout_recreate<P: Borrow<Pod>>(&mut self, pods: &[P]) -> Result<(), Collision> {
        self.sync_revision(false)?;
        let mut scaled_down = false;
        for i in self.active_old_indices() {
            scaled_down |= self.scale_and_record(i, 0);
        }
        if scaled_down || self.old_pods_running(pods) {
            self.final_status = Some(self.rollout_status());
            return Ok(());
        }
        if self.new_idx.is_none() {
            self.sync_revision(true)?;
        }
        if let Some(new) = self.new_idx {
            self.scale_and_record(new, self.replicas);
        }
        if deployment_complete(self.d, &self.status) {
            self.cleanup();
        }
        self.final_status = Some(self.rollout_status());
        Ok(())
    }

    /// Whether an old ReplicaSet still reports pods, or any pod it controls is not finished.
    fn old_pods_running<P: Borrow<Pod>>(&self, pods: &[P]) -> bool {
        let olds = self.old_indices();
        if self.sum(&olds, status_replicas) > 0 {
            return true;
        }
        pods.iter().map(Borrow::borrow).any(|pod: &Pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
                && olds.iter().any(|i| {
                    let rs = &self.rss[*i];
                    is_controlled_by(
                        &pod.metadata,
                        "ReplicaSet",
                        name_of(&rs.metadata),
                        rs.metadata.uid.as_deref(),
                    )
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pod_util::tests::{label_map, t};
    use crate::controllers::pod_util::{controller_of, is_pod_active, is_pod_ready};
    use crate::controllers::replicaset_plan::{plan_replicaset, pod_from_template};
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(label_map(&[("app", "web")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        }
    }

    fn deployment(replicas: i32, image: &str, strategy: DeploymentStrategy) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(label_map(&[("app", "web")])),
                    ..Default::default()
                },
                template: template(image),
                strategy: Some(strategy),
                progress_deadline_seconds: Some(600),
                revision_history_limit: Some(10),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A tiny cluster: applies the deployment plan's writes like the API server would, runs
    /// the ReplicaSet plan like its controller would, and plays kubelet on demand.
    struct Cluster {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        clock: i64,
        next_pod: u32,
        events: Vec<String>,
    }

    impl Cluster {
        fn new(d: Deployment) -> Self {
            Cluster {
                d,
                rss: Vec::new(),
                pods: Vec::new(),
                clock: 0,
                next_pod: 0,
                events: Vec::new(),
            }
        }

        fn now(&self) -> DateTime<Utc> {
            t(self.clock)
        }

        fn edit(&mut self, f: impl FnOnce(&mut DeploymentSpec)) {
            if let Some(spec) = self.d.spec.as_mut() {
                f(spec);
            }
            self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(0) + 1);
        }

        fn plan(&self) -> Vec<DeploymentAction> {
            plan_deployment(&self.d, &self.rss, &self.pods, self.now())
        }

        fn sync_deployment(&mut self) -> Vec<DeploymentAction> {
            let actions = self.plan();
            for a in actions.clone() {
                self.apply(a);
            }
            actions
        }

        fn rs_mut(&mut self, name: &str) -> &mut ReplicaSet {
            let i = self
                .rss
                .iter()
                .position(|r| name_of(&r.metadata) == name)
                .expect("replica set exists");
            &mut self.rss[i]
        }

        fn apply(&mut self, action: DeploymentAction) {
            let clock = self.clock;
            match action {
                DeploymentAction::CreateReplicaSet(mut rs) => {
                    let name = name_of(&rs.metadata).to_string();
                    assert!(
                        !self.rss.iter().any(|r| name_of(&r.metadata) == name),
                        "{name} created twice"
                    );
                    rs.metadata.uid = Some(format!("uid-{name}"));
                    rs.metadata.creation_timestamp = Some(Time(t(clock)));
                    rs.metadata.generation = Some(1);
                    self.rss.push(rs);
                }
                DeploymentAction::UpdateReplicaSet(new) => {
                    let rs = self.rs_mut(name_of(&new.metadata));
                    if rs.spec != new.spec {
                        rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
                    }
                    rs.metadata.annotations = new.metadata.annotations;
                    rs.spec = new.spec;
                }
                DeploymentAction::ScaleReplicaSet {
                    name,
                    replicas,
                    annotations,
                } => {
                    let rs = self.rs_mut(&name);
                    if let Some(spec) = rs.spec.as_mut() {
                        if spec.replicas != Some(replicas) {
                            spec.replicas = Some(replicas);
                            rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
                        }
                    }
                    rs.metadata.annotations = Some(annotations);
                }
                DeploymentAction::DeleteReplicaSet { name } => {
                    self.rss.retain(|r| name_of(&r.metadata) != name);
                    let uid = format!("uid-{name}");
                    self.pods
                        .retain(|p| controller_of_uid(p) != Some(uid.as_str()));
                }
                DeploymentAction::UpdateDeploymentAnnotations(a) => {
                    self.d.metadata.annotations = Some(a);
                }
                DeploymentAction::UpdateStatus(s) => self.d.status = Some(s),
                DeploymentAction::Event {
                    type_,
                    reason,
                    message,
                } => self.events.push(format!("{type_} {reason} {message}")),
            }
        }

        /// Runs the ReplicaSet controller until it has nothing left to do.
        fn sync_replicasets(&mut self) {
            for _ in 0..10 {
                let mut busy = false;
                for i in 0..self.rss.len() {
                    let rs = self.rss[i].clone();
                    let uid = rs.metadata.uid.clone().unwrap_or_default();
                    let owned: Vec<Pod> = self
                        .pods
                        .iter()
                        .filter(|p| controller_of_uid(p) == Some(uid.as_str()))
                        .cloned()
                        .collect();
                    let plan = plan_replicaset(&rs, &owned, self.now());
                    for _ in 0..plan.create {
                        let mut pod = pod_from_template(&rs);
                        self.next_pod += 1;
                        let prefix = pod.metadata.generate_name.clone().unwrap_or_default();
                        pod.metadata.name = Some(format!("{prefix}{}", self.next_pod));
                        pod.metadata.uid = Some(format!("pod-{}", self.next_pod));
                        pod.metadata.creation_timestamp = Some(Time(self.now()));
                        pod.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(pod);
                    }
                    for name in &plan.delete {
                        let now = self.now();
                        if let Some(p) = self
                            .pods
                            .iter_mut()
                            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                        {
                            // Graceful deletion: the kubelet finishes it later.
                            p.metadata.deletion_timestamp = Some(Time(now));
                        }
                    }
                    busy |= plan.create > 0 || !plan.delete.is_empty() || plan.status_changed;
                    if plan.status_changed {
                        self.rss[i].status = Some(plan.status);
                    }
                }
                if !busy {
                    return;
                }
            }
            panic!("replica sets did not settle");
        }

        /// The kubelet: terminating pods go away, the others are scheduled and become ready.
        fn kubelet(&mut self) {
            self.clock += 1;
            let now = self.now();
            self.pods
                .retain(|p| p.metadata.deletion_timestamp.is_none());
            for (i, p) in self.pods.iter_mut().enumerate() {
                if is_pod_ready(p) {
                    continue;
                }
                if let Some(spec) = p.spec.as_mut() {
                    spec.node_name = Some(format!("node-{}", i % 3));
                }
                p.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(now)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
            }
        }

        /// Deployment sync, ReplicaSet controller, kubelet, until the deployment is quiet.
        fn settle(&mut self) {
            for _ in 0..40 {
                let acted = !self.sync_deployment().is_empty();
                self.sync_replicasets();
                self.kubelet();
                self.sync_replicasets();
                if !acted && rollout_done(&self.d) == Ok(true) {
                    return;
                }
            }
            panic!("deployment did not settle: {:?}", self.d.status);
        }

        fn ready_pods(&self) -> usize {
            self.pods
                .iter()
                .filter(|p| is_pod_active(p) && is_pod_ready(p))
                .count()
        }

        fn active_pods(&self) -> usize {
            self.pods.iter().filter(|p| is_pod_active(p)).count()
        }

        fn rs_with_image(&self, image: &str) -> &ReplicaSet {
            self.rss
                .iter()
                .find(|r| {
                    r.spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        == Some(image)
                })
                .expect("a replica set for the image")
        }

        fn revision_of_deployment(&self) -> Option<String> {
            self.d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION).cloned())
        }
    }

    fn controller_of_uid(p: &Pod) -> Option<&str> {
        crate::controllers::pod_util::controller_of(&p.metadata).map(|r| r.uid.as_str())
    }

    /// `kubectl rollout status`: Ok(true) when rolled out, Ok(false) while waiting, Err when
    /// the progress deadline was exceeded.
    fn rollout_done(d: &Deployment) -> Result<bool, String> {
        let st = d.status.clone().unwrap_or_default();
        let z = |v: Option<i32>| v.unwrap_or(0);
        if st.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
            return Ok(false);
        }
        if let Some(c) = find_condition(&st, PROGRESSING) {
            if c.reason.as_deref() == Some(TIMED_OUT) {
                return Err(format!(
                    "deployment {:?} exceeded its progress deadline",
                    name_of(&d.metadata)
                ));
            }
        }
        let want = desired_replicas(d);
        Ok(z(st.updated_replicas) >= want
            && z(st.replicas) <= z(st.updated_replicas)
            && z(st.available_replicas) >= z(st.updated_replicas))
    }

    fn condition_of(d: &Deployment, type_: &str) -> (String, String, String) {
        let st = d.status.clone().unwrap_or_default();
        let c = find_condition(&st, type_)
            .cloned()
            .unwrap_or_else(|| DeploymentCondition {
                type_: type_.into(),
                status: "missing".into(),
                ..Default::default()
            });
        (
            c.status,
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default(),
        )
    }

    fn ann(rs: &ReplicaSet, key: &str) -> Option<String> {
        annotation(rs, key).map(str::to_string)
    }

    fn one_and_one() -> DeploymentStrategy {
        rolling(IntOrString::Int(1), IntOrString::Int(1))
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 6),
            Ok((2, 1))
        );
        // Both resolve to 0 (1% of 2): one pod may be unavailable so the rollout can move.
        assert_eq!(
            resolve_fenceposts(Some(&pct("0%")), Some(&pct("1%")), 2),
            Ok((0, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(3)), Some(&IntOrString::Int(2)), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25")), None, 4),
            Err(DeploymentPlanError::NotAPercentage("25".into()))
        );
        assert!(matches!(
            resolve_fenceposts(Some(&pct("x%")), None, 4),
            Err(DeploymentPlanError::BadPercentage(_))
        ));
    }

    #[test]
    fn template_hash_is_stable_and_looks_like_upstream() {
        let a = template("nginx:1.26");
        let h = compute_hash(&a, None);
        assert_eq!(h, compute_hash(&a.clone(), None));
        assert!(h.len() >= 6 && h.len() <= 10, "{h}");
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        assert_ne!(h, compute_hash(&template("nginx:1.27"), None));
        assert_ne!(h, compute_hash(&a, Some(1)));
        assert_ne!(compute_hash(&a, Some(1)), compute_hash(&a, Some(2)));
    }

    #[test]
    fn templates_compare_without_the_hash_label_and_by_quantity_value() {
        let a = template("nginx:1.26");
        let mut b = a.clone();
        if let Some(l) = b.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert(POD_TEMPLATE_HASH_LABEL.into(), "5d7c8b9f4".into());
        }
        assert!(equal_ignore_hash(&a, &b));
        let with_cpu = |cpu: &str| {
            let mut t = a.clone();
            if let Some(c) = t.spec.as_mut().and_then(|s| s.containers.first_mut()) {
                c.resources = Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))])),
                    ..Default::default()
                });
            }
            t
        };
        assert!(equal_ignore_hash(&with_cpu("1"), &with_cpu("1000m")));
        assert!(!equal_ignore_hash(&with_cpu("1"), &with_cpu("500m")));
        // An empty annotation map is the same as none.
        let mut c = a.clone();
        if let Some(m) = c.metadata.as_mut() {
            m.annotations = Some(BTreeMap::new());
        }
        assert!(equal_ignore_hash(&a, &c));
        assert!(!equal_ignore_hash(&a, &template("nginx:1.27")));
    }

    #[test]
    fn new_deployment_of_six_rolls_out_from_nothing() {
        let d = deployment(6, "nginx:1.26", DeploymentStrategy::default());
        let mut c = Cluster::new(d);
        let hash = compute_hash(&template("nginx:1.26"), None);
        let rs_name = format!("web-{hash}");

        let first = c.sync_deployment();
        let created = first
            .iter()
            .find_map(|a| match a {
                DeploymentAction::CreateReplicaSet(rs) => Some(rs.clone()),
                _ => None,
            })
            .expect("creates a replica set");
        assert_eq!(name_of(&created.metadata), rs_name);
        let spec = created.spec.clone().unwrap_or_default();
        // Default strategy 25%/25%: surge 2 lets the new set start at the full 6.
        assert_eq!(spec.replicas, Some(6));
        let hash_label = |l: Option<&BTreeMap<String, String>>| {
            l.and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)).cloned()
        };
        assert_eq!(
            hash_label(created.metadata.labels.as_ref()),
            Some(hash.clone())
        );
        assert_eq!(
            hash_label(spec.selector.match_labels.as_ref()),
            Some(hash.clone())
        );
        assert_eq!(
            hash_label(
                spec.template
                    .as_ref()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
            ),
            Some(hash.clone())
        );
        let owner = controller_of(&created.metadata).expect("owned by the deployment");
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "d-uid")
        );
        assert_eq!(ann(&created, REVISION_ANNOTATION).as_deref(), Some("1"));
        assert_eq!(
            ann(&created, DESIRED_REPLICAS_ANNOTATION).as_deref(),
            Some("6")
        );
        assert_eq!(ann(&created, MAX_REPLICAS_ANNOTATION).as_deref(), Some("8"));
        assert!(c.events.contains(&format!(
            "Normal ScalingReplicaSet Scaled up replica set {rs_name} from 0 to 6"
        )));
        assert_eq!(c.revision_of_deployment().as_deref(), Some("1"));
        let (st, reason, msg) = condition_of(&c.d, PROGRESSING);
        assert_eq!((st.as_str(), reason.as_str()), ("True", NEW_RS_CREATED));
        assert_eq!(msg, format!("Created new replica set \"{rs_name}\""));
        assert_eq!(condition_of(&c.d, AVAILABLE).1, MIN_UNAVAILABLE);
        assert_eq!(rollout_done(&c.d), Ok(false));

        c.settle();
        let st = c.d.status.clone().unwrap_or_default();
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.ready_replicas,
                st.available_replicas
            ),
            (Some(6), Some(6), Some(6), Some(6))
        );
        assert_eq!(st.unavailable_replicas, None);
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(condition_of(&c.d, AVAILABLE).0, "True");
        let (st, reason, msg) = condition_of(&c.d, PROGRESSING);
        assert_eq!((st.as_str(), reason.as_str()), ("True", NEW_RS_AVAILABLE));
        assert_eq!(
            msg,
            format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
        );
        assert_eq!(c.ready_pods(), 6);
        assert_eq!(c.rss.len(), 1);
        // A settled deployment plans nothing at all.
        assert_eq!(c.plan(), Vec::new());
    }

    /// Settles `image` at 6 replicas with maxSurge=1, maxUnavailable=1.
    fn settled_six(image: &str) -> Cluster {
        let mut c = Cluster::new(deployment(6, image, one_and_one()));
        c.settle();
        c
    }

    /// Rolls the template to `image` step by step, asserting availability and surge bounds.
    fn roll_to(c: &mut Cluster, image: &str) {
        c.edit(|s| s.template = template(image));
        drive_rollout(c);
    }

    /// Syncs until `kubectl rollout status` would succeed; new pods become ready between
    /// steps, and at every point at least 5 of 6 pods serve and at most 7 exist.
    fn drive_rollout(c: &mut Cluster) {
        for _ in 0..40 {
            c.sync_deployment();
            c.sync_replicasets();
            assert!(
                c.ready_pods() >= 5,
                "availability dropped to {}",
                c.ready_pods()
            );
            assert!(
                c.active_pods() <= 7,
                "surge exceeded: {} pods",
                c.active_pods()
            );
            c.kubelet();
            c.sync_replicasets();
            c.sync_deployment();
            if rollout_done(&c.d) == Ok(true) {
                return;
            }
        }
        panic!("rollout did not finish: {:?}", c.d.status);
    }

    #[test]
    fn rolling_update_keeps_five_of_six_available() {
        let mut c = settled_six("nginx:1.26");
        let old_name = name_of(&c.rs_with_image("nginx:1.26").metadata).to_string();
        c.events.clear();

        // The first sync creates the new set with one surge pod and, because five old pods
        // may be enough, scales the old set down by one in the same pass.
        c.edit(|s| s.template = template("nginx:1.27"));
        let first = c.plan();
        assert!(matches!(&first[0], DeploymentAction::CreateReplicaSet(rs)
            if rs.spec.as_ref().and_then(|s| s.replicas) == Some(1)));
        assert!(first.contains(&DeploymentAction::Event {
            type_: "Normal".into(),
            reason: "ScalingReplicaSet".into(),
            message: format!("Scaled down replica set {old_name} from 6 to 5"),
        }));

        drive_rollout(&mut c);
        let new = c.rs_with_image("nginx:1.27").clone();
        let old = c.rs_with_image("nginx:1.26").clone();
        let new_name = name_of(&new.metadata).to_string();
        assert_eq!(spec_replicas(&new), 6);
        assert_eq!(spec_replicas(&old), 0);
        assert_eq!(ann(&new, REVISION_ANNOTATION).as_deref(), Some("2"));
        assert_eq!(ann(&old, REVISION_ANNOTATION).as_deref(), Some("1"));
        assert_eq!(c.revision_of_deployment().as_deref(), Some("2"));
        // One pod up, one pod down, alternating, as upstream steps with 1/1.
        let expected: Vec<String> = (0..6)
            .flat_map(|k| {
                [
                    format!(
                        "Normal ScalingReplicaSet Scaled up replica set {new_name} from {k} to {}",
                        k + 1
                    ),
                    format!(
                        "Normal ScalingReplicaSet Scaled down replica set {old_name} from {} to {}",
                        6 - k,
                        5 - k
                    ),
                ]
            })
            .collect();
        assert_eq!(c.events, expected);
        c.settle();
        let st = c.d.status.clone().unwrap_or_default();
        assert_eq!(
            (st.replicas, st.updated_replicas, st.available_replicas),
            (Some(6), Some(6), Some(6))
        );
        let (_, reason, msg) = condition_of(&c.d, PROGRESSING);
        assert_eq!(reason, NEW_RS_AVAILABLE);
        assert_eq!(
            msg,
            format!("ReplicaSet \"{new_name}\" has successfully progressed.")
        );
        assert_eq!(c.active_pods(), 6);
    }

    #[test]
    fn undo_reuses_the_old_replicaset_with_the_next_revision() {
        let mut c = settled_six("nginx:1.26");
        roll_to(&mut c, "nginx:1.27");
        c.settle();
        let v1 = name_of(&c.rs_with_image("nginx:1.26").metadata).to_string();

        // `kubectl rollout undo` writes the old template back into the deployment.
        c.edit(|s| s.template = template("nginx:1.26"));
        let plan = c.plan();
        assert!(!plan
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        assert!(matches!(&plan[0], DeploymentAction::UpdateReplicaSet(rs)
            if name_of(&rs.metadata) == v1
                && ann(rs, REVISION_ANNOTATION).as_deref() == Some("3")
                && ann(rs, REVISION_HISTORY_ANNOTATION).as_deref() == Some("1")));
        roll_to(&mut c, "nginx:1.26");
        c.settle();
        assert_eq!(c.rss.len(), 2);
        let back = c.rs_with_image("nginx:1.26");
        assert_eq!(name_of(&back.metadata), v1);
        assert_eq!(spec_replicas(back), 6);
        assert_eq!(spec_replicas(c.rs_with_image("nginx:1.27")), 0);
        assert_eq!(c.revision_of_deployment().as_deref(), Some("3"));
        assert_eq!(rollout_done(&c.d), Ok(true));
    }

    #[test]
    fn recreate_stops_every_old_pod_before_starting_new_ones() {
        let strategy = DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        };
        let mut c = Cluster::new(deployment(3, "nginx:1.26", strategy));
        c.settle();
        let old = name_of(&c.rs_with_image("nginx:1.26").metadata).to_string();
        c.edit(|s| s.template = template("nginx:1.27"));
        c.events.clear();

        let first = c.sync_deployment();
        assert!(!first
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        assert_eq!(
            c.events,
            [format!(
                "Normal ScalingReplicaSet Scaled down replica set {old} from 3 to 0"
            )]
        );
        c.sync_replicasets();
        // Old pods are terminating but still running: no new pods yet.
        let second = c.sync_deployment();
        assert!(!second
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        assert_eq!(c.pods.len(), 3);
        c.kubelet();
        assert!(c.pods.is_empty());
        let third = c.sync_deployment();
        let created = third.iter().find_map(|a| match a {
            DeploymentAction::CreateReplicaSet(rs) => Some(name_of(&rs.metadata).to_string()),
            _ => None,
        });
        let new = created.expect("new replica set once old pods are gone");
        assert!(c.events.contains(&format!(
            "Normal ScalingReplicaSet Scaled up replica set {new} from 0 to 3"
        )));
        c.settle();
        assert_eq!(c.ready_pods(), 3);
        assert_eq!(rollout_done(&c.d), Ok(true));
    }

    #[test]
    fn paused_deployment_scales_but_does_not_roll_out() {
        let mut c = settled_six("nginx:1.26");
        let old = name_of(&c.rs_with_image("nginx:1.26").metadata).to_string();
        c.edit(|s| {
            s.paused = Some(true);
            s.template = template("nginx:1.27");
        });
        let plan = c.sync_deployment();
        assert!(!plan
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        let (st, reason, msg) = condition_of(&c.d, PROGRESSING);
        assert_eq!(
            (st.as_str(), reason.as_str(), msg.as_str()),
            ("Unknown", PAUSED, "Deployment is paused")
        );
        // kubectl sees the new generation observed but nothing updated: not rolled out.
        assert_eq!(
            c.d.status.as_ref().and_then(|s| s.observed_generation),
            Some(2)
        );
        assert_eq!(rollout_done(&c.d), Ok(false));

        c.edit(|s| s.replicas = Some(8));
        c.events.clear();
        c.sync_deployment();
        assert_eq!(
            c.events,
            [format!(
                "Normal ScalingReplicaSet Scaled up replica set {old} from 6 to 8"
            )]
        );
        assert_eq!(
            ann(c.rs_with_image("nginx:1.26"), DESIRED_REPLICAS_ANNOTATION).as_deref(),
            Some("8")
        );
        for _ in 0..3 {
            c.sync_replicasets();
            c.kubelet();
            c.sync_deployment();
        }
        assert_eq!(c.ready_pods(), 8);
        assert_eq!(c.rss.len(), 1);

        c.edit(|s| s.paused = Some(false));
        let resumed = c.sync_deployment();
        assert!(resumed
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        c.settle();
        assert_eq!(spec_replicas(c.rs_with_image("nginx:1.27")), 8);
        assert_eq!(rollout_done(&c.d), Ok(true));
    }

    #[test]
    fn history_beyond_the_limit_is_deleted_oldest_first() {
        let mut c = settled_six("app:v1");
        c.edit(|s| s.revision_history_limit = Some(2));
        for v in 2..=5 {
            roll_to(&mut c, &format!("app:v{v}"));
            c.settle();
        }
        let mut revisions: Vec<String> = c
            .rss
            .iter()
            .filter_map(|r| ann(r, REVISION_ANNOTATION))
            .collect();
        revisions.sort();
        // The current revision 5 plus the two before it.
        assert_eq!(revisions, ["3", "4", "5"]);
        assert_eq!(spec_replicas(c.rs_with_image("app:v5")), 6);
        assert_eq!(c.revision_of_deployment().as_deref(), Some("5"));
    }

    #[test]
    fn scale_to_zero_and_back() {
        let mut c = settled_six("nginx:1.26");
        let name = name_of(&c.rs_with_image("nginx:1.26").metadata).to_string();
        c.events.clear();
        c.edit(|s| s.replicas = Some(0));
        c.settle();
        assert_eq!(
            c.events,
            [format!(
                "Normal ScalingReplicaSet Scaled down replica set {name} from 6 to 0"
            )]
        );
        assert!(c.pods.is_empty());
        let st = c.d.status.clone().unwrap_or_default();
        assert_eq!((st.replicas, st.available_replicas), (None, None));
        assert_eq!(condition_of(&c.d, AVAILABLE).0, "True");
        assert_eq!(rollout_done(&c.d), Ok(true));

        c.events.clear();
        c.edit(|s| s.replicas = Some(6));
        c.settle();
        assert_eq!(
            c.events,
            [format!(
                "Normal ScalingReplicaSet Scaled up replica set {name} from 0 to 6"
            )]
        );
        assert_eq!(c.ready_pods(), 6);
        assert_eq!(c.rss.len(), 1);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // Upstream's documented example: 10 replicas, maxSurge 3, maxUnavailable 2, a stuck
        // rollout with 8 old and 5 new pods; scaling to 15 adds 3 old and 2 new.
        let mut d = deployment(
            15,
            "app:v2",
            rolling(IntOrString::Int(3), IntOrString::Int(2)),
        );
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        let rs = |name: &str, image: &str, created: i64, replicas: i32, avail: i32| ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(t(created))),
                labels: Some(label_map(&[("app", "web")])),
                annotations: Some(label_map(&[
                    (DESIRED_REPLICAS_ANNOTATION, "10"),
                    (MAX_REPLICAS_ANNOTATION, "13"),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    uid: "d-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(label_map(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(template(image)),
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas,
                available_replicas: Some(avail),
                ..Default::default()
            }),
        };
        let rss = vec![
            rs("web-old", "app:v1", 0, 8, 8),
            rs("web-new", "app:v2", 10, 5, 0),
        ];
        let plan = plan_deployment(&d, &rss, &[] as &[Pod], t(100));
        let scaled: Vec<(String, i32, Option<String>)> = plan
            .iter()
            .filter_map(|a| match a {
                DeploymentAction::ScaleReplicaSet {
                    name,
                    replicas,
                    annotations,
                } => Some((
                    name.clone(),
                    *replicas,
                    annotations.get(MAX_REPLICAS_ANNOTATION).cloned(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            scaled,
            [
                ("web-old".to_string(), 11, Some("18".to_string())),
                ("web-new".to_string(), 7, Some("18".to_string()))
            ]
        );
        assert!(plan.contains(&DeploymentAction::Event {
            type_: "Normal".into(),
            reason: "ScalingReplicaSet".into(),
            message: "Scaled up replica set web-new from 5 to 7".into(),
        }));
    }

    #[test]
    fn a_stuck_rollout_exceeds_its_progress_deadline() {
        let mut c = settled_six("nginx:1.26");
        c.edit(|s| {
            s.progress_deadline_seconds = Some(60);
            s.template = template("nginx:broken");
        });
        c.sync_deployment();
        c.sync_replicasets();
        // The new pods never become ready. The next sync still sees progress (the new set
        // got its pod, an old one went), which restarts the 60s clock.
        c.clock += 10;
        c.sync_deployment();
        assert_eq!(condition_of(&c.d, PROGRESSING).1, RS_UPDATED);
        assert_eq!(
            progress_check_after(&c.d, c.now()),
            Some(chrono::Duration::seconds(60))
        );
        c.clock += 30;
        c.sync_deployment();
        assert_eq!(rollout_done(&c.d), Ok(false));
        assert_eq!(
            progress_check_after(&c.d, c.now()),
            Some(chrono::Duration::seconds(30))
        );
        c.clock += 31;
        c.sync_deployment();
        let new = name_of(&c.rs_with_image("nginx:broken").metadata).to_string();
        let (st, reason, msg) = condition_of(&c.d, PROGRESSING);
        assert_eq!((st.as_str(), reason.as_str()), ("False", TIMED_OUT));
        assert_eq!(
            msg,
            format!("ReplicaSet \"{new}\" has timed out progressing.")
        );
        assert!(rollout_done(&c.d).is_err());
        assert_eq!(progress_check_after(&c.d, c.now()), None);
        // Still at least 5 of the old pods serve.
        assert!(c.ready_pods() >= 5);
    }

    #[test]
    fn a_name_collision_bumps_collision_count() {
        let d = deployment(2, "nginx:1.26", one_and_one());
        let hash = compute_hash(&template("nginx:1.26"), None);
        let squatter = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{hash}")),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(template("other")),
                ..Default::default()
            }),
            status: None,
        };
        let plan = plan_deployment(&d, std::slice::from_ref(&squatter), &[] as &[Pod], t(0));
        assert!(!plan
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
        let status = plan.iter().find_map(|a| match a {
            DeploymentAction::UpdateStatus(s) => Some(s.clone()),
            _ => None,
        });
        assert_eq!(status.and_then(|s| s.collision_count), Some(1));

        let mut d2 = d.clone();
        d2.status = Some(DeploymentStatus {
            collision_count: Some(1),
            ..Default::default()
        });
        let plan = plan_deployment(&d2, &[squatter], &[] as &[Pod], t(1));
        let created = plan.iter().find_map(|a| match a {
            DeploymentAction::CreateReplicaSet(rs) => rs.metadata.name.clone(),
            _ => None,
        });
        assert_eq!(
            created,
            Some(format!(
                "web-{}",
                compute_hash(&template("nginx:1.26"), Some(1))
            ))
        );
    }

    #[test]
    fn an_empty_selector_is_refused() {
        let mut d = deployment(1, "nginx", one_and_one());
        if let Some(s) = d.spec.as_mut() {
            s.selector = LabelSelector::default();
        }
        let plan = plan_deployment(&d, &[], &[] as &[Pod], t(0));
        assert_eq!(
            plan[0],
            DeploymentAction::Event {
                type_: "Warning".into(),
                reason: "SelectingAll".into(),
                message: "This deployment is selecting all pods. A non-empty selector is required."
                    .into(),
            }
        );
        assert!(!plan
            .iter()
            .any(|a| matches!(a, DeploymentAction::CreateReplicaSet(_))));
    }

    #[test]
    fn deployment_annotations_are_copied_to_the_new_replicaset() {
        let mut d = deployment(1, "nginx", one_and_one());
        d.metadata.annotations = Some(label_map(&[
            ("kubernetes.io/change-cause", "kubectl set image"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            (REVISION_ANNOTATION, "7"),
        ]));
        let plan = plan_deployment(&d, &[], &[] as &[Pod], t(0));
        let rs = plan
            .iter()
            .find_map(|a| match a {
                DeploymentAction::CreateReplicaSet(rs) => Some(rs.clone()),
                _ => None,
            })
            .expect("creates");
        assert_eq!(
            ann(&rs, "kubernetes.io/change-cause").as_deref(),
            Some("kubectl set image")
        );
        assert_eq!(
            ann(&rs, "kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(ann(&rs, REVISION_ANNOTATION).as_deref(), Some("1"));
        let updated = plan.iter().find_map(|a| match a {
            DeploymentAction::UpdateDeploymentAnnotations(m) => m.get(REVISION_ANNOTATION).cloned(),
            _ => None,
        });
        assert_eq!(updated.as_deref(), Some("1"));
    }
}
