//! The API server: request routing, discovery, OpenAPI, health, and the object handlers,
//! in front of the watch cache and the store. `server` puts it on HTTPS; the same
//! `ApiServer::handle` serves in-process callers.

pub mod auth;
pub mod authentication;
pub mod body;
pub mod cache;
pub mod discovery;
pub mod eviction;
pub mod exec;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod podlogs;
pub mod portforward;
pub mod protobuf;
pub mod request;
pub mod selector;
pub mod server;
pub mod serviceaccount_token;
pub mod services;
pub mod spdy;
pub mod status;
pub mod table;
pub mod upgrade;
pub mod versions;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use http::{header, Method, Request, Response};
use serde_json::json;

pub use auth::UserInfo;
use body::Body;
use request::{Accept, Query, ResourcePath, Route};
use status::{ApiError, ApiResult};

use crate::store::Store;

/// The CRD collection kubectl's field-validation verifier lists (see
/// `Api::empty_crd_list`).
const CRD_COLLECTION: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// Settings the API server needs from the command line.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The address clients are told to use (`serverAddressByClientCIDRs`).
    pub advertise_address: String,
    /// Where Service cluster IPs come from (`--service-cidr`).
    pub service_cidr: services::Ipv4Cidr,
    /// Inclusive NodePort range (`--service-node-port-range`).
    pub service_node_ports: (i64, i64),
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            advertise_address: "127.0.0.1:6443".into(),
            service_cidr: services::DEFAULT_SERVICE_CIDR,
            service_node_ports: services::DEFAULT_NODE_PORTS,
        }
    }
}

/// The API server's shared state.
pub struct ApiServer {
    pub cache: Arc<cache::WatchCache>,
    pub store: Arc<dyn Store>,
    pub openapi: openapi::OpenApi,
    pub tokens: auth::TokenAuthenticator,
    pub config: ApiConfig,
    pub started: Instant,
    /// Service cluster IP and node port allocation (serializes Service writes).
    pub services: services::ServiceAllocator,
    /// Signs and verifies service-account tokens once `enable_service_account_tokens` ran.
    pub service_account_tokens: std::sync::OnceLock<serviceaccount_token::TokenIssuer>,
    /// The latest node usage reports (`metrics.k8s.io`), in memory only.
    pub metrics: metrics::MetricsStore,
    /// Where `pods/log` streams come from (the local agent), once one is set.
    pub pod_logs: std::sync::OnceLock<Arc<dyn podlogs::PodLogs>>,
    pub pod_exec: std::sync::OnceLock<Arc<dyn exec::PodExec>>,
    /// Where `pods/portforward` connections go (the local agent), once one is set.
    pub port_forward: std::sync::OnceLock<Arc<dyn portforward::PortForwarder>>,
}

impl ApiServer {
    pub async fn new(
        store: Arc<dyn Store>,
        tokens: auth::TokenAuthenticator,
        config: ApiConfig,
    ) -> Result<Arc<ApiServer>, crate::store::StoreError> {
        let cache = cache::WatchCache::start(store.clone()).await?;
        Ok(Arc::new(ApiServer {
            cache,
            store,
            openapi: openapi::OpenApi::build(),
            tokens,
            services: services::ServiceAllocator::from_parts(
                config.service_cidr,
                config.service_node_ports,
            ),
            config,
            started: Instant::now(),
            service_account_tokens: Default::default(),
            metrics: metrics::MetricsStore::default(),
            pod_logs: Default::default(),
            pod_exec: Default::default(),
            port_forward: Default::default(),
        }))
    }

    /// Serve one request from an authenticated (or not) caller.
    pub async fn handle<B>(
        self: &Arc<Self>,
        req: Request<B>,
        user: Option<UserInfo>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let started = Instant::now();
        let resp = match self.dispatch(req, user).await {
            Ok(r) => r,
            Err(e) => body::error(&e),
        };
        tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        resp
    }

