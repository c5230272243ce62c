"""Check that every zoo model marked torchvision-exact computes what torchvision's model computes.

For each model whose ``get_spec(name).torchvision_config`` is set: build torchvision's model with
``weights=None`` (seeded), load its state_dict into ours (``get_model(name, **torchvision_config)``) with
``strict=True``, and compare eval-mode outputs on the same seeded input at the default size and one
other size: the logits, and the output of every layer that owns parameters or buffers. GoogLeNet and
Inception v3 are also compared with ``transform_input=True``, the setting torchvision's pretrained
checkpoints use.

Run it with a Python that has torchvision (edgecnn's models need only torch to import, so the repository
root goes on ``sys.path``; the edgecnn venv itself is not needed)::

    /tmp/tvenv/bin/python scripts/check_torchvision_equivalence.py            # every torchvision-exact model
    /tmp/tvenv/bin/python scripts/check_torchvision_equivalence.py 'resnet*'  # a subset

It writes bench/results/torchvision_equivalence.json and .md and exits 1 if any model fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY / "bench" / "results"
RESULT_STEM = "torchvision_equivalence"
RELATIVE_TOLERANCE = 1e-5
BATCH = 2
SEED = 0
TRANSFORM_INPUT_MODELS = ("googlenet", "inception_v3")

sys.path.insert(0, str(REPOSITORY))

import torch  # noqa: E402
import torchvision  # noqa: E402

from edgecnn.registry import get_model, get_spec, list_models  # noqa: E402

warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)


def other_size(default: int) -> int:
    """An odd size that is no multiple of 32, so ceil-mode and adaptive pooling meet uneven borders."""
    return 257 if default <= 224 else 331


def _record_layer_outputs(model: torch.nn.Module) -> tuple[dict[str, list[torch.Tensor]], list[Any]]:
    """Forward hooks keeping a copy of the output of every module that owns parameters or buffers.

    These are exactly the modules named in the state_dict, so the names match between the two models.
    Copies, because an in-place activation may overwrite the tensor a layer returned.
    """
    outputs: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is None and next(module.buffers(recurse=False), None) is None:
            continue

        def keep(module, args, output, name=name):
            if isinstance(output, torch.Tensor):
                outputs.setdefault(name, []).append(output.detach().clone())

        handles.append(module.register_forward_hook(keep))
    return outputs, handles


def _relative(expected: torch.Tensor, actual: torch.Tensor) -> float:
    if expected.shape != actual.shape:
        return float("inf")
    return float((expected - actual).abs().max()) / (float(expected.abs().max()) or 1.0)


def _worst_layer(theirs: dict[str, list[torch.Tensor]], ours: dict[str, list[torch.Tensor]]) -> tuple[float, str, int]:
    """Largest per-layer relative difference, its layer, and how many layer outputs were compared."""
    worst, worst_name, compared = 0.0, "", 0
    for name in sorted(set(theirs) | set(ours)):
        expected, actual = theirs.get(name, []), ours.get(name, [])
        if len(expected) != len(actual):
            return float("inf"), f"{name} (ran {len(expected)} times in torchvision, {len(actual)} in ours)", compared
        for a, b in zip(expected, actual):
            compared += 1
            difference = _relative(a, b)
            if difference > worst or not worst_name:
                worst, worst_name = difference, name
    return worst, worst_name, compared


def check(name: str, config: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Load torchvision's seeded weights into ours and compare outputs, final and per layer, at two input sizes.

    The per-layer comparison matters because randomly initialized networks often have degenerate logits
    (ShuffleNet's and GoogLeNet's are little more than the classifier bias), which alone prove little.
    """
    torch.manual_seed(SEED)
    theirs = torchvision.models.get_model(name, weights=None, **extra).eval()
    ours = get_model(name, **config, **extra).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    default = get_spec(name).input_size[0]
    row: dict[str, Any] = {
        "model": name,
        "config": {**config, **extra},
        "params": sum(p.numel() for p in ours.parameters()),
        "state_dict_tensors": len(theirs.state_dict()),
    }
    worst = 0.0
    for label, size in (("default", default), ("other", other_size(default))):
        generator = torch.Generator().manual_seed(SEED)
        inputs = torch.randn(BATCH, 3, size, size, generator=generator)
        their_layers, their_hooks = _record_layer_outputs(theirs)
        our_layers, our_hooks = _record_layer_outputs(ours)
        with torch.inference_mode():
            expected, actual = theirs(inputs), ours(inputs)
        for handle in their_hooks + our_hooks:
            handle.remove()
        layer_difference, layer_name, compared = _worst_layer(their_layers, our_layers)
        del their_layers, our_layers
        scale = float(expected.abs().max()) or 1.0
        difference = float((expected - actual).abs().max())
        row[f"{label}_size"] = size
        row[f"{label}_max_abs_diff"] = difference
        row[f"{label}_output_scale"] = scale
        row[f"{label}_top1_equal"] = bool((expected.argmax(1) == actual.argmax(1)).all())
        row[f"{label}_layers_compared"] = compared
        row[f"{label}_worst_layer_relative_diff"] = layer_difference
        row[f"{label}_worst_layer"] = layer_name
        worst = max(worst, difference / scale, layer_difference)
    row["max_relative_diff"] = worst
    row["passed"] = worst <= RELATIVE_TOLERANCE
    return row


