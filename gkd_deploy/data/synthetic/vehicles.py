"""Cars, trucks, buses and trams, built from extruded side profiles.

A vehicle stands at (x, z) (its centre) and drives along the unit heading (hx, hz) at `speed`
m/s, which only matters for video frames. Profiles are given from the rear (s = 0) to the
front (s = length). A vehicle is one `Sprite`: body faces far-to-near, wheels, then windows,
lights and plates on top, drawn at the depth of its nearest point. Distant vehicles (a few
pixels tall) skip the details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .motion import travelled
from .primitives import Frame, Sprite, facing
from .raster import Canvas, Gradient, Light
from .street import ID

TYRE = (0.06, 0.06, 0.07)
GLASS = (0.1, 0.12, 0.15)
TAIL = (0.75, 0.06, 0.05)
HEAD = (0.95, 0.93, 0.85)
PLATE = (0.9, 0.9, 0.88)
TAIL_LIGHT = (1.0, 0.1, 0.05)
HEAD_LIGHT = (1.0, 0.95, 0.8)
DETAIL_PX = 16  # below this apparent height (pixels), draw the body only
ON_TOP = -1.0  # sprite key for details painted over all body faces

# Car body shapes: (lower body, cabin) profiles as (fraction of length, height in m).
CAR_BODIES = {
    "sedan": ([(0, .30), (1, .30), (1, .68), (.97, .84), (.74, .96), (.2, .98), (.02, .96), (0, .82)],
              [(.16, .95), (.76, .95), (.63, 1.45), (.29, 1.45)]),
    "hatch": ([(0, .30), (1, .30), (1, .66), (.96, .84), (.76, .95), (.05, .98), (0, .9)],
              [(.03, .95), (.77, .95), (.62, 1.48), (.07, 1.48)]),
    "suv": ([(0, .40), (1, .40), (1, .85), (.97, 1.0), (.78, 1.1), (.02, 1.12), (0, 1.0)],
            [(.03, 1.08), (.78, 1.08), (.66, 1.74), (.05, 1.74)]),
    "van": ([(0, .35), (1, .35), (1, .9), (.9, 1.12), (0, 1.12)],
            [(0, 1.1), (.9, 1.1), (.8, 1.95), (0.01, 1.95)]),
}


@dataclass(frozen=True)
class Vehicle:
    """Common placement fields and helpers; subclasses decide the shape."""

    x: float
    z: float
    hx: float
    hz: float
    length: float
    width: float
    colour: tuple[float, float, float]
    speed: float
    lights_on: bool
    seed: int
    limit: float = field(default=math.inf, kw_only=True)  # metres it may drive before stopping

    label_name = "car"
    top = 2.0  # rough roof height, for culling and level of detail

    def at(self, t: float):
        """This vehicle `t` seconds later: straight ahead, braking to a stop at its limit."""
        if self.speed <= 0:
            return self
        step = travelled(self.speed, t, self.limit)
        return replace(self, x=self.x + self.hx * step, z=self.z + self.hz * step)

    def bounds(self) -> tuple[float, ...]:
        r = self.length / 2 + 0.5
        return (self.x - r, self.x + r, 0.0, self.top + 1.8, self.z - r, self.z + r)

    @property
    def frame(self) -> Frame:
        """Local frame at the rear centre, s pointing forward, b to the right."""
        return Frame(self.x - self.hx * self.length / 2, self.z - self.hz * self.length / 2, self.hx, self.hz)

    def detailed(self, canvas: Canvas) -> bool:
        """Whether the vehicle is big enough on screen for windows, lights and wheels."""
        cam = canvas.camera
        d = max(abs(self.z - cam.z) - self.length / 2, cam.near)
        return self.top * cam.focal / d >= DETAIL_PX

    def footprint(self) -> np.ndarray:
        """(4, 3) the dark patch on the road under the body (drawn by the scene, batched)."""
        f, hw = self.frame, self.width / 2 + 0.12
        return f.world(np.array([-0.15, self.length + 0.15, self.length + 0.15, -0.15]), np.array([-hw, -hw, hw, hw]), 0.0)

    def _wheels(self, sprite: Sprite, positions: list[float], radius: float, side_key: float | None, inset: float = 0.02) -> None:
        """Tyres at `positions` along s, each the outline of its cylinder (both rims).

        Wheels on the visible side are painted just after the body side (`side_key`), so they
        show through the arches; the others go first, behind everything.
        """
        f, hw = self.frame, self.width / 2
        t = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        label = ID[self.label_name]
        for s in positions:
            for outer, inner in ((hw - inset, hw - inset - 0.24), (-hw + inset, -hw + inset + 0.24)):
                rims = np.concatenate([f.world(s + radius * np.cos(t), b, radius + radius * np.sin(t)) for b in (outer, inner)])
                near_side = side_key is not None and facing(sprite.canvas, np.sign(outer) * f.lateral, rims[0])
                key = side_key - 0.01 if near_side else 1e6
                if sprite.hull(rims, TYRE, label, key) and near_side:
                    hub = f.world(s + 0.55 * radius * np.cos(t), outer, radius + 0.55 * radius * np.sin(t))
                    sprite.polygon(hub, (0.55, 0.56, 0.58), label, key=key - 0.001)

    def _end_details(self, sprite: Sprite, front: bool, lamp_y: tuple[float, float], lamp_inner: float,
                     plate_y: float | None, bumper_y: float | None, extra=()) -> None:
        """Bumper, lamp pair, number plate and `extra` (K, 3) panels on the rear or front face."""
        f, hw = self.frame, self.width / 2
        s = self.length if front else 0.0
        normal = f.heading if front else -f.heading
        if not facing(sprite.canvas, normal, f.world(s, 0.0, 0.5)):
            return

        def rect(b0, b1, y0, y1):
            return f.world(s, np.array([b0, b1, b1, b0]), np.array([y0, y0, y1, y1]))

        label = ID[self.label_name]
        for pts, colour in extra:
            sprite.polygon(pts, colour, label, key=ON_TOP)
        if bumper_y is not None:
            sprite.polygon(rect(-hw, hw, bumper_y, bumper_y + 0.14), np.array(self.colour) * 0.45 + 0.03, label, key=ON_TOP)
        y0, y1 = lamp_y
        lamps = [rect(hw - lamp_inner, hw - 0.06, y0, y1), rect(-hw + 0.06, -hw + lamp_inner, y0, y1)]
        for q in lamps:
            sprite.polygon(q, HEAD if front else TAIL, label, key=ON_TOP)
        if plate_y is not None:
            sprite.polygon(rect(-0.26, 0.26, plate_y, plate_y + 0.11), PLATE, label, key=ON_TOP)
        if self.lights_on:
            for q in lamps:
                centre = q.mean(0) + normal * 0.05
                if front:
                    sprite.canvas.add_light(Light(tuple(centre), HEAD_LIGHT, size=0.2, reach=9.0, strength=1.6))
                else:
                    sprite.canvas.add_light(Light(tuple(centre), TAIL_LIGHT, size=0.12, reach=1.5, strength=0.6))

    def _side_panels(self, sprite: Sprite, b_abs: float, panels: list[tuple[np.ndarray, object]]) -> None:
        """(K, 2) polygons in (s, y) printed on whichever side face the camera sees."""
        f = self.frame
        for b, sign in ((b_abs, 1.0), (-b_abs, -1.0)):
            if facing(sprite.canvas, sign * f.lateral, f.world(self.length / 2, b, 1.0)):
                for poly, colour in panels:
                    sprite.polygon(f.world(poly[:, 0], b, poly[:, 1]), colour, ID[self.label_name], key=ON_TOP)


@dataclass(frozen=True)
class Car(Vehicle):
    """A passenger car: `body` is one of CAR_BODIES; `scale` stretches its heights."""

    body: str
    scale: float

    label_name = "car"
    top = 1.6

    def draw(self, canvas: Canvas) -> None:
        f, L, hw, k = self.frame, self.length, self.width / 2, self.scale
        lower, cabin = (np.array(p, np.float64) * [L, k] for p in CAR_BODIES[self.body])
        car = ID["car"]
        sprite = Sprite(canvas)
        if not self.detailed(canvas):
            # A few pixels tall: the outlines of body and cabin are all that shows.
            sprite.hull(f.world(lower[:, 0], np.array([[-hw], [hw]]), lower[:, 1]).reshape(-1, 3), self.colour, car, key=1.0)
            sprite.hull(f.world(cabin[:, 0], np.array([[-hw + 0.1], [hw - 0.1]]), cabin[:, 1]).reshape(-1, 3),
                        np.asarray(self.colour) * 0.55 + np.asarray(GLASS) * 0.45, car, key=0.0)
            sprite.draw("near")
            return
        keys = sprite.prism(f, lower, -hw, hw, self.colour, car)
        sprite.prism(f, cabin, -hw + 0.1, hw - 0.1, self.colour, car)
        self._wheels(sprite, [0.17 * L, 0.8 * L], 0.32 * k, keys.get("side"))
        self._glass(sprite, cabin, hw - 0.1)
        rear_top, front_top = lower[-1][1], lower[2][1]
        self._end_details(sprite, False, (rear_top - 0.2, rear_top - 0.06), 0.3, 0.42 * k, lower[0][1])
        grille = f.world(L, np.array([-0.45, 0.45, 0.45, -0.45]), np.array([front_top - 0.3, front_top - 0.3, front_top - 0.1, front_top - 0.1]))
        self._end_details(sprite, True, (front_top - 0.16, front_top - 0.04), 0.32, 0.36 * k, lower[0][1],
                          extra=[(grille, (0.08, 0.08, 0.09))])
        sprite.draw("near", gradient=Gradient(0.2, 1.2, 0.78, 1.0))

    def _glass(self, sprite: Sprite, cabin: np.ndarray, half: float) -> None:
        """Side windows (split by a body-coloured pillar), rear window and windscreen."""
        f = self.frame
        rb, fb, ft, rt = cabin  # rear-bottom, front-bottom, front-top, rear-top
        yb, yt = rb[1] + 0.06, rt[1] - 0.06
        s_rear = [_lerp_s(rb, rt, yb) + 0.08, _lerp_s(rb, rt, yt) + 0.08]
        s_front = [_lerp_s(fb, ft, yb) - 0.08, _lerp_s(fb, ft, yt) - 0.08]
        side = np.array([[s_rear[0], yb], [s_front[0], yb], [s_front[1], yt], [s_rear[1], yt]])
        mid = (s_rear[0] + s_front[0]) / 2
        pillar = np.array([[mid - 0.06, yb], [mid + 0.06, yb], [mid + 0.06, yt], [mid - 0.06, yt]])
        self._side_panels(sprite, half, [(side, GLASS), (pillar, np.array(self.colour) * 0.8)])
        for a, c in ((rt, rb), (fb, ft)):  # rear slope (top to bottom) and front slope
            ds, dy = c - a
            normal = (dy * f.heading - ds * np.array([0.0, 1.0, 0.0])) / np.hypot(ds, dy)
            pts = _slope_window(f, a, c, half)
            if facing(sprite.canvas, normal, pts[0]):
                sprite.polygon(pts, GLASS, ID["car"], key=ON_TOP)


def _lerp_s(p: np.ndarray, q: np.ndarray, y: float) -> float:
    """s where the profile edge p -> q reaches height y."""
    t = (y - p[1]) / (q[1] - p[1]) if q[1] != p[1] else 0.0
    return float(p[0] + t * (q[0] - p[0]))


def _slope_window(f: Frame, a: np.ndarray, c: np.ndarray, half: float) -> np.ndarray:
    """(4, 3) window inset on the band face spanned by profile edge a -> c."""
    t0, t1, b = 0.12, 0.88, half - 0.08
    p0, p1 = a + t0 * (c - a), a + t1 * (c - a)
    return f.world(np.array([p0[0], p1[0], p1[0], p0[0]]), np.array([-b, -b, b, b]), np.array([p0[1], p1[1], p1[1], p0[1]]))


def _rect(s0: float, s1: float, y0: float, y1: float) -> np.ndarray:
    """(4, 2) rectangle in a side face's (s, y) coordinates."""
    return np.array([[s0, y0], [s1, y0], [s1, y1], [s0, y1]], np.float64)


