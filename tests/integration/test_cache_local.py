"""Build caches for real: the example monorepo exported with ``cache-to``,
the store wiped, and rebuilt from ``cache-from`` alone.

Needs what test_run_example needs (root, runc, docker-registry, skopeo,
umoci, busybox-static); skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from typing import Dict, List

import pytest

TARGETS = ("api", "worker", "web-plain", "web-debug")

pytestmark = pytest.mark.integration


def bakery(env, store: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    sets: List[str] = []
    if env["platforms"] == ["linux/amd64"]:
        sets = ["--set", "*.platform=linux/amd64"]
    e = dict(os.environ, BAKERY_CACHE_DIR=os.path.join(env["tmp"], store), SOURCE_DATE_EPOCH="0")
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                        *sets, *args], cwd=env["cwd"], capture_output=True, text=True, env=e, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def steps_run(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"done: (\d+) steps run, (\d+) from the cache", r.stderr)
    assert m, r.stderr[-2000:]
    return int(m.group(1))


def output_digests(env) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    """target -> the digest of out/<target>.tar's root (its index.json entry)."""
    out = {}
    for t in TARGETS:
        with tarfile.open(os.path.join(env["cwd"], "out", f"{t}.tar")) as tf:
            f = tf.extractfile("index.json")
            assert f is not None
            out[t] = json.load(f)["manifests"][0]["digest"]
    return out


def cache_entries(env, kind: str, mode: str) -> tuple:  # type: ignore[no-untyped-def]
    if kind == "local":
        where = os.path.join(env["tmp"], "cache")
        return (f"*.cache-to=type=local,dest={where},mode={mode}",
                f"*.cache-from=type=local,src={where}")
    ref = f"{env['host']}/cache/monorepo:buildcache"
    return f"*.cache-to=type=registry,ref={ref},mode={mode}", f"*.cache-from=type=registry,ref={ref}"


def cache_index(env, kind: str) -> dict:  # type: ignore[no-untyped-def]
    """The exported cache's manifest and index (local dir or registry)."""
    if kind == "local":
        where = os.path.join(env["tmp"], "cache")
        with open(os.path.join(where, "index.json")) as fh:
            entries = json.load(fh)["manifests"]
        assert len(entries) == 1  # every target: one merged cache
        blob = os.path.join(where, "blobs", "sha256")
        with open(os.path.join(blob, entries[0]["digest"].split(":")[1])) as fh:
            man = json.load(fh)
        with open(os.path.join(blob, man["config"]["digest"].split(":")[1])) as fh:
            return {"manifest": man, "index": json.load(fh)}
    ref = f"docker://{env['host']}/cache/monorepo:buildcache"
    man = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                                    capture_output=True, text=True, check=True).stdout)
    blob = subprocess.run(["curl", "-sfL", f"http://{env['host']}/v2/cache/monorepo/blobs/"
                           f"{man['config']['digest']}"], capture_output=True, check=True).stdout
    return {"manifest": man, "index": json.loads(blob)}


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("kind", ["local", "registry"])
def test_rebuild_from_an_exported_cache_runs_nothing(env, kind, mode) -> None:  # type: ignore[no-untyped-def]
    to, frm = cache_entries(env, kind, mode)
    first = bakery(env, "store1", "--set", to)
    assert steps_run(first) > 0
    assert "cache" in first.stdout
    digests = output_digests(env)
    cache = cache_index(env, kind)
    layers = [la["digest"] for la in cache["manifest"]["layers"]]
    assert len(layers) == len(set(layers))  # deduplicated across the targets sharing it
    assert len(cache["index"]["records"]) > 0

    # an empty store, the cache only: nothing runs, the same images come out
    shutil.rmtree(os.path.join(env["cwd"], "out"))
    second = bakery(env, "store2", "--set", frm)
    assert steps_run(second) == 0, second.stderr[-3000:]
    assert output_digests(env) == digests

    # one service's file changes: only its COPY and the RUN after it, per platform
    with open(os.path.join(env["cwd"], "services", "api", "run.sh"), "a") as fh:
        fh.write("# changed\n")
    third = bakery(env, "store3", "--set", frm)
    assert steps_run(third) == 2 * len(env["platforms"])
    changed = output_digests(env)
    assert changed["api"] != digests["api"]
    assert {t: d for t, d in changed.items() if t != "api"} == \
        {t: d for t, d in digests.items() if t != "api"}


