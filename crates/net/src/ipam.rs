//! IPv4 address management: a small CIDR type ([`IpNet`]), Docker-like default address
//! pools ([`default_pools`]), picking a free subnet for a new network ([`allocate_subnet`]),
//! reading the host's routes so that subnet avoids them ([`host_routes`]), a network's
//! validated `ipam.config` ([`SubnetConfig`]) and per-network address allocation persisted in
//! a JSON file ([`Allocator`]). No netlink here: callers apply the results.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CIDR string that could not be parsed, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cidr {input:?}: {reason}")]
pub struct CidrError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CidrError {
    fn new(input: impl fmt::Display, reason: impl Into<String>) -> CidrError {
        CidrError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// Why an IPAM operation failed; each variant names the network, subnet, address or file
/// involved.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A CIDR did not parse.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// An address pool is unusable (its split size is outside the base or too small).
    #[error("invalid address pool {base} split into /{size}: {reason}")]
    InvalidPool {
        /// The pool's base network.
        base: IpNet,
        /// The requested size of the subnets it is split into.
        size: u8,
        /// What is wrong.
        reason: String,
    },
    /// Every subnet of the pools overlaps a berth network or a host route.
    #[error("no free subnet in address pools {pools}: {conflicts}")]
    NoFreeSubnet {
        /// The pools searched, e.g. `172.17.0.0/16 (/16s), 192.168.0.0/16 (/20s)`.
        pools: String,
        /// The berth networks and host routes that were in the way.
        conflicts: String,
    },
    /// An `ipam.config` entry is inconsistent.
    #[error("invalid ipam config for subnet {subnet}: {reason}")]
    InvalidConfig {
        /// The subnet as given.
        subnet: String,
        /// What is wrong.
        reason: String,
    },
    /// A route table line could not be parsed.
    #[error("cannot parse route table {}, line {line}: {reason}", path.display())]
    RouteTable {
        /// The route table read (`/proc/net/route`).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The network is not in the allocation file.
    #[error("network {network} has no ipam allocation")]
    UnknownNetwork {
        /// The network's name.
        network: String,
    },
    /// The network exists with another subnet configuration.
    #[error("network {network} already has subnet {existing}, not {requested}")]
    NetworkExists {
        /// The network's name.
        network: String,
        /// Its current configuration's subnet.
        existing: IpNet,
        /// The subnet asked for.
        requested: IpNet,
    },
    /// The requested subnet overlaps another berth network's.
    #[error(
        "subnet {subnet} of network {network} overlaps subnet {other_subnet} of network {other}"
    )]
    SubnetInUse {
        /// The network being created.
        network: String,
        /// Its requested subnet.
        subnet: IpNet,
        /// The existing network in the way.
        other: String,
        /// That network's subnet.
        other_subnet: IpNet,
    },
    /// No address is left in the network's range.
    #[error("no free address in network {network} (range {range})")]
    AddressesExhausted {
        /// The network's name.
        network: String,
        /// The range allocated from (`ip_range` or the subnet).
        range: IpNet,
    },
    /// A static address outside the network's subnet.
    #[error("address {addr} is not in subnet {subnet} of network {network}")]
    StaticOutside {
        /// The network's name.
        network: String,
        /// The address asked for.
        addr: Ipv4Addr,
        /// The network's subnet.
        subnet: IpNet,
    },
    /// A static address that is the network, broadcast or gateway address.
    #[error("address {addr} is the {what} address of network {network}")]
    StaticReserved {
        /// The network's name.
        network: String,
        /// The address asked for.
        addr: Ipv4Addr,
        /// `network`, `broadcast` or `gateway`.
        what: &'static str,
    },
    /// A static address that an `aux_addresses` entry of the network reserves.
    #[error("address {addr} is reserved as auxiliary address {name:?} of network {network}")]
    StaticAux {
        /// The network's name.
        network: String,
        /// The address asked for.
        addr: Ipv4Addr,
        /// The entry's name.
        name: String,
    },
    /// A static address another container holds.
    #[error("address {addr} of network {network} is in use by container {container}")]
    AddressInUse {
        /// The network's name.
        network: String,
        /// The address asked for.
        addr: Ipv4Addr,
        /// The container holding it.
        container: String,
    },
    /// The container already holds a different address on the network.
    #[error(
        "container {container} already has address {current} on network {network}, not {requested}"
    )]
    ContainerHasAddress {
        /// The network's name.
        network: String,
        /// The container.
        container: String,
        /// The address it holds.
        current: Ipv4Addr,
        /// The address asked for.
        requested: Ipv4Addr,
    },
    /// An I/O operation (`op`: "read", "lock", "rename", …) on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause (with its errno).
        #[source]
        source: io::Error,
    },
    /// The allocation file exists but does not parse; it is left as it is.
    #[error("corrupt ipam state file {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The allocation file was written by a berth with another format.
    #[error("ipam state file {} has unsupported version {version}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> IpamError {
    IpamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// IpNet
// ---------------------------------------------------------------------------------------

