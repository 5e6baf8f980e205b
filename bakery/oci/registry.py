"""A registry client (OCI distribution spec / Docker registry API v2).

Standard library only (``http.client``).  What it does:

* pull: manifests and indexes (``Accept`` lists the OCI and Docker types),
  picking one platform from an index when asked; blobs streamed to a
  temporary file and checked against their digest and size before they are
  renamed into the :class:`~bakery.oci.store.BlobStore`;
* push: each blob is checked with ``HEAD`` first (so a push that failed half
  way resumes without re-uploading what the registry already has), mounted
  from another repository of the same registry when the client knows one
  that has it (``POST ?mount=&from=``), else uploaded with one ``PUT`` (small
  blobs) or ``PATCH`` chunks and a closing ``PUT``; then the manifests by
  digest and the root (manifest or index) by tag, each with its own
  ``Content-Type``;
* auth: anonymous or credentialed bearer tokens from the ``WWW-Authenticate``
  challenge, basic auth, and credentials from Docker's ``config.json``
  (``auths``, ``credsStore``, ``credHelpers`` via ``docker-credential-NAME
  get``); credentials never appear in logs or error messages;
* transport: plain HTTP only for loopback hosts (``localhost``,
  ``127.0.0.0/8``, ``::1``) and registries marked insecure; HTTPS with the
  system CAs otherwise, plus a per-registry CA file; bounded retries with
  exponential backoff on 429, 5xx and dropped connections.

Example::

    >>> client = RegistryClient(retries=3)
    >>> result = client.push(store, index, "127.0.0.1:5000/team/app:v1")
    >>> result.digest == index.digest, sorted(result.uploaded) != []
    (True, True)
    >>> root = client.pull("127.0.0.1:5000/team/app:v1", store2, platform="linux/arm64")
    >>> str(root.platform)
    'linux/arm64'
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import logging
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import (
    IO,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from bakery.errors import BakeryError
from bakery.oci.media import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    check_digest,
    digest_bytes,
    is_index,
    is_manifest,
    normalize_platform,
    platform_compatible,
)
from bakery.oci.reference import DOCKER_HUB, Reference, parse_reference
from bakery.oci.store import BlobStore, walk

__all__ = [
    "Challenge",
    "Credentials",
    "PushResult",
    "Reference",
    "RegistryClient",
    "RegistryOptions",
    "docker_credentials",
    "is_loopback",
    "parse_reference",
    "parse_www_authenticate",
]

log = logging.getLogger("bakery.oci.registry")

T = TypeVar("T")

MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
MAX_MANIFEST = 4 << 20
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

# -- WWW-Authenticate -----------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercased: "bearer", "basic"
    params: Dict[str, str]


_TCHAR = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"


def _token_at(s: str, i: int) -> Tuple[str, int]:
    j = i
    while j < len(s) and s[j] in _TCHAR:
        j += 1
    return s[i:j], j


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


_TOKEN68_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def parse_www_authenticate(value: str) -> List[Challenge]:
    """The challenges in a ``WWW-Authenticate`` header (RFC 7235), e.g.
    ``Bearer realm="https://auth.io/token",service="reg",scope="a:b:pull"``.
    Schemes and parameter names are lowercased; a token68 is under ``""``."""
    out: List[Challenge] = []
    s, i, n = value or "", 0, len(value or "")
    while i < n:
        while i < n and s[i] in " \t,":
            i += 1
        scheme, i = _token_at(s, i)
        if not scheme:
            break
        params: Dict[str, str] = {}
        i = _skip_ws(s, i)
        m = _TOKEN68_RE.match(s, i)
        if m and (_skip_ws(s, m.end()) >= n or s[_skip_ws(s, m.end())] == ","):
            params[""] = m.group(0)
            i = m.end()
            out.append(Challenge(scheme.lower(), params))
            continue
        while True:
            i = _skip_ws(s, i)
            key, j = _token_at(s, i)
            k = _skip_ws(s, j)
            if not key or k >= n or s[k] != "=":
                break
            i = _skip_ws(s, k + 1)
            if i < n and s[i] == '"':
                i += 1
                buf = []
                while i < n and s[i] != '"':
                    if s[i] == "\\" and i + 1 < n:
                        i += 1
                    buf.append(s[i])
                    i += 1
                i += 1
                val = "".join(buf)
            else:
                j = i
                while j < n and s[j] not in ", \t":
                    j += 1
                val, i = s[i:j], j
            params[key.lower()] = val
            i = _skip_ws(s, i)
            if i >= n or s[i] != ",":
                break
            # another parameter of this challenge, or the next challenge?
            nxt = _skip_ws(s, i + 1)
            key2, j2 = _token_at(s, nxt)
            k2 = _skip_ws(s, j2)
            i = nxt
            if not (key2 and k2 < n and s[k2] == "="):
                break
        out.append(Challenge(scheme.lower(), params))
    return out


# -- credentials -----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret (a password or an identity token)."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=***)"


def _docker_config_path(env: Mapping[str, str]) -> str:
    base = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _auth_key_host(key: str) -> str:
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    k = k.split("/", 1)[0]
    if k in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    return k


def _helper_get(helper: str, server: str, env: Mapping[str, str]) -> Optional[Credentials]:
    prog = "docker-credential-" + helper
    exe = shutil.which(prog, path=env.get("PATH"))
    if exe is None:
        log.warning("the credential helper %s is not installed; going on without credentials for %s",
                    prog, server)
        return None
    try:
        r = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=60,
                           env=dict(env))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BakeryError(f"the credential helper {prog} failed: {e.__class__.__name__}") from None
    out = r.stdout.decode("utf-8", "replace").strip()
    if r.returncode != 0:
        msg = (out or r.stderr.decode("utf-8", "replace")).strip()
        if "credentials not found" in msg.lower():
            return None
        raise BakeryError(f"the credential helper {prog} failed for {server}: {msg[:200]}",
                          hint=f"check it with: echo {server} | {prog} get")
    try:
        doc = json.loads(out)
        user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    except (ValueError, AttributeError):
        raise BakeryError(f"the credential helper {prog} printed something that is not JSON") from None
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def docker_credentials(registry: str, config_path: Optional[str] = None,
                       env: Optional[Mapping[str, str]] = None) -> Optional[Credentials]:
    """Credentials for ``registry`` (``docker.io``, ``host:port``) from Docker's
    config.json: ``credHelpers``, then ``credsStore``, then ``auths``."""
    env = os.environ if env is None else env
    path = config_path or _docker_config_path(env)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BakeryError(f"cannot read the Docker config {path}: {e}") from None
    if not isinstance(doc, dict):
        raise BakeryError(f"the Docker config {path} is not a JSON object")
    host = _auth_key_host(registry)
    server = DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB else host
    helpers = doc.get("credHelpers") or {}
    helper = None
    for key, name in helpers.items():
        if _auth_key_host(key) == host:
            helper = name
    if helper is None and doc.get("credsStore"):
        helper = doc["credsStore"]
    if helper:
        creds = _helper_get(str(helper), server, env)
        if creds is not None:
            return creds
    for key, entry in (doc.get("auths") or {}).items():
        if _auth_key_host(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(username=str(entry.get("username", "")),
                               identity_token=str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                raw = base64.b64decode(str(entry["auth"]), validate=False).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise BakeryError(f"the auth entry for {host} in {path} is not valid base64",
                                  hint=f"log in again: docker login {host}") from None
            if ":" not in raw:
                raise BakeryError(f"the auth entry for {host} in {path} is not user:password",
                                  hint=f"log in again: docker login {host}")
            user, pw = raw.split(":", 1)
            return Credentials(user, pw)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
    return None


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryOptions:
    """Per-registry transport options.

    ``insecure``: plain HTTP allowed, or HTTPS without certificate checks
    when ``plain_http`` is False; ``plain_http``: None picks HTTP for
    loopback and insecure hosts, HTTPS otherwise; ``ca_file``: an extra CA
    bundle (PEM) trusted for this registry."""

    insecure: bool = False
    plain_http: Optional[bool] = None
    ca_file: Optional[str] = None


def _split_host(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = _split_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _redact_url(url: str) -> str:
    """A URL fit for messages: no user info, no query string."""
    p = urllib.parse.urlsplit(url)
    netloc = p.hostname or ""
    if p.port:
        netloc += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


# -- transport -------------------------------------------------------------------------


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class _FileBody:
    """A re-openable request body: ``length`` bytes of ``path`` from ``offset``."""

    def __init__(self, path: str, offset: int, length: int):
        self.path, self.offset, self.length = path, offset, length

    def open(self) -> _Limited:
        f = open(self.path, "rb")  # noqa: SIM115 (closed by _Limited.close)
        f.seek(self.offset)
        return _Limited(f, self.length)


class _Limited:
    def __init__(self, f: IO[bytes], n: int):
        self.f, self.left = f, n

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


Body = Union[None, bytes, _FileBody]


class _Response:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str):
        self.conn, self.raw, self.url = conn, resp, url
        self.status = resp.status
        self.headers = resp.headers

    def read(self, limit: Optional[int] = None) -> bytes:
        try:
            data = self.raw.read() if limit is None else self.raw.read(limit + 1)
        except (OSError, http.client.HTTPException) as e:
            raise _Retryable(f"reading the response from {_redact_url(self.url)}: {e}") from None
        if limit is not None and len(data) > limit:
            raise BakeryError(f"the response from {_redact_url(self.url)} is larger than {limit} bytes")
        return data

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            self.conn.close()

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""


def _error_detail(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
        errs = doc.get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip().splitlines()
    return f"HTTP {status}" + (f": {text[0][:200]}" if text else "")


@dataclass
class PushResult:
    """What a push did: the root's digest and, by blob digest, what happened."""

    digest: str
    uploaded: List[str] = field(default_factory=list)
    mounted: List[str] = field(default_factory=list)
    existed: List[str] = field(default_factory=list)
    manifests: List[str] = field(default_factory=list)