@dataclass(frozen=True)
class Truck(Vehicle):
    """A box truck: chassis, cargo box and a cab at the front."""

    box_height: float
    cab_colour: tuple[float, float, float]

    label_name = "truck"
    top = 3.9

    def draw(self, canvas: Canvas) -> None:
        f, L, hw = self.frame, self.length, self.width / 2
        truck = ID["truck"]
        box_len = L - 2.6
        c0 = box_len + 0.3
        sprite = Sprite(canvas)
        sprite.prism(f, _rect(0, L - 0.2, 0.55, 1.05), -hw + 0.15, hw - 0.15, (0.12, 0.12, 0.13), truck)
        keys = sprite.prism(f, _rect(0, box_len, 1.0, self.box_height), -hw, hw, self.colour, truck)
        sprite.prism(f, np.array([[c0, 0.6], [L, 0.6], [L, 2.2], [L - 0.3, 2.9], [c0, 2.9]]), -hw + 0.05, hw - 0.05, self.cab_colour, truck)
        if self.detailed(canvas):
            self._wheels(sprite, [1.0, 2.3, L - 1.2], 0.5, keys.get("side"), inset=0.05)
            self._side_panels(sprite, hw - 0.05, [(_rect(c0 + 0.3, L - 0.4, 1.6, 2.4), GLASS)])
            # Rear doors: a dark seam down the middle of the cargo box.
            seam = f.world(0.0, np.array([-0.03, 0.03, 0.03, -0.03]), np.array([1.1, 1.1, self.box_height - 0.1, self.box_height - 0.1]))
            self._end_details(sprite, False, (0.75, 0.92), 0.35, None, None, extra=[(seam, np.array(self.colour) * 0.5)])
            screen = f.world(L, np.array([-hw + 0.2, hw - 0.2, hw - 0.2, -hw + 0.2]), np.array([1.5, 1.5, 2.15, 2.15]))
            self._end_details(sprite, True, (0.75, 0.95), 0.4, 0.62, None, extra=[(screen, GLASS)])
        sprite.draw("near", gradient=Gradient(0.5, self.box_height, 0.85, 1.0))


