//! End-to-end scenarios of the orchestrator (`up`, `down`, `ps`, `logs`) as root, in the style
//! of docker/compose's `pkg/e2e`: one intent each, checks on observed state, polling instead
//! of sleeps. Every command runs in a throw-away network namespace with its own state root;
//! afterwards nothing of berth's is left (containers, networks, links, nft tables, DNS).

use std::process::Output;
use std::time::Duration;

mod common;

use common::compose::*;
use common::net::eventually;
use common::*;

const WEB_AND_CLIENT: &str = r#"
services:
  web:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:18090:80"]
  client:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on: [web]
volumes:
  data: {}
"#;

#[test]
fn up_is_idempotent_and_down_leaves_nothing() {
    if !require_root() {
        return;
    }
    let c = Compose::new("idem", WEB_AND_CLIENT);
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(err.contains("Network pidem_default  Created"), "{err}");
    assert!(err.contains("Container pidem-web-1  Started"), "{err}");
    let first = c.ids();
    assert_eq!(
        first.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["pidem-client-1", "pidem-web-1"]
    );
    let ps = c.ps();
    assert!(ps.iter().all(|p| p["State"] == "running"), "{ps:?}");
    // Unchanged: nothing is recreated.
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(!err.contains("Created") && err.contains("Running"), "{err}");
    assert_eq!(c.ids(), first);
    // The client reaches web by its service name, and the host by the published port.
    let out = c.e.ok(&[
        "container",
        "exec",
        "pidem-client-1",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web/",
    ]);
    assert_eq!(out, "hello-from-web\n");
    let table = c.ok(&["ps"]).0;
    assert!(table.contains("127.0.0.1:18090->80/tcp"), "{table}");
    let (_, err) = c.ok(&["down"]);
    assert!(err.contains("Container pidem-web-1  Removed"), "{err}");
    assert!(err.contains("Network pidem_default  Removed"), "{err}");
    assert!(c.ps().is_empty());
    // down again: nothing to do, still fine.
    c.ok(&["down"]);
}

/// Sixteen services publishing a port each, started at once: each shim adds its port to the
/// firewall's table as its container starts. Two of those rewrites at the same time once kept
/// only one of the two new ports (the table is rewritten whole from the records), so a port
/// could be listed by `ps` and still refuse connections.
#[test]
fn every_published_port_of_services_started_together_answers() {
    if !require_root() {
        return;
    }
    const N: u16 = 16;
    let mut yaml = String::from("services:\n");
    for i in 1..=N {
        yaml.push_str(&format!(
            "  s{i}:\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo web-{i} > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports: [\"127.0.0.1:{}:80\"]\n",
            18100 + i
        ));
    }
    let c = Compose::new("ports16", &yaml);
    c.ok(&["up", "-d"]);
    for i in 1..=N {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 18100 + i));
        let mut body = Err(std::io::ErrorKind::NotFound.into());
        eventually(&format!("127.0.0.1:{} answers", 18100 + i), || {
            body = c.e.ns.get(addr);
            body.is_err()
        });
        let body = body.unwrap();
        assert!(body.ends_with(&format!("web-{i}\n")), "{addr}: {body}");
    }
    c.ok(&["down", "-t", "0"]);
}

