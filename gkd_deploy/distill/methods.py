"""Distillation methods by name: the objective each one trains the student with.

Every method builds an objective module `objective(student, teacher, images, random) -> losses`
(scalars, the total under "loss"): it runs the passes it needs (the teacher always without
gradients) and draws its masks from the step's `BatchRandom`, so resume and several processes
stay bit-exact. The loss of each baseline lives in its own module, written from its paper:

| name | method | paper |
|---|---|---|
| qsd | GKD's query-based soft distillation, feature + masked patch + CLS terms | Lv et al. 2026 |
| mse | the same three terms with LayerNorm + Linear heads (the paper's "MSE" ablation) | Lv et al. 2026 |
| proteus | the three projection terms, patch term on masked patches only | Zhang et al. 2024 |
| fitnets | projected last-layer patch tokens, MSE, no masking (vanilla KD) | Romero et al. 2015 |
| cwd | channel-wise spatial distributions, KL | Shu et al. 2021 |
| vitkd | shallow-layer mimicking + masked deep-layer generation | Yang et al. 2022 |
| afdcd | masked feature mimicking + omni-contrastive loss | Fan et al. 2023 |
| g2sd | MAE-style student + light decoder predicting the teacher's masked tokens | Huang et al. 2023 |
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from gkd_deploy.distill.afdcd import AfDCDLoss, afdcd_keep_mask
from gkd_deploy.distill.cwd import ChannelWiseDivergence
from gkd_deploy.distill.g2sd import G2SDDecoder, g2sd_keep_indices, g2sd_loss
from gkd_deploy.distill.gkd import LossWeights, ThreeTermObjective
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.distill.qsd import mse
from gkd_deploy.distill.vitkd import ViTKDLoss, vitkd_mask
from gkd_deploy.errors import ConfigError


@dataclass(frozen=True)
class MethodInputs:
    """What an objective is built from: the two encoders' widths, the token grid of the stage's
    input size, the GKD settings (masking, term weights) and the method's own options."""

    student_dim: int
    teacher_dim: int
    grid: tuple[int, int]
    weights: LossWeights = LossWeights()
    mask_prob: float = 0.5
    mask_ratio: float = 0.5
    options: dict[str, Any] | None = None


@dataclass(frozen=True)
class DistillMethod:
    name: str
    summary: str
    build: Callable[[MethodInputs], nn.Module]
    needs_vit_teacher: bool = False  # reads the teacher's intermediate blocks
    needs_vit_student: bool = False  # runs the student on visible patches only (absolute positions)


