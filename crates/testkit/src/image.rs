//! Images built in memory from Debian's static busybox: layer tars (with symlinks, a whiteout
//! and an opaque directory), gzip/zstd/plain blobs, config, OCI or Docker schema 2 manifests,
//! image indexes; and pushing them with oci-client.

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use crate::registry::Registry;

/// Debian's busybox-static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked to busybox in the base layer (`bin/NAME -> busybox`).
pub const APPLETS: [&str; 6] = ["sh", "ls", "cat", "echo", "true", "sleep"];

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let out = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in out {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// GOARCH of this host (`amd64` on x86-64).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd (always an OCI media type: Docker schema 2 has none for zstd).
    Zstd,
}

/// Manifest flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / index.
    Oci,
    /// Docker schema 2 manifest / manifest list.
    Docker,
}

impl Format {
    /// The manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }
    /// The index / manifest list media type.
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }
    fn config_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }
    fn layer_type(self, c: Compression) -> &'static str {
        match (self, c) {
            (_, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Format::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Format::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Format::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (Format::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }
}

/// Builds a tar in memory with fixed owners and times.
#[derive(Default)]
pub struct TarBuilder {
    inner: Option<tar::Builder<Vec<u8>>>,
    owner: (u64, u64),
}

impl std::fmt::Debug for TarBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TarBuilder")
    }
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> TarBuilder {
        TarBuilder {
            inner: Some(tar::Builder::new(Vec::new())),
            owner: (0, 0),
        }
    }

    /// Entries added after this call belong to `uid:gid` (root by default).
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.owner = (uid, gid);
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.owner.0);
        h.set_gid(self.owner.1);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    fn b(&mut self) -> &mut tar::Builder<Vec<u8>> {
        self.inner.as_mut().expect("tar builder already finished")
    }

    /// A directory `path` (no trailing slash needed).
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.b()
            .append_data(
                &mut h,
                format!("{}/", path.trim_end_matches('/')),
                std::io::empty(),
            )
            .expect("append dir");
        self
    }

    /// A regular file.
    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b()
            .append_data(&mut h, path, data)
            .expect("append file");
        self
    }

    /// A symlink `path -> target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.b()
            .append_link(&mut h, path, target)
            .expect("append symlink");
        self
    }

    /// The archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.inner
            .take()
            .expect("tar builder already finished")
            .into_inner()
            .expect("finish tar")
    }
}

/// The base layer: `bin/busybox` with applet symlinks, `etc/passwd`, `etc/group`, `tmp/`,
/// `etc/remove-me` (whited out by [`app_tar`]) and `etc/opaque/old.txt` (hidden by its
/// opaque dir).
pub fn busybox_base_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX} (apt-get install busybox-static): {e}"));
    let mut t = TarBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox);
    for applet in APPLETS {
        t = t.symlink(&format!("bin/{applet}"), "busybox");
    }
    t.dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/group", 0o644, b"root:x:0:\n")
        .file("etc/remove-me", 0o644, b"removed by the upper layer\n")
        .dir("etc/opaque", 0o755)
        .file("etc/opaque/old.txt", 0o644, b"hidden by the opaque dir\n")
        .dir("tmp", 0o1777)
        .finish()
}

/// An upper layer: a whiteout `etc/.wh.remove-me`, an opaque `etc/opaque/` with `new.txt`,
/// and `app/hello.txt` holding `message`.
pub fn app_tar(message: &str) -> Vec<u8> {
    TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/.wh.remove-me", 0o644, b"")
        .dir("etc/opaque", 0o755)
        .file("etc/opaque/.wh..wh..opq", 0o644, b"")
        .file("etc/opaque/new.txt", 0o644, b"after the opaque dir\n")
        .dir("app", 0o755)
        .file("app/hello.txt", 0o644, message.as_bytes())
        .finish()
}

/// One layer blob with its digests.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The descriptor media type.
    pub media_type: String,
    /// The blob as pushed (compressed).
    pub blob: Vec<u8>,
    /// Digest of `blob`.
    pub digest: String,
    /// Digest of the uncompressed tar (the diffID).
    pub diff_id: String,
}

