//! End-to-end tests of berth's networking as root: bridges, addresses, DNS by name, published
//! ports, isolation and teardown. Each test runs every berth command inside a throw-away
//! network namespace of its own (`nsenter --net`), so the host's interfaces, routes and
//! nftables are never touched, and traffic stays on that namespace's loopback and on the
//! bridges berth makes there. Afterwards the namespace must hold nothing but `lo`: no link,
//! address, nft table, DNS daemon or address allocation of berth's.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::net::*;
use common::*;

/// `wget` from a throw-away container on `network`: the body, or None. (`--init`: as pid 1,
/// `timeout` could not kill a wget hanging on a dropped connection; busybox's own `wget -T`
/// crashes in Debian's busybox-static.)
fn fetch(e: &NetEnv, network: &str, url: &str) -> Option<String> {
    let (code, out, _) = e.sh(
        &["--init", "--network", network],
        &format!("timeout 3 wget -q -O - {url}"),
    );
    (code == 0).then_some(out)
}

#[test]
fn containers_reach_each_other_by_name_alias_and_id() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("dns");
    let id = e.ok(&["network", "create", "appnet"]).trim().to_string();
    assert_eq!(id.len(), 64);
    e.web(
        "web1",
        &["--network", "appnet", "--network-alias", "www"],
        "hello-web1",
    );
    let short = e.env.id_of("web1")[..12].to_string();
    for name in ["web1", "www", short.as_str()] {
        let mut body = None;
        eventually("httpd answers", || {
            body = fetch(&e, "appnet", &format!("http://{name}/"));
            body.is_none()
        });
        assert_eq!(body.unwrap().trim(), "hello-web1", "by {name}");
    }
    // The container's resolver is the network's gateway; its hosts file has its address.
    let net: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "appnet"])).unwrap();
    let gateway = net[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, resolv, _) = e.sh(&["--network", "appnet"], "cat /etc/resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {gateway}")),
        "{resolv}"
    );
    let ip = e.ip_of("web1", "appnet");
    assert!(net[0]["Containers"].to_string().contains(&ip));
    // The records follow the containers: once web1 is gone, the name is too (a release
    // does not wait for the resolver, which forgets it milliseconds later).
    e.ok(&["container", "rm", "-f", "web1"]);
    eventually("web1 no longer resolves after its removal", || {
        e.sh(&["--network", "appnet"], "nslookup web1").0 == 0
    });
}

#[test]
fn replicas_answer_round_robin_on_one_name() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("rr");
    e.ok(&["network", "create", "rr"]);
    for i in 1..=3 {
        e.daemon(
            &format!("rep{i}"),
            &["--network", "rr", "--network-alias", "svc"],
            "exec sleep 600",
        );
    }
    let ips: std::collections::BTreeSet<String> =
        (1..=3).map(|i| e.ip_of(&format!("rep{i}"), "rr")).collect();
    let (code, out, err) = e.sh(
        &["--network", "rr"],
        "for i in 1 2 3; do nslookup svc | grep -A9 '^Name' | grep Address | head -1; echo --; done; nslookup svc",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (firsts, last) = out.rsplit_once("--\n").unwrap();
    let answered: std::collections::BTreeSet<String> = last
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .map(|a| a.trim().to_string())
        .collect();
    assert_eq!(answered, ips, "all replicas in one answer:\n{out}");
    let firsts: std::collections::BTreeSet<&str> = firsts
        .lines()
        .filter(|l| l.starts_with("Address"))
        .collect();
    assert!(firsts.len() > 1, "the first address never rotates:\n{out}");
}

