//! `container cp`, `export`, `top` and `stats`: looking into a container from the host.
//!
//! **Files** ([`RootfsAccess`], [`copy_out`], [`copy_in`], [`export`]) go through the
//! container's overlay rootfs at `<dir>/merged`. A running container's is mounted by its shim;
//! a stopped one's is mounted for the operation and unmounted afterwards (unless a shim started
//! meanwhile and now uses it). Every path inside the container is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the rootfs, as if chrooted
//! there: `..`, absolute symlinks and symlinked directories in the container cannot make berth
//! read or write a host file. Entries of the archives berth extracts are resolved the same way
//! (in the rootfs for a copy in, in the destination directory for a copy out), and an entry
//! whose path climbs out with `..` is refused.
//!
//! Docker's rules for `SRC` and `DEST` apply (see [`plan`]): a file onto a file replaces it, a
//! file or directory into an existing directory lands inside it under its own name, a
//! directory onto a missing path becomes that path, `SRC/.` copies a directory's content, a
//! trailing `/` on `DEST` says it must be a directory. Symlinks are copied as links (`-L`
//! follows the one `SRC` names). Files copied into the container belong to root unless
//! `archive` keeps their uid/gid; files copied out belong to the caller.
//!
//! Not like Docker: volumes, binds and tmpfs mounts are not visible through the rootfs (they
//! are mounted in the container's own mount namespace), so `cp` and `export` see the rootfs
//! directory underneath them; xattrs (file capabilities) are not carried.
//!
//! **Processes and usage** ([`CgroupFs`], [`top`], [`stats`]): the container's processes are
//! its cgroup's `cgroup.procs` (cgroup v1: any controller that has the cgroup; v2: the unified
//! tree), described from `/proc` as `ps -ef` does; usage is read from the cgroup files of
//! either version and turned into Docker's numbers and units.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, StatxFlags, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

use crate::container::config::NetworkConfig;
use crate::container::store::{ContainerDir, StoreError};
use crate::fsutil::FsError;
use crate::images::ImageError;
use crate::layout::Stores;
use crate::rootfs::{self, Rootfs, RootfsError};

/// Why a `cp`, `export`, `top` or `stats` failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// `top` on a container that does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The image the rootfs is made of is not in the store any more.
    #[error("container {name}: its image {image} is gone")]
    ImageGone { name: String, image: String },
    /// `SRC` does not exist in the container (docker's wording).
    #[error("Could not find the file {path} in container {container}")]
    NoSuchPath { container: String, path: String },
    /// `SRC` does not exist on the host.
    #[error("no such file or directory: {0}")]
    NoSuchHostPath(String),
    /// A file-system operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// `DEST` says (trailing `/`) or must be (`-` input) a directory and is not one.
    #[error("destination \"{0}\" must be a directory")]
    NotADirectory(String),
    /// `SRC` ends with `/` but is not a directory.
    #[error("source \"{0}\" is not a directory")]
    SourceNotADirectory(String),
    /// A directory cannot replace an existing file.
    #[error("cannot copy directory \"{src}\" onto file \"{dest}\"")]
    DirectoryOntoFile { src: String, dest: String },
    /// `DEST`, or the directory it would be created in, does not exist.
    #[error("no such directory: {0}")]
    NoSuchDirectory(String),
    /// Copying into a container whose rootfs is read-only (`--read-only`).
    #[error("container {0}: its rootfs is marked read-only")]
    ReadOnly(String),
    /// An archive entry whose path climbs out of the destination with `..`.
    #[error("invalid archive entry {0:?}: it leaves the destination")]
    Breakout(String),
    /// An archive entry would replace a directory by a non-directory or the reverse.
    #[error("cannot overwrite {existing} \"{path}\" with {with}")]
    Overwrite {
        path: String,
        existing: &'static str,
        with: &'static str,
    },
    /// A cgroup or `/proc` file does not say what it should.
    #[error("unexpected content in {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
}

fn io_err(op: &'static str, path: impl AsRef<[u8]>) -> impl FnOnce(io::Error) -> OpsError {
    let path = String::from_utf8_lossy(path.as_ref()).into_owned();
    move |source| OpsError::Io { op, path, source }
}

fn errno(op: &'static str, path: impl AsRef<[u8]>) -> impl FnOnce(Errno) -> OpsError {
    let f = io_err(op, path);
    move |e| f(e.into())
}

// ---------------------------------------------------------------------------------------------
// The rootfs

/// A container's root filesystem opened for `cp` or `export`: a directory fd on its merged
/// overlay. A running container's is reached in its shim's mount namespace (see
/// [`live_rootfs`]); a stopped container's is mounted on the host for the access, and
/// [`RootfsAccess::close`] (or drop) unmounts what it mounted.
#[derive(Debug)]
pub struct RootfsAccess {
    root: Option<OwnedFd>,
    mounted_here: Option<Rootfs>,
    /// `rootfs.lock`, held while a mount of this access's own stands: a shim that starts
    /// meanwhile waits for it rather than mount the same upper directory a second time.
    mounting: Option<crate::fsutil::Lock>,
    dir: ContainerDir,
    name: String,
    read_only: bool,
    network_host: bool,
}

impl RootfsAccess {
    /// Opens the rootfs of the container in `dir`, mounting it when no shim has it mounted.
    pub fn open(stores: &Stores, dir: &ContainerDir) -> Result<RootfsAccess, OpsError> {
        let config = dir.config()?;
        let mut access = RootfsAccess {
            root: None,
            mounted_here: None,
            mounting: None,
            dir: dir.clone(),
            name: config.name.clone(),
            read_only: config.read_only,
            network_host: config.network == NetworkConfig::Host,
        };
        let mounting = crate::fsutil::Lock::exclusive(&dir.rootfs_lock())?;
        if let Some(fd) = live_rootfs(dir)? {
            access.root = Some(fd);
            return Ok(access);
        }
        let rootfs = Rootfs::at(&dir.path);
        if !rootfs::is_mounted(rootfs.merged())? {
            let gone = || OpsError::ImageGone {
                name: config.name.clone(),
                image: config
                    .image_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| config.image_name.clone()),
            };
            let image_id = config.image_id.as_ref().ok_or_else(gone)?;
            let image = stores.images.get(image_id)?.ok_or_else(gone)?;
            access.mounted_here = Some(Rootfs::mount(stores, &image, &dir.path)?);
            access.mounting = Some(mounting);
        }
        let merged = rootfs.merged();
        let fd = rustix::fs::open(
            merged,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("open", merged.as_os_str().as_bytes()))?;
        access.root = Some(fd);
        Ok(access)
    }

    /// The container's `/`.
    pub fn root(&self) -> Result<BorrowedFd<'_>, OpsError> {
        self.root
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| OpsError::Io {
                op: "open",
                path: self.dir.path.display().to_string(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unmounts the rootfs if this access mounted it.
    pub fn close(mut self) -> Result<(), OpsError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), OpsError> {
        // Our fd would keep the mount busy.
        self.root = None;
        let result = match self.mounted_here.take() {
            Some(rootfs) => rootfs.unmount().map_err(OpsError::from),
            None => Ok(()),
        };
        // Only now may a waiting shim mount it.
        self.mounting = None;
        result
    }
}

