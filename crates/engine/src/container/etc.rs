//! The per-container `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, generated into the
//! container directory (atomically) and bind-mounted by the spec, as Docker does.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::config::{ContainerConfig, DnsConfig, NetworkConfig};
use crate::fsutil::{FsError, write_replace as write_atomic};

/// File names in the container directory.
pub const HOSTNAME_FILE: &str = "hostname";
/// See [`HOSTNAME_FILE`].
pub const HOSTS_FILE: &str = "hosts";
/// See [`HOSTNAME_FILE`].
pub const RESOLV_CONF_FILE: &str = "resolv.conf";

/// Why the `/etc` files could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum EtcError {
    /// Reading a host file (`/etc/resolv.conf`, `/etc/hosts`) failed.
    #[error("read {}: {source}", path.display())]
    ReadHost {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a file into the container directory failed.
    #[error(transparent)]
    Write(#[from] FsError),
    /// An `extra_hosts` address or `dns` server is not an IP address.
    #[error("invalid IP address {value:?} in {what}")]
    InvalidAddress { what: &'static str, value: String },
    /// `host-gateway` in `extra_hosts` for a container with no network to reach the host.
    #[error("extra_hosts {host}:host-gateway: the container has no network to reach the host by")]
    NoHostGateway { host: String },
}

/// The `extra_hosts` address that stands for the host, as Docker's.
pub const HOST_GATEWAY: &str = "host-gateway";

/// Where the host's files are read from (`/etc/...` on a real host; temp files in tests).
#[derive(Debug, Clone)]
pub struct HostFiles {
    /// The host's resolver configuration (`/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
    /// The host's hosts file (`/etc/hosts`), used with `network_mode: host`.
    pub hosts: PathBuf,
}

impl Default for HostFiles {
    fn default() -> HostFiles {
        HostFiles {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts: PathBuf::from("/etc/hosts"),
        }
    }
}

/// The generated files' paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcFiles {
    /// The paths the files have (or will have) in `dir` (the container's bundle).
    pub fn in_dir(dir: &Path) -> EtcFiles {
        EtcFiles {
            hostname: dir.join(HOSTNAME_FILE),
            hosts: dir.join(HOSTS_FILE),
            resolv_conf: dir.join(RESOLV_CONF_FILE),
        }
    }
}

/// The container's hostname: the host's in the host's UTS namespace, else `cfg.hostname`,
/// else the first 12 characters of its id, as Docker.
pub fn container_hostname(cfg: &ContainerConfig) -> String {
    if cfg.uts == crate::container::config::NamespaceMode::Host {
        // The host's UTS namespace: its name, as the kernel has it now.
        return rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
    }
    if cfg.hostname.is_empty() {
        cfg.id.chars().take(12).collect()
    } else {
        cfg.hostname.clone()
    }
}

/// Docker's fixed `/etc/hosts` head.
const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n\
    ::1\tlocalhost ip6-localhost ip6-loopback\n\
    fe00::0\tip6-localnet\n\
    ff00::0\tip6-mcastprefix\n\
    ff02::1\tip6-allnodes\n\
    ff02::2\tip6-allrouters\n";

fn check_ip(what: &'static str, value: &str) -> Result<(), EtcError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| EtcError::InvalidAddress {
            what,
            value: value.to_string(),
        })
}

/// `/etc/hosts` content: Docker's localhost lines, `extra_hosts` (`address\thost`;
/// `host-gateway` is `host_gateway`, the host as the container's first network reaches it, or
/// `127.0.0.1` in the host's network namespace), then the container's hostname (with its
/// domain) on each of `addresses` (its network addresses), or on `127.0.0.1` while it has
/// none so that it resolves. With `network_mode: host` the host's hosts file replaces the
/// head and no hostname line is added.
pub fn hosts_content(
    cfg: &ContainerConfig,
    addresses: &[IpAddr],
    host_hosts: Option<&str>,
    host_gateway: Option<IpAddr>,
) -> Result<String, EtcError> {
    let mut out = match host_hosts {
        Some(text) => {
            let mut t = text.to_string();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t
        }
        None => HOSTS_HEAD.to_string(),
    };
    for (host, addr) in &cfg.extra_hosts {
        if addr == HOST_GATEWAY {
            let gateway = match (host_gateway, &cfg.network) {
                (Some(ip), _) => ip,
                (None, NetworkConfig::Host) => IpAddr::from([127, 0, 0, 1]),
                (None, _) => return Err(EtcError::NoHostGateway { host: host.clone() }),
            };
            out.push_str(&format!("{gateway}\t{host}\n"));
            continue;
        }
        check_ip("extra_hosts", addr)?;
        out.push_str(&format!("{addr}\t{host}\n"));
    }
    if host_hosts.is_none() {
        let hostname = container_hostname(cfg);
        let mut names = hostname.clone();
        if !cfg.domainname.is_empty() {
            names = format!("{hostname}.{} {hostname}", cfg.domainname);
        }
        if addresses.is_empty() {
            out.push_str(&format!("127.0.0.1\t{names}\n"));
        }
        for a in addresses {
            out.push_str(&format!("{a}\t{names}\n"));
        }
    }
    Ok(out)
}

