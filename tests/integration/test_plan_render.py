"""``bakery plan`` pages and graphs opened by the real tools.

* the HTML page in headless Chromium (Debian package ``chromium``): it loads
  without network access and its DOM, after the page's script ran, names
  every target and every step;
* the DOT graph through graphviz ``dot -Tsvg`` (Debian package ``graphviz``).

Each test skips, with the reason, when its tool is not installed.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "monorepo")

pytestmark = pytest.mark.integration


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian package: chromium)")
    raise AssertionError("unreachable")  # pragma: no cover


def _plan(args: List[str], cache: str) -> str:
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if k not in ("VERSION", "REGISTRY")}
    env["BAKERY_CACHE_DIR"] = cache
    r = subprocess.run([sys.executable, "-m", "bakery", "plan", *args], cwd=EXAMPLE, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_html_page_in_headless_chromium(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chromium = _chromium()
    page = tmp_path / "plan.html"
    page.write_text(_plan(["--format", "html"], str(tmp_path / "cache")), encoding="utf-8")
    plan = json.loads(_plan(["--format", "json"], str(tmp_path / "cache")))
    r = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "<table" in dom and "</html>" in dom, dom[:2000]
    for name in plan["targets"]:
        assert name in dom, f"target {name} is not in the rendered page"
    for step in plan["steps"]:
        assert step["key"][len("sha256:"):][:12] in dom, f"step {step['step']} is missing"


def test_dot_through_graphviz(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("graphviz `dot` is not installed (Debian package: graphviz)")
    src = tmp_path / "plan.dot"
    src.write_text(_plan(["--format", "dot"], str(tmp_path / "cache")), encoding="utf-8")
    r = subprocess.run([dot, "-Tsvg", str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip().startswith("<?xml") and "<svg" in r.stdout
    plan = json.loads(_plan(["--format", "json"], str(tmp_path / "cache")))
    svg = html.unescape(r.stdout)  # graphviz writes "-" as &#45;
    for e in plan["exports"]:
        assert f"{e['target']}@{e['platform']}" in svg
