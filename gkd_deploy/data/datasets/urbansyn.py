"""UrbanSyn (Gómez et al., Neurocomputing 2025): `rgb/*.png` with `ss/*.png` semantic labels.

The labels hold the 19 Cityscapes train ids, with 19 for unlabelled pixels (mapped to 255).
Images and labels pair as in the official release, `rgb/rgb_0001.png` with `ss/ss_0001.png`, or
by identical file names (`rgb/0001.png` with `ss/0001.png`); where both exist, the identical name
wins. The release has no split folders, so every image belongs to whichever split is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, IGNORE_INDEX
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.pairing import pair_by_candidates

IMAGE_PREFIX = "rgb_"
LABEL_PREFIX = "ss_"
IMAGE_SUFFIXES = (".png", ".jpg")
UNLABELLED_ID = 19


def label_stems(image_stem: str) -> tuple[str, ...]:
    """The label file stems an image may pair with, in order of preference: its own, then `ss_<n>` for `rgb_<n>`."""
    if image_stem.startswith(IMAGE_PREFIX):
        return image_stem, LABEL_PREFIX + image_stem[len(IMAGE_PREFIX) :]
    return (image_stem,)


def _train_id_table() -> np.ndarray:
    """A 256-entry uint8 table: 19 -> 255; train ids 0-18 and 255 unchanged, as is any other value
    (left for the base's train-id check to refuse with the file named)."""
    table = np.arange(256, dtype=np.uint8)
    table[UNLABELLED_ID] = IGNORE_INDEX
    return table


class UrbanSynDataset(SegmentationDataset):
    """UrbanSyn frames with their train-id labels (19, unlabelled, -> 255), one domain "urbansyn"."""

    layout = (
        "the UrbanSyn layout rgb/*.png with labels ss/*.png (Cityscapes train ids, 19 unlabelled), "
        "named rgb_<n>.png / ss_<n>.png as released or with identical file names"
    )
    _id_table = _train_id_table()
    eval_size = None  # the GKD authors never evaluate on UrbanSyn

    def __init__(self, root: Path | str, transform: Transform | None = None, name: str = "urbansyn") -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / "rgb", name, self.layout)
        label_dir = listing.require_dir(root / "ss", name, self.layout)
        samples, missing = pair_by_candidates(image_dir, label_dir, IMAGE_SUFFIXES, label_stems)
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=root)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        return self._id_table[raw]
