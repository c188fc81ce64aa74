"""``index.html``: the decision, the comparison table and the figures, in one page that works
from disk.

In the order a user deciding what to deploy reads it: the decision (constraints, choice,
runner-up, frontier, what was left out and why), a compact table that fits a 1400 px screen
(verdicts as marks with their reasons in footnotes; repeats as median with min–max; no
speed-up from an invalid row), then the figures, each with its caption once. No scripts, no
fonts or styles from the network: figures are referenced by relative path (SVG, with the PNG a
click away), so the folder can be zipped, mailed and opened offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.artifacts import atomic_write_text
from cnnbench.bench.report.recommend import Candidate, Decision, summary

if TYPE_CHECKING:
    from cnnbench.bench.report.plot_helpers import Plot

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#222;max-width:1360px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444;max-width:70em}
table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .45em}th{background:#f3f3f3;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.measured{background:#e8f5e9}td.published{background:#fff8e1}td.random{color:#777}
.ok{color:#1b5e20}.bad{color:#b00020}.err{color:#b00020}.note{font-size:.9em;color:#555}
.decision{border:2px solid #1b5e20;border-radius:6px;padding:.6em 1em;background:#f6fbf6}
.decision.none{border-color:#b00020;background:#fdf3f3}
.choice{font-size:1.1em}.sub{color:#555;font-size:.9em}
ol.foot{font-size:.85em;color:#444}details{margin:.5em 0}
"""


def _num(v: Any, digits: int = 3) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"
    return str(v)


def _spread(median: Any, lo: Any, hi: Any) -> str:
    """A median with its min–max over repeats (just the median for one)."""
    if median is None:
        return "–"
    if lo is None or hi is None or lo == hi:
        return _num(median)
    return f"{_num(median)} <span class=sub>[{_num(lo)}–{_num(hi)}]</span>"


def decision_html(d: Decision) -> str:
    """The decision block (the report's first section; the dashboard's job and history pages)."""
    cls = "decision" if d.choice is not None else "decision none"
    items = "".join(f"<li>{html.escape(c)}</li>" for c in d.constraints.describe())
    if d.choice is not None:
        head = (f'<p class=choice><b>Deploy: {html.escape(d.choice.label)}</b><br>'
                f'<span class=sub>{html.escape(summary(d.choice))}</span></p>')  # fmt: skip
        if d.runner_up is not None:
            head += (f"<p>Runner-up: {html.escape(d.runner_up.label)} "
                     f"<span class=sub>({html.escape(summary(d.runner_up))})</span></p>")  # fmt: skip
    elif d.nearest_miss is not None:
        c, why = d.nearest_miss
        head = (f"<p class=choice><b>No measured cell meets the constraints.</b> Nearest miss: "
                f"{html.escape(c.label)} ({html.escape(why)}).</p>")  # fmt: skip
    else:
        head = "<p class=choice><b>No measured cell meets the constraints.</b></p>"
    frontier = _candidates_table(d.frontier) if d.frontier else ""
    out = "".join(
        f"<tr><td>{html.escape(c.label)}</td><td>{html.escape(why)}</td></tr>"
        for c, why in d.excluded
    )
    left = (
        f"<details><summary>{len(d.excluded)} cell(s) left out, and why</summary>"
        f"<table><tr><th>cell</th><th>why</th></tr>{out}</table></details>"
        if d.excluded else ""
    )  # fmt: skip
    return (
        f'<div class="{cls}">{head}<details><summary>Constraints used</summary><ul>{items}</ul>'
        f"</details>{'<p>Pareto frontier over throughput, p99 latency, memory and accuracy:</p>' + frontier if frontier else ''}"
        f"{left}</div>"
    )


def _candidates_table(cands: Sequence[Candidate]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.label)}</td><td class=n>{_num(c.throughput)}</td>"
        f"<td class=n>{_num(c.p99_ms)}</td><td class=n>{_num(c.memory_mb)}</td>"
        f"<td class={c.top1.source or 'random'} title=\"{html.escape(c.top1.detail)}\">"
        f"{_num(c.top1.top1, 4) if c.top1.top1 is not None else html.escape(c.top1.source or '–')}</td>"
        f"<td>{'valid' if c.valid else 'INVALID'}</td></tr>"
        for c in cands
    )  # fmt: skip
    return ("<table><tr><th>cell</th><th>img/s</th><th>p99 ms</th><th>memory MB</th>"
            f"<th>top-1 %</th><th>verdict</th></tr>{rows}</table>")  # fmt: skip


class _Footnotes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def mark(self, text: str) -> int:
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1

    def html(self) -> str:
        return (
            "<ol class=foot>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ol>"
        )


def _verdict(r: Mapping[str, Any], foot: _Footnotes) -> str:
    if r.get("errors"):
        return f'<span class=err title="{html.escape(str(r.get("first_error")))}">!<sup>{foot.mark("failed: " + str(r.get("first_error")))}</sup></span>'
    if r.get("invalid_rows"):
        n = foot.mark(f"invalid: {r.get('invalid_reason')}")
        return f"<span class=bad>✗<sup>{n}</sup></span>"
    return "<span class=ok>✓</span>"


def _top1_cell(r: Mapping[str, Any]) -> str:
    src = str(r.get("top1_source") or "")
    detail = html.escape(str(r.get("top1_detail") or ""))
    if r.get("top1") is None:
        text = "random" if src == "random" else "–"
        return f'<td class="{src or "random"}" title="{detail}">{text}</td>'
    return f'<td class="n {src}" title="{detail}">{_num(r["top1"], 4)} <span class=sub>{src[:4]}.</span></td>'


