"""Remote sources: a file over HTTP(S) and a git repository, fetched into a
directory that becomes the source's layer.

HTTP (BuildKit's source/http):

* the file is ``/<name>`` where the name is the op's ``filename``, else the
  Content-Disposition ``filename``, else the URL path's last segment, else
  ``index`` (:func:`http_filename`);
* its mode is ``perm`` (0600 when 0), its owner ``uid:gid``, its mtime the
  response's Last-Modified (the epoch without one);
* with a ``checksum`` the content must have that digest, else the step
  fails ("digest mismatch");
* :func:`http_pin` is the key the steps after an unpinned URL are cached
  under: the digest of the content, the file name, mode, owner and
  Last-Modified, as BuildKit's ``formatCacheKey``.
* a URL fetched before with an ETag is asked again with If-None-Match; a
  304 means the last fetch (its layer and pin, kept by the engine under
  :func:`http_meta_key`) still holds.

Git (BuildKit's source/git): ``git ls-remote`` resolves the ref (the
default branch when there is none) to a commit (:func:`git_resolve`); a
shallow fetch, a checkout and ``git submodule update --init --recursive
--depth=1`` fill the directory (:func:`git_fetch`); ``.git`` is left out
unless ``keep_git_dir`` (and no subdir); a ``subdir`` becomes the root.

Every failure is a :class:`BakeryError` that names the URL.

Example::

    res = fetch_http(HttpSource("http://127.0.0.1:8000/a.txt"), "/tmp/dir")
    res.filename, res.digest    # ('a.txt', 'sha256:...')
"""

from __future__ import annotations

import contextlib
import email.message
import email.utils
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from bakery import __version__
from bakery.errors import BakeryError
from bakery.graph.ops import GitSource, HttpSource, parse_checksum

__all__ = [
    "HttpResult",
    "fetch_http",
    "git_fetch",
    "git_pin",
    "git_resolve",
    "http_filename",
    "http_meta_key",
    "http_pin",
    "last_modified",
    "safe_filename",
]

_TIMEOUT = 60.0  # seconds without progress before a fetch fails
_CHUNK = 1 << 20


@dataclass(frozen=True)
class HttpResult:
    digest: str  # "sha256:..." of the content (the checksum's algorithm when given)
    filename: str
    last_modified: str  # the Last-Modified header as sent ("" without one)
    size: int
    etag: str = ""  # the response's ETag ("" without one)
    not_modified: bool = False  # 304 to our If-None-Match: nothing was written


def http_meta_key(src_key: str) -> str:
    """Where the engine keeps the ETag and pin of a URL's last fetch."""
    return "sha256:" + hashlib.sha256(f"bakery-http-etag-v1\n{src_key}".encode()).hexdigest()


def safe_filename(name: str) -> str:
    """The last segment of ``name`` cleaned, ``index`` when nothing is left."""
    base = posixpath.basename(posixpath.normpath("/" + name.replace("\\", "/")))
    return base if base not in ("", ".", "..", "/") else "index"


def http_filename(url: str, manual: str, content_disposition: str = "") -> str:
    """The name of the fetched file (BuildKit's getFileName)."""
    if manual:
        return safe_filename(manual)
    if content_disposition:
        msg = email.message.Message()
        msg["content-disposition"] = content_disposition
        params = dict((k.lower(), v) for k, v in msg.get_params(header="content-disposition") or [])
        fn = params.get("filename")
        if isinstance(fn, tuple):  # RFC 2231 encoded
            fn = email.utils.collapse_rfc2231_value(fn)
        if fn and not str(fn).endswith("/"):
            return safe_filename(str(fn))
    path = urllib.parse.urlsplit(url).path
    base = posixpath.basename(posixpath.normpath(path)) if path else ""
    if base not in ("", ".", "/"):
        return safe_filename(base)
    return "index"


def last_modified(header: str) -> Optional[float]:
    """Seconds since the epoch of an HTTP date, None when it does not parse."""
    if not header:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return dt.timestamp()


def http_pin(src: HttpSource, result: HttpResult) -> str:
    """The cache key of what an unpinned URL gave (BuildKit's formatCacheKey):
    the content digest with the file's name, mode, owner and mtime."""
    doc = {
        "Filename": result.filename, "Perm": src.perm, "UID": src.uid, "GID": src.gid,
        "Checksum": result.digest,
    }
    if result.last_modified:
        doc["LastModTime"] = result.last_modified
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(b"bakery-http-v1\n" + text.encode()).hexdigest()


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, "xxxxx@" + host, parts.path, parts.query, parts.fragment))


