"""Benchmarks never rot: every script in bench/ runs at its tiny smoke size (``--smoke``) and
ends with its one JSON line. The figures are not checked (a smoke run proves nothing about the
goal); a crash, a refused request or a wrong answer is.

About 2 minutes for all of them (each migrates its own scratch database); marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUN_ALL = _run_all()


def test_every_benchmark_is_run_by_run_bench_and_smoke_tested() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py")}
    assert scripts - set(RUN_ALL.HELPERS) == set(RUN_ALL.BENCHES)


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_ALL.BENCHES)
def test_benchmark_smoke(name: str, runtime, settings) -> None:
    for tool in RUN_ALL.NEEDS.get(name, ()):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (./run test and ./run bench install it)")
    env = {
        **os.environ,
        # Its own scratch databases, indexes and buckets, apart from other runs' (benchkit).
        "CANAL_BENCH_TAG": f"smoke_{settings.database_name}",
        # This run's Redis database: the jobs bench empties the queue it measures.
        "CANAL_REDIS_URL": runtime.redis_url,
        "CANAL_LOG_JSON": "false",
    }
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-3000:]).strip()
    assert proc.returncode == 0, tail
    figures = RUN_ALL.last_json(proc.stdout)
    assert figures is not None, f"the last line is not a JSON object:\n{tail}"
    assert figures["bench"] == name and figures["smoke"] is True, figures
    assert "goal_met" in figures, figures
