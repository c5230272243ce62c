"""The profiler: models x devices x precisions x batch sizes -> one report.

For every model (a zoo name, an ONNX file or an ``edgecnn export`` directory), precision and batch size:
the static cost (:mod:`edgecnn.profile.cost`), the liveness plan (:mod:`edgecnn.profile.memory`), and for every device
the memory that a deployment needs (weights + peak activations + the device's runtime overhead), whether
the model fits the budget and by how much, and the estimated latency (:mod:`edgecnn.profile.estimate`). With
``measure`` the host's ONNX Runtime latency is added (:mod:`edgecnn.profile.measure`). Given a memory budget or a
latency limit, the report names the most accurate networks (reference ImageNet top-1) that satisfy it.

Memory sizes follow the device catalog: 1 MB = 2**20 bytes.

The graphs come in as :class:`~edgecnn.profile.sources.ProfileTarget`: this module reads ONNX graphs and the
device catalog only. Host measurement at a precision the graph does not have needs a converter
(``ProfileOptions.convert``), which the caller supplies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgecnn.devices import Device, JetpackRelease, fast_int8_note, resolve_devices, resolve_jetpack
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.onnx_facts import fill_weights, input_dims
from edgecnn.options import MB
from edgecnn.precisions import DEFAULT_PRECISIONS, PRECISIONS, precision_order
from edgecnn.profile.cost import CONVENTION, GraphCost, analyze_precisions
from edgecnn.profile.estimate import ESTIMATED_LABEL, assumptions, estimate_latency
from edgecnn.profile.measure import (
    MEASURED_LABEL,
    LatencyMeasurement,
    measure_latency,
    node_time_rows,
    profile_nodes,
)
from edgecnn.profile.memory import plan_memory
from edgecnn.profile.sources import GraphSource, ProfileTarget
from edgecnn.profile.trtexec import TrtexecImport, import_trtexec

__all__ = [
    "ProfileOptions",
    "DeviceFit",
    "ProfileRow",
    "Recommendation",
    "ProfileReport",
    "check_targets",
    "runnable_graph",
    "profile",
]

Converter = Callable[[onnx.ModelProto, str], onnx.ModelProto]
"""Turns a runnable FP32 graph into one at the given precision (fp16, int8) for host measurement."""


@dataclass
class ProfileOptions:
    """Options of ``edgecnn profile``; the CLI fills one and calls :func:`profile`.

    ``precisions`` None profiles zoo models at fp32, fp16 and int8 and files at their own precision;
    given, files are costed at those precisions too (derived from the file's graph). ``memory_budget``
    None means each device's default budget (its RAM less its runtime overhead). ``convert`` makes the
    graphs that ``measure`` runs at a precision the source does not have; without it those are not measured.
    """

    devices: str = "host"
    precisions: Sequence[str] | None = None
    batches: Sequence[int] = (1,)
    memory_budget: int | None = None
    max_latency_ms: float | None = None
    measure: bool = False
    layers: bool = False
    input_shapes: dict[str, list[int]] | None = None
    recommend: int = 3
    trtexec_dir: Path | None = None
    convert: Converter | None = None
    jetpack: str | None = None


@dataclass
class DeviceFit:
    """One model at one precision and batch on one device. Estimated figures are labelled in the report."""

    device: str
    budget_bytes: int
    model_bytes: int
    total_bytes: int
    fits: bool
    headroom_bytes: int
    estimated_ms: float
    estimated_throughput_per_s: float
    meets_latency: bool | None


@dataclass
class ProfileRow:
    """One model at one precision and batch size: static costs, memory, and per-device fit and latency.

    ``basis`` says where the precision comes from: ``graph`` (the graph is at that precision) or
    ``derived from fp32`` (byte sizes applied to the graph, see :mod:`edgecnn.profile.cost`).
    """

    model: str
    origin: str
    precision: str
    basis: str
    batch: int
    params: int
    macs: int
    flops: int
    weight_bytes: int
    peak_activation_bytes: int
    naive_activation_bytes: int
    peak_node: str
    uncounted: dict[str, int]
    tags: list[str]
    ref_top1: float | None
    devices: list[DeviceFit]
    measured: LatencyMeasurement | None = None
    measure_note: str | None = None
    layers: list[dict[str, Any]] | None = None

    def fit(self, device: str) -> DeviceFit:
        return next(fit for fit in self.devices if fit.device == device)


@dataclass
class Recommendation:
    """The most accurate networks that satisfy the constraints on one device at one batch size."""

    device: str
    batch: int
    constraint: str
    picks: list[dict[str, Any]]
    without_reference: list[str] = field(default_factory=list)


@dataclass
class ProfileReport:
    devices: list[str]
    budget: str
    max_latency_ms: float | None
    rows: list[ProfileRow]
    recommendations: list[Recommendation]
    assumptions: dict[str, Any]
    seconds: float
    trtexec: TrtexecImport | None = None
    jetpack: dict[str, str] = field(default_factory=dict)
    convention: str = CONVENTION
    estimated_label: str = ESTIMATED_LABEL
    measured_label: str = MEASURED_LABEL


def _device_fit(
    cost: GraphCost, peak: int, device: Device, options: ProfileOptions, latency_cost: GraphCost | None = None
) -> DeviceFit:
    """Fit and estimated latency; ``latency_cost`` times another precision's graph (INT8 on GPUs without fast
    INT8 runs no faster than FP16, :func:`edgecnn.devices.fast_int8_note`)."""
    estimate = estimate_latency(latency_cost or cost, device)
    budget = options.memory_budget if options.memory_budget is not None else device.budget_bytes
    model_bytes = cost.weight_bytes + peak
    return DeviceFit(
        device=device.id,
        budget_bytes=budget,
        model_bytes=model_bytes,
        total_bytes=model_bytes + int(device.overhead_mb * MB),
        fits=model_bytes <= budget,
        headroom_bytes=budget - model_bytes,
        estimated_ms=estimate.total_ms,
        estimated_throughput_per_s=estimate.throughput_per_s,
        meets_latency=None if options.max_latency_ms is None else estimate.total_ms <= options.max_latency_ms,
    )


def runnable_graph(source: GraphSource, precision: str, convert: Converter | None = None) -> onnx.ModelProto | None:
    """A graph ONNX Runtime can run at ``precision``: the source itself, or its FP32 graph converted by
    ``convert``. None when no such conversion applies."""
    if source.precision == precision:
        return fill_weights(source.model) if source.path is None else source.model
    if source.precision != "fp32" or convert is None:
        return None
    return convert(fill_weights(source.model), precision)


def _measure(
    source: GraphSource, precision: str, cost: GraphCost, options: ProfileOptions, cache: dict
) -> tuple[LatencyMeasurement | None, str | None, dict | None]:
    key = (id(source), precision)
    if key not in cache:
        try:
            cache[key] = (runnable_graph(source, precision, options.convert), None)
        except EdgecnnError as error:
            cache[key] = (None, str(error))
        except Exception as error:  # the converters raise their own types
            cache[key] = (None, f"{type(error).__name__}: {first_line(error)}")
    model, reason = cache[key]
    if model is None:
        return None, reason or f"not measured: no {precision} graph (the source is {source.precision})", None
    try:
        measurement = measure_latency(model, cost.input_shapes)
        kernels = profile_nodes(model, cost.input_shapes) if options.layers else None
    except EdgecnnError as error:
        return None, f"not measured: {error}", None
    return measurement, None, kernels


def _pick_source(sources: list[GraphSource], precision: str) -> tuple[GraphSource, str]:
    exact = next((s for s in sources if s.precision == precision), None)
    if exact is not None:
        return exact, "graph"
    base = next((s for s in sources if s.precision == "fp32"), sources[0])
    return base, f"derived from {base.precision}"


def _profile_target(target: ProfileTarget, devices: list[Device], options: ProfileOptions) -> list[ProfileRow]:
    sources = target.sources(options.batches[0], options.input_shapes)
    explicit = options.precisions is not None
    if target.origin == "zoo":
        precisions = list(options.precisions or DEFAULT_PRECISIONS)
    elif explicit:
        precisions = list(options.precisions)
    else:
        precisions = list(dict.fromkeys(s.precision for s in sources))
    tags, top1 = list(sources[0].tags), sources[0].ref_top1
    rows: list[ProfileRow] = []
    measured_graphs: dict = {}
    for batch in options.batches:
        if target.load_at is not None and batch != options.batches[0]:
            sources = target.sources(batch, options.input_shapes)
        plan: dict[int, tuple[GraphSource, list[tuple[str, str]]]] = {}
        for precision in precisions:
            source, basis = _pick_source(sources, precision)
            plan.setdefault(id(source), (source, []))[1].append((precision, basis))
        for source, wanted in plan.values():
            slow_int8 = {device.id for device in devices if fast_int8_note(device)}
            extra = ["fp16"] if slow_int8 and any(p == "int8" for p, _ in wanted) else []
            costs = analyze_precisions(
                source.model,
                list(dict.fromkeys([p for p, _ in wanted] + extra)),
                batch=source.batch or batch,
                input_shapes=None if target.load_at is not None else _named_shapes(source.model, options.input_shapes),
                name=source.name,
            )
            for precision, basis in wanted:
                cost = costs[precision]
                memory = plan_memory(cost)
                fits = [
                    _device_fit(
                        cost,
                        memory.peak_bytes,
                        device,
                        options,
                        costs["fp16"] if precision == "int8" and device.id in slow_int8 else None,
                    )
                    for device in devices
                ]
                row = ProfileRow(
                    model=target.name,
                    origin=target.origin,
                    precision=precision,
                    basis=basis,
                    batch=cost.batch,
                    params=cost.params,
                    macs=cost.macs,
                    flops=cost.flops,
                    weight_bytes=cost.weight_bytes,
                    peak_activation_bytes=memory.peak_bytes,
                    naive_activation_bytes=memory.naive_bytes,
                    peak_node=memory.peak_node,
                    uncounted=cost.uncounted,
                    tags=tags,
                    ref_top1=top1,
                    devices=fits,
                )
                kernels = None
                if options.measure:
                    row.measured, row.measure_note, kernels = _measure(
                        source, precision, cost, options, measured_graphs
                    )
                if options.layers:
                    row.layers = _layer_rows(cost, devices[0], kernels)
                rows.append(row)
    return rows


def _named_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
    """``--input-shape`` without a name applies to the graph's single input."""
    if not shapes:
        return None
    if "*" in shapes:
        names = list(input_dims(model))
        if len(names) != 1:
            raise UsageError(
                f"the graph has {len(names)} inputs ({', '.join(names)}): name each, --input-shape name=DxD..."
            )
        return {names[0]: shapes["*"]}
    return shapes


