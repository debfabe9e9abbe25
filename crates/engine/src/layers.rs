//! The layer store: unpacked layers keyed by chainID under `layers/<chainID hex>/`, each
//! with its `diff/` directory and `meta.json`. A layer is built in `layers/.tmp-<random>/`
//! and committed by one rename, so a layer directory is either complete or absent.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, FsError, Lock};
use crate::layout::{LAYER_DIFF_DIR, LAYER_META_FILE, LAYER_TMP_PREFIX, Root, STATE_DIR_MODE};

/// Mode of a new layer's `diff/` directory (the image's `/` unless the tar sets it).
pub const DIFF_DIR_MODE: u32 = 0o755;

/// What `layers/<chainID hex>/meta.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// The layer's chainID (its key).
    pub chain_id: Digest,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The chainID of the layer below, if any.
    pub parent: Option<Digest>,
    /// Unpacked size in bytes, as reported by the unpacker.
    pub size: u64,
    /// The (possibly compressed) blob it was unpacked from.
    pub blob: Digest,
}

/// Why a layer store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The given chainID does not follow from the parent and the diffID.
    #[error("chain id {chain_id} does not match parent {parent:?} and diff id {diff_id}")]
    ChainIdMismatch {
        chain_id: Digest,
        parent: Option<Digest>,
        diff_id: Digest,
    },
    /// The unpacked content hashed to another diffID; nothing was stored.
    #[error("layer blob {blob} unpacks to diff id {actual}, the image config says {expected}")]
    DiffIdMismatch {
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// The unpack callback failed; nothing was stored.
    #[error("unpack layer blob {blob}: {source}")]
    Unpack {
        blob: Digest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A layer directory exists with a missing or inconsistent `meta.json`.
    #[error("corrupt layer {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The layer store over a [`Root`].
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: Root,
}

impl LayerStore {
    /// The layer store of an opened root.
    pub fn new(root: Root) -> LayerStore {
        LayerStore { root }
    }

    /// The OCI chainID: `diff_id` for a bottom layer, else the sha256 of the ASCII string
    /// `"<parent chainID> <diff_id>"`.
    pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of_bytes(format!("{p} {diff_id}").as_bytes()),
        }
    }

    /// The layer's metadata, `None` if it is not stored.
    pub fn get(&self, chain_id: &Digest) -> Result<Option<LayerMeta>, LayerError> {
        let dir = self.root.layer_dir(chain_id);
        let meta_path = dir.join(LAYER_META_FILE);
        match fsutil::read_json_if_exists::<LayerMeta>(&meta_path)? {
            Some(meta) if meta.chain_id == *chain_id => Ok(Some(meta)),
            Some(meta) => Err(LayerError::Corrupt {
                path: meta_path,
                reason: format!("meta.json names chain id {}", meta.chain_id),
            }),
            None if dir.exists() => Err(LayerError::Corrupt {
                path: dir,
                reason: format!("{LAYER_META_FILE} is missing"),
            }),
            None => Ok(None),
        }
    }

    /// `layers/<chainID hex>/diff`: the overlay lowerdir of the layer.
    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.layer_dir(chain_id).join(LAYER_DIFF_DIR)
    }

    /// Creates the layer `chain_id` unless it exists (then it is returned as is). `unpack`
    /// fills the given empty directory and returns the diffID and unpacked size; when it
    /// fails, or its diffID is not `expected_diff_id`, the temp directory is removed and the
    /// store is unchanged. The layer is committed by renaming its temp directory; a
    /// concurrent creator that loses that race cleans up and returns the winner's layer.
    pub fn create<E>(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        expected_diff_id: &Digest,
        blob: &Digest,
        unpack: impl FnOnce(&Path) -> Result<(Digest, u64), E>,
    ) -> Result<LayerMeta, LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if LayerStore::chain_id(parent, expected_diff_id) != *chain_id {
            return Err(LayerError::ChainIdMismatch {
                chain_id: chain_id.clone(),
                parent: parent.cloned(),
                diff_id: expected_diff_id.clone(),
            });
        }
        if let Some(meta) = self.get(chain_id)? {
            return Ok(meta);
        }
        let (tmp, lock) = self.new_tmp_dir()?;
        let result = self.fill_and_commit(&tmp, chain_id, parent, expected_diff_id, blob, unpack);
        drop(lock);
        match result {
            Ok(Some(meta)) => Ok(meta),
            Ok(None) => {
                // Lost the race: another creator committed this layer first.
                fsutil::remove_dir_all_best_effort(&tmp);
                self.get(chain_id)?.ok_or_else(|| LayerError::Corrupt {
                    path: self.root.layer_dir(chain_id),
                    reason: "vanished after a concurrent create".to_string(),
                })
            }
            Err(e) => {
                fsutil::remove_dir_all_best_effort(&tmp);
                Err(e)
            }
        }
    }

    /// Unpacks into `tmp/diff`, writes meta.json, syncs and renames. `Ok(None)`: the target
    /// already existed.
    fn fill_and_commit<E>(
        &self,
        tmp: &Path,
        chain_id: &Digest,
        parent: Option<&Digest>,
        expected_diff_id: &Digest,
        blob: &Digest,
        unpack: impl FnOnce(&Path) -> Result<(Digest, u64), E>,
    ) -> Result<Option<LayerMeta>, LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let diff = tmp.join(LAYER_DIFF_DIR);
        DirBuilder::new()
            .mode(DIFF_DIR_MODE)
            .create(&diff)
            .map_err(|e| FsError::io("create directory", &diff, e))?;
        let (diff_id, size) = unpack(&diff).map_err(|e| LayerError::Unpack {
            blob: blob.clone(),
            source: e.into(),
        })?;
        if diff_id != *expected_diff_id {
            return Err(LayerError::DiffIdMismatch {
                blob: blob.clone(),
                expected: expected_diff_id.clone(),
                actual: diff_id,
            });
        }
        let meta = LayerMeta {
            chain_id: chain_id.clone(),
            diff_id,
            parent: parent.cloned(),
            size,
            blob: blob.clone(),
        };
        fsutil::write_json_atomic(&tmp.join(LAYER_META_FILE), &meta)?;
        // One syncfs flushes the whole unpacked tree before it becomes visible.
        let dir = fs::File::open(tmp).map_err(|e| FsError::io("open", tmp, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| FsError::io("syncfs", tmp, e.into()))?;
        let dest = self.root.layer_dir(chain_id);
        if let Err(e) = fs::rename(tmp, &dest) {
            return match rustix::io::Errno::from_io_error(&e) {
                Some(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => Ok(None),
                _ => Err(FsError::io("rename", &dest, e).into()),
            };
        }
        fsutil::fsync_dir(&self.root.layers_dir())?;
        Ok(Some(meta))
    }

    /// A new `layers/.tmp-<random>` directory, exclusively flocked so that
    /// [`prune_tmp`](Self::prune_tmp) in another process leaves it alone.
    fn new_tmp_dir(&self) -> Result<(PathBuf, Lock), LayerError> {
        loop {
            let tmp = self
                .root
                .layers_dir()
                .join(fsutil::unique_name(LAYER_TMP_PREFIX));
            DirBuilder::new()
                .mode(STATE_DIR_MODE)
                .create(&tmp)
                .map_err(|e| FsError::io("create directory", &tmp, e))?;
            let lock = match Lock::exclusive_dir(&tmp) {
                Ok(l) => l,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            // A prune that opened it before we locked may have removed it meanwhile.
            let alive = lock
                .file()
                .metadata()
                .map_err(|e| FsError::io("stat", &tmp, e))?
                .nlink()
                > 0;
            if alive {
                return Ok((tmp, lock));
            }
        }
    }

    /// Removes the layer (no reference checks: that is the image store's job); `Ok(false)` if
    /// it was not there. The directory is first renamed away, so the layer disappears at once.
    pub fn remove(&self, chain_id: &Digest) -> Result<bool, LayerError> {
        let dir = self.root.layer_dir(chain_id);
        let doomed = self
            .root
            .layers_dir()
            .join(fsutil::unique_name(LAYER_TMP_PREFIX));
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(FsError::io("rename", &dir, e).into()),
        }
        fsutil::fsync_dir(&self.root.layers_dir())?;
        fsutil::remove_dir_all_best_effort(&doomed);
        Ok(true)
    }

    /// Every stored layer, sorted by chainID.
    pub fn list(&self) -> Result<Vec<LayerMeta>, LayerError> {
        let dir = self.root.layers_dir();
        let entries = fs::read_dir(&dir).map_err(|e| FsError::io("read directory", &dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
            let Ok(chain_id) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                continue; // .tmp-* and strays
            };
            if let Some(meta) = self.get(&chain_id)? {
                out.push(meta);
            }
        }
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(out)
    }

    /// Removes `layers/.tmp-*` directories left by interrupted creates or removals, skipping
    /// those a live create holds locked; returns how many were removed.
    pub fn prune_tmp(&self) -> Result<usize, LayerError> {
        let dir = self.root.layers_dir();
        let entries = fs::read_dir(&dir).map_err(|e| FsError::io("read directory", &dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(LAYER_TMP_PREFIX)
            {
                continue;
            }
            let path = entry.path();
            let lock = match Lock::try_exclusive_dir(&path) {
                Ok(Some(l)) => Some(l),
                Ok(None) => continue, // a create in progress
                Err(e) if e.is_not_found() => continue,
                // Not a directory (or unreadable): remove it without a lock.
                Err(_) => None,
            };
            fsutil::remove_dir_all_best_effort(&path);
            drop(lock);
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LayerStore, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, LayerStore::new(root.clone()), root)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A fake unpacker: writes one file and reports the sha256 of its content as diffID.
    fn unpack_file(content: &'static [u8]) -> impl FnOnce(&Path) -> io::Result<(Digest, u64)> {
        move |dir: &Path| {
            fs::write(dir.join("file"), content)?;
            Ok((Digest::of_bytes(content), content.len() as u64))
        }
    }

    #[test]
    fn chain_id_known_values() {
        use sha2::Digest as _;
        let d0 = Digest::of_bytes(b"layer0");
        let d1 = Digest::of_bytes(b"layer1");
        assert_eq!(LayerStore::chain_id(None, &d0), d0);
        let text = format!("sha256:{} sha256:{}", d0.hex(), d1.hex());
        let hex: String = sha2::Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(LayerStore::chain_id(Some(&d0), &d1).hex(), hex);
        assert_ne!(
            LayerStore::chain_id(Some(&d0), &d1),
            LayerStore::chain_id(Some(&d1), &d0)
        );
    }

    #[test]
    fn create_get_list_remove() {
        let (_d, ls, root) = store();
        let diff0 = Digest::of_bytes(b"zero");
        let c0 = LayerStore::chain_id(None, &diff0);
        let blob0 = Digest::of_bytes(b"blob0");
        let m0 = ls
            .create(&c0, None, &diff0, &blob0, unpack_file(b"zero"))
            .unwrap();
        assert_eq!(
            m0,
            LayerMeta {
                chain_id: c0.clone(),
                diff_id: diff0.clone(),
                parent: None,
                size: 4,
                blob: blob0.clone()
            }
        );
        assert_eq!(fs::read(ls.diff_dir(&c0).join("file")).unwrap(), b"zero");
        let mode = fs::metadata(ls.diff_dir(&c0)).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o700, 0o700);
        assert_eq!(ls.get(&c0).unwrap(), Some(m0.clone()));

        let diff1 = Digest::of_bytes(b"one");
        let c1 = LayerStore::chain_id(Some(&c0), &diff1);
        let m1 = ls
            .create(
                &c1,
                Some(&c0),
                &diff1,
                &Digest::of_bytes(b"b1"),
                unpack_file(b"one"),
            )
            .unwrap();
        assert_eq!(m1.parent, Some(c0.clone()));

        // Existing layers are returned as they are; the unpacker is not called.
        let again = ls
            .create(
                &c0,
                None,
                &diff0,
                &blob0,
                |_: &Path| -> io::Result<(Digest, u64)> { panic!("unpacked an existing layer") },
            )
            .unwrap();
        assert_eq!(again, m0);

        let mut want = vec![m0.clone(), m1.clone()];
        want.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        assert_eq!(ls.list().unwrap(), want);
        assert!(ls.remove(&c1).unwrap());
        assert!(!ls.remove(&c1).unwrap());
        assert_eq!(ls.get(&c1).unwrap(), None);
        assert_eq!(listing(&root.layers_dir()), [c0.hex()]);
    }

    #[test]
    fn failed_create_leaves_no_directory() {
        let (_d, ls, root) = store();
        let diff = Digest::of_bytes(b"expected");
        let c = LayerStore::chain_id(None, &diff);
        let blob = Digest::of_bytes(b"blob");

        // The unpacked content hashes to something else.
        let err = ls
            .create(&c, None, &diff, &blob, unpack_file(b"other"))
            .unwrap_err();
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&blob.to_string()), "{err}");
        assert!(listing(&root.layers_dir()).is_empty());

        // The unpacker fails halfway, after writing files.
        let err = ls
            .create(
                &c,
                None,
                &diff,
                &blob,
                |dir: &Path| -> io::Result<(Digest, u64)> {
                    fs::create_dir(dir.join("etc"))?;
                    fs::write(dir.join("etc/passwd"), b"root")?;
                    Err(io::Error::other("truncated tar"))
                },
            )
            .unwrap_err();
        assert!(matches!(err, LayerError::Unpack { .. }), "{err}");
        assert!(err.to_string().contains("truncated tar"), "{err}");
        assert!(listing(&root.layers_dir()).is_empty());

        // A chain id that does not follow from parent and diff id is refused up front.
        let err = ls
            .create(&c, Some(&blob), &diff, &blob, unpack_file(b"expected"))
            .unwrap_err();
        assert!(matches!(err, LayerError::ChainIdMismatch { .. }), "{err}");
        assert!(listing(&root.layers_dir()).is_empty());
        assert_eq!(ls.get(&c).unwrap(), None);
    }

    #[test]
    fn concurrent_creators_agree_on_one_layer() {
        let (_d, ls, root) = store();
        let diff = Digest::of_bytes(b"same");
        let c = LayerStore::chain_id(None, &diff);
        let blob = Digest::of_bytes(b"blob");
        let barrier = std::sync::Barrier::new(2);
        let metas: Vec<LayerMeta> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        ls.create(&c, None, &diff, &blob, |dir: &Path| {
                            fs::write(dir.join("file"), b"same")?;
                            // Both have unpacked before either renames.
                            barrier.wait();
                            Ok::<_, io::Error>((Digest::of_bytes(b"same"), 4))
                        })
                        .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(metas[0], metas[1]);
        assert_eq!(listing(&root.layers_dir()), [c.hex()]);
        assert_eq!(fs::read(ls.diff_dir(&c).join("file")).unwrap(), b"same");
    }

    #[test]
    fn corrupt_meta_is_reported() {
        let (_d, ls, root) = store();
        let c = Digest::of_bytes(b"c");
        fs::create_dir_all(root.layer_dir(&c).join("diff")).unwrap();
        let err = ls.get(&c).unwrap_err();
        assert!(
            err.to_string()
                .contains(&*root.layer_dir(&c).to_string_lossy()),
            "{err}"
        );
        fs::write(root.layer_dir(&c).join("meta.json"), b"{").unwrap();
        let err = ls.get(&c).unwrap_err();
        assert!(err.to_string().starts_with("corrupt state file "), "{err}");
        assert!(ls.list().is_err());
    }

    #[test]
    fn prune_tmp_skips_live_creates() {
        let (_d, ls, root) = store();
        let stale = root.layers_dir().join(".tmp-stale");
        fs::create_dir_all(stale.join("diff/x")).unwrap();
        let (live, lock) = ls.new_tmp_dir().unwrap();
        assert_eq!(ls.prune_tmp().unwrap(), 1);
        assert!(!stale.exists());
        assert!(live.exists());
        drop(lock);
        assert_eq!(ls.prune_tmp().unwrap(), 1);
        assert!(listing(&root.layers_dir()).is_empty());
    }
}
