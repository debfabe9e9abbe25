//! Links, addresses and routes over rtnetlink, synchronously (no tokio).
//!
//! A [`Netlink`] handle is a `NETLINK_ROUTE` socket bound in the network namespace of the thread
//! that opened it; every request on it acts on that namespace, whichever thread sends it. Code
//! that must act inside a container's namespace uses [`crate::netns::run_in`] (see
//! [`configure_container_link`]). Meant for short-lived threads or processes, never a tokio
//! worker: every call blocks until the kernel answers.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator, Parseable,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, LinkMessageBuffer,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use sha2::{Digest, Sha256};

use crate::netns::{self, NetnsError};

/// Size of a netlink message header (`struct nlmsghdr`).
const NETLINK_HEADER_LEN: usize = 16;
/// `RTM_NEWLINK`: a link, in answer to `GETLINK`.
const RTM_NEWLINK: u16 = 16;

/// One undecoded answer: its header and payload.
type RawAnswer = (NetlinkHeader, Vec<u8>);

/// The longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// Why a link operation failed; variants name the interface and carry the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be opened, bound, written or read.
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel's answer could not be decoded.
    #[error("decode netlink answer to {op}: {detail}")]
    Decode {
        /// The request ("create bridge", "list links", …).
        op: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The kernel refused a request.
    #[error("{op} {name}: {errno}")]
    Kernel {
        /// The request ("create bridge", "add address", …).
        op: &'static str,
        /// The interface (or route) it was about.
        name: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// No interface has this name.
    #[error("interface {0} not found")]
    NotFound(String),
    /// An interface with this name exists but is not of the kind asked for.
    #[error("interface {name} exists but is a {kind}, not a {wanted}")]
    WrongKind {
        /// The interface.
        name: String,
        /// What it is ("veth", "device", …).
        kind: String,
        /// What was asked for.
        wanted: &'static str,
    },
    /// The name is not a valid interface name (empty, longer than 15 bytes, `/`, `:`, space).
    #[error("invalid interface name {0:?}: 1 to 15 bytes without '/', ':' or whitespace")]
    InvalidName(String),
    /// The prefix length does not fit the address family.
    #[error("invalid prefix length /{prefix} for address {addr}")]
    InvalidPrefix {
        /// The address.
        addr: IpAddr,
        /// The prefix length given.
        prefix: u8,
    },
    /// Entering the container's network namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` ("bridge", "veth", …); `None` for devices without one (`lo`, NICs).
    pub kind: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the bridge it is attached to.
    pub master: Option<u32>,
    /// Hardware address.
    pub mac: Option<Vec<u8>>,
}

/// One route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination and prefix length; `None` for a default route.
    pub destination: Option<(IpAddr, u8)>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

/// How a container's end of a veth is set up inside its namespace by
/// [`configure_container_link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLink {
    /// The name the peer was created with (may already be `name`).
    pub peer_name: String,
    /// The name it must end up with, usually `eth0`.
    pub name: String,
    /// Addresses with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Default gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Hardware address, if fixed (compose `mac_address`).
    pub mac: Option<[u8; 6]>,
}

/// A synchronous rtnetlink handle bound in the network namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