/// The rootfs of a running container as its shim mounted it: `/proc/<shim>/root` resolves
/// paths in the shim's mount namespace, where the overlay is (on the host there is none). A
/// directory fd (`O_PATH`), or `None` when no shim runs the container. The shim's start time
/// is checked after the open, so a recycled pid is never taken for the shim.
pub fn live_rootfs(dir: &ContainerDir) -> Result<Option<OwnedFd>, OpsError> {
    if !dir.shim_alive()? {
        return Ok(None);
    }
    let state = dir.state()?;
    let (Some(pid), Some(started)) = (state.shim_pid, state.shim_start_time) else {
        return Ok(None);
    };
    let merged = Rootfs::at(&dir.path).merged().to_path_buf();
    let merged =
        fs::canonicalize(&merged).map_err(io_err("resolve", merged.as_os_str().as_bytes()))?;
    let mut path = PathBuf::from(format!("/proc/{pid}/root"));
    path.push(merged.strip_prefix("/").unwrap_or(&merged));
    let fd = match rustix::fs::open(
        &path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // The shim exited meanwhile.
        Err(Errno::NOENT | Errno::SRCH) => return Ok(None),
        Err(e) => return Err(errno("open", path.as_os_str().as_bytes())(e)),
    };
    if crate::container::shim::process_start_time(pid) != Some(started) {
        return Ok(None);
    }
    Ok(Some(fd))
}

impl Drop for RootfsAccess {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(container = %self.name, error = %e, "cannot unmount the rootfs");
        }
    }
}

/// See [`crate::fsutil::open_in_root`].
fn open_in_root(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    crate::fsutil::open_in_root(dir, path, flags)
}

fn fstatx(fd: BorrowedFd<'_>) -> Result<rustix::fs::Statx, Errno> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
}

fn is_dir(st: &rustix::fs::Statx) -> bool {
    FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory
}

/// Docker's lexical cleaning of a path: `.` and empty components dropped, `..` removes the
/// previous one (never above the start).
fn clean(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

/// What a `cp` path says beyond its components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathSpec<'a> {
    components: Vec<&'a [u8]>,
    /// Ends with `/` or `/.`.
    asserts_dir: bool,
    /// Ends with `/.` (or is `/`): a directory's content, not the directory.
    content_only: bool,
}

fn path_spec(raw: &[u8]) -> PathSpec<'_> {
    let components = clean(raw);
    let asserts_dir = raw.ends_with(b"/") || raw.ends_with(b"/.") || raw == b".";
    let content_only = raw.ends_with(b"/.") || raw == b"." || components.is_empty();
    PathSpec {
        components,
        asserts_dir,
        content_only,
    }
}

/// What is at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// A directory (or a symlink to one).
    Dir,
    /// Anything else.
    NonDir,
    /// Nothing.
    Missing,
}

/// Where a copy lands, decided by Docker's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Extract into `DEST` itself, the source named `name` there (`""`: its content only).
    Into { name: Vec<u8> },
    /// Extract into the directory containing `DEST`, the source named as `DEST`'s last
    /// component.
    Beside { name: Vec<u8> },
}

/// One side of a copy as [`plan`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// Source: a directory. Destination: ignored.
    pub is_dir: bool,
    /// Spelled with a final `/.` (source) or `/` (destination).
    pub dir_syntax: bool,
    /// The last path component (empty for `/`).
    pub base: &'a [u8],
    /// As the user wrote it, for messages.
    pub shown: &'a str,
}

/// Docker's rules for where a copy of `src` lands at a destination `dest` of kind `kind`.
pub fn plan(src: Side<'_>, dest: Side<'_>, kind: DestKind) -> Result<Plan, OpsError> {
    let (src_is_dir, src_content_only, src_base, src_name) =
        (src.is_dir, src.dir_syntax, src.base, src.shown);
    let (dest_asserts_dir, dest_base, dest_name) = (dest.dir_syntax, dest.base, dest.shown);
    let dest = kind;
    match dest {
        DestKind::Dir => Ok(Plan::Into {
            name: if src_is_dir && src_content_only {
                Vec::new()
            } else {
                src_base.to_vec()
            },
        }),
        DestKind::NonDir if src_is_dir => Err(OpsError::DirectoryOntoFile {
            src: src_name.to_string(),
            dest: dest_name.to_string(),
        }),
        DestKind::NonDir if dest_asserts_dir => Err(OpsError::NotADirectory(dest_name.to_string())),
        DestKind::Missing if dest_asserts_dir && !src_is_dir => {
            Err(OpsError::NoSuchDirectory(dest_name.to_string()))
        }
        DestKind::NonDir | DestKind::Missing => {
            if dest_base.is_empty() {
                // `/` or a path cleaned to nothing: it is a directory that exists.
                return Err(OpsError::NoSuchDirectory(dest_name.to_string()));
            }
            Ok(Plan::Beside {
                name: dest_base.to_vec(),
            })
        }
    }
}

/// Options of `cp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `-a`: files copied into the container keep their uid/gid (root:root otherwise).
    pub archive: bool,
    /// `-L`: follow a symlink named by `SRC` (it is copied as a link otherwise).
    pub follow_link: bool,
}

/// Where `cp` from a container writes.
pub enum CopyOutDest<'a> {
    /// `-`: a tar stream.
    Stream(&'a mut dyn Write),
    /// A host path.
    Host(&'a Path),
}

/// What `cp` into a container reads.
pub enum CopyInSource<'a> {
    /// `-`: a tar stream, extracted into `DEST` (which must be a directory).
    Stream(&'a mut dyn Read),
    /// A host path.
    Host(&'a Path),
}

/// A source located: its stat and how to read it.
struct Located {
    st: rustix::fs::Statx,
    node: Node,
    base: Vec<u8>,
    content_only: bool,
}

/// Finds `raw` under `root` (confined). `follow`: a final symlink is followed (confined too).
/// `None` when it does not exist.
fn locate(root: BorrowedFd<'_>, raw: &[u8], follow: bool) -> Result<Option<Located>, OpsError> {
    let spec = path_spec(raw);
    let shown = String::from_utf8_lossy(raw).into_owned();
    let full = join(&spec.components);
    let base = spec.components.last().map_or(b".".to_vec(), |c| c.to_vec());
    let (st, node) = if follow || spec.components.is_empty() || spec.asserts_dir {
        let fd = match open_in_root(root, &full, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::NOTDIR) if spec.asserts_dir => {
                return Err(OpsError::SourceNotADirectory(shown));
            }
            Err(e) => return Err(errno("open", raw)(e)),
        };
        let st = fstatx(fd.as_fd()).map_err(errno("stat", raw))?;
        let node = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
            FileType::Directory => Node::Dir(
                open_in_root(root, &full, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(errno("open", raw))?,
            ),
            FileType::RegularFile => {
                Node::File(open_in_root(root, &full, OFlags::RDONLY).map_err(errno("open", raw))?)
            }
            _ => special_node(&st),
        };
        (st, node)
    } else {
        let parent = join(&spec.components[..spec.components.len() - 1]);
        let pfd = match open_in_root(root, &parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(errno("open", &parent)(e)),
        };
        let name =
            CString::new(base.clone()).map_err(|_| OpsError::NoSuchHostPath(shown.clone()))?;
        let st = match rustix::fs::statx(
            &pfd,
            name.as_c_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        ) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(errno("stat", raw)(e)),
        };
        let node = open_child(pfd.as_fd(), &name, &st).map_err(errno("open", raw))?;
        (st, node)
    };
    if spec.asserts_dir && !is_dir(&st) {
        return Err(OpsError::SourceNotADirectory(shown));
    }
    Ok(Some(Located {
        st,
        node,
        base,
        content_only: spec.content_only,
    }))
}

/// What is at `raw` under `root`, final symlink followed (confined).
fn dest_kind(root: BorrowedFd<'_>, components: &[&[u8]]) -> Result<DestKind, OpsError> {
    let full = join(components);
    match open_in_root(root, &full, OFlags::PATH) {
        Ok(fd) => {
            let st = fstatx(fd.as_fd()).map_err(errno("stat", &full))?;
            Ok(if is_dir(&st) {
                DestKind::Dir
            } else {
                DestKind::NonDir
            })
        }
        Err(Errno::NOENT) => Ok(DestKind::Missing),
        Err(Errno::NOTDIR) => Ok(DestKind::NonDir),
        Err(e) => Err(errno("stat", &full)(e)),
    }
}

