"""The policy package is type-checked by ``./run test`` (mypy over every typed package)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from canal.platform.checks import TYPED

ROOT = Path(__file__).resolve().parents[2]


def test_policy_package_is_in_the_typed_set() -> None:
    assert "canal.park" in TYPED
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "park-services" in config["tool"]["mypy"]["mypy_path"]


def test_matcher_type_checks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "canal.park.policy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
