"""The pinhole camera of the synthetic street scenes.

World frame: x to the right, y up (metres above the road surface), z forward along the street.
The camera looks straight down +z with no pitch or roll (a forward-facing dash camera), so the
horizon is one image row and a point's depth is simply how far ahead of the camera it lies.
Every drawing function goes through `Camera.project`; styles use `Camera.unproject` to turn the
depth map back into world positions (street lights, wet-road reflections, snow tyre tracks).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Intrinsics and position. `focal`, `cx`, `horizon` are in pixels; the rest in metres."""

    width: int
    height: int
    focal: float
    cx: float
    horizon: float
    elevation: float
    x: float = 0.0
    z: float = 0.0
    near: float = 0.4

    @cached_property
    def position(self) -> np.ndarray:
        """(3,) the optical centre in world coordinates (do not modify)."""
        return np.array([self.x, self.elevation, self.z])

    def moved(self, dz: float) -> Camera:
        """The same camera `dz` metres further along the street (for video frames)."""
        return replace(self, z=self.z + dz)

    def depth(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (...) depth along the optical axis."""
        return pts[..., 2] - self.z

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points in front of the near plane -> (..., 2) pixel (u, v)."""
        scale = self.focal / (pts[..., 2] - self.z)
        out = np.empty(pts.shape[:-1] + (2,))
        out[..., 0] = self.cx + (pts[..., 0] - self.x) * scale
        out[..., 1] = self.horizon + (self.elevation - pts[..., 1]) * scale
        return out

    def ray_slopes(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel columns (W',) and rows (H',) -> the ray direction (rx, ry, 1) components.

        A pixel's ray is (rx, ry, 1): the world offset per metre of depth.
        """
        rx = (cols - self.cx) / self.focal
        ry = (self.horizon - rows) / self.focal
        return rx, ry

    def plane_depth(self, normal: np.ndarray, point: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per-pixel depth of a world plane over a pixel block -> (len(rows), len(cols)) float32.

        Solves n . (c + d * r - p) = 0 for d; pixels whose ray misses the plane get +inf.
        """
        rx, ry = self.ray_slopes(cols, rows)
        num = np.float32(np.dot(normal, np.asarray(point) - self.position))
        denom = np.float32(normal[0]) * rx[None, :] + (np.float32(normal[1]) * ry[:, None] + np.float32(normal[2]))
        with np.errstate(divide="ignore", invalid="ignore"):
            d = num / denom
        return np.where(d > 0, d, np.float32(np.inf))  # NaN and rays that miss -> never drawn

    def unproject(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H, W) depth map -> world x, y, z maps, each (H, W) float32 (inf where depth is)."""
        rx, ry = self.ray_slopes(np.arange(self.width, dtype=np.float32), np.arange(self.height, dtype=np.float32))
        x = self.x + depth * rx[None, :]
        y = self.elevation + depth * ry[:, None]
        z = self.z + depth
        return x.astype(np.float32), y.astype(np.float32), z.astype(np.float32)

    def distance(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) depth along the axis -> (H, W) float32 distance from the camera (inf stays inf)."""
        rx, ry = self.ray_slopes(np.arange(self.width, dtype=np.float32), np.arange(self.height, dtype=np.float32))
        return (depth * np.sqrt(1.0 + rx[None, :] ** 2 + ry[:, None] ** 2)).astype(np.float32)


def clip_near(pts: np.ndarray, cam: Camera) -> np.ndarray:
    """Clip a (N, 3) planar polygon to the part at least `cam.near` ahead of the camera.

    Sutherland-Hodgman against the single plane depth = near, so faces that pass beside or
    behind the camera (video frames, long facades) still project without blowing up.
    Returns (M, 3); M == 0 when the polygon lies entirely behind the near plane.
    """
    d = pts[:, 2] - cam.z - cam.near
    if np.all(d >= 0):
        return pts
    if np.all(d < 0):
        return pts[:0]
    out = []
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        da, db = d[i], d[(i + 1) % n]
        if da >= 0:
            out.append(a)
        if (da >= 0) != (db >= 0):
            t = da / (da - db)
            out.append(a + t * (b - a))
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def newell_normal(pts: np.ndarray) -> np.ndarray:
    """(N, 3) planar polygon -> (3,) unit normal (Newell's method, robust to collinear runs)."""
    nxt = np.roll(pts, -1, axis=0)
    n = np.array([
        np.sum((pts[:, 1] - nxt[:, 1]) * (pts[:, 2] + nxt[:, 2])),
        np.sum((pts[:, 2] - nxt[:, 2]) * (pts[:, 0] + nxt[:, 0])),
        np.sum((pts[:, 0] - nxt[:, 0]) * (pts[:, 1] + nxt[:, 1])),
    ])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n
