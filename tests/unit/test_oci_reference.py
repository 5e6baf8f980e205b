"""Image reference parsing and normalisation (as Docker's distribution/reference)."""

from __future__ import annotations

import pytest

from bakery.errors import BakeryError
from bakery.oci.reference import parse_reference

D = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("text,registry,repo,tag,digest,full,familiar", [
    ("busybox", "docker.io", "library/busybox", "latest", None,
     "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None,
     "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io", "user/app", "latest", None, "docker.io/user/app:latest",
     "user/app:latest"),
    ("docker.io/library/alpine:3", "docker.io", "library/alpine", "3", None,
     "docker.io/library/alpine:3", "alpine:3"),
    ("index.docker.io/library/alpine", "docker.io", "library/alpine", "latest", None,
     "docker.io/library/alpine:latest", "alpine:latest"),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None,
     "docker.io/library/alpine:latest", "alpine:latest"),
    ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest",
     "localhost/app:latest"),
    ("localhost:5000/team/app:v1", "localhost:5000", "team/app", "v1", None,
     "localhost:5000/team/app:v1", "localhost:5000/team/app:v1"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None,
     "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None, "[::1]:5000/app:x", "[::1]:5000/app:x"),
    ("ghcr.io/o/a/b:t_1.2-x", "ghcr.io", "o/a/b", "t_1.2-x", None, "ghcr.io/o/a/b:t_1.2-x",
     "ghcr.io/o/a/b:t_1.2-x"),
    ("busybox@" + D, "docker.io", "library/busybox", None, D, "docker.io/library/busybox@" + D,
     "busybox@" + D),
    ("reg.io:443/a:t@" + D, "reg.io:443", "a", "t", D, "reg.io:443/a:t@" + D,
     "reg.io:443/a:t@" + D),
    ("my-reg/a__b/c-d.e", "docker.io", "my-reg/a__b/c-d.e", "latest", None,
     "docker.io/my-reg/a__b/c-d.e:latest", "my-reg/a__b/c-d.e:latest"),
    ("Upper.io/app", "Upper.io", "app", "latest", None, "Upper.io/app:latest", "Upper.io/app:latest"),
])
def test_parse_reference(text, registry, repo, tag, digest, full, familiar) -> None:  # type: ignore[no-untyped-def]
    r = parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)
    assert str(r) == full
    assert r.familiar() == familiar
    assert parse_reference(str(r)) == r


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("docker.io/Library/x", "lowercase"),
    ("app:", "invalid tag"),
    ("app:-x", "invalid tag"),
    ("app:" + "t" * 129, "invalid tag"),
    ("app@sha256:abc", "invalid digest"),
    ("app@sha256:" + "0" * 32, "64 hex"),
    ("a//b", "component"),
    ("a/-b", "component"),
    ("-reg.io/a", "registry host"),
    ("0123456789abcdef" * 4, "64-byte"),
    ("reg.io/", "no repository"),
])
def test_parse_reference_errors(text, why) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BakeryError) as e:
        parse_reference(text)
    assert why in e.value.message
    assert e.value.hint


def test_reference_helpers() -> None:
    r = parse_reference("busybox")
    assert r.api_host == "registry-1.docker.io"
    assert r.reference == "latest"
    assert r.with_digest(D).reference == D
    assert r.with_tag("1").familiar() == "busybox:1"
    assert parse_reference("busybox", default_tag=None).tag is None
    assert parse_reference("127.0.0.1:5000/a").api_host == "127.0.0.1:5000"
    assert parse_reference("docker.io/user/library").familiar_name() == "user/library"