def fetch_http(src: HttpSource, dest_dir: str, timeout: float = _TIMEOUT, etag: str = "") -> HttpResult:
    """GET ``src.url`` into ``dest_dir/<name>``; verify the checksum.  With
    the ``etag`` of an earlier fetch the request is conditional
    (If-None-Match, as BuildKit's): a 304 gives ``not_modified``."""
    url = _redact(src.url)
    alg = "sha256"
    want = ""
    if src.checksum:
        try:
            alg, want = parse_checksum(src.checksum)
        except ValueError as e:
            raise BakeryError(f"{url}: {e}") from None
    headers = {"User-Agent": f"bakery/{__version__}"}
    if etag:
        headers["If-None-Match"] = etag
    req = urllib.request.Request(src.url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 304 and etag:
            e.close()
            return HttpResult("", "", "", 0, etag=etag, not_modified=True)
        raise BakeryError(f"failed to fetch {url}: invalid response status {e.code}",
                          hint="check the URL") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise BakeryError(
            f"failed to fetch {url}: {reason}",
            hint="check that the host is reachable from this machine (proxies come from "
                 "HTTP_PROXY/HTTPS_PROXY/NO_PROXY in bakery's environment)",
        ) from None
    with resp:
        status = getattr(resp, "status", 200)
        if status < 200 or status >= 400:
            raise BakeryError(f"failed to fetch {url}: invalid response status {status}")
        name = http_filename(src.url, src.filename, resp.headers.get("Content-Disposition", ""))
        lm = resp.headers.get("Last-Modified", "") or ""
        out = os.path.join(dest_dir, name)
        perm = src.perm or 0o600
        h = hashlib.new(alg)
        size = 0
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, perm)
        try:
            with os.fdopen(fd, "wb") as fh:
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise BakeryError(f"failed to fetch {url}: {e!r}") from None
                    if not chunk:
                        break
                    h.update(chunk)
                    fh.write(chunk)
                    size += len(chunk)
            expected = resp.headers.get("Content-Length", "")
            if expected.isdigit() and int(expected) != size:
                raise BakeryError(f"failed to fetch {url}: the connection closed after {size} "
                                  f"of {expected} bytes", hint="try again")
        except BaseException:
            os.unlink(out)
            raise
    digest = f"{alg}:{h.hexdigest()}"
    if want and h.hexdigest() != want:
        os.unlink(out)
        raise BakeryError(
            f"digest mismatch for {url}: {digest} (expected: {src.checksum})",
            hint="the file changed on the server, or the --checksum is wrong",
        )
    os.chmod(out, perm)
    if src.uid or src.gid:
        os.lchown(out, src.uid, src.gid)
    mtime = last_modified(lm)
    t = mtime if mtime is not None else 0.0
    os.utime(out, (t, t))
    return HttpResult(digest, name, lm, size, etag=resp.headers.get("ETag", "") or "")


# -- git ---------------------------------------------------------------------

_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")


