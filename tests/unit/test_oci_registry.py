"""The registry client against a fake in-memory registry on 127.0.0.1, plus
WWW-Authenticate parsing and Docker config.json credential lookup."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import pytest

from bakery.errors import BakeryError
from bakery.oci.image import ContainerConfig, add_layer, build_image, build_index
from bakery.oci.media import OCI_INDEX, OCI_MANIFEST
from bakery.oci.registry import (
    Challenge,
    Credentials,
    RegistryClient,
    RegistryOptions,
    docker_credentials,
    is_loopback,
    parse_www_authenticate,
)
from bakery.oci.store import BlobStore, walk

# -- WWW-Authenticate -------------------------------------------------------------


@pytest.mark.parametrize("header,want", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ('basic REALM=plain', [Challenge("basic", {"realm": "plain"})]),
    ('Bearer realm="r", scope="a:b:pull,push"',
     [Challenge("bearer", {"realm": "r", "scope": "a:b:pull,push"})]),
    ('Bearer realm="a\\"b",error="insufficient_scope"',
     [Challenge("bearer", {"realm": 'a"b', "error": "insufficient_scope"})]),
    ('Newauth realm="apps", type=1, title="Login, please", Basic realm="simple"',
     [Challenge("newauth", {"realm": "apps", "type": "1", "title": "Login, please"}),
      Challenge("basic", {"realm": "simple"})]),
    ('Negotiate abc123==, Basic realm="x"',
     [Challenge("negotiate", {"": "abc123=="}), Challenge("basic", {"realm": "x"})]),
    ('Bearer', [Challenge("bearer", {})]),
    ('', []),
])
def test_parse_www_authenticate(header, want) -> None:  # type: ignore[no-untyped-def]
    assert parse_www_authenticate(header) == want


# -- Docker config.json ---------------------------------------------------------------


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_config_auths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hubuser:hub:pass")},
        "http://127.0.0.1:5000": {"auth": _b64("local:pw")},
        "ghcr.io": {"username": "u", "password": "p"},
        "tok.io": {"identitytoken": "refresh-me"},
        "bad.io": {"auth": "!!!notbase64"},
    }}))
    c = docker_credentials("docker.io", str(cfg))
    assert c == Credentials("hubuser", "hub:pass")
    assert "hub:pass" not in repr(c)
    assert docker_credentials("127.0.0.1:5000", str(cfg)) == Credentials("local", "pw")
    assert docker_credentials("ghcr.io", str(cfg)) == Credentials("u", "p")
    tok = docker_credentials("tok.io", str(cfg))
    assert tok is not None and tok.identity_token == "refresh-me"
    assert docker_credentials("quay.io", str(cfg)) is None
    assert docker_credentials("x.io", str(tmp_path / "missing.json")) is None
    with pytest.raises(BakeryError) as e:
        docker_credentials("bad.io", str(cfg))
    assert "notbase64" not in e.value.message and "docker login" in (e.value.hint or "")


def test_config_from_docker_config_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"r.io": {"auth": _b64("a:b")}}}))
    assert docker_credentials("r.io", env={"DOCKER_CONFIG": str(tmp_path)}) == Credentials("a", "b")


@pytest.fixture
def helper_path(tmp_path):  # type: ignore[no-untyped-def]
    """A fake docker-credential-test on PATH: knows two servers, logs what it is asked."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-test"
    script.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 3
read server
echo "$server" >> {tmp_path}/asked
case "$server" in
  reg.example.com) echo '{{"ServerURL":"reg.example.com","Username":"helper-user","Secret":"helper-secret"}}' ;;
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"<token>","Secret":"id-token"}}' ;;
  broken.io) echo 'something went wrong' >&2; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(bindir) + os.pathsep + os.environ.get("PATH", "")


