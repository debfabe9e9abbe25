//! The state layout under berth's root directory (see the crate README): every name is a
//! `const` here, and [`Root`] turns digests into paths. [`Stores`] opens all stores at once.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::fsutil::{self, FsError};
use crate::images::ImageStore;
use crate::layers::LayerStore;

/// File holding the layout version, directly under the root.
pub const LAYOUT_VERSION_FILE: &str = "layout-version";
/// The layout version this code reads and writes.
pub const LAYOUT_VERSION: &str = "1";
/// Content store directory.
pub const CONTENT_DIR: &str = "content";
/// Committed blobs, under [`CONTENT_DIR`].
pub const BLOBS_DIR: &str = "blobs";
/// The digest algorithm directory under [`BLOBS_DIR`].
pub const SHA256_DIR: &str = "sha256";
/// Partial downloads, under [`CONTENT_DIR`].
pub const INGEST_DIR: &str = "ingest";
/// Per-digest ingest locks, under [`CONTENT_DIR`].
pub const LOCKS_DIR: &str = "locks";
/// Suffix of a lock file in [`LOCKS_DIR`].
pub const LOCK_SUFFIX: &str = ".lock";
/// Layer store directory.
pub const LAYERS_DIR: &str = "layers";
/// Prefix of a layer being unpacked (or removed) in [`LAYERS_DIR`].
pub const LAYER_TMP_PREFIX: &str = ".tmp-";
/// The unpacked layer inside a layer directory.
pub const LAYER_DIFF_DIR: &str = "diff";
/// The layer metadata file inside a layer directory.
pub const LAYER_META_FILE: &str = "meta.json";
/// Short symlinks to layer diff dirs, under [`LAYERS_DIR`]: `l/<26 chars>` →
/// `../<chainID hex>/diff`, so that deep images fit overlay's one-page mount data.
pub const LAYER_LINKS_DIR: &str = "l";
/// Image record directory.
pub const IMAGES_DIR: &str = "images";
/// Suffix of an image record file in [`IMAGES_DIR`].
pub const IMAGE_FILE_SUFFIX: &str = ".json";
/// Names → image ids.
pub const REFS_FILE: &str = "refs.json";
/// Lock serialising read-modify-write of [`REFS_FILE`].
pub const REFS_LOCK_FILE: &str = "refs.lock";
/// Held shared by everything that adds content before the image record that protects it (pull,
/// load, import), and exclusively by garbage collection, so collection never deletes content
/// that is about to be referenced.
pub const GC_LOCK_FILE: &str = "gc.lock";
/// Volume store directory: `volumes/<name>/{_data/, meta.json}` (see [`crate::volumes`]).
pub const VOLUMES_DIR: &str = "volumes";

/// Mode of berth's own state directories.
pub const STATE_DIR_MODE: u32 = 0o700;

