//! Pulling from OCI / Docker registries: resolve a reference to one platform's image manifest
//! and config (both verified), and stream blobs to files while hashing them.
//!
//! References on Docker Hub may be pulled through registry mirrors (Docker's
//! `registry-mirrors`): see [`RegistryOptions::mirrors`]. [`Registry::check_login`] verifies
//! credentials as `docker login` does.
//!
//! Transport is oci-client (auth handshake, token cache, blob streams). The manifest GET alone
//! goes through reqwest directly, so that a hostile registry cannot make berth read more than
//! [`MAX_MANIFEST_SIZE`] bytes: oci-client reads manifest bodies whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt, stream};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::digest::{Digest, Hasher};

/// Largest manifest (or index) berth reads; larger ones are refused before reading further.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config berth reads.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;
/// How many blobs [`Registry::fetch_all`] downloads at once unless told otherwise (Docker's
/// `max-concurrent-downloads` default).
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;

/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

const ACCEPTED_MANIFESTS: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// Why talking to a registry failed. Every variant names the reference (and the URL or digest
/// involved) so the message stands on its own.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused the credentials (or wants some).
    #[error(
        "pull access denied for {reference}: {reason} (log in with `berth login {registry}` if the repository is private)"
    )]
    Unauthorized {
        reference: String,
        registry: String,
        reason: String,
    },
    /// The manifest or blob is not in the registry.
    #[error("{reference}: not found at {url}")]
    NotFound { reference: String, url: String },
    /// The registry answered with an unexpected HTTP status.
    #[error("{reference}: {url} answered {status}: {body}")]
    Status {
        reference: String,
        url: String,
        status: u16,
        body: String,
    },
    /// Connecting or reading failed.
    #[error("{reference}: request to {url} failed: {message}")]
    Transport {
        reference: String,
        url: String,
        message: String,
    },
    /// A manifest, config or blob is larger than allowed or than its descriptor says.
    #[error("{reference}: {what} from {url} is larger than {limit} bytes, refused")]
    TooLarge {
        reference: String,
        what: String,
        url: String,
        limit: u64,
    },
    /// Fewer bytes arrived than the descriptor promised.
    #[error("{reference}: blob {digest} is truncated: {got} of {expected} bytes arrived")]
    Truncated {
        reference: String,
        digest: String,
        got: u64,
        expected: u64,
    },
    /// The content's sha256 is not the digest it was asked for by.
    #[error("{reference}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    /// A digest berth cannot verify (not sha256, or malformed).
    #[error("{reference}: {source}")]
    BadDigest {
        reference: String,
        #[source]
        source: crate::digest::DigestError,
    },
    /// The manifest is not one berth understands.
    #[error("{reference}: unsupported manifest {digest}: {reason}")]
    UnsupportedManifest {
        reference: String,
        digest: String,
        reason: String,
    },
    /// The index has no manifest for the requested platform.
    #[error(
        "{reference}: no matching manifest for {platform} in the manifest list entries (available: {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    /// A configured registry mirror is not `host[:port]` or `http(s)://host[:port]`.
    #[error("invalid registry mirror {mirror:?}: {reason}")]
    InvalidMirror { mirror: String, reason: String },
    /// The registry's `WWW-Authenticate` challenge is one berth cannot answer.
    #[error("{reference}: {url} answered 401 with an unsupported challenge {challenge:?}")]
    BadChallenge {
        reference: String,
        url: String,
        challenge: String,
    },
    /// Writing the downloaded blob failed.
    #[error("{reference}: writing blob {digest} to {path}: {source}", path = path.display())]
    Write {
        reference: String,
        digest: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Options for a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP, like Docker's
    /// `insecure-registries`. Loopback registries always are. The caller merges
    /// `BERTH_INSECURE_REGISTRIES` in.
    pub insecure: Vec<String>,
    /// Mirrors for Docker Hub (`host[:port]` or `http(s)://host[:port]`), tried in order before
    /// Docker Hub itself, like Docker's `registry-mirrors`. Only `docker.io` references use
    /// them. `http://` mirrors and loopback mirrors are reached over plain HTTP. Entries
    /// [`parse_mirror`] refuses are skipped with a warning: validate them first.
    pub mirrors: Vec<String>,
}

/// One registry mirror, as [`parse_mirror`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub host: String,
    /// Given as `http://…`: reached over plain HTTP.
    pub plain_http: bool,
}

/// Reads a mirror given as `host[:port]` or `http(s)://host[:port]` (a trailing `/` is
/// allowed; paths, queries and credentials are not).
pub fn parse_mirror(mirror: &str) -> Result<Mirror, RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidMirror {
        mirror: mirror.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = mirror.trim();
    let (rest, plain_http) = if let Some(r) = trimmed.strip_prefix("http://") {
        (r, true)
    } else if let Some(r) = trimmed.strip_prefix("https://") {
        (r, false)
    } else if trimmed.contains("://") {
        return Err(invalid("only http:// and https:// mirrors are supported"));
    } else {
        (trimmed, false)
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if host.contains(['/', '?', '#']) {
        return Err(invalid("a mirror is a host, without a path or query"));
    }
    if host.contains('@') {
        return Err(invalid("credentials in the address are not supported"));
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid("white space in the host"));
    }
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, "")) => (addr, None),
            Some((addr, rest)) => (addr, Some(rest.strip_prefix(':').unwrap_or(rest))),
            None => ("", None),
        },
        None => match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    let bad_name = name.is_empty() || (!host.starts_with('[') && name.contains(':'));
    if bad_name || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(invalid("expected host[:port]"));
    }
    Ok(Mirror {
        host: host.to_string(),
        plain_http,
    })
}

