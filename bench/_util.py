"""Helpers shared by the bench scripts: the machine description, per-child peak RSS, result files.

Each measurement that concerns memory runs in a fresh child process and is reaped with ``os.wait4``,
which returns that child's own ``rusage``: its ``ru_maxrss`` is the peak resident size of that one
process (``RUSAGE_CHILDREN`` would give the largest over every child reaped so far).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "SHARED_MACHINE_NOTE",
    "ChildRun",
    "machine_description",
    "run_child",
    "self_peak_rss_bytes",
    "current_rss_bytes",
    "markdown_table",
    "write_results",
    "describe_machine_markdown",
    "python_child",
    "mib",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

SHARED_MACHINE_NOTE = (
    "The machine is shared with other engineers running tests, so timings are noisy: every comparison ran in "
    "one process run with the candidates alternated model by model, so that contention hits them alike."
)

_VERSIONED_PACKAGES = ("edgecnn", "torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
"""CPU features that decide how fast INT8 runs in ONNX Runtime (VNNI: a single-instruction u8 x s8 dot product)."""


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in INT8_ISA_FLAGS if flag in present]
    except OSError:
        pass
    return []


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def machine_description() -> dict[str, Any]:
    """CPU model, cores, RAM, load average and library versions: what every result file records."""
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(_memory_bytes() / 2**30, 1),
        "platform": platform.platform(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "versions": versions,
    }


@dataclass
class ChildRun:
    """How one child process ended, its wall and CPU (user + system) time and its own peak resident set size.

    CPU time is far less sensitive than wall time to other work on a shared machine.
    """

    returncode: int
    seconds: float
    cpu_s: float
    peak_rss_bytes: int
    timed_out: bool
    payload: Any
    stderr_tail: str

    @property
    def failure(self) -> str:
        """One line saying why the child gave no result ("" when it did)."""
        if self.payload is not None:
            return ""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        lines = [line for line in self.stderr_tail.strip().splitlines() if line.strip()]
        return f"exit {self.returncode}: {lines[-1][:300] if lines else 'no message'}"


def run_child(argv: Sequence[str], timeout_s: float, *, json_stdout: bool = False) -> ChildRun:
    """Run ``argv + ["--result", FILE]``; the child writes its JSON result to FILE.

    With ``json_stdout`` the child is run as given and its stdout is parsed as the JSON result instead
    (for the ``edgecnn`` CLI with ``--format json``). stdout and stderr go to files, so a chatty child can
    never block on a full pipe while it is polled.
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as scratch:
        result_path = Path(scratch) / "result.json"
        with open(Path(scratch) / "stdout", "wb") as out, open(Path(scratch) / "stderr", "wb+") as err:
            started = time.perf_counter()
            command = list(argv) if json_stdout else [*argv, "--result", str(result_path)]
            process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
            timed_out = False
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - started > timeout_s and not timed_out:
                    timed_out = True
                    os.killpg(process.pid, signal.SIGKILL)
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - 4000))
            stderr_tail = err.read().decode(errors="replace")
        if json_stdout:
            result_path = Path(scratch) / "stdout"
        payload = _read_json(result_path) if not timed_out else None
    cpu_s = usage.ru_utime + usage.ru_stime
    return ChildRun(process.returncode, seconds, cpu_s, usage.ru_maxrss * 1024, timed_out, payload, stderr_tail)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def current_rss_bytes() -> int:
    """This process's resident set size now (``VmRSS`` from /proc/self/status)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def self_peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def markdown_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    headers: dict[str, str] | None = None,
    title: str | None = None,
) -> str:
    """A markdown table through edgecnn's one renderer."""
    from edgecnn.render import render_rows

    return render_rows(rows, "markdown", columns=columns, headers=headers, title=title)


def write_results(stem: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``bench/results/<stem>.json`` and ``<stem>.md``; returns both paths."""
    from edgecnn.render import to_json

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = RESULTS_DIR / f"{stem}.json", RESULTS_DIR / f"{stem}.md"
    json_path.write_text(to_json(payload) + "\n")
    markdown_path.write_text(markdown)
    return json_path, markdown_path


def describe_machine_markdown(machine: dict[str, Any]) -> str:
    """The machine description as a short markdown list."""
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return "\n".join(
        [
            f"- CPU: {machine['cpu']}, {machine['logical_cores']} logical cores ({machine['usable_cores']} usable), "
            f"{machine['memory_gib']} GiB RAM; INT8-relevant features: "
            f"{', '.join(machine.get('cpu_flags') or ['not recorded'])}",
            f"- {machine['platform']}; {versions}",
            f"- load average at start: {', '.join(str(v) for v in machine['load_average_at_start'])}; "
            f"at end: {', '.join(str(v) for v in machine.get('load_average_at_end', []))}",
            f"- run: {machine['date']}",
            "",
        ]
    )


def python_child(script: str | Path, *args: str) -> list[str]:
    """argv that runs ``script`` with this interpreter (the project's venv)."""
    return [sys.executable, str(script), *args]
