"""Weather and lighting styles: "clear" is the source domain, the others shifted targets.

Every style works on a rendered clear frame (`SceneBuffers`) and uses its depth map, labels and
lights, never the label map's values as an output: the labels stay exactly as rendered.

- fog: atmospheric scattering, I = J t + A (1 - t) with t = exp(-beta * distance), patchy beta.
- night: dark blue-ish ambient light, street lights, head/tail lights and lit windows that light
  their surroundings and glow, the ego car's headlight beam, sensor noise.
- rain: darker and flatter, light haze, wet roads that mirror what stands on them, puddles,
  rain streaks.
- snow: snow on upward-facing ground and on the top edges of things, speckled trees, grey-white
  sky, haze, falling flakes, lower saturation.
- random: no weather at all; a random camera look per scene (white balance, exposure, contrast,
  saturation, gamma, a hue turn). The proxy set of stage 1 is rendered in it: generic images
  that carry none of the target conditions.

Parameters that define the look (fog density, how dark the night is) are drawn once per scene
(`sample_style`), per-frame randomness (noise, rain streaks, flakes) from a separate generator,
so video frames share one look while their precipitation moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .noise import ground_noise, smooth_noise
from .scene import SceneBuffers
from .street import ID

STYLES = ("clear", "fog", "night", "rain", "snow", "random")
SOURCE_STYLE = "clear"
TARGET_STYLES = ("fog", "night", "rain", "snow")
PROXY_STYLE = "random"

_GROUND = np.zeros(256, bool)
_GROUND[[ID["road"], ID["sidewalk"], ID["terrain"]]] = True
_WET = np.zeros(256, bool)
_WET[[ID["road"], ID["sidewalk"]]] = True
# Classes that collect a cap of snow on their top edges.
_CAPPED = np.zeros(256, bool)
_CAPPED[[ID[n] for n in ("building", "wall", "fence", "traffic light", "traffic sign", "vegetation", "car", "truck", "bus", "train")]] = True


@dataclass(frozen=True)
class StyleParams:
    """One scene's look for a style: a dict of named numbers, plus a seed for fixed patterns."""

    style: str
    values: dict
    seed: int

    def __getitem__(self, key: str):
        return self.values[key]


def sample_style(style: str, rng: np.random.Generator) -> StyleParams:
    """Draw the look of `style` for one scene (or one whole video)."""
    u = rng.uniform
    values = {
        "clear": lambda: {"exposure": u(0.92, 1.08)},
        "fog": lambda: {"visibility": u(35, 110), "airlight": u(0.68, 0.86), "blue": u(0.0, 0.05), "patchiness": u(0.1, 0.35)},
        "night": lambda: {"ambient": u(0.035, 0.08), "noise": u(0.012, 0.03), "window": u(0.55, 0.9), "headlights": bool(rng.random() < 0.85)},
        "rain": lambda: {"darken": u(0.55, 0.75), "flatten": u(0.2, 0.4), "visibility": u(150, 400), "wet": u(0.5, 1.0),
                         "puddles": u(0.2, 0.6), "streaks": u(0.6, 1.4), "angle": u(-0.25, 0.25)},
        "snow": lambda: {"cover": u(0.65, 1.0), "visibility": u(90, 300), "flakes": u(0.5, 1.5), "saturation": u(0.45, 0.7),
                         "sky": u(0.78, 0.9)},
        "random": lambda: {"gains": tuple(u(0.75, 1.25, 3)), "exposure": u(0.8, 1.25), "contrast": u(0.7, 1.3),
                           "saturation": u(0.5, 1.5), "gamma": u(0.75, 1.35), "hue": u(-0.12, 0.12)},
    }
    if style not in values:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    return StyleParams(style, values[style](), int(rng.integers(2**31)))