impl Layer {
    /// Compresses `tar` and computes both digests.
    pub fn new(tar: &[u8], compression: Compression, format: Format) -> Layer {
        let blob = match compression {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).expect("gzip");
                e.finish().expect("gzip")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
        };
        Layer {
            media_type: format.layer_type(compression).to_string(),
            digest: sha256(&blob),
            diff_id: sha256(tar),
            blob,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.blob.len(),
        })
    }
}

/// An image ready to push.
#[derive(Debug, Clone)]
pub struct Image {
    /// Config JSON bytes.
    pub config: Vec<u8>,
    /// Digest of `config` (the image id).
    pub config_digest: String,
    /// Layers, lowest first.
    pub layers: Vec<Layer>,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Digest of `manifest`.
    pub manifest_digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// GOARCH in the config.
    pub architecture: String,
    /// Variant in the config, if any.
    pub variant: Option<String>,
}

/// Builds an [`Image`]: host platform, OCI format, no layers until added.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    format: Format,
    os: String,
    architecture: String,
    variant: Option<String>,
    layers: Vec<Layer>,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: String,
    labels: Vec<(String, String)>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new(Format::Oci)
    }
}

impl ImageBuilder {
    /// An empty image of this host's platform.
    pub fn new(format: Format) -> ImageBuilder {
        ImageBuilder {
            format,
            os: "linux".into(),
            architecture: host_arch().into(),
            variant: None,
            layers: Vec::new(),
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            workdir: String::new(),
            labels: Vec::new(),
        }
    }

    /// busybox base layer (gzip) plus an app layer saying `message` (zstd): the usual test
    /// image. Two of these with different messages share their base layer.
    pub fn busybox(format: Format, message: &str) -> ImageBuilder {
        let base = Layer::new(&busybox_base_tar(), Compression::Gzip, format);
        ImageBuilder::new(format)
            .layer(base)
            .tar_layer(&app_tar(message), Compression::Zstd)
            .cmd(&["/bin/cat", "/app/hello.txt"])
            .workdir("/app")
            .env("GREETING", message)
            .label("org.berth.test", message)
    }

    /// Sets architecture and variant (for a fake foreign image in an index).
    pub fn platform(mut self, architecture: &str, variant: Option<&str>) -> Self {
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    /// Adds a prepared layer on top.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Adds a tar as a layer on top.
    pub fn tar_layer(self, tar: &[u8], compression: Compression) -> Self {
        let format = self.format;
        self.layer(Layer::new(tar, compression, format))
    }

    /// Sets Cmd.
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds `KEY=value` to Env.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets WorkingDir.
    pub fn workdir(mut self, dir: &str) -> Self {
        self.workdir = dir.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Config, manifest and digests.
    pub fn build(self) -> Image {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect();
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Cmd": self.cmd,
                "Env": self.env,
                "WorkingDir": self.workdir,
                "Labels": labels,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().map(|_| serde_json::json!({"created_by": "berth-testkit"})).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = v.clone().into();
        }
        let config = serde_json::to_vec(&config).expect("config json");
        let config_digest = sha256(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": self.format.manifest_type(),
            "config": {
                "mediaType": self.format.config_type(),
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": self.layers.iter().map(Layer::descriptor).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest json");
        Image {
            manifest_digest: sha256(&manifest),
            media_type: self.format.manifest_type().into(),
            config,
            config_digest,
            layers: self.layers,
            manifest,
            architecture: self.architecture,
            variant: self.variant,
        }
    }
}

/// An image index (or Docker manifest list) over several images.
#[derive(Debug, Clone)]
pub struct Index {
    /// The index bytes.
    pub bytes: Vec<u8>,
    /// Digest of `bytes`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The images it lists.
    pub images: Vec<Image>,
}

impl Index {
    /// An index listing `images` with their linux platforms.
    pub fn new(format: Format, images: Vec<Image>) -> Index {
        let manifests: Vec<_> = images
            .iter()
            .map(|i| {
                let mut platform =
                    serde_json::json!({"architecture": i.architecture, "os": "linux"});
                if let Some(v) = &i.variant {
                    platform["variant"] = v.clone().into();
                }
                serde_json::json!({
                    "mediaType": i.media_type,
                    "digest": i.manifest_digest,
                    "size": i.manifest.len(),
                    "platform": platform,
                })
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": format.index_type(),
            "manifests": manifests,
        }))
        .expect("index json");
        Index {
            digest: sha256(&bytes),
            media_type: format.index_type().into(),
            bytes,
            images,
        }
    }
}

/// An oci-client over plain HTTP.
pub fn http_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        platform_resolver: None,
        ..ClientConfig::default()
    })
}

