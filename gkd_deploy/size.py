"""An image or model input size: one type instead of a parser and a check per command.

People and the CLI write WIDTHxHEIGHT ("1024x512"); arrays, and the library's (height, width)
tuples, put the height first. `Size` holds both names, so no caller has to remember the order.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

from gkd_deploy.errors import ConfigError


@dataclass(frozen=True)
class Size:
    height: int
    width: int
    what: str = "size"  # how error messages name it (e.g. "--size", "calibration input size")

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{self.what}: the {name} must be a positive whole number of pixels, got {value!r}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def parse(cls, text: str, what: str = "size") -> "Size":
        """'1024x512' (WIDTHxHEIGHT) -> Size(height=512, width=1024)."""
        width, separator, height = str(text).strip().lower().partition("x")
        if not separator or not width.strip().isdigit() or not height.strip().isdigit():
            raise ConfigError(f"{what} {text!r} is not WIDTHxHEIGHT (e.g. 1024x512)")
        return cls(int(height), int(width), what)

    @classmethod
    def of(cls, height_width: Sequence[Any] | "Size", what: str = "size") -> "Size":
        """A (height, width) pair (or a Size) -> Size; ConfigError naming `what` for anything else."""
        if isinstance(height_width, Size):
            return height_width
        if isinstance(height_width, (str, bytes)) or not isinstance(height_width, Sequence) or len(height_width) != 2:
            raise ConfigError(f"{what} must be (height, width) in pixels, got {height_width!r}")
        height, width = height_width
        return cls(height, width, what)

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def wh(self) -> tuple[int, int]:
        return self.width, self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"
