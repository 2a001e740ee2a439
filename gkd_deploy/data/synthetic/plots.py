"""What stands on the plots along the street: buildings (with windows and shop fronts),
walls, fences, hedges and patches of lawn or dirt."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import materials as mat
from .primitives import UP, box, face, facing, ground_quad, plane_layers, plane_lines
from .raster import Canvas, Gradient
from .street import ID


@dataclass(frozen=True)
class Building:
    """A box [x0, x1] x [0, height] x [z0, z1] with windows on every face the camera sees.

    floor: storey height; window: (width, height) of one window; pitch: window spacing along a
    facade; shop: whether the ground floor has shop windows and a sign band.
    """

    x0: float
    x1: float
    z0: float
    z1: float
    height: float
    colour: tuple[float, float, float]
    floor: float
    window: tuple[float, float]
    pitch: float
    shop: bool
    seed: int

    def at(self, t: float) -> Building:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (self.x0, self.x1, 0.0, self.height, self.z0, self.z1)

    def draw(self, canvas: Canvas) -> None:
        rng = np.random.default_rng(self.seed)
        glass = [mat.pick(rng, mat.GLASS, 0.1) for _ in range(3)]
        frame = mat.vary(rng, np.array(self.colour) * rng.choice([0.7, 1.2]), 0.05)
        lit = rng.uniform(0.2, 0.6)
        for origin, along, length, normal in self._visible_faces(canvas):
            wall = _to_world(origin, along, np.array([[0, 0], [length, 0], [length, self.height], [0, self.height]]))
            groups = [([wall], self.colour, ID["building"], 0.0)]
            groups += self._facade(canvas, rng, origin, along, length, glass, frame, lit)
            # Darker near the ground (ambient occlusion, grime), lighter at the top.
            plane_layers(canvas, normal, groups, mode="solid", shade=True, gradient=Gradient(0.0, self.height, 0.82, 1.04))

    def _visible_faces(self, canvas: Canvas):
        """(origin, unit along-vector, length, outward normal) of the camera-facing walls."""
        out = []
        candidates = [
            (np.array([self.x0, 0, self.z0]), np.array([0.0, 0, 1]), self.z1 - self.z0, np.array([-1.0, 0, 0])),
            (np.array([self.x1, 0, self.z0]), np.array([0.0, 0, 1]), self.z1 - self.z0, np.array([1.0, 0, 0])),
            (np.array([self.x0, 0, self.z0]), np.array([1.0, 0, 0]), self.x1 - self.x0, np.array([0.0, 0, -1])),
        ]
        for origin, along, length, normal in candidates:
            if facing(canvas, normal, origin):
                out.append((origin, along, length, normal))
        return out

    def _facade(self, canvas, rng, origin, along, length, glass, frame, lit) -> list:
        """Polygon groups printed on one wall: roof band, window surrounds, windows in three
        glass tints (some lit at night), and a shop front with its sign band."""
        b = ID["building"]
        cam = canvas.camera
        near_depth = max(min(origin[2], (origin + along * length)[2]) - cam.z, cam.near)
        ww, wh = self.window
        first = 3.6 if self.shop else self.floor
        rows = np.arange(first + 0.9, self.height - wh - 0.5, self.floor)
        cols = np.arange(0.8 + (length - 0.8) % self.pitch / 2, length - ww - 0.5, self.pitch)
        band = np.array([[0, self.height - 0.7], [length, self.height - 0.7], [length, self.height - 0.25], [0, self.height - 0.25]])
        groups = [(_to_world(origin, along, band)[None], np.array(frame) * 0.9, b, 0.0)]
        # Windows narrower than about a pixel at the wall's nearest point only add aliasing.
        if len(rows) and len(cols) and ww * cam.focal / near_depth > 0.8:
            quads = _grid_quads(origin, along, cols, rows, ww, wh)
            if rng.random() < 0.5:  # light or dark window surrounds
                groups.append((_grow(quads, along, 0.12), frame, b, 0.0))
            tint = rng.integers(0, 3, len(quads))
            on = rng.random(len(quads)) < lit
            for g, level in enumerate((0.55, 0.8, 1.0)):
                groups.append((quads[(tint == g) & ~on], glass[g], b, 0.0))
                groups.append((quads[(tint == g) & on], glass[g], b, level))
        if self.shop:
            panes, sign = self._shop_front(rng, origin, along, length)
            if len(panes):
                groups += [(panes, np.array(glass[0]) * 1.3, b, 0.9), (sign, mat.pick(rng, mat.CAR_PAINT, 0.1), b, 0.0)]
        return groups

    @staticmethod
    def _shop_front(rng, origin, along, length) -> tuple[np.ndarray, np.ndarray]:
        """Large ground-floor windows (N, 4, 3) and the coloured sign band (1, 4, 3) above."""
        pitch = rng.uniform(3.0, 6.0)
        starts = np.arange(0.6, length - 2.0, pitch)
        width = min(pitch - 0.6, 4.0)
        panes = [_to_world(origin, along, np.array([[a, 0.4], [a + width, 0.4], [a + width, 2.9], [a, 2.9]])) for a in starts]
        sign = np.array([[0.3, 3.05], [length - 0.3, 3.05], [length - 0.3, 3.5], [0.3, 3.5]])
        return np.array(panes).reshape(-1, 4, 3), _to_world(origin, along, sign)[None]


def _to_world(origin: np.ndarray, along: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) wall coordinates (metres along, metres up) -> (N, 3) world points."""
    return origin[None, :] + pts[:, :1] * along[None, :] + pts[:, 1:2] * UP[None, :]


