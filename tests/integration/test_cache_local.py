"""Build caches for real: the example monorepo exported with ``cache-to``,
the store wiped, and rebuilt from ``cache-from`` alone.

Needs what test_run_example needs (root, runc, docker-registry, skopeo,
umoci, busybox-static); skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from typing import Dict, List

import pytest

from tests.integration.registry import running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARM64_BUSYBOX = os.environ.get("BAKERY_ARM64_BUSYBOX", "/opt/bakery-test/arm64/bin/busybox")
TARGETS = ("api", "worker", "web-plain", "web-debug")

pytestmark = pytest.mark.integration


@pytest.fixture()
def env(tmp_path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("RUN steps need root (rootless is not supported yet)")
    for tool in ("runc", "docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox-static is not installed")
    with running_registry(str(tmp_path / "registry")) as reg:
        platforms = [f"linux/amd64={busybox}"]
        if os.path.exists(ARM64_BUSYBOX) and shutil.which("qemu-aarch64-static"):
            platforms.append(f"linux/arm64={ARM64_BUSYBOX}")
        base = f"{reg.host}/bakery/busybox:latest"
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"), base,
                        *platforms], check=True, cwd=ROOT, capture_output=True)
        work = tmp_path / "monorepo"
        shutil.copytree(os.path.join(ROOT, "examples", "monorepo"), work)
        yield {"cwd": str(work), "base": base, "host": reg.host, "tmp": str(tmp_path),
               "platforms": [p.split("=")[0] for p in platforms]}


def bakery(env, store: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    sets: List[str] = []
    if env["platforms"] == ["linux/amd64"]:
        sets = ["--set", "*.platform=linux/amd64"]
    e = dict(os.environ, BAKERY_CACHE_DIR=os.path.join(env["tmp"], store), SOURCE_DATE_EPOCH="0")
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                        *sets, *args], cwd=env["cwd"], capture_output=True, text=True, env=e, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def steps_run(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", r.stderr)
    assert m, r.stderr[-2000:]
    return int(m.group(1))


def output_digests(env) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    """target -> the digest of out/<target>.tar's root (its index.json entry)."""
    out = {}
    for t in TARGETS:
        with tarfile.open(os.path.join(env["cwd"], "out", f"{t}.tar")) as tf:
            f = tf.extractfile("index.json")
            assert f is not None
            out[t] = json.load(f)["manifests"][0]["digest"]
    return out


@pytest.mark.parametrize("kind", ["local", "registry"])
def test_rebuild_from_an_exported_cache_runs_nothing(env, kind) -> None:  # type: ignore[no-untyped-def]
    if kind == "local":
        where = os.path.join(env["tmp"], "cache")
        to = f"*.cache-to=type=local,dest={where},mode=max"
        frm = f"*.cache-from=type=local,src={where}"
    else:
        ref = f"{env['host']}/cache/monorepo:buildcache"
        to = f"*.cache-to=type=registry,ref={ref},mode=max"
        frm = f"*.cache-from=type=registry,ref={ref}"

    first = bakery(env, "store1", "--set", to)
    assert steps_run(first) > 0
    assert "cache" in first.stdout
    digests = output_digests(env)
    if kind == "local":
        with open(os.path.join(where, "index.json")) as fh:
            assert len(json.load(fh)["manifests"]) == 1  # every target: one merged cache

    # an empty store, the cache only: nothing runs, the same images come out
    shutil.rmtree(os.path.join(env["cwd"], "out"))
    second = bakery(env, "store2", "--set", frm)
    assert steps_run(second) == 0, second.stderr[-3000:]
    assert output_digests(env) == digests

    # one service's file changes: only its COPY and the RUN after it, per platform
    with open(os.path.join(env["cwd"], "services", "api", "run.sh"), "a") as fh:
        fh.write("# changed\n")
    third = bakery(env, "store3", "--set", frm)
    assert steps_run(third) == 2 * len(env["platforms"])
    changed = output_digests(env)
    assert changed["api"] != digests["api"]
    assert {t: d for t, d in changed.items() if t != "api"} == \
        {t: d for t, d in digests.items() if t != "api"}
