"""The package stays typed (mypy) and lint-clean (ruff): checked with the rest of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_package_is_mypy_clean():
    pytest.importorskip("mypy")
    r = _run("mypy", "clusterpool")
    assert r.returncode == 0, r.stdout + r.stderr


def test_tree_is_ruff_clean():
    if shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists():
        pytest.skip("ruff not installed")
    r = _run("ruff", "check", "clusterpool", "tests", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_ships_py_typed():
    assert (ROOT / "clusterpool" / "py.typed").exists()
