"""Fixed sine position embeddings of a feature map's pixels (DETR / Mask2Former style)."""

from __future__ import annotations

import math

import torch

from gkd_deploy.models.decoder_options import POSITION_CODES


def sine_position_embedding(
    height: int, width: int, dim: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32,
    temperature: float = 10000.0, code: str = "centre",
) -> torch.Tensor:
    """(height*width, dim) embedding of each pixel, row-major like `tensor.flatten(-2)`.

    The first dim/2 channels encode the row, the last dim/2 the column. Coordinates are pixel
    positions normalised to (0, 2*pi] (`code`: pixel centres by default, or mmdetection's
    convention, see `POSITION_CODES`), so a level's embedding does not depend on its resolution
    (a coarse and a fine map get matching codes at the same image position). Each half
    interleaves sin and cos at geometrically spaced frequencies.

    Only sizes enter, never data: when a model is traced for export at a fixed input size the
    embedding becomes a constant of the graph.
    """
    if dim % 4:
        raise ValueError(f"sine position embedding: dim must be a multiple of 4, got {dim}")
    if code not in POSITION_CODES:
        raise ValueError(f"sine position embedding: code must be one of {', '.join(POSITION_CODES)}, got {code!r}")
    offset, eps = POSITION_CODES[code]
    half = dim // 2
    ys = (torch.arange(height, device=device, dtype=torch.float32) + offset) / (height + eps) * (2 * math.pi)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + offset) / (width + eps) * (2 * math.pi)
    # Channel pair 2i, 2i+1 shares the frequency temperature^(-2i/half).
    frequencies = temperature ** (2 * (torch.arange(half, device=device, dtype=torch.float32) // 2) / half)

    def encode(coords: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half)
        phases = coords[:, None] / frequencies
        return torch.stack((phases[:, 0::2].sin(), phases[:, 1::2].cos()), dim=-1).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(height, width, half)
    pos_x = encode(xs)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, dim).to(dtype)
