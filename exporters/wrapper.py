"""The module that gets traced: a segmenter fixed to one input size, returning scores and labels
(semantic) or masks, classes and scores (instance, post-processing in the graph).

Kept apart from the training module (Segment Anything's `utils/onnx.py` habit): export-only
changes happen on a deep copy, so the caller's model is never altered.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gkd_deploy.instance.postprocess import InstancePostprocess
from gkd_deploy.models.decoders.mask2former.deformable_attention import SAMPLINGS
from gkd_deploy.models.instance_segmenter import InstanceSegmenter
from gkd_deploy.models.patch_grid import resize_pos_embed
from gkd_deploy.models.segmenter import Segmenter
from gkd_deploy.runtime.metadata import INSTANCE_NETWORK_OUTPUTS, INSTANCE_OUTPUT_NAMES, OUTPUT_NAMES


class ExportWrapper(nn.Module):
    """(B, 3, H, W) float32 RGB 0-255 -> scores (B, K, H, W) float32, labels (B, H, W) uint8 (the
    argmax in the graph: a quarter of a float per pixel to copy back instead of K floats)."""

    output_names = OUTPUT_NAMES
    traced_names = OUTPUT_NAMES  # what the trace names: the outputs, and tensors inside to name

    def __init__(self, segmenter: Segmenter, input_size: tuple[int, int]) -> None:
        super().__init__()
        if segmenter.class_set.num_classes > 255:
            raise ValueError(f"{segmenter.class_set.num_classes} classes do not fit uint8 labels")
        self.segmenter = segmenter

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.segmenter(images)
        return scores, scores.argmax(dim=1).to(torch.uint8)


class InstanceExportWrapper(nn.Module):
    """(B, 3, H, W) float32 RGB 0-255 -> masks (B, K, H, W) uint8 0/1, classes (B, K) int64, scores
    (B, K) float32: the model's raw queries post-processed in the graph (`InstancePostprocess`, the
    config's top_k and mask threshold, masks at the input size). The projection head is not traced.
    The raw class and mask logits are traced as outputs too, so that they carry the names
    `INSTANCE_NETWORK_OUTPUTS` in the graph; the export drops them as outputs (`traced_names`)."""

    output_names = INSTANCE_OUTPUT_NAMES
    traced_names = INSTANCE_OUTPUT_NAMES + INSTANCE_NETWORK_OUTPUTS

    def __init__(self, segmenter: InstanceSegmenter, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.segmenter.projection = None  # training only; the copy loses it, the caller's model keeps it
        config = segmenter.config
        self.postprocess = InstancePostprocess(tuple(input_size), config.top_k, config.mask_threshold)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        class_logits, mask_logits = self.segmenter(images)
        masks, classes, scores = self.postprocess(class_logits, mask_logits)
        # uint8: bool outputs are not taken by every runtime
        return masks.to(torch.uint8), classes, scores, class_logits, mask_logits


WRAPPERS = {"semantic": ExportWrapper, "instance": InstanceExportWrapper}


def prepare_for_export(segmenter: Segmenter | InstanceSegmenter, input_size: tuple[int, int],
                       sampling: str = "gather") -> ExportWrapper | InstanceExportWrapper:
    """A CPU float32 eval-mode copy of `segmenter`, ready to trace at `input_size` (height, width).
    `sampling`: how deformable attention samples in the graph, "gather" (TensorRT builds it right)
    or "grid_sample" (one GridSample node: ONNX Runtime's CPU kernel is faster)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; use one of {', '.join(SAMPLINGS)}")
    model = copy.deepcopy(segmenter).cpu().float().eval()
    backbone = model.encoder.backbone
    grid = (input_size[0] // model.encoder.patch_size, input_size[1] // model.encoder.patch_size)
    _bake_position_embedding(backbone, grid)
    for module in model.modules():
        # timm's fused path calls scaled_dot_product_attention, which the TorchScript exporter
        # decomposes with its scale computed from runtime shapes (Shape -> Cast -> Sqrt, then two
        # Sqrt nodes sharing one input per block: the fp16 converter duplicates a Cast there and
        # writes an invalid graph). The explicit path multiplies by a constant scale and gives
        # the MatMul-Softmax-MatMul pattern TensorRT fuses; numerically the same.
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
        if hasattr(module, "sampling"):
            # The same numbers either way (the parity check holds both to PyTorch); see `sampling`.
            module.sampling = sampling
    return WRAPPERS[segmenter.task](model, input_size)


def _bake_position_embedding(backbone: nn.Module, grid: tuple[int, int]) -> None:
    """Resample the position embedding to the export token grid once, in eager mode.

    The backbone is built with `dynamic_img_size=True` and resamples its position embedding to
    every input's grid (`patch_grid.resize_pos_embed`, the project's one resize) unless the grid is
    the one it was built for. A fixed-size model does not need that interpolation in its graph:
    with the embedding stored at the export grid (resized the same way, once), the forward pass
    resizes nothing and only an addition is traced.
    """
    patch_embed = backbone.patch_embed
    old_grid = tuple(patch_embed.grid_size)
    if getattr(backbone, "pos_embed", None) is not None and old_grid != grid:
        prefix = 0 if getattr(backbone, "no_embed_class", False) else backbone.num_prefix_tokens
        with torch.no_grad():
            resampled = resize_pos_embed(backbone.pos_embed, grid, prefix, old_grid)
        backbone.pos_embed = nn.Parameter(resampled, requires_grad=False)
    patch_size = patch_embed.patch_size
    patch_embed.grid_size = grid
    patch_embed.img_size = (grid[0] * patch_size[0], grid[1] * patch_size[1])
    patch_embed.num_patches = grid[0] * grid[1]
