"""3-D drawing primitives on top of the rasteriser. Everything scene-specific (what a car or a
tree looks like) lives elsewhere.

Two ways to draw, chosen by size:
- Plane draws (`face`, `plane_layers`, `prism`): exact per-pixel depth of a planar surface,
  for the big things whose depth varies across the image (ground, facades, walls, fences).
  `plane_layers` draws a surface and everything printed on it (windows, markings) in one call.
- `Sprite`: the parts of one compact object (a person, a tree, a vehicle) painted far-to-near in
  one call at a single depth. The z-buffer then treats the object as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .camera import clip_near, newell_normal
from .raster import Canvas, Gradient, Layer, Plane

UP = np.array([0.0, 1.0, 0.0])

# A polygon group for `plane_layers`: (polygons (N, K, 3) or a list of (K_i, 3), colour, label, glow).
Group = tuple[object, Sequence[float], "int | None", float]


def ground_quad(x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
    """(4, 3) a horizontal rectangle at height `y`."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], np.float64)


def wall_quad(x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
    """(4, 3) a vertical rectangle in the plane x = const (parallel to the street)."""
    return np.array([[x, y0, z0], [x, y0, z1], [x, y1, z1], [x, y1, z0]], np.float64)


def front_quad(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """(4, 3) a vertical rectangle in the plane z = const (facing the camera)."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], np.float64)


def circle(radius: float, n: int = 16, cx: float = 0.0, cy: float = 0.0, sx: float = 1.0) -> np.ndarray:
    """(n, 2) points on a circle (an ellipse when `sx` != 1)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + sx * radius * np.cos(t), cy + radius * np.sin(t)])


def facing(canvas: Canvas, normal: Sequence[float], point: Sequence[float]) -> bool:
    """Whether a face with this outward normal through `point` is turned towards the camera."""
    return float(np.dot(normal, canvas.camera.position - np.asarray(point))) > 0


# -- plane draws --------------------------------------------------------------------------------


def _project_tagged(canvas: Canvas, groups: Sequence) -> dict[int, list[np.ndarray]]:
    """Project several groups of world polygons at once -> {group index: pixel shapes}.

    Polygons are stacked by vertex count and projected in one vectorised step per count
    (numpy's per-call overhead, not arithmetic, dominates at these sizes); the few that
    cross the near plane (ground and facades running past the camera) are clipped one by one.
    """
    cam = canvas.camera
    by_count: dict[int, tuple[list, list]] = {}
    for tag, polys in enumerate(groups):
        if isinstance(polys, np.ndarray) and polys.ndim == 3:
            chunks = [polys] if len(polys) else []
        else:
            chunks = [np.asarray(p, np.float64)[None] for p in polys]
        for c in chunks:
            arrays, tags = by_count.setdefault(c.shape[1], ([], []))
            arrays.append(c)
            tags.append(np.full(len(c), tag))
    out: dict[int, list[np.ndarray]] = {}
    for arrays, tags in by_count.values():
        batch, tag = np.concatenate(arrays), np.concatenate(tags)
        in_front = batch[..., 2] - cam.z > cam.near
        ahead = in_front.all(axis=1)
        uv = cam.project(batch[ahead])
        on = (uv[..., 0].max(1) >= 0) & (uv[..., 0].min(1) < cam.width) & (uv[..., 1].max(1) >= 0) & (uv[..., 1].min(1) < cam.height)
        uv, kept = uv[on], tag[ahead][on]
        for t in np.unique(kept):
            out.setdefault(int(t), []).append(uv[kept == t])  # one (M, K, 2) stack per group
        crossing = ~ahead & in_front.any(axis=1)  # wholly behind the camera: dropped
        for p, t in zip(batch[crossing], tag[crossing]):
            clipped = clip_near(p, cam)
            if len(clipped) >= 3:
                out.setdefault(int(t), []).append(cam.project(clipped))
    return out


