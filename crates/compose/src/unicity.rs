//! Phase 6b, unicity: after a merge, a sequence may name the same thing twice (a port published
//! by two files, a volume mounted at the same target, `FOO=1` then `FOO=2`). As compose-go's
//! `override.EnforceUnicity`, each such sequence keeps one entry per unique key: the entry stays
//! where the key first appeared and takes the value of its last occurrence.
//!
//! | sequence | unique key |
//! |---|---|
//! | `environment`, `labels`, `annotations`, `sysctls`, `tmpfs`, `dns*`, `cap_*`, `links`, `profiles`, build `args`/`labels`/`tags`/`platform`/`additional_contexts`, deploy labels, network aliases and link-local IPs, network labels and `ipam.options` | the text before `=` |
//! | `volumes` | the mount target |
//! | `devices` | the container path |
//! | `ports` | the whole short form, or `host_ip:published:target/protocol` |
//! | `secrets`, `configs` | the target (`/run/secrets/<source>` by default for secrets) |
//! | `env_file` | the path |
//! | `expose` | the port |

use std::collections::HashMap;

use crate::error::{Error, ErrorKind};
use crate::yaml::{Node, Value, YamlPath};

/// Removes the entries of the document's sequences that redefine an earlier one.
pub fn enforce_unicity(mut doc: Node) -> Result<Node, Error> {
    let mut keys = Vec::new();
    walk(&mut doc, &mut keys)?;
    Ok(doc)
}

#[derive(Clone, Copy)]
enum Indexer {
    KeyValue,
    Volume,
    Device,
    Port,
    Mount(&'static str),
    EnvFile,
    Expose,
}

const UNIQUE: &[(&str, Indexer)] = &[
    ("networks.*.labels", Indexer::KeyValue),
    ("networks.*.ipam.options", Indexer::KeyValue),
    ("services.*.annotations", Indexer::KeyValue),
    ("services.*.build.args", Indexer::KeyValue),
    ("services.*.build.additional_contexts", Indexer::KeyValue),
    ("services.*.build.platform", Indexer::KeyValue),
    ("services.*.build.tags", Indexer::KeyValue),
    ("services.*.build.labels", Indexer::KeyValue),
    ("services.*.cap_add", Indexer::KeyValue),
    ("services.*.cap_drop", Indexer::KeyValue),
    ("services.*.configs", Indexer::Mount("")),
    ("services.*.deploy.labels", Indexer::KeyValue),
    ("services.*.devices", Indexer::Device),
    ("services.*.dns", Indexer::KeyValue),
    ("services.*.dns_opt", Indexer::KeyValue),
    ("services.*.dns_search", Indexer::KeyValue),
    ("services.*.environment", Indexer::KeyValue),
    ("services.*.env_file", Indexer::EnvFile),
    ("services.*.expose", Indexer::Expose),
    ("services.*.labels", Indexer::KeyValue),
    ("services.*.links", Indexer::KeyValue),
    ("services.*.networks.*.aliases", Indexer::KeyValue),
    ("services.*.networks.*.link_local_ips", Indexer::KeyValue),
    ("services.*.ports", Indexer::Port),
    ("services.*.profiles", Indexer::KeyValue),
    ("services.*.secrets", Indexer::Mount("/run/secrets")),
    ("services.*.sysctls", Indexer::KeyValue),
    ("services.*.tmpfs", Indexer::KeyValue),
    ("services.*.volumes", Indexer::Volume),
];

/// [`UNIQUE`]'s patterns split into segments once.
fn patterns() -> &'static [(Vec<&'static str>, Indexer)] {
    static PATTERNS: std::sync::OnceLock<Vec<(Vec<&'static str>, Indexer)>> =
        std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        UNIQUE
            .iter()
            .map(|(p, i)| (p.split('.').collect(), *i))
            .collect()
    })
}

