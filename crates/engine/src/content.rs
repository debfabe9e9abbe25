//! The content store: immutable blobs under `content/blobs/sha256/<hex>`, verified (size and
//! sha256) before they are committed there, written through `content/ingest/`.
//!
//! Downloading a blob once across processes:
//! ```text
//! let _lock = store.lock(&digest)?;          // the second puller waits here
//! if !store.has(&digest) {
//!     let mut ingest = store.ingest()?;       // write through a DigestWriter
//!     ...
//!     store.commit(&ingest.path, &digest, Some(size), &computed, computed_size)?;
//! }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::fsutil::{self, FsError, Lock};
use crate::layout::Root;

/// Mode of a committed blob.
pub const BLOB_MODE: u32 = 0o444;

/// Why a content store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The content's sha256 is not the one expected; nothing was committed.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The content's size is not the one expected; nothing was committed.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob {digest} not found in the content store")]
    NotFound { digest: Digest },
    /// `commit` was given a path outside this store's ingest directory.
    #[error("{} is not an ingest file of this content store", path.display())]
    NotAnIngest { path: PathBuf },
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A partial blob being written: the file in `content/ingest/` and its open handle.
#[derive(Debug)]
pub struct Ingest {
    /// Where the ingest file is (pass it to [`ContentStore::commit`]).
    pub path: PathBuf,
    /// The file, opened for writing.
    pub file: File,
}

/// The content store over a [`Root`].
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: Root,
}

impl ContentStore {
    /// The content store of an opened root.
    pub fn new(root: Root) -> ContentStore {
        ContentStore { root }
    }

    /// Whether the blob is committed.
    pub fn has(&self, digest: &Digest) -> bool {
        self.root.blob(digest).is_file()
    }

