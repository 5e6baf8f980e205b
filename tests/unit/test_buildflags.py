"""bakery.bakefile.buildflags against buildx's util/buildflags behaviour.

Cases come from buildx's and go-csvvalue's *_test.go files and from the
compatibility corpus (/work/shared/compat/bake-real: what buildx v0.36
printed for real bake files).
"""

from __future__ import annotations

import os
from typing import Any, List

import pytest

from bakery.bakefile import buildflags as bf
from bakery.bakefile.buildflags import (
    SSH,
    Attest,
    BuildflagsError,
    CacheOptionsEntry,
    ExportEntry,
    PolicyConfig,
    Secret,
)
from bakery.errors import BakeryError


def js(entries: List[Any]) -> List[Any]:
    return [e.to_json() for e in entries]


# --------------------------------------------------------------------------
# CSV, as go-csvvalue (Go's encoding/csv) reads one record

@pytest.mark.parametrize("line,fields", [
    ("foo,bar,baz", ["foo", "bar", "baz"]),
    ("foo,bar,baz\n", ["foo", "bar", "baz"]),
    ("foo,bar,baz\r\n", ["foo", "bar", "baz"]),
    (" ", [" "]),
    ("   foo,bar,baz", ["   foo", "bar", "baz"]),
    ('a,"b,cc ,ddd",e', ["a", "b,cc ,ddd", "e"]),
    ('""', [""]),
    ('a,"foo""",c', ["a", 'foo"', "c"]),
    ("a,,b", ["a", "", "b"]),
    ("a,b,", ["a", "b", ""]),
    (",a,b", ["", "a", "b"]),
    (",,", ["", "", ""]),
    ('"a",b,"c"', ["a", "b", "c"]),
    ('"a",', ["a", ""]),
    ('"multi\nline",x', ["multi\nline", "x"]),
    ("é,ü", ["é", "ü"]),
    ('type=docker,name=test.docker,"containerimage.config={""Config"":{""Entrypoint"":'
     '[""/sbin/init"", ""--log-level=err""], ""StopSignal"":""37""},""os"":""linux"", '
     '""architecture"":""amd64""}"',
     ["type=docker", "name=test.docker",
      'containerimage.config={"Config":{"Entrypoint":["/sbin/init", "--log-level=err"], '
      '"StopSignal":"37"},"os":"linux", "architecture":"amd64"}']),
], ids=repr)
def test_csv_fields(line: str, fields: List[str]) -> None:
    assert bf.csv_fields(line) == fields


