"""Training and evaluation transforms on numpy arrays: `(image, label | None) -> (image, label | None)`.

Image: (H, W, 3) uint8 RGB; label: (H, W) uint8 train ids with 255 = ignore. Labels are only ever
resampled nearest-neighbour (a blended id is a different class) and padded with 255, so a
transformed label holds only its input's values plus 255.

The three transforms follow the GKD authors' pipelines:
- `TaskTransform` (stage 3, their mmseg configs): random resize of the short side to
  `short_side` x {0.5, 0.6, ..., 2.0} (long side at most 4 x `short_side`), random crop with
  `cat_max_ratio` 0.75, horizontal flip, mmseg's photometric distortion;
- `DistillTransform` (stages 1-2, their DeiT-derived scripts): timm's `create_transform` training
  pipeline (RandomResizedCrop area 0.08-1 bicubic, flip, RandAugment `rand-m9-mstd0.5-inc1`,
  RandomErasing 0.25 in pixel mode), returned as float RGB on the 0..255 scale;
- `EvalTransform`: the authors' test-time resize of the image (labels stay at full resolution).

Stage 3 is written here rather than on albumentations: mmseg's short-side choice with a long-side
cap, its `cat_max_ratio` crop retries and its photometric distortion (steps, order, ranges) have
no exact albumentations counterpart, and a numpy generator per item needs no global seeding.

Training transforms are reseeded per item (`reseed`) from the item's place in the data order, so
a resumed run and a run split over several processes augment every image exactly as a single
uninterrupted run does. All transforms pickle, for DataLoader workers.
"""

from __future__ import annotations

import random
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from gkd_deploy.data.classes import IGNORE_INDEX
from gkd_deploy.errors import ConfigError

# mmseg's RandomChoiceResize in the authors' configs: short side = 512 x 0.5, 0.6, ..., 2.0.
SHORT_SIDE_RATIOS = tuple(x / 10 for x in range(5, 21))
MAX_LONG_SIDE_RATIO = 4.0  # their max_size 2048 for a short side of 512
CROP_TRIES = 10  # mmseg's RandomCrop tries this often to meet cat_max_ratio

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RAND_AUGMENT = "rand-m9-mstd0.5-inc1"


class _Reseedable:
    """Per-item seeding shared by the training transforms.

    With `reseed(seed)` before each item (what training does) an augmentation is a function of
    that seed alone. Used without it inside DataLoader workers, the generator is re-seeded from
    torch's per-worker seed (different per worker and epoch), so workers do not replay one stream.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._worker_seeded: tuple[int, int] | None = None

    def reseed(self, seed: int) -> None:
        """Make the next call's augmentation a function of `seed` alone."""
        self._rng = np.random.default_rng(seed)
        worker = get_worker_info()
        if worker is not None:
            self._worker_seeded = (worker.id, worker.seed)

    def _reseed_in_worker(self) -> None:
        worker = get_worker_info()
        if worker is None or self._worker_seeded == (worker.id, worker.seed):
            return
        # Mix in our own seed so that two transforms in one worker do not draw the same numbers.
        entropy = [worker.seed] if self.seed is None else [worker.seed, self.seed]
        self._rng = np.random.default_rng(entropy)
        self._worker_seeded = (worker.id, worker.seed)


