"""Issue 14: host factors fitted by `edgecnn devices --calibrate-host`, kept per CPU, and what estimates say."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgecnn.cli.main import main
from edgecnn.devices import Device, get_device
from edgecnn.profile import calibrate
from edgecnn.profile.cost import analyze
from edgecnn.profile.estimate import (
    EXECUTION_CLASSES,
    assumptions,
    estimate_latency,
    execution_class,
    host_execution_class,
    validation_notes,
)
from edgecnn.profile.host_factors import cpu_identity, factors_path, load_host_factors

HOST = Device(
    id="host",
    name="test host",
    kind="host",
    processor="cpu",
    peak_gflops={"fp32": 100.0, "fp16": 100.0, "int8": 100.0},
    memory_mb=8192,
    bandwidth_gbps=10.0,
    overhead_mb=600,
)
AVX2 = "model name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
AVX512 = "model name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 avx512f\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\nCPU part\t: 0xd0b\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path))
    return tmp_path


def _timings(scale: float) -> dict[str, float]:
    """Timings that a host ``scale`` times slower than the shipped factors predict would give."""
    costs = {name: analyze(calibrate.microbenchmark_graph(name)[0], name=name) for name in calibrate.MICROBENCHMARKS}
    return {
        name: estimate_latency(cost, HOST, EXECUTION_CLASSES["cpu"]).total_ms * scale for name, cost in costs.items()
    }


def test_cpu_identity_tells_instruction_sets_apart():
    assert cpu_identity(AVX2)["isa"] == "avx2" and cpu_identity(AVX512)["isa"] == "avx512"
    assert cpu_identity(AVX2)["model"] == "Test CPU 9000"
    assert cpu_identity(ARM)["isa"] == "neon"
    assert factors_path(cpu_identity(AVX2)) != factors_path(cpu_identity(AVX512))


def test_calibration_recovers_a_slower_host_and_is_saved_per_cpu(cache, monkeypatch):
    monkeypatch.setattr(calibrate, "cpu_identity", lambda: cpu_identity(AVX2))
    monkeypatch.setattr("edgecnn.profile.host_factors.cpu_identity", lambda: cpu_identity(AVX512))
    timings = _timings(2.0)
    result = calibrate.calibrate_host(timer=timings.__getitem__, host=HOST, save=False)
    for row in result.measurements:
        assert row["fitted_factors_ms"] == pytest.approx(row["measured_ms"], rel=0.02), row
        assert row["shipped_factors_ms"] == pytest.approx(row["measured_ms"] / 2, rel=0.02)
    assert result.compute_efficiency["conv"] == pytest.approx(
        EXECUTION_CLASSES["cpu"].compute_efficiency["conv"] / 2, rel=0.05
    )
    assert result.path is None and load_host_factors(cpu_identity(AVX2)) is None

    saved = calibrate.calibrate_host(timer=timings.__getitem__, host=HOST)
    assert saved.path == factors_path(cpu_identity(AVX2)) and saved.path.is_file()
    assert load_host_factors(cpu_identity(AVX2))["compute_efficiency"]["conv"] == saved.compute_efficiency["conv"]
    assert load_host_factors(cpu_identity(AVX512)) is None, "another instruction set does not reuse them"


def test_host_estimates_say_which_factors_they_use(cache, monkeypatch):
    identity = cpu_identity(AVX2)
    monkeypatch.setattr(calibrate, "cpu_identity", lambda: identity)
    monkeypatch.setattr("edgecnn.profile.host_factors.cpu_identity", lambda: identity)
    assert host_execution_class() is EXECUTION_CLASSES["cpu"]
    assert "shipped CPU factors" in validation_notes([HOST])[0]
    timings = _timings(3.0)
    calibrate.calibrate_host(timer=timings.__getitem__, host=HOST)
    fitted = execution_class(HOST, "fp32")
    assert fitted.name == "cpu-fitted-on-this-host" and "Test CPU 9000, avx2" in fitted.source
    assert "fitted on this host (Test CPU 9000, avx2)" in validation_notes([HOST])[0]
    graph, _ = calibrate.microbenchmark_graph("conv3x3")
    cost = analyze(graph)
    assert estimate_latency(cost, HOST).total_ms == pytest.approx(timings["conv3x3"], rel=0.02)
    pi = get_device("raspberry-pi-5")
    assert execution_class(pi, "fp32") is EXECUTION_CLASSES["cpu"], "fitted host factors stay on the host"
    data = assumptions([HOST, pi], ["fp32"])
    assert set(data["execution_classes"]) == {"cpu", "cpu-fitted-on-this-host"}


def test_raspberry_pi_estimates_say_they_are_unvalidated():
    notes = validation_notes([get_device("raspberry-pi-4"), get_device("raspberry-pi-5")])
    assert any("raspberry-pi-4, raspberry-pi-5: unvalidated" in note for note in notes)
    assert not validation_notes([get_device("jetson-orin-nano-8gb")])
    result = CliRunner().invoke(main, ["profile", "lenet5", "--device", "raspberry-pi-5", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert "raspberry-pi-5: unvalidated" in result.output


def test_devices_calibrate_host_cli(cache, monkeypatch):
    identity = cpu_identity(ARM)
    monkeypatch.setattr(calibrate, "cpu_identity", lambda: identity)
    monkeypatch.setattr("edgecnn.profile.host_factors.cpu_identity", lambda: identity)
    monkeypatch.setattr(calibrate, "_time_graph", _timings(1.5).__getitem__)
    monkeypatch.setattr(calibrate.measure_host, "__wrapped__", lambda: HOST)
    result = CliRunner().invoke(main, ["devices", "--calibrate-host", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cpu"]["isa"] == "neon" and data["path"].endswith(".json")
    assert load_host_factors(identity) is not None
    wrong = CliRunner().invoke(main, ["devices", "jetson", "--calibrate-host"])
    assert wrong.exit_code != 0 and "without a device" in wrong.output


def test_profile_jetpack_option_says_which_release(cache):
    result = CliRunner().invoke(
        main, ["profile", "lenet5", "--device", "jetson", "--jetpack", "7.x", "--precision", "fp16", "--csv"]
    )
    assert result.exit_code == 0, result.output
    assert "jetson-agx-thor-t5000" in result.output and "jetson-orin-nano-8gb" not in result.output
    table = CliRunner().invoke(main, ["profile", "lenet5", "--device", "jetson-agx-orin-64gb", "--precision", "fp16"])
    assert "agx-orin-64gb: JetPack 7.2.2 (TensorRT 11.4.1)" in table.output
    older = CliRunner().invoke(
        main, ["profile", "lenet5", "--device", "jetson-agx-orin-64gb", "--jetpack", "6.2", "--precision", "fp16"]
    )
    assert "JetPack 6.2 (TensorRT 10.3)" in older.output
    bad = CliRunner().invoke(main, ["profile", "lenet5", "--device", "jetson-orin-nano-8gb", "--jetpack", "7.x"])
    assert bad.exit_code != 0 and "does not run JetPack 7.x" in bad.output and "Traceback" not in bad.output
