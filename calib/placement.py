"""Where an int8 file gets its Q/DQ pairs: by TensorRT's fusion rules, or where onnxruntime's CPU
kernels are int8.

A Q/DQ pair is a promise about a tensor: "this one may travel as int8". A TensorRT engine built
strongly typed keeps that promise and nothing more, so the pairs must sit exactly where its
kernels can fuse them; anywhere else they only add work. onnxruntime's quantizer picks nodes by
op type and quantizes every input of a chosen node; these rules name single inputs (the branch of
a residual Add that comes out of a matrix product, not its skip input), hence our own.

`tensorrt` follows the placement of NVIDIA's ModelOpt ONNX PTQ (`modelopt/onnx/quantization/
int8.py::_find_nodes_to_quantize`, version 0.47), as it comes out on ViT segmenters:

- every matrix product (Conv, ConvTranspose, Gemm, MatMul) reads its activations and its weights
  through Q/DQ, the attention products Q*K^T and softmax*V included, unless a non-constant Add (a
  mask) sits between Q*K^T and Softmax (`partitioning.py::find_mha_partitions`) or the attention
  runs over more than 512 tokens (`quantize.py` -> `graph_utils.py::find_nodes_from_mha_to_exclude`:
  TensorRT's int8 attention kernels stop there; a ViT-S/16 at 512x512 has 1025 tokens);
  products TensorRT runs as matrix-vector or too small (a static M or N of 1, K or N under 16:
  `find_nodes_from_matmul_to_exclude`)
  and convolutions without int8 kernels for their channel counts (`find_nodes_from_convs_to_exclude`)
  stay in float;
- an Add that joins the output of a matrix product (through its bias, activation and layout ops)
  with another tensor reads that output through Q/DQ and the other input as it is: the product
  writes int8 from its epilogue (`filter_quantizable_kgen_heads`, `remove_partial_input_qdq`);
- a LayerNormalization fed by such an Add or directly by a matrix product reads int8
  (`find_conv_to_layernorm_nodes`); so does a Resize, unless it writes a model output
  (`find_quantizable_nodes`, `get_skipped_output_layers`);
- Softmax, GELU, the normalisations' other forms, Relu and the layout ops get no Q/DQ of their
  own; Softmax's output is quantized because the product after it reads it.

`onnxruntime` quantizes what onnxruntime's CPU execution provider fuses into int8 kernels:
MatMul and Gemm inputs (DequantizeLinear -> MatMul becomes MatMulIntegerToFloat, or QLinearMatMul),
and the inputs and output of Conv (a QuantizeLinear as the Conv's one reader, Shape included, is
what lets it become QLinearConv). Its activations are uint8 (`qdq_insert.py`).

`quantize_sensitive` adds, for either target, the inputs of the ops a ViT's accuracy is sensitive
to: LayerNormalization, Softmax, GELU (Erf, Gelu), InstanceNormalization and both inputs of every
Add of two computed tensors.

`float_after` names tensors whose readers, and everything computed from them, get no Q/DQ: an
instance file's raw class and mask logits, so that its post-processing (softmax, top-k, the mask
Resize, sigmoid, threshold, casts) stays float. Left to the rules, the tensorrt placement
quantizes the post-processing's mask Resize, and `quantize_sensitive` its Softmax.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from gkd_deploy.errors import ExportError

TARGETS = ("tensorrt", "onnxruntime")
LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Layout-only ops: TensorRT folds them into their neighbours, so they do not break a fusion.
COPY_OPS = frozenset({
    "Flatten", "Transpose", "Concat", "Split", "Squeeze", "Unsqueeze", "Expand", "Reshape", "Tile", "Gather",
    "Slice", "Identity",
})
# What a matrix product's epilogue can hold: a bias or scale (the other input constant) and an activation.
EPILOGUE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Clip", "BatchNormalization"})
# What ModelOpt lets sit between an attention's Q*K^T, its Softmax and softmax*V.
ATTENTION_PASS_THROUGH = frozenset({"Div", "Mul", "Add", "Reshape", "Transpose", "Flatten", "Cast"})
# TensorRT's int8 attention kernels take sequences up to this length (ModelOpt's rule).
MAX_INT8_ATTENTION_TOKENS = 512
SENSITIVE_OPS = ("LayerNormalization", "Softmax", "Erf", "Gelu", "InstanceNormalization")
# Convolutions with fewer channels than this have no int8 TensorRT kernels unless the counts are
# multiples of 8 (ModelOpt's rule).
MIN_CONV_CHANNELS = 16
# Matrix products with K or N under this run no faster in int8 on TensorRT (ModelOpt's rule).
MIN_GEMM_DIM = 16
FLOAT_TYPES = (onnx.TensorProto.FLOAT,)


@dataclass
class Placement:
    """Q/DQ sites of one graph.

    `activations`: tensor name -> the (node name, input index) pairs that read it through one shared
    Q/DQ pair. `weights`: (node name, input index) of a constant weight -> the axis of its
    per-channel scales. `op_types`: the op types that read a quantized tensor or weight, sorted.
    `float_nodes`: nodes that get no Q/DQ whatever the rules say.
    """

    target: str
    float_nodes: frozenset[str] = frozenset()
    activations: dict[str, set[tuple[str, int]]] = field(default_factory=lambda: collections.defaultdict(set))
    weights: dict[tuple[str, int], int] = field(default_factory=dict)
    op_types: list[str] = field(default_factory=list)

    def add_input(self, graph: GraphView, node: onnx.NodeProto, index: int) -> None:
        name = node.input[index]
        if not name or not graph.is_float(name) or node.name in self.float_nodes:
            return
        if name in graph.constants:
            axis = weight_axis(node, index, graph.constants[name])
            if axis is not None:
                self.weights[(node.name, index)] = axis
            return
        self.activations[name].add((node.name, index))

    def add_output(self, graph: GraphView, tensor: str) -> None:
        """Quantize `tensor` for every node that reads it (a Shape too: onnxruntime fuses a
        QuantizeLinear into the op before it only when it is that op's one reader)."""
        for consumer, index in graph.consumers[tensor]:
            self.add_input(graph, consumer, index)


class GraphView:
    """Producers, consumers, constants, types and static shapes of an ONNX graph, for the rules."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = {node.name: node for node in graph.node}
        if len(self.nodes) != len(graph.node) or "" in self.nodes:
            raise ValueError("every node needs a unique name; call name_nodes(model) first")
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value)
        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = collections.defaultdict(list)
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, index))
        self.outputs = {value.name for value in graph.output}
        # data_prop: the exporter computes reshape targets from Shape ops; propagating their values
        # gives the static token counts and channel widths (the batch stays symbolic).
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple] = {}
        for value in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            tensor_type = value.type.tensor_type
            self.types[value.name] = tensor_type.elem_type
            if tensor_type.HasField("shape"):
                self.shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                                for d in tensor_type.shape.dim)
        for name, array in self.constants.items():
            self.types[name] = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
            self.shapes[name] = array.shape

    def is_float(self, name: str) -> bool:
        return self.types.get(name, onnx.TensorProto.FLOAT) in FLOAT_TYPES

    def is_constant(self, name: str) -> bool:
        """An initializer, a Constant, or computed from constants alone by layout ops."""
        if not name or name in self.constants:
            return True
        producer = self.producer.get(name)
        return (producer is not None and producer.op_type in COPY_OPS | {"Cast"}
                and all(self.is_constant(source) for source in producer.input))

    def variable_inputs(self, node: onnx.NodeProto) -> list[int]:
        return [index for index, name in enumerate(node.input) if not self.is_constant(name)]


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed or twice-named node a unique name (the rules address nodes by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)


def place_qdq(model: onnx.ModelProto, target: str, *, quantize_sensitive: bool = False,
              float_after: tuple[str, ...] = ()) -> Placement:
    """The Q/DQ sites of the float model `model` for `target` (tensorrt or onnxruntime); nothing
    that reads the tensors `float_after`, directly or through other nodes, is quantized."""
    if target not in TARGETS:
        raise ExportError(f"unknown int8 target {target!r}; use one of {', '.join(TARGETS)}")
    graph = GraphView(model)
    placement = Placement(target, frozenset(downstream_nodes(graph, float_after)))
    (_tensorrt if target == "tensorrt" else _onnxruntime)(graph, placement)
    if quantize_sensitive:
        for node in graph.nodes.values():
            if node.op_type in SENSITIVE_OPS:
                placement.add_input(graph, node, 0)
            elif node.op_type == "Add" and len(graph.variable_inputs(node)) == 2:
                for index in (0, 1):
                    placement.add_input(graph, node, index)
    readers = {name for sites in placement.activations.values() for name, _ in sites}
    placement.op_types = sorted({graph.nodes[name].op_type for name in readers | {n for n, _ in placement.weights}})
    return placement


def downstream_nodes(graph: GraphView, tensors: tuple[str, ...]) -> set[str]:
    """The names of every node computed from `tensors` (ExportError naming one the graph lacks)."""
    missing = [name for name in tensors if name not in graph.consumers and name not in graph.outputs]
    if missing:
        raise ExportError(f"the graph has no tensor {', '.join(missing)}; export the fp32 file again with this "
                          "version of gkd")
    found: set[str] = set()
    pending = list(tensors)
    while pending:
        for consumer, _ in graph.consumers[pending.pop()]:
            if consumer.name not in found:
                found.add(consumer.name)
                pending.extend(consumer.output)
    return found


def _tensorrt(graph: GraphView, placement: Placement) -> None:
    excluded = _excluded_attention_products(graph)
    linear = {name for name, node in graph.nodes.items()
              if node.op_type in LINEAR_OPS and name not in excluded and _tensorrt_has_int8_kernel(graph, node)}
    for name in linear:
        for index in _product_inputs(graph.nodes[name]):
            placement.add_input(graph, graph.nodes[name], index)
    joins = set()
    for name, node in graph.nodes.items():
        if node.op_type != "Add" or name in excluded or len(graph.variable_inputs(node)) != 2:
            continue
        from_products = [index for index in (0, 1) if _comes_from(graph, node.input[index], linear)]
        if from_products:
            joins.add(name)
            for index in from_products:
                placement.add_input(graph, node, index)
    for node in graph.nodes.values():
        if node.op_type == "LayerNormalization" and _comes_from(graph, node.input[0], linear | joins):
            placement.add_input(graph, node, 0)
        elif node.op_type == "Resize" and not set(node.output) & graph.outputs:
            placement.add_input(graph, node, 0)


def _onnxruntime(graph: GraphView, placement: Placement) -> None:
    for node in graph.nodes.values():
        if node.op_type in ("MatMul", "Gemm", "Conv"):
            for index in _product_inputs(node):
                placement.add_input(graph, node, index)
        if node.op_type == "Conv" and not set(node.output) & graph.outputs:
            placement.add_output(graph, node.output[0])


def _product_inputs(node: onnx.NodeProto) -> list[int]:
    """The data and weight inputs of a matrix product; biases stay float (TensorRT fuses them)."""
    return list(range(min(2, len(node.input))))


def _comes_from(graph: GraphView, tensor: str, sources: set[str]) -> bool:
    """Whether `tensor` is written by a node in `sources`, through layout ops and epilogue ops whose
    other inputs are constant (bias, scale) — what a fused kernel of that source node can write."""
    producer = graph.producer.get(tensor)
    if producer is None:
        return False
    if producer.name in sources:
        return True
    variable = graph.variable_inputs(producer)
    if len(variable) != 1 or not (producer.op_type in COPY_OPS or producer.op_type in EPILOGUE_OPS):
        return False
    return _comes_from(graph, producer.input[variable[0]], sources)


def _excluded_attention_products(graph: GraphView) -> set[str]:
    """Q*K^T and softmax*V (and a mask Add between them) of every attention ModelOpt leaves in float:
    one whose logits get a non-constant Add (a mask) before Softmax (`find_mha_partitions` in
    partitioning.py), and one over more than `MAX_INT8_ATTENTION_TOKENS` tokens, more than
    TensorRT's int8 attention kernels take (`find_nodes_from_mha_to_exclude`)."""
    excluded: set[str] = set()
    for first in graph.nodes.values():
        if first.op_type != "MatMul":
            continue
        softmax, between = _follow(graph, first, "Softmax")
        second = _follow(graph, softmax, "MatMul")[0] if softmax is not None else None
        if second is None:
            continue
        masks = [n for n in between if n.op_type == "Add" and len(graph.variable_inputs(n)) == 2]
        tokens = (graph.shapes.get(first.input[1]) or (None,))[-1]
        if masks or (tokens is not None and tokens > MAX_INT8_ATTENTION_TOKENS):
            excluded |= {first.name, second.name, *(n.name for n in masks)}
    return excluded


def _follow(graph: GraphView, node: onnx.NodeProto, op_type: str,
            depth: int = 8) -> tuple[onnx.NodeProto | None, list[onnx.NodeProto]]:
    """The first node of `op_type` that reads `node`'s output through layout ops, scales and Adds
    (what sits between an attention's products and its Softmax), and the nodes passed on the way."""
    for consumer, _ in graph.consumers[node.output[0]]:
        if consumer.op_type == op_type:
            return consumer, []
        if depth and consumer.op_type in ATTENTION_PASS_THROUGH:
            found, between = _follow(graph, consumer, op_type, depth - 1)
            if found is not None:
                return found, [consumer, *between]
    return None, []


def _tensorrt_has_int8_kernel(graph: GraphView, node: onnx.NodeProto) -> bool:
    if node.op_type in ("MatMul", "Gemm"):
        # A matrix-vector product, or one with K or N under 16, cannot use the tensor cores well;
        # Q/DQ there only slows TensorRT down.
        rows = graph.shapes.get(node.input[0], ())
        columns = graph.shapes.get(node.input[1], ())
        transposed_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        transposed_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        m = rows[-1 if transposed_a else -2] if len(rows) >= 2 else None
        n = columns[-2 if transposed_b else -1] if len(columns) >= 2 else None
        k = columns[-1 if transposed_b else -2] if len(columns) >= 2 else None
        return m != 1 and n != 1 and not (n is not None and n < MIN_GEMM_DIM) and not (k is not None and k < MIN_GEMM_DIM)
    if node.op_type != "Conv":
        return True
    weight = graph.constants.get(node.input[1])
    if weight is None:
        return False
    outputs, inputs = weight.shape[0], weight.shape[1]
    if outputs >= MIN_CONV_CHANNELS and inputs >= MIN_CONV_CHANNELS:
        return True
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    kernel = weight.shape[2:]
    if group == 1:
        return ((outputs % 8 == 0 or inputs % 8 == 0) and max(outputs, inputs) >= MIN_CONV_CHANNELS
                and len(set(kernel)) == 1)
    return outputs % 8 == 0 and all(k >= 3 for k in kernel)


def weight_axis(node: onnx.NodeProto, index: int, weight: np.ndarray) -> int | None:
    """The output-channel axis of a constant weight input (per-channel scales along it); None for
    a constant that is not a weight (TensorRT takes per-tensor scales for activations only)."""
    if index != 1 or weight.ndim < 2:
        return None
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if next((a.i for a in node.attribute if a.name == "group"), 1) == 1 else None
    if node.op_type == "Gemm":
        return 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    if node.op_type == "MatMul":
        return weight.ndim - 1
    return None
