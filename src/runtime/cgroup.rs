//! The few cgroup facts the runtime reads or cleans up itself (libcontainer creates,
//! configures and removes a container's own cgroup): whether the OOM killer struck, and
//! where a cgroup path lives in each mounted hierarchy.
//!
//! cgroup v1 (this host is v1 "hybrid"): `memory.oom_control` has an `oom_kill` counter
//! (Linux ≥ 4.13) and `under_oom`. cgroup v2: `memory.events` has `oom_kill`.

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

/// Whether the OOM killer killed a process in the container's cgroup (read before the
/// cgroup is removed).
pub fn oom_killed(root: &Path, cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = root.join("memory").join(rel).join("memory.oom_control");
    if let Ok(text) = std::fs::read_to_string(&v1) {
        return flat_key(&text, "oom_kill").unwrap_or(0) > 0
            || flat_key(&text, "under_oom").unwrap_or(0) > 0;
    }
    for v2 in [
        root.join(rel).join("memory.events"),
        root.join("unified").join(rel).join("memory.events"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&v2) {
            return flat_key(&text, "oom_kill").unwrap_or(0) > 0;
        }
    }
    false
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
        assert!(oom_killed(root.path(), "/skiff/c1"));
        std::fs::write(dir.join("memory.oom_control"), "under_oom 0\noom_kill 0\n").expect("write");
        assert!(!oom_killed(root.path(), "/skiff/c1"));

        let v2 = tempfile::tempdir().expect("tempdir");
        std::fs::write(v2.path().join("cgroup.controllers"), "memory").expect("write");
        let dir = v2.path().join("skiff/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 1\n").expect("write");
        assert!(oom_killed(v2.path(), "/skiff/c1"));
        assert_eq!(hierarchy_dirs(v2.path(), "/skiff/c1"), vec![dir]);
    }
}
