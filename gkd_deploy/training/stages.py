"""The three GKD stages, each: build what it trains, restore a saved state, run the loop, save
its result.

- stage 1 / 2 (`distill_stage`): QSD distillation of the student encoder on the proxy folder /
  the source images (labels unused); result `checkpoints/stage{N}-student.safetensors` (the EMA
  weights when EMA is on).
- stage 3 (`task_stage`): the decoder on the frozen encoder with the source labels; result
  `checkpoints/segmenter.safetensors`.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.utils import ModelEmaV3
from torch import nn

from gkd_deploy.data.base import SegmentationDataset
from gkd_deploy.distill.gkd import GKDDistiller, LossWeights
from gkd_deploy.distill.masking import random_patch_mask
from gkd_deploy.errors import ModelError
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.checkpoint import save_encoder, save_segmenter
from gkd_deploy.models.encoder import ViTEncoder
from gkd_deploy.models.segmenter import EncoderConfig, Segmenter, SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir
from gkd_deploy.training import state as training_state
from gkd_deploy.training.config import TrainConfig
from gkd_deploy.training.data import load_training_set, training_loader
from gkd_deploy.training import distributed
from gkd_deploy.training.distributed import Context
from gkd_deploy.training.loop import Callbacks, LoopSpec, run_loop
from gkd_deploy.training.optim import adamw
from gkd_deploy.training.schedule import warmup_cosine, warmup_poly

log = logging.getLogger(__name__)

STAGE_TITLES = {1: "task-agnostic distillation", 2: "domain-agnostic distillation", 3: "task learning"}


def stage_result_path(run: RunDir, stage: int) -> Path:
    return run.segmenter_checkpoint if stage == 3 else run.checkpoint_dir / f"stage{stage}-student.safetensors"


def stage_state_path(run: RunDir, stage: int) -> Path:
    return run.checkpoint_dir / f"stage{stage}-state.pt"


@dataclass(frozen=True)
class StageResult:
    stage: int
    path: Path
    steps: int
    metrics: dict[str, float]


# --- the student encoder, carried from stage to stage ----------------------------------------

def student_encoder(config: TrainConfig, previous: Path | None, img_size: int) -> ViTEncoder:
    """The student at `img_size`: from the previous stage's result, else its own initial weights."""
    if previous is None:
        return create_encoder(config.student, pretrained=config.pretrained, weights=config.student_weights,
                              patch_size=config.patch_size, img_size=img_size, role="student")
    encoder = create_encoder(config.student, pretrained=False, patch_size=config.patch_size, img_size=img_size)
    load_resized(encoder, previous)
    return encoder


def load_resized(encoder: ViTEncoder, path: Path) -> None:
    """Load an encoder checkpoint saved at another input size: the position embedding is
    interpolated to this encoder's grid (stage 1 trains at 224 px, stage 2 at 512 px)."""
    state = load_file(str(path))
    key = "backbone.pos_embed"
    target = encoder.state_dict().get(key)
    if key in state and target is not None and state[key].shape != target.shape:
        grid = encoder.backbone.patch_embed.grid_size
        prefix = 0 if getattr(encoder.backbone, "no_embed_class", False) else encoder.num_prefix_tokens
        state[key] = resample_abs_pos_embed(state[key], new_size=list(grid), num_prefix_tokens=prefix)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{path} does not fit the student encoder: missing {missing[:3]}, unexpected {unexpected[:3]}")


def _ema(module: nn.Module, decay: float, device: torch.device) -> ModelEmaV3:
    # With warm-up the decay ramps as 1 - (1 + step) ** -2/3 up to `decay`, so short runs average
    # recent weights instead of staying at the initial ones.
    return ModelEmaV3(module, decay=decay, use_warmup=True, device=device)


# --- stages 1 and 2 ------------------------------------------------------------------------------