    /// Where the blob is (or would be) stored.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.blob(digest)
    }

    /// Opens a committed blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let p = self.root.blob(digest);
        File::open(&p).map_err(|e| self.not_found_or(digest, "open", &p, e))
    }

    /// The whole blob. Not re-verified: blobs are verified when committed.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.root.blob(digest);
        fs::read(&p).map_err(|e| self.not_found_or(digest, "read", &p, e))
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let p = self.root.blob(digest);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| self.not_found_or(digest, "stat", &p, e))
    }

    fn not_found_or(
        &self,
        digest: &Digest,
        op: &'static str,
        p: &Path,
        e: io::Error,
    ) -> ContentError {
        if e.kind() == io::ErrorKind::NotFound {
            ContentError::NotFound {
                digest: digest.clone(),
            }
        } else {
            FsError::io(op, p, e).into()
        }
    }

    /// A new, uniquely named, empty file in `content/ingest/` (mode 0600).
    pub fn ingest(&self) -> Result<Ingest, ContentError> {
        let path = self.root.ingest_dir().join(fsutil::unique_name(""));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| FsError::io("create", &path, e))?;
        Ok(Ingest { path, file })
    }

    /// Commits the ingest file at `ingest_path` as blob `expected`. `computed` and
    /// `computed_size` are what the caller hashed while writing it. A wrong size or digest
    /// removes the ingest file and leaves the store unchanged; a right one fsyncs the file,
    /// makes it 0444, renames it to `blobs/sha256/<hex>` and fsyncs the directory. A blob
    /// already present is fine (the ingest file is removed).
    pub fn commit(
        &self,
        ingest_path: &Path,
        expected: &Digest,
        expected_size: Option<u64>,
        computed: &Digest,
        computed_size: u64,
    ) -> Result<(), ContentError> {
        if ingest_path.parent() != Some(self.root.ingest_dir().as_path()) {
            return Err(ContentError::NotAnIngest {
                path: ingest_path.to_path_buf(),
            });
        }
        let result = self.commit_inner(
            ingest_path,
            expected,
            expected_size,
            computed,
            computed_size,
        );
        if result.is_err() {
            let _ = fs::remove_file(ingest_path);
        }
        result
    }

    fn commit_inner(
        &self,
        ingest_path: &Path,
        expected: &Digest,
        expected_size: Option<u64>,
        computed: &Digest,
        computed_size: u64,
    ) -> Result<(), ContentError> {
        let size_mismatch = |expected_len, actual| ContentError::SizeMismatch {
            digest: expected.clone(),
            expected: expected_len,
            actual,
        };
        if let Some(want) = expected_size
            && want != computed_size
        {
            return Err(size_mismatch(want, computed_size));
        }
        if computed != expected {
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual: computed.clone(),
            });
        }
        if self.has(expected) {
            fs::remove_file(ingest_path).map_err(|e| FsError::io("remove", ingest_path, e))?;
            return Ok(());
        }
        let file = File::open(ingest_path).map_err(|e| FsError::io("open", ingest_path, e))?;
        let on_disk = file
            .metadata()
            .map_err(|e| FsError::io("stat", ingest_path, e))?
            .len();
        if on_disk != computed_size {
            // The caller hashed bytes that did not all reach the file (an unflushed buffer).
            return Err(size_mismatch(computed_size, on_disk));
        }
        file.sync_all()
            .map_err(|e| FsError::io("fsync", ingest_path, e))?;
        file.set_permissions(fs::Permissions::from_mode(BLOB_MODE))
            .map_err(|e| FsError::io("chmod", ingest_path, e))?;
        let dest = self.root.blob(expected);
        fs::rename(ingest_path, &dest).map_err(|e| FsError::io("rename", &dest, e))?;
        fsutil::fsync_dir(&self.root.blobs_dir())?;
        Ok(())
    }

    /// Stores `bytes` (through an ingest file and [`commit`](Self::commit)) and returns
    /// their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ContentError> {
        let digest = Digest::of_bytes(bytes);
        if self.has(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest()?;
        if let Err(e) = ingest.file.write_all(bytes) {
            let _ = fs::remove_file(&ingest.path);
            return Err(FsError::io("write", &ingest.path, e).into());
        }
        drop(ingest.file);
        self.commit(
            &ingest.path,
            &digest,
            Some(bytes.len() as u64),
            &digest,
            bytes.len() as u64,
        )?;
        Ok(digest)
    }

    /// Removes a blob; `Ok(false)` if it was not there. Whether it is still referenced is
    /// the caller's business (see `ImageStore::gc_roots`).
    pub fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        let p = self.root.blob(digest);
        match fs::remove_file(&p) {
            Ok(()) => {
                fsutil::fsync_dir(&self.root.blobs_dir())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FsError::io("remove", &p, e).into()),
        }
    }

    /// Every committed blob, sorted. Files whose name is not a digest are skipped.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.root.blobs_dir();
        let entries = fs::read_dir(&dir).map_err(|e| FsError::io("read directory", &dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
            let name = entry.file_name();
            match Digest::from_hex(&name.to_string_lossy()) {
                Ok(d) => out.push(d),
                Err(_) => {
                    tracing::warn!(path = %entry.path().display(), "stray file in the blob store")
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Takes the exclusive ingest lock of `digest` (`content/locks/<hex>.lock`), waiting for
    /// another holder; check [`has`](Self::has) after getting it. Lock files are never
    /// removed (removing one while another process waits on it would break the exclusion).
    pub fn lock(&self, digest: &Digest) -> Result<Lock, ContentError> {
        Ok(Lock::exclusive(&self.root.lock_file(digest))?)
    }

    /// [`ContentStore::lock`] without waiting: `None` while another holder has it.
    pub fn try_lock(&self, digest: &Digest) -> Result<Option<Lock>, ContentError> {
        Ok(Lock::try_exclusive(&self.root.lock_file(digest))?)
    }

    /// Removes ingest files not modified for `older_than` (abandoned downloads); returns how
    /// many were removed.
    pub fn prune_ingest(&self, older_than: Duration) -> Result<usize, ContentError> {
        let dir = self.root.ingest_dir();
        let entries = fs::read_dir(&dir).map_err(|e| FsError::io("read directory", &dir, e))?;
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &dir, e))?;
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            let age = now.duration_since(modified).unwrap_or_default();
            if age >= older_than {
                fsutil::remove_dir_all_best_effort(&entry.path());
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestWriter;

    fn store() -> (tempfile::TempDir, ContentStore, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, ContentStore::new(root.clone()), root)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn put_read_size_list_delete() {
        let (_d, cs, root) = store();
        let a = cs.put_bytes(b"hello").unwrap();
        assert_eq!(a, Digest::of_bytes(b"hello"));
        assert!(cs.has(&a));
        assert_eq!(cs.read(&a).unwrap(), b"hello");
        assert_eq!(cs.size(&a).unwrap(), 5);
        let mode = fs::metadata(cs.path(&a)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        assert_eq!(cs.put_bytes(b"hello").unwrap(), a);
        let b = cs.put_bytes(b"").unwrap();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(cs.list().unwrap(), want);
        assert!(listing(&root.ingest_dir()).is_empty());
        assert!(cs.delete(&a).unwrap());
        assert!(!cs.delete(&a).unwrap());
        assert!(matches!(
            cs.read(&a),
            Err(ContentError::NotFound { digest }) if digest == a
        ));
        assert_eq!(cs.list().unwrap(), vec![b]);
    }

    fn write_ingest(cs: &ContentStore, bytes: &[u8]) -> (PathBuf, Digest, u64) {
        let ing = cs.ingest().unwrap();
        let mut w = DigestWriter::new(ing.file);
        w.write_all(bytes).unwrap();
        let (d, n, _f) = w.finish();
        (ing.path, d, n)
    }

    #[test]
    fn wrong_digest_or_size_leaves_the_store_unchanged() {
        let (_d, cs, root) = store();
        let kept = cs.put_bytes(b"kept").unwrap();
        let before = listing(&root.blobs_dir());

        let (p, computed, n) = write_ingest(&cs, b"tampered");
        let expected = Digest::of_bytes(b"original");
        let err = cs.commit(&p, &expected, None, &computed, n).unwrap_err();
        assert!(
            matches!(&err, ContentError::DigestMismatch { expected: e, actual: a } if *e == expected && *a == computed),
            "{err}"
        );
        assert_eq!(listing(&root.blobs_dir()), before);
        assert!(listing(&root.ingest_dir()).is_empty());

        // A short download: the right prefix, fewer bytes than the descriptor says.
        let full = b"0123456789";
        let (p, computed, n) = write_ingest(&cs, &full[..6]);
        let expected = Digest::of_bytes(full);
        let err = cs
            .commit(&p, &expected, Some(10), &computed, n)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::SizeMismatch {
                    expected: 10,
                    actual: 6,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(listing(&root.blobs_dir()), before);
        assert!(listing(&root.ingest_dir()).is_empty());
        assert!(!cs.has(&expected));
        assert!(cs.has(&kept));
    }

    #[test]
    fn hashed_bytes_missing_from_the_file_are_refused() {
        let (_d, cs, root) = store();
        let ing = cs.ingest().unwrap();
        // Claims 3 bytes hashed, but nothing reached the file.
        let d = Digest::of_bytes(b"abc");
        let err = cs.commit(&ing.path, &d, Some(3), &d, 3).unwrap_err();
        assert!(
            matches!(err, ContentError::SizeMismatch { actual: 0, .. }),
            "{err}"
        );
        assert!(listing(&root.blobs_dir()).is_empty());
        assert!(listing(&root.ingest_dir()).is_empty());
    }

    #[test]
    fn commit_refuses_paths_outside_ingest() {
        let (d, cs, root) = store();
        let p = d.path().join("elsewhere");
        fs::write(&p, b"x").unwrap();
        let dg = Digest::of_bytes(b"x");
        let err = cs.commit(&p, &dg, Some(1), &dg, 1).unwrap_err();
        assert!(matches!(err, ContentError::NotAnIngest { .. }), "{err}");
        assert!(p.exists());
        assert!(listing(&root.blobs_dir()).is_empty());
    }

    #[test]
    fn two_threads_committing_the_same_blob() {
        let (_d, cs, root) = store();
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let digest = Digest::of_bytes(&data);
        let downloads = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let _lock = cs.lock(&digest).unwrap();
                    if cs.has(&digest) {
                        return;
                    }
                    downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (p, computed, n) = write_ingest(&cs, &data);
                    cs.commit(&p, &digest, Some(data.len() as u64), &computed, n)
                        .unwrap();
                });
            }
        });
        assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(cs.read(&digest).unwrap(), data);
        assert_eq!(listing(&root.blobs_dir()), [digest.hex()]);
        assert!(listing(&root.ingest_dir()).is_empty());

        // Without the lock both commit; the second finds the blob present and is fine.
        let other = b"second blob".to_vec();
        let od = Digest::of_bytes(&other);
        let (p1, c1, n1) = write_ingest(&cs, &other);
        let (p2, c2, n2) = write_ingest(&cs, &other);
        std::thread::scope(|s| {
            s.spawn(|| cs.commit(&p1, &od, None, &c1, n1).unwrap());
            s.spawn(|| cs.commit(&p2, &od, None, &c2, n2).unwrap());
        });
        assert_eq!(cs.read(&od).unwrap(), other);
        assert!(listing(&root.ingest_dir()).is_empty());
    }

    #[test]
    fn prune_ingest_removes_only_old_files() {
        let (_d, cs, root) = store();
        let old = cs.ingest().unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        old.file.set_modified(past).unwrap();
        let fresh = cs.ingest().unwrap();
        assert_eq!(cs.prune_ingest(Duration::from_secs(600)).unwrap(), 1);
        assert!(!old.path.exists());
        assert!(fresh.path.exists());
        assert_eq!(listing(&root.ingest_dir()).len(), 1);
    }
}
