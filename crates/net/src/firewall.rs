//! Published ports and NAT with nftables, in berth's own table (family `ip`).
//!
//! The whole table is a pure function of the desired state ([`ruleset_json`]). [`apply`]
//! replaces it in one atomic nft transaction (add the table so it exists, delete it, add it
//! again with all its chains and rules), so there is never a moment without rules; no other
//! table is ever touched. The JSON is built with the `nftables` crate's schema and piped to
//! `nft -j -f -` (run here, not through the crate's runner, so that nft's error message ends up
//! in the error instead of on stderr).
//!
//! The table's chains:
//! - `prerouting` (nat, hook prerouting, priority dstnat) and `output` (nat, hook output,
//!   priority -100) jump to `published` when the destination is a local address;
//! - `published` holds one DNAT rule per [`PortMap`];
//! - `postrouting` (nat, hook postrouting, priority srcnat) masquerades, per non-internal
//!   network: its subnet leaving by another interface than its bridge, loopback-sourced
//!   traffic leaving by its bridge (a published port reached on 127.0.0.1, which needs
//!   [`set_route_localnet`] on the bridge) and DNATed traffic from its subnet going back out its
//!   bridge (hairpin);
//! - `forward` (filter, hook forward, priority filter, policy accept) drops everything between
//!   an internal network's bridge and any other interface, then lets published (DNATed)
//!   traffic through, then drops traffic between two different berth bridges.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::ipam::IpNet;
use crate::link::check_ifname;

/// The nft program, looked up in `PATH`.
const NFT: &str = "nft";

/// Chain names inside berth's table.
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const PUBLISHED: &str = "published";
const POSTROUTING: &str = "postrouting";
const FORWARD: &str = "forward";

/// Netfilter priorities (`dstnat`, `srcnat`, `filter` in family ip).
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;
const PRIO_FILTER: i32 = 0;

/// Why a firewall operation failed; variants name the table, port mapping or file involved.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The table name is not one berth uses.
    #[error("invalid nftables table name {name:?}: {reason}")]
    InvalidTable {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A network's bridge name cannot be used in a rule (or for a sysctl).
    #[error("invalid bridge name {name:?}: {reason}")]
    InvalidBridge {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A port mapping is unusable, or clashes with another one.
    #[error("invalid port mapping {mapping}: {reason}")]
    InvalidPort {
        /// The mapping, as `[host_ip:]host_port->container_ip:container_port/protocol`.
        mapping: String,
        /// What is wrong with it.
        reason: String,
    },
    /// nft could not be run, or its input not written.
    #[error("run nft to {action} table {table}: {source}")]
    Spawn {
        /// What nft was run for ("replace", "remove", "list").
        action: &'static str,
        /// The table.
        table: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// nft ran and failed.
    #[error("nft failed to {action} table {table} ({status}): {message}")]
    Nft {
        /// What nft was run for ("replace", "remove", "list").
        action: &'static str,
        /// The table.
        table: String,
        /// nft's exit status.
        status: ExitStatus,
        /// What nft printed on stderr, trimmed.
        message: String,
    },
    /// The kernel could not be asked over netlink whether the table exists.
    #[error("ask the kernel for nftables table {table}: {source}")]
    Query {
        /// The table looked for.
        table: String,
        /// The socket error, or the kernel's answer when it was neither yes nor no.
        #[source]
        source: io::Error,
    },
    /// A sysctl file could not be written.
    #[error("write {}: {source}", path.display())]
    Sysctl {
        /// The file under `/proc/sys`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The protocol's name in nft (and compose): `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port: traffic to `host_ip:host_port` (any local address when `host_ip` is
/// `None`) goes to `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMap {
    /// The local address it is published on; `None` for all of them.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The container's address on a berth network.
    pub container_ip: Ipv4Addr,
    /// The port in the container.
    pub container_port: u16,
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}->{}:{}/{}",
            self.host_port, self.container_ip, self.container_port, self.protocol
        )
    }
}

/// One berth network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkRules {
    /// Its bridge interface.
    pub bridge: String,
    /// Its subnet.
    pub subnet: IpNet,
    /// An internal network: no masquerade, and its bridge exchanges nothing with any other
    /// interface.
    pub internal: bool,
}