/// After a reboot the networks are still on disk, but the kernel has neither their bridges
/// nor the firewall's rules. A fresh network namespace is that kernel: `start` there must put
/// the rules back (NAT, isolation) before the container runs, as it puts the bridge back.
#[test]
fn a_start_after_the_rules_are_gone_writes_them_again() {
    if !require_root() {
        return;
    }
    let mut c = Compose::new(
        "fwback",
        "services:\n  a:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n",
    );
    c.ok(&["up", "-d"]);
    c.ok(&["stop", "-t", "0"]);
    let before = c.e.ns.nft_tables();
    let table = before
        .split_whitespace()
        .find(|w| w.starts_with("berth"))
        .unwrap_or_else(|| panic!("no berth table after up: {before}"))
        .to_string();
    let fresh = common::net::NetNs::new("fwback2");
    let first = c.e.env.netns.replace(fresh.path.clone());
    c.ok(&["start"]);
    let tables = fresh.nft_tables();
    assert!(tables.contains(&table), "no {table} after start: {tables}");
    c.ok(&["down", "-t", "0"]);
    assert_eq!(fresh.links(), ["lo"]);
    assert!(!fresh.nft_tables().contains("berth"));
    // The first namespace keeps what the "reboot" would have wiped: its bridge and table.
    c.e.env.netns = first;
    for link in c.e.ns.links() {
        if link != "lo" {
            c.e.ns.ip(&["link", "del", &link]);
        }
    }
    let st = std::process::Command::new("nsenter")
        .arg(format!("--net={}", c.e.ns.path.display()))
        .args(["nft", "delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A reload of the host's firewall (`nft flush ruleset`) under running containers: their
/// published ports and NAT are gone, and no container starts to notice. The project's
/// supervisor asks the kernel on each rescan (every 2 s) and writes the table again, so the
/// port answers again with no berth command run.
#[test]
fn the_supervisor_writes_a_flushed_table_again_under_running_containers() {
    if !require_root() {
        return;
    }
    let c = Compose::new("fwheal", &WEB_AND_CLIENT.replace("18090", "18095"));
    c.ok(&["up", "-d"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 18095));
    let mut body = Err(std::io::ErrorKind::NotFound.into());
    eventually("the published port answers", || {
        body = c.e.ns.get(addr);
        body.is_err()
    });
    let tables = c.e.ns.nft_tables();
    let table = tables
        .split_whitespace()
        .find(|w| w.starts_with("berth"))
        .unwrap_or_else(|| panic!("no berth table after up: {tables}"))
        .to_string();
    let flush = std::process::Command::new("nsenter")
        .arg(format!("--net={}", c.e.ns.path.display()))
        .args(["nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(flush.success());
    eventually("the supervisor writes the table again", || {
        !c.e.ns.nft_tables().contains(&table)
    });
    eventually("the published port answers again", || {
        body = c.e.ns.get(addr);
        body.is_err()
    });
    assert!(body.unwrap().ends_with("hello-from-web\n"));
    let log = std::fs::read_to_string(
        c.e.env
            .root
            .join("projects")
            .join(&c.name)
            .join("supervisor.log"),
    )
    .unwrap();
    assert!(log.contains("firewall table was gone"), "{log}");
    c.ok(&["down", "-t", "0"]);
}

/// `volumes` lists the project's volumes (not another project's, not one made by hand); with
/// services named, only those their containers mount, as `docker compose volumes`.
#[test]
fn volumes_lists_the_projects_volumes_or_those_its_services_mount() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "vols",
        "services:\n  db:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    volumes: [\"data:/data\"]\n  web:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    volumes: [\"logs:/logs\", \"data:/shared\"]\n  idle:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\nvolumes:\n  data: {}\n  logs: {}\n  spare: {}\n",
    );
    c.e.ok(&["volume", "create", "by-hand"]);
    c.ok(&["up", "-d"]);
    assert_eq!(
        c.ok(&["volumes", "-q"]).0,
        "pvols_data\npvols_logs\npvols_spare\n"
    );
    assert_eq!(c.ok(&["volumes", "-q", "db"]).0, "pvols_data\n");
    assert_eq!(
        c.ok(&["volumes", "--quiet", "web"]).0,
        "pvols_data\npvols_logs\n"
    );
    assert_eq!(c.ok(&["volumes", "-q", "idle"]).0, "");
    let table = c.ok(&["volumes", "db"]).0;
    assert_eq!(table, "DRIVER    VOLUME NAME\nlocal     pvols_data\n");
    let json = c.ok(&["volumes", "--format", "json", "web"]).0;
    let names: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Name"].to_string())
        .collect();
    assert_eq!(names, ["\"pvols_data\"", "\"pvols_logs\""]);
    let out = c.run(&["volumes", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such service: nope"), "{err}");
    c.ok(&["down", "-v", "-t", "0"]);
    c.e.ok(&["volume", "rm", "by-hand"]);
}

#[test]
fn a_changed_service_is_recreated_alone() {
    if !require_root() {
        return;
    }
    let c = Compose::new("recr", WEB_AND_CLIENT);
    c.ok(&["up", "-d"]);
    let before = c.ids();
    c.write(&WEB_AND_CLIENT.replace(
        r#"command: ["sleep", "600"]"#,
        r#"command: ["sleep", "601"]"#,
    ));
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(err.contains("Recreated"), "{err}");
    let after = c.ids();
    assert_eq!(before[1], after[1], "web must be untouched");
    assert_ne!(before[0].1, after[0].1, "client must be a new container");
    assert_eq!(after[0].0, "precr-client-1");
}

#[test]
fn scale_up_and_down_keeps_the_lowest_numbers() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "scale",
        "services:\n  w:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n",
    );
    c.ok(&["up", "-d", "--scale", "w=3"]);
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pscale-w-1", "pscale-w-2", "pscale-w-3"]);
    // All three answer on the service name.
    let (code, out, _) = c.e.sh(&["--network", "pscale_default"], "nslookup w");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("Name:").count(), 3, "{out}");
    c.ok(&["up", "-d", "--scale", "w=1"]);
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pscale-w-1"]);
}

#[test]
fn orphans_are_reported_then_removed_on_request() {
    if !require_root() {
        return;
    }
    let c = Compose::new("orph", WEB_AND_CLIENT);
    c.ok(&["up", "-d"]);
    c.write(
        "services:\n  web:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    ports: [\"127.0.0.1:18091:80\"]\n",
    );
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(
        err.contains("Found orphan containers (porph-client-1)"),
        "{err}"
    );
    assert_eq!(c.ids().len(), 2);
    c.ok(&["up", "-d", "--remove-orphans"]);
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["porph-web-1"]);
}

#[test]
fn down_of_services_and_of_orphans() {
    if !require_root() {
        return;
    }
    let c = Compose::new("dorph", WEB_AND_CLIENT);
    c.ok(&["up", "-d"]);
    // `down SERVICE` removes that service's containers alone.
    let (_, err) = c.ok(&["down", "client"]);
    assert!(err.contains("Container pdorph-client-1  Removed"), "{err}");
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pdorph-web-1"]);
    c.ok(&["up", "-d"]);
    c.write("services:\n  web:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n");
    // Without --remove-orphans the orphan is reported and kept.
    let (_, err) = c.ok(&["down"]);
    assert!(
        err.contains("Found orphan containers (pdorph-client-1)"),
        "{err}"
    );
    assert!(err.contains("Container pdorph-web-1  Removed"), "{err}");
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pdorph-client-1"]);
    // With it, the orphan goes too, and then the network it held.
    let (_, err) = c.ok(&["down", "--remove-orphans"]);
    assert!(err.contains("Container pdorph-client-1  Removed"), "{err}");
    assert!(err.contains("Network pdorph_default  Removed"), "{err}");
    assert!(c.ids().is_empty());
}

/// `down` stops the containers first, then gives their networking back for all of them at
/// once (their shims leave it to `down`). A port published by a service taken down alone
/// stops answering, and can be published again; an external network the project used keeps
/// no endpoint of the removed containers, so it can be removed.
#[test]
fn down_gives_back_the_ports_and_endpoints_of_what_it_removes() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dnrel",
        r#"
services:
  web:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:18230:80"]
    networks: [ext]
  idle:
    image: IMAGE
    command: ["sleep", "600"]
    networks: [ext]
networks:
  ext:
    name: xdnrel
    external: true
"#,
    );
    c.e.ok(&["network", "create", "xdnrel"]);
    let attached = || -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&c.e.ok(&["network", "inspect", "xdnrel"])).unwrap();
        let mut names: Vec<String> = v[0]["Containers"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|e| e["Name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 18230));
    let answers = || c.e.ns.get(addr).is_ok_and(|b| b.ends_with("web\n"));
    c.ok(&["up", "-d"]);
    eventually("the published port answers", || !answers());
    assert_eq!(attached(), ["pdnrel-idle-1", "pdnrel-web-1"]);
    c.ok(&["down", "-t", "0", "web"]);
    assert!(!answers(), "the port of a removed service still answers");
    assert_eq!(attached(), ["pdnrel-idle-1"]);
    c.ok(&["up", "-d"]);
    eventually("the port answers again", || !answers());
    c.ok(&["down", "-t", "0"]);
    assert!(!answers(), "the port still answers after down");
    assert!(attached().is_empty(), "{:?}", attached());
    c.e.ok(&["network", "rm", "xdnrel"]);
}

/// An endpoint record whose container no longer exists (a berth killed between removing a
/// container and releasing its networking) does not keep `down` from removing the network.
#[test]
fn down_removes_a_network_still_naming_a_container_that_is_gone() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dghost",
        "services:\n  a:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n",
    );
    c.ok(&["up", "-d"]);
    let id = c.e.env.id_of("pdghost-a-1");
    let eps = c.e.env.root.join("networks/pdghost_default.ep");
    let record = std::fs::read_to_string(eps.join(format!("{id}.json"))).unwrap();
    let ghost = "0".repeat(64);
    std::fs::write(
        eps.join(format!("{ghost}.json")),
        record.replace(&id, &ghost),
    )
    .unwrap();
    let (_, err) = c.ok(&["down", "-t", "0"]);
    assert!(err.contains("Network pdghost_default  Removed"), "{err}");
    assert!(!eps.exists());
}