def apply_style(buf: SceneBuffers, params: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Clear frame -> (H, W, 3) uint8 RGB in the style; `rng` drives per-frame randomness."""
    rgb = buf.rgb.copy()
    if params.style == "clear":
        rgb *= params["exposure"]
    else:
        rgb = {"fog": _fog, "night": _night, "rain": _rain, "snow": _snow, "random": _random_look}[params.style](
            buf, rgb, params, rng)
    return _finish(rgb, rng, noise=0.006 if params.style != "night" else 0.0)


def _finish(rgb: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Camera optics and sensor: a touch of blur and noise, then 8-bit quantisation."""
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.55)
    if noise > 0:
        rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(noise)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


# -- random (the proxy set) ---------------------------------------------------------------------


def _random_look(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """A camera's colour rendering, drawn per scene: white balance, exposure, contrast around the
    mean, saturation, gamma, and a turn of the hue circle (a fraction of a full turn)."""
    rgb = np.clip(rgb * np.asarray(p["gains"], np.float32) * np.float32(p["exposure"]), 0.0, 1.0)
    mean = rgb.mean()
    rgb = np.clip(mean + p["contrast"] * (rgb - mean), 0.0, 1.0)
    grey = rgb.mean(axis=2, keepdims=True)
    rgb = np.clip(grey + p["saturation"] * (rgb - grey), 0.0, 1.0) ** np.float32(p["gamma"])
    hsv = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2HSV)  # float input: hue in degrees
    hsv[..., 0] = (hsv[..., 0] + 360.0 * p["hue"]) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# -- fog ----------------------------------------------------------------------------------------


