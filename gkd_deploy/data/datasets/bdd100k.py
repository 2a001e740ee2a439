"""BDD100K semantic segmentation: `images/10k/<split>/*.jpg` with `labels/sem_seg/masks/<split>/*.png`.

The masks already hold the 19 Cityscapes train ids and 255.
"""

from __future__ import annotations

from pathlib import Path

from gkd_deploy.data.base import SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.pairing import pair_by_stem


class BDD100KDataset(SegmentationDataset):
    """BDD100K 10k-image segmentation split, one domain "bdd100k"."""

    layout = "the BDD100K layout images/10k/{train,val}/*.jpg with labels labels/sem_seg/masks/{train,val}/*.png"
    eval_size = (1280, 720)

    def __init__(
        self, root: Path | str, split: str = "val", transform: Transform | None = None, name: str = "bdd100k"
    ) -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / "images" / "10k" / split, name, self.layout)
        label_dir = listing.require_dir(root / "labels" / "sem_seg" / "masks" / split, name, self.layout)
        samples, missing = pair_by_stem(image_dir, label_dir, (".jpg", ".jpeg", ".png"), (".png",))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=image_dir)
