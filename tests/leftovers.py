"""What the suite left behind: processes, containers, images, networks, volumes and files.

A snapshot is taken before the first test and compared after the last one. Whatever is new and
still there is reported; in CI, where the suite is alone on the machine, it is also removed (the
machine is left clean) and the report fails the run. On a shared machine nothing is removed:
another run's processes, containers and images are not the suite's to take.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.runtime.shim import all_pids, proc_stat

REPO = Path(__file__).resolve().parents[1]
# Images the tests build once and keep on purpose, by tag: building them costs minutes (the
# README's "Tests" section says so). Everything else an engine holds after the suite is new.
KEPT_IMAGES = ("dockyard-test/", "dockyard-base/")
# Untagged images are layers: a kept image's build stages (its cache, kept on purpose) and the
# image a rebuild replaced. They are removed after the suite in CI, never reported: an app's
# leftover image is tagged, and is.
UNTAGGED = "<none>:<none>"
# Container processes belong to the engine's shims; containers are checked as containers.
ENGINE = ("containerd-shim", "containerd-shim-runc-v2", "dockerd", "containerd", "runc")
SETTLE = 10.0  # seconds to let a process that is being stopped go before it counts


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks since boot: (pid, start) names one process even if pids recycle
    state: str
    comm: str
    cmdline: str


def _read_proc(pid: int) -> Proc | None:
    stat = proc_stat(pid)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat is None:
        return None
    state, ppid, _, start = stat
    cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip() or f"[{comm}]"
    return Proc(pid=pid, ppid=ppid, start=start, state=state, comm=comm, cmdline=cmdline)


def processes() -> dict[int, Proc]:
    found = {}
    for pid in all_pids():
        if (proc := _read_proc(pid)) is not None:
            found[proc.pid] = proc
    return found


def new_processes(before: set[tuple[int, int]], me: int) -> list[Proc]:
    """Processes started during the suite that the suite owns: still pytest's descendants, or
    orphans (re-parented to init). A pre-existing daemon's children (a database's backends, a
    cron job) are not the suite's; neither are the engine's container processes."""
    now = processes()

    def ancestry(proc: Proc) -> list[Proc]:
        chain = [proc]
        while (parent := now.get(chain[-1].ppid)) is not None and len(chain) < 64:
            chain.append(parent)
        return chain

    left = []
    for proc in now.values():
        if (proc.pid, proc.start) in before or proc.pid == me or proc.state == "Z":
            continue
        if proc.pid == 2 or proc.ppid == 2:  # kernel threads
            continue
        chain = ancestry(proc)
        if any(p.comm in ENGINE for p in chain):
            continue
        ours = any(p.pid == me for p in chain[1:])
        # The first ancestor that existed before the suite: init means the process was orphaned.
        elder = next((p for p in chain[1:] if (p.pid, p.start) in before), None)
        if ours or (elder is not None and elder.pid == 1):
            left.append(proc)
    return left


def _docker(*args: str) -> list[str]:
    try:
        out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line.strip()]


def _engine() -> dict[str, set[str]]:
    return {
        "container": set(_docker("ps", "-a", "--no-trunc", "--format",
                                 "{{.ID}} {{.Names}} {{.Image}} {{.Status}}")),
        "image": {line for line in _docker("images", "--no-trunc", "--format",
                                           "{{.ID}} {{.Repository}}:{{.Tag}}")
                  if not line.split(" ", 1)[1].startswith(KEPT_IMAGES + (UNTAGGED,))},
        "network": set(_docker("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}")),
        "volume": set(_docker("volume", "ls", "--format", "{{.Name}}")),
    }


def _remove(kind: str, lines: set[str]) -> None:
    ids = sorted(line.split(" ", 1)[0] for line in lines)
    if not ids:
        return
    command = {"container": ("rm", "-f"), "image": ("rmi", "-f"),
               "network": ("network", "rm"), "volume": ("volume", "rm", "-f")}[kind]
    _docker(*command, *ids)


def _entries(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def _untracked() -> set[str]:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                             cwd=REPO, capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line[3:] for line in out.splitlines() if line.startswith("??")}


@dataclass
class Snapshot:
    """What the machine held before the suite."""

    processes: set[tuple[int, int]]
    engine: dict[str, set[str]]
    tmp: set[str]
    home: set[str]
    repo: set[str]
    basetemp: Path
    found: list[str] = field(default_factory=list)

    @classmethod
    def take(cls, basetemp: Path) -> Snapshot:
        return cls(processes={(p.pid, p.start) for p in processes().values()},
                   engine=_engine(), tmp=_entries(Path(tempfile.gettempdir())),
                   home=_entries(Path.home()), repo=_untracked(), basetemp=basetemp)

    def check(self, wait: Callable[[float], None] = time.sleep, settle: float = SETTLE,
              remove: bool = True) -> list[str]:
        """Everything new since the snapshot, each line naming one leftover; removed as found
        when `remove` (only where the suite is alone: on a shared machine they may be others')."""
        report: list[str] = []
        me = os.getpid()
        deadline = time.monotonic() + settle
        while (procs := new_processes(self.processes, me)) and time.monotonic() < deadline:
            wait(0.2)  # a process being stopped by the last teardown: let it go first
        for proc in procs:
            report.append(f"process {proc.pid} ({proc.comm}), parent {proc.ppid}: "
                          f"{proc.cmdline[:300]}")
            if remove:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
        if remove:
            _docker("image", "prune", "-f")  # the untagged layers the suite's builds left
        engine = _engine()
        for kind in ("container", "image", "network", "volume"):
            new = engine[kind] - self.engine[kind]
            report += [f"{kind} {line}" for line in sorted(new)]
            if remove:
                _remove(kind, new)
        tmp = Path(tempfile.gettempdir())
        ours = self.basetemp.parent if self.basetemp.parent != tmp else self.basetemp
        for name in sorted(_entries(tmp) - self.tmp):
            if tmp / name != ours:
                report.append(f"file {tmp / name}")
        report += [f"file {Path.home() / name}" for name in sorted(_entries(Path.home())
                                                                   - self.home)]
        report += [f"file {REPO / name}" for name in sorted(_untracked() - self.repo)]
        return report
