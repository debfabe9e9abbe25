//! Phase 3a, template: `${VAR…}` substitution in one string, as compose-go's `template` package
//! does it.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
//! `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`, and `$$` for a literal `$`.
//! Defaults, replacements and error texts are themselves templates, so `${A:-${B:-x}}` nests.
//!
//! compose-go finds substitutions with a regular expression; this module scans by hand but keeps
//! the same observable rules, quirks included:
//! - a name is `[_A-Za-z][_A-Za-z0-9]*`; `$` followed by anything else (`$1`, `$}`, a final `$`)
//!   is kept as it is;
//! - in `${NAME<op>…}` the braced text runs to the last `}` of the line, then is cut at the
//!   first balanced `}`; what follows that brace up to the end of the match is substituted on
//!   its own and appended (this is how `${A:-${B}}` and `${A:-{"json":1}}` work);
//! - `${` that does not start a valid braced form is an invalid template;
//! - a default, replacement or error text is substituted before the variable is looked up, so an
//!   error in it is reported even when the variable is set.

use std::fmt;

/// How a variable is looked up: `Some(value)` when set (possibly empty), `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The result of a successful substitution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Substituted {
    /// The string with every substitution applied.
    pub value: String,
    /// Variables that were unset, had no default and were replaced by an empty string, in the
    /// order met (compose warns `The "X" variable is not set. Defaulting to a blank string.`).
    pub unset: Vec<String>,
}

/// Why a template could not be substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `${VAR:?reason}` or `${VAR?reason}` with `VAR` missing (or empty, for `:?`).
    MissingRequired {
        /// The variable's name.
        variable: String,
        /// The substituted text after the operator; empty when none was given.
        reason: String,
    },
    /// A `${` that does not start a valid substitution. `template` is the text compose-go names
    /// in its message: the string (or nested default/rest) in which the bad `${` was found.
    Invalid {
        /// The template that holds the invalid substitution.
        template: String,
    },
}

impl fmt::Display for TemplateError {
    /// compose-go's messages, word for word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::MissingRequired { variable, reason } if reason.is_empty() => {
                write!(f, "required variable {variable} is missing a value")
            }
            TemplateError::MissingRequired { variable, reason } => {
                write!(
                    f,
                    "required variable {variable} is missing a value: {reason}"
                )
            }
            TemplateError::Invalid { template } => {
                write!(f, "Invalid template: {}", go_quote(template))
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// The operator of a braced substitution `${NAME<op>text}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `:?`: error when unset or empty.
    RequiredNonEmpty,
    /// `?`: error when unset.
    Required,
    /// `:-`: default when unset or empty.
    DefaultIfEmpty,
    /// `-`: default when unset.
    DefaultIfUnset,
    /// `:+`: replacement when set and not empty.
    ReplaceIfNonEmpty,
    /// `+`: replacement when set.
    ReplaceIfSet,
}

impl Operator {
    /// In compose-go's order of preference (used to break ties, which cannot really happen).
    const ALL: [Operator; 6] = [
        Operator::RequiredNonEmpty,
        Operator::Required,
        Operator::DefaultIfEmpty,
        Operator::DefaultIfUnset,
        Operator::ReplaceIfNonEmpty,
        Operator::ReplaceIfSet,
    ];

    /// The operator as written: `:?`, `?`, `:-`, `-`, `:+` or `+`.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::RequiredNonEmpty => ":?",
            Operator::Required => "?",
            Operator::DefaultIfEmpty => ":-",
            Operator::DefaultIfUnset => "-",
            Operator::ReplaceIfNonEmpty => ":+",
            Operator::ReplaceIfSet => "+",
        }
    }
}

/// The operator compose-go splits the text inside `${…}` on: of `:?` `?` `:-` `-` `:+` `+`, the
/// one that occurs earliest. `None` when there is none (`${NAME}`).
pub fn operator_of(inner: &str) -> Option<Operator> {
    let mut best: Option<(usize, Operator)> = None;
    for op in Operator::ALL {
        if let Some(i) = inner.find(op.symbol())
            && best.is_none_or(|(b, _)| i < b)
        {
            best = Some((i, op));
        }
    }
    best.map(|(_, op)| op)
}

/// A variable a template refers to, for `berth config --variables` (compose-go's
/// `ExtractVariables`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariableRef {
    pub name: String,
    /// `${VAR?err}` / `${VAR:?err}`.
    pub required: bool,
    /// `${VAR-default}` / `${VAR:-default}`.
    pub default_value: Option<String>,
    /// `${VAR+alt}` / `${VAR:+alt}`.
    pub alternate_value: Option<String>,
}

