"""The Mask2Former decoder (Cheng et al. 2022) on a plain ViT, as the GKD paper trains it.

ViT block maps -> `vit_pyramid` (strides 4, 8, 16, 32) -> pixel decoder (deformable-attention
encoder over strides 8-32, FPN step to stride 4) -> masked-attention transformer decoder with Q
learnable queries -> per query a class distribution over K classes + "no object" and a mask.
For inference the queries' masks are combined into per-class scores at stride 4:
    scores[b, k] = sum_q softmax(class_logits[b, q])[k] * sigmoid(mask_logits[b, q]),  k < K,
which the segmenter resizes to the input like any dense decoder's logits (argmax unchanged in
meaning: the class with the highest score).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gkd_deploy.models.decoder_options import Mask2FormerOptions
from gkd_deploy.models.decoders.mask2former.criterion import SetCriterion
from gkd_deploy.models.decoders.mask2former.pixel_decoder import PixelDecoder
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler
from gkd_deploy.models.decoders.mask2former.transformer_decoder import MaskedTransformerDecoder
from gkd_deploy.models.pyramid import DEFAULT_SCALES


class Mask2FormerDecoder(nn.Module):
    """Feature maps of a plain ViT -> per-class scores at stride 4 (Mask2Former).

    Args:
        in_channels: encoder width C_in (384 for ViT-S).
        num_levels: number of encoder feature maps; must be 4 (one per pyramid level).
        num_classes: K.
        options: widths, depths, queries, loss points and weights (`Mask2FormerOptions`, checked
            when made; `EDGE_PRESET` the lighter edge values).
        multiscale_inputs: the 4 maps come at strides 4, 8, 16, 32 (a DPT head), not all at the
            encoder's stride (the ViT pyramid's resizing is then left out).
    """

    def __init__(self, in_channels: int, num_levels: int, num_classes: int,
                 options: Mask2FormerOptions = Mask2FormerOptions(), *, multiscale_inputs: bool = False) -> None:
        super().__init__()
        if num_levels != len(DEFAULT_SCALES):
            raise ValueError(
                f"Mask2Former: {num_levels} encoder feature maps, but the pixel decoder takes "
                f"{len(DEFAULT_SCALES)} (one per pyramid level, strides 4, 8, 16, 32)"
            )
        self.options = options
        self.num_classes = num_classes
        self.pixel_decoder = PixelDecoder(in_channels, options.hidden_dim, options.pixel_layers, options.num_heads,
                                          options.num_points_deform, options.pixel_ffn, options.groups,
                                          options.position_code, multiscale_inputs)
        self.transformer = MaskedTransformerDecoder(num_classes, options.hidden_dim, options.num_queries,
                                                    options.dec_layers, options.num_heads, options.dim_feedforward,
                                                    num_levels=PixelDecoder.num_encoded_levels,
                                                    position_code=options.position_code)
        self.criterion = SetCriterion(
            num_classes, PointSampler(options.num_points, options.oversample_ratio, options.importance_sample_ratio),
            class_weight=options.class_weight, mask_weight=options.mask_weight, dice_weight=options.dice_weight,
            no_object_weight=options.no_object_weight,
        )

    def predictions(self, feature_maps: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """4 maps (B, C_in, h, w) at stride 16 -> dec_layers + 1 pairs of class logits (B, Q, K+1)
        and mask logits (B, Q, 4h, 4w), the last pair the final prediction."""
        mask_features, levels = self.pixel_decoder(feature_maps)
        return self.transformer(mask_features, levels)

    def forward(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        """4 maps (B, C_in, h, w) -> semantic scores (B, K, 4h, 4w): per pixel and class, the sum
        over queries of class probability x mask probability (see `semantic_scores`)."""
        logits, masks = self.predictions(feature_maps)[-1]
        return semantic_scores(logits, masks)

    def forward_train(self, feature_maps: list[torch.Tensor]) -> dict[str, Any]:
        """4 maps (B, C_in, h, w) -> {"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, 4h, 4w),
        "aux_outputs": [the same for each earlier prediction, first to last]}."""
        return set_outputs(self.predictions(feature_maps))

    def loss(self, outputs: dict[str, Any], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """`forward_train` outputs and (B, H, W) int64 labels (255 ignored) -> {"loss", "ce", "mask", "dice"}."""
        return self.criterion(outputs, labels)


def set_outputs(predictions: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """`Mask2FormerDecoder.predictions` -> the set losses' input: the last pair as "pred_logits" /
    "pred_masks", the earlier ones (first to last) as "aux_outputs"."""
    *earlier, (logits, masks) = predictions
    return {
        "pred_logits": logits, "pred_masks": masks,
        "aux_outputs": [{"pred_logits": aux_logits, "pred_masks": aux_masks} for aux_logits, aux_masks in earlier],
    }


def semantic_scores(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Class logits (B, Q, K+1) and mask logits (B, Q, H, W) -> scores (B, K, H, W).

    Each query votes for every real class with its class probability, spread over its soft mask;
    the "no object" probability is dropped (a query sure to be empty votes for nothing).
    """
    return torch.einsum("bqc,bqhw->bchw", logits.softmax(-1)[..., :-1], masks.sigmoid())
