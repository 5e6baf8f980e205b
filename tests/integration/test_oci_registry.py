"""bakery's registry client against a real registry (distribution 2.8), with
skopeo reading what bakery pushed, and a proxy counting and cutting uploads."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, List, Tuple

import pytest

from bakery.errors import BakeryError
from bakery.oci.image import ContainerConfig, add_layer, build_image, build_index
from bakery.oci.layout import open_layout
from bakery.oci.media import DOCKER_MANIFEST, OCI_INDEX
from bakery.oci.registry import Credentials, RegistryClient
from bakery.oci.store import BlobStore, walk
from tests.integration.registry import (
    RecordingProxy,
    busybox_tar,
    file_tar,
    need_tool,
    running_registry,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path):  # type: ignore[no-untyped-def]
    with running_registry(str(tmp_path)) as reg:
        yield reg


def two_platform_image(tmp_path: Any, extra_layers: bool = False,
                       media: str = "oci") -> Tuple[BlobStore, Any, List[Any]]:
    """busybox on linux/amd64 and linux/arm64 (the same layer: only the
    platform fields differ); with ``extra_layers`` two small layers first."""
    store = BlobStore(str(tmp_path / "store"))
    layers = []
    if extra_layers:
        for i in range(2):
            layers.append(add_layer(store, file_tar(str(tmp_path / f"f{i}.tar"), f"etc/f{i}",
                                                    f"layer {i}\n".encode())))
    layers.append(add_layer(store, busybox_tar(str(tmp_path / "busybox.tar"))))
    cfg = ContainerConfig(cmd=["/bin/sh"], env=["PATH=/bin"], labels={"test": "bakery"})
    imgs = [build_image(store, layers, cfg, platform=p, created=0, media=media)
            for p in ("linux/amd64", "linux/arm64")]
    return store, build_index(store, imgs, media=media), imgs


def skopeo(*args: str) -> str:
    need_tool("skopeo")
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"skopeo {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


def test_push_index_then_skopeo_and_pull(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    store, idx, imgs = two_platform_image(tmp_path)
    client = RegistryClient(use_docker_config=False)
    ref = f"{registry.host}/bakery/busybox:v1"
    res = client.push(store, idx, ref)
    assert res.digest == idx.digest and len(res.uploaded) == 3  # one layer, two configs

    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", "docker://" + ref))
    assert raw["mediaType"] == OCI_INDEX
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]] == \
        [("linux", "amd64"), ("linux", "arm64")]
    for arch, img in (("amd64", imgs[0]), ("arm64", imgs[1])):
        info = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", arch,
                                 "--override-os", "linux", "docker://" + ref))
        assert info["Architecture"] == arch and info["Labels"] == {"test": "bakery"}
        assert info["Layers"] == [la.digest for la in img.layers]
        assert info["Digest"] == idx.digest

    # skopeo copies every platform into an OCI layout, keeping the index as is
    out = str(tmp_path / "copied")
    skopeo("copy", "--all", "--src-tls-verify=false", "docker://" + ref, f"oci:{out}:v1")
    with open_layout(out) as lay:
        root = lay.resolve("v1")
        assert root.digest == idx.digest
        assert sorted(d.digest for d in walk(lay.store, root)) == \
            sorted(d.digest for d in walk(store, idx))

    # and bakery pulls it back, digest for digest
    s2 = BlobStore(str(tmp_path / "pulled"))
    root = client.pull(ref, s2)
    assert root.digest == idx.digest
    assert [d.digest for d in walk(s2, root)] == [d.digest for d in walk(store, idx)]
    arm = client.pull(ref, BlobStore(str(tmp_path / "arm")), platform="linux/arm64/v8")
    assert arm.digest == imgs[1].descriptor.digest


def test_docker_manifest_bytes_match_go(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    """skopeo (Go) converts bakery's OCI image to Docker schema 2; the manifest
    it writes must be byte for byte what bakery writes for Docker media types."""
    store, _idx, imgs = two_platform_image(tmp_path)
    (tmp_path / "d").mkdir()
    dstore, _didx, dimgs = two_platform_image(tmp_path / "d", media="docker")
    client = RegistryClient(use_docker_config=False)
    src = f"{registry.host}/bakery/oci:v1"
    dst = f"{registry.host}/bakery/converted:v1"
    client.push(store, imgs[0].descriptor, src)
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
           "docker://" + src, "docker://" + dst)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "docker://" + dst).strip()
    ours = dstore.read_bytes(dimgs[0].descriptor.digest)
    assert json.loads(raw)["mediaType"] == DOCKER_MANIFEST
    assert raw == ours.decode()


def test_cross_repo_mount(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    store, idx, _imgs = two_platform_image(tmp_path)
    client = RegistryClient(use_docker_config=False)
    with RecordingProxy(registry.port) as proxy:
        client.push(store, idx, f"{proxy.host}/team/one:v1")
        assert len(proxy.uploads()) == 3
        del proxy.requests[:]
        res = client.push(store, idx, f"{proxy.host}/team/two:v1")
    assert len(res.mounted) == 3 and not res.uploaded
    mounts = [r for r in proxy.requests if r.method == "POST" and "mount" in r.query]
    assert len(mounts) == 3 and {r.status for r in mounts} == {201}
    assert {r.query["from"] for r in mounts} == {"team/one"}
    assert proxy.uploads() == []
    assert "team/two" in registry.log()
    # a new client told where to mount from does the same
    with RecordingProxy(registry.port) as proxy:
        fresh = RegistryClient(use_docker_config=False)
        res = fresh.push(store, idx, f"{proxy.host}/team/three:v1", mount_from=["team/one"])
    assert len(res.mounted) == 3 and proxy.uploads() == []
    skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/team/three:v1")


def test_interrupted_push_resumes_without_resending(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    store, idx, imgs = two_platform_image(tmp_path, extra_layers=True)
    busybox_layer = imgs[0].layers[-1]
    assert busybox_layer.size > 300_000
    ref = "/team/app:v1"
    # the busybox layer's upload is reset after 200 kB; no retries: the push fails
    with RecordingProxy(registry.port, cut_after=200_000) as proxy:
        client = RegistryClient(use_docker_config=False, retries=0)
        with pytest.raises(BakeryError) as e:
            client.push(store, idx, proxy.host + ref)
    assert busybox_layer.digest in e.value.message
    first = [r.query.get("digest") for r in proxy.uploads() if not r.cut]
    assert first == [imgs[0].config.digest, imgs[0].layers[0].digest, imgs[0].layers[1].digest]
    assert [r for r in proxy.uploads() if r.cut]

    # a new push (a new process would know nothing either) re-sends only what is missing
    with RecordingProxy(registry.port) as proxy:
        client = RegistryClient(use_docker_config=False)
        res = client.push(store, idx, proxy.host + ref)
    assert res.existed == first
    assert res.uploaded == [busybox_layer.digest, imgs[1].config.digest]
    assert [r.query.get("digest") for r in proxy.uploads()] == res.uploaded

    s2 = BlobStore(str(tmp_path / "pulled"))
    root = RegistryClient(use_docker_config=False).pull(registry.host + ref, s2)
    assert [d.digest for d in walk(s2, root)] == [d.digest for d in walk(store, idx)]


def test_dropped_connection_is_retried(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    store, idx, imgs = two_platform_image(tmp_path, extra_layers=True)
    busybox_layer = imgs[0].layers[-1]
    with RecordingProxy(registry.port, cut_after=200_000) as proxy:
        client = RegistryClient(use_docker_config=False, retries=3, backoff=0.05)
        res = client.push(store, idx, proxy.host + "/team/retry:v1")
    assert res.digest == idx.digest
    sent = [r.query.get("digest") for r in proxy.uploads() if not r.cut]
    assert sorted(sent) == sorted(set(sent))  # every blob completed exactly once
    assert busybox_layer.digest in sent and len(sent) == 5


def test_chunked_upload_to_real_registry(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    store, idx, _imgs = two_platform_image(tmp_path)
    with RecordingProxy(registry.port) as proxy:
        client = RegistryClient(use_docker_config=False, monolithic_limit=0, chunk_size=256 << 10)
        client.push(store, idx, proxy.host + "/team/chunked:v1")
    patches = [r for r in proxy.requests if r.method == "PATCH"]
    assert len(patches) >= 4 and all(r.status == 202 for r in patches)
    s2 = BlobStore(str(tmp_path / "pulled"))
    client.pull(f"{registry.host}/team/chunked:v1", s2)
    assert [d.digest for d in walk(s2, idx)] == [d.digest for d in walk(store, idx)]


def test_basic_auth_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_registry(str(tmp_path), htpasswd={"alice": "wonder-land"}) as reg:
        store, idx, _imgs = two_platform_image(tmp_path)
        ref = f"{reg.host}/secure/app:v1"
        with pytest.raises(BakeryError) as e:
            RegistryClient(use_docker_config=False).push(store, idx, ref)
        assert "requires authentication" in e.value.message
        with pytest.raises(BakeryError) as e:
            RegistryClient(credentials={reg.host: Credentials("alice", "nope")}).push(store, idx, ref)
        assert "nope" not in e.value.render()
        # credentials from a Docker config.json
        cfg = tmp_path / "docker"
        cfg.mkdir()
        import base64
        (cfg / "config.json").write_text(json.dumps(
            {"auths": {reg.host: {"auth": base64.b64encode(b"alice:wonder-land").decode()}}}))
        client = RegistryClient(docker_config=str(cfg / "config.json"))
        assert client.push(store, idx, ref).digest == idx.digest
        out = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "alice:wonder-land",
                     "docker://" + ref)
        assert json.loads(out)["mediaType"] == OCI_INDEX
        s2 = BlobStore(str(tmp_path / "pulled"))
        assert client.pull(ref, s2).digest == idx.digest


def test_skopeo_pushed_image_pulls_into_bakery(tmp_path, registry) -> None:  # type: ignore[no-untyped-def]
    """The other way round: Go writes, bakery reads (an OCI layout copied up by skopeo)."""
    from bakery.oci.layout import write_oci_layout

    store, idx, _imgs = two_platform_image(tmp_path)
    layout = str(tmp_path / "layout")
    write_oci_layout(store, idx, layout, names=["app:v1"], tar=False)
    ref = f"{registry.host}/from/skopeo:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:v1", "docker://" + ref)
    s2 = BlobStore(str(tmp_path / "pulled"))
    root = RegistryClient(use_docker_config=False).pull(ref, s2)
    assert root.digest == idx.digest
    assert os.path.isfile(s2.path(idx.digest))
