//! Registry credentials from Docker's `config.json` and Docker credential helpers, read and
//! written the way the docker CLI does, so `docker login` and `berth login` share them.
//!
//! Lookup for a registry (as `docker pull` does it):
//! 1. a `credHelpers` entry for the registry, else `credsStore`: the helper's answer is final
//!    (`docker-credential-<name> get`, "credentials not found" means anonymous); an empty
//!    `credHelpers` entry means "use the file" even when `credsStore` is set;
//! 2. else `auths`: the entry under the exact server key, else the first entry whose key has the
//!    same host once scheme and path are dropped.
//!
//! Docker Hub is one registry under every name: `https://index.docker.io/v1/` (the key Docker
//! writes and the server URL it gives helpers), `docker.io`, `index.docker.io`,
//! `registry-1.docker.io`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};

/// The file name inside the docker config directory.
pub const CONFIG_FILE: &str = "config.json";
/// The server key and helper server URL Docker uses for Docker Hub.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// The username a credential helper returns (and is given) for an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// Fields of an `auths` entry that hold a secret; `store`/`erase` replace only these.
const SECRET_FIELDS: [&str; 5] = [
    "auth",
    "username",
    "password",
    "identitytoken",
    "registrytoken",
];

/// Why credentials could not be read, stored or erased.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file exists but could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The config file is not the JSON Docker writes.
    #[error("{path} is not a valid docker config file: {reason}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An `auths` entry cannot be decoded.
    #[error("invalid credentials for {server} in {path}: {reason}")]
    InvalidEntry {
        /// The config file.
        path: PathBuf,
        /// The entry's server key.
        server: String,
        /// What is wrong.
        reason: String,
    },
    /// A `credsStore`/`credHelpers` value is not a plain program-name suffix.
    #[error("invalid credential helper name {name:?} in {path}")]
    InvalidHelperName {
        /// The config file.
        path: PathBuf,
        /// The configured name.
        name: String,
    },
    /// The configured helper program is not on the search path.
    #[error("docker-credential-{helper} (configured in {path} for {server}) not found in PATH")]
    HelperNotFound {
        /// The helper name (`desktop`, `pass`, ...).
        helper: String,
        /// The server whose credentials were asked for.
        server: String,
        /// The config file naming the helper.
        path: PathBuf,
    },
    /// The helper program could not be started or waited for.
    #[error("running {program}: {source}")]
    HelperSpawn {
        /// The helper program.
        program: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The helper exited with failure (other than "credentials not found").
    #[error("docker-credential-{helper} {action} for {server} failed: {message}")]
    HelperFailed {
        /// The helper name.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The server URL given to the helper.
        server: String,
        /// What the helper printed.
        message: String,
    },
    /// The helper's `get` answer is not `{"Username": .., "Secret": ..}`.
    #[error("docker-credential-{helper} get for {server} printed invalid JSON: {reason}")]
    HelperOutput {
        /// The helper name.
        helper: String,
        /// The server URL given to the helper.
        server: String,
        /// The JSON error.
        reason: String,
    },
    /// The config file (or its directory) could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A username and password (or access token used as password).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity token (an OAuth2 refresh token the registry's token service issued).
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => {
                f.debug_tuple("IdentityToken").field(&"<redacted>").finish()
            }
        }
    }
}

/// The docker config directory: `$DOCKER_CONFIG` when set and not empty, else
/// `$HOME/.docker`. The values are passed in so callers (and tests) choose the environment.
pub fn default_config_dir(docker_config: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    match docker_config {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => home
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(h).join(".docker")),
    }
}