def test_cred_helpers_and_store(tmp_path, helper_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credHelpers": {"reg.example.com": "test", "broken.io": "test"},
                               "auths": {"other.io": {"auth": _b64("o:p")}}}))
    env = {"PATH": helper_path}
    assert docker_credentials("reg.example.com", str(cfg), env) == \
        Credentials("helper-user", "helper-secret")
    assert docker_credentials("other.io", str(cfg), env) == Credentials("o", "p")
    with pytest.raises(BakeryError) as e:
        docker_credentials("broken.io", str(cfg), env)
    assert "something went wrong" in e.value.message
    cfg.write_text(json.dumps({"credsStore": "test"}))
    hub = docker_credentials("docker.io", str(cfg), env)
    assert hub == Credentials(identity_token="id-token")
    assert docker_credentials("nothere.io", str(cfg), env) is None
    asked = (tmp_path / "asked").read_text().split()
    assert asked == ["reg.example.com", "broken.io", "https://index.docker.io/v1/", "nothere.io"]


def test_missing_helper_warns_and_goes_on(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credsStore": "desktop-nowhere"}))
    with caplog.at_level(logging.WARNING):
        assert docker_credentials("r.io", str(cfg), {"PATH": str(tmp_path)}) is None
    assert "docker-credential-desktop-nowhere" in caplog.text


# -- transport rules ------------------------------------------------------------------------


@pytest.mark.parametrize("host,loop", [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1", True), ("127.8.9.1:80", True),
    ("[::1]:5000", True), ("::1", True), ("10.0.0.1:5000", False), ("example.com", False),
    ("localhost.example.com", False),
])
def test_is_loopback(host, loop) -> None:  # type: ignore[no-untyped-def]
    assert is_loopback(host) is loop


def test_scheme_rules() -> None:
    c = RegistryClient(insecure_registries=["insecure.example:5000"],
                       options={"tls.example": RegistryOptions(plain_http=True)},
                       use_docker_config=False)
    assert c.scheme_for("127.0.0.1:5000") == "http"
    assert c.scheme_for("registry.example.com") == "https"
    assert c.scheme_for("insecure.example:5000") == "http"
    with pytest.raises(BakeryError, match="only allowed for insecure"):
        c.scheme_for("tls.example")
    with pytest.raises(BakeryError, match="refusing plain HTTP"):
        c._connect("http://example.com/v2/")
    with pytest.raises(BakeryError, match="CA file"):
        RegistryClient(options={"x.io": RegistryOptions(ca_file="/nonexistent.pem")})._ssl_context("x.io")


# -- a fake registry ---------------------------------------------------------------------------


class FakeRegistry:
    """An in-memory OCI distribution registry, with auth and fault injection."""

    def __init__(self, auth: Optional[str] = None, users: Optional[Dict[str, str]] = None):
        self.auth = auth  # None, "bearer" or "basic"
        self.users = users or {}
        self.blobs: Dict[str, bytes] = {}
        self.repo_blobs: Dict[str, set] = {}
        self.manifests: Dict[Tuple[str, str], Tuple[bytes, str]] = {}
        self.uploads: Dict[str, bytearray] = {}
        self.log: List[Tuple[str, str, int]] = []
        self.token_requests: List[Dict[str, List[str]]] = []
        self.auth_headers: List[str] = []
        # (method, path regex, status or "reset") served instead, each once
        self.faults: List[Tuple[str, str, Any]] = []
        self.corrupt_blobs = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                fake.dispatch(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"",
              headers: Optional[Dict[str, str]] = None) -> None:
        self.log.append((h.command, h.path, status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def error(self, h: BaseHTTPRequestHandler, status: int, code: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self.reply(h, status, body, {"Content-Type": "application/json", **(headers or {})})

    def authorized(self, h: BaseHTTPRequestHandler, repo: str) -> bool:
        if self.auth is None:
            return True
        got = h.headers.get("Authorization", "")
        self.auth_headers.append(got)
        if self.auth == "bearer" and got.startswith("Bearer tok:"):
            return True
        if self.auth == "basic" and got.startswith("Basic "):
            user, _, pw = base64.b64decode(got[6:]).decode().partition(":")
            if self.users.get(user) == pw:
                return True
        if self.auth == "bearer":
            challenge = (f'Bearer realm="http://{self.host}/token",service="fake",'
                         f'scope="repository:{repo}:pull"')
        else:
            challenge = 'Basic realm="fake"'
        self.error(h, 401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})
        return False

    def dispatch(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        for i, (method, pattern, what) in enumerate(self.faults):
            if method == h.command and re.search(pattern, url.path):
                del self.faults[i]
                if what == "reset":
                    self.log.append((h.command, h.path, 0))
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                self.error(h, what, "TOOMANYREQUESTS" if what == 429 else "UNAVAILABLE",
                           {"Retry-After": "3"} if what == 429 else None)
                return
        if url.path == "/token":
            self.token_requests.append(query)
            auth = h.headers.get("Authorization", "")
            if auth:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                if self.users.get(user) != pw:
                    return self.error(h, 401, "UNAUTHORIZED")
            tok = "tok:" + ",".join(query.get("scope", []))
            return self.reply(h, 200, json.dumps({"token": tok}).encode())
        m = re.match(r"^/v2/(.+)/(blobs|manifests)/(uploads/?(.*)|[^/]+)$", url.path)
        if not m:
            return self.error(h, 404, "NOT_FOUND")
        repo, kind, ref = m.group(1), m.group(2), m.group(3)
        if not self.authorized(h, repo):
            return None
        have = self.repo_blobs.setdefault(repo, set())
        if kind == "manifests":
            key = (repo, ref)
            if h.command == "PUT":
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                self.manifests[key] = self.manifests[(repo, digest)] = \
                    (body, h.headers.get("Content-Type", ""))
                return self.reply(h, 201, headers={"Docker-Content-Digest": digest})
            if key not in self.manifests:
                return self.error(h, 404, "MANIFEST_UNKNOWN")
            data, media = self.manifests[key]
            return self.reply(h, 200, data, {"Content-Type": media, "Docker-Content-Digest":
                                             "sha256:" + hashlib.sha256(data).hexdigest()})
        if ref.startswith("uploads"):
            upload = m.group(4)
            if h.command == "POST":
                mount, src = query.get("mount", [""])[0], query.get("from", [""])[0]
                if mount and mount in self.repo_blobs.get(src, set()):
                    have.add(mount)
                    return self.reply(h, 201, headers={"Docker-Content-Digest": mount})
                uid = str(len(self.uploads) + 1)
                self.uploads[uid] = bytearray()
                return self.reply(h, 202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=s{uid}"})
            buf = self.uploads[upload]
            if h.command == "PATCH":
                start = int(h.headers["Content-Range"].split("-")[0])
                assert start == len(buf), (start, len(buf))
                buf += body
                return self.reply(h, 202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=p",
                                                   "Range": f"0-{len(buf) - 1}"})
            buf += body
            digest = query["digest"][0]
            if "sha256:" + hashlib.sha256(bytes(buf)).hexdigest() != digest:
                return self.error(h, 400, "DIGEST_INVALID")
            self.blobs[digest] = bytes(buf)
            have.add(digest)
            return self.reply(h, 201, headers={"Docker-Content-Digest": digest})
        if ref not in have:
            return self.error(h, 404, "BLOB_UNKNOWN")
        data = self.blobs[ref]
        if self.corrupt_blobs:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return self.reply(h, 200, data, {"Docker-Content-Digest": ref})

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.log if m == method and re.search(pattern, p))


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    reg = FakeRegistry()
    yield reg
    reg.close()


@pytest.fixture
def image(tmp_path):  # type: ignore[no-untyped-def]
    store = BlobStore(str(tmp_path / "store"))
    layers = []
    for i in range(2):
        p = tmp_path / f"l{i}.tar"
        p.write_bytes(os.urandom(20000 + i))  # random: incompressible, several chunks
        layers.append(add_layer(store, str(p)))
    imgs = [build_image(store, layers, ContainerConfig(cmd=["sh"]), platform=p, created=0)
            for p in ("linux/amd64", "linux/arm64")]
    return store, build_index(store, imgs)


def _client(**kw: Any) -> Tuple[RegistryClient, List[float]]:
    sleeps: List[float] = []
    kw.setdefault("use_docker_config", False)
    return RegistryClient(sleep=sleeps.append, backoff=0.25, **kw), sleeps


def test_push_pull_round_trip(fake, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    client, _ = _client()
    res = client.push(store, idx, f"{fake.host}/team/app:v1")
    assert res.digest == idx.digest
    assert len(res.uploaded) == 4 and not res.existed and len(res.manifests) == 3
    assert fake.manifests[("team/app", "v1")][1] == OCI_INDEX
    assert fake.count("HEAD", "/blobs/sha256:") == 4  # each blob checked before upload
    # pushing again uploads nothing
    res2 = client.push(store, idx, f"{fake.host}/team/app:v1")
    assert not res2.uploaded and len(res2.existed) == 4
    # pull everything back, then a single platform
    s2 = BlobStore(str(tmp_path / "s2"))
    root = client.pull(f"{fake.host}/team/app:v1", s2)
    assert root.digest == idx.digest and root.media_type == OCI_INDEX
    assert [d.digest for d in walk(s2, root)] == [d.digest for d in walk(store, idx)]
    s3 = BlobStore(str(tmp_path / "s3"))
    one = client.pull(f"{fake.host}/team/app@{idx.digest}", s3, platform="linux/arm64/v8")
    assert str(one.platform) == "linux/arm64" and one.media_type == OCI_MANIFEST
    with pytest.raises(BakeryError, match="no image for linux/s390x") as e:
        client.pull(f"{fake.host}/team/app:v1", s3, platform="linux/s390x")
    assert "linux/amd64, linux/arm64" in (e.value.hint or "")
    with pytest.raises(BakeryError, match="not found"):
        client.pull(f"{fake.host}/team/app:nope", s3)


def test_cross_repo_mount(fake, image) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    client, _ = _client()
    client.push(store, idx, f"{fake.host}/a/app:v1")
    res = client.push(store, idx, f"{fake.host}/b/app:v1")
    assert len(res.mounted) == 4 and not res.uploaded
    assert fake.count("POST", "mount=sha256") == 4
    # a fresh client learns the source from mount_from
    fresh, _ = _client()
    res = fresh.push(store, idx, f"{fake.host}/c/app:v1", mount_from=["a/app"])
    assert len(res.mounted) == 4


def test_chunked_upload(fake, image) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    client, _ = _client(monolithic_limit=0, chunk_size=4096)
    client.push(store, idx, f"{fake.host}/c/app:v1")
    assert fake.count("PATCH", "/blobs/uploads/") >= 10
    for d in walk(store, idx):
        if d.media_type.endswith("gzip"):
            assert fake.blobs[d.digest] == store.read_bytes(d.digest)


def test_retries_with_backoff(fake, image) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    fake.faults = [("PUT", "/blobs/uploads/", 503), ("PUT", "/blobs/uploads/", 502),
                   ("POST", "/blobs/uploads/", "reset"), ("PUT", "/manifests/", 429)]
    client, sleeps = _client(retries=4)
    res = client.push(store, idx, f"{fake.host}/r/app:v1")
    assert len(res.uploaded) == 4
    # the first blob meets the reset, the 503 and the 502 (backoff doubles);
    # the manifest's 429 waits as long as its Retry-After says
    assert sleeps == [0.25, 0.5, 1.0, 3.0]
    assert not fake.faults


def test_retries_are_bounded(fake, image) -> None:  # type: ignore[no-untyped-def]
    store, _idx = image
    fake.faults = [("GET", "/manifests/", 503)] * 10
    client, sleeps = _client(retries=2, max_backoff=0.3)
    with pytest.raises(BakeryError) as e:
        client.pull(f"{fake.host}/r/app:v1", store)
    assert "after 3 attempts" in e.value.message and "UNAVAILABLE" in e.value.message
    assert sleeps == [0.25, 0.3]


def test_bearer_token_flow(image) -> None:  # type: ignore[no-untyped-def]
    reg = FakeRegistry(auth="bearer")
    try:
        store, idx = image
        client, _ = _client()
        client.push(store, idx, f"{reg.host}/t/app:v1")
        scopes = [q.get("scope") for q in reg.token_requests]
        assert scopes and all(s == ["repository:t/app:pull,push", "repository:t/app:pull"]
                              for s in scopes[:1])
        assert all(q.get("service") == ["fake"] for q in reg.token_requests)
        # one token per scope set, reused for the following requests
        assert len(reg.token_requests) <= 2
        assert not any(h.startswith("Basic") for h in reg.auth_headers)
    finally:
        reg.close()


def test_bearer_with_credentials_and_no_leaks(image, caplog) -> None:  # type: ignore[no-untyped-def]
    reg = FakeRegistry(auth="bearer", users={"alice": "s3cret-pw"})
    try:
        store, idx = image
        good, _ = _client(credentials={reg.host: Credentials("alice", "s3cret-pw")})
        with caplog.at_level(logging.DEBUG):
            good.push(store, idx, f"{reg.host}/t/app:v1")
        bad, _ = _client(credentials={reg.host: Credentials("alice", "wrong-pw")})
        with caplog.at_level(logging.DEBUG), pytest.raises(BakeryError) as e:
            bad.push(store, idx, f"{reg.host}/t/app:v2")
        text = e.value.render() + caplog.text
        assert "authentication to" in e.value.message and "docker login" in (e.value.hint or "")
        for secret in ("s3cret-pw", "wrong-pw", _b64("alice:wrong-pw"), _b64("alice:s3cret-pw")):
            assert secret not in text
    finally:
        reg.close()


def test_basic_auth(image) -> None:  # type: ignore[no-untyped-def]
    reg = FakeRegistry(auth="basic", users={"bob": "pw"})
    try:
        store, idx = image
        anon, _ = _client()
        with pytest.raises(BakeryError, match="requires authentication"):
            anon.push(store, idx, f"{reg.host}/b/app:v1")
        client, _ = _client(credentials={reg.host: Credentials("bob", "pw")})
        assert client.push(store, idx, f"{reg.host}/b/app:v1").digest == idx.digest
        n401 = sum(1 for _, _, s in reg.log if s == 401)
        client.push(store, idx, f"{reg.host}/b/app:v1")
        assert sum(1 for _, _, s in reg.log if s == 401) == n401  # basic sent up front now
    finally:
        reg.close()


def test_corrupt_blob_is_refused(fake, image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    client, _ = _client()
    client.push(store, idx, f"{fake.host}/x/app:v1")
    fake.corrupt_blobs = True
    s2 = BlobStore(str(tmp_path / "s2"))
    with pytest.raises(BakeryError, match="digest mismatch"):
        client.pull(f"{fake.host}/x/app:v1", s2)
    assert [n for n in os.listdir(os.path.join(s2.root, "sha256")) if n.startswith(".tmp")] == []


def test_manifest_digest_is_checked(fake, image) -> None:  # type: ignore[no-untyped-def]
    store, idx = image
    client, _ = _client()
    client.push(store, idx, f"{fake.host}/x/app:v1")
    fake.manifests[("x/app", idx.digest)] = (b'{"schemaVersion":2,"manifests":[]}', OCI_INDEX)
    with pytest.raises(BakeryError, match="sent a manifest with digest") as e:
        client.get_manifest(f"{fake.host}/x/app@{idx.digest}")
    assert "tampered" in (e.value.hint or "")