@pytest.mark.parametrize("line,message", [
    ("", "EOF"),
    ("\n", "EOF"),
    ('"', 'parse error on line 1, column 2: extraneous or missing " in quoted-field'),
    ('"""', 'parse error on line 1, column 4: extraneous or missing " in quoted-field'),
    ('foo,aa"bb,cc', 'parse error on line 1, column 7: bare " in non-quoted-field'),
    ('a""b,c', 'parse error on line 1, column 2: bare " in non-quoted-field'),
    ('a "word","b"', 'parse error on line 1, column 3: bare " in non-quoted-field'),
    ('"a word",b"', 'parse error on line 1, column 11: bare " in non-quoted-field'),
    ('"a "word","b"', 'parse error on line 1, column 4: extraneous or missing " in quoted-field'),
    ('é"', 'parse error on line 1, column 3: bare " in non-quoted-field'),  # columns count bytes
], ids=repr)
def test_csv_fields_errors(line: str, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        bf.csv_fields(line)
    assert str(e.value) == message


# --------------------------------------------------------------------------
# output

@pytest.mark.parametrize("value,expected", [
    ("out", {"type": "local", "dest": "out"}),
    ("./bin/build", {"type": "local", "dest": "./bin/build"}),   # docker__compose
    (".", {"type": "local", "dest": "."}),                         # crazy-max__goreleaser-xx
    ("-", {"type": "tar", "dest": "-"}),
    ("dest=./out", {"type": "local", "dest": "dest=./out"}),       # one field, not type=
    ("type=docker", {"type": "docker"}),
    ("type=cacheonly", {"type": "cacheonly"}),
    ("type=registry", {"type": "registry"}),
    ("type=local,dest=static/pagefind", {"type": "local", "dest": "static/pagefind"}),
    ("type=oci,dest=texlive.oci", {"type": "oci", "dest": "texlive.oci"}),
    ("type=image,push=false", {"type": "image", "push": "false"}),
    ("type=docker,name=buildkit-tests", {"type": "docker", "name": "buildkit-tests"}),
    ("type=image,compression=zstd,force-compression=true",          # aptos-labs__aptos-core
     {"compression": "zstd", "force-compression": "true", "type": "image"}),
    ("type=image, Push =true,DEST=x", {"type": "image", "push": "true", "dest": "x"}),
    ('type=image,"name=a,b",push=true', {"type": "image", "name": "a,b", "push": "true"}),
    ("type=local,dest=", {"type": "local"}),
    ({"type": "local", "dest": "out"}, {"type": "local", "dest": "out"}),
    ({"type": "image", "push": True, "Compression-Level": 3},
     {"Compression-Level": "3", "push": "true", "type": "image"}),
    ({"type": "docker", "name": None}, {"type": "docker"}),
], ids=repr)
def test_output_from_value(value: Any, expected: dict) -> None:
    got = ExportEntry.from_value(value).to_json()
    assert got == expected
    assert list(got) == sorted(got)  # Go marshals the map with sorted keys


@pytest.mark.parametrize("value,message", [
    ("type=local,dest", "invalid value dest"),
    ("push=true,name=x", "type is required for output"),
    ("type=,dest=x", "type is required for output"),
    ('type=image,na"me=x', 'parse error on line 1, column 14: bare " in non-quoted-field'),
    ({"dest": "out"}, "type is required for output"),
    ({"type": "image", "tags": ["a"]}, 'element "tags": string required'),
    (3, "map of string required"),
], ids=repr)
def test_output_errors(value: Any, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        ExportEntry.from_value(value)
    assert str(e.value) == message


# --------------------------------------------------------------------------
# cache-from / cache-to

@pytest.mark.parametrize("value,expected", [
    (["user/app:cache"], [{"ref": "user/app:cache", "type": "registry"}]),
    ([":latest"], [{"ref": ":latest", "type": "registry"}]),            # maniator__dind-buildx
    (["a,b"], [{"ref": "a", "type": "registry"}, {"ref": "b", "type": "registry"}]),
    (["type=gha"], [{"type": "gha"}]),                                   # kevin-mind__nopo
    (["type=gha,mode=max"], [{"mode": "max", "type": "gha"}]),
    (["type=gha,scope="], [{"scope": "", "type": "gha"}]),             # mission-apprentissage
    (["type=gha,mode=max,scope="], [{"mode": "max", "scope": "", "type": "gha"}]),
    (["type=inline"], [{"type": "inline"}]),
    (["type=registry,ref=lopezator/cache-test:latest,mode=max"],
     [{"mode": "max", "ref": "lopezator/cache-test:latest", "type": "registry"}]),
    (["type=s3,endpoint_url=https://x.r2.cloudflarestorage.com/github,bucket=github,region=auto"],
     [{"bucket": "github", "endpoint_url": "https://x.r2.cloudflarestorage.com/github",
       "region": "auto", "type": "s3"}]),                                # gorse-io__gorse
    (["Type=GHA,Scope=X"], [{"scope": "X", "type": "GHA"}]),             # keys lowercased only
    ([{"type": "registry", "ref": "user/app:cache"}, "type=local,src=path/to/cache"],
     [{"ref": "user/app:cache", "type": "registry"}, {"src": "path/to/cache", "type": "local"}]),
    (["", None, "x"], [{"ref": "x", "type": "registry"}]),
    ([], []),
], ids=repr)
def test_cache_parse_list(value: List[Any], expected: List[dict]) -> None:
    for kind in ("cache-from", "cache-to"):
        assert js(bf.parse_list(kind, value)) == expected


def test_cache_env_derived_attrs_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "sensitive_token")
    monkeypatch.setenv("ACTIONS_CACHE_URL", "https://cache.github.com")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "definitely_dont_look_here")
    got = js(bf.parse_list("cache-from", ["type=gha", "type=s3,region=us-west-2,bucket=b"]))
    assert got == [{"type": "gha"}, {"bucket": "b", "region": "us-west-2", "type": "s3"}]


