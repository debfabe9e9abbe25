//! A container's seccomp filter compiled once per profile instead of once per start.
//!
//! Given a spec with `linux.seccomp`, libcontainer compiles the profile with libseccomp inside
//! the container's init, every time. For Docker's default profile that takes 6–10 ms (three
//! architectures, 976 BPF instructions): a fifth of the CPU a start costs. So the shim takes
//! the profile out of the spec it hands libcontainer ([`take_from_spec`]), compiles it once
//! per root into `run/seccomp/<key>.bpf` (tmpfs, gone at reboot, rebuilt on need), and its
//! executor loads that program right before `execve` ([`Filter::apply`]).
//!
//! The one catch: without `no_new_privileges` (Docker's default) the kernel lets only a
//! process with `CAP_SYS_ADMIN` load a filter, and libcontainer drops capabilities before the
//! executor runs. So when the container may not keep `CAP_SYS_ADMIN`, the spec borrows it
//! in the effective and permitted sets only (never the bounding, inheritable or ambient sets,
//! so nothing can carry it past `execve`), and [`Filter::apply`] drops it again right after
//! the load. The filter is then in force for exactly the calls libcontainer's own order has
//! under it (capset, and `execve`) and the program decides what libcontainer's would have:
//! the same library compiles the same rules (laid out as a binary tree, which is faster to
//! load and to run: [`BINARY_TREE_MIN_RULES`]), and `seccomp(2)` gets the same flags (none).
//!
//! Profiles this cannot reproduce stay with libcontainer: filter flags, `SCMP_ACT_NOTIFY`
//! (its listener descriptor goes to the runtime), a listener path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, Spec,
};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, Lock};

/// Spec annotation: the key of the compiled filter the executor loads (`<key>.bpf`).
pub const FILTER_ANNOTATION: &str = "org.berth.seccomp.filter";
/// Spec annotation, present when `CAP_SYS_ADMIN` is borrowed only to load the filter.
pub const BORROWED_ANNOTATION: &str = "org.berth.seccomp.borrowed";

/// Bumped when the compiled form or the key changes: old cache files are then never read.
const FORMAT: &str = "berth-seccomp-bpf-2";

/// A compiled filter, and whether loading it borrows `CAP_SYS_ADMIN`.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    drop_sys_admin: bool,
}

