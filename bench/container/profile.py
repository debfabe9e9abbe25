#!/usr/bin/env python3
"""Where `berth container run --rm IMG true` spends its time, from `strace -f -ttt -T` output.

Usage: profile.py TRACE [TRACE...]   (one file per run; prints the median of each phase)

Phases are cut at syscalls that mark them (strace slows every syscall down, so the absolute
numbers are higher than hyperfine's; the shares are what to act on):
  cli: start -> TLS roots    the CLI process up to its first read of /etc/ssl/certs
  cli: TLS roots             first to last access under /etc/ssl/certs (root store loaded)
  cli: record -> spawn       rest of the CLI until it clones the shim (container record, fsyncs)
  shim: exec -> overlay      shim process start until its overlay mount() returned
  shim: etc files + bundle   until the bundle's config.json is renamed into place
  runtime create             libcontainer create: bundle written .. pidfd_open(init), split at
                             its clone, cgroup.procs writes, unshare(NEWNS), pivot_root and
                             the seccomp filter load
  runtime start              pidfd_open(init) .. successful execve of the command
  command runs               execve .. exit_group of the container's init
  exit -> umount             reaping, libcontainer delete, cgroup removal
  umount2 (overlay)          the overlay umount2() itself (syncs the upper fs)
  after umount -> shim exit  final state.json, --rm removal of the container dir
  shim exit -> cli exit      the CLI noticing and exiting
"""
import re
import statistics
import sys

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
DUR = re.compile(r"<(\d+\.\d+)>\s*$")
CALL = re.compile(r"^(?:<\.\.\. )?([a-z0-9_]+)[( ]")


def parse(path):
    """Yields (pid, t, name, text, dur) for every syscall line; resumed lines give the duration
    to the matching unfinished start."""
    events = []
    pending = {}
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, t, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if rest.startswith("+++") or rest.startswith("---"):
                events.append([pid, t, rest[:3], rest, 0.0])
                continue
            c = CALL.match(rest)
            if not c:
                continue
            name = c.group(1)
            d = DUR.search(rest)
            dur = float(d.group(1)) if d else 0.0
            if rest.startswith("<..."):
                ev = pending.pop((pid, name), None)
                if ev is not None:
                    ev[4] = dur
                    ev[3] += rest
                continue
            ev = [pid, t, name, rest, dur]
            events.append(ev)
            if "<unfinished ...>" in rest:
                pending[(pid, name)] = ev
    return events


def first(events, pred, after=0.0):
    for ev in events:
        if ev[1] >= after and pred(ev):
            return ev
    return None


def last(events, pred):
    found = None
    for ev in events:
        if pred(ev):
            found = ev
    return found


