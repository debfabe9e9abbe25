//! Phase 4, extends: `services.X.extends` resolved, as compose-go's `loader/extends.go` does.
//!
//! `extends: NAME` or `extends: {service: NAME}` names a service of the same file;
//! `extends: {file: PATH, service: NAME}` one of another file, loaded (parsed and interpolated)
//! by the loader through [`ExtendsContext`]. The extended service is resolved first (its own
//! `extends`, recursively, in its own file), then the extending service is merged onto it with
//! [`crate::merge::merge_service`] and `extends` is removed. A chain that comes back to a
//! service already on it is refused (`Circular reference: …`).
//!
//! Like compose-go v2, everything the extended service has is carried over, including
//! `depends_on`, `volumes_from`, `links`, `network_mode: service:…` and `ipc: service:…`: the
//! services these name must then exist in the extending project, which the consistency phase
//! checks. Relative paths of a service that comes from another file are rebased by the loader
//! ([`ExtendsContext::rebase_paths`]) against that file's directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::merge::merge_service;
use crate::yaml::{Map, Node, Value, YamlPath};

/// What `extends` needs from the loader.
pub trait ExtendsContext {
    /// Loads the file named by an `extends.file` (`file` as written, relative to `relative_to`,
    /// the directory of the file that holds the reference), parsed and interpolated, with its
    /// `!reset`/`!override` tags still in it. Returns the document and the directory its
    /// relative paths are relative to.
    fn load(&mut self, file: &str, relative_to: &Path) -> Result<(Node, PathBuf), Error>;

    /// Resolves the relative paths of `service` (build context, volumes, env files, …), a
    /// service that was written in a file of the directory `from_dir`.
    fn rebase_paths(&mut self, service: &mut Node, from_dir: &Path) -> Result<(), Error>;
}

/// Resolves every `services.*.extends` of `doc`, a document read from a file in `dir` (the
/// directory `extends.file` paths are relative to).
pub fn apply_extends(
    doc: &mut Node,
    dir: &Path,
    ctx: &mut dyn ExtendsContext,
) -> Result<(), Error> {
    let file = file_label(doc, dir);
    let Some(services) = doc.get_mut("services") else {
        return Ok(());
    };
    let services_loc = services.loc;
    let Some(map) = services.as_map_mut() else {
        if services.is_null() {
            return Ok(());
        }
        return Err(
            Error::new(ErrorKind::InvalidValue, "services must be a mapping")
                .at(services_loc)
                .path(YamlPath::root().key("services")),
        );
    };
    let mut scope = Scope {
        services: std::mem::take(map),
        dir: dir.to_path_buf(),
        file,
    };
    let names: Vec<String> = scope.services.keys().map(|k| k.name.clone()).collect();
    let mut result = Ok(());
    for name in names {
        if let Err(e) = resolve(&mut scope, &name, &[], ctx) {
            result = Err(e);
            break;
        }
    }
    if let Some(map) = doc.get_mut("services").and_then(Node::as_map_mut) {
        *map = scope.services;
    }
    result
}

/// The services of one file while their `extends` are resolved.
struct Scope {
    services: Map,
    dir: PathBuf,
    /// How errors name the file.
    file: String,
}

/// One step of an extends chain: a service and the file it is in.
#[derive(Clone, PartialEq)]
struct Link {
    file: String,
    service: String,
}

fn file_label(doc: &Node, dir: &Path) -> String {
    let name = doc.loc.file.name();
    if name.is_empty() {
        dir.display().to_string()
    } else {
        name.to_string()
    }
}

fn service_path(name: &str) -> YamlPath {
    YamlPath::root().key("services").key(name)
}

