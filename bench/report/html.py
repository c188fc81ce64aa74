"""``index.html``: the report's plots and comparison table in one page that works from disk.

No scripts, no fonts or styles from the network: the figures are referenced by relative path
(SVG, with the PNG a click away) and the table is plain HTML, so the folder can be zipped,
mailed and opened offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.artifacts import atomic_write_text

if TYPE_CHECKING:
    from cnnbench.bench.report.plot_helpers import Plot

TABLE_COLUMNS = (
    ("model", "model"), ("family", "family"), ("engine", "engine"), ("precision", "precision"),
    ("device", "device"), ("params", "params"), ("gmacs", "GMACs"), ("top1", "top-1 %"),
    ("top1_source", "top-1 source"), ("latency_ms_p50_b1", "p50 b1 (ms)"),
    ("latency_ms_p99_b1", "p99 b1 (ms)"), ("best_throughput_ips", "best img/s"),
    ("best_batch", "at batch"), ("host_peak_rss_mb", "host RSS (MB)"),
    ("device_mem_peak_mb", "device mem (MB)"), ("speedup_latency_b1", "speed-up b1"),
    ("speedup_throughput", "speed-up thr."), ("efficiency", "efficiency"), ("errors", "errors"),
    ("invalid_rows", "invalid rows"), ("invalid_reason", "why invalid"),
)  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444;max-width:70em}
table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em}th{background:#f3f3f3;position:sticky;top:0}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.measured{background:#e8f5e9}td.published{background:#fff8e1}
.err{color:#b00020}.note{font-size:.9em;color:#555}
"""


def _fmt(key: str, v: Any) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if key == "params" and isinstance(v, (int, float)):
        return f"{v / 1e6:.2f} M"
    if key == "efficiency" and isinstance(v, (int, float)):
        return f"{100 * v:.1f} %"
    if key.startswith("speedup") and isinstance(v, (int, float)):
        return f"{v:.2f}×"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_COLUMNS)
    body = []
    for r in rows:
        cells = []
        for key, _ in TABLE_COLUMNS:
            v = r.get(key)
            cls = "n" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            if key in ("top1", "top1_source") and r.get("top1_source"):
                cls = f"{cls} {r['top1_source']}".strip()
            title = ""
            if key in ("top1", "top1_source") and r.get("top1_detail"):
                title = f' title="{html.escape(str(r["top1_detail"]))}"'
            if key == "errors" and r.get("first_error"):
                title = f' title="{html.escape(str(r["first_error"]))}"'
                cls = f"{cls} err"
            cls_attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{cls_attr}{title}>{html.escape(_fmt(key, v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def _figure(plot: Plot, out: Path) -> str:
    svg = next((f for f in plot.files if f.suffix == ".svg"), plot.files[0])
    png = next((f for f in plot.files if f.suffix == ".png"), None)
    rel = html.escape(svg.relative_to(out).as_posix())
    link = f' (<a href="{html.escape(png.relative_to(out).as_posix())}">PNG</a>)' if png else ""
    return (
        f'<figure id="{html.escape(plot.name)}">\n<img src="{rel}" alt="{html.escape(plot.title)}">\n'
        f"<figcaption><b>{html.escape(plot.title)}.</b> {html.escape(plot.caption)}{link}"
        "</figcaption>\n</figure>"
    )


def write_index(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    plots: Mapping[str, Plot],
    *,
    sources: Sequence[str],
) -> Path:
    """Write ``out/index.html`` (plots by relative path, the comparison table) and return it."""
    n_meas = sum(r.get("top1_source") == "measured" for r in rows)
    n_pub = sum(r.get("top1_source") == "published" for r in rows)
    provenance = (
        f"Top-1 provenance in the table: {n_meas} measured (green; hover for dataset, engine and "
        f"precision), {n_pub} published (amber; hover for the citation)."
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = "\n".join(_figure(p, out) for p in plots.values())
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>cnnbench report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>cnnbench report</h1>
<p class="note">From {html.escape(", ".join(sources))}; written {stamp}.
<a href="comparison.csv">comparison.csv</a> holds the same table with full precision.</p>
<h2>Plots</h2>
{figures}
<h2>Comparison</h2>
<p class="note">One row per model × engine × precision × device. Speed-ups are against torch FP32
on the same device (latency: p50 at batch 1; throughput: best over batches). Efficiency is the
share of the device's measured matrix-multiply peak at the best-throughput batch.
{html.escape(provenance)}</p>
{_table(rows)}
</body>
</html>
"""
    return atomic_write_text(out / "index.html", page)
