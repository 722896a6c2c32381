"""Subject names live in dockyard/contract/subjects.py and nowhere else as literals."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r"""["'](dockyard\.(evt|cmd|log|dlq)[.a-z*>{}_-]*)["']""")


def test_no_subject_literal_outside_the_subjects_module() -> None:
    offenders = []
    for path in (ROOT / "services").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            # A struct's `tag=` is its CloudEvents type, which merely looks like a subject.
            if LITERAL.search(line) and "tag=" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
