"""The HCL syntax tree: bodies, blocks, attributes and expressions.

Every node has ``.pos`` (the :class:`~bakery.errors.Pos` of its first
character) and ``.end`` (the Pos just after its last character, or None for
nodes built by hand).  Positions of parsed nodes are computed on first use
from character offsets, so parsing never pays for them.

Nodes can be built by hand too (the JSON and TOML readers do)::

    TupleCons([Literal("a", pos), Literal(1, pos)], pos)

in which case the last positional argument is the node's Pos.  The parser
passes ``(None, source, start, end)`` instead.

Expression nodes mirror hashicorp/hcl's hclsyntax:

===================  ======================================================
node                 HCL source
===================  ======================================================
Literal              ``1``, ``true``, ``null``, a template's literal text
TemplateExpr         ``"a ${b} c"`` (parts are converted to strings)
TemplateWrap         ``"${b}"`` (b's value, unconverted)
TemplateJoin         ``%{for x in xs}...%{endfor}`` (a ForExpr, joined)
Variable             ``name``
GetAttr              ``expr.name``
Index                ``expr[key]``, legacy ``expr.0``
Splat                ``expr[*].a``, ``expr.*.a`` (``each`` is evaluated per
                     element, with ``item`` standing for the element)
SplatItem            the element placeholder of a Splat
FunctionCall         ``f(a, b)``, ``f(xs...)``
Conditional          ``c ? a : b`` and ``%{if c}a%{else}b%{endif}``
BinaryOp, UnaryOp    ``a + b``, ``-a``, ``!a``
TupleCons            ``[a, b]``
ObjectCons           ``{k = v, (e) = v}``; parsed keys are ObjectKey nodes
ObjectKey            an object constructor key: a bare name is a string
ForExpr              ``[for k, v in c : e if cond]``, ``{for ... : k => v...}``
Parens               ``(expr)``
===================  ======================================================
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from bakery.errors import Pos

__all__ = [
    "Attribute",
    "BinaryOp",
    "Block",
    "Body",
    "Conditional",
    "Expr",
    "ForExpr",
    "FunctionCall",
    "GetAttr",
    "Index",
    "Literal",
    "Node",
    "ObjectCons",
    "ObjectKey",
    "Parens",
    "Source",
    "Splat",
    "SplatItem",
    "TemplateExpr",
    "TemplateJoin",
    "TemplateWrap",
    "TupleCons",
    "UnaryOp",
    "Variable",
    "children",
    "dump",
]


class Source:
    """One parsed text: maps character offsets to positions.

    ``line``/``col`` are where the text starts in its file (a template read
    out of a JSON string starts mid-line); the column offset applies to the
    first line only.
    """

    __slots__ = ("_starts", "col", "filename", "line", "text")

    def __init__(self, filename: str, text: str, line: int = 1, col: int = 1):
        self.filename = filename
        self.text = text
        self.line = line
        self.col = col
        self._starts: Optional[List[int]] = None

    def pos(self, offset: int) -> Pos:
        starts = self._starts
        if starts is None:
            text = self.text
            starts = [0]
            i = text.find("\n")
            while i >= 0:
                starts.append(i + 1)
                i = text.find("\n", i + 1)
            self._starts = starts
        n = bisect_right(starts, offset) - 1
        col = offset - starts[n] + 1
        if n == 0:
            col += self.col - 1
        return Pos(self.filename, self.line + n, col)

    def __getstate__(self) -> Tuple[str, str, int, int]:
        return (self.filename, self.text, self.line, self.col)

    def __setstate__(self, state: Tuple[str, str, int, int]) -> None:
        self.filename, self.text, self.line, self.col = state
        self._starts = None


class Node:
    """Base of all nodes: a position, lazily computed for parsed nodes."""

    __slots__ = ("_end", "_pos", "_src", "_start")

    _pos: Optional[Pos]
    _src: Optional[Source]
    _start: int
    _end: int

    @property
    def pos(self) -> Pos:
        p = self._pos
        if p is None:
            assert self._src is not None
            p = self._pos = self._src.pos(self._start)
        return p

    @property
    def end(self) -> Optional[Pos]:
        if self._src is None:
            return None
        return self._src.pos(self._end)

    @property
    def text(self) -> Optional[str]:
        """The node's source text (None for nodes built by hand)."""
        if self._src is None:
            return None
        return self._src.text[self._start : self._end]

    def __repr__(self) -> str:
        return dump(self).rstrip("\n")


