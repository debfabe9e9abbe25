//! Unpacking one layer tar (gzip, zstd or plain) into a directory, confined to it.
//!
//! Every entry is created relative to its parent directory, and that parent is opened with
//! `openat2(dest, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..`, absolute paths and
//! symlinks (created earlier in this layer, pointing anywhere) resolve inside `dest`, so no
//! write can land outside it. The last component is created with the `*at` calls, which never
//! follow a symlink there (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `symlinkat`, `mknodat`,
//! `linkat` without `AT_SYMLINK_FOLLOW`, `AT_SYMLINK_NOFOLLOW` for owner and times).
//!
//! Hostile names, per case:
//! - `..` components are clamped at the layer root (as containerd does; Docker refuses the layer
//!   with a "breakout" error instead). `../x` becomes `x`; absolute names lose their leading
//!   `/` (as in both Docker and containerd). Hardlink targets are clamped the same way.
//! - Symlink targets are stored verbatim: they are data, and every later resolution through them
//!   happens `IN_ROOT` (here, and inside the container's root at run time).
//! - A name (or link target) containing NUL: the layer is refused.
//! - A whiteout naming nothing, `.` or `..` (`.wh.`, `.wh..`, `.wh...`): the layer is refused.
//! - A non-directory entry naming the layer root itself (`/`, `..`): the layer is refused.
//! - Other `.wh..wh.*` names (aufs metadata): skipped, as Docker does.
//! - `trusted.overlay.*` xattrs carried in the tar: skipped (whiteouts and opaque dirs are
//!   expressed with `.wh.` names; a layer must not set overlay's own metadata).
//!
//! Whiteouts are converted to overlayfs form (as moby's overlay2 and containerd do):
//! `.wh.NAME` becomes a 0:0 character device `NAME`, `.wh..wh..opq` in directory `D` becomes
//! the xattr `trusted.overlay.opaque=y` on `D`; the whiteout file itself is not written.
//!
//! Nothing is fsynced here: the layer store fsyncs and renames the finished directory.
//! The work is blocking; call it from `spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::digest::{Digest, DigestReader};

/// Size of the buffers between the decompressor, the tar reader and the files.
const BUF_SIZE: usize = 1 << 20;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// How to unpack a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Keep ownership, create device nodes, whiteout devices and `trusted.*` xattrs.
    /// Default: the effective uid is 0.
    pub as_root: bool,
    /// When set, the uncompressed stream must hash to this (the layer's diff_id).
    pub expected_diff_id: Option<Digest>,
}

impl Default for UnpackOptions {
    fn default() -> UnpackOptions {
        UnpackOptions {
            as_root: rustix::process::geteuid().is_root(),
            expected_diff_id: None,
        }
    }
}

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream, all of it.
    pub diff_id: Digest,
    /// Bytes of regular-file content written to disk.
    pub size: u64,
    /// Entries or attributes left out, one human-readable note each
    /// (devices and whiteouts when not root, unsupported xattrs, unknown entry types).
    pub skipped: Vec<String>,
}

