"""Parser and instruction typing: table-driven unit tests (the golden
files in tests/data/dockerfile cover whole files)."""

from __future__ import annotations

from typing import List, Optional

import pytest

from bakery.dockerfile import instructions as ins
from bakery.dockerfile.expand import process_word
from bakery.dockerfile.parser import (
    extract_builder_flags,
    parse,
    parse_heredoc,
    parse_words,
    split_command,
)
from bakery.errors import BakeryError


def one(text: str) -> ins.Instruction:
    df = ins.parse_instructions("FROM scratch\n" + text, "Dockerfile")
    (cmd,) = df.stages[0].commands
    return cmd


# -- directives -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,escape,names",
    [
        ("# escape=`\nFROM a\n", "`", ["escape"]),
        ("#escape = `\nFROM a\n", "`", ["escape"]),
        ("  # ESCAPE=`\nFROM a\n", "`", ["escape"]),
        ("# syntax=x\n# escape=`\n# check=error=true\nFROM a\n", "`", ["syntax", "escape", "check"]),
        ("\n# escape=`\nFROM a\n", "\\", []),
        ("# hello\n# escape=`\nFROM a\n", "\\", []),
        ("# other=1\n# escape=`\nFROM a\n", "\\", []),
        ("FROM a\n# escape=`\n", "\\", []),
        ("# escape=\\\nFROM a\n", "\\", ["escape"]),
    ],
)
def test_directives(text: str, escape: str, names: List[str]) -> None:
    r = parse(text)
    assert r.escape == escape
    assert [d.name for d in r.directives] == names


def test_directive_values() -> None:
    r = parse("# syntax = docker/dockerfile:1  \n# check=skip=all;error=true\nFROM a\n")
    assert r.directive("syntax") == "docker/dockerfile:1"
    assert r.directive("check") == "skip=all;error=true"
    df = ins.parse_instructions("# syntax=s\nFROM a\n")
    assert df.syntax == "s" and df.check is None


# -- splitting ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,cmd,flags,rest",
    [
        ("RUN echo", "RUN", [], "echo"),
        ("  run   echo  hi  ", "run", [], "echo  hi"),
        ("COPY --from=a --link src dst", "COPY", ["--from=a", "--link"], "src dst"),
        ('COPY --chown="a b" x y', "COPY", ["--chown=a b"], "x y"),
        ("COPY --chown='a b' x y", "COPY", ["--chown=a b"], "x y"),
        ("COPY --chown=a\\ b x y", "COPY", ["--chown=a b"], "x y"),
        ("COPY -- --x y", "COPY", [], "--x y"),
        ("COPY --a -- --x y", "COPY", ["--a"], "--x y"),
        ("RUN -x", "RUN", [], "-x"),
        ("RUN --mount=type=cache", "RUN", ["--mount=type=cache"], ""),
        ("ENV", "ENV", [], ""),
    ],
)
def test_split_command(line: str, cmd: str, flags: List[str], rest: str) -> None:
    assert split_command(line) == (cmd, flags, rest)


def test_extract_builder_flags_empty_quoted() -> None:
    assert extract_builder_flags('--a="" rest') == ("rest", ["--a="])


@pytest.mark.parametrize(
    "rest,words",
    [
        ("a b  c", ["a", "b", "c"]),
        ('a="b c" d', ['a="b c"', "d"]),
        ("a='b c'", ["a='b c'"]),
        ("a=b\\ c", ["a=b\\ c"]),
        ('a="b \\" c"', ['a="b \\" c"']),
        ("a='x\\'", ["a='x\\'"]),
        ('""', ['""']),
        ("trailing\\", ["trailing"]),
    ],
)
def test_parse_words(rest: str, words: List[str]) -> None:
    assert parse_words(rest, "\\") == words


