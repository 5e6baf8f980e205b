"""Tests for the bake built-in functions.

Expected values come from go-cty's ``cty/function/stdlib/*_test.go``,
hashicorp/go-cty-funcs' tests, buildx's ``bake/hclparser/stdlib_test.go`` and
the buildx bake stdlib reference, unless a comment says otherwise.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import uuid
from typing import Any, List, Tuple

import pytest

from bakery.bakefile.functions import FUNCTIONS, format_value
from bakery.bakefile.values import FunctionError


def call(name: str, *args: Any) -> Any:
    return FUNCTIONS[name](*args)


def _ids(cases: List[Tuple[Any, ...]]) -> List[str]:
    return [f"{c[0]}{c[1]!r}"[:80] for c in cases]


# ---------------------------------------------------------------------------
# The function table
# ---------------------------------------------------------------------------

BUILDX_NAMES = [
    "absolute",
    "add",
    "and",
    "base64decode",
    "base64encode",
    "basename",
    "bcrypt",
    "byteslen",
    "bytesslice",
    "ceil",
    "chomp",
    "chunklist",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "convert",
    "csvdecode",
    "dirname",
    "distinct",
    "divide",
    "element",
    "equal",
    "flatten",
    "floor",
    "format",
    "formatdate",
    "formatlist",
    "greaterthan",
    "greaterthanorequalto",
    "hasindex",
    "homedir",
    "indent",
    "index",
    "indexof",
    "int",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lessthan",
    "lessthanorequalto",
    "log",
    "lookup",
    "lower",
    "max",
    "md5",
    "merge",
    "min",
    "modulo",
    "multiply",
    "negate",
    "not",
    "notequal",
    "or",
    "parseint",
    "pow",
    "range",
    "regex",
    "regex_replace",
    "regexall",
    "replace",
    "reverse",
    "reverselist",
    "rsadecrypt",
    "sanitize",
    "sethaselement",
    "setintersection",
    "setproduct",
    "setsubtract",
    "setsymmetricdifference",
    "setunion",
    "sha1",
    "sha256",
    "sha512",
    "signum",
    "slice",
    "sort",
    "split",
    "strlen",
    "substr",
    "subtract",
    "timeadd",
    "timestamp",
    "title",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "unixtimestampparse",
    "upper",
    "urlencode",
    "uuidv4",
    "uuidv5",
    "values",
    "zipmap",
]


def test_every_buildx_function_is_present() -> None:
    missing = [n for n in BUILDX_NAMES if n not in FUNCTIONS]
    assert missing == []


def test_try_and_can_are_left_to_the_evaluator() -> None:
    assert "try" not in FUNCTIONS
    assert "can" not in FUNCTIONS


def test_functions_are_plain_callables() -> None:
    for name, fn in FUNCTIONS.items():
        assert callable(fn), name
        assert fn.__name__ == name


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

RESULT_CASES: List[Tuple[str, Tuple[Any, ...], Any]] = [
    # --- numbers (go-cty number_test.go, buildx docs) -----------------------
    ("absolute", (-42,), 42),
    ("absolute", (1.5,), 1.5),
    ("absolute", ("-3",), 3),
    ("add", (123, 1), 124),
    ("add", (1, 3.5), 4.5),
    ("add", ("1", 2), 3),
    ("add", (0.1, 0.2), 0.3),  # cty's big floats: exactly 0.3
    ("subtract", (1, 3), -2),
    ("subtract", (1.5, 0.5), 1),
    ("multiply", (6, 7), 42),
    ("multiply", (1.5, 2), 3),
    ("divide", (10, 2), 5),
    ("divide", (10, 4), 2.5),
    ("divide", (1, 0), float("inf")),
    ("divide", (-1, 0), float("-inf")),
    ("modulo", (10, 3), 1),
    ("modulo", (-7, 3), -1),
    ("modulo", (7, -3), 1),
    ("modulo", (7, 0), 7),
    ("modulo", (5.5, 2), 1.5),
    ("negate", (7,), -7),
    ("negate", (-1.5,), 1.5),
    ("greaterthan", (2, 5), False),
    ("greaterthan", (5, 2), True),
    ("greaterthanorequalto", (5, 5), True),
    ("lessthan", (10, 3), False),
    ("lessthanorequalto", (5, 7), True),
    ("lessthan", ("1", "2"), True),
    ("max", (3, 9, 7), 9),
    ("max", ("3", 9.5), 9.5),
    ("min", (3, 9, 7), 3),
    ("min", (-1.5, 2), -1.5),
    ("int", (3.75,), 3),
    ("int", (-3.75,), -3),
    ("int", (7,), 7),
    ("int", ("1.9",), 1),
    ("ceil", (3.14,), 4),
    ("ceil", (-1.5,), -1),
    ("ceil", (5,), 5),
    ("floor", (3.99,), 3),
    ("floor", (-1.5,), -2),
    ("log", (100, 10), 2),
    ("log", (8, 2), 3),
    ("log", (1, 10), 0),
    ("pow", (3, 2), 9),
    ("pow", (2, 0.5), 2**0.5),
    ("pow", (2, -1), 0.5),
    ("pow", (0, 0), 1),
    ("signum", (-42,), -1),
    ("signum", (0,), 0),
    ("signum", (42,), 1),
    ("parseint", ("ff", 16), 255),
    ("parseint", ("FF", 16), 255),
    ("parseint", ("-10", 10), -10),
    ("parseint", ("+10", 10), 10),
    ("parseint", ("11", 2), 3),
    ("parseint", ("zZ", 62), 35 * 62 + 61),
    ("parseint", ("12345678901234567890", 10), 12345678901234567890),
    ("range", (3,), [0, 1, 2]),
    ("range", (-3,), [0, -1, -2]),
    ("range", (0,), []),
    ("range", (1, 4), [1, 2, 3]),
    ("range", (4, 1), [4, 3, 2]),
    ("range", (0, 10, 5), [0, 5]),
    ("range", (0, 1, 0.25), [0, 0.25, 0.5, 0.75]),
    ("range", (0, 1, 0.1), [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    ("range", (1, 0, -0.5), [1, 0.5]),
    # --- booleans and equality ------------------------------------------------
    ("and", (True, False), False),
    ("and", (True, True), True),
    ("and", ("true", "true"), True),
    ("or", (True, False), True),
    ("or", (False, False), False),
    ("not", (True,), False),
    ("not", ("false",), True),
    ("equal", (2, 2), True),
    ("equal", (2, "2"), False),
    ("equal", (None, None), True),
    ("equal", ([1, "a"], [1, "a"]), True),
    ("equal", ({"a": 1}, {"a": 1.0}), True),
    ("notequal", (4, 5), True),
    ("notequal", ("a", "a"), False),
    ("notequal", (None, 1), True),
    # --- coalesce (cty: empty strings are values, not skipped) ---------------
    ("coalesce", (None, "docker"), "docker"),
    ("coalesce", ("first", "second"), "first"),
    ("coalesce", (None, "", "docker"), ""),
    ("coalesce", (1, "a"), "1"),
    ("coalesce", (None, 2), 2),
    ("coalescelist", ([], [1, 2], [3]), [1, 2]),
    ("coalescelist", (None, ["a"]), ["a"]),
    # --- strings --------------------------------------------------------------
    ("upper", ("hello",), "HELLO"),
    ("upper", ("hélló",), "HÉLLÓ"),
    ("upper", ("straße",), "STRAßE"),  # Go maps rune by rune
    ("upper", (5,), "5"),
    ("upper", (True,), "TRUE"),
    ("lower", ("HELLO",), "hello"),
    ("lower", ("HÉLLÓ",), "hélló"),
    ("title", ("hello world",), "Hello World"),
    ("title", ("hello-world foo_bar",), "Hello-World Foo_bar"),
    ("title", ("élan vital",), "Élan Vital"),
    ("reverse", ("stressed",), "desserts"),
    ("reverse", ("",), ""),
    ("reverse", ("héllo",), "olléh"),
    ("reverse", ("he\u0301llo",), "olle\u0301h"),  # combining accent stays on its letter
    ("reverse", ("a💃🏿b",), "b💃🏿a"),
    ("strlen", ("",), 0),
    ("strlen", ("hello",), 5),
    ("strlen", ("Abc\U0001f601",), 4),
    ("strlen", ("e\u0301",), 1),
    ("strlen", ("💃🏿",), 1),
    ("strlen", ("🇬🇧🇫🇷",), 2),
    ("strlen", ("\r\n",), 1),
    ("substr", ("hello world", 1, 4), "ello"),
    ("substr", ("🤔🚀", 0, 1), "🤔"),
    ("substr", ("hello world", -5, -1), "world"),
    ("substr", ("hello world", 0, -1), "hello world"),
    ("substr", ("hello world", 0, 0), ""),
    ("substr", ("hello world", 6, 100), "world"),
    ("substr", ("hello world", 20, 2), ""),
    ("substr", ("hello", -3, 2), "ll"),
    ("substr", ("hello", "1", "2"), "el"),
    ("join", (",", ["a", "b", "c"]), "a,b,c"),
    ("join", ("-", ["a"], ["b", "c"]), "a-b-c"),
    ("join", (",", []), ""),
    ("join", (",", ["a", 1, True]), "a,1,true"),
    ("split", (",", "a,b,c"), ["a", "b", "c"]),
    ("split", (",", ""), [""]),
    ("split", (",", "abc"), ["abc"]),
    ("split", (",", ",,"), ["", "", ""]),
    ("split", ("", "abc"), ["a", "b", "c"]),
    ("sort", (["b", "a", "c"],), ["a", "b", "c"]),
    ("sort", (["b", "a", "B", "10", "9"],), ["10", "9", "B", "a", "b"]),
    ("sort", ([3, 1, 2],), ["1", "2", "3"]),
    ("sort", ([],), []),
    ("chomp", ("hello\n",), "hello"),
    ("chomp", ("hello\r\n",), "hello"),
    ("chomp", ("hello\n\n\r\n",), "hello"),
    ("chomp", ("hello\nworld",), "hello\nworld"),
    ("chomp", ("hello",), "hello"),
    ("indent", (4, "Hello\nWorld"), "Hello\n    World"),
    ("indent", (2, "a\n\nb\n"), "a\n  \n  b\n  "),
    ("indent", (0, "a\nb"), "a\nb"),
    ("trimspace", ("  hello \n\t",), "hello"),
    ("trimspace", ("\u00a0\u2003x\u3000",), "x"),
    ("trimspace", ("",), ""),
    ("trim", ("?!hello?!", "!?"), "hello"),
    ("trim", ("  hello  ", " "), "hello"),
    ("trim", ("foobar", ""), "foobar"),
    ("trimprefix", ("helloworld", "hello"), "world"),
    ("trimprefix", ("helloworld", "world"), "helloworld"),
    ("trimprefix", ("hellohello", "hello"), "hello"),
    ("trimsuffix", ("helloworld", "world"), "hello"),
    ("trimsuffix", ("helloworld", "hello"), "helloworld"),
    ("replace", ("banana", "na", "--"), "ba----"),
    ("replace", ("hello world", "o", "0"), "hell0 w0rld"),
    ("replace", ("abc", "", "-"), "-a-b-c-"),
    ("replace", ("/a/", "/a/", "b"), "b"),  # plain substring, never a regex
    # buildx: sanitize
    ("sanitize", ("",), ""),
    ("sanitize", ("foo/bar",), "foo_bar"),
    ("sanitize", ("foobar",), "foobar"),
    ("sanitize", ("foo/bar.",), "foo_bar_"),
    ("sanitize", ("foo/bar..",), "foo_bar__"),
    ("sanitize", ("foo/bar...",), "foo_bar___"),
    ("sanitize", ("foo/🍕bar",), "foo__bar"),
    ("sanitize", ("foo/bar!@(ba+z)",), "foo_bar___ba_z_"),
    ("sanitize", ("My App! v1.0",), "My_App__v1_0"),
    # buildx: basename / dirname (Go's path package)
    ("basename", ("",), "."),
    ("basename", ("/",), "/"),
    ("basename", ("/foo/bar",), "bar"),
    ("basename", ("foo/bar",), "bar"),
    ("basename", ("/foo/bar.",), "bar."),
    ("basename", ("/foo/bar..",), "bar.."),
    ("basename", ("/foo/bar...",), "bar..."),
    ("basename", ("/foo/bar/",), "bar"),
    ("basename", ("/usr/local/bin/docker",), "docker"),
    ("dirname", ("",), "."),
    ("dirname", ("/",), "/"),
    ("dirname", ("/foo/bar",), "/foo"),
    ("dirname", ("foo/bar",), "foo"),
    ("dirname", ("/foo/bar.",), "/foo"),
    ("dirname", ("/foo/bar..",), "/foo"),
    ("dirname", ("/foo/bar...",), "/foo"),
    ("dirname", ("foo",), "."),
    ("dirname", ("/foo/bar/",), "/foo/bar"),
    ("dirname", ("//a//b",), "/a"),
    ("dirname", ("/usr/local/bin/docker",), "/usr/local/bin"),
    # --- collections ------------------------------------------------------------
    ("length", ([1, 2, 3, 4],), 4),
    ("length", ([],), 0),
    ("length", ({"a": 1, "b": 2},), 2),
    ("hasindex", ([10, 20, 30], 1), True),
    ("hasindex", ([10, 20, 30], 5), False),
    ("hasindex", ([10, 20, 30], -1), False),
    ("hasindex", ([10, 20, 30], 1.5), False),
    ("hasindex", ([10, 20, 30], "1"), False),  # no conversion of the key
    ("hasindex", ({"a": 1}, "a"), True),
    ("hasindex", ({"a": 1}, "b"), False),
    ("hasindex", ({"a": 1}, 1), False),
    ("index", ({"foo": "bar", "baz": "qux"}, "baz"), "qux"),
    ("index", (["a", "b", "c"], 1), "b"),
    ("index", (["a", "b", "c"], 2.0), "c"),
    # buildx: indexof
    ("indexof", (["one", 2, 3, "four"], "one"), 0),
    ("indexof", (["one", 2, 3, "four"], "four"), 3),
    ("indexof", (["one", 2, 3, "four"], 3), 2),
    ("indexof", (["a", "b", "c"], "b"), 1),
    ("element", (["a", "b", "c"], 1), "b"),
    ("element", (["a", "b", "c"], 3), "a"),
    ("element", (["a", "b", "c"], 7), "b"),
    ("element", (["a", "b", "c"], "2"), "c"),
    ("compact", (["a", "", "b", ""],), ["a", "b"]),
    ("compact", (["", None],), []),
    ("compact", (["a", None, "c"],), ["a", "c"]),
    ("compact", ([1, "", 2],), ["1", "2"]),
    ("concat", ([1, 2], [3, 4]), [1, 2, 3, 4]),
    ("concat", (["a"], [], [1, True]), ["a", 1, True]),
    ("concat", ([],), []),
    ("contains", ([1, 2, 3], 2), True),
    ("contains", ([1, 2, 3], 4), False),
    ("contains", (["a", "b"], "a"), True),
    ("contains", ([1, 2, 3], "2"), False),  # no conversion in equality
    ("contains", ([], 1), False),
    ("contains", ([[1], {"a": 1}], {"a": 1}), True),
    ("distinct", ([1, 2, 2, 3, 3, 3],), [1, 2, 3]),
    ("distinct", (["b", "a", "b"],), ["b", "a"]),
    ("distinct", ([1, "1", 2],), ["1", "2"]),  # unified to list(string) first
    ("distinct", ([],), []),
    ("distinct", ([[1], [1], [2]],), [[1], [2]]),
    ("chunklist", ([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]),
    ("chunklist", ([1, 2, 3], 1), [[1], [2], [3]]),
    ("chunklist", ([1, 2, 3], 0), [[1, 2, 3]]),
    ("chunklist", ([1, 2, 3], 5), [[1, 2, 3]]),
    ("chunklist", ([], 2), []),
    ("flatten", ([[1, 2], [3, 4], [5]],), [1, 2, 3, 4, 5]),
    ("flatten", ([["a", ["b"]], [], "c"],), ["a", "b", "c"]),
    ("flatten", ([],), []),
    ("flatten", ([{"a": [1]}],), [{"a": [1]}]),
    ("keys", ({"foo": 1, "bar": 2, "baz": 3},), ["bar", "baz", "foo"]),
    ("keys", ({},), []),
    ("values", ({"foo": 1, "bar": 2, "baz": 3},), [2, 3, 1]),
    ("values", ({"b": "x", "a": ["y"]},), [["y"], "x"]),
    ("lookup", ({"a": "apple", "b": "banana"}, "a", "none"), "apple"),
    ("lookup", ({"a": "apple", "b": "banana"}, "c", "none"), "none"),
    ("lookup", ({"a": None}, "a", "x"), None),
    ("lookup", ({"1": "one"}, 1, "x"), "one"),
    ("merge", ({"a": 1, "b": 2}, {"b": 3, "c": 4}), {"a": 1, "b": 3, "c": 4}),
    ("merge", ({"a": 1}, None, {"b": None}), {"a": 1, "b": None}),
    ("merge", (), {}),
    ("merge", (None,), {}),
    ("reverselist", ([1, 2, 3],), [3, 2, 1]),
    ("reverselist", ([],), []),
    ("slice", (["a", "b", "c", "d"], 1, 3), ["b", "c"]),
    ("slice", (["a", "b"], 0, 0), []),
    ("slice", (["a", "b"], 2, 2), []),
    ("slice", (["a", "b"], "0", "2"), ["a", "b"]),
    ("zipmap", (["a", "b"], [1, 2]), {"a": 1, "b": 2}),
    ("zipmap", ([], []), {}),
    ("zipmap", (["a", "a"], [1, 2]), {"a": 2}),
    ("setproduct", (["x", "y"], [1, 2]), [["x", 1], ["x", 2], ["y", 1], ["y", 2]]),
    ("setproduct", (["a"], [], ["b"]), []),
    (
        "setproduct",
        (["dev", "prod"], ["amd64", "arm64"], ["v1"]),
        [
            ["dev", "amd64", "v1"],
            ["dev", "arm64", "v1"],
            ["prod", "amd64", "v1"],
            ["prod", "arm64", "v1"],
        ],
    ),
    ("sethaselement", ([1, 2, 3], 2), True),
    ("sethaselement", (["a"], "b"), False),
    ("setintersection", (["a", "b", "c"], ["b", "c", "d"]), ["b", "c"]),
    ("setintersection", (["a", "b"], ["b"], ["b", "c"]), ["b"]),
    ("setintersection", (["a"],), ["a"]),
    ("setsubtract", ([1, 2, 3], [2]), [1, 3]),
    ("setsubtract", (["a", "b", "c"], ["a", "c"]), ["b"]),
    ("setsymmetricdifference", ([1, 2, 3], [3, 4]), [1, 2, 4]),
    ("setsymmetricdifference", (["a"], ["b"], ["a", "c"]), ["b", "c"]),
    ("setunion", (["a", "b"], ["b", "c"]), ["a", "b", "c"]),
    ("setunion", (["b", "a", "b"],), ["a", "b"]),
    ("setunion", ([3, 1], [2, 1]), [1, 2, 3]),
    ("setunion", (["a"], [1]), ["1", "a"]),  # unified to strings
    # --- encodings and hashes ---------------------------------------------------
    ("base64encode", ("Hello",), "SGVsbG8="),
    ("base64encode", ("abc123!?$*&()'-=@~",), "YWJjMTIzIT8kKiYoKSctPUB+"),
    ("base64encode", ("",), ""),
    ("base64decode", ("SGVsbG8=",), "Hello"),
    ("base64decode", ("YWJjMTIzIT8kKiYoKSctPUB+",), "abc123!?$*&()'-=@~"),
    ("base64decode", ("SGVs\nbG8=",), "Hello"),
    ("urlencode", ("abc123-_",), "abc123-_"),
    (
        "urlencode",
        ("foo:bar@localhost?foo=bar&bar=baz",),
        "foo%3Abar%40localhost%3Ffoo%3Dbar%26bar%3Dbaz",
    ),
    (
        "urlencode",
        ("mailto:email?subject=this+is+my+subject",),
        "mailto%3Aemail%3Fsubject%3Dthis%2Bis%2Bmy%2Bsubject",
    ),
    ("urlencode", ("foo/bar",), "foo%2Fbar"),
    ("urlencode", ("a b~é",), "a+b~%C3%A9"),
    ("md5", ("tada",), "ce47d07243bb6eaf5e1322c81baf9bbf"),
    ("md5", (" tada ",), "aadf191a583e53062de2d02c008141c4"),
    ("md5", ("",), "d41d8cd98f00b204e9800998ecf8427e"),
    ("sha1", ("test",), "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    ("sha256", ("test",), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    (
        "sha512",
        ("test",),
        "ee26b0dd4af7e749aa1a8ee3c10ae9923f618980772e473f8819a5d4940e0db27ac185f8a0e1d5f84f88bc887fd67b143732c304cc5fa9ad8e6f57f50028a8ff",
    ),
    ("byteslen", ("Docker",), 6),
    ("byteslen", ("é",), 2),
    ("bytesslice", ("Docker", 0, 3), "Doc"),
    ("bytesslice", ("Docker", 3, 3), "ker"),
    # --- JSON -------------------------------------------------------------------
    ("jsonencode", ("hello",), '"hello"'),
    ("jsonencode", (True,), "true"),
    ("jsonencode", (None,), "null"),
    ("jsonencode", (15,), "15"),
    ("jsonencode", (1.5,), "1.5"),
    ("jsonencode", (1e21,), "1000000000000000000000"),
    ("jsonencode", ({"name": "Docker", "stars": 5},), '{"name":"Docker","stars":5}'),
    ("jsonencode", ({"b": [1, None], "a": {"c": False}},), '{"a":{"c":false},"b":[1,null]}'),
    ("jsonencode", ("<a href='x'>&</a>",), "\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""),
    ("jsonencode", ("tab\there\nnl \u2028 é 🍕 \x01",), '"tab\\there\\nnl \\u2028 é 🍕 \\u0001"'),
    ("jsonencode", ([],), "[]"),
    ("jsonencode", ({},), "{}"),
    ("jsondecode", ('"hello"',), "hello"),
    ("jsondecode", ("true",), True),
    ("jsondecode", ("null",), None),
    ("jsondecode", ("1",), 1),
    ("jsondecode", ("1.50",), 1.5),
    ("jsondecode", ("1e3",), 1000),
    ("jsondecode", ("1.0",), 1),
    ("jsondecode", ('[1, "a", null]',), [1, "a", None]),
    ("jsondecode", ('{"name":"Docker","stars":5}',), {"name": "Docker", "stars": 5}),
    ("jsondecode", ('  {"a": {"b": [true]}}  ',), {"a": {"b": [True]}}),
    # --- CSV --------------------------------------------------------------------
    (
        "csvdecode",
        ("name,age\nAlice,30\nBob,40",),
        [{"name": "Alice", "age": "30"}, {"name": "Bob", "age": "40"}],
    ),
    (
        "csvdecode",
        ("a,b,c\n1,2,3\n4,5,6\n",),
        [{"a": "1", "b": "2", "c": "3"}, {"a": "4", "b": "5", "c": "6"}],
    ),
    ("csvdecode", ("a,b\r\n1,2\r\n",), [{"a": "1", "b": "2"}]),
    ("csvdecode", ("a,b\n\n1,2\n\n",), [{"a": "1", "b": "2"}]),
    ("csvdecode", ('a,b\n"x, ""y""","multi\nline"\n',), [{"a": 'x, "y"', "b": "multi\nline"}]),
    ("csvdecode", ("a,b\n",), []),
    ("csvdecode", ("a,b\n,\n",), [{"a": "", "b": ""}]),
    # --- dates ------------------------------------------------------------------
    ("formatdate", ("", "2006-01-02T15:04:05Z"), ""),
    ("formatdate", ("YYYY-MM-DD", "2006-01-02T15:04:05Z"), "2006-01-02"),
    ("formatdate", ("EEE, MMM D ''YY", "2006-01-02T15:04:05Z"), "Mon, Jan 2 '06"),
    ("formatdate", ("hh:mm:ss", "2006-01-02T15:04:05Z"), "15:04:05"),
    ("formatdate", ("H 'o''clock' AA", "2006-01-02T15:04:05Z"), "3 o'clock PM"),
    ("formatdate", ("H 'o''clock'", "2006-01-02T15:04:05Z"), "3 o'clock"),
    ("formatdate", ("hh:mm:ssZZZZ", "2006-01-02T15:04:05Z"), "15:04:05+0000"),
    ("formatdate", ("hh:mm:ssZZZZZ", "2006-01-02T15:04:05Z"), "15:04:05+00:00"),
    ("formatdate", ("MMMM", "2006-01-02T15:04:05Z"), "January"),
    ("formatdate", ("EEEE", "2006-01-02T15:04:05Z"), "Monday"),
    ("formatdate", ("aa", "2006-01-02T15:04:05Z"), "pm"),
    ("formatdate", ("YYYY-MM-DD'T'hh:mm:ssZ", "2006-01-02T15:04:05Z"), "2006-01-02T15:04:05Z"),
    ("formatdate", ("DD MMM YYYY hh:mm ZZZ", "2006-01-02T15:04:05Z"), "02 Jan 2006 15:04 UTC"),
    (
        "formatdate",
        ("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2006-01-02T15:04:05Z"),
        "Monday, 02-Jan-06 15:04:05 UTC",
    ),
    (
        "formatdate",
        ("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2006-01-02T15:04:05Z"),
        "Mon, 02 Jan 2006 15:04:05 UTC",
    ),
    ("formatdate", ("YYYY-MM-DD", "2025-09-16T12:00:00Z"), "2025-09-16"),
    ("formatdate", ("h:m:s H AA", "2017-03-04T00:05:09Z"), "0:5:9 12 AM"),
    ("formatdate", ("M/D/YY", "2017-03-04T00:05:09Z"), "3/4/17"),
    (
        "formatdate",
        ("hh:mm Z ZZZ ZZZZ ZZZZZ", "2017-03-04T10:05:09-08:00"),
        "10:05 -08:00 -0800 -0800 -08:00",
    ),
    (
        "formatdate",
        ("YYYY-MM-DD hh:mm:ss", "2017-03-04T10:05:09.123456789+05:30"),
        "2017-03-04 10:05:09",
    ),
    ("formatdate", ("YYYYMMDDhhmmss", "2018-01-02T23:12:01Z"), "20180102231201"),
    ("formatdate", ("$(YYYY)-'x'_", "2018-01-02T23:12:01Z"), "$(2018)-x_"),
    ("timeadd", ("2017-11-22T00:00:00Z", "1s"), "2017-11-22T00:00:01Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "10m1s"), "2017-11-22T00:10:01Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "-1h"), "2017-11-21T23:00:00Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "1.5h"), "2017-11-22T01:30:00Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "0"), "2017-11-22T00:00:00Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "24h"), "2017-11-23T00:00:00Z"),
    ("timeadd", ("2017-11-22T00:00:00Z", "1us"), "2017-11-22T00:00:00Z"),
    ("timeadd", ("2017-11-22T00:00:00+05:30", "-90m"), "2017-11-21T22:30:00+05:30"),
    ("timeadd", ("2016-02-28T23:00:00Z", "2h"), "2016-02-29T01:00:00Z"),
    ("timeadd", ("2017-11-22T00:00:00.5Z", "500ms"), "2017-11-22T00:00:01Z"),
    # --- network addresses (go-cty-funcs tests, buildx docs) --------------------
    ("cidrhost", ("192.168.1.0/24", 5), "192.168.1.5"),
    ("cidrhost", ("192.168.1.0/24", -5), "192.168.1.251"),
    ("cidrhost", ("192.168.1.0/24", -256), "192.168.1.0"),
    ("cidrhost", ("10.0.0.0/16", 5), "10.0.0.5"),
    ("cidrhost", ("10.12.112.0/20", 16), "10.12.112.16"),
    ("cidrhost", ("10.12.112.0/20", 268), "10.12.113.12"),
    ("cidrhost", ("fd00:fd12:3456:7890:00a2::/72", 34), "fd00:fd12:3456:7890::22"),
    ("cidrhost", ("192.168.1.5/24", 1), "192.168.1.1"),
    ("cidrnetmask", ("192.168.1.0/24",), "255.255.255.0"),
    ("cidrnetmask", ("10.0.0.0/16",), "255.255.0.0"),
    ("cidrnetmask", ("172.16.0.0/12",), "255.240.0.0"),
    ("cidrnetmask", ("1.2.3.4/32",), "255.255.255.255"),
    ("cidrnetmask", ("0.0.0.0/0",), "0.0.0.0"),
    ("cidrsubnet", ("192.168.2.0/20", 4, 6), "192.168.6.0/24"),
    ("cidrsubnet", ("fe80::/48", 16, 6), "fe80:0:0:6::/64"),
    ("cidrsubnet", ("::ffff:192.168.0.0/112", 8, 6), "192.168.6.0/24"),
    ("cidrsubnet", ("10.0.0.0/16", 4, 2), "10.0.32.0/20"),
    ("cidrsubnet", ("172.16.0.0/12", 4, 2), "172.18.0.0/16"),
    ("cidrsubnet", ("10.1.2.0/24", 4, 15), "10.1.2.240/28"),
    ("cidrsubnet", ("fd00:fd12:3456:7890::/56", 16, 162), "fd00:fd12:3456:7800:a200::/72"),
    (
        "cidrsubnets",
        ("10.0.0.0/21", 3, 3, 3, 4, 4, 4, 7, 7, 7),
        [
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.2.0/24",
            "10.0.3.0/25",
            "10.0.3.128/25",
            "10.0.4.0/25",
            "10.0.4.128/28",
            "10.0.4.144/28",
            "10.0.4.160/28",
        ],
    ),
    ("cidrsubnets", ("10.0.0.0/16", 4, 4), ["10.0.0.0/20", "10.0.16.0/20"]),
    (
        "cidrsubnets",
        ("10.1.0.0/16", 4, 4, 8, 4),
        ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"],
    ),
    (
        "cidrsubnets",
        ("fd00:fd12:3456:7890::/56", 16, 16, 16, 32),
        [
            "fd00:fd12:3456:7800::/72",
            "fd00:fd12:3456:7800:100::/72",
            "fd00:fd12:3456:7800:200::/72",
            "fd00:fd12:3456:7800:300::/88",
        ],
    ),
    ("cidrsubnets", ("10.0.0.0/8",), []),
    # --- identifiers --------------------------------------------------------------
    ("uuidv5", ("dns", "tada"), "faa898db-9b9d-5b75-86a9-149e7bb8e3b8"),
    ("uuidv5", ("url", "tada"), "2c1ff6b4-211f-577e-94de-d978b0caa16e"),
    ("uuidv5", ("oid", "tada"), "61eeea26-5176-5288-87fc-232d6ed30d2f"),
    ("uuidv5", ("x500", "tada"), "7e12415e-f7c9-57c3-9e43-52dc9950d264"),
    (
        "uuidv5",
        ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tada"),
        "faa898db-9b9d-5b75-86a9-149e7bb8e3b8",
    ),
    (
        "uuidv5",
        ("{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", "tada"),
        "faa898db-9b9d-5b75-86a9-149e7bb8e3b8",
    ),
    (
        "uuidv5",
        ("6ba7b8109dad11d180b400c04fd430c8", "tada"),
        "faa898db-9b9d-5b75-86a9-149e7bb8e3b8",
    ),
    ("uuidv5", ("dns", "tada "), "c90e0166-f7e7-5255-903b-340b2fd9fd8e"),
    # --- convert (typeexpr.ConvertFunc) ---------------------------------------
    ("convert", ("42", "number"), 42),
    ("convert", (42, "string"), "42"),
    ("convert", ("true", "bool"), True),
    ("convert", ([1, 2], "list(string)"), ["1", "2"]),
    ("convert", (["b", "a", "b"], "set(string)"), ["a", "b"]),
    ("convert", ({"a": 1}, "map(string)"), {"a": "1"}),
    ("convert", ([1, "a"], "tuple([string, string])"), ["1", "a"]),
    ("convert", ({"a": "1", "b": 2}, "object({a=number})"), {"a": 1}),
    ("convert", (None, "string"), None),
    ("convert", ([1, "x"], "any"), [1, "x"]),
    # --- semvercmp (constraint check) ------------------------------------------
    ("semvercmp", ("1.2.3", ">= 1.0.0"), True),
    ("semvercmp", ("1.2.3", "< 1.0.0"), False),
    ("semvercmp", ("v1.2.3", "1.2.3"), True),
    ("semvercmp", ("1.2.3", "!= 1.2.3"), False),
    ("semvercmp", ("1.2.3", ">1.2"), False),
    ("semvercmp", ("1.3.0", ">1.2"), True),
    ("semvercmp", ("1.2.3", "~1.2.0"), True),
    ("semvercmp", ("1.3.0", "~1.2.0"), False),
    ("semvercmp", ("1.9.0", "^1.2"), True),
    ("semvercmp", ("2.0.0", "^1.2"), False),
    ("semvercmp", ("0.2.5", "^0.2.3"), True),
    ("semvercmp", ("0.3.0", "^0.2.3"), False),
    ("semvercmp", ("1.2.9", "1.2.x"), True),
    ("semvercmp", ("1.3.0", "1.2.x"), False),
    ("semvercmp", ("1.5.0", ">= 1.2, < 2.0"), True),
    ("semvercmp", ("2.5.0", ">= 1.2 < 2.0"), False),
    ("semvercmp", ("3.1.0", "^1 || ^3"), True),
    ("semvercmp", ("1.4.0", "1.2 - 1.4.5"), True),
    ("semvercmp", ("1.5.0", "1.2 - 1.4.5"), False),
    (
        "semvercmp",
        ("1.2.3-beta.1", ">= 1.0.0"),
        False,
    ),  # pre-releases need a pre-release constraint
    ("semvercmp", ("1.2.3-beta.2", ">= 1.2.3-beta.1"), True),
    ("semvercmp", ("1.2.3-beta.10", ">= 1.2.3-beta.2"), True),
    ("semvercmp", ("1.2.3-alpha", ">= 1.2.3-beta"), False),
    ("semvercmp", ("1.2.3", "*"), True),
]


