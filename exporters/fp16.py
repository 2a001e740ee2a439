"""fp32 export -> fp16 graph with fp32 inputs/outputs and fp32 where fp16 numerics break; and the
same for the part of an int8 Q/DQ file that is not int8 (its remainder).

Uses onnxruntime's converter (`onnxruntime.transformers.float16`), which casts weights and
activations to fp16 and puts Cast nodes around the operators it is told to keep in fp32; then
`graph_repair` puts its output back in order (see there).
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnx import version_converter
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from gkd_deploy.errors import ExportError
from gkd_deploy.exporters.graph_repair import drop_duplicate_nodes, sort_topologically
from gkd_deploy.runtime.metadata import embed_metadata, metadata_of
from gkd_deploy.runtime.onnx_io import load_model, save_model

log = logging.getLogger(__name__)

# Operators kept in fp32. Normalisations sum squares over hundreds of channels, which overflows or
# loses the variance in fp16: LayerNormalization (opset >= 17), its decomposed form below opset
# 17 (ReduceMean -> Pow -> ReduceMean -> Sqrt), and GroupNorm, which exports as
# InstanceNormalization (GroupNormalization from opset 18). Softmax exponentiates attention
# logits. The converter's own list holds operators without fp16 kernels.
FP32_OPS = (
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt",
)


def convert_fp16(fp32_onnx: str | Path, out_path: str | Path) -> Path:
    """Write an fp16 copy of the fp32 export `fp32_onnx` to `out_path`; returns `out_path`.

    Inputs and outputs stay float32 (`images` in, `scores` out; `labels` uint8), so callers feed
    and read the same arrays as for the fp32 file.
    """
    model = load_model(fp32_onnx)
    metadata = metadata_of(model, str(fp32_onnx))
    if metadata.precision != "fp32":
        raise ExportError(f"{fp32_onnx} is a {metadata.precision} model; convert the fp32 export to fp16")
    converted = _to_fp16(model)
    embed_metadata(converted, metadata.with_precision("fp16"))
    save_model(converted, out_path)
    log.info("wrote fp16 model %s (kept in fp32: %s)", out_path, ", ".join(FP32_OPS))
    return Path(out_path)


# fp16 scales in QuantizeLinear / DequantizeLinear need opset 19: below it, they take fp32 only.
FP16_QDQ_OPSET = 19


def convert_int8_remainder(int8_onnx: str | Path, out_path: str | Path) -> Path:
    """Write a copy of the int8 Q/DQ file `int8_onnx` whose non-int8 part runs in fp16 (except
    `FP32_OPS`, as in the fp16 export) to `out_path`; returns `out_path`.

    The Q/DQ scales become fp16 too, so a DequantizeLinear hands fp16 straight to its matrix product
    (the form NVIDIA's ModelOpt writes; TensorRT fuses it without a Cast in between). That takes
    opset 19: an older file is converted up. Inputs and outputs stay float32.
    """
    model = load_model(int8_onnx)
    metadata = metadata_of(model, str(int8_onnx))
    calibration = dict(metadata.extra.get("calibration") or {})
    if metadata.precision != "int8" or calibration.get("remainder") != "fp32":
        raise ExportError(f"{int8_onnx} is not an int8 file with an fp32 remainder; quantize the fp32 export first")
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < FP16_QDQ_OPSET:
        try:
            model = version_converter.convert_version(model, FP16_QDQ_OPSET)
        except (RuntimeError, ValueError, onnx.checker.ValidationError) as error:
            raise ExportError(f"cannot move {int8_onnx} from opset {opset} to {FP16_QDQ_OPSET} for fp16 Q/DQ scales "
                              f"({error}); export with --opset {FP16_QDQ_OPSET}, or use --remainder fp32") from None
    converted = _to_fp16(model)
    calibration["remainder"] = "fp16"
    embed_metadata(converted, metadata.with_precision("int8", calibration))
    save_model(converted, out_path)
    log.info("wrote int8 model %s with an fp16 remainder (kept in fp32: %s)", out_path, ", ".join(FP32_OPS))
    return Path(out_path)


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)),
    )
    drop_duplicate_nodes(converted.graph)  # first: graphsurgeon would keep both copies
    sort_topologically(converted)
    return converted

