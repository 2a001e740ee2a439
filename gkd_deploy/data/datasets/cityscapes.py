"""Cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` with `gtFine/<split>/<city>/*_gtFine_*.png`.

Labels are the `*_gtFine_labelTrainIds.png` files made by cityscapesscripts; where only the raw
`*_gtFine_labelIds.png` exist they are mapped to train ids with the official table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, CITYSCAPES_ID_TO_TRAINID, id_lookup_table
from gkd_deploy.data.datasets import listing

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations, one domain "cityscapes"."""

    layout = (
        "the Cityscapes layout leftImg8bit/{train,val}/<city>/*_leftImg8bit.png with labels "
        "gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png (or *_gtFine_labelIds.png)"
    )
    _id_table = id_lookup_table(CITYSCAPES_ID_TO_TRAINID)
    eval_size = (1024, 512)

    def __init__(
        self, root: Path | str, split: str = "val", transform: Transform | None = None, name: str = "cityscapes"
    ) -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_root = listing.require_dir(root / "leftImg8bit" / split, name, self.layout)
        label_root = listing.require_dir(root / "gtFine" / split, name, self.layout)
        samples, missing = [], 0
        for city in listing.subdirs(image_root):
            label_dir = label_root / city
            label_names = set(listing.files(label_dir, (".png",))) if label_dir.is_dir() else set()
            for image_name in listing.files(image_root / city, (IMAGE_SUFFIX.lower(),)):
                key = image_name[: -len(IMAGE_SUFFIX)]
                label_name = next((key + s for s in (TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX) if key + s in label_names), None)
                if label_name is None:
                    missing += 1
                    continue
                samples.append(Sample(image_root / city / image_name, label_dir / label_name, key))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=image_root)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        if sample.label is not None and sample.label.name.endswith(LABEL_ID_SUFFIX):
            return self._id_table[raw]
        return raw
