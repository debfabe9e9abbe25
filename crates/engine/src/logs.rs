//! Container logs in Docker's `json-file` format: the [`LogWriter`] a container's shim feeds
//! with the bytes it reads from the container's stdout/stderr, and the [`LogReader`] behind
//! `logs` (`--tail`, `--since`, `--until`, `-f`, `-t`).
//!
//! # On disk
//!
//! `<dir>/container.log` holds one JSON object per line, exactly as Docker's json-file driver
//! writes them: `{"log":"text\n","stream":"stdout","time":"2026-11-23T07:08:01.123456789Z"}`.
//! When `max_size` is set and the next entry would make the file larger, the file is rotated:
//! `container.log.<max_file-2>` → `container.log.<max_file-1>` … `container.log` →
//! `container.log.1` (newest first, the oldest is dropped), then a new `container.log` is
//! created. Every rename moves a whole file, so a crash mid-rotation leaves only complete files
//! (at worst one name of the chain is missing). Only the last line of `container.log` may be
//! incomplete (a crash mid-write); a writer opening the directory terminates such a line so
//! that its own entries start on a fresh line, and the reader skips lines that do not parse.
//!
//! # Text
//!
//! A line is cut after `\n`. Text without a newline is held per stream and written as a
//! *partial* entry (no trailing `\n`, as Docker does) when 16 KiB have gathered, on
//! [`LogWriter::flush_partial`] and on [`LogWriter::close`]; lines longer than 16 KiB are thus
//! split in several entries of which only the last ends with `\n`. A 16 KiB cut never splits a
//! UTF-8 character (the at most 3 bytes of an incomplete one are carried into the next entry).
//! Invalid UTF-8 is replaced by U+FFFD (`String::from_utf8_lossy`), as Go's JSON encoder does
//! for Docker: the bytes are not kept, the entry is. The time of an entry is when the writer
//! was handed the chunk that completed it.
//!
//! # Async consumers
//!
//! Reading is blocking (it may wait for new entries when following). A tokio consumer runs the
//! iterator from [`LogReader::entries_until`] inside `tokio::task::spawn_blocking` and forwards
//! each entry over a bounded `tokio::sync::mpsc` channel; the stop closure should also return
//! `true` once the channel is closed (`tx.is_closed()`), so the blocking task ends within
//! ~100 ms of the client going away.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::container::LogConfig;

/// The name of the current log file inside a container's log directory.
pub const LOG_FILE: &str = "container.log";

/// The most text one entry carries; longer lines (and text without newline reaching this size)
/// are written as several entries.
pub const MAX_ENTRY: usize = 16 * 1024;

/// Encoded entries gathered before they are written out within one [`LogWriter::write`].
const FLUSH_AT: usize = 32 * 1024;
/// Buffer capacity kept between writes: an idle shim after a burst holds only this (plus
/// text without newline).
const KEEP_IDLE: usize = 4 * 1024;
/// Bytes read at once by the reader (forwards and backwards).
const READ_CHUNK: usize = 64 * 1024;
/// A line longer than this cannot come from a writer (16 KiB of text escapes to < 100 KiB);
/// such garbage is dropped instead of growing the reader's buffer.
const MAX_LINE: usize = 1024 * 1024;
/// How often a follower checks its stop condition (and, without inotify, the files).
const FOLLOW_TICK: Duration = Duration::from_millis(100);
/// Polling interval when inotify is not available.
const POLL_FALLBACK: Duration = Duration::from_millis(50);

