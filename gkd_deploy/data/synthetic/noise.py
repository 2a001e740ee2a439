"""Smooth random fields shared by textures and weather (puddles, fog patches, snow cover)."""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, w: int, h: int, cell: int) -> np.ndarray:
    """(h, w) float32 zero-mean unit-variance noise with blobs about `cell` pixels across.

    Drawn at 1/cell resolution and upsampled (bicubic): far cheaper than blurring full-size
    white noise, and the blob size is independent of the image size when `cell` scales with it.
    """
    small = rng.standard_normal((max(h // cell, 2), max(w // cell, 2)), dtype=np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    big -= big.mean()
    return big / (big.std() + 1e-6)


def ground_noise(x: np.ndarray, z: np.ndarray, seed: int, wavelength: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise over the ground, anchored to world (x, z) metres.

    A sum of six plane waves in random directions with wavelengths around `wavelength`: cheap,
    and it stays on the road as the camera drives (snow patches, puddles), unlike image-space
    noise that would slide along with the camera in a video.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(np.shape(x), np.float32)
    for _ in range(6):
        angle = rng.uniform(0, np.pi)
        k = 2 * np.pi / (wavelength * rng.uniform(0.6, 1.6))
        out += np.sin(k * (np.cos(angle) * x + np.sin(angle) * z) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return out / np.sqrt(3.0)  # six unit sines have variance 3
