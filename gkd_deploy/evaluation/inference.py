"""Dense prediction for images of any size: whole-image or sliding-window.

Both return logits at the image's own resolution, so labels are scored at full resolution. The
images and what the model returns are torch tensors (training-time evaluation) or numpy arrays
(exported models in the runtime, which has no torch): one implementation serves both, and torch
is imported only when it is given tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from gkd_deploy.errors import ConfigError

if TYPE_CHECKING:
    from gkd_deploy.runtime.base import ModelInfo

Array = Any  # a torch.Tensor or a numpy.ndarray, (B, C, H, W)
Model = Callable[[Array], Array]  # (B, 3, H, W) -> (B, K, H, W), of the images' kind


@dataclass(frozen=True)
class InferenceMode:
    """`whole`: the image at its resolution, padded to a multiple of `multiple`.
    `slide`: `crop` x `crop` windows every `stride` pixels, logits averaged where they overlap
    (the paper's setting: crop 512, stride 341)."""

    mode: str = "slide"
    crop: int = 512
    stride: int = 341
    multiple: int = 16
    crop_width: int | None = None  # for windows that are not square (a model exported at H x W)
    window_batch: int = 1  # windows run together in one call (same result, fewer calls)

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ConfigError(f"inference mode must be 'whole' or 'slide', got '{self.mode}'")
        if self.mode == "slide" and not 0 < self.stride <= min(self.window):
            raise ConfigError(f"slide inference needs 0 < stride <= crop, got stride {self.stride}, crop {self.crop}")
        if any(side % self.multiple for side in self.window):
            raise ConfigError(f"crop {self.crop} must be a multiple of the patch size {self.multiple}")
        if self.window_batch < 1:
            raise ConfigError(f"window_batch must be >= 1, got {self.window_batch}")

    @property
    def window(self) -> tuple[int, int]:
        """(height, width) of a sliding window."""
        return self.crop, self.crop_width or self.crop


def default_inference_mode(img_size: int, patch_size: int, mode: str = "slide", crop: int | None = None,
                           stride: int | None = None, crop_width: int | None = None,
                           window_batch: int = 1) -> InferenceMode:
    """Slide with the training crop and a 2/3 stride (512 -> 341), as the paper evaluates.
    `crop_width` makes the window crop x crop_width (a model exported at a non-square size)."""
    # None means the default; a given 0 or negative value is refused by InferenceMode, not replaced.
    crop = img_size if crop is None else crop
    stride = max(patch_size, (min(crop, crop_width or crop) * 2) // 3) if stride is None else stride
    return InferenceMode(mode=mode, crop=crop, stride=stride, multiple=patch_size, crop_width=crop_width,
                         window_batch=window_batch)


def exported_inference_mode(info: "ModelInfo", stride: int | None = None) -> InferenceMode:
    """An exported model's windows: its fixed input size (height x width), 2/3 stride by default."""
    height, width = info.input_size
    return default_inference_mode(height, info.patch_size, "slide", None, stride, crop_width=width)


def predict_logits(model: Model, images: Array, mode: InferenceMode) -> Array:
    """(B, 3, H, W) float images -> (B, K, H, W) logits."""
    if mode.mode == "whole":
        return _whole(model, images, mode.multiple)
    return _slide(model, images, mode.window, mode.stride, mode.window_batch)


def resize_scores(scores: Array, size: tuple[int, int]) -> Array:
    """(B, K, h, w) scores -> (B, K, *size), bilinear: predictions on an image resized for
    inference are scored against its label at full resolution (as mmseg does). Numpy arrays are
    resized by OpenCV, whose bilinear rule (pixel centres, no antialiasing) is torch's with
    align_corners=False."""
    size = (int(size[0]), int(size[1]))
    if tuple(scores.shape[-2:]) == size:
        return scores
    if isinstance(scores, np.ndarray):
        import cv2

        batch, classes, height, width = scores.shape
        planes = np.ascontiguousarray(scores.reshape(batch * classes, height, width).transpose(1, 2, 0), np.float32)
        # OpenCV resizes at most 512 channels at once.
        resized = np.concatenate([cv2.resize(planes[..., i:i + 512], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                                  .reshape(size[0], size[1], -1) for i in range(0, planes.shape[-1], 512)], axis=-1)
        return resized.transpose(2, 0, 1).reshape(batch, classes, *size)
    import torch.nn.functional as F

    return F.interpolate(scores.float(), size=size, mode="bilinear", align_corners=False)


def _pad_to(images: Array, height: int, width: int) -> Array:
    if isinstance(images, np.ndarray):
        return np.pad(images, ((0, 0), (0, 0), (0, height - images.shape[-2]), (0, width - images.shape[-1])))
    import torch.nn.functional as F

    return F.pad(images, (0, width - images.shape[-1], 0, height - images.shape[-2]))


def _concatenate(parts: list) -> Array:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def _zeros_like(like: Array, shape: tuple[int, ...]) -> Array:
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=like.dtype)
    import torch

    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _whole(model: Model, images: Array, multiple: int) -> Array:
    height, width = images.shape[-2:]
    padded = _pad_to(images, math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple)
    return model(padded)[..., :height, :width]


def _window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering 0..length; the last window is shifted back to end at the border."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    starts.append(length - crop)
    return starts


def _slide(model: Model, images: Array, window: tuple[int, int], stride: int, window_batch: int = 1) -> Array:
    height, width = images.shape[-2:]
    crop_h, crop_w = window
    # Images smaller than a window are padded (zeros, as mmseg) and the padding cropped away after.
    padded = _pad_to(images, max(height, crop_h), max(width, crop_w))
    padded_height, padded_width = padded.shape[-2:]
    boxes = [(top, left) for top in _window_starts(padded_height, crop_h, stride)
             for left in _window_starts(padded_width, crop_w, stride)]
    batch = images.shape[0]
    logits_sum = counts = None
    for first in range(0, len(boxes), window_batch):
        chunk = boxes[first:first + window_batch]
        crops = _concatenate([padded[..., top:top + crop_h, left:left + crop_w] for top, left in chunk])
        chunk_logits = model(crops)  # (len(chunk) * B, K, crop_h, crop_w), window-major
        if logits_sum is None:
            logits_sum = _zeros_like(chunk_logits, (batch, chunk_logits.shape[1], padded_height, padded_width))
            counts = _zeros_like(chunk_logits, (1, 1, padded_height, padded_width))
        for index, (top, left) in enumerate(chunk):
            logits_sum[..., top:top + crop_h, left:left + crop_w] += chunk_logits[index * batch:(index + 1) * batch]
            counts[..., top:top + crop_h, left:left + crop_w] += 1
    return (logits_sum / counts)[..., :height, :width]
