"""INT8 of third-party-style models: size, output SQNR, calibration peak RSS and time, per corpus model.

The corpus is tests/corpus.py (11 models, opsets 7-21, weights as Constant nodes and constant subgraphs,
dynamic shapes, segmentation, detector, CTC, two inputs). Each model and target is quantized in a child
process doing what ``edgecnn quantize FILE --input-shape ... --opset-upgrade`` does (import, calibrate,
quantize, check); the child's peak RSS is its own ``ru_maxrss`` (``resource.getrusage`` of that child,
from ``os.wait4``) and the child reports its calibration time, the estimate of
:mod:`edgecnn.calibration.memory` and the INT8/FP32 size ratio and worst-output SQNR on held-out samples.
Image models calibrate on the built-in photos, the two-input model on synthetic inputs.

    .venv/bin/python bench/outside_models.py                      # every corpus model, both targets
    .venv/bin/python bench/outside_models.py --models crnn_ctc_opset17 --targets cpu

Writes bench/results/outside_models.json and bench/results/outside_models.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
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
    write_results,
)

RESULT_STEM = "outside_models"
TARGETS = ("cpu", "tensorrt")
SAMPLES = 100
ROOT = Path(__file__).resolve().parent.parent


def child(name: str, target: str, samples: int, result: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import BUILDERS

    from edgecnn.calibration import quantize_onnx

    with tempfile.TemporaryDirectory(prefix="edgecnn-outside-") as scratch:
        path, info = BUILDERS[name](Path(scratch))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            done = quantize_onnx(
                path,
                Path(scratch) / "int8.onnx",
                calibration="synthetic" if len(info.inputs) > 1 else "builtin",
                samples=samples,
                target=target,
                input_shapes=info.input_shapes,
                opset_upgrade=True,
                cache=None,
            )
    payload = {
        "model": name,
        "target": target,
        "opset": info.opset,
        "parameters": info.parameters,
        "size_ratio": round(done.size_ratio, 4),
        "output_sqnr_db": done.check["output_sqnr_db"],
        "outputs_sqnr_db": {k: v["sqnr_db"] for k, v in done.check["outputs"].items()},
        "int8_weights": done.graph["quantized_weights"],
        "float_weights": done.graph["float_weights"],
        "calibration_s": round(done.calibration_seconds, 2),
        "quantize_s": round(done.quantize_seconds, 2),
        "estimated_peak_mb": done.plan.summary()["estimated_peak_mb"] if done.plan is not None else None,
        "calibration_samples": done.calibration["samples"],
        "held_out": done.calibration["held_out_for_check"],
    }
    Path(result).write_text(json.dumps(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "TARGET", "SAMPLES"))
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.result)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import BUILDERS

    machine = machine_description()
    rows: list[dict[str, Any]] = []
    for name in args.models or list(BUILDERS):
        for target in args.targets:
            run = run_child(python_child(__file__, "--child", name, target, str(args.samples)), timeout_s=900)
            row = dict(run.payload or {"model": name, "target": target, "error": run.failure})
            row["peak_rss_mb"] = mib(run.peak_rss_bytes)
            row["child_wall_s"] = round(run.seconds, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    columns = [
        "model",
        "target",
        "opset",
        "parameters",
        "size_ratio",
        "output_sqnr_db",
        "int8_weights",
        "float_weights",
        "calibration_s",
        "peak_rss_mb",
        "estimated_peak_mb",
    ]
    table = markdown_table(
        rows,
        columns,
        headers={
            "size_ratio": "INT8/FP32 size",
            "output_sqnr_db": "SQNR dB (worst output)",
            "int8_weights": "INT8 weights",
            "float_weights": "float weights",
            "calibration_s": "calibration s",
            "peak_rss_mb": "peak RSS MiB",
            "estimated_peak_mb": "estimated MiB",
        },
    )
    markdown = "\n".join(
        [
            "# INT8 of third-party-style models (tests/corpus.py)",
            "",
            f"`bench/outside_models.py`, {args.samples} calibration samples per model (a quarter, at most 16, "
            "held out for the SQNR check), percentile 99.999, per-channel weights (opsets below 13 upgraded by "
            "the import step). One child process per model and target; peak RSS is that child's own "
            "`ru_maxrss` (import, calibration, quantization and check together); 'estimated' is the calibration "
            "memory plan's estimate (edgecnn/calibration/memory.py). SQNR: the worst output, FP32 against INT8 "
            "in ONNX Runtime's CPU kernels, on held-out samples. The models have seeded random weights.",
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(machine),
            table,
            "",
        ]
    )
    write_results(RESULT_STEM, {"machine": machine, "samples": args.samples, "rows": rows}, markdown)
    print(markdown)
    print(f"wrote {RESULTS_DIR / (RESULT_STEM + '.md')}")


if __name__ == "__main__":
    main()
