"""The exceptions gkd-deploy raises for problems a user can fix.

Every message names the bad input and says what to do about it. The command line turns a
`GKDError` into one red line and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

# How torch's DataLoader re-raises an exception from a worker process: the same class, built from
# one text holding the worker's whole traceback, whose last line is "<module>.<Class>: <message>".
_WORKER_TRACEBACK = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_FINAL_LINE = re.compile(r"^gkd_deploy\.errors\.\w+: ", re.MULTILINE)


class GKDError(Exception):
    """Base class: a problem with the user's input or environment, not a bug.

    Raised in a DataLoader worker, it reaches the main process with the worker's own message
    (not the traceback text torch wraps it in), so a bad file gives the same one line with
    `--workers 4` as with `--workers 0`.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and _WORKER_TRACEBACK.match(args[0]):
            finals = list(_FINAL_LINE.finditer(args[0]))
            if finals:
                args = (args[0][finals[-1].end():].strip(),)
        super().__init__(*args)


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