fn prefix_matches(keys: &[String], segs: &[&str]) -> bool {
    keys.len() <= segs.len() && keys.iter().zip(segs).all(|(k, p)| *p == "*" || p == k)
}

/// The indexer of the pattern that matches the path `keys` exactly, if any.
fn indexer_for(keys: &[String]) -> Option<Indexer> {
    patterns()
        .iter()
        .find(|(segs, _)| segs.len() == keys.len() && prefix_matches(keys, segs))
        .map(|(_, i)| *i)
}

/// Whether some pattern could still match below the path `keys` (so the walk goes deeper).
fn could_match_below(keys: &[String]) -> bool {
    patterns()
        .iter()
        .any(|(segs, _)| segs.len() > keys.len() && prefix_matches(keys, segs))
}

fn path_of(keys: &[String]) -> YamlPath {
    keys.iter().fold(YamlPath::root(), |p, k| p.key(k))
}

/// Deduplicates in place, descending only where a pattern can still match.
fn walk(node: &mut Node, keys: &mut Vec<String>) -> Result<(), Error> {
    match &mut node.value {
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                keys.push(k.name.clone());
                let r = if could_match_below(keys) || matches!(v.value, Value::Seq(_)) {
                    walk(v, keys)
                } else {
                    Ok(())
                };
                keys.pop();
                r?;
            }
        }
        Value::Seq(items) => {
            if let Some(indexer) = indexer_for(keys) {
                let taken = std::mem::take(items);
                *items = dedup(taken, indexer, keys)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn dedup(items: Vec<Node>, indexer: Indexer, keys: &[String]) -> Result<Vec<Node>, Error> {
    let mut out: Vec<Node> = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = index(&item, indexer).map_err(|m| {
            Error::new(ErrorKind::InvalidValue, m)
                .at(item.loc)
                .path(path_of(keys).index(i))
        })?;
        match seen.get(&key).and_then(|&j| out.get_mut(j)) {
            Some(slot) => *slot = item,
            None => {
                seen.insert(key, out.len());
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// The unique key of one entry, or the reason it has none.
fn index(item: &Node, indexer: Indexer) -> Result<String, String> {
    match indexer {
        Indexer::KeyValue => match &item.value {
            Value::String(s) => Ok(s.split_once('=').map_or(s.as_str(), |(k, _)| k).to_string()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                Ok(item.scalar_text().unwrap_or_default())
            }
            _ => Err(format!("expected a string, found {}", item.kind_name())),
        },
        Indexer::Volume => match &item.value {
            Value::Map(_) => match item.get("target").and_then(Node::as_str) {
                Some(t) => Ok(t.to_string()),
                None => Err("service volume is missing a mount target".to_string()),
            },
            Value::String(s) => volume_target(s),
            _ => Ok(String::new()),
        },
        Indexer::Device => match &item.value {
            Value::Map(_) => match item.get("target").and_then(Node::as_str) {
                Some(t) => Ok(t.to_string()),
                None => Err("service device is missing a mount target".to_string()),
            },
            Value::String(s) => {
                let mut parts = s.split(':');
                let first = parts.next().unwrap_or_default();
                Ok(parts.next().unwrap_or(first).to_string())
            }
            _ => Ok(String::new()),
        },
        Indexer::Port => match &item.value {
            Value::Map(_) => {
                let Some(target) = item.get("target").and_then(Node::scalar_text) else {
                    return Err("service port is missing a target port".to_string());
                };
                let text = |k: &str, default: &str| {
                    item.get(k)
                        .and_then(Node::scalar_text)
                        .unwrap_or_else(|| default.to_string())
                };
                Ok(format!(
                    "{}:{}:{target}/{}",
                    text("host_ip", "0.0.0.0"),
                    text("published", ""),
                    text("protocol", "tcp")
                ))
            }
            _ => Ok(item.scalar_text().unwrap_or_default()),
        },
        Indexer::Mount(default) => match &item.value {
            Value::String(s) => Ok(format!("{default}/{s}")),
            Value::Map(_) => match item.get("target") {
                Some(t) => Ok(t.scalar_text().unwrap_or_default()),
                None => {
                    let source = item
                        .get("source")
                        .and_then(Node::scalar_text)
                        .unwrap_or_default();
                    Ok(format!("{default}/{source}"))
                }
            },
            _ => Err(format!(
                "expected a string or a mapping, found {}",
                item.kind_name()
            )),
        },
        Indexer::EnvFile => match &item.value {
            Value::String(s) => Ok(s.clone()),
            Value::Map(_) => match item.get("path").and_then(Node::scalar_text) {
                Some(p) => Ok(p),
                None => Err("env_file entry is missing its path attribute".to_string()),
            },
            _ => Ok(String::new()),
        },
        Indexer::Expose => match &item.value {
            Value::String(_) | Value::Int(_) => Ok(item.scalar_text().unwrap_or_default()),
            _ => Err(format!("unsupported expose value: {}", item.kind_name())),
        },
    }
}

/// The container path of a short-syntax volume `[SOURCE:]TARGET[:MODE]` (a Windows drive letter
/// `C:` does not count as a separator).
pub(crate) fn volume_target(spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Err("invalid empty volume spec".to_string());
    }
    let mut fields: Vec<String> = Vec::new();
    let mut buf = String::new();
    for c in spec.chars() {
        let drive =
            c == ':' && buf.chars().count() == 1 && buf.chars().all(|b| b.is_ascii_alphabetic());
        if c == ':' && !drive {
            fields.push(std::mem::take(&mut buf));
        } else {
            buf.push(c);
        }
    }
    fields.push(buf);
    if fields.iter().any(String::is_empty) {
        return Err(format!(
            "invalid spec: {spec}: empty section between colons"
        ));
    }
    match fields.as_slice() {
        [target] => Ok(target.clone()),
        [_, target] | [_, target, _] => Ok(target.clone()),
        _ => Err(format!("invalid spec: {spec}: too many colons")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn y(s: &str) -> Node {
        parse("t.yaml", s).unwrap()
    }

    #[test]
    fn last_value_wins_at_first_position() {
        let got =
            enforce_unicity(y("services:\n  a:\n    environment: [A=1, B=2, A=3]\n")).unwrap();
        assert_eq!(got, y("services:\n  a:\n    environment: [A=3, B=2]\n"));
    }

    #[test]
    fn secrets_default_target() {
        let got = enforce_unicity(y(
            "services:\n  a:\n    secrets: [foo, {source: bar, target: /run/secrets/foo}, bar]\n",
        ))
        .unwrap();
        assert_eq!(
            got,
            y("services:\n  a:\n    secrets: [{source: bar, target: /run/secrets/foo}, bar]\n")
        );
    }

    #[test]
    fn other_sequences_are_untouched() {
        let doc = y("services:\n  a:\n    command: [x, x]\nx-list: [1, 1]\n");
        assert_eq!(enforce_unicity(doc.clone()).unwrap(), doc);
    }

    #[test]
    fn volume_targets() {
        assert_eq!(volume_target("/data").unwrap(), "/data");
        assert_eq!(volume_target("ab:/b:ro").unwrap(), "/b");
        // a one-letter source reads as a Windows drive, as in compose-go
        assert_eq!(volume_target("a:/b:ro").unwrap(), "ro");
        assert_eq!(volume_target("C:\\x:/b").unwrap(), "/b");
        assert!(volume_target("ab::c").is_err());
        assert!(volume_target("ab:/b:ro:x").is_err());
    }

    #[test]
    fn bad_entry_names_its_path() {
        let e =
            enforce_unicity(y("services:\n  a:\n    volumes:\n      - {source: x}\n")).unwrap_err();
        assert_eq!(e.path.to_string(), "services.a.volumes[0]");
        assert_eq!(e.loc.line, 4);
    }
}
