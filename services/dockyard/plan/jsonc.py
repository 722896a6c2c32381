"""JSON with comments (JSONC) as Dokku reads app.json since 0.37: `//` and `/* */` comments and
trailing commas, turned into plain JSON by blanking them with spaces.

Blanking (as tailscale's hujson `Standardize` does) keeps every other byte where it was, so a
decoder's byte offset still points at the author's line. The one small JSONC package on PyPI
(json-with-comments 1.3) deletes comments and the newlines after them instead, so its errors name
the wrong line.
"""

from __future__ import annotations

import re

# Strings first, so `//` or `/*` inside one (a URL) is never taken for a comment. A string left
# open runs to the end of its line; the decoder then says what is wrong there.
_TOKEN = re.compile(
    rb"""
      (?P<string>"(?:[^"\\\n]|\\.)*"?)
    | (?P<line>//[^\n]*)
    | (?P<block>/\*.*?\*/)
    | (?P<open>/\*)
    | (?P<comma>,)
    | (?P<close>[\]}])
    | (?P<punct>[\[{:])
    | (?P<other>[^\s"/,\[\]{}:]+|/)
    """,
    re.DOTALL | re.VERBOSE,
)
_VALUE_END = frozenset({"string", "close", "other"})
_KEEP = frozenset(b"\r\n")
SPACE = 0x20


class UnclosedComment(ValueError):
    """A `/*` with no `*/` after it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        super().__init__("a /* comment is never closed with */")


def standardize(data: bytes) -> bytes:
    """The JSONC text as plain JSON of the same length: comments and trailing commas blanked."""
    out = bytearray(data)
    previous: str | None = None
    comma: int | None = None
    for token in _TOKEN.finditer(data):
        kind = token.lastgroup
        if kind in ("line", "block"):
            for i in range(token.start(), token.end()):
                if out[i] not in _KEEP:
                    out[i] = SPACE
            continue
        if kind == "open":
            raise UnclosedComment(token.start())
        if kind == "close" and comma is not None:
            out[comma] = SPACE
        # Only a comma after a value can trail: `[,]` and `{"a":,}` stay errors.
        comma = token.start() if kind == "comma" and previous in _VALUE_END else None
        previous = kind
    return bytes(out)
