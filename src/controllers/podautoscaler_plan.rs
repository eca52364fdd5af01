//! The HorizontalPodAutoscaler controller's decisions, without I/O: from an HPA
//! (autoscaling/v2), its target's scale, the target's pods and their resource metrics,
//! how many replicas the target should have, why, and the status and events to report,
//! as kube-controller-manager's podautoscaler decides them:
//!
//! - per metric a replica proposal: usage over requests (`Utilization`) or over a per-pod
//!   value (`AverageValue`) for Resource metrics, with a tolerance of 0.1 around the target;
//!   pods that are being deleted or failed are ignored, pending and (for cpu) not yet ready
//!   pods and pods without metrics are counted conservatively (never towards a change of
//!   direction); the largest proposal wins;
//! - the proposal is stabilized (scale-down: the highest recommendation of the last
//!   5 minutes, or `behavior.scaleDown.stabilizationWindowSeconds`; scale-up:
//!   `behavior.scaleUp.stabilizationWindowSeconds`) and rate-limited (without `behavior`
//!   at most to max(2 × current, 4); with it by its policies), then kept within
//!   `minReplicas`..`maxReplicas`;
//! - the conditions AbleToScale, ScalingActive and ScalingLimited, `currentMetrics`, and
//!   the events (`SuccessfulRescale`, `FailedGetResourceMetric`, ...) in upstream wording.
//!
//! Pods, Object, External and ContainerResource metrics need APIs skiff does not serve
//! (custom and external metrics); they are reported as failing metrics, not ignored.
//!
//! The caller keeps one [`History`] per HPA (recommendations and past scale events, in
//! memory as upstream keeps them), fetches the scale and metrics, calls [`plan`], writes
//! the scale when [`Plan::rescale`], then calls [`Plan::rescaled`] or
//! [`Plan::rescale_failed`] and writes the status.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::apimachinery::quantity::parse_quantity;

/// How often each HPA is evaluated (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);
/// Usage within this fraction of the target changes nothing.
pub const TOLERANCE: f64 = 0.1;
/// The scale-down stabilization window when `behavior` names none.
pub const DEFAULT_DOWNSCALE_STABILIZATION_SECONDS: i64 = 300;
/// For this long after a pod starts its cpu samples may be from before it was ready.
pub const CPU_INITIALIZATION_PERIOD_SECONDS: i64 = 300;
/// A pod that turned unready within this long after starting never was ready.
pub const INITIAL_READINESS_DELAY_SECONDS: i64 = 30;
/// Without `behavior`, one sync scales up to at most max(FACTOR × current, MINIMUM).
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// What the target's scale subresource says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleView {
    pub spec_replicas: i32,
    pub status_replicas: i32,
    pub selector: Option<String>,
}

/// One pod's sample from `metrics.k8s.io`, summed over its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
    /// Resource name to usage in thousandths (millicores; bytes × 1000 for memory).
    pub milli: BTreeMap<String, i64>,
}

/// What the loop fetched from the metrics API: samples by pod name, or why it could not.
pub type Samples = Result<HashMap<String, PodSample>, String>;

/// Warning or Normal, with reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Per-HPA memory kept by the loop between syncs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Past recommendations (time, replicas).
    pub recommendations: Vec<(DateTime<Utc>, i32)>,
    /// Past rescales (time, replicas added / removed), kept only with `behavior`.
    pub scale_ups: Vec<(DateTime<Utc>, i32)>,
    pub scale_downs: Vec<(DateTime<Utc>, i32)>,
}

/// What one sync should do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write `desired` to the scale subresource.
    pub rescale: bool,
    pub current: i32,
    pub desired: i32,
    pub reason: String,
    pub status: HorizontalPodAutoscalerStatus,
    pub events: Vec<PlannedEvent>,
}

fn time(t: DateTime<Utc>) -> Time {
    Time(t)
}

/// Set a condition, keeping its transition time while its status does not change.
pub fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if value { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(time(now));
            }
            c.status = value.to_string();
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
        }
        None => conditions.push(HorizontalPodAutoscalerCondition {
            type_: type_.to_string(),
            status: value.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_transition_time: Some(time(now)),
        }),
    }
}

fn warning(reason: &str, message: impl Into<String>) -> PlannedEvent {
    PlannedEvent {
        warning: true,
        reason: reason.into(),
        message: message.into(),
    }
}

/// The plan when the scale subresource could not be read.
pub fn failed_get_scale(hpa: &HorizontalPodAutoscaler, error: &str, now: DateTime<Utc>) -> Plan {
    let mut status = hpa.status.clone().unwrap_or_default();
    let current = status.current_replicas.unwrap_or(0);
    set_condition(
        &mut status,
        "AbleToScale",
        false,
        "FailedGetScale",
        &format!("the HPA controller was unable to get the target's current scale: {error}"),
        now,
    );
    Plan {
        rescale: false,
        current,
        desired: status.desired_replicas,
        reason: String::new(),
        status,
        events: vec![warning("FailedGetScale", error)],
    }
}

