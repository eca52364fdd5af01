//! One container of a pod → the runtime's [`ContainerSpec`], as kubelet's
//! `generateContainerConfig` does it: argv from the image's entrypoint/cmd and the
//! container's command/args, environment (image, service links, `env` with
//! `valueFrom`, `envFrom`, `$(VAR)` expansion), working dir, user and groups, security
//! context, cgroup limits from requests/limits, the pod sandbox's namespaces, and mounts
//! (volumes, `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`). Pure: ConfigMaps,
//! Secrets and volume paths are looked up by the caller and passed in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, ResourceRequirements, Service};

use crate::apimachinery::quantity::parse_quantity;
use crate::runtime::spec::{CapabilityChanges, Resources};
use crate::runtime::{BindMount, ContainerSpec, NamespaceMode, Namespaces};

/// kubelet's `containerLogMaxSize` and `containerLogMaxFiles` defaults.
pub const LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const LOG_MAX_FILES: usize = 5;
/// The CFS period kubelet uses.
pub const CPU_PERIOD: u64 = 100_000;

/// What an image says about how to run it (its config's `Entrypoint`, `Cmd`, `Env`,
/// `WorkingDir`, `User`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The pod sandbox a container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub netns: PathBuf,
    pub ipcns: PathBuf,
    pub utsns: PathBuf,
    /// `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` of the pod, on the host.
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
}

/// Everything looked up for the pod before its containers start.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// ConfigMaps of the pod's namespace that its containers reference, by name.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets likewise (values decoded).
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Each volume's directory (or file) on the host, by volume name.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Volumes every mount of which is read-only (claims with `readOnly: true`).
    pub read_only_volumes: std::collections::BTreeSet<String>,
    /// Service environment variables (`KUBERNETES_SERVICE_HOST`, …), in order.
    pub service_env: Vec<(String, String)>,
    /// Node allocatable CPU (millicores) and memory (bytes): what `resourceFieldRef`
    /// gives for an unset limit.
    pub node_cpu_milli: i64,
    pub node_memory: i64,
    pub host_ip: String,
    pub pod_ip: String,
}

/// Why a container's configuration cannot be made: the container waits with reason
/// `CreateContainerConfigError` and this message, as with kubelet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        key: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldRef {0:?}")]
    FieldRef(String),
    #[error("unsupported resourceFieldRef {0:?}")]
    ResourceFieldRef(String),
    #[error("volume {0:?} of volumeMount is not found in the pod's volumes")]
    Volume(String),
    #[error("subPath {0:?} must be a relative path inside the volume")]
    SubPath(String),
    #[error("the image's user {0:?} is not a number and not found in the image")]
    User(String),
    #[error("no command specified")]
    NoCommand,
}

/// Expand `$(VAR)` references with the variables defined so far, kubelet's way: `$$` is
/// a literal `$`, unknown references stay as they are.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

pub fn pod_field(pod: &Pod, inputs: &Inputs, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let map_entry = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .ok_or_else(|| ConfigError::FieldRef(path.to_string()))?;
        Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default())
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => inputs.host_ip.clone(),
        "status.podIP" | "status.podIPs" => inputs.pod_ip.clone(),
        p if p.starts_with("metadata.labels[") => {
            map_entry(&meta.labels, &p["metadata.labels".len()..])?
        }
        p if p.starts_with("metadata.annotations[") => {
            map_entry(&meta.annotations, &p["metadata.annotations".len()..])?
        }
        other => return Err(ConfigError::FieldRef(other.to_string())),
    })
}

fn quantity(
    resources: Option<&ResourceRequirements>,
    which: &str,
    name: &str,
) -> Option<(i64, i64)> {
    let r = resources?;
    let map = if which == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }?;
    let q = parse_quantity(&map.get(name)?.0).ok()?;
    Some((q.milli_value(), q.value()))
}