/// The desired state of berth's table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The table's name (family `ip`).
    pub table: String,
    /// The berth networks.
    pub networks: Vec<NetworkRules>,
    /// The published ports.
    pub ports: Vec<PortMap>,
}

fn s(text: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(text.into()))
}

fn num(n: u16) -> Expression<'static> {
    Expression::Number(u32::from(n))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn prefix(addr: Ipv4Addr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr.to_string())),
        len: u32::from(len),
    }))
}

fn subnet(net: IpNet) -> Expression<'static> {
    prefix(net.network(), net.prefix())
}

fn set_of(items: &[&str]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.iter().map(|i| SetItem::Element(s(*i))).collect(),
    ))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

/// `fib daddr type local`
fn daddr_is_local() -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        s("local"),
    )
}

/// `ct status dnat`
fn ct_dnat() -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("status"),
            family: None,
            dir: None,
        })),
        Operator::IN,
        s("dnat"),
    )
}

fn masquerade() -> Statement<'static> {
    Statement::Masquerade(None)
}

fn drop_() -> Statement<'static> {
    Statement::Drop(None)
}

struct Builder {
    table: String,
    objects: Vec<NfObject<'static>>,
}

impl Builder {
    fn table(&self) -> Table<'static> {
        Table {
            family: NfFamily::IP,
            name: Cow::Owned(self.table.clone()),
            handle: None,
        }
    }

    fn add(&mut self, obj: NfListObject<'static>) {
        self.objects.push(NfObject::CmdObject(NfCmd::Add(obj)));
    }

    fn chain(&mut self, name: &'static str, base: Option<(NfChainType, NfHook, i32)>) {
        let (kind, hook, prio, policy) = match base {
            Some((kind, hook, prio)) => (
                Some(kind),
                Some(hook),
                Some(prio),
                Some(NfChainPolicy::Accept),
            ),
            None => (None, None, None, None),
        };
        self.add(NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Borrowed(name),
            newname: None,
            handle: None,
            _type: kind,
            hook,
            prio,
            dev: None,
            policy,
        }));
    }

    fn rule(&mut self, chain: &'static str, expr: Vec<Statement<'static>>) {
        self.add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: Cow::Owned(self.table.clone()),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: None,
        }));
    }
}

