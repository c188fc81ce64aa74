"""index.html works offline: no network references, and it loads in headless Chromium with no
console errors and every image decoded (when Debian's chromium is installed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cnnbench.bench.report.build import ZooEntry, write_report
from cnnbench.bench.results.files import write_rows

ZOO = {
    "resnet18": ZooEntry("resnet18", "ResNet", 11_689_512, 1_814_000_000, 69.758, "tv", True),
    "alexnet": ZooEntry("alexnet", "AlexNet", 60_965_224, 724_000_000, 59.3, "paper", True),
}


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for engine, p50 in (("torch", 20.0), ("onnxruntime", 10.0)):
        for batch in (1, 4):
            rows.append(
                {"model": "resnet18", "engine": engine, "precision": "fp32", "device": "cpu",
                 "batch": batch, "scenario": "offline", "latency_ms_p50": p50 * batch,
                 "latency_ms_p99": p50 * batch * 1.2, "throughput_ips": 1000 / p50,
                 "params": 11_689_512, "macs": 1_814_000_000,
                 "host_peak_rss_mb": 300.0 + batch, "error": None,
                 "weights": "torchvision:resnet18"}
            )  # fmt: skip
    rows.append(
        {"model": "resnet18", "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
         "batch": 16, "scenario": "accuracy", "top1": 91.5, "top5": 99.0,
         "accuracy_source": "measured", "dataset": "val", "images": 200,
         "weights": "torchvision:resnet18"}
    )  # fmt: skip
    return rows


CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium absent (apt-get install chromium)"
)

# Injected into a copy of the page: records load failures, script errors and console.error,
# then writes them into the DOM on `load` so that --dump-dom hands them back.
_PROBE = """<script>(function(){var e=[];
window.addEventListener('error',function(ev){var t=ev.target;
 e.push(t&&t!==window&&(t.src||t.href)?'load failed: '+(t.src||t.href):'js: '+ev.message);},true);
var ce=console.error;console.error=function(){e.push('console.error: '+
 Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};
window.addEventListener('load',function(){var im=document.images;
 for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0)
  e.push('image not decoded: '+im[i].src);}
 var p=document.createElement('pre');p.id='cnnbench-probe';
 p.textContent=JSON.stringify({errors:e,images:im.length});document.body.appendChild(p);});
})();</script>"""


def _chromium(page: Path, profile: Path) -> tuple[str, str]:
    """(dumped DOM, stderr log) of ``page`` loaded in headless Chromium."""
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri(),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr


def _problems(page: Path, tmp: Path) -> tuple[list[str], int]:
    """Console messages of the page, plus what the probe saw: one load of a copy of the page
    with the probe in its head (the probe only listens; it logs nothing of its own)."""
    probe_page = page.with_name(f"probe-{page.name}")
    probe_page.write_text(page.read_text().replace("<head>", "<head>" + _PROBE, 1))
    dom, log = _chromium(probe_page, tmp / "profile")
    console = re.findall(r":CONSOLE[:(]\d+\)?\] (.*)", log)
    found = re.search(r'<pre id="cnnbench-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run (page never reached load)"
    report = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return console + report["errors"], report["images"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    write_rows(tmp / "results.csv", _rows())
    return write_report([tmp / "results.csv"], tmp / "report", zoo=ZOO).out_dir


def test_index_is_self_contained(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "index.html references the network"
    refs = re.findall(r'(?:src|href)="([^"#:]+)"', page)
    assert {"comparison.csv", "top1_vs_gmacs.svg", "throughput_vs_batch.png"} <= set(refs)
    for ref in refs:
        assert (report_dir / ref).is_file(), f"index.html links a missing file: {ref}"
    assert "<script" not in page
    # every comparison row is in the table, with its top-1 provenance marked
    table = page[page.index("<h2>Comparison</h2>") : page.index("<h2>Figures</h2>")]
    assert table.count("<tr>") == 1 + 2
    assert 'class="n measured"' in page and 'class="n published"' in page
    assert "measured on val (200 images) with onnxruntime fp32" in page


@needs_chromium
def test_index_loads_in_chromium_without_errors(report_dir: Path, tmp_path: Path) -> None:
    problems, images = _problems(report_dir / "index.html", tmp_path)
    assert images == 5
    assert problems == []


@needs_chromium
def test_chromium_check_catches_errors(tmp_path: Path) -> None:
    """The detector itself: a broken page must report its missing image and script error."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>'
        '<img src="missing.png"><script>notDefined();</script></body></html>'
    )
    problems, images = _problems(bad, tmp_path)
    text = " | ".join(problems)
    assert images == 1
    assert "notDefined" in text and "missing.png" in text