/// A container's network namespace held from outside the project (here a bind mount, as
/// `ip netns attach` makes) outlives the container, and so does its veth: `down` leaves the
/// veths to the kernel, which deletes them with the namespaces, and deletes itself those
/// still there at its end, so no host end stays behind.
#[test]
fn down_deletes_the_veth_of_a_namespace_held_from_outside() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "dpin",
        "services:\n  a:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n",
    );
    c.ok(&["up", "-d"]);
    let pid = c.e.env.inspect("pdpin-a-1")["State"]["Pid"]
        .as_i64()
        .unwrap();
    let pin = c.e.env.tmp.path().join("pinned-netns");
    std::fs::write(&pin, "").unwrap();
    nix::mount::mount(
        Some(std::path::Path::new(&format!("/proc/{pid}/ns/net"))),
        &pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = c.run(&["down", "-t", "0"]);
    let links = c.e.ns.links();
    nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(links, ["lo"]);
}

#[test]
fn secrets_and_configs_reach_the_container() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "secr",
        r#"
services:
  web:
    image: IMAGE
    command: ["sleep", "600"]
    read_only: true
    secrets:
      - pw
      - source: token
        target: tok
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: app
        target: /etc/app.conf
secrets:
  pw:
    file: ./pw.txt
  token:
    environment: TOKEN
configs:
  app:
    content: |
      port=80
"#,
    );
    std::fs::write(c.dir.join("pw.txt"), "file-secret\n").unwrap();
    std::fs::write(c.dir.join(".env"), "TOKEN=env-secret\n").unwrap();
    c.ok(&["up", "-d"]);
    let sh = |script: &str| c.ok(&["exec", "-T", "web", "sh", "-c", script]).0;
    let look = "for f in /run/secrets/pw /run/secrets/tok /etc/app.conf; do \
                echo \"$(stat -c '%a %u:%g' $f) $(cat $f)\"; done";
    let want = "444 0:0 file-secret\n400 1000:1001 env-secret\n444 0:0 port=80\n";
    // A file: secret is the host file, bound read-only.
    let host = std::fs::metadata(c.dir.join("pw.txt")).unwrap();
    let want = want.replace(
        "444 0:0 file-secret",
        &format!(
            "{:o} {}:{} file-secret",
            std::os::unix::fs::PermissionsExt::mode(&host.permissions()) & 0o7777,
            std::os::unix::fs::MetadataExt::uid(&host),
            std::os::unix::fs::MetadataExt::gid(&host)
        ),
    );
    assert_eq!(sh(look), want);
    let out = c.run(&["exec", "-T", "web", "sh", "-c", "echo x > /run/secrets/pw"]);
    assert!(!out.status.success(), "a file secret must be read-only");
    // They stay across a restart of the container.
    c.ok(&["restart", "web"]);
    assert_eq!(sh(look), want);
    // A missing variable is an error naming it, and nothing is created.
    std::fs::remove_file(c.dir.join(".env")).unwrap();
    c.ok(&["down"]);
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("environment variable \"TOKEN\" required by secret \"token\" is not set"),
        "{err}"
    );
    assert!(c.ids().is_empty());
}

