"""SYNTHIA (RAND-CITYSCAPES; Ros et al., CVPR 2016): `RGB/*.png` with `GT/LABELS/*.png` of the same name.

Raw labels are 16-bit PNGs with the SYNTHIA class id in the red channel (the other channels are
not read). They are mapped to the 19 Cityscapes train ids with the table of the release's
README, the one DAFormer's converter and the GKD authors' mmseg config use. Where a converted
`GT/LABELS/<name>_labelTrainIds.png` (8-bit train ids, as that converter writes them) exists for
an image, it is used as is and the raw file is not read. The release has no split folders, so
every image belongs to whichever split is asked for.

SYNTHIA ids without a Cityscapes class (0 void, 13 parking slot, 14 road work, 22 lane marking)
are ignored (255). Other values are not SYNTHIA classes: they are ignored too, counted in
`unknown_id_labels` and warned about once. A raw label in which no pixel holds one of the 19
mapped ids is refused instead of being read as all-ignore: such a file is a colour visualisation,
a label of another data set or an empty export, and training on it would silently drop the frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, IGNORE_INDEX
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.imread import read_label_red_channel
from gkd_deploy.data.datasets.pairing import pair_by_candidates

logger = logging.getLogger(__name__)

TRAIN_ID_SUFFIX = "_labelTrainIds"
IMAGE_SUFFIXES = (".png", ".jpg")

# SYNTHIA RAND-CITYSCAPES class ids -> Cityscapes train ids (every other id is ignored).
SYNTHIA_ID_TO_TRAINID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13,
    18: 14, 19: 15, 20: 16, 12: 17, 11: 18,
}
# SYNTHIA's own classes run from 0 to 22; those the table leaves out are ignored without a warning.
SYNTHIA_IDS = range(23)


def _lookup_table() -> np.ndarray:
    """A 65536-entry uint8 table: any 8- or 16-bit SYNTHIA id -> train id (255 for unmapped ids)."""
    table = np.full(2**16, IGNORE_INDEX, dtype=np.uint8)
    for raw_id, train_id in SYNTHIA_ID_TO_TRAINID.items():
        table[raw_id] = train_id
    return table


def is_train_id_file(path: Path) -> bool:
    """Whether a label file is a converted `<name>_labelTrainIds.png` rather than a raw SYNTHIA label."""
    return Path(path).stem.endswith(TRAIN_ID_SUFFIX)


class SynthiaDataset(SegmentationDataset):
    """SYNTHIA RAND-CITYSCAPES frames with labels as Cityscapes train ids, one domain "synthia".

    `unknown_id_labels` counts raw labels read so far (in this process) that held values that are
    not SYNTHIA class ids; those pixels are ignored.
    """

    layout = (
        "the SYNTHIA (RAND-CITYSCAPES) layout RGB/*.png with labels GT/LABELS/*.png of the same file "
        "names (16-bit, class ids in the red channel) or GT/LABELS/<name>_labelTrainIds.png (train ids)"
    )
    _id_table = _lookup_table()
    eval_size = None  # the GKD authors train on SYNTHIA but never evaluate on it

    def __init__(self, root: Path | str, transform: Transform | None = None, name: str = "synthia") -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / "RGB", name, self.layout)
        label_dir = listing.require_dir(root / "GT" / "LABELS", name, self.layout)
        # The converted train-id file wins over the raw label of the same frame.
        samples, missing = pair_by_candidates(image_dir, label_dir, IMAGE_SUFFIXES,
                                              lambda stem: (stem + TRAIN_ID_SUFFIX, stem))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=root)
        self.unknown_id_labels = 0

    def load_label(self, sample: Sample, image_size: tuple[int, int]) -> np.ndarray:
        if is_train_id_file(sample.label):
            return super().load_label(sample, image_size)  # 8-bit train ids, read like any other
        # Raw labels are colour files: the ids are the red channel, 16 bits wide.
        label = self.convert_label(read_label_red_channel(sample.label), sample)
        self._check_train_ids(label, sample.label)
        return self._match_size(label, image_size, sample)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        if is_train_id_file(sample.label):
            return raw
        present = np.flatnonzero(np.bincount(raw.ravel()))
        if not (self._id_table[present] != IGNORE_INDEX).any():
            raise self.unexpected_values(
                sample.label,
                present,
                "SYNTHIA class ids in the red channel, but no pixel is one of the 19 Cityscapes classes "
                "(ids 1-12 and 15-21); check that GT/LABELS holds the raw SYNTHIA labels, not colour "
                "visualisations (GT/COLOR) or another data set's labels. A frame that really has no "
                f"labelled pixel can be removed, or kept with an all-255 {sample.name}{TRAIN_ID_SUFFIX}.png",
            )
        unknown = present[present >= len(SYNTHIA_IDS)]
        if len(unknown):
            if self.unknown_id_labels == 0:
                shown = ", ".join(str(int(v)) for v in unknown[:12]) + (", ..." if len(unknown) > 12 else "")
                logger.warning(
                    "%s: label %s holds values that are not SYNTHIA class ids (0-22): [%s]; ignoring those "
                    "pixels (255) and counting such labels in unknown_id_labels",
                    self.name, sample.label, shown,
                )
            self.unknown_id_labels += 1
        return self._id_table[raw]
