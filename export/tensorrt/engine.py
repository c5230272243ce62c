"""ONNX -> serialized TensorRT engine, with a sidecar that makes the engine self-describing.

Two halves. :func:`plan_build` runs anywhere: it resolves the artifact, checks the request against the
device (DLA cores, memory, shapes) and the readiness report, and decides how TensorRT must be driven.
:func:`build_engine`, :func:`load_engine` and :func:`measure_engine` need TensorRT (imported lazily) and an
NVIDIA GPU, as on a Jetson with JetPack.

How precision is decided, per TensorRT major version:

- 11: every network is strongly typed; precision comes from the ONNX (Q/DQ nodes -> INT8, float16 graph ->
  FP16). The builder precision flags and the INT8 calibrators no longer exist, nor does DLA on JetPack.
- 10: the same strongly typed path on the GPU; DLA runs only FP16/INT8 through the legacy weakly typed path:
  FP16 flag, or INT8 flag with per-tensor dynamic ranges taken from the Q/DQ scales (DLA has no explicit
  quantization), or INT8 with TensorRT's entropy calibrator fed by edgecnn's calibration data.
- 8: weakly typed (no strongly typed networks yet): precision flags from the ONNX.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgecnn import __version__
from edgecnn.artifact.formats import model_name_of
from edgecnn.artifact.manifest import MANIFEST_NAME, read_manifest
from edgecnn.artifact.staging import write_bytes_atomic
from edgecnn.calibration import load_calibration
from edgecnn.calibration.quantize import resolve_preprocessing
from edgecnn.devices import Device, get_device, resolve_jetpack
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.export.tensorrt.check import (
    DLA_VERSIONS,
    ReadinessReport,
    ShapeProfile,
    check_model,
    dla_supported,
)
from edgecnn.export.tensorrt.support import parse_version
from edgecnn.onnx_facts import graph_precision, load_onnx, model_sha256
from edgecnn.runtime import time_runs

__all__ = [
    "NOT_INSTALLED",
    "CompileOptions",
    "Artifact",
    "BuildPlan",
    "BuildResult",
    "GpuIdentity",
    "EngineTiming",
    "PRECISION_FORMATS",
    "resolve_artifact",
    "plan_build",
    "qdq_to_ranges",
    "calibration_cache_text",
    "build_engine",
    "read_sidecar",
    "check_engine_compatibility",
    "load_engine",
    "measure_engine",
    "gpu_identity",
    "installed_tensorrt",
    "tensorrt_ep_options",
    "prepare_ep_cache",
    "create_tensorrt_ep_session",
    "SIDECAR_VERSION",
]

NOT_INSTALLED = "TensorRT is not installed"
SIDECAR_VERSION = 1
ARTIFACT_PREFERENCE = ("onnx-int8-tensorrt", "onnx-fp16", "onnx-fp32")


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class CompileOptions:
    """Options of ``edgecnn compile``; the CLI fills one and calls :func:`plan_build`."""

    device: str
    workspace_mb: float | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    timing_cache: Path | None = None
    batch: int | None = None
    shapes: ShapeProfile | None = None
    output_dir: Path | None = None
    precision: str | None = None
    tensorrt: str | None = None
    calibration: str | None = None
    calibration_samples: int = 256
    jetpack: str | None = None


@dataclass
class Artifact:
    """The ONNX file to compile, its model name and precision, and the export directory it came from."""

    path: Path
    name: str
    precision: str
    format: str | None
    directory: Path
    manifest: dict[str, Any] | None
    fp32_path: Path | None


PRECISION_FORMATS = {
    "fp32": "onnx-fp32",
    "fp16": "onnx-fp16",
    "int8": "onnx-int8-tensorrt",
    "fp8": "onnx-fp8-tensorrt",
}


def resolve_artifact(artifact: str | Path, precision: str | None = None) -> tuple[Artifact, onnx.ModelProto]:
    """An ``.onnx`` file, or an export directory's artifact of ``precision`` (default: the lowest it has).

    INT8 means the TensorRT-form Q/DQ artifact (``onnx-int8-tensorrt``), the only INT8 form TensorRT takes.
    """
    if precision is not None and precision not in PRECISION_FORMATS:
        raise UsageError(f"unknown precision {precision!r}: choose {', '.join(PRECISION_FORMATS)}")
    path = Path(artifact)
    if path.is_dir():
        manifest = read_manifest(path)
        files = {
            entry.get("format"): path / entry["file"]
            for entry in manifest.get("artifacts", [])
            if str(entry.get("file", "")).endswith(".onnx")
        }
        model_name = manifest.get("model", {}).get("name") or path.name
        if precision is not None:
            key = PRECISION_FORMATS[precision]
            if key not in files:
                reference = manifest.get("model", {}).get("source") or model_name
                if precision == "int8":
                    hint = f"edgecnn quantize {path} --target tensorrt"
                elif precision == "fp8":
                    hint = f"edgecnn quantize {path} --precision fp8"
                else:
                    hint = f"edgecnn export {reference}" + (" --fp16" if precision == "fp16" else "")
                raise UsageError(
                    f"{path} has no {key} artifact (it has {', '.join(files) or 'none'}): make it first, e.g. {hint}"
                )
        else:
            key = next((k for k in ARTIFACT_PREFERENCE if k in files), None)
            if key is None:
                raise UsageError(
                    f"{path}/{MANIFEST_NAME} lists no ONNX artifact TensorRT can build (onnx-int8-cpu is for CPUs): "
                    "re-run edgecnn export"
                )
        model = load_onnx(files[key])
        return Artifact(
            files[key], model_name, graph_precision(model), key, path, manifest, files.get("onnx-fp32")
        ), model
    if path.suffix.lower() != ".onnx":
        raise UsageError(f"{path} is neither an .onnx file nor an edgecnn export directory")
    model = load_onnx(path)
    found = graph_precision(model)
    if precision is not None and precision != found:
        raise UsageError(
            f"{path.name} is a {found} model, not {precision}: drop --precision, or give the {precision} file"
        )
    name = model_name_of(path.name)
    sibling = path.with_name(f"{name}.onnx")
    fp32 = sibling if sibling.is_file() and sibling != path else (path if found == "fp32" else None)
    manifest = None
    if (path.parent / MANIFEST_NAME).is_file():
        try:
            manifest = json.loads((path.parent / MANIFEST_NAME).read_text())
        except json.JSONDecodeError:
            manifest = None
    return Artifact(path, name, found, None, path.parent, manifest, fp32), model


# ----------------------------------------------------------------------------------------------- the plan


@dataclass
class BuildPlan:
    """Everything a build needs, decided without TensorRT: what :func:`build_engine` and trtexec both follow."""

    model: str
    device: str
    tensorrt: str
    network: str
    precision: str
    builder_flags: list[str]
    int8_source: str | None
    onnx: Path
    build_onnx: Path
    source_sha256: str
    inputs: dict[str, list[int | str]]
    profile: ShapeProfile | None
    workspace_bytes: int
    dla_core: int | None
    gpu_fallback: bool
    timing_cache: Path
    engine_path: Path
    sidecar_path: Path
    calibration: str | None
    calibration_samples: int
    calibration_cache: Path | None
    notes: list[str] = field(default_factory=list)
    readiness: ReadinessReport | None = None
    preprocessing: dict[str, Any] | None = None
    jetpack: str | None = None

    @property
    def tensorrt_major(self) -> int:
        return parse_version(self.tensorrt)[0]

    @property
    def input_name(self) -> str:
        """The first input's name (the only one of a single-input model)."""
        return next(iter(self.inputs))

    @property
    def input_shape(self) -> list[int | str]:
        return self.inputs[self.input_name]

    @property
    def dynamic_inputs(self) -> list[str]:
        """The inputs with a dynamic batch: the ones an optimization profile (and trtexec's --*Shapes) must name."""
        return [name for name, dims in self.inputs.items() if not all(isinstance(d, int) for d in dims)]

    def shape_for(self, batch: int, name: str | None = None) -> list[int]:
        """Input ``name``'s shape (default: the first input's) with its dynamic batch set to ``batch``."""
        return [batch if not isinstance(d, int) else d for d in self.inputs[name or self.input_name]]

    def shapes_text(self, batch: int) -> str:
        """``name:NxCxHxW[,name2:...]`` for every dynamic input at ``batch``: trtexec's and ONNX Runtime's form."""
        return ",".join(
            f"{name}:" + "x".join(str(d) for d in self.shape_for(batch, name)) for name in self.dynamic_inputs
        )

    def build_options(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "builder_flags": self.builder_flags,
            "int8_source": self.int8_source,
            "workspace_bytes": self.workspace_bytes,
            "dla_core": self.dla_core,
            "gpu_fallback": self.gpu_fallback,
            "profile": asdict(self.profile) if self.profile else None,
            "input": {"name": self.input_name, "shape": self.input_shape},
            "inputs": [{"name": name, "shape": dims} for name, dims in self.inputs.items()],
            "timing_cache": str(self.timing_cache),
            "calibration": self.calibration,
        }