#[test]
fn pid_ipc_and_uts_namespaces_of_a_service_or_the_host() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "pidns",
        r#"
services:
  a:
    image: IMAGE
    command: ["sh", "-c", "echo shared > /dev/shm/mark && exec sleep 600"]
  b:
    image: IMAGE
    command: ["sleep", "601"]
    pid: "service:a"
    ipc: "service:a"
  h:
    image: IMAGE
    command: ["sleep", "602"]
    pid: host
    uts: host
"#,
    );
    c.ok(&["up", "-d"]);
    let sh = |svc: &str, script: &str| {
        c.ok(&["exec", "-T", svc, "sh", "-c", script])
            .0
            .trim()
            .to_string()
    };
    // b sees a's processes and a's /dev/shm.
    let wait_mark = "for i in $(seq 100); do [ -f /dev/shm/mark ] && break; sleep 0.05; done; \
                     cat /dev/shm/mark";
    assert_eq!(sh("b", wait_mark), "shared");
    let ps = sh("b", "ps -o args");
    assert!(ps.contains("sleep 600"), "{ps}");
    assert_eq!(
        sh("a", "readlink /proc/self/ns/pid"),
        sh("b", "readlink /proc/self/ns/pid")
    );
    // a does not see b's shm through its own: they are one.
    assert_eq!(sh("a", "ls /dev/shm"), "mark");
    // h is in the host's PID and UTS namespaces.
    let host_pidns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(
        sh("h", "readlink /proc/self/ns/pid"),
        host_pidns.to_str().unwrap()
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(sh("h", "hostname"), host_name.trim());
    assert_eq!(sh("h", "cat /etc/hostname"), host_name.trim());
    assert_ne!(sh("a", "hostname"), host_name.trim());
    // The host's name is untouched by it all.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
}

#[test]
fn an_error_in_the_file_comes_before_any_pull() {
    if !require_root() {
        return;
    }
    // The image is not here and its registry (loopback, port 1) does not answer: a pull
    // would fail on the connection. The file's own error must be what `up` reports.
    let c = Compose::new(
        "prepull",
        "services:\n  w:\n    image: 127.0.0.1:1/absent/image:1\n    mem_swappiness: 500\n",
    );
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service \"w\": mem_swappiness: "), "{err}");
    assert!(!err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn network_keys_berth_cannot_honour_are_refused_before_any_pull() {
    if !require_root() {
        return;
    }
    // As above, a pull would fail on the connection: each error must be the file's own, and
    // no network may be made.
    let cases = [
        (
            "enable_ipv6: true",
            "network front: enable_ipv6: IPv6 is not supported",
        ),
        (
            "enable_ipv4: false",
            "network front: enable_ipv4: IPv4 cannot be turned off",
        ),
        (
            "ipam:\n      config:\n        - subnet: 10.81.0.0/24\n        - subnet: fd00:81::/64",
            "network front: ipam.config[1].subnet: IPv6 is not supported",
        ),
        (
            "ipam:\n      config:\n        - subnet: 10.81.0.0/24\n          aux_addresses: {gw: 10.81.0.1}",
            "network front: ipam.config[0].aux_addresses: invalid ipam config for subnet \
             10.81.0.0/24: aux_addresses \"gw\": 10.81.0.1 is the subnet's gateway address",
        ),
    ];
    for (key, want) in cases {
        let c = Compose::new(
            "netrefuse",
            &format!(
                "services:\n  w:\n    image: 127.0.0.1:1/absent/image:1\n    networks: [front]\n\
                 networks:\n  front:\n    {key}\n"
            ),
        );
        let out = c.run(&["up", "-d"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(want), "{key}: {err}");
        assert!(!err.contains("127.0.0.1:1"), "{err}");
        let listed =
            c.e.ok(&["network", "ls", "-q", "--filter", "name=netrefuse"]);
        assert_eq!(listed, "", "{key}");
    }
}

#[test]
fn aux_addresses_are_kept_from_the_services() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "netaux",
        r#"
services:
  w:
    image: IMAGE
    command: ["sleep", "600"]
    networks: [front]
networks:
  front:
    ipam:
      config:
        - subnet: 10.82.0.0/28
          aux_addresses:
            router: 10.82.0.2
            nas: 10.82.0.3
"#,
    );
    c.ok(&["up", "-d"]);
    // .1 is the gateway, .2 and .3 are kept: the container gets .4.
    let ip =
        c.e.env.inspect("pnetaux-w-1")["NetworkSettings"]["Networks"]["pnetaux_front"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(ip, "10.82.0.4");
    let v: serde_json::Value =
        serde_json::from_str(&c.e.ok(&["network", "inspect", "pnetaux_front"])).unwrap();
    assert_eq!(
        v[0]["IPAM"]["Config"][0]["AuxiliaryAddresses"],
        serde_json::json!({"nas": "10.82.0.3", "router": "10.82.0.2"})
    );
    c.ok(&["down", "-t", "0"]);
}

#[test]
fn cpu_quota_and_memory_knobs_reach_the_cgroup() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "cpuq",
        "services:\n  w:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    \
         cpu_period: 50000\n    cpu_quota: 25000\n    mem_swappiness: 10\n    \
         oom_kill_disable: true\n",
    );
    c.ok(&["up", "-d"]);
    let script = "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; else \
                  echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us); \
                  cat /sys/fs/cgroup/memory/memory.swappiness; \
                  grep oom_kill_disable /sys/fs/cgroup/memory/memory.oom_control; fi";
    let out = c.ok(&["exec", "-T", "w", "sh", "-c", script]).0;
    // cgroup v2 has no swappiness or OOM switch: Docker drops them there too.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let want = if v2 {
        "25000 50000\n"
    } else {
        "25000 50000\n10\noom_kill_disable 1\n"
    };
    assert_eq!(out, want);
}

