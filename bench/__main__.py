"""`python -m bench`: run the scenarios, print the table, save every figure as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .procs import BENCH, BenchError, build_tools, raise_fd_limit
from .report import Check, Runs, checks, render
from .scenarios import (
    Config,
    Scenario,
    measure,
    measure_embedded,
    measure_embedded_users,
    scenarios,
)

# The scenarios that measure on their own, not with the load generator.
_OWN: dict[str, tuple[str, Callable[[Config], Runs]]] = {
    "embedded": ("embedded model, direct and through HTTP", measure_embedded),
    "embedded-users": ("embedded model, several users at once", measure_embedded_users),
}


def main() -> int:
    """Run every selected scenario against every target, each with fresh processes."""
    cfg = Config.from_env(os.environ)
    try:
        build_tools()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    fds = raise_fd_limit()
    if fds < 2 * cfg.c_overload + 1024:
        print(f"bench: note: only {fds} open files allowed (ulimit -n); the C={cfg.c_overload} "
              "scenario needs two per stream in the server", file=sys.stderr)  # fmt: skip
    print(
        f"bench: {cfg.duration:g} s per run; server on cpu {cfg.server_cpus or 'any'}, "
        f"upstream and loadgen on cpu {cfg.client_cpus or 'any'}; "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine makes figures noisy)",
        file=sys.stderr,
    )
    blocks: list[tuple[Scenario, list[Check]]] = []
    results: dict[str, Runs] = {}
    try:
        for scenario in scenarios(cfg):
            runs: Runs = {}
            if scenario.key in _OWN:
                label, measure_own = _OWN[scenario.key]
                print(f"bench: {label} …", file=sys.stderr, flush=True)
                runs.update(measure_own(cfg))
            for target in scenario.targets if scenario.key not in _OWN else ():
                print(f"bench: {scenario.key} / {target.label} …", file=sys.stderr, flush=True)
                runs[target.key] = measure(cfg, scenario, target)
            results[scenario.key] = runs
            blocks.append((scenario, checks(scenario, runs)))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(blocks))
    out = _save(cfg, results, blocks)
    print(f"\nall figures: {out}")
    return 0


def _save(
    cfg: Config, results: dict[str, Runs], blocks: list[tuple[Scenario, list[Check]]]
) -> Path:
    default = BENCH / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out = Path(os.environ.get("BENCH_OUT") or default)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "config": cfg.describe(),
        "runs": results,
        "checks": [row.as_json() for _, rows in blocks for row in rows],
    }
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return out


if __name__ == "__main__":
    sys.exit(main())
