//! The embedded DNS server: one resolver per bridge network, all served by one [`Server`].
//!
//! Each [`Zone`] is a network: a listener on its gateway address (UDP and TCP, port 53 in
//! production) answering the names of the containers on it and forwarding every other query to
//! the host's nameservers (unless the network is `internal`). Records change while containers
//! come and go: [`Server::apply`] swaps a zone's data in place and never closes a listener that
//! is still wanted, so no query is lost to a restart.
//!
//! The server runs on whatever tokio runtime calls [`Server::apply`] (a current-thread one is
//! enough): each listener is a task, each forwarded UDP query and each TCP connection another.
//! Messages are parsed and built with `hickory-proto`; forwarded queries are relayed byte for
//! byte, so the upstream's answer keeps the client's id and flags.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// How long one upstream gets to answer a forwarded query before the next one is tried.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP connection that sends no complete query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Forwarded UDP queries in flight per listener; past that, new ones get SERVFAIL at once.
const MAX_UDP_FORWARDS: usize = 256;
/// Open TCP connections per listener; past that, new ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 128;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The largest DNS message (UDP datagram or TCP frame).
const MAX_MESSAGE: usize = 65_535;
/// The UDP payload size this server announces in its own EDNS answers.
const EDNS_PAYLOAD: u16 = 1232;
/// The size of a DNS header.
const HEADER_LEN: usize = 12;

/// Why the server could not serve a zone.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listening socket could not be created, configured or bound.
    #[error("bind dns {proto} listener on {addr}: {source}")]
    Bind {
        /// "udp" or "tcp".
        proto: &'static str,
        /// The zone's listen address.
        addr: SocketAddrV4,
        /// The error from the socket call.
        #[source]
        source: io::Error,
    },
    /// Two zones of one configuration have the same listen address; the first one is served.
    #[error("two dns zones listen on {0}")]
    DuplicateListen(SocketAddrV4),
}

/// One network's resolver: where it listens and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The listen address: the network's gateway, port 53, in production.
    pub listen: SocketAddrV4,
    /// Names (container names, service names, aliases) and their addresses. Names match
    /// case-insensitively with or without a trailing dot; several addresses are answered in
    /// rotation. A name with no address is known but has no `A` record (NOERROR, empty).
    pub records: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Whether unknown names are forwarded upstream (false for `internal` networks).
    pub forward: bool,
    /// Names answered only to one client address (after `records`): a container attached to
    /// several networks asks one network's resolver, and sees the names of all of them.
    pub client_records: BTreeMap<Ipv4Addr, BTreeMap<String, Vec<Ipv4Addr>>>,
    /// Upstreams of one client address, used instead of the server's: a container's own
    /// `dns` servers, which Docker's embedded resolver forwards that container's queries to.
    pub client_upstreams: BTreeMap<Ipv4Addr, Vec<SocketAddr>>,
}

/// The whole server's configuration: every zone to serve, and the upstream nameservers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The zones; one listener (UDP and TCP) each.
    pub zones: Vec<Zone>,
    /// Upstream nameservers, tried in order (see [`upstreams_from_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
}

