//! Phase 2, dotenv: the `.env` format Docker Compose reads (compose-go's `dotenv` package, a
//! port of godotenv), for the project `.env`, `--env-file` and a service's `env_file:`.
//!
//! The format, as compose-go parses it:
//! - one statement per line: `KEY=value`, `KEY: value`, `export KEY=value`; blank lines and
//!   lines starting with `#` are skipped; a UTF-8 BOM is dropped; CRLF line ends are fine;
//! - a key is made of letters, digits, `_`, `.`, `-`, `[` and `]`; spaces around it are
//!   trimmed, a space inside it is an error;
//! - `KEY` alone on its line takes its value from the lookup, and is left out when the lookup
//!   does not know it;
//! - unquoted values run to the end of the line, lose a ` #…` comment and trailing blanks;
//! - `'single quoted'` values are literal (only `\'` is unescaped) and may span lines;
//! - `"double quoted"` values may span lines and understand `\a \b \f \n \r \t \v \\ \" \$`
//!   and octal `\0NNN`; after a closing quote the rest of the line is read as more statements
//!   (so `# comment` works there);
//! - `$VAR`, `${VAR}` and the `${VAR:-default}` family are expanded in unquoted and double-quoted
//!   values (see [`crate::template`]), looking the name up in the lookup first, then among the
//!   variables read before it.
//!
//! Errors name the file, line and column of the statement at fault (the message itself is
//! compose-go's without its `line N: ` prefix, which [`crate::error::Error::loc`] carries).

use std::path::Path;

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind};
use crate::template::{self, go_quote};
use crate::yaml::{FileId, Loc};

/// Variables read from env files, in the order they were first defined.
pub type EnvMap = IndexMap<String, String>;

/// How a variable is looked up: `Some(value)` when set, `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

const BOM: char = '\u{feff}';

/// Parses `.env` text that comes from no file (errors carry the line, but no file name).
///
/// ```
/// use berth_compose::dotenv::parse;
/// let vars = parse("export A=1\nB=\"${A}2\" # two\n", &|_| None).unwrap();
/// assert_eq!(vars["B"], "12");
/// ```
pub fn parse(text: &str, lookup: Lookup<'_>) -> Result<EnvMap, Error> {
    let mut vars = EnvMap::new();
    parse_into(FileId::NONE, text, &mut vars, lookup)?;
    Ok(vars)
}

/// Parses `.env` text read from `name` (a path as the user should see it); errors are located
/// in that file.
pub fn parse_named(name: &str, text: &str, lookup: Lookup<'_>) -> Result<EnvMap, Error> {
    let mut vars = EnvMap::new();
    parse_into(FileId::intern(name), text, &mut vars, lookup)?;
    Ok(vars)
}

/// Parses `.env` text into `vars`, which may already hold variables: they are visible to
/// `${VAR}` expansion (after the lookup) and are overwritten by statements of this text.
pub fn parse_into(
    file: FileId,
    text: &str,
    vars: &mut EnvMap,
    lookup: Lookup<'_>,
) -> Result<(), Error> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    Parser { src: text, file }.run(vars, lookup)
}

/// Reads and parses one env file (compose-go `ReadFile`). Every key is kept.
pub fn read_file(path: &Path, lookup: Lookup<'_>) -> Result<EnvMap, Error> {
    let (file, text) = load(path)?;
    let mut vars = EnvMap::new();
    parse_into(file, &text, &mut vars, lookup)?;
    Ok(vars)
}

