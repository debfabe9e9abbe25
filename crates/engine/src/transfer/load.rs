//! `docker load`: a `docker save` archive (`manifest.json`; layers as `<v1 id>/layer.tar` or,
//! since Docker 25, `blobs/sha256/<hex>`) or an OCI image layout archive (`oci-layout`,
//! `index.json`, `blobs/`), plain, gzip or zstd.
//!
//! The archive is read once, front to back. Small files stay in memory; larger ones are
//! streamed into the content store under the digest computed while writing (a file under
//! `blobs/sha256/<hex>` must hash to `<hex>`). Entry names are only keys of that table: no
//! entry is ever written to disk under its own name, and names with `..` or a leading `/`
//! are refused. Only then are the metadata files read, every image checked, and installed.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};

use serde::Deserialize;

use super::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Added, Compression, DOCKER_MANIFEST_LIST,
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Result, TransferError, decompress, install_tracked,
    read_head,
};
use crate::digest::{Digest, DigestWriter};
use crate::error::Error;
use crate::fsutil::FsError;
use crate::images::{ImageConfig, ImageRecord};
use crate::install::{ImageBlobs, LayerBlob};
use crate::layout::Stores;
use crate::reference::Reference;
use crate::registry::Platform;

/// Files up to this size are kept in memory while the archive is read.
const IN_MEMORY_MAX: u64 = 1 << 20;
/// Most bytes kept in memory in all; files after that go to the content store.
const IN_MEMORY_TOTAL: u64 = 64 << 20;
/// Largest metadata file (manifest, index, config) that is parsed.
const METADATA_MAX: u64 = 16 << 20;
/// Most symlinks followed to resolve one archive path.
const MAX_LINK_HOPS: usize = 16;
/// Deepest nesting of indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const BLOBS_PREFIX: &str = "blobs/sha256/";

/// Loads every image of the archive `reader` into the stores, names them (normalised:
/// `busybox:1` is `docker.io/library/busybox:1`) and returns their records in archive order.
///
/// A `docker save` archive is read through its `manifest.json` (Docker's loader does the
/// same when an archive has both); an OCI layout archive through `index.json`, following a
/// nested index to this host's platform, with names from `io.containerd.image.name` or a
/// full-name `org.opencontainers.image.ref.name` (a bare tag there names nothing).
///
/// Every image is checked before any is installed (files present, digests and sizes, layer
/// count); the layers' diff_ids are verified while installing. On failure, images installed
/// before the failing one stay (as with `docker load`); blobs and layers this call added and
/// nothing references are removed.
pub fn load<R: Read>(stores: &Stores, reader: R) -> Result<Vec<ImageRecord>> {
    // Held until the image records protect what this load stores (see layout::GC_LOCK_FILE).
    let _guard = stores.content_guard()?;
    let mut added = Added::default();
    let result = load_inner(stores, reader, &mut added);
    added.remove_unreferenced(stores);
    result
}

fn load_inner<R: Read>(stores: &Stores, reader: R, added: &mut Added) -> Result<Vec<ImageRecord>> {
    let files = Files::read(stores, reader, added)?;
    let plan = if files.exists(MANIFEST_JSON) {
        docker_images(stores, &files, added)?
    } else if files.exists(INDEX_JSON) && files.exists(OCI_LAYOUT) {
        oci_images(stores, &files, added)?
    } else {
        return Err(TransferError::UnknownFormat);
    };
    // Check everything before installing anything.
    let mut checked = Vec::with_capacity(plan.len());
    for image in plan {
        let diff_ids = check_image(stores, &image)?;
        checked.push((image, diff_ids));
    }
    let mut records = Vec::with_capacity(checked.len());
    for (image, diff_ids) in checked {
        records.push(install_tracked(
            stores,
            &image.blobs,
            &diff_ids,
            &image.names,
            added,
        )?);
    }
    Ok(records)
}

/// One image found in the archive, its blobs in the content store.
#[derive(Debug)]
struct Planned {
    blobs: ImageBlobs,
    /// Full names.
    names: Vec<String>,
    /// The archive path of each layer (for messages).
    layer_paths: Vec<String>,
}

