"""Listing data set folders: sorted, stat-free where possible, with layout-aware errors.

Folders can hold millions of files (an ImageNet-size proxy set), so listings use `os.scandir`
(one directory read, no per-file stat on most file systems) and are sorted so that sample order,
and therefore every seeded run, is the same on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gkd_deploy.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """Return `path` if it is a folder, else a `DataError` naming it and the expected layout."""
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "not found"
        raise DataError(f"{dataset}: {path} {state}; expected {layout}")
    return path


def files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted names of the files in `folder` whose suffix is in `suffixes` (case-insensitive).

    Hidden files are left out: macOS leaves "._name.png" metadata files that are not images.
    """
    with os.scandir(folder) as entries:
        names = [
            e.name for e in entries if not e.name.startswith(".") and e.name.lower().endswith(suffixes) and e.is_file()
        ]
    return sorted(names)


def subdirs(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of `folder`, hidden ones (".git", ...) left out."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
    return sorted(names)


def walk_files(folder: Path, suffixes: tuple[str, ...], prefix: str = "") -> Iterator[str]:
    """Paths relative to `folder` ("a/b.jpg") of the files below it with a matching suffix, sorted.

    Recursive; hidden files and folders are skipped. Each folder is read once, and its files
    come before its sub-folders.
    """
    found, folders = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                folders.append(entry.name)
            elif entry.name.lower().endswith(suffixes) and entry.is_file():
                found.append(entry.name)
    for name in sorted(found):
        yield prefix + name
    for name in sorted(folders):
        yield from walk_files(folder / name, suffixes, f"{prefix}{name}/")
