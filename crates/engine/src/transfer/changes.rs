//! `docker import --change`: Dockerfile instructions that set image config fields.

use super::{Result, TransferError};
use crate::images::ImageConfig;

/// Instructions `--change` takes (Docker's list).
const ALLOWED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Applies `changes` (one Dockerfile instruction each, keyword case-insensitive) to `config`
/// in order: `CMD` and `ENTRYPOINT` (JSON array, or shell form run by `/bin/sh -c`), `ENV k=v
/// …` or `ENV k v`, `EXPOSE 80 53/udp 8000-8001/tcp`, `LABEL k=v …`, `STOPSIGNAL`, `USER`,
/// `VOLUME` (JSON array or words) and `WORKDIR` (relative to the previous one). Quotes and
/// backslashes in `ENV`/`LABEL` words are removed as Docker's lexer does; `$VAR` is not
/// expanded. Anything else is an error naming the instruction.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        apply(config, change).map_err(|reason| TransferError::Change {
            change: change.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn apply(config: &mut ImageConfig, change: &str) -> Result<(), String> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(k, r)| (k, r.trim()));
    let keyword = keyword.to_ascii_uppercase();
    if keyword.is_empty() {
        return Err("empty instruction".to_string());
    }
    let known = [
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    if known.contains(&keyword.as_str()) && rest.is_empty() {
        return Err(format!("{keyword} needs an argument"));
    }
    match keyword.as_str() {
        "CMD" => config.cmd = Some(command(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(command(rest)),
        "ENV" => {
            for (k, v) in pairs(rest)? {
                let prefix = format!("{k}=");
                let entry = format!("{k}={v}");
                match config.env.iter_mut().find(|e| e.starts_with(&prefix)) {
                    Some(e) => *e = entry,
                    None => config.env.push(entry),
                }
            }
        }
        "LABEL" => {
            for (k, v) in pairs(rest)? {
                config.labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            for w in words(rest)? {
                config.exposed_ports.extend(ports(&w)?);
            }
            config.exposed_ports.sort();
            config.exposed_ports.dedup();
        }
        "VOLUME" => {
            let vols = match json_array(rest) {
                Some(v) => v,
                None => words(rest)?,
            };
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err("VOLUME paths must not be empty".to_string());
            }
            config.volumes.extend(vols);
            config.volumes.sort();
            config.volumes.dedup();
        }
        "WORKDIR" => {
            let dir = single(rest, &keyword)?;
            config.working_dir = Some(if dir.starts_with('/') {
                dir
            } else {
                let base = config.working_dir.as_deref().unwrap_or("/");
                format!("{}/{dir}", base.trim_end_matches('/'))
            });
        }
        "USER" => config.user = Some(single(rest, &keyword)?),
        "STOPSIGNAL" => {
            let sig = single(rest, &keyword)?;
            let ok = sig.parse::<u8>().is_ok_and(|n| n > 0)
                || (!sig.is_empty()
                    && sig
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            if !ok {
                return Err(format!("invalid signal {sig:?}"));
            }
            config.stop_signal = Some(sig);
        }
        "HEALTHCHECK" | "ONBUILD" => {
            return Err(format!("{keyword} is not supported by berth import"));
        }
        "FROM" | "RUN" | "COPY" | "ADD" | "ARG" | "SHELL" | "MAINTAINER" => {
            return Err(format!(
                "{keyword} cannot be used as a change (allowed: {ALLOWED})"
            ));
        }
        other => {
            return Err(format!("unknown instruction {other} (allowed: {ALLOWED})"));
        }
    }
    Ok(())
}

/// A JSON array of strings, if `s` is one.
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// Exec form (JSON array) or shell form (`/bin/sh -c <s>`), as Dockerfiles read them.
fn command(s: &str) -> Vec<String> {
    json_array(s).unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()])
}

/// One word (quotes removed).
fn single(s: &str, keyword: &str) -> Result<String, String> {
    let w = words(s)?;
    match w.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{keyword} takes exactly one argument")),
    }
}

/// `k=v k2="v 2"` pairs, or the legacy `k value with spaces`.
fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let ws = words(s)?;
    let first_has_eq = ws.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        // Legacy form: the key, then the rest of the line as the value.
        let (k, v) = s
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{s:?} needs a value (key=value or key value)"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not key=value")),
        })
        .collect()
}

/// Splits on whitespace outside quotes; removes quotes; a backslash escapes the next
/// character (outside single quotes).
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| "trailing backslash".to_string())?;
                cur.push(next);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002/sctp` → `port/proto` keys.
fn ports(spec: &str) -> Result<Vec<String>, String> {
    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid protocol {proto:?} in {spec:?}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid port {p:?} in {spec:?}"))
    };
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(range)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("invalid port range {spec:?}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes).unwrap();
        c
    }

    fn err(change: &str) -> String {
        let mut c = ImageConfig::default();
        apply_changes(&mut c, &[change.to_string()])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_instruction_sets_its_field() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "entrypoint /init --verbose",
            r#"ENV A=1 B="two words" C=x\ y"#,
            "ENV LEGACY value with spaces",
            "ENV A=3",
            "EXPOSE 80 53/udp 8000-8001/TCP",
            r#"LABEL org.x="a b" k=v"#,
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGQUIT",
        ]);
        assert_eq!(
            c.cmd,
            Some(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            c.entrypoint,
            Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "/init --verbose".into()
            ])
        );
        assert_eq!(
            c.env,
            ["A=3", "B=two words", "C=x y", "LEGACY=value with spaces"]
        );
        assert_eq!(
            c.exposed_ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
        );
        assert_eq!(c.labels["org.x"], "a b");
        assert_eq!(c.labels["k"], "v");
        assert_eq!(c.volumes, ["/cache", "/data", "/logs"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    }

    #[test]
    fn bad_changes_are_refused_with_the_instruction() {
        for (change, want) in [
            ("FROBNICATE x", "unknown instruction FROBNICATE"),
            ("RUN echo", "RUN cannot be used as a change"),
            ("HEALTHCHECK CMD true", "HEALTHCHECK is not supported"),
            ("CMD", "CMD needs an argument"),
            ("EXPOSE 70000", "invalid port"),
            ("EXPOSE 80/icmp", "invalid protocol"),
            ("EXPOSE 90-80", "invalid port range"),
            ("ENV A=\"open", "unterminated quote"),
            ("ENV =x", "is not key=value"),
            ("ENV A", "needs a value"),
            ("USER a b", "exactly one argument"),
            ("STOPSIGNAL kill-me", "invalid signal"),
        ] {
            let msg = err(change);
            assert!(msg.contains(want), "{change}: {msg}");
            assert!(msg.contains(&format!("{change:?}")), "{msg}");
        }
    }
}
