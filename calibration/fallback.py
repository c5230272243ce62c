"""Labelled fallback: keep the worst-ranked layers in float until the top-1 drop measured on the user's labelled
images meets a budget (``edgecnn quantize --auto-fallback --eval-data DIR``).

The label-free fallback that runs by default when INT8 misses its task budget lives in
:func:`edgecnn.calibration.quantize.quantize_onnx`; both rank layers with
:func:`edgecnn.calibration.sensitivity.analyze` and search with
:func:`edgecnn.calibration.search.fewest_float_layers`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    CalibrationSet,
    image_input,
    load_calibration,
)
from edgecnn.calibration.quantize import QuantizationResult, quantize_onnx, resolve_preprocessing
from edgecnn.calibration.search import fewest_float_layers
from edgecnn.calibration.sensitivity import ANALYZE_SAMPLES, LayerError, analyze
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.fidelity import drop_within_budget
from edgecnn.onnx_facts import load_onnx

__all__ = ["FallbackStep", "FallbackResult", "auto_fallback"]


@dataclass
class FallbackStep:
    float_layers: int
    top1: float
    drop: float
    met: bool


@dataclass
class FallbackResult:
    result: QuantizationResult
    fp32_top1: float
    int8_top1: float
    max_drop: float
    kept_float: list[str]
    steps: list[FallbackStep]
    ranking: list[LayerError] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return self.fp32_top1 - self.int8_top1


def auto_fallback(
    fp32_path: str | Path,
    output_path: str | Path,
    *,
    evaluate: Callable[[Path], float],
    max_drop: float = 1.0,
    calibration: str | Path | CalibrationSet = "builtin",
    exclude: Iterable[str] = (),
    analyze_samples: int = ANALYZE_SAMPLES,
    cache: str | Path | None = None,
    **options,
) -> FallbackResult:
    """Quantize, and keep the most sensitive layers in float until the top-1 drop is at most ``max_drop`` points.

    ``evaluate(model_path)`` returns top-1 accuracy in percent on the caller's labelled data; it is called
    on the FP32 model and on each candidate INT8 model (files named like ``output_path``, so an evaluator may
    tell the target from the suffix). Layers are taken in :func:`analyze` order and the fewest that meet the
    budget are found in bounded rounds (:func:`fewest_float_layers`). The ranges are computed once and reused.
    Raises :class:`EdgecnnError` (nothing written) when even every ranked layer in float misses the budget.
    """
    fp32_path, output_path = Path(fp32_path), Path(output_path)
    if max_drop < 0:
        raise UsageError(f"--max-drop must be at least 0, got {max_drop}")
    if not isinstance(calibration, CalibrationSet):
        model = load_onnx(fp32_path)
        _, dims = image_input(model, fp32_path)
        preprocessing = resolve_preprocessing(fp32_path, dims, options.pop("preprocessing", None), calibration)
        calibration = load_calibration(
            calibration,
            preprocessing=preprocessing,
            samples=options.pop("samples", None) or DEFAULT_SAMPLES,
            seed=options.pop("seed", DEFAULT_SEED),
        )
    else:
        options.pop("samples", None)
        options.pop("seed", None)
        options.pop("preprocessing", None)
    options["fallback"] = False
    user_excluded = list(exclude)
    fp32_top1 = float(evaluate(fp32_path))
    steps: list[FallbackStep] = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-fallback-") as workdir:
        ranges_cache = Path(cache) if cache is not None else Path(workdir) / "ranges.json"

        def attempt(extra: list[str]) -> tuple[bool, tuple[QuantizationResult, float]]:
            candidate = Path(workdir) / f"step{len(steps)}" / output_path.name
            result = quantize_onnx(
                fp32_path,
                candidate,
                calibration=calibration,
                exclude=user_excluded + extra,
                cache=ranges_cache,
                **options,
            )
            top1 = float(evaluate(candidate))
            drop = fp32_top1 - top1
            steps.append(FallbackStep(len(extra), top1, drop, drop_within_budget(drop, max_drop)))
            return steps[-1].met, (result, top1)

        met, (result, top1) = attempt([])
        ranking: list[LayerError] = []
        chosen: list[str] = []
        if not met:
            ranking = analyze(fp32_path, result.path, calibration, samples=analyze_samples)
            excluded = set(result.excluded_nodes)
            candidates = [row.node for row in ranking if row.sqnr_db is not None and row.node not in excluded]
            search = fewest_float_layers(candidates, attempt)
            if not search.met:
                raise EdgecnnError(
                    f"auto-fallback: the INT8 top-1 drop stays {steps[-1].drop:.2f} points (budget {max_drop}) "
                    f"even with {search.best.kept_float if search.best else 0} of {len(candidates)} ranked layers "
                    "in float; nothing was written: try another --calib-method or more --calib-samples"
                )
            chosen = search.chosen
            result, top1 = search.best.outcome
        final = quantize_onnx(
            fp32_path,
            output_path,
            calibration=calibration,
            exclude=user_excluded + chosen,
            cache=ranges_cache,
            **options,
        )
    final.cache_path = Path(cache) if cache is not None else None
    return FallbackResult(final, fp32_top1, top1, max_drop, chosen, steps, ranking)