def _grid_quads(origin, along, cols, rows, ww, wh) -> np.ndarray:
    """(len(cols) * len(rows), 4, 3) window rectangles on a wall."""
    a, y = np.meshgrid(cols, rows)
    a, y = a.ravel(), y.ravel()
    corners = np.stack([
        np.stack([a, y], -1), np.stack([a + ww, y], -1), np.stack([a + ww, y + wh], -1), np.stack([a, y + wh], -1)
    ], axis=1)
    return origin[None, None, :] + corners[..., :1] * along + corners[..., 1:2] * UP


def _grow(quads: np.ndarray, along: np.ndarray, margin: float) -> np.ndarray:
    """Enlarge (N, 4, 3) window quads by `margin` metres on every side (window surrounds)."""
    out = quads.copy()
    sign_a = np.array([-1, 1, 1, -1])[None, :, None]
    sign_y = np.array([-1, -1, 1, 1])[None, :, None]
    return out + margin * (sign_a * along + sign_y * UP)


@dataclass(frozen=True)
class Wall:
    """A free-standing wall along the street (plane x ~ const), brick-coursed or plain."""

    x: float
    z0: float
    z1: float
    height: float
    thickness: float
    colour: tuple[float, float, float]
    bricks: bool
    seed: int

    def at(self, t: float) -> Wall:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (self.x - self.thickness, self.x + self.thickness, 0.0, self.height, self.z0, self.z1)

    def draw(self, canvas: Canvas) -> None:
        x0, x1 = self.x - self.thickness / 2, self.x + self.thickness / 2
        box(canvas, x0, x1, 0.0, self.height, self.z0, self.z1, self.colour, ID["wall"], gradient=Gradient(0, self.height, 0.85, 1.0))
        # Coping stones along the top, a lighter band.
        x_face = x1 if canvas.camera.x > x1 else x0
        normal = np.array([1.0 if x_face == x1 else -1.0, 0, 0])
        top = np.array([[[x_face, self.height - 0.12, self.z0], [x_face, self.height - 0.12, self.z1],
                         [x_face, self.height, self.z1], [x_face, self.height, self.z0]]])
        plane_layers(canvas, normal, [(top, np.array(self.colour) * 1.15, None, 0.0)])
        if self.bricks:
            self._courses(canvas, x_face, normal)

    def _courses(self, canvas: Canvas, x_face: float, normal: np.ndarray) -> None:
        """Horizontal mortar lines every 0.25 m where they are at least ~3 px apart."""
        cam = canvas.camera
        segs = []
        for z0 in np.arange(self.z0, self.z1, 3.0):
            z1 = min(z0 + 3.0, self.z1)
            d = (z0 + z1) / 2 - cam.z
            if d > cam.near and 0.25 * cam.focal / d >= 3.0:
                segs += [[[x_face, y, z0], [x_face, y, z1]] for y in np.arange(0.25, self.height - 0.12, 0.25)]
        if segs:
            plane_lines(canvas, np.array(segs), normal, np.array(self.colour) * 0.75, None, width=0.02)