impl Plan {
    /// The scale write succeeded.
    pub fn rescaled(&mut self, history: &mut History, behavior_set: bool, now: DateTime<Utc>) {
        set_condition(
            &mut self.status,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!(
                "the HPA controller was able to update the target scale to {}",
                self.desired
            ),
            now,
        );
        self.status.last_scale_time = Some(time(now));
        self.events.push(PlannedEvent {
            warning: false,
            reason: "SuccessfulRescale".into(),
            message: format!("New size: {}; reason: {}", self.desired, self.reason),
        });
        if behavior_set {
            let change = self.desired - self.current;
            if change > 0 {
                history.scale_ups.push((now, change));
            } else if change < 0 {
                history.scale_downs.push((now, -change));
            }
        }
    }

    /// The scale write failed: report it, and that the target keeps its size.
    pub fn rescale_failed(&mut self, error: &str, now: DateTime<Utc>) {
        self.events.push(warning(
            "FailedRescale",
            format!(
                "New size: {}; reason: {}; error: {error}",
                self.desired, self.reason
            ),
        ));
        set_condition(
            &mut self.status,
            "AbleToScale",
            false,
            "FailedUpdateScale",
            &format!("the HPA controller was unable to update the target scale: {error}"),
            now,
        );
        self.status.desired_replicas = self.current;
    }
}

/// Decide one sync of `hpa`. `pods` are the pods the scale's selector selects in the HPA's
/// namespace.
pub fn plan(
    hpa: &HorizontalPodAutoscaler,
    scale: &ScaleView,
    pods: &[Pod],
    samples: &Samples,
    history: &mut History,
    now: DateTime<Utc>,
) -> Plan {
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut status = hpa.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    set_condition(
        &mut status,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.spec_replicas;
    if history.recommendations.is_empty() {
        history.recommendations.push((now, current));
    }
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut metric_statuses: Option<Vec<MetricStatus>> = None;
    let mut reason = String::new();
    let desired;
    let mut rescale = true;
    if current == 0 && min != 0 {
        desired = 0;
        rescale = false;
        set_condition(
            &mut status,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let computed = compute_for_metrics(
            &spec.metrics.clone().unwrap_or_default(),
            scale,
            pods,
            samples,
            now,
            &mut status,
            &mut events,
        );
        metric_statuses = Some(computed.statuses);
        let Some((proposal, metric)) = computed.proposal else {
            status.current_replicas = Some(current);
            if let Some(e) = computed.error {
                events.push(warning("FailedComputeMetricsReplicas", e));
            }
            status.current_metrics = metric_statuses.filter(|m| !m.is_empty());
            status.observed_generation = hpa.metadata.generation;
            return Plan {
                rescale: false,
                current,
                desired: status.desired_replicas,
                reason,
                status,
                events,
            };
        };
        if proposal > current {
            reason = format!("{metric} above target");
        } else if proposal < current {
            reason = "All metrics below target".into();
        }
        desired = match &spec.behavior {
            None => normalize(&mut status, history, current, proposal, min, max, now),
            Some(b) => normalize_with_behavior(
                &mut status,
                history,
                b.scale_up.as_ref(),
                b.scale_down.as_ref(),
                current,
                proposal,
                min,
                max,
                now,
            ),
        };
        rescale = desired != current;
    }
    let desired = if rescale { desired } else { current };
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    if let Some(m) = metric_statuses {
        status.current_metrics = Some(m).filter(|m| !m.is_empty());
    }
    status.observed_generation = hpa.metadata.generation;
    Plan {
        rescale,
        current,
        desired,
        reason,
        status,
        events,
    }
}

struct Computed {
    /// The largest proposal and the metric behind it; `None` when no metric could be used
    /// (or one failed while the others would scale down).
    proposal: Option<(i32, String)>,
    statuses: Vec<MetricStatus>,
    error: Option<String>,
}

/// A metric that could not be used.
struct MetricFailure {
    /// Condition and event reason (`FailedGetResourceMetric`).
    reason: String,
    /// The event's message.
    event: String,
    /// The error with the metric's context, as the FailedComputeMetricsReplicas event
    /// shows it.
    wrapped: String,
}

impl MetricFailure {
    fn condition_message(&self) -> String {
        format!(
            "the HPA was unable to compute the replica count: {}",
            self.event
        )
    }
}

fn compute_for_metrics(
    metrics: &[MetricSpec],
    scale: &ScaleView,
    pods: &[Pod],
    samples: &Samples,
    now: DateTime<Utc>,
    status: &mut HorizontalPodAutoscalerStatus,
    events: &mut Vec<PlannedEvent>,
) -> Computed {
    let mut statuses = Vec::new();
    let mut best: Option<(i32, String)> = None;
    let mut failures: Vec<MetricFailure> = Vec::new();
    if scale.selector.as_deref().unwrap_or("").is_empty() {
        events.push(warning("SelectorRequired", "selector is required"));
        set_condition(
            status,
            "ScalingActive",
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector",
            now,
        );
        return Computed {
            proposal: None,
            statuses,
            error: Some("selector is required".into()),
        };
    }
    for m in metrics {
        match compute_for_metric(m, scale.spec_replicas, pods, samples, now) {
            Ok((replicas, name, st)) => {
                statuses.push(st);
                if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                    best = Some((replicas, name));
                }
            }
            Err(f) => {
                events.push(warning(&f.reason, f.event.clone()));
                failures.push(f);
            }
        }
    }
    let error = failures.first().map(|f| {
        format!(
            "invalid metrics ({} invalid out of {}), first error is: {}",
            failures.len(),
            metrics.len(),
            f.wrapped
        )
    });
    let all_failed = failures.len() >= metrics.len();
    let down_despite_failures =
        !failures.is_empty() && best.as_ref().is_some_and(|(r, _)| *r < scale.spec_replicas);
    if all_failed || down_despite_failures {
        if let Some(f) = failures.first() {
            set_condition(
                status,
                "ScalingActive",
                false,
                &f.reason,
                &f.condition_message(),
                now,
            );
        }
        return Computed {
            proposal: None,
            statuses,
            error,
        };
    }
    if let Some((_, name)) = &best {
        set_condition(
            status,
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {name}"),
            now,
        );
    }
    Computed {
        proposal: best,
        statuses,
        error,
    }
}

fn unsupported(reason: &str, what: &str, detail: String) -> MetricFailure {
    MetricFailure {
        reason: reason.into(),
        wrapped: format!("failed to get {what} metric value: {detail}"),
        event: detail,
    }
}

/// A Resource metric's target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Usage per pod, in thousandths.
    AverageValue(i64),
}

