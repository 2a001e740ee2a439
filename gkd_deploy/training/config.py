"""The typed training configuration: the authors' recipe as defaults, YAML and command-line overrides.

`TrainConfig.from_dict` is the one place user settings enter: unknown keys and bad values are
refused with the field named, and values are coerced by each field's type hint. The resolved
config is written into the run folder and read back to resume.

The defaults are the GKD authors' recipe (github Younger-hua/GKD) at lengths and batches that fit
one GPU; `PAPER` holds the paper's lengths and batches (`gkd train --preset paper`).
"""

from __future__ import annotations

import dataclasses
import os
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from gkd_deploy.errors import ConfigError

if typing.TYPE_CHECKING:
    from gkd_deploy.models.decoder_options import DecoderOptions

STAGES = (1, 2, 3)
HANDOFFS = ("raw", "ema")
TASK_ENCODERS = ("student", "teacher")
AUTOCAST_MODES = ("auto", "bf16", "off")

# One data set: `NAME[:DOMAIN]=PATH` text, or a mapping {data, eval_size, score_classes}.
DataEntry = Union[str, dict]


@dataclass(frozen=True)
class DistillSettings:
    """Stages 1-2: distillation of the student encoder (authors: AdamW 5e-4 x batch/512, wd 0.05,
    cosine to 1e-5, no warm-up, no clipping, EMA 0.99996 kept but the raw weights handed on;
    stage 1 at 224 px with patch 14, stage 2 at 512 px with patch 16)."""

    steps: int = 10_000
    epochs: float | None = None  # when set, steps = epochs x (images // batch), counted when the stage starts
    batch_size: int = 32  # global: split across processes
    img_size: int = 224
    patch_size: int = 16  # both networks run at this patch size, so their token grids align
    base_lr: float = 5e-4  # for a batch of 512; scaled linearly with the global batch
    min_lr: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 0.05
    clip_grad: float = 0.0  # 0: off
    ema: bool = True  # keep an EMA of the student (saved beside the raw weights)
    ema_decay: float = 0.99996  # used as given: no warm-up ramp
    handoff: str = "raw"  # which weights the next stage starts from: "raw" (the authors') or "ema"
    method: str = "qsd"  # the distillation objective; `gkd_deploy.distill.methods` lists them
    method_options: dict[str, Any] = field(default_factory=dict)  # the objective's own options
    mask_prob: float = 0.5  # share of the batch (the first images) that gets masked patches
    mask_ratio: float = 0.5  # share of patches masked in those images
    feature_weight: float = 1.0
    patch_weight: float = 1.0
    token_weight: float = 1.0

    def lr(self) -> float:
        """Peak learning rate for this global batch (the linear scaling rule)."""
        return self.base_lr * self.batch_size / 512

    def steps_for(self, num_images: int) -> int:
        """The stage's length: `steps`, or `epochs` passes over `num_images` (whole batches)."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * max(1, num_images // self.batch_size)))


@dataclass(frozen=True)
class TaskSettings:
    """Stage 3: the decoder on the encoder's features (authors: AdamW 1e-4, wd 0.05 except norms and
    embeddings, poly 0.9, 40k iterations, batch 4, short side resized to 512 x 0.5-2.0, crop 512
    with cat_max_ratio 0.75, flip, photometric distortion; the encoder frozen).

    The same stage runs the paper's baselines: a trained encoder (`encoder_lr` > 0: the unfrozen
    ablation of Table 5 uses 1e-5), the distillation loss added to the task loss (`distill_method`,
    one-stage KD, eq. 3), a teacher segmenter's per-pixel predictions as soft targets
    (`logit_teacher`, G2SD's specific distillation), or the frozen teacher as the encoder
    (`encoder: teacher`, the teacher reference rows).
    """

    steps: int = 40_000
    batch_size: int = 4
    crop_size: int = 512
    patch_size: int = 16
    short_side: int = 512  # images are resized to a short side of short_side x 0.5 .. 2.0
    cat_max_ratio: float = 0.75
    lr: float = 1e-4
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.05
    poly_power: float = 0.9
    clip_grad: float = 0.0  # 0: off
    label_fraction: float = 1.0
    decoder: str = "mask2former"  # the paper's default; semfpn is nearly as accurate and lighter
    decoder_options: dict[str, Any] = field(default_factory=dict)
    encoder: str = "student"  # or "teacher": the frozen teacher + this decoder (the teacher reference)
    encoder_lr: float = 0.0  # 0: frozen (GKD); > 0: the encoder is trained at this learning rate
    distill_method: str | None = None  # one-stage KD: this distillation loss joins the task loss
    distill_weight: float = 1.0
    distill_options: dict[str, Any] = field(default_factory=dict)
    logit_teacher: str | None = None  # a segmenter checkpoint or run folder whose predictions are soft targets
    logit_weight: float = 1.0
    logit_temperature: float = 1.0

    def decoder_settings(self) -> DecoderOptions:
        """The decoder's options object: the preset's values with `decoder_options` (the options
        given, kept as a mapping: the run folder's form) over them."""
        from gkd_deploy.models.decoder_options import resolve_decoder_options

        return resolve_decoder_options(self.decoder, self.decoder_options, "stage3.decoder_options")


@dataclass(frozen=True)
class TrainConfig:
    teacher: str | None = "dinov2-b"  # None: no teacher (a student trained on the source alone)
    student: str = "vit-s"
    pretrained: bool = True
    teacher_weights: str | None = None
    student_weights: str | None = None
    proxy: tuple[DataEntry, ...] = ()  # unlabeled images for stage 1
    source: tuple[DataEntry, ...] = ()  # labelled source domain(s): stage-2 images, stage-3 labels
    distill_extra: tuple[DataEntry, ...] = ()  # more images for stage 2 only (the paper's Fig. 6)
    targets: tuple[DataEntry, ...] = ()  # evaluated after training
    stages: tuple[int, ...] = STAGES
    stage1: DistillSettings = DistillSettings(img_size=224, patch_size=14)
    stage2: DistillSettings = DistillSettings(img_size=512, patch_size=16, batch_size=16)
    stage3: TaskSettings = TaskSettings()
    seed: int = 0
    device: str = "auto"
    autocast: str = "auto"  # bf16 on CUDA, fp32 on CPU; "bf16" everywhere, or "off"
    workers: int = dataclasses.field(default_factory=lambda: default_workers())
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self) -> None:
        # Data sets given as one text (the Python API) become entries, as from YAML.
        for name in ("proxy", "source", "distill_extra", "targets"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(_coerce(tuple[DataEntry, ...], value, name)))

    def to_dict(self) -> dict[str, Any]:
        return plain_data(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, validate: bool = True) -> "TrainConfig":
        """Typed from plain data (YAML); `validate`: also check it is a config one can train with."""
        config = _build(cls, data, "")
        if validate:
            config.validate()
        return config

    def merged(self, overrides: Mapping[str, Any]) -> "TrainConfig":
        """A copy with `overrides` applied (nested keys as dicts, e.g. {"stage3": {"steps": 10}})."""
        return TrainConfig.from_dict(deep_merge(self.to_dict(), overrides))

    def with_absolute_paths(self) -> "TrainConfig":
        """A copy whose data folders and weights files are absolute (resolved against the working
        folder now), as a run folder stores them: `gkd eval ../run` and `--resume` then work from
        any folder."""
        from gkd_deploy.data.registry import parse_dataset_list

        changes: dict[str, Any] = {}
        for name in ("proxy", "source", "distill_extra", "targets"):
            entries = getattr(self, name)
            if entries:
                changes[name] = tuple(dataclasses.replace(spec, path=spec.path.expanduser().absolute()).to_config()
                                      for spec in parse_dataset_list(list(entries)))
        for name in ("teacher_weights", "student_weights"):
            if getattr(self, name) is not None:
                changes[name] = str(Path(getattr(self, name)).expanduser().absolute())
        return dataclasses.replace(self, **changes)

    def weights_files(self) -> tuple[str, ...]:
        """The weights files the config names (checked readable before a run folder is written)."""
        return tuple(w for w in (self.teacher_weights, self.student_weights) if w is not None)

    def stage_settings(self, stage: int) -> DistillSettings | TaskSettings:
        return {1: self.stage1, 2: self.stage2, 3: self.stage3}[stage]

    def needs_teacher(self) -> bool:
        task = self.stage3
        return bool({1, 2} & set(self.stages)) or (3 in self.stages and (
            task.encoder == "teacher" or task.distill_method is not None))

    @property
    def patch_size(self) -> int:
        """The patch size of the segmenter that comes out (stage 3's)."""
        return self.stage3.patch_size

    def validate(self) -> None:
        if not self.stages or any(s not in STAGES for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ConfigError(f"stages must be increasing values from 1, 2, 3 (e.g. 2,3); got {list(self.stages)}")
        if 1 in self.stages and not self.proxy:
            raise ConfigError("stage 1 distils on a proxy image folder: give --proxy NAME=PATH (e.g. "
                              "images=/data/imagenet/train) or run --stages 2,3")
        if (2 in self.stages or 3 in self.stages) and not self.source:
            raise ConfigError("stages 2 and 3 need the source domain: give --source NAME=PATH (e.g. gtav=/data/gta)")
        for entries in (self.proxy, self.source, self.distill_extra, self.targets):
            _check_entries(entries)
        if self.teacher is None and self.needs_teacher():
            raise ConfigError("this run needs a teacher (distillation stages, stage3.encoder 'teacher' or "
                              "stage3.distill_method): give --teacher NAME")
        _check_models(self)
        for stage in (1, 2):
            _check_distill(self.stage_settings(stage), f"stage{stage}")
        _check_task(self.stage3)
        if self.autocast not in AUTOCAST_MODES:
            raise ConfigError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got '{self.autocast}'")
        for name in ("workers", "checkpoint_every", "log_every"):
            if getattr(self, name) < (0 if name == "workers" else 1):
                raise ConfigError(f"{name} must be {'>= 0' if name == 'workers' else 'positive'}, got {getattr(self, name)}")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Data loader workers when none are given: 4, or fewer on a machine with fewer CPU cores."""
    return min(4, available_cores())


LABEL_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)

# The paper's lengths and batches (Sec. 4.1 and the authors' scripts): stage 1 100 epochs of the
# proxy (ImageNet) at batch 512, stage 2 300 epochs of the source at batch 128, stage 3 40k
# iterations at batch 4. Lengths in epochs become steps when each stage sees its data set.
PAPER: dict[str, Any] = {
    "stage1": {"epochs": 100, "batch_size": 512, "img_size": 224, "patch_size": 14, "warmup_steps": 0, "clip_grad": 0.0},
    "stage2": {"epochs": 300, "batch_size": 128, "img_size": 512, "patch_size": 16, "warmup_steps": 0, "clip_grad": 0.0},
    "stage3": {"steps": 40_000, "batch_size": 4, "crop_size": 512, "short_side": 512, "lr": 1e-4},
}
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER}


def _check_models(config: "TrainConfig") -> None:
    """Both names are in the zoo (or timm) in their roles: ModelError before a run folder is written."""
    from gkd_deploy.models.registry import get_model_spec

    get_model_spec(config.student, role="student")
    if config.teacher is not None:
        get_model_spec(config.teacher, role="teacher")


def _check_entries(entries: tuple[DataEntry, ...]) -> None:
    from gkd_deploy.data.registry import parse_dataset_list

    if entries:
        parse_dataset_list(list(entries))  # names, paths, domains and evaluation settings


def _check_method(name: str, prefix: str) -> None:
    from gkd_deploy.distill.methods import DISTILL_METHODS

    if name not in DISTILL_METHODS:
        close = difflib.get_close_matches(name, DISTILL_METHODS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{prefix} '{name}' is unknown{hint}; available: {', '.join(DISTILL_METHODS)}")


def _check_distill(settings: DistillSettings, prefix: str) -> None:
    _positive(settings, prefix, "steps", "batch_size", "img_size", "patch_size", "base_lr")
    if settings.epochs is not None and settings.epochs <= 0:
        raise ConfigError(f"{prefix}.epochs must be positive, got {settings.epochs}")
    if settings.img_size % settings.patch_size:
        raise ConfigError(f"{prefix}.img_size {settings.img_size} must be a multiple of {prefix}.patch_size "
                          f"{settings.patch_size}")
    for name in ("mask_prob", "mask_ratio"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise ConfigError(f"{prefix}.{name} must be in [0, 1], got {getattr(settings, name)}")
    _check_method(settings.method, f"{prefix}.method")
    if not 0.0 <= settings.ema_decay < 1.0:
        raise ConfigError(f"{prefix}.ema_decay must be in [0, 1), got {settings.ema_decay}")
    if settings.handoff not in HANDOFFS:
        raise ConfigError(f"{prefix}.handoff must be one of {', '.join(HANDOFFS)}, got '{settings.handoff}'")
    if settings.handoff == "ema" and not settings.ema:
        raise ConfigError(f"{prefix}.handoff is 'ema' but {prefix}.ema is off; turn the EMA on or hand off 'raw'")
    if settings.warmup_steps < 0 or settings.min_lr < 0 or settings.clip_grad < 0 or settings.weight_decay < 0:
        raise ConfigError(f"{prefix}: warmup_steps, min_lr, clip_grad and weight_decay must be >= 0")


def _check_task(settings: TaskSettings) -> None:
    from gkd_deploy.models.decoder_options import DECODER_NAMES, DEFAULT_SCALES, check_input_levels

    _positive(settings, "stage3", "steps", "batch_size", "crop_size", "patch_size", "short_side", "lr")
    if settings.decoder not in DECODER_NAMES:
        close = difflib.get_close_matches(settings.decoder, DECODER_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"stage3.decoder '{settings.decoder}' is unknown{hint}; available: {', '.join(DECODER_NAMES)}")
    # Names, types and values, before any stage runs; stage 3's encoders (ViT or CNN) give one map
    # per pyramid level.
    check_input_levels(settings.decoder_settings(), len(DEFAULT_SCALES), "the stage-3 encoder",
                       "stage3.decoder_options")
    if settings.crop_size % settings.patch_size:
        raise ConfigError(f"stage3.crop_size {settings.crop_size} must be a multiple of stage3.patch_size "
                          f"{settings.patch_size}")
    if not any(abs(settings.label_fraction - f) < 1e-9 for f in LABEL_FRACTIONS):
        raise ConfigError(f"stage3.label_fraction must be one of 1/16, 1/8, 1/4, 1/2, 1; got {settings.label_fraction}")
    if settings.poly_power <= 0:
        raise ConfigError(f"stage3.poly_power must be positive, got {settings.poly_power}")
    if not 0.0 < settings.cat_max_ratio <= 1.0:
        raise ConfigError(f"stage3.cat_max_ratio must be in (0, 1], got {settings.cat_max_ratio}")
    if settings.encoder not in TASK_ENCODERS:
        raise ConfigError(f"stage3.encoder must be one of {', '.join(TASK_ENCODERS)}, got '{settings.encoder}'")
    if settings.encoder_lr < 0:
        raise ConfigError(f"stage3.encoder_lr must be >= 0 (0 freezes the encoder), got {settings.encoder_lr}")
    if settings.distill_method is not None:
        _check_method(settings.distill_method, "stage3.distill_method")
        if settings.encoder_lr == 0:
            raise ConfigError("stage3.distill_method distils into the encoder while the task trains (one-stage "
                              "KD), so the encoder must be trained: set stage3.encoder_lr > 0")
    if settings.encoder == "teacher" and (settings.encoder_lr or settings.distill_method or settings.logit_teacher):
        raise ConfigError("stage3.encoder 'teacher' is the frozen-teacher reference: it takes no encoder_lr, "
                          "distill_method or logit_teacher")
    if settings.logit_teacher is not None:
        from gkd_deploy.models.decoders import DECODERS
        from gkd_deploy.models.decoders.base import DenseDecoder

        if not issubclass(DECODERS[settings.decoder_settings().decoder], DenseDecoder):
            raise ConfigError(f"stage3.logit_teacher distils per-pixel class scores, which the '{settings.decoder}' "
                              "decoder does not train on: use a dense decoder (semfpn or linear)")
    if settings.logit_temperature <= 0:
        raise ConfigError(f"stage3.logit_temperature must be positive, got {settings.logit_temperature}")


def _positive(settings: Any, prefix: str, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{prefix}.{name} must be positive, got {getattr(settings, name)}")


def parse_fraction(text: str | float) -> float:
    """'1/16' or 0.0625 -> 0.0625."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ConfigError(f"'{text}' is not a number or a fraction like 1/8") from None


# --- coercion by type hint -----------------------------------------------------------------------

# Settings of earlier versions, and what took their place (so an old config says what to change).
_REPLACED = {
    "patch_size": "the patch size is set per stage: stage1.patch_size (14), stage2.patch_size and stage3.patch_size (16)",
    "loss": "the distillation objective is stageN.method (qsd, mse, proteus, fitnets, cwd, vitkd, afdcd, g2sd)",
    "scale_range": "stage 3 resizes the short side to stage3.short_side x 0.5-2.0; stages 1-2 use timm's "
                   "RandomResizedCrop",
}

def settings_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """The settings dataclass `cls` from plain data, each value coerced by its field's type hint;
    unknown keys and bad values raise `ConfigError` naming the setting (as for `TrainConfig`)."""
    return _build(cls, data, "")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            if key in _REPLACED:
                raise ConfigError(f"setting '{prefix}{key}' is no longer used: {_REPLACED[key]}")
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown setting '{prefix}{key}'{hint}")
        default = fields[key].default
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping) and dataclasses.is_dataclass(default):
            # Some settings of a nested group, e.g. {"stage1": {"steps": 10}}: the rest keep this
            # field's own defaults (stage 1 at patch 14, the transfer's clipping and dropout), not
            # those of the group's class, which several fields share.
            value = deep_merge(plain_data(dataclasses.asdict(default)), value, hints[key])
        values[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**values)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """`value` as the type `hint` says: dataclasses, X | None, bool, int, float (fractions too),
    str, dict, tuple[X, ...] (from a list or comma-separated text) and data-set entries."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{name}.")
    if hint == DataEntry:
        return _data_entry(value, name)
    if origin in (Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, name)
    if origin is tuple:
        items = _split(value) if args and args[0] == DataEntry else (
            value.split(",") if isinstance(value, str) else value)
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"setting '{name}' has a bad value {value!r} (expected a list)")
        return tuple(_coerce(args[0], item, name) for item in items if not (isinstance(item, str) and not item.strip()))
    return _scalar(hint, value, name)


def _scalar(hint: Any, value: Any, name: str) -> Any:
    try:
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if hint is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return parse_fraction(value)
        if typing.get_origin(hint) is dict or hint is dict:
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if hint is str:
            if isinstance(value, (dict, list, tuple)):
                raise TypeError
            return str(value).strip()
    except (TypeError, ValueError, ConfigError):
        expected = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"setting '{name}' has a bad value {value!r} (expected {expected})") from None
    raise TypeError(f"no coercion for {hint!r} ({name})")  # a field type this module does not know: a bug


def _split(value: Any) -> list:
    """Data-set entries: text with several NAME=PATH parts, a single mapping, or a list of both."""
    from gkd_deploy.data.registry import split_dataset_text

    if isinstance(value, str):
        return split_dataset_text(value)
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (list, tuple)):
        return [part for item in value for part in (split_dataset_text(item) if isinstance(item, str) else [item])]
    raise ConfigError(f"data sets must be NAME=PATH text or a list of entries, not {type(value).__name__}")


def _data_entry(value: Any, name: str) -> DataEntry:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        return value.strip()
    raise ConfigError(f"setting '{name}' has a bad entry {value!r}; expected NAME=PATH text or a mapping with "
                      "the key data")


def plain_data(value: Any) -> Any:
    """Nested mappings and sequences as the YAML file holds them: dicts and lists (tuples become lists)."""
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any], settings: type | None = None) -> dict[str, Any]:
    """`overrides` over `base`, both plain data of the dataclass `settings` (default TrainConfig): a
    field typed as a nested dataclass (stage1, stage3, ...) merges key by key; every other value,
    a mapping of decoder or method options included, replaces the base's (one decoder's options do
    not mix with another's)."""
    hints = typing.get_type_hints(settings or TrainConfig)
    merged = dict(base)
    for key, value in overrides.items():
        nested = hints.get(key)
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and dataclasses.is_dataclass(nested):
            merged[key] = deep_merge(merged[key], value, nested)
        else:
            merged[key] = value
    return merged


def load_train_config(path: str | None = None, overrides: Mapping[str, Any] | None = None,
                      preset: str | None = None) -> TrainConfig:
    """Defaults <- `preset` <- the YAML file at `path` <- `overrides` (command-line options), validated once."""
    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; available: {', '.join(PRESETS)}")
        data = deep_merge(data, PRESETS[preset])
    if path is not None:
        data = deep_merge(data, read_yaml_mapping(path))
    return TrainConfig.from_dict(deep_merge(data, overrides or {}))


def read_yaml_mapping(path: str) -> dict[str, Any]:
    import yaml
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping of settings")
    return data
