//! The image store: one record per image in `images/<config hex>.json` (the image id is the
//! config digest) and the names in `refs.json`, the single source of truth for names:
//! records are written without them and get their `repo_tags`/`repo_digests` filled from
//! `refs.json` when read. Names are opaque strings here; the caller normalises references.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, FsError, Lock};
use crate::layout::{IMAGE_FILE_SUFFIX, Root};

/// The version of the `refs.json` format written here.
pub const REFS_VERSION: u32 = 1;
/// The shortest id prefix [`ImageStore::resolve`] accepts.
pub const MIN_ID_PREFIX: usize = 4;

/// Why an image store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image has this name, id or id prefix.
    #[error("no such image: {reference}")]
    NotFound { reference: String },
    /// More than one image id starts with this prefix.
    #[error("image id prefix {prefix} is ambiguous: {count} images match")]
    Ambiguous { prefix: String, count: usize },
    /// `refs.json` names an image whose record is gone.
    #[error("name {name} refers to image {id} but its record {} is missing", path.display())]
    MissingRecord {
        name: String,
        id: Digest,
        path: PathBuf,
    },
    /// A state file parses but is inconsistent.
    #[error("corrupt state file {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The image config blob is not a valid OCI/Docker image config.
    #[error("invalid image config {digest}: {reason}")]
    InvalidConfig { digest: Digest, reason: String },
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Docker's `Healthcheck` from the image config (not in the OCI spec). Zero durations and
/// retries mean "inherit/default" in Docker and are `None` here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`; empty: inherit.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// One history entry of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    /// True when this step made no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

/// The runtime defaults berth takes from an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `None` (unset) differs from `Some([])` (explicitly empty) as in Docker.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, in order.
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `port/proto` keys, sorted.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// Volume paths, sorted.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub created: Option<String>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Everything berth reads from an image config blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedConfig {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    /// `rootfs.diff_ids`, bottom layer first.
    pub diff_ids: Vec<Digest>,
    pub config: ImageConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHealthcheck {
    #[serde(default)]
    test: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<i64>,
    #[serde(default)]
    timeout: Option<i64>,
    #[serde(default)]
    start_period: Option<i64>,
    #[serde(default)]
    start_interval: Option<i64>,
    #[serde(default)]
    retries: Option<i64>,
}

impl ImageConfig {
    /// Parses an OCI or Docker image config blob (with `oci_spec`, plus Docker's
    /// `config.Healthcheck` from the raw JSON).
    pub fn parse(bytes: &[u8]) -> Result<ParsedConfig, ImageError> {
        let invalid = |reason: String| ImageError::InvalidConfig {
            digest: Digest::of_bytes(bytes),
            reason,
        };
        let oci = oci_spec::image::ImageConfiguration::from_reader(bytes)
            .map_err(|e| invalid(e.to_string()))?;
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let healthcheck = match raw.get("config").and_then(|c| c.get("Healthcheck")) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let h: DockerHealthcheck = serde_json::from_value(v.clone())
                    .map_err(|e| invalid(format!("config.Healthcheck: {e}")))?;
                let dur = |ns: Option<i64>| {
                    ns.filter(|n| *n > 0)
                        .map(|n| Duration::from_nanos(n.unsigned_abs()))
                };
                Some(Healthcheck {
                    test: h.test.unwrap_or_default(),
                    interval: dur(h.interval),
                    timeout: dur(h.timeout),
                    start_period: dur(h.start_period),
                    start_interval: dur(h.start_interval),
                    retries: h
                        .retries
                        .filter(|r| *r > 0)
                        .and_then(|r| u32::try_from(r).ok()),
                })
            }
        };
        let diff_ids = oci
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d).map_err(|e| invalid(format!("rootfs.diff_ids: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let mut config = ImageConfig {
            healthcheck,
            created: oci.created().clone(),
            history: oci
                .history()
                .iter()
                .flatten()
                .map(|h| HistoryEntry {
                    created: h.created().clone(),
                    created_by: h.created_by().clone(),
                    comment: h.comment().clone(),
                    empty_layer: h.empty_layer().unwrap_or(false),
                })
                .collect(),
            ..ImageConfig::default()
        };
        if let Some(c) = oci.config() {
            let sorted = |v: &Option<Vec<String>>| {
                let mut v = v.clone().unwrap_or_default();
                v.sort();
                v
            };
            config.entrypoint = c.entrypoint().clone();
            config.cmd = c.cmd().clone();
            config.env = c.env().clone().unwrap_or_default();
            config.working_dir = non_empty(c.working_dir());
            config.user = non_empty(c.user());
            config.exposed_ports = sorted(c.exposed_ports());
            config.volumes = sorted(c.volumes());
            config.labels = c
                .labels()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            config.stop_signal = non_empty(c.stop_signal());
        }
        Ok(ParsedConfig {
            architecture: oci.architecture().to_string(),
            os: oci.os().to_string(),
            variant: non_empty(oci.variant()),
            diff_ids,
            config,
        })
    }
}

