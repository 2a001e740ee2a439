"""A compact, read-only sequence of unlabeled samples for very large image folders.

A list of `Sample` objects costs about 430 bytes per image (1.28 M ImageNet images: ~550 MB),
and DataLoader workers slowly copy such lists page by page because reading a Python object
writes its reference count. Here every relative path lives in one byte buffer plus an offsets
array (~50 bytes per image, two objects in all); `Sample`s are made on access.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from gkd_deploy.data.base import Sample


class SampleTable(Sequence[Sample]):
    """`Sample(root / relative, None, relative without suffix)` for each relative path, in order."""

    def __init__(self, root: Path, relative_paths: Iterable[str]) -> None:
        self.root = root
        encoded = [p.encode("utf-8", "surrogateescape") for p in relative_paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def relative_path(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._blob[start:end].tobytes().decode("utf-8", "surrogateescape")

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        relative = self.relative_path(index)
        return Sample(self.root / relative, None, PurePosixPath(relative).with_suffix("").as_posix())
