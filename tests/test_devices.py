"""The device catalog: every figure sourced, lookups and close matches, JetPack releases, the measured host."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgecnn.cli import main
from edgecnn.devices import (
    Device,
    JetpackRelease,
    device_as_dict,
    get_device,
    list_devices,
    measure_host,
    resolve_devices,
    resolve_jetpack,
)
from edgecnn.errors import UnknownNameError, UsageError

CATALOG = [d.id for d in list_devices(include_host=False)]
REQUIRED = {
    "jetson-nano",
    "jetson-tx2",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano-4gb",
    "jetson-orin-nano-8gb",
    "jetson-orin-nano-8gb-super",
    "jetson-orin-nx-8gb",
    "jetson-orin-nx-16gb",
    "jetson-agx-orin-32gb",
    "jetson-agx-orin-64gb",
    "jetson-agx-thor-t5000",
    "jetson-t4000",
    "raspberry-pi-4",
    "raspberry-pi-5",
}
THOR = ("jetson-agx-thor-t5000", "jetson-t4000")


def test_catalog_has_the_required_devices():
    assert REQUIRED <= set(CATALOG)


@pytest.mark.parametrize("device_id", CATALOG)
def test_every_figure_has_a_source(device_id):
    device = get_device(device_id)
    assert {"fp32", "fp16", "int8"} <= set(device.peak_gflops)
    for precision, value in device.peak_gflops.items():
        assert value > 0 and device.peak(precision) == value
        assert device.sources.get(f"peak_gflops.{precision}"), f"{device_id} peak {precision} has no source"
    for figure in ("memory_mb", "bandwidth_gbps", "overhead_mb"):
        assert device.sources.get(figure), f"{device_id}.{figure} has no source"
    assert 0 < device.budget_bytes < device.memory_mb * 2**20
    if device.kind == "jetson":
        assert device.compute_capability and device.jetpack_releases
        assert device.tensorrt_major in (8, 10, 11)
        for release in device.jetpack_releases:
            assert release.source, f"{device_id} JetPack {release.jetpack} has no source"
            assert release.tensorrt_major in (8, 10, 11)
            assert not release.dla or device.dla_cores, f"{device_id} JetPack {release.jetpack} claims a DLA it lacks"
    else:
        assert not device.jetpack_releases and device.tensorrt is None


def test_dla_devices():
    with_dla = {d.id for d in list_devices(include_host=False) if d.dla_cores}
    assert {"jetson-xavier-nx", "jetson-agx-xavier", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb"} <= with_dla
    assert "jetson-orin-nano-8gb" not in with_dla


def test_kind_selects_every_jetson():
    jetsons = resolve_devices("jetson")
    assert len(jetsons) == 13 and all(d.id.startswith("jetson") for d in jetsons)
    assert [d.id for d in resolve_devices("raspberry-pi-5,jetson-nano")] == ["raspberry-pi-5", "jetson-nano"]


def test_unknown_device_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean.*jetson-orin-nano-8gb"):
        get_device("jetson-orin-nano-8g")


def test_host_is_measured():
    host = measure_host()
    assert host.peak_gflops["fp32"] > 1
    assert host.bandwidth_gbps > 0.5
    assert "measured" in host.sources["peak_gflops.fp32"]


def test_devices_command_json_and_error():
    runner = CliRunner()
    result = runner.invoke(main, ["devices", "jetson", "--json"])
    assert result.exit_code == 0, result.output
    assert {d["id"] for d in json.loads(result.output)} == {d.id for d in resolve_devices("jetson")}
    result = runner.invoke(main, ["devices", "jetsn"])
    assert result.exit_code == 2 and "did you mean" in result.output and "jetson" in result.output


@pytest.mark.parametrize("device_id", THOR)
def test_thor_modules(device_id):
    """Blackwell: native FP8/FP4, no DLA, JetPack 7 only; dense peaks are NVIDIA's sparse FP4 figure halved."""
    thor = get_device(device_id)
    assert thor.dla_cores == 0 and thor.compute_capability == "11.0" and thor.bandwidth_gbps == 273.0
    assert thor.peak("fp4") == 2 * thor.peak("fp8") == 4 * thor.peak("fp16")
    assert thor.peak("int8") == thor.peak("fp8")
    sparse_fp4 = {"jetson-agx-thor-t5000": 2070, "jetson-t4000": 1200}[device_id]
    assert thor.peak("fp4") == sparse_fp4 * 1000 / 2 and "sparse" in thor.sources["peak_gflops.fp4"]
    assert all("derived" in thor.sources[f"peak_gflops.{p}"] for p in thor.peak_gflops)
    assert all(r.jetpack.startswith("7.") and not r.dla for r in thor.jetpack_releases)
    assert thor.memory_mb == {"jetson-agx-thor-t5000": 131072, "jetson-t4000": 65536}[device_id]


def test_fp8_only_where_native():
    assert {d.id for d in list_devices(include_host=False) if d.peak("fp8")} == set(THOR)
    assert get_device("jetson-agx-orin-64gb").peak("fp4") is None


