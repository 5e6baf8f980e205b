"""The built-in functions of bake files: buildx's ``bake/hclparser/stdlib.go``.

Every function is a plain Python callable taking positional values (see
:mod:`bakery.bakefile.values`) and returning a value; :data:`FUNCTIONS` maps
the bake name to it.  ``try`` and ``can`` are not here: they need unevaluated
arguments, so the evaluator implements them.

Arguments are checked and converted the way HCL calls a go-cty function:

* arity first (``Not enough function arguments; Function "x" expects 2
  argument(s). Missing value for "y".``),
* then each argument is converted to its parameter's type with cty's
  conversion rules (``5`` → ``"5"`` for a string parameter, ``"5"`` → ``5``
  for a number parameter, ``null`` is refused unless the parameter allows it),
* then the function runs.

Failures raise :class:`~bakery.bakefile.values.FunctionError` carrying HCL's
diagnostic detail: ``Invalid value for "str" parameter: string required.`` for
an argument error, ``Call to function "x" failed: ….`` for any other error.
The wording of the underlying messages follows go-cty, go-cty-funcs and
buildx.

Deliberate approximations (documented where they live):

* "characters" (``strlen``, ``substr``, ``reverse``, ``format`` widths) are
  grapheme clusters approximated by code points plus combining marks, ZWJ
  sequences, variation selectors, emoji modifiers and regional-indicator pairs;
* regular expressions are Go RE2 syntax translated to Python :mod:`re`;
* maps and objects are both plain dicts, so functions that in cty accept only
  one of them (``length``, ``index``, ``hasindex``, ``lookup``…) accept both;
* ``byteslen``/``bytesslice`` take a string as its UTF-8 bytes (cty wants a
  ``bytes`` capsule value that bake files cannot produce);
* ``bcrypt`` needs the optional ``bcrypt`` PyPI package;
* ``convert`` takes its type as a type-expression string (``"list(string)"``),
  since the evaluator hands over the expression, not a value.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
import re
import unicodedata
import urllib.parse
import uuid
from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .values import (
    FunctionError,
    Number,
    Value,
    equal,
    format_number,
    is_number,
    norm_number,
    type_name,
)

__all__ = ["FUNCTIONS", "format_value"]

FUNCTIONS: Dict[str, Callable[..., Value]] = {}

_INT64_MSG = "value must be a whole number, between -9223372036854775808 and 9223372036854775807"


# ---------------------------------------------------------------------------
# Errors and argument handling
# ---------------------------------------------------------------------------


class _ArgError(Exception):
    """An error about one argument (cty's ``function.ArgError``)."""

    def __init__(self, index: int, msg: str) -> None:
        super().__init__(msg)
        self.index = index
        self.msg = msg


class _CallError(Exception):
    """Any other failure of a function's implementation."""


class _ConvError(Exception):
    """A value could not be converted to a cty type."""


class _Param:
    __slots__ = ("allow_null", "name", "type")

    def __init__(self, name: str, type_: Any = "any", allow_null: bool = False) -> None:
        self.name = name
        self.type = type_
        self.allow_null = allow_null


def _builtin(
    name: str, *params: _Param, var: Optional[_Param] = None
) -> Callable[[Callable[..., Value]], Callable[..., Value]]:
    """Register ``impl`` under ``name`` with HCL-style arity and conversion."""

    def deco(impl: Callable[..., Value]) -> Callable[..., Value]:
        def call(*args: Value) -> Value:
            if len(args) < len(params):
                missing = params[len(args)]
                qual = " at least" if var is not None else ""
                raise FunctionError(
                    f"Not enough function arguments; Function {name!r} expects{qual} "
                    f"{len(params)} argument(s). Missing value for {missing.name!r}.".replace(
                        "'", '"'
                    )
                )
            if var is None and len(args) > len(params):
                raise FunctionError(
                    f'Too many function arguments; Function "{name}" expects only '
                    f"{len(params)} argument(s)."
                )
            converted: List[Value] = []
            for i, arg in enumerate(args):
                p = params[i] if i < len(params) else var
                assert p is not None
                if arg is None:
                    if not p.allow_null:
                        raise FunctionError(
                            f'Invalid value for "{p.name}" parameter: argument must not be null.'
                        )
                    converted.append(None)
                    continue
                try:
                    converted.append(_convert(arg, p.type))
                except _ConvError as e:
                    raise FunctionError(f'Invalid value for "{p.name}" parameter: {e}.') from None
            try:
                return impl(*converted)
            except _ArgError as e:
                p = params[e.index] if e.index < len(params) else var
                pname = p.name if p is not None else "?"
                raise FunctionError(f'Invalid value for "{pname}" parameter: {e.msg}.') from None
            except _CallError as e:
                raise FunctionError(f'Call to function "{name}" failed: {e}.') from None

        call.__name__ = name
        call.__qualname__ = name
        call.__doc__ = impl.__doc__
        FUNCTIONS[name] = call
        return impl

    return deco


def _fail(msg: str) -> _CallError:
    return _CallError(msg)


def _go_quote(s: str) -> str:
    """Go's ``%q`` / ``strconv.Quote`` for a string (printable Unicode kept)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_rune_quote(ch: str) -> str:
    """Go's ``%q`` for a rune."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + _go_quote(ch)[1:-1] + "'"


# ---------------------------------------------------------------------------
# Types and conversion (go-cty's convert package, simplified)
# ---------------------------------------------------------------------------

# A type is "string" | "number" | "bool" | "any" | ("list", T) | ("set", T)
# | ("map", T) | ("tuple", [T, ...]) | ("object", {name: T}).


def _type_friendly(t: Any) -> str:
    if isinstance(t, str):
        return "any single type" if t == "any" else t
    kind = t[0]
    if kind in ("list", "set", "map"):
        return f"{kind} of {_type_friendly(t[1])}"
    return kind


def _parse_number(s: str) -> Number:
    """cty's ``ParseNumberVal``: a decimal number, optionally signed/exponent."""
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", s):
        raise ValueError(s)
    try:
        return int(s, 10)
    except ValueError:
        pass
    d = Decimal(s)
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _unify(elems: Sequence[Value], what: str) -> List[Value]:
    """Convert elements to one common type, like cty's unsafe unification.

    Only primitive types are unified (a mix with strings becomes strings);
    structural elements are kept as they are.
    """
    kinds = {type_name(e) for e in elems} - {"null"}
    if len(kinds) <= 1:
        return list(elems)
    prims = {"string", "number", "bool"}
    if kinds <= prims and "string" in kinds:
        return [None if e is None else _convert(e, "string") for e in elems]
    if kinds & prims:
        raise _ConvError(f"all {what} elements must have the same type")
    return list(elems)


def _set_sort_key(v: Value) -> Tuple[int, Any]:
    if isinstance(v, bool):
        return (0, v)
    if is_number(v):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, _json_encode(v))


def _make_set(elems: Sequence[Value]) -> List[Value]:
    out: List[Value] = []
    for e in elems:
        if not any(equal(e, o) for o in out):
            out.append(e)
    return sorted(out, key=_set_sort_key)


def _convert(v: Value, t: Any) -> Value:
    """Convert a non-null value ``v`` to type ``t`` or raise :class:`_ConvError`."""
    if v is None or t == "any":
        return v
    if t == "string":
        if isinstance(v, str):
            return v
        if isinstance(v, bool):
            return "true" if v else "false"
        if is_number(v):
            return format_number(v)
        raise _ConvError("string required")
    if t == "number":
        if is_number(v):
            return v
        if isinstance(v, str):
            try:
                return _parse_number(v)
            except ValueError:
                raise _ConvError("a number is required") from None
        raise _ConvError("number required")
    if t == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            if v in ("true", "1"):
                return True
            if v in ("false", "0"):
                return False
            if v.lower() in ("true", "false"):
                raise _ConvError(
                    f'a bool is required; to convert from string, use lowercase "{v.lower()}"'
                )
            raise _ConvError("a bool is required")
        raise _ConvError("bool required")
    kind = t[0]
    if kind in ("list", "set"):
        if not isinstance(v, (list, tuple)):
            raise _ConvError(f"{_type_friendly(t)} required")
        if t[1] == "any":
            elems = _unify(v, kind)
        else:
            elems = [_convert(e, t[1]) for e in v]
        return _make_set(elems) if kind == "set" else elems
    if kind == "map":
        if not isinstance(v, Mapping):
            raise _ConvError(f"{_type_friendly(t)} required")
        keys = list(v.keys())
        if t[1] == "any":
            vals = _unify([v[k] for k in keys], "map")
        else:
            vals = [_convert(v[k], t[1]) for k in keys]
        return dict(zip(keys, vals))
    if kind == "tuple":
        if not isinstance(v, (list, tuple)) or len(v) != len(t[1]):
            raise _ConvError("tuple required")
        return [_convert(e, et) for e, et in zip(v, t[1])]
    if kind == "object":
        if not isinstance(v, Mapping):
            raise _ConvError("object required")
        out = {}
        for k, at in t[1].items():
            if k not in v:
                raise _ConvError(f'attribute "{k}" is required')
            out[k] = _convert(v[k], at)
        return out
    raise _ConvError(f"unsupported type {t!r}")


_TYPE_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(){}\[\],=])")


def _parse_type(src: str) -> Any:
    """Parse an HCL type expression such as ``list(string)`` or ``object({a=number})``."""
    toks: List[str] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TYPE_TOKEN.match(src, pos)
        if not m:
            raise ValueError(f"invalid type expression {src!r}")
        toks.append(m.group(1))
        pos = m.end()
        while pos < len(src) and src[pos].isspace():
            pos += 1
    i = 0

    def expect(tok: str) -> None:
        nonlocal i
        if i >= len(toks) or toks[i] != tok:
            raise ValueError(f"expected {tok!r} in type expression {src!r}")
        i += 1

    def parse() -> Any:
        nonlocal i
        if i >= len(toks):
            raise ValueError(f"incomplete type expression {src!r}")
        tok = toks[i]
        i += 1
        if tok in ("string", "number", "bool", "any"):
            return tok
        if tok in ("list", "set", "map"):
            expect("(")
            inner = parse()
            expect(")")
            return (tok, inner)
        if tok == "tuple":
            expect("(")
            expect("[")
            elems = []
            while toks[i] != "]":
                elems.append(parse())
                if toks[i] == ",":
                    i += 1
            expect("]")
            expect(")")
            return ("tuple", elems)
        if tok == "object":
            expect("(")
            expect("{")
            attrs = {}
            while toks[i] != "}":
                key = toks[i]
                i += 1
                expect("=")
                attrs[key] = parse()
                if toks[i] == ",":
                    i += 1
            expect("}")
            expect(")")
            return ("object", attrs)
        raise ValueError(f"the keyword {tok!r} is not a valid type constructor")

    try:
        result = parse()
    except IndexError:
        raise ValueError(f"incomplete type expression {src!r}") from None
    if i != len(toks):
        raise ValueError(f"invalid type expression {src!r}")
    return result


def _to_int(v: Number, msg_prefix: str = "") -> int:
    """gocty's conversion of a number to a Go ``int``."""
    if isinstance(v, int):
        if -(2**63) <= v < 2**63:
            return v
    elif math.isfinite(v) and v.is_integer() and -(2**63) <= v < 2**63:
        return int(v)
    raise _fail(msg_prefix + _INT64_MSG)


def _to_int_arg(i: int, v: Number) -> int:
    try:
        return _to_int(v)
    except _CallError as e:
        raise _ArgError(i, str(e)) from None


# ---------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------


def _is_extend(ch: str) -> bool:
    o = ord(ch)
    if 0xFE00 <= o <= 0xFE0F or 0x1F3FB <= o <= 0x1F3FF or 0xE0020 <= o <= 0xE007F:
        return True
    return unicodedata.category(ch) in ("Mn", "Me", "Mc")


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _graphemes(s: str) -> List[str]:
    """Split into (approximate) extended grapheme clusters."""
    out: List[str] = []
    i, n = 0, len(s)
    while i < n:
        j = i + 1
        c = s[i]
        if c == "\r":
            if j < n and s[j] == "\n":
                j += 1
            out.append(s[i:j])
            i = j
            continue
        if c == "\n" or unicodedata.category(c) == "Cc":
            out.append(c)
            i = j
            continue
        if _is_regional(c) and j < n and _is_regional(s[j]):
            j += 1
        while j < n:
            d = s[j]
            if _is_extend(d):
                j += 1
            elif d == "\u200d":
                j += 1
                if j < n:
                    j += 1
            else:
                break
        out.append(s[i:j])
        i = j
    return out


