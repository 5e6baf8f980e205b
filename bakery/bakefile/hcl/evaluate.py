"""Expression evaluation with hashicorp/hcl + go-cty semantics on plain values.

``evaluate(expr, ctx)`` returns a value (see :mod:`bakery.bakefile.values`)
or raises :class:`BakeryError` with HCL's diagnostic ("Summary; Detail") at
the position HCL reports.  Errors raised by the caller's variable mappings
and functions (other than :class:`FunctionError`) pass through unchanged.
"""

from __future__ import annotations

import math
import unicodedata
from collections import ChainMap
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from bakery.bakefile.hcl.ast import (
    BinaryOp,
    Conditional,
    Expr,
    ForExpr,
    FunctionCall,
    GetAttr,
    Index,
    Literal,
    ObjectCons,
    ObjectKey,
    Parens,
    Splat,
    SplatItem,
    TemplateExpr,
    TemplateJoin,
    TemplateWrap,
    TupleCons,
    UnaryOp,
    Variable,
)
from bakery.bakefile.values import (
    ConvertError,
    FunctionError,
    Value,
    format_number,
    norm_number,
    to_bool,
    to_number,
    to_string,
    type_name,
)
from bakery.bakefile.values import equal as values_equal
from bakery.errors import BakeryError, Pos, closest

__all__ = ["EvalContext", "evaluate"]


class EvalContext:
    """Variables and functions for evaluation.

    ``variables`` and ``functions`` may be any Mapping (lazy ones included:
    lookups use ``name in m`` and ``m[name]``).  ``child`` makes a nested
    scope whose extra variables hide the parent's.
    """

    __slots__ = ("_local", "_parent", "_vars", "functions")

    def __init__(self, variables: Mapping[str, Value], functions: Mapping[str, Callable[..., Value]]):
        self._vars = variables
        self.functions = functions
        self._local: Optional[Dict[str, Value]] = None
        self._parent: Optional[EvalContext] = None

    @property
    def variables(self) -> Mapping[str, Value]:
        if self._local is None:
            return self._vars
        assert self._parent is not None
        return ChainMap(self._local, self._parent.variables)  # type: ignore[arg-type]

    def child(self, extra_vars: Mapping[str, Value]) -> EvalContext:
        c = EvalContext.__new__(EvalContext)
        c._vars = self._vars
        c.functions = self.functions
        c._local = dict(extra_vars)
        c._parent = self
        return c

    def _names(self) -> List[str]:
        names: List[str] = []
        c: Optional[EvalContext] = self
        while c is not None:
            if c._local is not None:
                names.extend(c._local)
            else:
                names.extend(c._vars)
            c = c._parent
        return names


def _fail(summary: str, detail: str, pos: Pos, hint: Optional[str] = None) -> BakeryError:
    return BakeryError(f"{summary}; {detail}", pos, hint)


def _split(err: BakeryError) -> Tuple[str, str]:
    summary, sep, detail = err.message.partition("; ")
    return (summary, detail) if sep else (err.message, "")


def evaluate(expr: Expr, ctx: EvalContext) -> Value:
    """The value of ``expr`` in ``ctx``."""
    fn = _EVAL.get(type(expr))
    if fn is None:
        for cls in type(expr).__mro__:
            fn = _EVAL.get(cls)
            if fn is not None:
                break
        else:
            raise TypeError(f"cannot evaluate {type(expr).__name__}")
    return fn(expr, ctx)


# --------------------------------------------------------------------------
# Leaves and templates


def _ev_literal(e: Literal, ctx: EvalContext) -> Value:
    return e.value


def _ev_variable(e: Variable, ctx: EvalContext) -> Value:
    name = e.name
    c = ctx
    while c._local is not None:
        loc = c._local
        if name in loc:
            return loc[name]
        c = c._parent  # type: ignore[assignment]
    variables = c._vars
    if name in variables:
        return variables[name]
    raise _fail(
        "Unknown variable",
        f'There is no variable named "{name}".',
        e.pos,
        closest(name, ctx._names()),
    )


def _nfc(s: str) -> str:
    return s if s.isascii() else unicodedata.normalize("NFC", s)