#[test]
fn volumes_from_another_service() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "vfrom",
        r#"
services:
  data:
    image: IMAGE
    command: ["sh", "-c", "echo kept > /shared/f && echo anon > /scratch/g && exec sleep 600"]
    volumes: ["store:/shared", "/scratch"]
  reader:
    image: IMAGE
    command: ["sleep", "601"]
    volumes_from: ["data:ro"]
volumes:
  store: {}
"#,
    );
    c.ok(&["up", "-d"]);
    let sh = |script: &str| c.run(&["exec", "-T", "reader", "sh", "-c", script]);
    let wait = "for i in $(seq 100); do [ -f /scratch/g ] && break; sleep 0.05; done; \
                cat /shared/f /scratch/g";
    let out = sh(wait);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\nanon\n");
    // `:ro`: the reader cannot write them.
    assert!(!sh("echo x > /shared/f").status.success());
    // Removing the reader with its anonymous volumes leaves data's.
    c.ok(&["rm", "-s", "-f", "-v", "reader"]);
    let out = c.ok(&["exec", "-T", "data", "cat", "/scratch/g"]).0;
    assert_eq!(out, "anon\n");
}

#[test]
fn device_cgroup_rules_open_a_device() {
    if !require_root() {
        return;
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("skipped: the host has no /dev/fuse to make a node of");
        return;
    }
    let c = Compose::new(
        "devrule",
        r#"
services:
  with:
    image: IMAGE
    command: ["sleep", "600"]
    device_cgroup_rules: ["c 10:229 rw"]
  without:
    image: IMAGE
    command: ["sleep", "600"]
"#,
    );
    c.ok(&["up", "-d"]);
    // fuse (10:229) is not among Docker's default devices and opens without a capability: a
    // node made for it opens only where a rule allows it.
    let script = "mknod /tmp/fuse c 10 229 && exec 3<>/tmp/fuse && echo opened";
    let out = c.run(&["exec", "-T", "with", "sh", "-c", script]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "opened\n", "{out:?}");
    let out = c.run(&["exec", "-T", "without", "sh", "-c", script]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
}

#[test]
fn post_start_and_pre_stop_hooks_run_in_the_container() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "hooks",
        r#"
services:
  w:
    image: IMAGE
    command: ["sleep", "600"]
    volumes: ["./out:/out"]
    post_start:
      - command: ["sh", "-c", "echo started-$$WHO > /out/post"]
        environment: {WHO: hook}
        working_dir: /out
    pre_stop:
      - command: sh -c 'echo stopping > /out/pre'
"#,
    );
    std::fs::create_dir(c.dir.join("out")).unwrap();
    c.ok(&["up", "-d"]);
    let read = |f: &str| std::fs::read_to_string(c.dir.join("out").join(f)).unwrap_or_default();
    assert_eq!(read("post"), "started-hook\n");
    assert_eq!(read("pre"), "");
    c.ok(&["stop"]);
    assert_eq!(read("pre"), "stopping\n");
    // A failing hook fails the command, naming the container and the hook.
    c.write(
        "services:\n  w:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    \
         post_start:\n      - command: [\"sh\", \"-c\", \"echo nope; exit 3\"]\n",
    );
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("container phooks-w-1: post_start[0]")
            && err.contains("exited with status 3")
            && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn host_gateway_in_extra_hosts_is_the_networks_gateway() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "hostgw",
        "services:\n  w:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n    \
         extra_hosts: [\"host.docker.internal:host-gateway\"]\n",
    );
    c.ok(&["up", "-d"]);
    let script = "ip route | awk '/^default/ {print $3}'; \
                  awk '$2 == \"host.docker.internal\" {print $1}' /etc/hosts";
    let out = c.ok(&["exec", "-T", "w", "sh", "-c", script]).0;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].parse::<std::net::Ipv4Addr>().is_ok(), "{out}");
    assert_eq!(
        lines[0], lines[1],
        "host-gateway must be the default gateway: {out}"
    );
}

