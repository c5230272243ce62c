"""Top-1 of the digits reference models in FP32, FP16, INT8 per calibration method and target, and FP8.

For each reference model (edgecnn.testing.REFERENCE_MODELS: small LeNet-5, MobileNet v1/v2, ShuffleNet
v2, SqueezeNet 1.1, ResNet-18 trained on the digits train split by scripts/train_digits.py): export FP32
and FP16 ONNX, quantize to INT8 for both targets (``cpu``: U8S8; ``tensorrt``: symmetric S8S8) with each
calibration method (minmax, entropy, percentile 99.999) on the 180-image calibration split, and evaluate
FP8 E4M3 Q/DQ for TensorRT (amax/448 scales from minmax calibration, per-channel weights;
``--fp8-methods`` adds others) on the same split, and evaluate
every artifact on the 360-image test split with ``edgecnn.evaluate`` (one image = 0.28 points).
TensorRT-form INT8 and FP8 run through ONNX Runtime's CPU kernels here (the same Q/DQ graph and scales).

ResNet-18's weights are not shipped (22 MB): they are read from ``--weights-dir`` or trained there first
(a few minutes on one core).

    .venv/bin/python bench/accuracy_table.py
    .venv/bin/python bench/accuracy_table.py --models lenet5 mobilenet_v2 --methods percentile

Writes bench/results/accuracy.json and bench/results/accuracy.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import SHARED_MACHINE_NOTE, describe_machine_markdown, machine_description, markdown_table, write_results

RESULT_STEM = "accuracy"
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("cpu", "tensorrt")
FP8_METHODS = ("minmax", "percentile")


def _weights(name: str, weights_dir: Path) -> Path:
    from edgecnn.testing import REFERENCE_MODELS, reference_weights_path, save_state_dict_fp16

    if REFERENCE_MODELS[name].shipped:
        return reference_weights_path(name)
    path = weights_dir / f"{name}.pt"
    if not path.is_file():
        import torch

        spec = importlib.util.spec_from_file_location("train_digits", ROOT / "scripts" / "train_digits.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["train_digits"] = module
        spec.loader.exec_module(module)
        torch.set_num_threads(1)
        model, accuracy, seconds = module.train(name)
        save_state_dict_fp16(model, path)
        print(f"trained {name}: test top-1 {accuracy:.2f}% in {seconds:.0f} s -> {path}")
    return path


def measure(
    name: str,
    methods: tuple[str, ...],
    workdir: Path,
    weights_dir: Path,
    calibration: Path,
    fp8_methods: tuple[str, ...] = FP8_METHODS,
) -> dict[str, Any]:
    from edgecnn.calibration import quantize_onnx
    from edgecnn.evaluate import evaluate
    from edgecnn.export import export_model
    from edgecnn.testing import REFERENCE_MODELS, reference_model

    model = REFERENCE_MODELS[name]
    weights = _weights(name, weights_dir)
    result = export_model(
        name, output_dir=workdir, weights=weights, fp16=True, check_samples=2, **model.export_options()
    )
    directory = result.directory
    quantized, seconds = [], {}
    for method in methods:
        cache = directory / f"ranges-{method}.json"
        for target in TARGETS:
            output = directory / f"{name}.{method}.int8-{target}.onnx"
            started = time.perf_counter()
            done = quantize_onnx(
                directory / f"{name}.onnx",
                output,
                calibration=calibration,
                target=target,
                method=method,
                samples=180,
                cache=cache,
            )
            seconds[(method, target)] = time.perf_counter() - started
            quantized.append((method, target, done))
    fp8 = []
    for method in fp8_methods:
        started = time.perf_counter()
        done = quantize_onnx(
            directory / f"{name}.onnx",
            directory / f"{name}.{method}.fp8-tensorrt.onnx",
            calibration=calibration,
            precision="fp8",
            target="tensorrt",
            method=method,
            samples=180,
            cache=directory / f"ranges-fp8-{method}.json",
        )
        fp8.append((method, done, time.perf_counter() - started))
    paths = [directory] + [done.path for _, _, done in quantized] + [done.path for _, done, _ in fp8]
    report = evaluate(paths, "digits", max_drop=None)
    by_path = {Path(r.artifact).resolve(): r for r in report.results}
    fp32 = by_path[(directory / f"{name}.onnx").resolve()]
    fp16 = by_path[(directory / f"{name}.fp16.onnx").resolve()]
    row: dict[str, Any] = {
        "model": name,
        "config": model.config,
        "parameters": sum(p.numel() for p in reference_model(name, weights).parameters()),
        "fp32_top1": fp32.top1,
        "fp16_top1": fp16.top1,
    }
    details = []
    for method, target, done in quantized:
        accuracy = by_path[done.path.resolve()]
        row[f"{method}_{target}"] = accuracy.top1
        details.append(
            {
                "method": method,
                "target": target,
                "top1": accuracy.top1,
                "top5": accuracy.topk,
                "drop": accuracy.drop,
                "agreement_with_fp32": accuracy.agreement,
                "size_vs_fp32": round(done.size_ratio, 4),
                "cache_hit": done.cache_hit,
                "seconds": round(seconds[(method, target)], 2),
            }
        )
    row["worst_int8_drop"] = max(d["drop"] for d in details)
    fp8_details = []
    for method, done, elapsed in fp8:
        accuracy = by_path[done.path.resolve()]
        row[f"fp8_{method}"] = accuracy.top1
        fp8_details.append(
            {
                "method": method,
                "top1": accuracy.top1,
                "top5": accuracy.topk,
                "drop": accuracy.drop,
                "agreement_with_fp32": accuracy.agreement,
                "output_sqnr_db_calibration": done.check["output_sqnr_db"],
                "size_vs_fp32": round(done.size_ratio, 4),
                "seconds": round(elapsed, 2),
            }
        )
    if fp8_details:
        row["worst_fp8_drop"] = max(d["drop"] for d in fp8_details)
    return {
        "row": row,
        "int8": details,
        "fp8": fp8_details,
        "fp32_top5": fp32.topk,
        "fp16_drop": fp16.drop,
        "images": report.images,
    }


def render(payload: dict[str, Any]) -> str:
    methods = payload["methods"]
    fp8_methods = payload.get("fp8_methods", [])
    columns = (
        ["model", "parameters", "fp32_top1", "fp16_top1"]
        + [f"{m}_{t}" for m in methods for t in TARGETS]
        + ["worst_int8_drop"]
        + [f"fp8_{m}" for m in fp8_methods]
        + (["worst_fp8_drop"] if fp8_methods else [])
    )
    headers = {
        "fp32_top1": "FP32",
        "fp16_top1": "FP16",
        "worst_int8_drop": "worst INT8 drop",
        "worst_fp8_drop": "worst FP8 drop",
        **{f"fp8_{m}": f"FP8 tensorrt {m}" for m in fp8_methods},
        **{f"{m}_{t}": f"INT8 {t} {m}" for m in methods for t in TARGETS},
    }
    rows = [entry["row"] for entry in payload["models"]]
    lines = [
        "# Reference models: top-1 (%) on the digits test split, FP32 vs FP16 vs INT8 vs FP8",
        "",
        f"{payload['images']} test images (one image = {100 / payload['images']:.2f} points); INT8 calibrated on the "
        "180-image calibration split; percentile = 99.999th. `cpu`: U8 activations, S8 7-bit per-channel weights; "
        "`tensorrt`: S8 symmetric activations and per-channel weights, run here through ONNX Runtime's CPU kernels. "
        "FP8: E4M3 Q/DQ (opset 19) for TensorRT on FP8 GPUs, per-tensor activations and per-channel weights at "
        "amax/448 (minmax = amax), also run through ONNX Runtime's CPU kernels.",
        "",
        markdown_table(rows, columns, headers),
        "",
        "Machine:",
        "",
        describe_machine_markdown(payload["machine"]),
        SHARED_MACHINE_NOTE.split(":")[0] + " (accuracy does not depend on it).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    from edgecnn.datasets import write_digits_split
    from edgecnn.testing import REFERENCE_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCE_MODELS), choices=list(REFERENCE_MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--fp8-methods", nargs="*", default=list(FP8_METHODS), choices=METHODS)
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edgecnn-reference-weights",
        help="where unshipped reference weights (ResNet-18) are read, or trained and written",
    )
    parser.add_argument("--render", action="store_true", help="rewrite accuracy.md from accuracy.json")
    args = parser.parse_args()
    if args.render:
        import json

        from _util import RESULTS_DIR

        payload = json.loads((RESULTS_DIR / f"{RESULT_STEM}.json").read_text())
        (RESULTS_DIR / f"{RESULT_STEM}.md").write_text(render(payload))
        return
    machine = machine_description()
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-accuracy-") as scratch:
        calibration = write_digits_split("calibration", Path(scratch) / "calibration")
        for name in args.models:
            entry = measure(
                name,
                tuple(args.methods),
                Path(scratch) / "exports",
                args.weights_dir,
                calibration,
                tuple(args.fp8_methods),
            )
            entries.append(entry)
            row = entry["row"]
            print(
                f"{name}: FP32 {row['fp32_top1']:.2f}%, FP16 {row['fp16_top1']:.2f}%, "
                f"worst INT8 drop {row['worst_int8_drop']:+.2f} points"
                + (f", worst FP8 drop {row['worst_fp8_drop']:+.2f} points" if "worst_fp8_drop" in row else ""),
                flush=True,
            )
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "machine": machine,
        "methods": list(args.methods),
        "fp8_methods": list(args.fp8_methods),
        "images": entries[0]["images"],
        "models": entries,
    }
    json_path, markdown_path = write_results(RESULT_STEM, payload, render(payload))
    print(f"wrote {json_path} and {markdown_path}")


if __name__ == "__main__":
    main()
