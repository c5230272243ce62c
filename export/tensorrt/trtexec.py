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

import shlex
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgecnn.artifact import sha256_file
from edgecnn.artifact.staging import cannot_write, staged_file, write_bytes_atomic
from edgecnn.calibration import load_calibration
from edgecnn.calibration.quantize import resolve_preprocessing
from edgecnn.calibration.ranges import compute_ranges
from edgecnn.errors import UsageError
from edgecnn.export.tensorrt.engine import BuildPlan, calibration_cache_text, qdq_to_ranges
from edgecnn.export.tensorrt.support import parse_version
from edgecnn.onnx_facts import onnx_files

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


def _inputs(plan: BuildPlan) -> dict[str, str]:
    """The files the build reads, by the name they have beside the script: the ONNX and any calibration cache."""
    names = _artifact_names(plan)
    inputs = {"onnx": names["float_onnx"] if plan.int8_source == "qdq-ranges" else plan.build_onnx.name}
    if plan.int8_source == "qdq-ranges":
        inputs["calib"] = names["calib"]
    elif plan.int8_source == "entropy-calibrator" and plan.calibration_cache is not None:
        inputs["calib"] = plan.calibration_cache.name
    return inputs


def trtexec_commands(plan: BuildPlan, directory: str | Path | None = None) -> list[TrtexecCommand]:
    """The build command and the profiling command for ``plan``.

    Every path is a bare file name: the commands run from the folder :func:`write_trtexec_script` fills
    (``directory``, kept for callers; the names do not depend on it), so they work wherever that folder is
    copied, e.g. onto a Jetson that has nothing of the workstation's layout.
    """
    names = _artifact_names(plan)
    inputs = _inputs(plan)
    major, minor = parse_version(plan.tensorrt)
    engine = plan.engine_path.name
    build = [TRTEXEC, f"--onnx={inputs['onnx']}", f"--saveEngine={engine}"]
    workspace_mb = max(1, plan.workspace_bytes // 2**20)
    if (major, minor) < (8, 4):
        build.append(f"--workspace={workspace_mb}")
    elif major >= 10:
        build.append(f"--memPoolSize=workspace:{workspace_mb}M")
    else:
        build.append(f"--memPoolSize=workspace:{workspace_mb}")
    build.append(f"--timingCacheFile={plan.timing_cache.name}")
    if major < 11:
        if plan.network == "strongly-typed":
            build.append("--stronglyTyped")
        if "FP16" in plan.builder_flags:
            build.append("--fp16")
        if "INT8" in plan.builder_flags:
            build.append("--int8")
        if "calib" in inputs:
            build.append(f"--calib={inputs['calib']}")
    if plan.dla_core is not None:
        build.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            build.append("--allowGPUFallback")
    if plan.profile is not None:
        build += [
            f"--minShapes={plan.shapes_text(plan.profile.minimum)}",
            f"--optShapes={plan.shapes_text(plan.profile.optimum)}",
            f"--maxShapes={plan.shapes_text(plan.profile.maximum)}",
        ]
    build += ["--profilingVerbosity=detailed", f"--exportLayerInfo={names['layers']}"]
    build.append("--skipInference" if (major, minor) >= (8, 6) else "--buildOnly")
    profile = [TRTEXEC, f"--loadEngine={engine}"]
    if plan.dla_core is not None:
        profile.append(f"--useDLACore={plan.dla_core}")
    if plan.profile is not None:
        profile.append(f"--shapes={plan.shapes_text(plan.profile.optimum)}")
    profile += [
        "--warmUp=500",
        "--duration=10",
        "--useSpinWait",
        "--separateProfileRun",
        "--percentile=50,90,99" if (major, minor) >= (8, 6) else "--percentile=99",
        f"--exportProfile={names['profile']}",
        f"--exportLayerInfo={names['layers']}",
        f"--exportTimes={names['times']}",
    ]
    return [
        TrtexecCommand("build", build, f"build {engine} ({plan.precision}, {plan.network}, TensorRT {plan.tensorrt})"),
        TrtexecCommand(
            "profile", profile, "time it: per-layer profile, layer info, per-inference times; keep the console log"
        ),
    ]


def _place(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` unless it is already there; a different file of that name is refused."""
    import shutil

    if target.exists() and (target.resolve() == source.resolve() or sha256_file(target) == sha256_file(source)):
        return
    if target.exists():
        raise UsageError(
            f"{target} already exists and is not {source}: write the trtexec script to another directory (-o)"
        )
    with staged_file(target) as temporary:
        shutil.copyfile(source, temporary)


def _place_onnx(source: Path, target: Path) -> None:
    """Copy the ONNX model ``source`` to ``target`` with its external data files, each at the location the
    graph names relative to it (trtexec's parser reads them from beside the file); the graph is copied last, so
    a copy that stops half-way is never a model that refers to missing data."""
    stored = onnx_files(source)
    for location in stored.locations:
        destination = target.parent / location
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(destination, error) from None
        _place(source.parent / location, destination)
    _place(source, target)


def _entropy_cache_text(plan: BuildPlan) -> str:
    """A TensorRT calibration cache of entropy-calibrated scales for ``plan.build_onnx``, computed here.

    trtexec's ``--calib`` only reads a cache; given a missing file it calibrates on random data without an
    error (its RndInt8Calibrator, samples/common/sampleEngines.cpp). TensorRT's own entropy calibrator needs
    TensorRT and a GPU, so the script gets the scales of edgecnn's entropy calibration (ONNX Runtime's
    histogram calibrator, :mod:`edgecnn.calibration.ranges`) on the same data, in the same cache format.
    """
    import numpy as np

    preprocessing = resolve_preprocessing(plan.build_onnx, plan.shape_for(1), plan.preprocessing, plan.calibration)
    calibration = load_calibration(plan.calibration, preprocessing=preprocessing, samples=plan.calibration_samples)
    static = all(isinstance(d, int) for d in plan.input_shape)
    batch = int(plan.input_shape[0]) if static else 1
    ranges = compute_ranges(plan.build_onnx, calibration, method="entropy", batch_size=batch, static_batch=static)
    amax = {
        name: max(abs(float(np.asarray(low).reshape(-1)[0])), abs(float(np.asarray(high).reshape(-1)[0])))
        for name, (low, high) in ((name, data.range_value) for name, data in ranges.data.items())
    }
    return calibration_cache_text({name: value for name, value in amax.items() if value > 0}, plan.tensorrt)


def write_trtexec_script(plan: BuildPlan, directory: str | Path | None = None) -> Path:
    """Write ``<engine stem>.trtexec.sh`` and every file it reads into ``directory`` (default: the engine's folder).

    The folder is self-contained: the ONNX is copied in with its external data files (for DLA INT8 from Q/DQ,
    the float ONNX is written instead), and so is the calibration cache ``--calib`` names: for DLA INT8 the
    Q/DQ scales, for ``--calib`` the cache TensorRT wrote on an earlier build when there is one, else one
    computed here. The script runs under bash with ``set -euo pipefail`` from its own folder, so a failed
    build stops it.
    """
    base = Path(directory) if directory is not None else plan.engine_path.parent
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(base, error) from None
    names = _artifact_names(plan)
    inputs = _inputs(plan)
    if plan.int8_source == "qdq-ranges":
        converted, ranges = qdq_to_ranges(onnx.load(str(plan.build_onnx)))
        write_bytes_atomic(base / names["float_onnx"], converted.SerializeToString())
        write_bytes_atomic(base / names["calib"], calibration_cache_text(ranges, plan.tensorrt).encode())
    else:
        _place_onnx(plan.build_onnx, base / inputs["onnx"])
    if plan.int8_source == "entropy-calibrator" and "calib" in inputs:
        if plan.calibration_cache is not None and plan.calibration_cache.is_file():
            _place(plan.calibration_cache, base / inputs["calib"])
        else:
            write_bytes_atomic(base / inputs["calib"], _entropy_cache_text(plan).encode())
    if plan.timing_cache.is_file():
        _place(plan.timing_cache, base / plan.timing_cache.name)
    commands = trtexec_commands(plan, base)
    lines = [
        "#!/usr/bin/env bash",
        f"# {plan.model} on {plan.device} with "
        + (f"JetPack {plan.jetpack} (TensorRT {plan.tensorrt})" if plan.jetpack else f"TensorRT {plan.tensorrt}")
        + ": written by edgecnn compile --emit-trtexec.",
        "# Copy this folder to the device and run it there "
        "(JetPack: export PATH=$PATH:/usr/src/tensorrt/bin); bring the",
        f"# *.json files and {names['log']} back and run: edgecnn profile {plan.model} --import-trtexec DIR",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
    ]
    for note in plan.notes:
        lines.append(f"# note: {note}")
    if plan.int8_source == "qdq-ranges":
        lines.append(
            f"# DLA takes INT8 through implicit quantization: {names['float_onnx']} is the Q/DQ model without Q/DQ, "
            f"and {names['calib']} carries its Q/DQ scales as a TensorRT calibration cache."
        )
    elif plan.int8_source == "entropy-calibrator" and "calib" in inputs:
        lines.append(
            f"# {inputs['calib']}: the INT8 scales trtexec reads with --calib "
            "(without the file it would calibrate on random data)."
        )
    build, profile = commands
    lines += [
        f"# {build.purpose}",
        f"{build.line} 2>&1 | tee {names['build_log']}",
        f"# {profile.purpose}",
        f"{profile.line} 2>&1 | tee {names['log']}",
    ]
    path = base / f"{plan.engine_path.name.removesuffix('.engine')}.trtexec.sh"
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode(), mode=0o777)
    return path