/// Whether a registry name is Docker Hub's.
fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Whether a failure at a mirror sends the pull on to the next mirror (or Docker Hub):
/// connection failures, 404, 5xx and refused authentication. Anything else (a digest
/// mismatch, a manifest berth does not support, no matching platform) is the image's problem,
/// not the mirror's, and is reported.
pub fn falls_through(error: &RegistryError) -> bool {
    match error {
        RegistryError::Transport { .. }
        | RegistryError::NotFound { .. }
        | RegistryError::Unauthorized { .. }
        | RegistryError::BadChallenge { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// The platform an image is pulled for, in Go's GOOS/GOARCH terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, ...
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ...; when `None` any variant matches.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host (`linux/amd64` on x86-64 Linux).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One platform's image, resolved and verified.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Digest of the image manifest (the platform's, when the reference named an index).
    pub manifest_digest: Digest,
    /// Digest of the index the reference named, if it named one (Docker's RepoDigest).
    pub index_digest: Option<Digest>,
    /// The manifest exactly as served (its sha256 is `manifest_digest`).
    pub manifest_bytes: Vec<u8>,
    /// Media type of the manifest (OCI or Docker schema 2).
    pub media_type: String,
    /// The parsed manifest.
    pub manifest: OciImageManifest,
    /// Digest of the image config.
    pub config_digest: Digest,
    /// The config exactly as served.
    pub config_bytes: Vec<u8>,
    /// The layers, lowest first.
    pub layers: Vec<OciDescriptor>,
    /// The registry (`host[:port]`) that served it: a mirror's, or the reference's own.
    pub source: String,
}

/// A registry client: one oci-client per registry host, so HTTP/HTTPS is chosen per host.
pub struct Registry {
    insecure: Vec<String>,
    mirrors: Vec<Mirror>,
    /// Which mirror answered the last resolve of a reference (keyed by `whole()`): its blobs
    /// are fetched from there too.
    routes: Mutex<HashMap<String, String>>,
    clients: Mutex<HashMap<String, Client>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("insecure", &self.insecure)
            .field("mirrors", &self.mirrors)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    platform: Option<PlatformJson>,
}

#[derive(Debug, Deserialize)]
struct PlatformJson {
    architecture: String,
    os: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    schema_version: Option<i64>,
    media_type: Option<String>,
}

impl Registry {
    /// A client; nothing is contacted yet.
    pub fn new(options: RegistryOptions) -> Registry {
        let mirrors = options
            .mirrors
            .iter()
            .filter_map(|m| match parse_mirror(m) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "registry mirror ignored");
                    None
                }
            })
            .collect();
        Registry {
            insecure: options.insecure,
            mirrors,
            routes: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            http: reqwest::Client::new(),
        }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain HTTP: loopback addresses and
    /// `localhost` always (as Docker does), and the configured insecure registries.
    pub fn is_plain_http(&self, registry: &str) -> bool {
        let host = host_part(registry);
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && ip.is_loopback()
        {
            return true;
        }
        self.insecure.iter().any(|i| i == registry || i == host)
            || self
                .mirrors
                .iter()
                .any(|m| m.plain_http && m.host == registry)
    }

    /// Where a pull of `image` is tried, in order: each mirror's host for a Docker Hub
    /// reference, then (`None`) the reference's own registry.
    pub fn sources(&self, image: &Reference) -> Vec<Option<String>> {
        let mut sources: Vec<Option<String>> = Vec::new();
        if is_docker_hub(image.registry()) && image.namespace().is_none() {
            sources.extend(self.mirrors.iter().map(|m| Some(m.host.clone())));
        }
        sources.push(None);
        sources
    }

    /// `image` as fetched from the mirror the last [`Registry::resolve`] of it used, or as is.
    fn route(&self, image: &Reference) -> Reference {
        let routes = match self.routes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut routed = image.clone();
        if image.namespace().is_none()
            && let Some(mirror) = routes.get(&image.whole())
        {
            routed.set_mirror_registry(mirror.clone());
        }
        routed
    }

    fn set_route(&self, image: &Reference, mirror: Option<&str>) {
        let mut routes = match self.routes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match mirror {
            Some(m) => routes.insert(image.whole(), m.to_string()),
            None => routes.remove(&image.whole()),
        };
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.is_plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    fn client(&self, registry: &str) -> Client {
        let mut clients = match self.clients.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let protocol = if self.is_plain_http(registry) {
                    ClientProtocol::HttpsExcept(vec![registry.to_string()])
                } else {
                    ClientProtocol::Https
                };
                Client::new(ClientConfig {
                    protocol,
                    // berth picks the platform itself; oci-client must never pick one.
                    platform_resolver: None,
                    ..ClientConfig::default()
                })
            })
            .clone()
    }

    /// Resolves `image` to the manifest and config for `platform`, verifying every digest.
    ///
    /// A Docker Hub reference is tried at each mirror in turn (anonymously: Docker Hub
    /// credentials are never sent to a mirror), moving on when [`falls_through`] says so, and
    /// finally at Docker Hub with `auth`. Later [`Registry::fetch_blob`]s of the same reference
    /// go to the registry that answered ([`Resolved::source`]).
    pub async fn resolve(
        &self,
        image: &Reference,
        platform: &Platform,
        auth: &RegistryAuth,
    ) -> Result<Resolved, RegistryError> {
        for mirror in self.sources(image).into_iter().flatten() {
            let mut target = image.clone();
            target.set_mirror_registry(mirror.clone());
            match self
                .resolve_at(&target, platform, &RegistryAuth::Anonymous)
                .await
            {
                Ok(resolved) => {
                    self.set_route(image, Some(&mirror));
                    return Ok(resolved);
                }
                Err(e) if falls_through(&e) => {
                    tracing::warn!(%mirror, error = %e, "registry mirror failed, trying the next source");
                }
                Err(e) => return Err(e),
            }
        }
        let resolved = self.resolve_at(image, platform, auth).await?;
        self.set_route(image, None);
        Ok(resolved)
    }

    async fn resolve_at(
        &self,
        image: &Reference,
        platform: &Platform,
        auth: &RegistryAuth,
    ) -> Result<Resolved, RegistryError> {
        let registry = image.resolve_registry().to_string();
        let client = self.client(&registry);
        let token = client
            .auth(image, auth, RegistryOperation::Pull)
            .await
            .map_err(|e| {
                self.map_oci(
                    image,
                    &format!("{}://{registry}/v2/", self.scheme(&registry)),
                    e,
                )
            })?;
        let credentials = match (&token, auth) {
            (Some(t), _) => Some(format!("Bearer {t}")),
            (None, RegistryAuth::Basic(user, pass)) => {
                use base64::Engine as _;
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                Some(format!("Basic {enc}"))
            }
            _ => None,
        };

        let first_ref = match image.digest() {
            Some(d) => d.to_string(),
            None => image.tag().unwrap_or("latest").to_string(),
        };
        let expected = match image.digest() {
            Some(d) => Some(Digest::parse(d).map_err(|source| RegistryError::BadDigest {
                reference: image.whole(),
                source,
            })?),
            None => None,
        };
        let (bytes, digest, media_type) = self
            .get_manifest(
                image,
                &first_ref,
                expected.as_ref(),
                None,
                credentials.as_deref(),
            )
            .await?;

        let (manifest_bytes, manifest_digest, media_type, index_digest) = if media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST_LIST
        {
            let entry = pick_platform(image, &digest, &bytes, platform)?;
            let want = Digest::parse(&entry.digest).map_err(|source| RegistryError::BadDigest {
                reference: image.whole(),
                source,
            })?;
            let size = u64::try_from(entry.size).ok();
            let (b, d, mt) = self
                .get_manifest(
                    image,
                    &entry.digest,
                    Some(&want),
                    size,
                    credentials.as_deref(),
                )
                .await?;
            if !entry.media_type.is_empty() && entry.media_type != mt {
                tracing::debug!(index = %entry.media_type, served = %mt, "manifest media type differs from index entry");
            }
            (b, d, mt, Some(digest))
        } else {
            (bytes, digest, media_type, None)
        };

        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(RegistryError::UnsupportedManifest {
                reference: image.whole(),
                digest: manifest_digest.to_string(),
                reason: format!("media type {media_type} where an image manifest was expected"),
            });
        }
        let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            RegistryError::UnsupportedManifest {
                reference: image.whole(),
                digest: manifest_digest.to_string(),
                reason: format!("invalid image manifest: {e}"),
            }
        })?;
        if manifest.schema_version != 2 {
            return Err(RegistryError::UnsupportedManifest {
                reference: image.whole(),
                digest: manifest_digest.to_string(),
                reason: format!("schema version {}", manifest.schema_version),
            });
        }

        let config_digest =
            Digest::parse(&manifest.config.digest).map_err(|source| RegistryError::BadDigest {
                reference: image.whole(),
                source,
            })?;
        let config_size = descriptor_size(image, &manifest.config)?;
        let url = self.blob_url(image, &manifest.config.digest);
        if config_size > MAX_CONFIG_SIZE {
            return Err(RegistryError::TooLarge {
                reference: image.whole(),
                what: format!("config {config_digest}"),
                url,
                limit: MAX_CONFIG_SIZE,
            });
        }
        let mut config_bytes = Vec::new();
        let (got, n) = self
            .stream_blob(image, &manifest.config, &mut config_bytes, &|_| {})
            .await?;
        debug_assert_eq!(n, config_bytes.len() as u64);
        if got != config_digest {
            return Err(RegistryError::DigestMismatch {
                reference: image.whole(),
                what: format!("config from {url}"),
                expected: config_digest.to_string(),
                actual: got.to_string(),
            });
        }

        let layers = manifest.layers.clone();
        Ok(Resolved {
            manifest_digest,
            index_digest,
            manifest_bytes,
            media_type,
            manifest,
            config_digest,
            config_bytes,
            layers,
            source: image.resolve_registry().to_string(),
        })
    }

    /// GETs one manifest, refusing more than [`MAX_MANIFEST_SIZE`] (or `size`) bytes, and
    /// verifies its sha256 against `expected` or else the `Docker-Content-Digest` header.
    async fn get_manifest(
        &self,
        image: &Reference,
        reference: &str,
        expected: Option<&Digest>,
        size: Option<u64>,
        credentials: Option<&str>,
    ) -> Result<(Vec<u8>, Digest, String), RegistryError> {
        let registry = image.resolve_registry();
        let mut url = format!(
            "{}://{registry}/v2/{}/manifests/{reference}",
            self.scheme(registry),
            image.repository()
        );
        if let Some(ns) = image.namespace() {
            url.push_str("?ns=");
            url.push_str(ns);
        }
        let transport = |e: reqwest::Error| RegistryError::Transport {
            reference: image.whole(),
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFESTS.join(", "));
        if let Some(c) = credentials {
            req = req.header(reqwest::header::AUTHORIZATION, c);
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_capped(&mut resp, 1024).await.unwrap_or_default();
            return Err(self.status_error(image, &url, status.as_u16(), &body));
        }
        let limit = size.map_or(MAX_MANIFEST_SIZE, |s| s.min(MAX_MANIFEST_SIZE));
        let too_large = || RegistryError::TooLarge {
            reference: image.whole(),
            what: "manifest".to_string(),
            url: url.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let actual = Digest::of_bytes(&body);
        let mismatch = |want: String| RegistryError::DigestMismatch {
            reference: image.whole(),
            what: format!("manifest from {url}"),
            expected: want,
            actual: actual.to_string(),
        };
        match (expected, header_digest) {
            (Some(want), _) if *want != actual => return Err(mismatch(want.to_string())),
            (None, Some(h)) if h.starts_with("sha256:") && h != actual.to_string() => {
                return Err(mismatch(h));
            }
            _ => {}
        }
        let versioned: Versioned =
            serde_json::from_slice(&body).map_err(|e| RegistryError::UnsupportedManifest {
                reference: image.whole(),
                digest: actual.to_string(),
                reason: format!("not JSON: {e}"),
            })?;
        if versioned.schema_version != Some(2) {
            return Err(RegistryError::UnsupportedManifest {
                reference: image.whole(),
                digest: actual.to_string(),
                reason: format!(
                    "schema version {} (only schema 2 manifests are supported)",
                    versioned.schema_version.unwrap_or(0)
                ),
            });
        }
        let media_type = versioned
            .media_type
            .or(content_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok((body, actual, media_type))
    }

    fn status_error(
        &self,
        image: &Reference,
        url: &str,
        status: u16,
        body: &[u8],
    ) -> RegistryError {
        let body = String::from_utf8_lossy(body).trim().to_string();
        match status {
            401 | 403 => RegistryError::Unauthorized {
                reference: image.whole(),
                registry: image.resolve_registry().to_string(),
                reason: format!("{url} answered {status}"),
            },
            404 => RegistryError::NotFound {
                reference: image.whole(),
                url: url.to_string(),
            },
            _ => RegistryError::Status {
                reference: image.whole(),
                url: url.to_string(),
                status,
                body,
            },
        }
    }

    fn map_oci(&self, image: &Reference, url: &str, e: OciDistributionError) -> RegistryError {
        match e {
            OciDistributionError::AuthenticationFailure(reason) => RegistryError::Unauthorized {
                reference: image.whole(),
                registry: image.resolve_registry().to_string(),
                reason: reason.trim().to_string(),
            },
            OciDistributionError::UnauthorizedError { url } => RegistryError::Unauthorized {
                reference: image.whole(),
                registry: image.resolve_registry().to_string(),
                reason: format!("{url} answered 401"),
            },
            OciDistributionError::ServerError { url, code, message } => {
                self.status_error(image, &url, code, message.as_bytes())
            }
            OciDistributionError::RegistryError { url, envelope } => {
                use oci_client::errors::OciErrorCode as C;
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let code =
                    |pred: &dyn Fn(&C) -> bool| envelope.errors.iter().any(|e| pred(&e.code));
                if code(&|c| matches!(c, C::Unauthorized | C::Denied)) {
                    RegistryError::Unauthorized {
                        reference: image.whole(),
                        registry: image.resolve_registry().to_string(),
                        reason: format!("{url}: {message}"),
                    }
                } else if code(&|c| {
                    matches!(
                        c,
                        C::BlobUnknown | C::ManifestUnknown | C::NameUnknown | C::NotFound
                    )
                }) {
                    RegistryError::NotFound {
                        reference: image.whole(),
                        url,
                    }
                } else {
                    RegistryError::Transport {
                        reference: image.whole(),
                        url,
                        message,
                    }
                }
            }
            other => RegistryError::Transport {
                reference: image.whole(),
                url: url.to_string(),
                message: error_chain(&other),
            },
        }
    }

    fn blob_url(&self, image: &Reference, digest: &str) -> String {
        let registry = image.resolve_registry();
        format!(
            "{}://{registry}/v2/{}/blobs/{digest}",
            self.scheme(registry),
            image.repository()
        )
    }

    /// Streams `desc` into `out`, hashing; refuses more bytes than `desc.size` as soon as they
    /// arrive and fewer at the end. Returns the computed digest and size.
    async fn stream_blob<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        image: &Reference,
        desc: &OciDescriptor,
        out: &mut W,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Digest, u64), RegistryError> {
        let size = descriptor_size(image, desc)?;
        let url = self.blob_url(image, &desc.digest);
        let client = self.client(image.resolve_registry());
        let mut sized = client
            .pull_blob_stream(image, desc)
            .await
            .map_err(|e| self.map_oci(image, &url, e))?;
        let too_large = || RegistryError::TooLarge {
            reference: image.whole(),
            what: format!("blob {}", desc.digest),
            url: url.clone(),
            limit: size,
        };
        if sized.content_length.is_some_and(|n| n > size) {
            return Err(too_large());
        }
        let mut hasher = Hasher::new();
        loop {
            let chunk = match sized.stream.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    // oci-client's own check fails once every byte has arrived: report which
                    // digest the content really has.
                    if hasher.len() == size {
                        let actual = hasher.finish();
                        return Err(RegistryError::DigestMismatch {
                            reference: image.whole(),
                            what: format!("blob from {url}"),
                            expected: desc.digest.clone(),
                            actual: actual.to_string(),
                        });
                    }
                    if hasher.len() < size && is_body_cut(&e) {
                        return Err(RegistryError::Truncated {
                            reference: image.whole(),
                            digest: desc.digest.clone(),
                            got: hasher.len(),
                            expected: size,
                        });
                    }
                    return Err(RegistryError::Transport {
                        reference: image.whole(),
                        url: url.clone(),
                        message: error_chain(&e),
                    });
                }
            };
            if hasher.len() + chunk.len() as u64 > size {
                return Err(too_large());
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|source| RegistryError::Write {
                    reference: image.whole(),
                    digest: desc.digest.clone(),
                    path: PathBuf::from("<memory>"),
                    source,
                })?;
            progress(hasher.len());
        }
        if hasher.len() < size {
            return Err(RegistryError::Truncated {
                reference: image.whole(),
                digest: desc.digest.clone(),
                got: hasher.len(),
                expected: size,
            });
        }
        let n = hasher.len();
        Ok((hasher.finish(), n))
    }

    /// Streams the blob `desc` of `image` into the file `dest` (created or truncated), hashing
    /// as it goes, and fsyncs it. Refuses as soon as more than `desc.size` bytes arrive, and
    /// fails on fewer or on a digest other than `desc.digest`; `dest` is removed on failure.
    /// `progress` gets the bytes received so far. Returns the computed digest and size; the
    /// caller still compares them before committing to the content store.
    pub async fn fetch_blob(
        &self,
        image: &Reference,
        desc: &OciDescriptor,
        dest: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Digest, u64), RegistryError> {
        let image = &self.route(image);
        let write_err = |source| RegistryError::Write {
            reference: image.whole(),
            digest: desc.digest.clone(),
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(write_err)?;
        let result = async {
            let got = self.stream_blob(image, desc, &mut file, progress).await;
            let got = got.map_err(|e| match e {
                RegistryError::Write {
                    reference,
                    digest,
                    source,
                    ..
                } => RegistryError::Write {
                    reference,
                    digest,
                    path: dest.to_path_buf(),
                    source,
                },
                other => other,
            })?;
            file.flush().await.map_err(write_err)?;
            file.sync_all().await.map_err(write_err)?;
            Ok(got)
        }
        .await;
        if result.is_err() {
            drop(file);
            if let Err(e) = tokio::fs::remove_file(dest).await {
                tracing::warn!(path = %dest.display(), error = %e, "cannot remove partial blob");
            }
        }
        let (digest, size) = result?;
        if digest.to_string() != desc.digest {
            return Err(RegistryError::DigestMismatch {
                reference: image.whole(),
                what: format!("blob from {}", self.blob_url(image, &desc.digest)),
                expected: desc.digest.clone(),
                actual: digest.to_string(),
            });
        }
        Ok((digest, size))
    }

    /// Fetches every `(descriptor, destination)` with at most `limit` (at least 1) downloads
    /// in flight. `progress(i, bytes)` reports bytes received for `blobs[i]`. Results are in
    /// the order of `blobs`; the first failure cancels the rest.
    pub async fn fetch_all(
        &self,
        image: &Reference,
        blobs: &[(OciDescriptor, PathBuf)],
        limit: usize,
        progress: &(dyn Fn(usize, u64) + Sync),
    ) -> Result<Vec<(Digest, u64)>, RegistryError> {
        let image = &self.route(image);
        let progress = Arc::new(progress);
        let mut results: Vec<(usize, (Digest, u64))> = stream::iter(blobs.iter().enumerate())
            .map(|(i, (desc, dest))| {
                let progress = Arc::clone(&progress);
                async move {
                    let report = move |n: u64| progress(i, n);
                    self.fetch_blob(image, desc, dest, &report)
                        .await
                        .map(|r| (i, r))
                }
            })
            .buffer_unordered(limit.max(1))
            .try_collect()
            .await?;
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }
}

