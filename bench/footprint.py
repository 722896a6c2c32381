"""Footprint: resident memory of each service (each its own OS process) idle and during deploys,
the time `dockyard up` takes to be ready, and the CLI's start-up (bench/cli_startup.py).

Memory: every service runs as `dockyard service NAME` against a provisioned nats-server; RSS
(VmRSS) is read once they are ready and idle, then sampled every 20 ms while `--deploys`
distinct apps (process runtime, a static page) are deployed one after another: the peak is
kept. The anchor, measured in the same run: a bare `python3` interpreter at rest.

`dockyard up`: wall time from exec to its "Dockyard is up" line (bus started and provisioned,
Caddy answering, every service subscribed, the api's URL recorded), on a fresh data dir each
time, `--runs` times; anchored to `python -c pass` and `dockyard --version` of the same run.

Run: .venv/bin/python bench/footprint.py [--deploys 3] [--runs 3] [--cli-runs 7]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cli_startup
from stackprocs import (
    DOCKYARD,
    load_average,
    make_app,
    rss_mib,
    run_main,
    service_processes,
    spawn,
)

from dockyard.bus.embedded import free_port
from dockyard.bus.recorded import read_record
from dockyard.client import DockyardClient, Followers
from dockyard.log_config import configure_logging
from dockyard.router.caddy import RECORD_FILE


async def memory(deploys: int) -> tuple[dict[str, float], dict[str, float], float]:
    """(idle RSS by process, peak RSS during deploys by process, bare python RSS), MiB."""
    bare = spawn([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        async with service_processes("bench-footprint-") as running:
            pids = {name: pid for name, (pid,) in running.pids().items()}
            if running.bus.nats is not None and running.bus.nats.process is not None:
                pids["nats-server"] = running.bus.nats.process.pid
            if (record := read_record(running.settings.data_dir / RECORD_FILE)) is not None:
                pids["caddy (the router's)"] = record.pid
            client = await DockyardClient.connect(running.settings)
            try:
                # Ready: a first deploy went through every service. Idle: a moment after it.
                work = running.logs.parent / "src"
                end = await client.deploy("warm", make_app(work / "warm", "warm"), Followers(),
                                          wait=300)
                assert end.type == "dockyard.deploy.succeeded", end
                await asyncio.sleep(2)  # let the last acks and log flushes settle
                idle = {name: rss_mib(pid) for name, pid in pids.items()}
                peak = dict(idle)
                stop = asyncio.Event()

                async def sample() -> None:
                    while not stop.is_set():
                        for name, pid in pids.items():
                            peak[name] = max(peak[name], rss_mib(pid))
                        await asyncio.sleep(0.02)

                sampler = asyncio.create_task(sample())
                for n in range(deploys):
                    end = await client.deploy(f"app{n}", make_app(work / f"app{n}", f"{n}"),
                                              Followers(), wait=300)
                    assert end.type == "dockyard.deploy.succeeded", end
                stop.set()
                await sampler
            finally:
                await client.close()
            running.check_alive()
        return idle, peak, rss_mib(bare.pid)
    finally:
        bare.communicate(b"")


def up_once(env: dict[str, str]) -> float:
    """Seconds from exec of `dockyard up` to its "Dockyard is up" line; then Ctrl-C."""
    work = Path(tempfile.mkdtemp(prefix="bench-up-", dir="/tmp"))
    started = time.perf_counter()
    proc = subprocess.Popen([DOCKYARD, "up", "--data-dir", str(work / "data"),
                             "--http-port", str(free_port()), "--runtime", "process"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        took = None
        for line in proc.stdout:
            seen.append(line)
            if "Dockyard is up" in line:
                took = time.perf_counter() - started
            if "Press Ctrl-C" in line:  # its Ctrl-C handler is in place from here on
                break
        if took is None:
            raise SystemExit("dockyard up ended before it was up:\n" + "".join(seen[-20:]))
        return took
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[0]
        if stop_strays(work):
            said = rest.strip().splitlines()[-1:] or [""]
            print(f"(dockyard up exited {proc.returncode} after Ctrl-C and left the processes "
                  f"above running; its last line: {said[0]!r})")
        shutil.rmtree(work, ignore_errors=True)


def stop_strays(work: Path) -> int:
    """SIGTERM whatever still runs from `work` (a nats-server or Caddy `dockyard up` left);
    how many."""
    found = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(work).encode() in cmdline:
                print(f"(left by dockyard up, stopped: {cmdline[:100]!r})")
                os.kill(int(entry.name), signal.SIGTERM)
                found += 1
    return found


def start_times(runs: int) -> dict[str, float]:
    """Medians of `dockyard up` to ready and of the anchors, interleaved."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env |= {"DOCKYARD_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    times: dict[str, list[float]] = {"python -c pass": [], "dockyard --version": [],
                                     "dockyard up (to ready)": []}
    for _ in range(runs):
        times["python -c pass"].append(cli_startup.timed([sys.executable, "-c", "pass"], env, 0))
        times["dockyard --version"].append(cli_startup.timed([DOCKYARD, "--version"], env, 0))
        times["dockyard up (to ready)"].append(up_once(env))
    return {name: statistics.median(found) for name, found in times.items()}


async def main(deploys: int, runs: int, cli_runs: int) -> None:
    configure_logging("WARNING")
    print(f"load average before: {load_average()}")
    idle, peak, bare = await memory(deploys)
    print(f"resident memory (MiB), services as separate processes; bare python3 {bare:.1f} MiB")
    peak_head = f"peak, {deploys} deploys"
    print(f"{'process':<22} {'idle':>7} {'× bare':>7} {peak_head:>17} {'× bare':>7}")
    for name in idle:
        print(f"{name:<22} {idle[name]:7.1f} {idle[name] / bare:7.1f} {peak[name]:17.1f} "
              f"{peak[name] / bare:7.1f}")
    services = [n for n in idle if n not in ("nats-server", "caddy (the router's)")]
    print(f"{'six services, total':<22} {sum(idle[n] for n in services):7.1f} "
          f"{'':7} {sum(peak[n] for n in services):17.1f}")
    times = start_times(runs)
    base = times["python -c pass"]
    print(f"start-up, {runs} runs each, interleaved, medians")
    for name, took in times.items():
        print(f"{name:<26} {took:7.3f} s {took / base:7.1f}× python")
    print(f"load average: {load_average()}")
    print("CLI start-up (bench/cli_startup.py):")
    sys.stdout.flush()
    cli_startup.main(cli_runs)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    run_main(__doc__ or "", main, deploys=3, runs=3, cli_runs=7)
