"""The dashboard in real headless Chromium (Debian's): every page loads with the rows it should
show, no console error, every image decoded; a screenshot of each page is kept as a test
artifact (``$CNNBENCH_TEST_ARTIFACTS``, else the test's temporary folder)."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.bench.report.test_report_html import CHROMIUM, _problems, needs_chromium

pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cnnbench[serve]'")

from tests.serve.test_service import GRID, start, stop  # noqa: E402


def _screenshot(url: str, dest: Path, profile: Path) -> None:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1000",
           "--virtual-time-budget=5000", f"--screenshot={dest}", url]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and dest.stat().st_size > 5000, res.stderr[-1500:]


def _served_copy(url: str, base: str, dest: Path) -> Path:
    """The page as served, saved with a <base> so its figures load from the server."""
    with urllib.request.urlopen(url, timeout=60) as res:
        page = res.read().decode()
    dest.write_text(page.replace("<head>", f'<head><base href="{base}/">', 1))
    return dest


@needs_chromium
def test_every_page_shows_its_rows_in_chromium_without_errors(tmp_path: Path) -> None:
    shots = Path(os.environ.get("CNNBENCH_TEST_ARTIFACTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data")
    try:
        ids = []
        for _ in range(2):
            _, job = srv.call("POST", "/api/jobs", GRID)
            ids.append(job["id"])
        for i in ids:
            assert srv.wait_job(i)["state"] == "done"
        pages = {
            "jobs": ("/", [rf'href="/jobs/{i}">job {i}</a>' for i in ids] + ["done"]),
            "job": (f"/jobs/{ids[0]}", ["<td>onnxruntime</td>", "<td>null</td>", "verdict"]),
            "history": ("/history", ["latency_over_time.png", "throughput_over_time.png"]),
            "compare": (f"/compare?base=job:{ids[0]}&new=job:{ids[1]}",
                        ["latency_ms_p50", "throughput_ips", "compared"]),
            "tradeoff": ("/tradeoff", ["top1_vs_gmacs.png"]),
        }  # fmt: skip
        for name, (path, expected) in pages.items():
            page = _served_copy(srv.url + path, srv.url, tmp_path / f"{name}.html")
            text = page.read_text()
            for e in expected:
                assert re.search(e, text), f"{path}: {e!r} not on the page"
            problems, images = _problems(page, tmp_path / f"chromium-{name}")
            assert problems == [], (path, problems)
            if name in ("history", "tradeoff"):
                assert images >= 1, path
            _screenshot(srv.url + path, shots / f"dashboard-{name}.png", tmp_path / f"shot-{name}")
        job_page = (tmp_path / "job.html").read_text()
        assert job_page.count("<tr><td>lenet5</td>") == 2  # the job's two rows
    finally:
        stop(srv)
