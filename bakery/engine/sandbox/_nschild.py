"""The namespace sandbox's helper process (standard library only, run by
path as ``python -I -S _nschild.py CONFIG_FD STATUS_FD``).

It reads an OCI-like config (see NamespaceSandbox) from CONFIG_FD, then:

1. unshare(2)s mount, UTS, IPC, PID (and network, unless host) namespaces
   and makes every mount private, so nothing propagates back to the host;
2. forks the process that becomes pid 1 of the new PID namespace, which
   mounts /proc, a minimal /dev, /sys, hosts/resolv.conf and the run's
   mounts into the rootfs, masks paths, pivot_root(2)s into it, drops
   capabilities outside Docker's default set, sets rlimits, switches user
   and execs the command (looked up in the process's PATH);
3. waits for it and exits with its code (128+N for signal N).

Setup and exec errors are written to STATUS_FD (close-on-exec, so a
successful exec leaves it empty).  The mounts live only in the new mount
namespace, which disappears with its last process; pid 1 has a parent-death
signal so killing the helper kills the whole PID namespace.
"""

import ctypes
import ctypes.util
import fcntl
import json
import os
import platform
import resource
import select
import signal
import socket
import stat
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24

_FLAGS = {
    "ro": MS_RDONLY, "rw": 0, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
    "bind": MS_BIND, "rbind": MS_BIND | MS_REC, "strictatime": MS_STRICTATIME,
    "relatime": MS_RELATIME, "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME,
}

CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
}

_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "armv7l": 218, "armv6l": 218,
               "i686": 217, "i386": 217, "ppc64le": 203, "ppc64": 203, "s390x": 217}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class SetupError(Exception):
    pass


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _b(s):
    return s.encode() if isinstance(s, str) else s


def mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(_b(source) if source else None, _b(target), _b(fstype) if fstype else None,
                       ctypes.c_ulong(flags), _b(data) if data else None),
           f"mount {fstype or 'bind'} {source or ''} on {target}")


def secure_join(root, path):
    pending = [p for p in path.split("/") if p][::-1]
    done = []  # type: list
    links = 0
    while pending:
        comp = pending.pop()
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, comp)
        try:
            st = os.lstat(cand)
        except OSError:
            done.append(comp)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise SetupError(f"too many symbolic links in {path}")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            pending.extend([p for p in target.split("/") if p][::-1])
        else:
            done.append(comp)
    return os.path.join(root, *done)


def _mkpoint(path, is_dir):
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if is_dir:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _parse_options(options):
    flags, data = 0, []
    for o in options:
        if o in _FLAGS:
            flags |= _FLAGS[o]
        else:
            data.append(o)
    return flags, ",".join(data)


def do_mount(rootfs, m, host_net):
    dest = secure_join(rootfs, m["destination"])
    flags, data = _parse_options(m.get("options", []))
    if m["type"] == "bind":
        src = m["source"]
        _mkpoint(dest, os.path.isdir(src))
        mount(src, dest, None, MS_BIND | (flags & MS_REC))
        extra = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if extra:
            mount(None, dest, None, MS_BIND | MS_REMOUNT | extra | locked_flags(dest))
        return
    _mkpoint(dest, True)
    if m["type"] == "sysfs":
        try:
            mount("sysfs", dest, "sysfs", flags, data)
        except SetupError:
            if not host_net:
                raise
            mount("/sys", dest, None, MS_BIND | MS_REC)
            mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        return
    mount(m["source"], dest, m["type"], flags, data)


def locked_flags(path):
    """The flags of the mount holding ``path`` that a remount must keep (in
    a user namespace the kernel refuses to clear them)."""
    f = os.statvfs(path).f_flag
    out = f & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if f & 4096:  # ST_RELATIME
        out |= MS_RELATIME
    return out & ~MS_RDONLY


def setup_dev(rootfs, devices, userns):
    dev = secure_join(rootfs, "/dev")
    for d in devices:
        p = os.path.join(dev, os.path.basename(d["path"]))
        if userns:  # no mknod in a user namespace: the host's device, bound
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o666))
            mount(d["path"], p, None, MS_BIND)
            continue
        os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(d["major"], d["minor"]))
        os.chmod(p, d.get("fileMode", 0o666))
    links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")]
    for target, name in links:
        p = os.path.join(dev, name)
        if not os.path.lexists(p):
            os.symlink(target, p)


def mask_paths(rootfs, masked, readonly):
    for path in masked:
        p = secure_join(rootfs, path)
        if not os.path.lexists(p):
            continue
        if os.path.isdir(p):
            mount("tmpfs", p, "tmpfs", MS_RDONLY)
        else:
            mount(os.path.join(rootfs, "dev/null"), p, None, MS_BIND)
    for path in readonly:
        p = secure_join(rootfs, path)
        if not os.path.lexists(p):
            continue
        mount(p, p, None, MS_BIND | MS_REC)
        mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def enter_root(rootfs):
    os.chdir(rootfs)
    nr = _PIVOT_ROOT.get(platform.machine())
    if nr is not None and _libc.syscall(nr, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    else:  # like runc --no-pivot
        mount(rootfs, "/", None, MS_MOVE)
        os.chroot(".")
    os.chdir("/")


def drop_caps(keep):
    keep_nums = {CAPS[c] for c in keep if c in CAPS}
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read().strip())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        if cap not in keep_nums:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    # effective, permitted and inheritable sets: the kept caps only
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capget(header, data), "capget")
    lo = sum(1 << c for c in keep_nums if c < 32)
    hi = sum(1 << (c - 32) for c in keep_nums if c >= 32)
    data[0], data[1], data[2] = data[0] & lo, data[1] & lo, 0
    data[3], data[4], data[5] = data[3] & hi, data[4] & hi, 0
    _check(_libc.capset(header, data), "capset")