def installed_tensorrt() -> str | None:
    """The installed TensorRT's version, or None (the PyPI ``tensorrt`` stub without libraries counts as absent)."""
    try:
        import tensorrt
    except Exception:
        return None
    return getattr(tensorrt, "__version__", None)


def _inputs(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Every graph input (initializers listed as inputs left out), in order, with its dims (names where dynamic)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if not inputs:
        raise UsageError("the model has no inputs: TensorRT builds networks that take at least one")
    return {
        value.name: [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim
        ]
        for value in inputs
    }


def _profile(inputs: dict[str, list[int | str]], options: CompileOptions) -> ShapeProfile | None:
    """The batch range every input with a dynamic batch is built for; None when every input is static.

    A model with several inputs shares one batch (TensorRT takes one optimization profile; edgecnn's
    ``--batch``/``--shapes`` set the batch of each input whose first dimension is dynamic).
    """
    if options.batch is not None and options.shapes is not None:
        raise UsageError("--batch and --shapes exclude each other: give one")
    for name, shape in inputs.items():
        dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if dynamic and dynamic != [0]:
            raise UsageError(
                f"input {name} has dynamic non-batch dimensions {shape}: fix them with 'edgecnn export FILE.onnx "
                f"--input-shape {name}=DIMS' and use the export directory"
            )
    dynamic_inputs = [name for name, shape in inputs.items() if shape and not isinstance(shape[0], int)]
    if not dynamic_inputs:
        for name, shape in inputs.items():
            if options.shapes is not None:
                raise UsageError(
                    f"input {name} has a static shape {shape}: --shapes needs a model exported with --dynamic-batch"
                )
            if shape and options.batch is not None and options.batch != shape[0]:
                raise UsageError(
                    f"input {name} has a static batch of {shape[0]}, not {options.batch}: "
                    "drop --batch or re-export with --dynamic-batch"
                )
        return None
    if options.batch is not None:
        return ShapeProfile.static(options.batch)
    if options.shapes is not None:
        return options.shapes
    name = dynamic_inputs[0]
    raise UsageError(
        f"input {name} has a dynamic batch {inputs[name]}: "
        "give --batch N or --shapes min,opt,max for the optimization profile"
    )


def _workspace(device: Device, workspace_mb: float | None, notes: list[str]) -> int:
    """Bytes of builder workspace: given, or half the device's memory budget (RAM less runtime overhead)."""
    if workspace_mb is None:
        return device.budget_bytes // 2
    if workspace_mb <= 0:
        raise UsageError(f"--workspace must be positive, got {workspace_mb:g} MB")
    if workspace_mb > device.memory_mb:
        raise UsageError(
            f"--workspace {workspace_mb:g} MB is larger than {device.id}'s {device.memory_mb:g} MB of memory: "
            f"give at most {device.budget_bytes / 2**20:,.0f} MB (its budget)"
        )
    if workspace_mb * 2**20 > device.budget_bytes:
        notes.append(
            f"workspace {workspace_mb:g} MB exceeds the device's {device.budget_bytes / 2**20:,.0f} MB budget: "
            "the build may run out of memory"
        )
    return int(workspace_mb * 2**20)


def _precision_path(
    artifact: Artifact, major: int, dla: bool, calibration: str | None, notes: list[str]
) -> tuple[str, str, list[str], str | None, Path]:
    """(network, precision, builder flags, int8 source, ONNX to build) for this TensorRT major version."""
    precision = artifact.precision
    if major >= 11:
        return "strongly-typed", precision, [], "qdq" if precision == "int8" else None, artifact.path
    if calibration is not None:
        source = artifact.fp32_path
        if source is None:
            raise UsageError(
                f"--calib calibrates an FP32 model, and {artifact.path.name} has no FP32 sibling: "
                "compile the export directory or the FP32 .onnx"
            )
        flags = ["INT8", "FP16"] if dla else ["INT8"]
        return "weakly-typed", "int8", flags, "entropy-calibrator", source
    if dla or major < 10:
        if precision == "int8":
            if dla:
                return "weakly-typed", "int8", ["INT8", "FP16"], "qdq-ranges", artifact.path
            return "weakly-typed", "int8", ["INT8"], "qdq", artifact.path
        if precision == "fp16" or dla:
            if dla and precision == "fp32":
                notes.append("DLA runs FP16 and INT8 only: this FP32 model is built with TensorRT's FP16 flag")
            return "weakly-typed", "fp16", ["FP16"], None, artifact.path
        return "weakly-typed", "fp32", [], None, artifact.path
    return "strongly-typed", precision, [], "qdq" if precision == "int8" else None, artifact.path


def plan_build(artifact: str | Path, options: CompileOptions) -> BuildPlan:
    """Check the request and decide the build; every bad input is a one-line UsageError or EdgecnnError."""
    device = get_device(options.device)
    release = (
        resolve_jetpack(device, options.jetpack)
        if options.jetpack is not None or (options.tensorrt is None and device.jetpack_releases)
        else None
    )
    version = options.tensorrt or (release.tensorrt if release is not None else None)
    if not version:
        raise UsageError(f"{device.id} runs no TensorRT: compile for a Jetson, e.g. --device jetson-orin-nano-8gb")
    major, _ = parse_version(version)
    dla = options.dla_core is not None
    if dla:
        if device.dla_cores == 0:
            raise UsageError(
                f"{device.id} has no DLA cores: drop --dla-core, "
                "or pick a device with DLA (jetson-orin-nx-16gb, jetson-agx-orin-*, jetson-*xavier*)"
            )
        if not 0 <= options.dla_core < device.dla_cores:
            raise UsageError(
                f"{device.id} has {device.dla_cores} DLA core(s), numbered from 0: "
                f"--dla-core {options.dla_core} does not exist"
            )
        if release is not None and options.tensorrt is None and not release.dla:
            raise UsageError(
                f"{release.label} has no DLA support on {device.id}: build for the GPU, or pick a release "
                f"with DLA (--jetpack; 'edgecnn devices {device.id}' lists them) [{DLA_VERSIONS}]"
            )
        if not dla_supported(str(version), device):
            where = " on Jetson AGX Orin only" if parse_version(version) >= (11, 4) else ""
            raise UsageError(
                f"TensorRT {version} has no DLA support{where} here: build for the GPU, or with TensorRT 10.0-10.7, "
                f"or 11.4.1+ on AGX Orin [{DLA_VERSIONS}]"
            )
    if options.gpu_fallback and not dla:
        raise UsageError("--gpu-fallback only applies with --dla-core N")
    if options.calibration is not None and major >= 11:
        raise UsageError(
            "TensorRT 11 removed INT8 calibrators: "
            "export a Q/DQ model (edgecnn export MODEL --int8 --target tensorrt) and compile it"
        )
    resolved, model = resolve_artifact(artifact, options.precision)
    if dla and major >= 11 and resolved.precision == "fp32":
        raise UsageError(
            f"TensorRT {version} builds DLA networks strongly typed, and DLA runs FP16 and INT8 only: "
            "compile the FP16 or INT8 model (--precision fp16|int8)"
        )
    inputs = _inputs(model)
    if options.calibration is not None and len(inputs) > 1:
        raise UsageError(
            f"--calib feeds TensorRT's entropy calibrator one image input; {resolved.path.name} has {len(inputs)} "
            f"({', '.join(inputs)}): quantize it with 'edgecnn quantize {artifact} --target tensorrt --calib "
            "inputs.npz' (one array per input name) and compile the INT8 artifact"
        )
    notes: list[str] = []
    profile = _profile(inputs, options)
    if dla and profile is not None and not profile.is_static:
        raise UsageError(
            "DLA needs static shapes (min = opt = max), "
            f"not --shapes {profile.minimum},{profile.optimum},{profile.maximum}: give --batch N"
        )
    workspace = _workspace(device, options.workspace_mb, notes)
    network, precision, flags, int8_source, build_onnx = _precision_path(
        resolved, major, dla, options.calibration, notes
    )
    if options.gpu_fallback:
        flags.append("GPU_FALLBACK")
    readiness = check_model(
        model,
        device,
        tensorrt=options.tensorrt,
        jetpack=release,
        profile=profile or ShapeProfile.static(next((int(dims[0]) for dims in inputs.values() if dims), 1)),
        name=resolved.path.name,
    )
    for issue in readiness.errors:
        if issue.code in ("parser", "qdq", "opset"):
            raise EdgecnnError(f"{resolved.path.name}: {issue.message}")
    if dla and not options.gpu_fallback and readiness.gpu_fallback_layers:
        blocked = [f"{row.node} ({row.op_type})" for row in readiness.nodes if row.dla == "gpu"]
        listed = ", ".join(blocked[:4]) + (f" and {len(blocked) - 4} more" if len(blocked) > 4 else "")
        raise UsageError(
            f"{len(blocked)} layer(s) cannot run on DLA: {listed}; add --gpu-fallback to run them on the GPU "
            f"(edgecnn check --device {device.id} gives the reasons)"
        )
    output_dir = Path(options.output_dir) if options.output_dir else resolved.directory
    suffix = f".dla{options.dla_core}" if dla else ""
    engine_path = output_dir / f"{resolved.name}.{precision}{suffix}.engine"
    timing_cache = (
        Path(options.timing_cache) if options.timing_cache else output_dir / f"timing-{device.id}-trt{version}.cache"
    )
    calibration_cache = (
        output_dir / f"{resolved.name}.entropy-calibration.cache" if int8_source == "entropy-calibrator" else None
    )
    return BuildPlan(
        model=resolved.name,
        device=device.id,
        tensorrt=str(version),
        network=network,
        precision=precision,
        builder_flags=flags,
        int8_source=int8_source,
        onnx=resolved.path,
        build_onnx=build_onnx,
        source_sha256=model_sha256(resolved.path),
        inputs=inputs,
        profile=profile,
        workspace_bytes=workspace,
        dla_core=options.dla_core,
        gpu_fallback=options.gpu_fallback,
        timing_cache=timing_cache,
        engine_path=engine_path,
        sidecar_path=engine_path.with_name(engine_path.name + ".json"),
        calibration=options.calibration,
        calibration_samples=options.calibration_samples,
        calibration_cache=calibration_cache,
        notes=notes,
        readiness=readiness,
        preprocessing=(resolved.manifest or {}).get("preprocessing"),
        jetpack=release.jetpack if release is not None else None,
    )


# ----------------------------------------------------------------------------------------------- Q/DQ -> ranges


def qdq_to_ranges(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, float]]:
    """A float copy of a Q/DQ model plus each quantized activation's range (amax = 127 x scale).

    DLA takes INT8 only through implicit quantization (per-tensor dynamic ranges), so the Q/DQ scales
    edgecnn's calibration chose are carried over instead of calibrating again. Weights are dequantized
    into float initializers; TensorRT requantizes them per channel itself. Written by hand because no
    maintained library converts Q/DQ to TensorRT dynamic ranges in Python (NVIDIA's qdq-translator is a
    script, not a package).
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}

    def array(name: str) -> np.ndarray | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = constants.get(name)
        if node is not None:
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        return None

    rename: dict[str, str] = {}
    ranges: dict[str, float] = {}
    new_initializers: list[onnx.TensorProto] = []
    drop: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "DequantizeLinear" and array(node.input[0]) is not None:
            values = array(node.input[0]).astype(np.float32)
            scale = array(node.input[1]).astype(np.float32)
            zero = array(node.input[2]).astype(np.float32) if len(node.input) > 2 and node.input[2] else np.float32(0)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.size > 1:
                shape = [1] * values.ndim
                shape[axis % values.ndim] = -1
                scale, zero = scale.reshape(shape), np.broadcast_to(zero, scale.shape).reshape(shape)
            new_initializers.append(numpy_helper.from_array((values - zero) * scale, node.output[0]))
            drop.add(index)
        elif node.op_type == "QuantizeLinear":
            scale = array(node.input[1])
            if scale is not None and scale.size == 1 and array(node.input[0]) is None:
                ranges[node.input[0]] = float(scale) * 127.0
            drop.add(index)
            rename[node.output[0]] = node.input[0]
        elif node.op_type == "DequantizeLinear":
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            drop.add(index)
    used_by_quantizers = {node.input[0] for i, node in enumerate(graph.node) if i in drop}
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    del converted.graph.node[:]
    for index, node in enumerate(graph.node):
        if index in drop:
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for position, name in enumerate(copy.input):
            while name in rename:
                name = rename[name]
            copy.input[position] = name
        converted.graph.node.append(copy)
    for output in converted.graph.output:
        source = output.name
        while source in rename:
            source = rename[source]
        if source != output.name:
            converted.graph.node.append(
                onnx.helper.make_node("Identity", [source], [output.name], name=f"{output.name}_identity")
            )
    keep = [
        init
        for init in converted.graph.initializer
        if init.name not in used_by_quantizers or init.name in {i for n in converted.graph.node for i in n.input}
    ]
    del converted.graph.initializer[:]
    converted.graph.initializer.extend(keep + new_initializers)
    del converted.graph.value_info[:]
    return converted, _equal_dla_ranges(converted, ranges)


_SHARED_RANGE_OPS = {"Add", "Sub", "Mul", "Max", "Min", "Sum"}
_SAME_RANGE_OPS = {"MaxPool", "AveragePool", "GlobalMaxPool"}


def _equal_dla_ranges(model: onnx.ModelProto, ranges: dict[str, float]) -> dict[str, float]:
    """The ranges, with every group DLA needs equal set to the group's widest one.

    NvInfer.h: in INT8 on DLA, an ElementWise layer's two inputs must have the same dynamic range ("the
    largest value shall be used") and a pooling layer's input and output must too. Q/DQ scales are chosen
    per tensor, so a residual Add or a pool would otherwise fail the DLA build or fall back to the GPU.
    NVIDIA's qdq-translator (Deep-Learning-Accelerator-SW tools/qdq-translator) merges them the same way.
    """
    parent = {name: name for name in ranges}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in model.graph.node:
        if node.op_type in _SHARED_RANGE_OPS:
            group = [name for name in node.input if name in ranges]
        elif node.op_type in _SAME_RANGE_OPS:
            group = [name for name in (node.input[0], node.output[0]) if name in ranges]
        else:
            continue
        for name in group[1:]:
            parent[root(name)] = root(group[0])
    widest: dict[str, float] = {}
    for name, value in ranges.items():
        widest[root(name)] = max(widest.get(root(name), 0.0), value)
    return {name: widest[root(name)] for name in ranges}


def calibration_cache_text(ranges: dict[str, float], tensorrt_version: str) -> str:
    """TensorRT's calibration cache format (header, then ``tensor: big-endian float32 scale in hex``).

    Scales are amax / 127. The header carries the TensorRT version number (major*1000+minor*100+patch for
    8.x, major*10000+minor*100+patch from 10), as TensorRT writes it; trtexec reads it with ``--calib``.
    """
    parts = [int(p) for p in (str(tensorrt_version).split(".") + ["0", "0"])[:3]]
    number = (
        parts[0] * 10000 + parts[1] * 100 + parts[2] if parts[0] >= 10 else parts[0] * 1000 + parts[1] * 100 + parts[2]
    )
    lines = [f"TRT-{number}-EntropyCalibration2"]
    lines += [f"{name}: {struct.pack('>f', amax / 127.0).hex()}" for name, amax in sorted(ranges.items())]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- TensorRT side


def _import_tensorrt():
    try:
        import tensorrt
    except Exception:
        raise EdgecnnError(
            f"{NOT_INSTALLED} here (JetPack ships it on Jetsons; PyPI's tensorrt is a stub): "
            "run edgecnn compile on the device, or use --emit-trtexec for trtexec command lines"
        ) from None
    if not hasattr(tensorrt, "Builder"):
        raise EdgecnnError(
            f"{NOT_INSTALLED} here: the tensorrt package has no libraries (PyPI stub); use --emit-trtexec"
        )
    return tensorrt


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str


def gpu_identity() -> GpuIdentity | None:
    """This machine's GPU 0, from PyTorch's CUDA or from the CUDA driver directly; None without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return GpuIdentity(torch.cuda.get_device_name(0), f"{major}.{minor}")
    except Exception:
        pass
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return None
    cuda.cuDeviceGetName(name, 256, device)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)
    return GpuIdentity(name.value.decode(errors="replace"), f"{major.value}.{minor.value}")


