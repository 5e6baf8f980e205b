"""Tokenizer for HCL native syntax.

A token is a tuple ``(kind, value, start, end)`` with character offsets into
the text.  Punctuation tokens have their own text as kind (``"{"``, ``"=="``,
``"..."``); the others are:

==========  ==============================================================
kind        value
==========  ==============================================================
ident       the identifier
num         the number's text
nl          newline (comments are skipped; a line comment's newline stays)
str         a whole quoted string without template sequences: its raw
            content between the quotes (escapes not yet decoded)
oquote      ``"`` opening a template string (then qlit/interp/ctrl...)
cquote      ``"`` closing it
qnl         a newline inside a quoted string (always an error)
qlit        literal text of a quoted template (raw, escapes not decoded)
lit         literal text of a heredoc or bare template (one line at most)
interp      ``${`` or ``${~``
ctrl        ``%{`` or ``%{~``
seqend      ``}`` or ``~}`` closing an interpolation or directive
oheredoc    ``<<EOT``/``<<-EOT`` (value: (marker, flush))
cheredoc    the closing marker line's marker
bad         a character that is not part of the language (value: the char)
eof         end of input (value None)
==========  ==============================================================

The main scanner is one compiled regex run with ``finditer``; it leaves it
only for template strings, heredocs and (inside an interpolation) braces.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

__all__ = ["Token", "tokenize", "tokenize_template"]

Token = Tuple[str, object, int, int]

_SKIP = r"[ \t]*(?:(?:/\*[\s\S]*?\*/|\#[^\n]*|//[^\n]*)[ \t]*)*"

_MAIN = re.compile(
    _SKIP
    + r"""(?:
    (?P<ident>[^\W\d][\w-]*)
  | (?P<heredoc><<(?P<hflush>-?)(?P<hmark>[^\W\d][\w-]*)\r?\n)
  | (?P<ucomment>/\*)
  | (?P<op>\.\.\.|::|==|!=|>=|<=|&&|\|\||=>|~\}|[-+*/%<>=!?:.,\[\](){}~])
  | (?P<str>"(?:[^"\\$%\r\n]|\\[^\r\n]|\$(?!\{)|%(?!\{))*")
  | (?P<nl>\r?\n)
  | (?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<oquote>")
  | (?P<eof>\Z)
  | (?P<bad>[\s\S])
)""",
    re.VERBOSE,
)

# Literal text in a quoted template: escapes stay raw; $${ and %%{ are
# literal; a $ or % not followed by { is literal.
_QUOTED = re.compile(
    r"""
    (?P<qlit>(?:\$\$\{|%%\{|[^"\\$%\r\n]|\\[^\r\n]|[$%](?!\{))+)
  | (?P<simple>\$\{(?P<sopen>~?)[ \t]*(?P<spath>[^\W\d][\w-]*(?:\.[^\W\d][\w-]*)*)[ \t]*(?P<sclose>~?)\})
  | (?P<interp>\$\{~?)
  | (?P<ctrl>%\{~?)
  | (?P<cquote>")
  | (?P<qnl>\r?\n)
  | (?P<eof>\Z)
  | (?P<bad>[\s\S])
""",
    re.VERBOSE,
)

# Literal text of a heredoc or bare template, at most up to the end of line.
_LINE = re.compile(
    r"""
    (?P<lit>(?:\$\$\{|%%\{|[^$%\n]|[$%](?!\{))+\n?|\n)
  | (?P<interp>\$\{~?)
  | (?P<ctrl>%\{~?)
  | (?P<eof>\Z)
""",
    re.VERBOSE,
)


class _Lexer:
    __slots__ = ("bad", "text", "toks")

    def __init__(self, text: str):
        self.text = text
        self.toks: List[Token] = []
        # the first invalid token: reported before any syntax error, as HCL does
        self.bad: Optional[Token] = None

    # -- main (expression) mode ------------------------------------------------

    def main(self, pos: int, interp: bool) -> int:
        """Scan expression tokens from ``pos``.

        At top level, runs to the end and appends the eof token.  Inside an
        interpolation (``interp``), returns the offset after the closing
        ``}`` / ``~}`` (appending a seqend token), or at the end of input
        without appending eof.
        """
        text = self.text
        toks = self.toks
        append = toks.append
        depth = 0
        while True:
            for m in _MAIN.finditer(text, pos):
                kind: str = m.lastgroup  # type: ignore[assignment]
                if kind == "ident":
                    s, e = m.span(kind)
                    append(("ident", text[s:e], s, e))
                elif kind == "op":
                    s, e = m.span(kind)
                    v = text[s:e]
                    if interp:
                        if v == "{":
                            depth += 1
                        elif v == "}" or v == "~}":
                            if depth == 0:
                                append(("seqend", v, s, e))
                                return e
                            depth -= 1
                    append((v, v, s, e))
                elif kind == "str":
                    s, e = m.span(kind)
                    append(("str", text[s + 1 : e - 1], s, e))
                elif kind == "nl":
                    s, e = m.span(kind)
                    append(("nl", None, s, e))
                elif kind == "num":
                    s, e = m.span(kind)
                    append(("num", text[s:e], s, e))
                elif kind == "oquote":
                    s, e = m.span(kind)
                    append(("oquote", '"', s, e))
                    pos = self.quoted(e)
                    break
                elif kind == "heredoc":
                    s, e = m.span(kind)
                    append(("oheredoc", (m.group("hmark"), m.group("hflush") == "-"), s, e))
                    pos = self.heredoc(e, m.group("hmark"))
                    break
                elif kind == "eof":
                    s = m.start(kind)
                    if not interp:
                        append(("eof", None, s, s))
                    return s
                else:  # bad, ucomment
                    s, e = m.span(kind)
                    tok = (kind, text[s:e], s, e)
                    append(tok)
                    if self.bad is None:
                        self.bad = tok
            else:  # pragma: no cover - the pattern always matches at the end
                return len(text)

    def _sequence(self, kind: str, s: int, e: int) -> int:
        self.toks.append((kind, self.text[s:e], s, e))
        return self.main(e, True)

    # -- template modes --------------------------------------------------------

    def quoted(self, pos: int) -> int:
        """A quoted template's content; returns the offset after the closing quote."""
        text = self.text
        append = self.toks.append
        while True:
            m = _QUOTED.match(text, pos)
            assert m is not None
            kind: str = m.lastgroup  # type: ignore[assignment]
            s, e = m.span()
            if kind == "qlit":
                append(("qlit", text[s:e], s, e))
                pos = e
            elif kind == "simple":
                # "${name.attr}": the common case, without a scanner round trip
                o = 3 if m.group("sopen") else 2
                append(("interp", text[s : s + o], s, s + o))
                ps = m.start("spath")
                for part in m.group("spath").split("."):
                    pe = ps + len(part)
                    if ps != m.start("spath"):
                        append((".", ".", ps - 1, ps))
                    append(("ident", part, ps, pe))
                    ps = pe + 1
                c = 2 if m.group("sclose") else 1
                append(("seqend", text[e - c : e], e - c, e))
                pos = e
            elif kind == "interp" or kind == "ctrl":
                pos = self._sequence(kind, s, e)
            elif kind == "cquote":
                append(("cquote", '"', s, e))
                return e
            elif kind == "qnl":
                # the string is unterminated: the parser reports it here;
                # scanning goes on in string mode, as HCL's scanner does
                append(("qnl", None, s, e))
                pos = e
            elif kind == "eof":
                return s
            else:
                tok = ("bad", text[s:e], s, e)
                append(tok)
                if self.bad is None:
                    self.bad = tok
                pos = e

    def heredoc(self, pos: int, marker: str) -> int:
        """A heredoc's content; returns the offset after the closing marker."""
        text = self.text
        append = self.toks.append
        n = len(text)
        at_line_start = True
        while True:
            if at_line_start:
                nl = text.find("\n", pos)
                stop = n if nl < 0 else nl
                line = text[pos:stop]
                stripped = line.strip()
                if stripped == marker:
                    s = pos + line.index(marker)
                    e = s + len(marker)
                    append(("cheredoc", marker, s, e))
                    return e
            m = _LINE.match(text, pos)
            assert m is not None
            kind: str = m.lastgroup  # type: ignore[assignment]
            s, e = m.span()
            if kind == "lit":
                append(("lit", text[s:e], s, e))
                at_line_start = text[e - 1] == "\n"
                pos = e
            elif kind == "eof":
                return s
            else:
                pos = self._sequence(kind, s, e)
                at_line_start = False

    def bare(self, pos: int) -> None:
        """A standalone template (no delimiters) up to the end."""
        text = self.text
        append = self.toks.append
        while True:
            m = _LINE.match(text, pos)
            assert m is not None
            kind: str = m.lastgroup  # type: ignore[assignment]
            s, e = m.span()
            if kind == "lit":
                append(("lit", text[s:e], s, e))
                pos = e
            elif kind == "eof":
                append(("eof", None, s, s))
                return
            else:
                pos = self._sequence(kind, s, e)


def tokenize(text: str) -> Tuple[List[Token], Optional[Token]]:
    """Tokens of a config file or expression, and the first invalid token."""
    lx = _Lexer(text)
    lx.main(1 if text.startswith("\ufeff") else 0, False)  # a byte order mark is skipped
    return lx.toks, lx.bad


def tokenize_template(text: str) -> Tuple[List[Token], Optional[Token]]:
    """Tokens of a standalone template (as in JSON strings), ending with eof."""
    lx = _Lexer(text)
    lx.bare(0)
    return lx.toks, lx.bad
