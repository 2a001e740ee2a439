"""Mask2Former's transformer decoder: learnable queries refined by masked attention.

Each layer cross-attends from the queries to one encoded level (cycling stride 32, 16, 8), with
the attention restricted to where the previous prediction put the query's mask (masked
attention), then self-attends among the queries, then an FFN; post-norm residuals throughout.
One shared prediction head turns the queries into class logits and mask logits before the
first layer and after every layer: `num_layers + 1` predictions, the last one the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.decoders.mask2former.position_encoding import sine_position_embedding


def attention_mask(mask_logits: torch.Tensor, size: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Where each query may not look: (B, Q, H, W) mask logits -> (B*num_heads, Q, size[0]*size[1]) bool.

    True = masked: the prediction resized (bilinearly) to the level's size has sigmoid < 0.5. A
    query whose mask is empty everywhere would have every key masked and a softmax over nothing
    (NaN); such a query attends everywhere instead. That is decided arithmetically
    (`mask & ~mask.all(-1)`), not by Python branching, so the exported graph is the same for any
    data. No gradient flows through the mask.
    """
    resized = F.interpolate(mask_logits.detach(), size=size, mode="bilinear", align_corners=False)
    masked = resized.flatten(2).sigmoid() < 0.5  # (B, Q, h*w)
    masked = masked & ~masked.all(dim=-1, keepdim=True)
    # nn.MultiheadAttention takes a 3-D mask with the heads folded into the batch, batch-major.
    return masked.unsqueeze(1).expand(-1, num_heads, -1, -1).flatten(0, 1)


class DecoderLayer(nn.Module):
    """Masked cross-attention, self-attention, FFN; each `x = LN(x + dropout(sublayer(x)))`.

    Dropout (rate 0 unless `set_dropout` says otherwise, as Mask2Former's released configs) acts,
    as in DETR-style decoders, on the attention weights, on each sublayer's output and between the
    FFN's two linear layers; it draws nothing at rate 0 and nothing in eval mode.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.0)
        self.cross_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def set_dropout(self, rate: float) -> None:
        self.dropout.p = rate
        for attention in (self.cross_attention, self.self_attention):
            attention.dropout = rate  # nn.MultiheadAttention reads it at every training forward

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """queries (B, Q, C), query_pos (Q, C), memory (B, S, C), memory_pos (1, S, C),
        mask (B*heads, Q, S) bool (True = not attended) -> (B, Q, C)."""
        attended = self.cross_attention(queries + query_pos, memory + memory_pos, memory, attn_mask=mask,
                                        need_weights=False)[0]
        queries = self.norm1(queries + self.dropout(attended))
        with_pos = queries + query_pos
        attended = self.self_attention(with_pos, with_pos, queries, need_weights=False)[0]
        queries = self.norm2(queries + self.dropout(attended))
        hidden = self.dropout(F.relu(self.linear1(queries)))
        return self.norm3(queries + self.dropout(self.linear2(hidden)))


class PredictionHead(nn.Module):
    """Queries -> class logits (K + 1, the last "no object") and mask logits over the mask features."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        # A 3-layer MLP (ReLU between) gives each query a mask embedding in the mask-feature space.
        self.mask_embed = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim),
        )

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, Q, C), mask_features (B, C, H, W) -> logits (B, Q, K+1), masks (B, Q, H, W)."""
        queries = self.norm(queries)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(queries), mask_features)
        return self.class_embed(queries), masks


class MaskedTransformerDecoder(nn.Module):
    """Queries + encoded levels + mask features -> `num_layers + 1` (class logits, mask logits) pairs.

    Args:
        num_classes: K.
        dim: channels C of queries, levels and mask features.
        num_queries: Q.
        num_layers: decoder layers; layer i attends to level i mod num_levels.
        num_heads: attention heads.
        ffn_dim: FFN hidden width.
        num_levels: how many encoded levels the layers cycle over (3).
        position_code: the sine position convention (`position_encoding.POSITION_CODES`).
    """

    def __init__(self, num_classes: int, dim: int, num_queries: int, num_layers: int, num_heads: int, ffn_dim: int,
                 num_levels: int = 3, position_code: str = "centre") -> None:
        super().__init__()
        self.position_code = position_code
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.query_feat = nn.Embedding(num_queries, dim)  # the queries' initial content
        self.query_embed = nn.Embedding(num_queries, dim)  # their position embedding, added at every attention
        self.level_embed = nn.Embedding(num_levels, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.head = PredictionHead(dim, num_classes)

    def set_dropout(self, rate: float) -> None:
        """The dropout rate of every layer (in [0, 1)); a training setting, not saved with the weights."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        for layer in self.layers:
            layer.set_dropout(rate)

    def forward(
        self, mask_features: torch.Tensor, levels: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """mask_features (B, C, H, W), levels [(B, C, h_l, w_l)] coarsest first ->
        [(logits (B, Q, K+1), masks (B, Q, H, W))] for the initial queries and after each layer."""
        memories, memory_pos = [], []
        for index, level in enumerate(levels):
            height, width = level.shape[-2:]
            # The level embedding is part of the memory (key and value); the sine code only of the key.
            memories.append(level.flatten(2).transpose(1, 2) + self.level_embed.weight[index])
            memory_pos.append(sine_position_embedding(int(height), int(width), level.shape[1], device=level.device,
                                                      dtype=level.dtype, code=self.position_code)[None])
        # A copy per image (repeat, not an expand view: a view of a parameter made under no_grad
        # still claims requires_grad without a grad_fn, which trips module hooks such as
        # FlopCounterMode's); the position embedding goes in as the parameter and broadcasts.
        queries = self.query_feat.weight.repeat(mask_features.shape[0], 1, 1)  # (B, Q, C)
        query_pos = self.query_embed.weight  # (Q, C)

        predictions = [self.head(queries, mask_features)]
        for index, layer in enumerate(self.layers):
            level = index % self.num_levels
            mask = attention_mask(predictions[-1][1], levels[level].shape[-2:], self.num_heads)
            queries = layer(queries, query_pos, memories[level], memory_pos[level], mask)
            predictions.append(self.head(queries, mask_features))
        return predictions
