//! Splitting a `command:` / `entrypoint:` string into words the way compose-go does
//! (mattn/go-shellwords with environment and backtick expansion off).
//!
//! Quotes group words, a backslash escapes the next character (`\t` and `\n` become a tab and a
//! newline), `$(…)` and back-quoted parts are kept verbatim. An unquoted shell operator
//! (`;`, `&`, `|`, `<`, `>`) ends the command: the rest of the line is dropped, which
//! [`Split::stopped_at`] reports so the caller can warn about it.

/// The words of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The words, quotes removed.
    pub words: Vec<String>,
    /// Byte offset of the shell operator where splitting stopped, if any.
    pub stopped_at: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Got {
    No,
    Word,
}

/// Splits `line` into words. Fails on unbalanced quotes, a trailing backslash, or a `(` that
/// does not open `$(`.
pub fn split(line: &str) -> Result<Split, &'static str> {
    const INVALID: &str = "invalid command line string";
    let mut words = Vec::new();
    let mut buf = String::new();
    let (mut escaped, mut dq, mut sq, mut bq, mut dollar) = (false, false, false, false, false);
    let mut got = Got::No;
    let mut stopped_at = None;

    for (i, r) in line.char_indices() {
        if escaped {
            escaped = false;
            if bq || dollar {
                buf.push('\\');
                buf.push(r);
            } else {
                buf.push(match r {
                    't' => '\t',
                    'n' => '\n',
                    other => other,
                });
            }
            got = Got::Word;
            continue;
        }
        if r == '\\' {
            if sq {
                buf.push(r);
            } else {
                escaped = true;
            }
            continue;
        }
        if matches!(r, ' ' | '\t' | '\r' | '\n') {
            if sq || dq || bq || dollar {
                buf.push(r);
            } else if got != Got::No {
                words.push(std::mem::take(&mut buf));
                got = Got::No;
            }
            continue;
        }
        match r {
            '`' if !sq && !dq && !dollar => bq = !bq,
            ')' if !sq && !dq && !bq => dollar = !dollar,
            '(' if !sq && !dq && !bq => {
                if !dollar && buf.ends_with('$') {
                    dollar = true;
                    buf.push('(');
                    continue;
                }
                return Err(INVALID);
            }
            '"' if !sq && !dollar && !bq => {
                if dq {
                    got = Got::Word;
                }
                dq = !dq;
                continue;
            }
            '\'' if !dq && !dollar && !bq => {
                if sq {
                    got = Got::Word;
                }
                sq = !sq;
                continue;
            }
            ';' | '&' | '|' | '<' | '>' if !(sq || dq || bq || dollar) => {
                // `2>` is a redirection of a file descriptor: the digits are not a word.
                if r == '>' && !buf.is_empty() && buf.bytes().all(|b| b.is_ascii_digit()) {
                    got = Got::No;
                }
                stopped_at = Some(i);
                break;
            }
            _ => {}
        }
        got = Got::Word;
        buf.push(r);
    }
    if got != Got::No {
        words.push(buf);
    }
    if escaped || sq || dq || bq || dollar {
        return Err(INVALID);
    }
    Ok(Split { words, stopped_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split(s).expect("valid").words
    }

    #[test]
    fn plain_and_quoted_words() {
        assert_eq!(words("echo hello  world"), ["echo", "hello", "world"]);
        assert_eq!(
            words(r#"sh -c "echo 'a b' && exit 1""#),
            ["sh", "-c", "echo 'a b' && exit 1"]
        );
        assert_eq!(words(r#"a 'it''s' "" x"#), ["a", "its", "", "x"]);
        assert_eq!(words(r"a\ b c\td"), ["a b", "c\td"]);
        assert_eq!(words(r"'a\b'"), [r"a\b"]);
        assert_eq!(
            words("echo $(date +%s) `id`"),
            ["echo", "$(date +%s)", "`id`"]
        );
        assert!(words("").is_empty());
    }

    #[test]
    fn operators_stop_the_line() {
        let s = split("echo a && echo b").expect("valid");
        assert_eq!(s.words, ["echo", "a"]);
        assert_eq!(s.stopped_at, Some(7));
        assert_eq!(split("run 2>/dev/null").expect("valid").words, ["run"]);
        assert_eq!(split("echo 'a;b'").expect("valid").stopped_at, None);
    }

    #[test]
    fn unbalanced_is_an_error() {
        assert!(split("echo 'a").is_err());
        assert!(split("echo \"a").is_err());
        assert!(split("echo a\\").is_err());
        assert!(split("echo (a)").is_err());
    }
}