/// How long one request of [`Registry::check_login`] may take.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Registry {
    /// Verifies credentials as `docker login` does: `GET /v2/` (plain HTTP for loopback and
    /// insecure registries); a 2xx means the registry needs no login. A 401 with a `Basic`
    /// challenge is retried with the credentials; a `Bearer realm=…,service=…` challenge sends
    /// them to the realm (with `service` and `account`), which must answer 2xx with a token.
    /// Refused credentials give [`RegistryError::Unauthorized`]. `registry` is `host[:port]`,
    /// optionally with a scheme and path (`https://index.docker.io/v1/`).
    pub async fn check_login(
        &self,
        registry: &str,
        auth: &RegistryAuth,
    ) -> Result<(), RegistryError> {
        let host = login_host(registry);
        let url = format!("{}://{host}/v2/", self.scheme(&host));
        let transport = |url: &str, e: reqwest::Error| RegistryError::Transport {
            reference: registry.to_string(),
            url: url.to_string(),
            message: error_chain(&e),
        };
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            reference: registry.to_string(),
            registry: registry.to_string(),
            reason,
        };
        let status_error = |url: &str, status: u16, body: &[u8]| RegistryError::Status {
            reference: registry.to_string(),
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(body).trim().to_string(),
        };
        let mut resp = self
            .http
            .get(&url)
            .timeout(LOGIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.as_u16() != 401 {
            let body = read_capped(&mut resp, 1024).await.unwrap_or_default();
            return Err(status_error(&url, status.as_u16(), &body));
        }
        let header = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect::<Vec<_>>();
        let challenges: Vec<Challenge> = header.iter().filter_map(|h| parse_challenge(h)).collect();
        let bad_challenge = || RegistryError::BadChallenge {
            reference: registry.to_string(),
            url: url.clone(),
            challenge: header.join(", "),
        };
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().any(|c| c.scheme == "basic");

        // The answer of a credentialed request: 2xx passes, 401/403 is a refusal.
        let judge = |url: &str, status: u16, body: &[u8]| match status {
            200..=299 => Ok(()),
            401 | 403 => Err(unauthorized(refusal_reason(body))),
            other => Err(status_error(url, other, body)),
        };
        match (auth, bearer) {
            (RegistryAuth::Anonymous, _) => Err(unauthorized(format!(
                "{url} requires credentials and none were given"
            ))),
            (RegistryAuth::Bearer(token), _) => {
                let mut resp = self
                    .http
                    .get(&url)
                    .timeout(LOGIN_TIMEOUT)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| transport(&url, e))?;
                let status = resp.status().as_u16();
                let body = read_capped(&mut resp, 64 << 10).await.unwrap_or_default();
                judge(&url, status, &body)
            }
            (RegistryAuth::Basic(user, password), Some(bearer)) => {
                let realm = bearer.param("realm").ok_or_else(bad_challenge)?;
                let mut realm_url = reqwest::Url::parse(realm).map_err(|_| bad_challenge())?;
                if !matches!(realm_url.scheme(), "http" | "https") {
                    return Err(bad_challenge());
                }
                {
                    let mut query = realm_url.query_pairs_mut();
                    if let Some(service) = bearer.param("service") {
                        query.append_pair("service", service);
                    }
                    query.append_pair("account", user);
                }
                let realm_str = realm_url.to_string();
                let mut resp = self
                    .http
                    .get(realm_url)
                    .timeout(LOGIN_TIMEOUT)
                    .basic_auth(user, Some(password))
                    .send()
                    .await
                    .map_err(|e| transport(&realm_str, e))?;
                let status = resp.status().as_u16();
                let body = read_capped(&mut resp, 64 << 10).await.unwrap_or_default();
                judge(&realm_str, status, &body)?;
                let token: TokenJson = serde_json::from_slice(&body).map_err(|e| {
                    status_error(&realm_str, status, format!("not a token: {e}").as_bytes())
                })?;
                match token.token.or(token.access_token) {
                    Some(t) if !t.is_empty() => Ok(()),
                    _ => Err(status_error(&realm_str, status, b"no token in the answer")),
                }
            }
            (RegistryAuth::Basic(user, password), None) if basic => {
                let mut resp = self
                    .http
                    .get(&url)
                    .timeout(LOGIN_TIMEOUT)
                    .basic_auth(user, Some(password))
                    .send()
                    .await
                    .map_err(|e| transport(&url, e))?;
                let status = resp.status().as_u16();
                let body = read_capped(&mut resp, 64 << 10).await.unwrap_or_default();
                judge(&url, status, &body)
            }
            (RegistryAuth::Basic(..), None) => Err(bad_challenge()),
        }
    }
}

