"""``bakery login`` / ``bakery logout``: credentials in Docker's config.json,
the Docker way.

* the key is the registry's host[:port] (``https://index.docker.io/v1/``
  for Docker Hub), as ``docker login`` writes it;
* with a credential helper for the registry (``credHelpers``) or for all
  (``credsStore``), the secret goes to ``docker-credential-<helper> store``
  (``{"ServerURL", "Username", "Secret"}`` on stdin) and config.json gets
  an empty ``auths`` entry only;
* otherwise ``auths[KEY].auth`` is base64 of ``user:password``;
* config.json (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``)
  is rewritten atomically, mode 0600, every other key kept.

:func:`verify_login` checks the credentials against the registry first
(``GET /v2/``, answering its basic or bearer challenge), as ``docker
login`` does.  Secrets never appear in messages.

Example::

    >>> server = normalize_server("https://127.0.0.1:5000/")
    >>> verify_login(client, server, Credentials("alice", "s3cret"))
    >>> store_credentials(server, Credentials("alice", "s3cret"))
    'config.json'
    >>> erase_credentials(server)
    True
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
from typing import Any, Dict, Mapping, Optional

from bakery.errors import BakeryError
from bakery.fsutil import atomic_write
from bakery.oci.reference import DOCKER_HUB
from bakery.oci.registry import (
    DOCKER_HUB_AUTH_KEY,
    Credentials,
    RegistryClient,
    _auth_key_host,
    _docker_config_path,
)

__all__ = ["erase_credentials", "normalize_server", "server_key", "store_credentials", "verify_login"]


def normalize_server(server: Optional[str]) -> str:
    """``docker.io`` for Docker Hub (also when omitted), else host[:port]."""
    if not server:
        return DOCKER_HUB
    s = server.strip()
    if "://" in s:
        s = urllib.parse.urlsplit(s).netloc
    s = s.split("/", 1)[0]
    if not s:
        raise BakeryError(f"invalid registry {server!r}", hint="give a host[:port], e.g. registry.example:5000")
    return _auth_key_host(s)


def server_key(server: str) -> str:
    """The config.json key (and helper ServerURL) for ``server``."""
    return DOCKER_HUB_AUTH_KEY if server == DOCKER_HUB else server


def _read(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BakeryError(f"cannot read the Docker config {path}: {e}") from None
    if not isinstance(doc, dict):
        raise BakeryError(f"the Docker config {path} is not a JSON object")
    return doc


def _write(path: str, doc: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        atomic_write(path, json.dumps(doc, indent="\t"), mode=0o600)
    except OSError as e:
        raise BakeryError(f"cannot write the Docker config {path}: {e.strerror or e}") from None


def _helper_for(doc: Mapping[str, Any], server: str) -> Optional[str]:
    for key, name in (doc.get("credHelpers") or {}).items():
        if _auth_key_host(key) == server and name:
            return str(name)
    store = doc.get("credsStore")
    return str(store) if store else None


def _run_helper(helper: str, action: str, data: bytes, env: Mapping[str, str]) -> None:
    prog = "docker-credential-" + helper
    exe = shutil.which(prog, path=env.get("PATH"))
    if exe is None:
        raise BakeryError(f"the credential helper {prog} (credsStore/credHelpers in config.json) "
                          "is not installed", hint=f"install {prog}, or remove it from config.json")
    try:
        r = subprocess.run([exe, action], input=data, capture_output=True, timeout=60, env=dict(env))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BakeryError(f"the credential helper {prog} failed: {e.__class__.__name__}") from None
    if r.returncode != 0:
        msg = (r.stdout or r.stderr).decode("utf-8", "replace").strip()
        if action == "erase" and "not found" in msg.lower():
            return
        raise BakeryError(f"the credential helper {prog} could not {action} the credentials: {msg[:200]}")


def store_credentials(server: str, creds: Credentials, config_path: Optional[str] = None,
                      env: Optional[Mapping[str, str]] = None) -> str:
    """Save ``creds`` for ``server``; returns where (the helper or the file)."""
    env = os.environ if env is None else env
    path = config_path or _docker_config_path(env)
    doc = _read(path)
    key = server_key(server)
    auths: Dict[str, Any] = dict(doc.get("auths") or {})
    for k in [k for k in auths if _auth_key_host(k) == server and k != key]:
        del auths[k]  # one entry per registry
    helper = _helper_for(doc, server)
    if helper:
        payload = json.dumps({"ServerURL": key, "Username": creds.username,
                              "Secret": creds.password}).encode()
        _run_helper(helper, "store", payload, env)
        auths[key] = {}
        where = "docker-credential-" + helper
    else:
        raw = f"{creds.username}:{creds.password}".encode()
        auths[key] = {"auth": base64.b64encode(raw).decode("ascii")}
        where = path
    doc = dict(doc)
    doc["auths"] = auths
    _write(path, doc)
    return where


def erase_credentials(server: str, config_path: Optional[str] = None,
                      env: Optional[Mapping[str, str]] = None) -> bool:
    """Forget the credentials of ``server``; False when there were none."""
    env = os.environ if env is None else env
    path = config_path or _docker_config_path(env)
    doc = _read(path)
    auths: Dict[str, Any] = dict(doc.get("auths") or {})
    keys = [k for k in auths if _auth_key_host(k) == server]
    helper = _helper_for(doc, server)
    if helper:
        _run_helper(helper, "erase", server_key(server).encode(), env)
    if not keys:
        return bool(helper)
    for k in keys:
        del auths[k]
    doc = dict(doc)
    doc["auths"] = auths
    _write(path, doc)
    return True


def verify_login(client: RegistryClient, server: str, creds: Credentials) -> None:
    """Check ``creds`` against ``server`` (see :meth:`RegistryClient.check_login`)."""
    client.check_login(server, creds)