fn compute_for_metric(
    m: &MetricSpec,
    spec_replicas: i32,
    pods: &[Pod],
    samples: &Samples,
    now: DateTime<Utc>,
) -> Result<(i32, String, MetricStatus), MetricFailure> {
    match m.type_.as_str() {
        "Resource" => {
            let Some(source) = &m.resource else {
                return Err(unsupported(
                    "FailedGetResourceMetric",
                    "resource",
                    "the metric has no resource source".into(),
                ));
            };
            let res = source.name.as_str();
            let target = match (
                source.target.type_.as_str(),
                source.target.average_utilization,
                source.target.average_value.as_ref(),
            ) {
                ("Utilization", Some(u), _) if u > 0 => Some(Target::Utilization(u)),
                ("AverageValue", _, Some(v)) => parse_quantity(&v.0)
                    .ok()
                    .map(|q| Target::AverageValue(q.milli_value()))
                    .filter(|t| !matches!(t, Target::AverageValue(0))),
                _ => None,
            };
            let what = match target {
                Some(Target::AverageValue(_)) => "usage",
                _ => "utilization",
            };
            let fail = |e: String| {
                let event = format!("failed to get {res} {what}: {e}");
                MetricFailure {
                    reason: "FailedGetResourceMetric".into(),
                    wrapped: format!("failed to get {res} resource metric value: {event}"),
                    event,
                }
            };
            let target = target.ok_or_else(|| {
                fail(format!(
                    "invalid resource metric target type {:?}",
                    source.target.type_
                ))
            })?;
            let r =
                resource_replicas(res, target, spec_replicas, pods, samples, now).map_err(fail)?;
            let milli = |v: i64| {
                KubeQuantity(
                    crate::apimachinery::quantity::Quantity {
                        nano: i128::from(v) * 1_000_000,
                        format: crate::apimachinery::quantity::QuantityFormat::DecimalSI,
                    }
                    .canonical(),
                )
            };
            let (name, current) = match target {
                Target::Utilization(_) => (
                    format!("{res} resource utilization (percentage of request)"),
                    MetricValueStatus {
                        average_utilization: r.utilization,
                        average_value: Some(milli(r.average_milli)),
                        value: None,
                    },
                ),
                Target::AverageValue(_) => (
                    format!("{res} resource"),
                    MetricValueStatus {
                        average_utilization: None,
                        average_value: Some(milli(r.average_milli)),
                        value: None,
                    },
                ),
            };
            let status = MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: res.to_string(),
                    current,
                }),
                ..Default::default()
            };
            Ok((r.replicas, name, status))
        }
        "Pods" => {
            let name = m
                .pods
                .as_ref()
                .map(|p| p.metric.name.clone())
                .unwrap_or_default();
            Err(unsupported(
                "FailedGetPodsMetric",
                "pods",
                format!("unable to get metric {name}: the custom metrics API (custom.metrics.k8s.io) is not served by skiff"),
            ))
        }
        "Object" => {
            let name = m
                .object
                .as_ref()
                .map(|p| p.metric.name.clone())
                .unwrap_or_default();
            Err(unsupported(
                "FailedGetObjectMetric",
                "object",
                format!("unable to get metric {name}: the custom metrics API (custom.metrics.k8s.io) is not served by skiff"),
            ))
        }
        "External" => {
            let name = m
                .external
                .as_ref()
                .map(|p| p.metric.name.clone())
                .unwrap_or_default();
            Err(unsupported(
                "FailedGetExternalMetric",
                "external",
                format!("unable to get external metric {name}: the external metrics API (external.metrics.k8s.io) is not served by skiff"),
            ))
        }
        "ContainerResource" => Err(unsupported(
            "FailedGetContainerResourceMetric",
            "container resource",
            "per-container resource metrics are not supported by skiff yet".into(),
        )),
        other => Err(MetricFailure {
            reason: "InvalidMetricSourceType".into(),
            event: format!("unknown metric source type {other:?}"),
            wrapped: format!("invalid metric source type: unknown metric source type {other:?}"),
        }),
    }
}