_GO_SPACE = set("\t\n\v\f\r \x85\xa0")


def _go_is_space(ch: str) -> bool:
    return ch in _GO_SPACE or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def _go_trim_space(s: str) -> str:
    i, j = 0, len(s)
    while i < j and _go_is_space(s[i]):
        i += 1
    while j > i and _go_is_space(s[j - 1]):
        j -= 1
    return s[i:j]


def _go_upper(s: str) -> str:
    out = []
    for ch in s:
        u = ch.upper()
        out.append(u if len(u) == 1 else ch)
    return "".join(out)


def _go_lower(s: str) -> str:
    out = []
    for ch in s:
        if ch == "\u0130":
            out.append("i")
            continue
        lo = ch.lower()
        out.append(lo if len(lo) == 1 else ch)
    return "".join(out)


def _go_title_sep(ch: str) -> bool:
    o = ord(ch)
    if o <= 0x7F:
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or unicodedata.category(ch) == "Nd":
        return False
    return _go_is_space(ch)


def _go_title(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        if _go_title_sep(prev):
            t = ch.title()
            out.append(t if len(t) == 1 else ch)
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def _go_path_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: List[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _go_path_base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    return p[p.rfind("/") + 1 :]


def _go_path_dir(p: str) -> str:
    return _go_path_clean(p[: p.rfind("/") + 1])


# ---------------------------------------------------------------------------
# JSON (go-cty's json.Marshal with Go's encoding/json string escaping)
# ---------------------------------------------------------------------------

_JSON_EXTRA_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    if any(c in out for c in _JSON_EXTRA_ESCAPES):
        out = "".join(_JSON_EXTRA_ESCAPES.get(c, c) for c in out)
    return out


def _json_encode(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _json_string(v)
    if is_number(v):
        if isinstance(v, float) and not math.isfinite(v):
            raise _fail("value must be a finite number to be encoded as JSON")
        return format_number(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_json_encode(e) for e in v) + "]"
    if isinstance(v, Mapping):
        return (
            "{" + ",".join(_json_string(str(k)) + ":" + _json_encode(v[k]) for k in sorted(v)) + "}"
        )
    raise _fail(f"cannot encode a value of type {type_name(v)} as JSON")


def _json_number(s: str) -> Number:
    d = Decimal(s)
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _json_constant(s: str) -> Value:
    raise ValueError(f"invalid character {s[0]!r} looking for beginning of value")


# ---------------------------------------------------------------------------
# Number helpers: arithmetic close to cty's 512-bit big.Float
# ---------------------------------------------------------------------------


def _dec(n: Number) -> Decimal:
    return Decimal(n) if isinstance(n, int) else Decimal(repr(n))


def _from_dec(d: Decimal) -> Number:
    if d.is_infinite():
        return float(d)
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _is_inf(n: Number) -> bool:
    return isinstance(n, float) and math.isinf(n)


def _arith(op: str, a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int) and op in "+-*":
        return a + b if op == "+" else a - b if op == "-" else a * b
    if _is_inf(a) or _is_inf(b) or (isinstance(a, float) and math.isnan(a)):
        fa, fb = float(a), float(b)
        r = fa + fb if op == "+" else fa - fb if op == "-" else fa * fb if op == "*" else 0.0
        if op == "/":
            r = fa / fb if fb != 0 else math.copysign(math.inf, fa) * math.copysign(1.0, fb)
        if math.isnan(r):
            raise _fail(
                {
                    "+": "can't compute sum of opposing infinities",
                    "-": "can't subtract infinity from itself",
                    "*": "can't multiply zero by infinity",
                    "/": "can't divide zero by zero or infinity by infinity",
                }[op]
            )
        return norm_number(r)
    with localcontext() as ctx:
        ctx.prec = 60
        da, db = _dec(a), _dec(b)
        dr: Decimal
        if op == "+":
            dr = da + db
        elif op == "-":
            dr = da - db
        elif op == "*":
            dr = da * db
        else:
            if db == 0:
                if da == 0:
                    raise _fail("can't divide zero by zero or infinity by infinity")
                return math.inf if (da > 0) == (not db.is_signed()) else -math.inf
            if isinstance(a, int) and isinstance(b, int) and a % b == 0:
                return a // b
            dr = da / db
        return _from_dec(dr)


def _modulo(a: Number, b: Number) -> Number:
    if _is_inf(a) or _is_inf(b):
        if a == 0 or b == 0:
            raise _fail("can't use modulo with zero and infinity")
        return _arith("*", a, b)
    if b == 0:
        return a
    if isinstance(a, int) and isinstance(b, int):
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    with localcontext() as ctx:
        ctx.prec = 60
        return _from_dec(_dec(a) % _dec(b))


def _num_digits(n: Number) -> Tuple[bool, str, int]:
    """``(negative, digits, point)``: value = 0.<digits> * 10**point; digits has
    no leading or trailing zeros (empty for zero)."""
    d = _dec(n)
    sign, digit_tuple, exp = d.as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    stripped = digits.lstrip("0")
    point = len(stripped) + exp
    stripped = stripped.rstrip("0")
    if not stripped:
        point = 0
    return bool(sign), stripped, point


def _round_digits(digits: str, point: int, n: int) -> Tuple[str, int]:
    """big.Float's decimal rounding to ``n`` digits, half to even."""
    if n < 0 or n >= len(digits):
        return digits, point
    up = digits[n] > "5" or (
        digits[n] == "5" and (n + 1 < len(digits) or (n > 0 and int(digits[n - 1]) % 2 == 1))
    )
    if digits[n] == "5" and n + 1 == len(digits):
        up = n > 0 and int(digits[n - 1]) % 2 == 1
    if up:
        k = n
        while k > 0 and digits[k - 1] == "9":
            k -= 1
        if k == 0:
            return "1", point + 1
        digits = digits[: k - 1] + str(int(digits[k - 1]) + 1)
    else:
        digits = digits[:n]
    digits = digits.rstrip("0")
    if not digits:
        point = 0
    return digits, point


def _fmt_e(digits: str, point: int, prec: int, upper: bool) -> str:
    first = digits[0] if digits else "0"
    out = first
    if prec > 0:
        rest = digits[1:]
        out += "." + (rest + "0" * prec)[:prec]
    exp = point - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    out += ("E" if upper else "e") + sign + f"{abs(exp):02d}"
    return out


def _fmt_f(digits: str, point: int, prec: int) -> str:
    if point > 0:
        out = digits[:point] + "0" * max(0, point - len(digits))
    else:
        out = "0"
    if prec > 0:
        frac = []
        for i in range(prec):
            idx = point + i
            frac.append(digits[idx] if 0 <= idx < len(digits) else "0")
        out += "." + "".join(frac)
    return out


def _go_float_text(n: Number, verb: str, prec: int) -> str:
    """big.Float.Text(verb, prec) (``prec`` < 0 means shortest)."""
    if isinstance(n, float) and math.isinf(n):
        return "+Inf" if n > 0 else "-Inf"
    neg, digits, point = _num_digits(n)
    sign = "-" if neg else ""
    lower = verb.lower()
    if lower == "e":
        if prec < 0:
            prec = max(len(digits) - 1, 0)
        else:
            digits, point = _round_digits(digits, point, 1 + prec)
        return sign + _fmt_e(digits, point, prec, verb == "E")
    if lower == "f":
        if prec < 0:
            prec = max(len(digits) - point, 0)
        else:
            digits, point = _round_digits(digits, point, point + prec)
        return sign + _fmt_f(digits, point, prec)
    # 'g' / 'G'
    shortest = prec < 0
    if not shortest:
        if prec == 0:
            prec = 1
        digits, point = _round_digits(digits, point, prec)
    else:
        prec = len(digits)
    eprec = prec
    if eprec > len(digits) and len(digits) >= point:
        eprec = len(digits)
    if shortest:
        eprec = 6
    exp = point - 1
    if exp < -4 or exp >= eprec:
        if prec > len(digits):
            prec = len(digits)
        return sign + _fmt_e(digits, point, max(prec - 1, 0), verb == "G")
    if prec > point:
        prec = len(digits)
    return sign + _fmt_f(digits, point, max(prec - point, 0))


# ---------------------------------------------------------------------------
# format / formatlist (go-cty's format.go and format_fsm.rl)
# ---------------------------------------------------------------------------


class _Verb:
    __slots__ = (
        "arg_num",
        "has_prec",
        "has_width",
        "minus",
        "mode",
        "offset",
        "plus",
        "prec",
        "raw",
        "sharp",
        "space",
        "width",
        "zero",
    )

    def __init__(self, arg_num: int) -> None:
        self.arg_num = arg_num
        self.mode = ""
        self.raw = ""
        self.offset = 0
        self.zero = self.sharp = self.plus = self.minus = self.space = False
        self.has_prec = self.has_width = False
        self.prec = -1
        self.width = -1


class _FormatArgError(Exception):
    def __init__(self, index: int, msg: str) -> None:
        super().__init__(msg)
        self.index = index


def _pad_width(verb: _Verb, s: str) -> str:
    if verb.width < 0:
        return s
    have = len(_graphemes(s))
    if have >= verb.width:
        return s
    # go-cty pads with zeros whenever the 0 flag is given, even on the right
    pad = ("0" if verb.zero else " ") * (verb.width - have)
    return s + pad if verb.minus else pad + s


def _fmt_int_go(verb: _Verb, value: int) -> str:
    """big.Int.Format."""
    base = {"b": 2, "o": 8, "d": 10, "x": 16, "X": 16}[verb.mode]
    sign = "-" if value < 0 else "+" if verb.plus else " " if verb.space else ""
    prefix = ""
    if verb.sharp:
        prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb.mode, "")
    a = abs(value)
    if base == 10:
        digits = str(a)
    elif base == 16:
        digits = format(a, "x")
    elif base == 8:
        digits = format(a, "o")
    else:
        digits = format(a, "b")
    if verb.mode == "X":
        digits = digits.upper()
    left = zeros = right = 0
    if verb.has_prec:
        if len(digits) < verb.prec:
            zeros = verb.prec - len(digits)
        elif digits == "0" and verb.prec == 0:
            return ""
    length = len(sign) + len(prefix) + zeros + len(digits)
    if verb.has_width and length < verb.width:
        d = verb.width - length
        if verb.minus:
            right = d
        elif verb.zero and not verb.has_prec:
            zeros = d
        else:
            left = d
    return " " * left + sign + prefix + "0" * zeros + digits + " " * right


def _fmt_float_go(verb: _Verb, value: Number) -> str:
    """big.Float.Format for %e %E %f %g %G."""
    prec = verb.prec if verb.has_prec else -1
    mode = verb.mode
    if mode in "eEf" and prec < 0:
        prec = 6
    text = _go_float_text(value, mode, prec)
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    elif text.startswith("+"):
        sign, text = ("+" if not verb.space else " "), text[1:]
    elif verb.plus:
        sign = "+"
    elif verb.space:
        sign = " "
    pad = 0
    if verb.has_width and verb.width > len(sign) + len(text):
        pad = verb.width - len(sign) - len(text)
    if verb.zero and not verb.minus and not _is_inf(value):
        return sign + "0" * pad + text
    if verb.minus:
        return sign + text + " " * pad
    return " " * pad + sign + text


def _format_one(verb: _Verb, args: Sequence[Value]) -> str:
    idx = verb.arg_num - 1
    if idx >= len(args):
        raise _fail(
            f"not enough arguments for {_go_quote(verb.raw)} at {verb.offset}: "
            f"need index {verb.arg_num} but have {len(args)} total"
        )
    arg = args[idx]
    where = f"{_go_quote(verb.raw)} at {verb.offset}"
    if verb.mode != "v" and arg is None:
        raise _fail(f"unsupported value for {where}: null value cannot be formatted")
    mode = verb.mode
    if mode == "v":
        if not verb.sharp and arg is not None:
            if isinstance(arg, str):
                return _pad_width(verb, arg)
            if is_number(arg):
                return _pad_width(verb, _go_float_text(arg, "g", -1))
        try:
            text = _json_encode(arg)
        except _CallError as e:
            raise _fail(f"unsupported value for {where}: {e}") from None
        return _pad_width(verb, text)
    if mode == "t":
        try:
            return "true" if _convert(arg, "bool") else "false"
        except _ConvError as e:
            raise _fail(f"unsupported value for {where}: {e}") from None
    if mode in "bdoxXeEfgG":
        try:
            num = _convert(arg, "number")
        except _ConvError as e:
            raise _fail(f"unsupported value for {where}: {e}") from None
        if mode in "bdoxX":
            if isinstance(num, float):
                if not num.is_integer():
                    raise _fail(f"unsupported value for {where}: an integer is required")
                num = int(num)
            return _fmt_int_go(verb, num)
        return _fmt_float_go(verb, num)
    if mode in "sq":
        try:
            s = _convert(arg, "string")
        except _ConvError as e:
            raise _fail(f"unsupported value for {where}: {e}") from None
        if verb.prec > 0:
            s = "".join(_graphemes(s)[: verb.prec])
        if mode == "q":
            s = _json_string(s)
        return _pad_width(verb, s)
    raise _fail(
        f"unsupported format verb {_go_rune_quote(mode)} in {_go_quote(verb.raw)} at offset {verb.offset}"
    )


def _format(fmt: str, args: Sequence[Value]) -> str:
    # byte offsets, as Go reports them
    offs = [0]
    for ch in fmt:
        offs.append(offs[-1] + len(ch.encode("utf-8")))
    out: List[str] = []
    n = len(fmt)
    i = 0
    next_arg = 1
    highest = 0

    def bad_char(j: int) -> _CallError:
        if j >= n:
            return _fail(f"invalid format string starting at offset {offs[n]}")
        return _fail(f"unrecognized format character {_go_rune_quote(fmt[j])} at offset {offs[j]}")

    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        start = i
        verb = _Verb(next_arg)
        i += 1
        while i < n and fmt[i] in "0#-+ ":
            f = fmt[i]
            if f == "0":
                verb.zero = True
            elif f == "#":
                verb.sharp = True
            elif f == "-":
                verb.minus = True
            elif f == "+":
                verb.plus = True
            else:
                verb.space = True
            i += 1
        if i < n and fmt[i] == "[":
            i += 1
            if i >= n or not ("1" <= fmt[i] <= "9"):
                raise bad_char(i)
            num = 0
            while i < n and "0" <= fmt[i] <= "9":
                num = num * 10 + int(fmt[i])
                i += 1
            if i >= n or fmt[i] != "]":
                raise bad_char(i)
            i += 1
            verb.arg_num = num
        if i < n and "1" <= fmt[i] <= "9":
            verb.has_width = True
            verb.width = 0
            while i < n and "0" <= fmt[i] <= "9":
                verb.width = verb.width * 10 + int(fmt[i])
                i += 1
        if i < n and fmt[i] == ".":
            verb.has_prec = True
            verb.prec = 0
            i += 1
            while i < n and "0" <= fmt[i] <= "9":
                verb.prec = verb.prec * 10 + int(fmt[i])
                i += 1
        if i >= n or not (fmt[i].isascii() and fmt[i].isalpha()):
            raise bad_char(i)
        verb.mode = fmt[i]
        i += 1
        verb.raw = fmt[start:i]
        verb.offset = offs[start]
        highest = max(highest, verb.arg_num)
        out.append(_format_one(verb, args))
        next_arg = verb.arg_num + 1
    if highest < len(args):
        if highest == 0:
            raise _FormatArgError(highest + 1, "too many arguments; no verbs in format string")
        raise _FormatArgError(
            highest + 1, f"too many arguments; only {highest} used by format string"
        )
    return "".join(out)


def format_value(fmt: str, *args: Value) -> str:
    """``format(fmt, args...)`` as a Python helper (raises FunctionError)."""
    return str(FUNCTIONS["format"](fmt, *args))


@_builtin("format", _Param("format", "string"), var=_Param("args", "any", allow_null=True))
def _fn_format(fmt: str, *args: Value) -> Value:
    try:
        return _format(fmt, args)
    except _FormatArgError as e:
        raise _ArgError(e.index, str(e)) from None


@_builtin("formatlist", _Param("format", "string"), var=_Param("args", "any", allow_null=True))
def _fn_formatlist(fmt: str, *args: Value) -> Value:
    if not args:
        return [_fn_format(fmt)]
    iter_len = -1
    chooser = -1
    for i, arg in enumerate(args):
        if isinstance(arg, (list, tuple)):
            if iter_len == -1:
                iter_len, chooser = len(arg), i
            elif len(arg) != iter_len:
                raise _ArgError(
                    i + 1,
                    f"argument {i + 1} has length {len(arg)}, which is inconsistent with "
                    f"argument {chooser + 1} of length {iter_len}",
                )
    if iter_len == 0:
        return []
    if iter_len == -1:
        iter_len = 1
    ret = []
    for it in range(iter_len):
        fmt_args = [a[it] if isinstance(a, (list, tuple)) else a for a in args]
        try:
            ret.append(_format(fmt, fmt_args))
        except (_CallError, _FormatArgError) as e:
            raise _fail(f"error on format iteration {it}: {e}") from None
    return ret


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


@_builtin("absolute", _Param("num", "number"))
def _fn_absolute(n: Number) -> Value:
    return abs(n)


@_builtin("add", _Param("a", "number"), _Param("b", "number"))
def _fn_add(a: Number, b: Number) -> Value:
    return _arith("+", a, b)


@_builtin("subtract", _Param("a", "number"), _Param("b", "number"))
def _fn_subtract(a: Number, b: Number) -> Value:
    return _arith("-", a, b)


@_builtin("multiply", _Param("a", "number"), _Param("b", "number"))
def _fn_multiply(a: Number, b: Number) -> Value:
    return _arith("*", a, b)


@_builtin("divide", _Param("a", "number"), _Param("b", "number"))
def _fn_divide(a: Number, b: Number) -> Value:
    return _arith("/", a, b)


@_builtin("modulo", _Param("a", "number"), _Param("b", "number"))
def _fn_modulo(a: Number, b: Number) -> Value:
    return _modulo(a, b)


@_builtin("negate", _Param("num", "number"))
def _fn_negate(n: Number) -> Value:
    return norm_number(-n) if n != 0 else 0


@_builtin("greaterthan", _Param("a", "number"), _Param("b", "number"))
def _fn_gt(a: Number, b: Number) -> Value:
    return bool(a > b)


@_builtin("greaterthanorequalto", _Param("a", "number"), _Param("b", "number"))
def _fn_ge(a: Number, b: Number) -> Value:
    return bool(a >= b)


@_builtin("lessthan", _Param("a", "number"), _Param("b", "number"))
def _fn_lt(a: Number, b: Number) -> Value:
    return bool(a < b)


@_builtin("lessthanorequalto", _Param("a", "number"), _Param("b", "number"))
def _fn_le(a: Number, b: Number) -> Value:
    return bool(a <= b)


@_builtin("max", var=_Param("numbers", "number"))
def _fn_max(*nums: Number) -> Value:
    if not nums:
        raise _fail("must pass at least one number")
    best: Number = -math.inf
    for n in nums:
        if n > best:
            best = n
    return best


@_builtin("min", var=_Param("numbers", "number"))
def _fn_min(*nums: Number) -> Value:
    if not nums:
        raise _fail("must pass at least one number")
    best: Number = math.inf
    for n in nums:
        if n < best:
            best = n
    return best


@_builtin("int", _Param("num", "number"))
def _fn_int(n: Number) -> Value:
    if _is_inf(n):
        raise _fail("can't truncate infinity to an integer")
    return int(n)


@_builtin("ceil", _Param("num", "number"))
def _fn_ceil(n: Number) -> Value:
    if _is_inf(n):
        return n
    return math.ceil(n)


@_builtin("floor", _Param("num", "number"))
def _fn_floor(n: Number) -> Value:
    if _is_inf(n):
        return n
    return math.floor(n)


def _float_result(r: float) -> Number:
    if math.isnan(r):
        raise _fail("the result is not a number")
    return norm_number(r)


@_builtin("log", _Param("num", "number"), _Param("base", "number"))
def _fn_log(num: Number, base: Number) -> Value:
    def ln(x: float) -> float:
        if x == 0:
            return -math.inf
        if x < 0 or math.isnan(x):
            return math.nan
        return math.log(x)

    a, b = ln(float(num)), ln(float(base))
    if b == 0:
        r = math.nan if a == 0 else math.copysign(math.inf, a)
    elif math.isinf(a) and math.isinf(b):
        r = math.nan
    else:
        r = a / b
    return _float_result(r)


@_builtin("pow", _Param("num", "number"), _Param("power", "number"))
def _fn_pow(num: Number, power: Number) -> Value:
    if isinstance(num, int) and isinstance(power, int) and 0 <= power <= 1024 and abs(num) < 2**53:
        r = num**power
        if abs(r) < 2**53:
            return r
    try:
        res = math.pow(float(num), float(power))
    except OverflowError:
        res = math.inf if num > 0 or float(power) % 2 == 0 else -math.inf
    except ValueError:
        res = math.inf if num == 0 else math.nan
    return _float_result(res)


@_builtin("signum", _Param("num", "number"))
def _fn_signum(n: Number) -> Value:
    n = _to_int(n)
    return -1 if n < 0 else 1 if n > 0 else 0


_DIGITS62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@_builtin("parseint", _Param("number", "any"), _Param("base", "number"))
def _fn_parseint(s: Value, base: Number) -> Value:
    if not isinstance(s, str):
        raise _ArgError(0, f"first argument must be a string, not {type_name(s)}")
    b = _to_int_arg(1, base)
    if b < 2 or b > 62:
        raise _ArgError(1, "base must be a whole number between 2 and 62 inclusive")
    body = s
    neg = False
    if body[:1] in ("+", "-"):
        neg = body[0] == "-"
        body = body[1:]
    value = 0
    ok = bool(body)
    for ch in body:
        if b <= 36:
            d = _DIGITS62.find(ch.lower())
        else:
            d = _DIGITS62.find(ch)
        if d < 0 or d >= b:
            ok = False
            break
        value = value * b + d
    if not ok:
        raise _ArgError(0, f"cannot parse {_go_quote(s)} as a base {b} integer")
    return -value if neg else value


@_builtin("range", var=_Param("params", "number"))
def _fn_range(*args: Number) -> Value:
    start: Number
    end: Number
    step: Number
    if len(args) == 1:
        start, end, step = 0, args[0], (-1 if args[0] < 0 else 1)
    elif len(args) == 2:
        start, end = args
        step = -1 if end < start else 1
    elif len(args) == 3:
        start, end, step = args
    else:
        raise _fail("must have one, two, or three arguments")
    if step == 0:
        raise _ArgError(2, "step must not be zero")
    down = step < 0
    if down and end > start:
        raise _ArgError(1, "end must be less than start when step is negative")
    if not down and end < start:
        raise _ArgError(1, "end must be greater than start when step is positive")
    vals: List[Number] = []
    num: Number = start
    while not ((down and num <= end) or (not down and num >= end)):
        if len(vals) >= 1024:
            raise _fail(
                "more than 1024 values were generated; either decrease the difference "
                "between start and end or use a smaller step"
            )
        vals.append(num)
        num = _arith("+", num, step)
    return vals


# ---------------------------------------------------------------------------
# Booleans and equality
# ---------------------------------------------------------------------------


@_builtin("and", _Param("a", "bool"), _Param("b", "bool"))
def _fn_and(a: bool, b: bool) -> Value:
    return a and b


@_builtin("or", _Param("a", "bool"), _Param("b", "bool"))
def _fn_or(a: bool, b: bool) -> Value:
    return a or b


@_builtin("not", _Param("val", "bool"))
def _fn_not(v: bool) -> Value:
    return not v


@_builtin("equal", _Param("a", "any", True), _Param("b", "any", True))
def _fn_equal(a: Value, b: Value) -> Value:
    return equal(a, b)


@_builtin("notequal", _Param("a", "any", True), _Param("b", "any", True))
def _fn_notequal(a: Value, b: Value) -> Value:
    return not equal(a, b)


def _unify_values(vals: Sequence[Value]) -> List[Value]:
    kinds = {type_name(v) for v in vals} - {"null"}
    if len(kinds) <= 1:
        return list(vals)
    prims = {"string", "number", "bool"}
    if kinds <= prims and "string" in kinds:
        return [None if v is None else _convert(v, "string") for v in vals]
    if kinds <= {"tuple"} or kinds <= {"object"}:
        return list(vals)
    raise _fail("all arguments must have the same type")


@_builtin("coalesce", var=_Param("vals", "any", allow_null=True))
def _fn_coalesce(*vals: Value) -> Value:
    vals2 = _unify_values(vals)
    for v in vals2:
        if v is not None:
            return v
    raise _fail("no non-null arguments")


# ---------------------------------------------------------------------------
# Strings
# ---------------------------------------------------------------------------


@_builtin("upper", _Param("str", "string"))
def _fn_upper(s: str) -> Value:
    return _go_upper(s)


@_builtin("lower", _Param("str", "string"))
def _fn_lower(s: str) -> Value:
    return _go_lower(s)


@_builtin("title", _Param("str", "string"))
def _fn_title(s: str) -> Value:
    return _go_title(s)


@_builtin("reverse", _Param("str", "string"))
def _fn_reverse(s: str) -> Value:
    return "".join(reversed(_graphemes(s)))


@_builtin("strlen", _Param("str", "string"))
def _fn_strlen(s: str) -> Value:
    return len(_graphemes(s))


@_builtin("substr", _Param("str", "string"), _Param("offset", "number"), _Param("length", "number"))
def _fn_substr(s: str, offset: Number, length: Number) -> Value:
    off = _to_int(offset)
    ln = _to_int(length)
    clusters = _graphemes(s)
    if off < 0:
        off += len(clusters)
    elif ln == 0:
        return ""
    sub = clusters[off:] if off > 0 else clusters
    if ln < 0:
        return "".join(sub)
    if ln == 0:
        # go-cty only stops when the count reaches the length, which never
        # happens for a zero length reached through a negative offset.
        return "".join(sub)
    return "".join(sub[:ln])


@_builtin("join", _Param("separator", "string"), var=_Param("lists", ("list", "string")))
def _fn_join(sep: str, *lists: List[Optional[str]]) -> Value:
    if not lists:
        raise _fail("at least one list is required")
    items: List[str] = []
    for ai, lst in enumerate(lists):
        for ei, v in enumerate(lst):
            if v is None:
                if len(lists) > 1:
                    raise _ArgError(
                        ai + 1,
                        f"element {ei} of list {ai + 1} is null; cannot concatenate null values",
                    )
                raise _ArgError(ai + 1, f"element {ei} is null; cannot concatenate null values")
            items.append(v)
    return sep.join(items)


@_builtin("split", _Param("separator", "string"), _Param("str", "string"))
def _fn_split(sep: str, s: str) -> Value:
    if sep == "":
        return list(s)
    return s.split(sep)


@_builtin("sort", _Param("list", ("list", "string")))
def _fn_sort(lst: List[Optional[str]]) -> Value:
    for i, v in enumerate(lst):
        if v is None:
            raise _fail(f"given list element {i} is null; a null string cannot be sorted")
    return sorted(lst, key=lambda x: x.encode("utf-8") if x is not None else b"")


@_builtin("chomp", _Param("str", "string"))
def _fn_chomp(s: str) -> Value:
    return s.rstrip("\r\n")


@_builtin("indent", _Param("spaces", "number"), _Param("str", "string"))
def _fn_indent(spaces: Number, s: str) -> Value:
    n = _to_int(spaces)
    if n < 0:
        raise _fail("strings: negative Repeat count")
    return s.replace("\n", "\n" + " " * n)


@_builtin("trimspace", _Param("str", "string"))
def _fn_trimspace(s: str) -> Value:
    return _go_trim_space(s)


@_builtin("trim", _Param("str", "string"), _Param("cutset", "string"))
def _fn_trim(s: str, cutset: str) -> Value:
    return s.strip(cutset) if cutset else s


@_builtin("trimprefix", _Param("str", "string"), _Param("prefix", "string"))
def _fn_trimprefix(s: str, prefix: str) -> Value:
    return s[len(prefix) :] if prefix and s.startswith(prefix) else s


@_builtin("trimsuffix", _Param("str", "string"), _Param("suffix", "string"))
def _fn_trimsuffix(s: str, suffix: str) -> Value:
    return s[: -len(suffix)] if suffix and s.endswith(suffix) else s


@_builtin(
    "replace", _Param("str", "string"), _Param("substr", "string"), _Param("replace", "string")
)
def _fn_replace(s: str, sub: str, rep: str) -> Value:
    return s.replace(sub, rep)


@_builtin("sanitize", _Param("name", "string"))
def _fn_sanitize(s: str) -> Value:
    return "".join(
        c if ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "_-") else "_"
        for c in s
    )


@_builtin("basename", _Param("path", "string"))
def _fn_basename(p: str) -> Value:
    return _go_path_base(p)


@_builtin("dirname", _Param("path", "string"))
def _fn_dirname(p: str) -> Value:
    return _go_path_dir(p)


@_builtin("homedir")
def _fn_homedir() -> Value:
    home = os.path.expanduser("~")
    if home == "~" or not home:
        raise _fail("unable to determine the home directory")
    return home


# ---------------------------------------------------------------------------
# Regular expressions (Go RE2 syntax translated to Python's re)
# ---------------------------------------------------------------------------

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}

