"""A small z-buffered rasteriser: OpenCV fills shapes into a layer mask, numpy computes the
surface depth and the depth test, OpenCV's lookup tables and masked copies write the result.

Scenes are drawn in any order; each pixel keeps the nearest surface, so occlusion between
objects at different depths (a tree in front of a fence in front of a park) comes out right
without sorting. Every draw works on its shapes' bounding box only, which keeps a couple of
hundred draws per image cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .camera import Camera

_SHIFT = 3  # OpenCV fixed-point bits: vertices snap to 1/8 pixel, so thin shapes keep their shape
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Plane:
    """A surface's depth: the world plane through `point` with unit `normal`."""

    normal: np.ndarray
    point: np.ndarray


@dataclass(frozen=True)
class Gradient:
    """Multiply a colour by `low` at world height `y0`, rising linearly to `high` at `y1`."""

    y0: float
    y1: float
    low: float
    high: float


@dataclass
class Layer:
    """Shapes in pixel coordinates that share one colour, label and night glow.

    polys: filled polygons, each (K, 2) or a stack (N, K, 2); lines: polylines likewise,
    `thickness` pixels wide; label None leaves the label map as it is (decals).
    """

    polys: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    thickness: int = 1
    colour: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0)
    label: int | None = None
    emit: float = 0.0


@dataclass(frozen=True)
class Light:
    """A light source for the night style: world position, RGB colour, and strength.

    `size` is the glow radius in metres; `reach` the radius it lights its surroundings in.
    """

    position: tuple[float, float, float]
    colour: tuple[float, float, float]
    size: float = 0.3
    reach: float = 0.0
    strength: float = 1.0