@pytest.mark.parametrize("value,message", [
    ("ref=foo", 'type required form> "ref=foo"'),
    ("type=gha,bad", "invalid value bad"),
    ("a,,b", "EOF"),
    ({"ref": "x"}, 'type required form> "{\\"ref\\":\\"x\\"}"'),
    ({"ref": "a<b", "n": 1}, 'type required form> "{\\"n\\":1,\\"ref\\":\\"a\\\\u003cb\\"}"'),
    # a quoted ref list is one field, which is then read as a CSV entry again
    ('"a,b"', "invalid value a"),
    ({"type": ""}, 'type required form> "{\\"type\\":\\"\\"}"'),
], ids=repr)
def test_cache_errors(value: Any, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        bf.parse_list("cache-from", [value])
    assert str(e.value) == message


def test_cache_from_value_single_entry() -> None:
    # One entry: the several-references form belongs to a list.
    assert CacheOptionsEntry.from_value("user/app:cache").to_json() == {
        "ref": "user/app:cache", "type": "registry"}
    with pytest.raises(BuildflagsError, match="invalid value a"):
        CacheOptionsEntry.from_value("a,b")


# --------------------------------------------------------------------------
# secret

@pytest.mark.parametrize("value,expected", [
    ("id=github-token,env=GITHUB_TOKEN", {"id": "github-token", "env": "GITHUB_TOKEN"}),
    ("type=file,id=composer_auth,src=./composer-auth.json",
     {"id": "composer_auth", "src": "./composer-auth.json"}),       # fleetbase__fleetbase
    ("id=GIT_CREDENTIALS", {"id": "GIT_CREDENTIALS"}),              # aptos-labs__aptos-core
    ("id=AWS_ACCESS_KEY_ID,env=AWS_ACCESS_KEY_ID",
     {"id": "AWS_ACCESS_KEY_ID", "env": "AWS_ACCESS_KEY_ID"}),      # docker__docs
    ("type=env,id=tok,src=TOKEN", {"id": "tok", "env": "TOKEN"}),
    ("type=env,id=tok,src=A,env=B", {"id": "tok", "src": "A", "env": "B"}),
    ("id=x,source=/run/x", {"id": "x", "src": "/run/x"}),
    ("ID=x,SRC=/p", {"id": "x", "src": "/p"}),
    ("src=/only", {"src": "/only"}),
    ('id=x,"src=/a,b"', {"id": "x", "src": "/a,b"}),
    ({"id": "mysecret", "src": "/local/secret"}, {"id": "mysecret", "src": "/local/secret"}),
    ({"id": "mysecret2", "env": "TOKEN"}, {"id": "mysecret2", "env": "TOKEN"}),
    ({"id": "n", "env": None}, {"id": "n"}),
], ids=repr)
def test_secret_from_value(value: Any, expected: dict) -> None:
    got = Secret.from_value(value).to_json()
    assert got == expected
    order = ["id", "src", "env"]  # struct order, as buildx prints it
    assert list(got) == [k for k in order if k in got]


@pytest.mark.parametrize("value,message", [
    ("id", "invalid field 'id' must be a key=value pair"),
    ("id=x,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
    ("id=x,Foo=bar", "unexpected key 'foo' in 'Foo=bar'"),
    ("type=ssh,id=x", 'unsupported secret type "ssh"'),
    ('id="x', 'failed to parse csv secret: parse error on line 1, column 4: bare " in non-quoted-field'),
    ({"id": "x", "type": "env"}, 'unsupported attribute "type"'),
    ({"id": ["x"]}, 'attribute "id": string required'),
    (["id=x"], "object required"),
], ids=repr)
def test_secret_errors(value: Any, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        Secret.from_value(value)
    assert str(e.value) == message


# --------------------------------------------------------------------------
# ssh

@pytest.mark.parametrize("value,expected", [
    ("default", {"id": "default"}),
    ("key=path/to/key", {"id": "key", "paths": ["path/to/key"]}),
    ("key=/a,/b", {"id": "key", "paths": ["/a", "/b"]}),   # not CSV: split on the first =
    ('key="/a,/b"', {"id": "key", "paths": ['"/a', '/b"']}),
    ("=x", {"paths": ["x"]}),
    ({"id": "default"}, {"id": "default"}),
    ({"id": "key", "paths": ["path/to/key"]}, {"id": "key", "paths": ["path/to/key"]}),
    ({"id": "key", "paths": []}, {"id": "key"}),
], ids=repr)
def test_ssh_from_value(value: Any, expected: dict) -> None:
    assert SSH.from_value(value).to_json() == expected


def test_ssh_errors() -> None:
    with pytest.raises(BuildflagsError, match='attribute "paths": list of string required'):
        SSH.from_value({"id": "k", "paths": "a"})
    with pytest.raises(BuildflagsError, match='unsupported attribute "path"'):
        SSH.from_value({"id": "k", "path": ["a"]})


def test_ssh_equality() -> None:
    assert SSH("default", []) == SSH("default")
    assert SSH("k", ["a"]) != SSH("k", ["b"])
    assert len({SSH("default", []), SSH("default")}) == 1


# --------------------------------------------------------------------------
# attest

@pytest.mark.parametrize("value,expected", [
    ("type=sbom", {"type": "sbom"}),
    ("type=provenance,mode=max", {"mode": "max", "type": "provenance"}),   # kotokaze__texlive
    ("type=provenance,mode=max,version=v1",
     {"mode": "max", "type": "provenance", "version": "v1"}),             # twplatformlabs
    ("type=sbom,disabled=true", {"disabled": True, "type": "sbom"}),
    ("type=sbom,disabled=false", {"type": "sbom"}),
    ("type=sbom,DISABLED=1", {"disabled": True, "type": "sbom"}),
    ('type=sbom,generator=scan,"FOO=bar,baz",Hello=World',
     {"FOO": "bar,baz", "Hello": "World", "generator": "scan", "type": "sbom"}),
    ({"type": "provenance", "mode": "max"}, {"mode": "max", "type": "provenance"}),
    ({"type": "sbom", "generator": "scan", "ENV1": "foo,bar", "Env2": "hello"},
     {"ENV1": "foo,bar", "Env2": "hello", "generator": "scan", "type": "sbom"}),
    ({"type": "sbom", "disabled": True}, {"disabled": True, "type": "sbom"}),
    ({"mode": "max"}, {"mode": "max", "type": ""}),  # an object needs no type
], ids=repr)
def test_attest_from_value(value: Any, expected: dict) -> None:
    got = Attest.from_value(value).to_json()
    assert got == expected
    assert list(got) == sorted(got)


@pytest.mark.parametrize("value,message", [
    ("mode=max", "attestation type not specified"),
    ("type=sbom,x", "invalid value x"),
    ("type=sbom,disabled=maybe",
     'invalid value disabled=maybe: strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"type": "sbom", "disabled": "nope"}, 'strconv.ParseBool: parsing "nope": invalid syntax'),
], ids=repr)
def test_attest_errors(value: Any, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        Attest.from_value(value)
    assert str(e.value) == message


def test_attest_marshal_like_buildx() -> None:
    attests = [
        Attest("provenance", {"mode": "max"}),
        Attest("sbom", disabled=True),
        Attest("sbom", {"generator": "scanner", "ENV1": '"foo,bar"', "Env2": "hello"}),
    ]
    assert js(attests) == [
        {"mode": "max", "type": "provenance"},
        {"disabled": True, "type": "sbom"},
        {"ENV1": '"foo,bar"', "Env2": "hello", "generator": "scanner", "type": "sbom"},
    ]


@pytest.mark.parametrize("typ,value,expected", [
    ("sbom", "", ""),
    ("sbom", "true", "type=sbom,disabled=false"),
    ("sbom", "false", "type=sbom,disabled=true"),
    ("provenance", "0", "type=provenance,disabled=true"),
    ("provenance", "mode=max", "type=provenance,mode=max"),
])
def test_canonicalize_attest(typ: str, value: str, expected: str) -> None:
    assert bf.canonicalize_attest(typ, value) == expected


# --------------------------------------------------------------------------
# policy

@pytest.fixture
def rego(tmp_path: Any) -> str:
    p = tmp_path / "policy.rego"
    p.write_text("package docker\n")
    return str(p)


def test_policy_from_values(rego: str) -> None:
    got = bf.parse_list("policy", [
        {"filename": rego, "reset": True, "strict": True, "log-level": "warn"},
        f"filename={rego},disabled=true",
        "",
    ])
    assert got == [PolicyConfig([rego], reset=True, strict=True, log_level="warning"),
                   PolicyConfig([rego], disabled=True)]
    assert got[0].to_json() == {"filename": rego, "log-level": "warning", "reset": "true",
                                "strict": "true"}


def test_policy_relative_to_cwd(tmp_path: Any) -> None:
    (tmp_path / "p.rego").write_text("package docker\n")
    assert bf.parse_list("policy", ["filename=p.rego"], cwd=str(tmp_path))[0].files == ("p.rego",)


@pytest.mark.parametrize("value,message", [
    ("filename=missing.rego",
     "failed to read policy file missing.rego: open missing.rego: no such file or directory"),
    ("filename=", "invalid value filename="),
    ("foo=bar", "invalid value foo=bar"),
    ("strict", "invalid value strict"),
    ("strict=maybe", 'invalid value strict=maybe: strconv.ParseBool: parsing "maybe": invalid syntax'),
    ("log-level=loud", 'invalid value log-level=loud: not a valid logrus Level: "loud"'),
    ({"filename": ["a"]}, "string required"),
], ids=repr)
def test_policy_errors(tmp_path: Any, value: Any, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        bf.parse_list("policy", [value], cwd=str(tmp_path))
    assert str(e.value) == message


# --------------------------------------------------------------------------
# parse_list: the attribute as a whole

@pytest.mark.parametrize("kind,message", [
    ("output", "list of map of string required"),
    ("cache-to", "list of map of string required"),
    ("attest", "list of map of string required"),
    ("secret", "list of object required"),
    ("ssh", "list of object required"),
])
def test_parse_list_needs_a_list(kind: str, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        bf.parse_list(kind, "type=local")
    assert str(e.value) == message


def test_parse_list_mixed_forms_and_skips() -> None:
    got = bf.parse_list("output", ["", None, "type=docker", {"type": "local", "dest": "out"}])
    assert js(got) == [{"type": "docker"}, {"dest": "out", "type": "local"}]
    assert bf.parse_list("secret", None) == []
    assert js(bf.parse_list("ssh", ["default", ""])) == [{"id": "default"}]


def test_unknown_kind() -> None:
    with pytest.raises(KeyError):
        bf.parse_list("tags", [])


# --------------------------------------------------------------------------
# normalize and merge

R = CacheOptionsEntry.from_value


def refs(entries: List[Any]) -> List[str]:
    return [e.attrs["ref"] for e in entries]


@pytest.mark.parametrize("given,expected", [
    (["a"], ["a"]),
    (["a", "a"], ["a"]),
    (["a", "b", "a"], ["a", "b"]),
    (["a", "b", "a", "c"], ["a", "b", "c"]),
    (["a", "a", "b", "c"], ["a", "c", "b"]),  # buildx swaps the last element into the hole
    (["a", "b", "c", "a", "d"], ["a", "b", "c", "d"]),
    (["a", "a", "a"], ["a"]),
], ids=repr)
def test_normalize_remove_dupes(given: List[str], expected: List[str]) -> None:
    assert refs(bf.normalize("cache-from", [R(x) for x in given])) == expected


def test_normalize_other_kinds() -> None:
    out = [ExportEntry.from_value("out"), ExportEntry.from_value("type=local,dest=out")]
    assert js(bf.normalize("output", out)) == [{"dest": "out", "type": "local"}]
    secrets = [Secret("a", env="A"), Secret("a", src="A"), Secret("a", env="A")]
    assert js(bf.normalize("secret", secrets)) == [{"id": "a", "env": "A"}, {"id": "a", "src": "A"}]
    assert js(bf.normalize("ssh", [SSH("default"), SSH("default", [])])) == [{"id": "default"}]
    assert bf.normalize("output", []) == []
    assert bf.normalize("attest", None) == []


def test_normalize_attest_one_per_type() -> None:
    got = bf.normalize("attest", [
        Attest.from_value("type=sbom"),
        Attest.from_value("type=provenance,mode=min"),
        Attest.from_value("type=provenance,mode=max"),
    ])
    assert js(got) == [{"type": "sbom"}, {"mode": "max", "type": "provenance"}]


def test_merge_cache_from_inherits() -> None:
    # tonistiigi__binfmt: "buildkit" inherits "mainline"'s cache-from and adds its own.
    parent = bf.parse_list("cache-from", ["tonistiigi/binfmt:master"])
    child = bf.parse_list("cache-from", ["tonistiigi/binfmt:buildkit-master"])
    assert js(bf.merge("cache-from", parent, child) or []) == [
        {"ref": "tonistiigi/binfmt:master", "type": "registry"},
        {"ref": "tonistiigi/binfmt:buildkit-master", "type": "registry"},
    ]


@pytest.mark.parametrize("a,b,expected", [
    (None, ["a", "a", "b"], ["a", "b"]),
    (["a"], ["a", "b"], ["a", "b"]),
    (["a", "b"], ["a", "c"], ["a", "b", "c"]),
    (["a"], None, ["a"]),
    ([], ["a"], ["a"]),
], ids=repr)
def test_merge_cache(a: Any, b: Any, expected: List[str]) -> None:
    def wrap(xs: Any) -> Any:
        return None if xs is None else [R(x) for x in xs]

    assert refs(bf.merge("cache-to", wrap(a), wrap(b)) or []) == expected


def test_merge_cache_empty() -> None:
    assert bf.merge("cache-from", None, []) == []
    assert bf.merge("cache-from", None, None) is None


def test_merge_attest() -> None:
    parent = bf.parse_list("attest", ["type=sbom", "type=provenance,mode=min"])
    child = bf.parse_list("attest", ["type=provenance,mode=max", "type=sbom,disabled=true"])
    assert js(bf.merge("attest", parent, child) or []) == [
        {"disabled": True, "type": "sbom"}, {"mode": "max", "type": "provenance"}]
    assert bf.merge("attest", None, child) == child
    assert bf.merge("attest", parent, None) == parent


def test_merge_secret_and_ssh() -> None:
    a, b = Secret("a", env="A"), Secret("b", src="/b")
    assert bf.merge("secret", [a], [a, b]) == [a, b]
    # With one side nil buildx normalises in place and returns the whole slice:
    # duplicates moved to the end, cut off by the target's final normalize.
    assert bf.merge("secret", None, [a, a, b]) == [a, b, a]
    assert bf.normalize("secret", bf.merge("secret", None, [a, a, b])) == [a, b]
    k1, k2 = SSH("default"), SSH("key", ["/k"])
    assert bf.merge("ssh", [k1], [k2, k1]) == [k1, k2]
    assert bf.merge("ssh", None, None) is None


def test_merge_output_and_policy() -> None:
    x, y = ExportEntry("docker"), ExportEntry("local", dest="out")
    assert bf.merge("output", [x], [y, x]) == [x, y]
    p = PolicyConfig(["a.rego"])
    assert bf.merge("policy", [p], [p]) == [p, p]
    assert bf.merge("policy", None, None) is None


def test_merge_does_not_mutate_inputs() -> None:
    b = [R("a"), R("a"), R("b")]
    before = list(b)
    bf.merge("secret", None, b)
    bf.merge("cache-from", b, b)
    assert b == before


# --------------------------------------------------------------------------
# --set *.push / *.load

def outs(*values: str) -> List[ExportEntry]:
    return [ExportEntry.from_value(v) for v in values]


@pytest.mark.parametrize("given,push,expected", [
    ([], True, [{"push": "true", "type": "image"}]),
    (["type=docker"], True, [{"type": "docker"}, {"push": "true", "type": "image"}]),
    (["type=image"], True, [{"push": "true", "type": "image"}]),
    (["type=image,push=false", "out"], True,
     [{"push": "true", "type": "image"}, {"dest": "out", "type": "local"}]),
    (["type=registry", "type=image", "out"], False,
     [{"dest": "out", "type": "local"}, {"push": "false", "type": "image"}]),
    (["type=docker"], False, [{"type": "docker"}]),
], ids=repr)
def test_set_push(given: List[str], push: bool, expected: List[dict]) -> None:
    assert js(bf.set_push(outs(*given), push)) == expected


@pytest.mark.parametrize("given,load,expected", [
    ([], True, [{"type": "docker"}]),
    (["type=image"], True, [{"type": "image"}, {"type": "docker"}]),
    (["type=docker"], True, [{"type": "docker"}]),
    (["type=docker,dest=x.tar"], True, [{"dest": "x.tar", "type": "docker"}, {"type": "docker"}]),
    (["out"], True, [{"dest": "out", "type": "local"}]),
    (["type=image"], False, [{"type": "image"}]),
], ids=repr)
def test_set_load(given: List[str], load: bool, expected: List[dict]) -> None:
    assert js(bf.set_load(outs(*given), load)) == expected


# --------------------------------------------------------------------------
# what buildx checks before --print prints

def test_validate_secrets_ok(tmp_path: Any) -> None:
    (tmp_path / "composer-auth.json").write_text("{}")
    (tmp_path / "FROM_FILE").write_text("x")
    bf.validate_secrets([
        Secret("composer_auth", src="./composer-auth.json"),
        Secret("github-token", env="GITHUB_TOKEN"),   # an env source is not checked
        Secret("GIT_CREDENTIALS"),                    # found in the environment...
        Secret("EMPTY"),                              # ...even when empty
        Secret("FROM_FILE"),                          # else a file named by the id
    ], {"GIT_CREDENTIALS": "dummy", "EMPTY": ""}, str(tmp_path))


@pytest.mark.parametrize("secret,message", [
    (Secret("GIT_CREDENTIALS"),
     "failed to stat GIT_CREDENTIALS: stat GIT_CREDENTIALS: no such file or directory"),
    (Secret("composer_auth", src="./composer-auth.json"),
     "failed to stat ./composer-auth.json: stat ./composer-auth.json: no such file or directory"),
    (Secret("", env="X"), "secret missing ID"),
    (Secret("big", src="big"), "secret big too big. max size 500KiB"),
    (Secret("d", src="f/x"), "failed to stat f/x: stat f/x: not a directory"),
], ids=repr)
def test_validate_secrets_errors(tmp_path: Any, secret: Secret, message: str) -> None:
    (tmp_path / "big").write_bytes(b"x" * (500 * 1024 + 1))
    (tmp_path / "f").write_text("")
    with pytest.raises(BakeryError) as e:
        bf.validate_secrets([secret], {}, str(tmp_path))
    assert e.value.message == message


def test_validate_secret_size_limit_inclusive(tmp_path: Any) -> None:
    (tmp_path / "ok").write_bytes(b"x" * (500 * 1024))
    bf.validate_secrets([Secret("ok")], {}, str(tmp_path))


@pytest.mark.parametrize("values,message", [
    (["type=local"], "dest is required for local exporter"),
    (["type=local,dest=-"], "dest cannot be stdout for local exporter"),
    (["type=local,dest=file"], "destination directory file is a file"),
    (["type=oci,tar=false"], "dest is required for oci exporter"),
    (["-", "type=oci"], "multiple outputs configured to write to stdout"),
    (["type=docker,dest=dir"], "destination file dir is a directory"),
], ids=repr)
def test_validate_exports_errors(tmp_path: Any, values: List[str], message: str) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    with pytest.raises(BakeryError) as e:
        bf.validate_exports(outs(*values), str(tmp_path))
    assert e.value.message == message


def test_validate_exports_ok(tmp_path: Any) -> None:
    (tmp_path / "dir").mkdir()
    bf.validate_exports(outs("dir", "new", "type=docker", "type=registry", "type=image",
                             "type=cacheonly", "type=oci,dest=texlive.oci", "-"), str(tmp_path))
    assert not os.path.exists(tmp_path / "texlive.oci")
    with pytest.raises(BakeryError, match="refusing to write to console"):
        bf.validate_exports(outs("-"), str(tmp_path), stdout_is_console=True)


# --------------------------------------------------------------------------
# annotations

@pytest.mark.parametrize("values,expected", [
    (["a=b"], [("", None, "a", "b")]),
    (["com.example=a"], [("", None, "com.example", "a")]),
    (["manifest:com.example=a"], [("manifest", None, "com.example", "a")]),
    (["manifest[plat/form]:com.example=a"], [("manifest", "plat/form", "com.example", "a")]),
    (["index,manifest:com.example=a"],
     [("index", None, "com.example", "a"), ("manifest", None, "com.example", "a")]),
    (["index,manifest:org.opencontainers.image.revision=unknown"],          # vllm-project__vllm
     [("index", None, "org.opencontainers.image.revision", "unknown"),
      ("manifest", None, "org.opencontainers.image.revision", "unknown")]),
    (["manifest-descriptor[linux/arm64/v8]:k=v=w"],
     [("manifest-descriptor", "linux/arm64/v8", "k", "v=w")]),
    ([""], []),
], ids=repr)
def test_parse_annotations(values: List[str], expected: List[tuple]) -> None:
    assert bf.parse_annotations(values) == expected


@pytest.mark.parametrize("value,message", [
    ("novalue", 'invalid annotation "novalue", expected key=value'),
    ("bad:com.example=a", 'unknown annotation type "bad"'),
    ("Manifest:k=v", 'invalid annotation type "Manifest", expected type and optional platform '
                     "in square brackets"),
    ("manifest[linux/amd64]x:k=v", 'invalid annotation type "manifest[linux/amd64]x", expected '
                                   "type and optional platform in square brackets"),
    ("manifest[foo]:k=v",
     'invalid platform "foo": "foo": unknown operating system or architecture: invalid argument'),
], ids=repr)
def test_parse_annotations_errors(value: str, message: str) -> None:
    with pytest.raises(BuildflagsError) as e:
        bf.parse_annotations([value])
    assert str(e.value) == message


# --------------------------------------------------------------------------
# Go helpers

@pytest.mark.parametrize("s,expected", [
    ("abc", '"abc"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("tab\there\n", '"tab\\there\\n"'),
    ("é", '"é"'),
    ("\x01", '"\\x01"'),
])
def test_go_quote(s: str, expected: str) -> None:
    assert bf.go_quote(s) == expected


@pytest.mark.parametrize("s,ok", [
    ("1", True), ("t", True), ("TRUE", True), ("True", True),
    ("0", False), ("f", False), ("FALSE", False), ("False", False),
])
def test_parse_bool(s: str, ok: bool) -> None:
    assert bf.parse_bool(s) is ok


@pytest.mark.parametrize("s", ["yes", "tRUE", "", " true"])
def test_parse_bool_rejects(s: str) -> None:
    with pytest.raises(BuildflagsError, match="invalid syntax"):
        bf.parse_bool(s)
