"""Profiler benchmarks: the static full-zoo profile time, and the estimator against host measurement.

    python bench/profile_bench.py static              # time `edgecnn profile --all --device jetson` (no measurement)
    python bench/profile_bench.py estimator           # estimated vs measured batch-1 FP32 latency over the zoo
    python bench/profile_bench.py estimator --nodes   # ... plus ONNX Runtime's per-node profile, for fitting
    python bench/profile_bench.py fit                 # fit the CPU execution class to the saved measurements

Results go to bench/results/profile_*.json. The estimator's figure of merit is the median absolute
percentage error (MdAPE) of estimated against measured p50 latency over the zoo at batch 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def static(args) -> None:
    """Wall time of the static profile of the whole zoo on every Jetson, every precision, batch 1."""
    from edgecnn.graphs import cache_dir
    from edgecnn.profiler import ProfileOptions, profile, resolve_targets

    targets = resolve_targets(all_models=True)
    started = time.perf_counter()
    report = profile(targets, ProfileOptions(devices=args.device))
    seconds = time.perf_counter() - started
    payload = {
        "what": f"static profile of {len(targets)} zoo models x {len(report.devices)} devices x fp32/fp16/int8, batch 1",
        "seconds": round(seconds, 2),
        "rows": len(report.rows),
        "cache": str(cache_dir()),
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(payload, indent=2))
    print(f"written to {_write('profile_static.json', payload)}")


def estimator(args) -> None:
    """Measure every zoo model at batch 1 (FP32, ONNX Runtime) and compare with the host estimate."""
    from edgecnn.cost import analyze
    from edgecnn.devices import measure_host
    from edgecnn.estimate import estimate_latency
    from edgecnn.graphs import fill_weights, zoo_graph
    from edgecnn.measure import join_node_times, measure_latency, profile_nodes
    from edgecnn.registry import list_models

    host = measure_host()
    names = args.models or list_models()
    models = []
    for name in names:
        cost = analyze(zoo_graph(name), name=name)
        runnable = fill_weights(zoo_graph(name))
        measured = measure_latency(runnable, cost.input_shapes, warmup=2, min_runs=args.runs, min_seconds=0.5)
        estimated = estimate_latency(cost, host).total_ms
        entry = {
            "model": name, "macs": cost.macs, "measured_p50_ms": measured.p50_ms, "measured_runs": measured.runs,
            "estimated_ms": estimated, "ape": abs(estimated - measured.p50_ms) / measured.p50_ms,
        }
        if args.nodes:
            joined, runtime = join_node_times(cost, profile_nodes(runnable, cost.input_shapes, warmup=1, runs=3))
            entry["nodes"] = [
                {"name": node.name, "kind": node.kind, "macs": node.macs, "flops": node.flops,
                 "bytes": node.bytes_moved, "ms": joined[node.name].ms if node.name in joined else None}
                for node in cost.nodes
            ]
            entry["runtime_ms"] = sum(item.ms for item in runtime)
        models.append(entry)
        print(f"{name:24s} measured {measured.p50_ms:9.2f} ms  estimated {estimated:9.2f} ms  APE {entry['ape']:6.1%}", flush=True)
    mdape = statistics.median(m["ape"] for m in models)
    payload = {
        "what": "estimated vs measured batch-1 FP32 latency on this host (ONNX Runtime CPU, all cores)",
        "host": dataclasses.asdict(host),
        "load_average": os.getloadavg()[0],
        "median_absolute_percentage_error": mdape,
        "models": models,
    }
    print(f"MdAPE over {len(models)} models: {mdape:.1%}")
    print(f"written to {_write('profile_estimator.json', payload)}")


def fit(args) -> None:
    """Grid-search the CPU class's factors on half the zoo, report MdAPE on both halves (in- and out-of-sample)."""
    from edgecnn.cost import analyze
    from edgecnn.devices import measure_host
    from edgecnn.estimate import EXECUTION_CLASSES, estimate_latency
    from edgecnn.graphs import zoo_graph

    saved = json.loads((RESULTS / "profile_estimator.json").read_text())
    host = measure_host()
    measured = {m["model"]: m["measured_p50_ms"] for m in saved["models"]}
    costs = {name: analyze(zoo_graph(name), name=name) for name in measured}
    names = sorted(measured)
    train, test = names[::2], names[1::2]
    base = EXECUTION_CLASSES["cpu"]

    def mdape(klass, subset):
        return statistics.median(abs(estimate_latency(costs[n], host, klass).total_ms - measured[n]) / measured[n] for n in subset)

    grid = {
        "conv": [0.5, 0.6, 0.7, 0.8, 0.9],
        "pointwise": [0.4, 0.5, 0.6, 0.7, 0.8],
        "depthwise": [0.03, 0.06, 0.1],
        "gemm": [0.3, 0.6],
        "half_size_macs": [0.5e6, 2e6, 5e6],
        "layer_overhead_us": [5.0, 15.0, 30.0],
        "memory_efficiency": [0.3, 0.5, 0.8],
    }
    best = None
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        efficiency = dict(base.compute_efficiency, conv=setting["conv"], pointwise=setting["pointwise"],
                          depthwise=setting["depthwise"], gemm=setting["gemm"],
                          grouped=min(setting["conv"], 0.3))
        klass = dataclasses.replace(base, compute_efficiency=efficiency, half_size_macs=setting["half_size_macs"],
                                    layer_overhead_us=setting["layer_overhead_us"], memory_efficiency=setting["memory_efficiency"])
        score = mdape(klass, train)
        if best is None or score < best[0]:
            best = (score, setting, klass)
    score, setting, klass = best
    payload = {
        "fitted_on": train, "held_out": test, "setting": setting,
        "mdape_train": score, "mdape_held_out": mdape(klass, test), "mdape_all": mdape(klass, names),
        "mdape_current_factors_all": mdape(base, names),
    }
    print(json.dumps(payload, indent=2))
    print(f"written to {_write('profile_fit.json', payload)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    static_parser = commands.add_parser("static")
    static_parser.add_argument("--device", default="jetson")
    estimator_parser = commands.add_parser("estimator")
    estimator_parser.add_argument("--models", nargs="*")
    estimator_parser.add_argument("--runs", type=int, default=7)
    estimator_parser.add_argument("--nodes", action="store_true")
    commands.add_parser("fit")
    args = parser.parse_args(argv)
    {"static": static, "estimator": estimator, "fit": fit}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
