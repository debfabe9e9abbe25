//! Pull: registry → content store → layer store → image store.
//!
//! The manifest and config are verified by the registry client; every layer blob is downloaded
//! to an ingest file (at most `concurrency` at a time), its size and sha256 checked, and only then
//! renamed into the content store — a wrong or short blob leaves the store as it was. A blob
//! another process is downloading is waited for (lock per digest) and downloaded once. Layers are
//! then unpacked (each once, by chainID) and the image is recorded and named.

use std::path::PathBuf;

use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use crate::content::Ingest;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::ImageRecord;
use crate::install::{self, ImageBlobs, LayerBlob};
use crate::layout::Stores;
use crate::reference::Reference;
use crate::registry::{DEFAULT_CONCURRENT_DOWNLOADS, Platform, Registry};

/// Progress of the layer downloads: (layer index, its blob digest, bytes so far, total).
pub type Progress<'a> = &'a (dyn Fn(usize, &Digest, u64, u64) + Sync);

/// How to pull.
pub struct PullOptions<'a> {
    pub platform: Platform,
    pub auth: RegistryAuth,
    /// Layers downloaded at once (Docker's default is 3).
    pub concurrency: usize,
    pub progress: Option<Progress<'a>>,
}

impl Default for PullOptions<'_> {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            auth: RegistryAuth::Anonymous,
            concurrency: DEFAULT_CONCURRENT_DOWNLOADS,
            progress: None,
        }
    }
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub image: ImageRecord,
    /// Layer blobs that were downloaded (the others were already in the store).
    pub downloaded: usize,
    /// The digest Docker prints as `Digest:` (the index's when the reference named one).
    pub repo_digest: Digest,
}

/// Pulls `reference` into the stores. Must run on a multi-threaded tokio runtime (the blocking
/// store work runs in `block_in_place`).
pub async fn pull(
    stores: &Stores,
    registry: &Registry,
    reference: &Reference,
    opts: &PullOptions<'_>,
) -> Result<Pulled> {
    let oci_ref: oci_client::Reference = reference.into();
    // Held until the image record protects what this pull stores (see layout::GC_LOCK_FILE).
    let _guard = tokio::task::block_in_place(|| stores.content_guard())?;
    let resolved = registry
        .resolve(&oci_ref, &opts.platform, &opts.auth)
        .await?;
    let blocking = |f: &mut dyn FnMut() -> Result<()>| tokio::task::block_in_place(f);

    // Manifest and config: small, verified by the registry client.
    blocking(&mut || {
        put_verified(stores, &resolved.manifest_digest, &resolved.manifest_bytes)?;
        put_verified(stores, &resolved.config_digest, &resolved.config_bytes)
    })?;

    // Layer blobs not in the store yet, each under its digest's lock.
    let mut wanted: Vec<(usize, OciDescriptor, Digest)> = Vec::new();
    for (i, desc) in resolved.layers.iter().enumerate() {
        let digest = Digest::parse(&desc.digest)?;
        if !stores.content.has(&digest) && !wanted.iter().any(|(_, _, d)| *d == digest) {
            wanted.push((i, desc.clone(), digest));
        }
    }
    // Locks are taken in digest order (two pulls never wait on each other crosswise) and
    // without blocking the thread (two pulls may share one task).
    wanted.sort_by(|a, b| a.2.cmp(&b.2));
    let mut locks = Vec::with_capacity(wanted.len());
    let mut ingests: Vec<(usize, OciDescriptor, Digest, Ingest)> = Vec::new();
    for (i, desc, digest) in wanted {
        let lock = loop {
            match stores.content.try_lock(&digest)? {
                Some(lock) => break lock,
                None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        locks.push(lock);
        // Another process may have finished it while we waited for the lock.
        if stores.content.has(&digest) {
            continue;
        }
        let ingest = stores.content.ingest()?;
        ingests.push((i, desc, digest, ingest));
    }
    let jobs: Vec<(OciDescriptor, PathBuf)> = ingests
        .iter()
        .map(|(_, d, _, ing)| (d.clone(), ing.path.clone()))
        .collect();
    let indexes: Vec<(usize, Digest, u64)> = ingests
        .iter()
        .map(|(i, d, digest, _)| (*i, digest.clone(), u64::try_from(d.size).unwrap_or(0)))
        .collect();
    let report = |job: usize, bytes: u64| {
        if let (Some(p), Some((i, digest, total))) = (opts.progress, indexes.get(job)) {
            p(*i, digest, bytes, *total);
        }
    };
    let fetched = match registry
        .fetch_all(&oci_ref, &jobs, opts.concurrency.max(1), &report)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            for (_, _, _, ing) in &ingests {
                let _ = std::fs::remove_file(&ing.path);
            }
            return Err(e.into());
        }
    };
    let downloaded = fetched.len();
    blocking(&mut || {
        for ((_, desc, digest, ing), (computed, size)) in ingests.iter().zip(fetched.iter()) {
            let expected_size = u64::try_from(desc.size).ok();
            stores
                .content
                .commit(&ing.path, digest, expected_size, computed, *size)?;
        }
        Ok(())
    })?;
    drop(locks);

    let blobs = ImageBlobs {
        manifest_digest: Some(resolved.manifest_digest.clone()),
        config_digest: resolved.config_digest.clone(),
        layers: resolved
            .layers
            .iter()
            .map(|d| {
                Ok(LayerBlob {
                    digest: Digest::parse(&d.digest)?,
                    media_type: d.media_type.clone(),
                    size: u64::try_from(d.size).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let repo_digest = resolved
        .index_digest
        .clone()
        .unwrap_or_else(|| resolved.manifest_digest.clone());
    let mut names = vec![format!("{}@{}", reference.name(), repo_digest)];
    if reference.tag().is_some() {
        names.insert(0, reference.to_string());
    }
    let image = tokio::task::block_in_place(|| install::install(stores, &blobs, &names))?;
    Ok(Pulled {
        image,
        downloaded,
        repo_digest,
    })
}

/// Stores small verified bytes (a manifest or config) under their digest.
fn put_verified(stores: &Stores, digest: &Digest, bytes: &[u8]) -> Result<()> {
    if stores.content.has(digest) {
        return Ok(());
    }
    let got = stores.content.put_bytes(bytes)?;
    if got != *digest {
        return Err(Error::Invalid(format!(
            "content {got} was stored for {digest}"
        )));
    }
    Ok(())
}