def _template_string(v: Value, part: Expr) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return format_number(v)
    if v is None:
        raise _fail(
            "Invalid template interpolation value",
            "The expression result is null. Cannot include a null value in a string template.",
            part.pos,
        )
    raise _fail(
        "Invalid template interpolation value",
        "Cannot include the given value in a string template: string required.",
        part.pos,
    )


def _ev_template(e: TemplateExpr, ctx: EvalContext) -> Value:
    parts = e.parts
    if len(parts) == 1:
        p = parts[0]
        v = p.value if type(p) is Literal else evaluate(p, ctx)
        return _nfc(_template_string(v, p))
    out = []
    for p in parts:
        v = p.value if type(p) is Literal else evaluate(p, ctx)
        out.append(v if type(v) is str else _template_string(v, p))
    return _nfc("".join(out))


def _ev_template_wrap(e: TemplateWrap, ctx: EvalContext) -> Value:
    return evaluate(e.wrapped, ctx)


def _ev_template_join(e: TemplateJoin, ctx: EvalContext) -> Value:
    items = evaluate(e.tuple, ctx)
    out = []
    for v in items:
        if v is None:
            raise _fail(
                "Invalid template interpolation value",
                "An iteration result is null. Cannot include a null value in a string template.",
                e.pos,
            )
        try:
            out.append(to_string(v))
        except ConvertError:
            raise _fail(
                "Invalid template interpolation value",
                "Cannot include one of the interpolation results into the string template: string required.",
                e.pos,
            ) from None
    return "".join(out)


def _ev_parens(e: Parens, ctx: EvalContext) -> Value:
    return evaluate(e.expr, ctx)


def _ev_splat_item(e: SplatItem, ctx: EvalContext) -> Value:
    return None  # only meaningful inside a Splat (see _relative)


# --------------------------------------------------------------------------
# Traversals


def _get_attr(obj: Value, name: str, pos: Pos) -> Value:
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
        raise _fail(
            "Unsupported attribute",
            f'This object does not have an attribute named "{name}".',
            pos,
            closest(name, [str(k) for k in obj]),
        )
    if obj is None:
        raise _fail(
            "Attempt to get attribute from null value",
            "This value is null, so it does not have any attributes.",
            pos,
        )
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(x, Mapping) for x in obj):
            if any(name in x for x in obj):
                detail = (
                    f'Can\'t access attributes on a list of objects. Did you mean to access attribute "{name}" '
                    "for a specific element of the list, or across all elements of the list?"
                )
            else:
                detail = (
                    "Can't access attributes on a list of objects. Did you mean to access an attribute "
                    "for a specific element of the list, or across all elements of the list?"
                )
            raise _fail("Unsupported attribute", detail, pos, f"use [0].{name} or [*].{name}")
        raise _fail("Unsupported attribute", "Can't access attributes on a tuple value.", pos)
    raise _fail(
        "Unsupported attribute",
        f"Can't access attributes on a primitive-typed value ({type_name(obj)}).",
        pos,
    )


def _index(coll: Value, key: Value, pos: Pos) -> Value:
    if coll is None:
        raise _fail("Attempt to index null value", "This value is null, so it does not have any indices.", pos)
    if key is None:
        raise _fail("Invalid index", "Can't use a null value as an indexing key.", pos)
    bad = "The given key does not identify an element in this collection value"
    if isinstance(coll, (list, tuple)):
        if type(key) is int:
            k: Any = key
        else:
            try:
                k = to_number(key)
            except ConvertError as err:
                raise _fail("Invalid index", f"{bad}: {err}.", pos) from None
        if k != int(k):
            raise _fail(
                "Invalid index",
                f"{bad}: indexing a sequence requires a whole number, but the given index has a fractional part.",
                pos,
            )
        if k < 0:
            raise _fail("Invalid index", f"{bad}: a negative number is not a valid index for a sequence.", pos)
        if k >= len(coll):
            if not coll:
                raise _fail("Invalid index", f"{bad}: the collection has no elements.", pos)
            raise _fail(
                "Invalid index",
                f"{bad}: the given index is greater than or equal to the length of the collection.",
                pos,
            )
        return coll[int(k)]
    if isinstance(coll, Mapping):
        if type(key) is str:
            ks: str = key
        else:
            try:
                ks = to_string(key)
            except ConvertError as err:
                raise _fail("Invalid index", f"{bad}: {err}.", pos) from None
        if ks in coll:
            return coll[ks]
        raise _fail("Invalid index", f"{bad}.", pos, closest(ks, [str(x) for x in coll]))
    raise _fail("Invalid index", "This value does not have any indices.", pos)


