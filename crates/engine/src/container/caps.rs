//! Linux capabilities as Docker grants them: its default set, `cap_add` / `cap_drop` applied
//! as moby's `caps.TweakCapabilities` does, and every capability for `privileged`.

use super::config::SecurityConfig;
use super::spec::SpecError;

/// Docker's default capability set, in Docker's order.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability by number (index = `CAP_*` value in `linux/capability.h`).
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`), in number
/// order; all of berth's table when that file cannot be read.
pub fn all_caps() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL_CAPS.len() - 1);
    // Only what this process may hand out: a capability outside its own bounding set (a
    // sandbox that dropped CAP_SYS_RESOURCE, say) would make the runtime's capset fail.
    let bounding = own_bounding_set();
    ALL_CAPS
        .iter()
        .take(last.saturating_add(1))
        .enumerate()
        .filter(|(bit, _)| bounding.is_none_or(|b| b & (1u64 << bit) != 0))
        .map(|(_, c)| c.to_string())
        .collect()
}

/// `CapBnd` of this process (`None` when /proc says nothing).
fn own_bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `cap_add` / `cap_drop` names as moby normalises them: upper case, `CAP_` added, `ALL`
/// kept; a name the kernel does not know is an error naming it.
fn normalize(names: &[String], known: &[String]) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ALL" {
            out.push(upper);
            continue;
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if !known.contains(&full) {
            return Err(SpecError::UnknownCapability(name.clone()));
        }
        out.push(full);
    }
    Ok(out)
}

/// The capabilities the container's process gets: every capability when privileged,
/// otherwise Docker's default set with `cap_drop` removed and `cap_add` added (`ALL` in
/// `cap_add`: every capability but the dropped ones; `ALL` in `cap_drop`: only the added
/// ones). Names are `CAP_*`, without duplicates.
pub fn effective_caps(sec: &SecurityConfig) -> Result<Vec<String>, SpecError> {
    let known = all_caps();
    if sec.privileged {
        return Ok(known);
    }
    let add = normalize(&sec.cap_add, &known)?;
    let drop = normalize(&sec.cap_drop, &known)?;
    let all = "ALL".to_string();
    let mut caps: Vec<String> = if add.contains(&all) {
        known.into_iter().filter(|c| !drop.contains(c)).collect()
    } else if drop.contains(&all) {
        add
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str]) -> SecurityConfig {
        SecurityConfig {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..SecurityConfig::default()
        }
    }

    #[test]
    fn default_set_is_dockers() {
        let caps = effective_caps(&sec(&[], &[])).unwrap();
        assert_eq!(caps, DEFAULT_CAPS);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_ADMIN".to_string()));
    }

    #[test]
    fn add_and_drop_are_case_insensitive_with_optional_prefix() {
        let caps = effective_caps(&sec(
            &["sys_admin", "CAP_net_admin"],
            &["Chown", "cap_kill"],
        ))
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        // Adding one already there does not duplicate it.
        let caps = effective_caps(&sec(&["chown"], &[])).unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
    }

    #[test]
    fn all_in_add_or_drop() {
        let all = all_caps();
        let caps = effective_caps(&sec(&["ALL"], &["sys_admin"])).unwrap();
        assert_eq!(caps.len(), all.len() - 1);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_MODULE".to_string()));
        let caps = effective_caps(&sec(&["net_bind_service"], &["all"])).unwrap();
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
        assert!(effective_caps(&sec(&[], &["ALL"])).unwrap().is_empty());
    }

    #[test]
    fn privileged_gets_every_known_capability() {
        let s = SecurityConfig {
            privileged: true,
            cap_drop: vec!["ALL".into()],
            ..SecurityConfig::default()
        };
        let caps = effective_caps(&s).unwrap();
        assert_eq!(caps, all_caps());
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = effective_caps(&sec(&["CAP_FLY"], &[])).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FLY\"");
        let err = effective_caps(&sec(&[], &["teleport"])).unwrap_err();
        assert!(err.to_string().contains("teleport"), "{err}");
    }
}
