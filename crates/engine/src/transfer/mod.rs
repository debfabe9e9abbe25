//! Moving images in and out as files: [`load`] (`docker load`: a `docker save` archive or an
//! OCI image layout archive), [`save`] (`docker save`: Docker's archive with an OCI layout in
//! it, or the OCI layout alone) and [`import`] (`docker import`: a rootfs tarball as a
//! one-layer image, with `--change` instructions).
//!
//! Everything read from an archive goes into the content store (verified), never elsewhere on
//! disk, and every image ends in [`install`](crate::install::install), as a pull does.

mod changes;
mod import;
mod load;
mod save;

use std::collections::BTreeSet;
use std::io::{self, Read};

use crate::content::ContentError;
use crate::digest::Digest;
use crate::error::Error;
use crate::images::ImageError;
use crate::layout::Stores;
use crate::reference::ReferenceError;

pub use changes::apply_changes;
pub use import::import;
pub use load::load;
pub use save::{SaveFormat, save};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Annotation holding the full image name (containerd, Docker 25+).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation holding the reference name (a tag, or a full name).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a load, save or import failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The archive (or rootfs tarball) could not be read, decompressed or parsed as tar.
    #[error("reading archive{}: {source}", at_entry(entry.as_deref()))]
    Read {
        /// The entry being read, if the failure was inside one.
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    /// An archive entry whose name or link target is refused outright.
    #[error("archive entry {entry:?} refused: {reason}")]
    Hostile {
        /// The entry's name as the archive gives it.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The archive has neither `manifest.json` nor `oci-layout` + `index.json`.
    #[error(
        "not an image archive: no manifest.json (docker save) nor oci-layout and index.json (OCI layout)"
    )]
    UnknownFormat,
    /// A file the archive's own metadata points at is not in it.
    #[error("archive file {path:?} (named by {by}) is missing")]
    Missing {
        /// The path inside the archive.
        path: String,
        /// Which metadata file or manifest named it.
        by: String,
    },
    /// A metadata file of the archive does not parse or is inconsistent.
    #[error("invalid {what} in archive: {reason}")]
    Invalid {
        /// `manifest.json`, `index.json`, a manifest digest, …
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob's content does not match the digest or size it is stored or described under.
    #[error("archive blob {path:?} does not match its {what}: expected {expected}, got {actual}")]
    BlobMismatch {
        /// The path inside the archive.
        path: String,
        /// `digest`, `size` or `diff id`.
        what: &'static str,
        /// What the name or descriptor says.
        expected: String,
        /// What the content is.
        actual: String,
    },
    /// An OCI layout archive has no image for this host's platform.
    #[error("archive index {index} has no image for platform {platform}")]
    NoPlatform {
        /// The digest of the nested index.
        index: Digest,
        /// The host platform.
        platform: String,
    },
    /// A `--change` instruction cannot be applied.
    #[error("invalid change {change:?}: {reason}")]
    Change {
        /// The instruction as given.
        change: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name given to import is not a tag name.
    #[error("cannot import as {reference}: {reason}")]
    BadName {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Writing the archive failed.
    #[error("writing archive{}: {source}", at_entry(entry.as_deref()))]
    Write {
        /// The entry being written, if any.
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    /// A store, unpack or reference error.
    #[error(transparent)]
    Engine(#[from] Error),
}

fn at_entry(entry: Option<&str>) -> String {
    entry
        .map(|e| format!(" at entry {e:?}"))
        .unwrap_or_default()
}

impl From<ContentError> for TransferError {
    fn from(e: ContentError) -> Self {
        TransferError::Engine(e.into())
    }
}

impl From<ImageError> for TransferError {
    fn from(e: ImageError) -> Self {
        TransferError::Engine(e.into())
    }
}

impl From<crate::fsutil::FsError> for TransferError {
    fn from(e: crate::fsutil::FsError) -> Self {
        TransferError::Engine(e.into())
    }
}

impl From<ReferenceError> for TransferError {
    fn from(e: ReferenceError) -> Self {
        TransferError::Engine(e.into())
    }
}

/// `Result` of this module.
pub type Result<T, E = TransferError> = std::result::Result<T, E>;

/// How a stream is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type of a tar compressed this way.
    pub(crate) fn oci_layer_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Reads up to 4 bytes from `r` (fewer only at end of stream).
pub(crate) fn read_head<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head[..n].to_vec())
}

/// `reader` decompressed (gzip or zstd, detected), or as is.
pub(crate) fn decompress<'a, R: Read + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = read_head(&mut reader)?;
    let kind = Compression::detect(&head);
    let whole = io::Cursor::new(head).chain(reader);
    Ok(match kind {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
    })
}

/// What a load or import added to the stores, so that a failure (or content nothing ends up
/// referencing) can be taken out again.
#[derive(Debug, Default)]
pub(crate) struct Added {
    /// Blobs committed that were not in the content store before.
    pub blobs: BTreeSet<Digest>,
    /// Layers (chainIDs) that were not in the layer store before an install.
    pub layers: BTreeSet<Digest>,
}

impl Added {
    /// Removes whatever was added and no image record references (best effort: a failure
    /// here is logged, the caller's result stands).
    pub(crate) fn remove_unreferenced(&self, stores: &Stores) {
        if self.blobs.is_empty() && self.layers.is_empty() {
            return;
        }
        let roots = match stores.images.gc_roots() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list image references; leaving unreferenced content for prune");
                return;
            }
        };
        for d in self.blobs.difference(&roots.blobs) {
            if let Err(e) = stores.content.delete(d) {
                tracing::warn!(blob = %d, error = %e, "cannot remove unreferenced blob");
            }
        }
        for c in self.layers.difference(&roots.chain_ids) {
            if let Err(e) = stores.layers.remove(c) {
                tracing::warn!(chain_id = %c, error = %e, "cannot remove unreferenced layer");
            }
        }
    }
}

/// Installs an image as [`install`](crate::install::install) does, first noting which of its
/// layers are new (so a failed install can take them out again).
pub(crate) fn install_tracked(
    stores: &Stores,
    blobs: &crate::install::ImageBlobs,
    diff_ids: &[Digest],
    names: &[String],
    added: &mut Added,
) -> Result<crate::images::ImageRecord> {
    let mut parent: Option<Digest> = None;
    for diff_id in diff_ids {
        let chain = crate::layers::LayerStore::chain_id(parent.as_ref(), diff_id);
        if stores.layers.get(&chain).map_err(Error::from)?.is_none() {
            added.layers.insert(chain.clone());
        }
        parent = Some(chain);
    }
    Ok(crate::install::install(stores, blobs, names)?)
}