/// Config parses, layer count matches, and uncompressed layers hash to their diff_id already
/// (compressed ones are checked when unpacked).
fn check_image(stores: &Stores, image: &Planned) -> Result<Vec<Digest>> {
    let size = stores.content.size(&image.blobs.config_digest)?;
    if size > METADATA_MAX {
        return Err(TransferError::Invalid {
            what: format!("image config {}", image.blobs.config_digest),
            reason: format!("{size} bytes is too large for an image config"),
        });
    }
    let config = stores.content.read(&image.blobs.config_digest)?;
    let parsed = ImageConfig::parse(&config)?;
    if parsed.diff_ids.len() != image.blobs.layers.len() {
        return Err(TransferError::Invalid {
            what: format!("image {}", image.blobs.config_digest),
            reason: format!(
                "{} layers but the config lists {} diff_ids",
                image.blobs.layers.len(),
                parsed.diff_ids.len()
            ),
        });
    }
    for ((layer, diff_id), path) in image
        .blobs
        .layers
        .iter()
        .zip(&parsed.diff_ids)
        .zip(&image.layer_paths)
    {
        if compression_of(stores, &layer.digest)? == Compression::None && layer.digest != *diff_id {
            return Err(TransferError::BlobMismatch {
                path: path.clone(),
                what: "diff id",
                expected: diff_id.to_string(),
                actual: layer.digest.to_string(),
            });
        }
    }
    Ok(parsed.diff_ids)
}

fn compression_of(stores: &Stores, digest: &Digest) -> Result<Compression> {
    let mut f = stores.content.open(digest)?;
    let head = read_head(&mut f)
        .map_err(|e| Error::from(FsError::io("read", stores.content.path(digest), e)))?;
    Ok(Compression::detect(&head))
}

// ---------------------------------------------------------------------------------------
// Reading the archive

/// A regular file of the archive.
#[derive(Debug)]
enum Stored {
    Memory(Vec<u8>),
    Blob { digest: Digest, size: u64 },
}

/// The archive's files by cleaned path, and its links.
#[derive(Debug, Default)]
struct Files {
    files: BTreeMap<String, Stored>,
    /// Symlinks and hardlinks: path → cleaned archive path of the target.
    links: BTreeMap<String, String>,
}

