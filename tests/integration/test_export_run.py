"""`bakery run` exporters end to end: compression, media types, annotations,
SOURCE_DATE_EPOCH and --metadata-file, read back with skopeo.

Uses the example monorepo and the busybox base in a registry on 127.0.0.1
(the ``env`` fixture of test_run_example).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest

pytestmark = pytest.mark.integration

EPOCH = 1234567890
EPOCH_TEXT = "2009-02-13T23:31:30Z"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def run(ex: Dict[str, Any], *args: str, extra_env: Dict[str, str] = {},  # noqa: B006
        check: bool = True) -> subprocess.CompletedProcess:
    e = {**os.environ, **extra_env, "BAKERY_CACHE_DIR": ex["cache"]}
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={ex['base']}", *args],
                       cwd=ex["cwd"], capture_output=True, text=True, env=e, timeout=900)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def skopeo(*args: str) -> str:
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def raw(ref: str) -> Dict[str, Any]:
    return json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))


def override(ex: Dict[str, Any], body: str) -> None:
    with open(os.path.join(ex["cwd"], "docker-bake.override.hcl"), "w") as fh:
        fh.write(body)


def test_zstd_index_with_annotations_epoch_and_metadata(env) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("zstandard", reason="zstd layers need the optional zstandard module")
    if len(env["platforms"]) < 2:
        pytest.skip("needs the arm64 busybox for a two-platform image")
    host = env["base"].split("/")[0]
    ref = f"{host}/export/api:zstd"
    override(env, f'''target "api" {{
  annotations = ["index,manifest:org.opencontainers.image.title=api",
                 "manifest[linux/arm64]:org.example.arch=arm64"]
  output = ["type=registry,name={ref},compression=zstd,force-compression=true",
            "type=oci,dest=out/api-zstd.tar,compression=zstd,force-compression=true,annotation-index-descriptor.org.example.d=x"]
}}
''')
    meta_path = os.path.join(env["cwd"], "meta.json")
    r = run(env, "api", "--metadata-file", meta_path, extra_env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert f"api: pushed {ref}" in r.stdout

    index_bytes = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode()
    index = json.loads(index_bytes)
    assert index["mediaType"] == OCI_INDEX
    assert index["annotations"] == {"org.opencontainers.image.title": "api"}
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for m in index["manifests"]:
        man = raw(f"{ref.rsplit(':', 1)[0]}@{m['digest']}")
        assert {la["mediaType"] for la in man["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
        want = {"org.opencontainers.image.title": "api"}
        if m["platform"]["architecture"] == "arm64":
            want["org.example.arch"] = "arm64"
        assert man["annotations"] == want
        config = json.loads(skopeo("inspect", "--config", "--raw", "--tls-verify=false",
                                   "--override-arch", m["platform"]["architecture"], f"docker://{ref}"))
        assert config["created"] == EPOCH_TEXT
        assert config["history"] and all(h["created"] <= EPOCH_TEXT for h in config["history"])
        assert config["history"][-1]["created"] == EPOCH_TEXT
        assert config["config"]["Labels"]["org.opencontainers.image.version"] == "dev"

    with open(meta_path) as fh:
        meta = json.load(fh)
    digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
    assert meta["api"]["containerimage.digest"] == digest
    assert meta["api"]["containerimage.descriptor"] == {"digest": digest, "mediaType": OCI_INDEX,
                                                       "size": len(index_bytes)}
    assert meta["api"]["image.name"] == ref
    # what the run did: a cold store runs api's steps (and base's, which api needs)
    assert meta["api"]["bakery.build.steps"]["run"] > 0
    assert "base" not in meta  # linked only: no entry, as buildx

    # the layout: the index.json entry carries the index-descriptor annotation; skopeo
    # copies one platform out of it (checking every digest, zstd included)
    layout = os.path.join(env["cwd"], "layout")
    os.makedirs(layout)
    subprocess.run(["tar", "-xf", os.path.join(env["cwd"], "out", "api-zstd.tar"), "-C", layout], check=True)
    with open(os.path.join(layout, "index.json")) as fh:
        entries = json.load(fh)["manifests"]
    assert entries and all(e["annotations"]["org.example.d"] == "x" for e in entries)
    assert entries[0]["digest"] == digest  # the same image as the pushed one
    skopeo("copy", "-q", "--override-arch", "arm64", f"oci:{layout}:dev", f"oci:{env['cwd']}/one:x")


def test_docker_media_types_and_reused_base_layers(env) -> None:  # type: ignore[no-untyped-def]
    host = env["base"].split("/")[0]
    ref = f"{host}/export/api:docker"
    override(env, f'''target "api" {{
  output = ["type=registry,name={ref},oci-mediatypes=false",
            "type=docker,dest=out/api-docker.tar"]
}}
''')
    meta_path = os.path.join(env["cwd"], "meta.json")
    run(env, "api", "--set", "*.platform=linux/amd64", "--metadata-file", meta_path)
    man_bytes = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode()
    man = json.loads(man_bytes)
    assert man["mediaType"] == DOCKER_MANIFEST
    assert man["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert {la["mediaType"] for la in man["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    # without force-compression the base's layer blobs are reused as they are
    base = raw(env["base"])
    if "manifests" in base:
        amd = next(m for m in base["manifests"] if m["platform"]["architecture"] == "amd64")
        base = raw(f"{env['base'].rsplit(':', 1)[0]}@{amd['digest']}")
    base_layers = [la["digest"] for la in base["layers"]]
    assert [la["digest"] for la in man["layers"]][:len(base_layers)] == base_layers

    with open(meta_path) as fh:
        meta = json.load(fh)["api"]
    assert meta["containerimage.digest"] == "sha256:" + hashlib.sha256(man_bytes).hexdigest()
    assert meta["containerimage.config.digest"] == man["config"]["digest"]
    desc = meta["containerimage.descriptor"]
    assert desc["mediaType"] == DOCKER_MANIFEST and desc["annotations"]["config.digest"] == man["config"]["digest"]
    assert meta["image.name"] == ref

    # the docker archive holds the same image (one config, same diff_ids)
    cfg = json.loads(skopeo("inspect", "--config", "--raw",
                            f"docker-archive:{env['cwd']}/out/api-docker.tar"))
    pushed_cfg = json.loads(skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert cfg["rootfs"]["diff_ids"] == pushed_cfg["rootfs"]["diff_ids"]


@pytest.mark.parametrize("output,message", [
    ("type=docker,dest=x.tar", "docker exporter does not currently support exporting manifest lists"),
    ("type=oci,dest=x.tar,compression=brotli", "unknown compression 'brotli'"),
    ("type=local", "type=local needs dest=PATH"),
    ("type=nope", "unknown output type 'nope'"),
])
def test_bad_outputs_fail_before_building(env, output: str, message: str) -> None:  # type: ignore[no-untyped-def]
    args: List[str] = ["api", "--set", f"api.output={output}"]  # two platforms by default
    r = run(env, *args, check=False)
    assert r.returncode == 1, r.stderr[-2000:]
    assert message in r.stderr and "Traceback" not in r.stderr
    assert "done:" not in r.stderr  # nothing was built
    assert not os.path.exists(os.path.join(env["cwd"], "x.tar"))


def test_local_split_and_merged_tar(env) -> None:  # type: ignore[no-untyped-def]
    import tarfile

    if len(env["platforms"]) < 2:
        pytest.skip("needs the arm64 busybox for two platforms")
    override(env, '''target "api" {
  output = ["type=local,dest=out/rootfs", "type=tar,dest=out/rootfs.tar,platform-split=false",
            "type=cacheonly"]
}
''')
    r = run(env, "api", "--metadata-file", os.path.join(env["cwd"], "meta.json"))
    assert "api: local out/rootfs" in r.stdout and "api: tar out/rootfs.tar" in r.stdout
    for plat in ("linux_amd64", "linux_arm64"):
        with open(os.path.join(env["cwd"], "out", "rootfs", plat, "app", "api", "VERSION")) as fh:
            assert fh.read().strip() == "api dev"
    with tarfile.open(os.path.join(env["cwd"], "out", "rootfs.tar")) as tf:
        assert "app/api/VERSION" in tf.getnames()
    assert not [n for n in os.listdir(os.path.join(env["cwd"], "out")) if "tmp" in n]
    with open(os.path.join(env["cwd"], "meta.json")) as fh:
        got = json.load(fh)
    assert list(got) == ["api"] and list(got["api"]) == ["bakery.build.steps"]  # no image was made
    assert got["api"]["bakery.build.steps"]["run"] + got["api"]["bakery.build.steps"]["cached"] > 0
    # dest=. writes into the project, leaving its files alone
    run(env, "api", "--set", "*.platform=linux/amd64", "--set", "api.output=type=local,dest=.")
    with open(os.path.join(env["cwd"], "app", "api", "VERSION")) as fh:
        assert fh.read().strip() == "api dev"
    assert os.path.isfile(os.path.join(env["cwd"], "docker-bake.hcl"))
    assert os.path.isdir(os.path.join(env["cwd"], "services", "api"))


def _index_digest(path: str) -> str:
    import tarfile

    with tarfile.open(path) as tf:
        f = tf.extractfile("index.json")
        assert f is not None
        return str(json.load(f)["manifests"][0]["digest"])


def test_rewrite_timestamp_makes_rebuilds_reproducible(env) -> None:  # type: ignore[no-untyped-def]
    epoch = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    one = ["api", "--set", "*.platform=linux/amd64", "--no-cache"]
    digests = []
    for i in (1, 2):
        run(env, *one, "--set", f"api.output=type=oci,dest=out/r{i}.tar,rewrite-timestamp=true", extra_env=epoch)
        digests.append(_index_digest(os.path.join(env["cwd"], "out", f"r{i}.tar")))
    assert digests[0] == digests[1]
    # without it, the files the RUN steps wrote carry the time they ran at
    for i in (3, 4):
        time.sleep(1.1)  # layer tars keep whole seconds: two fast runs may share one
        run(env, *one, "--set", f"api.output=type=oci,dest=out/r{i}.tar", extra_env=epoch)
        digests.append(_index_digest(os.path.join(env["cwd"], "out", f"r{i}.tar")))
    assert digests[2] != digests[3]
    # the clamped layers: no file later than the epoch
    layout = os.path.join(env["cwd"], "layout")
    os.makedirs(layout)
    subprocess.run(["tar", "-xf", os.path.join(env["cwd"], "out", "r1.tar"), "-C", layout], check=True)
    bundle = os.path.join(env["cwd"], "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:dev", bundle], check=True, capture_output=True)
    st = os.lstat(os.path.join(bundle, "rootfs", "app", "api", "VERSION"))
    assert int(st.st_mtime) == EPOCH


def test_load_shorthand_loads_into_docker(env) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.dockerd import running_dockerd

    with running_dockerd() as d:
        r = run(env, "api", "--set", "*.platform=linux/amd64", "--load", extra_env=d.env())
        assert "api: loaded into" in r.stdout
        out = d.docker("image", "inspect", "--format", "{{.Architecture}} {{json .RepoTags}}",
                       "127.0.0.1:5000/bakery-example/api:dev")
        text = out if isinstance(out, str) else out.stdout
        assert text.startswith("amd64") and "bakery-example/api:latest" in text
        # several platforms cannot be loaded: the error Docker users know, before building
        r = run(env, "api", "--load", extra_env=d.env(), check=False)
        assert r.returncode == 1 and "does not currently support exporting manifest lists" in r.stderr
