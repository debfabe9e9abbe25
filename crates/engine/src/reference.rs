//! Image references as Docker reads them (distribution/reference `ParseNormalizedNamed`
//! followed by `TagNameOnly`): `busybox` is `docker.io/library/busybox:latest`.
//!
//! Grammar (distribution/reference):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [":" port]
//! host             := domain-name | "[" ipv6 "]"
//! domain-name      := domain-component ("." domain-component)*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path             := path-component ("/" path-component)*      (at most 255 characters)
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := [_.] | "__" | [-]+
//! tag              := [\w][\w.-]{0,127}
//! digest           := algorithm ":" hex                          (berth: sha256 only)
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::digest::Digest;

/// The registry Docker Hub references are normalised to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves the registry API for Docker Hub.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The legacy name of Docker Hub, normalised to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
/// Tag given to a reference that names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository path (without the registry) Docker accepts.
pub const MAX_PATH_LEN: usize = 255;
/// Longest tag Docker accepts.
pub const MAX_TAG_LEN: usize = 128;

/// Why an image reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The text does not follow the reference grammar.
    #[error("invalid reference format: {reason} in {input:?}")]
    InvalidFormat {
        /// The reference as given.
        input: String,
        /// Which part is wrong and why.
        reason: String,
    },
    /// The repository name has upper-case letters.
    #[error("invalid reference format: repository name ({name}) must be lowercase")]
    Uppercase {
        /// The reference as given.
        input: String,
        /// The repository name (Docker Hub's `library/` included).
        name: String,
    },
    /// The repository path is longer than [`MAX_PATH_LEN`].
    #[error(
        "invalid reference format: repository name must not be more than {MAX_PATH_LEN} characters in {input:?}"
    )]
    NameTooLong {
        /// The reference as given.
        input: String,
    },
    /// A bare 64-hex string is an image id, not a name.
    #[error("invalid repository name ({input}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier {
        /// The reference as given.
        input: String,
    },
    /// The digest is well-formed text but not a usable digest.
    #[error("invalid reference {input:?}: {reason}")]
    Digest {
        /// The reference as given.
        input: String,
        /// Docker's wording (`invalid checksum digest length`, ...).
        reason: String,
    },
    /// A tag given to [`Reference::with_tag`] does not follow the tag grammar.
    #[error("invalid tag format: {tag:?}")]
    Tag {
        /// The tag as given.
        tag: String,
    },
}

