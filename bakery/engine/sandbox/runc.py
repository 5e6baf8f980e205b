"""Run a process with an OCI runtime (runc, or crun), as BuildKit does.

Each run gets a private bundle (config.json, hosts, resolv.conf, the
runtime's log) in a 0700 temporary directory and a private runtime state
root (``--root``) on tmpfs, and ends with ``runc delete -f`` and the removal
of both, whatever happens.

Secrets given as environment variables (``RunSpec.secret_env``) never reach
the disk: with runc, config.json is then a FIFO the runtime reads the spec
from (runc opens it exactly once), so no spec file with the values exists.
crun reads config.json more than once, so with crun the spec is a 0600 file
unlinked as soon as the container exists (crun keeps its own copy in its
state directory, which is on tmpfs and deleted with the container).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional

from bakery.errors import BakeryError

from .common import OutputPump, prepare, wait_process
from .oci import build_oci_config, check_spec, network_notes, process_env
from .rootless import check_user, current_idmap, rootless_config
from .spec import OutputCallback, RunResult, RunSpec, SandboxCancelled, SandboxTimeout

__all__ = ["RuncSandbox", "find_runtime", "host_network_error", "platform_notes"]

_SEARCH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find_runtime(name: str) -> Optional[str]:
    """The path of an OCI runtime binary, looking beyond PATH (runc lives in
    /usr/sbin on Debian, which a non-login PATH may lack)."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SEARCH:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def host_network_error() -> BakeryError:
    return BakeryError(
        'network mode "host" is not allowed',
        hint="grant the network.host entitlement (--allow network.host)",
    )


def _host_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def platform_notes(platform: str) -> List[str]:
    """A note when ``platform`` is not the host's: there is no emulation
    set up by bakery; foreign binaries run only through binfmt_misc."""
    if not platform:
        return []
    parts = platform.split("/")
    arch = parts[1] if len(parts) > 1 else parts[0]
    if arch and arch != _host_arch():
        return [f"running {platform} on a linux/{_host_arch()} host: bakery sets up no "
                "emulation; this works only if binfmt_misc has a handler (qemu-user-static)"]
    return []


