//! A container's root filesystem: an overlay mount of the image's layers, as moby's overlay2
//! driver makes it. `<container_dir>/upper` takes the writes, `<container_dir>/work` is
//! overlay's scratch space and `<container_dir>/merged` is the mounted view.
//!
//! The kernel takes at most one page of mount data, and a deep image's `lowerdir` list of
//! `<root>/layers/<64 hex>/diff` paths outgrows it quickly. So every layer gets a short link
//! `layers/l/<26 chars>` → `../<chainID hex>/diff` (derived from the chainID: idempotent, no
//! state to keep), and the lowerdirs are named through those links:
//!
//! 1. relative to the container directory (`../../layers/l/<id>`, `upperdir=upper`,
//!    `workdir=work`) when the whole data fits in a page. Short options matter beyond the
//!    limit: the kernel prints them in `/proc/self/mountinfo` for every container's overlay,
//!    and the runtime and the cgroup v1 code read that file several times per start (with
//!    absolute paths, 9% of the CPU of `up -d` of 50 services went to printing it);
//! 2. otherwise relative links (`l/<id>`, 29 bytes a layer) resolved against the layers
//!    directory, as moby does.
//!
//!    Either way the process's working directory is never changed (other threads depend on
//!    it): the mount is made by a short-lived thread that first unshares its filesystem
//!    context (`CLONE_FS`: its own cwd) and then `fchdir`s to the directory;
//! 3. when even that does not fit (about 135 layers, more than Docker's limit of 128) the
//!    mount is refused with [`RootfsError::TooManyLayers`], which names the image, the layer
//!    count and the size: the image has to be squashed.
//!
//! Above the image's layers sits its **init layer** (`layers/init/<link id of the top
//! layer>`, shared by every container of the image, as read-only as the others): the mount
//! points the runtime needs (`/proc`, `/sys`, `/dev`, `/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf`) that no layer has. Without it the runtime created them in every
//! container's upper directory: seven inodes and overlay's create path per start, the largest
//! filesystem cost of `up` on small images. Docker's `<id>-init` layer holds the same entries,
//! made per container.

use std::ffi::{CString, OsString};
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::digest::Digest;
use crate::fsutil::{self, FsError};
use crate::images::ImageRecord;
use crate::layout::{LAYER_DIFF_DIR, LAYER_LINKS_DIR, LAYER_TMP_PREFIX, Root, Stores, mkdir_all};

/// The writable layer, inside the container directory.
pub const UPPER_DIR: &str = "upper";
/// Overlay's work directory, inside the container directory.
pub const WORK_DIR: &str = "work";
/// The mounted root filesystem, inside the container directory.
pub const MERGED_DIR: &str = "merged";
/// The lower directory of an image without layers, inside the container directory.
pub const EMPTY_LOWER_DIR: &str = "empty";
/// Init layers (see the module doc), under the layers directory.
pub const INIT_LAYERS_DIR: &str = "init";
/// Length of a layer's short link name in `layers/l/`.
pub const LINK_ID_LEN: usize = 26;
/// The most mount data the kernel copies: one page (4096 bytes on the usual platforms; the
/// smallest Linux page size, so also safe where pages are larger), including the final NUL.
pub const MAX_MOUNT_DATA: usize = 4096 - 1;

/// Present when the overlay module knows the `index` feature; moby then mounts with
/// `index=off`, because the inode index ties lower layers to one upper and refuses to share
/// them between containers when the kernel default turns it on.
const OVERLAY_INDEX_PARAM: &str = "/sys/module/overlay/parameters/index";
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Why a rootfs could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The kernel has no overlay filesystem (`ENODEV`).
    #[error("overlayfs is not available: load the overlay module (mounting {})", target.display())]
    OverlayUnavailable { target: PathBuf },
    /// A layer of the image is not in the layer store.
    #[error("image {image} needs layer {chain_id}, which is not in the layer store ({})", path.display())]
    LayerMissing {
        image: Digest,
        chain_id: Digest,
        path: PathBuf,
    },
    /// Even relative short links do not fit the kernel's one page of mount data.
    #[error(
        "image {image} has {layers} layers: its overlay mount data would be {bytes} bytes, over the kernel's limit of {MAX_MOUNT_DATA} (squash the image)"
    )]
    TooManyLayers {
        image: Digest,
        layers: usize,
        bytes: usize,
    },
    /// A path overlay cannot take in its options (a `,`, `:`, `\` or NUL in it).
    #[error("{} cannot be used in an overlay mount: it contains {found:?}", path.display())]
    UnusablePath { path: PathBuf, found: char },
    /// mount(2) failed.
    #[error("mount overlay at {}: {source}", target.display())]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// umount(2) failed.
    #[error("unmount {}: {source}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A container's overlay root filesystem. Dropping the handle leaves the mount in place (the