fn require_dir(root: BorrowedFd<'_>, components: &[&[u8]], shown: &str) -> Result<(), OpsError> {
    match dest_kind(root, components)? {
        DestKind::Dir => Ok(()),
        _ => Err(OpsError::NoSuchDirectory(shown.to_string())),
    }
}

/// `cp CONTAINER:SRC DEST`: copies `src` (a path in the container) to a host path or as a tar
/// stream.
pub fn copy_out(
    access: &RootfsAccess,
    src: &str,
    dest: CopyOutDest<'_>,
    opts: &CopyOptions,
) -> Result<(), OpsError> {
    let root = access.root()?;
    let located =
        locate(root, src.as_bytes(), opts.follow_link)?.ok_or_else(|| OpsError::NoSuchPath {
            container: access.name.clone(),
            path: src.to_string(),
        })?;
    match dest {
        CopyOutDest::Stream(w) => {
            let name = if located.content_only && is_dir(&located.st) {
                b".".to_vec()
            } else {
                located.base.clone()
            };
            let mut ar = Archiver::new(w);
            ar.node(located.node, &located.st, &name)
                .map_err(io_err("archive", src))?;
            ar.finish().map_err(io_err("write archive of", src))
        }
        CopyOutDest::Host(path) => {
            let dest = std::path::absolute(path).map_err(io_err("resolve", path_bytes(path)))?;
            let raw = path.as_os_str().as_bytes();
            let kind = match fs::metadata(&dest) {
                Ok(m) if m.is_dir() => DestKind::Dir,
                Ok(_) => DestKind::NonDir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => DestKind::Missing,
                Err(e) => return Err(io_err("stat", path_bytes(path))(e)),
            };
            let spec = path_spec(raw);
            let dest_base = if raw.ends_with(b"..") {
                Vec::new()
            } else {
                dest.file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default()
            };
            let shown = path.display().to_string();
            let plan = plan(
                Side {
                    is_dir: is_dir(&located.st),
                    dir_syntax: located.content_only,
                    base: &located.base,
                    shown: src,
                },
                Side {
                    is_dir: kind == DestKind::Dir,
                    dir_syntax: spec.asserts_dir,
                    base: &dest_base,
                    shown: &shown,
                },
                kind,
            )?;
            let (dir, name) = match plan {
                Plan::Into { name } => (dest.clone(), name),
                Plan::Beside { name } => {
                    let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
                    if !parent.is_dir() {
                        return Err(OpsError::NoSuchDirectory(parent.display().to_string()));
                    }
                    (parent, name)
                }
            };
            let dir_fd = rustix::fs::open(
                &dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno("open", path_bytes(&dir)))?;
            transfer(located, &name, dir_fd.as_fd(), b"", Owner::Caller, src)
        }
    }
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Archives `located` as `name` through a pipe into an extractor at `base` under `root`.
fn transfer(
    located: Located,
    name: &[u8],
    root: BorrowedFd<'_>,
    base: &[u8],
    owner: Owner,
    shown: &str,
) -> Result<(), OpsError> {
    let (reader, writer) = io::pipe().map_err(io_err("create pipe for", shown))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut writer = writer;
            let mut ar = Archiver::new(&mut writer);
            ar.node(located.node, &located.st, name)?;
            ar.finish()
        });
        let extracted = extract(root, base, reader, owner);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the archiver panicked")));
        extracted?;
        produced.map_err(io_err("read", shown))
    })
}

/// `cp SRC CONTAINER:DEST`: copies a host path, or extracts a tar stream, into the container.
pub fn copy_in(
    access: &RootfsAccess,
    src: CopyInSource<'_>,
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), OpsError> {
    if access.read_only {
        return Err(OpsError::ReadOnly(access.name.clone()));
    }
    let root = access.root()?;
    let owner = if opts.archive {
        Owner::Archive
    } else {
        Owner::Root
    };
    let spec = path_spec(dest.as_bytes());
    let kind = dest_kind(root, &spec.components)?;
    match src {
        CopyInSource::Stream(r) => {
            if kind != DestKind::Dir {
                return Err(OpsError::NotADirectory(dest.to_string()));
            }
            extract(root, &join(&spec.components), r, owner)
        }
        CopyInSource::Host(path) => {
            let abs = std::path::absolute(path).map_err(io_err("resolve", path_bytes(path)))?;
            let mut raw = abs.as_os_str().as_bytes().to_vec();
            // `absolute` drops a trailing `/` and `/.`: they carry meaning here.
            let given = path.as_os_str().as_bytes();
            if given.ends_with(b"/.") || given == b"." {
                raw.extend_from_slice(b"/.");
            } else if given.ends_with(b"/") {
                raw.push(b'/');
            }
            let host_root = rustix::fs::open(
                "/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno("open", "/"))?;
            let shown = path.display().to_string();
            let located = locate(host_root.as_fd(), &raw, opts.follow_link)?
                .ok_or_else(|| OpsError::NoSuchHostPath(shown.clone()))?;
            let dest_base = spec.components.last().map_or(Vec::new(), |c| c.to_vec());
            let plan = plan(
                Side {
                    is_dir: is_dir(&located.st),
                    dir_syntax: located.content_only,
                    base: &located.base,
                    shown: &shown,
                },
                Side {
                    is_dir: kind == DestKind::Dir,
                    dir_syntax: spec.asserts_dir,
                    base: &dest_base,
                    shown: dest,
                },
                kind,
            )?;
            let (dir, name) = match plan {
                Plan::Into { name } => (spec.components.clone(), name),
                Plan::Beside { name } => {
                    let parent =
                        spec.components[..spec.components.len().saturating_sub(1)].to_vec();
                    let shown_parent = format!("/{}", String::from_utf8_lossy(&join(&parent)));
                    require_dir(root, &parent, &shown_parent)?;
                    (parent, name)
                }
            };
            transfer(located, &name, root, &join(&dir), owner, &shown)
        }
    }
}

/// `export`: the container's whole rootfs as a tar stream (entries named without a leading
/// `/` or `./`, as Docker's).
pub fn export(access: &RootfsAccess, out: &mut dyn Write) -> Result<(), OpsError> {
    let root = access.root()?;
    let fd =
        open_in_root(root, b".", OFlags::RDONLY | OFlags::DIRECTORY).map_err(errno("open", "/"))?;
    let st = fstatx(fd.as_fd()).map_err(errno("stat", "/"))?;
    let mut ar = Archiver::new(out);
    ar.node(Node::Dir(fd), &st, b"")
        .map_err(io_err("export", access.name.as_bytes()))?;
    ar.finish()
        .map_err(io_err("export", access.name.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Archiving (never following a symlink below the top)

enum Node {
    Dir(OwnedFd),
    File(OwnedFd),
    Symlink(CString),
    Special,
}

fn special_node(_st: &rustix::fs::Statx) -> Node {
    Node::Special
}

fn open_child(dir: BorrowedFd<'_>, name: &CStr, st: &rustix::fs::Statx) -> Result<Node, Errno> {
    let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::Directory => Node::Dir(rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
            Mode::empty(),
        )?),
        FileType::RegularFile => Node::File(rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | nofollow,
            Mode::empty(),
        )?),
        FileType::Symlink => Node::Symlink(rustix::fs::readlinkat(dir, name, Vec::new())?),
        _ => special_node(st),
    })
}

struct Archiver<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of a multiply-linked file → its name in the archive.
    links: HashMap<(u32, u32, u64), Vec<u8>>,
}

impl<W: Write> Archiver<W> {
    fn new(w: W) -> Archiver<W> {
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        Archiver {
            tar,
            links: HashMap::new(),
        }
    }