# -- forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,command,shell",
    [
        ('RUN ["a", "b"]', ("a", "b"), False),
        ("RUN [ \"a\" ]", ("a",), False),
        ("RUN ['a']", ("['a']",), True),
        ("RUN [a", ("[a",), True),
        ('RUN ["a"] trailing', ('["a"] trailing',), True),
        ("RUN echo  two  spaces", ("echo  two  spaces",), True),
        ('RUN ["a\\u00e9\\n"]', ("a\u00e9\n",), False),
        ("RUN [NaN]", ("[NaN]",), True),
        ("RUN", (), True),
    ],
)
def test_run_forms(line: str, command: tuple, shell: bool) -> None:
    cmd = one(line + "\n")
    assert isinstance(cmd, ins.RunInstruction)
    assert cmd.command == command
    assert cmd.prepend_shell is shell


def test_case_insensitive_keywords() -> None:
    df = ins.parse_instructions("from a AS B\nrUn x\nCopy a b\n")
    assert df.stages[0].name == "b"
    kinds = [type(c).__name__ for c in df.stages[0].commands]
    assert kinds == ["RunInstruction", "CopyInstruction"]
    assert df.stages[0].commands[0].keyword == "rUn"


def test_stages_and_meta_args() -> None:
    df = ins.parse_instructions(
        "ARG A=1 B\nARG C\nFROM x AS one\nARG A\nRUN a\nFROM --platform=linux/arm64 one\n"
    )
    assert [a.key for m in df.meta_args for a in m.args] == ["A", "B", "C"]
    assert df.meta_args[0].args[0].value == "1" and df.meta_args[0].args[1].value is None
    assert [s.name for s in df.stages] == ["one", None]
    assert df.stages[1].platform == "linux/arm64" and df.stages[1].base == "one"
    assert len(df.stages[0].commands) == 2


def test_positions_and_source() -> None:
    text = "FROM a\n\n  RUN echo \\\n    more\nCOPY <<EOF /x\nbody\nEOF\n"
    df = ins.parse_instructions(text, "Dfile")
    run, copy = df.stages[0].commands
    assert (run.pos.file, run.pos.line, run.pos.col, run.end_line) == ("Dfile", 3, 3, 4)
    assert run.source == ("  RUN echo \\", "    more")
    assert run.original == "RUN echo     more"
    assert copy.pos.line == 5 and copy.end_line == 7
    assert copy.source == ("COPY <<EOF /x", "body", "EOF")


def test_error_render_has_caret() -> None:
    with pytest.raises(BakeryError) as info:
        ins.parse_instructions("FROM a\n  FORM b\n", "Dockerfile")
    rendered = info.value.render()
    assert rendered.splitlines()[0] == (
        "Dockerfile:2:3: error: unknown instruction: FORM (did you mean FROM?)"
    )
    assert "  FORM b" in rendered


def test_error_in_continuation_points_at_start() -> None:
    with pytest.raises(BakeryError) as info:
        ins.parse_instructions("FROM a\nCOPY \\\n  --bogus=1 \\\n  a b\n")
    assert info.value.pos is not None and info.value.pos.line == 2


# -- heredocs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "word,name,expand,chomp,fd",
    [
        ("<<EOF", "EOF", True, False, 0),
        ("<<-EOF", "EOF", True, True, 0),
        ('<<"EOF"', "EOF", False, False, 0),
        ("<<'EOF'", "EOF", False, False, 0),
        ('<<E"O"F', "EOF", False, False, 0),
        ("3<<EOF", "EOF", True, False, 3),
        ("<<\\EOF", "EOF", True, False, 0),
    ],
)
def test_parse_heredoc(word: str, name: str, expand: bool, chomp: bool, fd: int) -> None:
    h = parse_heredoc(word)
    assert h is not None
    assert (h.name, h.expand, h.chomp, h.fd) == (name, expand, chomp, fd)


@pytest.mark.parametrize("word", ["<<", "<EOF", "a<<EOF", "<<a b", "<<<EOF", "EOF"])
def test_not_heredoc(word: str) -> None:
    assert parse_heredoc(word) is None


def test_heredoc_run_and_chomp() -> None:
    run = one("RUN <<-EOT\n\techo a\n\t\tb\n\tEOT\n")
    assert isinstance(run, ins.RunInstruction)
    (h,) = run.heredocs
    assert h.content == "\techo a\n\t\tb\n"
    assert h.text() == "echo a\nb\n"
    assert run.command == ("<<-EOT",)


