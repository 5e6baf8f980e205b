"""JSON bake files (HCL's JSON syntax), parsed into the same AST as HCL.

buildx reads ``docker-bake.json`` with HCL's JSON syntax: the top-level
object's ``variable``, ``function``, ``target`` and ``group`` keys are blocks
(``{"target": {"app": {...}}}``, or a list of such objects), every other key
is a top-level attribute, and every JSON string is an HCL template, so
``"${TAG}"`` interpolates.  Inside a ``variable`` block, ``validation`` is a
nested block.

A small JSON reader with positions is used (the standard library's has
none), so errors point at file:line:col.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from bakery.bakefile import hcl
from bakery.bakefile.hcl import ast
from bakery.errors import BakeryError, Pos, register_source

__all__ = ["parse_json"]

BLOCK_KEYS = ("variable", "function", "target", "group")
NESTED_BLOCKS = {"variable": ("validation",)}

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<str>"(?:[^"\\\x00-\x1f]|\\.)*")
  | (?P<num>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<lit>true|false|null)
  | (?P<punct>[{}\[\]:,])
    """,
    re.VERBOSE,
)


class _Node:
    __slots__ = ("kind", "pos", "value")

    def __init__(self, kind: str, pos: Pos, value: Any):
        self.kind = kind  # "obj" (list of (key, keypos, node)), "arr", "str", "num", "bool", "null"
        self.pos = pos
        self.value = value


class _Reader:
    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.tokens: List[Tuple[str, str, int]] = []
        i = 0
        n = len(text)
        while i < n:
            m = _TOKEN.match(text, i)
            if m is None:
                raise BakeryError(
                    f"invalid JSON: unexpected character {text[i]!r}", self.pos(i),
                    hint="bake JSON files must be plain JSON (no comments or trailing commas)",
                )
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), i))
            i = m.end()
        self.i = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def pos(self, offset: int) -> Pos:
        import bisect

        line = bisect.bisect_right(self.line_starts, offset)
        return Pos(self.name, line, offset - self.line_starts[line - 1] + 1)

    def next(self, expected: str) -> Tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise BakeryError(f"invalid JSON: unexpected end of file, expected {expected}",
                              self.pos(len(self.text)))
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def value(self) -> _Node:
        kind, text, off = self.next("a value")
        p = self.pos(off)
        if kind == "str":
            return _Node("str", p, json.loads(text))
        if kind == "num":
            v = json.loads(text)
            return _Node("num", p, int(v) if isinstance(v, float) and v.is_integer() and "e" not in text.lower() and "." not in text else v)
        if kind == "lit":
            if text == "null":
                return _Node("null", p, None)
            return _Node("bool", p, text == "true")
        if text == "{":
            items: List[Tuple[str, Pos, _Node]] = []
            if self._peek() == "}":
                self.i += 1
                return _Node("obj", p, items)
            while True:
                k, ktext, koff = self.next("a string key")
                if k != "str":
                    raise BakeryError(f"invalid JSON: expected a string key, found {ktext!r}",
                                      self.pos(koff))
                _, colon, coff = self.next("':'")
                if colon != ":":
                    raise BakeryError(f"invalid JSON: expected ':', found {colon!r}", self.pos(coff))
                items.append((json.loads(ktext), self.pos(koff), self.value()))
                _, sep, soff = self.next("',' or '}'")
                if sep == "}":
                    return _Node("obj", p, items)
                if sep != ",":
                    raise BakeryError(f"invalid JSON: expected ',' or '}}', found {sep!r}",
                                      self.pos(soff))
        if text == "[":
            arr: List[_Node] = []
            if self._peek() == "]":
                self.i += 1
                return _Node("arr", p, arr)
            while True:
                arr.append(self.value())
                _, sep, soff = self.next("',' or ']'")
                if sep == "]":
                    return _Node("arr", p, arr)
                if sep != ",":
                    raise BakeryError(f"invalid JSON: expected ',' or ']', found {sep!r}",
                                      self.pos(soff))
        raise BakeryError(f"invalid JSON: unexpected {text!r}", p)

    def _peek(self) -> Optional[str]:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None


def _expr(node: _Node, name: str) -> Any:
    """A JSON value as an HCL expression (strings are templates)."""
    if node.kind == "str":
        s = node.value
        if "${" not in s and "%{" not in s:
            return ast.Literal(s, node.pos)
        return hcl.parse_template(s, name, node.pos.line, node.pos.col + 1)
    if node.kind in ("num", "bool", "null"):
        return ast.Literal(node.value, node.pos)
    if node.kind == "arr":
        return ast.TupleCons([_expr(x, name) for x in node.value], node.pos)
    items = []
    for key, kpos, value in node.value:
        kexpr = _expr(_Node("str", kpos, key), name)
        items.append((kexpr, _expr(value, name)))
    return ast.ObjectCons(items, node.pos)


def _body(node: _Node, name: str, block_type: Optional[str]) -> Any:
    if node.kind != "obj":
        raise BakeryError("expected a JSON object for a block body", node.pos)
    attributes: Dict[str, Any] = {}
    blocks: List[Any] = []
    nested = NESTED_BLOCKS.get(block_type or "", ()) if block_type else BLOCK_KEYS
    for key, kpos, value in node.value:
        if key in nested:
            blocks.extend(_blocks(key, kpos, value, name, top=block_type is None))
            continue
        if key in attributes and block_type is not None:
            raise BakeryError(f'attribute "{key}" was already set', kpos)
        attributes[key] = ast.Attribute(key, _expr(value, name), kpos)
    return ast.Body(attributes, blocks, node.pos)


def _blocks(btype: str, kpos: Pos, node: _Node, name: str, top: bool) -> List[Any]:
    out: List[Any] = []
    if node.kind == "arr":
        for item in node.value:
            out.extend(_blocks(btype, kpos, item, name, top))
        return out
    if node.kind != "obj":
        raise BakeryError(f"expected a JSON object for {btype} blocks", node.pos)
    if not top:  # a label-less nested block such as validation
        out.append(ast.Block(btype, [], [], _body(node, name, btype), kpos))
        return out
    for label, lpos, body in node.value:
        bodies = body.value if body.kind == "arr" else [body]
        for b in bodies:
            out.append(ast.Block(btype, [label], [lpos], _body(b, name, btype), lpos))
    return out


def parse_json(text: str, name: str) -> Any:
    register_source(name, text)
    r = _Reader(text, name)
    root = r.value()
    if r.i != len(r.tokens):
        raise BakeryError("invalid JSON: extra data after the top-level object",
                          r.pos(r.tokens[r.i][2]))
    if root.kind != "obj":
        raise BakeryError("a JSON bake file must hold one object", root.pos)
    return _body(root, name, None)
