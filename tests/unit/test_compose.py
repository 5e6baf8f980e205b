"""Compose files as bake inputs (buildx bake/compose.go + compose-go rules).

Most cases are buildx's bake/compose_test.go, turned into tables.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from bakery.bakefile.compose import is_compose, load_compose, parse_dotenv, substitute
from bakery.errors import BakeryError

CORPUS = Path("/work/shared/compat/bake-real")


def _load(
    text: str, env: Optional[Dict[str, str]] = None, workdir: Optional[str] = None
) -> Dict[str, Dict[str, Any]]:
    groups, targets = load_compose(
        [("docker-compose.yml", textwrap.dedent(text))],
        env or {},
        workdir=workdir,
        dotenv=workdir is not None,
    )
    names = [n for n, _ in targets]
    if targets:
        assert groups == [("default", names)]
    return dict(targets)


# ---------------------------------------------------------------------------
# Targets derived from services: (name, compose text, env, expected targets)

TARGET_CASES: List[Any] = [
    (
        "parse-compose",
        """
        services:
          db:
            build: ./db
            command: ./entrypoint.sh
            image: docker.io/tonistiigi/db
          webapp:
            build:
              context: ./dir
              additional_contexts:
                foo: ./bar
              dockerfile: Dockerfile-alternate
              network:
                none
              args:
                buildno: 123
              cache_from:
                - type=local,src=path/to/cache
              cache_to:
                - type=local,dest=path/to/cache
              ssh:
                - key=/path/to/key
                - default
              secrets:
                - token
                - aws
          webapp2:
            profiles:
              - test
            build:
              context: ./dir
              dockerfile_inline: |
                FROM alpine
        secrets:
          token:
            environment: ENV_TOKEN
          aws:
            file: /root/.aws/credentials
        """,
        {},
        {
            "db": {"context": "db", "tags": ["docker.io/tonistiigi/db"]},
            "webapp": {
                "context": "dir",
                "contexts": {"foo": "bar"},
                "dockerfile": "Dockerfile-alternate",
                "args": {"buildno": "123"},
                "cache-from": ["type=local,src=path/to/cache"],
                "cache-to": ["type=local,dest=path/to/cache"],
                "network": "none",
                "ssh": ["default", "key=/path/to/key"],
                "secret": ["id=token,env=ENV_TOKEN", "id=aws,src=/root/.aws/credentials"],
            },
            "webapp2": {"context": "dir", "dockerfile-inline": "FROM alpine\n"},
        },
    ),
    (
        "no-build-out-of-tree-service",
        """
        services:
            external:
                image: "verycooldb:1337"
            webapp:
                build: ./db
        """,
        {},
        {"webapp": {"context": "db"}},
    ),
    (
        "target",
        """
        services:
          db:
            build:
              context: ./db
              target: db
          webapp:
            build:
              context: .
              target: webapp
        """,
        {},
        {"db": {"context": "db", "target": "db"}, "webapp": {"context": ".", "target": "webapp"}},
    ),
    (
        "build-without-context",
        """
        services:
          db:
            build:
              target: db
          webapp:
            build:
              context: .
              target: webapp
        """,
        {},
        {"db": {"target": "db"}, "webapp": {"context": ".", "target": "webapp"}},
    ),
    (
        "build-arg-env",
        """
        version: "3.8"
        services:
          example:
            image: example
            build:
              context: .
              dockerfile: Dockerfile
              args:
                FOO:
                BAR: $ZZZ_BAR
                BRB: FOO
        """,
        {"FOO": "bar", "BAR": "foo", "ZZZ_BAR": "zzz_foo"},
        {
            "example": {
                "context": ".",
                "dockerfile": "Dockerfile",
                "args": {"FOO": "bar", "BAR": "zzz_foo", "BRB": "FOO"},
                "tags": ["example"],
            }
        },
    ),
    (
        "advanced-network",
        """
        services:
          db:
            networks:
              - example.com
            build:
              context: ./db
              target: db

        networks:
          example.com:
            name: example.com
            driver: bridge
            ipam:
              config:
                - subnet: 10.5.0.0/24
                  ip_range: 10.5.0.0/24
                  gateway: 10.5.0.254
        """,
        {},
        {"db": {"context": "db", "target": "db"}},
    ),
    (
        "tags-win-over-image",
        """
        services:
          example:
            image: example
            build:
              context: .
              dockerfile: Dockerfile
              tags:
                - foo
                - bar
        """,
        {},
        {"example": {"context": ".", "dockerfile": "Dockerfile", "tags": ["foo", "bar"]}},
    ),
    (
        "depends-on-list",
        """
        version: "3.8"

        services:
          example-container:
            image: example/fails:latest
            build:
              context: .
              dockerfile: Dockerfile
            depends_on:
              other-container:
                condition: service_healthy
            networks:
              default:
                aliases:
                  - integration-tests

          other-container:
            image: example/other:latest
            healthcheck:
              test: ["CMD", "echo", "success"]
              retries: 5
              interval: 5s
              timeout: 10s
              start_period: 5s

        networks:
          default:
            name: test-net
        """,
        {},
        {
            "example-container": {
                "context": ".",
                "dockerfile": "Dockerfile",
                "tags": ["example/fails:latest"],
            }
        },
    ),
    (
        "x-bake",
        """
        services:
          addon:
            image: ct-addon:bar
            build:
              context: .
              dockerfile: ./Dockerfile
              cache_from:
                - user/app:cache
              cache_to:
                - user/app:cache
              tags:
                - ct-addon:baz
              ssh:
                key: /path/to/key
              args:
                CT_ECR: foo
                CT_TAG: bar
              x-bake:
                contexts:
                  alpine: docker-image://alpine:3.13
                tags:
                  - ct-addon:foo
                  - ct-addon:alp
                ssh:
                  - default
                  - other=path/to/otherkey
                platforms:
                  - linux/amd64
                  - linux/arm64
                cache-from:
                  - type=local,src=path/to/cache
                cache-to:
                  - type=local,dest=path/to/cache
                pull: true

          aws:
            image: ct-fake-aws:bar
            build:
              dockerfile: ./aws.Dockerfile
              args:
                CT_ECR: foo
                CT_TAG: bar
              shm_size: 128m
              ulimits:
                nofile:
                  soft: 1024
                  hard: 1024
              x-bake:
                secret:
                  - id=mysecret,src=/local/secret
                  - id=mysecret2,src=/local/secret2
                ssh: default
                platforms: linux/arm64
                output: type=docker
                no-cache: true
        """,
        {},
        {
            "addon": {
                "context": ".",
                "dockerfile": "./Dockerfile",
                "args": {"CT_ECR": "foo", "CT_TAG": "bar"},
                "tags": ["ct-addon:baz", "ct-addon:foo", "ct-addon:alp"],
                "platforms": ["linux/amd64", "linux/arm64"],
                "cache-from": ["user/app:cache", "type=local,src=path/to/cache"],
                "cache-to": ["user/app:cache", "type=local,dest=path/to/cache"],
                "ssh": ["default", "key=/path/to/key", "other=path/to/otherkey"],
                "pull": True,
                "contexts": {"alpine": "docker-image://alpine:3.13"},
            },
            "aws": {
                "dockerfile": "./aws.Dockerfile",
                "args": {"CT_ECR": "foo", "CT_TAG": "bar"},
                "tags": ["ct-fake-aws:bar"],
                "secret": ["id=mysecret,src=/local/secret", "id=mysecret2,src=/local/secret2"],
                "ssh": ["default"],
                "platforms": ["linux/arm64"],
                "output": ["type=docker"],
                "no-cache": True,
                "shm-size": "128MiB",
                "ulimits": ["nofile=1024:1024"],
            },
        },
    ),
    (
        "x-bake-dedup",
        """
        services:
          webapp:
            image: app:bar
            build:
              cache_from:
                - user/app:cache
              cache_to:
                - user/app:cache
              tags:
                - ct-addon:foo
              ssh:
                - default
              x-bake:
                tags:
                  - ct-addon:foo
                  - ct-addon:baz
                cache-from:
                  - user/app:cache
                  - type=local,src=path/to/cache
                cache-to:
                  - type=local,dest=path/to/cache
                ssh:
                  - default
                  - key=path/to/key
        """,
        {},
        {
            "webapp": {
                "tags": ["ct-addon:foo", "ct-addon:baz"],
                "cache-from": ["user/app:cache", "type=local,src=path/to/cache"],
                "cache-to": ["user/app:cache", "type=local,dest=path/to/cache"],
                "ssh": ["default", "key=path/to/key"],
            }
        },
    ),
    (
        "ports",
        """
        services:
          foo:
            build:
             context: .
            ports:
              - 3306:3306
          bar:
            build:
             context: .
            ports:
              - mode: ingress
                target: 3306
                published: "3306"
                protocol: tcp
        """,
        {},
        {"foo": {"context": "."}, "bar": {"context": "."}},
    ),
    (
        "null-args",
        """
        services:
          scratch:
            build:
             context: .
             args:
                FOO: null
                bar: "baz"
        """,
        {},
        {"scratch": {"context": ".", "args": {"bar": "baz"}}},
    ),
    (
        "depends-on",
        """
        services:
          foo:
            build:
             context: .
            ports:
              - 3306:3306
            depends_on:
              - bar
          bar:
            build:
             context: .
        """,
        {},
        {"foo": {"context": "."}, "bar": {"context": "."}},
    ),
    (
        "develop",
        """
        services:
          scratch:
            build:
             context: ./webapp
            develop:
              watch:
                - path: ./webapp/html
                  action: sync
                  target: /var/www
                  ignore:
                    - node_modules/
        """,
        {},
        {"scratch": {"context": "webapp"}},
    ),
    (
        "cgroup",
        """
        services:
          scratch:
            build:
             context: ./webapp
            cgroup: private
        """,
        {},
        {"scratch": {"context": "webapp"}},
    ),
    (
        "project-name-default",
        """
        services:
          scratch:
            build:
             context: ./webapp
             args:
               PROJECT_NAME: ${COMPOSE_PROJECT_NAME}
        """,
        {},
        {"scratch": {"context": "webapp", "args": {"PROJECT_NAME": "bake"}}},
    ),
    (
        "project-name-env",
        """
        services:
          scratch:
            build:
             context: ./webapp
             args:
               PROJECT_NAME: ${COMPOSE_PROJECT_NAME}
        """,
        {"COMPOSE_PROJECT_NAME": "foo"},
        {"scratch": {"context": "webapp", "args": {"PROJECT_NAME": "foo"}}},
    ),
    # --- beyond compose_test.go
    (
        "service-name-dots-sanitised",
        """
        services:
          a.b:
            build: .
          c:
            build:
              additional_contexts:
                base: service:a.b
                other: target:x.y
        """,
        {},
        {"a_b": {"context": "."}, "c": {"contexts": {"base": "target:a_b", "other": "target:x_y"}}},
    ),
    (
        "interpolation-forms",
        """
        services:
          app:
            image: "reg/app:${TAG:-latest}"
            build:
              context: ${CTX-.}
              args:
                A: ${SET:+alt}
                B: ${EMPTY+alt}
                C: ${UNSET:+alt}
                D: $$NOT_A_VAR
                E: ${EMPTY:-${SET}}
                F: pre-${SET}-${UNSET}-post
        """,
        {"SET": "s", "EMPTY": ""},
        {
            "app": {
                "context": ".",
                "tags": ["reg/app:latest"],
                "args": {
                    "A": "alt",
                    "B": "alt",
                    "C": "",
                    "D": "$NOT_A_VAR",
                    "E": "s",
                    "F": "pre-s--post",
                },
            }
        },
    ),
    (
        "yaml-1.2-scalars",
        """
        services:
          app:
            build:
              args:
                YES: yes
                ON: on
                INT: 0123
                HEX: 0x1F
                FLOAT: 1.50
                BIG: 1e21
                BOOL: true
                DATE: 2021-08-02
                VERSION: 2021.8.2
                UNDERSCORE: 1_000
        """,
        {},
        {
            "app": {
                "args": {
                    "YES": "yes",
                    "ON": "on",
                    "INT": "83",
                    "HEX": "31",
                    "FLOAT": "1.5",
                    "BIG": "1e+21",
                    "BOOL": "true",
                    "DATE": "2021-08-02",
                    "VERSION": "2021.8.2",
                    "UNDERSCORE": "1000",
                }
            }
        },
    ),
    (
        "anchors-and-merge-keys",
        """
        x-common: &common
          context: .
          args:
            A: "1"
        services:
          one:
            build:
              <<: *common
              target: one
          two:
            build: *common
        """,
        {},
        {
            "one": {"context": ".", "args": {"A": "1"}, "target": "one"},
            "two": {"context": ".", "args": {"A": "1"}},
        },
    ),
    (
        "list-forms",
        """
        services:
          app:
            build:
              args:
                - A=1
                - B
                - C=
              labels:
                - com.example.a=x
                - com.example.b
              extra_hosts:
                - "somehost:162.242.195.82"
                - "otherhost=50.31.209.229"
                - "myhostv6=[::1]"
              additional_contexts:
                - ctx=./other
        """,
        {"B": "from-env"},
        {
            "app": {
                "args": {"A": "1", "B": "from-env", "C": ""},
                "labels": {"com.example.a": "x", "com.example.b": ""},
                "extra-hosts": {
                    "somehost": "162.242.195.82",
                    "otherhost": "50.31.209.229",
                    "myhostv6": "::1",
                },
                "contexts": {"ctx": "other"},
            }
        },
    ),
    (
        "map-forms",
        """
        services:
          app:
            build:
              labels:
                a: 1
              extra_hosts:
                h: ["1.2.3.4", "5.6.7.8"]
              shm_size: 2147483648
              ulimits:
                nproc: 65535
                nofile:
                  soft: 20000
                  hard: 40000
              no_cache: true
              pull: false
              sbom: true
              provenance: mode=max
        """,
        {},
        {
            "app": {
                "labels": {"a": "1"},
                "extra-hosts": {"h": "1.2.3.4,5.6.7.8"},
                "shm-size": "2GiB",
                "ulimits": ["nofile=20000:40000", "nproc=65535:65535"],
                "no-cache": True,
                "attest": ["type=sbom", "type=provenance,mode=max"],
            }
        },
    ),
    (
        "service-environment-resolves-args",
        """
        services:
          app:
            build:
              args:
                FROM_SERVICE:
                FROM_ENV:
                MISSING:
            environment:
              FROM_SERVICE: svc
        """,
        {"FROM_ENV": "env"},
        {"app": {"args": {"FROM_SERVICE": "svc", "FROM_ENV": "env"}}},
    ),
    (
        "x-bake-strings-split-on-spaces",
        """
        services:
          app:
            build:
              x-bake:
                tags: "a:1 a:2"
                platforms: linux/amd64 linux/arm64
                no-cache-filter: [base]
                cache-from: user/app:cache,user/app:cache2
                contexts:
                  dep: service:other.svc
        """,
        {},
        {
            "app": {
                "tags": ["a:1", "a:2"],
                "platforms": ["linux/amd64", "linux/arm64"],
                "no-cache-filter": ["base"],
                "cache-from": ["user/app:cache", "user/app:cache2"],
                "contexts": {"dep": "target:other_svc"},
            }
        },
    ),
    (
        "secret-csv-quoting",
        """
        services:
          app:
            build:
              secrets:
                - source: weird
                  target: /run/x
        secrets:
          weird:
            file: ./a,b.txt
        """,
        {},
        {"app": {"secret": ['id=weird,"src=a,b.txt"']}},
    ),
    (
        "no-services-with-build",
        """
        services:
          db:
            image: postgres
        """,
        {},
        {},
    ),
    (
        "extends-same-file",
        """
        services:
          base:
            image: base
            build:
              context: ./base
              args:
                A: "1"
                B: "2"
          app:
            extends: base
            image: app
            build:
              args:
                B: "3"
        """,
        {},
        {
            "base": {"context": "base", "args": {"A": "1", "B": "2"}, "tags": ["base"]},
            "app": {"context": "base", "args": {"A": "1", "B": "3"}, "tags": ["app"]},
        },
    ),
]


@pytest.mark.parametrize(
    "text,env,want", [c[1:] for c in TARGET_CASES], ids=[c[0] for c in TARGET_CASES]
)
def test_targets(text: str, env: Dict[str, str], want: Dict[str, Dict[str, Any]]) -> None:
    assert _load(text, env) == want


def test_groups_only_services_with_build() -> None:
    groups, targets = load_compose(
        [("c.yml", "services:\n  a:\n    image: x\n  b:\n    build: .\n")], {}, dotenv=False
    )
    assert groups == [("default", ["b"])]
    assert [n for n, _ in targets] == ["b"]


def test_secrets_only_file_has_no_groups() -> None:
    text = "secrets:\n  foo:\n    file: .secret\n"
    assert load_compose([("c.yml", text)], {}, dotenv=False) == ([], [])


# ---------------------------------------------------------------------------
# Errors: (name, compose text, message fragment, line or None)

ERROR_CASES: List[Any] = [
    ("inconsistent", "services:\n  webapp:\n    entrypoint: echo 1\n", "neither an image", 2),
    ("empty-service", "services:\n  foo:\n", "neither an image", None),
    ("unset-secret", "secrets:\n  foo: {}\n", "must declare either `file` or `environment`", 2),
    (
        "undefined-secret",
        "services:\n  foo:\n    build:\n      secrets:\n        - token\n",
        "undefined build secret token",
        5,
    ),
    (
        "external-secret-used",
        "services:\n  foo:\n    build:\n      secrets: [tok]\n"
        "secrets:\n  tok:\n    external: true\n",
        "unsupported external secret tok",
        4,
    ),
    ("empty-file", "", "empty compose file", None),
    ("no-compose-keys", "networks:\n  n: {}\n", "empty compose file", None),
    ("not-a-mapping", "- a\n- b\n", "Top-level object must be a mapping", 1),
    ("invalid-yaml", "services:\n  a: [\n", "invalid compose YAML", 3),
    ("duplicate-key", "services:\n  a:\n    build: .\n  a:\n    build: .\n", "already defined", 4),
    (
        "unknown-build-key",
        "services:\n  a:\n    build:\n      cache-from: [x]\n",
        "additional property cache-from is not allowed",
        4,
    ),
    ("bad-type", "services:\n  a:\n    build:\n      target: [x]\n", "must be a string", 4),
    (
        "required-variable",
        "services:\n  a:\n    build:\n      context: ${CTX:?set CTX}\n",
        "required variable CTX is missing a value: set CTX",
        4,
    ),
    (
        "invalid-template",
        "services:\n  a:\n    build:\n      context: ${}\n",
        "invalid interpolation format for services.a.build.context",
        4,
    ),
    (
        "invalid-service-name",
        "services:\n  a b:\n    build: .\n",
        'invalid service name "a b"',
        2,
    ),
    (
        "bad-ulimit",
        "services:\n  a:\n    build:\n      ulimits:\n        bogus: 1\n",
        "invalid ulimit type: bogus",
        5,
    ),
    (
        "ulimit-soft-over-hard",
        "services:\n  a:\n    build:\n      ulimits:\n        nofile: {soft: 2, hard: 1}\n",
        "soft limit must be less than or equal to hard limit: 2 > 1",
        5,
    ),
    (
        "cache-without-type",
        "services:\n  a:\n    build:\n      cache_from: [ref=x]\n",
        'type required for "ref=x"',
        4,
    ),
    (
        "x-bake-bad-secret",
        "services:\n  a:\n    build:\n      x-bake:\n        secret: id=a,bogus=b\n",
        "unexpected key 'bogus'",
        5,
    ),
    ("bad-shm-size", "services:\n  a:\n    build:\n      shm_size: lots\n", "invalid size", 4),
]


@pytest.mark.parametrize(
    "text,fragment,line", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors(text: str, fragment: str, line: Optional[int]) -> None:
    with pytest.raises(BakeryError) as info:
        load_compose([("docker-compose.yml", text)], {}, dotenv=False)
    err = info.value
    assert fragment in err.message
    if line is not None:
        assert err.pos is not None
        assert err.pos.file == "docker-compose.yml"
        assert err.pos.line == line


@pytest.mark.parametrize(
    "name",
    ["a", "abc", "a.b", "_a", "a_b", "AbC", "AbC-0123"],
)
def test_service_names(name: str) -> None:
    targets = _load(f"services:\n  {name}:\n    build:\n      context: .\n")
    assert list(targets) == [name.replace(".", "_")]


# ---------------------------------------------------------------------------
# is_compose (validateComposeFile)

IS_COMPOSE_CASES = [
    ("empty-service", "docker-compose.yml", "services:\n  foo:\n", True),
    ("build", "docker-compose.yml", "services:\n  foo:\n    build: .\n", True),
    ("image", "docker-compose.yml", "services:\n  simple:\n    image: nginx\n", True),
    ("unknown-ext", "docker-compose.foo", "services:\n  simple:\n    image: nginx\n", True),
    ("hcl", "docker-bake.hcl", 'target "default" {\n  dockerfile = "test"\n}\n', False),
    ("json", "docker-bake.json", '{"services": {"a": {"build": "."}}}', False),
    ("upper-yaml", "COMPOSE.YAML", "not: [valid", True),
    ("hcl-unknown-ext", "bake.txt", 'target "default" {\n  dockerfile = "test"\n}\n', False),
    ("yaml-without-compose-keys", "bake.txt", "target:\n  a: {}\n", False),
]


@pytest.mark.parametrize(
    "filename,data,want", [c[1:] for c in IS_COMPOSE_CASES], ids=[c[0] for c in IS_COMPOSE_CASES]
)
def test_is_compose(filename: str, data: str, want: bool, tmp_path: Path) -> None:
    assert is_compose(data, filename, {}, workdir=str(tmp_path)) is want


# ---------------------------------------------------------------------------
# Files on disk: env_file, .env, include, extends.file, several files


def test_env_file(tmp_path: Path) -> None:
    envf = tmp_path / "env"
    envf.write_text("FOO=bsdf -csdf\n")
    text = f"""
    services:
      scratch:
        build:
         context: .
         args:
            CT_ECR: foo
            FOO:
            NODE_ENV:
        environment:
          - NODE_ENV=test
          - AWS_ACCESS_KEY_ID=dummy
          - AWS_SECRET_ACCESS_KEY=dummy
        env_file:
          - {envf}
    """
    targets = _load(text)
    assert targets["scratch"]["args"] == {"CT_ECR": "foo", "FOO": "bsdf -csdf", "NODE_ENV": "test"}


def test_missing_env_file(tmp_path: Path) -> None:
    text = "services:\n  a:\n    build: .\n    env_file: nope.env\n"
    with pytest.raises(BakeryError, match=r"env file .*nope\.env not found"):
        load_compose([("c.yml", text)], {}, workdir=str(tmp_path))
    optional = "services:\n  a:\n    build: .\n    env_file:\n      - path: nope.env\n        required: false\n"
    assert load_compose([("c.yml", optional)], {}, workdir=str(tmp_path))[1] == [
        ("a", {"context": "."})
    ]


def test_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FOO=bar\nTAG=from-dotenv\n")
    text = "services:\n  scratch:\n    build:\n     context: .\n     args:\n        FOO:\n"
    assert _load(text, workdir=str(tmp_path)) == {
        "scratch": {"context": ".", "args": {"FOO": "bar"}}
    }
    # the environment wins over .env
    text2 = "services:\n  s:\n    image: i:${TAG}\n    build: .\n"
    assert _load(text2, {"TAG": "env"}, workdir=str(tmp_path))["s"]["tags"] == ["i:env"]
    assert _load(text2, {}, workdir=str(tmp_path))["s"]["tags"] == ["i:from-dotenv"]


def test_dotenv_in_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("FOO=bar\n")
    monkeypatch.chdir(tmp_path)
    text = "services:\n  s:\n    build:\n      args:\n        FOO:\n"
    _, targets = load_compose([("docker-compose.yml", text)], {})
    assert targets == [("s", {"args": {"FOO": "bar"}})]


def test_include(tmp_path: Path) -> None:
    (tmp_path / "compose-foo.yml").write_text(
        "services:\n  foo:\n    build:\n     context: .\n     target: buildfoo\n"
        "    ports:\n      - 3306:3306\n"
    )
    text = """
    include:
      - compose-foo.yml

    services:
      bar:
        build:
         context: .
         target: buildbar
    """
    targets = _load(text, workdir=str(tmp_path))
    assert targets == {
        "bar": {"context": ".", "target": "buildbar"},
        "foo": {"context": ".", "target": "buildfoo"},
    }


def test_include_conflict(tmp_path: Path) -> None:
    (tmp_path / "other.yml").write_text("services:\n  bar:\n    build: .\n")
    text = "include:\n  - other.yml\nservices:\n  bar:\n    build: .\n"
    with pytest.raises(BakeryError, match="conflicting service bar"):
        _load(text, workdir=str(tmp_path))


def test_extends_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "common.yml").write_text(
        "services:\n  base:\n    build:\n      context: ./app\n      target: prod\n"
    )
    text = "services:\n  web:\n    extends:\n      file: sub/common.yml\n      service: base\n"
    assert _load(text, workdir=str(tmp_path)) == {"web": {"context": "sub/app", "target": "prod"}}


def test_several_files_merge() -> None:
    base = "services:\n  app:\n    image: app\n    build:\n      context: .\n      args:\n        A: '1'\n      tags: [x]\n"
    over = (
        "services:\n  app:\n    build:\n      args:\n        B: '2'\n      tags: [x, y]\n"
        "      target: dev\n"
    )
    groups, targets = load_compose([("a.yml", base), ("b.yml", over)], {}, dotenv=False)
    assert groups == [("default", ["app"])]
    assert targets == [
        (
            "app",
            {"context": ".", "args": {"A": "1", "B": "2"}, "tags": ["x", "y"], "target": "dev"},
        )
    ]


def test_reset_and_override_tags() -> None:
    base = (
        "services:\n  app:\n    build:\n      context: .\n      args: {A: '1'}\n      target: t\n"
    )
    over = "services:\n  app:\n    build:\n      args: !override {B: '2'}\n      target: !reset\n"
    _, targets = load_compose([("a.yml", base), ("b.yml", over)], {}, dotenv=False)
    assert targets == [("app", {"context": ".", "args": {"B": "2"}})]


# ---------------------------------------------------------------------------
# Interpolation (compose-go template tests) and .env parsing

ENV = {"FOO": "first", "BAR": "", "JSON": '{"json": 2}'}

SUBSTITUTE_CASES = [
    ("$FOO", "first"),
    ("${FOO}", "first"),
    ("${FOO}$FOO", "firstfirst"),
    ("$$FOO", "$FOO"),
    ("$$$FOO", "$first"),
    ("${UNSET:-default}", "default"),
    ("${BAR:-default}", "default"),
    ("${BAR-default}", ""),
    ("${UNSET-default}", "default"),
    ("${FOO:+alt}", "alt"),
    ("${BAR:+alt}", ""),
    ("${BAR+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${BAR?err}", ""),
    ("${UNSET:-${FOO}}", "first"),
    ("${UNSET:-${UNSET2:-x}}", "x"),
    ("${UNSET:-a} and ${FOO}", "a and first"),
    ("${UNSET:-a}}", "a}"),
    ("${JSON}", '{"json": 2}'),
    ("${UNSET}", ""),
    ("a-$FOO-b", "a-first-b"),
    ("${FOO:-x-y}", "first"),
]


@pytest.mark.parametrize("template,want", SUBSTITUTE_CASES)
def test_substitute(template: str, want: str) -> None:
    assert substitute(template, ENV.get) == want


@pytest.mark.parametrize("template", ["$", "${", "${}", "${ FOO}", "$ FOO", "${UNSET:?msg}"])
def test_substitute_errors(template: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the private _TemplateError
        substitute(template, ENV.get)


DOTENV_CASES = [
    ("A=1\n", {"A": "1"}),
    ("# c\n\nA=1 # comment\n", {"A": "1"}),
    ("export A=x\n", {"A": "x"}),
    ("A='single $FOO'\n", {"A": "single $FOO"}),
    ('A="double $FOO\\n"\n', {"A": "double first\n"}),
    ("A=$FOO\nB=${A}-b\n", {"A": "first", "B": "first-b"}),
    ("A = spaced \n", {"A": "spaced"}),
    ("A: yaml\n", {"A": "yaml"}),
    ('A="multi\nline"\nB=2\n', {"A": "multi\nline", "B": "2"}),
    ("FOO\nUNSET\n", {"FOO": "first"}),
    ("A=\n", {"A": ""}),
]


@pytest.mark.parametrize("text,want", DOTENV_CASES)
def test_parse_dotenv(text: str, want: Dict[str, str]) -> None:
    assert parse_dotenv(text, ENV.get) == want


# ---------------------------------------------------------------------------
# The corpus: compose cases with what buildx printed


def _csv_dict(s: str) -> Dict[str, str]:
    if "=" not in s:
        return {"type": "registry", "ref": s}
    return dict(f.split("=", 1) for f in s.split(","))


def _corpus_cases() -> List[Any]:
    out = []
    if not CORPUS.is_dir():
        return out
    for case in sorted(CORPUS.iterdir()):
        spec_file = case / "case.json"
        if not spec_file.is_file():
            continue
        spec = json.loads(spec_file.read_text())
        files = spec.get("files") or []
        if not files:
            files = [
                n
                for n in (
                    "compose.yaml",
                    "compose.yml",
                    "docker-compose.yml",
                    "docker-compose.yaml",
                )
                if (case / n).is_file()
            ][:1]
        names = [f for f in files if f.endswith((".yml", ".yaml"))]
        if names and names == files and (case / "expected.json").is_file() and not spec["targets"]:
            out.append(pytest.param(case, names, spec.get("env") or {}, id=case.name))
    return out


@pytest.mark.parametrize("case,files,env", _corpus_cases())
def test_corpus(case: Path, files: List[str], env: Dict[str, str]) -> None:
    expected = json.loads((case / "expected.json").read_text())
    groups, targets = load_compose(
        [(f, (case / f).read_text()) for f in files], env, workdir=str(case)
    )
    assert {g: set(m) for g, m in groups} == {
        g: set(v["targets"]) for g, v in expected["group"].items()
    }
    got = {}
    for name, attrs in targets:
        attrs = dict(attrs)
        attrs.setdefault("context", ".")
        for key in ("cache-from", "cache-to"):
            if key in attrs:
                attrs[key] = [_csv_dict(s) for s in attrs[key]]
        got[name] = attrs
    want = {}
    for name, t in expected["target"].items():
        t = dict(t)
        t.setdefault("dockerfile", "Dockerfile")
        want[name] = t
    for name in got:
        got[name].setdefault("dockerfile", "Dockerfile")
    assert got == want


def test_corpus_present() -> None:
    if not CORPUS.is_dir():
        pytest.skip("no corpus")
    assert any("xbake" in str(p.values[0]) for p in _corpus_cases())


def test_positions_are_registered(tmp_path: Path) -> None:
    text = "services:\n  a:\n    build:\n      target: [x]\n"
    with pytest.raises(BakeryError) as info:
        load_compose([("docker-compose.yml", text)], {}, dotenv=False)
    rendered = info.value.render()
    assert "docker-compose.yml:4:15" in rendered
    assert "target: [x]" in rendered
    assert os.path.basename(info.value.pos.file) == "docker-compose.yml"  # type: ignore[union-attr]
