"""The phases of semi-supervised instance distillation (SSKD), each: build what it trains, restore
a saved state, run the shared loop (`training.loop.run_loop`), save its result.

- finetune: the teacher from its initial weights on the labelled set (L_sup);
- selftrain: the pool labelled by the finetuned teacher, then the teacher RE-INITIALISED (the same
  initial weights as finetune started from) and trained with the unified loss;
- transfer: the pool labelled by the adapted teacher (selftrain's, or finetune's without
  adaptation, or the zero-shot composite teacher), the student trained with the unified loss;
- refine: the student (from transfer, or from its initial weights for the supervised baseline) on
  the labelled set (L_sup).

A phase whose result file exists is done and skipped on resume; a phase with a state file goes on
from its last saved step; pseudo-labels are written once per phase (`sskd.pseudo`). The final
student is also saved as the run's segmenter, which `gkd eval / export / validate` take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from gkd_deploy.data.classes import ClassSet, named_class_set
from gkd_deploy.data.instances.splits import InstanceSubset, split_dataset
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.instance.contrastive import PixelContrastiveLoss
from gkd_deploy.instance.criterion import InstanceCriterion
from gkd_deploy.instance.teacher import InstanceTeacher, SegmenterTeacher
from gkd_deploy.instance.views import ViewAugmentation
from gkd_deploy.models.checkpoint import load_instance_segmenter, save_instance_segmenter
from gkd_deploy.models.instance_segmenter import InstanceSegmenter, InstanceSegmenterConfig, build_instance_segmenter
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import RunDir
from gkd_deploy.sskd.config import PHASE_NUMBERS, PHASE_TITLES, InstanceModelSettings, InstanceTrainConfig, PhaseSettings
from gkd_deploy.sskd.data import InstanceItems, batch_instances, instance_loader, instance_transform
from gkd_deploy.sskd.objective import StepRandom, UnifiedObjective
from gkd_deploy.sskd.pseudo import PseudoLabels, label_pool, write_pseudo_labels
from gkd_deploy.training import distributed
from gkd_deploy.training import state as training_state
from gkd_deploy.training.distributed import Context
from gkd_deploy.training.loop import Callbacks, LoopSpec, describe_stage, parameter_text, place_text, run_loop
from gkd_deploy.training.optim import adamw_parts
from gkd_deploy.training.schedule import warmup_multistep, warmup_poly
from gkd_deploy.training.stages import StageResult, finished_before

log = logging.getLogger(__name__)

_INIT_STREAMS = {"teacher": 101, "student": 202}


@dataclass(frozen=True)
class InstanceData:
    """The source's train split as the labelled set and the unlabelled pool."""

    labelled: InstanceSubset
    pool: InstanceSubset
    class_set: ClassSet
    labelled_instances: int = 0  # in the labelled set: what a pool image may be expected to hold

    @property
    def instances_per_labelled_image(self) -> float:
        return self.labelled_instances / max(len(self.labelled), 1)


def instance_data(config: InstanceTrainConfig) -> InstanceData:
    """Split the source and read every labelled image's annotation once, so that a bad file stops
    the run before training with one line naming it (not inside a data loader worker)."""
    from gkd_deploy.evaluation.instances import instance_domains

    (dataset,) = instance_domains(list(config.source), split="train").values()
    if not dataset.class_names:
        raise DataError(f"{dataset.name}: its annotations define no class; instance training needs at least one")
    labelled, pool = split_dataset(dataset, config.label_fraction, config.seed)
    # Decoding checks the instance ids against the semantic labels.
    instances = sum(len(labelled[index].target.classes) for index in range(len(labelled)))
    return InstanceData(labelled, pool, named_class_set(dataset.name, dataset.class_names), instances)


# Pseudo-labels this much sparser than the labelled set mostly say "nothing here": training on
# them teaches a model to predict no instance on the pool (measured in the miniature: a teacher
# fine-tuned 100 steps kept 12 instances at score >= 0.3 on 180 pool images, 0.07 per image against
# 15.7 labelled; self-trained on them, it kept none).
SPARSE_PSEUDO_LABELS = 0.1


