"""The buildkit driver against a real ``buildkitd`` through ``buildctl``:
a private buildkitd (its own root, a unix socket under /tmp, the local
registry allowed over plain HTTP) builds a target FROM the local busybox
base and writes an OCI layout tar, then pushes a second target to the
registry (checked with skopeo).

Debian 12 packages neither buildkitd nor buildctl, so this test skips with
that reason unless both are on PATH (or $BAKERY_BUILDCTL / $BAKERY_BUILDKITD
name them).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any, Iterator, Tuple

import pytest

from bakery.bakefile.buildflags import ExportEntry
from bakery.bakefile.model import Target
from bakery.drivers.builders import Builder, Node
from bakery.drivers.multinode import BuilderDriver
from tests.integration.registry import Registry, running_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine().lower(), "amd64")
BUILDCTL = os.environ.get("BAKERY_BUILDCTL") or shutil.which("buildctl")
BUILDKITD = os.environ.get("BAKERY_BUILDKITD") or shutil.which("buildkitd")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def buildkitd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, Registry, str]]:
    if not BUILDCTL or not BUILDKITD:
        pytest.skip("buildctl and buildkitd are not installed (Debian 12 does not package "
                    "BuildKit; put a release's binaries on PATH to run this test)")
    if os.geteuid() != 0:
        pytest.skip("a rootful buildkitd needs root")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    tmp = str(tmp_path_factory.mktemp("buildkitd"))
    with running_registry(os.path.join(tmp, "registry")) as reg:
        base = f"{reg.host}/bakery/busybox:latest"
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"),
                        base, f"linux/{ARCH}={busybox}"], check=True, cwd=ROOT, capture_output=True,
                       timeout=300)
        root = tempfile.mkdtemp(prefix="bkk-", dir="/tmp")
        sock = os.path.join(root, "bk.sock")
        cfg = os.path.join(root, "buildkitd.toml")
        with open(cfg, "w") as fh:
            fh.write(f'[registry."{reg.host}"]\n  http = true\n  insecure = true\n')
        log = open(os.path.join(root, "buildkitd.log"), "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen([BUILDKITD, "--addr", f"unix://{sock}", "--root",
                                 os.path.join(root, "state"), "--config", cfg],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(sock):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"buildkitd did not start (exit {proc.poll()})")
                time.sleep(0.25)
            yield f"unix://{sock}", reg, base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            log.close()
            subprocess.run(["umount", "-R", "-l", root], capture_output=True, timeout=30)
            shutil.rmtree(root, ignore_errors=True)


def test_build_to_oci_tar_and_registry(buildkitd: Tuple[str, Registry, str], tmp_path: Any) -> None:
    addr, reg, base = buildkitd
    proj = str(tmp_path)
    with open(os.path.join(proj, "Dockerfile"), "w") as fh:
        fh.write("ARG BASE\nFROM ${BASE}\nARG MSG\nRUN echo \"$MSG\" > /msg\n")
    ref = f"{reg.host}/bakery-it/bk:1"
    targets = {
        "oci": Target("oci", context=".", args={"BASE": base, "MSG": "hi"},
                      output=[ExportEntry.from_text("type=oci,dest=out/oci.tar")], tags=["x/oci:1"]),
        "pushed": Target("pushed", context=".", args={"BASE": base, "MSG": "pushed"}, tags=[ref],
                         output=[ExportEntry.from_text("type=registry")]),
    }
    builder = Builder("bk", (Node("bk0", "buildkit", addr),))
    assert BUILDCTL is not None
    BuilderDriver(builder, cwd=proj, buildctl=BUILDCTL).run(targets, ["oci", "pushed"], 2, None)
    with tarfile.open(os.path.join(proj, "out", "oci.tar")) as tf:
        names = tf.getnames()
        fh = tf.extractfile("index.json")
        assert fh is not None
        assert json.load(fh)["manifests"]
    assert "oci-layout" in names
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Architecture"] == ARCH
