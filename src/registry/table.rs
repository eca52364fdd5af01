//! Server-side table printing: the column definitions and row cells kube-apiserver
//! returns for `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, which is what
//! `kubectl get` prints.
//!
//! Columns follow kube-apiserver 1.32's printers: the same names (kubectl upper-cases
//! them), types, order and priorities (priority 1 columns are the `-o wide` extras).
//! Cells are always produced for every column, wide ones included, as the server
//! does; kubectl drops the priority-1 cells itself unless asked for `-o wide`.
//!
//! Kinds without a dedicated printer in kube (Role, ClusterRole, LimitRange) get the
//! generic `Name` / `Created At` table; kinds unknown to this module get `Name` / `Age`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::api::selector::{format_label_selector, format_labels, LabelSelector};

/// One column of a Table (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Display name, e.g. `Name`, `Up-to-date`, `Nominated Node`.
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the object-name column, empty otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for the `-o wide` ones.
    pub priority: i32,
}

impl Column {
    /// The `TableColumnDefinition` JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description:
        "Name of the object, unique within its namespace (or the cluster for cluster-scoped kinds).",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "Time elapsed since the object was created.",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of the containers in the pod template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images of the containers in the pod template.",
);
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "Label selector for the pods this object manages.",
);

/// The column definitions kube-apiserver uses for `group`/`kind` (`""` is the core
/// group).
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    match (group, kind) {
        ("", "Namespace") => vec![
            NAME,
            col("Status", "string", "Lifecycle phase of the namespace."),
            AGE,
        ],
        ("", "Pod") => vec![
            NAME,
            col(
                "Ready",
                "string",
                "Ready containers out of all containers in the pod.",
            ),
            col(
                "Status",
                "string",
                "Summary of the pod's and its containers' state.",
            ),
            col(
                "Restarts",
                "string",
                "Container restarts, and how long ago the last one was.",
            ),
            AGE,
            wide("IP", "string", "Primary IP address of the pod."),
            wide("Node", "string", "Node the pod is bound to."),
            wide(
                "Nominated Node",
                "string",
                "Node the scheduler nominated for preemption.",
            ),
            wide(
                "Readiness Gates",
                "string",
                "Readiness gates whose condition is true, out of all.",
            ),
        ],
        ("", "Service") => vec![
            NAME,
            col("Type", "string", "How the service is exposed."),
            col(
                "Cluster-IP",
                "string",
                "Virtual IP of the service inside the cluster.",
            ),
            col(
                "External-IP",
                "string",
                "Addresses the service is reachable at from outside.",
            ),
            col(
                "Port(s)",
                "string",
                "Service ports, with node ports where allocated.",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Labels of the pods traffic is routed to.",
            ),
        ],
        ("", "Endpoints") => vec![
            NAME,
            col("Endpoints", "string", "Ready addresses and ports."),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            col("Data", "string", "Number of data and binaryData entries."),
            AGE,
        ],
        ("", "Secret") => vec![
            NAME,
            col("Type", "string", "Type of the secret data."),
            col("Data", "string", "Number of data entries."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![
            NAME,
            col("Secrets", "string", "Number of referenced secrets."),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            col(
                "Status",
                "string",
                "Readiness of the node, and whether it takes new pods.",
            ),
            col(
                "Roles",
                "string",
                "Roles from node-role.kubernetes.io labels.",
            ),
            AGE,
            col("Version", "string", "Kubelet version."),
            wide(
                "Internal-IP",
                "string",
                "First internal address of the node.",
            ),
            wide(
                "External-IP",
                "string",
                "First external address of the node.",
            ),
            wide("OS-Image", "string", "Operating system image."),
            wide("Kernel-Version", "string", "Kernel version."),
            wide(
                "Container-Runtime",
                "string",
                "Container runtime and version.",
            ),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            col(
                "Last Seen",
                "string",
                "Time since the event was last observed.",
            ),
            col("Type", "string", "Type of the event (Normal, Warning)."),
            col("Reason", "string", "Short machine-readable reason."),
            col("Object", "string", "The object the event is about."),
            wide("Subobject", "string", "Field path within the object."),
            wide(
                "Source",
                "string",
                "Component (and host) that reported the event.",
            ),
            col("Message", "string", "Human-readable description."),
            wide(
                "First Seen",
                "string",
                "Time since the event was first observed.",
            ),
            wide("Count", "string", "Number of times the event occurred."),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            col("Capacity", "string", "Storage capacity."),
            col("Access Modes", "string", "Ways the volume can be mounted."),
            col(
                "Reclaim Policy",
                "string",
                "What happens to the volume when released.",
            ),
            col("Status", "string", "Phase of the volume."),
            col("Claim", "string", "Claim bound to the volume."),
            col("StorageClass", "string", "Storage class of the volume."),
            col(
                "VolumeAttributesClass",
                "string",
                "Volume attributes class of the volume.",
            ),
            col("Reason", "string", "Reason for a failed phase."),
            AGE,
            wide("VolumeMode", "string", "Filesystem or Block."),
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            col("Status", "string", "Phase of the claim."),
            col("Volume", "string", "Volume bound to the claim."),
            col(
                "Capacity",
                "string",
                "Storage capacity of the bound volume.",
            ),
            col(
                "Access Modes",
                "string",
                "Access modes of the bound volume.",
            ),
            col("StorageClass", "string", "Storage class of the claim."),
            col(
                "VolumeAttributesClass",
                "string",
                "Volume attributes class of the claim.",
            ),
            AGE,
            wide("VolumeMode", "string", "Filesystem or Block."),
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            AGE,
            col("Request", "string", "Used and hard request quotas."),
            col("Limit", "string", "Used and hard limit quotas."),
        ],
        ("", "ReplicationController") => vec![
            NAME,
            col("Desired", "integer", "Desired number of replicas."),
            col("Current", "integer", "Number of replicas that exist."),
            col("Ready", "integer", "Number of ready replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "ComponentStatus") => vec![
            NAME,
            col("Status", "string", "Health of the component."),
            col("Message", "string", "Message of the health condition."),
            col("Error", "string", "Error of the health condition."),
        ],
        ("", "PodTemplate") => vec![
            NAME,
            col(
                "Containers",
                "string",
                "Names of the containers in the template.",
            ),
            col(
                "Images",
                "string",
                "Images of the containers in the template.",
            ),
            col("Pod Labels", "string", "Labels of the pod template."),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "string", "Ready replicas out of desired."),
            col(
                "Up-to-date",
                "string",
                "Replicas running the latest template.",
            ),
            col("Available", "string", "Replicas available to users."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            col("Desired", "integer", "Desired number of replicas."),
            col("Current", "integer", "Number of replicas that exist."),
            col("Ready", "integer", "Number of ready replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "Nodes that should run the daemon pod.",
            ),
            col(
                "Current",
                "integer",
                "Nodes running at least one daemon pod.",
            ),
            col("Ready", "integer", "Nodes with a ready daemon pod."),
            col(
                "Up-to-date",
                "integer",
                "Nodes running the latest template.",
            ),
            col(
                "Available",
                "integer",
                "Nodes with an available daemon pod.",
            ),
            col(
                "Node Selector",
                "string",
                "Node selector of the pod template.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => vec![
            NAME,
            col("Ready", "string", "Ready replicas out of desired."),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "ControllerRevision") => vec![
            NAME,
            col(
                "Controller",
                "string",
                "The object controlling this revision.",
            ),
            col("Revision", "string", "Revision number."),
            AGE,
        ],
        ("batch", "Job") => vec![
            NAME,
            col("Status", "string", "Current state of the job."),
            col(
                "Completions",
                "string",
                "Succeeded pods out of required completions.",
            ),
            col(
                "Duration",
                "string",
                "Time the job ran or has been running.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            col("Schedule", "string", "Cron schedule."),
            col("Timezone", "string", "Time zone of the schedule."),
            col("Suspend", "boolean", "Whether new runs are suspended."),
            col("Active", "integer", "Number of running jobs."),
            col(
                "Last Schedule",
                "string",
                "Time since a job was last scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            col("Reference", "string", "The scaled workload."),
            col("Targets", "string", "Current and target metric values."),
            col("MinPods", "string", "Lower replica bound."),
            col("MaxPods", "string", "Upper replica bound."),
            col("Replicas", "string", "Current number of replicas."),
            AGE,
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            col("Min Available", "string", "Pods that must stay available."),
            col("Max Unavailable", "string", "Pods that may be unavailable."),
            col(
                "Allowed Disruptions",
                "integer",
                "Pod disruptions currently allowed.",
            ),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            col("Holder", "string", "Current holder of the lease."),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            col("AddressType", "string", "Type of the addresses."),
            col("Ports", "string", "Ports of the slice."),
            col("Endpoints", "string", "Addresses of the endpoints."),
            AGE,
        ],
        ("networking.k8s.io", "Ingress") => vec![
            NAME,
            col("Class", "string", "Ingress class handling this ingress."),
            col("Hosts", "string", "Hosts the rules match."),
            col("Address", "string", "Load-balancer addresses."),
            col("Ports", "string", "Ports served."),
            AGE,
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            NAME,
            col("Controller", "string", "Controller implementing the class."),
            col("Parameters", "string", "Resource holding extra parameters."),
            AGE,
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            NAME,
            col("Pod-Selector", "string", "Pods the policy applies to."),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => vec![
            NAME,
            col("Role", "string", "The bound role."),
            AGE,
            wide("Users", "string", "Users bound."),
            wide("Groups", "string", "Groups bound."),
            wide("ServiceAccounts", "string", "Service accounts bound."),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            NAME,
            col("Provisioner", "string", "Volume provisioner."),
            col(
                "ReclaimPolicy",
                "string",
                "Reclaim policy of provisioned volumes.",
            ),
            col(
                "VolumeBindingMode",
                "string",
                "When volumes are bound and provisioned.",
            ),
            col(
                "AllowVolumeExpansion",
                "string",
                "Whether volumes can be expanded.",
            ),
            AGE,
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            NAME,
            col("Value", "integer", "Priority value."),
            col(
                "Global-Default",
                "boolean",
                "Whether this is the default priority class.",
            ),
            AGE,
            wide(
                "PreemptionPolicy",
                "string",
                "Preemption policy of pods in this class.",
            ),
        ],
        ("rbac.authorization.k8s.io", "Role")
        | ("rbac.authorization.k8s.io", "ClusterRole")
        | ("", "LimitRange") => vec![
            NAME,
            col("Created At", "date", "Time the object was created."),
        ],
        _ => vec![
            NAME,
            col("Age", "date", "Time elapsed since the object was created."),
        ],
    }
}

/// The row cells for `obj`, one per entry of [`columns`] for the same kind.
pub fn cells(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = Value::from(text(obj, &["metadata", "name"]));
    let age = || Value::from(age(obj, now));
    match (group, kind) {
        ("", "Namespace") => vec![name, text(obj, &["status", "phase"]).into(), age()],
        ("", "Pod") => pod_cells(obj, now),
        ("", "Service") => service_cells(obj, now),
        ("", "Endpoints") => vec![name, format_endpoints(obj).into(), age()],
        ("", "ConfigMap") => {
            let n = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
            vec![name, (n as i64).into(), age()]
        }
        ("", "Secret") => {
            let mut keys: HashSet<&str> = HashSet::new();
            for field in ["data", "stringData"] {
                if let Some(m) = at(obj, &[field]).and_then(Value::as_object) {
                    keys.extend(m.keys().map(String::as_str));
                }
            }
            vec![
                name,
                text(obj, &["type"]).into(),
                (keys.len() as i64).into(),
                age(),
            ]
        }
        ("", "ServiceAccount") => vec![name, (list(obj, &["secrets"]).len() as i64).into(), age()],
        ("", "Node") => node_cells(obj, now),
        ("", "Event") | ("events.k8s.io", "Event") => event_cells(group, obj, now),
        ("", "PersistentVolume") => pv_cells(obj, now),
        ("", "PersistentVolumeClaim") => pvc_cells(obj, now),
        ("", "ResourceQuota") => {
            let (request, limit) = quota_columns(obj);
            vec![name, age(), request.into(), limit.into()]
        }
        ("", "ReplicationController") => {
            let (names, images) =
                container_cells(at(obj, &["spec", "template", "spec", "containers"]));
            vec![
                name,
                int_or(obj, &["spec", "replicas"], 1).into(),
                int(obj, &["status", "replicas"]).into(),
                int(obj, &["status", "readyReplicas"]).into(),
                age(),
                names.into(),
                images.into(),
                format_labels(object(obj, &["spec", "selector"])).into(),
            ]
        }
        ("", "ComponentStatus") => {
            let mut status = "Unknown";
            let mut message = "";
            let mut error = "";
            if let Some(c) = list(obj, &["conditions"])
                .iter()
                .find(|c| text(c, &["type"]) == "Healthy")
            {
                status = if text(c, &["status"]) == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                };
                message = text(c, &["message"]);
                error = text(c, &["error"]);
            }
            vec![name, status.into(), message.into(), error.into()]
        }
        ("", "PodTemplate") => {
            let (names, images) = container_cells(at(obj, &["template", "spec", "containers"]));
            vec![
                name,
                names.into(),
                images.into(),
                format_labels(object(obj, &["template", "metadata", "labels"])).into(),
            ]
        }
        ("apps", "Deployment") => {
            let selector = match at(obj, &["spec", "selector"]) {
                None => Ok(LabelSelector::nothing()),
                Some(sel) => LabelSelector::from_label_selector_json(sel),
            };
            let selector = selector.map_or_else(|_| "<invalid>".to_string(), |s| s.to_string());
            let (names, images) = template_containers(obj);
            vec![
                name,
                format!(
                    "{}/{}",
                    int(obj, &["status", "readyReplicas"]),
                    int_or(obj, &["spec", "replicas"], 1)
                )
                .into(),
                int(obj, &["status", "updatedReplicas"]).into(),
                int(obj, &["status", "availableReplicas"]).into(),
                age(),
                names.into(),
                images.into(),
                selector.into(),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (names, images) = template_containers(obj);
            vec![
                name,
                int_or(obj, &["spec", "replicas"], 1).into(),
                int(obj, &["status", "replicas"]).into(),
                int(obj, &["status", "readyReplicas"]).into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(at(obj, &["spec", "selector"])).into(),
            ]
        }
        ("apps", "DaemonSet") => {
            let (names, images) = template_containers(obj);
            vec![
                name,
                int(obj, &["status", "desiredNumberScheduled"]).into(),
                int(obj, &["status", "currentNumberScheduled"]).into(),
                int(obj, &["status", "numberReady"]).into(),
                int(obj, &["status", "updatedNumberScheduled"]).into(),
                int(obj, &["status", "numberAvailable"]).into(),
                format_labels(object(obj, &["spec", "template", "spec", "nodeSelector"])).into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(at(obj, &["spec", "selector"])).into(),
            ]
        }
        ("apps", "StatefulSet") => {
            let (names, images) = template_containers(obj);
            vec![
                name,
                format!(
                    "{}/{}",
                    int(obj, &["status", "readyReplicas"]),
                    int_or(obj, &["spec", "replicas"], 1)
                )
                .into(),
                age(),
                names.into(),
                images.into(),
            ]
        }
        ("apps", "ControllerRevision") => vec![
            name,
            controller_of(obj).into(),
            int(obj, &["revision"]).into(),
            age(),
        ],
        ("batch", "Job") => job_cells(obj, now),
        ("batch", "CronJob") => {
            let last = match at(obj, &["status", "lastScheduleTime"]) {
                Some(v) if !v.is_null() => since(Some(v), now),
                _ => "<none>".to_string(),
            };
            let tz = at(obj, &["spec", "timeZone"])
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let suspend = match at(obj, &["spec", "suspend"]).and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
            let (names, images) =
                container_cells(job_spec.and_then(|s| at(s, &["template", "spec", "containers"])));
            vec![
                name,
                text(obj, &["spec", "schedule"]).into(),
                tz.into(),
                suspend.into(),
                (list(obj, &["status", "active"]).len() as i64).into(),
                last.into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(job_spec.and_then(|s| s.get("selector"))).into(),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let reference = format!(
                "{}/{}",
                text(obj, &["spec", "scaleTargetRef", "kind"]),
                text(obj, &["spec", "scaleTargetRef", "name"])
            );
            let min = match at(obj, &["spec", "minReplicas"]).and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => "<unset>".to_string(),
            };
            vec![
                name,
                reference.into(),
                hpa_targets(obj).into(),
                min.into(),
                int(obj, &["spec", "maxReplicas"]).into(),
                int(obj, &["status", "currentReplicas"]).into(),
                age(),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let bound = |field: &str| match at(obj, &["spec", field]) {
                Some(v) if !v.is_null() => int_or_string(v),
                _ => "N/A".to_string(),
            };
            vec![
                name,
                bound("minAvailable").into(),
                bound("maxUnavailable").into(),
                int(obj, &["status", "disruptionsAllowed"]).into(),
                age(),
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name, text(obj, &["spec", "holderIdentity"]).into(), age()]
        }
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name,
            text(obj, &["addressType"]).into(),
            slice_ports(obj).into(),
            slice_endpoints(obj).into(),
            age(),
        ],
        ("networking.k8s.io", "Ingress") => {
            let class = at(obj, &["spec", "ingressClassName"])
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let ports = if list(obj, &["spec", "tls"]).is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                class.into(),
                ingress_hosts(obj).into(),
                load_balancer_addresses(at(obj, &["status", "loadBalancer", "ingress"])).into(),
                ports.into(),
                age(),
            ]
        }
        ("networking.k8s.io", "IngressClass") => {
            let parameters = match at(obj, &["spec", "parameters"]) {
                Some(p) if p.is_object() => {
                    let mut s = text(p, &["kind"]).to_string();
                    if let Some(g) = p.get("apiGroup").and_then(Value::as_str) {
                        s.push('.');
                        s.push_str(g);
                    }
                    format!("{s}/{}", text(p, &["name"]))
                }
                _ => "<none>".to_string(),
            };
            vec![
                name,
                text(obj, &["spec", "controller"]).into(),
                parameters.into(),
                age(),
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            let empty = Value::Object(Map::new());
            let sel = at(obj, &["spec", "podSelector"])
                .filter(|v| !v.is_null())
                .unwrap_or(&empty);
            vec![name, format_label_selector(Some(sel)).into(), age()]
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let role = format!(
                "{}/{}",
                text(obj, &["roleRef", "kind"]),
                text(obj, &["roleRef", "name"])
            );
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for s in list(obj, &["subjects"]) {
                match text(s, &["kind"]) {
                    "User" => users.push(text(s, &["name"]).to_string()),
                    "Group" => groups.push(text(s, &["name"]).to_string()),
                    "ServiceAccount" => sas.push(format!(
                        "{}/{}",
                        text(s, &["namespace"]),
                        text(s, &["name"])
                    )),
                    _ => {}
                }
            }
            vec![
                name,
                role.into(),
                age(),
                users.join(", ").into(),
                groups.join(", ").into(),
                sas.join(", ").into(),
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let mut shown = text(obj, &["metadata", "name"]).to_string();
            let default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| text(obj, &["metadata", "annotations", a]) == "true");
            if default {
                shown.push_str(" (default)");
            }
            let reclaim = at(obj, &["reclaimPolicy"])
                .and_then(Value::as_str)
                .unwrap_or("Delete");
            let binding = at(obj, &["volumeBindingMode"])
                .and_then(Value::as_str)
                .unwrap_or("Immediate");
            let expand = at(obj, &["allowVolumeExpansion"])
                .and_then(Value::as_bool)
                .unwrap_or(false);
            vec![
                shown.into(),
                text(obj, &["provisioner"]).into(),
                reclaim.into(),
                binding.into(),
                expand.into(),
                age(),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            int(obj, &["value"]).into(),
            at(obj, &["globalDefault"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age(),
            text(obj, &["preemptionPolicy"]).into(),
        ],
        ("rbac.authorization.k8s.io", "Role")
        | ("rbac.authorization.k8s.io", "ClusterRole")
        | ("", "LimitRange") => {
            let created = timestamp(at(obj, &["metadata", "creationTimestamp"]))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let created = if created == DateTime::<Utc>::MIN_UTC {
                "0001-01-01T00:00:00Z".to_string()
            } else {
                created.to_rfc3339_opts(SecondsFormat::Secs, true)
            };
            vec![name, created.into()]
        }
        _ => vec![name, age()],
    }
}

/// kubectl's `HumanDuration`: a short, roughly two-significant-figure rendering
/// (`45s`, `3m2s`, `12m`, `5h3m`, `2d4h`, `40d`, `2y3d`, `9y`). Durations below
/// -1s print `<invalid>`, slightly negative ones `0s`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------
// JSON access helpers
// ---------------------------------------------------------------------------

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, path: &[&str]) -> i64 {
    int_or(v, path, 0)
}

fn int_or(v: &Value, path: &[&str], default: i64) -> i64 {
    match at(v, path) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(default),
        Some(Value::String(s)) => s.parse().unwrap_or(default),
        _ => default,
    }
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn object<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

fn map_len(v: &Value, path: &[&str]) -> usize {
    object(v, path).map_or(0, Map::len)
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn truthy(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// A resource quantity as stored (`"1Gi"`); an absent one prints as Go's zero
/// quantity, `0`.
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: `<unknown>` for a missing timestamp.
fn since(v: Option<&Value>, now: DateTime<Utc>) -> String {
    match timestamp(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    since(at(obj, &["metadata", "creationTimestamp"]), now)
}

/// Comma-joined container names and images (`layoutContainerCells`).
fn container_cells(containers: Option<&Value>) -> (String, String) {
    let containers = containers
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

fn template_containers(obj: &Value) -> (String, String) {
    container_cells(at(obj, &["spec", "template", "spec", "containers"]))
}

fn condition_true(obj: &Value, path: &[&str], type_: &str) -> bool {
    list(obj, path)
        .iter()
        .find(|c| text(c, &["type"]) == type_)
        .is_some_and(|c| text(c, &["status"]) == "True")
}

/// `N more` truncation shared by several list columns.
fn list_with_more(items: &[String], count: usize, max: usize) -> String {
    let joined = items.join(",");
    if count > max {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        return "<unset>".to_string();
    }
    joined
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------
// Per-kind printers
// ---------------------------------------------------------------------------

fn pod_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec_containers = list(obj, &["spec", "containers"]);
    let spec_init = list(obj, &["spec", "initContainers"]);
    let restartable: HashSet<&str> = spec_init
        .iter()
        .filter(|c| text(c, &["restartPolicy"]) == "Always")
        .map(|c| text(c, &["name"]))
        .collect();
    let total = spec_containers.len()
        + spec_init
            .iter()
            .filter(|c| text(c, &["restartPolicy"]) == "Always")
            .count();

    let phase = text(obj, &["status", "phase"]);
    let mut reason = phase.to_string();
    let status_reason = text(obj, &["status", "reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    for c in list(obj, &["status", "conditions"]) {
        if text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut ready = 0usize;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_restart: Option<DateTime<Utc>> = None;
    let later = |cur: Option<DateTime<Utc>>, cand: Option<DateTime<Utc>>| match (cur, cand) {
        (Some(a), Some(b)) if b > a => Some(b),
        (None, b) => b,
        (a, _) => a,
    };

    let init_statuses = list(obj, &["status", "initContainerStatuses"]);
    let mut initializing = false;
    for (i, cs) in init_statuses.iter().enumerate() {
        let count = int(cs, &["restartCount"]);
        let finished = timestamp(at(cs, &["lastState", "terminated", "finishedAt"]));
        restarts += count;
        last_restart = later(last_restart, finished);
        let is_restartable = restartable.contains(text(cs, &["name"]));
        if is_restartable {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, finished);
        }
        let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = text(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_restartable && truthy(cs, &["started"]) {
            if truthy(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = text(t, &["reason"]);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if int(t, &["signal"]) != 0 {
                format!("Init:Signal:{}", int(t, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(t, &["exitCode"]))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(obj, &["status", "conditions"], "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for cs in list(obj, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(cs, &["restartCount"]);
            last_restart = later(
                last_restart,
                timestamp(at(cs, &["lastState", "terminated", "finishedAt"])),
            );
            let waiting_reason = text(cs, &["state", "waiting", "reason"]);
            let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let r = text(t, &["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if int(t, &["signal"]) != 0 {
                    format!("Signal:{}", int(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", int(t, &["exitCode"]))
                };
            } else if truthy(cs, &["ready"])
                && at(cs, &["state", "running"]).is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(obj, &["status", "conditions"], "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let mut ip = obj
        .pointer("/status/podIPs/0/ip")
        .and_then(Value::as_str)
        .unwrap_or("");
    if ip.is_empty() {
        ip = text(obj, &["status", "podIP"]);
    }
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let gates = list(obj, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(obj, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = text(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| text(c, &["type"]) == t)
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        text(obj, &["metadata", "name"]).into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(obj, now).into(),
        or_none(ip).into(),
        or_none(text(obj, &["spec", "nodeName"])).into(),
        or_none(text(obj, &["status", "nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

/// Sorted, de-duplicated load-balancer IPs or hostnames.
fn load_balancer_addresses(ingress: Option<&Value>) -> String {
    let mut set = BTreeSet::new();
    for i in ingress
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let ip = text(i, &["ip"]);
        let host = text(i, &["hostname"]);
        if !ip.is_empty() {
            set.insert(ip);
        } else if !host.is_empty() {
            set.insert(host);
        }
    }
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let type_ = at(obj, &["spec", "type"])
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let mut cluster_ip = obj
        .pointer("/spec/clusterIPs/0")
        .and_then(Value::as_str)
        .unwrap_or("");
    if cluster_ip.is_empty() {
        cluster_ip = text(obj, &["spec", "clusterIP"]);
    }
    let cluster_ip = if cluster_ip.is_empty() {
        "<none>"
    } else {
        cluster_ip
    };
    let external_ips: Vec<&str> = list(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match type_ {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_addresses(at(obj, &["status", "loadBalancer", "ingress"]));
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external_ips.iter().copied());
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = at(p, &["protocol"])
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let port = int(p, &["port"]);
            let node_port = int(p, &["nodePort"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        text(obj, &["metadata", "name"]).into(),
        type_.into(),
        cluster_ip.into(),
        external.into(),
        ports.into(),
        age(obj, now).into(),
        format_labels(object(obj, &["spec", "selector"])).into(),
    ]
}

/// `10.42.0.5:80,10.42.0.6:80 + 1 more...`, or `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    let subsets = list(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list(ss, &["addresses"]);
        let ports = list(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn slice_ports(obj: &Value) -> String {
    const MAX: usize = 3;
    let ports = list(obj, &["ports"]);
    let shown: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match at(p, &["port"]).and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => match at(p, &["name"]).and_then(Value::as_str) {
                Some(name) => name.to_string(),
                None => "*".to_string(),
            },
        })
        .collect();
    list_with_more(&shown, ports.len(), MAX)
}

fn slice_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let all: Vec<String> = list(obj, &["endpoints"])
        .iter()
        .flat_map(|e| list(e, &["addresses"]).iter())
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    let shown: Vec<String> = all.iter().take(MAX).cloned().collect();
    list_with_more(&shown, all.len(), MAX)
}

fn ingress_hosts(obj: &Value) -> String {
    const MAX: usize = 3;
    let rules = list(obj, &["spec", "rules"]);
    let mut shown: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if shown.len() == MAX {
            more = true;
        }
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            shown.push(host);
        }
    }
    if shown.is_empty() {
        return "*".to_string();
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = list(obj, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| text(c, &["type"]) == "Ready")
    {
        status.push(if text(ready, &["status"]) == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if truthy(obj, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled".to_string());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = object(obj, &["metadata", "labels"]) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |type_: &str| {
        list(obj, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == type_)
            .map_or("<none>", |a| text(a, &["address"]))
            .to_string()
    };
    let info = |field: &str| {
        let v = text(obj, &["status", "nodeInfo", field]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        text(obj, &["metadata", "name"]).into(),
        status.join(",").into(),
        roles.into(),
        age(obj, now).into(),
        text(obj, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Core and events.k8s.io events share kube's printer (the latter converted to the
/// former: `regarding`, `note`, `deprecated*` fields).
fn event_cells(group: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let core = group.is_empty();
    // Prefer the group's own field name, but accept the other form too.
    let pick = |core_field: &str, new_field: &str| {
        let (first, second) = if core {
            (core_field, new_field)
        } else {
            (new_field, core_field)
        };
        present(at(obj, &[first])).or_else(|| present(at(obj, &[second])))
    };
    let regarding = pick("involvedObject", "regarding");

    let first_ts = present(pick("firstTimestamp", "deprecatedFirstTimestamp"));
    let first = if timestamp(first_ts).is_some() {
        since(first_ts, now)
    } else {
        since(present(at(obj, &["eventTime"])), now)
    };
    let last_ts = present(pick("lastTimestamp", "deprecatedLastTimestamp"));
    let mut last = if timestamp(last_ts).is_some() {
        since(last_ts, now)
    } else {
        first.clone()
    };
    let mut count = pick("count", "deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(series) = present(at(obj, &["series"])) {
        last = since(at(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }

    let kind = regarding.map_or("", |r| text(r, &["kind"])).to_lowercase();
    let target_name = regarding.map_or("", |r| text(r, &["name"]));
    let target = if target_name.is_empty() {
        kind
    } else {
        format!("{kind}/{target_name}")
    };
    let source = pick("source", "deprecatedSource");
    let component = source.map_or("", |s| text(s, &["component"]));
    let host = source.map_or("", |s| text(s, &["host"]));
    let reporting_controller = pick("reportingComponent", "reportingController")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reporting_instance = text(obj, &["reportingInstance"]);
    let component = if component.is_empty() {
        reporting_controller
    } else {
        component
    };
    let host = if host.is_empty() {
        reporting_instance
    } else {
        host
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    let message = pick("message", "note")
        .and_then(Value::as_str)
        .unwrap_or("");

    vec![
        last.into(),
        text(obj, &["type"]).into(),
        text(obj, &["reason"]).into(),
        target.into(),
        regarding.map_or("", |r| text(r, &["fieldPath"])).into(),
        source.into(),
        message.trim().into(),
        first.into(),
        count.into(),
        text(obj, &["metadata", "name"]).into(),
    ]
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that fixed order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    let mut out = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if has(mode) {
            out.push(short);
        }
    }
    out.join(",")
}

/// The beta storage-class annotation, when present, wins over `spec.storageClassName`.
fn storage_class_of(obj: &Value) -> String {
    match at(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    ) {
        Some(Value::String(s)) => s.clone(),
        _ => text(obj, &["spec", "storageClassName"]).to_string(),
    }
}

fn unset_or(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("<unset>").to_string()
}

fn pv_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match at(obj, &["spec", "claimRef"]) {
        Some(c) if c.is_object() => format!("{}/{}", text(c, &["namespace"]), text(c, &["name"])),
        _ => String::new(),
    };
    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    let phase = if deleting {
        "Terminating"
    } else {
        text(obj, &["status", "phase"])
    };
    vec![
        text(obj, &["metadata", "name"]).into(),
        quantity(at(obj, &["spec", "capacity", "storage"])).into(),
        access_modes(list(obj, &["spec", "accessModes"])).into(),
        text(obj, &["spec", "persistentVolumeReclaimPolicy"]).into(),
        phase.into(),
        claim.into(),
        storage_class_of(obj).into(),
        unset_or(at(obj, &["spec", "volumeAttributesClassName"])).into(),
        text(obj, &["status", "reason"]).into(),
        age(obj, now).into(),
        unset_or(at(obj, &["spec", "volumeMode"])).into(),
    ]
}

fn pvc_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    let phase = if deleting {
        "Terminating"
    } else {
        text(obj, &["status", "phase"])
    };
    let volume = text(obj, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(obj, &["status", "capacity", "storage"])),
            access_modes(list(obj, &["status", "accessModes"])),
        )
    };
    let class = storage_class_of(obj);
    vec![
        text(obj, &["metadata", "name"]).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        unset_or(at(obj, &["spec", "volumeAttributesClassName"])).into(),
        age(obj, now).into(),
        unset_or(at(obj, &["spec", "volumeMode"])).into(),
    ]
}

/// `resource: used/hard` pairs split into request and `limits.*` columns.
fn quota_columns(obj: &Value) -> (String, String) {
    let hard: BTreeMap<&str, &Value> = object(obj, &["status", "hard"])
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default();
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for (resource, hard_q) in hard {
        let used = quantity(at(obj, &["status", "used", resource]));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard_q)));
        let mut pieces = resource.split('.');
        let is_limit = pieces.next() == Some("limits") && pieces.next().is_some();
        if is_limit {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    (request.join(", "), limit.join(", "))
}

fn controller_of(obj: &Value) -> String {
    let Some(owner) = list(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| truthy(o, &["controller"]))
    else {
        return "<none>".to_string();
    };
    let api_version = text(owner, &["apiVersion"]);
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = text(owner, &["kind"]);
    let name = text(owner, &["name"]);
    if kind.is_empty() && group.is_empty() {
        return name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{name}", group_kind.to_lowercase())
}

fn job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(obj, &["status", "succeeded"]);
    let completions = match at(obj, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int(obj, &["spec", "parallelism"]);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = timestamp(at(obj, &["status", "startTime"]));
    let completion = timestamp(at(obj, &["status", "completionTime"]));
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now - s),
        (Some(s), Some(c)) => human_duration(c - s),
    };
    let conditions = &["status", "conditions"];
    let has = |t: &str| {
        list(obj, conditions)
            .iter()
            .find(|c| text(c, &["type"]) == t)
            .is_some_and(|c| text(c, &["status"]) == "True")
    };
    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(obj);
    vec![
        text(obj, &["metadata", "name"]).into(),
        status.into(),
        completions.into(),
        duration.into(),
        age(obj, now).into(),
        names.into(),
        images.into(),
        format_label_selector(at(obj, &["spec", "selector"])).into(),
    ]
}

/// The TARGETS column: up to two metrics as `current/target`.
fn hpa_targets(obj: &Value) -> String {
    let specs = list(obj, &["spec", "metrics"]);
    let statuses = list(obj, &["status", "currentMetrics"]);
    if specs.is_empty() {
        // autoscaling/v1 shape: a lone CPU utilisation target.
        if let Some(target) =
            at(obj, &["spec", "targetCPUUtilizationPercentage"]).and_then(Value::as_i64)
        {
            let current = at(obj, &["status", "currentCPUUtilizationPercentage"])
                .and_then(Value::as_i64)
                .map_or("<unknown>".to_string(), |c| format!("{c}%"));
            return format!("cpu: {current}/{target}%");
        }
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let q = |v: Option<&Value>| match v {
        Some(Value::Null) | None => "<nil>".to_string(),
        other => quantity(other),
    };
    let mut shown = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let entry = |source: &str| -> String {
            let target = at(spec, &[source, "target"]);
            let current_of = |field: &str| {
                status
                    .and_then(|s| at(s, &[source, "current", field]))
                    .filter(|v| !v.is_null())
            };
            let status_has_source = status
                .and_then(|s| s.get(source))
                .is_some_and(|v| !v.is_null());
            let avg_target = target
                .and_then(|t| t.get("averageValue"))
                .filter(|v| !v.is_null());
            match source {
                "external" | "object" => {
                    if let Some(avg) = avg_target {
                        let current = current_of("averageValue")
                            .map_or("<unknown>".to_string(), |v| q(Some(v)));
                        format!("{current}/{} (avg)", q(Some(avg)))
                    } else {
                        let current = if status_has_source {
                            q(current_of("value"))
                        } else {
                            "<unknown>".to_string()
                        };
                        format!("{current}/{}", q(target.and_then(|t| t.get("value"))))
                    }
                }
                "pods" => {
                    let current = if status_has_source {
                        q(current_of("averageValue"))
                    } else {
                        "<unknown>".to_string()
                    };
                    format!("{current}/{}", q(avg_target))
                }
                _ => {
                    let name = text(spec, &[source, "name"]);
                    if let Some(avg) = avg_target {
                        let current = if status_has_source {
                            q(current_of("averageValue"))
                        } else {
                            "<unknown>".to_string()
                        };
                        format!("{name}: {current}/{}", q(Some(avg)))
                    } else {
                        let current = current_of("averageUtilization")
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".to_string(), |c| format!("{c}%"));
                        let target = target
                            .and_then(|t| t.get("averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<auto>".to_string(), |t| format!("{t}%"));
                        format!("{name}: {current}/{target}")
                    }
                }
            }
        };
        shown.push(match text(spec, &["type"]) {
            "External" => entry("external"),
            "Pods" => entry("pods"),
            "Object" => entry("object"),
            "Resource" => entry("resource"),
            "ContainerResource" => entry("containerResource"),
            _ => "<unknown type>".to_string(),
        });
    }
    let count = shown.len();
    if count > MAX {
        shown.truncate(MAX);
        return format!("{} + {} more...", shown.join(", "), count - MAX);
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn ago(secs: i64) -> String {
        (now() - Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn strs(cells: &[Value]) -> Vec<String> {
        cells
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    fn check_width(group: &str, kind: &str, obj: &Value) -> Vec<String> {
        let c = cells(group, kind, obj, now());
        assert_eq!(c.len(), columns(group, kind).len(), "{group}/{kind}");
        strs(&c)
    }

    #[test]
    fn human_duration_boundaries() {
        let s = |n: i64| human_duration(Duration::seconds(n));
        assert_eq!(s(-5), "<invalid>");
        assert_eq!(s(-1), "0s");
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(s(0), "0s");
        assert_eq!(s(5), "5s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(120), "2m");
        assert_eq!(s(182), "3m2s");
        assert_eq!(s(599), "9m59s");
        assert_eq!(s(600), "10m");
        assert_eq!(s(3 * 3600 - 1), "179m");
        assert_eq!(s(3 * 3600), "3h");
        assert_eq!(s(5 * 3600 + 60 * 7), "5h7m");
        assert_eq!(s(8 * 3600), "8h");
        assert_eq!(s(47 * 3600 + 3599), "47h");
        assert_eq!(s(48 * 3600), "2d");
        assert_eq!(s(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(s(8 * 86400), "8d");
        assert_eq!(s(729 * 86400), "729d");
        assert_eq!(s(730 * 86400), "2y");
        assert_eq!(s(733 * 86400), "2y3d");
        assert_eq!(s(365 * 8 * 86400), "8y");
    }

    #[test]
    fn every_kind_has_matching_widths() {
        let empty = json!({});
        let kinds = [
            ("", "Namespace"),
            ("", "Pod"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Node"),
            ("", "Event"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "LimitRange"),
            ("", "ResourceQuota"),
            ("", "ReplicationController"),
            ("", "ComponentStatus"),
            ("", "PodTemplate"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("apps", "StatefulSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("policy", "PodDisruptionBudget"),
            ("coordination.k8s.io", "Lease"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("storage.k8s.io", "StorageClass"),
            ("events.k8s.io", "Event"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("example.com", "Widget"),
        ];
        for (g, k) in kinds {
            let cols = columns(g, k);
            let names: Vec<&str> = cols
                .iter()
                .filter(|c| c.format == "name")
                .map(|c| c.name)
                .collect();
            assert_eq!(names, vec!["Name"], "{g}/{k}");
            check_width(g, k, &empty);
        }
        for r in crate::registry::resources::RESOURCES {
            check_width(r.group, r.kind, &empty);
        }
    }

    #[test]
    fn pod_ready_count_and_wide_cells() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.5",
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        });
        assert_eq!(
            check_width("", "Pod", &pod),
            vec![
                "web",
                "1/2",
                "Running",
                "0",
                "5m",
                "10.42.0.5",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_crash_loop_with_restart_age() {
        let pod = json!({
            "metadata": {"name": "crashy", "creationTimestamp": ago(3600)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}
                }]
            }
        });
        let c = check_width("", "Pod", &pod);
        assert_eq!(&c[1..5], &["0/1", "CrashLoopBackOff", "3 (5m ago)", "60m"]);
    }

    #[test]
    fn pod_init_containers_and_terminal_states() {
        let pod = json!({
            "metadata": {"name": "init"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [{"name": "setup", "ready": false, "restartCount": 0,
                    "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]
            }
        });
        let c = check_width("", "Pod", &pod);
        assert_eq!(&c[1..5], &["0/1", "Init:0/1", "0", "<unknown>"]);

        let mut failing = pod.clone();
        failing["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(check_width("", "Pod", &failing)[2], "Init:ImagePullBackOff");

        let mut done = pod.clone();
        done["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        assert_eq!(check_width("", "Pod", &done)[2], "PodInitializing");

        let completed = json!({
            "metadata": {"name": "job-pod"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        assert_eq!(check_width("", "Pod", &completed)[2], "Completed");

        let mut pulling = completed.clone();
        pulling["status"]["phase"] = json!("Pending");
        pulling["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ErrImagePull"}});
        assert_eq!(check_width("", "Pod", &pulling)[2], "ErrImagePull");

        let mut deleting = pulling.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(check_width("", "Pod", &deleting)[2], "Terminating");

        let sidecar = json!({
            "metadata": {"name": "side"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true,
                    "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                    "state": {"running": {}}}]}
        });
        assert_eq!(
            &check_width("", "Pod", &sidecar)[1..4],
            &["2/2", "Running", "1"]
        );
    }

    #[test]
    fn deployment_cells() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(7200)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "log", "image": "busybox"}
                ]}}
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let c = cells("apps", "Deployment", &d, now());
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web"),
            ]
        );
        let names: Vec<&str> = columns("apps", "Deployment")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn service_ports_and_external_ips() {
        let svc = json!({
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.10",
                "clusterIPs": ["10.43.0.10"],
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "protocol": "UDP"}
                ]
            }
        });
        assert_eq!(
            check_width("", "Service", &svc),
            vec![
                "web",
                "NodePort",
                "10.43.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "<unknown>",
                "app=web"
            ]
        );
        let mut lb = svc.clone();
        lb["spec"]["type"] = json!("LoadBalancer");
        assert_eq!(check_width("", "Service", &lb)[3], "<pending>");
        lb["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.9"}, {"ip": "192.168.1.2"}]}});
        assert_eq!(
            check_width("", "Service", &lb)[3],
            "192.168.1.2,192.168.1.9"
        );
        let headless =
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": []}});
        assert_eq!(
            &check_width("", "Service", &headless)[1..5],
            &["ClusterIP", "None", "<none>", "<none>"]
        );
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/master": "true",
                "kubernetes.io/hostname": "n1"
            }},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0+skiff", "osImage": "Debian"}
            }
        });
        assert_eq!(
            check_width("", "Node", &node),
            vec![
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,master",
                "<unknown>",
                "v1.32.0+skiff",
                "192.168.0.2",
                "<none>",
                "Debian",
                "<unknown>",
                "<unknown>"
            ]
        );
        let bare = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            &check_width("", "Node", &bare)[1..3],
            &["NotReady", "<none>"]
        );
        assert_eq!(check_width("", "Node", &json!({}))[1], "Unknown");
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
            "ports": [{"port": 80}, {"port": 443}]
        }]});
        assert_eq!(
            check_width("", "Endpoints", &ep)[1],
            "10.42.0.5:80,10.42.0.6:80,10.42.0.5:443 + 1 more..."
        );
        assert_eq!(
            check_width("", "Endpoints", &json!({"metadata": {"name": "x"}}))[1],
            "<none>"
        );
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.42.0.5"]}]});
        assert_eq!(
            &check_width("discovery.k8s.io", "EndpointSlice", &slice)[1..4],
            &["IPv4", "80", "10.42.0.5"]
        );
        assert_eq!(
            check_width("discovery.k8s.io", "EndpointSlice", &json!({}))[2],
            "<unset>"
        );
    }

    #[test]
    fn workloads_and_misc() {
        let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            &check_width("batch", "Job", &job)[1..4],
            &["Complete", "1/1", "60s"]
        );
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *", "suspend": false},
            "status": {"lastScheduleTime": ago(30)}});
        assert_eq!(
            &check_width("batch", "CronJob", &cj)[1..6],
            &["*/1 * * * *", "<none>", "False", "0", "30s"]
        );
        let sc = json!({"metadata": {"name": "local-path", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            check_width("storage.k8s.io", "StorageClass", &sc)[..5],
            [
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                "false"
            ]
        );
        let cr =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2024-01-02T03:04:05Z"}});
        assert_eq!(
            check_width("rbac.authorization.k8s.io", "ClusterRole", &cr),
            vec!["admin", "2024-01-02T03:04:05Z"]
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "namespace": "ns", "name": "sa"},
                         {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}]});
        assert_eq!(
            check_width("rbac.authorization.k8s.io", "RoleBinding", &rb),
            vec![
                "rb",
                "ClusterRole/view",
                "<unknown>",
                "alice",
                "devs",
                "ns/sa"
            ]
        );
        let cr = json!({"metadata": {"name": "web-5d4", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            &check_width("apps", "ControllerRevision", &cr)[1..3],
            &["daemonset.apps/web", "2"]
        );
        let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
        assert_eq!(
            &check_width("autoscaling", "HorizontalPodAutoscaler", &hpa)[1..6],
            &["Deployment/web", "cpu: 12%/50%", "1", "5", "2"]
        );
        let ev = json!({"metadata": {"name": "web.17a"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": "Assigned ",
            "source": {"component": "default-scheduler"}, "firstTimestamp": ago(65), "lastTimestamp": ago(5), "count": 2});
        assert_eq!(
            check_width("", "Event", &ev),
            vec![
                "5s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "default-scheduler",
                "Assigned",
                "65s",
                "2",
                "web.17a"
            ]
        );
        let new_ev = json!({"metadata": {"name": "web.17b"}, "type": "Warning", "reason": "BackOff",
            "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "note": "Back-off restarting", "reportingController": "kubelet", "reportingInstance": "n1",
            "eventTime": "2024-06-01T11:59:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2024-06-01T11:59:50.000000Z"}});
        assert_eq!(
            check_width("events.k8s.io", "Event", &new_ev),
            vec![
                "10s",
                "Warning",
                "BackOff",
                "pod/web",
                "spec.containers{app}",
                "kubelet, n1",
                "Back-off restarting",
                "60s",
                "4",
                "web.17b"
            ]
        );
        let quota = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
            "used": {"pods": "3"}}});
        assert_eq!(
            &check_width("", "ResourceQuota", &quota)[2..4],
            &["pods: 3/10, requests.cpu: 0/1", "limits.cpu: 0/2"]
        );
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            &check_width("policy", "PodDisruptionBudget", &pdb)[1..4],
            &["50%", "N/A", "1"]
        );
        let ing = json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example"}, {}], "tls": [{}]}});
        assert_eq!(
            &check_width("networking.k8s.io", "Ingress", &ing)[1..5],
            &["<none>", "a.example", "", "80, 443"]
        );
    }
}
