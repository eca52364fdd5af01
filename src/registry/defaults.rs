//! Server-side defaulting: the values kube-apiserver fills into an object on create
//! and update, so that `kubectl get -o yaml` shows what a real cluster would show.
//!
//! Objects are handled in their JSON wire form (`serde_json::Value`). Everything here
//! is idempotent: a field that already holds a value is never changed, so the same
//! function serves create and update.
//!
//! Besides the `SetDefaults_*` functions of `k8s.io/kubernetes/pkg/apis/*/v1`, a few
//! create-time mutations that kube performs in registry strategies or admission are
//! reproduced, because users see their effect:
//!
//! * Pod `status.phase: Pending` and `status.qosClass` (only while the object has no
//!   status phase yet), `priority`/`preemptionPolicy` (the `Priority` admission plugin,
//!   for pods without a class or with a built-in `system-` class);
//! * Namespace `spec.finalizers: [kubernetes]` and `status.phase: Active`;
//! * Secret `stringData` folded into `data` (a conversion in kube);
//! * Service `clusterIPs`, `ipFamilyPolicy` and `ipFamilies` for a single-stack IPv4
//!   cluster (the service allocator in kube);
//! * Job selector generation ([`generate_job_selector`]), which needs `metadata.uid`
//!   and `metadata.name` to be set; [`apply_defaults`] runs it for a Job that has a
//!   uid and no selector.
//!
//! Admission plugins are separate steps, on create only: for pods the
//! not-ready/unreachable tolerations of `DefaultTolerationSeconds`
//! ([`default_tolerations`]) and the `ServiceAccount` plugin's service account and API
//! access volume ([`service_account_admission`]); for claims `DefaultStorageClass` and
//! the protection finalizer ([`claim_admission`]).

use serde_json::{json, Map, Value};

use crate::apimachinery::quantity::parse_quantity;

/// Fill in kube-apiserver's defaults for an object of `group`/`kind` (group `""` for
/// the core group). Unknown kinds and non-object values are left untouched.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (group, kind) {
        ("", "Pod") => default_pod(obj),
        ("", "PodTemplate") => {
            if let Some(t) = child_obj(obj, "template") {
                default_pod_template(t);
            }
        }
        ("", "ReplicationController") => default_replication_controller(obj),
        ("", "Service") => default_service(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Secret") => default_secret(obj),
        ("", "PersistentVolumeClaim") => default_pvc(obj),
        ("", "PersistentVolume") => default_pv(obj),
        ("", "Node") => default_node(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("", "LimitRange") => default_limit_range(obj),
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => default_replica_set(obj),
        ("apps", "DaemonSet") => default_daemon_set(obj),
        ("apps", "StatefulSet") => default_stateful_set(obj),
        ("batch", "Job") => default_job(obj),
        ("batch", "CronJob") => default_cron_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(obj),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(obj),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(obj),
        ("storage.k8s.io", "StorageClass") => default_storage_class(obj),
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_binding(obj),
        _ => {}
    }
}

/// The `DefaultTolerationSeconds` admission step for a Pod on create: tolerate the
/// `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` NoExecute taints
/// for 300 seconds unless the pod already tolerates them.
pub fn default_tolerations(pod: &mut Value) {
    let Some(spec) = child_obj(pod, "spec") else {
        return;
    };
    let existing: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let k = str_at(t, "key");
            let e = str_at(t, "effect");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut add = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(key) {
            add.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300
            }));
        }
    }
    if add.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(add);
    if let Some(m) = spec.as_object_mut() {
        m.insert("tolerations".into(), Value::Array(all));
    }
}