/// container outlives it); [`Rootfs::unmount`] takes it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    container_dir: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl Rootfs {
    /// The handle of the rootfs in `container_dir`, without touching anything (to unmount a
    /// rootfs mounted by an earlier process).
    pub fn at(container_dir: &Path) -> Rootfs {
        Rootfs {
            container_dir: container_dir.to_path_buf(),
            upper: container_dir.join(UPPER_DIR),
            work: container_dir.join(WORK_DIR),
            merged: container_dir.join(MERGED_DIR),
        }
    }

    /// Creates `container_dir/{upper,work,merged}` (keeping an existing upper: a restarted
    /// container keeps its writes) and mounts the image's layers there with overlay. Already
    /// mounted: returns the handle and mounts nothing. A new upper gets the mode and owner of
    /// the image's root directory, as in moby, because it is the merged view's `/`.
    pub fn mount(
        stores: &Stores,
        image: &ImageRecord,
        container_dir: &Path,
    ) -> Result<Rootfs, RootfsError> {
        let rootfs = Rootfs::at(container_dir);
        // Top layer first, as overlay wants them; every layer must be there.
        let mut diffs = Vec::with_capacity(image.layers.len());
        for layer in image.layers.iter().rev() {
            let diff = stores.layers.diff_dir(&layer.chain_id);
            if !fs::symlink_metadata(&diff).is_ok_and(|m| m.is_dir()) {
                return Err(RootfsError::LayerMissing {
                    image: image.id.clone(),
                    chain_id: layer.chain_id.clone(),
                    path: diff,
                });
            }
            diffs.push((layer.chain_id.clone(), diff));
        }
        mkdir_all(container_dir)?;
        if !rootfs.upper.exists() {
            rootfs.create_upper(diffs.first().map(|(_, d)| d.as_path()))?;
        }
        for (dir, mode) in [(&rootfs.work, 0o700), (&rootfs.merged, 0o700)] {
            create_dir(dir, mode)?;
        }
        if is_mounted(&rootfs.merged)? {
            return Ok(rootfs);
        }

        let layers_dir = stores.root.layers_dir();
        // Lower directories relative to the layers directory, top first.
        let mut lowers = Vec::with_capacity(diffs.len() + 1);
        if let Some((top, _)) = diffs.first() {
            let layer_diffs: Vec<&Path> = diffs.iter().map(|(_, d)| d.as_path()).collect();
            lowers.push(ensure_init_layer(&layers_dir, top, &layer_diffs)?);
        }
        for (chain_id, _) in &diffs {
            let id = ensure_layer_link(&stores.root, chain_id)?;
            lowers.push(format!("{LAYER_LINKS_DIR}/{id}"));
        }
        let empty_lower;
        let plan = if lowers.is_empty() {
            // overlay needs a lowerdir: an image without layers gets an empty one.
            empty_lower = container_dir.join(EMPTY_LOWER_DIR);
            create_dir(&empty_lower, 0o755)?;
            let lowers = [path_str(&empty_lower)?];
            MountPlan {
                data: overlay_data(&lowers, &rootfs.upper, &rootfs.work, index_off())?,
                relative_to: None,
            }
        } else {
            // Absolute, so that the relative forms are relative to the right directory.
            let absolute =
                |p: &Path| std::path::absolute(p).map_err(|e| FsError::io("resolve", p, e));
            plan_mount(
                &image.id,
                diffs.len(),
                &absolute(&layers_dir)?,
                &absolute(container_dir)?,
                &lowers,
            )?
        };
        let data = CString::new(plan.data).map_err(|_| RootfsError::UnusablePath {
            path: container_dir.to_path_buf(),
            found: '\0',
        })?;
        let result = match &plan.relative_to {
            None => mount_overlay(&rootfs.merged, &data),
            // The target too must not be relative to the thread's new directory.
            Some(dir) => std::path::absolute(&rootfs.merged)
                .and_then(|merged| mount_overlay_from(dir, &merged, &data)),
        };
        result.map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::NODEV) => RootfsError::OverlayUnavailable {
                target: rootfs.merged.clone(),
            },
            _ => RootfsError::Mount {
                target: rootfs.merged.clone(),
                source: e,
            },
        })?;
        Ok(rootfs)
    }

    fn create_upper(&self, top_diff: Option<&Path>) -> Result<(), RootfsError> {
        create_dir(&self.upper, 0o755)?;
        let Some(top) = top_diff else {
            return Ok(());
        };
        let meta = fs::metadata(top).map_err(|e| FsError::io("stat", top, e))?;
        fs::set_permissions(
            &self.upper,
            fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(|e| FsError::io("chmod", &self.upper, e))?;
        std::os::unix::fs::chown(&self.upper, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| FsError::io("chown", &self.upper, e))?;
        Ok(())
    }

    /// Unmounts the rootfs; nothing to do when it is not mounted. When the mount is busy (a
    /// process still has a file or its cwd in it) it falls back to a lazy detach: the view
    /// disappears at once and the kernel frees it when the last user goes (logged as a
    /// warning). The directories stay: they belong to the container.
    pub fn unmount(&self) -> Result<(), RootfsError> {
        if !is_mounted(&self.merged)? {
            return Ok(());
        }
        let err = |e: Errno| RootfsError::Unmount {
            target: self.merged.clone(),
            source: e.into(),
        };
        match rustix::mount::unmount(&self.merged, UnmountFlags::empty()) {
            // Not (or no longer) a mount point: another caller unmounted it first.
            Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
            Err(Errno::BUSY) => {
                tracing::warn!(
                    path = %self.merged.display(),
                    "rootfs is busy, detaching it lazily"
                );
                match rustix::mount::unmount(&self.merged, UnmountFlags::DETACH) {
                    Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The container directory.
    pub fn container_dir(&self) -> &Path {
        &self.container_dir
    }

    /// The mounted view: the container's `/`.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// Where the container's writes land.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// Overlay's work directory.
    pub fn work(&self) -> &Path {
        &self.work
    }
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), FsError> {
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FsError::io("create directory", dir, e)),
    }
}

/// The short link name of a layer: the first 128 bits of its chainID in base32 (RFC 4648
/// alphabet, no padding), [`LINK_ID_LEN`] characters.
pub fn link_id(chain_id: &Digest) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // A digest's hex is always valid hex.
    let value = u128::from_str_radix(&chain_id.hex()[..32], 16).unwrap_or_default();
    // 26 five-bit groups cover 130 bits: the last group is the last 3 bits and two zeros.
    (0..LINK_ID_LEN)
        .map(|i| {
            let shift = 128 - 5 * (i as i32 + 1);
            let group = if shift >= 0 {
                (value >> shift) & 0x1f
            } else {
                (value << -shift) & 0x1f
            };
            char::from(ALPHABET[group as usize])
        })
        .collect()
}

/// Makes sure `layers/l/<link id>` points to `../<chainID hex>/diff` (creating or repairing
/// it) and returns the link id.
pub fn ensure_layer_link(root: &Root, chain_id: &Digest) -> Result<String, FsError> {
    let dir = root.layer_links_dir();
    mkdir_all(&dir)?;
    let id = link_id(chain_id);
    let link = dir.join(&id);
    let target = PathBuf::from(format!("../{}/{LAYER_DIFF_DIR}", chain_id.hex()));
    match std::os::unix::fs::symlink(&target, &link) {
        Ok(()) => return Ok(id),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(FsError::io("create symlink", &link, e)),
    }
    if fs::read_link(&link).is_ok_and(|t| t == target) {
        return Ok(id);
    }
    // Something else sits there: replace it atomically.
    let tmp = dir.join(fsutil::unique_name(".tmp-"));
    std::os::unix::fs::symlink(&target, &tmp)
        .map_err(|e| FsError::io("create symlink", &tmp, e))?;
    if let Err(e) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::io("rename", &link, e));
    }
    Ok(id)
}

