"""The comparison table, the plots and the CI workflow files around them."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cnnbench.bench.report.build import (
    COMPARISON_COLUMNS,
    ZooEntry,
    compare_rows,
    series_rows,
    write_report,
)
from cnnbench.bench.results.files import write_rows
from cnnbench.cli import cli

ROOT = Path(__file__).resolve().parents[3]

ZOO = {
    "resnet18": ZooEntry("resnet18", "ResNet", 11_689_512, 1_814_000_000, 69.758, "tv", True),
    "googlenet": ZooEntry("googlenet", "GoogLeNet", 6_624_904, 1_498_000_000, 69.778, "tv", True),
    "alexnet": ZooEntry("alexnet", "AlexNet", 60_965_224, 724_000_000, 59.3, "paper", True),
}


def _row(
    model: str, engine: str, precision: str, batch: int, scenario: str, p50: float, **kw: Any
) -> dict[str, Any]:
    row = {
        "model": model, "engine": engine, "precision": precision, "device": "cpu",
        "batch": batch, "scenario": scenario, "latency_ms_p50": p50,
        "latency_ms_p90": p50 * 1.1, "latency_ms_p99": p50 * 1.5, "latency_ms_mean": p50,
        "throughput_ips": 1000.0 * batch / p50, "samples": 20,
        "params": ZOO[model].params, "macs": ZOO[model].macs,
        "host_peak_rss_mb": 400.0 + batch, "device_mem_peak_mb": None, "error": None,
        "weights": f"torchvision:{model}",
    }  # fmt: skip
    row.update(kw)
    return row


def _rows() -> list[dict[str, Any]]:
    return [
        _row("resnet18", "torch", "fp32", 1, "single-stream", 20.0),
        _row("resnet18", "torch", "fp32", 1, "offline", 19.0),
        _row("resnet18", "torch", "fp32", 8, "offline", 80.0, efficiency=0.25),
        _row("resnet18", "onnxruntime", "fp32", 1, "single-stream", 10.0),
        _row("resnet18", "onnxruntime", "fp32", 8, "offline", 40.0, efficiency=0.5),
        _row("resnet18", "onnxruntime", "fp32", 32, "offline", 100.0, host_peak_rss_mb=900.0),
        _row(
            "resnet18",
            "onnxruntime",
            "fp32",
            64,
            "offline",
            1.0,
            throughput_ips=None,
            error="InvalidInputError: out of memory",
        ),  # fmt: skip
        _row("resnet18", "onnxruntime", "fp32", 8, "server", 1.0, throughput_ips=1e9),
        _row("googlenet", "onnxruntime", "int8", 1, "offline", 5.0),
        # an accuracy row written by `cnnbench eval --data`
        {
            "model": "resnet18",
            "engine": "onnxruntime",
            "precision": "fp32",
            "device": "cpu",
            "batch": 16,
            "scenario": "accuracy",
            "top1": 91.5,
            "top5": 99.0,
            "accuracy_source": "measured",
            "dataset": "val",
            "images": 200,
            "weights": "torchvision:resnet18",
        },  # fmt: skip
    ]


def _by_cell(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model"], r["engine"], r["precision"]): r for r in rows}


def test_comparison_numbers() -> None:
    cmp = _by_cell(compare_rows(_rows(), ZOO))
    assert set(cmp) == {
        ("resnet18", "torch", "fp32"),
        ("resnet18", "onnxruntime", "fp32"),
        ("googlenet", "onnxruntime", "int8"),
    }
    torch_row, ort = cmp["resnet18", "torch", "fp32"], cmp["resnet18", "onnxruntime", "fp32"]
    # batch-1 latency comes from the single-stream row, not the faster offline b1 row
    assert torch_row["latency_ms_p50_b1"] == 20.0 and torch_row["latency_ms_p99_b1"] == 30.0
    assert torch_row["best_throughput_ips"] == 100.0 and torch_row["best_batch"] == 8
    assert torch_row["speedup_latency_b1"] == 1.0 and torch_row["speedup_throughput"] == 1.0
    # onnxruntime: best throughput 320 img/s at batch 32 (the server row and the error excluded)
    assert ort["best_throughput_ips"] == 320.0 and ort["best_batch"] == 32
    assert ort["speedup_latency_b1"] == 2.0 and ort["speedup_throughput"] == 3.2
    assert ort["host_peak_rss_mb"] == 900.0 and ort["efficiency"] is None
    assert (ort["errors"], ort["cells"]) == (1, 5) and "out of memory" in ort["first_error"]
    assert ort["gmacs"] == 1.814 and ort["params"] == 11_689_512 and ort["family"] == "ResNet"
    # measured top-1 where eval rows exist, published elsewhere, each saying so
    assert (ort["top1"], ort["top5"], ort["top1_source"]) == (91.5, 99.0, "measured")
    assert ort["top1_detail"] == "measured on val (200 images) with onnxruntime fp32"
    assert (torch_row["top1"], torch_row["top1_source"], torch_row["top1_detail"]) == (
        69.758, "published", "published: tv",
    )  # fmt: skip
    assert ort["speedup_baseline"] == "torch fp32" and ort["speedup_valid"]
    g = cmp["googlenet", "onnxruntime", "int8"]
    # no torch for googlenet here: the slowest engine (the only one) is the baseline
    assert g["speedup_baseline"] == "onnxruntime int8" and g["speedup_throughput"] == 1.0
    assert g["latency_ms_p50_b1"] == 5.0  # offline b1 stands in when there is no single-stream


def test_repeats_are_the_median_with_min_and_max_and_null_is_left_out() -> None:
    rows = [
        _row("resnet18", "onnxruntime", "fp32", 1, "offline", p50, repeat=i)
        for i, p50 in enumerate([10.0, 14.0, 11.0, 30.0, 12.0])
    ] + [_row("resnet18", "null", "fp32", 1, "offline", 0.001)]
    (ort,) = compare_rows(rows, ZOO)  # the null row is not a model's
    assert ort["latency_ms_p50_b1"] == 12.0 and ort["repeats"] == 5
    assert (ort["latency_ms_p50_b1_min"], ort["latency_ms_p50_b1_max"]) == (10.0, 30.0)
    assert ort["best_throughput_ips"] == 1000.0 / 12.0
    assert {r["engine"] for r in compare_rows(rows, ZOO, include_null=True)} == {
        "null", "onnxruntime"
    }  # fmt: skip
    # a named baseline engine, and no speed-up vouched for when a side is invalid
    rows += [_row("resnet18", "torch", "fp32", 1, "offline", 40.0, valid=False,
                  invalid_reason="foreign CPU load")]  # fmt: skip
    ort = next(r for r in compare_rows(rows, ZOO) if r["engine"] == "onnxruntime")
    assert ort["speedup_baseline"] == "torch fp32" and ort["speedup_valid"] is False
    ort = next(r for r in compare_rows(rows, ZOO, baseline_engine="onnxruntime")
               if r["engine"] == "onnxruntime")  # fmt: skip
    assert ort["speedup_baseline"] == "onnxruntime fp32" and ort["speedup_valid"] is True


def test_random_weights_show_no_accuracy_and_are_not_on_an_accuracy_axis(tmp_path: Path) -> None:
    rows = [_row("resnet18", "onnxruntime", "fp32", 1, "offline", 10.0, weights="seeded-init:0",
                 artifact_sha256="aa")]  # fmt: skip
    # even an eval of another file on real weights does not lend it its accuracy
    rows.append({**_rows()[-1], "artifact_sha256": "bb"})
    (r,) = compare_rows(rows, ZOO)
    assert r["top1"] is None and r["top1_source"] == "random"
    assert r["top1_detail"] == "random weights: accuracy not meaningful"
    results = tmp_path / "r.csv"
    write_rows(results, rows)
    rep = write_report([results], tmp_path / "out", zoo=ZOO)
    assert "top1_vs_gmacs" not in rep.plots and "top1_vs_latency" not in rep.plots
    page = rep.index_html.read_text()
    assert "Random weights (accuracy not meaningful" in page and ">random<" in page
    assert "69.758" not in page and "69.8" not in page
    # with --zoo-context the published figures come back, as context, labelled so
    rep = write_report([results], tmp_path / "ctx", zoo=ZOO, zoo_context=True)
    assert (
        "as context" in rep_caption(rep, "top1_vs_gmacs")
        or "as context" in (tmp_path / "ctx" / "index.html").read_text()
    )


def test_series_prefers_offline_and_skips_errors() -> None:
    s = series_rows(_rows())
    ort = s["resnet18", "onnxruntime", "fp32", "cpu"]
    assert [r["batch"] for r in ort] == [1, 8, 32]
    torch_b1 = s["resnet18", "torch", "fp32", "cpu"][0]
    assert torch_b1["scenario"] == "offline"
    assert all(r.get("scenario") != "accuracy" for rows in s.values() for r in rows)


def test_report_files_and_every_zoo_model_on_the_bubble_plot(tmp_path: Path) -> None:
    from cnnbench.models import get_spec, list_models

    results = tmp_path / "results.jsonl"
    write_rows(results, _rows())
    out = tmp_path / "report"
    res = CliRunner().invoke(cli, ["report", str(results), "--out", str(out), "--zoo-context"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out / "index.html")
    names = sorted(p.name for p in out.iterdir())
    expected = ["comparison.csv", "index.html"] + [
        f"{n}.{e}"
        for n in (
            "latency_vs_macs",
            "memory_vs_batch",
            "throughput_vs_batch",
            "top1_vs_gmacs",
            "top1_vs_latency",
        )
        for e in ("png", "svg")
    ]
    assert names == sorted(expected)
    with open(out / "comparison.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == COMPARISON_COLUMNS and len(table) == 3
    ort = next(r for r in table if r["engine"] == "onnxruntime" and r["model"] == "resnet18")
    assert ort["top1_source"] == "measured" and float(ort["speedup_throughput"]) == 3.2
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    bubble = (out / "top1_vs_gmacs.svg").read_text()
    imagenet = [n for n in list_models(imagenet_only=True) if get_spec(n).top1 is not None]
    assert len(imagenet) >= 11
    shown = set(re.findall(r">([\w.]+)</text>", bubble))
    missing = [n for n in imagenet if n not in shown]
    assert not missing, f"models missing from the bubble plot: {missing}"
    assert "GMACs" in bubble and "top-1 accuracy (%)" in bubble
    assert "measured top-1" in bubble and "published top-1" in bubble
    latency = (out / "top1_vs_latency.svg").read_text()
    assert "ms per image" in latency
    page = (out / "index.html").read_text()
    assert page.index("Decision") < page.index("Comparison") < page.index("Figures")
    assert "Mixed provenance" in page  # captions are in the page, once, not in the images
    assert page.count("Mixed provenance") == 1 and "Mixed provenance" not in latency
    assert res.output.startswith("constraints:") and "choice: " in res.output


def test_report_with_published_only_says_so(tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    write_rows(results, [r for r in _rows() if r.get("scenario") != "accuracy"])
    rep = write_report([results], tmp_path / "out", zoo=ZOO)
    assert {r["top1_source"] for r in rep.rows} == {"published"}
    assert "every value shown is published" in rep_caption(rep, "top1_vs_gmacs")
    assert "Every top-1 shown is published" in rep_caption(rep, "top1_vs_latency")


def rep_caption(rep: Any, name: str) -> str:
    """What a figure says: its caption, as the report's page shows it (under the figure,
    once), and the text drawn in it (legends, labels)."""
    page = rep.index_html.read_text()
    m = re.search(rf'<figure id="{name}">.*?<figcaption>(.*?)</figcaption>', page, re.S)
    assert m, name
    svg = next(p for p in rep.plots[name] if p.suffix == ".svg")
    return m.group(1) + " " + " ".join(re.findall(r">([^<>]+)</text>", svg.read_text()))


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("model,engine\n")
    for args, match in (
        ([str(tmp_path / "missing.csv")], "results file not found"),
        ([str(empty)], "no result rows"),
        ([str(tmp_path / "x.txt")], "must end in .csv or .jsonl"),
    ):
        res = CliRunner().invoke(cli, ["report", *args, "--out", str(tmp_path / "o")])
        assert res.exit_code == 2, res.output
        assert match in res.output and "Traceback" not in res.output


def test_workflow_yaml_is_valid_and_runs_the_script() -> None:
    wf = ROOT / ".github" / "workflows" / "benchmark.yml"
    doc = yaml.safe_load(wf.read_text())
    jobs = doc["jobs"]
    assert {"cpu", "gpu"} <= set(jobs)
    assert jobs["gpu"]["runs-on"][0] == "self-hosted"
    for name in ("cpu", "gpu"):
        runs = " ".join(str(s.get("run", "")) for s in jobs[name]["steps"])
        assert "tools/ci/benchmark.sh" in runs
        uses = [s.get("uses", "") for s in jobs[name]["steps"]]
        assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert "--engine trt" in str(jobs["gpu"]) or "CNNBENCH_CI_ENGINE: trt" in wf.read_text()


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not installed")
def test_workflow_passes_actionlint() -> None:
    wf = ROOT / ".github" / "workflows" / "benchmark.yml"
    cfg = ROOT / ".github" / "actionlint.yaml"
    cmd = ["actionlint", "-config-file", str(cfg), "-shellcheck=", "-pyflakes=", str(wf)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    res = subprocess.run(["hadolint", str(ROOT / "docker" / name)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ci_script_is_strict_bash() -> None:
    script = (ROOT / "tools" / "ci" / "benchmark.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    res = subprocess.run(["bash", "-n", str(ROOT / "tools" / "ci" / "benchmark.sh")])
    assert res.returncode == 0


@pytest.mark.slow
def test_ci_script_sweeps_reports_and_gates_on_a_baseline(tmp_path: Path) -> None:
    """tools/ci/benchmark.sh end to end on a one-cell config; a baseline 1000x faster than
    anything measurable makes the compare step fail the script (exit 1), after the report.
    --strict: on a busy machine the new row is invalid, and the cell inconclusive, not a pass."""
    import sys

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "models: [lenet5]\nengines: [onnxruntime]\nprecisions: [fp32]\nbatches: [1]\n"
        "scenarios: [offline]\ntimeout_s: 120\n"
        "stop: {warmup_count: 1, warmup_time: 0, min_count: 5, min_time: 0.05, max_time: 1}\n"
    )
    baseline = tmp_path / "baseline.csv"
    write_rows(
        baseline,
        [{"model": "lenet5", "engine": "onnxruntime", "precision": "fp32", "device": "cpu", "batch": 1,
          "scenario": "offline", "latency_ms_p50": 1e-9, "throughput_ips": 1e15, "error": None}],
    )  # fmt: skip
    out = tmp_path / "ci-out"
    cmd = ["bash", str(ROOT / "tools/ci/benchmark.sh"), "--config", str(config), "--out", str(out)]
    env = {**__import__("os").environ, "PYTHON": sys.executable}
    res = subprocess.run(
        [*cmd, "--baseline", str(baseline), "--strict"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    said = (res.stdout + res.stderr).lower()
    assert re.search(r"[1-9]\d* regression\(s\) beyond|[1-9]\d* inconclusive cell\(s\)", said), (
        said[-2000:]
    )
    with open(out / "report" / "comparison.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert (row["model"], row["engine"], row["errors"]) == ("lenet5", "onnxruntime", "0")
    assert float(row["best_throughput_ips"]) > 0
    assert (out / "report" / "index.html").is_file() and (out / "comparison.csv").is_file()
    missing = subprocess.run(
        [*cmd, "--baseline", str(tmp_path / "nope.csv")], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "baseline not found" in missing.stderr


def _timing(precision: str, p50: float, **extra: Any) -> dict[str, Any]:
    return {
        "model": "resnet18", "engine": "onnxruntime", "precision": precision, "device": "cpu",
        "batch": 1, "scenario": "single-stream", "latency_ms_p50": p50, "throughput_ips": 1e3 / p50,
        "samples": 200, "valid": True, "error": None, "weights": "torchvision:resnet18", **extra,
    }  # fmt: skip


def _eval(precision: str, top1: float) -> dict[str, Any]:
    return {
        "model": "resnet18", "engine": "onnxruntime", "precision": precision, "device": "cpu",
        "batch": 32, "scenario": "accuracy", "top1": top1, "top5": 90.0,
        "accuracy_source": "measured", "dataset": "imagenet-val", "images": 500, "error": None,
        "weights": "torchvision:resnet18",
    }  # fmt: skip


def test_eval_rows_of_two_precisions_are_measured_points_distinct_from_published(
    tmp_path: Path,
) -> None:
    results = tmp_path / "r.jsonl"
    write_rows(results, [_timing("fp32", 20.0), _timing("int8", 9.0),
                         _eval("fp32", 69.6), _eval("int8", 68.9)])  # fmt: skip
    rep = write_report([results], tmp_path / "out", zoo=ZOO)
    got = {r["precision"]: (r["top1"], r["top1_source"]) for r in rep.rows}
    assert got == {"fp32": (69.6, "measured"), "int8": (68.9, "measured")}
    bubble = rep_caption(rep, "top1_vs_gmacs")
    assert "Filled markers are measured top-1" in bubble
    assert "filled: measured top-1, fp32" in bubble and "filled: measured top-1, int8" in bubble
    assert "hollow: published top-1" in bubble
    assert "Every top-1 shown was measured (filled markers)" in rep_caption(rep, "top1_vs_latency")


def test_published_only_deployment_plot_shows_the_fp32_agreement_on_a_readable_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnbench.bench.report.plots as plots

    spans: dict[str, tuple[float, float]] = {}
    real_save = plots.save

    def spy(fig: Any, out: Path, name: str, title: str, caption: str) -> Any:
        spans[name] = fig.axes[0].get_ylim()
        return real_save(fig, out, name, title, caption)

    monkeypatch.setattr(plots, "save", spy)
    results = tmp_path / "r.jsonl"
    write_rows(results, [_timing("fp32", 20.0), _timing("int8", 9.0, fp32_top1_agreement=0.975)])
    rep = write_report([results], tmp_path / "out", zoo=ZOO)
    lo, hi = spans["top1_vs_latency"]
    assert hi - lo >= plots.MIN_TOP1_SPAN - 1e-9  # both at 69.758: no 0.02-point zoom
    text = rep_caption(rep, "top1_vs_latency")
    assert "97.5% top-1 = fp32" in text and "bounds its accuracy drop" in text
    int8 = next(r for r in rep.rows if r["precision"] == "int8")
    assert int8["fp32_top1_agreement"] == 0.975 and int8["top1_source"] == "published"


def test_a_rows_fp32_agreement_comes_from_its_files_parity_check(tmp_path: Path) -> None:
    import json

    from cnnbench.bench.run.prepare import made_from

    (tmp_path / "manifest.json").write_text(
        json.dumps({"precision": "int8", "parity": {"metrics": {"top1_agreement": 0.96875}}})
    )
    assert made_from(tmp_path / "model.onnx")["fp32_top1_agreement"] == 0.96875
    (tmp_path / "manifest.json").write_text(json.dumps({"precision": "fp32", "parity": {}}))
    assert "fp32_top1_agreement" not in made_from(tmp_path / "model.onnx")
