//! The firewall for real, as root, entirely inside two throw-away network namespaces: `h`
//! plays the host (a bridge, berth's nftables table, a client on 127.0.0.1) and `c` a
//! container (a veth behind the bridge, a TCP listener and a UDP socket). The host's own
//! namespace is only read: its table list and `ip_forward`, to check nothing leaked there.
//!
//! Not root: each test prints `skipped: needs root` and passes; with `CI=true` it panics.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_net::firewall::{
    self, FirewallError, NetworkRules, PortMap, Protocol, Ruleset, enable_ip_forward,
    set_route_localnet, table_exists,
};
use berth_net::link::{ContainerLink, Netlink, configure_container_link};
use berth_net::netns::{self, run_in};
use nix::poll::{PollFd, PollFlags, poll};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: this test needs root");
    }
    println!("skipped: needs root");
    false
}

/// A private directory holding named namespaces `h` and `c`; removed (namespaces first) on
/// drop, even when the test fails.
struct Namespaces {
    dir: PathBuf,
    h: PathBuf,
    c: PathBuf,
}

impl Namespaces {
    fn new(tag: &str) -> Namespaces {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-fw-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap();
        let ns = Namespaces {
            h: dir.join("h"),
            c: dir.join("c"),
            dir,
        };
        netns::create_named(&ns.h).unwrap();
        netns::create_named(&ns.c).unwrap();
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = netns::remove_named(&self.h);
        let _ = netns::remove_named(&self.c);
        let _ = fs::remove_dir(&self.dir);
    }
}

const GW: Ipv4Addr = Ipv4Addr::new(10, 213, 147, 1);
const CT: Ipv4Addr = Ipv4Addr::new(10, 213, 147, 2);
const BRIDGE: &str = "br-fwtest";
const P1: u16 = 18080;
const P2: u16 = 15353;
const WAIT: Duration = Duration::from_secs(5);

fn table_name() -> String {
    format!("berth_fwtest_{}", std::process::id())
}

fn network() -> NetworkRules {
    NetworkRules {
        bridge: BRIDGE.into(),
        subnet: "10.213.147.0/24".parse().unwrap(),
        internal: false,
    }
}

fn tcp_p1() -> PortMap {
    PortMap {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: P1,
        protocol: Protocol::Tcp,
        container_ip: CT,
        container_port: 80,
    }
}

fn udp_p2() -> PortMap {
    PortMap {
        host_ip: None,
        host_port: P2,
        protocol: Protocol::Udp,
        container_ip: CT,
        container_port: 81,
    }
}

fn ruleset(ports: Vec<PortMap>) -> Ruleset {
    Ruleset {
        table: table_name(),
        networks: vec![network()],
        ports,
    }
}

/// In `h`: lo up, the bridge with GW/24, a veth into `c` configured as CT/24 with a default
/// route via GW; route_localnet on the bridge and ip_forward on, both read back.
fn wire(ns: &Namespaces) {
    run_in(&ns.h, || {
        let mut nl = Netlink::open().unwrap();
        nl.set_up("lo").unwrap();
        nl.create_bridge(BRIDGE, None).unwrap();
        nl.add_address(BRIDGE, IpAddr::V4(GW), 24).unwrap();
        nl.set_up(BRIDGE).unwrap();
        let c = File::open(&ns.c).unwrap();
        nl.create_veth_into("vfwtest0", "peer0", c.as_fd(), None)
            .unwrap();
        nl.set_master("vfwtest0", BRIDGE).unwrap();
        nl.set_up("vfwtest0").unwrap();
        set_route_localnet(BRIDGE).unwrap();
        enable_ip_forward().unwrap();
        let read = |p: &str| fs::read_to_string(p).unwrap().trim().to_owned();
        assert_eq!(
            read(&format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet")),
            "1"
        );
        assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), "1");
    })
    .unwrap();
    configure_container_link(
        &ns.c,
        &ContainerLink {
            peer_name: "peer0".into(),
            name: "eth0".into(),
            addresses: vec![(IpAddr::V4(CT), 24)],
            gateway: Some(IpAddr::V4(GW)),
            mac: None,
        },
    )
    .unwrap();
}

/// The next connection on `listener` (non-blocking), waiting at most `WAIT`; `None` if none.
fn accept_within(listener: &TcpListener, wait: Duration) -> Option<(TcpStream, SocketAddr)> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap();
    if poll(&mut fds, ms).unwrap() == 0 {
        return None;
    }
    match listener.accept() {
        Ok((stream, peer)) => {
            stream.set_nonblocking(false).unwrap();
            Some((stream, peer))
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("accept: {e}"),
    }
}

/// From `h`: connects to `to`, sends `ping`, returns the answer (or the connect error).
fn tcp_ping(ns: &Path, to: SocketAddr) -> std::io::Result<Vec<u8>> {
    run_in(ns, || {
        let mut s = TcpStream::connect_timeout(&to, WAIT)?;
        s.set_read_timeout(Some(WAIT))?;
        s.write_all(b"ping")?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        Ok(answer)
    })
    .unwrap()
}

