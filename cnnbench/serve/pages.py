"""The dashboard: server-rendered pages, no JavaScript, nothing loaded from the network.

* ``/``: the jobs, with their progress (the page refreshes itself while a job is queued or
  running);
* ``/jobs/{id}``: a job and its rows, valid rows marked ✓ and invalid ones ✗ with the reason;
* ``/history``: latency and throughput over time per cell, from the whole store;
* ``/compare?base=job:1&new=job:2``: the statistical comparison of two jobs or runs;
* ``/tradeoff``: top-1 against GMACs for every model in the store (the report's bubble plot).

Figures are drawn by the report's own code into ``<data>/plots/<hash>/`` (names are ours,
never a request's), once per content of the store (its count of rows and last row), and
served from there; drawing takes a lock (matplotlib is not made for threads).
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from cnnbench.artifacts import atomic_write_json, ensure_dir
from cnnbench.bench.report.build import write_report
from cnnbench.bench.report.history_plots import write_history_plots
from cnnbench.bench.results.compare import DEFAULT_METRICS, compare_sources, parse_threshold
from cnnbench.errors import CnnbenchError, first_line
from cnnbench.serve.api_models import JobId, Name, Ref, Threshold

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

_DRAW = threading.Lock()
#: the figures a folder holds (name, caption), written once they are all drawn
_INDEX = "figures.json"
_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;
padding:.2em .5em;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00}.ok{color:#070}.muted{color:#666}img{max-width:100%;border:1px solid #eee}
progress{width:8em}"""
_ROW_COLUMNS = (
    ("model", "model"), ("engine", "engine"), ("precision", "prec"), ("device", "device"),
    ("batch", "batch"), ("scenario", "scenario"), ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p99", "p99 ms"), ("throughput_ips", "img/s"), ("host_peak_rss_mb", "RSS MB"),
)  # fmt: skip


def _page(title: str, body: str, *, refresh: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    nav = ('<nav><a href="/">jobs</a><a href="/history">history</a>'
           '<a href="/tradeoff">accuracy vs operations</a><a href="/docs">API</a></nav>')  # fmt: skip
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)} - cnnbench</title>'
            f"<style>{_CSS}</style></head><body>{nav}<h1>{html.escape(title)}</h1>{body}"
            "</body></html>")  # fmt: skip
    return HTMLResponse(text)


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v))


def _table(rows: Iterable[Sequence[str]], head: Sequence[str], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _td(v: Any) -> str:
    return f'<td class="n">{_fmt(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_fmt(v)}</td>"


def _valid(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f'<td class="bad">error: {html.escape(str(r["error"]))}</td>'
    if r.get("valid") is False or str(r.get("valid")).lower() == "false":
        return f'<td class="bad">✗ {html.escape(str(r.get("invalid_reason") or "invalid"))}</td>'
    return '<td class="ok">✓ valid</td>'


def _figures(svc: Service, key: str, draw: Any) -> str:
    """Figures drawn once per content key under <data>/plots/<hash>/, as <img> tags: drawn
    the first time (``draw(folder)``, under the lock), then served from the folder's index
    (``figures.json``, written last) without drawing again."""
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = ensure_dir(svc.settings.data / "plots" / name)
    index = folder / _INDEX
    shown = _read_index(index)
    if shown is None:
        with _DRAW:
            shown = _read_index(index)  # drawn meanwhile by the request we waited for
            if shown is None:
                shown = [{"name": p.name, "caption": p.caption} for p in draw(folder)]
                atomic_write_json(index, shown)
    # the caption is drawn under each figure already
    return "".join(
        f'<figure><img src="/files/plots/{name}/{html.escape(str(p["name"]))}.png" '
        f'alt="{html.escape(str(p["caption"]))}"></figure>'
        for p in shown
    )


def _read_index(index: Path) -> list[dict[str, Any]] | None:
    try:
        found = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, list) else None


def add_pages(app: FastAPI, svc: Service) -> None:
    """The dashboard's routes, and the folder its figures are served from."""
    app.mount("/files/plots", StaticFiles(directory=ensure_dir(svc.settings.data / "plots")),
              name="plots")  # fmt: skip
    _add_job_pages(app, svc)
    _add_store_pages(app, svc)


def _add_job_pages(app: FastAPI, svc: Service) -> None:
    """``/``, the jobs, and ``/jobs/{id}``, a job and its rows."""

    @app.get("/", response_class=HTMLResponse)
    def jobs_page() -> HTMLResponse:
        jobs = svc.queue.list_jobs(limit=200)
        rows = [
            [f'<td><a href="/jobs/{j["id"]}">job {j["id"]}</a></td>',
             f'<td class="state-{j["state"]}">{j["state"]}</td>',
             f'<td><progress max="{j["cells_total"] or 1}" value="{j["cells_done"] or 0}"></progress> '
             f'{j["cells_done"] or 0} / {j["cells_total"] or 0}</td>', _td(j["errors"]),
             _td(", ".join(map(str, j["grid"].get("models", [])))), _td(j["created_at"]),
             _td(j["message"])]
            for j in jobs
        ]  # fmt: skip
        live = any(j["state"] in ("queued", "running") for j in jobs)
        body = (_table(rows, ["job", "state", "cells", "errors", "models", "created (UTC)",
                              "message"], "jobs") if jobs else "<p>No jobs yet: POST one to "
                "<code>/api/jobs</code> (see <a href=\"/docs\">the API</a>).</p>")  # fmt: skip
        return _page("Jobs", body, refresh=3 if live else None)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: JobId) -> HTMLResponse:
        job = svc.job(job_id)
        rows = svc.rows(job_id) if job["run_id"] is not None else []
        table = [[_td(r.get(c)) for c, _ in _ROW_COLUMNS] + [_valid(r)] for r in rows]
        head = [label for _, label in _ROW_COLUMNS] + ["verdict"]
        info = (f'<p>State <b class="state">{job["state"]}</b>, {job["cells_done"] or 0} of '
                f'{job["cells_total"]} cells, {job["errors"] or 0} error(s). '
                f'{_fmt(job["message"]) if job["message"] else ""}</p>')  # fmt: skip
        body = info + (_table(table, head, "results") if rows else "<p>No rows yet.</p>")
        live = job["state"] in ("queued", "running")
        return _page(f"Job {job_id}", body, refresh=3 if live else None)


