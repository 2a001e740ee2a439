"""The optimisation loop shared by every stage: reads top to bottom, one step per batch.

What varies between stages (the loss, what is trained, the schedule) comes in as arguments;
what every stage needs is here: the learning rate per step, bf16 autocast on CUDA, a finite-loss
check on every rank before anything is saved, gradient clipping, EMA, averaged logs and periodic
atomic checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import torch

from gkd_deploy.devices import cpu_has_bf16
from gkd_deploy.errors import GKDError
from gkd_deploy.training.distributed import Context
from gkd_deploy.training.sampling import item_seed

log = logging.getLogger(__name__)


class TrainingError(GKDError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


class Callbacks(Protocol):
    """What a progress display gets told (rank 0 only). A display may also define
    `stage_described(stage, text)`: one line on what the stage trains, on which data, how long."""

    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None: ...

    def step_finished(self, stage: int, step: int, metrics: dict[str, float]) -> None: ...

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None: ...


def describe_stage(callbacks: Callbacks, stage: int, text: str) -> None:
    """Log the stage's summary line and pass it to displays that show it."""
    log.info("stage %d: %s", stage, text)
    _tell_described(callbacks, stage, text)


def _tell_described(callbacks: Callbacks, stage: int, text: str) -> None:
    described = getattr(callbacks, "stage_described", None)  # optional in the protocol
    if described is not None:
        described(stage, text)


class CallbackGroup:
    """Several callbacks told the same thing, in order."""

    def __init__(self, *members: Callbacks) -> None:
        self.members = members

    def stage_described(self, stage: int, text: str) -> None:
        for member in self.members:
            _tell_described(member, stage, text)

    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None:
        for member in self.members:
            member.stage_started(stage, title, total_steps, start_step)

    def step_finished(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        for member in self.members:
            member.step_finished(stage, step, metrics)

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None:
        for member in self.members:
            member.stage_finished(stage, summary)


class NoCallbacks:
    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None:
        log.info("stage %d (%s): steps %d..%d", stage, title, start_step, total_steps)

    def step_finished(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        pass  # the loop logs every logged step itself

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None:
        log.info("stage %d done: %s", stage, summary)


@dataclass
class LoopSpec:
    stage: int
    total_steps: int
    start_step: int
    global_batch: int
    lr_at: Callable[[int], float]
    clip_grad: float
    log_every: int
    checkpoint_every: int
    seed: int
    autocast: str = "auto"




def autocast_for(device: torch.device, mode: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast ("auto": on CUDA, where it needs no loss scaling; "bf16": on any device, which
    also roughly halves a CPU step on processors with bf16 instructions); "off" or CPU "auto": fp32."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def slow_autocast_warning(device: torch.device, mode: str) -> str | None:
    """A warning for bf16 autocast on a CPU without bf16 instructions, where every bf16 op is
    emulated: a GKD distillation step then runs about 14x slower than in fp32 (measured on an AVX2
    CPU, tiny ViT student and EfficientNet-Lite0 teacher at 128 px, batch 32: 8.1 s against 0.58 s)."""
    if mode != "bf16" or device.type != "cpu" or cpu_has_bf16() is not False:
        return None
    return ("autocast bf16 on a CPU without bf16 instructions (no AVX512-BF16 or AMX) emulates every bf16 op and "
            "runs many times slower than fp32; set autocast: auto (fp32 on CPU) unless you need bf16 numerics")


@functools.lru_cache(maxsize=None)
def _warn_once(text: str) -> None:
    log.warning(text)


def parameter_text(module: torch.nn.Module) -> str:
    """A module's parameter count in millions, as stage descriptions print it ("5.52M")."""
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"


def place_text(context: Context) -> str:
    """Where a stage runs, as stage descriptions print it ("on cpu", "on cuda:0 x 2 processes")."""
    return f"on {context.device}" + (f" x {context.world_size} processes" if context.world_size > 1 else "")


def run_loop(
    spec: LoopSpec,
    *,
    batches: Iterable[dict[str, Any]],
    compute_losses: Callable[[dict[str, Any], int], dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    after_step: Callable[[int], None],
    save_state: Callable[[int], None],
    context: Context,
    callbacks: Callbacks,
) -> dict[str, float]:
    """Run steps `start_step .. total_steps - 1`; return the last averaged metrics.

    Ctrl-C (KeyboardInterrupt) in a single process saves the state of the last finished step
    before it propagates, so an interrupted run loses nothing; an interrupt in the middle of a
    weight update falls back to the last periodic checkpoint.
    """
    progress = {"done": spec.start_step, "updating": False}
    warning = slow_autocast_warning(context.device, spec.autocast)
    if warning is not None and context.is_main:
        _warn_once(warning)
    try:
        return _steps(spec, batches, compute_losses, optimizer, parameters, after_step, save_state, context,
                      callbacks, progress)
    except KeyboardInterrupt:
        if not context.distributed and not progress["updating"] and progress["done"] > spec.start_step:
            log.warning("stage %d interrupted: saving the state of step %d", spec.stage, progress["done"])
            save_state(progress["done"])
        raise


def _steps(spec, batches, compute_losses, optimizer, parameters, after_step, save_state, context, callbacks,
           progress) -> dict[str, float]:
    last_metrics: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    for step, batch in zip(range(spec.start_step, spec.total_steps), batches):
        # Dropout and other torch randomness are a function of the step: resumes and several
        # processes replay exactly what one uninterrupted process does.
        torch.manual_seed(item_seed(spec.seed, spec.stage, step * context.world_size + context.rank))
        lr = spec.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with autocast_for(context.device, spec.autocast):
            losses = compute_losses(batch, step)
        if not context.all_finite(losses["loss"]):
            raise TrainingError(
                f"stage {spec.stage}: the loss became {float(losses['loss'].detach())} at step {step}; stopped. The last "
                f"good checkpoint is kept: lower the learning rate or check the data, then resume"
            )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        logging_step = (step + 1) % spec.log_every == 0 or step + 1 == spec.total_steps
        grad_norm = None
        if spec.clip_grad > 0 or logging_step:
            # Without clipping the norm is still measured on logged steps (the scale factor is 1).
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, spec.clip_grad if spec.clip_grad > 0 else math.inf)
        progress["updating"] = True
        optimizer.step()
        after_step(step)
        done = step + 1
        progress.update(done=done, updating=False)
        window_steps += 1
        if done % spec.log_every == 0 or done == spec.total_steps:
            elapsed = time.perf_counter() - window_start
            values = {name: float(value.detach()) for name, value in losses.items()}
            if grad_norm is not None:
                values["grad_norm"] = float(grad_norm)
            last_metrics = context.mean(values)
            last_metrics["lr"] = lr
            last_metrics["images_per_s"] = spec.global_batch * window_steps / max(elapsed, 1e-9)
            if context.is_main:
                # Into the log (and so the run's train.log) whatever the display does with it.
                log.info("stage %d step %d: %s", spec.stage, done, " ".join(f"{k}={v:.4g}" for k, v in last_metrics.items()))
                callbacks.step_finished(spec.stage, done, last_metrics)
            window_start, window_steps = time.perf_counter(), 0
        if done % spec.checkpoint_every == 0 or done == spec.total_steps:
            save_state(done)
    return last_metrics
