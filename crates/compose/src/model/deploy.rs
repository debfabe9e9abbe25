//! `deploy:` of a service, and device requests (`gpus`, resource `devices`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{Mapping, OmitEmpty, nullable_mapping};
use crate::units::{ByteSize, Duration};

model! {
    /// Deployment settings (compose-go `DeployConfig`).
    pub struct DeployConfig [extensions] {
        /// `replicated` or `global`.
        pub mode: String,
        /// Number of containers.
        pub replicas: Option<i64>,
        /// Labels of the service (not of its containers).
        #[serde(deserialize_with = "nullable_mapping")]
        pub labels: Mapping,
        /// How updates roll out.
        pub update_config: Option<UpdateConfig>,
        /// How rollbacks roll out.
        pub rollback_config: Option<UpdateConfig>,
        /// Limits and reservations.
        pub resources: Resources,
        /// When to restart containers.
        pub restart_policy: Option<RestartPolicy>,
        /// Placement constraints.
        pub placement: Placement,
        /// `vip` or `dnsrr`.
        pub endpoint_mode: String,
    }
}

model! {
    /// `update_config` / `rollback_config` (compose-go `UpdateConfig`).
    pub struct UpdateConfig [extensions] {
        /// Containers updated at once.
        pub parallelism: Option<u64>,
        /// Wait between groups.
        pub delay: Duration,
        /// `continue`, `rollback` or `pause`.
        pub failure_action: String,
        /// How long to watch for failure.
        pub monitor: Duration,
        /// Failure rate tolerated.
        pub max_failure_ratio: f32,
        /// `stop-first` or `start-first`.
        pub order: String,
    }
}

model! {
    /// `resources:` (compose-go `Resources`).
    pub struct Resources [extensions] {
        /// Upper limits.
        pub limits: Option<Resource>,
        /// Guaranteed reservations.
        pub reservations: Option<Resource>,
    }
}

model! {
    /// One of `limits` / `reservations` (compose-go `Resource`).
    pub struct Resource [extensions] {
        /// CPUs (a fraction).
        pub cpus: f32,
        /// Memory.
        pub memory: ByteSize,
        /// Process count.
        pub pids: i64,
        /// Devices (reservations).
        pub devices: Vec<DeviceRequest>,
        /// User-defined resources.
        pub generic_resources: Vec<GenericResource>,
    }
}

model! {
    /// A user-defined resource (compose-go `GenericResource`).
    pub struct GenericResource [extensions] {
        /// An integer amount of a kind.
        pub discrete_resource_spec: Option<DiscreteGenericResource>,
    }
}

model! {
    /// compose-go `DiscreteGenericResource` (both keys always printed).
    pub struct DiscreteGenericResource [extensions] {
        /// The kind (`GPU`, `SSD`, …).
        [keep] pub kind: String,
        /// The amount.
        [keep] pub value: i64,
    }
}

model! {
    /// `restart_policy:` (compose-go `RestartPolicy`).
    pub struct RestartPolicy [extensions] {
        /// `none`, `on-failure` or `any`.
        pub condition: String,
        /// Wait between attempts.
        pub delay: Option<Duration>,
        /// Attempts before giving up.
        pub max_attempts: Option<u64>,
        /// How long to wait before deciding a restart worked.
        pub window: Option<Duration>,
    }
}

model! {
    /// `placement:` (compose-go `Placement`).
    pub struct Placement [extensions] {
        /// Node constraints.
        pub constraints: Vec<String>,
        /// Spread preferences.
        pub preferences: Vec<PlacementPreferences>,
        /// Replicas per node.
        pub max_replicas_per_node: u64,
    }
}

model! {
    /// One placement preference (compose-go `PlacementPreferences`).
    pub struct PlacementPreferences [extensions] {
        /// Spread over this node label.
        pub spread: String,
    }
}

model! {
    /// A device request (compose-go `DeviceRequest`): `gpus`, resource `devices`.
    pub struct DeviceRequest [extensions] {
        /// Capabilities (`gpu`, …).
        pub capabilities: Vec<String>,
        /// The driver.
        pub driver: String,
        /// How many (`all` is -1).
        pub count: DeviceCount,
        /// Specific device ids.
        pub device_ids: Vec<String>,
        /// Driver options.
        #[serde(deserialize_with = "nullable_mapping")]
        pub options: Mapping,
    }
}

/// A device count (compose-go `DeviceCount`): a number, or `all` which is -1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCount(pub i64);

impl DeviceCount {
    /// `all` devices.
    pub const ALL: DeviceCount = DeviceCount(-1);
}

impl OmitEmpty for DeviceCount {
    fn is_omitted(&self) -> bool {
        self.0 == 0
    }
}

impl Serialize for DeviceCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DeviceCount, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeviceCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"all\"")
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<DeviceCount, E> {
                Ok(DeviceCount(i))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DeviceCount, E> {
                if s.eq_ignore_ascii_case("all") {
                    return Ok(DeviceCount::ALL);
                }
                s.parse().map(DeviceCount).map_err(|_| {
                    E::custom(format!(
                        "invalid value {s:?}, the only value allowed is 'all' or a number"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}