#[test]
fn networks_are_isolated_and_a_container_on_two_reaches_both() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("iso");
    e.ok(&["network", "create", "left"]);
    e.ok(&["network", "create", "right"]);
    e.web("lft", &["--network", "left"], "left");
    e.web("rgt", &["--network", "right"], "right");
    let l_ip = e.ip_of("lft", "left");
    let r_ip = e.ip_of("rgt", "right");
    eventually("httpd on left", || {
        fetch(&e, "left", &format!("http://{l_ip}/")).is_none()
    });
    // From right, left is unreachable (by address; its name is unknown there).
    assert_eq!(fetch(&e, "right", &format!("http://{l_ip}/")), None);
    let (code, _, _) = e.sh(&["--network", "right"], "nslookup lft");
    assert_ne!(code, 0, "a name of another network resolves");
    // On both networks: both answer, by name, and the interfaces are eth0 and eth1.
    let (code, out, err) = e.sh(
        &["--init", "--network", "left", "--network", "right"],
        "timeout 3 wget -q -O - http://lft/ && timeout 3 wget -q -O - http://rgt/ && ip -o -4 addr show",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("left\nright\n"), "{out}");
    assert!(out.contains(" eth0 ") && out.contains(" eth1 "), "{out}");
    assert!(!out.contains(&r_ip) && !out.contains(&l_ip), "{out}");
}

#[test]
fn internal_network_has_no_default_route() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("int");
    e.ok(&["network", "create", "--internal", "closed"]);
    e.ok(&["network", "create", "open"]);
    let (_, closed, _) = e.sh(&["--network", "closed"], "ip route");
    assert!(!closed.contains("default"), "{closed}");
    let (_, open, _) = e.sh(&["--network", "open"], "ip route");
    assert!(open.contains("default via"), "{open}");
}

/// `nft flush ruleset` (the first line of Debian's /etc/nftables.conf, so every reload of
/// the nftables service) takes berth's table with everyone else's, while berth's stamp still
/// says the table was written. A container started afterwards must not trust the stamp:
/// `start` asks the kernel and writes the table again (its network's NAT and isolation)
/// before the container runs. (A container that publishes ports rewrites the table anyway.)
#[test]
fn a_start_after_the_ruleset_was_flushed_writes_the_table_again() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("flush");
    e.ok(&["network", "create", "fl"]);
    e.daemon("idle", &["--network", "fl"], "exec sleep 600");
    let tables = e.ns.nft_tables();
    let table = tables
        .split_whitespace()
        .find(|w| w.starts_with("berth"))
        .unwrap_or_else(|| panic!("no berth table: {tables}"))
        .to_string();
    e.ok(&["container", "stop", "-t", "0", "idle"]);
    let flush = std::process::Command::new("nsenter")
        .arg(format!("--net={}", e.ns.path.display()))
        .args(["nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(flush.success());
    assert!(!e.ns.nft_tables().contains(&table));
    // No supervisor looks after a container made with `container run`: if the table is back,
    // the start put it back, before it returned.
    e.ok(&["container", "start", "idle"]);
    let tables = e.ns.nft_tables();
    assert!(tables.contains(&table), "no {table} after start: {tables}");
}

#[test]
fn published_ports_answer_from_host_and_from_containers() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("ports");
    e.ok(&["network", "create", "pub"]);
    e.web(
        "site",
        &["--network", "pub", "-p", "127.0.0.1:18080:80", "-p", "80"],
        "published",
    );
    // The random host port, as `container port` tells it.
    let all = e.ok(&["container", "port", "site"]);
    assert!(all.contains("80/tcp -> 127.0.0.1:18080"), "{all}");
    let random_line = all
        .lines()
        .find(|l| l.contains("0.0.0.0:"))
        .unwrap_or_else(|| panic!("no random port: {all}"));
    let random: u16 = random_line.rsplit(':').next().unwrap().parse().unwrap();
    assert!(random > 1024);
    let mut body = Ok(String::new());
    eventually("the published port answers on 127.0.0.1", || {
        body = e.ns.get("127.0.0.1:18080".parse().unwrap());
        body.is_err()
    });
    assert!(body.unwrap().ends_with("published\n"));
    // The random one on loopback too.
    let b =
        e.ns.get(SocketAddr::from((Ipv4Addr::LOCALHOST, random)))
            .unwrap();
    assert!(b.ends_with("published\n"), "{b}");
    // From another container through the host's address (the gateway), and from the
    // container itself (hairpin).
    let net: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "pub"])).unwrap();
    let gw = net[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        fetch(&e, "pub", &format!("http://{gw}:{random}/")).as_deref(),
        Some("published\n")
    );
    let (code, out, err) = e.env.sh(&[], "true");
    assert_eq!(code, 0, "{out}{err}");
    let out = e.ok(&[
        "container",
        "exec",
        "site",
        "timeout",
        "3",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{gw}:{random}/"),
    ]);
    assert_eq!(out, "published\n");
    // A port another program holds: a clear error, and nothing half-made stays.
    let holder =
        e.ns.run(|| std::net::TcpListener::bind("0.0.0.0:18081").unwrap());
    let out = e.env.run(&[
        "container",
        "run",
        "-d",
        "--name",
        "clash",
        "--network",
        "pub",
        "-p",
        "18081:80",
        IMAGE,
        "sleep",
        "60",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("18081") && err.contains("already allocated"),
        "{err}"
    );
    // A port another container publishes.
    let out = e.env.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "pub",
        "-p",
        "18080:80",
        IMAGE,
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("by container site"), "{err}");
    drop(holder);
    let net: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "pub"])).unwrap();
    assert_eq!(
        net[0]["Containers"].as_object().unwrap().len(),
        1,
        "only site is attached: {net}"
    );
    // Stopping the container takes its rules away: the port is closed again.
    e.ok(&["container", "stop", "-t", "1", "site"]);
    assert!(e.ns.get("127.0.0.1:18080".parse().unwrap()).is_err());
}

