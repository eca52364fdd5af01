//! Patch metadata for built-in kinds, shared by strategic merge patch and
//! server-side apply.
//!
//! Owns a compact, hand-written table ([`SCHEMA_TEXT`]) describing, for each
//! built-in kind, the types reachable from it down to every field whose
//! merge behaviour is not the default:
//!
//! * lists merged by key (`merge(name)` for strategic merge patch,
//!   `map(name)` / `map(port,protocol=TCP)` for server-side apply),
//! * lists of scalars merged as sets (`merge` / `set`),
//! * atomic structs and maps (replaced as a whole; owned as one field),
//! * `retainKeys` and `replace` patch strategies.
//!
//! Anything not described falls back to the defaults: objects merge key by
//! key, lists are atomic (replaced whole). Types are shared by name, so
//! `PodSpec` is described once and reached from Pod, PodTemplate,
//! Deployment, Job, ... through `PodTemplateSpec`.
//!
//! The table is parsed once into a [`Schema`] on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The description of built-in kinds, one statement per line.
///
/// ```text
/// kinds <group>: <Kind>...      kinds whose root type is named like the kind
///                               (`core` is the legacy "" group)
/// type <Name> [atomic]          a struct; `atomic` = replaced/owned as a whole
///   <field> [<child>] <opts>    a field of the type above
/// ```
///
/// `<child>` is `Type` (struct), `[Type]` (list of Type), `[]` (list of
/// scalars or undescribed objects) or `{}` (string-keyed map). Options:
/// `atomic`, `merge(key)` / `merge` (strategic merge by key / as a set of
/// scalars), `retainKeys`, `replace` (strategic merge patch strategies),
/// `map(k1,k2=default)` / `set` (server-side apply list types).
/// Every kind implicitly has `metadata ObjectMeta`.
pub const SCHEMA_TEXT: &str = r#"
kinds core: Pod PodTemplate ReplicationController Service Endpoints Node Namespace
kinds core: ConfigMap Secret ServiceAccount PersistentVolume PersistentVolumeClaim
kinds core: Event ResourceQuota LimitRange ComponentStatus Binding
kinds apps: Deployment ReplicaSet DaemonSet StatefulSet ControllerRevision
kinds batch: Job CronJob
kinds autoscaling: HorizontalPodAutoscaler Scale
kinds policy: PodDisruptionBudget Eviction
kinds networking.k8s.io: Ingress IngressClass NetworkPolicy
kinds rbac.authorization.k8s.io: Role ClusterRole RoleBinding ClusterRoleBinding
kinds coordination.k8s.io: Lease
kinds discovery.k8s.io: EndpointSlice
kinds events.k8s.io: Event=EventsV1Event
kinds storage.k8s.io: StorageClass CSIDriver CSINode VolumeAttachment
kinds scheduling.k8s.io: PriorityClass
kinds node.k8s.io: RuntimeClass
kinds certificates.k8s.io: CertificateSigningRequest
kinds admissionregistration.k8s.io: ValidatingWebhookConfiguration MutatingWebhookConfiguration
kinds admissionregistration.k8s.io: ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding
kinds apiextensions.k8s.io: CustomResourceDefinition
kinds apiregistration.k8s.io: APIService
kinds flowcontrol.apiserver.k8s.io: FlowSchema PriorityLevelConfiguration

# --- metadata and shared references ---
# Root of kinds without a description (custom resources): only metadata is
# known, which server-side apply needs for finalizers and ownerReferences.
type Unstructured
type ObjectMeta
  labels {}
  annotations {}
  ownerReferences [OwnerReference] merge(uid) map(uid)
  finalizers [] merge set
  managedFields [] atomic
type OwnerReference atomic
type LabelSelector atomic
type ObjectReference atomic
type LocalObjectReference atomic
type TypedLocalObjectReference atomic
type NodeSelector atomic
type StatusWithConditions
  conditions [] merge(type) map(type)

# --- pods ---
type Pod
  spec PodSpec
  status PodStatus
type PodTemplate
  template PodTemplateSpec
type PodTemplateSpec
  spec PodSpec
