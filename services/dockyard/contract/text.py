"""Text from outside (a manifest's keys and values, a message's fields) quoted in an error."""

from __future__ import annotations


def one_line(text: str) -> str:
    """A message as one line: characters that break a line or are not printable (a key or value
    quoted from a manifest or a message) written as Python escapes, e.g. `\\n`, `\\x1e`."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
