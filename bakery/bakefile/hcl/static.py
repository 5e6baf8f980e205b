"""Static analysis of expressions: names, type expressions, references, source text.

These read the syntax tree without evaluating it, as HCL's ``ExprList``,
``ExprAsKeyword``, ``typeexpr`` and ``Variables`` do.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from bakery.bakefile.hcl.ast import (
    Expr,
    ForExpr,
    FunctionCall,
    GetAttr,
    Index,
    Literal,
    Node,
    ObjectCons,
    ObjectKey,
    Splat,
    TemplateExpr,
    TupleCons,
    Variable,
    children,
)
from bakery.errors import BakeryError

__all__ = ["keyword", "source_text", "static_names", "type_expr", "variables_of"]

Type = Any  # see type_expr


def keyword(expr: Expr) -> Optional[str]:
    """The bare identifier ``expr`` is, or None (HCL's ``ExprAsKeyword``).

    The keywords true, false and null count as identifiers here.
    """
    if isinstance(expr, ObjectKey):
        if expr.force_non_literal:
            return None
        expr = expr.wrapped
    if isinstance(expr, Variable):
        return expr.name
    if isinstance(expr, Literal):
        return expr.keyword
    return None


def static_names(expr: Expr, single: bool = False) -> Optional[List[str]]:
    """Names of ``[a, b, c]`` (bare identifiers), or None if it is not such a list.

    With ``single``, ``expr`` must be one bare identifier: ``[name]`` or None.
    """
    if single:
        name = keyword(expr)
        return None if name is None else [name]
    if not isinstance(expr, TupleCons):
        return None
    names: List[str] = []
    for item in expr.items:
        name = keyword(item)
        if name is None:
            return None
        names.append(name)
    return names


def source_text(expr: Node) -> Optional[str]:
    """The source text of a parsed node, or None for nodes built by hand."""
    return expr.text


# --------------------------------------------------------------------------
# References


def _static_key(e: Expr) -> Any:
    """The constant key of an index step, or None."""
    if isinstance(e, Literal) and e.keyword is None and e.value is not None:
        return e.value
    if isinstance(e, TemplateExpr) and e.is_string_literal():
        return e.parts[0].value  # type: ignore[attr-defined]
    return None


def _traversal(e: Expr) -> Optional[Tuple[str, List[Any]]]:
    steps: List[Any] = []
    while True:
        if isinstance(e, Variable):
            steps.reverse()
            return e.name, steps
        if isinstance(e, GetAttr):
            steps.append(e.name)
            e = e.source
        elif isinstance(e, Index):
            key = _static_key(e.key)
            if key is None:
                return None
            steps.append(key)
            e = e.collection
        else:
            return None


def variables_of(expr: Expr) -> List[Tuple[str, List[str]]]:
    """The variables ``expr`` refers to: ``(root name, [attribute names...])``.

    ``target.app.tags[0]`` gives ``("target", ["app", "tags"])`` (a string
    index counts as an attribute; the names stop at the first number index).
    Names bound by enclosing ``for`` expressions are left out.  In source
    order, repeats included.
    """
    out: List[Tuple[str, List[str]]] = []
    _walk(expr, frozenset(), out)
    return out


def _walk(e: Node, bound: FrozenSet[str], out: List[Tuple[str, List[str]]]) -> None:
    if isinstance(e, (Variable, GetAttr, Index)):
        trav = _traversal(e)
        if trav is not None:
            root, steps = trav
            if root not in bound:
                names: List[str] = []
                for s in steps:
                    if not isinstance(s, str):
                        break
                    names.append(s)
                out.append((root, names))
            return
    if isinstance(e, ObjectKey) and keyword(e) is not None:
        return
    if isinstance(e, ForExpr):
        _walk(e.collection, bound, out)
        inner = bound | {e.value_var} | ({e.key_var} if e.key_var else set())
        for sub in (e.key_expr, e.value_expr, e.condition):
            if sub is not None:
                _walk(sub, inner, out)
        return
    if isinstance(e, Splat):
        _walk(e.source, bound, out)
        _walk_splat_each(e.each, bound, out)
        return
    for c in children(e):
        _walk(c, bound, out)


def _walk_splat_each(e: Expr, bound: FrozenSet[str], out: List[Tuple[str, List[str]]]) -> None:
    # the per-element chain is relative to the element: only index keys
    # and nested splats' parts can refer to variables
    if isinstance(e, GetAttr):
        _walk_splat_each(e.source, bound, out)
    elif isinstance(e, Index):
        _walk_splat_each(e.collection, bound, out)
        _walk(e.key, bound, out)
    elif isinstance(e, Splat):
        _walk_splat_each(e.source, bound, out)
        _walk_splat_each(e.each, bound, out)


# --------------------------------------------------------------------------
# Type expressions


_INVALID = "Invalid type specification"


def _type_error(detail: str, e: Expr) -> BakeryError:
    return BakeryError(f"{_INVALID}; {detail}", e.pos)


def type_expr(expr: Expr) -> Type:
    """A variable's ``type = ...`` as data (HCL's type constraints, with defaults).

    ``("primitive", "string"|"number"|"bool")``, ``("any",)``,
    ``("list"|"set"|"map", T)``, ``("tuple", [T, ...])`` and
    ``("object", {name: (T, optional, default_expr_or_None)})``.
    Invalid type expressions raise BakeryError.
    """
    kw = keyword(expr)
    if kw is not None:
        if kw in ("bool", "string", "number"):
            return ("primitive", kw)
        if kw == "any":
            return ("any",)
        if kw in ("list", "map", "set"):
            raise _type_error(f"The {kw} type constructor requires one argument specifying the element type.", expr)
        if kw == "object":
            raise _type_error(
                "The object type constructor requires one argument specifying the attribute types as a map.", expr
            )
        if kw == "tuple":
            raise _type_error(
                "The tuple type constructor requires one argument specifying the element types as a list.", expr
            )
        raise _type_error(f'The keyword "{kw}" is not a valid type specification.', expr)
    if not isinstance(expr, FunctionCall):
        raise _type_error(
            "A type specification is either a primitive type keyword (bool, number, string) "
            "or a complex type constructor call, like list(string).",
            expr,
        )
    name = expr.name
    if name in ("bool", "string", "number"):
        raise _type_error(f'Primitive type keyword "{name}" does not expect arguments.', expr)
    if name == "any":
        raise _type_error(f'Type constraint keyword "{name}" does not expect arguments.', expr)
    if name == "optional":
        raise _type_error(f'Keyword "{name}" is valid only as a modifier for object type attributes.', expr)
    if name not in ("list", "set", "map", "object", "tuple"):
        raise _type_error(f'Keyword "{name}" is not a valid type constructor.', expr)
    args = expr.args
    if len(args) != 1 or expr.expand_final:
        where = args[1] if len(args) > 1 else expr
        if name in ("list", "set", "map"):
            raise _type_error(f"The {name} type constructor requires one argument specifying the element type.", where)
        if name == "object":
            raise _type_error(
                "The object type constructor requires one argument specifying the attribute types as a map.", where
            )
        raise _type_error(
            "The tuple type constructor requires one argument specifying the element types as a list.", where
        )
    arg = args[0]
    if name in ("list", "set", "map"):
        return (name, type_expr(arg))
    if name == "tuple":
        if not isinstance(arg, TupleCons):
            raise _type_error("Tuple type constructor requires a list of element types.", arg)
        return ("tuple", [type_expr(x) for x in arg.items])
    if not isinstance(arg, ObjectCons):
        raise _type_error(
            "Object type constructor requires a map whose keys are attribute names "
            "and whose values are the corresponding attribute types.",
            arg,
        )
    attrs: Dict[str, Tuple[Type, bool, Optional[Expr]]] = {}
    for key, value in arg.items:
        attr = keyword(key)
        if attr is None:
            raise _type_error("Object constructor map keys must be attribute names.", key)
        optional = False
        default: Optional[Expr] = None
        if isinstance(value, FunctionCall) and value.name == "optional":
            if not value.args:
                raise _type_error("Optional attribute modifier requires the attribute type as its argument.", value)
            if len(value.args) > 2:
                raise _type_error(
                    "Optional attribute modifier expects at most two arguments: "
                    "the attribute type, and a default value.",
                    value,
                )
            optional = True
            if len(value.args) == 2:
                default = value.args[1]
            value = value.args[0]
        attrs[attr] = (type_expr(value), optional, default)
    return ("object", attrs)