type PodSpec
  volumes [Volume] merge(name) retainKeys map(name)
  initContainers [Container] merge(name) map(name)
  containers [Container] merge(name) map(name)
  ephemeralContainers [Container] merge(name) map(name)
  imagePullSecrets [LocalObjectReference] merge(name) map(name)
  hostAliases [] merge(ip) map(ip)
  topologySpreadConstraints [TopologySpreadConstraint] merge(topologyKey) map(topologyKey,whenUnsatisfiable)
  schedulingGates [] merge(name) map(name)
  resourceClaims [] merge(name) retainKeys map(name)
  nodeSelector {} atomic
  overhead {}
  affinity Affinity
  tolerations [] atomic
type TopologySpreadConstraint
  labelSelector LabelSelector
type Affinity
  nodeAffinity NodeAffinity
type NodeAffinity
  requiredDuringSchedulingIgnoredDuringExecution NodeSelector
type Container
  ports [] merge(containerPort) map(containerPort,protocol=TCP)
  env [EnvVar] merge(name) map(name)
  volumeMounts [] merge(mountPath) map(mountPath)
  volumeDevices [] merge(devicePath) map(devicePath)
  resources ResourceRequirements
type EnvVar
  valueFrom EnvVarSource
type EnvVarSource
  configMapKeyRef KeySelector
  secretKeyRef KeySelector
  fieldRef KeySelector
  resourceFieldRef KeySelector
type KeySelector atomic
type ResourceRequirements
  limits {}
  requests {}
  claims [] map(name)
type Volume
  ephemeral EphemeralVolumeSource
type EphemeralVolumeSource
  volumeClaimTemplate PersistentVolumeClaimTemplate
type PersistentVolumeClaimTemplate
  spec PersistentVolumeClaimSpec
type PodStatus
  conditions [] merge(type) map(type)
  podIPs [] merge(ip) map(ip)
  hostIPs [] merge(ip) atomic
  resourceClaimStatuses [] merge(name) retainKeys map(name)

# --- workloads ---
type ReplicationController
  spec ReplicationControllerSpec
  status StatusWithConditions
type ReplicationControllerSpec
  selector {} atomic
  template PodTemplateSpec
type Deployment
  spec DeploymentSpec
  status StatusWithConditions
type DeploymentSpec
  selector LabelSelector
  template PodTemplateSpec
  strategy retainKeys
type ReplicaSet
  spec WorkloadSpec
  status StatusWithConditions
type DaemonSet
  spec WorkloadSpec
  status StatusWithConditions
type StatefulSet
  spec WorkloadSpec
  status StatusWithConditions
type WorkloadSpec
  selector LabelSelector
  template PodTemplateSpec
  volumeClaimTemplates [] atomic
type Job
  spec WorkloadSpec
  status JobStatus
type JobStatus
  conditions [] merge(type) atomic
type CronJob
  spec CronJobSpec
type CronJobSpec
  jobTemplate JobTemplateSpec
type JobTemplateSpec
  spec WorkloadSpec
type HorizontalPodAutoscaler
  spec HorizontalPodAutoscalerSpec
  status StatusWithConditions
type HorizontalPodAutoscalerSpec
  scaleTargetRef ObjectReference
type PodDisruptionBudget
  spec PodDisruptionBudgetSpec
  status StatusWithConditions
type PodDisruptionBudgetSpec
  selector LabelSelector replace

# --- services, networking, cluster objects ---
type Service
  spec ServiceSpec
  status StatusWithConditions
type ServiceSpec
  ports [] merge(port) map(port,protocol=TCP)
  selector {} atomic
type ServiceAccount
  secrets [ObjectReference] merge(name) map(name)
type Node
  spec NodeSpec
  status NodeStatus
type NodeSpec
  podCIDRs [] merge set
type NodeStatus
  conditions [] merge(type) map(type)
  addresses [] merge(type) map(type)
  capacity {}
  allocatable {}
type Namespace
  status StatusWithConditions
type ComponentStatus
  conditions [] merge(type) map(type)
type ConfigMap
  data {}
  binaryData {}
type Secret
  data {}
  stringData {}
type PersistentVolume
  spec PersistentVolumeSpec
type PersistentVolumeSpec
  capacity {}
  nodeAffinity VolumeNodeAffinity
type VolumeNodeAffinity
  required NodeSelector
type PersistentVolumeClaim
  spec PersistentVolumeClaimSpec
  status StatusWithConditions
