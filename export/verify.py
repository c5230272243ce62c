"""The comparator: the same seeded inputs through PyTorch and ONNX Runtime, and tolerances that decide.

FP32 passes when the max absolute error is at most 1e-4 x the output's scale (its largest magnitude).
FP16 passes when top-1 agrees on at least 99% of the check batch (a sample whose two classes are closer
in FP32 than 1e-3 x the scale is a near-tie FP16 cannot order, and counts as agreeing) and the cosine
similarity is at least 0.999.

A foreign ONNX file has no PyTorch module: its import is compared with the original file in ONNX Runtime,
every output by max absolute error, cosine and SQNR (:func:`compare_outputs`); top-1 agreement only when
the model is a classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edgecnn.fidelity import sqnr_db
from edgecnn.runtime import create_session, run_session

__all__ = ["Verification", "check_inputs", "torch_outputs", "compare", "compare_outputs", "sqnr_db", "verify_onnx"]

FP32_RELATIVE_TOLERANCE = 1e-4
FP16_MIN_TOP1_AGREEMENT = 0.99
FP16_MIN_COSINE = 0.999
FP16_TIE_RELATIVE = 1e-3


@dataclass
class Verification:
    precision: str
    batch: int
    max_abs_error: float
    output_scale: float
    tolerance: float
    cosine: float
    top1_agreement: float | None
    top1_agreement_raw: float | None
    passed: bool
    reason: str
    output: str | None = None
    sqnr_db: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_inputs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal inputs in the network's normalized input space."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def torch_outputs(module: nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module.eval()(torch.from_numpy(inputs)).float().numpy()


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str) -> Verification:
    """Compare logits of the candidate runtime with the PyTorch reference under ``precision``'s rule."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    if reference.shape != candidate.shape:
        return Verification(
            precision,
            len(reference),
            float("inf"),
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            False,
            f"output shape {candidate.shape} differs from PyTorch's {reference.shape}",
        )
    scale = float(np.abs(reference).max()) or 1.0
    error = float(np.abs(reference - candidate).max())
    flat_ref, flat_cand = reference.ravel(), candidate.ravel()
    denominator = np.linalg.norm(flat_ref) * np.linalg.norm(flat_cand)
    cosine = float(flat_ref @ flat_cand / denominator) if denominator else float(np.array_equal(flat_ref, flat_cand))
    predicted = candidate.argmax(axis=1)
    raw = float((predicted == reference.argmax(axis=1)).mean())
    chosen = reference[np.arange(len(reference)), predicted]
    agreement = float((chosen >= reference.max(axis=1) - FP16_TIE_RELATIVE * scale).mean())
    if not np.isfinite(candidate).all():
        return Verification(
            precision,
            len(reference),
            error,
            scale,
            0.0,
            cosine,
            agreement,
            raw,
            False,
            "the ONNX output holds NaN or infinity",
        )
    if precision == "fp32":
        tolerance = FP32_RELATIVE_TOLERANCE * scale
        passed = error <= tolerance
        reason = (
            "" if passed else f"max abs error {error:.3g} exceeds {tolerance:.3g} (1e-4 x output scale {scale:.3g})"
        )
    else:
        tolerance = FP16_TIE_RELATIVE * scale
        passed = agreement >= FP16_MIN_TOP1_AGREEMENT and cosine >= FP16_MIN_COSINE
        reason = (
            ""
            if passed
            else (
                f"top-1 agreement {agreement:.1%} (needs >= 99%) and cosine {cosine:.5f} (needs >= {FP16_MIN_COSINE})"
            )
        )
    return Verification(precision, len(reference), error, scale, tolerance, cosine, agreement, raw, passed, reason)


def compare_outputs(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], precision: str, classifier: bool
) -> list[Verification]:
    """One :class:`Verification` per output of a model without a PyTorch reference: ``precision``'s rule
    for a classifier's single output (top-1 included), otherwise max abs error within 1e-4 x scale at FP32
    or cosine >= 0.999 at FP16."""
    results = []
    for name, expected in reference.items():
        produced = candidate[name]
        if classifier:
            result = compare(expected, produced, precision)
        else:
            result = _compare_map(expected, produced, precision)
        result.output = name
        result.sqnr_db = sqnr_db(expected, produced) if expected.shape == produced.shape else None
        results.append(result)
    return results


def _compare_map(reference: np.ndarray, candidate: np.ndarray, precision: str) -> Verification:
    """Any output tensor (maps, boxes, sequences): max abs error, scale and cosine, no top-1."""
    batch = int(reference.shape[0]) if reference.ndim else 1
    if reference.shape != candidate.shape:
        return Verification(
            precision, batch, float("inf"), 0.0, 0.0, 0.0, None, None, False,
            f"output shape {candidate.shape} differs from the original's {reference.shape}",
        )  # fmt: skip
    expected, produced = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    scale = float(np.abs(expected).max()) if expected.size else 1.0
    scale = scale or 1.0
    error = float(np.abs(expected - produced).max()) if expected.size else 0.0
    denominator = np.linalg.norm(expected) * np.linalg.norm(produced)
    cosine = float(expected @ produced / denominator) if denominator else float(np.array_equal(expected, produced))
    if not np.isfinite(produced).all():
        return Verification(
            precision, batch, error, scale, 0.0, cosine, None, None, False, "the output holds NaN or infinity"
        )
    if precision == "fp32":
        tolerance = FP32_RELATIVE_TOLERANCE * scale
        passed = error <= tolerance
        reason = (
            "" if passed else f"max abs error {error:.3g} exceeds {tolerance:.3g} (1e-4 x output scale {scale:.3g})"
        )
    else:
        tolerance = 0.0
        passed = cosine >= FP16_MIN_COSINE
        reason = "" if passed else f"cosine {cosine:.5f} (needs >= {FP16_MIN_COSINE})"
    return Verification(precision, batch, error, scale, tolerance, cosine, None, None, passed, reason)


def verify_onnx(model_bytes: bytes, reference: np.ndarray, inputs: np.ndarray, precision: str) -> Verification:
    """Run the serialized ONNX model on ``inputs`` in ONNX Runtime and compare it with ``reference``."""
    session = create_session(model_bytes)
    return compare(reference, run_session(session, inputs), precision)
