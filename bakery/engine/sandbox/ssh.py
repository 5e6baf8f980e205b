"""SSH agents for ``RUN --mount=type=ssh``, from the targets' ``ssh``
attribute (buildx's ``--ssh``):

* ``default`` (an id without paths): the agent at ``$SSH_AUTH_SOCK``;
* ``id=/path/to/agent.sock``: that agent socket;
* ``id=/path/key[,/path/key2]``: a private ``ssh-agent`` that bakery starts
  for the run (in a 0700 directory), holding those keys, stopped and removed
  when the run ends.

A step's ssh mount is the agent socket bound at its target
(``/run/buildkit/ssh_agent.N`` by default), and ``SSH_AUTH_SOCK`` points at
the first one unless the step's environment sets it (as BuildKit does).  An
id that was not forwarded is an error when the mount is ``required``, else
the mount is left out, as BuildKit does.  Only the socket is shared: keys
never reach a layer, a cache key or a log.

Example::

    with SSHAgents.start(plan_ssh([("default", ()), ("deploy", ("/k/id_ed25519",))],
                                  os.environ)) as agents:
        agents.sockets["deploy"]   # the private agent's socket
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from bakery.errors import BakeryError

__all__ = ["SSHAgents", "plan_ssh", "ssh_env"]

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
