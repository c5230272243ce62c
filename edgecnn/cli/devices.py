"""``edgecnn devices``: the device catalog."""
from __future__ import annotations

import click

from edgecnn.cli.common import console, emit, output_format_option
from edgecnn.devices import device_as_dict, list_devices, resolve_devices
from edgecnn.render import render_rows, to_json


@click.command("devices")
@click.argument("selector", required=False)
@click.option("--no-host", is_flag=True, help="Leave out 'host' (skips the on-the-spot GEMM and copy measurement).")
@output_format_option
def devices_command(selector: str | None, no_host: bool, fmt: str) -> None:
    """List the device catalog (or SELECTOR: a device id or a kind such as 'jetson'), each figure with its source in --json."""
    devices = resolve_devices(selector) if selector else list_devices(include_host=not no_host)
    if fmt == "json":
        emit(to_json([device_as_dict(d) for d in devices]))
        return
    rows = [
        {
            "id": d.id,
            "name": d.name,
            "fp32_gflops": d.peak_gflops["fp32"],
            "fp16_gflops": d.peak_gflops["fp16"],
            "int8_gops": d.peak_gflops["int8"],
            "memory_mb": d.memory_mb,
            "budget_mb": d.budget_bytes / 2**20,
            "bandwidth_gbps": d.bandwidth_gbps,
            "dla": d.dla_cores,
            "tensorrt": d.tensorrt,
        }
        for d in devices
    ]
    headers = {"fp32_gflops": "FP32 GFLOP/s", "fp16_gflops": "FP16 GFLOP/s", "int8_gops": "INT8 GOP/s",
               "memory_mb": "RAM MB", "budget_mb": "budget MB", "bandwidth_gbps": "GB/s", "tensorrt": "TensorRT"}
    footer = ["Dense peaks (no sparsity). budget = RAM less the documented runtime overhead. Sources: edgecnn devices --json."]
    emit(render_rows(rows, fmt, headers=headers, footer=footer, console=console, title="device catalog"))
