"""Generic folders: `folder` (images + train-id masks) and `images` (an unlabeled proxy set).

`folder`: `PATH/images/*` with `PATH/masks/*` of the same file stem holding train ids; the classes
are Cityscapes unless `PATH/classes.json` (`{"names": [...], "palette": [[r, g, b], ...]}`,
palette optional) says otherwise. `images`: every image under `PATH`, searched recursively.
"""

from __future__ import annotations

import json
from pathlib import Path

from gkd_deploy.data.base import SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, IGNORE_INDEX, ClassSet
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.pairing import pair_by_stem
from gkd_deploy.data.datasets.sample_table import SampleTable
from gkd_deploy.errors import DataError

IMAGE_SUFFIXES = listing.IMAGE_SUFFIXES
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless formats only: JPEG would corrupt ids


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for `num_classes` classes: the PASCAL VOC bit-spread palette, skipping black."""
    colours = []
    for index in range(1, num_classes + 1):
        r = g = b = 0
        for bit in range(8):
            r |= ((index >> (3 * bit)) & 1) << (7 - bit)
            g |= ((index >> (3 * bit + 1)) & 1) << (7 - bit)
            b |= ((index >> (3 * bit + 2)) & 1) << (7 - bit)
        colours.append((r, g, b))
    return tuple(colours)


def load_class_set(path: Path, name: str) -> ClassSet:
    """The class set described by a `classes.json` file."""
    fix = 'expected {"names": ["road", ...], "palette": [[128, 64, 128], ...]} (palette optional)'
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; {fix}") from exc
    names = spec.get("names") if isinstance(spec, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path}: \"names\" must be a non-empty list of class names; {fix}")
    if len(names) > IGNORE_INDEX:
        raise DataError(
            f"{path}: {len(names)} classes; at most {IGNORE_INDEX} fit in 8-bit masks next to the "
            f"ignore id {IGNORE_INDEX}"
        )
    palette = spec.get("palette")
    if palette is None:
        return ClassSet(name, tuple(names), default_palette(len(names)))
    valid = isinstance(palette, list) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette
    )
    if not valid or len(palette) != len(names):
        raise DataError(f"{path}: \"palette\" must list one [r, g, b] colour (0-255) per class ({len(names)}); {fix}")
    return ClassSet(name, tuple(names), tuple(tuple(c) for c in palette))


class FolderDataset(SegmentationDataset):
    """Images and same-stem train-id masks in `images/` and `masks/`; one domain named `name`."""

    layout = (
        "images/* with masks/* of the same file name stem (masks hold train ids, 255 = ignore), "
        "optional classes.json"
    )

    def __init__(self, root: Path | str, transform: Transform | None = None, name: str = "folder") -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / "images", name, self.layout)
        mask_dir = listing.require_dir(root / "masks", name, self.layout)
        classes_path = root / "classes.json"
        class_set = load_class_set(classes_path, root.name or name) if classes_path.exists() else CITYSCAPES
        samples, missing = pair_by_stem(image_dir, mask_dir, IMAGE_SUFFIXES, MASK_SUFFIXES)
        skipped = {"image without mask": missing}
        super().__init__(name, class_set, samples, skipped=skipped, transform=transform, source=root)


class ImageFolderDataset(SegmentationDataset):
    """Every image under a folder (recursive, sorted), without labels: a proxy set for distillation.

    Sample names are paths relative to the folder without the suffix ("n01440764/n01440764_10026"),
    unique even where sub-folders repeat file names.
    """

    layout = "a folder with images (*.jpg, *.jpeg, *.png, *.bmp, *.webp) at any depth"

    def __init__(
        self,
        root: Path | str,
        transform: Transform | None = None,
        name: str = "images",
        class_set: ClassSet = CITYSCAPES,
    ) -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        samples = SampleTable(root, listing.walk_files(root, IMAGE_SUFFIXES))
        super().__init__(name, class_set, samples, labeled=False, transform=transform, source=root)
