"""schemas/bake.schema.json: valid, and it accepts the project's JSON/TOML files."""

from __future__ import annotations

import json
import os
import sys

import pytest

jsonschema = pytest.importorskip("jsonschema")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schema() -> dict:
    with open(os.path.join(ROOT, "schemas", "bake.schema.json")) as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_toml_example_validates() -> None:
    with open(os.path.join(ROOT, "examples", "toml", "bakery.toml"), "rb") as fh:
        jsonschema.validate(tomllib.load(fh), schema())


@pytest.mark.parametrize(
    "doc",
    [
        {"target": {"a": {"tags": ["x"], "output": ["type=local,dest=out", {"type": "docker"}]}}},
        {"variable": {"V": {"default": [1, 2], "type": "list(number)"}}, "V2": "top-level attribute"},
        {"function": {"f": {"params": ["a"], "result": "${a}"}}},
        {"group": {"default": {"targets": ["a"]}}},
    ],
)
def test_valid_documents(doc: dict) -> None:
    jsonschema.validate(doc, schema())


@pytest.mark.parametrize(
    "doc",
    [
        {"target": {"a": {"tgas": ["x"]}}},
        {"target": {"a": {"tags": "x"}}},
        {"group": {"g": {"targets": "a"}}},
        {"function": {"f": {"result": "x"}}},
    ],
)
def test_invalid_documents(doc: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_compat_corpus_json_files_validate() -> None:
    corpus = os.path.join(os.path.dirname(ROOT), "shared", "compat", "bake-real")
    if not os.path.isdir(corpus):
        pytest.skip("compatibility corpus not beside the project")
    seen = 0
    for case in sorted(os.listdir(corpus)):
        path = os.path.join(corpus, case, "docker-bake.json")
        if os.path.exists(path):
            with open(path) as fh:
                jsonschema.validate(json.load(fh), schema())
            seen += 1
    assert seen >= 3
