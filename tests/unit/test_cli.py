"""The command line: exit codes, messages, --print, ls, stdin, --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Optional

import pytest

from bakery import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "monorepo")


def run(args: List[str], cwd: str, stdin: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("VERSION", "REGISTRY")}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bakery", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=e,
    )


def test_version_and_help(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["--version"], str(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == f"bakery {__version__}"
    r = run(["--help"], str(tmp_path))
    assert r.returncode == 0 and "plan" in r.stdout and "ls" in r.stdout


def test_plan_print_example() -> None:
    r = run(["plan", "--print"], EXAMPLE)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["group"]["default"]["targets"] == ["services"]
    assert sorted(doc["target"]) == ["api", "base", "web-debug", "web-plain", "worker"]
    assert doc["target"]["api"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert doc["target"]["base"]["output"] == [{"type": "cacheonly"}]


def test_plan_text_and_set_and_var() -> None:
    r = run(["plan", "--var", "VERSION=9", "--set", "*.platform=linux/arm64", "api"], EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("plan: 2 targets, 2 exports, 7 steps (4 shared)")
    assert "api   linux/arm64  (tags 127.0.0.1:5000/bakery-example/api:9" in r.stdout
    for fmt in ("json", "dot", "mermaid", "html", "matrix"):
        r = run(["plan", "--format", fmt], EXAMPLE)
        assert r.returncode == 0 and r.stdout, (fmt, r.stderr)
    matrix = json.loads(run(["plan", "--format", "matrix"], EXAMPLE).stdout)
    assert {"target": "api", "platform": "linux/arm64"} in matrix["include"]


def test_ls_text_and_json() -> None:
    r = run(["ls"], EXAMPLE)
    assert r.returncode == 0
    assert "variable  REGISTRY" in r.stdout and "group     services" in r.stdout
    doc = json.loads(run(["ls", "--format", "json"], EXAMPLE).stdout)
    assert {v["name"] for v in doc["variables"]} >= {"REGISTRY", "VERSION", "PLATFORMS"}
    assert next(v for v in doc["variables"] if v["name"] == "PLATFORMS")["type"] == "list(string)"


def test_stdin_bake_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["plan", "-f", "-", "--print", "a"], str(tmp_path), stdin='target "a" {\n  tags = ["x"]\n}\n')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"]["a"]["tags"] == ["x"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ('target "a" {\n  tags = [nope]\n}\n',
         'docker-bake.hcl:2:11: error: Unknown variable; There is no variable named "nope".\n'
         "    2 |   tags = [nope]\n      |           ^\n"),
        ('target "a" {\n  tags = ["x"\n}\n', "docker-bake.hcl:"),
    ],
)
def test_user_errors_exit_1_without_traceback(tmp_path, text: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text(text)
    r = run(["plan", "--print", "a"], str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.startswith(expected)
    assert "Traceback" not in r.stderr


def test_no_bake_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["plan"], str(tmp_path))
    assert r.returncode == 1 and "error: no bake file found" in r.stderr and "hint:" in r.stderr


def test_missing_named_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["plan", "-f", "nope.hcl"], str(tmp_path))
    assert r.returncode == 1 and "failed to read nope.hcl: no such file" in r.stderr


def test_debug_shows_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["--debug", "plan", "-f", "nope.hcl"], str(tmp_path))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_internal_error_exit_2(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bakery import cli

    def boom(args):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    monkeypatch.setitem(cli.COMMANDS, "plan", boom)
    assert cli.main(["plan"]) == 2


def test_default_file_discovery_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text('target "a" {\n  tags = ["hcl"]\n}\n')
    (tmp_path / "docker-bake.override.hcl").write_text('target "a" {\n  tags = ["override"]\n}\n')
    (tmp_path / "bakery.toml").write_text('[target.a]\nargs = { T = "toml" }\n')
    r = run(["plan", "--print", "a"], str(tmp_path))
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)["target"]["a"]
    assert a["tags"] == ["override"] and a["args"] == {"T": "toml"}


def test_bake_local_platform(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.bakefile.files import local_platform

    (tmp_path / "docker-bake.hcl").write_text('target "a" {\n  platforms = [BAKE_LOCAL_PLATFORM]\n}\n')
    r = run(["plan", "--print", "a"], str(tmp_path))
    assert json.loads(r.stdout)["target"]["a"]["platforms"] == [local_platform()]


def test_cache_du_and_prune(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bakery.engine.store import Store

    store = Store(str(tmp_path / "c" / "store"))
    d = store.put_bytes(b"x" * 2048)
    store.put_record("sha256:" + "1" * 64, {"layers": [d]}, blobs=[d])
    env = {"BAKERY_CACHE_DIR": str(tmp_path / "c")}
    r = run(["cache", "du"], str(tmp_path), env=env)
    assert r.returncode == 0 and "(1 cache records)" in r.stdout and "2.0 KiB" in r.stdout
    r = run(["cache", "prune"], str(tmp_path), env=env)
    assert r.returncode == 1 and "say what to prune" in r.stderr
    r = run(["cache", "prune", "--older-than", "1h"], str(tmp_path), env=env)
    assert "removed 0 cache records" in r.stdout
    r = run(["cache", "prune", "--all"], str(tmp_path), env=env)
    assert "removed 1 cache records, freed 2.0 KiB" in r.stdout
    r = run(["cache", "prune", "--keep-storage", "lots"], str(tmp_path), env=env)
    assert r.returncode == 1 and "invalid size 'lots'" in r.stderr


def test_info(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(["info"], str(tmp_path), env={"BAKERY_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0
    assert "sandbox:" in r.stdout and "snapshotter:" in r.stdout and str(tmp_path) in r.stdout
    assert "emulation:" in r.stdout


def test_target_errors_point_at_the_target_block(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text('variable "X" {}\n\ntarget "a" {\n  dockerfile = "Nope"\n}\n')
    r = run(["plan", "a"], str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.startswith("docker-bake.hcl:3:1: error: target a: failed to read dockerfile")


def test_run_with_the_docker_driver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.test_driver_docker import Fake

    os.makedirs(tmp_path / "fake")
    fake = Fake(str(tmp_path / "fake"))
    for name in ("base", "app"):
        (tmp_path / name).mkdir()
    (tmp_path / "docker-bake.hcl").write_text(
        'group "default" {\n  targets = ["app"]\n}\n'
        'target "base" {\n  context = "base"\n  tags = ["b:1"]\n}\n'
        'target "app" {\n  context = "app"\n  depends_on = ["base"]\n  args = { V = "2" }\n}\n')
    r = run(["run", "--driver", "docker", "--docker-host", "unix:///tmp/nowhere.sock"], str(tmp_path),
            env={"BAKERY_DOCKER": fake.docker, "FAKE_LOG": fake.log})
    assert r.returncode == 0, r.stderr
    assert "base: sha256:base (docker driver, unix:///tmp/nowhere.sock)" in r.stdout
    starts = [e for e in fake.events() if e["ev"] == "start"]
    assert [e["name"] for e in starts] == ["base", "app"]
    assert "V=2" in starts[1]["args"] and "unix:///tmp/nowhere.sock" in starts[1]["args"]


def test_docker_driver_rejects_what_it_cannot_honour(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "docker-bake.hcl").write_text(
        'target "a" {\n  contexts = { x = "oci-layout:///srv/layout" }\n}\n')
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    r = run(["run", "--driver", "docker", "a"], str(tmp_path), env={"BAKERY_DOCKER": "/bin/true"})
    assert r.returncode == 1 and "oci-layout" in r.stderr and "Traceback" not in r.stderr


def test_cache_du_by_target_and_prune_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from bakery.engine.store import Store

    store = Store(str(tmp_path / "c" / "store"))
    shared = store.put_bytes(b"s" * 4096)
    own = store.put_bytes(b"a" * 1024)
    k1, k2, k3 = ("sha256:" + c * 64 for c in "123")
    store.put_record(k1, {"layers": [shared]}, blobs=[shared], meta={"targets": ["api", "web"]})
    store.put_record(k2, {"layers": [shared, own]}, blobs=[shared, own], meta={"targets": ["api"]})
    store.put_record(k3, {"layers": [own]}, blobs=[own])  # imported: no target known
    env = {"BAKERY_CACHE_DIR": str(tmp_path / "c")}
    r = run(["cache", "du"], str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert "5.0 KiB" in rows["api"] and "(2 records)" in rows["api"]  # the shared blob once
    assert "4.0 KiB" in rows["web"] and "(1 records)" in rows["web"]
    assert "1.0 KiB" in rows["(unknown)"]
    # --older-than drops only records unused for that long, and their unshared blobs
    os.utime(store.record_path(k3), (time.time() - 7200,) * 2)
    r = run(["cache", "prune", "--older-than", "1h"], str(tmp_path), env=env)
    assert "removed 1 cache records, freed 0 B" in r.stdout  # k2 still needs `own`
    assert store.get_record(k3) is None and store.get_record(k1) is not None
    # --keep-storage drops least recently used records until the blobs fit
    os.utime(store.record_path(k2), (time.time() - 60,) * 2)
    r = run(["cache", "prune", "--keep-storage", "4KiB"], str(tmp_path), env=env)
    assert "removed 1 cache records, freed 1.0 KiB" in r.stdout, r.stdout
    assert store.get_record(k2) is None and store.get_record(k1) is not None
    r = run(["cache", "prune", "--older-than", "bogus"], str(tmp_path), env=env)
    assert r.returncode == 1 and "invalid duration" in r.stderr and "Traceback" not in r.stderr
    r = run(["cache", "prune", "--all"], str(tmp_path), env=env)
    assert "removed 1 cache records, freed 4.0 KiB" in r.stdout
    r = run(["cache", "du"], str(tmp_path), env=env)
    assert "(0 cache records)" in r.stdout and "by target" not in r.stdout