_LETTER_RANGES = (
    "A-Za-z\\u00aa\\u00b5\\u00ba\\u00c0-\\u00d6\\u00d8-\\u00f6\\u00f8-\\u02c1"
    "\\u0370-\\u03ff\\u0400-\\u0481\\u048a-\\u052f\\u0531-\\u0556\\u0561-\\u0587"
    "\\u05d0-\\u05ea\\u0620-\\u064a\\u0904-\\u0939\\u1e00-\\u1fbc\\u3041-\\u3096"
    "\\u30a1-\\u30fa\\u4e00-\\u9fff\\uac00-\\ud7a3"
)

# \p{…} classes we can express in Python (approximately, for letters)
_UNICODE_CLASSES = {"L": _LETTER_RANGES, "Letter": _LETTER_RANGES, "N": "0-9", "Nd": "0-9"}


class _RegexError(Exception):
    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"{code} in {expr}")
        self.code = code
        self.expr = expr


_FLAG_GROUP = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")


def _translate_re2(pattern: str, top: bool = True) -> str:
    """Translate the RE2 syntax Go accepts into an equivalent Python pattern.

    Go's ``$`` (without ``m``) matches only at the very end, ``\\z`` is Python's
    ``\\Z``, ``(?i)`` may appear anywhere (it applies to the rest of its
    group), POSIX classes ``[[:alpha:]]`` and ``\\pL`` exist, and look-arounds
    and backreferences do not.
    """
    multiline = bool(re.search(r"\(\?[a-zA-Z]*m[a-zA-Z]*[-:)]", pattern))
    out: List[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise _RegexError("trailing backslash at end of expression", "")
            d = pattern[i + 1]
            if d in "123456789" and not in_class:
                raise _RegexError("invalid escape sequence", pattern[i : i + 2])
            if d == "z" and not in_class:
                out.append("\\Z")
                i += 2
                continue
            if (d in "ZbB" and in_class) or d == "Z":
                raise _RegexError("invalid escape sequence", pattern[i : i + 2])
            if d == "x" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.find("}", i + 3)
                hexd = pattern[i + 3 : end] if end > 0 else ""
                if not hexd or not re.fullmatch(r"[0-9A-Fa-f]+", hexd) or int(hexd, 16) > 0x10FFFF:
                    raise _RegexError(
                        "invalid escape sequence", pattern[i : (end + 1 if end > 0 else n)]
                    )
                out.append(re.escape(chr(int(hexd, 16))))
                i = end + 1
                continue
            if d in "pP":
                neg = d == "P"
                if i + 2 < n and pattern[i + 2] == "{":
                    end = pattern.find("}", i + 3)
                    if end < 0:
                        raise _RegexError("invalid character class range", pattern[i:])
                    name = pattern[i + 3 : end]
                    consumed = end + 1 - i
                else:
                    name = pattern[i + 2 : i + 3]
                    consumed = 3
                if name.startswith("^"):
                    neg, name = not neg, name[1:]
                ranges = _UNICODE_CLASSES.get(name)
                if ranges is None or (neg and in_class):
                    raise _RegexError("invalid character class range", pattern[i : i + consumed])
                if in_class:
                    out.append(ranges)
                else:
                    out.append(("[^" if neg else "[") + ranges + "]")
                i += consumed
                continue
            if d == "Q":
                end = pattern.find("\\E", i + 2)
                lit = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(lit))
                i = n if end < 0 else end + 2
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                if end > 0:
                    name = pattern[i + 2 : end]
                    if name not in _POSIX_CLASSES:
                        raise _RegexError("invalid character class range", pattern[i : end + 2])
                    out.append(_POSIX_CLASSES[name])
                    i = end + 2
                    continue
            if c == "[":
                out.append("\\[")
                i += 1
                continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            if rest.startswith(("P<", "<")):
                j = i + (4 if rest.startswith("P<") else 3)
                end = pattern.find(">", j)
                name = pattern[j:end] if end > 0 else ""
                if end < 0 or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    raise _RegexError(
                        "invalid named capture", pattern[i : (end + 1 if end > 0 else n)]
                    )
                out.append(f"(?P<{name}>")
                i = end + 1
                continue
            m = _FLAG_GROUP.match(pattern, i)
            if not m:
                raise _RegexError("invalid or unsupported Perl syntax", pattern[i : i + 3])
            on, off, kind = m.group(1), m.group(2) or "", m.group(3)
            if (
                "U" in on + off
                or (m.group(2) is not None and not off)
                or not (on or off or kind == ":")
            ):
                raise _RegexError("invalid or unsupported Perl syntax", m.group(0))
            i = m.end()
            if kind == ":":
                out.append(f"(?{on}-{off}:" if off else f"(?{on}:")
                continue
            if top and not out and not off:
                out.append(f"(?{on})")
                continue
            body = _rest_of_group(pattern, i)
            out.append(f"(?{on}-{off}:" if off else f"(?{on}:")
            out.append(_translate_re2(body, top=False))
            out.append(")")
            i += len(body)
            continue
        if c == "$" and not multiline:
            out.append("\\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    if in_class:
        raise _RegexError("missing closing ]", pattern[pattern.rfind("[") :])
    return "".join(out)


def _rest_of_group(pattern: str, start: int) -> str:
    """The text from ``start`` to the end of the enclosing group (exclusive)."""
    depth = 0
    i = start
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return pattern[start:i]
            depth -= 1
        i += 1
    return pattern[start:]


_PY_TO_GO_RE_ERRORS = [
    ("missing ), unterminated subpattern", "missing closing )"),
    ("unbalanced parenthesis", "unexpected )"),
    ("nothing to repeat", "missing argument to repetition operator"),
    ("multiple repeat", "invalid nested repetition operator"),
    ("bad character range", "invalid character class range"),
    ("unterminated character set", "missing closing ]"),
    ("bad escape", "invalid escape sequence"),
]


_RE_CACHE: Dict[str, re.Pattern[str]] = {}


def _compile_re(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern, raising ``_RegexError`` with Go's wording."""
    cached = _RE_CACHE.get(pattern)
    if cached is not None:
        return cached
    py = _translate_re2(pattern)
    try:
        compiled = re.compile(py, re.ASCII)
    except re.error as e:
        code = "invalid regexp"
        for py_msg, go_code in _PY_TO_GO_RE_ERRORS:
            if e.msg.startswith(py_msg):
                code = go_code
                break
        expr = pattern
        if code == "missing argument to repetition operator" and e.pos is not None:
            expr = pattern[e.pos : e.pos + 1] if e.pos < len(pattern) else pattern
        raise _RegexError(code, expr) from None
    if len(_RE_CACHE) > 256:
        _RE_CACHE.clear()
    _RE_CACHE[pattern] = compiled
    return compiled


def _regex_result_kind(rx: re.Pattern[str]) -> str:
    names = set(rx.groupindex.values())
    if rx.groups == 0:
        return "string"
    if names and len(names) != rx.groups:
        raise _ArgError(
            0, "invalid regexp pattern: cannot mix both named and unnamed capture groups"
        )
    return "object" if names else "tuple"


def _compile_pattern_arg(pattern: str) -> re.Pattern[str]:
    try:
        return _compile_re(pattern)
    except _RegexError as e:
        raise _ArgError(0, f"invalid regexp pattern: {e.code} in {e.expr}") from None


def _regex_result(rx: re.Pattern[str], m: re.Match[str], kind: str) -> Value:
    if kind == "string":
        return m.group(0)
    if kind == "tuple":
        return list(m.groups())
    return {name: m.group(name) for name in rx.groupindex}


def _go_finditer(rx: re.Pattern[str], s: str) -> List[re.Match[str]]:
    """All matches as Go's FindAll: an empty match right after a match is skipped."""
    out: List[re.Match[str]] = []
    prev_end = -1
    for m in rx.finditer(s):
        if m.start() == m.end() and m.start() == prev_end:
            continue
        out.append(m)
        prev_end = m.end()
    return out


@_builtin("regex", _Param("pattern", "string"), _Param("string", "string"))
def _fn_regex(pattern: str, s: str) -> Value:
    rx = _compile_pattern_arg(pattern)
    kind = _regex_result_kind(rx)
    m = rx.search(s)
    if m is None:
        raise _fail("pattern did not match any part of the given string")
    return _regex_result(rx, m, kind)


@_builtin("regexall", _Param("pattern", "string"), _Param("string", "string"))
def _fn_regexall(pattern: str, s: str) -> Value:
    rx = _compile_pattern_arg(pattern)
    kind = _regex_result_kind(rx)
    return [_regex_result(rx, m, kind) for m in _go_finditer(rx, s)]


def _expand_go_template(template: str, rx: re.Pattern[str], m: re.Match[str]) -> str:
    """Go's Regexp.Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out: List[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if i + 1 < n and template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        name = None
        if i + 1 < n and template[i + 1] == "{":
            end = template.find("}", i + 2)
            cand = template[i + 2 : end] if end > 0 else ""
            if end > 0 and cand and re.fullmatch(r"[A-Za-z0-9_]+", cand):
                name, i = cand, end + 1
        else:
            mm = re.match(r"[A-Za-z0-9_]+", template[i + 1 :])
            if mm:
                name, i = mm.group(0), i + 1 + mm.end()
        if name is None:
            out.append("$")
            i += 1
            continue
        val: Optional[str] = None
        if name.isdigit():
            idx = int(name)
            if idx <= rx.groups:
                val = m.group(idx)
        elif name in rx.groupindex:
            val = m.group(name)
        out.append(val or "")
    return "".join(out)


@_builtin(
    "regex_replace",
    _Param("str", "string"),
    _Param("substr", "string"),
    _Param("replace", "string"),
)
def _fn_regex_replace(s: str, pattern: str, rep: str) -> Value:
    try:
        rx = _compile_re(pattern)
    except _RegexError as e:
        raise _fail(f"error parsing regexp: {e.code}: `{e.expr}`") from None
    out: List[str] = []
    last = 0
    for m in _go_finditer(rx, s):
        out.append(s[last : m.start()])
        out.append(_expand_go_template(rep, rx, m))
        last = m.end()
    out.append(s[last:])
    return "".join(out)


# ---------------------------------------------------------------------------
# Collections
# ---------------------------------------------------------------------------


def _is_seq(v: Value) -> bool:
    return isinstance(v, (list, tuple))


@_builtin("length", _Param("collection", "any"))
def _fn_length(c: Value) -> Value:
    if isinstance(c, (list, tuple, Mapping)):
        return len(c)
    raise _fail("collection must be a list, a map or a tuple")


@_builtin("hasindex", _Param("collection", "any"), _Param("key", "any"))
def _fn_hasindex(c: Value, key: Value) -> Value:
    if _is_seq(c):
        if not is_number(key):
            return False
        if isinstance(key, float) and not key.is_integer():
            return False
        return 0 <= key < len(c)
    if isinstance(c, Mapping):
        return isinstance(key, str) and key in c
    raise _fail("collection must be a list, a map or a tuple")


@_builtin("index", _Param("collection", "any"), _Param("key", "any"))
def _fn_index(c: Value, key: Value) -> Value:
    if _is_seq(c):
        if not is_number(key):
            raise _fail("key for tuple must be number")
        idx = _to_int(key, "invalid key for tuple: ")
        if idx >= len(c) or idx < 0:
            raise _fail(f"key must be between 0 and {len(c)} inclusive")
        return c[idx]
    if isinstance(c, Mapping):
        if not isinstance(key, str):
            raise _fail("key for map must be string")
        if key not in c:
            raise _fail("invalid index")
        return c[key]
    raise _fail("collection must be a list, a map or a tuple")


@_builtin("indexof", _Param("list", "any"), _Param("value", "any"))
def _fn_indexof(lst: Value, value: Value) -> Value:
    if not _is_seq(lst):
        raise _fail("argument must be a list or tuple")
    if not lst:
        raise _fail("cannot search an empty list")
    for i, v in enumerate(lst):
        if equal(v, value):
            return i
    raise _fail("item not found")


@_builtin("element", _Param("list", "any"), _Param("index", "number"))
def _fn_element(lst: Value, index: Number) -> Value:
    if index < 0:
        raise _fail("cannot use element function with a negative index")
    if not _is_seq(lst):
        raise _fail(f"cannot read elements from {type_name(lst)}")
    idx = _to_int(index, "invalid index: ")
    if not lst:
        raise _fail("cannot use element function with an empty list")
    return lst[idx % len(lst)]


@_builtin("coalescelist", var=_Param("vals", "any", allow_null=True))
def _fn_coalescelist(*vals: Value) -> Value:
    if not vals:
        raise _fail("at least one argument is required")
    for v in vals:
        if v is not None and not _is_seq(v):
            raise _fail("coalescelist arguments must be lists or tuples")
    for v in vals:
        if v is not None and len(v) > 0:
            return list(v)
    raise _fail("no non-null arguments")


@_builtin("compact", _Param("list", ("list", "string")))
def _fn_compact(lst: List[Optional[str]]) -> Value:
    return [v for v in lst if v]


@_builtin("concat", var=_Param("seqs", "any"))
def _fn_concat(*seqs: Value) -> Value:
    if not seqs:
        raise _fail("at least one argument is required")
    out: List[Value] = []
    for i, s in enumerate(seqs):
        if not _is_seq(s):
            raise _ArgError(i, f"all arguments must be lists or tuples; got {type_name(s)}")
        out.extend(s)
    return out


@_builtin("contains", _Param("list", "any"), _Param("value", "any"))
def _fn_contains(lst: Value, value: Value) -> Value:
    if not _is_seq(lst):
        raise _fail("argument must be list, tuple, or set")
    return any(equal(value, v) for v in lst)


@_builtin("distinct", _Param("list", ("list", "any")))
def _fn_distinct(lst: List[Value]) -> Value:
    out: List[Value] = []
    for v in lst:
        if not any(equal(o, v) for o in out):
            out.append(v)
    return out


@_builtin("chunklist", _Param("list", ("list", "any")), _Param("size", "number"))
def _fn_chunklist(lst: List[Value], size: Number) -> Value:
    n = _to_int(size, "invalid size: ")
    if n < 0:
        raise _fail("the size argument must be positive")
    if not lst:
        return []
    if n == 0:
        return [list(lst)]
    return [list(lst[i : i + n]) for i in range(0, len(lst), n)]


def _flatten(v: Sequence[Value]) -> List[Value]:
    out: List[Value] = []
    for e in v:
        if _is_seq(e):
            out.extend(_flatten(e))
        else:
            out.append(e)
    return out


@_builtin("flatten", _Param("list", "any"))
def _fn_flatten(lst: Value) -> Value:
    if not _is_seq(lst):
        raise _fail("can only flatten lists, sets and tuples")
    return _flatten(lst)


@_builtin("keys", _Param("inputMap", "any"))
def _fn_keys(m: Value) -> Value:
    if not isinstance(m, Mapping):
        raise _ArgError(0, "must have map or object type")
    return sorted(m.keys())


@_builtin("values", _Param("values", "any"))
def _fn_values(m: Value) -> Value:
    if not isinstance(m, Mapping):
        raise _fail("values() requires a map as the first argument")
    return [m[k] for k in sorted(m.keys())]


@_builtin("lookup", _Param("inputMap", "any"), _Param("key", "string"), _Param("default", "any"))
def _fn_lookup(m: Value, key: str, default: Value) -> Value:
    if not isinstance(m, Mapping):
        raise _ArgError(0, "lookup() requires a map as the first argument")
    if key in m:
        return m[key]
    return default


@_builtin("merge", var=_Param("maps", "any", allow_null=True))
def _fn_merge(*maps: Value) -> Value:
    for m in maps:
        if m is not None and not isinstance(m, Mapping):
            raise _fail(f'arguments must be maps or objects, got "{type_name(m)}"')
    out: Dict[str, Value] = {}
    for m in maps:
        if m is None:
            continue
        for k, v in m.items():
            out[k] = v
    return out


@_builtin("reverselist", _Param("list", "any"))
def _fn_reverselist(lst: Value) -> Value:
    if not _is_seq(lst):
        raise _ArgError(0, f"can only reverse list or tuple values, not {type_name(lst)}")
    return list(reversed(lst))


@_builtin(
    "slice", _Param("list", "any"), _Param("start_index", "number"), _Param("end_index", "number")
)
def _fn_slice(lst: Value, start: Number, end: Number) -> Value:
    if not _is_seq(lst):
        raise _ArgError(0, "must be a list or tuple value")
    length = len(lst)
    try:
        s = _to_int(start)
    except _CallError as e:
        raise _ArgError(1, f"invalid start index: {e}") from None
    if s < 0:
        raise _ArgError(1, "start index must not be less than zero")
    if s > length:
        raise _ArgError(1, "start index must not be greater than the length of the list")
    try:
        e_ = _to_int(end)
    except _CallError as e:
        raise _ArgError(2, f"invalid end index: {e}") from None
    if e_ < 0:
        raise _ArgError(2, "end index must not be less than zero")
    if e_ > length:
        raise _ArgError(2, "end index must not be greater than the length of the list")
    if s > e_:
        raise _ArgError(1, "start index must not be greater than end index")
    return list(lst[s:e_])


@_builtin("zipmap", _Param("keys", ("list", "string")), _Param("values", "any"))
def _fn_zipmap(keys: List[Optional[str]], vals: Value) -> Value:
    if not _is_seq(vals):
        raise _fail("values argument must be a list or tuple value")
    if len(keys) != len(vals):
        raise _fail(f"number of keys ({len(keys)}) does not match number of values ({len(vals)})")
    out: Dict[str, Value] = {}
    for i, k in enumerate(keys):
        if k is None:
            raise _fail(f"keys list has null value at index {i}")
        out[k] = vals[i]
    return out


# --- sets -------------------------------------------------------------------


def _set_args(sets: Sequence[List[Value]]) -> List[List[Value]]:
    # unify element types across all the sets, skipping empty ones
    flat = [e for s in sets for e in s]
    try:
        unified = _unify(flat, "set")
    except _ConvError:
        raise _fail("given sets must all have compatible element types") from None
    out: List[List[Value]] = []
    pos = 0
    for s in sets:
        out.append(_make_set(unified[pos : pos + len(s)]))
        pos += len(s)
    return out


def _set_member(v: Value, s: Sequence[Value]) -> bool:
    return any(equal(v, o) for o in s)


@_builtin("sethaselement", _Param("set", ("set", "any")), _Param("elem", "any"))
def _fn_sethaselement(s: List[Value], elem: Value) -> Value:
    return _set_member(elem, s)


@_builtin("setunion", _Param("first_set", ("set", "any")), var=_Param("other_sets", ("set", "any")))
def _fn_setunion(*sets: List[Value]) -> Value:
    all_sets = _set_args(sets)
    return _make_set([e for s in all_sets for e in s])


@_builtin(
    "setintersection", _Param("first_set", ("set", "any")), var=_Param("other_sets", ("set", "any"))
)
def _fn_setintersection(*sets: List[Value]) -> Value:
    all_sets = _set_args(sets)
    result = all_sets[0]
    for s in all_sets[1:]:
        result = [e for e in result if _set_member(e, s)]
    return _make_set(result)


@_builtin("setsubtract", _Param("a", ("set", "any")), _Param("b", ("set", "any")))
def _fn_setsubtract(a: List[Value], b: List[Value]) -> Value:
    sa, sb = _set_args([a, b])
    return _make_set([e for e in sa if not _set_member(e, sb)])


@_builtin(
    "setsymmetricdifference",
    _Param("first_set", ("set", "any")),
    var=_Param("other_sets", ("set", "any")),
)
def _fn_setsymdiff(*sets: List[Value]) -> Value:
    all_sets = _set_args(sets)
    result = all_sets[0]
    for s in all_sets[1:]:
        result = [e for e in result if not _set_member(e, s)] + [
            e for e in s if not _set_member(e, result)
        ]
    return _make_set(result)


@_builtin("setproduct", var=_Param("sets", "any"))
def _fn_setproduct(*sets: Value) -> Value:
    if len(sets) < 2:
        raise _fail("at least two arguments are required")
    lists: List[List[Value]] = []
    for i, s in enumerate(sets):
        if not _is_seq(s):
            raise _ArgError(i, "a set or a list is required")
        try:
            lists.append(_unify(s, "list"))
        except _ConvError:
            raise _ArgError(i, "all elements must be of the same type") from None
    result: List[List[Value]] = [[]]
    for lst in lists:
        result = [[*prefix, e] for prefix in result for e in lst]
    return result


# ---------------------------------------------------------------------------
# Encoding, hashing, JSON, CSV
# ---------------------------------------------------------------------------


@_builtin("base64encode", _Param("str", "string"))
def _fn_base64encode(s: str) -> Value:
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


@_builtin("base64decode", _Param("str", "string"))
def _fn_base64decode(s: str) -> Value:
    try:
        raw = base64.b64decode(s.replace("\r", "").replace("\n", ""), validate=True)
    except (ValueError, TypeError):
        raise _fail(f"failed to decode base64 data '{s}'") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("the result of decoding the the provided string is not valid UTF-8") from None


@_builtin("urlencode", _Param("str", "string"))
def _fn_urlencode(s: str) -> Value:
    return urllib.parse.quote_plus(s, safe="")


@_builtin("md5", _Param("str", "string"))
def _fn_md5(s: str) -> Value:
    return hashlib.md5(s.encode("utf-8")).hexdigest()


@_builtin("sha1", _Param("str", "string"))
def _fn_sha1(s: str) -> Value:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


@_builtin("sha256", _Param("str", "string"))
def _fn_sha256(s: str) -> Value:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


@_builtin("sha512", _Param("str", "string"))
def _fn_sha512(s: str) -> Value:
    return hashlib.sha512(s.encode("utf-8")).hexdigest()


@_builtin("byteslen", _Param("buf", "string"))
def _fn_byteslen(s: str) -> Value:
    return len(s.encode("utf-8"))


@_builtin(
    "bytesslice", _Param("buf", "string"), _Param("offset", "number"), _Param("length", "number")
)
def _fn_bytesslice(s: str, offset: Number, length: Number) -> Value:
    buf = s.encode("utf-8")
    off, ln = _to_int(offset), _to_int(length)
    if off < 0 or ln < 0:
        raise _fail("offset and length must be non-negative")
    if off > len(buf):
        raise _fail(f"offset {off} is greater than total buffer length {len(buf)}")
    if off + ln > len(buf):
        raise _fail(f"offset {off} + length {ln} is greater than total buffer length {len(buf)}")
    return buf[off : off + ln].decode("utf-8", errors="replace")


@_builtin("jsonencode", _Param("val", "any", allow_null=True))
def _fn_jsonencode(v: Value) -> Value:
    return _json_encode(v)


@_builtin("jsondecode", _Param("str", "string"))
def _fn_jsondecode(s: str) -> Value:
    try:
        return json.loads(
            s,
            parse_float=_json_number,
            parse_int=_json_number,
            parse_constant=_json_constant,
        )
    except ValueError as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        if isinstance(e, json.JSONDecodeError) and e.pos >= len(s.rstrip()):
            msg = "unexpected end of JSON input"
        raise _fail(msg[:1].lower() + msg[1:]) from None


def _go_csv_read(text: str) -> List[Tuple[int, List[str]]]:
    """encoding/csv's Reader (comma ',', no lazy quotes): ``(line, fields)`` records."""
    records: List[Tuple[int, List[str]]] = []
    text = text.replace("\r\n", "\n")
    i, n = 0, len(text)
    line = 1
    while i < n:
        if text[i] == "\n":  # empty lines are skipped
            i += 1
            line += 1
            continue
        rec_line = line
        fields: List[str] = []
        while True:
            if i < n and text[i] == '"':
                i += 1
                buf: List[str] = []
                while True:
                    if i >= n:
                        raise _fail(
                            f'CSV parse error on line {line}: extraneous or missing " in quoted-field'
                        )
                    c = text[i]
                    if c == '"':
                        if i + 1 < n and text[i + 1] == '"':
                            buf.append('"')
                            i += 2
                            continue
                        i += 1
                        if i < n and text[i] not in ",\n":
                            raise _fail(
                                f'CSV parse error on line {line}: extraneous or missing " in quoted-field'
                            )
                        break
                    if c == "\n":
                        line += 1
                    buf.append(c)
                    i += 1
                fields.append("".join(buf))
            else:
                j = i
                while j < n and text[j] not in ",\n":
                    if text[j] == '"':
                        raise _fail(f'CSV parse error on line {line}: bare " in non-quoted-field')
                    j += 1
                fields.append(text[i:j])
                i = j
            if i < n and text[i] == ",":
                i += 1
                continue
            if i < n and text[i] == "\n":
                i += 1
                line += 1
            break
        records.append((rec_line, fields))
    return records


@_builtin("csvdecode", _Param("str", "string"))
def _fn_csvdecode(s: str) -> Value:
    records = _go_csv_read(s)
    if not records:
        raise _fail("missing header line")
    headers = records[0][1]
    seen = set()
    for h in headers:
        if h in seen:
            raise _fail(f"duplicate column name {_go_quote(h)}")
        seen.add(h)
    rows = []
    for line, fields in records[1:]:
        if len(fields) != len(headers):
            raise _fail(f"CSV parse error on line {line}: wrong number of fields")
        rows.append(dict(zip(headers, fields)))
    return rows


# ---------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------


class _GoTimeParseError(Exception):
    def __init__(self, value: str, layout_elem: str, value_elem: str, message: str) -> None:
        super().__init__(message)
        self.value = value
        self.layout_elem = layout_elem
        self.value_elem = value_elem
        self.message = message

    def go_error(self) -> str:
        layout = "2006-01-02T15:04:05Z07:00"
        if self.message:
            return f"parsing time {_go_quote(self.value)}{self.message}"
        return (
            f"parsing time {_go_quote(self.value)} as {_go_quote(layout)}: cannot parse "
            f"{_go_quote(self.value_elem)} as {_go_quote(self.layout_elem)}"
        )

    def cty_error(self) -> str:
        if self.layout_elem == "" and self.value_elem == "" and self.message:
            return f"not a valid RFC3339 timestamp{self.message}"
        what = {
            "2006": "year",
            "01": "month",
            "02": "day of month",
            "15": "hour",
            "04": "minute",
            "05": "second",
            "Z07:00": "UTC offset",
        }.get(self.layout_elem)
        if self.layout_elem == "T":
            return "not a valid RFC3339 timestamp: missing required time introducer 'T'"
        if self.layout_elem in (":", "-"):
            if self.value_elem == "":
                return (
                    "not a valid RFC3339 timestamp: end of string where "
                    f"{_go_quote(self.layout_elem)} is expected"
                )
            return (
                f"not a valid RFC3339 timestamp: found {_go_quote(self.value_elem)} where "
                f"{_go_quote(self.layout_elem)} is expected"
            )
        if what is None:
            what = "timestamp segment"
        if self.value_elem == "":
            return f"not a valid RFC3339 timestamp: end of string before {what}"
        return f"not a valid RFC3339 timestamp: cannot use {_go_quote(self.value_elem)} as {what}"


class _Time:
    """A point in time: nanoseconds since the Unix epoch plus a UTC offset."""

    __slots__ = ("nanos", "offset")

    def __init__(self, nanos: int, offset: int) -> None:
        self.nanos = nanos
        self.offset = offset

    def local(self) -> _dt.datetime:
        secs = self.nanos // 1_000_000_000 + self.offset
        return _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=secs)

    def rfc3339(self) -> str:
        return self.local().strftime("%Y-%m-%dT%H:%M:%S") + _zone(self.offset, True, True)


def _zone(offset: int, colon: bool, z_for_utc: bool) -> str:
    if offset == 0 and z_for_utc:
        return "Z"
    sign = "-" if offset < 0 else "+"
    h, m = divmod(abs(offset) // 60, 60)
    return f"{sign}{h:02d}:{m:02d}" if colon else f"{sign}{h:02d}{m:02d}"


def _getnum(value: str, fixed: bool) -> Tuple[int, str, bool]:
    if not value[:1].isdigit() or not value[:1].isascii():
        return 0, value, False
    if len(value) < 2 or not value[1].isdigit() or not value[1].isascii():
        if fixed:
            return 0, value, False
        return int(value[0]), value[1:], True
    return int(value[:2]), value[2:], True


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _parse_rfc3339(ts: str) -> _Time:
    """Go's ``time.Parse(time.RFC3339, ts)``, with Go's error details."""
    value = ts

    def err(layout_elem: str, val: str, msg: str = "") -> _GoTimeParseError:
        return _GoTimeParseError(ts, layout_elem, val, msg)

    def lit(expected: str) -> None:
        nonlocal value
        if not value.startswith(expected):
            raise err(expected, value)
        value = value[len(expected) :]

    # year
    if len(value) < 4 or not value[:1].isdigit():
        raise err("2006", value)
    p, value = value[:4], value[4:]
    if not (p.isdigit() and p.isascii()):
        raise err("2006", value)
    year = int(p)
    lit("-")
    month, rest, ok = _getnum(value, True)
    if not ok:
        raise err("01", value)
    value = rest
    if month <= 0 or month > 12:
        raise err("01", value, ": month out of range")
    lit("-")
    day, rest, ok = _getnum(value, True)
    if not ok:
        raise err("02", value)
    value = rest
    lit("T")
    hour, rest, ok = _getnum(value, False)
    if not ok:
        raise err("15", value)
    value = rest
    if hour >= 24:
        raise err("15", value, ": hour out of range")
    lit(":")
    minute, rest, ok = _getnum(value, True)
    if not ok:
        raise err("04", value)
    value = rest
    if minute >= 60:
        raise err("04", value, ": minute out of range")
    lit(":")
    second, rest, ok = _getnum(value, True)
    if not ok:
        raise err("05", value)
    value = rest
    if second >= 60:
        raise err("05", value, ": second out of range")
    nanos = 0
    if len(value) >= 2 and value[0] in ".," and value[1].isdigit():
        j = 1
        while j < len(value) and value[j].isdigit():
            j += 1
        frac = value[1:j]
        nanos = int((frac + "000000000")[:9])
        value = value[j:]
    # zone
    if value.startswith("Z"):
        offset = 0
        value = value[1:]
    else:
        if len(value) < 6 or value[3] != ":" or value[0] not in "+-":
            raise err("Z07:00", value)
        hh, _, ok1 = _getnum(value[1:3], True)
        mm, _, ok2 = _getnum(value[4:6], True)
        if not (ok1 and ok2):
            raise err("Z07:00", value)
        if hh > 24 or mm > 60:
            raise err("Z07:00", value[6:], ": time zone offset hour out of range")
        offset = (hh * 3600 + mm * 60) * (-1 if value[0] == "-" else 1)
        value = value[6:]
    if value:
        raise err("", value, ": extra text: " + _go_quote(value))
    if day < 1 or day > _days_in(month, year):
        raise err("", "", ": day out of range")
    base = _dt.datetime(year, month, day, hour, minute, second) - _dt.datetime(1970, 1, 1)
    secs = base.days * 86400 + base.seconds - offset
    return _Time(secs * 1_000_000_000 + nanos, offset)


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _split_date_format(fmt: str) -> List[str]:
    toks: List[str] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "'":
            if i + 1 < n and fmt[i + 1] == "'":
                toks.append("''")
                i += 2
                continue
            j = i + 1
            while j < n:
                if fmt[j] == "'":
                    if j + 1 < n and fmt[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            toks.append(fmt[i : j + 1] if j < n else fmt[i:])
            i = j + 1
        elif c.isascii() and c.isalpha():
            j = i
            while j < n and fmt[j] == c:
                j += 1
            toks.append(fmt[i:j])
            i = j
        else:
            j = i + 1
            while j < n and fmt[j] != "'" and not (fmt[j].isascii() and fmt[j].isalpha()):
                j += 1
            toks.append(fmt[i:j])
            i = j
    return toks


@_builtin("formatdate", _Param("format", "string"), _Param("time", "string"))
def _fn_formatdate(fmt: str, ts: str) -> Value:
    try:
        t = _parse_rfc3339(ts)
    except _GoTimeParseError as e:
        raise _ArgError(1, e.cty_error()) from None
    d = t.local()
    out: List[str] = []
    for tok in _split_date_format(fmt):
        c = tok[0]
        n = len(tok)
        q = _go_quote(tok)
        if c == "'":
            if tok[-1] != "'" or n == 1:
                raise _ArgError(0, "unterminated literal '")
            if n == 2:
                out.append("'")
            else:
                out.append(tok[1:-1].replace("''", "'"))
        elif c.isascii() and c.isalpha():
            if c == "Y":
                if n == 2:
                    out.append(f"{d.year % 100:02d}")
                elif n == 4:
                    out.append(f"{d.year:04d}")
                else:
                    raise _ArgError(
                        0, f'invalid date format verb {q}: year must either be "YY" or "YYYY"'
                    )
            elif c == "M":
                if n == 1:
                    out.append(str(d.month))
                elif n == 2:
                    out.append(f"{d.month:02d}")
                elif n == 3:
                    out.append(_MONTHS[d.month - 1][:3])
                elif n == 4:
                    out.append(_MONTHS[d.month - 1])
                else:
                    raise _ArgError(
                        0,
                        f'invalid date format verb {q}: month must be "M", "MM", "MMM", or "MMMM"',
                    )
            elif c == "D":
                if n == 1:
                    out.append(str(d.day))
                elif n == 2:
                    out.append(f"{d.day:02d}")
                else:
                    raise _ArgError(
                        0, f'invalid date format verb {q}: day of month must either be "D" or "DD"'
                    )
            elif c == "E":
                wd = _WEEKDAYS[(d.weekday() + 1) % 7]
                if n == 3:
                    out.append(wd[:3])
                elif n == 4:
                    out.append(wd)
                else:
                    raise _ArgError(
                        0,
                        f'invalid date format verb {q}: day of week must either be "EEE" or "EEEE"',
                    )
            elif c in "hH":
                h = d.hour
                if c == "H":
                    h = h % 12 or 12
                if n == 1:
                    out.append(str(h))
                elif n == 2:
                    out.append(f"{h:02d}")
                elif c == "h":
                    raise _ArgError(
                        0, f'invalid date format verb {q}: 24-hour must either be "h" or "hh"'
                    )
                else:
                    raise _ArgError(
                        0, f'invalid date format verb {q}: 12-hour must either be "H" or "HH"'
                    )
            elif c in "Aa":
                if n != 2:
                    raise _ArgError(0, f'invalid date format verb {q}: must be "{c}{c}"')
                marker = "AM" if d.hour < 12 else "PM"
                out.append(marker if c == "A" else marker.lower())
            elif c in "ms":
                v = d.minute if c == "m" else d.second
                if n == 1:
                    out.append(str(v))
                elif n == 2:
                    out.append(f"{v:02d}")
                else:
                    what = "minute" if c == "m" else "second"
                    raise _ArgError(
                        0, f'invalid date format verb {q}: {what} must either be "{c}" or "{c}{c}"'
                    )
            elif c == "Z":
                if n == 1:
                    out.append(_zone(t.offset, True, True))
                elif n == 3:
                    z = _zone(t.offset, False, False)
                    out.append("UTC" if z == "+0000" else z)
                elif n == 4:
                    out.append(_zone(t.offset, False, False))
                elif n == 5:
                    out.append(_zone(t.offset, True, False))
                else:
                    raise _ArgError(
                        0, f"invalid date format verb {q}: timezone must be Z, ZZZZ, or ZZZZZ"
                    )
            else:
                raise _ArgError(0, f"invalid date format verb {q}")
        else:
            out.append(tok)
    return "".join(out)


@_builtin("timestamp")
def _fn_timestamp() -> Value:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _parse_duration(s: str) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds."""
    orig = s
    invalid = _fail(f"time: invalid duration {_go_quote(orig)}")
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise invalid
    total = Decimal(0)
    while s:
        m = re.match(r"(\d*)(\.(\d*))?", s)
        assert m is not None
        if not m.group(1) and not m.group(3):
            raise invalid
        num = Decimal((m.group(1) or "0") + "." + (m.group(3) or "0"))
        s = s[m.end() :]
        u = re.match(r"[^0-9.]*", s)
        assert u is not None
        unit = u.group(0)
        s = s[u.end() :]
        if unit == "":
            raise _fail(f"time: missing unit in duration {_go_quote(orig)}")
        if unit not in _DURATION_UNITS:
            raise _fail(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(orig)}")
        total += num * _DURATION_UNITS[unit]
    nanos = int(total)
    if nanos > 2**63 - 1 + (1 if neg else 0):
        raise invalid
    return -nanos if neg else nanos


@_builtin("timeadd", _Param("timestamp", "string"), _Param("duration", "string"))
def _fn_timeadd(ts: str, duration: str) -> Value:
    try:
        t = _parse_rfc3339(ts)
    except _GoTimeParseError as e:
        raise _fail(e.go_error()) from None
    d = _parse_duration(duration)
    return _Time(t.nanos + d, t.offset).rfc3339()


@_builtin("unixtimestampparse", _Param("unix_timestamp", "number"))
def _fn_unixtimestampparse(ts: Number) -> Value:
    secs = _to_int(ts)
    t = _Time(secs * 1_000_000_000, 0)
    d = t.local()
    iso_year, iso_week, _ = d.isocalendar()
    return {
        "year": d.year,
        "year_day": d.timetuple().tm_yday,
        "day": d.day,
        "month": d.month,
        "month_name": _MONTHS[d.month - 1],
        "weekday": (d.weekday() + 1) % 7,
        "weekday_name": _WEEKDAYS[(d.weekday() + 1) % 7],
        "hour": d.hour,
        "minute": d.minute,
        "second": d.second,
        "rfc3339": t.rfc3339(),
        "iso_year": iso_year,
        "iso_week": iso_week,
    }


# ---------------------------------------------------------------------------
# Network addresses (go-cty-funcs cidr, Go's net.ParseCIDR)
# ---------------------------------------------------------------------------


class _Net:
    """A parsed CIDR: the network address as an int, its width and prefix."""

    __slots__ = ("bits", "mapped", "network", "prefix")

    def __init__(self, network: int, bits: int, prefix: int, mapped: bool) -> None:
        self.network = network
        self.bits = bits
        self.prefix = prefix
        self.mapped = mapped  # IPv4 written in IPv6 syntax


def _parse_cidr(s: str) -> _Net:
    import ipaddress

    addr, sep, plen = s.partition("/")
    bad = _fail(f"invalid CIDR expression: invalid CIDR address: {s}")
    if not sep or not plen.isdigit() or not plen.isascii() or "%" in addr:
        raise bad
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise bad from None
    prefix = int(plen)
    if isinstance(ip, ipaddress.IPv4Address):
        bits, value, mapped = 32, int(ip), False
    else:
        bits, value, mapped = 128, int(ip), ip.ipv4_mapped is not None
    if prefix > bits:
        raise bad
    mask = ((1 << prefix) - 1) << (bits - prefix)
    return _Net(value & mask, bits, prefix, mapped)


def _ip_string(value: int, bits: int) -> str:
    import ipaddress

    if bits == 32:
        return str(ipaddress.IPv4Address(value))
    v6 = ipaddress.IPv6Address(value)
    if v6.ipv4_mapped is not None:
        return str(v6.ipv4_mapped)
    return str(v6)


def _net_string(net: _Net, prefix: int) -> str:
    if net.mapped:
        return f"{_ip_string(net.network, 128)}/{max(prefix - 96, 0)}"
    return f"{_ip_string(net.network, net.bits)}/{prefix}"


@_builtin("cidrhost", _Param("prefix", "string"), _Param("hostnum", "number"))
def _fn_cidrhost(prefix: str, hostnum: Number) -> Value:
    num = _to_int(hostnum)
    net = _parse_cidr(prefix)
    host_len = net.bits - net.prefix
    max_host = (1 << host_len) - 1
    value = num
    check = num
    if num < 0:
        check = -num - 1
        value = max_host - check
    if check > max_host:
        raise _fail(f"prefix of {net.prefix} does not accommodate a host numbered {num}")
    return _ip_string(net.network | value, net.bits)


@_builtin("cidrnetmask", _Param("prefix", "string"))
def _fn_cidrnetmask(prefix: str) -> Value:
    net = _parse_cidr(prefix)
    mask = ((1 << net.prefix) - 1) << (net.bits - net.prefix)
    if net.bits == 128:
        import ipaddress

        return str(ipaddress.IPv6Address(mask))
    return _ip_string(mask, 32)


def _subnet(net: _Net, newbits: int, num: int) -> Tuple[int, int]:
    new_prefix = net.prefix + newbits
    if new_prefix > net.bits:
        raise _fail(f"insufficient address space to extend prefix of {net.prefix} by {newbits}")
    if num < 0 or num > (1 << newbits) - 1:
        raise _fail(f"prefix extension of {newbits} does not accommodate a subnet numbered {num}")
    return net.network | (num << (net.bits - new_prefix)), new_prefix


@_builtin(
    "cidrsubnet",
    _Param("prefix", "string"),
    _Param("newbits", "number"),
    _Param("netnum", "number"),
)
def _fn_cidrsubnet(prefix: str, newbits: Number, netnum: Number) -> Value:
    nb = _to_int(newbits)
    nn = _to_int(netnum)
    net = _parse_cidr(prefix)
    if nb > 32:
        raise _fail("may not extend prefix by more than 32 bits")
    value, new_prefix = _subnet(net, nb, nn)
    return _net_string(_Net(value, net.bits, new_prefix, net.mapped), new_prefix)


@_builtin("cidrsubnets", _Param("prefix", "string"), var=_Param("newbits", "number"))
def _fn_cidrsubnets(prefix: str, *newbits: Number) -> Value:
    try:
        net = _parse_cidr(prefix)
    except _CallError as e:
        raise _ArgError(0, str(e)) from None
    if not newbits:
        return []
    lengths = [_to_int_arg(i + 1, nb) for i, nb in enumerate(newbits)]
    total = 1 << net.bits
    # go-cidr's PreviousSubnet: "current" starts just before the first subnet
    first_len = net.prefix + lengths[0]
    first_len = min(max(first_len, 0), net.bits)
    current_start = ((net.network - 1) % total) & ~((1 << (net.bits - first_len)) - 1)
    current_len = first_len
    out = []
    host_mask = (1 << (net.bits - net.prefix)) - 1
    parent_mask = (total - 1) ^ host_mask
    for i, ln in enumerate(lengths):
        if ln < 1:
            raise _ArgError(i + 1, "must extend prefix by at least one bit")
        if ln > 32:
            raise _ArgError(i + 1, "may not extend prefix by more than 32 bits")
        ln += net.prefix
        if ln > net.bits:
            proto = {32: "IPv4", 128: "IPv6"}.get(net.bits, "IP")
            raise _ArgError(
                i + 1, f"would extend prefix to {ln} bits, which is too long for an {proto} address"
            )
        # go-cidr's NextSubnet: the subnet of length ln after the current one
        current_last = current_start + (1 << (net.bits - current_len)) - 1
        size_new = 1 << (net.bits - ln)
        nxt = (current_last & ~(size_new - 1)) + size_new
        if nxt >= total or (nxt & parent_mask) != net.network:
            cur_str = _net_string(
                _Net(current_start, net.bits, current_len, net.mapped), current_len
            )
            raise _ArgError(
                i + 1,
                f"not enough remaining address space for a subnet with a prefix of {ln} bits "
                f"after {cur_str}",
            )
        current_start, current_len = nxt, ln
        out.append(_net_string(_Net(nxt, net.bits, ln, net.mapped), ln))
    return out


# ---------------------------------------------------------------------------
# Crypto and identifiers
# ---------------------------------------------------------------------------


@_builtin("bcrypt", _Param("str", "string"), var=_Param("cost", "number"))
def _fn_bcrypt(s: str, *cost: Number) -> Value:
    c = 10
    if cost:
        c = _to_int(cost[0])
    if len(cost) > 1:
        raise _fail("bcrypt() takes no more than two arguments")
    try:
        import bcrypt as _bcrypt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise _fail('bcrypt needs the Python package "bcrypt", which is not installed') from None
    if c < 4:
        c = 10
    if c > 31:
        raise _fail(
            f"error occured generating password crypto/bcrypt: cost {c} is outside allowed "
            "range (4,31)"
        )
    pw = s.encode("utf-8")
    if len(pw) > 72:
        raise _fail("error occured generating password bcrypt: password length exceeds 72 bytes")
    out = _bcrypt.hashpw(pw, _bcrypt.gensalt(rounds=c, prefix=b"2a"))
    return str(out.decode("ascii"))


def _der_read(buf: bytes, pos: int) -> Tuple[int, bytes, int]:
    """Read one DER TLV at ``pos``: ``(tag, content, next_pos)``."""
    if pos + 2 > len(buf):
        raise ValueError("truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        nbytes = length & 0x7F
        if nbytes == 0 or nbytes > 4 or pos + nbytes > len(buf):
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos : pos + nbytes], "big")
        pos += nbytes
    if pos + length > len(buf):
        raise ValueError("truncated")
    return tag, buf[pos : pos + length], pos + length


def _pem_decode(text: str) -> Optional[Tuple[str, Dict[str, str], bytes]]:
    m = re.search(r"-----BEGIN ([^-\n]*)-----\r?\n(.*?)-----END \1-----", text, re.S)
    if not m:
        return None
    body = m.group(2)
    headers: Dict[str, str] = {}
    lines = body.splitlines()
    if lines and ":" in lines[0]:
        while lines and ":" in lines[0]:
            k, _, v = lines.pop(0).partition(":")
            headers[k.strip()] = v.strip()
        while lines and not lines[0].strip():
            lines.pop(0)
    try:
        data = base64.b64decode("".join(ln.strip() for ln in lines), validate=True)
    except ValueError:
        return None
    return m.group(1), headers, data


@_builtin("rsadecrypt", _Param("ciphertext", "string"), _Param("privatekey", "string"))
def _fn_rsadecrypt(ciphertext: str, key: str) -> Value:
    try:
        b = base64.b64decode(ciphertext, validate=True)
    except ValueError:
        raise _fail(
            f"failed to decode input {_go_quote(ciphertext)}: cipher text must be base64-encoded"
        ) from None
    block = _pem_decode(key)
    if block is None:
        raise _fail("failed to parse key: no key found")
    _, headers, der = block
    if headers.get("Proc-Type") == "4,ENCRYPTED":
        raise _fail(
            "failed to parse key: password protected keys are not supported. Please decrypt "
            "the key prior to use"
        )
    try:
        tag, seq, _ = _der_read(der, 0)
        if tag != 0x30:
            raise ValueError("not a sequence")
        ints: List[int] = []
        pos = 0
        while pos < len(seq) and len(ints) < 9:
            t, content, pos = _der_read(seq, pos)
            if t == 0x30 and len(ints) == 1:
                raise _fail(
                    "x509: failed to parse private key (use ParsePKCS8PrivateKey instead for "
                    "this key format)"
                )
            if t != 0x02:
                raise ValueError("not an integer")
            ints.append(int.from_bytes(content, "big", signed=True))
        if len(ints) < 9:
            raise ValueError("short key")
    except ValueError:
        raise _fail("x509: malformed private key") from None
    _, n, _e, d = ints[0], ints[1], ints[2], ints[3]
    k = (n.bit_length() + 7) // 8
    c = int.from_bytes(b, "big")
    if len(b) > k or c >= n or k < 11:
        raise _fail("crypto/rsa: decryption error")
    em = pow(c, d, n).to_bytes(k, "big")
    if em[0] != 0 or em[1] != 2:
        raise _fail("crypto/rsa: decryption error")
    sep = em.find(b"\x00", 2)
    if sep < 10:
        raise _fail("crypto/rsa: decryption error")
    return em[sep + 1 :].decode("utf-8", errors="replace")


@_builtin("uuidv4")
def _fn_uuidv4() -> Value:
    return str(uuid.uuid4())


@_builtin("uuidv5", _Param("namespace", "string"), _Param("name", "string"))
def _fn_uuidv5(namespace: str, name: str) -> Value:
    named = {
        "dns": uuid.NAMESPACE_DNS,
        "url": uuid.NAMESPACE_URL,
        "oid": uuid.NAMESPACE_OID,
        "x500": uuid.NAMESPACE_X500,
    }
    ns = named.get(namespace)
    if ns is None:
        s = namespace
        ok_len = len(s) in (32, 36, 38, 45)
        try:
            if not ok_len:
                raise ValueError(f"invalid UUID length: {len(s)}")
            if len(s) == 45 and not s.lower().startswith("urn:uuid:"):
                raise ValueError("invalid urn prefix: " + _go_quote(s[:9]))
            if len(s) == 38 and not (s.startswith("{") and s.endswith("}")):
                raise ValueError("invalid UUID format")
            core = s[9:] if len(s) == 45 else s[1:-1] if len(s) == 38 else s
            if len(core) == 36 and (core[8], core[13], core[18], core[23]) != ("-",) * 4:
                raise ValueError("invalid UUID format")
            ns = uuid.UUID(core)
        except ValueError as e:
            msg = str(e)
            if not msg.startswith(("invalid UUID length", "invalid urn prefix")):
                msg = "invalid UUID format"
            raise _fail(f"uuidv5() doesn't support namespace {namespace} ({msg})") from None
    return str(uuid.uuid5(ns, name))


# ---------------------------------------------------------------------------
# Type conversion: convert(value, type)
# ---------------------------------------------------------------------------


@_builtin("convert", _Param("value", "any", True), _Param("type", "string"))
def _fn_convert(value: Value, type_expr: str) -> Value:
    try:
        t = _parse_type(type_expr)
    except ValueError as e:
        raise _ArgError(1, str(e)) from None
    try:
        return _convert(value, t)
    except _ConvError as e:
        raise _ArgError(0, str(e)) from None


# ---------------------------------------------------------------------------
# semvercmp: Masterminds/semver-style constraint check
# ---------------------------------------------------------------------------

_SEMVER_RE = re.compile(
    r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


class _SemVer:
    __slots__ = ("major", "minor", "patch", "pre")

    def __init__(self, major: int, minor: int, patch: int, pre: str) -> None:
        self.major, self.minor, self.patch, self.pre = major, minor, patch, pre

    def key(self) -> Tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def cmp(self, other: _SemVer) -> int:
        if self.key() != other.key():
            return -1 if self.key() < other.key() else 1
        return _cmp_pre(self.pre, other.pre)


def _cmp_pre(a: str, b: str) -> int:
    if a == b:
        return 0
    if not a:
        return 1
    if not b:
        return -1
    pa, pb = a.split("."), b.split(".")
    for x, y in zip(pa, pb):
        if x == y:
            continue
        xd, yd = x.isdigit(), y.isdigit()
        if xd and yd:
            return -1 if int(x) < int(y) else 1
        if xd != yd:
            return -1 if xd else 1
        return -1 if x < y else 1
    return -1 if len(pa) < len(pb) else 1 if len(pa) > len(pb) else 0


def _parse_semver(s: str) -> _SemVer:
    m = _SEMVER_RE.fullmatch(s.strip())
    if not m:
        raise _ArgError(0, "Invalid Semantic Version")
    return _SemVer(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), m.group(4) or "")


_CONSTRAINT_RE = re.compile(
    r"\s*(=|!=|>=|=>|<=|=<|>|<|~>|~|\^)?\s*"
    r"v?((?:\d+|[xX*])(?:\.(?:\d+|[xX*]))?(?:\.(?:\d+|[xX*]))?"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)\s*"
)


def _constraint_check(op: str, ver_text: str, v: _SemVer) -> bool:
    parts = re.match(r"([^.+-]+)(?:\.([^.+-]+))?(?:\.([^.+-]+))?(?:-([^+]+))?", ver_text)
    assert parts is not None
    raw = [parts.group(1), parts.group(2), parts.group(3)]
    pre = parts.group(4) or ""
    wild = [p is None or p in ("x", "X", "*") for p in raw]
    nums = [0 if w else int(p) for p, w in zip(raw, wild)]
    c = _SemVer(nums[0], nums[1], nums[2], pre)
    if v.pre and not pre and op != "!=":
        return False
    if op in ("", "="):
        if wild[0]:
            return True
        if wild[1]:
            return v.major == c.major
        if wild[2]:
            return v.major == c.major and v.minor == c.minor
        return v.cmp(c) == 0
    if op == "!=":
        if wild[0]:
            return False
        if wild[1]:
            return v.major != c.major
        if wild[2]:
            return not (v.major == c.major and v.minor == c.minor)
        return v.cmp(c) != 0
    if op == ">":
        if wild[0]:
            return False
        if wild[1]:
            return v.major > c.major
        if wild[2]:
            return (v.major, v.minor) > (c.major, c.minor)
        return v.cmp(c) > 0
    if op in (">=", "=>"):
        return wild[0] or v.cmp(c) >= 0
    if op == "<":
        if wild[0]:
            return False
        return v.cmp(c) < 0
    if op in ("<=", "=<"):
        if wild[0]:
            return True
        if wild[1]:
            return v.major <= c.major
        if wild[2]:
            return (v.major, v.minor) <= (c.major, c.minor)
        return v.cmp(c) <= 0
    if op in ("~", "~>"):
        if v.cmp(c) < 0:
            return False
        if wild[0]:
            return True
        if wild[1]:
            return v.major == c.major
        return v.major == c.major and v.minor == c.minor
    if op == "^":
        if v.cmp(c) < 0:
            return False
        if c.major > 0 or wild[1]:
            return v.major == c.major
        if c.minor > 0 or wild[2]:
            return v.major == 0 and v.minor == c.minor
        return v.major == 0 and v.minor == 0 and v.patch == c.patch
    return False


def _semver_satisfies(v: _SemVer, constraint: str) -> bool:
    for alt in constraint.split("||"):
        alt = alt.strip()
        if not alt:
            raise _ArgError(1, f"improper constraint: {constraint}")
        hyphen = re.fullmatch(r"\s*(\S+)\s+-\s+(\S+)\s*", alt)
        checks: List[Tuple[str, str]] = []
        if hyphen:
            checks = [(">=", hyphen.group(1).lstrip("v")), ("<=", hyphen.group(2).lstrip("v"))]
        else:
            pos = 0
            for piece in re.split(r"\s*,\s*", alt):
                pos = 0
                while pos < len(piece):
                    m = _CONSTRAINT_RE.match(piece, pos)
                    if not m or m.end() == pos:
                        raise _ArgError(1, f"improper constraint: {constraint}")
                    checks.append((m.group(1) or "", m.group(2)))
                    pos = m.end()
        if all(_constraint_check(op, text, v) for op, text in checks):
            return True
    return False


@_builtin("semvercmp", _Param("version", "string"), _Param("constraint", "string"))
def _fn_semvercmp(version: str, constraint: str) -> Value:
    return _semver_satisfies(_parse_semver(version), constraint)
