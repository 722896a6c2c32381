"""Lines of a manifest as the tools that share its format count them: at `\\n` and `\\r\\n` only."""

from __future__ import annotations


def split_lines(text: str) -> list[str]:
    """The lines of a text, without their `\\n` or `\\r\\n`.

    Unlike `str.splitlines`, a form feed, vertical tab, `\\x1c`-`\\x1e`, `\\x85` or U+2028 inside
    a line does not end it: Procfile readers (foreman, honcho, procfile-util) and the JSON and
    TOML grammars break lines at `\\n` alone, so a command holding one stays one command.
    """
    if not text:
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()  # a final newline ends the last line; it does not start another
    return [p[:-1] if p.endswith("\r") else p for p in parts]
