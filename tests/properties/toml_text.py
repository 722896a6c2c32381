"""Writing TOML text from Python values (no TOML writer ships with Python): each table either
as a `[header]` block or inline, chosen by the test's data."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st


def key(name: str) -> str:
    """A key, bare when it can be, else a basic string."""
    if name and all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        return name
    return value(name)


def value(item: Any) -> str:
    """A value written inline."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + "}"
    raise TypeError(item)


def document(draw: st.DrawFn, data: dict[str, Any]) -> str:
    """A TOML document of a dict: scalars first, then tables and arrays of tables."""
    head: list[str] = []
    blocks: list[str] = []
    for name, item in data.items():
        inline = draw(st.booleans())
        if isinstance(item, dict) and not inline:
            nested = {k: v for k, v in item.items() if isinstance(v, dict)}
            flat = {k: v for k, v in item.items() if not isinstance(v, dict)}
            lines = [f"[{key(name)}]", *(f"{key(k)} = {value(v)}" for k, v in flat.items())]
            blocks.append("\n".join(lines))
            for sub, table in nested.items():
                lines = [f"[{key(name)}.{key(sub)}]",
                         *(f"{key(k)} = {value(v)}" for k, v in table.items())]
                blocks.append("\n".join(lines))
        elif (isinstance(item, list) and item and all(isinstance(v, dict) for v in item)
              and not inline):
            for table in item:
                lines = [f"[[{key(name)}]]", *(f"{key(k)} = {value(v)}" for k, v in table.items())]
                blocks.append("\n".join(lines))
        else:
            head.append(f"{key(name)} = {value(item)}")
    return "\n".join(head + [""] + blocks) + "\n"
