"""Calibration peak RSS and time against the number of samples: flat memory, and the code before it.

Cases, each one child process (its own peak RSS from ``os.wait4``), each with a fresh ``EDGECNN_CACHE`` and
output directory so no ranges are reused:

- ``mobilenet_v2`` and ``resnet18``: ``edgecnn export NAME --int8 --calib-samples N`` at 224x224 (the
  export, then calibration on the built-in photos, quantization and the held-out check);
- ``text_detector_640``: ``edgecnn quantize det.onnx --scale 1/255 --calib-samples N --no-cache --json`` on
  a DBNet-shaped text detector defined here (ResNet-style backbone with strides 4-32, FPN features
  concatenated at stride 4, a head upsampling to a 640x640 Sigmoid probability map; seeded random
  weights), exported once to ONNX;
- ``mobilenet_v2 --analyze``: ``edgecnn quantize EXPORT --analyze --calib-samples N --no-cache`` (ranges,
  the INT8 model and the per-layer analysis on 8 samples).

``--before TREE`` also runs the cases named by ``--before-cases`` with the code of another checkout (its
directory on ``PYTHONPATH``), interleaved with the same cases of this one, e.g. main at c185e3f::

    git worktree add --detach /tmp/calib-before c185e3f
    nice -n 5 .venv/bin/python bench/calibration_memory.py --before /tmp/calib-before

Writes bench/results/calibration_memory.json and .md; ``--cases`` runs a subset and merges it into the
existing results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import (
    RESULTS_DIR,
    SHARED_MACHINE_NOTE,
    describe_machine_markdown,
    machine_description,
    markdown_table,
    mib,
    run_child,
    write_results,
)

RESULT_STEM = "calibration_memory"
ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "mobilenet_v2": (50, 200, 500),
    "resnet18": (50, 200, 500),
    "text_detector_640": (25, 50, 100),
    "mobilenet_v2 --analyze": (500,),
}
BEFORE_CASES = ("mobilenet_v2:50", "mobilenet_v2:500", "text_detector_640:50")
TIMEOUT_S = 1800


def export_detector(path: Path) -> None:
    """The DBNet-shaped 640x640 text detector, seeded, as ONNX (opset 17)."""
    import torch
    from torch import nn
    from torch.nn import functional

    def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.a = conv_bn(cin, cout, stride)
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            return functional.relu(self.b(self.a(x)) + self.skip(x))

    class TextDetector(nn.Module):
        def __init__(self, widths=(32, 64, 128, 256), inner: int = 64):
            super().__init__()
            self.stem = nn.Sequential(conv_bn(3, widths[0], 2), nn.MaxPool2d(3, 2, 1))
            stages, cin = [], widths[0]
            for index, width in enumerate(widths):
                stages.append(nn.Sequential(Block(cin, width, 1 if index == 0 else 2), Block(width, width, 1)))
                cin = width
            self.stages = nn.ModuleList(stages)
            self.lateral = nn.ModuleList(nn.Conv2d(width, inner, 1) for width in widths)
            self.smooth = nn.ModuleList(nn.Conv2d(inner, inner // 4, 3, padding=1) for _ in widths)
            self.head = nn.Sequential(
                conv_bn(inner, inner // 4),
                nn.ConvTranspose2d(inner // 4, inner // 4, 2, 2),
                nn.BatchNorm2d(inner // 4),
                nn.ReLU(),
                nn.ConvTranspose2d(inner // 4, 1, 2, 2),
            )

        def forward(self, x):
            x = self.stem(x)
            features = []
            for stage in self.stages:
                x = stage(x)
                features.append(x)
            laterals = [lateral(f) for lateral, f in zip(self.lateral, features)]
            for index in range(len(laterals) - 1, 0, -1):
                laterals[index - 1] = laterals[index - 1] + functional.interpolate(laterals[index], scale_factor=2.0)
            size = laterals[0].shape[-2:]
            maps = [functional.interpolate(s(lateral), size=size) for s, lateral in zip(self.smooth, laterals)]
            return torch.sigmoid(self.head(torch.cat(maps, 1)))

    torch.manual_seed(0)
    model = TextDetector().eval()
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 640, 640),),
        str(path),
        input_names=["images"],
        output_names=["probability"],
        opset_version=17,
        dynamo=False,
    )


def command(case: str, samples: int, work: Path) -> list[str]:
    # -P: no working directory on sys.path, so PYTHONPATH decides which checkout's edgecnn runs
    cli = [sys.executable, "-P", "-m", "edgecnn.cli.main"]
    output = work / "out"
    if case in ("mobilenet_v2", "resnet18"):
        return [*cli, "export", case, "--int8", "--calib-samples", str(samples), "--json", "-o", str(output)]
    if case == "text_detector_640":
        return [
            *cli,
            "quantize",
            str(work.parent / "det.onnx"),
            "--scale",
            "1/255",
            "--calib-samples",
            str(samples),
            "--no-cache",
            "--json",
            "-o",
            str(output / "det.int8.onnx"),
        ]
    if case == "mobilenet_v2 --analyze":
        export = work.parent / "exports" / "mobilenet_v2"
        return [*cli, "quantize", str(export), "--analyze", "--calib-samples", str(samples), "--no-cache", "--json"]
    raise ValueError(case)


def run_case(case: str, samples: int, tree: Path, label: str, shared: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="calib-case-", dir=shared) as scratch:
        work = Path(scratch)
        environment = {**os.environ, "PYTHONPATH": str(tree), "EDGECNN_CACHE": str(work / "cache")}
        argv = ["env", *(f"{k}={v}" for k, v in environment.items() if k in ("PYTHONPATH", "EDGECNN_CACHE"))]
        run = run_child([*argv, *command(case, samples, work)], TIMEOUT_S, json_stdout=True)
    payload = run.payload if isinstance(run.payload, dict) else {}
    row = {
        "model": case,
        "samples": samples,
        "code": label,
        "peak_rss_mb": mib(run.peak_rss_bytes),
        "wall_s": round(run.seconds, 1),
        "cpu_s": round(run.cpu_s, 1),
        "calibration_s": round(payload["calibration_seconds"], 1) if "calibration_seconds" in payload else None,
        "error": run.failure or None,
    }
    print(json.dumps(row), flush=True)
    return row


def _checkout(tree: Path) -> str:
    """``tree`` and the commit it has checked out."""
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{tree} at commit {commit.stdout.strip() or 'unknown'}"


def _comparisons(rows: list[dict[str, Any]]) -> list[str]:
    """One line per case run with both checkouts: peak RSS, wall and CPU time, before -> this."""
    lines = []
    for before in (r for r in rows if r["code"] == "before" and not r["error"]):
        this = next(
            (
                r
                for r in rows
                if r["code"] == "this" and (r["model"], r["samples"]) == (before["model"], before["samples"])
            ),
            None,
        )
        if this is None or this["error"]:
            continue
        lines.append(
            f"- {before['model']}, {before['samples']} samples: peak RSS {before['peak_rss_mb']:,.0f} -> "
            f"{this['peak_rss_mb']:,.0f} MiB, wall {before['wall_s']:.0f} -> {this['wall_s']:.0f} s, "
            f"CPU {before['cpu_s']:.0f} -> {this['cpu_s']:.0f} s"
            + (
                f", calibration {before['calibration_s']:.0f} -> {this['calibration_s']:.0f} s"
                if before["calibration_s"] is not None and this["calibration_s"] is not None
                else ""
            )
        )
    return lines


def _flatness(rows: list[dict[str, Any]]) -> list[str]:
    """Per model, this checkout's peak RSS from the fewest to the most samples."""
    lines = []
    for model in CASES:
        runs = sorted(
            (r for r in rows if r["model"] == model and r["code"] == "this" and not r["error"]),
            key=lambda r: r["samples"],
        )
        if len(runs) > 1:
            peaks = ", ".join(f"{r['samples']}: {r['peak_rss_mb']:,.0f}" for r in runs)
            lines.append(f"- {model}: peak RSS MiB by samples {peaks}")
    return lines


