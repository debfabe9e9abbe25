//! Scalar resolution: the text of a YAML scalar, its style and its tag → a [`Value`] and the
//! custom [`Tag`] kept on the node.
//!
//! Untagged plain scalars follow the YAML 1.2 core schema with go-yaml v3's integer rules (what
//! compose-go reads): `null`/`~`/empty are null, only `true`/`false` (three spellings each) are
//! booleans, integers may be written `0x`, `0o`, `0b` or with a leading `0` (octal, so a file
//! mode `0440` is 288) and with single `_` between digits, floats are what Rust's `f64` parser
//! accepts plus `.inf`/`.nan`. Everything else, and every quoted or block scalar, is a string.

use std::borrow::Cow;

use serde_saphyr::granit_parser::{ScalarStyle, Tag as YamlTag};

use super::{Tag, Value};

/// The namespace of the YAML core tags (`!!str` is `tag:yaml.org,2002:str`).
const CORE: &str = "tag:yaml.org,2002:";

/// An explicit tag, classified.
pub(super) enum TagKind<'a> {
    /// A tag of the YAML namespace (`!!str`, `!!int`, …), by name.
    Core(Cow<'a, str>),
    /// A local or global tag the loader keeps on the node (`!reset`, `!override`, `!`, …).
    Custom(Tag),
}

/// Classifies an explicit tag.
pub(super) fn classify(tag: &YamlTag) -> TagKind<'_> {
    match tag.suffix_in_namespace(CORE) {
        Some(name) => TagKind::Core(name),
        None => TagKind::Custom(match tag.to_string().as_str() {
            "!reset" => Tag::Reset,
            "!override" => Tag::Override,
            other => Tag::Other(other.to_string()),
        }),
    }
}

/// Resolves one scalar. `Err` is the message for an explicit core tag whose text does not fit.
pub(super) fn resolve(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&YamlTag>,
) -> Result<(Value, Option<Tag>), String> {
    let plain = matches!(style, ScalarStyle::Plain);
    let Some(tag) = tag else {
        return Ok((untagged(text, plain), None));
    };
    match classify(tag) {
        // `!` (the non-specific tag) makes a string of any scalar.
        TagKind::Custom(Tag::Other(t)) if t == "!" => {
            Ok((Value::String(text.into_owned()), Some(Tag::Other(t))))
        }
        TagKind::Custom(t) => Ok((untagged(text, plain), Some(t))),
        TagKind::Core(name) => core(text, &name).map(|v| (v, None)),
    }
}

/// A scalar without tag: plain ones are resolved, others are strings.
fn untagged(text: Cow<'_, str>, plain: bool) -> Value {
    if plain {
        resolve_plain(text)
    } else {
        Value::String(text.into_owned())
    }
}

/// A scalar with an explicit core tag.
fn core(text: Cow<'_, str>, name: &str) -> Result<Value, String> {
    let t = trim(&text);
    let invalid = || format!("invalid value {t:?} for tag !!{name}");
    Ok(match name {
        "str" => Value::String(text.into_owned()),
        "null" => Value::Null,
        "bool" => Value::Bool(parse_bool(t).ok_or_else(invalid)?),
        "int" => parse_int(t).ok_or_else(invalid)?,
        "float" => Value::Float(parse_float(t).ok_or_else(invalid)?),
        "binary" => Value::String(decode_base64(t).ok_or_else(invalid)?),
        "merge" => Value::String(text.into_owned()),
        "map" | "seq" => return Err(format!("tag !!{name} cannot be used on a scalar")),
        // Other tags of the YAML namespace (`!!timestamp`, …) leave the scalar as it reads.
        _ => resolve_plain(text),
    })
}

/// Checks an explicit tag on a mapping or sequence; returns the tag the node keeps.
pub(super) fn collection_tag(tag: Option<&YamlTag>, is_map: bool) -> Result<Option<Tag>, String> {
    let Some(tag) = tag else { return Ok(None) };
    match classify(tag) {
        TagKind::Custom(t) => Ok(Some(t)),
        TagKind::Core(name) => match (&*name, is_map) {
            ("map", true) | ("seq", false) => Ok(None),
            ("str" | "int" | "float" | "bool" | "null" | "binary" | "map" | "seq", _) => {
                let kind = if is_map { "a mapping" } else { "a sequence" };
                Err(format!("tag !!{name} cannot be used on {kind}"))
            }
            _ => Ok(None),
        },
    }
}

/// ASCII padding a typed conversion ignores (YAML spaces and line breaks).
fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// Resolves an untagged plain scalar by the core schema.
pub(super) fn resolve_plain(text: Cow<'_, str>) -> Value {
    let s: &str = &text;
    // Most scalars of a compose file are words: only these first bytes can start anything but
    // a string.
    let maybe_typed = match s.as_bytes().first() {
        None => return Value::Null,
        Some(b) => matches!(
            b,
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F'
        ),
    };
    if !maybe_typed {
        return Value::String(text.into_owned());
    }
    match s {
        "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = parse_bool(s) {
        return Value::Bool(b);
    }
    if let Some(v) = parse_int(s) {
        return v;
    }
    if let Some(f) = parse_float(s) {
        return Value::Float(f);
    }
    Value::String(text.into_owned())
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// An integer as go-yaml v3 reads one: an `i64`, or a float when only `u64` holds it.
fn parse_int(s: &str) -> Option<Value> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(r) = strip_prefix2(rest, "0x", "0X") {
        (16, r.strip_prefix('_').unwrap_or(r))
    } else if let Some(r) = strip_prefix2(rest, "0o", "0O") {
        (8, r.strip_prefix('_').unwrap_or(r))
    } else if let Some(r) = strip_prefix2(rest, "0b", "0B") {
        (2, r.strip_prefix('_').unwrap_or(r))
    } else if rest.len() > 1 && rest.starts_with('0') {
        // Go's ParseInt(s, 0, 64): a leading 0 means octal.
        let r = &rest[1..];
        (8, r.strip_prefix('_').unwrap_or(r))
    } else {
        (10, rest)
    };
    let magnitude = parse_digits(digits, radix)?;
    if neg {
        let v = i128::try_from(magnitude).ok()?.checked_neg()?;
        i64::try_from(v).ok().map(Value::Int)
    } else {
        let v = u64::try_from(magnitude).ok()?;
        Some(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        })
    }
}

