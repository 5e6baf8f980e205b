"""Media types, descriptors, platform normalisation and canonical JSON."""

from __future__ import annotations

import json

import pytest

from bakery.errors import BakeryError
from bakery.oci.media import (
    DOCKER_LAYER_GZIP,
    OCI_INDEX,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    check_digest,
    compression_of,
    digest_bytes,
    is_index,
    is_manifest,
    layer_media_type,
    normalize_platform,
    parse_platform,
    platform_compatible,
    sorted_map,
)

A64 = "sha256:" + "a" * 64


@pytest.mark.parametrize("spec,want,json_", [
    ("linux/amd64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
    ("linux/x86_64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
    ("linux/x86-64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
    ("linux/amd64/v1", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
    ("linux/amd64/v3", "linux/amd64/v3", {"architecture": "amd64", "os": "linux", "variant": "v3"}),
    ("linux/arm64", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
    ("linux/arm64/v8", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
    ("linux/aarch64", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
    ("linux/arm64/8", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
    ("linux/arm64/v9.0", "linux/arm64/v9", {"architecture": "arm64", "os": "linux", "variant": "v9"}),
    ("linux/arm", "linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
    ("linux/arm/v7", "linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
    ("linux/arm/6", "linux/arm/v6", {"architecture": "arm", "os": "linux", "variant": "v6"}),
    ("linux/armhf", "linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
    ("linux/armel", "linux/arm/v6", {"architecture": "arm", "os": "linux", "variant": "v6"}),
    ("linux/i386", "linux/386", {"architecture": "386", "os": "linux"}),
    ("Linux/AMD64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
    ("macos/arm64", "darwin/arm64", {"architecture": "arm64", "os": "darwin"}),
    ("arm64", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
    ("s390x", "linux/s390x", {"architecture": "s390x", "os": "linux"}),
    ("windows/amd64", "windows/amd64", {"architecture": "amd64", "os": "windows"}),
])
def test_platform_normalisation(spec, want, json_) -> None:  # type: ignore[no-untyped-def]
    p = parse_platform(spec)
    assert str(p) == want
    assert p.to_json() == json_
    assert Platform.from_json(json_) == p


def test_platform_bare_os_takes_host_arch() -> None:
    p = parse_platform("linux")
    assert p.os == "linux" and p.architecture


@pytest.mark.parametrize("bad", ["", "linux/", "a/b/c/d", "linux/arm 64", "/amd64"])
def test_platform_invalid(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError) as e:
        parse_platform(bad)
    assert e.value.hint and "os/arch" in e.value.hint


def test_normalize_platform_duck_types() -> None:
    class P:  # like bakery.graph.ops.Platform
        os = "linux"
        architecture = "aarch64"
        variant = "v8"

    assert normalize_platform(P()) == Platform("linux", "arm64")
    assert normalize_platform(Platform("linux", "arm64", "v8")) == parse_platform("linux/arm64")


@pytest.mark.parametrize("want,have,score", [
    ("linux/arm64", "linux/arm64/v8", 2),
    ("linux/arm/v7", "linux/arm/v6", 1),
    ("linux/arm/v6", "linux/arm/v7", 0),
    ("linux/amd64/v3", "linux/amd64", 1),
    ("linux/amd64", "linux/amd64/v2", 0),
    ("linux/amd64", "linux/arm64", 0),
    ("linux/amd64", "windows/amd64", 0),
])
def test_platform_compatible(want, have, score) -> None:  # type: ignore[no-untyped-def]
    assert platform_compatible(parse_platform(want), parse_platform(have)) == score


def test_canonical_json_like_go() -> None:
    # compact, key order kept, HTML characters escaped, non-ASCII raw (as Go)
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"b":1,"a":[true,null,"x"]}'
    assert canonical_json({"s": "<a&b>"}) == b'{"s":"\\u003ca\\u0026b\\u003e"}'
    assert canonical_json({"s": "\u00e9\u2028"}) == '{"s":"\u00e9\\u2028"}'.encode()
    assert canonical_json({"s": "tab\tnl\n\x01"}) == b'{"s":"tab\\tnl\\n\\u0001"}'
    with pytest.raises(ValueError):
        canonical_json({"f": float("nan")})


def test_sorted_map_sorts_by_bytes() -> None:
    assert list(sorted_map({"b": 1, "B": 2, "a": 3})) == ["B", "a", "b"]
    assert sorted_map(None) == {}


def test_descriptor_json_order_and_pinned_digest() -> None:
    d = Descriptor(OCI_MANIFEST, A64, 7, annotations={"b": "1", "a": "<&>"},
                   platform=parse_platform("linux/arm/v7"))
    data = canonical_json(d.to_json())
    assert data == (
        b'{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'
        + b"a" * 64 + b'","size":7,"annotations":{"a":"\\u003c\\u0026\\u003e","b":"1"},'
        b'"platform":{"architecture":"arm","os":"linux","variant":"v7"}}')
    assert digest_bytes(data) == \
        "sha256:869d9a95574b8c203cefe794dcdd4adb99ecf94c09a2047d61c5453f4c5802cd"
    back = Descriptor.from_json(json.loads(data))
    assert back == d and back.annotations == d.annotations
    assert back.hex == "a" * 64


def test_descriptor_minimal_and_invalid() -> None:
    d = Descriptor.from_json({"mediaType": DOCKER_LAYER_GZIP, "digest": A64, "size": 3})
    assert d.to_json() == {"mediaType": DOCKER_LAYER_GZIP, "digest": A64, "size": 3}
    with pytest.raises(BakeryError, match="invalid digest"):
        Descriptor.from_json({"mediaType": "x", "digest": "sha256:abc", "size": 1})
    with pytest.raises(BakeryError, match="size"):
        Descriptor.from_json({"mediaType": "x", "digest": A64, "size": -1})
    with pytest.raises(BakeryError, match="no 'size'"):
        Descriptor.from_json({"mediaType": "x", "digest": A64})


def test_media_type_helpers() -> None:
    assert layer_media_type("zstd", True) == OCI_LAYER_ZSTD
    assert layer_media_type("gzip", False) == DOCKER_LAYER_GZIP
    with pytest.raises(BakeryError):
        layer_media_type("lz4", True)
    assert compression_of(DOCKER_LAYER_GZIP) == "gzip"
    assert compression_of(OCI_LAYER_ZSTD) == "zstd"
    assert compression_of("application/vnd.oci.image.layer.v1.tar") == "uncompressed"
    assert is_index(OCI_INDEX) and not is_index(OCI_MANIFEST)
    assert is_manifest(OCI_MANIFEST) and not is_manifest(OCI_INDEX)
    assert check_digest(A64) == A64
    with pytest.raises(BakeryError):
        check_digest("sha256:" + "A" * 64)
