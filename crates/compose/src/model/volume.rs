//! Top-level `volumes:` definitions.

use super::{External, Mapping, nullable_mapping};

model! {
    /// A volume (compose-go `VolumeConfig`).
    pub struct VolumeConfig [extensions] {
        /// The name in the engine.
        pub name: String,
        /// The driver.
        pub driver: String,
        /// Options of the driver.
        #[serde(deserialize_with = "nullable_mapping")]
        pub driver_opts: Mapping,
        /// Whether it exists already.
        pub external: External,
        /// Labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
    }
}
