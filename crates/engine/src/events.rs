//! The event journal: berth has no daemon to stream `docker events`, so whoever causes a
//! container event (the CLI creating or removing a container, the shim recording an exit, the
//! health prober) appends it to `<root>/events.jsonl`, and `berth events` tails that file.
//!
//! One [`Event`] per line, JSON, written with a single `write(2)` on an `O_APPEND` descriptor:
//! concurrent writers never interleave short lines, so no lock is needed to append. Writers
//! hold `events.lock` shared while they append; when the file has grown past [`ROTATE_AT`],
//! one of them takes it exclusively and renames the file to `events.jsonl.1` (replacing the
//! previous generation), so the journal never grows without bound and no write lands in a file
//! after it was rotated away.
//!
//! Appending is best effort: [`emit`] never fails the container operation that calls it (a
//! lost event is logged at debug level). [`EventReader`] reads the journal, filtered by time,
//! and in follow mode polls for appended lines, reopening the file when it was rotated.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::container::config::ContainerConfig;
use crate::container::store::ContainerDir;
use crate::fsutil::Lock;

/// The journal, directly under the state root.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The previous generation of [`EVENTS_FILE`], replaced at each rotation.
pub const ROTATED_FILE: &str = "events.jsonl.1";
/// Held shared by appenders and exclusively by the rotation.
pub const EVENTS_LOCK_FILE: &str = "events.lock";
/// The journal is rotated once it is larger than this.
pub const ROTATE_AT: u64 = 4 << 20;
/// The longest line written: a `write(2)` this short is never split between writers in
/// practice. Longer events lose their longest labels first (see [`Event::fit`]).
pub const MAX_LINE: usize = 4000;
/// The event type of container events (Docker's `Type`).
pub const CONTAINER: &str = "container";

/// Attributes kept when an event must be shortened: what `berth events` filters and shows
/// on, and what the action itself carries.
const ESSENTIAL: [&str; 7] = [
    "com.docker.compose.project",
    "com.docker.compose.service",
    "com.docker.compose.container-number",
    "com.docker.compose.oneoff",
    "exitCode",
    "signal",
    "execDuration",
];

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// The object type (always [`CONTAINER`] for now); `type` in the file.
    #[serde(rename = "type")]
    pub kind: String,
    /// Docker's action name: `create`, `start`, `kill`, `die`, `stop`, `pause`, `unpause`,
    /// `destroy`, `health_status: healthy`, …
    pub action: String,
    /// The container id (64 hex).
    pub id: String,
    /// The container name, without `/`.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The container's labels plus the action's own attributes (`exitCode`, `signal`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// A container event stamped now: `config`'s labels, then `extra` over them.
    pub fn container(config: &ContainerConfig, action: &str, extra: &[(&str, String)]) -> Event {
        let mut attributes = config.labels.clone();
        for (k, v) in extra {
            attributes.insert((*k).to_string(), v.clone());
        }
        Event {
            time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            kind: CONTAINER.to_string(),
            action: action.to_string(),
            id: config.id.clone(),
            name: config.name.clone(),
            image: config.image_name.clone(),
            attributes,
        }
    }

    /// The event's time; `None` when the field does not parse.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The journal line (with its newline), at most [`MAX_LINE`] bytes: the longest
    /// non-essential attributes are dropped until it fits. `None` if even the bare event is
    /// too long.
    pub fn fit(&self) -> Option<Vec<u8>> {
        let mut event = self.clone();
        loop {
            let mut line = serde_json::to_vec(&event).ok()?;
            line.push(b'\n');
            if line.len() <= MAX_LINE {
                return Some(line);
            }
            let longest = event
                .attributes
                .iter()
                .filter(|(k, _)| !ESSENTIAL.contains(&k.as_str()))
                .max_by_key(|(k, v)| k.len() + v.len())
                .map(|(k, _)| k.clone())?;
            event.attributes.remove(&longest);
        }
    }
}

/// The state root of a container directory (`<root>/containers/<id>`).
fn root_of(dir: &ContainerDir) -> Option<&Path> {
    dir.path.parent()?.parent()
}

/// Records a container event in `root`'s journal; never fails (a lost event is logged at
/// debug level).
pub fn emit(root: &Path, config: &ContainerConfig, action: &str, extra: &[(&str, String)]) {
    let event = Event::container(config, action, extra);
    if let Err(e) = append(root, &event) {
        tracing::debug!(container = %config.name, action, "cannot record the event: {e}");
    }
}