@pytest.mark.parametrize(("name", "args", "want"), RESULT_CASES, ids=_ids(RESULT_CASES))
def test_result(name: str, args: Tuple[Any, ...], want: Any) -> None:
    got = call(name, *args)
    assert got == want
    assert type(got) is type(want) or (isinstance(want, float) and isinstance(got, float))


def test_numbers_are_never_bools() -> None:
    for name, args in [
        ("add", (1, 2)),
        ("length", ([True],)),
        ("strlen", ("ab",)),
        ("int", (1.5,)),
    ]:
        assert not isinstance(call(name, *args), bool)


# ---------------------------------------------------------------------------
# format / formatlist (go-cty format_test.go)
# ---------------------------------------------------------------------------

FORMAT_CASES: List[Tuple[str, Tuple[Any, ...], str]] = [
    ("", (), ""),
    ("hello", (), "hello"),
    ("100%% successful", (), "100% successful"),
    ("100%%", (), "100%"),
    ("string %v", ("hello",), "string hello"),
    ("string %[2]v", (True, "hello"), "string hello"),
    ("string %#v", ("hello",), 'string "hello"'),
    ("number %v", (2,), "number 2"),
    ("number %#v", (2,), "number 2"),
    ("number %v", (1.5,), "number 1.5"),
    ("number %v", (12345678,), "number 1.2345678e+07"),  # %v of a number is %g
    ("number %v", (123456,), "number 123456"),
    ("number %#v", (12345678,), "number 12345678"),
    ("bool %v", (True,), "bool true"),
    ("bool %#v", (True,), "bool true"),
    ("object %v", ({},), "object {}"),
    ("object %v", ({"b": 1, "a": "x"},), 'object {"a":"x","b":1}'),
    ("tuple %v", ([],), "tuple []"),
    ("tuple %v", ([1, "two", None],), 'tuple [1,"two",null]'),
    ("%%%v", (False,), "%false"),
    ("%v", (None,), "null"),
    ("%#v", (None,), "null"),
    ("%5v|%-5v|%05v", ("ab", "ab", 7), "   ab|ab   |00007"),
    ("%-05s|%-05d", ("ab", 7), "ab000|7    "),  # cty pads strings itself; Go's fmt pads numbers
    ("Hello, %s!", ("Ermintrude",), "Hello, Ermintrude!"),
    ("Hello, %[2]s!", ("Stephen", "Ermintrude"), "Hello, Ermintrude!"),
    (
        "Hello, %q... if that _is_ your real name!",
        ("Ermintrude",),
        'Hello, "Ermintrude"... if that _is_ your real name!',
    ),
    ("This statement is %s", (False,), "This statement is false"),
    ("This statement is %q", (False,), 'This statement is "false"'),
    ("%s", (42,), "42"),
    ("%s", (1.5,), "1.5"),
    ("%10s", ("hello",), "     hello"),
    ("%-10s", ("hello",), "hello     "),
    ("%4s", ("💃🏿",), "   💃🏿"),
    ("%-4s", ("💃🏿",), "💃🏿   "),
    ("%q", ("💃🏿",), '"💃🏿"'),
    ("%6q", ("💃🏿",), '   "💃🏿"'),
    ("%-6q", ("💃🏿",), '"💃🏿"   '),
    ("%.2s", ("hello",), "he"),
    ("%.2q", ("hello",), '"he"'),
    ("%.5s", ("日本語日本語",), "日本語日本"),
    ("%.1q", ("日本語日本語",), '"日"'),
    ("%.10s", ("hello",), "hello"),
    ("%4.2s", ("hello",), "  he"),
    ("%6.2q", ("hello",), '  "he"'),
    ("%-4.2s", ("hello",), "he  "),
    ("%q", ("Hello\nWorld",), '"Hello\\nWorld"'),
    ("%q", ("a<b>&c",), '"a\\u003cb\\u003e\\u0026c"'),
    ("This statement is %t", (False,), "This statement is false"),
    ("This statement is %[2]t", (True, False), "This statement is false"),
    ("This statement is %t", (True,), "This statement is true"),
    ("This statement is %t", ("false",), "This statement is false"),
    ("%d green bottles standing on the wall", (10,), "10 green bottles standing on the wall"),
    ("%[2]d things", (1, 10), "10 things"),
    ("%+d green bottles standing on the wall", (10,), "+10 green bottles standing on the wall"),
    ("% d green bottles standing on the wall", (10,), " 10 green bottles standing on the wall"),
    ("%5d green bottles standing on the wall", (10,), "   10 green bottles standing on the wall"),
    ("%-5d green bottles standing on the wall", (10,), "10    green bottles standing on the wall"),
    ("%05d|%+05d|%-05d|%.3d|%5.3d", (42, 42, 42, 7, -7), "00042|+0042|42   |007| -007"),
    ("%d", ("12",), "12"),
    ("%d", (2.0,), "2"),
    ("%d", (12345678901234567890,), "12345678901234567890"),
    ("%b", (5,), "101"),
    ("%o", (9,), "11"),
    ("%x", (254,), "fe"),
    ("%X", (254,), "FE"),
    ("%#x %#X %#o %#b", (254, 254, 8, 5), "0xfe 0XFE 010 0b101"),
    ("%x", (-255,), "-ff"),
    ("%08b", (5,), "00000101"),
    ("%f things", (10,), "10.000000 things"),
    ("%[2]f things", (1, 10), "10.000000 things"),
    ("%+f things", (10,), "+10.000000 things"),
    ("% f things", (10,), " 10.000000 things"),
    ("%+f things", (-10,), "-10.000000 things"),
    ("% f things", (-10,), "-10.000000 things"),
    (
        "%f things",
        ("100000000000000000000000000000000000001",),
        "100000000000000000000000000000000000001.000000 things",
    ),
    ("%f things", ("1.00000000000000000000000000000000000001",), "1.000000 things"),
    ("%.4f things", ("1.00000000000000000000000000000000000001",), "1.0000 things"),
    ("%.1f things", ("1.06",), "1.1 things"),
    ("%.2f", (3.14159,), "3.14"),
    ("%.0f|%.0f|%.0f", (0.5, 1.5, 2.5), "0|2|2"),  # half to even
    ("%.1f", (0.05,), "0.0"),
    ("%.1f", (0.09,), "0.1"),
    ("%8.3f|%-8.3f|%08.3f", (-1.5, 1.5, -1.5), "  -1.500|1.500   |-001.500"),
    ("%e things", (1000,), "1.000000e+03 things"),
    ("%E things", (1000,), "1.000000E+03 things"),
    ("%.2e", (123456,), "1.23e+05"),
    ("%e", (0,), "0.000000e+00"),
    ("%e", (1.5e-10,), "1.500000e-10"),
    ("%g things", (1000,), "1000 things"),
    ("%G things", (1000,), "1000 things"),
    ("%g things", ("0.00000000000000000000001",), "1e-23 things"),
    ("%G things", ("0.00000000000000000000001",), "1E-23 things"),
    ("%g", (0.0001,), "0.0001"),
    ("%g", (0.00001,), "1e-05"),
    ("%g", (1234567,), "1.234567e+06"),
    ("%g", (0,), "0"),
    ("%.3g", (3.14159,), "3.14"),
    ("%.3g", (1234.5,), "1.23e+03"),
    ("%.10g", (0.1,), "0.1"),
    ("%v %v %v", ("a", "b", "c"), "a b c"),
    ("%[2]s %[1]s %s", ("a", "b"), "b a b"),
]


