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


def test_socket_relay_forwards_connections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import stat
    import threading

    from bakery.engine.sandbox.ssh import SocketRelay

    upstream = str(tmp_path / "up.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(upstream)
    server.listen(4)

    def echo() -> None:
        for _ in range(2):
            c, _ = server.accept()
            with c:
                while True:
                    data = c.recv(100)
                    if not data:
                        break
                    c.sendall(b"agent:" + data)

    threading.Thread(target=echo, daemon=True).start()
    with SocketRelay(upstream, str(tmp_path), mode=0o660) as relay:
        st = os.stat(relay.path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert stat.S_IMODE(os.stat(relay.dir).st_mode) == 0o700
        for msg in (b"one", b"two"):
            c = socket.socket(socket.AF_UNIX)
            c.connect(relay.path)
            c.sendall(msg)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                data = c.recv(100)
                if not data:
                    break
                got += data
            c.close()
            assert got == b"agent:" + msg
        d = relay.dir
    assert not os.path.exists(d)
    server.close()


def test_socket_relay_rootless_ids(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.engine.sandbox.ssh import SocketRelay

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BakeryError, match="rootless step has only uid 0"):
        SocketRelay(str(tmp_path / "x"), str(tmp_path), uid=1000)