/// Reads several env files, each on its own with `lookup`, and merges them, later files
/// winning; keys that start with a digit are dropped (compose-go `ReadWithLookup`).
pub fn read<P: AsRef<Path>>(paths: &[P], lookup: Lookup<'_>) -> Result<EnvMap, Error> {
    let mut out = EnvMap::new();
    for path in paths {
        for (k, v) in read_file(path.as_ref(), lookup)? {
            if !k.starts_with(|c: char| c.is_ascii_digit()) {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// Reads the project's env files (`.env` or the `--env-file`s) in order, as compose-go's
/// `GetEnvFromFile` does: later files override earlier ones, and `${VAR}` in a file resolves
/// from `lookup` (the current environment) first, then from the variables read so far, earlier
/// files included.
pub fn env_from_files<P: AsRef<Path>>(paths: &[P], lookup: Lookup<'_>) -> Result<EnvMap, Error> {
    let mut vars = EnvMap::new();
    for path in paths {
        let path = path.as_ref();
        let at = Loc {
            file: FileId::intern(&path.display().to_string()),
            line: 0,
            col: 0,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::Io, "couldn't find env file")
                    .at(at)
                    .hint("check the path given to --env-file"));
            }
            Ok(m) if m.is_dir() => {
                return Err(Error::new(ErrorKind::Io, "is a directory, not an env file").at(at));
            }
            _ => {}
        }
        let (file, text) = load(path)?;
        parse_into(file, &text, &mut vars, lookup)?;
    }
    Ok(vars)
}

/// Reads a file as UTF-8 text, interning its name.
fn load(path: &Path) -> Result<(FileId, String), Error> {
    let file = FileId::intern(&path.display().to_string());
    let at = Loc {
        file,
        line: 0,
        col: 0,
    };
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("failed to read: {e}")).at(at))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok((file, text)),
        Err(e) => {
            let good = e
                .as_bytes()
                .get(..e.utf8_error().valid_up_to())
                .unwrap_or_default();
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count() as u32;
            Err(Error::new(ErrorKind::EnvFile, "invalid UTF-8").at(Loc { file, line, col: 0 }))
        }
    }
}

/// Blanks inside a line, as compose-go's `isSpace` (not a line break).
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Characters a variable name may contain.
fn is_key_char(c: char) -> bool {
    matches!(c, '_' | '.' | '-' | '[' | ']') || c.is_alphabetic() || c.is_numeric()
}

struct Parser<'s> {
    src: &'s str,
    file: FileId,
}

