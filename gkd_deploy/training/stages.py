"""The three GKD stages, each: build what it trains, restore a saved state, run the loop, save
its result.

- stage 1 / 2 (`distill_stage`): distillation of the student encoder on the proxy images / the
  source images (labels unused), with the configured method (QSD by default). Results:
  `checkpoints/stage{N}-student.safetensors` (the raw weights, which the next stage starts from,
  as in the authors' code) and `stage{N}-student-ema.safetensors` when an EMA is kept.
- stage 3 (`task_stage`): the decoder on the frozen encoder with the source labels; or, for the
  baselines, with the encoder trained, a distillation loss beside the task loss, a teacher
  segmenter's predictions as soft targets, or the frozen teacher as the encoder. Result:
  `checkpoints/segmenter.safetensors`.

The student is rebuilt at each stage's patch and input size from the previous stage's weights:
the authors' stage 1 runs at patch 14 (224 px, 16 x 16 tokens) and stages 2-3 at patch 16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.utils import ModelEmaV3
from torch import nn

from gkd_deploy.data.classes import IGNORE_INDEX
from gkd_deploy.data.transforms import DistillTransform, TaskTransform
from gkd_deploy.distill.gkd import Distiller, LossWeights
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.distill.methods import MethodInputs, build_objective
from gkd_deploy.errors import ConfigError, GKDError, ModelError
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.checkpoint import load_segmenter, save_encoder, save_segmenter
from gkd_deploy.models.encoder import ViTEncoder
from gkd_deploy.models.patch_grid import fit_state_dict
from gkd_deploy.models.weights import check_weights_readable
from gkd_deploy.models.config import EncoderConfig, SegmenterConfig
from gkd_deploy.models.segmenter import Segmenter, build_segmenter
from gkd_deploy.run import RunDir, resolve_checkpoint
from gkd_deploy.training import distributed
from gkd_deploy.training import state as training_state
from gkd_deploy.training.config import DistillSettings, TaskSettings, TrainConfig
from gkd_deploy.training.data import load_training_set, training_loader
from gkd_deploy.training.distributed import Context
from gkd_deploy.training.loop import Callbacks, LoopSpec, describe_stage, parameter_text, place_text, run_loop
from gkd_deploy.training.optim import adamw, adamw_parts
from gkd_deploy.training.schedule import warmup_cosine, warmup_poly

log = logging.getLogger(__name__)

STAGE_TITLES = {1: "task-agnostic distillation", 2: "domain-agnostic distillation", 3: "task learning"}


def handoff_path(run: RunDir, stage: int, settings: DistillSettings) -> Path:
    """The weights the stage after `stage` starts from: the raw student (the authors') or its EMA."""
    return run.stage_ema(stage) if settings.handoff == "ema" else run.stage_result(stage)


@dataclass(frozen=True)
class StageResult:
    stage: int
    path: Path
    steps: int
    metrics: dict[str, float]


def finished_before(result: Path, label: str, number: int, context: Context, callbacks: Callbacks) -> bool:
    """Whether a stage (or phase) `label` left its `result` in an earlier run of the folder; if so,
    it is checked readable (the next one builds on it) and skipped, and the display told so."""
    if not result.is_file():
        return False
    try:
        check_weights_readable(result)
    except GKDError as error:
        raise ConfigError(f"{label} finished, but its result {result} is damaged ({error}); delete it to train "
                          f"{label} again (from its last saved state, if there is one)") from None
    log.info("%s already finished (%s); skipping", label, result)
    if context.is_main:
        callbacks.stage_finished(number, {"skipped": True, "result": str(result)})
    return True


def step_random(config: TrainConfig, stage: int, step: int, global_batch: int, context: Context) -> BatchRandom:
    """The step's randomness (masks): one generator per step for the whole global batch; each rank takes its rows."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + stage * 100_003 + step)
    local = global_batch // context.world_size
    return BatchRandom(generator, global_batch, slice(context.rank * local, (context.rank + 1) * local))


# --- the student encoder, carried from stage to stage ----------------------------------------

def student_encoder(config: TrainConfig, previous: Path | None, img_size: int, patch_size: int) -> ViTEncoder:
    """The student at `patch_size` on `img_size` inputs: from the previous stage's weights (kernel and
    position embedding fitted to this stage's patch size and grid), else its own initial weights."""
    if previous is None:
        return create_encoder(config.student, pretrained=config.pretrained, weights=config.student_weights,
                              patch_size=patch_size, img_size=img_size, role="student")
    encoder = create_encoder(config.student, pretrained=False, patch_size=patch_size, img_size=img_size,
                             role="student")
    state = fit_state_dict(load_file(str(previous)), encoder.backbone, prefix="backbone.")
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{previous} does not fit the student encoder: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return encoder


def teacher_encoder(config: TrainConfig, img_size: int, patch_size: int) -> nn.Module:
    return create_encoder(config.teacher, pretrained=config.pretrained, weights=config.teacher_weights,
                          patch_size=patch_size, img_size=img_size, role="teacher")


def _objective(method: str, options: dict[str, Any], student: nn.Module, teacher: nn.Module, img_size: int,
               settings: DistillSettings | None) -> nn.Module:
    weights = LossWeights(settings.feature_weight, settings.patch_weight, settings.token_weight) if settings else LossWeights()
    inputs = MethodInputs(student.embed_dim, teacher.embed_dim, student.grid_size(img_size, img_size), weights,
                          mask_prob=settings.mask_prob if settings else 0.5,
                          mask_ratio=settings.mask_ratio if settings else 0.5, options=dict(options))
    return build_objective(method, student, teacher, inputs)


def student_ema(student: nn.Module, decay: float, device: torch.device) -> ModelEmaV3:
    """An EMA of the student at exactly `decay` from the first step: ema <- decay * ema + (1 - decay) * w.
    (timm's warm-up would ramp the decay up from 0 and silently replace the configured value.)"""
    return ModelEmaV3(student, decay=decay, use_warmup=False, device=device)


# --- stages 1 and 2 ------------------------------------------------------------------------------

def _model_label(name: str | None, model: nn.Module) -> str:
    return f"{name} ({parameter_text(model)} params)"


def distill_stage(stage: int, config: TrainConfig, run: RunDir, context: Context, previous: Path | None,
                  callbacks: Callbacks) -> StageResult:
    settings = config.stage1 if stage == 1 else config.stage2
    torch.manual_seed(config.seed * 31 + stage)  # initial weights (heads, mask token) as a function of the seed
    entries = config.proxy if stage == 1 else config.source + config.distill_extra
    dataset = load_training_set(entries, labeled=False)
    steps = settings.steps_for(len(dataset))
    teacher = teacher_encoder(config, settings.img_size, settings.patch_size)
    student = student_encoder(config, previous, settings.img_size, settings.patch_size)
    objective = _objective(settings.method, settings.method_options, student, teacher, settings.img_size, settings)
    distiller = Distiller(student, teacher, objective).to(context.device)
    trained = distiller.trainable_modules()
    optimizer = adamw(trained, settings.lr(), settings.weight_decay)
    ema = student_ema(student, settings.ema_decay, context.device) if settings.ema else None
    global_batch = settings.batch_size
    peak_lr = settings.lr()
    start = _restore(run, stage, config, trained, optimizer, ema, context)
    module = distributed.wrap(distiller, context)
    distiller.train()

    def compute_losses(batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        images = batch["image"].to(context.device, non_blocking=True).float()
        return module(images, step_random(config, stage, step, global_batch, context))

    spec = LoopSpec(stage=stage, total_steps=steps, start_step=start, global_batch=global_batch,
                    lr_at=lambda step: warmup_cosine(step, steps, peak_lr, settings.min_lr, settings.warmup_steps),
                    clip_grad=settings.clip_grad, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, seed=config.seed, autocast=config.autocast)
    loader = training_loader(dataset, DistillTransform(settings.img_size), global_batch=global_batch,
                             seed=config.seed + stage, steps=steps, start_step=start, rank=context.rank,
                             world_size=context.world_size, workers=config.workers,
                             pin_memory=context.device.type == "cuda")
    if context.is_main:
        describe_stage(callbacks, stage, (
            f"{settings.method} distillation of {_model_label(config.student, student)} from "
            f"{_model_label(config.teacher, teacher)} on {len(dataset)} images at {settings.img_size} px (patch "
            f"{settings.patch_size}): {steps} steps of {global_batch}, peak lr {peak_lr:.3g}, {place_text(context)}"))
        callbacks.stage_started(stage, STAGE_TITLES[stage], steps, start)
    metrics = run_loop(
        spec, batches=loader, compute_losses=compute_losses, optimizer=optimizer,
        parameters=[p for p in trained.parameters() if p.requires_grad],
        after_step=lambda step: ema.update(student) if ema is not None else None,
        save_state=lambda step: _save(run, stage, step, config, trained, optimizer, ema, context),
        context=context, callbacks=callbacks)
    result = run.stage_result(stage)
    if context.is_main:
        encoder_config = EncoderConfig(config.student, settings.patch_size, settings.img_size, student.feature_blocks)
        extra = {"stage": stage, "steps": steps, "method": settings.method}
        if ema is not None:
            save_encoder(ema.module, run.stage_ema(stage), encoder_config, extra={**extra, "weights": "ema"})
        save_encoder(student, result, encoder_config, extra={**extra, "weights": "raw"})
    context.barrier()
    return StageResult(stage, result, steps, metrics)


# --- stage 3 ------------------------------------------------------------------------------------

class TaskObjective(nn.Module):
    """Stage 3's loss: the decoder's own loss on the encoder's features, plus what a baseline adds.

    - `train_encoder` False (GKD): the encoder runs in eval mode without gradients;
    - `distiller` (one-stage KD, eq. 3): the distillation loss on the same images, x `distill_weight`;
    - `logit_teacher` (G2SD's specific distillation): KL of the teacher segmenter's per-pixel class
      distribution to the student's at temperature T (x T^2), over labelled pixels, x `logit_weight`.
    """

    def __init__(self, segmenter: Segmenter, *, train_encoder: bool, distiller: Distiller | None = None,
                 distill_weight: float = 1.0, logit_teacher: Segmenter | None = None, logit_weight: float = 1.0,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.train_encoder = train_encoder
        segmenter.encoder.requires_grad_(train_encoder)
        self.distiller = distiller
        self.distill_weight = distill_weight
        self.logit_teacher = logit_teacher.requires_grad_(False).eval() if logit_teacher is not None else None
        self.logit_weight, self.temperature = logit_weight, temperature

    def train(self, mode: bool = True) -> "TaskObjective":
        super().train(mode)
        if not self.train_encoder:
            self.segmenter.encoder.eval()
        if self.logit_teacher is not None:
            self.logit_teacher.eval()
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor, random: BatchRandom) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) float 0..255, labels (B, H, W) int64 train ids / 255 -> losses."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            features = self.segmenter.encoder.forward_features(images)
        decoder = self.segmenter.decoder
        losses = decoder.loss(decoder.forward_train(features), labels)
        total = losses["loss"]
        if self.distiller is not None:
            distilled = self.distiller(images, random)
            losses["distill"] = distilled["loss"]
            total = total + self.distill_weight * distilled["loss"]
        if self.logit_teacher is not None:
            losses["logit_kd"] = self._logit_kd(decoder(features), images, labels)
            total = total + self.logit_weight * losses["logit_kd"]
        losses["loss"] = total
        return losses

    def _logit_kd(self, student_scores: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_scores = self.logit_teacher(images).float()
        student_scores = F.interpolate(student_scores.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        teacher_scores = F.interpolate(teacher_scores, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        t = self.temperature
        teacher_log = F.log_softmax(teacher_scores / t, dim=1)
        per_pixel = (teacher_log.exp() * (teacher_log - F.log_softmax(student_scores / t, dim=1))).sum(1)
        valid = (labels != IGNORE_INDEX).float()
        return per_pixel.mul(valid).sum() / valid.sum().clamp(min=1.0) * t * t


def _task_encoder(config: TrainConfig, settings: TaskSettings, previous: Path | None) -> nn.Module:
    if settings.encoder == "teacher":
        return teacher_encoder(config, settings.crop_size, settings.patch_size)
    return student_encoder(config, previous, settings.crop_size, settings.patch_size)


def _logit_teacher(settings: TaskSettings, segmenter: Segmenter) -> Segmenter | None:
    if settings.logit_teacher is None:
        return None
    checkpoint, _ = resolve_checkpoint(settings.logit_teacher)
    teacher = load_segmenter(checkpoint)
    if teacher.class_set.names != segmenter.class_set.names:
        raise ConfigError(f"stage3.logit_teacher {checkpoint} predicts other classes than the source labels")
    return teacher


def task_stage(config: TrainConfig, run: RunDir, context: Context, previous: Path | None,
               callbacks: Callbacks) -> StageResult:
    settings = config.stage3
    torch.manual_seed(config.seed * 31 + 3)
    dataset = load_training_set(config.source, labeled=True).subset(settings.label_fraction, config.seed)
    encoder_name = config.teacher if settings.encoder == "teacher" else config.student
    segmenter_config = SegmenterConfig(encoder=encoder_name, decoder=settings.decoder,
                                       decoder_options=dict(settings.decoder_options), patch_size=settings.patch_size,
                                       img_size=settings.crop_size, class_set=dataset.class_set)
    segmenter = build_segmenter(segmenter_config, pretrained=False)
    segmenter.encoder = _task_encoder(config, settings, previous)
    train_encoder = settings.encoder_lr > 0
    distiller = None
    if settings.distill_method is not None:
        teacher = teacher_encoder(config, settings.crop_size, settings.patch_size)
        objective = _objective(settings.distill_method, settings.distill_options, segmenter.encoder, teacher,
                               settings.crop_size, None)
        distiller = Distiller(segmenter.encoder, teacher, objective)
    task = TaskObjective(segmenter, train_encoder=train_encoder, distiller=distiller,
                         distill_weight=settings.distill_weight, logit_teacher=_logit_teacher(settings, segmenter),
                         logit_weight=settings.logit_weight, temperature=settings.logit_temperature).to(context.device)
    parts: list[tuple[nn.Module, float]] = [(segmenter.decoder, 1.0)]
    if train_encoder:
        parts.append((segmenter.encoder, settings.encoder_lr / settings.lr))
    if distiller is not None:
        parts.append((distiller.objective, 1.0))
    trained = nn.ModuleDict({f"part{i}": module for i, (module, _) in enumerate(parts)})
    optimizer = adamw_parts(parts, settings.lr, settings.weight_decay, decay_biases=True)
    start = _restore(run, 3, config, trained, optimizer, None, context)
    module = distributed.wrap(task, context)
    task.train()

    def compute_losses(batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        images = batch["image"].to(context.device, non_blocking=True).float()
        labels = batch["label"].to(context.device, non_blocking=True)
        return module(images, labels, step_random(config, 3, step, settings.batch_size, context))

    spec = LoopSpec(stage=3, total_steps=settings.steps, start_step=start, global_batch=settings.batch_size,
                    lr_at=lambda step: warmup_poly(step, settings.steps, settings.lr, settings.min_lr,
                                                   settings.warmup_steps, settings.poly_power),
                    clip_grad=settings.clip_grad, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, seed=config.seed, autocast=config.autocast)
    transform = TaskTransform((settings.crop_size, settings.crop_size), settings.short_side, settings.cat_max_ratio)
    loader = training_loader(dataset, transform, global_batch=settings.batch_size, seed=config.seed + 3,
                             steps=settings.steps, start_step=start, rank=context.rank,
                             world_size=context.world_size, workers=config.workers,
                             pin_memory=context.device.type == "cuda")
    if context.is_main:
        encoder_state = "trained" if train_encoder else "frozen"
        describe_stage(callbacks, 3, (
            f"{settings.decoder} decoder on the {encoder_state} {_model_label(encoder_name, segmenter.encoder)} "
            f"({parameter_text(segmenter.decoder)} decoder params), {len(dataset)} labelled images, crop "
            f"{settings.crop_size}: {settings.steps} steps of {settings.batch_size}, peak lr {settings.lr:.3g}, "
            f"{place_text(context)}"))
        callbacks.stage_started(3, STAGE_TITLES[3], settings.steps, start)
    metrics = run_loop(
        spec, batches=loader, compute_losses=compute_losses, optimizer=optimizer,
        parameters=[p for group in optimizer.param_groups for p in group["params"]],
        after_step=lambda step: None,
        save_state=lambda step: _save(run, 3, step, config, trained, optimizer, None, context),
        context=context, callbacks=callbacks)
    if context.is_main:
        encoder_from = ("teacher" if settings.encoder == "teacher" else
                        str(previous) if previous else f"{config.student} initial weights")
        save_segmenter(segmenter.eval(), run.segmenter_checkpoint,
                       extra={"stage": 3, "steps": settings.steps, "encoder_from": encoder_from,
                              "encoder_trained": train_encoder, "label_fraction": settings.label_fraction})
    context.barrier()
    return StageResult(3, run.segmenter_checkpoint, settings.steps, metrics)


# --- resumable state ----------------------------------------------------------------------------

def _restore(run: RunDir, stage: int, config: TrainConfig, trained: nn.Module, optimizer: torch.optim.Optimizer,
             ema: ModelEmaV3 | None, context: Context) -> int:
    path = run.stage_state(stage)
    if not path.is_file():
        return 0
    step = training_state.load_state(path, stage=stage, config=config.to_dict(), trained=trained,
                                     optimizer=optimizer, ema=ema)
    log.info("stage %d: resumed from %s at step %d", stage, path, step)
    return step


def _save(run: RunDir, stage: int, step: int, config: TrainConfig, trained: nn.Module,
          optimizer: torch.optim.Optimizer, ema: ModelEmaV3 | None, context: Context) -> None:
    if context.is_main:
        training_state.save_state(run.stage_state(stage), stage=stage, step=step, trained=trained,
                                  optimizer=optimizer, ema=ema, config=config.to_dict())
    context.barrier()
