"""Calibration images: windows of domain images, exactly as a fixed-size model sees them.

An exported model has one input size; `gkd validate` and inference run it over larger images in
sliding windows at the image's own scale, zero-padded at the bottom/right where an image is
smaller than a window (`gkd_deploy.evaluation.inference`, slide mode). Calibration must see the
same pixel statistics, so each image contributes one such window: no resizing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gkd_deploy.data.base import SegmentationDataset
from gkd_deploy.data.registry import DatasetSpec, build_domains, parse_dataset_list
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.size import Size

log = logging.getLogger(__name__)

DEFAULT_COUNT = 512  # NVIDIA ModelOpt's default calibration size
RECOMMENDED_MIN_COUNT = 300  # below this, Ultralytics warns: ranges from few images clip real data


@dataclass(frozen=True)
class CalibrationSet:
    """`images`: (N, 3, H, W) uint8 RGB windows; `names[i]`: "domain/sample" of image i."""

    images: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({name.split("/", 1)[0] for name in self.names}))


def calibration_images(
    specs: str | Sequence[str | DatasetSpec],
    count: int = DEFAULT_COUNT,
    input_size: tuple[int, int] = (512, 512),
    seed: int = 0,
    warn_small: bool = True,
) -> CalibrationSet:
    """`count` windows of `input_size` (height, width) drawn from the domains of `specs`.

    Images come from each data set's train split (its val split where it has no train split),
    spread evenly over all domains; which images and which window of each follow from `seed`
    alone. Fewer than `count` are returned, with a warning, where the data holds fewer.
    `warn_small=False` for sets that only check an export, where a handful of images is enough.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"calibration count must be a whole number >= 1, got {count!r}")
    height, width = _size(input_size)
    domains: dict[str, SegmentationDataset] = {}
    for spec in parse_dataset_list(specs):
        domains.update(_calibration_domains(spec))
    rng = np.random.default_rng(seed)
    picks = _spread(domains, count, rng)
    if len(picks) < count:
        log.warning("calibration: asked for %d images, the data sets hold only %d; using them all",
                    count, len(picks))
    if warn_small and len(picks) < RECOMMENDED_MIN_COUNT:
        log.warning("calibrating with %d images; at least %d are recommended (int8 ranges from few images clip "
                    "what real data reaches)", len(picks), RECOMMENDED_MIN_COUNT)
    images = np.empty((len(picks), 3, height, width), dtype=np.uint8)
    names = []
    for slot, (domain, index) in enumerate(picks):
        item = domains[domain][index]
        images[slot] = fixed_size_window(item["image"].numpy(), (height, width), rng)
        names.append(f"{domain}/{item['name']}")
    return CalibrationSet(images, tuple(names))


def fixed_size_window(image: np.ndarray, input_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(3, H, W) uint8 -> one (3, h, w) window at the image's scale, zero-padded bottom/right."""
    height, width = input_size
    padded_h, padded_w = max(image.shape[1], height), max(image.shape[2], width)
    if (padded_h, padded_w) != image.shape[1:]:
        padded = np.zeros((3, padded_h, padded_w), dtype=image.dtype)
        padded[:, : image.shape[1], : image.shape[2]] = image
        image = padded
    top = int(rng.integers(0, padded_h - height + 1))
    left = int(rng.integers(0, padded_w - width + 1))
    return image[:, top : top + height, left : left + width]


def _calibration_domains(spec: DatasetSpec) -> dict[str, SegmentationDataset]:
    """The train-split domains of `spec`, or its val-split ones where it has no train split."""
    try:
        return _pixels_only(build_domains(spec, "train"))
    except DataError as train_error:
        try:
            domains = build_domains(spec, "val")
        except DataError as val_error:
            also = "" if str(val_error) == str(train_error) else f" (train split: {train_error})"
            raise DataError(f"no calibration images in {spec.name}={spec.path}: {val_error}{also}") from None
    log.info("calibration: %s=%s has no train split, using its val split", spec.name, spec.path)
    return _pixels_only(domains)


def _pixels_only(domains: dict[str, SegmentationDataset]) -> dict[str, SegmentationDataset]:
    # Calibration reads pixels only; these data sets are ours alone, so skip decoding their labels.
    for dataset in domains.values():
        dataset.labeled = False
    return domains


def _spread(domains: dict[str, SegmentationDataset], count: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Up to `count` (domain, index) picks, one domain after another in turn, each in shuffled order."""
    orders = {name: list(rng.permutation(len(dataset))) for name, dataset in sorted(domains.items())}
    picks: list[tuple[str, int]] = []
    while len(picks) < count and any(orders.values()):
        for name, order in orders.items():
            if order and len(picks) < count:
                picks.append((name, int(order.pop())))
    return picks


def _size(input_size: tuple[int, int]) -> tuple[int, int]:
    return Size.of(input_size, "calibration input size").hw
