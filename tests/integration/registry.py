"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8)
on 127.0.0.1, a free port and a temporary storage directory; and a small
HTTP proxy in front of it that logs every request and can cut a connection
part way through a request body.

Example::

    with running_registry(tmp_path) as reg:            # skips if not installed
        client = RegistryClient()
        client.push(store, index, f"{reg.host}/app:v1")
        with RecordingProxy(reg.port) as proxy:           # 127.0.0.1:proxy.port
            ...
            [r for r in proxy.requests if r.method == "PUT"]

With ``htpasswd={"user": "password"}`` the registry asks for basic auth
(the bcrypt hashes come from the ``bcrypt`` module, the ``crypt`` module or
the ``htpasswd`` tool; :func:`bcrypt_hash` returns None when none is there).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bcrypt_hash(password: str) -> Optional[str]:
    """A bcrypt hash of ``password``, or None when nothing here can make one."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode())
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # type: ignore[import-not-found,unused-ignore]
        h = crypt.crypt(password, "$2b$05$" + "abcdefghijklmnopqrstuv")
        if h and h.startswith("$2b$"):
            return str(h)
    except (ImportError, OSError):
        pass
    tool = shutil.which("htpasswd")
    if tool:
        r = subprocess.run([tool, "-nbB", "-C", "5", "u", password], capture_output=True, text=True)
        if r.returncode == 0 and ":" in r.stdout:
            return r.stdout.strip().split(":", 1)[1]
    return None


@dataclass
class Registry:
    port: int
    root: str
    log_path: str
    proc: subprocess.Popen  # type: ignore[type-arg]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def running_registry(tmp: str, htpasswd: Optional[Dict[str, str]] = None) -> Iterator[Registry]:
    """Start a registry; skip the test when docker-registry is not installed."""
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    root = os.path.join(str(tmp), "registry")
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd:
        lines = []
        for user, pw in htpasswd.items():
            h = bcrypt_hash(pw)
            if h is None:
                pytest.skip("no bcrypt here for an htpasswd file (the Python module bcrypt, "
                            "the crypt module with bcrypt, or apache2-utils' htpasswd)")
            lines.append(f"{user}:{h}\n")
        with open(os.path.join(root, "htpasswd"), "w") as f:
            f.writelines(lines)
        auth = f"""auth:
  htpasswd:
    realm: bakery-test
    path: {root}/htpasswd
"""
    config = os.path.join(root, "config.yml")
    with open(config, "w") as f:
        f.write(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: bakery-test-secret
{auth}""")
    log_path = os.path.join(root, "registry.log")
    logf = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    reg = Registry(port, root, log_path, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" + reg.log()[-3000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start:\n" + reg.log()[-3000:])
            time.sleep(0.1)
        yield reg
    finally:
        reg.stop()
        logf.close()


# -- a recording (and cutting) proxy --------------------------------------------------


@dataclass
class ProxyRequest:
    method: str
    path: str
    query: Dict[str, str]
    body_bytes: int
    status: int = 0
    cut: bool = False


@dataclass
class RecordingProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``127.0.0.1:upstream``.

    Every request is recorded (method, path, query, body bytes, status).
    ``cut_after``: the first request with a body larger than that many bytes
    has its connection reset after that many body bytes (once), as a network
    failure would.  ``fail_every``: every N-th request gets a 503 from the
    proxy itself (recorded with status 503), as an overloaded registry.
    """

    upstream: int
    cut_after: Optional[int] = None
    requests: List[ProxyRequest] = field(default_factory=list)
    # every N-th request is answered "503 Service Unavailable" without reaching the registry
    fail_every: Optional[int] = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(5)
        self._sock.close()

    def uploads(self) -> List[ProxyRequest]:
        """Requests that carried blob data (PUT/PATCH to an upload with a body)."""
        return [r for r in self.requests
                if r.method in ("PUT", "PATCH") and "/blobs/uploads/" in r.path and r.body_bytes]

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(30)
        try:
            self._relay(client)
        except OSError:
            pass
        finally:
            client.close()

    def _relay(self, client: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = client.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [ln for ln in lines[1:] if ln]
        length = 0
        for h in headers:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        p = urllib.parse.urlsplit(target)
        rec = ProxyRequest(method, p.path, dict(urllib.parse.parse_qsl(p.query)), length)
        cut_at: Optional[int] = None
        with self._lock:
            self.requests.append(rec)
            if self.cut_after is not None and length > self.cut_after:
                cut_at, self.cut_after = self.cut_after, None
            fail = self.fail_every is not None and len(self.requests) % self.fail_every == 0
        if fail:
            rec.status = 503
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
            return
        headers = [h for h in headers if h.split(":", 1)[0].strip().lower() != "connection"]
        headers.append("Connection: close")
        up = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
        try:
            up.sendall(("\r\n".join([lines[0], *headers]) + "\r\n\r\n").encode("latin-1"))
            sent = 0
            limit = rec.body_bytes
            while sent < limit:
                if not body:
                    body = client.recv(65536)
                    if not body:
                        return
                if cut_at is not None and sent + len(body) >= cut_at:
                    # reset the client's connection part way through the body
                    rec.cut = True
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                take = body[: limit - sent]
                up.sendall(take)
                sent += len(take)
                body = body[len(take):]
            first = True
            while True:
                data = up.recv(65536)
                if not data:
                    break
                if first:
                    first = False
                    with contextlib.suppress(IndexError, ValueError):
                        rec.status = int(data.split(b" ", 2)[1])
                client.sendall(data)
        finally:
            up.close()


# -- small real images ------------------------------------------------------------------

BUSYBOX = "/usr/bin/busybox"


def need_tool(name: str) -> str:
    """The path of ``name``, or skip the test saying which package brings it."""
    path = shutil.which(name)
    if path is None:
        pkg = {"docker-registry": "docker-registry", "busybox": "busybox-static"}.get(name, name)
        pytest.skip(f"{name} is not installed (Debian package {pkg})")
    return path


def busybox_tar(path: str) -> str:
    """An uncompressed layer tar: /bin/busybox (the static binary) and /bin/sh -> busybox."""
    import tarfile

    if not os.path.isfile(BUSYBOX):
        pytest.skip("no static busybox at /usr/bin/busybox (Debian package busybox-static)")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("bin")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = os.path.getsize(BUSYBOX), 0o755
        with open(BUSYBOX, "rb") as f:
            tf.addfile(ti, f)
        sh = tarfile.TarInfo("bin/sh")
        sh.type, sh.linkname, sh.mode = tarfile.SYMTYPE, "busybox", 0o777
        tf.addfile(sh)
    return path


def file_tar(path: str, name: str, content: bytes) -> str:
    """An uncompressed layer tar holding one file."""
    import io
    import tarfile

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(content), 0o644
        tf.addfile(ti, io.BytesIO(content))
    return path


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def push_busybox_image(*args: str) -> None:
    """Push a busybox base image made locally: examples/tools/busybox_image.py
    ``[--version V] REF os/arch=/path/to/busybox...``."""
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tools", "busybox_image.py"), *args],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
