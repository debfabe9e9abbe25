//! Phase 14: the config hash of a service.
//!
//! The orchestrator stores the hash in a label on each container and recreates a container only
//! when the hash of its service changes. So the hash covers everything that shapes the container
//! and nothing else: it leaves out `scale`, `deploy.replicas` (scaling adds or removes
//! containers, it never recreates them), `depends_on` and `profiles` (they order and select, they
//! do not configure), `build` and `pull_policy` (how the image is obtained, not what runs) —
//! the same set docker compose leaves out.
//!
//! The hash is sha256 over a canonical JSON form of the service: object keys sorted at every
//! level, compact, so that reordering fields in the model, or adding a field that stays empty,
//! never changes it. A test pins known values: a change there recreates every user's containers,
//! so it must be deliberate (docker/compose #11335, #10077 are this bug).

use sha2::{Digest, Sha256};

/// Keys of a service that do not take part in its hash.
pub const EXCLUDED_KEYS: &[&str] = &["build", "depends_on", "profiles", "pull_policy", "scale"];

/// The config hash of one service, given as the JSON of its typed model: 64 hex digits.
pub fn service_hash(service: &serde_json::Value) -> String {
    let mut s = service.clone();
    if let Some(obj) = s.as_object_mut() {
        for k in EXCLUDED_KEYS {
            obj.remove(*k);
        }
        if let Some(deploy) = obj.get_mut("deploy").and_then(|d| d.as_object_mut()) {
            deploy.remove("replicas");
        }
        if obj
            .get("deploy")
            .and_then(|d| d.as_object())
            .is_some_and(|d| d.is_empty())
        {
            obj.remove("deploy");
        }
    }
    let mut out = String::new();
    write_canonical(&s, &mut out);
    let digest = Sha256::digest(out.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compact JSON with object keys sorted at every level.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&J::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web() -> serde_json::Value {
        json!({
            "image": "busybox",
            "command": ["httpd", "-f"],
            "environment": {"A": "1"},
            "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
            "networks": {"default": null}
        })
    }

    #[test]
    fn pinned_value_never_drifts() {
        // Changing this value recreates every container of every user on upgrade: only do it
        // on purpose, and say so in the release notes. The value was computed independently
        // (Python: sha256 of json.dumps(sort_keys=True, separators=(",", ":"))).
        assert_eq!(
            service_hash(&web()),
            "516bd202c0a82af25857b6b6588b4268ec978b453b5e286d9f4ec35fe3d03ae9"
        );
    }

    #[test]
    fn scaling_ordering_and_selection_do_not_change_the_hash() {
        let base = service_hash(&web());
        let mut s = web();
        let o = s.as_object_mut().unwrap();
        o.insert("scale".into(), json!(3));
        o.insert("deploy".into(), json!({"replicas": 3}));
        o.insert(
            "depends_on".into(),
            json!({"db": {"condition": "service_started"}}),
        );
        o.insert("profiles".into(), json!(["debug"]));
        o.insert("build".into(), json!({"context": "."}));
        o.insert("pull_policy".into(), json!("always"));
        assert_eq!(service_hash(&s), base);
        // Key order is irrelevant.
        let reordered = json!({
            "networks": {"default": null},
            "ports": [{"protocol": "tcp", "published": "8080", "target": 80, "mode": "ingress"}],
            "environment": {"A": "1"},
            "command": ["httpd", "-f"],
            "image": "busybox"
        });
        assert_eq!(service_hash(&reordered), base);
    }

    #[test]
    fn configuration_changes_the_hash() {
        let base = service_hash(&web());
        let mut s = web();
        s["environment"]["A"] = json!("2");
        assert_ne!(service_hash(&s), base);
        let mut s = web();
        s["deploy"] = json!({"replicas": 2, "resources": {"limits": {"memory": 1024}}});
        assert_ne!(service_hash(&s), base);
        // Sequence order matters (command arguments).
        let mut s = web();
        s["command"] = json!(["-f", "httpd"]);
        assert_ne!(service_hash(&s), base);
    }
}
