"""What `gkd eval` and `gkd validate` do, as settings checked when they are made.

No torch here (nor anything that imports it): the command line builds these before it imports the
evaluation, so a bad option is refused at once, before a model or a data set is opened. What only
a model can tell (a window that is not a multiple of its patch size, options that an exported or an
instance model does not take) is checked once the model is loaded, with the same option names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gkd_deploy.data import SPLITS
from gkd_deploy.errors import ConfigError

EVAL_MODES = ("slide", "whole")  # sliding windows, or the whole image (`evaluation.inference.InferenceMode`)


def _check_common(split: str, workers: int) -> None:
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not a split; use one of {', '.join(SPLITS)}")
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 loads data in the main process), got {workers}")


@dataclass(frozen=True)
class EvalSettings:
    """How `gkd eval` scores a model. `mode`: sliding windows of `crop` pixels every `stride`
    (default: the model's input size and 2/3 of it), or the whole image. An exported file has a
    fixed input size and an instance model is scored on whole images, so those take no `mode` or
    `crop` (an instance model no `stride` either). `json_path`: where the report goes (default: the
    run's next free `eval*.json`, or `<file>.eval.json` beside the model)."""

    split: str = "val"
    mode: str = "slide"
    crop: int | None = None
    stride: int | None = None
    device: str = "auto"
    workers: int = 2
    json_path: Path | None = None

    def __post_init__(self) -> None:
        _check_common(self.split, self.workers)
        if self.mode not in EVAL_MODES:
            raise ConfigError(f"--mode must be one of {', '.join(EVAL_MODES)}, got {self.mode!r}")
        for name in ("crop", "stride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be a positive number of pixels, got {value}")
        if self.json_path is not None:
            object.__setattr__(self, "json_path", Path(self.json_path))

    def check_fixed_input(self, model: Path) -> None:
        """An exported file is scored with sliding windows of its input size: no --crop or --mode."""
        if self.crop is not None or self.mode != "slide":
            raise ConfigError(f"{model.name} has a fixed input size: it is scored with sliding windows of that size "
                              "(leave out --crop and --mode)")

    def check_whole_images(self, model: Path) -> None:
        """An instance model is scored on whole images at its input size: no --mode, --crop or --stride."""
        if self.crop is not None or self.stride is not None or self.mode != "slide":
            raise ConfigError(f"{model.name} is an instance segmenter: it is scored on whole images at its input "
                              "size; leave out --mode, --crop and --stride")


@dataclass(frozen=True)
class ValidateSettings:
    """How `gkd validate` compares an exported file with PyTorch. `reference`: the run folder or
    checkpoint to compare with (default: the one the file was exported from). `tolerance`: the
    largest |delta| allowed, in mIoU points (mask AP points for an instance file); None: the
    precision table's gate. `json_path`: default `<file>.validate.json` beside the file."""

    reference: Path | None = None
    tolerance: float | None = None
    split: str = "val"
    device: str = "auto"
    workers: int = 2
    json_path: Path | None = None

    def __post_init__(self) -> None:
        _check_common(self.split, self.workers)
        if self.tolerance is not None and not self.tolerance >= 0:  # `not >=`: NaN is refused too
            raise ConfigError(f"--tolerance is the largest |delta| in mIoU points allowed: give a value >= 0, "
                              f"got {self.tolerance}")
        for name in ("reference", "json_path"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