@dataclass
class Canvas:
    """Render targets for one frame.

    rgb (H, W, 3) float32 linear-ish colour in [0, 1]; label (H, W) uint8 train ids;
    depth (H, W) float32 metres ahead of the camera (inf = sky); emit (H, W) float32 how
    brightly a surface glows by itself at night (lit windows). `sun` is the unit direction
    towards the sun used for face shading; `lights` collects night-time light sources.

    objects (H, W) int32 says which object set each pixel's label: every draw that writes a
    label writes `owner` (the number of the object being drawn, 0 for none) to the same
    pixels, so the owner map follows the label map exactly, occlusion included.
    """

    camera: Camera
    sun: np.ndarray = field(default_factory=lambda: np.array([0.5, 0.7, -0.5]))
    lights: list[Light] = field(default_factory=list)
    owner: int = 0

    def __post_init__(self) -> None:
        h, w = self.camera.height, self.camera.width
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.label = np.full((h, w), 255, np.uint8)
        self.objects = np.zeros((h, w), np.int32)
        self.depth = np.full((h, w), np.inf, np.float32)
        self.emit = np.zeros((h, w), np.float32)
        self._cols = np.arange(w, dtype=np.float32)
        self._rows = np.arange(h, dtype=np.float32)

    # -- shading -------------------------------------------------------------------------------

    def shade(self, normal: np.ndarray) -> float:
        """Brightness factor of a face with this unit normal: sky light plus a little sun."""
        sun = max(0.0, float(np.dot(normal, self.sun)))
        return 0.62 + 0.38 * sun + 0.12 * float(normal[1])

    # -- drawing -------------------------------------------------------------------------------

    def draw(
        self,
        polys: Sequence[np.ndarray] = (),
        lines: Sequence[np.ndarray] = (),
        *,
        depth: float | Plane,
        colour: Sequence[float] | np.ndarray,
        label: int | None = None,
        thickness: int = 1,
        mode: str = "solid",
        alpha: float = 1.0,
        gradient: Gradient | None = None,
        emit: float = 0.0,
    ) -> None:
        """Rasterise filled polygons and polylines, each (N, 2) pixel coordinates, in one colour.

        A single-layer `draw_layers`; see there for `depth` and `mode`.
        """
        layer = Layer(list(polys), list(lines), thickness, colour, label, emit)
        self.draw_layers([layer], depth=depth, mode=mode, alpha=alpha, gradient=gradient)

    def draw_layers(
        self,
        layers: Sequence[Layer],
        *,
        depth: float | Plane,
        mode: str = "solid",
        alpha: float = 1.0,
        gradient: Gradient | None = None,
    ) -> None:
        """Rasterise several layers at one depth in a single depth-tested pass.

        Later layers cover earlier ones (painter order inside one small object or one facade),
        while the z-buffer settles occlusion against everything else. Batching matters: most of
        a draw's cost is per call, not per pixel.

        depth: a constant depth in metres or the `Plane` the shapes lie in (exact per pixel).
        mode: "solid" keeps the nearer surface and writes depth/label/colour; "blend" is solid
        but mixes `alpha` of the colour over what was there (see-through mesh fences);
        "decal" paints only onto the surface already at this depth (windows on a facade,
        markings on the road), writing colour and, where a layer has one, label; "multiply"
        is a decal that scales the colour (shadows). Layers' `emit` is the night glow: solid
        draws overwrite it (a tree in front of a lit window hides the glow), decals raise it.
        """
        layers = [la for la in layers if la.polys or la.lines][:255]
        shapes = _Shapes(layers)
        box = shapes.bbox(self.camera.width, self.camera.height, max((la.thickness for la in layers), default=1))
        if box is None:
            return
        x0, y0, x1, y1 = box
        mask = shapes.fill(x0, y0, x1, y1)
        d = self._depth_block(depth, x0, y0, x1, y1)
        zbuf = self.depth[y0:y1, x0:x1]
        if mode in ("solid", "blend"):
            # Strictly nearer by a hair: coplanar surfaces drawn later (the base ground under a
            # road) never overwrite earlier ones through float rounding speckle.
            hit = d < zbuf * np.float32(1.0 - 1e-4)
        else:
            # Decals land only on the surface they were computed for (same depth to rounding);
            # never on the sky (inf - inf is NaN, which compares False).
            with np.errstate(invalid="ignore"):
                hit = np.abs(d - zbuf) <= d * np.float32(5e-4) + np.float32(1e-3)
        hit &= mask > 0
        if not hit.any():
            return
        # Per-layer values spread over the block with lookup tables, then masked in-place
        # copies: OpenCV does both several times faster than numpy's boolean indexing.
        hit8 = hit.view(np.uint8)
        table = _tables(layers)
        col = cv2.LUT(cv2.merge([mask, mask, mask]), table["colour"])
        if gradient is not None:
            col *= self._gradient(gradient, d, y0, y1)[..., None]
        rgb = self.rgb[y0:y1, x0:x1]
        if mode == "blend" or (mode == "decal" and alpha < 1.0):
            col = cv2.addWeighted(col, alpha, rgb, 1.0 - alpha, 0.0)
        elif mode == "multiply":
            col = cv2.multiply(rgb, col)
        elif mode not in ("solid", "decal"):
            raise ValueError(f"unknown draw mode {mode!r}")
        cv2.copyTo(col, hit8, rgb)
        emit = self.emit[y0:y1, x0:x1]
        if mode in ("solid", "blend"):
            cv2.copyTo(d, hit8, zbuf)
            cv2.copyTo(cv2.LUT(mask, table["emit"]), hit8, emit)
        elif table["emit"].any():
            cv2.copyTo(cv2.max(emit, cv2.LUT(mask, table["emit"])), hit8, emit)
        if table["labelled"].any():
            labelled = cv2.bitwise_and(hit8, cv2.LUT(mask, table["labelled"]))
            cv2.copyTo(cv2.LUT(mask, table["label"]), labelled, self.label[y0:y1, x0:x1])
            np.copyto(self.objects[y0:y1, x0:x1], self.owner, where=labelled.view(bool))

    def add_light(self, light: Light) -> None:
        """Record a light source (drawn only by the night style)."""
        self.lights.append(light)

    # -- helpers -------------------------------------------------------------------------------

    def _depth_block(self, depth, x0, y0, x1, y1) -> np.ndarray:
        """(y1-y0, x1-x0) float32 depth of the surface over the block."""
        if isinstance(depth, Plane):
            return self.camera.plane_depth(depth.normal, depth.point, self._cols[x0:x1], self._rows[y0:y1])
        return np.full((y1 - y0, x1 - x0), depth, np.float32)

    def _gradient(self, gradient: Gradient, d: np.ndarray, y0: int, y1: int) -> np.ndarray:
        """Block of brightness factors from each pixel's world height."""
        _, ry = self.camera.ray_slopes(self._cols[:1], self._rows[y0:y1])
        height = self.camera.elevation + d * ry[:, None]
        t = np.clip((height - gradient.y0) / (gradient.y1 - gradient.y0), 0.0, 1.0)
        return (gradient.low + (gradient.high - gradient.low) * t).astype(np.float32)


