"""Profiler benchmarks: the static full-zoo profile time, and the estimator against host measurement.

    python bench/profile_bench.py static              # time `edgecnn profile --all --device jetson` (no measurement)
    python bench/profile_bench.py estimator           # estimated vs measured batch-1 FP32 latency over the zoo
    python bench/profile_bench.py estimator --nodes   # ... plus ONNX Runtime's per-node profile, for fitting
    python bench/profile_bench.py fit [--data FILE]   # fit the CPU execution class to saved measurements
    python bench/profile_bench.py render              # rewrite profile_estimator.md from its JSON

Results go to bench/results/profile_*.json. The estimator's figure of merit is the median absolute
percentage error (MdAPE) of estimated against measured p50 latency over the zoo at batch 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import describe_machine_markdown, machine_description, markdown_table, write_results  # noqa: E402


def static(args) -> None:
    """Wall time of the static profile of the whole zoo on every Jetson, every precision, batch 1, as a new
    user's first run sees it: an empty user cache, so the graphs come from the package (or get built)."""
    import tempfile

    from edgecnn.cache import CACHE_ENV, cache_dir
    from edgecnn.export.zoo_graphs import SHIPPED_GRAPHS_DIR
    from edgecnn.profile import ProfileOptions
    from edgecnn.profiling import profile_targets as profile
    from edgecnn.profiling import resolve_targets

    machine = machine_description()
    with tempfile.TemporaryDirectory(prefix="edgecnn-empty-cache-") as empty_cache:
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = empty_cache
        try:
            targets = resolve_targets(all_models=True)
            started = time.perf_counter()
            report = profile(targets, ProfileOptions(devices=args.device))
            seconds = time.perf_counter() - started
            built = len(list((cache_dir() / "graphs").glob("*.onnx")))
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "what": (
            f"static profile of {len(targets)} zoo models x {len(report.devices)} devices x fp32/fp16/int8, batch 1"
        ),
        "seconds": round(seconds, 2),
        "goal_seconds": 60,
        "rows": len(report.rows),
        "user_cache": "empty at start",
        "graphs_built": built,
        "machine": machine,
    }
    markdown = "\n".join(
        [
            "# Static profile of the whole zoo",
            "",
            describe_machine_markdown(machine),
            "The machine is shared with other work, so the time depends on its load (above).",
            "",
            f"`edgecnn profile --all --device {args.device}` (fp32, fp16, int8; batch 1), as on a new machine: "
            f"an empty user cache, graphs from the package "
            f"({SHIPPED_GRAPHS_DIR.relative_to(SHIPPED_GRAPHS_DIR.parents[2])}), "
            f"{built} built: **{seconds:.1f} s** for {len(report.rows)} rows (goal < 60 s).",
            "",
        ]
    )
    print(json.dumps({k: payload[k] for k in ("what", "seconds", "rows", "graphs_built")}, indent=2))
    print("written to", *write_results("profile_static", payload, markdown))


def _host_now():
    """The host measured afresh (GEMM peak, copy bandwidth), bypassing measure_host's per-process cache."""
    from edgecnn.devices import measure_host

    return measure_host.__wrapped__()


def _estimator_markdown(payload: dict) -> str:
    models, machine = payload["models"], payload["machine"]
    rows = [
        {key: m[key] for key in ("model", "gmacs", "measured_p50_ms", "estimated_ms", "ape", "host_peak_gflops")}
        for m in models
    ]
    return "\n".join(
        [
            "# Estimator vs measurement on this host (batch 1, FP32, ONNX Runtime CPU)",
            "",
            describe_machine_markdown(machine),
            "The machine is shared with other work: the host's GEMM peak and copy bandwidth are measured right before "
            "and after each model and the model is estimated with their mean, so that estimate and measurement see "
            "the same load.",
            "",
            f"**Median absolute percentage error over {len(models)} models: "
            f"{payload['median_absolute_percentage_error']:.1%}** (goal <= 35%).",
            "",
            markdown_table(
                rows,
                list(rows[0]),
                {
                    "gmacs": "GMACs",
                    "measured_p50_ms": "measured p50 ms",
                    "estimated_ms": "estimated ms",
                    "ape": "abs. error (fraction)",
                    "host_peak_gflops": "host GFLOP/s then",
                },
            ),
        ]
    )


