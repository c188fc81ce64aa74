"""The dashboard: server-rendered pages, no JavaScript, nothing loaded from the network.

* ``/``: the jobs, with their progress (the page refreshes itself while a job is queued or
  running);
* ``/jobs/{id}``: a job and its rows, valid rows marked ✓ and invalid ones ✗ with the reason;
* ``/history``: latency and throughput over time per cell, from the whole store;
* ``/compare?base=job:1&new=job:2``: the statistical comparison of two jobs or runs;
* ``/tradeoff``: top-1 against GMACs for every model in the store (the report's bubble plot).

Figures are drawn by the report's own code into ``<data>/plots/<hash>/`` (names are ours,
never a request's), once per content (a job's rows so far, the store's count of rows and last
row), and served from there; drawing takes a lock (matplotlib is not made for threads).
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from cnnbench.artifacts import atomic_write_json, ensure_dir
from cnnbench.bench.report.build import newest_run_rows, write_report
from cnnbench.bench.report.history_plots import write_history_plots
from cnnbench.bench.results.compare import DEFAULT_METRICS, compare_sources, parse_threshold
from cnnbench.errors import CnnbenchError, first_line
from cnnbench.serve.api_models import JobId, Name, Ref, Threshold
from cnnbench.serve.decide import decision_block
from cnnbench.serve.layout import fmt, page, table, td
from cnnbench.serve.profile_page import add_profile_pages, profile_link

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

_DRAW = threading.Lock()
#: the figures a folder holds (name, title, caption), written once they are all drawn
_INDEX = "figures.json"
_ROW_COLUMNS = (
    ("model", "model"), ("engine", "engine"), ("precision", "prec"), ("device", "device"),
    ("batch", "batch"), ("scenario", "scenario"), ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p99", "p99 ms"), ("throughput_ips", "img/s"), ("host_peak_rss_mb", "RSS MB"),
)  # fmt: skip


def _valid(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f'<td class="bad">error: {html.escape(str(r["error"]))}</td>'
    if r.get("valid") is False or str(r.get("valid")).lower() == "false":
        return f'<td class="bad">✗ {html.escape(str(r.get("invalid_reason") or "invalid"))}</td>'
    return '<td class="ok">✓ valid</td>'


def _figures(svc: Service, key: str, draw: Any) -> str:
    """Figures drawn once per content key under <data>/plots/<hash>/, as <img> tags with
    their caption: drawn the first time (``draw(folder)``, under the lock), then served from
    the folder's index (``figures.json``, written last) without drawing again."""
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = ensure_dir(svc.settings.data / "plots" / name)
    index = folder / _INDEX
    shown = _read_index(index)
    if shown is None:
        with _DRAW:
            shown = _read_index(index)  # drawn meanwhile by the request we waited for
            if shown is None:
                shown = [{"name": p.name, "title": p.title, "caption": p.caption}
                         for p in draw(folder)]  # fmt: skip
                atomic_write_json(index, shown)
    return "".join(
        f'<figure><img src="/files/plots/{name}/{html.escape(str(p["name"]))}.png" '
        f'alt="{html.escape(str(p.get("title", "")))}"><figcaption><b>'
        f"{html.escape(str(p.get('title', '')))}.</b> {html.escape(str(p['caption']))}"
        "</figcaption></figure>"
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
    add_profile_pages(app, svc)


def _add_job_pages(app: FastAPI, svc: Service) -> None:
    """``/``, the jobs, and ``/jobs/{id}``, a job and its rows."""

    @app.get("/", response_class=HTMLResponse)
    def jobspage() -> HTMLResponse:
        jobs = svc.queue.list_jobs(limit=200)
        rows = [
            [f'<td><a href="/jobs/{j["id"]}">job {j["id"]}</a></td>',
             f'<td class="state-{j["state"]}">{j["state"]}</td>',
             f'<td><progress max="{j["cells_total"] or 1}" value="{j["cells_done"] or 0}"></progress> '
             f'{j["cells_done"] or 0} / {j["cells_total"] or 0}</td>', td(j["errors"]),
             td(", ".join(map(str, j["grid"].get("models", [])))), td(j["created_at"]),
             td(j["message"])]
            for j in jobs
        ]  # fmt: skip
        live = any(j["state"] in ("queued", "running") for j in jobs)
        body = (table(rows, ["job", "state", "cells", "errors", "models", "created (UTC)",
                              "message"], "jobs") if jobs else "<p>No jobs yet: POST one to "
                "<code>/api/jobs</code> (see <a href=\"/docs\">the API</a>).</p>")  # fmt: skip
        return page("Jobs", body, refresh=3 if live else None)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: JobId, request: Request) -> HTMLResponse:
        job = svc.job(job_id)
        rows = svc.rows(job_id) if job["run_id"] is not None else []
        body = (f'<p>State <b class="state">{job["state"]}</b>, {job["cells_done"] or 0} of '
                f'{job["cells_total"]} cells, {job["errors"] or 0} error(s). '
                f'{fmt(job["message"]) if job["message"] else ""}</p>')  # fmt: skip
        if rows:
            body += "<h2>Decision</h2>" + decision_block(
                rows, request.query_params, f"/jobs/{job_id}"
            )
            body += "<h2>Figures</h2>" + _report_figures(svc, f"job|{job_id}", rows)
            body += "<h2>Rows</h2>" + _rows_table(rows, job_id)
        else:
            body += "<p>No rows yet.</p>"
        live = job["state"] in ("queued", "running")
        return page(f"Job {job_id}", body, refresh=3 if live else None)


