"""export.parity: metrics, bounds, reports (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnbench.export.parity import (
    FP16_GATE,
    FP32_GATE,
    INT8_REPORT,
    ParityAccumulator,
    Tolerances,
    compare,
    report_from_dict,
)


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((8, 1000)).astype(np.float32) * 5


def test_identical_outputs_pass_with_exact_metrics(logits: np.ndarray) -> None:
    rep = compare(logits, logits.copy(), FP32_GATE)
    assert rep and rep.passed
    assert rep.samples == 8
    assert rep.metrics["max_abs_err"] == 0.0
    assert rep.metrics["max_rel_err"] == 0.0
    assert rep.metrics["cosine_min"] == pytest.approx(1.0, abs=1e-12)
    assert rep.metrics["top1_agreement"] == 1.0
    assert rep.metrics["top5_agreement"] == 1.0
    assert rep.explain() == ""


def test_relative_error_is_scaled_by_max_abs_reference(logits: np.ndarray) -> None:
    cand = logits.copy()
    scale = float(np.abs(logits).max())
    cand[3, 7] += 2e-5 * scale  # twice the FP32 bound, relative to the largest logit
    rep = compare(logits, cand, FP32_GATE)
    assert rep.metrics["max_abs_err"] == pytest.approx(2e-5 * scale, rel=1e-2)
    assert rep.metrics["max_rel_err"] == pytest.approx(2e-5, rel=1e-2)
    assert not rep
    assert "max rel error" in rep.explain()
    assert rep.explain().count("\n") == 0  # only the rel bound failed
    # the same error within a looser bound passes
    assert compare(logits, cand, FP32_GATE.replace(max_rel_err=1e-4))


def test_top1_and_top5_agreement_by_hand() -> None:
    ref = np.array([[9, 8, 7, 6, 5, 0, 0], [1, 2, 3, 4, 5, 6, 7]], dtype=np.float32)
    cand = ref.copy()
    cand[0, 1] = 10  # sample 0: argmax moves 0 -> 1, top-5 set unchanged
    cand[1, 0] = 100  # sample 1: argmax moves 6 -> 0, class 0 enters the top-5, class 2 leaves
    rep = compare(ref, cand, Tolerances(min_top1_agreement=1.0, min_top5_agreement=0.95))
    assert rep.metrics["top1_agreement"] == 0.0
    assert rep.metrics["top5_agreement"] == pytest.approx((5 / 5 + 4 / 5) / 2)
    assert not rep
    assert "top-1 agreement" in rep.explain() and "top-5 agreement" in rep.explain()


def test_cosine_min_and_mean_per_sample() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cand = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    rep = compare(ref, cand, INT8_REPORT)
    assert rep.metrics["cosine_min"] == pytest.approx(0.0)  # orthogonal sample
    assert rep.metrics["cosine_mean"] == pytest.approx(2 / 3)  # zero vs zero counts as 1
    assert rep  # INT8_REPORT has no bounds: report only


def test_shape_mismatch_and_nan_are_failures_not_exceptions(logits: np.ndarray) -> None:
    rep = compare(logits, logits[:4], FP32_GATE)
    assert not rep and "shape mismatch" in rep.explain()
    bad = logits.copy()
    bad[0, 0] = np.nan
    rep = compare(logits, bad, INT8_REPORT)
    assert not rep and "non-finite" in rep.explain()


def test_presets() -> None:
    assert FP32_GATE.max_rel_err == 1e-5 and FP32_GATE.min_cosine == 0.99999
    assert FP32_GATE.min_top1_agreement == 1.0
    assert FP16_GATE.max_rel_err is None and FP16_GATE.min_top1_agreement == 0.99
    assert FP16_GATE.min_cosine == 0.999
    assert all(v is None for v in INT8_REPORT.to_dict().values())


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_rel_err", -1.0), ("min_cosine", 1.5), ("min_top1_agreement", 1.2),
     ("min_top5_agreement", -0.1), ("max_rel_err", float("nan"))],
)  # fmt: skip
def test_tolerances_validate_and_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Tolerances(**{field: value})


def test_accumulator_equals_concatenated_compare(logits: np.ndarray) -> None:
    noisy = logits + np.random.default_rng(1).standard_normal(logits.shape).astype(np.float32)
    acc = ParityAccumulator()
    for i in range(0, 8, 3):
        acc.add(logits[i : i + 3], noisy[i : i + 3])
    assert acc.batches == 3
    a, b = acc.report(FP16_GATE), compare(logits, noisy, FP16_GATE)
    assert a.metrics == b.metrics and a.samples == 8


def test_report_table_text_and_round_trip(logits: np.ndarray) -> None:
    cand = logits.copy()
    cand[0] = -cand[0]
    rep = compare(logits, cand, FP32_GATE)
    text = rep.text()
    assert "top-1 agreement" in text and "NO" in text and "0.875" in text
    d = rep.to_dict()
    assert d["passed"] is False and d["tolerances"]["max_rel_err"] == 1e-5
    again = report_from_dict({**d, "reference": "torch"})
    assert again.metrics == rep.metrics and not again
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(rep.table(title="t"))
    assert "cosine (min)" in console.export_text()
