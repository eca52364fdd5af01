//! Integration tests of the image store (src/runtime/image): images built here from
//! Debian's busybox-static (a base layer, and a second layer that deletes a file with a
//! whiteout, empties a directory with an opaque marker and adds files), written as an OCI
//! layout tar and as a `docker save` tar, imported, mounted as overlay root filesystems
//! and run through the runtime; `skiff images` through the built binary; pulls from a
//! local `docker-registry` (Debian's package) that the test starts on 127.0.0.1 and kills.
//!
//! Root only (as CI and tests/run.sh run them). Guards unmount what a failed test left
//! mounted, kill the registry and remove cgroups.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/image.rs"]
mod image;
#[path = "support/registry.rs"]
mod registry;

use image::*;
use registry::{push, Registry};
use skiff::runtime::cgroup;
use skiff::runtime::image::{ImageError, ImageStore, PullErrorKind, PullPolicy, RegistriesConfig};
use skiff::runtime::{ContainerSpec, Runtime, RuntimeConfig, Status};

fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the image tests mount overlays and create whiteout devices: run them as root"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (tests/run.sh does)"
    );
}

/// Unmounts (lazily) whatever overlay a failed test left under its dir, on drop.
struct Mounts(PathBuf);

impl Drop for Mounts {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let prefix = self.0.to_string_lossy().into_owned();
        for line in text.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&prefix) {
                    let c = std::ffi::CString::new(mp).expect("path");
                    // SAFETY: a mount point this test made.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
    }
}

fn mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let p = path.to_string_lossy();
    text.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Fields drop in order: the unmounts come before the temp dir is removed.
struct Env {
    _mounts: Mounts,
    store: ImageStore,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(registries: RegistriesConfig) -> Env {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("skiff-img-")
            .tempdir()
            .expect("tmp");
        let store = ImageStore::open(dir.path().join("content"), registries).expect("open");
        let mounts = Mounts(dir.path().to_path_buf());
        Env {
            dir,
            _mounts: mounts,
            store,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.store.root().join(sub))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir() || sub != "sn")
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Removes the cgroups of the container the test runs.
struct Cgroups(String);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for p in [
            format!("{}/c1", self.0),
            self.0.clone(),
            "/skiff-test".into(),
        ] {
            for _ in 0..40 {
                if cgroup::remove(&p).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_images_run_with_whiteouts_applied() {
    let env = Env::new(RegistriesConfig::default());
    let img = TestImage::new();
    let oci = env.write("oci.tar", &img.oci_tar("example.com/test/busybox:oci"));
    let docker = env.write("docker.tar", &img.docker_tar("busybox:docker"));

    let started = Instant::now();
    let imported = env.store.import(&oci).await.expect("import OCI layout");
    eprintln!(
        "import + unpack of the busybox image (gzip + zstd layers): {:?}",
        started.elapsed()
    );
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].id, img.id());
    assert_eq!(imported[0].references, ["example.com/test/busybox:oci"]);
    assert!(imported[0].pinned);
    assert_eq!(imported[0].config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(imported[0].config.cmd, ["cat /hello.txt"]);
    assert_eq!(imported[0].config.working_dir, "/tmp");

    // The same image (same config, same diffIDs) from a docker save tar: one image with
    // both names, sharing the unpacked layers.
    let imported = env.store.import(&docker).await.expect("import docker save");
    assert_eq!(imported[0].id, img.id());
    let list = env.store.list();
    assert_eq!(list.len(), 1, "{list:?}");
    let mut refs = list[0].references.clone();
    refs.sort();
    assert_eq!(
        refs,
        [
            "docker.io/library/busybox:docker",
            "example.com/test/busybox:oci"
        ]
    );
    assert_eq!(env.count("sn"), 2, "two layer snapshots, shared");
    let image = env.store.get("busybox:docker").expect("by short name");
    assert_eq!(env.store.get(&img.id()), Some(image.clone()));
    assert!(env.store.get("busybox:other").is_none());

    // The records survive a restart.
    let reopened = ImageStore::open(env.store.root().to_path_buf(), RegistriesConfig::default())
        .expect("reopen");
    assert_eq!(reopened.list(), env.store.list());

    let rootfs = env
        .store
        .prepare_rootfs("c1", &image)
        .await
        .expect("rootfs");
    assert!(mounted(&rootfs));
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(
        !rootfs.join("etc/gone").exists(),
        "the whiteout hides etc/gone"
    );
    assert!(
        !rootfs.join("olddir/old").exists(),
        "the opaque dir hides olddir/old"
    );
    assert!(rootfs.join("olddir/new").is_file());

    // Run it through the runtime, with the image's entrypoint, cmd, env and workdir.
    let run = tempfile::tempdir().expect("run dir");
    let runtime = Runtime::new(RuntimeConfig {
        run_dir: run.path().to_path_buf(),
        shim_binary: PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
        seal_binary: true,
        in_memory: false,
    })
    .expect("runtime");
    let parent = format!("/skiff-test/{}-images", std::process::id());
    let _cgroups = Cgroups(parent.clone());
    let script = "cat /hello.txt; pwd; echo \"greeting=$GREETING\"; \
                  if [ -e /etc/gone ]; then echo gone-present; else echo gone-absent; fi; \
                  ls /olddir; echo scratch > /tmp/written";
    let mut args = image.config.entrypoint.clone();
    args.push(script.into());
    let mut spec = ContainerSpec::new("c1", &rootfs, args);
    spec.env = image
        .config
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.cwd = Some(image.config.working_dir.clone());
    spec.cgroup_parent = Some(parent.clone());
    spec.log_path = run.path().join("c1.log");
    runtime
        .create_and_start(&spec)
        .await
        .expect("container starts");
    let state = tokio::time::timeout(Duration::from_secs(30), runtime.wait("c1"))
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(state.status, Status::Exited);
    assert_eq!(state.exit.map(|e| e.exit_code), Some(0));
    let out: Vec<String> = std::fs::read_to_string(&spec.log_path)
        .expect("log")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            (f.len() == 4 && f[1] == "stdout").then(|| f[3].to_string())
        })
        .collect();
    assert_eq!(
        out,
        [
            "hello from layer 2",
            "/tmp",
            "greeting=hi",
            "gone-absent",
            "new"
        ]
    );
    runtime.delete("c1").await.expect("delete container");