/// An IPv4 network: a network address (host bits zero) and a prefix length, written
/// `a.b.c.d/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    net: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl IpNet {
    /// `addr/prefix`; an error if `prefix` is over 32 or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<IpNet, CidrError> {
        let net = IpNet::new_truncating(addr, prefix)?;
        if net.network() != addr {
            return Err(CidrError::new(
                format_args!("{addr}/{prefix}"),
                format!("host bits are set (the network is {net})"),
            ));
        }
        Ok(net)
    }

    /// The network `addr/prefix` belongs to (host bits cleared), e.g. from an interface
    /// address; an error only if `prefix` is over 32.
    pub fn new_truncating(addr: Ipv4Addr, prefix: u8) -> Result<IpNet, CidrError> {
        if prefix > 32 {
            return Err(CidrError::new(
                format_args!("{addr}/{prefix}"),
                "prefix length is over 32",
            ));
        }
        Ok(IpNet {
            net: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// The network address (the first address).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.net)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (the last address).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.net | !mask(self.prefix))
    }

    /// How many addresses the network spans, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.net
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains_net(&self, other: &IpNet) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }

    /// The `n`th address of the network (0 is the network address), if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        u32::try_from(u64::from(self.net) + n)
            .ok()
            .map(Ipv4Addr::from)
    }

    /// The subnets of length `prefix` the network splits into, in address order; none if
    /// `prefix` is shorter than this network's or over 32.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = IpNet> + use<> {
        let (count, step) = if prefix < self.prefix || prefix > 32 {
            (0, 0)
        } else {
            (
                1u64 << u32::from(prefix - self.prefix),
                1u64 << (32 - u32::from(prefix)),
            )
        };
        let base = u64::from(self.net);
        (0..count).filter_map(move |i| {
            let net = u32::try_from(base + i * step).ok()?;
            Some(IpNet { net, prefix })
        })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = CidrError;

    /// Parses `a.b.c.d/n` strictly: host bits must be zero.
    fn from_str(s: &str) -> Result<IpNet, CidrError> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError::new(s, "expected <ipv4 address>/<prefix length>"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| CidrError::new(s, format!("{addr:?} is not an ipv4 address")))?;
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
                CidrError::new(s, format!("prefix length {prefix:?} is not 0 to 32"))
            })?;
        IpNet::new(addr, prefix).map_err(|e| CidrError::new(s, e.reason))
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Pools and subnet allocation
// ---------------------------------------------------------------------------------------

/// An address pool: `base` split into subnets of length `size` (Docker's
/// `default-address-pools` entries, `{"base": …, "size": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    base: IpNet,
    size: u8,
}

impl Pool {
    /// A pool handing out `/size` subnets of `base`; `size` must be at least `base`'s prefix
    /// and at most 30 (a gateway and one container).
    pub fn new(base: IpNet, size: u8) -> Result<Pool, IpamError> {
        let reason = if size < base.prefix() {
            "the split size is shorter than the base prefix"
        } else if size > 30 {
            "subnets smaller than /30 hold no container besides the gateway"
        } else {
            return Ok(Pool { base, size });
        };
        Err(IpamError::InvalidPool {
            base,
            size,
            reason: reason.to_string(),
        })
    }

    /// The base network.
    pub fn base(&self) -> IpNet {
        self.base
    }

    /// The length of the subnets handed out.
    pub fn size(&self) -> u8 {
        self.size
    }

    /// The subnets handed out, in order.
    pub fn subnets(&self) -> impl Iterator<Item = IpNet> + use<> {
        self.base.subnets(self.size)
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (/{}s)", self.base, self.size)
    }
}

/// Docker's default local address pools (libnetwork `ipamutils`): `172.17.0.0/16` to
/// `172.31.0.0/16` as /16s, then `192.168.0.0/16` as /20s — 31 subnets.
pub fn default_pools() -> Vec<Pool> {
    const POOLS: [([u8; 4], u8, u8); 7] = [
        ([172, 17, 0, 0], 16, 16),
        ([172, 18, 0, 0], 16, 16),
        ([172, 19, 0, 0], 16, 16),
        ([172, 20, 0, 0], 14, 16),
        ([172, 24, 0, 0], 14, 16),
        ([172, 28, 0, 0], 14, 16),
        ([192, 168, 0, 0], 16, 20),
    ];
    POOLS
        .iter()
        .map(|(a, prefix, size)| Pool {
            base: IpNet {
                net: u32::from(Ipv4Addr::from(*a)),
                prefix: *prefix,
            },
            size: *size,
        })
        .collect()
}

/// The first subnet of `pools` overlapping none of `taken` (other berth networks) and none
/// of `host_routes`. Default routes (`/0`) in `host_routes` are ignored: they overlap
/// everything. When none is free, the error names the pools and what was in the way.
pub fn allocate_subnet(
    pools: &[Pool],
    taken: &[IpNet],
    host_routes: &[IpNet],
) -> Result<IpNet, IpamError> {
    let routes: Vec<&IpNet> = host_routes.iter().filter(|r| r.prefix() > 0).collect();
    let mut in_taken = BTreeSet::new();
    let mut in_routes = BTreeSet::new();
    for pool in pools {
        for cand in pool.subnets() {
            let t: Vec<IpNet> = taken
                .iter()
                .filter(|n| n.overlaps(&cand))
                .copied()
                .collect();
            let r: Vec<IpNet> = routes
                .iter()
                .filter(|n| n.overlaps(&cand))
                .map(|n| **n)
                .collect();
            if t.is_empty() && r.is_empty() {
                return Ok(cand);
            }
            in_taken.extend(t);
            in_routes.extend(r);
        }
    }
    let join = |s: &BTreeSet<IpNet>| {
        s.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut conflicts = Vec::new();
    if !in_taken.is_empty() {
        conflicts.push(format!("in use by berth networks {}", join(&in_taken)));
    }
    if !in_routes.is_empty() {
        conflicts.push(format!("overlapping host routes {}", join(&in_routes)));
    }
    if conflicts.is_empty() {
        conflicts.push("the pools are empty".to_string());
    }
    Err(IpamError::NoFreeSubnet {
        pools: if pools.is_empty() {
            "(none configured)".to_string()
        } else {
            pools
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
        conflicts: conflicts.join("; "),
    })
}

/// The calling process's `/proc/net`: its network namespace's route table (`route`) and
/// routing trie (`fib_trie`).
pub const PROC_NET: &str = "/proc/net";

/// The networks the host already uses: destinations of its IPv4 routes (`route`: the main
/// table) and the entries of every routing table in `fib_trie` (local interface addresses,
/// also those without a route of their own, e.g. on `lo`), broadcast entries and default
/// routes left out, sorted and deduplicated. Pass them to [`allocate_subnet`].
pub fn host_routes() -> Result<Vec<IpNet>, IpamError> {
    host_routes_in(Path::new(PROC_NET))
}

/// Like [`host_routes`] for the `route` and `fib_trie` files in `proc_net` (e.g.
/// `/proc/<pid>/net` of a process in another network namespace).
pub fn host_routes_in(proc_net: &Path) -> Result<Vec<IpNet>, IpamError> {
    let read = |name: &str| {
        let path = proc_net.join(name);
        fs::read_to_string(&path)
            .map_err(|e| io_err("read", &path, e))
            .map(|text| (path, text))
    };
    let (path, text) = read("route")?;
    let mut all = parse_proc_net_route(&path, &text)?;
    let (path, text) = read("fib_trie")?;
    all.extend(parse_fib_trie(&path, &text)?);
    all.sort();
    all.dedup();
    Ok(all)
}

/// Entries of `/proc/net/fib_trie`: a leaf line `|-- a.b.c.d` followed by one line per
/// prefix, `/n <scope> <type>`.
fn parse_fib_trie(path: &Path, text: &str) -> Result<Vec<IpNet>, IpamError> {
    let mut out = BTreeSet::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| IpamError::RouteTable {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            let addr = addr.trim();
            leaf = Some(
                addr.parse()
                    .map_err(|_| bad(format!("{addr:?} is not an ipv4 address")))?,
            );
        } else if let Some(rest) = line.strip_prefix('/') {
            let mut fields = rest.split_whitespace();
            let prefix = fields.next().unwrap_or_default();
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| bad(format!("prefix length {prefix:?} is not 0 to 32")))?;
            let kind = fields.nth(1).unwrap_or_default();
            let addr = leaf.ok_or_else(|| bad("a prefix line before any address".into()))?;
            if prefix > 0 && kind != "BROADCAST" {
                out.insert(IpNet::new_truncating(addr, prefix)?);
            }
        } else if line.starts_with("+-- ") || line.ends_with(':') {
            leaf = None;
        }
    }
    Ok(out.into_iter().collect())
}

