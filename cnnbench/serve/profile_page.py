"""A cell's per-layer profile on the dashboard: ``/jobs/{id}/profile/{name}`` (a job's cells
run with ``profile: true``), the layers by time with their figures, and the JSON beside it
(``?format=json``). Names are checked against the files the job wrote, never used as paths."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from cnnbench.bench.measure.profile import PROFILES_SUFFIX, Profile
from cnnbench.bench.measure.profile_text import headline, summary_lines
from cnnbench.serve.api_models import ERRORS, JobId
from cnnbench.serve.layout import page, table, td
from cnnbench.serve.runner import job_folder

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.json$")
#: layers shown on the page, by time (the JSON has them all)
SHOWN = 40
FileName = Annotated[str, PathParam(min_length=6, max_length=205, description="A profile file.")]
PageFormat = Annotated[Literal["html", "json"], Query(description="html (default) or json.")]


def profile_link(job_id: int, row: dict[str, Any]) -> str:
    """A table cell linking a row to its profile, or '-' when it has none."""
    ref = str(row.get("profile_file") or "")
    name = ref.rsplit("/", 1)[-1]
    if not _NAME.match(name):
        return "<td>-</td>"
    return f'<td><a href="/jobs/{int(job_id)}/profile/{html.escape(name)}">layers</a></td>'


def _file(svc: Service, job_id: int, name: str) -> Path:
    svc.job(job_id)  # 404 for a job that is not there
    folder = job_folder(svc.settings.data, job_id) / f"results.csv{PROFILES_SUFFIX}"
    known = {p.name for p in folder.glob("*.json")} if folder.is_dir() else set()
    if not _NAME.match(name) or name not in known:
        raise HTTPException(404, f"job {job_id} has no profile {name!r}")
    return folder / name


def add_profile_pages(app: FastAPI, svc: Service) -> None:
    @app.get("/jobs/{job_id}/profile/{name}", response_model=None, responses=ERRORS)
    def profile_page(job_id: JobId, name: FileName, format: PageFormat = "html") -> Response:
        path = _file(svc, job_id, name)
        doc = json.loads(path.read_text("utf-8"))
        if format == "json":
            return JSONResponse(doc)
        prof = Profile.from_dict(doc)
        return _page(job_id, name, prof)


def _page(job_id: int, name: str, prof: Profile) -> HTMLResponse:
    lines = [headline(prof), *summary_lines(prof)]
    intro = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    layers = sorted(prof.layers, key=lambda layer: -layer.time_ms)[:SHOWN]
    rows = [
        [td(layer.name), td(layer.type), td(layer.precision), td(layer.kernel),
         td(round(layer.time_ms, 4)), td(round(100 * layer.share, 1)),
         td(round(layer.macs / 1e6, 2) if layer.macs else None), td(layer.gmacs_per_s),
         td(layer.intensity), td(round(layer.bytes["total"] / 1e3, 1)),
         td("added" if layer.conversion else ""), td(", ".join(layer.nodes[:3]))]
        for layer in layers
    ]  # fmt: skip
    head = ["layer", "type", "prec.", "kernel", "ms", "%", "MMACs", "GMAC/s", "MAC/B",
            "KB moved", "conversion", "ONNX nodes"]  # fmt: skip
    body = (
        intro + f"<p>The {len(layers)} layers taking most time of {len(prof.layers)}; "
        f'<a href="?format=json">the whole profile (JSON)</a>; '
        f'<a href="/jobs/{job_id}">back to job {job_id}</a>.</p>' + table(rows, head, "results")
    )
    title = (
        f"{prof.model} {prof.precision} on {prof.engine}, batch {prof.batch}: where the time goes"
    )
    return page(title, body)
