//! load / save / import end to end, on fresh state roots: archives written by `save` load back
//! as the same images; `docker save` archives (old layout, made here by hand) and OCI layout
//! archives load with their names; `import` makes a one-layer image with the `--change`
//! config; hostile archives are refused and leave nothing behind. Needs root (layers have
//! whiteouts, 0:0 char devices) and busybox-static; skipped politely otherwise, unless CI=true.

use std::io::{Read, Write};
use std::path::Path;

use berth_engine::digest::Digest;
use berth_engine::images::ImageRecord;
use berth_engine::install::{ImageBlobs, LayerBlob, install};
use berth_engine::layout::Stores;
use berth_engine::reference::Reference;
use berth_engine::transfer::{SaveFormat, TransferError, import, load, save};
use berth_testkit::image::{BUSYBOX, app_tar, busybox_base_tar, sha256};
use berth_testkit::{Compression, Format, Image, ImageBuilder, Layer, host_arch};

fn ready() -> bool {
    let root = rustix::process::geteuid().is_root();
    let busybox = Path::new(BUSYBOX).exists();
    if root && busybox {
        return true;
    }
    assert!(
        !berth_testkit::in_ci(),
        "CI=true but not root or {BUSYBOX} missing"
    );
    println!("skipped: needs root");
    false
}

fn fresh() -> (tempfile::TempDir, Stores) {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(dir.path().join("berth")).unwrap();
    (dir, stores)
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// Puts a testkit image's blobs into the content store and installs it under `names`.
fn add(stores: &Stores, image: &Image, names: &[&str]) -> ImageRecord {
    stores.content.put_bytes(&image.config).unwrap();
    stores.content.put_bytes(&image.manifest).unwrap();
    for l in &image.layers {
        stores.content.put_bytes(&l.blob).unwrap();
    }
    let blobs = ImageBlobs {
        manifest_digest: Some(digest(&image.manifest_digest)),
        config_digest: digest(&image.config_digest),
        layers: image
            .layers
            .iter()
            .map(|l| LayerBlob {
                digest: digest(&l.digest),
                media_type: l.media_type.clone(),
                size: l.blob.len() as u64,
            })
            .collect(),
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    install(stores, &blobs, &names).unwrap()
}

/// One entry of a hand-made archive.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A tar of `entries`, names written raw (so `../x` and `/x` go in as given).
fn archive(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, data, link): (&str, _, &[u8], Option<&str>) = match e {
            E::File(n, d) => (n, tar::EntryType::Regular, d, None),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, &[], Some(t)),
        };
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = link {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Paths of a tar's entries, in order.
fn entry_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn entry(tar_bytes: &[u8], name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("no entry {name}");
}

/// The stores hold nothing: no image, name, blob, layer or leftover ingest file.
fn assert_empty(stores: &Stores) {
    assert!(stores.images.list().unwrap().is_empty());
    assert!(stores.images.refs().unwrap().is_empty());
    assert!(stores.content.list().unwrap().is_empty());
    assert!(stores.layers.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(stores.root.ingest_dir()).unwrap().count(),
        0
    );
}

#[test]
fn save_then_load_gives_the_same_images_and_names() {
    if !ready() {
        return;
    }
    let (_d, src) = fresh();
    let one = ImageBuilder::busybox(Format::Oci, "one").build();
    let two = ImageBuilder::busybox(Format::Docker, "two").build();
    let r1 = add(
        &src,
        &one,
        &["docker.io/library/one:1", "example.com/one:latest"],
    );
    let r2 = add(&src, &two, &["docker.io/library/two:latest"]);

    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let args = [
            "one:1".to_string(),
            "example.com/one".to_string(),
            "two".to_string(),
        ];
        let mut out = Vec::new();
        save(&src, &args, &mut out, format).unwrap();
        let mut again = Vec::new();
        save(&src, &args, &mut again, format).unwrap();
        assert!(out == again, "{format:?}: saving twice gives other bytes");

        let names = entry_names(&out);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "entries are sorted");
        for f in ["oci-layout", "index.json", "blobs/sha256/"] {
            assert!(names.iter().any(|n| n == f), "{format:?}: {f} in {names:?}");
        }
        let has_docker = names.iter().any(|n| n == "manifest.json");
        assert_eq!(has_docker, format == SaveFormat::Docker);
        // Shared base layer written once: 2 configs + 2 manifests + 3 layer blobs.
        assert_eq!(
            names
                .iter()
                .filter(|n| n.len() > 20 && n.starts_with("blobs/sha256/"))
                .count(),
            7
        );
        if format == SaveFormat::Docker {
            let m: serde_json::Value =
                serde_json::from_slice(&entry(&out, "manifest.json")).unwrap();
            assert_eq!(
                m[0]["RepoTags"],
                serde_json::json!(["one:1", "example.com/one:latest"])
            );
            assert_eq!(m[0]["Config"], format!("blobs/sha256/{}", r1.id.hex()));
            for l in m[1]["Layers"].as_array().unwrap() {
                assert!(names.contains(&l.as_str().unwrap().to_string()), "{l}");
            }
            let repos: serde_json::Value =
                serde_json::from_slice(&entry(&out, "repositories")).unwrap();
            assert_eq!(repos["two"]["latest"], r2.id.hex());
        }

        // Into a fresh root, plain and gzip-compressed.
        for bytes in [out.clone(), gzip(&out)] {
            let (_d2, dst) = fresh();
            let loaded = load(&dst, bytes.as_slice()).unwrap();
            assert_eq!(loaded.len(), 2);
            assert_eq!(loaded[0].id, r1.id);
            assert_eq!(loaded[1].id, r2.id);
            assert_eq!(loaded[0].manifest_digest, r1.manifest_digest);
            assert_eq!(loaded[1].manifest_digest, r2.manifest_digest);
            let mut tags = loaded[0].repo_tags.clone();
            tags.sort();
            assert_eq!(tags, ["docker.io/library/one:1", "example.com/one:latest"]);
            assert_eq!(loaded[1].repo_tags, ["docker.io/library/two:latest"]);
            assert_eq!(loaded[0].layers, r1.layers);
            assert_eq!(loaded[1].config, r2.config);
            let hello = dst.layers.diff_dir(&loaded[1].layers[1].chain_id);
            assert_eq!(
                std::fs::read_to_string(hello.join("app/hello.txt")).unwrap(),
                "two"
            );
            // Saving the loaded images gives the same archive.
            let mut resaved = Vec::new();
            save(&dst, &args, &mut resaved, format).unwrap();
            assert!(resaved == out, "{format:?}: re-saved archive differs");
        }
    }

    // Saved by id: no names, the image is still complete.
    let mut by_id = Vec::new();
    save(
        &src,
        &[r2.id.short().to_string()],
        &mut by_id,
        SaveFormat::Docker,
    )
    .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&entry(&by_id, "manifest.json")).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::Value::Null);
    let (_d3, dst) = fresh();
    let loaded = load(&dst, by_id.as_slice()).unwrap();
    assert_eq!(loaded[0].id, r2.id);
    assert!(loaded[0].repo_tags.is_empty());

    let err = save(&src, &["nope:1".to_string()], Vec::new(), SaveFormat::Oci).unwrap_err();
    assert!(err.to_string().contains("no such image: nope:1"), "{err}");
}

