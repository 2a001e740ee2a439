"""Rasterise a sampled layout into the clear-weather source image, its label map and depth.

`rasterize(layout, size, t)` draws the sky, every item in view (as it is `t` seconds into a
drive), soft shadows under vehicles and people, the ego-vehicle hood, then adds per-class
texture and a faint distance haze. The result keeps the
depth map, the night-glow map and the light sources that the weather styles need.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..classes import IGNORE_INDEX
from .camera import Camera
from .layout import SceneLayout, SkySpec
from .motion import travelled
from .noise import smooth_noise
from .primitives import UP, plane_layers
from .raster import Canvas, Light
from .street import ID

# Texture strength per label: (pixel grain, small blotches, large blotches), relative.
_TEXTURE = np.zeros((256, 3), np.float32)
_TEXTURE[:] = (0.01, 0.02, 0.02)
for _name, _amp in {
    "road": (0.04, 0.04, 0.035), "sidewalk": (0.035, 0.05, 0.04), "building": (0.025, 0.04, 0.04),
    "wall": (0.035, 0.07, 0.06), "fence": (0.03, 0.05, 0.03), "pole": (0.02, 0.02, 0.03),
    "traffic light": (0.015, 0.02, 0.02), "traffic sign": (0.015, 0.02, 0.03), "vegetation": (0.07, 0.18, 0.1),
    "terrain": (0.06, 0.12, 0.12), "sky": (0.004, 0.01, 0.02), "person": (0.02, 0.04, 0.02),
    "rider": (0.02, 0.04, 0.02), "car": (0.015, 0.02, 0.02), "truck": (0.02, 0.03, 0.02), "bus": (0.015, 0.02, 0.02),
    "train": (0.015, 0.02, 0.02), "motorcycle": (0.02, 0.03, 0.02), "bicycle": (0.02, 0.03, 0.02),
}.items():
    _TEXTURE[ID[_name]] = _amp
_TEXTURE_LUTS = [np.ascontiguousarray(_TEXTURE[None, :, k]) for k in range(3)]  # (1, 256) tables for cv2.LUT


@dataclass
class SceneBuffers:
    """One rendered frame before any weather.

    rgb (H, W, 3) float32 in [0, 1]; label (H, W) uint8 train ids (255 = ego hood);
    depth (H, W) float32 metres along the optical axis (inf = sky); emit (H, W) float32 night
    glow of lit windows and shop fronts; lights: point lights for the night style; objects
    (H, W) int32: 1 + the index in the layout's items of the item whose label each pixel shows
    (0: sky, hood), for the instance maps.
    """

    rgb: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    emit: np.ndarray
    lights: list[Light]
    camera: Camera
    sky: SkySpec
    seed: int
    objects: np.ndarray


def camera_for(layout: SceneLayout, size: tuple[int, int]) -> Camera:
    """The layout's camera for an image of `size` = (width, height)."""
    w, h = size
    spec = layout.camera
    return Camera(width=w, height=h, focal=spec.focal * w, cx=spec.cx * w, horizon=spec.horizon * h, elevation=spec.elevation)


def rasterize(layout: SceneLayout, size: tuple[int, int], t: float = 0.0) -> SceneBuffers:
    """Draw the scene as seen `t` seconds into the drive (see `camera_travel`)."""
    cam = camera_for(layout, size).moved(camera_travel(layout, t))
    canvas = Canvas(cam, sun=np.asarray(layout.sun))
    _sky(canvas, layout.sky, np.random.default_rng([layout.seed, 1]))
    items = [item.at(t) for item in layout.items]
    seen = in_view(cam, np.array([item.bounds() for item in items]))
    visible = [(number, item) for number, (item, in_sight) in enumerate(zip(items, seen), start=1) if in_sight]
    for number, item in visible:
        # Numbered by place in the layout, not among the visible ones: a car keeps its number
        # through a video while others come into view.
        canvas.owner = number
        item.draw(canvas)
    canvas.owner = 0
    _shadows(canvas, [item for _, item in visible])
    if layout.hood is not None:
        _hood(canvas, layout.hood)
    gain = _texture(canvas.label, np.random.default_rng([layout.seed, 2]))
    trans = _haze(canvas.camera, canvas.depth, visibility=np.random.default_rng([layout.seed, 3]).uniform(700, 2000))
    # Both are per-pixel factors: apply them in one pass over the colour buffer.
    canvas.rgb *= (gain * trans)[..., None]
    canvas.rgb += (1.0 - trans)[..., None] * np.asarray(layout.sky.horizon, np.float32)
    np.clip(canvas.rgb, 0.0, 1.0, out=canvas.rgb)
    return SceneBuffers(canvas.rgb, canvas.label, canvas.depth, canvas.emit, canvas.lights, cam, layout.sky, layout.seed,
                        canvas.objects)


def camera_travel(layout: SceneLayout, t: float) -> float:
    """Metres the camera has driven after `t` seconds: cruising at ego_speed, braking to a
    stop at the end junction or behind the car in front (see layout's `_stop_at_the_end`)."""
    return travelled(layout.ego_speed, t, layout.ego_limit)


