//! skiff's own container description ([`ContainerSpec`]) and its pure translation into an
//! OCI runtime spec (`config.json`, the `oci-spec` types that libcontainer re-exports).
//!
//! The translation has no side effects, so every rule (namespaces, capabilities,
//! privileged mode, cgroup resources, mounts) is unit-tested without root. The kubelet
//! fills a [`ContainerSpec`] from a pod; this module decides what the kernel is asked for.

use std::collections::HashSet;
use std::path::PathBuf;

use libcontainer::oci_spec::runtime::{
    get_default_maskedpaths, get_default_mounts, get_default_readonly_paths, Capability,
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use serde::{Deserialize, Serialize};

/// `PATH` when neither the image nor the pod sets one (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cgroup parent used when a spec names none.
pub const DEFAULT_CGROUP_PARENT: &str = "/skiff";

/// Capabilities a non-privileged container gets before `add`/`drop` (the set containerd
/// and Docker grant by default, which Kubernetes users expect).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux knows (for `privileged` and for `add: ["ALL"]`).
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// How a container gets one kind of namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NamespaceMode {
    /// A namespace of its own.
    #[default]
    New,
    /// Join an existing namespace, given as a path (`/proc/<pid>/ns/net` or a bind mount
    /// of one under the run dir: the pod sandbox).
    Join(PathBuf),
}

/// The namespaces that containers of one pod may share. PID and mount namespaces are
/// always new: every container has its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespaces {
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
}

/// A bind mount into the container (volumes, `/etc/hosts`, `/etc/resolv.conf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindMount {
    /// A file or directory on the host.
    pub source: PathBuf,
    /// An absolute path inside the container.
    pub destination: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// Linux capabilities to add to or drop from [`DEFAULT_CAPABILITIES`], in Kubernetes'
/// spelling (`NET_ADMIN`; `CAP_NET_ADMIN` and `ALL` are accepted too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityChanges {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

/// cgroup limits of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// `cpu.shares` (Kubernetes: milliCPU request × 1024 / 1000, at least 2).
    pub cpu_shares: Option<u64>,
    /// `cpu.cfs_quota_us` (Kubernetes: milliCPU limit × period / 1000).
    pub cpu_quota: Option<i64>,
    /// `cpu.cfs_period_us` (Kubernetes: 100000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; exceeding it OOM-kills inside the container.
    pub memory_limit: Option<i64>,
}

/// Everything the runtime needs to run one container. Produced by the kubelet from a pod,
/// consumed by [`to_oci`] and by the shim (which keeps a copy in the container's state
/// dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Unique on the node; `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 bytes.
    pub id: String,
    /// The prepared root filesystem (an overlay mount or a plain directory).
    pub rootfs: PathBuf,
    /// argv: the image's entrypoint/cmd merged with the pod's command/args.
    pub args: Vec<String>,
    /// `NAME=value` pairs, in order; a later one wins.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (`/` when unset).
    pub cwd: Option<String>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub supplementary_groups: Vec<u32>,
    #[serde(default)]
    pub capabilities: CapabilityChanges,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// `allowPrivilegeEscalation: false` (Kubernetes' default is to allow it).
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Only with a new UTS namespace (a joined one already has its hostname).
    pub hostname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<BindMount>,
    /// Allocate a pseudo-terminal: stdout and stderr are then one stream.
    #[serde(default)]
    pub tty: bool,
    /// The image the rootfs was made from, as the pod names it (kept for the agent: a
    /// container whose pod now names another image is replaced).
    #[serde(default)]
    pub image: String,
    /// Keep the container's stdin open for attached clients (else it reads /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin when the first attached client that wrote to it leaves (pipes only:
    /// a terminal stays open).
    #[serde(default)]
    pub stdin_once: bool,
    /// The cgroup parent, absolute (`/skiff/pod-<uid>`); the container's cgroup is
    /// `<parent>/<id>` in every hierarchy.
    pub cgroup_parent: Option<String>,
    /// Where the CRI-format log goes (`/var/log/pods/<ns>_<pod>_<uid>/<name>/<n>.log`).
    pub log_path: PathBuf,
    /// Rotate the log when it grows past this many bytes (0: never).
    #[serde(default)]
    pub log_max_size: u64,
    /// Keep at most this many log files, the live one included (at least 1).
    #[serde(default)]
    pub log_max_files: usize,
}