#[test]
fn old_docker_save_archive_loads() {
    if !ready() {
        return;
    }
    // Uncompressed layers as `<v1 id>/layer.tar`; the third layer repeats the first as a
    // symlink `../<id>/layer.tar`, as old `docker save` wrote repeated layers.
    let base = busybox_base_tar();
    let app = app_tar("old docker");
    let image = ImageBuilder::new(Format::Docker)
        .tar_layer(&base, Compression::None)
        .tar_layer(&app, Compression::None)
        .tar_layer(&base, Compression::None)
        .cmd(&["/bin/sh"])
        .build();
    let config_name = format!("{}.json", image.config_digest.trim_start_matches("sha256:"));
    let ids = ["a".repeat(64), "b".repeat(64), "c".repeat(64)];
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["busybox:1", "busybox:1"],
        "Layers": ids.iter().map(|i| format!("{i}/layer.tar")).collect::<Vec<_>>(),
    }]))
    .unwrap();
    let repositories = format!(r#"{{"busybox":{{"1":"{}"}}}}"#, ids[2]);
    let link = format!("../{}/layer.tar", ids[0]);
    let paths: Vec<(String, String, String)> = ids
        .iter()
        .map(|i| {
            (
                format!("{i}/VERSION"),
                format!("{i}/json"),
                format!("{i}/layer.tar"),
            )
        })
        .collect();
    let tar = archive(&[
        E::File(&paths[0].0, b"1.0"),
        E::File(&paths[0].1, b"{}"),
        E::File(&paths[0].2, &base),
        E::File(&paths[1].0, b"1.0"),
        E::File(&paths[1].1, b"{}"),
        E::File(&paths[1].2, &app),
        E::File(&paths[2].0, b"1.0"),
        E::File(&paths[2].1, b"{}"),
        E::Symlink(&paths[2].2, &link),
        E::File(&config_name, &image.config),
        E::File("repositories", repositories.as_bytes()),
        E::File("manifest.json", &manifest),
    ]);
    let (_d, stores) = fresh();
    let loaded = load(&stores, tar.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    let rec = &loaded[0];
    assert_eq!(rec.id.to_string(), image.config_digest);
    assert_eq!(rec.repo_tags, ["docker.io/library/busybox:1"]);
    assert_eq!(
        stores
            .images
            .resolve("docker.io/library/busybox:1")
            .unwrap()
            .id,
        rec.id
    );
    assert_eq!(rec.config.cmd, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(rec.layers.len(), 3);
    for (l, want) in rec.layers.iter().zip(&image.layers) {
        assert_eq!(l.diff_id.to_string(), want.diff_id);
        assert_eq!(
            l.blob.to_string(),
            want.diff_id,
            "uncompressed: blob is the tar"
        );
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar");
    }
    assert!(
        stores
            .layers
            .diff_dir(&rec.layers[2].chain_id)
            .join("bin/busybox")
            .is_file()
    );
    // An OCI manifest was made for it, so it saves like a pulled image.
    let m = stores
        .content
        .read(rec.manifest_digest.as_ref().unwrap())
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(m["config"]["digest"], image.config_digest);
    assert_eq!(m["layers"].as_array().unwrap().len(), 3);
    // Only what the image references is kept (not VERSION, json, repositories, …).
    let mut blobs: Vec<Digest> = vec![rec.id.clone(), rec.manifest_digest.clone().unwrap()];
    blobs.extend(rec.layers[..2].iter().map(|l| l.blob.clone()));
    blobs.sort();
    assert_eq!(stores.content.list().unwrap(), blobs);
}

#[test]
fn oci_archive_loads_with_its_ref_name_through_a_nested_index() {
    if !ready() {
        return;
    }
    let image = ImageBuilder::busybox(Format::Oci, "oci").build();
    let foreign_arch = if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    // The foreign image is listed, but its blobs are not in the archive.
    let foreign = ImageBuilder::busybox(Format::Oci, "foreign")
        .platform(foreign_arch, None)
        .build();
    let nested = berth_testkit::Index::new(Format::Oci, vec![foreign, image.clone()]);
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": nested.media_type,
            "digest": nested.digest,
            "size": nested.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "example.com/team/app:v2"},
        }],
    }))
    .unwrap();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let (pn, pm, pc) = (
        blob(&nested.digest),
        blob(&image.manifest_digest),
        blob(&image.config_digest),
    );
    let layer_paths: Vec<String> = image.layers.iter().map(|l| blob(&l.digest)).collect();
    let mut entries = vec![
        E::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        E::File("index.json", &top),
        E::File(&pn, &nested.bytes),
        E::File(&pm, &image.manifest),
        E::File(&pc, &image.config),
    ];
    for (p, l) in layer_paths.iter().zip(&image.layers) {
        entries.push(E::File(p, &l.blob));
    }
    let tar = gzip(&archive(&entries));
    let (_d, stores) = fresh();
    let loaded = load(&stores, tar.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    let rec = &loaded[0];
    assert_eq!(rec.id.to_string(), image.config_digest);
    assert_eq!(
        rec.manifest_digest.as_ref().map(Digest::to_string),
        Some(image.manifest_digest.clone())
    );
    assert_eq!(rec.repo_tags, ["example.com/team/app:v2"]);
    assert_eq!(rec.layers[1].media_type, image.layers[1].media_type);
    let upper = stores.layers.diff_dir(&rec.layers[1].chain_id);
    assert_eq!(
        std::fs::read_to_string(upper.join("app/hello.txt")).unwrap(),
        "oci"
    );
}

