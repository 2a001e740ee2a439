"""Graph repairs for what the exporter and onnxruntime's fp16 converter leave behind.

PyTorch's exporter stores parameters of equal value once and reads the copies through Identity
nodes (common in freshly initialised layers: zero biases, unit norm weights); quantizers then
see such a weight or bias as an activation. onnxruntime's fp16 converter appends the Cast nodes
it creates at the end of the node list, so a graph it returns is no longer in topological order
(the ONNX checker and TensorRT's parser both require it; onnxruntime sorts for itself, which
hides the problem). And where two fp32-kept nodes read one fp16 tensor, it adds the same Cast
twice, with the same name and output.
"""

from __future__ import annotations

import collections
import heapq

import onnx

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


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` so every node comes after the producers of its inputs.

    Stable: among nodes that are ready, the one earlier in the current list goes first, so a
    sorted graph keeps its order.
    """
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    waiting_on = [0] * len(nodes)
    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node.input if name in producer}:
            waiting_on[index] += 1
            consumers[source].append(index)
    ready = [index for index, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers[index]:
            waiting_on[consumer] -= 1
            if waiting_on[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) != len(nodes):
        stuck = next(nodes[i].name for i, count in enumerate(waiting_on) if count)
        raise ExportError(f"the converted graph has a cycle (at node {stuck!r}); this is a bug, please report it")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


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