/// The container side of one TCP exchange: accept, read `ping`, answer `pong`; the data and
/// the peer's address.
fn tcp_serve(listener: &TcpListener) -> (Vec<u8>, SocketAddr) {
    let (mut stream, peer) = accept_within(listener, WAIT).expect("no connection reached C");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).unwrap();
    stream.write_all(b"pong").unwrap();
    (got.to_vec(), peer)
}

/// From namespace `ns`, on a fresh socket (so a fresh conntrack entry): sends `hello` to `to` and
/// returns the answer or the error (ECONNREFUSED when the port is not published).
fn udp_hello(ns: &Path, to: SocketAddr) -> std::io::Result<Vec<u8>> {
    run_in(ns, || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
        s.connect(to)?;
        s.set_read_timeout(Some(WAIT))?;
        s.send(b"hello")?;
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
    .unwrap()
}

/// The container side of one UDP exchange: one datagram, echoed back in upper case.
fn udp_serve(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    let (n, src) = sock.recv_from(&mut buf).expect("no datagram reached C");
    sock.send_to(&buf[..n].to_ascii_uppercase(), src).unwrap();
    (buf[..n].to_vec(), src)
}

fn nothing_waiting(listener: &TcpListener, udp: &UdpSocket) {
    assert!(
        accept_within(listener, Duration::ZERO).is_none(),
        "a connection reached C"
    );
    udp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let got = udp.recv_from(&mut buf);
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a datagram reached C: {got:?}"
    );
    udp.set_nonblocking(false).unwrap();
}

fn in_h<T: Send>(ns: &Namespaces, f: impl FnOnce() -> T + Send) -> T {
    run_in(&ns.h, f).unwrap()
}

/// Runs `cmd` (nft, iproute2's bridge) in `h`.
fn cmd_in_h(ns: &Namespaces, cmd: &str, args: &[&str]) {
    let status = in_h(ns, || {
        Command::new(cmd)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
    });
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

#[test]
fn published_ports_reach_the_container_then_stop() {
    if !is_root() {
        return;
    }
    let table = table_name();
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert!(
        !table_exists(&table).unwrap(),
        "{table} already on the host"
    );

    let ns = Namespaces::new("pub");
    wire(&ns);
    // Another table in `h` that berth must never touch.
    cmd_in_h(&ns, "nft", &["add", "table", "ip", "notberth"]);
    cmd_in_h(&ns, "nft", &["add", "chain", "ip", "notberth", "keep"]);

    // Sockets made in C stay in C, wherever they are used from.
    let (listener, udp) = run_in(&ns.c, || {
        let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(CT), 80)).unwrap();
        l.set_nonblocking(true).unwrap();
        let u = UdpSocket::bind(SocketAddr::new(IpAddr::V4(CT), 81)).unwrap();
        (l, u)
    })
    .unwrap();
    let lo = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);

    // Before any rule: nothing on 127.0.0.1 in H.
    assert_eq!(
        tcp_ping(&ns.h, lo(P1)).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );

    in_h(&ns, || firewall::apply(&ruleset(vec![tcp_p1(), udp_p2()]))).unwrap();
    assert!(in_h(&ns, || table_exists(&table)).unwrap());
    assert!(!table_exists(&table).unwrap(), "{table} leaked to the host");

    // TCP on 127.0.0.1:P1 reaches C:80, masqueraded to the bridge's address.
    let (client, (got, peer)) = std::thread::scope(|s| {
        let server = s.spawn(|| tcp_serve(&listener));
        let client = tcp_ping(&ns.h, lo(P1));
        (client, server.join().unwrap())
    });
    assert_eq!(got, b"ping");
    assert_eq!(client.unwrap(), b"pong");
    assert_eq!(peer.ip(), IpAddr::V4(GW));

    // UDP on the wildcard P2, via 127.0.0.1 and via the bridge's own (local) address.
    for to in [lo(P2), SocketAddr::new(IpAddr::V4(GW), P2)] {
        let (client, (got, src)) = std::thread::scope(|s| {
            let server = s.spawn(|| udp_serve(&udp));
            let client = udp_hello(&ns.h, to);
            (client, server.join().unwrap())
        });
        assert_eq!(got, b"hello", "via {to}");
        assert_eq!(client.unwrap(), b"HELLO", "via {to}");
        assert_eq!(src.ip(), IpAddr::V4(GW), "via {to}");
    }
    // Hairpin: C reaches its own published port through H's address and gets the replies
    // (forwarded by H with ip_forward on, masqueraded so they come back through H). With
    // br_netfilter loaded the DNATed frame is bridged back out the port it came in by, which
    // the bridge allows only in hairpin mode (a link setting, not the firewall's).
    cmd_in_h(
        &ns,
        "bridge",
        &["link", "set", "dev", "vfwtest0", "hairpin", "on"],
    );
    let (client, (got, src)) = std::thread::scope(|s| {
        let server = s.spawn(|| udp_serve(&udp));
        let client = udp_hello(&ns.c, SocketAddr::new(IpAddr::V4(GW), P2));
        (client, server.join().unwrap())
    });
    assert_eq!(got, b"hello", "hairpin");
    assert_eq!(client.unwrap(), b"HELLO", "hairpin");
    assert_eq!(src.ip(), IpAddr::V4(GW), "hairpin");
    // P1 is published on 127.0.0.1 only: the bridge's address is not DNATed.
    assert_eq!(
        tcp_ping(&ns.h, SocketAddr::new(IpAddr::V4(GW), P1))
            .unwrap_err()
            .kind(),
        ErrorKind::ConnectionRefused
    );
    nothing_waiting(&listener, &udp);

    // Without P1: refused, and still nothing in C; P2 still works.
    in_h(&ns, || firewall::apply(&ruleset(vec![udp_p2()]))).unwrap();
    assert_eq!(
        tcp_ping(&ns.h, lo(P1)).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    let (client, (got, _)) = std::thread::scope(|s| {
        let server = s.spawn(|| udp_serve(&udp));
        let client = udp_hello(&ns.h, lo(P2));
        (client, server.join().unwrap())
    });
    assert_eq!(
        (client.unwrap(), got),
        (b"HELLO".to_vec(), b"hello".to_vec())
    );
    nothing_waiting(&listener, &udp);

    // Without any port: the datagram is answered by H's port-unreachable, not by C.
    in_h(&ns, || firewall::apply(&ruleset(vec![]))).unwrap();
    assert_eq!(
        udp_hello(&ns.h, lo(P2)).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    nothing_waiting(&listener, &udp);

    // Remove: gone, idempotent, and the other table is untouched.
    in_h(&ns, || firewall::remove(&table)).unwrap();
    assert!(!in_h(&ns, || table_exists(&table)).unwrap());
    in_h(&ns, || firewall::remove(&table)).unwrap();
    assert!(in_h(&ns, || table_exists("notberth")).unwrap());

    drop((listener, udp));
    let paths = [ns.h.clone(), ns.c.clone(), ns.dir.clone()];
    drop(ns);
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(!table_exists(&table).unwrap(), "{table} leaked to the host");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the host's ip_forward changed"
    );
}