def render(payload: dict[str, Any]) -> str:
    rows = sorted(payload["rows"], key=lambda r: (list(CASES).index(r["model"]), r["code"] != "this", r["samples"]))
    shown = [
        {
            **row,
            "peak_rss_mb": f"{row['peak_rss_mb']:,.0f}",
            **{key: f"{row[key]:.1f}" for key in ("wall_s", "cpu_s", "calibration_s") if row[key] is not None},
        }
        for row in rows
    ]
    table = markdown_table(
        shown,
        ["model", "samples", "code", "peak_rss_mb", "wall_s", "cpu_s", "calibration_s", "error"],
        headers={
            "peak_rss_mb": "peak RSS MiB",
            "wall_s": "wall s",
            "cpu_s": "CPU s",
            "calibration_s": "calibration s",
        },
    )
    return "\n".join(
        [
            "# Calibration memory and time against the number of samples",
            "",
            "`bench/calibration_memory.py`. One child process per row, its own peak RSS (`ru_maxrss` via "
            "`os.wait4`), a fresh `EDGECNN_CACHE` each so no ranges are reused. mobilenet_v2 and resnet18: "
            "`edgecnn export NAME --int8 --calib-samples N` (export, calibration on the built-in photos, "
            "quantization, check); text_detector_640: `edgecnn quantize det.onnx --scale 1/255` on a DBNet-shaped "
            "640x640 detector (seeded weights); `--analyze`: `edgecnn quantize EXPORT --analyze` (calibration, "
            "INT8 model, per-layer analysis on 8 samples). 'calibration s' is the command's own figure where it "
            f"prints one. Code 'this' is this checkout, 'before' {payload.get('before') or 'none'}.",
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(payload["machine"]),
            "Peak RSS against the number of samples (this checkout):",
            "",
            *_flatness(rows),
            "",
            "Before -> this checkout, the same case:",
            "",
            *_comparisons(rows),
            "",
            table,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", help="CASE:SAMPLES to run (default: every case and count)")
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--before-cases", nargs="*", default=list(BEFORE_CASES))
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    json_path = RESULTS_DIR / f"{RESULT_STEM}.json"
    if args.render:
        payload = json.loads(json_path.read_text())
        write_results(RESULT_STEM, payload, render(payload))
        return
    wanted = [(c, n) for c, counts in CASES.items() for n in counts]
    if args.cases:
        wanted = [(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1])) for c in args.cases]
    before = {(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1])) for c in args.before_cases} if args.before else set()
    machine = machine_description()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-calibration-memory-") as shared:
        shared_path = Path(shared)
        if any(c == "text_detector_640" for c, _ in wanted):
            export_detector(shared_path / "det.onnx")
        if any(c == "mobilenet_v2 --analyze" for c, _ in wanted):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edgecnn.cli.main",
                    "export",
                    "mobilenet_v2",
                    "-o",
                    str(shared_path / "exports"),
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
                capture_output=True,
            )
        for case, samples in wanted:
            rows.append(run_case(case, samples, ROOT, "this", shared_path))
            if (case, samples) in before:
                rows.append(run_case(case, samples, args.before.resolve(), "before", shared_path))
    machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    payload = {"machine": machine, "before": _checkout(args.before) if args.before else None, "rows": rows}
    if args.cases and json_path.is_file():
        previous = json.loads(json_path.read_text())
        replaced = {(r["model"], r["samples"], r["code"]) for r in rows}
        kept = [r for r in previous["rows"] if (r["model"], r["samples"], r["code"]) not in replaced]
        payload = {**previous, "rows": kept + rows, "before": previous.get("before") or payload["before"]}
    write_results(RESULT_STEM, payload, render(payload))
    print(f"wrote {RESULTS_DIR / (RESULT_STEM + '.md')}")


if __name__ == "__main__":
    main()
