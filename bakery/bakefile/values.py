"""Values of the bake expression language, with HCL/cty conversion rules.

Values are plain Python data, so that evaluation stays cheap:

=========  ==========================================================
cty type   Python
=========  ==========================================================
string     ``str``
number     ``int`` (integral values) or ``float``; never ``bool``
bool       ``bool``
null       ``None``
list/tuple ``list`` (sets too, deduplicated and ordered)
map/object ``dict`` (any ``collections.abc.Mapping`` is accepted when read)
=========  ==========================================================

Conversions follow go-cty's ``convert`` package: a number or a bool turns into
a string where a string is wanted (``1.50`` → ``"1.5"``, ``true`` →
``"true"``), a string that spells a number or a bool turns back, and anything
else is a :class:`ConvertError` whose message names the expected type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Union

__all__ = [
    "ConvertError",
    "FunctionError",
    "Number",
    "Value",
    "equal",
    "format_number",
    "is_number",
    "norm_number",
    "to_bool",
    "to_number",
    "to_string",
    "type_name",
]

Value = Any
Number = Union[int, float]


class ConvertError(Exception):
    """A value could not be converted; the message has no position (the
    caller that knows the expression adds it)."""


class FunctionError(Exception):
    """A function call failed; raised by built-in and user functions with a
    message and no position (the evaluator adds the call's position)."""


def is_number(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def norm_number(n: Number) -> Number:
    """Integral floats become ints, so that equal numbers print the same."""
    if isinstance(n, float) and n.is_integer() and math.isfinite(n):
        return int(n)
    return n


def type_name(v: Value) -> str:
    """The cty-style name of a value's type, for error messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if is_number(v):
        return "number"
    if isinstance(v, (list, tuple)):
        return "tuple"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def format_number(n: Number) -> str:
    """A number as cty prints it: shortest decimal, never an exponent.

    >>> format_number(1.0), format_number(1.5), format_number(1e21), format_number(1e-7)
    ('1', '1.5', '1000000000000000000000', '0.0000001')
    """
    if isinstance(n, int):
        return str(n)
    if not math.isfinite(n):
        return "+Inf" if n > 0 else ("-Inf" if n < 0 else "NaN")
    if n.is_integer():
        return str(int(n))
    s = format(Decimal(repr(n)), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def to_string(v: Value) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_number(v):
        return format_number(v)
    if v is None:
        raise ConvertError("a null value cannot be used as a string")
    raise ConvertError(f"a string is required, got {type_name(v)}")


def _parse_number(s: str) -> Number:
    t = s.strip()
    if t != s or not t or "_" in t:
        raise ValueError(s)
    low = t.lower()
    if low.lstrip("+-") in ("inf", "infinity", "nan") or low.startswith(("0x", "-0x", "+0x")):
        raise ValueError(s)
    try:
        return int(t, 10)
    except ValueError:
        return norm_number(float(t))


def to_number(v: Value) -> Number:
    if is_number(v):
        return v
    if isinstance(v, str):
        try:
            return _parse_number(v)
        except ValueError:
            raise ConvertError(f'a number is required, got string "{v}"') from None
    if v is None:
        raise ConvertError("a null value cannot be used as a number")
    raise ConvertError(f"a number is required, got {type_name(v)}")


def to_bool(v: Value) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        if v == "true":
            return True
        if v == "false":
            return False
        raise ConvertError(f'a bool is required, got string "{v}"')
    if v is None:
        raise ConvertError("a null value cannot be used as a bool")
    raise ConvertError(f"a bool is required, got {type_name(v)}")


def equal(a: Value, b: Value) -> bool:
    """HCL's ``==``: values of different types are never equal (no conversion)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return False
