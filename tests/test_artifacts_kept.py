"""A user's artifacts are never lost (issue 16): adding keeps, other inputs are refused or kept apart,
Ctrl-C leaves the previous export intact, files follow the umask, unwritable paths are one-line errors,
and export names never collide (issue 12, item 5)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn.artifact import model_name_of, write_bytes_atomic
from edgecnn.benchmark import benchmark
from edgecnn.cache import CACHE_ENV, cache_dir
from edgecnn.cli import main

MODEL = "lenet5"
DEVICE = "jetson-orin-nano-8gb"
FAST_CALIB = ("--calib-samples", "16")
FAST = {"warmup": 0, "rounds": 1, "round_seconds": 0.0}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def formats(directory: Path) -> list[str]:
    return [a["format"] for a in json.loads((directory / "manifest.json").read_text())["artifacts"]]


def one_line_error(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(1)
    for index in range(16):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """What ``make demo`` leaves, on LeNet-5: FP32, FP16 and INT8 for CPUs (calibrated on synthetic data)."""
    root = tmp_path_factory.mktemp("demo")
    result = invoke("export", MODEL, "--fp16", "--int8", "--calib", "synthetic", *FAST_CALIB, "-o", root)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def exports(demo, tmp_path) -> Path:
    shutil.copytree(demo, tmp_path / "exports")
    return tmp_path / "exports"


def test_int8_for_a_device_after_the_demo_keeps_every_earlier_artifact(exports, images):
    directory = exports / MODEL
    before = hashes(directory)
    result = invoke("export", MODEL, "--int8", "--device", DEVICE, "--calib", images, *FAST_CALIB, "-o", exports)
    assert result.exit_code == 0, result.output
    after = hashes(directory)
    assert {name: after.get(name) for name in before if name != "manifest.json"} == {
        name: digest for name, digest in before.items() if name != "manifest.json"
    }
    assert formats(directory) == ["onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "onnx-int8-tensorrt"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert all((directory / a["file"]).is_file() for a in manifest["artifacts"])
    assert not list(exports.glob(f".{MODEL}.*"))


def test_quantize_with_other_calibration_is_refused_and_same_inputs_rebuild(exports, images):
    directory = exports / MODEL
    assert invoke("quantize", directory, "--target", "tensorrt", "--calib", images, *FAST_CALIB).exit_code == 0
    before = hashes(directory)
    refused = invoke("quantize", directory, "--target", "tensorrt", *FAST_CALIB)
    one_line_error(refused, "int8-tensorrt.onnx", "other inputs", "--force", "--output")
    assert hashes(directory) == before
    again = invoke("quantize", directory, "--target", "tensorrt", "--calib", images, *FAST_CALIB)
    assert again.exit_code == 0, again.output
    assert hashes(directory) == before
    kept = invoke("quantize", directory, "--target", "tensorrt", *FAST_CALIB, "--output", exports / "builtin.onnx")
    assert kept.exit_code == 0, kept.output
    assert hashes(directory) == before and (exports / "builtin.onnx").is_file()
    forced = invoke("quantize", directory, "--target", "tensorrt", *FAST_CALIB, "--force")
    assert forced.exit_code == 0, forced.output
    entry = next(
        a
        for a in json.loads((directory / "manifest.json").read_text())["artifacts"]
        if a["format"] == "onnx-int8-tensorrt"
    )
    assert entry["quantization"]["calibration"]["source"] == "builtin"
    assert formats(directory) == ["onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "onnx-int8-tensorrt"]
    after = hashes(directory)
    assert {k: after.get(k) for k in before if "int8-tensorrt" not in k and k != "manifest.json"} == {
        k: v for k, v in before.items() if "int8-tensorrt" not in k and k != "manifest.json"
    }


def test_export_int8_with_other_calibration_is_refused(exports, images):
    directory = exports / MODEL
    before = hashes(directory)
    refused = invoke("export", MODEL, "--int8", "--calib", images, *FAST_CALIB, "-o", exports)
    one_line_error(refused, "int8-cpu.onnx", "other INT8 settings", "--force")
    assert hashes(directory) == before
    assert not list(exports.glob(f".{MODEL}.*"))


def test_an_export_from_other_inputs_is_refused_kept_apart_or_forced(exports):
    directory = exports / MODEL
    before = hashes(directory)
    refused = invoke("export", MODEL, "--num-classes", "5", "-o", exports)
    one_line_error(refused, "other inputs", "classes 10 there, 5 now", "--force", "--name")
    assert hashes(directory) == before
    apart = invoke("export", MODEL, "--num-classes", "5", "--name", "lenet5_c5", "-o", exports)
    assert apart.exit_code == 0, apart.output
    assert (exports / "lenet5_c5" / "lenet5_c5.onnx").is_file() and hashes(directory) == before
    forced = invoke("export", MODEL, "--num-classes", "5", "--force", "-o", exports)
    assert forced.exit_code == 0, forced.output
    assert formats(directory) == ["onnx-fp32"]
    assert json.loads((directory / "manifest.json").read_text())["model"]["num_classes"] == 5


def test_the_same_export_again_adds_and_rebuilds_identically(exports):
    directory = exports / MODEL
    before = hashes(directory)
    result = invoke("export", MODEL, "--ort", "-o", exports)
    assert result.exit_code == 0, result.output
    after = hashes(directory)
    assert {name: after[name] for name in before if name != "manifest.json"} == {
        name: digest for name, digest in before.items() if name != "manifest.json"
    }
    assert formats(directory) == ["onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "ort"]


def test_benchmark_never_touches_the_users_export(exports):
    directory = exports / MODEL
    before = hashes(directory)
    other = benchmark(
        MODEL,
        ["onnx-fp32", "onnx-int8-cpu"],
        batches=(1, 3),
        num_classes=4,
        export_dir=exports,
        calibration="synthetic",
        quantize_options={"samples": 8},
        **FAST,
    )
    assert [row.status for row in other.rows] == ["ok"] * 4, [row.reason for row in other.rows]
    assert hashes(directory) == before
    assert Path(other.directory).is_relative_to(cache_dir() / "benchmark")
    assert any("left as it is" in note for note in other.notes)
    fitting = benchmark(MODEL, ["onnx-fp32", "onnx-int8-cpu"], batches=(1,), export_dir=exports, **FAST)
    assert Path(fitting.directory) == directory and hashes(directory) == before
    fresh = benchmark(
        MODEL,
        ["onnx-fp32", "onnx-int8-tensorrt"],
        batches=(1,),
        export_dir=exports,
        quantize_options={"samples": 8},
        **FAST,
    )
    assert fresh.row("onnx-fp32").status == "ok"
    assert hashes(directory) == before


def _default_sigint() -> None:
    """In the child before exec: SIGINT handled and unblocked, as in a user's shell. A child inherits its parent's
    disposition and signal mask, and under ``make test`` the export once ran to its end (exit 0) after the SIGINT,
    while the test passed alone: a worker's state that earlier tests changed must not decide this test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_keeps_the_previous_export_and_exits_130(exports, tmp_path):
    """``--force`` with other calibration settings is a valid export that replaces the directory only when it
    completes, so the interrupt lands in the work (never after a refusal); a cache of its own keeps earlier
    tests' graphs and ranges from shortening it, and 12,000 calibration samples keep it in the staged work for
    about 20 s on an idle core; the child starts with SIGINT handled and unblocked (:func:`_default_sigint`)."""
    directory = exports / MODEL
    before = hashes(directory)
    command = [sys.executable, "-m", "edgecnn.cli.main", "export", MODEL, "--fp16", "--int8", "--calib", "synthetic"]
    process = subprocess.Popen(
        [*command, "--calib-samples", "12000", "--force", "-o", str(exports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, CACHE_ENV: str(tmp_path / "own-cache")},
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while not list(exports.glob(f".{MODEL}.tmp-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("Interrupted:")
    assert hashes(directory) == before
    assert sorted(p.name for p in exports.iterdir()) == [MODEL]


def test_files_follow_the_umask(tmp_path, images):
    previous = os.umask(0o022)
    try:
        exports = tmp_path / "exports"
        assert invoke("export", MODEL, "--int8", "--calib", "synthetic", *FAST_CALIB, "-o", exports).exit_code == 0
        assert invoke("quantize", exports / MODEL, "--target", "tensorrt", *FAST_CALIB).exit_code == 0
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (exports / MODEL).iterdir()}
        assert any(".int8-" in name for name in modes) and any(".calib-" in name for name in modes)
        assert modes == dict.fromkeys(modes, 0o644)
        assert stat.S_IMODE((exports / MODEL).stat().st_mode) == 0o755
        os.umask(0o002)
        write_bytes_atomic(tmp_path / "shared.json", b"{}")
        assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o664
    finally:
        os.umask(previous)


def test_unwritable_outputs_are_one_line_errors(demo, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_error(invoke("profile", MODEL, "--plot", blocker / "p.png"), "cannot write", "is a file")
    one_line_error(
        invoke("compile", demo / MODEL, "--device", DEVICE, "--emit-trtexec", "-o", blocker / "trt"), "cannot write"
    )
    one_line_error(invoke("export", MODEL, "-o", blocker / "exports"), "cannot write")
    one_line_error(
        invoke("quantize", demo / MODEL, "--calib", "synthetic", *FAST_CALIB, "-o", blocker / "x.onnx"),
        "cannot write",
    )


def test_onnx_files_are_named_by_their_whole_stem(demo, tmp_path):
    fp32 = demo / MODEL / f"{MODEL}.onnx"
    for name in ("net.v1.onnx", "net.v2.onnx", "ch_model_v2.0_det.onnx"):
        shutil.copyfile(fp32, tmp_path / name)
        result = invoke("export", tmp_path / name, "-o", tmp_path / "exports")
        assert result.exit_code == 0, result.output
    stems = ["net.v1", "net.v2", "ch_model_v2.0_det"]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted(stems)
    for stem in stems:
        assert (tmp_path / "exports" / stem / f"{stem}.onnx").is_file()
    bare = invoke("quantize", tmp_path / "net.v1.onnx", "--calib", "synthetic", *FAST_CALIB)
    assert bare.exit_code == 0, bare.output
    assert (tmp_path / "net.v1.int8-cpu.onnx").is_file()
    assert model_name_of("ch_model_v2.0_det.int8-tensorrt.onnx") == "ch_model_v2.0_det"


FACTORY = """
import torch
from torch import nn


def build(num_classes=10):
    layers = [nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)]
    return nn.Sequential(*layers)


def trained(num_classes=10):
    model = build(num_classes)
    with torch.no_grad():
        for index, parameter in enumerate(model.parameters()):
            parameter.copy_(torch.linspace(-0.5, 0.5, parameter.numel()).reshape(parameter.shape) * (index + 1))
    return model
"""


def test_a_factory_is_named_after_its_file_and_its_weights_told_truly(tmp_path):
    (tmp_path / "mynet.py").write_text(FACTORY)
    exports = tmp_path / "exports"
    random = invoke("export", f"{tmp_path / 'mynet.py'}:build", "--input-size", "32", "-o", exports)
    assert random.exit_code == 0, random.output
    manifest = json.loads((exports / "mynet" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "mynet" and manifest["model"]["randomly_initialized"] is True
    assert manifest["model"]["source"].endswith("mynet.py:build")
    named = invoke(
        "export", f"{tmp_path / 'mynet.py'}:trained", "--input-size", "32", "--name", "mynet_t", "-o", exports
    )
    assert named.exit_code == 0, named.output
    manifest = json.loads((exports / "mynet_t" / "manifest.json").read_text())
    assert manifest["model"]["randomly_initialized"] is False
    assert (exports / "mynet_t" / "mynet_t.onnx").is_file()
    hint = invoke("check", exports / "mynet", "--device", DEVICE, "--precision", "int8")
    one_line_error(hint, f"edgecnn quantize {exports / 'mynet'} --target tensorrt")
