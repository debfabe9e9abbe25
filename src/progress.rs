//! Pull progress on stderr, fed by the engine's download callback
//! (`berth_engine::pull::Progress`: layer index, blob, bytes so far, total).
//!
//! On a terminal: one indicatif bar per layer as `docker pull` draws them
//! (`<12 hex>: Downloading [====>   ] 12.3MB/45.6MB`, then `Pull complete`), or for
//! `berth pull` one line per service with its layers below, as `docker compose pull`. Otherwise
//! plain lines, one per layer and state change (never one per chunk); nothing when quiet.
//! The callback runs on several tasks at once: every sink is `Sync` and does little per chunk
//! (a map lookup under a mutex; indicatif rate-limits its own drawing).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use berth_engine::digest::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::cli::{Progress, Settings};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place on stderr; `color` adds green check marks.
    Tty { color: bool },
    /// One line per layer and state change on stderr.
    Plain,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// The mode for this process: `-q` or `--progress quiet` → quiet; `--progress auto|tty` on a
    /// terminal stderr → bars (unless `--ansi never`; `NO_COLOR` only drops the colour);
    /// anything else (`plain`, `json`, not a terminal) → plain lines.
    pub fn new(settings: &Settings, quiet: bool) -> Mode {
        let no_color = settings
            .project
            .environment
            .get("NO_COLOR")
            .is_some_and(|v| !v.is_empty());
        Mode::choose(
            settings.progress,
            quiet,
            std::io::stderr().is_terminal(),
            settings.ansi,
            no_color,
        )
    }

    /// [`Mode::new`] without the process. `ansi` is the resolved `--ansi` (false for `never`,
    /// for `auto` off a terminal, and for `auto` with `NO_COLOR`).
    fn choose(
        progress: Progress,
        quiet: bool,
        stderr_tty: bool,
        ansi: bool,
        no_color: bool,
    ) -> Mode {
        if quiet || progress == Progress::Quiet {
            return Mode::Quiet;
        }
        match progress {
            // Settings folds NO_COLOR into `ansi`; NO_COLOR forbids colour, not cursor movement.
            Progress::Auto | Progress::Tty if stderr_tty && (ansi || no_color) => {
                Mode::Tty { color: ansi }
            }
            _ => Mode::Plain,
        }
    }
}

/// A layer's download state, in the order it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Downloading,
    Downloaded,
}

fn state_of(bytes: u64, total: u64) -> State {
    if total > 0 && bytes >= total {
        State::Downloaded
    } else {
        State::Downloading
    }
}

/// docker's 12 hex digits of a blob.
fn short(digest: &Digest) -> &str {
    digest.hex().get(..12).unwrap_or(digest.hex())
}

/// The plain renderer: a line on each state change of each layer, written in one call so
/// concurrent pulls never interleave within a line.
struct Plain<W> {
    out: W,
    /// Before the layer id: `""` for `berth image pull`, `" web "` for a compose service.
    prefix: String,
    /// Whether [`Plain::finish`] prints `Pull complete`/`Already exists` (`berth image pull`
    /// prints those on stdout already).
    completion: bool,
    layers: HashMap<Digest, State>,
}

impl<W: Write> Plain<W> {
    fn new(out: W, prefix: String, completion: bool) -> Plain<W> {
        Plain {
            out,
            prefix,
            completion,
            layers: HashMap::new(),
        }
    }

    fn line(&mut self, digest: &Digest, what: &str) {
        let line = format!("{}{}: {what}\n", self.prefix, short(digest));
        // A closed stderr is no reason to fail the pull.
        let _ = self.out.write_all(line.as_bytes());
    }

    fn update(&mut self, digest: &Digest, bytes: u64, total: u64) {
        let new = state_of(bytes, total);
        let old = self.layers.get(digest).copied();
        if old.is_some_and(|o| o >= new) {
            return;
        }
        self.layers.insert(digest.clone(), new);
        if old.is_none() {
            self.line(digest, "Downloading");
        }
        if new == State::Downloaded {
            self.line(digest, "Download complete");
        }
    }

