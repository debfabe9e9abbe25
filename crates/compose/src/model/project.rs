//! The top level: [`Project`], and the secret, config, include and model definitions.

use std::collections::BTreeMap;

use super::{External, Mapping, ServiceConfig, nullable_mapping, string_or_list};
use crate::model::{NetworkConfig, VolumeConfig};

model! {
    /// A compose project (compose-go `Project`). `services`, `networks`, … are Go maps in
    /// compose-go, so they print sorted by name.
    pub struct Project [extensions] {
        /// The project name.
        pub name: String,
        /// Obsolete; accepted and never printed (the loader warns about it).
        [skip] pub version: String,
        /// `include:` entries; the loader has applied them by the time the model is built, so
        /// they are accepted and not printed.
        [skip] pub include: Vec<IncludeConfig>,
        /// Services by name (printed even when empty).
        [keep] pub services: BTreeMap<String, ServiceConfig>,
        /// Networks by name (`null` means defaults).
        pub networks: BTreeMap<String, Option<NetworkConfig>>,
        /// Volumes by name (`null` means defaults).
        pub volumes: BTreeMap<String, Option<VolumeConfig>>,
        /// Secrets by name.
        pub secrets: BTreeMap<String, SecretConfig>,
        /// Configs by name.
        pub configs: BTreeMap<String, ConfigObjConfig>,
        /// AI models by name.
        pub models: BTreeMap<String, ModelConfig>,
    }
}

impl Project {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.get(name)
    }

    /// Names of all services, sorted.
    pub fn service_names(&self) -> Vec<&str> {
        self.services.keys().map(String::as_str).collect()
    }
}

model! {
    /// A secret definition (compose-go `SecretConfig`). `content` is never printed, as in
    /// compose-go, so that secrets do not leak into `config` output.
    pub struct SecretConfig [extensions] {
        /// The name in the engine.
        pub name: String,
        /// A file holding the value.
        pub file: String,
        /// An environment variable holding the value.
        pub environment: String,
        /// The value itself (not printed).
        [skip] pub content: String,
        /// Whether it exists already.
        pub external: External,
        /// Labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// A secret driver.
        pub driver: String,
        /// Options of the driver.
        #[serde(deserialize_with = "nullable_mapping")]
        pub driver_opts: Mapping,
        /// A template driver.
        pub template_driver: String,
    }
}

model! {
    /// A config definition (compose-go `ConfigObjConfig`).
    pub struct ConfigObjConfig [extensions] {
        /// The name in the engine.
        pub name: String,
        /// A file holding the content.
        pub file: String,
        /// An environment variable holding the content.
        pub environment: String,
        /// The content itself.
        pub content: String,
        /// Whether it exists already.
        pub external: External,
        /// Labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// A config driver.
        pub driver: String,
        /// Options of the driver.
        #[serde(deserialize_with = "nullable_mapping")]
        pub driver_opts: Mapping,
        /// A template driver.
        pub template_driver: String,
    }
}

model! {
    /// One `include:` entry (compose-go `IncludeConfig`), long syntax.
    pub struct IncludeConfig {
        /// The compose file(s) to include.
        #[serde(deserialize_with = "string_or_list")]
        pub path: Vec<String>,
        /// Their project directory.
        pub project_directory: String,
        /// Their env files.
        #[serde(deserialize_with = "string_or_list")]
        pub env_file: Vec<String>,
    }
}

model! {
    /// A top-level `models:` entry (compose-go `ModelConfig`).
    pub struct ModelConfig [extensions] {
        /// The name.
        pub name: String,
        /// The model reference.
        pub model: String,
        /// The context size.
        pub context_size: i64,
        /// Flags for the runtime.
        pub runtime_flags: Vec<String>,
    }
}
