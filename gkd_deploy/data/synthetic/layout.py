"""Sampling a street scene: every random choice about what stands where is made here.

`sample_layout(seed)` returns a `SceneLayout`, plain data in metres that does not depend on the
image size, so one seed gives the same street at any resolution and across video frames.
Probabilities are tuned so each of the 19 classes shows up in a fair share of images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from . import materials as mat
from .furniture import SignPost, StreetLight, TrafficLight, Tree
from .people import Person, Rider
from .plots import Building, Fence, GroundPatch, Hedge, Skyline, Wall
from .raster import Canvas
from .street import Street, StreetSurface
from .vehicles import CAR_BODIES, Bus, Car, Tram, Truck, Vehicle


@dataclass(frozen=True)
class CameraSpec:
    """Camera as fractions of the image: focal / width, horizon row / height, cx / width."""

    focal: float
    horizon: float
    cx: float
    elevation: float


@dataclass(frozen=True)
class SkySpec:
    """Sky gradient (zenith and horizon colours) and cloud cover in [0, 1]."""

    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]
    clouds: float


class Item(Protocol):
    """Anything placed in a scene (the street surface, a building, a car, a person)."""

    def bounds(self) -> tuple[float, ...]:
        """World box (x0, x1, y0, y1, z0, z1) enclosing it, for view culling."""

    def at(self, t: float) -> Item:
        """Itself `t` seconds later (moved along for traffic and pedestrians)."""

    def draw(self, canvas: Canvas) -> None:
        """Rasterise itself."""


@dataclass(frozen=True)
class SceneLayout:
    """One street scene: camera, street geometry, the items in it and global looks.

    sun: unit vector towards the sun (face shading); hood: height of the ego car's bonnet as
    a fraction of the image height, or None; ego_speed: m/s the camera drives in a video,
    ego_limit: metres it may drive before it has to stop.
    """

    camera: CameraSpec
    street: Street
    items: tuple[Item, ...]
    sun: tuple[float, float, float]
    sky: SkySpec
    hood: float | None
    ego_speed: float
    ego_limit: float
    seed: int


def _t(c) -> tuple[float, float, float]:
    return tuple(float(v) for v in c)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


class _Lanes:
    """Occupied z intervals per lane, so vehicles do not overlap, and each lane's speed."""

    def __init__(self, speeds: list[float]) -> None:
        self.speeds = speeds
        self.used: dict[object, list[tuple[float, float]]] = {}

    def free(self, lane, z0: float, z1: float, gap: float = 2.0) -> bool:
        return all(z1 + gap <= a or z0 - gap >= b for a, b in self.used.get(lane, []))

    def take(self, lane, z0: float, z1: float) -> None:
        self.used.setdefault(lane, []).append((z0, z1))


def sample_layout(seed: int) -> SceneLayout:
    """All random choices for scene `seed` (deterministic)."""
    rng = np.random.default_rng(seed)
    camera = CameraSpec(focal=rng.uniform(0.78, 1.0), horizon=rng.uniform(0.38, 0.47), cx=rng.uniform(0.48, 0.52),
                        elevation=rng.uniform(1.3, 1.65))
    flags = {"truck": rng.random() < 0.45, "bus": rng.random() < 0.4, "tram": rng.random() < 0.24}
    street = _street(rng, flags["tram"])
    items: list = [_surface(rng, street)]
    for side in (-1, 1):
        items += _plots(rng, street, side)
    items += _backdrop(rng, street)
    items += _street_lights(rng, street) + _trees(rng, street) + _signs(rng, street) + _traffic_lights(rng, street)
    ego_speed = rng.uniform(6.0, 11.0)
    lanes = _Lanes(_lane_speeds(rng, street, ego_speed))
    items += _traffic(rng, street, lanes, flags) + _parked(rng, street, lanes, flags)
    items += _riders(rng, street, lanes) + _pedestrians(rng, street)
    items, ego_limit = _stop_at_the_end(items, street)
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 1.0)
    sun = (np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az))
    return SceneLayout(camera, street, tuple(items), _t(sun), _sky(rng), rng.uniform(0.06, 0.12) if rng.random() < 0.5 else None,
                       ego_speed, ego_limit, seed)