fn kernel<'a>(op: &'static str, name: &'a str) -> impl FnOnce(Errno) -> LinkError + 'a {
    move |errno| LinkError::Kernel {
        op,
        name: name.to_owned(),
        errno,
    }
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the current thread's network namespace.
    pub fn open() -> Result<Netlink, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(LinkError::Socket)?;
        socket.bind_auto().map_err(LinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(LinkError::Socket)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and collects the answers: for a dump, every message until `DONE`; for
    /// anything else, the messages before the ACK. A kernel error becomes `Err(errno)`; socket
    /// and decode failures are reported through `op`.
    fn request(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Result<Vec<RouteNetlinkMessage>, Errno>, LinkError> {
        let answers = match self.request_raw(op, msg, flags)? {
            Ok(answers) => answers,
            Err(errno) => return Ok(Err(errno)),
        };
        let mut out = Vec::with_capacity(answers.len());
        for (header, payload) in answers {
            let m = RouteNetlinkMessage::deserialize(&header, &payload).map_err(|e| {
                LinkError::Decode {
                    op,
                    detail: e.to_string(),
                }
            })?;
            out.push(m);
        }
        Ok(Ok(out))
    }

    /// [`Netlink::request`] without decoding the answers: their headers and raw payloads.
    /// netlink-packet-route formats an error context for every attribute it parses, so a
    /// full decode of one bridge's `NEWLINK` cost more than the kernel's work; link lookups
    /// read the few attributes they need straight from the bytes ([`parse_link`]).
    fn request_raw(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Result<Vec<RawAnswer>, Errno>, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(LinkError::Socket)?;

        let decode = |detail: String| LinkError::Decode { op, detail };
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(LinkError::Socket)?;
            let mut offset = 0;
            while offset < data.len() {
                let chunk = &data[offset..];
                let buffer =
                    NetlinkBuffer::new_checked(chunk).map_err(|e| decode(e.to_string()))?;
                let len = buffer.length() as usize;
                if len < NETLINK_HEADER_LEN || len > chunk.len() {
                    return Err(decode(format!("bad message length {len}")));
                }
                let buffer =
                    NetlinkBuffer::new_checked(&chunk[..len]).map_err(|e| decode(e.to_string()))?;
                offset += (len + 3) & !3;
                if buffer.sequence_number() != seq {
                    continue; // a late answer to an earlier request
                }
                match buffer.message_type() {
                    NLMSG_ERROR => {
                        let payload = buffer.payload();
                        let code = payload
                            .get(..4)
                            .and_then(|b| <[u8; 4]>::try_from(b).ok())
                            .map(i32::from_ne_bytes)
                            .ok_or_else(|| decode("short error message".into()))?;
                        return Ok(match code {
                            0 => Ok(out),
                            code => Err(Errno::from_raw(code.abs())),
                        });
                    }
                    NLMSG_DONE => return Ok(Ok(out)),
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    _ => {
                        let header =
                            NetlinkHeader::parse(&buffer).map_err(|e| decode(e.to_string()))?;
                        out.push((header, buffer.payload().to_vec()));
                    }
                }
            }
        }
    }

    /// The link named `name`, or `None` if there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, LinkError> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request_raw("get link", RouteNetlinkMessage::GetLink(msg), 0)? {
            Ok(answers) => Ok(answers
                .iter()
                .find(|(h, _)| h.message_type == RTM_NEWLINK)
                .and_then(|(_, payload)| parse_link(payload))),
            Err(Errno::ENODEV) => Ok(None),
            Err(errno) => Err(kernel("get link", name)(errno)),
        }
    }

    fn index(&mut self, name: &str) -> Result<u32, LinkError> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| LinkError::NotFound(name.to_owned()))
    }

    /// Every link of this namespace.
    pub fn list_links(&mut self) -> Result<Vec<Link>, LinkError> {
        let answers = self
            .request_raw(
                "list links",
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            )?
            .map_err(kernel("list links", "*"))?;
        Ok(answers
            .iter()
            .filter(|(h, _)| h.message_type == RTM_NEWLINK)
            .filter_map(|(_, payload)| parse_link(payload))
            .collect())
    }

    /// Creates bridge `name` with `mtu` (kernel default if `None`) and returns its index. An
    /// existing bridge of that name is fine (its settings are left alone); an existing
    /// interface of another kind is [`LinkError::WrongKind`].
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<u32, LinkError> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        match self.request("create bridge", RouteNetlinkMessage::NewLink(msg), flags)? {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(kernel("create bridge", name)(errno)),
        }
        let link = self
            .link(name)?
            .ok_or_else(|| LinkError::NotFound(name.to_owned()))?;
        match link.kind.as_deref() {
            Some("bridge") => Ok(link.index),
            other => Err(LinkError::WrongKind {
                name: name.to_owned(),
                kind: other.unwrap_or("device").to_owned(),
                wanted: "bridge",
            }),
        }
    }

    /// Creates a veth pair: `host_name` here, `peer_name` created directly inside the network
    /// namespace `peer_netns` (one request, `IFLA_NET_NS_FD` on the peer), both with `mtu`.
    /// Returns the host side's index. An existing `host_name` is an error (`EEXIST`): veth
    /// names are per container, so one left over must be deleted first.
    pub fn create_veth_into(
        &mut self,
        host_name: &str,
        peer_name: &str,
        peer_netns: BorrowedFd<'_>,
        mtu: Option<u32>,
    ) -> Result<u32, LinkError> {
        check_ifname(host_name)?;
        check_ifname(peer_name)?;
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_owned()));
        if let Some(mtu) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        peer.attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(host_name.to_owned()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.request("create veth", RouteNetlinkMessage::NewLink(msg), flags)?
            .map_err(kernel("create veth", host_name))?;
        self.index(host_name)
    }

    fn set_link(
        &mut self,
        op: &'static str,
        name: &str,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), LinkError> {
        let index = self.index(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        edit(&mut msg);
        self.request(op, RouteNetlinkMessage::SetLink(msg), 0)?
            .map_err(kernel(op, name))?;
        Ok(())
    }

    /// Sets interface `name` administratively up.
    pub fn set_up(&mut self, name: &str) -> Result<(), LinkError> {
        self.set_link("set up", name, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets interface `name` administratively down.
    pub fn set_down(&mut self, name: &str) -> Result<(), LinkError> {
        self.set_link("set down", name, |m| {
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Attaches interface `name` to bridge `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), LinkError> {
        let master = self.index(bridge)?;
        self.set_link("attach to bridge", name, |m| {
            m.attributes.push(LinkAttribute::Controller(master));
        })
    }

    /// Turns hairpin mode on for bridge port `name` (a frame may leave by the port it came
    /// in on): a container reaching its own published port through a host address gets its
    /// DNATed packets back on its own port when the bridge itself is filtered
    /// (`br_netfilter`).
    pub fn set_hairpin(&mut self, name: &str) -> Result<(), LinkError> {
        // Port options are changed by RTM_NEWLINK on the existing link (`ip link set … type
        // bridge_slave`); RTM_SETLINK ignores IFLA_LINKINFO.
        let op = "set hairpin mode";
        let mut msg = LinkMessage::default();
        msg.header.index = self.index(name)?;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.request(op, RouteNetlinkMessage::NewLink(msg), 0)?
            .map_err(kernel(op, name))?;
        Ok(())
    }

    /// Sets the hardware address of interface `name`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), LinkError> {
        self.set_link("set mac address", name, |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        })
    }

    /// Renames interface `name` to `new_name` (the kernel refuses while it is up: `EBUSY`).
    pub fn rename(&mut self, name: &str, new_name: &str) -> Result<(), LinkError> {
        check_ifname(new_name)?;
        self.set_link("rename", name, |m| {
            m.attributes
                .push(LinkAttribute::IfName(new_name.to_owned()));
        })
    }

    /// Deletes interface `name` (for a veth, both ends). A missing interface is fine.
    ///
    /// The kernel takes its rtnl lock for this even when there is no such interface, and
    /// namespace teardown holds that lock for long stretches while many containers exit:
    /// callers that only clean up check [`link_exists`] first.
    pub fn delete_link(&mut self, name: &str) -> Result<(), LinkError> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request("delete link", RouteNetlinkMessage::DelLink(msg), 0)? {
            Ok(_) | Err(Errno::ENODEV) => Ok(()),
            Err(errno) => Err(kernel("delete link", name)(errno)),
        }
    }

    /// Adds `addr/prefix` to interface `name` (with the broadcast address for IPv4). An
    /// address already there is fine.
    pub fn add_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(LinkError::InvalidPrefix { addr, prefix });
        }
        let index = self.index(name)?;
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr);
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        if let IpAddr::V4(v4) = addr {
            msg.attributes.push(AddressAttribute::Local(addr));
            if prefix < 31 {
                let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let broadcast = Ipv4Addr::from(u32::from(v4) | host_mask);
                msg.attributes.push(AddressAttribute::Broadcast(broadcast));
            }
        }
        msg.attributes.push(AddressAttribute::Address(addr));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        match self.request("add address", RouteNetlinkMessage::NewAddress(msg), flags)? {
            Ok(_) | Err(Errno::EEXIST) => Ok(()),
            Err(errno) => Err(kernel("add address", &format!("{addr}/{prefix} on {name}"))(errno)),
        }
    }

    /// The addresses (with prefix lengths) on interface `name`, IPv4 and IPv6.
    pub fn addresses(&mut self, name: &str) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        let index = self.index(name)?;
        let answers = self
            .request(
                "list addresses",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
            )?
            .map_err(kernel("list addresses", name))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let prefix = a.header.prefix_len;
                    a.attributes.into_iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some((ip, prefix)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds (or replaces) the default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<(), LinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(gateway);
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.request(
            "add default route",
            RouteNetlinkMessage::NewRoute(msg),
            flags,
        )?
        .map_err(kernel("add default route", &format!("via {gateway}")))?;
        Ok(())
    }

    /// The routes of the main table, IPv4 and IPv6.
    pub fn routes(&mut self) -> Result<Vec<Route>, LinkError> {
        let answers = self
            .request(
                "list routes",
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                NLM_F_DUMP,
            )?
            .map_err(kernel("list routes", "*"))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => to_route(r),
                _ => None,
            })
            .collect())
    }
}

