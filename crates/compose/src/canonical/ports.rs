//! `ports:` short syntax → long syntax, as compose-go's `types.ParsePortConfig` does with
//! docker/go-connections' `nat.ParsePortSpec`.
//!
//! `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`, where either port can be a range
//! `START-END`. Equal-length ranges give one entry per port; a host range for a single
//! container port gives one entry whose `published` is the range.

use std::net::IpAddr;

/// One port mapping parsed from a short-syntax string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to bind, `""` for all.
    pub host_ip: String,
    /// The container port.
    pub target: u16,
    /// Host port or host port range, `""` when the engine picks one.
    pub published: String,
    /// `tcp`, `udp` or `sctp`, lower case.
    pub protocol: String,
}

/// Splits `ip:host:container` from the right: the container port is the last part, the host
/// port the one before, and everything before that (IPv6 addresses have colons) is the IP.
fn split_parts(raw: &str) -> (String, String, String) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts.last().copied().unwrap_or_default().to_string();
    match n {
        0 | 1 => (String::new(), String::new(), container),
        2 => (String::new(), parts[0].to_string(), container),
        _ => (
            parts[..n - 2].join(":"),
            parts[n - 2].to_string(),
            container,
        ),
    }
}

/// `80/udp` → (`udp`, `80`); no protocol means `tcp`; an empty port means none at all.
fn split_proto_port(raw: &str) -> (String, String) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or_default();
    if port.is_empty() {
        return (String::new(), String::new());
    }
    match parts.next() {
        None | Some("") => ("tcp".to_string(), port.to_string()),
        Some(proto) => (proto.to_string(), port.to_string()),
    }
}

/// A port number as Go's `strconv.ParseUint(s, 10, 16)`: decimal digits only.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `8000` or `8000-8010` (only the first two parts of `a-b-c` count, as in go-connections).
fn parse_range(s: &str) -> Result<(u16, u16), ()> {
    if !s.contains('-') {
        let p = parse_port(s).ok_or(())?;
        return Ok((p, p));
    }
    let mut parts = s.split('-');
    let start = parse_port(parts.next().unwrap_or_default()).ok_or(())?;
    let end = parse_port(parts.next().unwrap_or_default()).ok_or(())?;
    if end < start {
        return Err(());
    }
    Ok((start, end))
}

/// Parses one short-syntax port. The error is the explanation (go-connections' wording).
pub fn parse(raw: &str) -> Result<Vec<PortSpec>, String> {
    let (mut ip, host_port, container) = split_parts(raw);
    let (proto, container) = split_proto_port(&container);

    if ip.starts_with('[') {
        match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) if !inner.contains(['[', ']']) => ip = inner.to_string(),
            _ => return Err(format!("invalid IP address {ip}")),
        }
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) =
        parse_range(&container).map_err(|()| format!("invalid containerPort: {container}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        parse_range(&host_port).map_err(|()| format!("invalid hostPort: {host_port}"))?
    };
    if !host_port.is_empty() && end - start != host_end - host_start && end != start {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host_port}"
        ));
    }
    let protocol = proto.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }

    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let target = start + i;
        let published = if host_port.is_empty() {
            String::new()
        } else if start == end && host_start != host_end {
            format!("{host_start}-{host_end}")
        } else {
            (host_start + i).to_string()
        };
        out.push(PortSpec {
            host_ip: ip.clone(),
            target,
            published,
            protocol: protocol.clone(),
        });
    }
    // compose-go orders the entries by their "port/proto" text, not numerically.
    out.sort_by_key(|p| p.target.to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ip: &str, target: u16, published: &str, protocol: &str) -> PortSpec {
        PortSpec {
            host_ip: ip.into(),
            target,
            published: published.into(),
            protocol: protocol.into(),
        }
    }

    #[test]
    fn short_forms() {
        assert_eq!(parse("80"), Ok(vec![one("", 80, "", "tcp")]));
        assert_eq!(parse("8080:80"), Ok(vec![one("", 80, "8080", "tcp")]));
        assert_eq!(
            parse("127.0.0.1:8080:80/udp"),
            Ok(vec![one("127.0.0.1", 80, "8080", "udp")])
        );
        assert_eq!(
            parse("[::1]:8080:80"),
            Ok(vec![one("::1", 80, "8080", "tcp")])
        );
        assert_eq!(
            parse("::1:8080:80"),
            Ok(vec![one("::1", 80, "8080", "tcp")])
        );
        assert_eq!(
            parse("127.0.0.1::80/SCTP"),
            Ok(vec![one("127.0.0.1", 80, "", "sctp")])
        );
        assert_eq!(parse("80/"), Ok(vec![one("", 80, "", "tcp")]));
    }

    #[test]
    fn ranges() {
        let got = parse("8000-8002:9000-9002").expect("valid");
        assert_eq!(
            got,
            vec![
                one("", 9000, "8000", "tcp"),
                one("", 9001, "8001", "tcp"),
                one("", 9002, "8002", "tcp")
            ]
        );
        assert_eq!(
            parse("8000-8010:80"),
            Ok(vec![one("", 80, "8000-8010", "tcp")])
        );
        let got = parse("98-100").expect("valid");
        let targets: Vec<u16> = got.iter().map(|p| p.target).collect();
        assert_eq!(targets, [100, 98, 99], "sorted as text, like compose-go");
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("80:80:80/tcpx"),
            Err("invalid IP address: 80".to_string())
        );
        assert_eq!(
            parse("8080:80/tcpx"),
            Err("invalid proto: tcpx".to_string())
        );
        assert_eq!(
            parse("/udp"),
            Err("no port specified: /udp<empty>".to_string())
        );
        assert_eq!(
            parse("8080:abc"),
            Err("invalid containerPort: abc".to_string())
        );
        assert_eq!(parse("x:80"), Err("invalid hostPort: x".to_string()));
        assert_eq!(parse("+80"), Err("invalid containerPort: +80".to_string()));
        assert_eq!(
            parse("70000"),
            Err("invalid containerPort: 70000".to_string())
        );
        assert_eq!(
            parse("90-80"),
            Err("invalid containerPort: 90-80".to_string())
        );
        assert_eq!(
            parse("8000-8001:80-82"),
            Err(
                "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"
                    .to_string()
            )
        );
        assert!(parse("[::1:80:80").is_err());
    }
}