def render(args) -> None:
    """Rewrite bench/results/<stem>.md from its .json."""
    payload = json.loads((RESULTS / f"{args.stem}.json").read_text())
    (RESULTS / f"{args.stem}.md").write_text(_estimator_markdown(payload))
    print(f"rewrote {RESULTS / (args.stem + '.md')}")


def estimator(args) -> None:
    """Measure every zoo model at batch 1 (FP32, ONNX Runtime) and compare with the host estimate.

    The machine is shared, and a peak measured once would carry whatever load there was at that moment
    into every estimate; so the host is measured right before and right after each model, and the model
    is estimated with the mean of the two (the same conditions its latency was measured under).
    """
    import dataclasses as dc

    from edgecnn.export.zoo_graphs import zoo_graph
    from edgecnn.onnx_facts import fill_weights
    from edgecnn.profile.cost import analyze
    from edgecnn.profile.estimate import estimate_latency
    from edgecnn.profile.measure import join_node_times, measure_latency, profile_nodes
    from edgecnn.registry import list_models

    machine = machine_description()
    names = args.models or list_models()
    models = []
    for name in names:
        cost = analyze(zoo_graph(name), name=name)
        runnable = fill_weights(zoo_graph(name))
        before = _host_now()
        measured = measure_latency(runnable, cost.input_shapes, warmup=2, min_runs=args.runs, min_seconds=0.5)
        after = _host_now()
        host = dc.replace(
            before,
            peak_gflops={p: (before.peak_gflops[p] + after.peak_gflops[p]) / 2 for p in before.peak_gflops},
            bandwidth_gbps=(before.bandwidth_gbps + after.bandwidth_gbps) / 2,
        )
        estimated = estimate_latency(cost, host).total_ms
        entry = {
            "model": name,
            "gmacs": cost.macs / 1e9,
            "measured_p50_ms": measured.p50_ms,
            "measured_runs": measured.runs,
            "estimated_ms": estimated,
            "ape": abs(estimated - measured.p50_ms) / measured.p50_ms,
            "host_peak_gflops": host.peak_gflops["fp32"],
            "host_bandwidth_gbps": host.bandwidth_gbps,
        }
        if args.nodes:
            joined, runtime = join_node_times(cost, profile_nodes(runnable, cost.input_shapes, warmup=1, runs=3))
            entry["nodes"] = [
                {
                    "name": node.name,
                    "kind": node.kind,
                    "macs": node.macs,
                    "flops": node.flops,
                    "bytes": node.bytes_moved,
                    "ms": joined[node.name].ms if node.name in joined else None,
                }
                for node in cost.nodes
            ]
            entry["runtime_ms"] = sum(item.ms for item in runtime)
        models.append(entry)
        print(
            f"{name:24s} measured {measured.p50_ms:9.2f} ms  estimated {estimated:9.2f} ms  APE {entry['ape']:6.1%}"
            f"  (host {host.peak_gflops['fp32']:.1f} GFLOP/s, {host.bandwidth_gbps:.1f} GB/s)",
            flush=True,
        )
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    mdape = statistics.median(m["ape"] for m in models)
    payload = {
        "what": "estimated vs measured batch-1 FP32 latency on this host (ONNX Runtime CPU, all cores)",
        "machine": machine,
        "median_absolute_percentage_error": mdape,
        "models": models,
    }
    markdown = _estimator_markdown(payload)
    print(f"MdAPE over {len(models)} models: {mdape:.1%}")
    print("written to", *write_results(args.stem, payload, markdown))