/// RTF_UP: the route is usable.
const RTF_UP: u32 = 0x1;

fn parse_proc_net_route(path: &Path, text: &str) -> Result<Vec<IpNet>, IpamError> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = |reason: String| IpamError::RouteTable {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 8 {
            return Err(bad(format!(
                "expected at least 8 fields, got {}",
                fields.len()
            )));
        }
        let hex = |s: &str| {
            u32::from_str_radix(s, 16).map_err(|_| bad(format!("{s:?} is not hexadecimal")))
        };
        // The kernel prints the big-endian words as native integers: their native-order
        // bytes are the address bytes.
        let dest = Ipv4Addr::from(hex(fields[1])?.to_ne_bytes());
        let flags = hex(fields[3])?;
        let m = u32::from_be_bytes(hex(fields[7])?.to_ne_bytes());
        let prefix = m.leading_ones() as u8;
        if mask(prefix) != m {
            return Err(bad(format!("mask {} is not contiguous", Ipv4Addr::from(m))));
        }
        if flags & RTF_UP == 0 || prefix == 0 {
            continue;
        }
        out.insert(IpNet::new_truncating(dest, prefix)?);
    }
    Ok(out.into_iter().collect())
}

// ---------------------------------------------------------------------------------------
// ipam.config
// ---------------------------------------------------------------------------------------

/// A network's validated IPv4 configuration (a Compose `ipam.config` entry, or a subnet
/// from the pools with defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// The subnet.
    pub subnet: IpNet,
    /// The part of the subnet containers' addresses are allocated from; the whole subnet
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

impl SubnetConfig {
    /// Validates a configuration: `subnet` /30 or larger, `ip_range` inside it, `gateway`
    /// inside it and neither its network nor broadcast address. The gateway defaults to the
    /// subnet's first host address.
    pub fn new(
        subnet: IpNet,
        ip_range: Option<IpNet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<SubnetConfig, IpamError> {
        let invalid = |reason: String| IpamError::InvalidConfig {
            subnet: subnet.to_string(),
            reason,
        };
        if subnet.prefix() > 30 {
            return Err(invalid(
                "the subnet must be /30 or larger to hold a gateway and a container".into(),
            ));
        }
        if let Some(r) = ip_range
            && !subnet.contains_net(&r)
        {
            return Err(invalid(format!("ip_range {r} is not inside the subnet")));
        }
        let gateway = match gateway {
            None => subnet
                .nth(1)
                .ok_or_else(|| invalid("no first host".into()))?,
            Some(g) if !subnet.contains(g) => {
                return Err(invalid(format!("gateway {g} is not inside the subnet")));
            }
            Some(g) if g == subnet.network() => {
                return Err(invalid(format!(
                    "gateway {g} is the subnet's network address"
                )));
            }
            Some(g) if g == subnet.broadcast() => {
                return Err(invalid(format!(
                    "gateway {g} is the subnet's broadcast address"
                )));
            }
            Some(g) => g,
        };
        Ok(SubnetConfig {
            subnet,
            ip_range,
            gateway,
        })
    }

    /// A Compose `ipam.config` entry's strings (empty = unset) parsed and validated as in
    /// [`SubnetConfig::new`]; `subnet` is required.
    pub fn from_compose(
        subnet: &str,
        ip_range: &str,
        gateway: &str,
    ) -> Result<SubnetConfig, IpamError> {
        let invalid = |reason: String| IpamError::InvalidConfig {
            subnet: subnet.to_string(),
            reason,
        };
        if subnet.is_empty() {
            return Err(invalid("the subnet is required".into()));
        }
        let net: IpNet = subnet.parse().map_err(|e: CidrError| invalid(e.reason))?;
        let range = match ip_range {
            "" => None,
            r => Some(
                r.parse::<IpNet>()
                    .map_err(|e| invalid(format!("ip_range {r:?}: {}", e.reason)))?,
            ),
        };
        let gw = match gateway {
            "" => None,
            g => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| invalid(format!("gateway {g:?} is not an ipv4 address")))?,
            ),
        };
        SubnetConfig::new(net, range, gw)
    }

    /// The range container addresses come from: `ip_range`, else the subnet.
    pub fn allocation_range(&self) -> IpNet {
        self.ip_range.unwrap_or(self.subnet)
    }

    /// Checks a Compose `aux_addresses` mapping (name → address), as Docker's default IPAM
    /// does: each address inside the subnet and none of its network, broadcast or gateway
    /// addresses. The addresses are then never given to a container.
    pub fn check_aux(&self, aux: &BTreeMap<String, Ipv4Addr>) -> Result<(), IpamError> {
        for (name, &ip) in aux {
            let invalid = |reason: String| IpamError::InvalidConfig {
                subnet: self.subnet.to_string(),
                reason: format!("aux_addresses {name:?}: {reason}"),
            };
            if !self.subnet.contains(ip) {
                return Err(invalid(format!("{ip} is not inside the subnet")));
            }
            if let Some(what) = self.reserved(ip) {
                return Err(invalid(format!("{ip} is the subnet's {what} address")));
            }
        }
        Ok(())
    }

    /// What reserves `ip` (`network`, `broadcast`, `gateway`), if anything.
    fn reserved(&self, ip: Ipv4Addr) -> Option<&'static str> {
        if ip == self.subnet.network() {
            Some("network")
        } else if ip == self.subnet.broadcast() {
            Some("broadcast")
        } else if ip == self.gateway {
            Some("gateway")
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Allocator
// ---------------------------------------------------------------------------------------

const STATE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    networks: BTreeMap<String, NetworkAlloc>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            networks: BTreeMap::new(),
        }
    }
}