impl Files {
    fn read<R: Read>(stores: &Stores, reader: R, added: &mut Added) -> Result<Files> {
        let read_err = |entry: Option<String>| {
            move |source| TransferError::Read {
                entry: entry.clone(),
                source,
            }
        };
        let stream = decompress(reader).map_err(read_err(None))?;
        let mut archive = tar::Archive::new(stream);
        let mut out = Files::default();
        let mut in_memory = 0u64;
        for entry in archive.entries().map_err(read_err(None))? {
            let mut entry = entry.map_err(read_err(None))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let Some(path) = clean(&raw, "", &raw, false)? else {
                continue; // the archive root itself
            };
            if out.files.contains_key(&path) || out.links.contains_key(&path) {
                if kind.is_dir() {
                    continue;
                }
                return Err(TransferError::Hostile {
                    entry: raw,
                    reason: "the archive has this entry twice",
                });
            }
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().size().map_err(read_err(Some(raw.clone())))?;
                    let stored = if size <= IN_MEMORY_MAX && in_memory + size <= IN_MEMORY_TOTAL {
                        in_memory += size;
                        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                        entry
                            .read_to_end(&mut buf)
                            .map_err(read_err(Some(raw.clone())))?;
                        Stored::Memory(buf)
                    } else {
                        let (digest, size) = ingest(stores, &mut entry, &raw, added)?;
                        Stored::Blob { digest, size }
                    };
                    check_blob_name(&path, &stored)?;
                    out.files.insert(path, stored);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    // A symlink is relative to its directory; a hardlink names an archive path.
                    let base = if kind == tar::EntryType::Symlink {
                        path.rsplit_once('/').map_or("", |(dir, _)| dir)
                    } else {
                        ""
                    };
                    if target.starts_with('/') {
                        return Err(TransferError::Hostile {
                            entry: raw,
                            reason: "link to an absolute path",
                        });
                    }
                    let Some(target) = clean(&target, base, &raw, true)? else {
                        return Err(TransferError::Hostile {
                            entry: raw,
                            reason: "link to the archive root",
                        });
                    };
                    out.links.insert(path, target);
                }
                // Directories, PAX globals and anything else carry nothing load needs.
                _ => {}
            }
        }
        Ok(out)
    }

    /// Follows links to the file at `path`.
    fn resolve<'a>(&'a self, path: &str) -> Option<&'a Stored> {
        let mut p = path;
        for _ in 0..=MAX_LINK_HOPS {
            if let Some(f) = self.files.get(p) {
                return Some(f);
            }
            p = self.links.get(p)?;
        }
        None
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }

    /// The file's bytes (metadata: at most [`METADATA_MAX`]).
    fn bytes(&self, stores: &Stores, path: &str, by: &str) -> Result<Vec<u8>> {
        match self.resolve(path) {
            None => Err(missing(path, by)),
            Some(Stored::Memory(b)) => Ok(b.clone()),
            Some(Stored::Blob { digest, size }) => {
                if *size > METADATA_MAX {
                    return Err(TransferError::Invalid {
                        what: path.to_string(),
                        reason: format!("{size} bytes is too large for a metadata file"),
                    });
                }
                Ok(stores.content.read(digest)?)
            }
        }
    }

    /// The file as a blob of the content store (committing it if it is still in memory).
    fn blob(
        &self,
        stores: &Stores,
        path: &str,
        by: &str,
        added: &mut Added,
    ) -> Result<(Digest, u64)> {
        match self.resolve(path) {
            None => Err(missing(path, by)),
            Some(Stored::Blob { digest, size }) => Ok((digest.clone(), *size)),
            Some(Stored::Memory(b)) => {
                let digest = Digest::of_bytes(b);
                if !stores.content.has(&digest) {
                    stores.content.put_bytes(b)?;
                    added.blobs.insert(digest.clone());
                }
                Ok((digest, b.len() as u64))
            }
        }
    }
}

fn missing(path: &str, by: &str) -> TransferError {
    TransferError::Missing {
        path: path.to_string(),
        by: by.to_string(),
    }
}

