"""PyTorch predictors: a run folder or segmenter checkpoint, semantic or instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gkd_deploy.devices import resolve_device
from gkd_deploy.models.checkpoint import load_instance_segmenter, load_segmenter
from gkd_deploy.run import resolve_checkpoint
from gkd_deploy.runtime.base import ModelInfo, no_label_map


class TorchPredictor:
    def __init__(self, path: str | Path, device: str = "auto") -> None:
        checkpoint, _ = resolve_checkpoint(path)
        self.device = resolve_device(device)
        self.model = load_segmenter(checkpoint).to(self.device).eval()
        self.checkpoint = checkpoint
        self.info = ModelInfo(class_set=self.model.class_set, input_size=None, precision="fp32", backend="torch",
                              source=str(checkpoint), patch_size=self.model.config.patch_size,
                              outputs=("scores", "labels"))

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.forward(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).cpu().numpy()

    @torch.inference_mode()
    def labels(self, images: np.ndarray) -> np.ndarray:
        scores = self.forward(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        return scores.argmax(1).to(torch.uint8).cpu().numpy()  # on the model's device: only labels come back

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The same on torch tensors, which stay on the model's device (training-time evaluation)."""
        return self.model(images.to(self.device, non_blocking=True).float())


class TorchInstancePredictor:
    """An instance segmenter checkpoint: numpy images of any size (multiples of the patch) in, the
    K instances of every image out (`InstanceSegmenter.predict`)."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        checkpoint, _ = resolve_checkpoint(path)
        self.device = resolve_device(device)
        self.model = load_instance_segmenter(checkpoint).to(self.device).eval()
        self.checkpoint = checkpoint
        self.info = ModelInfo(class_set=self.model.class_set, input_size=None, precision="fp32", backend="torch",
                              source=str(checkpoint), patch_size=self.model.config.patch_size,
                              outputs=("masks", "classes", "scores"), task="instance")

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        return tuple(t.cpu().numpy() for t in self.model.predict(batch))

    def labels(self, images: np.ndarray) -> np.ndarray:
        raise no_label_map(self.info)
