//! Importing image tarballs (plain, gzip or zstd compressed) in one streaming pass:
//!
//! - an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), as written
//!   by `ctr export`, `skopeo copy oci-archive:` or buildkit; names come from the
//!   `io.containerd.image.name` annotation, else from `org.opencontainers.image.ref.name`
//!   when it is a whole reference (a bare tag such as `latest` names nothing);
//! - a `docker save` tar (`manifest.json` with `Config`, `RepoTags`, `Layers`), in the
//!   legacy form (`<id>/layer.tar`, `<id>.json`, symlinked duplicate layers) or Docker
//!   25's (paths into an OCI `blobs/` dir); `manifest.json` wins when both are present.
//!
//! Every file but the small metadata documents goes straight into the blob store (those
//! under `blobs/sha256/` are verified against their names), so no layer is held in
//! memory. An index with several platforms imports the one of this host.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::reference::Reference;
use super::unpack::{clean_path, decompress};
use super::{Candidate, ImageError, Inner, Lease};

const METADATA: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const MAX_METADATA: u64 = 16 << 20;

/// The OCI name for this host's CPU architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

struct Contents {
    /// Archive path → digest of the blob holding that file.
    files: HashMap<String, String>,
    /// Archive path → the path a symlink points to.
    links: HashMap<String, String>,
    metadata: HashMap<String, Vec<u8>>,
}

impl Contents {
    fn digest_of(&self, path: &str) -> Option<String> {
        let mut p = normalize(path)?;
        for _ in 0..8 {
            if let Some(d) = self.files.get(&p) {
                return Some(d.clone());
            }
            let target = self.links.get(&p)?;
            p = target.clone();
        }
        None
    }
}

fn normalize(p: &str) -> Option<String> {
    clean_path(Path::new(p))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

pub(crate) fn read(
    inner: &Inner,
    file: &Path,
    lease: &Lease,
) -> Result<Vec<Candidate>, ImageError> {
    let name = file.display().to_string();
    let bad = |reason: String| ImageError::Import {
        file: name.clone(),
        reason,
    };
    let f = File::open(file).map_err(|e| bad(e.to_string()))?;
    let contents = scan(inner, decompress(f)?, lease).map_err(|e| match e {
        ImageError::Import { .. } => e,
        other => bad(other.to_string()),
    })?;
    let candidates = if contents.metadata.contains_key("manifest.json") {
        docker_save(&contents).map_err(bad)?
    } else if contents.metadata.contains_key("index.json") {
        oci_layout(inner, &contents).map_err(bad)?
    } else {
        return Err(bad(
            "neither an OCI image layout (index.json) nor a docker save tar (manifest.json)".into(),
        ));
    };
    if candidates.is_empty() {
        return Err(bad("it holds no image".into()));
    }
    Ok(candidates)
}

fn scan(
    inner: &Inner,
    reader: Box<dyn std::io::Read + '_>,
    lease: &Lease,
) -> Result<Contents, ImageError> {
    let corrupt = |e: std::io::Error| ImageError::Corrupt {
        what: "tar".into(),
        reason: e.to_string(),
    };
    let mut contents = Contents {
        files: HashMap::new(),
        links: HashMap::new(),
        metadata: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let path = clean_path(&raw)?.to_string_lossy().into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    Path::new(&path)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(&target)
                } else {
                    target
                };
                // `a/../b`: resolve the dots lexically, refusing to climb out.
                let mut clean = PathBuf::new();
                for c in resolved.components() {
                    match c {
                        std::path::Component::ParentDir if !clean.pop() => {
                            return Err(ImageError::PathEscape {
                                path: resolved.display().to_string(),
                            });
                        }
                        std::path::Component::Normal(n) => clean.push(n),
                        _ => {}
                    }
                }
                contents
                    .links
                    .insert(path, clean.to_string_lossy().into_owned());
            }
            kind if kind.is_file() => {
                if METADATA.contains(&path.as_str()) {
                    if entry.size() > MAX_METADATA {
                        return Err(ImageError::Corrupt {
                            what: path,
                            reason: "too large".into(),
                        });
                    }
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut buf).map_err(corrupt)?;
                    contents.metadata.insert(path, buf);
                    continue;
                }
                let named = path
                    .strip_prefix("blobs/sha256/")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|h| format!("sha256:{}", h.to_ascii_lowercase()));
                if let Some(d) = &named {
                    lease.add(d)?;
                    if inner.blobs().exists(d) {
                        contents.files.insert(path, d.clone());
                        continue;
                    }
                }
                let mut w = inner.blobs().writer(named.as_deref())?;
                std::io::copy(&mut entry, &mut w).map_err(corrupt)?;
                let (digest, _) = w.commit_with(&|d| lease.add(d))?;
                contents.files.insert(path, digest);
            }
            _ => {}
        }
    }
    Ok(contents)
}