impl ContainerSpec {
    /// A spec with skiff's defaults: new namespaces, no limits, no mounts, log rotation
    /// off.
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        let id = id.into();
        ContainerSpec {
            log_path: PathBuf::from(format!("/var/log/skiff/{id}.log")),
            id,
            rootfs: rootfs.into(),
            args,
            env: Vec::new(),
            cwd: None,
            uid: 0,
            gid: 0,
            supplementary_groups: Vec::new(),
            capabilities: CapabilityChanges::default(),
            privileged: false,
            read_only_rootfs: false,
            no_new_privileges: false,
            resources: Resources::default(),
            namespaces: Namespaces::default(),
            hostname: None,
            mounts: Vec::new(),
            tty: false,
            image: String::new(),
            stdin: false,
            stdin_once: false,
            cgroup_parent: None,
            log_max_size: 0,
            log_max_files: 0,
        }
    }

    /// The container's absolute cgroup path, the same in every hierarchy.
    pub fn cgroups_path(&self) -> String {
        let parent = self
            .cgroup_parent
            .as_deref()
            .unwrap_or(DEFAULT_CGROUP_PARENT)
            .trim_end_matches('/');
        let parent = if parent.starts_with('/') {
            parent.to_string()
        } else {
            format!("/{parent}")
        };
        if parent == "/" {
            format!("/{}", self.id)
        } else {
            format!("{parent}/{}", self.id)
        }
    }
}

/// Why a [`ContainerSpec`] cannot be translated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container id {0:?} is invalid: use 1-128 of [A-Za-z0-9_.-], starting with a letter or digit")]
    InvalidId(String),
    #[error("container {id}: no command given")]
    NoCommand { id: String },
    #[error("container {id}: unknown capability {name:?}")]
    UnknownCapability { id: String, name: String },
    #[error("container {id}: {what} must be an absolute path, got {path:?}")]
    RelativePath {
        id: String,
        what: &'static str,
        path: PathBuf,
    },
    #[error("container {id}: cgroup parent {parent:?} must not contain '..'")]
    CgroupParent { id: String, parent: String },
    #[error("container {id}: building the OCI spec: {source}")]
    Oci {
        id: String,
        source: libcontainer::oci_spec::OciSpecError,
    },
}

/// Whether `id` is acceptable as a container id (it names directories and cgroups).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

fn parse_capability(id: &str, name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| SpecError::UnknownCapability {
            id: id.to_string(),
            name: name.to_string(),
        })
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The capability set a container's processes get (bounding = permitted = effective).
pub fn capability_set(spec: &ContainerSpec) -> Result<HashSet<Capability>, SpecError> {
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .filter_map(|c| c.parse::<Capability>().ok())
            .collect::<HashSet<_>>()
    };
    if spec.privileged {
        return Ok(all());
    }
    let mut set: HashSet<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| parse_capability(&spec.id, c))
        .collect::<Result<_, _>>()?;
    // Drops first, then adds: `drop: [ALL], add: [NET_BIND_SERVICE]` keeps exactly one
    // (the order Kubernetes runtimes apply them in).
    for name in &spec.capabilities.drop {
        if is_all(name) {
            set.clear();
        } else {
            set.remove(&parse_capability(&spec.id, name)?);
        }
    }
    for name in &spec.capabilities.add {
        if is_all(name) {
            set.extend(all());
        } else {
            set.insert(parse_capability(&spec.id, name)?);
        }
    }
    Ok(set)
}

