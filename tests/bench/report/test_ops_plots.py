"""The operations-vs-time figure quotes a rate only where a fit says something."""

from __future__ import annotations

from pathlib import Path

from cnnbench.bench.report.ops_plots import fit_line, latency_vs_macs


def _row(model: str, gmacs: float, ms: float, engine: str = "onnxruntime") -> dict[str, object]:
    return {"model": model, "engine": engine, "precision": "fp32", "device": "cpu",
            "gmacs": gmacs, "latency_ms_p50_b1": ms, "valid_b1": True}  # fmt: skip


def test_the_fit_is_least_squares() -> None:
    a, b = fit_line([1.0, 2.0, 3.0], [3.0, 5.0, 7.0]) or (0.0, 0.0)
    assert (round(a, 9), round(b, 9)) == (1.0, 2.0)
    assert fit_line([1.0, 1.0], [2.0, 3.0]) is None


def test_three_models_give_a_rate_two_do_not(tmp_path: Path) -> None:
    three = [_row("a", 1.0, 3.0), _row("b", 2.0, 5.0), _row("c", 4.0, 9.0)]
    plot = latency_vs_macs(tmp_path, three)
    assert "onnxruntime fp32: 2 ms/GMAC + 1 ms" in plot.caption
    two = [_row("a", 1.5, 46.7, "torch"), _row("b", 1.8, 25.0, "torch")]
    plot = latency_vs_macs(tmp_path, two)
    assert "ms/GMAC" not in plot.caption and "no line is fitted" in plot.caption


def test_a_falling_fit_is_said_in_words_not_quoted_as_a_rate(tmp_path: Path) -> None:
    rows = [_row("a", 1.0, 40.0), _row("b", 2.0, 30.0), _row("c", 3.0, 20.0)]
    plot = latency_vs_macs(tmp_path, rows)
    assert "ms/GMAC" not in plot.caption
    assert "does not grow with MACs" in plot.caption
