//! Pull end to end: a real `docker-registry` on 127.0.0.1, images made from busybox-static,
//! pulled into a fresh state root. Needs root (whiteouts are 0:0 devices, opaque dirs carry a
//! trusted.* xattr); skipped politely otherwise, unless CI=true.

use std::os::unix::fs::FileTypeExt;

use berth_engine::layout::Stores;
use berth_engine::pull::{PullOptions, pull};
use berth_engine::reference::Reference;
use berth_engine::registry::{Registry, RegistryOptions};
use berth_testkit::{Format, ImageBuilder, push, require_registry};

fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(!berth_testkit::in_ci(), "CI=true but not root");
    println!("skipped: needs root");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_images_share_layers_and_unpack_to_overlay_form() {
    if !require_registry() || !require_root() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let one = ImageBuilder::busybox(Format::Oci, "one").build();
    let two = ImageBuilder::busybox(Format::Docker, "two").build();
    push(&reg, "app/one:v1", &one).await;
    let two_digest = push(&reg, "app/two:v1", &two).await;

    let root = tempfile::tempdir().unwrap();
    let stores = Stores::open(root.path().join("berth")).unwrap();
    let registry = Registry::new(RegistryOptions::default());
    let r1 = Reference::parse(&format!("{}/app/one:v1", reg.host())).unwrap();
    let p1 = pull(&stores, &registry, &r1, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(p1.downloaded, 2);
    assert_eq!(p1.image.layers.len(), 2);
    assert_eq!(p1.image.repo_tags, vec![r1.to_string()]);
    assert_eq!(
        p1.image.config.cmd,
        Some(vec!["/bin/cat".to_string(), "/app/hello.txt".to_string()])
    );

    // The upper layer: whiteout as a 0:0 char device, opaque dir with its xattr, content.
    let upper = stores.layers.diff_dir(&p1.image.layers[1].chain_id);
    let wh = std::fs::symlink_metadata(upper.join("etc/remove-me")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(
        std::fs::read_to_string(upper.join("app/hello.txt"))
            .unwrap()
            .trim(),
        "one"
    );
    let base = stores.layers.diff_dir(&p1.image.layers[0].chain_id);
    assert!(base.join("bin/busybox").is_file());

    // The second image shares the base layer blob: only its own layer is downloaded, and the
    // base is unpacked once (same chainID, one directory).
    let r2 = Reference::parse(&format!("{}/app/two:v1", reg.host())).unwrap();
    let p2 = pull(&stores, &registry, &r2, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(p2.downloaded, 1);
    assert_eq!(p2.image.layers[0].chain_id, p1.image.layers[0].chain_id);
    assert_eq!(p2.repo_digest.to_string(), two_digest);
    assert_eq!(stores.layers.list().unwrap().len(), 3);

    // Pulling again downloads nothing and gives the same image.
    let again = pull(&stores, &registry, &r1, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.image.id, p1.image.id);

    // By digest: the same image, recorded under name@digest.
    let by_digest = Reference::parse(&format!("{}/app/two@{}", reg.host(), two_digest)).unwrap();
    let p3 = pull(&stores, &registry, &by_digest, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(p3.image.id, p2.image.id);
    assert!(
        p3.image
            .repo_digests
            .iter()
            .any(|d| d.ends_with(&two_digest)),
        "{:?}",
        p3.image.repo_digests
    );

    // Everything in the store is reachable from the two images.
    let roots = stores.images.gc_roots().unwrap();
    for blob in stores.content.list().unwrap() {
        assert!(roots.blobs.contains(&blob), "unreachable blob {blob}");
    }
    assert!(
        std::fs::read_dir(stores.root.ingest_dir())
            .unwrap()
            .next()
            .is_none(),
        "ingest files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_download_each_blob_once() {
    if !require_registry() || !require_root() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let img = ImageBuilder::busybox(Format::Oci, "concurrent").build();
    push(&reg, "app/c:v1", &img).await;
    let root = tempfile::tempdir().unwrap();
    let stores = std::sync::Arc::new(Stores::open(root.path().join("berth")).unwrap());
    let registry = std::sync::Arc::new(Registry::new(RegistryOptions::default()));
    let r = Reference::parse(&format!("{}/app/c:v1", reg.host())).unwrap();
    // Two threads with their own runtimes, as two berth processes would be: the second waits
    // on the blob lock.
    let spawn = || {
        let (stores, registry, r) = (stores.clone(), registry.clone(), r.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(pull(&stores, &registry, &r, &PullOptions::default()))
        })
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
    assert_eq!(a.image.id, b.image.id);
    assert_eq!(
        a.downloaded + b.downloaded,
        2,
        "each layer blob is downloaded once"
    );
    assert_eq!(stores.layers.list().unwrap().len(), 2);

    // Two pulls in one task sharing blobs (what `berth pull` of several services does) finish
    // too: lock waits do not block the thread.
    let other = ImageBuilder::busybox(Format::Docker, "other").build();
    push(&reg, "app/d:v1", &other).await;
    let root2 = tempfile::tempdir().unwrap();
    let fresh = Stores::open(root2.path().join("berth")).unwrap();
    let rd = Reference::parse(&format!("{}/app/d:v1", reg.host())).unwrap();
    let opts = PullOptions::default();
    let (x, y) = tokio::join!(
        pull(&fresh, &registry, &r, &opts),
        pull(&fresh, &registry, &rd, &opts)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.image.layers[0].chain_id, y.image.layers[0].chain_id);
    assert_eq!(
        x.downloaded + y.downloaded,
        3,
        "the shared base blob is downloaded once"
    );
}