fn env_list(spec: &ContainerSpec) -> Vec<String> {
    // Later entries win, as in a pod spec; order of first appearance is kept.
    let mut out: Vec<(String, String)> = Vec::with_capacity(spec.env.len() + 1);
    for (k, v) in &spec.env {
        match out.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if spec.tty && !out.iter().any(|(k, _)| k == "TERM") {
        out.push(("TERM".to_string(), "xterm".to_string()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Translate a [`ContainerSpec`] into the OCI runtime spec libcontainer runs.
pub fn to_oci(spec: &ContainerSpec) -> Result<Spec, SpecError> {
    let id = spec.id.as_str();
    if !valid_id(id) {
        return Err(SpecError::InvalidId(spec.id.clone()));
    }
    if spec.args.is_empty() {
        return Err(SpecError::NoCommand { id: id.to_string() });
    }
    if !spec.rootfs.is_absolute() {
        return Err(SpecError::RelativePath {
            id: id.to_string(),
            what: "rootfs",
            path: spec.rootfs.clone(),
        });
    }
    if let Some(parent) = &spec.cgroup_parent {
        if parent.split('/').any(|part| part == "..") {
            return Err(SpecError::CgroupParent {
                id: id.to_string(),
                parent: parent.clone(),
            });
        }
    }
    let oci = |source| SpecError::Oci {
        id: id.to_string(),
        source,
    };

    let caps = capability_set(spec)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(oci)?;
    let user = UserBuilder::default()
        .uid(spec.uid)
        .gid(spec.gid)
        .additional_gids(spec.supplementary_groups.clone())
        .build()
        .map_err(oci)?;
    let cwd = spec
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativePath {
            id: id.to_string(),
            what: "workingDir",
            path: PathBuf::from(cwd),
        });
    }
    let process = ProcessBuilder::default()
        .terminal(spec.tty)
        .args(spec.args.clone())
        .env(env_list(spec))
        .cwd(cwd)
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(spec.no_new_privileges)
        .build()
        .map_err(oci)?;
    // No rlimits: the container inherits the shim's (the agent's), as containerd's do;
    // raising NOFILE above the host's hard limit fails with EPERM in some sandboxes.
    let mut process = process;
    process.set_rlimits(None);

    let root = RootBuilder::default()
        .path(spec.rootfs.clone())
        .readonly(spec.read_only_rootfs)
        .build()
        .map_err(oci)?;

    // Mounts: the usual /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys; a privileged
    // container gets /sys read-write. cgroupfs is not mounted (no cgroup namespace on v1).
    let mut mounts: Vec<_> = get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != &PathBuf::from("/sys/fs/cgroup"))
        .map(|mut m| {
            if spec.privileged && m.destination() == &PathBuf::from("/sys") {
                let opts = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "ro")
                    .collect::<Vec<_>>();
                m.set_options(Some(opts));
            }
            m
        })
        .collect();
    for bind in &spec.mounts {
        if !bind.destination.is_absolute() {
            return Err(SpecError::RelativePath {
                id: id.to_string(),
                what: "mount destination",
                path: bind.destination.clone(),
            });
        }
        if !bind.source.is_absolute() {
            return Err(SpecError::RelativePath {
                id: id.to_string(),
                what: "mount source",
                path: bind.source.clone(),
            });
        }
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        options.push(if bind.read_only { "ro" } else { "rw" }.to_string());
        mounts.push(
            MountBuilder::default()
                .destination(bind.destination.clone())
                .typ("bind")
                .source(bind.source.clone())
                .options(options)
                .build()
                .map_err(oci)?,
        );
    }

    let ns = |typ, mode: &NamespaceMode| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match mode {
            NamespaceMode::New => b.build(),
            NamespaceMode::Join(path) => b.path(path.clone()).build(),
        }
    };
    let namespaces = vec![
        ns(LinuxNamespaceType::Pid, &NamespaceMode::New).map_err(oci)?,
        ns(LinuxNamespaceType::Mount, &NamespaceMode::New).map_err(oci)?,
        ns(LinuxNamespaceType::Network, &spec.namespaces.network).map_err(oci)?,
        ns(LinuxNamespaceType::Ipc, &spec.namespaces.ipc).map_err(oci)?,
        ns(LinuxNamespaceType::Uts, &spec.namespaces.uts).map_err(oci)?,
    ];

    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        // Deny everything, then libcontainer allows its default device set (null, zero,
        // full, random, urandom, tty, ptmx, pts); privileged allows all devices.
        LinuxDeviceCgroupBuilder::default()
            .allow(spec.privileged)
            .access("rwm")
            .build()
            .map_err(oci)?,
    ]);
    let r = &spec.resources;
    if r.memory_limit.is_some() {
        let mut memory = LinuxMemoryBuilder::default();
        if let Some(limit) = r.memory_limit {
            memory = memory.limit(limit);
        }
        resources = resources.memory(memory.build().map_err(oci)?);
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(shares) = r.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some(quota) = r.cpu_quota {
            cpu = cpu.quota(quota);
        }
        if let Some(period) = r.cpu_period {
            cpu = cpu.period(period);
        }
        resources = resources.cpu(cpu.build().map_err(oci)?);
    }

    let (masked, readonly) = if spec.privileged {
        (Vec::new(), Vec::new())
    } else {
        (get_default_maskedpaths(), get_default_readonly_paths())
    };
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(oci)?)
        .cgroups_path(PathBuf::from(spec.cgroups_path()))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()
        .map_err(oci)?;

    let mut out = Spec::default();
    out.set_version("1.0.2".to_string());
    out.set_process(Some(process));
    out.set_root(Some(root));
    out.set_mounts(Some(mounts));
    out.set_linux(Some(linux));
    out.set_annotations(None);
    let hostname = match spec.namespaces.uts {
        NamespaceMode::New => Some(spec.hostname.clone().unwrap_or_else(|| spec.id.clone())),
        NamespaceMode::Join(_) => None,
    };
    out.set_hostname(hostname);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new(
            "c1",
            "/rootfs",
            vec!["sh".into(), "-c".into(), "true".into()],
        )
    }

    fn caps(s: &Spec) -> HashSet<Capability> {
        s.process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default()
    }

    fn ns_of(s: &Spec, typ: LinuxNamespaceType) -> Option<Option<PathBuf>> {
        s.linux()
            .as_ref()?
            .namespaces()
            .as_ref()?
            .iter()
            .find(|n| n.typ() == typ)
            .map(|n| n.path().clone())
    }

    #[test]
    fn command_env_cwd_user() {
        let mut s = spec();
        s.env = vec![
            ("A".into(), "1".into()),
            ("B".into(), "2".into()),
            ("A".into(), "3".into()),
        ];
        s.cwd = Some("/work".into());
        s.uid = 1000;
        s.gid = 2000;
        s.supplementary_groups = vec![3000, 4000];
        let o = to_oci(&s).expect("translates");
        let p = o.process().as_ref().expect("process");
        assert_eq!(p.args().as_deref(), Some(&s.args[..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&[format!("PATH={DEFAULT_PATH}"), "A=3".into(), "B=2".into()][..])
        );
        assert_eq!(p.cwd(), &PathBuf::from("/work"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 2000);
        assert_eq!(
            p.user().additional_gids().as_deref(),
            Some(&[3000, 4000][..])
        );
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.no_new_privileges(), Some(false));
    }

    #[test]
    fn image_path_is_kept() {
        let mut s = spec();
        s.env = vec![("PATH".into(), "/opt/bin".into())];
        let o = to_oci(&s).expect("translates");
        let env = o.process().as_ref().and_then(|p| p.env().clone());
        assert_eq!(env, Some(vec!["PATH=/opt/bin".to_string()]));
    }

    #[test]
    fn default_capabilities_and_changes() {
        let o = to_oci(&spec()).expect("translates");
        assert_eq!(caps(&o).len(), DEFAULT_CAPABILITIES.len());
        assert!(caps(&o).contains(&Capability::NetRaw));
        assert!(!caps(&o).contains(&Capability::SysAdmin));

        let mut s = spec();
        s.capabilities.add = vec!["NET_ADMIN".into(), "CAP_SYS_TIME".into()];
        s.capabilities.drop = vec!["net_raw".into()];
        let c = caps(&to_oci(&s).expect("translates"));
        assert!(c.contains(&Capability::NetAdmin));
        assert!(c.contains(&Capability::SysTime));
        assert!(!c.contains(&Capability::NetRaw));

        let mut s = spec();
        s.capabilities.drop = vec!["ALL".into()];
        s.capabilities.add = vec!["NET_BIND_SERVICE".into()];
        let c = caps(&to_oci(&s).expect("translates"));
        assert_eq!(c, HashSet::from([Capability::NetBindService]));

        let mut s = spec();
        s.capabilities.add = vec!["NOT_A_CAP".into()];
        assert!(matches!(
            to_oci(&s),
            Err(SpecError::UnknownCapability { name, .. }) if name == "NOT_A_CAP"
        ));
    }

    #[test]
    fn privileged_gets_everything() {
        let mut s = spec();
        s.privileged = true;
        let o = to_oci(&s).expect("translates");
        assert!(caps(&o).contains(&Capability::SysAdmin));
        assert!(caps(&o).len() >= 40);
        let linux = o.linux().as_ref().expect("linux");
        assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
        let devices = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .expect("device rules");
        assert!(devices[0].allow());
        let sys = o
            .mounts()
            .as_ref()
            .and_then(|m| m.iter().find(|m| m.destination() == &PathBuf::from("/sys")))
            .expect("/sys mounted");
        assert!(!sys
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"ro".to_string()));

        let o = to_oci(&spec()).expect("translates");
        let linux = o.linux().as_ref().expect("linux");
        assert!(linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty()));
    }

    #[test]
    fn security_flags_and_rootfs() {
        let mut s = spec();
        s.read_only_rootfs = true;
        s.no_new_privileges = true;
        let o = to_oci(&s).expect("translates");
        let root = o.root().as_ref().expect("root");
        assert_eq!(root.path(), &PathBuf::from("/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        assert_eq!(
            o.process().as_ref().and_then(|p| p.no_new_privileges()),
            Some(true)
        );
    }

    #[test]
    fn resources_and_cgroup_path() {
        let mut s = spec();
        s.resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(16 << 20),
        };
        s.cgroup_parent = Some("/skiff/pod-123/".into());
        let o = to_oci(&s).expect("translates");
        let linux = o.linux().as_ref().expect("linux");
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(std::path::Path::new("/skiff/pod-123/c1"))
        );
        let r = linux.resources().as_ref().expect("resources");
        let cpu = r.cpu().as_ref().expect("cpu");
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(16 << 20));

        let o = to_oci(&spec()).expect("translates");
        let linux = o.linux().as_ref().expect("linux");
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(std::path::Path::new("/skiff/c1"))
        );
        let r = linux.resources().as_ref().expect("resources");
        assert!(r.cpu().is_none() && r.memory().is_none());

        let mut s = spec();
        s.cgroup_parent = Some("skiff/../..".into());
        assert!(matches!(to_oci(&s), Err(SpecError::CgroupParent { .. })));
    }

    #[test]
    fn namespaces_new_or_joined() {
        let o = to_oci(&spec()).expect("translates");
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
        ] {
            assert_eq!(ns_of(&o, t), Some(None), "{t:?} new");
        }
        assert_eq!(ns_of(&o, LinuxNamespaceType::User), None);
        assert_eq!(o.hostname().as_deref(), Some("c1"));

        let mut s = spec();
        s.hostname = Some("web-0".into());
        s.namespaces.network = NamespaceMode::Join("/run/skiff/netns/pod".into());
        s.namespaces.ipc = NamespaceMode::Join("/proc/42/ns/ipc".into());
        let o = to_oci(&s).expect("translates");
        assert_eq!(
            ns_of(&o, LinuxNamespaceType::Network),
            Some(Some("/run/skiff/netns/pod".into()))
        );
        assert_eq!(
            ns_of(&o, LinuxNamespaceType::Ipc),
            Some(Some("/proc/42/ns/ipc".into()))
        );
        assert_eq!(ns_of(&o, LinuxNamespaceType::Pid), Some(None));
        assert_eq!(o.hostname().as_deref(), Some("web-0"));

        // A joined UTS namespace keeps the sandbox's hostname: setting one is an error
        // for the runtime, so none is set.
        s.namespaces.uts = NamespaceMode::Join("/proc/42/ns/uts".into());
        let o = to_oci(&s).expect("translates");
        assert_eq!(o.hostname(), &None);
    }

    #[test]
    fn bind_mounts() {
        let mut s = spec();
        s.mounts = vec![
            BindMount {
                source: "/var/lib/skiff/pods/x/etc-hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
            },
            BindMount {
                source: "/var/lib/skiff/pods/x/volumes/cfg".into(),
                destination: "/etc/cfg".into(),
                read_only: true,
            },
        ];
        let o = to_oci(&s).expect("translates");
        let mounts = o.mounts().clone().unwrap_or_default();
        let cfg = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/etc/cfg"))
            .expect("cfg mount");
        assert_eq!(cfg.typ().as_deref(), Some("bind"));
        assert_eq!(
            cfg.source().as_deref(),
            Some(std::path::Path::new("/var/lib/skiff/pods/x/volumes/cfg"))
        );
        assert!(cfg
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"ro".into()));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == &PathBuf::from("/proc")));
        assert!(!mounts
            .iter()
            .any(|m| m.destination() == &PathBuf::from("/sys/fs/cgroup")));

        s.mounts[0].destination = "etc/hosts".into();
        assert!(matches!(to_oci(&s), Err(SpecError::RelativePath { .. })));
    }

    #[test]
    fn tty_sets_terminal_and_term() {
        let mut s = spec();
        s.tty = true;
        let o = to_oci(&s).expect("translates");
        let p = o.process().as_ref().expect("process");
        assert_eq!(p.terminal(), Some(true));
        assert!(p
            .env()
            .clone()
            .unwrap_or_default()
            .contains(&"TERM=xterm".to_string()));
    }

    #[test]
    fn rejects_bad_input() {
        let mut s = spec();
        s.id = "../x".into();
        assert!(matches!(to_oci(&s), Err(SpecError::InvalidId(_))));
        let mut s = spec();
        s.args.clear();
        assert!(matches!(to_oci(&s), Err(SpecError::NoCommand { .. })));
        let mut s = spec();
        s.rootfs = "rootfs".into();
        assert!(matches!(to_oci(&s), Err(SpecError::RelativePath { .. })));
        let mut s = spec();
        s.cwd = Some("work".into());
        assert!(matches!(to_oci(&s), Err(SpecError::RelativePath { .. })));
        assert!(valid_id("abc-1.2_3"));
        assert!(!valid_id(""));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
