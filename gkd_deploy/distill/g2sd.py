"""G2SD generic distillation: an MAE-style decoder that predicts the teacher's features.

Huang, Peng, Dong, Wei, Jiao, Ye, "Generic-to-Specific Distillation of Masked Autoencoders",
CVPR 2023.

In generic distillation the student encoder sees only the visible patches (mask ratio 0.75). This
lightweight decoder embeds the encoder's tokens, appends mask tokens, restores the grid order, adds
fixed 2-D sin-cos position embeddings, runs `depth` transformer blocks and predicts the teacher's
features at every patch position. The loss is a smooth L1 (beta 2.0) between the predictions and
the teacher features normalised by a LayerNorm without affine parameters (eps 1e-6), averaged over
the masked positions and channels.

Shapes: N = h * w patch tokens in row-major order of the grid, Nv = int(N * (1 - mask_ratio))
visible ones; encoder tokens (B, 1 + Nv, Cs) with the CLS token first; predictions and teacher
tokens (B, N, Ct); masks (B, N) bool, True = masked. Official ViT-S setting: decoder width 256,
depth 4, 8 heads.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn


def g2sd_keep_indices(
    batch_size: int, num_tokens: int, mask_ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random split of every row into visible and masked patches.

    Returns keep_indices (B, Nv) long (the visible patches, in shuffled order), restore (B, N) long
    (the inverse of the shuffle: gathering `cat([visible, mask_tokens])` with it gives grid order)
    and masked (B, N) bool (True at the removed patches).
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    num_visible = int(num_tokens * (1 - mask_ratio))
    shuffle = torch.rand(batch_size, num_tokens, generator=generator).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    # In shuffled order the first Nv are visible; `restore` carries that back to grid order.
    masked_in_shuffled_order = torch.arange(num_tokens).expand(batch_size, -1) >= num_visible
    masked = torch.gather(masked_in_shuffled_order, 1, restore)
    return shuffle[:, :num_visible], restore, masked


def sincos_position_embedding(dim: int, height: int, width: int) -> torch.Tensor:
    """(h * w, dim) fixed 2-D sin-cos embedding, rows in row-major grid order.

    The first half of the channels encodes the column, the second half the row (as in MAE); each
    half is [sin(position * omega), cos(position * omega)] with omega = 10000^(-k / (dim / 4)).
    """
    if dim % 4 != 0:
        raise ValueError(f"decoder_dim must be a multiple of 4 for a 2-D sin-cos embedding, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(columns), encode(rows)], dim=1).float()


class G2SDDecoder(nn.Module):
    """Encoder tokens (B, 1 + Nv, Cs) and restore (B, N) -> teacher-feature predictions (B, N, Ct)."""

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        grid: tuple[int, int],
        decoder_dim: int = 256,
        depth: int = 4,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if decoder_dim % num_heads != 0:
            raise ValueError(f"num_heads must divide decoder_dim {decoder_dim}, got num_heads={num_heads}")
        height, width = grid
        self.student_dim, self.grid, self.num_tokens = student_dim, (height, width), height * width
        self.embed = nn.Linear(student_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        # A zero slot for the CLS token, then one row per grid position; fixed, so not in checkpoints.
        position = torch.cat([torch.zeros(1, decoder_dim), sincos_position_embedding(decoder_dim, height, width)])
        self.register_buffer("position_embedding", position.unsqueeze(0), persistent=False)
        # The MAE decoder's block: qkv bias, LayerNorm eps 1e-6.
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(decoder_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)
        )
        self.norm = norm_layer(decoder_dim)
        self.head = nn.Linear(decoder_dim, teacher_dim)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def unshuffle(self, embedded: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """(B, 1 + Nv, D) embedded tokens -> (B, 1 + N, D): CLS, then every patch in grid order."""
        batch, num_tokens = restore.shape
        cls, visible = embedded[:, :1], embedded[:, 1:]
        mask_tokens = self.mask_token.to(embedded.dtype).expand(batch, num_tokens - visible.shape[1], -1)
        patches = torch.cat([visible, mask_tokens], dim=1)
        patches = torch.gather(patches, 1, restore[..., None].expand(-1, -1, patches.shape[-1]))
        return torch.cat([cls, patches], dim=1)

    def forward(self, visible_tokens: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        self.check_inputs(visible_tokens, restore)
        tokens = self.unshuffle(self.embed(visible_tokens), restore) + self.position_embedding
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens))[:, 1:]

    def check_inputs(self, visible_tokens: torch.Tensor, restore: torch.Tensor) -> None:
        """Raise a ValueError unless visible_tokens is (B, 1 + Nv, Cs) and restore (B, N) long, Nv <= N."""
        if visible_tokens.dim() != 3 or visible_tokens.shape[-1] != self.student_dim:
            raise ValueError(
                f"visible_tokens must have shape (B, 1 + Nv, {self.student_dim}) (CLS first), "
                f"got {tuple(visible_tokens.shape)}"
            )
        batch, tokens = visible_tokens.shape[:2]
        if restore.shape != (batch, self.num_tokens) or restore.dtype != torch.long:
            raise ValueError(
                f"restore must be a long tensor of shape {(batch, self.num_tokens)} (batch, h * w of grid "
                f"{self.grid}), got {restore.dtype} {tuple(restore.shape)}"
            )
        if not 1 <= tokens <= 1 + self.num_tokens:
            raise ValueError(
                f"visible_tokens must hold the CLS token and at most {self.num_tokens} patch tokens, "
                f"got {tokens} tokens"
            )


def _init_weights(module: nn.Module) -> None:
    # As in MAE: xavier-uniform linear layers with zero bias, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def g2sd_loss(predictions: torch.Tensor, teacher_tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Smooth L1 (beta 2.0) to the LayerNorm-ed teacher, mean over masked positions and channels.

    predictions, teacher_tokens: (B, N, Ct); masked: (B, N) bool -> scalar.
    """
    if predictions.dim() != 3 or teacher_tokens.shape != predictions.shape:
        raise ValueError(
            f"teacher_tokens must have the shape of predictions (B, N, Ct) {tuple(predictions.shape)}, "
            f"got {tuple(teacher_tokens.shape)}"
        )
    if masked.shape != predictions.shape[:2] or masked.dtype != torch.bool:
        raise ValueError(
            f"masked must be a bool tensor of shape {tuple(predictions.shape[:2])}, "
            f"got {masked.dtype} {tuple(masked.shape)}"
        )
    # In at least fp32: the LayerNorm statistics and the mean over many tokens.
    dtype = torch.promote_types(predictions.dtype, torch.float32)
    target = F.layer_norm(teacher_tokens.to(dtype), teacher_tokens.shape[-1:], eps=1e-6)
    per_token = F.smooth_l1_loss(predictions.to(dtype), target, beta=2.0, reduction="none").mean(dim=-1)
    weights = masked.to(dtype)
    # clamp: a batch without masked positions gives 0, not NaN.
    return (per_token * weights).sum() / weights.sum().clamp_min(1)