type PersistentVolumeClaimSpec
  selector LabelSelector
  dataSource TypedLocalObjectReference
type Event
  involvedObject ObjectReference
  related ObjectReference
type EventsV1Event
  regarding ObjectReference
  related ObjectReference
type Binding
  target ObjectReference
type ResourceQuota
  spec ResourceQuotaSpec
type ResourceQuotaSpec
  hard {}
type Ingress
  spec IngressSpec
type IngressSpec
  defaultBackend IngressBackend
type IngressBackend
  resource TypedLocalObjectReference
type NetworkPolicy
  spec NetworkPolicySpec
type NetworkPolicySpec
  podSelector LabelSelector
type RoleBinding
  roleRef ObjectReference
type ClusterRoleBinding
  roleRef ObjectReference
type CSINode
  spec CSINodeSpec
type CSINodeSpec
  drivers [] merge(name) map(name)
type CertificateSigningRequest
  status KeyedConditionsStatus
type KeyedConditionsStatus
  conditions [] map(type)
type ValidatingWebhookConfiguration
  webhooks [Webhook] merge(name) map(name)
type MutatingWebhookConfiguration
  webhooks [Webhook] merge(name) map(name)
type Webhook
  matchConditions [] merge(name) map(name)
  namespaceSelector LabelSelector
  objectSelector LabelSelector
type ValidatingAdmissionPolicy
  spec ValidatingAdmissionPolicySpec
  status StatusWithConditions
type ValidatingAdmissionPolicySpec
  paramKind ObjectReference
  matchConditions [] merge(name) map(name)
  variables [] merge(name) map(name)
type CustomResourceDefinition
  status KeyedConditionsStatus
type APIService
  status StatusWithConditions
type FlowSchema
  status StatusWithConditions
type PriorityLevelConfiguration
  status StatusWithConditions
"#;

/// Shape of a described field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct (or an object of undescribed shape): merged field by field.
    Struct,
    /// A string-keyed map (`labels`, `data`, resource lists...).
    Map,
    /// A list.
    List,
}

/// One key of an associative list, with the value used when an item omits
/// it (e.g. `protocol` defaults to `TCP` for container and service ports).
#[derive(Debug, Clone, PartialEq)]
pub struct ListKey {
    /// Field name of the key inside each item.
    pub name: String,
    /// Value assumed when the item does not set the key.
    pub default: Option<Value>,
}

/// How server-side apply treats a list.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ListType {
    /// Replaced and owned as a whole (the default).
    #[default]
    Atomic,
    /// A set of scalars; each value is owned separately (`v:<json>`).
    Set,
    /// An associative list; items are identified by these keys (`k:{...}`).
    Map(Vec<ListKey>),
}

/// Merge behaviour of one field of a described type.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// Named type of the field (of the list items for lists), if described.
    pub type_name: Option<String>,
    /// Struct, map or list.
    pub shape: Shape,
    /// Atomic struct/map: replaced and owned as a whole by server-side apply.
    pub atomic: bool,
    /// Server-side apply list type (lists only).
    pub list_type: ListType,
    /// Strategic merge patch: the list is merged (by `merge_key` for lists of
    /// objects, as a set for lists of scalars) instead of replaced.
    pub smp_merge: bool,
    /// Strategic merge patch merge key.
    pub merge_key: Option<String>,
    /// Strategic merge patch `retainKeys` strategy.
    pub retain_keys: bool,
    /// Strategic merge patch `replace` strategy on a struct.
    pub smp_replace: bool,
}

impl FieldDef {
    fn new(shape: Shape) -> Self {
        FieldDef {
            type_name: None,
            shape,
            atomic: false,
            list_type: ListType::Atomic,
            smp_merge: false,
            merge_key: None,
            retain_keys: false,
            smp_replace: false,
        }
    }

    /// The described type of the field (of its items for lists).
    pub fn child(&self) -> Option<&'static TypeDef> {
        self.type_name.as_deref().and_then(|n| schema().type_def(n))
    }
}

/// A described struct type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeDef {
    /// Name of the type in the table.
    pub name: String,
    /// The struct is atomic (`+structType=atomic`).
    pub atomic: bool,
    /// Described fields by JSON name.
    pub fields: HashMap<String, FieldDef>,
}

impl TypeDef {
    /// The description of field `name`, if it deviates from the defaults.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(name)
    }
}