def _stop_at_the_end(items: list, street: Street) -> tuple[list, float]:
    """Give everything driving away from the camera a distance to stop at the end junction.

    In a video, traffic would otherwise drive into the buildings closing the street. In each
    lane the leader stops at the stop line and the others queue up behind it, 2 m apart.
    A lane moves at one speed, so a follower, with at least as much room as the one ahead,
    brakes later and never closes a gap below those 2 m. Returns the items and the camera's
    own limit: at the stop line, or 7 m behind where the last car in its lane stops.
    """
    line = street.end_road_span[0] - 4.5
    lanes: dict[object, list] = {}
    for item in items:
        if isinstance(item, (Vehicle, Rider)) and item.speed > 0 and item.hz > 0.5:
            lane = int(round(item.x / street.lane_width + street.ego_lane))
            lanes.setdefault(lane if 0 <= lane < street.lanes else id(item), []).append(item)
    limits, ego_limit = {}, line - 5.0
    for lane, movers in lanes.items():
        stop_front = line - 1.0
        for it in sorted(movers, key=lambda m: -m.z):
            half = it.length / 2 if isinstance(it, Vehicle) else 1.0
            limits[id(it)] = max(0.0, stop_front - (it.z + half))
            stop_rear = it.z + limits[id(it)] - half
            stop_front = stop_rear - 2.0
            if lane == street.ego_lane:
                ego_limit = min(ego_limit, stop_rear - 7.0)
    items = [replace(it, limit=limits[id(it)]) if id(it) in limits else it for it in items]
    return items, max(ego_limit, 0.0)


def _lane_speeds(rng: np.random.Generator, street: Street, ego_speed: float) -> list[float]:
    """One speed per lane (m/s), so vehicles in a lane keep their gaps in a video; the lane
    ahead of the camera flows a little faster than the camera, so it never catches up."""
    speeds = []
    for lane in range(street.lanes):
        if lane == street.ego_lane:
            speeds.append(ego_speed + rng.uniform(0.3, 1.5))
        else:
            speeds.append(rng.uniform(6.0, 12.0))
    return speeds


# -- the street -------------------------------------------------------------------------------


def _street(rng: np.random.Generator, tram: bool) -> Street:
    lanes = int(rng.choice([2, 2, 3, 4]))
    oncoming = 0 if rng.random() < 0.2 else lanes // 2
    ego = int(rng.integers(oncoming, lanes))
    z_end = rng.uniform(90, 240)
    end_road, cs = rng.uniform(8, 12), rng.uniform(2.5, 4.0)
    crossing = None
    if rng.random() < 0.5:
        c0 = rng.uniform(25, min(80, z_end - 50))
        crossing = (c0, c0 + rng.uniform(9, 14))
    tram_lane = int(rng.integers(0, lanes)) if tram else None
    return Street(
        lane_width=rng.uniform(3.0, 3.6), lanes=lanes, oncoming=oncoming, ego_lane=ego,
        parking=(2.2 if rng.random() < 0.35 else 0.0, 2.2 if rng.random() < 0.6 else 0.0),
        verge=tuple(rng.uniform(1.0, 2.5) if rng.random() < 0.3 else 0.0 for _ in range(2)),
        sidewalk=tuple(rng.uniform(2.0, 4.5) for _ in range(2)),
        z_start=-30.0, z_end=z_end, end_road=end_road, crossing=crossing, crossing_sidewalk=cs, tram_lane=tram_lane,
    )


def _surface(rng: np.random.Generator, street: Street) -> StreetSurface:
    marking = (0.85, 0.85, 0.82) if rng.random() < 0.85 else (0.85, 0.72, 0.2)
    return StreetSurface(street, _t(mat.pick(rng, mat.ASPHALT)), _t(mat.pick(rng, mat.PAVEMENT)), _t(mat.pick(rng, mat.CURB)),
                         _t(mat.pick(rng, mat.GRASS)), marking, _seed(rng))