/// One layer of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The layer blob as the manifest lists it (possibly compressed).
    pub blob: Digest,
    pub media_type: String,
    /// The blob's size in bytes (the manifest descriptor's size).
    pub size: u64,
}

/// An image: its config digest (the id), where it came from, its names and layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    /// The platform manifest the image was pulled with, if any.
    pub manifest_digest: Option<Digest>,
    /// Names without `@` pointing here (from refs.json; not stored in the record file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_tags: Vec<String>,
    /// Names with `@` pointing here (from refs.json; not stored in the record file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
    /// Unpacked size of all layers, in bytes.
    pub size: u64,
}

/// One name in refs.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntry {
    /// The image id.
    pub id: Digest,
    /// The manifest digest recorded with the name (`null` when none).
    pub manifest: Option<Digest>,
    /// When the name was last (re)pointed — by a pull, load, import or tag: Docker's
    /// `LastTagTime`, which `pull_policy: daily|weekly|every_<d>` compares with. RFC 3339;
    /// absent in refs written before berth recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged_at: Option<String>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[derive(Debug, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    refs: BTreeMap<String, RefEntry>,
}

/// What prune must keep: every blob (manifest, config, layer blobs, manifests named in
/// refs.json) and chainID reachable from an image record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRoots {
    pub blobs: BTreeSet<Digest>,
    pub chain_ids: BTreeSet<Digest>,
}

/// The image store over a [`Root`].
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: Root,
}

impl ImageStore {
    /// The image store of an opened root.
    pub fn new(root: Root) -> ImageStore {
        ImageStore { root }
    }

    /// Writes the record atomically (without names), then points every name in its
    /// `repo_tags` and `repo_digests` at it (moving them off other images). Names already
    /// pointing at it stay.
    pub fn put(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let mut stored = record.clone();
        stored.repo_tags.clear();
        stored.repo_digests.clear();
        fsutil::write_json_atomic(&self.root.image_file(&record.id), &stored)?;
        let names: Vec<&String> = record
            .repo_tags
            .iter()
            .chain(&record.repo_digests)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let now = now_rfc3339();
        self.update_refs(|refs| {
            for name in names {
                refs.insert(
                    name.clone(),
                    RefEntry {
                        id: record.id.clone(),
                        manifest: record.manifest_digest.clone(),
                        tagged_at: Some(now.clone()),
                    },
                );
            }
            Ok(())
        })
    }

    /// The record with its names, `None` if there is no such image.
    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>, ImageError> {
        let refs = self.refs()?;
        self.get_with(id, &refs)
    }

    fn get_with(
        &self,
        id: &Digest,
        refs: &BTreeMap<String, RefEntry>,
    ) -> Result<Option<ImageRecord>, ImageError> {
        let path = self.root.image_file(id);
        let Some(mut rec) = fsutil::read_json_if_exists::<ImageRecord>(&path)? else {
            return Ok(None);
        };
        if rec.id != *id {
            return Err(ImageError::Corrupt {
                path,
                reason: format!("the record's id is {}", rec.id),
            });
        }
        rec.repo_tags.clear();
        rec.repo_digests.clear();
        for (name, entry) in refs {
            if entry.id == *id {
                if name.contains('@') {
                    rec.repo_digests.push(name.clone());
                } else {
                    rec.repo_tags.push(name.clone());
                }
            }
        }
        Ok(Some(rec))
    }