/// A normalised image reference: registry, repository path, and a tag and/or a digest.
///
/// Parsing always leaves at least one of tag and digest set (`latest` when the text has
/// neither), as `docker pull` does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` as Docker does: familiar names are moved to Docker Hub (`busybox` →
    /// `docker.io/library/busybox:latest`, `user/app` → `docker.io/user/app:latest`),
    /// `index.docker.io` becomes `docker.io`, and the first path component is a registry
    /// when it contains `.` or `:`, is `localhost`, or has upper-case letters.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: String| ReferenceError::InvalidFormat {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty reference".to_string()));
        }
        if s.len() == 64 && s.bytes().all(is_lower_hex) {
            return Err(ReferenceError::HexIdentifier {
                input: s.to_string(),
            });
        }
        let (registry, remainder) = split_docker_domain(s);

        // Docker checks the remote name for case before the grammar, so `Busybox` gets the
        // lowercase message rather than a format error.
        let name_end = remainder.find([':', '@']).unwrap_or(remainder.len());
        let name = &remainder[..name_end];
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: s.to_string(),
                name: name.to_string(),
            });
        }

        check_domain(&registry).map_err(invalid)?;

        let (name_tag, digest_text) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (name_tag, None),
        };
        check_path(path).map_err(invalid)?;
        if path.len() > MAX_PATH_LEN {
            return Err(ReferenceError::NameTooLong {
                input: s.to_string(),
            });
        }
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(invalid(format!(
                "tag {tag:?} is not [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )));
        }
        let digest = match digest_text {
            Some(d) => Some(parse_digest(s, d)?),
            None => None,
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository: path.to_string(),
            tag,
            digest,
        })
    }

    /// The registry as written in the normalised reference (`docker.io` for Docker Hub),
    /// with its port if any (`localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry API: `registry-1.docker.io` for Docker
    /// Hub, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`, without tag or digest (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The name as `docker images` shows it in the REPOSITORY column: `busybox` for
    /// `docker.io/library/busybox`, `user/app` for `docker.io/user/app`, the full name for
    /// other registries.
    pub fn familiar(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        match self.repository.strip_prefix(OFFICIAL_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// [`familiar`](Self::familiar) with the tag and digest (`busybox:latest`), as Docker's
    /// `FamiliarString`.
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with `tag` and no digest (what `docker tag` names).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::Tag {
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same reference pinned to `digest` (the tag, if any, is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Whether the registry host is loopback: `localhost`, an address in 127.0.0.0/8 or
    /// `::1`, whatever the port. Such registries may be spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

/// Whether `registry` (`host[:port]`, as [`Reference::registry`] returns it) is a loopback
/// host: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        registry.split_once(':').map_or(registry, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
    }
    false
}

impl fmt::Display for Reference {
    /// The full normalised form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<&Reference> for oci_client::Reference {
    /// The same reference for oci-client. Built from parts (oci-client's own parser does not
    /// know `[::1]` hosts); the registry stays `docker.io`, which oci-client itself resolves
    /// to Docker Hub's API host.
    fn from(r: &Reference) -> oci_client::Reference {
        let registry = r.registry.clone();
        let repository = r.repository.clone();
        match (&r.tag, &r.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.clone(),
                digest.to_string(),
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.to_string())
            }
            (Some(tag), None) => oci_client::Reference::with_tag(registry, repository, tag.clone()),
            // Not produced by `parse`; `with_tag` and `with_digest` keep one of the two.
            (None, None) => {
                oci_client::Reference::with_tag(registry, repository, DEFAULT_TAG.to_string())
            }
        }
    }
}

impl From<Reference> for oci_client::Reference {
    fn from(r: Reference) -> oci_client::Reference {
        oci_client::Reference::from(&r)
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// distribution/reference `splitDockerDomain`: the registry (normalised) and the rest, with
/// `library/` added for single-component Docker Hub names.
fn split_docker_domain(s: &str) -> (String, String) {
    let (domain, rest) = match s.split_once('/') {
        None => (DOCKER_HUB, s),
        Some((first, rest)) => {
            if first == "localhost" || first.contains(['.', ':']) || first != first.to_lowercase() {
                if first == LEGACY_DOCKER_HUB {
                    (DOCKER_HUB, rest)
                } else {
                    (first, rest)
                }
            } else {
                (DOCKER_HUB, s)
            }
        }
    };
    if domain == DOCKER_HUB && !rest.contains('/') {
        (domain.to_string(), format!("{OFFICIAL_PREFIX}{rest}"))
    } else {
        (domain.to_string(), rest.to_string())
    }
}

/// `host[:port]` where host is a dotted domain name (labels of letters, digits and inner
/// hyphens) or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("registry {domain:?} {why}"));
    let port = if let Some(rest) = domain.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return bad("has no closing ]");
        };
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("is not a bracketed IPv6 address");
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return bad("has text after the IPv6 address"),
            },
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-');
            if !ok {
                return bad("is not a host name (labels of letters, digits and inner hyphens)");
            }
        }
        port
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("has a port that is not a number");
    }
    Ok(())
}

/// One or more `/`-separated path components.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty repository name".to_string());
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository name component {component:?} is not [a-z0-9]+ joined by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false; // empty run: leading, trailing or doubled separator
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
}

