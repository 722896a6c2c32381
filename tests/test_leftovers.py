"""The suite-wide leftovers check finds what a test leaves behind, and only that."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.leftovers import Snapshot, new_processes, processes


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_orphaned_process_and_a_stray_file_are_found_and_removed(tmp_path: Path) -> None:
    snapshot = Snapshot.take(tmp_path)
    # A grandchild in a session of its own whose parent exits: re-parented to init, as a
    # service's detached child is when its service dies.
    spawn = ("import subprocess; p = subprocess.Popen(['sleep', '300'], "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True); "
             "print(p.pid)")
    pid = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True,
                             check=True).stdout)
    stray = Path(tempfile.mkdtemp(prefix="leftover-probe-"))
    try:
        assert pid in {p.pid for p in new_processes(snapshot.processes, os.getpid())}
        report = snapshot.check(settle=0)
        assert any(line.startswith(f"process {pid} (sleep)") for line in report), report
        assert f"file {stray}" in report, report
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the leftover process was not killed"
    finally:
        stray.rmdir()


def test_what_existed_before_and_the_suites_own_processes_are_not_leftovers(
        tmp_path: Path) -> None:
    snapshot = Snapshot.take(tmp_path)
    assert new_processes(snapshot.processes, os.getpid()) == []
    me = processes()[os.getpid()]
    assert (me.pid, me.start) in snapshot.processes