#[test]
fn import_makes_a_one_layer_image_with_the_changes() {
    if !ready() {
        return;
    }
    let (_d, stores) = fresh();
    let rootfs = busybox_base_tar();
    let changes = ["CMD [\"sh\"]".to_string(), "ENV A=1".to_string()];
    let name = Reference::parse("imported:v1").unwrap();
    let before = std::time::SystemTime::now();
    let rec = import(&stores, gzip(&rootfs).as_slice(), &changes, Some(&name)).unwrap();
    assert_eq!(rec.repo_tags, ["docker.io/library/imported:v1"]);
    assert_eq!(rec.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(rec.config.env, ["A=1"]);
    assert_eq!(rec.config.entrypoint, None);
    assert_eq!(rec.architecture, host_arch());
    assert_eq!(rec.os, "linux");
    assert_eq!(rec.layers.len(), 1);
    assert_eq!(rec.layers[0].diff_id.to_string(), sha256(&rootfs));
    assert_eq!(
        rec.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        stores.content.read(&rec.layers[0].blob).unwrap(),
        gzip(&rootfs),
        "the blob is stored as given"
    );
    let created = rec.created.clone().unwrap();
    let year = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 31_556_952
        + 1970;
    assert!(created.starts_with(&year.to_string()), "{created}");
    let config: serde_json::Value =
        serde_json::from_slice(&stores.content.read(&rec.id).unwrap()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&rootfs));
    assert!(
        stores
            .layers
            .diff_dir(&rec.layers[0].chain_id)
            .join("bin/busybox")
            .is_file()
    );

    // It saves and loads back as the same image.
    let mut out = Vec::new();
    save(
        &stores,
        &["imported:v1".to_string()],
        &mut out,
        SaveFormat::Docker,
    )
    .unwrap();
    let (_d2, dst) = fresh();
    let loaded = load(&dst, out.as_slice()).unwrap();
    assert_eq!(loaded[0].id, rec.id);
    assert_eq!(loaded[0].repo_tags, rec.repo_tags);

    // A plain tar is stored as is; the blob is the diff_id.
    let plain = import(&stores, rootfs.as_slice(), &[], None).unwrap();
    assert_eq!(plain.layers[0].blob, plain.layers[0].diff_id);
    assert!(plain.repo_tags.is_empty());
    assert_eq!(plain.config.cmd, None);

    // A bad change or a tarball that is not a tar leaves nothing.
    let (_d3, empty) = fresh();
    let err = import(&empty, rootfs.as_slice(), &["BOGUS x".to_string()], None).unwrap_err();
    assert!(matches!(err, TransferError::Change { .. }), "{err}");
    let err = import(&empty, &b"this is not a tar archive at all"[..], &[], None).unwrap_err();
    assert!(err.to_string().contains("layer"), "{err}");
    assert_empty(&empty);
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    if !ready() {
        return;
    }
    let base = busybox_base_tar();
    let image = ImageBuilder::new(Format::Docker)
        .tar_layer(&base, Compression::None)
        .build();
    let cfg = format!("{}.json", image.config_digest.trim_start_matches("sha256:"));
    let manifest = |layers: &[&str]| {
        serde_json::to_vec(&serde_json::json!([{
            "Config": cfg, "RepoTags": ["evil:1"], "Layers": layers,
        }]))
        .unwrap()
    };
    let good_manifest = manifest(&["l/layer.tar"]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "entry ../x",
            archive(&[
                E::File("../x", b"escape"),
                E::File(&cfg, &image.config),
                E::File("l/layer.tar", &base),
                E::File("manifest.json", &good_manifest),
            ]),
            "refused: path with \"..\"",
        ),
        (
            "absolute entry",
            archive(&[E::File("/tmp/berth-evil", b"x")]),
            "refused: absolute path",
        ),
        (
            "symlink out of the archive",
            archive(&[
                E::File(&cfg, &image.config),
                E::Symlink("l/layer.tar", "../../etc/passwd"),
                E::File("manifest.json", &good_manifest),
            ]),
            "link target outside the archive",
        ),
        (
            "missing layer",
            archive(&[
                E::File(&cfg, &image.config),
                E::File("manifest.json", &manifest(&["gone/layer.tar"])),
            ]),
            "\"gone/layer.tar\"",
        ),
        (
            "plain layer that is not the diff_id",
            archive(&[
                E::File(&cfg, &image.config),
                E::File("l/layer.tar", &app_tar("swapped")),
                E::File("manifest.json", &good_manifest),
            ]),
            "does not match its diff id",
        ),
        (
            "gzip layer that is not the diff_id",
            archive(&[
                E::File(&cfg, &image.config),
                E::File(
                    "l/layer.tar",
                    &Layer::new(&app_tar("swapped"), Compression::Gzip, Format::Docker).blob,
                ),
                E::File("manifest.json", &good_manifest),
            ]),
            "layer diff_id mismatch",
        ),
        (
            "blob not matching its name",
            archive(&[
                E::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                E::File("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
                E::File(
                    &format!("blobs/sha256/{}", "0".repeat(64)),
                    b"not what the name says",
                ),
            ]),
            "does not match its digest",
        ),
        (
            "not an image archive",
            archive(&[E::File("hello.txt", b"hi")]),
            "not an image archive",
        ),
    ];
    for (what, tar, want) in cases {
        let (_d, stores) = fresh();
        let err = load(&stores, tar.as_slice()).unwrap_err();
        assert!(err.to_string().contains(want), "{what}: {err}");
        assert_empty(&stores);
        // Nothing was written under the entry's own name, relative to the root or the cwd.
        assert!(!Path::new("/tmp/berth-evil").exists(), "{what}");
        assert!(!Path::new("../x").exists(), "{what}");
        assert!(
            !stores.root.path().parent().unwrap().join("x").exists(),
            "{what}"
        );
    }
    // The good archive itself loads (the cases above fail for their own reason).
    let (_d, stores) = fresh();
    let ok = archive(&[
        E::File(&cfg, &image.config),
        E::File("l/layer.tar", &base),
        E::File("manifest.json", &good_manifest),
    ]);
    let loaded = load(&stores, ok.as_slice()).unwrap();
    assert_eq!(loaded[0].repo_tags, ["docker.io/library/evil:1"]);
}
