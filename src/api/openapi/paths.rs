//! `paths` of one group-version document: the REST operations kube-apiserver
//! exposes for each served resource, derived from the catalogue's scope, verbs
//! and subresources.
//!
//! Each operation carries an `operationId` in kube's style
//! (`patchAppsV1NamespacedDeployment`), `x-kubernetes-action`,
//! `x-kubernetes-group-version-kind` (a single object on operations), its query
//! parameters inline (kubectl looks for `fieldValidation` by name among the PATCH
//! operation's own parameters, so they must not be `$ref`s) and responses whose
//! schemas `$ref` the kind. Path-wide parameters (`name`, `namespace`, `pretty`)
//! sit on the path item, as kube-apiserver puts them.
//!
//! PATCH request bodies list JSON patch, merge patch and apply patch, but not
//! strategic merge patch: without it kubectl computes strategic merge patches from
//! its compiled-in Go types, which is what skiff wants.

use serde_json::{json, Map, Value};

use super::schemas::{self, schema_ref, Schemas};
use crate::registry::resources::{ResourceInfo, Subresource};

/// Naming context of one group-version.
struct Gv<'a> {
    group: &'a str,
    version: &'a str,
    /// `/api/v1` or `/apis/apps/v1`.
    prefix: String,
    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1` (operationId infix).
    id: String,
    /// `core_v1`, `rbacAuthorization_v1`.
    tag: String,
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl<'a> Gv<'a> {
    fn new(group: &'a str, version: &'a str) -> Gv<'a> {
        let parts: Vec<&str> = if group.is_empty() {
            vec!["core"]
        } else {
            group
                .strip_suffix(".k8s.io")
                .unwrap_or(group)
                .split('.')
                .collect()
        };
        let id: String = parts.iter().map(|p| capitalize(p)).collect();
        let mut tag = parts.first().map(|p| p.to_string()).unwrap_or_default();
        for p in parts.iter().skip(1) {
            tag.push_str(&capitalize(p));
        }
        Gv {
            group,
            version,
            prefix: if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            },
            id: format!("{id}{}", capitalize(version)),
            tag: format!("{tag}_{version}"),
        }
    }
}

// ---- parameters -------------------------------------------------------------

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": ty },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": { "type": "string" },
    })
}

fn p_name(kind: &str) -> Value {
    path_param("name", &format!("name of the {kind}"))
}
fn p_namespace() -> Value {
    path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    )
}
fn p_pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', the output is pretty printed.",
    )
}
fn p_dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "If 'All', the request is validated, defaulted and admitted but nothing is persisted.",
    )
}
fn p_field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "Name of the actor making the change, recorded in metadata.managedFields. Required for apply patches.",
    )
}
fn p_field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "How the server treats unknown and duplicate fields in the body: Ignore, Warn (the default) or Strict (reject the request).",
    )
}
fn p_force() -> Value {
    query(
        "force",
        "boolean",
        "Apply patches only: take over fields owned by other managers instead of failing with a conflict.",
    )
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut v = vec![p_dry_run(), p_field_manager(), p_field_validation()];
    if patch {
        v.push(p_force());
    }
    v
}

fn list_params(watch: bool) -> Vec<Value> {
    let mut v = Vec::new();
    if watch {
        v.push(query(
            "allowWatchBookmarks",
            "boolean",
            "Ask for BOOKMARK watch events. Ignored unless watching.",
        ));
    }
    v.push(query(
        "continue",
        "string",
        "Continue token from a previous limited list call, to fetch the next chunk.",
    ));
    v.push(query(
        "fieldSelector",
        "string",
        "Only objects whose fields match this selector. Defaults to everything.",
    ));
    v.push(query(
        "labelSelector",
        "string",
        "Only objects whose labels match this selector. Defaults to everything.",
    ));
    v.push(query(
        "limit",
        "integer",
        "Maximum number of objects to return; the list's metadata.continue tells whether more remain.",
    ));
    v.push(query(
        "resourceVersion",
        "string",
        "Resource version constraint the call is served from. Defaults to unset (most recent).",
    ));
    v.push(query(
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to list calls: Exact or NotOlderThan. Defaults to unset.",
    ));
    v.push(query(
        "sendInitialEvents",
        "boolean",
        "With watch, begin the stream with synthetic ADDED events for the current state, then a bookmark.",
    ));
    v.push(query(
        "timeoutSeconds",
        "integer",
        "Time limit of the list or watch call.",
    ));
    if watch {
        v.push(query(
            "watch",
            "boolean",
            "Stream ADDED, MODIFIED and DELETED events instead of returning a list.",
        ));
    }
    v
}

fn delete_params() -> Vec<Value> {
    vec![
        p_dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted; zero deletes at once. Defaults to the kind's own grace period.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "Delete even when the stored object cannot be read or decoded. Unsafe.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated, use propagationPolicy: whether dependents are orphaned.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Garbage collection of dependents: Orphan, Background or Foreground.",
        ),
    ]
}

fn sorted(mut params: Vec<Value>) -> Vec<Value> {
    params.sort_by(|a, b| {
        let n = |v: &Value| {
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        n(a).cmp(&n(b))
    });
    params
}

// ---- bodies and responses ---------------------------------------------------

fn content(types: &[&str], schema: &Value) -> Value {
    let mut m = Map::new();
    for t in types {
        m.insert((*t).to_string(), json!({ "schema": schema }));
    }
    Value::Object(m)
}

const OBJECT_TYPES: &[&str] = &["application/json", "application/yaml"];
const LIST_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/yaml",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

fn body(types: &[&str], schema_name: &str) -> Value {
    json!({ "content": content(types, &schema_ref(schema_name)), "required": true })
}

fn responses(codes: &[(&str, &str)], types: &[&str], schema_name: &str) -> Value {
    let mut m = Map::new();
    for (code, description) in codes {
        m.insert(
            (*code).to_string(),
            json!({ "description": description, "content": content(types, &schema_ref(schema_name)) }),
        );
    }
    m.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(m)
}

fn string_responses() -> Value {
    json!({
        "200": { "description": "OK", "content": { "*/*": { "schema": { "type": "string" } } } },
        "401": { "description": "Unauthorized" },
    })
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const REPLACED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// One operation.
struct Op {
    action: &'static str,
    id: String,
    description: String,
    gvk: Option<Value>,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
}

impl Op {
    fn into_value(self, tag: &str) -> Value {
        let mut m = Map::new();
        m.insert("description".into(), Value::String(self.description));
        m.insert("operationId".into(), Value::String(self.id));
        if !self.params.is_empty() {
            m.insert("parameters".into(), Value::Array(sorted(self.params)));
        }
        if let Some(b) = self.body {
            m.insert("requestBody".into(), b);
        }
        m.insert("responses".into(), self.responses);
        m.insert("tags".into(), json!([tag]));
        m.insert("x-kubernetes-action".into(), json!(self.action));
        if let Some(g) = self.gvk {
            m.insert("x-kubernetes-group-version-kind".into(), g);
        }
        Value::Object(m)
    }
}

/// Paths being assembled, keyed by path, each a path item.
#[derive(Default)]
struct Paths(Map<String, Value>);

impl Paths {
    fn add(&mut self, gv: &Gv, path: &str, method: &str, op: Op, path_params: &[Value]) {
        let item = self
            .0
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(method.to_string(), op.into_value(&gv.tag));
            if !path_params.is_empty() && !item.contains_key("parameters") {
                item.insert("parameters".into(), Value::Array(path_params.to_vec()));
            }
        }
    }
}

/// The `paths` of the document of `group`/`version` for its `resources`,
/// registering every schema they refer to in `schemas`.
pub(crate) fn build(
    group: &str,
    version: &str,
    resources: &[&ResourceInfo],
    schemas: &mut Schemas,
) -> Map<String, Value> {
    let gv = Gv::new(group, version);
    let mut paths = Paths::default();

    paths.add(
        &gv,
        &format!("{}/", gv.prefix),
        "get",
        Op {
            action: "get",
            id: format!("get{}APIResources", gv.id),
            description: "get available resources".into(),
            gvk: None,
            params: Vec::new(),
            body: None,
            responses: responses(OK, OBJECT_TYPES, schemas::API_RESOURCE_LIST),
        },
        &[],
    );

    for r in resources {
        resource(&gv, r, &mut paths, schemas);
    }
    let mut sorted: Vec<(String, Value)> = paths.0.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}

fn has(r: &ResourceInfo, verb: &str) -> bool {
    r.verbs.contains(&verb)
}

fn resource(gv: &Gv, r: &ResourceInfo, paths: &mut Paths, schemas: &mut Schemas) {
    let lists = has(r, "list");
    let name = schemas.kind(gv.group, gv.version, r.kind, lists);
    let list_name = format!("{name}List");
    let kind = r.kind;
    let gvk = schemas::gvk(gv.group, gv.version, kind);
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let collection = if r.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", gv.prefix, r.plural)
    } else {
        format!("{}/{}", gv.prefix, r.plural)
    };
    let object = format!("{collection}/{{name}}");
    let mut coll_params = Vec::new();
    let mut obj_params = vec![p_name(kind)];
    if r.namespaced {
        coll_params.push(p_namespace());
        obj_params.push(p_namespace());
    }
    coll_params.push(p_pretty());
    obj_params.push(p_pretty());
    let id = &gv.id;

    if lists {
        let op = Op {
            action: "list",
            id: format!("list{id}{ns}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            gvk: Some(gvk.clone()),
            params: list_params(has(r, "watch")),
            body: None,
            responses: responses(OK, LIST_TYPES, &list_name),
        };
        paths.add(gv, &collection, "get", op, &coll_params);
    }
    if has(r, "create") {
        let op = Op {
            action: "post",
            id: format!("create{id}{ns}{kind}"),
            description: format!("create a {kind}"),
            gvk: Some(gvk.clone()),
            params: write_params(false),
            body: Some(body(OBJECT_TYPES, &name)),
            responses: responses(CREATED, OBJECT_TYPES, &name),
        };
        paths.add(gv, &collection, "post", op, &coll_params);
    }
    if has(r, "deletecollection") {
        let mut params = delete_params();
        params.extend(list_params(false));
        let op = Op {
            action: "deletecollection",
            id: format!("delete{id}Collection{ns}{kind}"),
            description: format!("delete collection of {kind}"),
            gvk: Some(gvk.clone()),
            params,
            body: Some(
                json!({ "content": content(&["application/json"], &schema_ref(schemas::DELETE_OPTIONS)) }),
            ),
            responses: responses(OK, OBJECT_TYPES, schemas::STATUS),
        };
        paths.add(gv, &collection, "delete", op, &coll_params);
    }
    if r.namespaced && lists {
        let op = Op {
            action: "list",
            id: format!("list{id}{kind}ForAllNamespaces"),
            description: format!("list or watch objects of kind {kind}"),
            gvk: Some(gvk.clone()),
            params: list_params(has(r, "watch")),
            body: None,
            responses: responses(OK, LIST_TYPES, &list_name),
        };
        let path = format!("{}/{}", gv.prefix, r.plural);
        paths.add(gv, &path, "get", op, &[p_pretty()]);
    }
    if has(r, "get") {
        let op = Op {
            action: "get",
            id: format!("read{id}{ns}{kind}"),
            description: format!("read the specified {kind}"),
            gvk: Some(gvk.clone()),
            params: Vec::new(),
            body: None,
            responses: responses(OK, OBJECT_TYPES, &name),
        };
        paths.add(gv, &object, "get", op, &obj_params);
    }
    if has(r, "update") {
        let op = Op {
            action: "put",
            id: format!("replace{id}{ns}{kind}"),
            description: format!("replace the specified {kind}"),
            gvk: Some(gvk.clone()),
            params: write_params(false),
            body: Some(body(OBJECT_TYPES, &name)),
            responses: responses(REPLACED, OBJECT_TYPES, &name),
        };
        paths.add(gv, &object, "put", op, &obj_params);
    }
    if has(r, "patch") {
        let op = Op {
            action: "patch",
            id: format!("patch{id}{ns}{kind}"),
            description: format!("partially update the specified {kind}"),
            gvk: Some(gvk.clone()),
            params: write_params(true),
            body: Some(body(PATCH_TYPES, schemas::PATCH)),
            responses: responses(REPLACED, OBJECT_TYPES, &name),
        };
        paths.add(gv, &object, "patch", op, &obj_params);
    }
    if has(r, "delete") {
        let op = Op {
            action: "delete",
            id: format!("delete{id}{ns}{kind}"),
            description: format!("delete a {kind}"),
            gvk: Some(gvk.clone()),
            params: delete_params(),
            body: Some(
                json!({ "content": content(&["application/json"], &schema_ref(schemas::DELETE_OPTIONS)) }),
            ),
            responses: responses(DELETED, OBJECT_TYPES, schemas::STATUS),
        };
        paths.add(gv, &object, "delete", op, &obj_params);
    }

    for sub in r.subresources {
        subresource(gv, r, sub, &object, &obj_params, paths, schemas);
    }
}

/// Query parameters of the streaming pod subresources.
fn stream_params(sub: &str) -> Vec<Value> {
    let b = |n: &str, d: &str| query(n, "boolean", d);
    let container = query(
        "container",
        "string",
        "The container to use; defaults to the only container if there is one.",
    );
    match sub {
        "log" => vec![
            container,
            b("follow", "Stream the log as it grows."),
            b(
                "insecureSkipTLSVerifyBackend",
                "Do not verify the serving certificate of the kubelet.",
            ),
            query(
                "limitBytes",
                "integer",
                "Stop after this many bytes of log.",
            ),
            b(
                "previous",
                "The log of the previous, terminated instance of the container.",
            ),
            query(
                "sinceSeconds",
                "integer",
                "Only lines newer than this many seconds.",
            ),
            query(
                "stream",
                "string",
                "Which stream to return: All, Stdout or Stderr.",
            ),
            query(
                "tailLines",
                "integer",
                "Only this many lines from the end of the log.",
            ),
            b(
                "timestamps",
                "Prefix every line with its RFC3339 timestamp.",
            ),
        ],
        "exec" => vec![
            query(
                "command",
                "string",
                "Command to run, one argument per repeated parameter.",
            ),
            container,
            b("stderr", "Redirect the standard error stream."),
            b("stdin", "Redirect the standard input stream."),
            b("stdout", "Redirect the standard output stream."),
            b("tty", "Allocate a terminal."),
        ],
        "attach" => vec![
            container,
            b("stderr", "Attach to the standard error stream."),
            b("stdin", "Attach to the standard input stream."),
            b("stdout", "Attach to the standard output stream."),
            b("tty", "The container has a terminal."),
        ],
        "portforward" => vec![query("ports", "integer", "Ports of the pod to forward.")],
        _ => Vec::new(),
    }
}

fn subresource(
    gv: &Gv,
    r: &ResourceInfo,
    sub: &Subresource,
    object: &str,
    obj_params: &[Value],
    paths: &mut Paths,
    schemas: &mut Schemas,
) {
    let path = format!("{object}/{}", sub.name);
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let kind = r.kind;
    let id = &gv.id;
    let suffix = capitalize(sub.name);
    let gvk = schemas::gvk(sub.group, sub.version, sub.kind);
    let streaming = matches!(sub.name, "exec" | "attach" | "portforward");

    if sub.name == "log" || streaming {
        for verb in sub.verbs {
            let (method, action, m) = match *verb {
                "get" if sub.name == "log" => ("get", "get", ""),
                "get" => ("get", "connect", "Get"),
                "create" => ("post", "connect", "Post"),
                _ => continue,
            };
            let op_id = if action == "connect" {
                format!("connect{id}{m}{ns}{kind}{suffix}")
            } else {
                format!("read{id}{ns}{kind}{suffix}")
            };
            let op = Op {
                action,
                id: op_id,
                description: format!(
                    "{} {} of {kind}",
                    if action == "connect" {
                        "connect to"
                    } else {
                        "read"
                    },
                    sub.name
                ),
                gvk: Some(gvk.clone()),
                params: stream_params(sub.name),
                body: None,
                responses: string_responses(),
            };
            paths.add(gv, &path, method, op, obj_params);
        }
        return;
    }

    let name = schemas.kind(sub.group, sub.version, sub.kind, false);
    let what = format!("{} of the specified {kind}", sub.name);
    for verb in sub.verbs {
        let (method, op) = match *verb {
            "get" => (
                "get",
                Op {
                    action: "get",
                    id: format!("read{id}{ns}{kind}{suffix}"),
                    description: format!("read {what}"),
                    gvk: Some(gvk.clone()),
                    params: Vec::new(),
                    body: None,
                    responses: responses(OK, OBJECT_TYPES, &name),
                },
            ),
            "update" => (
                "put",
                Op {
                    action: "put",
                    id: format!("replace{id}{ns}{kind}{suffix}"),
                    description: format!("replace {what}"),
                    gvk: Some(gvk.clone()),
                    params: write_params(false),
                    body: Some(body(OBJECT_TYPES, &name)),
                    responses: responses(REPLACED, OBJECT_TYPES, &name),
                },
            ),
            "patch" => (
                "patch",
                Op {
                    action: "patch",
                    id: format!("patch{id}{ns}{kind}{suffix}"),
                    description: format!("partially update {what}"),
                    gvk: Some(gvk.clone()),
                    params: write_params(true),
                    body: Some(body(PATCH_TYPES, schemas::PATCH)),
                    responses: responses(REPLACED, OBJECT_TYPES, &name),
                },
            ),
            "create" => (
                "post",
                Op {
                    action: "post",
                    id: format!("create{id}{ns}{kind}{suffix}"),
                    description: format!("create {} of a {kind}", sub.name),
                    gvk: Some(gvk.clone()),
                    params: write_params(false),
                    body: Some(body(OBJECT_TYPES, &name)),
                    responses: responses(CREATED, OBJECT_TYPES, &name),
                },
            ),
            _ => continue,
        };
        paths.add(gv, &path, method, op, obj_params);
    }
}
