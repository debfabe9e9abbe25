//! The DNS server over real sockets, on loopback only (no root needed): each test serves its
//! zones on its own 127.53.N.x addresses with high ports, and any upstream is a fake one the
//! test runs on another 127.53.N.x address. No packet leaves the machine.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_net::dns::{Config, DnsError, FORWARD_TIMEOUT, Server, Zone, upstreams_from_resolv_conf};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long a test waits for any answer before it fails (longer than two forward timeouts).
const WAIT: Duration = Duration::from_secs(10);
/// What the fake upstream answers for every name it resolves.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// `127.53.test.host`: each test has its own /24 so tests never share addresses.
fn ip(test: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 53, test, host)
}

/// An address on `ip` whose port is free for both UDP and TCP right now.
fn free_addr(ip: Ipv4Addr) -> SocketAddrV4 {
    loop {
        let tcp = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return SocketAddrV4::new(ip, port);
        }
    }
}

fn zone(listen: SocketAddrV4, records: &[(&str, &[Ipv4Addr])], forward: bool) -> Zone {
    Zone {
        listen,
        records: records
            .iter()
            .map(|(name, addrs)| (name.to_string(), addrs.to_vec()))
            .collect(),
        forward,
        client_records: BTreeMap::new(),
        client_upstreams: BTreeMap::new(),
    }
}

fn query(id: u16, name: &str, ty: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    message
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

async fn client() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}

/// Sends `message` from `client` to `server` and returns the answer, checking it came from
/// the server's address and carries the query's id.
async fn udp_ask(client: &UdpSocket, server: SocketAddrV4, message: &Message) -> Message {
    client
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    udp_answer(client, server, message.metadata.id).await
}

async fn udp_answer(client: &UdpSocket, server: SocketAddrV4, id: u16) -> Message {
    let mut buf = vec![0u8; 65_535];
    let (len, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .expect("no answer in time")
        .unwrap();
    assert_eq!(from, SocketAddr::V4(server), "answer from another address");
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn tcp_ask(stream: &mut TcpStream, message: &Message) -> Message {
    let bytes = message.to_vec().unwrap();
    let mut frame = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await.unwrap();
    let answer = timeout(WAIT, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    })
    .await
    .expect("no tcp answer in time");
    assert_eq!(answer.metadata.id, message.metadata.id);
    answer
}

/// A fake upstream nameserver on UDP and TCP. It notes every query (name and transport) and
/// answers `A 192.0.2.77` with the query's id, except:
/// - `silent.test.`: never answered;
/// - `big.test.` (UDP): answered with TC set and no records;
/// - `hold.test.` (UDP): answered only after `release.test.` arrived (and after its answer).
struct FakeUpstream {
    addr: SocketAddrV4,
    seen: Arc<Mutex<Vec<(String, &'static str)>>>,
}

impl FakeUpstream {
    async fn start(ip: Ipv4Addr) -> FakeUpstream {
        let addr = free_addr(ip);
        let udp = UdpSocket::bind(addr).await.unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut held: Option<(Message, SocketAddr)> = None;
            loop {
                let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..len]).unwrap();
                let name = query.queries[0].name().to_ascii();
                log.lock().unwrap().push((name.clone(), "udp"));
                match name.as_str() {
                    "silent.test." => {}
                    "hold.test." => held = Some((query, peer)),
                    "big.test." => {
                        let mut answer = upstream_answer(&query);
                        answer.answers.clear();
                        answer.metadata.truncation = true;
                        udp.send_to(&answer.to_vec().unwrap(), peer).await.unwrap();
                    }
                    _ => {
                        let answer = upstream_answer(&query).to_vec().unwrap();
                        udp.send_to(&answer, peer).await.unwrap();
                        if name == "release.test."
                            && let Some((query, peer)) = held.take()
                        {
                            let answer = upstream_answer(&query).to_vec().unwrap();
                            udp.send_to(&answer, peer).await.unwrap();
                        }
                    }
                }
            }
        });
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await.unwrap();
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf).unwrap();
                log.lock()
                    .unwrap()
                    .push((query.queries[0].name().to_ascii(), "tcp"));
                let answer = upstream_answer(&query).to_vec().unwrap();
                let mut frame = u16::try_from(answer.len()).unwrap().to_be_bytes().to_vec();
                frame.extend_from_slice(&answer);
                stream.write_all(&frame).await.unwrap();
            }
        });
        FakeUpstream { addr, seen }
    }

    fn seen(&self) -> Vec<(String, &'static str)> {
        self.seen.lock().unwrap().clone()
    }
}

