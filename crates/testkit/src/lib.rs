//! berth's test kit (dev-only): a real local registry (Debian's `docker-registry`), images built
//! in memory from Debian's static busybox and pushed with oci-client, and a hostile registry
//! that serves wrong, truncated and oversized content, and a token-auth front.
//!
//! Everything listens on 127.0.0.1 only. Helpers panic with a message on failure: they are
//! for tests.

pub mod auth;
pub mod hostile;
pub mod image;
pub mod registry;

pub use auth::TokenAuthFront;
pub use hostile::HostileServer;
pub use image::{
    Compression, Format, Image, ImageBuilder, Index, Layer, host_arch, push, push_index,
};
pub use registry::Registry;

/// Whether tests must run everything they can (env `CI=true`): skipping is then a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when `docker-registry` and busybox are installed. Otherwise prints
/// `skipped: needs docker-registry` and returns false, or panics when [`in_ci`].
pub fn require_registry() -> bool {
    let have = std::path::Path::new(registry::REGISTRY_BINARY).exists()
        && std::path::Path::new(image::BUSYBOX).exists();
    if !have {
        assert!(
            !in_ci(),
            "CI=true but {} or {} is missing (apt-get install docker-registry busybox-static)",
            registry::REGISTRY_BINARY,
            image::BUSYBOX
        );
        println!("skipped: needs docker-registry");
    }
    have
}