    /// Every image id with a record file, sorted.
    fn ids(&self) -> Result<Vec<Digest>, ImageError> {
        let dir = self.root.images_dir();
        let entries = fs::read_dir(&dir).map_err(|e| FsError::io("read directory", &dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(IMAGE_FILE_SUFFIX)
                .and_then(|hex| Digest::from_hex(hex).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every image with its names, sorted by id.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let refs = self.refs()?;
        let mut out = Vec::new();
        for id in self.ids()? {
            if let Some(rec) = self.get_with(&id, &refs)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Finds an image by full name (as stored in refs.json), `sha256:<hex>` id or id prefix,
    /// or bare id / id prefix of at least [`MIN_ID_PREFIX`] lowercase hex digits. A name wins
    /// over an id prefix; a prefix matching several images is an error.
    pub fn resolve(&self, name_or_id: &str) -> Result<ImageRecord, ImageError> {
        let not_found = || ImageError::NotFound {
            reference: name_or_id.to_string(),
        };
        let refs = self.refs()?;
        let hex = match name_or_id.strip_prefix("sha256:") {
            Some(hex) => hex,
            None => {
                if let Some(entry) = refs.get(name_or_id) {
                    return self.get_with(&entry.id, &refs)?.ok_or_else(|| {
                        ImageError::MissingRecord {
                            name: name_or_id.to_string(),
                            id: entry.id.clone(),
                            path: self.root.image_file(&entry.id),
                        }
                    });
                }
                name_or_id
            }
        };
        let is_hex = hex.len() >= MIN_ID_PREFIX
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex {
            return Err(not_found());
        }
        let matches: Vec<Digest> = self
            .ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(hex))
            .collect();
        match matches.as_slice() {
            [] => Err(not_found()),
            [id] => self.get_with(id, &refs)?.ok_or_else(not_found),
            _ => Err(ImageError::Ambiguous {
                prefix: name_or_id.to_string(),
                count: matches.len(),
            }),
        }
    }

    /// Points `name` at image `id` (moving it off any other image), recording the image's
    /// manifest digest with it.
    pub fn tag(&self, id: &Digest, name: &str) -> Result<(), ImageError> {
        self.update_refs(|refs| {
            let path = self.root.image_file(id);
            let rec = fsutil::read_json_if_exists::<ImageRecord>(&path)?.ok_or_else(|| {
                ImageError::NotFound {
                    reference: id.to_string(),
                }
            })?;
            refs.insert(
                name.to_string(),
                RefEntry {
                    id: id.clone(),
                    manifest: rec.manifest_digest,
                    tagged_at: Some(now_rfc3339()),
                },
            );
            Ok(())
        })
    }

    /// Removes `name`; returns the image id it pointed at, `None` if there was no such name.
    pub fn untag(&self, name: &str) -> Result<Option<Digest>, ImageError> {
        self.update_refs(|refs| Ok(refs.remove(name).map(|e| e.id)))
    }

    /// Removes the image's names, then its record; returns whether the record existed.
    /// Layers and blobs stay until prune (see [`gc_roots`](Self::gc_roots)).
    pub fn remove(&self, id: &Digest) -> Result<bool, ImageError> {
        // One lock for both steps, so that a concurrent `tag` cannot name the image between.
        let _lock = Lock::exclusive(&self.root.refs_lock_file())?;
        self.modify_refs(|refs| {
            refs.retain(|_, e| e.id != *id);
            Ok(())
        })?;
        let path = self.root.image_file(id);
        match fs::remove_file(&path) {
            Ok(()) => {
                fsutil::fsync_dir(&self.root.images_dir())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::io("remove", &path, e).into()),
        }
    }

    /// All names: full name → image id and manifest digest.
    pub fn refs(&self) -> Result<BTreeMap<String, RefEntry>, ImageError> {
        let path = self.root.refs_file();
        match fsutil::read_json_if_exists::<RefsFile>(&path)? {
            None => Ok(BTreeMap::new()),
            Some(f) if f.version == REFS_VERSION => Ok(f.refs),
            Some(f) => Err(ImageError::Corrupt {
                path,
                reason: format!(
                    "version {} (this berth reads version {REFS_VERSION})",
                    f.version
                ),
            }),
        }
    }

    /// Read-modify-write of refs.json under an exclusive flock on refs.lock; written only if
    /// `f` changed something.
    fn update_refs<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, RefEntry>) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _lock = Lock::exclusive(&self.root.refs_lock_file())?;
        self.modify_refs(f)
    }

    /// Read-modify-write of refs.json; the caller holds the refs lock.
    fn modify_refs<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, RefEntry>) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let before = self.refs()?;
        let mut refs = before.clone();
        let out = f(&mut refs)?;
        if refs != before {
            let file = RefsFile {
                version: REFS_VERSION,
                refs,
            };
            fsutil::write_json_atomic(&self.root.refs_file(), &file)?;
        }
        Ok(out)
    }