    fn finish(self) -> io::Result<()> {
        let mut w = self.tar.into_inner()?;
        w.flush()
    }

    /// Appends `node` as `name` (`""`: only its children, named by themselves).
    fn node(&mut self, node: Node, st: &rustix::fs::Statx, name: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(u32::from(st.stx_mode) & 0o7777);
        h.set_uid(u64::from(st.stx_uid));
        h.set_gid(u64::from(st.stx_gid));
        h.set_mtime(u64::try_from(st.stx_mtime.tv_sec).unwrap_or(0));
        h.set_size(0);
        let path = Path::new(OsStr::from_bytes(name));
        match node {
            Node::Dir(fd) => {
                if !name.is_empty() {
                    h.set_entry_type(tar::EntryType::Directory);
                    self.tar.append_data(&mut h, path, io::empty())?;
                }
                let mut names: Vec<CString> = Dir::read_from(&fd)?
                    .filter_map(|e| match e {
                        Ok(e) if matches!(e.file_name().to_bytes(), b"." | b"..") => None,
                        Ok(e) => Some(Ok(e.file_name().to_owned())),
                        Err(e) => Some(Err(io::Error::from(e))),
                    })
                    .collect::<io::Result<_>>()?;
                names.sort();
                for child in names {
                    let cst = match rustix::fs::statx(
                        &fd,
                        child.as_c_str(),
                        AtFlags::SYMLINK_NOFOLLOW,
                        StatxFlags::BASIC_STATS,
                    ) {
                        Ok(s) => s,
                        // Removed meanwhile (a running container).
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let cnode = match open_child(fd.as_fd(), &child, &cst) {
                        Ok(n) => n,
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let mut cname = name.to_vec();
                    if !cname.is_empty() {
                        cname.push(b'/');
                    }
                    cname.extend_from_slice(child.to_bytes());
                    self.node(cnode, &cst, &cname)?;
                }
                Ok(())
            }
            Node::File(fd) => {
                let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
                if st.stx_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let target = Path::new(OsStr::from_bytes(first)).to_path_buf();
                        return self.tar.append_link(&mut h, path, target);
                    }
                    self.links.insert(key, name.to_vec());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.stx_size);
                // A file that shrinks while it is read (a running container) is padded with
                // zeros: the archive stays well-formed.
                let data = File::from(fd)
                    .take(st.stx_size)
                    .chain(io::repeat(0))
                    .take(st.stx_size);
                self.tar.append_data(&mut h, path, data)
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = Path::new(OsStr::from_bytes(target.to_bytes())).to_path_buf();
                self.tar.append_link(&mut h, path, target)
            }
            Node::Special => {
                let t = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    FileType::Fifo => tar::EntryType::Fifo,
                    // Sockets are not archived (as Docker's).
                    _ => return Ok(()),
                };
                h.set_entry_type(t);
                h.set_device_major(st.stx_rdev_major)?;
                h.set_device_minor(st.stx_rdev_minor)?;
                self.tar.append_data(&mut h, path, io::empty())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extracting (every path confined to `root`)

/// Whose files an extraction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The caller's (no chown): copies to the host.
    Caller,
    /// root:root: copies into the container.
    Root,
    /// The archive's uid/gid: `cp -a`.
    Archive,
}

struct DirMeta {
    path: Vec<u8>,
    mode: u32,
    ids: Option<(u32, u32)>,
    mtime: i64,
}

/// Extracts the tar stream `reader` into `base` (a path under `root`, which it must not leave).
fn extract(
    root: BorrowedFd<'_>,
    base: &[u8],
    reader: impl Read,
    owner: Owner,
) -> Result<(), OpsError> {
    let as_root = rustix::process::geteuid().is_root();
    let base_components = clean(base);
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<DirMeta> = Vec::new();
    let entries = archive
        .entries()
        .map_err(io_err("read archive into", base))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("read archive into", base))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = entry_components(&raw).ok_or_else(|| OpsError::Breakout(shown.clone()))?;
        let Some((name, parent_rel)) = rel.split_last() else {
            continue; // the destination itself
        };
        let parent: Vec<&[u8]> = base_components
            .iter()
            .copied()
            .chain(parent_rel.iter().copied())
            .collect();
        let pfd = ensure_dir(root, &parent, owner, as_root)?;
        let header = entry.header();
        let mode = header.mode().map_err(io_err("read archive entry", &raw))? & 0o7777;
        let ids = match owner {
            _ if !as_root => None,
            Owner::Caller => None,
            Owner::Root => Some((0, 0)),
            Owner::Archive => Some((
                u32::try_from(header.uid().map_err(io_err("read archive entry", &raw))?)
                    .unwrap_or(0),
                u32::try_from(header.gid().map_err(io_err("read archive entry", &raw))?)
                    .unwrap_or(0),
            )),
        };
        let mtime = i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0);
        let kind = header.entry_type();
        let cname = CString::new(*name).map_err(|_| OpsError::Breakout(shown.clone()))?;
        let existing = match rustix::fs::statx(
            &pfd,
            cname.as_c_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        ) {
            Ok(st) => Some(is_dir(&st)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(errno("stat", &raw)(e)),
        };
        let full = {
            let mut c = parent.clone();
            c.push(name);
            join(&c)
        };
        if kind == tar::EntryType::Directory {
            match existing {
                Some(true) => {}
                Some(false) => {
                    return Err(OpsError::Overwrite {
                        path: shown,
                        existing: "non-directory",
                        with: "a directory",
                    });
                }
                None => rustix::fs::mkdirat(&pfd, cname.as_c_str(), Mode::from_raw_mode(0o700))
                    .map_err(errno("create directory", &raw))?,
            }
            dirs.push(DirMeta {
                path: full,
                mode,
                ids,
                mtime,
            });
            continue;
        }
        if !matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Symlink
                | tar::EntryType::Link
                | tar::EntryType::Char
                | tar::EntryType::Block
                | tar::EntryType::Fifo
        ) {
            continue;
        }
        match existing {
            Some(true) => {
                return Err(OpsError::Overwrite {
                    path: shown,
                    existing: "directory",
                    with: "a non-directory",
                });
            }
            Some(false) => rustix::fs::unlinkat(&pfd, cname.as_c_str(), AtFlags::empty())
                .map_err(errno("replace", &raw))?,
            None => {}
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        match kind {
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                rustix::fs::symlinkat(target.as_slice(), &pfd, cname.as_c_str())
                    .map_err(errno("create symlink", &raw))?;
                if let Some((u, g)) = ids {
                    rustix::fs::chownat(
                        &pfd,
                        cname.as_c_str(),
                        Some(Uid::from_raw(u)),
                        Some(Gid::from_raw(g)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(errno("chown", &raw))?;
                }
                rustix::fs::utimensat(&pfd, cname.as_c_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno("set times of", &raw))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let trel = entry_components(&target)
                    .ok_or_else(|| OpsError::Breakout(String::from_utf8_lossy(&target).into()))?;
                let Some((tname, tparent)) = trel.split_last() else {
                    return Err(OpsError::Breakout(String::from_utf8_lossy(&target).into()));
                };
                let tparent: Vec<&[u8]> = base_components
                    .iter()
                    .copied()
                    .chain(tparent.iter().copied())
                    .collect();
                let tfd = open_in_root(root, &join(&tparent), OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(errno("open", &target))?;
                rustix::fs::linkat(&tfd, *tname, &pfd, cname.as_c_str(), AtFlags::empty())
                    .map_err(errno("link", &raw))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                match rustix::fs::mknodat(
                    &pfd,
                    cname.as_c_str(),
                    ft,
                    Mode::from_raw_mode(0o600),
                    dev,
                ) {
                    Ok(()) => {}
                    Err(Errno::PERM) if !as_root => {
                        tracing::warn!(path = %shown, "device node skipped (not root)");
                        continue;
                    }
                    Err(e) => return Err(errno("create node", &raw)(e)),
                }
                if let Some((u, g)) = ids {
                    rustix::fs::chownat(
                        &pfd,
                        cname.as_c_str(),
                        Some(Uid::from_raw(u)),
                        Some(Gid::from_raw(g)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(errno("chown", &raw))?;
                }
                rustix::fs::chmodat(
                    &pfd,
                    cname.as_c_str(),
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .map_err(errno("chmod", &raw))?;
                rustix::fs::utimensat(&pfd, cname.as_c_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno("set times of", &raw))?;
            }
            _ => {
                let fd = rustix::fs::openat(
                    &pfd,
                    cname.as_c_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno("create", &raw))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file).map_err(io_err("write", &raw))?;
                finish_fd(file.as_fd(), ids, mode, &times)
                    .map_err(errno("set metadata of", &raw))?;
            }
        }
    }
    // Directories last and deepest first: their times are not disturbed by their content.
    for d in dirs.iter().rev() {
        let fd = open_in_root(
            root,
            &d.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        )
        .map_err(errno("open", &d.path))?;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: d.mtime,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: d.mtime,
                tv_nsec: 0,
            },
        };
        finish_fd(fd.as_fd(), d.ids, d.mode, &times).map_err(errno("set metadata of", &d.path))?;
    }
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then times.
fn finish_fd(
    fd: BorrowedFd<'_>,
    ids: Option<(u32, u32)>,
    mode: u32,
    times: &Timestamps,
) -> Result<(), Errno> {
    if let Some((u, g)) = ids {
        rustix::fs::fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    rustix::fs::futimens(fd, times)
}

/// An archive entry's path as components; `None` when `..` climbs above the start.
fn entry_components(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Opens the directory `components` under `root`, creating what is missing (0755).
fn ensure_dir(
    root: BorrowedFd<'_>,
    components: &[&[u8]],
    owner: Owner,
    as_root: bool,
) -> Result<OwnedFd, OpsError> {
    let path = join(components);
    match open_in_root(root, &path, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if !components.is_empty() => {}
        Err(e) => return Err(errno("open", &path)(e)),
    }
    let (name, parent) = components
        .split_last()
        .ok_or_else(|| OpsError::NoSuchDirectory("/".to_string()))?;
    let pfd = ensure_dir(root, parent, owner, as_root)?;
    match rustix::fs::mkdirat(&pfd, *name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {
            if as_root && owner != Owner::Caller {
                rustix::fs::chownat(
                    &pfd,
                    *name,
                    Some(Uid::ROOT),
                    Some(Gid::ROOT),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno("chown", &path))?;
            }
        }
        Err(Errno::EXIST) => {}
        Err(e) => return Err(errno("create directory", &path)(e)),
    }
    open_in_root(root, &path, OFlags::PATH | OFlags::DIRECTORY).map_err(errno("open", &path))
}

// ---------------------------------------------------------------------------------------------
// Cgroups and /proc

/// A cgroup file system: v1 (a directory per controller under `base`) or v2 (one tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFs {
    base: PathBuf,
    v2: bool,
}

const V1_PROCS_CONTROLLERS: &[&str] = &[
    "pids",
    "memory",
    "cpuacct",
    "cpu",
    "cpu,cpuacct",
    "freezer",
    "devices",
    "blkio",
    "cpuset",
    "systemd",
];

impl CgroupFs {
    /// The host's, at `/sys/fs/cgroup`.
    pub fn host() -> CgroupFs {
        CgroupFs::at("/sys/fs/cgroup")
    }

    /// The one mounted at `base`: v2 when `base/cgroup.controllers` exists.
    pub fn at(base: impl Into<PathBuf>) -> CgroupFs {
        let base = base.into();
        let v2 = base.join("cgroup.controllers").exists();
        CgroupFs { base, v2 }
    }

    /// Whether this is cgroup v2.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn path(&self, controller: &str, cgroup: &str, file: &str) -> PathBuf {
        let rel = cgroup.trim_matches('/');
        if self.v2 {
            self.base.join(rel).join(file)
        } else {
            self.base.join(controller).join(rel).join(file)
        }
    }

    /// The first of `controllers` that has `file` for `cgroup` (v2: the one tree); `None`
    /// when none has it.
    fn read(
        &self,
        controllers: &[&str],
        cgroup: &str,
        file: &str,
    ) -> Result<Option<String>, OpsError> {
        let candidates: &[&str] = if self.v2 { &[""] } else { controllers };
        for c in candidates {
            let p = self.path(c, cgroup, file);
            match fs::read_to_string(&p) {
                Ok(s) => return Ok(Some(s)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::io("read", p, e).into()),
            }
        }
        Ok(None)
    }

    /// The pids in `cgroup` (empty when the cgroup does not exist), sorted.
    pub fn pids(&self, cgroup: &str) -> Result<Vec<i32>, OpsError> {
        let text = self
            .read(V1_PROCS_CONTROLLERS, cgroup, "cgroup.procs")?
            .unwrap_or_default();
        let mut pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// The usage counters of `cgroup` (zeros for what it does not have).
    pub fn sample(&self, cgroup: &str) -> Result<CgroupSample, OpsError> {
        let mut s = CgroupSample::default();
        let num = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());
        if self.v2 {
            if let Some(t) = self.read(&[], cgroup, "cpu.stat")? {
                s.cpu_usage_ns = keyed(&t, "usage_usec").unwrap_or(0).saturating_mul(1000);
            }
            s.memory_usage = num(self.read(&[], cgroup, "memory.current")?).unwrap_or(0);
            s.memory_limit = num(self.read(&[], cgroup, "memory.max")?);
            if let Some(t) = self.read(&[], cgroup, "memory.stat")? {
                s.memory_inactive_file = keyed(&t, "inactive_file").unwrap_or(0);
            }
            if let Some(t) = self.read(&[], cgroup, "io.stat")? {
                (s.block_read, s.block_write) = io_stat_v2(&t);
            }
            s.pids = num(self.read(&[], cgroup, "pids.current")?).unwrap_or(0);
        } else {
            s.cpu_usage_ns =
                num(self.read(&["cpuacct", "cpu,cpuacct", "cpu"], cgroup, "cpuacct.usage")?)
                    .unwrap_or(0);
            s.memory_usage =
                num(self.read(&["memory"], cgroup, "memory.usage_in_bytes")?).unwrap_or(0);
            // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
            s.memory_limit = num(self.read(&["memory"], cgroup, "memory.limit_in_bytes")?)
                .filter(|l| *l < (1 << 62));
            if let Some(t) = self.read(&["memory"], cgroup, "memory.stat")? {
                s.memory_inactive_file = keyed(&t, "total_inactive_file").unwrap_or(0);
            }
            for file in [
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes",
                "blkio.io_service_bytes_recursive",
            ] {
                if let Some(t) = self.read(&["blkio"], cgroup, file)? {
                    (s.block_read, s.block_write) = blkio_v1(&t);
                    break;
                }
            }
            s.pids = num(self.read(&["pids"], cgroup, "pids.current")?).unwrap_or(0);
        }
        Ok(s)
    }
}

/// `key value` lines (cpu.stat, memory.stat): the value of `key`.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// v2 `io.stat`: `maj:min rbytes=N wbytes=N …` per device, summed.
fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r = r.saturating_add(v.parse().unwrap_or(0));
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w = w.saturating_add(v.parse().unwrap_or(0));
        }
    }
    (r, w)
}