def distill_stage(stage: int, config: TrainConfig, run: RunDir, context: Context, previous: Path | None,
                  callbacks: Callbacks) -> StageResult:
    settings = config.stage1 if stage == 1 else config.stage2
    torch.manual_seed(config.seed * 31 + stage)  # initial weights (heads, mask token) as a function of the seed
    data_text = config.proxy if stage == 1 else config.source
    dataset = load_training_set(data_text, labeled=False)
    teacher = create_encoder(config.teacher, pretrained=config.pretrained, weights=config.teacher_weights,
                             patch_size=config.patch_size, img_size=settings.img_size, role="teacher")
    student = student_encoder(config, previous, settings.img_size)
    distiller = GKDDistiller(student, teacher, LossWeights(settings.feature_weight, settings.patch_weight,
                                                           settings.token_weight), head=settings.loss)
    distiller = distiller.to(context.device)
    trained = distiller.trainable_modules()
    optimizer = adamw(trained, settings.lr(), settings.weight_decay)
    ema = _ema(student, settings.ema_decay, context.device) if settings.ema else None
    global_batch = settings.batch_size
    peak_lr = settings.lr()
    start = _restore(run, stage, config, trained, optimizer, ema, context)
    module = distributed.wrap(distiller, context)
    distiller.train()
    num_patches = (settings.img_size // config.patch_size) ** 2
    local_batch = global_batch // context.world_size

    def compute_losses(batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        images = batch["image"].to(context.device, non_blocking=True).float()
        # One generator per step for the whole global batch; each rank takes its rows.
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + stage * 100_003 + step)
        mask = random_patch_mask(global_batch, num_patches, settings.mask_prob, settings.mask_ratio, generator)
        mask = mask[context.rank * local_batch:(context.rank + 1) * local_batch].to(context.device)
        return module(images, mask)

    spec = LoopSpec(stage=stage, total_steps=settings.steps, start_step=start, global_batch=global_batch,
                    lr_at=lambda step: warmup_cosine(step, settings.steps, peak_lr, settings.min_lr,
                                                     settings.warmup_steps),
                    clip_grad=settings.clip_grad, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, seed=config.seed)
    loader = training_loader(dataset, crop_size=settings.img_size, scale_range=settings.scale_range,
                             global_batch=global_batch, seed=config.seed + stage, steps=settings.steps,
                             start_step=start, rank=context.rank, world_size=context.world_size,
                             workers=config.workers, pin_memory=context.device.type == "cuda")
    if context.is_main:
        callbacks.stage_started(stage, STAGE_TITLES[stage], settings.steps, start)
    metrics = run_loop(
        spec, batches=loader, compute_losses=compute_losses, optimizer=optimizer,
        parameters=[p for p in trained.parameters() if p.requires_grad],
        after_step=lambda step: ema.update(student, step=step) if ema is not None else None,
        save_state=lambda step: _save(run, stage, step, config, trained, optimizer, ema, context),
        context=context, callbacks=callbacks)
    result = stage_result_path(run, stage)
    if context.is_main:
        final = ema.module if ema is not None else student
        save_encoder(final, result, EncoderConfig(config.student, config.patch_size, settings.img_size,
                                                  student.feature_blocks),
                     extra={"stage": stage, "steps": settings.steps, "ema": ema is not None})
    context.barrier()
    return StageResult(stage, result, settings.steps, metrics)


# --- stage 3 ------------------------------------------------------------------------------------

class FrozenEncoderTask(nn.Module):
    """The decoder's own loss on features of the frozen encoder (eval mode, no gradients)."""

    def __init__(self, segmenter: Segmenter) -> None:
        super().__init__()
        self.segmenter = segmenter
        segmenter.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenEncoderTask":
        super().train(mode)
        self.segmenter.encoder.eval()
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) float 0..255, labels (B, H, W) int64 train ids / 255 -> the decoder's losses."""
        with torch.no_grad():
            features = self.segmenter.encoder.forward_features(images)
        decoder = self.segmenter.decoder
        return decoder.loss(decoder.forward_train(features), labels)