_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


def set_rlimits(rlimits):
    for r in rlimits:
        num = _RLIMITS.get(r["type"])
        if num is None:
            raise SetupError(f"unsupported rlimit {r['type']}")
        conv = [resource.RLIM_INFINITY if v >= 2**63 else v for v in (r["soft"], r["hard"])]
        resource.setrlimit(num, (conv[0], conv[1]))


def look_path(name, env):
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise SetupError(f'exec: "{name}": stat {name}: {str(e.strerror).lower()}') from None
        if stat.S_ISDIR(st.st_mode) or not os.access(name, os.X_OK):
            raise SetupError(f'exec: "{name}": permission denied')
        return name
    path = ""
    for kv in env:
        if kv.startswith("PATH="):
            path = kv[5:]
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(cand, os.X_OK):
            return cand
    raise SetupError(f'exec: "{name}": executable file not found in $PATH')


def container_init(cfg, status_fd, alive_fd=None):
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if alive_fd is not None:
        # the helper died before the parent-death signal was set (getppid()
        # cannot tell: the parent is outside this PID namespace): its end of
        # the pipe is closed, so the read end is readable (EOF)
        if select.select([alive_fd], [], [], 0)[0]:
            os._exit(137)
        os.close(alive_fd)
    rootfs = cfg["root"]["path"]
    proc = cfg["process"]
    host_net = not any(n["type"] == "network" for n in cfg["linux"]["namespaces"])
    userns = any(n["type"] == "user" for n in cfg["linux"]["namespaces"])
    _check(_libc.sethostname(_b(cfg["hostname"]), len(_b(cfg["hostname"]))), "sethostname")
    if not host_net:
        loopback_up()
    mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    for m in cfg["mounts"]:
        do_mount(rootfs, m, host_net)
        if m["destination"] == "/dev":
            setup_dev(rootfs, cfg["linux"]["devices"], userns)
    mask_paths(rootfs, cfg["linux"]["maskedPaths"], cfg["linux"]["readonlyPaths"])
    enter_root(rootfs)
    os.chdir(proc["cwd"])
    set_rlimits(proc.get("rlimits", []))
    env = proc["env"]
    exe = look_path(proc["args"][0], env)
    drop_caps(proc["capabilities"]["bounding"])
    user = proc["user"]
    if not userns:  # setgroups is denied in a rootless user namespace
        os.setgroups(user.get("additionalGids", []))
    os.setgid(user["gid"])
    os.setuid(user["uid"])
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # cleared by the credential change
    envd = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored
    # across exec, so give the process the defaults (as runc does)
    for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ", "SIGINT", "SIGTERM", "SIGQUIT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.execve(exe, proc["args"], envd)
    except OSError as e:
        raise SetupError(f'exec: "{proc["args"][0]}": {str(e.strerror).lower()}') from None


def map_ids(uid_maps, gid_maps):
    """Write this process's uid/gid maps (an unprivileged process may map
    its own ids, once setgroups is denied)."""
    def fmt(maps):
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(fmt(uid_maps))
        with open("/proc/self/gid_map", "w") as f:
            f.write(fmt(gid_maps))
    except OSError as e:
        raise SetupError(f"writing the user namespace's id maps: {e.strerror}") from None


def main():
    cfg_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    # die with bakery: then pid 1 dies with us (its own parent-death signal)
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if len(sys.argv) > 3 and os.getppid() != int(sys.argv[3]):
        os._exit(137)
    os.set_inheritable(status_fd, False)
    chunks = []
    while True:
        b = os.read(cfg_fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(cfg_fd)
    cfg = json.loads(b"".join(chunks))
    chunks = []

    def fail(msg, code):
        try:
            os.write(status_fd, msg.encode())
        finally:
            os._exit(code)

    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID
    if any(n["type"] == "network" for n in cfg["linux"]["namespaces"]):
        flags |= CLONE_NEWNET
    userns = any(n["type"] == "user" for n in cfg["linux"]["namespaces"])
    if userns:
        flags |= CLONE_NEWUSER  # created first: the other namespaces are its
    try:
        _check(_libc.unshare(flags), "unshare")
        if userns:
            map_ids(cfg["linux"]["uidMappings"], cfg["linux"]["gidMappings"])
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except SetupError as e:
        fail(f"sandbox setup failed: {e}", 126)
    sys.stdout.flush()
    alive_r, alive_w = os.pipe()  # not inherited across exec
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        try:
            container_init(cfg, status_fd, alive_r)
        except SetupError as e:
            msg = str(e)
            fail(msg if msg.startswith("exec:") else f"sandbox setup failed: {msg}", 127)
        except BaseException as e:
            fail(f"sandbox setup failed: {type(e).__name__}: {e}", 126)
        os._exit(126)
    os.close(alive_r)  # alive_w stays open until this process ends
    cfg = None
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
