//! The catalogue of resource kinds skiff serves: group, version, kind, names, scope,
//! verbs and subresources. Discovery, OpenAPI, routing and storage keys all derive
//! from this one table.

/// Verbs of a normal read-write resource.
pub const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource of a kind (`pods/status`, `deployments/scale`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the object the subresource speaks.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource (a kind at one group/version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The group/version whose objects hold the stored form (several versions of
    /// one resource share storage, as `autoscaling/v1` and `v2` do).
    pub storage_version: &'static str,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group (as error messages name it).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The `group_resource` part of storage keys, shared by every version.
    pub fn storage_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    pub fn has_subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: &["get", "patch", "update"],
    }
}

const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: &["get", "patch", "update"],
};

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     short: $short:expr, cat: $cat:expr, verbs: $verbs:expr, sub: $sub:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            verbs: $verbs,
            subresources: $sub,
            storage_version: $version,
        }
    };
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const NOSUB: &[Subresource] = &[];

/// Every resource skiff serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    res!("", "v1", "Namespace", "namespaces", "namespace", false, short: &["ns"], cat: NONE,
         verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
         sub: &[status("", "v1", "Namespace"), Subresource { name: "finalize", group: "", version: "v1", kind: "Namespace", verbs: &["update"] }]),
    res!("", "v1", "Pod", "pods", "pod", true, short: &["po"], cat: ALL, verbs: RW,
         sub: &[status("", "v1", "Pod"),
                Subresource { name: "binding", group: "", version: "v1", kind: "Binding", verbs: &["create"] },
                Subresource { name: "eviction", group: "policy", version: "v1", kind: "Eviction", verbs: &["create"] },
                Subresource { name: "log", group: "", version: "v1", kind: "Pod", verbs: &["get"] },
                Subresource { name: "exec", group: "", version: "v1", kind: "PodExecOptions", verbs: &["create", "get"] },
                Subresource { name: "attach", group: "", version: "v1", kind: "PodAttachOptions", verbs: &["create", "get"] },
                Subresource { name: "portforward", group: "", version: "v1", kind: "PodPortForwardOptions", verbs: &["create", "get"] }]),
    res!("", "v1", "Service", "services", "service", true, short: &["svc"], cat: ALL, verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         sub: &[status("", "v1", "Service")]),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", true, short: &["ep"], cat: NONE, verbs: RW, sub: NOSUB),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", true, short: &["cm"], cat: NONE, verbs: RW, sub: NOSUB),
    res!("", "v1", "Secret", "secrets", "secret", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, short: &["sa"], cat: NONE, verbs: RW,
         sub: &[Subresource { name: "token", group: "authentication.k8s.io", version: "v1", kind: "TokenRequest", verbs: &["create"] }]),
    res!("", "v1", "Node", "nodes", "node", false, short: &["no"], cat: NONE, verbs: RW, sub: &[status("", "v1", "Node")]),
    res!("", "v1", "Event", "events", "event", true, short: &["ev"], cat: NONE, verbs: RW, sub: NOSUB),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, short: &["pv"], cat: NONE, verbs: RW,
         sub: &[status("", "v1", "PersistentVolume")]),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, short: &["pvc"], cat: NONE, verbs: RW,
         sub: &[status("", "v1", "PersistentVolumeClaim")]),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", true, short: &["limits"], cat: NONE, verbs: RW, sub: NOSUB),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, short: &["quota"], cat: NONE, verbs: RW,
         sub: &[status("", "v1", "ResourceQuota")]),
    res!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, short: &["rc"], cat: ALL, verbs: RW,
         sub: &[status("", "v1", "ReplicationController"), SCALE]),
    res!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", false, short: &["cs"], cat: NONE, verbs: &["get", "list"], sub: NOSUB),
    res!("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    // apps/v1
    res!("apps", "v1", "Deployment", "deployments", "deployment", true, short: &["deploy"], cat: ALL, verbs: RW,
         sub: &[status("apps", "v1", "Deployment"), SCALE]),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, short: &["rs"], cat: ALL, verbs: RW,
         sub: &[status("apps", "v1", "ReplicaSet"), SCALE]),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, short: &["ds"], cat: ALL, verbs: RW,
         sub: &[status("apps", "v1", "DaemonSet")]),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, short: &["sts"], cat: ALL, verbs: RW,
         sub: &[status("apps", "v1", "StatefulSet"), SCALE]),
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    // batch/v1
    res!("batch", "v1", "Job", "jobs", "job", true, short: NONE, cat: ALL, verbs: RW, sub: &[status("batch", "v1", "Job")]),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, short: &["cj"], cat: ALL, verbs: RW, sub: &[status("batch", "v1", "CronJob")]),
    // autoscaling
    res!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, short: &["hpa"], cat: ALL, verbs: RW,
         sub: &[status("autoscaling", "v2", "HorizontalPodAutoscaler")]),
    ResourceInfo {
        group: "autoscaling",
        version: "v1",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        verbs: RW,
        subresources: &[status("autoscaling", "v1", "HorizontalPodAutoscaler")],
        // Stored as autoscaling/v2, like kube-apiserver; see registry::convert.
        storage_version: "v2",
    },
    // policy/v1
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, short: &["pdb"], cat: NONE, verbs: RW,
         sub: &[status("policy", "v1", "PodDisruptionBudget")]),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    // networking.k8s.io/v1
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, short: &["ing"], cat: NONE, verbs: RW,
         sub: &[status("networking.k8s.io", "v1", "Ingress")]),
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, short: &["netpol"], cat: NONE, verbs: RW, sub: NOSUB),
    // rbac.authorization.k8s.io/v1
    res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, short: NONE, cat: NONE, verbs: RW, sub: NOSUB),
    // storage.k8s.io/v1
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, short: &["sc"], cat: NONE, verbs: RW, sub: NOSUB),
    // events.k8s.io/v1
    res!("events.k8s.io", "v1", "Event", "events", "event", true, short: &["ev"], cat: NONE, verbs: RW, sub: NOSUB),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, short: &["pc"], cat: NONE, verbs: RW, sub: NOSUB),
    // authorization.k8s.io/v1
    res!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, short: NONE, cat: NONE, verbs: &["create"], sub: NOSUB),
    // authentication.k8s.io/v1 (reviews, never stored)
    res!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, short: NONE, cat: NONE, verbs: &["create"], sub: NOSUB),
    res!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, short: NONE, cat: NONE, verbs: &["create"], sub: NOSUB),
];

/// The kinds that exist only as subresource or request bodies, never stored.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a kind up by group/version/kind (as in an object's apiVersion and kind).
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Group/version pairs in discovery order, each with its resources.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} listed twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn qualified_names_match_kubectl_messages() {
        assert_eq!(
            find("apps", "v1", "deployments")
                .unwrap()
                .qualified_plural(),
            "deployments.apps"
        );
        assert_eq!(find("", "v1", "pods").unwrap().qualified_plural(), "pods");
        assert_eq!(find("", "v1", "pods").unwrap().api_version(), "v1");
    }
}
