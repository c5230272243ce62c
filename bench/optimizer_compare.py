"""The graph clean-up choice: onnxslim vs ONNX Runtime's basic offline optimization vs none.

For a representative subset of the zoo, the default exporter's graph is cleaned up by each candidate of
``edgecnn.export.cleanup.clean_graph`` (all three end with onnx's strict shape inference) and measured:
node count (and the BatchNormalization / Identity / Constant nodes left), serialized size, clean-up time,
whether onnx's full checker and "no value without a shape" pass, max error vs PyTorch, ONNX Runtime
session creation time and batch-1 latency. Latency is measured at the runtime's default level (all
optimizations, what ``edgecnn.runtime`` uses) and at the basic level (what an ORT-format model for a
minimal runtime carries). The candidates alternate: the order rotates model by model, and the latency
runs are interleaved round-robin, so that noise on the shared machine hits them alike.

    .venv/bin/python bench/optimizer_compare.py
    .venv/bin/python bench/optimizer_compare.py --models mobilenet_v2 resnet50

Writes bench/results/optimizers.json and bench/results/optimizers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import onnx
from _util import (
    RESULTS_DIR,
    SHARED_MACHINE_NOTE,
    describe_machine_markdown,
    machine_description,
    markdown_table,
    write_results,
)

SUBSET = ("mobilenet_v2", "resnet50", "googlenet", "shufflenet_v2_x1_0", "densenet121", "inception_v3")
LEVELS = ("all", "basic")
CHECK_SAMPLES = 4
WARMUP_RUNS = 3
MIN_RUNS, MAX_RUNS = 15, 60
LATENCY_BUDGET_S = 30.0
RESULT_STEM = "optimizers"
COUNTED_OPS = ("BatchNormalization", "Identity", "Constant")


def _rotate(candidates: tuple[str, ...], index: int) -> tuple[str, ...]:
    shift = index % len(candidates)
    return candidates[shift:] + candidates[:shift]


def _interleaved_latency(
    sessions: dict[tuple[str, str], Any], sample: np.ndarray
) -> dict[tuple[str, str], list[float]]:
    """Batch-1 latencies of every session, one run of each per round, until the budget or MAX_RUNS."""
    from edgecnn.runtime import run_session

    keys = list(sessions)
    for key in keys:
        for _ in range(WARMUP_RUNS):
            run_session(sessions[key], sample)
    timings: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    started = time.perf_counter()
    for round_index in range(MAX_RUNS):
        if round_index >= MIN_RUNS and time.perf_counter() - started > LATENCY_BUDGET_S:
            break
        for key in _rotate(tuple(keys), round_index):
            begin = time.perf_counter()
            run_session(sessions[key], sample)
            timings[key].append((time.perf_counter() - begin) * 1000)
    return timings


def measure_model(name: str, index: int, optimizers: tuple[str, ...], threads: int) -> list[dict[str, Any]]:
    """Every optimizer on one model's exported graph; one row per optimizer."""
    from edgecnn import get_model, get_spec
    from edgecnn.errors import EdgecnnError
    from edgecnn.export.cleanup import check_graph, clean_graph, values_without_shape
    from edgecnn.export.to_onnx import DEFAULT_EXPORTER, torch_to_onnx
    from edgecnn.export.verify import check_inputs, compare, torch_outputs
    from edgecnn.runtime import create_session, run_session

    spec = get_spec(name)
    module = get_model(name)
    shape = (1, spec.in_chans, *spec.input_size)
    exported = torch_to_onnx(module, shape, exporter=DEFAULT_EXPORTER)
    inputs = check_inputs((CHECK_SAMPLES, *shape[1:]))
    reference = torch_outputs(module, inputs)
    rows: dict[str, dict[str, Any]] = {}
    sessions = {}
    for optimizer in _rotate(optimizers, index):
        graph = onnx.ModelProto()
        graph.CopyFrom(exported)
        started = time.perf_counter()
        cleaned = clean_graph(graph, optimizer)
        cleanup_s = time.perf_counter() - started
        serialized = cleaned.SerializeToString()
        ops = [node.op_type for node in cleaned.graph.node]
        row: dict[str, Any] = {
            "model": name,
            "optimizer": optimizer,
            "nodes": len(ops),
            "nodes_exported": len(exported.graph.node),
            **{f"{op}_nodes": ops.count(op) for op in COUNTED_OPS},
            "size_mb": round(len(serialized) / 1e6, 3),
            "cleanup_s": round(cleanup_s, 3),
            "values_without_shape": len(values_without_shape(cleaned)),
        }
        try:
            check_graph(cleaned)
            row["checks"] = "pass"
        except EdgecnnError as error:
            row["checks"] = f"FAIL: {error}"
        for level in _rotate(LEVELS, index):
            started = time.perf_counter()
            sessions[(optimizer, level)] = create_session(serialized, threads=threads, optimization=level)
            row[f"session_{level}_s"] = round(time.perf_counter() - started, 3)
        session = sessions[(optimizer, "all")]
        candidate = np.concatenate([run_session(session, inputs[i : i + 1]) for i in range(len(inputs))])
        verification = compare(reference, candidate, "fp32")
        row["relative_error"] = verification.max_abs_error / verification.output_scale
        row["verified"] = verification.passed
        rows[optimizer] = row
    timings = _interleaved_latency(sessions, inputs[:1])
    for (optimizer, level), values in timings.items():
        rows[optimizer][f"latency_{level}_ms_median"] = round(statistics.median(values), 2)
        rows[optimizer][f"latency_{level}_ms_min"] = round(min(values), 2)
        rows[optimizer]["latency_runs"] = len(values)
    return [rows[optimizer] for optimizer in optimizers]


