//! Network namespaces for the end-to-end tests: every berth command of a [`NetEnv`] runs in a
//! throw-away namespace of its own, checked for leftovers when the environment is dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A named network namespace (`ip netns add`), with `lo` up; deleted on drop.
pub struct NetNs {
    pub name: String,
    pub path: PathBuf,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        let ns = NetNs {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS…`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    pub fn nft_tables(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An HTTP/1.0 GET of `/` from a thread in the namespace (the "host"): the whole answer.
    pub fn get(&self, addr: SocketAddr) -> std::io::Result<String> {
        self.run(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        berth_net::netns::run_in(&self.path, f).unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A state root whose commands run in their own namespace; on drop every container and
/// network is removed and the namespace is checked for leftovers.
pub struct NetEnv {
    pub env: Env,
    pub ns: NetNs,
}

impl NetEnv {
    pub fn new(tag: &str) -> NetEnv {
        let ns = NetNs::new(tag);
        let env = Env::with_netns(Some(ns.path.clone()));
        // Names outside the networks go to an upstream on the namespace's loopback where
        // nothing listens (refused at once): never to the host's real nameservers.
        std::fs::write(env.root.join("daemon.json"), r#"{"dns": ["127.0.0.1"]}"#).unwrap();
        NetEnv { env, ns }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.env.ok(args)
    }

    /// A detached container on `flags` running `script`.
    pub fn daemon(&self, name: &str, flags: &[&str], script: &str) -> String {
        let mut args = vec!["container", "run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.ok(&args).trim().to_string()
    }

    /// A detached busybox httpd on port 80 answering `body`.
    pub fn web(&self, name: &str, flags: &[&str], body: &str) {
        self.daemon(
            name,
            flags,
            &format!(
                "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"
            ),
        );
    }

    pub fn ip_of(&self, name: &str, network: &str) -> String {
        let v = self.env.inspect(name);
        v["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `sh -c script` in a throw-away container; (code, stdout, stderr).
    pub fn sh(&self, flags: &[&str], script: &str) -> (i32, String, String) {
        self.env.sh(flags, script)
    }
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        let ids = self.env.ok(&["container", "ls", "-a", "-q", "--no-trunc"]);
        for id in ids.lines() {
            let _ = self.env.run(&["container", "rm", "-f", id]);
        }
        let nets = self.env.ok(&["network", "ls", "--format", "json"]);
        for line in nets.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let _ = self
                .env
                .run(&["network", "rm", v["Name"].as_str().unwrap()]);
        }
        if std::thread::panicking() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = shim_pids(&self.env.root);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the shims and the DNS daemon to exit: {}",
                describe_pids(&left)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(self.ns.links(), ["lo"], "links left in the namespace");
        let addrs = self.ns.ip(&["-o", "-4", "addr", "show"]);
        assert_eq!(addrs.lines().count(), 1, "addresses left: {addrs}");
        let tables = self.ns.nft_tables();
        assert!(!tables.contains("berth"), "nft tables left: {tables}");
        let ipam =
            std::fs::read_to_string(self.env.root.join("networks/ipam.json")).unwrap_or_default();
        assert!(!ipam.contains("addresses\": {\n"), "addresses left: {ipam}");
    }
}

/// Polls `pending` (true while the condition is not met yet) for up to 10 s.
pub fn eventually(what: &str, mut pending: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