#[test]
fn attach_sends_stdin_and_proxies_signals() {
    use std::io::Write;
    use std::process::Stdio;
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "attach",
        r#"
services:
  echo:
    image: IMAGE
    stdin_open: true
    command: ["sh", "-c", "echo before; while read l; do echo got:$$l; done; echo eof"]
  trap:
    image: IMAGE
    network_mode: none
    command: ["sh", "-c", "trap 'echo caught; exit 3' TERM; echo ready; while true; do sleep 0.1; done"]
"#,
    );
    c.ok(&["up", "-d"]);
    // stdin goes in; the output from now on comes back (not what came before); the end of
    // input closes the container's stdin, the container ends, and so does attach.
    let mut child =
        c.e.env
            .cmd(&c.args(&["attach", "echo"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    // echo is the only container on a network, so its shim started the DNS daemon: that
    // daemon once inherited the container's stdin and kept it from ever ending.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("attach did not end when its input did");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text, "got:hello\neof\n");
    // A signal to attach goes to the container's process.
    eventually("trap is ready", || {
        !c.ok(&["logs", "trap"]).0.contains("ready")
    });
    let child =
        c.e.env
            .cmd(&c.args(&["attach", "--no-stdin", "trap"]))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "caught\n");
    let ps = c.ps();
    let trap = ps.iter().find(|p| p["Service"] == "trap").unwrap();
    assert_eq!(trap["ExitCode"], 3, "{trap}");
    // A stopped container cannot be attached to.
    let out = c.run(&["attach", "trap"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot attach to a stopped container"));
}

#[test]
fn network_mode_service_shares_the_namespace() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "nsm",
        r#"
services:
  app:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo shared > /www/index.html && exec httpd -f -p 8080 -h /www"]
  side:
    image: IMAGE
    command: ["sleep", "600"]
    network_mode: "service:app"
    depends_on: [app]
"#,
    );
    c.ok(&["up", "-d"]);
    // side sees app's httpd on its own loopback, and app's interface.
    let out = c.e.ok(&[
        "container",
        "exec",
        "pnsm-side-1",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(out, "shared\n");
    let app =
        c.e.ok(&["container", "exec", "pnsm-app-1", "ip", "-o", "-4", "addr"]);
    let side =
        c.e.ok(&["container", "exec", "pnsm-side-1", "ip", "-o", "-4", "addr"]);
    assert_eq!(app, side);
}

#[test]
fn completed_successfully_orders_and_fails_up() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "done",
        r#"
services:
  init:
    image: IMAGE
    command: ["sh", "-c", "sleep 0.3; echo init-done"]
  app:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      init:
        condition: service_completed_successfully
"#,
    );
    c.ok(&["up", "-d"]);
    let ps = c.ps();
    let init = ps.iter().find(|p| p["Service"] == "init").unwrap();
    let app = ps.iter().find(|p| p["Service"] == "app").unwrap();
    assert_eq!(init["State"], "exited");
    assert_eq!(app["State"], "running");
    let (logs, _) = c.ok(&["logs", "--no-color", "init"]);
    assert_eq!(logs, "init-1  | init-done\n");
    c.ok(&["down"]);
    c.write(
        r#"
services:
  init:
    image: IMAGE
    command: ["sh", "-c", "exit 3"]
  app:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      init:
        condition: service_completed_successfully
"#,
    );
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("\"init\" didn't complete successfully: exit 3") && err.contains("app"),
        "{err}"
    );
}

#[test]
fn external_network_must_exist_and_is_kept() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "ext",
        r#"
services:
  a:
    image: IMAGE
    command: ["sleep", "600"]
    networks: [shared]
networks:
  shared:
    external: true
    name: outside
"#,
    );
    let out = c.run(&["up", "-d"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("network outside declared as external"));
    assert!(
        c.ps().is_empty(),
        "nothing is created when a network is missing"
    );
    c.e.ok(&["network", "create", "outside"]);
    c.ok(&["up", "-d"]);
    c.ok(&["down"]);
    assert_eq!(
        c.e.ok(&["network", "ls", "-q"]).lines().count(),
        1,
        "down kept the external network"
    );
    c.e.ok(&["network", "rm", "outside"]);
}

