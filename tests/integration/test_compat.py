"""`bakery plan --print` against what buildx printed for 40 real bake files.

Runs the shared checker (../shared/compat/check_bake.py) on the corpus beside
the project; skipped (with the reason) when the corpus is not there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPAT = os.path.join(os.path.dirname(ROOT), "shared", "compat")


@pytest.mark.skipif(not os.path.isdir(os.path.join(COMPAT, "bake-real")),
                    reason="the compatibility corpus ../shared/compat is not beside the project")
def test_buildx_print_conformance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bakery = shutil.which("bakery")
    cmd = [bakery, "plan"] if bakery else [sys.executable, "-m", "bakery", "plan"]
    # the checker runs with PATH=/usr/bin:/bin, so give it an absolute command
    r = subprocess.run(
        [sys.executable, os.path.join(COMPAT, "check_bake.py"), os.path.join(COMPAT, "bake-real"), *cmd],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and " 0 failed" in last, r.stdout[-6000:] + r.stderr[-2000:]
