"""Mask2Former's pixel decoder (MSDeformAttnPixelDecoder) over the ViT pyramid.

1. projection: each pyramid level (strides 4, 8, 16, 32 from `vit_pyramid`) goes through a 1x1
   conv + GroupNorm to `dim` channels;
2. deformable encoder: the three coarsest levels (strides 32, 16, 8), flattened together, pass
   `num_layers` post-norm layers of multi-scale deformable self-attention + FFN; every token
   carries a sine position embedding plus a learned embedding of its level;
3. FPN step: the stride-4 projection plus the encoded stride-8 map (bilinearly upsampled) goes
   through a 3x3 conv + GroupNorm + ReLU, and a 1x1 conv turns that into the mask features.

Outputs: the per-pixel mask features at stride 4, and the three encoded levels (coarsest first)
that the transformer decoder's masked cross-attention cycles over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.decoders.mask2former.deformable_attention import MultiScaleDeformableAttention
from gkd_deploy.models.decoders.mask2former.position_encoding import sine_position_embedding
from gkd_deploy.models.pyramid import DEFAULT_SCALES, ViTPyramid


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, groups: int, *, bias: bool,
               relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
        nn.GroupNorm(groups, out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DeformableEncoderLayer(nn.Module):
    """Post-norm: x = LN(x + MSDeformAttn(x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int, ffn_dim: int) -> None:
        super().__init__()
        self.attention = MultiScaleDeformableAttention(dim, num_levels, num_heads, num_points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """tokens (B, S, C), pos (1, S, C), reference_points (S, 2) -> (B, S, C)."""
        tokens = self.norm1(tokens + self.attention(tokens + pos, reference_points, tokens, shapes))
        return self.norm2(tokens + self.linear2(F.relu(self.linear1(tokens))))


def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Pixel centres of every level, as (x, y) fractions of the map, concatenated: (S, 2)."""
    points = []
    for height, width in shapes:
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
    return torch.cat(points)


class PixelDecoder(nn.Module):
    """ViT block maps -> (mask features at stride 4, encoded maps at strides 32, 16, 8).

    Args:
        in_channels: encoder width C_in.
        dim: channels of every output (Mask2Former's conv_dim = mask_dim, 256).
        num_layers: deformable encoder layers (6).
        num_heads, num_points: deformable attention heads (8) and points per head and level (4).
        ffn_dim: hidden width of the encoder FFN (1024).
        groups: GroupNorm groups (32).
        position_code: the sine position convention (`position_encoding.POSITION_CODES`).
        multiscale_inputs: the 4 maps already are at strides 4, 8, 16, 32 (a DPT head's), so the
            ViT pyramid's resizing is left out; False: all 4 at the encoder's stride 16.
    """

    #: The deformable encoder runs over this many of the coarsest pyramid levels; the rest get
    #: only the FPN step (Mask2Former: res3-res5 encoded, res2 by FPN).
    num_encoded_levels = 3

    def __init__(self, in_channels: int, dim: int, num_layers: int, num_heads: int, num_points: int, ffn_dim: int,
                 groups: int, position_code: str = "centre", multiscale_inputs: bool = False) -> None:
        super().__init__()
        self.position_code = position_code
        # Scales of 1 are identities (`vit_pyramid` leaves them out of the graph).
        self.pyramid = ViTPyramid((1.0,) * len(DEFAULT_SCALES) if multiscale_inputs else DEFAULT_SCALES)
        levels = self.num_encoded_levels
        # Index 0 is the coarsest level (stride 32), as the encoder and the decoder order them.
        self.input_proj = nn.ModuleList(_conv_norm(in_channels, dim, 1, groups, bias=True) for _ in range(levels))
        self.level_embed = nn.Parameter(torch.empty(levels, dim))
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(dim, levels, num_heads, num_points, ffn_dim) for _ in range(num_layers)
        )
        # FPN step for the stride-4 level; no conv bias ahead of GroupNorm (its shift replaces it).
        self.lateral = _conv_norm(in_channels, dim, 1, groups, bias=False)
        self.output = _conv_norm(dim, dim, 3, groups, bias=False, relu=True)
        self.mask_features = nn.Conv2d(dim, dim, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # Mask2Former's choices: Xavier-uniform projections and encoder matrices (the deformable
        # attention then re-applies its own scheme), Kaiming-uniform(a=1) FPN convs, N(0, 1) level
        # embeddings.
        for layer in self.layers:
            for parameter in layer.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)
            layer.attention.reset_parameters()
        for projection in self.input_proj:
            nn.init.xavier_uniform_(projection[0].weight, gain=1)
            nn.init.zeros_(projection[0].bias)
        for conv in (self.lateral[0], self.output[0], self.mask_features):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.normal_(self.level_embed)

    def forward(self, feature_maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """4 maps (B, C_in, h, w) at stride 16 (or, with `multiscale_inputs`, at strides 4, 8, 16, 32)
        -> mask features (B, D, 4h, 4w) and [(B, D, h/2, w/2), (B, D, h, w), (B, D, 2h, 2w)]
        (strides 32, 16, 8)."""
        fine, *coarse = self.pyramid(feature_maps)  # strides 4 | 8, 16, 32
        coarse = coarse[::-1]  # coarsest first
        projected = [proj(level) for proj, level in zip(self.input_proj, coarse)]  # (B, D, h_l, w_l)
        shapes = [(int(p.shape[-2]), int(p.shape[-1])) for p in projected]
        tokens = torch.cat([p.flatten(2).transpose(1, 2) for p in projected], dim=1)  # (B, S, D)
        dim = tokens.shape[-1]
        pos = torch.cat([
            sine_position_embedding(h, w, dim, device=tokens.device, dtype=tokens.dtype, code=self.position_code)
            + self.level_embed[i]
            for i, (h, w) in enumerate(shapes)
        ])[None]  # (1, S, D)
        points = reference_points(shapes, tokens.device).to(tokens.dtype)  # (S, 2)
        for layer in self.layers:
            tokens = layer(tokens, pos, points, shapes)
        encoded = [
            part.transpose(1, 2).unflatten(-1, shape)
            for part, shape in zip(tokens.split([h * w for h, w in shapes], dim=1), shapes)
        ]  # (B, D, h_l, w_l), coarsest first
        # FPN step: the finest encoded map (stride 8) upsampled onto the stride-4 lateral.
        lateral = self.lateral(fine)
        merged = lateral + F.interpolate(encoded[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return self.mask_features(self.output(merged)), encoded
