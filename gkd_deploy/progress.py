"""The progress hook long library calls take: `track(items, description, total)` yields the items
(the CLI passes a Rich progress bar; the library default shows nothing). No torch here: the
runtime's commands use it too."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
Track = Callable[[Iterable[T], str, int], Iterable[T]]


def no_progress(items: Iterable[T], description: str, total: int) -> Iterable[T]:
    return items