/// Why writing or reading logs failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O operation (`op`: "open", "write", "rename", …) on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The container's log driver is neither `json-file`, `local` nor `none`.
    #[error("unsupported log driver {driver:?} (berth supports json-file, local and none)")]
    UnsupportedDriver { driver: String },
    /// `max_file` is 0.
    #[error("invalid log options for {}: max-file must be at least 1", dir.display())]
    InvalidMaxFile { dir: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Which of the container's output streams an entry came from (a pty is `Stdout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The name in the `stream` field: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Parses `stdout` / `stderr`.
    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The path of the current log file in `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn rotated_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{n}"))
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Appends a container's output to its log directory; synchronous, no threads, made for the
/// shim's poll loop. Memory: at most 16 KiB held per stream for text without newline, plus an
/// encode buffer that is written out before [`LogWriter::write`] returns; after a burst the
/// buffers shrink back to 4 KiB each.
///
/// Dropping the writer flushes held text like [`LogWriter::close`] but only logs errors.
pub struct LogWriter {
    active: Option<Active>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.active {
            None => f.write_str("LogWriter(none)"),
            Some(a) => write!(f, "LogWriter({})", a.path.display()),
        }
    }
}

struct Active {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes in the current file (written, not counting `out`).
    size: u64,
    max_size: u64,
    max_file: u32,
    /// Text without newline yet, per stream (never more than [`MAX_ENTRY`] bytes).
    held: [Vec<u8>; 2],
    /// Encoded entries not yet written.
    out: Vec<u8>,
    /// A write failed part-way: the next write starts with a newline so that the broken line
    /// does not swallow the next entry.
    broken: bool,
}

impl LogWriter {
    /// Opens the log in `dir` (created if missing) for appending, as `cfg` says: driver
    /// `none` gives a writer that discards everything; `max_size` 0 never rotates. A restarted
    /// container's new shim opens the same directory and appends.
    pub fn open(dir: &Path, cfg: &LogConfig) -> Result<LogWriter, LogError> {
        match cfg.driver.as_str() {
            "none" => return Ok(LogWriter { active: None }),
            "" | "json-file" | "local" => {}
            other => {
                return Err(LogError::UnsupportedDriver {
                    driver: other.to_string(),
                });
            }
        }
        if cfg.max_file == 0 {
            return Err(LogError::InvalidMaxFile {
                dir: dir.to_path_buf(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let path = log_path(dir);
        let file = open_log_file(&path)?;
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        let mut active = Active {
            dir: dir.to_path_buf(),
            path,
            file,
            size,
            max_size: cfg.max_size,
            max_file: cfg.max_file,
            held: [Vec::new(), Vec::new()],
            out: Vec::new(),
            broken: false,
        };
        if size > 0 {
            // A previous writer may have died mid-line: start ours on a line of its own.
            let mut last = [0u8; 1];
            active
                .file
                .read_exact_at(&mut last, size - 1)
                .map_err(io_err("read", &active.path))?;
            active.broken = last[0] != b'\n';
        }
        Ok(LogWriter {
            active: Some(active),
        })
    }

    /// Whether this writer discards everything (driver `none`).
    pub fn is_discarding(&self) -> bool {
        self.active.is_none()
    }

    /// Logs `bytes` read from `stream` now. Complete lines are written before this returns;
    /// text after the last newline is held until its newline arrives (or 16 KiB gather). On
    /// error the chunk's unwritten entries are lost; the writer stays usable.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), LogError> {
        match &mut self.active {
            None => Ok(()),
            Some(a) => a.write_at(stream, bytes, Utc::now()),
        }
    }

    /// Writes the text held without newline as partial entries (e.g. when the container's
    /// stream closes).
    pub fn flush_partial(&mut self) -> Result<(), LogError> {
        match &mut self.active {
            None => Ok(()),
            Some(a) => a.flush_partial_at(Utc::now()),
        }
    }

    /// Flushes held text and closes the file.
    pub fn close(mut self) -> Result<(), LogError> {
        let r = self.flush_partial();
        self.active = None;
        r
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(a) = &mut self.active
            && let Err(e) = a.flush_partial_at(Utc::now())
        {
            tracing::warn!(error = %e, "cannot flush container log");
        }
    }
}

fn open_log_file(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(io_err("open", path))
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

impl Active {
    fn write_at(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), LogError> {
        let stamp = timestamp(now);
        let i = stream.index();
        let mut rest = bytes;
        while !rest.is_empty() {
            let held = self.held[i].len();
            let room = MAX_ENTRY - held;
            let window = &rest[..rest.len().min(room)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                let (line, tail) = rest.split_at(nl + 1);
                rest = tail;
                if held == 0 {
                    self.emit(stream, &stamp, line)?;
                } else {
                    let mut buf = std::mem::take(&mut self.held[i]);
                    buf.extend_from_slice(line);
                    let r = self.emit(stream, &stamp, &buf);
                    buf.clear();
                    self.held[i] = buf;
                    r?;
                }
            } else if rest.len() >= room {
                // MAX_ENTRY bytes without newline: out as a partial entry.
                let mut buf = std::mem::take(&mut self.held[i]);
                buf.extend_from_slice(&rest[..room]);
                rest = &rest[room..];
                let cut = utf8_cut(&buf);
                let r = self.emit(stream, &stamp, &buf[..cut]);
                buf.drain(..cut);
                self.held[i] = buf;
                r?;
            } else {
                self.held[i].extend_from_slice(rest);
                rest = &[];
            }
        }
        let r = self.flush_out();
        self.trim();
        r
    }

    fn flush_partial_at(&mut self, now: DateTime<Utc>) -> Result<(), LogError> {
        if self.held.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let stamp = timestamp(now);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = std::mem::take(&mut self.held[stream.index()]);
            if !buf.is_empty() {
                self.emit(stream, &stamp, &buf)?;
            }
        }
        let r = self.flush_out();
        self.trim();
        r
    }

    /// Encodes one entry into `out`, rotating first if it would not fit the current file.
    fn emit(&mut self, stream: Stream, stamp: &str, text: &[u8]) -> Result<(), LogError> {
        let before = self.out.len();
        encode(&mut self.out, stream, stamp, text);
        let after = self.out.len() as u64;
        if self.max_size > 0 && self.size + before as u64 > 0 && self.size + after > self.max_size {
            self.write_out(before)?;
            self.rotate()?;
        }
        if self.out.len() >= FLUSH_AT {
            self.flush_out()?;
        }
        Ok(())
    }

    fn flush_out(&mut self) -> Result<(), LogError> {
        self.write_out(self.out.len())
    }

    /// Gives back buffer memory grown by a burst (the shim may sit idle for days).
    fn trim(&mut self) {
        for buf in self.held.iter_mut().chain([&mut self.out]) {
            if buf.capacity() > KEEP_IDLE && buf.len() <= KEEP_IDLE {
                buf.shrink_to(KEEP_IDLE);
            }
        }
    }

    /// Writes the first `n` bytes of `out` to the current file.
    fn write_out(&mut self, n: usize) -> Result<(), LogError> {
        if n == 0 {
            return Ok(());
        }
        if self.broken {
            self.out.insert(0, b'\n');
        }
        let n = n + usize::from(self.broken);
        match self.file.write_all(&self.out[..n]) {
            Ok(()) => {
                self.size += n as u64;
                self.broken = false;
                self.out.drain(..n);
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                self.out.clear();
                Err(LogError::Io {
                    op: "write",
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// Shifts the rotated files by one (dropping the oldest) and starts a new current file.
    fn rotate(&mut self) -> Result<(), LogError> {
        // Whatever happens below, do not retry on every entry: the next attempt comes after
        // another max_size bytes.
        self.size = 0;
        if self.max_file <= 1 {
            remove_if_exists(&self.path)?;
        } else {
            for n in (1..self.max_file - 1).rev() {
                rename_if_exists(&rotated_path(&self.dir, n), &rotated_path(&self.dir, n + 1))?;
            }
            rename_if_exists(&self.path, &rotated_path(&self.dir, 1))?;
        }
        self.file = open_log_file(&self.path)?;
        self.size = self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .len();
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), LogError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("rename", from)(e)),
        _ => Ok(()),
    }
}

/// Where to cut `buf` (full, no newline) so that no UTF-8 character is split: before an
/// incomplete sequence at its very end, else at its end.
fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    // The last lead byte among the last 4 bytes starts the only sequence that can be cut.
    for back in 1..=len.min(4) {
        let b = buf[len - back];
        if b & 0xC0 != 0x80 {
            if let Err(e) = std::str::from_utf8(&buf[len - back..])
                && e.error_len().is_none()
                && back < len
            {
                return len - back;
            }
            break;
        }
    }
    len
}

/// Appends `{"log":…,"stream":…,"time":…}\n` to `out`.
fn encode(out: &mut Vec<u8>, stream: Stream, stamp: &str, text: &[u8]) {
    out.extend_from_slice(b"{\"log\":\"");
    escape_json(out, &String::from_utf8_lossy(text));
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

fn escape_json(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

// ---------------------------------------------------------------------------------------------
// Reader

/// What `logs` asks for. `since`/`until` are inclusive bounds; `tail` selects the last N
/// entries first and the time bounds then filter those (as Docker does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N entries (`--tail N`; `Some(0)` shows none); `None`: all.
    pub tail: Option<usize>,
    /// Skip entries older than this.
    pub since: Option<DateTime<Utc>>,
    /// End at the first entry newer than this; a follower also ends once this time passed.
    pub until: Option<DateTime<Utc>>,
    /// After the existing entries, wait for new ones (`-f`).
    pub follow: bool,
}

/// One log entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the writer got the text.
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// The text (valid UTF-8), with its trailing `\n` unless `partial`.
    pub bytes: Vec<u8>,
    /// A piece of a longer line (no trailing `\n`); the next entry of the same stream goes on.
    pub partial: bool,
}

impl LogEntry {
    /// The entry as `logs` prints it: the text, preceded with `-t` by the time in Docker's
    /// fixed RFC 3339 nanosecond form and a space (`2026-11-23T07:08:01.123456789Z hello\n`).
    pub fn format_line(&self, timestamps: bool) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.bytes.len() + 31);
        if timestamps {
            line.extend_from_slice(timestamp(self.time).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&self.bytes);
        line
    }
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
}

fn parse_entry(line: &[u8]) -> Option<LogEntry> {
    let raw: RawEntry<'_> = serde_json::from_slice(line).ok()?;
    let stream = Stream::parse(&raw.stream)?;
    let time = DateTime::parse_from_rfc3339(&raw.time)
        .ok()?
        .with_timezone(&Utc);
    let bytes = raw.log.into_owned().into_bytes();
    Some(LogEntry {
        time,
        stream,
        partial: !bytes.ends_with(b"\n"),
        bytes,
    })
}

/// Reads a container's log directory.
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: PathBuf,
}

impl LogReader {
    /// A reader for the log directory `dir` (which must exist; it may hold no log yet).
    pub fn open(dir: &Path) -> Result<LogReader, LogError> {
        let meta = fs::metadata(dir).map_err(io_err("open", dir))?;
        if !meta.is_dir() {
            return Err(LogError::Io {
                op: "open",
                path: dir.to_path_buf(),
                source: io::Error::from(io::ErrorKind::NotADirectory),
            });
        }
        Ok(LogReader {
            dir: dir.to_path_buf(),
        })
    }

    /// The entries `opts` asks for, oldest first; with `follow`, the iterator then waits for
    /// new entries forever (use [`LogReader::entries_until`] to end it).
    pub fn entries(&self, opts: &ReadOptions) -> Result<Entries<fn() -> bool>, LogError> {
        fn never() -> bool {
            false
        }
        self.entries_until(opts, never as fn() -> bool)
    }

    /// Like [`LogReader::entries`]; a follower ends once `stop()` returned true and all data
    /// written until then has been returned. `stop` is called every ~100 ms while waiting
    /// (e.g. `|| container_exited()`; the writer must have been closed by then).
    pub fn entries_until<S: FnMut() -> bool>(
        &self,
        opts: &ReadOptions,
        stop: S,
    ) -> Result<Entries<S>, LogError> {
        let watcher = if opts.follow {
            Watcher::new(&self.dir)
        } else {
            Watcher { fd: None }
        };
        // Open newest first: a rotation during this loop then shows up as an inode already
        // opened (skipped), never as a newer file taken for an older one.
        let mut opened: Vec<Cursor> = Vec::new();
        for (n, path) in list_files(&self.dir)? {
            if n > 0
                && let Some(since) = opts.since
                && let Ok(m) = fs::metadata(&path)
                && let Ok(mtime) = m.modified()
                && mtime < SystemTime::from(since)
            {
                // Last written before `since`: nothing in it or older files qualifies.
                break;
            }
            let Some(c) = Cursor::open(&path)? else {
                continue;
            };
            if opened.iter().any(|o| o.key == c.key) {
                continue;
            }
            opened.push(c);
        }
        if let Some(mut want) = opts.tail {
            let mut keep = 0;
            for c in &mut opened {
                keep += 1;
                let (start, found) = c.tail_start(want)?;
                c.seek(start);
                want -= found;
                if want == 0 {
                    break;
                }
            }
            opened.truncate(keep);
        }
        opened.reverse();
        let mut queue: std::collections::VecDeque<Cursor> = opened.into();
        let cur = queue.pop_front();
        Ok(Entries {
            dir: self.dir.clone(),
            cur,
            queue,
            since: opts.since,
            until: opts.until,
            follow: opts.follow,
            stop,
            stopping: false,
            done: false,
            watcher,
        })
    }
}

/// The log files in `dir`, newest first: (0, container.log), (1, container.log.1), ….
fn list_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, LogError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let n = if name == LOG_FILE {
            0
        } else if let Some(n) = name
            .strip_prefix(LOG_FILE)
            .and_then(|s| s.strip_prefix('.'))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&n| n > 0)
        {
            n
        } else {
            continue;
        };
        files.push((n, entry.path()));
    }
    files.sort_by_key(|(n, _)| *n);
    Ok(files)
}

/// One open log file being read forwards.
struct Cursor {
    file: File,
    path: PathBuf,
    /// (dev, ino): unambiguous while the file is open.
    key: (u64, u64),
    /// File offset of the end of `buf`.
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Dropping a line that grew beyond MAX_LINE up to its newline.
    skipping: bool,
}

impl Cursor {
    fn open(path: &Path) -> Result<Option<Cursor>, LogError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let m = file.metadata().map_err(io_err("stat", path))?;
        Ok(Some(Cursor {
            file,
            path: path.to_path_buf(),
            key: (m.dev(), m.ino()),
            offset: 0,
            buf: Vec::new(),
            pos: 0,
            skipping: false,
        }))
    }

    fn seek(&mut self, offset: u64) {
        self.offset = offset;
        self.buf.clear();
        self.pos = 0;
    }

    /// Reading backwards from the end: the offset where the last `want` complete lines begin
    /// (an incomplete last line is not counted), and how many complete lines that is (fewer
    /// than `want` if the file has fewer; the offset is then 0).
    fn tail_start(&self, want: usize) -> Result<(u64, usize), LogError> {
        let len = self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .len();
        let mut block = vec![0u8; READ_CHUNK];
        let mut pos = len;
        let mut newlines = 0;
        while pos > 0 {
            let n = pos.min(READ_CHUNK as u64) as usize;
            pos -= n as u64;
            self.file
                .read_exact_at(&mut block[..n], pos)
                .map_err(io_err("read", &self.path))?;
            for i in (0..n).rev() {
                if block[i] == b'\n' {
                    if newlines == want {
                        return Ok((pos + i as u64 + 1, want));
                    }
                    newlines += 1;
                }
            }
        }
        Ok((0, newlines))
    }

    /// The next complete line (without its `\n`) as a range of `buf`; `None` at end of file.
    fn next_line(&mut self) -> Result<Option<std::ops::Range<usize>>, LogError> {
        let mut scanned = self.pos;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let start = self.pos;
                let end = scanned + i;
                self.pos = end + 1;
                if std::mem::take(&mut self.skipping) {
                    scanned = self.pos;
                    continue;
                }
                return Ok(Some(start..end));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            if self.buf.len() > MAX_LINE {
                tracing::warn!(path = %self.path.display(), "dropping an overlong log line");
                self.buf.clear();
                self.skipping = true;
            }
            scanned = self.buf.len();
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let n = loop {
                match self.file.read_at(&mut self.buf[old..], self.offset) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(io_err("read", &self.path)(e));
                    }
                }
            };
            self.buf.truncate(old + n);
            self.offset += n as u64;
            if n == 0 {
                if self.buf.capacity() > 2 * READ_CHUNK && self.buf.len() < READ_CHUNK {
                    self.buf.shrink_to(READ_CHUNK);
                }
                return Ok(None);
            }
        }
    }

    /// Whether bytes after the last complete line are held (an incomplete line).
    fn has_incomplete(&self) -> bool {
        self.buf.len() > self.pos
    }

    /// Starts over if the file was truncated below what was read.
    fn check_truncated(&mut self) -> Result<(), LogError> {
        let len = self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .len();
        if len < self.offset {
            tracing::warn!(path = %self.path.display(), "log file truncated; reading it again");
            self.seek(0);
        }
        Ok(())
    }

    fn nlink(&self) -> Result<u64, LogError> {
        Ok(self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .nlink())
    }
}

/// Wakes a follower when something changes in the log directory (inotify), or after a short
/// sleep where inotify is not available.
struct Watcher {
    fd: Option<OwnedFd>,
}

impl Watcher {
    fn new(dir: &Path) -> Watcher {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .and_then(|fd| {
                inotify::add_watch(
                    &fd,
                    dir,
                    inotify::WatchFlags::MODIFY
                        | inotify::WatchFlags::CREATE
                        | inotify::WatchFlags::MOVED_FROM
                        | inotify::WatchFlags::MOVED_TO
                        | inotify::WatchFlags::DELETE
                        | inotify::WatchFlags::CLOSE_WRITE,
                )?;
                Ok(fd)
            });
        match fd {
            Ok(fd) => Watcher { fd: Some(fd) },
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no inotify; polling the log");
                Watcher { fd: None }
            }
        }
    }

    /// Waits until the directory changed or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout.min(POLL_FALLBACK));
            return;
        };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, ms) {
            Ok(n) if n > 0 => {
                let mut buf = [0u8; 4096];
                // Drain the events: they only say "look again".
                while let Ok(n) = rustix::io::read(fd, &mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => std::thread::sleep(POLL_FALLBACK),
        }
    }
}

/// The entries of one read, oldest first (see [`LogReader::entries_until`]). Lines that are
/// not valid entries (e.g. left by a crash) are skipped with a warning.
pub struct Entries<S> {
    dir: PathBuf,
    /// The file being read.
    cur: Option<Cursor>,
    /// Newer files to read after `cur`, oldest first.
    queue: std::collections::VecDeque<Cursor>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    follow: bool,
    stop: S,
    /// Stop was seen: one more pass over what is pending, then end.
    stopping: bool,
    done: bool,
    watcher: Watcher,
}

impl<S> std::fmt::Debug for Entries<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("dir", &self.dir)
            .field("follow", &self.follow)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S: FnMut() -> bool> Entries<S> {
    fn next_entry(&mut self) -> Result<Option<LogEntry>, LogError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(c) = &mut self.cur {
                if let Some(range) = c.next_line()? {
                    let line = &c.buf[range];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let Some(entry) = parse_entry(line) else {
                        tracing::warn!(path = %c.path.display(), "skipping a log line that is not a valid entry");
                        continue;
                    };
                    if self.since.is_some_and(|s| entry.time < s) {
                        continue;
                    }
                    if self.until.is_some_and(|u| entry.time > u) {
                        self.done = true;
                        return Ok(None);
                    }
                    return Ok(Some(entry));
                }
                // End of this file.
                if let Some(next) = self.queue.pop_front() {
                    if c.has_incomplete() {
                        tracing::warn!(path = %c.path.display(), "skipping an incomplete last log line");
                    }
                    self.cur = Some(next);
                    continue;
                }
            } else if let Some(next) = self.queue.pop_front() {
                self.cur = Some(next);
                continue;
            }
            if !self.follow {
                self.done = true;
                return Ok(None);
            }
            // Caught up with the newest file we know of.
            let newer = self.newer_files()?;
            if !newer.is_empty() {
                // `cur` gets one more pass (bytes written before the rotation), then these.
                self.queue.extend(newer);
                continue;
            }
            if self.stopping {
                self.done = true;
                return Ok(None);
            }
            if (self.stop)() || self.until.is_some_and(|u| Utc::now() > u) {
                self.stopping = true;
                continue;
            }
            self.watcher.wait(FOLLOW_TICK);
        }
    }

    /// Files written after `cur` (oldest first), when the current `container.log` is no
    /// longer `cur` (rotated); empty while `cur` is still current or mid-rotation.
    fn newer_files(&mut self) -> Result<Vec<Cursor>, LogError> {
        let Some(cur) = &mut self.cur else {
            return Ok(Cursor::open(&log_path(&self.dir))?.into_iter().collect());
        };
        cur.check_truncated()?;
        let live = match fs::metadata(log_path(&self.dir)) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("stat", &log_path(&self.dir))(e)),
        };
        if live == cur.key {
            return Ok(Vec::new());
        }
        // Rotated: the files newer than `cur` are those listed before it (newest first).
        // If `cur` is gone (dropped as the oldest, or max_file 1), every file is newer.
        let deleted = cur.nlink()? == 0;
        let mut newer = Vec::new();
        let mut found = false;
        for (_, path) in list_files(&self.dir)? {
            let Some(c) = Cursor::open(&path)? else {
                continue;
            };
            if c.key == cur.key {
                found = true;
                break;
            }
            if !newer.iter().any(|n: &Cursor| n.key == c.key) {
                newer.push(c);
            }
        }
        if !found && !deleted {
            // Listed while files were being renamed: look again at the next tick.
            return Ok(Vec::new());
        }
        newer.reverse();
        Ok(newer)
    }
}

impl<S: FnMut() -> bool> Iterator for Entries<S> {
    type Item = Result<LogEntry, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn cfg(max_size: u64, max_file: u32) -> LogConfig {
        LogConfig {
            driver: "json-file".to_string(),
            max_size,
            max_file,
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn write_at(w: &mut LogWriter, stream: Stream, bytes: &[u8], time: DateTime<Utc>) {
        w.active
            .as_mut()
            .unwrap()
            .write_at(stream, bytes, time)
            .unwrap();
    }

    fn read(dir: &Path, opts: &ReadOptions) -> Vec<LogEntry> {
        LogReader::open(dir)
            .unwrap()
            .entries(opts)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn texts(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8(e.bytes.clone()).unwrap())
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The length of one encoded `line NN\n` entry at a whole-second time.
    fn entry_len() -> u64 {
        let mut out = Vec::new();
        encode(&mut out, Stream::Stdout, &timestamp(t(1)), b"line 00\n");
        out.len() as u64
    }

    fn write_lines(dir: &Path, c: &LogConfig, range: std::ops::Range<usize>) {
        let mut w = LogWriter::open(dir, c).unwrap();
        for i in range {
            write_at(
                &mut w,
                Stream::Stdout,
                format!("line {i:02}\n").as_bytes(),
                t(1),
            );
        }
        w.close().unwrap();
    }

    fn numbers(entries: &[LogEntry]) -> Vec<usize> {
        texts(entries)
            .iter()
            .map(|s| s.trim_start_matches("line ").trim_end().parse().unwrap())
            .collect()
    }

    #[test]
    fn entries_are_docker_json_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), &LogConfig::default()).unwrap();
        let time = t(100) + chrono::Duration::nanoseconds(1);
        write_at(&mut w, Stream::Stdout, b"hi\n", time);
        write_at(
            &mut w,
            Stream::Stderr,
            b"q\"\\\t\r\x01\x1f \xc3\xa9\n",
            time,
        );
        w.close().unwrap();
        let text = fs::read_to_string(dir.path().join("container.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"log":"hi\n","stream":"stdout","time":"1970-01-01T00:01:40.000000001Z"}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["log"], "q\"\\\t\r\u{1}\u{1f} é\n");
        assert_eq!(v["stream"], "stderr");
        let e = read(dir.path(), &ReadOptions::default());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].time, time);
        assert_eq!(e[1].stream, Stream::Stderr);
        assert!(!e[1].partial);
        assert_eq!(e[0].format_line(false), b"hi\n");
        assert_eq!(
            e[0].format_line(true),
            b"1970-01-01T00:01:40.000000001Z hi\n"
        );
    }

    #[test]
    fn rotation_splits_files_drops_the_oldest_and_reads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(4 * entry_len(), 3);
        write_lines(dir.path(), &c, 0..10);
        assert_eq!(
            names(dir.path()),
            ["container.log", "container.log.1", "container.log.2"]
        );
        let count = |name: &str| {
            fs::read_to_string(dir.path().join(name))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(
            [
                count("container.log.2"),
                count("container.log.1"),
                count("container.log")
            ],
            [4, 4, 2]
        );
        let all = read(dir.path(), &ReadOptions::default());
        assert_eq!(numbers(&all), (0..10).collect::<Vec<_>>());

        // A new shim appends; two more rotations drop the two oldest files.
        write_lines(dir.path(), &c, 10..20);
        assert_eq!(
            names(dir.path()),
            ["container.log", "container.log.1", "container.log.2"]
        );
        for name in names(dir.path()) {
            let len = fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= c.max_size, "{len}");
        }
        let all = read(dir.path(), &ReadOptions::default());
        assert_eq!(numbers(&all), (8..20).collect::<Vec<_>>());
    }

    #[test]
    fn max_file_one_keeps_only_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        write_lines(dir.path(), &cfg(3 * entry_len(), 1), 0..10);
        assert_eq!(names(dir.path()), ["container.log"]);
        let all = read(dir.path(), &ReadOptions::default());
        assert_eq!(numbers(&all), [9]);
    }

    #[test]
    fn max_size_zero_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        write_lines(dir.path(), &cfg(0, 1), 0..50);
        assert_eq!(names(dir.path()), ["container.log"]);
        assert_eq!(read(dir.path(), &ReadOptions::default()).len(), 50);
    }

    #[test]
    fn tail_spans_files_and_reads_only_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        write_lines(dir.path(), &cfg(4 * entry_len(), 5), 0..10);
        let tail = |n| {
            numbers(&read(
                dir.path(),
                &ReadOptions {
                    tail: Some(n),
                    ..Default::default()
                },
            ))
        };
        assert_eq!(tail(0), Vec::<usize>::new());
        assert_eq!(tail(2), [8, 9]);
        assert_eq!(tail(5), [5, 6, 7, 8, 9]);
        assert_eq!(tail(100), (0..10).collect::<Vec<_>>());
        // The oldest file becomes unreadable (a directory): tails within the newer files
        // still work, a full read does not.
        let oldest = dir.path().join("container.log.2");
        fs::remove_file(&oldest).unwrap();
        fs::create_dir(&oldest).unwrap();
        assert_eq!(tail(6), [4, 5, 6, 7, 8, 9]);
        let full: Vec<_> = LogReader::open(dir.path())
            .unwrap()
            .entries(&ReadOptions::default())
            .unwrap()
            .collect();
        assert!(full.iter().any(Result::is_err));
    }

    #[test]
    fn since_and_until_bound_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), &cfg(0, 1)).unwrap();
        for s in [100, 200, 300, 400] {
            write_at(&mut w, Stream::Stdout, format!("{s}\n").as_bytes(), t(s));
        }
        w.close().unwrap();
        let q = |tail: Option<usize>, since: Option<i64>, until: Option<i64>| {
            texts(&read(
                dir.path(),
                &ReadOptions {
                    tail,
                    since: since.map(t),
                    until: until.map(t),
                    follow: false,
                },
            ))
        };
        assert_eq!(q(None, Some(200), Some(300)), ["200\n", "300\n"]);
        assert_eq!(q(None, Some(250), None), ["300\n", "400\n"]);
        assert_eq!(q(None, None, Some(150)), ["100\n"]);
        assert_eq!(q(None, Some(500), None), Vec::<String>::new());
        // tail first, then the time bounds (as Docker).
        assert_eq!(q(Some(3), Some(300), None), ["300\n", "400\n"]);
        assert_eq!(q(Some(2), Some(100), None), ["300\n", "400\n"]);
    }

    #[test]
    fn long_and_unterminated_lines_become_partial_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), &cfg(0, 1)).unwrap();
        let long = vec![b'a'; 40000];
        // Fed in odd chunks, interleaved with the other stream.
        for chunk in long.chunks(7001) {
            w.write(Stream::Stdout, chunk).unwrap();
            w.write(Stream::Stderr, b"e").unwrap();
        }
        w.write(Stream::Stdout, b"end\n").unwrap();
        w.write(Stream::Stderr, b"\n").unwrap();
        // 16383 bytes then a 2-byte character: the cut goes before it.
        let mut utf = vec![b'x'; MAX_ENTRY - 1];
        utf.extend_from_slice("é\n".as_bytes());
        w.write(Stream::Stdout, &utf).unwrap();
        w.write(Stream::Stdout, b"\xff\xfeok\n").unwrap();
        w.write(Stream::Stdout, b"no newline").unwrap();
        w.close().unwrap();

        let e = read(dir.path(), &ReadOptions::default());
        let out: Vec<&LogEntry> = e.iter().filter(|e| e.stream == Stream::Stdout).collect();
        let lens: Vec<(usize, bool)> = out.iter().map(|e| (e.bytes.len(), e.partial)).collect();
        assert_eq!(
            lens,
            [
                (MAX_ENTRY, true),
                (MAX_ENTRY, true),
                (40000 - 2 * MAX_ENTRY + 4, false),
                (MAX_ENTRY - 1, true),
                (3, false),
                (9, false),
                (10, true),
            ]
        );
        let joined: Vec<u8> = out[..3].iter().flat_map(|e| e.bytes.clone()).collect();
        let mut expect = long.clone();
        expect.extend_from_slice(b"end\n");
        assert_eq!(joined, expect);
        assert_eq!(out[4].bytes, "é\n".as_bytes());
        assert_eq!(out[5].bytes, "\u{fffd}\u{fffd}ok\n".as_bytes());
        assert_eq!(out[6].bytes, b"no newline");
        let err: Vec<&LogEntry> = e.iter().filter(|e| e.stream == Stream::Stderr).collect();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].bytes, [b"e".repeat(6), b"\n".to_vec()].concat());
    }

    #[test]
    fn buffers_shrink_back_after_a_burst() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), &cfg(0, 1)).unwrap();
        let burst = [b"y".repeat(99), b"\n".to_vec()].concat().repeat(655);
        w.write(Stream::Stdout, &burst).unwrap();
        w.write(Stream::Stderr, &vec![b'z'; 20000]).unwrap();
        let a = w.active.as_ref().unwrap();
        assert!(a.out.capacity() <= KEEP_IDLE, "{}", a.out.capacity());
        assert!(a.held[0].capacity() <= KEEP_IDLE);
        // The unterminated stderr rest (20000 - 16384 bytes) is still held, nothing more.
        assert_eq!(a.held[1].len(), 20000 - MAX_ENTRY);
        assert!(a.held[1].capacity() <= MAX_ENTRY);
        w.close().unwrap();
        assert_eq!(read(dir.path(), &ReadOptions::default()).len(), 655 + 2);
    }

    #[test]
    fn driver_none_discards_and_bad_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let none = LogConfig {
            driver: "none".to_string(),
            ..Default::default()
        };
        let mut w = LogWriter::open(dir.path(), &none).unwrap();
        assert!(w.is_discarding());
        w.write(Stream::Stdout, b"lost\n").unwrap();
        w.close().unwrap();
        assert!(names(dir.path()).is_empty());
        assert!(read(dir.path(), &ReadOptions::default()).is_empty());

        let syslog = LogConfig {
            driver: "syslog".to_string(),
            ..Default::default()
        };
        let err = LogWriter::open(dir.path(), &syslog).unwrap_err();
        assert!(err.to_string().contains("\"syslog\""), "{err}");
        let err = LogWriter::open(dir.path(), &cfg(10, 0)).unwrap_err();
        assert!(matches!(err, LogError::InvalidMaxFile { .. }), "{err}");
        assert!(LogReader::open(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn an_incomplete_last_line_waits_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        write_lines(dir.path(), &cfg(0, 1), 0..2);
        let path = dir.path().join("container.log");
        let mut full = Vec::new();
        encode(&mut full, Stream::Stdout, &timestamp(t(2)), b"line 02\n");
        let (head, rest) = full.split_at(20);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(head).unwrap();
        assert_eq!(numbers(&read(dir.path(), &ReadOptions::default())), [0, 1]);
        assert_eq!(
            numbers(&read(
                dir.path(),
                &ReadOptions {
                    tail: Some(1),
                    ..Default::default()
                }
            )),
            [1]
        );

        // A follower gets it once the writer completes it.
        let mut calls = 0;
        let follow = ReadOptions {
            follow: true,
            ..Default::default()
        };
        let got: Vec<LogEntry> = LogReader::open(dir.path())
            .unwrap()
            .entries_until(&follow, || {
                calls += 1;
                if calls == 1 {
                    f.write_all(rest).unwrap();
                }
                calls > 1
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(numbers(&got), [0, 1, 2]);
    }

    #[test]
    fn a_new_writer_terminates_a_line_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        write_lines(dir.path(), &cfg(0, 1), 0..2);
        let path = dir.path().join("container.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"log\":\"half").unwrap();
        write_lines(dir.path(), &cfg(0, 1), 2..4);
        assert_eq!(
            numbers(&read(dir.path(), &ReadOptions::default())),
            [0, 1, 2, 3]
        );
    }

    /// Runs a follower while `write` writes from another thread; returns what it got.
    fn follow_while(
        dir: &Path,
        write: impl FnOnce(&Path, &AtomicUsize) + Send + 'static,
    ) -> Vec<LogEntry> {
        let done = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (dir, done, seen) = (dir.to_path_buf(), done.clone(), seen.clone());
            std::thread::spawn(move || {
                write(&dir, &seen);
                done.store(true, Ordering::SeqCst);
            })
        };
        let opts = ReadOptions {
            follow: true,
            ..Default::default()
        };
        let mut got = Vec::new();
        for e in LogReader::open(dir)
            .unwrap()
            .entries_until(&opts, || done.load(Ordering::SeqCst))
            .unwrap()
        {
            got.push(e.unwrap());
            seen.store(got.len(), Ordering::SeqCst);
        }
        writer.join().unwrap();
        got
    }

    #[test]
    fn follow_survives_rotation_without_loss_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        const N: usize = 3000;
        let got = follow_while(dir.path(), |dir, _| {
            let mut w = LogWriter::open(dir, &cfg(4096, 1000)).unwrap();
            for i in 0..N {
                let line = format!("line {i:02}\n");
                let (a, b) = line.as_bytes().split_at(3);
                w.write(Stream::Stdout, a).unwrap();
                w.write(Stream::Stdout, b).unwrap();
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            w.close().unwrap();
        });
        assert!(names(dir.path()).len() > 10, "{:?}", names(dir.path()));
        assert_eq!(numbers(&got), (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn follow_survives_the_current_file_being_deleted() {
        let dir = tempfile::tempdir().unwrap();
        const N: usize = 60;
        let got = follow_while(dir.path(), |dir, seen| {
            let mut w = LogWriter::open(dir, &cfg(3 * entry_len(), 1)).unwrap();
            for i in 0..N {
                w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes())
                    .unwrap();
                // The follower reads each entry before the next write may rotate.
                while seen.load(Ordering::SeqCst) <= i {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            w.close().unwrap();
        });
        assert_eq!(names(dir.path()), ["container.log"]);
        assert_eq!(numbers(&got), (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn follow_starts_before_the_log_exists_and_honours_tail() {
        let dir = tempfile::tempdir().unwrap();
        let got = follow_while(dir.path(), |dir, _| {
            std::thread::sleep(Duration::from_millis(150));
            write_lines(dir, &cfg(0, 1), 0..3);
        });
        assert_eq!(numbers(&got), [0, 1, 2]);

        let opts = ReadOptions {
            follow: true,
            tail: Some(1),
            ..Default::default()
        };
        let mut n = 0;
        let got: Vec<LogEntry> = LogReader::open(dir.path())
            .unwrap()
            .entries_until(&opts, || {
                n += 1;
                if n == 1 {
                    write_lines(dir.path(), &cfg(0, 1), 3..4);
                }
                n > 1
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(numbers(&got), [2, 3]);
    }
}