/// Resolves the `extends` of service `name` of `scope` (stored back into `scope`). `None` when
/// the service is null (declared without a body).
fn resolve(
    scope: &mut Scope,
    name: &str,
    chain: &[Link],
    ctx: &mut dyn ExtendsContext,
) -> Result<Option<Node>, Error> {
    let Some(service) = scope.services.get(name) else {
        return Ok(None);
    };
    if service.is_null() {
        return Ok(None);
    }
    if service.as_map().is_none() {
        return Err(Error::new(
            ErrorKind::InvalidValue,
            format!("services.{name} must be a mapping"),
        )
        .at(service.loc)
        .path(service_path(name)));
    }
    let Some(extends) = service.get("extends") else {
        return Ok(Some(service.clone()));
    };
    let (reference, file) = parse_extends(name, extends)?;
    let ext_loc = extends.loc;
    let ext_path = service_path(name).key("extends");

    let link = Link {
        file: scope.file.clone(),
        service: name.to_string(),
    };
    if chain.contains(&link) {
        return Err(cycle_error(chain, &link).at(ext_loc).path(ext_path));
    }
    let mut chain = chain.to_vec();
    chain.push(link);

    let base = match &file {
        Some(file) => {
            let (loaded, loaded_dir) = ctx.load(file, &scope.dir)?;
            let label = {
                let n = loaded.loc.file.name();
                if n.is_empty() {
                    loaded_dir.join(file).display().to_string()
                } else {
                    n.to_string()
                }
            };
            let services = match loaded.get("services") {
                Some(s) => s,
                None => {
                    return Err(Error::new(
                        ErrorKind::Reference,
                        format!(
                            "cannot extend service {name:?} in {}: no services section in {file}",
                            scope.file
                        ),
                    )
                    .at(ext_loc)
                    .path(ext_path));
                }
            };
            let Some(services) = services.as_map() else {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    format!("cannot extend service {name:?} in {}: services must be a mapping in {file}", scope.file),
                )
                .at(services.loc));
            };
            if !services.contains_key(reference.as_str()) {
                return Err(not_found(name, &scope.file, &reference, Some(file))
                    .at(ext_loc)
                    .path(ext_path));
            }
            let mut other = Scope {
                services: services.clone(),
                dir: loaded_dir.clone(),
                file: label,
            };
            match resolve(&mut other, &reference, &chain, ctx)? {
                Some(mut base) => {
                    ctx.rebase_paths(&mut base, &loaded_dir)?;
                    Some(base)
                }
                None => None,
            }
        }
        None => {
            if !scope.services.contains_key(reference.as_str()) {
                return Err(not_found(name, &scope.file, &reference, None)
                    .at(ext_loc)
                    .path(ext_path));
            }
            resolve(scope, &reference, &chain, ctx)?
        }
    };

    let Some(mut service) = scope.services.get(name).cloned() else {
        return Ok(None);
    };
    if let Some(m) = service.as_map_mut() {
        m.shift_remove("extends");
    }
    let merged = match base {
        Some(base) => {
            let mut merged = merge_service(&base, &service)?;
            merged.loc = service.loc;
            merged
        }
        None => crate::merge::apply_resets(service)?,
    };
    if let Some(slot) = scope.services.get_mut(name) {
        *slot = merged.clone();
    }
    Ok(Some(merged))
}

fn parse_extends(name: &str, extends: &Node) -> Result<(String, Option<String>), Error> {
    let path = service_path(name).key("extends");
    match &extends.value {
        Value::String(s) => Ok((s.clone(), None)),
        Value::Map(m) => {
            let Some(reference) = m.get("service").and_then(Node::as_str) else {
                return Err(Error::new(
                    ErrorKind::InvalidValue,
                    format!("extends.{name}.service is required"),
                )
                .at(extends.loc)
                .path(path)
                .hint("name the service to extend: `extends: {service: NAME}`"));
            };
            let file = match m.get("file") {
                None => None,
                Some(f) if f.is_null() => None,
                Some(f) => match f.as_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidValue,
                            format!(
                                "extends.{name}.file must be a string, not {}",
                                f.kind_name()
                            ),
                        )
                        .at(f.loc)
                        .path(path.key("file")));
                    }
                },
            };
            Ok((reference.to_string(), file))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidValue,
            format!(
                "extends must be a service name or a mapping, not {}",
                extends.kind_name()
            ),
        )
        .at(extends.loc)
        .path(path)),
    }
}

fn not_found(name: &str, file: &str, reference: &str, other: Option<&str>) -> Error {
    let message = match other {
        Some(other) => {
            format!(
                "cannot extend service {name:?} in {file}: service {reference:?} not found in {other}"
            )
        }
        None => {
            format!("cannot extend service {name:?} in {file}: service {reference:?} not found")
        }
    };
    Error::new(ErrorKind::Reference, message)
}

