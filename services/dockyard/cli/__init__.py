"""The `dockyard` command line (typer; rich on a terminal, whole plain lines into pipes).

This package's own import is nothing: `main` imports the command tree (dockyard.cli.app), and
`dockyard --version` answers before even that."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from dockyard import __version__

        print(f"dockyard {__version__}")
        return
    from dockyard.cli.app import app

    app()
