"""The exceptions gkd-deploy raises for problems a user can fix.

Every message names the bad input and says what to do about it. The command line turns a
`GKDError` into one red line and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GKDError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(GKDError):
    """A setting is missing, malformed or out of range."""


class ModelError(GKDError):
    """A model name, architecture or checkpoint cannot be used."""


class WeightsError(ModelError):
    """Pretrained weights cannot be found, downloaded or loaded."""


class DataError(GKDError):
    """A data set folder, image or label map is missing, unreadable or inconsistent."""


class ExportError(ModelError):
    """A model cannot be exported, converted, quantized or read back, or fails its parity check."""