/// Why a layer could not be unpacked. The destination is left partially written; the caller
/// removes it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination directory could not be opened.
    #[error("cannot open layer directory {path}: {source}")]
    OpenDest {
        /// The destination directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The stream could not be read, decompressed or parsed as tar.
    #[error("reading layer stream{}: {source}", at_entry(entry.as_deref()))]
    Read {
        /// The entry being read, if the failure was inside one.
        entry: Option<String>,
        /// The cause.
        source: io::Error,
    },
    /// An entry could not be written.
    #[error("writing layer entry {entry:?} into {dest}: {source}")]
    Write {
        /// The entry's name as the tar gives it.
        entry: String,
        /// The destination directory.
        dest: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An entry with a name or attribute that is refused outright.
    #[error("layer entry {entry:?} refused: {reason}")]
    Hostile {
        /// The entry's name as the tar gives it.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The uncompressed stream does not hash to the expected diff_id.
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff_id the image config lists.
        expected: Digest,
        /// What the stream hashed to.
        actual: Digest,
    },
}

fn at_entry(entry: Option<&str>) -> String {
    entry
        .map(|e| format!(" at entry {e:?}"))
        .unwrap_or_default()
}

/// Unpacks one layer (gzip, zstd or plain tar, detected from its first bytes) into `dest`, an
/// existing empty directory, converting whiteouts to overlayfs form. The whole uncompressed
/// stream is hashed into `diff_id` and checked against `opts.expected_diff_id`.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, UnpackError> {
    let dest_fd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenDest {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    let read_err = |source| UnpackError::Read {
        entry: None,
        source,
    };
    let stream = decompress(reader).map_err(read_err)?;
    let mut hashed = DigestReader::new(stream);
    let mut unpacker = Unpacker {
        dest: Rc::from(dest),
        dest_fd,
        opts,
        cache: None,
        removals: 0,
        dirs: BTreeMap::new(),
        buf: vec![0; BUF_SIZE],
        size: 0,
        skipped: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let entries = archive.entries().map_err(read_err)?;
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            unpacker.entry(entry)?;
        }
    }
    // The tar reader stops at the first zero block; the diff_id covers the padding after it.
    io::copy(&mut hashed, &mut io::sink()).map_err(read_err)?;
    unpacker.finish_dirs()?;
    let (diff_id, _) = hashed.finish();
    if let Some(expected) = &opts.expected_diff_id
        && *expected != diff_id
    {
        return Err(UnpackError::DiffIdMismatch {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    Ok(Unpacked {
        diff_id,
        size: unpacker.size,
        skipped: unpacker.skipped,
    })
}

/// Wraps `reader` in the decompressor its magic bytes call for.
fn decompress<'r, R: Read + 'r>(mut reader: R) -> io::Result<Box<dyn Read + 'r>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &magic[..got];
    let buffered = BufReader::with_capacity(
        BUF_SIZE,
        io::Cursor::new(magic).take(got as u64).chain(reader),
    );
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// An entry's name, cleaned: no empty, `.` or `..` components, relative to the layer root.
struct EntryPath {
    /// The components, joined with `/`; empty for the root.
    clean: Vec<u8>,
    /// Where the last component starts in `clean`.
    base_at: usize,
}

impl EntryPath {
    fn parse(raw: &[u8]) -> Option<EntryPath> {
        if raw.contains(&0) {
            return None;
        }
        let mut comps: Vec<&[u8]> = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    comps.pop();
                }
                c => comps.push(c),
            }
        }
        let clean = comps.join(&b'/');
        let base_at = comps.last().map_or(0, |last| clean.len() - last.len());
        Some(EntryPath { clean, base_at })
    }
    fn is_root(&self) -> bool {
        self.clean.is_empty()
    }
    fn parent(&self) -> &[u8] {
        &self.clean[..self.base_at.saturating_sub(1)]
    }
    fn base(&self) -> &[u8] {
        &self.clean[self.base_at..]
    }
}

/// A directory's metadata, applied after all entries (so content does not change its mtime).
struct DirMeta {
    mode: u32,
    owner: (u32, u32),
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'o> {
    dest: Rc<Path>,
    dest_fd: OwnedFd,
    opts: &'o UnpackOptions,
    /// The last parent directory opened, with the value of `removals` when it was opened.
    cache: Option<(Vec<u8>, OwnedFd, u64)>,
    /// Counts removals of existing entries: any removal may change what a path resolves to.
    removals: u64,
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    buf: Vec<u8>,
    size: u64,
    skipped: Vec<String>,
}

/// Header fields, read before the entry's data.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// See [`crate::fsutil::open_in_root`].
fn open_in_root(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    crate::fsutil::open_in_root_io(dir, path, flags)
}

