"""HCL native syntax parser: structure, positions, errors and golden files.

Golden files: ``tests/data/hcl/NAME.hcl`` parses to ``NAME.ast`` (the
``ast.dump`` listing) or fails with ``NAME.err`` (the rendered error).
Regenerate them with ``UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_hcl_parser.py``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, List

import pytest

from bakery.bakefile import hcl
from bakery.bakefile.hcl import ast
from bakery.errors import BakeryError, Pos

DATA = Path(__file__).resolve().parent.parent / "data" / "hcl"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def sx(n: Any) -> str:
    """A compact s-expression of an expression tree (no positions)."""
    if isinstance(n, ast.Literal):
        if n.keyword is not None:
            return n.keyword
        return repr(n.value)
    if isinstance(n, ast.Variable):
        return n.name
    if isinstance(n, ast.TemplateExpr):
        return "(tmpl " + " ".join(sx(p) for p in n.parts) + ")"
    if isinstance(n, ast.TemplateWrap):
        return f"(wrap {sx(n.wrapped)})"
    if isinstance(n, ast.TemplateJoin):
        return f"(join {sx(n.tuple)})"
    if isinstance(n, ast.GetAttr):
        return f"(. {sx(n.source)} {n.name})"
    if isinstance(n, ast.Index):
        return f"([] {sx(n.collection)} {sx(n.key)})"
    if isinstance(n, ast.Splat):
        return f"({'.*' if n.attr_only else '[*]'} {sx(n.source)} {sx(n.each)})"
    if isinstance(n, ast.SplatItem):
        return "@"
    if isinstance(n, ast.FunctionCall):
        args = " ".join(sx(a) for a in n.args)
        return f"(call {n.name}{' ' + args if args else ''}{' ...' if n.expand_final else ''})"
    if isinstance(n, ast.Conditional):
        return f"(? {sx(n.condition)} {sx(n.true_expr)} {sx(n.false_expr)})"
    if isinstance(n, ast.BinaryOp):
        return f"({n.op} {sx(n.lhs)} {sx(n.rhs)})"
    if isinstance(n, ast.UnaryOp):
        return f"({n.op}u {sx(n.operand)})"
    if isinstance(n, ast.TupleCons):
        return "[" + " ".join(sx(x) for x in n.items) + "]"
    if isinstance(n, ast.ObjectCons):
        return "{" + " ".join(f"{sx(k)}={sx(v)}" for k, v in n.items) + "}"
    if isinstance(n, ast.ObjectKey):
        return f"'{n.name}'" if n.name is not None else sx(n.wrapped)
    if isinstance(n, ast.ForExpr):
        names = f"{n.key_var},{n.value_var}" if n.key_var else n.value_var
        out = f"(for {names} {sx(n.collection)}"
        if n.key_expr is not None:
            out += f" {sx(n.key_expr)} =>"
        out += f" {sx(n.value_expr)}"
        if n.group:
            out += " ..."
        if n.condition is not None:
            out += f" if {sx(n.condition)}"
        return out + ")"
    if isinstance(n, ast.Parens):
        return f"({sx(n.expr)})"
    raise AssertionError(type(n))


def expr(src: str) -> Any:
    return hcl.parse_expression(src, "e.hcl")


def attr_expr(src: str) -> Any:
    return hcl.parse(f"a = {src}\n", "f.hcl").attributes["a"].expr


# --------------------------------------------------------------------------
# Expressions


@pytest.mark.parametrize(
    ("src", "want"),
    [
        # literals
        ("1", "1"),
        ("1.5", "1.5"),
        ("1e3", "1000"),
        ("2.5E-1", "0.25"),
        ("007", "7"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ('"a"', "(tmpl 'a')"),
        ('""', "(tmpl '')"),
        ("foo", "foo"),
        ("foo-bar_baz", "foo-bar_baz"),
        # precedence and associativity
        ("1 + 2 * 3", "(+ 1 (* 2 3))"),
        ("1 * 2 + 3", "(+ (* 1 2) 3)"),
        ("(1 + 2) * 3", "(* ((+ 1 2)) 3)"),
        ("1 - 2 - 3", "(- (- 1 2) 3)"),
        ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
        ("7 % 3 * 2", "(* (% 7 3) 2)"),
        ("a || b && c", "(|| a (&& b c))"),
        ("a && b || c", "(|| (&& a b) c)"),
        ("a == b && c != d", "(&& (== a b) (!= c d))"),
        ("1 < 2 == true", "(== (< 1 2) true)"),
        ("a >= b + 1", "(>= a (+ b 1))"),
        ("a <= b", "(<= a b)"),
        ("a > b", "(> a b)"),
        ("-1 + 2", "(+ (-u 1) 2)"),
        ("- -1", "(-u (-u 1))"),
        ("-a.b", "(-u (. a b))"),
        ("!a && b", "(&& (!u a) b)"),
        ("!a.b[0]", "(!u ([] (. a b) 0))"),
        ("a ? b : c", "(? a b c)"),
        ("a ? b : c ? d : e", "(? a b (? c d e))"),
        ("a ? b ? c : d : e", "(? a (? b c d) e)"),
        ("a || b ? 1 + 2 : 3", "(? (|| a b) (+ 1 2) 3)"),
        # traversals
        ("a.b.c", "(. (. a b) c)"),
        ("a[0]", "([] a 0)"),
        ('a["k"]', "([] a (tmpl 'k'))"),
        ("a[b + 1]", "([] a (+ b 1))"),
        ("a.0", "([] a 0)"),
        ("a.0.b", "(. ([] a 0) b)"),
        ("a[*]", "([*] a @)"),
        ("a[*].b", "([*] a (. @ b))"),
        ("a[*].b[0]", "([*] a ([] (. @ b) 0))"),
        ("a[*].b[*].c", "([*] a ([*] (. @ b) (. @ c)))"),
        ("a.*.b", "(.* a (. @ b))"),
        ("a.*.b[0]", "([] (.* a (. @ b)) 0)"),
        ("a.*.b.0", "(.* a ([] (. @ b) 0))"),
        ("a.*", "(.* a @)"),
        ("f(a)[0].b", "(. ([] (call f a) 0) b)"),
        ("[1, 2][0]", "([] [1 2] 0)"),
        ("(a).b", "(. (a) b)"),
        # function calls
        ("f()", "(call f)"),
        ("f(1, 2)", "(call f 1 2)"),
        ("f(1, 2,)", "(call f 1 2)"),
        ("f(xs...)", "(call f xs ...)"),
        ("f(1, xs...)", "(call f 1 xs ...)"),
        ("f(\n  1,\n  2\n)", "(call f 1 2)"),
        ("ns::f(1)", "(call ns::f 1)"),
        ("a::b::c()", "(call a::b::c)"),
        # collections
        ("[]", "[]"),
        ("[1, 2, 3]", "[1 2 3]"),
        ("[1, 2, 3,]", "[1 2 3]"),
        ("[\n  1,\n  2\n]", "[1 2]"),
        ("{}", "{}"),
        ("{a = 1}", "{'a'=1}"),
        ("{a: 1, b: 2}", "{'a'=1 'b'=2}"),
        ('{"a" = 1}', "{(tmpl 'a')=1}"),
        ("{(a) = 1}", "{(a)=1}"),
        ("{a.b = 1}", "{(. a b)=1}"),
        ("{1 = 2}", "{1=2}"),
        ("{true = 1, null = 2}", "{'true'=1 'null'=2}"),
        ("{a = 1, b = 2,}", "{'a'=1 'b'=2}"),
        ('{for = 1}', None),
        ("{\n  for k, v in m : k => v\n}", "(for k,v m k => v)"),
        # for expressions
        ("[for x in xs : x]", "(for x xs x)"),
        ("[for i, x in xs : x if i > 0]", "(for i,x xs x if (> i 0))"),
        ("{for k, v in m : k => v}", "(for k,v m k => v)"),
        ("{for x in xs : x.k => x...}", "(for x xs (. x k) => x ...)"),
        ("{for x in xs : x => x... if x}", "(for x xs x => x ... if x)"),
        ("[for x in xs:\n  x\n]", "(for x xs x)"),
        ("[(for), 1]", "[(for) 1]"),
        # templates
        ('"${a}"', "(wrap a)"),
        ('"${a}${b}"', "(tmpl a b)"),
        ('"x${a}"', "(tmpl 'x' a)"),
        ('"${a.b[0]}"', "(wrap ([] (. a b) 0))"),
        ('"${ a }"', "(wrap a)"),
        ('"${"${a}"}"', "(wrap (wrap a))"),
        ('"$${a}"', "(tmpl '${a}')"),
        ('"%%{a}"', "(tmpl '%{a}')"),
        ('"$$"', "(tmpl '$$')"),
        ('"100%"', "(tmpl '100%')"),
        ('"a$b"', "(tmpl 'a$b')"),
        ('"%{if a}x%{endif}"', "(tmpl (? a (tmpl 'x') (tmpl '')))"),
        ('"%{if a}x%{else}y%{endif}"', "(tmpl (? a (tmpl 'x') (tmpl 'y')))"),
        ('"%{for x in xs}${x}%{endfor}"', "(tmpl (join (for x xs (tmpl x))))"),
        ('"%{for k, v in m}${k}%{endfor}"', "(tmpl (join (for k,v m (tmpl k))))"),
        ('"%{ if a }%{ if b }1%{ endif }%{ endif }"', "(tmpl (? a (tmpl (? b (tmpl '1') (tmpl ''))) (tmpl '')))"),
        ('"${f({a = 1})}"', "(wrap (call f {'a'=1}))"),
        ('"${ {a = "}"}.a }"', "(wrap (. {'a'=(tmpl '}')} a))"),
        # strip markers
        ('"a ${~ b ~} c"', "(tmpl 'a' b 'c')"),
        ('"a ${b ~} c"', "(tmpl 'a ' b 'c')"),
        ('"a ${~ b} c"', "(tmpl 'a' b ' c')"),
        ('"${"x" ~}${" y"}"', "(tmpl (tmpl 'x') (tmpl ' y'))"),
        ('" %{~ if a ~} x %{~ endif ~} "', "(tmpl '' (? a (tmpl 'x') (tmpl '')) '')"),
        ('" %{ if a ~} x %{ else ~} y %{~ endif } "', "(tmpl ' ' (? a (tmpl 'x ') (tmpl 'y')) ' ')"),
        # escapes
        (r'"a\nb"', "(tmpl 'a\\nb')"),
        (r'"\r\t\"\\"', "(tmpl '\\r\\t\"\\\\')"),
        (r'"\u00e9"', "(tmpl 'é')"),
        (r'"\U0001F600"', "(tmpl '😀')"),
        (r'"x\n${a}\t"', "(tmpl 'x\\n' a '\\t')"),
        ('"e\u0301"', "(tmpl 'é')"),  # NFC normalization, as cty strings
    ],
)
def test_expression_structure(src: str, want: str) -> None:
    if want is None:
        with pytest.raises(BakeryError):
            expr(src)
        return
    assert sx(expr(src)) == want
    assert sx(attr_expr(src)) == want


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("<<EOT\nhello\nEOT\n", "(tmpl 'hello\\n')"),
        ("<<EOT\nhello\n  world\nEOT\n", "(tmpl 'hello\\n  world\\n')"),
        ("<<EOT\nEOT\n", "(tmpl '')"),
        ("<<EOT\n  indented\n  EOT\n", "(tmpl '  indented\\n')"),
        ("<<EOT\na ${b} c\nEOT\n", "(tmpl 'a ' b ' c\\n')"),
        ("<<EOT\n${b}\nEOT\n", "(tmpl b '\\n')"),
        ("<<EOT\n$${b} %%{c}\nEOT\n", "(tmpl '${b} %{c}\\n')"),
        ('<<EOT\n"quoted" \\n\nEOT\n', "(tmpl '\"quoted\" \\\\n\\n')"),
        ("<<EOT\nEOT is not the end\nEOT\n", "(tmpl 'EOT is not the end\\n')"),
        ("<<-EOT\n    a\n      b\n    EOT\n", "(tmpl 'a\\n  b\\n')"),
        ("<<-EOT\n    a\n\n    b\n  EOT\n", "(tmpl 'a\\n\\nb\\n')"),
        ("<<-EOT\n    a\n  b\n    EOT\n", "(tmpl '  a\\nb\\n')"),
        ("<<-EOT\n\ta\n\t\tb\n\tEOT\n", "(tmpl 'a\\n\\tb\\n')"),
        # a line starting with an interpolation has no leading space
        ("<<-EOT\n    a\n${b}\n    EOT\n", "(tmpl '    a\\n' b '\\n')"),
        ("<<-EOT\n    a ${b}\n    c\n    EOT\n", "(tmpl 'a ' b '\\nc\\n')"),
        ("<<-EOT\n  ${b}\n    c\n  EOT\n", "(tmpl '' b '\\n  c\\n')"),
        # strip markers only reach the neighbouring literal on the same line
        ("<<EOT\n%{ if a ~}\n  x\n%{ endif ~}\nEOT\n", "(tmpl (? a (tmpl '  x\\n') (tmpl '')) '')"),
        ("<<EOT\nx\n%{~ if a }y%{ endif }\nEOT\n", "(tmpl 'x' (? a (tmpl 'y') (tmpl '')) '\\n')"),
        ("<<EOT\n  ${~ a}\nEOT\n", "(tmpl '' a '\\n')"),
        ("<<EOT\n%{ for x in xs ~}\n${x}\n%{ endfor ~}\nEOT\n", "(tmpl (join (for x xs (tmpl '' x '\\n'))) '')"),
        ("<<EOT\r\nwin\r\nEOT\r\n", "(tmpl 'win\\r\\n')"),
        ("<<My-Marker_1\nx\nMy-Marker_1\n", "(tmpl 'x\\n')"),
    ],
)
def test_heredoc(src: str, want: str) -> None:
    assert sx(attr_expr(src)) == want


def test_heredoc_is_followed_by_a_newline_token() -> None:
    body = hcl.parse("a = <<EOT\nx\nEOT\nb = 2\n", "f.hcl")
    assert list(body.attributes) == ["a", "b"]
    assert body.attributes["b"].pos == Pos("f.hcl", 4, 1)


def test_nested_heredocs_and_strings() -> None:
    src = 'a = "${f(<<EOT\ninner ${"q${x}"}\nEOT\n)}"\n'
    assert sx(hcl.parse(src, "f.hcl").attributes["a"].expr) == "(wrap (call f (tmpl 'inner ' (tmpl 'q' x) '\\n')))"


# --------------------------------------------------------------------------
# Bodies


def test_body_structure() -> None:
    src = (
        "# leading comment\n"
        "top = 1\n"
        'variable "TAG" {\n'
        '  default = "x"\n'
        "}\n"
        "\n"
        'target "app" "second" ident {\n'
        "  /* inline */ tags = [TAG] // trailing\n"
        "  nested {\n"
        "    x = 1\n"
        "  }\n"
        "}\n"
        "one { a = 1 }\n"
        "empty {}\n"
        "empty2 {\n"
        "}\n"
    )
    body = hcl.parse(src, "f.hcl")
    assert list(body.attributes) == ["top"]
    assert [(b.type, b.labels) for b in body.blocks] == [
        ("variable", ["TAG"]),
        ("target", ["app", "second", "ident"]),
        ("one", []),
        ("empty", []),
        ("empty2", []),
    ]
    target = body.blocks[1]
    assert target.pos == Pos("f.hcl", 7, 1)
    assert target.label_pos == [Pos("f.hcl", 7, 8), Pos("f.hcl", 7, 14), Pos("f.hcl", 7, 23)]
    assert target.body.pos == Pos("f.hcl", 7, 29)
    assert target.body.end == Pos("f.hcl", 12, 2)
    assert list(target.body.attributes) == ["tags"]
    assert target.body.attributes["tags"].pos == Pos("f.hcl", 8, 16)
    assert target.body.blocks[0].type == "nested"
    assert list(target.body.blocks[0].body.attributes) == ["x"]
    assert list(body.blocks[2].body.attributes) == ["a"]
    assert body.pos == Pos("f.hcl", 1, 1)


def test_attributes_keep_source_order() -> None:
    body = hcl.parse("z = 1\na = 2\nm = 3\n", "f.hcl")
    assert list(body.attributes) == ["z", "a", "m"]


def test_attribute_positions_and_end() -> None:
    body = hcl.parse("  name   = foo(1, 2) # c\n", "f.hcl")
    a = body.attributes["name"]
    assert a.name == "name"
    assert a.pos == Pos("f.hcl", 1, 3)
    assert a.expr.pos == Pos("f.hcl", 1, 12)
    assert a.end == Pos("f.hcl", 1, 21)
    assert hcl.source_text(a.expr) == "foo(1, 2)"


def test_file_without_final_newline_and_crlf() -> None:
    assert list(hcl.parse("a = 1", "f.hcl").attributes) == ["a"]
    assert list(hcl.parse("b {\r\n  a = 1\r\n}\r\n", "f.hcl").blocks[0].body.attributes) == ["a"]
    assert list(hcl.parse("", "f.hcl").attributes) == []
    assert list(hcl.parse("\n\n# only a comment", "f.hcl").attributes) == []


def test_labels_with_escapes_are_decoded() -> None:
    b = hcl.parse('t "a\\"b" "\\u00e9" {}\n', "f.hcl").blocks[0]
    assert b.labels == ['a"b', "é"]


def test_byte_order_mark_is_skipped() -> None:
    assert list(hcl.parse("\ufeffa = 1\n", "f.hcl").attributes) == ["a"]


def test_parse_registers_the_source_for_error_rendering() -> None:
    with pytest.raises(BakeryError) as ei:
        hcl.parse("ok = 1\nbad = = 2\n", "registered.hcl")
    assert ei.value.render() == (
        'registered.hcl:2:7: error: Invalid expression; Expected the start of an expression, but found "=".\n'
        "    2 | bad = = 2\n"
        "      |       ^"
    )


def test_ast_pickles() -> None:
    body = hcl.parse('t "x" {\n  a = [for v in xs : "${v}-${1 + 2}"]\n}\n', "f.hcl")
    again = pickle.loads(pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL))
    assert ast.dump(again) == ast.dump(body)


def test_hand_built_nodes() -> None:
    p = Pos("j.json", 3, 4)
    lit = ast.Literal("v", p)
    obj = ast.ObjectCons([(ast.Literal("k", p), ast.TupleCons([lit], p))], p)
    attr = ast.Attribute("a", obj, p)
    body = ast.Body({"a": attr}, [ast.Block("t", ["x"], [p], ast.Body({}, [], p), p)], p)
    assert body.blocks[0].label_pos == [p]
    assert attr.pos == p and attr.end is None and hcl.source_text(obj) is None
    assert hcl.evaluate(obj, hcl.EvalContext({}, {})) == {"k": ["v"]}


# --------------------------------------------------------------------------
# Positions


def _find(node: Any, cls: type, nth: int = 0) -> Any:
    found: List[Any] = []

    def walk(n: Any) -> None:
        if isinstance(n, cls):
            found.append(n)
        for c in ast.children(n):
            walk(c)

    walk(node)
    return found[nth]


@pytest.mark.parametrize(
    ("src", "cls", "nth", "line", "col"),
    [
        ("a = b + c\n", ast.BinaryOp, 0, 1, 5),
        ("a = b + c\n", ast.Variable, 1, 1, 9),
        ("a = [\n  1,\n  x\n]\n", ast.Variable, 0, 3, 3),
        ('a = "ab${x}"\n', ast.Variable, 0, 1, 10),
        ('a = "ab${x}"\n', ast.Literal, 0, 1, 6),
        ("a = <<EOT\n  hi ${x}\nEOT\n", ast.Variable, 0, 2, 8),
        ("a = <<-EOT\n    hi ${x}\n  EOT\n", ast.Literal, 0, 2, 5),
        ("a = f(x)\n", ast.FunctionCall, 0, 1, 5),
        ("a = x.y\n", ast.GetAttr, 0, 1, 5),
        ("a = { k = v }\n", ast.ObjectKey, 0, 1, 7),
        # columns count characters, not bytes; a tab is one column
        ('ü = "äöü${x}"\n', ast.Variable, 0, 1, 11),
        ('a = "😀😀" + x\n', ast.Variable, 0, 1, 12),
        ("\ta\t=\tx\n", ast.Variable, 0, 1, 6),
        ("a = 1 /* ünïcödé */ + x\n", ast.Variable, 0, 1, 23),
        ("# ünïcödé\na = x\n", ast.Variable, 0, 2, 5),
    ],
)
def test_positions(src: str, cls: type, nth: int, line: int, col: int) -> None:
    node = _find(hcl.parse(src, "f.hcl"), cls, nth)
    assert node.pos == Pos("f.hcl", line, col)


def test_unicode_identifiers() -> None:
    body = hcl.parse('größe = "x"\nπ = größe\n', "f.hcl")
    assert list(body.attributes) == ["größe", "π"]
    assert body.attributes["π"].expr.pos == Pos("f.hcl", 2, 5)


def test_get_attr_and_index_operator_positions() -> None:
    e = expr("abc.def[0]")
    assert e.op_pos == Pos("e.hcl", 1, 8)
    assert e.collection.op_pos == Pos("e.hcl", 1, 4)


@pytest.mark.parametrize(
    ("fn", "text", "line", "col", "want_var", "want_pos"),
    [
        (hcl.parse_template, "abc ${x}", 1, 1, "x", (1, 7)),
        (hcl.parse_template, "abc ${x}", 5, 10, "x", (5, 16)),
        (hcl.parse_template, "a\nb ${x}", 5, 10, "x", (6, 5)),
        (hcl.parse_expression, "1 + x", 3, 7, "x", (3, 11)),
        (hcl.parse_expression, "[\n  x]", 3, 7, "x", (4, 3)),
    ],
)
def test_offset_parsing(fn: Any, text: str, line: int, col: int, want_var: str, want_pos: Any) -> None:
    e = fn(text, "j.json", line, col)
    v = _find(e, ast.Variable)
    assert v.name == want_var
    assert v.pos == Pos("j.json", *want_pos)


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("${x}", "(wrap x)"),
        ("${x}${y}", "(tmpl x y)"),
        ("plain", "(tmpl 'plain')"),
        ("", "(tmpl '')"),
        ("a\\nb", "(tmpl 'a\\\\nb')"),  # no backslash escapes outside quotes
        ('say "hi" ${x}', "(tmpl 'say \"hi\" ' x)"),
        ("$${x}", "(tmpl '${x}')"),
        ("cost: 5$", "(tmpl 'cost: 5$')"),
        ("100%", "(tmpl '100%')"),
        ("line1\nline2 ${x}\n", "(tmpl 'line1\\nline2 ' x '\\n')"),
        ("%{ if x }y%{ endif }", "(tmpl (? x (tmpl 'y') (tmpl '')))"),
        ("a ${~ x ~} b", "(tmpl 'a' x 'b')"),
    ],
)
def test_parse_template(src: str, want: str) -> None:
    assert sx(hcl.parse_template(src, "j.json")) == want


# --------------------------------------------------------------------------
# Errors: exact message and position


@pytest.mark.parametrize(
    ("src", "message", "where"),
    [
        # lexical
        ("a = 1 & 2\n", 'Unsupported operator; Bitwise operators are not supported. Did you mean boolean AND ("&&")?', "1:7"),
        ("a = 1 | 2\n", 'Unsupported operator; Bitwise operators are not supported. Did you mean boolean OR ("||")?', "1:7"),
        ("a = 'x'\n", 'Invalid character; Single quotes are not valid. Use double quotes (") to enclose strings.', "1:5"),
        (
            "a = 1;\n",
            'Invalid character; The ";" character is not valid. Use newlines to separate arguments and blocks, '
            "and commas to separate items in collection values.",
            "1:6",
        ),
        ("a = 1 @ 2\n", "Invalid character; This character is not used within the language.", "1:7"),
        ("a = 1\nb = 2 /* open\n", 'Unterminated comment; There is no closing "*/" for this comment before the end of the file.', "2:7"),
        # invalid characters are reported before syntax errors, as HCL does
        ("a = = 1\nb = 'x'\n", 'Invalid character; Single quotes are not valid. Use double quotes (") to enclose strings.', "2:5"),
        # structure
        (
            "a = 1\na = 2\n",
            'Attribute redefined; The argument "a" was already set at f.hcl:1:1. Each argument may be set only once.',
            "2:1",
        ),
        ("a = 1 b = 2\n", "Missing newline after argument; An argument definition must end with a newline.", "1:7"),
        (
            "a = 1, b = 2\n",
            "Unexpected comma after argument; Argument definitions must be separated by newlines, not commas. "
            "An argument definition must end with a newline.",
            "1:6",
        ),
        ('"a" = 1\n', "Invalid argument name; Argument names must not be quoted.", "1:1"),
        (
            "a\n",
            "Argument or block definition required; An argument or block definition is required here. "
            'To set an argument, use the equals sign "=" to introduce the argument value.',
            "1:1",
        ),
        ("}\n", "Argument or block definition required; An argument or block definition is required here.", "1:1"),
        ("1 = 2\n", "Argument or block definition required; An argument or block definition is required here.", "1:1"),
        (
            't "x" {\n  a = 1\n',
            "Unclosed configuration block; There is no closing brace for this block before the end of the file. "
            "This may be caused by incorrect brace nesting elsewhere in this file.",
            "1:7",
        ),
        (
            't "x" { a = 1',
            "Unclosed configuration block; There is no closing brace for this block before the end of the file. "
            "This may be caused by incorrect brace nesting elsewhere in this file.",
            "1:7",
        ),
        (
            't "x" = {}\n',
            'Invalid block definition; The equals sign "=" indicates an argument definition, '
            "and must not be used when defining a block.",
            "1:7",
        ),
        (
            't "x"\n{}\n',
            'Invalid block definition; A block definition must have block content delimited by "{" and "}", '
            "starting on the same line as the block header.",
            "1:6",
        ),
        (
            't "x" 1 {}\n',
            'Invalid block definition; Either a quoted string block label or an opening brace ("{") is expected here.',
            "1:7",
        ),
        (
            't "a${x}" {}\n',
            'Invalid string literal; Template sequences are not allowed in this string. To include a literal "$", '
            'double it (as "$$") to escape it.',
            "1:5",
        ),
        ("t {} x = 1\n", "Missing newline after block definition; A block definition must end with a newline.", "1:6"),
        (
            "t { a = 1, b = 2 }\n",
            "Invalid single-argument block definition; Single-line block syntax can include only one argument "
            "definition. To define multiple arguments, use the multi-line block syntax with one argument "
            "definition per line.",
            "1:10",
        ),
        (
            "t { a = 1\n}\n",
            "Invalid single-argument block definition; An argument definition on the same line as its containing "
            "block creates a single-line block definition, which must also be closed on the same line. Place the "
            "block's closing brace immediately after the argument definition.",
            "1:10",
        ),
        (
            "t { n {} }\n",
            "Argument definition required; A single-line block definition can contain only a single argument. "
            'If you meant to define argument "n", use an equals sign to assign it a value. To define a nested '
            "block, place it on a line of its own within its parent block.",
            "1:5",
        ),
        # expressions
        ("a = = 1\n", 'Invalid expression; Expected the start of an expression, but found "=".', "1:5"),
        ("a = \n", "Invalid expression; Expected the start of an expression, but found a newline.", "1:5"),
        ("a = ", "Missing expression; Expected the start of an expression, but found the end of the file.", "1:5"),
        ("a = 1 +\n", "Invalid expression; Expected the start of an expression, but found a newline.", "1:8"),
        ("a = ]\n", 'Invalid expression; Expected the start of an expression, but found "]".', "1:5"),
        ("a = x\n  .y\n", 'Argument or block definition required; An argument or block definition is required here.', "2:3"),
        (
            "a = c ? 1\n",
            "Missing false expression in conditional; The conditional operator (...?...:...) requires a false "
            "expression, delimited by a colon.",
            "1:10",
        ),
        ("a = (1 + 2\n", "Unbalanced parentheses; Expected a closing parenthesis to terminate the expression.", "2:1"),
        (
            "a = [1, 2\n",
            "Unterminated tuple constructor expression; There is no corresponding closing bracket before the end "
            "of the file. This may be caused by incorrect bracket nesting elsewhere in this file.",
            "1:5",
        ),
        ("a = [1 2]\n", "Missing item separator; Expected a comma to mark the beginning of the next item.", "1:8"),
        (
            "a = {b = 1",
            "Unterminated object constructor expression; There is no corresponding closing brace before the end "
            "of the file. This may be caused by incorrect brace nesting elsewhere in this file.",
            "1:5",
        ),
        (
            "a = {b = 1 c = 2}\n",
            "Missing attribute separator; Expected a newline or comma to mark the beginning of the next attribute.",
            "1:12",
        ),
        ("a = {b}\n", 'Missing key/value separator; Expected an equals sign ("=") to mark the beginning of the attribute value.', "1:7"),
        ("a = {b, c = 1}\n", 'Missing attribute value; Expected an attribute value, introduced by an equals sign ("=").', "1:7"),
        (
            "a = {b c}\n",
            'Missing key/value separator; Expected an equals sign ("=") to mark the beginning of the attribute '
            "value. If you intended to given an attribute name containing periods or spaces, write the name in "
            "quotes to create a string literal.",
            "1:8",
        ),
        ("a = {for = 1}\n", "Invalid 'for' expression; For expression requires variable name after 'for'.", "1:10"),
        ("a = [for 1 in x: 1]\n", "Invalid 'for' expression; For expression requires variable name after 'for'.", "1:10"),
        ("a = [for k, in x: 1]\n", "Invalid 'for' expression; For expression requires the 'in' keyword after its name declarations.", "1:16"),
        ("a = [for k, 1 in x: 1]\n", "Invalid 'for' expression; For expression requires value variable name after comma.", "1:13"),
        ("a = [for x y: 1]\n", "Invalid 'for' expression; For expression requires the 'in' keyword after its name declarations.", "1:12"),
        ("a = [for x in y 1]\n", "Invalid 'for' expression; For expression requires a colon after the collection expression.", "1:17"),
        ("a = [for x in y: x, 1]\n", "Invalid 'for' expression; Extra characters after the end of the 'for' expression.", "1:19"),
        ("a = [for x in y: x => x]\n", "Invalid 'for' expression; Key expression is not valid when building a tuple.", "1:18"),
        ("a = [for x in y: x...]\n", "Invalid 'for' expression; Grouping ellipsis (...) cannot be used when building a tuple.", "1:19"),
        ("a = {for x in y: x}\n", "Invalid 'for' expression; Key expression is required when building an object.", "1:18"),
        ("a = f(1 2)\n", "Missing argument separator; A comma is required to separate each function argument from the next.", "1:9"),
        (
            "a = f(1\n",
            "Unterminated function call; There is no closing parenthesis for this function call before the end "
            "of the file. This may be caused by incorrect parenthesis nesting elsewhere in this file.",
            "1:5",
        ),
        (
            "a = f(x..., y)\n",
            "Missing closing parenthesis; An expanded function argument (with ...) must be immediately followed "
            "by closing parentheses.",
            "1:8",
        ),
        (
            "a = f::(1)\n",
            "Missing function name; Function scope resolution symbol :: must be followed by a function name in this scope.",
            "1:8",
        ),
        ("a = x.\n", "Invalid attribute name; An attribute name is required after a dot.", "1:7"),
        ("a = x.[0]\n", "Invalid attribute name; An attribute name is required after a dot.", "1:7"),
        (
            "a = x.0.1\n",
            "Invalid legacy index syntax; When using the legacy index syntax, chaining two indexes together is not "
            "permitted. Use the proper index syntax instead, like [0][1].",
            "1:7",
        ),
        (
            "a = x.*.y.*\n",
            "Nested splat expression not allowed; A splat expression (*) cannot be used inside another "
            "attribute-only splat expression.",
            "1:11",
        ),
        (
            "a = x[*\n",
            'Missing close bracket on splat index; The star for a full splat operator must be immediately '
            'followed by a closing bracket ("]").',
            "1:8",
        ),
        ("a = x[0\n", 'Missing close bracket on index; The index operator must end with a closing bracket ("]").', "2:1"),
        # strings and templates
        ('a = "abc\n', "Unterminated template string; No closing marker was found for the string.", "1:9"),
        ('a = "abc', "Unterminated template string; No closing marker was found for the string.", "1:9"),
        ('a = "x${y}\n', "Unterminated template string; No closing marker was found for the string.", "1:11"),
        ("a = <<EOT\nabc\n", "Unterminated template string; No closing marker was found for the string.", "3:1"),
        (r'a = "\q"' + "\n", 'Invalid escape sequence; The symbol "q" is not a valid escape sequence selector.', "1:6"),
        (r'a = "ab\u12"' + "\n", "Invalid escape sequence; The \\u escape sequence must be followed by four hexadecimal digits.", "1:8"),
        (r'a = "\U1234"' + "\n", "Invalid escape sequence; The \\U escape sequence must be followed by eight hexadecimal digits.", "1:6"),
        (r'a = "\uD800"' + "\n", "Invalid escape sequence; Cannot encode character U+d800 in UTF-8.", "1:6"),
        (
            'a = "${x"\n',
            "Unclosed template interpolation sequence; There is no closing brace for this interpolation sequence "
            "before the end of the quoted template. This might be caused by incorrect nesting inside the given "
            "expression.",
            "1:6",
        ),
        (
            "a = <<EOT\n${x\n",
            "Unclosed template interpolation sequence; There is no closing brace for this interpolation sequence "
            "before the end of the file. This might be caused by incorrect nesting inside the given expression.",
            "2:1",
        ),
        (
            'a = "${x y}"\n',
            "Extra characters after interpolation expression; Expected a closing brace to end the interpolation "
            "expression, but found extra characters.",
            "1:10",
        ),
        (
            'a = "${a:b}"\n',
            "Extra characters after interpolation expression; Template interpolation doesn't expect a colon at "
            "this location. Did you intend this to be a literal sequence to be processed as part of another "
            'language? If so, you can escape it by starting with "$${" instead of just "${".',
            "1:9",
        ),
        (
            'a = "%{ 1 }"\n',
            'Invalid template directive; A template directive keyword ("if", "for", etc) is expected at the '
            "beginning of a %{ sequence.",
            "1:9",
        ),
        ('a = "%{ iff x }%{ endif }"\n', 'Invalid template control keyword; "iff" is not a valid template control keyword.', "1:9"),
        ('a = "%{ if x y }%{ endif }"\n', "Extra characters in if marker; Expected a closing brace to end the sequence, but found extra characters.", "1:14"),
        ('a = "%{ endif }"\n', "Unexpected endif directive; The control directives within this template are unbalanced.", "1:6"),
        ('a = "%{ else }"\n', "Unexpected else directive; The control directives within this template are unbalanced.", "1:6"),
        (
            'a = "%{ if x }y"\n',
            "Unexpected end of template; The if directive at f.hcl:1:6 is missing its corresponding endif directive.",
            "1:16",
        ),
        (
            'a = "%{ for v in x }y"\n',
            "Unexpected end of template; The for directive at f.hcl:1:6 is missing its corresponding endfor directive.",
            "1:22",
        ),
        (
            'a = "%{ if x }%{ else }%{ else }%{ endif }"\n',
            "Unexpected else directive; Already in the else clause for the if started at f.hcl:1:6.",
            "1:24",
        ),
        (
            'a = "%{ if x }%{ endfor }"\n',
            "Unexpected endfor directive; Expecting an endif directive for the if started at f.hcl:1:6.",
            "1:15",
        ),
        (
            'a = "%{ for v in x }%{ endif }"\n',
            "Unexpected endif directive; Expecting an endfor directive corresponding to the for directive at f.hcl:1:6.",
            "1:21",
        ),
        (
            'a = "%{ for v in x }%{ else }%{ endfor }"\n',
            "Unexpected else directive; An else clause is not expected for a for directive.",
            "1:21",
        ),
        ('a = "%{ for in x }%{ endfor }"\n', "Invalid 'for' directive; For directive requires 'in' keyword after names.", "1:16"),
        ('a = "%{ for 1 in x }%{ endfor }"\n', "Invalid 'for' directive; For directive requires variable name after 'for'.", "1:13"),
    ],
)
def test_parse_errors(src: str, message: str, where: str) -> None:
    with pytest.raises(BakeryError) as ei:
        hcl.parse(src, "f.hcl")
    err = ei.value
    assert err.message == message
    assert err.pos is not None
    assert f"{err.pos.line}:{err.pos.col}" == where
    assert err.pos.file == "f.hcl"


def test_error_hints() -> None:
    with pytest.raises(BakeryError) as ei:
        hcl.parse('a = "%{ iff x }%{ endif }"\n', "f.hcl")
    assert ei.value.hint == 'did you mean "if"?'
    with pytest.raises(BakeryError) as ei:
        hcl.parse("a = <<EOT\nabc\n  EOTX\n", "f.hcl")
    assert ei.value.hint == 'the heredoc started at f.hcl:1:5 ends at a line holding only "EOT"'


@pytest.mark.parametrize(
    ("fn", "src", "message", "where"),
    [
        (
            hcl.parse_expression,
            "1 2",
            "Extra characters after expression; An expression was successfully parsed, but extra characters "
            "were found after it.",
            "1:3",
        ),
        (hcl.parse_expression, "", "Missing expression; Expected the start of an expression, but found the end of the file.", "1:1"),
        (
            hcl.parse_template,
            "${x",
            "Unclosed template interpolation sequence; There is no closing brace for this interpolation sequence "
            "before the end of the file. This might be caused by incorrect nesting inside the given expression.",
            "1:1",
        ),
        (hcl.parse_template, "%{ if x }", "Unexpected end of template; The if directive at t.hcl:1:1 is missing its corresponding endif directive.", "1:10"),
    ],
)
def test_expression_and_template_errors(fn: Any, src: str, message: str, where: str) -> None:
    with pytest.raises(BakeryError) as ei:
        fn(src, "t.hcl")
    assert ei.value.message == message
    assert ei.value.pos is not None
    assert f"{ei.value.pos.line}:{ei.value.pos.col}" == where


def test_expression_newlines_are_insignificant() -> None:
    assert sx(expr("a\n+\nb")) == "(+ a b)"
    assert sx(expr("{\n a = 1\n b = 2\n}")) == "{'a'=1 'b'=2}"


# --------------------------------------------------------------------------
# Golden files


def _golden_cases() -> List[str]:
    return sorted(p.stem for p in DATA.glob("*.hcl"))


@pytest.mark.parametrize("name", _golden_cases())
def test_golden(name: str) -> None:
    src = DATA / f"{name}.hcl"
    text = src.read_text(encoding="utf-8")
    try:
        got = ast.dump(hcl.parse(text, f"{name}.hcl"))
        out = DATA / f"{name}.ast"
        stale = DATA / f"{name}.err"
    except BakeryError as err:
        got = err.render() + "\n"
        out = DATA / f"{name}.err"
        stale = DATA / f"{name}.ast"
    if UPDATE:
        out.write_text(got, encoding="utf-8")
        if stale.exists():
            stale.unlink()
    assert out.exists(), f"no golden file {out.name}; run with UPDATE_GOLDEN=1"
    assert got == out.read_text(encoding="utf-8")
