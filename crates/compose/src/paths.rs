//! Phase 9, paths: relative paths made absolute, `~` expanded, as compose-go's `paths/` package
//! does for exactly these keys:
//!
//! | key | rule |
//! |---|---|
//! | `services.*.build.context`, `build.additional_contexts.*` | unless a URL (`…://…`), a `service:` reference or a remote (git/http) context |
//! | `services.*.env_file[].path`, `services.*.label_file[]` | always |
//! | `services.*.extends.file` | unless remote |
//! | `services.*.develop.watch[].path` | always (symbolic links are not resolved: no filesystem access) |
//! | `services.*.volumes[].source` | only `type: bind` |
//! | `configs.*.file`, `secrets.*.file` | always |
//! | `include[].path`, `include[].project_directory`, `include[].env_file` | unless remote |
//! | `volumes.*.driver_opts.device` | when `driver: local` and `driver_opts.o: bind` |
//!
//! Paths are joined and cleaned lexically as Go's `filepath.Join`/`Clean` would (`a/./b/../c` →
//! `a/c`); the filesystem is never read. Windows absolute paths (`C:\…`, `\\server\…`) and URLs
//! are kept as written. `~` is replaced by `home`; when no home is known it is kept as written.

use std::path::Path;

use crate::error::Error;
use crate::yaml::{Node, Value};

/// Resolves every relative path of a project tree against `project_dir` (which should be
/// absolute; a relative one gives relative results, as nothing asks the process for its current
/// directory).
pub fn resolve_paths(doc: &mut Node, project_dir: &Path, home: Option<&Path>) -> Result<(), Error> {
    let r = Resolver::new(project_dir, home);
    if let Some(services) = doc.get_mut("services").and_then(Node::as_map_mut) {
        for service in services.values_mut() {
            r.service(service);
        }
    }
    for kind in ["configs", "secrets"] {
        if let Some(top) = doc.get_mut(kind).and_then(Node::as_map_mut) {
            for resource in top.values_mut() {
                if let Some(file) = resource.get_mut("file") {
                    r.maybe_unix(file);
                }
            }
        }
    }
    if let Some(volumes) = doc.get_mut("volumes").and_then(Node::as_map_mut) {
        for volume in volumes.values_mut() {
            r.volume_driver_opts(volume);
        }
    }
    if let Some(include) = doc.get_mut("include").and_then(Node::as_seq_mut) {
        for item in include {
            if item.as_str().is_some() {
                r.remote_or_abs(item);
                continue;
            }
            if let Some(path) = item.get_mut("path") {
                r.each(path, Resolver::remote_or_abs);
            }
            if let Some(dir) = item.get_mut("project_directory") {
                r.abs(dir);
            }
            if let Some(env) = item.get_mut("env_file") {
                r.each(env, Resolver::abs);
            }
        }
    }
    Ok(())
}

/// Resolves the paths of one service against `base_dir` (the directory of the file that
/// declared it: used for services extended from a file in another directory).
pub fn resolve_service_paths(service: &mut Node, base_dir: &Path, home: Option<&Path>) {
    Resolver::new(base_dir, home).service(service);
}

struct Resolver {
    base: String,
    home: Option<String>,
}

impl Resolver {
    fn new(base: &Path, home: Option<&Path>) -> Resolver {
        Resolver {
            base: base.to_string_lossy().into_owned(),
            home: home.map(|h| h.to_string_lossy().into_owned()),
        }
    }

    fn service(&self, service: &mut Node) {
        if let Some(build) = service.get_mut("build") {
            if build.as_str().is_some() {
                self.context(build);
            } else {
                if let Some(ctx) = build.get_mut("context") {
                    self.context(ctx);
                }
                if let Some(extra) = build.get_mut("additional_contexts") {
                    match &mut extra.value {
                        Value::Map(m) => m.values_mut().for_each(|c| self.context(c)),
                        Value::Seq(items) => items.iter_mut().for_each(|c| self.keyed_context(c)),
                        _ => {}
                    }
                }
            }
        }
        if let Some(env_files) = service.get_mut("env_file") {
            self.each(env_files, |r, item| match item.get_mut("path") {
                Some(path) => r.abs(path),
                None => r.abs(item),
            });
        }
        if let Some(label_files) = service.get_mut("label_file") {
            self.each(label_files, Resolver::abs);
        }
        if let Some(file) = service.get_mut("extends").and_then(|e| e.get_mut("file")) {
            self.remote_or_abs(file);
        }
        if let Some(watch) = service
            .get_mut("develop")
            .and_then(|d| d.get_mut("watch"))
            .and_then(Node::as_seq_mut)
        {
            for rule in watch {
                if let Some(path) = rule.get_mut("path") {
                    self.abs(path);
                }
            }
        }
        if let Some(volumes) = service.get_mut("volumes").and_then(Node::as_seq_mut) {
            for volume in volumes {
                if volume.get("type").and_then(Node::as_str) == Some("bind")
                    && let Some(source) = volume.get_mut("source")
                {
                    self.maybe_unix(source);
                }
            }
        }
    }

