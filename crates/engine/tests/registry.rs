//! The registry client against a real `docker-registry` and a hostile server, all on
//! 127.0.0.1. Skipped (with a message) when docker-registry is not installed, unless CI=true.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_engine::digest::Digest;
use berth_engine::registry::{
    DEFAULT_CONCURRENT_DOWNLOADS, DOCKER_MANIFEST, OCI_MANIFEST, Platform, Registry, RegistryError,
    RegistryOptions,
};
use berth_testkit::hostile::{self, HostileServer};
use berth_testkit::{
    Format, ImageBuilder, Index, TokenAuthFront, push, push_index, require_registry,
};
use oci_client::Reference;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

fn client() -> Registry {
    Registry::new(RegistryOptions::default())
}

fn reference(host: &str, name: &str) -> Reference {
    format!("{host}/{name}").parse().expect("test reference")
}

fn platform(arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(Into::into),
    }
}

#[tokio::test]
async fn push_then_resolve_by_tag_and_by_digest() {
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let one = ImageBuilder::busybox(Format::Oci, "one").build();
    let two = ImageBuilder::busybox(Format::Docker, "two").build();
    // Same base tar, compressed the same way: the two images share their base layer blob
    // (the Docker one under a Docker media type).
    assert_eq!(one.layers[0].digest, two.layers[0].digest);
    assert_ne!(one.layers[1].digest, two.layers[1].digest);
    let d1 = push(&reg, "app/one:v1", &one).await;
    let d2 = push(&reg, "app/two:v1", &two).await;

    let r = client();
    for (name, image, digest, media_type) in [
        ("app/one:v1", &one, &d1, OCI_MANIFEST),
        ("app/two:v1", &two, &d2, DOCKER_MANIFEST),
    ] {
        let by_tag = r
            .resolve(
                &reference(&reg.host(), name),
                &Platform::host(),
                &RegistryAuth::Anonymous,
            )
            .await
            .expect("resolve by tag");
        assert_eq!(by_tag.manifest_digest.to_string(), *digest);
        assert_eq!(by_tag.index_digest, None);
        assert_eq!(by_tag.media_type, media_type);
        assert_eq!(by_tag.manifest_bytes, image.manifest);
        assert_eq!(by_tag.config_digest.to_string(), image.config_digest);
        assert_eq!(by_tag.config_bytes, image.config);
        let layer_digests: Vec<_> = by_tag.layers.iter().map(|l| l.digest.clone()).collect();
        let pushed: Vec<_> = image.layers.iter().map(|l| l.digest.clone()).collect();
        assert_eq!(layer_digests, pushed);
        assert!(by_tag.layers[1].media_type.ends_with("+zstd"));

        let repo = name.split(':').next().expect("repo");
        let by_digest = r
            .resolve(
                &reference(&reg.host(), &format!("{repo}@{digest}")),
                &Platform::host(),
                &RegistryAuth::Anonymous,
            )
            .await
            .expect("resolve by digest");
        assert_eq!(by_digest.manifest_digest, by_tag.manifest_digest);
        assert_eq!(by_digest.config_bytes, by_tag.config_bytes);
    }

    let missing = r
        .resolve(
            &reference(&reg.host(), "app/one:nope"),
            &Platform::host(),
            &RegistryAuth::Anonymous,
        )
        .await
        .expect_err("unknown tag");
    assert!(
        matches!(missing, RegistryError::NotFound { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("app/one:nope"), "{missing}");
}

#[tokio::test]
async fn index_resolves_to_the_requested_platform() {
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let r = client();
    for format in [Format::Oci, Format::Docker] {
        let native = ImageBuilder::busybox(format, "native").build();
        let foreign = ImageBuilder::busybox(format, "foreign")
            .platform("arm64", Some("v8"))
            .build();
        let index = Index::new(format, vec![foreign.clone(), native.clone()]);
        let name = format!("multi/{format:?}:latest").to_lowercase();
        let index_digest = push_index(&reg, &name, &index).await;
        let image = reference(&reg.host(), &name);

        let host = r
            .resolve(&image, &Platform::host(), &RegistryAuth::Anonymous)
            .await
            .expect("host platform");
        assert_eq!(host.manifest_digest.to_string(), native.manifest_digest);
        assert_eq!(
            host.index_digest.map(|d| d.to_string()),
            Some(index_digest.clone())
        );
        assert_eq!(host.config_bytes, native.config);

        let arm = r
            .resolve(
                &image,
                &platform("arm64", Some("v8")),
                &RegistryAuth::Anonymous,
            )
            .await
            .expect("arm64/v8");
        assert_eq!(arm.manifest_digest.to_string(), foreign.manifest_digest);
        let config: serde_json::Value =
            serde_json::from_slice(&arm.config_bytes).expect("config json");
        assert_eq!(config["architecture"], "arm64");

        let err = r
            .resolve(
                &image,
                &platform("arm64", Some("v7")),
                &RegistryAuth::Anonymous,
            )
            .await
            .expect_err("no arm64/v7");
        assert!(
            matches!(err, RegistryError::NoMatchingPlatform { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("linux/arm64/v7") && msg.contains("linux/arm64/v8"),
            "{msg}"
        );

        // By index digest too.
        let pinned = reference(
            &reg.host(),
            &format!("multi/{format:?}@{index_digest}").to_lowercase(),
        );
        let again = r
            .resolve(&pinned, &Platform::host(), &RegistryAuth::Anonymous)
            .await
            .expect("by index digest");
        assert_eq!(again.manifest_digest, host.manifest_digest);
    }
}

#[tokio::test]
async fn fetch_blob_and_fetch_all_verify_what_they_write() {
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let one = ImageBuilder::busybox(Format::Oci, "one").build();
    push(&reg, "fetch/one:v1", &one).await;
    let r = client();
    let image = reference(&reg.host(), "fetch/one:v1");
    let resolved = r
        .resolve(&image, &Platform::host(), &RegistryAuth::Anonymous)
        .await
        .expect("resolve");
    let dir = tempfile::tempdir().expect("temp dir");

    // One blob, with progress.
    let base = &resolved.layers[0];
    let dest = dir.path().join("base");
    let seen = Mutex::new(Vec::new());
    let (digest, size) = r
        .fetch_blob(&image, base, &dest, &|n| seen.lock().expect("lock").push(n))
        .await
        .expect("fetch base layer");
    assert_eq!(digest.to_string(), one.layers[0].digest);
    assert_eq!(size, one.layers[0].blob.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("read blob"), one.layers[0].blob);
    let seen = seen.into_inner().expect("lock");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only grows");
    assert_eq!(seen.last(), Some(&size));
    // The destination is truncated, not appended to.
    let (again, _) = r
        .fetch_blob(&image, base, &dest, &|_| {})
        .await
        .expect("fetch again");
    assert_eq!(again, digest);
    assert_eq!(std::fs::metadata(&dest).expect("stat").len(), size);

    // Every blob of the image, at most 2 at once.
    let mut wanted: Vec<(OciDescriptor, PathBuf)> = Vec::new();
    for (i, d) in resolved
        .layers
        .iter()
        .chain(std::iter::once(&resolved.manifest.config))
        .enumerate()
    {
        wanted.push((d.clone(), dir.path().join(format!("blob-{i}"))));
    }
    let active = AtomicUsize::new(0);
    let max_active = AtomicUsize::new(0);
    let started = Mutex::new(std::collections::HashSet::new());
    let limit = 2;
    let sizes: Vec<u64> = wanted.iter().map(|(d, _)| d.size as u64).collect();
    let results = r
        .fetch_all(&image, &wanted, limit, &|i, n| {
            if started.lock().expect("lock").insert(i) {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                max_active.fetch_max(now, Ordering::SeqCst);
            }
            if n == sizes[i] {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .await
        .expect("fetch all");
    assert!(max_active.load(Ordering::SeqCst) <= limit);
    assert_eq!(results.len(), wanted.len());
    for ((desc, path), (digest, size)) in wanted.iter().zip(&results) {
        assert_eq!(digest.to_string(), desc.digest);
        assert_eq!(*size, desc.size as u64);
        let bytes = std::fs::read(path).expect("read fetched blob");
        assert_eq!(Digest::of_bytes(&bytes), *digest);
    }
    assert_eq!(DEFAULT_CONCURRENT_DOWNLOADS, 3);

    // A blob the registry does not have fails the whole batch and names it.
    let mut bogus = wanted[0].0.clone();
    bogus.digest = Digest::of_bytes(b"not pushed").to_string();
    let err = r
        .fetch_all(
            &image,
            &[(bogus, dir.path().join("bogus")), wanted[1].clone()],
            DEFAULT_CONCURRENT_DOWNLOADS,
            &|_, _| {},
        )
        .await
        .expect_err("missing blob");
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(
        !dir.path().join("bogus").exists(),
        "failed download removed"
    );
}

#[tokio::test]
async fn hostile_registry_content_is_rejected() {
    let server = HostileServer::start();
    let r = client();
    let host = server.host();
    let anon = RegistryAuth::Anonymous;
    let image = reference(&host, "bad:latest");
    let resolved = r
        .resolve(&image, &Platform::host(), &anon)
        .await
        .expect("the manifest and config themselves are fine");
    let dir = tempfile::tempdir().expect("temp dir");
    let fetch = |i: usize| {
        let desc = resolved.layers[i].clone();
        let dest = dir.path().join(format!("layer-{i}"));
        let r = &r;
        let image = &image;
        async move {
            let res = r.fetch_blob(image, &desc, &dest, &|_| {}).await;
            (res, dest, desc)
        }
    };

    let (res, dest, desc) = fetch(hostile::GOOD).await;
    assert_eq!(res.expect("good blob").0.to_string(), desc.digest);
    assert!(dest.exists());

    let (res, dest, desc) = fetch(hostile::WRONG).await;
    let err = res.expect_err("wrong bytes");
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&desc.digest), "{err}");
    assert!(!dest.exists(), "partial blob removed");

    let (res, dest, _) = fetch(hostile::TRUNCATED).await;
    let err = res.expect_err("truncated");
    assert!(
        matches!(
            err,
            RegistryError::Truncated {
                got: 1024,
                expected: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dest.exists());

    let (res, _, desc) = fetch(hostile::OVERSIZED).await;
    let err = res.expect_err("oversized");
    assert!(
        matches!(&err, RegistryError::TooLarge { limit, .. } if *limit == desc.size as u64),
        "{err}"
    );

    for name in ["huge:latest", "huge-unsized:latest"] {
        let start = Instant::now();
        let err = r
            .resolve(&reference(&host, name), &Platform::host(), &anon)
            .await
            .expect_err("huge manifest");
        assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("manifest"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    // The client hung up long before the 100 MB were written (socket buffers absorb some).
    assert!(
        server.huge_bytes_sent() < 2 * 32 * 1024 * 1024,
        "server wrote {} bytes",
        server.huge_bytes_sent()
    );

    let err = r
        .resolve(&reference(&host, "liar:latest"), &Platform::host(), &anon)
        .await
        .expect_err("lying digest header");
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");

    let pinned = format!("pinned@{}", hostile::pinned_digest());
    let err = r
        .resolve(&reference(&host, &pinned), &Platform::host(), &anon)
        .await
        .expect_err("manifest under a digest it does not have");
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&hostile::pinned_digest()), "{err}");

    let err = r
        .resolve(
            &reference(&host, "private/app:latest"),
            &Platform::host(),
            &anon,
        )
        .await
        .expect_err("401");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("berth login {host}")),
        "{err}"
    );
}

#[tokio::test]
async fn token_auth_is_negotiated_and_refusals_say_how_to_log_in() {
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let image = ImageBuilder::busybox(Format::Oci, "private").build();
    let digest = push(&reg, "team/app:v1", &image).await;
    let front = TokenAuthFront::start(&reg, "alice", "s3cret");
    let r = client();
    let through = reference(&front.host(), "team/app:v1");

    let good = RegistryAuth::Basic("alice".into(), "s3cret".into());
    let resolved = r
        .resolve(&through, &Platform::host(), &good)
        .await
        .expect("resolve with credentials");
    assert_eq!(resolved.manifest_digest.to_string(), digest);
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("layer");
    let (got, _) = r
        .fetch_blob(&through, &resolved.layers[1], &dest, &|_| {})
        .await
        .expect("fetch with a token");
    assert_eq!(got.to_string(), image.layers[1].digest);

    for auth in [
        RegistryAuth::Basic("alice".into(), "wrong".into()),
        RegistryAuth::Anonymous,
    ] {
        // A fresh client: no token cached from the good login above.
        let err = client()
            .resolve(&through, &Platform::host(), &auth)
            .await
            .expect_err("refused");
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("berth login {}", front.host())),
            "{msg}"
        );
        assert!(msg.contains("team/app:v1"), "{msg}");
    }
}