/// The variables `s` refers to, in order, including those nested in defaults. `$$` is an
/// escaped dollar, not a reference. Malformed references are skipped (substitution reports
/// them).
pub fn variables(s: &str) -> Vec<VariableRef> {
    let mut out = Vec::new();
    collect_variables(s, &mut out, 0);
    out
}

fn collect_variables(s: &str, out: &mut Vec<VariableRef>, depth: usize) {
    if depth > 64 {
        return;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                // Find the matching brace, counting nested `${`.
                let start = i + 2;
                let (mut j, mut level) = (start, 1usize);
                while j < b.len() {
                    if b[j] == b'{' && j > 0 && b[j - 1] == b'$' {
                        level += 1;
                    } else if b[j] == b'}' {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return;
                }
                let inner = &s[start..j];
                let mut v = VariableRef::default();
                match operator_of(inner) {
                    None => v.name = inner.to_string(),
                    Some(op) => {
                        let at = inner.find(op.symbol()).unwrap_or(inner.len());
                        v.name = inner[..at].to_string();
                        let rest = inner[at + op.symbol().len()..].to_string();
                        match op {
                            Operator::Required | Operator::RequiredNonEmpty => v.required = true,
                            Operator::DefaultIfEmpty | Operator::DefaultIfUnset => {
                                collect_variables(&rest, out, depth + 1);
                                v.default_value = Some(rest);
                            }
                            Operator::ReplaceIfNonEmpty | Operator::ReplaceIfSet => {
                                collect_variables(&rest, out, depth + 1);
                                v.alternate_value = Some(rest);
                            }
                        }
                    }
                }
                if !v.name.is_empty() {
                    out.push(v);
                }
                i = j + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                out.push(VariableRef {
                    name: s[start..j].to_string(),
                    ..VariableRef::default()
                });
                i = j;
            }
            _ => i += 1,
        }
    }
}

/// Substitutes every `$VAR` / `${VAR…}` of `s` with values from `lookup`.
///
/// ```
/// use berth_compose::template::substitute;
/// let env = |k: &str| (k == "TAG").then(|| "1.2".to_string());
/// assert_eq!(substitute("nginx:${TAG:-latest}", &env).unwrap().value, "nginx:1.2");
/// assert_eq!(substitute("$${TAG}", &env).unwrap().value, "${TAG}");
/// ```
pub fn substitute(s: &str, lookup: Lookup<'_>) -> Result<Substituted, TemplateError> {
    let mut unset = Vec::new();
    let value = substitute_into(s, lookup, &mut unset, 0)?;
    Ok(Substituted { value, unset })
}

/// One match of compose-go's pattern, starting at a `$`.
enum Match<'s> {
    /// `$$`.
    Escaped,
    /// `$NAME`.
    Named(&'s str),
    /// `${…}`: the whole matched text, from `$` to the `}` the pattern ends at.
    Braced(&'s str),
    /// `${` not followed by a valid braced form.
    Invalid,
}

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Length of the name at the start of `s` (0 when there is none).
fn name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_name_start(b) => {
            1 + s.iter().skip(1).take_while(|&&c| is_name_char(c)).count()
        }
        _ => 0,
    }
}

/// What compose-go's pattern matches at `s[at..]` (where `s[at]` is `$`), and where the match
/// ends; `None` when nothing matches there.
fn match_at(s: &str, at: usize) -> Option<(Match<'_>, usize)> {
    let b = s.as_bytes();
    match b.get(at + 1) {
        Some(b'$') => Some((Match::Escaped, at + 2)),
        Some(&c) if is_name_start(c) => {
            let n = name_len(&b[at + 1..]);
            Some((Match::Named(&s[at + 1..at + 1 + n]), at + 1 + n))
        }
        Some(b'{') => {
            let start = at + 2;
            let n = name_len(&b[start..]);
            if n == 0 {
                return Some((Match::Invalid, at + 2));
            }
            let after = start + n;
            // `(?::?[-+?](.*))?` then `}`: the optional operator group is tried first.
            let op_len = match (b.get(after), b.get(after + 1)) {
                (Some(b':'), Some(b'-' | b'+' | b'?')) => 2,
                (Some(b'-' | b'+' | b'?'), _) => 1,
                _ => 0,
            };
            if op_len > 0 {
                let text = after + op_len;
                let line_end = s[text..].find('\n').map_or(s.len(), |i| text + i);
                if let Some(close) = s[text..line_end].rfind('}') {
                    let end = text + close + 1;
                    return Some((Match::Braced(&s[at..end]), end));
                }
            }
            if b.get(after) == Some(&b'}') {
                return Some((Match::Braced(&s[at..after + 1]), after + 1));
            }
            Some((Match::Invalid, at + 2))
        }
        _ => None,
    }
}