    // Writes went to the container's upper dir, not into the shared snapshots.
    assert!(rootfs.join("tmp/written").is_file());
    let upper = rootfs.parent().expect("ct dir").join("u");
    assert!(upper.join("tmp/written").is_file());
    let snapshots = env.store.root().join("sn");
    for e in std::fs::read_dir(&snapshots).expect("sn").flatten() {
        assert!(!e.path().join("tmp/written").exists());
    }

    // Removing the image while the rootfs exists keeps the layers it mounts.
    env.store.remove("busybox:docker").await.expect("remove");
    assert!(env.store.list().is_empty());
    assert_eq!(env.count("sn"), 2, "kept for the mounted rootfs");
    env.store.release_rootfs("c1").await.expect("release");
    assert!(!mounted(&rootfs));
    assert!(!rootfs.exists());
    env.store
        .release_rootfs("c1")
        .await
        .expect("release is idempotent");
    // The next prune (a removal or GC) takes what nothing uses any more.
    let again = env.store.import(&oci).await.expect("import again");
    env.store.remove(&again[0].id).await.expect("remove by id");
    assert_eq!(env.count("sn"), 0);
    assert_eq!(env.count("blobs/sha256"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_lowerdirs_when_options_are_long_and_import_dir_skips_unchanged() {
    let env = Env::new(RegistriesConfig::default());
    let store = env.store.clone().with_mount_option_limit(10);
    let img = TestImage::new();
    let images = env.dir.path().join("images");
    std::fs::create_dir(&images).expect("images dir");
    // A gzip-compressed tarball, as users drop them into <data-dir>/agent/images.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&img.oci_tar("example.com/test/busybox:dir"))
        .expect("gz");
    std::fs::write(images.join("busybox.tar.gz"), gz.finish().expect("gz")).expect("write");
    std::fs::write(images.join("notes.txt"), "not an image").expect("write");

    let first = store.import_dir(&images).await.expect("import dir");
    assert_eq!(first.len(), 1);
    assert!(first[0].pinned);
    let second = store.import_dir(&images).await.expect("import dir again");
    assert!(second.is_empty(), "unchanged files are not imported again");

    let image = store.get("example.com/test/busybox:dir").expect("imported");
    let rootfs = store.prepare_rootfs("rel", &image).await.expect("rootfs");
    assert!(mounted(&rootfs));
    let opts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = opts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&*rootfs.to_string_lossy()))
        .expect("mount line");
    assert!(
        !line.contains(&format!("lowerdir={}", store.root().display())),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).expect("hello"),
        "hello from layer 2\n"
    );
    assert!(!rootfs.join("etc/gone").exists());
    store.release_rootfs("rel").await.expect("release");
    assert!(!mounted(&rootfs));