def labelled_subset(dataset: SegmentationDataset, fraction: float, seed: int) -> SegmentationDataset:
    """A fixed share of the labelled samples, the same for a given seed (semi-supervised settings)."""
    if fraction >= 1.0:
        return dataset
    count = max(1, math.ceil(len(dataset) * fraction))
    chosen = np.sort(np.random.default_rng([seed, 7919]).choice(len(dataset), size=count, replace=False))
    subset = copy.copy(dataset)
    subset.samples = [dataset.samples[i] for i in chosen]
    return subset


def task_stage(config: TrainConfig, run: RunDir, context: Context, previous: Path | None,
               callbacks: Callbacks) -> StageResult:
    settings = config.stage3
    torch.manual_seed(config.seed * 31 + 3)
    dataset = labelled_subset(load_training_set(config.source, labeled=True), settings.label_fraction, config.seed)
    segmenter_config = SegmenterConfig(encoder=config.student, decoder=settings.decoder,
                                       decoder_options=dict(settings.decoder_options), patch_size=config.patch_size,
                                       img_size=settings.crop_size, class_set=dataset.class_set)
    segmenter = build_segmenter(segmenter_config, pretrained=False)
    segmenter.encoder = student_encoder(config, previous, settings.crop_size)
    task = FrozenEncoderTask(segmenter).to(context.device)
    optimizer = adamw(segmenter.decoder, settings.lr, settings.weight_decay, decay_biases=True)
    start = _restore(run, 3, config, segmenter.decoder, optimizer, None, context)
    module = distributed.wrap(task, context)
    task.train()

    def compute_losses(batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        images = batch["image"].to(context.device, non_blocking=True).float()
        labels = batch["label"].to(context.device, non_blocking=True)
        return module(images, labels)

    spec = LoopSpec(stage=3, total_steps=settings.steps, start_step=start, global_batch=settings.batch_size,
                    lr_at=lambda step: warmup_poly(step, settings.steps, settings.lr, settings.min_lr,
                                                   settings.warmup_steps, settings.poly_power),
                    clip_grad=settings.clip_grad, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, seed=config.seed)
    loader = training_loader(dataset, crop_size=settings.crop_size, scale_range=settings.scale_range,
                             global_batch=settings.batch_size, seed=config.seed + 3, steps=settings.steps,
                             start_step=start, rank=context.rank, world_size=context.world_size,
                             workers=config.workers, pin_memory=context.device.type == "cuda")
    if context.is_main:
        callbacks.stage_started(3, STAGE_TITLES[3], settings.steps, start)
    metrics = run_loop(
        spec, batches=loader, compute_losses=compute_losses, optimizer=optimizer,
        parameters=[p for p in segmenter.decoder.parameters() if p.requires_grad],
        after_step=lambda step: None,
        save_state=lambda step: _save(run, 3, step, config, segmenter.decoder, optimizer, None, context),
        context=context, callbacks=callbacks)
    if context.is_main:
        save_segmenter(segmenter.eval(), run.segmenter_checkpoint,
                       extra={"stage": 3, "steps": settings.steps, "encoder_from": str(previous) if previous else
                              f"{config.student} initial weights", "label_fraction": settings.label_fraction})
    context.barrier()
    return StageResult(3, run.segmenter_checkpoint, settings.steps, metrics)


# --- resumable state ----------------------------------------------------------------------------

def _restore(run: RunDir, stage: int, config: TrainConfig, trained: nn.Module, optimizer: torch.optim.Optimizer,
             ema: ModelEmaV3 | None, context: Context) -> int:
    path = stage_state_path(run, stage)
    if not path.is_file():
        return 0
    step = training_state.load_state(path, stage=stage, config=config.to_dict(), trained=trained,
                                     optimizer=optimizer, ema=ema)
    log.info("stage %d: resumed from %s at step %d", stage, path, step)
    return step


def _save(run: RunDir, stage: int, step: int, config: TrainConfig, trained: nn.Module,
          optimizer: torch.optim.Optimizer, ema: ModelEmaV3 | None, context: Context) -> None:
    if context.is_main:
        training_state.save_state(stage_state_path(run, stage), stage=stage, step=step, trained=trained,
                                  optimizer=optimizer, ema=ema, config=config.to_dict())
    context.barrier()
