//! Installing an image whose blobs are already in the content store: each layer unpacked once
//! into the layer store (keyed by chainID, shared by every image that has it), the image
//! record written, its names set. Pull, load and import all end here.

use std::io::BufReader;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::{ImageConfig, ImageRecord, LayerRef};
use crate::layers::LayerStore;
use crate::layout::Stores;
use crate::unpack::{UnpackOptions, unpack_layer};

/// One layer blob of an image, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// What an image is made of: its config and layer blobs (all in the content store).
#[derive(Debug, Clone)]
pub struct ImageBlobs {
    /// The platform manifest, when the image came with one.
    pub manifest_digest: Option<Digest>,
    pub config_digest: Digest,
    pub layers: Vec<LayerBlob>,
}

/// Unpacks the layers (in parallel, each at most once across all images), writes the record
/// and gives it `names` (full reference strings; a name moves off any other image).
pub fn install(stores: &Stores, blobs: &ImageBlobs, names: &[String]) -> Result<ImageRecord> {
    let config_bytes = stores.content.read(&blobs.config_digest)?;
    let parsed = ImageConfig::parse(&config_bytes)?;
    if parsed.diff_ids.len() != blobs.layers.len() {
        return Err(Error::Invalid(format!(
            "image {} lists {} layers but its config has {} diff_ids",
            blobs.config_digest,
            blobs.layers.len(),
            parsed.diff_ids.len()
        )));
    }
    // chainIDs follow from the diffIDs alone, so every layer can be unpacked at once.
    let mut chain_ids: Vec<Digest> = Vec::with_capacity(parsed.diff_ids.len());
    for diff_id in &parsed.diff_ids {
        let chain = LayerStore::chain_id(chain_ids.last(), diff_id);
        chain_ids.push(chain);
    }
    let metas = std::thread::scope(|s| {
        let handles: Vec<_> = blobs
            .layers
            .iter()
            .enumerate()
            .map(|(i, blob)| {
                let parent = i.checked_sub(1).map(|p| &chain_ids[p]);
                let (chain, diff_id) = (&chain_ids[i], &parsed.diff_ids[i]);
                s.spawn(move || -> Result<crate::layers::LayerMeta> {
                    Ok(stores
                        .layers
                        .create(chain, parent, diff_id, &blob.digest, |dir| {
                            let file = stores.content.open(&blob.digest)?;
                            let opts = UnpackOptions {
                                expected_diff_id: Some(diff_id.clone()),
                                ..UnpackOptions::default()
                            };
                            let u =
                                unpack_layer(BufReader::with_capacity(1 << 20, file), dir, &opts)?;
                            Ok::<_, Error>((u.diff_id, u.size))
                        })?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Invalid("a layer unpack thread panicked".into()))
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let layers = blobs
        .layers
        .iter()
        .zip(metas.iter())
        .map(|(blob, meta)| LayerRef {
            diff_id: meta.diff_id.clone(),
            chain_id: meta.chain_id.clone(),
            blob: blob.digest.clone(),
            media_type: blob.media_type.clone(),
            size: blob.size,
        })
        .collect();
    let created = serde_json::from_slice::<serde_json::Value>(&config_bytes)
        .ok()
        .and_then(|v| {
            v.get("created")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        });
    let record = ImageRecord {
        id: blobs.config_digest.clone(),
        manifest_digest: blobs.manifest_digest.clone(),
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        created,
        architecture: parsed.architecture,
        os: parsed.os,
        variant: parsed.variant,
        config: parsed.config,
        layers,
        size: metas.iter().map(|m| m.size).sum(),
    };
    stores.images.put(&record)?;
    for name in names {
        stores.images.tag(&record.id, name)?;
    }
    Ok(stores.images.get(&record.id)?.unwrap_or(record))
}