@pytest.mark.parametrize(("fmt", "args", "want"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_format(fmt: str, args: Tuple[Any, ...], want: str) -> None:
    assert call("format", fmt, *args) == want
    assert format_value(fmt, *args) == want


FORMAT_ERROR_CASES: List[Tuple[str, Tuple[Any, ...], str]] = [
    (
        "%s",
        (None,),
        'Call to function "format" failed: unsupported value for "%s" at 0: null value cannot be formatted.',
    ),
    (
        "%d green bottles standing on the wall",
        (True,),
        'Call to function "format" failed: unsupported value for "%d" at 0: number required.',
    ),
    (
        "%d",
        (1.5,),
        'Call to function "format" failed: unsupported value for "%d" at 0: an integer is required.',
    ),
    (
        "%d",
        ("x",),
        'Call to function "format" failed: unsupported value for "%d" at 0: a number is required.',
    ),
    (
        "%t",
        (1,),
        'Call to function "format" failed: unsupported value for "%t" at 0: bool required.',
    ),
    (
        "%s",
        ({},),
        'Call to function "format" failed: unsupported value for "%s" at 0: string required.',
    ),
    (
        "%s is not in the args list",
        (),
        'Call to function "format" failed: not enough arguments for "%s" at 0: need index 1 but have 0 total.',
    ),
    (
        "%[3]s is not in the args list",
        (True, True),
        'Call to function "format" failed: not enough arguments for "%[3]s" at 0: need index 3 but have 2 total.',
    ),
    (
        "%[0]s is not valid because args are 1-based",
        (True, True),
        "Call to function \"format\" failed: unrecognized format character '0' at offset 2.",
    ),
    (
        "%v %v %v",
        (True, True),
        'Call to function "format" failed: not enough arguments for "%v" at 6: need index 3 but have 2 total.',
    ),
    (
        "%z is not a valid sequence",
        (10,),
        'Call to function "format" failed: unsupported format verb \'z\' in "%z" at offset 0.',
    ),
    (
        "%#z is not a valid sequence",
        (10,),
        'Call to function "format" failed: unsupported format verb \'z\' in "%#z" at offset 0.',
    ),
    (
        "%012z is not a valid sequence",
        (10,),
        'Call to function "format" failed: unsupported format verb \'z\' in "%012z" at offset 0.',
    ),
    (
        "%☠ is not a valid sequence",
        (10,),
        "Call to function \"format\" failed: unrecognized format character '☠' at offset 1.",
    ),
    (
        "%💃🏿 is not a valid sequence",
        (10,),
        "Call to function \"format\" failed: unrecognized format character '💃' at offset 1.",
    ),
    (
        "é%☠",
        (10,),
        "Call to function \"format\" failed: unrecognized format character '☠' at offset 3.",
    ),  # byte offsets
    ("100%", (), 'Call to function "format" failed: invalid format string starting at offset 4.'),
    (
        "no format verbs at all",
        (10,),
        'Invalid value for "args" parameter: too many arguments; no verbs in format string.',
    ),
    (
        "only one verb %d",
        (10, 11),
        'Invalid value for "args" parameter: too many arguments; only 1 used by format string.',
    ),
]


@pytest.mark.parametrize(
    ("fmt", "args", "msg"), FORMAT_ERROR_CASES, ids=[c[0] for c in FORMAT_ERROR_CASES]
)
def test_format_errors(fmt: str, args: Tuple[Any, ...], msg: str) -> None:
    with pytest.raises(FunctionError) as exc:
        call("format", fmt, *args)
    assert str(exc.value) == msg


def test_format_null_format_string() -> None:
    with pytest.raises(
        FunctionError, match=r'^Invalid value for "format" parameter: argument must not be null\.$'
    ):
        call("format", None, 10)


FORMATLIST_CASES: List[Tuple[str, Tuple[Any, ...], List[str]]] = [
    ("", (), [""]),
    ("hello", (), ["hello"]),
    ("100%% successful", (), ["100% successful"]),
    ("%s", ("hello",), ["hello"]),
    ("%s", (["hello"],), ["hello"]),
    ("%s", (["hello", "world"],), ["hello", "world"]),
    ("%s %s", (["hello", "goodbye"], ["world", "universe"]), ["hello world", "goodbye universe"]),
    ("%s %s", (["hello", "goodbye"], "world"), ["hello world", "goodbye world"]),
    ("%s %s", ("hello", ["world", "universe"]), ["hello world", "hello universe"]),
    ("%v", ([],), []),
    ("%v", (None,), ["null"]),
    ("Hi %s", (["Alice", "Bob"],), ["Hi Alice", "Hi Bob"]),
    ("%s-%d", (["a", "b"], [1, 2]), ["a-1", "b-2"]),
]


@pytest.mark.parametrize(
    ("fmt", "args", "want"), FORMATLIST_CASES, ids=[c[0] for c in FORMATLIST_CASES]
)
def test_formatlist(fmt: str, args: Tuple[Any, ...], want: List[str]) -> None:
    assert call("formatlist", fmt, *args) == want


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (
            ("%s %s", ["hello", "goodbye"], ["world"]),
            'Invalid value for "args" parameter: argument 2 has length 1, which is inconsistent '
            "with argument 1 of length 2.",
        ),
        (
            ("%s", [{}]),
            'Call to function "formatlist" failed: error on format iteration 0: unsupported value '
            'for "%s" at 0: string required.',
        ),
    ],
)
def test_formatlist_errors(args: Tuple[Any, ...], msg: str) -> None:
    with pytest.raises(FunctionError) as exc:
        call("formatlist", *args)
    assert str(exc.value) == msg


