//! `docker save`: images to a tarball `docker load` and `podman load` read.
//!
//! Both formats carry an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`); the
//! Docker format adds `manifest.json` and `repositories` pointing into the same blobs, as
//! Docker 25+ writes. Blobs go out as stored (layers possibly compressed). The output is
//! deterministic: entries sorted by path, owner 0:0, mtime 0.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::load::manifest_bytes;
use super::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Result,
    TransferError,
};
use crate::digest::Digest;
use crate::error::Error;
use crate::fsutil::FsError;
use crate::images::{ImageError, ImageRecord};
use crate::install::LayerBlob;
use crate::layout::Stores;
use crate::reference::Reference;

/// Which archive [`save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`: `manifest.json` + `repositories` and the OCI layout (Docker 25+).
    Docker,
    /// The OCI image layout alone (`podman save --format oci-archive`).
    Oci,
}

/// One image going out: its manifest and the names it is saved under.
struct Out {
    record: ImageRecord,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    manifest_type: String,
    /// Full names (tagged, no digest).
    names: Vec<Reference>,
}

/// Where an archive file's bytes come from.
enum Source {
    Blob(Digest),
    Bytes(Vec<u8>),
}

/// Writes the images named by `ids_or_names` (names as `docker save` takes them, ids, id
/// prefixes) to `writer` as a `format` archive. An image named by a tag is saved with that
/// tag; one named by id without names (as Docker does). The same images give the same bytes.
pub fn save<W: Write>(
    stores: &Stores,
    ids_or_names: &[String],
    writer: W,
    format: SaveFormat,
) -> Result<()> {
    let mut outs: Vec<Out> = Vec::new();
    for arg in ids_or_names {
        let (record, name) = resolve(stores, arg)?;
        let i = match outs.iter().position(|o| o.record.id == record.id) {
            Some(i) => i,
            None => {
                outs.push(out_of(stores, record)?);
                outs.len() - 1
            }
        };
        if let Some(n) = name
            && !outs[i].names.contains(&n)
        {
            outs[i].names.push(n);
        }
    }

    let mut files: BTreeMap<String, Source> = BTreeMap::new();
    let mut index_manifests = Vec::new();
    for o in &outs {
        files.insert(blob_path(&o.record.id), Source::Blob(o.record.id.clone()));
        for l in &o.record.layers {
            files.insert(blob_path(&l.blob), Source::Blob(l.blob.clone()));
        }
        files.insert(
            blob_path(&o.manifest_digest),
            Source::Bytes(o.manifest.clone()),
        );
        let descriptor = |annotations: Option<serde_json::Value>| {
            let mut d = serde_json::json!({
                "mediaType": o.manifest_type,
                "digest": o.manifest_digest.to_string(),
                "size": o.manifest.len(),
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if o.names.is_empty() {
            index_manifests.push(descriptor(None));
        }
        for n in &o.names {
            // Docker writes the tag as ref.name; podman reads ref.name as the image name.
            let ref_name = match format {
                SaveFormat::Docker => n.tag().unwrap_or_default().to_string(),
                SaveFormat::Oci => n.to_string(),
            };
            index_manifests.push(descriptor(Some(serde_json::json!({
                ANNOTATION_IMAGE_NAME: n.to_string(),
                ANNOTATION_REF_NAME: ref_name,
            }))));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_manifests,
    });
    files.insert("index.json".into(), Source::Bytes(to_json(&index)));
    files.insert(
        "oci-layout".into(),
        Source::Bytes(to_json(&serde_json::json!({"imageLayoutVersion": "1.0.0"}))),
    );
    if format == SaveFormat::Docker {
        let manifest: Vec<serde_json::Value> = outs
            .iter()
            .map(|o| {
                let tags: Vec<String> = o.names.iter().map(Reference::familiar_string).collect();
                serde_json::json!({
                    "Config": blob_path(&o.record.id),
                    "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { tags.into() },
                    "Layers": o.record.layers.iter().map(|l| blob_path(&l.blob)).collect::<Vec<_>>(),
                })
            })
            .collect();
        files.insert(
            "manifest.json".into(),
            Source::Bytes(to_json(&serde_json::Value::from(manifest))),
        );
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for o in &outs {
            for n in &o.names {
                if let Some(tag) = n.tag() {
                    repos
                        .entry(n.familiar())
                        .or_default()
                        .insert(tag.to_string(), o.record.id.hex().to_string());
                }
            }
        }
        files.insert(
            "repositories".into(),
            Source::Bytes(to_json(&serde_json::to_value(&repos).unwrap_or_default())),
        );
    }
    write_archive(stores, &files, writer)
}

/// `arg` as a name (normalised: `busybox` is `docker.io/library/busybox:latest`) first, then
/// as an id or id prefix.
fn resolve(stores: &Stores, arg: &str) -> Result<(ImageRecord, Option<Reference>)> {
    if let Ok(r) = Reference::parse(arg) {
        match stores.images.resolve(&r.to_string()) {
            Ok(rec) => {
                let name = (r.tag().is_some() && r.digest().is_none()).then_some(r);
                return Ok((rec, name));
            }
            Err(ImageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match stores.images.resolve(arg) {
        Ok(rec) => Ok((rec, None)),
        Err(ImageError::NotFound { .. }) => Err(ImageError::NotFound {
            reference: arg.to_string(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The image's stored manifest when it describes exactly its config and layers, else an OCI
/// manifest made from the record.
fn out_of(stores: &Stores, record: ImageRecord) -> Result<Out> {
    let stored = match &record.manifest_digest {
        Some(d) if stores.content.has(d) => {
            let bytes = stores.content.read(d)?;
            matching_manifest_type(&bytes, &record).map(|t| (bytes, d.clone(), t))
        }
        _ => None,
    };
    let (manifest, manifest_digest, manifest_type) = match stored {
        Some(s) => s,
        None => {
            let config_size = stores.content.size(&record.id)?;
            let layers: Vec<LayerBlob> = record
                .layers
                .iter()
                .map(|l| LayerBlob {
                    digest: l.blob.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                })
                .collect();
            let bytes = manifest_bytes(&record.id, config_size, &layers);
            let d = Digest::of_bytes(&bytes);
            (bytes, d, OCI_MANIFEST.to_string())
        }
    };
    Ok(Out {
        record,
        manifest,
        manifest_digest,
        manifest_type,
        names: Vec::new(),
    })
}

/// The manifest's media type if it is an image manifest for `record`'s config and layers.
fn matching_manifest_type(bytes: &[u8], record: &ImageRecord) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let config = v.get("config")?.get("digest")?.as_str()?;
    let layers: Vec<&str> = v
        .get("layers")?
        .as_array()?
        .iter()
        .map(|l| l.get("digest").and_then(|d| d.as_str()))
        .collect::<Option<_>>()?;
    let same = config == record.id.to_string()
        && layers.len() == record.layers.len()
        && layers
            .iter()
            .zip(&record.layers)
            .all(|(d, l)| *d == l.blob.to_string());
    if !same {
        return None;
    }
    let t = v.get("mediaType").and_then(|t| t.as_str());
    Some(match t {
        Some(DOCKER_MANIFEST) => DOCKER_MANIFEST.to_string(),
        _ => OCI_MANIFEST.to_string(),
    })
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn to_json(v: &serde_json::Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Writes `files` (sorted by path, with their directories) as a tar with fixed metadata.
fn write_archive<W: Write>(
    stores: &Stores,
    files: &BTreeMap<String, Source>,
    writer: W,
) -> Result<()> {
    let write_err = |entry: &str| {
        let entry = entry.to_string();
        move |source| TransferError::Write {
            entry: Some(entry),
            source,
        }
    };
    let mut tar = tar::Builder::new(writer);
    let mut dirs_done: Vec<String> = Vec::new();
    for (path, source) in files {
        // Parent directories first, each once (the map is sorted, so they come in order).
        let mut prefix = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            prefix.push_str(part);
            prefix.push('/');
            if !dirs_done.contains(&prefix) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, &prefix, io::empty())
                    .map_err(write_err(&prefix))?;
                dirs_done.push(prefix.clone());
            }
        }
        match source {
            Source::Bytes(b) => {
                let mut h = header(tar::EntryType::Regular, 0o644, b.len() as u64);
                tar.append_data(&mut h, path, b.as_slice())
                    .map_err(write_err(path))?;
            }
            Source::Blob(d) => {
                let file = stores.content.open(d)?;
                let blob_path = stores.content.path(d);
                let size = file
                    .metadata()
                    .map_err(|e| Error::from(FsError::io("stat", &blob_path, e)))?
                    .len();
                let mut h = header(tar::EntryType::Regular, 0o644, size);
                // Exactly `size` bytes, whatever happens to the file meanwhile.
                let mut body = file.take(size);
                tar.append_data(&mut h, path, &mut body)
                    .map_err(write_err(path))?;
                if body.limit() != 0 {
                    return Err(TransferError::Write {
                        entry: Some(path.clone()),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("blob {} shrank while being written", blob_path.display()),
                        ),
                    });
                }
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| TransferError::Write {
            entry: None,
            source,
        })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}