    fn finish(&mut self, layers: &[Digest]) {
        if !self.completion {
            return;
        }
        for d in layers {
            let what = if self.layers.contains_key(d) {
                "Pull complete"
            } else {
                "Already exists"
            };
            self.line(d, what);
        }
    }
}

/// Which terminal look: `docker pull`'s or `docker compose pull`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Docker,
    Compose,
}

/// docker's progress sizes: go-units `HumanSize` (decimal units, 4 significant digits).
fn docker_size(bytes: u64) -> String {
    human_size(bytes, 4)
}

/// go-units `HumanSizeWithPrecision`: decimal units, `precision` significant digits (`%.Ng`).
/// docker prints progress with 4 and the image SIZE column with 3.
pub fn human_size(bytes: u64, precision: usize) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as usize) + 1
    };
    let decimals = precision.saturating_sub(int_digits);
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[i])
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "])
        .with_key("sizes", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(
                w,
                "{}/{}",
                docker_size(s.pos()),
                docker_size(s.len().unwrap_or(0))
            );
        })
}

const DOCKER_BAR: &str = "{prefix}: {msg} [{bar:50}] {sizes}";
const COMPOSE_BAR: &str = "   {spinner} {prefix} {msg} [{bar:30}] {sizes}";
const COMPOSE_SERVICE: &str = " {spinner} {prefix} {msg}";
const DONE: &str = "{msg}";
const HEADER: &str = "[+] Pulling {pos}/{len}";

fn mark(color: bool, ok: bool) -> &'static str {
    match (color, ok) {
        (true, true) => "\x1b[32m✔\x1b[0m",
        (true, false) => "\x1b[31m✘\x1b[0m",
        (false, true) => "✔",
        (false, false) => "✘",
    }
}

/// The terminal renderer: one bar per layer, below `after` (a compose service's line).
struct Bars {
    multi: MultiProgress,
    look: Look,
    color: bool,
    inner: Mutex<BarsInner>,
}

struct BarsInner {
    /// The group's last line, where the next layer goes (`None`: at the end).
    after: Option<ProgressBar>,
    layers: HashMap<Digest, (ProgressBar, State)>,
}