fn upstream_answer(query: &Message) -> Message {
    let mut answer = Message::response(query.metadata.id, OpCode::Query);
    answer.add_queries(query.queries.iter().cloned());
    let name = query.queries[0].name().clone();
    answer.add_answer(Record::from_rdata(name, 60, RData::A(A(UPSTREAM_ANSWER))));
    answer
}

const WEB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 3);

#[tokio::test]
async fn known_names_over_udp_and_tcp() {
    let listen = free_addr(ip(1, 1));
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &[WEB]), ("db", &[DB])], false)],
        upstreams: vec![],
    };
    server.apply(config).await.unwrap();
    assert_eq!(server.listening(), vec![listen]);

    let client = client().await;
    // Garbage first: ignored, and the server keeps answering.
    client.send_to(b"hello", listen).await.unwrap();
    let answer = udp_ask(&client, listen, &query(100, "Web.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&answer), vec![WEB]);
    assert_eq!(answer.answers[0].ttl, 0);

    // Several queries on one TCP connection.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let answer = tcp_ask(&mut stream, &query(101, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);
    let answer = tcp_ask(&mut stream, &query(102, "DB", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);
}

#[tokio::test]
async fn three_addresses_rotate_over_three_queries() {
    let listen = free_addr(ip(2, 1));
    let addrs = [WEB, DB, Ipv4Addr::new(10, 89, 0, 4)];
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &addrs)], false)],
        upstreams: vec![],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    let mut firsts = Vec::new();
    for id in 0..3 {
        let answer = udp_ask(&client, listen, &query(id, "web", RecordType::A)).await;
        let got = a_records(&answer);
        // All three every time, as a rotation of the configured order.
        let start = addrs.iter().position(|a| *a == got[0]).unwrap();
        let mut expected = addrs.to_vec();
        expected.rotate_left(start);
        assert_eq!(got, expected);
        firsts.push(got[0]);
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "each query starts with another address");
}

#[tokio::test]
async fn aaaa_of_a_known_name_is_empty_noerror() {
    let listen = free_addr(ip(3, 1));
    let upstream = FakeUpstream::start(ip(3, 2)).await;
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &[WEB])], true)],
        upstreams: vec![SocketAddr::V4(upstream.addr)],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    let answer = udp_ask(&client, listen, &query(7, "web", RecordType::AAAA)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
    assert!(
        upstream.seen().is_empty(),
        "a known name is never forwarded"
    );
}

#[tokio::test]
async fn unknown_names_are_forwarded_and_answers_relayed() {
    let listen = free_addr(ip(4, 1));
    let upstream = FakeUpstream::start(ip(4, 2)).await;
    // Nothing listens on the first upstream: refused at once, then the next is tried.
    let dead = free_addr(ip(4, 3));
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &[WEB])], true)],
        upstreams: vec![SocketAddr::V4(dead), SocketAddr::V4(upstream.addr)],
    };
    server.apply(config).await.unwrap();
    let client = client().await;

    let started = Instant::now();
    let answer = udp_ask(
        &client,
        listen,
        &query(0xbeef, "example.test", RecordType::A),
    )
    .await;
    assert!(
        started.elapsed() < FORWARD_TIMEOUT,
        "the dead upstream cost a timeout"
    );
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&answer), vec![UPSTREAM_ANSWER]);

    // A truncated answer is passed on as it is.
    let answer = udp_ask(&client, listen, &query(0xbef0, "big.test", RecordType::A)).await;
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());

    // TCP queries go upstream over TCP.
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let answer = tcp_ask(&mut stream, &query(0xcafe, "other.test", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![UPSTREAM_ANSWER]);

    assert_eq!(
        upstream.seen(),
        vec![
            ("example.test.".to_string(), "udp"),
            ("big.test.".to_string(), "udp"),
            ("other.test.".to_string(), "tcp"),
        ]
    );
}