/// [`default_config_dir`] from this process's `DOCKER_CONFIG` and `HOME`.
pub fn config_dir_from_env() -> Option<PathBuf> {
    default_config_dir(
        std::env::var_os("DOCKER_CONFIG").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// What oci-client sends: anonymous, HTTP basic, or a bearer token.
///
/// An identity token becomes `Bearer` as it is: oci-client has no OAuth2 refresh-token
/// exchange, so pulls exchange it first with
/// [`Registry::exchange_identity_token`](crate::registry::Registry::exchange_identity_token)
/// (`grant_type=refresh_token` at the token endpoint) and send the access token.
pub fn to_registry_auth(credentials: &Option<Credentials>) -> RegistryAuth {
    match credentials {
        None => RegistryAuth::Anonymous,
        Some(Credentials::Basic { username, password }) => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Some(Credentials::IdentityToken(token)) => RegistryAuth::Bearer(token.clone()),
    }
}

/// A loaded docker config directory: the credential parts of `config.json`, and where to
/// look for `docker-credential-*` programs.
#[derive(Clone)]
pub struct DockerConfig {
    dir: PathBuf,
    file: PathBuf,
    /// `auths` in file order: server key → entry.
    auths: Vec<(String, Map<String, Value>)>,
    creds_store: Option<String>,
    cred_helpers: Vec<(String, String)>,
    search_path: Option<OsString>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("file", &self.file)
            .field(
                "auths",
                &self.auths.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

impl DockerConfig {
    /// Loads `<dir>/config.json`; a missing or empty file is an empty config. Credential
    /// helpers are looked for on this process's `PATH` (see [`with_search_path`](Self::with_search_path)).
    pub fn load(dir: &Path) -> Result<DockerConfig, AuthError> {
        let file = dir.join(CONFIG_FILE);
        let root = read_config_value(&file)?;
        let mut config = DockerConfig {
            dir: dir.to_path_buf(),
            file,
            auths: Vec::new(),
            creds_store: None,
            cred_helpers: Vec::new(),
            search_path: std::env::var_os("PATH"),
        };
        config.apply(&root)?;
        Ok(config)
    }

    /// Looks for `docker-credential-*` programs in `path` (`PATH` syntax) instead, and runs
    /// them with it as their `PATH`. `None`: helpers are never found.
    pub fn with_search_path(mut self, path: Option<OsString>) -> DockerConfig {
        self.search_path = path;
        self
    }

    /// The config file (`<dir>/config.json`).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The credential helper that holds `registry`'s credentials, if any (`credHelpers`
    /// entry, else `credsStore`). `None` means they live in the file, in clear text.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let host = canonical_host(registry);
        let per_registry = self
            .cred_helpers
            .iter()
            .find(|(k, _)| k == registry)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(k, _)| canonical_host(k) == host)
            });
        let name = match per_registry {
            Some((_, name)) => name.as_str(),
            None => self.creds_store.as_deref().unwrap_or(""),
        };
        (!name.is_empty()).then_some(name)
    }

    /// Credentials for `registry_host` (`docker.io`, `localhost:5000`, or a server URL such as
    /// `https://index.docker.io/v1/`); `None` means anonymous.
    pub fn credentials_for(&self, registry_host: &str) -> Result<Option<Credentials>, AuthError> {
        let host = canonical_host(registry_host);
        let server = server_url(&host);
        if let Some(helper) = self.helper_for(registry_host) {
            return self.helper_get(helper, &server);
        }
        let entry = self
            .auths
            .iter()
            .find(|(k, _)| *k == server)
            .or_else(|| self.auths.iter().find(|(k, _)| canonical_host(k) == host));
        match entry {
            Some((key, entry)) => decode_entry(&self.file, key, entry),
            None => Ok(None),
        }
    }

    /// Saves credentials for `registry` as `docker login` does: in the registry's helper if one
    /// is configured (the file then gets an empty entry for the server), else base64 in
    /// `auths`. The file is rewritten atomically with every other key kept.
    pub fn store(&mut self, registry: &str, credentials: &Credentials) -> Result<(), AuthError> {
        let host = canonical_host(registry);
        let server = server_url(&host);
        let mut fields = Map::new();
        match self.helper_for(registry) {
            Some(helper) => {
                let (username, secret) = match credentials {
                    Credentials::Basic { username, password } => (username.as_str(), password),
                    Credentials::IdentityToken(token) => (TOKEN_USERNAME, token),
                };
                let input = serde_json::json!({
                    "ServerURL": server,
                    "Username": username,
                    "Secret": secret,
                });
                self.run_helper(helper, "store", &server, input.to_string().as_bytes())?;
            }
            None => match credentials {
                Credentials::Basic { username, password } => {
                    let auth = base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"));
                    fields.insert("auth".to_string(), Value::String(auth));
                }
                Credentials::IdentityToken(token) => {
                    fields.insert("identitytoken".to_string(), Value::String(token.clone()));
                }
            },
        }
        self.rewrite(|auths| {
            let entry = auths
                .entry(server.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(entry) = entry {
                for f in SECRET_FIELDS {
                    entry.remove(f);
                }
                entry.extend(fields);
            }
            true
        })?;
        Ok(())
    }

    /// Forgets `registry`'s credentials as `docker logout` does: in its helper if one is
    /// configured, and every `auths` entry whose key names the same host. Returns whether
    /// anything was there.
    pub fn erase(&mut self, registry: &str) -> Result<bool, AuthError> {
        let host = canonical_host(registry);
        let server = server_url(&host);
        let mut erased = false;
        if let Some(helper) = self.helper_for(registry) {
            erased = self
                .run_helper(helper, "erase", &server, server.as_bytes())?
                .is_some();
        }
        let removed = self.rewrite(|auths| {
            let before = auths.len();
            auths.retain(|k, _| canonical_host(k) != host);
            auths.len() != before
        })?;
        Ok(erased || removed)
    }

    fn apply(&mut self, root: &Map<String, Value>) -> Result<(), AuthError> {
        let parse_err = |reason: String| AuthError::Parse {
            path: self.file.clone(),
            reason,
        };
        let mut auths = Vec::new();
        match root.get("auths") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, entry) in map {
                    match entry {
                        Value::Object(e) => auths.push((key.clone(), e.clone())),
                        Value::Null => auths.push((key.clone(), Map::new())),
                        _ => {
                            return Err(AuthError::InvalidEntry {
                                path: self.file.clone(),
                                server: key.clone(),
                                reason: "the entry is not an object".to_string(),
                            });
                        }
                    }
                }
            }
            Some(_) => return Err(parse_err("\"auths\" is not an object".to_string())),
        }
        let creds_store = match root.get("credsStore") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(self.check_helper_name(s)?),
            Some(_) => return Err(parse_err("\"credsStore\" is not a string".to_string())),
        };
        let mut cred_helpers = Vec::new();
        match root.get("credHelpers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, name) in map {
                    let Value::String(name) = name else {
                        return Err(parse_err(format!(
                            "\"credHelpers\" entry {key:?} is not a string"
                        )));
                    };
                    let name = if name.is_empty() {
                        String::new()
                    } else {
                        self.check_helper_name(name)?
                    };
                    cred_helpers.push((key.clone(), name));
                }
            }
            Some(_) => return Err(parse_err("\"credHelpers\" is not an object".to_string())),
        }
        self.auths = auths;
        self.creds_store = creds_store;
        self.cred_helpers = cred_helpers;
        Ok(())
    }

    fn check_helper_name(&self, name: &str) -> Result<String, AuthError> {
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0');
        if ok {
            Ok(name.to_string())
        } else {
            Err(AuthError::InvalidHelperName {
                path: self.file.clone(),
                name: name.to_string(),
            })
        }
    }

    /// Re-reads the file, lets `change` edit its `auths` object, writes it back if `change`
    /// says it changed something, and reloads. Returns what `change` returned.
    fn rewrite(
        &mut self,
        change: impl FnOnce(&mut Map<String, Value>) -> bool,
    ) -> Result<bool, AuthError> {
        let mut root = read_config_value(&self.file)?;
        let auths = root
            .entry("auths".to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if auths.is_null() {
            *auths = Value::Object(Map::new());
        }
        let Value::Object(auths) = auths else {
            return Err(AuthError::Parse {
                path: self.file.clone(),
                reason: "\"auths\" is not an object".to_string(),
            });
        };
        if !change(auths) {
            return Ok(false);
        }
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        serde::Serialize::serialize(&root, &mut ser).map_err(|e| AuthError::Write {
            path: self.file.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_config_atomic(&self.dir, &self.file, &bytes)?;
        self.apply(&root)?;
        Ok(true)
    }

    fn helper_get(&self, helper: &str, server: &str) -> Result<Option<Credentials>, AuthError> {
        let Some(out) = self.run_helper(helper, "get", server, server.as_bytes())? else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct HelperCredentials {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let creds: HelperCredentials =
            serde_json::from_slice(&out).map_err(|e| AuthError::HelperOutput {
                helper: helper.to_string(),
                server: server.to_string(),
                reason: e.to_string(),
            })?;
        Ok(if creds.username == TOKEN_USERNAME {
            (!creds.secret.is_empty()).then_some(Credentials::IdentityToken(creds.secret))
        } else if creds.username.is_empty() && creds.secret.is_empty() {
            None
        } else {
            Some(Credentials::Basic {
                username: creds.username,
                password: creds.secret,
            })
        })
    }

    /// Runs `docker-credential-<helper> <action>` with `input` on stdin. `Ok(None)` when the
    /// helper says the credentials are not found; else its stdout.
    fn run_helper(
        &self,
        helper: &str,
        action: &'static str,
        server: &str,
        input: &[u8],
    ) -> Result<Option<Vec<u8>>, AuthError> {
        let program_name = format!("docker-credential-{helper}");
        let program = self
            .search_path
            .as_deref()
            .into_iter()
            .flat_map(std::env::split_paths)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(&program_name))
            .find(|p| is_executable(p))
            .ok_or_else(|| AuthError::HelperNotFound {
                helper: helper.to_string(),
                server: server.to_string(),
                path: self.file.clone(),
            })?;
        let spawn_err = |source| AuthError::HelperSpawn {
            program: program.clone(),
            source,
        };
        let mut cmd = Command::new(&program);
        cmd.arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.search_path {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper may exit without reading; its answer tells what happened.
            match stdin.write_all(input) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(spawn_err(e)),
                _ => {}
            }
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            return Ok(Some(out.stdout));
        }
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let message = if stdout.is_empty() { stderr } else { stdout };
        if message
            .to_ascii_lowercase()
            .contains("credentials not found")
        {
            return Ok(None);
        }
        Err(AuthError::HelperFailed {
            helper: helper.to_string(),
            action,
            server: server.to_string(),
            message: if message.is_empty() {
                out.status.to_string()
            } else {
                message
            },
        })
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The host of a server key: scheme and path dropped, lower-cased, Docker Hub's names as
/// `docker.io`.
fn canonical_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

/// The server URL Docker keys credentials by: Docker Hub's v1 URL, else the host.
fn server_url(canonical_host: &str) -> String {
    if canonical_host == "docker.io" {
        DOCKER_HUB_SERVER.to_string()
    } else {
        canonical_host.to_string()
    }
}

fn decode_entry(
    file: &Path,
    key: &str,
    entry: &Map<String, Value>,
) -> Result<Option<Credentials>, AuthError> {
    let invalid = |reason: String| AuthError::InvalidEntry {
        path: file.to_path_buf(),
        server: key.to_string(),
        reason,
    };
    let field = |name: &str| -> Result<&str, AuthError> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(invalid(format!("{name:?} is not a string"))),
        }
    };
    let token = field("identitytoken")?;
    if !token.is_empty() {
        return Ok(Some(Credentials::IdentityToken(token.to_string())));
    }
    let auth = field("auth")?.trim();
    let (username, password) = if auth.is_empty() {
        (
            field("username")?.to_string(),
            field("password")?.to_string(),
        )
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let decoded = engines
            .iter()
            .find_map(|e| e.decode(auth).ok())
            .ok_or_else(|| invalid("\"auth\" is not base64".to_string()))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid("\"auth\" is not base64 of UTF-8 text".to_string()))?;
        let Some((u, p)) = decoded.split_once(':') else {
            return Err(invalid(
                "\"auth\" is not base64 of user:password".to_string(),
            ));
        };
        (u.to_string(), p.trim_end_matches('\0').to_string())
    };
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::Basic { username, password }))
}

