"""Recursive-descent parser for HCL native syntax (hashicorp/hcl's hclsyntax).

Parsing stops at the first error, raised as a :class:`BakeryError` whose
message is HCL's diagnostic summary and detail, ``"Summary; Detail"``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Dict, List, NoReturn, Optional, Tuple

from bakery.bakefile.hcl.ast import (
    Attribute,
    BinaryOp,
    Block,
    Body,
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
    Source,
    Splat,
    SplatItem,
    TemplateExpr,
    TemplateJoin,
    TemplateWrap,
    TupleCons,
    UnaryOp,
    Variable,
)
from bakery.bakefile.hcl.lexer import Token, tokenize, tokenize_template
from bakery.bakefile.values import norm_number
from bakery.errors import BakeryError, closest

__all__ = ["parse_body", "parse_expr", "parse_template_text"]

_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    ">": 4,
    ">=": 4,
    "<": 4,
    "<=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}

_KEYWORDS = {"true": True, "false": False, "null": None}

_INVALID = {
    "&": ("Unsupported operator", 'Bitwise operators are not supported. Did you mean boolean AND ("&&")?'),
    "|": ("Unsupported operator", 'Bitwise operators are not supported. Did you mean boolean OR ("||")?'),
    "^": ("Unsupported operator", 'Bitwise operators are not supported. Did you mean boolean NOT ("!")?'),
    "'": ("Invalid character", 'Single quotes are not valid. Use double quotes (") to enclose strings.'),
    "`": (
        "Invalid character",
        'The "`" character is not valid. To create a multi-line string, use the "heredoc" syntax, like "<<EOT".',
    ),
    ";": (
        "Invalid character",
        'The ";" character is not valid. Use newlines to separate arguments and blocks, '
        "and commas to separate items in collection values.",
    ),
}

_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{0,4}|U[0-9A-Fa-f]{0,8}|[\s\S]?)|\$\$\{|%%\{")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_TEMPLATE_KEYWORDS = ["if", "for", "else", "endif", "endfor"]


def _nfc(s: str) -> str:
    return s if s.isascii() else unicodedata.normalize("NFC", s)


def _describe(tok: Token) -> str:
    kind = tok[0]
    if kind == "eof":
        return "the end of the file"
    if kind in ("nl", "qnl"):
        return "a newline"
    if kind in ("str", "oquote"):
        return "a quoted string"
    if kind == "oheredoc":
        return "a heredoc"
    if kind == "ident":
        return f'"{tok[1]}"'
    if kind == "num":
        return f"the number {tok[1]}"
    if kind == "interp":
        return 'a "${" sequence'
    if kind == "ctrl":
        return 'a "%{" sequence'
    return f'"{tok[1]}"'


class _Parser:
    __slots__ = ("i", "skip", "src", "toks")

    def __init__(self, toks: List[Token], src: Source):
        self.toks = toks
        self.src = src
        self.i = 0
        self.skip = False  # True where newlines are insignificant

    # -- helpers ---------------------------------------------------------------

    def fail(self, summary: str, detail: str, offset: int, hint: Optional[str] = None) -> NoReturn:
        raise BakeryError(f"{summary}; {detail}", self.src.pos(offset), hint)

    def peek(self) -> Token:
        toks = self.toks
        t = toks[self.i]
        if self.skip and t[0] == "nl":
            i = self.i + 1
            while toks[i][0] == "nl":
                i += 1
            self.i = i
            t = toks[i]
        return t

    def where(self, offset: int) -> str:
        return str(self.src.pos(offset))

    # -- bodies ----------------------------------------------------------------

    def body(self, end: str, open_tok: Optional[Token]) -> Body:
        toks = self.toks
        attrs: Dict[str, Attribute] = {}
        blocks: List[Block] = []
        start = open_tok[2] if open_tok is not None else 0
        while True:
            t = toks[self.i]
            kind = t[0]
            if kind == "nl":
                self.i += 1
                continue
            if kind == end:
                self.i += 1
                return Body(attrs, blocks, None, self.src, start, t[3])
            if kind == "ident":
                nxt = toks[self.i + 1]
                if nxt[0] == "=":
                    attr = self.attribute(False)
                    prev = attrs.get(attr.name)
                    if prev is not None:
                        self.fail(
                            "Attribute redefined",
                            f'The argument "{attr.name}" was already set at {prev.pos}. '
                            "Each argument may be set only once.",
                            attr._start,
                        )
                    attrs[attr.name] = attr
                    continue
                if nxt[0] in ("str", "oquote", "{", "ident"):
                    blocks.append(self.block())
                    continue
                self.fail(
                    "Argument or block definition required",
                    "An argument or block definition is required here. "
                    'To set an argument, use the equals sign "=" to introduce the argument value.',
                    t[2],
                )
            if kind in ("str", "oquote"):
                self.fail("Invalid argument name", "Argument names must not be quoted.", t[2])
            if kind == "eof" and open_tok is not None:
                self.fail(
                    "Unclosed configuration block",
                    "There is no closing brace for this block before the end of the file. "
                    "This may be caused by incorrect brace nesting elsewhere in this file.",
                    open_tok[2],
                )
            self.fail(
                "Argument or block definition required",
                "An argument or block definition is required here.",
                t[2],
            )

    def attribute(self, single_line: bool) -> Attribute:
        name_tok = self.toks[self.i]
        self.i += 2  # name and "="
        expr = self.expression()
        if not single_line:
            t = self.toks[self.i]
            if t[0] == "nl":
                self.i += 1
            elif t[0] != "eof":
                if t[0] == ",":
                    self.fail(
                        "Unexpected comma after argument",
                        "Argument definitions must be separated by newlines, not commas. "
                        "An argument definition must end with a newline.",
                        t[2],
                    )
                self.fail(
                    "Missing newline after argument",
                    "An argument definition must end with a newline.",
                    t[2],
                )
        return Attribute(name_tok[1], expr, None, self.src, name_tok[2], expr._end)  # type: ignore[arg-type]

    def block(self) -> Block:
        toks = self.toks
        type_tok = toks[self.i]
        self.i += 1
        labels: List[str] = []
        offsets: List[int] = []
        while True:
            t = toks[self.i]
            kind = t[0]
            if kind == "{":
                break
            if kind == "str":
                labels.append(self.string_literal(t))
                offsets.append(t[2])
                self.i += 1
            elif kind == "oquote":
                offsets.append(t[2])
                labels.append(self.quoted_label())
            elif kind == "ident":
                labels.append(t[1])  # type: ignore[arg-type]
                offsets.append(t[2])
                self.i += 1
            elif kind == "=":
                self.fail(
                    "Invalid block definition",
                    'The equals sign "=" indicates an argument definition, '
                    "and must not be used when defining a block.",
                    t[2],
                )
            elif kind == "nl":
                self.fail(
                    "Invalid block definition",
                    'A block definition must have block content delimited by "{" and "}", '
                    "starting on the same line as the block header.",
                    t[2],
                )
            else:
                self.fail(
                    "Invalid block definition",
                    'Either a quoted string block label or an opening brace ("{") is expected here.',
                    t[2],
                )
        open_tok = t
        self.i += 1
        nxt = toks[self.i]
        if nxt[0] in ("nl", "eof", "}"):
            body = self.body("}", open_tok)
        else:
            body = self.single_line_body(open_tok)
        close_end = body._end
        eol = toks[self.i]
        if eol[0] == "nl":
            self.i += 1
        elif eol[0] != "eof":
            self.fail(
                "Missing newline after block definition",
                "A block definition must end with a newline.",
                eol[2],
            )
        return Block(
            type_tok[1],  # type: ignore[arg-type]
            labels,
            None,
            body,
            None,
            self.src,
            type_tok[2],
            close_end,
            offsets,
        )

    def single_line_body(self, open_tok: Token) -> Body:
        toks = self.toks
        t = toks[self.i]
        if t[0] != "ident":
            self.fail(
                "Argument or block definition required",
                "An argument or block definition is required here.",
                t[2],
            )
        nxt = toks[self.i + 1]
        if nxt[0] != "=":
            if nxt[0] in ("str", "oquote", "{", "ident"):
                self.fail(
                    "Argument definition required",
                    "A single-line block definition can contain only a single argument. "
                    f'If you meant to define argument "{t[1]}", use an equals sign to assign it a value. '
                    "To define a nested block, place it on a line of its own within its parent block.",
                    t[2],
                )
            self.fail(
                "Argument or block definition required",
                "An argument or block definition is required here. "
                'To set an argument, use the equals sign "=" to introduce the argument value.',
                t[2],
            )
        attr = self.attribute(True)
        close = toks[self.i]
        kind = close[0]
        if kind == "}":
            self.i += 1
            return Body({attr.name: attr}, [], None, self.src, open_tok[2], close[3])
        if kind == ",":
            self.fail(
                "Invalid single-argument block definition",
                "Single-line block syntax can include only one argument definition. "
                "To define multiple arguments, use the multi-line block syntax "
                "with one argument definition per line.",
                close[2],
            )
        if kind == "nl":
            self.fail(
                "Invalid single-argument block definition",
                "An argument definition on the same line as its containing block creates a "
                "single-line block definition, which must also be closed on the same line. "
                "Place the block's closing brace immediately after the argument definition.",
                close[2],
            )
        if kind == "eof":
            self.fail(
                "Unclosed configuration block",
                "There is no closing brace for this block before the end of the file. "
                "This may be caused by incorrect brace nesting elsewhere in this file.",
                open_tok[2],
            )
        self.fail(
            "Invalid single-argument block definition",
            "A single-line block definition must end with a closing brace "
            "immediately after its single argument definition.",
            close[2],
        )

    def quoted_label(self) -> str:
        """A block label written as a template string: only literal text is allowed."""
        open_tok = self.toks[self.i]
        self.i += 1
        out: List[str] = []
        while True:
            t = self.toks[self.i]
            kind = t[0]
            if kind == "qlit":
                out.append(self.decode(t[1], t[2], True))  # type: ignore[arg-type]
                self.i += 1
            elif kind == "cquote":
                self.i += 1
                return _nfc("".join(out))
            elif kind in ("interp", "ctrl"):
                which = "$" if kind == "interp" else "%"
                self.fail(
                    "Invalid string literal",
                    f'Template sequences are not allowed in this string. To include a literal "{which}", '
                    f'double it (as "{which}{which}") to escape it.',
                    t[2],
                )
            elif kind == "eof":
                self.fail(
                    "Unterminated string literal",
                    "Unable to find the closing quote mark before the end of the file.",
                    open_tok[2],
                )
            else:
                self.fail("Invalid string literal", "This item is not valid in a string literal.", t[2])

    # -- strings -----------------------------------------------------------------

    def string_literal(self, tok: Token) -> str:
        raw: str = tok[1]  # type: ignore[assignment]
        if "\\" in raw:
            raw = self.decode(raw, tok[2] + 1, True)
        return _nfc(raw)

    def decode(self, raw: str, offset: int, quoted: bool) -> str:
        """Resolve escapes in literal template text starting at ``offset``."""
        if "\\" not in raw and "$${" not in raw and "%%{" not in raw:
            return raw
        if not quoted and "$${" not in raw and "%%{" not in raw:
            return raw

        def repl(m: re.Match[str]) -> str:
            s = m.group()
            c = s[0]
            if c != "\\":
                return s[1:]  # $${ -> ${, %%{ -> %{
            sel = s[1:2]
            if sel in _SIMPLE_ESCAPES:
                return _SIMPLE_ESCAPES[sel] + s[2:]
            at = offset + m.start()
            if sel == "u" or sel == "U":
                want = 4 if sel == "u" else 8
                if len(s) != want + 2:
                    self.fail(
                        "Invalid escape sequence",
                        f"The \\{sel} escape sequence must be followed by "
                        f"{'four' if sel == 'u' else 'eight'} hexadecimal digits.",
                        at,
                    )
                code = int(s[2:], 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    self.fail("Invalid escape sequence", f"Cannot encode character U+{code:04x} in UTF-8.", at)
                return chr(code)
            if sel == "":
                self.fail(
                    "Invalid escape sequence",
                    "Backslash must be followed by an escape sequence selector character.",
                    at,
                )
            self.fail("Invalid escape sequence", f'The symbol "{sel}" is not a valid escape sequence selector.', at)

        if not quoted:
            return raw.replace("$${", "${").replace("%%{", "%{")
        return _ESCAPE.sub(repl, raw)

    # -- expressions -------------------------------------------------------------

    def expression(self) -> Expr:
        # after any sub-parse, toks[i] is what peek() would return: the last
        # peek already stepped over insignificant newlines
        cond = self.binary(0)
        if self.toks[self.i][0] != "?":
            return cond
        self.i += 1
        true_expr = self.expression()
        t = self.toks[self.i]
        if t[0] != ":":
            self.fail(
                "Missing false expression in conditional",
                "The conditional operator (...?...:...) requires a false expression, delimited by a colon.",
                t[2],
            )
        self.i += 1
        false_expr = self.expression()
        return Conditional(cond, true_expr, false_expr, None, self.src, cond._start, false_expr._end)

    def binary(self, min_prec: int) -> Expr:
        lhs = self.term()
        t = self.peek()
        if t[0] == "." or t[0] == "[":
            lhs = self.traversals(lhs)
            t = self.toks[self.i]
        while True:
            prec = _BINARY.get(t[0])
            if prec is None or prec <= min_prec:
                return lhs
            self.i += 1
            rhs = self.binary(prec)
            lhs = BinaryOp(t[0], lhs, rhs, None, self.src, lhs._start, rhs._end)
            t = self.toks[self.i]

    def postfix(self) -> Expr:
        e = self.term()
        t = self.peek()
        if t[0] == "." or t[0] == "[":
            return self.traversals(e)
        return e

    def traversals(self, e: Expr) -> Expr:
        src = self.src
        start = e._start
        while True:
            t = self.peek()
            kind = t[0]
            if kind == ".":
                self.i += 1
                a = self.peek()
                akind = a[0]
                if akind == "ident":
                    self.i += 1
                    e = GetAttr(e, a[1], None, src, start, a[3], t[2])  # type: ignore[arg-type]
                elif akind == "num":
                    self.i += 1
                    e = Index(e, self.legacy_index(a, False), None, src, start, a[3], t[2])
                elif akind == "*":
                    self.i += 1
                    item = SplatItem(None, src, t[2], a[3])
                    each: Expr = item
                    end = a[3]
                    while self.peek()[0] == ".":
                        dot = self.toks[self.i]
                        self.i += 1
                        n = self.peek()
                        if n[0] == "num":
                            self.i += 1
                            each = Index(each, self.legacy_index(n, True), None, src, dot[2], n[3], dot[2])
                        elif n[0] == "ident":
                            self.i += 1
                            each = GetAttr(each, n[1], None, src, dot[2], n[3], dot[2])  # type: ignore[arg-type]
                        elif n[0] == "*":
                            self.fail(
                                "Nested splat expression not allowed",
                                "A splat expression (*) cannot be used inside another "
                                "attribute-only splat expression.",
                                n[2],
                            )
                        else:
                            self.fail("Invalid attribute name", "An attribute name is required after a dot.", n[2])
                        end = n[3]
                    e = Splat(e, each, item, True, None, src, start, end)
                else:
                    self.fail("Invalid attribute name", "An attribute name is required after a dot.", a[2])
            elif kind == "[":
                self.i += 1
                if self.peek()[0] == "*":
                    self.i += 1
                    close = self.peek()
                    if close[0] != "]":
                        self.fail(
                            "Missing close bracket on splat index",
                            'The star for a full splat operator must be immediately followed by a closing bracket ("]").',
                            close[2],
                        )
                    self.i += 1
                    item = SplatItem(None, src, t[2], close[3])
                    each = self.traversals(item)
                    end = max(each._end, close[3])
                    e = Splat(e, each, item, False, None, src, start, end)
                else:
                    outer = self.skip
                    self.skip = True
                    key = self.expression()
                    close = self.peek()
                    if close[0] != "]":
                        self.fail(
                            "Missing close bracket on index",
                            'The index operator must end with a closing bracket ("]").',
                            close[2],
                        )
                    self.i += 1
                    self.skip = outer
                    e = Index(e, key, None, src, start, close[3], t[2])
            else:
                return e

    def legacy_index(self, tok: Token, in_splat: bool) -> Expr:
        text: str = tok[1]  # type: ignore[assignment]
        if "." in text:
            first, _, second = text.partition(".")
            what = "with a full splat expression [*] instead" if in_splat else "instead"
            self.fail(
                "Invalid legacy index syntax",
                "When using the legacy index syntax, chaining two indexes together is not permitted. "
                f"Use the proper index syntax {what}, like [{first}][{second}].",
                tok[2],
            )
        return Literal(self.number(tok), None, self.src, tok[2], tok[3])

    def number(self, tok: Token) -> Any:
        text: str = tok[1]  # type: ignore[assignment]
        if "." in text or "e" in text or "E" in text:
            return norm_number(float(text))
        return int(text)

    def term(self) -> Expr:
        t = self.peek()
        kind = t[0]
        src = self.src
        if kind == "ident":
            self.i += 1
            nxt = self.peek()
            if nxt[0] == "(" or nxt[0] == "::":
                return self.call(t)
            name: str = t[1]  # type: ignore[assignment]
            if name in _KEYWORDS:
                return Literal(_KEYWORDS[name], None, src, t[2], t[3], name)
            return Variable(name, None, src, t[2], t[3])
        if kind == "str":
            self.i += 1
            lit = Literal(self.string_literal(t), None, src, t[2] + 1, t[3] - 1)
            return TemplateExpr([lit], None, src, t[2], t[3])
        if kind == "num":
            self.i += 1
            return Literal(self.number(t), None, src, t[2], t[3])
        if kind == "[":
            return self.tuple_cons()
        if kind == "{":
            return self.object_cons()
        if kind == "oquote":
            self.i += 1
            return self.template("cquote", t, False)
        if kind == "oheredoc":
            self.i += 1
            return self.template("cheredoc", t, t[1][1])  # type: ignore[index]
        if kind == "(":
            self.i += 1
            outer = self.skip
            self.skip = True
            e = self.expression()
            close = self.peek()
            if close[0] != ")":
                self.fail(
                    "Unbalanced parentheses",
                    "Expected a closing parenthesis to terminate the expression.",
                    close[2],
                )
            self.i += 1
            self.skip = outer
            return Parens(e, None, src, t[2], close[3])
        if kind == "-" or kind == "!":
            self.i += 1
            operand = self.postfix()
            return UnaryOp(kind, operand, None, src, t[2], operand._end)
        if kind == "eof":
            self.fail("Missing expression", "Expected the start of an expression, but found the end of the file.", t[2])
        self.fail("Invalid expression", f"Expected the start of an expression, but found {_describe(t)}.", t[2])

    def call(self, name_tok: Token) -> Expr:
        name: str = name_tok[1]  # type: ignore[assignment]
        src = self.src
        open_tok = self.peek()
        while open_tok[0] == "::":
            self.i += 1
            n = self.peek()
            if n[0] != "ident":
                self.fail(
                    "Missing function name",
                    "Function scope resolution symbol :: must be followed by a function name in this scope.",
                    n[2],
                )
            self.i += 1
            name = f"{name}::{n[1]}"
            open_tok = self.peek()
        if open_tok[0] != "(":
            self.fail(
                "Missing open parenthesis",
                "Function selector must be followed by an open parenthesis to begin the function call.",
                open_tok[2],
            )
        self.i += 1
        outer = self.skip
        self.skip = True
        args: List[Expr] = []
        expand = False
        while True:
            t = self.peek()
            if t[0] == ")":
                self.i += 1
                close = t
                break
            args.append(self.expression())
            sep = self.toks[self.i]
            self.i += 1
            if sep[0] == ")":
                close = sep
                break
            if sep[0] == "...":
                expand = True
                close = self.peek()
                if close[0] != ")":
                    self.fail(
                        "Missing closing parenthesis",
                        "An expanded function argument (with ...) must be immediately followed by closing parentheses.",
                        sep[2],
                    )
                self.i += 1
                break
            if sep[0] != ",":
                if sep[0] == "eof":
                    self.fail(
                        "Unterminated function call",
                        "There is no closing parenthesis for this function call before the end of the file. "
                        "This may be caused by incorrect parenthesis nesting elsewhere in this file.",
                        name_tok[2],
                    )
                self.fail(
                    "Missing argument separator",
                    "A comma is required to separate each function argument from the next.",
                    sep[2],
                )
            if self.peek()[0] == ")":
                close = self.toks[self.i]
                self.i += 1
                break
        self.skip = outer
        return FunctionCall(name, args, expand, None, src, name_tok[2], close[3])

    def tuple_cons(self) -> Expr:
        open_tok = self.toks[self.i]
        self.i += 1
        outer = self.skip
        self.skip = True
        t = self.peek()
        if t[0] == "ident" and t[1] == "for":
            e = self.for_expr(open_tok, "]")
            self.skip = outer
            return e
        items: List[Expr] = []
        while True:
            if t[0] == "]":
                self.i += 1
                break
            items.append(self.expression())
            t = self.toks[self.i]
            if t[0] == "]":
                self.i += 1
                break
            if t[0] != ",":
                if t[0] == "eof":
                    self.fail(
                        "Unterminated tuple constructor expression",
                        "There is no corresponding closing bracket before the end of the file. "
                        "This may be caused by incorrect bracket nesting elsewhere in this file.",
                        open_tok[2],
                    )
                self.fail(
                    "Missing item separator",
                    "Expected a comma to mark the beginning of the next item.",
                    t[2],
                )
            self.i += 1
            t = self.peek()
        self.skip = outer
        return TupleCons(items, None, self.src, open_tok[2], t[3])

    def object_cons(self) -> Expr:
        toks = self.toks
        open_tok = toks[self.i]
        self.i += 1
        outer = self.skip
        # "for" is recognized across newlines, object items are not
        j = self.i
        while toks[j][0] == "nl":
            j += 1
        t = toks[j]
        if t[0] == "ident" and t[1] == "for":
            self.i = j
            self.skip = True
            e = self.for_expr(open_tok, "}")
            self.skip = outer
            return e
        self.skip = False
        src = self.src
        items: List[Tuple[Expr, Expr]] = []
        while True:
            t = toks[self.i]
            kind = t[0]
            if kind == "nl":
                self.i += 1
                continue
            if kind == "}":
                self.i += 1
                break
            force = kind == "("
            k = self.expression()
            key = ObjectKey(k, force, None, src, k._start, k._end)
            t = toks[self.i]
            if t[0] != "=" and t[0] != ":":
                if t[0] in ("nl", ","):
                    self.fail(
                        "Missing attribute value",
                        'Expected an attribute value, introduced by an equals sign ("=").',
                        t[2],
                    )
                if t[0] == "ident":
                    self.fail(
                        "Missing key/value separator",
                        'Expected an equals sign ("=") to mark the beginning of the attribute value. '
                        "If you intended to given an attribute name containing periods or spaces, "
                        "write the name in quotes to create a string literal.",
                        t[2],
                    )
                if t[0] == "eof":
                    self.fail(
                        "Unterminated object constructor expression",
                        "There is no corresponding closing brace before the end of the file. "
                        "This may be caused by incorrect brace nesting elsewhere in this file.",
                        open_tok[2],
                    )
                self.fail(
                    "Missing key/value separator",
                    'Expected an equals sign ("=") to mark the beginning of the attribute value.',
                    t[2],
                )
            self.i += 1
            value = self.expression()
            items.append((key, value))
            t = toks[self.i]
            if t[0] == "}":
                self.i += 1
                break
            if t[0] != "," and t[0] != "nl":
                if t[0] == "eof":
                    self.fail(
                        "Unterminated object constructor expression",
                        "There is no corresponding closing brace before the end of the file. "
                        "This may be caused by incorrect brace nesting elsewhere in this file.",
                        open_tok[2],
                    )
                self.fail(
                    "Missing attribute separator",
                    "Expected a newline or comma to mark the beginning of the next attribute.",
                    t[2],
                )
            self.i += 1
        self.skip = outer
        return ObjectCons(items, None, src, open_tok[2], t[3])

    def for_expr(self, open_tok: Token, closer: str) -> Expr:
        """After ``[``/``{``, at the ``for`` keyword (newlines are skipped)."""
        self.i += 1
        what = "Invalid 'for' expression"
        t = self.peek()
        if t[0] != "ident":
            self.fail(what, "For expression requires variable name after 'for'.", t[2])
        self.i += 1
        key_var: Optional[str] = None
        value_var: str = t[1]  # type: ignore[assignment]
        if self.peek()[0] == ",":
            self.i += 1
            key_var = value_var
            t = self.peek()
            if t[0] != "ident":
                self.fail(what, "For expression requires value variable name after comma.", t[2])
            self.i += 1
            value_var = t[1]  # type: ignore[assignment]
        t = self.peek()
        if t[0] != "ident" or t[1] != "in":
            self.fail(what, "For expression requires the 'in' keyword after its name declarations.", t[2])
        self.i += 1
        coll = self.expression()
        t = self.peek()
        if t[0] != ":":
            self.fail(what, "For expression requires a colon after the collection expression.", t[2])
        self.i += 1
        key_expr: Optional[Expr] = None
        value_expr = self.expression()
        if self.peek()[0] == "=>":
            self.i += 1
            key_expr = value_expr
            value_expr = self.expression()
        group = False
        ellipsis: Optional[Token] = None
        if self.peek()[0] == "...":
            ellipsis = self.toks[self.i]
            self.i += 1
            group = True
        cond: Optional[Expr] = None
        t = self.peek()
        if t[0] == "ident" and t[1] == "if":
            self.i += 1
            cond = self.expression()
        close = self.peek()
        if close[0] != closer:
            self.fail(what, "Extra characters after the end of the 'for' expression.", close[2])
        self.i += 1
        if closer == "]":
            if key_expr is not None:
                self.fail(what, "Key expression is not valid when building a tuple.", key_expr._start)
            if ellipsis is not None:
                self.fail(what, "Grouping ellipsis (...) cannot be used when building a tuple.", ellipsis[2])
        elif key_expr is None:
            self.fail(what, "Key expression is required when building an object.", value_expr._start)
        return ForExpr(
            key_var, value_var, coll, key_expr, value_expr, cond, group,
            None, self.src, open_tok[2], close[3],
        )

    # -- templates ---------------------------------------------------------------

    def template_parts(self, end: str, open_tok: Optional[Token]) -> Tuple[List[List[Any]], int]:
        """Raise the tokens up to ``end`` to template parts, applying strip markers.

        Parts are lists ``[kind, value, start, end]``: kind "lit" (value: the
        text), "interp" (an Expr), "if" (the condition), "for" ((key var,
        value var, collection)), "else", "endif", "endfor"; then a final "end".
        """
        toks = self.toks
        parts: List[List[Any]] = []
        ltrim_next = False
        start = self.toks[self.i][2]
        while True:
            t = toks[self.i]
            kind = t[0]
            if kind == end:
                self.i += 1
                end_at = t[2]
                break
            ltrim = ltrim_next
            ltrim_next = False
            if kind == "qlit" or kind == "lit":
                self.i += 1
                s = self.decode(t[1], t[2], kind == "qlit")  # type: ignore[arg-type]
                if ltrim:
                    s = s.lstrip()
                parts.append(["lit", s, t[2], t[3]])
            elif kind == "interp":
                self.i += 1
                if t[1] == "${~" and parts and parts[-1][0] == "lit":
                    parts[-1][1] = parts[-1][1].rstrip()
                outer = self.skip
                self.skip = True
                expr = self.expression()
                close = self.peek()
                if close[0] != "seqend":
                    self.unclosed_interp(close, end, t)
                self.i += 1
                ltrim_next = close[1] == "~}"
                self.skip = outer
                parts.append(["interp", expr, t[2], close[3]])
            elif kind == "ctrl":
                self.i += 1
                if t[1] == "%{~" and parts and parts[-1][0] == "lit":
                    parts[-1][1] = parts[-1][1].rstrip()
                outer = self.skip
                self.skip = True
                parts.append(self.directive(t))
                close = self.peek()
                if close[0] != "seqend":
                    self.fail(
                        f"Extra characters in {parts[-1][0]} marker",
                        "Expected a closing brace to end the sequence, but found extra characters.",
                        close[2],
                    )
                self.i += 1
                ltrim_next = close[1] == "~}"
                self.skip = outer
                parts[-1][3] = close[3]
            else:
                hint = None
                if end == "cheredoc" and open_tok is not None:
                    marker = open_tok[1][0]  # type: ignore[index]
                    hint = (
                        f"the heredoc started at {self.where(open_tok[2])} ends at a line "
                        f'holding only "{marker}"'
                    )
                self.fail(
                    "Unterminated template string",
                    "No closing marker was found for the string.",
                    t[2],
                    hint,
                )
        if not parts:
            parts.append(["lit", "", start, start])
        parts.append(["end", None, end_at, end_at])
        return parts, end_at

    def unclosed_interp(self, close: Token, end: str, open_tok: Token) -> NoReturn:
        if close[0] == "eof":
            self.fail(
                "Unclosed template interpolation sequence",
                "There is no closing brace for this interpolation sequence before the end of the file. "
                "This might be caused by incorrect nesting inside the given expression.",
                open_tok[2],
            )
        if close[0] == ":":
            self.fail(
                "Extra characters after interpolation expression",
                "Template interpolation doesn't expect a colon at this location. "
                "Did you intend this to be a literal sequence to be processed as part of another language? "
                'If so, you can escape it by starting with "$${" instead of just "${".',
                close[2],
            )
        if close[0] in ("oquote", "cquote", "str", "qnl") and end == "cquote":
            self.fail(
                "Unclosed template interpolation sequence",
                "There is no closing brace for this interpolation sequence before the end of the quoted "
                "template. This might be caused by incorrect nesting inside the given expression.",
                open_tok[2],
            )
        self.fail(
            "Extra characters after interpolation expression",
            "Expected a closing brace to end the interpolation expression, but found extra characters.",
            close[2],
            hint='if this is a sequence for another language (such as a shell), escape it as "$${"',
        )

    def directive(self, open_tok: Token) -> List[Any]:
        kw = self.peek()
        if kw[0] != "ident":
            self.fail(
                "Invalid template directive",
                'A template directive keyword ("if", "for", etc) is expected at the beginning of a %{ sequence.',
                kw[2],
            )
        self.i += 1
        word = kw[1]
        if word == "if":
            return ["if", self.expression(), open_tok[2], 0]
        if word in ("else", "endif", "endfor"):
            return [word, None, open_tok[2], 0]
        if word == "for":
            what = "Invalid 'for' directive"
            t = self.peek()
            if t[0] != "ident":
                self.fail(what, "For directive requires variable name after 'for'.", t[2])
            self.i += 1
            key_var: Optional[str] = None
            value_var = t[1]
            if self.peek()[0] == ",":
                self.i += 1
                key_var = value_var  # type: ignore[assignment]
                t = self.peek()
                if t[0] != "ident":
                    self.fail(what, "For directive requires value variable name after comma.", t[2])
                self.i += 1
                value_var = t[1]
            t = self.peek()
            if t[0] != "ident" or t[1] != "in":
                self.fail(what, "For directive requires 'in' keyword after names.", t[2])
            self.i += 1
            coll = self.expression()
            return ["for", (key_var, value_var, coll), open_tok[2], 0]
        self.fail(
            "Invalid template control keyword",
            f'"{word}" is not a valid template control keyword.',
            kw[2],
            closest(str(word), _TEMPLATE_KEYWORDS),
        )

    def template(self, end: str, open_tok: Token, flush: bool) -> Expr:
        parts, _ = self.template_parts(end, open_tok)
        stop = self.toks[self.i - 1][3]
        start = open_tok[2]
        if flush:
            _flush_heredoc(parts)
        exprs, wrap = self.template_tree(parts)
        if wrap:
            return TemplateWrap(exprs[0], None, self.src, start, stop)
        return TemplateExpr(exprs, None, self.src, start, stop)

    def template_tree(self, parts: List[List[Any]]) -> Tuple[List[Expr], bool]:
        # meld consecutive literals
        melded: List[List[Any]] = []
        for p in parts:
            if p[0] == "lit" and melded and melded[-1][0] == "lit":
                prev = melded[-1]
                prev[1] += p[1]
                prev[3] = p[3]
            else:
                melded.append(p)
        wrap = len(melded) == 2 and melded[0][0] == "interp"
        exprs: List[Expr] = []
        tp = _TemplateParser(self, melded)
        while melded[tp.i][0] != "end":
            exprs.append(tp.part())
        return exprs, wrap


def _flush_heredoc(parts: List[List[Any]]) -> None:
    """``<<-``: strip the smallest leading whitespace of all lines' literals."""
    min_spaces = -1
    newline = True
    adjust: List[List[Any]] = []
    for p in parts:
        kind = p[0]
        if newline:
            newline = False
            if kind == "end":
                break
            spaces = 0
            if kind == "lit":
                orig = p[1]
                trimmed = orig.lstrip()
                if not trimmed and orig.endswith("\n"):
                    spaces = -1  # a blank line does not count
                else:
                    spaces = len(orig) - len(trimmed)
                    adjust.append(p)
            if spaces >= 0 and (min_spaces < 0 or spaces < min_spaces):
                min_spaces = spaces
        if kind == "lit" and p[1].endswith("\n"):
            newline = True
    if min_spaces > 0:
        for p in adjust:
            p[1] = p[1][min_spaces:]
            p[2] += min_spaces


class _TemplateParser:
    """Template parts → expressions (if/for directives nest)."""

    __slots__ = ("i", "p", "parts", "src")

    def __init__(self, p: _Parser, parts: List[List[Any]]):
        self.p = p
        self.src = p.src
        self.parts = parts
        self.i = 0

    def part(self) -> Expr:
        p = self.parts[self.i]
        kind = p[0]
        if kind == "lit":
            self.i += 1
            return Literal(_nfc(p[1]), None, self.src, p[2], p[3])
        if kind == "interp":
            self.i += 1
            return p[1]
        if kind == "if":
            return self.if_directive()
        if kind == "for":
            return self.for_directive()
        self.p.fail(
            f"Unexpected {kind} directive",
            "The control directives within this template are unbalanced.",
            p[2],
        )

    def _body(self, stops: Tuple[str, ...], opener: List[Any], what: str) -> Tuple[List[Expr], List[Any]]:
        exprs: List[Expr] = []
        while True:
            p = self.parts[self.i]
            kind = p[0]
            if kind == "end":
                self.p.fail(
                    "Unexpected end of template",
                    f"The {what} directive at {self.p.where(opener[2])} is missing its "
                    f"corresponding end{what} directive.",
                    p[2],
                )
            if kind in stops:
                self.i += 1
                return exprs, p
            if kind in ("else", "endif", "endfor"):
                if what == "for":
                    if kind == "else":
                        self.p.fail(
                            "Unexpected else directive",
                            "An else clause is not expected for a for directive.",
                            p[2],
                        )
                    detail = (
                        f"Expecting an endfor directive corresponding to the for directive at "
                        f"{self.p.where(opener[2])}."
                    )
                elif kind == "else":
                    detail = f"Already in the else clause for the if started at {self.p.where(opener[2])}."
                else:
                    detail = f"Expecting an endif directive for the if started at {self.p.where(opener[2])}."
                self.p.fail(f"Unexpected {kind} directive", detail, p[2])
            exprs.append(self.part())

    def _join(self, exprs: List[Expr], at: int) -> TemplateExpr:
        if not exprs:
            exprs = [Literal("", None, self.src, at, at)]
        return TemplateExpr(exprs, None, self.src, exprs[0]._start, exprs[-1]._end)

    def if_directive(self) -> Expr:
        opener = self.parts[self.i]
        self.i += 1
        then, stop = self._body(("else", "endif"), opener, "if")
        otherwise: List[Expr] = []
        if stop[0] == "else":
            otherwise, stop = self._body(("endif",), opener, "if")
        true_expr = self._join(then, opener[3])
        false_expr = self._join(otherwise, stop[2])
        return Conditional(opener[1], true_expr, false_expr, None, self.src, opener[2], stop[3])

    def for_directive(self) -> Expr:
        opener = self.parts[self.i]
        self.i += 1
        content, stop = self._body(("endfor",), opener, "for")
        key_var, value_var, coll = opener[1]
        body = self._join(content, opener[3])
        fe = ForExpr(key_var, value_var, coll, None, body, None, False, None, self.src, opener[2], stop[3])
        return TemplateJoin(fe, None, self.src, opener[2], stop[3])


# --------------------------------------------------------------------------


def _check_bad(bad: Optional[Token], src: Source) -> None:
    if bad is None:
        return
    ch = str(bad[1])
    pos = src.pos(bad[2])
    if bad[0] == "ucomment":
        raise BakeryError(
            'Unterminated comment; There is no closing "*/" for this comment before the end of the file.', pos
        )
    summary, detail = _INVALID.get(ch, ("Invalid character", "This character is not used within the language."))
    raise BakeryError(f"{summary}; {detail}", pos)


def parse_body(text: str, filename: str) -> Body:
    src = Source(filename, text)
    toks, bad = tokenize(text)
    _check_bad(bad, src)
    p = _Parser(toks, src)
    return p.body("eof", None)


def parse_expr(text: str, filename: str, line: int = 1, col: int = 1) -> Expr:
    src = Source(filename, text, line, col)
    toks, bad = tokenize(text)
    _check_bad(bad, src)
    p = _Parser(toks, src)
    p.skip = True
    e = p.expression()
    t = p.peek()
    if t[0] != "eof":
        p.fail(
            "Extra characters after expression",
            "An expression was successfully parsed, but extra characters were found after it.",
            t[2],
        )
    return e


def parse_template_text(text: str, filename: str, line: int = 1, col: int = 1) -> Expr:
    src = Source(filename, text, line, col)
    toks, bad = tokenize_template(text)
    _check_bad(bad, src)
    p = _Parser(toks, src)
    parts, _ = p.template_parts("eof", None)
    exprs, wrap = p.template_tree(parts)
    if wrap:
        return TemplateWrap(exprs[0], None, src, 0, len(text))
    return TemplateExpr(exprs, None, src, 0, len(text))