impl Registry {
    /// Turns an identity token (an OAuth2 refresh token a registry's token service issued,
    /// as `docker login` stores it for Docker Hub or ACR) into what a pull sends: the
    /// registry's challenge names the token endpoint, which is asked with
    /// `grant_type=refresh_token` for a pull-scoped access token (docker's flow). A registry
    /// that asks for no authentication gets none.
    pub async fn exchange_identity_token(
        &self,
        reference: &crate::reference::Reference,
        identity_token: &str,
    ) -> Result<RegistryAuth, RegistryError> {
        let host = reference.api_host().to_string();
        let url = format!("{}://{host}/v2/", self.scheme(&host));
        let name = reference.familiar_string();
        let transport = |url: &str, e: reqwest::Error| RegistryError::Transport {
            reference: name.clone(),
            url: url.to_string(),
            message: error_chain(&e),
        };
        let resp = self
            .http
            .get(&url)
            .timeout(LOGIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        if resp.status().is_success() {
            return Ok(RegistryAuth::Anonymous);
        }
        let headers: Vec<String> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let bad_challenge = || RegistryError::BadChallenge {
            reference: name.clone(),
            url: url.clone(),
            challenge: headers.join(", "),
        };
        let challenges: Vec<Challenge> =
            headers.iter().filter_map(|h| parse_challenge(h)).collect();
        let bearer = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .ok_or_else(bad_challenge)?;
        let realm = bearer.param("realm").ok_or_else(bad_challenge)?;
        let realm_url = reqwest::Url::parse(realm).map_err(|_| bad_challenge())?;
        if !matches!(realm_url.scheme(), "http" | "https") {
            return Err(bad_challenge());
        }
        // The form body, url-encoded by the URL serialiser.
        let mut form = reqwest::Url::parse("http://form.invalid/").map_err(|_| bad_challenge())?;
        {
            let mut q = form.query_pairs_mut();
            q.append_pair("grant_type", "refresh_token");
            q.append_pair("refresh_token", identity_token);
            if let Some(service) = bearer.param("service") {
                q.append_pair("service", service);
            }
            q.append_pair(
                "scope",
                &format!("repository:{}:pull", reference.repository()),
            );
            q.append_pair("client_id", "berth");
        }
        let body = form.query().unwrap_or("").to_string();
        let realm_str = realm_url.to_string();
        let mut resp = self
            .http
            .post(realm_url)
            .timeout(LOGIN_TIMEOUT)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| transport(&realm_str, e))?;
        let status = resp.status().as_u16();
        let answer = read_capped(&mut resp, 64 << 10).await.unwrap_or_default();
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    reference: name.clone(),
                    registry: host.clone(),
                    reason: format!(
                        "the identity token was refused ({}); log in again",
                        refusal_reason(&answer)
                    ),
                });
            }
            other => {
                return Err(RegistryError::Status {
                    reference: name.clone(),
                    url: realm_str,
                    status: other,
                    body: String::from_utf8_lossy(&answer).trim().to_string(),
                });
            }
        }
        let token: TokenJson =
            serde_json::from_slice(&answer).map_err(|e| RegistryError::Status {
                reference: name.clone(),
                url: realm_str.clone(),
                status,
                body: format!("not a token: {e}"),
            })?;
        match token.access_token.or(token.token) {
            Some(t) if !t.is_empty() => Ok(RegistryAuth::Bearer(t)),
            _ => Err(RegistryError::Status {
                reference: name,
                url: realm_str,
                status,
                body: "no access token in the answer".to_string(),
            }),
        }
    }
}

