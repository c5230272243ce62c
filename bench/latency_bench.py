"""Inference latency of eight classic networks: edgecnn's artifact and runner against what a user would pick instead.

Candidates, per network and batch size (1 and 8), all in this one process and timed in alternating
rounds in a shuffled order (:func:`edgecnn.benchmark.measure_alternating`), so that load from other work
on the machine falls on all of them alike and the ratios hold:

- ``pytorch eager``: the zoo module in ``torch.inference_mode()``;
- ``torch.compile``: the same module through ``torch.compile(dynamic=False)`` (inductor), compiled per
  batch size before timing (its compile time is reported);
- ``ort default``: ``onnxruntime.InferenceSession`` on edgecnn's FP32 ONNX with every option at its default;
- ``edgecnn``: the same ONNX through edgecnn's runner (:func:`edgecnn.runtime.create_session` with the
  measured settings, :func:`edgecnn.runtime.run_session`);
- ``openvino``: OpenVINO on the same ONNX, reshaped to the static batch, compiled for CPU with its
  defaults but for the inference precision, held at f32 (on CPUs with AVX512_BF16 or AMX, OpenVINO's
  default runs float graphs in bfloat16, which is not an FP32 comparison), when OpenVINO is installed (an
  optional extra: ``pip install -e '.[bench]'``);
- ``edgecnn int8``: edgecnn's INT8 artifact for CPUs (``onnx-int8-cpu``) through edgecnn's runner.

Each network is randomly initialized (seed 0, latency does not depend on the values) at its default
input size. Also reported: the share of the host's measured peak FP32 GFLOP/s (``edgecnn.devices.
measure_host``, a GEMM) each candidate reaches, FLOPs from edgecnn's cost model (2 x MACs), and the INT8
artifact's size and latency against FP32.

Goals (issue 7): at batch 1, edgecnn within 5% of the fastest FP32 candidate and faster than PyTorch
eager on each network; INT8 (cpu) at most 27% of the FP32 size and at most 10% slower than FP32.

    .venv/bin/python bench/latency_bench.py
    .venv/bin/python bench/latency_bench.py --models mobilenet_v2 resnet18 --batches 1 --no-compile

Writes bench/results/latency.json and bench/results/latency.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _util import SHARED_MACHINE_NOTE, describe_machine_markdown, machine_description, markdown_table, write_results

RESULT_STEM = "latency"
MODELS = (
    "squeezenet1_1",
    "mobilenet_v1",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "resnet18",
    "resnet50",
    "googlenet",
    "vgg16",
)
BATCHES = (1, 8)
EAGER, COMPILED, ORT_DEFAULT, EDGECNN, OPENVINO, INT8 = (
    "pytorch eager",
    "torch.compile",
    "ort default",
    "edgecnn",
    "openvino",
    "edgecnn int8",
)
FP32_CANDIDATES = (EAGER, COMPILED, ORT_DEFAULT, EDGECNN, OPENVINO)
WITHIN_FASTEST = 1.05
INT8_MAX_SIZE_RATIO = 0.27
INT8_MAX_SLOWDOWN = 1.10
CALIBRATION_SAMPLES = 32
"""Latency and size do not depend on calibration quality: a small builtin sample keeps the bench short."""


OPENVINO_PRECISION_KEY = "INFERENCE_PRECISION_HINT"
"""OpenVINO's CPU plugin property for the precision it computes float graphs in."""


def openvino_missing_reason() -> str:
    if importlib.util.find_spec("openvino") is None:
        return "OpenVINO is not installed (optional: .venv/bin/pip install -e '.[bench]')"
    return ""


