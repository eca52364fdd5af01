//! `components/schemas` of one group-version document.
//!
//! Every schema comes from k8s-openapi's `schemars` impls (generated from the
//! upstream Kubernetes 1.32 OpenAPI, so names, descriptions, types and `required`
//! lists are the kube-apiserver ones). A fresh [`SchemaGenerator`] with the
//! OpenAPI 3.0 settings is used per document: asking it for a kind registers the
//! kind and, transitively, every type it references under its kube-style name
//! (`io.k8s.api.core.v1.PodSpec`), with `$ref`s of the form
//! `#/components/schemas/<name>` (fields that carry their own description next
//! to a `$ref` become `allOf: [{$ref}]`, as kube-apiserver serves them).
//!
//! On top of that this module adds what the generated schemas lack:
//! `x-kubernetes-group-version-kind` on every kind, the `<Kind>List` schemas
//! (k8s-openapi's generic `List<T>` has no schema), the meta kinds the
//! operations refer to (`Status`, `DeleteOptions`, `Patch`, …), and a few
//! fix-ups (`Quantity`, `IntOrString`, `metadata` not being `required`).

use k8s_openapi::api::{
    apps, authentication, authorization, autoscaling, batch, coordination, core, discovery, events,
    networking, policy, rbac, scheduling, storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use k8s_openapi::Resource;
use serde_json::{json, Map, Value};

/// Prefix of every `$ref` in the v3 documents.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// Schema names of the meta types every document carries.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// One kind with a schema: its group/version/kind and how to register it.
pub(crate) struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    register: fn(&mut SchemaGenerator) -> String,
}

/// Registers `T` (and what it references) in `gen`; returns its schema name.
fn register<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($($ty:ty),* $(,)?) => {
        &[$(KindSchema {
            group: <$ty as Resource>::GROUP,
            version: <$ty as Resource>::VERSION,
            kind: <$ty as Resource>::KIND,
            register: register::<$ty>,
        }),*]
    };
}

/// Every kind skiff can describe: the served kinds of the catalogue, plus the
/// kinds that only travel as subresource or review bodies. A served kind that is
/// missing here still gets a permissive placeholder schema (see [`placeholder`]).
pub(crate) static KINDS: &[KindSchema] = kinds![
    core::v1::Namespace,
    core::v1::Pod,
    core::v1::Service,
    core::v1::Endpoints,
    core::v1::ConfigMap,
    core::v1::Secret,
    core::v1::ServiceAccount,
    core::v1::Node,
    core::v1::Event,
    core::v1::PersistentVolume,
    core::v1::PersistentVolumeClaim,
    core::v1::LimitRange,
    core::v1::ResourceQuota,
    core::v1::ReplicationController,
    core::v1::ComponentStatus,
    core::v1::PodTemplate,
    core::v1::Binding,
    apps::v1::Deployment,
    apps::v1::ReplicaSet,
    apps::v1::DaemonSet,
    apps::v1::StatefulSet,
    apps::v1::ControllerRevision,
    batch::v1::Job,
    batch::v1::CronJob,
    autoscaling::v1::HorizontalPodAutoscaler,
    autoscaling::v1::Scale,
    autoscaling::v2::HorizontalPodAutoscaler,
    policy::v1::PodDisruptionBudget,
    policy::v1::Eviction,
    coordination::v1::Lease,
    discovery::v1::EndpointSlice,
    networking::v1::Ingress,
    networking::v1::IngressClass,
    networking::v1::NetworkPolicy,
    rbac::v1::Role,
    rbac::v1::ClusterRole,
    rbac::v1::RoleBinding,
    rbac::v1::ClusterRoleBinding,
    storage::v1::StorageClass,
    events::v1::Event,
    scheduling::v1::PriorityClass,
    authorization::v1::SelfSubjectAccessReview,
    authorization::v1::SelfSubjectRulesReview,
    authorization::v1::SubjectAccessReview,
    authorization::v1::LocalSubjectAccessReview,
    authentication::v1::TokenRequest,
    authentication::v1::TokenReview,
    authentication::v1::SelfSubjectReview,
];

/// The [`KINDS`] entry of a group/version/kind.
pub(crate) fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static KindSchema> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The `x-kubernetes-group-version-kind` entry of one kind.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Schemas of one document, filled by [`Schemas::kind`] and finished by
/// [`Schemas::finish`].
pub(crate) struct Schemas {
    gen: SchemaGenerator,
    /// Schema name → the GVKs to tag it with.
    tags: Vec<(String, Vec<Value>)>,
    /// Kinds whose `metadata` is not required (every registered kind).
    kinds: Vec<String>,
    /// `(list name, item name, list GVK)` of list schemas to add.
    lists: Vec<(String, String, Value)>,
    /// Placeholder schemas for kinds missing from [`KINDS`].
    extra: Vec<(String, Value)>,
}

impl Schemas {
    /// A generator for the document of `group`/`version`, with the meta types
    /// already registered.
    pub(crate) fn new(group: &str, version: &str) -> Schemas {
        let settings = SchemaSettings::openapi3().with(|s| s.meta_schema = None);
        let mut s = Schemas {
            gen: settings.into_generator(),
            tags: Vec::new(),
            kinds: Vec::new(),
            lists: Vec::new(),
            extra: Vec::new(),
        };
        let status = register::<meta::Status>(&mut s.gen);
        s.tag(status, gvk("", "v1", "Status"));
        let delete = register::<meta::DeleteOptions>(&mut s.gen);
        s.tag(delete.clone(), gvk("", "v1", "DeleteOptions"));
        s.tag(delete, gvk(group, version, "DeleteOptions"));
        let watch = register::<meta::WatchEvent<()>>(&mut s.gen);
        s.tag(watch.clone(), gvk("", "v1", "WatchEvent"));
        s.tag(watch, gvk(group, version, "WatchEvent"));
        let arl = register::<meta::APIResourceList>(&mut s.gen);
        s.tag(arl, gvk("", "v1", "APIResourceList"));
        register::<meta::Patch>(&mut s.gen);
        register::<meta::ListMeta>(&mut s.gen);
        register::<meta::ObjectMeta>(&mut s.gen);
        s
    }