/// compose-go's message, kept word for word (the corpus looks for `Circular reference`).
fn cycle_error(chain: &[Link], again: &Link) -> Error {
    let mut lines = vec!["Circular reference:".to_string()];
    let mut all = chain.iter().chain(std::iter::once(again));
    if let Some(first) = all.next() {
        lines.push(format!("  {} in {}", first.service, first.file));
    }
    lines.extend(all.map(|l| format!("  extends {} in {}", l.service, l.file)));
    Error::new(ErrorKind::Cycle, lines.join("\n")).hint("break the chain of `extends`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use std::collections::HashMap;

    /// Files in memory, by path relative to "/p".
    struct Files {
        files: HashMap<String, String>,
        loads: Vec<String>,
        rebased: Vec<PathBuf>,
    }

    impl ExtendsContext for Files {
        fn load(&mut self, file: &str, relative_to: &Path) -> Result<(Node, PathBuf), Error> {
            let path = relative_to.join(file);
            let key = path.display().to_string();
            self.loads.push(key.clone());
            let text = self
                .files
                .get(&key)
                .ok_or_else(|| Error::new(ErrorKind::Io, format!("no file {key}")))?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((parse(&key, text)?, dir))
        }
        fn rebase_paths(&mut self, service: &mut Node, from_dir: &Path) -> Result<(), Error> {
            self.rebased.push(from_dir.to_path_buf());
            if let Some(b) = service.get_mut("build")
                && let Some(s) = b.as_str()
            {
                *b = Node::string(from_dir.join(s).display().to_string());
            }
            Ok(())
        }
    }

    fn files(list: &[(&str, &str)]) -> Files {
        Files {
            files: list
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            loads: Vec::new(),
            rebased: Vec::new(),
        }
    }

    fn run(doc: &str, ctx: &mut Files) -> Result<Node, Error> {
        let mut d = parse("/p/compose.yaml", doc)?;
        apply_extends(&mut d, Path::new("/p"), ctx)?;
        Ok(d)
    }

    fn y(s: &str) -> Node {
        parse("t.yaml", s).unwrap()
    }

    /// Reads files from disk, as the loader will (without interpolation).
    struct Disk;

    impl ExtendsContext for Disk {
        fn load(&mut self, file: &str, relative_to: &Path) -> Result<(Node, PathBuf), Error> {
            let path = relative_to.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("failed to read {}: {e}", path.display()),
                )
            })?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((parse(&path.display().to_string(), &text)?, dir))
        }
        fn rebase_paths(&mut self, _service: &mut Node, _from_dir: &Path) -> Result<(), Error> {
            Ok(())
        }
    }

    /// compose-go's `loader/extends_test.go` scenarios on `testdata/extends/*.yaml`, with the
    /// assertions those tests make on the result.
    #[test]
    fn compose_go_testdata_extends() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/compose-go");
        let load = |doc: &str| -> Result<Node, Error> {
            let mut d = parse("(inline)", doc)?;
            apply_extends(&mut d, &root, &mut Disk)?;
            Ok(d)
        };
        let svc = |d: &Node, name: &str| {
            d.get("services")
                .and_then(|s| s.get(name))
                .cloned()
                .unwrap()
        };

        let d = load("services:\n  test1:\n    extends: {file: testdata/extends/base.yaml, service: base}\n    hostname: test1\n  test3:\n    extends: {file: testdata/extends/base.yaml, service: another}\n    hostname: test3\n").unwrap();
        assert_eq!(svc(&d, "test1"), y("image: base\nhostname: test1\n"));
        assert_eq!(svc(&d, "test3"), y("image: base\nhostname: test3\n"));

        let d = load("services:\n  test:\n    image: test\n    extends: {file: testdata/extends/base.yaml, service: with-port}\n").unwrap();
        assert_eq!(svc(&d, "test"), y("ports: ['8000:8000']\nimage: test\n"));

        let d = load("services:\n  test:\n    extends: {file: testdata/extends/base.yaml, service: withUlimits}\n").unwrap();
        assert_eq!(
            svc(&d, "test").get("ulimits").and_then(|u| u.get("nproc")),
            Some(&Node::int(65535))
        );

        let d = load("services:\n  test:\n    extends: {file: testdata/extends/base.yaml, service: with-build}\n").unwrap();
        assert_eq!(svc(&d, "test"), y("build: .\n"));

        let d = load("services:\n  test:\n    image: test\n    extends: {file: testdata/extends/base.yaml, service: nil}\n").unwrap();
        assert_eq!(svc(&d, "test"), y("image: test\n"));

        let e = load("services:\n  test:\n    image: test\n    extends:\n      file: testdata/extends/base.yaml\n").unwrap_err();
        assert_eq!(e.message(), "extends.test.service is required");

        let d = load(
            "services:\n  test:\n    extends: {file: testdata/extends/reset.yaml, service: base}\n",
        )
        .unwrap();
        assert_eq!(svc(&d, "test"), y("image: alpine:latest\n"));

        let d = load("services:\n  bar:\n    extends: {file: ./testdata/extends/depends_on.yaml, service: with_depends_on}\n").unwrap();
        assert_eq!(svc(&d, "bar"), y("image: foo\ndepends_on: [zot]\n"));

        let d = load("services:\n  w:\n    extends: {file: testdata/extends/withdir/compose.yaml, service: test}\n").unwrap();
        assert_eq!(svc(&d, "w"), y("image: hello-world\n"));

        // TestExtendsPortOverride: ports.yaml, then an override extending the same service.
        let first = std::fs::read_to_string(root.join("testdata/extends/ports.yaml")).unwrap();
        let first = parse("testdata/extends/ports.yaml", &first).unwrap();
        let second = load(
            "services:\n  test:\n    extends: {file: testdata/extends/ports.yaml, service: test}\n",
        )
        .unwrap();
        let merged =
            crate::unicity::enforce_unicity(crate::merge::merge(first, second).unwrap()).unwrap();
        assert_eq!(
            svc(&merged, "test")
                .get("ports")
                .and_then(Node::as_seq)
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn same_file_chain() {
        let got = run(
            "services:\n  a: {image: x, environment: [A=1]}\n  b: {extends: a, environment: [B=2]}\n  c: {extends: {service: b}, command: hi}\n",
            &mut files(&[]),
        )
        .unwrap();
        assert_eq!(
            got,
            y(
                "services:\n  a: {image: x, environment: [A=1]}\n  b: {image: x, environment: [A=1, B=2]}\n  c: {image: x, environment: [A=1, B=2], command: hi}\n"
            )
        );
    }

    #[test]
    fn other_file_relative_to_its_directory_and_rebased() {
        let mut ctx = files(&[
            (
                "/p/sub/a.yaml",
                "services:\n  base:\n    extends: {file: deeper/b.yaml, service: root}\n    user: me\n",
            ),
            (
                "/p/sub/deeper/b.yaml",
                "services:\n  root:\n    build: ctx\n",
            ),
        ]);
        let got = run(
            "services:\n  web:\n    extends: {file: sub/a.yaml, service: base}\n",
            &mut ctx,
        )
        .unwrap();
        assert_eq!(ctx.loads, vec!["/p/sub/a.yaml", "/p/sub/deeper/b.yaml"]);
        let web = got.get("services").unwrap().get("web").unwrap();
        assert_eq!(web, &y("build: /p/sub/deeper/ctx\nuser: me\n"));
    }

    #[test]
    fn missing_service_key() {
        let e = run(
            "services:\n  test:\n    extends:\n      file: x.yaml\n",
            &mut files(&[]),
        )
        .unwrap_err();
        assert_eq!(e.message(), "extends.test.service is required");
        assert_eq!(e.path.to_string(), "services.test.extends");
    }

    #[test]
    fn unknown_service() {
        let e = run("services:\n  a:\n    extends: nope\n", &mut files(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Reference);
        assert!(e.message().contains("service \"nope\" not found"), "{e}");
    }

    #[test]
    fn cycle_names_the_chain() {
        let e = run(
            "services:\n  a: {extends: b}\n  b: {extends: c}\n  c: {extends: a}\n",
            &mut files(&[]),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cycle);
        assert_eq!(
            e.message(),
            "Circular reference:\n  a in /p/compose.yaml\n  extends b in /p/compose.yaml\n  extends c in /p/compose.yaml\n  extends a in /p/compose.yaml"
        );
    }

    #[test]
    fn cycle_across_files() {
        let root = "services:\n  a:\n    extends: {file: o.yaml, service: x}\n";
        let mut ctx = files(&[
            (
                "/p/o.yaml",
                "services:\n  x:\n    extends: {file: compose.yaml, service: a}\n",
            ),
            ("/p/compose.yaml", root),
        ]);
        let e = run(root, &mut ctx).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cycle);
    }

    #[test]
    fn reset_in_extending_service_removes_inherited_value() {
        let got = run(
            "services:\n  init: {image: a, command: sleep}\n  base:\n    extends: {service: init}\n    command: !reset\n",
            &mut files(&[]),
        )
        .unwrap();
        assert_eq!(
            got.get("services").unwrap().get("base").unwrap(),
            &y("image: a\n")
        );
    }

    #[test]
    fn relations_are_carried_over() {
        let got = run(
            "services:\n  a: {image: x, depends_on: [db]}\n  b: {extends: a}\n  db: {image: d}\n",
            &mut files(&[]),
        )
        .unwrap();
        let b = got.get("services").unwrap().get("b").unwrap();
        assert!(b.get("depends_on").is_some());
    }

    #[test]
    fn null_base_keeps_the_service() {
        let got = run(
            "services:\n  n:\n  t: {image: x, extends: n}\n",
            &mut files(&[]),
        )
        .unwrap();
        assert_eq!(
            got.get("services").unwrap().get("t").unwrap(),
            &y("image: x\n")
        );
    }
}
