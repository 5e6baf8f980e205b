"""A private Docker engine for tests: Debian's ``docker.io`` (dockerd 20.10,
whose builder is BuildKit) on its own unix socket, data root and exec root,
with no bridge, no iptables and nothing shared with a system daemon.

Example::

    with running_dockerd(insecure_registries=[reg.host]) as d:   # skips if not usable
        d.docker("pull", f"{reg.host}/bakery/busybox:latest")
        d.build(context_dir, tag="x", build_args={"A": "1"})      # BuildKit, --network=host
        d.docker("save", "x", "-o", "/tmp/x.tar")

Every wait is bounded.  On exit (also when the test fails) the daemon gets
SIGTERM, then its whole process group SIGKILL; mounts left under the data
root are unmounted and the directory (under /tmp, so the socket path stays
short) is removed.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

DOCKERD_BIN = shutil.which("dockerd")
# Debian's docker.io CLI (20.10) builds with its built-in BuildKit client; a newer
# CLI elsewhere on PATH (23+) insists on the buildx plugin, so prefer this one.
DOCKER_BIN = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 300.0


@dataclass
class Dockerd:
    root: str
    proc: subprocess.Popen[bytes]
    log_path: str

    @property
    def sock(self) -> str:
        return os.path.join(self.root, "d.sock")

    @property
    def host(self) -> str:
        return "unix://" + self.sock

    @property
    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def env(self, **extra: str) -> Dict[str, str]:
        e = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=os.path.join(self.root, "client"))
        e.update(extra)
        return e

    def docker(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT,
               env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker -H <this daemon> ARGS``; on failure the assertion shows the daemon log's tail."""
        assert DOCKER_BIN is not None
        r = subprocess.run([DOCKER_BIN, "-H", self.host, *args], capture_output=True, text=True,
                           timeout=timeout, env=env or self.env())
        if check:
            assert r.returncode == 0, (f"docker {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                                       f"{r.stderr[-4000:]}\n--- dockerd log ---\n{self.log[-3000:]}")
        return r

    def build(self, context: str, tag: str, build_args: Optional[Dict[str, str]] = None,
              target: str = "", dockerfile: str = "") -> subprocess.CompletedProcess[str]:
        """``DOCKER_BUILDKIT=1 docker build --network=host`` (the daemon has no bridge)."""
        args: List[str] = ["build", "--network=host", "--progress=plain", "-t", tag]
        for k, v in (build_args or {}).items():
            args += ["--build-arg", f"{k}={v}"]
        if target:
            args += ["--target", target]
        if dockerfile:
            args += ["-f", dockerfile]
        return self.docker(*args, context, env=self.env(DOCKER_BUILDKIT="1"))

    def read_file(self, image: str, path: str) -> str:
        """A file's content from ``image`` (docker create + docker cp: nothing runs)."""
        cid = self.docker("create", "--network", "none", image, "/bin/sh").stdout.strip()
        try:
            assert DOCKER_BIN is not None
            r = subprocess.run([DOCKER_BIN, "-H", self.host, "cp", f"{cid}:{path}", "-"],
                               capture_output=True, timeout=120, env=self.env())
            assert r.returncode == 0, r.stderr.decode(errors="replace")
            with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
                fh = tf.extractfile(tf.getmembers()[0])
                assert fh is not None
                return fh.read().decode()
        finally:
            self.docker("rm", "-f", cid, check=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.sock)
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                data = s.recv(4096)
            return b" 200 " in data.split(b"\r\n", 1)[0] + b" "
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        # dockerd's own containerd and shims run in the group we created for it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT)
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def _unmount_under(root: str) -> None:
    """Lazily unmount whatever a killed daemon left mounted below ``root``, deepest first."""
    real = os.path.realpath(root)
    try:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return
    for p in sorted((p for p in points if p == real or p.startswith(real + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, timeout=30)


#: this machine's architecture as OCI names it
HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), "amd64")


def skip_reason() -> str:
    """Why no private dockerd can run here, or "" when one can."""
    if DOCKERD_BIN is None or DOCKER_BIN is None:
        return "dockerd/docker are not installed (Debian package docker.io)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return ""


@contextlib.contextmanager
def running_dockerd(insecure_registries: Sequence[str] = ()) -> Iterator[Dockerd]:
    """Start a private dockerd; skip the test when it is not installed or cannot start."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    assert DOCKERD_BIN is not None
    root = tempfile.mkdtemp(prefix="bkd-", dir="/tmp")  # short: unix socket paths are limited
    for sub in ("data", "exec", "client"):
        os.makedirs(os.path.join(root, sub))
    log_path = os.path.join(root, "dockerd.log")
    cmd = [DOCKERD_BIN, "--iptables=false", "--ip-masq=false", "--bridge=none",
           "--host", "unix://" + os.path.join(root, "d.sock"),
           "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
           "--pidfile", os.path.join(root, "dockerd.pid"), "--storage-driver", "overlay2"]
    for reg in insecure_registries:
        cmd += ["--insecure-registry", reg]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    d = Dockerd(root=root, proc=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not d.ping():
            if not d.alive() or time.monotonic() > deadline:
                log_tail = d.log[-2000:]
                pytest.skip(f"dockerd did not start within {START_TIMEOUT:.0f}s "
                            f"(exit {proc.poll()}): {log_tail}")
            time.sleep(0.25)
        yield d
    finally:
        d.stop()


@contextlib.contextmanager
def dockerd_with_base(tmp: str) -> Iterator[Tuple[Dockerd, str]]:
    """A private dockerd and a busybox base image (this machine's platform)
    in a registry on 127.0.0.1 that the daemon may pull from over HTTP;
    yields (daemon, base image ref).  Skips when a part is missing."""
    from tests.integration.registry import push_busybox_image, running_registry

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("docker-registry") is None and shutil.which("registry") is None:
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    try:
        with running_registry(os.path.join(tmp, "registry")) as reg:
            base = f"{reg.host}/bakery/busybox:latest"
            push_busybox_image(base, f"linux/{HOST_ARCH}={busybox}")
            with running_dockerd(insecure_registries=[reg.host]) as d:
                yield d, base
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
