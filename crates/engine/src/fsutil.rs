//! Small filesystem helpers the stores share: atomic single-file writes, directory fsync,
//! JSON state files that are reported (never reset) when corrupt, flock-based locks and a
//! removal that tolerates read-only trees.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher as _};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a filesystem helper failed; every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O operation (`op`: "create", "write", "rename", …) on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A JSON state file exists but does not parse; it is left as it is.
    #[error("corrupt state file {}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialised to JSON before writing it to `path`.
    #[error("serialise {}: {source}", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl FsError {
    /// Wraps an `io::Error` from `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> FsError {
        FsError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this is an I/O error saying the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A name that no other caller on this host gets: `prefix` + pid, a per-process counter and
/// 64 random bits (from the std hasher's per-instance random keys).
/// Whether the process that made a [`unique_name`] still runs (`rest` is the name without its
/// prefix: `<pid hex>-…`). A leftover is swept only when its maker is gone, never while a
/// concurrent process is still building it.
pub fn unique_name_owner_alive(rest: &str) -> bool {
    rest.split('-')
        .next()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    if let Ok(t) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{prefix}{:x}-{n:x}-{:016x}", std::process::id(), h.finish())
}

/// Marks `dir` as the top of unrelated directory trees (ext4's `FS_TOPDIR_FL`, `chattr +T`),
/// so that the inode allocator spreads the directories made in it over the block groups
/// instead of filling its own group. Best effort: other filesystems lack the flag.
///
/// Why: on ext4 without a journal, every inode allocation skips, one by one, the inodes of
/// its group freed in the last seconds (minutes while their table block is dirty). Every
/// container's files landed in one group, so an `up` right after a `down` scanned hundreds
/// of freed inodes per file it created (see ARCHITECTURE.md, *What a start costs*).
pub fn spread_subdirectories(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(f) = File::open(dir) else { return };
    if let Ok(flags) = ioctl_getflags(&f)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = ioctl_setflags(&f, flags | IFlags::TOPDIR);
    }
}

/// Fsyncs the directory `dir`, making renames and creations inside it durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    let f = File::open(dir).map_err(|e| FsError::io("open", dir, e))?;
    f.sync_all().map_err(|e| FsError::io("fsync", dir, e))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory is written and
/// fsynced, renamed over `path`, then the directory is fsynced. Readers see the old or the
/// new content, never a mix; on failure the temp file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_renamed(path, bytes, true)
}

/// Like [`write_atomic`] without the fsyncs: readers still see the old or the new content,
/// never a mix, but a crash may lose the write. For files regenerated at every start (a
/// container's OCI bundle and `/etc` files), where durability buys nothing and the two
/// fsyncs cost milliseconds on each start.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_renamed(path, bytes, false)
}

