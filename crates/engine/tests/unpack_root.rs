//! Unpacking as root: hostile layers stay inside the layer directory, whiteouts become 0:0
//! char devices, opaque dirs get their xattr, ownership, modes, xattrs and device nodes are
//! kept. Skipped (with a note) when not root; `CI=true` makes them mandatory.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_engine::digest::Digest;
use berth_engine::unpack::{UnpackError, UnpackOptions, Unpacked, unpack_layer};
use tar::EntryType;

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: these tests must run as root");
    }
    eprintln!("skipped: needs root");
    false
}

/// A tar whose names and link targets go into the header byte for byte.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn entry(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Tar {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Tar {
        self.entry(EntryType::Regular, name.as_bytes(), b"", data)
    }
    fn symlink(self, name: &str, target: &str) -> Tar {
        self.entry(EntryType::Symlink, name.as_bytes(), target.as_bytes(), b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Tar {
        self.entry(EntryType::Link, name.as_bytes(), target.as_bytes(), b"")
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A sentinel directory holding the layer dir and a marker; checks that nothing but the layer
/// changed, around it and in /etc.
struct Jail {
    _top: tempfile::TempDir,
    sentinel: PathBuf,
    dest: PathBuf,
    passwd: (Digest, u64),
    etc: Vec<String>,
    root: Vec<String>,
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The value of xattr `name` on `path` (not following a symlink), if set.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    Some(buf[..n].to_vec())
}

fn passwd() -> (Digest, u64) {
    let meta = fs::metadata("/etc/passwd").unwrap();
    (
        Digest::of_bytes(&fs::read("/etc/passwd").unwrap()),
        meta.nlink(),
    )
}

impl Jail {
    fn new() -> Jail {
        let top = tempfile::tempdir().unwrap();
        let sentinel = top.path().join("sentinel");
        let dest = sentinel.join("layer");
        fs::create_dir_all(&dest).unwrap();
        fs::write(sentinel.join("marker"), b"untouched").unwrap();
        Jail {
            _top: top,
            sentinel,
            dest,
            passwd: passwd(),
            etc: listing(Path::new("/etc")),
            root: listing(Path::new("/")),
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<Unpacked, UnpackError> {
        let opts = UnpackOptions {
            as_root: true,
            expected_diff_id: Some(Digest::of_bytes(tar)),
        };
        let out = unpack_layer(tar, &self.dest, &opts);
        self.check_outside();
        out
    }

    fn check_outside(&self) {
        assert_eq!(listing(&self.sentinel), ["layer", "marker"]);
        assert_eq!(
            fs::read(self.sentinel.join("marker")).unwrap(),
            b"untouched"
        );
        assert_eq!(listing(self.sentinel.parent().unwrap()), ["sentinel"]);
        assert_eq!(passwd(), self.passwd, "/etc/passwd changed");
        assert_eq!(listing(Path::new("/etc")), self.etc, "/etc changed");
        assert_eq!(listing(Path::new("/")), self.root, "/ changed");
    }

    /// Every path in the layer dir, with a type letter, sorted.
    fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for name in listing(dir) {
                let path = dir.join(&name);
                let meta = fs::symlink_metadata(&path).unwrap();
                let rel = format!("{prefix}{name}");
                let kind = meta.file_type();
                if kind.is_dir() {
                    out.push(format!("d {rel}"));
                    walk(&path, &format!("{rel}/"), out);
                } else if kind.is_symlink() {
                    let target = fs::read_link(&path).unwrap();
                    out.push(format!("l {rel} -> {}", target.display()));
                } else if kind.is_file() {
                    out.push(format!("f {rel}"));
                } else {
                    out.push(format!("? {rel}"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dest, "", &mut out);
        out
    }
}

#[test]
fn dot_dot_and_absolute_names_land_inside() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let tar = Tar::new()
        .file("../x", b"1")
        .file("../../../../../../berth-escape-dotdot", b"2")
        .file("/abs/x", b"3")
        .file("/etc/berth-escape-abs", b"4")
        .bytes();
    jail.unpack(&tar).unwrap();
    assert_eq!(
        jail.tree(),
        [
            "d abs",
            "f abs/x",
            "f berth-escape-dotdot",
            "d etc",
            "f etc/berth-escape-abs",
            "f x"
        ]
    );
    assert_eq!(fs::read(jail.dest.join("abs/x")).unwrap(), b"3");
}

#[test]
fn symlink_to_root_then_a_file_through_it_stays_inside() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let tar = Tar::new()
        .symlink("a", "/")
        .file("a/etc/berth-escape-root", b"through a -> /")
        .bytes();
    jail.unpack(&tar).unwrap();
    assert_eq!(
        jail.tree(),
        ["l a -> /", "d etc", "f etc/berth-escape-root"]
    );
}

#[test]
fn symlink_chains_climbing_out_stay_inside() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let tar = Tar::new()
        .symlink("a", "../../..")
        .symlink("b", "a/../../..")
        .symlink("c", "b")
        .entry(EntryType::Directory, b"d/", b"", b"")
        .symlink("d/e", "../../../../c/..")
        .file("c/berth-escape-chain", b"via c")
        .file("d/e/berth-escape-chain2", b"via d/e")
        .file("a/b/c/berth-escape-chain3", b"via a/b/c")
        .bytes();
    jail.unpack(&tar).unwrap();
    assert_eq!(
        jail.tree(),
        [
            "l a -> ../../..",
            "l b -> a/../../..",
            "f berth-escape-chain",
            "f berth-escape-chain2",
            "f berth-escape-chain3",
            "l c -> b",
            "d d",
            "l d/e -> ../../../../c/..",
        ]
    );
}

#[test]
fn symlink_to_a_directory_outside_then_a_file_through_it_stays_inside() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let outside = jail.sentinel.to_str().unwrap().to_string();
    // The target does not exist in the layer: the write fails (as in Docker's chrooted unpack).
    let tar = Tar::new()
        .symlink("out", &outside)
        .file("out/pwned", b"should be inside")
        .bytes();
    match jail.unpack(&tar) {
        Err(UnpackError::Write { entry, source, .. }) => {
            assert_eq!(entry, "out/pwned");
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected the target to be missing, got {other:?}"),
    }
    assert_eq!(jail.tree(), [format!("l out -> {outside}")]);

    // The same directory exists in the layer: the file lands there.
    let jail = Jail::new();
    let outside = jail.sentinel.to_str().unwrap().to_string();
    let tar = Tar::new()
        .entry(
            EntryType::Directory,
            format!("{outside}/").as_bytes(),
            b"",
            b"",
        )
        .symlink("out", &outside)
        .file("out/pwned", b"should be inside")
        .bytes();
    jail.unpack(&tar).unwrap();
    let inner = jail
        .dest
        .join(outside.trim_start_matches('/'))
        .join("pwned");
    assert_eq!(fs::read(&inner).unwrap(), b"should be inside");
    assert!(jail.tree().contains(&format!("l out -> {outside}")));

    // `etc -> /etc`, resolved in the layer, is `etc` itself: a loop, so nothing is written.
    let jail = Jail::new();
    let tar = Tar::new()
        .symlink("etc", "/etc")
        .file("etc/berth-escape-etc", b"nowhere")
        .bytes();
    match jail.unpack(&tar) {
        Err(UnpackError::Write { entry, source, .. }) => {
            assert_eq!(entry, "etc/berth-escape-etc");
            assert_eq!(
                source.raw_os_error(),
                Some(rustix::io::Errno::LOOP.raw_os_error())
            );
        }
        other => panic!("expected a symlink loop, got {other:?}"),
    }
    assert_eq!(jail.tree(), ["l etc -> /etc"]);
}

#[test]
fn hardlinks_to_host_files_are_never_made() {
    if !is_root() {
        return;
    }
    for target in [
        "/etc/passwd",
        "../../../../../../etc/passwd",
        "a/etc/passwd",
    ] {
        let jail = Jail::new();
        let tar = Tar::new().symlink("a", "/").hardlink("pw", target).bytes();
        match jail.unpack(&tar) {
            Err(UnpackError::Write { entry, source, .. }) => {
                assert_eq!(entry, "pw");
                assert_eq!(source.kind(), io::ErrorKind::NotFound, "{target}");
            }
            other => panic!("{target}: expected the link to fail, got {other:?}"),
        }
        assert_eq!(jail.tree(), ["l a -> /"], "{target}");
    }
    // With a layer that has its own etc/passwd, the link goes to that one.
    let jail = Jail::new();
    let tar = Tar::new()
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .symlink("a", "/")
        .hardlink("pw", "/etc/passwd")
        .hardlink("pw2", "../a/etc/passwd")
        .bytes();
    jail.unpack(&tar).unwrap();
    let inode = fs::metadata(jail.dest.join("etc/passwd")).unwrap().ino();
    for link in ["pw", "pw2"] {
        assert_eq!(fs::metadata(jail.dest.join(link)).unwrap().ino(), inode);
    }
    assert_eq!(fs::metadata(jail.dest.join("pw")).unwrap().nlink(), 3);
}

#[test]
fn hostile_whiteouts_are_refused() {
    if !is_root() {
        return;
    }
    for name in [".wh...", "d/.wh..", ".wh."] {
        let jail = Jail::new();
        let tar = Tar::new()
            .entry(EntryType::Directory, b"d/", b"", b"")
            .file(name, b"")
            .bytes();
        match jail.unpack(&tar) {
            Err(UnpackError::Hostile { entry, .. }) => assert_eq!(entry, name),
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        assert_eq!(jail.tree(), ["d d"]);
    }
}

#[test]
fn whiteouts_become_devices_and_opaque_dirs_get_the_xattr() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let tar = Tar::new()
        .entry(EntryType::Directory, b"d/", b"", b"")
        .file("d/.wh.gone", b"")
        .file("d/replaced", b"earlier in this layer")
        .file("d/.wh.replaced", b"")
        .entry(EntryType::Directory, b"o/", b"", b"")
        .file("o/.wh..wh..opq", b"")
        .file("o/kept", b"new content")
        .file("n/.wh..wh..opq", b"")
        .file(".wh..wh.plnk", b"")
        .bytes();
    let out = jail.unpack(&tar).unwrap();
    assert_eq!(out.skipped, [".wh..wh.plnk: aufs metadata"]);
    assert_eq!(
        jail.tree(),
        ["d d", "? d/gone", "? d/replaced", "d n", "d o", "f o/kept"]
    );
    for name in ["d/gone", "d/replaced"] {
        let meta = fs::symlink_metadata(jail.dest.join(name)).unwrap();
        assert!(meta.file_type().is_char_device(), "{name}");
        assert_eq!((meta.rdev(), meta.uid(), meta.gid()), (0, 0, 0), "{name}");
    }
    for dir in ["o", "n"] {
        let value = xattr(&jail.dest.join(dir), "trusted.overlay.opaque");
        assert_eq!(value.as_deref(), Some(&b"y"[..]), "{dir}");
    }
    assert_eq!(xattr(&jail.dest.join("d"), "trusted.overlay.opaque"), None);
}

#[test]
fn ownership_modes_xattrs_and_device_nodes_are_kept() {
    if !is_root() {
        return;
    }
    let jail = Jail::new();
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind, mode, uid, gid| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_234_567_890);
        h.set_size(0);
        h
    };
    let mut h = header(EntryType::Directory, 0o1750, 42, 43);
    b.append_data(&mut h, "dir/", io::empty()).unwrap();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.note", &b"hello"[..]),
        ("SCHILY.xattr.trusted.berth", &b"t"[..]),
        (
            "SCHILY.xattr.security.capability",
            &[
                1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ][..],
        ),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("mtime", &b"1234567890.25"[..]),
        ("uid", &b"3000000"[..]),
    ])
    .unwrap();
    let mut h = header(EntryType::Regular, 0o4755, 1234, 5678);
    h.set_size(5);
    b.append_data(&mut h, "dir/suid", &b"#!/sh"[..]).unwrap();
    let mut h = header(EntryType::Symlink, 0o777, 7, 8);
    b.append_link(&mut h, "dir/link", "suid").unwrap();
    for (name, kind, major, minor, mode) in [
        ("dev/null", EntryType::Char, 1, 3, 0o666),
        ("dev/loop0", EntryType::Block, 7, 0, 0o660),
        ("dev/fifo", EntryType::Fifo, 0, 0, 0o620),
    ] {
        let mut h = header(kind, mode, 0, 6);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        b.append_data(&mut h, name, io::empty()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let out = jail.unpack(&tar).unwrap();
    assert_eq!(out.size, 5);
    assert_eq!(
        out.skipped,
        ["dir/suid: xattr trusted.overlay.redirect (overlay metadata is not taken from layers)"]
    );

    let d = &jail.dest;
    let dir = fs::symlink_metadata(d.join("dir")).unwrap();
    assert_eq!(
        (dir.mode() & 0o7777, dir.uid(), dir.gid(), dir.mtime()),
        (0o1750, 42, 43, 1_234_567_890)
    );
    let suid = fs::symlink_metadata(d.join("dir/suid")).unwrap();
    assert_eq!(
        (suid.mode() & 0o7777, suid.uid(), suid.gid()),
        (0o4755, 3_000_000, 5678)
    );
    assert_eq!(
        (suid.mtime(), suid.mtime_nsec()),
        (1_234_567_890, 250_000_000)
    );
    let suid_xattr = |name: &str| xattr(&d.join("dir/suid"), name);
    assert_eq!(suid_xattr("user.note").as_deref(), Some(&b"hello"[..]));
    assert_eq!(suid_xattr("trusted.berth").as_deref(), Some(&b"t"[..]));
    assert_eq!(suid_xattr("security.capability").map(|v| v.len()), Some(20));
    assert_eq!(suid_xattr("trusted.overlay.redirect"), None);
    let link = fs::symlink_metadata(d.join("dir/link")).unwrap();
    assert!(link.is_symlink());
    assert_eq!(
        (link.uid(), link.gid(), link.mtime()),
        (7, 8, 1_234_567_890)
    );

    let null = fs::symlink_metadata(d.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777, null.gid()),
        (rustix::fs::makedev(1, 3), 0o666, 6)
    );
    let lp = fs::symlink_metadata(d.join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(
        (lp.rdev(), lp.mode() & 0o7777),
        (rustix::fs::makedev(7, 0), 0o660)
    );
    let fifo = fs::symlink_metadata(d.join("dev/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
}
