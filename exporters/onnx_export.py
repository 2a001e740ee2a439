"""PyTorch segmenter -> fp32 ONNX file with a fixed input size, a free batch axis and gkd metadata.

Uses the TorchScript exporter (`dynamo=False`): the torch.export-based one needs `onnxscript`,
which is not a dependency. That exporter cannot trace timm's resampling of the position embedding
for a dynamic image size, so every file has one input size (see `wrapper.py`); the batch axis
stays free.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Sequence

import onnx
import torch

from gkd_deploy.errors import ExportError
from gkd_deploy.exporters.graph_repair import inline_initializer_identities
from gkd_deploy.runtime.metadata import INPUT_NAME, ExportMetadata, embed_metadata
from gkd_deploy.runtime.onnx_io import save_model
from gkd_deploy.exporters.wrapper import prepare_for_export
from gkd_deploy.fileio import file_sha256
from gkd_deploy.models.instance_segmenter import InstanceSegmenter
from gkd_deploy.models.segmenter import Segmenter

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # the first with LayerNormalization as one op instead of a ReduceMean/Pow/Sqrt chain
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear, which TensorRT's int8 path needs
MAX_OPSET = 20  # the highest the TorchScript exporter writes
# Traced with two images so that no reshape can silently bake in a batch of one.
TRACE_BATCH = 2


def export_onnx(
    segmenter: Segmenter | InstanceSegmenter,
    path: str | Path,
    *,
    input_size: int | Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    source_checkpoint: str | Path | None = None,
    sampling: str = "gather",
) -> Path:
    """Export `segmenter` to an fp32 ONNX file at `path`, written atomically; returns `path`.

    The file takes `images` (B, 3, H, W) float32 RGB in 0..255 (normalisation is inside the
    graph) with (H, W) = `input_size` (default: the config's `img_size`, square; one int means a
    square) and returns `scores` (B, K, H, W) float32 and `labels` (B, H, W) uint8 (an
    `InstanceSegmenter`: `masks` (B, K, H, W) uint8, `classes` (B, K) int64, `scores` (B, K)
    float32, K its config's top_k). B is free.
    `source_checkpoint`, the file the weights came from, is recorded with its sha256. `sampling`:
    deformable attention's sampling in the graph (`wrapper.prepare_for_export`).
    """
    height, width = resolve_input_size(segmenter, input_size)
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset!r} is not supported; use {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    source_sha256 = None
    if source_checkpoint is not None:
        if not Path(source_checkpoint).is_file():
            raise ExportError(f"source checkpoint {source_checkpoint} not found")
        source_sha256 = file_sha256(source_checkpoint)
    model = _trace(prepare_for_export(segmenter, (height, width), sampling), (height, width), opset, segmenter)
    embed_metadata(model, ExportMetadata.of_segmenter(segmenter, (height, width), source_checkpoint, source_sha256))
    save_model(model, path)
    log.info("exported %s at %dx%d (opset %d) to %s", segmenter.config.architecture, height, width, opset, path)
    return Path(path)


def resolve_input_size(segmenter: Segmenter | InstanceSegmenter, input_size: int | Sequence[int] | None) -> tuple[int, int]:
    """(height, width) to export at, checked against the patch size."""
    patch = segmenter.encoder.patch_size
    if input_size is None:
        input_size = segmenter.config.img_size
    values = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    valid = len(values) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= patch and v % patch == 0
                                     for v in values)
    if not valid:
        raise ExportError(f"input size {input_size!r} must be (height, width), whole multiples of the patch size "
                          f"{patch}, e.g. ({segmenter.config.img_size}, {segmenter.config.img_size})")
    return values[0], values[1]


def _trace(wrapper: torch.nn.Module, input_size: tuple[int, int], opset: int,
           segmenter: Segmenter | InstanceSegmenter) -> onnx.ModelProto:
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(TRACE_BATCH, 3, *input_size, generator=generator) * 255.0
    batch_axis = {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tracer warnings flag Python branches on tensor shapes (timm's size checks); with a fixed
        # input size those branches are meant to be frozen. The deprecation warnings are about the
        # exporter we choose on purpose (see the module docstring) and its internals.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        try:
            with torch.no_grad():
                torch.onnx.export(
                    wrapper, (example,), buffer, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=list(wrapper.traced_names),
                    dynamic_axes={INPUT_NAME: batch_axis, **{name: batch_axis for name in wrapper.traced_names}},
                    do_constant_folding=True,
                )
        except RuntimeError as error:
            raise ExportError(f"PyTorch cannot export {segmenter.config.architecture} to ONNX opset {opset}: "
                              f"{error}") from error
    model = onnx.load_model_from_string(buffer.getvalue())
    # Tensors traced as outputs only to be named (an instance model's raw logits) stay inside.
    kept = [output for output in model.graph.output if output.name in wrapper.output_names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    inline_initializer_identities(model.graph)
    return model