def markdown(rows: list[dict[str, Any]], environment: dict[str, str]) -> str:
    """A plain markdown table; written here because this script runs without edgecnn's other dependencies (rich)."""
    columns = [
        "model",
        "config",
        "params",
        "default_size",
        "default_max_abs_diff",
        "default_output_scale",
        "other_size",
        "other_max_abs_diff",
        "other_layers_compared",
        "max_relative_diff",
        "passed",
    ]
    lines = [
        "# torchvision equivalence",
        "",
        f"{environment['date']}: torch {environment['torch']}, torchvision {environment['torchvision']}, "
        f"python {environment['python']}; batch {BATCH}, seed {SEED}. Pass when, at both sizes, "
        f"max |theirs - ours| <= {RELATIVE_TOLERANCE:g} x max |theirs| for the logits and for the output of every "
        "layer that owns parameters or buffers (`layers_compared`); `max_relative_diff` is the worst of these.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float):
                cells.append(f"{value:.3g}")
            elif isinstance(value, dict):
                cells.append(", ".join(f"{k}={v}" for k, v in value.items()) or "-")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    failed = [row["model"] for row in rows if not row["passed"]]
    lines += [
        "",
        f"{len(rows) - len(failed)} of {len(rows)} passed" + (f"; failed: {', '.join(failed)}" if failed else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", help="fnmatch patterns over model names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    args = parser.parse_args(argv)
    names = [name for name in list_models(args.patterns or None) if get_spec(name).torchvision_config is not None]
    if not names:
        parser.error("no torchvision-exact model matches")
    rows = []
    for name in names:
        config = dict(get_spec(name).torchvision_config)
        variants = [{}] + ([{"transform_input": True}] if name in TRANSFORM_INPUT_MODELS else [])
        for extra in variants:
            started = time.perf_counter()
            try:
                row = check(name, config, extra)
            except Exception as error:  # a load or shape mismatch is a result to report, not a crash
                row = {
                    "model": name,
                    "config": {**config, **extra},
                    "passed": False,
                    "error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}",
                }
            row["seconds"] = round(time.perf_counter() - started, 2)
            rows.append(row)
            status = "ok" if row["passed"] else "FAILED " + row.get("error", "")
            print(
                f"{name:22s} {json.dumps(row['config']):26s} "
                f"default {row.get('default_max_abs_diff', float('nan')):.3g}  "
                f"other {row.get('other_max_abs_diff', float('nan')):.3g}  "
                f"worst of {row.get('other_layers_compared', 0)} layers "
                f"{row.get('other_worst_layer_relative_diff', float('nan')):.3g}  {status}",
                flush=True,
            )
    environment = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    document = markdown(rows, environment)
    if not args.no_write:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{RESULT_STEM}.json").write_text(
            json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n"
        )
        (RESULTS_DIR / f"{RESULT_STEM}.md").write_text(document)
    print(document.splitlines()[-1] if document.strip() else "")
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
