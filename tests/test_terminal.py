"""Results reach the user in an interactive terminal and in ``> file`` (issue 22, item 6).

The calibration progress bar used to swap ``sys.stdout`` while it ran; started inside the block that silences
ONNX Runtime's prints and stopped after it, it left the silenced stream as stdout, so a terminal showed no result
table and ``> file`` stayed empty. These tests run the real CLI in a pseudo-terminal, as a user's shell does.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.skipif(not hasattr(pty, "openpty"), reason="no pseudo-terminals on this platform")


def tiny_classifier(path: Path) -> Path:
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "b": np.zeros(8, np.float32),
        "fc": rng.normal(0, 0.3, (8, 5)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def run_in_terminal(args: list[str], cwd: Path, stdout_file: Path | None = None) -> tuple[int, str]:
    """Run ``edgecnn ARGS`` with stderr (and stdout, unless ``stdout_file``) on a pseudo-terminal; returns the exit
    status and what the terminal showed."""
    master, slave = pty.openpty()
    stdout = open(stdout_file, "wb") if stdout_file else slave  # noqa: SIM115
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgecnn.cli.main", *args],
        stdin=slave,
        stdout=stdout,
        stderr=slave,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    if stdout_file:
        stdout.close()
    shown = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return process.wait(timeout=60), shown.decode(errors="replace")


QUANTIZE = ["quantize", "tiny.onnx", "--calib", "synthetic", "--calib-samples", "24"]


def test_quantize_prints_its_table_in_a_terminal(tmp_path):
    tiny_classifier(tmp_path / "tiny.onnx")
    status, shown = run_in_terminal(QUANTIZE, tmp_path)
    assert status == 0, shown
    assert "tiny.int8-cpu.onnx" in shown and "SQNR" in shown, shown


def test_quantize_to_a_file_keeps_the_table_while_the_bar_is_on_the_terminal(tmp_path):
    tiny_classifier(tmp_path / "tiny.onnx")
    status, shown = run_in_terminal(QUANTIZE, tmp_path, stdout_file=tmp_path / "report.txt")
    assert status == 0, shown
    report = (tmp_path / "report.txt").read_text()
    assert "tiny.int8-cpu.onnx" in report and "SQNR" in report, report