def _ev_get_attr(e: GetAttr, ctx: EvalContext) -> Value:
    obj = evaluate(e.source, ctx)
    if type(obj) is dict:
        try:
            return obj[e.name]
        except KeyError:
            pass
    return _get_attr(obj, e.name, e.op_pos)


def _ev_index(e: Index, ctx: EvalContext) -> Value:
    coll = evaluate(e.collection, ctx)
    key = evaluate(e.key, ctx)
    return _index(coll, key, e.op_pos)


def _splat_over(e: Splat, src: Value, ctx: EvalContext) -> Value:
    if src is None:
        return []
    if not isinstance(src, (list, tuple)):
        src = [src]
    each = e.each
    item = e.item
    if each is item:
        return list(src)
    return [_relative(each, item, v, ctx) for v in src]


def _relative(node: Expr, item: SplatItem, value: Value, ctx: EvalContext) -> Value:
    """Evaluate a splat's per-element expression with ``item`` bound to ``value``."""
    if node is item:
        return value
    if type(node) is GetAttr:
        return _get_attr(_relative(node.source, item, value, ctx), node.name, node.op_pos)
    if type(node) is Index:
        coll = _relative(node.collection, item, value, ctx)
        return _index(coll, evaluate(node.key, ctx), node.op_pos)
    if type(node) is Splat:
        return _splat_over(node, _relative(node.source, item, value, ctx), ctx)
    return evaluate(node, ctx)  # pragma: no cover - the parser builds only the above


def _ev_splat(e: Splat, ctx: EvalContext) -> Value:
    return _splat_over(e, evaluate(e.source, ctx), ctx)


# --------------------------------------------------------------------------
# Function calls


def _expand(e: FunctionCall, args: List[Value]) -> List[Value]:
    last = args[-1]
    where = e.args[-1].pos
    if last is None:
        raise _fail(
            "Invalid expanding argument value",
            "The expanding argument (indicated by ...) must not be null.",
            where,
        )
    if isinstance(last, Mapping) or not isinstance(last, (list, tuple)):
        raise _fail(
            "Invalid expanding argument value",
            "The expanding argument (indicated by ...) must be of a tuple, list, or set type.",
            where,
        )
    return args[:-1] + list(last)


def _call_failed(name: str, msg: str, pos: Pos) -> BakeryError:
    msg = msg[:-1] if msg.endswith(".") else msg
    return _fail("Error in function call", f'Call to function "{name}" failed: {msg}.', pos)


def _ev_try(e: FunctionCall, ctx: EvalContext) -> Value:
    if e.expand_final:
        args = _expand(e, [evaluate(a, ctx) for a in e.args])
        if not args:
            raise _call_failed("try", "at least one argument is required", e.pos)
        return args[0]
    if not e.args:
        raise _call_failed("try", "at least one argument is required", e.pos)
    errors: List[BakeryError] = []
    for a in e.args:
        try:
            return evaluate(a, ctx)
        except BakeryError as err:
            errors.append(err)
    lines = ["no expression succeeded:"]
    for failed in errors:
        summary, detail = _split(failed)
        at = f" (at {failed.pos})" if failed.pos is not None else ""
        lines.append(f"- {summary}{at}")
        if detail:
            lines.append(f"  {detail}")
    raise _call_failed("try", "\n".join(lines), e.pos)


