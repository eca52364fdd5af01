//! Conversion between the served version of a resource and its stored version, for
//! resources served at more than one version (autoscaling/v1 HorizontalPodAutoscalers are
//! stored as autoscaling/v2, as kube-apiserver does).

use serde_json::{json, Map, Value};

use super::resources::ResourceInfo;

/// Whether objects of `r` are stored at another version.
pub fn needs_conversion(r: &ResourceInfo) -> bool {
    r.version != r.storage_version
}

/// The served form of a stored object.
pub fn from_storage(r: &ResourceInfo, stored: &Value) -> Value {
    match (r.group, r.kind, r.version) {
        ("autoscaling", "HorizontalPodAutoscaler", "v1") => hpa_v2_to_v1(stored),
        _ => stored.clone(),
    }
}

/// The stored form of a served object; `current` (stored) keeps what the served version
/// cannot express (other metrics, behavior).
pub fn to_storage(r: &ResourceInfo, served: &Value, current: Option<&Value>) -> Value {
    match (r.group, r.kind, r.version) {
        ("autoscaling", "HorizontalPodAutoscaler", "v1") => hpa_v1_to_v2(served, current),
        _ => served.clone(),
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m["resource"]["name"] == "cpu"
        && m["resource"]["target"]["type"] == "Utilization"
}

fn copy_fields(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for f in fields {
        if let Some(v) = from.get(*f) {
            to.insert((*f).to_string(), v.clone());
        }
    }
}

/// Status fields both HPA versions spell the same way.
const HPA_STATUS_COMMON: &[&str] = &[
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];

/// An HPA of `api_version` with the metadata of `from` and the given spec.
fn hpa(api_version: &str, from: &Value, spec: Map<String, Value>) -> Value {
    json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": api_version,
        "metadata": from.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": spec,
    })
}

fn hpa_v2_to_v1(v2: &Value) -> Value {
    let mut spec = Map::new();
    copy_fields(
        &v2["spec"],
        &mut spec,
        &["scaleTargetRef", "minReplicas", "maxReplicas"],
    );
    if let Some(u) = v2["spec"]["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| is_cpu_utilization(m)))
        .and_then(|m| m["resource"]["target"]["averageUtilization"].as_i64())
    {
        spec.insert("targetCPUUtilizationPercentage".into(), json!(u));
    }
    let mut out = hpa("autoscaling/v1", v2, spec);
    if let Some(st) = v2.get("status").filter(|s| s.is_object()) {
        let mut status = Map::new();
        copy_fields(st, &mut status, HPA_STATUS_COMMON);
        if let Some(u) = st["currentMetrics"].as_array().and_then(|ms| {
            ms.iter()
                .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
        }) {
            status.insert("currentCPUUtilizationPercentage".into(), json!(u));
        }
        status.entry("desiredReplicas").or_insert(json!(0));
        out["status"] = Value::Object(status);
    }
    out
}

fn hpa_v1_to_v2(v1: &Value, current: Option<&Value>) -> Value {
    let mut spec = Map::new();
    copy_fields(
        &v1["spec"],
        &mut spec,
        &["scaleTargetRef", "minReplicas", "maxReplicas"],
    );
    // Metrics v1 cannot express survive a v1 write.
    let mut metrics: Vec<Value> = current
        .and_then(|c| c["spec"]["metrics"].as_array())
        .map(|ms| {
            ms.iter()
                .filter(|m| !is_cpu_utilization(m))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(u) = v1["spec"]["targetCPUUtilizationPercentage"].as_i64() {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}}}),
        );
    }
    if !metrics.is_empty() {
        spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = current.and_then(|c| c["spec"].get("behavior")) {
        spec.insert("behavior".into(), b.clone());
    }
    let mut out = hpa("autoscaling/v2", v1, spec);
    if let Some(st) = v1.get("status").filter(|s| s.is_object()) {
        let mut status = Map::new();
        copy_fields(st, &mut status, HPA_STATUS_COMMON);
        if let Some(u) = st["currentCPUUtilizationPercentage"].as_i64() {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}]),
            );
        }
        if let Some(c) = current.and_then(|c| c["status"].get("conditions")) {
            status.insert("conditions".into(), c.clone());
        }
        out["status"] = Value::Object(status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::resources::find;

    #[test]
    fn hpa_round_trips_between_v1_and_v2() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let served = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}
        });
        let stored = to_storage(v1, &served, None);
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(from_storage(v1, &stored), served);
    }

    #[test]
    fn a_v1_write_keeps_what_v1_cannot_say() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let current = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}
        ], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        let served = json!({"spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 80}});
        let stored = to_storage(v1, &served, Some(&current));
        let metrics = stored["spec"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 80);
        assert_eq!(metrics[1]["resource"]["name"], "memory");
        assert_eq!(
            stored["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
    }
}
