"""``ADD <url>`` and ``ADD <git ref>`` for real: ``bakery run`` against a
local HTTP server (http.server), a local ``git daemon`` (git://) and
``git http-backend`` (smart HTTP), all on 127.0.0.1.  FROM scratch, so no registry is needed; outputs are
``type=local`` directories that are inspected file by file."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Tuple

import pytest

pytestmark = pytest.mark.integration

LAST_MODIFIED = 1_600_000_000  # 2020-09-13T12:26:40Z


class Files:
    """What the server serves: path -> (body, extra headers); requests seen."""

    def __init__(self) -> None:
        self.files: Dict[str, Tuple[bytes, Dict[str, str]]] = {}
        self.requests: List[str] = []
        self.conditional: List[str] = []  # the If-None-Match of each request


@contextlib.contextmanager
def http_server(files: Files) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.requests.append(self.path)
            hit = files.files.get(self.path)
            if hit is None:
                self.send_error(404)
                return
            body, headers = hit
            files.conditional.append(self.headers.get("If-None-Match", ""))
            if headers.get("ETag") and self.headers.get("If-None-Match") == headers["ETag"]:
                self.send_response(304)
                self.send_header("ETag", headers["ETag"])
                self.end_headers()
                return
            self.send_response(200)
            # "X-Truncate": announce more than is sent, then hang up
            self.send_header("Content-Length", str(len(body) + (100 if "X-Truncate" in headers else 0)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            if "X-Truncate" in headers:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bakery(cwd: str, cache: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BAKERY_CACHE_DIR=cache)
    for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "bakery", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def steps_run(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", r.stderr)
    assert m, r.stderr[-2000:]
    return int(m.group(1))


def project(tmp_path, dockerfile: str) -> str:  # type: ignore[no-untyped-def]
    work = tmp_path / "proj"
    work.mkdir(exist_ok=True)
    (work / "Dockerfile").write_text(dockerfile)
    (work / "local.txt").write_text("from the context\n")
    (work / "docker-bake.hcl").write_text(
        'target "default" {\n  platforms = ["linux/amd64"]\n'
        '  output = ["type=local,dest=out"]\n}\n')
    return str(work)


@pytest.fixture()
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("the engine's snapshots need root here")


def test_add_url_files_modes_times_and_rebuilds_when_the_content_changes(tmp_path, root_only) -> None:  # type: ignore[no-untyped-def]
    files = Files()
    lm = {"Last-Modified": email.utils.formatdate(LAST_MODIFIED, usegmt=True)}
    files.files["/files/data.txt"] = (b"version 1\n", lm)
    files.files["/files/tool.sh"] = (b"#!/bin/sh\necho tool\n", {})
    files.files["/"] = (b"<html>index</html>\n", {"Content-Disposition": 'attachment; filename="x.html"'})
    files.files["/pinned.bin"] = (b"\x00pinned\x01", {})
    pinned = "sha256:" + hashlib.sha256(b"\x00pinned\x01").hexdigest()
    with http_server(files) as base:
        cwd = project(tmp_path, f"""FROM scratch