/// `raw` as a clean relative archive path below `base` (`a/./b/` → `a/b`); `None` for the
/// root itself. Absolute names are refused, and so is `..`, except in a link target
/// (`link_target`) where it may climb inside the archive but not out of it.
fn clean(raw: &str, base: &str, entry: &str, link_target: bool) -> Result<Option<String>> {
    let hostile = |reason| TransferError::Hostile {
        entry: entry.to_string(),
        reason,
    };
    if raw.starts_with('/') {
        return Err(hostile("absolute path"));
    }
    if raw.contains('\0') {
        return Err(hostile("nul byte in the name"));
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." if !link_target => return Err(hostile("path with \"..\"")),
            ".." => {
                if parts.pop().is_none() {
                    return Err(hostile("link target outside the archive"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Streams an entry into the content store under its computed digest.
fn ingest(
    stores: &Stores,
    entry: &mut impl Read,
    raw: &str,
    added: &mut Added,
) -> Result<(Digest, u64)> {
    let ing = stores.content.ingest()?;
    let path = ing.path.clone();
    let copied = (|| {
        let mut w = DigestWriter::new(BufWriter::with_capacity(1 << 20, ing.file));
        std::io::copy(entry, &mut w)?;
        let (digest, size, buf) = w.finish();
        buf.into_inner().map_err(|e| e.into_error())?.flush()?;
        Ok::<_, std::io::Error>((digest, size))
    })();
    let (digest, size) = match copied {
        Ok(v) => v,
        Err(source) => {
            let _ = std::fs::remove_file(&path);
            return Err(TransferError::Read {
                entry: Some(raw.to_string()),
                source,
            });
        }
    };
    let new = !stores.content.has(&digest);
    stores
        .content
        .commit(&path, &digest, Some(size), &digest, size)?;
    if new {
        added.blobs.insert(digest.clone());
    }
    Ok((digest, size))
}

/// A file named `blobs/sha256/<hex>` must hash to `<hex>`.
fn check_blob_name(path: &str, stored: &Stored) -> Result<()> {
    let Some(hex) = path.strip_prefix(BLOBS_PREFIX) else {
        return Ok(());
    };
    let Ok(named) = Digest::from_hex(hex) else {
        return Ok(()); // not a blob name (Docker writes only sha256 blobs)
    };
    let actual = match stored {
        Stored::Memory(b) => Digest::of_bytes(b),
        Stored::Blob { digest, .. } => digest.clone(),
    };
    if actual != named {
        return Err(TransferError::BlobMismatch {
            path: path.to_string(),
            what: "digest",
            expected: named.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// docker save archives

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_images(stores: &Stores, files: &Files, added: &mut Added) -> Result<Vec<Planned>> {
    let bytes = files.bytes(stores, MANIFEST_JSON, "the archive")?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).map_err(|e| TransferError::Invalid {
            what: MANIFEST_JSON.to_string(),
            reason: e.to_string(),
        })?;
    // Docker 25+ archives also hold the OCI layout with the image's real manifest: use it
    // when it describes the same config and layers, so the manifest digest survives.
    let oci: Vec<Planned> = if files.exists(INDEX_JSON) && files.exists(OCI_LAYOUT) {
        oci_images(stores, files, added)?
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let by = format!("{MANIFEST_JSON} entry {i}");
        let config_path =
            clean(&e.config, "", &e.config, false)?.ok_or_else(|| missing("", &by))?;
        let (config_digest, config_size) = files.blob(stores, &config_path, &by, added)?;
        let mut layers = Vec::with_capacity(e.layers.len());
        let mut layer_paths = Vec::with_capacity(e.layers.len());
        for l in &e.layers {
            let path = clean(l, "", l, false)?.ok_or_else(|| missing("", &by))?;
            let (digest, size) = files.blob(stores, &path, &by, added)?;
            layers.push(LayerBlob {
                media_type: compression_of(stores, &digest)?
                    .oci_layer_type()
                    .to_string(),
                digest,
                size,
            });
            layer_paths.push(path);
        }
        let mut names = Vec::new();
        for tag in e.repo_tags.iter().flatten() {
            let name = Reference::parse(tag)?.to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let same = |p: &&Planned| {
            p.blobs.config_digest == config_digest
                && p.blobs
                    .layers
                    .iter()
                    .map(|l| &l.digest)
                    .eq(layers.iter().map(|l| &l.digest))
        };
        let manifest_digest = match oci.iter().find(same) {
            Some(p) => {
                layers = p.blobs.layers.clone();
                p.blobs.manifest_digest.clone()
            }
            None => Some(synthesize_manifest(
                stores,
                &config_digest,
                config_size,
                &layers,
                added,
            )?),
        };
        out.push(Planned {
            blobs: ImageBlobs {
                manifest_digest,
                config_digest,
                layers,
            },
            names,
            layer_paths,
        });
    }
    Ok(out)
}

/// Stores an OCI manifest for an image that came without one (so that it saves and pushes
/// like any other) and returns its digest.
pub(crate) fn synthesize_manifest(
    stores: &Stores,
    config_digest: &Digest,
    config_size: u64,
    layers: &[LayerBlob],
    added: &mut Added,
) -> Result<Digest> {
    let bytes = manifest_bytes(config_digest, config_size, layers);
    let digest = Digest::of_bytes(&bytes);
    if !stores.content.has(&digest) {
        stores.content.put_bytes(&bytes)?;
        added.blobs.insert(digest.clone());
    }
    Ok(digest)
}

/// An OCI image manifest for this config and these layers.
pub(crate) fn manifest_bytes(
    config_digest: &Digest,
    config_size: u64,
    layers: &[LayerBlob],
) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_size,
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    // Serialising a `Value` built here cannot fail.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// OCI image layout archives

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Debug, Clone, Deserialize)]
struct PlatformJson {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct ManifestJson {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciLayoutJson {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

fn oci_images(stores: &Stores, files: &Files, added: &mut Added) -> Result<Vec<Planned>> {
    let layout: OciLayoutJson =
        parse_json(&files.bytes(stores, OCI_LAYOUT, "the archive")?, OCI_LAYOUT)?;
    if layout.image_layout_version != "1.0.0" {
        return Err(TransferError::Invalid {
            what: OCI_LAYOUT.to_string(),
            reason: format!(
                "image layout version {:?} (berth reads 1.0.0)",
                layout.image_layout_version
            ),
        });
    }
    let index: IndexJson =
        parse_json(&files.bytes(stores, INDEX_JSON, "the archive")?, INDEX_JSON)?;
    let mut out: Vec<Planned> = Vec::new();
    for desc in index.manifests.unwrap_or_default() {
        let names = names_of(&desc)?;
        let image = image_of(stores, files, &desc, INDEX_JSON, 0, added)?;
        // One image listed once per name: merge.
        match out
            .iter_mut()
            .find(|p| p.blobs.manifest_digest == image.blobs.manifest_digest)
        {
            Some(p) => {
                for n in names {
                    if !p.names.contains(&n) {
                        p.names.push(n);
                    }
                }
            }
            None => out.push(Planned { names, ..image }),
        }
    }
    Ok(out)
}

/// Names of a top-level descriptor: containerd's full name, else a full-name ref.name (a
/// bare tag, without `/` or `:`, names nothing on its own).
fn names_of(desc: &Descriptor) -> Result<Vec<String>> {
    let name = match (
        desc.annotations.get(ANNOTATION_IMAGE_NAME),
        desc.annotations.get(ANNOTATION_REF_NAME),
    ) {
        (Some(full), _) => Some(full),
        (None, Some(r)) if r.contains(['/', ':']) => Some(r),
        _ => None,
    };
    match name {
        None => Ok(Vec::new()),
        Some(n) => {
            let r = Reference::parse(n)?;
            // A name pinned to a digest is not a tag; it names nothing.
            Ok(if r.tag().is_some() && r.digest().is_none() {
                vec![r.to_string()]
            } else {
                Vec::new()
            })
        }
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| TransferError::Invalid {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// The blob a descriptor points at, its digest and size checked; `None` when absent.
fn described(
    stores: &Stores,
    files: &Files,
    desc: &Descriptor,
    by: &str,
    added: &mut Added,
) -> Result<Option<(String, Digest)>> {
    let digest = Digest::parse(&desc.digest).map_err(|e| TransferError::Invalid {
        what: by.to_string(),
        reason: e.to_string(),
    })?;
    let path = format!("{BLOBS_PREFIX}{}", digest.hex());
    if !files.exists(&path) {
        return Ok(None);
    }
    // The name was checked against the content when read.
    let (_, size) = files.blob(stores, &path, by, added)?;
    if size != desc.size {
        return Err(TransferError::BlobMismatch {
            path,
            what: "size",
            expected: desc.size.to_string(),
            actual: size.to_string(),
        });
    }
    Ok(Some((path, digest)))
}

/// The image a descriptor (manifest, or index to choose from) leads to.
fn image_of(
    stores: &Stores,
    files: &Files,
    desc: &Descriptor,
    by: &str,
    depth: usize,
    added: &mut Added,
) -> Result<Planned> {
    let (path, digest) = described(stores, files, desc, by, added)?
        .ok_or_else(|| missing(&format!("{BLOBS_PREFIX}{}", hex_of(&desc.digest)), by))?;
    let bytes = files.bytes(stores, &path, by)?;
    let what = digest.to_string();
    let kind = if desc.media_type.is_empty() {
        // Untyped descriptor: the document says what it is.
        let probe: IndexJson = parse_json(&bytes, &what)?;
        if probe.manifests.is_some() {
            OCI_INDEX.to_string()
        } else {
            probe.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string())
        }
    } else {
        desc.media_type.clone()
    };
    if kind == OCI_INDEX || kind == DOCKER_MANIFEST_LIST {
        if depth >= MAX_INDEX_DEPTH {
            return Err(TransferError::Invalid {
                what,
                reason: "indexes nested too deep".to_string(),
            });
        }
        let index: IndexJson = parse_json(&bytes, &what)?;
        let host = Platform::host();
        for child in index.manifests.unwrap_or_default() {
            let Some(p) = &child.platform else { continue };
            let matches = p.os == host.os
                && p.architecture == host.architecture
                && (host.variant.is_none() || p.variant == host.variant);
            let present = files.exists(&format!("{BLOBS_PREFIX}{}", hex_of(&child.digest)));
            if matches && present {
                return image_of(stores, files, &child, &what, depth + 1, added);
            }
        }
        return Err(TransferError::NoPlatform {
            index: digest,
            platform: host.to_string(),
        });
    }
    let manifest: ManifestJson = parse_json(&bytes, &what)?;
    if let Some(t) = &manifest.media_type
        && (t == OCI_INDEX || t == DOCKER_MANIFEST_LIST)
    {
        return Err(TransferError::Invalid {
            what,
            reason: format!("described as a manifest but is {t}"),
        });
    }
    let (_, config_digest) =
        described(stores, files, &manifest.config, &what, added)?.ok_or_else(|| {
            missing(
                &format!("{BLOBS_PREFIX}{}", hex_of(&manifest.config.digest)),
                &what,
            )
        })?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut layer_paths = Vec::with_capacity(manifest.layers.len());
    for l in &manifest.layers {
        let (lpath, ldigest) = described(stores, files, l, &what, added)?
            .ok_or_else(|| missing(&format!("{BLOBS_PREFIX}{}", hex_of(&l.digest)), &what))?;
        layers.push(LayerBlob {
            digest: ldigest,
            media_type: l.media_type.clone(),
            size: l.size,
        });
        layer_paths.push(lpath);
    }
    Ok(Planned {
        blobs: ImageBlobs {
            manifest_digest: Some(digest),
            config_digest,
            layers,
        },
        names: Vec::new(),
        layer_paths,
    })
}

/// The hex part of a digest string, for messages about a missing blob.
fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_and_refuses_escapes() {
        assert_eq!(
            clean("./a//b/./c/", "", "x", false).unwrap().as_deref(),
            Some("a/b/c")
        );
        assert_eq!(clean("./", "", "x", false).unwrap(), None);
        assert_eq!(
            clean("layer.tar", "abc", "x", true).unwrap().as_deref(),
            Some("abc/layer.tar")
        );
        // Old `docker save` links a repeated layer as `../<id>/layer.tar`.
        assert_eq!(
            clean("../def/layer.tar", "abc", "x", true)
                .unwrap()
                .as_deref(),
            Some("def/layer.tar")
        );
        assert!(clean("../../x", "abc", "x", true).is_err());
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/..", "a\0b"] {
            let err = clean(bad, "", bad, false).unwrap_err();
            assert!(matches!(err, TransferError::Hostile { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("refused"), "{err}");
        }
    }

    #[test]
    fn names_come_from_containerd_or_full_ref_names() {
        let desc = |ann: &[(&str, &str)]| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of_bytes(b"m").to_string(),
            size: 1,
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            platform: None,
        };
        assert_eq!(
            names_of(&desc(&[
                (ANNOTATION_IMAGE_NAME, "docker.io/library/busybox:1"),
                (ANNOTATION_REF_NAME, "1")
            ]))
            .unwrap(),
            ["docker.io/library/busybox:1"]
        );
        assert_eq!(
            names_of(&desc(&[(ANNOTATION_REF_NAME, "busybox:1")])).unwrap(),
            ["docker.io/library/busybox:1"]
        );
        assert!(
            names_of(&desc(&[(ANNOTATION_REF_NAME, "latest")]))
                .unwrap()
                .is_empty()
        );
        assert!(names_of(&desc(&[])).unwrap().is_empty());
        assert!(names_of(&desc(&[(ANNOTATION_REF_NAME, "Bad/Name:1")])).is_err());
    }
}
