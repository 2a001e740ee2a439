"""Frames in, label maps at each frame's own size out, for any predictor.

Two ways to fit a frame to the model (the model's metadata gives its input size; normalisation is
inside every model, so preprocessing is only resizing and BGR -> RGB):

- `resize` (default, one model run per frame): the frame is resized to the model's input size
  (an exported model's fixed size; for a PyTorch model `size`, or else the frame's own size rounded
  to the patch size), and the predicted labels are resized back with nearest-neighbour sampling.
- `slide`: windows of the model's input size slide over the frame at its own resolution, scores
  averaged where they overlap: the rule `gkd eval` and `gkd validate` score with (slower, and the
  same numbers as those reports).

An instance model's frames fit the same way in `resize` mode (`instances.InstanceFrameSegmenter`
keeps the grouping and gives each frame its instances instead of labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from gkd_deploy.errors import ConfigError
from gkd_deploy.evaluation.inference import default_inference_mode, predict_logits
from gkd_deploy.infer import MODES
from gkd_deploy.runtime.base import Predictor, labels_of, require_scores

DEFAULT_WINDOW = 512


@dataclass
class SegmentTimes:
    """Seconds spent inside the predictor (the bare model) and around it (resizing, argmax)."""

    model: float = 0.0
    total: float = 0.0


class FrameSegmenter:
    def __init__(self, predictor: Predictor, mode: str = "resize", size: tuple[int, int] | None = None) -> None:
        """`size` is (height, width) of the model input; only a PyTorch model (any size) accepts one
        that differs from its exported size."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        info = predictor.info
        if info.input_size is not None and size is not None and tuple(size) != tuple(info.input_size):
            height, width = info.input_size
            raise ConfigError(f"{info.source} was exported for {width}x{height} input; drop --size, or export "
                              f"another size with `gkd export RUN --size {size[1]}x{size[0]}`")
        self.size = tuple(info.input_size or size) if (info.input_size or size) else None
        if self.size is not None and any(side % info.patch_size for side in self.size):
            raise ConfigError(f"input size {self.size[1]}x{self.size[0]} must be a multiple of the patch size "
                              f"{info.patch_size}")
        self.predictor = predictor
        self.mode = mode
        self.class_set = info.class_set
        self.times = SegmentTimes()
        if mode == "slide":
            require_scores(info, "--mode slide (scores averaged over overlapping windows)")
            height, width = self.size or (DEFAULT_WINDOW, DEFAULT_WINDOW)
            self.window = default_inference_mode(height, info.patch_size, crop_width=width)

    def input_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) the model sees for a frame of (height, width) in resize mode."""
        if self.size is not None:
            return self.size
        patch = self.predictor.info.patch_size
        return tuple(max(patch, round(side / patch) * patch) for side in frame_size)

    def aspect_note(self, frame_width: int, frame_height: int) -> str | None:
        """A hint when `resize` would stretch frames of this size (aspect ratios more than 10% apart)."""
        if self.mode != "resize" or self.size is None:
            return None
        height, width = self.size
        frame_aspect, model_aspect = frame_width / frame_height, width / height
        if max(frame_aspect, model_aspect) / min(frame_aspect, model_aspect) <= 1.1:
            return None
        patch = self.predictor.info.patch_size
        keep_width = max(patch, round(height * frame_aspect / patch) * patch)
        return (f"{frame_width}x{frame_height} frames are stretched to the model's {width}x{height} input; to keep "
                f"their shape export with `gkd export RUN --size {keep_width}x{height}`, or use --mode slide")

    def _predict(self, images: np.ndarray, labels: bool = False) -> np.ndarray:
        """Scores, or labels (the model's labels output where it has one); the time counts as the model's."""
        return self._timed(self.predictor.labels if labels else self.predictor, images)

    def _timed(self, call: Callable[[np.ndarray], Any], images: np.ndarray) -> Any:
        """`call(images)`, its time counted as the model's."""
        started = time.perf_counter()
        result = call(images)
        self.times.model += time.perf_counter() - started
        return result

    def __call__(self, frames: Sequence[np.ndarray]) -> list:
        """BGR uint8 frames -> one prediction per frame, at each frame's size: (H, W) uint8 train-id
        maps here (a subclass gives its own kind, e.g. `FrameInstances`)."""
        started = time.perf_counter()
        if self.mode == "slide":
            predictions = [self._slide(frame) for frame in frames]
        else:
            predictions = self._resize(frames)
        self.times.total += time.perf_counter() - started
        return predictions

    def _resize(self, frames: Sequence[np.ndarray]) -> list:
        # Frames of one size (a video) run as one batch; mixed sizes (a folder of images) group by size.
        predictions: list = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(self.input_size(frame.shape[:2]), []).append(i)
        for (height, width), members in groups.items():
            images = _to_nchw(np.stack([_to_rgb(frames[i], (height, width)) for i in members]))
            for i, prediction in zip(members, self._predict_images(images)):
                predictions[i] = self._fit(prediction, frames[i].shape[:2])
        return predictions

    def _predict_images(self, images: np.ndarray) -> Sequence[np.ndarray]:
        """(B, 3, h, w) model input -> one prediction per image at the model's size: its labels."""
        return self._predict(images, labels=True)

    def _fit(self, labels: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Labels at the model's size -> at the frame's (height, width), nearest neighbour."""
        frame_height, frame_width = frame_size
        if labels.shape != (frame_height, frame_width):
            labels = cv2.resize(labels, (frame_width, frame_height), interpolation=cv2.INTER_NEAREST)
        return labels

    def _slide(self, frame: np.ndarray) -> np.ndarray:
        images = _to_nchw(_to_rgb(frame, None)[None])
        scores = predict_logits(self._predict, images, self.window)
        return labels_of(scores)[0]


def _to_nchw(batch: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, the predictors' input."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def _to_rgb(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is not None and frame.shape[:2] != tuple(size):
        shrink = size[0] * size[1] < frame.shape[0] * frame.shape[1]
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