def build_candidates(
    onnx_path: Path, int8_path: Path | None, inputs, module, compiled, skipped: dict[str, str]
) -> tuple[dict[str, Callable[[], Any]], dict[str, float]]:
    """The zero-argument callables to time on ``inputs``, and setup seconds (compiling) where they matter."""
    import onnxruntime as ort
    import torch

    from edgecnn.runtime import create_session, run_session

    tensor = torch.from_numpy(inputs)
    candidates: dict[str, Callable[[], Any]] = {}
    setup_s: dict[str, float] = {}

    def eager():
        with torch.inference_mode():
            return module(tensor)

    candidates[EAGER] = eager
    if compiled is not None:

        def run_compiled():
            with torch.inference_mode():
                return compiled(tensor)

        started = time.perf_counter()
        try:
            run_compiled()
            candidates[COMPILED] = run_compiled
        except Exception as error:  # inductor failing on a model is a result to record
            skipped[COMPILED] = (
                f"torch.compile failed: {type(error).__name__}: "
                f"{str(error).splitlines()[0][:200] if str(error) else ''}"
            )
        setup_s[COMPILED] = time.perf_counter() - started

    options = ort.SessionOptions()
    options.log_severity_level = 3
    default = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {default.get_inputs()[0].name: inputs}
    candidates[ORT_DEFAULT] = lambda: default.run(None, feed)

    session = create_session(onnx_path)
    candidates[EDGECNN] = lambda: run_session(session, inputs)

    if not openvino_missing_reason():
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(onnx_path))
        model.reshape({model.inputs[0].get_any_name(): list(inputs.shape)})
        started = time.perf_counter()
        compiled_ov = core.compile_model(model, "CPU", {OPENVINO_PRECISION_KEY: "f32"})
        setup_s[OPENVINO] = time.perf_counter() - started
        request = compiled_ov.create_infer_request()
        candidates[OPENVINO] = lambda: request.infer({0: inputs})

    if int8_path is not None:
        from edgecnn.calibration import cpu_session_optimization

        int8_session = create_session(int8_path, optimization=cpu_session_optimization("onnx-int8-cpu"))
        candidates[INT8] = lambda: run_session(int8_session, inputs)
    return candidates, setup_s


