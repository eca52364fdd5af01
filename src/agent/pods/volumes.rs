//! A pod's volumes on the node, under `<pod dir>/volumes/<kind>/<name>`, as kubelet's
//! volume plugins make them: `emptyDir` (a directory, or tmpfs for `medium: Memory`),
//! `hostPath` (with its `type` checks), and the file-projecting kinds (`configMap`,
//! `secret`, `downwardAPI`, `projected` with service-account tokens) written with
//! kubelet's atomic writer: files live in a timestamped directory that the `..data`
//! symlink points at, and each top-level name is a symlink through `..data`, so a
//! container never sees half an update; `secret` and `projected` volumes are each a tmpfs
//! of their own, as kubelet mounts them, so their files never touch the node's disk.
//! `persistentVolumeClaim` volumes resolve to their
//! bound volume's directory in [`crate::agent::storage`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use super::containerspec::{ConfigError, Inputs};
use crate::runtime::mounts::{is_mount_point, mount_tmpfs as mount_tmpfs_on};

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path inside the volume.
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Why a volume cannot be set up (the pod waits; kubelet's `FailedMount` event).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType { path: String, expected: String },
    #[error("volume {name:?}: {kind} volumes are not supported yet")]
    Unsupported { name: String, kind: &'static str },
    #[error("volume {name:?}: the path {path:?} must be relative and stay inside the volume")]
    Path { name: String, path: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let context = context.into();
    move |source| VolumeError::Io { context, source }
}

/// kubelet's default file mode of projected files.
pub const DEFAULT_MODE: u32 = 0o644;

fn check_relative(name: &str, path: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !p.is_absolute()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.starts_with("..");
    if ok {
        Ok(())
    } else {
        Err(VolumeError::Path {
            name: name.into(),
            path: path.into(),
        })
    }
}

/// The files of a key/value source: every key, or only `items` (key → path, mode).
fn key_files(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    missing: impl Fn(&str) -> ConfigError,
    optional: bool,
) -> Result<Vec<File>, VolumeError> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                data: v.clone(),
                mode: default_mode,
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                check_relative(volume, &item.path)?;
                match data.get(&item.key) {
                    Some(v) => out.push(File {
                        path: item.path.clone(),
                        data: v.clone(),
                        mode: item.mode.map_or(default_mode, |m| m as u32),
                    }),
                    None if optional => {}
                    None => return Err(missing(&item.key).into()),
                }
            }
            Ok(out)
        }
    }
}

fn config_map_data(inputs: &Inputs, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    inputs.config_maps.get(name).map(|d| {
        d.iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    })
}