/// Sets up a container's end of a veth inside the network namespace at `netns_path`, on a
/// dedicated thread: `lo` up, the peer renamed to `link.name` (unless it already has it), the
/// MAC, the addresses, the link up, then the default route.
pub fn configure_container_link(netns_path: &Path, link: &ContainerLink) -> Result<(), LinkError> {
    check_ifname(&link.name)?;
    check_ifname(&link.peer_name)?;
    netns::run_in(netns_path, || {
        let mut nl = Netlink::open()?;
        nl.set_up("lo")?;
        if link.peer_name != link.name && nl.link(&link.name)?.is_none() {
            nl.rename(&link.peer_name, &link.name)?;
        }
        if let Some(mac) = link.mac {
            nl.set_mac(&link.name, mac)?;
        }
        for &(addr, prefix) in &link.addresses {
            nl.add_address(&link.name, addr, prefix)?;
        }
        nl.set_up(&link.name)?;
        if let Some(gateway) = link.gateway {
            nl.add_default_route(gateway)?;
        }
        Ok(())
    })?
}

/// The bridge name of a network: `br-` and 12 hex digits, the id's first 12 when it is a hex
/// id (as Docker names them), else the start of its SHA-256. Always 15 bytes.
pub fn bridge_name(network_id: &str) -> String {
    format!("br-{}", hex_prefix(network_id, 12))
}

