//! The few cgroup facts the runtime reads or cleans up itself (libcontainer creates,
//! configures and removes a container's own cgroup): whether the OOM killer struck,
//! where a cgroup path lives in each mounted hierarchy, and what a cgroup uses (CPU time
//! and memory working set, for the node's resource metrics).
//!
//! cgroup v1 (this host is v1 "hybrid"): `memory.oom_control` has an `oom_kill` counter
//! (Linux ≥ 4.13) and `under_oom`. cgroup v2: `memory.events` has `oom_kill`.
//!
//! Usage as cadvisor reads it: CPU from v1 `cpuacct.usage` (ns) or v2 `cpu.stat`
//! `usage_usec`; the memory working set is usage minus inactive file pages (v1
//! `memory.usage_in_bytes` − `total_inactive_file` of `memory.stat`, v2 `memory.current`
//! − `inactive_file`). Which hierarchy holds which controller comes from the mount table,
//! not from assumed paths.

use std::path::{Path, PathBuf};

/// The cgroup filesystem root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Every directory that `cgroups_path` (absolute, like `/skiff/pod/c1`) names in the
/// mounted hierarchies under `root`, whether or not it exists: one per v1 controller
/// mount, plus the v2 one (the unified mount on a hybrid host, or `root` itself).
pub fn hierarchy_dirs(root: &Path, cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(rel)];
    }
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            // Skip the comma-joined symlinks (cpu,cpuacct → cpu + cpuacct mounts).
            if ft.is_dir() {
                out.push(entry.path().join(rel));
            }
        }
    }
    out.sort();
    out
}

/// The directories of `cgroups_path` that exist now.
pub fn existing_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    hierarchy_dirs(Path::new(CGROUP_ROOT), cgroups_path)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect()
}

/// Remove the (empty) cgroup `cgroups_path` in every hierarchy, deepest first for
/// nothing but itself: the caller removes children first. Missing dirs are fine.
pub fn remove(cgroups_path: &str) -> std::io::Result<()> {
    for dir in existing_dirs(cgroups_path) {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("removing cgroup {}: {e}", dir.display()),
                ))
            }
        }
    }
    Ok(())
}

/// Parse `key value` lines (memory.oom_control, memory.events) for `key`.
pub fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// Where the hierarchies that usage readings need are mounted (from
/// `/proc/self/mountinfo`): the v1 `cpuacct` and `memory` controllers and the v2 mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub unified: Option<PathBuf>,
}

/// What one cgroup has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time since the cgroup was made, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory usage minus inactive file pages, in bytes.
    pub working_set_bytes: u64,
}

/// Undo the octal escapes of a mountinfo path (`\040` is a space).
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

