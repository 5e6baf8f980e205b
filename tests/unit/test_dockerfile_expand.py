"""Word expansion, table-driven; cases follow BuildKit's shell/envVarTest,
wordsTest and lex tests."""

from __future__ import annotations

from typing import List

import pytest

from bakery.dockerfile.expand import (
    EXPANDED_FIELDS,
    Lex,
    expand_fields,
    process_word,
    process_words,
)
from bakery.dockerfile.instructions import parse_instructions
from bakery.errors import BakeryError, Pos

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# (source, expected or None for an error) — BuildKit's envVarTest (Unix rows)
WORD_CASES = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", None),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", None),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', None),
    ('"hello\\"', None),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", None),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", None),
    ("${}aaa", None),
    ("he${}", None),
    ("he${}xx", None),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", None),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", None),
    ("he${XXX?}", None),
    ("he${XXX:?}", None),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", None),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ('"he\'$PWD\'"', "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", None),
    ("he${PWD:=000}xx", None),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", None),
    ("안녕\\'하세요", "안녕'하세요"),
    ('"안녕\\t하세요"', "안녕\\t하세요"),
    ("안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", None),
    ("${aaa}}", "}"),
    ("${aaa", None),
    ("${{aaa", None),
    ("${{aaa}}", None),
    ("${aaa}}}", "}}"),
    # unset vs empty for - and +
    ("${NULL-default}", ""),
    ("${NULL:-default}", "default"),
    ("${XXX-default}", "default"),
    ("${NULL+alt}", "alt"),
    ("${NULL:+alt}", ""),
    ("${XXX+alt}", ""),
    # special parameters are names (never set here)
    ("a$@b", "ab"),
    ("a$$b", "ab"),
]


@pytest.mark.parametrize("source,expected", WORD_CASES)
def test_process_word(source: str, expected: str) -> None:
    if expected is None:
        with pytest.raises(BakeryError):
            process_word(source, ENV)
    else:
        assert process_word(source, ENV) == expected


PATTERN_ENV = {"PATH_": "/abc/def/ghi", "FOO": "aabbcc", "STAR": "*x*", "SL": "a/b/c", "DOT": "a.b.c"}

PATTERN_CASES = [
    ("${PATH_#*/}", "abc/def/ghi"),
    ("${PATH_##*/}", "ghi"),
    ("${PATH_%/*}", "/abc/def"),
    ("${PATH_%%/*}", ""),
    ("${PATH_#/abc}", "/def/ghi"),
    ("${PATH_%ghi}", "/abc/def/"),
    ("${PATH_#nomatch}", "/abc/def/ghi"),
    ("${FOO#a?}", "bbcc"),
    ("${FOO%?c}", "aabb"),
    ("${FOO#*b}", "bcc"),
    ("${FOO##*b}", "cc"),
    ("${FOO%b*}", "aab"),
    ("${FOO%%b*}", "aa"),
    ("${FOO/b/x}", "aaxbcc"),
    ("${FOO//b/x}", "aaxxcc"),
    ("${FOO/a*/x}", "x"),
    ("${FOO//?/-}", "------"),
    ("${FOO/zz/x}", "aabbcc"),
    ("${FOO//b/}", "aacc"),
    ("${STAR#\\*}", "x*"),
    ("${STAR%\\*}", "*x"),
    ("${SL//\\//-}", "a-b-c"),
    ("${DOT//./-}", "a-b-c"),
    ("${UNSET#x}", ""),
    ("${UNSET//x/y}", ""),
    ("${FOO/b/$PWD}", "aa/homebcc"),
]


@pytest.mark.parametrize("source,expected", PATTERN_CASES)
def test_patterns(source: str, expected: str) -> None:
    assert process_word(source, {**ENV, **PATTERN_ENV}) == expected


@pytest.mark.parametrize(
    "source,message",
    [
        ("${FOO:#x}", "unsupported modifier (:#) in substitution"),
        ("${FOO:%x}", "unsupported modifier (:%) in substitution"),
        ("${FOO!x}", "unsupported modifier (!) in substitution"),
        ("${FOO#\\a}", "invalid escape '\\a'"),
        ("${FOO/a", "syntax error: missing '/' in ${}"),
        ("${}", "syntax error: bad substitution"),
        ("${:x}", "syntax error: bad substitution"),
        ("${", "syntax error: missing '}'"),
        ("'abc", "unexpected end of statement while looking for matching single-quote"),
        ('"abc', "unexpected end of statement while looking for matching double-quote"),
    ],
)
def test_errors(source: str, message: str) -> None:
    with pytest.raises(BakeryError) as info:
        process_word(source, PATTERN_ENV, pos=Pos("Dockerfile", 3, 1))
    assert message in info.value.message
    assert info.value.message.startswith(f"failed to process {source!r}".replace("'", '"')[:18])
    assert info.value.pos == Pos("Dockerfile", 3, 1)