ADD {base}/files/data.txt /d/
ADD --chmod=755 --chown=1000:50 {base}/files/tool.sh /bin/tool
ADD {base}/ /root/
ADD --checksum={pinned} {base}/pinned.bin /p/
ADD {base}/files/data.txt local.txt /p/
""")
        cache = str(tmp_path / "cache")
        r = bakery(cwd, cache)
        assert r.returncode == 0, r.stderr[-3000:]
        out = os.path.join(cwd, "out")
        st = os.stat(os.path.join(out, "d", "data.txt"))
        with open(os.path.join(out, "d", "data.txt"), "rb") as fh:
            assert fh.read() == b"version 1\n"
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 0, 0)  # BuildKit's 0600
        assert int(st.st_mtime) == LAST_MODIFIED
        tool = os.stat(os.path.join(out, "bin", "tool"))
        assert (tool.st_mode & 0o7777, tool.st_uid, tool.st_gid) == (0o755, 1000, 50)
        assert int(tool.st_mtime) == 0  # no Last-Modified: the epoch
        # the Dockerfile frontend names the file from the URL (Content-Disposition is not used)
        assert sorted(os.listdir(os.path.join(out, "root"))) == ["__unnamed__"]
        assert sorted(os.listdir(os.path.join(out, "p"))) == ["data.txt", "local.txt", "pinned.bin"]
        # remote files are never unpacked, and the local file comes from the context
        with open(os.path.join(out, "p", "local.txt")) as fh:
            assert fh.read() == "from the context\n"

        # again: the three unpinned URLs are fetched again (their content is
        # their key), everything else comes from the cache
        files.requests.clear()
        again = bakery(cwd, cache)
        assert again.returncode == 0, again.stderr[-3000:]
        assert steps_run(again) == 3  # the same URL twice is one step
        assert sorted(files.requests) == ["/", "/files/data.txt", "/files/tool.sh"]

        # the server's file changes: the step after it runs again, the result has it
        files.files["/files/data.txt"] = (b"version 2\n", lm)
        third = bakery(cwd, cache)
        assert third.returncode == 0, third.stderr[-3000:]
        assert steps_run(third) > 3
        with open(os.path.join(out, "d", "data.txt"), "rb") as fh:
            assert fh.read() == b"version 2\n"


def test_add_url_checksum_mismatch_is_an_error_naming_the_url_and_line(tmp_path, root_only) -> None:  # type: ignore[no-untyped-def]
    files = Files()
    files.files["/a.txt"] = (b"actual\n", {})
    with http_server(files) as base:
        wrong = "sha256:" + "0" * 64
        cwd = project(tmp_path, f"FROM scratch\nADD --checksum={wrong} {base}/a.txt /a\n")
        r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert f"digest mismatch for {base}/a.txt" in r.stderr
    assert f"(expected: {wrong})" in r.stderr and "Dockerfile:2" in r.stderr
    assert "Traceback" not in r.stderr


def test_add_url_unreachable_host_and_missing_file(tmp_path, root_only) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    cwd = project(tmp_path, f"FROM scratch\nCOPY local.txt /\nADD http://127.0.0.1:{port}/x.tar.gz /x/\n")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert f"failed to fetch http://127.0.0.1:{port}/x.tar.gz" in r.stderr
    assert "Connection refused" in r.stderr and "Dockerfile:3" in r.stderr
    assert "Traceback" not in r.stderr

    files = Files()
    with http_server(files) as base:
        cwd = project(tmp_path, f"FROM scratch\nADD {base}/nope /x\n")
        r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert f"failed to fetch {base}/nope: invalid response status 404" in r.stderr


# -- git -----------------------------------------------------------------------


def git(cwd: str, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", HOME=cwd)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


@contextlib.contextmanager
def git_daemon(base: str) -> Iterator[str]:
    port = free_port()
    p = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
                          "--listen=127.0.0.1", f"--port={port}", base],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("git daemon did not start")
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        p.terminate()
        p.wait(timeout=10)


@pytest.fixture()
def repo(tmp_path):  # type: ignore[no-untyped-def]
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path / "work"
    work.mkdir()
    w = str(work)
    git(w, "init", "-q", "-b", "main")
    (work / "README").write_text("v1\n")
    (work / "docs").mkdir()
    (work / "docs" / "guide.md").write_text("guide\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "run.sh", 0o755)
    git(w, "add", ".")
    git(w, "commit", "-q", "-m", "one")
    git(w, "tag", "v1")
    first = git(w, "rev-parse", "HEAD")
    served = tmp_path / "served"
    served.mkdir()
    git(str(served), "clone", "-q", "--bare", w, "r.git")
    with git_daemon(str(served)) as url:
        yield {"url": f"{url}/r.git", "work": w, "bare": str(served / "r.git"), "first": first,
               "served": str(served), "base": url}


def test_add_git_refs_subdirs_and_keep_git_dir(tmp_path, repo, root_only) -> None:  # type: ignore[no-untyped-def]
    url = repo["url"]
    cwd = project(tmp_path, f"""FROM scratch