class RuncSandbox:
    """RUN steps in an OCI runtime container (needs root)."""

    def __init__(self, runtime: str = "runc", allow_network_host: bool = False,
                 tmp_dir: Optional[str] = None, state_dir: Optional[str] = None):
        path = runtime if os.path.isabs(runtime) else find_runtime(runtime)
        if path is None:
            raise BakeryError(f"OCI runtime {runtime} not found",
                              hint="install runc (apt-get install runc)")
        self.runtime = path
        self.kind = "crun" if os.path.basename(path).startswith("crun") else "runc"
        self.name = self.kind
        self.allow_network_host = allow_network_host
        self.tmp_dir = tmp_dir
        self.state_dir = state_dir
        # not root: a user namespace with the invoking user as root (rootless.py)
        self.idmap = current_idmap()

    def __repr__(self) -> str:
        return f"RuncSandbox({self.runtime!r})"

    def version(self) -> str:
        try:
            out = subprocess.run([self.runtime, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
        first = out.splitlines()[0] if out else ""
        return first.split()[-1] if first else ""

    # -- runtime commands ----------------------------------------------------

    def _global(self, root: str, log: Optional[str] = None) -> List[str]:
        cmd = [self.runtime, "--root", root]
        if self.idmap is not None and self.kind == "runc" and os.geteuid() != 0:
            # (root of a re-executed namespace writes the maps itself, without newuidmap)
            cmd += ["--rootless", "true"]
        if log is not None:
            if self.kind == "crun":
                cmd += [f"--log=file:{log}", "--log-format=json"]
            else:
                cmd += ["--log", log, "--log-format", "json"]
        return cmd

    def _quiet(self, cmd: List[str], timeout: float = 10.0) -> bool:
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0

    def _teardown(self, proc: Optional[subprocess.Popen], root: str, cid: str) -> None:
        """Kill the container's process tree and delete its state."""
        state = os.path.join(root, cid)
        deadline = time.monotonic() + 5
        while proc is not None and proc.poll() is None and time.monotonic() < deadline:
            # init is pid 1 of the container's pid namespace: killing it
            # kills everything in it; --all also signals the whole cgroup.
            # Before the runtime has created the container there is nothing
            # to kill yet: poll until there is, or until runc gives up.
            if os.path.exists(state) and not self._quiet(
                    [*self._global(root), "kill", "--all", cid, "KILL"]):
                self._quiet([*self._global(root), "kill", cid, "KILL"])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if os.path.exists(state):
            self._quiet([*self._global(root), "delete", "-f", cid], timeout=30)

    # -- run -------------------------------------------------------------------

    def run(self, spec: RunSpec, stdout_cb: Optional[OutputCallback] = None,
            cancel: Optional[Any] = None) -> RunResult:
        check_spec(spec)
        if spec.network == "host" and not self.allow_network_host:
            raise host_network_error()
        notes = network_notes(spec) + platform_notes(spec.platform)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            prep = prepare(spec, stack, self.tmp_dir, self.state_dir)
            bundle = os.path.join(prep.workdir, "bundle")
            os.mkdir(bundle, 0o700)
            state_root = os.path.join(prep.memdir, "state")
            os.mkdir(state_root, 0o700)
            log = os.path.join(prep.workdir, "runtime.log")
            cid = "bakery-" + secrets.token_hex(8)
            env = process_env(spec, prep.user, with_secrets=True)
            config = build_oci_config(spec, prep.user, env, prep.hosts_path, prep.resolv_path,
                                      prep.mount_sources)
            if self.idmap is not None:
                check_user(prep.user, spec.user, self.idmap)
                config = rootless_config(config, self.idmap)
            data = json.dumps(config, indent=1).encode()
            del env, config
            cfg_path = os.path.join(bundle, "config.json")
            feeder: Optional[_FifoFeeder] = None
            unlink_after_start = False
            if spec.secret_env and self.kind == "runc":
                os.mkfifo(cfg_path, 0o600)
                feeder = _FifoFeeder(cfg_path, data)
                stack.callback(feeder.stop)
            else:
                fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                unlink_after_start = bool(spec.secret_env)
            del data

            cmd = [*self._global(state_root, log), "run", "--bundle", bundle, cid]
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=bundle, close_fds=True, start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
            assert proc.stdout is not None
            # undone in reverse: kill and delete the container, then drain
            # the output, then close the pipe, then dismiss the reaper
            reaper = _Reaper(self.runtime, state_root, cid, proc.pid,
                             [prep.workdir, prep.memdir])
            stack.callback(reaper.dismiss)
            stack.callback(proc.stdout.close)
            pump = OutputPump(proc.stdout.fileno(), stdout_cb)
            stack.callback(pump.join)
            stack.callback(self._teardown, proc, state_root, cid)
            if feeder is not None:
                feeder.start()
            if unlink_after_start:
                _unlink_when_started(cfg_path, os.path.join(state_root, cid), proc)

            rc, why = wait_process(proc, cancel, spec.timeout, started)
            if rc is None:
                self._teardown(proc, state_root, cid)
                if why == "cancel":
                    raise SandboxCancelled("the run was cancelled")
                raise SandboxTimeout(
                    f"process \"{' '.join(spec.args)}\" did not finish within {spec.timeout:g}s",
                    hint="raise the step's timeout")
            pump.join()
            if pump.error is not None:
                raise pump.error
            message = _runtime_error(log)
            if message is not None:
                raise BakeryError(message, hint=_hint_for(message))
            return RunResult(exit_code=rc, output=pump.tail,
                             duration=time.monotonic() - started, notes=tuple(notes))
        raise AssertionError("unreachable")  # pragma: no cover


# The reaper: if bakery dies without cleaning up (SIGKILL, OOM kill), its
# end of the pipe closes and the reaper kills the container (the foreground
# runtime process first, then everything in the container's cgroup), deletes
# it and removes the run's private directories.  A clean end writes "done".
# (`kill -KILL "-$pid"`: dash's kill rejects "--" before a process group.)
_REAPER = r"""
IFS= read -r line
[ "$line" = done ] && exit 0
rt=$1 root=$2 cid=$3 pid=$4
shift 4
if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$cid"; then
  kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
fi
"$rt" --root "$root" kill --all "$cid" KILL >/dev/null 2>&1
"$rt" --root "$root" delete -f "$cid" >/dev/null 2>&1
rm -rf -- "$@"
"""


class _Reaper:
    """A /bin/sh watching bakery's end of a pipe for one container (see
    _REAPER): the container never outlives a killed bakery.  In its own
    session, so a terminal's Ctrl-C (handled by bakery) does not reach it."""

    def __init__(self, runtime: str, root: str, cid: str, pid: int, dirs: List[str],
                 script: str = _REAPER, args: Optional[List[str]] = None):
        # ``script`` and ``args`` (instead of runtime, root, cid and pid):
        # another watcher with the same protocol (the namespace sandbox's)
        self.proc: Optional[subprocess.Popen] = None
        sh = "/bin/sh" if os.path.exists("/bin/sh") else shutil.which("sh")
        if sh is None:  # pragma: no cover - every Linux has one
            return
        argv = [runtime, root, cid, str(pid)] if args is None else list(args)
        self.proc = subprocess.Popen(
            [sh, "-c", script, "bakery-reaper", *argv, *dirs],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        )

    def dismiss(self) -> None:
        """Bakery cleaned up itself: the reaper exits doing nothing."""
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write(b"done\n")
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait(5)


class _FifoFeeder:
    """Writes the spec into the config.json FIFO once the runtime opens it."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self.data = data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bakery-spec-fifo", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        fd = -1
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.002)
        if fd < 0:
            return
        try:
            os.set_blocking(fd, True)
            view = memoryview(self.data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            pass
        finally:
            os.close(fd)
            self.data = b""

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.data = b""


def _unlink_when_started(cfg_path: str, state: str, proc: subprocess.Popen) -> None:
    """Remove config.json once the runtime has created the container."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(state):
            break
        time.sleep(0.002)
    with contextlib.suppress(OSError):
        os.unlink(cfg_path)


def _runtime_error(log: str) -> Optional[str]:
    """The runtime's own error (not the process's), from its JSON log."""
    try:
        st = os.lstat(log)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    errors: List[str] = []
    for line in lines:
        try:
            entry: Dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal") and entry.get("msg"):
            errors.append(str(entry["msg"]))
    return errors[-1] if errors else None


def _hint_for(message: str) -> Optional[str]:
    if "executable file not found" in message:
        return "install the program in an earlier step, or give its absolute path"
    if "no such file or directory" in message and "exec" in message:
        return "check the program path (and the #! interpreter of a script)"
    if "exec format error" in message:
        return "the program is for another architecture"
    return None