def test_resolve_jetpack_defaults_to_the_newest():
    assert resolve_jetpack(get_device("jetson-agx-thor-t5000"), None) == JetpackRelease(
        "7.2.2", "11.4.1", None, False, get_device("jetson-agx-thor-t5000").jetpack_releases[-1].source
    )
    orin = resolve_jetpack("jetson-agx-orin-64gb")
    assert (orin.jetpack, orin.tensorrt, orin.dla) == ("7.2.2", "11.4.1", True)
    assert resolve_jetpack("jetson-orin-nano-8gb").tensorrt == "10.3"
    assert resolve_jetpack("jetson-nano").label == "JetPack 4.6.1 (TensorRT 8.2)"


@pytest.mark.parametrize(
    ("device_id", "asked", "jetpack", "tensorrt"),
    [
        ("jetson-agx-orin-64gb", "6.2", "6.2", "10.3"),
        ("jetson-agx-orin-64gb", "6.2.1", "6.2", "10.3"),
        ("jetson-agx-orin-64gb", "7.x", "7.2.2", "11.4.1"),
        ("jetson-agx-thor-t5000", "7.0", "7.0", "10.13"),
        ("jetson-agx-thor-t5000", "JetPack 7.1", "7.1", "10.13"),
        ("jetson-agx-thor-t5000", "7", "7.2.2", "11.4.1"),
        ("jetson-t4000", "7.1", "7.1", "10.13"),
    ],
)
def test_resolve_jetpack_picks_the_asked_release(device_id, asked, jetpack, tensorrt):
    release = resolve_jetpack(get_device(device_id), asked)
    assert (release.jetpack, release.tensorrt) == (jetpack, tensorrt)


@pytest.mark.parametrize(
    ("device_id", "asked", "message"),
    [
        ("jetson-orin-nano-8gb", "7.x", "jetson-orin-nano-8gb does not run JetPack 7.x: it runs JetPack 6.2"),
        ("jetson-t4000", "7.0", "jetson-t4000 does not run JetPack 7.0: it runs JetPack 7.1, 7.2.2"),
        (
            "jetson-agx-orin-64gb",
            "seven",
            "not a JetPack version such as 6.2 or 7.x: jetson-agx-orin-64gb runs 6.2, 7.2.2",
        ),
        ("raspberry-pi-5", "6.2", "raspberry-pi-5 runs no JetPack (cpu device)"),
        ("raspberry-pi-5", None, "runs no JetPack"),
    ],
)
def test_resolve_jetpack_errors_are_one_line(device_id, asked, message):
    with pytest.raises(UsageError) as error:
        resolve_jetpack(get_device(device_id), asked)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_baseline_release_keeps_the_old_fields():
    """Device.jetpack and Device.tensorrt keep the oldest release (check and compile now ask resolve_jetpack)."""
    orin = get_device("jetson-agx-orin-64gb")
    assert (orin.jetpack, orin.tensorrt, orin.tensorrt_major) == ("6.2", "10.3", 10)
    thor = get_device("jetson-agx-thor-t5000")
    assert (thor.jetpack, thor.tensorrt) == ("7.0", "10.13")


def test_device_round_trips_through_its_dict():
    thor = get_device("jetson-agx-thor-t5000")
    data = json.loads(json.dumps(device_as_dict(thor)))
    assert data["jetpack_releases"][0]["tensorrt"] == "10.13"
    assert Device(**data) == thor


def test_devices_command_lists_thor_with_its_jetpack():
    runner = CliRunner()
    result = runner.invoke(main, ["devices", "jetson", "--csv"])
    assert result.exit_code == 0, result.output
    rows = {line.split(",")[0]: line for line in result.output.splitlines()[1:]}
    assert "7.2.2 / 11.4.1" in rows["jetson-agx-thor-t5000"] and "6.2 / 10.3" in rows["jetson-orin-nano-8gb"]
    result = runner.invoke(main, ["devices", "jetson", "--jetpack", "7.1", "--csv"])
    assert result.exit_code == 0, result.output
    rows = {line.split(",")[0]: line for line in result.output.splitlines()[1:]}
    assert "7.1 / 10.13" in rows["jetson-t4000"] and "not 7.1 (runs 6.2)" in rows["jetson-orin-nano-8gb"]
    result = runner.invoke(main, ["devices", "jetson-agx-thor-t5000", "--jetpack", "7.0", "--json"])
    assert json.loads(result.output)[0]["selected_jetpack"]["tensorrt"] == "10.13"


def test_devices_command_jetpack_errors():
    runner = CliRunner()
    result = runner.invoke(main, ["devices", "jetson-orin-nano-8gb", "--jetpack", "7.x"])
    assert result.exit_code == 2 and "does not run JetPack 7.x: it runs JetPack 6.2" in result.output
    result = runner.invoke(main, ["devices", "jetson", "--jetpack", "5.0"])
    assert result.exit_code == 2 and "no listed device runs JetPack 5.0" in result.output
