"""Dense prediction for images of any size: whole-image or sliding-window.

Both return logits at the image's own resolution, so labels are scored at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from gkd_deploy.errors import ConfigError

Model = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) -> (B, K, H, W)


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


def predict_logits(model: Model, images: torch.Tensor, mode: InferenceMode) -> torch.Tensor:
    """(B, 3, H, W) float images -> (B, K, H, W) logits."""
    if mode.mode == "whole":
        return _whole(model, images, mode.multiple)
    return _slide(model, images, mode.window, mode.stride, mode.window_batch)


def resize_scores(scores: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(B, K, h, w) scores -> (B, K, *size), bilinear: predictions on an image resized for
    inference are scored against its label at full resolution (as mmseg does)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.float(), size=tuple(size), mode="bilinear", align_corners=False)


def _pad_to(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.pad(images, (0, width - images.shape[-1], 0, height - images.shape[-2]))


def _whole(model: Model, images: torch.Tensor, multiple: int) -> torch.Tensor:
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


def _slide(model: Model, images: torch.Tensor, window: tuple[int, int], stride: int, window_batch: int = 1) -> torch.Tensor:
    height, width = images.shape[-2:]
    crop_h, crop_w = window
    # Images smaller than a window are padded (zeros, as mmseg) and the padding cropped away after.
    padded = _pad_to(images, max(height, crop_h), max(width, crop_w))
    padded_height, padded_width = padded.shape[-2:]
    boxes = [(top, left) for top in _window_starts(padded_height, crop_h, stride)
             for left in _window_starts(padded_width, crop_w, stride)]
    batch = images.shape[0]
    logits_sum = None
    counts = torch.zeros(1, 1, padded_height, padded_width)
    for first in range(0, len(boxes), window_batch):
        chunk = boxes[first:first + window_batch]
        crops = torch.cat([padded[..., top:top + crop_h, left:left + crop_w] for top, left in chunk])
        chunk_logits = model(crops)  # (len(chunk) * B, K, crop_h, crop_w), window-major
        if logits_sum is None:
            logits_sum = torch.zeros(batch, chunk_logits.shape[1], padded_height, padded_width,
                                     dtype=chunk_logits.dtype, device=chunk_logits.device)
        for index, (top, left) in enumerate(chunk):
            logits_sum[..., top:top + crop_h, left:left + crop_w] += chunk_logits[index * batch:(index + 1) * batch]
            counts[..., top:top + crop_h, left:left + crop_w] += 1
    return (logits_sum / counts.to(logits_sum.device))[..., :height, :width]