    fn tag(&mut self, name: String, gvk: Value) {
        match self.tags.iter_mut().find(|(n, _)| *n == name) {
            Some((_, gvks)) => {
                if !gvks.contains(&gvk) {
                    gvks.push(gvk)
                }
            }
            None => self.tags.push((name, vec![gvk])),
        }
    }

    /// Registers a kind (and, with `list`, its `<Kind>List`); returns its schema
    /// name. Kinds without a k8s-openapi type get a permissive placeholder.
    pub(crate) fn kind(&mut self, group: &str, version: &str, kind: &str, list: bool) -> String {
        let name = match find_kind(group, version, kind) {
            Some(k) => (k.register)(&mut self.gen),
            None => {
                let name = placeholder_name(group, version, kind);
                if !self.extra.iter().any(|(n, _)| *n == name) {
                    self.extra.push((name.clone(), placeholder(kind)));
                }
                name
            }
        };
        self.tag(name.clone(), gvk(group, version, kind));
        if !self.kinds.contains(&name) {
            self.kinds.push(name.clone());
        }
        if list {
            let list_kind = format!("{kind}List");
            let list_name = format!("{name}List");
            if !self.lists.iter().any(|(n, _, _)| *n == list_name) {
                self.lists
                    .push((list_name, name.clone(), gvk(group, version, &list_kind)));
            }
        }
        name
    }

    /// The finished `components/schemas` map, sorted by name.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        let mut defs = self.gen.take_definitions(true);
        for (name, schema) in std::mem::take(&mut self.extra) {
            defs.insert(name, schema);
        }
        for (list_name, item, list_gvk) in std::mem::take(&mut self.lists) {
            let list = list_schema(&defs, &item, list_gvk);
            defs.insert(list_name, list);
        }
        if let Some(q) = defs.get_mut(QUANTITY) {
            fix_quantity(q);
        }
        if let Some(ios) = defs.get_mut(INT_OR_STRING) {
            fix_int_or_string(ios);
        }
        for name in &self.kinds {
            if let Some(Value::Object(schema)) = defs.get_mut(name) {
                unrequire_metadata(schema);
            }
        }
        for (name, gvks) in self.tags {
            if let Some(Value::Object(schema)) = defs.get_mut(&name) {
                schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
            }
        }
        let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.into_iter().collect()
    }
}

/// kube-apiserver does not mark `metadata` required; k8s-openapi does (its Rust
/// field is not optional). Follow the server so `kubectl explain` matches.
fn unrequire_metadata(schema: &mut Map<String, Value>) {
    let empty = match schema.get_mut("required") {
        Some(Value::Array(req)) => {
            req.retain(|v| v != "metadata");
            req.is_empty()
        }
        _ => false,
    };
    if empty {
        schema.remove("required");
    }
}

/// Quantity is serialized as a string (or a bare number); as kube-apiserver's v3
/// documents do, leave the top-level `type` out so `kubectl explain` shows
/// `<Quantity>`, and drop k8s-openapi's `x-kubernetes-int-or-string`.
fn fix_quantity(q: &mut Value) {
    if let Value::Object(m) = q {
        m.remove("x-kubernetes-int-or-string");
        m.insert(
            "oneOf".into(),
            json!([{ "type": "string" }, { "type": "number" }]),
        );
    }
}

fn fix_int_or_string(ios: &mut Value) {
    if let Value::Object(m) = ios {
        m.insert("format".into(), json!("int-or-string"));
        m.insert(
            "oneOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
        m.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
    }
}

/// The `<Kind>List` schema: apiVersion/kind copied from the item's schema.
fn list_schema(defs: &Map<String, Value>, item: &str, list_gvk: Value) -> Value {
    let item_props = defs.get(item).and_then(|s| s.get("properties"));
    let prop = |key: &str| {
        item_props
            .and_then(|p| p.get(key))
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    let kind = list_gvk
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let item_kind = kind.strip_suffix("List").unwrap_or(&kind).to_string();
    json!({
        "description": format!("{kind} is a list of {item_kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": prop("apiVersion"),
            "items": {
                "description": format!("The {item_kind} objects of the list."),
                "type": "array",
                "items": { "$ref": format!("{REF_PREFIX}{item}") },
            },
            "kind": prop("kind"),
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [{ "$ref": format!("{REF_PREFIX}{LIST_META}") }],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [list_gvk],
    })
}

/// Name of the placeholder schema of a kind k8s-openapi does not know.
fn placeholder_name(group: &str, version: &str, kind: &str) -> String {
    let g = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    format!("io.k8s.api.{g}.{version}.{kind}")
}

/// A permissive schema for a kind without a k8s-openapi type.
fn placeholder(kind: &str) -> Value {
    json!({
        "description": format!("{kind} (no schema is published for this kind)."),
        "type": "object",
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "metadata": { "allOf": [{ "$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta") }] },
        },
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The `$ref` value of a schema name.
pub(crate) fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}
