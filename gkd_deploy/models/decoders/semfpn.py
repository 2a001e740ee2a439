"""SemFPN decoder: an FPN neck and Panoptic FPN's semantic head over a plain ViT's block outputs.

This is the decoder of the GKD authors' segmentation setup (mmseg's "FPN" config: `FPN` neck +
`FPNHead`, the semantic branch of Panoptic FPN, Kirillov et al. 2019):

1. pyramid (`gkd_deploy.models.pyramid`): the block outputs, all at the encoder's stride
   (16), are resized bilinearly by x4, x2, x1, x0.5 -> strides 4, 8, 16, 32; no learned layers;
2. FPN neck: per level a 1x1 lateral conv to `neck_channels`; a top-down pathway adds each
   coarser lateral, upsampled (nearest, as mmseg's FPN) to the finer one's size; then a 3x3
   output conv per level. No norm or activation in the neck (mmseg's config has none);
3. semantic head: per level, [3x3 conv + GroupNorm + ReLU + 2x bilinear upsample] repeated until
   stride 4 (stride 4: one conv, no upsample; 8: one conv+up; 16: two; 32: three), the four
   stride-4 maps summed, dropout, 1x1 classifier.

So the logits come out at the stride of the finest pyramid level: 4 for the default scales,
i.e. (B, K, 4h, 4w) for (B, C, h, w) encoder maps; the segmenter resizes them to the input.

The forward pass loops only over the (fixed) number of levels and resizes by configured factors
or to the sizes of other tensors, so it traces to one ONNX graph with a free batch axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.decoder_options import SemFPNOptions
from gkd_deploy.models.decoders.base import DenseDecoder
from gkd_deploy.models.pyramid import ViTPyramid


class SemFPNDecoder(DenseDecoder):
    """Feature maps of a plain ViT -> logits at stride 4 (for the default pyramid).

    Args:
        in_channels: encoder width C (384 for ViT-S).
        num_levels: number of encoder feature maps; must equal len(options.scales) (4 by default).
        num_classes: K.
        options: widths, GroupNorm groups, dropout and pyramid scales (`SemFPNOptions`, checked
            when made).
    """

    def __init__(self, in_channels: int, num_levels: int, num_classes: int,
                 options: SemFPNOptions = SemFPNOptions()) -> None:
        super().__init__()
        if num_levels != len(options.scales):
            raise ValueError(
                f"SemFPN: {num_levels} encoder feature maps but {len(options.scales)} pyramid scales "
                f"{options.scales}; give the option `scales` with one factor per feature block"
            )
        self.options = options
        neck_channels, head_channels = options.neck_channels, options.head_channels

        self.pyramid = ViTPyramid(options.scales)
        # FPN neck (mmseg `FPN`): plain convs with bias, no norm, no activation.
        self.lateral_convs = nn.ModuleList(nn.Conv2d(in_channels, neck_channels, 1) for _ in range(num_levels))
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(neck_channels, neck_channels, 3, padding=1) for _ in range(num_levels)
        )
        # Semantic head (mmseg `FPNHead`): one branch per level, max(1, steps) conv blocks each.
        self.scale_heads = nn.ModuleList()
        for step in options.upsampling_steps():
            layers: list[nn.Module] = []
            for k in range(max(1, step)):
                # No conv bias: GroupNorm's shift replaces it (mmseg ConvModule, bias="auto").
                layers += [
                    nn.Conv2d(neck_channels if k == 0 else head_channels, head_channels, 3, padding=1, bias=False),
                    nn.GroupNorm(options.groups, head_channels),
                    nn.ReLU(inplace=True),
                ]
                if step > 0:
                    layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(options.dropout)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # mmseg's defaults: Xavier-uniform neck, Kaiming (fan_out, ReLU) head convs, unit GroupNorm,
        # and a classifier drawn with std 0.01 so the initial logits are near uniform.
        for conv in [*self.lateral_convs, *self.fpn_convs]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for module in self.scale_heads.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        """`num_levels` maps (B, C, h, w) at the encoder's stride -> logits (B, K, 4h, 4w).

        (4h, 4w) for the default scales; in general (floor(h*s0), floor(w*s0)), s0 = scales[0].
        """
        # Pyramid: (B, C, h*s_i, w*s_i), strides 4, 8, 16, 32 for the defaults.
        levels = self.pyramid(feature_maps)
        # Lateral 1x1 convs: (B, N, h*s_i, w*s_i), N = neck_channels.
        laterals = [conv(level) for conv, level in zip(self.lateral_convs, levels)]
        # Top-down, coarsest first: each level receives the already merged coarser one. Resizing to
        # the finer map's size (not by x2) also covers odd sizes, where x0.5 rounded down.
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        # 3x3 output convs: (B, N, h*s_i, w*s_i).
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        # Semantic head: every branch ends at (about) the finest size, (B, H, 4h, 4w), H = head_channels.
        # The final resize is an identity for sizes that halve evenly; it aligns odd sizes (as
        # mmseg's FPNHead does) and is applied unconditionally, so the graph never depends on the data.
        output = self.scale_heads[0](outs[0])
        for head, out in zip(self.scale_heads[1:], outs[1:]):
            output = output + F.interpolate(head(out), size=output.shape[-2:], mode="bilinear", align_corners=False)
        # (B, K, 4h, 4w)
        return self.classifier(self.dropout(output))
