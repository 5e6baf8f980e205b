"""bakery.oci.auth: Docker config.json entries written and removed the Docker way."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from bakery.errors import BakeryError
from bakery.oci.auth import erase_credentials, normalize_server, server_key, store_credentials
from bakery.oci.registry import Credentials, docker_credentials


@pytest.mark.parametrize("given,want", [
    (None, "docker.io"), ("docker.io", "docker.io"), ("https://index.docker.io/v1/", "docker.io"),
    ("registry-1.docker.io", "docker.io"), ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("https://r.example:443/v2/", "r.example:443"), ("http://localhost:5000", "localhost:5000"),
])
def test_normalize_server(given, want) -> None:  # type: ignore[no-untyped-def]
    assert normalize_server(given) == want


def test_docker_hub_key() -> None:
    assert server_key("docker.io") == "https://index.docker.io/v1/"
    assert server_key("r.example") == "r.example"


def test_store_keeps_other_keys_and_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"},
                                         "http://r.example:5000": {"auth": "b2xkOm9sZA=="}},
                               "proxies": {"default": {"httpProxy": "x"}}}))
    where = store_credentials("r.example:5000", Credentials("alice", "p@ss:word"), str(cfg), env={})
    assert where == str(cfg)
    doc = json.loads(cfg.read_text())
    assert doc["proxies"] == {"default": {"httpProxy": "x"}}
    assert set(doc["auths"]) == {"other.example", "r.example:5000"}  # one entry per registry
    assert base64.b64decode(doc["auths"]["r.example:5000"]["auth"]) == b"alice:p@ss:word"
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    assert docker_credentials("r.example:5000", str(cfg), env={}) == Credentials("alice", "p@ss:word")
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_store_creates_the_file_and_hub_uses_dockers_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "new" / "config.json"
    store_credentials("docker.io", Credentials("bob", "pw"), str(cfg), env={})
    assert list(json.loads(cfg.read_text())["auths"]) == ["https://index.docker.io/v1/"]


def test_erase(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    store_credentials("r.example", Credentials("a", "b"), str(cfg), env={})
    store_credentials("s.example", Credentials("c", "d"), str(cfg), env={})
    assert erase_credentials("r.example", str(cfg), env={}) is True
    assert list(json.loads(cfg.read_text())["auths"]) == ["s.example"]
    assert erase_credentials("r.example", str(cfg), env={}) is False


def test_missing_helper_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credsStore": "nosuch"}))
    with pytest.raises(BakeryError) as e:
        store_credentials("r.example", Credentials("a", "secret-pw"), str(cfg), env={"PATH": str(tmp_path)})
    assert "docker-credential-nosuch" in e.value.message and "secret-pw" not in e.value.render()
    assert json.loads(cfg.read_text()) == {"credsStore": "nosuch"}  # unchanged


def test_broken_config_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.json"
    cfg.write_text("{not json")
    with pytest.raises(BakeryError) as e:
        store_credentials("r.example", Credentials("a", "b"), str(cfg), env={})
    assert "cannot read the Docker config" in e.value.message