fn strip_prefix2<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    s.strip_prefix(a).or_else(|| s.strip_prefix(b))
}

/// Digits of `radix` with single `_` separators between digits; at least one digit.
fn parse_digits(digits: &str, radix: u32) -> Option<u128> {
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes.first() == Some(&b'_') || bytes.last() == Some(&b'_') {
        return None;
    }
    let mut val: u128 = 0;
    let mut prev_underscore = false;
    for &b in bytes {
        if b == b'_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        prev_underscore = false;
        let d = char::from(b).to_digit(radix)?;
        val = val
            .checked_mul(u128::from(radix))?
            .checked_add(u128::from(d))?;
    }
    Some(val)
}

/// A float: `.inf`, `-.inf`, `.nan` in their three spellings, or a finite decimal literal. A
/// literal too large for `f64` is not a float (go-yaml keeps it as a string).
fn parse_float(s: &str) -> Option<f64> {
    let (neg, unsigned) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    match unsigned {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" => {
            return Some(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        _ => {}
    }
    // Rust also reads `inf`, `nan` and `infinity`, which YAML does not: those are not finite.
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Standard base64 (line breaks and spaces ignored) of UTF-8 text, for `!!binary`.
fn decode_base64(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if padding > 2 {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Value {
        resolve_plain(Cow::Borrowed(s))
    }

    #[test]
    fn integers_follow_go_yaml() {
        assert_eq!(plain("0440"), Value::Int(288));
        assert_eq!(plain("0x10"), Value::Int(16));
        assert_eq!(plain("0X10"), Value::Int(16));
        assert_eq!(plain("0o17"), Value::Int(15));
        assert_eq!(plain("0b101"), Value::Int(5));
        assert_eq!(plain("-010"), Value::Int(-8));
        assert_eq!(plain("+010"), Value::Int(8));
        assert_eq!(plain("0_1"), Value::Int(1));
        assert_eq!(plain("1_000"), Value::Int(1000));
        assert_eq!(plain("-0"), Value::Int(0));
        assert_eq!(plain("-0x8000000000000000"), Value::Int(i64::MIN));
        assert_eq!(plain("9223372036854775807"), Value::Int(i64::MAX));
        // Only u64 holds it: a float, as go-yaml's uint64 becomes in a number-typed tree.
        assert_eq!(
            plain("9223372036854775808"),
            Value::Float(9223372036854775808.0)
        );
        for s in ["1__0", "_1", "1_", "0x", "0o", "0xG", "1,000", "12:30"] {
            assert_eq!(plain(s), Value::String(s.into()), "{s}");
        }
    }

    #[test]
    fn floats_booleans_nulls() {
        // 08 is not octal, so Go reads it as a float.
        assert_eq!(plain("08"), Value::Float(8.0));
        assert_eq!(plain("1e3"), Value::Float(1000.0));
        assert_eq!(plain(".5"), Value::Float(0.5));
        assert_eq!(plain("1."), Value::Float(1.0));
        assert_eq!(plain("-.inf"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(plain("+.INF"), Value::Float(f64::INFINITY));
        assert!(matches!(plain(".NaN"), Value::Float(f) if f.is_nan()));
        for s in [
            "1e400", "inf", "nan", "1_000.5", "1e", ".e3", "yes", "on", "tRue", "y",
        ] {
            assert_eq!(plain(s), Value::String(s.into()), "{s}");
        }
        assert_eq!(plain("True"), Value::Bool(true));
        assert_eq!(plain("FALSE"), Value::Bool(false));
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(s), Value::Null, "{s:?}");
        }
    }

    #[test]
    fn core_tags_convert_or_refuse() {
        let c = |t: &str, n: &str| core(Cow::Borrowed(t), n);
        assert_eq!(c("1", "str").unwrap(), Value::String("1".into()));
        assert_eq!(c("3", "int").unwrap(), Value::Int(3));
        assert_eq!(c("1", "float").unwrap(), Value::Float(1.0));
        assert_eq!(c("x", "null").unwrap(), Value::Null);
        assert_eq!(
            c("aGVsbG8=", "binary").unwrap(),
            Value::String("hello".into())
        );
        assert_eq!(c("1", "timestamp").unwrap(), Value::Int(1));
        assert!(c("1.5", "int").unwrap_err().contains("!!int"));
        assert!(c("abc", "float").is_err());
        assert!(c("yes", "bool").is_err());
        assert!(c("", "map").is_err());
        assert!(c("a*b", "binary").is_err());
    }
}
