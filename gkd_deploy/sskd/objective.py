"""SSKD's unified objective on one step's batches:

    L = L_sup(labelled) + unlabelled_weight x L_pseudo(pool) + contrastive_weight x L_pxl(all images)

L_sup and L_pseudo are the instance set loss (`InstanceCriterion`) against the annotations and the
teacher's pseudo-instances, on the weak view of each image, which is the augmented crop itself
(flip and rescaling are the data transform's, so the weak view needs no second warp and its
targets are the batch's). L_pxl (`PixelContrastiveLoss`) pulls each weak-view pixel embedding
towards the same scene location in the strong view (a random resized crop with colour jitter,
grayscale and blur, `ViewAugmentation`) and pushes it from negatives drawn by the instance-aware
sampler from the strong views of the whole local batch (and, with a memory bank, from the strong
views of earlier steps). Label-only phases (finetune, refine) use L_sup alone and make no strong
view.

Randomness: each image's views come from a generator seeded by (seed, phase, step, its position in
the global batch), so one process and several draw the same views; the negatives are drawn within
each process's batch (with several processes, from fewer images each: the one part of a step that
is not the same as in one process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from gkd_deploy.instance.contrastive import NegativeMemory, PixelContrastiveLoss
from gkd_deploy.instance.criterion import InstanceCriterion
from gkd_deploy.instance.matching import Instances
from gkd_deploy.instance.views import View, ViewAugmentation, ViewPair
from gkd_deploy.training.sampling import item_seed


@dataclass(frozen=True)
class StepRandom:
    """The step's seeds: views per image by global position, negatives per process."""

    seed: int
    phase: int
    step: int
    rank: int
    labelled_offset: int  # this process's first position in the global labelled batch
    pool_offset: int

    def view_generators(self, labelled: int, pool: int) -> list[torch.Generator]:
        positions = [self.labelled_offset + i for i in range(labelled)]
        positions += [1_000_000 + self.pool_offset + i for i in range(pool)]
        return [torch.Generator().manual_seed(item_seed(self.seed, 1000 * self.phase + 7, self.step * 10_000_000 + p))
                for p in positions]

    def sampler_generator(self, device: torch.device) -> torch.Generator:
        generator = torch.Generator(device=device)
        return generator.manual_seed(item_seed(self.seed, 1000 * self.phase + 11, self.step * 1000 + self.rank))


def _rows(outputs: dict[str, Any], rows: slice) -> dict[str, Any]:
    """The set-loss input of some images of a batch."""
    return {"pred_logits": outputs["pred_logits"][rows], "pred_masks": outputs["pred_masks"][rows],
            "aux_outputs": [_rows(aux, rows) for aux in outputs.get("aux_outputs", [])]}


def strong_views(images: torch.Tensor, augmentation: ViewAugmentation, generators: Sequence[torch.Generator]) -> ViewPair:
    """Each image's weak / strong pair from its own generator, as one batch."""
    pairs = [augmentation(image[None], generator) for image, generator in zip(images, generators)]

    def joined(views: list[View]) -> View:
        return View(torch.cat([v.images for v in views]), torch.cat([v.to_original for v in views]))

    return ViewPair(joined([p.weak for p in pairs]), joined([p.strong for p in pairs]))


class UnifiedObjective(nn.Module):
    """The model's losses on a step: `forward(labelled images, labelled instances, pool images,
    pool instances, random)`; pool arguments None in label-only phases. The weak view is the
    input batch itself, so `augmentation` must not flip (its weak view is then the identity)."""

    def __init__(self, model: nn.Module, criterion: InstanceCriterion, contrastive: PixelContrastiveLoss | None,
                 augmentation: ViewAugmentation | None, *, unlabelled_weight: float = 1.0,
                 contrastive_weight: float = 0.2) -> None:
        super().__init__()
        if augmentation is not None and augmentation.flip_probability != 0.0:
            raise ValueError("the unified objective's weak view is the batch itself: use flip_probability 0")
        self.model, self.criterion, self.contrastive, self.augmentation = model, criterion, contrastive, augmentation
        self.unlabelled_weight, self.contrastive_weight = unlabelled_weight, contrastive_weight

    @property
    def uses_contrastive(self) -> bool:
        return self.contrastive is not None and self.contrastive_weight > 0

    def carried_state(self) -> dict[str, NegativeMemory]:
        """What goes from step to step besides the weights (the negative memory, when there is
        one): saved and restored with the phase's state."""
        memory = None if self.contrastive is None else self.contrastive.memory
        return {} if memory is None else {"negative_memory": memory}

    def step_done(self) -> None:
        """After the optimiser step: the memory takes this step's pixels."""
        for value in self.carried_state().values():
            value.commit()

    def forward(self, images: torch.Tensor, instances: Sequence[Instances], pool_images: torch.Tensor | None,
                pool_instances: Sequence[Instances] | None, random: StepRandom) -> dict[str, torch.Tensor]:
        labelled = images.shape[0]
        batch = images if pool_images is None else torch.cat([images, pool_images])
        outputs = self.model.forward_train(batch)
        supervised = self.criterion(_rows(outputs, slice(0, labelled)), instances)
        losses = {"sup": supervised["loss"].detach()}
        total = supervised["loss"]
        if pool_images is not None:
            pseudo = self.criterion(_rows(outputs, slice(labelled, None)), pool_instances)
            losses["pseudo"] = pseudo["loss"].detach()
            total = total + self.unlabelled_weight * pseudo["loss"]
            if self.uses_contrastive:
                pixel = self._contrastive(batch, outputs, random, labelled, pool_images.shape[0])
                losses["pxl"] = pixel.detach()
                total = total + self.contrastive_weight * pixel
        losses["loss"] = total
        return losses

    def _contrastive(self, batch: torch.Tensor, weak: dict[str, Any], random: StepRandom, labelled: int,
                     pool: int) -> torch.Tensor:
        pair = strong_views(batch.cpu(), self.augmentation, random.view_generators(labelled, pool))
        strong = self.model.forward_train(pair.strong.images.to(batch.device))
        embeddings = weak["pixel_embeddings"]
        points, valid = pair.correspondence(tuple(embeddings.shape[2:]))
        return self.contrastive(embeddings, strong["pixel_embeddings"], points.to(batch.device), valid.to(batch.device),
                                (weak["pred_logits"], weak["pred_masks"]),
                                (strong["pred_logits"], strong["pred_masks"]),
                                generator=random.sampler_generator(batch.device))