ADD {url} /head/
ADD {url}#v1:docs /docs
ADD --keep-git-dir=true {url}#main /kept
ADD --chown=1000:1000 {url}#{repo["first"]} /bycommit
""")
    cache = str(tmp_path / "cache")
    r = bakery(cwd, cache)
    assert r.returncode == 0, r.stderr[-3000:]
    out = os.path.join(cwd, "out")
    assert sorted(os.listdir(os.path.join(out, "head"))) == ["README", "docs", "run.sh"]
    assert os.stat(os.path.join(out, "head", "run.sh")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(out, "head", "README")).st_mode & 0o777 == 0o644
    assert os.listdir(os.path.join(out, "docs")) == ["guide.md"]
    assert ".git" in os.listdir(os.path.join(out, "kept"))
    assert os.stat(os.path.join(out, "bycommit", "README")).st_uid == 1000

    # a new commit on main: HEAD and #main move, the tag and the commit do not
    with open(os.path.join(repo["work"], "README"), "w") as fh:
        fh.write("v2\n")
    git(repo["work"], "commit", "-q", "-am", "two")
    git(repo["work"], "push", "-q", repo["bare"], "main")
    again = bakery(cwd, cache)
    assert again.returncode == 0, again.stderr[-3000:]
    with open(os.path.join(out, "head", "README")) as fh:
        assert fh.read() == "v2\n"
    with open(os.path.join(out, "bycommit", "README")) as fh:
        assert fh.read() == "v1\n"


def test_add_git_unreachable_and_unknown_ref(tmp_path, repo, root_only) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cwd = project(tmp_path, f"FROM scratch\nADD git://127.0.0.1:{port}/r.git /src\n")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert f"failed to fetch git://127.0.0.1:{port}/r.git" in r.stderr and "Dockerfile:2" in r.stderr
    assert "Traceback" not in r.stderr

    cwd = project(tmp_path, f"FROM scratch\nADD {repo['url']}#nope /src\n")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert "ref 'nope' not found on the remote" in r.stderr


def test_add_git_checksum_pins_the_commit(tmp_path, repo, root_only) -> None:  # type: ignore[no-untyped-def]
    first = repo["first"]
    cwd = project(tmp_path, f"FROM scratch\nADD --checksum={first} {repo['url']}#v1 /src\n")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(os.listdir(os.path.join(cwd, "out", "src"))) == ["README", "docs", "run.sh"]

    wrong = "0" * 40
    cwd = project(tmp_path, f"FROM scratch\nADD --checksum={wrong} {repo['url']}#v1 /src\n")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 1, r.stderr
    assert f"expected checksum to match {wrong}, got {first}" in r.stderr
    assert "Dockerfile:2" in r.stderr


def test_fetch_http_directly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The engine's fetch alone: Content-Disposition when the op names no file,
    a truncated body is an error and leaves no file behind."""
    from bakery.engine.remote import fetch_http
    from bakery.errors import BakeryError
    from bakery.graph.ops import HttpSource

    files = Files()
    files.files["/dl"] = (b"payload", {"Content-Disposition": 'attachment; filename="named.bin"'})
    files.files["/cut"] = (b"partial", {"X-Truncate": "1"})
    with http_server(files) as base:
        out = tmp_path / "o"
        out.mkdir()
        res = fetch_http(HttpSource(f"{base}/dl", perm=0o640), str(out))
        assert res.filename == "named.bin" and res.size == 7
        assert res.digest == "sha256:" + hashlib.sha256(b"payload").hexdigest()
        assert os.stat(out / "named.bin").st_mode & 0o777 == 0o640
        with pytest.raises(BakeryError, match=f"failed to fetch {base}/cut: the connection closed after 7 of 107 bytes"):
            fetch_http(HttpSource(f"{base}/cut", "cut"), str(out))
        assert sorted(os.listdir(out)) == ["named.bin"]


