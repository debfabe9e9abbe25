//! Overlay root filesystems as root: the merged view of a busybox image (whiteout, opaque
//! dir), writes landing in the upper dir, unmounting without leftovers, and a 120-layer image
//! whose mount data only fits a page through the short relative links. Skipped (with a note)
//! when not root; `CI=true` makes them mandatory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_engine::digest::Digest;
use berth_engine::images::ImageRecord;
use berth_engine::install::{ImageBlobs, LayerBlob, install};
use berth_engine::layout::Stores;
use berth_engine::rootfs::{MAX_MOUNT_DATA, Rootfs, RootfsError, is_mounted, link_id};
use berth_testkit::image::TarBuilder;
use berth_testkit::{Compression, Format, Image, ImageBuilder};
use rustix::mount::UnmountFlags;

fn need_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(!berth_testkit::in_ci(), "CI=true but not root");
    eprintln!("skipped: needs root");
    false
}

/// Detaches the mount when dropped, so a failing assertion leaves no mount behind.
struct Guard(PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
    }
}

fn install_image(stores: &Stores, image: &Image, names: &[&str]) -> ImageRecord {
    let mut layers = Vec::new();
    for l in &image.layers {
        let digest = stores.content.put_bytes(&l.blob).unwrap();
        assert_eq!(digest.to_string(), l.digest);
        layers.push(LayerBlob {
            digest,
            media_type: l.media_type.clone(),
            size: l.blob.len() as u64,
        });
    }
    let blobs = ImageBlobs {
        manifest_digest: Some(stores.content.put_bytes(&image.manifest).unwrap()),
        config_digest: stores.content.put_bytes(&image.config).unwrap(),
        layers,
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    install(stores, &blobs, &names).unwrap()
}

/// How many mountinfo entries have `path` as mount point (paths here need no unescaping).
fn mount_count(path: &Path) -> usize {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .count()
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
fn busybox_rootfs_merges_layers_takes_writes_in_upper_and_unmounts() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stores = Stores::open(tmp.path().join("root")).unwrap();
    let image = install_image(
        &stores,
        &ImageBuilder::busybox(Format::Oci, "hello").build(),
        &["test/busybox:1"],
    );
    assert_eq!(image.layers.len(), 2);
    let base = stores.layers.diff_dir(&image.layers[0].chain_id);
    let app = stores.layers.diff_dir(&image.layers[1].chain_id);
    let cwd = std::env::current_dir().unwrap();

    let container = tmp.path().join("c1");
    let rootfs = Rootfs::mount(&stores, &image, &container).unwrap();
    let _guard = Guard(rootfs.merged().to_path_buf());
    let merged = rootfs.merged();
    assert_eq!(merged, container.join("merged"));
    assert_eq!(rootfs.upper(), container.join("upper"));
    assert!(is_mounted(merged).unwrap());
    assert_eq!(mount_count(merged), 1);
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    // Both layers' short links exist and point at the diff dirs.
    for l in &image.layers {
        let link = stores.root.layer_links_dir().join(link_id(&l.chain_id));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from(format!("../{}/diff", l.chain_id.hex()))
        );
    }

    // The merged view.
    assert!(merged.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(merged.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_to_string(merged.join("app/hello.txt")).unwrap(),
        "hello"
    );
    assert!(base.join("etc/remove-me").is_file());
    assert!(
        fs::symlink_metadata(merged.join("etc/remove-me")).is_err(),
        "the whiteout hides the base file"
    );
    assert_eq!(listing(&merged.join("etc/opaque")), ["new.txt"]);
    assert!(base.join("etc/opaque/old.txt").is_file());
    // The init layer adds what the runtime mounts over and the image lacks, shared by the
    // image's containers; the upper stays empty.
    let init = stores
        .root
        .layers_dir()
        .join("init")
        .join(link_id(&image.layers[1].chain_id));
    assert_eq!(listing(&init), ["dev", "etc", "proc", "sys"]);
    assert_eq!(
        listing(&init.join("etc")),
        ["hostname", "hosts", "resolv.conf"]
    );
    assert!(listing(&base.join("etc")).contains(&"passwd".to_string()));
    assert!(merged.join("proc").is_dir() && merged.join("etc/hosts").is_file());
    assert!(
        merged.join("etc/passwd").is_file(),
        "the image's /etc is merged"
    );
    assert!(listing(rootfs.upper()).is_empty());
    let top_etc = fs::metadata(app.join("etc")).unwrap();
    let init_etc = fs::metadata(init.join("etc")).unwrap();
    assert_eq!(
        init_etc.mode(),
        top_etc.mode(),
        "/etc keeps the image's mode"
    );

    // The merged root has the mode and owner of the top layer's root.
    let (upper_meta, top_meta) = (
        fs::metadata(rootfs.upper()).unwrap(),
        fs::metadata(&app).unwrap(),
    );
    assert_eq!(upper_meta.mode(), top_meta.mode());
    assert_eq!(
        (upper_meta.uid(), upper_meta.gid()),
        (top_meta.uid(), top_meta.gid())
    );

    // Writes land in upper; the layers stay as they were.
    let passwd_before = fs::read(base.join("etc/passwd")).unwrap();
    fs::write(merged.join("app/new.txt"), b"written").unwrap();
    fs::write(merged.join("etc/passwd"), b"changed\n").unwrap();
    fs::remove_file(merged.join("etc/group")).unwrap();
    assert_eq!(
        fs::read(rootfs.upper().join("app/new.txt")).unwrap(),
        b"written"
    );
    assert_eq!(
        fs::read(rootfs.upper().join("etc/passwd")).unwrap(),
        b"changed\n"
    );
    let wh = fs::symlink_metadata(rootfs.upper().join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(fs::read(base.join("etc/passwd")).unwrap(), passwd_before);
    assert!(base.join("etc/group").is_file());
    assert!(!app.join("app/new.txt").exists());

    // Mounting again is a no-op: still one mount.
    let again = Rootfs::mount(&stores, &image, &container).unwrap();
    assert_eq!(again, rootfs);
    assert_eq!(mount_count(merged), 1);

    rootfs.unmount().unwrap();
    assert!(!is_mounted(merged).unwrap());
    assert_eq!(mount_count(merged), 0);
    assert!(listing(merged).is_empty());
    rootfs.unmount().unwrap();

    // A remount (a restarted container) keeps the writes of the upper dir.
    let rootfs = Rootfs::mount(&stores, &image, &container).unwrap();
    assert_eq!(fs::read(merged.join("app/new.txt")).unwrap(), b"written");
    assert!(!merged.join("etc/group").exists());
    // A handle made later (another process) unmounts it too.
    Rootfs::at(&container).unmount().unwrap();
    assert_eq!(mount_count(merged), 0);
    drop(rootfs);

    // A missing layer is named, and nothing is mounted.
    let mut broken = image.clone();
    broken.layers[1].chain_id = Digest::of_bytes(b"not unpacked");
    let c2 = tmp.path().join("c2");
    let err = Rootfs::mount(&stores, &broken, &c2).unwrap_err();
    assert!(
        matches!(&err, RootfsError::LayerMissing { chain_id, .. } if *chain_id == broken.layers[1].chain_id),
        "{err}"
    );
    assert!(err.to_string().contains(&image.id.to_string()), "{err}");
    assert_eq!(mount_count(&c2.join("merged")), 0);
}

#[test]
fn an_image_of_120_layers_mounts_through_short_relative_links() {
    if !need_root() {
        return;
    }
    const LAYERS: usize = 120;
    let tmp = tempfile::tempdir().unwrap();
    let stores = Stores::open(tmp.path().join("root")).unwrap();
    let mut builder = ImageBuilder::new(Format::Oci);
    for i in 0..LAYERS {
        let tar = TarBuilder::new()
            .file(&format!("layer-{i:03}"), 0o644, format!("{i}").as_bytes())
            .file("top", 0o644, format!("{i}").as_bytes())
            .finish();
        builder = builder.tar_layer(&tar, Compression::None);
    }
    let image = install_image(&stores, &builder.build(), &["test/deep:1"]);
    assert_eq!(image.layers.len(), LAYERS);
    // Absolute paths, even through the short links, do not fit a page here: the mount below
    // needs the relative form.
    let absolute = (stores.root.layer_links_dir().as_os_str().len() + 1 + 26 + 1) * LAYERS;
    assert!(absolute > MAX_MOUNT_DATA, "{absolute}");

    let cwd = std::env::current_dir().unwrap();
    let rootfs = Rootfs::mount(&stores, &image, &tmp.path().join("deep")).unwrap();
    let _guard = Guard(rootfs.merged().to_path_buf());
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd,
        "the process cwd is unchanged"
    );
    let merged = rootfs.merged();
    // The layers' files, and the runtime's mount points from the init layer.
    let names: Vec<String> = listing(merged)
        .into_iter()
        .filter(|n| !["dev", "etc", "proc", "sys"].contains(&n.as_str()))
        .collect();
    assert_eq!(names.len(), LAYERS + 1);
    assert!(merged.join("etc/resolv.conf").is_file());
    for i in 0..LAYERS {
        assert_eq!(
            fs::read_to_string(merged.join(format!("layer-{i:03}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(
        fs::read_to_string(merged.join("top")).unwrap(),
        (LAYERS - 1).to_string(),
        "the top layer wins"
    );
    rootfs.unmount().unwrap();
    assert_eq!(mount_count(merged), 0);
}
