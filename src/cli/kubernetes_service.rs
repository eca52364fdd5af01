//! The `kubernetes` Service in `default` and its Endpoints and EndpointSlice, pointing at
//! this API server: created at start and repaired when they drifted (kube-apiserver's
//! bootstrap controller and endpoint reconciler do this in upstream).

use std::sync::Arc;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::api::{ApiServer, UserInfo};

/// Why the `kubernetes` objects could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{method} {uri}: HTTP {code}: {message}")]
    Http {
        method: String,
        uri: String,
        code: u16,
        message: String,
    },
    #[error("building request {0}: {1}")]
    Request(String, String),
}

const SERVICE: &str = "/api/v1/namespaces/default/services";
const ENDPOINTS: &str = "/api/v1/namespaces/default/endpoints";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

/// Make sure the `kubernetes` Service (cluster IP `service_ip`, port 443 → `port`) and
/// its endpoints (`advertise`:`port`) exist as they should.
pub async fn reconcile(
    api: &Arc<ApiServer>,
    service_ip: &str,
    advertise: &str,
    port: u16,
) -> Result<(), BootstrapError> {
    let ports = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "ports": ports,
                 "sessionAffinity": "None"},
    });
    ensure(api, SERVICE, service, |current, desired| {
        let spec = &current["spec"];
        if spec["ports"] == desired["spec"]["ports"] && spec["type"] == "ClusterIP" {
            return None;
        }
        let mut next = current.clone();
        next["spec"]["ports"] = desired["spec"]["ports"].clone();
        next["spec"]["type"] = json!("ClusterIP");
        Some(next)
    })
    .await?;

    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ensure(api, ENDPOINTS, endpoints, |current, desired| {
        (current["subsets"] != desired["subsets"]).then(|| {
            let mut next = current.clone();
            next["subsets"] = desired["subsets"].clone();
            next
        })
    })
    .await?;

    let family = if advertise.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [advertise], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    ensure(api, SLICES, slice, |current, desired| {
        let same = ["addressType", "endpoints", "ports"]
            .iter()
            .all(|f| current[*f] == desired[*f]);
        (!same).then(|| {
            let mut next = current.clone();
            for f in ["addressType", "endpoints", "ports"] {
                next[f] = desired[f].clone();
            }
            next
        })
    })
    .await
}

/// Create `desired` under `collection` or, when it exists, write what `repair` returns.
async fn ensure(
    api: &Arc<ApiServer>,
    collection: &str,
    desired: Value,
    repair: impl Fn(&Value, &Value) -> Option<Value>,
) -> Result<(), BootstrapError> {
    let uri = format!("{collection}/kubernetes");
    let (code, current) = call(api, "GET", &uri, None).await?;
    match code {
        404 => {
            let (code, body) = call(api, "POST", collection, Some(&desired)).await?;
            if code == 201 || code == 409 {
                return Ok(());
            }
            Err(http_error("POST", collection, code, &body))
        }
        200 => {
            let Some(next) = repair(&current, &desired) else {
                return Ok(());
            };
            let (code, body) = call(api, "PUT", &uri, Some(&next)).await?;
            if code == 200 || code == 409 {
                return Ok(());
            }
            Err(http_error("PUT", &uri, code, &body))
        }
        _ => Err(http_error("GET", &uri, code, &current)),
    }
}

fn http_error(method: &str, uri: &str, code: u16, body: &Value) -> BootstrapError {
    BootstrapError::Http {
        method: method.into(),
        uri: uri.into(),
        code,
        message: body["message"].as_str().unwrap_or_default().to_string(),
    }
}

async fn call(
    api: &Arc<ApiServer>,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), BootstrapError> {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
        .map_err(|e| BootstrapError::Request(uri.to_string(), e.to_string()))?;
    let resp = api.handle(req, Some(UserInfo::system())).await;
    let code = resp.status().as_u16();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let value = serde_json::from_slice(&collected).unwrap_or(Value::Null);
    Ok((code, value))
}
