"""ISPRS Potsdam and Vaihingen: large aerial tiles with colour-coded labels, served as windows.

Each tile (6000x6000 in Potsdam) is cut into `window`-sized samples, stride `stride` (default:
the window, no overlap); the last row and column of windows are shifted inward to end at the
border, so every window is whole. Only tile sizes are read while indexing (from the file header);
pixels are decoded on access and the last tile is cached per process.

Train/val follow the split common in the literature (mmsegmentation's): the tiles listed below
are val, every other labelled tile is train.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import IGNORE_INDEX, ISPRS
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.imread import image_size
from gkd_deploy.errors import ConfigError, DataError

POTSDAM_VAL_TILES = frozenset(
    ["2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14", "6_15", "7_13"]
)
VAIHINGEN_VAL_AREAS = frozenset(
    ["2", "4", "6", "8", "10", "12", "14", "16", "20", "22", "24", "27", "29", "31", "33", "35", "38"]
)
TILE_SUFFIXES = (".tif", ".tiff", ".png")


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of `size` along a side of `length`; the last one ends at the border.

    A side shorter than `size` gives one window at 0 (the window is then clipped to the side).
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def tile_windows(height: int, width: int, size: int, stride: int) -> list[tuple[int, int, int, int]]:
    """`(x, y, width, height)` windows covering a `height` x `width` tile, row by row."""
    return [
        (x, y, min(size, width), min(size, height))
        for y in window_starts(height, size, stride)
        for x in window_starts(width, size, stride)
    ]


class ISPRSDataset(SegmentationDataset):
    """Windows of ISPRS tiles; labels are RGB colours of the 6 `ISPRS` classes.

    A subclass names its layout: the image and label folders, the image-name pattern whose first
    group is the tile key ("2_10", "1"), the label file stem of a tile, and the val tiles (the
    others are train). Black label pixels (the boundary colour of eroded labels) become 255; any
    other colour that is not a class is an error.
    """

    label_format = "rgb"
    default_name: ClassVar[str]
    image_folder: ClassVar[str]
    label_folder: ClassVar[str]
    image_pattern: ClassVar[re.Pattern[str]]
    label_stem: ClassVar[str]  # format with {key} (the tile key) and {stem} (the image's stem)
    val_tiles: ClassVar[frozenset[str]]

    def __init__(
        self,
        root: Path | str,
        split: str = "val",
        transform: Transform | None = None,
        window: int = 512,
        stride: int | None = None,
        name: str | None = None,
    ) -> None:
        name = name or self.default_name
        stride = window if stride is None else stride
        if window < 1 or stride < 1:
            raise ConfigError(f"{name}: window {window} and stride {stride} must be positive numbers of pixels")
        if split not in ("train", "val"):
            raise ConfigError(f"{name}: unknown split {split!r}; use 'train' or 'val'")
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        image_dir = listing.require_dir(root / self.image_folder, name, self.layout)
        labels = _labels_by_stem(listing.require_dir(root / self.label_folder, name, self.layout))
        samples, unlabeled = [], 0
        for image_name in listing.files(image_dir, TILE_SUFFIXES):
            match = self.image_pattern.match(Path(image_name).stem)
            if match is None or (match.group(1) in self.val_tiles) != (split == "val"):
                continue
            image, label = image_dir / image_name, labels.get(self.label_stem.format(key=match.group(1), stem=match.group(0)))
            if label is None:
                unlabeled += 1
                continue
            height, width = image_size(image)
            for x, y, w, h in tile_windows(height, width, window, stride):
                samples.append(Sample(image, label, f"{image.stem}_x{x}_y{y}", (x, y, w, h)))
        self.window, self.stride = window, stride
        skipped = {"tile without label": unlabeled}
        super().__init__(name, ISPRS, samples, skipped=skipped, transform=transform, source=root)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        # One 24-bit key per pixel, so each class is a single comparison over the tile.
        key = (raw[:, :, 0].astype(np.uint32) << 16) | (raw[:, :, 1].astype(np.uint32) << 8) | raw[:, :, 2]
        label = np.full(key.shape, IGNORE_INDEX, dtype=np.uint8)
        known = key == 0  # black: boundary / no class
        for train_id, (r, g, b) in enumerate(self.class_set.palette):
            match = key == ((r << 16) | (g << 8) | b)
            label[match] = train_id
            known |= match
        if not known.all():
            colours = np.unique(key[~known]).tolist()
            shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in colours[:8])
            more = f" and {len(colours) - 8} more" if len(colours) > 8 else ""
            palette = ", ".join(f"{n} {c}" for n, c in zip(self.class_set.names, self.class_set.palette))
            raise DataError(
                f"{self.name}: label {sample.label} holds colours that are not ISPRS classes: {shown}{more}; "
                f"expected {palette} or black (0, 0, 0) for ignored pixels (lossy copies, e.g. JPEG, cannot be used)"
            )
        return label


def _labels_by_stem(label_dir: Path) -> dict[str, Path]:
    return {Path(n).stem: label_dir / n for n in listing.files(label_dir, TILE_SUFFIXES)}


class PotsdamDataset(ISPRSDataset):
    """ISPRS Potsdam: `2_Ortho_RGB/top_potsdam_<id>_RGB.tif` with `5_Labels_all/top_potsdam_<id>_label.tif`."""

    layout = (
        "the ISPRS Potsdam layout 2_Ortho_RGB/top_potsdam_<id>_RGB.tif with labels "
        "5_Labels_all/top_potsdam_<id>_label.tif"
    )
    default_name = "potsdam"
    image_folder, label_folder = "2_Ortho_RGB", "5_Labels_all"
    image_pattern = re.compile(r"^top_potsdam_(\d+_\d+)_RGB$", re.IGNORECASE)
    val_tiles = POTSDAM_VAL_TILES

    label_stem = "top_potsdam_{key}_label"


class VaihingenDataset(ISPRSDataset):
    """ISPRS Vaihingen: `top/top_mosaic_09cm_area<n>.tif` with `gts_for_participants/top_mosaic_09cm_area<n>.tif`."""

    layout = (
        "the ISPRS Vaihingen layout top/top_mosaic_09cm_area<n>.tif with labels "
        "gts_for_participants/top_mosaic_09cm_area<n>.tif"
    )
    default_name = "vaihingen"
    image_folder, label_folder = "top", "gts_for_participants"
    image_pattern = re.compile(r"^top_mosaic_09cm_area(\d+)$", re.IGNORECASE)
    val_tiles = VAIHINGEN_VAL_AREAS

    label_stem = "{stem}"  # the same file name in the label folder
