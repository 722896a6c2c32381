"""Start-up time of the `dockyard` executable against bare Python, in the same run.

Times `dockyard --help`, `dockyard --version` and one read command against nothing (an empty
data dir: `status` fails at once with "no api found", exit 2) against `python -c pass`, N runs
each, and prints medians and their ratio to bare Python.

Run: .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKYARD = str(Path(sys.executable).parent / "dockyard")


def timed(argv: list[str], env: dict[str, str], expect: int) -> float:
    """Seconds one run takes (its exit code checked: a benchmark of a failure is no figure)."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=60)
    took = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}, not {expect}: "
                         f"{done.stderr.decode().strip()}")
    return took


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as empty:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env |= {"DOCKYARD_DATA_DIR": empty, "COLUMNS": "100"}
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], 0),
            ("dockyard --help", [DOCKYARD, "--help"], 0),
            ("dockyard --version", [DOCKYARD, "--version"], 0),
            ("dockyard status shop (no api: exit 2)", [DOCKYARD, "status", "shop"], 2),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(runs):  # interleaved: a busy moment of the machine hits every case
            for name, argv, expect in cases:
                times[name].append(timed(argv, env, expect))
    base = statistics.median(times["python -c pass"])
    print(f"{runs} runs each, interleaved; medians in seconds")
    print(f"{'command':<40} {'median':>8} {'max':>8} {'× python':>9}")
    for name, found in times.items():
        median = statistics.median(found)
        print(f"{name:<40} {median:8.3f} {max(found):8.3f} {median / base:9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)