def _sky(rng: np.random.Generator) -> SkySpec:
    kind = rng.choice(["blue", "cloudy", "overcast"], p=[0.45, 0.35, 0.2])
    if kind == "overcast":
        g = rng.uniform(0.62, 0.82)
        return SkySpec(_t(np.array([g, g, g + 0.03]) * 0.92), _t([g + 0.05, g + 0.05, g + 0.06]), rng.uniform(0.6, 1.0))
    zenith = np.array([0.25, 0.45, 0.8]) * rng.uniform(0.85, 1.15) + rng.uniform(-0.04, 0.04, 3)
    horizon = np.array([0.72, 0.82, 0.93]) * rng.uniform(0.92, 1.05)
    return SkySpec(_t(np.clip(zenith, 0, 1)), _t(np.clip(horizon, 0, 1)), rng.uniform(0.0, 0.25) if kind == "blue" else rng.uniform(0.3, 0.7))


# -- plots along the street ------------------------------------------------------------------


def _building(rng, x_face: float, side: int, z0: float, z1: float, shop_ok: bool = True, depth=None, tall=None) -> Building:
    """A building whose street facade is at x_face, extending away from the road on `side`."""
    depth = rng.uniform(10, 20) if depth is None else depth
    tier = rng.choice(3, p=[0.4, 0.45, 0.15]) if tall is None else tall
    height = [rng.uniform(6, 12), rng.uniform(12, 22), rng.uniform(22, 40)][tier]
    ww = rng.uniform(0.9, 1.5)
    x0, x1 = sorted((x_face, x_face + side * depth))
    return Building(x0, x1, z0, z1, height, _t(mat.pick(rng, mat.FACADE)), rng.uniform(2.9, 3.5), (ww, rng.uniform(1.2, 1.7)),
                    rng.uniform(ww + 0.8, ww + 2.6), shop_ok and rng.random() < 0.4, _seed(rng))


def _plots(rng: np.random.Generator, street: Street, side: int) -> list:
    """Fill each plot span on one side with runs of buildings, parks and walled or fenced lots."""
    items: list = []
    xf = street.frontage_x(side)
    for span0, span1 in street.plot_spans():
        z = span0
        while z < span1 - 1.0:
            kind = rng.choice(["building", "park", "lot"], p=[0.6, 0.18, 0.22])
            length = {"building": rng.uniform(8, 30), "park": rng.uniform(15, 40), "lot": rng.uniform(10, 30)}[kind]
            z1 = min(z + length, span1)
            if span1 - z1 < 6:  # do not leave slivers
                z1 = span1
            items += {"building": _building_plot, "park": _park_plot, "lot": _lot_plot}[kind](rng, xf, side, z, z1)
            z = z1 + (rng.uniform(2, 5) if rng.random() < 0.2 else 0.0)
    return items


def _building_plot(rng, xf, side, z0, z1) -> list:
    """A building at the frontage, or set back behind a front yard with hedge or railing."""
    if rng.random() < 0.7:
        return [_building(rng, xf, side, z0, z1)]
    setback = rng.uniform(2, 5)
    items = [GroundPatch(*sorted((xf, xf + side * setback)), z0, z1, _t(mat.pick(rng, mat.GRASS))),
             _building(rng, xf + side * setback, side, z0, z1, shop_ok=False)]
    edge = xf + side * 0.3
    if rng.random() < 0.5:
        items.append(Hedge(*sorted((edge, edge + side * 0.7)), z0, z1, rng.uniform(0.8, 1.6), _t(mat.pick(rng, mat.LEAF))))
    else:
        items.append(Fence(edge, z0, z1, rng.uniform(0.9, 1.4), "railing", _t(mat.pick(rng, mat.FENCE_METAL)), _seed(rng)))
    return items