/// The mount data and the directory its relative paths are resolved against (none for an
/// image without layers, whose one lower directory is absolute).
#[derive(Debug, PartialEq, Eq)]
struct MountPlan {
    data: String,
    relative_to: Option<PathBuf>,
}

/// Chooses how to name the lower directories `lowers` (given relative to `layers_dir`:
/// `l/<link id>`, `init/<link id>`; top first) and the upper and work directories of
/// `container_dir` (see the module doc): relative to the container directory when that fits,
/// else relative to the layers directory. `layers` is the image's layer count, for the error.
fn plan_mount(
    image: &Digest,
    layers: usize,
    layers_dir: &Path,
    container_dir: &Path,
    lowers: &[String],
) -> Result<MountPlan, RootfsError> {
    let index_off = index_off();
    if let Some(up) = relative_path(container_dir, layers_dir) {
        let up = path_str(&up)?;
        let rel: Vec<String> = lowers.iter().map(|l| format!("{up}/{l}")).collect();
        let data = overlay_data(&rel, Path::new(UPPER_DIR), Path::new(WORK_DIR), index_off)?;
        if data.len() <= MAX_MOUNT_DATA {
            return Ok(MountPlan {
                data,
                relative_to: Some(container_dir.to_path_buf()),
            });
        }
    }
    let upper = container_dir.join(UPPER_DIR);
    let work = container_dir.join(WORK_DIR);
    let data = overlay_data(lowers, &upper, &work, index_off)?;
    if data.len() <= MAX_MOUNT_DATA {
        return Ok(MountPlan {
            data,
            relative_to: Some(layers_dir.to_path_buf()),
        });
    }
    Err(RootfsError::TooManyLayers {
        image: image.clone(),
        layers,
        bytes: data.len() + 1,
    })
}