impl Hierarchies {
    /// The cgroup mounts of a mountinfo table (the first mount of each hierarchy).
    pub fn from_mountinfo(text: &str) -> Hierarchies {
        let mut h = Hierarchies::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) else {
                continue;
            };
            let mount_point = unescape_mount_path(mount_point);
            match *fstype {
                "cgroup2" if h.unified.is_none() => h.unified = Some(mount_point),
                "cgroup" => {
                    let options = fields.get(dash + 3).copied().unwrap_or("");
                    for option in options.split(',') {
                        let slot = match option {
                            "cpuacct" => &mut h.cpuacct,
                            "memory" => &mut h.memory,
                            _ => continue,
                        };
                        if slot.is_none() {
                            *slot = Some(mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        h
    }

    /// The usual layout under `root` (`/sys/fs/cgroup`), for when the mount table cannot
    /// be read: v1 controllers in `root/<controller>` (or `cpu,cpuacct`), the v2 hierarchy
    /// at `root` itself (pure v2) or `root/unified` (hybrid).
    pub fn conventional(root: &Path) -> Hierarchies {
        let dir = |p: PathBuf| p.is_dir().then_some(p);
        let unified = if root.join("cgroup.controllers").exists() {
            Some(root.to_path_buf())
        } else {
            dir(root.join("unified"))
        };
        Hierarchies {
            cpuacct: dir(root.join("cpuacct")).or_else(|| dir(root.join("cpu,cpuacct"))),
            memory: dir(root.join("memory")),
            unified,
        }
    }

    /// The mount table's hierarchies, or the [`Hierarchies::conventional`] ones under
    /// [`CGROUP_ROOT`] when it cannot be read.
    pub fn read_or_conventional() -> Hierarchies {
        Hierarchies::read().unwrap_or_else(|_| Hierarchies::conventional(Path::new(CGROUP_ROOT)))
    }

    /// Whether the OOM killer killed a process in the cgroup `cgroups_path`: v1
    /// `memory.oom_control` (`oom_kill`, or `under_oom` on kernels without the counter),
    /// else v2 `memory.events` `oom_kill`.
    pub fn oom_killed(&self, cgroups_path: &str) -> bool {
        let rel = cgroups_path.trim_start_matches('/');
        if let Some(v1) = &self.memory {
            if let Ok(text) = std::fs::read_to_string(v1.join(rel).join("memory.oom_control")) {
                return flat_key(&text, "oom_kill").unwrap_or(0) > 0
                    || flat_key(&text, "under_oom").unwrap_or(0) > 0;
            }
        }
        if let Some(v2) = &self.unified {
            if let Ok(text) = std::fs::read_to_string(v2.join(rel).join("memory.events")) {
                return flat_key(&text, "oom_kill").unwrap_or(0) > 0;
            }
        }
        false
    }

    /// This process's view of the cgroup mounts.
    pub fn read() -> std::io::Result<Hierarchies> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading /proc/self/mountinfo: {e}"))
        })?;
        Ok(Hierarchies::from_mountinfo(&text))
    }

    /// What the cgroup `cgroups_path` has used; `None` when it does not exist (any
    /// more) in the hierarchies that hold the controllers.
    pub fn usage(&self, cgroups_path: &str) -> Option<CgroupUsage> {
        let rel = cgroups_path.trim_start_matches('/');
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(rel).join(file));
        let cpu_ns = match (&self.cpuacct, &self.unified) {
            (Some(v1), _) => read(v1, "cpuacct.usage").ok()?.trim().parse().ok()?,
            (None, Some(v2)) => {
                flat_key(&read(v2, "cpu.stat").ok()?, "usage_usec")?.saturating_mul(1000)
            }
            (None, None) => return None,
        };
        let working_set_bytes = match (&self.memory, &self.unified) {
            (Some(v1), _) => {
                let usage: u64 = read(v1, "memory.usage_in_bytes")
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let stat = read(v1, "memory.stat").ok()?;
                usage.saturating_sub(flat_key(&stat, "total_inactive_file").unwrap_or(0))
            }
            (None, Some(v2)) => {
                let usage: u64 = read(v2, "memory.current").ok()?.trim().parse().ok()?;
                let stat = read(v2, "memory.stat").ok()?;
                usage.saturating_sub(flat_key(&stat, "inactive_file").unwrap_or(0))
            }
            (None, None) => return None,
        };
        Some(CgroupUsage {
            cpu_ns,
            working_set_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oom_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(flat_key(v1, "oom_kill"), Some(2));
        assert_eq!(flat_key(v1, "under_oom"), Some(0));
        assert_eq!(flat_key(v1, "oom"), None);

        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("memory/skiff/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.oom_control"), v1).expect("write");
        assert!(Hierarchies::conventional(root.path()).oom_killed("/skiff/c1"));
        std::fs::write(dir.join("memory.oom_control"), "under_oom 0\noom_kill 0\n").expect("write");
        assert!(!Hierarchies::conventional(root.path()).oom_killed("/skiff/c1"));

        let v2 = tempfile::tempdir().expect("tempdir");
        std::fs::write(v2.path().join("cgroup.controllers"), "memory").expect("write");
        let dir = v2.path().join("skiff/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 1\n").expect("write");
        assert!(Hierarchies::conventional(v2.path()).oom_killed("/skiff/c1"));
        assert_eq!(hierarchy_dirs(v2.path(), "/skiff/c1"), vec![dir]);
    }

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
37 31 0:31 / /mnt/my\\040memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn finds_hierarchies_in_the_mount_table() {
        let h = Hierarchies::from_mountinfo(MOUNTINFO);
        assert_eq!(h.cpuacct, Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(h.memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(h.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let pure_v2 = "40 1 0:33 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchies::from_mountinfo(pure_v2);
        assert_eq!(h.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!((h.cpuacct, h.memory), (None, None));
        assert_eq!(
            unescape_mount_path("/mnt/my\\040memory"),
            PathBuf::from("/mnt/my memory")
        );
    }

    #[test]
    fn reads_usage_like_cadvisor() {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str, text: &str| {
            let path = root.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        // v1: cpuacct and memory in their own hierarchies.
        write("cpuacct/skiff/c1/cpuacct.usage", "1500000000\n");
        write("memory/skiff/c1/memory.usage_in_bytes", "10485760\n");
        write(
            "memory/skiff/c1/memory.stat",
            "cache 4096\ninactive_file 99\ntotal_inactive_file 2097152\n",
        );
        let v1 = Hierarchies {
            cpuacct: Some(root.path().join("cpuacct")),
            memory: Some(root.path().join("memory")),
            unified: Some(root.path().join("unified")),
        };
        assert_eq!(
            v1.usage("/skiff/c1"),
            Some(CgroupUsage {
                cpu_ns: 1_500_000_000,
                working_set_bytes: 8 << 20,
            })
        );
        assert_eq!(v1.usage("/skiff/gone"), None);

        // v2: one hierarchy.
        write("v2/skiff/c1/cpu.stat", "usage_usec 2500\nuser_usec 2000\n");
        write("v2/skiff/c1/memory.current", "4096\n");
        write("v2/skiff/c1/memory.stat", "anon 0\ninactive_file 8192\n");
        let v2 = Hierarchies {
            unified: Some(root.path().join("v2")),
            ..Hierarchies::default()
        };
        assert_eq!(
            v2.usage("/skiff/c1"),
            Some(CgroupUsage {
                cpu_ns: 2_500_000,
                working_set_bytes: 0,
            })
        );
    }
}
