//! Printing a tree the way `docker compose config` does.
//!
//! `docker compose config` marshals the project with go-yaml v3 (`SetIndent(2)`, no line
//! wrapping) or with Go's `json.MarshalIndent(v, "", "  ")`. Users diff berth's output against
//! docker compose's, so both printers here reproduce those encoders byte for byte for the data a
//! compose project holds: mappings in the order of the [`serde_json::Value`] (built with
//! `preserve_order`), block style, and go-yaml's choice between plain, single-quoted,
//! double-quoted and literal scalars.

use serde_json::{Map, Number, Value};

/// `v` as YAML, exactly as go-yaml v3's encoder with indent 2 prints it (what
/// `docker compose config` writes). Always ends with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut e = YamlEmitter { out: String::new() };
    e.node(v, Ctx::Root);
    if !e.out.ends_with('\n') {
        e.out.push('\n');
    }
    e.out
}

/// `v` as Go's `json.MarshalIndent(v, "", "  ")` prints it: two-space indent, `{}`/`[]` for
/// empty collections, `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`…, floats in Go's
/// notation. No trailing newline (docker compose prints it as is).
pub fn to_json(v: &Value) -> String {
    let mut out = String::new();
    json_value(&mut out, v, 0);
    out
}

// ---------------------------------------------------------------------------------------------
// YAML

/// Where a node is written.
#[derive(Clone, Copy)]
enum Ctx {
    /// The document itself.
    Root,
    /// After `key:` of a block mapping whose keys are at this column.
    MapValue(usize),
    /// After an indicator followed by a space (`- `, `? `, `: `) at this column.
    Item(usize),
}

struct YamlEmitter {
    out: String,
}

/// The scalar styles go-yaml can choose in block context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

impl YamlEmitter {
    /// Starts a new line at `indent` (unless the output is already at the start of a line).
    fn line(&mut self, indent: usize) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.pad(indent);
    }

    fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn node(&mut self, v: &Value, ctx: Ctx) {
        match v {
            Value::Object(m) if !m.is_empty() => self.mapping(m, ctx),
            Value::Array(a) if !a.is_empty() => self.sequence(a, ctx),
            Value::Object(_) => self.inline(ctx, "{}"),
            Value::Array(_) => self.inline(ctx, "[]"),
            Value::Null => self.inline(ctx, "null"),
            Value::Bool(b) => self.inline(ctx, if *b { "true" } else { "false" }),
            Value::Number(n) => self.inline(ctx, &yaml_number(n)),
            Value::String(s) => self.string(s, ctx, false),
        }
    }

    /// A value that fits on the current line.
    fn inline(&mut self, ctx: Ctx, text: &str) {
        if let Ctx::MapValue(_) = ctx {
            self.out.push(' ');
        }
        self.out.push_str(text);
    }

    /// The column of the content nested under this context (go-yaml's increased indent).
    fn nested_indent(ctx: Ctx) -> usize {
        match ctx {
            Ctx::Root => 0,
            Ctx::MapValue(i) | Ctx::Item(i) => i + 2,
        }
    }

    fn mapping(&mut self, m: &Map<String, Value>, ctx: Ctx) {
        let indent = Self::nested_indent(ctx);
        for (i, (k, v)) in m.iter().enumerate() {
            // The first key of a mapping in a sequence item shares the line of the `- `.
            if !(i == 0 && matches!(ctx, Ctx::Item(_))) {
                self.line(indent);
            }
            if is_simple_key(k) {
                self.string(k, Ctx::Root, true);
                self.out.push(':');
                self.node(v, Ctx::MapValue(indent));
            } else {
                self.out.push_str("? ");
                self.string(k, Ctx::Item(indent), false);
                self.line(indent);
                self.out.push_str(": ");
                self.node(v, Ctx::Item(indent));
            }
        }
    }

    fn sequence(&mut self, a: &[Value], ctx: Ctx) {
        let indent = Self::nested_indent(ctx);
        for (i, v) in a.iter().enumerate() {
            if !(i == 0 && matches!(ctx, Ctx::Item(_))) {
                self.line(indent);
            }
            self.out.push_str("- ");
            self.node(v, Ctx::Item(indent));
        }
    }

    fn string(&mut self, s: &str, ctx: Ctx, simple_key: bool) {
        let style = choose_style(s, simple_key);
        if let Ctx::MapValue(_) = ctx {
            self.out.push(' ');
        }
        match style {
            Style::Plain => self.out.push_str(s),
            Style::Single => write_single_quoted(&mut self.out, s),
            Style::Double => write_double_quoted(&mut self.out, s),
            Style::Literal => {
                // Block scalars are indented like nested content; at the root go-yaml's
                // indent is its best indent (2).
                let indent = match ctx {
                    Ctx::Root => 2,
                    Ctx::MapValue(_) | Ctx::Item(_) => Self::nested_indent(ctx),
                };
                self.literal(s, indent);
            }
        }
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.out.push('|');
        if s.starts_with([' ', '\n', '\u{85}', '\u{2028}', '\u{2029}', '\r']) {
            // The indentation indicator: go-yaml writes its best indent.
            self.out.push('2');
        }
        self.out.push_str(chomping_indicator(s));
        self.out.push('\n');
        let mut at_line_start = true;
        for c in s.chars() {
            if is_break(c) {
                self.out.push(c);
                at_line_start = true;
            } else {
                if at_line_start {
                    self.pad(indent);
                    at_line_start = false;
                }
                self.out.push(c);
            }
        }
    }
}