def _git(args: Sequence[str], cwd: Optional[str], what: str, timeout: float = 600.0) -> str:
    git = shutil.which("git")
    if git is None:
        raise BakeryError(f"{what}: the git binary is not installed", hint="apt-get install git")
    env = dict(os.environ)
    env.update({
        "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": env.get("HOME", "/root"), "LC_ALL": "C",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    })
    try:
        r = subprocess.run([git, "-c", "protocol.file.allow=never", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BakeryError(f"{what}: git {args[0]} timed out after {timeout:.0f}s") from None
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().splitlines()
        raise BakeryError(f"{what}: {err[-1] if err else f'git {args[0]} failed'}",
                          hint="check that the repository is reachable and the ref exists")
    return r.stdout


def git_resolve(src: GitSource) -> Tuple[str, str]:
    """(ref, commit): the commit ``src.ref`` names on the remote (``git
    ls-remote``); without a ref, the remote's default branch (``ls-remote
    --symref HEAD``, as BuildKit); a full commit hash is used as is."""
    what = f"failed to fetch {_redact(src.remote)}"
    ref = src.ref
    if _SHA.match(ref):
        commit = ref
    else:
        args = ["ls-remote", "--symref", src.remote, "HEAD"] if not ref else \
            ["ls-remote", src.remote, ref, f"{ref}^{{}}"]
        out = _git(args, None, what, timeout=120.0)
        refs: List[Tuple[str, str]] = []
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if sha.startswith("ref: ") and name.strip() == "HEAD":
                target = sha[len("ref: "):].strip()
                ref = target[len("refs/heads/"):] if target.startswith("refs/heads/") else target
            elif sha and name:
                refs.append((sha.strip(), name.strip()))
        commit = ""
        if not src.ref:
            commit = next((s for s, n in refs if n == "HEAD"), "")
            if not ref:
                raise BakeryError(f"{what}: could not find the default branch of the repository",
                                  hint="name a branch, a tag or a commit after '#'")
        else:
            # a peeled tag (^{}) names the commit; branches before tags, as git does
            for cand in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref,
                         f"{ref}^{{}}"):
                commit = next((s for s, n in refs if n == cand), "")
                if commit:
                    break
            if not commit and re.fullmatch(r"[0-9a-f]{7,64}", ref):
                commit = ref  # an abbreviated commit: fetched and checked below
        if not commit:
            raise BakeryError(f"{what}: ref {ref or 'HEAD'!r} not found on the remote",
                              hint="name a branch, a tag or a full commit hash")
    if src.checksum and not commit.startswith(src.checksum):
        raise BakeryError(f"{what}: expected checksum to match {src.checksum}, got {commit}")
    return ref, commit


def git_pin(src_key: str, commit: str) -> str:
    """The cache key of a git source once its ref is resolved."""
    return "sha256:" + hashlib.sha256(f"bakery-git-v1\n{src_key}\n{commit}".encode()).hexdigest()


def git_fetch(src: GitSource, ref: str, commit: str, dest_dir: str,
              work_parent: Optional[str] = None) -> str:
    """Check ``commit`` (what ``ref`` resolved to, see :func:`git_resolve`)
    of ``src.remote`` out into the empty ``dest_dir``, submodules included
    (``submodule update --init --recursive --depth=1``, as BuildKit); returns
    the full commit hash.  With ``keep_git_dir`` (and no subdir) the
    checkout keeps a shallow ``.git`` whose origin is the remote (without
    credentials), with the ref as a local ref and no reflog or FETCH_HEAD."""
    what = f"failed to fetch {_redact(src.remote)}"
    work = tempfile.mkdtemp(prefix="bakery-git-", dir=work_parent)
    keep = src.keep_git_dir and not src.subdir.strip("/")
    try:
        _git(["-c", "init.defaultBranch=master", "init", "-q", work], None, what)
        _git(["remote", "add", "origin", src.remote], work, what)
        by_name = not re.fullmatch(r"[0-9a-f]{7,64}", ref)
        if by_name:
            spec = f"{ref}:{ref}" if keep else ref
            _git(["fetch", "-q", "-u", "--depth=1", "--no-tags", "origin", spec], work, what)
            full = _git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], work, what).strip()
        elif len(commit) >= 40:
            _git(["fetch", "-q", "--depth=1", "--no-tags", "origin", commit], work, what)
            full = _git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], work, what).strip()
        else:  # an abbreviated hash cannot be fetched by name: fetch the branches
            _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], work, what)
            full = _git(["rev-parse", "--verify", f"{commit}^{{commit}}"], work, what).strip()
        if not full.startswith(commit):
            raise BakeryError(f"{what}: {ref} moved to {full[:12]} while fetching "
                              f"(resolved {commit[:12]})", hint="run the build again")
        old = os.umask(0o022)
        try:
            _git(["-c", "advice.detachedHead=false", "checkout", "-q", full], work, what)
            _git(["-c", "protocol.file.allow=never", "submodule", "update", "--init", "--recursive",
                  "--depth=1"], work, f"failed to update submodules for {_redact(src.remote)}")
        finally:
            os.umask(old)
        if keep:
            _git(["remote", "set-url", "origin", _redact(src.remote)], work, what)
            _git(["reflog", "expire", "--all", "--expire=now"], work, what)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(work, ".git", "FETCH_HEAD"))
        root = work
        if src.subdir.strip("/"):
            root = os.path.realpath(os.path.join(work, src.subdir.strip("/")))
            if not (root == work or root.startswith(work + os.sep)) or not os.path.isdir(root):
                raise BakeryError(f"{what}: subdirectory {src.subdir!r} not found at {full[:12]}")
        for name in sorted(os.listdir(root)):
            if name == ".git" and not (keep and root == work):
                continue
            shutil.move(os.path.join(root, name), os.path.join(dest_dir, name))
        return full
    finally:
        shutil.rmtree(work, ignore_errors=True)
