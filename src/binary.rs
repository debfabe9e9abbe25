//! Which berth binary a long-lived helper runs. The project supervisors and the DNS daemon
//! outlive the command that started them; after berth is upgraded (or rebuilt) they would go
//! on running the old code, which may not know what the new one writes (a field of an
//! endpoint record, a request). The next command that talks to one checks, and replaces a
//! helper that runs another binary than its own. The containers' shims and monitors are not
//! replaced: each keeps its container, and they speak a protocol that does not change with
//! a release.

/// `true` when process `pid` runs another executable file than this process: the files
/// `/proc/<pid>/exe` and `/proc/self/exe` lead to (followed even when deleted, as a replaced
/// binary is) differ in device or inode. `false` when either cannot be read (the process is
/// gone, or is not ours to look at): nothing to replace then.
pub fn runs_other_binary(pid: i32) -> bool {
    match (
        identity(&format!("/proc/{pid}/exe")),
        identity("/proc/self/exe"),
    ) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => false,
    }
}

fn identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_a_child_of_another_binary() {
        assert!(!runs_other_binary(std::process::id() as i32));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let other = runs_other_binary(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(other);
        // Gone: nothing to replace.
        assert!(!runs_other_binary(pid));
    }
}