#[derive(Deserialize)]
struct TokenJson {
    token: Option<String>,
    access_token: Option<String>,
}

/// The registry part of what `berth login` was given: no scheme, no path.
fn login_host(registry: &str) -> String {
    let rest = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = rest.split('/').next().unwrap_or(rest);
    if is_docker_hub(host) {
        "index.docker.io".to_string()
    } else {
        host.to_string()
    }
}

/// Why a registry or token service refused: its `details`, or its first error's message.
fn refusal_reason(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        details: Option<String>,
        #[serde(default)]
        errors: Vec<RefusalError>,
    }
    #[derive(Deserialize)]
    struct RefusalError {
        message: Option<String>,
    }
    let parsed: Option<Refusal> = serde_json::from_slice(body).ok();
    parsed
        .and_then(|r| {
            r.details
                .or_else(|| r.errors.into_iter().find_map(|e| e.message))
        })
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "incorrect username or password".to_string())
}

/// One `WWW-Authenticate` challenge: its scheme (lower case) and parameters.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `Scheme key="value",key=value` (quoted values may hold commas and `\"`).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_string();
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            v.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    other => v.push(other),
                }
            }
            rest = &quoted[end?..];
            value = v;
        } else {
            let stop = after.find(',').unwrap_or(after.len());
            value = after[..stop].trim().to_string();
            rest = &after[stop..];
        }
        params.push((key, value));
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