/// compose-go's `getFirstBraceClosingIndex`: the index of the `}` that balances the braces
/// opened so far, where a `{` also skips the byte after it.
fn first_closing_brace(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut open = 0i64;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if b[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// How deeply defaults may nest (`${A:-${B:-…}}`) before the template is refused, so that no
/// input can exhaust the stack.
const MAX_NESTING: usize = 64;

fn substitute_into(
    template: &str,
    lookup: Lookup<'_>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, TemplateError> {
    if depth > MAX_NESTING {
        return Err(TemplateError::Invalid {
            template: template.to_string(),
        });
    }
    let mut out = String::with_capacity(template.len());
    // Texts still to substitute, each with where to resume: the text after a braced
    // substitution's first balanced `}` is substituted on its own (and named on its own in
    // errors) before the scan of the enclosing text goes on. A stack, not recursion, so that
    // many substitutions on one line cannot exhaust the call stack.
    let mut pending: Vec<(&str, usize)> = vec![(template, 0)];
    while let Some((text, mut i)) = pending.pop() {
        let mut suspended = false;
        while let Some(off) = text[i..].find('$') {
            let at = i + off;
            out.push_str(&text[i..at]);
            let Some((m, end)) = match_at(text, at) else {
                out.push('$');
                i = at + 1;
                continue;
            };
            i = end;
            match m {
                Match::Escaped => out.push('$'),
                Match::Named(name) => out.push_str(&plain(name, lookup, unset)),
                Match::Braced(whole) => {
                    let (value, rest) = braced(whole, lookup, unset, depth)?;
                    out.push_str(&value);
                    if !rest.is_empty() {
                        pending.push((text, end));
                        pending.push((rest, 0));
                        suspended = true;
                        break;
                    }
                }
                Match::Invalid => {
                    return Err(TemplateError::Invalid {
                        template: text.to_string(),
                    });
                }
            }
        }
        if !suspended {
            out.push_str(text.get(i..).unwrap_or(""));
        }
    }
    Ok(out)
}

/// A variable without operator: its value, or empty (and noted) when unset.
fn plain(name: &str, lookup: Lookup<'_>, unset: &mut Vec<String>) -> String {
    lookup(name).unwrap_or_else(|| {
        unset.push(name.to_string());
        String::new()
    })
}

/// Replacement of one braced match `${…}` (the text from `$` to the pattern's closing `}`),
/// and the text after its first balanced `}`, which the caller substitutes next.
fn braced<'t>(
    text: &'t str,
    lookup: Lookup<'_>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<(String, &'t str), TemplateError> {
    let op = operator_of(text);
    let (head, rest) = match first_closing_brace(text) {
        Some(c) => (&text[..=c], &text[c + 1..]),
        None => (text, ""),
    };
    // `head` is `${` + content + `}`.
    let content = head.get(2..head.len().saturating_sub(1)).unwrap_or("");
    let Some(op) = op.filter(|op| content.contains(op.symbol())) else {
        // no operator: compose-go looks the whole content up (and drops any rest)
        return Ok((plain(content, lookup, unset), ""));
    };
    let (name, arg) = content.split_once(op.symbol()).unwrap_or((content, ""));
    let mut arg_unset = Vec::new();
    let arg = substitute_into(arg, lookup, &mut arg_unset, depth + 1)?;
    let value = lookup(name);
    let (result, arg_used) = match op {
        Operator::DefaultIfEmpty => match value {
            Some(v) if !v.is_empty() => (v, false),
            _ => (arg, true),
        },
        Operator::DefaultIfUnset => match value {
            Some(v) => (v, false),
            None => (arg, true),
        },
        Operator::ReplaceIfNonEmpty => match value {
            Some(v) if !v.is_empty() => (arg, true),
            v => (v.unwrap_or_default(), false),
        },
        Operator::ReplaceIfSet => match value {
            Some(_) => (arg, true),
            None => (String::new(), false),
        },
        Operator::RequiredNonEmpty | Operator::Required => match value {
            Some(v) if op == Operator::Required || !v.is_empty() => (v, false),
            _ => {
                return Err(TemplateError::MissingRequired {
                    variable: name.to_string(),
                    reason: arg,
                });
            }
        },
    };
    if arg_used {
        unset.extend(arg_unset);
    }
    Ok((result, rest))
}

/// Quotes a string as Go's `%q` / `%#v` does, so that messages match compose's.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn sub(s: &str) -> Result<Substituted, TemplateError> {
        substitute(s, &env(&[("FOO", "first"), ("BAR", "")]))
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(sub("a $FOO b ${FOO}c").unwrap().value, "a first b firstc");
        assert_eq!(sub("$FOO-bar").unwrap().value, "first-bar");
        assert_eq!(sub("x$1 $} $").unwrap().value, "x$1 $} $");
        assert_eq!(sub("$$FOO $${FOO}").unwrap().value, "$FOO ${FOO}");
    }

    #[test]
    fn unset_variables_are_reported_once_used() {
        let r = sub("${NOPE} $ALSO ${FOO:-$UNUSED} ${NOPE2:-$USED}").unwrap();
        assert_eq!(r.value, "  first ");
        assert_eq!(r.unset, vec!["NOPE", "ALSO", "USED"]);
    }

    #[test]
    fn operators() {
        assert_eq!(sub("${BAR:-d}|${BAR-d}|${X-d}").unwrap().value, "d||d");
        assert_eq!(
            sub("${FOO:+r}|${BAR:+r}|${BAR+r}|${X+r}").unwrap().value,
            "r||r|"
        );
        assert_eq!(sub("${BAR?e}|${FOO:?e}").unwrap().value, "|first");
        let e = sub("${BAR:?must be set}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable BAR is missing a value: must be set"
        );
        let e = sub("${X?}").unwrap_err();
        assert_eq!(e.to_string(), "required variable X is missing a value");
    }

    #[test]
    fn nesting_and_rest() {
        assert_eq!(
            sub("${X:-${Y:-${FOO}}}-${X:-a}_${X:-b}").unwrap().value,
            "first-a_b"
        );
        assert_eq!(sub("${X:-{\"a\":1}}").unwrap().value, "{\"a\":1}");
        // an error in a default is raised even though the variable is set
        assert!(matches!(
            sub("${FOO:-${X:?no}}"),
            Err(TemplateError::MissingRequired { .. })
        ));
    }

    #[test]
    fn invalid_templates() {
        for t in [
            "${",
            "${}",
            "${ }",
            "${ foo}",
            "${foo }",
            "${foo!}",
            "a ${FOO:-x\n}",
        ] {
            let e = sub(t).unwrap_err();
            assert_eq!(
                e,
                TemplateError::Invalid {
                    template: t.to_string()
                },
                "{t}"
            );
        }
        assert_eq!(
            sub("${").unwrap_err().to_string(),
            "Invalid template: \"${\""
        );
        // the nested default is the template named
        assert_eq!(
            sub("${X:-${}}").unwrap_err(),
            TemplateError::Invalid {
                template: "${}".to_string()
            }
        );
    }

    #[test]
    fn long_lines_and_deep_nesting_do_not_exhaust_the_stack() {
        let line = "${X:-a}".repeat(4_000);
        assert_eq!(sub(&line).unwrap().value, "a".repeat(4_000));
        let deep = format!("{}x{}", "${X:-".repeat(10_000), "}".repeat(10_000));
        assert!(matches!(sub(&deep), Err(TemplateError::Invalid { .. })));
        let ok = format!(
            "{}x{}",
            "${X:-".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(sub(&ok).unwrap().value, "x");
    }

    #[test]
    fn operator_choice() {
        assert_eq!(operator_of("V:?a?b"), Some(Operator::RequiredNonEmpty));
        assert_eq!(operator_of("V-a:-b"), Some(Operator::DefaultIfUnset));
        assert_eq!(operator_of("V"), None);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn extracts_variables_with_their_defaults() {
        let vars = variables("a $A ${B:-x${C}} ${D?need D} ${E:+alt} $${NOT} ${}");
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["A", "C", "B", "D", "E"]);
        assert_eq!(vars[2].default_value.as_deref(), Some("x${C}"));
        assert!(vars[3].required);
        assert_eq!(vars[4].alternate_value.as_deref(), Some("alt"));
    }
}
