"""Choose ONNX Runtime session settings by measurement: threads, optimization level, execution mode, memory.

Each knob of :class:`edgecnn.runtime.SessionSettings` is varied alone against the base settings
(``SessionSettings()``: ONNX Runtime's defaults when the process may use every core), on a few
zoo models at batch 1, every variant of a model timed in one process in alternating rounds
(:func:`edgecnn.benchmark.measure_alternating`); a plain ``InferenceSession`` (ONNX Runtime's defaults)
runs alongside for reference. A second base session (the A/A pair) measures the noise: a knob is adopted
only when it is faster than the base by more than the larger of 3% and twice the A/A difference
(geometric mean over the models) and slower on no model by more than that margin. A single thread is
measured for information only: it wins only where other work already occupies the cores, and a fixed
count cannot be a default for every machine. The combination is then
confirmed against ONNX Runtime's defaults and against the settings edgecnn applies now
(``edgecnn.runtime.MEASURED_SETTINGS``) at batch 1 and 8.

    .venv/bin/python bench/ort_settings.py
    .venv/bin/python bench/ort_settings.py --models mobilenet_v2 resnet18 --rounds 8

Writes bench/results/ort_settings.json and .md; says whether runtime.py's settings agree with the choice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from _util import SHARED_MACHINE_NOTE, describe_machine_markdown, machine_description, markdown_table, write_results

RESULT_STEM = "ort_settings"
MODELS = ("squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "resnet18", "googlenet")
MIN_GAIN = 0.03
DEFAULTS = "ort defaults"
BASE = "base"
BASE_AGAIN = "base (A/A)"

VARIANTS: dict[str, dict[str, Any]] = {
    "threads 1": {"intra_op_threads": 1},
    "threads = usable cores (unpinned)": {"onnxruntime_picks_threads": False},
    "optimization extended": {"optimization": "extended"},
    "optimization basic": {"optimization": "basic"},
    "execution parallel": {"execution_mode": "parallel"},
    "cpu arena off": {"cpu_mem_arena": False},
    "memory pattern off": {"mem_pattern": False},
    "spinning off": {"allow_spinning": False},
    "dynamic block base 4": {"dynamic_block_base": 4},
}
"""Each variant changes one knob of the base, SessionSettings() (ONNX Runtime's defaults where this process may
use every core)."""

INFORMATION_ONLY = {
    "threads 1": "a fixed thread count cannot be a default for every machine (--threads sets one per run)"
}
"""Variants measured but never adopted: one thread wins only where other work already occupies the cores."""


def default_session(path: Path):
    """What a user gets from ``onnxruntime.InferenceSession(path)`` on a CPU: every option at its default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(session, inputs):
    feed = {session.get_inputs()[0].name: inputs}
    return lambda: session.run(None, feed)


def export_models(models: list[str], export_dir: Path) -> dict[str, Path]:
    from edgecnn.benchmark import prepare_artifacts

    paths = {}
    for name in models:
        started = time.perf_counter()
        artifacts = prepare_artifacts(name, ["onnx-fp32"], export_dir=export_dir, batches=(1, 8))
        if "onnx-fp32" not in artifacts.files:
            raise SystemExit(f"{name}: {artifacts.failures.get('onnx-fp32', 'export failed')}")
        paths[name] = artifacts.files["onnx-fp32"]
        print(f"exported {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return paths


def sweep(paths: dict[str, Path], rounds: int, round_seconds: float) -> list[dict[str, Any]]:
    """Per model: the base, its A/A twin, every single-knob variant and ONNX Runtime's defaults, alternated, at
    batch 1."""
    from edgecnn.benchmark import measure_alternating
    from edgecnn.export.verify import check_inputs
    from edgecnn.runtime import SessionSettings, create_session

    rows = []
    for name, path in paths.items():
        sessions = {
            BASE: create_session(path, settings=SessionSettings()),
            BASE_AGAIN: create_session(path, settings=SessionSettings()),
        }
        for variant, change in VARIANTS.items():
            sessions[variant] = create_session(path, settings=replace(SessionSettings(), **change))
        sessions[DEFAULTS] = default_session(path)
        shape = [d if isinstance(d, int) else 1 for d in sessions[BASE].get_inputs()[0].shape]
        inputs = check_inputs(tuple(shape))
        latencies = measure_alternating(
            {k: runner(s, inputs) for k, s in sessions.items()}, rounds=rounds, round_seconds=round_seconds
        )
        base = latencies[BASE].p50_ms
        for variant, latency in latencies.items():
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "p50_ms": latency.p50_ms,
                    "p90_ms": latency.p90_ms,
                    "runs": latency.runs,
                    "ratio": latency.p50_ms / base,
                }
            )
        print(
            f"{name}: base {base:.2f} ms; "
            + ", ".join(f"{v} {latencies[v].p50_ms / base:.3f}" for v in latencies if v != BASE),
            flush=True,
        )
    return rows


