"""TOML bake files (``bakery.toml``), parsed into the same AST as HCL.

The model is HCL's, table for block::

    [variable.TAG]                 # variable "TAG" { ... }
    default = "latest"
    type = "string"                # a type expression, as a string

    [function.image]               # function "image" { ... }
    params = ["name"]
    result = "${REGISTRY}/${name}:${TAG}"

    [target.app]                   # target "app" { ... }
    tags = ["${image(\\"app\\")}"]
    args = { VERSION = "${TAG}" }

    [group.default]
    targets = ["app"]

Every TOML string is an HCL template; a string that is exactly one
``${...}`` interpolation yields the expression's value unconverted, so any
HCL expression can be written (``platforms = "${PLATFORMS}"`` keeps a list).
Top-level keys that are not blocks are top-level attributes, as in HCL.
``[[variable.X.validation]]`` tables are validation blocks.  One file
translates into another without loss.

tomllib gives no positions, so positions are found by locating each table
header and key in the text (line-accurate for ordinary files).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from bakery.bakefile import hcl
from bakery.bakefile.hcl import ast
from bakery.errors import BakeryError, Pos, register_source

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["parse_toml"]

BLOCK_KEYS = ("variable", "function", "target", "group")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


class _Locator:
    """Line numbers of table headers and keys (tomllib has none)."""

    def __init__(self, text: str, name: str):
        self.name = name
        self.headers: Dict[str, int] = {}
        self.keys: Dict[Tuple[str, str], int] = {}
        table = ""
        for i, line in enumerate(text.splitlines(), 1):
            m = _HEADER.match(line)
            if m:
                table = ".".join(p.strip().strip('"').strip("'") for p in m.group(1).split("."))
                self.headers.setdefault(table, i)
                continue
            km = re.match(r'^\s*("[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*=', line)
            if km:
                self.keys.setdefault((table, km.group(1).strip("\"'")), i)

    def table(self, path: str) -> Pos:
        return Pos(self.name, self.headers.get(path, 1), 1)

    def key(self, table: str, key: str) -> Pos:
        line = self.keys.get((table, key))
        if line is None:
            return self.table(table)
        return Pos(self.name, line, 1)


def _expr(v: Any, pos: Pos, name: str) -> Any:
    if isinstance(v, str):
        if "${" not in v and "%{" not in v:
            return ast.Literal(v, pos)
        return hcl.parse_template(v, name, pos.line, pos.col)
    if isinstance(v, bool) or v is None:
        return ast.Literal(v, pos)
    if isinstance(v, (int, float)):
        return ast.Literal(v, pos)
    if isinstance(v, list):
        return ast.TupleCons([_expr(x, pos, name) for x in v], pos)
    if isinstance(v, dict):
        return ast.ObjectCons([(ast.Literal(str(k), pos), _expr(x, pos, name)) for k, x in v.items()], pos)
    # dates and times: TOML-only types, given as their ISO text
    return ast.Literal(v.isoformat(), pos)


def _names_expr(v: Any, what: str, pos: Pos, name: str, single: bool = False) -> Any:
    items = [v] if single else v
    if (not single and not isinstance(v, list)) or not all(isinstance(x, str) and _IDENT.match(x) for x in items):
        raise BakeryError(
            f"{what} must be {'an identifier' if single else 'a list of identifiers'}",
            pos,
            hint='e.g. params = ["name", "tag"]' if not single else 'e.g. variadic_params = "rest"',
        )
    src = items[0] if single else "[" + ", ".join(items) + "]"
    return hcl.parse_expression(src, name, pos.line, pos.col)


def _body(table: Dict[str, Any], path: str, btype: Optional[str], loc: _Locator, name: str) -> Any:
    attributes: Dict[str, Any] = {}
    blocks: List[Any] = []
    for key, v in table.items():
        kpos = loc.key(path, key)
        if btype == "variable" and key == "validation":
            for item in v if isinstance(v, list) else [v]:
                if not isinstance(item, dict):
                    raise BakeryError("validation must be a table", kpos,
                                      hint="write [[variable.NAME.validation]] tables")
                blocks.append(ast.Block("validation", [], [], _body(item, f"{path}.validation", "validation", loc, name), kpos))
            continue
        if btype == "variable" and key == "type":
            if not isinstance(v, str):
                raise BakeryError("a variable's type must be a string holding a type expression", kpos,
                                  hint='e.g. type = "list(string)"')
            attributes[key] = ast.Attribute(key, hcl.parse_expression(v, name, kpos.line, kpos.col), kpos)
            continue
        if btype == "function" and key == "params":
            attributes[key] = ast.Attribute(key, _names_expr(v, "params", kpos, name), kpos)
            continue
        if btype == "function" and key == "variadic_params":
            attributes[key] = ast.Attribute(key, _names_expr(v, "variadic_params", kpos, name, True), kpos)
            continue
        if btype == "validation" and key == "condition" and isinstance(v, str) and "${" not in v:
            attributes[key] = ast.Attribute(key, hcl.parse_expression(v, name, kpos.line, kpos.col), kpos)
            continue
        attributes[key] = ast.Attribute(key, _expr(v, kpos, name), kpos)
    return ast.Body(attributes, blocks, loc.table(path))


def parse_toml(text: str, name: str) -> Any:
    register_source(name, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        pos = Pos(name, int(m.group(1)), int(m.group(2))) if m else Pos(name, 1, 1)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise BakeryError(f"invalid TOML: {msg}", pos) from None
    loc = _Locator(text, name)
    attributes: Dict[str, Any] = {}
    blocks: List[Any] = []
    for key, v in doc.items():
        if key in BLOCK_KEYS:
            if not isinstance(v, dict):
                raise BakeryError(f"{key} must be a table of named {key}s", loc.key("", key),
                                  hint=f"write [{key}.NAME] tables")
            for label, body in v.items():
                path = f"{key}.{label}"
                if not isinstance(body, dict):
                    raise BakeryError(f"{path} must be a table", loc.key(key, label))
                lpos = loc.table(path)
                blocks.append(ast.Block(key, [label], [lpos], _body(body, path, key, loc, name), lpos))
            continue
        kpos = loc.key("", key)
        attributes[key] = ast.Attribute(key, _expr(v, kpos, name), kpos)
    return ast.Body(attributes, blocks, Pos(name, 1, 1))
