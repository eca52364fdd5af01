//! A test image built from Debian's busybox-static, shared by the integration tests
//! (`tests/images.rs`) and the e2e tests: a base layer (busybox and its applets,
//! `/etc/passwd`) and a second layer that deletes a file with a whiteout, empties a
//! directory with an opaque marker and adds `/hello.txt`; written as an OCI image layout
//! tar or a `docker save` tar.
#![allow(dead_code)]

use std::io::Write as _;
use std::process::Command;

use sha2::{Digest as _, Sha256};

pub const BUSYBOX: &str = "/bin/busybox";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).expect("path");
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

pub fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let h = header(path, tar::EntryType::Directory, 0o755, 0);
    b.append(&h, &[][..]).expect("dir");
}

pub fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let h = header(path, tar::EntryType::Regular, mode, data.len() as u64);
    b.append(&h, data).expect("file");
}

/// The two uncompressed layer tars.
pub fn layers(hello: &str) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "olddir/"] {
        add_dir(&mut b, d);
    }
    let busybox = std::fs::read(BUSYBOX).expect("read busybox");
    add_file(&mut b, "bin/busybox", 0o755, &busybox);
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if applet != "busybox" {
            let mut h = header(&format!("bin/{applet}"), tar::EntryType::Symlink, 0o777, 0);
            h.set_link_name("busybox").expect("link");
            h.set_cksum();
            b.append(&h, &[][..]).expect("symlink");
        }
    }
    add_file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n");
    add_file(&mut b, "etc/gone", 0o644, b"deleted by layer 2\n");
    add_file(&mut b, "olddir/old", 0o644, b"hidden by layer 2\n");
    let base = b.into_inner().expect("tar");

    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "etc/.wh.gone", 0o644, b"");
    add_file(&mut b, "olddir/.wh..wh..opq", 0o644, b"");
    add_file(&mut b, "olddir/new", 0o644, b"added by layer 2\n");
    add_file(&mut b, "hello.txt", 0o644, hello.as_bytes());
    let top = b.into_inner().expect("tar");
    (base, top)
}

pub struct TestImage {
    pub base: Vec<u8>,
    pub top: Vec<u8>,
    pub base_gz: Vec<u8>,
    pub top_zst: Vec<u8>,
    pub config: Vec<u8>,
}

impl TestImage {
    pub fn new() -> TestImage {
        Self::with_hello("hello from layer 2\n")
    }

    /// The same base layer; a top layer whose `hello.txt` says `hello`.
    pub fn with_hello(hello: &str) -> TestImage {
        let (base, top) = layers(hello);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&base).expect("gzip");
        let base_gz = gz.finish().expect("gzip");
        let top_zst = ruzstd::encoding::compress_to_vec(
            &top[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "GREETING=hi"],
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["cat /hello.txt"],
                "WorkingDir": "/tmp",
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(&base), digest(&top)]},
        }))
        .expect("config");
        TestImage {
            base,
            top,
            base_gz,
            top_zst,
            config,
        }
    }

    pub fn id(&self) -> String {
        digest(&self.config)
    }

    pub fn manifest(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": CONFIG_TYPE, "digest": self.id(), "size": self.config.len()},
            "layers": [
                {"mediaType": LAYER_GZIP, "digest": digest(&self.base_gz), "size": self.base_gz.len()},
                {"mediaType": LAYER_ZSTD, "digest": digest(&self.top_zst), "size": self.top_zst.len()},
            ],
        }))
        .expect("manifest")
    }

    /// An OCI image layout tar, named by `io.containerd.image.name`.
    pub fn oci_tar(&self, name: &str) -> Vec<u8> {
        let manifest = self.manifest();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest),
                "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": "oci",
                },
            }],
        }))
        .expect("index");
        let mut b = tar::Builder::new(Vec::new());
        add_file(
            &mut b,
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        );
        add_file(&mut b, "index.json", 0o644, &index);
        for blob in [&manifest, &self.config, &self.base_gz, &self.top_zst] {
            let path = format!("blobs/sha256/{}", &digest(blob)["sha256:".len()..]);
            add_file(&mut b, &path, 0o644, blob);
        }
        b.into_inner().expect("tar")
    }

    /// A legacy `docker save` tar (uncompressed `<id>/layer.tar`, a symlinked duplicate).
    pub fn docker_tar(&self, tag: &str) -> Vec<u8> {
        let h1 = &digest(&self.base)["sha256:".len()..];
        let h2 = &digest(&self.top)["sha256:".len()..];
        let cfg = format!("{}.json", &self.id()["sha256:".len()..]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": cfg,
            "RepoTags": [tag],
            "Layers": [format!("{h1}/layer.tar"), format!("link/layer.tar")],
        }]))
        .expect("manifest");
        let mut b = tar::Builder::new(Vec::new());
        add_file(&mut b, &cfg, 0o644, &self.config);
        add_dir(&mut b, &format!("{h1}/"));
        add_file(&mut b, &format!("{h1}/layer.tar"), 0o644, &self.base);
        add_file(&mut b, &format!("{h1}/VERSION"), 0o644, b"1.0");
        add_dir(&mut b, &format!("{h2}/"));
        add_file(&mut b, &format!("{h2}/layer.tar"), 0o644, &self.top);
        add_dir(&mut b, "link/");
        let mut h = header("link/layer.tar", tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name(format!("../{h2}/layer.tar")).expect("link");
        h.set_cksum();
        b.append(&h, &[][..]).expect("symlink");
        add_file(&mut b, "manifest.json", 0o644, &manifest);
        b.into_inner().expect("tar")
    }
}