def choose(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """The adopted knob values, a summary row per variant, and the margin a variant had to beat."""
    ratios: dict[str, list[float]] = {}
    for row in rows:
        ratios.setdefault(row["variant"], []).append(row["ratio"])
    margin = max(MIN_GAIN, 2 * abs(statistics.geometric_mean(ratios[BASE_AGAIN]) - 1.0))
    summary = []
    winners: dict[str, tuple[float, str]] = {}
    for variant, values in ratios.items():
        if variant == BASE:
            continue
        geomean = statistics.geometric_mean(values)
        wins = (
            variant in VARIANTS
            and variant not in INFORMATION_ONLY
            and geomean < 1 - margin
            and max(values) <= 1 + margin
        )
        summary.append(
            {
                "variant": variant,
                "geomean_ratio": geomean,
                "best_ratio": min(values),
                "worst_ratio": max(values),
                "wins": wins,
            }
        )
        if wins:
            (knob,) = VARIANTS[variant]
            if knob not in winners or geomean < winners[knob][0]:
                winners[knob] = (geomean, variant)
    chosen_variants = {variant for _, variant in winners.values()}
    for row in summary:
        wins = row.pop("wins")
        row["adopted"] = (
            "yes"
            if row["variant"] in chosen_variants
            else "no, beaten by another value"
            if wins
            else f"no, information only: {INFORMATION_ONLY[row['variant']]}"
            if row["variant"] in INFORMATION_ONLY
            else "no"
        )
    adopted = {knob: VARIANTS[variant][knob] for knob, (_, variant) in winners.items()}
    return adopted, summary, margin


def confirm(paths: dict[str, Path], chosen, rounds: int, round_seconds: float) -> list[dict[str, Any]]:
    """Defaults, the chosen combination and edgecnn's current settings, alternated at batch 1 and 8."""
    from edgecnn.benchmark import measure_alternating
    from edgecnn.export.verify import check_inputs
    from edgecnn.runtime import MEASURED_SETTINGS, create_session

    rows = []
    for name, path in paths.items():
        sessions = {
            DEFAULTS: default_session(path),
            "chosen": create_session(path, settings=chosen),
            "edgecnn now": create_session(path, settings=MEASURED_SETTINGS),
        }
        shape = [d if isinstance(d, int) else None for d in sessions[DEFAULTS].get_inputs()[0].shape]
        for batch in (1, 8):
            inputs = check_inputs((batch, *shape[1:]), seed=batch)
            latencies = measure_alternating(
                {k: runner(s, inputs) for k, s in sessions.items()}, rounds=rounds, round_seconds=round_seconds
            )
            base = latencies[DEFAULTS].p50_ms
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "defaults_ms": base,
                    "chosen_ms": latencies["chosen"].p50_ms,
                    "chosen_ratio": latencies["chosen"].p50_ms / base,
                    "edgecnn_ms": latencies["edgecnn now"].p50_ms,
                    "edgecnn_ratio": latencies["edgecnn now"].p50_ms / base,
                }
            )
            print(
                f"confirm {name} batch {batch}: defaults {base:.2f} ms, chosen x{rows[-1]['chosen_ratio']:.3f}, "
                f"edgecnn now x{rows[-1]['edgecnn_ratio']:.3f}",
                flush=True,
            )
    return rows


def _markdown(payload: dict[str, Any]) -> str:
    per_model = {}
    for row in payload["sweep"]:
        per_model.setdefault(row["model"], {"model": row["model"]})[row["variant"]] = row["ratio"]
        if row["variant"] == BASE:
            per_model[row["model"]]["base_ms"] = row["p50_ms"]
    variants = [BASE_AGAIN, *VARIANTS, DEFAULTS]
    verdict = payload["verdict"]
    return "\n".join(
        [
            "# ONNX Runtime session settings, chosen by measurement",
            "",
            f"Each knob varied alone against the base (`SessionSettings()`: ONNX Runtime's defaults when the process "
            f"may use every core), batch 1, p50 over {payload['rounds']} alternating rounds per model; ratio = "
            f"variant p50 / base p50 (below 1 is faster); `{DEFAULTS}` is a plain `InferenceSession`. The A/A column "
            f"is a second base session: its distance from 1 is the noise. A knob is adopted when its geometric-mean "
            f"ratio is below "
            f"1 - {payload['margin']:.3f} and it is slower on no model by more than that.",
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(payload["machine"]),
            markdown_table(
                list(per_model.values()),
                ["model", "base_ms", *variants],
                headers={"base_ms": "base p50 ms"},
                title="Ratio to the base settings, batch 1",
            ),
            markdown_table(
                payload["summary"],
                ["variant", "geomean_ratio", "best_ratio", "worst_ratio", "adopted"],
                title="Per knob",
            ),
            f"**Chosen settings**: `{payload['chosen']}`",
            "",
            markdown_table(
                payload["confirm"],
                ["model", "batch", "defaults_ms", "chosen_ms", "chosen_ratio", "edgecnn_ms", "edgecnn_ratio"],
                title="Confirmation: chosen and edgecnn's current settings against the defaults",
            ),
            f"**edgecnn.runtime.MEASURED_SETTINGS**: `{payload['edgecnn_settings']}` -- {verdict}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-seconds", type=float, default=0.15)
    parser.add_argument("--export-dir", type=Path, help="reuse exports here (default: a temporary directory)")
    args = parser.parse_args(argv)

    from edgecnn.runtime import MEASURED_SETTINGS, SessionSettings

    machine = machine_description()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-settings-") as scratch:
        paths = export_models(args.models, args.export_dir or Path(scratch))
        rows = sweep(paths, args.rounds, args.round_seconds)
        adopted, summary, margin = choose(rows)
        chosen = replace(SessionSettings(), **adopted)
        confirmation = confirm(paths, chosen, args.rounds, args.round_seconds)
    agrees = chosen == MEASURED_SETTINGS
    verdict = "agrees with the choice" if agrees else f"differs from the choice: set MEASURED_SETTINGS = {chosen!r}"
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "machine": machine,
        "note": SHARED_MACHINE_NOTE,
        "rounds": args.rounds,
        "margin": margin,
        "variants": VARIANTS,
        "sweep": rows,
        "summary": summary,
        "chosen": asdict(chosen),
        "confirm": confirmation,
        "edgecnn_settings": asdict(MEASURED_SETTINGS),
        "agrees": agrees,
        "verdict": verdict,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_results(RESULT_STEM, payload, _markdown(payload))
    print(f"chosen: {chosen}\nedgecnn.runtime.MEASURED_SETTINGS {verdict}\n({payload['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
