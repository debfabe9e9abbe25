//! Garbage collection as root (busybox layers hold 0:0 whiteout devices): two images sharing
//! a base layer, one removed; exactly its own blobs and layer go, the shared base stays; stale
//! ingest files and layer temp dirs are pruned, fresh ones kept. Skipped (with a note) when
//! not root; `CI=true` makes it mandatory.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::time::{Duration, SystemTime};

use berth_engine::digest::Digest;
use berth_engine::images::ImageRecord;
use berth_engine::install::{ImageBlobs, LayerBlob, install};
use berth_engine::layout::Stores;
use berth_engine::prune::{collect_garbage, prune_images, remove_image};
use berth_engine::rootfs::{ensure_layer_link, link_id};
use berth_testkit::{Format, Image, ImageBuilder};

fn need_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(!berth_testkit::in_ci(), "CI=true but not root");
    eprintln!("skipped: needs root");
    false
}

fn install_image(stores: &Stores, image: &Image, names: &[&str]) -> ImageRecord {
    let mut layers = Vec::new();
    for l in &image.layers {
        layers.push(LayerBlob {
            digest: stores.content.put_bytes(&l.blob).unwrap(),
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

/// The image's own blobs: manifest, config, layer blobs.
fn blobs_of(image: &ImageRecord) -> BTreeSet<Digest> {
    let mut b: BTreeSet<Digest> = image.layers.iter().map(|l| l.blob.clone()).collect();
    b.insert(image.id.clone());
    b.extend(image.manifest_digest.clone());
    b
}

fn set(v: &[Digest]) -> BTreeSet<Digest> {
    v.iter().cloned().collect()
}

#[test]
fn collect_garbage_frees_exactly_what_no_image_reaches() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stores = Stores::open(tmp.path().join("root")).unwrap();
    let one = install_image(
        &stores,
        &ImageBuilder::busybox(Format::Oci, "one").build(),
        &["test/one:1"],
    );
    let two = install_image(
        &stores,
        &ImageBuilder::busybox(Format::Oci, "two").build(),
        &["test/two:1"],
    );
    let (base, own_one, own_two) = (
        one.layers[0].chain_id.clone(),
        one.layers[1].chain_id.clone(),
        two.layers[1].chain_id.clone(),
    );
    assert_eq!(two.layers[0].chain_id, base, "the base layer is shared");
    assert_eq!(stores.content.list().unwrap().len(), 7);
    assert_eq!(stores.layers.list().unwrap().len(), 3);
    for c in [&base, &own_one, &own_two] {
        ensure_layer_link(&stores.root, c).unwrap();
    }

    // Litter: an unreferenced blob, a stale and a fresh ingest file, a leftover layer tmp dir,
    // a dangling link.
    let stray = stores.content.put_bytes(b"referenced by nothing").unwrap();
    let stale = stores.root.ingest_dir().join("stale");
    fs::write(&stale, b"abandoned").unwrap();
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();
    let fresh = stores.root.ingest_dir().join("fresh");
    fs::write(&fresh, b"downloading").unwrap();
    let leftover = stores.root.layers_dir().join(".tmp-leftover");
    fs::create_dir_all(leftover.join("diff/etc")).unwrap();
    let dangling = stores
        .root
        .layer_links_dir()
        .join("DANGLINGLINKDANGLINGLINKXX");
    std::os::unix::fs::symlink("../gone/diff", &dangling).unwrap();

    let r = collect_garbage(&stores).unwrap();
    assert_eq!(r.blobs_removed, [stray]);
    assert!(r.layers_removed.is_empty());
    assert_eq!(r.bytes_reclaimed, b"referenced by nothing".len() as u64);
    assert_eq!((r.ingest_removed, r.tmp_removed), (1, 1));
    assert!(!stale.exists() && fresh.exists() && !leftover.exists());
    assert!(fs::symlink_metadata(&dangling).is_err());
    assert!(r.images_removed.is_empty());

    // Remove image two: only its own blobs and top layer go.
    let rm = remove_image(&stores, "test/two:1", false, &HashSet::new()).unwrap();
    assert_eq!(rm.deleted, Some(two.id.clone()));
    let own_two_size = stores.layers.get(&own_two).unwrap().unwrap().size;
    let mut expected_blobs: BTreeSet<Digest> = blobs_of(&two)
        .difference(&blobs_of(&one))
        .cloned()
        .collect();
    assert_eq!(expected_blobs.len(), 3, "manifest, config, top layer blob");
    let expected_bytes: u64 = expected_blobs
        .iter()
        .map(|d| stores.content.size(d).unwrap())
        .sum::<u64>()
        + own_two_size;

    let r = collect_garbage(&stores).unwrap();
    assert_eq!(set(&r.blobs_removed), expected_blobs);
    assert_eq!(r.layers_removed, std::slice::from_ref(&own_two));
    assert_eq!(r.bytes_reclaimed, expected_bytes);
    assert_eq!(set(&stores.content.list().unwrap()), blobs_of(&one));
    let kept: BTreeSet<Digest> = stores
        .layers
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.chain_id)
        .collect();
    assert_eq!(kept, set(&[base.clone(), own_one.clone()]));
    assert!(stores.layers.diff_dir(&base).join("bin/busybox").is_file());
    let links = stores.root.layer_links_dir();
    assert!(fs::symlink_metadata(links.join(link_id(&own_two))).is_err());
    assert!(links.join(link_id(&base)).join("bin/busybox").is_file());
    assert!(
        links
            .join(link_id(&own_one))
            .join("app/hello.txt")
            .is_file()
    );

    // Nothing more to collect.
    let r = collect_garbage(&stores).unwrap();
    assert!(r.blobs_removed.is_empty() && r.layers_removed.is_empty());

    // prune -a with image one in use keeps it; without, everything goes.
    let in_use: HashSet<Digest> = [one.id.clone()].into();
    let r = prune_images(&stores, true, &in_use).unwrap();
    assert!(r.images_removed.is_empty() && r.blobs_removed.is_empty());
    let r = prune_images(&stores, false, &HashSet::new()).unwrap();
    assert!(r.images_removed.is_empty(), "a named image is not dangling");
    let r = prune_images(&stores, true, &HashSet::new()).unwrap();
    assert_eq!(r.images_removed, std::slice::from_ref(&one.id));
    assert_eq!(r.untagged, ["test/one:1"]);
    expected_blobs = blobs_of(&one);
    assert_eq!(set(&r.blobs_removed), expected_blobs);
    assert_eq!(set(&r.layers_removed), set(&[base, own_one]));
    assert!(stores.content.list().unwrap().is_empty());
    assert!(stores.layers.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(&links).unwrap().count(), 0);
}