/// The files a projecting volume holds; `None` for other kinds.
pub fn projected_files(
    pod: &Pod,
    volume: &Volume,
    inputs: &Inputs,
    service_account_token: Option<&str>,
) -> Result<Option<Vec<File>>, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = volume.name.as_str();
    let key_missing = |kind: &'static str, obj: &str| {
        let (ns, obj) = (ns.clone(), obj.to_string());
        move |key: &str| ConfigError::KeyNotFound {
            key: key.to_string(),
            kind,
            namespace: ns.clone(),
            name: obj.clone(),
        }
    };
    let config_map =
        |cm_name: &str, items, mode, optional: bool| -> Result<Vec<File>, VolumeError> {
            match config_map_data(inputs, cm_name) {
                Some(data) => key_files(
                    name,
                    &data,
                    items,
                    mode,
                    key_missing("ConfigMap", cm_name),
                    optional,
                ),
                None if optional => Ok(Vec::new()),
                None => Err(ConfigError::ConfigMapNotFound(cm_name.to_string()).into()),
            }
        };
    let secret = |s_name: &str, items, mode, optional: bool| -> Result<Vec<File>, VolumeError> {
        match inputs.secrets.get(s_name) {
            Some(data) => key_files(
                name,
                data,
                items,
                mode,
                key_missing("Secret", s_name),
                optional,
            ),
            None if optional => Ok(Vec::new()),
            None => Err(ConfigError::SecretNotFound(s_name.to_string()).into()),
        }
    };
    let downward = |items: &Vec<k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
                    mode: u32|
     -> Result<Vec<File>, VolumeError> {
        let mut out = Vec::new();
        for item in items {
            check_relative(name, &item.path)?;
            let value = if let Some(f) = &item.field_ref {
                downward_field(pod, &f.field_path)?
            } else if let Some(r) = &item.resource_field_ref {
                let container = pod
                    .spec
                    .as_ref()
                    .and_then(|s| {
                        s.containers
                            .iter()
                            .find(|c| Some(&c.name) == r.container_name.as_ref())
                    })
                    .ok_or_else(|| ConfigError::ResourceFieldRef(r.resource.clone()))?;
                super::containerspec::resource_field(
                    container,
                    inputs,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else {
                String::new()
            };
            out.push(File {
                path: item.path.clone(),
                data: value.into_bytes(),
                mode: item.mode.map_or(mode, |m| m as u32),
            });
        }
        Ok(out)
    };
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        return config_map(
            &cm.name,
            cm.items.as_ref(),
            mode,
            cm.optional.unwrap_or(false),
        )
        .map(Some);
    }
    if let Some(s) = &volume.secret {
        let mode = s.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let s_name = s.secret_name.clone().unwrap_or_default();
        return secret(&s_name, s.items.as_ref(), mode, s.optional.unwrap_or(false)).map(Some);
    }
    if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        return downward(d.items.as_ref().unwrap_or(&Vec::new()), mode).map(Some);
    }
    if let Some(p) = &volume.projected {
        let mode = p.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let mut out = Vec::new();
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                out.extend(config_map(
                    &cm.name,
                    cm.items.as_ref(),
                    mode,
                    cm.optional.unwrap_or(false),
                )?);
            }
            if let Some(s) = &source.secret {
                out.extend(secret(
                    &s.name,
                    s.items.as_ref(),
                    mode,
                    s.optional.unwrap_or(false),
                )?);
            }
            if let Some(d) = &source.downward_api {
                out.extend(downward(d.items.as_ref().unwrap_or(&Vec::new()), mode)?);
            }
            if let Some(t) = &source.service_account_token {
                check_relative(name, &t.path)?;
                let token = service_account_token.ok_or_else(|| VolumeError::Unsupported {
                    name: name.to_string(),
                    kind: "serviceAccountToken (no token was issued)",
                })?;
                out.push(File {
                    path: t.path.clone(),
                    data: token.as_bytes().to_vec(),
                    mode,
                });
            }
            if source.cluster_trust_bundle.is_some() {
                return Err(VolumeError::Unsupported {
                    name: name.to_string(),
                    kind: "clusterTrustBundle",
                });
            }
        }
        return Ok(Some(out));
    }
    Ok(None)
}

/// A downward API field as a file holds it (labels and annotations as `k="v"` lines).
fn downward_field(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let lines = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match path {
        "metadata.labels" => Ok(lines(&pod.metadata.labels)),
        "metadata.annotations" => Ok(lines(&pod.metadata.annotations)),
        _ => super::containerspec::pod_field(pod, &Inputs::default(), path),
    }
}