def _ev_can(e: FunctionCall, ctx: EvalContext) -> Value:
    if e.expand_final:
        args = _expand(e, [evaluate(a, ctx) for a in e.args])
        n = len(args)
    else:
        n = len(e.args)
    if n == 0:
        raise _fail(
            "Not enough function arguments",
            'Function "can" expects 1 argument(s). Missing value for "expression".',
            e.pos,
        )
    if n > 1:
        raise _fail("Too many function arguments", 'Function "can" expects only 1 argument(s).', e.pos)
    if e.expand_final:
        return True
    try:
        evaluate(e.args[0], ctx)
    except BakeryError:
        return False
    return True


def _ev_call(e: FunctionCall, ctx: EvalContext) -> Value:
    name = e.name
    if name == "try":
        return _ev_try(e, ctx)
    if name == "can":
        return _ev_can(e, ctx)
    functions = ctx.functions
    if name not in functions:
        raise _fail(
            "Call to unknown function",
            f'There is no function named "{name}".',
            e.pos,
            closest(name, [*functions, "can", "try"]),
        )
    fn = functions[name]
    args = [evaluate(a, ctx) for a in e.args]
    if e.expand_final:
        args = _expand(e, args)
    try:
        return fn(*args)
    except FunctionError as err:
        raise _call_failed(name, str(err), e.pos) from None


# --------------------------------------------------------------------------
# Operators


def _operand_number(v: Value, which: str, e: Expr) -> Any:
    if type(v) is int or type(v) is float:
        return v
    try:
        return to_number(v)
    except ConvertError as err:
        raise _fail("Invalid operand", f"Unsuitable value for {which} operand: {err}.", e.pos) from None


def _operand_bool(v: Value, which: str, e: Expr) -> bool:
    if v is True or v is False:
        return v
    try:
        return to_bool(v)
    except ConvertError as err:
        raise _fail("Invalid operand", f"Unsuitable value for {which} operand: {err}.", e.pos) from None


def _arith(op: str, a: Any, b: Any, e: BinaryOp) -> Value:
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        if b == 0:
            raise _fail("Operation failed", "Error during operation: can't divide by zero.", e.pos)
        if type(a) is int and type(b) is int and a % b == 0:
            return a // b
        r = a / b
    else:
        if b == 0:
            raise _fail("Operation failed", "Error during operation: can't use modulo by zero.", e.pos)
        if type(a) is int and type(b) is int:
            r = abs(a) % abs(b)
            return -r if a < 0 else r
        r = math.fmod(a, b)
    if type(r) is float:
        return norm_number(r)
    return r


def _logical(e: BinaryOp, ctx: EvalContext) -> Value:
    # HCL evaluates both sides; a side's errors are dropped when the other
    # side alone decides the result (false for &&, true for ||).
    lerr: Optional[BakeryError] = None
    rerr: Optional[BakeryError] = None
    lv: Optional[bool] = None
    rv: Optional[bool] = None
    try:
        lraw = evaluate(e.lhs, ctx)
    except BakeryError as err:
        lerr = err
    else:
        lv = _operand_bool(lraw, "left", e.lhs)
    try:
        rraw = evaluate(e.rhs, ctx)
    except BakeryError as err:
        rerr = err
    else:
        rv = _operand_bool(rraw, "right", e.rhs)
    decisive = e.op == "||"
    if lv is decisive or rv is decisive:
        return decisive
    if lerr is not None:
        raise lerr
    if rerr is not None:
        raise rerr
    return not decisive


def _ev_binary(e: BinaryOp, ctx: EvalContext) -> Value:
    op = e.op
    if op == "&&" or op == "||":
        return _logical(e, ctx)
    lv = evaluate(e.lhs, ctx)
    if op == "==" or op == "!=":
        rv = evaluate(e.rhs, ctx)
        return values_equal(lv, rv) == (op == "==")
    a = _operand_number(lv, "left", e.lhs)
    b = _operand_number(evaluate(e.rhs, ctx), "right", e.rhs)
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    return _arith(op, a, b, e)


def _ev_unary(e: UnaryOp, ctx: EvalContext) -> Value:
    v = evaluate(e.operand, ctx)
    if e.op == "!":
        return not _operand_bool(v, "unary", e.operand)
    n = _operand_number(v, "unary", e.operand)
    return -n


# --------------------------------------------------------------------------
# Conditionals: cty type unification of the two results

