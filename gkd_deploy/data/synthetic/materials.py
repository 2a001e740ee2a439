"""Colour choices per class. Every instance draws its own colour from a spread, so that a
segmenter cannot learn "this exact grey is road" and has to use shape and context.

Colours are RGB floats in [0, 1]. Each palette lists anchor colours; `pick` takes one and jitters
its brightness and hue a little.
"""

from __future__ import annotations

import numpy as np

ASPHALT = [(0.33, 0.33, 0.35), (0.40, 0.39, 0.40), (0.28, 0.29, 0.31), (0.45, 0.44, 0.43), (0.36, 0.34, 0.33)]
PAVEMENT = [(0.62, 0.60, 0.57), (0.55, 0.53, 0.52), (0.66, 0.56, 0.50), (0.72, 0.70, 0.66), (0.50, 0.50, 0.53)]
CURB = [(0.68, 0.67, 0.65), (0.58, 0.58, 0.58)]
FACADE = [
    (0.80, 0.74, 0.62), (0.86, 0.83, 0.76), (0.62, 0.34, 0.26), (0.58, 0.58, 0.58), (0.90, 0.86, 0.70),
    (0.70, 0.62, 0.52), (0.47, 0.45, 0.47), (0.78, 0.66, 0.58), (0.66, 0.70, 0.72), (0.55, 0.44, 0.36),
    (0.92, 0.90, 0.88), (0.74, 0.55, 0.42),
]
GLASS = [(0.16, 0.19, 0.24), (0.24, 0.29, 0.35), (0.35, 0.42, 0.50), (0.12, 0.13, 0.15), (0.42, 0.45, 0.48)]
WALL = [(0.60, 0.59, 0.57), (0.55, 0.40, 0.33), (0.70, 0.68, 0.62), (0.48, 0.49, 0.50), (0.66, 0.60, 0.52)]
FENCE_WOOD = [(0.47, 0.34, 0.22), (0.56, 0.44, 0.31), (0.38, 0.29, 0.21)]
FENCE_METAL = [(0.30, 0.32, 0.31), (0.18, 0.30, 0.22), (0.55, 0.56, 0.57), (0.15, 0.15, 0.16)]
METAL = [(0.45, 0.46, 0.47), (0.30, 0.31, 0.32), (0.16, 0.24, 0.18), (0.58, 0.58, 0.56), (0.12, 0.12, 0.13)]
LEAF = [(0.22, 0.36, 0.12), (0.30, 0.42, 0.15), (0.16, 0.28, 0.12), (0.38, 0.46, 0.18), (0.20, 0.33, 0.20)]
BARK = [(0.30, 0.23, 0.17), (0.38, 0.31, 0.24), (0.25, 0.21, 0.18)]
GRASS = [(0.42, 0.52, 0.22), (0.50, 0.55, 0.28), (0.36, 0.46, 0.20), (0.55, 0.50, 0.32), (0.48, 0.42, 0.30)]
CAR_PAINT = [
    (0.90, 0.90, 0.90), (0.08, 0.08, 0.09), (0.62, 0.63, 0.65), (0.38, 0.39, 0.41), (0.12, 0.22, 0.45),
    (0.60, 0.10, 0.10), (0.15, 0.30, 0.22), (0.80, 0.78, 0.70), (0.25, 0.38, 0.60), (0.70, 0.45, 0.15),
]
TRUCK_BOX = [(0.92, 0.92, 0.90), (0.75, 0.76, 0.78), (0.20, 0.35, 0.60), (0.70, 0.15, 0.12), (0.90, 0.75, 0.20)]
BUS_PAINT = [(0.90, 0.75, 0.10), (0.15, 0.35, 0.65), (0.75, 0.15, 0.12), (0.90, 0.90, 0.88), (0.20, 0.55, 0.35)]
TRAM_PAINT = [(0.92, 0.92, 0.90), (0.85, 0.15, 0.12), (0.95, 0.80, 0.15), (0.20, 0.40, 0.70)]
SKIN = [(0.87, 0.70, 0.58), (0.75, 0.56, 0.42), (0.55, 0.38, 0.27), (0.36, 0.24, 0.17), (0.92, 0.78, 0.68)]
HAIR = [(0.10, 0.08, 0.06), (0.30, 0.20, 0.12), (0.55, 0.42, 0.25), (0.60, 0.60, 0.60), (0.75, 0.62, 0.40)]
CLOTH = [
    (0.10, 0.10, 0.12), (0.20, 0.25, 0.40), (0.55, 0.10, 0.12), (0.85, 0.85, 0.82), (0.35, 0.40, 0.30),
    (0.60, 0.55, 0.45), (0.25, 0.25, 0.28), (0.75, 0.55, 0.20), (0.30, 0.45, 0.65), (0.50, 0.20, 0.45),
]
TROUSERS = [(0.10, 0.12, 0.20), (0.15, 0.15, 0.16), (0.35, 0.33, 0.30), (0.25, 0.30, 0.45), (0.55, 0.50, 0.40)]
BIKE_FRAME = [(0.75, 0.10, 0.10), (0.10, 0.10, 0.12), (0.20, 0.35, 0.70), (0.85, 0.85, 0.85), (0.20, 0.55, 0.30)]


def pick(rng: np.random.Generator, palette: list[tuple[float, float, float]], spread: float = 0.08) -> tuple[float, float, float]:
    """One colour from `palette`, with brightness jitter and a small per-channel tint.

    Plain Python arithmetic on one draw of five numbers: a scene picks a couple of hundred
    colours, and numpy's per-call overhead would dominate.
    """
    r = rng.random(5).tolist()
    base = palette[min(int(r[0] * len(palette)), len(palette) - 1)]
    gain = 1.0 + (2.0 * r[1] - 1.0) * spread * 2.0
    return tuple(min(1.0, max(0.0, c * gain * (1.0 + (2.0 * t - 1.0) * spread * 0.5))) for c, t in zip(base, r[2:]))


def vary(rng: np.random.Generator, colour, spread: float = 0.06) -> np.ndarray:
    """A slightly different shade of `colour` (a neighbouring window, a second leaf cluster)."""
    return np.clip(np.asarray(colour) * (1.0 + rng.uniform(-spread, spread)) * (1.0 + rng.uniform(-spread, spread, 3) * 0.4), 0.0, 1.0)