impl Parser<'_> {
    fn run(&self, vars: &mut EnvMap, lookup: Lookup<'_>) -> Result<(), Error> {
        let mut pos = 0;
        while let Some(start) = self.statement_start(pos) {
            pos = self.statement(start, vars, lookup)?;
        }
        Ok(())
    }

    /// The location of byte `pos`.
    fn loc(&self, pos: usize) -> Loc {
        let before = self.src.get(..pos).unwrap_or(self.src);
        let line = 1 + before.matches('\n').count() as u32;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = 1 + before.get(line_start..).map_or(0, |l| l.chars().count()) as u32;
        Loc {
            file: self.file,
            line,
            col,
        }
    }

    fn error(&self, kind: ErrorKind, pos: usize, message: impl Into<String>) -> Error {
        Error::new(kind, message).at(self.loc(pos))
    }

    /// The start of the next statement at or after `pos`, skipping blanks and comment lines.
    fn statement_start(&self, mut pos: usize) -> Option<usize> {
        loop {
            let rest = self.src.get(pos..)?;
            let skip = rest.find(|c: char| !c.is_whitespace())?;
            pos += skip;
            if !rest[skip..].starts_with('#') {
                return Some(pos);
            }
            pos += rest[skip..].find('\n')?;
        }
    }

    /// Parses the statement at `start`; returns where the next one may begin.
    fn statement(
        &self,
        start: usize,
        vars: &mut EnvMap,
        lookup: Lookup<'_>,
    ) -> Result<usize, Error> {
        let src = self.src;
        let mut s = start;
        // `export` followed by white space is dropped.
        if let Some(after) = src[s..].strip_prefix("export")
            && after.starts_with(['\t', '\n', '\u{c}', '\r', ' '])
        {
            s += "export".len();
            s += src[s..]
                .find(|c: char| !is_blank(c))
                .unwrap_or(src.len() - s);
            if s == src.len() {
                return Err(self
                    .error(ErrorKind::EnvFile, start, "zero length string")
                    .hint("remove the lone `export`"));
            }
        }
        let line_text = src[s..].split('\n').next().unwrap_or("");
        let mut sep = None;
        for (i, c) in src[s..].char_indices() {
            if is_blank(c) {
                continue;
            }
            if matches!(c, '=' | ':' | '\n') {
                sep = Some((s + i, c));
                break;
            }
            if !is_key_char(c) {
                return Err(self
                    .error(
                        ErrorKind::EnvFile,
                        s,
                        format!(
                            "unexpected character {} in variable name {}",
                            go_quote(&c.to_string()),
                            go_quote(line_text)
                        ),
                    )
                    .hint(
                        "a variable name may contain letters, digits, `_`, `.`, `-`, `[` and `]`",
                    ));
            }
        }
        // A name that runs to the end of the text is read as `KEY` alone on its line (compose-go
        // would take the whole text as the value of an empty name).
        let (key_end, inherited, value_start) = match sep {
            Some((i, c)) => (i, c == '\n', i + c.len_utf8()),
            None => (src.len(), true, src.len()),
        };
        let key = src[s..key_end].trim_end_matches(char::is_whitespace);
        if key.contains(' ') {
            return Err(self
                .error(ErrorKind::EnvFile, s, "key cannot contain a space")
                .hint("write KEY=value; a line without `=` names a variable to take from the environment"));
        }
        if inherited {
            if let Some(v) = lookup(key) {
                vars.insert(key.to_string(), v);
            }
            return Ok(value_start);
        }
        let v = value_start
            + src[value_start..]
                .find(|c: char| !is_blank(c))
                .unwrap_or(src.len() - value_start);
        let (value, next) = match src[v..].chars().next() {
            Some(q @ ('"' | '\'')) => {
                let (raw, next) = self.quoted(v, q)?;
                let value = if q == '"' {
                    self.expand(v, &unescape(&raw), vars, lookup)?
                } else {
                    raw
                };
                (value, next)
            }
            _ => {
                let (line, next) = match src[v..].find('\n') {
                    Some(i) => (&src[v..v + i], v + i + 1),
                    None => (&src[v..], src.len()),
                };
                let line = line
                    .split(" #")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(char::is_whitespace);
                (self.expand(v, line, vars, lookup)?, next)
            }
        };
        vars.insert(key.to_string(), value);
        Ok(next)
    }

    /// The raw text of the value quoted with `q` at `v`, and where the text after the closing
    /// quote begins. A backslash before the quote character is dropped; other backslashes are
    /// kept for [`unescape`].
    fn quoted(&self, v: usize, q: char) -> Result<(String, usize), Error> {
        let body = v + q.len_utf8();
        let mut raw = String::new();
        let mut escaped = false;
        for (i, c) in self.src[body..].char_indices() {
            if escaped {
                escaped = false;
                if c != q {
                    raw.push('\\');
                }
                raw.push(c);
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                return Ok((raw, body + i + c.len_utf8()));
            } else {
                raw.push(c);
            }
        }
        let first_line = self.src[v..].split('\n').next().unwrap_or("");
        Err(self
            .error(
                ErrorKind::EnvFile,
                v,
                format!("unterminated quoted value {first_line}"),
            )
            .hint(format!(
                "close the value with {q}, or escape the quote inside it with \\{q}"
            )))
    }

    /// `${VAR}` expansion of a value at `v`: the lookup first, then the variables read so far.
    fn expand(
        &self,
        v: usize,
        value: &str,
        vars: &EnvMap,
        lookup: Lookup<'_>,
    ) -> Result<String, Error> {
        let both = |k: &str| lookup(k).or_else(|| vars.get(k).cloned());
        template::substitute(value, &both)
            .map(|s| s.value)
            .map_err(|e| {
                self.error(ErrorKind::Interpolation, v, e.to_string())
                    .hint("escape a literal $ as $$ or \\$")
            })
    }
}

