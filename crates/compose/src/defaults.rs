//! Phase 7b, defaults: the values compose-go's `SetDefaultValues` fills once files are merged
//! and canonical, so `docker compose config` shows them and later phases can rely on them:
//!
//! - a port without `protocol` gets `tcp`, without `mode` gets `ingress`;
//! - a secret without `target` gets `/run/secrets/<source>`;
//! - a GPU or device reservation with neither `count` nor `device_ids` gets `count: all`;
//! - a bind volume whose `bind:` options omit `create_host_path` gets `true`.
//!
//! The build context and dockerfile defaults belong to `normalize`.

use crate::yaml::{Key, Node, Value};

/// Fills the defaults in a canonical compose document.
pub fn apply(doc: &mut Node) {
    let Some(services) = doc.get_mut("services").and_then(Node::as_map_mut) else {
        return;
    };
    for service in services.values_mut() {
        for_each_item(service, "ports", |port| {
            set_default(port, "protocol", || Node::string("tcp"));
            set_default(port, "mode", || Node::string("ingress"));
        });
        for_each_item(service, "secrets", |secret| {
            let source = secret.get("source").and_then(Node::scalar_text);
            if let Some(source) = source {
                set_default(secret, "target", || {
                    Node::string(format!("/run/secrets/{source}"))
                });
            }
        });
        for_each_item(service, "gpus", device_request_defaults);
        if let Some(devices) = service
            .get_mut("deploy")
            .and_then(|d| d.get_mut("resources"))
            .and_then(|r| r.get_mut("reservations"))
        {
            for_each_item(devices, "devices", device_request_defaults);
        }
        for_each_item(service, "volumes", |volume| {
            if let Some(bind) = volume.get_mut("bind").filter(|b| b.as_map().is_some()) {
                set_default(bind, "create_host_path", || Node::bool(true));
            }
        });
    }
}

fn device_request_defaults(device: &mut Node) {
    if let Some(m) = device.as_map()
        && !m.contains_key("count")
        && !m.contains_key("device_ids")
    {
        set_default(device, "count", || Node::string("all"));
    }
}

/// Calls `f` on every mapping item of the sequence `node[key]`.
fn for_each_item(node: &mut Node, key: &str, mut f: impl FnMut(&mut Node)) {
    if let Some(items) = node.get_mut(key).and_then(Node::as_seq_mut) {
        for item in items
            .iter_mut()
            .filter(|i| matches!(i.value, Value::Map(_)))
        {
            f(item);
        }
    }
}

/// Inserts `key: value()` into a mapping that lacks it; the new node takes the mapping's
/// location, so an error about it still points somewhere useful.
fn set_default(node: &mut Node, key: &str, value: impl FnOnce() -> Node) {
    let loc = node.loc;
    if let Some(m) = node.as_map_mut()
        && !m.contains_key(key)
    {
        m.insert(Key::new(key), value().with_loc(loc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn fills_what_compose_go_fills() {
        let mut doc = parse(
            "d.yaml",
            "services:\n  web:\n    ports:\n      - target: 80\n      - target: 53\n        protocol: udp\n        mode: host\n    secrets:\n      - source: token\n      - source: key\n        target: /k\n    gpus:\n      - driver: nvidia\n      - device_ids: ['0']\n    volumes:\n      - type: bind\n        source: /a\n        target: /b\n        bind: {propagation: rshared}\n      - type: volume\n        source: v\n        target: /v\n",
        )
        .unwrap();
        apply(&mut doc);
        let web = doc.get("services").unwrap().get("web").unwrap();
        let ports = web.get("ports").unwrap().as_seq().unwrap();
        assert_eq!(ports[0].get("protocol").unwrap().as_str(), Some("tcp"));
        assert_eq!(ports[0].get("mode").unwrap().as_str(), Some("ingress"));
        assert_eq!(ports[1].get("protocol").unwrap().as_str(), Some("udp"));
        assert_eq!(ports[1].get("mode").unwrap().as_str(), Some("host"));
        let secrets = web.get("secrets").unwrap().as_seq().unwrap();
        assert_eq!(
            secrets[0].get("target").unwrap().as_str(),
            Some("/run/secrets/token")
        );
        assert_eq!(secrets[1].get("target").unwrap().as_str(), Some("/k"));
        let gpus = web.get("gpus").unwrap().as_seq().unwrap();
        assert_eq!(gpus[0].get("count").unwrap().as_str(), Some("all"));
        assert!(gpus[1].get("count").is_none());
        let volumes = web.get("volumes").unwrap().as_seq().unwrap();
        assert_eq!(
            volumes[0]
                .get("bind")
                .unwrap()
                .get("create_host_path")
                .unwrap()
                .as_bool(),
            Some(true)
        );
        assert!(volumes[1].get("bind").is_none());
    }
}