fn is_exists(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::EXIST.raw_os_error())
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let hostile = |reason| UnpackError::Hostile {
            entry: name.clone(),
            reason,
        };
        let path = EntryPath::parse(&raw).ok_or_else(|| hostile("the name contains NUL"))?;
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Old tars mark directories with a trailing slash on a `\0`-typed entry (as Go reads them).
        if entry.header().as_bytes()[156] == 0 && raw.ends_with(b"/") {
            kind = tar::EntryType::Directory;
        }
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        if link.as_ref().is_some_and(|l| l.contains(&0)) {
            return Err(hostile("the link target contains NUL"));
        }
        let meta = self.meta(&mut entry, &name)?;
        let base = path.base();
        if base.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path, &name);
        }
        if path.is_root() && !kind.is_dir() {
            return Err(hostile("a non-directory entry names the layer root"));
        }
        let dest = Rc::clone(&self.dest);
        let write_err = |source| UnpackError::Write {
            entry: name.clone(),
            dest: dest.to_path_buf(),
            source,
        };
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.regular(&path, &meta, &mut entry, &name)?;
            }
            T::Directory => self.directory(&path, meta).map_err(write_err)?,
            T::Symlink => {
                let target = link.ok_or_else(|| hostile("a symlink without a target"))?;
                self.symlink(&path, &target, &meta).map_err(write_err)?;
            }
            T::Link => {
                let target = link.ok_or_else(|| hostile("a hardlink without a target"))?;
                let target = EntryPath::parse(&target)
                    .ok_or_else(|| hostile("the link target contains NUL"))?;
                if target.is_root() {
                    return Err(hostile("a hardlink to the layer root"));
                }
                self.hardlink(&path, &target).map_err(write_err)?;
            }
            T::Char | T::Block | T::Fifo => {
                // devmajor and devminor sit at the same offsets in ustar and gnu headers.
                let header = entry.header();
                let dev = |r: io::Result<Option<u32>>, raw: &[u8]| {
                    let parsed = r.map(|d| u64::from(d.unwrap_or(0)));
                    numeric(parsed, raw)
                        .map(|d| d as u32)
                        .map_err(|source| UnpackError::Read {
                            entry: Some(name.clone()),
                            source,
                        })
                };
                let major = dev(header.device_major(), &header.as_bytes()[329..337])?;
                let minor = dev(header.device_minor(), &header.as_bytes()[337..345])?;
                let file_type = match kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.opts.as_root {
                    self.skipped
                        .push(format!("{name}: device node {major}:{minor} (needs root)"));
                    return Ok(());
                }
                self.node(&path, file_type, rustix::fs::makedev(major, minor), &meta)
                    .map_err(write_err)?;
            }
            other => self.skipped.push(format!(
                "{name}: unsupported tar entry type {:?}",
                other.as_byte() as char
            )),
        }
        Ok(())
    }

    /// Mode, owner, mtime (PAX `mtime` when present, for sub-second precision) and xattrs.
    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Meta, UnpackError> {
        let read_err = |source| UnpackError::Read {
            entry: Some(name.to_string()),
            source,
        };
        let hostile = |reason| UnpackError::Hostile {
            entry: name.to_string(),
            reason,
        };
        let header = entry.header();
        let old = header.as_old();
        let mode = numeric(header.mode().map(u64::from), &old.mode).map_err(read_err)? & 0o7777;
        let mode = mode as u32;
        let uid = u32::try_from(numeric(header.uid(), &old.uid).map_err(read_err)?)
            .ok()
            .filter(|u| *u != u32::MAX)
            .ok_or_else(|| hostile("the uid is out of range"))?;
        let gid = u32::try_from(numeric(header.gid(), &old.gid).map_err(read_err)?)
            .ok()
            .filter(|g| *g != u32::MAX)
            .ok_or_else(|| hostile("the gid is out of range"))?;
        let secs = numeric(header.mtime(), &old.mtime).map_err(read_err)?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(read_err)? {
            for ext in pax {
                let ext = ext.map_err(read_err)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if xattr.starts_with("trusted.overlay.") {
                        self.skipped.push(format!(
                            "{name}: xattr {xattr} (overlay metadata is not taken from layers)"
                        ));
                    } else {
                        xattrs.push((xattr.to_string(), ext.value_bytes().to_vec()));
                    }
                } else if key == "mtime"
                    && let Some(t) = ext.value().ok().and_then(parse_pax_time)
                {
                    mtime = t;
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// The parent directory of `path`, created (0755) where missing. Returns the fd with the
    /// removal count it is valid for; give it back with `keep_parent`.
    fn open_parent(&mut self, parent: &[u8]) -> io::Result<OwnedFd> {
        if let Some((cached, fd, at)) = self.cache.take()
            && cached == parent
            && at == self.removals
        {
            return Ok(fd);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match open_in_root(self.dest_fd.as_fd(), parent, flags) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        // Create the missing directories one component at a time, each resolved IN_ROOT.
        let mut fd = open_in_root(self.dest_fd.as_fd(), b"", flags)?;
        let mut end = 0;
        for comp in parent.split(|b| *b == b'/') {
            end += comp.len();
            let prefix = &parent[..end];
            end += 1;
            match open_in_root(self.dest_fd.as_fd(), prefix, flags) {
                Ok(next) => fd = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            rustix::fs::chmodat(
                                &fd,
                                comp,
                                Mode::from_raw_mode(0o755),
                                AtFlags::empty(),
                            )?;
                        }
                        // A dangling symlink: the open below reports it.
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    fd = open_in_root(self.dest_fd.as_fd(), prefix, flags)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fd)
    }

    fn keep_parent(&mut self, parent: &[u8], fd: OwnedFd, removals: u64) {
        if removals == self.removals {
            self.cache = Some((parent.to_vec(), fd, removals));
        }
    }

    /// Removes whatever is at `parent/base` (a directory recursively).
    fn remove(&mut self, parent: BorrowedFd<'_>, base: &[u8], path: &[u8]) -> io::Result<()> {
        self.removals += 1;
        self.cache = None;
        let st = rustix::fs::statat(parent, base, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            remove_dir_all(parent, base)?;
            // Metadata recorded for the directory and what was in it no longer applies.
            let mut inside = path.to_vec();
            inside.push(b'/');
            self.dirs.remove(path);
            let doomed: Vec<Vec<u8>> = self
                .dirs
                .range(inside.clone()..)
                .take_while(|(k, _)| k.starts_with(&inside))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                self.dirs.remove(&k);
            }
            Ok(())
        } else {
            rustix::fs::unlinkat(parent, base, AtFlags::empty()).map_err(Into::into)
        }
    }

    /// Runs `create` in the parent of `path`; when the name exists, removes it and retries
    /// once (a later entry wins). Returns the parent and the removal count to give back to
    /// `keep_parent`.
    fn create_at(
        &mut self,
        path: &EntryPath,
        mut create: impl FnMut(BorrowedFd<'_>, &[u8]) -> io::Result<()>,
    ) -> io::Result<(OwnedFd, u64)> {
        let parent = self.open_parent(path.parent())?;
        let removals = self.removals;
        match create(parent.as_fd(), path.base()) {
            Err(e) if is_exists(&e) => {
                self.remove(parent.as_fd(), path.base(), &path.clean)?;
                create(parent.as_fd(), path.base())?;
            }
            other => other?,
        }
        Ok((parent, removals))
    }

    fn regular<R: Read>(
        &mut self,
        path: &EntryPath,
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), UnpackError> {
        let dest = Rc::clone(&self.dest);
        let write_err = |source| UnpackError::Write {
            entry: name.to_string(),
            dest: dest.to_path_buf(),
            source,
        };
        let mut file_fd = None;
        let (parent, removals) = self
            .create_at(path, |parent, base| {
                let fd = rustix::fs::openat(
                    parent,
                    base,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                file_fd = Some(fd);
                Ok(())
            })
            .map_err(write_err)?;
        self.keep_parent(path.parent(), parent, removals);
        let Some(fd) = file_fd else {
            return Err(write_err(io::Error::other("file was not created")));
        };
        let mut file = File::from(fd);
        if entry.size() > 0 {
            loop {
                let n = match entry.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(UnpackError::Read {
                            entry: Some(name.to_string()),
                            source,
                        });
                    }
                };
                file.write_all(&self.buf[..n]).map_err(write_err)?;
                self.size += n as u64;
            }
        }
        self.apply_fd(
            file.as_fd(),
            meta.mode,
            (meta.uid, meta.gid),
            &meta.xattrs,
            meta.mtime,
            name,
        )
        .map_err(write_err)
    }

    /// Owner, mode, xattrs and times on an open file or directory.
    fn apply_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        mode: u32,
        owner: (u32, u32),
        xattrs: &[(String, Vec<u8>)],
        mtime: Timespec,
        name: &str,
    ) -> io::Result<()> {
        if self.opts.as_root {
            rustix::fs::fchown(
                fd,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )?;
        }
        // After chown, which clears set-id bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
        for (key, value) in xattrs {
            match rustix::fs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::NOTSUP)) => {
                    self.skipped.push(format!("{name}: xattr {key} ({e})"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        rustix::fs::futimens(
            fd,
            &Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
        )?;
        Ok(())
    }

    fn directory(&mut self, path: &EntryPath, meta: Meta) -> io::Result<()> {
        if !path.is_root() {
            let parent = self.open_parent(path.parent())?;
            let removals = self.removals;
            let base = path.base();
            match rustix::fs::mkdirat(&parent, base, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let st = rustix::fs::statat(&parent, base, AtFlags::SYMLINK_NOFOLLOW)?;
                    // A directory over a directory merges; anything else is replaced.
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        self.remove(parent.as_fd(), base, &path.clean)?;
                        rustix::fs::mkdirat(&parent, base, Mode::from_raw_mode(0o755))?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            self.keep_parent(path.parent(), parent, removals);
        }
        self.dirs.insert(
            path.clean.clone(),
            DirMeta {
                mode: meta.mode,
                owner: (meta.uid, meta.gid),
                mtime: meta.mtime,
                xattrs: meta.xattrs,
            },
        );
        Ok(())
    }

    fn symlink(&mut self, path: &EntryPath, target: &[u8], meta: &Meta) -> io::Result<()> {
        let (parent, removals) = self.create_at(path, |parent, base| {
            rustix::fs::symlinkat(target, parent, base).map_err(Into::into)
        })?;
        self.finish_nofollow(parent.as_fd(), path, meta)?;
        self.keep_parent(path.parent(), parent, removals);
        if !meta.xattrs.is_empty() {
            self.skipped.push(format!(
                "{}: xattrs on a symlink are not set",
                String::from_utf8_lossy(&path.clean)
            ));
        }
        Ok(())
    }

    /// Owner and times on a node that must not be opened (symlink, device, fifo).
    fn finish_nofollow(
        &self,
        parent: BorrowedFd<'_>,
        path: &EntryPath,
        meta: &Meta,
    ) -> io::Result<()> {
        let base = path.base();
        if self.opts.as_root {
            rustix::fs::chownat(
                parent,
                base,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        let times = Timestamps {
            last_access: meta.mtime,
            last_modification: meta.mtime,
        };
        rustix::fs::utimensat(parent, base, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn hardlink(&mut self, path: &EntryPath, target: &EntryPath) -> io::Result<()> {
        if target.clean == path.clean {
            return Ok(());
        }
        let target_parent = open_in_root(
            self.dest_fd.as_fd(),
            target.parent(),
            OFlags::PATH | OFlags::DIRECTORY,
        )?;
        let tbase = target.base();
        let parent = self.open_parent(path.parent())?;
        let removals = self.removals;
        let link = |parent: BorrowedFd<'_>| {
            rustix::fs::linkat(&target_parent, tbase, parent, path.base(), AtFlags::empty())
        };
        match link(parent.as_fd()) {
            Err(Errno::EXIST) => {
                let old = rustix::fs::statat(&target_parent, tbase, AtFlags::SYMLINK_NOFOLLOW)?;
                let new = rustix::fs::statat(&parent, path.base(), AtFlags::SYMLINK_NOFOLLOW)?;
                if (old.st_dev, old.st_ino) != (new.st_dev, new.st_ino) {
                    self.remove(parent.as_fd(), path.base(), &path.clean)?;
                    link(parent.as_fd())?;
                }
            }
            other => other?,
        }
        self.keep_parent(path.parent(), parent, removals);
        Ok(())
    }

    fn node(
        &mut self,
        path: &EntryPath,
        file_type: FileType,
        dev: rustix::fs::Dev,
        meta: &Meta,
    ) -> io::Result<()> {
        let mode = Mode::from_raw_mode(meta.mode);
        let (parent, removals) = self.create_at(path, |parent, base| {
            rustix::fs::mknodat(parent, base, file_type, Mode::from_raw_mode(0o600), dev)
                .map_err(Into::into)
        })?;
        self.finish_nofollow(parent.as_fd(), path, meta)?;
        // The node was just created by us, so following the last component is harmless.
        rustix::fs::chmodat(&parent, path.base(), mode, AtFlags::empty())?;
        self.keep_parent(path.parent(), parent, removals);
        Ok(())
    }

    fn whiteout(&mut self, path: &EntryPath, name: &str) -> Result<(), UnpackError> {
        let base = path.base();
        let dest = Rc::clone(&self.dest);
        let write_err = |source| UnpackError::Write {
            entry: name.to_string(),
            dest: dest.to_path_buf(),
            source,
        };
        if base == WHITEOUT_OPAQUE {
            if !self.opts.as_root {
                self.skipped.push(format!(
                    "{name}: opaque directory marker not set (needs root)"
                ));
                return Ok(());
            }
            let parent = self.open_parent(path.parent()).map_err(write_err)?;
            let removals = self.removals;
            let dir = rustix::fs::openat(
                &parent,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| write_err(e.into()))?;
            rustix::fs::fsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| write_err(e.into()))?;
            self.keep_parent(path.parent(), parent, removals);
            return Ok(());
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            self.skipped.push(format!("{name}: aufs metadata"));
            return Ok(());
        }
        let hidden = &base[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Hostile {
                entry: name.to_string(),
                reason: "a whiteout must name an entry (not nothing, `.` or `..`)",
            });
        }
        if !self.opts.as_root {
            self.skipped
                .push(format!("{name}: whiteout device not created (needs root)"));
            return Ok(());
        }
        let mut clean = path.clean[..path.base_at].to_vec();
        clean.extend_from_slice(hidden);
        let target = EntryPath {
            clean,
            base_at: path.base_at,
        };
        let (parent, removals) = self
            .create_at(&target, |parent, base| {
                rustix::fs::mknodat(
                    parent,
                    base,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(Into::into)
            })
            .map_err(write_err)?;
        self.keep_parent(target.parent(), parent, removals);
        Ok(())
    }

    /// Applies directory metadata, deepest first (a child sorts after its parent).
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        self.cache = None;
        for (path, meta) in dirs.into_iter().rev() {
            let name = String::from_utf8_lossy(&path).into_owned();
            let dest = Rc::clone(&self.dest);
            let write_err = |source| UnpackError::Write {
                entry: name.clone(),
                dest: dest.to_path_buf(),
                source,
            };
            let fd = match open_in_root(
                self.dest_fd.as_fd(),
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry that is not a directory.
                Err(e)
                    if matches!(
                        Errno::from_io_error(&e),
                        Some(Errno::NOTDIR | Errno::LOOP | Errno::NOENT)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(write_err(e)),
            };
            let owner = meta.owner;
            self.apply_fd(
                fd.as_fd(),
                meta.mode,
                owner,
                &meta.xattrs,
                meta.mtime,
                &name,
            )
            .map_err(write_err)?;
        }
        Ok(())
    }
}

/// Removes the directory `parent/name` and everything in it, never following symlinks.
fn remove_dir_all(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for child in Dir::read_from(&fd)? {
        let child = child?;
        let child_name = child.file_name().to_bytes();
        if child_name == b"." || child_name == b".." {
            continue;
        }
        children.push((child_name.to_vec(), child.file_type()));
    }
    for (child, file_type) in children {
        if file_type == FileType::Directory {
            remove_dir_all(fd.as_fd(), &child)?;
        } else {
            rustix::fs::unlinkat(&fd, child.as_slice(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's archive/tar
/// (which wrote most layers) reads it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

/// A PAX time: `seconds[.fraction]`.
fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut tv_nsec: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        tv_nsec *= 10;
    }
    // A negative time with a fraction counts the fraction backwards.
    if tv_sec < 0 && tv_nsec > 0 {
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A tar built in memory, entry by entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(1_600_000_000);
            h
        }
        fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Tar {
            let mut h = Tar::header(tar::EntryType::Regular, mode, data.len() as u64);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        fn dir(mut self, path: &str, mode: u32, mtime: u64) -> Tar {
            let mut h = Tar::header(tar::EntryType::Directory, mode, 0);
            h.set_mtime(mtime);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Tar {
            let mut h = Tar::header(kind, 0o777, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        /// An entry whose name goes into the header as is (the builder refuses `..`).
        fn raw(mut self, kind: tar::EntryType, name: &[u8], data: &[u8]) -> Tar {
            let mut h = Tar::header(kind, 0o644, data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn unprivileged() -> UnpackOptions {
        UnpackOptions {
            as_root: false,
            expected_diff_id: None,
        }
    }

    fn tree() -> Vec<u8> {
        Tar::new()
            .dir("etc/", 0o755, 1_500_000_000)
            .file("etc/hosts", 0o644, b"127.0.0.1 localhost\n")
            .file("bin/sh", 0o755, &[7u8; 300_000])
            .link(tar::EntryType::Symlink, "bin/bash", "sh")
            .link(tar::EntryType::Link, "bin/ash", "bin/sh")
            .dir("usr/share/doc/", 0o700, 1_000_000)
            .file("usr/share/doc/README", 0o400, b"read me")
            .bytes()
    }

    fn check_tree(dest: &Path) {
        assert_eq!(
            fs::read(dest.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        let sh = fs::metadata(dest.join("bin/sh")).unwrap();
        assert_eq!(sh.len(), 300_000);
        assert_eq!(sh.permissions().mode() & 0o7777, 0o755);
        assert_eq!(sh.mtime(), 1_600_000_000);
        assert_eq!(fs::read(dest.join("bin/sh")).unwrap(), vec![7u8; 300_000]);
        assert_eq!(
            fs::read_link(dest.join("bin/bash")).unwrap(),
            Path::new("sh")
        );
        let ash = fs::metadata(dest.join("bin/ash")).unwrap();
        assert_eq!(ash.ino(), sh.ino());
        assert_eq!(sh.nlink(), 2);
        let doc = fs::metadata(dest.join("usr/share/doc")).unwrap();
        assert!(doc.is_dir());
        assert_eq!(doc.permissions().mode() & 0o7777, 0o700);
        assert_eq!(doc.mtime(), 1_000_000);
        assert_eq!(
            fs::metadata(dest.join("etc")).unwrap().mtime(),
            1_500_000_000
        );
        // A parent missing from the tar is created 0755.
        let usr = fs::metadata(dest.join("usr")).unwrap();
        assert_eq!(usr.permissions().mode() & 0o7777, 0o755);
        let readme = fs::metadata(dest.join("usr/share/doc/README")).unwrap();
        assert_eq!(readme.permissions().mode() & 0o7777, 0o400);
    }

    #[test]
    fn plain_gzip_and_zstd_unpack_the_same_tree_and_hash_the_tar() {
        let tar = tree();
        let expected = Digest::of_bytes(&tar);
        for (what, stream) in [
            ("plain", tar.clone()),
            ("gzip", gzip(&tar)),
            ("zstd", zstd(&tar)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let opts = UnpackOptions {
                as_root: false,
                expected_diff_id: Some(expected.clone()),
            };
            let out = unpack_layer(&stream[..], dir.path(), &opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(out.diff_id, expected, "{what}");
            assert_eq!(out.size, 20 + 300_000 + 7, "{what}");
            assert_eq!(out.skipped, Vec::<String>::new(), "{what}");
            check_tree(dir.path());
        }
    }

    #[test]
    fn a_reader_giving_one_byte_at_a_time_is_still_detected() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let tar = tree();
        let dir = tempfile::tempdir().unwrap();
        let out = unpack_layer(Trickle(&zstd(&tar)), dir.path(), &unprivileged()).unwrap();
        assert_eq!(out.diff_id, Digest::of_bytes(&tar));
        check_tree(dir.path());
    }

    #[test]
    fn diff_id_covers_padding_after_the_end_marker_and_mismatch_is_reported() {
        let mut tar = tree();
        tar.extend_from_slice(&[0u8; 8192]);
        let real = Digest::of_bytes(&tar);
        let wrong = Digest::of_bytes(b"another layer");
        let dir = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            as_root: false,
            expected_diff_id: Some(wrong.clone()),
        };
        match unpack_layer(&gzip(&tar)[..], dir.path(), &opts) {
            Err(UnpackError::DiffIdMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, real);
            }
            other => panic!("expected a diff_id mismatch, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_streams_are_read_errors() {
        let gz = gzip(&tree());
        let dir = tempfile::tempdir().unwrap();
        let cut = &gz[..gz.len() / 2];
        assert!(matches!(
            unpack_layer(cut, dir.path(), &unprivileged()),
            Err(UnpackError::Read { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut bad = tree();
        bad[100] ^= 0xff; // inside the first header: checksum mismatch
        assert!(matches!(
            unpack_layer(&bad[..], dir.path(), &unprivileged()),
            Err(UnpackError::Read { .. })
        ));
    }

    #[test]
    fn later_entries_replace_earlier_ones_and_dirs_merge() {
        let tar = Tar::new()
            .file("a", 0o644, b"file first")
            .file("a/b", 0o644, b"then a dir") // `a` is a file: not a directory
            .bytes();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_layer(&tar[..], dir.path(), &unprivileged()).unwrap_err();
        assert!(
            matches!(&err, UnpackError::Write { entry, .. } if entry == "a/b"),
            "{err}"
        );

        let tar = Tar::new()
            .file("a", 0o644, b"file first")
            .dir("a/", 0o755, 5)
            .file("a/b", 0o644, b"in the dir")
            .dir("d/", 0o755, 5)
            .file("d/x", 0o644, b"gone")
            .file("d", 0o600, b"file over dir")
            .dir("m/", 0o755, 5)
            .file("m/1", 0o644, b"kept")
            .dir("m/", 0o710, 9)
            .file("f", 0o644, b"old")
            .file("f", 0o640, b"new")
            .link(tar::EntryType::Symlink, "s", "f")
            .file("s", 0o644, b"file over symlink")
            .bytes();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        unpack_layer(&tar[..], d, &unprivileged()).unwrap();
        assert_eq!(fs::read(d.join("a/b")).unwrap(), b"in the dir");
        assert_eq!(fs::read(d.join("d")).unwrap(), b"file over dir");
        assert_eq!(fs::read(d.join("m/1")).unwrap(), b"kept");
        let m = fs::metadata(d.join("m")).unwrap();
        assert_eq!((m.permissions().mode() & 0o7777, m.mtime()), (0o710, 9));
        assert_eq!(fs::read(d.join("f")).unwrap(), b"new");
        assert_eq!(
            fs::metadata(d.join("f")).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(fs::symlink_metadata(d.join("s")).unwrap().is_file());
        assert_eq!(fs::read(d.join("s")).unwrap(), b"file over symlink");
    }

    #[test]
    fn dot_dot_and_absolute_names_are_clamped_to_the_layer() {
        let tar = Tar::new()
            .raw(tar::EntryType::Regular, b"../../up", b"clamped")
            .raw(tar::EntryType::Regular, b"/abs/x", b"absolute")
            .raw(tar::EntryType::Regular, b"a/../../b", b"b")
            .bytes();
        let top = tempfile::tempdir().unwrap();
        let dest = top.path().join("layer");
        fs::create_dir(&dest).unwrap();
        unpack_layer(&tar[..], &dest, &unprivileged()).unwrap();
        assert_eq!(fs::read(dest.join("up")).unwrap(), b"clamped");
        assert_eq!(fs::read(dest.join("abs/x")).unwrap(), b"absolute");
        assert_eq!(fs::read(dest.join("b")).unwrap(), b"b");
        let names: Vec<_> = fs::read_dir(top.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["layer"]);
    }

    #[test]
    fn hostile_names_are_refused_naming_the_entry() {
        for name in [&b".wh..."[..], b"x/.wh..", b".wh."] {
            let tar = Tar::new().raw(tar::EntryType::Regular, name, b"").bytes();
            let dir = tempfile::tempdir().unwrap();
            match unpack_layer(&tar[..], dir.path(), &unprivileged()) {
                Err(UnpackError::Hostile { entry, .. }) => {
                    assert_eq!(entry.as_bytes(), name);
                }
                other => panic!("{name:?}: expected a refusal, got {other:?}"),
            }
        }
        let mut t = Tar::new();
        t.0.append_pax_extensions([("path", &b"a/b\0c"[..])])
            .unwrap();
        let tar = t.file("placeholder", 0o644, b"").bytes();
        let dir = tempfile::tempdir().unwrap();
        match unpack_layer(&tar[..], dir.path(), &unprivileged()) {
            Err(UnpackError::Hostile { entry, reason }) => {
                assert_eq!(
                    (entry.as_str(), reason),
                    ("a/b\0c", "the name contains NUL")
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let tar = Tar::new().raw(tar::EntryType::Regular, b"..", b"x").bytes();
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack_layer(&tar[..], dir.path(), &unprivileged()),
            Err(UnpackError::Hostile { .. })
        ));
    }

    #[test]
    fn without_root_devices_and_whiteouts_are_skipped_and_noted() {
        let mut t = Tar::new();
        let mut h = Tar::header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        t.0.append_data(&mut h, "dev/null", io::empty()).unwrap();
        let tar = t
            .file("d/.wh.gone", 0o644, b"")
            .file("d/.wh..wh..opq", 0o644, b"")
            .raw(tar::EntryType::Fifo, b"pipe", b"")
            .bytes();
        let dir = tempfile::tempdir().unwrap();
        let out = unpack_layer(&tar[..], dir.path(), &unprivileged()).unwrap();
        assert_eq!(out.skipped.len(), 3, "{:?}", out.skipped);
        assert!(out.skipped[0].starts_with("dev/null: device node 1:3"));
        assert!(out.skipped[1].starts_with("d/.wh.gone: whiteout"));
        assert!(out.skipped[2].starts_with("d/.wh..wh..opq: opaque"));
        assert!(!dir.path().join("dev/null").exists());
        assert!(!dir.path().join("d/gone").exists());
        assert!(!dir.path().join("d/.wh.gone").exists());
        let pipe = fs::symlink_metadata(dir.path().join("pipe")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    }

    #[test]
    fn an_old_style_entry_with_a_trailing_slash_is_a_directory() {
        let mut t = Tar::new();
        let mut h = Tar::header(tar::EntryType::Regular, 0o755, 0);
        h.as_old_mut().name[..7].copy_from_slice(b"olddir/");
        h.as_old_mut().linkflag = [0];
        h.set_cksum();
        t.0.append(&h, io::empty()).unwrap();
        let tar = t.file("olddir/f", 0o644, b"x").bytes();
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&tar[..], dir.path(), &unprivileged()).unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("olddir"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(fs::read(dir.path().join("olddir/f")).unwrap(), b"x");
    }

    #[test]
    fn pax_times() {
        let t = |s| parse_pax_time(s).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1600000000"), Some((1_600_000_000, 0)));
        assert_eq!(t("1600000000.5"), Some((1_600_000_000, 500_000_000)));
        assert_eq!(t("1.0000000019"), Some((1, 1)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }
}