fn write_renamed(path: &Path, bytes: &[u8], durable: bool) -> Result<(), FsError> {
    let dir = parent_of(path);
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(unique_name(&format!(".{base}.tmp-")));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| FsError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| FsError::io("write", &tmp, e))?;
        if durable {
            f.sync_all().map_err(|e| FsError::io("fsync", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| FsError::io("rename", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it with [`write_atomic`].
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), FsError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| FsError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads and parses the JSON file at `path`. A file that does not parse is reported as
/// `corrupt state file <path>: <cause>`; it is never rewritten here.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, FsError> {
    let bytes = fs::read(path).map_err(|e| FsError::io("read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| FsError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read_json`], but a missing file is `Ok(None)`.
pub fn read_json_if_exists<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FsError> {
    match read_json(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An `flock(2)` lock on an open file, released when dropped. Locks are per open file
/// description, so two `Lock`s on the same path exclude each other even within one process.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// A lock already held through `file` (an open file description inherited across
    /// `execve`: flock locks belong to the description, so the lock was never released).
    pub fn from_held(file: File, path: &Path) -> Lock {
        Lock {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Takes an exclusive lock on `path` (created 0600 if missing), waiting for other holders.
    pub fn exclusive(path: &Path) -> Result<Lock, FsError> {
        Lock::acquire(open_lock_file(path)?, path, FlockOperation::LockExclusive)
    }

    /// Takes a shared lock on `path` (created 0600 if missing), waiting for an exclusive holder.
    pub fn shared(path: &Path) -> Result<Lock, FsError> {
        Lock::acquire(open_lock_file(path)?, path, FlockOperation::LockShared)
    }

    /// Takes an exclusive lock on `path` if nobody holds one; `Ok(None)` if somebody does.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>, FsError> {
        Lock::try_acquire(open_lock_file(path)?, path)
    }

    /// Takes an exclusive lock on the existing directory `dir`, waiting for other holders.
    pub fn exclusive_dir(dir: &Path) -> Result<Lock, FsError> {
        let f = File::open(dir).map_err(|e| FsError::io("open", dir, e))?;
        Lock::acquire(f, dir, FlockOperation::LockExclusive)
    }

    /// Takes an exclusive lock on the existing directory `dir` if nobody holds one.
    pub fn try_exclusive_dir(dir: &Path) -> Result<Option<Lock>, FsError> {
        let f = File::open(dir).map_err(|e| FsError::io("open", dir, e))?;
        Lock::try_acquire(f, dir)
    }

    /// The locked path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file the lock is held on.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn acquire(file: File, path: &Path, op: FlockOperation) -> Result<Lock, FsError> {
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => {
                    return Ok(Lock {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(FsError::io("lock", path, e.into())),
            }
        }
    }

    fn try_acquire(file: File, path: &Path) -> Result<Option<Lock>, FsError> {
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    return Ok(Some(Lock {
                        file,
                        path: path.to_path_buf(),
                    }));
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(FsError::io("lock", path, e.into())),
            }
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| FsError::io("open lock", path, e))
}

/// Removes `path` (a file or a directory tree) as far as possible. Directories without write
/// or search permission (read-only layer content) are made 0700 and retried. Failures are
/// logged, not returned: this is for cleaning up after an error or pruning. A missing path is
/// fine.
pub fn remove_dir_all_best_effort(path: &Path) {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
            return;
        }
    };
    if !meta.is_dir() {
        if let Err(e) = fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
        }
        return;
    }
    if fs::remove_dir_all(path).is_ok() {
        return;
    }
    make_dirs_writable(path);
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
    }
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

/// `openat2(dir, path, flags | CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, retried when
/// the kernel asks (EAGAIN): `path` is resolved as if `dir` were `/`, so `..`, absolute
/// symlinks and magic links cannot leave it. An empty path opens `dir` itself. Every confined
/// access to a layer, a rootfs or a volume goes through here.
pub fn open_in_root(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &[u8],
    flags: rustix::fs::OFlags,
) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            dir,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// [`open_in_root`] with an `io::Error` that says what a missing `openat2` means.
pub fn open_in_root_io(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &[u8],
    flags: rustix::fs::OFlags,
) -> io::Result<std::os::fd::OwnedFd> {
    open_in_root(dir, path, flags).map_err(|e| {
        if e == rustix::io::Errno::NOSYS {
            io::Error::other("openat2 is not available (linux 5.6 or later is needed)")
        } else {
            io::Error::from(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn spread_subdirectories_sets_topdir_wherever_the_filesystem_takes_it() {
        use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("containers");
        fs::create_dir(&dir).unwrap();
        spread_subdirectories(&dir);
        spread_subdirectories(&dir); // idempotent
        spread_subdirectories(&tmp.path().join("missing")); // best effort: no panic
        let f = File::open(&dir).unwrap();
        match ioctl_getflags(&f) {
            Ok(flags) if flags.contains(IFlags::TOPDIR) => {}
            // Not set: then this filesystem must refuse it (tmpfs, xfs, …).
            Ok(flags) => assert!(ioctl_setflags(&f, flags | IFlags::TOPDIR).is_err()),
            Err(_) => {}
        }
        assert!(dir.is_dir());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn failed_atomic_write_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temp file exists.
        let p = dir.path().join("target");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        let err = write_atomic(&p, b"data").unwrap_err();
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        assert_eq!(names(dir.path()), ["target"]);
        assert_eq!(names(&p), ["keep"]);
    }

    #[test]
    fn corrupt_json_is_reported_with_its_path_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("refs.json");
        fs::write(&p, b"{\"version\": 1,").unwrap();
        let err = read_json::<serde_json::Value>(&p).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("corrupt state file {}: ", p.display())),
            "{msg}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"{\"version\": 1,");
        assert!(
            read_json_if_exists::<serde_json::Value>(&dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn locks_exclude_each_other_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let a = Lock::exclusive(&p).unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(a);
        let b = Lock::try_exclusive(&p).unwrap();
        assert!(b.is_some());
        drop(b);
        let s1 = Lock::shared(&p).unwrap();
        let s2 = Lock::shared(&p).unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop((s1, s2));
        let d = Lock::exclusive_dir(dir.path()).unwrap();
        assert!(Lock::try_exclusive_dir(dir.path()).unwrap().is_none());
        drop(d);
        assert!(Lock::try_exclusive_dir(dir.path()).unwrap().is_some());
    }

    #[test]
    fn best_effort_removal_handles_read_only_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("ro/inner")).unwrap();
        fs::write(top.join("ro/inner/f"), b"x").unwrap();
        fs::set_permissions(top.join("ro/inner"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(top.join("ro"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_dir_all_best_effort(&top);
        assert!(!top.exists());
        remove_dir_all_best_effort(&top);
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("x-");
        let b = unique_name("x-");
        assert_ne!(a, b);
        assert!(a.starts_with("x-"));
    }
}
