"""Pedestrians, and riders on bicycles or motorcycles (or those standing parked).

Bodies are 3-D stick figures: joints placed in a local frame (s along the heading, b to the
right, y up), projected, and drawn as round-capped sticks of body-part thickness. So one model
works from the front, the back and the side, and walking is just moving the joints. A figure
(with its bike) is one `Sprite`: its parts overlap far-to-near, one depth test for the whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .motion import travelled
from .primitives import Frame, Sprite
from .raster import Canvas, Light
from .street import ID

STRIDE = 1.4  # metres per walking cycle


def _ellipse(x: float, z: float, rx: float, rz: float, y: float) -> np.ndarray:
    """(12, 3) a horizontal ellipse at height y."""
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    return np.column_stack([x + rx * np.cos(t), np.full(12, y), z + rz * np.sin(t)])


def _end_on(canvas: Canvas, frame: Frame) -> float:
    """1 when the camera looks along the figure's heading (front/back view), 0 from the side."""
    view = np.array([frame.x - canvas.camera.x, frame.z - canvas.camera.z])
    view /= np.linalg.norm(view) + 1e-9
    return abs(view[0] * frame.hx + view[1] * frame.hz)


def _torso_width(canvas: Canvas, frame: Frame, front: float, side: float) -> float:
    """Apparent torso thickness: shoulder width seen from front/back, chest depth from the side."""
    return side + (front - side) * _end_on(canvas, frame)


def _faces_away(canvas: Canvas, frame: Frame) -> bool:
    """Whether we see this figure's back (it heads away from the camera)."""
    return (frame.x - canvas.camera.x) * frame.hx + (frame.z - canvas.camera.z) * frame.hz > 0


def _head(sprite: Sprite, centre: np.ndarray, r: float, skin, hair, label: int, away: bool) -> None:
    """A head disc with a hair (or helmet) cap: a small crown from the front, most of it from behind."""
    sprite.disc(centre, r, skin, label)
    t = np.linspace(-0.35 if not away else -1.2, np.pi + (0.35 if not away else 1.2), 12)
    cap = np.column_stack([r * np.cos(t), r * np.sin(t)])
    sprite.flat([cap], centre - [0, 0, 0.01], hair, label)


@dataclass(frozen=True)
class Person:
    """A pedestrian of `height` m at (x, z) facing (hx, hz), walking at `speed` m/s."""

    x: float
    z: float
    hx: float
    hz: float
    height: float
    speed: float
    phase: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    bag: bool
    base: float = 0.0  # height of the ground under the feet (a sidewalk is 0.15 m up)

    def at(self, t: float) -> Person:
        step = self.speed * t
        return replace(self, x=self.x + self.hx * step, z=self.z + self.hz * step, phase=self.phase + 2 * np.pi * step / STRIDE)

    def bounds(self) -> tuple[float, ...]:
        return (self.x - 0.6, self.x + 0.6, 0.0, self.height + self.base, self.z - 0.6, self.z + 0.6)

    def footprint(self) -> np.ndarray:
        """(12, 3) the soft shadow under the feet, on the ground at `base`."""
        return _ellipse(self.x, self.z, 0.35 * self.height / 1.75, 0.25, self.base)

    def draw(self, canvas: Canvas) -> None:
        H, k = self.height, self.height / 1.75
        f = Frame(self.x, self.z, self.hx, self.hz, self.base)
        person = ID["person"]
        sprite = Sprite(canvas)
        # Hands, shoes, neck, hair and bag only where the figure is big enough to show them.
        detailed = H * canvas.camera.focal / max(self.z - canvas.camera.z, canvas.camera.near) >= 24
        swing = np.sin(self.phase) if self.speed > 0 else 0.0
        for side in (-1.0, 1.0):
            foot_s = side * 0.28 * k * swing
            hip, knee, ankle = f.world(0, side * 0.09 * k, 0.52 * H), f.world(foot_s * 0.5 + 0.04 * k, side * 0.1 * k, 0.28 * H), f.world(foot_s, side * 0.1 * k, 0.04 * H)
            sprite.stick(np.array([[hip, knee], [knee, ankle]]), 0.14 * k, self.trousers, person)
            arm_s = -side * 0.2 * k * swing
            shoulder, elbow, hand = f.world(0, side * 0.19 * k, 0.8 * H), f.world(arm_s * 0.5, side * 0.22 * k, 0.63 * H), f.world(arm_s, side * 0.22 * k, 0.47 * H)
            sprite.stick(np.array([[shoulder, elbow], [elbow, hand]]), 0.09 * k, self.shirt, person)
            if detailed:
                toe = f.world(foot_s + 0.2 * k, side * 0.1 * k, 0.02 * H)
                sprite.stick(np.array([[ankle, toe]]), 0.09 * k, (0.1, 0.1, 0.1), person)
                sprite.disc(hand, 0.05 * k, self.skin, person)
        width = _torso_width(canvas, f, 0.36 * k, 0.24 * k)
        sprite.stick(np.array([[f.world(0, 0, 0.56 * H), f.world(0, 0, 0.8 * H)]]), width, self.shirt, person)
        head = f.world(0.02 * k, 0, 0.93 * H)
        if not detailed:
            sprite.disc(head, 0.115 * k, self.hair, person)
            sprite.draw()
            return
        sprite.stick(np.array([[f.world(0, 0, 0.82 * H), f.world(0, 0, 0.88 * H)]]), 0.1 * k, self.skin, person)
        _head(sprite, head, 0.115 * k, self.skin, self.hair, person, _faces_away(canvas, f))
        if self.bag:
            centre = f.world(-0.05, 0.24 * k, 0.5 * H)
            sprite.flat([np.array([[-0.13, -0.15], [0.13, -0.15], [0.13, 0.15], [-0.13, 0.15]]) * k], centre, (0.2, 0.15, 0.1), person)
        sprite.draw()


