"""TensorRT's rules for explicitly quantized (Q/DQ) ONNX graphs, checked on a quantized model.

TensorRT parses int8 only as: symmetric int8 (zero point present, int8, exactly 0), one scalar
scale per activation tensor, per-channel weight scales along the output-channel axis, opset >= 13.
A file that breaks them fails at engine build time on the target; checking here fails the export
on the machine that made it, with the tensor named.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
MIN_OPSET = 13


def qdq_violations(model: onnx.ModelProto) -> list[str]:
    """One line per Q/DQ node of `model` that TensorRT would reject; empty when it has none."""
    constants = _constants(model.graph)
    problems = []
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}: per-channel Q/DQ needs opset {MIN_OPSET}")
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        scale = constants.get(node.input[1])
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        where = f"{node.op_type} {node.name or node.output[0]}"
        if zero_point is None:
            problems.append(f"{where}: no zero point (TensorRT needs an explicit int8 zero point of 0)")
        elif zero_point.dtype != np.int8 or np.any(zero_point != 0):
            problems.append(f"{where}: zero point {zero_point.dtype} {zero_point.ravel()[:4].tolist()}, not int8 0")
        if scale is None:
            problems.append(f"{where}: scale {node.input[1]} is not a constant")
            continue
        weight = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if weight is None and scale.size != 1:
            problems.append(f"{where}: activation scale has shape {scale.shape}, TensorRT needs one scalar")
        elif weight is not None and scale.size != 1:
            axis = _axis(node) % weight.ndim
            if scale.ndim != 1 or scale.size != weight.shape[axis]:
                problems.append(f"{where}: per-channel scale of shape {scale.shape} does not match weight "
                                f"{weight.shape} along axis {axis}")
    return problems


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _axis(node: onnx.NodeProto) -> int:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return attribute.i
    return 1  # the ONNX default
