//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: the API server checks the request
//! against the pod (which container, has it started, is there a previous run) with
//! kube-apiserver's messages, then streams the log from the pod's node through a
//! [`PodLogs`] provider (`text/plain`, chunked). In `skiff server` the provider reads the
//! local agent's files; without an agent on the pod's node the answer is an error.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use super::body::Body;
use super::request::{Query, ResourcePath};
use super::status::{ApiError, ApiResult};
use super::ApiServer;

/// One log request, checked against the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    /// Which run: the current one's restart count, or the one before with `previous`.
    pub attempt: u32,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
}

/// Where logs come from: the agent of the pod's node.
pub trait PodLogs: Send + Sync {
    fn open(
        &self,
        req: LogRequest,
    ) -> BoxFuture<'static, Result<BoxStream<'static, std::io::Result<Bytes>>, String>>;
}

fn parse_bool(q: &Query, name: &str) -> bool {
    q.raw.iter().any(|(k, v)| k == name && v == "true")
}

fn raw<'q>(q: &'q Query, name: &str) -> Option<&'q str> {
    q.raw
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn int(q: &Query, name: &str) -> ApiResult<Option<i64>> {
    raw(q, name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid value {v:?} for {name}")))
        })
        .transpose()
}

/// The container a request means: the named one, the default-container annotation's,
/// or the only one; kube-apiserver's errors otherwise.
pub(crate) fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (apps, inits) = (names("containers"), names("initContainers"));
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        if apps.iter().chain(inits.iter()).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
    {
        return Ok(d.to_string());
    }
    match apps.as_slice() {
        [only] => Ok(only.clone()),
        _ => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                apps.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::BadRequest(msg))
        }
    }
}

impl ApiServer {
    /// The pod a subresource request (`log`, `exec`, `portforward`) names: its namespace,
    /// name and object, or kube-apiserver's 404.
    pub(crate) async fn read_pod(&self, p: &ResourcePath) -> ApiResult<(String, String, Value)> {
        let name = p.name.clone().unwrap_or_default();
        let namespace = p.namespace.clone().unwrap_or_default();
        let key = super::objects::object_key(p.resource, Some(&namespace), &name);
        let pod = self
            .read_object(&key)
            .await
            .ok_or_else(|| super::objects::not_found(p.resource, &name))?;
        Ok((namespace, name, pod))
    }

    /// Use `provider` for `pods/log` (the server's local agent).
    pub fn set_pod_logs(&self, provider: Arc<dyn PodLogs>) {
        let _ = self.pod_logs.set(provider);
    }

    pub(crate) async fn pod_log(&self, p: &ResourcePath, q: &Query) -> ApiResult<Response<Body>> {
        let (namespace, name, pod) = self.read_pod(p).await?;
        let container = pick_container(&pod, &name, raw(q, "container"))?;
        let statuses = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .flat_map(|l| pod["status"][*l].as_array().cloned().unwrap_or_default())
            .collect::<Vec<Value>>();
        let status = statuses.iter().find(|s| s["name"] == container.as_str());
        let started =
            status.is_some_and(|s| s["containerID"].as_str().is_some_and(|id| !id.is_empty()));
        let previous = parse_bool(q, "previous");
        if !started && !previous {
            let reason = status
                .and_then(|s| s["state"]["waiting"]["reason"].as_str())
                .unwrap_or("ContainerCreating");
            return Err(ApiError::BadRequest(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
        let restarts = status.and_then(|s| s["restartCount"].as_u64()).unwrap_or(0) as u32;
        if previous
            && (restarts == 0 || status.is_some_and(|s| s["lastState"]["terminated"].is_null()))
        {
            return Err(ApiError::BadRequest(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        let since = match (int(q, "sinceSeconds")?, raw(q, "sinceTime")) {
            (Some(s), _) => Some(Utc::now() - chrono::Duration::seconds(s)),
            (None, Some(t)) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| ApiError::BadRequest(format!("invalid sinceTime {t:?}")))?
                    .with_timezone(&Utc),
            ),
            (None, None) => None,
        };
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let req = LogRequest {
            node,
            namespace,
            pod: name.clone(),
            uid: pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            container,
            attempt: if previous { restarts - 1 } else { restarts },
            follow: parse_bool(q, "follow") && !previous,
            tail_lines: int(q, "tailLines")?,
            since,
            timestamps: parse_bool(q, "timestamps"),
            limit_bytes: int(q, "limitBytes")?,
        };
        let provider = self.pod_logs.get().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no agent serves logs for node {:?} (skiff serves pod logs of its own node only)",
                req.node
            ))
        })?;
        let stream = provider
            .open(req)
            .await
            .map_err(ApiError::BadRequest)?
            .map(|chunk| chunk.map(Frame::data));
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_picked_as_kube_apiserver_does() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(pick_container(&pod, "p", Some("b")).expect("named"), "b");
        assert_eq!(pick_container(&pod, "p", Some("i")).expect("init"), "i");
        let err = pick_container(&pod, "p", None).expect_err("ambiguous");
        assert!(err.to_string().contains(
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        ), "{err}");
        assert!(pick_container(&pod, "p", Some("zz")).is_err());
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, "p", None).expect("only"), "only");
    }
}