def sparse_pseudo_label_warning(labels: PseudoLabels, data: InstanceData, phase: str) -> str | None:
    """A warning when the pool's pseudo-labels hold under `SPARSE_PSEUDO_LABELS` of the labelled
    set's instances per image; None otherwise."""
    expected = data.instances_per_labelled_image
    found = labels.num_instances / max(len(labels), 1)
    if expected == 0 or found >= SPARSE_PSEUDO_LABELS * expected:
        return None
    return (f"{phase}: the pseudo-labels hold {found:.2f} instances per pool image against {expected:.1f} per labelled "
            f"image ({labels.num_instances} at score >= {labels.threshold:g} on {len(labels)} images): the teacher is "
            "rarely that confident, and training on them teaches the model to find nothing on the pool. Train the "
            "teacher longer (finetune.steps), start it from pretrained weights, or lower pseudo_threshold")


def segmenter_config(config: InstanceTrainConfig, model: InstanceModelSettings,
                     class_set: ClassSet) -> InstanceSegmenterConfig:
    return InstanceSegmenterConfig(encoder=model.encoder, neck=model.neck, neck_channels=model.neck_channels,
                                   decoder=model.decoder, decoder_options=dict(model.decoder_options),
                                   patch_size=config.patch_size, img_size=config.img_size, class_set=class_set,
                                   projection_dim=config.projection_dim)


def initial_model(config: InstanceTrainConfig, role: str, class_set: ClassSet) -> InstanceSegmenter:
    """The teacher's or student's initial weights: the pretrained (or file) encoder, the rest drawn
    from the seed. The same every time it is asked for: selftrain re-initialises the teacher so."""
    model = getattr(config, role)
    torch.manual_seed(config.seed * 31 + _INIT_STREAMS[role])
    return build_instance_segmenter(segmenter_config(config, model, class_set), pretrained=config.pretrained,
                                    weights=model.weights)


def _lr_at(settings: PhaseSettings) -> Callable[[int], float]:
    """The phase's learning rate per step: its peak `lr` after warm-up, then its schedule."""
    if settings.schedule == "multistep":
        return lambda step: warmup_multistep(step, settings.steps, settings.lr, settings.warmup_steps)
    return lambda step: warmup_poly(step, settings.steps, settings.lr, 0.0, settings.warmup_steps, 0.9)


def _objective(config: InstanceTrainConfig, model: InstanceSegmenter, unified: bool) -> UnifiedObjective:
    criterion = InstanceCriterion(model.class_set.num_classes)
    if not unified or config.contrastive_weight == 0:
        return UnifiedObjective(model, criterion, None, None, unlabelled_weight=config.unlabelled_weight,
                                contrastive_weight=0.0)
    contrastive = PixelContrastiveLoss(config.temperature, config.num_negatives, config.max_anchors,
                                       config.negative_sampling, memory_bank=config.memory_bank)
    views = ViewAugmentation((config.crop_size, config.crop_size), flip_probability=0.0)
    return UnifiedObjective(model, criterion, contrastive, views, unlabelled_weight=config.unlabelled_weight,
                            contrastive_weight=config.contrastive_weight)


