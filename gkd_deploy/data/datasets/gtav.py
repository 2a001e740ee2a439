"""GTAV (Playing for Data): `images/*.png` with `labels/*.png` holding Cityscapes label ids.

The real release has no split folders, so every image belongs to whichever split is asked for.
Some labels are a few pixels off their image's size; the base resizes those (nearest neighbour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, CITYSCAPES_ID_TO_TRAINID, id_lookup_table
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.pairing import pair_by_stem


class GTAVDataset(SegmentationDataset):
    """GTAV frames with labels mapped from Cityscapes ids to the 19 train ids (other ids -> 255)."""

    layout = "the GTAV layout images/*.png with labels/*.png (Cityscapes label ids, same file names)"
    _id_table = id_lookup_table(CITYSCAPES_ID_TO_TRAINID)
    eval_size = (1280, 720)

    def __init__(self, root: Path | str, transform: Transform | None = None, name: str = "gtav") -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / "images", name, self.layout)
        label_dir = listing.require_dir(root / "labels", name, self.layout)
        samples, missing = pair_by_stem(image_dir, label_dir, (".png", ".jpg"), (".png",))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=root)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        return self._id_table[raw]