def test_heredoc_copy_sources() -> None:
    cp = one('COPY file <<a <<"b" /dst/\nA $X\na\nB $X\nb\n')
    assert isinstance(cp, ins.CopyInstruction)
    assert cp.sources == ("file",)
    assert [(c.path, c.data, c.expand) for c in cp.contents] == [
        ("a", "A $X\n", True),
        ("b", "B $X\n", False),
    ]


def test_heredoc_terminator_needs_exact_line() -> None:
    run = one("RUN <<EOF\n EOF\nEOF \nEOF\n")
    assert isinstance(run, ins.RunInstruction)
    assert run.heredocs[0].content == " EOF\nEOF \n"


def test_heredoc_not_for_exec_form_or_other_instructions() -> None:
    df = ins.parse_instructions('FROM a\nRUN ["<<EOF"]\nCMD <<EOF\nENV X=<<EOF\n')
    assert all(not getattr(c, "heredocs", ()) for c in df.stages[0].commands)


def test_onbuild_heredoc_expression() -> None:
    ob = one("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(ob, ins.OnbuildInstruction)
    assert ob.expression == "RUN <<EOF\necho hi\nEOF"
    assert isinstance(ob.trigger, ins.RunInstruction)
    assert ob.trigger.heredocs[0].content == "echo hi\n"


def test_onbuild_unknown_trigger_is_accepted() -> None:
    ob = one("onbuild  FOO bar\n")
    assert isinstance(ob, ins.OnbuildInstruction)
    assert ob.expression == "FOO bar" and ob.trigger is None


# -- instruction details -------------------------------------------------------------


def test_env_forms() -> None:
    env = one('ENV a=1 b="x y" c\\ d=e\n')
    assert isinstance(env, ins.EnvInstruction)
    assert [(k.key, k.value, k.delim) for k in env.env] == [
        ("a", "1", True), ("b", '"x y"', True), ("c\\ d", "e", True)
    ]
    legacy = one("ENV  key   value  with spaces\n")
    assert isinstance(legacy, ins.EnvInstruction)
    assert [(k.key, k.value, k.delim) for k in legacy.env] == [("key", "value  with spaces", False)]


def test_label_legacy() -> None:
    lab = one("LABEL maintainer me@x\n")
    assert isinstance(lab, ins.LabelInstruction)
    assert lab.labels == (ins.KeyValue("maintainer", "me@x", False),)


def test_flags_checked_only_where_buildkit_checks() -> None:
    for text in ("ARG --x=1 a\n", "STOPSIGNAL --x 9\n", "HEALTHCHECK --foo NONE\n"):
        one(text)  # accepted, as BuildKit does
    with pytest.raises(BakeryError, match="unknown flag: --x"):
        one("USER --x=1 me\n")


def test_healthcheck_values() -> None:
    hc = one("HEALTHCHECK --interval=1h2m3.5s --retries=0 CMD [\"a\"]\n")
    assert isinstance(hc, ins.HealthcheckInstruction)
    assert hc.interval == ((3600 + 120 + 3) * 10**9 + 5 * 10**8)
    assert hc.retries == 0 and hc.test == ("CMD", "a")


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("type=cache,target=/c", ins.Mount(type="cache", target="/c", readonly=False)),
        ("target=/b", ins.Mount(target="/b")),
        ("type=bind,target=/b,rw=true", ins.Mount(target="/b", readonly=False)),
        ("type=bind,target=/b,readonly=false", ins.Mount(target="/b", readonly=False)),
        ("type=tmpfs,dst=/t,size=1.5g", ins.Mount(type="tmpfs", target="/t", readonly=False,
                                                   size=int(1.5 * 2**30))),
        ('"type=secret",id=x', ins.Mount(type="secret", id="x")),
        ("type=secret,id=x,required=1", ins.Mount(type="secret", id="x", required=True)),
        ("TYPE=SSH", ins.Mount(type="ssh")),
        ("type=cache,target=/c,sharing=PRIVATE", ins.Mount(type="cache", target="/c",
                                                           readonly=False, sharing="private")),
    ],
)
def test_parse_mount(spec: str, expected: ins.Mount) -> None:
    assert ins.parse_mount(spec) == expected


