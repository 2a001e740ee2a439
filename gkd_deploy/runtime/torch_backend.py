"""PyTorch predictors: a run folder, a segmenter checkpoint (semantic or instance), or a segmenter in memory.

The options are the benchmark's: `precision` (torch autocast, from the precision table) and
`compile` (torch.compile, static shapes). Scores come back in float32 whatever the autocast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from gkd_deploy.devices import resolve_device
from gkd_deploy.models.checkpoint import INSTANCE_FORMAT, checkpoint_format, load_instance_segmenter, load_segmenter
from gkd_deploy.precision import TORCH_PRECISIONS, precision as get_precision
from gkd_deploy.run import resolve_checkpoint
from gkd_deploy.runtime.base import ModelInfo, no_label_map


class TorchPredictor:
    def __init__(self, path: str | Path, device: str = "auto", *, precision: str = "fp32",
                 compile: bool = False) -> None:
        checkpoint, _ = resolve_checkpoint(path)
        target = resolve_device(device)
        self._setup(load_segmenter(checkpoint).to(target).eval(), target, str(checkpoint), precision, compile)
        self.checkpoint = checkpoint

    @classmethod
    def of_model(cls, model: torch.nn.Module, *, source: str = "in memory", precision: str = "fp32") -> "TorchPredictor":
        """A predictor of a segmenter already loaded, on the device its weights are on (the export check);
        the caller puts it in eval mode."""
        predictor = cls.__new__(cls)
        predictor._setup(model, next(model.parameters()).device, source, precision, False)
        predictor.checkpoint = None
        return predictor

    def _setup(self, model: torch.nn.Module, device: torch.device, source: str, precision: str, compile: bool) -> None:
        self.model, self.device = model, device
        self.autocast_dtype = _autocast_dtype(precision)
        self.network = torch.compile(model, dynamic=False) if compile else model
        self.compiled = compile
        self.info = ModelInfo(class_set=model.class_set, input_size=None, precision=precision, backend="torch",
                              source=source, patch_size=model.config.patch_size, outputs=("scores", "labels"))

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.forward(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).cpu().numpy()

    @torch.inference_mode()
    def labels(self, images: np.ndarray) -> np.ndarray:
        scores = self.forward(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        return scores.argmax(1).to(torch.uint8).cpu().numpy()  # on the model's device: only labels come back

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The same on torch tensors, which stay on the model's device (training-time evaluation, the benchmark)."""
        with _autocast(self.device, self.autocast_dtype):
            return self.network(images.to(self.device, non_blocking=True).float()).float()

    def release(self) -> None:
        """Drop compiled graphs with the model (torch.compile keeps them process-wide)."""
        if self.compiled:
            torch._dynamo.reset()


class TorchInstancePredictor:
    """An instance segmenter checkpoint: numpy images of any size (multiples of the patch) in, the
    K instances of every image out (`InstanceSegmenter.predict`). `precision` and `compile` as for
    `TorchPredictor` (the benchmark's options); scores come back in float32."""

    def __init__(self, path: str | Path, device: str = "auto", *, precision: str = "fp32",
                 compile: bool = False) -> None:
        checkpoint, _ = resolve_checkpoint(path)
        target = resolve_device(device)
        self._setup(load_instance_segmenter(checkpoint).to(target).eval(), target, str(checkpoint), precision,
                    compile)
        self.checkpoint = checkpoint

    @classmethod
    def of_model(cls, model: torch.nn.Module, *, source: str = "in memory") -> "TorchInstancePredictor":
        """A predictor of an instance segmenter already loaded, on its weights' device (a teacher
        labelling the pool during training); the caller puts it in eval mode."""
        predictor = cls.__new__(cls)
        predictor._setup(model, next(model.parameters()).device, source)
        predictor.checkpoint = None
        return predictor

    def _setup(self, model: torch.nn.Module, device: torch.device, source: str, precision: str = "fp32",
               compile: bool = False) -> None:
        self.model, self.device = model, device
        self.autocast_dtype = _autocast_dtype(precision)
        # The post-processing (top-k, mask resize) is compiled with the network: what an application runs.
        self.network = torch.compile(model.predict, dynamic=False) if compile else model.predict
        self.compiled = compile
        self.info = ModelInfo(class_set=model.class_set, input_size=None, precision=precision, backend="torch",
                              source=source, patch_size=model.config.patch_size,
                              outputs=("masks", "classes", "scores"), task="instance")

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return tuple(t.cpu().numpy() for t in self.forward(batch))

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same on torch tensors, which stay on the model's device (the benchmark): masks
        (B, K, H, W) bool, classes (B, K) int64, scores (B, K) float32."""
        with _autocast(self.device, self.autocast_dtype):
            masks, classes, scores = self.network(images.to(self.device, non_blocking=True).float())
        return masks, classes, scores.float()

    def labels(self, images: np.ndarray) -> np.ndarray:
        raise no_label_map(self.info)

    def release(self) -> None:
        """Drop compiled graphs with the model (torch.compile keeps them process-wide)."""
        if self.compiled:
            torch._dynamo.reset()


def torch_predictor(path: str | Path, device: str = "auto", *, precision: str = "fp32",
                    compile: bool = False) -> TorchPredictor | TorchInstancePredictor:
    """The predictor of a run folder or checkpoint, by the format the checkpoint declares."""
    checkpoint, _ = resolve_checkpoint(path)
    predictor = TorchInstancePredictor if checkpoint_format(checkpoint) == INSTANCE_FORMAT else TorchPredictor
    return predictor(path, device, precision=precision, compile=compile)


def _autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision of the table (None: plain fp32)."""
    dtype = get_precision(precision, TORCH_PRECISIONS).torch_dtype
    return getattr(torch, dtype) if dtype else None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
