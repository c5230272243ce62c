"""The profiler: models x devices x precisions x batch sizes -> one report.

For every model (a zoo name, an ONNX file or an ``edgecnn export`` directory), precision and batch size:
the static cost (:mod:`edgecnn.cost`), the liveness plan (:mod:`edgecnn.memory`), and for every device
the memory that a deployment needs (weights + peak activations + the device's runtime overhead), whether
the model fits the budget and by how much, and the estimated latency (:mod:`edgecnn.estimate`). With
``measure`` the host's ONNX Runtime latency is added (:mod:`edgecnn.measure`). Given a memory budget or a
latency limit, the report names the most accurate networks (reference ImageNet top-1) that satisfy it.

Memory sizes follow the device catalog: 1 MB = 2**20 bytes.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import onnx

from edgecnn.export.trtexec import TrtexecImport, import_trtexec
from edgecnn.cost import CONVENTION, PRECISIONS, GraphCost, analyze_precisions
from edgecnn.devices import Device, resolve_devices
from edgecnn.errors import EdgecnnError, UnknownNameError, UsageError
from edgecnn.estimate import ESTIMATED_LABEL, assumptions, estimate_latency
from edgecnn.graphs import GraphSource, export_dir_graphs, fill_weights, onnx_file_source, zoo_graph
from edgecnn.measure import MEASURED_LABEL, LatencyMeasurement, measure_latency, node_time_rows, profile_nodes
from edgecnn.memory import plan_memory

__all__ = [
    "MB",
    "ProfileOptions",
    "DeviceFit",
    "ProfileRow",
    "Recommendation",
    "ProfileReport",
    "ProfileTarget",
    "parse_memory_size",
    "parse_precisions",
    "parse_batches",
    "parse_input_shape",
    "resolve_targets",
    "check_targets",
    "profile",
]

MB = 2**20
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": MB, "mb": MB, "mib": MB,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_memory_size(text: str | int) -> int:
    """``512MB``, ``10MB``, ``1.5GB``, ``256KiB`` or a byte count to bytes (KB/MB/GB are binary, as in the catalog)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(f"memory size {text!r} is not a size: give a number with KB, MB or GB (for example 512MB or 1.5GB)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise UsageError(f"memory size {text!r} must be more than zero")
    return size


def parse_precisions(text: str | Sequence[str]) -> list[str]:
    """``fp32,fp16,int8`` to a list; an unknown name raises with the choices."""
    import difflib

    names = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not names:
        raise UsageError(f"give at least one precision: {', '.join(PRECISIONS)}")
    for name in names:
        if name not in PRECISIONS:
            close = difflib.get_close_matches(name, PRECISIONS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(PRECISIONS)}"
            raise UnknownNameError(f"unknown precision {name!r}: {hint}")
    return list(dict.fromkeys(names))


def parse_batches(text: str | Sequence[int]) -> list[int]:
    """``1,8`` to [1, 8]; a batch below 1 or a non-number raises."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    batches = []
    for part in parts:
        try:
            batch = int(str(part).strip())
        except ValueError:
            raise UsageError(f"batch {str(part).strip()!r} is not a whole number (for example --batch 1,8)") from None
        if batch < 1:
            raise UsageError(f"batch must be at least 1, got {batch}")
        batches.append(batch)
    if not batches:
        raise UsageError("give at least one batch size (for example --batch 1,8)")
    return list(dict.fromkeys(batches))


def parse_input_shape(text: str | None) -> dict[str, list[int]] | None:
    """``1x3x224x224`` (the single input) or ``name=1x3x224x224[,name2=...]``; N/?/batch marks the batch dim."""
    if not text:
        return None
    shapes: dict[str, list[int]] = {}
    for part in text.split(","):
        name, _, dims = part.rpartition("=")
        try:
            values = [0 if d.strip().lower() in ("n", "?", "batch") else int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise UsageError(f"input shape {part!r} is not DxDx... (for example 1x3x224x224 or input=Nx3x224x224)") from None
        if not values or any(v < 0 for v in values):
            raise UsageError(f"input shape {part!r} has a negative or missing dimension")
        shapes[name.strip() or "*"] = values
    return shapes


@dataclass
class ProfileOptions:
    """Options of ``edgecnn profile``; the CLI fills one and calls :func:`profile`.

    ``precisions`` None profiles zoo models at fp32, fp16 and int8 and files at their own precision;
    given, files are costed at those precisions too (derived from the file's graph). ``memory_budget``
    None means each device's default budget (its RAM less its runtime overhead).
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
    ``derived from fp32`` (byte sizes applied to the graph, see :mod:`edgecnn.cost`).
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
    convention: str = CONVENTION
    estimated_label: str = ESTIMATED_LABEL
    measured_label: str = MEASURED_LABEL


@dataclass
class ProfileTarget:
    """One thing named on the command line, resolved lazily to its graphs (zoo graphs take seconds to build).

    ``origin`` is ``zoo``, ``onnx`` (a file) or ``export`` (an ``edgecnn export`` directory).
    """

    name: str
    origin: str
    path: Path | None = None

    def sources(self) -> list[GraphSource]:
        if self.origin == "zoo":
            return [GraphSource(self.name, zoo_graph(self.name), "zoo", "fp32", None, self.name)]
        if self.origin == "export":
            return export_dir_graphs(self.path)
        return [onnx_file_source(self.path)]


def resolve_targets(models: Iterable[str] = (), all_models: bool = False, tags: Iterable[str] = ()) -> list[ProfileTarget]:
    """Zoo names, aliases and globs, ONNX files and export directories, plus ``--all`` / ``--tag`` (any of the tags).

    Naming nothing profiles the whole zoo, as ``edgecnn profile --device jetson`` does.
    """
    from edgecnn.registry import get_spec, list_models

    targets: list[ProfileTarget] = []
    for model in models:
        path = Path(model)
        if model.endswith(".onnx") or path.is_file():
            if not path.is_file():
                raise UsageError(f"ONNX file {path} does not exist")
            targets.append(ProfileTarget(path.name.split(".")[0], "onnx", path=path))
        elif path.is_dir() and (path / "manifest.json").is_file():
            targets.append(ProfileTarget(path.name, "export", path=path))
        elif any(ch in model for ch in "*?["):
            matched = list_models(model)
            if not matched:
                raise UsageError(f"no model matches {model!r}: run 'edgecnn list'")
            targets += [ProfileTarget(name, "zoo") for name in matched]
        else:
            try:
                targets.append(ProfileTarget(get_spec(model).name, "zoo"))
            except UnknownNameError:
                if not path.is_dir():
                    raise
                targets.append(ProfileTarget(path.name, "export", path=path))
    wanted_tags = [t.strip() for tag in tags for t in tag.split(",") if t.strip()]
    for tag in wanted_tags:
        if tag not in ("efficient", "heavy"):
            raise UsageError(f"unknown tag {tag!r}: choose efficient or heavy")
        targets += [ProfileTarget(name, "zoo") for name in list_models(tags=[tag])]
    if all_models:
        targets += [ProfileTarget(name, "zoo") for name in list_models()]
    if not models and not wanted_tags:
        targets = [ProfileTarget(name, "zoo") for name in list_models()]
    return list({(t.origin, t.name, str(t.path)): t for t in targets}.values())


def _reference(zoo_name: str | None) -> tuple[list[str], float | None]:
    if zoo_name is None:
        return [], None
    from edgecnn.registry import get_spec

    spec = get_spec(zoo_name)
    return sorted(spec.tags), spec.reference.top1 if spec.reference else None


def _device_fit(cost: GraphCost, peak: int, device: Device, options: ProfileOptions, latency_cost: GraphCost | None = None) -> DeviceFit:
    """Fit and estimated latency; ``latency_cost`` times another precision's graph (INT8 on GPUs without fast
    INT8 runs no faster than FP16, :func:`edgecnn.export.trt_check.gpu_int8_note`)."""
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


def runnable_graph(source: GraphSource, precision: str) -> onnx.ModelProto | None:
    """A graph ONNX Runtime can run at ``precision``: the source itself, or its FP32 graph converted
    (FP16 with the export path's converter; INT8 with ONNX Runtime's ``quantize_static`` on random
    calibration inputs, U8 activations and S8 per-channel weights as the onnx-int8-cpu format, since
    latency does not depend on the calibration values). None when no such conversion applies."""
    if source.precision == precision:
        return fill_weights(source.model) if source.path is None else source.model
    if source.precision != "fp32":
        return None
    fp32 = fill_weights(source.model)
    if precision == "fp16":
        from edgecnn.export.fp16 import to_fp16

        return to_fp16(fp32)
    return _quantize_for_timing(fp32)


def _quantize_for_timing(model: onnx.ModelProto) -> onnx.ModelProto:
    import tempfile

    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgecnn.cost import input_dims

    dims = input_dims(model)

    class RandomInputs(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            shapes = {name: [d if isinstance(d, int) and d > 0 else 1 for d in shape] for name, shape in dims.items()}
            self.batches = iter([{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()} for _ in range(2)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-") as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save_model(model, str(source))
        quantize_static(str(source), str(target), RandomInputs(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(str(target))


def _measure(source: GraphSource, precision: str, cost: GraphCost, options: ProfileOptions, cache: dict) -> tuple[LatencyMeasurement | None, str | None, dict | None]:
    key = (id(source), precision)
    if key not in cache:
        try:
            cache[key] = (runnable_graph(source, precision), None)
        except EdgecnnError as error:
            cache[key] = (None, str(error))
        except Exception as error:  # the converters raise their own types
            cache[key] = (None, f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}")
    model, reason = cache[key]
    if model is None:
        return None, reason or f"not measured: no {precision} graph (the source is {source.precision})", None
    try:
        measurement = measure_latency(model, cost.input_shapes)
        kernels = profile_nodes(model, cost.input_shapes) if options.layers else None
    except EdgecnnError as error:
        return None, f"not measured: {error}", None
    return measurement, None, kernels


def gpu_int8_note(device: Device) -> str | None:
    from edgecnn.export.trt_check import gpu_int8_note as note

    return note(device)


def _pick_source(sources: list[GraphSource], precision: str) -> tuple[GraphSource, str]:
    exact = next((s for s in sources if s.precision == precision), None)
    if exact is not None:
        return exact, "graph"
    base = next((s for s in sources if s.precision == "fp32"), sources[0])
    return base, f"derived from {base.precision}"


def _profile_target(target: ProfileTarget, devices: list[Device], options: ProfileOptions) -> list[ProfileRow]:
    sources = target.sources()
    explicit = options.precisions is not None
    if target.origin == "zoo":
        precisions = list(options.precisions or PRECISIONS)
    elif explicit:
        precisions = list(options.precisions)
    else:
        precisions = list(dict.fromkeys(s.precision for s in sources))
    tags, top1 = _reference(sources[0].model_name)
    rows: list[ProfileRow] = []
    measured_graphs: dict = {}
    for batch in options.batches:
        plan: dict[int, tuple[GraphSource, list[tuple[str, str]]]] = {}
        for precision in precisions:
            source, basis = _pick_source(sources, precision)
            plan.setdefault(id(source), (source, []))[1].append((precision, basis))
        for source, wanted in plan.values():
            slow_int8 = {device.id for device in devices if gpu_int8_note(device)}
            extra = ["fp16"] if slow_int8 and any(p == "int8" for p, _ in wanted) else []
            costs = analyze_precisions(source.model, list(dict.fromkeys([p for p, _ in wanted] + extra)), batch=batch,
                                       input_shapes=_named_shapes(source.model, options.input_shapes), name=source.name)
            for precision, basis in wanted:
                cost = costs[precision]
                memory = plan_memory(cost)
                fits = [_device_fit(cost, memory.peak_bytes, device, options,
                                    costs["fp16"] if precision == "int8" and device.id in slow_int8 else None) for device in devices]
                row = ProfileRow(
                    model=target.name, origin=target.origin, precision=precision, basis=basis, batch=cost.batch,
                    params=cost.params, macs=cost.macs, flops=cost.flops, weight_bytes=cost.weight_bytes,
                    peak_activation_bytes=memory.peak_bytes, naive_activation_bytes=memory.naive_bytes,
                    peak_node=memory.peak_node, uncounted=cost.uncounted, tags=tags, ref_top1=top1, devices=fits,
                )
                kernels = None
                if options.measure:
                    row.measured, row.measure_note, kernels = _measure(source, precision, cost, options, measured_graphs)
                if options.layers:
                    row.layers = _layer_rows(cost, devices[0], kernels)
                rows.append(row)
    return rows


def _named_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
    """``--input-shape`` without a name applies to the graph's single input."""
    if not shapes:
        return None
    if "*" in shapes:
        from edgecnn.cost import input_dims

        names = list(input_dims(model))
        if len(names) != 1:
            raise UsageError(f"the graph has {len(names)} inputs ({', '.join(names)}): name each, --input-shape name=DxD...")
        return {names[0]: shapes["*"]}
    return shapes


def _layer_rows(cost: GraphCost, device: Device, kernels: dict | None) -> list[dict[str, Any]]:
    estimate = estimate_latency(cost, device)
    rows = node_time_rows(cost, kernels) if kernels is not None else [
        {**node.as_row(), "mac_share": 100.0 * node.macs / (cost.macs or 1) if node.counted else None} for node in cost.nodes
    ]
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
                row for row in rows
                if row.batch == batch and row.fit(device.id).fits and row.fit(device.id).meets_latency is not False
            ]
            best: dict[str, ProfileRow] = {}
            for row in sorted(satisfying, key=lambda r: order.get(r.precision, 9)):
                best.setdefault(row.model, row)
            ranked = sorted((r for r in best.values() if r.ref_top1 is not None), key=lambda r: (-r.ref_top1, r.fit(device.id).estimated_ms))
            picks = [
                {
                    "model": row.model, "precision": row.precision, "ref_top1": row.ref_top1,
                    "estimated_ms": row.fit(device.id).estimated_ms, "model_mb": row.fit(device.id).model_bytes / MB,
                    "headroom_mb": row.fit(device.id).headroom_bytes / MB,
                }
                for row in ranked[: options.recommend]
            ]
            recommendations.append(Recommendation(device.id, batch, constraint, picks,
                                                  sorted(r.model for r in best.values() if r.ref_top1 is None)))
    return recommendations


def check_targets(targets: Sequence[ProfileTarget], options: ProfileOptions) -> None:
    """Refuse option and target combinations that cannot be profiled, before any work starts."""
    if options.trtexec_dir is not None and len(targets) != 1:
        raise UsageError(f"--import-trtexec measures one engine: name the one model or ONNX file it was built from, not {len(targets)}")


def profile(
    targets: Sequence[ProfileTarget],
    options: ProfileOptions,
    on_done: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> ProfileReport:
    """Profile ``targets`` (from :func:`resolve_targets`) on ``options.devices``; ``on_start(name)`` before
    and ``on_done(name)`` after each (a zoo graph not yet cached takes seconds to build)."""
    started = time.perf_counter()
    devices = resolve_devices(options.devices)
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
        imported = import_trtexec(options.trtexec_dir, targets[0].sources()[0].model)
        _join_trtexec_times(rows, imported)
    precisions = sorted({row.precision for row in rows}, key=lambda p: PRECISIONS.index(p) if p in PRECISIONS else 9)
    budget = f"{options.memory_budget / MB:,.1f} MB" if options.memory_budget is not None else "each device's RAM less its runtime overhead"
    return ProfileReport(
        devices=[device.id for device in devices],
        budget=budget,
        max_latency_ms=options.max_latency_ms,
        rows=rows,
        recommendations=_recommend(rows, devices, options),
        assumptions=assumptions(devices, [p for p in precisions if p in PRECISIONS]),
        seconds=time.perf_counter() - started,
        trtexec=imported,
    )


def _join_trtexec_times(rows: list[ProfileRow], imported: TrtexecImport) -> None:
    """Per-layer tables gain the device's measured time per ONNX node; fused nodes name the layer they ran in."""
    for row in rows:
        for layer in row.layers or ():
            layer["trtexec_ms"] = imported.node_times.get(layer["name"])
            layer["fused_into"] = imported.fused_into.get(layer["name"])