/// The parsed table.
#[derive(Debug, Default)]
pub struct Schema {
    types: HashMap<String, TypeDef>,
    kinds: HashMap<(String, String), String>,
    /// Problems found while parsing [`SCHEMA_TEXT`] (empty when well formed).
    pub errors: Vec<String>,
}

impl Schema {
    /// The type named `name`.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// The root type of a built-in kind; `None` for kinds this server has no
    /// patch metadata for (custom resources). The version is not consulted:
    /// merge behaviour does not differ between served versions of a kind.
    pub fn root(&self, group: &str, kind: &str) -> Option<&TypeDef> {
        let group = if group == "core" { "" } else { group };
        self.kinds
            .get(&(group.to_string(), kind.to_string()))
            .and_then(|t| self.types.get(t))
    }

    /// The root type for an object of kind `kind`: the kind's own root, or a
    /// type describing only object metadata for undescribed kinds.
    pub fn root_or_unstructured(&self, group: &str, kind: &str) -> Option<&TypeDef> {
        self.root(group, kind)
            .or_else(|| self.types.get(UNSTRUCTURED))
    }

    /// All described kinds as `(group, kind)`.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds.keys().map(|(g, k)| (g.as_str(), k.as_str()))
    }
}

/// Name of the root type used for kinds without a description.
pub const UNSTRUCTURED: &str = "Unstructured";

/// The schema parsed from [`SCHEMA_TEXT`].
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(SCHEMA_TEXT))
}

/// Whether a field of an undescribed object is, by its name, a string-keyed
/// map rather than a struct. Only used to decide whether ownership of a newly
/// created object records the object itself (`.`), as kube does for maps.
pub fn looks_like_map(field: &str) -> bool {
    matches!(
        field,
        "labels"
            | "annotations"
            | "nodeSelector"
            | "matchLabels"
            | "data"
            | "binaryData"
            | "stringData"
            | "limits"
            | "requests"
            | "capacity"
            | "allocatable"
            | "hard"
            | "used"
            | "parameters"
            | "overhead"
    )
}

/// Parses the table format documented on [`SCHEMA_TEXT`].
pub fn parse(text: &str) -> Schema {
    let mut schema = Schema::default();
    let mut current: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let lineno = n + 1;
        let indented = line.starts_with(' ');
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if indented {
            let Some(type_name) = current.clone() else {
                schema
                    .errors
                    .push(format!("line {lineno}: field outside of a type"));
                continue;
            };
            match parse_field(words) {
                Ok(def) => {
                    if let Some(t) = schema.types.get_mut(&type_name) {
                        t.fields.insert(first.to_string(), def);
                    }
                }
                Err(e) => schema.errors.push(format!("line {lineno}: {e}")),
            }
            continue;
        }
        match first {
            "kinds" => {
                let Some(group) = words.next().and_then(|g| g.strip_suffix(':')) else {
                    schema
                        .errors
                        .push(format!("line {lineno}: expected `kinds <group>:`"));
                    continue;
                };
                let group = if group == "core" { "" } else { group };
                for k in words {
                    let (kind, root) = k.split_once('=').unwrap_or((k, k));
                    schema
                        .kinds
                        .insert((group.to_string(), kind.to_string()), root.to_string());
                }
            }
            "type" => {
                let Some(name) = words.next() else {
                    schema
                        .errors
                        .push(format!("line {lineno}: expected a type name"));
                    continue;
                };
                let mut def = TypeDef {
                    name: name.to_string(),
                    ..TypeDef::default()
                };
                for w in words {
                    match w {
                        "atomic" => def.atomic = true,
                        other => schema
                            .errors
                            .push(format!("line {lineno}: unknown type option {other:?}")),
                    }
                }
                if schema.types.insert(name.to_string(), def).is_some() {
                    schema
                        .errors
                        .push(format!("line {lineno}: type {name} defined twice"));
                }
                current = Some(name.to_string());
            }
            other => schema
                .errors
                .push(format!("line {lineno}: unknown statement {other:?}")),
        }
    }
    // Every kind has object metadata; kinds without described fields get an
    // empty root type.
    let mut roots: Vec<String> = schema.kinds.values().cloned().collect();
    roots.push(UNSTRUCTURED.to_string());
    for root in roots {
        let t = schema.types.entry(root.clone()).or_insert_with(|| TypeDef {
            name: root,
            ..TypeDef::default()
        });
        t.fields
            .entry("metadata".to_string())
            .or_insert_with(|| FieldDef {
                type_name: Some("ObjectMeta".to_string()),
                ..FieldDef::new(Shape::Struct)
            });
    }
    let mut dangling = Vec::new();
    for t in schema.types.values() {
        for (f, def) in &t.fields {
            if let Some(n) = &def.type_name {
                if !schema.types.contains_key(n) {
                    dangling.push(format!("{}.{f} refers to undefined type {n}", t.name));
                }
            }
        }
    }
    schema.errors.extend(dangling);
    schema
}