def _precision(r: dict[str, Any]) -> str:
    """The precision; an INT8 cell that did not run INT8 is marked, its warning the title."""
    if not r.get("int8_warning"):
        return td(r.get("precision"))
    warning = html.escape(str(r["int8_warning"]))
    return f'<td class="bad" title="{warning}">{fmt(r.get("precision"))} ⚠ not INT8</td>'


def _rows_table(rows: list[dict[str, Any]], job_id: int) -> str:
    """The rows with their verdicts, where their weights came from, and their profiles."""
    cells = [[_precision(r) if c == "precision" else td(r.get(c)) for c, _ in _ROW_COLUMNS]
             + [td(r.get("weights")), _valid(r), profile_link(job_id, r)]
             for r in rows]  # fmt: skip
    head = [label for _, label in _ROW_COLUMNS] + ["weights", "verdict", "profile"]
    return table(cells, head, "results")


def _report_figures(svc: Service, key: str, rows: list[dict[str, Any]]) -> str:
    """The report's figures for ``rows``, drawn once per content (job, rows so far)."""
    key = f"{key}|{len(rows)}|{rows[-1].get('cell_id')}"

    def draw(folder: Any) -> list[Any]:
        return list(write_report([], folder, extra_rows=rows).figures.values())

    return _figures(svc, key, draw)


def _add_store_pages(app: FastAPI, svc: Service) -> None:
    """The pages over the whole store: ``/history``, ``/compare`` and ``/tradeoff``."""

    @app.get("/history", response_class=HTMLResponse)
    def history_page(
        request: Request, model: Name = None, engine: Name = None, shared_y: bool = False
    ) -> HTMLResponse:  # fmt: skip
        count, last = svc.store.fingerprint(finished_only=True, model=model, engine=engine)
        if not count:
            return page("History", "<p>No finished runs in the store yet.</p>")
        rows = svc.store.cells(finished_only=True, model=model, engine=engine)
        key = f"history|{model}|{engine}|{shared_y}|{count}|{last}"
        figs = _figures(
            svc, key, lambda d: list(write_history_plots(d, rows, shared_y=shared_y).values())
        )
        toggle = (f'<p><a href="/history?shared_y={str(not shared_y).lower()}">'
                  f'{"own y-range per panel" if shared_y else "one y-range for all panels"}</a> · '
                  "each point is labelled with its run's git commit</p>")  # fmt: skip
        newest = newest_run_rows(rows)
        decision = decision_block(newest, request.query_params, "/history")
        return page(
            "History",
            f"<h2>Decision over each cell's newest run</h2>{decision}"
            f"<h2>Over time</h2><p>{len(rows)} rows from the store.</p>{toggle}{figs}"
            f"<h2>Runs</h2>{_runs_table(svc)}",
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(base: Ref, new: Ref, threshold: Threshold = "5%") -> HTMLResponse:
        try:
            b, n = svc.side(base), svc.side(new)
            cmp = compare_sources(
                b, n, metrics=DEFAULT_METRICS, threshold_pct=parse_threshold(threshold)
            )
        except CnnbenchError as exc:
            return page("Compare", f'<p class="bad">{html.escape(first_line(exc))}</p>')
        cols = ("model", "engine", "precision", "batch", "scenario", "metric", "base", "new",
                "change_pct", "p_value", "status", "note")  # fmt: skip
        rows = [[td(r.get(c)) for c in cols] for r in cmp.rows]
        summary = (f"<p>{html.escape(b.label)} → {html.escape(n.label)}: "
                   f"{len(cmp.regressions)} regression(s), {len(cmp.inconclusive)} inconclusive, "
                   f"{len(cmp.rows)} compared.</p>")  # fmt: skip
        return page("Compare", summary + table(rows, cols, "compare"))

    @app.get("/tradeoff", response_class=HTMLResponse)
    def tradeoff_page() -> HTMLResponse:
        count, last = svc.store.fingerprint(finished_only=True)
        rows = svc.store.cells(finished_only=True) if count else []
        key = f"tradeoff|{count}|{last}"

        def draw(folder: Any) -> list[Any]:
            # the store's own rows: accuracy where it belongs to them, the zoo's published
            # figures as labelled context
            rep = write_report([], folder, extra_rows=rows, zoo_context=True)
            names = ("top1_vs_gmacs", "top1_vs_latency", "latency_vs_macs")
            return [rep.figures[n] for n in names if n in rep.figures]

        figs = _figures(svc, key, draw) if rows else ""
        measured = sum(1 for r in rows if r.get("scenario") == "accuracy")
        note = (f"<p>From the store: {len(rows)} rows, {measured} of them measured accuracy. "
                "Filled markers: top-1 measured on the row's own artifact; hollow: published "
                "top-1 (of published weights, or of the zoo, as context). Rows on random "
                "weights have no place on an accuracy axis.</p>")  # fmt: skip
        return page("Accuracy vs operations", note + (figs or "<p>No finished runs yet.</p>"))


def _runs_table(svc: Service) -> str:
    runs = svc.store.runs()[:30]
    cells = [[td(r["run_id"]), td(r["started_at"]), td(r["status"]), td(r.get("machine")),
              td((r.get("git_commit") or "")[:12] or None), td(r.get("cells", 0))]
             for r in runs]  # fmt: skip
    return table(cells, ["run", "started (UTC)", "status", "machine", "commit", "cells"], "runs")
