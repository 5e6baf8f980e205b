"""SSH agents for ``RUN --mount=type=ssh``, from the targets' ``ssh``
attribute (buildx's ``--ssh``):

* ``default`` (an id without paths): the agent at ``$SSH_AUTH_SOCK``;
* ``id=/path/to/agent.sock``: that agent socket;
* ``id=/path/key[,/path/key2]``: a private ``ssh-agent`` that bakery starts
  for the run (in a 0700 directory), holding those keys, stopped and removed
  when the run ends.

A step's ssh mount is a :class:`SocketRelay`: a socket of the mount's
uid/gid/mode (default 0:0, 0600, as BuildKit's) in a private directory,
bound at its target (``/run/buildkit/ssh_agent.N`` by default), whose
connections are relayed to the agent; ``SSH_AUTH_SOCK`` points at the first
ssh mount unless the step's environment sets it (as BuildKit does).  An
id that was not forwarded is an error when the mount is ``required``, else
the mount is left out, as BuildKit does.  Only the socket is shared: keys
never reach a layer, a cache key or a log.

Example::

    with SSHAgents.start(plan_ssh([("default", ()), ("deploy", ("/k/id_ed25519",))],
                                  os.environ)) as agents:
        agents.sockets["deploy"]   # the private agent's socket
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.errors import BakeryError

__all__ = ["SSHAgents", "SocketRelay", "plan_ssh", "ssh_env"]

#: id -> ("socket", [path]) | ("keys", [paths])
Plan = Dict[str, Tuple[str, List[str]]]


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def plan_ssh(entries: Sequence[Tuple[str, Sequence[str]]], environ: Mapping[str, str]) -> Plan:
    """What to forward for each ssh id (later entries of an id win)."""
    plan: Plan = {}
    for raw_id, paths in entries:
        sid = raw_id or "default"
        if not paths:
            sock = environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise BakeryError(f"ssh {sid!r}: SSH_AUTH_SOCK is not set, so there is no agent to forward",
                                  hint="start one (eval $(ssh-agent); ssh-add), or give key files: "
                                       f'ssh = ["{sid}=/path/to/key"]')
            if not _is_socket(sock):
                raise BakeryError(f"ssh {sid!r}: SSH_AUTH_SOCK={sock} is not a socket")
            plan[sid] = ("socket", [sock])
            continue
        if len(paths) == 1 and _is_socket(paths[0]):
            plan[sid] = ("socket", [os.path.abspath(paths[0])])
            continue
        keys = []
        for p in paths:
            if _is_socket(p):
                raise BakeryError(f"ssh {sid!r}: {p} is an agent socket; give one socket or key files")
            if not os.path.isfile(p):
                raise BakeryError(f"ssh {sid!r}: {p} is not a key file or agent socket")
            keys.append(os.path.abspath(p))
        plan[sid] = ("keys", keys)
    return plan


def ssh_env(env: Sequence[str], first_target: Optional[str]) -> List[str]:
    """``env`` with ``SSH_AUTH_SOCK`` set to the first ssh mount's target
    unless it is set already (BuildKit's llb.Exec)."""
    out = list(env)
    if first_target and not any(e.partition("=")[0] == "SSH_AUTH_SOCK" for e in out):
        out.append(f"SSH_AUTH_SOCK={first_target}")
    return out


class SSHAgents:
    """The sockets of a run's ssh ids, with the private agents it started."""

    def __init__(self) -> None:
        self.sockets: Dict[str, str] = {}
        self._procs: List[subprocess.Popen] = []
        self._dirs: List[str] = []

    @classmethod
    def start(cls, plan: Plan, tmp_dir: Optional[str] = None) -> SSHAgents:
        agents = cls()
        try:
            for sid, (kind, paths) in sorted(plan.items()):
                if kind == "socket":
                    agents.sockets[sid] = paths[0]
                else:
                    agents.sockets[sid] = agents._agent_with(sid, paths, tmp_dir)
        except BaseException:
            agents.close()
            raise
        return agents

    def _agent_with(self, sid: str, keys: Sequence[str], tmp_dir: Optional[str]) -> str:
        agent, add = shutil.which("ssh-agent"), shutil.which("ssh-add")
        if agent is None or add is None:
            raise BakeryError(f"ssh {sid!r}: forwarding key files needs ssh-agent and ssh-add",
                              hint="apt-get install openssh-client")
        d = tempfile.mkdtemp(prefix="bakery-ssh-", dir=tmp_dir)
        self._dirs.append(d)
        sock = os.path.join(d, "agent.sock")
        proc = subprocess.Popen([agent, "-D", "-a", sock], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self._procs.append(proc)
        deadline = time.monotonic() + 10
        while not _is_socket(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise BakeryError(f"ssh {sid!r}: ssh-agent did not start" + (f": {err}" if err else ""))
            time.sleep(0.01)
        env = {"SSH_AUTH_SOCK": sock, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "SSH_ASKPASS_REQUIRE": "never", "DISPLAY": ""}
        for key in keys:
            r = subprocess.run([add, "-q", key], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                raise BakeryError(f"ssh {sid!r}: cannot load {key}: {r.stderr.strip() or r.returncode}",
                                  hint="key files must not need a passphrase; or forward an agent "
                                       "that holds the key")
        return sock

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        self._procs = []
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs = []

    def __enter__(self) -> SSHAgents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SocketRelay:
    """A socket for one ssh mount that relays each connection to
    ``upstream`` (the agent); owned by ``uid``:``gid`` with ``mode``, in a
    new 0700 directory under ``tmp_dir`` (default: the system's, as socket
    paths are limited to 108 bytes); :meth:`close` stops it and removes the
    directory."""

    def __init__(self, upstream: str, tmp_dir: Optional[str] = None, uid: int = 0, gid: int = 0,
                 mode: int = 0o600):
        if os.geteuid() != 0 and (uid or gid):
            raise BakeryError(f"ssh mount uid={uid},gid={gid} needs root (a rootless step has only "
                              "uid 0 and gid 0)", hint="drop uid/gid from the mount, or run bakery as root")
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="bakery-ssh-relay-", dir=tmp_dir)
        # 0700: only the runtime (root, or the rootless user) binds it; the
        # step reaches the socket through its mount, not through this path
        self.path = os.path.join(self.dir, "agent.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stop = threading.Event()
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        try:
            self._listener.bind(self.path)
            if os.geteuid() == 0:
                os.chown(self.path, uid, gid)
            os.chmod(self.path, mode)
            self._listener.listen(16)
        except BaseException:
            self._listener.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self._thread = threading.Thread(target=self._accept, name="bakery-ssh-relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                agent.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, agent]
            for a, b in ((client, agent), (agent, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SocketRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