/// The nft JSON batch that replaces table `rs.table` (family `ip`) with the state `rs`
/// describes: add the table (so the delete cannot fail), delete it, add it again with all its
/// chains and rules. Pure: the same input gives the same output. [`apply`] validates the
/// names and ports before sending it.
pub fn ruleset_json(rs: &Ruleset) -> Nftables<'static> {
    let mut b = Builder {
        table: rs.table.clone(),
        objects: Vec::new(),
    };
    let table = b.table();
    b.add(NfListObject::Table(table.clone()));
    b.objects
        .push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
            table.clone(),
        ))));
    b.add(NfListObject::Table(table));

    b.chain(
        PREROUTING,
        Some((NfChainType::NAT, NfHook::Prerouting, PRIO_DSTNAT)),
    );
    b.chain(
        OUTPUT,
        Some((NfChainType::NAT, NfHook::Output, PRIO_DSTNAT)),
    );
    b.chain(PUBLISHED, None);
    b.chain(
        POSTROUTING,
        Some((NfChainType::NAT, NfHook::Postrouting, PRIO_SRCNAT)),
    );
    b.chain(
        FORWARD,
        Some((NfChainType::Filter, NfHook::Forward, PRIO_FILTER)),
    );

    // DNAT: from outside and from the host itself, to local addresses only.
    for chain in [PREROUTING, OUTPUT] {
        b.rule(
            chain,
            vec![
                daddr_is_local(),
                Statement::Jump(JumpTarget {
                    target: Cow::Borrowed(PUBLISHED),
                }),
            ],
        );
    }
    for port in &rs.ports {
        let mut expr = Vec::with_capacity(3);
        if let Some(ip) = port.host_ip {
            expr.push(eq(payload("ip", "daddr"), s(ip.to_string())));
        }
        expr.push(eq(
            payload(port.protocol.as_str(), "dport"),
            num(port.host_port),
        ));
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(s(port.container_ip.to_string())),
            family: None,
            port: Some(num(port.container_port)),
            flags: None,
        })));
        b.rule(PUBLISHED, expr);
    }

    // Masquerade, per non-internal network.
    for net in rs.networks.iter().filter(|n| !n.internal) {
        let bridge = || s(net.bridge.clone());
        b.rule(
            POSTROUTING,
            vec![
                eq(payload("ip", "saddr"), subnet(net.subnet)),
                matches(meta(MetaKey::Oifname), Operator::NEQ, bridge()),
                masquerade(),
            ],
        );
        b.rule(
            POSTROUTING,
            vec![
                eq(
                    payload("ip", "saddr"),
                    prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
                ),
                eq(meta(MetaKey::Oifname), bridge()),
                masquerade(),
            ],
        );
        b.rule(
            POSTROUTING,
            vec![
                eq(payload("ip", "saddr"), subnet(net.subnet)),
                eq(meta(MetaKey::Oifname), bridge()),
                ct_dnat(),
                masquerade(),
            ],
        );
    }

    // Forward filter: internal networks first, then published traffic, then isolation.
    for net in rs.networks.iter().filter(|n| n.internal) {
        let bridge = || s(net.bridge.clone());
        b.rule(
            FORWARD,
            vec![
                eq(meta(MetaKey::Iifname), bridge()),
                matches(meta(MetaKey::Oifname), Operator::NEQ, bridge()),
                drop_(),
            ],
        );
        b.rule(
            FORWARD,
            vec![
                eq(meta(MetaKey::Oifname), bridge()),
                matches(meta(MetaKey::Iifname), Operator::NEQ, bridge()),
                drop_(),
            ],
        );
    }
    let external: Vec<&str> = rs
        .networks
        .iter()
        .filter(|n| !n.internal)
        .map(|n| n.bridge.as_str())
        .collect();
    if external.len() > 1 {
        b.rule(FORWARD, vec![ct_dnat(), Statement::Accept(None)]);
        for (i, bridge) in external.iter().enumerate() {
            let others: Vec<&str> = external
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| *o)
                .collect();
            b.rule(
                FORWARD,
                vec![
                    eq(meta(MetaKey::Iifname), s(*bridge)),
                    eq(meta(MetaKey::Oifname), set_of(&others)),
                    drop_(),
                ],
            );
        }
    }

    Nftables {
        objects: Cow::Owned(b.objects),
    }
}