/// `[\w][\w.-]{0,127}` with ASCII `\w`.
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// The grammar Docker accepts for a digest, then go-digest's checks, then berth's own limit
/// (sha256 only: the content store keys everything by sha256).
fn parse_digest(input: &str, d: &str) -> Result<Digest, ReferenceError> {
    let digest_err = |reason: &str| ReferenceError::Digest {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(ReferenceError::InvalidFormat {
            input: input.to_string(),
            reason: format!("digest {d:?} is not algorithm:hex"),
        });
    };
    let algorithm_ok = algorithm
        .split(['-', '_', '+', '.'])
        .all(|part| part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic))
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b));
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceError::InvalidFormat {
            input: input.to_string(),
            reason: format!("digest {d:?} is not algorithm:hex (at least 32 hex digits)"),
        });
    }
    match algorithm {
        "sha256" => {}
        "sha384" | "sha512" => {
            return Err(digest_err(&format!(
                "unsupported digest algorithm {algorithm}: berth stores sha256 content only"
            )));
        }
        _ => return Err(digest_err("unsupported digest algorithm")),
    }
    if hex.len() != 64 {
        return Err(digest_err("invalid checksum digest length"));
    }
    Digest::parse(d).map_err(|_| digest_err("invalid checksum digest format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_references_normalise_as_docker() {
        let d = format!("sha256:{HEX}");
        // input, registry, repository, tag, has digest, Display, familiar
        type Case = (
            String,
            &'static str,
            &'static str,
            Option<&'static str>,
            bool,
            String,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
                "docker.io/library/busybox:latest".into(),
                "busybox",
            ),
            (
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
                "docker.io/library/busybox:1.36".into(),
                "busybox",
            ),
            (
                "user/app".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                false,
                "docker.io/user/app:latest".into(),
                "user/app",
            ),
            (
                "docker.io/busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
                "docker.io/library/busybox:latest".into(),
                "busybox",
            ),
            (
                "index.docker.io/user/app:v1".into(),
                "docker.io",
                "user/app",
                Some("v1"),
                false,
                "docker.io/user/app:v1".into(),
                "user/app",
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io",
                "library/a/b",
                Some("latest"),
                false,
                "docker.io/library/a/b:latest".into(),
                "library/a/b",
            ),
            (
                "host:5000/ns/name:tag".into(),
                "host:5000",
                "ns/name",
                Some("tag"),
                false,
                "host:5000/ns/name:tag".into(),
                "host:5000/ns/name",
            ),
            (
                "localhost/x".into(),
                "localhost",
                "x",
                Some("latest"),
                false,
                "localhost/x:latest".into(),
                "localhost/x",
            ),
            (
                "127.0.0.1:5000/x".into(),
                "127.0.0.1:5000",
                "x",
                Some("latest"),
                false,
                "127.0.0.1:5000/x:latest".into(),
                "127.0.0.1:5000/x",
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000",
                "x",
                Some("latest"),
                false,
                "[::1]:5000/x:latest".into(),
                "[::1]:5000/x",
            ),
            (
                "[2001:db8::1]/a/b".into(),
                "[2001:db8::1]",
                "a/b",
                Some("latest"),
                false,
                "[2001:db8::1]/a/b:latest".into(),
                "[2001:db8::1]/a/b",
            ),
            (
                format!("busybox@{d}"),
                "docker.io",
                "library/busybox",
                None,
                true,
                format!("docker.io/library/busybox@{d}"),
                "busybox",
            ),
            (
                format!("busybox:1.36@{d}"),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                true,
                format!("docker.io/library/busybox:1.36@{d}"),
                "busybox",
            ),
            // `localhost` without a slash is a Docker Hub name; `localhost:5000` a tag.
            (
                "localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
                "docker.io/library/localhost:5000".into(),
                "localhost",
            ),
            // An upper-case first component is a registry, as in Docker.
            (
                "Example/app".into(),
                "Example",
                "app",
                Some("latest"),
                false,
                "Example/app:latest".into(),
                "Example/app",
            ),
            (
                "a.b-c.example.com/x__y/z--w:V_1.0-rc".into(),
                "a.b-c.example.com",
                "x__y/z--w",
                Some("V_1.0-rc"),
                false,
                "a.b-c.example.com/x__y/z--w:V_1.0-rc".into(),
                "a.b-c.example.com/x__y/z--w",
            ),
            (
                "foo/a---b.c_d:_tag".into(),
                "docker.io",
                "foo/a---b.c_d",
                Some("_tag"),
                false,
                "docker.io/foo/a---b.c_d:_tag".into(),
                "foo/a---b.c_d",
            ),
        ];
        for (input, registry, repository, tag, has_digest, display, familiar) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(
                r.digest().map(|x| x.to_string()),
                has_digest.then(|| d.clone())
            );
            assert_eq!(r.to_string(), display, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            // The normalised form reads back as itself.
            assert_eq!(Reference::parse(&display), Ok(r.clone()), "{input}");
        }
    }

    #[test]
    fn invalid_references_are_refused_with_the_reason() {
        let long_path = format!("a/{}", "b".repeat(254)); // 256 characters
        let long_tag = format!("x:{}", "t".repeat(129));
        // input, expected start of the message
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "invalid reference format: empty reference"),
            (
                "Busybox".into(),
                "invalid reference format: repository name (library/Busybox) must be lowercase",
            ),
            (
                "user/App:tag".into(),
                "invalid reference format: repository name (user/App) must be lowercase",
            ),
            (
                "host:5000/Ns/x".into(),
                "invalid reference format: repository name (Ns/x) must be lowercase",
            ),
            (HEX.into(), "invalid repository name (0123456789abcdef"),
            ("busybox:".into(), "invalid reference format: tag \"\""),
            ("busybox:-x".into(), "invalid reference format: tag \"-x\""),
            // `busybox:a` before a slash reads as a registry with a port, as in Docker.
            (
                "busybox:a/b".into(),
                "invalid reference format: registry \"busybox:a\" has a port",
            ),
            (long_tag, "invalid reference format: tag"),
            (
                "a b".into(),
                "invalid reference format: repository name component \"a b\"",
            ),
            (
                "-x".into(),
                "invalid reference format: repository name component \"-x\"",
            ),
            (
                "x-".into(),
                "invalid reference format: repository name component \"x-\"",
            ),
            (
                "a..b".into(),
                "invalid reference format: repository name component \"a..b\"",
            ),
            (
                "a___b".into(),
                "invalid reference format: repository name component \"a___b\"",
            ),
            (
                "a/".into(),
                "invalid reference format: repository name component \"\"",
            ),
            (
                "a//b".into(),
                "invalid reference format: repository name component \"\"",
            ),
            (
                "host:5000/".into(),
                "invalid reference format: empty repository name",
            ),
            (
                "host:port/x".into(),
                "invalid reference format: registry \"host:port\" has a port that is not a number",
            ),
            (
                "host:/x".into(),
                "invalid reference format: registry \"host:\" has a port",
            ),
            (
                "-host.com/x".into(),
                "invalid reference format: registry \"-host.com\" is not a host name",
            ),
            (
                "foo_bar.com/x".into(),
                "invalid reference format: registry \"foo_bar.com\" is not a host name",
            ),
            (
                "::1/x".into(),
                "invalid reference format: registry \"::1\" is not a host name",
            ),
            (
                "[::1/x".into(),
                "invalid reference format: registry \"[::1\" has no closing ]",
            ),
            (
                "[zz]:1/x".into(),
                "invalid reference format: registry \"[zz]:1\" is not a bracketed IPv6",
            ),
            (
                "[::1]x/y".into(),
                "invalid reference format: registry \"[::1]x\" has text after",
            ),
            // Without `.` or `:` the first component is a path component, as in Docker.
            (
                "[zz]/x".into(),
                "invalid reference format: repository name component \"[zz]\"",
            ),
            ("x@".into(), "invalid reference format: digest \"\""),
            (
                "x@sha256:abc".into(),
                "invalid reference format: digest \"sha256:abc\"",
            ),
            (
                "x@sha256".into(),
                "invalid reference format: digest \"sha256\"",
            ),
            (format!("x@sha256:{HEX}0"), "invalid reference \"x@sha256:"),
            (format!("x@md5:{HEX}"), "invalid reference \"x@md5:"),
            (
                format!("x@sha512:{HEX}{HEX}"),
                "invalid reference \"x@sha512:",
            ),
            (
                format!("x@sha256:{}", HEX.to_uppercase()),
                "invalid reference \"x@sha256:",
            ),
            (
                long_path,
                "invalid reference format: repository name must not be more than 255",
            ),
        ];
        for (input, want) in cases {
            match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.starts_with(want),
                        "{input:?}: got {msg:?}, want {want:?}…"
                    );
                }
            }
        }
    }

    #[test]
    fn digest_errors_use_dockers_words() {
        let reason = |s: String| match Reference::parse(&s) {
            Err(ReferenceError::Digest { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            reason(format!("x@sha256:{HEX}00")),
            "invalid checksum digest length"
        );
        assert_eq!(
            reason(format!("x@sha256:{}", HEX.to_uppercase())),
            "invalid checksum digest format"
        );
        assert_eq!(
            reason(format!("x@foo:{HEX}")),
            "unsupported digest algorithm"
        );
    }

    #[test]
    fn path_length_limit_excludes_the_registry() {
        let path = format!("a/{}", "b".repeat(253)); // exactly 255
        let r = Reference::parse(&format!("registry.example.com:5000/{path}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.repository().len(), MAX_PATH_LEN);
        let tag = "t".repeat(MAX_TAG_LEN);
        assert!(Reference::parse(&format!("x:{tag}")).is_ok());
    }

    #[test]
    fn api_host_and_loopback() {
        let cases = [
            ("busybox", "registry-1.docker.io", false),
            ("quay.io/a/b", "quay.io", false),
            ("localhost/x", "localhost", true),
            ("localhost:5000/x", "localhost:5000", true),
            ("127.0.0.1/x", "127.0.0.1", true),
            ("127.1.2.3:80/x", "127.1.2.3:80", true),
            ("128.0.0.1:5000/x", "128.0.0.1:5000", false),
            ("[::1]:5000/x", "[::1]:5000", true),
            ("[::1]/x", "[::1]", true),
            ("[::2]/x", "[::2]", false),
            ("localhost.example.com/x", "localhost.example.com", false),
        ];
        for (input, api, loopback) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.api_host(), api, "{input}");
            assert_eq!(r.is_loopback(), loopback, "{input}");
        }
        // Dots are not in Docker's IPv6 grammar, so a mapped address cannot be written...
        assert!(Reference::parse("[::ffff:127.0.0.1]/x").is_err());
        // ...but the hex form is loopback.
        assert!(is_loopback_host("[::ffff:7f00:1]:5000"));
        assert!(!is_loopback_host("[::1"));
    }

    #[test]
    fn with_tag_with_digest_and_familiar_string() {
        let d = Digest::of_bytes(b"x");
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.familiar_string(), format!("busybox:1@{d}"));
        let t = r.with_tag("2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.to_string(), "docker.io/library/busybox:2");
        assert_eq!(
            r.with_tag("-bad"),
            Err(ReferenceError::Tag {
                tag: "-bad".to_string()
            })
        );
        let p = t.with_digest(d.clone());
        assert_eq!(p.to_string(), format!("docker.io/library/busybox:2@{d}"));
        assert_eq!(p.name(), "docker.io/library/busybox");
    }

    #[test]
    fn converts_to_oci_client_reference() {
        let d = Digest::of_bytes(b"y");
        let cases = [
            ("busybox".to_string(), Some("latest"), None),
            (format!("[::1]:5000/a/b@{d}"), None, Some(d.to_string())),
            (format!("host:5000/a:t@{d}"), Some("t"), Some(d.to_string())),
        ];
        for (input, tag, digest) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{e}"));
            let o = oci_client::Reference::from(&r);
            assert_eq!(o.registry(), r.registry());
            assert_eq!(o.repository(), r.repository());
            assert_eq!(o.tag(), tag);
            assert_eq!(o.digest().map(str::to_string), digest);
            assert_eq!(o.whole(), r.to_string());
        }
        let hub = oci_client::Reference::from(
            Reference::parse("busybox").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(hub.resolve_registry(), "index.docker.io");
    }

    #[test]
    fn serde_round_trip() {
        let r = Reference::parse("user/app:v1").unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, "\"docker.io/user/app:v1\"");
        let back: Reference = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Reference>("\"Bad\"").is_err());
    }
}
