"""Several processes through PyTorch's own engine: `torchrun` (or `gkd train --devices N`) sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; we join the group (NCCL on GPUs,
gloo on CPUs), wrap the trained module in DistributedDataParallel, write files on rank 0 only
and average the logged numbers across ranks."""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gkd_deploy.devices import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over ranks (what every rank logs is then the same number)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when the loss is finite on every rank: all ranks stop together."""
        flag = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
        if self.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())


def init_context(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun; a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def shutdown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wrap(module: torch.nn.Module, context: Context, *, find_unused: bool = False) -> torch.nn.Module:
    """The module under DistributedDataParallel when several processes train, else itself.
    `find_unused`: some trained parameters get no gradient in a step (a ViT's final norm and class
    token when only its block features are read), which DDP then has to look for."""
    if not context.distributed:
        return module
    # DDP compares gradient strides literally; 1x1 convolution kernels get arbitrary strides on
    # their size-1 dimensions, which only costs a copy of a small tensor. Not worth a warning per step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(module, find_unused_parameters=find_unused)