def _tree(rng, x: float, z: float, big: bool = False) -> Tree:
    crown = rng.uniform(1.5, 3.2) * (1.3 if big else 1.0)
    height = max(rng.uniform(5, 12) * (1.2 if big else 1.0), 2 * crown + 2.5)  # keep the trunk visible
    return Tree(x, z, height, crown, rng.uniform(0.2, 0.4), rng.random() < 0.15,
                _t(mat.pick(rng, mat.LEAF, 0.12)), _t(mat.pick(rng, mat.BARK)), _seed(rng))


def _boundary(rng, x: float, side: int, z0: float, z1: float, p_wall: float) -> list:
    """A wall, fence or hedge along the frontage line (or nothing)."""
    u = rng.random()
    if u < p_wall:
        return [Wall(x + side * 0.15, z0, z1, rng.uniform(1.0, 2.8), rng.uniform(0.2, 0.35), _t(mat.pick(rng, mat.WALL)),
                     rng.random() < 0.5, _seed(rng))]
    if u < p_wall + 0.5:
        kind = rng.choice(["boards", "railing", "mesh"], p=[0.35, 0.35, 0.3])
        palette = mat.FENCE_WOOD if kind == "boards" else mat.FENCE_METAL
        return [Fence(x + side * 0.15, z0, z1, rng.uniform(1.0, 2.2), str(kind), _t(mat.pick(rng, palette)), _seed(rng))]
    if u < p_wall + 0.65:
        return [Hedge(*sorted((x + side * 0.1, x + side * 0.9)), z0, z1, rng.uniform(0.8, 2.0), _t(mat.pick(rng, mat.LEAF)))]
    return []


def _park_plot(rng, xf, side, z0, z1) -> list:
    """Lawn with trees and bushes, maybe fenced, maybe with buildings far behind."""
    items: list = [GroundPatch(*sorted((xf, xf + side * 45)), z0, z1, _t(mat.pick(rng, mat.GRASS)))]
    for _ in range(max(1, int((z1 - z0) / rng.uniform(6, 11)))):
        items.append(_tree(rng, xf + side * rng.uniform(1.5, 25), rng.uniform(z0, z1), big=rng.random() < 0.4))
    for _ in range(int(rng.integers(0, 4))):
        x = xf + side * rng.uniform(1, 12)
        zb = rng.uniform(z0, z1 - 1.5)
        items.append(Hedge(*sorted((x, x + side * rng.uniform(1, 3))), zb, zb + rng.uniform(1, 3), rng.uniform(0.5, 1.3), _t(mat.pick(rng, mat.LEAF))))
    items += _boundary(rng, xf, side, z0, z1, p_wall=0.15)
    if rng.random() < 0.5:
        items.append(_building(rng, xf + side * rng.uniform(30, 45), side, z0, z1, shop_ok=False))
    return items


def _lot_plot(rng, xf, side, z0, z1) -> list:
    """A walled or fenced lot: dirt or grass behind, with a set-back building or trees."""
    items: list = _boundary(rng, xf, side, z0, z1, p_wall=0.45) or [Fence(xf + side * 0.15, z0, z1, 1.8, "mesh", _t(mat.pick(rng, mat.FENCE_METAL)), _seed(rng))]
    ground = mat.pick(rng, mat.GRASS if rng.random() < 0.5 else [(0.5, 0.42, 0.32), (0.58, 0.52, 0.42)])
    items.append(GroundPatch(*sorted((xf + side * 0.3, xf + side * 30)), z0, z1, _t(ground)))
    if rng.random() < 0.6:
        items.append(_building(rng, xf + side * rng.uniform(6, 15), side, z0 + 1, z1 - 1, shop_ok=False))
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            items.append(_tree(rng, xf + side * rng.uniform(2, 6), rng.uniform(z0, z1)))
    return items