def train_phase(phase: str, config: InstanceTrainConfig, run: RunDir, context: Context, model: InstanceSegmenter,
                data: InstanceData, pseudo: PseudoLabels | None, callbacks: Callbacks) -> StageResult:
    """Train `model` for one phase (the pool with `pseudo` in the unified-loss phases) and save it."""
    settings, number = config.phase(phase), PHASE_NUMBERS[phase]
    unified = pseudo is not None
    objective = _objective(config, model, unified).to(context.device)
    if model.projection is not None:
        model.projection.requires_grad_(objective.uses_contrastive)  # unused parameters stay out of DDP
    model.set_dropout(settings.dropout)
    optimizer = adamw_parts([(model.encoder, settings.encoder_lr_scale), (model, 1.0)], settings.lr,
                            settings.weight_decay)
    carried = objective.carried_state()
    start = _restore(run, phase, config, model, optimizer, carried)
    module = distributed.wrap(objective, context, find_unused=True)  # the encoder's final norm, class token
    objective.train()
    transform = instance_transform(config.crop_size, config.short_side)
    loader_options = dict(steps=settings.steps, start_step=start, rank=context.rank, world_size=context.world_size,
                          workers=config.workers, pin_memory=context.device.type == "cuda")
    labelled = instance_loader(InstanceItems(data.labelled, transform), global_batch=settings.batch_size,
                               seed=config.seed + 10 * number, **loader_options)
    pools = (instance_loader(InstanceItems(data.pool, transform, pseudo), global_batch=settings.unlabelled_batch_size,
                             seed=config.seed + 10 * number + 5, **loader_options) if unified else None)
    local_labelled = settings.batch_size // context.world_size
    local_pool = settings.unlabelled_batch_size // context.world_size

    def batches():
        for batch in (labelled if pools is None else zip(labelled, pools)):
            yield {"labelled": batch} if pools is None else {"labelled": batch[0], "pool": batch[1]}

    def compute_losses(batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        images, instances = _on_device(batch["labelled"], context.device)
        pool_images, pool_instances = _on_device(batch["pool"], context.device) if "pool" in batch else (None, None)
        random = StepRandom(config.seed, number, step, context.rank, context.rank * local_labelled,
                            context.rank * local_pool)
        return module(images, instances, pool_images, pool_instances, random)

    spec = LoopSpec(stage=number, total_steps=settings.steps, start_step=start,
                    global_batch=settings.batch_size + settings.unlabelled_batch_size,
                    lr_at=_lr_at(settings), clip_grad=settings.clip_grad, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, seed=config.seed, autocast=config.autocast)
    if context.is_main:
        pool_text = f" + {settings.unlabelled_batch_size} pseudo-labelled of {len(data.pool)}" if unified else ""
        loss_text = "L_sup + L_pseudo" + (" + L_pxl" if objective.uses_contrastive else "") if unified else "L_sup"
        if carried:
            loss_text += f" (negatives also from a memory of {config.memory_bank} pixels)"
        dropout_text = f", dropout {settings.dropout:g}" if settings.dropout else ""
        describe_stage(callbacks, number, (
            f"{PHASE_TITLES[phase]}: {model.config.architecture} ({parameter_text(model)} params), {loss_text}; "
            f"{settings.batch_size} labelled of {len(data.labelled)}{pool_text} per step, crop {config.crop_size}: "
            f"{settings.steps} steps, lr {settings.lr:.3g}{dropout_text}, {place_text(context)}"))
        callbacks.stage_started(number, PHASE_TITLES[phase], settings.steps, start)
    metrics = run_loop(
        spec, batches=batches(), compute_losses=compute_losses, optimizer=optimizer,
        parameters=[p for group in optimizer.param_groups for p in group["params"]],
        after_step=lambda step: objective.step_done(),
        save_state=lambda step: _save(run, phase, step, config, model, optimizer, context, carried),
        context=context, callbacks=callbacks)
    result = run.phase_result(phase)
    if context.is_main:
        save_instance_segmenter(model.eval(), result, extra={"phase": phase, "steps": settings.steps,
                                                             "label_fraction": config.label_fraction})
    context.barrier()
    return StageResult(number, result, settings.steps, metrics)


def _on_device(batch: dict[str, torch.Tensor], device: torch.device):
    images = batch["image"].to(device, non_blocking=True).float()
    return images, batch_instances(batch["ids"].to(device), batch["classes"].to(device))


# --- the phases in order ---------------------------------------------------------------------------

def run_phases(config: InstanceTrainConfig, run: RunDir, context: Context, callbacks: Callbacks,
               record: Callable[[StageResult], None], track: Track = no_progress) -> list[StageResult]:
    """Every configured phase not yet done (`record` told of each result); the final student also
    becomes the run's segmenter."""
    data = instance_data(config)
    results: list[StageResult] = []
    for phase in config.phases:
        if finished_before(run.phase_result(phase), f"phase {phase}", PHASE_NUMBERS[phase], context, callbacks):
            continue
        model = _starting_model(phase, config, run, data)
        pseudo = _pool_labels(phase, config, run, context, data, track) if phase in ("selftrain", "transfer") else None
        result = train_phase(phase, config, run, context, model, data, pseudo, callbacks)
        results.append(result)
        record(result)
        if context.is_main:
            callbacks.stage_finished(result.stage, {"result": str(result.path), **result.metrics})
    final = next(p for p in reversed(config.phases) if p in ("transfer", "refine"))
    if context.is_main and not run.segmenter_checkpoint.is_file():
        student = load_instance_segmenter(run.phase_result(final))
        save_instance_segmenter(student, run.segmenter_checkpoint, extra={"phase": final, "recipe": config.recipe})
    context.barrier()
    return results


def _starting_model(phase: str, config: InstanceTrainConfig, run: RunDir, data: InstanceData) -> InstanceSegmenter:
    if phase in ("finetune", "selftrain"):
        return initial_model(config, "teacher", data.class_set)  # selftrain: re-initialised
    if phase == "refine" and "transfer" in config.phases:
        return load_instance_segmenter(run.phase_result("transfer"))
    return initial_model(config, "student", data.class_set)


def teacher_for(phase: str, config: InstanceTrainConfig, run: RunDir, device: torch.device,
                class_set: ClassSet) -> tuple[InstanceTeacher, str]:
    """The teacher that labels the pool for `phase` with `class_set`'s classes, and its name for the records."""
    if config.teacher_kind == "grounded-sam":
        from gkd_deploy.instance.grounded_sam import grounded_sam_teacher

        return grounded_sam_teacher(class_names=class_set.names, device=str(device)), "grounded-sam"
    source = "finetune" if phase == "selftrain" or "selftrain" not in config.phases else "selftrain"
    path = run.phase_result(source)
    return SegmenterTeacher(load_instance_segmenter(path).to(device)), str(path.relative_to(run.path))


def _pool_labels(phase: str, config: InstanceTrainConfig, run: RunDir, context: Context, data: InstanceData,
                 track: Track) -> PseudoLabels:
    path = run.pseudo_labels(phase)
    if context.is_main and not path.is_file():
        teacher, name = teacher_for(phase, config, run, context.device, data.class_set)
        with torch.inference_mode():
            labels = label_pool(teacher, data.pool, config.pseudo_threshold, name, track,
                                f"pseudo-labelling the pool for {phase}")
        write_pseudo_labels(labels, path)
        del teacher
    context.barrier()
    names = [data.pool.dataset.names[int(i)] for i in data.pool.indices]
    labels = PseudoLabels.read(path, names)
    if labels.threshold != config.pseudo_threshold:
        raise ConfigError(f"{path} keeps scores >= {labels.threshold}, this run's pseudo_threshold is "
                          f"{config.pseudo_threshold}; delete the file to label the pool again")
    warning = sparse_pseudo_label_warning(labels, data, phase)
    if warning is not None and context.is_main:
        log.warning(warning)
    return labels


def _restore(run: RunDir, phase: str, config: InstanceTrainConfig, model: nn.Module,
             optimizer: torch.optim.Optimizer, carried: dict[str, Any]) -> int:
    path = run.phase_state(phase)
    if not path.is_file():
        return 0
    step = training_state.load_state(path, stage=PHASE_NUMBERS[phase], config=config.to_dict(), trained=model,
                                     optimizer=optimizer, ema=None, extras=carried)
    log.info("phase %s: resumed from %s at step %d", phase, path, step)
    return step


def _save(run: RunDir, phase: str, step: int, config: InstanceTrainConfig, model: nn.Module,
          optimizer: torch.optim.Optimizer, context: Context, carried: dict[str, Any]) -> None:
    if context.is_main:
        training_state.save_state(run.phase_state(phase), stage=PHASE_NUMBERS[phase], step=step, trained=model,
                                  optimizer=optimizer, ema=None, config=config.to_dict(), extras=carried)
    context.barrier()