/// The top-level object of the file; a missing or blank file is an empty object.
fn read_config_value(file: &Path) -> Result<Map<String, Value>, AuthError> {
    let bytes = match fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(source) => {
            return Err(AuthError::Read {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthError::Parse {
            path: file.to_path_buf(),
            reason: "the top level is not an object".to_string(),
        }),
        Err(e) => Err(AuthError::Parse {
            path: file.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// temp file (0600) in the target's directory → fsync → rename → fsync dir. A symlinked
/// `config.json` is followed, so the link stays and its target is replaced.
fn write_config_atomic(dir: &Path, file: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthError::Write { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err(dir))?;
    let target = match fs::symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(file).map_err(write_err(file))?,
        _ => file.to_path_buf(),
    };
    let target_dir = target.parent().unwrap_or(dir).to_path_buf();

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = target_dir.join(format!(
        ".{CONFIG_FILE}.{}.{nanos}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(AuthError::Write {
            path: target,
            source,
        });
    }
    fs::File::open(&target_dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err(&target_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    fn write(dir: &Path, json: &str) {
        fs::write(dir.join(CONFIG_FILE), json).unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn load(dir: &Path) -> DockerConfig {
        DockerConfig::load(dir)
            .unwrap_or_else(|e| panic!("load: {e}"))
            .with_search_path(None)
    }

    fn creds(c: &DockerConfig, registry: &str) -> Option<Credentials> {
        c.credentials_for(registry)
            .unwrap_or_else(|e| panic!("{registry}: {e}"))
    }

    fn read_json(dir: &Path) -> Value {
        let bytes = fs::read(dir.join(CONFIG_FILE)).unwrap_or_else(|e| panic!("read: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("json: {e}"))
    }

    #[test]
    fn config_dir_from_docker_config_else_home() {
        let d = default_config_dir(Some(OsStr::new("/cfg")), Some(OsStr::new("/home/u")));
        assert_eq!(d, Some(PathBuf::from("/cfg")));
        let d = default_config_dir(Some(OsStr::new("")), Some(OsStr::new("/home/u")));
        assert_eq!(d, Some(PathBuf::from("/home/u/.docker")));
        assert_eq!(default_config_dir(None, None), None);
    }

    #[test]
    fn missing_or_blank_file_is_anonymous() {
        let tmp = tempdir();
        let missing = tmp.path().join("nope");
        assert_eq!(creds(&load(&missing), "docker.io"), None);
        write(tmp.path(), " \n");
        assert_eq!(creds(&load(tmp.path()), "localhost:5000"), None);
    }

    #[test]
    fn auths_entries_match_by_host_and_docker_hub_aliases() {
        let tmp = tempdir();
        write(
            tmp.path(),
            &format!(
                r#"{{
                "auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{hub}"}},
                    "http://localhost:5000/v2/": {{"auth": "{local}"}},
                    "registry.example.com": {{"username": "u3", "password": "p3"}},
                    "tok.example.com": {{"auth": "{tokuser}", "identitytoken": "refresh"}},
                    "empty.example.com": {{}},
                    "quay.io": {{"auth": "{nopad}"}}
                }},
                "psFormat": "table"
            }}"#,
                hub = b64("hubuser:pa:ss"),
                local = b64("lu:lp"),
                tokuser = b64("someone:"),
                nopad = b64("q:pw").trim_end_matches('='),
            ),
        );
        let c = load(tmp.path());
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            DOCKER_HUB_SERVER,
        ] {
            assert_eq!(creds(&c, hub), Some(basic("hubuser", "pa:ss")), "{hub}");
        }
        assert_eq!(creds(&c, "localhost:5000"), Some(basic("lu", "lp")));
        assert_eq!(creds(&c, "localhost:5001"), None);
        assert_eq!(creds(&c, "registry.example.com"), Some(basic("u3", "p3")));
        assert_eq!(
            creds(&c, "tok.example.com"),
            Some(Credentials::IdentityToken("refresh".to_string()))
        );
        assert_eq!(creds(&c, "empty.example.com"), None);
        assert_eq!(creds(&c, "quay.io"), Some(basic("q", "pw")));
    }

    #[test]
    fn exact_server_key_wins_over_same_host() {
        let tmp = tempdir();
        write(
            tmp.path(),
            &format!(
                r#"{{"auths": {{"docker.io": {{"auth": "{a}"}}, "https://index.docker.io/v1/": {{"auth": "{b}"}}}}}}"#,
                a = b64("alias:1"),
                b = b64("exact:2"),
            ),
        );
        assert_eq!(
            creds(&load(tmp.path()), "docker.io"),
            Some(basic("exact", "2"))
        );
    }

    #[test]
    fn broken_files_and_entries_are_errors_naming_the_file() {
        let tmp = tempdir();
        let file = tmp.path().join(CONFIG_FILE);
        let cases = [
            ("{not json", "is not a valid docker config file"),
            ("[]", "the top level is not an object"),
            (r#"{"auths": 3}"#, "\"auths\" is not an object"),
            (
                r#"{"credsStore": "../evil"}"#,
                "invalid credential helper name",
            ),
            (r#"{"credHelpers": {"a": 1}}"#, "is not a string"),
        ];
        for (json, want) in cases {
            write(tmp.path(), json);
            let msg = DockerConfig::load(tmp.path())
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string());
            assert!(msg.contains(want), "{json}: {msg}");
            assert!(msg.contains(&file.display().to_string()), "{json}: {msg}");
        }
        write(tmp.path(), r#"{"auths": {"x.io": {"auth": "%%%"}}}"#);
        let err = load(tmp.path()).credentials_for("x.io");
        assert!(
            matches!(&err, Err(AuthError::InvalidEntry { server, .. }) if server == "x.io"),
            "{err:?}"
        );
        write(
            tmp.path(),
            &format!(
                r#"{{"auths": {{"x.io": {{"auth": "{}"}}}}}}"#,
                b64("nocolon")
            ),
        );
        assert!(load(tmp.path()).credentials_for("x.io").is_err());
    }

    #[test]
    fn store_and_erase_keep_the_rest_of_the_file() {
        let tmp = tempdir();
        let dir = tmp.path().join("docker");
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let original = r#"{
            "auths": {"other.io": {"auth": "b3RoZXI6cHc=", "email": "x@y"}},
            "proxies": {"default": {"httpProxy": "http://p:3128"}},
            "psFormat": "table {{.ID}}",
            "experimental": "enabled"
        }"#;
        write(&dir, original);
        let mut c = load(&dir);
        c.store("docker.io", &basic("me", "secret"))
            .unwrap_or_else(|e| panic!("store: {e}"));
        c.store("localhost:5000", &Credentials::IdentityToken("t0k".into()))
            .unwrap_or_else(|e| panic!("store: {e}"));
        // The in-memory config and a fresh load both see the new credentials.
        assert_eq!(
            creds(&c, "registry-1.docker.io"),
            Some(basic("me", "secret"))
        );
        let fresh = load(&dir);
        assert_eq!(creds(&fresh, "docker.io"), Some(basic("me", "secret")));
        assert_eq!(
            creds(&fresh, "localhost:5000"),
            Some(Credentials::IdentityToken("t0k".into()))
        );
        assert_eq!(creds(&fresh, "other.io"), Some(basic("other", "pw")));

        let mut want: Value = serde_json::from_str(original).unwrap_or_else(|e| panic!("{e}"));
        want["auths"][DOCKER_HUB_SERVER] = serde_json::json!({"auth": b64("me:secret")});
        want["auths"]["localhost:5000"] = serde_json::json!({"identitytoken": "t0k"});
        assert_eq!(read_json(&dir), want);

        let mode = fs::metadata(dir.join(CONFIG_FILE))
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(
            names,
            vec![OsString::from(CONFIG_FILE)],
            "no temp file left"
        );

        // Overwriting keeps the entry's other fields.
        c.store("other.io", &basic("new", "pw2"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_json(&dir)["auths"]["other.io"],
            serde_json::json!({"email": "x@y", "auth": b64("new:pw2")})
        );

        // Logout removes every key for the host, aliases included.
        write(
            &dir,
            &format!(
                r#"{{"auths": {{"docker.io": {{"auth": "{a}"}}, "https://index.docker.io/v1/": {{}}, "other.io": {{}}}}, "k": 1}}"#,
                a = b64("u:p")
            ),
        );
        let mut c = load(&dir);
        assert!(
            c.erase("registry-1.docker.io")
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(creds(&c, "docker.io"), None);
        assert_eq!(
            read_json(&dir),
            serde_json::json!({"auths": {"other.io": {}}, "k": 1})
        );
        assert!(!c.erase("docker.io").unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn store_creates_the_directory_and_follows_a_symlinked_file() {
        let tmp = tempdir();
        let dir = tmp.path().join("new").join(".docker");
        let mut c = load(&dir);
        c.store("ghcr.io", &basic("a", "b"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mode = fs::metadata(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(creds(&load(&dir), "ghcr.io"), Some(basic("a", "b")));

        let real = tmp.path().join("real.json");
        fs::write(&real, r#"{"keep": true}"#).unwrap_or_else(|e| panic!("{e}"));
        let linked = tmp.path().join("linked");
        fs::create_dir(&linked).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&real, linked.join(CONFIG_FILE))
            .unwrap_or_else(|e| panic!("{e}"));
        load(&linked)
            .store("ghcr.io", &basic("c", "d"))
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = fs::symlink_metadata(linked.join(CONFIG_FILE)).unwrap_or_else(|e| panic!("{e}"));
        assert!(meta.file_type().is_symlink());
        let bytes = fs::read(&real).unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["keep"], Value::Bool(true));
        assert_eq!(v["auths"]["ghcr.io"]["auth"], Value::String(b64("c:d")));
    }

    #[test]
    fn registry_auth_for_oci_client() {
        assert_eq!(to_registry_auth(&None), RegistryAuth::Anonymous);
        assert_eq!(
            to_registry_auth(&Some(basic("u", "p"))),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            to_registry_auth(&Some(Credentials::IdentityToken("t".into()))),
            RegistryAuth::Bearer("t".into())
        );
        assert!(!format!("{:?}", basic("u", "hunter2")).contains("hunter2"));
    }

    /// A credential helper speaking Docker's protocol, keeping one file per server URL in
    /// `state`, logging `action input` lines to `state/log`.
    fn fake_helper(bin: &Path, state: &Path) {
        let script = format!(
            r#"#!/bin/sh
state='{state}'
input=$(cat)
printf '%s %s\n' "$1" "$input" >> "$state/log"
case "$input" in *broken*) echo "keychain is locked" >&2; exit 3;; esac
case "$1" in
get)
    f="$state/$(printf %s "$input" | tr -c 'A-Za-z0-9' _)"
    if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi;;
store)
    server=$(printf %s "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf %s "$input" > "$state/$(printf %s "$server" | tr -c 'A-Za-z0-9' _)";;
erase)
    f="$state/$(printf %s "$input" | tr -c 'A-Za-z0-9' _)"
    if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi;;
*) exit 2;;
esac
"#,
            state = state.display()
        );
        let path = bin.join("docker-credential-test");
        fs::write(&path, script).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn credential_helpers_get_store_erase() {
        let tmp = tempdir();
        let (bin, state, cfg) = (
            tmp.path().join("bin"),
            tmp.path().join("state"),
            tmp.path().join("cfg"),
        );
        for d in [&bin, &state, &cfg] {
            fs::create_dir(d).unwrap_or_else(|e| panic!("{e}"));
        }
        fake_helper(&bin, &state);
        let mut search = OsString::from(bin.as_os_str());
        if let Some(p) = std::env::var_os("PATH") {
            search.push(":");
            search.push(p);
        }
        write(
            &cfg,
            &format!(
                r#"{{"credsStore": "test",
                    "credHelpers": {{"plain.example.com": "", "broken.example.com": "test", "missing.example.com": "absent"}},
                    "auths": {{"plain.example.com": {{"auth": "{a}"}}, "localhost:5000": {{"auth": "{a}"}}}}}}"#,
                a = b64("file:user")
            ),
        );
        let mut c = DockerConfig::load(&cfg)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_search_path(Some(search));

        // The store's answer is final: "not found" is anonymous even with a file entry.
        assert_eq!(c.helper_for("localhost:5000"), Some("test"));
        assert_eq!(creds(&c, "localhost:5000"), None);
        // An empty credHelpers entry sends that registry to the file.
        assert_eq!(c.helper_for("plain.example.com"), None);
        assert_eq!(creds(&c, "plain.example.com"), Some(basic("file", "user")));

        c.store("docker.io", &basic("hub", "pw"))
            .unwrap_or_else(|e| panic!("{e}"));
        c.store("localhost:5000", &Credentials::IdentityToken("idt".into()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(creds(&c, "registry-1.docker.io"), Some(basic("hub", "pw")));
        assert_eq!(
            creds(&c, "localhost:5000"),
            Some(Credentials::IdentityToken("idt".into()))
        );
        // The file keeps an empty entry per server and no secret.
        let json = read_json(&cfg);
        assert_eq!(json["auths"][DOCKER_HUB_SERVER], serde_json::json!({}));
        assert_eq!(json["auths"]["localhost:5000"], serde_json::json!({}));
        assert_eq!(json["credsStore"], Value::String("test".into()));

        assert!(c.erase("docker.io").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(creds(&c, "docker.io"), None);
        assert!(read_json(&cfg)["auths"].get(DOCKER_HUB_SERVER).is_none());
        assert!(!c.erase("docker.io").unwrap_or_else(|e| panic!("{e}")));

        let log = fs::read_to_string(state.join("log")).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "get localhost:5000");
        assert_eq!(
            lines[1],
            format!(
                r#"store {{"ServerURL":"{DOCKER_HUB_SERVER}","Username":"hub","Secret":"pw"}}"#
            )
        );
        assert_eq!(
            lines[2],
            r#"store {"ServerURL":"localhost:5000","Username":"<token>","Secret":"idt"}"#
        );
        assert!(lines.contains(&format!("erase {DOCKER_HUB_SERVER}").as_str()));

        match c.credentials_for("broken.example.com") {
            Err(AuthError::HelperFailed {
                helper,
                action,
                server,
                message,
            }) => {
                assert_eq!(
                    (helper.as_str(), action, server.as_str(), message.as_str()),
                    ("test", "get", "broken.example.com", "keychain is locked")
                );
            }
            other => panic!("{other:?}"),
        }
        match c.credentials_for("missing.example.com") {
            Err(AuthError::HelperNotFound { helper, server, .. }) => {
                assert_eq!(
                    (helper.as_str(), server.as_str()),
                    ("absent", "missing.example.com")
                );
            }
            other => panic!("{other:?}"),
        }
        // Without a search path no helper is run.
        let c = c.with_search_path(None);
        assert!(matches!(
            c.credentials_for("docker.io"),
            Err(AuthError::HelperNotFound { .. })
        ));
    }

    #[test]
    fn helper_output_that_is_not_json_is_an_error() {
        let tmp = tempdir();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap_or_else(|e| panic!("{e}"));
        let path = bin.join("docker-credential-junk");
        fs::write(&path, "#!/bin/sh\ncat >/dev/null\necho not-json\n")
            .unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        write(tmp.path(), r#"{"credsStore": "junk"}"#);
        let mut search = bin.into_os_string();
        if let Some(p) = std::env::var_os("PATH") {
            search.push(":");
            search.push(p);
        }
        let c = DockerConfig::load(tmp.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .with_search_path(Some(search));
        assert!(matches!(
            c.credentials_for("quay.io"),
            Err(AuthError::HelperOutput { .. })
        ));
    }
}
