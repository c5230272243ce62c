"""Reading what trtexec writes back: per-layer times keyed to ONNX node names, for the profile report.

:func:`import_trtexec` reads a directory of trtexec outputs (``--exportProfile``, ``--exportLayerInfo``,
``--exportTimes`` and the console log) and returns the measured per-layer times keyed to ONNX node names,
so they can be merged into edgecnn's profile report. The commands that produce them are written by
:mod:`edgecnn.export.tensorrt.trtexec`.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgecnn.errors import UsageError

__all__ = [
    "ProfileRow",
    "read_profile",
    "LayerInfo",
    "read_layer_info",
    "TimesSummary",
    "read_times",
    "LogSummary",
    "read_log",
    "onnx_nodes_of_layer",
    "MeasuredLayer",
    "TrtexecImport",
    "import_trtexec",
]


# ----------------------------------------------------------------------------------------------- reading JSON


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        stripped = text.rstrip()
        if not stripped.endswith(("]", "}")):
            where = f"truncated: it stops at line {stripped.count(chr(10)) + 1}"
        else:
            where = f"line {error.lineno}, column {error.colno}: {error.msg}"
        raise UsageError(f"{path} is not complete trtexec {what} JSON ({where}): re-run trtexec") from None


@dataclass
class ProfileRow:
    name: str
    total_ms: float
    average_ms: float
    median_ms: float | None
    percentage: float


@dataclass
class TrtexecProfile:
    iterations: int
    rows: list[ProfileRow]


def _profile_from(data: Any, path: Path) -> TrtexecProfile:
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "count" not in data[0]:
        raise UsageError(f'{path} is not a trtexec --exportProfile file (no leading {{"count": N}})')
    rows = []
    for entry in data[1:]:
        try:
            rows.append(
                ProfileRow(
                    str(entry["name"]),
                    float(entry["timeMs"]),
                    float(entry["averageMs"]),
                    float(entry["medianMs"]) if "medianMs" in entry else None,
                    float(entry["percentage"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{path}: a profile row lacks name/timeMs/averageMs/percentage: {str(entry)[:120]}"
            ) from None
    return TrtexecProfile(int(data[0]["count"]), rows)


def read_profile(path: str | Path) -> TrtexecProfile:
    """trtexec ``--exportProfile``:
    ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]``."""
    path = Path(path)
    return _profile_from(_read_json(path, "--exportProfile"), path)


_METADATA = re.compile(r"\[ONNX Layer: ([^\]]*)\]")


@dataclass
class LayerInfo:
    name: str
    layer_type: str | None
    onnx_nodes: list[str]
    precision: str | None
    tactic: str | None
    detail: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class LayerInfoFile:
    layers: list[LayerInfo]
    bindings: list[str]
    detailed: bool


def _precision_of(formats: Iterable[str]) -> str | None:
    text = " ".join(formats).lower()
    for key, label in (("int8", "int8"), ("half", "fp16"), ("fp16", "fp16"), ("float", "fp32"), ("fp32", "fp32")):
        if key in text:
            return label
    return None


def _layer_info_from(data: Any, path: Path) -> LayerInfoFile:
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise UsageError(f'{path} is not a trtexec --exportLayerInfo file (no "Layers" list)')
    layers, detailed = [], False
    for entry in data["Layers"]:
        if isinstance(entry, str):
            layers.append(LayerInfo(entry, None, [], None, None))
            continue
        detailed = True
        metadata = str(entry.get("Metadata", "") or "")
        nodes = [node.strip() for node in _METADATA.findall(metadata)]
        formats = [str(t.get("Format/Datatype", "")) for t in entry.get("Outputs", []) if isinstance(t, dict)]
        layers.append(
            LayerInfo(
                str(entry.get("Name", "")),
                entry.get("LayerType"),
                list(dict.fromkeys(nodes)),
                _precision_of(formats),
                entry.get("TacticName"),
                entry,
            )
        )
    return LayerInfoFile(layers, [str(b) for b in data.get("Bindings", [])], detailed)


def read_layer_info(path: str | Path) -> LayerInfoFile:
    """trtexec ``--exportLayerInfo``: names only, or detailed (``--profilingVerbosity=detailed``) with Metadata."""
    path = Path(path)
    return _layer_info_from(_read_json(path, "--exportLayerInfo"), path)


def _stats(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def percentile(p: float) -> float:
        position = (len(ordered) - 1) * p / 100
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "median": percentile(50),
        "p90": percentile(90),
        "p95": percentile(95),
        "p99": percentile(99),
    }


@dataclass
class TimesSummary:
    inferences: int
    latency_ms: dict[str, float]
    compute_ms: dict[str, float]
    throughput_qps: float | None


def _times_from(data: Any, path: Path) -> TimesSummary:
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) and "latencyMs" in e for e in data):
        raise UsageError(f"{path} is not a trtexec --exportTimes file (a list of per-inference records with latencyMs)")
    latency = [float(e["latencyMs"]) for e in data]
    compute = [float(e.get("computeMs", e["latencyMs"])) for e in data]
    span = (float(data[-1].get("endComputeMs", 0)) - float(data[0].get("startComputeMs", 0))) / 1000
    return TimesSummary(len(data), _stats(latency), _stats(compute), len(data) / span if span > 0 else None)


def read_times(path: str | Path) -> TimesSummary:
    """trtexec ``--exportTimes``: one record per inference; latency and GPU compute percentiles."""
    path = Path(path)
    return _times_from(_read_json(path, "--exportTimes"), path)


# ----------------------------------------------------------------------------------------------- reading the log

_PREFIX = re.compile(r"^\[[^\]]*\] \[[A-Z]\] ?")
_METRIC = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+)\s*ms")
_PROFILE_HEADER = re.compile(r"=== Profile \((\d+) iterations? *\) ===")


@dataclass
class LogSummary:
    tensorrt: str | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    throughput_qps: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    gpu_compute_ms: dict[str, float] = field(default_factory=dict)
    enqueue_ms: dict[str, float] = field(default_factory=dict)
    h2d_ms: dict[str, float] = field(default_factory=dict)
    d2h_ms: dict[str, float] = field(default_factory=dict)
    profile: TrtexecProfile | None = None

    @property
    def has_summary(self) -> bool:
        return self.throughput_qps is not None or bool(self.latency_ms)


def _metrics(text: str) -> dict[str, float]:
    values = {}
    for match in _METRIC.finditer(text):
        key = f"p{match.group(2).removesuffix('.0')}" if match.group(2) else match.group(1)
        values[key] = float(match.group(3))
    return values


def read_log(path: str | Path) -> LogSummary:
    """trtexec's console log: version and GPU, the ``=== Performance summary ===`` and the ``--dumpProfile`` table."""
    path = Path(path)
    try:
        lines = [_PREFIX.sub("", line.rstrip("\n")) for line in path.read_text(errors="replace").splitlines()]
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    summary = LogSummary()
    section = None
    profile_rows: list[ProfileRow] = []
    iterations = 0
    for line in lines:
        text = line.strip()
        if text.startswith("TensorRT version:"):
            summary.tensorrt = text.split(":", 1)[1].strip()
        elif text.startswith("Selected Device:"):
            summary.gpu = text.split(":", 1)[1].strip()
        elif text.startswith("Compute Capability:"):
            summary.compute_capability = text.split(":", 1)[1].strip()
        elif text == "=== Performance summary ===":
            section = "summary"
        elif (match := _PROFILE_HEADER.search(text)) is not None:
            section, iterations = "profile", int(match.group(1))
        elif text.startswith("==="):
            section = None
        elif section == "summary":
            if text.startswith("Throughput:"):
                summary.throughput_qps = float(text.split(":", 1)[1].split()[0])
            for label, target in (
                ("Latency:", summary.latency_ms),
                ("GPU Compute Time:", summary.gpu_compute_ms),
                ("Enqueue Time:", summary.enqueue_ms),
                ("H2D Latency:", summary.h2d_ms),
                ("D2H Latency:", summary.d2h_ms),
            ):
                if text.startswith(label):
                    target.update(_metrics(text))
        elif section == "profile":
            parts = text.split(None, 4)
            if parts and parts[0] == "Time(ms)":
                continue
            if len(parts) == 5 and _is_number(parts[:4]):
                if parts[4] != "Total":
                    profile_rows.append(
                        ProfileRow(parts[4], float(parts[0]), float(parts[1]), float(parts[2]), float(parts[3]))
                    )
                continue
            parts = text.split(None, 3)
            if len(parts) == 4 and _is_number(parts[:3]):
                if parts[3] != "Total":
                    profile_rows.append(ProfileRow(parts[3], float(parts[0]), float(parts[1]), None, float(parts[2])))
                continue
            section = None
    if profile_rows:
        summary.profile = TrtexecProfile(iterations, profile_rows)
    if not summary.has_summary and summary.profile is None:
        raise UsageError(
            f"{path} has neither a '=== Performance summary ===' nor a '=== Profile' table: "
            "it is truncated or not a trtexec log of an inference run"
        )
    if summary.tensorrt is None:
        header = re.search(r"\[TensorRT v(\d+)\]", "\n".join(lines[:5]))
        if header:
            summary.tensorrt = _version_from_number(header.group(1))
    return summary


