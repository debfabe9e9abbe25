//! Durations and byte sizes as compose files write them, and as `docker compose config` prints
//! them.
//!
//! - [`Duration`] parses what compose-go's `str2duration` accepts (Go's `time.ParseDuration`
//!   plus `d` and `w`: `1m30s`, `10s`, `500ms`, `1.5s`, `2us`, `1d`) and prints Go's
//!   `time.Duration.String()` (`1m30s`, `1h0m0s`, `500ms`, `2µs`). Every duration key of the
//!   Compose Specification is a string in its schema, so a bare YAML integer is refused; a string
//!   without a unit (`"10"`) is refused as Go does ("missing unit"), except `"0"`.
//! - [`ByteSize`] parses docker's `units.RAMInBytes` (`512m`, `1g`, `1.5GB`, `2k`, `1024`; binary
//!   multiples, case-insensitive suffix, optional `b`/`ib`) and an integer as a count of bytes;
//!   it prints as compose-go's `UnitBytes` marshals: the decimal number of bytes as a string.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// A signed duration in nanoseconds, as Go's `time.Duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

/// Why a duration or a size could not be parsed: a message and what the user should write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitError {
    /// What is wrong, lower case.
    pub message: String,
    /// The expected form.
    pub hint: &'static str,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

const DURATION_HINT: &str =
    "write a number followed by a unit (ns, us, ms, s, m, h, d, w), e.g. \"10s\" or \"1m30s\"";
const SIZE_HINT: &str = "write a number of bytes, optionally followed by a unit (b, k, m, g, t, p), e.g. \"512m\" or \"1g\"";

impl Duration {
    /// The zero duration.
    pub const ZERO: Duration = Duration(0);

    /// From a number of seconds.
    pub fn from_secs(s: i64) -> Duration {
        Duration(s.saturating_mul(SEC as i64))
    }

    /// Nanoseconds.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// As a `std::time::Duration` (negative durations become zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }

    /// Parses a duration as compose-go (`str2duration.ParseDuration`) does.
    pub fn parse(text: &str) -> Result<Duration, UnitError> {
        let invalid = |why: &str| UnitError {
            message: if why.is_empty() {
                format!("invalid duration {text:?}")
            } else {
                format!("invalid duration {text:?}: {why}")
            },
            hint: DURATION_HINT,
        };
        let mut s = text;
        let mut neg = false;
        if let Some(c) = s.chars().next()
            && (c == '-' || c == '+')
        {
            neg = c == '-';
            s = &s[1..];
        }
        if s == "0" {
            return Ok(Duration(0));
        }
        if s.is_empty() {
            return Err(invalid(""));
        }
        let mut total: u64 = 0;
        while !s.is_empty() {
            // The integer part.
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_digits, rest) = s.split_at(int_len);
            let mut v: u64 = 0;
            for d in int_digits.bytes() {
                v = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(d - b'0')))
                    .ok_or_else(|| invalid("out of range"))?;
            }
            s = rest;
            // The fraction.
            let mut frac: u64 = 0;
            let mut scale: f64 = 1.0;
            let mut frac_len = 0;
            if let Some(r) = s.strip_prefix('.') {
                s = r;
                let mut overflow = false;
                frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
                for d in s[..frac_len].bytes() {
                    if overflow {
                        continue;
                    }
                    match frac
                        .checked_mul(10)
                        .and_then(|f| f.checked_add(u64::from(d - b'0')))
                    {
                        Some(f) => {
                            frac = f;
                            scale *= 10.0;
                        }
                        None => overflow = true,
                    }
                }
                s = &s[frac_len..];
            }
            if int_len == 0 && frac_len == 0 {
                return Err(invalid(""));
            }
            // The unit.
            let unit_len = s
                .char_indices()
                .find(|(_, c)| *c == '.' || c.is_ascii_digit())
                .map(|(i, _)| i)
                .unwrap_or(s.len());
            if unit_len == 0 {
                return Err(invalid("missing unit"));
            }
            let (unit_text, rest) = s.split_at(unit_len);
            let unit = match unit_text {
                "ns" => NS,
                "us" | "µs" | "μs" => US,
                "ms" => MS,
                "s" => SEC,
                "m" => MIN,
                "h" => HOUR,
                "d" => 24 * HOUR,
                "w" => 7 * 24 * HOUR,
                other => return Err(invalid(&format!("unknown unit {other:?}"))),
            };
            s = rest;
            let mut part = v.checked_mul(unit).ok_or_else(|| invalid("out of range"))?;
            if frac > 0 {
                // Go computes the fraction in float64 as well.
                let f = (frac as f64 * (unit as f64 / scale)) as u64;
                part = part.checked_add(f).ok_or_else(|| invalid("out of range"))?;
            }
            total = total
                .checked_add(part)
                .ok_or_else(|| invalid("out of range"))?;
        }
        let limit = if neg { 1u64 << 63 } else { (1u64 << 63) - 1 };
        if total > limit {
            return Err(invalid("out of range"));
        }
        Ok(Duration(if neg {
            (total as i128).wrapping_neg() as i64
        } else {
            total as i64
        }))
    }
}

