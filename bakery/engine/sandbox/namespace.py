"""The fallback sandbox when no OCI runtime is installed: Linux namespaces
set up by a small Python helper (``_nschild.py``: unshare(2), mount(2),
pivot_root(2) through ctypes).

Same as RuncSandbox: PID, mount, UTS, IPC and (unless ``host``) network
namespaces with only loopback up; /proc, a tmpfs /dev with null, zero, full,
random, urandom and tty, /dev/pts, /dev/shm of ``shm_size``, /dev/mqueue, a
read-only /sys; BuildKit's /etc/hosts and /etc/resolv.conf; the run's
mounts; Docker's masked and read-only paths; Docker's default capability
bounding set; rlimits; the user resolved from the rootfs; output streaming,
cancellation and cleanup.

What it does NOT isolate or limit (use runc for that):

* no cgroups: no device cgroup (a root process keeping CAP_MKNOD could
  create and open device nodes of the host), no memory/CPU/pids limits, and
  ``runc kill --all``-style cgroup kills (the PID namespace is killed
  through its pid 1 instead);
* no seccomp filter, no AppArmor/SELinux profile;
* as root, no user namespace (root in the sandbox is root on the host, only
  with fewer capabilities); not as root, a user namespace that maps the
  invoking user to root (rootless.py), devices bound from the host;
* no cgroup mount at /sys/fs/cgroup.

Secrets in the environment (``secret_env``) reach the helper through a pipe
and are never written to a file.

If bakery is killed (SIGKILL), nothing of the run survives it: the helper
and the PID namespace's init have parent-death signals (the init's death
kills the rest of the namespace), and a reaper shell per run (runc.py's,
with its own script) kills the helper's process group and removes the run's
private directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from bakery.errors import BakeryError

from .common import OutputPump, prepare, wait_process
from .oci import build_oci_config, check_spec, network_notes, process_env
from .rootless import check_user, current_idmap, host_userns_problem, rootless_config
from .runc import _hint_for, _Reaper, host_network_error, platform_notes
from .spec import OutputCallback, RunResult, RunSpec, SandboxCancelled, SandboxTimeout

__all__ = ["NamespaceSandbox", "namespace_support"]

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nschild.py")


def namespace_support() -> Optional[str]:
    """None when this process can create the namespaces, else why not."""
    if not sys.platform.startswith("linux"):
        return "namespaces need Linux"
    if os.geteuid() != 0:
        problem = host_userns_problem()
        if problem is not None:
            return f"not root, and rootless runs need user namespaces: {problem}"
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            return f"the kernel has no {ns} namespaces"
    return None


class NamespaceSandbox:
    """RUN steps in namespaces made by a Python helper (needs root)."""

    name = "namespace"

    def __init__(self, allow_network_host: bool = False, tmp_dir: Optional[str] = None,
                 state_dir: Optional[str] = None, python: Optional[str] = None):
        self.allow_network_host = allow_network_host
        self.tmp_dir = tmp_dir
        self.state_dir = state_dir
        self.python = python or sys.executable
        # not root: a user namespace with the invoking user as root (rootless.py)
        self.idmap = current_idmap()

    def __repr__(self) -> str:
        return "NamespaceSandbox()"

    def _teardown(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            # the helper and pid 1 share a process group; pid 1 also has a
            # parent-death signal, and its death empties the PID namespace
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def run(self, spec: RunSpec, stdout_cb: Optional[OutputCallback] = None,
            cancel: Optional[Any] = None) -> RunResult:
        check_spec(spec)
        if spec.network == "host" and not self.allow_network_host:
            raise host_network_error()
        reason = namespace_support()
        if reason is not None:
            raise BakeryError(f"cannot run in a namespace sandbox: {reason}")
        notes = network_notes(spec) + platform_notes(spec.platform)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            prep = prepare(spec, stack, self.tmp_dir, self.state_dir)
            env = process_env(spec, prep.user, with_secrets=True)
            config = build_oci_config(spec, prep.user, env, prep.hosts_path, prep.resolv_path,
                                      prep.mount_sources, with_cgroup=False)
            if self.idmap is not None:
                check_user(prep.user, spec.user, self.idmap)
                config = rootless_config(config, self.idmap)
            data = json.dumps(config).encode()
            del env, config

            cfg_r, cfg_w = os.pipe()
            st_r, st_w = os.pipe()
            fds = [cfg_r, cfg_w, st_r, st_w]

            def close_fds() -> None:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                fds.clear()

            stack.callback(close_fds)
            proc = subprocess.Popen(
                [self.python, "-I", "-S", _CHILD, str(cfg_r), str(st_w), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                close_fds=True, pass_fds=(cfg_r, st_w), start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
            assert proc.stdout is not None
            # if bakery dies without cleaning up (SIGKILL), the reaper kills
            # the helper's process group (should the parent-death signals
            # not have) and removes the run's private directories (secrets
            # in memdir); a clean end dismisses it, after the teardown
            reaper = _Reaper("", "", "", proc.pid, [prep.workdir, prep.memdir],
                             script=_NS_REAPER, args=[str(proc.pid), str(os.getpid())])
            stack.callback(reaper.dismiss)
            stack.callback(proc.stdout.close)
            pump = OutputPump(proc.stdout.fileno(), stdout_cb)
            stack.callback(pump.join)
            stack.callback(self._teardown, proc)
            for fd in (cfg_r, st_w):
                os.close(fd)
                fds.remove(fd)
            writer = threading.Thread(target=_feed, args=(cfg_w, data), daemon=True)
            fds.remove(cfg_w)  # the writer closes it
            writer.start()
            del data

            rc, why = wait_process(proc, cancel, spec.timeout, started)
            if rc is None:
                self._teardown(proc)
                if why == "cancel":
                    raise SandboxCancelled("the run was cancelled")
                raise SandboxTimeout(
                    f"process \"{' '.join(spec.args)}\" did not finish within {spec.timeout:g}s",
                    hint="raise the step's timeout")
            writer.join(5)
            pump.join()
            if pump.error is not None:
                raise pump.error
            os.set_blocking(st_r, False)
            try:
                status = os.read(st_r, 65536).decode("utf-8", "replace").strip()
            except BlockingIOError:
                status = ""
            if status:
                raise BakeryError(status, hint=_hint_for(status))
            return RunResult(exit_code=rc, output=pump.tail,
                             duration=time.monotonic() - started, notes=tuple(notes))
        raise AssertionError("unreachable")  # pragma: no cover


# The namespace sandbox's reaper (see runc._REAPER for the protocol): on
# bakery's death, SIGKILL the helper's process group if the pid is still our
# helper (its argv holds _nschild.py and bakery's pid), then remove the run's
# private directories.  The PID namespace's init is in that group; its death
# kills the rest of the namespace.
_NS_REAPER = r"""
IFS= read -r line
[ "$line" = done ] && exit 0
pid=$1 parent=$2
shift 2
if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "_nschild.py [0-9]* [0-9]* $parent "; then
  kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
fi
rm -rf -- "$@"
"""


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