#[test]
fn invalid_input_changes_nothing() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new("bad");
    let table = table_name();
    let dnat_rules = || {
        in_h(&ns, || {
            let out = Command::new("nft")
                .args(["list", "chain", "ip", &table, "published"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout)
                .unwrap()
                .matches("dnat to")
                .count()
        })
    };
    in_h(&ns, || firewall::apply(&ruleset(vec![tcp_p1(), udp_p2()]))).unwrap();
    assert_eq!(dnat_rules(), 2);
    // A clash is refused before nft runs: the table keeps its rules.
    let mut clash = tcp_p1();
    clash.host_ip = None;
    let err = in_h(&ns, || firewall::apply(&ruleset(vec![tcp_p1(), clash]))).unwrap_err();
    assert!(matches!(err, FirewallError::InvalidPort { .. }), "{err}");
    assert_eq!(dnat_rules(), 2);
    // A sysctl for a bridge this namespace does not have names the file.
    let err = in_h(&ns, || set_route_localnet("br-missing")).unwrap_err();
    assert!(matches!(err, FirewallError::Sysctl { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/proc/sys/net/ipv4/conf/br-missing/route_localnet"),
        "{err}"
    );
    in_h(&ns, || firewall::remove(&table)).unwrap();
    assert!(!in_h(&ns, || table_exists(&table)).unwrap());
}

#[test]
fn apply_timing_with_50_ports() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new("time");
    let table = table_name();
    let ports: Vec<PortMap> = (0..50u16)
        .map(|i| PortMap {
            host_ip: if i % 2 == 0 {
                None
            } else {
                Some(Ipv4Addr::LOCALHOST)
            },
            host_port: 20000 + i,
            protocol: if i % 3 == 0 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            container_ip: CT,
            container_port: 8000 + i,
        })
        .collect();
    let rs = ruleset(ports);
    let samples = in_h(&ns, || {
        let mut samples: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                firewall::apply(&rs).unwrap();
                t.elapsed()
            })
            .collect();
        // The table holds what was asked: 50 DNAT rules.
        let out = Command::new("nft")
            .args(["list", "chain", "ip", &table, "published"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        assert_eq!(listing.matches("dnat to").count(), 50, "{listing}");
        firewall::remove(&table).unwrap();
        assert!(!table_exists(&table).unwrap());
        samples.sort();
        samples
    });
    println!(
        "firewall apply (atomic table replace, 1 network, 50 port maps) over {} runs: \
         median {:?}, min {:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    );
}