def first_calls(candidates: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Call each candidate once (its warm-up): its max |output - eager| / max |eager| and its wall seconds.

    The error check keeps a wrong runner from winning on speed; the times size the timing rounds.
    """
    import numpy as np

    def logits(value) -> np.ndarray:
        if hasattr(value, "numpy"):
            return value.float().numpy()
        if isinstance(value, (list, tuple)):
            value = value[0]
        if hasattr(value, "to_dict"):
            value = next(iter(value.to_dict().values()))
        return np.asarray(value, dtype=np.float32)

    outputs, seconds = {}, {}
    for key, run in candidates.items():
        started = time.perf_counter()
        outputs[key] = logits(run())
        seconds[key] = time.perf_counter() - started
    reference = outputs[EAGER]
    scale = float(np.abs(reference).max()) or 1.0
    errors = {
        key: float(np.abs(out - reference).max()) / scale for key, out in outputs.items() if key not in (EAGER, INT8)
    }
    return errors, seconds


def timing_plan(
    seconds: dict[str, float], budget_s: float, min_rounds: int = 3, max_rounds: int = 7
) -> tuple[int, float]:
    """Rounds, and seconds per candidate per round, that fit ``budget_s`` given one call's time of each candidate.

    Fast candidates then get many runs per round and slow ones one, so every candidate has enough samples
    for its percentiles without the slowest setting the pace; at least ``min_rounds`` rounds always run.
    """
    per_round = sum(seconds.values())
    rounds = max(min_rounds, min(max_rounds, int(budget_s / max(per_round, 1e-3))))
    return rounds, budget_s / (rounds * len(seconds))


def measure_model(
    name: str, export_dir: Path, batches: tuple[int, ...], use_compile: bool, budget_s: float, peak_gflops: float
) -> dict[str, Any]:
    import onnx
    import torch

    from edgecnn import get_model
    from edgecnn.benchmark import measure_alternating, prepare_artifacts
    from edgecnn.export.verify import check_inputs
    from edgecnn.profile.cost import analyze
    from edgecnn.registry import get_spec

    spec = get_spec(name)
    started = time.perf_counter()
    artifacts = prepare_artifacts(
        name,
        ["onnx-fp32", "onnx-int8-cpu"],
        export_dir=export_dir,
        batches=batches,
        quantize_options={"samples": CALIBRATION_SAMPLES},
    )
    prepare_s = time.perf_counter() - started
    if "onnx-fp32" not in artifacts.files:
        return {
            "model": name,
            "status": "failed",
            "reason": artifacts.failures.get("onnx-fp32", "export failed"),
            "rows": [],
        }
    onnx_path = artifacts.files["onnx-fp32"]
    int8_path = artifacts.files.get("onnx-int8-cpu")
    graph = onnx.load(str(onnx_path))
    module = get_model(name).eval()
    compiled = torch.compile(module, dynamic=False) if use_compile else None
    record: dict[str, Any] = {
        "model": name,
        "status": "ok",
        "input_size": list(spec.input_size),
        "prepare_s": prepare_s,
        "fp32_bytes": onnx_path.stat().st_size,
        "int8_bytes": int8_path.stat().st_size if int8_path else None,
        "int8_failure": artifacts.failures.get("onnx-int8-cpu"),
        "rows": [],
        "skipped": {},
    }
    if not use_compile:
        record["skipped"][COMPILED] = "left out with --no-compile"
    if openvino_missing_reason():
        record["skipped"][OPENVINO] = openvino_missing_reason()
    for batch in batches:
        inputs = check_inputs((batch, spec.in_chans, *spec.input_size), seed=batch)
        candidates, setup_s = build_candidates(onnx_path, int8_path, inputs, module, compiled, record["skipped"])
        errors, first_s = first_calls(candidates)
        rounds, round_seconds = timing_plan(first_s, budget_s)
        latencies = measure_alternating(candidates, warmup=0, rounds=rounds, round_seconds=round_seconds)
        flops = analyze(graph, batch=batch).flops
        eager_ms = latencies[EAGER].p50_ms
        fastest_fp32 = min(latencies[k].p50_ms for k in FP32_CANDIDATES if k in latencies)
        for key, latency in latencies.items():
            gflops = flops / (latency.p50_ms / 1000) / 1e9
            record["rows"].append(
                {
                    "model": name,
                    "batch": batch,
                    "candidate": key,
                    "p50_ms": latency.p50_ms,
                    "p90_ms": latency.p90_ms,
                    "runs": latency.runs,
                    "rounds": rounds,
                    "vs_fastest_fp32": latency.p50_ms / fastest_fp32,
                    "speedup_vs_eager": eager_ms / latency.p50_ms,
                    "gflops": gflops,
                    "peak_share": gflops / peak_gflops,
                    "setup_s": setup_s.get(key),
                    "max_rel_error_vs_eager": errors.get(key),
                }
            )
        summary = ", ".join(f"{k} {latencies[k].p50_ms:.1f}" for k in latencies)
        print(f"{name} batch {batch} ({rounds} rounds): {summary} ms", flush=True)
        del candidates
        gc.collect()
    record["wall_s"] = time.perf_counter() - started
    return record


def goals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per network, the issue's goals at batch 1 and the INT8 ratios at every batch."""
    rows = []
    for record in records:
        by = {(r["batch"], r["candidate"]): r for r in record["rows"]}
        if (1, EDGECNN) not in by:
            rows.append({"model": record["model"], "verdict": f"not measured: {record.get('reason', '')}"})
            continue
        edgecnn = by[(1, EDGECNN)]
        others = {k: by[(1, k)]["p50_ms"] for k in FP32_CANDIDATES if k != EDGECNN and (1, k) in by}
        fastest_other = min(others, key=others.get)
        row = {
            "model": record["model"],
            "edgecnn_ms": edgecnn["p50_ms"],
            "fastest_other": fastest_other,
            "fastest_other_ms": others[fastest_other],
            "edgecnn_vs_fastest": edgecnn["p50_ms"] / min(min(others.values()), edgecnn["p50_ms"]),
            "edgecnn_vs_eager": edgecnn["p50_ms"] / by[(1, EAGER)]["p50_ms"],
            "int8_size_ratio": record["int8_bytes"] / record["fp32_bytes"] if record["int8_bytes"] else None,
        }
        for batch in sorted({b for b, _ in by}):
            if (batch, INT8) in by:
                row[f"int8_latency_ratio_b{batch}"] = by[(batch, INT8)]["p50_ms"] / by[(batch, EDGECNN)]["p50_ms"]
        row["within_5pct"] = "yes" if row["edgecnn_vs_fastest"] <= WITHIN_FASTEST else "no"
        row["beats_eager"] = "yes" if row["edgecnn_vs_eager"] < 1 else "no"
        int8_ok = row["int8_size_ratio"] is not None and row["int8_size_ratio"] <= INT8_MAX_SIZE_RATIO
        int8_ok = int8_ok and row.get("int8_latency_ratio_b1", float("inf")) <= INT8_MAX_SLOWDOWN
        row["int8_goals"] = "yes" if int8_ok else "no"
        rows.append(row)
    return rows


def _markdown(payload: dict[str, Any]) -> str:
    rows = [r for record in payload["records"] for r in record["rows"]]
    skipped = {
        (record["model"], key): reason
        for record in payload["records"]
        for key, reason in record.get("skipped", {}).items()
    }
    goal_rows = payload["goals"]
    met = [g for g in goal_rows if "verdict" not in g]
    lines = [
        "# Inference latency: edgecnn against the alternatives",
        "",
        f"Batch {', '.join(map(str, payload['batches']))}; each network at its default input size, "
        "randomly initialized. p50 over alternating rounds (all candidates of a network and batch in turn, in a new "
        "random order each round). "
        f"Share of peak = FLOPs (2 x MACs, edgecnn's cost model) / p50 / the host's measured peak of "
        f"{payload['peak_gflops']:.1f} GFLOP/s ({payload['peak_source']}). INT8 artifacts calibrated on "
        f"{CALIBRATION_SAMPLES} builtin images. max rel err = max |candidate - eager| / max |eager| on the "
        "timed input.",
        "",
        SHARED_MACHINE_NOTE,
        "",
        describe_machine_markdown(payload["machine"]),
        markdown_table(
            goal_rows,
            [
                "model",
                "edgecnn_ms",
                "fastest_other",
                "fastest_other_ms",
                "edgecnn_vs_fastest",
                "within_5pct",
                "edgecnn_vs_eager",
                "beats_eager",
                "int8_size_ratio",
                *[f"int8_latency_ratio_b{b}" for b in payload["batches"]],
                "int8_goals",
            ],
            headers={
                "edgecnn_ms": "edgecnn ms",
                "fastest_other": "fastest other",
                "fastest_other_ms": "its ms",
                "edgecnn_vs_fastest": "edgecnn / fastest",
                "within_5pct": "within 5%",
                "edgecnn_vs_eager": "edgecnn / eager",
                "beats_eager": "< eager",
                "int8_size_ratio": "INT8 size / FP32",
                **{f"int8_latency_ratio_b{b}": f"INT8 / FP32 time b{b}" for b in payload["batches"]},
                "int8_goals": "INT8 goals",
            },
            title="Goals at batch 1 (INT8 time ratios at every batch)",
        ),
        "Goals met: "
        + (
            f"within 5% of the fastest {sum(g['within_5pct'] == 'yes' for g in met)}/{len(met)}, "
            f"faster than eager {sum(g['beats_eager'] == 'yes' for g in met)}/{len(met)}, "
            f"INT8 size and time {sum(g['int8_goals'] == 'yes' for g in met)}/{len(met)}"
            + (
                f"; geometric mean edgecnn / fastest "
                f"{statistics.geometric_mean([g['edgecnn_vs_fastest'] for g in met]):.3f}, "
                f"edgecnn / eager {statistics.geometric_mean([g['edgecnn_vs_eager'] for g in met]):.3f}"
                if met
                else ""
            )
        ),
        "",
        markdown_table(
            rows,
            [
                "model",
                "batch",
                "candidate",
                "p50_ms",
                "p90_ms",
                "runs",
                "vs_fastest_fp32",
                "speedup_vs_eager",
                "gflops",
                "peak_share",
                "setup_s",
                "max_rel_error_vs_eager",
            ],
            headers={
                "p50_ms": "p50 ms",
                "p90_ms": "p90 ms",
                "vs_fastest_fp32": "/ fastest FP32",
                "speedup_vs_eager": "x eager",
                "gflops": "GFLOP/s",
                "peak_share": "share of peak",
                "setup_s": "compile s",
                "max_rel_error_vs_eager": "max rel err",
            },
            title="Every candidate",
        ),
        "**Not measured**",
        "",
        *([f"- {model} / {key}: {reason}" for (model, key), reason in skipped.items()] or ["none"]),
        *[f"- {g['model']}: {g['verdict']}" for g in goal_rows if "verdict" in g],
        "",
        f"Wall time: {payload['wall_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument(
        "--no-compile", action="store_true", help="leave torch.compile out (its first compile takes minutes)"
    )
    parser.add_argument(
        "--budget", type=float, default=12.0, help="seconds of timing per network and batch (at least 3 rounds)"
    )
    parser.add_argument("--export-dir", type=Path, help="reuse exports here (default: a temporary directory)")
    args = parser.parse_args(argv)

    import torch

    from edgecnn.devices import measure_host
    from edgecnn.runtime import session_settings

    machine = machine_description()
    started = time.perf_counter()
    host = measure_host()
    peak = host.peak_gflops["fp32"]
    print(
        f"host peak {peak:.1f} GFLOP/s; torch threads {torch.get_num_threads()}; "
        f"{openvino_missing_reason() or 'OpenVINO present'}",
        flush=True,
    )
    records = []
    payload: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-latency-") as scratch:
        for name in args.models:
            records.append(
                measure_model(
                    name, args.export_dir or Path(scratch), tuple(args.batches), not args.no_compile, args.budget, peak
                )
            )
            gc.collect()
            machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
            payload = {
                "machine": machine,
                "note": SHARED_MACHINE_NOTE,
                "batches": list(args.batches),
                "peak_gflops": peak,
                "peak_source": host.sources["peak_gflops.fp32"],
                "session_settings": session_settings(),
                "openvino": openvino_missing_reason() or _version("openvino"),
                "openvino_settings": {OPENVINO_PRECISION_KEY: "f32"},
                "records": records,
                "goals": goals(records),
                "wall_s": time.perf_counter() - started,
            }
            write_results(RESULT_STEM, payload, _markdown(payload))
    for row in payload["goals"]:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    print(f"{payload['wall_s']:.0f} s")
    return 0


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


if __name__ == "__main__":
    sys.exit(main())