/// `to` relative to `from` (both absolute, without `.` or `..`): `../..` up to their common
/// ancestor, then down. `None` when either is not absolute.
fn relative_path(from: &Path, to: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !from.is_absolute() || !to.is_absolute() {
        return None;
    }
    let plain = |p: &Path| {
        p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if !plain(from) || !plain(to) {
        return None;
    }
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c);
    }
    Some(rel)
}

/// The runtime's mount points that an init layer provides when the image lacks them:
/// relative path, and whether it is a directory (else an empty file).
const INIT_ENTRIES: &[(&str, bool)] = &[
    ("proc", true),
    ("sys", true),
    ("dev", true),
    ("etc/hostname", false),
    ("etc/hosts", false),
    ("etc/resolv.conf", false),
];

/// The init layer of the image whose top layer is `top` and whose layer diff directories are
/// `diffs` (top first): made once (in a temporary directory renamed into place, so concurrent
/// starts agree), then shared. Returns its path relative to `layers_dir`.
fn ensure_init_layer(layers_dir: &Path, top: &Digest, diffs: &[&Path]) -> Result<String, FsError> {
    let rel = format!("{INIT_LAYERS_DIR}/{}", link_id(top));
    let dir = layers_dir.join(&rel);
    if dir.is_dir() {
        return Ok(rel);
    }
    let parent = layers_dir.join(INIT_LAYERS_DIR);
    mkdir_all(&parent)?;
    let tmp = parent.join(fsutil::unique_name(LAYER_TMP_PREFIX));
    let made = (|| {
        create_dir(&tmp, 0o755)?;
        fill_init_layer(&tmp, diffs)?;
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // Another start made it first: theirs is the same.
            Err(e) if dir.is_dir() => {
                tracing::debug!(error = %e, "init layer made concurrently");
                fsutil::remove_dir_all_best_effort(&tmp);
                Ok(())
            }
            Err(e) => Err(FsError::io("rename", &dir, e)),
        }
    })();
    if made.is_err() {
        fsutil::remove_dir_all_best_effort(&tmp);
    }
    made.map(|()| rel)
}