@dataclass(frozen=True)
class Bus(Vehicle):
    """A city bus: a long box with a window band, big windscreen and a destination display."""

    height: float

    label_name = "bus"
    top = 3.3

    def draw(self, canvas: Canvas) -> None:
        f, L, hw, H = self.frame, self.length, self.width / 2, self.height
        sprite = Sprite(canvas)
        body = np.array([[0, 0.35], [L, 0.35], [L, H - 0.2], [L - 0.15, H], [0.1, H], [0, H - 0.1]])
        keys = sprite.prism(f, body, -hw, hw, self.colour, ID["bus"])
        if self.detailed(canvas):
            self._wheels(sprite, [2.6, L - 2.7], 0.5, keys.get("side"), inset=0.06)
            self._side_panels(sprite, hw, _window_band(0.6, L - 1.3, 1.25, H - 0.55, 1.6, self.colour)
                              + [(_rect(L - 2.0, L - 0.9, 0.45, H - 0.6), GLASS)])  # the front door
            for s, front, y0 in ((L, True, 1.0), (0.0, False, 1.7)):
                pane = f.world(s, np.array([-hw + 0.15, hw - 0.15, hw - 0.15, -hw + 0.15]), np.array([y0, y0, H - 0.6, H - 0.6]))
                display = f.world(s, np.array([-hw + 0.3, hw - 0.3, hw - 0.3, -hw + 0.3]), np.array([H - 0.5, H - 0.5, H - 0.2, H - 0.2]))
                self._end_details(sprite, front, (0.6, 0.8) if front else (0.7, 0.95), 0.35, 0.4, None,
                                  extra=[(pane, GLASS), (display, (0.15, 0.1, 0.05))])
        sprite.draw("near", gradient=Gradient(0.3, H, 0.85, 1.0))