def _backdrop(rng: np.random.Generator, street: Street) -> list:
    """A skyline (or a belt of trees with a skyline behind) closing the view at the street's end."""
    z = street.z_end
    reach = 0.75 * z + 40  # wider than the view at that distance for any sampled focal length
    if rng.random() < 0.25:
        trees = [_tree(rng, x, z + rng.uniform(1, 6), big=True) for x in np.arange(-reach, reach, rng.uniform(6, 12))]
        return trees + [_skyline(rng, z + 60, 1.3 * reach, heights=(12, 45))]
    return [_skyline(rng, z, reach, heights=(8, 38))]


def _skyline(rng: np.random.Generator, z: float, reach: float, heights: tuple[float, float]) -> Skyline:
    blocks, colours = [], []
    x = -reach
    while x < reach:
        width = rng.uniform(10, 30)
        blocks.append((float(x), float(x + width), float(rng.uniform(*heights))))
        colours.append(_t(mat.pick(rng, mat.FACADE)))
        x += width
    ww = rng.uniform(0.9, 1.5)
    return Skyline(z, tuple(blocks), tuple(colours), rng.uniform(2.9, 3.5), (ww, rng.uniform(1.2, 1.7)), rng.uniform(ww + 0.8, ww + 2.6), _seed(rng))


# -- street furniture -------------------------------------------------------------------------


def _curbside_x(rng, street: Street, side: int, offset=(0.5, 0.9)) -> float:
    """x of something standing on the sidewalk (or verge) just beside the curb."""
    i = 0 if side < 0 else 1
    if street.verge[i] > 0:
        return street.curb_x(side) + side * street.verge[i] / 2
    return street.curb_x(side) + side * rng.uniform(*offset)


def _in_junction(street: Street, z: float, margin: float = 1.0) -> bool:
    return any(a - margin < z < b + margin for a, b in street.blocked_spans())


def _street_lights(rng: np.random.Generator, street: Street) -> list:
    if rng.random() > 0.8:
        return []
    items = []
    lamp = (1.0, 0.72, 0.38) if rng.random() < 0.5 else (0.95, 0.95, 1.0)
    colour = _t(mat.pick(rng, mat.METAL))
    sides = [[-1], [1], [-1, 1]][int(rng.integers(3))]
    spacing, height = rng.uniform(18, 35), rng.uniform(6.5, 9)
    for side in sides:
        for z in np.arange(rng.uniform(-10, spacing), street.z_end - 10, spacing):
            if not _in_junction(street, z):
                items.append(StreetLight(_curbside_x(rng, street, side), float(z), height, -side * rng.uniform(1.2, 2.4), colour, lamp))
    return items


def _trees(rng: np.random.Generator, street: Street) -> list:
    """Rows of street trees in the verge or in tree pits along the curb."""
    items = []
    for side in (-1, 1):
        if rng.random() > 0.55:
            continue
        spacing = rng.uniform(7, 14)
        leaf = mat.pick(rng, mat.LEAF, 0.12)
        for z in np.arange(rng.uniform(-10, spacing), street.z_end - 15, spacing):
            if _in_junction(street, z, 3.0):
                continue
            t = _tree(rng, _curbside_x(rng, street, side, (1.0, 1.4)), float(z))
            items.append(Tree(t.x, t.z, t.height, t.crown, t.trunk, False, _t(mat.vary(rng, leaf, 0.08)), t.bark, t.seed))
    return items


SIGN_KINDS = ["prohibitory", "mandatory", "warning", "yield", "stop", "info", "priority"]


def _signs(rng: np.random.Generator, street: Street) -> list:
    items = []
    for _ in range(int(rng.integers(1, 6))):
        side = -1 if rng.random() < 0.35 else 1
        z = rng.uniform(8, 60)
        if _in_junction(street, z):
            continue
        kinds = [str(rng.choice(SIGN_KINDS))]
        if rng.random() < 0.3:
            kinds.append(str(rng.choice(["info", "street", "prohibitory"])))
        items.append(SignPost(_curbside_x(rng, street, side, (0.3, 0.7)), z, rng.uniform(2.3, 3.2), tuple(kinds),
                              rng.uniform(0.55, 0.85), side < 0 and rng.random() < 0.4))
    return items