def test_mandatory_variables() -> None:
    set_env = {"VAR": "plain", "ARG": "x"}
    empty_env = {"VAR": "", "ARG": "x"}
    unset_env = {"ARG": "x"}
    no_empty = "${VAR:?message here$ARG}"
    no_unset = "${VAR?message here$ARG}"
    assert process_word(no_empty, set_env) == "plain"
    for env in (empty_env, unset_env):
        with pytest.raises(BakeryError, match="VAR: message herex"):
            process_word(no_empty, env)
    assert process_word(no_unset, set_env) == "plain"
    assert process_word(no_unset, empty_env) == ""
    with pytest.raises(BakeryError, match="VAR: message herex"):
        process_word(no_unset, unset_env)
    with pytest.raises(BakeryError, match="VAR: is not allowed to be unset"):
        process_word("${VAR?}", unset_env)
    with pytest.raises(BakeryError, match="VAR: is not allowed to be empty"):
        process_word("${VAR:?}", empty_env)


# BuildKit's wordsTest: env is cumulative, expected words joined by ","
WORDS_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}
WORDS_CASES = [
    ("hello", "hello"),
    ("hello${hi}bye", "hellohibye"),
    ("hello${space}bye", "helloabc,defbye"),
    ('hello"${space}"bye', "helloabc  defbye"),
    ("hello${leading}def", "hello,ab,cdef"),
    ('hello"${leading}" def', "hello  ab c,def"),
    ('hello"${leading}"', "hello  ab c"),
    ("hello${leading}", "hello,ab,c"),
    ("hello${trailing}", "helloab,c"),
    ("hello${trailing}d", "helloab,c,d"),
    ('hello"${trailing}"d', "helloab c   d"),
    ('hel"lo${trailing}"', "helloab c   "),
    ('hello" there  "', "hello there  "),
    ("hello there     ", "hello,there"),
    ("hello\\ there", "hello there"),
    ('hello" there', "error"),
    ('hello\\" there', 'hello",there'),
    ('hello"\\\\there"', "hello\\there"),
    ('hello"\\there"', "hello\\there"),
    ("hello'\\\\there'", "hello\\\\there"),
    ("hello'\\there'", "hello\\there"),
    ("hello'$there'", "hello$there"),
    ("a '' b", "a,b"),
    ("8080 ${space}", "8080,abc,def"),
]


@pytest.mark.parametrize("source,expected", WORDS_CASES)
def test_process_words(source: str, expected: str) -> None:
    try:
        got: List[str] = process_words(source, WORDS_ENV)
    except BakeryError:
        got = ["error"]
    assert got == expected.split(",")


def test_backtick_escape() -> None:
    env = {"X": "1"}
    assert process_word("c:\\path\\$X", env, escape="`") == "c:\\path\\1"
    assert process_word("a`$X", env, escape="`") == "a$X"
    assert process_word('"a`"b"', env, escape="`") == 'a"b'
    assert process_word("end`", env, escape="`") == "end"


def test_lex_options() -> None:
    lex = Lex("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert lex.process_words('a "b c" \\d $X ${Y:-z}', {}) == ["a", '"b c"', "\\d", "$X", "${Y:-z}"]
    result, matched, unmatched = Lex().process_word_with_matches("$A ${B:-x} $C", {"A": "1", "C": ""})
    assert result == "1 x "
    assert matched == {"A", "C"}
    assert unmatched == {"B"}
    assert Lex(skip_process_quotes=True).process_word("'$A'", {"A": "1"}) == "'1'"


def test_replacement_templates() -> None:
    # ${v//p/r} keeps escapes in r and hands it to Go's ReplaceAllString,
    # where $0 is the whole match: BuildKit gives a[\b]c here.
    env = {"V": "abc"}
    assert process_word("${V//b/[\\$0]}", env) == "a[\\b]c"
    assert process_word("${V/b/[\\$0]}", env) == "a[\\$0]c"  # first match: literal


def test_expanded_fields_table() -> None:
    df = parse_instructions(
        "ARG IMG=alpine\nFROM $IMG\nENV A=$X B=${X:-d}\nEXPOSE $P 22\nCOPY --chown=$U $SRC /d/\n"
        "WORKDIR /w/$X\nRUN echo $X\nUSER $U\n",
        "Dockerfile",
    )
    env = {"X": "x", "P": "80 81", "U": "me", "SRC": "s"}
    out = [
        expand_fields(
            c,
            lambda w: process_word(w, env),
            lambda w: process_words(w, env),
        )
        for c in df.stages[0].commands
    ]
    assert [(kv.key, kv.value) for kv in out[0].env] == [("A", "x"), ("B", "x")]
    # sorted as written ("$P" < "22"), then expanded and split, like BuildKit
    assert out[1].ports == ("80", "81", "22")
    assert (out[2].chown, out[2].sources, out[2].dest) == ("me", ("s",), "/d/")
    assert out[3].path == "/w/x"
    assert out[4].command == ("echo $X",)  # RUN is left to the shell
    assert out[5].user == "me"
    assert "RunInstruction" not in EXPANDED_FIELDS
