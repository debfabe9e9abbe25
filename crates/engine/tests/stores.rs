//! Store tests that need root: layers holding overlay whiteouts (0:0 char devices), opaque
//! directories (`trusted.overlay.opaque`), foreign owners and read-only directories, used as
//! overlay lowerdirs, then removed and pruned.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_engine::digest::Digest;
use berth_engine::layers::LayerStore;
use berth_engine::layout::Stores;
use rustix::fs::{CWD, FileType, Mode, XattrFlags};
use rustix::mount::{MountFlags, UnmountFlags};

/// True when root; otherwise prints the skip (or panics under `CI=true`).
fn need_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this test needs root");
    }
    eprintln!("skipped: needs root");
    false
}

/// Unmounts (lazily) when dropped, so a failing assertion does not leave a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
    }
}

fn whiteout(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0)?;
    Ok(())
}

/// A stand-in unpacker: builds the tree with `build`, reports the sha256 of `id` as diffID.
fn layer(
    ls: &LayerStore,
    parent: Option<&Digest>,
    id: &'static str,
    build: impl FnOnce(&Path) -> io::Result<()>,
) -> Digest {
    let diff_id = Digest::of_bytes(id.as_bytes());
    let chain = LayerStore::chain_id(parent, &diff_id);
    let blob = Digest::of_bytes(format!("blob {id}").as_bytes());
    ls.create(&chain, parent, &diff_id, &blob, |dir: &Path| {
        build(dir)?;
        Ok::<_, io::Error>((diff_id.clone(), 0))
    })
    .unwrap();
    chain
}

#[test]
fn layers_keep_whiteouts_owners_and_xattrs_and_work_as_overlay_lowerdirs() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stores = Stores::open(tmp.path().join("root")).unwrap();
    let ls = &stores.layers;

    let base = layer(ls, None, "base", |d| {
        fs::create_dir(d.join("etc"))?;
        fs::write(d.join("etc/gone"), b"base")?;
        fs::write(d.join("etc/kept"), b"base")?;
        fs::create_dir(d.join("cache"))?;
        fs::write(d.join("cache/old"), b"base")?;
        fs::write(d.join("owned"), b"x")?;
        rustix::fs::chown(
            d.join("owned"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )?;
        // A read-only directory with content: removal must still succeed.
        fs::create_dir(d.join("ro"))?;
        fs::write(d.join("ro/f"), b"x")?;
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o555))?;
        Ok(())
    });
    let top = layer(ls, Some(&base), "top", |d| {
        fs::create_dir(d.join("etc"))?;
        whiteout(&d.join("etc/gone"))?;
        fs::create_dir(d.join("cache"))?;
        rustix::fs::setxattr(
            d.join("cache"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )?;
        fs::write(d.join("cache/new"), b"top")?;
        Ok(())
    });

    // The committed layers kept what the unpacker made.
    let wo = fs::symlink_metadata(ls.diff_dir(&top).join("etc/gone")).unwrap();
    assert_eq!(
        FileType::from_raw_mode(wo.mode()),
        FileType::CharacterDevice
    );
    assert_eq!((wo.rdev(), wo.uid(), wo.gid()), (0, 0, 0));
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(
        ls.diff_dir(&top).join("cache"),
        "trusted.overlay.opaque",
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..n], b"y");
    let owned = fs::metadata(ls.diff_dir(&base).join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));

    // Stacked as overlay lowerdirs (top first) they give the merged view.
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "lowerdir={}:{}",
        ls.diff_dir(&top).display(),
        ls.diff_dir(&base).display()
    );
    let opts = std::ffi::CString::new(opts).unwrap();
    rustix::mount::mount(
        "overlay",
        &mnt,
        "overlay",
        MountFlags::RDONLY,
        Some(opts.as_c_str()),
    )
    .unwrap();
    let guard = Mounted(mnt.clone());
    assert!(
        !mnt.join("etc/gone").exists(),
        "the whiteout hides the lower file"
    );
    assert_eq!(fs::read(mnt.join("etc/kept")).unwrap(), b"base");
    assert!(
        !mnt.join("cache/old").exists(),
        "the opaque dir hides lower content"
    );
    assert_eq!(fs::read(mnt.join("cache/new")).unwrap(), b"top");
    assert_eq!(fs::metadata(mnt.join("owned")).unwrap().uid(), 1234);
    drop(guard);

    // Removal and prune handle device nodes, xattrs and read-only directories.
    assert!(ls.remove(&top).unwrap());
    let layers_dir = stores.root.layers_dir();
    let stale = layers_dir.join(".tmp-interrupted");
    fs::create_dir_all(stale.join("diff/ro")).unwrap();
    whiteout(&stale.join("diff/wo")).unwrap();
    fs::set_permissions(stale.join("diff/ro"), fs::Permissions::from_mode(0o500)).unwrap();
    assert_eq!(ls.prune_tmp().unwrap(), 1);
    assert!(ls.remove(&base).unwrap());
    assert_eq!(fs::read_dir(&layers_dir).unwrap().count(), 0);
    assert!(ls.list().unwrap().is_empty());
}