/// Creates in `init` every [`INIT_ENTRIES`] entry that no layer of `diffs` has. An entry that
/// some layer has in any form (a whiteout too), or below something that is not a directory
/// in some layer, is left out: the runtime then makes it in the upper directory as before.
/// A parent directory that some layer has is made with the mode and owner of the topmost
/// one, because the init layer's copy is the one the container sees.
fn fill_init_layer(init: &Path, diffs: &[&Path]) -> Result<(), FsError> {
    'entries: for (entry, is_dir) in INIT_ENTRIES {
        let entry = Path::new(entry);
        if diffs
            .iter()
            .any(|d| !matches!(fs::symlink_metadata(d.join(entry)), Err(e) if e.kind() == io::ErrorKind::NotFound))
        {
            continue;
        }
        // Parents, outermost first, with the attributes of the topmost layer that has them.
        let mut parents = Vec::new();
        for parent in entry.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            let mut attrs = None;
            for d in diffs {
                match fs::symlink_metadata(d.join(parent)) {
                    Ok(m) if m.is_dir() => {
                        attrs = Some((m.mode() & 0o7777, m.uid(), m.gid()));
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    _ => continue 'entries,
                }
            }
            parents.push((parent, attrs));
        }
        for (parent, attrs) in parents.into_iter().rev() {
            let path = init.join(parent);
            if path.is_dir() {
                continue;
            }
            let (mode, uid, gid) = attrs.unwrap_or((0o755, 0, 0));
            create_dir(&path, 0o755)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| FsError::io("chmod", &path, e))?;
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|e| FsError::io("chown", &path, e))?;
        }
        let path = init.join(entry);
        if *is_dir {
            create_dir(&path, 0o755)?;
        } else {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| FsError::io("create", &path, e))?;
        }
    }
    Ok(())
}

fn index_off() -> bool {
    Path::new(OVERLAY_INDEX_PARAM).exists()
}

/// `[index=off,]lowerdir=a:b:c,upperdir=…,workdir=…`.
fn overlay_data(
    lowers: &[String],
    upper: &Path,
    work: &Path,
    index_off: bool,
) -> Result<String, RootfsError> {
    let mut data = String::new();
    if index_off {
        data.push_str("index=off,");
    }
    data.push_str("lowerdir=");
    data.push_str(&lowers.join(":"));
    data.push_str(",upperdir=");
    data.push_str(&path_str(upper)?);
    data.push_str(",workdir=");
    data.push_str(&path_str(work)?);
    Ok(data)
}

/// The path as overlay options take it: UTF-8 without the separators `,` and `:`, the escape
/// `\` or NUL (berth chooses these paths; refusing is clearer than escaping).
fn path_str(path: &Path) -> Result<String, RootfsError> {
    let s = path.to_str().ok_or_else(|| RootfsError::UnusablePath {
        path: path.to_path_buf(),
        found: char::REPLACEMENT_CHARACTER,
    })?;
    if let Some(found) = s.chars().find(|c| matches!(c, ',' | ':' | '\\' | '\0')) {
        return Err(RootfsError::UnusablePath {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(s.to_string())
}

fn mount_overlay(merged: &Path, data: &CString) -> io::Result<()> {
    rustix::mount::mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )?;
    Ok(())
}

/// Mounts with relative lowerdirs resolved against `dir`, from a thread with its own working
/// directory so that no other thread sees a chdir.
fn mount_overlay_from(dir: &Path, merged: &Path, data: &CString) -> io::Result<()> {
    let dirfd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            sys::unshare_fs()?;
            rustix::process::fchdir(&dirfd)?;
            mount_overlay(merged, data)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
    })
}

#[allow(unsafe_code)]
mod sys {
    /// Gives the calling thread its own filesystem context (cwd, root, umask), so a chdir in
    /// it moves no other thread. The thread's context goes away when it exits.
    pub(super) fn unshare_fs() -> std::io::Result<()> {
        // SAFETY: only CLONE_FS is unshared: the thread gets a private copy of its cwd, root
        // and umask. The file descriptor table (CLONE_FILES, the reason unshare is unsafe) stays
        // shared, so every descriptor remains valid in every thread.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
        Ok(())
    }
}

