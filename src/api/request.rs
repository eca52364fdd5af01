//! Request decoding: which resource a URL path names (like kube-apiserver's RequestInfo),
//! the query parameters kubectl sends, and what the client accepts.

use super::status::{ApiError, ApiResult};
use crate::registry::resources::{self, ResourceInfo};

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The routes that are not resources.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList(String, String),
    Resource(ResourcePath),
}

/// Split a path into a route. Unknown groups, versions or resources give `NoRoute`
/// (kube answers 404 with a plain Status).
pub fn route(path: &str) -> ApiResult<Route> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", g] => return Ok(Route::Group(g.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::NoRoute),
    };
    if rest.is_empty() {
        if resources::group_versions().contains(&(group, version)) {
            return Ok(Route::ResourceList(group.to_string(), version.to_string()));
        }
        return Err(ApiError::NoRoute);
    }
    let find = |plural: &str| resources::find(group, version, plural).ok_or(ApiError::NoRoute);
    let path = match rest {
        // /namespaces/{ns}/{resource}[/{name}[/{sub}]]
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            let resource = find(plural)?;
            if !resource.namespaced {
                return Err(ApiError::NoRoute);
            }
            let (name, sub) = name_and_sub(tail)?;
            ResourcePath {
                resource,
                namespace: Some(ns.to_string()),
                name,
                subresource: sub,
            }
        }
        [plural, tail @ ..] => {
            let resource = find(plural)?;
            let (name, sub) = name_and_sub(tail)?;
            if resource.namespaced && name.is_some() {
                return Err(ApiError::NoRoute);
            }
            ResourcePath {
                resource,
                namespace: None,
                name,
                subresource: sub,
            }
        }
        [] => return Err(ApiError::NoRoute),
    };
    if let Some(sub) = &path.subresource {
        if path.resource.has_subresource(sub).is_none() {
            return Err(ApiError::NoRoute);
        }
    }
    Ok(Route::Resource(path))
}

fn name_and_sub(tail: &[&str]) -> ApiResult<(Option<String>, Option<String>)> {
    match tail {
        [] => Ok((None, None)),
        [name] => Ok((Some(decode(name)), None)),
        [name, sub] => Ok((Some(decode(name)), Some(sub.to_string()))),
        _ => Err(ApiError::NoRoute),
    }
}

fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_string())
}

/// The query parameters of list/watch/write requests.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: bool,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub force: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub include_object: Option<String>,
    pub pretty: bool,
    /// Log and exec parameters are read by their handlers from here.
    pub raw: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> ApiResult<Query> {
        let mut q = Query::default();
        let Some(query) = query else { return Ok(q) };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            let flag = || v.is_empty() || v == "true" || v == "1";
            match k.as_ref() {
                "watch" => q.watch = flag(),
                "labelSelector" => q.label_selector = Some(v.clone()),
                "fieldSelector" => q.field_selector = Some(v.clone()),
                "limit" => {
                    q.limit = Some(v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("invalid value for limit: {v:?}"))
                    })?)
                }
                "continue" => q.continue_token = Some(v.clone()),
                "resourceVersion" => q.resource_version = Some(v.clone()),
                "resourceVersionMatch" => q.resource_version_match = Some(v.clone()),
                "timeoutSeconds" => q.timeout_seconds = v.parse().ok(),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = flag(),
                "sendInitialEvents" => q.send_initial_events = flag(),
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::BadRequest(format!(
                            "Unsupported value: {v:?}: supported values: \"All\""
                        )));
                    }
                    q.dry_run = true
                }
                "fieldManager" => q.field_manager = Some(v.clone()),
                "fieldValidation" => q.field_validation = Some(v.clone()),
                "force" => q.force = flag(),
                "gracePeriodSeconds" => {
                    q.grace_period_seconds = Some(v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("invalid value for gracePeriodSeconds: {v:?}"))
                    })?)
                }
                "propagationPolicy" => q.propagation_policy = Some(v.clone()),
                "includeObject" => q.include_object = Some(v.clone()),
                "pretty" => q.pretty = flag(),
                _ => {}
            }
            q.raw.push((k.into_owned(), v));
        }
        Ok(q)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    Table,
    /// Aggregated discovery (`apidiscovery.k8s.io/v2`).
    DiscoveryV2,
    Yaml,
    Protobuf,
}

/// Pick the first media type we can serve from an `Accept` header.
pub fn negotiate(accept: Option<&str>) -> Accept {
    let Some(accept) = accept else {
        return Accept::Json;
    };
    for part in accept.split(',') {
        let part = part.trim();
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<&str> = params.collect();
        let has = |p: &str| params.contains(&p);
        match media {
            "application/json" | "*/*" | "application/*" => {
                if has("as=Table") {
                    return Accept::Table;
                }
                if has("as=APIGroupDiscoveryList") && has("v=v2") {
                    return Accept::DiscoveryV2;
                }
                if params.iter().any(|p| p.starts_with("as=")) {
                    continue;
                }
                return Accept::Json;
            }
            "application/yaml" => return Accept::Yaml,
            "application/vnd.kubernetes.protobuf" => {
                if params.iter().any(|p| p.starts_with("as=")) {
                    continue;
                }
                return Accept::Protobuf;
            }
            // e.g. OpenAPI v2's `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
            m if m.ends_with("+protobuf") => return Accept::Protobuf,
            _ => {}
        }
    }
    Accept::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_namespaced_and_cluster_paths() {
        let Route::Resource(p) = route("/api/v1/namespaces/default/pods/web/status").unwrap()
        else {
            panic!("not a resource")
        };
        assert_eq!(p.resource.plural, "pods");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("status"));

        let Route::Resource(p) = route("/api/v1/namespaces/kube-system").unwrap() else {
            panic!("not a resource")
        };
        assert_eq!(p.resource.plural, "namespaces");
        assert_eq!(p.name.as_deref(), Some("kube-system"));

        let Route::Resource(p) = route("/api/v1/namespaces/x/finalize").unwrap() else {
            panic!("not a resource")
        };
        assert_eq!(p.subresource.as_deref(), Some("finalize"));

        let Route::Resource(p) = route("/apis/apps/v1/deployments").unwrap() else {
            panic!("not a resource")
        };
        assert!(p.namespace.is_none() && p.name.is_none());
        assert!(matches!(
            route("/apis/apps/v1/nothings"),
            Err(ApiError::NoRoute)
        ));
        assert!(matches!(route("/apis/apps/v9"), Err(ApiError::NoRoute)));
    }

    #[test]
    fn accept_negotiation_follows_kubectl_headers() {
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")),
            Accept::Table
        );
        assert_eq!(
            negotiate(Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")),
            Accept::DiscoveryV2
        );
        assert_eq!(negotiate(Some("application/json")), Accept::Json);
        assert_eq!(negotiate(None), Accept::Json);
    }
}
