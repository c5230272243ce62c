"""The Jetson roofline against published on-device latencies: the test set of the GPU factors, never their fit.

    python bench/jetson_published.py            # estimate every figure, print the table, write the results
    python bench/jetson_published.py --render   # rewrite jetson_published.md from its JSON

Each figure below is a latency someone measured on a Jetson and published with a source, mapped to a zoo
model and a catalog device. Every one is a latency per batch of one image (``ms``); none was a throughput
needing ``1000 x batch / FPS``. Estimates come from ``edgecnn.profiling.profile_models`` at the same
precision and batch, with the factors as shipped. Ratio = published / estimated: above 1, the estimate
is optimistic. ``steady`` is False for a figure that is not a steady-state latency (one cold inference);
those are listed but kept out of the geometric means.

Two rows sit near the figures the GPU factors were anchored on (docs/profile.md, "Estimated latency"):
the ``gpu-cuda-cores`` factors were set against NVIDIA's Jetson Nano FP16 ResNet-50, Inception v4 and
VGG-19 rates, so torch2trt's Nano ResNet-50 (``near_anchor``) is not independent of them; the summary
gives the geometric mean with and without such rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import RESULTS_DIR, machine_description, markdown_table, write_results  # noqa: E402

STEM = "jetson_published"

TORCH2TRT_NANO = (
    "github.com/NVIDIA-AI-IOT/torch2trt docs/benchmarks/jetson_nano.md (commit 4e820ae, table added 2019): "
    "'Latency (TensorRT)', mean wall time of 50 synchronous calls from PyTorch (torch2trt/test.py), "
    "fp16_mode=True, input 1x3x224x224, torchvision model"
)
TORCH2TRT_XAVIER = (
    "github.com/NVIDIA-AI-IOT/torch2trt docs/benchmarks/jetson_xavier.md (commit 4e820ae, table added 2019-10, "
    "before the Xavier NX existed, so AGX Xavier): 'Latency (TensorRT)', mean wall time of 50 synchronous calls "
    "from PyTorch, fp16_mode=True, input 1x3x224x224, torchvision model"
)
MLPERF = (
    "MLPerf Inference {round} closed, NVIDIA, {system}: resnet50 SingleStream performance run_1 "
    "mlperf_log_summary.txt, 50th percentile latency {ns} ns (github.com/mlcommons/inference_results_{round} "
    "closed/NVIDIA/results/{dir}/resnet50/SingleStream); ResNet-50 v1.5 (torchvision's resnet50), INT8 engine, "
    "GPU only, batch 1, CUDA graphs, input already preprocessed to INT8 ({software})"
)


@dataclass(frozen=True)
class Figure:
    """One published on-device latency, as the source states it."""

    model: str
    device: str
    precision: str
    batch: int
    published_ms: float
    measured: str
    source: str
    steady: bool = True
    near_anchor: bool = False


def _torch2trt(device: str, source: str, rows: dict[str, float], anchors: tuple[str, ...] = ()) -> list[Figure]:
    return [
        Figure(
            model,
            device,
            "fp16",
            1,
            ms,
            "mean latency per batch (synchronous, from Python)",
            source,
            near_anchor=model in anchors,
        )
        for model, ms in rows.items()
    ]


def _mlperf(device: str, round_: str, system: str, directory: str, p50_ns: int, software: str) -> Figure:
    source = MLPERF.format(round=round_, system=system, dir=directory, ns=p50_ns, software=software)
    return Figure("resnet50", device, "int8", 1, p50_ns / 1e6, "median latency per query (loadgen)", source)


FIGURES: tuple[Figure, ...] = (
    *_torch2trt(
        "jetson-nano",
        TORCH2TRT_NANO,
        {
            "alexnet": 14.7,
            "squeezenet1_0": 7.6,
            "squeezenet1_1": 4.34,
            "resnet18": 11.4,
            "resnet34": 20.2,
            "resnet50": 29.8,
            "resnet101": 51.1,
            "resnet152": 72.3,
            "densenet121": 24.8,
            "densenet169": 31.2,
            "densenet201": 40.8,
            "densenet161": 65.8,
            "vgg11": 55.1,
            "vgg13": 68.7,
            "vgg16": 85.1,
            "vgg11_bn": 54.8,
            "vgg13_bn": 68.5,
            "vgg16_bn": 84.3,
        },
        anchors=("resnet50",),
    ),
    *_torch2trt(
        "jetson-agx-xavier",
        TORCH2TRT_XAVIER,
        {
            "alexnet": 2.02,
            "squeezenet1_0": 1.49,
            "squeezenet1_1": 1.02,
            "resnet18": 1.64,
            "resnet34": 2.79,
            "resnet50": 3.37,
            "resnet101": 6.04,
            "resnet152": 8.57,
            "densenet121": 13.0,
            "densenet169": 23.7,
            "densenet201": 33.0,
            "densenet161": 23.0,
            "vgg11": 5.24,
            "vgg13": 6.34,
            "vgg16": 7.46,
            "vgg19": 8.61,
            "vgg11_bn": 5.27,
            "vgg13_bn": 6.33,
            "vgg16_bn": 7.48,
            "vgg19_bn": 8.61,
            "mobilenet_v2": 1.67,
            "shufflenet_v2_x0_5": 2.17,
            "shufflenet_v2_x1_0": 2.43,
            "shufflenet_v2_x1_5": 2.37,
            "shufflenet_v2_x2_0": 2.48,
        },
    ),
    _mlperf(
        "jetson-agx-orin-64gb",
        "v3.1",
        "Jetson AGX Orin Developer Kit 64G",
        "Orin_TRT",
        636227,
        "JetPack 5.1.1, TensorRT 8.5.2",
    ),
    _mlperf("jetson-orin-nx-16gb", "v3.1", "Orin NX 16G", "Orin_NX_TRT", 1078494, "JetPack 5.1.1, TensorRT 8.5.2"),
    _mlperf(
        "jetson-agx-xavier", "v1.1", "Jetson AGX Xavier 32GB", "AGX_Xavier_TRT", 1816980, "JetPack 4.6, TensorRT 8.0.1"
    ),
    _mlperf("jetson-xavier-nx", "v2.0", "Jetson Xavier NX", "Xavier_NX_TRT", 2433525, "JetPack 4.6.x"),
    Figure(
        "mobilenet_v2",
        "jetson-nano",
        "fp32",
        1,
        17.0,
        "'around 17ms' per inference, trtexec",
        "github.com/onnx/onnx-tensorrt/issues/294, comment of 2019-10-24: the ONNX model zoo's MobileNet v2 "
        "'infers at around 17ms once converted to TRT with the exec' (precision not stated: trtexec's default, FP32)",
    ),
    Figure(
        "resnet50",
        "jetson-tx2",
        "fp16",
        1,
        104.41,
        "one inference of one image, 'Network CUDA' time",
        "github.com/dusty-nv/jetson-inference/issues/388: imagenet-console timing report 'Network CUDA 104.41174ms', "
        "Caffe ResNet-50, FP16 (jetson-inference's default on TX2); a single cold run",
        steady=False,
    ),
)


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def estimate(figures: tuple[Figure, ...]) -> list[dict]:
    """Each figure with edgecnn's estimate and the ratio; one profile call per (device, precision, batch)."""
    from edgecnn.profile import ProfileOptions
    from edgecnn.profiling import profile_models

    groups: dict[tuple[str, str, int], list[Figure]] = defaultdict(list)
    for figure in figures:
        groups[(figure.device, figure.precision, figure.batch)].append(figure)
    estimated: dict[tuple[str, str, str, int], float] = {}
    for (device, precision, batch), members in groups.items():
        models = sorted({figure.model for figure in members})
        options = ProfileOptions(devices=device, precisions=[precision], batches=[batch])
        report = profile_models(models, options)
        for row in report.rows:
            estimated[(row.model, device, precision, batch)] = row.fit(device).estimated_ms
    rows = []
    for figure in figures:
        est = estimated[(figure.model, figure.device, figure.precision, figure.batch)]
        rows.append({**asdict(figure), "estimated_ms": est, "ratio": figure.published_ms / est})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Geometric-mean ratios over the steady-state rows: overall, without near-anchor rows, and per group."""
    steady = [row for row in rows if row["steady"]]
    per_group: dict[str, list[float]] = defaultdict(list)
    for row in steady:
        per_group[f"{row['device']} {row['precision']}"].append(row["ratio"])
    ratios = [row["ratio"] for row in steady]
    return {
        "figures": len(rows),
        "steady_figures": len(steady),
        "geomean_ratio": geomean(ratios),
        "geomean_ratio_without_near_anchor": geomean([row["ratio"] for row in steady if not row["near_anchor"]]),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "within_2x": sum(0.5 <= ratio <= 2.0 for ratio in ratios),
        "per_device_precision": {
            group: {"figures": len(values), "geomean_ratio": geomean(values), "min": min(values), "max": max(values)}
            for group, values in sorted(per_group.items())
        },
    }


def render(payload: dict) -> str:
    rows = [
        {
            **row,
            "published": f"{row['published_ms']:.3g}",
            "estimated": f"{row['estimated_ms']:.3g}",
            "ratio_text": f"{row['ratio']:.2f}" + ("" if row["steady"] else " (cold, not in the means)"),
            "source_short": row["source"].split(" (")[0].split(":")[0],
        }
        for row in payload["rows"]
    ]
    summary = payload["summary"]
    groups = [
        {"group": group, **{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in stats.items()}}
        for group, stats in summary["per_device_precision"].items()
    ]
    return "\n".join(
        [
            "# Jetson roofline against published on-device latencies",
            "",
            "`python bench/jetson_published.py`. Ratio = published / estimated (above 1: the estimate is optimistic). "
            "Every figure is a latency per batch of 1 in ms; the factors are the shipped ones, never fitted to these.",
            "",
            markdown_table(
                rows,
                [
                    "model",
                    "device",
                    "precision",
                    "batch",
                    "measured",
                    "published",
                    "estimated",
                    "ratio_text",
                    "source_short",
                ],
                {"published": "published ms", "estimated": "est. ms", "ratio_text": "ratio", "source_short": "source"},
            ),
            f"**Geometric-mean ratio {summary['geomean_ratio']:.2f}** over {summary['steady_figures']} steady-state "
            f"figures ({summary['geomean_ratio_without_near_anchor']:.2f} without the near-anchor row); range "
            f"{summary['min_ratio']:.2f}-{summary['max_ratio']:.2f}, {summary['within_2x']} within 2x.",
            "",
            markdown_table(groups, ["group", "figures", "geomean_ratio", "min", "max"], {"group": "device precision"}),
            "Sources in full: bench/results/jetson_published.json (`source` of each row).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render", action="store_true", help="rewrite the markdown from the saved JSON")
    args = parser.parse_args()
    if args.render:
        payload = json.loads((RESULTS_DIR / f"{STEM}.json").read_text())
    else:
        rows = estimate(FIGURES)
        payload = {"machine": machine_description(), "rows": rows, "summary": summarize(rows)}
    markdown = render(payload)
    print(markdown)
    print("written to", *write_results(STEM, payload, markdown))


if __name__ == "__main__":
    main()
