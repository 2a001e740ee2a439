"""The typed training configuration: defaults from the paper, YAML and command-line overrides.

`TrainConfig.from_dict` is the one place user settings enter: unknown keys and bad values are
refused with the field named. The resolved config is written into the run folder and read back
to resume.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from gkd_deploy.errors import ConfigError

STAGES = (1, 2, 3)


@dataclass(frozen=True)
class DistillSettings:
    """Stages 1-2: QSD distillation of the student encoder (paper: AdamW 5e-4 x batch/512, wd 0.05,
    cosine to 1e-5, EMA 0.99996; stage 1 at 224 px, stage 2 at 512 px)."""

    steps: int = 10_000
    batch_size: int = 32  # global: split across processes
    img_size: int = 224
    base_lr: float = 5e-4  # for a batch of 512; scaled linearly with the global batch
    min_lr: float = 1e-5
    warmup_steps: int = 500
    weight_decay: float = 0.05
    clip_grad: float = 3.0
    ema: bool = True
    ema_decay: float = 0.99996
    mask_prob: float = 0.5  # share of the batch that gets a masked pass
    mask_ratio: float = 0.5  # share of patches masked in those images
    feature_weight: float = 1.0
    patch_weight: float = 1.0
    token_weight: float = 1.0
    scale_range: tuple[float, float] = (0.5, 2.0)
    loss: str = "qsd"  # "mse": plain projected-feature distillation, the baseline

    def lr(self) -> float:
        """Peak learning rate for this global batch (the linear scaling rule)."""
        return self.base_lr * self.batch_size / 512


@dataclass(frozen=True)
class TaskSettings:
    """Stage 3: decoder training on the frozen encoder (paper: AdamW 1e-4, wd 0.05 except norms and
    embeddings, poly 0.9, 40k iterations, batch 4, crop 512)."""

    steps: int = 40_000
    batch_size: int = 4
    crop_size: int = 512
    lr: float = 1e-4
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.05
    poly_power: float = 0.9
    clip_grad: float = 0.0  # 0: off
    label_fraction: float = 1.0
    decoder: str = "mask2former"  # the paper's default; semfpn is nearly as accurate and lighter
    decoder_options: dict[str, Any] = field(default_factory=dict)
    scale_range: tuple[float, float] = (0.5, 2.0)


@dataclass(frozen=True)
class TrainConfig:
    teacher: str = "dinov2-b"
    student: str = "vit-s"
    pretrained: bool = True
    teacher_weights: str | None = None
    student_weights: str | None = None
    patch_size: int = 16
    proxy: str | None = None  # NAME=PATH, unlabeled images for stage 1
    source: str | None = None  # NAME=PATH, labelled source domain for stages 2-3
    targets: tuple[str, ...] = ()  # NAME=PATH entries evaluated after training
    stages: tuple[int, ...] = STAGES
    stage1: DistillSettings = DistillSettings(img_size=224)
    stage2: DistillSettings = DistillSettings(img_size=512, batch_size=16)
    stage3: TaskSettings = TaskSettings()
    seed: int = 0
    device: str = "auto"
    workers: int = 4
    checkpoint_every: int = 500
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        config = _build(cls, data, "")
        config.validate()
        return config

    def merged(self, overrides: Mapping[str, Any]) -> "TrainConfig":
        """A copy with `overrides` applied (nested keys as dicts, e.g. {"stage3": {"steps": 10}})."""
        return TrainConfig.from_dict(_deep_merge(self.to_dict(), overrides))

    def stage_settings(self, stage: int) -> DistillSettings | TaskSettings:
        return {1: self.stage1, 2: self.stage2, 3: self.stage3}[stage]

    def validate(self) -> None:
        if not self.stages or any(s not in STAGES for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ConfigError(f"stages must be increasing values from 1, 2, 3 (e.g. 2,3); got {list(self.stages)}")
        if 1 in self.stages and not self.proxy:
            raise ConfigError("stage 1 distils on a proxy image folder: give --proxy NAME=PATH (e.g. "
                              "images=/data/imagenet/train) or run --stages 2,3")
        if (2 in self.stages or 3 in self.stages) and not self.source:
            raise ConfigError("stages 2 and 3 need the source domain: give --source NAME=PATH (e.g. gtav=/data/gta)")
        if self.patch_size < 1:
            raise ConfigError(f"patch_size must be positive, got {self.patch_size}")
        for stage in (1, 2):
            _check_distill(self.stage_settings(stage), f"stage{stage}", self.patch_size)
        _check_task(self.stage3, self.patch_size)
        for name in ("workers", "checkpoint_every", "log_every"):
            if getattr(self, name) < (0 if name == "workers" else 1):
                raise ConfigError(f"{name} must be {'>= 0' if name == 'workers' else 'positive'}, got {getattr(self, name)}")


LABEL_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def _check_distill(settings: DistillSettings, prefix: str, patch_size: int) -> None:
    _positive(settings, prefix, "steps", "batch_size", "img_size", "base_lr")
    if settings.img_size % patch_size:
        raise ConfigError(f"{prefix}.img_size {settings.img_size} must be a multiple of patch_size {patch_size}")
    for name in ("mask_prob", "mask_ratio"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise ConfigError(f"{prefix}.{name} must be in [0, 1], got {getattr(settings, name)}")
    if settings.loss not in ("qsd", "mse"):
        raise ConfigError(f"{prefix}.loss must be 'qsd' or 'mse', got '{settings.loss}'")
    if not 0.0 <= settings.ema_decay < 1.0:
        raise ConfigError(f"{prefix}.ema_decay must be in [0, 1), got {settings.ema_decay}")
    if settings.warmup_steps < 0 or settings.min_lr < 0 or settings.clip_grad < 0 or settings.weight_decay < 0:
        raise ConfigError(f"{prefix}: warmup_steps, min_lr, clip_grad and weight_decay must be >= 0")


def _check_task(settings: TaskSettings, patch_size: int) -> None:
    from gkd_deploy.models.decoders import DECODER_NAMES

    _positive(settings, "stage3", "steps", "batch_size", "crop_size", "lr")
    if settings.decoder not in DECODER_NAMES:
        close = difflib.get_close_matches(settings.decoder, DECODER_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"stage3.decoder '{settings.decoder}' is unknown{hint}; available: {', '.join(DECODER_NAMES)}")
    if settings.crop_size % patch_size:
        raise ConfigError(f"stage3.crop_size {settings.crop_size} must be a multiple of patch_size {patch_size}")
    if not any(abs(settings.label_fraction - f) < 1e-9 for f in LABEL_FRACTIONS):
        raise ConfigError(f"stage3.label_fraction must be one of 1/16, 1/8, 1/4, 1/2, 1; got {settings.label_fraction}")
    if settings.poly_power <= 0:
        raise ConfigError(f"stage3.poly_power must be positive, got {settings.poly_power}")


def _positive(settings: Any, prefix: str, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{prefix}.{name} must be positive, got {getattr(settings, name)}")


def parse_fraction(text: str | float) -> float:
    """'1/16' or 0.0625 -> 0.0625."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"label fraction '{text}' is not a number or a fraction like 1/8") from None


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown setting '{prefix}{key}'{hint}")
        values[key] = _coerce(fields[key], value, f"{prefix}{key}")
    return cls(**values)


def _coerce(spec: dataclasses.Field, value: Any, name: str) -> Any:
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
    if dataclasses.is_dataclass(default):
        return _build(type(default), value, f"{name}.")
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return parse_fraction(value) if name.endswith("label_fraction") else float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            if name == "stages":
                return tuple(int(v) for v in items)
            if name.endswith("scale_range"):
                return tuple(float(v) for v in items)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if value is None or isinstance(value, str):
            return value
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting '{name}' has a bad value {value!r} (expected {type(default).__name__})") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key != "decoder_options":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_train_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults <- the YAML file at `path` <- `overrides` (command-line options), validated once."""
    import yaml
    from pathlib import Path

    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} not found")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{file} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file} must hold a mapping of settings")
    return TrainConfig.from_dict(_deep_merge(data, overrides or {}))
