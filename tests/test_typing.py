"""The common calls type-check on both clients as they do on RedisCluster (mypy on
tests/typing/usage.py, which `assert_type`s what each call reveals)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USAGE = ROOT / "tests" / "typing" / "usage.py"


def _mypy(path: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_common_calls_reveal_redis_clusters_types_on_both_clients():
    r = _mypy(USAGE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_wrong_expectation_is_caught(tmp_path):
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from typing import assert_type\nfrom clusterpool import ClusterClient\n\n"
                     "def f(c: ClusterClient) -> None:\n    assert_type(c.get('k'), int)\n")
    r = _mypy(wrong)
    assert r.returncode == 1 and "[assert-type]" in r.stdout, r.stdout + r.stderr