# ---------------------------------------------------------------------------
# Regular expressions (go-cty regexp_test.go and string_replace_test.go)
# ---------------------------------------------------------------------------

REGEX_CASES: List[Tuple[str, Tuple[Any, ...], Any]] = [
    ("regex", ("h.llo", "hello"), "hello"),
    ("regex", ("[0-9]+", "abc123def456"), "123"),
    ("regex", ("(\\d+)-(\\d+)", "it is 12-34"), ["12", "34"]),
    ("regex", ("(?P<num>[0-9]+)", "abc123def"), {"num": "123"}),
    ("regex", ("(?<num>[0-9]+)", "abc123def"), {"num": "123"}),
    ("regex", ("(?P<a>x)|(?P<b>y)", "y"), {"a": None, "b": "y"}),
    ("regex", ("(x)|(y)", "y"), [None, "y"]),
    ("regex", ("^(?:https?://)?([^/:]+)", "https://docker.io/library/alpine"), ["docker.io"]),
    ("regex", ("(?i)hello", "HeLLo"), "HeLLo"),
    ("regex", ("a(?i)b", "aB"), "aB"),
    ("regex", ("(a(?i)b)c", "aBc"), ["aB"]),
    ("regex", ("(?s)a.b", "a\nb"), "a\nb"),
    ("regex", ("x$", "x"), "x"),
    ("regex", ("\\Ax\\z", "x"), "x"),
    ("regex", ("[[:digit:]]+", "ab12"), "12"),
    ("regex", ("[^[:space:]]+", "  ab "), "ab"),
    ("regex", ("\\pL+", "12abc"), "abc"),
    ("regex", ("\\x{41}", "A"), "A"),
    ("regex", ("\\Qa.b\\E", "xa.b"), "a.b"),
    ("regex", ("\\d", "٣3"), "3"),  # RE2's \d is ASCII only
    ("regexall", ("[a-z]+", "abc123xyz"), ["abc", "xyz"]),
    ("regexall", ("[0-9]", "abc"), []),
    ("regexall", ("(\\w)(\\d)", "a1 b2"), [["a", "1"], ["b", "2"]]),
    (
        "regexall",
        ("(?P<k>\\w+)=(?P<v>\\w+)", "a=1,b=2"),
        [{"k": "a", "v": "1"}, {"k": "b", "v": "2"}],
    ),
    ("regexall", ("(?m)^a$", "a\na"), ["a", "a"]),
    ("regexall", ("a*", "baaac"), ["", "aaa", ""]),  # Go skips the empty match right after "aaa"
    ("regexall", ("x*", ""), [""]),
    ("regex_replace", ("hello world", "o", "0"), "hell0 w0rld"),
    ("regex_replace", ("abc123xyz", "[0-9]+", "NUM"), "abcNUMxyz"),
    ("regex_replace", ("hello world", "(\\w+) (\\w+)", "$2 $1"), "world hello"),
    ("regex_replace", ("hello world", "(\\w+) (\\w+)", "${2}_$1"), "world_hello"),
    ("regex_replace", ("hello world", "(?P<first>\\w+) (\\w+)", "$first!"), "hello!"),
    ("regex_replace", ("hello", "(l+)", "$1x"), "heo"),  # $1x is the (missing) group "1x"
    ("regex_replace", ("cost", "o", "$$"), "c$st"),
    ("regex_replace", ("a.b.c", "\\.", "/"), "a/b/c"),
    ("regex_replace", ("abc", "", "-"), "-a-b-c-"),
    ("regex_replace", ("1.2.3-rc1", "-.*$", ""), "1.2.3"),
]


