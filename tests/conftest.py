"""Shared test setup: every test session gets its own bakery cache."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="bakery-test-cache-") as d:
        old = os.environ.get("BAKERY_CACHE_DIR")
        os.environ["BAKERY_CACHE_DIR"] = d
        yield d
        if old is None:
            os.environ.pop("BAKERY_CACHE_DIR", None)
        else:
            os.environ["BAKERY_CACHE_DIR"] = old
