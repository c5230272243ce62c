"""Run the bench/ suite end to end, each script in its own process, and report the time each took.

Scripts run one after another (never in parallel: each one's timings need the machine to itself); one that
is not in this checkout is listed as absent, one that fails is listed with its last output line, and the
rest go on. The ONNX exports that ort_settings.py and latency_bench.py need are shared through one
directory (temporary unless ``--export-dir`` is given). ``exporter_compare.py`` (issue 3's one-off comparison of
torch's two exporters, about an hour) is left out unless ``--include-long`` is given.

Goal (issue 7): the suite runs end to end in under 30 minutes on the 2-core development machine.

    .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --only latency_bench ort_settings
    .venv/bin/python bench/run_all.py --skip export_bench --include-long

Writes bench/results/run_all.json and bench/results/run_all.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _util import SHARED_MACHINE_NOTE, describe_machine_markdown, machine_description, markdown_table, write_results

BENCH_DIR = Path(__file__).resolve().parent
RESULT_STEM = "run_all"
GOAL_S = 30 * 60
EXPORTS = "{exports}"
"""Placeholder in a script's arguments for the shared export directory."""


@dataclass(frozen=True)
class Script:
    name: str
    args: tuple[str, ...]
    measures: str
    long: bool = False


SUITE: tuple[Script, ...] = (
    Script("export_bench", (), "export + verify time and peak RSS per zoo model; the whole zoo in one process"),
    Script("calibration_bench", (), "INT8 calibration time and peak RSS against the number of samples"),
    Script("profile_bench", ("static",), "static profile time for the whole zoo"),
    Script("ort_settings", ("--export-dir", EXPORTS), "ONNX Runtime session settings chosen by measurement"),
    Script(
        "latency_bench",
        ("--export-dir", EXPORTS),
        "latency of edgecnn vs eager, torch.compile, ORT default, OpenVINO; INT8 vs FP32",
    ),
    Script("accuracy_table", (), "top-1 of every format on the digits reference models"),
    Script("optimizer_compare", (), "graph clean-up: onnxslim vs ONNX Runtime offline vs none"),
    Script("exporter_compare", (), "TorchScript vs dynamo exporter over the whole zoo (issue 3)", long=True),
)


def run_script(script: Script, exports: Path, timeout_s: float | None) -> dict[str, Any]:
    """Run one script with this interpreter, echoing its output, and record how it ended."""
    path = BENCH_DIR / f"{script.name}.py"
    record: dict[str, Any] = {"script": script.name, "measures": script.measures, "args": " ".join(script.args)}
    if not path.is_file():
        return {**record, "status": "absent", "seconds": None, "reason": f"bench/{path.name} is not in this checkout"}
    argv = [sys.executable, str(path), *(str(exports) if arg == EXPORTS else arg for arg in script.args)]
    print(f"=== {script.name} {' '.join(argv[2:])}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=20)
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    watchdog = threading.Timer(timeout_s, os.killpg, (process.pid, signal.SIGKILL)) if timeout_s else None
    if watchdog is not None:
        watchdog.start()
    assert process.stdout is not None
    for line in process.stdout:
        print(f"  {line}", end="", flush=True)
        tail.append(line.rstrip())
    returncode = process.wait()
    seconds = time.perf_counter() - started
    timed_out = watchdog is not None and not watchdog.is_alive() and returncode == -signal.SIGKILL
    if watchdog is not None:
        watchdog.cancel()
    if timed_out:
        status, reason = "timed out", f"stopped after {timeout_s:.0f} s"
    elif returncode != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        status, reason = "failed", f"exit {returncode}: {last[:300]}"
    else:
        status, reason = "ok", ""
    print(f"=== {script.name}: {status} in {seconds:.0f} s", flush=True)
    return {**record, "status": status, "seconds": seconds, "reason": reason}


def _markdown(payload: dict[str, Any]) -> str:
    total = payload["total_s"]
    verdict = (
        "met"
        if total < GOAL_S and payload["complete"]
        else "not met"
        if total >= GOAL_S
        else "not measured (scripts failed or are absent)"
    )
    return "\n".join(
        [
            "# The bench suite end to end",
            "",
            f"Each script ran in its own process, one after another. Total {total / 60:.1f} min; goal under "
            f"{GOAL_S // 60} min: {verdict}. Each script's own results file has its figures.",
            "",
            SHARED_MACHINE_NOTE,
            "",
            describe_machine_markdown(payload["machine"]),
            markdown_table(
                [
                    {**row, "minutes": round(row["seconds"] / 60, 1) if row["seconds"] is not None else None}
                    for row in payload["scripts"]
                ],
                ["script", "args", "status", "minutes", "measures", "reason"],
                title="Scripts",
            ),
            *(
                [f"Left out (long; --include-long runs them): {', '.join(payload['left_out'])}", ""]
                if payload["left_out"]
                else []
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    names = [script.name for script in SUITE]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=names, help="run just these scripts")
    parser.add_argument("--skip", nargs="*", choices=names, default=[], help="leave these scripts out")
    parser.add_argument(
        "--include-long", action="store_true", help="also run the long one-off comparisons (exporter_compare)"
    )
    parser.add_argument("--timeout", type=float, help="seconds allowed per script (default: no limit)")
    parser.add_argument("--export-dir", type=Path, help="keep the shared exports here (default: a temporary directory)")
    args = parser.parse_args(argv)

    chosen = [s for s in SUITE if (args.only is None or s.name in args.only) and s.name not in args.skip]
    left_out = [s.name for s in chosen if s.long and not args.include_long and args.only is None]
    chosen = [s for s in chosen if s.name not in left_out]
    machine = machine_description()
    started = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-exports-") as scratch:
        for script in chosen:
            records.append(run_script(script, args.export_dir or Path(scratch), args.timeout))
    total = time.perf_counter() - started
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    payload = {
        "machine": machine,
        "note": SHARED_MACHINE_NOTE,
        "goal_s": GOAL_S,
        "total_s": total,
        "complete": all(r["status"] == "ok" for r in records),
        "scripts": records,
        "left_out": left_out,
    }
    write_results(RESULT_STEM, payload, _markdown(payload))
    for record in records:
        shown = f"{record['seconds'] / 60:5.1f} min" if record["seconds"] is not None else "    -    "
        print(f"{record['script']:20s} {record['status']:10s} {shown}  {record['reason']}")
    print(f"total {total / 60:.1f} min (goal < {GOAL_S // 60} min)")
    return 0 if payload["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
