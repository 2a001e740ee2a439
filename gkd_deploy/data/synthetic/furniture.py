"""Things standing along the curb: trees, street lights, sign posts and traffic lights.

Each object is one `Sprite`: poles are round-capped sticks, sign plates, signal heads and leaf
clusters camera-facing flat shapes, all painted far-to-near in one call at the object's depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import materials as mat
from .primitives import Sprite, circle
from .raster import Canvas, Light
from .street import ID

LAMP_OFF = {"red": (0.25, 0.05, 0.04), "amber": (0.25, 0.16, 0.03), "green": (0.03, 0.2, 0.1)}
LAMP_ON = {"red": (1.0, 0.15, 0.1), "amber": (1.0, 0.65, 0.1), "green": (0.2, 1.0, 0.55)}


@dataclass(frozen=True)
class Tree:
    """A broadleaf tree (clustered leafy blobs) or a conifer (stacked cones); all vegetation."""

    x: float
    z: float
    height: float
    crown: float
    trunk: float
    conifer: bool
    leaf: tuple[float, float, float]
    bark: tuple[float, float, float]
    seed: int

    def at(self, t: float) -> Tree:
        return self

    def bounds(self) -> tuple[float, ...]:
        r = self.crown * 1.5
        return (self.x - r, self.x + r, 0.0, self.height + 0.5, self.z - r, self.z + r)

    def draw(self, canvas: Canvas) -> None:
        rng = np.random.default_rng(self.seed)
        sprite = Sprite(canvas)
        top_of_trunk = self.height - (0.3 if self.conifer else 1.2) * self.crown
        sprite.stick(np.array([[[self.x, 0, self.z], [self.x, top_of_trunk, self.z]]]), self.trunk, self.bark, ID["vegetation"])
        if self.conifer:
            self._cones(sprite, rng)
        else:
            self._blobs(sprite, rng)
        sprite.draw()

    def _blobs(self, sprite: Sprite, rng: np.random.Generator) -> None:
        """7-11 irregular leaf clusters, darker underneath where less light reaches."""
        n = int(rng.integers(7, 12))
        offsets = rng.uniform(-1, 1, (n, 3)) * np.array([0.75, 0.6, 0.6]) * self.crown
        radii = self.crown * rng.uniform(0.4, 0.65, n)
        stretch = rng.uniform(0.9, 1.25, n)
        ragged = 1.0 + rng.uniform(-0.12, 0.12, (n, 14))  # a leafy, uneven edge
        tint = 1.0 + rng.uniform(-0.12, 0.12, (n, 1)) + rng.uniform(-0.05, 0.05, (n, 3))
        light = 0.72 + 0.4 * (offsets[:, 1:2] / self.crown + 0.6) / 1.2
        colours = np.clip(np.asarray(self.leaf) * tint * light, 0, 1)
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        outlines = np.stack([np.cos(t)[None, :] * stretch[:, None], np.broadcast_to(np.sin(t), (n, 14))], axis=-1)
        outlines *= (radii[:, None] * ragged)[..., None]
        centre = np.array([self.x, self.height - self.crown, self.z])
        sprite.flats(outlines, centre + offsets, colours, ID["vegetation"])

    def _cones(self, sprite: Sprite, rng: np.random.Generator) -> None:
        """Three or four stacked triangles narrowing towards the top."""
        base = self.height - 2.2 * self.crown
        tiers = int(rng.integers(3, 5))
        for k in range(tiers):
            y0 = base + k * (self.height - base) / (tiers + 0.5)
            half = self.crown * (1.0 - 0.2 * k)
            tri = np.array([[-half, 0.0], [half, 0.0], [0.0, self.height - y0]])
            colour = mat.vary(rng, np.array(self.leaf) * (0.8 + 0.08 * k), 0.08)
            sprite.flat([tri], (self.x, y0, self.z - 0.05 * k), colour, ID["vegetation"])


@dataclass(frozen=True)
class StreetLight:
    """A lamp post whose arm reaches `arm` metres sideways (signed) over the road; all pole."""

    x: float
    z: float
    height: float
    arm: float
    colour: tuple[float, float, float]
    lamp: tuple[float, float, float]

    def at(self, t: float) -> StreetLight:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (min(self.x, self.x + self.arm) - 0.5, max(self.x, self.x + self.arm) + 0.5, 0.0, self.height + 0.5, self.z - 0.5, self.z + 0.5)

    def draw(self, canvas: Canvas) -> None:
        pole, x, h, z = ID["pole"], self.x, self.height, self.z
        sprite = Sprite(canvas)
        sprite.stick(np.array([[[x, 0, z], [x, h, z]]]), 0.17, self.colour, pole)
        tip = x + self.arm
        sprite.stick(np.array([[[x, h - 0.1, z], [tip, h + 0.15, z]]]), 0.09, self.colour, pole)
        sprite.stick(np.array([[[tip - 0.35 * np.sign(self.arm), h + 0.1, z], [tip, h + 0.1, z]]]), 0.22, (0.55, 0.56, 0.58), pole)
        sprite.draw()
        canvas.add_light(Light((tip, h - 0.05, z), self.lamp, size=0.5, reach=16.0, strength=1.0))


@dataclass(frozen=True)
class SignPost:
    """A post carrying one or two plates; `kinds` names the designs from the top down."""

    x: float
    z: float
    height: float
    kinds: tuple[str, ...]
    size: float
    back: bool

    def at(self, t: float) -> SignPost:
        return self

    def bounds(self) -> tuple[float, ...]:
        r = self.size
        return (self.x - r, self.x + r, 0.0, self.height + 0.1, self.z - 0.2, self.z + 0.2)

    def draw(self, canvas: Canvas) -> None:
        sprite = Sprite(canvas)
        sprite.stick(np.array([[[self.x, 0, self.z], [self.x, self.height, self.z]]]), 0.075, (0.55, 0.56, 0.58), ID["pole"])
        y = self.height - self.size / 2
        for kind in self.kinds:
            _plate(sprite, kind, np.array([self.x, y, self.z - 0.05]), self.size / 2, self.back)
            y -= self.size * (0.7 if kind == "street" else 1.08)
        sprite.draw()


def _plate(sprite: Sprite, kind: str, centre: np.ndarray, r: float, back: bool) -> None:
    """One sign plate of half-size `r` with its printed design (all traffic sign).

    The design layers sit a few millimetres in front of the plate so they paint over it.
    """
    sign = ID["traffic sign"]
    red, white, blue, yellow, dark = (0.8, 0.08, 0.08), (0.92, 0.92, 0.9), (0.1, 0.3, 0.7), (0.95, 0.78, 0.1), (0.08, 0.08, 0.08)
    shapes = {
        "prohibitory": circle(r, 18),
        "mandatory": circle(r, 18),
        "warning": np.array([[-r, -0.8 * r], [r, -0.8 * r], [0, r]]),
        "yield": np.array([[-r, 0.8 * r], [r, 0.8 * r], [0, -r]]),
        "stop": circle(r, 8) @ np.array([[np.cos(np.pi / 8), np.sin(np.pi / 8)], [-np.sin(np.pi / 8), np.cos(np.pi / 8)]]),
        "info": np.array([[-r, -r], [r, -r], [r, r], [-r, r]]),
        "priority": np.array([[0, -r], [r, 0], [0, r], [-r, 0]]),
        "street": np.array([[-1.6 * r, -0.35 * r], [1.6 * r, -0.35 * r], [1.6 * r, 0.35 * r], [-1.6 * r, 0.35 * r]]),
    }
    outline = shapes[kind]
    base = {"prohibitory": red, "mandatory": blue, "warning": red, "yield": red, "stop": red, "info": blue,
            "priority": white, "street": white}[kind]
    sprite.flat([outline], centre, (0.5, 0.5, 0.52) if back else base, sign)
    if back:
        return
    inner = outline * (0.7 if kind in ("warning", "yield") else 0.78)
    if kind in ("warning", "yield"):
        inner = inner + np.array([0, -0.08 * r if kind == "warning" else 0.08 * r])
    inner_colour = {"mandatory": blue, "stop": red, "info": white, "priority": yellow, "street": (0.15, 0.35, 0.2)}.get(kind, white)
    sprite.flat([inner], centre - [0, 0, 0.005], inner_colour, sign)
    symbol = {
        "prohibitory": np.array([[-0.35 * r, -0.15 * r], [0.35 * r, -0.15 * r], [0.35 * r, 0.15 * r], [-0.35 * r, 0.15 * r]]),
        "mandatory": np.array([[-0.12 * r, -0.5 * r], [0.12 * r, -0.5 * r], [0.12 * r, 0.1 * r], [0.35 * r, 0.1 * r], [0, 0.55 * r], [-0.35 * r, 0.1 * r], [-0.12 * r, 0.1 * r]]),
        "warning": np.array([[-0.08 * r, -0.4 * r], [0.08 * r, -0.4 * r], [0.08 * r, 0.25 * r], [-0.08 * r, 0.25 * r]]),
        "stop": np.array([[-0.6 * r, -0.15 * r], [0.6 * r, -0.15 * r], [0.6 * r, 0.15 * r], [-0.6 * r, 0.15 * r]]),
        "info": np.array([[-0.2 * r, -0.6 * r], [0.2 * r, -0.6 * r], [0.2 * r, 0.3 * r], [-0.2 * r, 0.3 * r]]),
        "street": np.array([[-1.2 * r, -0.08 * r], [1.2 * r, -0.08 * r], [1.2 * r, 0.08 * r], [-1.2 * r, 0.08 * r]]),
    }.get(kind)
    if symbol is not None:
        colour = {"mandatory": white, "stop": white, "street": white, "info": blue}.get(kind, dark)
        sprite.flat([symbol], centre - [0, 0, 0.01], colour, sign)


@dataclass(frozen=True)
class TrafficLight:
    """A signal pole; with `arm` != 0 a mast arm reaches over the road carrying more heads.

    heads: lateral offsets (from the pole) of the signal heads on the arm; the first head sits
    on the pole itself at `mount` metres. `facing`: lamps towards the camera, else the back.
    """

    x: float
    z: float
    height: float
    mount: float
    arm: float
    heads: tuple[float, ...]
    state: str
    facing: bool
    housing: tuple[float, float, float]

    def at(self, t: float) -> TrafficLight:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (min(self.x, self.x + self.arm) - 0.5, max(self.x, self.x + self.arm) + 0.5, 0.0, self.height + 0.3, self.z - 0.5, self.z + 0.5)

    def draw(self, canvas: Canvas) -> None:
        pole, x, z = ID["pole"], self.x, self.z
        sprite = Sprite(canvas)
        sprite.stick(np.array([[[x, 0, z], [x, self.height, z]]]), 0.15, (0.35, 0.36, 0.37), pole)
        self._head(canvas, sprite, x + (0.25 if self.arm >= 0 else -0.25), self.mount)
        if self.arm:
            sprite.stick(np.array([[[x, self.height - 0.2, z], [x + self.arm, self.height - 0.1, z]]]), 0.11, (0.35, 0.36, 0.37), pole)
            for off in self.heads:
                self._head(canvas, sprite, x + off, self.height - 0.25)
        sprite.draw()

    def _head(self, canvas: Canvas, sprite: Sprite, hx: float, top: float) -> None:
        """A three-lamp signal head hanging from `top`; the lit lamp also becomes a light."""
        light = ID["traffic light"]
        front = np.array([hx, top, self.z - 0.15])
        housing = np.array([[-0.17, -0.95], [0.17, -0.95], [0.17, 0.0], [-0.17, 0.0]])
        sprite.flat([housing], front, self.housing, light)
        if not self.facing:
            return
        for k, colour in enumerate(("red", "amber", "green")):
            centre = front + np.array([0.0, -0.17 - 0.3 * k, -0.01])
            on = colour == self.state
            sprite.disc(centre, 0.1, LAMP_ON[colour] if on else LAMP_OFF[colour], light)
            if on:
                canvas.add_light(Light(tuple(centre), LAMP_ON[colour], size=0.25, reach=2.0, strength=1.2))