    async fn dispatch<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
        user: Option<UserInfo>,
    ) -> ApiResult<Response<Body>>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        // Health endpoints are open to everyone, as kube's are to system:unauthenticated.
        match path.as_str() {
            "/healthz" | "/livez" | "/readyz" | "/healthz/ping" | "/livez/ping"
            | "/readyz/ping" => {
                return Ok(body::respond(200, "text/plain; charset=utf-8", "ok"));
            }
            "/version" if method == Method::GET => {
                return Ok(body::json(200, &discovery::version()))
            }
            _ => {}
        }
        let user = user.ok_or_else(|| ApiError::Unauthorized("Unauthorized".into()))?;
        let query = Query::parse(req.uri().query())?;
        let accept = request::negotiate(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        let ct_header = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        if metrics::handles(&path) {
            let bytes = if metrics::wants_body(&path, &method) {
                body::read(req.into_body()).await?
            } else {
                bytes::Bytes::new()
            };
            return self
                .metrics
                .serve(&self.cache, &path, &method, &query, &bytes);
        }
        if let Some(resp) = self.openapi_route(&path, &query, accept) {
            return resp;
        }
        if path == CRD_COLLECTION && method == Method::GET && !query.watch {
            return Ok(self.empty_crd_list());
        }
        let route = request::route(&path)?;
        let p = match route {
            Route::CoreVersions => {
                return Ok(if accept == Accept::DiscoveryV2 {
                    discovery_v2(&discovery::aggregated(true))
                } else {
                    body::json(
                        200,
                        &discovery::core_versions(&self.config.advertise_address),
                    )
                })
            }
            Route::Groups => {
                return Ok(if accept == Accept::DiscoveryV2 {
                    discovery_v2(&discovery::aggregated(false))
                } else {
                    body::json(200, &discovery::group_list())
                })
            }
            Route::Group(g) => {
                return discovery::group(&g)
                    .map(|d| body::json(200, &d))
                    .ok_or(ApiError::NoRoute)
            }
            Route::ResourceList(g, v) => {
                return Ok(body::json(200, &discovery::resource_list(&g, &v)))
            }
            Route::Resource(p) => p,
        };
        if p.resource.kind == "Pod" && p.name.is_some() {
            match p.subresource.as_deref() {
                Some(s @ ("exec" | "attach")) => {
                    return self.pod_exec(&p, &query, s == "attach", req).await
                }
                Some("portforward") => return self.pod_port_forward(&p, &query, &mut req).await,
                _ => {}
            }
        }
        if accept == Accept::Protobuf && method == Method::GET {
            // We answer JSON; clients asking protobuf-only get JSON anyway (kubectl accepts it).
        }
        let needs_body = matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        // Refuse an announced oversized body before reading it (and before a client that
        // sent `Expect: 100-continue` uploads it).
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if announced.is_some_and(|n| n > body::MAX_BODY_BYTES) {
            return Err(ApiError::RequestEntityTooLarge(format!(
                "the request body is larger than the limit of {} bytes",
                body::MAX_BODY_BYTES
            )));
        }
        let bytes = if needs_body {
            body::read(req.into_body()).await?
        } else {
            bytes::Bytes::new()
        };
        let ct = || body::content_type(ct_header.as_deref());
        self.resource(&p, &method, &query, accept, ct, &bytes, &user)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn resource(
        self: &Arc<Self>,
        p: &ResourcePath,
        method: &Method,
        q: &Query,
        accept: Accept,
        ct: impl Fn() -> ApiResult<body::ContentType>,
        bytes: &[u8],
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        if crate::registry::convert::needs_conversion(r) {
            return self.converted(p, method, q, accept, ct, bytes, user).await;
        }
        let sub = p.subresource.as_deref();
        let not_allowed = || {
            ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method} {})",
                r.qualified_plural()
            ))
        };
        let verb_allowed = |verb: &str| r.verbs.contains(&verb);
        match (p.name.is_some(), sub, method) {
            // Collections.
            (false, None, &Method::GET) if q.watch => {
                if !verb_allowed("watch") {
                    return Err(not_allowed());
                }
                self.watch(p, q, accept).await
            }
            (false, None, &Method::GET) => {
                if !verb_allowed("list") {
                    return Err(not_allowed());
                }
                if r.kind == "ComponentStatus" {
                    let list = self.component_statuses();
                    if accept == Accept::Table {
                        let items = list["items"].as_array().cloned().unwrap_or_default();
                        let rev = self.cache.revision();
                        return Ok(body::json(
                            200,
                            &table::table(r, items.iter(), rev, None, None, true),
                        ));
                    }
                    return Ok(body::json(200, &list));
                }
                self.list(p, q, accept).await
            }
            (false, None, &Method::POST) => {
                match r.kind {
                    "SelfSubjectAccessReview" => {
                        return self.self_subject_access_review(bytes, ct()?, user)
                    }
                    "TokenReview" => return self.create_token_review(ct()?, bytes),
                    "SelfSubjectReview" => {
                        return self.create_self_subject_review(ct()?, bytes, user)
                    }
                    _ => {}
                }
                if !verb_allowed("create") {
                    return Err(not_allowed());
                }
                self.create(p, q, ct()?, bytes, user).await
            }
            (false, None, &Method::DELETE) => {
                if !verb_allowed("deletecollection") {
                    return Err(not_allowed());
                }
                self.delete_collection(p, q, bytes).await
            }
            // Single objects.
            (true, None, &Method::GET) if q.watch => self.watch(p, q, accept).await,
            (true, None, &Method::GET) => {
                if r.kind == "ComponentStatus" {
                    return self.component_status(p.name.as_deref().unwrap_or(""));
                }
                self.get(p, q, accept).await
            }
            (true, None | Some("status"), &Method::PUT) => {
                self.update(p, q, ct()?, bytes, user).await
            }
            (true, None | Some("status"), &Method::PATCH) => {
                self.patch(p, q, ct()?, bytes, user).await
            }
            (true, None, &Method::DELETE) => self.delete(p, q, bytes).await,
            (true, Some("status"), &Method::GET) => self.get(p, q, accept).await,
            (true, Some("scale"), &Method::GET) => self.get_scale(p).await,
            (true, Some("scale"), &Method::PUT) => {
                let scale = body::decode_object(ct()?, bytes)?;
                let bytes =
                    serde_json::to_vec(&scale).map_err(|e| ApiError::Internal(e.to_string()))?;
                self.patch(p, q, body::ContentType::MergePatch, &bytes, user)
                    .await
            }
            (true, Some("scale"), &Method::PATCH) => self.patch(p, q, ct()?, bytes, user).await,
            (true, Some("binding"), &Method::POST) => self.bind(p, bytes).await,
            (true, Some("token"), &Method::POST) => self.create_token(p, ct()?, bytes).await,
            (true, Some("finalize"), &Method::PUT) => self.update(p, q, ct()?, bytes, user).await,
            (true, Some("eviction"), &Method::POST) if r.kind == "Pod" => {
                self.evict(p, q, ct()?, bytes, user).await
            }
            (true, Some("log"), &Method::GET) if r.kind == "Pod" => self.pod_log(p, q).await,
            (true, Some(s @ ("exec" | "attach" | "portforward")), _) => Err(
                ApiError::NotImplemented(format!("{}/{s} is not implemented yet", r.plural)),
            ),
            _ => Err(not_allowed()),
        }
    }

    /// An empty `CustomResourceDefinitionList`: skiff has no CRDs (the
    /// apiextensions group is neither served nor discoverable), but kubectl's
    /// v2 `fieldValidation` verifier lists CRDs whenever a kind has no PATCH
    /// operation (`create -f` of TokenReview, SelfSubjectAccessReview, …) and
    /// aborts validation on a 404. Listing is all it does; every other CRD
    /// request still gets 404.
    fn empty_crd_list(&self) -> Response<Body> {
        body::json(
            200,
            &json!({
                "kind": "CustomResourceDefinitionList",
                "apiVersion": "apiextensions.k8s.io/v1",
                "metadata": { "resourceVersion": self.store.current_revision().to_string() },
                "items": [],
            }),
        )
    }

    /// `/openapi/v3…` and `/openapi/v2` (see [`openapi`]); `None` for other paths.
    fn openapi_route(
        &self,
        path: &str,
        q: &Query,
        accept: Accept,
    ) -> Option<ApiResult<Response<Body>>> {
        if path == "/openapi/v3" || path == "/openapi/v3/" {
            let mut resp = body::respond(200, "application/json", self.openapi.v3_root().to_vec());
            if let Ok(v) =
                header::HeaderValue::from_str(&format!("\"{}\"", self.openapi.v3_root_etag()))
            {
                resp.headers_mut().insert(header::ETAG, v);
            }
            return Some(Ok(resp));
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            return Some(match self.openapi.v3_document(gv) {
                Some((doc, hash)) => {
                    let mut resp = body::respond(200, "application/json", doc.to_vec());
                    // Immutable only when the client asked for this exact version.
                    let cache = if q.get("hash") == Some(hash) {
                        "public, immutable"
                    } else {
                        "no-cache, private"
                    };
                    resp.headers_mut().insert(
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static(cache),
                    );
                    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{hash}\"")) {
                        resp.headers_mut().insert(header::ETAG, v);
                    }
                    Ok(resp)
                }
                None => Err(ApiError::NoRoute),
            });
        }
        if path == "/openapi/v2" || path == "/swagger.json" {
            // kubectl and client-go ask for gnostic's protobuf form only
            // (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`); JSON
            // stays the default.
            let (doc, etag, content_type) = if accept == Accept::Protobuf {
                let (doc, etag) = self.openapi.v2_protobuf();
                (doc, etag, openapi::V2_PROTOBUF_CONTENT_TYPE)
            } else {
                let (doc, etag) = self.openapi.v2();
                (doc, etag, "application/json")
            };
            let mut resp = body::respond(200, content_type, doc.to_vec());
            if let Ok(v) = header::HeaderValue::from_str(&format!("\"{etag}\"")) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            resp.headers_mut()
                .insert(header::VARY, header::HeaderValue::from_static("Accept"));
            return Some(Ok(resp));
        }
        None
    }

    fn self_subject_access_review(
        &self,
        bytes: &[u8],
        ct: body::ContentType,
        user: &UserInfo,
    ) -> ApiResult<Response<Body>> {
        let mut review = body::decode_object(ct, bytes)?;
        // RBAC is not enforced yet: everyone authenticated may do everything, which is
        // exactly true for system:masters and reported honestly for others.
        let masters = user.groups.iter().any(|g| g == "system:masters");
        review["status"] = json!({
            "allowed": true,
            "reason": if masters { "system:masters has every permission" } else { "RBAC is not enforced by this skiff version" },
        });
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectAccessReview");
        Ok(body::json(201, &review))
    }

    fn component_statuses(&self) -> serde_json::Value {
        let items: Vec<_> = ["scheduler", "controller-manager", "etcd-0"]
            .iter()
            .filter_map(|n| self.component_status_json(n))
            .collect();
        json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items})
    }

    fn component_status(&self, name: &str) -> ApiResult<Response<Body>> {
        self.component_status_json(name)
            .map(|v| body::json(200, &v))
            .ok_or_else(|| ApiError::NotFound {
                qualified: "componentstatuses".into(),
                name: name.into(),
            })
    }

    fn component_status_json(&self, name: &str) -> Option<serde_json::Value> {
        let (healthy, message) = match name {
            // The store answers if we got this far.
            "etcd-0" => (
                true,
                format!("sled store at revision {}", self.store.current_revision()),
            ),
            "scheduler" | "controller-manager" => {
                (false, "not built yet in this skiff version".to_string())
            }
            _ => return None,
        };
        Some(json!({
            "kind": "ComponentStatus", "apiVersion": "v1",
            "metadata": {"name": name},
            "conditions": [{"type": "Healthy", "status": if healthy { "True" } else { "False" }, "message": message}],
        }))
    }
}

fn discovery_v2(doc: &serde_json::Value) -> Response<Body> {
    let mut resp = body::json(200, doc);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    resp
}
