//! Volumes as root: copy-up keeps owners, modes, times, links, device nodes and xattrs, never
//! copies what a symlink in the image points to on the host, happens once per volume; bind-type
//! volumes get the copy in their device and keep it on removal. Skipped (with a note) when not
//! root; `CI=true` makes them mandatory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, chown, lchown, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_engine::layout::Root;
use berth_engine::volumes::{VolumeOptions, VolumeStore, copy_up};
use rustix::fs::{CWD, FileType, Mode, XattrFlags};

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

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// An image-like tree at `<rootfs>/var/lib/app`, owned 999:999, mode 0750.
struct Image {
    rootfs: std::path::PathBuf,
    secret: std::path::PathBuf,
    mtime: SystemTime,
    xattr: bool,
}

fn image(tmp: &Path) -> Image {
    let rootfs = tmp.join("rootfs");
    let app = rootfs.join("var/lib/app");
    fs::create_dir_all(app.join("sub")).unwrap();
    // A host file the image's symlinks point at: must never be copied.
    let host = tmp.join("host");
    fs::create_dir(&host).unwrap();
    let secret = host.join("secret");
    fs::write(&secret, b"host secret").unwrap();

    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    fs::write(app.join("conf"), b"setting=1\n").unwrap();
    chown(app.join("conf"), Some(1000), Some(1001)).unwrap();
    set_mode(&app.join("conf"), 0o640);
    let f = fs::File::options()
        .write(true)
        .open(app.join("conf"))
        .unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let xattr =
        rustix::fs::setxattr(app.join("conf"), "user.berth", b"kept", XattrFlags::empty()).is_ok();
    fs::hard_link(app.join("conf"), app.join("conf.link")).unwrap();

    fs::write(app.join("sub/tool"), b"#!/bin/sh\n").unwrap();
    set_mode(&app.join("sub/tool"), 0o4755);
    chown(app.join("sub"), Some(5), Some(6)).unwrap();
    set_mode(&app.join("sub"), 0o751);

    symlink("conf", app.join("rel")).unwrap();
    lchown(app.join("rel"), Some(7), Some(8)).unwrap();
    symlink(&secret, app.join("abs-escape")).unwrap();
    symlink("../../../../../../../../../..", app.join("up-escape")).unwrap();

    rustix::fs::mknodat(
        CWD,
        app.join("fifo").as_path(),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        app.join("null").as_path(),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    set_mode(&app.join("null"), 0o620);

    chown(&app, Some(999), Some(999)).unwrap();
    set_mode(&app, 0o750);
    // The image points /data at the app directory, and /evil at the host directory.
    symlink("/var/lib/app", rootfs.join("data")).unwrap();
    symlink(&host, rootfs.join("evil")).unwrap();
    Image {
        rootfs,
        secret,
        mtime,
        xattr,
    }
}

#[test]
fn copy_up_keeps_metadata_and_stays_inside_the_rootfs() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let vol = tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    set_mode(&vol, 0o755);

    // Through the image's own symlink /data → /var/lib/app, resolved inside the rootfs.
    assert!(copy_up(&img.rootfs, "/data", &vol).unwrap());

    // The volume root takes the image directory's owner and mode (postgres' data dir).
    assert_eq!(owner(&vol), (999, 999));
    assert_eq!(mode(&vol), 0o750);

    let conf = vol.join("conf");
    assert_eq!(fs::read(&conf).unwrap(), b"setting=1\n");
    assert_eq!(owner(&conf), (1000, 1001));
    assert_eq!(mode(&conf), 0o640);
    let m = fs::metadata(&conf).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert_eq!(m.modified().unwrap(), img.mtime);
    if img.xattr {
        let mut buf = [0u8; 16];
        let n = rustix::fs::getxattr(&conf, "user.berth", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"kept");
    }
    // Hard links stay linked.
    let link = fs::metadata(vol.join("conf.link")).unwrap();
    assert_eq!(link.ino(), m.ino());
    assert_eq!(m.nlink(), 2);

    assert_eq!(owner(&vol.join("sub")), (5, 6));
    assert_eq!(mode(&vol.join("sub")), 0o751);
    // Set-uid survives the chown.
    assert_eq!(mode(&vol.join("sub/tool")), 0o4755);

    assert_eq!(fs::read_link(vol.join("rel")).unwrap(), Path::new("conf"));
    assert_eq!(owner(&vol.join("rel")), (7, 8));
    // Escaping symlinks are copied as symlinks, never as what they point to.
    assert_eq!(fs::read_link(vol.join("abs-escape")).unwrap(), img.secret);
    assert!(
        fs::symlink_metadata(vol.join("up-escape"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let fifo = fs::symlink_metadata(vol.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    let null = fs::symlink_metadata(vol.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(mode(&vol.join("null")), 0o620);

    // Nothing of the host file came in by content.
    for entry in walk(&vol) {
        if fs::symlink_metadata(&entry).unwrap().is_file() {
            assert_ne!(fs::read(&entry).unwrap(), b"host secret", "{entry:?}");
        }
    }

    // A volume that has content is never copied into.
    let again = copy_up(&img.rootfs, "/var/lib/app", &vol).unwrap();
    assert!(!again);
}

#[test]
fn copy_up_mount_point_symlink_cannot_reach_the_host() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let vol = tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    // /evil → <tmp>/host on the host; inside the rootfs that path does not exist.
    assert!(!copy_up(&img.rootfs, "/evil", &vol).unwrap());
    assert!(!copy_up(&img.rootfs, "/evil/../../host", &vol).unwrap());
    // No directory at the target in the image: nothing to do.
    assert!(!copy_up(&img.rootfs, "/nowhere", &vol).unwrap());
    assert!(fs::read_dir(&vol).unwrap().next().is_none());
    assert_eq!(owner(&vol), (0, 0));
}

#[test]
fn populate_happens_once_per_volume() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let root = Root::open(tmp.path().join("state")).unwrap();
    let store = VolumeStore::open(&root).unwrap();
    store.create("appdata", &VolumeOptions::default()).unwrap();
    // The image has nothing there: the volume stays unpopulated for a later image.
    assert!(!store.populate("appdata", &img.rootfs, "/srv").unwrap());
    assert!(!store.get("appdata").unwrap().populated);

    assert!(
        store
            .populate("appdata", &img.rootfs, "/var/lib/app")
            .unwrap()
    );
    let data = store.data_dir("appdata");
    assert!(store.get("appdata").unwrap().populated);
    assert_eq!(owner(&data), (999, 999));
    assert!(data.join("conf").is_file());

    // Emptied by the user: not refilled.
    for entry in fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            fs::remove_file(&p).unwrap();
        }
    }
    assert!(
        !store
            .populate("appdata", &img.rootfs, "/var/lib/app")
            .unwrap()
    );
    assert!(fs::read_dir(&data).unwrap().next().is_none());

    // A volume the user filled before its first mount keeps its content and counts as used.
    store
        .create("prefilled", &VolumeOptions::default())
        .unwrap();
    fs::write(store.data_dir("prefilled").join("mine"), b"x").unwrap();
    assert!(
        !store
            .populate("prefilled", &img.rootfs, "/var/lib/app")
            .unwrap()
    );
    assert!(store.get("prefilled").unwrap().populated);
    assert!(!store.data_dir("prefilled").join("conf").exists());
}

#[test]
fn bind_volume_is_filled_in_its_device_and_survives_removal() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path());
    let device = tmp.path().join("device");
    fs::create_dir(&device).unwrap();
    let root = Root::open(tmp.path().join("state")).unwrap();
    let store = VolumeStore::open(&root).unwrap();
    let opts = VolumeOptions {
        driver: "local".into(),
        driver_opts: [
            ("type".to_string(), "none".to_string()),
            ("o".to_string(), "bind".to_string()),
            ("device".to_string(), device.to_string_lossy().into_owned()),
        ]
        .into(),
        labels: Default::default(),
    };
    store.create("bound", &opts).unwrap();
    assert_eq!(store.mountpoint("bound").unwrap(), device);
    assert!(
        store
            .populate("bound", &img.rootfs, "/var/lib/app")
            .unwrap()
    );
    assert_eq!(fs::read(device.join("conf")).unwrap(), b"setting=1\n");
    assert_eq!(owner(&device), (999, 999));
    // The store's own _data stays empty: nothing is ever mounted or copied there.
    assert!(
        fs::read_dir(store.data_dir("bound"))
            .unwrap()
            .next()
            .is_none()
    );
    let r = store
        .prune(
            &berth_engine::volumes::PruneFilter {
                all: true,
                ..Default::default()
            },
            &|_| Vec::new(),
        )
        .unwrap();
    assert_eq!(r.removed, ["bound"]);
    assert_eq!(r.bytes_reclaimed, 0);
    assert_eq!(fs::read(device.join("conf")).unwrap(), b"setting=1\n");
    assert!(device.join("sub/tool").is_file());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