impl Bars {
    fn new(multi: MultiProgress, look: Look, color: bool, after: Option<ProgressBar>) -> Bars {
        Bars {
            multi,
            look,
            color,
            inner: Mutex::new(BarsInner {
                after,
                layers: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BarsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A finished line's text.
    fn done_text(&self, digest: &Digest, what: &str) -> String {
        match self.look {
            Look::Docker => format!("{}: {what}", short(digest)),
            Look::Compose => format!("   {} {} {what}", mark(self.color, true), short(digest)),
        }
    }

    fn place(&self, inner: &mut BarsInner, bar: ProgressBar) -> ProgressBar {
        let bar = match &inner.after {
            Some(after) => self.multi.insert_after(after, bar),
            None => self.multi.add(bar),
        };
        inner.after = Some(bar.clone());
        bar
    }

    fn update(&self, digest: &Digest, bytes: u64, total: u64) {
        let new = state_of(bytes, total);
        let mut inner = self.lock();
        if let Some((bar, state)) = inner.layers.get_mut(digest) {
            if *state == State::Downloading {
                bar.set_position(bytes);
                if new == State::Downloaded {
                    *state = new;
                    bar.set_style(style(DONE));
                    bar.set_message(self.done_text(digest, "Download complete"));
                }
            }
            return;
        }
        let template = match self.look {
            Look::Docker => DOCKER_BAR,
            Look::Compose => COMPOSE_BAR,
        };
        let bar = ProgressBar::new(total)
            .with_style(style(template))
            .with_prefix(short(digest).to_string())
            .with_message("Downloading");
        bar.set_position(bytes);
        if new == State::Downloaded {
            bar.set_style(style(DONE));
            bar.set_message(self.done_text(digest, "Download complete"));
        }
        let bar = self.place(&mut inner, bar);
        inner.layers.insert(digest.clone(), (bar, new));
    }

    fn finish(&self, layers: &[Digest]) {
        let mut inner = self.lock();
        for d in layers {
            if let Some((bar, _)) = inner.layers.get(d) {
                bar.set_style(style(DONE));
                bar.finish_with_message(self.done_text(d, "Pull complete"));
            } else {
                let bar = ProgressBar::new(0).with_style(style(DONE));
                let bar = self.place(&mut inner, bar);
                bar.finish_with_message(self.done_text(d, "Already exists"));
            }
        }
    }

    /// Leaves the bars where the download stopped.
    fn abandon(&self) {
        for (bar, _) in self.lock().layers.values() {
            bar.abandon();
        }
    }
}

enum Sink {
    Quiet,
    Plain(Mutex<Plain<Box<dyn Write + Send>>>),
    Tty(Bars),
}

/// Progress of one image's pull. Pass [`PullProgress::report`] to the engine as its callback,
/// then call [`PullProgress::finish`] (or [`PullProgress::abandon`] on failure).
pub struct PullProgress {
    sink: Sink,
}

impl PullProgress {
    /// For `berth image pull`: docker's bars on a terminal; plain `Downloading` and
    /// `Download complete` lines otherwise (stdout already says `Pull complete`).
    pub fn image(mode: Mode) -> PullProgress {
        let sink = match mode {
            Mode::Quiet => Sink::Quiet,
            Mode::Plain => Sink::Plain(Mutex::new(Plain::new(
                Box::new(std::io::stderr()),
                String::new(),
                false,
            ))),
            Mode::Tty { color } => Sink::Tty(Bars::new(
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Look::Docker,
                color,
                None,
            )),
        };
        PullProgress { sink }
    }

    /// Whether layers are drawn on the terminal (then `Pull complete` lines on a terminal
    /// stdout would repeat them).
    pub fn draws_layers(&self) -> bool {
        matches!(self.sink, Sink::Tty(_))
    }

    /// The engine's callback: `bytes` of `total` of layer blob `digest` have arrived.
    pub fn report(&self, _layer: usize, digest: &Digest, bytes: u64, total: u64) {
        match &self.sink {
            Sink::Quiet => {}
            Sink::Plain(p) => p
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .update(digest, bytes, total),
            Sink::Tty(bars) => bars.update(digest, bytes, total),
        }
    }

    /// The pull succeeded: every layer of the image (in order) is `Pull complete`, or
    /// `Already exists` when it was not downloaded.
    pub fn finish(&self, layers: &[Digest]) {
        match &self.sink {
            Sink::Quiet => {}
            Sink::Plain(p) => p
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .finish(layers),
            Sink::Tty(bars) => bars.finish(layers),
        }
    }

    /// The pull failed: bars stay where they stopped.
    pub fn abandon(&self) {
        if let Sink::Tty(bars) = &self.sink {
            bars.abandon();
        }
    }
}

/// `berth pull`'s progress: a `[+] Pulling n/m` header and one line per service with its layers
/// below on a terminal; ` web Pulling`, ` web <id>: Downloading`, … ` web Pulled` lines otherwise.
pub struct ComposeProgress {
    mode: Mode,
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
}

impl ComposeProgress {
    /// Progress for `services` pulls.
    pub fn new(mode: Mode, services: usize) -> ComposeProgress {
        let (multi, header) = match mode {
            Mode::Tty { .. } => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let header = multi.add(
                    ProgressBar::new(u64::try_from(services).unwrap_or(u64::MAX))
                        .with_style(style(HEADER)),
                );
                // Drawn now, not at the first service's end.
                header.tick();
                (Some(multi), Some(header))
            }
            _ => (None, None),
        };
        ComposeProgress {
            mode,
            multi,
            header,
        }
    }

    /// Starts one service's pull (prints ` web Pulling` or adds its spinner).
    pub fn service(&self, name: &str) -> ServiceProgress<'_> {
        match (&self.multi, self.mode) {
            (Some(multi), Mode::Tty { color }) => {
                let bar = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style(COMPOSE_SERVICE))
                        .with_prefix(name.to_string())
                        .with_message("Pulling"),
                );
                bar.enable_steady_tick(Duration::from_millis(100));
                let layers = PullProgress {
                    sink: Sink::Tty(Bars::new(
                        multi.clone(),
                        Look::Compose,
                        color,
                        Some(bar.clone()),
                    )),
                };
                ServiceProgress {
                    parent: self,
                    name: name.to_string(),
                    bar: Some(bar),
                    layers,
                }
            }
            _ => {
                let sink = if self.mode == Mode::Quiet {
                    Sink::Quiet
                } else {
                    eprintln!(" {name} Pulling");
                    Sink::Plain(Mutex::new(Plain::new(
                        Box::new(std::io::stderr()),
                        format!(" {name} "),
                        true,
                    )))
                };
                ServiceProgress {
                    parent: self,
                    name: name.to_string(),
                    bar: None,
                    layers: PullProgress { sink },
                }
            }
        }
    }
}