def _traffic_lights(rng: np.random.Generator, street: Street) -> list:
    """Signals at the junctions (near corners, often a mast arm; far corners) or at a crossing."""
    state = str(rng.choice(["red", "amber", "green"], p=[0.45, 0.1, 0.45]))
    housing = (0.12, 0.12, 0.12) if rng.random() < 0.6 else (0.18, 0.25, 0.18)
    stops = ([street.crossing[0]] if street.crossing else []) + ([street.end_road_span[0]] if rng.random() < 0.4 else [])
    if not stops and rng.random() < 0.3:
        stops = [rng.uniform(20, 50)]
    items = []
    lane_xs = [street.lane_x(i) for i in range(street.oncoming, street.lanes)]
    for z_stop in stops:
        for side in (-1, 1):
            x = street.curb_x(side) + side * 0.6
            arm = 0.0
            heads: tuple[float, ...] = ()
            if side > 0 and rng.random() < 0.6:
                arm = min(lane_xs) - x - 0.5
                heads = tuple(lx - x for lx in lane_xs)
            items.append(TrafficLight(x, z_stop - 1.0, rng.uniform(5.0, 6.0) if arm else rng.uniform(3.0, 3.8), rng.uniform(2.6, 3.2),
                                      arm, heads, state, True, housing))
        if street.crossing and z_stop == street.crossing[0] and rng.random() < 0.7:
            for side in (-1, 1):
                items.append(TrafficLight(street.curb_x(side) + side * 0.6, street.crossing[1] + 1.0, rng.uniform(3.0, 3.8),
                                          rng.uniform(2.6, 3.2), 0.0, (), state, side > 0 or rng.random() < 0.5, housing))
    return items


# -- traffic and people ---------------------------------------------------------------------


def _car(rng, x, z, hz, speed, lights) -> Car:
    body = str(rng.choice(list(CAR_BODIES), p=[0.4, 0.3, 0.2, 0.1]))
    length = {"sedan": rng.uniform(4.3, 4.9), "hatch": rng.uniform(3.7, 4.3), "suv": rng.uniform(4.4, 4.9), "van": rng.uniform(4.8, 5.3)}[body]
    return Car(x, z, 0.0, hz, length, rng.uniform(1.7, 1.95), _t(mat.pick(rng, mat.CAR_PAINT)), speed, lights, _seed(rng), body, rng.uniform(0.95, 1.05))


def _big_vehicle(rng, kind: str, x: float, z: float, hz: float, speed: float):
    if kind == "truck":
        return Truck(x, z, 0.0, hz, rng.uniform(6.5, 9.5), 2.45, _t(mat.pick(rng, mat.TRUCK_BOX)), speed, speed > 0, _seed(rng),
                     rng.uniform(3.0, 3.9), _t(mat.pick(rng, mat.CAR_PAINT)))
    if kind == "bus":
        return Bus(x, z, 0.0, hz, rng.uniform(11, 13.5), 2.55, _t(mat.pick(rng, mat.BUS_PAINT)), speed, True, _seed(rng), rng.uniform(2.95, 3.25))
    cars = int(rng.integers(2, 4))
    return Tram(x, z, 0.0, hz, cars * rng.uniform(9, 11), 2.5, _t(mat.pick(rng, mat.TRAM_PAINT)), speed, True, _seed(rng), rng.uniform(3.3, 3.6), cars)


LENGTH_GUESS = {"car": 5.3, "truck": 9.5, "bus": 13.5, "tram": 33.0}


def _traffic(rng: np.random.Generator, street: Street, lanes: _Lanes, flags: dict) -> list:
    """Moving vehicles in the lanes: away from us in our lanes, towards us in oncoming ones."""
    items = []
    z_max = street.end_road_span[0] - 6
    wanted = [k for k in ("tram", "bus", "truck") if flags[k]]
    for kind in wanted:  # place the rarer big vehicles first so they always find room
        lane = street.tram_lane if kind == "tram" else int(rng.integers(0, street.lanes))
        items += _place(rng, street, lanes, kind, lane, 14 if lane == street.ego_lane else 8, min(z_max, 75))
    for lane in range(street.lanes):
        for _ in range(int(rng.poisson(1.4))):
            items += _place(rng, street, lanes, "car", lane, 12 if lane == street.ego_lane else 5, z_max)
    return items