impl Filter {
    /// Loads the filter into the calling thread and, when `CAP_SYS_ADMIN` was borrowed for
    /// that, drops it from the effective and permitted sets. Called in the container's init
    /// (or exec'd process), single-threaded, right before `execve`.
    pub fn apply(&self) -> io::Result<()> {
        sys::load_filter(&self.program)?;
        if self.drop_sys_admin {
            for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
                caps::drop(None, set, caps::Capability::CAP_SYS_ADMIN)
                    .map_err(|e| io::Error::other(format!("drop CAP_SYS_ADMIN again: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Why a profile could not be compiled or its compiled form not read.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("seccomp profile: {0}")]
    Compile(String),
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error("compiled seccomp filter {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
}

/// Whether the executor can load `profile` in libcontainer's place.
pub fn can_precompile(profile: &LinuxSeccomp) -> bool {
    let notify = |a: LinuxSeccompAction| a == LinuxSeccompAction::ScmpActNotify;
    profile.flags().as_ref().is_none_or(|f| f.is_empty())
        && profile.listener_path().is_none()
        && !notify(profile.default_action())
        && profile
            .syscalls()
            .iter()
            .flatten()
            .all(|s| !notify(s.action()))
}

/// Takes a profile [`can_precompile`] accepts out of `spec`: compiles it (or reads it from
/// `cache_dir`), records its key in the spec's annotations, and borrows `CAP_SYS_ADMIN` when
/// the process needs it to load the filter. Returns the filter for the executor, or `None`
/// when the spec keeps its profile (none, or one libcontainer must load).
pub fn take_from_spec(spec: &mut Spec, cache_dir: &Path) -> Result<Option<Filter>, FilterError> {
    let Some(profile) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .filter(can_precompile)
    else {
        return Ok(None);
    };
    let (key, program) = cached(cache_dir, &profile)?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(None);
    }
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(FILTER_ANNOTATION.to_string(), key);
    let borrow = spec.process_mut().as_mut().is_some_and(borrow_sys_admin);
    if borrow {
        annotations.insert(BORROWED_ANNOTATION.to_string(), "CAP_SYS_ADMIN".to_string());
    }
    spec.set_annotations(Some(annotations));
    Ok(Some(Filter {
        program,
        drop_sys_admin: borrow,
    }))
}

/// The filter [`take_from_spec`] recorded in a container's `spec`, for a process exec'd into
/// it. `process` is that process (as it goes to the runtime): when `CAP_SYS_ADMIN` was
/// borrowed and `process` does not ask for it in its own right (`exec --privileged`), it is
/// borrowed for this process too and dropped after the load.
pub fn for_exec(
    spec: &Spec,
    process: &mut oci_spec::runtime::Process,
    privileged: bool,
    cache_dir: &Path,
) -> Result<Option<Filter>, FilterError> {
    let Some(key) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(FILTER_ANNOTATION))
    else {
        return Ok(None);
    };
    let path = cache_dir.join(format!("{key}.bpf"));
    let program = read_program(&path)?;
    let borrowed = spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(BORROWED_ANNOTATION));
    // The container's process carries the borrowed capability already (it is the spec's);
    // a privileged exec holds every capability in its own right and gives nothing back.
    let drop_sys_admin = borrowed && !privileged;
    if drop_sys_admin {
        borrow_sys_admin(process);
    }
    Ok(Some(Filter {
        program,
        drop_sys_admin,
    }))
}

/// Adds `CAP_SYS_ADMIN` to the effective and permitted sets when loading a filter needs it
/// (no `no_new_privileges`) and the process lacks it. Returns whether it was added.
fn borrow_sys_admin(process: &mut oci_spec::runtime::Process) -> bool {
    if process.no_new_privileges() == Some(true) {
        return false;
    }
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let has = |s: &Option<oci_spec::runtime::Capabilities>| {
        s.as_ref()
            .is_some_and(|s| s.contains(&Capability::SysAdmin))
    };
    if has(caps.effective()) && has(caps.permitted()) {
        return false;
    }
    let mut effective = caps.effective().clone().unwrap_or_default();
    effective.insert(Capability::SysAdmin);
    let mut permitted = caps.permitted().clone().unwrap_or_default();
    permitted.insert(Capability::SysAdmin);
    caps.set_effective(Some(effective))
        .set_permitted(Some(permitted));
    process.set_capabilities(Some(caps));
    true
}

/// The cache key of `profile`: a hash of its JSON form.
pub fn key(profile: &LinuxSeccomp) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(profile).unwrap_or_default());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `<cache_dir>/<key>.bpf`, compiled under a lock by the first process that needs it.
fn cached(
    cache_dir: &Path,
    profile: &LinuxSeccomp,
) -> Result<(String, Vec<libc::sock_filter>), FilterError> {
    let key = key(profile);
    let path = cache_dir.join(format!("{key}.bpf"));
    match read_program(&path) {
        Ok(p) => return Ok((key, p)),
        Err(FilterError::Fs(e)) if !e.is_not_found() => return Err(FilterError::Fs(e)),
        Err(_) => {}
    }
    fs::create_dir_all(cache_dir).map_err(|e| fsutil::FsError::io("create", cache_dir, e))?;
    // Concurrent starts of containers with one profile compile it once.
    let _lock = Lock::exclusive(&cache_dir.join(format!("{key}.lock")))?;
    // Missing, or damaged by something other than berth (it writes through a rename): compile.
    match read_program(&path) {
        Ok(p) => return Ok((key, p)),
        Err(FilterError::Fs(e)) if !e.is_not_found() => return Err(FilterError::Fs(e)),
        Err(_) => {}
    }
    let program = compile_into(profile, &path)?;
    Ok((key, program))
}

fn read_program(path: &Path) -> Result<Vec<libc::sock_filter>, FilterError> {
    let bytes = fs::read(path).map_err(|e| fsutil::FsError::io("read", path, e))?;
    from_bytes(&bytes).map_err(|why| FilterError::Corrupt {
        path: path.to_path_buf(),
        why,
    })
}

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

fn from_bytes(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, String> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > MAX_INSNS {
        return Err(format!("{} bytes is no BPF program", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// From this many rules on, the filter is laid out as a binary tree of syscall numbers
/// (libseccomp's `SCMP_FLTATR_CTL_OPTIMIZE` 2) instead of a chain of comparisons. runc does
/// the same, with the same floor: below it the tree gains nothing, and libseccomp before
/// 2.5.4 gets a filter with no rules wrong in that layout (seccomp/libseccomp#370).
///
/// Why: Docker's profile allows some 350 syscalls. In a chain, a syscall's verdict takes up
/// to 350 comparisons, and the kernel runs the program for every syscall number of each
/// architecture when the filter is loaded, to cache the verdicts that need no argument: that
/// emulation, under a spinlock, cost 0.9 ms of each container's start here; the tree takes
/// 0.4 ms. Calls whose verdict depends on an argument (clone, socket, personality) also walk
/// the tree instead of the chain for as long as the container runs.
const BINARY_TREE_MIN_RULES: usize = 8;

/// `profile` as a libseccomp filter, rule for rule as libcontainer 0.7 builds one before it
/// loads it (`initialize_seccomp`): rules whose action is the default are skipped, names
/// libseccomp does not know are skipped, a rule comparing one argument twice becomes one
/// rule per comparison. Only the layout differs: a binary tree from
/// [`BINARY_TREE_MIN_RULES`] rules on.
fn context(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, FilterError> {
    let err = |what: &str, e: libseccomp::error::SeccompError| {
        FilterError::Compile(format!("{what}: {e}"))
    };
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter", e))?;
    for &a in profile.architectures().iter().flatten() {
        ctx.add_arch(arch(a))
            .map_err(|e| err(&format!("add architecture {a:?}"), e))?;
    }
    ctx.set_ctl_nnp(false).map_err(|e| err("unset nnp", e))?;
    let mut rules = 0usize;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let args = rule.args().as_deref().unwrap_or_default();
            let cmps: Vec<ScmpArgCompare> = args
                .iter()
                .map(|a| {
                    ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value())
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let repeated = args.iter().any(|a| !seen.insert(a.index()));
            let added = if cmps.is_empty() {
                ctx.add_rule(act, sc).map(|_| ())
            } else if repeated {
                cmps.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map(|_| ())
                })
            } else {
                ctx.add_rule_conditional(act, sc, &cmps).map(|_| ())
            };
            added.map_err(|e| err(&format!("rule for {name}"), e))?;
            rules += 1;
        }
    }
    if rules >= BINARY_TREE_MIN_RULES {
        // Only the layout changes, not what the filter decides; a libseccomp older than 2.5
        // refuses the attribute and keeps its linear layout, which is just slower.
        let _ = ctx.set_ctl_optimize(2);
    }
    Ok(ctx)
}

/// Compiles `profile` into `path` (through a temporary file beside it) and returns the
/// program.
fn compile_into(
    profile: &LinuxSeccomp,
    path: &Path,
) -> Result<Vec<libc::sock_filter>, FilterError> {
    let ctx = context(profile)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(|e| fsutil::FsError::io("create", &tmp, e))?;
        ctx.export_bpf(&file)
            .map_err(|e| FilterError::Compile(format!("export: {e}")))?;
        drop(file);
        let program = read_program(&tmp)?;
        // The cache lives on the run tmpfs (gone at reboot): no fsync needed.
        fs::rename(&tmp, path).map_err(|e| fsutil::FsError::io("rename", &tmp, e))?;
        Ok(program)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, FilterError> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno)
                .map_err(|_| FilterError::Compile(format!("trace value {errno} out of range")))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn op(o: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[allow(unsafe_code)]
mod sys {
    use std::io;

    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

    /// `seccomp(SECCOMP_SET_MODE_FILTER, 0, program)`, as libseccomp's `seccomp_load` does
    /// for a filter without flags.
    pub(super) fn load_filter(program: &[libc::sock_filter]) -> io::Result<()> {
        let len = u16::try_from(program.len())
            .map_err(|_| io::Error::other("the seccomp filter is too long"))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `len` initialised instructions that outlive the call; the
        // kernel copies the program and does not write through the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::seccomp::default_profile;
    use crate::container::seccomp::tests::caps_with as caps;
    use oci_spec::runtime::{
        Capabilities, LinuxBuilder, LinuxCapabilities, LinuxSeccompFilterFlag, Process,
    };

    fn cap_set(names: &[String]) -> Capabilities {
        names
            .iter()
            .map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).unwrap())
            .collect()
    }

    /// A spec as `build_spec` makes it: the same set bounding, effective and permitted.
    fn spec(names: &[String], profile: Option<LinuxSeccomp>, nnp: bool) -> Spec {
        let set = cap_set(names);
        let mut c = LinuxCapabilities::default();
        c.set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set))
            .set_inheritable(Some(Capabilities::new()))
            .set_ambient(Some(Capabilities::new()));
        let mut process = Process::default();
        process
            .set_capabilities(Some(c))
            .set_no_new_privileges(nnp.then_some(true));
        let mut s = Spec::default();
        s.set_process(Some(process));
        let mut linux = LinuxBuilder::default().build().unwrap();
        linux.set_seccomp(profile);
        s.set_linux(Some(linux)).set_annotations(None);
        s
    }

    fn sets(s: &Spec) -> LinuxCapabilities {
        s.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap()
    }

    #[test]
    fn docker_profile_compiles_to_a_filter_that_ends_in_a_return() {
        let filter = compile_for_test(&default_profile(&caps(&[])));
        assert!(
            filter.len() > 100 && filter.len() <= MAX_INSNS,
            "{}",
            filter.len()
        );
        // BPF_RET | BPF_K: every path of a seccomp program ends in a return.
        assert_eq!(filter.last().unwrap().code, 0x06);
        // Compiling is deterministic, so a cached copy is the program libseccomp would load.
        let again = compile_for_test(&default_profile(&caps(&[])));
        assert_eq!(bytes(&filter), bytes(&again));
        // A different profile (CAP_SYS_ADMIN unlocks mount, unshare, …) is another program.
        let admin = compile_for_test(&default_profile(&caps(&["CAP_SYS_ADMIN"])));
        assert_ne!(bytes(&filter), bytes(&admin));
    }

    fn compile_for_test(p: &LinuxSeccomp) -> Vec<libc::sock_filter> {
        let dir = tempfile::tempdir().unwrap();
        compile_into(p, &dir.path().join("f.bpf")).unwrap()
    }

    /// What a classic BPF seccomp program returns for `data` (the kernel's `struct
    /// seccomp_data`: nr, arch, instruction pointer, six arguments), and how many of its
    /// instructions ran. Panics on an instruction seccomp does not allow.
    fn run(prog: &[libc::sock_filter], data: &[u8; 64]) -> (u32, usize) {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let (mut pc, mut steps) = (0usize, 0usize);
        loop {
            let i = prog[pc];
            let k = i.k as usize;
            steps += 1;
            pc += 1;
            let src = if i.code & 0x08 != 0 { x } else { i.k };
            match (i.code & 0x07, i.code & 0xf8) {
                (0x00, 0x20) => a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap()),
                (0x00, 0x00) => a = i.k,
                (0x00, 0x60) => a = mem[k],
                (0x01, 0x00) => x = i.k,
                (0x01, 0x60) => x = mem[k],
                (0x02, _) => mem[k] = a,
                (0x03, _) => mem[k] = x,
                (0x04, op) => {
                    a = match op & 0xf0 {
                        0x00 => a.wrapping_add(src),
                        0x10 => a.wrapping_sub(src),
                        0x40 => a | src,
                        0x50 => a & src,
                        0x60 => a << src,
                        0x70 => a >> src,
                        o => panic!("ALU op {o:#x}"),
                    }
                }
                (0x05, op) => {
                    let taken = match op & 0xf0 {
                        0x00 => {
                            pc += k;
                            continue;
                        }
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        o => panic!("JMP op {o:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                (0x06, rval) => return (if rval & 0x18 == 0x10 { a } else { i.k }, steps),
                (0x07, 0x00) => x = a,
                (0x07, 0x80) => a = x,
                (class, mode) => panic!("instruction {:#x} (class {class}, {mode:#x})", i.code),
            }
        }
    }

    fn seccomp_data(arch: u32, nr: u32, arg0: u64) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        d[16..24].copy_from_slice(&arg0.to_ne_bytes());
        d
    }

    #[test]
    fn the_binary_tree_decides_every_call_as_the_chain_does_in_far_fewer_steps() {
        for extra in [&[][..], &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"][..]] {
            let profile = default_profile(&caps(extra));
            let tree = compile_for_test(&profile);
            let mut ctx = context(&profile).unwrap();
            ctx.set_ctl_optimize(1).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("chain.bpf");
            ctx.export_bpf(fs::File::create(&path).unwrap()).unwrap();
            let chain = read_program(&path).unwrap();
            assert_ne!(bytes(&tree), bytes(&chain), "the layout did not change");

            // x86_64, x32 (x86_64 numbers with bit 30 set), i386, and an architecture the
            // profile does not name; arguments that the rules on clone, personality and
            // socket compare, and others.
            const X32: u32 = 0x4000_0000;
            let cases = [
                (0xc000_003e, 0..=470),
                (0xc000_003e, X32..=X32 + 560),
                (0x4000_0003, 0..=460),
                (0xdead_beef, 0..=3),
            ];
            let (mut worst_tree, mut worst_chain, mut checked) = (0, 0, 0);
            for (arch, nrs) in cases {
                for nr in nrs {
                    for arg0 in [
                        0u64,
                        8,
                        16,
                        40,
                        0x2_0008,
                        0x1000_0000,
                        0x7e02_0000,
                        u64::MAX,
                    ] {
                        let data = seccomp_data(arch, nr, arg0);
                        let (verdict, t) = run(&tree, &data);
                        let (expected, c) = run(&chain, &data);
                        assert_eq!(verdict, expected, "arch {arch:#x} nr {nr} arg0 {arg0:#x}");
                        worst_tree = worst_tree.max(t);
                        worst_chain = worst_chain.max(c);
                        checked += 1;
                    }
                }
            }
            assert!(checked > 10_000);
            // The interpreter sees the profile: read is allowed everywhere, unshare only with
            // CAP_SYS_ADMIN (EPERM otherwise), a foreign architecture is killed.
            let verdict = |arch, nr| run(&tree, &seccomp_data(arch, nr, 0)).0;
            assert_eq!(verdict(0xc000_003e, 0), 0x7fff_0000);
            let unshare = if extra.is_empty() {
                0x0005_0001
            } else {
                0x7fff_0000
            };
            assert_eq!(verdict(0xc000_003e, 272), unshare);
            assert_ne!(verdict(0xdead_beef, 0), 0x7fff_0000);
            eprintln!(
                "{extra:?}: worst {worst_tree} steps in the tree, {worst_chain} in the chain"
            );
            assert!(
                worst_tree * 4 < worst_chain,
                "{worst_tree} vs {worst_chain}"
            );
        }
    }

    fn bytes(p: &[libc::sock_filter]) -> Vec<(u16, u8, u8, u32)> {
        p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    #[test]
    fn the_profile_leaves_the_spec_and_cap_sys_admin_is_borrowed_only_where_it_is_lost_at_exec() {
        let dir = tempfile::tempdir().unwrap();
        let names = caps(&[]);
        let mut s = spec(&names, Some(default_profile(&names)), false);
        let filter = take_from_spec(&mut s, dir.path()).unwrap().unwrap();
        assert!(filter.drop_sys_admin);
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());
        let a = s.annotations().clone().unwrap();
        let key = &a[FILTER_ANNOTATION];
        assert!(dir.path().join(format!("{key}.bpf")).is_file());
        assert_eq!(a[BORROWED_ANNOTATION], "CAP_SYS_ADMIN");
        let c = sets(&s);
        for set in [c.effective(), c.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        // Never where it would survive execve.
        for set in [c.bounding(), c.inheritable(), c.ambient()] {
            assert!(!set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        assert_eq!(c.bounding().as_ref().unwrap(), &cap_set(&names));

        // With no_new_privileges the kernel needs no capability; with CAP_SYS_ADMIN granted
        // there is nothing to borrow or drop.
        for (names, nnp) in [(caps(&[]), true), (caps(&["CAP_SYS_ADMIN"]), false)] {
            let mut s = spec(&names, Some(default_profile(&names)), nnp);
            let before = sets(&s);
            let filter = take_from_spec(&mut s, dir.path()).unwrap().unwrap();
            assert!(!filter.drop_sys_admin);
            assert_eq!(sets(&s), before);
            let a = s.annotations().clone().unwrap();
            assert!(!a.contains_key(BORROWED_ANNOTATION));
        }
    }

    #[test]
    fn profiles_the_runtime_must_load_stay_in_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let names = caps(&[]);
        let mut s = spec(&names, None, false);
        assert!(take_from_spec(&mut s, dir.path()).unwrap().is_none());
        assert!(s.annotations().is_none());
        assert_eq!(sets(&s), sets(&spec(&names, None, false)));

        let mut flagged = default_profile(&names);
        flagged.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]));
        let mut notify = default_profile(&names);
        notify.set_default_action(LinuxSeccompAction::ScmpActNotify);
        let mut listener = default_profile(&names);
        listener.set_listener_path(Some("/run/l.sock".into()));
        for p in [flagged, notify, listener] {
            assert!(!can_precompile(&p));
            let mut s = spec(&names, Some(p.clone()), false);
            assert!(take_from_spec(&mut s, dir.path()).unwrap().is_none());
            assert_eq!(s.linux().as_ref().unwrap().seccomp().as_ref(), Some(&p));
        }
        assert!(can_precompile(&default_profile(&names)));
    }

    #[test]
    fn a_compiled_filter_is_read_from_the_cache_and_a_damaged_one_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let names = caps(&[]);
        let profile = default_profile(&names);
        let path = dir.path().join(format!("{}.bpf", key(&profile)));
        // A stand-in program (one "return allow"): if the cache is read, this comes back.
        let ret_allow = [0x06u8, 0, 0, 0, 0, 0, 0xff, 0x7f];
        fs::write(&path, ret_allow).unwrap();
        let mut s = spec(&names, Some(profile.clone()), false);
        let filter = take_from_spec(&mut s, dir.path()).unwrap().unwrap();
        assert_eq!(filter.program.len(), 1);
        assert_eq!(filter.program[0].k, 0x7fff_0000);

        fs::write(&path, [1u8, 2, 3]).unwrap();
        let err = read_program(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("3 bytes"), "{err}");
        let mut s = spec(&names, Some(profile.clone()), false);
        let filter = take_from_spec(&mut s, dir.path()).unwrap().unwrap();
        assert_eq!(bytes(&filter.program), bytes(&compile_for_test(&profile)));
        assert_eq!(read_program(&path).unwrap().len(), filter.program.len());
    }

    #[test]
    fn exec_gets_the_containers_filter_and_borrows_only_when_the_container_did() {
        let dir = tempfile::tempdir().unwrap();
        let names = caps(&[]);
        let mut s = spec(&names, Some(default_profile(&names)), false);
        take_from_spec(&mut s, dir.path()).unwrap().unwrap();
        let process = |s: &Spec| s.process().clone().unwrap();

        let mut p = process(&s);
        let f = for_exec(&s, &mut p, false, dir.path()).unwrap().unwrap();
        assert!(f.drop_sys_admin && !f.program.is_empty());
        let eff = p
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap();
        assert!(eff.contains(&Capability::SysAdmin));

        // --privileged: every capability in its own right, nothing dropped after the load.
        let mut p = process(&s);
        let f = for_exec(&s, &mut p, true, dir.path()).unwrap().unwrap();
        assert!(!f.drop_sys_admin);

        // A container without a precompiled filter: nothing for exec either.
        let plain = spec(&names, None, false);
        let mut p = process(&plain);
        assert!(
            for_exec(&plain, &mut p, false, dir.path())
                .unwrap()
                .is_none()
        );

        // The cache is gone (the run tmpfs was unmounted under a running container): an
        // error, never an exec without the filter.
        fs::remove_dir_all(dir.path()).unwrap();
        let mut p = process(&s);
        assert!(for_exec(&s, &mut p, false, dir.path()).is_err());
    }
}