/// The outcome of one Resource metric.
#[derive(Debug, Clone, PartialEq)]
struct ResourceOutcome {
    replicas: i32,
    utilization: Option<i32>,
    /// Mean usage per pod with a sample, in thousandths.
    average_milli: i64,
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Requests of `res` per pod, in thousandths; a container without one is an error.
fn pod_requests(pods: &[Pod], res: &str) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    for p in pods {
        let mut total = 0i64;
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(res))
                .and_then(|q| parse_quantity(&q.0).ok());
            match request {
                Some(q) => total += q.milli_value(),
                None => {
                    return Err(format!(
                        "missing request for {res} in container {} of Pod {}",
                        c.name,
                        pod_name(p)
                    ))
                }
            }
        }
        out.insert(pod_name(p).to_string(), total);
    }
    Ok(out)
}

/// Whether a pod's cpu sample may predate its readiness (kube's cpu initialization rules).
fn cpu_unready(p: &Pod, sample: &PodSample, now: DateTime<Utc>) -> bool {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let is_ready = ready.status == "True";
    let Some(transition) = ready.last_transition_time.as_ref().map(|t| t.0) else {
        return !is_ready;
    };
    if start + Duration::seconds(CPU_INITIALIZATION_PERIOD_SECONDS) > now {
        !is_ready || sample.timestamp < transition + sample.window
    } else {
        !is_ready && transition < start + Duration::seconds(INITIAL_READINESS_DELAY_SECONDS)
    }
}