@dataclass(frozen=True)
class Rider:
    """A bicycle or motorcycle, ridden (`mounted`) or parked, at (x, z) heading (hx, hz)."""

    x: float
    z: float
    hx: float
    hz: float
    motor: bool
    mounted: bool
    speed: float
    phase: float
    frame_colour: tuple[float, float, float]
    height: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    helmet: tuple[float, float, float]
    base: float = 0.0  # height of the ground under the wheels
    limit: float = math.inf  # metres it may ride before stopping (at the end junction)

    def at(self, t: float) -> Rider:
        step = travelled(self.speed, t, self.limit)
        return replace(self, x=self.x + self.hx * step, z=self.z + self.hz * step, phase=self.phase + step / 2.1 * 2 * np.pi)

    def bounds(self) -> tuple[float, ...]:
        return (self.x - 1.2, self.x + 1.2, 0.0, 2.0 + self.base, self.z - 1.2, self.z + 1.2)

    def footprint(self) -> np.ndarray:
        """(12, 3) the shadow under the bike, stretched along its heading."""
        f = Frame(self.x, self.z, self.hx, self.hz, self.base)
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        return f.world(0.95 * np.cos(t), 0.3 * np.sin(t), 0.0)

    def draw(self, canvas: Canvas) -> None:
        f = Frame(self.x, self.z, self.hx, self.hz, self.base)
        sprite = Sprite(canvas)
        if self.motor:
            self._motorcycle(canvas, sprite, f)
        else:
            self._bicycle(sprite, f)
        if self.mounted:
            self._body(canvas, sprite, f)
        sprite.draw()

    @staticmethod
    def _wheel(sprite: Sprite, f: Frame, hub_s: float, r: float, width: float, label: int, colour) -> None:
        """A tyre: a ring of sticks in the bike's vertical plane (thin when seen from behind)."""
        t = np.linspace(0, 2 * np.pi, 17)
        ring = f.world(hub_s + r * np.cos(t), 0.0, r + r * np.sin(t))
        sprite.stick(np.stack([ring[:-1], ring[1:]], axis=1), width, colour, label)

    def _bicycle(self, sprite: Sprite, f: Frame) -> None:
        bike, c = ID["bicycle"], self.frame_colour
        for hub in (-0.52, 0.52):
            self._wheel(sprite, f, hub, 0.34, 0.045, bike, (0.08, 0.08, 0.08))
        p = {name: f.world(s, 0.0, y) for name, (s, y) in {
            "rear": (-0.52, 0.34), "front": (0.52, 0.34), "bb": (-0.02, 0.3), "seat_top": (-0.2, 0.85),
            "seat": (-0.24, 0.95), "head": (0.42, 0.95), "head_low": (0.46, 0.78), "bar": (0.38, 1.06),
        }.items()}
        tubes = [("bb", "seat_top"), ("bb", "head_low"), ("seat_top", "head"), ("head", "front"), ("rear", "bb"),
                 ("rear", "seat_top"), ("seat_top", "seat"), ("head", "bar")]
        sprite.stick(np.array([[p[a], p[b]] for a, b in tubes]), 0.04, c, bike)
        sprite.stick(np.array([[f.world(0.38, -0.24, 1.06), f.world(0.38, 0.24, 1.06)]]), 0.035, (0.2, 0.2, 0.2), bike)
        sprite.stick(np.array([[f.world(-0.3, 0, 0.96), f.world(-0.12, 0, 0.97)]]), 0.07, (0.1, 0.1, 0.1), bike)

    def _motorcycle(self, canvas: Canvas, sprite: Sprite, f: Frame) -> None:
        moto, c = ID["motorcycle"], self.frame_colour
        for hub in (-0.7, 0.72):
            self._wheel(sprite, f, hub, 0.32, 0.13, moto, (0.07, 0.07, 0.07))
            sprite.disc(f.world(hub, 0, 0.32), 0.13, (0.5, 0.5, 0.52), moto, sx=max(0.15, 1.0 - _end_on(canvas, f)))
        parts = [  # (from (s, y), to (s, y), width m, colour)
            ((-0.15, 0.47), (0.3, 0.47), 0.34, (0.15, 0.15, 0.16)),
            ((0.05, 0.86), (0.45, 0.9), 0.26, c),
            ((-0.6, 0.86), (0.0, 0.88), 0.22, (0.08, 0.08, 0.08)),
            ((-0.8, 0.78), (-0.5, 0.84), 0.16, c),
            ((0.72, 0.32), (0.55, 1.0), 0.07, (0.6, 0.6, 0.6)),
        ]
        for a, b, w, col in parts:
            sprite.stick(np.array([[f.world(a[0], 0, a[1]), f.world(b[0], 0, b[1])]]), w, col, moto)
        sprite.stick(np.array([[f.world(0.5, -0.38, 1.05), f.world(0.5, 0.38, 1.05)]]), 0.05, (0.15, 0.15, 0.15), moto)
        lamp = f.world(0.68, 0, 0.95)
        sprite.disc(lamp, 0.09, (0.9, 0.9, 0.8), moto)
        if self.mounted and self.speed > 0:
            canvas.add_light(Light(tuple(lamp), (1.0, 0.95, 0.8), size=0.18, reach=7.0, strength=1.3))
            canvas.add_light(Light(tuple(f.world(-0.82, 0, 0.8)), (1.0, 0.1, 0.05), size=0.1, reach=1.0, strength=0.5))

    def _body(self, canvas: Canvas, sprite: Sprite, f: Frame) -> None:
        """The rider (rider class): seated, hands on the bar, feet on pedals or pegs."""
        k = self.height / 1.75
        rider = ID["rider"]
        if self.motor:
            hip_s, hip_y, shoulder, head_c, bar = -0.25, 0.95, (0.05, 1.45), (0.12, 1.7), (0.5, 1.05, 0.36)
        else:
            hip_s, hip_y, shoulder, head_c, bar = -0.24, 1.0, (0.12, 0.98 + 0.5 * k), (0.2, 1.2 + 0.5 * k), (0.38, 1.06, 0.22)
        for side in (-1.0, 1.0):
            hip = f.world(hip_s, side * 0.1, hip_y)
            if self.motor:
                knee, foot = f.world(0.2, side * 0.22, 0.75), f.world(0.0, side * 0.24, 0.42)
            else:
                a = self.phase + (np.pi if side > 0 else 0.0)
                foot = f.world(-0.02 + 0.17 * np.cos(a), side * 0.12, 0.3 + 0.17 * np.sin(a))
                knee = (hip + foot) / 2 + f.heading * 0.18 + np.array([0, 0.1, 0])
            sprite.stick(np.array([[hip, knee], [knee, foot]]), 0.14 * k, self.trousers, rider)
            sh = f.world(shoulder[0], side * 0.18 * k, shoulder[1])
            hand = f.world(bar[0], side * bar[2], bar[1])
            elbow = (sh + hand) / 2 + np.array([0, -0.05, 0])
            sprite.stick(np.array([[sh, elbow], [elbow, hand]]), 0.09 * k, self.shirt, rider)
        width = _torso_width(canvas, f, 0.36 * k, 0.24 * k)
        sprite.stick(np.array([[f.world(hip_s + 0.03, 0, hip_y + 0.05), f.world(shoulder[0], 0, shoulder[1])]]), width, self.shirt, rider)
        r = (0.14 if self.motor else 0.12) * k
        _head(sprite, f.world(head_c[0], 0, head_c[1]), r, self.skin if not self.motor else self.helmet, self.helmet, rider, _faces_away(canvas, f))