    /// The blobs and chainIDs every image record (and every manifest named in refs.json)
    /// keeps alive.
    pub fn gc_roots(&self) -> Result<GcRoots, ImageError> {
        let mut roots = GcRoots::default();
        for rec in self.list()? {
            roots.blobs.insert(rec.id.clone());
            roots.blobs.extend(rec.manifest_digest.clone());
            for l in &rec.layers {
                roots.blobs.insert(l.blob.clone());
                roots.chain_ids.insert(l.chain_id.clone());
            }
        }
        for entry in self.refs()?.into_values() {
            roots.blobs.extend(entry.manifest);
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::LayerStore;

    fn store() -> (tempfile::TempDir, ImageStore, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, ImageStore::new(root.clone()), root)
    }

    fn record(seed: &str, layers: &[&str]) -> ImageRecord {
        let mut parent: Option<Digest> = None;
        let layers = layers
            .iter()
            .map(|l| {
                let diff_id = Digest::of_bytes(format!("diff {l}").as_bytes());
                let chain_id = LayerStore::chain_id(parent.as_ref(), &diff_id);
                parent = Some(chain_id.clone());
                LayerRef {
                    diff_id,
                    chain_id,
                    blob: Digest::of_bytes(format!("blob {l}").as_bytes()),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
                    size: 10,
                }
            })
            .collect();
        ImageRecord {
            id: Digest::of_bytes(format!("config {seed}").as_bytes()),
            manifest_digest: Some(Digest::of_bytes(format!("manifest {seed}").as_bytes())),
            repo_tags: vec![],
            repo_digests: vec![],
            created: Some("2024-01-01T00:00:00Z".to_string()),
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            variant: None,
            config: ImageConfig::default(),
            layers,
            size: 100,
        }
    }

    /// Two records whose ids share a prefix of `n` hex digits.
    fn two_with_common_prefix(n: usize) -> (ImageRecord, ImageRecord) {
        let first = record("p0", &[]);
        for i in 1.. {
            let r = record(&format!("p{i}"), &[]);
            if r.id.hex()[..n] == first.id.hex()[..n] {
                return (first, r);
            }
        }
        unreachable!()
    }

    #[test]
    fn put_get_and_resolve_by_name_id_and_prefix() {
        let (_d, is, _root) = store();
        let mut a = record("a", &["l1", "l2"]);
        a.repo_tags = vec!["docker.io/library/busybox:latest".to_string()];
        a.repo_digests = vec!["docker.io/library/busybox@sha256:abc".to_string()];
        is.put(&a).unwrap();
        assert_eq!(is.get(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(is.resolve("docker.io/library/busybox:latest").unwrap(), a);
        assert_eq!(is.resolve(&a.id.to_string()).unwrap(), a);
        assert_eq!(is.resolve(a.id.hex()).unwrap(), a);
        assert_eq!(is.resolve(a.id.short()).unwrap(), a);
        assert_eq!(is.resolve(&a.id.hex()[..4]).unwrap(), a);
        assert_eq!(
            is.resolve(&format!("sha256:{}", &a.id.hex()[..8])).unwrap(),
            a
        );
        for missing in [
            &a.id.hex()[..3],
            "busybox",
            "docker.io/library/busybox:1",
            "zzzz",
        ] {
            assert!(
                matches!(is.resolve(missing), Err(ImageError::NotFound { .. })),
                "{missing}"
            );
        }
        let other = record("other", &[]);
        assert!(matches!(
            is.resolve(&other.id.to_string()),
            Err(ImageError::NotFound { .. })
        ));
    }

    #[test]
    fn ambiguous_prefix_is_an_error() {
        let (_d, is, _root) = store();
        let (c, d) = two_with_common_prefix(MIN_ID_PREFIX);
        is.put(&c).unwrap();
        is.put(&d).unwrap();
        let p = &c.id.hex()[..MIN_ID_PREFIX];
        let err = is.resolve(p).unwrap_err();
        assert!(
            matches!(err, ImageError::Ambiguous { count: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(p), "{err}");
        let err = is.resolve(&format!("sha256:{p}")).unwrap_err();
        assert!(
            matches!(err, ImageError::Ambiguous { count: 2, .. }),
            "{err}"
        );
        // The full ids still tell them apart.
        assert_eq!(is.resolve(c.id.hex()).unwrap().id, c.id);
        assert_eq!(is.resolve(&d.id.to_string()).unwrap().id, d.id);
    }

    #[test]
    fn tag_moves_names_and_untag_remove_drop_them() {
        let (_d, is, _root) = store();
        let a = record("a", &["l1"]);
        let b = record("b", &["l1"]);
        is.put(&a).unwrap();
        is.put(&b).unwrap();
        is.tag(&a.id, "example.com/app:1").unwrap();
        is.tag(&a.id, "example.com/app:latest").unwrap();
        assert_eq!(is.resolve("example.com/app:latest").unwrap().id, a.id);
        is.tag(&b.id, "example.com/app:latest").unwrap();
        assert_eq!(is.resolve("example.com/app:latest").unwrap().id, b.id);
        assert_eq!(
            is.get(&a.id).unwrap().unwrap().repo_tags,
            ["example.com/app:1"]
        );
        assert_eq!(
            is.get(&b.id).unwrap().unwrap().repo_tags,
            ["example.com/app:latest"]
        );
        let entry = &is.refs().unwrap()["example.com/app:latest"];
        assert_eq!(entry.id, b.id);
        assert_eq!(entry.manifest, b.manifest_digest);
        let tagged = chrono::DateTime::parse_from_rfc3339(entry.tagged_at.as_deref().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!((chrono::Utc::now() - tagged).num_seconds() < 60);
        let unknown = Digest::of_bytes(b"nope");
        assert!(matches!(
            is.tag(&unknown, "x:1"),
            Err(ImageError::NotFound { .. })
        ));
        assert_eq!(is.untag("example.com/app:1").unwrap(), Some(a.id.clone()));
        assert_eq!(is.untag("example.com/app:1").unwrap(), None);
        assert!(is.get(&a.id).unwrap().unwrap().repo_tags.is_empty());
        assert!(is.remove(&b.id).unwrap());
        assert!(!is.remove(&b.id).unwrap());
        assert!(is.refs().unwrap().is_empty());
        assert_eq!(is.get(&b.id).unwrap(), None);
        assert_eq!(
            is.list()
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [a.id]
        );
    }

    #[test]
    fn refs_survive_a_reload_in_the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = record("a", &[]);
        a.repo_tags = vec!["docker.io/library/alpine:3".to_string()];
        let mut b = record("b", &[]);
        b.manifest_digest = None;
        {
            let is = ImageStore::new(Root::open(dir.path()).unwrap());
            is.put(&a).unwrap();
            is.put(&b).unwrap();
            is.tag(&b.id, "local/b:dev").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let is = ImageStore::new(root.clone());
        assert_eq!(is.resolve("docker.io/library/alpine:3").unwrap(), a);
        assert_eq!(is.resolve("local/b:dev").unwrap().id, b.id);
        let mut raw: serde_json::Value =
            serde_json::from_slice(&fs::read(root.refs_file()).unwrap()).unwrap();
        // The tag times are now-ish RFC 3339 stamps; the rest is exact.
        for name in ["docker.io/library/alpine:3", "local/b:dev"] {
            let entry = raw["refs"][name].as_object_mut().unwrap();
            let t = entry.remove("tagged_at").unwrap();
            chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
        }
        assert_eq!(
            raw,
            serde_json::json!({
                "version": 1,
                "refs": {
                    "docker.io/library/alpine:3": {
                        "id": a.id.to_string(),
                        "manifest": a.manifest_digest.as_ref().unwrap().to_string(),
                    },
                    "local/b:dev": {"id": b.id.to_string(), "manifest": null},
                }
            })
        );
        // Names live in refs.json only, not in the record file.
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(root.image_file(&a.id)).unwrap()).unwrap();
        assert!(rec.get("repo_tags").is_none());
    }

    #[test]
    fn corrupt_or_unknown_refs_are_reported_not_reset() {
        let (_d, is, root) = store();
        let a = record("a", &[]);
        is.put(&a).unwrap();
        fs::write(root.refs_file(), b"{\"version\": 1, \"refs\": {").unwrap();
        let err = is.tag(&a.id, "x:1").unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "corrupt state file {}",
                root.refs_file().display()
            )),
            "{err}"
        );
        assert_eq!(
            fs::read(root.refs_file()).unwrap(),
            b"{\"version\": 1, \"refs\": {"
        );
        fs::write(root.refs_file(), b"{\"version\": 2, \"refs\": {}}").unwrap();
        let err = is.resolve("x:1").unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn gc_roots_cover_every_record() {
        let (_d, is, _root) = store();
        let a = record("a", &["base", "app"]);
        let b = record("b", &["base"]);
        is.put(&a).unwrap();
        is.put(&b).unwrap();
        let roots = is.gc_roots().unwrap();
        let mut blobs = BTreeSet::new();
        let mut chains = BTreeSet::new();
        for r in [&a, &b] {
            blobs.insert(r.id.clone());
            blobs.insert(r.manifest_digest.clone().unwrap());
            for l in &r.layers {
                blobs.insert(l.blob.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        assert_eq!(chains.len(), 2, "the shared base layer counts once");
        assert_eq!(roots.blobs, blobs);
        assert_eq!(roots.chain_ids, chains);
        is.remove(&a.id).unwrap();
        let roots = is.gc_roots().unwrap();
        assert_eq!(roots.chain_ids.len(), 1);
        assert!(!roots.blobs.contains(&a.id));
    }

    #[test]
    fn parses_docker_config_with_healthcheck() {
        let json = br#"{
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "created": "2024-05-01T10:00:00Z",
            "config": {
                "User": "app", "Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/init"],
                "Cmd": ["serve", "--port", "80"], "WorkingDir": "/srv",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                "Volumes": {"/data": {}}, "Labels": {"k": "v"}, "StopSignal": "SIGQUIT",
                "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000,
                                "Timeout": 0, "Retries": 3, "StartPeriod": 5000000000}
            },
            "rootfs": {"type": "layers", "diff_ids": [
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history": [{"created_by": "ADD rootfs"}, {"created_by": "ENV A=1", "empty_layer": true}]
        }"#;
        let p = ImageConfig::parse(json).unwrap();
        assert_eq!(
            (p.architecture.as_str(), p.os.as_str(), p.variant.as_deref()),
            ("arm64", "linux", Some("v8"))
        );
        assert_eq!(p.diff_ids, [Digest::of_bytes(b"")]);
        let c = p.config;
        assert_eq!(c.entrypoint, Some(vec!["/init".to_string()]));
        assert_eq!(c.cmd.as_ref().map(Vec::len), Some(3));
        assert_eq!(c.env, ["PATH=/bin", "A=1"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(c.labels["k"], "v");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.created.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(c.history.len(), 2);
        assert!(c.history[1].empty_layer);
        assert_eq!(
            c.healthcheck,
            Some(Healthcheck {
                test: vec!["CMD-SHELL".to_string(), "true".to_string()],
                interval: Some(Duration::from_secs(30)),
                timeout: None,
                start_period: Some(Duration::from_secs(5)),
                start_interval: None,
                retries: Some(3),
            })
        );

        let minimal =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let p = ImageConfig::parse(minimal).unwrap();
        assert_eq!(p.config, ImageConfig::default());

        let bad = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["md5:x"]}}"#;
        let err = ImageConfig::parse(bad).unwrap_err();
        assert!(
            err.to_string().contains(&Digest::of_bytes(bad).to_string()),
            "{err}"
        );
        assert!(ImageConfig::parse(b"[]").is_err());
    }
}