/// Whether `path` is a mount point in this process's mount namespace (per
/// `/proc/self/mountinfo`). A path that does not exist is not mounted.
pub fn is_mounted(path: &Path) -> Result<bool, FsError> {
    let canonical = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FsError::io("resolve", path, e)),
    };
    // statx says it in one call (Linux 5.8+); mountinfo grows with every container's
    // overlay, so reading it per start and stop made `up` of N containers O(N²).
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    if let Ok(r) = rustix::fs::statx(
        rustix::fs::CWD,
        &canonical,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) && r.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return Ok(r.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    let info = fs::read(MOUNTINFO).map_err(|e| FsError::io("read", MOUNTINFO, e))?;
    Ok(mount_points(&info).any(|p| p == canonical))
}

/// The mount points (5th field, octal escapes decoded) of a mountinfo text.
fn mount_points(info: &[u8]) -> impl Iterator<Item = PathBuf> + '_ {
    info.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_octal(field))))
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> Digest {
        Digest::of_bytes(format!("layer {n}").as_bytes())
    }

    #[test]
    fn link_ids_are_short_distinct_and_stable() {
        let zero = Digest::from_hex(&"0".repeat(64)).unwrap();
        assert_eq!(link_id(&zero), "A".repeat(26));
        let ones = Digest::from_hex(&"f".repeat(64)).unwrap();
        // 128 one bits: 25 full groups, then the last 3 bits padded with two zeros.
        assert_eq!(link_id(&ones), format!("{}4", "7".repeat(25)));
        let a = link_id(&digest(1));
        assert_eq!(a.len(), LINK_ID_LEN);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(a, link_id(&digest(1)));
        let all: std::collections::HashSet<String> =
            (0..1000).map(|n| link_id(&digest(n))).collect();
        assert_eq!(all.len(), 1000);
    }

    #[test]
    fn links_are_created_repaired_and_resolve_to_the_diff_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let c = digest(7);
        fs::create_dir_all(root.layer_dir(&c).join("diff")).unwrap();
        fs::write(root.layer_dir(&c).join("diff/file"), b"x").unwrap();
        let id = ensure_layer_link(&root, &c).unwrap();
        assert_eq!(ensure_layer_link(&root, &c).unwrap(), id);
        let link = root.layer_links_dir().join(&id);
        assert_eq!(fs::read(link.join("file")).unwrap(), b"x");
        // A wrong link is replaced.
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("../elsewhere/diff", &link).unwrap();
        ensure_layer_link(&root, &c).unwrap();
        assert_eq!(fs::read(link.join("file")).unwrap(), b"x");
        let names: Vec<_> = fs::read_dir(root.layer_links_dir()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp link left");
    }

    #[test]
    fn mount_data_is_relative_to_the_container_then_to_the_layers_then_refused() {
        let layers = Path::new("/var/lib/berth-with-a-rather-long-root-path/layers");
        let container = Path::new("/var/lib/berth-with-a-rather-long-root-path/containers/0123");
        let image = digest(0);
        let ids = |n: u32| (0..n).map(|i| link_id(&digest(i))).collect::<Vec<_>>();
        let lowers = |n: u32| {
            ids(n)
                .iter()
                .map(|id| format!("l/{id}"))
                .collect::<Vec<_>>()
        };

        let few = plan_mount(&image, 3, layers, container, &lowers(3)).unwrap();
        assert_eq!(few.relative_to.as_deref(), Some(container));
        let first = format!("../../layers/l/{}", ids(1)[0]);
        assert!(
            few.data.contains(&format!("lowerdir={first}:")),
            "{}",
            few.data
        );
        assert!(
            few.data.ends_with(",upperdir=upper,workdir=work"),
            "{}",
            few.data
        );

        let deep = plan_mount(&image, 120, layers, container, &lowers(120)).unwrap();
        assert_eq!(deep.relative_to.as_deref(), Some(layers));
        assert!(deep.data.len() <= MAX_MOUNT_DATA, "{}", deep.data.len());
        assert!(deep.data.contains(&format!("lowerdir=l/{}:l/", ids(1)[0])));
        assert_eq!(deep.data.matches(":l/").count(), 119);
        assert!(deep.data.ends_with(&format!(
            ",upperdir={}/upper,workdir={}/work",
            container.display(),
            container.display()
        )));

        let err = plan_mount(&image, 200, layers, container, &lowers(200)).unwrap_err();
        assert!(
            matches!(err, RootfsError::TooManyLayers { layers: 200, bytes, .. } if bytes > 4096),
            "{err}"
        );
        assert!(err.to_string().contains(&image.to_string()), "{err}");

        // A separator in the root does not matter to relative paths, only to absolute ones.
        let bad = Path::new("/tmp/a,b/containers/0123");
        let bad_layers = Path::new("/tmp/a,b/layers");
        assert!(plan_mount(&image, 1, bad_layers, bad, &lowers(1)).is_ok());
        let err = plan_mount(&image, 120, bad_layers, bad, &lowers(120)).unwrap_err();
        assert!(
            matches!(err, RootfsError::UnusablePath { found: ',', .. }),
            "{err}"
        );
    }

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b));
        assert_eq!(
            rel("/r/containers/x", "/r/layers"),
            Some("../../layers".into())
        );
        assert_eq!(rel("/r", "/r/layers"), Some("layers".into()));
        assert_eq!(rel("/a/b", "/c"), Some("../../c".into()));
        assert_eq!(rel("a/b", "/c"), None);
        assert_eq!(rel("/a/../b", "/c"), None);
    }

    #[test]
    fn init_layer_has_the_mount_points_no_layer_has() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        let bottom = t.path().join("bottom");
        let init = t.path().join("init");
        for d in [&top, &bottom, &init] {
            fs::create_dir(d).unwrap();
        }
        // The image has /dev, a 0700 /etc lower down and a 0750 one on top, /etc/hosts as a
        // symlink and /sys as a file: any entry counts as present, whatever its kind.
        fs::create_dir(bottom.join("dev")).unwrap();
        fs::create_dir(bottom.join("etc")).unwrap();
        fs::set_permissions(bottom.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(top.join("etc")).unwrap();
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("../run/hosts", top.join("etc/hosts")).unwrap();
        fs::write(bottom.join("sys"), b"").unwrap();

        fill_init_layer(&init, &[top.as_path(), bottom.as_path()]).unwrap();
        let mut made: Vec<String> = walk(&init);
        made.sort();
        assert_eq!(made, ["etc", "etc/hostname", "etc/resolv.conf", "proc"]);
        // The topmost /etc's mode is kept: the init layer's copy is the one seen.
        let mode = fs::metadata(init.join("etc")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        assert!(fs::metadata(init.join("proc")).unwrap().is_dir());
        assert_eq!(fs::metadata(init.join("etc/hostname")).unwrap().len(), 0);

        // /etc that is not a directory somewhere: nothing is made below it.
        let odd = t.path().join("odd");
        let init2 = t.path().join("init2");
        fs::create_dir(&odd).unwrap();
        fs::create_dir(&init2).unwrap();
        symlink("/private/etc", odd.join("etc")).unwrap();
        fill_init_layer(&init2, &[odd.as_path()]).unwrap();
        let mut made = walk(&init2);
        made.sort();
        assert_eq!(made, ["dev", "proc", "sys"]);
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                if p.is_dir() && !p.is_symlink() {
                    todo.push(p);
                }
            }
        }
        out
    }

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            90 27 0:50 / /tmp/with\\040space/merged rw - overlay overlay rw,lowerdir=l/A\n\
            91 27 0:51 / /tmp/back\\134slash rw - tmpfs tmpfs rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/proc"),
                PathBuf::from("/tmp/with space/merged"),
                PathBuf::from("/tmp/back\\slash"),
            ]
        );
    }

    #[test]
    fn is_mounted_knows_proc_and_a_plain_directory() {
        assert!(is_mounted(Path::new("/proc")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(dir.path()).unwrap());
        assert!(!is_mounted(&dir.path().join("missing")).unwrap());
    }
}