pub fn resource_field(
    container: &Container,
    inputs: &Inputs,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, ConfigError> {
    let bad = || ConfigError::ResourceFieldRef(resource.to_string());
    let (which, name) = resource.split_once('.').ok_or_else(bad)?;
    if !matches!(which, "limits" | "requests") {
        return Err(bad());
    }
    let r = container.resources.as_ref();
    let divisor = match divisor {
        Some(d) => parse_quantity(d).map_err(|_| bad())?,
        None => parse_quantity("1").map_err(|_| bad())?,
    };
    // An unset limit reads as the node's allocatable (kubelet's rule); an unset request
    // as 0.
    let (milli, value) = match (quantity(r, which, name), which, name) {
        (Some(q), _, _) => q,
        (None, "limits", "cpu") => (inputs.node_cpu_milli, (inputs.node_cpu_milli + 999) / 1000),
        (None, "limits", "memory") => (inputs.node_memory * 1000, inputs.node_memory),
        (None, _, _) => (0, 0),
    };
    if name == "cpu" {
        // Rounded up, in units of the divisor (default 1 core).
        let per = divisor.milli_value().max(1);
        Ok(((milli + per - 1) / per).to_string())
    } else {
        let per = divisor.value().max(1);
        Ok(((value + per - 1) / per).to_string())
    }
}

/// The container's environment, in kubelet's order: image env, service links,
/// `envFrom`, then `env` (later wins), with `$(VAR)` expanded in `env` values.
pub fn environment(
    pod: &Pod,
    container: &Container,
    image: &ImageDefaults,
    inputs: &Inputs,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(&mut vars, k.to_string(), v.to_string());
    }
    for (k, v) in &inputs.service_env {
        set(&mut vars, k.clone(), v.clone());
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(cm) = &source.config_map_ref {
            let optional = cm.optional.unwrap_or(false);
            match inputs.config_maps.get(&cm.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(ConfigError::ConfigMapNotFound(cm.name.clone())),
            }
        }
        if let Some(s) = &source.secret_ref {
            let optional = s.optional.unwrap_or(false);
            match inputs.secrets.get(&s.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(ConfigError::SecretNotFound(s.name.clone())),
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let value = match (value, value_from) {
            (_, Some(from)) => {
                if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match inputs.config_maps.get(&r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => v.clone(),
                        _ if optional => continue,
                        Some(None) => {
                            return Err(ConfigError::KeyNotFound {
                                key: r.key.clone(),
                                kind: "ConfigMap",
                                namespace: namespace.clone(),
                                name: r.name.clone(),
                            })
                        }
                        None => return Err(ConfigError::ConfigMapNotFound(r.name.clone())),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match inputs.secrets.get(&r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
                        _ if optional => continue,
                        Some(None) => {
                            return Err(ConfigError::KeyNotFound {
                                key: r.key.clone(),
                                kind: "Secret",
                                namespace: namespace.clone(),
                                name: r.name.clone(),
                            })
                        }
                        None => return Err(ConfigError::SecretNotFound(r.name.clone())),
                    }
                } else if let Some(f) = &from.field_ref {
                    pod_field(pod, inputs, &f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match &r.container_name {
                        Some(n) if !n.is_empty() && *n != container.name => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|c| c.name == *n))
                            .unwrap_or(container),
                        _ => container,
                    };
                    resource_field(
                        target,
                        inputs,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                    )?
                } else {
                    String::new()
                }
            }
            (Some(v), None) => expand(v, &vars),
            (None, None) => String::new(),
        };
        set(&mut vars, name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// Service link variables, as kubelet sets them for the Services of the pod's namespace
/// (and the API server's `kubernetes` Service): `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT[_<PORT NAME>]` and Docker-link style `<NAME>_PORT…` variables.
/// Headless Services have none.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        by_name.insert(s.metadata.name.clone().unwrap_or_default(), s);
    }
    let mut out = Vec::new();
    for (name, svc) in by_name {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        n.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let upper = proto(p).to_uppercase();
            let base = format!("{prefix}_PORT_{}_{upper}", p.port);
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", upper.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), upper.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// argv: `command` replaces the image's entrypoint (and then its cmd too), `args`
/// replace its cmd; `$(VAR)` expanded in both.
pub fn argv(
    container: &Container,
    image: &ImageDefaults,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone();
    let mut argv: Vec<String> = if command.is_empty() {
        let mut v = image.entrypoint.clone();
        v.extend(args.unwrap_or_else(|| image.cmd.clone()));
        v
    } else {
        let mut v = command;
        v.extend(args.unwrap_or_default());
        v
    };
    for a in &mut argv {
        *a = expand(a, &vars);
    }
    if argv.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    Ok(argv)
}

/// The image's `User` (`uid`, `uid:gid`, `name`, `name:group`); names are looked up with
/// `lookup` (the image's /etc/passwd and /etc/group).
pub fn image_user(
    user: &str,
    lookup: &dyn Fn(&str, bool) -> Option<u32>,
) -> Result<(u32, Option<u32>), ConfigError> {
    let bad = || ConfigError::User(user.to_string());
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = match u.parse() {
        Ok(n) => n,
        Err(_) => lookup(u, false).ok_or_else(bad)?,
    };
    let gid = match g {
        None => None,
        Some(g) => Some(match g.parse() {
            Ok(n) => n,
            Err(_) => lookup(g, true).ok_or_else(bad)?,
        }),
    };
    Ok((uid, gid))
}

/// `/etc/passwd` or `/etc/group` of a root filesystem: the id of `name`.
pub fn lookup_id(rootfs: &Path, name: &str, group: bool) -> Option<u32> {
    let file = if group { "etc/group" } else { "etc/passwd" };
    let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// The cgroup limits of a container: `cpu.shares` from the CPU request (at least 2),
/// the CFS quota from the CPU limit, the memory limit.
pub fn resources(container: &Container) -> Resources {
    let r = container.resources.as_ref();
    let cpu_request = quantity(r, "requests", "cpu").map(|q| q.0);
    let cpu_limit = quantity(r, "limits", "cpu").map(|q| q.0);
    // No request but a limit: the API defaults the request to the limit.
    let shares = cpu_request
        .or(cpu_limit)
        .map(|m| ((m * 1024) / 1000).max(2) as u64);
    Resources {
        cpu_shares: Some(shares.unwrap_or(2)),
        cpu_quota: cpu_limit.map(|m| (m * CPU_PERIOD as i64 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| CPU_PERIOD),
        memory_limit: quantity(r, "limits", "memory").map(|q| q.1),
    }
}

/// The cgroup every container of pod `uid` lives under (cgroupfs, every hierarchy).
pub fn pod_cgroup(uid: &str) -> String {
    format!("/skiff/pod{uid}")
}

/// Where a container's logs go:
/// `<root>/<namespace>_<pod>_<uid>/<container>/<attempt>.log` (kubelet's layout).
pub fn container_log_path(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    root.join(format!("{namespace}_{pod}_{uid}"))
        .join(container)
        .join(format!("{attempt}.log"))
}

/// [`container_log_path`] of a container of `pod`.
pub fn log_path(root: &Path, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
    let m = &pod.metadata;
    container_log_path(
        root,
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or(""),
        container,
        attempt,
    )
}

/// A container's mounts: volume mounts (with `subPath`), then the pod's `/etc/hosts`,
/// `/etc/resolv.conf` and `/etc/hostname` unless a volume covers them.
pub fn mounts(
    container: &Container,
    sandbox: &Sandbox,
    inputs: &Inputs,
) -> Result<Vec<BindMount>, ConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let base = inputs
            .volumes
            .get(&m.name)
            .ok_or_else(|| ConfigError::Volume(m.name.clone()))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = Path::new(sub);
                if p.is_absolute()
                    || p.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(ConfigError::SubPath(sub.to_string()));
                }
                base.join(p)
            }
            None => base.clone(),
        };
        out.push(BindMount {
            source,
            destination: PathBuf::from(&m.mount_path),
            read_only: m.read_only.unwrap_or(false) || inputs.read_only_volumes.contains(&m.name),
        });
    }
    for (dest, source) in [
        ("/etc/hosts", &sandbox.hosts),
        ("/etc/resolv.conf", &sandbox.resolv_conf),
        ("/etc/hostname", &sandbox.hostname),
    ] {
        if !out.iter().any(|m| m.destination == Path::new(dest)) {
            out.push(BindMount {
                source: source.clone(),
                destination: dest.into(),
                read_only: false,
            });
        }
    }
    Ok(out)
}

/// The whole runtime spec of one attempt of one container.
#[allow(clippy::too_many_arguments)]
pub fn container_spec(
    pod: &Pod,
    container: &Container,
    id: String,
    rootfs: PathBuf,
    image: &ImageDefaults,
    sandbox: &Sandbox,
    inputs: &Inputs,
    log: PathBuf,
) -> Result<ContainerSpec, ConfigError> {
    let env = environment(pod, container, image, inputs)?;
    let args = argv(container, image, &env)?;
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let lookup = |name: &str, group: bool| lookup_id(&rootfs, name, group);
    let (image_uid, image_gid) = match image.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => image_user(u, &lookup)?,
        None => (0, None),
    };
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user))
        .map_or(image_uid, |u| u as u32);
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group))
        .map(|g| g as u32)
        .or(image_gid)
        .unwrap_or(0);
    let mut groups: Vec<u32> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs_group) = pod_sc.and_then(|s| s.fs_group) {
        groups.push(fs_group as u32);
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let mut spec = ContainerSpec::new(id, rootfs, args);
    spec.env = env;
    spec.cwd = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()));
    spec.uid = uid;
    spec.gid = gid;
    spec.supplementary_groups = groups;
    spec.capabilities = CapabilityChanges {
        add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
    };
    spec.privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    spec.read_only_rootfs = sc
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    spec.no_new_privileges = sc.and_then(|s| s.allow_privilege_escalation) == Some(false);
    spec.resources = resources(container);
    spec.namespaces = Namespaces {
        network: NamespaceMode::Join(sandbox.netns.clone()),
        ipc: NamespaceMode::Join(sandbox.ipcns.clone()),
        uts: NamespaceMode::Join(sandbox.utsns.clone()),
    };
    spec.mounts = mounts(container, sandbox, inputs)?;
    spec.tty = container.tty.unwrap_or(false);
    spec.image = container.image.clone().unwrap_or_default();
    spec.stdin = container.stdin.unwrap_or(false);
    spec.stdin_once = container.stdin_once.unwrap_or(false);
    spec.cgroup_parent = Some(pod_cgroup(pod.metadata.uid.as_deref().unwrap_or("")));
    spec.log_path = log;
    spec.log_max_size = LOG_MAX_SIZE;
    spec.log_max_files = LOG_MAX_FILES;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default",
                     "securityContext": {"supplementalGroups": [2000], "fsGroup": 3000},
                     "containers": [container]}
        }))
        .expect("pod")
    }

    fn first(p: &Pod) -> &Container {
        &p.spec.as_ref().expect("spec").containers[0]
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            netns: "/run/netns/x".into(),
            ipcns: "/run/ipc/x".into(),
            utsns: "/run/uts/x".into(),
            hosts: "/pods/x/hosts".into(),
            resolv_conf: "/pods/x/resolv.conf".into(),
            hostname: "/pods/x/hostname".into(),
        }
    }

    fn inputs() -> Inputs {
        Inputs {
            config_maps: [(
                "cfg".to_string(),
                [("color".to_string(), "blue".to_string())].into(),
            )]
            .into(),
            secrets: [(
                "creds".to_string(),
                [("password".to_string(), b"s3cret".to_vec())].into(),
            )]
            .into(),
            volumes: [("data".to_string(), PathBuf::from("/vol/data"))].into(),
            read_only_volumes: Default::default(),
            service_env: vec![("KUBERNETES_SERVICE_HOST".into(), "10.43.0.1".into())],
            node_cpu_milli: 2000,
            node_memory: 4 << 30,
            host_ip: "192.168.1.2".into(),
            pod_ip: "10.42.0.7".into(),
        }
    }

    #[test]
    fn expansion_follows_kubelet() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("no refs", &vars), "no refs");
        assert_eq!(expand("$(unclosed", &vars), "$(unclosed");
    }

    #[test]
    fn env_from_every_source_in_order() {
        let p = pod(serde_json::json!({
            "name": "app", "image": "busybox",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "GREETING", "value": "hi $(CFG_color)"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
            ],
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}
        }));
        let image = ImageDefaults {
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        };
        let env = environment(&p, first(&p), &image, &inputs()).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "PATH");
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(get("CFG_color"), Some("blue"));
        assert_eq!(get("GREETING"), Some("hi blue"));
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("COLOR"), Some("blue"));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("IP"), Some("10.42.0.7"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("250"));
        assert_eq!(get("MISSING_OK"), None);
    }

    #[test]
    fn missing_references_are_kubelet_errors() {
        let p = pod(
            serde_json::json!({"name": "app", "image": "busybox", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "size"}}}]}),
        );
        let err = environment(&p, first(&p), &ImageDefaults::default(), &inputs())
            .expect_err("missing key");
        assert_eq!(
            err.to_string(),
            "couldn't find key size in ConfigMap shop/cfg"
        );
        let p = pod(serde_json::json!({"name": "app", "image": "busybox",
            "envFrom": [{"secretRef": {"name": "other"}}]}));
        let err = environment(&p, first(&p), &ImageDefaults::default(), &inputs())
            .expect_err("missing secret");
        assert_eq!(err.to_string(), "secret \"other\" not found");
    }

    #[test]
    fn service_links_name_every_port() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [
                {"name": "sql", "port": 5432}, {"port": 53, "protocol": "UDP"}]}
        }))
        .expect("service");
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .expect("service");
        let env: BTreeMap<String, String> = service_env(&[svc, headless]).into_iter().collect();
        assert_eq!(env["MY_DB_SERVICE_HOST"], "10.43.0.20");
        assert_eq!(env["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(env["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(env["MY_DB_PORT"], "tcp://10.43.0.20:5432");
        assert_eq!(env["MY_DB_PORT_53_UDP"], "udp://10.43.0.20:53");
        assert_eq!(env["MY_DB_PORT_53_UDP_ADDR"], "10.43.0.20");
        assert!(!env.keys().any(|k| k.starts_with("H_")));
    }

    #[test]
    fn argv_merges_command_args_and_image() {
        let image = ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            ..Default::default()
        };
        let c =
            |v: serde_json::Value| -> Container { serde_json::from_value(v).expect("container") };
        let env = vec![("PORT".to_string(), "80".to_string())];
        let only_image = c(serde_json::json!({"name": "a"}));
        assert_eq!(
            argv(&only_image, &image, &env).expect("argv"),
            ["/entry", "serve"]
        );
        let args = c(serde_json::json!({"name": "a", "args": ["--port=$(PORT)"]}));
        assert_eq!(
            argv(&args, &image, &env).expect("argv"),
            ["/entry", "--port=80"]
        );
        let command =
            c(serde_json::json!({"name": "a", "command": ["sh", "-c"], "args": ["echo"]}));
        assert_eq!(
            argv(&command, &image, &env).expect("argv"),
            ["sh", "-c", "echo"]
        );
        let command_only = c(serde_json::json!({"name": "a", "command": ["sleep"]}));
        assert_eq!(argv(&command_only, &image, &env).expect("argv"), ["sleep"]);
        assert_eq!(
            argv(&only_image, &ImageDefaults::default(), &env),
            Err(ConfigError::NoCommand)
        );
    }

    #[test]
    fn users_limits_namespaces_and_mounts() {
        let p = pod(serde_json::json!({
            "name": "app", "image": "busybox", "command": ["sh"], "workingDir": "/srv",
            "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "sub", "readOnly": true}]
        }));
        let image = ImageDefaults {
            user: Some("nobody:nogroup".into()),
            ..Default::default()
        };
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65533:\n",
        )
        .expect("group");
        let spec = container_spec(
            &p,
            first(&p),
            "u-1_app_0".into(),
            root.path().to_path_buf(),
            &image,
            &sandbox(),
            &inputs(),
            "/var/log/pods/x/app/0.log".into(),
        )
        .expect("spec");
        // runAsUser wins over the image's user; the image's group stays.
        assert_eq!((spec.uid, spec.gid), (1000, 65533));
        assert_eq!(spec.supplementary_groups, [2000, 3000]);
        assert!(spec.no_new_privileges);
        assert_eq!(spec.capabilities.drop, ["ALL"]);
        assert_eq!(spec.cwd.as_deref(), Some("/srv"));
        assert_eq!(spec.resources.cpu_quota, Some(50_000));
        assert_eq!(spec.resources.cpu_shares, Some(512));
        assert_eq!(spec.resources.memory_limit, Some(128 << 20));
        assert_eq!(
            spec.namespaces.network,
            NamespaceMode::Join("/run/netns/x".into())
        );
        assert_eq!(spec.cgroup_parent.as_deref(), Some("/skiff/podu-1"));
        assert_eq!(spec.mounts[0].source, PathBuf::from("/vol/data/sub"));
        assert!(spec.mounts[0].read_only);
        let dests: Vec<_> = spec
            .mounts
            .iter()
            .map(|m| m.destination.display().to_string())
            .collect();
        assert_eq!(
            dests,
            ["/data", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]
        );

        // Without runAsUser the image's user (by name) applies.
        assert_eq!(
            image_user("nobody", &|n, g| lookup_id(root.path(), n, g)).expect("user"),
            (65534, None)
        );
        assert!(image_user("ghost", &|n, g| lookup_id(root.path(), n, g)).is_err());
        assert_eq!(
            image_user("10:20", &|_, _| None).expect("numeric"),
            (10, Some(20))
        );
    }

    #[test]
    fn sub_paths_cannot_escape_and_log_paths_follow_kubelet() {
        let p = pod(serde_json::json!({"name": "app", "image": "busybox",
            "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../etc"}]}));
        assert!(matches!(
            mounts(first(&p), &sandbox(), &inputs()),
            Err(ConfigError::SubPath(_))
        ));
        assert_eq!(
            log_path(Path::new("/var/log/pods"), &p, "app", 2),
            PathBuf::from("/var/log/pods/shop_web_u-1/app/2.log")
        );
        let best_effort: Container =
            serde_json::from_value(serde_json::json!({"name": "a"})).expect("c");
        assert_eq!(resources(&best_effort).cpu_shares, Some(2));
    }

    #[test]
    fn read_only_claims_make_every_mount_read_only() {
        let p = pod(serde_json::json!({"name": "app", "image": "busybox",
            "volumeMounts": [{"name": "data", "mountPath": "/d"}]}));
        let writable = mounts(first(&p), &sandbox(), &inputs()).expect("mounts");
        assert!(!writable[0].read_only);
        let mut ro = inputs();
        ro.read_only_volumes.insert("data".into());
        let read_only = mounts(first(&p), &sandbox(), &ro).expect("mounts");
        assert_eq!(read_only[0].destination, PathBuf::from("/d"));
        assert!(read_only[0].read_only);
    }
}