/// go-yaml checks whether a key can be written as `key: value` (a "simple key"): at most 128
/// bytes and on one line. Other keys are written as `? key` / `: value`.
fn is_simple_key(k: &str) -> bool {
    k.len() <= 128 && !k.chars().any(is_break)
}

/// `-` (strip) without a final line break, `+` (keep) with more than one (or only one), and
/// nothing (clip) with exactly one, as go-yaml's block scalar hints.
fn chomping_indicator(s: &str) -> &'static str {
    let mut rev = s.chars().rev();
    match (rev.next(), rev.next()) {
        (Some(last), _) if !is_break(last) => "-",
        (None, _) => "-",
        (Some(_), None) => "+",
        (Some(_), Some(prev)) if is_break(prev) => "+",
        _ => "",
    }
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml's "printable" set (tab excluded, and everything outside the BMP).
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

/// What libyaml's scalar analysis allows for a string in block context.
#[derive(Debug, PartialEq, Eq)]
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_whitespace = matches!(next, None | Some(' ') | Some('\t'));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i + 1 == n;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= i + 1 == n;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = c == ' ' || c == '\t' || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tabs || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// go-yaml's encoder asks for a style (literal for text with `\n`, plain when the text would
/// read back as a string, double-quoted otherwise), then libyaml's emitter downgrades it to
/// what the text allows.
fn choose_style(s: &str, simple_key: bool) -> Style {
    let can_use_plain = !resolves_to_non_string(s) && !is_base60_float(s) && !is_old_bool(s);
    let requested = if s.contains('\n') {
        Style::Literal
    } else if can_use_plain {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s);
    let mut style = requested;
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && !a.block_plain_allowed {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

/// Whether go-yaml v3's resolver reads this plain text as something other than a string
/// (null, bool, int, float, timestamp, merge key).
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".nan",
        ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
        "-.INF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return true;
    };
    match first {
        '.' => parses_as_go_float(s),
        '0'..='9' | '+' | '-' => {
            if is_timestamp(s) {
                return true;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            parses_as_go_int(&plain)
                || (is_yaml_style_float(&plain) && parses_as_go_float(&plain))
                || parses_prefixed_int(&plain, "0b", 2)
                || parses_prefixed_int(&plain, "0o", 8)
        }
        _ => false,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeds (sign, `0x`/`0o`/`0b`
/// prefixes, a leading `0` for octal, `_` between digits after a prefix).
fn parses_as_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (digits, radix) = if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (r, 16)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (r, 8)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (r, 2)
    } else if body.len() > 1 && body.starts_with('0') {
        (&body[1..], 8)
    } else {
        (body, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    // Out-of-range values fail in Go too.
    let negative = s.starts_with('-');
    match u64::from_str_radix(digits, radix) {
        Ok(v) => !negative || v <= 1u64 << 63,
        Err(_) => false,
    }
}

fn parses_prefixed_int(s: &str, prefix: &str, radix: u32) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    body.strip_prefix(prefix)
        .is_some_and(|d| !d.is_empty() && i64::from_str_radix(d, radix).is_ok())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` succeeds: decimal or hex floats, `inf`/`nan` spellings,
/// `_` only between digits of a prefixed form (approximated: none accepted).
fn parses_as_go_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return true;
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        return is_hex_float(hex);
    }
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && body.parse::<f64>().is_ok()
}

/// The part after `0x` of a Go hex float: hex digits with an optional point, then a
/// mandatory `p` exponent.
fn is_hex_float(s: &str) -> bool {
    let Some((mant, exp)) = s.split_once('p') else {
        return false;
    };
    let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    let mant_ok = mant.chars().filter(|&c| c == '.').count() <= 1
        && mant.chars().any(|c| c.is_ascii_hexdigit())
        && mant.chars().all(|c| c.is_ascii_hexdigit() || c == '.');
    mant_ok && !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
}

/// go-yaml's timestamp formats: `2006-1-2`, `2006-1-2 15:4:5.999999999`,
/// `2006-1-2T15:4:5.999999999Z07:00` (also lower-case `t`).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let rest = &s[5..];
    let (date, time) = match rest.find(['T', 't', ' ']) {
        Some(i) => (&rest[..i], Some((&rest[i..i + 1], &rest[i + 1..]))),
        None => (rest, None),
    };
    let Some((month, day)) = date.split_once('-') else {
        return false;
    };
    if !in_range(month, 1, 12) || !valid_day(day) {
        return false;
    }
    match time {
        None => true,
        Some((sep, t)) => {
            let (clock, zone) = if sep == " " {
                (t, None)
            } else {
                match t.find(['Z', '+', '-']) {
                    Some(i) => (&t[..i], Some(&t[i..])),
                    None => return false,
                }
            };
            valid_clock(clock) && zone.is_none_or(valid_zone)
        }
    }
}

fn in_range(s: &str, lo: u32, hi: u32) -> bool {
    (1..=2).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_digit())
        && s.parse::<u32>().is_ok_and(|v| (lo..=hi).contains(&v))
}

fn valid_day(s: &str) -> bool {
    in_range(s, 1, 31)
}

fn valid_clock(s: &str) -> bool {
    let (hms, frac) = match s.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return false;
    };
    in_range(h, 0, 23)
        && in_range(m, 0, 59)
        && in_range(sec, 0, 59)
        && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

fn valid_zone(z: &str) -> bool {
    if z == "Z" {
        return true;
    }
    let body = &z[1..];
    match body.split_once(':') {
        Some((h, m)) => h.len() == 2 && in_range(h, 0, 23) && m.len() == 2 && in_range(m, 0, 59),
        None => false,
    }
}

/// YAML 1.1 sexagesimal floats (`1:20`), which go-yaml still quotes.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if !(first == b'+' || first == b'-' || first.is_ascii_digit()) || !s.contains(':') {
        return false;
    }
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let mut i = usize::from(first == b'+' || first == b'-');
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) && i - start < 2 {
            i += 1;
        }
        let group = &s[start..i];
        let ok = match group.len() {
            1 => true,
            2 => group.as_bytes()[0] <= b'5',
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// YAML 1.1 booleans, which go-yaml still quotes.
fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn write_single_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let u = c as u32;
        if is_printable(c) && !is_break(c) && c != '"' && c != '\\' && u != 0xFEFF {
            out.push(c);
            continue;
        }
        out.push('\\');
        match u {
            0x00 => out.push('0'),
            0x07 => out.push('a'),
            0x08 => out.push('b'),
            0x09 => out.push('t'),
            0x0A => out.push('n'),
            0x0B => out.push('v'),
            0x0C => out.push('f'),
            0x0D => out.push('r'),
            0x1B => out.push('e'),
            0x22 => out.push('"'),
            0x5C => out.push('\\'),
            0x85 => out.push('N'),
            0xA0 => out.push('_'),
            0x2028 => out.push('L'),
            0x2029 => out.push('P'),
            _ if u <= 0xFF => out.push_str(&format!("x{u:02X}")),
            _ if u <= 0xFFFF => out.push_str(&format!("u{u:04X}")),
            _ => out.push_str(&format!("U{u:08X}")),
        }
    }
    out.push('"');
}

/// A number as go-yaml prints it: integers as they are, floats with Go's
/// `strconv.FormatFloat(f, 'g', -1, 64)` and `.inf`/`-.inf`/`.nan`.
fn yaml_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let exp = decimal_exponent(f);
    if f != 0.0 && !(-4..6).contains(&exp) {
        go_exponent_form(f, 2)
    } else {
        format!("{f}")
    }
}

/// The exponent of `f` in scientific notation (`1234.5` → 3).
fn decimal_exponent(f: f64) -> i32 {
    let s = format!("{f:e}");
    s.split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

/// Go's `%e` form of the shortest representation: `1.5e+07`, with at least `min_digits`
/// exponent digits.
fn go_exponent_form(f: f64, min_digits: usize) -> String {
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mant}e{sign}{digits:0>min_digits$}")
}

// ---------------------------------------------------------------------------------------------
// JSON

fn json_value(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&json_number(n)),
        Value::String(s) => json_string(out, s),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_newline(out, depth + 1);
                json_value(out, item, depth + 1);
            }
            json_newline(out, depth);
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_newline(out, depth + 1);
                json_string(out, k);
                out.push_str(": ");
                json_value(out, item, depth + 1);
            }
            json_newline(out, depth);
            out.push('}');
        }
    }
}

fn json_newline(out: &mut String, depth: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n("  ", depth));
}

/// Go's `encoding/json` string escaping with HTML escaping on (the default of `Marshal`).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's float encoding in JSON: `'f'` notation, `'e'` below 1e-6 or from 1e21 (`1e+21`,
/// `1e-7`).
fn json_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent_form(f, 1)
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalar_quoting_follows_go_yaml() {
        let cases: &[(&str, &str)] = &[
            ("nginx", "nginx"),
            ("80", "\"80\""),
            ("8080:80", "8080:80"),
            ("1:20", "\"1:20\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("yes", "\"yes\""),
            ("on", "\"on\""),
            ("y", "\"y\""),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            (".5", "\".5\""),
            ("0x1F", "\"0x1F\""),
            ("0o17", "\"0o17\""),
            ("0b101", "\"0b101\""),
            ("08", "\"08\""),
            ("1_000", "\"1_000\""),
            ("+1", "\"+1\""),
            ("-", "'-'"),
            ("-a", "-a"),
            ("- a", "'- a'"),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("<<", "\"<<\""),
            (".inf", "\".inf\""),
            (".nan", "\".nan\""),
            ("2001-12-14", "\"2001-12-14\""),
            (
                "2001-12-14t21:59:43.10-05:00",
                "\"2001-12-14t21:59:43.10-05:00\"",
            ),
            ("2001-13-14", "2001-13-14"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("a: b", "'a: b'"),
            ("a:b", "a:b"),
            ("a:", "'a:'"),
            ("a #b", "'a #b'"),
            ("a#b", "a#b"),
            ("#x", "'#x'"),
            ("*x", "'*x'"),
            ("&x", "'&x'"),
            ("!x", "'!x'"),
            ("|x", "'|x'"),
            (">x", "'>x'"),
            ("%x", "'%x'"),
            ("@x", "'@x'"),
            ("`x", "'`x'"),
            ("[x", "'[x'"),
            ("{x", "'{x'"),
            ("x]", "x]"),
            (",x", "',x'"),
            ("?x", "?x"),
            ("? x", "'? x'"),
            (":x", ":x"),
            ("'x", "'''x'"),
            ("it's", "it's"),
            ("\"x", "'\"x'"),
            ("---", "'---'"),
            ("...x", "'...x'"),
            ("a\tb", "\"a\\tb\""),
            ("caf\u{e9}", "caf\u{e9}"),
            ("\u{1F600}", "\"\\U0001F600\""),
            ("a\u{7f}", "\"a\\x7F\""),
            ("${VAR}", "${VAR}"),
            ("echo \"hi\"", "echo \"hi\""),
            ("CMD-SHELL", "CMD-SHELL"),
            ("1.2.3", "1.2.3"),
            ("0.0.0.0", "0.0.0.0"),
            ("127.0.0.1:8080:80/tcp", "127.0.0.1:8080:80/tcp"),
        ];
        for (input, want) in cases {
            assert_eq!(
                to_yaml(&json!(input)),
                format!("{want}\n"),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn block_layout_matches_compose_config() {
        let v = json!({
            "name": "demo",
            "services": {
                "web": {
                    "command": ["nginx", "-g", "daemon off;"],
                    "environment": {"A": "1", "B": null, "EMPTY": ""},
                    "image": "nginx",
                    "networks": {"default": null},
                    "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                    "healthcheck": {"test": ["CMD", "true"], "disable": false},
                    "labels": {},
                    "dns": [],
                    "cpus": 0.5
                }
            },
            "networks": {"default": {"name": "demo_default"}},
            "matrix": [["a", "b"], [], {}]
        });
        let want = "\
name: demo
services:
  web:
    command:
      - nginx
      - -g
      - daemon off;
    environment:
      A: \"1\"
      B: null
      EMPTY: \"\"
    image: nginx
    networks:
      default: null
    ports:
      - mode: ingress
        target: 80
        published: \"8080\"
        protocol: tcp
    healthcheck:
      test:
        - CMD
        - \"true\"
      disable: false
    labels: {}
    dns: []
    cpus: 0.5
networks:
  default:
    name: demo_default
matrix:
  - - a
    - b
  - []
  - {}
";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let cases: &[(Value, &str)] = &[
            (json!({"a": "x\ny"}), "a: |-\n  x\n  y\n"),
            (json!({"a": "x\ny\n"}), "a: |\n  x\n  y\n"),
            (json!({"a": "x\ny\n\n"}), "a: |+\n  x\n  y\n\n"),
            (json!({"a": "\n"}), "a: |2+\n\n"),
            (json!({"a": "x\n\ny"}), "a: |-\n  x\n\n  y\n"),
            (json!({"a": " x\ny"}), "a: |2-\n   x\n  y\n"),
            (json!({"a": "x \ny"}), "a: \"x \\ny\"\n"),
            (json!({"a": "x\ny "}), "a: \"x\\ny \"\n"),
            (json!({"a": "x\ty\nz"}), "a: |-\n  x\ty\n  z\n"),
            (json!({"a": "x\r\ny"}), "a: \"x\\r\\ny\"\n"),
            (json!(["x\ny"]), "- |-\n  x\n  y\n"),
            (
                json!({"a": {"b": ["x\ny", "z"]}}),
                "a:\n  b:\n    - |-\n      x\n      y\n    - z\n",
            ),
            (json!("x\ny"), "|-\n  x\n  y\n"),
        ];
        for (v, want) in cases {
            assert_eq!(to_yaml(v), *want, "{v}");
        }
    }

    #[test]
    fn keys_are_quoted_like_values_and_long_keys_are_complex() {
        let v = json!({"80": 1, "yes": 2, "a b": 3, "": 4, "x\ny": 5});
        assert_eq!(
            to_yaml(&v),
            "\"80\": 1\n\"yes\": 2\na b: 3\n\"\": 4\n? |-\n  x\n  y\n: 5\n"
        );
        let long = "k".repeat(129);
        let v = json!({ long.clone(): {"a": 1, "b": 2} });
        assert_eq!(to_yaml(&v), format!("? {long}\n: a: 1\n  b: 2\n"));
    }

    #[test]
    fn roots_and_numbers() {
        assert_eq!(to_yaml(&json!({})), "{}\n");
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(to_yaml(&json!(null)), "null\n");
        assert_eq!(to_yaml(&json!(1.0)), "1\n");
        assert_eq!(to_yaml(&json!(1e6)), "1e+06\n");
        assert_eq!(to_yaml(&json!(123456.0)), "123456\n");
        assert_eq!(to_yaml(&json!(0.0001)), "0.0001\n");
        assert_eq!(to_yaml(&json!(0.00001)), "1e-05\n");
        assert_eq!(to_yaml(&json!(-2.5e-7)), "-2.5e-07\n");
        assert_eq!(to_yaml(&json!(u64::MAX)), "18446744073709551615\n");
    }

    #[test]
    fn json_matches_go_marshal_indent() {
        let v = json!({
            "name": "p",
            "services": {"web": {"command": ["a<b", "x&y"], "labels": {}, "dns": [], "x": null}},
            "f": [1.0, 1e21, 1e-7, 0.5, "\u{2028}\u{1}\u{8}"]
        });
        let want = r#"{
  "name": "p",
  "services": {
    "web": {
      "command": [
        "a\u003cb",
        "x\u0026y"
      ],
      "labels": {},
      "dns": [],
      "x": null
    }
  },
  "f": [
    1,
    1e+21,
    1e-7,
    0.5,
    "\u2028\u0001\b"
  ]
}"#;
        assert_eq!(to_json(&v), want);
        assert_eq!(to_json(&json!({})), "{}");
    }

    #[test]
    fn analysis_of_edge_strings() {
        assert!(!analyze("a\tb").single_quoted_allowed);
        assert!(analyze("a\tb").block_allowed);
        assert!(!analyze("x \ny").block_allowed);
        assert!(analyze("").block_plain_allowed);
    }
}