    // GC never removes pinned images.
    let report = store.gc(&HashSet::new(), 0).await.expect("gc");
    assert!(report.removed.is_empty());
    assert_eq!(store.list().len(), 1);
}

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff")
}

#[test]
fn skiff_images_import_ls_rm() {
    require_root();
    let dir = tempfile::tempdir().expect("tmp");
    let _mounts = Mounts(dir.path().to_path_buf());
    let img = TestImage::new();
    let oci = dir.path().join("oci.tar");
    std::fs::write(&oci, img.oci_tar("example.com/test/busybox:oci")).expect("write");
    let docker = dir.path().join("docker.tar");
    std::fs::write(&docker, img.docker_tar("busybox:docker")).expect("write");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");

    let out = skiff(&[
        "images",
        "--data-dir",
        data,
        "import",
        oci.to_str().expect("p"),
        docker.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("imported example.com/test/busybox:oci"),
        "{text}"
    );

    let out = skiff(&["images", "ls", "--data-dir", data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let id13: String = img.id()["sha256:".len()..].chars().take(13).collect();
    assert_eq!(rows[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"], "{text}");
    assert_eq!(
        rows[1][..3],
        ["docker.io/library/busybox", "docker", id13.as_str()],
        "{text}"
    );
    assert_eq!(
        rows[2][..3],
        ["example.com/test/busybox", "oci", id13.as_str()],
        "{text}"
    );
    assert!(rows[1][3].ends_with("MB"), "{text}");

    let out = skiff(&["images", "rm", "--data-dir", data, "busybox:nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("image \"docker.io/library/busybox:nope\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skiff(&["images", "rm", "--data-dir", data, "busybox:docker"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skiff(&["images", "ls", "--data-dir", data]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "only the header"
    );
    let content = Path::new(data).join("agent/content");
    assert_eq!(
        std::fs::read_dir(content.join("sn")).expect("sn").count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(content.join("blobs/sha256"))
            .expect("blobs")
            .count(),
        0
    );
}

/// Push `img` and a variant for another platform as `test/multi:1`, an OCI index with
/// the other platform listed first; the index's digest.
async fn push_index(img: &TestImage, host: &str) -> String {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let mut other = serde_json::from_slice::<serde_json::Value>(&img.config).expect("config");
    other["architecture"] = "s390x".into();
    let other = TestImage {
        config: serde_json::to_vec(&other).expect("config"),
        base: img.base.clone(),
        top: img.top.clone(),
        base_gz: img.base_gz.clone(),
        top_zst: img.top_zst.clone(),
    };
    let mut entries = Vec::new();
    for (image, tag, arch) in [
        (&other, "other", "s390x"),
        (img, "own", skiff::runtime::image::archive::host_arch()),
    ] {
        let reference = format!("{host}/test/multi:{tag}");
        push(image, &reference).await;
        let r: oci_client::Reference = reference.parse().expect("reference");
        let (bytes, digest) = client
            .pull_manifest_raw(&r, &auth, &[MANIFEST])
            .await
            .expect("pushed manifest");
        entries.push(serde_json::json!({
            "mediaType": MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("index");
    let r: oci_client::Reference = format!("{host}/test/multi:1").parse().expect("reference");
    client
        .push_manifest_raw(
            &r,
            index.clone(),
            http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .expect("push the index");
    digest(&index)
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_from_a_local_registry_with_policies_mirrors_and_errors() {
    require_root();
    let mut registry = Registry::start();
    let host = format!("127.0.0.1:{}", registry.port);
    let img = TestImage::new();
    push(&img, &format!("{host}/test/busybox:1")).await;
    let index_digest = push_index(&img, &host).await;
    let other_reference = format!("{host}/test/other:1");
    push(
        &TestImage::with_hello("hello from another image\n"),
        &other_reference,
    )
    .await;

    // The registry speaks plain HTTP: a mirror entry says so. docker.io goes to the
    // same registry, its `library/` repositories rewritten into `test/`.
    // The first docker.io endpoint is down (nothing listens on 127.0.0.1:9): the pull
    // goes on to the next.
    let yaml = format!(
        "mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n  docker.io:\n    endpoint: [\"http://127.0.0.1:9\", \"http://{host}\"]\n    rewrite:\n      \"^library/(.*)\": \"test/$1\"\n"
    );
    let env = Env::new(RegistriesConfig::parse(&yaml).expect("registries.yaml"));
    let reference = format!("{host}/test/busybox:1");

    let err = env
        .store
        .ensure(&reference, PullPolicy::Never, &[])
        .await
        .expect_err("Never does not pull");
    assert_eq!(
        err.to_string(),
        format!("Container image \"{reference}\" is not present with pull policy of Never")
    );

    let started = Instant::now();
    let pulled = env
        .store
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull");
    eprintln!(
        "pull + unpack from the local registry: {:?}",
        started.elapsed()
    );
    assert_eq!(pulled.id, img.id());
    assert_eq!(pulled.references, std::slice::from_ref(&reference));
    assert!(!pulled.pinned);
    assert_eq!(pulled.repo_digests.len(), 1);
    assert!(pulled.repo_digests[0].starts_with(&format!("{host}/test/busybox@sha256:")));
    assert_eq!(
        env.store
            .ensure(&reference, PullPolicy::Never, &[])
            .await
            .expect("present"),
        pulled
    );

    // Through the docker.io mirror with its rewrite.
    let mirrored = env
        .store
        .pull("busybox:1", &[])
        .await
        .expect("pull through the rewriting mirror");
    assert_eq!(mirrored.id, img.id());
    assert!(mirrored
        .references
        .contains(&"docker.io/library/busybox:1".to_string()));

    // A multi-platform index: this host's platform is picked.
    let multi = env
        .store
        .pull(&format!("{host}/test/multi:1"), &[])
        .await
        .expect("pull an index");
    assert_eq!(
        multi.id,
        img.id(),
        "the {} image",
        skiff::runtime::image::archive::host_arch()
    );
    assert!(
        multi
            .repo_digests
            .contains(&format!("{host}/test/multi@{index_digest}")),
        "{:?}",
        multi.repo_digests
    );

    // A missing image, worded as containerd words it.
    let err = env
        .store
        .pull(&format!("{host}/test/nope:1"), &[])
        .await
        .expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "failed to pull and unpack image \"{host}/test/nope:1\": failed to resolve reference \"{host}/test/nope:1\": {host}/test/nope:1: not found"
        )
    );
    assert!(matches!(
        err,
        ImageError::Pull {
            kind: PullErrorKind::NotFound,
            ..
        }
    ));

    let rootfs = env
        .store
        .prepare_rootfs("pulled", &pulled)
        .await
        .expect("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).expect("hello"),
        "hello from layer 2\n"
    );
    assert!(!rootfs.join("etc/gone").exists());
    env.store.release_rootfs("pulled").await.expect("release");

    // Without the registry: IfNotPresent uses what is there, Always must pull and fails.
    // A second image, used more recently than the first.
    // Pulled by two tasks at once (as pods starting together do): one image.
    let (a, b) = tokio::join!(
        env.store
            .ensure(&other_reference, PullPolicy::IfNotPresent, &[]),
        env.store
            .ensure(&other_reference, PullPolicy::IfNotPresent, &[]),
    );
    let newer = a.expect("pull the second image");
    assert_eq!(b.expect("the same pull"), newer);
    registry.stop();
    env.store
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .expect("present, no pull");
    let err = env
        .store
        .ensure(&reference, PullPolicy::Always, &[])
        .await
        .expect_err("Always pulls");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "failed to pull and unpack image \"{reference}\": failed to resolve reference"
        )),
        "{text}"
    );

    // GC: pulled images are not pinned. The least recently used goes first, and only
    // as many as it takes to reach the target; images in use stay.
    assert_ne!(newer.id, pulled.id);
    let usage = env.store.disk_usage();
    let report = env.store.gc(&HashSet::new(), usage - 1).await.expect("gc");
    assert_eq!(report.usage_before, usage);
    let removed: Vec<&str> = report.removed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(removed, [pulled.id.as_str()], "the older image only");
    assert!(report.usage_after < usage);
    assert_eq!(env.store.list(), std::slice::from_ref(&newer));
    // Its base layer is shared with the newer image and stays; only its top goes.
    let rootfs = env
        .store
        .prepare_rootfs("newer", &newer)
        .await
        .expect("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).expect("hello"),
        "hello from another image\n"
    );
    env.store.release_rootfs("newer").await.expect("release");
    let in_use: HashSet<String> = [other_reference.clone()].into_iter().collect();
    let report = env.store.gc(&in_use, 0).await.expect("gc");
    assert!(report.removed.is_empty(), "in use");
    let report = env.store.gc(&HashSet::new(), 0).await.expect("gc");
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.usage_after, 0);
    assert!(env.store.list().is_empty());
}