def _layer_rows(cost: GraphCost, device: Device, kernels: dict | None) -> list[dict[str, Any]]:
    estimate = estimate_latency(cost, device)
    rows = (
        node_time_rows(cost, kernels)
        if kernels is not None
        else [
            {**node.as_row(), "mac_share": 100.0 * node.macs / (cost.macs or 1) if node.counted else None}
            for node in cost.nodes
        ]
    )
    by_name = {layer.name: layer for layer in estimate.layers}
    for row in rows:
        layer = by_name.get(row["name"])
        row["estimated_ms"] = layer.ms if layer else None
        row["bound"] = layer.bound if layer else None
    return rows


def _recommend(rows: list[ProfileRow], devices: list[Device], options: ProfileOptions) -> list[Recommendation]:
    if options.memory_budget is None and options.max_latency_ms is None:
        return []
    parts = []
    if options.memory_budget is not None:
        parts.append(f"memory <= {options.memory_budget / MB:,.1f} MB")
    if options.max_latency_ms is not None:
        parts.append(f"estimated latency <= {options.max_latency_ms:g} ms")
    constraint = " and ".join(parts)
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    recommendations = []
    for device in devices:
        for batch in options.batches:
            satisfying = [
                row
                for row in rows
                if row.batch == batch and row.fit(device.id).fits and row.fit(device.id).meets_latency is not False
            ]
            best: dict[str, ProfileRow] = {}
            for row in sorted(satisfying, key=lambda r: order.get(r.precision, 9)):
                best.setdefault(row.model, row)
            ranked = sorted(
                (r for r in best.values() if r.ref_top1 is not None),
                key=lambda r: (-r.ref_top1, r.fit(device.id).estimated_ms),
            )
            picks = [
                {
                    "model": row.model,
                    "precision": row.precision,
                    "ref_top1": row.ref_top1,
                    "estimated_ms": row.fit(device.id).estimated_ms,
                    "model_mb": row.fit(device.id).model_bytes / MB,
                    "headroom_mb": row.fit(device.id).headroom_bytes / MB,
                }
                for row in ranked[: options.recommend]
            ]
            recommendations.append(
                Recommendation(
                    device.id, batch, constraint, picks, sorted(r.model for r in best.values() if r.ref_top1 is None)
                )
            )
    return recommendations


