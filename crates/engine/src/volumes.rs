//! Volumes as Docker's `local` driver has them: `volumes/<name>/{_data/, meta.json}` under the
//! state root, created atomically (built in a `.tmp-` directory, renamed into place), removed
//! atomically (renamed to a `.tmp-` name, then deleted; [`VolumeStore::open`] sweeps what a
//! crash left), and Docker's copy-up ([`copy_up`], [`VolumeStore::populate`]): a new volume
//! takes the content, owner and mode of the image directory it is first mounted over.
//!
//! Whether a volume is in use is the caller's knowledge (the container store): [`remove`] and
//! [`prune`] take it as a function from a volume name to the containers using it.
//!
//! [`remove`]: VolumeStore::remove
//! [`prune`]: VolumeStore::prune

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Gid, Mode, OFlags, RenameFlags, StatxFlags, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError, Lock};
use crate::layout::Root;

/// The only volume driver berth has.
pub const LOCAL_DRIVER: &str = "local";
/// The label Docker (≥ 23) puts on volumes created without a name; `volume prune` without
/// `--all` removes only volumes carrying it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
/// A volume's data directory inside its directory.
pub const DATA_DIR: &str = "_data";
/// A volume's metadata file inside its directory.
pub const META_FILE: &str = "meta.json";
/// Prefix of a volume being created or removed (never a valid volume name: names start with
/// an alphanumeric character).
pub const TMP_PREFIX: &str = ".tmp-";

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A one-character (or empty) name.
    #[error(
        "volume name {name:?} is too short, names should be at least two alphanumeric characters"
    )]
    NameTooShort { name: String },
    /// A name outside `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[error(
        "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
    )]
    InvalidName { name: String },
    /// A driver other than `local`.
    #[error("volume driver {driver:?} is not supported: berth has only the local driver")]
    UnsupportedDriver { driver: String },
    /// A driver option the local driver does not know.
    #[error("invalid option key: {key:?}")]
    InvalidOptionKey { key: String },
    /// `device` without `type`, `o` without `device`, ….
    #[error("missing required option: {option:?}")]
    MissingOption { option: String },
    /// A local driver option berth does not carry out.
    #[error("local volume option {option}: {reason}")]
    UnsupportedOption { option: String, reason: String },
    /// The `device` of a bind-type volume is missing or not a directory.
    #[error("bind device {} of volume {name}: {source}", device.display())]
    BindDevice {
        name: String,
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No volume with that name.
    #[error("get {name}: no such volume")]
    NotFound { name: String },
    /// Containers use the volume (Docker refuses removal even with `--force`).
    #[error("remove {name}: volume is in use - [{}]", users.join(" "))]
    InUse { name: String, users: Vec<String> },
    /// Copying the image's content at `target` into the volume directory failed.
    #[error("copy {target} of the image into volume directory {}: {source}", volume.display())]
    CopyUp {
        target: String,
        volume: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation on the store failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What `volume create` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeOptions {
    /// `local` (empty means `local`).
    pub driver: String,
    /// Local driver options: `type`, `device`, `o` (only `type=none,o=bind,device=/path`).
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One volume, as `meta.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// RFC 3339, UTC, whole seconds (as `docker volume inspect` prints it).
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options given at creation.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The volume was filled by copy-up (or already had content when first mounted): it is
    /// never filled again, even when the user empties it.
    #[serde(default)]
    pub populated: bool,
}

impl Volume {
    /// Created without a name (carries [`ANONYMOUS_LABEL`]).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// The host directory of a bind-type volume (`type=none,o=bind,device=/path`).
    pub fn bind_device(&self) -> Option<&Path> {
        let o = self.options.get("o")?;
        if o.split(',').any(|p| matches!(p.trim(), "bind" | "rbind")) {
            self.options.get("device").map(Path::new)
        } else {
            None
        }
    }
}

/// Which volumes `prune` removes (besides never removing one in use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Named volumes too (`--all`); otherwise only anonymous ones, as Docker ≥ 23.
    pub all: bool,
    /// `label=KEY` or `label=KEY=VALUE`: every one must match.
    pub labels: Vec<String>,
    /// `label!=KEY` or `label!=KEY=VALUE`: none may match.
    pub not_labels: Vec<String>,
}

impl PruneFilter {
    /// Whether the filter selects `volume` (in-use is checked separately).
    pub fn matches(&self, volume: &Volume) -> bool {
        (self.all || volume.is_anonymous())
            && self.labels.iter().all(|f| label_matches(&volume.labels, f))
            && !self
                .not_labels
                .iter()
                .any(|f| label_matches(&volume.labels, f))
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names, in name order.
    pub removed: Vec<String>,
    /// Bytes of the removed volumes' `_data` (a bind-type volume's device is not counted: it
    /// is not deleted).
    pub bytes_reclaimed: u64,
}

/// Docker's label filter: `KEY` matches a label with that key, `KEY=VALUE` that value too.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// Checks a volume name as Docker's local driver does: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    if name.len() < 2 {
        return Err(VolumeError::NameTooShort {
            name: name.to_string(),
        });
    }
    let b = name.as_bytes();
    let ok = b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// A random 64-hex name, as Docker gives anonymous volumes.
pub fn random_name() -> Result<String, VolumeError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 32];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| FsError::io("read", path, e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the local driver's options: none, or `type=none,o=bind,device=/existing/dir`.
fn check_local_opts(name: &str, opts: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    if opts.is_empty() {
        return Ok(());
    }
    for key in opts.keys() {
        if !matches!(key.as_str(), "type" | "device" | "o" | "size") {
            return Err(VolumeError::InvalidOptionKey { key: key.clone() });
        }
    }
    let unsupported = |k: &str, reason: &str| VolumeError::UnsupportedOption {
        option: format!(
            "{k}={}",
            opts.get(k).map(String::as_str).unwrap_or_default()
        ),
        reason: reason.to_string(),
    };
    if opts.contains_key("size") {
        return Err(unsupported(
            "size",
            "quotas are not supported by berth's local driver",
        ));
    }
    let required: [(&str, &[&str]); 3] = [
        ("device", &["type"]),
        ("type", &["device"]),
        ("o", &["device", "type"]),
    ];
    for (present, needs) in required {
        if opts.contains_key(present) {
            for need in needs {
                if !opts.contains_key(*need) {
                    return Err(VolumeError::MissingOption {
                        option: need.to_string(),
                    });
                }
            }
        }
    }
    let ty = opts.get("type").map(String::as_str).unwrap_or_default();
    match ty {
        "none" => {}
        "tmpfs" => {
            return Err(unsupported(
                "type",
                "tmpfs volumes are not supported by berth; use a tmpfs mount instead",
            ));
        }
        _ => {
            return Err(unsupported(
                "type",
                "berth's local driver supports only type=none,o=bind,device=/path",
            ));
        }
    }
    let o = opts.get("o").map(String::as_str).unwrap_or_default();
    let parts: Vec<&str> = o
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if !parts.iter().any(|p| matches!(*p, "bind" | "rbind")) {
        return Err(unsupported(
            "o",
            "type=none needs o=bind (berth mounts no other devices)",
        ));
    }
    if let Some(p) = parts.iter().find(|p| !matches!(**p, "bind" | "rbind")) {
        return Err(unsupported(
            "o",
            &format!("mount option {p:?} is not supported (only bind)"),
        ));
    }
    let device = PathBuf::from(opts.get("device").map(String::as_str).unwrap_or_default());
    let bind_err = |source| VolumeError::BindDevice {
        name: name.to_string(),
        device: device.clone(),
        source,
    };
    if !device.is_absolute() {
        return Err(bind_err(io::Error::other("not an absolute path")));
    }
    let meta = fs::metadata(&device).map_err(bind_err)?;
    if !meta.is_dir() {
        return Err(bind_err(io::Error::other("not a directory")));
    }
    Ok(())
}

/// The volumes under one state root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Opens the store under `root` (`<root>/volumes`), removing what a crashed create or
    /// remove left behind (`.tmp-` entries whose process is gone).
    pub fn open(root: &Root) -> Result<VolumeStore, VolumeError> {
        let store = VolumeStore {
            dir: root.volumes_dir(),
        };
        crate::layout::mkdir_all(&store.dir)?;
        store.sweep()?;
        Ok(store)
    }

    /// `<root>/volumes`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `volumes/<name>/_data`: where the volume's content lives (for a bind-type volume an
    /// empty directory; see [`VolumeStore::mountpoint`]). Never mount anything here: removal
    /// deletes this tree.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA_DIR)
    }

    /// What a container mounts: `_data`, or the device of a bind-type volume.
    pub fn mountpoint(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let v = self.get(name)?;
        Ok(self.mountpoint_of(&v))
    }

    /// [`VolumeStore::mountpoint`] of a volume already read.
    pub fn mountpoint_of(&self, volume: &Volume) -> PathBuf {
        match volume.bind_device() {
            Some(d) => d.to_path_buf(),
            None => self.data_dir(&volume.name),
        }
    }

    /// Creates the volume `name`, or returns the existing one of that name unchanged (as
    /// Docker: its labels and options are kept even when `opts` differ). A new volume appears
    /// complete or not at all.
    pub fn create(&self, name: &str, opts: &VolumeOptions) -> Result<Volume, VolumeError> {
        validate_name(name)?;
        if !opts.driver.is_empty() && opts.driver != LOCAL_DRIVER {
            return Err(VolumeError::UnsupportedDriver {
                driver: opts.driver.clone(),
            });
        }
        if let Some(v) = self.get_if_exists(name)? {
            return Ok(v);
        }
        check_local_opts(name, &opts.driver_opts)?;
        let volume = Volume {
            name: name.to_string(),
            driver: LOCAL_DRIVER.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: opts.labels.clone(),
            options: opts.driver_opts.clone(),
            populated: false,
        };
        let tmp = self.dir.join(fsutil::unique_name(TMP_PREFIX));
        let built = self.build(&tmp, &volume);
        let committed = built.and_then(|()| commit_dir(&tmp, &self.dir.join(name)));
        match committed {
            Ok(true) => {
                fsutil::fsync_dir(&self.dir)?;
                Ok(volume)
            }
            Ok(false) => {
                // Created meanwhile by someone else: theirs wins, as if it had been first.
                fsutil::remove_dir_all_best_effort(&tmp);
                self.get(name)
            }
            Err(e) => {
                fsutil::remove_dir_all_best_effort(&tmp);
                Err(e.into())
            }
        }
    }

    fn build(&self, tmp: &Path, volume: &Volume) -> Result<(), FsError> {
        let data = tmp.join(DATA_DIR);
        DirBuilder::new()
            .mode(0o700)
            .create(tmp)
            .map_err(|e| FsError::io("create directory", tmp, e))?;
        DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .map_err(|e| FsError::io("create directory", &data, e))?;
        // Not subject to the umask.
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755))
            .map_err(|e| FsError::io("chmod", &data, e))?;
        fsutil::write_json_atomic(&tmp.join(META_FILE), volume)?;
        fsutil::fsync_dir(tmp)
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.get_if_exists(name)?
            .ok_or_else(|| VolumeError::NotFound {
                name: name.to_string(),
            })
    }

    /// The volume named `name`, if there is one.
    pub fn get_if_exists(&self, name: &str) -> Result<Option<Volume>, VolumeError> {
        if validate_name(name).is_err() {
            return Ok(None);
        }
        Ok(fsutil::read_json_if_exists(
            &self.dir.join(name).join(META_FILE),
        )?)
    }

    /// Every volume, in name order.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| FsError::io("read directory", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if validate_name(name).is_err() {
                continue;
            }
            match self.get_if_exists(name)? {
                Some(v) => out.push(v),
                None => tracing::warn!(volume = name, "volume directory without meta.json"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the volume `name` unless `users(name)` names containers (refused even with
    /// `force`, as Docker). `force` makes a missing volume a success. The volume disappears at
    /// once (renamed aside), its data is deleted afterwards; a bind-type volume's device is
    /// never touched.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        users: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<(), VolumeError> {
        let volume = match self.get(name) {
            Ok(v) => v,
            Err(VolumeError::NotFound { .. }) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let using = users(&volume.name);
        if !using.is_empty() {
            return Err(VolumeError::InUse {
                name: volume.name,
                users: using,
            });
        }
        self.delete(&volume.name)
    }

    fn delete(&self, name: &str) -> Result<(), VolumeError> {
        let from = self.dir.join(name);
        let aside = self.dir.join(fsutil::unique_name(TMP_PREFIX));
        match fs::rename(&from, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(FsError::io("rename", &from, e).into()),
        }
        fsutil::fsync_dir(&self.dir)?;
        fsutil::remove_dir_all_best_effort(&aside);
        Ok(())
    }

    /// Removes every volume `filter` selects that `users` says is unused. A volume that cannot
    /// be removed is logged and skipped, as Docker does.
    pub fn prune(
        &self,
        filter: &PruneFilter,
        users: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<PruneReport, VolumeError> {
        let mut report = PruneReport::default();
        for volume in self.list()? {
            if !filter.matches(&volume) || !users(&volume.name).is_empty() {
                continue;
            }
            let size = disk_usage(&self.data_dir(&volume.name));
            match self.delete(&volume.name) {
                Ok(()) => {
                    report.removed.push(volume.name);
                    report.bytes_reclaimed += size;
                }
                Err(e) => tracing::warn!(volume = volume.name, error = %e, "cannot prune volume"),
            }
        }
        Ok(report)
    }

    /// Bytes used by the volume's `_data` (regular files and symlinks, hard links once).
    pub fn size(&self, name: &str) -> u64 {
        disk_usage(&self.data_dir(name))
    }

    /// Docker's copy-up, once per volume: on its first mount over `target` in `rootfs`, an
    /// empty volume takes the image's content there ([`copy_up`]). Records `populated` when
    /// the volume ends up with content (or the image directory's owner), so a volume the user
    /// empties later is not refilled. Returns whether anything was copied. `nocopy` mounts
    /// must not call this.
    pub fn populate(&self, name: &str, rootfs: &Path, target: &str) -> Result<bool, VolumeError> {
        let dir = self.dir.join(name);
        self.get(name)?;
        // Two containers starting over one new volume: one copies, the other sees it done.
        let _lock = Lock::exclusive_dir(&dir)?;
        let mut volume = self.get(name)?;
        if volume.populated {
            return Ok(false);
        }
        let mountpoint = self.mountpoint_of(&volume);
        let copied = copy_up(rootfs, target, &mountpoint)?;
        if copied || !is_empty_dir(&mountpoint)? {
            volume.populated = true;
            fsutil::write_json_atomic(&dir.join(META_FILE), &volume)?;
        }
        Ok(copied)
    }

    /// Removes `.tmp-` entries whose creating process is gone.
    fn sweep(&self) -> Result<(), VolumeError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| FsError::io("read directory", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read directory", &self.dir, e))?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
                continue;
            };
            if !owner_alive(rest) {
                tracing::debug!(path = %entry.path().display(), "removing leftover volume directory");
                fsutil::remove_dir_all_best_effort(&entry.path());
            }
        }
        Ok(())
    }
}

/// Renames the directory `tmp` to `dest` unless `dest` exists: `Ok(false)` when it does.
fn commit_dir(tmp: &Path, dest: &Path) -> Result<bool, FsError> {
    let exists = |e: Errno| matches!(e, Errno::EXIST | Errno::NOTEMPTY);
    match rustix::fs::renameat_with(CWD, tmp, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(e) if exists(e) => Ok(false),
        // No RENAME_NOREPLACE here: a plain rename never replaces a volume directory (it is
        // never empty).
        Err(Errno::INVAL) | Err(Errno::NOSYS) => match fs::rename(tmp, dest) {
            Ok(()) => Ok(true),
            Err(e)
                if e.raw_os_error()
                    .is_some_and(|c| exists(Errno::from_raw_os_error(c))) =>
            {
                Ok(false)
            }
            Err(e) => Err(FsError::io("rename", dest, e)),
        },
        Err(e) => Err(FsError::io("rename", dest, e.into())),
    }
}

/// Whether the process that named a `.tmp-<pid hex>-…` entry still runs.
fn owner_alive(rest: &str) -> bool {
    crate::fsutil::unique_name_owner_alive(rest)
}

fn is_empty_dir(dir: &Path) -> Result<bool, VolumeError> {
    let mut entries = fs::read_dir(dir).map_err(|e| FsError::io("read directory", dir, e))?;
    Ok(entries.next().is_none())
}

/// Sizes of everything but directories under `dir`, hard links counted once (as Docker's
/// `directory.Size`). Unreadable parts count as nothing.
fn disk_usage(dir: &Path) -> u64 {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for entry in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                total += walk(&entry.path(), seen);
            } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
        total
    }
    walk(dir, &mut HashSet::new())
}

/// Docker's copy-up: when `volume_data` is empty and the image has a directory at `target`
/// (resolved inside `rootfs` with `RESOLVE_IN_ROOT`, so symlinks in the image cannot lead
/// out), its content is copied in — file types, modes, owners, times, symlinks, device nodes,
/// hard links within the tree and xattrs (where the filesystem allows; overlay's own are
/// skipped) — without following any symlink, and `volume_data` takes the directory's owner and
/// mode. Returns `false` (and does nothing) when the volume is not empty or the image has no
/// directory there.
pub fn copy_up(rootfs: &Path, target: &str, volume_data: &Path) -> Result<bool, VolumeError> {
    copy_up_io(rootfs, target, volume_data).map_err(|source| VolumeError::CopyUp {
        target: target.to_string(),
        volume: volume_data.to_path_buf(),
        source,
    })
}

fn copy_up_io(rootfs: &Path, target: &str, volume_data: &Path) -> io::Result<bool> {
    let dst = rustix::fs::open(
        volume_data,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if Dir::read_from(&dst)?.any(|e| e.is_ok_and(|e| !is_dot(e.file_name()))) {
        return Ok(false);
    }
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = target.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let src = match open_in_root(
        root.as_fd(),
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut copier = Copier {
        as_root: rustix::process::geteuid().is_root(),
        dst_root: dst.try_clone()?,
        links: HashMap::new(),
    };
    copier.copy_dir(src.as_fd(), dst.as_fd(), &mut Vec::new())?;
    // Docker's copyOwnership: the volume root takes the image directory's owner and mode.
    let st = fstatx(src.as_fd())?;
    if copier.as_root {
        rustix::fs::fchown(
            &dst,
            Some(Uid::from_raw(st.stx_uid)),
            Some(Gid::from_raw(st.stx_gid)),
        )?;
    }
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(u32::from(st.stx_mode) & 0o7777))?;
    Ok(true)
}

/// See [`crate::fsutil::open_in_root`].
fn open_in_root(dir: BorrowedFd<'_>, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    crate::fsutil::open_in_root(dir, path.as_bytes(), flags)
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

fn fstatx(fd: BorrowedFd<'_>) -> io::Result<rustix::fs::Statx> {
    Ok(rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS,
    )?)
}

fn timestamps(st: &rustix::fs::Statx) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.stx_atime.tv_sec,
            tv_nsec: st.stx_atime.tv_nsec.into(),
        },
        last_modification: Timespec {
            tv_sec: st.stx_mtime.tv_sec,
            tv_nsec: st.stx_mtime.tv_nsec.into(),
        },
    }
}

/// Adds the entry's path to an I/O error.
fn at(path: &[u8]) -> impl Fn(Errno) -> io::Error + '_ {
    move |e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{}: {e}", String::from_utf8_lossy(path)))
    }
}

/// One copy-up: never follows a symlink in the source, creates nothing that exists already.
struct Copier {
    as_root: bool,
    dst_root: OwnedFd,
    /// (dev, ino) of a multiply-linked source file → its path in the copy.
    links: HashMap<(u32, u32, u64), Vec<u8>>,
}

impl Copier {
    fn copy_dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &mut Vec<u8>,
    ) -> io::Result<()> {
        let names: Vec<CString> = Dir::read_from(src)
            .map_err(at(rel))?
            .filter_map(|e| match e {
                Ok(e) if is_dot(e.file_name()) => None,
                Ok(e) => Some(Ok(e.file_name().to_owned())),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(at(rel))?;
        for name in names {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            let r = self.copy_entry(src, dst, &name, rel);
            rel.truncate(len);
            r?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &mut Vec<u8>,
    ) -> io::Result<()> {
        let st = rustix::fs::statx(
            src,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        )
        .map_err(at(rel))?;
        let mode = u32::from(st.stx_mode);
        let perm = Mode::from_raw_mode(mode & 0o7777);
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match FileType::from_raw_mode(mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(at(rel))?;
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )
                .map_err(at(rel))?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )
                .map_err(at(rel))?;
                self.copy_dir(s.as_fd(), d.as_fd(), rel)?;
                self.finish_fd(s.as_fd(), d.as_fd(), &st, perm, rel)
            }
            FileType::RegularFile => {
                let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
                if st.stx_nlink > 1
                    && let Some(first) = self.links.get(&key)
                {
                    return rustix::fs::linkat(
                        &self.dst_root,
                        first.as_slice(),
                        dst,
                        name,
                        AtFlags::empty(),
                    )
                    .map_err(at(rel));
                }
                let s = rustix::fs::openat(src, name, OFlags::RDONLY | nofollow, Mode::empty())
                    .map_err(at(rel))?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(at(rel))?;
                let (mut s, mut d) = (File::from(s), File::from(d));
                io::copy(&mut s, &mut d).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", String::from_utf8_lossy(rel)))
                })?;
                self.finish_fd(s.as_fd(), d.as_fd(), &st, perm, rel)?;
                if st.stx_nlink > 1 {
                    self.links.insert(key, rel.clone());
                }
                Ok(())
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new()).map_err(at(rel))?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name).map_err(at(rel))?;
                self.finish_node(dst, name, &st, None, rel)
            }
            t @ (FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice) => {
                let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                match rustix::fs::mknodat(dst, name, t, Mode::from_raw_mode(0o600), dev) {
                    Ok(()) => self.finish_node(dst, name, &st, Some(perm), rel),
                    Err(Errno::PERM) if !self.as_root => {
                        tracing::warn!(path = %String::from_utf8_lossy(rel), "copy-up: device node skipped (not root)");
                        Ok(())
                    }
                    Err(e) => Err(at(rel)(e)),
                }
            }
            _ => {
                tracing::debug!(path = %String::from_utf8_lossy(rel), "copy-up: socket skipped");
                Ok(())
            }
        }
    }

    /// Owner, mode, xattrs, times on an open copy (in that order: chown clears set-id bits
    /// and file capabilities).
    fn finish_fd(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &rustix::fs::Statx,
        perm: Mode,
        rel: &[u8],
    ) -> io::Result<()> {
        if self.as_root {
            rustix::fs::fchown(
                dst,
                Some(Uid::from_raw(st.stx_uid)),
                Some(Gid::from_raw(st.stx_gid)),
            )
            .map_err(at(rel))?;
        }
        rustix::fs::fchmod(dst, perm).map_err(at(rel))?;
        copy_xattrs(src, dst, rel)?;
        rustix::fs::futimens(dst, &timestamps(st)).map_err(at(rel))
    }

    /// Owner, mode (not for symlinks) and times on a node that must not be opened.
    fn finish_node(
        &self,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &rustix::fs::Statx,
        perm: Option<Mode>,
        rel: &[u8],
    ) -> io::Result<()> {
        if self.as_root {
            rustix::fs::chownat(
                dst,
                name,
                Some(Uid::from_raw(st.stx_uid)),
                Some(Gid::from_raw(st.stx_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(at(rel))?;
        }
        if let Some(perm) = perm {
            rustix::fs::chmodat(dst, name, perm, AtFlags::empty()).map_err(at(rel))?;
        }
        rustix::fs::utimensat(dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at(rel))
    }
}

/// Copies the xattrs of `src` to `dst`, skipping overlay's own and those the destination
/// refuses (unsupported, or not permitted).
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &[u8]) -> io::Result<()> {
    let size = match rustix::fs::flistxattr_query(src) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(at(rel)(e)),
    };
    if size == 0 {
        return Ok(());
    }
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(src, &mut list[..]).map_err(at(rel))?;
    list.truncate(n);
    for key in list.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(key) = CString::new(key) else { continue };
        let len = match rustix::fs::fgetxattr_query(src, key.as_c_str()) {
            Ok(n) => n,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(at(rel)(e)),
        };
        let mut value = vec![0u8; len];
        let n = rustix::fs::fgetxattr(src, key.as_c_str(), &mut value[..]).map_err(at(rel))?;
        value.truncate(n);
        match rustix::fs::fsetxattr(dst, key.as_c_str(), &value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(e @ (Errno::PERM | Errno::NOTSUP)) => {
                tracing::debug!(path = %String::from_utf8_lossy(rel), xattr = ?key, error = %e, "copy-up: xattr skipped");
            }
            Err(e) => return Err(at(rel)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path().join("root")).unwrap();
        let store = VolumeStore::open(&root).unwrap();
        (dir, store)
    }

    fn no_users(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn opts(pairs: &[(&str, &str)]) -> VolumeOptions {
        VolumeOptions {
            driver_opts: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..VolumeOptions::default()
        }
    }

    #[test]
    fn names_follow_docker() {
        for ok in ["ab", "db-data", "a.b_c-d", "0x", "My_Vol.1"] {
            validate_name(ok).unwrap();
        }
        for short in ["", "a"] {
            assert!(
                matches!(validate_name(short), Err(VolumeError::NameTooShort { .. })),
                "{short:?}"
            );
        }
        for bad in [
            "-ab", ".tmp-x", "_ab", "a/b", "../etc", "a b", "/data", "vol:ro", "é1",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, VolumeError::InvalidName { .. }), "{bad:?}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn random_names_are_64_hex_and_valid() {
        let a = random_name().unwrap();
        let b = random_name().unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        validate_name(&a).unwrap();
    }

    #[test]
    fn create_get_list_and_idempotent_create() {
        let (_t, store) = store();
        let mut o = VolumeOptions::default();
        o.labels.insert("team".into(), "db".into());
        let v = store.create("data", &o).unwrap();
        assert_eq!(v.driver, "local");
        assert_eq!(v.labels["team"], "db");
        assert!(!v.populated);
        assert!(
            chrono::DateTime::parse_from_rfc3339(&v.created_at).is_ok(),
            "{}",
            v.created_at
        );
        assert!(v.created_at.ends_with('Z'));
        let data = store.data_dir("data");
        assert!(data.is_dir());
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert_eq!(store.mountpoint("data").unwrap(), data);
        fs::write(data.join("keep"), b"x").unwrap();

        // Same name again: the existing volume, content and labels untouched (Docker).
        let again = store.create("data", &VolumeOptions::default()).unwrap();
        assert_eq!(again, v);
        assert!(data.join("keep").exists());

        store.create("alpha", &VolumeOptions::default()).unwrap();
        let listed: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(listed, ["alpha", "data"]);
        assert_eq!(names(store.dir()), ["alpha", "data"]);
        assert!(matches!(
            store.get("nope"),
            Err(VolumeError::NotFound { .. })
        ));
        assert_eq!(
            store.get("nope").unwrap_err().to_string(),
            "get nope: no such volume"
        );
        // Not a name: never a path outside the store.
        assert!(matches!(
            store.get("../root"),
            Err(VolumeError::NotFound { .. })
        ));
    }

    #[test]
    fn driver_and_options_are_checked() {
        let (t, store) = store();
        let other = VolumeOptions {
            driver: "nfs-plugin".into(),
            ..VolumeOptions::default()
        };
        let err = store.create("v1", &other).unwrap_err();
        assert!(
            matches!(err, VolumeError::UnsupportedDriver { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nfs-plugin"));

        let err = store.create("v1", &opts(&[("colour", "red")])).unwrap_err();
        assert_eq!(err.to_string(), "invalid option key: \"colour\"");
        let err = store
            .create("v1", &opts(&[("device", "/tmp")]))
            .unwrap_err();
        assert_eq!(err.to_string(), "missing required option: \"type\"");
        let err = store
            .create(
                "v1",
                &opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=10m")]),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("tmpfs volumes are not supported"),
            "{err}"
        );
        let err = store
            .create(
                "v1",
                &opts(&[("type", "nfs"), ("device", ":/x"), ("o", "addr=1.2.3.4")]),
            )
            .unwrap_err();
        assert!(err.to_string().contains("type=nfs"), "{err}");
        let missing = t.path().join("missing");
        let err = store
            .create(
                "v1",
                &opts(&[
                    ("type", "none"),
                    ("o", "bind"),
                    ("device", missing.to_str().unwrap()),
                ]),
            )
            .unwrap_err();
        assert!(matches!(err, VolumeError::BindDevice { .. }), "{err}");
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        let err = store
            .create(
                "v1",
                &opts(&[("type", "none"), ("o", "bind,uid=3"), ("device", "/tmp")]),
            )
            .unwrap_err();
        assert!(err.to_string().contains("\"uid=3\""), "{err}");
        // Nothing half-made by the refusals.
        assert!(names(store.dir()).is_empty());

        let dev = t.path().join("host");
        fs::create_dir(&dev).unwrap();
        fs::write(dev.join("f"), b"host data").unwrap();
        let v = store
            .create(
                "bound",
                &opts(&[
                    ("type", "none"),
                    ("o", "bind"),
                    ("device", dev.to_str().unwrap()),
                ]),
            )
            .unwrap();
        assert_eq!(v.bind_device(), Some(dev.as_path()));
        assert_eq!(store.mountpoint("bound").unwrap(), dev);
        store.remove("bound", false, &no_users).unwrap();
        // Removing the volume never deletes the host directory.
        assert_eq!(fs::read(dev.join("f")).unwrap(), b"host data");
    }

    #[test]
    fn remove_refuses_in_use_even_with_force() {
        let (_t, store) = store();
        store.create("busy", &VolumeOptions::default()).unwrap();
        let users = |n: &str| {
            if n == "busy" {
                vec!["c1".to_string(), "c2".to_string()]
            } else {
                Vec::new()
            }
        };
        for force in [false, true] {
            let err = store.remove("busy", force, &users).unwrap_err();
            assert_eq!(err.to_string(), "remove busy: volume is in use - [c1 c2]");
        }
        assert!(store.get("busy").is_ok());
        assert!(matches!(
            store.remove("gone", false, &no_users),
            Err(VolumeError::NotFound { .. })
        ));
        store.remove("gone", true, &no_users).unwrap();
        store.remove("busy", false, &no_users).unwrap();
        assert!(names(store.dir()).is_empty());
    }

    #[test]
    fn prune_takes_anonymous_unless_all_and_honours_labels_and_users() {
        let (_t, store) = store();
        let anon = |extra: &[(&str, &str)]| {
            let mut o = VolumeOptions::default();
            o.labels.insert(ANONYMOUS_LABEL.into(), String::new());
            for (k, v) in extra {
                o.labels.insert(k.to_string(), v.to_string());
            }
            o
        };
        store.create("named", &VolumeOptions::default()).unwrap();
        store.create("anon1", &anon(&[])).unwrap();
        store.create("anon2", &anon(&[("keep", "yes")])).unwrap();
        store.create("anon3", &anon(&[])).unwrap();
        fs::write(store.data_dir("anon1").join("f"), vec![0u8; 1000]).unwrap();
        fs::hard_link(
            store.data_dir("anon1").join("f"),
            store.data_dir("anon1").join("g"),
        )
        .unwrap();
        let users = |n: &str| {
            if n == "anon3" {
                vec!["c".to_string()]
            } else {
                Vec::new()
            }
        };
        let keep = PruneFilter {
            not_labels: vec!["keep=yes".into()],
            ..PruneFilter::default()
        };
        let r = store.prune(&keep, &users).unwrap();
        assert_eq!(r.removed, ["anon1"]);
        assert_eq!(r.bytes_reclaimed, 1000);
        let r = store.prune(&PruneFilter::default(), &users).unwrap();
        assert_eq!(r.removed, ["anon2"]);
        let all = PruneFilter {
            all: true,
            labels: vec!["nothing".into()],
            ..PruneFilter::default()
        };
        assert!(store.prune(&all, &users).unwrap().removed.is_empty());
        let all = PruneFilter {
            all: true,
            ..PruneFilter::default()
        };
        let r = store.prune(&all, &users).unwrap();
        assert_eq!(r.removed, ["named"]);
        assert_eq!(names(store.dir()), ["anon3"]);
    }

    #[test]
    fn crash_leftovers_are_swept_and_never_listed() {
        let (t, store) = store();
        store.create("real", &VolumeOptions::default()).unwrap();
        // A create that died before its rename, and a remove that died after its rename (pid
        // ffffffff is above any pid_max, so its process is gone).
        let dead_create = store.dir().join(".tmp-ffffffff-0-1");
        fs::create_dir_all(dead_create.join(DATA_DIR)).unwrap();
        let dead_remove = store.dir().join(".tmp-ffffffff-1-2");
        fs::create_dir_all(dead_remove.join("_data/sub")).unwrap();
        fs::write(dead_remove.join(META_FILE), b"{}").unwrap();
        fs::set_permissions(
            dead_remove.join("_data/sub"),
            fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        // One of a live process (this one) is being built: left alone.
        let live = store.dir().join(fsutil::unique_name(TMP_PREFIX));
        fs::create_dir(&live).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);

        let root = Root::open(t.path().join("root")).unwrap();
        let reopened = VolumeStore::open(&root).unwrap();
        let left = names(reopened.dir());
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"real".to_string()));
        assert!(live.exists());
        assert!(!dead_create.exists() && !dead_remove.exists());
    }

    #[test]
    fn label_filters() {
        let labels: BTreeMap<String, String> = [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), String::new()),
        ]
        .into();
        assert!(label_matches(&labels, "a"));
        assert!(label_matches(&labels, "a=1"));
        assert!(!label_matches(&labels, "a=2"));
        assert!(label_matches(&labels, "b="));
        assert!(!label_matches(&labels, "c"));
    }
}
