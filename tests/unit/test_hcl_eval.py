"""HCL expression evaluation (hclsyntax + go-cty semantics) and static helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Iterator, List

import pytest

from bakery.bakefile import hcl
from bakery.bakefile.values import FunctionError
from bakery.errors import BakeryError, Pos


def _upper(s: Any) -> Any:
    if not isinstance(s, str):
        raise FunctionError("a string is required")
    return s.upper()


def _fail(*args: Any) -> Any:
    raise FunctionError("it went wrong.")


FUNCS: Dict[str, Any] = {
    "upper": _upper,
    "fail": _fail,
    "add": lambda *a: sum(a),
    "list": lambda *a: list(a),
    "ns::echo": lambda a: a,
}

VARS: Dict[str, Any] = {
    "num": 3,
    "str": "hello",
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, 2, 3],
    "empty": [],
    "strs": ["a", "b"],
    "obj": {"a": 1, "b": {"c": "deep"}, "list": [10, 20]},
    "objs": [{"name": "x", "port": 1}, {"name": "y", "port": 2}],
    "nested": [{"items": [{"v": 1}, {"v": 2}]}, {"items": [{"v": 3}]}],
    "map": {"zeta": 1, "alpha": 2, "mid": 3},
    "tstr": "true",
    "nstr": "2",
}


def ev(src: str, variables: Any = None, functions: Any = None) -> Any:
    ctx = hcl.EvalContext(VARS if variables is None else variables, FUNCS if functions is None else functions)
    return hcl.evaluate(hcl.parse_expression(src, "e.hcl"), ctx)


def ev_attr(src: str) -> Any:
    body = hcl.parse(f"a = {src}\n", "f.hcl")
    return hcl.evaluate(body.attributes["a"].expr, hcl.EvalContext(VARS, FUNCS))


@pytest.mark.parametrize(
    ("src", "want"),
    [
        # literals
        ("1", 1),
        ("1.5", 1.5),
        ("1e2", 100),
        ("true", True),
        ("null", None),
        ('"s"', "s"),
        # arithmetic (numbers stay ints when integral)
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),
        ("7 / 2", 3.5),
        ("6 / 3", 2),
        ("0.5 * 4", 2),
        ("0.1 + 0.2", 0.30000000000000004),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("7.5 % 2", 1.5),
        ("-num", -3),
        ("- -num", 3),
        ("-1 + 2", 1),
        ("2 * -3", -6),
        ("10000000000000000000000 * 10", 100000000000000000000000),
        # conversions: numbers from strings
        ('"2" + 1', 3),
        ("nstr * 2", 4),
        ('"1.5" + 1', 2.5),
        ('-"3"', -3),
        # comparison
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("3 >= 4", False),
        ('"10" > 9', True),
        # equality: no conversion
        ("1 == 1", True),
        ("1 == 1.0", True),
        ('1 == "1"', False),
        ('"a" != "b"', True),
        ("null == null", True),
        ("nothing == null", True),
        ("[1, 2] == [1, 2]", True),
        ("{a = 1} == {a = 1}", True),
        ("{a = 1} == {a = 2}", False),
        ("true == true", True),
        ('true == "true"', False),
        # logic
        ("true && false", False),
        ("true || false", True),
        ("!yes", False),
        ("!no && yes", True),
        ('tstr && true', True),
        ('"false" || false', False),
        # short circuit: the deciding side's value wins over the other side's error
        ("false && nope", False),
        ("true || nope", True),
        ("nope && false", False),
        ("nope || true", True),
        ("no && obj.missing", False),
        # conditional
        ("yes ? 1 : 2", 1),
        ("no ? 1 : 2", 2),
        ('"true" ? 1 : 2', 1),
        ("yes ? 1 : nope", 1),
        ("no ? nope : 2", 2),
        ("num > 2 ? list[0] : list[9]", 1),
        # unification: a string wins, null takes the other side's type
        ('yes ? 1 : "a"', "1"),
        ('no ? 1 : "a"', "a"),
        ('yes ? true : "a"', "true"),
        ("yes ? 1 : null", 1),
        ("no ? 1 : null", None),
        ("yes ? null : [1]", None),
        ('yes ? [1] : ["a"]', ["1"]),
        ("yes ? [1, 2] : []", [1, 2]),
        ('yes ? [1, true] : ["x"]', ["1", "true"]),
        ('yes ? {a = 1} : {a = "x"}', {"a": "1"}),
        ('yes ? {a = 1} : {b = "x"}', {"a": "1"}),
        ("yes ? {a = 1} : {}", {"a": 1}),
        # templates
        ('"a${num}b"', "a3b"),
        ('"${num}"', 3),
        ('"${list}"', [1, 2, 3]),
        ('"${nothing}"', None),
        ('"${yes}"', True),
        ('"x${yes}"', "xtrue"),
        ('"${1.5}-${100000000000000000000}"', "1.5-100000000000000000000"),
        ('"${""}${yes}"', "true"),
        ('"${"${yes}"}"', True),
        ('"%{ for v in [true] }${v}%{ endfor }"', "true"),
        ('"%{ if yes }on%{ else }off%{ endif }"', "on"),
        ('"%{ if no }on%{ endif }"', ""),
        ('"%{ for i, v in strs }${i}=${v};%{ endfor }"', "0=a;1=b;"),
        ('"%{ for k, v in map }${k}=${v} %{ endfor }"', "alpha=2 mid=3 zeta=1 "),
        ('"a ${~ str ~} b"', "ahellob"),
        ('"${"hello" ~}${" world"}"', "hello world"),
        ('"%{ if true ~}  hello  %{~ endif }"', "hello"),
        ('"\\u0065\\u0301"', "é"),
        ('"$${x}"', "${x}"),
        # collections
        ("[]", []),
        ("[1, num, [str]]", [1, 3, ["hello"]]),
        ("{}", {}),
        ('{a = 1, "b c" = 2, (str) = 3, 4 = 5, true = 6}', {"a": 1, "b c": 2, "hello": 3, "4": 5, "true": 6}),
        ("{(num) = 1, (yes) = 2}", {"3": 1, "true": 2}),
        ("{a = 1, a = 2}", {"a": 2}),
        ("{a: 1, b: 2}", {"a": 1, "b": 2}),
        ("{null = 1}", {"null": 1}),
        ("{str = 1}", {"str": 1}),
        # index and attributes
        ("list[0]", 1),
        ('list["2"]', 3),
        ("list[1.0]", 2),
        ("obj.a", 1),
        ('obj["a"]', 1),
        ("obj.b.c", "deep"),
        ('obj["b"]["c"]', "deep"),
        ("obj.list[1]", 20),
        ("obj.list.1", 20),
        ("objs[1].name", "y"),
        ("{1 = \"x\"}[1]", "x"),
        ("{true = \"x\"}[true]", "x"),
        # splat
        ("objs[*].name", ["x", "y"]),
        ("objs.*.name", ["x", "y"]),
        ("objs[*].port", [1, 2]),
        ("nested[*].items[0].v", [1, 3]),
        ("nested.*.items[0]", [{"v": 1}, {"v": 2}]),  # legacy splat: the index applies to the result
        ("nested[*].items[*].v", [[1, 2], [3]]),
        ("obj[*].a", [1]),
        ("obj.*.a", [1]),
        ("nothing[*]", []),
        ("nothing.*.a", []),
        ("str[*]", ["hello"]),
        ("list[*]", [1, 2, 3]),
        ("empty[*].x", []),
        ("[[1, 2], [3]][*][0]", [1, 3]),
        # for expressions
        ("[for v in list : v * 2]", [2, 4, 6]),
        ("[for i, v in strs : i]", [0, 1]),
        ("[for i, v in list : v if i != 1]", [1, 3]),
        ('[for v in list : v if "true"]', [1, 2, 3]),
        ("[for k, v in map : k]", ["alpha", "mid", "zeta"]),
        ("[for v in map : v]", [2, 3, 1]),
        ("{for k, v in map : v => k}", {"2": "alpha", "3": "mid", "1": "zeta"}),
        ("{for v in strs : v => upper(v)}", {"a": "A", "b": "B"}),
        ('{for v in ["a", "b", "a"] : v => v...}', {"a": ["a", "a"], "b": ["b"]}),
        ("{for i, v in [1, 2, 3, 4] : i % 2 == 0 ? \"even\" : \"odd\" => v...}", {"even": [1, 3], "odd": [2, 4]}),
        ("[for x in [for y in list : y * 10] : x + 1]", [11, 21, 31]),
        ("[for v in list : num]", [3, 3, 3]),
        ("[for num in list : num]", [1, 2, 3]),
        ("[for v in [] : v]", []),
        ("{for v in [] : v => v}", {}),
        # function calls
        ("upper(str)", "HELLO"),
        ("add(1, 2, 3)", 6),
        ("add(list...)", 6),
        ("add(10, list...)", 16),
        ("add([]...)", 0),
        ("list()", []),
        ("ns::echo(1)", 1),
        ("try(nope, 2)", 2),
        ("try(obj.missing, obj.a)", 1),
        ("try(list[10], \"fallback\")", "fallback"),
        ("try(1, nope)", 1),
        ("try(fail(), 3)", 3),
        ("can(nope)", False),
        ("can(obj.a)", True),
        ("can(list[5])", False),
        ("can(fail())", False),
        # parentheses and keys
        ("(1)", 1),
        ("{(\"a\") = 1}", {"a": 1}),
    ],
)
def test_evaluate(src: str, want: Any) -> None:
    got = ev(src)
    assert got == want
    assert type(got) is type(want)


@pytest.mark.parametrize(
    ("src", "message", "where"),
    [
        # variables
        ("nope", 'Unknown variable; There is no variable named "nope".', "1:1"),
        ("1 + nope", 'Unknown variable; There is no variable named "nope".', "1:5"),
        # operators
        ('"a" + 1', 'Invalid operand; Unsuitable value for left operand: a number is required, got string "a".', "1:1"),
        ("1 + yes", "Invalid operand; Unsuitable value for right operand: a number is required, got bool.", "1:5"),
        ("1 + nothing", "Invalid operand; Unsuitable value for right operand: a null value cannot be used as a number.", "1:5"),
        ("list * 2", "Invalid operand; Unsuitable value for left operand: a number is required, got tuple.", "1:1"),
        ('1 < "x"', 'Invalid operand; Unsuitable value for right operand: a number is required, got string "x".', "1:5"),
        ("-str", 'Invalid operand; Unsuitable value for unary operand: a number is required, got string "hello".', "1:2"),
        ("!1", "Invalid operand; Unsuitable value for unary operand: a bool is required, got number.", "1:2"),
        ("1 && true", "Invalid operand; Unsuitable value for left operand: a bool is required, got number.", "1:1"),
        ("true || 1", "Invalid operand; Unsuitable value for right operand: a bool is required, got number.", "1:9"),
        ("true && nope", 'Unknown variable; There is no variable named "nope".', "1:9"),
        ("nope || false", 'Unknown variable; There is no variable named "nope".', "1:1"),
        ("1 / 0", "Operation failed; Error during operation: can't divide by zero.", "1:1"),
        ("x + 1 / 0", 'Unknown variable; There is no variable named "x".', "1:1"),
        ("1 % 0", "Operation failed; Error during operation: can't use modulo by zero.", "1:1"),
        # conditional
        ("nothing ? 1 : 2", "Null condition; The condition value is null. Conditions must either be true or false.", "1:1"),
        ("str ? 1 : 2", "Incorrect condition type; The condition expression must be of type bool.", "1:1"),
        ("yes ? nope : 2", 'Unknown variable; There is no variable named "nope".', "1:7"),
        (
            'yes ? {a = 1} : "x"',
            "Inconsistent conditional result types; The true and false result expressions must have consistent "
            "types. The 'true' value is object, but the 'false' value is string.",
            "1:7",
        ),
        (
            "yes ? 1 : false",
            "Inconsistent conditional result types; The true and false result expressions must have consistent "
            "types. The 'true' value is number, but the 'false' value is bool.",
            "1:7",
        ),
        (
            "no ? [1] : {}",
            "Inconsistent conditional result types; The true and false result expressions must have consistent "
            "types. The 'true' value is tuple, but the 'false' value is object.",
            "1:6",
        ),
        (
            "yes ? [1, true] : [1, 2]",
            "Inconsistent conditional result types; The true and false result expressions must have consistent "
            "types. Type mismatch for tuple element 1: The 'true' value is bool, but the 'false' value is number.",
            "1:7",
        ),
        (
            "yes ? {a = true} : {a = 1}",
            "Inconsistent conditional result types; The true and false result expressions must have consistent "
            "types. Type mismatch for object attribute \"a\": The 'true' value is bool, but the 'false' value is number.",
            "1:7",
        ),
        # templates
        (
            '"x${nothing}"',
            "Invalid template interpolation value; The expression result is null. Cannot include a null value in "
            "a string template.",
            "1:5",
        ),
        (
            '"x${list}"',
            "Invalid template interpolation value; Cannot include the given value in a string template: string required.",
            "1:5",
        ),
        (
            '"${obj} "',
            "Invalid template interpolation value; Cannot include the given value in a string template: string required.",
            "1:4",
        ),
        ('"%{ if nothing }x%{ endif }"', "Null condition; The condition value is null. Conditions must either be true or false.", "1:8"),
        (
            '"%{ for v in nothing }x%{ endfor }"',
            "Iteration over null value; A null value cannot be used as the collection in a 'for' expression.",
            "1:14",
        ),
        # index and attributes
        (
            "list[3]",
            "Invalid index; The given key does not identify an element in this collection value: the given index "
            "is greater than or equal to the length of the collection.",
            "1:5",
        ),
        (
            "empty[0]",
            "Invalid index; The given key does not identify an element in this collection value: the collection "
            "has no elements.",
            "1:6",
        ),
        (
            "list[-1]",
            "Invalid index; The given key does not identify an element in this collection value: a negative number "
            "is not a valid index for a sequence.",
            "1:5",
        ),
        (
            "list[0.5]",
            "Invalid index; The given key does not identify an element in this collection value: indexing a "
            "sequence requires a whole number, but the given index has a fractional part.",
            "1:5",
        ),
        (
            'list["x"]',
            'Invalid index; The given key does not identify an element in this collection value: a number is '
            'required, got string "x".',
            "1:5",
        ),
        ('obj["zz"]', "Invalid index; The given key does not identify an element in this collection value.", "1:4"),
        ("list[nothing]", "Invalid index; Can't use a null value as an indexing key.", "1:5"),
        ("nothing[0]", "Attempt to index null value; This value is null, so it does not have any indices.", "1:8"),
        ("num[0]", "Invalid index; This value does not have any indices.", "1:4"),
        ("list.5", "Invalid index; The given key does not identify an element in this collection value: the given index is greater than or equal to the length of the collection.", "1:5"),
        ("obj.zz", 'Unsupported attribute; This object does not have an attribute named "zz".', "1:4"),
        ("obj.b.zz", 'Unsupported attribute; This object does not have an attribute named "zz".', "1:6"),
        ("nothing.a", "Attempt to get attribute from null value; This value is null, so it does not have any attributes.", "1:8"),
        ("str.a", "Unsupported attribute; Can't access attributes on a primitive-typed value (string).", "1:4"),
        (
            "objs.name",
            'Unsupported attribute; Can\'t access attributes on a list of objects. Did you mean to access attribute "name" '
            "for a specific element of the list, or across all elements of the list?",
            "1:5",
        ),
        ("objs[*].zz", 'Unsupported attribute; This object does not have an attribute named "zz".', "1:8"),
        # collections
        ("{(nothing) = 1}", "Null value as key; Can't use a null value as a key.", "1:2"),
        ("{(list) = 1}", "Incorrect key type; Can't use this value as a key: a string is required, got tuple.", "1:2"),
        (
            "{obj.a = 1}",
            "Ambiguous attribute key; If this expression is intended to be a reference, wrap it in parentheses. "
            "If it's instead intended as a literal name containing periods, wrap it in quotes to create a string literal.",
            "1:2",
        ),
        # for expressions
        ("[for v in nothing : v]", "Iteration over null value; A null value cannot be used as the collection in a 'for' expression.", "1:11"),
        ("[for v in num : v]", "Iteration over non-iterable value; A value of type number cannot be used as the collection in a 'for' expression.", "1:11"),
        ("[for v in list : v if nothing]", "Invalid 'for' condition; The value of the 'if' clause must not be null.", "1:23"),
        ("[for v in list : v if v]", "Invalid 'for' condition; The 'if' clause value is invalid: a bool is required, got number.", "1:23"),
        ("{for v in list : nothing => v}", "Invalid object key; Key expression in 'for' expression must not produce a null value.", "1:18"),
        ("{for v in list : [v] => v}", "Invalid object key; The key expression produced an invalid result: a string is required, got tuple.", "1:18"),
        (
            '{for v in ["a", "b", "a"] : v => 1}',
            "Duplicate object key; Two different items produced the key \"a\" in this 'for' expression. If "
            "duplicates are expected, use the ellipsis (...) after the value expression to enable grouping by key.",
            "1:29",
        ),
        ("[for v in list : v.x]", "Unsupported attribute; Can't access attributes on a primitive-typed value (number).", "1:19"),
        # functions
        ("nofunc(1)", 'Call to unknown function; There is no function named "nofunc".', "1:1"),
        ("fail()", 'Error in function call; Call to function "fail" failed: it went wrong.', "1:1"),
        ("upper(1)", 'Error in function call; Call to function "upper" failed: a string is required.', "1:1"),
        ("x + upper(1)", 'Unknown variable; There is no variable named "x".', "1:1"),
        ("upper(nope)", 'Unknown variable; There is no variable named "nope".', "1:7"),
        (
            "add(1, nothing...)",
            "Invalid expanding argument value; The expanding argument (indicated by ...) must not be null.",
            "1:8",
        ),
        (
            "add(obj...)",
            "Invalid expanding argument value; The expanding argument (indicated by ...) must be of a tuple, list, or set type.",
            "1:5",
        ),
        ("try()", 'Error in function call; Call to function "try" failed: at least one argument is required.', "1:1"),
        (
            "try(nope, obj.zz)",
            'Error in function call; Call to function "try" failed: no expression succeeded:\n'
            "- Unknown variable (at e.hcl:1:5)\n"
            '  There is no variable named "nope".\n'
            "- Unsupported attribute (at e.hcl:1:14)\n"
            '  This object does not have an attribute named "zz".',
            "1:1",
        ),
        (
            "can()",
            'Not enough function arguments; Function "can" expects 1 argument(s). Missing value for "expression".',
            "1:1",
        ),
        ("can(1, 2)", 'Too many function arguments; Function "can" expects only 1 argument(s).', "1:1"),
    ],
)
def test_evaluate_errors(src: str, message: str, where: str) -> None:
    with pytest.raises(BakeryError) as ei:
        ev(src)
    err = ei.value
    assert err.message == message
    assert err.pos is not None
    assert (err.pos.file, f"{err.pos.line}:{err.pos.col}") == ("e.hcl", where)


def test_hints() -> None:
    with pytest.raises(BakeryError) as ei:
        ev("nmu + 1")
    assert ei.value.hint == 'did you mean "num"?'
    with pytest.raises(BakeryError) as ei:
        ev("uper(str)")
    assert ei.value.hint == 'did you mean "upper"?'
    with pytest.raises(BakeryError) as ei:
        ev("obj.lst")
    assert ei.value.hint == 'did you mean "list"?'
    with pytest.raises(BakeryError) as ei:
        ev('obj["lst"]')
    assert ei.value.hint == 'did you mean "list"?'
    with pytest.raises(BakeryError) as ei:
        ev("[for value in list : valeu]")
    assert ei.value.hint == 'did you mean "value"?'


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("<<EOT\nhello ${str}\nEOT\n", "hello hello\n"),
        ("<<-EOT\n    a\n      b\n    EOT\n", "a\n  b\n"),
        ("<<-EOT\n  ${str}\n    x\n  EOT\n", "hello\n  x\n"),
        ("<<EOT\n%{ for v in strs ~}\nitem ${v}\n%{ endfor ~}\nEOT\n", "item a\nitem b\n"),
        ("<<EOT\n%{ if yes ~}\non\n%{ else ~}\noff\n%{ endif ~}\nEOT\n", "on\n"),
        ("<<EOT\n%{ for v in strs }\n${v}\n%{ endfor }\nEOT\n", "\na\n\nb\n\n"),
        # as in HCL, a line-leading literal emptied by a strip marker counts as
        # unindented, so nothing is removed from the other lines
        (
            "<<-EOT\n  list:\n  %{~ for v in list }\n    - ${v}\n  %{~ endfor }\n  EOT\n",
            "  list:\n\n    - 1\n\n    - 2\n\n    - 3\n\n",
        ),
        # ... and a line whose start was eaten by "~}" is not re-indented
        ("<<-EOT\n  list:\n  %{ for v in list ~}\n    - ${v}\n  %{ endfor ~}\n  EOT\n", "list:\n    - 1\n    - 2\n    - 3\n"),
    ],
)
def test_heredoc_values(src: str, want: str) -> None:
    assert ev_attr(src) == want


# --------------------------------------------------------------------------
# Contexts and lazy mappings


class Lazy(Mapping):
    """Computes values on access; "cycle" raises a BakeryError."""

    def __init__(self, data: Dict[str, Any]):
        self.data = data
        self.computed: List[str] = []

    def __getitem__(self, key: str) -> Any:
        if key == "cycle":
            raise BakeryError("reference cycle", Pos("x.hcl", 9, 9))
        self.computed.append(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.data, "cycle"])

    def __len__(self) -> int:
        return len(self.data) + 1

    def __contains__(self, key: object) -> bool:
        return key in self.data or key == "cycle"


def test_lazy_variables_and_errors_pass_through() -> None:
    lazy = Lazy({"a": 1, "b": 2})
    ctx = hcl.EvalContext(lazy, {})
    assert hcl.evaluate(hcl.parse_expression("a + 1", "e.hcl"), ctx) == 2
    assert lazy.computed == ["a"]
    with pytest.raises(BakeryError) as ei:
        hcl.evaluate(hcl.parse_expression("b + cycle", "e.hcl"), ctx)
    assert ei.value.message == "reference cycle"
    assert ei.value.pos == Pos("x.hcl", 9, 9)


def test_attribute_and_index_access_on_any_mapping() -> None:
    app = Lazy({"tags": ["t1", "t2"], "context": "."})
    target = Lazy({"app": app})
    ctx = hcl.EvalContext({"target": target}, {})

    def run(src: str) -> Any:
        return hcl.evaluate(hcl.parse_expression(src, "e.hcl"), ctx)

    assert run("target.app.tags") == ["t1", "t2"]
    assert run('target["app"]["context"]') == "."
    plain = hcl.EvalContext({"m": Lazy({"b": 1, "a": 2})}, {})
    with pytest.raises(BakeryError, match="reference cycle"):  # iterating reads every value
        hcl.evaluate(hcl.parse_expression("[for k, v in m : k]", "e.hcl"), plain)
    with pytest.raises(BakeryError) as ei:
        run("target.app.nope")
    assert ei.value.message == 'Unsupported attribute; This object does not have an attribute named "nope".'
    with pytest.raises(BakeryError) as ei:
        run("target.cycle")
    assert ei.value.message == "reference cycle"


def test_conditional_leaves_lazy_mappings_alone() -> None:
    lazy = Lazy({"x": 1})
    ctx = hcl.EvalContext({"lazy": lazy, "yes": True}, {})
    got = hcl.evaluate(hcl.parse_expression('yes ? lazy : {x = "a"}', "e.hcl"), ctx)
    assert got is lazy
    assert lazy.computed == []


def test_child_context() -> None:
    root = hcl.EvalContext({"a": 1, "b": 2}, FUNCS)
    child = root.child({"b": 20, "c": 30})
    e = hcl.parse_expression("[a, b, c, upper(\"x\")]", "e.hcl")
    assert hcl.evaluate(e, child) == [1, 20, 30, "X"]
    assert dict(child.variables) == {"a": 1, "b": 20, "c": 30}
    assert child.functions is root.functions
    grandchild = child.child({"a": 100})
    assert hcl.evaluate(e, grandchild) == [100, 20, 30, "X"]
    with pytest.raises(BakeryError) as ei:
        hcl.evaluate(hcl.parse_expression("d", "e.hcl"), grandchild)
    assert ei.value.message == 'Unknown variable; There is no variable named "d".'
    assert root.variables == {"a": 1, "b": 2}


def test_function_errors_from_other_exceptions_pass_through() -> None:
    def boom() -> Any:
        raise BakeryError("inner failure", Pos("lib.hcl", 2, 3))

    with pytest.raises(BakeryError) as ei:
        ev("boom()", functions={"boom": boom})
    assert ei.value.message == "inner failure"


def test_try_and_can_are_built_in_even_with_functions_of_that_name() -> None:
    funcs = {"try": lambda *a: "user try", "can": lambda *a: "user can"}
    assert ev("try(nope, 1)", functions=funcs) == 1
    assert ev("can(nope)", functions=funcs) is False


def test_function_expansion_passes_elements() -> None:
    seen: List[Any] = []

    def rec(*args: Any) -> Any:
        seen.append(args)
        return len(args)

    assert ev('rec(1, ["a", "b"]...)', functions={"rec": rec}) == 3
    assert seen == [(1, "a", "b")]


def test_template_results_are_nfc() -> None:
    assert ev('"e${"\\u0301"}"') == "\u00e9"


def test_evaluate_hand_built_template() -> None:
    p = Pos("t.toml", 1, 1)
    from bakery.bakefile.hcl import ast

    t = ast.TemplateExpr([ast.Literal(5, p), ast.Literal(True, p)], p)
    assert hcl.evaluate(t, hcl.EvalContext({}, {})) == "5true"


# --------------------------------------------------------------------------
# Static helpers


@pytest.mark.parametrize(
    ("src", "single", "want"),
    [
        ("[a, b, c]", False, ["a", "b", "c"]),
        ("[]", False, []),
        ("[a, null, true]", False, ["a", "null", "true"]),
        ('[a, "b"]', False, None),
        ("[a.b]", False, None),
        ("[(a)]", False, None),
        ("a", False, None),
        ("rest", True, ["rest"]),
        ("[rest]", True, None),
        ('"rest"', True, None),
    ],
)
def test_static_names(src: str, single: bool, want: Any) -> None:
    assert hcl.static_names(hcl.parse_expression(src, "e.hcl"), single=single) == want


def _type(src: str) -> Any:
    t = hcl.type_expr(hcl.parse_expression(src, "e.hcl"))

    def plain(x: Any) -> Any:  # default expressions → their source text
        if x[0] == "object":
            return ("object", {k: (plain(v[0]), v[1], hcl.source_text(v[2]) if v[2] else None) for k, v in x[1].items()})
        if x[0] == "tuple":
            return ("tuple", [plain(e) for e in x[1]])
        if x[0] in ("list", "set", "map"):
            return (x[0], plain(x[1]))
        return x

    return plain(t)


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("string", ("primitive", "string")),
        ("number", ("primitive", "number")),
        ("bool", ("primitive", "bool")),
        ("any", ("any",)),
        ("list(string)", ("list", ("primitive", "string"))),
        ("set(number)", ("set", ("primitive", "number"))),
        ("map(any)", ("map", ("any",))),
        ("list(map(bool))", ("list", ("map", ("primitive", "bool")))),
        ("tuple([string, number])", ("tuple", [("primitive", "string"), ("primitive", "number")])),
        ("tuple([])", ("tuple", [])),
        (
            "object({a = string, b = optional(number), c = optional(list(string), [\"x\"])})",
            (
                "object",
                {
                    "a": (("primitive", "string"), False, None),
                    "b": (("primitive", "number"), True, None),
                    "c": (("list", ("primitive", "string")), True, '["x"]'),
                },
            ),
        ),
        ("map(object({a=string, b=optional(number, 1)}))",
         ("map", ("object", {"a": (("primitive", "string"), False, None), "b": (("primitive", "number"), True, "1")}))),
        ("object({})", ("object", {})),
        ("object({\n  name = string\n})", ("object", {"name": (("primitive", "string"), False, None)})),
    ],
)
def test_type_expr(src: str, want: Any) -> None:
    assert _type(src) == want


@pytest.mark.parametrize(
    ("src", "message", "where"),
    [
        ("list", "Invalid type specification; The list type constructor requires one argument specifying the element type.", "1:1"),
        ("map", "Invalid type specification; The map type constructor requires one argument specifying the element type.", "1:1"),
        ("object", "Invalid type specification; The object type constructor requires one argument specifying the attribute types as a map.", "1:1"),
        ("tuple", "Invalid type specification; The tuple type constructor requires one argument specifying the element types as a list.", "1:1"),
        ("strin", 'Invalid type specification; The keyword "strin" is not a valid type specification.', "1:1"),
        ('"string"', "Invalid type specification; A type specification is either a primitive type keyword (bool, number, string) or a complex type constructor call, like list(string).", "1:1"),
        ("string(1)", 'Invalid type specification; Primitive type keyword "string" does not expect arguments.', "1:1"),
        ("any()", 'Invalid type specification; Type constraint keyword "any" does not expect arguments.', "1:1"),
        ("list()", "Invalid type specification; The list type constructor requires one argument specifying the element type.", "1:1"),
        ("list(string, number)", "Invalid type specification; The list type constructor requires one argument specifying the element type.", "1:14"),
        ("lists(string)", 'Invalid type specification; Keyword "lists" is not a valid type constructor.', "1:1"),
        ("optional(string)", 'Invalid type specification; Keyword "optional" is valid only as a modifier for object type attributes.', "1:1"),
        ("tuple(string)", "Invalid type specification; Tuple type constructor requires a list of element types.", "1:7"),
        ("object([string])", "Invalid type specification; Object type constructor requires a map whose keys are attribute names and whose values are the corresponding attribute types.", "1:8"),
        ('object({"a" = string})', "Invalid type specification; Object constructor map keys must be attribute names.", "1:9"),
        ("object({a = optional()})", "Invalid type specification; Optional attribute modifier requires the attribute type as its argument.", "1:13"),
        ("object({a = optional(string, 1, 2)})", "Invalid type specification; Optional attribute modifier expects at most two arguments: the attribute type, and a default value.", "1:13"),
        ("list(strng)", 'Invalid type specification; The keyword "strng" is not a valid type specification.', "1:6"),
    ],
)
def test_type_expr_errors(src: str, message: str, where: str) -> None:
    with pytest.raises(BakeryError) as ei:
        hcl.type_expr(hcl.parse_expression(src, "e.hcl"))
    assert ei.value.message == message
    assert ei.value.pos is not None
    assert f"{ei.value.pos.line}:{ei.value.pos.col}" == where


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("a", [("a", [])]),
        ("a.b.c", [("a", ["b", "c"])]),
        ("target.app.tags[0]", [("target", ["app", "tags"])]),
        ('target["app"].tags', [("target", ["app", "tags"])]),
        ("a[0].b", [("a", [])]),
        ("a[i].b", [("a", []), ("i", [])]),
        ('"${x}-${y.z}"', [("x", []), ("y", ["z"])]),
        ("f(a, b.c) + d", [("a", []), ("b", ["c"]), ("d", [])]),
        ("[for v in xs : v.name if v.on && flag]", [("xs", []), ("flag", [])]),
        ("{for k, v in m : k => v + base}", [("m", []), ("base", [])]),
        ("xs[*].name", [("xs", [])]),
        ("xs[*].items[idx]", [("xs", []), ("idx", [])]),
        ("{a = b, (c) = d}", [("b", []), ("c", []), ("d", [])]),
        ("true ? null : 1", []),
        ("a ? a : a", [("a", []), ("a", []), ("a", [])]),
        ('"%{ for x in xs }${x}${y}%{ endfor }"', [("xs", []), ("y", [])]),
    ],
)
def test_variables_of(src: str, want: Any) -> None:
    assert hcl.variables_of(hcl.parse_expression(src, "e.hcl")) == want


def test_source_text() -> None:
    body = hcl.parse('a = merge(x, {\n  b = "c"\n})  # comment\nt "x" { y = 1 + 2 }\n', "f.hcl")
    assert hcl.source_text(body.attributes["a"].expr) == 'merge(x, {\n  b = "c"\n})'
    assert hcl.source_text(body.blocks[0].body.attributes["y"].expr) == "1 + 2"
    assert hcl.source_text(body.blocks[0]) == 't "x" { y = 1 + 2 }'
    assert hcl.source_text(hcl.parse_template("a ${b} c", "j.json", 4, 9)) == "a ${b} c"
