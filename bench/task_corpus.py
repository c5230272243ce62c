"""INT8 and FP8 that keep the task, on the trained task corpus: the labelled metric FP32 against INT8 cpu, INT8
tensorrt and FP8, the label-free check edgecnn made, the layers the fallback kept in float, size, calibration
time and peak RSS.

The corpus is tests/task_corpus.py with the trained models in tests/data/task_models/ (a YOLOv8-style
detector, a CRNN+CTC recognizer and a U-Net, exported by plain ``torch.onnx.export`` with external data).
Each model and form is quantized in a child process doing what ``edgecnn quantize FILE --calib calib.npz
--input-shape 1xCxHxW [--target T | --precision fp8]`` does (import, calibrate on 200 samples of the
calibration split, hold 16 out, check the task label-free, fall back to float where the budget is missed); the
child's peak RSS is its own ``ru_maxrss``. The parent then scores FP32 and the written file on the labelled
eval split (mAP@0.5, exact match, mIoU) through ONNX Runtime's CPU kernels.

    .venv/bin/python bench/task_corpus.py
    .venv/bin/python bench/task_corpus.py --tasks detection --forms int8-tensorrt

Writes bench/results/task_corpus.json and bench/results/task_corpus.md.
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

RESULT_STEM = "task_corpus"
FORMS = {"int8-cpu": ("int8", "cpu"), "int8-tensorrt": ("int8", "tensorrt"), "fp8": ("fp8", "tensorrt")}
SAMPLES = 200
CHECK_SAMPLES = 16
ROOT = Path(__file__).resolve().parent.parent


def _corpus():
    sys.path.insert(0, str(ROOT / "tests"))
    import task_corpus

    return task_corpus


def child(task: str, form: str, calibration: str, output: str, result: str, fallback: bool) -> None:
    from edgecnn.calibration import quantize_onnx

    corpus = _corpus()
    spec = corpus.TASKS[task]
    precision, target = FORMS[form]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = quantize_onnx(
            corpus.MODELS_DIR / spec.model_file,
            output,
            calibration=calibration,
            samples=SAMPLES,
            check_samples=CHECK_SAMPLES,
            precision=precision,
            target=target,
            input_shapes={spec.input_name: (1, *spec.input_shape)},
            cache=None,
            fallback=fallback,
        )
    check = done.check
    payload = {
        "task": task,
        "form": form,
        "fallback_on": fallback,
        "size_ratio": round(done.size_ratio, 4),
        "label_free": {
            name: {"task": o["task"], "metric": o["metric"], "value": o["value"], "met": o["met"]}
            for name, o in check["fidelity"]["outputs"].items()
        },
        "met": check["met"],
        "output_sqnr_db": check["output_sqnr_db"],
        "worst_channel_sqnr_db": check["worst_channel_sqnr_db"],
        "default_misses": (done.fallback or {}).get("default", {}).get("misses"),
        "kept_float": [row["node"] for row in (done.fallback or {}).get("kept_float", [])],
        "fallback_rounds": len((done.fallback or {}).get("rounds", [])),
        "calibration_s": round(done.calibration_seconds, 2),
        "quantize_s": round(done.quantize_seconds, 2),
    }
    Path(result).write_text(json.dumps(payload))


def labelled_metrics(task: str, path: Path) -> dict[str, float]:
    """The task's labelled metrics of the ONNX file at ``path`` on its eval split."""
    return _corpus().evaluate_onnx(path, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*")
    parser.add_argument("--forms", nargs="*", default=list(FORMS))
    parser.add_argument("--no-fallback-too", action="store_true", help="also quantize each form without fallback")
    parser.add_argument("--child", nargs=5, metavar=("TASK", "FORM", "CALIB", "OUTPUT", "FALLBACK"))
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.child:
        task, form, calibration, output, fallback = args.child
        child(task, form, calibration, output, args.result, fallback == "on")
        return
    corpus = _corpus()
    machine = machine_description()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-task-corpus-") as scratch:
        for task in args.tasks or list(corpus.TASKS):
            spec = corpus.TASKS[task]
            calibration = corpus.write_calibration(task, Path(scratch) / f"{task}.npz", count=SAMPLES + CHECK_SAMPLES)
            fp32 = labelled_metrics(task, corpus.MODELS_DIR / spec.model_file)
            rows.append({"task": task, "form": "fp32", spec.metric: round(fp32[spec.metric], 4)})
            print(json.dumps(rows[-1]), flush=True)
            for form in args.forms:
                for fallback in ("on", "off") if args.no_fallback_too else ("on",):
                    output = Path(scratch) / f"{task}.{form}.{fallback}.onnx"
                    argv = python_child(__file__, "--child", task, form, str(calibration), str(output), fallback)
                    run = run_child(argv, timeout_s=1800)
                    row = dict(run.payload or {"task": task, "form": form, "error": run.failure})
                    if run.payload:
                        metrics = labelled_metrics(task, output)
                        row[spec.metric] = round(metrics[spec.metric], 4)
                        row["drop"] = round(fp32[spec.metric] - metrics[spec.metric], 4)
                    row["peak_rss_mb"] = mib(run.peak_rss_bytes)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    for row in rows:
        label_free = row.get("label_free") or {}
        row["label_free_figure"] = ", ".join(
            f"{o['task']} {o['metric']} {o['value']:.3g}{'' if o['met'] else ' (missed)'}"
            for o in label_free.values()
            if o.get("value") is not None
        )
        row["metric"] = next((row[m] for m in ("map50", "exact_match", "miou") if m in row), None)
        row["float_layers"] = len(row.get("kept_float") or []) if "kept_float" in row else None
    table = markdown_table(
        rows,
        [
            "task",
            "form",
            "fallback_on",
            "metric",
            "drop",
            "label_free_figure",
            "float_layers",
            "fallback_rounds",
            "size_ratio",
            "calibration_s",
            "peak_rss_mb",
        ],
        headers={
            "fallback_on": "fallback",
            "metric": "labelled metric",
            "drop": "drop vs FP32",
            "label_free_figure": "label-free check (16 held-out)",
            "float_layers": "layers in float",
            "fallback_rounds": "rounds",
            "size_ratio": "size / FP32",
            "calibration_s": "calibration s",
            "peak_rss_mb": "peak RSS MiB",
        },
    )
    kept = [f"- {r['task']} {r['form']}: {', '.join(r['kept_float'])}" for r in rows if r.get("kept_float")]
    markdown = "\n".join(
        [
            "# INT8 and FP8 on the trained task corpus (tests/task_corpus.py)",
            "",
            f"`bench/task_corpus.py`: {SAMPLES} calibration samples of each model's own calibration split, "
            f"{CHECK_SAMPLES} held out for edgecnn's label-free check; the labelled metric (detection mAP@0.5, "
            "recognition exact match, segmentation mIoU) on the eval split through ONNX Runtime's CPU kernels "
            "(FP8 Q/DQ is emulated there: its figure is the graph's numerics, not TensorRT's).",
            "",
            table,
            "",
            "Layers kept in float by the fallback:" if kept else "No layer needed keeping in float.",
            *kept,
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(machine),
        ]
    )
    write_results(RESULT_STEM, {"machine": machine, "rows": rows}, markdown)
    print(f"wrote {RESULTS_DIR / (RESULT_STEM + '.md')}")


if __name__ == "__main__":
    main()
