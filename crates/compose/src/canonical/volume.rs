//! A service's short-syntax volume (`SOURCE:TARGET[:OPTIONS]`) → its long form, as
//! compose-go's `format.ParseVolume` reads it.
//!
//! The source decides the type: a path (starting with `.`, `/`, `~`, `\\`, or a Windows drive
//! such as `C:`) is a bind mount, anything else a named volume; a spec with no source is an
//! anonymous volume. Options are comma-separated: `ro`, `rw`, `nocopy`, the propagation modes
//! and the SELinux labels `z`/`Z`; unknown options are ignored, as compose-go does.

/// A parsed short-syntax volume, in the fields `docker compose config` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    /// `bind` or `volume`.
    pub kind: &'static str,
    /// Host path or volume name, `""` for an anonymous volume.
    pub source: String,
    /// Path in the container (cleaned like Go's `path.Clean`).
    pub target: String,
    /// `ro` was given (and not overridden by a later `rw`).
    pub read_only: bool,
    /// The `bind:` block, when there is one.
    pub bind: Option<Bind>,
    /// The `volume:` block, when there is one; `Some(true)` is `nocopy`.
    pub volume: Option<bool>,
}

/// The `bind:` options of a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    /// Bind mounts from the short syntax create a missing host path.
    pub create_host_path: bool,
    /// `z` or `Z`.
    pub selinux: Option<String>,
    /// One of `rprivate`, `private`, `rshared`, `shared`, `rslave`, `slave`.
    pub propagation: Option<String>,
}

const PROPAGATIONS: [&str; 6] = [
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

fn is_windows_drive(buffer: &[char], c: char) -> bool {
    c == ':' && buffer.len() == 1 && buffer.first().is_some_and(|b| b.is_alphabetic())
}

fn is_file_path(source: &str) -> bool {
    let mut chars = source.chars();
    match chars.next() {
        None => false,
        Some('.' | '/' | '~') => true,
        Some(_) if source.starts_with("\\\\") => true,
        Some(first) => first.is_alphabetic() && chars.next() == Some(':'),
    }
}

/// Parses a short-syntax volume. The error is the explanation after `invalid spec: SPEC: `.
pub fn parse(spec: &str) -> Result<VolumeSpec, String> {
    let mut v = VolumeSpec {
        kind: "volume",
        ..VolumeSpec::default()
    };
    match spec.len() {
        0 => return Err("invalid empty volume spec".to_string()),
        1 | 2 => {
            v.target = spec.to_string();
            return Ok(v);
        }
        _ => {}
    }
    let bytes = spec.as_bytes();
    let mut buffer: Vec<char> = Vec::new();
    let mut in_var = 0usize;
    let mut filled = (false, false); // source, target
    let chars = spec
        .char_indices()
        .map(|(i, c)| (i, Some(c)))
        .chain(std::iter::once((spec.len(), None)));
    for (i, c) in chars {
        if c == Some('$') && bytes.get(i + 1) == Some(&b'{') {
            in_var += 1;
            buffer.push('$');
            continue;
        }
        if c == Some('}') && in_var > 0 {
            in_var -= 1;
            buffer.push('}');
            continue;
        }
        match c {
            Some(ch) if is_windows_drive(&buffer, ch) => buffer.push(ch),
            Some(':') | None if in_var == 0 => {
                fill(&mut v, &mut filled, &buffer, c.is_none())
                    .map_err(|reason| format!("invalid spec: {spec}: {reason}"))?;
                buffer.clear();
            }
            Some(ch) => buffer.push(ch),
            // End of the spec inside an unclosed `${`: nothing more to read.
            None => {}
        }
    }
    if is_file_path(&v.source) {
        v.kind = "bind";
        v.bind.get_or_insert_with(Bind::default).create_host_path = true;
    } else if v.volume.is_none() {
        v.volume = Some(false);
    }
    if !v.target.is_empty() {
        v.target = crate::paths::clean(&v.target);
    }
    Ok(v)
}

fn fill(
    v: &mut VolumeSpec,
    filled: &mut (bool, bool),
    buffer: &[char],
    end: bool,
) -> Result<(), &'static str> {
    let text: String = buffer.iter().collect();
    if text.is_empty() {
        return Err("empty section between colons");
    }
    if !filled.0 && end {
        v.target = text;
        filled.1 = true;
        return Ok(());
    }
    if !filled.0 {
        v.source = text;
        filled.0 = true;
        return Ok(());
    }
    if !filled.1 {
        v.target = text;
        filled.1 = true;
        return Ok(());
    }
    if !end {
        return Err("too many colons");
    }
    for option in text.split(',') {
        match option {
            "ro" => v.read_only = true,
            "rw" => v.read_only = false,
            "nocopy" => v.volume = Some(true),
            "z" | "Z" => {
                v.bind.get_or_insert_with(Bind::default).selinux = Some(option.to_string())
            }
            p if PROPAGATIONS.contains(&p) => {
                v.bind.get_or_insert_with(Bind::default).propagation = Some(p.to_string())
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let v = parse("./data:/data").expect("valid");
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str()),
            ("bind", "./data", "/data")
        );
        assert_eq!(v.bind.map(|b| b.create_host_path), Some(true));
        let v = parse("db:/var/lib/db/").expect("valid");
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str(), v.volume),
            ("volume", "db", "/var/lib/db", Some(false))
        );
        let v = parse("/data").expect("valid");
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str()),
            ("volume", "", "/data")
        );
        let v = parse("C:\\data:/data").expect("valid");
        assert_eq!((v.kind, v.source.as_str()), ("bind", "C:\\data"));
        assert_eq!(parse("~/x:/x").expect("valid").kind, "bind");
        assert_eq!(parse("\\\\pipe\\x:/x").expect("valid").kind, "bind");
        assert_eq!(parse("${HOME}/x:/x").expect("valid").source, "${HOME}/x");
    }

    #[test]
    fn options() {
        let v = parse("./a:/a:ro,z,rshared").expect("valid");
        assert!(v.read_only);
        let b = v.bind.expect("bind");
        assert_eq!(
            (b.selinux.as_deref(), b.propagation.as_deref()),
            (Some("z"), Some("rshared"))
        );
        let v = parse("vol:/a:nocopy,rw").expect("valid");
        assert_eq!((v.read_only, v.volume), (false, Some(true)));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(""), Err("invalid empty volume spec".to_string()));
        assert_eq!(
            parse("vol:/b:ro:x"),
            Err("invalid spec: vol:/b:ro:x: too many colons".to_string())
        );
        // A one-letter source is a Windows drive, as in compose-go.
        assert_eq!(parse("a:b:ro").expect("valid").source, "a:b");
        assert_eq!(
            parse("vol::/b"),
            Err("invalid spec: vol::/b: empty section between colons".to_string())
        );
    }

    #[test]
    fn target_is_cleaned() {
        let v = parse("./data:/data/./x/../y/").expect("valid");
        assert_eq!(v.target, "/data/y");
    }
}
