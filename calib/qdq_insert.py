"""Write the Q/DQ pairs of a `Placement` into a float graph, with calibrated scales.

Activations: one QuantizeLinear -> DequantizeLinear pair per tensor, shared by the nodes the
placement names (other readers keep the float tensor), a scalar scale max(|lowest|, |highest|) / 127
and an int8 zero point of 0. Weights: stored as int8 with one scale per output channel and their own
DequantizeLinear. Those are TensorRT's rules (`qdq_rules.py`). For onnxruntime's x86 kernels the
activations can be uint8 instead, on the same grid moved by 128 (onnxruntime otherwise rewrites
int8 activations to uint8 itself, and then cannot fuse a Conv whose output Q it did not rewrite),
and the weights on 7 bits (-63..63): x86 processors without VNNI multiply u8 x s8 pairs with
`vpmaddubsw`, whose int16 sums of two products saturate on full-range weights (onnxruntime's
quantization docs: `reduce_range` on such CPUs). Measured on an AVX2 machine without VNNI: label
agreement with PyTorch 88.7 % with 8-bit weights, above the 90 % bound with 7-bit ones; 7 bits
everywhere keeps a file the same whichever machine made it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gkd_deploy.calib.placement import Placement

INT8_MAX = 127
U8S8_WEIGHT_MAX = 63  # 7-bit weights beside uint8 activations (no vpmaddubsw saturation)
# A tensor that was all zeros in calibration still needs a positive scale, one that fp16 holds too
# (the fp16 remainder stores the scales in fp16; its smallest value is 6e-8).
MIN_SCALE = 1e-7


def insert_qdq(model: onnx.ModelProto, placement: Placement, ranges: Mapping[str, tuple[float, float]],
               *, unsigned_activations: bool = False) -> int:
    """Rewrite `model` in place; `ranges`: tensor name -> (lowest, highest) seen in calibration.

    `unsigned_activations`: activations as uint8 with zero point 128 (the same symmetric grid moved
    by 128), the form onnxruntime's x86 int8 kernels take (U8S8), with 7-bit weights; TensorRT
    takes int8 only, with 8-bit weights.

    Returns the number of Q/DQ pairs written for activations. Raises KeyError naming a placed
    tensor that has no calibrated range.
    """
    graph = model.graph
    nodes = {node.name: node for node in graph.node}
    new_nodes: list[onnx.NodeProto] = []
    for tensor, readers in sorted(placement.activations.items()):
        if tensor not in ranges:
            raise KeyError(tensor)
        lowest, highest = ranges[tensor]
        scale = float(np.max(np.abs([lowest, highest]))) / INT8_MAX
        dequantized = _activation_pair(graph, new_nodes, tensor, max(scale, MIN_SCALE), unsigned_activations)
        for name, index in readers:
            nodes[name].input[index] = dequantized
    written: dict[tuple[str, int], str] = {}
    for (name, index), axis in sorted(placement.weights.items()):
        weight_name = nodes[name].input[index]
        key = (weight_name, axis)
        if key not in written:
            written[key] = _weight_dequantize(graph, new_nodes, weight_name, axis,
                                              U8S8_WEIGHT_MAX if unsigned_activations else INT8_MAX)
        nodes[name].input[index] = written[key]
    _insert_before_readers(graph, new_nodes)
    _drop_unused_initializers(graph)
    return len(placement.activations)


def _activation_pair(graph: onnx.GraphProto, new_nodes: list, tensor: str, scale: float, unsigned: bool) -> str:
    scale_name, zero_name = f"{tensor}_scale", f"{tensor}_zero_point"
    zero_point = np.array(128, np.uint8) if unsigned else np.array(0, np.int8)
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), scale_name),
                              numpy_helper.from_array(zero_point, zero_name)])
    quantized, dequantized = f"{tensor}_quantized", f"{tensor}_dequantized"
    new_nodes.append(helper.make_node("QuantizeLinear", [tensor, scale_name, zero_name], [quantized],
                                      name=f"{tensor}_QuantizeLinear"))
    new_nodes.append(helper.make_node("DequantizeLinear", [quantized, scale_name, zero_name], [dequantized],
                                      name=f"{tensor}_DequantizeLinear"))
    return dequantized


def _weight_dequantize(graph: onnx.GraphProto, new_nodes: list, weight_name: str, axis: int, limit: int) -> str:
    weight = numpy_helper.to_array(next(t for t in graph.initializer if t.name == weight_name)).astype(np.float32)
    reduce_axes = tuple(a for a in range(weight.ndim) if a != axis)
    scale = np.maximum(np.abs(weight).max(axis=reduce_axes) / limit, MIN_SCALE).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.rint(weight / scale.reshape(shape)), -limit, limit).astype(np.int8)
    stem = f"{weight_name}_axis{axis}"
    graph.initializer.extend([
        numpy_helper.from_array(quantized, f"{stem}_quantized"),
        numpy_helper.from_array(scale, f"{stem}_scale"),
        numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{stem}_zero_point"),
    ])
    dequantized = f"{stem}_dequantized"
    new_nodes.append(helper.make_node("DequantizeLinear", [f"{stem}_quantized", f"{stem}_scale", f"{stem}_zero_point"],
                                      [dequantized], name=f"{stem}_DequantizeLinear", axis=axis))
    return dequantized


def _insert_before_readers(graph: onnx.GraphProto, new_nodes: list[onnx.NodeProto]) -> None:
    """Put each new node right after the producer of its input (topological order kept)."""
    after: dict[str, list[onnx.NodeProto]] = {}
    for node in new_nodes:
        after.setdefault(node.input[0], []).append(node)
    ordered: list[onnx.NodeProto] = []

    def emit(names) -> None:
        for name in names:
            for node in after.pop(name, []):
                ordered.append(node)
                emit(node.output)

    emit([t.name for t in graph.initializer] + [v.name for v in graph.input])
    for node in list(graph.node):
        ordered.append(node)
        emit(node.output)
    if after:
        raise ValueError(f"no producer for {sorted(after)[:3]}")
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """The float weights that now go through int8 copies (the file would carry both otherwise)."""
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