def _place(rng, street, lanes, kind, lane, z_min, z_max) -> list:
    """Try a few positions for one vehicle in a lane; [] when the lane is full."""
    hz = -1.0 if lane < street.oncoming else 1.0
    half = LENGTH_GUESS[kind] / 2
    for _ in range(6):
        if z_max - half <= z_min + half:
            return []
        z = rng.uniform(z_min + half, z_max - half)
        if lanes.free(lane, z - half, z + half, gap=3.0):
            lanes.take(lane, z - half, z + half)
            speed = lanes.speeds[lane]
            x = street.lane_x(lane) + rng.uniform(-0.3, 0.3)
            if kind == "car":
                return [_car(rng, x, z, hz, speed, True)]
            return [_big_vehicle(rng, kind, street.lane_x(lane) if kind == "tram" else x, z, hz, speed)]
    return []


def _parked(rng: np.random.Generator, street: Street, lanes: _Lanes, flags: dict) -> list:
    """Rows of parked cars (the odd truck or van) in the parking strips."""
    items = []
    for side, i in ((-1, 0), (1, 1)):
        if street.parking[i] <= 0:
            continue
        x = street.curb_x(side) - side * 1.1
        hz = 1.0 if side > 0 or street.oncoming == 0 else -1.0
        z = rng.uniform(-5, 4)
        while z < min(street.end_road_span[0] - 8, 90):
            if street.crossing and street.crossing[0] - 8 < z < street.crossing[1] + 2:
                z = street.crossing[1] + 3
                continue
            if rng.random() < 0.25:  # an empty space
                z += rng.uniform(3, 8)
                continue
            big = z > 12 and rng.random() < 0.1  # a parked truck right beside the camera would fill the view
            v = _big_vehicle(rng, "truck", x, 0, hz, 0.0) if big else _car(rng, x + rng.uniform(-0.15, 0.15), 0, hz, 0.0, False)
            items.append(_moved_to(v, z + v.length / 2))
            lanes.take(("park", side), z, z + v.length)
            z += v.length + rng.uniform(0.6, 3.0)
    return items


def _moved_to(v, z: float):
    return replace(v, z=z)


def _body_colours(rng) -> dict:
    return {"shirt": _t(mat.pick(rng, mat.CLOTH, 0.1)), "trousers": _t(mat.pick(rng, mat.TROUSERS, 0.1)), "skin": _t(mat.pick(rng, mat.SKIN, 0.05))}


def _sidewalk_point(rng, street: Street, side: int, z_range=(6, 70)) -> tuple[float, float]:
    inner, outer = street.sidewalk_x(side)
    return float(rng.uniform(min(inner, outer) + 0.4, max(inner, outer) - 0.4)), float(rng.uniform(*z_range))


def _pedestrians(rng: np.random.Generator, street: Street) -> list:
    """People walking or standing on the sidewalks, in small groups, or crossing at a zebra."""
    items = []
    n = 0 if rng.random() < 0.12 else int(rng.integers(1, 9))
    for _ in range(n):
        side = -1 if rng.random() < 0.5 else 1
        x, z = _sidewalk_point(rng, street, side)
        for _ in range(1 + (int(rng.integers(1, 3)) if rng.random() < 0.3 else 0)):
            items.append(_person(rng, x, z, base=street.curb))
            x, z = x + rng.uniform(-0.8, 0.8), z + rng.uniform(-0.6, 0.6)
    zebras = [z for z in ([street.crossing[0]] if street.crossing else []) + [street.end_road_span[0]]]
    if rng.random() < 0.3:
        zc = zebras[0] - 2.2
        for _ in range(int(rng.integers(1, 4))):
            p = _person(rng, rng.uniform(street.curb_x(-1), street.curb_x(1)), zc + rng.uniform(-1, 1))
            direction = 1.0 if rng.random() < 0.5 else -1.0
            items.append(replace(p, hx=direction, hz=0.0, speed=rng.uniform(1.0, 1.6)))
    return items


