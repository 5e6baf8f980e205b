"""Shell-like word expansion, as BuildKit's Dockerfile frontend does it.

This follows ``frontend/dockerfile/shell/lex.go`` (behaviour, not code):

* ``$name``, ``${name}``; a name is letters, digits and ``_``, or a run of
  digits (``$1``), or one special parameter (``$@ $* $# $? $- $$ $! $0``);
  a ``$`` followed by anything else is kept literally.
* ``${v:-w}`` / ``${v-w}``: ``w`` when ``v`` is unset-or-empty / unset.
* ``${v:+w}`` / ``${v+w}``: ``w`` when ``v`` is set-and-non-empty / set.
* ``${v:?msg}`` / ``${v?msg}``: error when ``v`` is unset-or-empty / unset.
* ``${v#p}``, ``${v##p}``, ``${v%p}``, ``${v%%p}``: remove the shortest or
  longest prefix or suffix matching the glob ``p`` (``*`` and ``?``; no
  bracket expressions; ``\\*``, ``\\?`` and ``\\\\`` escape).
* ``${v/p/r}``, ``${v//p/r}``: replace the first or every (longest) match
  of the glob ``p`` with ``r``.
* single quotes keep everything literally; double quotes keep everything
  but ``$`` expansion and escapes of ``"``, ``$`` and the escape character;
  outside quotes the escape character (``\\`` or the Dockerfile's ``# escape=``
  token) makes the next character literal, and is dropped at the very end.

``process_word`` gives one string (spaces kept); ``process_words`` splits the
result into words the way BuildKit does: on white space that comes from the
text or from an unquoted variable's value, never inside quotes.

Which instruction expands what
------------------------------
BuildKit expands, with the build's ARG and ENV values at that point:

===========  ==============================================================
FROM         the image reference and ``--platform`` (global ARGs only)
ADD, COPY    sources, destination, ``--chown``, ``--chmod``; ADD
             ``--checksum``; COPY ``--from``; ``--exclude`` patterns;
             heredoc bodies only when their delimiter is unquoted
ENV          each key and value
LABEL        each key and value
ARG          each name and default value
EXPOSE       each port, *with word splitting* (``process_words``)
STOPSIGNAL   the signal
USER         the user
VOLUME       each path
WORKDIR      the path
RUN          only the values of ``--mount`` options (but never ``from``)
===========  ==============================================================

RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER are not expanded by
the frontend (the shell does it at run time); ONBUILD keeps its text as is
and the trigger is expanded when it runs in a downstream build.
:data:`EXPANDED_FIELDS` lists this per instruction class name and
:func:`expand_fields` applies it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from bakery.errors import BakeryError, Pos

from ._go import is_space, quote

__all__ = [
    "EXPANDED_FIELDS",
    "ExpansionError",
    "Lex",
    "expand_fields",
    "process_word",
    "process_words",
]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpansionError(Exception):
    """A word that cannot be expanded; the message is BuildKit's."""


class _Scanner:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return ""


