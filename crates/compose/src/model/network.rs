//! Top-level `networks:` definitions.

use super::{External, Mapping, nullable_mapping};

model! {
    /// A network (compose-go `NetworkConfig`).
    pub struct NetworkConfig [extensions] {
        /// The name in the engine.
        pub name: String,
        /// The driver.
        pub driver: String,
        /// Options of the driver.
        #[serde(deserialize_with = "nullable_mapping")]
        pub driver_opts: Mapping,
        /// Address management.
        pub ipam: IpamConfig,
        /// Whether it exists already.
        pub external: External,
        /// No outside connectivity.
        pub internal: bool,
        /// Standalone containers may attach.
        pub attachable: bool,
        /// Labels.
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// IPv4 on or off.
        pub enable_ipv4: Option<bool>,
        /// IPv6 on or off.
        pub enable_ipv6: Option<bool>,
    }
}

model! {
    /// `ipam:` of a network (compose-go `IPAMConfig`).
    pub struct IpamConfig [extensions] {
        /// The IPAM driver.
        pub driver: String,
        /// Address pools.
        pub config: Vec<IpamPool>,
        /// Options of the driver.
        #[serde(deserialize_with = "nullable_mapping")]
        pub options: Mapping,
    }
}

model! {
    /// One address pool (compose-go `IPAMPool`).
    pub struct IpamPool [extensions] {
        /// The subnet, CIDR.
        pub subnet: String,
        /// The gateway.
        pub gateway: String,
        /// The range to allocate from.
        pub ip_range: String,
        /// Reserved addresses by name.
        #[serde(deserialize_with = "nullable_mapping")]
        pub aux_addresses: Mapping,
    }
}