def _is_number(parts: Sequence[str]) -> bool:
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return True


def _version_from_number(number: str) -> str:
    value = int(number)
    if value >= 100000:
        return f"{value // 10000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


# ----------------------------------------------------------------------------------------------- names


_REFORMAT = re.compile(r"^Reformatting CopyNode for (?:Input|Output) Tensor \d+ to (.*)$")
_FOREIGN = re.compile(r"\{ForeignNode\[(.*)\]\}")
_MYELIN_SUFFIX = re.compile(r"_myl\d+_\d+$")


def _tokens(name: str) -> list[str]:
    """Split a fused TensorRT layer name ("a + PWN(PWN(b), c)") into its parts: a, b, c."""
    pieces, depth, current = [], 0, ""
    for char in name:
        depth += (char == "(") - (char == ")")
        current += char
        if depth == 0 and current.endswith(" + "):
            pieces.append(current[:-3])
            current = ""
    pieces.append(current)
    parts = []
    for piece in (p.strip() for p in pieces):
        if piece.startswith("PWN(") and piece.endswith(")"):
            parts += [p.strip() for p in re.split(r"PWN\(|[(),]", piece) if p.strip()]
        elif piece:
            parts.append(piece)
    return parts


def onnx_nodes_of_layer(
    name: str, metadata_nodes: Sequence[str] = (), onnx_names: Sequence[str] | None = None
) -> list[str]:
    """The ONNX nodes a TensorRT layer was built from.

    The layer info's ``Metadata`` ("[ONNX Layer: X]", TensorRT 8.6+ with detailed verbosity) is exact.
    Without it the name is read: layers fused by TensorRT are named "a + b + PWN(c)", myelin regions
    "{ForeignNode[first...last]}" (every node between the two, in graph order, when the graph is given),
    reformatting copies "Reformatting CopyNode for Input Tensor 0 to X" belong to no node. With
    ``onnx_names`` only names the graph has are kept.
    """
    known = list(onnx_names) if onnx_names is not None else None
    known_set = set(known or [])
    if metadata_nodes:
        nodes = list(dict.fromkeys(metadata_nodes))
        return [n for n in nodes if n in known_set] if known is not None else nodes
    if _REFORMAT.match(name):
        return []
    foreign = _FOREIGN.search(name)
    if foreign:
        first, _, last = foreign.group(1).partition("...")
        if known is not None and first in known_set and last in known_set:
            start, end = known.index(first), known.index(last)
            return known[min(start, end) : max(start, end) + 1]
        return [n for n in (first, last) if n and (known is None or n in known_set)]
    nodes = []
    for token in _tokens(name):
        candidates = [token, _MYELIN_SUFFIX.sub("", token)]
        if known is None:
            if not token.endswith((".weight", ".bias")) and not token.startswith("(Unnamed Layer"):
                nodes.append(candidates[1])
            continue
        match = next((c for c in candidates if c in known_set), None)
        if match is None:
            match = next(
                (k for k in sorted(known_set, key=len, reverse=True) if len(k) > 3 and token.endswith(k)), None
            )
        if match is not None:
            nodes.append(match)
    return list(dict.fromkeys(nodes))


