"""The progress hook long library calls take: `track(items, description, total)` yields the items
(the CLI passes a Rich progress bar; the library default shows nothing). `total` is how many items
there will be, or None where nobody knows (a camera, a stream). No torch here: the runtime's
commands use it too."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, TypeVar

T = TypeVar("T")
Track = Callable[[Iterable[T], str, Optional[int]], Iterable[T]]


def no_progress(items: Iterable[T], description: str, total: int | None) -> Iterable[T]:
    return items
