"""The instance data set every instance loader builds on: an index of images plus lazy decoding.

A loader lists its images (nothing is decoded while indexing), names its classes, and decodes one
image's annotation in `load_target`. `dataset[i]` is an `InstanceSample` with its target;
`dataset.image_only(i)` reads the image alone, which is all the unlabelled pool needs.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from torch.utils.data import Dataset

from gkd_deploy.data.base import report_index
from gkd_deploy.data.imread import read_rgb
from gkd_deploy.data.instances.sample import InstanceSample, InstanceTarget


class InstanceDataset(Dataset, abc.ABC):
    """Indexed images of one domain with instance annotations.

    `images[i]` is the path of image `i` and `names[i]` its name (unique within the data set);
    `class_names[c]` names class index `c` of the targets. `skipped` counts files left out while
    indexing, by reason.
    """

    layout: ClassVar[str] = "a folder of images with instance annotations"

    def __init__(
        self,
        name: str,
        class_names: Sequence[str],
        images: Sequence[Path],
        names: Sequence[str],
        *,
        skipped: dict[str, int] | None = None,
        source: Path | None = None,
    ) -> None:
        self.name = name
        self.class_names = tuple(class_names)
        self.images = list(images)
        self.names = list(names)
        self.source = source
        self.skipped = report_index(name, len(self.images), skipped, source, self.layout)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> InstanceSample:
        image = read_rgb(self.images[index])
        target, semantic = self.load_target(index, image)
        return InstanceSample(image, self.names[index], target, semantic)

    def image_only(self, index: int) -> InstanceSample:
        """Image `index` without its annotation (nothing but the image file is read)."""
        return InstanceSample(read_rgb(self.images[index]), self.names[index])

    @abc.abstractmethod
    def load_target(self, index: int, image: np.ndarray) -> tuple[InstanceTarget, np.ndarray | None]:
        """Decode and check the annotation of image `index`: (target, semantic train ids or None);
        each layout's loader says how."""

    def __repr__(self) -> str:
        skipped = f", skipped={self.skipped}" if self.skipped else ""
        return f"{type(self).__name__}(name={self.name!r}, images={len(self)}, classes={self.num_classes}{skipped})"