class TaskTransform(_Reseedable):
    """Stage-3 augmentation: random short-side resize, cat_max_ratio crop (padded with 0 / 255 where
    the image is smaller), horizontal flip and photometric distortion.

    `crop_size` is (height, width); `short_side` the base of the resize (512 in the paper, the
    crop size) and `ratios` the factors it is drawn from; `cat_max_ratio` the largest share one
    class may take of a crop (mmseg tries up to 10 crops; 1.0 turns the check off).
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (512, 512),
        short_side: int = 512,
        cat_max_ratio: float = 0.75,
        flip: bool = True,
        photometric: bool = True,
        seed: int | None = None,
        ratios: tuple[float, ...] = SHORT_SIDE_RATIOS,
    ) -> None:
        super().__init__(seed)
        self.crop_size = _pair(crop_size, "crop_size")
        if not isinstance(short_side, int) or isinstance(short_side, bool) or short_side < 1:
            raise ConfigError(f"short_side must be a positive whole number of pixels, got {short_side!r}")
        if not 0.0 < cat_max_ratio <= 1.0:
            raise ConfigError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio!r}")
        if not ratios or any(not r > 0 for r in ratios):
            raise ConfigError(f"short-side ratios must be positive numbers, got {ratios!r}")
        self.short_side, self.cat_max_ratio, self.ratios = short_side, cat_max_ratio, tuple(ratios)
        self.flip, self.photometric = flip, photometric

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 3) uint8, (H, W) uint8 | None -> (crop_h, crop_w, 3) uint8, (crop_h, crop_w) uint8 | None."""
        self._reseed_in_worker()
        rng = self._rng
        image, label = self._resize(image, label, self.short_side * float(rng.choice(self.ratios)))
        image, label = self._crop(image, label, rng)
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            label = None if label is None else label[:, ::-1]
        if self.photometric:
            image = photometric_distortion(image, rng)
        return np.ascontiguousarray(image), None if label is None else np.ascontiguousarray(label)

    def _resize(self, image: np.ndarray, label: np.ndarray | None, short: float):
        height, width = image.shape[:2]
        scale = short / min(height, width)
        max_long = MAX_LONG_SIDE_RATIO * self.short_side
        if max(height, width) * scale > max_long:
            scale = max_long / max(height, width)
        size = (max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5)))  # cv2 wants (w, h)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if label is not None:
            # NEAREST_EXACT samples at pixel centres like INTER_LINEAR does for the image.
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT)
        return image, label

    def _crop(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator):
        crop_h, crop_w = self.crop_size
        height, width = image.shape[:2]
        for _ in range(CROP_TRIES):
            top = int(rng.integers(0, max(height - crop_h, 0) + 1))
            left = int(rng.integers(0, max(width - crop_w, 0) + 1))
            window = (slice(top, top + crop_h), slice(left, left + crop_w))
            if label is None or self.cat_max_ratio >= 1.0 or _balanced(label[window], self.cat_max_ratio):
                break
        image = _pad(image[window], crop_h, crop_w, 0)
        return image, None if label is None else _pad(label[window], crop_h, crop_w, IGNORE_INDEX)

    def __repr__(self) -> str:
        return (f"TaskTransform(crop_size={self.crop_size}, short_side={self.short_side}, "
                f"cat_max_ratio={self.cat_max_ratio}, flip={self.flip}, photometric={self.photometric}, seed={self.seed})")