# A value's type: "string", "number", "bool", "dynamic" (null, or a lazy
# mapping that is not inspected), ("tuple", [types]), ("object", {name: type}),
# ("list", type), ("map", type).


def _type_of(v: Value) -> Any:
    if v is None:
        return "dynamic"
    if v is True or v is False:
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (list, tuple)):
        return ("tuple", [_type_of(x) for x in v])
    if type(v) is dict:
        return ("object", {k: _type_of(x) for k, x in v.items()})
    return "dynamic"


def _friendly(t: Any) -> str:
    if isinstance(t, str):
        return t
    if t[0] in ("list", "map"):
        return f"{t[0]} of {_friendly(t[1])}"
    return str(t[0])


def _convertible(src: Any, want: Any) -> bool:
    if src == want or src == "dynamic" or want == "dynamic":
        return True
    if want == "string":
        return src in ("number", "bool")
    if want in ("number", "bool"):
        return src == "string"  # unsafe conversions: checked on the value
    return False


def _rank(t: Any) -> int:
    if t == "string":
        return 0
    if t == "dynamic":
        return 2
    return 1


def _unify(types: List[Any]) -> Any:
    """cty's unsafe type unification; None when there is no common type."""
    if not types:
        return None
    objects = [t for t in types if isinstance(t, tuple) and t[0] == "object"]
    tuples = [t for t in types if isinstance(t, tuple) and t[0] == "tuple"]
    dynamic = sum(1 for t in types if t == "dynamic")
    if objects and tuples:
        return None
    if objects and len(objects) + dynamic == len(types):
        return _unify_objects(objects)
    if tuples and len(tuples) + dynamic == len(types):
        return _unify_tuples(tuples)
    for want in sorted(types, key=_rank):
        if all(_convertible(t, want) for t in types):
            return want
    return None


def _unify_objects(objects: List[Any]) -> Any:
    first = objects[0][1]
    if all(set(o[1]) == set(first) for o in objects[1:]):
        attrs = {}
        for name in first:
            at = _unify([o[1][name] for o in objects])
            if at is None:
                return None
            attrs[name] = at
        return ("object", attrs)
    et = _unify([at for o in objects for at in o[1].values()])
    return None if et is None else ("map", et)


def _unify_tuples(tuples: List[Any]) -> Any:
    first = tuples[0][1]
    if all(len(t[1]) == len(first) for t in tuples[1:]):
        ets = []
        for i in range(len(first)):
            et = _unify([t[1][i] for t in tuples])
            if et is None:
                return None
            ets.append(et)
        return ("tuple", ets)
    et = _unify([et for t in tuples for et in t[1]])
    return None if et is None else ("list", et)


def _convert(v: Value, t: Any) -> Value:
    if t == "dynamic" or v is None:
        return v
    if t == "string":
        return v if isinstance(v, str) else to_string(v)
    if t == "number":
        return to_number(v)
    if t == "bool":
        return to_bool(v)
    kind = t[0]
    if kind in ("tuple", "list"):
        if not isinstance(v, (list, tuple)):
            return v
        if kind == "tuple":
            return [_convert(x, et) for x, et in zip(v, t[1])]
        return [_convert(x, t[1]) for x in v]
    if type(v) is not dict:
        return v
    if kind == "object":
        return {k: _convert(x, t[1].get(k, "dynamic")) for k, x in v.items()}
    return {k: _convert(x, t[1]) for k, x in v.items()}


