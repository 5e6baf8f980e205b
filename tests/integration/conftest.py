"""Shared fixtures for integration tests.

* ``busybox_rootfs``: a writable root filesystem directory made of Debian's
  static busybox (/bin/busybox plus a symlink per applet) with a small
  /etc/passwd and /etc/group (root, alice 1000, bob 1001; group staff 50
  has alice as a member) and a 1777 /tmp.  Skips when busybox is missing.
* ``require_root``: skips unless running as root.
* ``runc_binary``: the path of runc; skips (with the reason) when it is not
  installed or when not root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

import pytest

BUSYBOX_CANDIDATES = ("/usr/bin/busybox", "/bin/busybox", "/usr/sbin/busybox")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
staff:x:50:alice
alice:x:1000:
bob:x:1001:
nogroup:x:65534:
"""


def find_busybox() -> str:
    """The path of a static busybox, or "" (it must run inside a rootfs
    without shared libraries, so prefer busybox-static's)."""
    for p in BUSYBOX_CANDIDATES:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return shutil.which("busybox") or ""


def _applets(busybox: str) -> List[str]:
    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    names = [a.strip() for a in out.split() if a.strip() and "/" not in a]
    return names or ["sh", "echo", "cat", "ls", "id", "sleep", "touch", "stat", "env", "pwd"]


def make_busybox_rootfs(dest: str) -> str:
    """Create a busybox root filesystem at ``dest`` (see the module doc)."""
    busybox = find_busybox()
    if not busybox:
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    for name in _applets(busybox):
        link = os.path.join(dest, "bin", name)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    os.makedirs(os.path.join(dest, "etc"), exist_ok=True)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write(GROUP)
    tmp = os.path.join(dest, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o1777)
    return dest


@pytest.fixture
def busybox_rootfs(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return make_busybox_rootfs(str(tmp_path / "rootfs"))


@pytest.fixture
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts and runc need it)")


@pytest.fixture
def runc_binary(require_root) -> str:  # type: ignore[no-untyped-def]
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = os.path.join(d, "runc")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    found = shutil.which("runc")
    if not found:
        pytest.skip("runc is not installed (Debian package runc)")
    return found


ARM64_BUSYBOX = os.environ.get("BAKERY_ARM64_BUSYBOX", "/opt/bakery-test/arm64/bin/busybox")


@pytest.fixture()
def env(tmp_path):  # type: ignore[no-untyped-def]
    """The example monorepo (a copy, without a local run's out/) and a
    registry on 127.0.0.1 holding a busybox base image for amd64, plus arm64
    when its binary and qemu are there.  Keys: cwd, base, cache (a private
    store), tmp, host (the registry), platforms.  Skips without root, runc,
    docker-registry, skopeo, umoci or busybox-static."""
    from tests.integration.registry import ROOT, push_busybox_image, running_registry

    if os.geteuid() != 0:
        pytest.skip("RUN steps need root")
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
        push_busybox_image(base, *platforms)
        work = tmp_path / "monorepo"
        shutil.copytree(os.path.join(ROOT, "examples", "monorepo"), work,
                        ignore=shutil.ignore_patterns("out"))  # what run-example.sh wrote
        yield {"cwd": str(work), "base": base, "cache": str(tmp_path / "cache"), "tmp": str(tmp_path),
               "host": reg.host, "platforms": [p.split("=")[0] for p in platforms]}
