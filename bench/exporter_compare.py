"""torch's two ONNX exporters over the whole zoo: time, peak memory, correctness, node counts, failures.

Each (model, exporter) export runs in a fresh child process, so that its peak RSS is its own; the two
exporters alternate model by model (torchscript first on even models, dynamo first on odd ones) so that
noise on the shared machine hits both alike. Correctness is edgecnn's comparator (ONNX Runtime vs
PyTorch on seeded inputs) on the cleaned-up graph, which is what the pipeline ships.

    .venv/bin/python bench/exporter_compare.py                    # the whole zoo (about half an hour)
    .venv/bin/python bench/exporter_compare.py --models 'resnet*' # a subset

Writes bench/results/exporters.json and bench/results/exporters.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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

CHECK_SAMPLES = 4
RESULT_STEM = "exporters"


def measure_export(name: str, exporter: str) -> dict[str, Any]:
    """In the child: export ``name`` with ``exporter``, clean it up, check it and compare it with PyTorch."""
    import numpy as np

    from edgecnn import get_model, get_spec
    from edgecnn.export.cleanup import check_graph, clean_graph
    from edgecnn.export.to_onnx import torch_to_onnx
    from edgecnn.export.verify import check_inputs, compare, torch_outputs
    from edgecnn.runtime import create_session, run_session

    spec = get_spec(name)
    module = get_model(name)
    height, width = spec.input_size
    record: dict[str, Any] = {"model": name, "exporter": exporter, "status": "ok", "stage": "", "reason": ""}
    record["baseline_rss_bytes"] = self_peak_rss_bytes()
    stage = "export"
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        exported = torch_to_onnx(module, (1, spec.in_chans, height, width), exporter=exporter)
        record["export_s"] = time.perf_counter() - started
        record["export_cpu_s"] = time.process_time() - cpu_started
        record["export_peak_rss_bytes"] = self_peak_rss_bytes()
        record["export_rss_increase_bytes"] = record["export_peak_rss_bytes"] - record["baseline_rss_bytes"]
        record["nodes_exported"] = len(exported.graph.node)
        record["functions_exported"] = len(exported.functions)
        stage = "clean-up"
        started = time.perf_counter()
        cleaned = clean_graph(exported)
        record["cleanup_s"] = time.perf_counter() - started
        record["nodes_cleaned"] = len(cleaned.graph.node)
        record["size_bytes"] = cleaned.ByteSize()
        record["op_types"] = sorted({node.op_type for node in cleaned.graph.node})
        stage = "check"
        check_graph(cleaned)
        stage = "verify"
        started = time.perf_counter()
        inputs = check_inputs((CHECK_SAMPLES, spec.in_chans, height, width))
        session = create_session(cleaned.SerializeToString())
        candidate = np.concatenate([run_session(session, inputs[i : i + 1]) for i in range(len(inputs))])
        verification = compare(torch_outputs(module, inputs), candidate, "fp32")
        record["verify_s"] = time.perf_counter() - started
        record["max_abs_error"] = verification.max_abs_error
        record["output_scale"] = verification.output_scale
        record["relative_error"] = verification.max_abs_error / verification.output_scale
        record["verified"] = verification.passed
        if not verification.passed:
            record.update(status="failed", stage=stage, reason=verification.reason)
    except Exception as error:  # the bench records every failure with its reason and goes on
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        record.update(status="failed", stage=stage, reason=f"{type(error).__name__}: {first[:400]}")
    return record


def _order(index: int, exporters: tuple[str, ...]) -> tuple[str, ...]:
    return exporters if index % 2 == 0 else tuple(reversed(exporters))


def _summary(rows: list[dict[str, Any]], exporters: tuple[str, ...]) -> list[dict[str, Any]]:
    """Totals per exporter; times are summed over the models both exporters handled, so they compare."""
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["exporter"]] = row
    both_ok = [m for m, runs in by_model.items() if all(runs.get(e, {}).get("status") == "ok" for e in exporters)]
    summary = []
    for exporter in exporters:
        mine = [row for row in rows if row["exporter"] == exporter]
        ok = [row for row in mine if row["status"] == "ok"]
        common = [by_model[m][exporter] for m in both_ok]
        slowest = max(ok, key=lambda row: row["export_s"], default=None)
        worst_error = max(ok, key=lambda row: row["relative_error"], default=None)
        heaviest = max(mine, key=lambda row: row.get("export_peak_rss_bytes", 0), default=None)
        summary.append(
            {
                "exporter": exporter,
                "models": len(mine),
                "ok": len(ok),
                "failed": len(mine) - len(ok),
                "export_s_total_common": round(sum(row["export_s"] for row in common), 1),
                "export_cpu_s_total_common": round(sum(row["export_cpu_s"] for row in common), 1),
                "export_s_median": round(statistics.median(row["export_s"] for row in ok), 2) if ok else None,
                "export_s_max": round(slowest["export_s"], 2) if slowest else None,
                "slowest_model": slowest["model"] if slowest else None,
                "export_peak_rss_mib_max": mib(heaviest.get("export_peak_rss_bytes")) if heaviest else None,
                "heaviest_model": heaviest["model"] if heaviest else None,
                "export_rss_increase_mib_median": (
                    mib(statistics.median(row["export_rss_increase_bytes"] for row in ok)) if ok else None
                ),
                "export_rss_increase_mib_max": mib(max((row["export_rss_increase_bytes"] for row in ok), default=0)),
                "relative_error_max": worst_error["relative_error"] if worst_error else None,
                "worst_error_model": worst_error["model"] if worst_error else None,
                "nodes_exported_total_common": sum(row["nodes_exported"] for row in common),
                "nodes_cleaned_total_common": sum(row["nodes_cleaned"] for row in common),
            }
        )
    return summary


def _ratios(rows: list[dict[str, Any]], exporters: tuple[str, ...]) -> dict[str, Any]:
    """Per-model second/first exporter ratios (time, memory increase), over models both exported."""
    first, second = exporters
    pairs = {}
    for row in rows:
        pairs.setdefault(row["model"], {})[row["exporter"]] = row
    time_ratios, cpu_ratios, memory_ratios, same_nodes = [], [], [], 0
    for runs in pairs.values():
        a, b = runs.get(first), runs.get(second)
        if not (a and b and a["status"] == b["status"] == "ok"):
            continue
        time_ratios.append(b["export_s"] / a["export_s"])
        cpu_ratios.append(b["export_cpu_s"] / a["export_cpu_s"])
        memory_ratios.append(b["export_peak_rss_bytes"] / a["export_peak_rss_bytes"])
        same_nodes += a["nodes_cleaned"] == b["nodes_cleaned"]
    if not time_ratios:
        return {}
    return {
        "pairs": len(time_ratios),
        f"time_{second}_over_{first}_geomean": round(statistics.geometric_mean(time_ratios), 2),
        f"time_{second}_over_{first}_min": round(min(time_ratios), 2),
        f"time_{second}_over_{first}_max": round(max(time_ratios), 2),
        f"cpu_{second}_over_{first}_geomean": round(statistics.geometric_mean(cpu_ratios), 2),
        f"peak_rss_{second}_over_{first}_geomean": round(statistics.geometric_mean(memory_ratios), 2),
        f"peak_rss_{second}_over_{first}_max": round(max(memory_ratios), 2),
        "models_with_equal_cleaned_node_count": same_nodes,
    }


def _transposed(rows: list[dict[str, Any]], key: str, title: str) -> str:
    """One column per candidate, one row per figure: summaries have more figures than candidates."""
    columns = [row[key] for row in rows]
    figures = [{"figure": figure, **{row[key]: row[figure] for row in rows}} for figure in rows[0] if figure != key]
    return markdown_table(figures, ["figure", *columns], title=title)


def _markdown(payload: dict[str, Any]) -> str:
    per_model = {}
    for row in payload["rows"]:
        entry = per_model.setdefault(row["model"], {"model": row["model"]})
        short = "ts" if row["exporter"] == "torchscript" else "dy"
        entry[f"{short}_s"] = round(row["export_s"], 2) if "export_s" in row else None
        entry[f"{short}_cpu"] = round(row["export_cpu_s"], 2) if "export_cpu_s" in row else None
        entry[f"{short}_rss"] = mib(row.get("export_peak_rss_bytes"))
        entry[f"{short}_nodes"] = (
            f"{row['nodes_exported']} -> {row['nodes_cleaned']}"
            if "nodes_cleaned" in row
            else row.get("nodes_exported")
        )
        entry[f"{short}_err"] = row.get("relative_error")
        entry[f"{short}_status"] = row["status"] if row["status"] == "ok" else f"failed ({row['stage']})"
    failures = [row for row in payload["rows"] if row["status"] != "ok"]
    parts = [
        "# torch's ONNX exporters over the zoo",
        "",
        f"torchscript = `torch.onnx.export(dynamo=False)`, dynamo = `torch.onnx.export(dynamo=True, optimize=True)`; "
        f"opset {payload['opset']}, batch 1, each model at its default input size, randomly initialized (seed 0). "
        f"Each export ran in its own child process. Export time is the `torch_to_onnx` call only, as wall time and as "
        f"CPU time (user + system, all threads; much less sensitive to other work on the machine); peak RSS is the "
        f"child's `ru_maxrss` right after export (Python, torch, the model and the export; the increase column "
        f"subtracts the peak before export). Error is max |ONNX Runtime - PyTorch| / max |PyTorch| on "
        f"{CHECK_SAMPLES} seeded samples, after the default clean-up (onnxslim). Nodes: as exported -> after clean-up.",
        "",
        SHARED_MACHINE_NOTE,
        "",
        describe_machine_markdown(payload["machine"]),
        _transposed(payload["summary"], "exporter", "Summary"),
        "Ratios over models both exporters handled: " + ", ".join(f"{k} {v}" for k, v in payload["ratios"].items()),
        "",
        markdown_table(
            list(per_model.values()),
            [
                "model",
                "ts_s",
                "dy_s",
                "ts_cpu",
                "dy_cpu",
                "ts_rss",
                "dy_rss",
                "ts_nodes",
                "dy_nodes",
                "ts_err",
                "dy_err",
                "ts_status",
                "dy_status",
            ],
            headers={
                "ts_s": "ts s",
                "dy_s": "dynamo s",
                "ts_cpu": "ts CPU s",
                "dy_cpu": "dynamo CPU s",
                "ts_rss": "ts peak MiB",
                "dy_rss": "dynamo peak MiB",
                "ts_nodes": "ts nodes",
                "dy_nodes": "dynamo nodes",
                "ts_err": "ts rel err",
                "dy_err": "dynamo rel err",
                "ts_status": "ts",
                "dy_status": "dynamo",
            },
            title="Per model",
        ),
        "**Failures**",
        "",
        *([f"- {row['model']} / {row['exporter']} at {row['stage']}: {row['reason']}" for row in failures] or ["none"]),
        "",
    ]
    return "\n".join(parts)


def run_comparison(models: list[str], exporters: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    from edgecnn.export.to_onnx import DEFAULT_OPSET

    machine = machine_description()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    payload: dict[str, Any] = {}
    for index, name in enumerate(models):
        for exporter in _order(index, exporters):
            child = run_child(python_child(__file__, "--child", name, "--exporter", exporter), timeout_s)
            row = child.payload or {
                "model": name,
                "exporter": exporter,
                "status": "failed",
                "stage": "child",
                "reason": child.failure,
            }
            row["child_s"] = round(child.seconds, 2)
            row["child_cpu_s"] = round(child.cpu_s, 2)
            row["child_peak_rss_bytes"] = child.peak_rss_bytes
            rows.append(row)
            print(
                f"[{index + 1}/{len(models)}] {name:24s} {exporter:11s} {row['status']:6s} "
                f"export {row.get('export_s', float('nan')):6.1f} s "
                f"(cpu {row.get('export_cpu_s', float('nan')):6.1f} s)  "
                f"peak {mib(row.get('export_peak_rss_bytes')) or 0:7.0f} MiB  "
                f"nodes {row.get('nodes_exported', '-')}->{row.get('nodes_cleaned', '-')}  "
                f"rel err {row.get('relative_error', float('nan')):.2e}"
                + (f"  {row['stage']}: {row['reason'][:120]}" if row["status"] != "ok" else ""),
                flush=True,
            )
        machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        payload = {
            "machine": machine,
            "note": SHARED_MACHINE_NOTE,
            "opset": DEFAULT_OPSET,
            "exporters": list(exporters),
            "check_samples": CHECK_SAMPLES,
            "wall_s": round(time.perf_counter() - started, 1),
            "summary": _summary(rows, exporters),
            "ratios": _ratios(rows, exporters),
            "rows": rows,
        }
        write_results(RESULT_STEM, payload, _markdown(payload))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="fnmatch patterns (default: the whole zoo)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per export child")
    parser.add_argument(
        "--render", action="store_true", help="rewrite the .md from the existing .json without measuring"
    )
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--exporter", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        Path(args.result).write_text(json.dumps(measure_export(args.child, args.exporter)))
        return 0
    if args.render:
        payload = json.loads((RESULTS_DIR / f"{RESULT_STEM}.json").read_text())
        write_results(RESULT_STEM, payload, _markdown(payload))
        return 0
    from edgecnn import list_models
    from edgecnn.export.to_onnx import EXPORTERS

    models = list_models(args.models)
    if not models:
        parser.error(f"no zoo model matches {args.models}")
    payload = run_comparison(models, tuple(EXPORTERS), args.timeout)
    for row in payload["summary"]:
        print(json.dumps(row))
    print(json.dumps(payload["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
