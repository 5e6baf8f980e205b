"""ssh forwarding's pure parts: what each ssh id forwards, and
SSH_AUTH_SOCK in the step's environment."""

from __future__ import annotations

import os
import socket

import pytest

from bakery.engine.sandbox.ssh import SSHAgents, plan_ssh, ssh_env
from bakery.errors import BakeryError


@pytest.fixture()
def sock(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "agent.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    yield path
    s.close()


def test_default_is_the_agent_of_the_environment(sock: str) -> None:
    assert plan_ssh([("default", ())], {"SSH_AUTH_SOCK": sock}) == {"default": ("socket", [sock])}
    assert plan_ssh([("", ())], {"SSH_AUTH_SOCK": sock}) == {"default": ("socket", [sock])}


def test_no_agent_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError, match="SSH_AUTH_SOCK is not set") as e:
        plan_ssh([("default", ())], {})
    assert e.value.hint and "ssh-agent" in e.value.hint
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(BakeryError, match="is not a socket"):
        plan_ssh([("default", ())], {"SSH_AUTH_SOCK": str(f)})


def test_socket_and_key_paths(sock: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    k1.write_text("key")
    k2.write_text("key")
    plan = plan_ssh([("agent", (sock,)), ("deploy", (str(k1), str(k2)))], {})
    assert plan == {"agent": ("socket", [sock]), "deploy": ("keys", [str(k1), str(k2)])}
    with pytest.raises(BakeryError, match="not a key file or agent socket"):
        plan_ssh([("x", (str(tmp_path / "missing"),))], {})
    with pytest.raises(BakeryError, match="is an agent socket"):
        plan_ssh([("x", (str(k1), sock))], {})


def test_ssh_env() -> None:
    assert ssh_env(["A=1"], "/run/buildkit/ssh_agent.0") == ["A=1", "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"]
    assert ssh_env(["SSH_AUTH_SOCK=/mine"], "/run/buildkit/ssh_agent.0") == ["SSH_AUTH_SOCK=/mine"]
    assert ssh_env(["A=1"], None) == ["A=1"]


def test_sockets_are_forwarded_as_they_are(sock: str) -> None:
    with SSHAgents.start({"default": ("socket", [sock])}) as agents:
        assert agents.sockets == {"default": sock}
    assert os.path.exists(sock)  # not the run's to remove