/// Two admission steps for a PersistentVolumeClaim on create: `DefaultStorageClass`
/// gives a claim that names no class (`storageClassName` absent; `""` means "no class"
/// and stays) the default class among `classes` (StorageClass objects; the newest when
/// several are marked, as kube 1.26+ picks), and `StorageObjectInUseProtection` adds the
/// `kubernetes.io/pvc-protection` finalizer.
pub fn claim_admission(pvc: &mut Value, classes: &[Value]) {
    use crate::apimachinery::storage as st;
    let marked = |c: &&Value| {
        [
            st::DEFAULT_CLASS_ANNOTATION,
            st::BETA_DEFAULT_CLASS_ANNOTATION,
        ]
        .iter()
        .any(|k| c["metadata"]["annotations"][*k] == "true")
    };
    let default = classes.iter().filter(marked).max_by(|a, b| {
        let created = |c: &Value| {
            c["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let name = |c: &Value| c["metadata"]["name"].as_str().unwrap_or("").to_string();
        // RFC 3339 UTC timestamps order as strings; on a tie the name decides.
        (created(a), std::cmp::Reverse(name(a))).cmp(&(created(b), std::cmp::Reverse(name(b))))
    });
    let has_beta = !pvc["metadata"]["annotations"][st::BETA_CLASS_ANNOTATION].is_null();
    if let (Some(class), false) = (default, has_beta) {
        if let Some(spec) = child_obj(pvc, "spec") {
            if spec.get("storageClassName").is_none_or(Value::is_null) {
                spec["storageClassName"] = class["metadata"]["name"].clone();
            }
        }
    }
    if let Some(meta) = child_obj(pvc, "metadata") {
        let finalizers = meta
            .as_object_mut()
            .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = finalizers {
            if !list.iter().any(|f| f == st::PVC_PROTECTION_FINALIZER) {
                list.push(json!(st::PVC_PROTECTION_FINALIZER));
            }
        }
    }
}

/// Where the `ServiceAccount` admission plugin mounts a pod's API credentials.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The `ServiceAccount` admission step for a Pod on create: `serviceAccountName`
/// defaults to `default`; unless `automountServiceAccountToken` is false or a container
/// already mounts something at [`SERVICE_ACCOUNT_MOUNT_PATH`], the pod gets a projected
/// `kube-api-access-<suffix>` volume (a bound token, `ca.crt`, `namespace`) mounted
/// read-only there in every container. `suffix` is 5 random characters.
pub fn service_account_admission(pod: &mut Value, suffix: &str) {
    let Some(spec) = child_obj(pod, "spec").and_then(Value::as_object_mut) else {
        return;
    };
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let mounts_there = ["containers", "initContainers"].iter().any(|list| {
        spec.get(*list).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("volumeMounts")
                    .and_then(Value::as_array)
                    .is_some_and(|ms| {
                        ms.iter()
                            .any(|m| str_at(m, "mountPath") == SERVICE_ACCOUNT_MOUNT_PATH)
                    })
            })
        })
    });
    if mounts_there {
        return;
    }
    let name = format!("kube-api-access-{suffix}");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(v) => v.push(volume),
        None => {
            spec.insert("volumes".into(), json!([volume]));
        }
    }
    let mount = json!({"name": name, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH, "readOnly": true});
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(ms) => ms.push(mount.clone()),
                None => {
                    c.insert("volumeMounts".into(), json!([mount.clone()]));
                }
            }
        }
    }
}

/// Job selector generation (kube's Job `PrepareForCreate`), for a Job whose
/// `spec.manualSelector` is not `true`: adds `batch.kubernetes.io/controller-uid`,
/// `batch.kubernetes.io/job-name`, `controller-uid` and `job-name` to the pod template
/// labels (keeping values the user set) and selects on
/// `batch.kubernetes.io/controller-uid`. Needs `metadata.uid` and `metadata.name`;
/// without a uid it does nothing. When the Job's own labels were copied from the
/// template by defaulting, they receive the generated labels too, as in kube.
pub fn generate_job_selector(job: &mut Value) {
    let uid = str_at(job.get("metadata").unwrap_or(&Value::Null), "uid").to_string();
    let name = str_at(job.get("metadata").unwrap_or(&Value::Null), "name").to_string();
    if uid.is_empty() {
        return;
    }
    let manual = job
        .get("spec")
        .and_then(|s| s.get("manualSelector"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if manual {
        return;
    }
    let template_labels_before = job
        .pointer("/spec/template/metadata/labels")
        .filter(|v| !v.is_null())
        .cloned();
    let job_labels_aliased = match (&template_labels_before, job.pointer("/metadata/labels")) {
        (Some(t), Some(j)) => t == j && t.as_object().is_some_and(|m| !m.is_empty()),
        _ => false,
    };
    let Some(spec) = child_obj(job, "spec") else {
        return;
    };
    let generated = [
        ("job-name", name.as_str()),
        ("batch.kubernetes.io/job-name", name.as_str()),
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
    ];
    let mut new_labels = None;
    if let Some(template) = child_obj(spec, "template") {
        if let Some(meta) = child_obj(template, "metadata") {
            if let Some(labels) = child_obj(meta, "labels").and_then(Value::as_object_mut) {
                for (k, v) in generated {
                    if !labels.contains_key(k) {
                        labels.insert(k.to_string(), json!(v));
                    }
                }
                new_labels = Some(Value::Object(labels.clone()));
            }
        }
    }
    if let Some(selector) = child_obj(spec, "selector") {
        if let Some(ml) = child_obj(selector, "matchLabels").and_then(Value::as_object_mut) {
            if !ml.contains_key("batch.kubernetes.io/controller-uid") {
                ml.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
            }
        }
    }
    if job_labels_aliased {
        if let (Some(labels), Some(meta)) = (new_labels, child_obj(job, "metadata")) {
            if let Some(m) = meta.as_object_mut() {
                m.insert("labels".into(), labels);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

/// The object under `key`, created as `{}` when missing or null. `None` when `v` is
/// not an object or the value under `key` is not an object.
fn child_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let m = v.as_object_mut()?;
    let e = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if e.is_null() {
        *e = Value::Object(Map::new());
    }
    if e.is_object() {
        Some(e)
    } else {
        None
    }
}

/// The object under `key` only if it already exists (no creation).
fn existing_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    v.get_mut(key).filter(|x| x.is_object())
}

/// Set `key` when it is missing or null (a Go pointer field left nil).
fn set_default(v: &mut Value, key: &str, val: Value) {
    if let Some(m) = v.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), val);
        }
    }
}