def _init(node: Node, pos: Optional[Pos], src: Optional[Source], start: int, end: int) -> None:
    node._pos = pos
    node._src = src
    node._start = start
    node._end = end


class Expr(Node):
    """Base of expression nodes."""

    __slots__ = ()


class Literal(Expr):
    """A constant: a number, bool, null or string (template literal text).

    ``keyword`` is "true"/"false"/"null" when written as that keyword, so
    that static analysis can read it as a name (as HCL does).
    """

    __slots__ = ("keyword", "value")

    def __init__(self, value: Any, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0, keyword: Optional[str] = None):
        self.value = value
        self.keyword = keyword
        self._pos = pos
        self._src = src
        self._start = start
        self._end = end


class TemplateExpr(Expr):
    """A template: parts evaluated, converted to strings and joined."""

    __slots__ = ("parts",)

    def __init__(self, parts: List[Expr], pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.parts = parts
        self._pos = pos
        self._src = src
        self._start = start
        self._end = end

    def is_string_literal(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Literal)


class TemplateWrap(Expr):
    """A template that is exactly one interpolation: its value, unconverted."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped: Expr, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.wrapped = wrapped
        _init(self, pos, src, start, end)


class TemplateJoin(Expr):
    """A template ``for`` directive: the ForExpr's string results, joined."""

    __slots__ = ("tuple",)

    def __init__(self, tuple: ForExpr, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.tuple = tuple
        _init(self, pos, src, start, end)


class Variable(Expr):
    """A variable reference (the root of a traversal)."""

    __slots__ = ("name",)

    def __init__(self, name: str, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.name = name
        self._pos = pos
        self._src = src
        self._start = start
        self._end = end


class GetAttr(Expr):
    """``source.name``; ``op_pos`` is the position of the dot."""

    __slots__ = ("_op", "name", "source")

    def __init__(self, source: Expr, name: str, pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0, op: int = 0):
        self.source = source
        self.name = name
        self._op = op
        self._pos = pos
        self._src = src
        self._start = start
        self._end = end

    @property
    def op_pos(self) -> Pos:
        return self._src.pos(self._op) if self._src is not None else self.pos


class Index(Expr):
    """``collection[key]`` (and legacy ``collection.0``); ``op_pos`` is the bracket."""

    __slots__ = ("_op", "collection", "key")

    def __init__(self, collection: Expr, key: Expr, pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0, op: int = 0):
        self.collection = collection
        self.key = key
        self._op = op
        _init(self, pos, src, start, end)

    @property
    def op_pos(self) -> Pos:
        return self._src.pos(self._op) if self._src is not None else self.pos


class SplatItem(Expr):
    """Placeholder for the current element inside a Splat's ``each``."""

    __slots__ = ()

    def __init__(self, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        _init(self, pos, src, start, end)


class Splat(Expr):
    """``source[*]...`` / ``source.*...``: ``each`` (rooted at ``item``) per element.

    A non-list source counts as a one-element list; null gives ``[]``.
    ``attr_only`` is True for the legacy ``.*`` form.
    """

    __slots__ = ("attr_only", "each", "item", "source")

    def __init__(self, source: Expr, each: Expr, item: SplatItem, attr_only: bool = False,
                 pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.source = source
        self.each = each
        self.item = item
        self.attr_only = attr_only
        _init(self, pos, src, start, end)


class FunctionCall(Expr):
    """``name(args...)``; ``expand_final`` when the last argument ends with ``...``."""

    __slots__ = ("args", "expand_final", "name")

    def __init__(self, name: str, args: List[Expr], expand_final: bool = False,
                 pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.name = name
        self.args = args
        self.expand_final = expand_final
        _init(self, pos, src, start, end)


class Conditional(Expr):
    """``condition ? true_expr : false_expr``."""

    __slots__ = ("condition", "false_expr", "true_expr")

    def __init__(self, condition: Expr, true_expr: Expr, false_expr: Expr,
                 pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.condition = condition
        self.true_expr = true_expr
        self.false_expr = false_expr
        _init(self, pos, src, start, end)


class BinaryOp(Expr):
    """``lhs op rhs``; op is the operator text (``+``, ``==``, ``&&``...)."""

    __slots__ = ("lhs", "op", "rhs")

    def __init__(self, op: str, lhs: Expr, rhs: Expr, pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0):
        self.op = op
        self.lhs = lhs
        self.rhs = rhs
        _init(self, pos, src, start, end)


class UnaryOp(Expr):
    """``-operand`` or ``!operand``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Expr, pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0):
        self.op = op
        self.operand = operand
        _init(self, pos, src, start, end)


class TupleCons(Expr):
    """``[a, b, ...]``."""

    __slots__ = ("items",)

    def __init__(self, items: List[Expr], pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0):
        self.items = items
        self._pos = pos
        self._src = src
        self._start = start
        self._end = end


class ObjectKey(Expr):
    """A key in an object constructor, as written.

    ``name`` is the literal key when the key is a bare identifier (or the
    keyword true/false/null) and was not parenthesized; then it is that
    string, not a variable.  Otherwise ``wrapped`` is evaluated.
    """

    __slots__ = ("force_non_literal", "name", "wrapped")

    def __init__(self, wrapped: Expr, force_non_literal: bool = False,
                 pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.wrapped = wrapped
        self.force_non_literal = force_non_literal
        name: Optional[str] = None
        if not force_non_literal:
            if isinstance(wrapped, Variable):
                name = wrapped.name
            elif isinstance(wrapped, Literal):
                name = wrapped.keyword
        self.name = name
        _init(self, pos, src, start, end)


class ObjectCons(Expr):
    """``{key = value, ...}``: items are (key expression, value expression)."""

    __slots__ = ("items",)

    def __init__(self, items: List[Tuple[Expr, Expr]], pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0):
        self.items = items
        _init(self, pos, src, start, end)


class ForExpr(Expr):
    """A for expression; ``key_expr`` is None when building a tuple."""

    __slots__ = ("collection", "condition", "group", "key_expr", "key_var", "value_expr",
                 "value_var")

    def __init__(self, key_var: Optional[str], value_var: str, collection: Expr,
                 key_expr: Optional[Expr], value_expr: Expr, condition: Optional[Expr] = None,
                 group: bool = False, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.key_var = key_var
        self.value_var = value_var
        self.collection = collection
        self.key_expr = key_expr
        self.value_expr = value_expr
        self.condition = condition
        self.group = group
        _init(self, pos, src, start, end)


class Parens(Expr):
    """``(expr)``: kept so that ``(k) = v`` object keys and ranges are exact."""

    __slots__ = ("expr",)

    def __init__(self, expr: Expr, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.expr = expr
        _init(self, pos, src, start, end)


# --------------------------------------------------------------------------
# Structure


class Attribute(Node):
    """``name = expr``; ``pos`` is the name's position."""

    __slots__ = ("expr", "name")

    def __init__(self, name: str, expr: Expr, pos: Optional[Pos] = None,
                 src: Optional[Source] = None, start: int = 0, end: int = 0):
        self.name = name
        self.expr = expr
        _init(self, pos, src, start, end)


class Block(Node):
    """``type "label" ident { body }``; ``pos`` is the type name's position."""

    __slots__ = ("_label_offsets", "_label_pos", "body", "labels", "type")

    def __init__(self, type: str, labels: List[str], label_pos: Optional[List[Pos]],
                 body: Body, pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0, label_offsets: Sequence[int] = ()):
        self.type = type
        self.labels = labels
        self._label_pos = label_pos
        self._label_offsets = label_offsets
        self.body = body
        _init(self, pos, src, start, end)

    @property
    def label_pos(self) -> List[Pos]:
        lp = self._label_pos
        if lp is None:
            src = self._src
            assert src is not None
            lp = self._label_pos = [src.pos(o) for o in self._label_offsets]
        return lp


class Body(Node):
    """Attributes (by name, in source order) and blocks (in order).

    ``pos`` is the opening brace of a block's body (the file start for the
    top-level body); ``end`` is just after the closing brace.
    """

    __slots__ = ("attributes", "blocks")

    def __init__(self, attributes: Dict[str, Attribute], blocks: List[Block],
                 pos: Optional[Pos] = None, src: Optional[Source] = None,
                 start: int = 0, end: int = 0):
        self.attributes = attributes
        self.blocks = blocks
        _init(self, pos, src, start, end)


# --------------------------------------------------------------------------
# Walking and dumping


def children(node: Node) -> Iterator[Node]:
    """The direct child nodes of ``node``, in source order."""
    if isinstance(node, Body):
        items: List[Node] = [*node.attributes.values(), *node.blocks]
        items.sort(key=lambda n: (n.pos.line, n.pos.col))
        yield from items
    elif isinstance(node, Attribute):
        yield node.expr
    elif isinstance(node, Block):
        yield node.body
    elif isinstance(node, TemplateExpr):
        yield from node.parts
    elif isinstance(node, TemplateWrap):
        yield node.wrapped
    elif isinstance(node, TemplateJoin):
        yield node.tuple
    elif isinstance(node, GetAttr):
        yield node.source
    elif isinstance(node, Index):
        yield node.collection
        yield node.key
    elif isinstance(node, Splat):
        yield node.source
        yield node.each
    elif isinstance(node, FunctionCall):
        yield from node.args
    elif isinstance(node, Conditional):
        yield node.condition
        yield node.true_expr
        yield node.false_expr
    elif isinstance(node, BinaryOp):
        yield node.lhs
        yield node.rhs
    elif isinstance(node, UnaryOp):
        yield node.operand
    elif isinstance(node, TupleCons):
        yield from node.items
    elif isinstance(node, ObjectCons):
        for k, v in node.items:
            yield k
            yield v
    elif isinstance(node, ObjectKey):
        yield node.wrapped
    elif isinstance(node, ForExpr):
        yield node.collection
        if node.key_expr is not None:
            yield node.key_expr
        yield node.value_expr
        if node.condition is not None:
            yield node.condition
    elif isinstance(node, Parens):
        yield node.expr


def _label(node: Node) -> str:
    name = type(node).__name__
    if isinstance(node, Literal):
        if node.keyword is not None or node.value is None or isinstance(node.value, bool):
            return f"{name} {node.keyword or {None: 'null', True: 'true', False: 'false'}[node.value]}"
        return f"{name} {node.value!r}"
    if isinstance(node, (Variable, GetAttr)):
        return f"{name} {node.name}"
    if isinstance(node, (BinaryOp, UnaryOp)):
        return f"{name} {node.op}"
    if isinstance(node, FunctionCall):
        return f"{name} {node.name}" + (" ..." if node.expand_final else "")
    if isinstance(node, Splat):
        return f"{name}" + (" attr-only" if node.attr_only else "")
    if isinstance(node, ObjectKey):
        if node.name is not None:
            return f"{name} name={node.name}"
        return f"{name}" + (" (parenthesized)" if node.force_non_literal else "")
    if isinstance(node, ForExpr):
        kind = "object" if node.key_expr is not None else "tuple"
        var = f"{node.key_var}, {node.value_var}" if node.key_var else node.value_var
        return f"{name} {kind} {var}" + (" group" if node.group else "")
    if isinstance(node, Attribute):
        return f"{name} {node.name}"
    if isinstance(node, Block):
        labels = " ".join(f"{lab!r}" for lab in node.labels)
        return f"{name} {node.type}" + (f" {labels}" if labels else "")
    return name


def _where(node: Node) -> str:
    p = node.pos
    e = node.end
    if e is None:
        return f"@{p.line}:{p.col}"
    return f"@{p.line}:{p.col}-{e.line}:{e.col}"


def dump(node: Node, indent: int = 0) -> str:
    """A readable, stable tree listing with positions (for tests and debugging)."""
    lines: List[str] = []

    def walk(n: Node, depth: int) -> None:
        lines.append("  " * depth + _label(n) + " " + _where(n))
        for c in children(n):
            walk(c, depth + 1)

    walk(node, indent)
    return "\n".join(lines) + "\n"