def _logger(trt):
    class CollectingLogger(trt.ILogger):
        """Keeps TensorRT's warnings and errors so failures can be reported in one line."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[Any, str]] = []

        def log(self, severity, message) -> None:
            if severity <= trt.ILogger.Severity.WARNING:
                self.messages.append((severity, str(message)))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s <= trt.ILogger.Severity.ERROR]

    return CollectingLogger()


def _parse_errors(parser) -> str:
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node()
        name = error.node_name() if hasattr(error, "node_name") else ""
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        where = f"node {node}" + (f" {name}" if name else "") + (f" ({op})" if op else "")
        lines.append(f"{where}: {error.desc()}")
    return "; ".join(lines) or "no parser error recorded"


def _entropy_calibrator(trt, batches: Iterable[np.ndarray], batch_size: int, cache: Path):
    """TensorRT's IInt8EntropyCalibrator2 over float32 NCHW batches, with a cache file it reads and writes."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches: Iterator[np.ndarray] = iter(batches)
            self.device_input = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            if len(batch) != batch_size:
                return None
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
            self.device_input = tensor
            return [int(tensor.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            write_bytes_atomic(cache, bytes(data))

    return EntropyCalibrator()


@dataclass
class BuildResult:
    engine: Path
    sidecar: Path
    seconds: float
    size_bytes: int
    dla_layers: list[str]
    gpu_layers: list[str]
    warnings: list[str]


def _calibration_batches(plan: BuildPlan, batch_size: int) -> Iterator[np.ndarray]:
    """Full float32 NCHW batches of the plan's calibration set, in order.

    TensorRT's calibrator stops at the first batch it is not given, so a short last batch is dropped rather
    than padded (padding would add samples to the histograms). Loading happens here, before TensorRT asks
    for the first batch, so a bad ``--calib`` source fails before the build starts.
    """
    preprocessing = resolve_preprocessing(plan.build_onnx, plan.shape_for(1), plan.preprocessing, plan.calibration)
    calibration = load_calibration(plan.calibration, preprocessing=preprocessing, samples=plan.calibration_samples)
    if len(calibration) < batch_size:
        raise UsageError(
            f"--calib {plan.calibration} gave {len(calibration)} sample(s), fewer than one batch of {batch_size}: "
            "give more samples (--calib-samples) or a smaller --batch"
        )
    return (
        calibration.batch(range(start, start + batch_size))
        for start in range(0, len(calibration) - batch_size + 1, batch_size)
    )


def build_engine(plan: BuildPlan) -> BuildResult:
    """Build and serialize the engine the plan describes, with its sidecar; needs TensorRT and a GPU."""
    import time

    trt = _import_tensorrt()
    running = trt.__version__
    if parse_version(running)[0] != plan.tensorrt_major:
        raise UsageError(
            f"the plan is for TensorRT {plan.tensorrt} but TensorRT {running} is installed: plan again here"
        )
    started = time.perf_counter()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if plan.network == "strongly-typed" and hasattr(creation, "STRONGLY_TYPED") and plan.tensorrt_major < 11:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    if plan.tensorrt_major < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ranges: dict[str, float] = {}
    source = plan.build_onnx
    if plan.int8_source == "qdq-ranges":
        converted, ranges = qdq_to_ranges(onnx.load(str(plan.build_onnx)))
        parsed = parser.parse(converted.SerializeToString())
    else:
        parsed = parser.parse_from_file(str(source))
    if not parsed:
        raise EdgecnnError(f"TensorRT {running} cannot parse {source.name}: {_parse_errors(parser)[:800]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.profile is not None:
        profile = builder.create_optimization_profile()
        for name in plan.dynamic_inputs:
            profile.set_shape(
                name,
                plan.shape_for(plan.profile.minimum, name),
                plan.shape_for(plan.profile.optimum, name),
                plan.shape_for(plan.profile.maximum, name),
            )
        config.add_optimization_profile(profile)
        if plan.int8_source == "entropy-calibrator":
            config.set_calibration_profile(profile)
    if ranges:
        for index in range(network.num_inputs):
            tensor = network.get_input(index)
            if tensor.name in ranges:
                tensor.set_dynamic_range(-ranges[tensor.name], ranges[tensor.name])
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            for output in range(layer.num_outputs):
                tensor = layer.get_output(output)
                if tensor.name in ranges:
                    tensor.set_dynamic_range(-ranges[tensor.name], ranges[tensor.name])
    if plan.int8_source == "entropy-calibrator":
        batch_size = plan.profile.optimum if plan.profile else int(plan.input_shape[0])
        config.int8_calibrator = _entropy_calibrator(
            trt, _calibration_batches(plan, batch_size), batch_size, plan.calibration_cache
        )
    timing_data = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(timing_data)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    dla_layers, gpu_layers = [], []
    if plan.dla_core is not None:
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            (dla_layers if config.can_run_on_DLA(layer) else gpu_layers).append(layer.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = logger.errors() or ["no error message from TensorRT"]
        raise EdgecnnError(f"TensorRT {running} could not build {plan.engine_path.name}: {errors[-1][:400]}")
    plan.engine_path.parent.mkdir(parents=True, exist_ok=True)
    data = bytes(serialized)
    write_bytes_atomic(plan.engine_path, data)
    write_bytes_atomic(plan.timing_cache, bytes(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - started
    gpu = gpu_identity()
    sidecar = _sidecar(plan, running, gpu, data, seconds, dla_layers, gpu_layers)
    write_bytes_atomic(plan.sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    warnings = [m for s, m in logger.messages if s == trt.ILogger.Severity.WARNING]
    return BuildResult(plan.engine_path, plan.sidecar_path, seconds, len(data), dla_layers, gpu_layers, warnings)


def _sidecar(
    plan: BuildPlan,
    version: str,
    gpu: GpuIdentity | None,
    data: bytes,
    seconds: float,
    dla_layers: list[str],
    gpu_layers: list[str],
) -> dict[str, Any]:
    return {
        "edgecnn_engine": SIDECAR_VERSION,
        "engine": {"file": plan.engine_path.name, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)},
        "tensorrt": version,
        "gpu": {"name": gpu.name if gpu else None, "compute_capability": gpu.compute_capability if gpu else None},
        "device": plan.device,
        "dla_core": plan.dla_core,
        "precision": plan.precision,
        "model": plan.model,
        "source_onnx": {"file": plan.onnx.name, "sha256": plan.source_sha256},
        "build_options": plan.build_options(),
        "dla_layers": dla_layers,
        "gpu_fallback_layers": gpu_layers if plan.dla_core is not None else [],
        "build_seconds": round(seconds, 2),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgecnn": __version__,
    }


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``engine`` (``ENGINE.json``), None when there is none; a damaged one is a one-line error."""
    path = Path(engine)
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{sidecar} is not valid JSON ({error}): rebuild the engine with edgecnn compile") from None
    if not isinstance(data, dict) or data.get("edgecnn_engine") != SIDECAR_VERSION:
        raise UsageError(f"{sidecar} is not an edgecnn engine sidecar: rebuild the engine with edgecnn compile")
    return data


def _looks_like_engine(path: Path) -> str | None:
    """Why ``path`` is certainly not a TensorRT engine, or None when it may be one."""
    if not path.is_file():
        return f"{path} does not exist"
    size = path.stat().st_size
    if size < 1024:
        return f"{path} is not a TensorRT engine ({size} bytes)"
    head = path.read_bytes()[:64]
    if head.lstrip().startswith((b"{", b"[")):
        return f"{path} is not a TensorRT engine (it is JSON text)"
    if path.suffix.lower() == ".onnx" or (head[0] == 0x08 and head[1] <= 0x0C and head[2] == 0x12):
        return f"{path} is not a TensorRT engine (it looks like an ONNX model): build one with edgecnn compile"
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return f"{path} is not a TensorRT engine (it is text)"
    return None


def check_engine_compatibility(sidecar: dict[str, Any], tensorrt_version: str, gpu: GpuIdentity | None) -> list[str]:
    """Raise when the engine was built by another TensorRT version or for another GPU; return mild warnings.

    TensorRT engines are tied to the exact TensorRT version and to the GPU's compute capability; loading a
    foreign one fails deep inside TensorRT with a version-tag or device error, so this says it first.
    """
    built = str(sidecar.get("tensorrt"))
    engine = sidecar.get("engine", {}).get("file", "the engine")
    if built != str(tensorrt_version):
        raise EdgecnnError(
            f"{engine} was built by TensorRT {built}; this is TensorRT {tensorrt_version}: "
            f"rebuild it here with edgecnn compile (engines do not move between TensorRT versions)"
        )
    warnings = []
    built_gpu = sidecar.get("gpu", {}) or {}
    if gpu is not None and built_gpu.get("compute_capability"):
        if built_gpu["compute_capability"] != gpu.compute_capability:
            raise EdgecnnError(
                f"{engine} was built for {built_gpu.get('name')} "
                f"(compute capability {built_gpu['compute_capability']}); "
                f"this GPU is {gpu.name} ({gpu.compute_capability}): rebuild it here with edgecnn compile"
            )
        if built_gpu.get("name") and built_gpu["name"] != gpu.name:
            warnings.append(
                f"{engine} was built on {built_gpu['name']}, running on {gpu.name} (same compute capability): "
                "timings may differ"
            )
    return warnings


def load_engine(path: str | Path, dla_core: int | None = None):
    """Deserialize an engine after checking its sidecar; returns (engine, sidecar, warnings).

    A DLA engine runs on the core set on the runtime before deserializing: ``dla_core``, else the one the
    sidecar records, so an engine built for core 1 does not silently run on core 0.
    """
    path = Path(path)
    reason = _looks_like_engine(path)
    if reason:
        raise UsageError(reason)
    sidecar = read_sidecar(path)
    trt = _import_tensorrt()
    warnings = []
    if sidecar is not None:
        warnings = check_engine_compatibility(sidecar, trt.__version__, gpu_identity())
    else:
        warnings.append(f"{path.name} has no edgecnn sidecar: its TensorRT version and GPU are unknown")
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    core = dla_core if dla_core is not None else (sidecar or {}).get("dla_core")
    if core is not None:
        runtime.DLA_core = int(core)
    try:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
    except Exception as error:
        logger.messages.append(
            (
                trt.ILogger.Severity.ERROR,
                first_line(error, 10_000),
            )
        )
        engine = None
    if engine is None:
        detail = (logger.errors() or ["TensorRT could not deserialize it"])[-1]
        raise UsageError(f"{path} is not a TensorRT {trt.__version__} engine: {detail[:300]}")
    return engine, sidecar, warnings


@dataclass
class EngineTiming:
    """Latency of one engine on this GPU (CUDA events around each inference, after warm-up)."""

    batch: int
    iterations: int
    mean_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float


def measure_engine(path: str | Path, *, batch: int = 1, warmup: int = 20, iterations: int = 200) -> EngineTiming:
    """Time an engine with random inputs; the profiler's measurement where TensorRT and a GPU are present."""
    engine, _, _ = load_engine(path)
    import tensorrt as trt
    import torch

    if not torch.cuda.is_available():
        raise EdgecnnError("the engine runner needs PyTorch with CUDA for device buffers")
    if not hasattr(engine, "num_io_tensors"):
        raise EdgecnnError(f"the engine runner needs TensorRT 8.5 or newer (named I/O tensors), not {trt.__version__}")
    context = engine.create_execution_context()
    buffers = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            shape = [batch if d < 0 else d for d in engine.get_tensor_shape(name)]
            context.set_input_shape(name, shape)
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = list(context.get_tensor_shape(name))
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buffers[name] = (
            torch.randn(shape, device="cuda").to(dtype)
            if dtype.is_floating_point
            else torch.zeros(shape, dtype=dtype, device="cuda")
        )
        context.set_tensor_address(name, buffers[name].data_ptr())
    stream = torch.cuda.Stream()

    def run() -> float:
        """One inference, timed on the GPU by a CUDA event pair around it."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end)

    values = np.asarray(time_runs(run, warmup=warmup, min_runs=iterations, max_runs=iterations))
    return EngineTiming(
        batch,
        iterations,
        float(values.mean()),
        float(values.min()),
        float(np.percentile(values, 50)),
        float(np.percentile(values, 90)),
        float(np.percentile(values, 99)),
        float(batch * 1000 / values.mean()),
    )


# --------------------------------------------------------------------------------------------- ONNX Runtime TensorRT EP


def tensorrt_ep_options(plan: BuildPlan, cache_dir: Path) -> dict[str, Any]:
    """ONNX Runtime TensorRT execution provider options equivalent to ``plan``, engine and timing caches on."""
    options: dict[str, Any] = {
        "device_id": 0,
        "trt_max_workspace_size": plan.workspace_bytes,
        "trt_fp16_enable": "FP16" in plan.builder_flags or plan.precision == "fp16",
        "trt_int8_enable": plan.precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if plan.dla_core is not None:
        options.update({"trt_dla_enable": True, "trt_dla_core": plan.dla_core})
    if plan.profile is not None:
        options.update(
            {
                "trt_profile_min_shapes": plan.shapes_text(plan.profile.minimum),
                "trt_profile_opt_shapes": plan.shapes_text(plan.profile.optimum),
                "trt_profile_max_shapes": plan.shapes_text(plan.profile.maximum),
            }
        )
    return options


def prepare_ep_cache(cache_dir: Path, identity: dict[str, Any]) -> None:
    """The engine cache's sidecar: written on first use, and a cache built for anything else is refused.

    ONNX Runtime's TensorRT EP would otherwise reuse or silently rebuild engines from another TensorRT,
    GPU or precision; edgecnn's rule for engines applies to its cache too.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    sidecar = cache_dir / "edgecnn-trt-cache.json"
    if sidecar.is_file():
        try:
            stored = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            raise UsageError(f"{sidecar} is not valid JSON: delete {cache_dir} to rebuild the cache") from None
        different = [
            f"{key} {stored.get(key)!r} -> {value!r}" for key, value in identity.items() if stored.get(key) != value
        ]
        if different:
            raise EdgecnnError(
                f"the TensorRT engine cache in {cache_dir} was built for something else ({'; '.join(different)}): "
                "delete it or give another cache directory"
            )
        return
    write_bytes_atomic(sidecar, (json.dumps(identity, indent=2) + "\n").encode())


def create_tensorrt_ep_session(plan: BuildPlan, cache_dir: str | Path | None = None):
    """An ONNX Runtime session on the TensorRT execution provider (onnxruntime-gpu built with TensorRT)."""
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise EdgecnnError(
            "ONNX Runtime's TensorRT execution provider is not available here: install onnxruntime-gpu "
            "built with TensorRT (JetPack wheels from NVIDIA's Jetson Zoo), or use edgecnn compile"
        )
    cache = Path(cache_dir) if cache_dir else plan.engine_path.with_suffix(".ort-trt-cache")
    gpu = gpu_identity()
    prepare_ep_cache(
        cache,
        {
            "onnxruntime": ort.__version__,
            "tensorrt": installed_tensorrt() or plan.tensorrt,
            "gpu": gpu.compute_capability if gpu else None,
            "precision": plan.precision,
            "dla_core": plan.dla_core,
            "source_onnx_sha256": plan.source_sha256,
        },
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [
        ("TensorrtExecutionProvider", tensorrt_ep_options(plan, cache)),
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    try:
        return ort.InferenceSession(str(plan.onnx), options, providers=providers)
    except Exception as error:
        raise EdgecnnError(
            f"ONNX Runtime's TensorRT EP cannot load {plan.onnx.name}: {first_line(error, 300)}"
        ) from None