fn descriptor_size(image: &Reference, desc: &OciDescriptor) -> Result<u64, RegistryError> {
    u64::try_from(desc.size).map_err(|_| RegistryError::UnsupportedManifest {
        reference: image.whole(),
        digest: desc.digest.clone(),
        reason: format!("negative size {}", desc.size),
    })
}

fn pick_platform(
    image: &Reference,
    digest: &Digest,
    bytes: &[u8],
    platform: &Platform,
) -> Result<IndexEntry, RegistryError> {
    let index: IndexJson =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::UnsupportedManifest {
            reference: image.whole(),
            digest: digest.to_string(),
            reason: format!("invalid image index: {e}"),
        })?;
    let mut available = Vec::new();
    let mut found = None;
    for entry in index.manifests {
        let Some(p) = &entry.platform else { continue };
        let this = Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone(),
        };
        available.push(this.to_string());
        let variant_ok = match &platform.variant {
            None => true,
            Some(v) => p.variant.as_deref() == Some(v.as_str()),
        };
        if found.is_none()
            && p.os == platform.os
            && p.architecture == platform.architecture
            && variant_ok
        {
            found = Some(entry);
        }
    }
    found.ok_or_else(|| RegistryError::NoMatchingPlatform {
        reference: image.whole(),
        platform: platform.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

async fn read_capped(resp: &mut reqwest::Response, cap: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Some(body)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

/// Whether a stream error means the connection closed before the body was complete.
fn is_body_cut(e: &std::io::Error) -> bool {
    let text = error_chain(e).to_ascii_lowercase();
    e.kind() == std::io::ErrorKind::UnexpectedEof
        || text.contains("incomplete")
        || text.contains("end of file")
        || text.contains("closed")
        || text.contains("decoding response body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_registries_use_plain_http() {
        let r = Registry::new(RegistryOptions {
            insecure: vec!["myreg.lan:5000".into(), "other.lan".into()],
            mirrors: vec!["http://mirror.lan:5000".into(), "https://tls.lan".into()],
        });
        for plain in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "myreg.lan:5000",
            "other.lan:443",
            "mirror.lan:5000",
        ] {
            assert!(r.is_plain_http(plain), "{plain}");
        }
        for tls in [
            "index.docker.io",
            "ghcr.io",
            "myreg.lan:5001",
            "10.0.0.1:5000",
            "tls.lan",
            "mirror.lan:5001",
        ] {
            assert!(!r.is_plain_http(tls), "{tls}");
        }
    }

    fn index(entries: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 10,
                    "platform": p,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn platform_selection_matches_os_arch_and_variant() {
        let image: Reference = "127.0.0.1:1/x:latest".parse().unwrap();
        let d = Digest::of_bytes(b"");
        let bytes = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "amd64", None),
        ]);
        let want = |os: &str, arch: &str, variant: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        let e = pick_platform(&image, &d, &bytes, &want("linux", "arm", Some("v7"))).unwrap();
        assert_eq!(e.digest, format!("sha256:{}", "1".repeat(64)));
        let e = pick_platform(&image, &d, &bytes, &want("linux", "amd64", None)).unwrap();
        assert_eq!(e.digest, format!("sha256:{}", "2".repeat(64)));
        let err = pick_platform(&image, &d, &bytes, &want("linux", "s390x", None)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("linux/s390x") && msg.contains("linux/arm/v7"),
            "{msg}"
        );
    }

    #[test]
    fn mirrors_parse_as_docker_reads_them() {
        let m = |host: &str, plain_http: bool| Mirror {
            host: host.into(),
            plain_http,
        };
        for (given, want) in [
            ("mirror.lan", m("mirror.lan", false)),
            ("mirror.lan:5000", m("mirror.lan:5000", false)),
            ("https://mirror.lan/", m("mirror.lan", false)),
            ("http://mirror.lan:5000", m("mirror.lan:5000", true)),
            (" 127.0.0.1:5000 ", m("127.0.0.1:5000", false)),
            ("[::1]:5000", m("[::1]:5000", false)),
        ] {
            assert_eq!(parse_mirror(given).unwrap(), want, "{given}");
        }
        for bad in [
            "",
            "https://",
            "ftp://mirror.lan",
            "mirror.lan/v2/",
            "https://mirror.lan/path",
            "mirror.lan?x=1",
            "user:pw@mirror.lan",
            "mirror.lan:",
            "mirror.lan:http",
            "mirror.lan:99999",
            "mirror lan",
            "[::1]x",
        ] {
            let err = parse_mirror(bad).unwrap_err();
            assert!(
                matches!(&err, RegistryError::InvalidMirror { mirror, .. } if mirror == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn only_docker_hub_references_go_through_mirrors_then_docker_hub() {
        let r = Registry::new(RegistryOptions {
            mirrors: vec![
                "one.lan".into(),
                "not a mirror".into(),
                "http://127.0.0.1:5000".into(),
            ],
            ..RegistryOptions::default()
        });
        let hub: Reference = "docker.io/library/busybox:latest".parse().unwrap();
        assert_eq!(
            r.sources(&hub),
            vec![Some("one.lan".into()), Some("127.0.0.1:5000".into()), None]
        );
        let short: Reference = "busybox".parse().unwrap();
        assert_eq!(r.sources(&short).len(), 3);
        for other in [
            "ghcr.io/a/b:1",
            "127.0.0.1:5000/library/busybox",
            "quay.io/x",
        ] {
            let image: Reference = other.parse().unwrap();
            assert_eq!(r.sources(&image), vec![None], "{other}");
        }
        let plain = Registry::new(RegistryOptions::default());
        assert_eq!(plain.sources(&hub), vec![None]);
    }

    #[test]
    fn fetches_follow_the_mirror_that_resolved() {
        let r = Registry::new(RegistryOptions {
            mirrors: vec!["one.lan".into()],
            ..RegistryOptions::default()
        });
        let hub: Reference = "docker.io/library/busybox:latest".parse().unwrap();
        assert_eq!(r.route(&hub).resolve_registry(), "index.docker.io");
        r.set_route(&hub, Some("one.lan"));
        let routed = r.route(&hub);
        assert_eq!(routed.resolve_registry(), "one.lan");
        // The image keeps its name (and errors name it), only the host differs.
        assert_eq!(routed.whole(), hub.whole());
        assert_eq!(r.route(&routed).resolve_registry(), "one.lan");
        let other: Reference = "docker.io/library/alpine:latest".parse().unwrap();
        assert_eq!(r.route(&other).resolve_registry(), "index.docker.io");
        r.set_route(&hub, None);
        assert_eq!(r.route(&hub).resolve_registry(), "index.docker.io");
    }

    #[test]
    fn mirror_failures_that_fall_through_to_the_next_source() {
        let reference = || "docker.io/library/busybox:latest".to_string();
        let url = || "http://127.0.0.1:1/v2/".to_string();
        let status = |status: u16| RegistryError::Status {
            reference: reference(),
            url: url(),
            status,
            body: String::new(),
        };
        let through = [
            RegistryError::Transport {
                reference: reference(),
                url: url(),
                message: "connection refused".into(),
            },
            RegistryError::NotFound {
                reference: reference(),
                url: url(),
            },
            RegistryError::Unauthorized {
                reference: reference(),
                registry: "mirror".into(),
                reason: "401".into(),
            },
            status(500),
            status(502),
            status(503),
        ];
        for e in &through {
            assert!(falls_through(e), "{e}");
        }
        let stop = [
            status(400),
            status(429),
            RegistryError::DigestMismatch {
                reference: reference(),
                what: "manifest".into(),
                expected: "a".into(),
                actual: "b".into(),
            },
            RegistryError::NoMatchingPlatform {
                reference: reference(),
                platform: "linux/amd64".into(),
                available: "none".into(),
            },
            RegistryError::UnsupportedManifest {
                reference: reference(),
                digest: "d".into(),
                reason: "schema 1".into(),
            },
        ];
        for e in &stop {
            assert!(!falls_through(e), "{e}");
        }
    }

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("Service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = parse_challenge(r#"Basic realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some(r#"a "quoted" realm"#));
        let c = parse_challenge("Basic").unwrap();
        assert_eq!((c.scheme.as_str(), c.params.len()), ("basic", 0));
        let c = parse_challenge("Bearer realm=http://x/token, service=s").unwrap();
        assert_eq!(c.param("realm"), Some("http://x/token"));
        assert_eq!(c.param("service"), Some("s"));
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge("Bearer novalue"), None);
    }

    #[test]
    fn login_hosts_and_refusal_reasons() {
        assert_eq!(login_host("docker.io"), "index.docker.io");
        assert_eq!(login_host("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(login_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("ghcr.io"), "ghcr.io");
        assert_eq!(
            refusal_reason(br#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(
            refusal_reason(br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad token"}]}"#),
            "bad token"
        );
        assert_eq!(refusal_reason(b"<html>"), "incorrect username or password");
    }

    #[test]
    fn host_platform_uses_go_names() {
        let p = Platform::host();
        assert_eq!(p.os, std::env::consts::OS);
        assert_ne!(p.architecture, "x86_64");
        assert_ne!(p.architecture, "aarch64");
    }
}