def _summary(rows: list[dict[str, Any]], optimizers: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per optimizer: totals, and latency relative to no clean-up (geometric mean over models)."""
    baseline = {row["model"]: row for row in rows if row["optimizer"] == "none"}
    summary = []
    for optimizer in optimizers:
        mine = [row for row in rows if row["optimizer"] == optimizer]
        entry = {
            "optimizer": optimizer,
            "nodes_total": sum(row["nodes"] for row in mine),
            "batchnorm_nodes_total": sum(row["BatchNormalization_nodes"] for row in mine),
            "identity_nodes_total": sum(row["Identity_nodes"] for row in mine),
            "constant_nodes_total": sum(row["Constant_nodes"] for row in mine),
            "size_mb_total": round(sum(row["size_mb"] for row in mine), 2),
            "cleanup_s_total": round(sum(row["cleanup_s"] for row in mine), 2),
            "checks_passed": f"{sum(row['checks'] == 'pass' for row in mine)}/{len(mine)}",
            "verified": f"{sum(row['verified'] for row in mine)}/{len(mine)}",
            "relative_error_max": max(row["relative_error"] for row in mine),
        }
        for level in LEVELS:
            entry[f"session_{level}_s_total"] = round(sum(row[f"session_{level}_s"] for row in mine), 2)
            for statistic in ("median", "min") if baseline else ():
                key = f"latency_{level}_ms_{statistic}"
                entry[f"latency_{level}_{statistic}_vs_none_geomean"] = round(
                    statistics.geometric_mean(row[key] / baseline[row["model"]][key] for row in mine), 3
                )
        summary.append(entry)
    return summary


def _markdown(payload: dict[str, Any]) -> str:
    optimizers = [row["optimizer"] for row in payload["summary"]]
    figures = [
        {"figure": figure, **{row["optimizer"]: row[figure] for row in payload["summary"]}}
        for figure in payload["summary"][0]
        if figure != "optimizer"
    ]
    return "\n".join(
        [
            "# Graph clean-up: onnxslim vs ONNX Runtime basic vs none",
            "",
            f"Each model exported once with the default exporter ({payload['exporter']}), opset {payload['opset']}, "
            f"batch 1, default input size; then each clean-up on a copy. Latency: median (and minimum) of interleaved "
            f"batch-1 runs in ONNX Runtime on the CPU with {payload['threads']} intra-op thread(s) (on a contended "
            f"2-core machine one thread avoids measuring spin-waits on a busy core), at session level `all` (edgecnn's "
            f"runtime default) and "
            f"`basic` (what an ORT-format model keeps). Relative error: max |ORT - PyTorch| / max |PyTorch| on "
            f"{CHECK_SAMPLES} seeded samples. `none` still runs onnx's strict shape inference.",
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(payload["machine"]),
            markdown_table(figures, ["figure", *optimizers], title=f"Summary over {', '.join(payload['models'])}"),
            markdown_table(
                payload["rows"],
                [
                    "model",
                    "optimizer",
                    "nodes_exported",
                    "nodes",
                    "BatchNormalization_nodes",
                    "Identity_nodes",
                    "Constant_nodes",
                    "size_mb",
                    "cleanup_s",
                    "checks",
                    "relative_error",
                    "session_all_s",
                    "latency_all_ms_median",
                    "latency_all_ms_min",
                    "latency_basic_ms_median",
                    "latency_basic_ms_min",
                    "latency_runs",
                ],
                headers={
                    "nodes_exported": "exported",
                    "BatchNormalization_nodes": "BN",
                    "Identity_nodes": "Identity",
                    "Constant_nodes": "Constant",
                    "size_mb": "MB",
                    "cleanup_s": "clean-up s",
                    "relative_error": "rel err",
                    "session_all_s": "session s",
                    "latency_all_ms_median": "ms (all)",
                    "latency_all_ms_min": "min ms (all)",
                    "latency_basic_ms_median": "ms (basic)",
                    "latency_basic_ms_min": "min ms (basic)",
                    "latency_runs": "runs",
                },
                title="Per model",
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(SUBSET))
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for the latency runs")
    parser.add_argument(
        "--render", action="store_true", help="rewrite the .md from the existing .json without measuring"
    )
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads((RESULTS_DIR / f"{RESULT_STEM}.json").read_text())
        write_results(RESULT_STEM, payload, _markdown(payload))
        return 0
    from edgecnn import resolve_name
    from edgecnn.export.cleanup import OPTIMIZERS
    from edgecnn.export.to_onnx import DEFAULT_EXPORTER, DEFAULT_OPSET

    machine = machine_description()
    models = [resolve_name(name) for name in args.models]
    rows = []
    started = time.perf_counter()
    for index, name in enumerate(models):
        model_rows = measure_model(name, index, tuple(OPTIMIZERS), args.threads)
        rows += model_rows
        for row in model_rows:
            print(
                f"{name:20s} {row['optimizer']:9s} nodes {row['nodes']:4d}  {row['size_mb']:7.2f} MB  "
                f"clean-up {row['cleanup_s']:6.2f} s  "
                f"checks {row['checks']}  err {row['relative_error']:.1e}  all {row['latency_all_ms_median']:7.2f} ms  "
                f"basic {row['latency_basic_ms_median']:7.2f} ms",
                flush=True,
            )
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "machine": machine,
        "note": SHARED_MACHINE_NOTE,
        "exporter": DEFAULT_EXPORTER,
        "opset": DEFAULT_OPSET,
        "models": models,
        "threads": args.threads,
        "wall_s": round(time.perf_counter() - started, 1),
        "summary": _summary(rows, tuple(OPTIMIZERS)),
        "rows": rows,
    }
    write_results(RESULT_STEM, payload, _markdown(payload))
    for row in payload["summary"]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