/// Appends the fraction `v / 10^prec` to `out` without trailing zeros, returning the integer
/// part (Go's `fmtFrac`).
fn push_frac(out: &mut String, v: u64, prec: u32) -> u64 {
    let div = 10u64.pow(prec);
    let frac = v % div;
    if frac != 0 {
        let digits = format!("{frac:0width$}", width = prec as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    v / div
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let u = self.0.unsigned_abs();
        if u == 0 {
            return f.write_str("0s");
        }
        let sign = if neg { "-" } else { "" };
        if u < SEC {
            let (prec, unit) = if u < US {
                (0, "ns")
            } else if u < MS {
                (3, "µs")
            } else {
                (6, "ms")
            };
            let mut frac = String::new();
            let int = push_frac(&mut frac, u, prec);
            return write!(f, "{sign}{int}{frac}{unit}");
        }
        let mut frac = String::new();
        let secs = push_frac(&mut frac, u, 9);
        let (s, mins) = (secs % 60, secs / 60);
        if mins == 0 {
            return write!(f, "{sign}{s}{frac}s");
        }
        let (m, hours) = (mins % 60, mins / 60);
        if hours == 0 {
            return write!(f, "{sign}{m}m{s}{frac}s");
        }
        write!(f, "{sign}{hours}h{m}m{s}{frac}s")
    }
}

impl std::str::FromStr for Duration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Duration, UnitError> {
        Duration::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"10s\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                Duration::parse(s).map_err(|e| E::custom(with_hint(&e)))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "must be a duration string, found an integer\nhint: add a unit, e.g. \"{i}s\""
                )))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Duration, E> {
                self.visit_i64(i64::try_from(u).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "must be a duration string, found a number\nhint: {DURATION_HINT}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A message for `serde::de::Error::custom` carrying the hint on a `\nhint: ` line, which
/// `crate::de` splits back into `Error::hint`.
pub(crate) fn with_hint(e: &UnitError) -> String {
    format!("{}\nhint: {}", e.message, e.hint)
}

/// A number of bytes, as compose-go's `UnitBytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub i64);

impl ByteSize {
    /// Parses a size as docker's `units.RAMInBytes` does (binary multiples).
    pub fn parse(text: &str) -> Result<ByteSize, UnitError> {
        let invalid = || UnitError {
            message: format!("invalid size {text:?}"),
            hint: SIZE_HINT,
        };
        let Some(sep) = text.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
            return Err(invalid());
        };
        let (num, sfx) = if text.as_bytes().get(sep) == Some(&b' ') {
            (&text[..sep], &text[sep + 1..])
        } else {
            (&text[..sep + 1], &text[sep + 1..])
        };
        // Go's ParseFloat: digits with an optional fraction or exponent; no sign here.
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') || num == "." {
            return Err(invalid());
        }
        let size: f64 = num.parse().map_err(|_| invalid())?;
        if sfx.is_empty() {
            return Ok(ByteSize(size as i64));
        }
        let bad_suffix = || UnitError {
            message: format!("invalid size {text:?}: unknown unit {sfx:?}"),
            hint: SIZE_HINT,
        };
        let lower = sfx.to_ascii_lowercase();
        let bytes = lower.as_bytes();
        if bytes.len() > 3 {
            return Err(bad_suffix());
        }
        let mul: f64 = match bytes.first() {
            Some(b'b') if bytes.len() == 1 => return Ok(ByteSize(size as i64)),
            Some(b'k') => 1024.0,
            Some(b'm') => 1024.0 * 1024.0,
            Some(b'g') => 1024.0 * 1024.0 * 1024.0,
            Some(b't') => 1024.0f64.powi(4),
            Some(b'p') => 1024.0f64.powi(5),
            _ => return Err(bad_suffix()),
        };
        match &lower[1..] {
            "" | "b" | "ib" => {}
            _ => return Err(bad_suffix()),
        }
        Ok(ByteSize((size * mul) as i64))
    }

    /// The number of bytes.
    pub fn bytes(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<ByteSize, UnitError> {
        ByteSize::parse(s)
    }
}

impl Serialize for ByteSize {
    /// compose-go's `UnitBytes.MarshalYAML`/`MarshalJSON`: the decimal number as a string.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size like \"512m\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(|e| E::custom(with_hint(&e)))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<ByteSize, E> {
                Ok(ByteSize(i))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<ByteSize, E> {
                i64::try_from(u)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size out of range"))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<ByteSize, E> {
                Ok(ByteSize(f as i64))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> i64 {
        Duration::parse(s).unwrap().0
    }

    #[test]
    fn durations_parse_like_str2duration() {
        assert_eq!(d("1m30s"), 90 * SEC as i64);
        assert_eq!(d("10s"), 10 * SEC as i64);
        assert_eq!(d("1h"), HOUR as i64);
        assert_eq!(d("500ms"), 500 * MS as i64);
        assert_eq!(d("1.5s"), 1_500 * MS as i64);
        assert_eq!(d("2us"), 2_000);
        assert_eq!(d("2µs"), 2_000);
        assert_eq!(d("1d"), 24 * HOUR as i64);
        assert_eq!(d("1w2d"), 9 * 24 * HOUR as i64);
        assert_eq!(d("0"), 0);
        assert_eq!(d("-1.5h"), -(90 * MIN as i64));
        assert_eq!(d(".5s"), 500 * MS as i64);
    }

    #[test]
    fn bad_durations_say_why() {
        let e = Duration::parse("10").unwrap_err();
        assert_eq!(e.message, "invalid duration \"10\": missing unit");
        let e = Duration::parse("10x").unwrap_err();
        assert_eq!(e.message, "invalid duration \"10x\": unknown unit \"x\"");
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("s").is_err());
        assert!(Duration::parse(".s").is_err());
        assert!(Duration::parse("100000000000h").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            ("1m30s", "1m30s"),
            ("10s", "10s"),
            ("1h", "1h0m0s"),
            ("500ms", "500ms"),
            ("1.5s", "1.5s"),
            ("2us", "2µs"),
            ("1500ns", "1.5µs"),
            ("3ns", "3ns"),
            ("0", "0s"),
            ("90m", "1h30m0s"),
            ("1h0m0.25s", "1h0m0.25s"),
            ("-2s", "-2s"),
            ("1d", "24h0m0s"),
        ];
        for (input, want) in cases {
            assert_eq!(Duration::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    fn b(s: &str) -> i64 {
        ByteSize::parse(s).unwrap().0
    }

    #[test]
    fn sizes_parse_like_ram_in_bytes() {
        assert_eq!(b("512m"), 512 * 1024 * 1024);
        assert_eq!(b("1g"), 1 << 30);
        assert_eq!(b("1.5GB"), 3 << 29);
        assert_eq!(b("1024"), 1024);
        assert_eq!(b("2k"), 2048);
        assert_eq!(b("2KiB"), 2048);
        assert_eq!(b("10 MB"), 10 << 20);
        assert_eq!(b("7b"), 7);
        assert_eq!(b("1.5"), 1);
    }

    #[test]
    fn bad_sizes_say_why() {
        assert_eq!(
            ByteSize::parse("abc").unwrap_err().message,
            "invalid size \"abc\""
        );
        assert_eq!(
            ByteSize::parse("1x").unwrap_err().message,
            "invalid size \"1x\": unknown unit \"x\""
        );
        assert!(ByteSize::parse("1kbb").is_err());
        assert!(ByteSize::parse("1mx").is_err());
        assert!(ByteSize::parse("-1").is_err());
        assert!(ByteSize::parse("").is_err());
    }

    #[test]
    fn sizes_serialise_as_strings_of_bytes() {
        assert_eq!(
            serde_json::to_string(&ByteSize(1 << 30)).unwrap(),
            "\"1073741824\""
        );
        assert_eq!(
            serde_json::to_string(&Duration::parse("1m30s").unwrap()).unwrap(),
            "\"1m30s\""
        );
    }
}