/// One network's configuration and the addresses its containers hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAlloc {
    /// The network's subnet, range and gateway.
    pub config: SubnetConfig,
    /// Allocated addresses and the container holding each.
    #[serde(default)]
    pub addresses: BTreeMap<Ipv4Addr, String>,
    /// Addresses kept out of allocation (Compose `aux_addresses`), with their names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<Ipv4Addr, String>,
}

/// Networks' subnets and containers' addresses, persisted as JSON in one file. Every
/// operation reads the file under an exclusive `flock` on `<file>.lock` and, when it changes
/// something, rewrites it atomically (temp file, fsync, rename, directory fsync), so
/// concurrent processes and threads never hand out one address twice. A file that does not
/// parse is an error naming it; it is never reset. The file's directory must exist.
#[derive(Debug, Clone)]
pub struct Allocator {
    path: PathBuf,
    lock: PathBuf,
}

impl Allocator {
    /// An allocator keeping its state in `path` (created on the first change).
    pub fn new(path: impl Into<PathBuf>) -> Allocator {
        let path = path.into();
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        Allocator {
            path,
            lock: PathBuf::from(lock),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers `network` and returns its configuration. With `requested`, that
    /// configuration (its subnet must not overlap another berth network's); without, the
    /// first subnet of `pools` free of other berth networks and of `host_routes`, with the
    /// default gateway. `aux` (Compose `aux_addresses`, name → address) is checked against
    /// the configuration and its addresses are never allocated. Idempotent: an existing
    /// network's configuration is returned, unless `requested` differs from it.
    pub fn add_network(
        &self,
        network: &str,
        requested: Option<&SubnetConfig>,
        aux: &BTreeMap<String, Ipv4Addr>,
        pools: &[Pool],
        host_routes: &[IpNet],
    ) -> Result<SubnetConfig, IpamError> {
        self.update(|state| {
            if let Some(existing) = state.networks.get(network) {
                return match requested {
                    Some(r) if *r != existing.config => Err(IpamError::NetworkExists {
                        network: network.to_string(),
                        existing: existing.config.subnet,
                        requested: r.subnet,
                    }),
                    _ => Ok((existing.config, false)),
                };
            }
            let config = match requested {
                Some(r) => {
                    if let Some((other, alloc)) = state
                        .networks
                        .iter()
                        .find(|(_, a)| a.config.subnet.overlaps(&r.subnet))
                    {
                        return Err(IpamError::SubnetInUse {
                            network: network.to_string(),
                            subnet: r.subnet,
                            other: other.clone(),
                            other_subnet: alloc.config.subnet,
                        });
                    }
                    *r
                }
                None => {
                    let taken: Vec<IpNet> =
                        state.networks.values().map(|a| a.config.subnet).collect();
                    let subnet = allocate_subnet(pools, &taken, host_routes)?;
                    SubnetConfig::new(subnet, None, None)?
                }
            };
            config.check_aux(aux)?;
            state.networks.insert(
                network.to_string(),
                NetworkAlloc {
                    config,
                    addresses: BTreeMap::new(),
                    aux: aux.iter().map(|(n, ip)| (*ip, n.clone())).collect(),
                },
            );
            Ok((config, true))
        })
    }

    /// `network`'s configuration and addresses, if registered.
    pub fn network(&self, network: &str) -> Result<Option<NetworkAlloc>, IpamError> {
        Ok(self.read()?.networks.remove(network))
    }

    /// All registered networks by name.
    pub fn networks(&self) -> Result<BTreeMap<String, NetworkAlloc>, IpamError> {
        Ok(self.read()?.networks)
    }

    /// An address on `network` for `container_id`: `static_ip` if given (inside the subnet,
    /// not its network, broadcast or gateway address, not held by another container), else
    /// the first free address of the allocation range that is none of those. Idempotent:
    /// a container that already holds an address gets it again.
    pub fn allocate(
        &self,
        network: &str,
        container_id: &str,
        static_ip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        self.update(|state| {
            let alloc =
                state
                    .networks
                    .get_mut(network)
                    .ok_or_else(|| IpamError::UnknownNetwork {
                        network: network.to_string(),
                    })?;
            let cfg = alloc.config;
            if let Some((&current, _)) = alloc.addresses.iter().find(|(_, c)| *c == container_id) {
                return match static_ip {
                    Some(requested) if requested != current => {
                        Err(IpamError::ContainerHasAddress {
                            network: network.to_string(),
                            container: container_id.to_string(),
                            current,
                            requested,
                        })
                    }
                    _ => Ok((current, false)),
                };
            }
            let ip = match static_ip {
                Some(addr) => {
                    if !cfg.subnet.contains(addr) {
                        return Err(IpamError::StaticOutside {
                            network: network.to_string(),
                            addr,
                            subnet: cfg.subnet,
                        });
                    }
                    if let Some(what) = cfg.reserved(addr) {
                        return Err(IpamError::StaticReserved {
                            network: network.to_string(),
                            addr,
                            what,
                        });
                    }
                    if let Some(name) = alloc.aux.get(&addr) {
                        return Err(IpamError::StaticAux {
                            network: network.to_string(),
                            addr,
                            name: name.clone(),
                        });
                    }
                    if let Some(holder) = alloc.addresses.get(&addr) {
                        return Err(IpamError::AddressInUse {
                            network: network.to_string(),
                            addr,
                            container: holder.clone(),
                        });
                    }
                    addr
                }
                None => {
                    let range = cfg.allocation_range();
                    (0..range.size())
                        .filter_map(|n| range.nth(n))
                        .find(|ip| {
                            cfg.reserved(*ip).is_none()
                                && !alloc.addresses.contains_key(ip)
                                && !alloc.aux.contains_key(ip)
                        })
                        .ok_or_else(|| IpamError::AddressesExhausted {
                            network: network.to_string(),
                            range,
                        })?
                }
            };
            alloc.addresses.insert(ip, container_id.to_string());
            Ok((ip, true))
        })
    }

    /// Frees `container_id`'s address on `network`. Idempotent: an unknown network or a
    /// container without an address is fine.
    pub fn release(&self, network: &str, container_id: &str) -> Result<(), IpamError> {
        self.release_all(&[(network, container_id)])
    }

    /// Frees each (network, container) address in one write. Idempotent, as
    /// [`release`](Self::release).
    pub fn release_all(&self, held: &[(&str, &str)]) -> Result<(), IpamError> {
        if held.is_empty() {
            return Ok(());
        }
        self.update(|state| {
            let mut changed = false;
            for (network, container_id) in held {
                let Some(alloc) = state.networks.get_mut(*network) else {
                    continue;
                };
                let before = alloc.addresses.len();
                alloc.addresses.retain(|_, c| c != container_id);
                changed |= alloc.addresses.len() != before;
            }
            Ok(((), changed))
        })
    }

    /// Forgets `network` and all its addresses, freeing its subnet. Idempotent.
    pub fn release_network(&self, network: &str) -> Result<(), IpamError> {
        self.update(|state| Ok(((), state.networks.remove(network).is_some())))
    }

    fn read(&self) -> Result<State, IpamError> {
        let _lock = FileLock::take(&self.lock, FlockOperation::LockShared)?;
        self.load()
    }

    /// Runs `f` on the state under the exclusive lock; writes the state back when `f` says it
    /// changed it.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(T, bool), IpamError>,
    ) -> Result<T, IpamError> {
        let _lock = FileLock::take(&self.lock, FlockOperation::LockExclusive)?;
        let mut state = self.load()?;
        let (value, changed) = f(&mut state)?;
        if changed {
            let mut bytes =
                serde_json::to_vec_pretty(&state).map_err(|source| IpamError::Corrupt {
                    path: self.path.clone(),
                    source,
                })?;
            bytes.push(b'\n');
            write_atomic(&self.path, &bytes)?;
        }
        Ok(value)
    }

    fn load(&self) -> Result<State, IpamError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(io_err("read", &self.path, e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        if state.version != STATE_VERSION {
            return Err(IpamError::UnsupportedVersion {
                path: self.path.clone(),
                version: state.version,
            });
        }
        Ok(state)
    }
}

/// An `flock(2)` on a lock file, released when dropped (per open file description, so it
/// excludes other threads of this process too).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn take(path: &Path, op: FlockOperation) -> Result<FileLock, IpamError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_err("open lock", path, e))?;
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", path, e.into())),
            }
        }
    }
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same directory is
/// written and fsynced, renamed over `path`, then the directory is fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IpamError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{base}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("rename", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parses_strictly_and_displays() {
        let n = net("172.17.0.0/16");
        assert_eq!(n.to_string(), "172.17.0.0/16");
        assert_eq!(n.network(), ip("172.17.0.0"));
        assert_eq!(n.broadcast(), ip("172.17.255.255"));
        assert_eq!(n.size(), 65536);
        assert_eq!(net("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(net("10.0.0.1/32").broadcast(), ip("10.0.0.1"));
        let e = "172.17.0.1/16".parse::<IpNet>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid cidr \"172.17.0.1/16\": host bits are set (the network is 172.17.0.0/16)"
        );
        for bad in [
            "172.17.0.0",
            "172.17.0.0/33",
            "172.17.0/16",
            "::1/64",
            "1.2.3.4/x",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        assert_eq!(
            IpNet::new_truncating(ip("192.0.2.77"), 24).unwrap(),
            net("192.0.2.0/24")
        );
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"172.17.0.0/16\"");
        assert_eq!(serde_json::from_str::<IpNet>(&json).unwrap(), n);
        assert!(serde_json::from_str::<IpNet>("\"1.2.3.4/8\"").is_err());
    }

    #[test]
    fn cidr_contains_overlaps_nth_subnets() {
        let a = net("10.1.0.0/16");
        assert!(a.contains(ip("10.1.255.255")));
        assert!(!a.contains(ip("10.2.0.0")));
        assert!(a.contains_net(&net("10.1.2.0/24")));
        assert!(!net("10.1.2.0/24").contains_net(&a));
        assert!(a.overlaps(&net("10.1.2.0/24")));
        assert!(net("10.1.2.0/24").overlaps(&a));
        assert!(net("10.0.0.0/8").overlaps(&a));
        assert!(!a.overlaps(&net("10.2.0.0/16")));
        assert_eq!(a.nth(0), Some(ip("10.1.0.0")));
        assert_eq!(a.nth(257), Some(ip("10.1.1.1")));
        assert_eq!(a.nth(65536), None);
        assert_eq!(
            net("255.255.255.0/24").nth(255),
            Some(ip("255.255.255.255"))
        );
        let subs: Vec<String> = net("192.168.0.0/22")
            .subnets(24)
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            subs,
            [
                "192.168.0.0/24",
                "192.168.1.0/24",
                "192.168.2.0/24",
                "192.168.3.0/24"
            ]
        );
        assert_eq!(a.subnets(8).count(), 0);
        assert_eq!(a.subnets(33).count(), 0);
        assert_eq!(net("0.0.0.0/0").subnets(1).count(), 2);
    }

    #[test]
    fn default_pools_are_dockers() {
        let all: Vec<IpNet> = default_pools().iter().flat_map(Pool::subnets).collect();
        assert_eq!(all.len(), 31);
        assert_eq!(all[0], net("172.17.0.0/16"));
        assert_eq!(all[14], net("172.31.0.0/16"));
        assert_eq!(all[15], net("192.168.0.0/20"));
        assert_eq!(all[30], net("192.168.240.0/20"));
        assert!(Pool::new(net("10.0.0.0/8"), 24).is_ok());
        let e = Pool::new(net("10.0.0.0/16"), 8).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid address pool 10.0.0.0/16 split into /8: "),
            "{e}"
        );
        assert!(Pool::new(net("10.0.0.0/16"), 31).is_err());
    }

    #[test]
    fn subnet_skips_berth_networks_and_host_routes() {
        let pools = default_pools();
        assert_eq!(
            allocate_subnet(&pools, &[], &[]).unwrap(),
            net("172.17.0.0/16")
        );
        let taken = [net("172.17.0.0/16")];
        assert_eq!(
            allocate_subnet(&pools, &taken, &[]).unwrap(),
            net("172.18.0.0/16")
        );
        // A host route inside a candidate, and the default route (ignored).
        let routes = [net("0.0.0.0/0"), net("172.18.5.0/24")];
        assert_eq!(
            allocate_subnet(&pools, &taken, &routes).unwrap(),
            net("172.19.0.0/16")
        );
        // A host route covering candidates.
        let routes = [net("172.16.0.0/12"), net("192.168.0.0/24")];
        assert_eq!(
            allocate_subnet(&pools, &[], &routes).unwrap(),
            net("192.168.16.0/20")
        );
        // A taken network that is not aligned to the pool's split.
        let pools = [Pool::new(net("10.9.0.0/16"), 24).unwrap()];
        assert_eq!(
            allocate_subnet(&pools, &[net("10.9.0.0/23")], &[]).unwrap(),
            net("10.9.2.0/24")
        );
    }

    #[test]
    fn exhausted_pools_name_pools_and_conflicts() {
        let pools = [
            Pool::new(net("10.9.0.0/23"), 24).unwrap(),
            Pool::new(net("10.10.0.0/24"), 24).unwrap(),
        ];
        let err = allocate_subnet(
            &pools,
            &[net("10.9.0.0/24")],
            &[net("10.9.1.128/25"), net("10.10.0.0/16")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free subnet in address pools 10.9.0.0/23 (/24s), 10.10.0.0/24 (/24s): \
             in use by berth networks 10.9.0.0/24; \
             overlapping host routes 10.9.1.128/25, 10.10.0.0/16"
        );
        let err = allocate_subnet(&[], &[], &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no free subnet in address pools (none configured): the pools are empty"
        );
    }

    #[test]
    fn route_table_parses_kernel_format() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            down0\t00000A0A\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\n";
        let p = Path::new("/proc/net/route");
        let routes = if cfg!(target_endian = "little") {
            parse_proc_net_route(p, text).unwrap()
        } else {
            return;
        };
        assert_eq!(routes, [net("172.17.0.0/16"), net("192.0.2.0/24")]);
        let err = parse_proc_net_route(p, "h\neth0\tzz\t0\t1\t0\t0\t0\t0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot parse route table /proc/net/route, line 2: \"zz\" is not hexadecimal"
        );
        let err = parse_proc_net_route(p, "h\neth0\t0\t0\t1\t0\t0\t0\t00FF00FF\n").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("mask 255.0.255.0 is not contiguous"),
            "{err}"
        );
        assert!(parse_proc_net_route(p, "h\neth0 0 0\n").is_err());
        // The real table of this process parses.
        host_routes().unwrap();
    }

    #[test]
    fn fib_trie_adds_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
            |-- 10.9.9.9\n        /32 host LOCAL\n     +-- 172.17.5.0/24 2 0 2\n\
            +-- 172.17.5.0/31 1 0 0\n           |-- 172.17.5.0\n              /24 host LOCAL\n\
            |-- 172.17.5.1\n              /32 host LOCAL\n        |-- 172.17.5.255\n\
            /32 link BROADCAST\nLocal:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.9.9.9\n\
            /32 host LOCAL\n";
        let p = Path::new("/proc/net/fib_trie");
        assert_eq!(
            parse_fib_trie(p, text).unwrap(),
            [
                net("10.9.9.9/32"),
                net("172.17.5.0/24"),
                net("172.17.5.1/32")
            ]
        );
        let err = parse_fib_trie(p, "Main:\n  /24 host LOCAL\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot parse route table /proc/net/fib_trie, line 2: a prefix line before any address"
        );
        assert!(parse_fib_trie(p, "  |-- 1.2.3\n").is_err());
        assert!(parse_fib_trie(p, "  |-- 1.2.3.4\n     /40 host LOCAL\n").is_err());
    }

    #[test]
    fn ipam_config_is_validated_with_default_gateway() {
        let c = SubnetConfig::from_compose("10.5.0.0/16", "", "").unwrap();
        assert_eq!(c.gateway, ip("10.5.0.1"));
        assert_eq!(c.allocation_range(), net("10.5.0.0/16"));
        let c = SubnetConfig::from_compose("10.5.0.0/16", "10.5.7.0/24", "10.5.0.254").unwrap();
        assert_eq!(c.gateway, ip("10.5.0.254"));
        assert_eq!(c.allocation_range(), net("10.5.7.0/24"));
        let cases = [
            ("", "", "", "the subnet is required"),
            (
                "10.5.0.1/16",
                "",
                "",
                "host bits are set (the network is 10.5.0.0/16)",
            ),
            (
                "10.5.0.0/16",
                "10.6.0.0/24",
                "",
                "ip_range 10.6.0.0/24 is not inside the subnet",
            ),
            (
                "10.5.0.0/16",
                "10.4.0.0/8",
                "",
                "ip_range \"10.4.0.0/8\": host bits are set (the network is 10.0.0.0/8)",
            ),
            (
                "10.5.0.0/16",
                "",
                "10.6.0.1",
                "gateway 10.6.0.1 is not inside the subnet",
            ),
            (
                "10.5.0.0/16",
                "",
                "10.5.0.0",
                "gateway 10.5.0.0 is the subnet's network address",
            ),
            (
                "10.5.0.0/16",
                "",
                "10.5.255.255",
                "gateway 10.5.255.255 is the subnet's broadcast address",
            ),
            (
                "10.5.0.0/16",
                "",
                "gw",
                "gateway \"gw\" is not an ipv4 address",
            ),
            (
                "10.5.0.0/31",
                "",
                "",
                "the subnet must be /30 or larger to hold a gateway and a container",
            ),
            ("fd00::/64", "", "", "\"fd00::\" is not an ipv4 address"),
        ];
        for (s, r, g, reason) in cases {
            let e = SubnetConfig::from_compose(s, r, g).unwrap_err().to_string();
            assert_eq!(e, format!("invalid ipam config for subnet {s}: {reason}"));
        }
    }

    fn allocator() -> (tempfile::TempDir, Allocator) {
        let dir = tempfile::tempdir().unwrap();
        let a = Allocator::new(dir.path().join("ipam.json"));
        (dir, a)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn networks_get_distinct_subnets_and_free_them() {
        let (dir, a) = allocator();
        let pools = default_pools();
        let routes = [net("172.18.0.0/24")];
        let one = a
            .add_network("one", None, &BTreeMap::new(), &pools, &routes)
            .unwrap();
        assert_eq!(one.subnet, net("172.17.0.0/16"));
        assert_eq!(one.gateway, ip("172.17.0.1"));
        let two = a
            .add_network("two", None, &BTreeMap::new(), &pools, &routes)
            .unwrap();
        assert_eq!(two.subnet, net("172.19.0.0/16"));
        // Idempotent, also across allocator instances.
        let again =
            Allocator::new(a.path()).add_network("one", None, &BTreeMap::new(), &pools, &routes);
        assert_eq!(again.unwrap(), one);
        assert_eq!(
            a.add_network("one", Some(&one), &BTreeMap::new(), &pools, &[])
                .unwrap(),
            one
        );
        let other = SubnetConfig::from_compose("10.0.0.0/24", "", "").unwrap();
        let e = a
            .add_network("one", Some(&other), &BTreeMap::new(), &pools, &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "network one already has subnet 172.17.0.0/16, not 10.0.0.0/24"
        );
        let clash = SubnetConfig::from_compose("172.19.128.0/24", "", "").unwrap();
        let e = a
            .add_network("three", Some(&clash), &BTreeMap::new(), &pools, &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 172.19.128.0/24 of network three overlaps subnet 172.19.0.0/16 of network two"
        );
        a.add_network("three", Some(&other), &BTreeMap::new(), &pools, &[])
            .unwrap();
        assert_eq!(
            a.networks().unwrap().keys().collect::<Vec<_>>(),
            ["one", "three", "two"]
        );
        a.release_network("one").unwrap();
        a.release_network("one").unwrap();
        assert_eq!(a.network("one").unwrap(), None);
        let four = a
            .add_network("four", None, &BTreeMap::new(), &pools, &routes)
            .unwrap();
        assert_eq!(four.subnet, net("172.17.0.0/16"));
        assert_eq!(files(dir.path()), ["ipam.json", "ipam.json.lock"]);
    }

    #[test]
    fn addresses_skip_reserved_and_are_reused_after_release() {
        let (dir, a) = allocator();
        let cfg = SubnetConfig::from_compose("10.2.0.0/29", "", "").unwrap();
        a.add_network("n", Some(&cfg), &BTreeMap::new(), &[], &[])
            .unwrap();
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| a.allocate("n", &format!("c{i}"), None).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 2, 0, i)).collect();
        assert_eq!(got, want);
        // Idempotent for a container that holds an address.
        assert_eq!(a.allocate("n", "c3", None).unwrap(), ip("10.2.0.5"));
        assert_eq!(
            a.allocate("n", "c3", Some(ip("10.2.0.5"))).unwrap(),
            ip("10.2.0.5")
        );
        let e = a.allocate("n", "c3", Some(ip("10.2.0.6"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container c3 already has address 10.2.0.5 on network n, not 10.2.0.6"
        );
        let e = a.allocate("n", "c9", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free address in network n (range 10.2.0.0/29)"
        );
        a.release("n", "c1").unwrap();
        a.release("n", "c1").unwrap();
        a.release("gone", "c1").unwrap();
        assert_eq!(a.allocate("n", "c9", None).unwrap(), ip("10.2.0.3"));
        // Persisted: a fresh allocator sees the same holders.
        let state = Allocator::new(a.path()).network("n").unwrap().unwrap();
        assert_eq!(state.addresses.get(&ip("10.2.0.3")).unwrap(), "c9");
        assert_eq!(state.addresses.len(), 5);
        let e = a.allocate("nope", "c1", None).unwrap_err();
        assert_eq!(e.to_string(), "network nope has no ipam allocation");
        assert_eq!(files(dir.path()), ["ipam.json", "ipam.json.lock"]);
    }

    #[test]
    fn many_addresses_are_released_in_one_go() {
        let (_dir, a) = allocator();
        for (name, subnet) in [("n", "10.4.0.0/24"), ("m", "10.5.0.0/24")] {
            let cfg = SubnetConfig::from_compose(subnet, "", "").unwrap();
            a.add_network(name, Some(&cfg), &BTreeMap::new(), &[], &[])
                .unwrap();
        }
        for c in ["c1", "c2", "c3"] {
            a.allocate("n", c, None).unwrap();
        }
        a.allocate("m", "c1", None).unwrap();
        a.release_all(&[("n", "c1"), ("m", "c1"), ("n", "c3"), ("gone", "c2")])
            .unwrap();
        let holders = |n: &str| -> Vec<String> {
            let state = Allocator::new(a.path()).network(n).unwrap().unwrap();
            state.addresses.into_values().collect()
        };
        assert_eq!(holders("n"), ["c2"]);
        assert!(holders("m").is_empty());
        // Idempotent, and nothing to do is no write.
        a.release_all(&[("n", "c1")]).unwrap();
        a.release_all(&[]).unwrap();
        assert_eq!(holders("n"), ["c2"]);
    }

    #[test]
    fn ip_range_and_custom_gateway_limit_allocation() {
        let (_dir, a) = allocator();
        let cfg = SubnetConfig::from_compose("10.3.0.0/16", "10.3.0.0/30", "10.3.0.2").unwrap();
        a.add_network("r", Some(&cfg), &BTreeMap::new(), &[], &[])
            .unwrap();
        assert_eq!(a.allocate("r", "a", None).unwrap(), ip("10.3.0.1"));
        assert_eq!(a.allocate("r", "b", None).unwrap(), ip("10.3.0.3"));
        assert!(matches!(
            a.allocate("r", "c", None),
            Err(IpamError::AddressesExhausted { .. })
        ));
        // A static address may be outside the range but inside the subnet.
        assert_eq!(
            a.allocate("r", "c", Some(ip("10.3.9.9"))).unwrap(),
            ip("10.3.9.9")
        );
    }

    #[test]
    fn aux_addresses_are_never_allocated() {
        let (_dir, a) = allocator();
        let cfg = SubnetConfig::from_compose("10.6.0.0/29", "", "").unwrap();
        let aux = BTreeMap::from([
            ("router".to_string(), ip("10.6.0.2")),
            ("printer".to_string(), ip("10.6.0.4")),
        ]);
        a.add_network("x", Some(&cfg), &aux, &[], &[]).unwrap();
        // .1 is the gateway, .7 the broadcast: .3, .5, .6 are what is left.
        let got: Vec<Ipv4Addr> = ["a", "b", "c"]
            .iter()
            .map(|c| a.allocate("x", c, None).unwrap())
            .collect();
        assert_eq!(got, [ip("10.6.0.3"), ip("10.6.0.5"), ip("10.6.0.6")]);
        assert!(matches!(
            a.allocate("x", "d", None),
            Err(IpamError::AddressesExhausted { .. })
        ));
        let e = a.allocate("x", "d", Some(ip("10.6.0.4"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "address 10.6.0.4 is reserved as auxiliary address \"printer\" of network x"
        );
        // Kept across processes.
        let state = Allocator::new(a.path()).network("x").unwrap().unwrap();
        assert_eq!(state.aux.get(&ip("10.6.0.2")).unwrap(), "router");
    }

    #[test]
    fn aux_addresses_must_be_usable_addresses_of_the_subnet() {
        let cfg = SubnetConfig::from_compose("10.7.0.0/24", "", "").unwrap();
        let check = |addr: &str| {
            cfg.check_aux(&BTreeMap::from([("h".to_string(), ip(addr))]))
                .map_err(|e| e.to_string())
        };
        assert_eq!(check("10.7.0.9"), Ok(()));
        for (addr, why) in [
            ("10.8.0.9", "10.8.0.9 is not inside the subnet"),
            ("10.7.0.1", "10.7.0.1 is the subnet's gateway address"),
            ("10.7.0.0", "10.7.0.0 is the subnet's network address"),
            ("10.7.0.255", "10.7.0.255 is the subnet's broadcast address"),
        ] {
            let e = check(addr).unwrap_err();
            assert!(e.contains(&format!("aux_addresses \"h\": {why}")), "{e}");
        }
        // add_network refuses them too, and registers nothing.
        let (_dir, a) = allocator();
        let bad = BTreeMap::from([("h".to_string(), ip("10.7.0.1"))]);
        assert!(a.add_network("y", Some(&cfg), &bad, &[], &[]).is_err());
        assert!(a.network("y").unwrap().is_none());
    }

    #[test]
    fn static_addresses_are_checked() {
        let (_dir, a) = allocator();
        let cfg = SubnetConfig::from_compose("10.4.0.0/24", "", "").unwrap();
        a.add_network("s", Some(&cfg), &BTreeMap::new(), &[], &[])
            .unwrap();
        assert_eq!(
            a.allocate("s", "web", Some(ip("10.4.0.2"))).unwrap(),
            ip("10.4.0.2")
        );
        let cases = [
            (
                "10.5.0.2",
                "address 10.5.0.2 is not in subnet 10.4.0.0/24 of network s",
            ),
            (
                "10.4.0.0",
                "address 10.4.0.0 is the network address of network s",
            ),
            (
                "10.4.0.255",
                "address 10.4.0.255 is the broadcast address of network s",
            ),
            (
                "10.4.0.1",
                "address 10.4.0.1 is the gateway address of network s",
            ),
            (
                "10.4.0.2",
                "address 10.4.0.2 of network s is in use by container web",
            ),
        ];
        for (addr, msg) in cases {
            let e = a.allocate("s", "db", Some(ip(addr))).unwrap_err();
            assert_eq!(e.to_string(), msg);
        }
        // Dynamic allocation skips the static one.
        assert_eq!(a.allocate("s", "db", None).unwrap(), ip("10.4.0.3"));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_kept() {
        let (_dir, a) = allocator();
        fs::write(a.path(), b"{\"version\": 1, \"networks\": {").unwrap();
        for e in [
            a.allocate("n", "c", None).unwrap_err(),
            a.release_network("n").unwrap_err(),
            a.networks().unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("corrupt ipam state file {}: ", a.path().display())),
                "{msg}"
            );
        }
        assert_eq!(
            fs::read(a.path()).unwrap(),
            b"{\"version\": 1, \"networks\": {"
        );
        fs::write(a.path(), b"{\"version\": 7}").unwrap();
        let e = a.networks().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "ipam state file {} has unsupported version 7",
                a.path().display()
            )
        );
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let a = Allocator::new(dir.path().join("no/ipam.json"));
        let e = a.networks().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "open lock {}/no/ipam.json.lock: ",
                dir.path().display()
            )),
            "{e}"
        );
    }

    #[test]
    fn concurrent_allocations_never_duplicate() {
        let (_dir, a) = allocator();
        let cfg = SubnetConfig::from_compose("10.7.0.0/24", "", "").unwrap();
        a.add_network("c", Some(&cfg), &BTreeMap::new(), &[], &[])
            .unwrap();
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let a = Allocator::new(a.path());
                std::thread::spawn(move || {
                    (0..40)
                        .map(|i| a.allocate("c", &format!("t{t}-{i}"), None).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 80);
        let state = a.network("c").unwrap().unwrap();
        assert_eq!(state.addresses.len(), 80);
        assert_eq!(state.addresses.keys().copied().collect::<Vec<_>>(), all);
    }
}