/// The DNS server for all networks: listeners keyed by their address, each with its zone data.
pub struct Server {
    listeners: Mutex<BTreeMap<SocketAddrV4, Listener>>,
    /// Serialises [`Server::apply`] calls, so two never bind or close the same address.
    applying: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listening", &self.listening())
            .finish()
    }
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// A server with no zone; nothing listens until [`Server::apply`].
    pub fn new() -> Server {
        Server {
            listeners: Mutex::new(BTreeMap::new()),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// Makes the server serve `config`: binds UDP+TCP listeners for zones whose `listen` is
    /// new, closes those of zones that are gone (their ports are free when this returns), and
    /// swaps the records of all others without touching their sockets. Errors (one per zone
    /// that could not be served) are returned; the other zones keep working, and a zone that
    /// failed is bound again by the next `apply` that lists it.
    ///
    /// Must be called from within a tokio runtime: the listeners are tasks spawned on it.
    pub async fn apply(&self, config: Config) -> Result<(), Vec<DnsError>> {
        let _serial = self.applying.lock().await;
        let mut errors = Vec::new();

        // Never forward to one of our own listeners: that would be a loop.
        let upstreams: Arc<[SocketAddr]> = config
            .upstreams
            .iter()
            .filter(|up| {
                !config
                    .zones
                    .iter()
                    .any(|z| **up == SocketAddr::V4(z.listen))
            })
            .copied()
            .collect();
        let ours = |up: &SocketAddr| config.zones.iter().any(|z| *up == SocketAddr::V4(z.listen));
        let mut wanted = BTreeMap::new();
        for zone in &config.zones {
            if wanted.contains_key(&zone.listen) {
                errors.push(DnsError::DuplicateListen(zone.listen));
                continue;
            }
            let mut data = ZoneData::new(zone, upstreams.clone());
            data.client_upstreams = zone
                .client_upstreams
                .iter()
                .map(|(client, ups)| {
                    let ups: Arc<[SocketAddr]> =
                        ups.iter().filter(|up| !ours(up)).copied().collect();
                    (*client, ups)
                })
                .collect();
            wanted.insert(zone.listen, data);
        }

        let gone: Vec<Listener> = {
            let mut listeners = self.lock();
            let addrs: Vec<SocketAddrV4> = listeners
                .keys()
                .filter(|addr| !wanted.contains_key(addr))
                .copied()
                .collect();
            addrs
                .iter()
                .filter_map(|addr| listeners.remove(addr))
                .collect()
        };
        // Abort all first: if this future is dropped midway, none is left running detached.
        for listener in &gone {
            listener.abort();
        }
        for listener in gone {
            listener.closed().await;
        }

        for (addr, data) in wanted {
            let mut listeners = self.lock();
            if let Some(listener) = listeners.get(&addr) {
                listener.data.send_replace(Arc::new(data));
                continue;
            }
            match Listener::bind(addr, data) {
                Ok(listener) => {
                    listeners.insert(addr, listener);
                }
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The addresses listened on (UDP and TCP each), in ascending order.
    pub fn listening(&self) -> Vec<SocketAddrV4> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddrV4, Listener>> {
        // The lock is never held across code that can panic; a poisoned map is still valid.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for listener in self.lock().values() {
            listener.abort();
        }
    }
}

/// Upstream nameservers from resolv.conf text: the address of each `nameserver` line, port 53,
/// in order, without duplicates. IPv6 addresses are kept; lines that do not parse (a scoped
/// `fe80::1%eth0`, garbage) and unspecified addresses are skipped. Comments (`#`, `;`) are
/// ignored. A text without nameservers gives an empty list: no default is made up.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        if !ip.is_unspecified() && !upstreams.contains(&addr) {
            upstreams.push(addr);
        }
    }
    upstreams
}