/// A one-answer DNS server for the test's upstream: every A query gets `answer`.
fn fake_upstream(ns: &NetNs, addr: &'static str, answer: Ipv4Addr) -> std::thread::JoinHandle<()> {
    let sock = ns.run(move || UdpSocket::bind(addr).unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let q = &buf[..n];
            // Header: same id, response + recursion available, one question, one answer.
            let mut r = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            // The question as asked (up to its end: name, type, class).
            let mut i = 12;
            while i < n && q[i] != 0 {
                i += q[i] as usize + 1;
            }
            let end = (i + 5).min(n);
            r.extend_from_slice(&q[12..end]);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&answer.octets());
            let _ = sock.send_to(&r, from);
            if q.windows(4).any(|w| w == b"stop") {
                break;
            }
        }
    })
}

#[test]
fn names_outside_the_network_are_forwarded_upstream() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("fwd");
    std::fs::write(e.env.root.join("daemon.json"), r#"{"dns": ["127.0.0.2"]}"#).unwrap();
    let upstream = fake_upstream(&e.ns, "127.0.0.2:53", Ipv4Addr::new(10, 1, 2, 3));
    e.ok(&["network", "create", "fwd"]);
    e.daemon("here", &["--network", "fwd"], "exec sleep 600");
    let (code, out, err) = e.sh(&["--network", "fwd"], "nslookup outside.test");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("10.1.2.3"), "{out}");
    // A local name is answered locally, not by the upstream.
    let (_, out, _) = e.sh(&["--network", "fwd"], "nslookup here");
    assert!(
        out.contains(&e.ip_of("here", "fwd")) && !out.contains("10.1.2.3"),
        "{out}"
    );
    let _ = e.sh(&["--network", "fwd"], "nslookup stop.test");
    upstream.join().unwrap();
}

#[test]
fn a_containers_own_dns_servers_answer_what_the_network_does_not() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("owndns");
    std::fs::write(e.env.root.join("daemon.json"), r#"{"dns": ["127.0.0.2"]}"#).unwrap();
    let daemons = fake_upstream(&e.ns, "127.0.0.2:53", Ipv4Addr::new(10, 1, 2, 3));
    let own = fake_upstream(&e.ns, "127.0.0.3:53", Ipv4Addr::new(10, 9, 9, 9));
    e.ok(&["network", "create", "owndns"]);
    e.daemon("peer", &["--network", "owndns"], "exec sleep 600");
    // With `--dns`, unknown names go to that server, through the network's resolver: it is
    // the only nameserver the container lists, so local names still resolve.
    let flags = ["--network", "owndns", "--dns", "127.0.0.3"];
    let (code, out, err) = e.sh(
        &flags,
        "nslookup outside.test; nslookup peer; cat /etc/resolv.conf",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("10.9.9.9") && !out.contains("10.1.2.3"),
        "{out}"
    );
    assert!(out.contains(&e.ip_of("peer", "owndns")), "{out}");
    assert_eq!(out.matches("nameserver").count(), 1, "{out}");
    // Without, the daemon's upstream answers.
    let (_, out, _) = e.sh(&["--network", "owndns"], "nslookup outside.test");
    assert!(out.contains("10.1.2.3"), "{out}");
    let _ = e.sh(&flags, "nslookup stop.test");
    let _ = e.sh(&["--network", "owndns"], "nslookup stop.test");
    own.join().unwrap();
    daemons.join().unwrap();
}