def _speedup(r: Mapping[str, Any], foot: _Footnotes) -> str:
    lat, thr = r.get("speedup_latency_b1"), r.get("speedup_throughput")
    if lat is None and thr is None:
        return "–"
    if not r.get("speedup_valid"):
        return (
            f"–<sup>{foot.mark('no speed-up shown: a measurement on either side is invalid')}</sup>"
        )
    return f"{_num(lat)}× / {_num(thr)}×"


def _precision(r: Mapping[str, Any], foot: _Footnotes) -> str:
    """The precision, marked where an INT8 cell did not run INT8 (its warning a footnote)."""
    text = html.escape(str(r["precision"]))
    if not r.get("int8_warning"):
        return text
    return f"<span class=bad>{text}⚠<sup>{foot.mark(str(r['int8_warning']))}</sup></span>"


def _table(rows: Sequence[Mapping[str, Any]]) -> tuple[str, _Footnotes]:
    foot = _Footnotes()
    head = ("<tr><th></th><th>model</th><th>engine</th><th>prec.</th><th>device</th>"
            "<th>top-1 %</th><th>p50 b1 ms<br><span class=sub>median [min–max]</span></th>"
            "<th>best img/s<br><span class=sub>median [min–max]</span></th><th>batch</th>"
            "<th>memory MB<br><span class=sub>peak, any batch</span></th>"
            "<th>speed-up<br><span class=sub>latency / throughput</span></th>"
            "<th>vs</th></tr>")  # fmt: skip
    body = []
    for r in rows:
        mem = r.get("device_mem_peak_mb") or r.get("host_peak_rss_mb")
        body.append(
            f"<tr><td>{_verdict(r, foot)}</td><td>{html.escape(str(r['model']))}</td>"
            f"<td>{html.escape(str(r['engine']))}</td><td>{_precision(r, foot)}</td>"
            f"<td>{html.escape(str(r['device']))}</td>{_top1_cell(r)}"
            f"<td class=n>{_spread(r.get('latency_ms_p50_b1'), r.get('latency_ms_p50_b1_min'), r.get('latency_ms_p50_b1_max'))}</td>"
            f"<td class=n>{_spread(r.get('best_throughput_ips'), r.get('best_throughput_ips_min'), r.get('best_throughput_ips_max'))}</td>"
            f"<td class=n>{_num(r.get('best_batch'))}</td><td class=n>{_num(mem)}</td>"
            f"<td class=n>{_speedup(r, foot)}</td><td>{html.escape(str(r.get('speedup_baseline') or '–'))}</td></tr>"
        )  # fmt: skip
    return f"<table>{head}{''.join(body)}</table>", foot


def figure_html(plot: Plot, out: Path) -> str:
    svg = next((f for f in plot.files if f.suffix == ".svg"), plot.files[0])
    png = next((f for f in plot.files if f.suffix == ".png"), None)
    rel = html.escape(svg.relative_to(out).as_posix())
    link = f' (<a href="{html.escape(png.relative_to(out).as_posix())}">PNG</a>)' if png else ""
    return (
        f'<figure id="{html.escape(plot.name)}">\n<img src="{rel}" alt="{html.escape(plot.title)}">\n'
        f"<figcaption><b>{html.escape(plot.title)}.</b> {html.escape(plot.caption)}{link}"
        "</figcaption>\n</figure>"
    )


def _accuracy_note(rows: Sequence[Mapping[str, Any]], plots: Mapping[str, Plot]) -> str:
    random = sorted({str(r["model"]) for r in rows if r.get("top1_source") == "random"})
    if not random:
        return ""
    drawn = "top1_vs_gmacs" in plots or "top1_vs_latency" in plots
    return (
        f"<p class=note>Random weights (accuracy not meaningful, not plotted on an accuracy axis): "
        f"{html.escape(', '.join(random))}. Their timings are real."
        + ("" if drawn else " No accuracy figure: no accuracy belongs to these results "
           "(measure it with <code>cnnbench eval</code>, use published weights with "
           "<code>--weights torchvision</code>, or add <code>--zoo-context</code> for the zoo's "
           "published figures).")
        + "</p>"
    )  # fmt: skip


def write_index(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    plots: Mapping[str, Plot],
    *,
    sources: Sequence[str],
    decision: Decision,
) -> Path:
    """Write ``out/index.html`` (decision, table, figures) and return it."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table, foot = _table(rows)
    figures = "\n".join(figure_html(p, out) for p in plots.values())
    base = sorted({str(r.get("speedup_baseline")) for r in rows if r.get("speedup_baseline")})
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>cnnbench report</title>
<style>{CSS}</style>
</head>
<body>
<h1>cnnbench report</h1>
<p class="note">From {html.escape(", ".join(sources))}; written {stamp}.
<a href="comparison.csv">comparison.csv</a> holds every column with full precision.</p>
<h2>Decision</h2>
{decision_html(decision)}
<h2>Comparison</h2>
<p class="note">One row per model × engine × precision × device; ✓ valid, ✗ invalid, ! failed
(the reasons are the footnotes). Times and throughputs are the median over the cell's repeats,
[min–max] where there is more than one. Speed-ups are against {html.escape(", ".join(base) or "–")}
on the same device (latency: p50 at batch 1; throughput: best over batches). Top-1: measured on
the row's own artifact (green), published for published weights (amber), or random weights.</p>
{table}
{foot.html()}
{_accuracy_note(rows, plots)}
<h2>Figures</h2>
{figures}
</body>
</html>
"""
    return atomic_write_text(out / "index.html", page)