/// One zone's listening tasks and the channel its data is swapped through.
struct Listener {
    data: watch::Sender<Arc<ZoneData>>,
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl Listener {
    fn bind(addr: SocketAddrV4, data: ZoneData) -> Result<Listener, DnsError> {
        let udp = bind_socket(addr, "udp")?;
        let tcp = bind_socket(addr, "tcp")?;
        let bind_err = |proto| {
            move |source| DnsError::Bind {
                proto,
                addr,
                source,
            }
        };
        tcp.listen(1024).map_err(bind_err("tcp"))?;
        let udp = UdpSocket::from_std(udp.into()).map_err(bind_err("udp"))?;
        let tcp = TcpListener::from_std(tcp.into()).map_err(bind_err("tcp"))?;
        let (data, rx) = watch::channel(Arc::new(data));
        Ok(Listener {
            data,
            udp: tokio::spawn(serve_udp(udp, rx.clone())),
            tcp: tokio::spawn(serve_tcp(tcp, rx)),
        })
    }

    /// Asks both tasks to stop.
    fn abort(&self) {
        self.udp.abort();
        self.tcp.abort();
    }

    /// Waits until both aborted tasks are gone, so their sockets are closed: a cancelled
    /// task's future (and so its socket) is dropped before its handle resolves.
    async fn closed(self) {
        let _ = self.udp.await;
        let _ = self.tcp.await;
    }
}

/// A non-blocking socket bound to `addr` with `SO_REUSEADDR` and `IP_FREEBIND` (the gateway
/// address may not be on the bridge yet).
fn bind_socket(addr: SocketAddrV4, proto: &'static str) -> Result<Socket, DnsError> {
    let err = |source| DnsError::Bind {
        proto,
        addr,
        source,
    };
    let (ty, protocol) = if proto == "tcp" {
        (Type::STREAM, Protocol::TCP)
    } else {
        (Type::DGRAM, Protocol::UDP)
    };
    let socket = Socket::new(Domain::IPV4, ty, Some(protocol)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_freebind_v4(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket)
}

/// A zone's data as the listeners use it: normalised names, the reverse map, the upstreams.
#[derive(Debug)]
struct ZoneData {
    names: BTreeMap<String, Entry>,
    /// Per client address, the extra names it may see.
    client_names: BTreeMap<Ipv4Addr, BTreeMap<String, Entry>>,
    /// Each address and the first name (in name order) that holds it.
    reverse: BTreeMap<Ipv4Addr, String>,
    forward: bool,
    upstreams: Arc<[SocketAddr]>,
    /// Per client address, upstreams of its own (ours filtered out) instead of `upstreams`.
    client_upstreams: BTreeMap<Ipv4Addr, Arc<[SocketAddr]>>,
}

/// A name's addresses and its round-robin position.
#[derive(Debug)]
struct Entry {
    addrs: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl ZoneData {
    fn new(zone: &Zone, upstreams: Arc<[SocketAddr]>) -> ZoneData {
        let merged = merge_names(&zone.records);
        let mut reverse = BTreeMap::new();
        for (name, addrs) in &merged {
            for addr in addrs {
                reverse.entry(*addr).or_insert_with(|| name.clone());
            }
        }
        ZoneData {
            names: entries(merged),
            client_names: zone
                .client_records
                .iter()
                .map(|(client, records)| (*client, entries(merge_names(records))))
                .collect(),
            reverse,
            forward: zone.forward,
            client_upstreams: zone
                .client_upstreams
                .iter()
                .map(|(client, ups)| (*client, ups.as_slice().into()))
                .collect(),
            upstreams,
        }
    }

    /// Where `client`'s unanswered queries go: its own upstreams, else the server's.
    fn upstreams_for(&self, client: Option<Ipv4Addr>) -> Arc<[SocketAddr]> {
        client
            .and_then(|c| self.client_upstreams.get(&c))
            .unwrap_or(&self.upstreams)
            .clone()
    }

    /// `name`'s entry: the zone's own, else one only `client` sees.
    fn lookup(&self, name: &str, client: Option<Ipv4Addr>) -> Option<&Entry> {
        self.names.get(name).or_else(|| {
            client
                .and_then(|c| self.client_names.get(&c))
                .and_then(|names| names.get(name))
        })
    }

    fn can_forward(&self, client: Option<Ipv4Addr>) -> bool {
        self.forward && !self.upstreams_for(client).is_empty()
    }
}

impl Entry {
    /// The addresses, rotated one further than the previous call's.
    fn rotated(&self) -> Vec<Ipv4Addr> {
        let mut addrs = self.addrs.clone();
        if !addrs.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(start);
        }
        addrs
    }
}

/// Records with normalised names, duplicates merged.
fn merge_names(records: &BTreeMap<String, Vec<Ipv4Addr>>) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut merged: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for (name, addrs) in records {
        let list = merged.entry(normalize(name)).or_default();
        for addr in addrs {
            if !list.contains(addr) {
                list.push(*addr);
            }
        }
    }
    merged
}

fn entries(merged: BTreeMap<String, Vec<Ipv4Addr>>) -> BTreeMap<String, Entry> {
    merged
        .into_iter()
        .map(|(name, addrs)| {
            let entry = Entry {
                addrs,
                next: AtomicUsize::new(0),
            };
            (name, entry)
        })
        .collect()
}

/// Lower case, without one trailing dot.
fn normalize(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// The IPv4 address of a normalised `d.c.b.a.in-addr.arpa` name.
fn parse_reverse(name: &str) -> Option<Ipv4Addr> {
    let labels = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = labels.split('.');
    for octet in octets.iter_mut().rev() {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Which transport a query came over: UDP answers must fit the client's payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// What to do with a received packet.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Forward the query upstream; send `servfail` back if no upstream answers.
    Forward { servfail: Vec<u8> },
    /// Not a query (an answer, too short to have an id): drop it.
    Ignore,
}

/// Decides how to answer `packet` from `zone`'s data, for a query from `client`.
fn answer(
    zone: &ZoneData,
    packet: &[u8],
    transport: Transport,
    client: Option<Ipv4Addr>,
) -> Action {
    let query = match Message::from_vec(packet) {
        Ok(query) => query,
        Err(_) => return format_error(packet),
    };
    if query.metadata.message_type != MessageType::Query {
        return Action::Ignore;
    }
    if query.metadata.op_code != OpCode::Query {
        return reply(
            response(&query, zone, ResponseCode::NotImp, client),
            transport,
        );
    }
    let [question] = query.queries.as_slice() else {
        return reply(
            response(&query, zone, ResponseCode::FormErr, client),
            transport,
        );
    };
    let name = normalize(&question.name().to_ascii());
    let in_class = question.query_class() == DNSClass::IN;

    if let Some(entry) = zone.lookup(&name, client) {
        let mut message = response(&query, zone, ResponseCode::NoError, client);
        message.metadata.authoritative = true;
        if in_class && question.query_type() == RecordType::A {
            for addr in entry.rotated() {
                let record = Record::from_rdata(question.name().clone(), 0, RData::A(A(addr)));
                message.add_answer(record);
            }
        }
        return reply(message, transport);
    }

    if in_class
        && question.query_type() == RecordType::PTR
        && let Some(owner) = parse_reverse(&name).and_then(|addr| zone.reverse.get(&addr))
        && let Ok(target) = Name::from_ascii(format!("{owner}."))
    {
        let mut message = response(&query, zone, ResponseCode::NoError, client);
        message.metadata.authoritative = true;
        let record = Record::from_rdata(question.name().clone(), 0, RData::PTR(PTR(target)));
        message.add_answer(record);
        return reply(message, transport);
    }

    let Ok(servfail) = response(&query, zone, ResponseCode::ServFail, client).to_vec() else {
        return Action::Ignore;
    };
    if zone.can_forward(client) {
        Action::Forward { servfail }
    } else {
        Action::Reply(servfail)
    }
}

/// A response to `query` with its id, question and RD/CD bits, and EDNS if it had EDNS.
fn response(
    query: &Message,
    zone: &ZoneData,
    code: ResponseCode,
    client: Option<Ipv4Addr>,
) -> Message {
    let mut message = Message::response(query.metadata.id, query.metadata.op_code);
    message.metadata.recursion_desired = query.metadata.recursion_desired;
    message.metadata.checking_disabled = query.metadata.checking_disabled;
    message.metadata.recursion_available = zone.can_forward(client);
    message.metadata.response_code = code;
    message.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message
}

/// Encodes `message`; over UDP, one larger than the client's payload size is sent truncated
/// (TC set, no records), so the client retries over TCP.
fn reply(message: Message, transport: Transport) -> Action {
    let Ok(bytes) = message.to_vec() else {
        return Action::Ignore;
    };
    let limit = usize::from(message.max_payload().clamp(512, EDNS_PAYLOAD));
    if transport == Transport::Tcp || bytes.len() <= limit {
        return Action::Reply(bytes);
    }
    match message.truncate().to_vec() {
        Ok(bytes) => Action::Reply(bytes),
        Err(_) => Action::Ignore,
    }
}

/// FORMERR for a query that did not parse, if it has a header that says it is a query.
fn format_error(packet: &[u8]) -> Action {
    let Some(header) = packet.get(..HEADER_LEN) else {
        return Action::Ignore;
    };
    if header[2] & 0x80 != 0 {
        return Action::Ignore;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let op_code = OpCode::from_u8((header[2] >> 3) & 0x0f);
    let mut message = Message::error_msg(id, op_code, ResponseCode::FormErr);
    message.metadata.recursion_desired = header[2] & 0x01 != 0;
    match message.to_vec() {
        Ok(bytes) => Action::Reply(bytes),
        Err(_) => Action::Ignore,
    }
}

/// Serves one zone's UDP socket: local answers inline, forwarded queries as tasks whose
/// answers come back through a channel (only this task owns the socket).
async fn serve_udp(socket: UdpSocket, data: watch::Receiver<Arc<ZoneData>>) {
    let (replies_tx, mut replies) = mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let mut forwards = JoinSet::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, peer)) = received else { continue };
                let zone = data.borrow().clone();
                let client = client_v4(peer);
                match answer(&zone, &buf[..len], Transport::Udp, client) {
                    Action::Reply(bytes) => {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    Action::Forward { servfail } if forwards.len() >= MAX_UDP_FORWARDS => {
                        let _ = socket.send_to(&servfail, peer).await;
                    }
                    Action::Forward { servfail } => {
                        let query = buf[..len].to_vec();
                        let replies_tx = replies_tx.clone();
                        forwards.spawn(async move {
                            let bytes = forward_udp(&zone.upstreams_for(client), &query)
                                .await
                                .unwrap_or(servfail);
                            let _ = replies_tx.send((bytes, peer)).await;
                        });
                    }
                    Action::Ignore => {}
                }
            }
            Some((bytes, peer)) = replies.recv() => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
}

/// Accepts TCP connections for one zone, a task each (aborted with this one).
async fn serve_tcp(listener: TcpListener, data: watch::Receiver<Arc<ZoneData>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_TCP_CONNECTIONS => {
                    connections.spawn(serve_tcp_connection(stream, data.clone()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Answers length-prefixed queries on one connection, one after another, until the client
/// closes it, sends garbage or stays idle too long. Each query sees the zone's current data.
async fn serve_tcp_connection(mut stream: TcpStream, data: watch::Receiver<Arc<ZoneData>>) {
    let client = stream.peer_addr().ok().and_then(client_v4);
    loop {
        let Ok(Ok(Some(query))) = timeout(TCP_IDLE_TIMEOUT, read_frame(&mut stream)).await else {
            return;
        };
        let zone = data.borrow().clone();
        let bytes = match answer(&zone, &query, Transport::Tcp, client) {
            Action::Reply(bytes) => bytes,
            Action::Forward { servfail } => forward_tcp(&zone.upstreams_for(client), &query)
                .await
                .unwrap_or(servfail),
            Action::Ignore => return,
        };
        if write_frame(&mut stream, &bytes).await.is_err() {
            return;
        }
    }
}

fn client_v4(peer: SocketAddr) -> Option<Ipv4Addr> {
    match peer {
        SocketAddr::V4(v4) => Some(*v4.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// Reads one 2-byte-length-prefixed message; `None` at a clean end of stream.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

/// Writes one message with its 2-byte length prefix.
async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "dns message over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).await
}

/// The query's id, if it has a header.
fn message_id(message: &[u8]) -> Option<[u8; 2]> {
    Some([*message.first()?, *message.get(1)?])
}

/// Whether `answer` is a response (QR set) with id `id`.
fn is_answer_to(answer: &[u8], id: [u8; 2]) -> bool {
    answer.len() >= HEADER_LEN && answer[..2] == id && answer[2] & 0x80 != 0
}

/// Sends `query` to each upstream in turn over UDP until one answers within
/// [`FORWARD_TIMEOUT`]; the answer's bytes as they came, truncated or not.
async fn forward_udp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = message_id(query)?;
    for upstream in upstreams {
        if let Ok(Ok(bytes)) = timeout(FORWARD_TIMEOUT, udp_exchange(*upstream, query, id)).await {
            return Some(bytes);
        }
    }
    None
}

/// One UDP exchange from a fresh socket (a new random source port per query), connected to
/// the upstream so only its datagrams are read; answers with another id are skipped.
async fn udp_exchange(upstream: SocketAddr, query: &[u8], id: [u8; 2]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..len], id) {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

/// Sends `query` to each upstream in turn over TCP until one answers within
/// [`FORWARD_TIMEOUT`] (connecting included).
async fn forward_tcp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = message_id(query)?;
    for upstream in upstreams {
        if let Ok(Ok(bytes)) = timeout(FORWARD_TIMEOUT, tcp_exchange(*upstream, query)).await
            && is_answer_to(&bytes, id)
        {
            return Some(bytes);
        }
    }
    None
}

/// One query and its answer on a new TCP connection.
async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_frame(&mut stream, query).await?;
    read_frame(&mut stream).await?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed the connection without answering",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn zone(records: &[(&str, &[Ipv4Addr])], forward: bool, upstreams: &[SocketAddr]) -> ZoneData {
        let zone = Zone {
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
            records: records
                .iter()
                .map(|(name, addrs)| (name.to_string(), addrs.to_vec()))
                .collect(),
            forward,
            client_records: BTreeMap::new(),
            client_upstreams: BTreeMap::new(),
        };
        ZoneData::new(&zone, upstreams.into())
    }

    #[test]
    fn a_client_with_upstreams_of_its_own_is_forwarded_there() {
        let server_up: SocketAddr = "10.0.0.53:53".parse().unwrap();
        let own_up: SocketAddr = "10.9.0.53:53".parse().unwrap();
        let client = Ipv4Addr::new(10, 0, 0, 2);
        let mut z = Zone {
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
            records: BTreeMap::new(),
            forward: true,
            client_records: BTreeMap::new(),
            client_upstreams: BTreeMap::from([(client, vec![own_up])]),
        };
        let data = ZoneData::new(&z, vec![server_up].into());
        assert_eq!(&*data.upstreams_for(Some(client)), [own_up]);
        assert_eq!(
            &*data.upstreams_for(Some(Ipv4Addr::new(10, 0, 0, 3))),
            [server_up]
        );
        assert_eq!(&*data.upstreams_for(None), [server_up]);
        // With no upstream of the server's, the client's own still forward for it alone.
        let data = ZoneData::new(&z, Arc::from(Vec::new()));
        assert!(data.can_forward(Some(client)) && !data.can_forward(None));
        // An internal network forwards nothing, whoever asks.
        z.forward = false;
        assert!(!ZoneData::new(&z, vec![server_up].into()).can_forward(Some(client)));
    }

    #[test]
    fn client_records_are_seen_by_their_client_only() {
        let mut z = Zone {
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
            records: BTreeMap::new(),
            forward: false,
            client_records: BTreeMap::new(),
            client_upstreams: BTreeMap::new(),
        };
        let client = Ipv4Addr::new(10, 0, 0, 2);
        let other = Ipv4Addr::new(10, 1, 0, 5);
        z.client_records
            .insert(client, BTreeMap::from([("srv".to_string(), vec![other])]));
        let data = ZoneData::new(&z, Vec::new().into());
        let q = query(7, "srv", RecordType::A).to_vec().unwrap();
        let Action::Reply(bytes) = answer(&data, &q, Transport::Udp, Some(client)) else {
            panic!("no local answer for the client");
        };
        assert_eq!(a_records(&Message::from_vec(&bytes).unwrap()), vec![other]);
        let Action::Reply(bytes) = answer(&data, &q, Transport::Udp, Some(other)) else {
            panic!("no reply");
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }

    fn query(id: u16, name: &str, ty: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        message
    }

    fn ask(zone: &ZoneData, message: &Message, transport: Transport) -> Message {
        match answer(zone, &message.to_vec().unwrap(), transport, None) {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(addr)) => Some(addr),
                _ => None,
            })
            .collect()
    }

    const WEB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
    const DB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 3);

    #[test]
    fn names_match_case_insensitively_with_or_without_dot() {
        let zone = zone(&[("Web.", &[WEB]), ("db", &[DB])], false, &[]);
        for name in ["web", "WEB.", "wEb", "DB."] {
            let reply = ask(&zone, &query(7, name, RecordType::A), Transport::Udp);
            assert_eq!(reply.metadata.id, 7);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.metadata.authoritative);
            assert!(reply.metadata.recursion_desired);
            let want = if name.to_lowercase().starts_with("db") {
                DB
            } else {
                WEB
            };
            assert_eq!(a_records(&reply), vec![want], "{name}");
            assert_eq!(reply.answers[0].ttl, 0);
            // The answer's owner name is the client's spelling (0x20 case randomisation).
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            assert_eq!(reply.answers[0].name.to_ascii(), fqdn);
        }
    }

    #[test]
    fn merged_duplicate_names_keep_each_address_once() {
        let zone = zone(&[("web", &[WEB, DB]), ("WEB.", &[DB])], false, &[]);
        let reply = ask(&zone, &query(1, "web", RecordType::A), Transport::Udp);
        let mut addrs = a_records(&reply);
        addrs.sort();
        assert_eq!(addrs, vec![WEB, DB]);
    }

    #[test]
    fn other_types_of_known_names_are_empty_noerror() {
        let zone = zone(&[("web", &[WEB])], true, &["127.0.0.1:53".parse().unwrap()]);
        for ty in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let reply = ask(&zone, &query(3, "web", ty), Transport::Udp);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.answers.is_empty(), "{ty}");
        }
        // A known name without addresses is known too.
        let zone = super::tests::zone(&[("idle", &[])], true, &["127.0.0.1:53".parse().unwrap()]);
        let reply = ask(&zone, &query(3, "idle", RecordType::A), Transport::Udp);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn ptr_answers_the_first_name_holding_the_address() {
        let zone = zone(
            &[("web", &[WEB]), ("alias", &[WEB]), ("db", &[DB])],
            false,
            &[],
        );
        let reply = ask(
            &zone,
            &query(9, "2.0.89.10.in-addr.arpa.", RecordType::PTR),
            Transport::Udp,
        );
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let targets: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(PTR(name)) => Some(name.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(targets, vec!["alias.".to_string()]);
        // An address nobody holds is not ours: not forwardable here, so SERVFAIL.
        let reply = ask(
            &zone,
            &query(9, "9.0.89.10.in-addr.arpa.", RecordType::PTR),
            Transport::Udp,
        );
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn reverse_names_parse_only_when_well_formed() {
        assert_eq!(
            parse_reverse("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        for bad in [
            "3.2.1.in-addr.arpa",
            "5.4.3.2.1.in-addr.arpa",
            "256.3.2.1.in-addr.arpa",
            "+4.3.2.1.in-addr.arpa",
            "4..2.1.in-addr.arpa",
            "4.3.2.1.ip6.arpa",
        ] {
            assert_eq!(parse_reverse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_names_forward_only_when_allowed_and_possible() {
        let upstream: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let q = query(42, "example.com", RecordType::A);
        let bytes = q.to_vec().unwrap();
        let Action::Forward { servfail } =
            answer(&zone(&[], true, &[upstream]), &bytes, Transport::Udp, None)
        else {
            panic!("expected forward");
        };
        let servfail = Message::from_vec(&servfail).unwrap();
        assert_eq!(servfail.metadata.id, 42);
        assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
        for zone in [zone(&[], false, &[upstream]), zone(&[], true, &[])] {
            let reply = ask(&zone, &q, Transport::Udp);
            assert_eq!(reply.metadata.id, 42);
            assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
            assert!(!reply.metadata.recursion_available);
        }
    }

    #[test]
    fn malformed_packets_are_ignored_or_formerr() {
        let zone = zone(&[("web", &[WEB])], false, &[]);
        assert_eq!(answer(&zone, b"", Transport::Udp, None), Action::Ignore);
        assert_eq!(
            answer(&zone, b"hello", Transport::Udp, None),
            Action::Ignore
        );
        // A header that promises a question which is not there.
        let header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let Action::Reply(bytes) = answer(&zone, &header, Transport::Udp, None) else {
            panic!("expected FORMERR");
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.metadata.recursion_desired);
        // The same header with QR set is an answer: never answered (no loops).
        let mut response = header;
        response[2] |= 0x80;
        assert_eq!(
            answer(&zone, &response, Transport::Udp, None),
            Action::Ignore
        );
        // A well-formed answer is not answered either.
        let mut message = query(5, "web", RecordType::A);
        message.metadata.message_type = MessageType::Response;
        let bytes = message.to_vec().unwrap();
        assert_eq!(answer(&zone, &bytes, Transport::Udp, None), Action::Ignore);
        // Two questions: FORMERR.
        let mut two = query(6, "web", RecordType::A);
        two.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
        let reply = ask(&zone, &two, Transport::Udp);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn large_udp_answers_are_truncated_but_tcp_ones_are_not() {
        let addrs: Vec<Ipv4Addr> = (1..=200).map(|i| Ipv4Addr::new(10, 89, 1, i)).collect();
        let zone = zone(&[("many", &addrs)], false, &[]);
        let q = query(11, "many", RecordType::A);
        let udp = ask(&zone, &q, Transport::Udp);
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.metadata.id, 11);
        let tcp = ask(&zone, &q, Transport::Tcp);
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 200);
        // With EDNS, the client's larger payload size (up to ours) is honoured.
        let few: Vec<Ipv4Addr> = addrs[..50].to_vec();
        let zone = super::tests::zone(&[("few", &few)], false, &[]);
        let mut q = query(12, "few", RecordType::A);
        let plain = ask(&zone, &q, Transport::Udp);
        assert!(plain.metadata.truncation, "50 A records exceed 512 bytes");
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let reply = ask(&zone, &q, Transport::Udp);
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 50);
        assert!(reply.edns.is_some());
    }

    #[test]
    fn rotation_moves_by_one_per_query() {
        let addrs = [WEB, DB, Ipv4Addr::new(10, 89, 0, 4)];
        let zone = zone(&[("web", &addrs)], false, &[]);
        let q = query(1, "web", RecordType::A);
        let mut expected = addrs.to_vec();
        for _ in 0..4 {
            assert_eq!(a_records(&ask(&zone, &q, Transport::Udp)), expected);
            expected.rotate_left(1);
        }
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "\
# generated
search example.internal
nameserver 10.0.0.2
nameserver   192.168.1.1 # trailing comment
;nameserver 10.9.9.9
nameserver 2001:db8::53
nameserver fe80::1%eth0
nameserver not-an-address
nameserver
nameserver 10.0.0.2
nameserver 0.0.0.0
options ndots:2
nameserverx 10.1.1.1
";
        assert_eq!(
            upstreams_from_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "192.168.1.1:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
            ]
        );
        assert!(upstreams_from_resolv_conf("").is_empty());
    }

    #[test]
    fn upstreams_that_are_our_own_listeners_are_dropped() {
        let ip = Ipv4Addr::new(127, 53, 200, 1);
        let port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = SocketAddrV4::new(ip, port);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Server::new();
            let config = Config {
                zones: vec![
                    Zone {
                        listen,
                        records: BTreeMap::new(),
                        forward: true,
                        client_records: BTreeMap::new(),
                        client_upstreams: BTreeMap::new(),
                    },
                    Zone {
                        listen,
                        records: BTreeMap::new(),
                        forward: true,
                        client_records: BTreeMap::new(),
                        client_upstreams: BTreeMap::new(),
                    },
                ],
                upstreams: vec![SocketAddr::V4(listen)],
            };
            let errors = server.apply(config).await.unwrap_err();
            assert!(matches!(errors.as_slice(), [DnsError::DuplicateListen(a)] if *a == listen));
            assert_eq!(server.listening(), vec![listen]);
            let data = server.lock()[&listen].data.borrow().clone();
            assert!(data.upstreams.is_empty());
            assert!(!data.can_forward(None));
            server.apply(Config::default()).await.unwrap();
            assert!(server.listening().is_empty());
        });
    }
}