#[test]
fn ipam_skips_subnets_in_use_and_honours_requests() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("ipam");
    // The first default pool's first subnet is taken by an interface of the "host".
    // (A bridge: this kernel has no dummy driver.)
    e.ns.ip(&["link", "add", "busy0", "type", "bridge"]);
    e.ns.ip(&["addr", "add", "172.17.0.1/16", "dev", "busy0"]);
    e.ns.ip(&["link", "set", "busy0", "up"]);
    e.ok(&["network", "create", "auto"]);
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "auto"])).unwrap();
    let subnet = v[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(subnet, "172.17.0.0/16");
    e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "fixed",
    ]);
    e.daemon(
        "pinned",
        &["--network", "fixed", "--ip", "10.77.0.50"],
        "exec sleep 600",
    );
    assert_eq!(e.ip_of("pinned", "fixed"), "10.77.0.50");
    // An overlapping request names the conflict; a taken address too.
    let out = e
        .env
        .run(&["network", "create", "--subnet", "10.77.0.0/16", "overlap"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fixed"));
    let out = e.env.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "fixed",
        "--ip",
        "10.77.0.50",
        IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    // A network in use is not removed.
    let out = e.env.run(&["network", "rm", "fixed"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pinned"));
    e.ok(&["container", "rm", "-f", "pinned"]);
    e.ns.ip(&["link", "del", "busy0"]);
}

#[test]
fn aux_addresses_are_kept_from_containers_and_ipv6_is_refused() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("aux");
    let out = e.env.run(&["network", "create", "--ipv6", "six"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ipv6: IPv6 is not supported"),
        "{out:?}"
    );
    assert!(!e.env.run(&["network", "inspect", "six"]).status.success());
    for bad in ["x=10.78.1.1", "x=oops", "x"] {
        let out = e.env.run(&[
            "network",
            "create",
            "--subnet",
            "10.78.0.0/29",
            "--aux-address",
            bad,
            "bad",
        ]);
        assert!(!out.status.success(), "{bad}");
    }
    assert!(!e.env.run(&["network", "inspect", "bad"]).status.success());
    e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.78.0.0/29",
        "--aux-address",
        "router=10.78.0.2",
        "--aux-address",
        "nas=10.78.0.3",
        "kept",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "kept"])).unwrap();
    assert_eq!(
        v[0]["IPAM"]["Config"][0]["AuxiliaryAddresses"],
        serde_json::json!({"nas": "10.78.0.3", "router": "10.78.0.2"})
    );
    e.daemon("first", &["--network", "kept"], "exec sleep 600");
    assert_eq!(e.ip_of("first", "kept"), "10.78.0.4");
    let out = e.env.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "kept",
        "--ip",
        "10.78.0.3",
        IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auxiliary address \"nas\""),
        "{out:?}"
    );
    e.ok(&["container", "rm", "-f", "first"]);
    e.ok(&["network", "rm", "kept"]);
}

