"""Bake files end to end through the pure layer: text → resolved targets.

Each case is a bake file (HCL unless named otherwise), the requested targets,
and what ``--print`` shows for them (targets only, compared per attribute).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pytest

from bakery.bakefile.files import BakeFile
from bakery.bakefile.loader import load_files, resolve_targets
from bakery.bakefile.printer import document
from bakery.errors import BakeryError


def plan(
    text: str,
    targets: Sequence[str] = (),
    env: Optional[Mapping[str, str]] = None,
    sets: Sequence[str] = (),
    cli_vars: Optional[Mapping[str, str]] = None,
    name: str = "docker-bake.hcl",
    extra: Sequence[BakeFile] = (),
) -> Dict[str, Any]:
    env = dict(env or {})
    files = [BakeFile(name, textwrap.dedent(text)), *extra]
    cfg = load_files(files, dict(cli_vars or {}), env)
    return document(resolve_targets(cfg, list(targets), list(sets), env))


def t(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    return doc["target"][name]  # type: ignore[no-any-return]


VARIABLES = [
    # (file, env, target attribute, expected)
    ('variable "V" { default = "x" }\ntarget "a" { tags = ["i:${V}"] }', {}, "tags", ["i:x"]),
    ('variable "V" { default = "x" }\ntarget "a" { tags = ["i:${V}"] }', {"V": "y"}, "tags", ["i:y"]),
    ('variable "V" {}\ntarget "a" { tags = ["i:${V}"] }', {}, "tags", ["i:"]),
    ('variable "V" {}\ntarget "a" { tags = ["i:${V}"] }', {"V": "z"}, "tags", ["i:z"]),
    ('variable "N" { default = 1 }\ntarget "a" { args = { X = N + 1 } }', {"N": "41"}, "args", {"X": "42"}),
    ('variable "B" { default = false }\ntarget "a" { args = { X = B ? "yes" : "no" } }', {"B": "1"}, "args",
     {"X": "yes"}),
    ('variable "B" { default = true }\ntarget "a" { args = { X = B } }', {"B": "false"}, "args", {"X": "false"}),
    # variables that use variables and functions
    ('variable "A" { default = "a" }\nvariable "B" { default = upper("${A}b") }\ntarget "a" { args = { X = B } }',
     {"A": "q"}, "args", {"X": "QB"}),
    # a top-level attribute overrides a variable's default; the environment still wins
    ('variable "V" { default = "x" }\nV = "attr"\ntarget "a" { args = { X = V } }', {}, "args", {"X": "attr"}),
    ('variable "V" { default = "x" }\nV = "attr"\ntarget "a" { args = { X = V } }', {"V": "env"}, "args",
     {"X": "env"}),
    # typed variables
    ('variable "L" {\n type = list(string)\n default = ["a"]\n}\ntarget "a" { tags = L }', {"L": "x,y"}, "tags",
     ["x", "y"]),
    ('variable "L" {\n type = list(string)\n default = ["a"]\n}\ntarget "a" { tags = L }', {"L_JSON": '["j","k"]'},
     "tags", ["j", "k"]),
    ('variable "L" {\n type = list(number)\n default = [1]\n}\ntarget "a" { args = { S = join("+", L) } }',
     {"L": "1,2,3"}, "args", {"S": "1+2+3"}),
    ('variable "M" {\n type = map(string)\n default = {}\n}\ntarget "a" { args = M }', {"M": "a=1,b=2"}, "args",
     {"a": "1", "b": "2"}),
    ('variable "N" {\n type = number\n}\ntarget "a" { args = { X = N == null ? "unset" : N } }', {}, "args",
     {"X": "unset"}),
    ('variable "S" {\n type = string\n default = 5\n}\ntarget "a" { args = { X = S } }', {}, "args", {"X": "5"}),
    # built-in variables
    ('target "a" { args = { C = BAKE_CMD_CONTEXT } }', {}, "args", {"C": "cwd://"}),
    # --var is above the environment: tested separately
]


@pytest.mark.parametrize("text,env,key,expected", VARIABLES)
def test_variables(text: str, env: Dict[str, str], key: str, expected: Any) -> None:
    assert t(plan(text, ["a"], env), "a").get(key) == expected


def test_cli_vars_beat_environment() -> None:
    doc = plan('variable "V" { default = "x" }\ntarget "a" { args = { X = V } }', ["a"], {"V": "env"},
               cli_vars={"V": "cli"})
    assert t(doc, "a")["args"] == {"X": "cli"}


def test_env_lookup_can_be_disabled() -> None:
    doc = plan('variable "V" { default = "x" }\ntarget "a" { args = { X = V } }', ["a"],
               {"V": "env", "BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP": "1"})
    assert t(doc, "a")["args"] == {"X": "x"}


def test_functions_and_references() -> None:
    doc = plan(
        """
        variable "REPO" { default = "r" }
        function "tag" {
          params = [name, ver]
          result = "${REPO}/${name}:${ver}"
        }
        function "all" {
          params = [first]
          variadic_params = rest
          result = concat([first], rest)
        }
        target "base" {
          tags = [tag("base", "1")]
          args = { K = "v" }
        }
        target "app" {
          tags = concat(target.base.tags, all("x", "y", "z"))
          args = { FROM_BASE = target.base.args.K }
        }
        """,
        ["app"],
    )
    assert t(doc, "app")["tags"] == ["r/base:1", "x", "y", "z"]
    assert t(doc, "app")["args"] == {"FROM_BASE": "v"}


def test_matrix_expansion_and_group() -> None:
    doc = plan(
        """
        target "app" {
          name = "app-${tgt}-${replace(v, ".", "-")}"
          matrix = {
            tgt = ["a", "b"]
            v = ["1.0", "2.0"]
          }
          target = tgt
          args = { V = v }
        }
        """,
        ["app"],
    )
    assert sorted(doc["target"]) == ["app-a-1-0", "app-a-2-0", "app-b-1-0", "app-b-2-0"]
    assert sorted(doc["group"]["app"]["targets"]) == sorted(doc["target"])
    assert t(doc, "app-b-2-0")["args"] == {"V": "2.0"} and t(doc, "app-b-2-0")["target"] == "b"


def test_matrix_of_objects() -> None:
    doc = plan(
        """
        target "x" {
          name = "x-${item.n}"
          matrix = { item = [{ n = "one", v = 1 }, { n = "two", v = 2 }] }
          args = { V = item.v }
        }
        """,
        ["x"],
    )
    assert t(doc, "x-two")["args"] == {"V": "2"}


def test_same_named_targets_merge_across_files() -> None:
    override = BakeFile("docker-bake.override.hcl", 'target "a" {\n  tags = ["o"]\n  args = { B = "2" }\n}\n')
    doc = plan('target "a" {\n  tags = ["t"]\n  args = { A = "1" }\n}\n', ["a"], extra=[override])
    assert t(doc, "a")["tags"] == ["o"] and t(doc, "a")["args"] == {"A": "1", "B": "2"}


def test_json_bake_file() -> None:
    doc = plan(
        json.dumps({
            "variable": {"TAG": {"default": "latest"}},
            "group": {"default": {"targets": ["app"]}},
            "target": {"app": {"tags": ["app:${TAG}"], "args": {"N": 1}, "dockerfile": "Dockerfile.app"}},
        }),
        [],
        {"TAG": "dev"},
        name="docker-bake.json",
    )
    assert t(doc, "app") == {
        "context": ".", "dockerfile": "Dockerfile.app", "args": {"N": "1"}, "tags": ["app:dev"],
    }
    assert doc["group"] == {"default": {"targets": ["app"]}}


def test_toml_matches_hcl_example() -> None:
    import os

    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
    with open(os.path.join(root, "monorepo", "docker-bake.hcl")) as fh:
        hcl_doc = plan(fh.read())
    with open(os.path.join(root, "toml", "bakery.toml")) as fh:
        toml_doc = plan(fh.read(), name="bakery.toml")
    assert hcl_doc == toml_doc
    assert set(hcl_doc["target"]) == {"api", "worker", "web-plain", "web-debug", "base"}


def test_unknown_attributes_are_ignored_with_a_warning() -> None:
    # buildx accepts (and never evaluates) attributes it does not know
    files = [BakeFile("docker-bake.hcl", 'target "a" {\n  tgas = [nope]\n  tags = ["x"]\n}\n')]
    cfg = load_files(files, {}, {})
    assert cfg.warnings == [
        'docker-bake.hcl:2:3: warning: unknown target attribute "tgas" is ignored (as buildx does); '
        'did you mean "tags"?'
    ]
    assert t(document(resolve_targets(cfg, ["a"], [], {})), "a")["tags"] == ["x"]


def test_print_escapes_interpolation_markers() -> None:
    doc = plan('target "a" {\n  args = { X = "$${literal}" }\n  dockerfile-inline = "FROM x\\nRUN echo $${A}"\n}\n', ["a"])
    assert t(doc, "a")["args"] == {"X": "$${literal}"}
    assert t(doc, "a")["dockerfile-inline"] == "FROM x\nRUN echo $${A}"


def test_validation_passes_and_fails() -> None:
    text = """
    variable "PORT" {
      default = 3000
      validation {
        condition = PORT >= 1024
        error_message = "The variable 'PORT' must be 1024 or higher."
      }
    }
    target "a" { args = { P = PORT } }
    """
    assert t(plan(text, ["a"]), "a")["args"] == {"P": "3000"}
    with pytest.raises(BakeryError) as e:
        plan(text, ["a"], {"PORT": "80"})
    assert e.value.message == "validation failed: The variable 'PORT' must be 1024 or higher."
    assert (e.value.pos.line, e.value.pos.col) == (5, 5)


ERRORS: List[Any] = [
    # (file, env, message, (line, col))
    ('target "a.b" {}', {}, 'invalid name "a.b": only "[a-zA-Z0-9_-]+" are allowed', (1, 8)),
    ('variable "A" { default = B }\nvariable "B" { default = A }\ntarget "a" {}', {},
     "variable cycle not allowed for A: A -> B -> A", (1, 26)),
    ('target "a" { tags = [nope] }', {}, 'Unknown variable; There is no variable named "nope".', None),
    ('target "a" { tags = "x" }', {}, 'inappropriate value for attribute "tags": a list of strings is required, got string',
     None),
    ('target "a" {\n  name = "x"\n}', {}, "name requires matrix", (2, 3)),
    ('target "a" {\n  matrix = { v = ["1", "2"] }\n}', {}, 'duplicate name "a"', None),
    ('target "a" {\n  matrix = "x"\n}', {}, "matrix must be a map", None),
    ('group "g" {\n  matrix = { a = ["1"] }\n}\ntarget "a" {}', {}, "matrix is not supported for groups", (2, 3)),
    ('target "a" {\n  inherits = ["b"]\n}\ntarget "b" {\n  args = { X = target.a.args.Y }\n}', {},
     None, None),
    ('variable "N" { default = 1 }\ntarget "a" {}', {"N": "abc"},
     'failed to parse N as number: strconv.ParseFloat: parsing "abc": invalid syntax', (1, 26)),
    ('variable "L" { default = ["a"] }\ntarget "a" {}', {"L": "x"}, "unsupported type tuple for variable L", (1, 1)),
    ('function "f" {\n  params = ["x"]\n  result = x\n}\ntarget "a" {}', {},
     "invalid param element: each parameter name must be an identifier", (2, 3)),
    ('target "a" { inherits = ["missing"] }', {}, "failed to find target missing (inherited by a)", (1, 1)),
    ('target "a" {\n  contexts = { x = "target:a" }\n}', {}, "target a cannot link to itself", (1, 1)),
    ('target "a" {\n  output = ["type=local"]\n}\ntarget "b" {\n  tags = target.a.nope\n}', {}, None, None),
]


@pytest.mark.parametrize("text,env,message,where", ERRORS)
def test_error_catalogue(text: str, env: Dict[str, str], message: Optional[str], where: Any) -> None:
    with pytest.raises(BakeryError) as e:
        plan(text, ["a"], env)
    if message is not None:
        assert e.value.message == message
    if where is not None:
        assert e.value.pos is not None and (e.value.pos.line, e.value.pos.col) == where
    # every error names its file
    assert e.value.pos is None or e.value.pos.file == "docker-bake.hcl"


def test_print_json_matches_json_module_and_go_escaping() -> None:
    from bakery.bakefile.model import Group, Target
    from bakery.bakefile.printer import print_json
    from bakery.bakefile.resolve import Resolved

    r = Resolved(
        {"a": Target("a", context=".", dockerfile="Dockerfile", args={"X": "<&>", "U": "é\u2028"},
                     tags=[], pull=False, network="")},
        {"default": Group("default", ("a",))},
    )
    text = print_json(r)
    assert json.loads(text) == document(r)
    assert '"X": "\\u003c\\u0026\\u003e"' in text and "é" in text and "\\u2028" in text
    assert text == json.dumps(document(r), indent=2, ensure_ascii=False).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028")