/// The ratio of usage to target over the pods in `usage`: (ratio, utilization percent,
/// mean usage).
fn usage_ratio(
    usage: &HashMap<String, i64>,
    requests: &HashMap<String, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, u) in usage {
                if let Some(r) = requests.get(pod) {
                    used += u;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 || n == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (used.saturating_mul(100) / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(t),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(t) => {
            let n = usage.len() as i64;
            if n == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let mean = usage.values().sum::<i64>() / n;
            Ok((mean as f64 / t as f64, None, mean))
        }
    }
}

fn within_tolerance(ratio: f64) -> bool {
    (1.0 - ratio).abs() <= TOLERANCE
}

fn resource_replicas(
    res: &str,
    target: Target,
    current: i32,
    pods: &[Pod],
    samples: &Samples,
    now: DateTime<Utc>,
) -> Result<ResourceOutcome, String> {
    let samples = samples
        .as_ref()
        .map_err(|e| format!("unable to get metrics for resource {res}: {e}"))?;
    let mut usage: HashMap<String, i64> = samples
        .iter()
        .filter_map(|(pod, s)| s.milli.get(res).map(|v| (pod.clone(), *v)))
        .collect();
    if usage.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {res}: no metrics returned from resource metrics API"
        ));
    }
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut ready_count = 0i64;
    let mut unready: HashSet<String> = HashSet::new();
    let mut missing: HashSet<String> = HashSet::new();
    let mut ignored: HashSet<String> = HashSet::new();
    for p in pods {
        let name = pod_name(p).to_string();
        if p.metadata.deletion_timestamp.is_some() || phase(p) == "Failed" {
            ignored.insert(name);
            continue;
        }
        if phase(p) == "Pending" {
            unready.insert(name);
            continue;
        }
        let Some(sample) = samples.get(&name).filter(|s| s.milli.contains_key(res)) else {
            missing.insert(name);
            continue;
        };
        if res == "cpu" && cpu_unready(p, sample, now) {
            unready.insert(name);
            continue;
        }
        ready_count += 1;
    }
    let known: HashSet<&str> = pods.iter().map(pod_name).collect();
    usage.retain(|pod, _| {
        known.contains(pod.as_str()) && !ignored.contains(pod) && !unready.contains(pod)
    });
    let requests = match target {
        Target::Utilization(_) => pod_requests(pods, res)?,
        Target::AverageValue(_) => HashMap::new(),
    };
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, utilization, average_milli) = usage_ratio(&usage, &requests, target)?;
    let outcome = |replicas| ResourceOutcome {
        replicas,
        utilization,
        average_milli,
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if within_tolerance(ratio) {
            return Ok(outcome(current));
        }
        return Ok(outcome((ratio * ready_count as f64).ceil() as i32));
    }
    // Count the pods without samples conservatively: as using their full request (or the
    // target, whichever is less) when scaling down, nothing when scaling up.
    for pod in &missing {
        let assumed = if ratio < 1.0 {
            match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        if ratio != 1.0 {
            usage.insert(pod.clone(), assumed);
        }
    }
    if scale_up_with_unready {
        for pod in &unready {
            usage.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = usage_ratio(&usage, &requests, target)?;
    if within_tolerance(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(outcome(current));
    }
    let replicas = (new_ratio * usage.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(outcome(current));
    }
    Ok(outcome(replicas))
}

const READY_FOR_NEW_SCALE: (&str, &str) =
    ("ReadyForNewScale", "recommended size matches current size");
const SCALE_DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const SCALE_UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);

/// Without `behavior`: the highest recommendation of the default window, then at most
/// max(2 × current, 4), within min..max.
fn normalize(
    status: &mut HorizontalPodAutoscalerStatus,
    history: &mut History,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    now: DateTime<Utc>,
) -> i32 {
    let cutoff = now - Duration::seconds(DEFAULT_DOWNSCALE_STABILIZATION_SECONDS);
    let stabilized = history
        .recommendations
        .iter()
        .filter(|(t, _)| *t > cutoff)
        .map(|(_, r)| *r)
        .fold(proposal, i32::max);
    history.recommendations.retain(|(t, _)| *t > cutoff);
    history.recommendations.push((now, proposal));
    let (reason, message) = if stabilized != proposal {
        SCALE_DOWN_STABILIZED
    } else {
        READY_FOR_NEW_SCALE
    };
    set_condition(status, "AbleToScale", true, reason, message, now);
    let scale_up_limit =
        (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (max_allowed, upper) = if max > scale_up_limit {
        (scale_up_limit, SCALE_UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (desired, (reason, message)) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > max_allowed {
        (max_allowed, upper)
    } else {
        (stabilized, WITHIN_RANGE)
    };
    set_condition(
        status,
        "ScalingLimited",
        desired != stabilized,
        reason,
        message,
        now,
    );
    desired
}

fn default_scale_up() -> HPAScalingRules {
    serde_json::from_value(serde_json::json!({
        "stabilizationWindowSeconds": 0, "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}],
    }))
    .unwrap_or_default()
}

fn default_scale_down() -> HPAScalingRules {
    serde_json::from_value(serde_json::json!({
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }))
    .unwrap_or_default()
}

/// Replicas changed by the events within `period_seconds` before `now`.
fn changed_within(events: &[(DateTime<Utc>, i32)], period_seconds: i32, now: DateTime<Utc>) -> i32 {
    let cutoff = now - Duration::seconds(i64::from(period_seconds));
    events
        .iter()
        .filter(|(t, _)| *t > cutoff)
        .map(|(_, n)| *n)
        .sum()
}

fn scale_up_limit(
    current: i32,
    events: &[(DateTime<Utc>, i32)],
    rules: &HPAScalingRules,
    now: DateTime<Utc>,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let mut result: Option<i32> = None;
    for p in rules.policies.iter().flatten() {
        let start = current - changed_within(events, p.period_seconds, now);
        let proposed = match p.type_.as_str() {
            "Pods" => start + p.value,
            _ => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
        };
        result = Some(match (result, select) {
            (None, _) => proposed,
            (Some(r), "Min") => r.min(proposed),
            (Some(r), _) => r.max(proposed),
        });
    }
    result.unwrap_or(current)
}

fn scale_down_limit(
    current: i32,
    events: &[(DateTime<Utc>, i32)],
    rules: &HPAScalingRules,
    now: DateTime<Utc>,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let mut result: Option<i32> = None;
    for p in rules.policies.iter().flatten() {
        let start = current + changed_within(events, p.period_seconds, now);
        let proposed = match p.type_.as_str() {
            "Pods" => start - p.value,
            _ => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        // The policy allowing the largest change ("Max") leaves the fewest replicas.
        result = Some(match (result, select) {
            (None, _) => proposed,
            (Some(r), "Min") => r.max(proposed),
            (Some(r), _) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

/// With `behavior`: stabilization windows for both directions, then the policies' rates,
/// within min..max.
#[allow(clippy::too_many_arguments)]
fn normalize_with_behavior(
    status: &mut HorizontalPodAutoscalerStatus,
    history: &mut History,
    up: Option<&HPAScalingRules>,
    down: Option<&HPAScalingRules>,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    now: DateTime<Utc>,
) -> i32 {
    let up = up.cloned().unwrap_or_else(default_scale_up);
    let down = down.cloned().unwrap_or_else(default_scale_down);
    let up_window = i64::from(up.stabilization_window_seconds.unwrap_or(0));
    let down_window = down
        .stabilization_window_seconds
        .map(i64::from)
        .unwrap_or(DEFAULT_DOWNSCALE_STABILIZATION_SECONDS);
    let up_cutoff = now - Duration::seconds(up_window);
    let down_cutoff = now - Duration::seconds(down_window);
    let (mut up_rec, mut down_rec) = (proposal, proposal);
    for (t, r) in &history.recommendations {
        if *t > up_cutoff {
            up_rec = up_rec.min(*r);
        }
        if *t > down_cutoff {
            down_rec = down_rec.max(*r);
        }
    }
    let mut stabilized = current;
    let mut why = READY_FOR_NEW_SCALE;
    if stabilized < up_rec {
        stabilized = up_rec;
        why = SCALE_UP_STABILIZED;
    }
    if stabilized > down_rec {
        stabilized = down_rec;
        why = SCALE_DOWN_STABILIZED;
    }
    let keep = now - Duration::seconds(up_window.max(down_window));
    history.recommendations.retain(|(t, _)| *t > keep);
    history.recommendations.push((now, proposal));
    let (reason, message) = if stabilized != proposal {
        why
    } else {
        READY_FOR_NEW_SCALE
    };
    set_condition(status, "AbleToScale", true, reason, message, now);

    let events_cutoff = now - Duration::seconds(1800);
    history.scale_ups.retain(|(t, _)| *t > events_cutoff);
    history.scale_downs.retain(|(t, _)| *t > events_cutoff);
    let (desired, (reason, message)) = if stabilized > current {
        let limit = scale_up_limit(current, &history.scale_ups, &up, now).max(current);
        let (allowed, why) = if max > limit {
            (limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, &history.scale_downs, &down, now).min(current);
        let (allowed, why) = if min < limit {
            (limit, SCALE_DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else {
        (stabilized, WITHIN_RANGE)
    };
    set_condition(
        status,
        "ScalingLimited",
        desired != stabilized,
        reason,
        message,
        now,
    );
    desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hpa(
        min: i32,
        max: i32,
        target: i32,
        behavior: serde_json::Value,
    ) -> HorizontalPodAutoscaler {
        let mut spec = json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}],
        });
        if !behavior.is_null() {
            spec["behavior"] = behavior;
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec})).unwrap()
    }

    /// A running pod started `age` seconds ago, ready since then, with a cpu request.
    fn pod(name: &str, request: Option<&str>, phase: &str, age: i64) -> Pod {
        let started = now() - Duration::seconds(age);
        let resources = match request {
            Some(r) => json!({"requests": {"cpu": r}}),
            None => json!({}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "resources": resources}]},
            "status": {"phase": phase, "startTime": started,
                       "conditions": [{"type": "Ready", "status": if phase == "Running" { "True" } else { "False" }, "lastTransitionTime": started}]},
        }))
        .unwrap()
    }

    fn samples(usage: &[(&str, i64)]) -> Samples {
        Ok(usage
            .iter()
            .map(|(p, milli)| {
                (
                    p.to_string(),
                    PodSample {
                        timestamp: now() - Duration::seconds(1),
                        window: Duration::seconds(1),
                        milli: BTreeMap::from([("cpu".to_string(), *milli)]),
                    },
                )
            })
            .collect())
    }

    fn scale(replicas: i32) -> ScaleView {
        ScaleView {
            spec_replicas: replicas,
            status_replicas: replicas,
            selector: Some("app=web".into()),
        }
    }

    fn condition(p: &Plan, t: &str) -> (String, String, String) {
        let c = p
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition in {:?}", p.status));
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    }

    #[test]
    fn high_cpu_scales_up_limited_to_the_default_rate() {
        let h = hpa(1, 5, 50, json!(null));
        let pods = [pod("p0", Some("100m"), "Running", 600)];
        let mut history = History::default();
        let p = plan(
            &h,
            &scale(1),
            &pods,
            &samples(&[("p0", 300)]),
            &mut history,
            now(),
        );
        assert!(p.rescale);
        assert_eq!((p.current, p.desired), (1, 4));
        assert_eq!(
            p.reason,
            "cpu resource utilization (percentage of request) above target"
        );
        let m = &p.status.current_metrics.as_ref().unwrap()[0];
        let current = &m.resource.as_ref().unwrap().current;
        assert_eq!(current.average_utilization, Some(300));
        assert_eq!(current.average_value.as_ref().unwrap().0, "300m");
        assert_eq!(condition(&p, "ScalingLimited").1, "ScaleUpLimit");
        assert_eq!(condition(&p, "ScalingActive").1, "ValidMetricFound");
        assert_eq!(p.status.desired_replicas, 4);

        let mut p = p;
        p.rescaled(&mut history, false, now());
        assert_eq!(
            p.events.last().unwrap().message,
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        );
        assert_eq!(condition(&p, "AbleToScale").1, "SucceededRescale");
        assert!(p.status.last_scale_time.is_some());
    }

    #[test]
    fn max_replicas_caps_and_says_so() {
        let h = hpa(1, 5, 50, json!(null));
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let usage = samples(&[("p0", 300), ("p1", 20), ("p2", 20), ("p3", 20)]);
        let p = plan(&h, &scale(4), &pods, &usage, &mut History::default(), now());
        // 360m of 400m requested: 90% of 50% → ceil(1.8 × 4) = 8, capped at 5.
        assert_eq!(p.desired, 5);
        assert_eq!(condition(&p, "ScalingLimited").1, "TooManyReplicas");
        assert_eq!(
            p.status.current_metrics.as_ref().unwrap()[0]
                .resource
                .as_ref()
                .unwrap()
                .current
                .average_utilization,
            Some(90)
        );
    }

    #[test]
    fn usage_within_tolerance_changes_nothing() {
        let h = hpa(1, 5, 50, json!(null));
        let pods = [
            pod("p0", Some("100m"), "Running", 600),
            pod("p1", Some("100m"), "Running", 600),
        ];
        let p = plan(
            &h,
            &scale(2),
            &pods,
            &samples(&[("p0", 54), ("p1", 50)]),
            &mut History::default(),
            now(),
        );
        assert!(!p.rescale);
        assert_eq!(p.desired, 2);
        assert_eq!(condition(&p, "AbleToScale").1, "ReadyForNewScale");
        assert_eq!(condition(&p, "ScalingLimited").0, "False");
        assert_eq!(condition(&p, "ScalingLimited").1, "DesiredWithinRange");
    }

    #[test]
    fn missing_request_disables_scaling_with_upstream_messages() {
        let h = hpa(1, 5, 50, json!(null));
        let pods = [pod("p0", None, "Running", 600)];
        let p = plan(
            &h,
            &scale(1),
            &pods,
            &samples(&[("p0", 300)]),
            &mut History::default(),
            now(),
        );
        assert!(!p.rescale);
        let (status, reason, message) = condition(&p, "ScalingActive");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedGetResourceMetric")
        );
        assert_eq!(
            message,
            "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod p0"
        );
        let reasons: Vec<_> = p.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
        );
        assert_eq!(
            p.events[1].message,
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: missing request for cpu in container app of Pod p0"
        );
        assert_eq!(p.status.current_replicas, Some(1));
    }

    #[test]
    fn no_metrics_yet_is_reported() {
        let h = hpa(1, 5, 50, json!(null));
        let pods = [pod("p0", Some("100m"), "Running", 600)];
        let p = plan(
            &h,
            &scale(1),
            &pods,
            &samples(&[]),
            &mut History::default(),
            now(),
        );
        assert!(!p.rescale);
        assert!(condition(&p, "ScalingActive")
            .2
            .ends_with("no metrics returned from resource metrics API"));
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let h = hpa(1, 5, 50, json!(null));
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let idle = samples(&[("p0", 1), ("p1", 1), ("p2", 1), ("p3", 1)]);
        let mut history = History {
            recommendations: vec![(now() - Duration::seconds(60), 4)],
            ..Default::default()
        };
        let p = plan(&h, &scale(4), &pods, &idle, &mut history, now());
        assert!(!p.rescale);
        assert_eq!(condition(&p, "AbleToScale").1, "ScaleDownStabilized");
        // Five minutes after the last high recommendation, it goes down.
        let later = now() + Duration::seconds(300);
        let p = plan(&h, &scale(4), &pods, &idle, &mut history, later);
        assert!(p.rescale);
        assert_eq!(p.desired, 1);
        assert_eq!(p.reason, "All metrics below target");
    }

    #[test]
    fn pending_pods_count_as_idle_when_scaling_up() {
        let pods = [
            pod("p0", Some("100m"), "Running", 600),
            pod("p1", Some("100m"), "Pending", 1),
        ];
        let r = resource_replicas(
            "cpu",
            Target::Utilization(50),
            2,
            &pods,
            &samples(&[("p0", 300)]),
            now(),
        )
        .unwrap();
        // 300m over 200m requested = 150% of 50% → 3 × 2 pods; the reported utilization
        // is that of the ready pods.
        assert_eq!(r.replicas, 6);
        assert_eq!(r.utilization, Some(300));
    }

    #[test]
    fn fresh_pods_whose_samples_predate_readiness_are_not_trusted() {
        let h = hpa(1, 10, 50, json!(null));
        // Started (and ready) 0.5 s ago; its 1 s window reaches back before readiness.
        let young = pod("p1", Some("100m"), "Running", 0);
        let pods = [pod("p0", Some("100m"), "Running", 600), young];
        let p = plan(
            &h,
            &scale(2),
            &pods,
            &samples(&[("p0", 100), ("p1", 100)]),
            &mut History::default(),
            now(),
        );
        // p0 alone: 100% of 50% → ratio 2; p1 counts as idle → 100m/200m = 50% → no change.
        assert!(!p.rescale);
    }

    #[test]
    fn missing_samples_count_as_full_use_when_scaling_down() {
        let h = hpa(1, 10, 50, json!(null));
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let usage = samples(&[("p0", 10), ("p1", 10), ("p2", 10)]);
        let mut history = History {
            recommendations: vec![(now() - Duration::seconds(400), 4)],
            ..Default::default()
        };
        let p = plan(&h, &scale(4), &pods, &usage, &mut history, now());
        // 30m + 100m (assumed) of 400m = 32.5% of 50% → ceil(0.65 × 4) = 3.
        assert_eq!(p.desired, 3);
    }

    #[test]
    fn replicas_outside_the_bounds_are_brought_back() {
        let h = hpa(2, 5, 50, json!(null));
        let pods = [pod("p0", Some("100m"), "Running", 600)];
        let p = plan(
            &h,
            &scale(7),
            &pods,
            &samples(&[("p0", 10)]),
            &mut History::default(),
            now(),
        );
        assert_eq!(
            (p.desired, p.reason.as_str()),
            (5, "Current number of replicas above Spec.MaxReplicas")
        );
        let p = plan(
            &h,
            &scale(1),
            &pods,
            &samples(&[("p0", 10)]),
            &mut History::default(),
            now(),
        );
        assert_eq!(
            (p.desired, p.reason.as_str()),
            (2, "Current number of replicas below Spec.MinReplicas")
        );
    }

    #[test]
    fn zero_replicas_disable_scaling() {
        let h = hpa(1, 5, 50, json!(null));
        let p = plan(
            &h,
            &scale(0),
            &[],
            &samples(&[]),
            &mut History::default(),
            now(),
        );
        assert!(!p.rescale);
        assert_eq!(condition(&p, "ScalingActive").1, "ScalingDisabled");
    }

    #[test]
    fn behavior_policies_limit_the_rate() {
        let behavior = json!({
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                          "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
        });
        let h = hpa(1, 10, 50, behavior);
        let pods: Vec<Pod> = (0..2)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let hot = samples(&[("p0", 150), ("p1", 150)]);
        let mut history = History::default();
        let mut p = plan(&h, &scale(2), &pods, &hot, &mut history, now());
        assert_eq!(p.desired, 3);
        assert_eq!(condition(&p, "ScalingLimited").1, "ScaleUpLimit");
        p.rescaled(&mut history, true, now());
        // Within the policy's minute the one pod already added uses up the allowance.
        let soon = now() + Duration::seconds(15);
        let pods3: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let hot3 = samples(&[("p0", 150), ("p1", 150), ("p2", 150)]);
        let p = plan(&h, &scale(3), &pods3, &hot3, &mut history, soon);
        assert!(!p.rescale);
        // Scale-down without a window: at most half the pods per minute.
        let pods4: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), Some("100m"), "Running", 600))
            .collect();
        let idle = samples(&[("p0", 1), ("p1", 1), ("p2", 1), ("p3", 1)]);
        let p = plan(&h, &scale(4), &pods4, &idle, &mut History::default(), now());
        assert_eq!(p.desired, 2);
        assert_eq!(condition(&p, "ScalingLimited").1, "ScaleDownLimit");
    }

    #[test]
    fn custom_metrics_are_reported_as_unavailable() {
        let mut h = hpa(1, 5, 50, json!(null));
        h.spec.as_mut().unwrap().metrics = Some(vec![serde_json::from_value(json!({
            "type": "Pods",
            "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
        }))
        .unwrap()]);
        let pods = [pod("p0", Some("100m"), "Running", 600)];
        let p = plan(
            &h,
            &scale(1),
            &pods,
            &samples(&[("p0", 1)]),
            &mut History::default(),
            now(),
        );
        assert!(!p.rescale);
        let (status, reason, message) = condition(&p, "ScalingActive");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "FailedGetPodsMetric")
        );
        assert!(message.contains("custom.metrics.k8s.io"), "{message}");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut status = HorizontalPodAutoscalerStatus::default();
        set_condition(&mut status, "AbleToScale", true, "A", "a", now());
        set_condition(
            &mut status,
            "AbleToScale",
            true,
            "B",
            "b",
            now() + Duration::seconds(5),
        );
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time, Some(Time(now())));
        assert_eq!(c.reason.as_deref(), Some("B"));
        set_condition(
            &mut status,
            "AbleToScale",
            false,
            "C",
            "c",
            now() + Duration::seconds(9),
        );
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            c.last_transition_time,
            Some(Time(now() + Duration::seconds(9)))
        );
    }
}