@dataclass(frozen=True)
class Tram(Vehicle):
    """A tram of several cars joined by dark bellows, with a pantograph on the roof (train)."""

    height: float
    cars: int

    label_name = "train"
    top = 5.2

    def draw(self, canvas: Canvas) -> None:
        f, L, hw, H = self.frame, self.length, self.width / 2, self.height
        train = ID["train"]
        sprite = Sprite(canvas)
        seg = L / self.cars
        panels = []
        for k in range(self.cars):
            s0, s1 = k * seg + 0.25, (k + 1) * seg - 0.25
            nose_back = 0.6 if k == 0 else 0.0
            nose_front = 0.6 if k == self.cars - 1 else 0.0
            body = np.array([[s0, 0.35], [s1, 0.35], [s1, 1.3], [s1 - nose_front, H - 0.25], [s1 - nose_front - 0.3, H],
                             [s0 + nose_back + 0.3, H], [s0 + nose_back, H - 0.25], [s0, 1.3]])
            sprite.prism(f, body, -hw, hw, self.colour, train)
            panels += _window_band(s0 + 0.5 + nose_back, s1 - 0.5 - nose_front, 1.3, H - 0.55, 1.4, self.colour)
            if k < self.cars - 1:  # the bellows between two cars
                sprite.prism(f, _rect(s1 - 0.05, s1 + 0.55, 0.5, H - 0.3), -hw + 0.2, hw - 0.2, (0.1, 0.1, 0.1), train)
        pts = f.world(np.array([L / 2 - 0.8, L / 2, L / 2 + 0.8, L / 2]), 0.0, np.array([H, H + 0.9, H, H + 1.6]))
        sprite.stick(np.array([[pts[0], pts[1]], [pts[1], pts[2]], [pts[1], pts[3]]]), 0.05, (0.2, 0.2, 0.2), train, key=ON_TOP)
        sprite.stick(f.world(L / 2, np.array([-0.8, 0.8]), H + 1.6)[None], 0.05, (0.2, 0.2, 0.2), train, key=ON_TOP)
        if self.detailed(canvas):
            self._side_panels(sprite, hw, panels)
            for front in (True, False):
                s = L if front else 0.0
                pane = f.world(s, np.array([-hw + 0.2, hw - 0.2, hw - 0.2, -hw + 0.2]), np.array([1.35, 1.35, H - 0.5, H - 0.5]))
                self._end_details(sprite, front, (0.8, 1.0), 0.35, None, None, extra=[(pane, GLASS)])
        sprite.draw("near", gradient=Gradient(0.3, H, 0.8, 1.0))


def _window_band(s0: float, s1: float, y0: float, y1: float, pitch: float, body) -> list[tuple[np.ndarray, object]]:
    """Side panels for a bus or tram: a glass band split by body-coloured pillars."""
    if s1 <= s0:
        return []
    panels = [(_rect(s0, s1, y0, y1), GLASS)]
    panels += [(_rect(s - 0.07, s + 0.07, y0, y1), np.array(body) * 0.7) for s in np.arange(s0 + pitch, s1 - 0.3, pitch)]
    return panels