fn parse_field<'a>(words: impl Iterator<Item = &'a str>) -> Result<FieldDef, String> {
    let mut def = FieldDef::new(Shape::Struct);
    for (i, w) in words.enumerate() {
        if i == 0 {
            if w == "{}" {
                def.shape = Shape::Map;
                continue;
            }
            if let Some(inner) = w.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                def.shape = Shape::List;
                if !inner.is_empty() {
                    def.type_name = Some(inner.to_string());
                }
                continue;
            }
            if w.starts_with(|c: char| c.is_ascii_uppercase()) {
                def.type_name = Some(w.to_string());
                continue;
            }
        }
        match w {
            "atomic" => def.atomic = true,
            "merge" => def.smp_merge = true,
            "retainKeys" => def.retain_keys = true,
            "replace" => def.smp_replace = true,
            "set" => def.list_type = ListType::Set,
            _ => {
                if let Some(key) = w.strip_prefix("merge(").and_then(|s| s.strip_suffix(')')) {
                    def.smp_merge = true;
                    def.merge_key = Some(key.to_string());
                } else if let Some(keys) = w.strip_prefix("map(").and_then(|s| s.strip_suffix(')'))
                {
                    let keys = keys
                        .split(',')
                        .map(|k| match k.split_once('=') {
                            Some((name, d)) => ListKey {
                                name: name.to_string(),
                                default: Some(Value::String(d.to_string())),
                            },
                            None => ListKey {
                                name: k.to_string(),
                                default: None,
                            },
                        })
                        .collect();
                    def.list_type = ListType::Map(keys);
                } else {
                    return Err(format!("unknown field option {w:?}"));
                }
            }
        }
    }
    if def.shape != Shape::List && (def.list_type != ListType::Atomic || def.merge_key.is_some()) {
        return Err("list options on a field that is not a list".to_string());
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_well_formed() {
        let s = schema();
        assert!(s.errors.is_empty(), "{:#?}", s.errors);
        assert!(s.kinds().count() > 40);
    }

    #[test]
    fn lookups() {
        let s = schema();
        let dep = s.root("apps", "Deployment").unwrap();
        let spec = dep.field("spec").unwrap().child().unwrap();
        let tmpl = spec.field("template").unwrap().child().unwrap();
        let pod = tmpl.field("spec").unwrap().child().unwrap();
        let containers = pod.field("containers").unwrap();
        assert_eq!(containers.merge_key.as_deref(), Some("name"));
        let c = containers.child().unwrap();
        let ports = c.field("ports").unwrap();
        assert_eq!(ports.merge_key.as_deref(), Some("containerPort"));
        match &ports.list_type {
            ListType::Map(keys) => {
                assert_eq!(keys.len(), 2);
                assert_eq!(keys[1].default, Some(Value::String("TCP".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(spec.field("selector").unwrap().child().unwrap().atomic);
        assert!(pod.field("tolerations").unwrap().merge_key.is_none());
        assert!(s.root("", "Pod").is_some());
        assert!(s.root("core", "Pod").is_some());
        assert!(s.root("example.com", "Widget").is_none());
        let meta = s
            .root("", "ConfigMap")
            .unwrap()
            .field("metadata")
            .unwrap()
            .child()
            .unwrap();
        assert_eq!(meta.field("finalizers").unwrap().list_type, ListType::Set);
    }

    #[test]
    fn parse_errors_are_reported() {
        let s = parse("type ObjectMeta\ntype A\n  x [B] frob\n  y Missing\nbogus\n");
        assert_eq!(s.errors.len(), 3, "{:?}", s.errors);
    }
}