def _mismatch(tt: Any, ft: Any) -> str:
    """HCL's description of why two result types don't unify."""
    if isinstance(tt, tuple) and isinstance(ft, tuple):
        if tt[0] == "object" and ft[0] == "object":
            for name in sorted(tt[1]):
                if name not in ft[1]:
                    return f"The 'true' value includes object attribute \"{name}\", which is absent in the 'false' value"
                if tt[1][name] != ft[1][name] and _unify([tt[1][name], ft[1][name]]) is None:
                    return f'Type mismatch for object attribute "{name}": {_mismatch(tt[1][name], ft[1][name])}'
            for name in sorted(ft[1]):
                if name not in tt[1]:
                    return f"The 'false' value includes object attribute \"{name}\", which is absent in the 'true' value"
        if tt[0] == "tuple" and ft[0] == "tuple":
            if len(tt[1]) != len(ft[1]):
                return f"The 'true' tuple has length {len(tt[1])}, but the 'false' tuple has length {len(ft[1])}"
            for i, (a, b) in enumerate(zip(tt[1], ft[1])):
                if a != b and _unify([a, b]) is None:
                    return f"Type mismatch for tuple element {i}: {_mismatch(a, b)}"
    tn, fn = _friendly(tt), _friendly(ft)
    if tn == fn:
        return (
            "At least one deeply-nested attribute or element is not compatible across both "
            "the 'true' and the 'false' value"
        )
    return f"The 'true' value is {tn}, but the 'false' value is {fn}"


def _ev_conditional(e: Conditional, ctx: EvalContext) -> Value:
    terr: Optional[BakeryError] = None
    ferr: Optional[BakeryError] = None
    tv: Value = None
    fv: Value = None
    try:
        tv = evaluate(e.true_expr, ctx)
    except BakeryError as err:
        terr = err
    try:
        fv = evaluate(e.false_expr, ctx)
    except BakeryError as err:
        ferr = err
    result_type: Any = "dynamic"
    if terr is None and ferr is None and tv is not None and fv is not None:
        ttype = type(tv)
        if ttype is type(fv) and (ttype is str or ttype is bool):
            pass  # same primitive type: nothing to unify
        elif isinstance(tv, (int, float)) and isinstance(fv, (int, float)) and ttype is not bool \
                and type(fv) is not bool:
            pass
        else:
            tt, ft = _type_of(tv), _type_of(fv)
            if tt != ft:
                result_type = _unify([tt, ft])
                if result_type is None:
                    raise _fail(
                        "Inconsistent conditional result types",
                        f"The true and false result expressions must have consistent types. {_mismatch(tt, ft)}.",
                        e.true_expr.pos,
                    )
    cond = evaluate(e.condition, ctx)
    if cond is None:
        raise _fail(
            "Null condition",
            "The condition value is null. Conditions must either be true or false.",
            e.condition.pos,
        )
    if cond is not True and cond is not False:
        try:
            cond = to_bool(cond)
        except ConvertError:
            raise _fail(
                "Incorrect condition type",
                "The condition expression must be of type bool.",
                e.condition.pos,
            ) from None
    if cond:
        if terr is not None:
            raise terr
        chosen, which, where = tv, "true", e.true_expr
    else:
        if ferr is not None:
            raise ferr
        chosen, which, where = fv, "false", e.false_expr
    if result_type == "dynamic":
        return chosen
    try:
        return _convert(chosen, result_type)
    except ConvertError as err:
        raise _fail(
            "Inconsistent conditional result types",
            f"The {which} result value has the wrong type: {err}.",
            where.pos,
        ) from None


# --------------------------------------------------------------------------
# Collections


def _ev_tuple(e: TupleCons, ctx: EvalContext) -> Value:
    return [evaluate(x, ctx) for x in e.items]


def _is_traversal(e: Expr) -> bool:
    while True:
        if type(e) is Variable:
            return True
        if type(e) is GetAttr:
            e = e.source
        elif type(e) is Index and (
            type(e.key) is Literal or (type(e.key) is TemplateExpr and e.key.is_string_literal())
        ):
            e = e.collection
        else:
            return False


def _key_value(k: Expr, ctx: EvalContext) -> Value:
    if type(k) is ObjectKey:
        if k.name is not None:
            return k.name
        if not k.force_non_literal and _is_traversal(k.wrapped):
            raise _fail(
                "Ambiguous attribute key",
                "If this expression is intended to be a reference, wrap it in parentheses. "
                "If it's instead intended as a literal name containing periods, wrap it in quotes "
                "to create a string literal.",
                k.pos,
            )
        return evaluate(k.wrapped, ctx)
    return evaluate(k, ctx)


def _ev_object_key(e: ObjectKey, ctx: EvalContext) -> Value:
    return _key_value(e, ctx)


