"""The export comparator's thresholds (export/verify.py), each on both sides, on hand-built logits.

The rules, as the module documents them: FP32 passes when the max absolute error is at most 1e-4 x the output's
largest magnitude; FP16 passes when top-1 agrees on at least 99% of the batch (a sample whose FP16 choice is
within 1e-3 x that scale of the FP32 maximum is a near-tie and agrees) *and* the cosine similarity is at least
0.999; an output that is not a classifier's passes FP16 on the cosine alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.export.verify import compare, compare_outputs

BATCH, CLASSES, TOP, RUNNER_UP = 100, 10, 10.0, 9.5


def _logits(runner_up: float | None = RUNNER_UP) -> np.ndarray:
    """100 samples: class i % 10 scores 10 (the output's scale), others small; optionally a runner-up class."""
    logits = np.random.default_rng(0).uniform(-0.1, 0.1, (BATCH, CLASSES))
    rows = np.arange(BATCH)
    logits[rows, rows % CLASSES] = TOP
    if runner_up is not None:
        logits[rows, (rows + 1) % CLASSES] = runner_up
    return logits


def _flip(reference: np.ndarray, count: int, to: float = TOP + 0.1) -> np.ndarray:
    """The first ``count`` samples choose their runner-up class: a 0.6 change in one logit, cosine ~1."""
    candidate = reference.copy()
    rows = np.arange(count)
    candidate[rows, (rows + 1) % CLASSES] = to
    return candidate


def _rotated(reference: np.ndarray, cosine: float) -> np.ndarray:
    """``reference`` turned by the angle whose cosine is ``cosine``, towards a direction orthogonal to it."""
    flat = reference.ravel()
    other = np.random.default_rng(1).standard_normal(flat.size)
    other -= (other @ flat) / (flat @ flat) * flat
    other *= np.linalg.norm(flat) / np.linalg.norm(other)
    return (cosine * flat + np.sqrt(1 - cosine**2) * other).reshape(reference.shape)


def test_fp16_top1_agreement_at_99_percent_passes_and_below_fails():
    reference = _logits()
    one, two = compare(reference, _flip(reference, 1), "fp16"), compare(reference, _flip(reference, 2), "fp16")
    assert one.cosine > 0.9999 and two.cosine > 0.9999, "only the agreement differs"
    assert (one.top1_agreement, one.passed) == (0.99, True)
    assert (two.top1_agreement, two.passed) == (0.98, False)
    assert "top-1 agreement 98.0%" in two.reason


def test_fp16_needs_the_cosine_as_well_as_the_agreement():
    reference = _logits(runner_up=None)
    above, below = (
        compare(reference, _rotated(reference, 0.999 + 1e-6), "fp16"),
        compare(reference, _rotated(reference, 0.999 - 1e-6), "fp16"),
    )
    assert above.cosine == pytest.approx(0.999 + 1e-6, abs=1e-9)
    assert below.cosine == pytest.approx(0.999 - 1e-6, abs=1e-9)
    assert above.top1_agreement == below.top1_agreement == 1.0, "only the cosine differs"
    assert above.passed and not below.passed
    assert "cosine 0.99900" in below.reason


def test_fp16_near_ties_count_as_agreeing_only_within_the_tolerance():
    """Tolerance 1e-3 x scale = 0.01: a choice 0.005 below the FP32 maximum agrees, one 0.02 below does not."""
    within = _logits(runner_up=TOP - 0.005)
    beyond = _logits(runner_up=TOP - 0.02)
    tie = compare(within, _flip(within, 5, to=TOP + 0.001), "fp16")
    miss = compare(beyond, _flip(beyond, 5, to=TOP + 0.001), "fp16")
    assert tie.top1_agreement_raw == miss.top1_agreement_raw == 0.95
    assert (tie.top1_agreement, tie.passed) == (1.0, True)
    assert (miss.top1_agreement, miss.passed) == (0.95, False)


def test_fp32_error_at_the_tolerance_passes_and_past_it_fails():
    reference = _logits(runner_up=None)
    reference[0, 1] = 0.0
    tolerance = 1e-4 * TOP
    at, past = reference.copy(), reference.copy()
    at[0, 1], past[0, 1] = tolerance, tolerance * (1 + 1e-6)
    assert compare(reference, at, "fp32").passed
    rejected = compare(reference, past, "fp32")
    assert not rejected.passed and "exceeds" in rejected.reason


def test_non_finite_output_fails_whatever_the_precision():
    reference = _logits()
    candidate = reference.copy()
    candidate[3, 3] = np.nan
    assert not compare(reference, candidate, "fp16").passed
    assert not compare(reference, candidate, "fp32").passed


def test_feature_map_outputs_pass_fp16_on_the_cosine_alone():
    reference = np.random.default_rng(2).standard_normal((2, 8, 6, 6))
    above, below = (
        compare_outputs({"map": reference}, {"map": _rotated(reference, c)}, "fp16", classifier=False)[0]
        for c in (0.999 + 1e-6, 0.999 - 1e-6)
    )
    assert above.passed and above.top1_agreement is None
    assert not below.passed and "cosine" in below.reason