def check_targets(targets: Sequence[ProfileTarget], options: ProfileOptions) -> None:
    """Refuse option and target combinations that cannot be profiled, before any work starts."""
    if options.trtexec_dir is not None and len(targets) != 1:
        raise UsageError(
            "--import-trtexec measures one engine: "
            f"name the one model or ONNX file it was built from, not {len(targets)}"
        )


def profile(
    targets: Sequence[ProfileTarget],
    options: ProfileOptions,
    on_done: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> ProfileReport:
    """Profile ``targets`` (from :func:`resolve_targets`) on ``options.devices``; ``on_start(name)`` before
    and ``on_done(name)`` after each (a zoo graph not yet cached takes seconds to build)."""
    started = time.perf_counter()
    devices, releases = _with_jetpack(resolve_devices(options.devices), options.jetpack)
    if not devices:
        raise UsageError("give a device: a catalog id, a kind such as 'jetson', or 'host' (see 'edgecnn devices')")
    check_targets(targets, options)
    rows: list[ProfileRow] = []
    for target in targets:
        if on_start is not None:
            on_start(target.name)
        rows += _profile_target(target, devices, options)
        if on_done is not None:
            on_done(target.name)
    imported = None
    if options.trtexec_dir is not None:
        imported = import_trtexec(
            options.trtexec_dir, targets[0].sources(options.batches[0], options.input_shapes)[0].model
        )
        _join_trtexec_times(rows, imported)
    precisions = sorted({row.precision for row in rows}, key=precision_order)
    budget = (
        f"{options.memory_budget / MB:,.1f} MB"
        if options.memory_budget is not None
        else "each device's RAM less its runtime overhead"
    )
    return ProfileReport(
        devices=[device.id for device in devices],
        budget=budget,
        max_latency_ms=options.max_latency_ms,
        rows=rows,
        recommendations=_recommend(rows, devices, options),
        assumptions=assumptions(devices, [p for p in precisions if p in PRECISIONS]),
        seconds=time.perf_counter() - started,
        trtexec=imported,
        jetpack={device_id: release.label for device_id, release in releases.items()},
    )


def _with_jetpack(devices: list[Device], jetpack: str | None) -> tuple[list[Device], dict[str, JetpackRelease]]:
    """The devices to profile and the JetPack release each Jetson assumes (``jetpack``, default its newest).

    With ``jetpack``, Jetsons that do not run it are left out (so ``--device jetson --jetpack 7.x`` profiles
    the Jetsons on JetPack 7; other devices stay); a selection with no Jetson that runs it is a one-line error.
    """
    releases: dict[str, JetpackRelease] = {}
    kept = []
    for device in devices:
        if not device.jetpack_releases:
            kept.append(device)
            continue
        try:
            releases[device.id] = resolve_jetpack(device, jetpack)
        except UsageError:
            if len(devices) == 1:
                raise
            continue
        kept.append(device)
    if jetpack is not None and not releases:
        if len(devices) == 1:
            resolve_jetpack(devices[0], jetpack)
        raise UsageError(f"none of the devices runs JetPack {jetpack}: 'edgecnn devices jetson' lists each one's")
    return kept, releases


def _join_trtexec_times(rows: list[ProfileRow], imported: TrtexecImport) -> None:
    """Per-layer tables gain the device's measured time per ONNX node; fused nodes name the layer they ran in."""
    for row in rows:
        for layer in row.layers or ():
            layer["trtexec_ms"] = imported.node_times.get(layer["name"])
            layer["fused_into"] = imported.fused_into.get(layer["name"])
