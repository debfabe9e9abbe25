//! Phase 3b, interpolate: [`crate::template`] applied to every string value of one compose
//! document, before files are merged.
//!
//! Mapping keys are never substituted, and values keep their type: a string stays a string
//! (`"${PORT}"` becomes `"8080"`, which the `de` phase converts where a number is expected);
//! numbers, booleans and nulls are left alone. Each node keeps its [`Loc`] and tag, so later
//! errors still point at the line the user wrote.
//!
//! Errors carry compose-go's messages, naming the YAML path:
//! `invalid interpolation format for services.web.image.\nYou may need to escape any $ with
//! another $.\n${` and `error while interpolating services.web.image: required variable TAG is
//! missing a value`. berth names a sequence item by its index (`ports[0]`) where compose-go
//! writes `ports.[]`.

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::template::{self, TemplateError, go_quote};
use crate::yaml::{Loc, Node, Value, YamlPath};

/// A variable that was used unset, without a default: compose substitutes an empty string and
/// warns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The variable's name.
    pub variable: String,
    /// Where the string that uses it was written.
    pub loc: Loc,
    /// The YAML path of that string.
    pub path: YamlPath,
}

impl fmt::Display for Warning {
    /// compose's message: `The "TAG" variable is not set. Defaulting to a blank string.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "The {} variable is not set. Defaulting to a blank string.",
            go_quote(&self.variable)
        )
    }
}

/// Substitutes `${VAR…}` in every string scalar of `doc`, in place.
///
/// Returns a warning for each use of an unset variable that had no default, in document order.
/// On error `doc` may be partly substituted.
pub fn interpolate(
    doc: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Warning>, Error> {
    let mut warnings = Vec::new();
    walk(doc, &mut YamlPath::root(), lookup, &mut warnings)?;
    Ok(warnings)
}

fn walk(
    node: &mut Node,
    path: &mut YamlPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<(), Error> {
    let loc = node.loc;
    match &mut node.value {
        // Most strings hold no `$`: nothing to substitute, nothing to allocate.
        Value::String(s) if !s.contains('$') => {}
        Value::String(s) => {
            let done = template::substitute(s, lookup).map_err(|e| path_error(&e, path, loc))?;
            warnings.extend(done.unset.into_iter().map(|variable| Warning {
                variable,
                loc,
                path: path.clone(),
            }));
            *s = done.value;
        }
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                path.push_key(k.as_str());
                let r = walk(v, path, lookup, warnings);
                path.pop();
                r?;
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push_index(i);
                let r = walk(v, path, lookup, warnings);
                path.pop();
                r?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    Ok(())
}

/// compose-go's tree-form message for a template error at `path`.
fn path_error(e: &TemplateError, path: &YamlPath, loc: Loc) -> Error {
    let (message, hint) = match e {
        TemplateError::Invalid { template } => (
            format!(
                "invalid interpolation format for {path}.\nYou may need to escape any $ with another $.\n{template}"
            ),
            "write $$ for a literal $, and ${NAME} or ${NAME:-default} for a variable".to_string(),
        ),
        TemplateError::MissingRequired { variable, .. } => (
            format!("error while interpolating {path}: {e}"),
            format!("set {variable} in the environment or in the project's .env file"),
        ),
    };
    Error::new(ErrorKind::Interpolation, message)
        .at(loc)
        .path(path.clone())
        .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Tag, parse};

    fn env(k: &str) -> Option<String> {
        match k {
            "TAG" => Some("1.2".into()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    #[test]
    fn strings_only_never_keys_and_locations_kept() {
        let mut doc = parse(
            "i.yaml",
            "services:\n  web:\n    image: nginx:${TAG}\n    ports: [\"${PORT}:80\", 81]\n    ${TAG}: !reset $$x\n    t: true\n",
        )
        .unwrap();
        let before = doc.clone();
        let warnings = interpolate(&mut doc, &env).unwrap();
        assert!(warnings.is_empty());
        let web = doc.get("services").and_then(|s| s.get("web")).unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(image.as_str(), Some("nginx:1.2"));
        assert_eq!(
            image.loc,
            before
                .get("services")
                .unwrap()
                .get("web")
                .unwrap()
                .get("image")
                .unwrap()
                .loc
        );
        let ports = web.get("ports").and_then(Node::as_seq).unwrap();
        assert_eq!(ports[0].as_str(), Some("8080:80"));
        assert_eq!(ports[1].as_i64(), Some(81));
        let reset = web.get("${TAG}").unwrap();
        assert_eq!(
            (reset.as_str(), &reset.tag),
            (Some("$x"), &Some(Tag::Reset))
        );
        assert_eq!(web.get("t").and_then(Node::as_bool), Some(true));
    }

    #[test]
    fn warnings_name_variable_path_and_loc() {
        let mut doc = parse("w.yaml", "a:\n  - x\n  - ${NOPE}/$NOPE2\n").unwrap();
        let w = interpolate(&mut doc, &env).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].variable.as_str(), w[0].path.to_string(), w[0].loc.line),
            ("NOPE", "a[1]".to_string(), 3)
        );
        assert_eq!(
            w[1].to_string(),
            "The \"NOPE2\" variable is not set. Defaulting to a blank string."
        );
    }

    #[test]
    fn errors_name_path_and_loc() {
        let mut doc = parse("e.yaml", "services:\n  web:\n    image: ${\n").unwrap();
        let e = interpolate(&mut doc, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Interpolation);
        assert_eq!(e.path.to_string(), "services.web.image");
        assert_eq!(e.loc.line, 3);
        assert_eq!(
            e.message(),
            "invalid interpolation format for services.web.image.\nYou may need to escape any $ with another $.\n${"
        );
        let mut doc = parse("e.yaml", "x:\n  y: ${V:?set it}\n").unwrap();
        let e = interpolate(&mut doc, &env).unwrap_err();
        assert_eq!(
            e.message(),
            "error while interpolating x.y: required variable V is missing a value: set it"
        );
        assert_eq!(e.loc.line, 2);
    }
}