fn is_loopback(server: &str) -> bool {
    // A scoped IPv6 server (`fe80::1%eth0`) is not loopback.
    let bare = server.split('%').next().unwrap_or(server);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `/etc/resolv.conf` content from the host's: nameservers on loopback are dropped (they
/// are unreachable from the container's network namespace) and, when none remain, Google's
/// public servers are used, as Docker does; `dns`, `dns_search`, `dns_opt` replace the
/// host's nameservers, search domains and options. With `host_network` the host's servers
/// are kept as they are.
pub fn resolv_conf_content(
    host: &str,
    dns: &DnsConfig,
    host_network: bool,
) -> Result<String, EtcError> {
    let mut servers = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut other = Vec::new();
    for line in host.lines() {
        let trimmed = line.trim();
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    servers.push(s.to_string());
                }
            }
            // The last `search` / `domain` line wins, as in the resolver.
            Some("search") | Some("domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            Some(w) if w.starts_with('#') || w.starts_with(';') => {}
            Some(_) => other.push(trimmed.to_string()),
            None => {}
        }
    }
    if !dns.servers.is_empty() {
        for s in &dns.servers {
            check_ip("dns", s)?;
        }
        servers = dns.servers.clone();
    } else if !host_network {
        servers.retain(|s| !is_loopback(s));
        if servers.is_empty() {
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
    }
    if !dns.search.is_empty() {
        // Docker: a single "." means no search domains.
        search = dns.search.iter().filter(|s| *s != ".").cloned().collect();
    }
    if !dns.options.is_empty() {
        options = dns.options.clone();
    }
    let mut out = String::new();
    for line in &other {
        out.push_str(line);
        out.push('\n');
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(out)
}

fn read_host(path: &Path) -> Result<String, EtcError> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(EtcError::ReadHost {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `hostname`, `hosts` and `resolv.conf` for `cfg` into `dir`, each
/// atomically; `addresses` are the container's own network addresses (without any, its
/// hostname maps to 127.0.0.1); `embedded` are the networks' own resolvers, which replace
/// the host's servers and the container's `dns` (they forward to those). A missing host
/// file counts as empty.
pub fn write_etc_files(
    cfg: &ContainerConfig,
    dir: &Path,
    host: &HostFiles,
    addresses: &[IpAddr],
    embedded: &[String],
    host_gateway: Option<IpAddr>,
) -> Result<EtcFiles, EtcError> {
    let files = EtcFiles::in_dir(dir);
    let host_network = cfg.network == NetworkConfig::Host;
    let host_hosts = if host_network {
        Some(read_host(&host.hosts)?)
    } else {
        None
    };
    let hosts = hosts_content(cfg, addresses, host_hosts.as_deref(), host_gateway)?;
    let resolv = if embedded.is_empty() {
        resolv_conf_content(&read_host(&host.resolv_conf)?, &cfg.dns, host_network)?
    } else {
        // The networks' resolver alone, as Docker's 127.0.0.11: it forwards the names it
        // does not know to the container's own `dns` servers (or to its upstreams).
        let mut dns = cfg.dns.clone();
        dns.servers = embedded.to_vec();
        resolv_conf_content(&read_host(&host.resolv_conf)?, &dns, host_network)?
    };
    write_atomic(
        &files.hostname,
        format!("{}\n", container_hostname(cfg)).as_bytes(),
    )?;
    write_atomic(&files.hosts, hosts.as_bytes())?;
    write_atomic(&files.resolv_conf, resolv.as_bytes())?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            id: "0123456789abcdef".repeat(4),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn hosts_has_localhost_extra_hosts_and_hostname() {
        let mut c = cfg();
        c.extra_hosts = vec![
            ("db".into(), "10.0.0.5".into()),
            ("v6".into(), "fd00::1".into()),
        ];
        let text = hosts_content(&c, &[], None, None).unwrap();
        assert!(
            text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(text.contains("ff02::2\tip6-allrouters\n"));
        assert!(text.contains("10.0.0.5\tdb\nfd00::1\tv6\n"), "{text}");
        assert!(text.ends_with("127.0.0.1\t0123456789ab\n"), "{text}");

        c.hostname = "web".into();
        c.domainname = "example.org".into();
        let ip: IpAddr = "172.17.0.2".parse().unwrap();
        let text = hosts_content(&c, &[ip], None, None).unwrap();
        assert!(
            text.ends_with("172.17.0.2\tweb.example.org web\n"),
            "{text}"
        );

        c.extra_hosts = vec![("bad".into(), "not-an-ip".into())];
        let err = hosts_content(&c, &[], None, None).unwrap_err();
        assert!(err.to_string().contains("not-an-ip"), "{err}");
    }

    #[test]
    fn host_gateway_is_the_host_as_the_container_reaches_it() {
        let mut c = cfg();
        c.extra_hosts = vec![("host.docker.internal".into(), HOST_GATEWAY.into())];
        let gw: IpAddr = "172.18.0.1".parse().unwrap();
        let text = hosts_content(&c, &[], None, Some(gw)).unwrap();
        assert!(
            text.contains("172.18.0.1\thost.docker.internal\n"),
            "{text}"
        );
        // No network of its own: the host is the container's own loopback.
        c.network = NetworkConfig::Host;
        let text = hosts_content(&c, &[], Some(""), None).unwrap();
        assert_eq!(text, "127.0.0.1\thost.docker.internal\n");
        // No network at all: nothing to reach the host by.
        c.network = NetworkConfig::None;
        let err = hosts_content(&c, &[], None, None).unwrap_err();
        assert!(matches!(err, EtcError::NoHostGateway { .. }), "{err}");
    }

    #[test]
    fn resolv_conf_drops_loopback_servers_and_falls_back() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nsearch lan\noptions edns0 trust-ad\n";
        let text = resolv_conf_content(host, &DnsConfig::default(), false).unwrap();
        assert_eq!(
            text,
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\noptions edns0 trust-ad\n"
        );
        let host = "nameserver 127.0.0.1\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\n";
        let text = resolv_conf_content(host, &DnsConfig::default(), false).unwrap();
        assert_eq!(text, "nameserver 192.168.1.1\nnameserver fe80::1%eth0\n");
        // The host's network namespace reaches its loopback resolver.
        let text = resolv_conf_content(host, &DnsConfig::default(), true).unwrap();
        assert!(text.starts_with("nameserver 127.0.0.1\n"), "{text}");
    }

    #[test]
    fn dns_settings_replace_the_hosts() {
        let host = "nameserver 192.168.1.1\nsearch lan\noptions ndots:2\n";
        let dns = DnsConfig {
            servers: vec!["1.1.1.1".into(), "2606:4700:4700::1111".into()],
            search: vec!["a.example".into(), "b.example".into()],
            options: vec!["ndots:5".into(), "timeout:1".into()],
        };
        let text = resolv_conf_content(host, &dns, false).unwrap();
        assert_eq!(
            text,
            "nameserver 1.1.1.1\nnameserver 2606:4700:4700::1111\n\
             search a.example b.example\noptions ndots:5 timeout:1\n"
        );
        let only_search = DnsConfig {
            search: vec![".".into()],
            ..DnsConfig::default()
        };
        let text = resolv_conf_content(host, &only_search, false).unwrap();
        assert_eq!(text, "nameserver 192.168.1.1\noptions ndots:2\n");
        let bad = DnsConfig {
            servers: vec!["dns.example".into()],
            ..DnsConfig::default()
        };
        assert!(resolv_conf_content(host, &bad, false).is_err());
    }

    #[test]
    fn files_are_written_into_the_container_dir() {
        let host = tempfile::tempdir().unwrap();
        let resolv = host.path().join("resolv.conf");
        fs::write(&resolv, "nameserver 10.1.1.1\n").unwrap();
        let hosts = host.path().join("hosts");
        fs::write(&hosts, "127.0.0.1 localhost myhost\n").unwrap();
        let hf = HostFiles {
            resolv_conf: resolv,
            hosts,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.hostname = "box".into();
        let files = write_etc_files(&c, dir.path(), &hf, &[], &[], None).unwrap();
        assert_eq!(files, EtcFiles::in_dir(dir.path()));
        assert_eq!(fs::read_to_string(&files.hostname).unwrap(), "box\n");
        assert!(
            fs::read_to_string(&files.hosts)
                .unwrap()
                .contains("127.0.0.1\tbox\n")
        );
        assert_eq!(
            fs::read_to_string(&files.resolv_conf).unwrap(),
            "nameserver 10.1.1.1\n"
        );
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["hostname", "hosts", "resolv.conf"]);

        c.network = NetworkConfig::Host;
        c.extra_hosts = vec![("db".into(), "10.0.0.5".into())];
        write_etc_files(&c, dir.path(), &hf, &[], &[], None).unwrap();
        assert_eq!(
            fs::read_to_string(&files.hosts).unwrap(),
            "127.0.0.1 localhost myhost\n10.0.0.5\tdb\n"
        );
    }
}
