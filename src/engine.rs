//! The binary's handle on the engine: the state root from `--root`/`BERTH_ROOT`, a registry
//! client that allows plain HTTP for loopback registries and `BERTH_INSECURE_REGISTRIES` and
//! pulls Docker Hub images through `BERTH_REGISTRY_MIRRORS` (comma separated, like Docker's
//! `registry-mirrors`), and credentials from Docker's `config.json` (`DOCKER_CONFIG` or
//! `~/.docker`).

use anyhow::Context;
use berth_engine::auth::{self, DockerConfig};
use berth_engine::layout::Stores;
use berth_engine::pull::{PullOptions, Pulled, pull};
use berth_engine::reference::Reference;
use berth_engine::registry::{Registry, RegistryOptions, parse_mirror};

use crate::cli::Settings;

/// Stores, registry client and credentials, opened once per command.
pub struct Engine {
    pub stores: Stores,
    registry_options: RegistryOptions,
    /// Made on first use: building the client loads the TLS root store (~15 ms), which
    /// commands that never reach a registry (`container run` of a local image) shouldn't pay.
    registry: std::sync::OnceLock<Registry>,
    docker_config_dir: std::path::PathBuf,
}

impl Engine {
    pub fn open(settings: &Settings) -> anyhow::Result<Engine> {
        let stores = Stores::open(&settings.root).with_context(|| {
            format!(
                "failed to open berth's state directory {}",
                settings.root.display()
            )
        })?;
        let env = &settings.project.environment;
        let list = |name: &str| -> Vec<String> {
            env.get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let insecure = list("BERTH_INSECURE_REGISTRIES");
        let mirrors = list("BERTH_REGISTRY_MIRRORS");
        for mirror in &mirrors {
            parse_mirror(mirror).context("BERTH_REGISTRY_MIRRORS")?;
        }
        // No DOCKER_CONFIG and no HOME: no credentials file (a missing file means anonymous).
        let docker_config_dir = auth::default_config_dir(
            env.get("DOCKER_CONFIG").map(std::ffi::OsStr::new),
            env.get("HOME").map(std::ffi::OsStr::new),
        )
        .unwrap_or_else(|| "/nonexistent/.docker".into());
        Ok(Engine {
            stores,
            registry_options: RegistryOptions { insecure, mirrors },
            registry: std::sync::OnceLock::new(),
            docker_config_dir,
        })
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        self.registry
            .get_or_init(|| Registry::new(self.registry_options.clone()))
    }

    /// Docker's credentials file (read at each use: `login` may have changed it).
    pub fn docker_config(&self) -> anyhow::Result<DockerConfig> {
        Ok(DockerConfig::load(&self.docker_config_dir)?)
    }

    /// Pulls one reference with the credentials stored for its registry.
    pub async fn pull(
        &self,
        reference: &Reference,
        progress: Option<berth_engine::pull::Progress<'_>>,
    ) -> anyhow::Result<Pulled> {
        let creds = tokio::task::block_in_place(|| {
            self.docker_config()?
                .credentials_for(reference.registry())
                .map_err(anyhow::Error::from)
        })?;
        // An identity token is a refresh token: exchanged for an access token first.
        let registry_auth = match &creds {
            Some(auth::Credentials::IdentityToken(token)) => self
                .registry()
                .exchange_identity_token(reference, token)
                .await
                .with_context(|| format!("failed to pull {}", reference.familiar_string()))?,
            _ => auth::to_registry_auth(&creds),
        };
        let opts = PullOptions {
            auth: registry_auth,
            progress,
            ..PullOptions::default()
        };
        pull(&self.stores, self.registry(), reference, &opts)
            .await
            .with_context(|| format!("failed to pull {}", reference.familiar_string()))
    }
}

/// A multi-threaded runtime for one command (the engine's blocking store work runs in
/// `block_in_place`, which needs one).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}
