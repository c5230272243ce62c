"""INT8 calibration cost, INT8 size and INT8 latency on this CPU, for MobileNet v2 and ResNet-50 at 224x224.

1. Calibration time and peak RSS against the number of samples (50, 200, 500; percentile, the default
   method), and per method at 200 samples. Each run is one child process doing what
   ``edgecnn quantize DIR --calib builtin --calib-samples N`` does (load and preprocess the built-in set,
   run the model over it chunk by chunk, quantize, check); its peak RSS is the child's own ``ru_maxrss``
   (from ``os.wait4``). Goal (issue 4): ResNet-50 on 500 images stays under 4 GB.
2. INT8 file size against FP32, per target (goal: at most 27%).
3. Batch-1 latency on this CPU, 2 threads, FP32 against the INT8 forms a CPU could run: U8 activations
   with S8 weights in an 8-bit and a 7-bit range (the ``cpu`` preset keeps whichever runs closer to
   FP32 on this host, marked), and the ``tensorrt`` form (S8S8 symmetric) at the optimization level that
   computes it correctly (``basic``) and at ``all`` (which drops Clip/ReLU before symmetric Q, see
   edgecnn/calibration/quantize.py). Each form's output SQNR
   against FP32 on 16 built-in samples says whether its speed comes with correct outputs. Candidates are
   alternated in rounds so that other work on the machine hits them alike.

    .venv/bin/python bench/calibration_bench.py                 # everything (about half an hour here)
    .venv/bin/python bench/calibration_bench.py --models mobilenet_v2 --samples 50 200

Writes bench/results/calibration.json and bench/results/calibration.md. The models have seeded random
weights (no ImageNet weights offline): costs and sizes do not depend on the weights; the SQNR column is
a sanity check of each form, not an accuracy figure (edgecnn eval on labelled data gives those).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import (
    RESULTS_DIR,
    SHARED_MACHINE_NOTE,
    describe_machine_markdown,
    machine_description,
    markdown_table,
    mib,
    python_child,
    run_child,
    self_peak_rss_bytes,
    write_results,
)

RESULT_STEM = "calibration"
MODELS = ("mobilenet_v2", "resnet50")
SAMPLE_COUNTS = (50, 200, 500)
METHODS_AT = 200
RSS_GOAL_BYTES = 4 * 10**9
SIZE_GOAL = 0.27
LATENCY_THREADS = 2
LATENCY_ROUNDS = 5
LATENCY_RUNS = 10


def child_calibrate(fp32: str, samples: int, method: str, target: str, output: str) -> dict[str, Any]:
    """In the child: load the built-in set and quantize, as ``edgecnn quantize`` does."""
    from edgecnn.calibration import load_calibration, quantize_onnx
    from edgecnn.calibration.quantize import _manifest_preprocessing

    started = time.perf_counter()
    calibration = load_calibration("builtin", preprocessing=_manifest_preprocessing(Path(fp32)), samples=samples)
    load_s = time.perf_counter() - started
    cpu_started = time.process_time()
    result = quantize_onnx(fp32, output, calibration=calibration, method=method, target=target, cache=None)
    return {
        "samples": len(calibration),
        "method": method,
        "load_s": load_s,
        "calibration_s": result.calibration_seconds,
        "quantize_s": result.quantize_seconds,
        "total_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "int8_bytes": result.quantized_bytes,
        "fp32_bytes": result.fp32_bytes,
        "output_sqnr_db": result.check["output_sqnr_db"],
        "peak_rss_bytes_self": self_peak_rss_bytes(),
    }


def export_fp32(name: str, directory: Path) -> Path:
    from edgecnn.export import export_model

    return export_model(name, output_dir=directory, check_samples=2).files["onnx-fp32"]


def calibration_runs(name: str, fp32: Path, counts: list[int], scratch: Path, timeout_s: float) -> list[dict[str, Any]]:
    plan = [(count, "percentile") for count in counts]
    plan += [(METHODS_AT, method) for method in ("minmax", "entropy") if METHODS_AT in counts]
    rows = []
    for count, method in plan:
        output = scratch / f"{name}.{method}.{count}.onnx"
        child = run_child(
            python_child(
                __file__, "--child", str(fp32), "--samples", str(count), "--method", method, "--output", str(output)
            ),
            timeout_s,
        )
        row = {"model": name, "samples": count, "method": method, **(child.payload or {"error": child.failure})}
        row.update(child_s=child.seconds, child_cpu_s=child.cpu_s, peak_rss_bytes=child.peak_rss_bytes)
        rows.append(row)
        print(
            f"{name:14s} {method:10s} {count:4d} samples  calibration {row.get('calibration_s', float('nan')):7.1f} s  "
            f"child {child.seconds:7.1f} s  peak {mib(child.peak_rss_bytes):7.0f} MiB {row.get('error', '')}",
            flush=True,
        )
    return rows


def _timed(session, feed) -> float:
    started = time.perf_counter()
    for _ in range(LATENCY_RUNS):
        session.run(None, feed)
    return (time.perf_counter() - started) / LATENCY_RUNS * 1e3


def forms(name: str, fp32: Path, scratch: Path) -> list[dict[str, Any]]:
    """Size, latency and output SQNR of FP32 and each INT8 form, candidates alternated round by round."""
    import numpy as np
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    from edgecnn.calibration import load_calibration, quantize_onnx
    from edgecnn.calibration.cache import write_ort_cache
    from edgecnn.calibration.quantize import _manifest_preprocessing
    from edgecnn.calibration.ranges import compute_ranges, quiet_ort
    from edgecnn.runtime import create_session

    calibration = load_calibration("builtin", preprocessing=_manifest_preprocessing(fp32), samples=64)
    cache = scratch / f"{name}.ranges.json"
    results = {
        target: quantize_onnx(
            fp32, scratch / f"{name}.int8-{target}.onnx", calibration=calibration, target=target, cache=cache
        )
        for target in ("cpu", "tensorrt")
    }
    ranges = compute_ranges(fp32, calibration, method="percentile")
    write_ort_cache(ranges, scratch / "ort-ranges.json")
    files = {}
    for bits in (8, 7):
        files[bits] = scratch / f"{name}.u8s8-{bits}bit.onnx"
        with quiet_ort():
            quantize_static(
                str(fp32),
                str(files[bits]),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=bits == 7,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ranges.calibration_method,
                calibration_cache_path=str(scratch / "ort-ranges.json"),
            )
    chosen = results["cpu"].weight_bits
    candidates = [
        ("fp32", fp32, "all"),
        (f"int8 U8S8, 8-bit weights{' (cpu preset)' if chosen == 8 else ''}", files[8], "all"),
        (f"int8 U8S8, 7-bit weights{' (cpu preset)' if chosen == 7 else ''}", files[7], "all"),
        ("int8 tensorrt form (S8S8), basic", results["tensorrt"].path, "basic"),
        ("int8 tensorrt form (S8S8), all", results["tensorrt"].path, "all"),
    ]
    inputs = calibration.batch(range(16))
    sessions = [create_session(path, threads=LATENCY_THREADS, optimization=level) for _, path, level in candidates]
    name_in = sessions[0].get_inputs()[0].name
    outputs = [
        np.concatenate([s.run(None, {name_in: inputs[i : i + 1]})[0] for i in range(len(inputs))]) for s in sessions
    ]
    feed = {name_in: inputs[:1]}
    for session in sessions:
        _timed(session, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(LATENCY_ROUNDS):
        for index, session in enumerate(sessions):
            times[index].append(_timed(session, feed))
    rows = []
    for (label, path, level), output, measured in zip(candidates, outputs, times):
        rows.append(
            {
                "model": name,
                "form": label,
                "optimization": level,
                "size_mb": path.stat().st_size / 1e6,
                "size_vs_fp32": path.stat().st_size / fp32.stat().st_size,
                "latency_ms": statistics.median(measured),
                "latency_min_ms": min(measured),
                "output_sqnr_db": None
                if path == fp32
                else round(float(compute_signal_to_quantization_noice_ratio(outputs[0], output)), 1),
                "top1_agreement": float((outputs[0].argmax(1) == output.argmax(1)).mean()),
            }
        )
        print(
            f"{name:14s} {label:40s} {rows[-1]['latency_ms']:7.2f} ms  {rows[-1]['size_vs_fp32']:.3f} x  "
            f"SQNR {rows[-1]['output_sqnr_db']}",
            flush=True,
        )
    for row in rows:
        row["speedup_vs_fp32"] = rows[0]["latency_ms"] / row["latency_ms"]
    return rows


def _markdown(payload: dict[str, Any]) -> str:
    calibration_rows = [
        {
            "model": r["model"],
            "method": r["method"],
            "samples": r["samples"],
            "load_s": r.get("load_s"),
            "calibration_s": r.get("calibration_s"),
            "total_s": r.get("total_s"),
            "cpu_s": r.get("cpu_s"),
            "peak_mib": mib(r["peak_rss_bytes"]),
            "goal": "met" if r["peak_rss_bytes"] < RSS_GOAL_BYTES else "MISSED",
        }
        for r in payload["calibration"]
    ]
    form_rows = payload["forms"]
    return "\n".join(
        [
            "# INT8: calibration cost, size and CPU latency",
            "",
            "Models at 224x224 with seeded random weights, the built-in calibration set (real photographs).",
            "",
            "## Calibration time and peak RSS",
            "",
            "One child process per row doing what `edgecnn quantize DIR --calib builtin --calib-samples N` does: "
            "`load` decodes and preprocesses the images, `calibration` runs the model over them and computes the "
            "ranges (ONNX Runtime's calibrators, fed chunk by chunk), `total` adds quantizing and the FP32/INT8 check. "
            f"Peak RSS is the child's `ru_maxrss`; goal: under {RSS_GOAL_BYTES / 1e9:.0f} GB for ResNet-50 on "
            "500 images.",
            "",
            markdown_table(
                calibration_rows,
                ["model", "method", "samples", "load_s", "calibration_s", "total_s", "cpu_s", "peak_mib", "goal"],
                headers={
                    "load_s": "load s",
                    "calibration_s": "calibration s",
                    "total_s": "total s",
                    "cpu_s": "CPU s",
                    "peak_mib": "peak RSS MiB",
                },
            ),
            "",
            "## INT8 forms on this CPU: size, batch-1 latency, output SQNR",
            "",
            f"{LATENCY_THREADS} threads, median of {LATENCY_ROUNDS} rounds of {LATENCY_RUNS} runs, "
            "candidates alternated. SQNR: FP32 against the form's output on 16 built-in samples (higher is closer to "
            "FP32; random weights). The tensorrt form is meant for TensorRT; on ONNX Runtime's CPU EP it is correct "
            "only at optimization `basic`.",
            "",
            markdown_table(
                form_rows,
                [
                    "model",
                    "form",
                    "optimization",
                    "size_mb",
                    "size_vs_fp32",
                    "latency_ms",
                    "speedup_vs_fp32",
                    "output_sqnr_db",
                    "top1_agreement",
                ],
                headers={
                    "size_mb": "MB",
                    "size_vs_fp32": "size vs FP32",
                    "latency_ms": "ms",
                    "speedup_vs_fp32": "speed-up",
                    "output_sqnr_db": "SQNR dB",
                    "top1_agreement": "top-1 agree",
                },
            ),
            "",
            SHARED_MACHINE_NOTE,
            "",
            "## Machine",
            "",
            "Calibration runs:",
            "",
            describe_machine_markdown(payload["calibration_machine"]),
            "INT8 forms:",
            "",
            describe_machine_markdown(payload["forms_machine"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--samples", nargs="+", type=int, default=list(SAMPLE_COUNTS))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per calibration child")
    parser.add_argument(
        "--only", choices=("calibration", "forms"), help="run one part and keep the other part of the existing results"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="percentile", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        record = child_calibrate(args.child, args.samples[0], args.method, "cpu", args.output)
        Path(args.result).write_text(json.dumps(record))
        return
    machine = machine_description()
    calibration, form_rows = [], []
    with tempfile.TemporaryDirectory(prefix="edgecnn-calibration-bench-") as scratch:
        for name in args.models:
            fp32 = export_fp32(name, Path(scratch))
            if args.only != "forms":
                calibration += calibration_runs(name, fp32, args.samples, Path(scratch), args.timeout)
            if args.only != "calibration":
                form_rows += forms(name, fp32, Path(scratch))
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "calibration": calibration,
        "calibration_machine": machine,
        "forms": form_rows,
        "forms_machine": machine,
        "rss_goal_bytes": RSS_GOAL_BYTES,
        "size_goal": SIZE_GOAL,
    }
    previous_path = RESULTS_DIR / f"{RESULT_STEM}.json"
    if args.only and previous_path.is_file():
        previous = json.loads(previous_path.read_text())
        kept = "forms" if args.only == "calibration" else "calibration"
        payload[kept] = previous.get(kept, [])
        payload[f"{kept}_machine"] = previous.get(f"{kept}_machine") or previous.get("machine")
    json_path, markdown_path = write_results(RESULT_STEM, payload, _markdown(payload))
    print(f"wrote {json_path} and {markdown_path}")


if __name__ == "__main__":
    main()