/// v1 `blkio.*io_service_bytes*`: `maj:min Read|Write|… N` lines, Read and Write summed.
fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let n: u64 = f[2].parse().unwrap_or(0);
        if f[1].eq_ignore_ascii_case("read") {
            r = r.saturating_add(n);
        } else if f[1].eq_ignore_ascii_case("write") {
            w = w.saturating_add(n);
        }
    }
    (r, w)
}

/// One reading of a container's cgroup counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// CPU time used, all CPUs, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup, bytes (page cache included).
    pub memory_usage: u64,
    /// Inactive file cache (Docker subtracts it from the usage).
    pub memory_inactive_file: u64,
    /// The memory limit; `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// Bytes read from / written to block devices.
    pub block_read: u64,
    pub block_write: u64,
    /// Tasks in the cgroup.
    pub pids: u64,
}

/// One reading of the host's counters that Docker's numbers are relative to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSample {
    /// Time all CPUs spent (user … softirq), nanoseconds.
    pub cpu_ns: u64,
    /// Online CPUs.
    pub online_cpus: u32,
    /// `MemTotal`, bytes.
    pub mem_total: u64,
}

/// Reads `<proc>/stat` and `<proc>/meminfo`.
pub fn host_sample(proc: &Path) -> Result<HostSample, OpsError> {
    let stat_path = proc.join("stat");
    let stat = fs::read_to_string(&stat_path).map_err(|e| FsError::io("read", &stat_path, e))?;
    let mut out = HostSample::default();
    let ticks = clock_ticks();
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                // Docker sums user, nice, system, idle, iowait, irq, softirq.
                let sum: u64 = f.take(7).filter_map(|v| v.parse::<u64>().ok()).sum();
                out.cpu_ns = sum.saturating_mul(1_000_000_000) / ticks;
            }
            Some(c) if c.starts_with("cpu") => out.online_cpus += 1,
            _ => {}
        }
    }
    let mem_path = proc.join("meminfo");
    let mem = fs::read_to_string(&mem_path).map_err(|e| FsError::io("read", &mem_path, e))?;
    out.mem_total = keyed(&mem.replace(':', " "), "MemTotal").unwrap_or(0) * 1024;
    if out.cpu_ns == 0 {
        return Err(OpsError::Parse {
            path: stat_path,
            what: "no cpu line".to_string(),
        });
    }
    Ok(out)
}

