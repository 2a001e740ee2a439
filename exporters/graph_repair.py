"""Graph repairs for what the exporter and onnxruntime's fp16 converter leave behind.

PyTorch's exporter stores parameters of equal value once and reads the copies through Identity
nodes (common in freshly initialised layers: zero biases, unit norm weights); quantizers then
see such a weight or bias as an activation. onnxruntime's fp16 converter appends the Cast nodes
it creates at the end of the node list, so a graph it returns is no longer in topological order
(the ONNX checker and TensorRT's parser both require it; onnxruntime sorts for itself, which
hides the problem): onnx-graphsurgeon sorts it. And before onnxruntime 1.32 (so in every
onnxruntime-gpu release up to 1.31.1), where two fp32-kept nodes read one fp16 tensor, the
converter adds the same Cast twice, with the same name and output; graphsurgeon keeps both
copies (onnxslim would merge them, but only as part of rewriting the graph), so removing them
stays ours.
"""

from __future__ import annotations

import collections

import onnx
import onnx_graphsurgeon as gs

from gkd_deploy.errors import ExportError


def inline_initializer_identities(graph: onnx.GraphProto) -> None:
    """Let consumers read an initializer directly instead of through an Identity node."""
    initializers = {tensor.name for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    alias = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs}
    if not alias:
        return
    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in alias:
                node.input[position] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)


def sort_topologically(model: onnx.ModelProto) -> None:
    """Reorder `model.graph.node` so every node comes after the producers of its inputs
    (onnx-graphsurgeon's toposort). Only the node list is taken from graphsurgeon: the model
    around it (metadata, initializers, value infos), which its export rebuilds in part, stays."""
    graph = gs.import_onnx(model)
    try:
        graph.toposort()
    except gs.OnnxGraphSurgeonException as error:
        raise ExportError(f"cannot sort the converted graph ({error}); this is a bug, please report it") from None
    nodes = gs.export_onnx(graph).graph.node
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def drop_duplicate_nodes(graph: onnx.GraphProto) -> None:
    """Remove exact copies of a node (same name, type, inputs, outputs and attributes).

    ONNX forbids writing one tensor twice; keeping the first copy is exact, since the copies
    compute the same thing.
    """
    names = collections.Counter(node.name for node in graph.node)
    seen: set[bytes] = set()
    kept = []
    for node in graph.node:
        if names[node.name] > 1:
            key = node.SerializeToString(deterministic=True)
            if key in seen:
                continue
            seen.add(key)
        kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