def image_diff_ids(env) -> set:  # type: ignore[no-untyped-def]
    """Every layer (diff_id) of every output image, all platforms."""
    out = set()
    for t in TARGETS:
        with tarfile.open(os.path.join(env["cwd"], "out", f"{t}.tar")) as tf:
            def blob(digest: str) -> dict:
                f = tf.extractfile("blobs/sha256/" + digest.split(":")[1])
                assert f is not None
                return json.load(f)  # type: ignore[no-any-return]

            f = tf.extractfile("index.json")
            assert f is not None
            todo = [m["digest"] for m in json.load(f)["manifests"]]
            while todo:
                doc = blob(todo.pop())
                if "manifests" in doc:
                    todo.extend(m["digest"] for m in doc["manifests"])
                else:
                    out.update(blob(doc["config"]["digest"])["rootfs"]["diff_ids"])
    return out


def test_min_exports_the_images_layers_max_every_step(env) -> None:  # type: ignore[no-untyped-def]
    counts = {}
    diff_ids = {}
    for mode in ("min", "max"):
        where = os.path.join(env["tmp"], f"cache-{mode}")
        bakery(env, "store", "--set", f"*.cache-to=type=local,dest={where},mode={mode}")
        with open(os.path.join(where, "index.json")) as fh:
            entry = json.load(fh)["manifests"][0]
        blob = os.path.join(where, "blobs", "sha256")
        with open(os.path.join(blob, entry["digest"].split(":")[1])) as fh:
            man = json.load(fh)
        with open(os.path.join(blob, man["config"]["digest"].split(":")[1])) as fh:
            records = json.load(fh)["records"]
        counts[mode] = len(records)
        diff_ids[mode] = {la["diff_id"] for r in records.values() for la in r["layers"]}
    # web's build stage: COPY index.html and RUN sed, per flavor and platform, only in max
    assert counts["max"] - counts["min"] == 4 * len(env["platforms"]), counts
    # min: exactly the layers the images hold (BuildKit's definition); max: more
    assert diff_ids["min"] == image_diff_ids(env)
    assert diff_ids["max"] > diff_ids["min"]


def top_layer_files(path: str) -> list:
    """(name, type, mode, sha256 of the content) of the first image's top layer."""
    import gzip
    import hashlib
    import io

    with tarfile.open(path) as tf:
        def raw(digest: str) -> bytes:
            f = tf.extractfile("blobs/sha256/" + digest.split(":")[1])
            assert f is not None
            return f.read()

        doc = json.loads(raw(json.loads(raw_index(tf))["manifests"][0]["digest"]))
        man = json.loads(raw(doc["manifests"][0]["digest"])) if "manifests" in doc else doc
        layer = gzip.decompress(raw(man["layers"][-1]["digest"]))
    out = []
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        for m in lt.getmembers():
            data = lt.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out.append((m.name, m.type, m.mode, hashlib.sha256(data).hexdigest()))
    return out


def raw_index(tf: tarfile.TarFile) -> bytes:
    f = tf.extractfile("index.json")
    assert f is not None
    return f.read()


def test_a_corrupt_blob_in_the_cache_is_a_miss_not_a_wrong_image(env) -> None:  # type: ignore[no-untyped-def]
    to, frm = cache_entries(env, "local", "max")
    # reproducible images (file times clamped to SOURCE_DATE_EPOCH): a step built
    # again gives the same image, so "the right image" is "the same digest"
    clamp = [a for t in TARGETS for a in ("--set", f"{t}.output=type=oci,dest=out/{t}.tar,rewrite-timestamp=true")]
    bakery(env, "store1", "--set", to, *clamp)
    digests = output_digests(env)
    index = cache_index(env, "local")["index"]["records"]
    # web-plain's own top layer (COPY --from=build, per platform): its step is rebuilt
    # from the build stage's records
    victims = set()
    for digest in {la["digest"] for r in index.values() for la in r["layers"]}:
        path = os.path.join(env["tmp"], "cache", "blobs", "sha256", digest.split(":")[1])
        with tarfile.open(path, "r:gz") as lt:
            names = lt.getnames()
            if "www/index.html" in names:
                f = lt.extractfile("www/index.html")
                assert f is not None
                if b"(plain)" in f.read():
                    victims.add(path)
    assert 1 <= len(victims) <= len(env["platforms"])
    for path in victims:
        os.chmod(path, 0o644)
        with open(path, "r+b") as fh:
            size = os.path.getsize(path)
            fh.seek(size // 2)
            fh.write(bytes(64))
    before = top_layer_files(os.path.join(env["cwd"], "out", "web-plain.tar"))
    shutil.rmtree(os.path.join(env["cwd"], "out"))
    second = bakery(env, "store2", "--set", frm, *clamp)
    # the broken record's step (per platform) is built again, from its inputs' records
    assert 1 <= steps_run(second) <= len(env["platforms"]), second.stderr[-3000:]
    assert "building the step" in second.stderr
    assert output_digests(env) == digests
    assert top_layer_files(os.path.join(env["cwd"], "out", "web-plain.tar")) == before
    # ignore-error=false: the same cache fails the build, with a reason
    e = dict(os.environ, BAKERY_CACHE_DIR=os.path.join(env["tmp"], "store3"), SOURCE_DATE_EPOCH="0")
    sets = ["--set", "*.platform=linux/amd64"] if env["platforms"] == ["linux/amd64"] else []
    r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}", *sets,
                        "--set", frm + ",ignore-error=false"], cwd=env["cwd"], capture_output=True,
                       text=True, env=e, timeout=600)
    assert r.returncode == 1 and "ignore-error=false" in r.stderr and "Traceback" not in r.stderr