def in_view(cam: Camera, bounds: np.ndarray) -> np.ndarray:
    """(N, 6) world boxes (x0, x1, y0, y1, z0, z1) -> (N,) bool: may cover a pixel.

    Conservative: corners behind the near plane are pulled onto it, which only widens the
    projected box. Culling here saves drawing the many items behind or beside the camera.
    """
    b = np.asarray(bounds, np.float64).reshape(-1, 6)
    ahead = b[:, 5] - cam.z > cam.near
    z_near = np.maximum(b[:, 4], cam.z + cam.near)
    corners = np.stack(np.broadcast_arrays(
        b[:, [0, 1, 0, 1, 0, 1, 0, 1]], b[:, [2, 2, 3, 3, 2, 2, 3, 3]],
        np.stack([z_near, z_near, z_near, z_near, b[:, 5], b[:, 5], b[:, 5], b[:, 5]], axis=1)), axis=-1)
    corners[..., 2] = np.maximum(corners[..., 2], cam.z + cam.near)
    uv = cam.project(corners)
    return ahead & (uv[..., 0].max(1) >= 0) & (uv[..., 0].min(1) < cam.width) & (uv[..., 1].max(1) >= 0) & (uv[..., 1].min(1) < cam.height)


def _shadows(canvas: Canvas, items: list) -> None:
    """Darken the ground under vehicles and people: one multiply decal per ground height.

    Decals only land where that ground is still visible, so drawing them after everything
    else is right, and batching them saves a rasteriser call per object.
    """
    by_height: dict[float, list[np.ndarray]] = {}
    for item in items:
        if hasattr(item, "footprint"):
            shape = item.footprint()
            by_height.setdefault(round(float(shape[0, 1]), 3), []).append(shape)
    for shapes in by_height.values():
        plane_layers(canvas, UP, [(shapes, (0.5, 0.5, 0.52), None, 0.0)], mode="multiply")


def _sky(canvas: Canvas, sky: SkySpec, rng: np.random.Generator) -> None:
    """Fill every pixel with sky: a zenith-to-horizon gradient with soft clouds.

    Everything here is smooth, so it is computed at a quarter of the size and upsampled.
    """
    cam = canvas.camera
    h, w = cam.height, cam.width
    lw, lh = max(w // 4, 8), max(h // 4, 4)
    rows = (np.arange(lh, dtype=np.float32) + 0.5) * (h / lh)
    t = (np.clip((cam.horizon - rows) / max(cam.horizon, 1.0), 0.0, 1.0) ** 0.6)[:, None, None]
    grad = np.asarray(sky.horizon, np.float32) * (1 - t) + np.asarray(sky.zenith, np.float32) * t
    cover = _cloud_cover(rng, lw, lh, sky.clouds)[..., None]
    fade = np.clip((cam.horizon - rows) / (0.25 * max(cam.horizon, 1.0)), 0.0, 1.0)[:, None, None]  # thin near the horizon
    cloud = (0.95 - 0.12 * cover) * np.array([0.96, 0.96, 0.98], np.float32)  # cloud bellies slightly grey
    small = grad + cover * fade * (cloud - grad)
    canvas.rgb[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    canvas.label[:] = ID["sky"]


def _cloud_cover(rng: np.random.Generator, w: int, h: int, amount: float) -> np.ndarray:
    """(h, w) float32 cloud opacity in [0, 1]: blurred random ellipses."""
    small = np.zeros((h, w), np.float32)
    for _ in range(int(4 + 30 * amount)):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(0.05, 0.25) * w), int(rng.uniform(0.03, 0.12) * h) + 1)
        cv2.ellipse(small, centre, axes, 0, 0, 360, float(rng.uniform(0.3, 1.0)), -1)
    small = cv2.GaussianBlur(small, (0, 0), max(w / 40, 1.0))
    return np.clip(small * (rng.uniform(0.6, 1.0) * min(1.0, 0.3 + amount)), 0.0, 1.0)


def _hood(canvas: Canvas, fraction: float) -> None:
    """The ego car's bonnet across the bottom of the frame, ignored (255) as in Cityscapes."""
    cam = canvas.camera
    w, h = cam.width, cam.height
    u = np.linspace(-2, w + 2, 33)
    top = h - fraction * h * (1.0 - 0.45 * ((u - cam.cx) / (w / 2)) ** 2)
    poly = np.concatenate([np.column_stack([u, top]), [[w + 2, h + 2], [-2, h + 2]]])
    canvas.draw(polys=[poly], depth=0.6, colour=(0.12, 0.13, 0.15), label=IGNORE_INDEX)
    # A soft reflection band along the bonnet's edge.
    canvas.draw(polys=[np.concatenate([np.column_stack([u, top]), np.column_stack([u[::-1], top[::-1] + 0.25 * fraction * h])])],
                depth=0.6, colour=(1.6, 1.6, 1.7), mode="multiply")


def _texture(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 brightness factors: per-class grain and blotches, so no class is one
    flat colour."""
    h, w = label.shape
    fine = rng.standard_normal((h, w), dtype=np.float32)
    mid = smooth_noise(rng, w, h, 2)
    low = smooth_noise(rng, w, h, max(w // 48, 4))
    grain, blotch, patch = (cv2.LUT(label, table) for table in _TEXTURE_LUTS)
    return 1.0 + grain * fine + blotch * mid + patch * low


def _haze(cam: Camera, depth: np.ndarray, visibility: float) -> np.ndarray:
    """(H, W) float32 transmission of clear air: far surfaces fade slightly towards the
    horizon sky colour (aerial perspective); the sky itself stays as drawn."""
    dist = cam.distance(depth)
    return np.exp(np.where(np.isfinite(dist), np.float32(-3.0 / visibility) * dist, np.float32(0.0)))
