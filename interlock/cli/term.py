"""The rich Console every table-printing command writes to."""

from __future__ import annotations

import os

from rich.console import Console


def cli_console() -> Console:
    """A console for stdout as it is now (created per command: click's CliRunner swaps stdout).

    Piped output (no terminal, no COLUMNS) gets 160 columns so tables wrap less than rich's 80-column default.
    """
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console
