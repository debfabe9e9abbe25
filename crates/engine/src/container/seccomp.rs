//! Seccomp filters in Docker's profile format: berth's default profile (equivalent to moby's
//! `profiles/seccomp/default.json`, expressed as Rust data) and user profiles
//! (`security_opt: seccomp=<file>`), both reduced to an OCI [`LinuxSeccomp`] for the
//! container's capabilities, the host's architecture and kernel, as moby's `setupSeccomp`
//! does.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::spec::SpecError;

/// `includes` / `excludes` of a profile rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Filter {
    /// Docker's arch names: `amd64`, `arm64`, `x86`, `x32`, `arm`, `s390x`, …
    arches: Vec<String>,
    /// `CAP_*` names; all must be held (includes) / any held (excludes).
    caps: Vec<String>,
    /// `"4.8"`: the running kernel is at least this version.
    min_kernel: Option<String>,
}

/// One rule of a Docker-format profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

/// `archMap` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

/// A Docker-format profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Profile {
    default_action: Option<LinuxSeccompAction>,
    default_errno_ret: Option<u32>,
    architectures: Vec<Arch>,
    arch_map: Vec<ArchMap>,
    flags: Vec<LinuxSeccompFilterFlag>,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<Rule>>,
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const AF_VSOCK: u64 = 40;
/// CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
/// CLONE_NEWCGROUP: `clone` with any of these needs CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

/// Syscalls every container may make (Docker's unconditional allow-list).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed only with (all of) these capabilities: Docker's capability-conditional rules.
const BY_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Allowed only on these architectures (Docker's arch names).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// The native architecture: (Docker's name for it, its seccomp architecture).
fn native_arch() -> (&'static str, Option<Arch>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
        "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
        "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
        "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
        other => (other, None),
    }
}