def _ev_object(e: ObjectCons, ctx: EvalContext) -> Value:
    out: Dict[str, Value] = {}
    for k, v in e.items:
        key = _key_value(k, ctx)
        val = evaluate(v, ctx)
        if type(key) is not str:
            if key is None:
                raise _fail("Null value as key", "Can't use a null value as a key.", k.pos)
            try:
                key = to_string(key)
            except ConvertError as err:
                raise _fail("Incorrect key type", f"Can't use this value as a key: {err}.", k.pos) from None
        out[key] = val
    return out


def _iterate(coll: Value, e: ForExpr) -> Iterable[Tuple[Value, Value]]:
    if coll is None:
        raise _fail(
            "Iteration over null value",
            "A null value cannot be used as the collection in a 'for' expression.",
            e.collection.pos,
        )
    if isinstance(coll, Mapping):
        return [(k, coll[k]) for k in sorted(coll)]
    if isinstance(coll, (list, tuple)):
        return enumerate(coll)
    raise _fail(
        "Iteration over non-iterable value",
        f"A value of type {type_name(coll)} cannot be used as the collection in a 'for' expression.",
        e.collection.pos,
    )


def _ev_for(e: ForExpr, ctx: EvalContext) -> Value:
    pairs = _iterate(evaluate(e.collection, ctx), e)
    key_var = e.key_var
    value_var = e.value_var
    cond = e.condition
    key_expr = e.key_expr
    value_expr = e.value_expr
    tuple_out: List[Value] = []
    object_out: Dict[str, Value] = {}
    for k, v in pairs:
        local = {value_var: v} if key_var is None else {key_var: k, value_var: v}
        child = EvalContext.__new__(EvalContext)
        child._vars = ctx._vars
        child.functions = ctx.functions
        child._local = local
        child._parent = ctx
        if cond is not None:
            c = evaluate(cond, child)
            if c is not True:
                if c is False:
                    continue
                if c is None:
                    raise _fail("Invalid 'for' condition", "The value of the 'if' clause must not be null.", cond.pos)
                try:
                    if not to_bool(c):
                        continue
                except ConvertError as err:
                    raise _fail("Invalid 'for' condition", f"The 'if' clause value is invalid: {err}.", cond.pos) from None
        if key_expr is None:
            tuple_out.append(evaluate(value_expr, child))
            continue
        key = evaluate(key_expr, child)
        if type(key) is not str:
            if key is None:
                raise _fail(
                    "Invalid object key",
                    "Key expression in 'for' expression must not produce a null value.",
                    key_expr.pos,
                )
            try:
                key = to_string(key)
            except ConvertError as err:
                raise _fail(
                    "Invalid object key",
                    f"The key expression produced an invalid result: {err}.",
                    key_expr.pos,
                ) from None
        val = evaluate(value_expr, child)
        if e.group:
            group = object_out.get(key)
            if group is None:
                object_out[key] = [val]
            else:
                group.append(val)
        elif key in object_out:
            raise _fail(
                "Duplicate object key",
                f"Two different items produced the key \"{key}\" in this 'for' expression. "
                "If duplicates are expected, use the ellipsis (...) after the value expression "
                "to enable grouping by key.",
                key_expr.pos,
            )
        else:
            object_out[key] = val
    return tuple_out if key_expr is None else object_out


_EVAL: Dict[type, Callable[[Any, EvalContext], Value]] = {
    Literal: _ev_literal,
    TemplateExpr: _ev_template,
    TemplateWrap: _ev_template_wrap,
    TemplateJoin: _ev_template_join,
    Variable: _ev_variable,
    GetAttr: _ev_get_attr,
    Index: _ev_index,
    Splat: _ev_splat,
    SplatItem: _ev_splat_item,
    FunctionCall: _ev_call,
    Conditional: _ev_conditional,
    BinaryOp: _ev_binary,
    UnaryOp: _ev_unary,
    TupleCons: _ev_tuple,
    ObjectCons: _ev_object,
    ObjectKey: _ev_object_key,
    ForExpr: _ev_for,
    Parens: _ev_parens,
}
