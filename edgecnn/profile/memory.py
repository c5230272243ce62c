"""Activation memory from tensor lifetimes: a liveness plan over the graph's execution order.

Each activation tensor lives from the step that produces it (graph inputs: from the start) to the last
step that reads it (graph outputs: to the end). View ops (Reshape, Flatten, Squeeze, ...) and Q/DQ pairs
share their input's buffer, as runtimes do. The peak is the largest sum of live buffers at any step, the
memory a perfect allocator needs; the naive sum gives every tensor its own buffer for the whole run. Real
allocators add fragmentation and alignment on top of the peak, so it is a lower bound, and the naive sum
an upper one.

ONNX requires a graph's nodes in topological order, which is the order ONNX Runtime's sequential executor
runs them; the plan uses that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecnn.profile.cost import QUANTIZE_OPS, VIEW_OPS, GraphCost

__all__ = ["MemoryPlan", "plan_memory"]

_ALIAS_OPS = VIEW_OPS | (QUANTIZE_OPS - {"DynamicQuantizeLinear"})


@dataclass
class MemoryPlan:
    """Peak and naive activation memory of one graph at one batch size.

    ``peak_step`` and ``peak_node`` say where the peak is reached; ``live_at_peak`` names the tensors (one
    per buffer) alive there.
    """

    peak_bytes: int
    naive_bytes: int
    peak_step: int
    peak_node: str
    live_at_peak: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_activation_bytes": self.peak_bytes,
            "naive_activation_bytes": self.naive_bytes,
            "peak_node": self.peak_node,
            "peak_step": self.peak_step,
            "live_at_peak": self.live_at_peak,
        }


def _find(parent: dict[str, str], name: str) -> str:
    while parent[name] != name:
        parent[name] = parent[parent[name]]
        name = parent[name]
    return name


def plan_memory(cost: GraphCost) -> MemoryPlan:
    """The liveness plan of ``cost``'s activation tensors (weights are not activations: see GraphCost.weight_bytes)."""
    sizes = cost.activation_bytes
    parent = {name: name for name in sizes}
    for node in cost.nodes:
        if node.op_type in _ALIAS_OPS and node.inputs and node.outputs and node.inputs[0] in parent:
            for output in node.outputs:
                if output in parent:
                    parent[_find(parent, output)] = _find(parent, node.inputs[0])
    buffer_bytes: dict[str, int] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    end = len(cost.nodes)
    for name in cost.graph_inputs:
        root = _find(parent, name)
        first[root] = -1
        last[root] = max(last.get(root, -1), -1)
    for step, node in enumerate(cost.nodes):
        for name in node.inputs:
            if name in parent:
                root = _find(parent, name)
                last[root] = max(last.get(root, step), step)
        for name in node.outputs:
            if name in parent:
                root = _find(parent, name)
                first.setdefault(root, step)
                last[root] = max(last.get(root, step), step)
    for name in cost.graph_outputs:
        if name in parent:
            last[_find(parent, name)] = end
    for name, size in sizes.items():
        root = _find(parent, name)
        buffer_bytes[root] = max(buffer_bytes.get(root, 0), size)
    planned = [root for root in buffer_bytes if root in first]
    change = [0] * (end + 3)
    for root in planned:
        change[first[root] + 1] += buffer_bytes[root]
        change[last[root] + 2] -= buffer_bytes[root]
    peak_bytes, peak_step, running = 0, -1, 0
    for index in range(end + 1):
        running += change[index]
        if running > peak_bytes:
            peak_bytes, peak_step = running, index - 1
    live_at_peak = [root for root in planned if first[root] <= peak_step <= last[root]]
    peak_node = cost.nodes[peak_step].name if 0 <= peak_step < len(cost.nodes) else "(graph inputs)"
    return MemoryPlan(
        peak_bytes=peak_bytes,
        naive_bytes=sum(sizes.values()),
        peak_step=peak_step,
        peak_node=peak_node,
        live_at_peak=sorted(live_at_peak),
    )
