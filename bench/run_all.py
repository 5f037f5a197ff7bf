"""Run every benchmark (or the ones named) one after another and gather their JSON lines into
one table: ``var/bench/results.md`` (printed at the end) and ``var/bench/results.json``; each
benchmark's whole output goes to ``var/bench/<name>.log``.

    ./run bench                      every benchmark at full size (~15 min on 2 cores)
    ./run bench casbin_scale jobs    only those
    ./run bench --smoke              every benchmark at its tiny smoke size (~2 min)

Exit status: non-zero if any benchmark failed or missed its goal (the table says which).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "bench"

# Every benchmark, cheapest first. tests/test_bench_smoke.py checks that each script in
# bench/ is either listed here or is a helper.
BENCHES = (
    "casbin_scale",
    "profiling",
    "policy_matching",
    "jobs",
    "search",
    "service_search",
    "http_baseline",
    "storage",
    "databank",
    "compute_to_data",
)
HELPERS = ("benchkit", "http_server", "run_all")
# What a benchmark needs besides the project's own packages (./run bench installs them).
NEEDS = {"http_baseline": ("wrk",)}


def last_json(output: str) -> dict[str, Any] | None:
    """The benchmark's figures: its last line, if that is a JSON object."""
    lines = output.strip().splitlines()
    if not lines:
        return None
    try:
        figures = json.loads(lines[-1])
    except ValueError:
        return None
    return figures if isinstance(figures, dict) else None


def run_one(name: str, smoke: bool) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *(["--smoke"] if smoke else [])]
    print(f"=== {name}{' (smoke)' if smoke else ''}", flush=True)
    started = time.monotonic()
    log = OUT / f"{name}{'-smoke' if smoke else ''}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            sink.write(line)
            output.append(line)
        code = proc.wait()
    seconds = time.monotonic() - started
    figures = last_json("".join(output))
    print(f"=== {name}: exit {code} in {seconds:.0f} s (log: {log.relative_to(ROOT)})", flush=True)
    return {"name": name, "exit": code, "seconds": round(seconds, 1), "figures": figures}


def table(results: list[dict[str, Any]], smoke: bool) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"# Benchmarks{' (smoke sizes: figures mean nothing)' if smoke else ''}",
        "",
        f"{when}, {os.cpu_count()} cores, load average at the end {load}.",
        "",
        "| benchmark | exit | goal met | seconds | figures |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        figures = dict(r["figures"] or {})
        figures.pop("bench", None)
        goal = figures.pop("goal_met", None)
        shown = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in figures.items()
        ).replace("|", "\\|")
        lines.append(
            f"| {r['name']} | {r['exit']} | "
            f"{'—' if goal is None else ('yes' if goal else '**no**')} | {r['seconds']} | "
            f"{shown or '(no JSON line: see the log)'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    smoke = "--smoke" in argv
    names = [a for a in argv if not a.startswith("-")] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    results = [run_one(name, smoke) for name in names]
    report = table(results, smoke)
    suffix = "-smoke" if smoke else ""
    (OUT / f"results{suffix}.md").write_text(report)
    (OUT / f"results{suffix}.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print("\n" + report)
    print(f"written to var/bench/results{suffix}.md and .json")
    return 0 if all(r["exit"] == 0 and r["figures"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
