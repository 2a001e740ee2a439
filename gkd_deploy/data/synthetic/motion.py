"""How far things move in a video: cruise, then brake evenly to a stop at a limit."""

from __future__ import annotations

import math

BRAKING_DISTANCE = 15.0  # metres; a gentle stop from city speeds


def travelled(speed: float, t: float, limit: float = math.inf, braking: float = BRAKING_DISTANCE) -> float:
    """Metres covered after `t` seconds at `speed` m/s by a driver who must stop after
    `limit` metres (a stop line, the car in front): constant speed, then constant
    deceleration over the last `braking` metres (less if the limit is nearer)."""
    if speed <= 0 or t <= 0:
        return 0.0
    if math.isinf(limit):
        return speed * t
    braking = min(braking, max(limit, 0.0))
    cruise = max(limit, 0.0) - braking
    if speed * t <= cruise:
        return speed * t
    if braking <= 0:
        return cruise
    decel = speed * speed / (2 * braking)
    tb = min(t - cruise / speed, speed / decel)
    return cruise + speed * tb - 0.5 * decel * tb * tb