CACHE_MOUNT_BAKE = """
variable "BASE_IMAGE" {}
target "default" {
  platforms = ["linux/amd64"]
  args = { BASE_IMAGE = BASE_IMAGE }
  output = ["type=local,dest=out"]
}
"""

CACHE_MOUNT_DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY input.txt /input.txt
RUN --mount=type=cache,target=/cache,id=pkgs sh -c 'cat /input.txt >> /cache/log && cp /cache/log /seen'
"""


@pytest.mark.parametrize("mounts", [True, False])
def test_cache_mount_contents_survive_a_fresh_runner(env, mounts) -> None:  # type: ignore[no-untyped-def]
    work = os.path.join(env["tmp"], "mounts")
    os.makedirs(work)
    for name, text in (("docker-bake.hcl", CACHE_MOUNT_BAKE), ("Dockerfile", CACHE_MOUNT_DOCKERFILE),
                       ("input.txt", "one\n")):
        with open(os.path.join(work, name), "w") as fh:
            fh.write(text)
    cache = os.path.join(env["tmp"], "mcache")
    flag = ",cache-mounts=true" if mounts else ""

    def run(store: str, *args: str) -> subprocess.CompletedProcess:
        e = dict(os.environ, BAKERY_CACHE_DIR=os.path.join(env["tmp"], store), SOURCE_DATE_EPOCH="0")
        r = subprocess.run([sys.executable, "-m", "bakery", "run", "--var", f"BASE_IMAGE={env['base']}",
                            *args], cwd=work, capture_output=True, text=True, env=e, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    run("m1", "--set", f"*.cache-to=type=local,dest={cache},mode=max{flag}")
    with open(os.path.join(work, "out", "seen")) as fh:
        assert fh.read() == "one\n"
    with open(os.path.join(work, "input.txt"), "w") as fh:
        fh.write("two\n")
    second = run("m2", "--set", f"*.cache-from=type=local,src={cache}")
    assert steps_run(second) == 2  # the COPY and the RUN (the FROM comes from the cache)
    with open(os.path.join(work, "out", "seen")) as fh:
        assert fh.read() == ("one\ntwo\n" if mounts else "two\n")


def test_inline_cache_travels_in_the_pushed_image(env) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from bakery.cache.inline import INLINE_KEY

    reg = f"{env['host']}/ex"
    ref = f"{reg}/api:dev"
    common = ["--var", f"REGISTRY={reg}", "--set", "api.output=type=registry",
              "--set", "api.cache-to=type=inline"]

    def pushed() -> tuple:
        def raw(what: str) -> bytes:
            return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{what}"],
                                  capture_output=True, check=True).stdout
        top = raw(ref)
        doc = json.loads(top)
        man = json.loads(raw(f"{reg}/api@{doc['manifests'][0]['digest']}")) if "manifests" in doc else doc
        cfg = subprocess.run(["curl", "-sfL", f"http://{env['host']}/v2/ex/api/blobs/{man['config']['digest']}"],
                             capture_output=True, check=True).stdout
        return "sha256:" + hashlib.sha256(top).hexdigest(), json.loads(cfg), man

    first = bakery(env, "store1", *common, "api")
    assert steps_run(first) > 0
    digest, config, man = pushed()
    records = config[INLINE_KEY]["records"]
    # mode=min: the busybox image, base's RUN and COPY, api's COPY and RUN (this platform's)
    assert len(records) == 5, sorted(records)
    # every record points at the image's own layer blobs: nothing else was pushed
    assert {la["digest"] for r in records.values() for la in r["layers"]} == \
        {la["digest"] for la in man["layers"]}
    # a fresh runner, the image as its cache: nothing runs, the same image is pushed
    second = bakery(env, "store2", *common, "--set", f"api.cache-from=type=registry,ref={ref}", "api")
    assert steps_run(second) == 0, second.stderr[-3000:]
    assert pushed()[0] == digest
    # a change to api: only its COPY and RUN run, the base's steps come from the image
    with open(os.path.join(env["cwd"], "services", "api", "run.sh"), "a") as fh:
        fh.write("# changed\n")
    third = bakery(env, "store3", *common, "--set", f"api.cache-from=type=registry,ref={ref}", "api")
    assert steps_run(third) == 2 * len(env["platforms"])