# -- the client ------------------------------------------------------------------------


class RegistryClient:
    """Talks to registries; one instance may serve several registries.

    ``credentials`` maps a registry (``docker.io``, ``host:port``) to
    :class:`Credentials`; registries without an entry get theirs from
    Docker's config.json (``docker_config`` or ``$DOCKER_CONFIG``), unless
    ``use_docker_config`` is False.
    """

    def __init__(
        self,
        *,
        credentials: Optional[Mapping[str, Credentials]] = None,
        options: Optional[Mapping[str, RegistryOptions]] = None,
        insecure_registries: Iterable[str] = (),
        docker_config: Optional[str] = None,
        use_docker_config: bool = True,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        timeout: float = 120.0,
        chunk_size: int = 8 << 20,
        monolithic_limit: int = 32 << 20,
        user_agent: str = "bakery/0.1",
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._credentials: Dict[str, Optional[Credentials]] = dict(credentials or {})
        self._options: Dict[str, RegistryOptions] = dict(options or {})
        for host in insecure_registries:
            self._options.setdefault(host, RegistryOptions(insecure=True))
        self.docker_config = docker_config
        self.use_docker_config = use_docker_config
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.chunk_size = max(1, chunk_size)
        self.monolithic_limit = monolithic_limit
        self.user_agent = user_agent
        self._sleep = sleep
        # (host, scopes) -> "Bearer ..." / "Basic ..."
        self._auth_cache: Dict[Tuple[str, Tuple[str, ...]], str] = {}
        self._basic_hosts: Set[str] = set()
        # (host, digest) -> repositories known to have the blob (for mounts)
        self._sources: Dict[Tuple[str, str], List[str]] = {}

    # -- configuration -------------------------------------------------------------

    def options_for(self, host: str) -> RegistryOptions:
        return self._options.get(host) or self._options.get(_split_host(host)) or RegistryOptions()

    def scheme_for(self, host: str) -> str:
        opts = self.options_for(host)
        if opts.plain_http is not None:
            if opts.plain_http and not (opts.insecure or is_loopback(host)):
                raise BakeryError(f"plain HTTP to {host} is only allowed for insecure registries",
                                  hint=f"mark {host} insecure, or use HTTPS")
            return "http" if opts.plain_http else "https"
        return "http" if (opts.insecure or is_loopback(host)) else "https"

    def _ssl_context(self, host: str) -> ssl.SSLContext:
        opts = self.options_for(host)
        ctx = ssl.create_default_context()
        if opts.ca_file:
            try:
                ctx.load_verify_locations(cafile=opts.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise BakeryError(f"cannot load the CA file {opts.ca_file} for {host}: {e}") from None
        if opts.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def credentials_for(self, registry: str) -> Optional[Credentials]:
        if registry not in self._credentials:
            creds = None
            if self.use_docker_config:
                creds = docker_credentials(registry, self.docker_config)
            self._credentials[registry] = creds
        return self._credentials[registry]

    # -- one HTTP exchange ---------------------------------------------------------------

    def _connect(self, url: str) -> Tuple[http.client.HTTPConnection, str]:
        p = urllib.parse.urlsplit(url)
        host = p.netloc
        conn: http.client.HTTPConnection
        if p.scheme == "https":
            conn = http.client.HTTPSConnection(p.hostname or "", p.port, timeout=self.timeout,
                                               context=self._ssl_context(host))
        elif p.scheme == "http":
            if not (is_loopback(host) or self.options_for(host).insecure):
                raise BakeryError(f"refusing plain HTTP to {host}",
                                  hint=f"mark {host} as an insecure registry to allow it")
            conn = http.client.HTTPConnection(p.hostname or "", p.port, timeout=self.timeout)
        else:
            raise BakeryError(f"unsupported URL scheme in {_redact_url(url)}")
        path = p.path or "/"
        if p.query:
            path += "?" + p.query
        return conn, path

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> _Response:
        """One request; connection failures and 429/5xx raise _Retryable."""
        conn, path = self._connect(url)
        hdrs = {"User-Agent": self.user_agent, **headers}
        stream: Optional[_Limited] = None
        try:
            if isinstance(body, _FileBody):
                stream = body.open()
                hdrs["Content-Length"] = str(body.length)
                conn.request(method, path, body=stream, headers=hdrs)
            else:
                if body is not None or method in ("PUT", "POST", "PATCH"):
                    hdrs["Content-Length"] = str(len(body or b""))
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            host = urllib.parse.urlsplit(url).netloc
            raise BakeryError(f"TLS certificate of {host} not trusted: {e.verify_message}",
                              hint="give the registry's CA file (ca_file), or mark it insecure") from None
        except ssl.SSLError as e:
            conn.close()
            raise BakeryError(f"TLS error talking to {_redact_url(url)}: {e.reason}",
                              hint="is it an HTTP-only registry? mark it insecure to use HTTP") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _Retryable(f"{method} {_redact_url(url)}: {e.__class__.__name__}: {e}") from None
        finally:
            if stream is not None:
                stream.close()
        r = _Response(conn, resp, url)
        if r.status in RETRY_STATUSES:
            detail = _error_detail(r.status, self._drain(r))
            after: Optional[float] = None
            ra = r.header("Retry-After")
            if ra.strip().isdigit():
                after = float(ra.strip())
            raise _Retryable(f"{method} {_redact_url(url)}: {detail}", after)
        return r

    def _drain(self, r: _Response) -> bytes:
        try:
            return r.read(1 << 16)
        except (BakeryError, _Retryable):
            return b""
        finally:
            r.close()

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except _Retryable as e:
                if attempt >= self.retries:
                    raise BakeryError(
                        f"{what} failed: {e}" + (f" (after {attempt + 1} attempts)" if attempt else ""),
                        hint="the registry or the network failed; try again later") from None
                wait = min(e.retry_after if e.retry_after is not None else delay, self.max_backoff)
                log.info("%s: %s; retrying in %.1fs", what, e, wait)
                self._sleep(wait)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    # -- auth --------------------------------------------------------------------------

    def _fetch_token(self, ref: Reference, challenge: Challenge, scopes: Sequence[str]) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise BakeryError(f"{ref.registry} sent a bearer challenge without a usable realm")
        creds = self.credentials_for(ref.registry)
        query: List[Tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        wanted = list(scopes)
        for s in challenge.params.get("scope", "").split():
            if s not in wanted:
                wanted.append(s)
        headers: Dict[str, str] = {}
        body: Optional[bytes] = None
        method = "GET"
        if creds is not None and creds.identity_token:
            method = "POST"
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                    ("client_id", "bakery"), *query, ("scope", " ".join(wanted))]
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            query += [("scope", s) for s in wanted]
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            if creds is not None and creds.username:
                headers["Authorization"] = creds.basic()
        host = urllib.parse.urlsplit(url).netloc
        if urllib.parse.urlsplit(url).scheme == "http" and not (
                is_loopback(host) or self.options_for(host).insecure
                or self.options_for(ref.api_host).insecure):
            raise BakeryError(f"the token service {_redact_url(url)} is plain HTTP; refusing to use it")
        r = self._send(method, url, headers, body)
        try:
            data = r.read(1 << 20)
        finally:
            r.close()
        if r.status in (401, 403):
            raise BakeryError(
                f"authentication to {ref.registry} failed: {_error_detail(r.status, data)}",
                hint=f"check the credentials: docker login {ref.registry}")
        if r.status != 200:
            raise BakeryError(f"the token service of {ref.registry} answered "
                              f"{_error_detail(r.status, data)}")
        try:
            doc = json.loads(data)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise BakeryError(f"the token service of {ref.registry} sent no token")
        return "Bearer " + str(token)

    def _authorize(self, ref: Reference, r: _Response, scopes: Sequence[str]) -> Optional[str]:
        """The Authorization value answering the 401 ``r``, or None if none can."""
        challenges = parse_www_authenticate(r.header("WWW-Authenticate"))
        for ch in challenges:
            if ch.scheme == "bearer":
                return self._fetch_token(ref, ch, scopes)
        for ch in challenges:
            if ch.scheme == "basic":
                creds = self.credentials_for(ref.registry)
                if creds is None or not creds.username:
                    return None
                self._basic_hosts.add(ref.api_host)
                return creds.basic()
        return None

    def _request(self, ref: Reference, method: str, url: str, scopes: Sequence[str],
                 headers: Optional[Mapping[str, str]] = None, body: Body = None,
                 ok: Sequence[int] = (200,)) -> _Response:
        """One authorised request (a 401 answered once); a non-``ok`` status
        other than 404 becomes a BakeryError."""
        key = (ref.api_host, tuple(scopes))
        hdrs = dict(headers or {})
        auth = self._auth_cache.get(key)
        if auth is None and ref.api_host in self._basic_hosts:
            creds = self.credentials_for(ref.registry)
            auth = creds.basic() if creds else None
        if auth:
            hdrs["Authorization"] = auth
        r = self._send(method, url, hdrs, body)
        if r.status == 401:
            answer = self._authorize(ref, r, scopes)
            self._drain(r)
            if answer is None:
                raise BakeryError(f"{ref.registry} requires authentication for {ref.repository}",
                                  hint=f"log in: docker login {ref.registry}")
            self._auth_cache[key] = answer
            hdrs["Authorization"] = answer
            r = self._send(method, url, hdrs, body)
        if r.status in ok or r.status == 404:
            return r
        detail = _error_detail(r.status, self._drain(r))
        if r.status == 401:
            raise BakeryError(f"{ref.registry} denied access to {ref.repository}: {detail}",
                              hint=f"check the credentials: docker login {ref.registry}")
        if r.status == 403:
            raise BakeryError(f"{ref.registry} forbids {method} on {ref.repository}: {detail}",
                              hint="check that your account may access this repository")
        raise BakeryError(f"{method} {_redact_url(url)} failed: {detail}")

    # -- URLs ------------------------------------------------------------------------------

    def _url(self, ref: Reference, path: str) -> str:
        return f"{self.scheme_for(ref.api_host)}://{ref.api_host}/v2/{ref.repository}/{path}"

    @staticmethod
    def _ref(ref: Union[str, Reference]) -> Reference:
        return parse_reference(ref) if isinstance(ref, str) else ref

    @staticmethod
    def _pull_scope(ref: Reference) -> List[str]:
        return [f"repository:{ref.repository}:pull"]

    @staticmethod
    def _push_scope(ref: Reference) -> List[str]:
        return [f"repository:{ref.repository}:pull,push"]

    # -- manifests -----------------------------------------------------------------------

    def get_manifest(self, ref: Union[str, Reference]) -> Tuple[bytes, Descriptor]:
        """The raw manifest or index that ``ref`` names, and its descriptor."""
        r_ = self._ref(ref)
        url = self._url(r_, "manifests/" + r_.reference)

        def once() -> Tuple[bytes, Descriptor]:
            r = self._request(r_, "GET", url, self._pull_scope(r_), {"Accept": MANIFEST_ACCEPT})
            try:
                data = r.read(MAX_MANIFEST)
            finally:
                r.close()
            if r.status == 404:
                raise BakeryError(f"{r_}: not found ({_error_detail(404, data)})",
                                  hint="check the name and the tag, and that it was pushed")
            return data, self._manifest_desc(r_, data, r.header("Content-Type"))

        return self._retrying(f"fetching the manifest of {r_}", once)

    def _manifest_desc(self, ref: Reference, data: bytes, content_type: str) -> Descriptor:
        digest = digest_bytes(data)
        if ref.digest and ref.digest != digest:
            raise BakeryError(f"{ref}: the registry sent a manifest with digest {digest}",
                              hint="the registry is serving corrupt or tampered content")
        media = content_type.split(";", 1)[0].strip()
        try:
            doc = json.loads(data)
        except ValueError:
            raise BakeryError(f"{ref}: the manifest is not valid JSON") from None
        if not isinstance(doc, dict):
            raise BakeryError(f"{ref}: the manifest is not a JSON object")
        if doc.get("schemaVersion") == 1:
            raise BakeryError(f"{ref}: Docker image manifest v2 schema 1 is not supported",
                              hint="push the image again with a current client")
        if media not in MANIFEST_TYPES | INDEX_TYPES:
            media = str(doc.get("mediaType") or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST))
        if media not in MANIFEST_TYPES | INDEX_TYPES:
            raise BakeryError(f"{ref}: unsupported manifest type {media!r}")
        return Descriptor(media, digest, len(data))

    def head_manifest(self, ref: Union[str, Reference]) -> Optional[Descriptor]:
        r_ = self._ref(ref)
        url = self._url(r_, "manifests/" + r_.reference)

        def once() -> Optional[Descriptor]:
            r = self._request(r_, "HEAD", url, self._pull_scope(r_), {"Accept": MANIFEST_ACCEPT})
            r.close()
            if r.status == 404:
                return None
            digest = r.header("Docker-Content-Digest")
            size = r.header("Content-Length")
            if not digest or not size.isdigit():
                return None
            return Descriptor(r.header("Content-Type").split(";")[0].strip(), digest, int(size))

        return self._retrying(f"checking {r_}", once)

    def put_manifest(self, ref: Union[str, Reference], data: bytes, media_type: str) -> Descriptor:
        """Store a manifest or an index under ``ref``'s tag (or digest)."""
        r_ = self._ref(ref)
        digest = digest_bytes(data)
        target = r_.tag if r_.tag and not r_.digest else digest
        if r_.digest and r_.digest != digest:
            raise BakeryError(f"pushing {r_}: the manifest's digest is {digest}")
        url = self._url(r_, "manifests/" + target)

        def once() -> Descriptor:
            r = self._request(r_, "PUT", url, self._push_scope(r_),
                              {"Content-Type": media_type}, data, ok=(200, 201, 202))
            body = self._drain(r)
            if r.status == 404:
                raise BakeryError(f"pushing the manifest {digest} to {r_.name} failed: "
                                  + _error_detail(404, body))
            got = r.header("Docker-Content-Digest")
            if got and got != digest:
                raise BakeryError(f"{r_.name}: the registry stored the manifest as {got}, not {digest}",
                                  hint="the registry rewrote the manifest; it may not support "
                                       + media_type)
            return Descriptor(media_type, digest, len(data))

        return self._retrying(f"pushing the manifest {digest} to {r_.name}", once)

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, ref: Union[str, Reference], digest: str, push: bool = False) -> bool:
        r_ = self._ref(ref)
        url = self._url(r_, "blobs/" + check_digest(digest))
        scopes = self._push_scope(r_) if push else self._pull_scope(r_)

        def once() -> bool:
            r = self._request(r_, "HEAD", url, scopes)
            r.close()
            return r.status == 200

        return self._retrying(f"checking the blob {digest} in {r_.name}", once)

    def fetch_blob(self, ref: Union[str, Reference], desc: Descriptor, store: BlobStore) -> None:
        """Download a blob into ``store``, verified against its digest and size."""
        r_ = self._ref(ref)
        if store.has(desc.digest):
            return
        url = self._url(r_, "blobs/" + desc.digest)
        self._retrying(f"fetching the blob {desc.digest} from {r_.name}",
                       lambda: self._fetch_once(r_, url, desc, store))
        self._remember(r_, desc.digest)

    def _fetch_once(self, ref: Reference, url: str, desc: Descriptor, store: BlobStore) -> None:
        r = self._request(ref, "GET", url, self._pull_scope(ref), ok=(200, 301, 302, 303, 307, 308))
        for _ in range(5):
            if r.status not in (301, 302, 303, 307, 308):
                break
            location = r.header("Location")
            self._drain(r)
            if not location:
                raise BakeryError(f"{ref.registry} redirected the blob {desc.digest} nowhere")
            target = urllib.parse.urljoin(url, location)
            # the registry's credentials do not go to the blob store
            r = self._send("GET", target, {}, None)
        if r.status != 200:
            detail = _error_detail(r.status, self._drain(r))
            raise BakeryError(f"fetching the blob {desc.digest} from {ref.name} failed: {detail}")
        try:
            with store.writer(desc.digest, desc.size) as w:
                while True:
                    try:
                        chunk = r.raw.read(1 << 20)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Retryable(f"the download of {desc.digest} broke off: {e}") from None
                    if not chunk:
                        break
                    w.write(chunk)
                    if w.size > desc.size:
                        break
                if w.size < desc.size:
                    raise _Retryable(f"the download of {desc.digest} broke off at "
                                     f"{w.size} of {desc.size} bytes")
                w.commit(desc.media_type)
        finally:
            r.close()

    def _remember(self, ref: Reference, digest: str) -> None:
        repos = self._sources.setdefault((ref.api_host, digest), [])
        if ref.repository not in repos:
            repos.append(ref.repository)

    def push_blob(self, ref: Union[str, Reference], store: BlobStore, desc: Descriptor,
                  mount_from: Sequence[str] = ()) -> str:
        """Make the registry have ``desc`` in ``ref``'s repository: "existed",
        "mounted" or "uploaded"."""
        r_ = self._ref(ref)
        if not store.has(desc.digest):
            raise BakeryError(f"the blob {desc.digest} is not in the local store")
        how = self._retrying(f"pushing the blob {desc.digest} to {r_.name}",
                             lambda: self._push_blob_once(r_, store, desc, mount_from))
        self._remember(r_, desc.digest)
        return how

    def _push_blob_once(self, ref: Reference, store: BlobStore, desc: Descriptor,
                        mount_from: Sequence[str]) -> str:
        if self.blob_exists(ref, desc.digest, push=True):
            return "existed"
        sources = [s for s in list(mount_from) + self._sources.get((ref.api_host, desc.digest), [])
                   if s != ref.repository]
        location = None
        for src in dict.fromkeys(sources):
            scopes = [*self._push_scope(ref), f"repository:{src}:pull"]
            q = urllib.parse.urlencode({"mount": desc.digest, "from": src})
            r = self._request(ref, "POST", self._url(ref, "blobs/uploads/?" + q), scopes,
                              ok=(201, 202))
            self._drain(r)
            if r.status == 201:
                log.debug("mounted %s from %s into %s", desc.digest, src, ref.repository)
                return "mounted"
            if r.status == 202 and r.header("Location"):
                location = urllib.parse.urljoin(r.url, r.header("Location"))
                break
        scopes = self._push_scope(ref)
        if location is None:
            r = self._request(ref, "POST", self._url(ref, "blobs/uploads/"), scopes, ok=(202,))
            self._drain(r)
            if r.status != 202 or not r.header("Location"):
                raise BakeryError(f"{ref.registry} did not start an upload for {ref.repository}")
            location = urllib.parse.urljoin(r.url, r.header("Location"))
        path = store.path(desc.digest)
        if desc.size > self.monolithic_limit:
            offset = 0
            while offset < desc.size:
                n = min(self.chunk_size, desc.size - offset)
                r = self._request(ref, "PATCH", location, scopes,
                                  {"Content-Type": "application/octet-stream",
                                   "Content-Range": f"{offset}-{offset + n - 1}"},
                                  _FileBody(path, offset, n), ok=(202,))
                self._drain(r)
                if r.status != 202:
                    raise BakeryError(f"uploading {desc.digest} to {ref.name}: the upload vanished")
                location = urllib.parse.urljoin(location, r.header("Location") or location)
                offset += n
            body: Body = b""
        else:
            body = _FileBody(path, 0, desc.size)
        r = self._request(ref, "PUT", _add_query(location, "digest", desc.digest), scopes,
                          {"Content-Type": "application/octet-stream"}, body, ok=(201, 204))
        self._drain(r)
        if r.status == 404:
            raise BakeryError(f"uploading {desc.digest} to {ref.name}: the upload vanished")
        got = r.header("Docker-Content-Digest")
        if got and got != desc.digest:
            raise BakeryError(f"{ref.name} stored the blob as {got}, not {desc.digest}")
        return "uploaded"

    # -- images ----------------------------------------------------------------------------

    def pull(self, ref: Union[str, Reference], store: BlobStore,
             platform: Union[str, Platform, None] = None) -> Descriptor:
        """Fetch an image into ``store``: the whole index, or with ``platform``
        only the best manifest for it (returned with its platform)."""
        r_ = self._ref(ref)
        data, root = self.get_manifest(r_)
        store.put_bytes(data, root.media_type)
        if is_index(root.media_type):
            manifests = [Descriptor.from_json(m) for m in json.loads(data).get("manifests") or []]
            if platform is not None:
                want = normalize_platform(platform)
                scored = [(platform_compatible(want, m.platform), -i, m)
                          for i, m in enumerate(manifests) if m.platform is not None]
                scored = [s for s in scored if s[0] > 0]
                if not scored:
                    have = ", ".join(str(m.platform) for m in manifests if m.platform)
                    raise BakeryError(f"{r_} has no image for {want}",
                                      hint=f"it has: {have}" if have else None)
                best = max(scored, key=lambda s: (s[0], s[1]))[2]
                self._pull_manifest(r_, best, store)
                return best
            for m in manifests:
                if is_manifest(m.media_type):
                    self._pull_manifest(r_, m, store)
            return root
        self._pull_manifest(r_, root, store, data)
        return root

    def _pull_manifest(self, ref: Reference, desc: Descriptor, store: BlobStore,
                       data: Optional[bytes] = None) -> None:
        if data is None:
            if store.has(desc.digest):
                data = store.read_bytes(desc.digest)
            else:
                data, got = self.get_manifest(ref.with_digest(desc.digest))
                store.put_bytes(data, got.media_type)
        doc = json.loads(data)
        config = Descriptor.from_json(doc["config"])
        for d in [config] + [Descriptor.from_json(la) for la in doc.get("layers") or []]:
            self.fetch_blob(ref, d, store)

    def push(self, store: BlobStore, root: Descriptor, ref: Union[str, Reference],
             mount_from: Sequence[str] = ()) -> PushResult:
        """Push ``root`` (a manifest or an index) and everything it points at;
        the root is tagged with ``ref``'s tag (or pushed by digest)."""
        r_ = self._ref(ref)
        result = PushResult(root.digest)
        done: Set[str] = set()
        for d in walk(store, root):
            if d.digest in done:
                continue
            done.add(d.digest)
            if is_manifest(d.media_type) or is_index(d.media_type):
                data = store.read_bytes(d.digest)
                target = r_ if d.digest == root.digest else r_.with_digest(d.digest)
                if d.digest == root.digest and r_.tag and not r_.digest:
                    target = r_.with_tag(r_.tag)
                self.put_manifest(target, data, d.media_type)
                result.manifests.append(d.digest)
            else:
                how = self.push_blob(r_, store, d, mount_from)
                getattr(result, how).append(d.digest)
        log.info("pushed %s (%s): %d uploaded, %d mounted, %d already there", r_, root.digest,
                 len(result.uploaded), len(result.mounted), len(result.existed))
        return result

    # -- login -------------------------------------------------------------------------

    def check_login(self, registry: str, creds: Credentials) -> None:
        """Check ``creds`` against ``registry``'s API (``GET /v2/``, answering
        its basic or bearer challenge), as ``docker login`` does; a
        BakeryError (without the secret) when the registry refuses them.
        This client keeps ``creds`` for ``registry`` afterwards."""
        host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self._credentials[registry] = creds
        url = f"{self.scheme_for(host)}://{host}/v2/"

        def get(headers: Mapping[str, str]) -> Tuple[int, str]:
            r = self._send("GET", url, headers, None)
            status, challenge = r.status, r.header("WWW-Authenticate")
            self._drain(r)
            return status, challenge

        status, challenge = self._retrying(f"GET {url}", lambda: get({}))
        if status == 200:
            return
        if status != 401:
            raise BakeryError(f"{registry} answered {status} to GET /v2/; is it a registry?")
        answer: Optional[str] = None
        for ch in parse_www_authenticate(challenge):
            if ch.scheme == "bearer":
                answer = self._fetch_token(Reference(registry, ""), ch, [])
                break
            if ch.scheme == "basic":
                answer = creds.basic()
        if answer is None:
            raise BakeryError(f"{registry} asks for an authentication bakery does not know")
        status, _ = self._retrying(f"GET {url}", lambda: get({"Authorization": answer or ""}))
        if status == 200:
            return
        if status in (401, 403):
            raise BakeryError(f"login to {registry} failed: the registry refused the credentials "
                              f"of {creds.username or 'the token'} ({status})",
                              hint="check the user name and password")
        raise BakeryError(f"login to {registry} failed: the registry answered {status}")



def _add_query(url: str, key: str, value: str) -> str:
    p = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(p.query, keep_blank_values=True)
    q.append((key, value))
    return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, urllib.parse.urlencode(q), p.fragment))