/// The host-side veth name of a container's `index`th network: `veth` and 10 hex digits of
/// the SHA-256 of both. Deterministic, 14 bytes.
pub fn veth_name(container_id: &str, index: u32) -> String {
    let digest = Sha256::digest(format!("{container_id}/{index}").as_bytes());
    format!("veth{}", &to_hex(&digest)[..10])
}

fn hex_prefix(id: &str, n: usize) -> String {
    let lower = id.to_ascii_lowercase();
    if lower.len() >= n && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        lower[..n].to_owned()
    } else {
        to_hex(&Sha256::digest(id.as_bytes()))[..n].to_owned()
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether this namespace has an interface `name`, asked without the kernel's rtnl lock (an
/// `ioctl(SIOCGIFINDEX)` looks the name up under RCU): cheap even while namespace teardown
/// holds that lock.
pub fn link_exists(name: &str) -> Result<bool, LinkError> {
    check_ifname(name)?;
    match nix::net::if_::if_nametoindex(name) {
        Ok(_) => Ok(true),
        Err(Errno::ENODEV) => Ok(false),
        Err(errno) => Err(kernel("look up link", name)(errno)),
    }
}

/// Checks `name` is a name the kernel accepts for an interface (`dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<(), LinkError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(LinkError::InvalidName(name.to_owned()))
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The [`Link`] in the payload of a `NEWLINK` message, read from its header and the few
/// attributes it needs (see [`Netlink::request_raw`]); `None` when it is malformed.
fn parse_link(payload: &[u8]) -> Option<Link> {
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_MASTER: u16 = 10;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFF_UP: u32 = 1;
    let u32_of = |v: &[u8]| {
        v.get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_ne_bytes)
    };
    let string_of = |v: &[u8]| {
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    };
    let buffer = LinkMessageBuffer::new_checked(payload).ok()?;
    let mut link = Link {
        index: buffer.link_index(),
        name: String::new(),
        kind: None,
        mtu: None,
        up: buffer.flags() & IFF_UP != 0,
        master: None,
        mac: None,
    };
    for nla in buffer.attributes() {
        let nla = nla.ok()?;
        let value = nla.value();
        match nla.kind() {
            IFLA_IFNAME => link.name = string_of(value),
            IFLA_MTU => link.mtu = u32_of(value),
            IFLA_MASTER => link.master = u32_of(value),
            IFLA_ADDRESS => link.mac = Some(value.to_vec()),
            IFLA_LINKINFO => {
                for info in NlasIterator::new(value) {
                    let info = info.ok()?;
                    if info.kind() == IFLA_INFO_KIND {
                        link.kind = Some(string_of(info.value()));
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn route_ip(addr: RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

fn to_route(msg: RouteMessage) -> Option<Route> {
    let mut table = u32::from(msg.header.table);
    let prefix = msg.header.destination_prefix_length;
    let mut route = Route {
        destination: None,
        gateway: None,
        oif: None,
    };
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Destination(d) => {
                route.destination = route_ip(d).map(|ip| (ip, prefix))
            }
            RouteAttribute::Gateway(g) => route.gateway = route_ip(g),
            RouteAttribute::Oif(o) => route.oif = Some(o),
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_exists_finds_loopback_and_not_a_made_up_name() {
        // Every network namespace has `lo`; no root needed to look.
        assert!(link_exists("lo").unwrap());
        assert!(!link_exists("berth-nope0").unwrap());
        assert!(matches!(
            link_exists("has space"),
            Err(LinkError::InvalidName(_))
        ));
    }

    #[test]
    fn parse_link_reads_what_the_library_would() {
        use netlink_packet_core::Emitable;
        let mut msg = LinkMessage::default();
        msg.header.index = 42;
        msg.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        msg.attributes = vec![
            LinkAttribute::IfName("br-0123456789ab".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Controller(7),
            LinkAttribute::Address(vec![2, 66, 172, 17, 0, 2]),
            LinkAttribute::TxQueueLen(1000),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        assert_eq!(
            parse_link(&buf),
            Some(Link {
                index: 42,
                name: "br-0123456789ab".into(),
                kind: Some("bridge".into()),
                mtu: Some(1400),
                up: true,
                master: Some(7),
                mac: Some(vec![2, 66, 172, 17, 0, 2]),
            })
        );
        let mut down = LinkMessage::default();
        down.header.index = 1;
        down.attributes = vec![LinkAttribute::IfName("lo".into())];
        let mut buf = vec![0; down.buffer_len()];
        down.emit(&mut buf);
        let lo = parse_link(&buf).unwrap();
        assert_eq!(
            (lo.index, lo.name.as_str(), lo.up, lo.kind),
            (1, "lo", false, None)
        );
        assert_eq!(parse_link(&buf[..8]), None);
    }

    #[test]
    fn bridge_name_uses_hex_id_prefix() {
        let id = "3f2a9c0d1e4b5a6978800112233445566778899aabbccddeeff00112233445566";
        assert_eq!(bridge_name(id), "br-3f2a9c0d1e4b");
        assert_eq!(bridge_name(id).len(), IFNAME_MAX);
    }

    #[test]
    fn bridge_name_hashes_other_ids() {
        let a = bridge_name("myproject_default");
        assert_eq!(a, bridge_name("myproject_default"));
        assert_ne!(a, bridge_name("myproject_backend"));
        assert_eq!(a.len(), IFNAME_MAX);
        assert!(a[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        check_ifname(&a).unwrap();
        // Too short to be an id prefix: hashed as well.
        assert_eq!(bridge_name("abc").len(), IFNAME_MAX);
    }

    #[test]
    fn veth_name_is_deterministic_and_short() {
        let a = veth_name("c0ffee", 0);
        assert_eq!(a, veth_name("c0ffee", 0));
        assert_ne!(a, veth_name("c0ffee", 1));
        assert_ne!(a, veth_name("c0ffef", 0));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("veth"));
        check_ifname(&a).unwrap();
    }

    #[test]
    fn ifname_rules() {
        check_ifname("eth0").unwrap();
        check_ifname("a23456789012345").unwrap();
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(check_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn invalid_name_error_is_readable() {
        let err = check_ifname("much-too-long-name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interface name \"much-too-long-name\": 1 to 15 bytes without '/', ':' or whitespace"
        );
    }
}