/// Set a string `key` when it is missing, null or empty (a Go string field left "").
fn set_default_str(v: &mut Value, key: &str, val: &str) {
    if let Some(m) = v.as_object_mut() {
        let unset = match m.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset {
            m.insert(key.to_string(), json!(val));
        }
    }
}

/// Set an integer `key` when it is missing, null or zero (a Go int field left 0).
fn set_default_nonzero(v: &mut Value, key: &str, val: i64) {
    if let Some(m) = v.as_object_mut() {
        let unset = match m.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            _ => false,
        };
        if unset {
            m.insert(key.to_string(), json!(val));
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn for_each_in(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = v.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter(|i| i.is_object()) {
            f(item);
        }
    }
}

fn is_set(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

// ---------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------

fn default_pod(obj: &mut Value) {
    if let Some(spec) = child_obj(obj, "spec") {
        default_pod_spec(spec);
        // SetDefaults_Pod: only for Pods, never for templates.
        for key in ["containers", "initContainers"] {
            for_each_in(spec, key, requests_from_limits);
        }
        set_default(spec, "enableServiceLinks", json!(true));
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for key in ["containers", "initContainers"] {
                for_each_in(spec, key, |c| {
                    for_each_in(c, "ports", |p| {
                        let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                        if host == 0 {
                            if let Some(cp) = p.get("containerPort").cloned() {
                                p["hostPort"] = cp;
                            }
                        }
                    })
                });
            }
        }
        // The Priority admission plugin.
        let class = str_at(spec, "priorityClassName").to_string();
        let builtin = match class.as_str() {
            "" => Some(0),
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        if let Some(priority) = builtin {
            set_default(spec, "priority", json!(priority));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
    }
    let qos = obj.get("spec").map(pod_qos_class).unwrap_or("BestEffort");
    if let Some(status) = child_obj(obj, "status") {
        if !is_set(status, "phase") {
            status["phase"] = json!("Pending");
            set_default(status, "qosClass", json!(qos));
        }
    }
}

/// Copy limits into requests where a request is missing (kube's `SetDefaults_Pod`).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(resources) = child_obj(c, "resources") else {
        return;
    };
    if let Some(requests) = child_obj(resources, "requests").and_then(Value::as_object_mut) {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// The pod's QoS class, computed as kube's `qos.GetPodQOS` does (after requests were
/// defaulted from limits).
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let mut requests: Vec<(String, i128)> = Vec::new();
    let mut limits: Vec<(String, i128)> = Vec::new();
    let mut guaranteed = true;
    let add = |acc: &mut Vec<(String, i128)>, name: &str, q: i128| {
        if let Some(e) = acc.iter_mut().find(|(n, _)| n == name) {
            e.1 += q;
        } else {
            acc.push((name.to_string(), q));
        }
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        for (key, acc) in [("requests", &mut requests), ("limits", &mut limits)] {
            let mut found = Vec::new();
            if let Some(m) = c
                .get("resources")
                .and_then(|r| r.get(key))
                .and_then(Value::as_object)
            {
                for (name, q) in m {
                    if name != "cpu" && name != "memory" {
                        continue;
                    }
                    let nano = quantity_nano(q);
                    if nano != 0 {
                        add(acc, name, nano);
                        found.push(name.clone());
                    }
                }
            }
            if key == "limits"
                && !(found.iter().any(|n| n == "cpu") && found.iter().any(|n| n == "memory"))
            {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            match limits.iter().find(|(n, _)| n == name) {
                Some((_, lim)) if lim == req => {}
                _ => guaranteed = false,
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn quantity_nano(v: &Value) -> i128 {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    parse_quantity(&s).map(|q| q.nano).unwrap_or(0)
}

fn default_pod_template(template: &mut Value) {
    if let Some(spec) = child_obj(template, "spec") {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for_each_in(spec, key, default_container);
    }
    for_each_in(spec, "volumes", default_volume);
}

fn default_container(c: &mut Value) {
    let image = str_at(c, "image").to_string();
    set_default_str(c, "imagePullPolicy", default_pull_policy(&image));
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    set_default(c, "resources", json!({}));
    for_each_in(c, "ports", |p| set_default_str(p, "protocol", "TCP"));
    for_each_in(c, "env", |e| {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(|vf| vf.get_mut("fieldRef"))
            .filter(|f| f.is_object())
        {
            set_default_str(fr, "apiVersion", "v1");
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing_obj(c, probe) {
            set_default_nonzero(p, "timeoutSeconds", 1);
            set_default_nonzero(p, "periodSeconds", 10);
            set_default_nonzero(p, "successThreshold", 1);
            set_default_nonzero(p, "failureThreshold", 3);
            default_handler(p);
        }
    }
    if let Some(lc) = existing_obj(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing_obj(lc, hook) {
                default_handler(h);
            }
        }
    }
}

fn default_handler(h: &mut Value) {
    if let Some(get) = existing_obj(h, "httpGet") {
        set_default_str(get, "path", "/");
        set_default_str(get, "scheme", "HTTP");
    }
}

/// `Always` when the image has no tag and no digest or the tag is `latest`, else
/// `IfNotPresent` (also for references that do not parse, as kube does).
pub fn default_pull_policy(image: &str) -> &'static str {
    match image_tag(image) {
        Some(tag) if tag == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

/// The tag an image reference resolves to: `Some("latest")` when neither tag nor
/// digest is given, `Some("")` when only a digest is, `None` when it does not parse.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':')?;
        if algo.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return None;
        }
    }
    // The path after an optional domain must be lowercase components.
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
        {
            parts.remove(0);
        }
    }
    let component_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if parts.is_empty() || !parts.iter().all(|p| component_ok(p)) {
        return None;
    }
    Some(match (tag, digest) {
        (Some(t), _) => t.to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => "latest".to_string(),
    })
}

fn default_volume(v: &mut Value) {
    let has_source = v
        .as_object()
        .is_some_and(|m| m.iter().any(|(k, val)| k != "name" && !val.is_null()));
    if !has_source {
        if let Some(m) = v.as_object_mut() {
            m.insert("emptyDir".into(), json!({}));
        }
    }
    for key in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = existing_obj(v, key) {
            set_default(src, "defaultMode", json!(420));
            for_each_in(src, "items", default_downward_item);
            for_each_in(src, "sources", |s| {
                if let Some(t) = existing_obj(s, "serviceAccountToken") {
                    set_default(t, "expirationSeconds", json!(3600));
                }
                if let Some(d) = existing_obj(s, "downwardAPI") {
                    for_each_in(d, "items", default_downward_item);
                }
            });
        }
    }
    default_volume_source_common(v);
    if let Some(eph) = existing_obj(v, "ephemeral") {
        if let Some(spec) =
            existing_obj(eph, "volumeClaimTemplate").and_then(|t| existing_obj(t, "spec"))
        {
            set_default_str(spec, "volumeMode", "Filesystem");
        }
    }
}

/// Defaults shared by pod volumes and persistent volume sources.
fn default_volume_source_common(v: &mut Value) {
    if let Some(hp) = existing_obj(v, "hostPath") {
        set_default(hp, "type", json!(""));
    }
    if let Some(iscsi) = existing_obj(v, "iscsi") {
        set_default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = existing_obj(v, "rbd") {
        set_default_str(rbd, "pool", "rbd");
        set_default_str(rbd, "user", "admin");
        set_default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
}

fn default_downward_item(item: &mut Value) {
    if let Some(fr) = existing_obj(item, "fieldRef") {
        set_default_str(fr, "apiVersion", "v1");
    }
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

fn default_template_of(spec: &mut Value) {
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_replication_controller(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        if let Some(spec) = child_obj(obj, "spec") {
            let empty = spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                spec["selector"] = labels.clone();
            }
        }
        if let Some(meta) = child_obj(obj, "metadata") {
            let empty = meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                meta["labels"] = labels;
            }
        }
    }
    if let Some(spec) = child_obj(obj, "spec") {
        set_default(spec, "replicas", json!(1));
        if let Some(t) = existing_obj(spec, "template") {
            default_pod_template(t);
        }
    }
}

fn default_deployment(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = child_obj(spec, "strategy") {
        set_default_str(strategy, "type", "RollingUpdate");
        if str_at(strategy, "type") == "RollingUpdate" {
            if let Some(ru) = child_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template_of(spec);
}

fn default_replica_set(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    default_template_of(spec);
}

fn default_daemon_set(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    if let Some(us) = child_obj(spec, "updateStrategy") {
        set_default_str(us, "type", "RollingUpdate");
        if str_at(us, "type") == "RollingUpdate" {
            if let Some(ru) = child_obj(us, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template_of(spec);
}

fn default_stateful_set(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(us) = child_obj(spec, "updateStrategy") {
        if str_at(us, "type").is_empty() {
            us["type"] = json!("RollingUpdate");
            set_default(us, "rollingUpdate", json!({}));
        }
        if str_at(us, "type") == "RollingUpdate" {
            if let Some(ru) = existing_obj(us, "rollingUpdate") {
                set_default(ru, "partition", json!(0));
            }
        }
    }
    if let Some(p) = child_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default_str(p, "whenDeleted", "Retain");
        set_default_str(p, "whenScaled", "Retain");
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template_of(spec);
    for_each_in(spec, "volumeClaimTemplates", default_pvc);
}

fn default_job(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let Some(spec) = child_obj(obj, "spec") {
        if !is_set(spec, "completions") && !is_set(spec, "parallelism") {
            spec["completions"] = json!(1);
            spec["parallelism"] = json!(1);
        }
        set_default(spec, "parallelism", json!(1));
        if !is_set(spec, "backoffLimit") {
            let limit = if is_set(spec, "backoffLimitPerIndex") {
                i64::from(i32::MAX)
            } else {
                6
            };
            spec["backoffLimit"] = json!(limit);
        }
        set_default(spec, "completionMode", json!("NonIndexed"));
        set_default(spec, "suspend", json!(false));
        let has_pfp = is_set(spec, "podFailurePolicy");
        if let Some(pfp) = existing_obj(spec, "podFailurePolicy") {
            for_each_in(pfp, "rules", |rule| {
                for_each_in(rule, "onPodConditions", |c| {
                    set_default_str(c, "status", "True")
                });
            });
        }
        let policy = if has_pfp {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        set_default(spec, "podReplacementPolicy", json!(policy));
        default_template_of(spec);
    }
    if let Some(labels) = template_labels {
        if let Some(meta) = child_obj(obj, "metadata") {
            let empty = meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                meta["labels"] = labels;
            }
        }
    }
    let has_selector = obj.pointer("/spec/selector").is_some_and(|s| !s.is_null());
    if !has_selector {
        generate_job_selector(obj);
    }
}

fn default_cron_job(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default_str(spec, "concurrencyPolicy", "Allow");
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = child_obj(spec, "jobTemplate") {
        if let Some(js) = child_obj(jt, "spec") {
            default_template_of(js);
        }
    }
}

// ---------------------------------------------------------------------------
// Core kinds
// ---------------------------------------------------------------------------

fn default_service(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default_str(spec, "sessionAffinity", "None");
    if str_at(spec, "sessionAffinity") == "None" {
        if let Some(m) = spec.as_object_mut() {
            m.remove("sessionAffinityConfig");
        }
    }
    set_default_str(spec, "type", "ClusterIP");
    for_each_in(spec, "ports", |p| {
        set_default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset {
            if let Some(port) = p.get("port").cloned() {
                p["targetPort"] = port;
            }
        }
    });
    let ty = str_at(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty == "ExternalName" {
        return;
    }
    // Normalisation of clusterIP/clusterIPs and the single-stack IPv4 family fields
    // (kube's service REST storage).
    let cluster_ip = str_at(spec, "clusterIP").to_string();
    let has_ips = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !cluster_ip.is_empty() && !has_ips {
        spec["clusterIPs"] = json!([cluster_ip]);
    } else if cluster_ip.is_empty() && has_ips {
        if let Some(first) = spec.pointer("/clusterIPs/0").cloned() {
            spec["clusterIP"] = first;
        }
    }
    let headless = str_at(spec, "clusterIP") == "None";
    let selectorless = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let policy = if headless && selectorless {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    set_default(spec, "ipFamilyPolicy", json!(policy));
    let no_families = spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_families {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
}

fn default_namespace(obj: &mut Value) {
    let terminating = obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    if !terminating {
        if let Some(spec) = child_obj(obj, "spec") {
            set_default(spec, "finalizers", json!(["kubernetes"]));
        }
    }
    if let Some(status) = child_obj(obj, "status") {
        set_default_str(status, "phase", "Active");
    }
}

fn default_secret(obj: &mut Value) {
    set_default_str(obj, "type", "Opaque");
    let string_data = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        });
    if let Some(sd) = string_data {
        if let Some(data) = child_obj(obj, "data").and_then(Value::as_object_mut) {
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default().to_string();
                data.insert(k, json!(base64_encode(s.as_bytes())));
            }
        }
    }
}

fn default_pvc(obj: &mut Value) {
    if let Some(spec) = child_obj(obj, "spec") {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_obj(obj, "status") {
        set_default_str(status, "phase", "Pending");
    }
}

fn default_pv(obj: &mut Value) {
    if let Some(spec) = child_obj(obj, "spec") {
        set_default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        set_default(spec, "volumeMode", json!("Filesystem"));
        default_volume_source_common(spec);
    }
    if let Some(status) = child_obj(obj, "status") {
        set_default_str(status, "phase", "Pending");
    }
}

fn default_node(obj: &mut Value) {
    if let Some(status) = existing_obj(obj, "status") {
        if !is_set(status, "allocatable") {
            if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
                status["allocatable"] = cap;
            }
        }
    }
}

fn default_endpoints(obj: &mut Value) {
    for_each_in(obj, "subsets", |s| {
        for_each_in(s, "ports", |p| set_default_str(p, "protocol", "TCP"));
    });
}

fn default_limit_range(obj: &mut Value) {
    let Some(spec) = existing_obj(obj, "spec") else {
        return;
    };
    for_each_in(spec, "limits", |item| {
        if str_at(item, "type") != "Container" {
            return;
        }
        let get = |item: &Value, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut default = get(item, "default");
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in get(item, "max") {
            default.entry(k).or_insert(v);
        }
        for (k, v) in &default {
            default_request.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in get(item, "min") {
            default_request.entry(k).or_insert(v);
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !default_request.is_empty() {
            item["defaultRequest"] = Value::Object(default_request);
        }
    });
}

// ---------------------------------------------------------------------------
// Other groups
// ---------------------------------------------------------------------------

fn default_hpa(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
        }]);
    }
    if let Some(behavior) = existing_obj(spec, "behavior") {
        if let Some(up) = child_obj(behavior, "scaleUp") {
            set_default(up, "stabilizationWindowSeconds", json!(0));
            set_default(up, "selectPolicy", json!("Max"));
            let empty = up
                .get("policies")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if empty {
                up["policies"] = json!([
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}
                ]);
            }
        }
        if let Some(down) = child_obj(behavior, "scaleDown") {
            set_default(down, "selectPolicy", json!("Max"));
            let empty = down
                .get("policies")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if empty {
                down["policies"] = json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]);
            }
        }
    }
}

fn default_network_policy(obj: &mut Value) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    for key in ["ingress", "egress"] {
        for_each_in(spec, key, |rule| {
            for_each_in(rule, "ports", |p| set_default(p, "protocol", json!("TCP")));
        });
    }
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        spec["policyTypes"] = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
    }
}

fn default_endpoint_slice(obj: &mut Value) {
    for_each_in(obj, "ports", |p| {
        set_default(p, "name", json!(""));
        set_default(p, "protocol", json!("TCP"));
    });
}

fn default_storage_class(obj: &mut Value) {
    set_default(obj, "reclaimPolicy", json!("Delete"));
    set_default(obj, "volumeBindingMode", json!("Immediate"));
}

fn default_binding(obj: &mut Value) {
    if let Some(rr) = existing_obj(obj, "roleRef") {
        set_default_str(rr, "apiGroup", "rbac.authorization.k8s.io");
    }
    for_each_in(obj, "subjects", |s| {
        let kind = str_at(s, "kind").to_string();
        if kind == "User" || kind == "Group" {
            set_default_str(s, "apiGroup", "rbac.authorization.k8s.io");
        }
    });
}

/// Standard base64 with padding (what Go's `encoding/json` emits for `[]byte`).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| ALPHABET[((n >> shift) & 63) as usize] as char;
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_admission_mounts_api_access() {
        let mut pod = json!({"spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]}});
        service_account_admission(&mut pod, "abcde");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
        assert_eq!(
            pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        for (list, i) in [("containers", 0), ("initContainers", 1)] {
            let m = &pod["spec"][list][0]["volumeMounts"][i];
            assert_eq!(m["mountPath"], SERVICE_ACCOUNT_MOUNT_PATH);
            assert_eq!(m["readOnly"], true);
        }
        let mut opted_out = json!({"spec": {"serviceAccountName": "robot", "automountServiceAccountToken": false, "containers": [{"name": "a"}]}});
        service_account_admission(&mut opted_out, "abcde");
        assert_eq!(opted_out["spec"]["serviceAccountName"], "robot");
        assert!(opted_out["spec"].get("volumes").is_none());
        let mut own = json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "t", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]}]}});
        service_account_admission(&mut own, "abcde");
        assert!(own["spec"].get("volumes").is_none());
    }

    #[test]
    fn pod_defaults_match_kube() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{
                "name": "c", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "livenessProbe": {"httpGet": {"port": 80}}
            }],
            "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "cm"}}]}
        });
        apply_defaults("", "Pod", &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        let probe = &c["livenessProbe"];
        assert_eq!(probe["timeoutSeconds"], 1);
        assert_eq!(probe["periodSeconds"], 10);
        assert_eq!(probe["successThreshold"], 1);
        assert_eq!(probe["failureThreshold"], 3);
        assert_eq!(probe["httpGet"]["scheme"], "HTTP");
        assert_eq!(probe["httpGet"]["path"], "/");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        // Idempotent.
        let once = pod.clone();
        apply_defaults("", "Pod", &mut pod);
        assert_eq!(once, pod);
    }

    #[test]
    fn pull_policy_follows_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(
            default_pull_policy(
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("Nginx"), "IfNotPresent");
    }

    #[test]
    fn qos_classes() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply_defaults("", "Pod", &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "100m"}}}]}});
        apply_defaults("", "Pod", &mut pod);
        assert_eq!(pod["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
        apply_defaults("apps", "Deployment", &mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        let ps = &s["template"]["spec"];
        assert_eq!(ps["restartPolicy"], "Always");
        assert!(ps.get("enableServiceLinks").is_none());
        assert!(ps.get("priority").is_none());
        assert_eq!(ps["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn statefulset_and_daemonset_defaults() {
        let mut s =
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        apply_defaults("apps", "StatefulSet", &mut s);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        let mut ds = json!({"spec": {}});
        apply_defaults("apps", "DaemonSet", &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn job_defaults_and_selector() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {
            "template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}});
        apply_defaults("batch", "Job", &mut j);
        let s = &j["spec"];
        assert_eq!(s["completions"], 1);
        assert_eq!(s["parallelism"], 1);
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(s.get("manualSelector").is_none());
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            s["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let tl = &s["template"]["metadata"]["labels"];
        assert_eq!(tl["job-name"], "pi");
        assert_eq!(tl["controller-uid"], "u-1");
        assert_eq!(
            j["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
    }

    #[test]
    fn cronjob_defaults() {
        let mut c = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}});
        apply_defaults("batch", "CronJob", &mut c);
        let s = &c["spec"];
        assert_eq!(s["concurrencyPolicy"], "Allow");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["successfulJobsHistoryLimit"], 3);
        assert_eq!(s["failedJobsHistoryLimit"], 1);
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert_eq!(
            s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
    }

    #[test]
    fn service_defaults() {
        let mut svc = json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}});
        apply_defaults("", "Service", &mut svc);
        let s = &svc["spec"];
        assert_eq!(s["type"], "ClusterIP");
        assert_eq!(s["sessionAffinity"], "None");
        assert_eq!(s["ports"][0]["protocol"], "TCP");
        assert_eq!(s["ports"][0]["targetPort"], 80);
        assert_eq!(s["internalTrafficPolicy"], "Cluster");
        assert!(s.get("externalTrafficPolicy").is_none());
        assert_eq!(s["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        let mut np =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}});
        apply_defaults("", "Service", &mut np);
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
        let mut en = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        apply_defaults("", "Service", &mut en);
        assert!(en["spec"].get("ipFamilies").is_none());
        assert!(en["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn misc_kinds() {
        let mut ns = json!({"metadata": {"name": "x"}});
        apply_defaults("", "Namespace", &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");

        let mut sec = json!({"metadata": {"name": "s"}, "stringData": {"a": "hello"}});
        apply_defaults("", "Secret", &mut sec);
        assert_eq!(sec["type"], "Opaque");
        assert_eq!(sec["data"]["a"], "aGVsbG8=");
        assert!(sec.get("stringData").is_none());

        let mut sc = json!({"provisioner": "x"});
        apply_defaults("storage.k8s.io", "StorageClass", &mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");

        let mut netpol =
            json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        apply_defaults("networking.k8s.io", "NetworkPolicy", &mut netpol);
        assert_eq!(netpol["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(netpol["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");

        let mut pv = json!({"spec": {"hostPath": {"path": "/x"}}});
        apply_defaults("", "PersistentVolume", &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");

        let mut hpa = json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}});
        apply_defaults("autoscaling", "HorizontalPodAutoscaler", &mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );

        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]});
        apply_defaults("rbac.authorization.k8s.io", "RoleBinding", &mut rb);
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    }

    #[test]
    fn claims_get_the_newest_default_class_and_protection() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": if default { "true" } else { "false" }}}})
        };
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("new", "2026-02-01T00:00:00Z", true),
            class("newest-not-default", "2026-03-01T00:00:00Z", false),
        ];
        let mut pvc =
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        claim_admission(&mut pvc, &classes);
        assert_eq!(pvc["spec"]["storageClassName"], "new");
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"])
        );
        claim_admission(&mut pvc, &classes);
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"]),
            "once"
        );

        let mut explicit_none =
            json!({"metadata": {"name": "c"}, "spec": {"storageClassName": ""}});
        claim_admission(&mut explicit_none, &classes);
        assert_eq!(
            explicit_none["spec"]["storageClassName"], "",
            "\"\" means no class"
        );
        let mut chosen = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "fast"}});
        claim_admission(&mut chosen, &classes);
        assert_eq!(chosen["spec"]["storageClassName"], "fast");
        let mut no_default = json!({"metadata": {"name": "c"}, "spec": {}});
        claim_admission(&mut no_default, &classes[2..]);
        assert!(no_default["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn tolerations_added_once() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        default_tolerations(&mut pod);
        let t = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
    }

    const KINDS: &[(&str, &str)] = &[
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("", "Service"),
        ("", "Namespace"),
        ("", "Secret"),
        ("", "PersistentVolumeClaim"),
        ("", "PersistentVolume"),
        ("", "Node"),
        ("", "Endpoints"),
        ("", "LimitRange"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "DaemonSet"),
        ("apps", "StatefulSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("storage.k8s.io", "StorageClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ];

    #[test]
    fn odd_shapes_do_not_panic() {
        let shapes = [
            json!(null),
            json!("x"),
            json!([1, 2]),
            json!({}),
            json!({"spec": "x", "metadata": 1, "status": [], "ports": "p", "subsets": {"a": 1}}),
            json!({"spec": {"template": "t", "containers": "c", "ports": [1, "a"], "jobTemplate": 3,
                "strategy": [], "updateStrategy": "u", "volumes": [null, 1], "selector": "s", "behavior": 1},
                "roleRef": "r", "subjects": [1]}),
            json!({"spec": {"template": {"metadata": {"labels": "l"}, "spec": {"containers": [{"ports": "p", "env": [1],
                "livenessProbe": "x", "resources": {"limits": "l"}}]}}, "limits": [{"type": "Container", "max": 1}]}}),
        ];
        for (group, kind) in KINDS {
            for shape in &shapes {
                let mut v = shape.clone();
                apply_defaults(group, kind, &mut v);
                let mut again = v.clone();
                apply_defaults(group, kind, &mut again);
                assert_eq!(v, again, "{kind} not idempotent on {shape}");
            }
        }
        let mut odd = json!({"spec": "x"});
        default_tolerations(&mut odd);
        generate_job_selector(&mut odd);
    }

    #[test]
    fn defaults_are_idempotent_on_full_objects() {
        let objects = [
            (
                "",
                "ReplicationController",
                json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            ),
            (
                "",
                "Service",
                json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "clusterIP": "10.0.0.1"}}),
            ),
            ("", "Service", json!({"spec": {"clusterIP": "None"}})),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}),
            ),
            (
                "",
                "LimitRange",
                json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"spec": {"maxReplicas": 2, "behavior": {"scaleUp": {}, "scaleDown": {}}}}),
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"addressType": "IPv4", "ports": [{"port": 80}]}),
            ),
            (
                "",
                "Endpoints",
                json!({"subsets": [{"ports": [{"port": 80}]}]}),
            ),
            ("", "Node", json!({"status": {"capacity": {"cpu": "2"}}})),
        ];
        for (group, kind, obj) in objects {
            let mut once = obj.clone();
            apply_defaults(group, kind, &mut once);
            let mut twice = once.clone();
            apply_defaults(group, kind, &mut twice);
            assert_eq!(once, twice, "{kind}");
        }
    }

    #[test]
    fn more_kind_defaults() {
        let mut rc = json!({"spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        apply_defaults("", "ReplicationController", &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);

        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}});
        apply_defaults("", "LimitRange", &mut lr);
        let item = &lr["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "2", "memory": "1Mi"}));

        let mut node = json!({"status": {"capacity": {"cpu": "2", "pods": "110"}}});
        apply_defaults("", "Node", &mut node);
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "2", "pods": "110"})
        );

        let mut es = json!({"addressType": "IPv4", "ports": [{"port": 80}]});
        apply_defaults("discovery.k8s.io", "EndpointSlice", &mut es);
        assert_eq!(
            es["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );

        let mut pc = json!({"value": 10});
        apply_defaults("scheduling.k8s.io", "PriorityClass", &mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");

        let mut headless = json!({"spec": {"clusterIP": "None"}});
        apply_defaults("", "Service", &mut headless);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");

        let mut pod = json!({"spec": {"hostNetwork": true, "priorityClassName": "system-node-critical",
            "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53}]}]}});
        apply_defaults("", "Pod", &mut pod);
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 53);
        assert_eq!(pod["spec"]["priority"], 2_000_001_000);

        let mut job = json!({"spec": {"parallelism": 3, "template": {"spec": {}}}});
        apply_defaults("batch", "Job", &mut job);
        assert!(job["spec"].get("completions").is_none());
        assert_eq!(job["spec"]["parallelism"], 3);
        assert!(job["spec"].get("selector").is_none(), "no uid, no selector");

        let mut manual = json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true,
            "template": {"metadata": {"labels": {"a": "b"}}}}});
        apply_defaults("batch", "Job", &mut manual);
        assert!(manual["spec"].get("selector").is_none());

        let mut sec = json!({"data": {"a": "eA=="}, "stringData": {"a": "yz", "b": "é"}});
        apply_defaults("", "Secret", &mut sec);
        assert_eq!(sec["data"], json!({"a": "eXo=", "b": "w6k="}));
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
    }
}
