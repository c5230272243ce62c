"""The torch-free core install: a fresh venv with the locally built wheel and its core dependencies only
(from the package index, no torch, scikit-learn or matplotlib) runs the device-side commands, benchmark
included, on the committed LeNet-5 digits export. Building the venv takes about 1.5 minutes here."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
ARTIFACT = DATA / "lenet5_digits"
DIGITS = DATA / "digits_sample"
_OFFLINE = ("No matching distribution", "Could not find a version", "NewConnectionError", "Temporary failure")


def test_import_edgecnn_does_not_import_torch():
    code = (
        "import sys, edgecnn; edgecnn.__version__; "
        "import edgecnn.cli.main, edgecnn.predict, edgecnn.evaluate, edgecnn.profiling, edgecnn.registry; "
        "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'onnxscript') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("core")
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    environment = root / "venv"
    venv.create(environment, with_pip=True)
    install = subprocess.run(
        [str(environment / "bin" / "python"), "-m", "pip", "install", "-q", *map(str, wheels.glob("edgecnn-*.whl"))],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0 and any(marker in install.stderr for marker in _OFFLINE):
        pytest.skip(f"the package index cannot be reached: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr[-2000:]
    return environment


def _edgecnn(environment: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(environment / "bin" / "edgecnn"), *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_core_install_has_no_torch_and_runs_the_device_side(core_venv, tmp_path):
    python = str(core_venv / "bin" / "python")
    absent = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'sklearn', 'matplotlib') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert absent.stdout.strip() == "[]"

    check = _edgecnn(core_venv, "check", ARTIFACT, "--device", "jetson-orin-nano-8gb", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    compiled = _edgecnn(
        core_venv,
        "compile",
        ARTIFACT,
        "--device",
        "jetson-orin-nano-8gb",
        "--emit-trtexec",
        "-o",
        tmp_path / "trt",
        cwd=tmp_path,
    )
    assert compiled.returncode == 0, compiled.stderr
    assert "trtexec --onnx=" in next((tmp_path / "trt").glob("*.sh")).read_text()
    profiled = _edgecnn(core_venv, "profile", ARTIFACT, "--device", "jetson-orin-nano-8gb", "--json", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert "lenet5" in profiled.stdout
    evaluated = _edgecnn(core_venv, "eval", ARTIFACT, "--data", DIGITS, "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert all(row["top1"] >= 90 for row in json.loads(evaluated.stdout)["results"])
    predicted = _edgecnn(core_venv, "predict", ARTIFACT, DIGITS / "4", "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert [p["top"][0]["label"] for p in json.loads(predicted.stdout)["predictions"]] == ["4"] * 3

    benchmarked = _edgecnn(core_venv, "benchmark", ARTIFACT, "--data", DIGITS, "--rounds", "1", "--json", cwd=tmp_path)
    assert benchmarked.returncode == 0, benchmarked.stderr
    report = json.loads(benchmarked.stdout)
    rows = {row["format"]: row for row in report["rows"]}
    assert list(rows) == ["torch", "onnx-fp32", "onnx-int8-cpu"] and report["baseline"] == "onnx-fp32"
    assert (rows["torch"]["status"], rows["torch"]["reason"]) == (
        "not available",
        "PyTorch is not installed (the export extra installs it)",
    )
    for key in ("onnx-fp32", "onnx-int8-cpu"):
        assert rows[key]["status"] == "ok", rows[key]["reason"]
        assert rows[key]["top1"] >= 90 and rows[key]["p50_ms"] > 0 and rows[key]["speedup"] > 0
    assert rows["onnx-fp32"]["speedup"] == 1.0
    table = _edgecnn(core_venv, "benchmark", ARTIFACT, "--data", DIGITS, "--rounds", "1", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    print(table.stdout)
    assert "vs fp32" in table.stdout
    refused = _edgecnn(core_venv, "benchmark", "lenet5", cwd=tmp_path)
    assert refused.returncode != 0
    assert refused.stderr.strip() == "Error: edgecnn benchmark lenet5 needs torch: pip install 'edgecnn[export]'"

    exported = _edgecnn(core_venv, "export", "lenet5", cwd=tmp_path)
    assert exported.returncode != 0
    assert exported.stderr.strip() == "Error: edgecnn export needs torch: pip install 'edgecnn[export]'"