@dataclass(frozen=True)
class Fence:
    """A fence along the street at x: solid "boards", see-through "railing", or "mesh"."""

    x: float
    z0: float
    z1: float
    height: float
    kind: str
    colour: tuple[float, float, float]
    seed: int

    def at(self, t: float) -> Fence:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (self.x - 0.1, self.x + 0.1, 0.0, self.height, self.z0, self.z1)

    def draw(self, canvas: Canvas) -> None:
        fid, cam = ID["fence"], canvas.camera
        normal = np.array([1.0 if cam.x > self.x else -1.0, 0, 0])
        posts = [[[self.x, 0, z], [self.x, self.height, z]] for z in np.arange(self.z0, self.z1 + 0.01, 2.4)]
        rails = [[[self.x, y, self.z0], [self.x, y, self.z1]] for y in (self.height - 0.05, 0.15)]
        if self.kind == "boards":
            box(canvas, self.x - 0.03, self.x + 0.03, 0.0, self.height, self.z0, self.z1, self.colour, fid, gradient=Gradient(0, self.height, 0.8, 1.0))
            seams = [[[self.x, 0.05, z], [self.x, self.height - 0.05, z]] for z in self._dense_positions(cam, 0.16)]
            if seams:
                plane_lines(canvas, np.array(seams), normal, np.array(self.colour) * 0.7, None, width=0.015)
            return
        if self.kind == "mesh":
            panel = np.array([[self.x, 0, self.z0], [self.x, 0, self.z1], [self.x, self.height, self.z1], [self.x, self.height, self.z0]])
            face(canvas, panel, self.colour, fid, mode="blend", alpha=0.35, shade=False)
        else:
            pickets = [[[self.x, 0.1, z], [self.x, self.height, z]] for z in self._dense_positions(cam, 0.14)]
            if pickets:
                plane_lines(canvas, np.array(pickets), normal, self.colour, fid, width=0.035, mode="solid")
            self._distant_railing(canvas, normal)
        plane_lines(canvas, np.array(posts), normal, np.array(self.colour) * 0.85, fid, width=0.07, mode="solid")
        plane_lines(canvas, np.array(rails), normal, self.colour, fid, width=0.05, mode="solid")

    def _dense_positions(self, cam, spacing: float) -> np.ndarray:
        """z positions every `spacing` m, kept only where neighbours are >= 2.5 px apart."""
        z = np.arange(self.z0 + spacing, self.z1, spacing)
        d = np.maximum(z - cam.z, 1e-3)
        # A fence along z at lateral offset X: neighbours are spacing * f * |X| / d^2 px apart.
        return z[(z - cam.z > cam.near) & (spacing * cam.focal * abs(self.x - cam.x) / d**2 >= 2.5)]

    def _distant_railing(self, canvas: Canvas, normal: np.ndarray) -> None:
        """Where pickets merge into a blur, draw a half-transparent panel instead."""
        cam = canvas.camera
        shown = self._dense_positions(cam, 0.14)
        z_from = shown.max() if len(shown) else self.z0
        if z_from < self.z1 - 0.5:
            panel = np.array([[self.x, 0.1, z_from], [self.x, 0.1, self.z1], [self.x, self.height, self.z1], [self.x, self.height, z_from]])
            face(canvas, panel, self.colour, ID["fence"], mode="blend", alpha=0.55, shade=False)