/// Checks a table name: 1 to 64 bytes, an ASCII letter then letters, digits, `_`, `-`, `.`.
fn check_table(name: &str) -> Result<(), FirewallError> {
    let invalid = |reason| FirewallError::InvalidTable {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("it must be 1 to 64 bytes"));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(invalid("it must start with an ascii letter"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(invalid(
            "only ascii letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    Ok(())
}

/// Checks a bridge name: a valid interface name of ASCII letters, digits, `_`, `-`, `.` (no
/// `*`, which nft reads as a wildcard), and not `all` or `default` (sysctl directories).
fn check_bridge(name: &str) -> Result<(), FirewallError> {
    let invalid = |reason| FirewallError::InvalidBridge {
        name: name.to_owned(),
        reason,
    };
    if check_ifname(name).is_err() {
        return Err(invalid("not a valid interface name"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "only ascii letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    if name == "all" || name == "default" {
        return Err(invalid(
            "the name of a sysctl directory, not of an interface",
        ));
    }
    Ok(())
}

/// Checks everything [`ruleset_json`] puts in the table: the table and bridge names, no
/// bridge twice, no port 0 and no two port mappings for the same host address, port and
/// protocol (a wildcard one clashes with every specific one).
pub fn validate(rs: &Ruleset) -> Result<(), FirewallError> {
    check_table(&rs.table)?;
    let mut bridges = HashSet::new();
    for net in &rs.networks {
        check_bridge(&net.bridge)?;
        if !bridges.insert(net.bridge.as_str()) {
            return Err(FirewallError::InvalidBridge {
                name: net.bridge.clone(),
                reason: "it is the bridge of two networks",
            });
        }
    }
    for (i, port) in rs.ports.iter().enumerate() {
        let invalid = |reason: String| FirewallError::InvalidPort {
            mapping: port.to_string(),
            reason,
        };
        if port.host_port == 0 || port.container_port == 0 {
            return Err(invalid("port 0 cannot be published".into()));
        }
        let clash = rs.ports[..i].iter().find(|other| {
            other.protocol == port.protocol
                && other.host_port == port.host_port
                && (other.host_ip.is_none()
                    || port.host_ip.is_none()
                    || other.host_ip == port.host_ip)
        });
        if let Some(other) = clash {
            return Err(invalid(format!("host port already published by {other}")));
        }
    }
    Ok(())
}

/// Runs `nft` with `args`, `input` on its stdin; its stdout on success.
fn run_nft(
    args: &[&str],
    input: Option<&[u8]>,
    action: &'static str,
    table: &str,
) -> Result<Vec<u8>, FirewallError> {
    let spawn_err = |source| FirewallError::Spawn {
        action,
        table: table.to_owned(),
        source,
    };
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // nft reads its whole input before it parses or prints anything, so writing it all
        // first cannot block on a full stdout or stderr pipe.
        let written = stdin.write_all(input);
        drop(stdin);
        if let Err(e) = written {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(e));
        }
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(FirewallError::Nft {
            action,
            table: table.to_owned(),
            status: out.status,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn run_batch(batch: &Nftables<'_>, action: &'static str, table: &str) -> Result<(), FirewallError> {
    let json = serde_json::to_vec(batch).map_err(|e| FirewallError::Spawn {
        action,
        table: table.to_owned(),
        source: io::Error::other(e),
    })?;
    run_nft(&["-j", "-f", "-"], Some(&json), action, table).map(drop)
}

/// Replaces table `rs.table` (family `ip`) with the rules for `rs`, atomically (one nft
/// transaction; see [`ruleset_json`]). Validates `rs` first ([`validate`]); nothing is sent
/// when it is invalid. Runs `nft` in the calling thread's network namespace.
pub fn apply(rs: &Ruleset) -> Result<(), FirewallError> {
    validate(rs)?;
    run_batch(&ruleset_json(rs), "replace", &rs.table)
}

/// Deletes table `table` (family `ip`) if it exists, in one transaction (add it, delete it);
/// removing a missing table is not an error.
pub fn remove(table: &str) -> Result<(), FirewallError> {
    check_table(table)?;
    let t = Table {
        family: NfFamily::IP,
        name: Cow::Borrowed(table),
        handle: None,
    };
    let batch = Nftables {
        objects: Cow::Owned(vec![
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t.clone()))),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(t))),
        ]),
    };
    run_batch(&batch, "remove", table)
}

/// Whether table `table` (family `ip`) exists in the calling thread's network namespace.
///
/// One `NFT_MSG_GETTABLE` request over a netfilter netlink socket, not an `nft` run: tens of
/// microseconds instead of tens of milliseconds, so a container's start and the supervisor's
/// rescan can afford to look (a `nft flush ruleset`, as a reload of Debian's nftables
/// service does, takes berth's table with everyone else's).
pub fn table_exists(table: &str) -> Result<bool, FirewallError> {
    check_table(table)?;
    let query = |source: io::Error| FirewallError::Query {
        table: table.to_owned(),
        source,
    };
    let mut socket =
        netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).map_err(query)?;
    socket.bind_auto().map_err(query)?;
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .map_err(query)?;
    const SEQ: u32 = 1;
    socket
        .send(&gettable_request(table, SEQ), 0)
        .map_err(query)?;
    loop {
        let (data, _) = socket.recv_from_full().map_err(query)?;
        if let Some(answer) = gettable_answer(&data, SEQ) {
            return answer.map_err(query);
        }
    }
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE`, and the answer's `NFT_MSG_NEWTABLE`.
const NFT_GETTABLE: u16 = (10 << 8) | 1;
const NLMSG_ERROR: u16 = 2;

/// The netlink message asking for table `name` of family `ip`: `nlmsghdr`, `nfgenmsg`
/// (family `NFPROTO_IPV4`, version 0), then the `NFTA_TABLE_NAME` attribute.
fn gettable_request(name: &str, seq: u32) -> Vec<u8> {
    let attr_len = 4 + name.len() + 1;
    let len = 16 + 4 + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&NFT_GETTABLE.to_ne_bytes());
    // NLM_F_REQUEST | NLM_F_ACK: the kernel ends its answer with an error message (0 = ok).
    m.extend_from_slice(&(0x1u16 | 0x4).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[2, 0, 0, 0]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes());
    m.extend_from_slice(name.as_bytes());
    m.resize(len, 0);
    m
}

/// What a datagram says of request `seq`: `Some(Ok(true))` once the kernel has sent the
/// table, `Some(Ok(false))` for `ENOENT`, another error as `Some(Err)`, `None` when the
/// datagram does not settle it (the table came alone, the ACK follows; a stale answer).
fn gettable_answer(data: &[u8], seq: u32) -> Option<io::Result<bool>> {
    let mut found = false;
    let mut rest = data;
    while rest.len() >= 16 {
        let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        let len = u32_at(rest, 0) as usize;
        if len < 16 || len > rest.len() {
            return Some(Err(io::Error::other(format!(
                "bad netlink message length {len}"
            ))));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if u32_at(rest, 8) == seq {
            match kind {
                NLMSG_ERROR if len >= 20 => {
                    let code = i32::from_ne_bytes(rest[16..20].try_into().unwrap());
                    return Some(match code {
                        0 => Ok(true),
                        c if c == -nix::libc::ENOENT => Ok(false),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    });
                }
                k if k == NFT_GETTABLE - 1 => found = true,
                _ => {}
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    found.then_some(Ok(true))
}

fn write_sysctl(path: &Path) -> Result<(), FirewallError> {
    fs::write(path, b"1").map_err(|source| FirewallError::Sysctl {
        path: path.to_owned(),
        source,
    })
}

/// Turns on IPv4 forwarding (`/proc/sys/net/ipv4/ip_forward` = 1) in the calling thread's
/// network namespace.
pub fn enable_ip_forward() -> Result<(), FirewallError> {
    write_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward"))
}

/// Lets `bridge` carry traffic from and to 127.0.0.0/8
/// (`/proc/sys/net/ipv4/conf/<bridge>/route_localnet` = 1), so a port published on 127.0.0.1
/// reaches the container; in the calling thread's network namespace.
pub fn set_route_localnet(bridge: &str) -> Result<(), FirewallError> {
    check_bridge(bridge)?;
    write_sysctl(&route_localnet_path(bridge))
}

fn route_localnet_path(bridge: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn net(bridge: &str, subnet: &str, internal: bool) -> NetworkRules {
        NetworkRules {
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            internal,
        }
    }

    fn port(host_ip: Option<[u8; 4]>, host_port: u16, protocol: Protocol) -> PortMap {
        PortMap {
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            protocol,
            container_ip: Ipv4Addr::new(10, 93, 7, 2),
            container_port: 80,
        }
    }

    fn sample() -> Ruleset {
        Ruleset {
            table: "berth".into(),
            networks: vec![
                net("br-a", "10.93.7.0/24", false),
                net("br-b", "10.93.8.0/24", false),
                net("br-int", "10.93.9.0/24", true),
            ],
            ports: vec![
                port(Some([127, 0, 0, 1]), 8080, Protocol::Tcp),
                port(None, 5353, Protocol::Udp),
                port(None, 8443, Protocol::Tcp),
            ],
        }
    }

    /// The batch as nft reads it.
    fn batch(rs: &Ruleset) -> Vec<Value> {
        match serde_json::to_value(ruleset_json(rs)).unwrap() {
            Value::Object(mut o) => match o.remove("nftables") {
                Some(Value::Array(a)) => a,
                other => panic!("no nftables array: {other:?}"),
            },
            other => panic!("not an object: {other}"),
        }
    }

    /// The `expr` lists of the rules added to `chain`, in order.
    fn rules(batch: &[Value], chain: &str) -> Vec<Vec<Value>> {
        batch
            .iter()
            .filter_map(|o| o.pointer("/add/rule"))
            .filter(|r| r["chain"] == chain)
            .map(|r| {
                assert_eq!(r["table"], "berth");
                assert_eq!(r["family"], "ip");
                r["expr"].as_array().unwrap().clone()
            })
            .collect()
    }

    fn mentions(rule: &[Value], text: &str) -> bool {
        serde_json::to_string(rule).unwrap().contains(text)
    }

    #[test]
    fn table_is_replaced_in_one_batch() {
        let b = batch(&sample());
        let table = json!({"family": "ip", "name": "berth"});
        assert_eq!(b[0], json!({"add": {"table": table}}));
        assert_eq!(b[1], json!({"delete": {"table": table}}));
        assert_eq!(b[2], json!({"add": {"table": table}}));
        // Nothing after that touches another table or deletes anything.
        for obj in &b[3..] {
            let (cmd, body) = obj.as_object().unwrap().iter().next().unwrap();
            assert_eq!(cmd, "add", "{obj}");
            let inner = body.as_object().unwrap().values().next().unwrap();
            assert_eq!(inner["table"], "berth", "{obj}");
        }
    }

    #[test]
    fn chains_have_their_hooks_and_priorities() {
        let b = batch(&sample());
        let chains: Vec<&Value> = b.iter().filter_map(|o| o.pointer("/add/chain")).collect();
        let find = |name: &str| {
            *chains
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("no chain {name}"))
        };
        assert_eq!(chains.len(), 5);
        for (name, kind, hook, prio) in [
            ("prerouting", "nat", "prerouting", -100),
            ("output", "nat", "output", -100),
            ("postrouting", "nat", "postrouting", 100),
            ("forward", "filter", "forward", 0),
        ] {
            let c = find(name);
            assert_eq!(c["type"], kind, "{c}");
            assert_eq!(c["hook"], hook, "{c}");
            assert_eq!(c["prio"], prio, "{c}");
            assert_eq!(c["policy"], "accept", "{c}");
        }
        let published = find("published");
        assert!(published.get("hook").is_none(), "{published}");
        // Both nat entry points jump to the port rules for local destinations only.
        for chain in ["prerouting", "output"] {
            let r = rules(&b, chain);
            assert_eq!(r.len(), 1);
            assert_eq!(
                r[0],
                vec![
                    json!({"match": {"left": {"fib": {"result": "type", "flags": ["daddr"]}},
                                     "right": "local", "op": "=="}}),
                    json!({"jump": {"target": "published"}}),
                ]
            );
        }
    }

    #[test]
    fn one_dnat_rule_per_port() {
        let rs = sample();
        let b = batch(&rs);
        let published = rules(&b, "published");
        assert_eq!(published.len(), rs.ports.len());
        // A specific host address is matched; a wildcard matches any (local) address.
        assert_eq!(
            published[0],
            vec![
                json!({"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                 "right": "127.0.0.1", "op": "=="}}),
                json!({"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                 "right": 8080, "op": "=="}}),
                json!({"dnat": {"addr": "10.93.7.2", "port": 80}}),
            ]
        );
        assert_eq!(
            published[1],
            vec![
                json!({"match": {"left": {"payload": {"protocol": "udp", "field": "dport"}},
                                 "right": 5353, "op": "=="}}),
                json!({"dnat": {"addr": "10.93.7.2", "port": 80}}),
            ]
        );
        assert!(mentions(&published[2], "8443"));
        // No ports: the chain exists and is empty.
        let empty = Ruleset {
            ports: vec![],
            ..rs
        };
        assert!(rules(&batch(&empty), "published").is_empty());
    }

    #[test]
    fn masquerade_per_external_network_none_for_internal() {
        let b = batch(&sample());
        let post = rules(&b, "postrouting");
        assert_eq!(post.len(), 6, "3 per non-internal network: {post:?}");
        assert!(
            post.iter()
                .all(|r| r.last() == Some(&json!({"masquerade": null})))
        );
        assert!(
            !post
                .iter()
                .any(|r| mentions(r, "br-int") || mentions(r, "10.93.9.0"))
        );
        let a: Vec<&Vec<Value>> = post.iter().filter(|r| mentions(r, "\"br-a\"")).collect();
        assert_eq!(a.len(), 3);
        let subnet = json!({"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}},
                                      "right": {"prefix": {"addr": "10.93.7.0", "len": 24}},
                                      "op": "=="}});
        // Leaving by another interface.
        assert_eq!(a[0][0], subnet);
        assert_eq!(
            a[0][1],
            json!({"match": {"left": {"meta": {"key": "oifname"}}, "right": "br-a", "op": "!="}})
        );
        // Loopback-sourced, out the bridge.
        assert!(mentions(a[1], "\"127.0.0.0\""), "{:?}", a[1]);
        // Hairpin: DNATed, from the subnet, back out the bridge.
        assert_eq!(a[2][0], subnet);
        assert!(
            a[2].contains(&json!({"match": {"left": {"ct": {"key": "status"}},
                                               "right": "dnat", "op": "in"}}))
        );
    }

    #[test]
    fn forward_isolates_networks() {
        let b = batch(&sample());
        let fwd = rules(&b, "forward");
        let drop = json!({"drop": null});
        // Internal: nothing in, nothing out, before anything is accepted.
        assert_eq!(fwd.len(), 5, "{fwd:?}");
        for r in &fwd[..2] {
            assert!(mentions(r, "\"br-int\""));
            assert_eq!(r.last(), Some(&drop));
            assert!(mentions(r, "\"!=\""));
        }
        assert!(mentions(&fwd[0], "iifname") && mentions(&fwd[1], "oifname"));
        // Published ports are reachable from other networks.
        assert_eq!(fwd[2].last(), Some(&json!({"accept": null})));
        assert!(mentions(&fwd[2], "dnat"));
        // Between the two external bridges: dropped both ways.
        assert_eq!(
            fwd[3],
            vec![
                json!({"match": {"left": {"meta": {"key": "iifname"}}, "right": "br-a", "op": "=="}}),
                json!({"match": {"left": {"meta": {"key": "oifname"}},
                                 "right": {"set": ["br-b"]}, "op": "=="}}),
                drop.clone(),
            ]
        );
        assert!(mentions(&fwd[4], "\"br-b\"") && mentions(&fwd[4], "[\"br-a\"]"));
        // A single network needs no isolation.
        let one = Ruleset {
            networks: vec![net("br-a", "10.93.7.0/24", false)],
            ..sample()
        };
        assert!(rules(&batch(&one), "forward").is_empty());
    }

    #[test]
    fn json_is_a_pure_function_of_the_state() {
        let a = serde_json::to_string(&ruleset_json(&sample())).unwrap();
        assert_eq!(a, serde_json::to_string(&ruleset_json(&sample())).unwrap());
        let mut other = sample();
        other.ports.pop();
        assert_ne!(a, serde_json::to_string(&ruleset_json(&other)).unwrap());
    }

    #[test]
    fn validate_accepts_sample_and_rejects_bad_names() {
        validate(&sample()).unwrap();
        for table in ["", "9lives", "a b", "x\"y", &"t".repeat(65)] {
            let rs = Ruleset {
                table: table.into(),
                ..sample()
            };
            assert!(
                matches!(validate(&rs), Err(FirewallError::InvalidTable { .. })),
                "{table:?}"
            );
        }
        for bridge in ["br*", "", "all", "a-name-far-too-long", "br\"x"] {
            let mut rs = sample();
            rs.networks[0].bridge = bridge.into();
            let err = validate(&rs).unwrap_err();
            assert!(
                matches!(err, FirewallError::InvalidBridge { .. }),
                "{bridge:?}"
            );
        }
        let mut rs = sample();
        rs.networks[1].bridge = "br-a".into();
        let err = validate(&rs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid bridge name \"br-a\": it is the bridge of two networks"
        );
    }

    #[test]
    fn validate_rejects_clashing_ports() {
        // The same port on another protocol or another specific address is fine.
        let mut rs = sample();
        rs.ports.push(port(None, 8080 + 1, Protocol::Udp));
        rs.ports
            .push(port(Some([127, 0, 0, 2]), 8080, Protocol::Tcp));
        rs.ports.push(port(None, 8080, Protocol::Udp));
        validate(&rs).unwrap();
        // A wildcard clashes with a specific address, and the same address with itself.
        for dup in [
            port(None, 8080, Protocol::Tcp),
            port(Some([127, 0, 0, 1]), 8080, Protocol::Tcp),
            port(Some([10, 0, 0, 1]), 8443, Protocol::Tcp),
        ] {
            let mut rs = sample();
            rs.ports.push(dup);
            let err = validate(&rs).unwrap_err();
            assert!(
                err.to_string().contains("already published by"),
                "{dup}: {err}"
            );
        }
        let mut rs = sample();
        rs.ports[1].container_port = 0;
        let err = validate(&rs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port mapping 5353->10.93.7.2:0/udp: port 0 cannot be published"
        );
    }

    #[test]
    fn port_map_display() {
        assert_eq!(
            port(Some([127, 0, 0, 1]), 8080, Protocol::Tcp).to_string(),
            "127.0.0.1:8080->10.93.7.2:80/tcp"
        );
        assert_eq!(
            port(None, 53, Protocol::Udp).to_string(),
            "53->10.93.7.2:80/udp"
        );
    }

    #[test]
    fn bad_names_are_refused_before_running_anything() {
        assert!(matches!(
            remove("bad name"),
            Err(FirewallError::InvalidTable { .. })
        ));
        assert!(matches!(
            table_exists(""),
            Err(FirewallError::InvalidTable { .. })
        ));
        assert!(matches!(
            set_route_localnet("all"),
            Err(FirewallError::InvalidBridge { .. })
        ));
        assert!(matches!(
            set_route_localnet("../x"),
            Err(FirewallError::InvalidBridge { .. })
        ));
    }

    /// A netlink message as the kernel would send it: header, then `payload`, padded.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    fn error(seq: u32, code: i32) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the request's header, echoed
        message(NLMSG_ERROR, seq, &payload)
    }

    #[test]
    fn the_table_query_is_a_gettable_request_naming_the_table() {
        let m = gettable_request("berth_1a2b", 7);
        // Header, nfgenmsg, then a 4-byte attribute header and the NUL-terminated name,
        // padded to 4.
        assert_eq!(m.len(), 16 + 4 + 16);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0a01);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(m[16], 2, "family ip is NFPROTO_IPV4");
        assert_eq!(u16::from_ne_bytes([m[20], m[21]]), 15);
        assert_eq!(u16::from_ne_bytes([m[22], m[23]]), 1, "NFTA_TABLE_NAME");
        assert_eq!(&m[24..35], b"berth_1a2b\0");
    }

    #[test]
    fn the_kernels_answers_say_whether_the_table_exists() {
        let table = message(0x0a00, 3, &[2, 0, 0, 0]);
        // The table then the ACK, in one datagram or two.
        assert!(matches!(
            gettable_answer(&[table.clone(), error(3, 0)].concat(), 3),
            Some(Ok(true))
        ));
        assert!(matches!(gettable_answer(&table, 3), Some(Ok(true))));
        assert!(matches!(
            gettable_answer(&error(3, -nix::libc::ENOENT), 3),
            Some(Ok(false))
        ));
        let denied = gettable_answer(&error(3, -nix::libc::EPERM), 3)
            .unwrap()
            .unwrap_err();
        assert_eq!(denied.raw_os_error(), Some(nix::libc::EPERM));
        // An answer to another request settles nothing.
        assert!(gettable_answer(&error(2, -nix::libc::ENOENT), 3).is_none());
        assert!(gettable_answer(&message(0x0a00, 2, &[2, 0, 0, 0]), 3).is_none());
        // A length that runs past the datagram is an error, not a panic.
        let mut bad = error(3, 0);
        bad[0] = 200;
        assert!(matches!(gettable_answer(&bad, 3), Some(Err(_))));
    }
}
