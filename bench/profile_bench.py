"""Profiler benchmarks: the static full-zoo profile time, and the estimator against host measurement.

    python bench/profile_bench.py static              # time `edgecnn profile --all --device jetson` (no measurement)
    python bench/profile_bench.py estimator           # estimated vs measured batch-1 FP32 latency over the zoo
    python bench/profile_bench.py estimator --nodes   # ... plus ONNX Runtime's per-node profile, for fitting
    python bench/profile_bench.py fit [--data FILE]   # fit the CPU execution class to saved measurements
    python bench/profile_bench.py render              # rewrite profile_estimator.md from its JSON
    python bench/profile_bench.py lofo                # leave-one-family-out validation + run-to-run noise

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


FIT_GRID = {
    "conv": [0.8, 1.0, 1.2, 1.5, 2.0],
    "pointwise": [0.6, 0.8, 1.0, 1.2, 1.5],
    "depthwise": [0.2, 0.4, 0.6],
    "half_size_macs": [1e5, 5e5, 2e6],
    "layer_overhead_us": [5.0, 10.0, 20.0],
    "memory_efficiency": [0.5, 0.8, 1.0, 1.5],
}
"""The grid ``fit`` searches; ``lofo`` refits it once per held-out family."""

LOFO_SUBSET = [
    "alexnet",
    "squeezenet1_1",
    "mobilenet_v1_0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "shufflenet_v1_g1",
    "shufflenet_v2_x0_5",
    "resnet18",
    "preact_resnet18",
    "googlenet",
    "densenet121",
    "nin",
]
"""Twelve small models from twelve families: the cheap fresh measurement (batch 1, about a minute of CPU)."""


class _FastEstimate:
    """estimate_latency's CPU total for one graph under many factor settings, vectorized with numpy.

    Which nodes are fused or free does not depend on the factors, so it is taken once from estimate_latency;
    the constructor checks that the vectorized total equals estimate_latency's for the shipped factors.
    """

    def __init__(self, cost, host, base) -> None:
        import numpy as np

        from edgecnn.profile.estimate import estimate_latency

        reference = estimate_latency(cost, host, base)
        kept = [
            (node, layer) for node, layer in zip(cost.nodes, reference.layers) if layer.bound not in ("fused", "free")
        ]
        self.kinds = [node.kind if node.kind in base.compute_efficiency else "other" for node, _ in kept]
        self.kind_order = sorted(set(self.kinds))
        self.kind_index = np.array([self.kind_order.index(kind) for kind in self.kinds], dtype=int)
        self.macs = np.array([node.macs for node, _ in kept], dtype=float)
        self.flops = np.array([node.flops if node.counted else 0 for node, _ in kept], dtype=float)
        self.bytes = np.array([node.bytes_moved for node, _ in kept], dtype=float)
        self.peak = host.peak_gflops["fp32"] * 1e9
        self.bandwidth = host.bandwidth_gbps * 1e9
        self.base = base
        total = self(base.compute_efficiency, base.half_size_macs, base.layer_overhead_us, base.memory_efficiency)
        assert abs(total - reference.total_ms) <= 1e-6 * max(1.0, reference.total_ms), (total, reference.total_ms)

    def __call__(self, efficiency, half_size_macs, overhead_us, memory_efficiency) -> float:
        import numpy as np

        eff = np.array([efficiency[kind] for kind in self.kind_order])[self.kind_index]
        size = np.where(self.macs > 0, self.macs / (self.macs + half_size_macs), 1.0)
        compute = np.where(self.flops > 0, self.flops / (self.peak * eff * np.maximum(size, 1e-30)), 0.0)
        memory = self.bytes / (self.bandwidth * memory_efficiency)
        return float((np.maximum(compute, memory).sum() + overhead_us * 1e-6 * len(self.kinds)) * 1e3)


def _grid_estimates(fast: dict, base) -> tuple[list[dict], dict[str, list[float]]]:
    """Every FIT_GRID setting and, per model, its estimate under each."""
    settings = [dict(zip(FIT_GRID, values)) for values in itertools.product(*FIT_GRID.values())]
    table = {name: [] for name in fast}
    for setting in settings:
        efficiency = dict(
            base.compute_efficiency,
            conv=setting["conv"],
            pointwise=setting["pointwise"],
            depthwise=setting["depthwise"],
        )
        for name, estimate in fast.items():
            table[name].append(
                estimate(
                    efficiency, setting["half_size_macs"], setting["layer_overhead_us"], setting["memory_efficiency"]
                )
            )
    return settings, table


def _lofo(measured: dict[str, float], hosts: dict, families: dict[str, str]) -> dict:
    """Leave-one-family-out: per family, fit the grid on every other family and score the held-out one."""
    from edgecnn.export.zoo_graphs import zoo_graph
    from edgecnn.profile.cost import analyze
    from edgecnn.profile.estimate import EXECUTION_CLASSES

    base = EXECUTION_CLASSES["cpu"]
    fast = {name: _FastEstimate(analyze(zoo_graph(name), name=name), hosts[name], base) for name in measured}
    settings, table = _grid_estimates(fast, base)
    names = sorted(measured)

    def errors(index: int, subset) -> list[float]:
        return [abs(table[n][index] - measured[n]) / measured[n] for n in subset]

    rows, held_out_errors = [], []
    for family in sorted(set(families[n] for n in names)):
        test = [n for n in names if families[n] == family]
        train = [n for n in names if families[n] != family]
        best = min(range(len(settings)), key=lambda i: statistics.median(errors(i, train)))
        test_errors = errors(best, test)
        held_out_errors += test_errors
        rows.append(
            {
                "family": family,
                "models": len(test),
                "train_mdape": statistics.median(errors(best, train)),
                "held_out_mdape": statistics.median(test_errors),
                "held_out_max_ape": max(test_errors),
                "setting": settings[best],
            }
        )
    shipped = [abs(fast[n](*_shipped_args(base)) - measured[n]) / measured[n] for n in names]
    return {
        "families": rows,
        "models": len(names),
        "lofo_mdape": statistics.median(held_out_errors),
        "lofo_p90_ape": sorted(held_out_errors)[int(0.9 * (len(held_out_errors) - 1))],
        "median_family_mdape": statistics.median(row["held_out_mdape"] for row in rows),
        "shipped_factors_mdape": statistics.median(shipped),
    }


def _shipped_args(base) -> tuple:
    return base.compute_efficiency, base.half_size_macs, base.layer_overhead_us, base.memory_efficiency


def lofo(args) -> None:
    """Leave-one-family-out validation of the CPU factors, and run-to-run noise on the same host.

    Part 1 refits the grid on the committed full-zoo measurements (profile_estimator_fitdata.json: 59 models,
    the AVX-512 EPYC host the shipped factors came from), holding out one family (registry ``spec.family``)
    at a time. Part 2 measures LOFO_SUBSET twice on this host (batch 1), estimates each model with the host
    figures measured around it, and reports the run-to-run change of p50 beside the LOFO error; it also
    scores the shipped factors and this host's ``--calibrate-host`` factors (fitted in the same run).
    """
    import dataclasses as dc

    from edgecnn.export.zoo_graphs import zoo_graph
    from edgecnn.onnx_facts import fill_weights
    from edgecnn.profile.calibrate import calibrate_host
    from edgecnn.profile.cost import analyze
    from edgecnn.profile.estimate import EXECUTION_CLASSES, estimate_latency
    from edgecnn.profile.measure import measure_latency
    from edgecnn.registry import get_spec

    saved = json.loads(Path(args.data).read_text())
    base_host = _saved_host(saved)
    hosts = {
        m["model"]: dataclasses.replace(
            base_host,
            peak_gflops={p: m["host_peak_gflops"] for p in base_host.peak_gflops},
            bandwidth_gbps=m["host_bandwidth_gbps"],
        )
        for m in saved["models"]
    }
    measured = {m["model"]: m["measured_p50_ms"] for m in saved["models"]}
    families = {name: get_spec(name).family for name in measured}
    committed = _lofo(measured, hosts, families)
    print(f"committed data: LOFO MdAPE {committed['lofo_mdape']:.1%} over {committed['models']} models", flush=True)

    machine = machine_description()
    started = time.perf_counter()
    calibration = calibrate_host(save=False)
    calibrated = dc.replace(
        EXECUTION_CLASSES["cpu"],
        compute_efficiency=dict(calibration.compute_efficiency),
        memory_efficiency=calibration.memory_efficiency,
        layer_overhead_us=calibration.layer_overhead_us,
    )
    passes: list[dict[str, dict]] = [{}, {}]
    graphs = {name: fill_weights(zoo_graph(name)) for name in args.models}
    costs = {name: analyze(zoo_graph(name), name=name) for name in args.models}
    for index in range(2):
        for name in args.models:
            before = _host_now()
            p50 = measure_latency(graphs[name], costs[name].input_shapes, warmup=2, min_runs=5, min_seconds=0.3).p50_ms
            after = _host_now()
            host = dc.replace(
                before,
                peak_gflops={p: (before.peak_gflops[p] + after.peak_gflops[p]) / 2 for p in before.peak_gflops},
                bandwidth_gbps=(before.bandwidth_gbps + after.bandwidth_gbps) / 2,
            )
            passes[index][name] = {"p50_ms": p50, "host": host}
            print(
                f"pass {index + 1} {name:22s} {p50:8.2f} ms (host {host.peak_gflops['fp32']:.1f} GFLOP/s)", flush=True
            )
    seconds = time.perf_counter() - started
    changes = {n: abs(passes[1][n]["p50_ms"] - passes[0][n]["p50_ms"]) / passes[0][n]["p50_ms"] for n in args.models}
    fresh_measured = {n: passes[0][n]["p50_ms"] for n in args.models}
    fresh_hosts = {n: passes[0][n]["host"] for n in args.models}
    fresh = _lofo(fresh_measured, fresh_hosts, {n: get_spec(n).family for n in args.models})

    def mdape(klass) -> float:
        return statistics.median(
            abs(estimate_latency(costs[n], fresh_hosts[n], klass).total_ms - fresh_measured[n]) / fresh_measured[n]
            for n in args.models
        )

    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "what": "leave-one-family-out validation of the CPU factors, and run-to-run noise (batch 1, FP32, ORT CPU)",
        "committed_data": {"file": str(Path(args.data).name), "machine": saved.get("machine"), **committed},
        "fresh": {
            "machine": machine,
            "models": args.models,
            "seconds": round(seconds, 1),
            "noise_median_abs_p50_change": statistics.median(changes.values()),
            "noise_max_abs_p50_change": max(changes.values()),
            "noise_per_model": changes,
            "p50_ms": {n: [passes[0][n]["p50_ms"], passes[1][n]["p50_ms"]] for n in args.models},
            "shipped_factors_mdape": mdape(EXECUTION_CLASSES["cpu"]),
            "calibrated_factors_mdape": mdape(calibrated),
            "calibration": calibration.as_dict(),
            "lofo": fresh,
        },
    }
    print("written to", *write_results("profile_lofo", payload, _lofo_markdown(payload)))


def _saved_host(saved: dict):
    """The host a saved measurement file was made on (its own figures, else this host measured now)."""
    from edgecnn.devices import Device

    return Device(**saved["host"]) if "host" in saved else _host_now()


def _lofo_markdown(payload: dict) -> str:
    committed, fresh = payload["committed_data"], payload["fresh"]

    def family_rows(result: dict) -> list[dict]:
        return [
            {
                "held-out family": row["family"],
                "models": row["models"],
                "MdAPE on the other families (fit)": f"{row['train_mdape']:.1%}",
                "MdAPE held out": f"{row['held_out_mdape']:.1%}",
                "max APE held out": f"{row['held_out_max_ape']:.1%}",
            }
            for row in result["families"]
        ]

    columns = [
        "held-out family",
        "models",
        "MdAPE on the other families (fit)",
        "MdAPE held out",
        "max APE held out",
    ]
    return "\n".join(
        [
            "# CPU latency estimate: leave-one-family-out validation and run-to-run noise",
            "",
            "## 1. The committed full-zoo measurements (the host the shipped factors were fitted on)",
            "",
            f"Data: {committed['file']} ({committed['models']} models, batch 1, FP32, ONNX Runtime; 2-core AVX-512 "
            "AMD EPYC). For each family (registry `spec.family`) the factor grid of `profile_bench.py fit` is refitted "
            "on every other family and scored on the held-out one.",
            "",
            f"**Leave-one-family-out MdAPE over all held-out models: {committed['lofo_mdape']:.1%}** "
            f"(90th percentile {committed['lofo_p90_ape']:.1%}; median of the per-family MdAPEs "
            f"{committed['median_family_mdape']:.1%}); the shipped factors, fitted on all of it, score "
            f"{committed['shipped_factors_mdape']:.1%} in-sample.",
            "",
            markdown_table(family_rows(committed), columns),
            "",
            "## 2. Fresh, cheap measurement on this host, twice (run-to-run noise)",
            "",
            describe_machine_markdown(fresh["machine"]),
            f"The machine is shared with other engineers' work (see the load average): {len(fresh['models'])} small "
            f"models from {len(fresh['models'])} families at batch 1, each measured twice (two passes), "
            f"{fresh['seconds']:.0f} s in all including the host microbenchmark.",
            "",
            f"**Run-to-run noise: median |p50 change| between the passes {fresh['noise_median_abs_p50_change']:.1%}** "
            f"(max {fresh['noise_max_abs_p50_change']:.1%}).",
            "",
            f"On this host: shipped factors MdAPE {fresh['shipped_factors_mdape']:.1%}; factors fitted here by "
            f"`edgecnn devices --calibrate-host` (same run) {fresh['calibrated_factors_mdape']:.1%}; "
            f"leave-one-family-out refit of the grid on these {len(fresh['models'])} models "
            f"{fresh['lofo']['lofo_mdape']:.1%}.",
            "",
            markdown_table(
                [
                    {
                        "model": n,
                        "pass 1 p50 ms": round(fresh["p50_ms"][n][0], 3),
                        "pass 2 p50 ms": round(fresh["p50_ms"][n][1], 3),
                        "|change|": f"{fresh['noise_per_model'][n]:.1%}",
                    }
                    for n in fresh["models"]
                ],
                ["model", "pass 1 p50 ms", "pass 2 p50 ms", "|change|"],
            ),
            "",
        ]
    )


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
    lofo_parser = commands.add_parser("lofo")
    lofo_parser.add_argument("--data", default=str(RESULTS / "profile_estimator_fitdata.json"))
    lofo_parser.add_argument("--models", nargs="*", default=LOFO_SUBSET)
    args = parser.parse_args(argv)
    {"static": static, "estimator": estimator, "fit": fit, "render": render, "lofo": lofo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