#[tokio::test]
async fn forwarded_queries_are_handled_concurrently() {
    let listen = free_addr(ip(5, 1));
    let upstream = FakeUpstream::start(ip(5, 2)).await;
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[], true)],
        upstreams: vec![SocketAddr::V4(upstream.addr)],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    // The upstream answers `hold` only once `release` reached it: a server that waited for
    // the first answer before forwarding the second would time out on `hold`.
    let started = Instant::now();
    let hold = query(1, "hold.test", RecordType::A);
    let release = query(2, "release.test", RecordType::A);
    client
        .send_to(&hold.to_vec().unwrap(), listen)
        .await
        .unwrap();
    client
        .send_to(&release.to_vec().unwrap(), listen)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut buf = vec![0u8; 65_535];
        let (len, _) = timeout(WAIT, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(a_records(&answer), vec![UPSTREAM_ANSWER]);
        ids.push(answer.metadata.id);
    }
    assert!(started.elapsed() < FORWARD_TIMEOUT);
    assert_eq!(ids, vec![2, 1]);
}

#[tokio::test]
async fn silent_upstreams_time_out_to_the_next_then_servfail() {
    let listen = free_addr(ip(6, 1));
    let upstream = FakeUpstream::start(ip(6, 2)).await;
    // Bound but never read: queries to it vanish.
    let black_hole = UdpSocket::bind(free_addr(ip(6, 3))).await.unwrap();
    let black_hole_addr = black_hole.local_addr().unwrap();
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[], true)],
        upstreams: vec![black_hole_addr, SocketAddr::V4(upstream.addr)],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    let started = Instant::now();
    // Both at once: `late` is answered by the second upstream after the first timed out;
    // `silent` gets no answer from either, so SERVFAIL.
    let late = query(1, "late.test", RecordType::A);
    let silent = query(2, "silent.test", RecordType::A);
    client
        .send_to(&late.to_vec().unwrap(), listen)
        .await
        .unwrap();
    client
        .send_to(&silent.to_vec().unwrap(), listen)
        .await
        .unwrap();
    let mut answers = BTreeMap::new();
    for _ in 0..2 {
        let mut buf = vec![0u8; 65_535];
        let (len, _) = timeout(WAIT, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = Message::from_vec(&buf[..len]).unwrap();
        answers.insert(answer.metadata.id, answer);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= FORWARD_TIMEOUT,
        "answered before the first upstream timed out"
    );
    assert!(
        elapsed < 3 * FORWARD_TIMEOUT,
        "{elapsed:?}: queries were not concurrent"
    );
    assert_eq!(a_records(&answers[&1]), vec![UPSTREAM_ANSWER]);
    assert_eq!(answers[&2].metadata.response_code, ResponseCode::ServFail);
    drop(black_hole);
}