# ----------------------------------------------------------------------------------------------- the import


_COMPUTE_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "LRN",
    "Softmax",
    "Concat",
)


@dataclass
class MeasuredLayer:
    layer: str
    average_ms: float | None
    median_ms: float | None
    percentage: float | None
    layer_type: str | None
    precision: str | None
    onnx_nodes: list[str]
    primary: str | None


@dataclass
class TrtexecImport:
    """Measured times from one trtexec run, per TensorRT layer and per ONNX node.

    ``node_times`` maps an ONNX node to the milliseconds per inference of the layer(s) it is the primary node
    of (the first compute node of a fused layer); ``fused_into`` maps every other node of a fused layer to
    that primary node, whose time includes it. Layers with no ONNX node (reformatting copies, unnamed
    internal layers) are in ``unmapped_ms``.
    """

    directory: Path
    files: dict[str, Path]
    iterations: int | None
    tensorrt: str | None
    gpu: str | None
    layers: list[MeasuredLayer]
    node_times: dict[str, float]
    fused_into: dict[str, str]
    unmapped_ms: dict[str, float]
    log: LogSummary | None
    times: TimesSummary | None

    @property
    def total_layer_ms(self) -> float:
        return sum(layer.average_ms or 0.0 for layer in self.layers)


def _classify(path: Path) -> tuple[str, Any] | None:
    """(kind, parsed) for a trtexec output file, by content; None for anything else."""
    if path.suffix.lower() == ".json":
        data = _read_json(path, "output")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "count" in data[0]:
            return "profile", _profile_from(data, path)
        if isinstance(data, dict) and "Layers" in data:
            return "layers", _layer_info_from(data, path)
        if isinstance(data, list) and data and isinstance(data[0], dict) and "latencyMs" in data[0]:
            return "times", _times_from(data, path)
        return None
    if path.suffix.lower() in (".log", ".txt"):
        head = path.read_text(errors="replace")[:4000]
        if "trtexec" in head or "TensorRT" in head:
            try:
                summary = read_log(path)
            except UsageError:
                if "--loadEngine" in head or "Starting inference" in path.read_text(errors="replace"):
                    raise
                return None
            return "log", summary
    return None


