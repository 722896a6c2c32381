"""What the CLI prints: rich on a terminal; whole, unwrapped plain lines into pipes and files.

Into a pipe or a file nothing is cut, ellipsized or wrapped: tables become tab-separated lines
(a header line first; tabs, newlines and backslashes in a cell escaped as `\\t`, `\\n`, `\\\\`),
everything else is written as is. rich is imported only when a terminal is there to see it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn

import typer

from dockyard.cli.errors import EXIT_BROKEN_PIPE

if TYPE_CHECKING:
    from rich.console import Console

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_cell(value: object) -> str:
    """One table cell as plain text: None is empty; tabs and newlines escaped."""
    return "" if value is None else str(value).translate(_ESCAPES)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A table as tab-separated lines, header first, every cell whole."""
    return ["\t".join(tsv_cell(c) for c in row) for row in (headers, *rows)]


def json_line(value: Any) -> str:
    """One JSON document on one line (msgspec structs and plain values alike)."""
    import msgspec

    return msgspec.json.encode(value).decode()


def pipe_closed() -> NoReturn:
    """The reader of stdout went away (`| head -1`): stop quietly, at once (exit 141)."""
    # Point stdout at /dev/null so that the interpreter's last flush cannot complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(EXIT_BROKEN_PIPE)


def is_terminal(stream: IO[str]) -> bool:
    """Whether a person looks at this stream (a TTY)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """One output stream: styled rich text on a terminal, plain whole lines otherwise."""

    def __init__(self, stream: IO[str] | None = None, *, stderr: bool = False,
                 tty: bool | None = None) -> None:
        self._given = stream
        self._stderr = stderr
        self._tty = tty
        self._console: Console | None = None

    @property
    def stream(self) -> IO[str]:
        """The stream written to (looked up when used: a test or a pipe may have swapped it)."""
        if self._given is not None:
            return self._given
        return sys.stderr if self._stderr else sys.stdout

    @property
    def tty(self) -> bool:
        """Whether the stream is a terminal."""
        return is_terminal(self.stream) if self._tty is None else self._tty

    def console(self) -> Console:
        """The rich console (terminals only)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)
        return self._console

    def line(self, text: str, style: str | None = None) -> None:
        """One line of text (never read as markup); styled on a terminal."""
        if self.tty:
            self._guarded(lambda: self.console().print(text, style=style, markup=False,
                                                       highlight=False))
        else:
            self.raw(text + "\n")

    def marked_up(self, text: str) -> None:
        """One line written with rich markup (`[bold]...[/bold]`): styled on a terminal, the
        plain text otherwise."""
        if self.tty:
            self._guarded(lambda: self.console().print(text, highlight=False))
        else:
            from rich.text import Text

            self.raw(Text.from_markup(text).plain + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """A table: boxed on a terminal (long cells fold, never cut), tab-separated otherwise."""
        if not self.tty:
            self.raw("".join(line + "\n" for line in plain_table(headers, rows)))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers)
        for column in table.columns:
            column.overflow = "fold"
        for row in rows:
            table.add_row(*(Text("" if c is None else str(c)) for c in row))
        self._guarded(lambda: self.console().print(table, soft_wrap=False))

    def json(self, value: Any) -> None:
        """One JSON document on one line."""
        self.raw(json_line(value) + "\n")

    def raw(self, text: str) -> None:
        """Text exactly as given, flushed at once (a reader of a stream sees each line)."""

        def write() -> None:
            self.stream.write(text)
            self.stream.flush()

        self._guarded(write)

    def _guarded(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:
            if self._stderr:
                return  # nobody reads the errors any more: nothing to tell
            pipe_closed()


out = Output()
err = Output(stderr=True)