class _Words:
    def __init__(self) -> None:
        self.buf = ""
        self.words: List[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.buf += s
        self.in_word = True

    def get_words(self) -> List[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class Lex:
    """A configured expander; mirrors BuildKit's ``shell.Lex`` options.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes``
    keeps escape characters, ``skip_unset_env`` leaves references to unset
    variables as written, ``skip_process_quotes`` treats quotes literally.
    """

    def __init__(
        self,
        escape_token: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset_env: bool = False,
        skip_process_quotes: bool = False,
    ) -> None:
        self.escape_token = escape_token
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes

    # -- public API -------------------------------------------------------

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.process(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> List[str]:
        return self.process(word, env)[1]

    def process_word_with_matches(
        self, word: str, env: Mapping[str, str]
    ) -> Tuple[str, Set[str], Set[str]]:
        """The expansion, the variables found, and those referenced but unset."""
        sw = _ShellWord(self, word, env)
        result, _ = sw.run(word)
        return result, sw.matches, sw.nonmatches

    def process(self, word: str, env: Mapping[str, str]) -> Tuple[str, List[str]]:
        return _ShellWord(self, word, env).run(word)


class _ShellWord:
    def __init__(self, lex: Lex, word: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.env = env
        self.sc = _Scanner(word)
        self.raw_escapes = lex.raw_escapes
        self.matches: Set[str] = set()
        self.nonmatches: Set[str] = set()

    def run(self, source: str) -> Tuple[str, List[str]]:
        try:
            return self.process_stop_on("", self.raw_escapes)
        except ExpansionError as e:
            raise ExpansionError(f"failed to process {quote(source)}: {e}") from None

    def process_stop_on(self, stop: str, raw_escapes: bool) -> Tuple[str, List[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str) -> Tuple[str, List[str]]:
        sc = self.sc
        result: List[str] = []
        words = _Words()
        esc = self.lex.escape_token
        quotes = not self.lex.skip_process_quotes
        while sc.peek() != "":
            ch = sc.peek()
            if stop and ch == stop:
                sc.next()
                return "".join(result), words.get_words()
            if ch == "$" or (quotes and ch in ("'", '"')):
                if ch == "$":
                    tmp = self.process_dollar()
                    result.append(tmp)
                    words.add_string(tmp)
                else:
                    tmp = self.process_single_quote() if ch == "'" else self.process_double_quote()
                    result.append(tmp)
                    words.add_raw_string(tmp)
                continue
            ch = sc.next()
            if ch == esc:
                if self.raw_escapes:
                    words.add_raw_char(ch)
                    result.append(ch)
                ch = sc.next()
                if ch == "":
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        sc = self.sc
        out: List[str] = []
        ch = sc.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            ch = sc.next()
            if ch == "":
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        sc = self.sc
        out: List[str] = []
        esc = self.lex.escape_token
        ch = sc.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            p = sc.peek()
            if p == "":
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if p == '"':
                ch = sc.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if p == "$":
                out.append(self.process_dollar())
                continue
            ch = sc.next()
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = sc.peek()
                if nxt == "":
                    continue
                if nxt in ('"', "$", esc):
                    ch = sc.next()
            out.append(ch)

    def process_dollar(self) -> str:
        sc = self.sc
        sc.next()
        if sc.peek() != "{":
            name = self.process_name()
            if name == "":
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value
        sc.next()
        p = sc.peek()
        if p == "":
            raise ExpansionError("syntax error: missing '}'")
        if p in ("{", "}", ":"):
            raise ExpansionError("syntax error: bad substitution")
        name = self.process_name()
        ch = sc.next()
        chs = ch or "\ufffd"  # Go prints its EOF rune like this
        null_is_unset = False
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == ":":
            null_is_unset = True
            ch = sc.next()
            chs += ch or "\ufffd"
        if null_is_unset or (ch != "" and ch in "+-?#%"):
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise ExpansionError(f"unsupported modifier ({chs}) in substitution")
            try:
                word, _ = self.process_stop_on("}", raw)
            except ExpansionError:
                if sc.peek() == "":
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                if not found or (null_is_unset and value == ""):
                    return word
                return value
            if ch == "+":
                if not found or (null_is_unset and value == ""):
                    return ""
                return word
            if ch == "?":
                if not found:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch == "" or ch not in "#%":
                raise ExpansionError(f"unsupported modifier ({chs}) in substitution")
            greedy = False
            if word[:1] == ch:
                greedy = True
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        if ch == "/":
            replace_all = sc.peek() == "/"
            if replace_all:
                sc.next()
            try:
                pattern, _ = self.process_stop_on("/", True)
            except ExpansionError:
                if sc.peek() == "":
                    raise ExpansionError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process_stop_on("}", True)
            except ExpansionError:
                if sc.peek() == "":
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            rx = _pattern_to_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda m: _go_expand(replacement, m), value)
            m = rx.search(value)
            if m:
                value = value[: m.start()] + replacement + value[m.end():]
            return value
        raise ExpansionError(f"unsupported modifier ({chs}) in substitution")

    def process_name(self) -> str:
        sc = self.sc
        name: List[str] = []
        while sc.peek() != "":
            ch = sc.peek()
            if not name and ch.isdecimal():
                while sc.peek() != "" and sc.peek().isdecimal():
                    name.append(sc.next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return sc.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(sc.next())
        return "".join(name)

    def get_env(self, name: str) -> Tuple[str, bool]:
        if name in self.env:
            self.matches.add(name)
            return self.env[name], True
        self.nonmatches.add(name)
        return "", False


def _go_expand(template: str, m: re.Match[str]) -> str:
    """Go's Regexp.Expand for ReplaceAllString templates ($0, ${1}, $$)."""
    out: List[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2: end] if end >= 0 else ""
            if end < 0 or not re.fullmatch(r"\w+", name):
                out.append(c)
                i += 1
                continue
            i = end + 1
        else:
            mm = re.match(r"\w+", template[i + 1:])
            if not mm:
                out.append(c)
                i += 1
                continue
            name = mm.group(0)
            i += 1 + len(name)
        if name.isdigit() and int(name) <= (m.re.groups or 0):
            out.append(m.group(int(name)) or "")
    return "".join(out)


def _pattern_to_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    out: List[str] = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    n = len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            nxt = pattern[i] if i < n else ""
            if nxt in ("}", "/"):
                continue
            tok = nxt
            i += 1
            if tok not in ("*", "?", "\\"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{tok}'"
                )
            out.append("\\" + tok)
            continue
        out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_to_regex(pattern, greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, keeping each escape before the character it escapes.
    units: List[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            units.append(pattern[i: i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regular expression finds the leftmost match, so reverse both.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _raise(e: ExpansionError, pos: Optional[Pos]) -> BakeryError:
    return BakeryError(str(e), pos)


def process_word(
    word: str, env: Mapping[str, str], escape: str = "\\", pos: Optional[Pos] = None
) -> str:
    """Expand ``word`` into one string; a bad word is a :class:`BakeryError`."""
    try:
        return Lex(escape).process_word(word, env)
    except ExpansionError as e:
        raise _raise(e, pos) from None


def process_words(
    word: str, env: Mapping[str, str], escape: str = "\\", pos: Optional[Pos] = None
) -> List[str]:
    """Expand ``word`` and split it into words (BuildKit does this for EXPOSE)."""
    try:
        return Lex(escape).process_words(word, env)
    except ExpansionError as e:
        raise _raise(e, pos) from None


# Instruction class name -> fields that BuildKit expands (see module doc).
# A field holding a tuple has each element expanded; ``KeyValue``/``ArgDef``
# entries have their key and value expanded.  ``*`` marks word splitting.
EXPANDED_FIELDS: Dict[str, Tuple[str, ...]] = {
    "FromInstruction": ("base", "platform"),
    "AddInstruction": ("sources", "dest", "chown", "chmod", "checksum", "excludes"),
    "CopyInstruction": ("sources", "dest", "chown", "chmod", "from_", "excludes"),
    "EnvInstruction": ("env",),
    "LabelInstruction": ("labels",),
    "ArgInstruction": ("args",),
    "ExposeInstruction": ("ports*",),
    "StopsignalInstruction": ("signal",),
    "UserInstruction": ("user",),
    "VolumeInstruction": ("volumes",),
    "WorkdirInstruction": ("path",),
}


def expand_fields(instr: Any, expand: Callable[[str], str],
                  split: Optional[Callable[[str], List[str]]] = None) -> Any:
    """A copy of ``instr`` with :data:`EXPANDED_FIELDS` expanded.

    ``expand`` maps one word to its expansion (e.g. a closure over
    :func:`process_word` with the right env and escape character);
    ``split`` maps one word to its expanded words (for EXPOSE), defaulting
    to ``[expand(word)]``.  Instructions not listed are returned unchanged.
    Note that ENV and ARG values must be expanded one pair at a time, each
    pair seeing the ones before it: callers that need that expand pairs
    themselves.
    """
    fields = EXPANDED_FIELDS.get(type(instr).__name__)
    if not fields:
        return instr
    changes: Dict[str, Any] = {}
    for f in fields:
        splitting = f.endswith("*")
        f = f.rstrip("*")
        value = getattr(instr, f)
        if value is None:
            continue
        if isinstance(value, str):
            changes[f] = expand(value)
        elif splitting:
            out: List[str] = []
            for v in value:
                out.extend(split(v) if split else [expand(v)])
            changes[f] = tuple(out)
        else:
            items = []
            for v in value:
                if isinstance(v, str):
                    items.append(expand(v))
                else:
                    kv: Dict[str, Any] = {"key": expand(v.key)}
                    if v.value is not None:
                        kv["value"] = expand(v.value)
                    items.append(dataclasses.replace(v, **kv))
            changes[f] = tuple(items)
    return dataclasses.replace(instr, **changes)