def _balanced(label: np.ndarray, cat_max_ratio: float) -> bool:
    """mmseg's crop check: at least two labelled classes, none over `cat_max_ratio` of the labelled pixels."""
    counts = np.bincount(label.ravel(), minlength=256)[:IGNORE_INDEX]
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def _pad(array: np.ndarray, height: int, width: int, value: int) -> np.ndarray:
    missing_h, missing_w = height - array.shape[0], width - array.shape[1]
    if missing_h <= 0 and missing_w <= 0:
        return array
    pad = [(0, max(missing_h, 0)), (0, max(missing_w, 0))] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=value)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on (H, W, 3) uint8 RGB: each step with probability 0.5 and the
    result clipped to uint8 after it: brightness +-32, contrast x0.5-1.5 (before or after the
    colour steps, at random), saturation x0.5-1.5, hue +-18 (OpenCV's 0-179 hue scale)."""

    def convert(array: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(array.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    if rng.integers(2):
        image = convert(image, beta=float(rng.uniform(-32, 32)))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        image = convert(image, alpha=float(rng.uniform(0.5, 1.5)))
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = convert(hsv[..., 1], alpha=float(rng.uniform(0.5, 1.5)))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.integers(-18, 18))) % 180
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.integers(2):
        image = convert(image, alpha=float(rng.uniform(0.5, 1.5)))
    return image


class DistillTransform(_Reseedable):
    """Stages 1-2: timm's ImageNet training pipeline at `img_size`, as the authors' scripts build it
    (`create_transform(is_training=True, auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic",
    re_prob=0.25, re_mode="pixel")`).

    timm normalises with the ImageNet statistics before erasing, so the erased pixels are N(0, 1)
    in normalised space; the output is mapped back to the 0..255 scale (float32, not clipped),
    where every encoder applies its own normalisation. Labels are not used (distillation).
    """

    def __init__(self, img_size: int = 224, seed: int | None = None) -> None:
        super().__init__(seed)
        if not isinstance(img_size, int) or img_size < 1:
            raise ConfigError(f"img_size must be a positive whole number, got {img_size!r}")
        self.img_size = img_size
        self._pipeline = None

    def _timm_pipeline(self):
        if self._pipeline is None:
            from timm.data import create_transform
            from timm.data.auto_augment import RandAugment

            self._pipeline = create_transform(
                input_size=self.img_size, is_training=True, color_jitter=0.3, auto_augment=RAND_AUGMENT,
                interpolation="bicubic", re_prob=0.25, re_mode="pixel", re_count=1,
                mean=IMAGENET_MEAN, std=IMAGENET_STD)
            for step in self._pipeline.transforms:
                if isinstance(step, RandAugment):
                    for op in step.ops:
                        if op.name.startswith("Posterize"):
                            op.aug_fn = _posterize
        return self._pipeline

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, None]:
        """(H, W, 3) uint8 RGB -> (img_size, img_size, 3) float32 RGB on the 0..255 scale."""
        from PIL import Image

        self._reseed_in_worker()
        seed = int(self._rng.integers(2**63 - 1))
        # timm draws from Python's `random`, numpy's and torch's global generators (RandAugment
        # picks its ops with np.random): all three are seeded for this item and put back
        # afterwards, so nothing outside sees a difference.
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
                normalised = self._timm_pipeline()(Image.fromarray(image))
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0
        return (normalised * std + mean).permute(1, 2, 0).contiguous().numpy(), None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pipeline"] = None  # rebuilt in the worker
        return state

    def __repr__(self) -> str:
        return f"DistillTransform(img_size={self.img_size}, seed={self.seed})"


def _posterize(image, bits_to_keep: int, **_: Any):
    """RandAugment's posterize, keeping `bits_to_keep` of the 8 bits per channel. At the top of the
    magnitude range (m9 plus noise reaches 10) timm asks for 0 bits, which Pillow >= 9 refuses;
    older Pillow, which the recipe was run with, gave the masked, black image: so do we."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return image.point([0] * 256 * len(image.getbands()))
    return ImageOps.posterize(image, bits_to_keep)


def fit_within(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the (height, width) that fits within `size` = (W, H) as a long /
    short edge pair: scale = min(max(size) / long side, min(size) / short side) (up or down)."""
    scale = min(max(size) / max(height, width), min(size) / min(height, width))
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


class EvalTransform:
    """Evaluation: the image rescaled to fit within `size` = (W, H) (None: kept), the label kept at
    full resolution; the evaluator resizes the predicted scores back to the label's size."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = None if size is None else _pair(size, "eval size")

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.size is None:
            return image, label
        height, width = fit_within(image.shape[0], image.shape[1], self.size)
        if (height, width) != image.shape[:2]:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return image, label

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"


# The names the rest of the product uses.
train_transform = TaskTransform
eval_transform = EvalTransform


def _pair(value: Any, what: str) -> tuple[int, int]:
    """Validate a (height, width)-style pair of positive whole numbers; a single number means both."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be two numbers, e.g. (512, 512); got {value!r}") from None
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and v >= 1
             for v in (first, second))
    if not ok:
        raise ConfigError(f"{what} must be two positive whole numbers, e.g. (512, 512); got {value!r}")
    return int(first), int(second)