def _onnx_nodes(model: onnx.ModelProto | str | Path | None) -> tuple[list[str] | None, dict[str, str]]:
    if model is None:
        return None, {}
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    names = [node.name for node in model.graph.node if node.name]
    return names, {node.name: node.op_type for node in model.graph.node if node.name}


def import_trtexec(directory: str | Path, model: onnx.ModelProto | str | Path | None = None) -> TrtexecImport:
    """Read one trtexec run's outputs in ``directory`` and key the measured layer times to ONNX node names.

    ``model`` (the ONNX the engine was built from) lets fused and myelin layer names be resolved against the
    graph's node names; without it names are read as they are.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--import-trtexec {directory}: not a directory of trtexec outputs")
    found: dict[str, list[tuple[Path, Any]]] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file():
            classified = _classify(path)
            if classified is not None:
                found.setdefault(classified[0], []).append((path, classified[1]))
    for kind, entries in found.items():
        if len(entries) > 1:
            raise UsageError(
                f"{directory} holds {len(entries)} trtexec {kind} files "
                f"({', '.join(p.name for p, _ in entries)}): keep one run per directory"
            )
    if not found:
        raise UsageError(
            f"{directory} has no trtexec output "
            "(--exportProfile, --exportLayerInfo, --exportTimes JSON or a trtexec log)"
        )
    picked = {kind: entries[0] for kind, entries in found.items()}
    log: LogSummary | None = picked["log"][1] if "log" in picked else None
    profile: TrtexecProfile | None = picked["profile"][1] if "profile" in picked else (log.profile if log else None)
    layer_info: LayerInfoFile | None = picked["layers"][1] if "layers" in picked else None
    names, op_types = _onnx_nodes(model)
    info_by_name = {layer.name: layer for layer in layer_info.layers} if layer_info else {}
    rows: list[tuple[str, float | None, float | None, float | None]]
    if profile is not None:
        rows = [(row.name, row.average_ms, row.median_ms, row.percentage) for row in profile.rows]
    elif layer_info is not None:
        rows = [(layer.name, None, None, None) for layer in layer_info.layers]
    else:
        rows = []
    layers: list[MeasuredLayer] = []
    node_times: dict[str, float] = {}
    fused_into: dict[str, str] = {}
    unmapped: dict[str, float] = {}
    for name, average, median, percentage in rows:
        info = info_by_name.get(name)
        nodes = onnx_nodes_of_layer(name, info.onnx_nodes if info else (), names)
        primary = next((n for n in nodes if op_types.get(n) in _COMPUTE_OPS), nodes[0] if nodes else None)
        layers.append(
            MeasuredLayer(
                name,
                average,
                median,
                percentage,
                info.layer_type if info else None,
                info.precision if info else None,
                nodes,
                primary,
            )
        )
        if average is None:
            continue
        if primary is None:
            unmapped[name] = unmapped.get(name, 0.0) + average
            continue
        node_times[primary] = node_times.get(primary, 0.0) + average
        for node in nodes:
            if node != primary:
                fused_into.setdefault(node, primary)
    return TrtexecImport(
        directory=directory,
        files={kind: entry[0] for kind, entry in picked.items()},
        iterations=profile.iterations if profile else None,
        tensorrt=log.tensorrt if log else None,
        gpu=log.gpu if log else None,
        layers=layers,
        node_times=node_times,
        fused_into=fused_into,
        unmapped_ms=unmapped,
        log=log,
        times=picked["times"][1] if "times" in picked else None,
    )