/// Docker's `archMap`: each 64-bit architecture with the compat ones it also runs.
fn default_arch_map() -> Vec<ArchMap> {
    let map = |architecture, subs: &[Arch]| ArchMap {
        architecture,
        sub_architectures: Some(subs.to_vec()),
    };
    vec![
        map(
            Arch::ScmpArchX86_64,
            &[Arch::ScmpArchX86, Arch::ScmpArchX32],
        ),
        map(Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
        map(Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
        map(Arch::ScmpArchRiscv64, &[]),
    ]
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn allow(names: &[&str]) -> Rule {
    Rule {
        name: None,
        names: strs(names),
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: None,
        includes: Filter::default(),
        excludes: Filter::default(),
    }
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    // Every field is set: the builder cannot fail.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(0u64)
        .op(op)
        .build()
        .unwrap_or_default()
}

/// Docker's default profile as data, before it is reduced for a container.
fn default_rules() -> Profile {
    let mut rules = vec![allow(ALLOWED)];
    rules.push(Rule {
        includes: Filter {
            min_kernel: Some("4.8".into()),
            ..Filter::default()
        },
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    rules.push(Rule {
        args: Some(vec![arg(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)]),
        ..allow(&["socket"])
    });
    // personality(2): only PER_LINUX, PER_LINUX32, UNAME26 (and combinations) and the query.
    for persona in [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(Rule {
            args: Some(vec![arg(0, persona, LinuxSeccompOperator::ScmpCmpEq)]),
            ..allow(&["personality"])
        });
    }
    for (arches, names) in BY_ARCH {
        rules.push(Rule {
            includes: Filter {
                arches: strs(arches),
                ..Filter::default()
            },
            ..allow(names)
        });
    }
    for (cap, names) in BY_CAP.iter().take(2) {
        rules.push(by_cap(cap, names));
    }
    // Without CAP_SYS_ADMIN, clone may not create namespaces (s390 swaps the first two
    // arguments) and clone3, whose flags seccomp cannot inspect, fails with ENOSYS so that
    // libcs fall back to clone.
    let no_admin = Filter {
        caps: strs(&["CAP_SYS_ADMIN"]),
        ..Filter::default()
    };
    rules.push(Rule {
        args: Some(vec![arg(
            0,
            CLONE_NS_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )]),
        excludes: Filter {
            arches: strs(&["s390", "s390x"]),
            ..no_admin.clone()
        },
        ..allow(&["clone"])
    });
    rules.push(Rule {
        args: Some(vec![arg(
            1,
            CLONE_NS_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )]),
        includes: Filter {
            arches: strs(&["s390", "s390x"]),
            ..Filter::default()
        },
        excludes: no_admin.clone(),
        ..allow(&["clone"])
    });
    rules.push(Rule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(ENOSYS),
        excludes: no_admin,
        ..allow(&["clone3"])
    });
    for (cap, names) in BY_CAP.iter().skip(2) {
        rules.push(by_cap(cap, names));
    }
    Profile {
        default_action: Some(LinuxSeccompAction::ScmpActErrno),
        default_errno_ret: Some(EPERM),
        arch_map: default_arch_map(),
        syscalls: Some(rules),
        ..Profile::default()
    }
}

fn by_cap(cap: &str, names: &[&str]) -> Rule {
    Rule {
        includes: Filter {
            caps: vec![cap.to_string()],
            ..Filter::default()
        },
        ..allow(names)
    }
}

/// Docker's default profile for a container whose bounding set is `caps` (`CAP_*` names).
pub fn default_profile(caps: &[String]) -> LinuxSeccomp {
    match reduce(default_rules(), caps, kernel_version()) {
        Ok(Some(s)) => s,
        // The built-in profile has a default action and valid rules.
        _ => LinuxSeccomp::default(),
    }
}

/// A Docker-format profile (the content of `security_opt: seccomp=<file>`) for a container
/// whose bounding set is `caps`. `Ok(None)` for a profile without `defaultAction` nor
/// syscalls, which Docker treats as no filter.
pub fn from_docker_json(json: &str, caps: &[String]) -> Result<Option<LinuxSeccomp>, SpecError> {
    let profile: Profile =
        serde_json::from_str(json).map_err(|e| SpecError::SeccompProfile(e.to_string()))?;
    reduce(profile, caps, kernel_version())
}

/// The running kernel's (major, minor) from `/proc/sys/kernel/osrelease`.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_version(release.trim())
}

fn parse_kernel_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn kernel_at_least(min: &str, kernel: Option<(u32, u32)>) -> Result<bool, SpecError> {
    let want = parse_kernel_version(min)
        .ok_or_else(|| SpecError::SeccompProfile(format!("invalid minKernel {min:?}")))?;
    Ok(kernel.is_some_and(|k| k >= want))
}

/// moby's `setupSeccomp`: keep the rules whose includes match and excludes do not.
fn reduce(
    profile: Profile,
    caps: &[String],
    kernel: Option<(u32, u32)>,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let Some(default_action) = profile.default_action else {
        if profile.syscalls.as_ref().is_none_or(|s| s.is_empty()) {
            return Ok(None);
        }
        return Err(SpecError::SeccompProfile("no defaultAction".into()));
    };
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(SpecError::SeccompProfile(
            "both architectures and archMap are specified, use one of them".into(),
        ));
    }
    let (arch, native) = native_arch();
    let mut architectures = profile.architectures.clone();
    if let Some(native_arch) = native
        && let Some(m) = profile
            .arch_map
            .iter()
            .find(|m| m.architecture == native_arch)
    {
        architectures.push(m.architecture);
        architectures.extend(m.sub_architectures.iter().flatten().copied());
    }
    let holds = |c: &String| caps.iter().any(|have| have.eq_ignore_ascii_case(c));
    let mut syscalls = Vec::new();
    for rule in profile.syscalls.unwrap_or_default() {
        let ex = &rule.excludes;
        if ex.arches.iter().any(|a| a == arch) || ex.caps.iter().any(holds) {
            continue;
        }
        if let Some(min) = &ex.min_kernel
            && kernel_at_least(min, kernel)?
        {
            continue;
        }
        let inc = &rule.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch) {
            continue;
        }
        if !inc.caps.iter().all(holds) {
            continue;
        }
        if let Some(min) = &inc.min_kernel
            && !kernel_at_least(min, kernel)?
        {
            continue;
        }
        let names = match (rule.name, rule.names.is_empty()) {
            (Some(_), false) => {
                return Err(SpecError::SeccompProfile(
                    "both name and names are specified in a rule, use one of them".into(),
                ));
            }
            (Some(n), true) => vec![n],
            (None, _) => rule.names,
        };
        let mut s = LinuxSyscall::default();
        s.set_names(names);
        s.set_action(rule.action);
        s.set_errno_ret(rule.errno_ret);
        s.set_args(rule.args.filter(|a| !a.is_empty()));
        syscalls.push(s);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures((!architectures.is_empty()).then_some(architectures));
    out.set_flags((!profile.flags.is_empty()).then_some(profile.flags));
    out.set_listener_path(profile.listener_path);
    out.set_listener_metadata(profile.listener_metadata);
    out.set_syscalls(Some(syscalls));
    Ok(Some(out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::container::caps::DEFAULT_CAPS;

    /// Docker's default capabilities and `extra` (also used by `seccomp_bpf`'s tests).
    pub(crate) fn caps_with(extra: &[&str]) -> Vec<String> {
        DEFAULT_CAPS
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    }

    /// How the filter treats `name` called without arguments that any rule inspects:
    /// the action of the first unconditional rule naming it, else the default.
    fn unconditional(p: &LinuxSeccomp, name: &str) -> LinuxSeccompAction {
        p.syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == name) && s.args().is_none())
            .map(|s| s.action())
            .unwrap_or(p.default_action())
    }

    fn rules_for<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    const ALLOW: LinuxSeccompAction = LinuxSeccompAction::ScmpActAllow;
    const ERRNO: LinuxSeccompAction = LinuxSeccompAction::ScmpActErrno;

    #[test]
    fn default_denies_with_eperm_and_allows_the_common_calls() {
        let p = default_profile(&caps_with(&[]));
        assert_eq!(p.default_action(), ERRNO);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "futex",
            "chown",
            "setuid",
            "io_uring_setup",
        ] {
            assert_eq!(unconditional(&p, name), ALLOW, "{name}");
        }
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
            assert_eq!(unconditional(&p, "arch_prctl"), ALLOW);
            assert_eq!(unconditional(&p, "set_tls"), ERRNO);
        }
        if std::env::consts::ARCH == "aarch64" {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
            );
            assert_eq!(unconditional(&p, "arch_prctl"), ERRNO);
        }
    }

    #[test]
    fn privileged_calls_need_their_capability() {
        let cases: &[(&str, &[&str])] = &[
            (
                "CAP_SYS_ADMIN",
                &[
                    "mount",
                    "umount2",
                    "unshare",
                    "setns",
                    "sethostname",
                    "fsopen",
                ],
            ),
            (
                "CAP_SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
            (
                "CAP_SYS_PTRACE",
                &["kcmp", "pidfd_getfd", "process_madvise"],
            ),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            ("CAP_SYS_PACCT", &["acct"]),
            ("CAP_SYS_NICE", &["mbind", "set_mempolicy"]),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
        ];
        let base = default_profile(&caps_with(&[]));
        for (cap, names) in cases {
            let with = default_profile(&caps_with(&[cap]));
            for name in *names {
                assert_eq!(unconditional(&base, name), ERRNO, "{name} without {cap}");
                assert_eq!(unconditional(&with, name), ALLOW, "{name} with {cap}");
            }
        }
        // The default set already holds SYS_CHROOT.
        assert_eq!(unconditional(&base, "chroot"), ALLOW);
        let no_chroot: Vec<String> = caps_with(&[])
            .into_iter()
            .filter(|c| c != "CAP_SYS_CHROOT")
            .collect();
        assert_eq!(unconditional(&default_profile(&no_chroot), "chroot"), ERRNO);
    }

    #[test]
    fn never_allowed_even_with_all_capabilities() {
        let all = crate::container::caps::all_caps();
        let p = default_profile(&all);
        for name in [
            "kexec_load",
            "kexec_file_load",
            "open_tree_attr",
            "userfaultfd",
            "add_key",
            "keyctl",
            "swapon",
            "uselib",
        ] {
            assert!(rules_for(&p, name).is_empty(), "{name}");
            assert_eq!(unconditional(&p, name), ERRNO, "{name}");
        }
    }

    #[test]
    fn clone_may_not_create_namespaces_without_sys_admin() {
        let p = default_profile(&caps_with(&[]));
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        let args = clone[0]
            .args()
            .as_ref()
            .expect("clone is filtered on its flags");
        assert_eq!(
            args[0].index(),
            if std::env::consts::ARCH == "s390x" {
                1
            } else {
                0
            }
        );
        assert_eq!(args[0].value(), 0x7e02_0000);
        assert_eq!(args[0].value_two(), Some(0));
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), ERRNO);
        assert_eq!(clone3[0].errno_ret(), Some(ENOSYS));

        let admin = default_profile(&caps_with(&["CAP_SYS_ADMIN"]));
        assert_eq!(unconditional(&admin, "clone"), ALLOW);
        assert_eq!(unconditional(&admin, "clone3"), ALLOW);
        assert!(
            rules_for(&admin, "clone")
                .iter()
                .all(|r| r.args().is_none())
        );
    }

    #[test]
    fn personality_and_socket_are_argument_filtered() {
        let p = default_profile(&caps_with(&[]));
        let personas: Vec<u64> = rules_for(&p, "personality")
            .iter()
            .map(|r| {
                let a = r
                    .args()
                    .as_ref()
                    .expect("personality has an argument filter");
                assert_eq!(a[0].op(), LinuxSeccompOperator::ScmpCmpEq);
                a[0].value()
            })
            .collect();
        assert_eq!(personas, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        let socket = rules_for(&p, "socket");
        assert_eq!(socket.len(), 1);
        let a = socket[0]
            .args()
            .as_ref()
            .expect("socket has an argument filter");
        assert_eq!((a[0].index(), a[0].value()), (0, AF_VSOCK));
        assert_eq!(a[0].op(), LinuxSeccompOperator::ScmpCmpNe);
    }

    #[test]
    fn serialises_as_the_oci_runtime_expects() {
        let p = default_profile(&caps_with(&[]));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(v["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn docker_profiles_are_filtered_by_caps_and_arch() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_KILL"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
            ]
        }"#;
        let p = from_docker_json(json, &caps_with(&[])).unwrap().unwrap();
        assert_eq!(unconditional(&p, "read"), ALLOW);
        assert_eq!(unconditional(&p, "mount"), ERRNO);
        assert!(
            rules_for(&p, "getpid").is_empty(),
            "CAP_KILL is in the default set"
        );
        assert!(rules_for(&p, "future").is_empty());
        assert_eq!(rules_for(&p, "personality").len(), 1);
        let on_x86 = std::env::consts::ARCH == "x86_64";
        assert_eq!(rules_for(&p, "arch_prctl").len(), usize::from(on_x86));
        assert_eq!(
            rules_for(&p, "set_tls").len(),
            usize::from(std::env::consts::ARCH == "aarch64")
        );
        if on_x86 {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
            );
        }
        let admin = from_docker_json(json, &caps_with(&["CAP_SYS_ADMIN"]))
            .unwrap()
            .unwrap();
        assert_eq!(unconditional(&admin, "mount"), ALLOW);
        let no_kill: Vec<String> = caps_with(&[])
            .into_iter()
            .filter(|c| c != "CAP_KILL")
            .collect();
        let p = from_docker_json(json, &no_kill).unwrap().unwrap();
        assert_eq!(rules_for(&p, "getpid")[0].errno_ret(), Some(38));
    }

    #[test]
    fn bad_docker_profiles_are_errors_and_empty_ones_no_filter() {
        assert!(from_docker_json("{}", &[]).unwrap().is_none());
        let err = from_docker_json("{\"defaultAction\": ", &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid seccomp profile: "),
            "{err}"
        );
        let both = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#;
        assert!(from_docker_json(both, &[]).is_err());
        let name_and_names = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#;
        assert!(from_docker_json(name_and_names, &[]).is_err());
        let bad_action = r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#;
        assert!(from_docker_json(bad_action, &[]).is_err());
    }

    #[test]
    fn kernel_versions_compare_numerically() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4"), Some((5, 4)));
        assert!(kernel_at_least("4.8", Some((4, 10))).unwrap());
        assert!(!kernel_at_least("4.10", Some((4, 8))).unwrap());
        assert!(kernel_at_least("x", Some((4, 8))).is_err());
    }
}