/// One service's pull within [`ComposeProgress`].
pub struct ServiceProgress<'a> {
    parent: &'a ComposeProgress,
    name: String,
    bar: Option<ProgressBar>,
    layers: PullProgress,
}

impl ServiceProgress<'_> {
    /// The engine's callback, as [`PullProgress::report`].
    pub fn report(&self, layer: usize, digest: &Digest, bytes: u64, total: u64) {
        self.layers.report(layer, digest, bytes, total);
    }

    /// The service's pull ended: its layers (`Ok`) or the error.
    pub fn done(&self, result: Result<&[Digest], &anyhow::Error>) {
        let color = matches!(self.parent.mode, Mode::Tty { color: true });
        match result {
            Ok(layers) => {
                self.layers.finish(layers);
                match &self.bar {
                    Some(bar) => {
                        bar.set_style(style(DONE));
                        bar.finish_with_message(format!(
                            " {} {} Pulled",
                            mark(color, true),
                            self.name
                        ));
                    }
                    None if self.parent.mode == Mode::Plain => eprintln!(" {} Pulled", self.name),
                    None => {}
                }
            }
            Err(e) => {
                self.layers.abandon();
                match &self.bar {
                    Some(bar) => {
                        bar.set_style(style(DONE));
                        bar.abandon_with_message(format!(
                            " {} {} Error {e:#}",
                            mark(color, false),
                            self.name
                        ));
                    }
                    None if self.parent.mode == Mode::Plain => {
                        eprintln!(" {} Error {e:#}", self.name);
                    }
                    None => {}
                }
            }
        }
        if let Some(header) = &self.parent.header {
            header.inc(1);
            if header.length().is_some_and(|n| header.position() >= n) {
                header.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn digest(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn plain_prints_one_line_per_state_change_and_none_per_chunk() {
        let out = Shared::default();
        let mut p = Plain::new(out.clone(), String::new(), false);
        let a = digest("a");
        for n in [0, 100, 200, 300, 999] {
            p.update(&a, n, 1000);
        }
        assert_eq!(out.text(), format!("{}: Downloading\n", short(&a)));
        p.update(&a, 1000, 1000);
        p.update(&a, 1000, 1000);
        assert_eq!(
            out.text(),
            format!("{0}: Downloading\n{0}: Download complete\n", short(&a))
        );
        // `berth image pull` prints `Pull complete` on stdout, not here.
        p.finish(std::slice::from_ref(&a));
        assert_eq!(out.text().lines().count(), 2);
    }

    #[test]
    fn plain_blob_in_one_chunk_still_says_downloading_first() {
        let out = Shared::default();
        let mut p = Plain::new(out.clone(), " web ".into(), true);
        let (a, b) = (digest("a"), digest("b"));
        p.update(&a, 42, 42);
        p.finish(&[b.clone(), a.clone()]);
        assert_eq!(
            out.text(),
            format!(
                " web {a}: Downloading\n web {a}: Download complete\n web {b}: Already exists\n web {a}: Pull complete\n",
                a = short(&a),
                b = short(&b)
            )
        );
    }

    #[test]
    fn plain_from_many_threads_keeps_whole_lines_and_one_per_state() {
        let out = Shared::default();
        let p = PullProgress {
            sink: Sink::Plain(Mutex::new(Plain::new(
                Box::new(out.clone()),
                String::new(),
                false,
            ))),
        };
        let layers: Vec<Digest> = (0..4).map(|i| digest(&i.to_string())).collect();
        std::thread::scope(|s| {
            for (i, d) in layers.iter().enumerate() {
                let p = &p;
                s.spawn(move || {
                    for n in (0..=10_000u64).step_by(7) {
                        p.report(i, d, n, 10_000);
                    }
                    p.report(i, d, 10_000, 10_000);
                });
            }
        });
        let text = out.text();
        assert_eq!(text.lines().count(), 8, "{text}");
        for d in &layers {
            assert!(
                text.contains(&format!("{}: Downloading\n", short(d))),
                "{text}"
            );
            assert!(
                text.contains(&format!("{}: Download complete\n", short(d))),
                "{text}"
            );
        }
    }

    #[test]
    fn bars_follow_the_states_and_finish_every_layer() {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let bars = Bars::new(multi, Look::Docker, false, None);
        let (a, b) = (digest("a"), digest("b"));
        bars.update(&a, 10, 100);
        bars.update(&a, 60, 100);
        {
            let inner = bars.lock();
            let (bar, state) = &inner.layers[&a];
            assert_eq!((bar.position(), *state), (60, State::Downloading));
            assert_eq!(bar.message(), "Downloading");
            assert_eq!(bar.prefix(), short(&a));
        }
        bars.update(&a, 100, 100);
        assert_eq!(
            bars.lock().layers[&a].0.message(),
            format!("{}: Download complete", short(&a))
        );
        bars.finish(&[b.clone(), a.clone()]);
        let inner = bars.lock();
        assert!(inner.layers[&a].0.is_finished());
        assert_eq!(
            inner.layers[&a].0.message(),
            format!("{}: Pull complete", short(&a))
        );
        // `b` was never downloaded: a finished `Already exists` line, now the group's last.
        let last = inner.after.as_ref().unwrap();
        assert!(last.is_finished());
        assert_eq!(last.message(), format!("{}: Already exists", short(&b)));
    }

    #[test]
    fn mode_follows_flags_terminal_and_ansi() {
        use Progress::*;
        assert_eq!(Mode::choose(Auto, true, true, true, false), Mode::Quiet);
        assert_eq!(Mode::choose(Quiet, false, true, true, false), Mode::Quiet);
        assert_eq!(
            Mode::choose(Auto, false, true, true, false),
            Mode::Tty { color: true }
        );
        assert_eq!(
            Mode::choose(Tty, false, true, false, true),
            Mode::Tty { color: false }
        );
        // --ansi never on a terminal, not a terminal, plain, json.
        assert_eq!(Mode::choose(Auto, false, true, false, false), Mode::Plain);
        assert_eq!(Mode::choose(Auto, false, false, false, false), Mode::Plain);
        assert_eq!(Mode::choose(Plain, false, true, true, false), Mode::Plain);
        assert_eq!(Mode::choose(Json, false, true, true, false), Mode::Plain);
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(docker_size(0), "0B");
        assert_eq!(docker_size(999), "999B");
        assert_eq!(docker_size(12_345_678), "12.35MB");
        assert_eq!(docker_size(45_600_000), "45.6MB");
        assert_eq!(docker_size(1_000), "1kB");
    }

    #[test]
    fn templates_parse() {
        for t in [DOCKER_BAR, COMPOSE_BAR, COMPOSE_SERVICE, DONE, HEADER] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
