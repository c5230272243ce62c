"""``edgecnn devices``: the device catalog, with the JetPack release (and so the TensorRT) each Jetson assumes."""

from __future__ import annotations

import click

from edgecnn.cli.common import console, emit, output_format_option
from edgecnn.devices import Device, JetpackRelease, device_as_dict, list_devices, resolve_devices, resolve_jetpack
from edgecnn.errors import UsageError
from edgecnn.profile.calibrate import calibrate_host
from edgecnn.profile.estimate import EXECUTION_CLASSES
from edgecnn.render import render_rows, to_json


def _release_for(device: Device, jetpack: str | None, single: bool) -> JetpackRelease | None:
    """The release shown for ``device``: None for non-Jetsons, and for Jetsons that lack ``jetpack`` in a listing.

    Asked about one device, an unsupported ``--jetpack`` is an error (the user named both); in a listing it
    only blanks that row, so ``edgecnn devices jetson --jetpack 7.x`` shows which Jetsons run JetPack 7.
    """
    if not device.jetpack_releases:
        if jetpack is not None and single:
            resolve_jetpack(device, jetpack)  # raises the one-line "runs no JetPack" error
        return None
    try:
        return resolve_jetpack(device, jetpack)
    except UsageError:
        if single:
            raise
        return None


def _release_dict(release: JetpackRelease | None) -> dict | None:
    """The selected release as plain data for --json (None where the device runs no such JetPack)."""
    from dataclasses import asdict

    return asdict(release) if release is not None else None


def _tflops(device: Device, precision: str) -> float | None:
    value = device.peak(precision)
    return round(value / 1000, 2) if value is not None else None


@click.command("devices")
@click.argument("selector", required=False)
@click.option("--no-host", is_flag=True, help="Leave out 'host' (skips the on-the-spot GEMM and copy measurement).")
@click.option(
    "--jetpack",
    metavar="VERSION",
    help="Show each Jetson under this JetPack release (6.2, 7.x, 7.1...); default: the newest it runs.",
)
@click.option(
    "--calibrate-host",
    is_flag=True,
    help="Fit this CPU's latency-estimate factors from a short ONNX Runtime microbenchmark (seconds) and save them.",
)
@output_format_option
def devices_command(selector: str | None, no_host: bool, jetpack: str | None, calibrate_host: bool, fmt: str) -> None:
    """List the device catalog (or SELECTOR: a device id or a kind such as 'jetson'); --json gives every source.

    Peaks are dense TFLOP/s (TOP/s for INT8); FP8 and FP4 show only where the tensor cores run them (Thor).
    The JetPack / TensorRT column is the release resolve_jetpack picks: the newest, or the one --jetpack asks for.
    --calibrate-host fits the CPU factors of 'host' estimates on this machine (kept per CPU model and
    instruction set in the edgecnn cache); 'edgecnn profile --device host' then says it uses them.
    """
    if calibrate_host:
        if selector or jetpack:
            raise UsageError("--calibrate-host calibrates this machine: give it without a device or --jetpack")
        _calibrate(fmt)
        return
    devices = resolve_devices(selector) if selector else list_devices(include_host=not no_host and jetpack is None)
    single = len(devices) == 1
    releases = {d.id: _release_for(d, jetpack, single) for d in devices}
    if jetpack is not None and not any(releases.values()):
        raise UsageError(
            f"no listed device runs JetPack {jetpack}: 'edgecnn devices jetson' shows each Jetson's releases"
        )
    if fmt == "json":
        emit(to_json([device_as_dict(d) | {"selected_jetpack": _release_dict(releases[d.id])} for d in devices]))
        return
    rows = [
        {
            "id": d.id,
            "name": d.name,
            "fp32": _tflops(d, "fp32"),
            "fp16": _tflops(d, "fp16"),
            "int8": _tflops(d, "int8"),
            "fp8": _tflops(d, "fp8"),
            "fp4": _tflops(d, "fp4"),
            "memory_gb": round(d.memory_mb / 1024, 1),
            "budget_gb": round(d.budget_bytes / 2**30, 1),
            "bandwidth_gbps": d.bandwidth_gbps,
            "dla": d.dla_cores,
            "jetpack": _release_cell(d, releases[d.id], jetpack),
        }
        for d in devices
    ]
    headers = {
        "fp32": "FP32",
        "fp16": "FP16",
        "int8": "INT8",
        "fp8": "FP8",
        "fp4": "FP4",
        "memory_gb": "RAM GB",
        "budget_gb": "budget GB",
        "bandwidth_gbps": "GB/s",
        "dla": "DLA",
        "jetpack": "JetPack / TensorRT",
    }
    which = f"JetPack {jetpack} where the device runs it" if jetpack else "the newest JetPack each runs"
    footer = [
        "Dense peaks in TFLOP/s (INT8: TOP/s; no sparsity); '-' = no native path. "
        "budget = RAM less the documented runtime overhead.",
        f"JetPack / TensorRT: {which}; '(+DLA)' = TensorRT can use the DLA under it. Sources: edgecnn devices --json.",
    ]
    emit(
        render_rows(
            rows,
            fmt,
            headers=headers,
            footer=footer,
            console=console,
            title="device catalog",
            optional=("name", "fp4", "fp8", "dla", "budget_gb"),
        )
    )


def _release_cell(device: Device, release: JetpackRelease | None, jetpack: str | None) -> str | None:
    """``7.2.2 / 11.4.1 (+DLA)``; for a Jetson without the requested release, the releases it does run."""
    if release is None:
        if device.jetpack_releases and jetpack is not None:
            return "not " + jetpack + " (runs " + ", ".join(r.jetpack for r in device.jetpack_releases) + ")"
        return None
    return f"{release.jetpack} / {release.tensorrt}" + (" (+DLA)" if release.dla else "")


def _calibrate(fmt: str) -> None:
    """Run the host microbenchmark, save the factors, and show them beside the shipped ones."""
    calibration = calibrate_host()
    if fmt == "json":
        emit(to_json(calibration.as_dict()))
        return
    shipped = EXECUTION_CLASSES["cpu"]
    rows = [
        {"factor": f"compute efficiency: {row['kind']}", "shipped": shipped.compute_efficiency[row["kind"]]}
        | {"fitted": calibration.compute_efficiency[row["kind"]]}
        for row in calibration.measurements
        if row["kind"] in shipped.compute_efficiency
    ]
    rows += [
        {"factor": "memory efficiency", "shipped": shipped.memory_efficiency, "fitted": calibration.memory_efficiency},
        {
            "factor": "layer overhead (us)",
            "shipped": shipped.layer_overhead_us,
            "fitted": calibration.layer_overhead_us,
        },
    ]
    cpu = calibration.cpu
    footer = [
        f"CPU: {cpu['model']} ({cpu['isa']}); host GEMM peak {calibration.host_peak_gflops:,.1f} GFLOP/s, "
        f"copy bandwidth {calibration.host_bandwidth_gbps:,.1f} GB/s; fitted {calibration.fitted_at}.",
        "Microbenchmark p50 ms (measured / shipped-factor estimate / fitted-factor estimate): "
        + ", ".join(
            f"{row['graph']} {row['measured_ms']:.3g}/{row['shipped_factors_ms']:.3g}/{row['fitted_factors_ms']:.3g}"
            for row in calibration.measurements
        ),
        f"Saved to {calibration.path}: 'edgecnn profile --device host' estimates use these factors on this CPU.",
    ]
    emit(render_rows(rows, fmt, footer=footer, console=console, title="host CPU factors"))