#[test]
fn a_link_alias_is_the_linking_services_alone() {
    if !require_root() {
        return;
    }
    // Two services give one alias to two different services: each must get its own, and a
    // service without links must not resolve it.
    let c = Compose::new(
        "links",
        r#"
services:
  db1:
    image: IMAGE
    command: ["sleep", "600"]
  db2:
    image: IMAGE
    command: ["sleep", "601"]
  web:
    image: IMAGE
    command: ["sleep", "602"]
    links: ["db1:database"]
  worker:
    image: IMAGE
    command: ["sleep", "603"]
    links: ["db2:database"]
  other:
    image: IMAGE
    command: ["sleep", "604"]
"#,
    );
    c.ok(&["up", "-d"]);
    let ip = |name: &str| {
        c.e.env.inspect(name)["NetworkSettings"]["Networks"]["plinks_default"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (db1, db2) = (ip("plinks-db1-1"), ip("plinks-db2-1"));
    for (service, want, not) in [("web", &db1, &db2), ("worker", &db2, &db1)] {
        let (out, _) = c.ok(&["exec", "-T", service, "nslookup", "database"]);
        assert!(
            out.contains(&format!("Address: {want}")),
            "{service}: {out}"
        );
        assert!(
            !out.contains(&format!("Address: {not}")),
            "{service}: {out}"
        );
    }
    let out = c.run(&["exec", "-T", "other", "nslookup", "database"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    c.ok(&["down", "-t", "0"]);
}

#[test]
fn external_links_name_a_container_outside_the_project_for_the_linking_service_alone() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "xlink",
        r#"
services:
  app:
    image: IMAGE
    command: ["sleep", "600"]
    external_links: ["extdb:database"]
    networks: [shared]
  other:
    image: IMAGE
    command: ["sleep", "600"]
    networks: [shared]
networks:
  shared:
    external: true
    name: outside
"#,
    );
    // Internal: a name the resolver does not know is not asked upstream (a quick failure).
    c.e.ok(&["network", "create", "--internal", "outside"]);
    // The linked container must exist.
    let out = c.run(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service app: external_links[0] \"extdb:database\": "),
        "{err}"
    );
    c.e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "extdb",
        "--network",
        "outside",
        IMAGE,
        "sleep",
        "600",
    ]);
    c.ok(&["up", "-d"]);
    let ip = c.e.env.inspect("extdb")["NetworkSettings"]["Networks"]["outside"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, _) = c.ok(&["exec", "-T", "app", "nslookup", "database"]);
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    // Only the linking container knows the alias; everybody knows the container's name.
    let out = c.run(&["exec", "-T", "other", "nslookup", "database"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let (out, _) = c.ok(&["exec", "-T", "other", "nslookup", "extdb"]);
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    c.ok(&["down", "-t", "0"]);
    c.e.ok(&["container", "rm", "-f", "extdb"]);
    c.e.ok(&["network", "rm", "outside"]);
}

#[test]
fn concurrent_ups_make_one_set_of_containers() {
    if !require_root() {
        return;
    }
    let c = Compose::new("conc", WEB_AND_CLIENT);
    let outs: Vec<Output> = std::thread::scope(|s| {
        let h: Vec<_> = (0..2).map(|_| s.spawn(|| c.run(&["up", "-d"]))).collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(c.ids().len(), 2);
}

#[test]
fn service_verbs_act_on_the_project() {
    if !require_root() {
        return;
    }
    let c = Compose::new("verbs", WEB_AND_CLIENT);
    // create: containers exist, nothing runs.
    c.ok(&["create"]);
    assert!(c.ps().iter().all(|p| p["State"] == "created"));
    c.ok(&["start"]);
    assert!(c.ps().iter().all(|p| p["State"] == "running"));
    assert_eq!(c.ok(&["port", "web", "80"]).0, "127.0.0.1:18090\n");
    assert_eq!(
        c.ok(&["exec", "-T", "client", "echo", "in-client"]).0,
        "in-client\n"
    );
    let out = c.run(&["exec", "-T", "client", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    c.ok(&["pause", "web"]);
    assert_eq!(
        c.ps().iter().find(|p| p["Service"] == "web").unwrap()["State"],
        "paused"
    );
    c.ok(&["unpause", "web"]);
    let top = c.ok(&["top", "web"]).0;
    assert!(top.contains("httpd"), "{top}");
    // cp both ways through the service's name.
    let local = c.e.env.tmp.path().join("from-web.html");
    c.ok(&["cp", "web:/www/index.html", local.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "hello-from-web\n");
    std::fs::write(&local, "into-client\n").unwrap();
    c.ok(&["cp", local.to_str().unwrap(), "client:/tmp/copied"]);
    assert_eq!(
        c.ok(&["exec", "-T", "client", "cat", "/tmp/copied"]).0,
        "into-client\n"
    );
    // export: the service container's whole filesystem, with what was just copied in.
    let tar = c.e.env.tmp.path().join("client.tar");
    c.ok(&["export", "-o", tar.to_str().unwrap(), "client"]);
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.trim_start_matches("./") == "tmp/copied"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{listed}"
    );
    let out = c.run(&["export", "--index", "2", "client"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not running container #2"),
        "{out:?}"
    );
    // stats --no-stream: one row per running container of the project.
    let stats = c.ok(&["stats", "--no-stream", "--format", "json"]).0;
    assert_eq!(stats.lines().count(), 2, "{stats}");
    assert!(
        stats.contains("pverbs-web-1") && stats.contains("pverbs-client-1"),
        "{stats}"
    );
    c.ok(&["stop", "-t", "1", "client"]);
    let ps = c.ps();
    assert_eq!(
        ps.iter().find(|p| p["Service"] == "client").unwrap()["State"],
        "exited"
    );
    assert_eq!(
        ps.iter().find(|p| p["Service"] == "web").unwrap()["State"],
        "running"
    );
    let before = c.ids();
    c.ok(&["restart", "-t", "1"]);
    assert_eq!(c.ids(), before, "restart keeps the containers");
    assert!(c.ps().iter().all(|p| p["State"] == "running"));
    let ls = c.e.ok(&["ls"]);
    assert!(ls.contains("pverbs") && ls.contains("running(2)"), "{ls}");
    c.ok(&["kill", "-s", "KILL", "client"]);
    // wait prints each exit code and exits with it.
    let out = c.run(&["wait", "client"]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "137\n");
    c.ok(&["rm", "-f", "client"]);
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pverbs-web-1"]);
    c.ok(&["scale", "client=2"]);
    assert_eq!(c.ids().len(), 3);
}

#[test]
fn run_makes_a_one_off_container_after_its_dependencies() {
    if !require_root() {
        return;
    }
    let c = Compose::new("oneoff", WEB_AND_CLIENT);
    // The dependency (web) comes up; the command's output and exit code are the run's.
    let out = c.run(&[
        "run",
        "--rm",
        "-T",
        "client",
        "sh",
        "-c",
        // web's httpd may still be starting (only its start is waited for).
        // On failure, the last attempt's own messages go to stderr for the assertion below.
        "for i in $(seq 100); do wget -q -O - http://web/ 2>/dev/null && exit 5; sleep 0.05; done; \
         nslookup web >&2; wget -O - http://web/ >&2; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello-from-web\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = c.ids().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["poneoff-web-1"],
        "--rm removed the one-off container"
    );
    // Without --rm it stays, named <project>-<service>-run-<12 hex>, and `up` ignores it.
    c.ok(&["run", "-T", "--no-deps", "client", "true"]);
    let all = c.e.ok(&["container", "ls", "-a", "--format", "json"]);
    assert!(all.contains("poneoff-client-run-"), "{all}");
    let (_, err) = c.ok(&["up", "-d"]);
    assert!(!err.contains("orphan"), "{err}");
}

#[test]
fn attached_up_streams_prefixed_output_and_exit_codes() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "att",
        r#"
services:
  talker:
    image: IMAGE
    command: ["sh", "-c", "echo one; sleep 0.2; echo two; exit 3"]
  idler:
    image: IMAGE
    command: ["sleep", "600"]
"#,
    );
    let out = c.run(&["up", "--no-color", "--exit-code-from", "talker"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("talker-1  | one\ntalker-1  | two\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("patt-talker-1 exited with code 3"),
        "{stdout}"
    );
    // The others were stopped when talker exited.
    let ps = c.ps();
    assert!(ps.iter().all(|p| p["State"] == "exited"), "{ps:?}");
}

#[test]
fn ctrl_c_stops_an_attached_up_gracefully() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "sigint",
        // A long grace period: the container must stop on its SIGTERM (the signals `up`
        // blocks for itself are not passed on to the containers it starts).
        "services:\n  a:\n    image: IMAGE\n    stop_grace_period: 60s\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done\"]\n",
    );
    let child =
        c.e.env
            .cmd(&c.args(&["up", "--no-color"]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    eventually("the container runs", || {
        !c.ps().iter().any(|p| p["State"] == "running")
    });
    // nsenter execs berth in place (no --fork): the child is berth itself.
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "the container ignored its SIGTERM: {:?}",
        signalled.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Gracefully stopping"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("a-1  | ready")
    );
    assert!(c.ps().iter().all(|p| p["State"] == "exited"));
}

#[test]
fn the_supervisor_keeps_probing_health_after_up() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "probe",
        r#"
services:
  svc:
    image: IMAGE
    command: ["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 300ms
      retries: 50
"#,
    );
    c.ok(&["up", "-d"]);
    // Nobody waits on it in `up`: the supervisor's probes turn it healthy.
    eventually("svc turns healthy", || {
        !c.ok(&["ps"]).0.contains("(healthy)")
    });
    let v = c.e.env.inspect("pprobe-svc-1");
    assert_eq!(v["State"]["Health"]["Status"], "healthy");
}

#[test]
fn logs_follow_goes_across_restarts_and_recreates_and_ends_at_down() {
    if !require_root() {
        return;
    }
    // Every run prints its own mark; exec'ing `touch /tmp/stop` ends a run (exit 1), and
    // on-failure brings it back in the same container.
    const YAML: &str = r#"
services:
  svc:
    image: IMAGE
    restart: on-failure
    stop_grace_period: 1s
    environment: [MARK=first]
    command: ["sh", "-c", "echo run-$$MARK-$$$$; while [ ! -f /tmp/stop ]; do sleep 0.05; done; rm /tmp/stop; exit 1"]
"#;
    let c = Compose::new("logsf", YAML);
    c.ok(&["up", "-d"]);
    let name = "plogsf-svc-1";
    c.e.env
        .wait_status(name, "running", std::time::Duration::from_secs(10));
    let mut child = KillOnDrop(
        c.e.env
            .cmd(&c.args(&["logs", "-f", "--no-color"]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut wait_for = |want: &dyn Fn(&[String]) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !want(&seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("logs -f never printed {what}; it printed {seen:?}"),
            }
        }
    };
    let first_runs = |seen: &[String]| seen.iter().filter(|l| *l == "svc-1  | run-first-1").count();
    wait_for(&|seen| first_runs(seen) == 1, "the first run");
    // A restart by the policy: the same container, a second run.
    c.e.ok(&["container", "exec", name, "touch", "/tmp/stop"]);
    wait_for(&|seen| first_runs(seen) == 2, "the restarted run");
    // A recreate by `up` (changed environment): a new container with the same number.
    c.write(&YAML.replace("MARK=first", "MARK=second"));
    c.ok(&["up", "-d"]);
    wait_for(
        &|seen| seen.iter().any(|l| l == "svc-1  | run-second-1"),
        "the recreated container's run",
    );
    // The project goes down: logs -f ends by itself.
    c.ok(&["down", "-t", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "logs -f: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs -f did not end after down"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    reader.join().unwrap();
}

#[test]
fn anonymous_volumes_survive_a_recreate_unless_renewed() {
    if !require_root() {
        return;
    }
    const YAML: &str = r#"
services:
  svc:
    image: IMAGE
    stop_grace_period: 1s
    environment: [GEN=one]
    volumes: ["/data"]
    command: ["sh", "-c", "[ -f /data/mark ] || cat /proc/sys/kernel/random/uuid > /data/mark; exec sleep 600"]
"#;
    let c = Compose::new("anon", YAML);
    let name = "panon-svc-1";
    let mark = |c: &Compose| {
        eventually("the mark is written", || {
            c.e.env
                .run(&["container", "exec", name, "test", "-s", "/data/mark"])
                .status
                .code()
                != Some(0)
        });
        c.e.ok(&["container", "exec", name, "cat", "/data/mark"])
    };
    c.ok(&["up", "-d"]);
    let first = mark(&c);
    // A config change recreates the container; its anonymous volume comes along.
    c.write(&YAML.replace("GEN=one", "GEN=two"));
    c.ok(&["up", "-d"]);
    assert_eq!(mark(&c), first, "the recreated container lost /data");
    // -V: a fresh anonymous volume, and the old one is gone.
    c.ok(&["up", "-d", "--force-recreate", "-V"]);
    assert_ne!(mark(&c), first, "-V kept the old anonymous volume");
    let volumes = c.e.ok(&["volume", "ls", "-q"]);
    assert_eq!(volumes.lines().count(), 1, "{volumes}");
    // down --rmi all takes the service's image too.
    c.ok(&["down", "-v", "--rmi", "all", "-t", "1"]);
    let images = c.e.ok(&["image", "ls", "-q"]);
    assert!(images.trim().is_empty(), "{images}");
    assert!(c.e.ok(&["volume", "ls", "-q"]).trim().is_empty());
}