/// Bytes received and sent on the interfaces of `<proc>/<pid>/net/dev` other than `lo`
/// (Docker counts the container's endpoints, never its loopback).
pub fn net_io(proc: &Path, pid: i32) -> Result<(u64, u64), OpsError> {
    let p = proc.join(pid.to_string()).join("net/dev");
    let text = fs::read_to_string(&p).map_err(|e| FsError::io("read", &p, e))?;
    Ok(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx = rx.saturating_add(f[0]);
            tx = tx.saturating_add(f[8]);
        }
    }
    (rx, tx)
}

/// Docker's numbers for one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu_percent: f64,
    /// Usage without inactive file cache, bytes.
    pub mem_usage: u64,
    /// The limit, or the host's memory when unlimited.
    pub mem_limit: u64,
    pub mem_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

/// Docker's stats from two readings (`prev` none: no CPU % yet) and the network counters.
pub fn stats(
    prev: Option<(&CgroupSample, &HostSample)>,
    cur: (&CgroupSample, &HostSample),
    net: (u64, u64),
) -> Stats {
    let (cg, host) = cur;
    let mut cpu_percent = 0.0;
    if let Some((pcg, phost)) = prev {
        let cpu_delta = cg.cpu_usage_ns.saturating_sub(pcg.cpu_usage_ns) as f64;
        let sys_delta = host.cpu_ns.saturating_sub(phost.cpu_ns) as f64;
        if cpu_delta > 0.0 && sys_delta > 0.0 {
            cpu_percent = cpu_delta / sys_delta * f64::from(host.online_cpus.max(1)) * 100.0;
        }
    }
    let mem_usage = if cg.memory_inactive_file < cg.memory_usage {
        cg.memory_usage - cg.memory_inactive_file
    } else {
        cg.memory_usage
    };
    let mem_limit = match cg.memory_limit {
        Some(l) if host.mem_total == 0 || l < host.mem_total => l,
        _ => host.mem_total,
    };
    let mem_percent = if mem_limit > 0 {
        mem_usage as f64 / mem_limit as f64 * 100.0
    } else {
        0.0
    };
    Stats {
        cpu_percent,
        mem_usage,
        mem_limit,
        mem_percent,
        net_rx: net.0,
        net_tx: net.1,
        block_read: cg.block_read,
        block_write: cg.block_write,
        pids: cg.pids,
    }
}

/// Reads a container's counters now: its cgroup, the host, and (for a private network
/// namespace) its init process's interfaces.
pub fn sample_container(
    cg: &CgroupFs,
    cgroup: &str,
    init_pid: Option<i32>,
    network: &NetworkConfig,
) -> Result<(CgroupSample, HostSample, (u64, u64)), OpsError> {
    let sample = cg.sample(cgroup)?;
    let host = host_sample(Path::new("/proc"))?;
    let net = match (init_pid, network) {
        (_, NetworkConfig::Host) | (None, _) => (0, 0),
        (Some(pid), _) => net_io(Path::new("/proc"), pid).unwrap_or((0, 0)),
    };
    Ok((sample, host, net))
}

impl RootfsAccess {
    /// Whether the container shares the host's network namespace.
    pub fn network_host(&self) -> bool {
        self.network_host
    }
}

/// Go's `%.{prec}g` (the `%g` Docker's units use): `prec` significant digits, exponent form
/// when the exponent is below -4 or at least `prec`, trailing zeros dropped.
pub fn go_g(v: f64, prec: usize) -> String {
    let prec = prec.max(1);
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(prec as i32 - 1 - exp).unwrap_or(0);
        trim(&format!("{v:.decimals$}"))
    }
}

fn custom_size(size: f64, base: f64, units: &[&str], prec: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i + 1 < units.len() {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), units[i])
}

/// Docker's `units.BytesSize`: binary units, 4 significant digits (`1.5MiB`).
pub fn bytes_size(n: u64) -> String {
    custom_size(
        n as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// Docker's `units.HumanSizeWithPrecision(n, 3)`: decimal units (`1.2kB`).
pub fn human_size(n: u64) -> String {
    custom_size(
        n as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
        3,
    )
}

// ---------------------------------------------------------------------------------------------
// top

/// `ps -ef`'s columns, as `docker top` prints them by default.
pub const TOP_TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// What `/proc/<pid>/stat` says that `top` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    pub ppid: i32,
    pub tty_nr: u32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses).
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        comm,
        ppid: f.get(1)?.parse().ok()?,
        tty_nr: u32::try_from(num(4)?).ok()?,
        cpu_ticks: num(11)?.saturating_add(num(12)?),
        start_ticks: num(19)?,
    })
}

/// The real uid of `/proc/<pid>/status`.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `ps`'s TTY: `pts/N`, `ttyN`, or `?`.
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".to_string(),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        _ => "?".to_string(),
    }
}

/// `ps`'s TIME: `[DD-]HH:MM:SS`.
pub fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `ps`'s STIME: `HH:MM` within a day, `MonDD` within a year, else the year (local time).
pub fn start_time(
    start: chrono::DateTime<chrono::Local>,
    now: chrono::DateTime<chrono::Local>,
) -> String {
    let age = now.signed_duration_since(start);
    if age < chrono::Duration::hours(24) {
        start.format("%H:%M").to_string()
    } else if age < chrono::Duration::days(365) {
        start.format("%b%d").to_string()
    } else {
        start.format("%Y").to_string()
    }
}

/// uid → name from a passwd file's text.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3
            && let Ok(uid) = f[2].parse::<u32>()
        {
            out.entry(uid).or_insert_with(|| f[0].to_string());
        }
    }
    out
}