def _fog(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Koschmieder's law with a patchy extinction coefficient; distant detail also blurs."""
    h, w = buf.label.shape
    beta = 3.0 / p["visibility"]  # transmission falls to 5 % at the visibility distance
    patches = 1.0 + p["patchiness"] * smooth_noise(np.random.default_rng(p.seed), w, h, max(w // 8, 4))
    dist = buf.camera.distance(buf.depth)
    t = np.exp(-beta * np.clip(patches, 0.3, None) * np.where(np.isfinite(dist), dist, 1e4))[..., None]
    airlight = np.array([p["airlight"] - p["blue"], p["airlight"], p["airlight"] + p["blue"]], np.float32)
    # Light scattered in fog also softens what is left of the far scene before it fades.
    soft = (1.0 - t) * 0.6
    base = rgb * (1 - soft) + cv2.GaussianBlur(rgb, (0, 0), 1.5) * soft
    return base * t + airlight * (1.0 - t)


# -- night --------------------------------------------------------------------------------------


def _night(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Surfaces lit by a dim blue ambient plus every light source, then glows and noise."""
    h, w = buf.label.shape
    cam = buf.camera
    solid = np.isfinite(buf.depth)
    light = np.empty((h, w, 3), np.float32)
    light[:] = p["ambient"] * np.array([0.65, 0.8, 1.25], np.float32)
    x, y, z = cam.unproject(np.where(solid, buf.depth, 0.0).astype(np.float32))
    glow = np.zeros((h, w, 3), np.float32)
    for lamp in buf.lights:
        colour = np.asarray(lamp.colour, np.float32)
        _illuminate(light, x, y, z, solid, cam, lamp, colour)
        _glow_spot(glow, buf, lamp, colour)
    if p["headlights"]:
        _ego_beam(light, x, z, solid, cam)
    out = rgb * light
    windows = buf.emit[..., None] * np.array([1.0, 0.78, 0.45], np.float32) * p["window"]
    out = out * (1 - np.clip(buf.emit, 0, 1)[..., None]) + windows
    out = np.where(solid[..., None], out, _night_sky(buf, rgb))
    out += cv2.GaussianBlur(glow, (0, 0), max(0.8, w / 640)) + 0.45 * cv2.GaussianBlur(glow, (0, 0), max(4.0, w / 90))
    # Sensor noise: dark frames are pushed hard, so noise shows, most in the shadows' blue.
    sigma = p["noise"] * (0.6 + 0.8 * np.sqrt(np.clip(out, 0, 1)))
    out = out + rng.standard_normal(out.shape, dtype=np.float32) * sigma * np.array([0.9, 1.0, 1.3], np.float32)
    return out


def _illuminate(light, x, y, z, solid, cam, lamp, colour) -> None:
    """Add one point light's falloff (zero beyond `reach`) inside its projected footprint."""
    if lamp.reach <= 0:
        return
    px, py, pz = lamp.position
    d = pz - cam.z
    if d + lamp.reach <= cam.near:
        return
    # Screen box of the sphere of influence (clamped where it reaches behind the camera).
    d_near = max(d - lamp.reach, cam.near)
    half = cam.focal * lamp.reach / d_near
    u, v = cam.project(np.array([[px, py, max(pz, cam.z + d_near)]]))[0]
    x0, x1 = int(max(u - half, 0)), int(min(u + half + 1, cam.width))
    y0, y1 = int(max(v - half, 0)), int(min(v + half + 1, cam.height))
    if x0 >= x1 or y0 >= y1:
        return
    sl = (slice(y0, y1), slice(x0, x1))
    dist = np.sqrt((x[sl] - px) ** 2 + (y[sl] - py) ** 2 + (z[sl] - pz) ** 2)
    fall = lamp.strength * np.clip(1.0 - dist / lamp.reach, 0.0, 1.0) ** 2 * solid[sl]
    light[sl] += fall[..., None] * colour


def _glow_spot(glow: np.ndarray, buf: SceneBuffers, lamp, colour) -> None:
    """The light source itself, if nothing stands in front of it: a bright dot to be bloomed."""
    cam = buf.camera
    d = lamp.position[2] - cam.z
    if d <= cam.near:
        return
    u, v = cam.project(np.asarray(lamp.position, np.float64)[None])[0]
    iu, iv = int(round(u)), int(round(v))
    if not (0 <= iu < cam.width and 0 <= iv < cam.height) or buf.depth[iv, iu] < d - 0.5:
        return
    r = max(1, int(round(lamp.size * cam.focal / d)))
    cv2.circle(glow, (iu, iv), r, tuple(float(c) * lamp.strength * 1.5 for c in colour), -1, cv2.LINE_AA)


def _ego_beam(light, x, z, solid, cam) -> None:
    """The ego car's low beams: a widening, fading pool of warm light ahead."""
    ahead = z - cam.z
    lateral = x - cam.x
    beam = np.exp(-(lateral / (1.0 + 0.12 * ahead)) ** 2) * np.clip((ahead - 3.0) / 4.0, 0, 1) / (1.0 + (ahead / 22.0) ** 2)
    light += (0.9 * beam * solid)[..., None] * np.array([1.0, 0.95, 0.85], np.float32)


def _night_sky(buf: SceneBuffers, rgb: np.ndarray) -> np.ndarray:
    """Near-black blue sky with an orange city glow at the horizon and faint clouds."""
    h = buf.label.shape[0]
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    t = np.clip((buf.camera.horizon - rows) / max(buf.camera.horizon, 1.0), 0, 1)
    zenith, horizon = np.array([0.01, 0.015, 0.04], np.float32), np.array([0.1, 0.07, 0.06], np.float32)
    return horizon + (zenith - horizon) * t ** 0.5 + 0.04 * rgb


# -- rain ---------------------------------------------------------------------------------------


def _rain(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Grey overcast light, wet mirroring ground, puddles and streaks."""
    solid = np.isfinite(buf.depth)
    grey = np.array([0.5, 0.53, 0.57], np.float32)
    rgb = np.where(solid[..., None], rgb, _overcast(buf, 0.62, np.random.default_rng(p.seed)))
    rgb = _haze(buf, rgb, p["visibility"], grey * 1.1)
    rgb = rgb * p["darken"]
    rgb = rgb + p["flatten"] * (grey * p["darken"] - rgb)
    rgb = _wet_ground(buf, rgb, p)
    return _streaks(rgb, rng, p["streaks"], p["angle"])


def _overcast(buf: SceneBuffers, level: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) a flat grey sky with soft darker cloud masses."""
    h, w = buf.label.shape
    clouds = smooth_noise(rng, w, h, max(w // 10, 4))
    return (level + 0.05 * clouds)[..., None] * np.array([0.97, 0.99, 1.03], np.float32)


def _haze(buf: SceneBuffers, rgb: np.ndarray, visibility: float, airlight: np.ndarray) -> np.ndarray:
    dist = buf.camera.distance(buf.depth)
    t = np.exp(-3.0 / visibility * np.where(np.isfinite(dist), dist, 1e4))[..., None]
    return rgb * t + airlight * (1.0 - t)


def _wet_ground(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams) -> np.ndarray:
    """Wet road and sidewalk: darker, mirroring what stands on them, with shiny puddles.

    Screen-space mirror: a wet pixel reflects the pixel as far above the nearest non-wet pixel
    above it (where a car or kerb stands on the road) as it is below it.
    """
    h, w = buf.label.shape
    wet = _WET[buf.label]
    rows = np.arange(h, dtype=np.int32)[:, None]
    contact = np.maximum.accumulate(np.where(wet, np.int32(-1), rows), axis=0)
    mirror = 2 * contact - rows
    valid = wet & (contact >= 0) & (mirror >= 0)
    cols = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    reflection = cv2.remap(rgb, cols, mirror.astype(np.float32), cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    reflection = cv2.blur(reflection, (3, 7))  # ripples and a rough surface smear the image
    horizon = buf.camera.horizon
    grazing = 1.0 - np.clip((rows - horizon) / max(h - horizon, 1.0), 0, 1)  # Fresnel: stronger far away
    x, _, z = buf.camera.unproject(np.where(np.isfinite(buf.depth), buf.depth, 0.0).astype(np.float32))
    puddles = np.clip((ground_noise(x, z, p.seed + 1, wavelength=4.0) - 1.0 + p["puddles"] * 2) * 1.5, 0, 1)
    weight = (p["wet"] * (0.15 + 0.45 * grazing) + 0.5 * puddles) * valid
    weight = np.clip(weight, 0, 0.9)[..., None]
    darker = np.where(wet[..., None], rgb * 0.75, rgb)
    return darker * (1 - weight) + reflection * weight


def _streaks(rgb: np.ndarray, rng: np.random.Generator, density: float, angle: float) -> np.ndarray:
    """Falling rain: thin bright slanted streaks, motion-blurred, of three intensities."""
    h, w = rgb.shape[:2]
    layer = np.zeros((h, w), np.float32)
    n = int(density * w * h / 700)
    length = rng.uniform(0.04, 0.12, n) * h
    start = np.column_stack([rng.uniform(-0.1 * w, 1.1 * w, n), rng.uniform(-0.1 * h, h, n)])
    end = start + np.column_stack([np.sin(angle) * length, np.cos(angle) * length])
    segs = np.stack([start, end], axis=1).astype(np.int32)
    level = rng.integers(0, 3, n)
    for k, alpha in enumerate((0.12, 0.2, 0.3)):
        cv2.polylines(layer, list(segs[level == k]), False, alpha, 1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.6)[..., None]
    return rgb * (1 - layer) + 0.85 * layer


# -- snow ---------------------------------------------------------------------------------------


def _snow(buf: SceneBuffers, rgb: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Snow on the ground and on top edges, grey-white light, haze and falling flakes."""
    h, w = buf.label.shape
    solid = np.isfinite(buf.depth)
    fixed = np.random.default_rng(p.seed)
    snow_colour = np.array([0.86, 0.89, 0.95], np.float32)
    cover = _snow_cover(buf, p["cover"], fixed)
    texture = 1.0 + 0.05 * smooth_noise(fixed, w, h, 2)[..., None]
    shade = np.clip(rgb.mean(axis=2, keepdims=True) / max(float(rgb[solid].mean()) if solid.any() else 0.5, 1e-3), 0.55, 1.15)
    snow = snow_colour * texture * (0.75 + 0.25 * shade)  # snow keeps the scene's light and shadow
    rgb = rgb * (1 - cover[..., None]) + snow * cover[..., None]
    rgb = np.where(solid[..., None], rgb, _overcast(buf, p["sky"], fixed))
    rgb = _haze(buf, rgb, p["visibility"], np.array([0.8, 0.82, 0.86], np.float32))
    grey = rgb.mean(axis=2, keepdims=True)
    rgb = grey + p["saturation"] * (rgb - grey)
    return _flakes(rgb * 1.03, rng, p["flakes"])


def _snow_cover(buf: SceneBuffers, amount: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much snow covers each pixel."""
    h, w = buf.label.shape
    label = buf.label
    x, y, z = buf.camera.unproject(np.where(np.isfinite(buf.depth), buf.depth, 1e4).astype(np.float32))
    patchy = ground_noise(x, z, int(rng.integers(2**31)), wavelength=6.0)  # stays put in a video
    ground = _GROUND[label] & _faces_up(y, z)
    cover = np.zeros((h, w), np.float32)
    cover[ground] = np.clip(amount * 1.6 + 0.35 * patchy[ground] - 0.3, 0, 1)
    road = label == ID["road"]
    cover[road] *= _tyre_tracks(x - buf.camera.x)[road]
    leaves = label == ID["vegetation"]
    speckle = smooth_noise(rng, w, h, 1)
    cover[leaves] = np.clip((speckle[leaves] + 0.2 * patchy[leaves] - 0.3) * 1.5, 0, 1) * amount
    return np.maximum(cover, _caps(buf) * amount)


def _faces_up(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels on roughly horizontal surfaces, from world height y and depth z.

    Between vertically adjacent pixels the ground changes much more in depth than in height;
    walls, and sprites standing upright, change in height only.
    """
    dy = np.abs(np.diff(y, axis=0, append=y[-1:]))
    dz = np.abs(np.diff(z, axis=0, append=z[-1:]))
    return dz > 4.0 * dy + 1e-4


def _tyre_tracks(lateral: np.ndarray) -> np.ndarray:
    """(H, W) factor < 1 in the darker wheel tracks, from each pixel's offset to the camera.

    Lanes are ~3.3 m apart around the camera's lane; wheels run 0.8 m either side of centre.
    """
    offset = np.abs(((lateral + 1.65) % 3.3) - 1.65)
    return 1.0 - 0.75 * np.exp(-((offset - 0.8) / 0.28) ** 2)


def _caps(buf: SceneBuffers) -> np.ndarray:
    """(H, W) float32: a few pixels of snow on the top edges of buildings, cars, signs, trees.

    A top edge is a pixel of a capped class whose neighbour above is much farther away (or
    sky); the cap's thickness is ~12 cm at that depth.
    """
    d = np.where(np.isfinite(buf.depth), buf.depth, 1e6)
    above = np.vstack([np.full((1, d.shape[1]), 1e6, np.float32), d[:-1]])
    edge = _CAPPED[buf.label] & (above > d * 1.15 + 0.5)
    thick = np.clip(np.rint(0.12 * buf.camera.focal / np.maximum(d, 1e-3)), 1, 6).astype(np.int32)
    caps = np.zeros(d.shape, bool)
    for k in range(6):
        sel = edge & (thick > k)
        caps[k:] |= sel[: d.shape[0] - k] if k else sel
    return (caps & _CAPPED[buf.label]).astype(np.float32)


def _flakes(rgb: np.ndarray, rng: np.random.Generator, density: float) -> np.ndarray:
    """Falling snow: soft white dots, bigger (nearer) ones blurrier."""
    h, w = rgb.shape[:2]
    sharp, soft = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    n = int(density * w * h / 350)
    pts = np.column_stack([rng.integers(0, w, n), rng.integers(0, h, n)])
    radius = np.clip(rng.exponential(0.9, n) * h / 256, 0.5, 4.0)
    alpha = rng.uniform(0.5, 0.95, n)
    for (u, v), r, a in zip(pts, radius, alpha):
        target = soft if r > 1.5 else sharp
        cv2.circle(target, (int(u), int(v)), max(int(round(r)), 1), float(a), -1, cv2.LINE_AA)
    layer = np.clip(cv2.GaussianBlur(sharp, (0, 0), 0.5) + cv2.GaussianBlur(soft, (0, 0), 1.6), 0, 1)[..., None]
    return rgb * (1 - layer) + 0.95 * layer
