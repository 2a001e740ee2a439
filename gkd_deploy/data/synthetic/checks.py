"""Argument checks shared by the public functions: each failure is a `ConfigError` that names
the field and says what would be accepted."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import ConfigError
from ...size import Size


def check_int(value: object, field: str, minimum: int = 0) -> int:
    """A whole number >= minimum (bools are rejected: `True` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{field} must be at least {minimum}, got {value}")
    return value


def check_size(size: object, field: str = "size") -> tuple[int, int]:
    """(width, height): two positive whole numbers, each a multiple of 8 (patch-based
    segmenters downsample by powers of two), at least 32 x 16."""
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise ConfigError(f"{field} must be (width, height), got {size!r}")
    width, height = Size(height=size[1], width=size[0], what=field).wh
    for name, value, least in (("width", width, 32), ("height", height, 16)):
        if value % 8:
            raise ConfigError(f"{field}: {name} must be a multiple of 8, got {value} (try {max(8, round(value / 8) * 8)})")
        if value < least:
            raise ConfigError(f"{field}: {name} must be at least {least}, got {value}")
    return width, height


def check_choice(value: object, field: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)
