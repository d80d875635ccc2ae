"""Where the plugin writes: stdout for results, stderr for errors, both as plain lines."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console()
errors = Console(stderr=True)


def say(text: str, error: bool = False) -> None:
    """One line as it is: no markup (`transform[eu]` is a node, not a style), no colouring,
    and no wrapping at the terminal's width, so scripts and CI logs get it whole."""
    (errors if error else console).print(text, markup=False, highlight=False, soft_wrap=True)


def emit(text: str) -> None:
    """Text exactly as given (tables, json, yaml, logs): not through rich, which would wrap
    long lines and replace :emoji: codes."""
    sys.stdout.write(text)
    sys.stdout.flush()
