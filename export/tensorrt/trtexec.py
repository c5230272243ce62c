"""trtexec command lines: the exact build and profiling commands for a build plan, as a script to run on the device.

trtexec (TensorRT's command-line tool, shipped with JetPack under /usr/src/tensorrt/bin) is how most
users build and time engines on a Jetson. :func:`trtexec_commands` turns a :class:`BuildPlan` into its
build and profiling commands; what trtexec writes back is read by :mod:`edgecnn.profile.trtexec`.

Flags, per TensorRT version (NVIDIA's trtexec migration guides, 8.x -> 10.x and 10.x -> 11.x):
``--workspace=N`` became ``--memPoolSize=workspace:NM`` (8.4); ``--buildOnly`` became ``--skipInference``
(8.6); ``--stronglyTyped`` exists from 10 and is implied in 11; 11 removed ``--fp16``, ``--int8``,
``--calib`` and ``--best``.
"""
from __future__ import annotations

import json
import re
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import onnx

from edgecnn.errors import UsageError
from edgecnn.export.tensorrt.engine import BuildPlan, calibration_cache_text, qdq_to_ranges
from edgecnn.export.tensorrt.support import parse_version

__all__ = ["TrtexecCommand", "trtexec_commands", "write_trtexec_script"]

TRTEXEC = "trtexec"


# ----------------------------------------------------------------------------------------------- commands


@dataclass
class TrtexecCommand:
    step: str
    argv: list[str]
    purpose: str

    @property
    def line(self) -> str:
        return shlex.join(self.argv)


def _artifact_names(plan: BuildPlan) -> dict[str, str]:
    stem = plan.engine_path.name.removesuffix(".engine")
    return {
        "layers": f"{stem}.layers.json",
        "profile": f"{stem}.profile.json",
        "times": f"{stem}.times.json",
        "log": f"{stem}.trtexec.log",
        "build_log": f"{stem}.build.log",
        "calib": f"{stem}.calib",
        "float_onnx": f"{stem}.float.onnx",
    }


def _shape_text(plan: BuildPlan, batch: int) -> str:
    return f"{plan.input_name}:" + "x".join(str(d) for d in plan.shape_for(batch))


def trtexec_commands(plan: BuildPlan, directory: str | Path | None = None) -> list[TrtexecCommand]:
    """The build command and the profiling command for ``plan``, with paths relative to ``directory``."""
    base = Path(directory) if directory is not None else plan.engine_path.parent
    names = _artifact_names(plan)
    major, minor = parse_version(plan.tensorrt)

    def rel(path: Path | str) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            return str(path)

    onnx_file = names["float_onnx"] if plan.int8_source == "qdq-ranges" else rel(plan.build_onnx)
    build = [TRTEXEC, f"--onnx={onnx_file}", f"--saveEngine={rel(plan.engine_path)}"]
    workspace_mb = max(1, plan.workspace_bytes // 2**20)
    if (major, minor) < (8, 4):
        build.append(f"--workspace={workspace_mb}")
    elif major >= 10:
        build.append(f"--memPoolSize=workspace:{workspace_mb}M")
    else:
        build.append(f"--memPoolSize=workspace:{workspace_mb}")
    build.append(f"--timingCacheFile={rel(plan.timing_cache)}")
    if major < 11:
        if plan.network == "strongly-typed":
            build.append("--stronglyTyped")
        if "FP16" in plan.builder_flags:
            build.append("--fp16")
        if "INT8" in plan.builder_flags:
            build.append("--int8")
        if plan.int8_source == "qdq-ranges":
            build.append(f"--calib={names['calib']}")
        elif plan.int8_source == "entropy-calibrator" and plan.calibration_cache is not None:
            build.append(f"--calib={rel(plan.calibration_cache)}")
    if plan.dla_core is not None:
        build.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            build.append("--allowGPUFallback")
    if plan.profile is not None:
        build += [f"--minShapes={_shape_text(plan, plan.profile.minimum)}", f"--optShapes={_shape_text(plan, plan.profile.optimum)}",
                  f"--maxShapes={_shape_text(plan, plan.profile.maximum)}"]
    build += ["--profilingVerbosity=detailed", f"--exportLayerInfo={names['layers']}"]
    build.append("--skipInference" if (major, minor) >= (8, 6) else "--buildOnly")
    profile = [TRTEXEC, f"--loadEngine={rel(plan.engine_path)}"]
    if plan.dla_core is not None:
        profile.append(f"--useDLACore={plan.dla_core}")
    if plan.profile is not None:
        profile.append(f"--shapes={_shape_text(plan, plan.profile.optimum)}")
    profile += ["--warmUp=500", "--duration=10", "--useSpinWait", "--separateProfileRun",
                "--percentile=50,90,99" if (major, minor) >= (8, 6) else "--percentile=99",
                f"--exportProfile={names['profile']}", f"--exportLayerInfo={names['layers']}", f"--exportTimes={names['times']}"]
    return [
        TrtexecCommand("build", build, f"build {plan.engine_path.name} ({plan.precision}, {plan.network}, TensorRT {plan.tensorrt})"),
        TrtexecCommand("profile", profile, "time it: per-layer profile, layer info, per-inference times; keep the console log"),
    ]


def write_trtexec_script(plan: BuildPlan, directory: str | Path | None = None) -> Path:
    """Write ``<engine stem>.trtexec.sh`` (and, for DLA INT8 from Q/DQ, the float ONNX and calibration cache)."""
    base = Path(directory) if directory is not None else plan.engine_path.parent
    base.mkdir(parents=True, exist_ok=True)
    names = _artifact_names(plan)
    if plan.int8_source == "qdq-ranges":
        converted, ranges = qdq_to_ranges(onnx.load(str(plan.build_onnx)))
        onnx.save(converted, str(base / names["float_onnx"]))
        (base / names["calib"]).write_text(calibration_cache_text(ranges, plan.tensorrt))
    commands = trtexec_commands(plan, base)
    lines = [
        "#!/bin/sh",
        f"# {plan.model} on {plan.device} with TensorRT {plan.tensorrt}: written by edgecnn compile --emit-trtexec.",
        "# Run on the device from this directory (JetPack: export PATH=$PATH:/usr/src/tensorrt/bin), then bring the",
        f"# *.json files and {names['log']} back and run: edgecnn profile {plan.model} --import-trtexec DIR",
        "set -e",
    ]
    for note in plan.notes:
        lines.append(f"# note: {note}")
    if plan.int8_source == "qdq-ranges":
        lines.append(f"# DLA takes INT8 through implicit quantization: {names['float_onnx']} is the Q/DQ model without Q/DQ, and "
                     f"{names['calib']} carries its Q/DQ scales as a TensorRT calibration cache.")
    build, profile = commands
    lines += [f"# {build.purpose}", f"{build.line} 2>&1 | tee {names['build_log']}",
              f"# {profile.purpose}", f"{profile.line} 2>&1 | tee {names['log']}"]
    path = base / f"{plan.engine_path.name.removesuffix('.engine')}.trtexec.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path