/// Escape sequences of double-quoted values, as compose-go's `expandEscapes`: `\a \b \f \n \r
/// \t \v \\ \"` become their character, `\$` becomes `$$` (a literal `$` for the template
/// phase), `\0NNN` an octal byte value; any other backslash is kept.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mapped = match chars.peek() {
            Some('a') => Some('\u{7}'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('v') => Some('\u{b}'),
            Some('\\') => Some('\\'),
            Some('"') => Some('"'),
            _ => None,
        };
        match (mapped, chars.peek().copied()) {
            (Some(m), _) => {
                chars.next();
                out.push(m);
            }
            (None, Some('$')) => {
                chars.next();
                out.push_str("$$");
            }
            (None, Some('c')) => {
                // matched by compose-go's pattern, refused by Go's unquoting: kept as written
                chars.next();
                out.push_str("\\c");
            }
            (None, Some('0')) => {
                chars.next();
                let mut digits = String::new();
                while digits.len() < 3 {
                    match chars.peek() {
                        Some(d) if d.is_ascii_digit() => {
                            digits.push(*d);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                // compose-go rewrites `\0NNN` to `\NNN`, which Go reads as an octal byte
                // value; what Go refuses is left in its rewritten form.
                match u32::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|v| digits.len() == 3 && *v <= 255)
                {
                    Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                    None => {
                        out.push('\\');
                        out.push_str(&digits);
                    }
                }
            }
            (None, _) => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn statements_comments_and_order() {
        let vars = parse(
            "# c\n\nB=2\r\nexport A = 1 # x\n  C: three\nD=a#b\nE=\n",
            &none,
        )
        .unwrap();
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("B", "2"),
                ("A", "1"),
                ("C", "three"),
                ("D", "a#b"),
                ("E", "")
            ]
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let vars = parse(
            "A='x\\n$B'\nB=\"1\\t\\$X\\0101\\c\\q\"\nC=\"multi\nline\" D=after\n",
            &none,
        )
        .unwrap();
        assert_eq!(vars["A"], "x\\n$B");
        assert_eq!(vars["B"], "1\t$XA\\c\\q");
        assert_eq!(vars["C"], "multi\nline");
        assert_eq!(vars["D"], "after");
        assert_eq!(unescape("\\0 \\012 \\0400"), "\\ \\12 \\400");
    }

    #[test]
    fn bare_keys_use_the_lookup() {
        let lookup = |k: &str| (k == "SET").then(|| "v".to_string());
        let vars = parse("SET\nUNSET\nLAST_SET", &|k| {
            lookup(k).or_else(|| (k == "LAST_SET").then(|| "w".into()))
        })
        .unwrap();
        assert_eq!(vars.get("SET").map(String::as_str), Some("v"));
        assert!(!vars.contains_key("UNSET"));
        assert_eq!(vars.get("LAST_SET").map(String::as_str), Some("w"));
    }

    #[test]
    fn expansion_prefers_the_lookup() {
        let lookup = |k: &str| (k == "A").then(|| "env".to_string());
        let vars = parse("A=file\nB=${A}\nC=$B-${NOPE:-d}\n", &lookup).unwrap();
        assert_eq!(
            (vars["A"].as_str(), vars["B"].as_str(), vars["C"].as_str()),
            ("file", "env", "env-d")
        );
    }

    #[test]
    fn errors_are_located() {
        let e = parse_named("bad.env", "A=1\n\nB C=2\n", &none).unwrap_err();
        assert_eq!((e.kind, e.loc.line, e.loc.col), (ErrorKind::EnvFile, 3, 1));
        assert_eq!(
            e.to_string().lines().next(),
            Some("bad.env:3:1: key cannot contain a space")
        );
        let e = parse("A=1\nB=\"open\nmore\n", &none).unwrap_err();
        assert_eq!(
            (e.loc.line, e.message()),
            (2, "unterminated quoted value \"open")
        );
        let e = parse("ok=1\n  l$w=1\n", &none).unwrap_err();
        assert_eq!(
            e.message(),
            "unexpected character \"$\" in variable name \"l$w=1\""
        );
        assert_eq!((e.loc.line, e.loc.col), (2, 3));
        let e = parse("A=${B:?needed}\n", &none).unwrap_err();
        assert_eq!(
            (e.kind, e.message()),
            (
                ErrorKind::Interpolation,
                "required variable B is missing a value: needed"
            )
        );
    }

    #[test]
    fn bom_is_dropped() {
        assert_eq!(parse("\u{feff}A=1", &none).unwrap()["A"], "1");
    }
}
