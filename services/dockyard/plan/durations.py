"""Durations ("90s", "20m", "1h30m", seconds) and memory sizes ("512M", "1G",
bytes) of manifests."""

from __future__ import annotations

import math
import re

from dockyard.contract.text import one_line

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_HINT = '(use e.g. "90s", "20m", "1h30m", or a number of seconds)'

# Binary multiples whatever the spelling, as `docker run --memory` reads them.
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_HINT = '(use e.g. "512M", "1G", "256MiB", or a number of bytes)'
# Docker refuses limits under 6 MiB; a bare `memory = 512` is almost always meant as MiB.
MIN_MEMORY = 6 * 1024 * 1024
# Docker takes a limit as a signed 64-bit number of bytes (and events carry it as one).
MAX_MEMORY = 2**63 - 1


def _shown(value: object) -> str:
    """A value as the manifest spelled it: strings in double quotes, like TOML and JSON."""
    return one_line(f'"{value}"' if isinstance(value, str) else repr(value))


def parse_duration(value: str | float, *, allow_zero: bool = False) -> float:
    """Seconds of a duration: a positive number of seconds, or units h/m/s/ms run together."""
    # A bool is an int to Python but never a duration; ValueError is what callers report.
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a duration {_DURATION_HINT}")  # noqa: TRY004
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"{_shown(value)} is not a duration {_DURATION_HINT}")
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an integer past any float: infinite, as far as waiting goes
            seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{_shown(value)} is not a positive duration {_DURATION_HINT}")
    return seconds


def parse_memory(value: str | int) -> int:
    """Bytes of a memory size: K/M/G/T (with optional i and B, any case) are binary multiples."""
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a memory size {_SIZE_HINT}")  # noqa: TRY004
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{_shown(value)} is not a memory size {_SIZE_HINT}")
        number = float(match.group(1)) * _SIZE_FACTOR[match.group(2).lower()]
        size = int(number) if number <= MAX_MEMORY else MAX_MEMORY + 1  # also past any float
    else:
        size = value
    if size > MAX_MEMORY:
        raise ValueError(f"{_shown(value)} is more than the largest memory size, {MAX_MEMORY} "
                         f"bytes {_SIZE_HINT}")
    if size <= 0:
        raise ValueError(f"{_shown(value)} is not a positive memory size {_SIZE_HINT}")
    if size < MIN_MEMORY:
        plain = str(value).strip().isdigit()
        hint = f' (did you mean "{str(value).strip()}M"?)' if plain else ""
        raise ValueError(f"{_shown(value)} is {size} bytes, below the 6 MiB minimum{hint}")
    return size
