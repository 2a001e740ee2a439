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

from gkd_deploy.models.decoders.mask2former.criterion import SetCriterion
from gkd_deploy.models.decoders.mask2former.pixel_decoder import PixelDecoder
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler
from gkd_deploy.models.decoders.mask2former.position_encoding import POSITION_CODES
from gkd_deploy.models.decoders.mask2former.transformer_decoder import MaskedTransformerDecoder
from gkd_deploy.models.pyramid import DEFAULT_SCALES

#: The lighter edge configuration: half the width, half the queries, one decoder pass over the
#: three levels (3 layers instead of 9) and a 2-layer deformable encoder (instead of 6), with
#: 4 attention heads (32 channels each, as in the default) and FFNs scaled with the width.
#: Use as `decoder_options=dict(EDGE_PRESET)`.
EDGE_PRESET: dict[str, Any] = {
    "hidden_dim": 128,
    "num_queries": 50,
    "dec_layers": 3,
    "pixel_layers": 2,
    "num_heads": 4,
    "dim_feedforward": 1024,
    "pixel_ffn": 512,
}


class Mask2FormerDecoder(nn.Module):
    """Feature maps of a plain ViT -> per-class scores at stride 4 (Mask2Former).

    Args:
        in_channels: encoder width C_in (384 for ViT-S).
        num_levels: number of encoder feature maps; must be 4 (one per pyramid level).
        num_classes: K.
        hidden_dim: channels of the pixel decoder, queries and mask features (256).
        num_queries: Q (100).
        dec_layers: transformer decoder layers (9: three passes over strides 32, 16, 8).
        pixel_layers: deformable encoder layers of the pixel decoder (6).
        num_heads: attention heads of both the deformable encoder and the decoder (8).
        num_points_deform: deformable sampling points per head and level (4).
        dim_feedforward: FFN width of the transformer decoder (2048).
        pixel_ffn: FFN width of the deformable encoder (1024).
        num_points: points per mask for the matching costs and mask losses (12544 = 112^2).
        oversample_ratio: candidates drawn per loss point by the importance sampler (3.0).
        importance_sample_ratio: share of loss points taken where the mask is most uncertain (0.75).
        class_weight, mask_weight, dice_weight: loss and matching-cost weights (2, 5, 5).
        no_object_weight: cross-entropy weight of the "no object" class (0.1).
        groups: GroupNorm groups of the pixel decoder (32).
        position_code: pixel coordinates of the sine position embeddings: "centre" (Detectron2's
            Mask2Former) or "mmdet" (mmdetection's, what imported mmseg heads were trained with).
        multiscale_inputs: the 4 maps come at strides 4, 8, 16, 32 (a DPT head), not all at the
            encoder's stride (the ViT pyramid's resizing is then left out).
    """

    def __init__(
        self,
        in_channels: int,
        num_levels: int,
        num_classes: int,
        *,
        hidden_dim: int = 256,
        num_queries: int = 100,
        dec_layers: int = 9,
        pixel_layers: int = 6,
        num_heads: int = 8,
        num_points_deform: int = 4,
        dim_feedforward: int = 2048,
        pixel_ffn: int = 1024,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        groups: int = 32,
        position_code: str = "centre",
        multiscale_inputs: bool = False,
    ) -> None:
        super().__init__()
        positive = {
            "in_channels": in_channels, "num_classes": num_classes, "hidden_dim": hidden_dim,
            "num_queries": num_queries, "num_heads": num_heads, "num_points_deform": num_points_deform,
            "dim_feedforward": dim_feedforward, "pixel_ffn": pixel_ffn, "num_points": num_points, "groups": groups,
        }
        for name, value in {**positive, "dec_layers": dec_layers, "pixel_layers": pixel_layers}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name in positive else 0):
                low = "a positive" if name in positive else "a non-negative"
                raise ValueError(f"Mask2Former: {name} must be {low} integer, got {value!r}")
        if num_levels != len(DEFAULT_SCALES):
            raise ValueError(
                f"Mask2Former: {num_levels} encoder feature maps, but the pixel decoder takes "
                f"{len(DEFAULT_SCALES)} (one per pyramid level, strides 4, 8, 16, 32)"
            )
        if hidden_dim % num_heads:
            raise ValueError(f"Mask2Former: hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if hidden_dim % groups:
            raise ValueError(
                f"Mask2Former: hidden_dim ({hidden_dim}) must be divisible by the GroupNorm groups ({groups})"
            )
        if hidden_dim % 4:
            raise ValueError(f"Mask2Former: hidden_dim ({hidden_dim}) must be a multiple of 4 (sine position codes)")
        if position_code not in POSITION_CODES:
            raise ValueError(f"Mask2Former: position_code must be one of {', '.join(POSITION_CODES)}, "
                             f"got {position_code!r}")
        if oversample_ratio < 1.0:
            raise ValueError(f"Mask2Former: oversample_ratio must be >= 1, got {oversample_ratio}")
        if not 0.0 <= importance_sample_ratio <= 1.0:
            raise ValueError(f"Mask2Former: importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
        for name, value in (("class_weight", class_weight), ("mask_weight", mask_weight),
                            ("dice_weight", dice_weight), ("no_object_weight", no_object_weight)):
            if value < 0:
                raise ValueError(f"Mask2Former: {name} must be >= 0, got {value}")

        self.num_classes = num_classes
        self.pixel_decoder = PixelDecoder(in_channels, hidden_dim, pixel_layers, num_heads, num_points_deform,
                                          pixel_ffn, groups, position_code, multiscale_inputs)
        self.transformer = MaskedTransformerDecoder(num_classes, hidden_dim, num_queries, dec_layers, num_heads,
                                                    dim_feedforward, num_levels=PixelDecoder.num_encoded_levels,
                                                    position_code=position_code)
        self.criterion = SetCriterion(
            num_classes, PointSampler(num_points, oversample_ratio, importance_sample_ratio),
            class_weight=class_weight, mask_weight=mask_weight, dice_weight=dice_weight,
            no_object_weight=no_object_weight,
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