@dataclass(frozen=True)
class Hedge:
    """A trimmed hedge: a leafy box (vegetation)."""

    x0: float
    x1: float
    z0: float
    z1: float
    height: float
    colour: tuple[float, float, float]

    def at(self, t: float) -> Hedge:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (self.x0, self.x1, 0.0, self.height, self.z0, self.z1)

    def draw(self, canvas: Canvas) -> None:
        box(canvas, self.x0, self.x1, 0.0, self.height, self.z0, self.z1, self.colour, ID["vegetation"], gradient=Gradient(0, self.height, 0.7, 1.05))


@dataclass(frozen=True)
class GroundPatch:
    """A lawn, dirt or gravel area (terrain) slightly above the base ground."""

    x0: float
    x1: float
    z0: float
    z1: float
    colour: tuple[float, float, float]

    def at(self, t: float) -> GroundPatch:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (self.x0, self.x1, 0.0, 0.05, self.z0, self.z1)

    def draw(self, canvas: Canvas) -> None:
        face(canvas, ground_quad(self.x0, self.x1, self.z0, self.z1, y=0.04), self.colour, ID["terrain"])


@dataclass(frozen=True)
class Skyline:
    """A row of building fronts in one plane z = `z`, facing the camera: the far end of the
    street. Drawn in a single call (fronts, then windows), which is what makes a distant row
    of twenty buildings cheap. Their side walls are left out: at that distance they are
    slivers, and the sky shows there instead, labelled as sky.

    blocks: (x0, x1, height) per building; colours: one RGB per building.
    """

    z: float
    blocks: tuple[tuple[float, float, float], ...]
    colours: tuple[tuple[float, float, float], ...]
    floor: float
    window: tuple[float, float]
    pitch: float
    seed: int

    def at(self, t: float) -> Skyline:
        return self

    def bounds(self) -> tuple[float, ...]:
        xs = [b[0] for b in self.blocks] + [b[1] for b in self.blocks]
        return (min(xs), max(xs), 0.0, max(b[2] for b in self.blocks), self.z, self.z + 0.1)

    def draw(self, canvas: Canvas) -> None:
        rng = np.random.default_rng(self.seed)
        b, z = ID["building"], self.z
        along, origin_y = np.array([1.0, 0, 0]), 0.0
        groups = [([_to_world(np.array([x0, origin_y, z]), along, np.array([[0, 0], [x1 - x0, 0], [x1 - x0, h], [0, h]]))],
                   colour, b, 0.0) for (x0, x1, h), colour in zip(self.blocks, self.colours)]
        cam = canvas.camera
        ww, wh = self.window
        windows = []
        if ww * cam.focal / max(z - cam.z, cam.near) > 0.8:
            for x0, x1, h in self.blocks:
                rows = np.arange(self.floor + 0.9, h - wh - 0.5, self.floor)
                cols = np.arange(0.8, x1 - x0 - ww - 0.5, self.pitch)
                if len(rows) and len(cols):
                    windows.append(_grid_quads(np.array([x0, 0.0, z]), along, cols, rows, ww, wh))
        if windows:
            quads = np.concatenate(windows)
            tint = rng.integers(0, 3, len(quads))
            on = rng.random(len(quads)) < rng.uniform(0.2, 0.5)
            for g, level in enumerate((0.55, 0.8, 1.0)):
                glass = mat.pick(rng, mat.GLASS, 0.1)
                groups += [(quads[(tint == g) & ~on], glass, b, 0.0), (quads[(tint == g) & on], glass, b, level)]
        plane_layers(canvas, np.array([0.0, 0.0, -1.0]), groups, mode="solid", shade=True, gradient=Gradient(0.0, 30.0, 0.85, 1.04))