/// [`emit`] for a container known by its directory (its config is read from there).
pub fn emit_for(dir: &ContainerDir, action: &str, extra: &[(&str, String)]) {
    match (root_of(dir), dir.config()) {
        (Some(root), Ok(config)) => emit(root, &config, action, extra),
        (_, Err(e)) => tracing::debug!(id = %dir.id, action, "cannot record the event: {e}"),
        (None, _) => {}
    }
}

/// Appends `event` to `root`'s journal in one `write(2)`, rotating the journal when it has
/// grown past [`ROTATE_AT`].
pub fn append(root: &Path, event: &Event) -> io::Result<()> {
    append_rotating_at(root, event, ROTATE_AT)
}

fn append_rotating_at(root: &Path, event: &Event, rotate_at: u64) -> io::Result<()> {
    let line = event.fit().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the event is too long for the journal",
        )
    })?;
    let path = root.join(EVENTS_FILE);
    let size = {
        let _shared = Lock::shared(&root.join(EVENTS_LOCK_FILE)).map_err(io::Error::other)?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        let written = file.write(&line)?;
        if written != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write to {}", path.display()),
            ));
        }
        file.metadata()?.len()
    };
    if size > rotate_at {
        let _exclusive = Lock::exclusive(&root.join(EVENTS_LOCK_FILE)).map_err(io::Error::other)?;
        // Another writer may have rotated meanwhile: look again under the lock.
        if fs::metadata(&path).is_ok_and(|m| m.len() > rotate_at) {
            fs::rename(&path, root.join(ROTATED_FILE))?;
        }
    }
    Ok(())
}

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Only events at or after this time. In follow mode without it, reading starts at the
    /// end of the journal (events from now on).
    pub since: Option<DateTime<Utc>>,
    /// Only events at or before this time; in follow mode, stop once it has passed.
    pub until: Option<DateTime<Utc>>,
    /// Wait for new events instead of ending at the end of the journal.
    pub follow: bool,
    /// How often a following reader looks for new lines.
    pub poll: Duration,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            since: None,
            until: None,
            follow: false,
            poll: Duration::from_millis(100),
        }
    }
}

/// Reads the journal of one state root.
#[derive(Debug, Clone)]
pub struct EventReader {
    root: PathBuf,
}

impl EventReader {
    /// The reader of `root`'s journal (which need not exist yet).
    pub fn open(root: impl AsRef<Path>) -> EventReader {
        EventReader {
            root: root.as_ref().to_path_buf(),
        }
    }

    /// The events `opts` selects, oldest first.
    pub fn events(&self, opts: &ReadOptions) -> io::Result<Events<'static>> {
        self.events_until(opts, || false)
    }

    /// As [`EventReader::events`]; a following reader also ends when `stop` returns true
    /// (asked at every poll while no event is pending).
    pub fn events_until<'a>(
        &self,
        opts: &ReadOptions,
        stop: impl FnMut() -> bool + Send + 'a,
    ) -> io::Result<Events<'a>> {
        let path = self.root.join(EVENTS_FILE);
        let from_now = opts.follow && opts.since.is_none();
        let mut events = Events {
            path: path.clone(),
            opts: opts.clone(),
            stop: Box::new(stop),
            sources: VecDeque::new(),
            file: None,
            ino: None,
            buf: Vec::new(),
            done: false,
        };
        if from_now {
            if let Some(mut f) = open_if_exists(&path)? {
                f.seek(SeekFrom::End(0))?;
                events.ino = Some(f.metadata()?.ino());
                events.file = Some(f);
            }
        } else {
            events
                .sources
                .extend([self.root.join(ROTATED_FILE), path.clone()]);
        }
        Ok(events)
    }
}

fn open_if_exists(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The iterator [`EventReader::events`] returns. Lines that do not parse are skipped.
pub struct Events<'a> {
    path: PathBuf,
    opts: ReadOptions,
    stop: Box<dyn FnMut() -> bool + Send + 'a>,
    /// Files still to read from their start before following `path` (rotated, then current).
    sources: VecDeque<PathBuf>,
    file: Option<File>,
    /// The inode of `file` when it is (or was) the current journal.
    ino: Option<u64>,
    /// Bytes read but not yet split into lines.
    buf: Vec<u8>,
    done: bool,
}

