//! The loader's one error type: what went wrong, where (file:line:col), at which YAML path, and
//! what to do about it.
//!
//! Displayed as docker compose users expect, with the location first when it is known:
//! `compose.yaml:12:7: services.web.ports[0]: invalid port "80:80:80/tcpx": …` and an optional
//! second line `hint: …`.

use std::fmt;

use crate::yaml::{Loc, YamlPath};

/// What kind of problem; callers (and tests) match on it, users read the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be found or read.
    Io,
    /// Not YAML, or YAML the loader refuses (duplicate keys, alias bombs).
    Syntax,
    /// A file with no content.
    Empty,
    /// `${...}` that cannot be interpolated, or a required variable that is missing.
    Interpolation,
    /// A key the Compose Specification does not know.
    UnknownKey,
    /// A value of the wrong type or form (a port that is not a port, a duration that is not a
    /// duration, …).
    InvalidValue,
    /// A reference to something that does not exist (a service, network, volume, …).
    Reference,
    /// A dependency, extends or include cycle.
    Cycle,
    /// Keys or files that contradict each other.
    Conflict,
    /// A dotenv file that cannot be parsed.
    EnvFile,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Where the offending node was written; [`Loc::NONE`] when unknown.
    pub loc: Loc,
    /// The YAML path of the offending node; empty for file-level errors.
    pub path: YamlPath,
    /// The explanation, lower case, no final period.
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            loc: Loc::NONE,
            path: YamlPath::root(),
            message: message.into(),
            hint: None,
        }
    }
    pub fn at(mut self, loc: Loc) -> Error {
        self.loc = loc;
        self
    }
    pub fn path(mut self, path: YamlPath) -> Error {
        self.path = path;
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
    /// The message without location, path or hint (what the conformance corpus compares).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.loc.to_string();
        if !loc.is_empty() {
            write!(f, "{loc}: ")?;
        }
        // compose-go's interpolation messages already name the path; don't say it twice.
        let path = self.path.to_string();
        if !path.is_empty() && !self.message.contains(&path) {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<crate::yaml::ParseError> for Error {
    fn from(e: crate::yaml::ParseError) -> Error {
        match e {
            crate::yaml::ParseError::Syntax { loc, message } => {
                Error::new(ErrorKind::Syntax, message).at(loc)
            }
            crate::yaml::ParseError::Empty { file } => {
                Error::new(ErrorKind::Empty, "empty compose file").at(Loc {
                    file: crate::yaml::FileId::intern(&file),
                    line: 0,
                    col: 0,
                })
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::FileId;

    #[test]
    fn display_names_file_line_path_and_hint() {
        let e = Error::new(ErrorKind::InvalidValue, "invalid port \"80:80:80/tcpx\"")
            .at(Loc {
                file: FileId::intern("compose.yaml"),
                line: 12,
                col: 7,
            })
            .path(YamlPath::parse("services.web.ports[0]"))
            .hint("use HOST:CONTAINER[/PROTOCOL]");
        assert_eq!(
            e.to_string(),
            "compose.yaml:12:7: services.web.ports[0]: invalid port \"80:80:80/tcpx\"\nhint: use HOST:CONTAINER[/PROTOCOL]"
        );
        let named = Error::new(
            ErrorKind::Interpolation,
            "error while interpolating services.web.image: x",
        )
        .path(YamlPath::parse("services.web.image"));
        assert_eq!(
            named.to_string(),
            "error while interpolating services.web.image: x"
        );
        let plain = Error::new(ErrorKind::Cycle, "dependency cycle detected: a -> b -> a");
        assert_eq!(plain.to_string(), "dependency cycle detected: a -> b -> a");
    }
}
