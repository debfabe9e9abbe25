//! `berth events`: the project's container events as they happen, as `docker compose events`
//! prints them. berth has no daemon: whoever causes an event appends it to the state root's
//! journal (`berth_engine::events`), and this verb follows the journal from now on (or from
//! `--since`) until it is interrupted (SIGINT/SIGTERM end it by their default action: there
//! is nothing to clean up), `--until` has passed, or its output is closed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;

use anyhow::bail;
use berth_engine::events::{Event, EventReader, ReadOptions};
use chrono::{DateTime, Local, Utc};
use clap::Args;
use serde::Serialize;

use crate::cli::Settings;
use crate::commands::container::Ctx;
use crate::commands::logs::parse_time;
use crate::labels;
use crate::project::{self, LoadFlags};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    pub json: bool,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    pub services: Vec<String>,
}

/// docker compose's `--json` object; fields in the order Go's `json.Marshal` writes a map's
/// keys (sorted).
#[derive(Debug, Serialize)]
struct JsonEvent<'a> {
    action: &'a str,
    attributes: BTreeMap<&'a str, &'a str>,
    id: &'a str,
    service: &'a str,
    time: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

pub fn run(settings: &Settings, args: &EventsArgs) -> anyhow::Result<u8> {
    let loaded = project::load(settings, &LoadFlags::default())?;
    let project = &loaded.loaded.project;
    for s in &args.services {
        if !project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let ctx = Ctx::open(settings)?;
    let now = Utc::now();
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_time(s, now).map_err(|e| anyhow::anyhow!("--{flag}: {e:#}")))
            .transpose()
    };
    let opts = ReadOptions {
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        follow: true,
        ..Default::default()
    };
    let events = EventReader::open(ctx.root()).events_until(&opts, stdout_closed)?;
    let mut out = std::io::stdout().lock();
    for event in events {
        let event = event?;
        if !selected(&event, &project.name, &args.services) {
            continue;
        }
        let line = if args.json {
            json_line(&event)?
        } else {
            text_line(&event)
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}

/// Whether a reader of our stdout is gone (a pipe whose reading end is closed reports an
/// error on poll), so that a follower nobody reads does not linger.
fn stdout_closed() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// The project's service containers' events (one-off `run` containers are left out, as
/// docker compose does), of `services` only when some are named.
fn selected(event: &Event, project: &str, services: &[String]) -> bool {
    let label = |k: &str| event.attributes.get(k).map(String::as_str).unwrap_or("");
    event.kind == berth_engine::events::CONTAINER
        && label(labels::PROJECT) == project
        && !label(labels::ONEOFF).eq_ignore_ascii_case("true")
        && (services.is_empty() || services.iter().any(|s| s == label(labels::SERVICE)))
}

/// Docker's actor attributes (the labels, `name`, `image` and the action's own) without
/// compose's labels, which docker compose hides.
fn attributes(event: &Event) -> BTreeMap<&str, &str> {
    let mut attrs: BTreeMap<&str, &str> = event
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("com.docker.compose."))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    attrs.insert("name", &event.name);
    attrs.insert("image", &event.image);
    attrs
}

fn local_time(event: &Event) -> DateTime<Local> {
    event
        .timestamp()
        .unwrap_or_else(Utc::now)
        .with_timezone(&Local)
}

/// `2026-11-23 13:00:00.123456 container start <id> (image=…, name=…)`, local time.
fn text_line(event: &Event) -> String {
    let attrs: Vec<String> = attributes(event)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{} {} {} {} ({})",
        local_time(event).format("%Y-%m-%d %H:%M:%S%.6f"),
        event.kind,
        event.action,
        event.id,
        attrs.join(", ")
    )
}

/// docker compose's `--json` line; the time as Go writes a `time.Time` (RFC 3339, local,
/// fraction without trailing zeros).
fn json_line(event: &Event) -> anyhow::Result<String> {
    let t = local_time(event);
    let secs = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = format!("{:09}", t.timestamp_subsec_nanos());
    let frac = nanos.trim_end_matches('0');
    let offset = t.format("%:z").to_string();
    let time = format!(
        "{secs}{}{frac}{}",
        if frac.is_empty() { "" } else { "." },
        if offset == "+00:00" { "Z" } else { &offset }
    );
    let service = event
        .attributes
        .get(labels::SERVICE)
        .map(String::as_str)
        .unwrap_or("");
    Ok(serde_json::to_string(&JsonEvent {
        action: &event.action,
        attributes: attributes(event),
        id: &event.id,
        service,
        time,
        kind: &event.kind,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(labels: &[(&str, &str)]) -> Event {
        Event {
            time: "2026-11-23T13:00:00.123456789Z".to_string(),
            kind: "container".to_string(),
            action: "die".to_string(),
            id: "ab".repeat(32),
            name: "p-web-1".to_string(),
            image: "busybox".to_string(),
            attributes: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const WEB: [(&str, &str); 4] = [
        (labels::PROJECT, "p"),
        (labels::SERVICE, "web"),
        (labels::ONEOFF, "False"),
        ("exitCode", "3"),
    ];

    #[test]
    fn only_the_projects_service_containers_are_selected() {
        let web = event(&WEB);
        assert!(selected(&web, "p", &[]));
        assert!(selected(&web, "p", &["web".to_string()]));
        assert!(!selected(&web, "p", &["db".to_string()]));
        assert!(!selected(&web, "q", &[]));
        let oneoff = event(&[(labels::PROJECT, "p"), (labels::ONEOFF, "True")]);
        assert!(!selected(&oneoff, "p", &[]));
        assert!(!selected(&event(&[]), "p", &[]));
    }

    #[test]
    fn json_has_compose_keys_and_hides_compose_labels() {
        let line = json_line(&event(&WEB)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "container");
        assert_eq!(v["action"], "die");
        assert_eq!(v["service"], "web");
        assert_eq!(v["id"], "ab".repeat(32));
        assert_eq!(
            v["attributes"],
            serde_json::json!({"exitCode": "3", "image": "busybox", "name": "p-web-1"})
        );
        let t = DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
        assert!(line.starts_with("{\"action\":"), "{line}");
    }

    #[test]
    fn text_is_compose_s_line() {
        let line = text_line(&event(&WEB));
        let (time, rest) = line.split_at("2026-11-23 13:00:00.123456".len());
        assert!(
            chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S%.6f").is_ok(),
            "{line}"
        );
        assert!(time.ends_with(".123456"), "{line}");
        assert_eq!(
            rest,
            format!(
                " container die {} (exitCode=3, image=busybox, name=p-web-1)",
                "ab".repeat(32)
            )
        );
    }
}