    /// Applies `f` to a string or to each item of a sequence.
    fn each(&self, node: &mut Node, f: impl Fn(&Resolver, &mut Node)) {
        match &mut node.value {
            Value::Seq(items) => items.iter_mut().for_each(|i| f(self, i)),
            _ => f(self, node),
        }
    }

    /// `~` expanded; `None` when `s` needs no change or cannot be expanded.
    fn expand_user(&self, s: &str) -> Option<String> {
        let rest = s.strip_prefix('~')?;
        let home = self.home.as_deref()?;
        Some(join(home, rest))
    }

    /// compose-go's `absPath`: `~` expanded, relative paths joined to the base directory.
    fn abs(&self, node: &mut Node) {
        let Value::String(s) = &node.value else {
            return;
        };
        if s.is_empty() || is_url(s) || is_windows_abs(s) {
            return;
        }
        if s.starts_with('~') {
            if let Some(expanded) = self.expand_user(s) {
                node.value = Value::String(expanded);
            }
            return;
        }
        if !s.starts_with('/') {
            node.value = Value::String(join(&self.base, s));
        }
    }

    /// compose-go's `maybeUnixPath` (bind sources, secret and config files): the same, except
    /// that the path is kept when it is absolute for either Unix or Windows.
    fn maybe_unix(&self, node: &mut Node) {
        self.abs(node)
    }

    fn remote_or_abs(&self, node: &mut Node) {
        if node.as_str().is_some_and(is_remote) {
            return;
        }
        self.abs(node);
    }

    /// A build context: kept when it is a URL, a `service:` reference or a remote context.
    fn context(&self, node: &mut Node) {
        if node
            .as_str()
            .is_some_and(|s| s.starts_with("service:") || is_remote(s))
        {
            return;
        }
        self.abs(node);
    }

    /// `name=context` (additional contexts in list form).
    fn keyed_context(&self, node: &mut Node) {
        let Some((name, ctx)) = node.as_str().and_then(|s| s.split_once('=')) else {
            return;
        };
        let mut c = Node::string(ctx);
        self.context(&mut c);
        if let Some(resolved) = c.as_str() {
            node.value = Value::String(format!("{name}={resolved}"));
        }
    }

    /// A local volume that is really a bind mount: its `device` is a path.
    fn volume_driver_opts(&self, volume: &mut Node) {
        if volume.get("driver").and_then(Node::as_str) != Some("local") {
            return;
        }
        let Some(opts) = volume.get_mut("driver_opts") else {
            return;
        };
        if opts.get("o").and_then(Node::as_str) != Some("bind") {
            return;
        }
        if let Some(device) = opts.get_mut("device") {
            self.maybe_unix(device);
        }
    }
}

/// `scheme://…`
fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// A Git or HTTP(S) reference, as BuildKit and compose-go's remote loaders recognise them.
fn is_remote(s: &str) -> bool {
    is_url(s)
        || [
            "https://",
            "http://",
            "git://",
            "ssh://",
            "github.com/",
            "git@",
            "oci://",
        ]
        .iter()
        .any(|p| s.starts_with(p))
}

/// `C:\…`, `C:/…` or `\\server\…`: absolute for Windows, kept as written.
pub fn is_windows_abs(s: &str) -> bool {
    let b = s.as_bytes();
    if s.starts_with("\\\\") {
        return true;
    }
    matches!(b, [d, b':', sep, ..] if d.is_ascii_alphabetic() && (*sep == b'\\' || *sep == b'/'))
}

/// Go's `filepath.Join(base, rel)` on Unix: the non-empty elements joined with `/`, cleaned.
pub fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean(rel),
        (false, true) => clean(base),
        (false, false) => clean(&format!("{base}/{rel}")),
    }
}

