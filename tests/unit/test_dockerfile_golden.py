"""Golden tests for the Dockerfile frontend, in the style of BuildKit's
parser testfiles.

* ``tests/data/dockerfile/<case>/Dockerfile`` is parsed and typed; the dump
  (BuildKit-style S-expressions per node, plus the typed instructions) must
  equal ``result.json`` beside it.  Run with ``UPDATE_GOLDEN=1`` to rewrite
  the expected files after checking the differences.
* ``tests/data/dockerfile-negative/<case>/Dockerfile`` must fail with
  exactly ``line:col: message`` from ``error.txt``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import pytest

from bakery.dockerfile.instructions import parse_instructions, to_data
from bakery.errors import BakeryError

DATA = Path(__file__).resolve().parent.parent / "data"
POSITIVE = sorted(p for p in (DATA / "dockerfile").iterdir() if (p / "Dockerfile").is_file())
NEGATIVE = sorted(
    p for p in (DATA / "dockerfile-negative").iterdir() if (p / "Dockerfile").is_file()
)
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _read(path: Path) -> str:
    # newline="" keeps \r\n so that CRLF handling is tested as written
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def dump(text: str) -> Dict[str, Any]:
    df = parse_instructions(text, "Dockerfile")
    return {
        "ast": [
            {
                "lines": [n.start_line, n.end_line],
                "dump": n.dump(),
                **({"heredocs": to_data(n.heredocs)} if n.heredocs else {}),
            }
            for n in df.ast.nodes
        ],
        "escape": df.escape,
        "directives": to_data(df.directives),
        "warnings": to_data(df.warnings),
        "meta_args": to_data(df.meta_args),
        "stages": to_data(df.stages),
    }


@pytest.mark.parametrize("case", POSITIVE, ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    got = dump(_read(case / "Dockerfile"))
    expected_file = case / "result.json"
    rendered = json.dumps(got, indent=2, ensure_ascii=False) + "\n"
    if UPDATE or not expected_file.exists():
        expected_file.write_text(rendered, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"wrote missing {expected_file}; check it and rerun")
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda p: p.name)
def test_negative(case: Path) -> None:
    expected_file = case / "error.txt"
    with pytest.raises(BakeryError) as info:
        parse_instructions(_read(case / "Dockerfile"), "Dockerfile")
    err = info.value
    assert err.pos is not None and err.pos.file == "Dockerfile"
    got = f"{err.pos.line}:{err.pos.col}: {err.message}"
    if UPDATE:
        expected_file.write_text(got + "\n", encoding="utf-8")
    assert got == expected_file.read_text(encoding="utf-8").rstrip("\n")
    assert err.render().startswith(f"Dockerfile:{got.split(':')[0]}:")