def fit(args) -> None:
    """Grid-search the CPU class's factors on half the zoo (alternate names), report MdAPE on both halves.

    Uses the host figures saved with the measurements (the GEMM peak and copy bandwidth measured in the
    same run), so that factors are relative to the conditions the latencies were measured under.
    """
    from edgecnn.devices import Device
    from edgecnn.export.zoo_graphs import zoo_graph
    from edgecnn.profile.cost import analyze
    from edgecnn.profile.estimate import EXECUTION_CLASSES, estimate_latency

    saved = json.loads(Path(args.data).read_text())
    base_host = Device(**saved["host"]) if "host" in saved else _host_now()
    hosts = {
        m["model"]: dataclasses.replace(
            base_host,
            peak_gflops={p: m["host_peak_gflops"] for p in base_host.peak_gflops},
            bandwidth_gbps=m["host_bandwidth_gbps"],
        )
        if "host_peak_gflops" in m
        else base_host
        for m in saved["models"]
    }
    measured = {m["model"]: m["measured_p50_ms"] for m in saved["models"]}
    costs = {name: analyze(zoo_graph(name), name=name) for name in measured}
    names = sorted(measured)
    train, test = names[::2], names[1::2]
    base = EXECUTION_CLASSES["cpu"]

    def mdape(klass, subset):
        return statistics.median(
            abs(estimate_latency(costs[n], hosts[n], klass).total_ms - measured[n]) / measured[n] for n in subset
        )

    grid = {
        "conv": [0.8, 1.0, 1.2, 1.5, 2.0],
        "pointwise": [0.6, 0.8, 1.0, 1.2, 1.5],
        "depthwise": [0.2, 0.4, 0.6],
        "half_size_macs": [1e5, 5e5, 2e6],
        "layer_overhead_us": [5.0, 10.0, 20.0],
        "memory_efficiency": [0.5, 0.8, 1.0, 1.5],
    }
    best = None
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        efficiency = dict(
            base.compute_efficiency,
            conv=setting["conv"],
            pointwise=setting["pointwise"],
            depthwise=setting["depthwise"],
        )
        klass = dataclasses.replace(
            base,
            compute_efficiency=efficiency,
            half_size_macs=setting["half_size_macs"],
            layer_overhead_us=setting["layer_overhead_us"],
            memory_efficiency=setting["memory_efficiency"],
        )
        score = mdape(klass, train)
        if best is None or score < best[0]:
            best = (score, setting, klass)
    score, setting, klass = best
    payload = {
        "fitted_on": train,
        "held_out": test,
        "setting": setting,
        "mdape_train": score,
        "mdape_held_out": mdape(klass, test),
        "mdape_all": mdape(klass, names),
        "mdape_current_factors_all": mdape(base, names),
    }
    print(json.dumps(payload, indent=2))
    markdown = "\n".join(
        [
            "# CPU execution class fitted to host measurements",
            "",
            f"Data: {args.data}. Grid search on the even-indexed half of the zoo (sorted by name), "
            "checked on the other half.",
            "",
            markdown_table([{"factor": k, "value": v} for k, v in setting.items()], ["factor", "value"]),
            f"MdAPE: fitted half {payload['mdape_train']:.1%}, held-out half {payload['mdape_held_out']:.1%}, "
            f"all {payload['mdape_all']:.1%} (factors in edgecnn/estimate.py before this fit: "
            f"{payload['mdape_current_factors_all']:.1%}).",
            "",
        ]
    )
    print("written to", *write_results("profile_fit", payload, markdown))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    static_parser = commands.add_parser("static")
    static_parser.add_argument("--device", default="jetson")
    estimator_parser = commands.add_parser("estimator")
    estimator_parser.add_argument("--models", nargs="*")
    estimator_parser.add_argument("--runs", type=int, default=7)
    estimator_parser.add_argument("--nodes", action="store_true")
    estimator_parser.add_argument("--stem", default="profile_estimator", help="result file name under bench/results/")
    render_parser = commands.add_parser("render")
    render_parser.add_argument("--stem", default="profile_estimator")
    fit_parser = commands.add_parser("fit")
    fit_parser.add_argument(
        "--data",
        default=str(RESULTS / "profile_estimator.json"),
        help="measurements written by 'estimator' (the committed fit used profile_estimator_fitdata.json)",
    )
    args = parser.parse_args(argv)
    {"static": static, "estimator": estimator, "fit": fit, "render": render}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