def test_add_git_fetches_submodules_and_keeps_a_clean_git_dir(tmp_path, repo, root_only) -> None:  # type: ignore[no-untyped-def]
    # a second repository, served by the same daemon, as a submodule of the first
    sub = tmp_path / "subwork"
    sub.mkdir()
    git(str(sub), "init", "-q", "-b", "main")
    (sub / "lib.txt").write_text("from the submodule\n")
    git(str(sub), "add", ".")
    git(str(sub), "commit", "-q", "-m", "sub")
    git(repo["served"], "clone", "-q", "--bare", str(sub), "sub.git")
    git(repo["work"], "submodule", "add", "-q", f"{repo['base']}/sub.git", "vendor/sub")
    git(repo["work"], "commit", "-q", "-m", "with a submodule")
    git(repo["work"], "push", "-q", repo["bare"], "main")

    cwd = project(tmp_path, f"""FROM scratch
ADD {repo['url']}#main /src
ADD --keep-git-dir=true {repo['url']} /kept
""")
    r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = os.path.join(cwd, "out")
    with open(os.path.join(out, "src", "vendor", "sub", "lib.txt")) as fh:
        assert fh.read() == "from the submodule\n"
    assert ".git" not in os.listdir(os.path.join(out, "src"))
    kept = os.path.join(out, "kept")
    assert os.path.exists(os.path.join(kept, "vendor", "sub", "lib.txt"))
    assert not os.path.exists(os.path.join(kept, ".git", "FETCH_HEAD"))
    # the kept .git works: its origin is the remote, the default branch is a local ref
    assert git(kept, "remote", "get-url", "origin") == repo["url"]
    head = git(repo["work"], "rev-parse", "HEAD")
    assert git(kept, "rev-parse", "HEAD") == head == git(kept, "rev-parse", "refs/heads/main")


def test_add_url_with_an_etag_is_a_conditional_request(tmp_path, root_only) -> None:  # type: ignore[no-untyped-def]
    files = Files()
    files.files["/e.txt"] = (b"tagged 1\n", {"ETag": '"v1"'})
    with http_server(files) as base:
        cwd = project(tmp_path, f"FROM scratch\nADD {base}/e.txt /e.txt\n")
        cache = str(tmp_path / "cache")
        assert bakery(cwd, cache).returncode == 0
        again = bakery(cwd, cache)
        assert again.returncode == 0, again.stderr[-3000:]
        assert steps_run(again) == 0  # 304 Not Modified: nothing is fetched or copied
        assert files.conditional == ["", '"v1"']
        files.files["/e.txt"] = (b"tagged 2\n", {"ETag": '"v2"'})
        third = bakery(cwd, cache)
        assert third.returncode == 0 and steps_run(third) == 2
        with open(os.path.join(cwd, "out", "e.txt"), "rb") as fh:
            assert fh.read() == b"tagged 2\n"


@contextlib.contextmanager
def git_http(base: str) -> Iterator[str]:
    """Smart HTTP (``git http-backend`` as CGI) over the repositories in ``base``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from http.server import CGIHTTPRequestHandler

    cgi = os.path.join(base, "cgi-bin")
    os.makedirs(cgi, exist_ok=True)
    script = os.path.join(cgi, "git")
    with open(script, "w") as fh:
        fh.write(f"#!/bin/sh\nexport GIT_PROJECT_ROOT={base} GIT_HTTP_EXPORT_ALL=1\n"
                 "exec git http-backend\n")
    os.chmod(script, 0o755)

    class Handler(CGIHTTPRequestHandler):
        cgi_directories = ["/cgi-bin"]

        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=base, **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    # CGIHTTPRequestHandler runs scripts as nobody when root; the test's
    # directories are private to root: keep the CGI as this user
    saved = http.server.nobody_uid  # type: ignore[attr-defined]
    http.server.nobody_uid = os.getuid  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/cgi-bin/git"
    finally:
        srv.shutdown()
        srv.server_close()
        http.server.nobody_uid = saved  # type: ignore[attr-defined]


def test_add_git_over_smart_http(tmp_path, repo, root_only) -> None:  # type: ignore[no-untyped-def]
    with git_http(repo["served"]) as url:
        cwd = project(tmp_path, f"FROM scratch\nADD {url}/r.git#v1:docs /docs\n")
        r = bakery(cwd, str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.listdir(os.path.join(cwd, "out", "docs")) == ["guide.md"]
