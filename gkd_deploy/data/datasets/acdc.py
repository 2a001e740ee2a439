"""ACDC (adverse conditions): `rgb_anon/<cond>/<split>/<seq>/*_rgb_anon.png` with
`gt/<cond>/<split>/<seq>/*_gt_labelTrainIds.png`, one domain per condition ("acdc-fog", ...).
"""

from __future__ import annotations

from pathlib import Path

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES
from gkd_deploy.data.datasets import listing
from gkd_deploy.errors import DataError

CONDITIONS = ("fog", "night", "rain", "snow")
IMAGE_SUFFIX = "_rgb_anon.png"
LABEL_SUFFIX = "_gt_labelTrainIds.png"
LAYOUT = (
    "the ACDC layout rgb_anon/{fog,night,rain,snow}/{train,val}/<sequence>/*_rgb_anon.png with labels "
    "gt/<condition>/<split>/<sequence>/*_gt_labelTrainIds.png"
)


class ACDCDataset(SegmentationDataset):
    """The images of one ACDC condition and split; the domain is named "acdc-<condition>"."""

    layout = LAYOUT
    eval_size = (960, 540)  # half of ACDC's 1920 x 1080

    def __init__(
        self, root: Path | str, condition: str, split: str = "val", transform: Transform | None = None
    ) -> None:
        root = Path(root)
        name = f"acdc-{condition}"
        image_root = listing.require_dir(root / "rgb_anon" / condition / split, name, self.layout)
        label_root = root / "gt" / condition / split
        samples, missing = [], 0
        for sequence in listing.subdirs(image_root):
            label_dir = label_root / sequence
            label_names = set(listing.files(label_dir, (LABEL_SUFFIX.lower(),))) if label_dir.is_dir() else set()
            for image_name in listing.files(image_root / sequence, (IMAGE_SUFFIX.lower(),)):
                key = image_name[: -len(IMAGE_SUFFIX)]
                if key + LABEL_SUFFIX not in label_names:
                    missing += 1
                    continue
                samples.append(Sample(image_root / sequence / image_name, label_dir / (key + LABEL_SUFFIX), key))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=image_root)


def acdc_domains(root: Path | str, split: str = "val", transform: Transform | None = None) -> dict[str, ACDCDataset]:
    """One `ACDCDataset` per condition that has a `split` folder, keyed by domain name."""
    root = Path(root)
    listing.require_dir(root, "acdc", LAYOUT)
    listing.require_dir(root / "rgb_anon", "acdc", LAYOUT)
    listing.require_dir(root / "gt", "acdc", LAYOUT)
    present = [c for c in CONDITIONS if (root / "rgb_anon" / c / split).is_dir()]
    if not present:
        expected = ", ".join(str(root / "rgb_anon" / c / split) for c in CONDITIONS)
        raise DataError(f"acdc: none of {expected} found; expected {LAYOUT}")
    domains = [ACDCDataset(root, condition, split, transform) for condition in present]
    return {d.name: d for d in domains}