@pytest.mark.parametrize(("name", "args", "want"), REGEX_CASES, ids=_ids(REGEX_CASES))
def test_regex(name: str, args: Tuple[Any, ...], want: Any) -> None:
    assert call(name, *args) == want


REGEX_ERROR_CASES: List[Tuple[str, Tuple[Any, ...], str]] = [
    (
        "regex",
        ("x", "abc"),
        'Call to function "regex" failed: pattern did not match any part of the given string.',
    ),
    (
        "regex",
        ("x$", "x\n"),
        'Call to function "regex" failed: pattern did not match any part of the given string.',
    ),
    (
        "regex",
        ("(?P<a>x)(y)", "xy"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: cannot mix both named and unnamed capture groups.',
    ),
    (
        "regex",
        ("[a-", "a"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: missing closing ] in [a-.',
    ),
    (
        "regex",
        ("(a", "a"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: missing closing ) in (a.',
    ),
    (
        "regex",
        ("a)", "a"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: unexpected ) in a).',
    ),
    (
        "regex",
        ("(?=a)", "a"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: invalid or unsupported Perl syntax in (?=.',
    ),
    (
        "regex",
        ("(a)\\1", "aa"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: invalid escape sequence in \\1.',
    ),
    (
        "regexall",
        ("*", "a"),
        'Invalid value for "pattern" parameter: invalid regexp pattern: missing argument to repetition operator in *.',
    ),
    (
        "regex_replace",
        ("abc", "(?=a)", "x"),
        'Call to function "regex_replace" failed: error parsing regexp: invalid or unsupported Perl syntax: `(?=`.',
    ),
]


@pytest.mark.parametrize(("name", "args", "msg"), REGEX_ERROR_CASES, ids=_ids(REGEX_ERROR_CASES))
def test_regex_errors(name: str, args: Tuple[Any, ...], msg: str) -> None:
    with pytest.raises(FunctionError) as exc:
        call(name, *args)
    assert str(exc.value) == msg


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

_WHOLE = "value must be a whole number, between -9223372036854775808 and 9223372036854775807"

ERROR_CASES: List[Tuple[str, Tuple[Any, ...], str]] = [
    # arity (hclsyntax's function call diagnostics)
    (
        "upper",
        (),
        'Not enough function arguments; Function "upper" expects 1 argument(s). Missing value for "str".',
    ),
    (
        "substr",
        ("hello", 1),
        'Not enough function arguments; Function "substr" expects 3 argument(s). Missing value for "length".',
    ),
    (
        "join",
        (),
        'Not enough function arguments; Function "join" expects at least 1 argument(s). Missing value for "separator".',
    ),
    (
        "upper",
        ("a", "b"),
        'Too many function arguments; Function "upper" expects only 1 argument(s).',
    ),
    (
        "timestamp",
        (1,),
        'Too many function arguments; Function "timestamp" expects only 0 argument(s).',
    ),
    (
        "lookup",
        ({"a": 1}, "a"),
        'Not enough function arguments; Function "lookup" expects 3 argument(s). Missing value for "default".',
    ),
    # argument conversion
    ("upper", (None,), 'Invalid value for "str" parameter: argument must not be null.'),
    ("upper", ([1],), 'Invalid value for "str" parameter: string required.'),
    ("upper", ({"a": 1},), 'Invalid value for "str" parameter: string required.'),
    ("add", ("x", 1), 'Invalid value for "a" parameter: a number is required.'),
    ("add", (1, True), 'Invalid value for "b" parameter: number required.'),
    ("add", (1, None), 'Invalid value for "b" parameter: argument must not be null.'),
    ("add", (1, "0x10"), 'Invalid value for "b" parameter: a number is required.'),
    ("not", ("yes",), 'Invalid value for "val" parameter: a bool is required.'),
    (
        "not",
        ("True",),
        'Invalid value for "val" parameter: a bool is required; to convert from string, use lowercase "true".',
    ),
    ("not", (1,), 'Invalid value for "val" parameter: bool required.'),
    ("join", (",", "a"), 'Invalid value for "lists" parameter: list of string required.'),
    ("join", (",", [["a"]]), 'Invalid value for "lists" parameter: string required.'),
    ("sort", ("a",), 'Invalid value for "list" parameter: list of string required.'),
    (
        "distinct",
        ([1, True],),
        'Invalid value for "list" parameter: all list elements must have the same type.',
    ),
    ("max", (1, "x"), 'Invalid value for "numbers" parameter: a number is required.'),
    # function errors
    ("max", (), 'Call to function "max" failed: must pass at least one number.'),
    ("min", (), 'Call to function "min" failed: must pass at least one number.'),
    (
        "add",
        (float("inf"), float("-inf")),
        'Call to function "add" failed: can\'t compute sum of opposing infinities.',
    ),
    (
        "subtract",
        (float("inf"), float("inf")),
        'Call to function "subtract" failed: can\'t subtract infinity from itself.',
    ),
    (
        "multiply",
        (0, float("inf")),
        'Call to function "multiply" failed: can\'t multiply zero by infinity.',
    ),
    (
        "divide",
        (0, 0),
        'Call to function "divide" failed: can\'t divide zero by zero or infinity by infinity.',
    ),
    (
        "int",
        (float("inf"),),
        'Call to function "int" failed: can\'t truncate infinity to an integer.',
    ),
    ("signum", (1.5,), f'Call to function "signum" failed: {_WHOLE}.'),
    (
        "parseint",
        ("zz", 10),
        'Invalid value for "number" parameter: cannot parse "zz" as a base 10 integer.',
    ),
    (
        "parseint",
        ("", 10),
        'Invalid value for "number" parameter: cannot parse "" as a base 10 integer.',
    ),
    (
        "parseint",
        ("1_000", 10),
        'Invalid value for "number" parameter: cannot parse "1_000" as a base 10 integer.',
    ),
    (
        "parseint",
        (10, 10),
        'Invalid value for "number" parameter: first argument must be a string, not number.',
    ),
    (
        "parseint",
        ("10", 1),
        'Invalid value for "base" parameter: base must be a whole number between 2 and 62 inclusive.',
    ),
    (
        "parseint",
        ("10", 63),
        'Invalid value for "base" parameter: base must be a whole number between 2 and 62 inclusive.',
    ),
    ("range", (), 'Call to function "range" failed: must have one, two, or three arguments.'),
    (
        "range",
        (1, 2, 3, 4),
        'Call to function "range" failed: must have one, two, or three arguments.',
    ),
    ("range", (0, 10, 0), 'Invalid value for "params" parameter: step must not be zero.'),
    (
        "range",
        (0, 10, -1),
        'Invalid value for "params" parameter: end must be less than start when step is negative.',
    ),
    (
        "range",
        (10, 0, 1),
        'Invalid value for "params" parameter: end must be greater than start when step is positive.',
    ),
    (
        "range",
        (2000,),
        'Call to function "range" failed: more than 1024 values were generated; either decrease the difference between start and end or use a smaller step.',
    ),
    ("coalesce", (None, None), 'Call to function "coalesce" failed: no non-null arguments.'),
    (
        "coalesce",
        (1, True),
        'Call to function "coalesce" failed: all arguments must have the same type.',
    ),
    ("coalesce", (), 'Call to function "coalesce" failed: no non-null arguments.'),
    ("coalescelist", ([], []), 'Call to function "coalescelist" failed: no non-null arguments.'),
    (
        "coalescelist",
        ("a",),
        'Call to function "coalescelist" failed: coalescelist arguments must be lists or tuples.',
    ),
    (
        "coalescelist",
        (),
        'Call to function "coalescelist" failed: at least one argument is required.',
    ),
    ("join", (",",), 'Call to function "join" failed: at least one list is required.'),
    (
        "join",
        (",", ["a", None]),
        'Invalid value for "lists" parameter: element 1 is null; cannot concatenate null values.',
    ),
    (
        "join",
        (",", ["a"], [None]),
        'Invalid value for "lists" parameter: element 0 of list 2 is null; cannot concatenate null values.',
    ),
    (
        "sort",
        (["a", None],),
        'Call to function "sort" failed: given list element 1 is null; a null string cannot be sorted.',
    ),
    (
        "length",
        ("abc",),
        'Call to function "length" failed: collection must be a list, a map or a tuple.',
    ),
    (
        "length",
        (5,),
        'Call to function "length" failed: collection must be a list, a map or a tuple.',
    ),
    ("hasindex", ([1], None), 'Invalid value for "key" parameter: argument must not be null.'),
    (
        "hasindex",
        ("abc", 1),
        'Call to function "hasindex" failed: collection must be a list, a map or a tuple.',
    ),
    ("index", (["a"], "0"), 'Call to function "index" failed: key for tuple must be number.'),
    (
        "index",
        (["a"], 1),
        'Call to function "index" failed: key must be between 0 and 1 inclusive.',
    ),
    ("index", (["a"], 0.5), f'Call to function "index" failed: invalid key for tuple: {_WHOLE}.'),
    ("index", ({"a": 1}, "b"), 'Call to function "index" failed: invalid index.'),
    ("index", ({"a": 1}, 1), 'Call to function "index" failed: key for map must be string.'),
    (
        "index",
        ("abc", 1),
        'Call to function "index" failed: collection must be a list, a map or a tuple.',
    ),
    ("indexof", (["one", 2, 3, "four"], "3"), 'Call to function "indexof" failed: item not found.'),
    ("indexof", ([], "a"), 'Call to function "indexof" failed: cannot search an empty list.'),
    (
        "indexof",
        ({"a": 1}, "a"),
        'Call to function "indexof" failed: argument must be a list or tuple.',
    ),
    (
        "element",
        ([], 0),
        'Call to function "element" failed: cannot use element function with an empty list.',
    ),
    (
        "element",
        (["a"], -1),
        'Call to function "element" failed: cannot use element function with a negative index.',
    ),
    ("element", (["a"], 1.5), f'Call to function "element" failed: invalid index: {_WHOLE}.'),
    ("element", ("abc", 0), 'Call to function "element" failed: cannot read elements from string.'),
    ("concat", (), 'Call to function "concat" failed: at least one argument is required.'),
    (
        "concat",
        ([1], "a"),
        'Invalid value for "seqs" parameter: all arguments must be lists or tuples; got string.',
    ),
    (
        "contains",
        ("abc", "a"),
        'Call to function "contains" failed: argument must be list, tuple, or set.',
    ),
    ("contains", (None, "a"), 'Invalid value for "list" parameter: argument must not be null.'),
    (
        "chunklist",
        ([1], -1),
        'Call to function "chunklist" failed: the size argument must be positive.',
    ),
    ("chunklist", ([1], 1.5), f'Call to function "chunklist" failed: invalid size: {_WHOLE}.'),
    (
        "flatten",
        ("abc",),
        'Call to function "flatten" failed: can only flatten lists, sets and tuples.',
    ),
    ("keys", ([1],), 'Invalid value for "inputMap" parameter: must have map or object type.'),
    (
        "values",
        ("a",),
        'Call to function "values" failed: values() requires a map as the first argument.',
    ),
    (
        "lookup",
        ("a", "b", "c"),
        'Invalid value for "inputMap" parameter: lookup() requires a map as the first argument.',
    ),
    (
        "merge",
        ({"a": 1}, "x"),
        'Call to function "merge" failed: arguments must be maps or objects, got "string".',
    ),
    (
        "merge",
        ({"a": 1}, [1]),
        'Call to function "merge" failed: arguments must be maps or objects, got "tuple".',
    ),
    (
        "reverselist",
        ("abc",),
        'Invalid value for "list" parameter: can only reverse list or tuple values, not string.',
    ),
    ("slice", ("abc", 0, 1), 'Invalid value for "list" parameter: must be a list or tuple value.'),
    (
        "slice",
        ([1, 2], -1, 1),
        'Invalid value for "start_index" parameter: start index must not be less than zero.',
    ),
    (
        "slice",
        ([1, 2], 3, 3),
        'Invalid value for "start_index" parameter: start index must not be greater than the length of the list.',
    ),
    (
        "slice",
        ([1, 2], 0, 3),
        'Invalid value for "end_index" parameter: end index must not be greater than the length of the list.',
    ),
    (
        "slice",
        ([1, 2], 0, -1),
        'Invalid value for "end_index" parameter: end index must not be less than zero.',
    ),
    (
        "slice",
        ([1, 2], 2, 1),
        'Invalid value for "start_index" parameter: start index must not be greater than end index.',
    ),
    (
        "slice",
        ([1, 2], 0.5, 1),
        f'Invalid value for "start_index" parameter: invalid start index: {_WHOLE}.',
    ),
    (
        "zipmap",
        (["a"], [1, 2]),
        'Call to function "zipmap" failed: number of keys (1) does not match number of values (2).',
    ),
    (
        "zipmap",
        (["a"], "x"),
        'Call to function "zipmap" failed: values argument must be a list or tuple value.',
    ),
    (
        "zipmap",
        ([None], [1]),
        'Call to function "zipmap" failed: keys list has null value at index 0.',
    ),
    (
        "setproduct",
        (["a"],),
        'Call to function "setproduct" failed: at least two arguments are required.',
    ),
    (
        "setproduct",
        (["a"], "b"),
        'Invalid value for "sets" parameter: a set or a list is required.',
    ),
    (
        "setproduct",
        (["a"], [1, True]),
        'Invalid value for "sets" parameter: all elements must be of the same type.',
    ),
    (
        "setunion",
        ([1], [True]),
        'Call to function "setunion" failed: given sets must all have compatible element types.',
    ),
    (
        "setunion",
        ("a",),
        'Invalid value for "first_set" parameter: set of any single type required.',
    ),
    ("indent", (-1, "a"), 'Call to function "indent" failed: strings: negative Repeat count.'),
    ("substr", ("abc", 0.5, 1), f'Call to function "substr" failed: {_WHOLE}.'),
    (
        "base64decode",
        ("dGVzdA",),
        "Call to function \"base64decode\" failed: failed to decode base64 data 'dGVzdA'.",
    ),
    (
        "base64decode",
        ("not base64!",),
        "Call to function \"base64decode\" failed: failed to decode base64 data 'not base64!'.",
    ),
    (
        "base64decode",
        ("/w==",),
        'Call to function "base64decode" failed: the result of decoding the the provided string is not valid UTF-8.',
    ),
    (
        "bytesslice",
        ("abc", 4, 0),
        'Call to function "bytesslice" failed: offset 4 is greater than total buffer length 3.',
    ),
    (
        "bytesslice",
        ("abc", 1, 3),
        'Call to function "bytesslice" failed: offset 1 + length 3 is greater than total buffer length 3.',
    ),
    (
        "bytesslice",
        ("abc", -1, 1),
        'Call to function "bytesslice" failed: offset and length must be non-negative.',
    ),
    ("jsondecode", ("",), 'Call to function "jsondecode" failed: unexpected end of JSON input.'),
    (
        "jsondecode",
        ('{"a":',),
        'Call to function "jsondecode" failed: unexpected end of JSON input.',
    ),
    ("csvdecode", ("",), 'Call to function "csvdecode" failed: missing header line.'),
    ("csvdecode", ("a,a\n1,2",), 'Call to function "csvdecode" failed: duplicate column name "a".'),
    (
        "csvdecode",
        ("a,b\n1\n",),
        'Call to function "csvdecode" failed: CSV parse error on line 2: wrong number of fields.',
    ),
    (
        "csvdecode",
        ("a,b\n1,2,3\n",),
        'Call to function "csvdecode" failed: CSV parse error on line 2: wrong number of fields.',
    ),
    (
        "csvdecode",
        ('a,b\n1,x"y\n',),
        'Call to function "csvdecode" failed: CSV parse error on line 2: bare " in non-quoted-field.',
    ),
    (
        "csvdecode",
        ('a,b\n1,"xy\n',),
        'Call to function "csvdecode" failed: CSV parse error on line 3: extraneous or missing " in quoted-field.',
    ),
    # formatdate (go-cty datetime_test.go)
    (
        "formatdate",
        ("Y", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "Y": year must either be "YY" or "YYYY".',
    ),
    (
        "formatdate",
        ("YYYYY", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "YYYYY": year must either be "YY" or "YYYY".',
    ),
    (
        "formatdate",
        ("A", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "A": must be "AA".',
    ),
    (
        "formatdate",
        ("a", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "a": must be "aa".',
    ),
    (
        "formatdate",
        ("MMMMM", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "MMMMM": month must be "M", "MM", "MMM", or "MMMM".',
    ),
    (
        "formatdate",
        ("x", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "x".',
    ),
    (
        "formatdate",
        ("ZZ", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: invalid date format verb "ZZ": timezone must be Z, ZZZZ, or ZZZZZ.',
    ),
    (
        "formatdate",
        ("'blah blah", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: unterminated literal \'.',
    ),
    (
        "formatdate",
        ("'", "2006-01-02T15:04:05Z"),
        'Invalid value for "format" parameter: unterminated literal \'.',
    ),
    (
        "formatdate",
        ("", ""),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: end of string before year.',
    ),
    (
        "formatdate",
        ("", "2017-01-02"),
        "Invalid value for \"time\" parameter: not a valid RFC3339 timestamp: missing required time introducer 'T'.",
    ),
    (
        "formatdate",
        ("", "2017-12-02t00:00:00Z"),
        "Invalid value for \"time\" parameter: not a valid RFC3339 timestamp: missing required time introducer 'T'.",
    ),
    (
        "formatdate",
        ("", "2017:01:02"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: found ":01:02" where "-" is expected.',
    ),
    (
        "formatdate",
        ("", "2017"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: end of string where "-" is expected.',
    ),
    (
        "formatdate",
        ("", "2017-01-02T"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: end of string before hour.',
    ),
    (
        "formatdate",
        ("", "2017-01-02T00"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: end of string where ":" is expected.',
    ),
    (
        "formatdate",
        ("", "2017-01-02T00:00:00"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: end of string before UTC offset.',
    ),
    (
        "formatdate",
        ("", "2017-01-02T26:00:00Z"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: cannot use ":00:00Z" as hour.',
    ),
    (
        "formatdate",
        ("", "2017-13-02T00:00:00Z"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: cannot use "-02T00:00:00Z" as month.',
    ),
    (
        "formatdate",
        ("", "2017-02-31T00:00:00Z"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: day out of range.',
    ),
    (
        "formatdate",
        ("", '"2017-12-02T00:00:00Z"'),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: cannot use "\\"2017-12-02T00:00:00Z\\"" as year.',
    ),
    (
        "formatdate",
        ("", "2-12-02T00:00:00Z"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: cannot use "-02T00:00:00Z" as year.',
    ),
    (
        "formatdate",
        ("", "2017-01-02T00:00:00Zjunk"),
        'Invalid value for "time" parameter: not a valid RFC3339 timestamp: cannot use "junk" as timestamp segment.',
    ),
    # timeadd (Go's time.Parse / time.ParseDuration errors)
    (
        "timeadd",
        ("2017-11-22 00:00:00Z", "1h"),
        'Call to function "timeadd" failed: parsing time "2017-11-22 00:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 00:00:00Z" as "T".',
    ),
    (
        "timeadd",
        ("x", "1h"),
        'Call to function "timeadd" failed: parsing time "x" as "2006-01-02T15:04:05Z07:00": cannot parse "x" as "2006".',
    ),
    (
        "timeadd",
        ("2017-02-31T00:00:00Z", "1h"),
        'Call to function "timeadd" failed: parsing time "2017-02-31T00:00:00Z": day out of range.',
    ),
    (
        "timeadd",
        ("2017-11-22T00:00:00Z", "1"),
        'Call to function "timeadd" failed: time: missing unit in duration "1".',
    ),
    (
        "timeadd",
        ("2017-11-22T00:00:00Z", "1x"),
        'Call to function "timeadd" failed: time: unknown unit "x" in duration "1x".',
    ),
    (
        "timeadd",
        ("2017-11-22T00:00:00Z", "h"),
        'Call to function "timeadd" failed: time: invalid duration "h".',
    ),
    (
        "timeadd",
        ("2017-11-22T00:00:00Z", ""),
        'Call to function "timeadd" failed: time: invalid duration "".',
    ),
    # network addresses
    (
        "cidrhost",
        ("192.168.1.0/30", 255),
        'Call to function "cidrhost" failed: prefix of 30 does not accommodate a host numbered 255.',
    ),
    (
        "cidrhost",
        ("192.168.1.0/30", -255),
        'Call to function "cidrhost" failed: prefix of 30 does not accommodate a host numbered -255.',
    ),
    (
        "cidrhost",
        ("not-a-cidr", 6),
        'Call to function "cidrhost" failed: invalid CIDR expression: invalid CIDR address: not-a-cidr.',
    ),
    (
        "cidrhost",
        ("10.256.0.0/8", 6),
        'Call to function "cidrhost" failed: invalid CIDR expression: invalid CIDR address: 10.256.0.0/8.',
    ),
    (
        "cidrhost",
        ("10.0.0.0", 6),
        'Call to function "cidrhost" failed: invalid CIDR expression: invalid CIDR address: 10.0.0.0.',
    ),
    (
        "cidrnetmask",
        ("not-a-cidr",),
        'Call to function "cidrnetmask" failed: invalid CIDR expression: invalid CIDR address: not-a-cidr.',
    ),
    (
        "cidrsubnet",
        ("192.168.0.0/30", 4, 6),
        'Call to function "cidrsubnet" failed: insufficient address space to extend prefix of 30 by 4.',
    ),
    (
        "cidrsubnet",
        ("192.168.0.0/168", 2, 16),
        'Call to function "cidrsubnet" failed: invalid CIDR expression: invalid CIDR address: 192.168.0.0/168.',
    ),
    (
        "cidrsubnet",
        ("192.168.0.0/16", 2, 16),
        'Call to function "cidrsubnet" failed: prefix extension of 2 does not accommodate a subnet numbered 16.',
    ),
    (
        "cidrsubnet",
        ("fe80::/48", 33, 1),
        'Call to function "cidrsubnet" failed: may not extend prefix by more than 32 bits.',
    ),
    (
        "cidrsubnets",
        ("10.0.0.0/30", 1, 3),
        'Invalid value for "newbits" parameter: would extend prefix to 33 bits, which is too long for an IPv4 address.',
    ),
    (
        "cidrsubnets",
        ("10.0.0.0/8", 1, 1, 1),
        'Invalid value for "newbits" parameter: not enough remaining address space for a subnet with a prefix of 9 bits after 10.128.0.0/9.',
    ),
    (
        "cidrsubnets",
        ("10.0.0.0/8", 1, 0),
        'Invalid value for "newbits" parameter: must extend prefix by at least one bit.',
    ),
    (
        "cidrsubnets",
        ("10.0.0.0/8", 1, -1),
        'Invalid value for "newbits" parameter: must extend prefix by at least one bit.',
    ),
    (
        "cidrsubnets",
        ("fe80::/48", 1, 33),
        'Invalid value for "newbits" parameter: may not extend prefix by more than 32 bits.',
    ),
    (
        "cidrsubnets",
        ("x", 1),
        'Invalid value for "prefix" parameter: invalid CIDR expression: invalid CIDR address: x.',
    ),
    # identifiers and crypto
    (
        "uuidv5",
        ("bad", "x"),
        'Call to function "uuidv5" failed: uuidv5() doesn\'t support namespace bad (invalid UUID length: 3).',
    ),
    (
        "uuidv5",
        ("6ba7b810-9dad-11d1-80b4-00c04fd430cZ", "x"),
        'Call to function "uuidv5" failed: uuidv5() doesn\'t support namespace 6ba7b810-9dad-11d1-80b4-00c04fd430cZ (invalid UUID format).',
    ),
    (
        "rsadecrypt",
        ("bad cipher", "key"),
        'Call to function "rsadecrypt" failed: failed to decode input "bad cipher": cipher text must be base64-encoded.',
    ),
    (
        "rsadecrypt",
        ("", "bad key"),
        'Call to function "rsadecrypt" failed: failed to parse key: no key found.',
    ),
    (
        "rsadecrypt",
        ("", ""),
        'Call to function "rsadecrypt" failed: failed to parse key: no key found.',
    ),
    # convert
    ("convert", ("x", "number"), 'Invalid value for "value" parameter: a number is required.'),
    ("convert", ([1], "string"), 'Invalid value for "value" parameter: string required.'),
    (
        "convert",
        ({"b": 1}, "object({a=number})"),
        'Invalid value for "value" parameter: attribute "a" is required.',
    ),
    (
        "convert",
        (1, "lst(string)"),
        "Invalid value for \"type\" parameter: the keyword 'lst' is not a valid type constructor.",
    ),
    # semvercmp
    (
        "semvercmp",
        ("not-a-version", ">1"),
        'Invalid value for "version" parameter: Invalid Semantic Version.',
    ),
    (
        "semvercmp",
        ("1.2.3", ">>1"),
        'Invalid value for "constraint" parameter: improper constraint: >>1.',
    ),
    ("unixtimestampparse", (1.5,), f'Call to function "unixtimestampparse" failed: {_WHOLE}.'),
]


@pytest.mark.parametrize(("name", "args", "msg"), ERROR_CASES, ids=_ids(ERROR_CASES))
def test_error(name: str, args: Tuple[Any, ...], msg: str) -> None:
    with pytest.raises(FunctionError) as exc:
        call(name, *args)
    assert str(exc.value) == msg


# ---------------------------------------------------------------------------
# Functions whose results vary
# ---------------------------------------------------------------------------


def test_timestamp_is_rfc3339_utc_now() -> None:
    got = call("timestamp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got)
    parsed = dt.datetime.strptime(got, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - parsed).total_seconds()) < 5


def test_timestamp_feeds_formatdate_and_timeadd() -> None:
    now = call("timestamp")
    assert call("formatdate", "YYYY", now) == now[:4]
    assert call("timeadd", now, "0s") == now


def test_homedir() -> None:
    home = call("homedir")
    assert home == os.path.expanduser("~")
    assert os.path.isabs(home)


def test_uuidv4() -> None:
    a, b = call("uuidv4"), call("uuidv4")
    assert a != b
    parsed = uuid.UUID(a)
    assert parsed.version == 4
    assert str(parsed) == a


def test_unixtimestampparse() -> None:
    # buildx stdlib_test.go
    assert call("unixtimestampparse", 1690328596) == {
        "year": 2023,
        "year_day": 206,
        "day": 25,
        "month": 7,
        "month_name": "July",
        "weekday": 2,
        "weekday_name": "Tuesday",
        "hour": 23,
        "minute": 43,
        "second": 16,
        "rfc3339": "2023-07-25T23:43:16Z",
        "iso_year": 2023,
        "iso_week": 30,
    }
    assert call("unixtimestampparse", 0)["rfc3339"] == "1970-01-01T00:00:00Z"
    assert call("unixtimestampparse", "86400")["weekday_name"] == "Friday"


def test_bcrypt() -> None:
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        with pytest.raises(FunctionError, match=r'needs the Python package "bcrypt"'):
            call("bcrypt", "mypassword")
        return
    hashed = call("bcrypt", "mypassword", 5)
    assert hashed.startswith("$2a$05$")
    assert len(hashed) == 60


# ---------------------------------------------------------------------------
# rsadecrypt with a key made here (PKCS #1, as Go's x509.ParsePKCS1PrivateKey)
# ---------------------------------------------------------------------------


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _next_prime(n: int) -> int:
    n |= 1
    while not _is_prime(n):
        n += 2
    return n


def _der_int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_len(len(body)) + body


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _rsa_fixture() -> Tuple[str, int, int]:
    p = _next_prime(int(hashlib.sha512(b"p").hexdigest(), 16) | (1 << 511))
    q = _next_prime(int(hashlib.sha512(b"q").hexdigest(), 16) | (1 << 511))
    n, e = p * q, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    fields = [0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p)]
    body = b"".join(_der_int(f) for f in fields)
    der = b"\x30" + _der_len(len(body)) + body
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----\n"
    )
    return pem, n, e


def _rsa_encrypt(msg: bytes, n: int, e: int) -> str:
    k = (n.bit_length() + 7) // 8
    padding = bytes((i * 7) % 255 + 1 for i in range(k - 3 - len(msg)))
    em = b"\x00\x02" + padding + b"\x00" + msg
    c = pow(int.from_bytes(em, "big"), e, n)
    return base64.b64encode(c.to_bytes(k, "big")).decode("ascii")


def test_rsadecrypt() -> None:
    pem, n, e = _rsa_fixture()
    assert call("rsadecrypt", _rsa_encrypt(b"message", n, e), pem) == "message"
    assert call("rsadecrypt", _rsa_encrypt("héllo".encode(), n, e), pem) == "héllo"


def test_rsadecrypt_errors() -> None:
    pem, n, e = _rsa_fixture()
    other_pem, n2, e2 = pem.replace("RSA PRIVATE KEY", "RSA PRIVATE KEY"), n, e
    del other_pem, n2, e2
    bogus = base64.b64encode(b"\x01" * 128).decode("ascii")
    with pytest.raises(FunctionError, match=r"crypto/rsa: decryption error\.$"):
        call("rsadecrypt", bogus, pem)
    encrypted = pem.replace(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n",
    )
    with pytest.raises(FunctionError, match=r"password protected keys are not supported"):
        call("rsadecrypt", _rsa_encrypt(b"x", n, e), encrypted)
    garbage = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(FunctionError, match=r"x509: malformed private key\.$"):
        call("rsadecrypt", _rsa_encrypt(b"x", n, e), garbage)


# ---------------------------------------------------------------------------
# Inputs are never modified
# ---------------------------------------------------------------------------


def test_inputs_are_not_mutated() -> None:
    lst = ["b", "a", "b"]
    mp = {"b": 1, "a": 2}
    call("sort", lst)
    call("distinct", lst)
    call("reverselist", lst)
    call("merge", mp, {"c": 3})
    call("setunion", lst, ["c"])
    assert lst == ["b", "a", "b"]
    assert mp == {"b": 1, "a": 2}


def test_mapping_inputs_are_accepted() -> None:
    from types import MappingProxyType

    m = MappingProxyType({"b": 1, "a": 2})
    assert call("keys", m) == ["a", "b"]
    assert call("values", m) == [2, 1]
    assert call("merge", m, {"c": 3}) == {"a": 2, "b": 1, "c": 3}
    assert call("lookup", m, "a", 0) == 2
    assert call("jsonencode", m) == '{"a":2,"b":1}'
