"""Terminal output for every command: one Rich console, progress bars and the error line."""

from __future__ import annotations

import math
from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console()
error_console = Console(stderr=True)

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int) -> Iterable[T]:
    """A progress bar over `items`; the library's `track` hook."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def next_step(*commands: str) -> None:
    """Print the command(s) a user would run next."""
    for command in commands:
        # Text, not markup: a path or an extra in brackets (gkd-deploy[tensorrt]) prints as it is;
        # soft_wrap: a long command is not broken inside.
        console.print(Text.assemble(("next:", "dim"), " ", (command, "cyan")), soft_wrap=True)