class _Shapes:
    """All contours of a draw's layers, converted to OpenCV fixed point in one step.

    Converting per contour costs several numpy calls each; a sprite or facade has dozens.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = layers
        self.items = [(value, kind, shape) for value, la in enumerate(layers, start=1)
                      for kind, group in (("poly", la.polys), ("line", la.lines)) for shape in group if shape.size]
        self.points = np.concatenate([shape.reshape(-1, 2) for *_, shape in self.items]) if self.items else np.zeros((0, 2))

    def bbox(self, width: int, height: int, thickness: int) -> tuple[int, int, int, int] | None:
        """Pixel bounding box (x0, y0, x1, y1) of all shapes clipped to the image, or None."""
        if not len(self.points):
            return None
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return None
        pad = thickness / 2 + 1
        x0, y0 = max(int(lo[0] - pad), 0), max(int(lo[1] - pad), 0)
        x1, y1 = min(int(hi[0] + pad) + 2, width), min(int(hi[1] + pad) + 2, height)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def fill(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """(y1-y0, x1-x0) uint8 mask holding, per pixel, 1 + the index of the topmost layer."""
        q = self.points - np.array([x0, y0], np.float64)
        # Vertices far off-screen (a ground edge at the camera's feet) are clamped to a guard
        # band so int32 stays safe; 2e7 px out, that moves a visible edge far less than a pixel.
        if np.abs(q).max() > 2e7:
            np.clip(q, -2e7, 2e7, out=q)
        fixed = np.rint(q * _ONE).astype(np.int32)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        start = 0
        batch: list[np.ndarray] = []
        for i, (value, kind, shape) in enumerate(self.items):
            n = shape.size // 2
            contour = fixed[start:start + n].reshape(shape.shape)
            start += n
            # Contours of one layer and kind are filled in one call; OpenCV takes a stack of
            # same-length contours (N, K, 2) as it is.
            batch.append(contour)
            if i + 1 < len(self.items) and self.items[i + 1][:2] == (value, kind):
                continue
            if len(batch) == 1 and batch[0].ndim == 3:
                contours = batch[0]
            else:
                contours = [c for b in batch for c in (b if b.ndim == 3 else [b])]
            if kind == "poly":
                cv2.fillPoly(mask, contours, value, cv2.LINE_8, _SHIFT)
            else:
                cv2.polylines(mask, contours, False, value, max(1, int(self.layers[value - 1].thickness)), cv2.LINE_8, _SHIFT)
            batch = []
        return mask


def _tables(layers: Sequence[Layer]) -> dict[str, np.ndarray]:
    """256-entry lookup tables from a mask value (layer index + 1) to the layer's colour,
    night glow, label, and whether it sets a label at all."""
    n = len(layers)
    colour = np.zeros((1, 256, 3), np.float32)
    colour[0, 1 : n + 1] = [np.asarray(la.colour, np.float32) for la in layers]
    emit = np.zeros((1, 256), np.float32)
    emit[0, 1 : n + 1] = [la.emit for la in layers]
    label = np.zeros((1, 256), np.uint8)
    labelled = np.zeros((1, 256), np.uint8)
    for i, la in enumerate(layers, start=1):
        if la.label is not None:
            label[0, i], labelled[0, i] = la.label, 1
    return {"colour": colour, "emit": emit, "label": label, "labelled": labelled}