/// Write `files` into `dir` atomically, kubelet's way: a fresh `..<timestamp>` directory,
/// the `..data` symlink swapped to it with a rename, top-level symlinks through `..data`,
/// then the previous data directory and stale links removed.
pub fn write_atomic(dir: &Path, files: &[File]) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let data_dir = dir.join(&stamp);
    std::fs::create_dir(&data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    for f in files {
        let target = data_dir.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&target, &f.data).map_err(io(format!("writing {}", target.display())))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("setting the mode of {}", target.display())))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)
        .map_err(io(format!("linking {}", tmp_link.display())))?;
    std::fs::rename(&tmp_link, dir.join("..data"))
        .map_err(io(format!("swapping {}/..data", dir.display())))?;
    // Top-level entries: one symlink per first path component.
    let mut tops: Vec<String> = files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_string))
        .collect();
    tops.sort();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)
                .map_err(io(format!("linking {}", link.display())))?;
        }
    }
    // Links of names that are gone, and the previous data directory.
    for entry in std::fs::read_dir(dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|o| *o != Path::new(&stamp)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Mount a tmpfs on `dir` (an `emptyDir` with `medium: Memory`), sized by `size_limit`
/// (a quantity); a tmpfs already there is kept.
pub fn mount_tmpfs(dir: &Path, size_limit: Option<&str>) -> Result<(), VolumeError> {
    let mut options = String::from("mode=0777");
    if let Some(limit) = size_limit {
        let bytes = crate::apimachinery::quantity::parse_quantity(limit)
            .map_err(|e| VolumeError::Io {
                context: format!("emptyDir sizeLimit {limit:?}"),
                source: std::io::Error::other(e.to_string()),
            })?
            .value();
        options.push_str(&format!(",size={bytes}"));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    mount_tmpfs_on(dir, &options).map_err(io(format!("mounting a tmpfs on {}", dir.display())))
}

/// A tmpfs on `dir` for a new secret or projected volume, as kubelet mounts them. A
/// directory already there stays as it is: a running container may have it mounted (an
/// agent upgraded from one that kept these volumes on disk) and must go on seeing what is
/// written into it.
pub fn memory_backed(dir: &Path) -> Result<(), VolumeError> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    mount_tmpfs_on(dir, "mode=1777").map_err(io(format!("mounting a tmpfs on {}", dir.display())))
}

/// Unmount every mount under `dir` (tmpfs emptyDirs), deepest first, so the pod's
/// directory can be removed.
pub fn unmount_all(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A hostPath volume: the path after kubelet's `type` check (creating it for the
/// `…OrCreate` types).
pub fn host_path(path: &str, kind: Option<&str>) -> Result<PathBuf, VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let p = PathBuf::from(path);
    let fail = |expected: &str| VolumeError::HostPathType {
        path: path.into(),
        expected: expected.into(),
    };
    let meta = std::fs::metadata(&p);
    match kind.unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(io(format!("creating {path}")))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("chmod {path}")))?;
            } else if !p.is_dir() {
                return Err(fail("directory"));
            }
        }
        "Directory" => {
            if !meta.is_ok_and(|m| m.is_dir()) {
                return Err(fail("directory"));
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io(format!("creating {}", parent.display())))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(io(format!("creating {path}")))?;
            } else if !p.is_file() {
                return Err(fail("file"));
            }
        }
        "File" => {
            if !meta.is_ok_and(|m| m.is_file()) {
                return Err(fail("file"));
            }
        }
        "Socket" => {
            if !meta.is_ok_and(|m| m.file_type().is_socket()) {
                return Err(fail("socket"));
            }
        }
        "CharDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_char_device()) {
                return Err(fail("character device"));
            }
        }
        "BlockDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_block_device()) {
                return Err(fail("block device"));
            }
        }
        other => return Err(fail(other)),
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                      "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .expect("pod")
    }

    fn volume(v: serde_json::Value) -> Volume {
        serde_json::from_value(v).expect("volume")
    }

    fn inputs() -> Inputs {
        Inputs {
            config_maps: [
                (
                    "cfg".to_string(),
                    [
                        ("a.conf".to_string(), "A".to_string()),
                        ("b.conf".to_string(), "B".to_string()),
                    ]
                    .into(),
                ),
                (
                    "kube-root-ca.crt".to_string(),
                    [("ca.crt".to_string(), "PEM".to_string())].into(),
                ),
            ]
            .into(),
            secrets: [(
                "tls".to_string(),
                [("key".to_string(), b"K".to_vec())].into(),
            )]
            .into(),
            ..Default::default()
        }
    }

    fn paths(files: &[File]) -> Vec<(&str, &[u8], u32)> {
        files
            .iter()
            .map(|f| (f.path.as_str(), f.data.as_slice(), f.mode))
            .collect()
    }

    #[test]
    fn config_maps_and_secrets_project_keys_or_items() {
        let all = projected_files(
            &pod(),
            &volume(serde_json::json!({"name": "c", "configMap": {"name": "cfg"}})),
            &inputs(),
            None,
        )
        .expect("ok")
        .expect("files");
        assert_eq!(
            paths(&all),
            [("a.conf", &b"A"[..], 0o644), ("b.conf", &b"B"[..], 0o644)]
        );
        let items = projected_files(&pod(), &volume(serde_json::json!({"name": "s", "secret": {
            "secretName": "tls", "defaultMode": 0o400, "items": [{"key": "key", "path": "tls/key.pem"}]}})), &inputs(), None)
            .expect("ok")
            .expect("files");
        assert_eq!(paths(&items), [("tls/key.pem", &b"K"[..], 0o400)]);
        let missing = projected_files(
            &pod(),
            &volume(serde_json::json!({"name": "c", "configMap": {"name": "nope"}})),
            &inputs(),
            None,
        )
        .expect_err("missing");
        assert_eq!(missing.to_string(), "configmap \"nope\" not found");
        let escape = projected_files(
            &pod(),
            &volume(serde_json::json!({"name": "c", "configMap": {
            "name": "cfg", "items": [{"key": "a.conf", "path": "../x"}]}})),
            &inputs(),
            None,
        );
        assert!(matches!(escape, Err(VolumeError::Path { .. })));
    }

    #[test]
    fn projected_service_account_volumes_hold_token_ca_and_namespace() {
        let v = volume(
            serde_json::json!({"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}),
        );
        let files = projected_files(&pod(), &v, &inputs(), Some("jwt"))
            .expect("ok")
            .expect("files");
        assert_eq!(
            paths(&files),
            [
                ("token", &b"jwt"[..], 0o644),
                ("ca.crt", &b"PEM"[..], 0o644),
                ("namespace", &b"shop"[..], 0o644)
            ]
        );
        assert!(projected_files(&pod(), &v, &inputs(), None).is_err());
    }

    #[test]
    fn downward_api_files() {
        let v = volume(
            serde_json::json!({"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}}),
        );
        let files = projected_files(&pod(), &v, &inputs(), None)
            .expect("ok")
            .expect("files");
        assert_eq!(files[0].data, b"app=\"web\"\ntier=\"front\"");
        assert_eq!(files[1].data, b"64");
        let empty_dir = volume(serde_json::json!({"name": "e", "emptyDir": {}}));
        assert!(projected_files(&pod(), &empty_dir, &inputs(), None)
            .expect("ok")
            .is_none());
    }

    #[test]
    fn atomic_writes_swap_data_and_drop_stale_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = |p: &str, d: &str| File {
            path: p.into(),
            data: d.as_bytes().to_vec(),
            mode: 0o644,
        };
        write_atomic(dir.path(), &[f("a", "1"), f("sub/b", "2")]).expect("first write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).expect("a"),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).expect("b"),
            "2"
        );
        let first = std::fs::read_link(dir.path().join("..data")).expect("..data");
        write_atomic(dir.path(), &[f("a", "3")]).expect("second write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).expect("a"),
            "3"
        );
        assert!(
            !dir.path().join("sub").exists(),
            "a name that is gone is removed"
        );
        assert!(
            !dir.path().join(first).exists(),
            "the old data dir is removed"
        );
        assert!(std::fs::symlink_metadata(dir.path().join("a"))
            .expect("a")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("made");
        let s = d.to_string_lossy().into_owned();
        assert!(host_path(&s, Some("Directory")).is_err());
        host_path(&s, Some("DirectoryOrCreate")).expect("created");
        assert!(d.is_dir());
        let f = dir.path().join("f.txt").to_string_lossy().into_owned();
        host_path(&f, Some("FileOrCreate")).expect("file created");
        assert!(host_path(&f, Some("Directory")).is_err());
        host_path(&f, Some("File")).expect("a file");
        assert!(host_path("/nonexistent/x", Some("Socket")).is_err());
        host_path("/nonexistent/x", None).expect("no check without a type");
    }
}
