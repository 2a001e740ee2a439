"""FLOPs per image of a segmenter at an input size, counted on the PyTorch model.

Counted once per (model, input size) with `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per
multiply-add of matmuls, convolutions and attention) on a CPU copy built from the model's config:
the count depends on the architecture and size only, so exported files, whose graphs hold the same
operations, get the same figure. grid_sample (Mask2Former's deformable attention) and element-wise
operations are not counted: a slight underestimate for those decoders. An instance segmenter is
counted up to its class and mask logits (`InstanceSegmenter.forward`); its post-processing (top-k,
mask resize, sigmoid) is element-wise and adds nothing to the count.

The share of the device's peak reached is the achieved rate, FLOPs per image x images/s, over the
peak the user names (e.g. 989 TFLOP/s for dense bf16 on an H100 SXM).
"""

from __future__ import annotations

import logging

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gkd_deploy.models.config import InstanceSegmenterConfig, SegmenterConfig

log = logging.getLogger(__name__)


def flops_per_image(config: SegmenterConfig | InstanceSegmenterConfig, input_size: tuple[int, int]) -> float | None:
    """FLOPs of one (1, 3, H, W) forward pass of the segmenter (semantic or instance) of `config`;
    None (and a warning) if counting fails, None without a word where torch is not installed (an
    edge install runs exported files only)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gkd_deploy.models.instance_segmenter import build_instance_segmenter
    from gkd_deploy.models.segmenter import build_segmenter

    builders = {"semantic": build_segmenter, "instance": build_instance_segmenter}
    try:
        model = builders[config.task](config, pretrained=False).eval()
        images = torch.rand(1, 3, *input_size) * 255
        # no_grad, not inference_mode: the counter's module hooks reject inference-mode tensors.
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    except Exception as error:  # an operator the counter cannot trace: report the rest without FLOPs
        log.warning("cannot count the FLOPs of %s + %s at %s: %s", config.encoder, config.decoder, input_size, error)
        return None
    return float(counter.get_total_flops())


def share_of_peak(flops_image: float | None, images_per_second: float, peak_tflops: float | None) -> float | None:
    """Percent of `peak_tflops` reached; None without a FLOP count or a peak."""
    if flops_image is None or not peak_tflops:
        return None
    return flops_image * images_per_second / (peak_tflops * 1e12) * 100
