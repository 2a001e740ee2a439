"""The segmentation data set every loader builds on: an index of file paths plus lazy decoding.

A loader subclass lists its samples (paths only; nothing is decoded while indexing) and says how
a raw label file becomes train ids (`convert_label`). This base reads the files, checks the label
values and sizes, cuts aerial-tile windows, applies the transform and returns tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.data.imread import read_label_ids, read_label_rgb, read_rgb
from gkd_deploy.errors import DataError

logger = logging.getLogger(__name__)

# (image (H, W, 3) uint8 RGB, label (H, W) uint8 train ids or None) -> the same, transformed.
Transform = Callable[[np.ndarray, "np.ndarray | None"], "tuple[np.ndarray, np.ndarray | None]"]

# Real GTAV has labels a few pixels smaller than their images; up to this fraction of a side is
# treated as such an off-by-a-few export and fixed, anything larger is a wrong pairing.
MAX_SIZE_MISMATCH = 0.05


@dataclass(frozen=True)
class Sample:
    """One item of a data set: file paths, a name unique within the data set, and an optional window.

    `window` is `(x, y, width, height)` in pixels of the decoded image; set for samples cut from
    large tiles (ISPRS), where several samples share one file.
    """

    image: Path
    label: Path | None
    name: str
    window: tuple[int, int, int, int] | None = None


def report_index(name: str, count: int, skipped: dict[str, int] | None, source: Path | None, layout: str) -> dict[str, int]:
    """Log the files left out while indexing a data set and refuse an index of no samples.

    `skipped` counts files by reason; the non-zero counts are returned. An empty index is a
    `DataError` that names the folder, what was skipped, and the expected `layout`.
    """
    skipped = {reason: n for reason, n in (skipped or {}).items() if n}
    where = f" under {source}" if source is not None else ""
    for reason, n in skipped.items():
        logger.warning("%s: skipped %d file(s)%s: %s", name, n, where, reason)
    if not count:
        skipped_text = "".join(f"; skipped {n} ({r})" for r, n in skipped.items())
        raise DataError(f"{name}: no samples found{where}{skipped_text}; expected {layout}")
    return skipped


class SegmentationDataset(Dataset):
    """Indexed samples of one domain; items are decoded on access.

    `dataset[i]` is `{"image": uint8 tensor (3, H, W) RGB, "label": int64 tensor (H, W) of train
    ids in 0..C-1 or 255, "name": str}`; unlabeled sets have no "label" key. `samples` is a
    list for most loaders (any `Sequence[Sample]` is accepted). `skipped` counts files left out
    while indexing, by reason; `resized_labels` counts labels resized to their image so far (in
    this process).
    """

    # How label files are decoded before `convert_label`: "ids" -> (H, W) ids, "rgb" -> (H, W, 3).
    label_format: ClassVar[str] = "ids"
    # The expected folder layout, for error messages.
    layout: ClassVar[str] = "a folder of images and labels"
    # Test-time resize of the GKD authors' configs (mmseg `Resize(scale=(W, H), keep_ratio=True)`):
    # images are rescaled to fit within W x H before the sliding windows, labels stay at full
    # resolution. None: score at the native resolution.
    eval_size: ClassVar[tuple[int, int] | None] = None
    # Which classes the domain's mIoU averages (set per domain by `build_domains`): None for all
    # classes (the Cityscapes / mmseg rule), "labelled" for those its labels contain, or names.
    score_classes: ClassVar["str | tuple[str, ...] | None"] = None

    def __init__(
        self,
        name: str,
        class_set: ClassSet,
        samples: Sequence[Sample],
        *,
        labeled: bool = True,
        skipped: dict[str, int] | None = None,
        transform: Transform | None = None,
        source: Path | None = None,
    ) -> None:
        self.name = name
        self.class_set = class_set
        # Sequences are kept as given: large folders pass a compact `SampleTable`, not a list.
        self.samples = samples if isinstance(samples, Sequence) else list(samples)
        self.labeled = labeled
        self.skipped = report_index(name, len(self.samples), skipped, source, self.layout)
        self.transform = transform
        self.source = source
        self.resized_labels = 0
        # Last decoded tile per kind ("image"/"label"): window samples of one tile come in a row.
        self._tile_cache: dict[str, tuple[Path, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = self._cached("image", sample, lambda: read_rgb(sample.image))
        label = None
        if self.labeled:
            if sample.label is None:
                raise DataError(f"{self.name}: sample {sample.name} has no label file, but the data set is labeled")
            label = self._cached("label", sample, lambda: self.load_label(sample, image.shape[:2]))
        if sample.window is not None:
            # Copies, so that a transform working in place cannot alter the cached tile.
            x, y, width, height = sample.window
            image = image[y : y + height, x : x + width].copy()
            label = None if label is None else label[y : y + height, x : x + width].copy()
        if self.transform is not None:
            image, label = self.transform(image, label)
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "name": sample.name,
        }
        if label is not None:
            item["label"] = torch.from_numpy(label.astype(np.int64))
        return item

    def load_label(self, sample: Sample, image_size: tuple[int, int]) -> np.ndarray:
        """Decode, convert, check and size-match the label of `sample`: (H, W) uint8 train ids / 255.

        `image_size` is the (height, width) of the decoded image the label must cover.
        """
        path = sample.label
        if self.label_format == "rgb":
            raw = read_label_rgb(path)
        else:
            raw = self._as_uint8(read_label_ids(path), path)
        label = self.convert_label(raw, sample)
        self._check_train_ids(label, path)
        return self._match_size(label, image_size, sample)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        """Raw decoded label -> (H, W) uint8 train ids. The default: the file already holds train ids."""
        return raw

    def unexpected_values(self, path: Path, values: np.ndarray, expected: str) -> DataError:
        """A `DataError` for label values that mean a wrong file or a wrong class table."""
        shown = ", ".join(str(int(v)) for v in values[:12]) + (", ..." if len(values) > 12 else "")
        return DataError(f"{self.name}: label {path} holds unexpected values [{shown}]; expected {expected}")

    def _as_uint8(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.dtype == np.uint8:
            return raw
        too_big = raw > 255
        if too_big.any():
            raise self.unexpected_values(path, np.unique(raw[too_big]), "8-bit label ids (0-255)")
        return raw.astype(np.uint8)

    def _check_train_ids(self, label: np.ndarray, path: Path) -> None:
        # bincount over 256 bins is one linear pass; np.unique would sort every pixel.
        counts = np.bincount(label.ravel(), minlength=256)
        num_classes, ignore = self.class_set.num_classes, self.class_set.ignore_index
        bad = [v for v in np.flatnonzero(counts) if v >= num_classes and v != ignore]
        if bad:
            raise self.unexpected_values(
                path,
                np.asarray(bad),
                f"train ids 0-{num_classes - 1} of the {num_classes} {self.class_set.name} classes or "
                f"{ignore} (ignore); check that the labels are train ids for this data set (not raw "
                "label ids or colours) and that the right data set name was given",
            )

    def _match_size(self, label: np.ndarray, image_size: tuple[int, int], sample: Sample) -> np.ndarray:
        (label_h, label_w), (image_h, image_w) = label.shape[:2], image_size
        if (label_h, label_w) == (image_h, image_w):
            return label
        if abs(label_h - image_h) > MAX_SIZE_MISMATCH * image_h or abs(label_w - image_w) > MAX_SIZE_MISMATCH * image_w:
            raise DataError(
                f"{self.name}: label {sample.label} is {label_w}x{label_h} but image {sample.image} is "
                f"{image_w}x{image_h}; the files do not belong together (check the pairing or re-export the label)"
            )
        if self.resized_labels == 0:
            logger.warning(
                "%s: label %s is %dx%d but its image is %dx%d; resizing labels like this (nearest "
                "neighbour) and counting them in resized_labels",
                self.name, sample.label, label_w, label_h, image_w, image_h,
            )
        self.resized_labels += 1
        return cv2.resize(label, (image_w, image_h), interpolation=cv2.INTER_NEAREST_EXACT)

    def _cached(self, kind: str, sample: Sample, load: Callable[[], np.ndarray]) -> np.ndarray:
        if sample.window is None:
            return load()
        path = sample.image if kind == "image" else sample.label
        hit = self._tile_cache.get(kind)
        if hit is not None and hit[0] == path:
            return hit[1]
        array = load()
        self._tile_cache[kind] = (path, array)
        return array

    def __getstate__(self) -> dict[str, Any]:
        # Workers get their own (empty) tile cache instead of a pickled copy of a decoded tile.
        state = self.__dict__.copy()
        state["_tile_cache"] = {}
        return state

    def __repr__(self) -> str:
        skipped = f", skipped={self.skipped}" if self.skipped else ""
        return (
            f"{type(self).__name__}(name={self.name!r}, samples={len(self.samples)}, "
            f"labeled={self.labeled}{skipped})"
        )
