"""`bakery login` / `logout` argument handling (no registry needed for these)."""

from __future__ import annotations

import io
import json

import pytest

from bakery.cli import main


class _Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def _run(monkeypatch, capsys, tmp_path, *args: str, stdin: str = ""):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr("sys.stdin", _Stdin(stdin))
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args,msg", [
    (["login", "--password-stdin", "r.example"], "give the user name with --username"),
    (["login", "-u", "a", "r.example"], "pipe it in with --password-stdin"),
    (["login", "-u", "a", "-p", "x", "--password-stdin", "r.example"], "mutually exclusive"),
    (["login", "-u", "a", "--password-stdin", "http:///"], "invalid registry"),
])
def test_login_argument_errors(monkeypatch, capsys, tmp_path, args, msg) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = _run(monkeypatch, capsys, tmp_path, *args, stdin="pw")
    assert rc == 1 and msg in err and "Traceback" not in err
    assert not (tmp_path / "config.json").exists()


def test_login_to_nothing_listening_fails_cleanly(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:  # a port with nobody behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, _, err = _run(monkeypatch, capsys, tmp_path, "login", "-u", "alice", "--password-stdin",
                      f"127.0.0.1:{port}", stdin="top-secret-pw\n")
    assert rc == 1 and "top-secret-pw" not in err and "Traceback" not in err
    assert not (tmp_path / "config.json").exists()


def test_logout_when_not_logged_in(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    rc, out, _ = _run(monkeypatch, capsys, tmp_path, "logout", "r.example")
    assert rc == 0 and "Not logged in to r.example" in out


def test_metadata_file_with_the_docker_driver_is_refused(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text('target "a" {\n  dockerfile-inline = "FROM scratch"\n}\n')
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(monkeypatch, capsys, tmp_path, "run", "--driver", "docker", "--metadata-file",
                      str(tmp_path / "m.json"), "a")
    assert rc == 1 and "--metadata-file is not supported with --driver docker" in err