#[test]
fn connect_and_disconnect_a_running_container() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("conn");
    e.ok(&["network", "create", "a"]);
    e.ok(&["network", "create", "b"]);
    e.web("srv", &["--network", "b"], "on-b");
    e.daemon("cli", &["--network", "a"], "exec sleep 600");
    let get = |e: &NetEnv| {
        e.env.run(&[
            "container",
            "exec",
            "cli",
            "timeout",
            "3",
            "wget",
            "-q",
            "-O",
            "-",
            "http://srv/",
        ])
    };
    assert!(!get(&e).status.success());
    e.ok(&["network", "connect", "--alias", "client", "b", "cli"]);
    let out = get(&e);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "on-b\n");
    let v = e.env.inspect("cli");
    assert!(
        v["NetworkSettings"]["Networks"]["b"]["IPAddress"]
            .as_str()
            .unwrap()
            != ""
    );
    e.ok(&["network", "disconnect", "b", "cli"]);
    assert!(!get(&e).status.success());
    let links = e.ok(&["container", "exec", "cli", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
}

#[test]
fn network_verbs() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("verbs");
    e.ok(&[
        "network",
        "create",
        "--label",
        "team=x",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "one",
    ]);
    e.ok(&["network", "create", "two"]);
    let out = e.env.run(&["network", "create", "one"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let ls = e.ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    assert!(ls.contains(" one ") && ls.contains(" two "), "{ls}");
    assert_eq!(
        e.ok(&["network", "ls", "-q", "--filter", "label=team=x"])
            .lines()
            .count(),
        1
    );
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["network", "inspect", "one"])).unwrap();
    assert_eq!(v[0]["Labels"]["team"], "x");
    let bridge = v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let link = e.ns.ip(&["-o", "link", "show", &bridge]);
    assert!(link.contains("mtu 1400"), "{link}");
    e.daemon("user", &["--network", "two"], "exec sleep 600");
    e.ok(&["container", "stop", "-t", "0", "user"]);
    // prune keeps networks a container is configured on, even stopped.
    let pruned = e.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\none\n");
    // rm refuses only running containers' networks, as Docker's does.
    assert_eq!(e.ok(&["network", "rm", "two"]), "two\n");
    let out = e.env.run(&["container", "start", "user"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("network two not found"));
}

#[test]
fn udp_port_reaches_the_container() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("udp");
    e.ok(&["network", "create", "dgram"]);
    e.daemon(
        "udp",
        &["--network", "dgram", "-p", "127.0.0.1:15353:5353/udp"],
        "exec sleep 600",
    );
    assert_eq!(
        e.ok(&["container", "port", "udp", "5353/udp"]),
        "127.0.0.1:15353\n"
    );
    // busybox has no UDP server here: the test binds one inside the container's namespace.
    let pid = e.env.inspect("udp")["State"]["Pid"].as_i64().unwrap();
    let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let server =
        berth_net::netns::run_in(&ns, || UdpSocket::bind("0.0.0.0:5353").unwrap()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(&buf[..n], from).unwrap();
        (buf[..n].to_vec(), from)
    });
    let reply = e.ns.run(|| {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"datagram", "127.0.0.1:15353").unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    let (got, from) = echo.join().unwrap();
    assert_eq!(got, b"datagram");
    assert_eq!(reply, b"datagram");
    // Loopback traffic arrives masqueraded as the gateway.
    let net: serde_json::Value =
        serde_json::from_str(&e.ok(&["network", "inspect", "dgram"])).unwrap();
    let gw = net[0]["IPAM"]["Config"][0]["Gateway"].as_str().unwrap();
    assert_eq!(from.ip().to_string(), gw);
}

#[test]
fn a_link_names_another_container_for_the_linking_one_alone() {
    if !require_root() {
        return;
    }
    let e = NetEnv::new("link");
    // Internal: an unknown name fails at once instead of going upstream.
    e.ok(&["network", "create", "--internal", "ln"]);
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "target",
        "--network",
        "ln",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ip = e.ip_of("target", "ln");
    let (code, out, _) = e.sh(&["--network", "ln", "--link", "target:db"], "nslookup db");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    // NAME alone links it under its own name; others do not see the alias.
    assert_eq!(
        e.sh(&["--network", "ln", "--link", "target"], "nslookup target")
            .0,
        0
    );
    assert_ne!(e.sh(&["--network", "ln"], "nslookup db").0, 0);
    // The linked container must exist, and a network is needed.
    let out = e.env.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "ln",
        "--link",
        "nope:db",
        IMAGE,
        "true",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--link nope:db"),
        "{out:?}"
    );
    let out = e.env.run(&[
        "container",
        "run",
        "--rm",
        "--link",
        "target:db",
        IMAGE,
        "true",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("need a user-defined network"),
        "{out:?}"
    );
    e.ok(&["container", "rm", "-f", "target"]);
}