def _add_store_pages(app: FastAPI, svc: Service) -> None:
    """The pages over the whole store: ``/history``, ``/compare`` and ``/tradeoff``."""

    @app.get("/history", response_class=HTMLResponse)
    def history_page(model: Name = None, engine: Name = None) -> HTMLResponse:
        count, last = svc.store.fingerprint(finished_only=True, model=model, engine=engine)
        if not count:
            return _page("History", "<p>No finished runs in the store yet.</p>")

        def draw(folder: Path) -> list[Any]:
            rows = svc.store.cells(finished_only=True, model=model, engine=engine)
            return list(write_history_plots(folder, rows).values())

        figs = _figures(svc, f"history|{model}|{engine}|{count}|{last}", draw)
        return _page("History", f"<p>{count} rows from the store.</p>{figs}")

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(base: Ref, new: Ref, threshold: Threshold = "5%") -> HTMLResponse:
        try:
            b, n = svc.side(base), svc.side(new)
            cmp = compare_sources(
                b, n, metrics=DEFAULT_METRICS, threshold_pct=parse_threshold(threshold)
            )
        except CnnbenchError as exc:
            return _page("Compare", f'<p class="bad">{html.escape(first_line(exc))}</p>')
        cols = ("model", "engine", "precision", "batch", "scenario", "metric", "base", "new",
                "change_pct", "p_value", "status", "note")  # fmt: skip
        rows = [[_td(r.get(c)) for c in cols] for r in cmp.rows]
        summary = (f"<p>{html.escape(b.label)} → {html.escape(n.label)}: "
                   f"{len(cmp.regressions)} regression(s), {len(cmp.inconclusive)} inconclusive, "
                   f"{len(cmp.rows)} compared.</p>")  # fmt: skip
        return _page("Compare", summary + _table(rows, cols, "compare"))

    @app.get("/tradeoff", response_class=HTMLResponse)
    def tradeoff_page() -> HTMLResponse:
        count, last = svc.store.fingerprint(finished_only=True)
        key = f"tradeoff|{count}|{last}"

        def draw(folder: Any) -> list[Any]:
            rows = svc.store.cells(finished_only=True)
            if not rows:
                return []
            rep = write_report([], folder, store_rows=rows, store_label="the store")
            if "top1_vs_gmacs" not in rep.plots:
                return []
            return [_Shown("top1_vs_gmacs", "Top-1 against GMACs",
                           "Every ImageNet zoo model at its published top-1, bubble area by "
                           "parameters; models measured in the store are marked, measured "
                           "top-1 (from eval rows) filled, published hollow.")]  # fmt: skip

        figs = _figures(svc, key, draw)
        return _page("Accuracy vs operations", figs or "<p>No finished runs in the store yet.</p>")


class _Shown:
    def __init__(self, name: str, title: str, caption: str) -> None:
        self.name, self.title, self.caption = name, title, caption
