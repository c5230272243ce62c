"""The device catalog: every figure sourced, lookups and close matches, the measured host."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgecnn.cli import main
from edgecnn.devices import PRECISIONS, get_device, list_devices, measure_host, resolve_devices
from edgecnn.errors import UnknownNameError

CATALOG = [d.id for d in list_devices(include_host=False)]
REQUIRED = {
    "jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-agx-xavier", "jetson-orin-nano-4gb",
    "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-8gb", "jetson-orin-nx-16gb",
    "jetson-agx-orin-32gb", "jetson-agx-orin-64gb", "raspberry-pi-4", "raspberry-pi-5",
}


def test_catalog_has_the_required_devices():
    assert REQUIRED <= set(CATALOG)


@pytest.mark.parametrize("device_id", CATALOG)
def test_every_figure_has_a_source(device_id):
    device = get_device(device_id)
    for precision in PRECISIONS:
        assert device.peak_gflops[precision] > 0
        assert f"peak_gflops.{precision}" in device.sources
    for figure in ("memory_mb", "bandwidth_gbps", "overhead_mb"):
        assert figure in device.sources, f"{device_id}.{figure} has no source"
    assert 0 < device.budget_bytes < device.memory_mb * 2**20
    if device.kind == "jetson":
        assert device.tensorrt_major in (8, 10, 11)
        assert device.compute_capability


def test_dla_devices():
    with_dla = {d.id for d in list_devices(include_host=False) if d.dla_cores}
    assert {"jetson-xavier-nx", "jetson-agx-xavier", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb"} <= with_dla
    assert "jetson-orin-nano-8gb" not in with_dla


def test_kind_selects_every_jetson():
    jetsons = resolve_devices("jetson")
    assert len(jetsons) == 11 and all(d.id.startswith("jetson") for d in jetsons)
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
