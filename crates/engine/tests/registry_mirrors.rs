//! Docker Hub mirrors and login verification against real `docker-registry`s and a token-auth
//! front, all on 127.0.0.1: Docker Hub itself is never contacted (a pull that reached it would
//! fail here, there is no network). Skipped (with a message) when docker-registry is not
//! installed, unless CI=true; the full pull also needs root.

use berth_engine::layout::Stores;
use berth_engine::pull::{PullOptions, pull};
use berth_engine::registry::{Platform, Registry, RegistryError, RegistryOptions};
use berth_testkit::registry::free_port;
use berth_testkit::{Format, Image, ImageBuilder, TokenAuthFront, push, require_registry};
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;

const HUB_BUSYBOX: &str = "docker.io/library/busybox:latest";

fn with_mirrors(mirrors: &[String]) -> Registry {
    Registry::new(RegistryOptions {
        mirrors: mirrors.to_vec(),
        ..RegistryOptions::default()
    })
}

fn hub_busybox() -> Reference {
    HUB_BUSYBOX.parse().expect("docker.io reference")
}

/// Resolves Docker Hub's busybox through `registry`'s mirrors and fetches every layer; checks
/// they are the image pushed to the mirror, served by `expected_source`.
async fn resolve_and_fetch(registry: &Registry, image: &Image, expected_source: &str) {
    let reference = hub_busybox();
    let resolved = registry
        .resolve(&reference, &Platform::host(), &RegistryAuth::Anonymous)
        .await
        .expect("resolve through the mirror");
    assert_eq!(resolved.source, expected_source);
    assert_eq!(resolved.manifest_digest.to_string(), image.manifest_digest);
    assert_eq!(resolved.manifest_bytes, image.manifest);
    assert_eq!(resolved.config_bytes, image.config);
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs: Vec<_> = resolved
        .layers
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), dir.path().join(format!("layer{i}"))))
        .collect();
    let fetched = registry
        .fetch_all(&reference, &jobs, 2, &|_, _| {})
        .await
        .expect("blobs from the mirror");
    for ((desc, path), (digest, size)) in jobs.iter().zip(&fetched) {
        assert_eq!(digest.to_string(), desc.digest);
        assert_eq!(Some(*size), u64::try_from(desc.size).ok());
        let bytes = std::fs::read(path).expect("fetched blob");
        assert_eq!(bytes.len() as u64, *size);
    }
    let pushed: Vec<_> = image.layers.iter().map(|l| l.digest.clone()).collect();
    let got: Vec<_> = resolved.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(got, pushed);
}

#[tokio::test]
async fn docker_hub_references_come_from_the_first_mirror_that_answers() {
    if !require_registry() {
        return;
    }
    let mirror = berth_testkit::Registry::start();
    let image = ImageBuilder::busybox(Format::Docker, "mirrored").build();
    push(&mirror, "library/busybox:latest", &image).await;

    // The only mirror.
    resolve_and_fetch(&with_mirrors(&[mirror.host()]), &image, &mirror.host()).await;
    // Given as a URL.
    resolve_and_fetch(
        &with_mirrors(&[format!("http://{}/", mirror.host())]),
        &image,
        &mirror.host(),
    )
    .await;

    // A mirror that is down (nobody listens on the port) is passed over.
    let down = format!("127.0.0.1:{}", free_port());
    resolve_and_fetch(
        &with_mirrors(&[down, mirror.host()]),
        &image,
        &mirror.host(),
    )
    .await;

    // So is one without the image (404) and one that refuses anonymous pulls (401).
    let empty = berth_testkit::Registry::start();
    let front = TokenAuthFront::start(&empty, "alice", "s3cret");
    resolve_and_fetch(
        &with_mirrors(&[empty.host(), front.host(), mirror.host()]),
        &image,
        &mirror.host(),
    )
    .await;
}

#[tokio::test]
async fn other_registries_never_use_mirrors() {
    if !require_registry() {
        return;
    }
    let mirror = berth_testkit::Registry::start();
    let image = ImageBuilder::busybox(Format::Oci, "mirrored").build();
    push(&mirror, "library/busybox:latest", &image).await;
    // The same repository on a loopback registry nobody serves: the mirror has it, but must
    // not be asked.
    let missing: Reference = format!("127.0.0.1:{}/library/busybox:latest", free_port())
        .parse()
        .expect("reference");
    let err = with_mirrors(&[mirror.host()])
        .resolve(&missing, &Platform::host(), &RegistryAuth::Anonymous)
        .await
        .expect_err("served by nobody");
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    assert!(err.to_string().contains(&missing.whole()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_through_a_mirror_keeps_the_docker_hub_name() {
    if !require_registry() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        assert!(!berth_testkit::in_ci(), "CI=true but not root");
        println!("skipped: needs root");
        return;
    }
    let mirror = berth_testkit::Registry::start();
    let image = ImageBuilder::busybox(Format::Oci, "mirrored").build();
    push(&mirror, "library/busybox:latest", &image).await;
    let root = tempfile::tempdir().expect("temp dir");
    let stores = Stores::open(root.path().join("berth")).expect("stores");
    let registry = with_mirrors(&[mirror.host()]);
    let reference = berth_engine::reference::Reference::parse("busybox").expect("busybox");
    let pulled = pull(&stores, &registry, &reference, &PullOptions::default())
        .await
        .expect("pull through the mirror");
    assert_eq!(pulled.downloaded, image.layers.len());
    assert_eq!(pulled.image.repo_tags, vec![HUB_BUSYBOX.to_string()]);
    assert_eq!(pulled.repo_digest.to_string(), image.manifest_digest);
    assert_eq!(pulled.image.id.to_string(), image.config_digest);
}

#[tokio::test]
async fn login_is_verified_with_the_registry() {
    if !require_registry() {
        return;
    }
    let reg = berth_testkit::Registry::start();
    let front = TokenAuthFront::start(&reg, "alice", "s3cret");
    let registry = Registry::new(RegistryOptions::default());
    let basic = |user: &str, password: &str| RegistryAuth::Basic(user.into(), password.into());

    registry
        .check_login(&front.host(), &basic("alice", "s3cret"))
        .await
        .expect("right credentials");
    for (user, password) in [("alice", "wrong"), ("bob", "s3cret")] {
        let err = registry
            .check_login(&front.host(), &basic(user, password))
            .await
            .expect_err("wrong credentials");
        match &err {
            RegistryError::Unauthorized { reason, .. } => {
                assert_eq!(reason, "incorrect username or password", "{err}");
            }
            other => panic!("expected unauthorized, got {other}"),
        }
    }
    let err = registry
        .check_login(&front.host(), &RegistryAuth::Anonymous)
        .await
        .expect_err("no credentials");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // A registry without authentication accepts any login, as with docker.
    registry
        .check_login(&reg.host(), &basic("anyone", "anything"))
        .await
        .expect("open registry");
    registry
        .check_login(&format!("http://{}/", reg.host()), &basic("a", "b"))
        .await
        .expect("open registry given as a URL");

    // Nobody listening: a transport error naming the URL.
    let down = format!("127.0.0.1:{}", free_port());
    let err = registry
        .check_login(&down, &basic("alice", "s3cret"))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(&err, RegistryError::Transport { url, .. } if url.contains(&down)),
        "{err}"
    );
}