#[tokio::test]
async fn internal_zones_servfail_and_send_nothing_upstream() {
    let internal = free_addr(ip(7, 1));
    let open = free_addr(ip(7, 3));
    let upstream = FakeUpstream::start(ip(7, 2)).await;
    let server = Server::new();
    let config = Config {
        zones: vec![
            zone(internal, &[("web", &[WEB])], false),
            zone(open, &[], true),
        ],
        upstreams: vec![SocketAddr::V4(upstream.addr)],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    let answer = udp_ask(&client, internal, &query(3, "example.test", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(answer.answers.is_empty());
    let answer = udp_ask(&client, internal, &query(4, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);
    // The same upstream through the other zone: it sees that query, and only that one.
    let answer = udp_ask(&client, open, &query(5, "marker.test", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![UPSTREAM_ANSWER]);
    assert_eq!(upstream.seen(), vec![("marker.test.".to_string(), "udp")]);
}

#[tokio::test]
async fn apply_swaps_records_on_the_same_sockets() {
    let listen = free_addr(ip(8, 1));
    let server = Server::new();
    let config = |addrs: &[Ipv4Addr]| Config {
        zones: vec![zone(listen, &[("web", addrs)], false)],
        upstreams: vec![],
    };
    server.apply(config(&[WEB])).await.unwrap();
    let client = client().await;
    let mut stream = TcpStream::connect(listen).await.unwrap();
    let answer = udp_ask(&client, listen, &query(1, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);
    let answer = tcp_ask(&mut stream, &query(2, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);

    server.apply(config(&[DB])).await.unwrap();
    assert_eq!(server.listening(), vec![listen]);
    // The same client socket gets the new data, from the same address (udp_ask checks it);
    // the TCP connection opened before the swap was not closed and sees it too.
    let answer = udp_ask(&client, listen, &query(3, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);
    let answer = tcp_ask(&mut stream, &query(4, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);
    // The listener was never closed: its port is still taken.
    assert!(std::net::UdpSocket::bind(listen).is_err());
}

#[tokio::test]
async fn apply_without_a_zone_closes_its_port() {
    let kept = free_addr(ip(9, 1));
    let dropped = free_addr(ip(9, 2));
    let server = Server::new();
    let both = Config {
        zones: vec![
            zone(kept, &[("web", &[WEB])], false),
            zone(dropped, &[("web", &[DB])], false),
        ],
        upstreams: vec![],
    };
    server.apply(both.clone()).await.unwrap();
    let client = client().await;
    let answer = udp_ask(&client, dropped, &query(1, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);

    let one = Config {
        zones: vec![both.zones[0].clone()],
        upstreams: vec![],
    };
    server.apply(one).await.unwrap();
    assert_eq!(server.listening(), vec![kept]);
    // Plain sockets (no SO_REUSEADDR) bind where the listener was: it is really closed.
    let udp = std::net::UdpSocket::bind(dropped).unwrap();
    let tcp = std::net::TcpListener::bind(dropped).unwrap();
    drop((udp, tcp));
    let answer = udp_ask(&client, kept, &query(2, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);

    // And an empty configuration closes everything.
    server.apply(Config::default()).await.unwrap();
    assert!(server.listening().is_empty());
    drop(std::net::TcpListener::bind(kept).unwrap());
}

#[tokio::test]
async fn a_zone_that_cannot_bind_is_an_error_and_the_others_work() {
    let taken = free_addr(ip(10, 1));
    let good = free_addr(ip(10, 2));
    // Held without SO_REUSEADDR, in listening state: our bind must fail.
    let holder = std::net::TcpListener::bind(taken).unwrap();
    let holder_udp = std::net::UdpSocket::bind(taken).unwrap();
    let server = Server::new();
    let config = Config {
        zones: vec![
            zone(taken, &[("web", &[WEB])], false),
            zone(good, &[("web", &[DB])], false),
        ],
        upstreams: vec![],
    };
    let errors = server.apply(config.clone()).await.unwrap_err();
    assert!(
        matches!(errors.as_slice(), [DnsError::Bind { addr, .. }] if *addr == taken),
        "{errors:?}"
    );
    assert!(errors[0].to_string().contains(&taken.to_string()));
    assert_eq!(server.listening(), vec![good]);
    let client = client().await;
    let answer = udp_ask(&client, good, &query(1, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);

    // Once the address is free, the next apply binds it.
    drop((holder, holder_udp));
    server.apply(config).await.unwrap();
    assert_eq!(server.listening(), vec![taken, good]);
    let answer = udp_ask(&client, taken, &query(2, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);
}

#[tokio::test]
async fn dropping_the_server_stops_answering() {
    let listen = free_addr(ip(11, 1));
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &[WEB])], false)],
        upstreams: vec![],
    };
    server.apply(config).await.unwrap();
    let client = client().await;
    let answer = udp_ask(&client, listen, &query(1, "web", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![WEB]);
    drop(server);
    // The aborted listener tasks are dropped once the runtime polls them: yield until the port
    // is free (bounded, so a leak fails the test).
    let freed = timeout(WAIT, async {
        while std::net::UdpSocket::bind(listen).is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(freed.is_ok(), "the listener outlived the server");
}

#[test]
fn resolv_conf_upstreams() {
    let text = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\nnameserver ::1\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec![
            "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
}

#[tokio::test]
async fn a_gateway_address_not_on_any_interface_yet_can_be_bound() {
    // 192.0.2.0/24 is reserved for documentation: on no interface here. IP_FREEBIND lets the
    // listener bind it before the bridge gets it. Nothing is sent to it.
    let gateway = Ipv4Addr::new(192, 0, 2, 1);
    assert!(
        std::net::UdpSocket::bind((gateway, 0)).is_err(),
        "192.0.2.1 is local on this machine: the test proves nothing"
    );
    let listen = SocketAddrV4::new(gateway, free_addr(ip(12, 1)).port());
    let server = Server::new();
    let config = Config {
        zones: vec![zone(listen, &[("web", &[WEB])], true)],
        upstreams: vec![],
    };
    server.apply(config).await.unwrap();
    assert_eq!(server.listening(), vec![listen]);
    server.apply(Config::default()).await.unwrap();
    assert!(server.listening().is_empty());
}
