//! End-to-end `berth events` as root: a follower started before `up` sees the project's
//! container events in Docker's order, with the service and the exit code. Each test has its
//! own state root and network namespace; afterwards nothing of berth's is left.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

mod common;

use common::compose::*;
use common::net::eventually;
use common::*;

/// A `berth events --json` child and the objects it printed so far; killed on drop.
struct Follower {
    child: Child,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Follower {
    /// Follows from a moment before it was started (`--since`), so that no event of the
    /// commands run after this returns can come before the child is reading.
    fn start(c: &Compose, services: &[&str]) -> Follower {
        let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut verb = vec!["events", "--json", "--since", since.as_str()];
        verb.extend_from_slice(services);
        let mut child =
            c.e.env
                .cmd(&c.args(&verb))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        Follower { child, seen }
    }

    /// The actions seen for container `id`, in order.
    fn actions(&self, id: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["id"] == id)
            .map(|v| v["action"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_service_container_s_life_is_streamed_in_order() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "evlife",
        "services:\n  web:\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 600 & wait\"]\n",
    );
    let f = Follower::start(&c, &[]);
    c.ok(&["up", "-d"]);
    let id = c.ids()[0].1.clone();
    assert_eq!(id.len(), 64, "{id}");
    c.ok(&["stop", "web"]);
    c.ok(&["down"]);
    eventually("the destroy event", || {
        !f.actions(&id).contains(&"destroy".to_string())
    });
    assert_eq!(
        f.actions(&id),
        ["create", "start", "kill", "die", "stop", "destroy"]
    );
    for v in f.events() {
        assert_eq!(v["type"], "container", "{v}");
        assert_eq!(v["service"], "web", "{v}");
        assert_eq!(v["attributes"]["name"], "pevlife-web-1", "{v}");
        assert_eq!(v["attributes"]["image"], IMAGE, "{v}");
        assert!(
            v["attributes"]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("com.docker.compose.")),
            "{v}"
        );
    }
    let events = f.events();
    let kill = events.iter().find(|v| v["action"] == "kill").unwrap();
    assert_eq!(kill["attributes"]["signal"], "15", "{kill}");
    let die = events.iter().find(|v| v["action"] == "die").unwrap();
    assert_eq!(die["attributes"]["exitCode"], "0", "{die}");
}

#[test]
fn a_failing_container_dies_with_its_exit_code() {
    if !require_root() {
        return;
    }
    let c = Compose::new(
        "evfail",
        "services:\n  ok:\n    image: IMAGE\n    command: [\"sleep\", \"600\"]\n  bad:\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"exit 3\"]\n",
    );
    // Only `bad` is followed: `ok`'s events are left out.
    let f = Follower::start(&c, &["bad"]);
    c.ok(&["up", "-d"]);
    eventually("bad's die event", || {
        !f.events().iter().any(|v| v["action"] == "die")
    });
    let events = f.events();
    let die = events.iter().find(|v| v["action"] == "die").unwrap();
    assert_eq!(die["attributes"]["exitCode"], "3", "{die}");
    let id = die["id"].as_str().unwrap();
    assert_eq!(f.actions(id), ["create", "start", "die"]);
    assert!(events.iter().all(|v| v["service"] == "bad"), "{events:?}");
}