/// Go's `path.Clean`: the shortest lexically equivalent path. Repeated `/` become one, `.`
/// elements go, `..` removes the element before it (and nothing at the root), a trailing `/`
/// goes; the empty path is `.`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse, to_json};

    #[test]
    fn clean_table() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a/./b/../c", "a/c"),
            ("/a/b/../../..", "/"),
            ("../a/../..", "../.."),
            ("a//b/", "a/b"),
            ("/./x/", "/x"),
            ("a/..", "."),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn windows_abs_table() {
        for (s, want) in [
            ("C:\\x", true),
            ("c:/x", true),
            ("\\\\srv\\share", true),
            ("C:", false),
            ("/x", false),
            ("x:y", false),
        ] {
            assert_eq!(is_windows_abs(s), want, "{s}");
        }
    }

    fn resolved(src: &str) -> serde_json::Value {
        let mut doc = parse("p.yaml", src).unwrap();
        resolve_paths(&mut doc, Path::new("/proj"), Some(Path::new("/home/me"))).unwrap();
        to_json(&doc)
    }

    #[test]
    fn service_paths_table() {
        // (yaml of one service, json pointer, expected value)
        let cases = [
            ("build: {context: ./app}", "/build/context", "/proj/app"),
            ("build: {context: app/../x/.}", "/build/context", "/proj/x"),
            ("build: {context: /abs/./y}", "/build/context", "/abs/./y"),
            (
                "build: {context: 'https://github.com/a/b.git'}",
                "/build/context",
                "https://github.com/a/b.git",
            ),
            (
                "build: {context: 'git@github.com:a/b.git'}",
                "/build/context",
                "git@github.com:a/b.git",
            ),
            (
                "build: {context: 'github.com/a/b'}",
                "/build/context",
                "github.com/a/b",
            ),
            ("build: {context: 'C:\\src'}", "/build/context", "C:\\src"),
            ("build: {context: ~/src}", "/build/context", "/home/me/src"),
            (
                "build: {context: ., additional_contexts: {a: ../a, b: 'service:b', c: 'docker-image://x'}}",
                "/build/additional_contexts/a",
                "/a",
            ),
            (
                "build: {context: ., additional_contexts: {a: ../a, b: 'service:b'}}",
                "/build/additional_contexts/b",
                "service:b",
            ),
            (
                "build: {context: ., additional_contexts: [a=../a]}",
                "/build/additional_contexts/0",
                "a=/a",
            ),
            (
                "env_file: [{path: .env, required: true}]",
                "/env_file/0/path",
                "/proj/.env",
            ),
            ("env_file: [x.env]", "/env_file/0", "/proj/x.env"),
            ("label_file: [./l]", "/label_file/0", "/proj/l"),
            ("label_file: ./l", "/label_file", "/proj/l"),
            (
                "extends: {file: ../base.yaml, service: b}",
                "/extends/file",
                "/base.yaml",
            ),
            (
                "extends: {file: 'oci://reg/x', service: b}",
                "/extends/file",
                "oci://reg/x",
            ),
            (
                "develop: {watch: [{path: ./src, action: sync}]}",
                "/develop/watch/0/path",
                "/proj/src",
            ),
            (
                "volumes: [{type: bind, source: ./data, target: /d}]",
                "/volumes/0/source",
                "/proj/data",
            ),
            (
                "volumes: [{type: bind, source: data, target: /d}]",
                "/volumes/0/source",
                "/proj/data",
            ),
            (
                "volumes: [{type: bind, source: '~', target: /d}]",
                "/volumes/0/source",
                "/home/me",
            ),
            (
                "volumes: [{type: bind, source: 'C:\\data', target: /d}]",
                "/volumes/0/source",
                "C:\\data",
            ),
            (
                "volumes: [{type: volume, source: data, target: /d}]",
                "/volumes/0/source",
                "data",
            ),
            ("image: ./not-a-path", "/image", "./not-a-path"),
        ];
        for (service, pointer, want) in cases {
            let j = resolved(&format!("services:\n  s: {{{service}}}\n"));
            let got = j.pointer(&format!("/services/s{pointer}"));
            assert_eq!(
                got.and_then(|v| v.as_str()),
                Some(want),
                "{service} at {pointer}: {j}"
            );
        }
    }

    #[test]
    fn top_level_paths() {
        let j = resolved(
            "secrets:\n  s: {file: ./s.txt}\nconfigs:\n  c: {file: /etc/c}\nvolumes:\n  v: {driver: local, driver_opts: {o: bind, type: none, device: ./dev}}\n  w: {driver: local, driver_opts: {device: ./dev}}\ninclude:\n  - {path: [a.yaml, 'https://x/y.git'], project_directory: sub, env_file: [.env]}\n  - other/compose.yaml\n",
        );
        assert_eq!(j["secrets"]["s"]["file"], "/proj/s.txt");
        assert_eq!(j["configs"]["c"]["file"], "/etc/c");
        assert_eq!(j["volumes"]["v"]["driver_opts"]["device"], "/proj/dev");
        assert_eq!(j["volumes"]["w"]["driver_opts"]["device"], "./dev");
        assert_eq!(
            j["include"][0]["path"],
            serde_json::json!(["/proj/a.yaml", "https://x/y.git"])
        );
        assert_eq!(j["include"][0]["project_directory"], "/proj/sub");
        assert_eq!(j["include"][0]["env_file"][0], "/proj/.env");
        assert_eq!(j["include"][1], "/proj/other/compose.yaml");
    }

    #[test]
    fn tilde_without_home_is_kept() {
        let mut doc = parse("p.yaml", "services:\n  s:\n    env_file: [~/x.env]\n").unwrap();
        resolve_paths(&mut doc, Path::new("/proj"), None).unwrap();
        assert_eq!(to_json(&doc)["services"]["s"]["env_file"][0], "~/x.env");
    }

    #[test]
    fn extended_service_uses_its_own_dir() {
        let mut svc = parse("p.yaml", "build: ./b\nenv_file: [{path: e.env}]\n").unwrap();
        resolve_service_paths(&mut svc, Path::new("/other/dir"), None);
        let j = to_json(&svc);
        assert_eq!(j["build"], "/other/dir/b");
        assert_eq!(j["env_file"][0]["path"], "/other/dir/e.env");
    }
}
