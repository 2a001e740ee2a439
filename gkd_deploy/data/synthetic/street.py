"""The street itself: lane geometry and the ground (road, markings, curbs, sidewalks, verges).

The camera drives in lane `ego_lane` at x = 0. Lanes run along +z; the `oncoming` leftmost
lanes carry traffic towards the camera (right-hand traffic). Optional parking strips lie
between the outer lanes and the curbs, then an optional grass verge, then the sidewalk, whose
outer edge is the frontage line where buildings, walls and parks begin. A cross street may cut
through at `crossing`, and the street ends in a T-junction in front of the backdrop at `z_end`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classes import CITYSCAPES
from . import materials as mat
from .primitives import UP, face, front_quad, ground_quad, plane_layers, wall_quad
from .raster import Canvas

ID = {name: i for i, name in enumerate(CITYSCAPES.names)}
FAR_X = 250.0  # lateral extent of ground planes; far enough to reach the image edges at z_end


@dataclass(frozen=True)
class Street:
    """Lane and sidewalk geometry in metres (see the module docstring)."""

    lane_width: float
    lanes: int
    oncoming: int
    ego_lane: int
    parking: tuple[float, float]
    verge: tuple[float, float]
    sidewalk: tuple[float, float]
    z_start: float
    z_end: float
    end_road: float
    crossing: tuple[float, float] | None
    crossing_sidewalk: float
    tram_lane: int | None
    curb: float = 0.15

    def lane_x(self, lane: int) -> float:
        """Centre x of a lane (lanes numbered from the left)."""
        return (lane - self.ego_lane) * self.lane_width

    def curb_x(self, side: int) -> float:
        """x of the curb line on the left (side -1) or right (side +1)."""
        if side < 0:
            return self.lane_x(0) - self.lane_width / 2 - self.parking[0]
        return self.lane_x(self.lanes - 1) + self.lane_width / 2 + self.parking[1]

    def sidewalk_x(self, side: int) -> tuple[float, float]:
        """(inner, outer) x of a sidewalk: after the verge, up to the frontage line."""
        i = 0 if side < 0 else 1
        inner = self.curb_x(side) + side * self.verge[i]
        return inner, inner + side * self.sidewalk[i]

    def frontage_x(self, side: int) -> float:
        """x where the plots along the street begin (the sidewalk's outer edge)."""
        return self.sidewalk_x(side)[1]

    @property
    def end_road_span(self) -> tuple[float, float]:
        """z range of the cross road at the T-junction at the end of the street."""
        z1 = self.z_end - self.crossing_sidewalk
        return z1 - self.end_road, z1

    def blocked_spans(self) -> list[tuple[float, float]]:
        """z ranges where no plots line the street (the crossing and the end junction)."""
        spans = [(self.end_road_span[0] - self.crossing_sidewalk, np.inf)]
        if self.crossing is not None:
            c0, c1 = self.crossing
            spans.append((c0 - self.crossing_sidewalk, c1 + self.crossing_sidewalk))
        return spans

    def plot_spans(self) -> list[tuple[float, float]]:
        """z ranges along the street where plots (buildings, parks, lots) stand."""
        spans, z = [], self.z_start
        for b0, b1 in sorted(self.blocked_spans()):
            if b0 > z:
                spans.append((z, b0))
            z = max(z, b1)
        return spans

    def road_spans(self) -> list[tuple[float, float]]:
        """z ranges of the main street outside junctions (where curbs and markings run)."""
        spans, z = [], self.z_start
        ends = [self.end_road_span]
        if self.crossing is not None:
            ends.append(self.crossing)
        for b0, b1 in sorted(ends):
            spans.append((z, b0))
            z = b1
        return spans


@dataclass(frozen=True)
class StreetSurface:
    """Everything on the ground: asphalt, markings, wear, tram rails, curbs, verges, sidewalks,
    the cross roads and the open ground beyond the plots (terrain)."""

    street: Street
    asphalt: tuple[float, float, float]
    pavement: tuple[float, float, float]
    curb_colour: tuple[float, float, float]
    grass: tuple[float, float, float]
    marking: tuple[float, float, float]
    seed: int

    def at(self, t: float) -> StreetSurface:
        return self

    def bounds(self) -> tuple[float, ...]:
        return (-FAR_X, FAR_X, 0.0, self.street.curb, self.street.z_start, self.street.z_end + 600.0)

    def draw(self, canvas: Canvas) -> None:
        rng = np.random.default_rng(self.seed)
        s = self.street
        road = ID["road"]
        # The road plane: asphalt, cross roads, then everything painted or patched on it.
        groups = [([ground_quad(s.curb_x(-1), s.curb_x(1), s.z_start, s.end_road_span[1])], self.asphalt, road, 0.0)]
        for z0, z1 in [s.crossing, s.end_road_span] if s.crossing else [s.end_road_span]:
            groups.append(([ground_quad(-FAR_X, FAR_X, z0, z1)], mat.vary(rng, np.array(self.asphalt)), road, 0.0))
        groups += self._wear(rng)
        if s.tram_lane is not None:
            groups += self._tram_rails()
        groups.append((self._markings(rng), self.marking, road, 0.0))
        plane_layers(canvas, UP, groups, mode="solid", shade=True)
        self._curbs_and_sidewalks(canvas, rng)
        # Open ground everywhere else (seen between buildings, behind fences, beyond the end).
        face(canvas, ground_quad(-FAR_X, FAR_X, s.z_start, s.z_end + 600.0), self.grass, ID["terrain"])

    # -- road ------------------------------------------------------------------------------

    def _wear(self, rng: np.random.Generator) -> list:
        """Patched asphalt and manhole covers: road-labelled groups that break up the surface."""
        s = self.street
        patches = []
        for _ in range(int(rng.integers(2, 7))):
            x0 = rng.uniform(s.curb_x(-1), s.curb_x(1) - 1.0)
            z0 = rng.uniform(3.0, 80.0)
            patches.append(ground_quad(x0, x0 + rng.uniform(0.8, 4.0), z0, z0 + rng.uniform(1.0, 8.0)))
        covers = []
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for _ in range(int(rng.integers(0, 4))):
            cx, cz = rng.uniform(s.curb_x(-1) + 1, s.curb_x(1) - 1), rng.uniform(5.0, 60.0)
            covers.append(np.column_stack([cx + 0.35 * np.cos(t), np.zeros(12), cz + 0.35 * np.sin(t)]))
        tone = rng.choice([0.82, 1.12])
        return [(patches, np.array(self.asphalt) * tone, ID["road"], 0.0), (covers, (0.22, 0.22, 0.23), ID["road"], 0.0)]

    def _markings(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Lane dividers, the centre line, edge lines, stop lines and zebra crossings."""
        s = self.street
        w = 0.13
        dash, gap = rng.uniform(2.5, 4.0), rng.uniform(5.0, 8.0)
        phase = rng.uniform(0, dash + gap)
        double = rng.random() < 0.5
        quads = []
        for lane in range(s.lanes - 1):
            x = s.lane_x(lane) + s.lane_width / 2
            for z0, z1 in s.road_spans():
                if lane + 1 == s.oncoming:  # centre line between the directions: solid, often doubled
                    offsets = (-0.12, 0.12) if double else (0.0,)
                    quads += [ground_quad(x + o - w / 2, x + o + w / 2, z0, z1) for o in offsets]
                else:
                    zs = np.arange(z0 + phase, z1, dash + gap)
                    quads += [ground_quad(x - w / 2, x + w / 2, a, min(a + dash, z1)) for a in zs]
        for side, park in ((-1, s.parking[0]), (1, s.parking[1])):
            if park > 0:  # solid edge line between the traffic lane and the parking strip
                x = s.curb_x(side) - side * park
                quads += [ground_quad(x - w / 2, x + w / 2, z0, z1) for z0, z1 in s.road_spans()]
        for z_line in self._stop_lines():
            x0, x1 = s.lane_x(s.oncoming) - s.lane_width / 2, s.lane_x(s.lanes - 1) + s.lane_width / 2
            quads.append(ground_quad(x0, x1, z_line - 0.4, z_line))
            quads += self._zebra(z_line + 0.8)
        return quads

    def _stop_lines(self) -> list[float]:
        """z of the stop lines: just before the cross street and the end junction."""
        s = self.street
        ends = [s.end_road_span[0]] + ([s.crossing[0]] if s.crossing else [])
        return [z - 4.5 for z in ends if z - 4.5 > s.z_start]

    def _zebra(self, z0: float) -> list[np.ndarray]:
        """(4, 3) quads of a zebra crossing across the whole road starting at z0."""
        s = self.street
        xs = np.arange(s.curb_x(-1) + 0.3, s.curb_x(1) - 0.5, 1.0)
        return [ground_quad(x, x + 0.5, z0, z0 + 3.0) for x in xs]

    def _tram_rails(self) -> list:
        """Two rails in the tram's lane: a light concrete strip with dark steel grooves."""
        s = self.street
        x = s.lane_x(s.tram_lane)
        strips, rails = [], []
        for z0, z1 in s.road_spans():
            strips.append(ground_quad(x - 0.95, x + 0.95, z0, z1))
            rails += [ground_quad(x + r - 0.05, x + r + 0.05, z0, z1) for r in (-0.72, 0.72)]
        return [(strips, np.array(self.asphalt) * 1.25, ID["road"], 0.0), (rails, (0.18, 0.18, 0.2), ID["road"], 0.0)]

    # -- curbs and sidewalks ------------------------------------------------------------------

    def _curbs_and_sidewalks(self, canvas: Canvas, rng: np.random.Generator) -> None:
        """Raised sidewalks (one plane: paving, joints, curb stones, grass verges) and the curb
        faces (labelled sidewalk, as in Cityscapes)."""
        s = self.street
        sw_id, terrain, h = ID["sidewalk"], ID["terrain"], s.curb
        tiles = rng.uniform(0.8, 2.0)
        paving, joints, curb_tops, verges = [], [], [], []
        for side in (-1, 1):
            i = 0 if side < 0 else 1
            curb, (inner, outer) = s.curb_x(side), s.sidewalk_x(side)
            faces_x = [wall_quad(curb, z0, z1, 0.0, h) for z0, z1 in s.road_spans()]
            plane_layers(canvas, (-side, 0, 0), [(faces_x, self.curb_colour, sw_id, 0.0)], mode="solid", shade=True)
            for z0, z1 in s.road_spans():
                paving.append(ground_quad(*sorted((inner, outer)), z0, z1, y=h))
                joints += [ground_quad(*sorted((inner, outer)), z, z + 0.06, y=h) for z in np.arange(z0, z1, tiles)]
                if s.verge[i] > 0:
                    verges.append(ground_quad(*sorted((curb, inner)), z0, z1, y=h))
                    curb_tops.append(ground_quad(*sorted((curb, curb + side * 0.25)), z0, z1, y=h))
            paving += self._junction_corners(canvas, side)
        paving.append(ground_quad(s.curb_x(-1), s.curb_x(1), s.end_road_span[1], s.z_end, y=h))
        plane_layers(canvas, UP, [(paving, self.pavement, sw_id, 0.0), (joints, np.array(self.pavement) * 0.8, sw_id, 0.0),
                                  (verges, self.grass, terrain, 0.0), (curb_tops, self.curb_colour, sw_id, 0.0)], mode="solid", shade=True)

    def _junction_corners(self, canvas: Canvas, side: int) -> list[np.ndarray]:
        """Sidewalk quads along the cross streets; draws their curb faces facing the camera."""
        s = self.street
        h, w = s.curb, s.crossing_sidewalk
        x_curb, x_far = s.curb_x(side), side * FAR_X
        spans = [(s.end_road_span[1], s.end_road_span[1] + w)]
        if s.crossing is not None:
            spans += [(s.crossing[0] - w, s.crossing[0]), (s.crossing[1], s.crossing[1] + w)]
        # Curb faces of the far corners (and the end sidewalk) look back towards the camera.
        far_edges = [s.end_road_span[1]] + ([s.crossing[1]] if s.crossing else [])
        fronts = [front_quad(*sorted((x_curb, x_far)), 0.0, h, z) for z in far_edges]
        if side < 0:  # the end sidewalk spans the road too
            fronts.append(front_quad(s.curb_x(-1), s.curb_x(1), 0.0, h, s.end_road_span[1]))
        for quad in fronts:
            face(canvas, quad, self.curb_colour, ID["sidewalk"])
        return [ground_quad(*sorted((x_curb, x_far)), z0, z1, y=h) for z0, z1 in spans]
