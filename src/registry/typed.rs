//! Typed round trips: an object's JSON goes through its `k8s-openapi` type and back, which
//! checks field types and drops (and reports) fields the kind does not have.

use k8s_openapi::api;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// The outcome of a round trip: the canonical JSON and the paths of unknown fields.
pub struct Typed {
    pub value: Value,
    pub unknown_fields: Vec<String>,
}

fn through<T: DeserializeOwned + Serialize>(input: &Value) -> Result<Typed, String> {
    // Deserializing from a borrowed Value: no copy of the input.
    let typed = T::deserialize(input).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown_fields = Vec::new();
    collect_unknown(input, &value, &mut String::new(), &mut unknown_fields);
    Ok(Typed {
        value,
        unknown_fields,
    })
}

/// Fields present (and not null) in `input` but absent from `output`.
fn collect_unknown(input: &Value, output: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match o.get(k) {
                    None if !v.is_null() => out.push(path.clone()),
                    Some(ov) => collect_unknown(v, ov, path, out),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o.iter()).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                collect_unknown(iv, ov, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

macro_rules! dispatch {
    ($g:expr, $v:expr, $k:expr, $input:expr, { $( ($group:literal, $version:literal, $kind:literal) => $ty:ty ),* $(,)? }) => {
        match ($g, $v, $k) {
            $( ($group, $version, $kind) => Some(through::<$ty>($input)), )*
            _ => None,
        }
    };
}

/// Round-trip `input` through the type of group/version/kind. `None` when skiff has no
/// type for the kind.
pub fn roundtrip(
    group: &str,
    version: &str,
    kind: &str,
    input: &Value,
) -> Option<Result<Typed, String>> {
    dispatch!(group, version, kind, input, {
        ("", "v1", "Namespace") => api::core::v1::Namespace,
        ("", "v1", "Pod") => api::core::v1::Pod,
        ("", "v1", "Service") => api::core::v1::Service,
        ("", "v1", "Endpoints") => api::core::v1::Endpoints,
        ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
        ("", "v1", "Secret") => api::core::v1::Secret,
        ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
        ("", "v1", "Node") => api::core::v1::Node,
        ("", "v1", "Event") => api::core::v1::Event,
        ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
        ("", "v1", "LimitRange") => api::core::v1::LimitRange,
        ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
        ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
        ("", "v1", "ComponentStatus") => api::core::v1::ComponentStatus,
        ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
        ("", "v1", "Binding") => api::core::v1::Binding,
        ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
        ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
        ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
        ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
        ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
        ("batch", "v1", "Job") => api::batch::v1::Job,
        ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
        ("autoscaling", "v1", "Scale") => api::autoscaling::v1::Scale,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
        ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
        ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
        ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
        ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
        ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
        ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
        ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
        ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
        ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
        ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => api::authorization::v1::SelfSubjectAccessReview,
        ("authentication.k8s.io", "v1", "TokenRequest") => api::authentication::v1::TokenRequest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let input = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "bogus": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "x"}]}}}
        });
        let t = roundtrip("apps", "v1", "Deployment", &input)
            .unwrap()
            .unwrap();
        assert_eq!(
            t.unknown_fields,
            vec![
                "spec.bogus",
                "spec.template.spec.containers[0].imagePullPolice"
            ]
        );
        assert!(t.value["spec"].get("bogus").is_none());
    }

    #[test]
    fn wrong_types_are_rejected() {
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}});
        assert!(roundtrip("", "v1", "ConfigMap", &input).unwrap().is_err());
    }
}
