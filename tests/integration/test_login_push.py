"""`bakery login`, `bakery run --push` and `bakery logout` against a real
registry with htpasswd auth; a push through a proxy that cuts and fails
requests.  Images are read back with skopeo, using the same credentials.

The example monorepo's busybox base comes from an anonymous registry on
127.0.0.1 (the ``env`` fixture of test_run_example); images are pushed to
a second one that wants a password.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import Any, Dict

import pytest

from tests.integration.registry import RecordingProxy, running_registry

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "wonder-Land-42"

HELPER = """#!/bin/sh
# a credential helper keeping one entry in $BAKERY_TEST_CREDS/stored.json
f="$BAKERY_TEST_CREDS/stored.json"
case "$1" in
  store) cat > "$f"; echo store >> "$BAKERY_TEST_CREDS/calls" ;;
  get) read server; echo get >> "$BAKERY_TEST_CREDS/calls"
       if [ -f "$f" ] && grep -q "\\"ServerURL\\": \\"$server\\"" "$f"; then cat "$f"; exit 0; fi
       echo "credentials not found in native keychain"; exit 1 ;;
  erase) rm -f "$f"; echo erase >> "$BAKERY_TEST_CREDS/calls" ;;
  *) exit 2 ;;
esac
"""


def bakery(ex: Dict[str, Any], extra_env: Dict[str, str], *args: str, stdin: str = "",
           check: bool = True) -> subprocess.CompletedProcess:
    e = dict(os.environ, BAKERY_CACHE_DIR=ex["cache"], **extra_env)
    r = subprocess.run([sys.executable, "-m", "bakery", *args], cwd=ex["cwd"], capture_output=True,
                       text=True, env=e, input=stdin, timeout=900)
    assert PASSWORD not in r.stdout + r.stderr
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def push(ex: Dict[str, Any], extra_env: Dict[str, str], ref: str, check: bool = True) -> subprocess.CompletedProcess:
    meta = os.path.join(ex["cwd"], "meta.json")
    r = bakery(ex, extra_env, "run", "--var", f"BASE_IMAGE={ex['base']}", "--set", "*.platform=linux/amd64",
               "--set", f"api.tags={ref}", "--push", "--metadata-file", meta, "api", check=check)
    if r.returncode == 0:
        with open(meta) as fh:
            text = fh.read()
        assert PASSWORD not in text and json.loads(text)["api"]["image.name"] == ref
    return r


def skopeo_ok(ref: str, creds: str = f"{USER}:{PASSWORD}") -> Dict[str, Any]:
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                        f"docker://{ref}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_login_push_pull_logout(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_registry(str(tmp_path / "secure"), htpasswd={USER: PASSWORD}) as reg:
        cfg_dir = tmp_path / "dockercfg"
        denv = {"DOCKER_CONFIG": str(cfg_dir)}
        ref = f"{reg.host}/secure/api:v1"

        r = bakery(env, denv, "login", "--username", USER, "--password-stdin", reg.host,
                   stdin="not-the-password\n", check=False)
        assert r.returncode == 1 and "refused the credentials" in r.stderr and "not-the-password" not in r.stderr
        assert not (cfg_dir / "config.json").exists()

        r = bakery(env, denv, "login", "-u", USER, "--password-stdin", reg.host, stdin=PASSWORD + "\n")
        assert "Login Succeeded" in r.stdout
        cfg = cfg_dir / "config.json"
        assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
        assert list(json.loads(cfg.read_text())["auths"]) == [reg.host]

        r = push(env, denv, ref)
        assert f"api: pushed {ref}" in r.stdout
        man = skopeo_ok(ref)
        assert man["layers"]
        # pulled back whole (every blob checked) with the same credentials
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}",
                        f"docker://{ref}", f"oci:{tmp_path}/pulled:x"], check=True, timeout=300)

        r = bakery(env, denv, "logout", reg.host)
        assert "Removing login credentials" in r.stdout
        assert json.loads(cfg.read_text())["auths"] == {}
        r = push(env, denv, f"{reg.host}/secure/api:v2", check=False)
        assert r.returncode == 1 and "requires authentication" in r.stderr and "Traceback" not in r.stderr


def test_login_with_a_credential_helper(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_registry(str(tmp_path / "secure"), htpasswd={USER: PASSWORD}) as reg:
        bindir, store = tmp_path / "bin", tmp_path / "helper-store"
        bindir.mkdir()
        store.mkdir()
        helper = bindir / "docker-credential-bakerytest"
        helper.write_text(HELPER)
        helper.chmod(0o755)
        cfg_dir = tmp_path / "dockercfg"
        cfg_dir.mkdir()
        (cfg_dir / "config.json").write_text(json.dumps({"credsStore": "bakerytest"}))
        denv = {"DOCKER_CONFIG": str(cfg_dir), "BAKERY_TEST_CREDS": str(store),
                "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
        bakery(env, denv, "login", "-u", USER, "--password-stdin", reg.host, stdin=PASSWORD)
        doc = json.loads((cfg_dir / "config.json").read_text())
        assert doc == {"credsStore": "bakerytest", "auths": {reg.host: {}}}  # no secret in the file
        stored = json.loads((store / "stored.json").read_text())
        assert stored == {"ServerURL": reg.host, "Username": USER, "Secret": PASSWORD}

        ref = f"{reg.host}/helper/api:v1"
        push(env, denv, ref)
        assert skopeo_ok(ref)["layers"]
        assert "get" in (store / "calls").read_text().split()

        bakery(env, denv, "logout", reg.host)
        assert not (store / "stored.json").exists()
        assert json.loads((cfg_dir / "config.json").read_text())["auths"] == {}


def test_push_through_a_failing_proxy_completes(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = int(env["base"].split("/")[0].split(":")[1])
    with RecordingProxy(port, cut_after=64 * 1024, fail_every=4) as proxy:
        ref = f"{proxy.host}/fault/api:v1"
        r = push(env, {}, ref)
        assert f"api: pushed {ref}" in r.stdout
    assert any(q.cut for q in proxy.requests), "no upload was cut"
    assert any(q.status == 503 for q in proxy.requests)
    # the registry (reached directly) holds a valid image: every blob copied and checked
    direct = f"127.0.0.1:{port}/fault/api:v1"
    man = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{direct}"],
                                    capture_output=True, text=True, check=True).stdout)
    assert man["layers"]
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{direct}",
                    f"oci:{tmp_path}/copied:x"], check=True, timeout=300)
