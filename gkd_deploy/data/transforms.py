"""Training and evaluation transforms on numpy arrays: `(image, label | None) -> (image, label | None)`.

Image: (H, W, 3) uint8 RGB; label: (H, W) uint8 train ids with 255 = ignore. Labels are only ever
resampled nearest-neighbour (a blended id is a different class) and padded with 255, so a
transformed label holds only its input's values plus 255. Both transforms pickle, for DataLoader
workers.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from torch.utils.data import get_worker_info

from gkd_deploy.data.classes import IGNORE_INDEX
from gkd_deploy.errors import ConfigError


class TrainTransform:
    """Random scale, pad + random crop to `crop_size`, horizontal flip and photometric distortion.

    `crop_size` is (height, width). With `seed` set, the sequence of augmentations in one process
    is reproducible. In a DataLoader worker the generator is re-seeded from torch's per-worker
    seed (which differs per worker and per epoch, and follows `torch.manual_seed`); otherwise every
    worker would replay the same copied random state, epoch after epoch.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (512, 512),
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        photometric: bool = True,
        seed: int | None = None,
    ) -> None:
        crop_h, crop_w = _pair(crop_size, "crop_size")
        low, high = (float(v) for v in _pair(scale_range, "scale_range", number=float))
        if not 0 < low <= high:
            raise ConfigError(f"scale_range {scale_range!r} must be two numbers 0 < low <= high, e.g. (0.5, 2.0)")
        self.crop_size, self.scale_range = (crop_h, crop_w), (low, high)
        self.flip, self.photometric, self.seed = flip, photometric, seed
        self._worker_seeded: tuple[int, int] | None = None
        steps: list[A.BasicTransform] = [
            # RandomScale samples 1 + U(limit): (low - 1, high - 1) gives a factor in [low, high].
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                # NEAREST_EXACT samples at pixel centres like INTER_LINEAR does for the image;
                # plain INTER_NEAREST is shifted by up to a pixel against it.
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            ),
            A.PadIfNeeded(
                min_height=crop_h, min_width=crop_w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX
            ),
            A.RandomCrop(height=crop_h, width=crop_w),
        ]
        if flip:
            steps.append(A.HorizontalFlip(p=0.5))
        if photometric:
            # Brightness/contrast/saturation factors in [0.75, 1.25] / [0.5, 1.5] / [0.5, 1.5] and a
            # hue shift of up to 0.05 of the colour circle, close to mmsegmentation's PhotoMetricDistortion.
            steps.append(A.ColorJitter(brightness=0.25, contrast=0.5, saturation=0.5, hue=0.05, p=0.8))
        self._pipeline = A.Compose(steps, seed=seed)

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 3) uint8, (H, W) uint8 | None -> (crop_h, crop_w, 3) uint8, (crop_h, crop_w) uint8 | None."""
        self._reseed_in_worker()
        if label is None:
            return self._pipeline(image=image)["image"], None
        out = self._pipeline(image=image, mask=label)
        return out["image"], out["mask"]

    def reseed(self, seed: int) -> None:
        """Make the next call's augmentation a function of `seed` alone.

        Training seeds every item from its place in the data order, so that a resumed run and a run
        split over several processes augment each image exactly as a single uninterrupted run does.
        """
        self._pipeline.set_random_seed(seed)
        worker = get_worker_info()
        if worker is not None:
            self._worker_seeded = (worker.id, worker.seed)

    def _reseed_in_worker(self) -> None:
        worker = get_worker_info()
        if worker is None or self._worker_seeded == (worker.id, worker.seed):
            return
        # Mix in our own seed so that two transforms in one worker do not draw the same numbers.
        entropy = [worker.seed] if self.seed is None else [worker.seed, self.seed]
        self._pipeline.set_random_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        self._worker_seeded = (worker.id, worker.seed)

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, flip={self.flip}, "
            f"photometric={self.photometric}, seed={self.seed})"
        )


class EvalTransform:
    """The identity: evaluation keeps images and labels at full resolution."""

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return image, label

    def __repr__(self) -> str:
        return "EvalTransform()"


def train_transform(
    crop_size: tuple[int, int] = (512, 512),
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    photometric: bool = True,
    seed: int | None = None,
) -> TrainTransform:
    """The training augmentation; see `TrainTransform`."""
    return TrainTransform(crop_size, scale_range, flip, photometric, seed)


def eval_transform() -> EvalTransform:
    """The evaluation transform: the identity."""
    return EvalTransform()


def _pair(value: Any, what: str, number: type = int) -> tuple[Any, Any]:
    """Validate a (height, width)-style pair from a config; a single number means both."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be two numbers, e.g. (512, 512); got {value!r}") from None
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (first, second))
    if number is int:
        ok = ok and all(float(v).is_integer() and v >= 1 for v in (first, second))
        if ok:
            first, second = int(first), int(second)
    if not ok:
        kind = "positive whole numbers" if number is int else "numbers"
        raise ConfigError(f"{what} must be two {kind}, e.g. (512, 512); got {value!r}")
    return first, second