fn parse_ref(host: &str, name: &str) -> Reference {
    format!("{host}/{name}")
        .parse()
        .unwrap_or_else(|e| panic!("bad reference {host}/{name}: {e}"))
}

async fn push_blobs(client: &Client, r: &Reference, image: &Image) {
    client
        .push_blob(r, image.config.clone(), &image.config_digest)
        .await
        .unwrap_or_else(|e| panic!("push config of {r}: {e}"));
    for l in &image.layers {
        client
            .push_blob(r, l.blob.clone(), &l.digest)
            .await
            .unwrap_or_else(|e| panic!("push layer {} of {r}: {e}", l.digest));
    }
}

async fn push_manifest(client: &Client, r: &Reference, bytes: &[u8], media_type: &str) {
    let ct = reqwest::header::HeaderValue::from_str(media_type).expect("media type header");
    client
        .push_manifest_raw(r, bytes.to_vec(), ct)
        .await
        .unwrap_or_else(|e| panic!("push manifest {r}: {e}"));
}

/// Pushes `image` as `name:tag` to `registry` host (`127.0.0.1:PORT`) with `auth`; returns
/// the manifest digest.
pub async fn push_to(host: &str, auth: &RegistryAuth, name: &str, image: &Image) -> String {
    let client = http_client();
    let r = parse_ref(host, name);
    client
        .auth(&r, auth, oci_client::RegistryOperation::Push)
        .await
        .unwrap_or_else(|e| panic!("auth for {r}: {e}"));
    push_blobs(&client, &r, image).await;
    push_manifest(&client, &r, &image.manifest, &image.media_type).await;
    image.manifest_digest.clone()
}

/// Pushes `image` as `name:tag` (anonymously); returns the manifest digest.
pub async fn push(registry: &Registry, name: &str, image: &Image) -> String {
    push_to(&registry.host(), &RegistryAuth::Anonymous, name, image).await
}

/// Pushes every image of `index` by digest, then the index as `name:tag`; returns the index
/// digest.
pub async fn push_index(registry: &Registry, name: &str, index: &Index) -> String {
    let client = http_client();
    let r = parse_ref(&registry.host(), name);
    for image in &index.images {
        push_blobs(&client, &r, image).await;
        let by_digest = Reference::with_digest(
            r.registry().to_string(),
            r.repository().to_string(),
            image.manifest_digest.clone(),
        );
        push_manifest(&client, &by_digest, &image.manifest, &image.media_type).await;
    }
    push_manifest(&client, &r, &index.bytes, &index.media_type).await;
    index.digest.clone()
}

/// A whole busybox root filesystem for running containers: every applet `busybox --list`
/// names under `bin/`, users root, `app` (1000:1000, also in group `extra` 2000) and nobody,
/// the usual empty mount points, and `data/seed.txt` owned by 1000 (for volume copy-up).
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX} (apt-get install busybox-static): {e}"));
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("run {BUSYBOX} --list: {e}"));
    let mut t = TarBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox);
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            t = t.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    for d in [
        "dev", "proc", "sys", "root", "var", "run", "home", "home/app", "usr", "sbin",
    ] {
        t = t.dir(d, 0o755);
    }
    t.dir("etc", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file(
            "etc/group",
            0o644,
            b"root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
        )
        .dir("tmp", 0o1777)
        .owner(1000, 1000)
        .dir("data", 0o750)
        .file("data/seed.txt", 0o640, b"seeded by the image\n")
        .finish()
}