def phases(path):
    ev = parse(path)
    cli = ev[0][0]
    t0 = ev[0][1]
    shim_exec = first(ev, lambda e: e[2] == "execve" and '"__shim"' in e[3])
    if shim_exec is None:
        raise SystemExit(f"{path}: no shim execve found")
    shim = shim_exec[0]
    certs = [e for e in ev if e[0] == cli and "/etc/ssl/certs" in e[3]]
    spawn = first(ev, lambda e: e[0] == cli and e[2] in ("clone3", "clone", "vfork"))
    mount = first(ev, lambda e: e[0] == shim and e[2] == "mount" and '"overlay"' in e[3])
    bundle = last(
        ev,
        lambda e: e[0] == shim and e[2] == "rename" and "bundle/config.json" in e[3],
    )
    create = first(ev, lambda e: e[0] == shim and e[2] in ("clone3", "clone"), bundle[1])
    pidfd = first(ev, lambda e: e[0] == shim and e[2] == "pidfd_open", create[1])
    init = int(re.search(r"pidfd_open\((\d+)", pidfd[3]).group(1))
    ok = re.compile(r"= 0(\s|$)")
    exe = first(ev, lambda e: e[0] == init and e[2] == "execve" and ok.search(e[3]), pidfd[1])
    done = first(ev, lambda e: e[0] == init and e[2] == "exit_group", exe[1])
    umount = first(ev, lambda e: e[0] == shim and e[2] == "umount2" and "merged" in e[3], done[1])
    shim_exit = last(ev, lambda e: e[0] == shim and e[2] == "exit_group")
    cli_exit = last(ev, lambda e: e[0] == cli and e[2] == "exit_group")
    procs = [e[4] for e in ev if e[2] == "write" and e[1] >= create[1] and e[1] <= pidfd[1]
             and re.match(r'write\(\d+, "\d+", \d+\)', e[3])]
    fsyncs = [e for e in ev if e[2] in ("fsync", "fdatasync")]
    newns = first(ev, lambda e: e[2] == "unshare" and "CLONE_NEWNS" in e[3], create[1])
    pivot = first(ev, lambda e: e[2] == "pivot_root", create[1])
    seccomp = last(ev, lambda e: e[2] == "seccomp" and "SECCOMP_SET_MODE_FILTER, 0," in e[3])
    end = newns[1] if newns else pidfd[1]
    procs_ev = [e for e in ev if e[2] == "openat" and "cgroup.procs" in e[3]
                and create[1] <= e[1] <= end]

    def fsync_ms(a, b, pid):
        return sum(e[4] for e in fsyncs if e[0] == pid and a <= e[1] <= b) * 1000.0

    ms = lambda a, b: (b - a) * 1000.0  # noqa: E731
    umount_end = umount[1] + umount[4]
    out = [
        ("cli: start -> TLS roots", ms(t0, certs[0][1]) if certs else 0.0),
        ("cli: TLS roots", ms(certs[0][1], certs[-1][1]) if certs else 0.0),
        ("cli: record -> spawn", ms(certs[-1][1] if certs else t0, spawn[1])),
        ("shim: exec -> overlay", ms(spawn[1], mount[1] + mount[4])),
        ("shim: etc files + bundle", ms(mount[1] + mount[4], bundle[1])),
        ("runtime create", ms(bundle[1], pidfd[1])),
        ("  bundle -> clone (spec load, state)", ms(bundle[1], create[1])),
        ("  clone -> first cgroup.procs", ms(create[1], procs_ev[0][1]) if procs_ev else 0.0),
        ("  slowest cgroup.procs write", max(procs, default=0.0) * 1000.0),
        ("  cgroups -> CLONE_NEWNS", ms(procs_ev[-1][1], newns[1]) if procs_ev and newns else 0.0),
        ("  NEWNS -> pivot_root (rootfs mounts)", ms(newns[1], pivot[1]) if newns and pivot else 0.0),
        ("  pivot_root -> seccomp loaded", ms(pivot[1], seccomp[1]) if pivot and seccomp else 0.0),
        ("  seccomp -> created (pidfd)", ms(seccomp[1], pidfd[1]) if seccomp else 0.0),
        ("runtime start", ms(pidfd[1], exe[1])),
        ("command runs", ms(exe[1], done[1])),
        ("exit -> umount", ms(done[1], umount[1])),
        ("umount2 (overlay)", umount[4] * 1000.0),
        ("after umount -> shim exit", ms(umount_end, shim_exit[1])),
        ("shim exit -> cli exit", ms(shim_exit[1], cli_exit[1])),
        ("total", ms(t0, cli_exit[1])),
        ("  of which fsync", fsync_ms(umount_end, shim_exit[1], shim)),
        ("fsync calls (count)", float(len(fsyncs))),
        ("fsync time in the cli", fsync_ms(t0, cli_exit[1], cli)),
        ("fsync time in the shim", fsync_ms(t0, cli_exit[1], shim)),
        ("syscalls (count)", float(len(ev))),
    ]
    return out


def main():
    runs = [phases(p) for p in sys.argv[1:]]
    if not runs:
        raise SystemExit("usage: profile.py TRACE...")
    print(f"  {'phase (median of %d straced runs)' % len(runs):<38} {'ms':>8}")
    for i, (name, _) in enumerate(runs[0]):
        v = statistics.median(r[i][1] for r in runs)
        unit = "" if "count" in name else " ms"
        fmt = f"{v:8.0f}" if "count" in name else f"{v:8.1f}"
        print(f"  {name:<38} {fmt}{unit}")


if __name__ == "__main__":
    main()
