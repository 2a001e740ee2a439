"""The typed configuration of semi-supervised instance distillation (`gkd train --task instance`).
Torch-free at import, like `training.config` (the run folder reads it back).

The recipe (SSKD, the second seed paper) runs up to four phases, in this order:

| phase | trains | on | loss | paper |
|---|---|---|---|---|
| finetune | the teacher, from its initial (pretrained) weights | the labelled set | L_sup | 1k it., batch 4 |
| selftrain | the teacher, re-initialised from the same initial weights | labelled + pool with the finetuned teacher's pseudo-labels | unified | 5k it. |
| transfer | the student | labelled + pool with the adapted teacher's pseudo-labels | unified | 90k it., batch 8 |
| refine | the student, from the transfer result (or its initial weights) | the labelled set | L_sup | 2k it. |

unified = L_sup + unlabelled_weight x L_pseudo + contrastive_weight x L_pxl; pseudo-labels are the
teacher's instances with score >= pseudo_threshold. The recipes (`sskd.recipes`) are phase subsets:
the supervised-only student is `refine` alone, the run without teacher adaptation skips `selftrain`.

Values the paper gives: loss weights 2 / 5 / 5 (the set criterion), 0.2 x L_pxl, K = 256,
threshold 0.3, AdamW with weight decay 0.01 and a x0.1 step decay at 0.9 and 0.95 of the teacher's
phases, poly 0.9 with weight decay 0.05, clipping 0.1 and dropout 0.1 for the student's knowledge
transfer, batch 4 (teacher) / 8 (student). Ours where it is silent: learning rate 1e-4 with the
encoder at 0.1 of it (Mask2Former's), tau 0.2, unlabelled_weight 1.0, the student's batch of 8
split 4 labelled + 4 unlabelled, the teacher's self-training 2 + 2, 512 px crops of a short side
resized to 512 x 0.5-2.0 with flips; the transfer's dropout placed where DETR-style decoders have
it, in the Mask2Former transformer decoder (attention weights, sublayer outputs, inside the FFN),
and only in that phase (the other phases 0; refinement fine-tunes without it, as the paper lists
dropout among the transfer's settings only); negatives from the mini-batch (memory_bank 0: the
paper's main setting; its 10k-bank ablation is memory_bank 10000).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gkd_deploy.errors import ConfigError
from gkd_deploy.training.config import AUTOCAST_MODES, DataEntry, deep_merge, default_workers, settings_from_dict

TASK = "instance"
PHASES = ("finetune", "selftrain", "transfer", "refine")
TEACHER_PHASES = ("finetune", "selftrain")
#: Phase -> its number in logs, metrics.csv and progress displays (stage numbers elsewhere).
PHASE_NUMBERS = {name: number for number, name in enumerate(PHASES, start=1)}
PHASE_TITLES = {"finetune": "teacher fine-tuning", "selftrain": "teacher self-training",
                "transfer": "knowledge transfer", "refine": "student refinement"}
TEACHER_KINDS = ("built-in", "grounded-sam")
SCHEDULES = ("poly", "multistep")


@dataclass(frozen=True)
class InstanceModelSettings:
    """One instance segmenter (`InstanceSegmenterConfig`'s architecture fields, `decoder_options`
    the mapping of options given); `weights`: a file of encoder weights instead of the zoo's
    pretrained ones."""

    encoder: str = "vit-s"
    neck: str = "dpt"
    neck_channels: int = 256
    decoder: str = "mask2former"
    decoder_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None


@dataclass(frozen=True)
class PhaseSettings:
    """One phase's optimisation. Batches are global (split over processes): `batch_size` labelled
    images and `unlabelled_batch_size` pseudo-labelled ones per step (the unified-loss phases)."""

    steps: int = 1000
    batch_size: int = 4
    unlabelled_batch_size: int = 0
    lr: float = 1e-4
    encoder_lr_scale: float = 0.1
    weight_decay: float = 0.05
    schedule: str = "poly"  # "poly" (power 0.9) or "multistep" (x0.1 at 0.9 and 0.95 of the steps)
    warmup_steps: int = 0
    clip_grad: float = 0.0  # 0: off
    dropout: float = 0.0  # of the Mask2Former transformer decoder's layers while this phase trains


@dataclass(frozen=True)
class InstanceTrainConfig:
    task: str = TASK
    recipe: str = "sskd"
    teacher_kind: str = "built-in"  # or "grounded-sam": the composite zero-shot teacher (not trained here)
    teacher: InstanceModelSettings = InstanceModelSettings(encoder="vit-b")
    student: InstanceModelSettings = InstanceModelSettings(encoder="vit-s")
    pretrained: bool = True
    source: tuple[DataEntry, ...] = ()  # the instance data set whose train split is split into labelled / pool
    targets: tuple[DataEntry, ...] = ()  # scored (mask AP) after training, on their val split
    label_fraction: float = 0.1  # the paper's default (`data.instances.splits.DEFAULT_LABEL_FRACTION`)
    phases: tuple[str, ...] = PHASES
    finetune: PhaseSettings = PhaseSettings(steps=1000, batch_size=4, weight_decay=0.01, schedule="multistep")
    selftrain: PhaseSettings = PhaseSettings(steps=5000, batch_size=2, unlabelled_batch_size=2, weight_decay=0.01,
                                             schedule="multistep")
    transfer: PhaseSettings = PhaseSettings(steps=90_000, batch_size=4, unlabelled_batch_size=4, weight_decay=0.05,
                                            clip_grad=0.1, dropout=0.1)
    refine: PhaseSettings = PhaseSettings(steps=2000, batch_size=8, weight_decay=0.05, clip_grad=0.1)
    crop_size: int = 512
    short_side: int = 512  # training images are resized to a short side of short_side x 0.5 .. 2.0
    patch_size: int = 16
    img_size: int = 512  # the input size the segmenters record (evaluation resizes the short side to it)
    pseudo_threshold: float = 0.3
    unlabelled_weight: float = 1.0
    contrastive_weight: float = 0.2
    temperature: float = 0.2
    num_negatives: int = 256
    max_anchors: int = 2048
    memory_bank: int = 0  # strong-view pixels of earlier steps kept as extra negatives (0: none)
    negative_sampling: str = "instance"
    projection_dim: int = 128
    seed: int = 0
    device: str = "auto"
    autocast: str = "auto"
    workers: int = dataclasses.field(default_factory=lambda: default_workers())
    checkpoint_every: int = 500
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        from gkd_deploy.training.config import plain_data

        return plain_data(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, validate: bool = True) -> "InstanceTrainConfig":
        config = settings_from_dict(cls, data)
        if validate:
            config.validate()
        return config

    def merged(self, overrides: Mapping[str, Any]) -> "InstanceTrainConfig":
        return InstanceTrainConfig.from_dict(deep_merge(self.to_dict(), overrides, InstanceTrainConfig))

    def phase(self, name: str) -> PhaseSettings:
        return getattr(self, name)

    @property
    def stages(self) -> tuple[int, ...]:
        """The phases as stage numbers (what the shared training display and metrics count)."""
        return tuple(PHASE_NUMBERS[name] for name in self.phases)

    def weights_files(self) -> tuple[str, ...]:
        return tuple(w for w in (self.teacher.weights, self.student.weights) if w is not None)

    def with_absolute_paths(self) -> "InstanceTrainConfig":
        """A copy whose data folders and weights files are absolute, as a run folder stores them."""
        from gkd_deploy.data.registry import parse_dataset_list

        changes: dict[str, Any] = {}
        for name in ("source", "targets"):
            entries = getattr(self, name)
            if entries:
                changes[name] = tuple(dataclasses.replace(spec, path=spec.path.expanduser().absolute()).to_config()
                                      for spec in parse_dataset_list(list(entries)))
        for role in ("teacher", "student"):
            model = getattr(self, role)
            if model.weights is not None:
                changes[role] = dataclasses.replace(model, weights=str(Path(model.weights).expanduser().absolute()))
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.task != TASK:
            raise ConfigError(f"task must be '{TASK}' in an instance training config, got {self.task!r}")
        _check_phases(self)
        if not self.source:
            raise ConfigError("instance training needs a labelled instance data set: give --source "
                              "cityscapes=PATH (its train split is split into labelled images and the pool)")
        from gkd_deploy.data.registry import parse_dataset_list

        for entries in (self.source, self.targets):
            if entries:
                parse_dataset_list(list(entries))
        if len(parse_dataset_list(list(self.source))) != 1:
            raise ConfigError("instance training takes one --source data set (its train split is split by "
                              "--label-fraction)")
        from gkd_deploy.data.instances.splits import check_label_fraction

        check_label_fraction(self.label_fraction)
        if self.teacher_kind not in TEACHER_KINDS:
            raise ConfigError(f"teacher_kind must be one of {', '.join(TEACHER_KINDS)}, got {self.teacher_kind!r}")
        self._check_models()
        for name in self.phases:
            _check_phase(name, self.phase(name), unified=name in ("selftrain", "transfer"))
        for name in ("crop_size", "short_side", "patch_size", "img_size", "num_negatives", "max_anchors",
                     "projection_dim", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {getattr(self, name)!r}")
        for name in ("crop_size", "img_size"):
            if getattr(self, name) % self.patch_size:
                raise ConfigError(f"{name} {getattr(self, name)} must be a multiple of patch_size {self.patch_size}")
        if not 0.0 <= self.pseudo_threshold < 1.0:
            raise ConfigError(f"pseudo_threshold must be in [0, 1), got {self.pseudo_threshold}")
        if self.unlabelled_weight < 0 or self.contrastive_weight < 0 or not self.temperature > 0:
            raise ConfigError("unlabelled_weight and contrastive_weight must be >= 0 and temperature > 0")
        from gkd_deploy.instance.contrastive import NEGATIVE_SAMPLINGS

        if not isinstance(self.memory_bank, int) or self.memory_bank < 0:
            raise ConfigError(f"memory_bank must be a whole number >= 0 (0: negatives from the batch only), "
                              f"got {self.memory_bank!r}")
        if self.negative_sampling not in NEGATIVE_SAMPLINGS:
            raise ConfigError(f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLINGS)}, "
                              f"got {self.negative_sampling!r}")
        if self.autocast not in AUTOCAST_MODES:
            raise ConfigError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")

    def _check_models(self) -> None:
        from gkd_deploy.models.config import INSTANCE_DECODERS, NECKS
        from gkd_deploy.models.decoder_options import resolve_decoder_options
        from gkd_deploy.models.instance_segmenter import encoder_role

        roles = ("teacher", "student") if self.teacher_kind == "built-in" else ("student",)
        for role in roles:
            model = getattr(self, role)
            encoder_role(model.encoder)
            if model.neck not in NECKS:
                raise ConfigError(f"{role}.neck must be one of {', '.join(NECKS)}, got {model.neck!r}")
            if model.decoder not in INSTANCE_DECODERS:
                raise ConfigError(f"{role}.decoder must be one of {', '.join(INSTANCE_DECODERS)} (instance mode), "
                                  f"got {model.decoder!r}")
            resolve_decoder_options(model.decoder, model.decoder_options, f"{role}.decoder_options")


def _check_phases(config: InstanceTrainConfig) -> None:
    phases = list(config.phases)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], PHASES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown phase '{unknown[0]}'{hint}; phases: {', '.join(PHASES)}")
    if not phases or phases != sorted(set(phases), key=PHASES.index):
        raise ConfigError(f"phases must be distinct and in the order {', '.join(PHASES)}; got {phases}")
    teacher_phases = [p for p in phases if p in TEACHER_PHASES]
    if config.teacher_kind == "grounded-sam" and teacher_phases:
        raise ConfigError("the grounded-sam teacher is used zero-shot (it is not trained here): drop the phases "
                          f"{', '.join(teacher_phases)}")
    if "selftrain" in phases and "finetune" not in phases:
        raise ConfigError("selftrain pseudo-labels with the finetuned teacher: run the phase finetune before it")
    if "transfer" in phases and config.teacher_kind == "built-in" and "finetune" not in phases:
        raise ConfigError("transfer distils the built-in teacher, which is trained in the phase finetune "
                          "(and selftrain): add it, or use teacher_kind grounded-sam")
    if teacher_phases and not {"transfer", "refine"} & set(phases):
        raise ConfigError("the phases train only the teacher; add transfer and/or refine to train the student")


def _check_phase(name: str, settings: PhaseSettings, *, unified: bool) -> None:
    for key in ("steps", "batch_size"):
        if getattr(settings, key) < 1:
            raise ConfigError(f"{name}.{key} must be positive, got {getattr(settings, key)}")
    if unified and settings.unlabelled_batch_size < 1:
        raise ConfigError(f"{name} trains on the unlabelled pool too: {name}.unlabelled_batch_size must be positive")
    if not unified and settings.unlabelled_batch_size:
        raise ConfigError(f"{name} trains on labels only: {name}.unlabelled_batch_size must be 0")
    if not settings.lr > 0 or settings.encoder_lr_scale < 0:
        raise ConfigError(f"{name}.lr must be positive and {name}.encoder_lr_scale >= 0")
    if settings.schedule not in SCHEDULES:
        raise ConfigError(f"{name}.schedule must be one of {', '.join(SCHEDULES)}, got {settings.schedule!r}")
    if settings.warmup_steps < 0 or settings.weight_decay < 0 or settings.clip_grad < 0:
        raise ConfigError(f"{name}: warmup_steps, weight_decay and clip_grad must be >= 0")
    if not 0.0 <= settings.dropout < 1.0:
        raise ConfigError(f"{name}.dropout must be in [0, 1), got {settings.dropout}")


def is_instance_config(data: Mapping[str, Any]) -> bool:
    """Whether stored plain config data (a run's config.yaml) is an instance training config."""
    return data.get("task") == TASK


def load_instance_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> InstanceTrainConfig:
    """Defaults <- the YAML file at `path` <- `overrides` (command-line options), validated once."""
    from gkd_deploy.training.config import read_yaml_mapping

    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    return InstanceTrainConfig.from_dict(deep_merge(data, overrides or {}, InstanceTrainConfig))