fn docker_save(c: &Contents) -> Result<Vec<Candidate>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        #[serde(default)]
        layers: Vec<String>,
    }
    let bytes = c.metadata.get("manifest.json").ok_or("no manifest.json")?;
    let entries: Vec<Entry> =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest.json: {e}"))?;
    let mut out = Vec::new();
    for e in entries {
        let config_digest = c
            .digest_of(&e.config)
            .ok_or_else(|| format!("manifest.json names {} which is not in the tar", e.config))?;
        let mut layers = Vec::new();
        for l in &e.layers {
            layers.push(
                c.digest_of(l)
                    .ok_or_else(|| format!("manifest.json names {l} which is not in the tar"))?,
            );
        }
        let mut references = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            references.push(Reference::parse(&t).map_err(|e| e.to_string())?);
        }
        out.push(Candidate {
            references,
            repo_digests: Vec::new(),
            config_digest,
            layers,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn read_json<T: serde::de::DeserializeOwned>(inner: &Inner, digest: &str) -> Result<T, String> {
    let bytes = inner.blobs().read(digest).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{digest}: {e}"))
}

/// The manifest for this host behind `d` (a manifest, or an index of them).
fn resolve_manifest(
    inner: &Inner,
    d: &Descriptor,
    depth: u32,
) -> Result<Option<(String, Manifest)>, String> {
    if depth > 4 {
        return Err("indexes nested too deep".into());
    }
    let value: serde_json::Value = read_json(inner, &d.digest)?;
    if value.get("manifests").is_some() {
        let index: Index =
            serde_json::from_value(value).map_err(|e| format!("{}: {e}", d.digest))?;
        let arch = host_arch();
        let pick = index.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        });
        let pick = match pick {
            Some(p) => Some(p),
            None if index.manifests.len() == 1 && index.manifests[0].platform.is_none() => {
                index.manifests.first()
            }
            None => None,
        };
        return match pick {
            Some(p) => resolve_manifest(inner, p, depth + 1),
            None => Ok(None),
        };
    }
    let m: Manifest = serde_json::from_value(value).map_err(|e| format!("{}: {e}", d.digest))?;
    for l in &m.layers {
        let t = l.media_type.as_str();
        if !super::unpack::is_layer_media_type(t) {
            return Err(format!(
                "layer {} has an unsupported media type {t:?}",
                l.digest
            ));
        }
    }
    Ok(Some((d.digest.clone(), m)))
}

fn oci_layout(inner: &Inner, c: &Contents) -> Result<Vec<Candidate>, String> {
    let bytes = c.metadata.get("index.json").ok_or("no index.json")?;
    let index: Index = serde_json::from_slice(bytes).map_err(|e| format!("index.json: {e}"))?;
    let mut out = Vec::new();
    for d in &index.manifests {
        super::reference::validate_digest(&d.digest)?;
        if let Some(p) = &d.platform {
            if p.os != "linux" || p.architecture != host_arch() {
                continue;
            }
        }
        let Some((_, manifest)) = resolve_manifest(inner, d, 0)? else {
            continue;
        };
        let name = d.annotations.get("io.containerd.image.name").or_else(|| {
            d.annotations
                .get("org.opencontainers.image.ref.name")
                .filter(|n| n.contains('/') || n.contains(':'))
        });
        let mut references = Vec::new();
        let mut repo_digests = Vec::new();
        if let Some(n) = name {
            let r = Reference::parse(n).map_err(|e| e.to_string())?;
            repo_digests.push(r.with_digest(&d.digest).to_string());
            if r.tag.is_some() {
                references.push(r);
            }
        }
        out.push(Candidate {
            references,
            repo_digests,
            config_digest: manifest.config.digest.clone(),
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        });
    }
    Ok(out)
}