/// Why a root could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The root was written by a different layout version; it is never rewritten.
    #[error(
        "state root {} has layout version {found:?}, this berth reads version {LAYOUT_VERSION}",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: String },
    /// The directory has content but no layout-version file: not a berth root.
    #[error("{} is not empty and has no {LAYOUT_VERSION_FILE} file: not a berth state root", path.display())]
    NotARoot { path: PathBuf },
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// An opened, versioned state root. Cheap to clone; only computes paths.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// Opens the state root at `path`, creating it and its directories if needed. A new (or
    /// empty) root gets `layout-version` "1"; a root with another version, or a non-empty
    /// directory without the file, is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Root, LayoutError> {
        let path = path.as_ref().to_path_buf();
        mkdir_all(&path)?;
        let version_file = path.join(LAYOUT_VERSION_FILE);
        match fs::read(&version_file) {
            Ok(bytes) => {
                let found = String::from_utf8_lossy(&bytes).trim().to_string();
                if found != LAYOUT_VERSION {
                    return Err(LayoutError::UnsupportedVersion { path, found });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !is_fresh(&path)? {
                    return Err(LayoutError::NotARoot { path });
                }
                fsutil::write_atomic(&version_file, format!("{LAYOUT_VERSION}\n").as_bytes())?;
            }
            Err(e) => return Err(FsError::io("read", &version_file, e).into()),
        }
        let root = Root { path };
        for dir in [
            root.blobs_dir(),
            root.ingest_dir(),
            root.locks_dir(),
            root.layers_dir(),
            root.images_dir(),
            root.volumes_dir(),
        ] {
            mkdir_all(&dir)?;
        }
        Ok(root)
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `content/blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.path.join(CONTENT_DIR).join(BLOBS_DIR).join(SHA256_DIR)
    }

    /// `content/blobs/sha256/<hex>`.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// `content/ingest`.
    pub fn ingest_dir(&self) -> PathBuf {
        self.path.join(CONTENT_DIR).join(INGEST_DIR)
    }

    /// `content/locks`.
    pub fn locks_dir(&self) -> PathBuf {
        self.path.join(CONTENT_DIR).join(LOCKS_DIR)
    }

    /// `content/locks/<hex>.lock`.
    pub fn lock_file(&self, digest: &Digest) -> PathBuf {
        self.locks_dir()
            .join(format!("{}{LOCK_SUFFIX}", digest.hex()))
    }

    /// `layers`.
    pub fn layers_dir(&self) -> PathBuf {
        self.path.join(LAYERS_DIR)
    }

    /// `layers/<chainID hex>`.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layers_dir().join(chain_id.hex())
    }

    /// `layers/l`: the short links to layer diff dirs.
    pub fn layer_links_dir(&self) -> PathBuf {
        self.layers_dir().join(LAYER_LINKS_DIR)
    }

    /// `images`.
    pub fn images_dir(&self) -> PathBuf {
        self.path.join(IMAGES_DIR)
    }

    /// `images/<config hex>.json`.
    pub fn image_file(&self, id: &Digest) -> PathBuf {
        self.images_dir()
            .join(format!("{}{IMAGE_FILE_SUFFIX}", id.hex()))
    }

    /// `volumes`.
    pub fn volumes_dir(&self) -> PathBuf {
        self.path.join(VOLUMES_DIR)
    }

    /// `refs.json`.
    pub fn refs_file(&self) -> PathBuf {
        self.path.join(REFS_FILE)
    }

    /// `refs.lock`.
    pub fn gc_lock_file(&self) -> PathBuf {
        self.path.join(GC_LOCK_FILE)
    }

    pub fn refs_lock_file(&self) -> PathBuf {
        self.path.join(REFS_LOCK_FILE)
    }
}

/// Creates `dir` and missing parents with [`STATE_DIR_MODE`].
pub(crate) fn mkdir_all(dir: &Path) -> Result<(), FsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)
        .map_err(|e| FsError::io("create directory", dir, e))
}

/// Empty, apart from temp files of a concurrent first open writing `layout-version`.
fn is_fresh(dir: &Path) -> Result<bool, FsError> {
    let tmp_prefix = format!(".{LAYOUT_VERSION_FILE}.tmp-");
    let entries = fs::read_dir(dir).map_err(|e| FsError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("read directory", dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// All stores over one root.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The opened root.
    pub root: Root,
    /// Blobs.
    pub content: ContentStore,
    /// Unpacked layers.
    pub layers: LayerStore,
    /// Image records and names.
    pub images: ImageStore,
}

impl Stores {
    /// The guard writers of new content hold (see [`GC_LOCK_FILE`]); blocks while a garbage
    /// collection runs.
    pub fn content_guard(&self) -> Result<crate::fsutil::Lock, crate::fsutil::FsError> {
        crate::fsutil::Lock::shared(&self.root.gc_lock_file())
    }

    /// The guard garbage collection holds (see [`GC_LOCK_FILE`]); waits for writers to finish.
    pub fn collection_guard(&self) -> Result<crate::fsutil::Lock, crate::fsutil::FsError> {
        crate::fsutil::Lock::exclusive(&self.root.gc_lock_file())
    }

    /// Opens (creating if needed) the root at `path` and the stores over it.
    pub fn open(path: impl AsRef<Path>) -> Result<Stores, LayoutError> {
        let root = Root::open(path)?;
        Ok(Stores {
            content: ContentStore::new(root.clone()),
            layers: LayerStore::new(root.clone()),
            images: ImageStore::new(root.clone()),
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn open_creates_the_layout_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("berth");
        let root = Root::open(&p).unwrap();
        assert_eq!(fs::read_to_string(p.join("layout-version")).unwrap(), "1\n");
        for d in [
            "content/blobs/sha256",
            "content/ingest",
            "content/locks",
            "layers",
            "images",
            "volumes",
        ] {
            let m = fs::metadata(p.join(d)).unwrap();
            assert!(m.is_dir(), "{d}");
            assert_eq!(m.permissions().mode() & 0o077, 0, "{d} is private");
        }
        let d = Digest::of_bytes(b"x");
        assert_eq!(root.blob(&d), p.join("content/blobs/sha256").join(d.hex()));
        assert_eq!(
            root.lock_file(&d),
            p.join(format!("content/locks/{}.lock", d.hex()))
        );
        assert_eq!(root.layer_dir(&d), p.join("layers").join(d.hex()));
        assert_eq!(
            root.image_file(&d),
            p.join(format!("images/{}.json", d.hex()))
        );
        assert_eq!(root.refs_file(), p.join("refs.json"));
        Root::open(&p).unwrap();
        Stores::open(&p).unwrap();
    }

    #[test]
    fn other_version_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("layout-version"), "2\n").unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LayoutError::UnsupportedVersion { .. }));
        assert!(msg.contains(&*dir.path().to_string_lossy()), "{msg}");
        assert!(msg.contains("\"2\""), "{msg}");
        assert_eq!(
            fs::read_to_string(dir.path().join("layout-version")).unwrap(),
            "2\n"
        );
        assert!(!dir.path().join("content").exists());
    }

    #[test]
    fn non_empty_directory_without_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = Root::open(dir.path()).unwrap_err();
        assert!(matches!(err, LayoutError::NotARoot { .. }), "{err}");
        assert!(!dir.path().join("layout-version").exists());
    }
}
