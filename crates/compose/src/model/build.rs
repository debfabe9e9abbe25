//! `build:` of a service.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{
    HostsList, Mapping, MappingWithEquals, OmitEmpty, ServiceSecretConfig, Ulimit,
    nullable_mapping, string_or_list,
};
use crate::units::ByteSize;

model! {
    /// How to build the service's image (compose-go `BuildConfig`), long syntax.
    pub struct BuildConfig [extensions] {
        /// The build context (a directory or URL).
        pub context: String,
        /// The Dockerfile, relative to the context.
        pub dockerfile: String,
        /// An inline Dockerfile.
        pub dockerfile_inline: String,
        /// Privileges the build may use.
        pub entitlements: Vec<String>,
        /// Build arguments (null: from the environment).
        pub args: MappingWithEquals,
        /// Provenance attestation.
        pub provenance: String,
        /// SBOM attestation.
        pub sbom: String,
        /// SSH agent sockets or keys.
        pub ssh: SshConfig,
        /// Image labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// Cache sources.
        #[serde(deserialize_with = "string_or_list")]
        pub cache_from: Vec<String>,
        /// Cache destinations.
        #[serde(deserialize_with = "string_or_list")]
        pub cache_to: Vec<String>,
        /// Build without cache.
        pub no_cache: bool,
        /// Stages built without cache.
        #[serde(deserialize_with = "string_or_list")]
        pub no_cache_filter: Vec<String>,
        /// Named extra contexts.
        #[serde(deserialize_with = "nullable_mapping")]
        pub additional_contexts: Mapping,
        /// Always pull base images.
        pub pull: bool,
        /// Extra `/etc/hosts` entries during the build.
        pub extra_hosts: HostsList,
        /// Isolation technology (Windows).
        pub isolation: String,
        /// Network for RUN instructions.
        pub network: String,
        /// The stage to build.
        pub target: String,
        /// Secrets the build may use.
        pub secrets: Vec<ServiceSecretConfig>,
        /// `/dev/shm` size.
        pub shm_size: ByteSize,
        /// Extra image tags.
        #[serde(deserialize_with = "string_or_list")]
        pub tags: Vec<String>,
        /// Ulimits of build containers.
        pub ulimits: BTreeMap<String, Ulimit>,
        /// Target platforms.
        #[serde(deserialize_with = "string_or_list")]
        pub platforms: Vec<String>,
        /// Run the build privileged.
        pub privileged: bool,
    }
}

/// One `ssh:` entry: an id and an optional path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshKey {
    /// The id (`default` for the agent).
    pub id: String,
    /// A socket or key path; empty for the default agent.
    pub path: String,
}

/// `build.ssh` (compose-go `SSHConfig`): read from the canonical mapping `id: path|null` (or
/// the list `id[=path]`), printed as compose-go prints it: `id` or `id: path` strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshConfig(pub Vec<SshKey>);

impl OmitEmpty for SshConfig {
    fn is_omitted(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for SshConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|k| {
            if k.path.is_empty() {
                k.id.clone()
            } else {
                format!("{}: {}", k.id, k.path)
            }
        }))
    }
}

impl<'de> Deserialize<'de> for SshConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SshConfig, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SshConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of id to path")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SshConfig, A::Error> {
                let mut keys = Vec::new();
                while let Some((id, path)) = map.next_entry::<String, Option<String>>()? {
                    keys.push(SshKey {
                        id,
                        path: path.unwrap_or_default(),
                    });
                }
                Ok(SshConfig(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SshConfig, A::Error> {
                let mut keys = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    let (id, path) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                    keys.push(SshKey {
                        id: id.to_string(),
                        path: path.to_string(),
                    });
                }
                Ok(SshConfig(keys))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SshConfig, E> {
                let (id, path) = s.split_once('=').unwrap_or((s, ""));
                Ok(SshConfig(vec![SshKey {
                    id: id.to_string(),
                    path: path.to_string(),
                }]))
            }
        }
        d.deserialize_any(V)
    }
}
