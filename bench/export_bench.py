"""Export + verify time and peak RSS per zoo model and for the whole zoo, against the issue's goals.

The real path with default options: ``edgecnn.export.export_model(name)`` (TorchScript exporter,
onnxslim clean-up, checker and shape inference, verification against PyTorch on 8 seeded samples,
manifest). Each model runs in its own child process, whose peak RSS (``ru_maxrss`` from ``os.wait4``)
covers Python, torch, ONNX Runtime, the model and the whole export. The whole zoo is then exported once
more the way a user would, ``edgecnn export --all`` (one export process per core, its default); its peak
RSS is the largest of those processes.

Goals (issue 3): the whole zoo exports and verifies in under 5 minutes on this machine; each model's
peak RSS stays under 3 x its FP32 weight size + 1 GiB.

    .venv/bin/python bench/export_bench.py                     # per model, then the whole zoo in one command
    .venv/bin/python bench/export_bench.py --models 'vgg*' --no-whole-zoo

Writes bench/results/export.json and bench/results/export.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import (
    RESULTS_DIR,
    SHARED_MACHINE_NOTE,
    current_rss_bytes,
    describe_machine_markdown,
    machine_description,
    markdown_table,
    mib,
    python_child,
    run_child,
    self_peak_rss_bytes,
    write_results,
)

RESULT_STEM = "export"
WHOLE_ZOO_GOAL_S = 300.0
RSS_WEIGHT_FACTOR = 3
RSS_ALLOWANCE_BYTES = 2**30


def fp32_weight_bytes(name: str) -> int:
    """FP32 size of the model's floating-point state (parameters and batch-norm statistics), built on the meta
    device."""
    import torch

    from edgecnn import get_model

    with torch.device("meta"):
        module = get_model(name)
    return 4 * sum(tensor.numel() for tensor in module.state_dict().values() if tensor.is_floating_point())


def rss_limit_bytes(weight_bytes: int) -> int:
    return RSS_WEIGHT_FACTOR * weight_bytes + RSS_ALLOWANCE_BYTES


PIPELINE_STAGES = (
    ("build", "resolve_source"),
    ("export", "torch_to_onnx_file"),
    ("clean-up", "clean_graph"),
    ("check", "check_graph"),
    ("verify", "_verify"),
    ("save", "_save"),
)
"""(stage, function of edgecnn.export.pipeline) pairs whose time and memory each export records."""


def _record_stages(stages: list[dict[str, Any]]) -> None:
    """Wrap the pipeline's step functions so that each call appends its time, RSS and peak RSS to ``stages``.

    Only observes: the real ``export_model`` runs unchanged. A step renamed by a refactor is an error, so
    that the figures never silently lose a stage.
    """
    from edgecnn.export import pipeline

    def observed(stage: str, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages.append(
                    {
                        "stage": stage,
                        "s": time.perf_counter() - started,
                        "rss_bytes": current_rss_bytes(),
                        "peak_rss_bytes": self_peak_rss_bytes(),
                    }
                )

        return call

    missing = [attribute for _, attribute in PIPELINE_STAGES if not hasattr(pipeline, attribute)]
    if missing:
        raise RuntimeError(f"edgecnn.export.pipeline has no {', '.join(missing)}: update PIPELINE_STAGES")
    for stage, attribute in PIPELINE_STAGES:
        setattr(pipeline, attribute, observed(stage, getattr(pipeline, attribute)))


def measure_export(name: str, output_dir: str) -> dict[str, Any]:
    """In the child: one default export of ``name`` through the real pipeline, with time and memory per stage."""
    started = time.perf_counter()
    from edgecnn.errors import EdgecnnError
    from edgecnn.export import export_model

    record: dict[str, Any] = {"model": name, "import_s": time.perf_counter() - started}
    stages: list[dict[str, Any]] = []
    _record_stages(stages)
    record["stages"] = stages
    record["rss_after_import_bytes"] = current_rss_bytes()
    record["weight_bytes"] = fp32_weight_bytes(name)
    cpu_started = time.process_time()
    try:
        result = export_model(name, output_dir=output_dir)
    except EdgecnnError as error:
        record.update(status="failed", reason=str(error))
    else:
        fp32 = [v for v in result.verifications if v.precision == "fp32"]
        record.update(
            status="ok",
            reason="",
            seconds=result.seconds,
            cpu_s=time.process_time() - cpu_started,
            max_abs_error=result.max_error,
            relative_error=max(v.max_abs_error / v.output_scale for v in fp32),
            check_samples=sum(v.batch for v in fp32),
            onnx_bytes=sum(path.stat().st_size for path in result.files.values()),
        )
    record["peak_rss_bytes_self"] = self_peak_rss_bytes()
    return record


def per_model(models: list[str], timeout_s: float) -> list[dict[str, Any]]:
    rows = []
    for index, name in enumerate(models):
        with tempfile.TemporaryDirectory(prefix="edgecnn-export-bench-") as scratch:
            child = run_child(python_child(__file__, "--child", name, "--output-dir", scratch), timeout_s)
        row = child.payload or {"model": name, "status": "failed", "reason": child.failure}
        row["child_s"] = child.seconds
        row["child_cpu_s"] = child.cpu_s
        row["peak_rss_bytes"] = child.peak_rss_bytes
        if "weight_bytes" in row:
            row["rss_limit_bytes"] = rss_limit_bytes(row["weight_bytes"])
            row["rss_ratio"] = row["peak_rss_bytes"] / row["rss_limit_bytes"]
        rows.append(row)
        print(
            f"[{index + 1}/{len(models)}] {name:22s} {row['status']:6s} "
            f"export+verify {row.get('seconds', float('nan')):6.1f} s (cpu {row.get('cpu_s', float('nan')):6.1f} s)  "
            f"child {child.seconds:6.1f} s  peak {mib(child.peak_rss_bytes):7.0f} MiB  "
            f"limit {mib(row.get('rss_limit_bytes')) or 0:7.0f} MiB  ratio {row.get('rss_ratio', float('nan')):.2f}"
            + (f"  {row['reason'][:160]}" if row["status"] != "ok" else ""),
            flush=True,
        )
    return rows


def whole_zoo(timeout_s: float) -> dict[str, Any]:
    """``edgecnn export --all`` once, as a user runs it."""
    cli = Path(sys.executable).with_name("edgecnn")
    with tempfile.TemporaryDirectory(prefix="edgecnn-export-bench-all-") as scratch:
        child = run_child([str(cli), "export", "--all", "-o", scratch, "--format", "json"], timeout_s, json_stdout=True)
    rows = child.payload if isinstance(child.payload, list) else []
    return {
        "command": "edgecnn export --all -o TMP --format json",
        "returncode": child.returncode,
        "wall_s": child.seconds,
        "cpu_s": child.cpu_s,
        "peak_rss_bytes": child.peak_rss_bytes,
        "models": len(rows),
        "ok": sum(row.get("status") == "ok" for row in rows),
        "failures": [f"{row['model']}: {row['reason']}" for row in rows if row.get("status") != "ok"],
        "sum_of_model_seconds": sum(row.get("seconds") or 0.0 for row in rows),
        "error": child.failure if not rows else "",
    }


def _summary(rows: list[dict[str, Any]], whole: dict[str, Any] | None) -> dict[str, Any]:
    ok = [row for row in rows if row["status"] == "ok"]
    measured = [row for row in rows if "rss_ratio" in row]
    slowest = max(ok, key=lambda row: row["seconds"], default=None)
    worst_ratio = max(measured, key=lambda row: row["rss_ratio"], default=None)
    largest = max(measured, key=lambda row: row["weight_bytes"], default=None)
    summary: dict[str, Any] = {
        "models": len(rows),
        "ok": len(ok),
        "failed": [f"{row['model']}: {row['reason']}" for row in rows if row["status"] != "ok"],
        "per_model_export_verify_s_total": round(sum(row["seconds"] for row in ok), 1),
        "per_model_export_verify_cpu_s_total": round(sum(row["cpu_s"] for row in ok), 1),
        "per_model_child_s_total": round(sum(row["child_s"] for row in rows), 1),
        "per_model_child_cpu_s_total": round(sum(row["child_cpu_s"] for row in rows), 1),
        "slowest_model": slowest["model"] if slowest else None,
        "slowest_model_s": round(slowest["seconds"], 1) if slowest else None,
        "rss_ratio_max": round(worst_ratio["rss_ratio"], 3) if worst_ratio else None,
        "rss_ratio_max_model": worst_ratio["model"] if worst_ratio else None,
        "rss_goal_met_models": f"{sum(row['rss_ratio'] < 1 for row in measured)}/{len(measured)}",
        "peak_rss_mib_max": mib(max((row["peak_rss_bytes"] for row in rows), default=0)),
        "relative_error_max": max((row["relative_error"] for row in ok), default=None),
        "peak_stage_counts": {
            stage: sum(_peak_stage(row) == stage for row in rows)
            for stage in sorted({_peak_stage(row) for row in rows} - {None})
        },
    }
    if whole is not None:
        summary["whole_zoo_wall_s"] = round(whole["wall_s"], 1)
        summary["whole_zoo_cpu_s"] = round(whole["cpu_s"], 1)
        summary["whole_zoo_goal_s"] = WHOLE_ZOO_GOAL_S
        summary["whole_zoo_time_ratio"] = round(whole["wall_s"] / WHOLE_ZOO_GOAL_S, 2)
        summary["whole_zoo_ok"] = f"{whole['ok']}/{whole['models']}"
        summary["whole_zoo_peak_rss_mib"] = mib(whole["peak_rss_bytes"])
        if largest is not None:
            limit = rss_limit_bytes(largest["weight_bytes"])
            summary["whole_zoo_rss_limit_mib"] = mib(limit)
            summary["whole_zoo_rss_ratio"] = round(whole["peak_rss_bytes"] / limit, 3)
            summary["whole_zoo_rss_limit_from"] = largest["model"]
    return summary


def _stage_increases(row: dict[str, Any]) -> dict[str, float | None]:
    """How much each stage raised the peak RSS (MiB), from the peak after import."""
    increases: dict[str, float | None] = {f"{stage}_mib": None for stage, _ in PIPELINE_STAGES}
    previous = row.get("rss_after_import_bytes")
    for entry in row.get("stages", []):
        if previous is not None:
            increases[f"{entry['stage']}_mib"] = mib(max(0, entry["peak_rss_bytes"] - previous))
        previous = max(previous or 0, entry["peak_rss_bytes"])
    return increases


def _peak_stage(row: dict[str, Any]) -> str | None:
    """The stage that raised the running peak RSS the most."""
    increases = {key.removesuffix("_mib"): value for key, value in _stage_increases(row).items() if value is not None}
    return max(increases, key=increases.get) if increases else None


def _markdown(payload: dict[str, Any]) -> str:
    table_rows = [
        {
            "model": row["model"],
            "status": row["status"],
            "weights_mib": mib(row.get("weight_bytes")),
            "seconds": row.get("seconds"),
            "cpu_s": row.get("cpu_s"),
            "child_s": row["child_s"],
            "peak_mib": mib(row["peak_rss_bytes"]),
            "limit_mib": mib(row.get("rss_limit_bytes")),
            "ratio": row.get("rss_ratio"),
            "relative_error": row.get("relative_error"),
            "peak_stage": _peak_stage(row),
            **_stage_increases(row),
        }
        for row in payload["rows"]
    ]
    summary = payload["summary"]
    return "\n".join(
        [
            "# Export + verify: time and peak RSS",
            "",
            "Default options (`export_model(name)`: TorchScript exporter, opset 18, batch 1, onnxslim clean-up, "
            "checker + shape inference, verification on 8 seeded samples, manifest), randomly initialized weights. "
            "`export+verify s` is the pipeline's own time; `child s` adds starting Python and importing torch, ONNX "
            "and ONNX Runtime in a fresh process. `CPU s` is the export's user + system CPU time over all threads, a "
            "figure much less sensitive than wall time to other work on a shared machine. `peak in` names the pipeline "
            "stage during which the peak was reached; `+stage MiB` is how far each stage raised the running peak (the "
            "stages are observed by wrapping the pipeline's step functions: "
            "`edgecnn.export.pipeline.resolve_source`, `torch_to_onnx`, "
            "`clean_graph`, `check_graph`, `_verify`, `_save`). Peak RSS is the child's `ru_maxrss`. "
            f"Goal: peak RSS < {RSS_WEIGHT_FACTOR} x FP32 weights + 1 GiB (ratio < 1); "
            f"whole zoo < {WHOLE_ZOO_GOAL_S:.0f} s "
            "(`edgecnn export --all`, one export process per core).",
            "",
            SHARED_MACHINE_NOTE.split(":")[0]
            + ": the whole-zoo time is one run under whatever else the machine was doing.",
            "",
            describe_machine_markdown(payload["machine"]),
            markdown_table(
                [{"figure": key, "value": value} for key, value in summary.items()],
                ["figure", "value"],
                title="Summary",
            ),
            markdown_table(
                table_rows,
                list(table_rows[0]),
                headers={
                    "weights_mib": "FP32 weights MiB",
                    "seconds": "export+verify s",
                    "cpu_s": "CPU s",
                    "child_s": "child s",
                    "peak_mib": "peak RSS MiB",
                    "limit_mib": "limit MiB",
                    "ratio": "peak/limit",
                    "relative_error": "rel err",
                    "peak_stage": "peak in",
                    **{f"{stage}_mib": f"+{stage} MiB" for stage, _ in PIPELINE_STAGES},
                },
                title="Per model (each in its own process)",
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="fnmatch patterns (default: the whole zoo)")
    parser.add_argument(
        "--no-whole-zoo", action="store_true", help="skip the single-process 'edgecnn export --all' run"
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per model child")
    parser.add_argument("--whole-zoo-timeout", type=float, default=7200.0)
    parser.add_argument(
        "--render", action="store_true", help="rewrite the .md from the existing .json without measuring"
    )
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        Path(args.result).write_text(json.dumps(measure_export(args.child, args.output_dir)))
        return 0
    if args.render:
        payload = json.loads((RESULTS_DIR / f"{RESULT_STEM}.json").read_text())
        payload["summary"] = _summary(payload["rows"], payload["whole_zoo"])
        write_results(RESULT_STEM, payload, _markdown(payload))
        return 0
    from edgecnn import list_models

    models = list_models(args.models)
    if not models:
        parser.error(f"no zoo model matches {args.models}")
    machine = machine_description()
    rows = per_model(models, args.timeout)
    whole = None
    if not args.no_whole_zoo:
        print("whole zoo: edgecnn export --all ...", flush=True)
        whole = whole_zoo(args.whole_zoo_timeout)
        print(json.dumps({key: value for key, value in whole.items() if key != "failures"}), flush=True)
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "machine": machine,
        "note": SHARED_MACHINE_NOTE,
        "goals": {"whole_zoo_s": WHOLE_ZOO_GOAL_S, "rss": f"{RSS_WEIGHT_FACTOR} x FP32 weights + 1 GiB"},
        "summary": _summary(rows, whole),
        "whole_zoo": whole,
        "rows": rows,
    }
    write_results(RESULT_STEM, payload, _markdown(payload))
    print(json.dumps(payload["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