def plane_layers(
    canvas: Canvas,
    normal: Sequence[float],
    groups: Sequence[Group],
    *,
    mode: str = "decal",
    shade: bool = False,
    **kw,
) -> None:
    """Draw groups of coplanar world polygons in one rasteriser call, later groups on top.

    Each group is (polygons, colour, label, glow). `mode="solid"` draws a surface (its first
    group) together with what is printed on it; `mode="decal"` prints onto a surface drawn
    before. `shade` scales the colours by the canvas lighting for this normal.
    """
    anchor = _first_point(groups)
    if anchor is None:
        return
    n = np.asarray(normal, np.float64)
    gain = canvas.shade(n if facing(canvas, n, anchor) else -n) if shade else 1.0
    shapes = _project_tagged(canvas, [g[0] for g in groups])
    layers = [Layer(polys=shapes[i], colour=np.asarray(colour, np.float32) * gain, label=label, emit=glow)
              for i, (_, colour, label, glow) in enumerate(groups) if i in shapes]
    if layers:
        canvas.draw_layers(layers, depth=Plane(n, anchor), mode=mode, **kw)


def _first_point(groups: Sequence[Group]) -> np.ndarray | None:
    for polys, *_ in groups:
        if len(polys):
            return np.asarray(polys[0], np.float64).reshape(-1, 3)[0]
    return None


def face(
    canvas: Canvas,
    pts: np.ndarray,
    colour: Sequence[float],
    label: int | None,
    *,
    mode: str = "solid",
    shade: bool = True,
    normal: np.ndarray | None = None,
    **kw,
) -> None:
    """Draw one planar polygon given as (N, 3) world points (clipped at the near plane).

    The face is two-sided; `shade` scales its colour by the canvas lighting for the side that
    faces the camera.
    """
    pts = np.asarray(pts, np.float64)
    n = newell_normal(pts) if normal is None else np.asarray(normal, np.float64)
    plane_layers(canvas, n, [([pts], colour, label, kw.pop("emit", 0.0))], mode=mode, shade=shade, **kw)


@dataclass(frozen=True)
class Frame:
    """A local frame standing on the ground: origin (x, z) and unit heading (hx, hz), its
    floor `y` metres up (a sidewalk's height).

    Local coordinates are s (along the heading), b (to the heading's right) and y (up).
    """

    x: float
    z: float
    hx: float = 0.0
    hz: float = 1.0
    y: float = 0.0

    @property
    def heading(self) -> np.ndarray:
        return np.array([self.hx, 0.0, self.hz])

    @property
    def lateral(self) -> np.ndarray:
        return np.array([self.hz, 0.0, -self.hx])

    def world(self, s, b, y) -> np.ndarray:
        """Broadcast local (s, b, y) -> (..., 3) world points."""
        s, b = np.asarray(s, np.float64), np.asarray(b, np.float64)
        x = self.x + s * self.hx + b * self.hz
        z = self.z + s * self.hz - b * self.hx
        out = np.empty(np.broadcast_shapes(x.shape, np.shape(y)) + (3,))
        out[..., 0] = x
        out[..., 1] = y + self.y if self.y else y
        out[..., 2] = z
        return out