def _teacher_patches(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher.forward_tokens(images)[:, 1:]


def _as_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) row-major tokens -> (B, C, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class FitNetsObjective(nn.Module):
    """Vanilla feature KD (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, as the
    GKD paper applies it): a linear regressor maps the student's final patch tokens to the
    teacher's; MSE, clean images only."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.regressor = nn.Linear(student_dim, teacher_dim)

    def forward(self, student, teacher, images, random: BatchRandom) -> dict[str, torch.Tensor]:
        teacher_patches = _teacher_patches(teacher, images)
        loss = mse(self.regressor(student.forward_tokens(images)[:, 1:]), teacher_patches)
        return {"feature": loss, "loss": loss}


class CWDObjective(nn.Module):
    """CWD on the final patch tokens laid out as (B, C, h, w) maps (the loss in `distill.cwd`)."""

    def __init__(self, student_dim: int, teacher_dim: int, **options: Any) -> None:
        super().__init__()
        self.loss = ChannelWiseDivergence(student_dim, teacher_dim, **options)

    def forward(self, student, teacher, images, random: BatchRandom) -> dict[str, torch.Tensor]:
        teacher_patches = _teacher_patches(teacher, images)
        loss = self.loss(student.forward_tokens(images)[:, 1:], teacher_patches)
        return {"channel": loss, "loss": loss}


class ViTKDObjective(nn.Module):
    """ViTKD on the first two blocks (mimicking) and the final tokens (generation); `distill.vitkd`."""

    def __init__(self, student_dim: int, teacher_dim: int, grid: tuple[int, int], **options: Any) -> None:
        super().__init__()
        self.loss = ViTKDLoss(student_dim, teacher_dim, **options)

    def forward(self, student, teacher, images, random: BatchRandom) -> dict[str, torch.Tensor]:
        grid = student.grid_size(images.shape[-2], images.shape[-1])
        mask = random.take(vitkd_mask(random.global_batch, grid[0] * grid[1], self.loss.mask_ratio,
                                      random.generator)).to(images.device)
        with torch.no_grad():
            teacher_final, teacher_blocks = teacher.forward_block_tokens(images, (0, 1))
        student_final, student_blocks = student.forward_block_tokens(images, (0, 1))
        return self.loss(torch.stack([b[:, 1:] for b in student_blocks], 1),
                         torch.stack([b[:, 1:] for b in teacher_blocks], 1),
                         student_final[:, 1:], teacher_final[:, 1:], grid, mask)


class AfDCDObjective(nn.Module):
    """Af-DCD on the final patch tokens laid out as maps; `distill.afdcd`."""

    def __init__(self, student_dim: int, teacher_dim: int, grid: tuple[int, int], **options: Any) -> None:
        super().__init__()
        self.loss = AfDCDLoss(student_dim, teacher_dim, **options)
        self.loss.check_grid(*grid)

    def forward(self, student, teacher, images, random: BatchRandom) -> dict[str, torch.Tensor]:
        grid = student.grid_size(images.shape[-2], images.shape[-1])
        keep = random.take(afdcd_keep_mask(random.global_batch, grid[0], grid[1], self.loss.mask_ratio,
                                           random.generator)).to(images.device)
        teacher_map = _as_map(_teacher_patches(teacher, images), grid)
        student_map = _as_map(student.forward_tokens(images)[:, 1:], grid)
        return self.loss(student_map, teacher_map, keep.to(student_map.dtype))


class G2SDObjective(nn.Module):
    """G2SD's generic distillation: the student sees the visible patches only (mask ratio 0.75),
    a light decoder predicts the teacher's final tokens at the masked positions; `distill.g2sd`."""

    def __init__(self, student_dim: int, teacher_dim: int, grid: tuple[int, int], mask_ratio: float = 0.75,
                 **decoder_options: Any) -> None:
        super().__init__()
        self.mask_ratio = mask_ratio
        self.decoder = G2SDDecoder(student_dim, teacher_dim, grid, **decoder_options)

    def forward(self, student, teacher, images, random: BatchRandom) -> dict[str, torch.Tensor]:
        grid = student.grid_size(images.shape[-2], images.shape[-1])
        keep, restore, masked = g2sd_keep_indices(random.global_batch, grid[0] * grid[1], self.mask_ratio,
                                                  random.generator)
        keep, restore, masked = (random.take(t).to(images.device) for t in (keep, restore, masked))
        teacher_patches = _teacher_patches(teacher, images)
        predictions = self.decoder(student.forward_visible_tokens(images, keep), restore)
        loss = g2sd_loss(predictions, teacher_patches, masked)
        return {"generic": loss, "loss": loss}


def _three_terms(head: str, patch_term: str) -> Callable[[MethodInputs], nn.Module]:
    def build(inputs: MethodInputs) -> nn.Module:
        _no_options(inputs, "feature_weight, patch_weight, token_weight, mask_prob and mask_ratio (stage settings)")
        return ThreeTermObjective(inputs.student_dim, inputs.teacher_dim, head=head, weights=inputs.weights,
                                  mask_prob=inputs.mask_prob, mask_ratio=inputs.mask_ratio, patch_term=patch_term)
    return build


def _no_options(inputs: MethodInputs, what: str) -> None:
    if inputs.options:
        raise ConfigError(f"this method takes no method_options ({', '.join(inputs.options)} given); it is "
                          f"set by {what}")


def _with_options(cls: type, *, grid: bool, target: Any = None) -> Callable[[MethodInputs], nn.Module]:
    """A builder passing `options` as keyword arguments, checked against `target`'s (default `cls`'s) signature."""
    accepted = [name for name in inspect.signature(target or cls).parameters
                if name not in ("self", "student_dim", "teacher_dim", "grid", "decoder_options", "options")]

    def build(inputs: MethodInputs) -> nn.Module:
        options = dict(inputs.options or {})
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; this method takes: {', '.join(accepted) or 'none'}")
        args = (inputs.student_dim, inputs.teacher_dim) + ((inputs.grid,) if grid else ())
        try:
            return cls(*args, **options)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
    return build


def _fitnets(inputs: MethodInputs) -> nn.Module:
    _no_options(inputs, "nothing: it has no options")
    return FitNetsObjective(inputs.student_dim, inputs.teacher_dim)


def _g2sd(inputs: MethodInputs) -> nn.Module:
    accepted = ("mask_ratio", "decoder_dim", "depth", "num_heads", "mlp_ratio")
    unknown = sorted(set(inputs.options or {}) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; g2sd takes: {', '.join(accepted)}")
    try:
        return G2SDObjective(inputs.student_dim, inputs.teacher_dim, inputs.grid, **(inputs.options or {}))
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


_METHODS = (
    DistillMethod("qsd", "GKD: query-based soft distillation (feature, masked patch, CLS)", _three_terms("qsd", "all")),
    DistillMethod("mse", "GKD's three terms with plain projection heads (the MSE ablation)",
                  _three_terms("projection", "all")),
    DistillMethod("proteus", "Proteus: projection heads, patch term on the masked patches",
                  _three_terms("projection", "masked")),
    DistillMethod("fitnets", "vanilla KD: projected final patch tokens, MSE", _fitnets),
    DistillMethod("cwd", "channel-wise distillation (KL of per-channel spatial softmax)",
                  _with_options(CWDObjective, grid=False, target=ChannelWiseDivergence)),
    DistillMethod("vitkd", "ViTKD: mimic blocks 1-2, generate masked final tokens",
                  _with_options(ViTKDObjective, grid=True, target=ViTKDLoss), needs_vit_teacher=True),
    DistillMethod("afdcd", "Af-DCD: masked feature mimicking + omni-contrastive loss",
                  _with_options(AfDCDObjective, grid=True, target=AfDCDLoss)),
    DistillMethod("g2sd", "G2SD generic distillation: MAE-style student, decoder predicts masked teacher tokens",
                  _g2sd, needs_vit_student=True),
)

DISTILL_METHODS: dict[str, DistillMethod] = {method.name: method for method in _METHODS}


def build_objective(name: str, student: nn.Module, teacher: nn.Module, inputs: MethodInputs) -> nn.Module:
    """The objective of method `name` for these encoders; ConfigError when they cannot run it."""
    method = DISTILL_METHODS.get(name)
    if method is None:
        raise ConfigError(f"unknown distillation method '{name}'; available: {', '.join(DISTILL_METHODS)}")
    if method.needs_vit_teacher and not hasattr(teacher, "forward_block_tokens"):
        raise ConfigError(f"'{name}' distils the teacher's first blocks, which a {type(teacher).__name__} "
                          "teacher does not have: use a ViT teacher")
    if method.needs_vit_student and getattr(student, "_uses_rope", False):
        raise ConfigError(f"'{name}' runs the student on its visible patches only, which needs absolute position "
                          "embeddings; EVA students use rotary ones: choose a ViT student")
    try:
        return method.build(inputs)
    except ConfigError as error:
        raise ConfigError(f"distillation method '{name}': {error}") from None
