"""Dockerfile text -> instruction nodes, following BuildKit's parser.

This is the first, untyped pass (``frontend/dockerfile/parser`` in BuildKit;
behaviour re-implemented, not copied):

* **Parser directives** (``# syntax=``, ``# escape=``, ``# check=``; names
  case-insensitive, spaces allowed around ``=``) are read only from the top
  of the file: the first line that is not a directive — an instruction, a
  blank line, any other comment, an unknown directive — ends them.  A
  repeated directive is an error; ``escape`` must be ``\\`` or a backtick.
* **Lines**: leading white space is dropped; ``#`` lines are comments; an
  instruction continues onto the next line when it ends with the escape
  character (not itself escaped) plus optional blanks.  Inside a
  continuation, comment lines are skipped and blank lines are skipped with a
  warning, as BuildKit does.
* **Instruction**: the first word (any case), then ``--flags`` (words that
  start with ``--``; quotes and backslashes in them are processed; ``--``
  alone ends them), then the arguments, split per instruction: JSON array
  (exec form) when the text parses as a JSON array of strings (a JSON array
  with a non-string is an error; anything else that is not valid JSON is
  shell form), whitespace separated words, ``key=value`` pairs (ENV, LABEL,
  with the legacy ``KEY value`` form), names with optional values (ARG), or
  one string (USER, WORKDIR, ...).
* **Heredocs** (RUN, COPY, ADD, also as ONBUILD triggers; never in exec
  form): every ``<<WORD`` / ``<<-WORD`` / ``N<<WORD`` on the line opens a
  heredoc whose body is the following lines up to a line equal to the
  delimiter (leading tabs ignored for ``<<-``).  A quoted delimiter
  (``<<"EOF"``, ``<<'EOF'``, or partly quoted) turns expansion off.

Unknown instructions are kept here (BuildKit reports them in the next pass,
see :mod:`bakery.dockerfile.instructions`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from bakery.errors import BakeryError, Pos, register_source

from . import _go
from .expand import ExpansionError, Lex

__all__ = [
    "HEREDOC_INSTRUCTIONS",
    "Directive",
    "Heredoc",
    "Node",
    "ParseResult",
    "Warning",
    "parse",
    "parse_heredoc",
]

_WS = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z", re.S)
_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z", re.S)
_LEADING_TABS = re.compile(r"^\t+", re.M)
_BOM = "\ufeff"

VALID_DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_INSTRUCTIONS = frozenset(("add", "copy", "run"))
_HEREDOC_COMPOUND = frozenset(("onbuild",))
_MAX_LINE = 64 * 1024 - 1  # bufio.MaxScanTokenSize - 1


@dataclass(frozen=True)
class Directive:
    name: str  # lower case
    value: str
    line: int


@dataclass(frozen=True)
class Warning:
    message: str
    line: int


@dataclass(frozen=True)
class Heredoc:
    """One heredoc: ``content`` is the raw body (each line with its newline).

    ``chomp`` is set for ``<<-``: :meth:`text` then strips leading tabs.
    ``expand`` is false when any part of the delimiter was quoted.
    """

    name: str
    fd: int = 0
    expand: bool = True
    chomp: bool = False
    content: str = ""

    def text(self) -> str:
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass(frozen=True)
class Node:
    """One instruction as parsed, before typing.

    ``value`` is the keyword as written; ``args`` the arguments as BuildKit's
    line parser split them (for ENV/LABEL: key, value, separator triples,
    the separator ``""`` marking the legacy ``KEY value`` form; for ONBUILD:
    the trigger keyword then the trigger's arguments); ``sub`` the ONBUILD
    trigger node; ``json`` whether the arguments were a JSON array.
    ``original`` is the logical line (continuations joined, without
    heredoc bodies), ``source`` the physical lines ``start_line..end_line``.
    """

    value: str
    args: Tuple[str, ...]
    flags: Tuple[str, ...]
    original: str
    start_line: int
    end_line: int
    col: int = 1
    json: bool = False
    heredocs: Tuple[Heredoc, ...] = ()
    sub: Optional[Node] = None
    comments: Tuple[str, ...] = ()
    source: Tuple[str, ...] = field(default=(), compare=False)
    filename: str = field(default="Dockerfile", compare=False)

    @property
    def keyword(self) -> str:
        return self.value.lower()

    @property
    def pos(self) -> Pos:
        return Pos(self.filename, self.start_line, self.col)

    def dump(self) -> str:
        """BuildKit's S-expression dump of one node (``Node.Dump``)."""
        s = self.value.lower()
        if self.flags:
            s += " " + _go.quote_list(self.flags)
        if self.sub is not None:
            s += " (" + self.sub.dump() + ")\n"
        else:
            for a in self.args:
                s += " " + _go.quote(a)
        return s.strip()


@dataclass(frozen=True)
class ParseResult:
    nodes: Tuple[Node, ...]
    directives: Tuple[Directive, ...]
    escape: str
    warnings: Tuple[Warning, ...]
    filename: str
    lines: Tuple[str, ...] = field(default=(), compare=False)

    def directive(self, name: str) -> Optional[str]:
        for d in self.directives:
            if d.name == name:
                return d.value
        return None

    def dump(self) -> str:
        return "".join("(" + n.dump() + ")\n" for n in self.nodes)


class _ParseError(Exception):
    """An error from a line parser; the caller adds the position."""


class _Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self._cont = _continuation_regex("\\")
        self.done = False
        self.seen: Dict[str, Directive] = {}
        self.line = 0

    def set_escape(self, s: str) -> None:
        if s not in ("`", "\\"):
            raise _ParseError(f"invalid escape token '{s}' does not match ` or \\")
        self.escape = s
        self._cont = _continuation_regex(s)

    def parse_line(self, token: str, line: int) -> None:
        if self.done:
            return
        if not token.startswith("#"):
            self.done = True
            return
        m = _DIRECTIVE.match(_go.trim_left_space(token[1:]))
        if not m:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise _ParseError(f"only one {key} parser directive can be used")
        self.seen[key] = Directive(key, m.group(2), line)
        if key == "escape":
            self.set_escape(m.group(2))

    def trim_continuation(self, line: str) -> Tuple[str, bool]:
        if self._cont.search(line):
            return self._cont.sub(r"\1", line), False
        return line, True


def _continuation_regex(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _is_comment(raw: str) -> bool:
    return _go.trim_left_space(_trim_newline(raw)).startswith("#")


# ---------------------------------------------------------------------------
# Line parsers: rest of the line (after flags) -> (args, is_json, sub node)

_Parsed = Tuple[List[str], bool, Optional["_RawNode"]]


@dataclass
class _RawNode:
    value: str
    flags: List[str]
    args: List[str]
    json: bool
    original: str
    sub: Optional[_RawNode]


def parse_words(rest: str, escape: str) -> List[str]:
    """Split on white space, keeping quotes and escapes in the words."""
    words: List[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    quote = ""
    blank_ok = False
    buf: List[str] = []
    n = len(rest)
    pos = 0
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if _go.is_space(ch):
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        if phase == in_word:
            if _go.is_space(ch):
                phase = in_spaces
                if blank_ok or buf:
                    words.append("".join(buf))
                buf = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        # in_quote
        if ch == quote:
            phase = in_word
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = in_word
                pos += 1
                continue
            pos += 1
            buf.append(ch)
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    return words


def _parse_ignore(rest: str, d: _Directives) -> _Parsed:
    return [], False, None


def _parse_sub_command(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, None
    child = _node_from_line(rest, d)
    return [child.value, *child.args], False, child


def _parse_name_val(rest: str, key: str, d: _Directives) -> List[str]:
    words = parse_words(rest, d.escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ParseError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""]
    out: List[str] = []
    for w in words:
        if "=" not in w:
            raise _ParseError(
                f"Syntax error - can't find = in {_go.quote(w)}. Must be of the form: name=value"
            )
        k, v = w.split("=", 1)
        out += [k, v, "="]
    return out


def _parse_env(rest: str, d: _Directives) -> _Parsed:
    return _parse_name_val(rest, "ENV", d), False, None


def _parse_label(rest: str, d: _Directives) -> _Parsed:
    return _parse_name_val(rest, "LABEL", d), False, None


def _parse_name_or_name_val(rest: str, d: _Directives) -> _Parsed:
    return parse_words(rest, d.escape), False, None


def _split_ws(rest: str) -> List[str]:
    if rest == "":
        return []
    return _WS.split(rest)


def _parse_strings_ws(rest: str, d: _Directives) -> _Parsed:
    return _split_ws(rest), False, None


def _parse_string(rest: str, d: _Directives) -> _Parsed:
    return ([rest] if rest else []), False, None


class _NotJSON(Exception):
    pass


_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _parse_json(rest: str) -> List[str]:
    rest = _go.trim_left_space(rest)
    if not rest.startswith("["):
        raise _NotJSON()
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        raise _NotJSON() from None
    if not isinstance(value, list):
        raise _NotJSON()
    for v in value:
        if not isinstance(v, str):
            raise _ParseError(_NOT_STRING_ARRAY)
    return value


def _parse_maybe_json(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, None
    try:
        return _parse_json(rest), True, None
    except _NotJSON:
        return [rest], False, None


def _parse_maybe_json_to_list(rest: str, d: _Directives) -> _Parsed:
    try:
        return _parse_json(rest), True, None
    except _NotJSON:
        return _split_ws(rest), False, None


def _parse_health_config(rest: str, d: _Directives) -> _Parsed:
    sep = 0
    while sep < len(rest) and not _go.is_space(rest[sep]):
        sep += 1
    nxt = sep
    while nxt < len(rest) and _go.is_space(rest[nxt]):
        nxt += 1
    if sep == 0:
        return [], False, None
    args, is_json, _ = _parse_maybe_json(rest[nxt:], d)
    return [rest[:sep], *args], is_json, None


_DISPATCH: Dict[str, Callable[[str, _Directives], _Parsed]] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_ws,
    "from": _parse_strings_ws,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


def extract_builder_flags(line: str) -> Tuple[str, List[str]]:
    """Leading ``--flag[=value]`` words -> (rest of the line, flags)."""
    words: List[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word: List[str] = []
    quote = ""
    blank_ok = False
    n = len(line)
    pos = 0
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if _go.is_space(ch):
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            w = "".join(word)
            if w != "--" and (blank_ok or w):
                words.append(w)
            break
        if phase == in_word:
            if _go.is_space(ch):
                phase = in_spaces
                w = "".join(word)
                if w == "--":
                    return line[pos:], words
                if blank_ok or w:
                    words.append(w)
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        # in_quote
        if ch == quote:
            phase = in_word
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                phase = in_word
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


def split_command(line: str) -> Tuple[str, List[str], str]:
    parts = _WS.split(_go.trim_space(line), maxsplit=1)
    cmd = parts[0]
    flags: List[str] = []
    args = ""
    if len(parts) == 2:
        args, flags = extract_builder_flags(parts[1])
    return cmd, flags, _go.trim_space(args)


def _node_from_line(line: str, d: _Directives) -> _RawNode:
    cmd, flags, rest = split_command(line)
    fn = _DISPATCH.get(cmd.lower(), _parse_ignore)
    args, is_json, sub = fn(rest, d)
    return _RawNode(cmd, flags, args, is_json, line, sub)


def _can_contain_heredoc(node: _RawNode) -> bool:
    if node.value.lower() in _HEREDOC_COMPOUND and node.sub is not None:
        node = node.sub
    return node.value.lower() in HEREDOC_INSTRUCTIONS and not node.json


def parse_heredoc(word: str) -> Optional[Heredoc]:
    """A ``[n]<<[-]WORD`` word as a heredoc header (no content), or None."""
    m = _HEREDOC.match(word)
    if not m:
        return None
    fd = int(m.group(1)) if m.group(1) else 0
    chomp = m.group(2) == "-"
    rest = m.group(3)
    if not rest:
        return None
    lex = Lex("\\", skip_unset_env=True)
    try:
        words = lex.process_words(rest, {})
    except ExpansionError as e:
        raise _ParseError(str(e)) from None
    if len(words) != 1:
        return None
    lex.raw_quotes = True
    try:
        raw_words = lex.process_words(rest, {})
    except ExpansionError as e:  # pragma: no cover - same input as above
        raise _ParseError(str(e)) from None
    if len(raw_words) != len(words):
        raise _ParseError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    raw = raw_words[0]
    expand = (name.count("'") + name.count('"')) == (raw.count("'") + raw.count('"'))
    return Heredoc(name=name, fd=fd, expand=expand, chomp=chomp)


def heredocs_from_line(line: str) -> List[Heredoc]:
    lex = Lex("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lex.process_words(line, {})
    except ExpansionError:
        words = []
    out = []
    for w in words:
        h = parse_heredoc(w)
        if h is not None:
            out.append(h)
    return out


def _freeze(raw: _RawNode, start: int, end: int, col: int, filename: str,
            heredocs: Tuple[Heredoc, ...] = (), comments: Tuple[str, ...] = (),
            source: Tuple[str, ...] = ()) -> Node:
    sub = None
    if raw.sub is not None:
        sub = _freeze(raw.sub, start, end, col, filename)
    return Node(
        value=raw.value,
        args=tuple(raw.args),
        flags=tuple(raw.flags),
        original=raw.original,
        start_line=start,
        end_line=end,
        col=col,
        json=raw.json,
        heredocs=heredocs,
        sub=sub,
        comments=comments,
        source=source,
        filename=filename,
    )


def _first_col(raw: str) -> int:
    raw = raw.lstrip(_BOM)
    return len(raw) - len(_go.trim_left_space(raw)) + 1


def parse(text: str, filename: str = "Dockerfile") -> ParseResult:
    """Parse a Dockerfile; errors are :class:`BakeryError` with a position."""
    register_source(filename, text)
    lines = _go.split_lines_keepends(text)
    plain = tuple(_trim_newline(ln) for ln in lines)
    if plain and plain[0].startswith(_BOM):
        plain = (plain[0][1:], *plain[1:])
    d = _Directives()
    nodes: List[Node] = []
    warnings: List[Warning] = []
    comments: List[str] = []
    current = 0
    i = 0

    def err(msg: str, line: int, col: int = 1) -> BakeryError:
        return BakeryError(msg, Pos(filename, max(line, 1), col))

    def process(raw: str, strip_left: bool, line_no: int) -> str:
        if len(raw.encode("utf-8", "surrogatepass")) > _MAX_LINE + 1:
            raise err(f"dockerfile line greater than max allowed size of {_MAX_LINE}", line_no)
        token = _trim_newline(raw)
        if strip_left:
            token = _go.trim_left_space(token)
        try:
            d.parse_line(token, line_no)
        except _ParseError as e:
            raise err(str(e), line_no) from None
        return "" if token.startswith("#") else token

    while i < len(lines):
        raw = lines[i]
        i += 1
        if current == 0 and raw.startswith(_BOM):
            raw = raw[1:]
        if _is_comment(raw):
            comment = _go.trim_space(_trim_newline(raw)[1:])
            if comment == "":
                comments = []
            else:
                comments.append(comment)
        processed = process(raw, True, current + 1)
        current += 1
        start = current
        line, end_of_line = d.trim_continuation(processed)
        if end_of_line and line == "":
            continue
        parts = [line]
        has_empty = False
        while not end_of_line and i < len(lines):
            raw2 = lines[i]
            i += 1
            processed2 = process(raw2, False, current + 1)
            current += 1
            if _is_comment(raw2):
                continue
            if _go.trim_left_space(_trim_newline(processed2)) == "":
                has_empty = True
                continue
            cont, end_of_line = d.trim_continuation(processed2)
            parts.append(cont)
        full = "".join(parts)
        if has_empty:
            warnings.append(Warning(f"Empty continuation line found in: {full}", current))
        col = _first_col(plain[start - 1])
        try:
            rawnode = _node_from_line(full, d)
        except _ParseError as e:
            raise err(str(e), start, col) from None
        heredocs: List[Heredoc] = []
        if _can_contain_heredoc(rawnode) and "<<" in full:
            try:
                headers = heredocs_from_line(full)
            except _ParseError as e:
                raise err(str(e), start, col) from None
            for h in headers:
                body: List[str] = []
                terminated = False
                while i < len(lines):
                    bl = lines[i]
                    i += 1
                    current += 1
                    candidate = _trim_newline(bl)
                    if h.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == h.name:
                        terminated = True
                        break
                    body.append(bl)
                if not terminated:
                    raise err("unterminated heredoc", start, col)
                heredocs.append(
                    Heredoc(h.name, h.fd, h.expand, h.chomp, "".join(body))
                )
        nodes.append(
            _freeze(
                rawnode, start, current, col, filename,
                heredocs=tuple(heredocs),
                comments=tuple(comments),
                source=plain[start - 1: current],
            )
        )
        comments = []

    if not nodes:
        raise err("file with no instructions", current)
    return ParseResult(
        nodes=tuple(nodes),
        directives=tuple(d.seen.values()),
        escape=d.escape,
        warnings=tuple(warnings),
        filename=filename,
        lines=plain,
    )
