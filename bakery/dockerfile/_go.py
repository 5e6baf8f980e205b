"""Small re-implementations of the Go standard library behaviours that
BuildKit's Dockerfile frontend relies on, so that bakery accepts and rejects
the same inputs (white space, quoting, numbers, durations, suggestions).

Internal to :mod:`bakery.dockerfile`.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple

# Go's unicode.IsSpace for Latin-1; beyond it, the White_Space property,
# which Python's str.isspace() approximates closely enough.
_LATIN1_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


def is_space(ch: str) -> bool:
    if ord(ch) < 0x100:
        return ch in _LATIN1_SPACE
    return ch.isspace()


def trim_left_space(s: str) -> str:
    i = 0
    while i < len(s) and is_space(s[i]):
        i += 1
    return s[i:]


def trim_right_space(s: str) -> str:
    j = len(s)
    while j > 0 and is_space(s[j - 1]):
        j -= 1
    return s[:j]


def trim_space(s: str) -> str:
    """strings.TrimSpace."""
    return trim_right_space(trim_left_space(s))


def quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == " " or (ch.isprintable() and not is_space(ch)):
            out.append(ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp < 0x10000:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def quote_list(items: Iterable[str]) -> str:
    """fmt's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(quote(i) for i in items) + "]"


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def parse_bool(s: str) -> Optional[bool]:
    """strconv.ParseBool; None where Go returns an error."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    return None


def parse_uint(s: str, base: int, bits: int) -> Optional[int]:
    """strconv.ParseUint without base prefixes; None on error."""
    digits = "01234567" if base == 8 else "0123456789"
    if not s or any(c not in digits for c in s):
        return None
    v = int(s, base)
    if v >= 1 << bits:
        return None
    return v


def parse_int(s: str, bits: int) -> Tuple[Optional[int], str]:
    """strconv.ParseInt(s, 10, bits): (value, error message)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or any(c not in "0123456789" for c in body):
        return None, f"strconv.ParseInt: parsing {quote(s)}: invalid syntax"
    v = int(s)
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        return None, f"strconv.ParseInt: parsing {quote(s)}: value out of range"
    return v, ""


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DUR_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_duration(s: str) -> Tuple[Optional[int], str]:
    """time.ParseDuration: (nanoseconds, error message)."""
    orig = s
    bad = f"time: invalid duration {quote(orig)}"
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0, ""
    if s == "":
        return None, bad
    total = 0
    while s:
        m = _DUR_PART.match(s)
        assert m is not None
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            return None, bad
        if not unit:
            return None, f"time: missing unit in duration {quote(orig)}"
        if unit not in _UNITS:
            return None, f"time: unknown unit {quote(unit)} in duration {quote(orig)}"
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > (1 << 63) - 1:
            return None, bad
        s = s[m.end():]
    return (-total if neg else total), ""


def levenshtein(a: str, b: str) -> int:
    if a == b:
        return 0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def suggest(val: str, options: Iterable[str], case_sensitive: bool) -> Optional[str]:
    """BuildKit's util/suggest: the closest option (distance < 3), or None.

    Like BuildKit, an exact match means "no suggestion"; unlike BuildKit
    (which walks a Go map), ties go to the first option given.
    """
    orig = val
    if not case_sensitive:
        val = val.lower()
    match = ""
    mindist = 3
    for opt in options:
        if not case_sensitive:
            opt = opt.lower()
        if val == opt:
            return None
        dist = levenshtein(val, opt)
        if dist < mindist:
            if case_sensitive:
                match = opt
            elif orig == orig.lower():
                match = opt.lower()
            elif orig == orig.upper():
                match = opt.upper()
            else:
                match = opt
            mindist = dist
    return match or None


def with_suggestion(message: str, val: str, options: Iterable[str], case_sensitive: bool) -> str:
    s = suggest(val, options, case_sensitive)
    if s is None:
        return message
    return f"{message} (did you mean {s}?)"


_RAM_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_RAM_MULT = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(s: str) -> Optional[int]:
    """go-units RAMInBytes (binary multiples); None on error."""
    m = _RAM_RE.match(s)
    if not m:
        return None
    try:
        size = float(m.group(1))
    except ValueError:
        return None
    unit = (m.group(2) or "").lower()
    if unit:
        size *= _RAM_MULT[unit]
    return int(size)


def split_lines_keepends(text: str) -> List[str]:
    """bufio.Scanner with BuildKit's scanLines: split after each \\n only."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out