def _person(rng, x: float, z: float, base: float = 0.0) -> Person:
    walking = rng.random() < 0.75
    if walking:
        hx, hz = 0.0, (1.0 if rng.random() < 0.5 else -1.0)
    else:
        a = rng.uniform(0, 2 * np.pi)
        hx, hz = float(np.sin(a)), float(np.cos(a))
    height = rng.uniform(1.1, 1.4) if rng.random() < 0.08 else rng.uniform(1.55, 1.95)
    return Person(x, z, hx, hz, height, rng.uniform(0.9, 1.6) if walking else 0.0, rng.uniform(0, 2 * np.pi),
                  hair=_t(mat.pick(rng, mat.HAIR)), bag=bool(rng.random() < 0.3), base=base, **_body_colours(rng))


def _riders(rng: np.random.Generator, street: Street, lanes: _Lanes) -> list:
    """Cyclists at the edge of the outer lanes or crossing, motorcyclists in the lanes,
    parked bikes. Riders in a lane take its speed and a slot in it, like the cars."""
    items = []
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.2:  # crossing the street
                x, z = rng.uniform(street.curb_x(-1), street.curb_x(1)), rng.uniform(10, 40)
                items.append(_rider(rng, x, z, float(rng.choice([-1, 1])), 0.0, motor=False, speed=rng.uniform(3, 6)))
                continue
            side = 1 if rng.random() < 0.65 else -1
            lane = street.lanes - 1 if side > 0 else 0
            z = rng.uniform(12 if lane == street.ego_lane else 7, 60)
            if lanes.free(lane, z - 1.2, z + 1.2):
                lanes.take(lane, z - 1.2, z + 1.2)
                x = street.lane_x(lane) + side * (street.lane_width / 2 - 0.7)  # near the lane's outer edge
                hz = -1.0 if lane < street.oncoming else 1.0
                items.append(_rider(rng, x, z, 0.0, hz, motor=False, speed=lanes.speeds[lane]))
    if rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 3))):
            lane = int(rng.integers(0, street.lanes))
            z = rng.uniform(12, 60)
            if lanes.free(lane, z - 1.2, z + 1.2):
                lanes.take(lane, z - 1.2, z + 1.2)
                hz = -1.0 if lane < street.oncoming else 1.0
                items.append(_rider(rng, street.lane_x(lane) + rng.uniform(-0.8, 0.8), z, 0.0, hz, motor=True, speed=lanes.speeds[lane]))
    if rng.random() < 0.3:  # parked bicycles (or a motorcycle) side by side, across the sidewalk
        side = 1 if rng.random() < 0.6 else -1
        x, z = _sidewalk_point(rng, street, side, (8, 40))
        motor = rng.random() < 0.25
        for k in range(int(rng.integers(1, 4))):
            items.append(_rider(rng, x, z + k * (1.0 if motor else 0.7), float(side), 0.0, motor=motor, speed=0.0, mounted=False,
                                base=street.curb))
    return items


def _rider(rng, x, z, hx, hz, *, motor: bool, speed: float, mounted: bool = True, base: float = 0.0) -> Rider:
    frame = mat.pick(rng, mat.CAR_PAINT if motor else mat.BIKE_FRAME)
    helmet = mat.pick(rng, [(0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.8, 0.1, 0.1), (0.1, 0.2, 0.6)]) if motor or rng.random() < 0.4 else mat.pick(rng, mat.HAIR)
    c = _body_colours(rng)
    return Rider(float(x), float(z), hx, hz, motor, mounted, speed if mounted else 0.0, rng.uniform(0, 2 * np.pi), _t(frame),
                 rng.uniform(1.6, 1.9), c["shirt"], c["trousers"], c["skin"], _t(helmet), base)
