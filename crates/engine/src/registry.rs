//! Pulling from OCI / Docker registries: resolve a reference to one platform's image manifest
//! and config (both verified), and stream blobs to files while hashing them.
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
}

/// A registry client: one oci-client per registry host, so HTTP/HTTPS is chosen per host.
pub struct Registry {
    insecure: Vec<String>,
    clients: Mutex<HashMap<String, Client>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("insecure", &self.insecure)
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
        Registry {
            insecure: options.insecure,
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
    pub async fn resolve(
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
        });
        for plain in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "myreg.lan:5000",
            "other.lan:443",
        ] {
            assert!(r.is_plain_http(plain), "{plain}");
        }
        for tls in [
            "index.docker.io",
            "ghcr.io",
            "myreg.lan:5001",
            "10.0.0.1:5000",
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
    fn host_platform_uses_go_names() {
        let p = Platform::host();
        assert_eq!(p.os, std::env::consts::OS);
        assert_ne!(p.architecture, "x86_64");
        assert_ne!(p.architecture, "aarch64");
    }
}