/// The clock tick rate `/proc` counts in (AT_CLKTCK from the aux vector; 100 if unreadable).
pub fn clock_ticks() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(aux) = fs::read("/proc/self/auxv") else {
        return 100;
    };
    for pair in aux.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let k = u64::from_ne_bytes(k.try_into().unwrap_or([0; 8]));
        let v = u64::from_ne_bytes(v.try_into().unwrap_or([0; 8]));
        if k == AT_CLKTCK && v > 0 {
            return v;
        }
    }
    100
}

/// `docker top`: one row of [`TOP_TITLES`] per process of `cgroup`, by pid. Processes that
/// exit while they are read are left out.
pub fn top(cg: &CgroupFs, cgroup: &str) -> Result<Vec<Vec<String>>, OpsError> {
    let pids = cg.pids(cgroup)?;
    let proc = Path::new("/proc");
    let users = fs::read_to_string("/etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let ticks = clock_ticks();
    let uptime_path = proc.join("uptime");
    let uptime: f64 = fs::read_to_string(&uptime_path)
        .map_err(|e| FsError::io("read", &uptime_path, e))?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let stat_path = proc.join("stat");
    let btime: i64 = fs::read_to_string(&stat_path)
        .map_err(|e| FsError::io("read", &stat_path, e))?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let now = chrono::Local::now();
    let mut rows = Vec::new();
    for pid in pids {
        let dir = proc.join(pid.to_string());
        let (Ok(stat), Ok(status), Ok(cmdline)) = (
            fs::read_to_string(dir.join("stat")),
            fs::read_to_string(dir.join("status")),
            fs::read(dir.join("cmdline")),
        ) else {
            continue;
        };
        let Some(st) = parse_proc_stat(&stat) else {
            continue;
        };
        let uid = parse_status_uid(&status).unwrap_or(0);
        let user = users.get(&uid).cloned().unwrap_or_else(|| uid.to_string());
        let start_secs = st.start_ticks as f64 / ticks as f64;
        let elapsed = uptime - start_secs;
        let cpu_secs = st.cpu_ticks as f64 / ticks as f64;
        let c = if elapsed > 0.0 {
            ((cpu_secs * 100.0 / elapsed) as u64).min(99)
        } else {
            0
        };
        let started = chrono::DateTime::from_timestamp(btime + start_secs as i64, 0)
            .map(|t| t.with_timezone(&chrono::Local))
            .unwrap_or(now);
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cmd = if args.is_empty() {
            format!("[{}]", st.comm)
        } else {
            args.join(" ")
        };
        rows.push(vec![
            user,
            pid.to_string(),
            st.ppid.to_string(),
            c.to_string(),
            start_time(started, now),
            tty_name(st.tty_nr),
            cpu_time(st.cpu_ticks / ticks),
            cmd,
        ]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_copy_rules() {
        let side = |is_dir, dir_syntax, base: &'static [u8]| Side {
            is_dir,
            dir_syntax,
            base,
            shown: "x",
        };
        let p = |src_dir, content, dest: DestKind, asserts| {
            plan(
                side(src_dir, content, b"src"),
                side(dest == DestKind::Dir, asserts, b"dst"),
                dest,
            )
        };
        // file → existing dir: inside, own name; → file: replaced; → missing: created.
        assert_eq!(
            p(false, false, DestKind::Dir, false).unwrap(),
            Plan::Into {
                name: b"src".to_vec()
            }
        );
        assert_eq!(
            p(false, false, DestKind::NonDir, false).unwrap(),
            Plan::Beside {
                name: b"dst".to_vec()
            }
        );
        assert_eq!(
            p(false, false, DestKind::Missing, false).unwrap(),
            Plan::Beside {
                name: b"dst".to_vec()
            }
        );
        // file → `dst/` that is missing or a file: errors.
        assert!(matches!(
            p(false, false, DestKind::Missing, true),
            Err(OpsError::NoSuchDirectory(_))
        ));
        assert!(matches!(
            p(false, false, DestKind::NonDir, true),
            Err(OpsError::NotADirectory(_))
        ));
        // dir → existing dir: inside; `src/.` → its content; → missing: becomes dst; → file: error.
        assert_eq!(
            p(true, false, DestKind::Dir, false).unwrap(),
            Plan::Into {
                name: b"src".to_vec()
            }
        );
        assert_eq!(
            p(true, true, DestKind::Dir, false).unwrap(),
            Plan::Into { name: Vec::new() }
        );
        assert_eq!(
            p(true, false, DestKind::Missing, true).unwrap(),
            Plan::Beside {
                name: b"dst".to_vec()
            }
        );
        assert_eq!(
            p(true, true, DestKind::Missing, false).unwrap(),
            Plan::Beside {
                name: b"dst".to_vec()
            }
        );
        assert!(matches!(
            p(true, false, DestKind::NonDir, false),
            Err(OpsError::DirectoryOntoFile { .. })
        ));
    }

    #[test]
    fn paths_are_cleaned_like_docker_and_entries_cannot_climb_out() {
        let s = path_spec(b"/etc/../etc//passwd");
        assert_eq!(s.components, vec![&b"etc"[..], b"passwd"]);
        assert!(!s.asserts_dir && !s.content_only);
        let s = path_spec(b"/data/.");
        assert!(s.asserts_dir && s.content_only);
        assert!(path_spec(b"/").content_only);
        assert!(path_spec(b"/x/").asserts_dir && !path_spec(b"/x/").content_only);
        assert_eq!(path_spec(b"/../../x").components, vec![&b"x"[..]]);
        assert_eq!(
            entry_components(b"./a/b/../c").unwrap(),
            vec![&b"a"[..], b"c"]
        );
        assert!(entry_components(b"../x").is_none());
        assert!(entry_components(b"a/../../x").is_none());
        assert_eq!(entry_components(b"./").unwrap(), Vec::<&[u8]>::new());
    }

    /// A tree with a symlink out of it, copied to a host dir and a stream: links stay links,
    /// modes and hard links survive, nothing outside is read.
    #[test]
    fn archive_and_extract_roundtrip_confined() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("d/sub")).unwrap();
        fs::write(rootfs.join("d/a"), b"alpha").unwrap();
        fs::set_permissions(rootfs.join("d/a"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::hard_link(rootfs.join("d/a"), rootfs.join("d/sub/a2")).unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"host secret").unwrap();
        symlink(&secret, rootfs.join("d/out")).unwrap();
        symlink("/", rootfs.join("up")).unwrap();
        let root =
            rustix::fs::open(&rootfs, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();

        // `/up/d/a` goes through a symlink to `/`: confined, it is the rootfs's d/a.
        let loc = locate(root.as_fd(), b"/up/d/a", false).unwrap().unwrap();
        assert_eq!(loc.st.stx_size, 5);
        // The link is archived as a link, also with -L: its target is not in the rootfs.
        let loc = locate(root.as_fd(), b"/d/out", false).unwrap().unwrap();
        assert!(matches!(loc.node, Node::Symlink(_)));
        assert!(locate(root.as_fd(), b"/d/out", true).unwrap().is_none());
        assert!(matches!(
            locate(root.as_fd(), b"/d/a/", false),
            Err(OpsError::SourceNotADirectory(_))
        ));

        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let dfd = rustix::fs::open(&dest, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let loc = locate(root.as_fd(), b"/d", false).unwrap().unwrap();
        transfer(loc, b"copy", dfd.as_fd(), b"", Owner::Caller, "/d").unwrap();
        assert_eq!(fs::read(dest.join("copy/a")).unwrap(), b"alpha");
        assert_eq!(
            fs::metadata(dest.join("copy/a")).unwrap().mode() & 0o7777,
            0o751
        );
        assert_eq!(
            fs::metadata(dest.join("copy/a")).unwrap().ino(),
            fs::metadata(dest.join("copy/sub/a2")).unwrap().ino()
        );
        assert_eq!(fs::read_link(dest.join("copy/out")).unwrap(), secret);

        // A hostile stream: an entry climbing out is refused, a link then a file through it
        // lands inside the destination.
        let mut b = tar::Builder::new(Vec::new());
        for (link, target) in [("esc", "/"), ("esc2", "../../..")] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, link, target).unwrap();
        }
        let planted = format!("planted-{}", std::process::id());
        for via in ["esc", "esc2"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("{via}/{planted}"), &b"bad"[..])
                .unwrap();
        }
        let data = b.into_inner().unwrap();
        extract(dfd.as_fd(), b"", &data[..], Owner::Caller).unwrap();
        assert!(!Path::new("/").join(&planted).exists());
        assert!(!tmp.path().join(&planted).exists());
        assert_eq!(fs::read(dest.join(&planted)).unwrap(), b"bad");

        let mut raw = Vec::new();
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            let mut hdr = h.as_bytes().to_vec();
            hdr[..7].copy_from_slice(b"../evil");
            // Recompute the checksum over the edited name.
            let mut hh = tar::Header::from_byte_slice(&hdr).clone();
            hh.set_cksum();
            raw.extend_from_slice(hh.as_bytes());
            raw.extend_from_slice(&[b'x'; 1]);
            raw.extend_from_slice(&[0u8; 511 + 1024]);
        }
        assert!(matches!(
            extract(dfd.as_fd(), b"", &raw[..], Owner::Caller),
            Err(OpsError::Breakout(_))
        ));
        assert!(!tmp.path().join("evil").exists());
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn cgroup_v1_files() {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path();
        let cg = "berth/abc";
        write(b, "pids/berth/abc/cgroup.procs", "42\n7\n");
        write(b, "pids/berth/abc/pids.current", "2\n");
        write(b, "cpuacct/berth/abc/cpuacct.usage", "5000000000\n");
        write(b, "memory/berth/abc/memory.usage_in_bytes", "10485760\n");
        write(
            b,
            "memory/berth/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            b,
            "memory/berth/abc/memory.stat",
            "cache 100\ntotal_inactive_file 1048576\n",
        );
        write(
            b,
            "blkio/berth/abc/blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n8:16 Read 4096\nTotal 12288\n",
        );
        let fs = CgroupFs::at(b);
        assert!(!fs.is_v2());
        assert_eq!(fs.pids(&format!("/{cg}")).unwrap(), vec![7, 42]);
        let s = fs.sample(cg).unwrap();
        assert_eq!(
            s,
            CgroupSample {
                cpu_usage_ns: 5_000_000_000,
                memory_usage: 10 << 20,
                memory_inactive_file: 1 << 20,
                memory_limit: None,
                block_read: 8192,
                block_write: 8192,
                pids: 2,
            }
        );
        write(b, "memory/berth/abc/memory.limit_in_bytes", "67108864\n");
        assert_eq!(fs.sample(cg).unwrap().memory_limit, Some(64 << 20));
        assert!(fs.pids("berth/gone").unwrap().is_empty());
    }

    #[test]
    fn cgroup_v2_files_and_docker_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path();
        write(b, "cgroup.controllers", "cpu memory io pids\n");
        write(b, "berth/x/cgroup.procs", "9\n");
        write(b, "berth/x/cpu.stat", "usage_usec 2000000\nuser_usec 1\n");
        write(b, "berth/x/memory.current", "2097152\n");
        write(b, "berth/x/memory.max", "max\n");
        write(b, "berth/x/memory.stat", "anon 1\ninactive_file 1048576\n");
        write(
            b,
            "berth/x/io.stat",
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n",
        );
        write(b, "berth/x/pids.current", "1\n");
        let fs = CgroupFs::at(b);
        assert!(fs.is_v2());
        assert_eq!(fs.pids("/berth/x").unwrap(), vec![9]);
        let s1 = fs.sample("/berth/x").unwrap();
        assert_eq!(s1.cpu_usage_ns, 2_000_000_000);
        assert_eq!((s1.block_read, s1.block_write), (101, 202));
        assert_eq!(s1.memory_limit, None);
        let h1 = HostSample {
            cpu_ns: 100_000_000_000,
            online_cpus: 4,
            mem_total: 8 << 30,
        };
        write(b, "berth/x/cpu.stat", "usage_usec 2500000\n");
        let s2 = fs.sample("/berth/x").unwrap();
        let h2 = HostSample {
            cpu_ns: 104_000_000_000,
            ..h1.clone()
        };
        // 0.5 s of CPU in 4 s of all-CPU time on 4 CPUs: 50 %.
        let st = stats(Some((&s1, &h1)), (&s2, &h2), (10, 20));
        assert!((st.cpu_percent - 50.0).abs() < 1e-9, "{}", st.cpu_percent);
        assert_eq!(st.mem_usage, 1 << 20);
        assert_eq!(st.mem_limit, 8 << 30);
        assert!((st.mem_percent - 100.0 / 8192.0).abs() < 1e-9);
        assert_eq!(stats(None, (&s2, &h2), (0, 0)).cpu_percent, 0.0);
    }

    #[test]
    fn proc_files_parse() {
        let host = tempfile::tempdir().unwrap();
        write(
            host.path(),
            "stat",
            "cpu  100 0 50 800 10 0 0 0 0 0\ncpu0 50 0 25 400 5 0 0 0 0 0\ncpu1 50 0 25 400 5 0 0 0 0 0\nbtime 1\n",
        );
        write(
            host.path(),
            "meminfo",
            "MemTotal:       16384 kB\nMemFree: 1 kB\n",
        );
        write(
            host.path(),
            "5/net/dev",
            "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n",
        );
        let h = host_sample(host.path()).unwrap();
        assert_eq!(h.online_cpus, 2);
        assert_eq!(h.mem_total, 16384 * 1024);
        assert_eq!(h.cpu_ns, 960 * 1_000_000_000 / clock_ticks());
        assert_eq!(net_io(host.path(), 5).unwrap(), (1000, 2000));

        let st = parse_proc_stat(
            "123 (my (odd) cmd) S 1 123 123 34816 123 4194560 1 0 0 0 250 50 0 0 20 0 1 0 9000 1 1",
        )
        .unwrap();
        assert_eq!(st.comm, "my (odd) cmd");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.cpu_ticks, 300);
        assert_eq!(st.start_ticks, 9000);
        assert_eq!(tty_name(st.tty_nr), "pts/0");
        assert_eq!(tty_name(0), "?");
        assert_eq!(
            parse_status_uid("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(cpu_time(3 * 3600 + 61), "03:01:01");
        assert_eq!(cpu_time(86400 + 5), "1-00:00:05");
        let users = parse_passwd("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(users[&65534], "nobody");
        use chrono::TimeZone;
        let now = chrono::Local
            .with_ymd_and_hms(2024, 6, 10, 12, 0, 0)
            .unwrap();
        let at = |y, mo, d, h| chrono::Local.with_ymd_and_hms(y, mo, d, h, 5, 0).unwrap();
        assert_eq!(start_time(at(2024, 6, 10, 9), now), "09:05");
        assert_eq!(start_time(at(2024, 3, 2, 9), now), "Mar02");
        assert_eq!(start_time(at(2022, 3, 2, 9), now), "2022");
    }

    #[test]
    fn docker_units() {
        assert_eq!(go_g(1.5, 4), "1.5");
        assert_eq!(go_g(1023.5, 4), "1024");
        assert_eq!(go_g(999.7, 3), "1e+03");
        assert_eq!(go_g(12.345, 3), "12.3");
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(64 << 20), "64MiB");
        assert_eq!(bytes_size(1_572_864), "1.5MiB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_096_000), "4.1MB");
    }
}