impl Events<'_> {
    /// The next whole line in the buffer, parsed; `Some(None)` for a line that does not parse.
    fn take_line(&mut self) -> Option<Option<Event>> {
        let end = self.buf.iter().position(|b| *b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=end).collect();
        match serde_json::from_slice::<Event>(&line[..end]) {
            Ok(e) => Some(Some(e)),
            Err(e) => {
                tracing::debug!("skipping a malformed event line: {e}");
                Some(None)
            }
        }
    }

    /// Reads what `file` has; the number of bytes read.
    fn fill(&mut self) -> io::Result<usize> {
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut total = 0;
        loop {
            match f.read(&mut chunk) {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    total += n;
                    if total >= 256 * 1024 {
                        return Ok(total);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Switches to the next file to read from its start: a queued source, or (following) the
    /// journal when it is a new file. Returns false when there is none.
    fn advance(&mut self) -> io::Result<bool> {
        while let Some(next) = self.sources.pop_front() {
            if let Some(f) = open_if_exists(&next)? {
                if next == self.path {
                    self.ino = Some(f.metadata()?.ino());
                }
                self.buf.clear();
                self.file = Some(f);
                return Ok(true);
            }
        }
        if !self.opts.follow {
            return Ok(false);
        }
        let current = match fs::metadata(&self.path) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if current.is_none() || current == self.ino {
            return Ok(false);
        }
        // Rotated (or created): anything written to the old file before the rename is read
        // first, then the new file from its start.
        if self.fill()? > 0 {
            return Ok(true);
        }
        self.sources.push_back(self.path.clone());
        self.ino = None;
        self.advance()
    }

    fn wanted(&self, e: &Event) -> bool {
        let Some(t) = e.timestamp() else {
            return false;
        };
        self.opts.since.is_none_or(|s| t >= s) && self.opts.until.is_none_or(|u| t <= u)
    }
}

impl Iterator for Events<'_> {
    type Item = io::Result<Event>;

    fn next(&mut self) -> Option<io::Result<Event>> {
        while !self.done {
            match self.take_line() {
                Some(Some(e)) if self.wanted(&e) => return Some(Ok(e)),
                Some(_) => continue,
                None => {}
            }
            match self.fill() {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.advance() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            if !self.opts.follow || self.opts.until.is_some_and(|u| Utc::now() > u) || (self.stop)()
            {
                self.done = true;
                break;
            }
            std::thread::sleep(self.opts.poll);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    fn config(name: &str) -> ContainerConfig {
        ContainerConfig {
            id: "ab".repeat(32),
            name: name.to_string(),
            image_name: "busybox".to_string(),
            labels: [("com.docker.compose.service".to_string(), "web".to_string())].into(),
            ..Default::default()
        }
    }

    fn all(root: &Path) -> Vec<Event> {
        EventReader::open(root)
            .events(&ReadOptions::default())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn appended_events_read_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        emit(tmp.path(), &config("p-web-1"), "create", &[]);
        emit(
            tmp.path(),
            &config("p-web-1"),
            "die",
            &[("exitCode", "3".to_string())],
        );
        let events = all(tmp.path());
        assert_eq!(
            events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["create", "die"]
        );
        let die = &events[1];
        assert_eq!(
            (die.kind.as_str(), die.name.as_str(), die.image.as_str()),
            ("container", "p-web-1", "busybox")
        );
        assert_eq!(die.id, "ab".repeat(32));
        assert_eq!(die.attributes["exitCode"], "3");
        assert_eq!(die.attributes["com.docker.compose.service"], "web");
        assert!(
            die.time.ends_with('Z') && die.timestamp().is_some(),
            "{}",
            die.time
        );
        let line = fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
        assert!(line.contains("\"type\":\"container\""), "{line}");
    }

    #[test]
    fn a_missing_root_loses_the_event_quietly() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("nope");
        emit(&gone, &config("p-web-1"), "start", &[]);
        assert!(!gone.exists());
        assert!(all(&gone).is_empty());
    }

    #[test]
    fn long_labels_are_dropped_but_essentials_kept() {
        let mut c = config("p-web-1");
        c.labels.insert("big".to_string(), "x".repeat(MAX_LINE));
        c.labels.insert("small".to_string(), "y".to_string());
        let e = Event::container(&c, "die", &[("exitCode", "1".to_string())]);
        let line = e.fit().unwrap();
        assert!(line.len() <= MAX_LINE);
        let back: Event = serde_json::from_slice(&line).unwrap();
        assert!(!back.attributes.contains_key("big"));
        assert_eq!(back.attributes["small"], "y");
        assert_eq!(back.attributes["exitCode"], "1");
        assert_eq!(back.attributes["com.docker.compose.service"], "web");
    }

    #[test]
    fn concurrent_appenders_write_whole_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let root = tmp.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut c = config(&format!("c-{t}"));
                    c.labels.insert("pad".to_string(), "z".repeat(1500));
                    for i in 0..100 {
                        append(
                            &root,
                            &Event::container(&c, "start", &[("i", i.to_string())]),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 800);
        for line in text.lines() {
            serde_json::from_str::<Event>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        for t in 0..8 {
            let name = format!("c-{t}");
            let mut seen: Vec<u32> = all(tmp.path())
                .iter()
                .filter(|e| e.name == name)
                .map(|e| e.attributes["i"].parse().unwrap())
                .collect();
            seen.sort();
            assert_eq!(seen, (0..100).collect::<Vec<_>>(), "{name}");
        }
    }

    #[test]
    fn a_large_journal_is_rotated_once_and_read_across_generations() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config("p-web-1");
        let mut line_len = 0;
        for i in 0..10 {
            let e = Event::container(&c, "start", &[("i", i.to_string())]);
            line_len = e.fit().unwrap().len() as u64;
            // Rotate once the file holds more than four lines.
            append_rotating_at(tmp.path(), &e, 4 * line_len + line_len / 2).unwrap();
        }
        let rotated = fs::read_to_string(tmp.path().join(ROTATED_FILE)).unwrap();
        // Rotations after the 5th and the 10th line: the first generation was replaced.
        assert!(!tmp.path().join(EVENTS_FILE).exists());
        assert_eq!(rotated.lines().count(), 5);
        assert!(rotated.len() as u64 > 4 * line_len);
        let seen: Vec<String> = all(tmp.path())
            .iter()
            .map(|e| e.attributes["i"].clone())
            .collect();
        assert_eq!(seen, ["5", "6", "7", "8", "9"]);
    }

    #[test]
    fn since_and_until_select_by_time() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config("p-web-1");
        for (i, t) in [
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:03Z",
        ]
        .iter()
        .enumerate()
        {
            let mut e = Event::container(&c, "start", &[("i", i.to_string())]);
            e.time = t.to_string();
            append(tmp.path(), &e).unwrap();
        }
        fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join(EVENTS_FILE))
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let opts = ReadOptions {
            since: Some(at("2026-01-01T00:00:02Z")),
            until: Some(at("2026-01-01T00:00:02.5Z")),
            ..Default::default()
        };
        let got: Vec<String> = EventReader::open(tmp.path())
            .events(&opts)
            .unwrap()
            .map(|e| e.unwrap().attributes["i"].clone())
            .collect();
        assert_eq!(got, ["1"]);
        // Following with an `until` in the past ends at the end of the journal.
        let opts = ReadOptions {
            follow: true,
            ..opts
        };
        assert_eq!(
            EventReader::open(tmp.path()).events(&opts).unwrap().count(),
            1
        );
    }

    /// Follows from now in a thread; returns what it saw once `stop` is set.
    fn follow_in_thread(
        root: &Path,
    ) -> (
        mpsc::Receiver<Event>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = EventReader::open(root);
        let opts = ReadOptions {
            follow: true,
            poll: Duration::from_millis(10),
            ..Default::default()
        };
        let events = reader
            .events_until(&opts, {
                let stop = stop.clone();
                move || stop.load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap();
        let handle = std::thread::spawn(move || {
            for e in events {
                if tx.send(e.unwrap()).is_err() {
                    return;
                }
            }
        });
        (rx, stop, handle)
    }

    fn recv(rx: &mpsc::Receiver<Event>) -> Event {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the follower saw no event")
    }

    #[test]
    fn follow_sees_only_later_events_and_stops_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config("p-web-1");
        emit(tmp.path(), &c, "create", &[]);
        let (rx, stop, handle) = follow_in_thread(tmp.path());
        emit(tmp.path(), &c, "start", &[]);
        assert_eq!(recv(&rx).action, "start");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let begun = Instant::now();
        handle.join().unwrap();
        assert!(begun.elapsed() < Duration::from_secs(2));
        assert!(rx.try_recv().is_err(), "create came before the follower");
    }

    #[test]
    fn follow_survives_creation_and_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config("p-web-1");
        // No journal yet: the follower waits for it.
        let (rx, stop, handle) = follow_in_thread(tmp.path());
        emit(tmp.path(), &c, "create", &[]);
        assert_eq!(recv(&rx).action, "create");
        let len = Event::container(&c, "start", &[]).fit().unwrap().len() as u64;
        // This append grows the file past the limit: it is rotated away after the write.
        append_rotating_at(tmp.path(), &Event::container(&c, "start", &[]), len).unwrap();
        assert!(tmp.path().join(ROTATED_FILE).exists());
        emit(tmp.path(), &c, "die", &[]);
        assert_eq!(recv(&rx).action, "start");
        assert_eq!(recv(&rx).action, "die");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().unwrap();
    }
}
