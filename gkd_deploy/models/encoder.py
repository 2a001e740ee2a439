"""One encoder interface over timm's ViT and EVA-02 backbones.

What the GKD stages need from an encoder, and nothing more:
- `forward_tokens(images, patch_mask=None)`: the final, normalised [CLS, patch] tokens, optionally
  with a learnable mask token in place of masked patches (distillation);
- `forward_block_tokens(images, blocks)`: the [CLS, patch] tokens after chosen blocks (baselines
  that distil shallow layers);
- `forward_features(images)`: block outputs before the final norm as (B, C, h, w) maps (decoders).

Both take images as (B, 3, H, W) float RGB in 0..255 with H, W multiples of the patch size; the
encoder normalises with its own mean/std, so a teacher and a student each get theirs.
Register tokens (DINOv2-reg) are dropped from every output.

timm's public API runs the unmasked decoder path (`forward_intermediates`); the masked and
visible-patch passes of distillation replace patch tokens between patch embedding and position
embedding, which no public timm entry point allows, so they call the backbone's steps
(`patch_embed`, `_pos_embed`, `norm_pre`, the blocks) themselves. Tested with timm 1.0.x (the upper
bound in pyproject.toml). The backbone's `_pos_embed` is the project's (`patch_grid.embed_positions`):
one position-embedding resize, bicubic without antialiasing, at load time and at run time.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from gkd_deploy.models.patch_grid import use_project_positions

# The decoder pyramid of the paper takes blocks 3, 5, 7, 11 of a 12-block ViT: 1/3, 1/2, 2/3 and
# all of the depth. Deeper models keep the same fractions (24 blocks -> 7, 11, 15, 23).
_FEATURE_FRACTIONS = (4 / 12, 6 / 12, 8 / 12, 12 / 12)


def default_feature_blocks(depth: int) -> tuple[int, ...]:
    """Indices (0-based) of the blocks whose outputs feed the decoder, spread like 3/5/7/11 of 12."""
    return tuple(max(0, round(depth * fraction) - 1) for fraction in _FEATURE_FRACTIONS)


class ViTEncoder(nn.Module):
    """A timm backbone (VisionTransformer or Eva) with mask-token and multi-block outputs."""

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        feature_blocks: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # At another input size than it was built at, every pass (ours and timm's) resizes the
        # position embedding the one way weights are resized when loaded (`patch_grid`).
        use_project_positions(backbone)
        self.backbone = backbone
        self.embed_dim: int = backbone.embed_dim
        self.depth: int = len(backbone.blocks)
        self.patch_size: int = backbone.patch_embed.patch_size[0]
        self.num_prefix_tokens: int = backbone.num_prefix_tokens
        self.feature_blocks = tuple(feature_blocks) if feature_blocks is not None else default_feature_blocks(self.depth)
        bad = [b for b in self.feature_blocks if not 0 <= b < self.depth]
        if bad:
            raise ValueError(f"feature blocks {bad} outside 0..{self.depth - 1}")
        # The Eva family applies rotary position embeddings inside every block.
        self._uses_rope = hasattr(backbone, "rope")
        # Pixel statistics scaled to 0..255 inputs; derived from the spec, so not saved.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)
        # Zero-initialised, as DINOv2's mask token (and the GKD authors' student) is.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.patch_size, width // self.patch_size

    def forward_tokens(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + h*w, C): [CLS, patches] after the final norm.

        `patch_mask` (B, h*w) bool, row-major over the patch grid: True patches are replaced by the
        mask token right after patch embedding (before position embedding), as in masked image
        modelling.
        """
        tokens, _ = self._run(images, patch_mask, collect=())
        return self._cls_and_patches(self.final_norm(tokens))

    def forward_block_tokens(self, images: torch.Tensor, blocks: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, H, W) -> the final tokens (as `forward_tokens`) and one (B, 1 + h*w, C) [CLS,
        patches] tensor per block in `blocks`, taken before the final norm, from one pass."""
        tokens, collected = self._run(images, None, collect=tuple(blocks))
        return self._cls_and_patches(self.final_norm(tokens)), [self._cls_and_patches(collected[b]) for b in blocks]

    def forward_visible_tokens(self, images: torch.Tensor, keep_indices: torch.Tensor) -> torch.Tensor:
        """MAE-style pass over the visible patches only: (B, 3, H, W), keep_indices (B, Nv) into
        the row-major patch grid -> (B, 1 + Nv, C) [CLS, visible patches] after the final norm.

        Patches are dropped after the position embedding, so each kept token keeps its position.
        Rotary embeddings (Eva) are tied to the full grid, so this pass supports plain ViTs only.
        """
        if self._uses_rope:
            raise ValueError("a pass over visible patches only needs a ViT with absolute position "
                             "embeddings; Eva models use rotary embeddings over the full grid")
        tokens, _ = self.embed(images)
        prefix, patches = tokens[:, :self.num_prefix_tokens], tokens[:, self.num_prefix_tokens:]
        index = keep_indices.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        x = torch.cat([prefix, torch.gather(patches, 1, index)], dim=1)
        for block in self.backbone.blocks:
            x = block(x)
        return self._cls_and_patches(self.final_norm(x))

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The backbone's trained final norm. timm puts it in `norm`, except where the model pools
        (EVA-02, `global_pool='avg'`): there `norm` is Identity and the trained norm is `fc_norm`,
        which timm applies only after pooling. One of the two is always Identity."""
        return self.backbone.fc_norm(self.backbone.norm(tokens))

    def _cls_and_patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """Drop register / distillation tokens: (B, P + N, C) -> (B, 1 + N, C)."""
        return torch.cat([tokens[:, :1], tokens[:, self.num_prefix_tokens:]], dim=1)

    def forward_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> one (B, C, H/p, W/p) map per feature block, before the final norm, through
        timm's public `forward_intermediates` (it stops after the last feature block)."""
        blocks = sorted(set(self.feature_blocks))  # a shallow model may feed one block to several levels
        maps = self.backbone.forward_intermediates(self.normalise(images), indices=blocks, stop_early=True,
                                                   output_fmt="NCHW", intermediates_only=True)
        by_block = dict(zip(blocks, maps))
        return [by_block[block] for block in self.feature_blocks]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(images)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """0..255 RGB -> the backbone's normalised input."""
        return (images - self.pixel_mean) / self.pixel_std

    def embed(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, W) -> tokens (B, P + h*w, C) entering the first block, and the rotary embedding (Eva) or None."""
        backbone = self.backbone
        x = backbone.patch_embed(self.normalise(images))  # (B, h, w, C): backbones are built with dynamic_img_size
        if patch_mask is not None:
            mask = patch_mask.reshape(x.shape[0], x.shape[1], x.shape[2], 1)
            x = torch.where(mask, self.mask_token.to(x.dtype).view(1, 1, 1, -1), x)
        rope = None
        if self._uses_rope:
            x, rope = backbone._pos_embed(x)
        else:
            x = backbone._pos_embed(x)
            x = backbone.patch_drop(x)
        return backbone.norm_pre(x), rope

    def _run(
        self, images: torch.Tensor, patch_mask: torch.Tensor | None, collect: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        x, rope = self.embed(images, patch_mask)
        per_block_rope = getattr(self.backbone, "rope_mixed", False) and rope is not None
        collected: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.backbone.blocks):
            if self._uses_rope:
                x = block(x, rope=rope[index] if per_block_rope else rope)
            else:
                x = block(x)
            if index in collect:
                collected[index] = x
        return x, collected