def prism_faces(cam_pos: np.ndarray, frame: Frame, profile: np.ndarray, b0: float, b1: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The camera-facing faces of a profile extruded sideways, as (name, (K, 3) points, normal).

    profile: (K, 2) polygon in the frame's (s, y) plane (a car seen from the side), extruded
    from b0 to b1. Names: "side" for the flat end caps, "edge<i>" for the band along profile
    edge i. Faces turned away from the camera are culled, so a box yields at most three.
    """
    prof = np.asarray(profile, np.float64)
    if _signed_area(prof) < 0:
        prof = prof[::-1]
    out = []
    for b, sign in ((b1, 1.0), (b0, -1.0)):
        pts = frame.world(prof[:, 0], b, prof[:, 1])
        n = sign * frame.lateral
        if np.dot(n, cam_pos - pts[0]) > 0:
            out.append(("side", pts, n))
    # All bands at once: edge i runs from vertex i to vertex i+1, extruded from b0 to b1.
    a, c = prof, np.roll(prof, -1, axis=0)
    d = c - a
    length = np.hypot(d[:, 0], d[:, 1])
    normals = (d[:, 1:2] * frame.heading - d[:, 0:1] * UP) / np.maximum(length, 1e-12)[:, None]
    s = np.stack([a[:, 0], c[:, 0], c[:, 0], a[:, 0]], axis=1)
    y = np.stack([a[:, 1], c[:, 1], c[:, 1], a[:, 1]], axis=1)
    quads = frame.world(s, np.array([b0, b0, b1, b1]), y)
    visible = (length > 1e-9) & (np.einsum("ij,ij->i", normals, cam_pos - quads[:, 0]) > 0)
    out += [(f"edge{i}", quads[i], normals[i]) for i in np.flatnonzero(visible)]
    return out


def prism(canvas: Canvas, frame: Frame, profile: np.ndarray, b0: float, b1: float, colour, label, *, gradient: Gradient | None = None) -> None:
    """Draw a profile extruded sideways with exact per-face depth (see `prism_faces`)."""
    for _, pts, n in prism_faces(canvas.camera.position, frame, profile, b0, b1):
        face(canvas, pts, colour, label, normal=n, gradient=gradient)


def box(canvas: Canvas, x0, x1, y0, y1, z0, z1, colour, label, **kw) -> None:
    """An axis-aligned box (walls, hedges); only camera-facing faces are drawn."""
    profile = np.array([[z0, y0], [z1, y0], [z1, y1], [z0, y1]])
    prism(canvas, Frame(0.0, 0.0), profile, x0, x1, colour, label, **kw)


def _signed_area(p: np.ndarray) -> float:
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))


def plane_lines(
    canvas: Canvas,
    segments: np.ndarray,
    normal: Sequence[float],
    colour: Sequence[float],
    label: int | None,
    *,
    width: float,
    mode: str = "decal",
    min_px: int = 1,
) -> None:
    """Draw (K, 2, 3) world segments lying in one plane as lines `width` metres thick.

    Line thickness follows each segment's depth (grouped to whole pixels, one layer per
    group), so board seams and pickets thin out along a fence. Segments are clipped at the
    near plane.
    """
    cam = canvas.camera
    seg = np.asarray(segments, np.float64).reshape(-1, 2, 3).copy()
    d = seg[..., 2] - cam.z - cam.near
    keep = np.any(d > 0, axis=1)
    seg, d = seg[keep], d[keep]
    if not len(seg):
        return
    # Slide an endpoint that lies behind the near plane forward onto it.
    for end in (0, 1):
        other = 1 - end
        behind = d[:, end] <= 0
        if behind.any():
            t = (d[behind, other] / (d[behind, other] - d[behind, end]))[:, None] * (1 - 1e-6)
            seg[behind, end] = seg[behind, other] + t * (seg[behind, end] - seg[behind, other])
    mid_depth = seg[..., 2].mean(axis=1) - cam.z
    px = np.maximum(min_px, np.round(width * cam.focal / np.maximum(mid_depth, 1e-3))).astype(int)
    uv = cam.project(seg)
    layers = [Layer(lines=[uv[px == value]], thickness=int(value), colour=colour, label=label) for value in np.unique(px)]
    canvas.draw_layers(layers, depth=Plane(np.asarray(normal, np.float64), seg[0, 0]), mode=mode)


# -- sprites ------------------------------------------------------------------------------------


class Sprite:
    """The parts of one compact object (a person, a tree, a vehicle), drawn in one call.

    Parts are collected in world coordinates with a sort key (their depth), then painted
    far-to-near into a single layered fill at one depth, so the object occludes and is
    occluded as a whole by the z-buffer while its own parts overlap correctly. This is the
    cheap path: one rasteriser call per object instead of one per limb or face.
    """

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.cam = canvas.camera
        self._parts: list[tuple[float, int, Layer]] = []
        self._near = np.inf

    def _add(self, key: float, layer: Layer, near: float) -> None:
        self._parts.append((key, len(self._parts), layer))
        self._near = min(self._near, near)

    def stick(self, segments: np.ndarray, width: float, colour, label: int | None, key: float | None = None) -> None:
        """(K, 2, 3) world segments as round-capped lines `width` metres thick."""
        seg = np.asarray(segments, np.float64).reshape(-1, 2, 3)
        d = seg[..., 2] - self.cam.z
        keep = np.all(d > self.cam.near, axis=1)
        if not keep.any():
            return
        seg, d = seg[keep], d[keep]
        depth = float(d.mean())
        px = max(1, int(round(width * self.cam.focal / depth)))
        self._add(depth if key is None else key, Layer(lines=[self.cam.project(seg)], thickness=px, colour=colour, label=label), float(d.min()))

    def flat(self, polys: Sequence[np.ndarray], origin: Sequence[float], colour, label: int | None) -> None:
        """(N_i, 2) polygons in metres, in the camera-facing plane through `origin`."""
        o = np.asarray(origin, np.float64)
        depth = float(o[2] - self.cam.z)
        if depth < self.cam.near:
            return
        scale = self.cam.focal / depth
        cu = self.cam.cx + (o[0] - self.cam.x) * scale
        cv = self.cam.horizon + (self.cam.elevation - o[1]) * scale
        uv = [np.column_stack([cu + p[:, 0] * scale, cv - p[:, 1] * scale]) for p in polys]
        self._add(depth, Layer(polys=uv, colour=colour, label=label), depth)

    def flats(self, polys: np.ndarray, origins: np.ndarray, colours: np.ndarray, label: int | None) -> None:
        """Many camera-facing shapes at once: (n, K, 2) polygons in metres around (n, 3)
        world origins, each in its own colour (n, 3) — the leaf clusters of a tree."""
        depth = origins[:, 2] - self.cam.z
        keep = depth > self.cam.near
        if not keep.any():
            return
        polys, origins, colours, depth = polys[keep], origins[keep], colours[keep], depth[keep]
        scale = (self.cam.focal / depth)[:, None]
        cu = self.cam.cx + (origins[:, 0:1] - self.cam.x) * scale
        cv = self.cam.horizon + (self.cam.elevation - origins[:, 1:2]) * scale
        uv = np.stack([cu + polys[..., 0] * scale, cv - polys[..., 1] * scale], axis=-1)
        for k in range(len(uv)):
            self._add(float(depth[k]), Layer(polys=[uv[k]], colour=colours[k], label=label), float(depth[k]))

    def disc(self, centre: Sequence[float], radius: float, colour, label: int | None, sx: float = 1.0) -> None:
        """A camera-facing disc (head, lamp, leaf cluster) of `radius` metres."""
        depth = float(centre[2] - self.cam.z)
        if depth < self.cam.near:
            return
        n = int(np.clip(radius * self.cam.focal / depth * 2, 6, 20))
        self.flat([circle(radius, n, sx=sx)], centre, colour, label)

    def polygon(self, pts: np.ndarray, colour, label: int | None, key: float | None = None) -> float | None:
        """A planar (K, 3) world polygon (a vehicle face or a window on it); returns its key.

        The key defaults to the polygon's mean depth; pass a smaller one to paint it later.
        """
        pts = clip_near(np.asarray(pts, np.float64), self.cam)
        if len(pts) < 3:
            return None
        d = pts[:, 2] - self.cam.z
        k = float(d.mean()) if key is None else key
        self._add(k, Layer(polys=[self.cam.project(pts)], colour=colour, label=label), float(d.min()))
        return k

    def hull(self, pts: np.ndarray, colour, label: int | None, key: float) -> bool:
        """The outline (convex hull) of (K, 3) world points, e.g. a wheel's two rims."""
        d = pts[:, 2] - self.cam.z
        if d.min() <= self.cam.near:
            return False
        outline = cv2.convexHull(self.cam.project(pts).astype(np.float32)).reshape(-1, 2).astype(np.float64)
        self._add(key, Layer(polys=[outline], colour=colour, label=label), float(d.min()))
        return True

    def prism(self, frame: Frame, profile: np.ndarray, b0: float, b1: float, colour, label: int | None) -> dict[str, float]:
        """The camera-facing faces of an extruded profile, each shaded; returns name -> key."""
        keys = {}
        for name, pts, n in prism_faces(self.cam.position, frame, profile, b0, b1):
            k = self.polygon(pts, np.asarray(colour) * self.canvas.shade(n), label)
            if k is not None:
                keys[name] = k
        return keys

    def draw(self, depth: str | float = "mean", **kw) -> None:
        """Paint the parts (largest key first) at one depth: "mean" of the parts' keys,
        "near" for the nearest point (vehicles: nothing behind their nose shows through them),
        or a number."""
        if not self._parts:
            return
        parts = sorted(self._parts, key=lambda p: (-p[0], p[1]))
        if depth == "mean":
            d = sum(p[0] for p in parts) / len(parts)
        elif depth == "near":
            d = self._near
        else:
            d = float(depth)
        self.canvas.draw_layers([layer for *_, layer in parts], depth=max(d, self.cam.near), **kw)
        self._parts.clear()
        self._near = np.inf
