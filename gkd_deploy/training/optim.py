"""AdamW parameter groups: which parameters get weight decay."""

from __future__ import annotations

import torch
from torch import nn

# Norm layers and embedding tables (Mask2Former's query features / positions / level embeddings).
_NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.SyncBatchNorm, nn.Embedding)
# Learned embeddings and tokens: decaying them pulls positions and queries towards zero.
_EMBEDDING_WORDS = ("pos_embed", "cls_token", "mask_token", "reg_token", "query_embed", "level_embed")


def param_groups(module: nn.Module, weight_decay: float, decay_biases: bool = False) -> list[dict]:
    """Two AdamW groups: with decay, and without (norm layers, embedding tables and learned
    embeddings/tokens, and biases unless `decay_biases`). Frozen parameters are left out."""
    no_decay_ids = set()
    for module_name, child in module.named_modules():
        if isinstance(child, _NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in child.parameters(recurse=False))
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        is_bias = name.endswith(".bias") and not decay_biases
        if id(parameter) in no_decay_ids or is_bias or any(word in name for word in _EMBEDDING_WORDS):
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(module: nn.Module, lr: float, weight_decay: float, decay_biases: bool = False) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(module, weight_decay, decay_biases), lr=lr, betas=(0.9, 0.999))


def adamw_parts(parts: list[tuple[nn.Module, float]], lr: float, weight_decay: float,
                decay_biases: bool = True) -> torch.optim.AdamW:
    """One AdamW over several modules, each at `lr` x its own scale (stored as the groups'
    "lr_scale", which the training loop applies to the scheduled rate). A parameter shared by two
    modules is optimised once, in the first module's groups."""
    groups, seen = [], set()
    for module, lr_scale in parts:
        for group in param_groups(module, weight_decay, decay_biases):
            params = [p for p in group["params"] if id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                groups.append({**group, "params": params, "lr_scale": lr_scale})
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