def test_parse_mount_with_expander() -> None:
    env = {"T": "secret", "U": "42", "D": "/run"}
    m = ins.parse_mount("type=$T,id=tok,target=$D/tok,uid=$U",
                        lambda w: process_word(w, env))
    assert (m.type, m.target, m.uid, m.deferred) == ("secret", "/run/tok", 42, ())
    deferred = ins.parse_mount("type=$T,id=tok,required,uid=$U")
    assert deferred.deferred == ("type", "uid") and deferred.uid is None


@pytest.mark.parametrize(
    "value,expected",
    [("755", 0o755), ("0644", 0o644), ("7777", 0o7777), ("u+x", "u+x"),
     ("u=rwx,go=rx", "u=rwx,go=rx"), ("a-w", "a-w"), ("+x", "+x")],
)
def test_parse_chmod(value: str, expected: object) -> None:
    assert ins.parse_chmod(value) == expected


@pytest.mark.parametrize("value", ["888", "17777", "u+q", "x", ""])
def test_parse_chmod_bad(value: str) -> None:
    with pytest.raises(ValueError):
        ins.parse_chmod(value)


def test_chmod_with_variable_is_not_checked_early() -> None:
    cp = one("COPY --chmod=$MODE a b\n")
    assert isinstance(cp, ins.CopyInstruction) and cp.chmod == "$MODE"


@pytest.mark.parametrize(
    "text,message",
    [
        ("COPY --from a b", "missing a value on flag: --from"),
        ("COPY --link= a b", "missing a value on flag: --link"),
        ("ADD --unpack=maybe a b", "expecting boolean value for flag --unpack, not: maybe"),
        ("RUN --mount=type=bind,target=/x,uid=1 true", 'uid not allowed for "bind" type mounts'),
        ("RUN --mount=type=secret,id=a,src=b true", "both source and id can't be set"),
        ("RUN --mount=type=secret,target=/x,from=y true", "secret mount should not have a from"),
        ("RUN --mount=type=tmpfs,target=/t,size=big true", "invalid value for size: big"),
        ("RUN --mount=type=cache,target=/t,ro=maybe true", "invalid value for ro: maybe"),
        ("RUN --mount=type=cache,target=/t,uid=-1 true", "invalid value -1 for uid"),
        ("RUN --mount=type=cache,target=/x,\\\"a true", "failed to parse csv mounts"),
        ("HEALTHCHECK --retries=x CMD a", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("HEALTHCHECK --interval=5q CMD a", 'time: unknown unit "q" in duration "5q"'),
    ],
)
def test_instruction_errors(text: str, message: str) -> None:
    with pytest.raises(BakeryError) as info:
        one(text + "\n")
    assert message in info.value.message
    assert info.value.pos is not None and info.value.pos.line == 2


def test_to_data_with_source() -> None:
    df = ins.parse_instructions("FROM a\nRUN x\n")
    data = ins.to_data(df.stages[0], with_source=True)
    assert data["commands"][0]["source"] == ["RUN x"]
    assert data["from"]["base"] == "a"


def test_dump_matches_buildkit_style() -> None:
    r = parse('FROM a\nCOPY --from=b ["x", "y"] \nONBUILD RUN echo "q"\nENV k v\n')
    assert r.dump() == (
        '(from "a")\n'
        '(copy ["--from=b"] "x" "y")\n'
        '(onbuild (run "echo \\"q\\""))\n'
        '(env "k" "v" "")\n'
    )


def _warn_lines(text: str) -> List[Optional[int]]:
    return [w.line for w in parse(text).warnings]


def test_empty_continuation_warning() -> None:
    assert _warn_lines("FROM a\nRUN a \\\n\n  b\n") == [4]
    assert _warn_lines("FROM a\nRUN a \\\n# c\n  b\n") == []
