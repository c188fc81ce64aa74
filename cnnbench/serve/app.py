"""The HTTP service: a FastAPI app over the results store, the job queue and the job runner.

API (JSON; errors are ``{"error": "one line"}`` with a 4xx status):

* ``POST /api/jobs``: a grid as JSON, or multipart with ``grid`` (JSON text) and ``model`` (an
  ONNX file); returns ``{"id": N, ...}``. Needs ``Authorization: Bearer $CNNBENCH_TOKEN``.
* ``GET /api/jobs``, ``GET /api/jobs/{id}``: state, cells done of total, errors.
* ``DELETE /api/jobs/{id}``: cancel (token).
* ``GET /api/results?job=&model=&engine=&precision=&batch=&format=json|csv``: rows.
* ``GET /api/compare?base=&new=&threshold=``: ``job:N``, ``db:RUN_ID``, ``db:latest(~N)``.
* ``GET /api/artifacts/{sha256}``: the manifest of an artifact (or an upload's facts).

The dashboard (``/``, ``/jobs/{id}``, ``/history``, ``/compare``, ``/tradeoff``) is in
:mod:`cnnbench.serve.pages`. FastAPI is imported here, at the top: the CLI imports this
module only in ``cnnbench serve``.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from cnnbench.bench.results.compare import DEFAULT_METRICS, compare_sources, parse_threshold
from cnnbench.bench.results.files import CONTRACT_COLUMNS, columns_for
from cnnbench.bench.results.history import db_source, is_ref
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_url import shown_url
from cnnbench.errors import CnnbenchError, InvalidInputError, first_line
from cnnbench.serve.decide import add_decision_routes
from cnnbench.serve.grid import validate
from cnnbench.serve.jobs import JobQueue
from cnnbench.serve.pages import add_pages
from cnnbench.serve.runner import JobRunner
from cnnbench.serve.uploads import DEFAULT_LIMIT, TooLarge, save_upload

JOB_FIELDS = (
    "id", "state", "created_at", "started_at", "finished_at", "cells_total", "cells_done",
    "errors", "run_id", "attempts", "message", "upload_sha256", "grid",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    data: Path
    db_url: str | None = None
    token: str | None = None
    max_upload: int = DEFAULT_LIMIT
    executor: str = "local"
    ray_address: str | None = None
    run_jobs: bool = True

    def __post_init__(self) -> None:
        # jobs run in child processes with their own working folder, and stored paths (an
        # upload's) go into their configs: a folder given relative to here must mean here
        object.__setattr__(self, "data", Path(self.data).absolute())


class Service:
    """What the routes share: the store, the queue, the runner and the folders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store.open(settings.db_url)
        self.queue = JobQueue(self.store)
        self.uploads = settings.data / "uploads"
        self.artifacts = settings.data / "artifacts"
        self.runner = JobRunner(
            self.queue, data=settings.data, db_url=self.store.url,
            executor=settings.executor, ray_address=settings.ray_address,
        )  # fmt: skip

    def job(self, job_id: int) -> dict[str, Any]:
        job = self.queue.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return {k: job.get(k) for k in JOB_FIELDS}

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the service's token (compared in constant time)."""
        token = self.settings.token
        return token is None or hmac.compare_digest(given.strip().encode(), token.encode())

    def submit_grid(
        self, grid: Any, *, upload: Path | None = None, sha: str | None = None
    ) -> dict[str, Any]:
        """Validate ``grid`` as a sweep file is (the same defaults) and queue it; the job."""
        sweep, cfg = validate(grid, upload=upload, artifacts=self.artifacts)
        cells, _ = cfg.cells()
        job_id = self.queue.submit(sweep, cells=len(cells), upload_sha256=sha)
        return self.job(job_id)

    def rows(self, job: int | None = None, **where: Any) -> list[dict[str, Any]]:
        """Result rows (of one job's run), filtered on model, engine, precision, batch."""
        run_ids = None
        if job is not None:
            run_id = self.job(job)["run_id"]
            run_ids = [run_id] if run_id is not None else []
        return self.store.cells(
            run_ids=run_ids, **{k: v for k, v in where.items() if v is not None}
        )

    def side(self, ref: str) -> Any:
        """A comparison side: ``job:N`` (its run) or a ``db:`` ref."""
        if ref.startswith("job:") and ref[4:].isdigit():
            run_id = self.job(int(ref[4:]))["run_id"]
            if run_id is None:
                raise InvalidInputError(f"{ref} has no results yet")
            return db_source(self.store, f"db:{run_id}")
        if is_ref(ref):
            return db_source(self.store, ref)
        raise InvalidInputError(f"compare: {ref!r}: give job:N, db:RUN_ID or db:latest")


def _authorized(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
        raise HTTPException(401, "write endpoints need Authorization: Bearer <CNNBENCH_TOKEN>")


def create_app(settings: Settings) -> FastAPI:
    """The service's app: the JSON API, the dashboard, and the job runner started with it."""
    svc = Service(settings)
    app = FastAPI(title="cnnbench", version="1", lifespan=_lifespan(svc))
    app.state.service = svc
    _add_error_handlers(app)
    _add_job_routes(app, svc)
    _add_result_routes(app, svc)
    add_decision_routes(app, svc)
    add_pages(app, svc)
    return app


def _lifespan(svc: Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the job runner runs while the app does (unless ``run_jobs`` is off),
    and the store is closed after."""
    settings = svc.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.run_jobs:
            svc.runner.start()
        yield
        if settings.run_jobs:
            svc.runner.stop()
        svc.store.close()

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Errors as ``{"error": "one line"}``: 413 for an upload over the limit, 422 for other bad
    input, an HTTP error's own status."""

    @app.exception_handler(CnnbenchError)
    async def _bad_input(_: Request, exc: CnnbenchError) -> JSONResponse:
        status = 413 if isinstance(exc, TooLarge) else 422
        return JSONResponse({"error": first_line(exc, 300)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def _add_job_routes(app: FastAPI, svc: Service) -> None:
    """``/api/jobs``: submit (token), list, one job, cancel (token)."""
    settings = svc.settings

    @app.post("/api/jobs", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        _authorized(request, settings.token)
        upload, sha = None, None
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            grid, upload, sha = await _multipart(request, svc)
        else:
            try:
                grid = json.loads(await request.body() or b"null")
            except ValueError:
                raise InvalidInputError("body is not JSON; send a grid object") from None
        return svc.submit_grid(grid, upload=upload, sha=sha)

    @app.get("/api/jobs")
    def jobs(limit: int = 100) -> list[dict[str, Any]]:
        return [{k: j.get(k) for k in JOB_FIELDS} for j in svc.queue.list_jobs(limit=limit)]

    @app.get("/api/jobs/{job_id}")
    def job(job_id: int) -> dict[str, Any]:
        return svc.job(job_id)

    @app.delete("/api/jobs/{job_id}")
    def cancel(job_id: int, request: Request) -> dict[str, Any]:
        _authorized(request, settings.token)
        if svc.queue.cancel(job_id) is None:
            raise HTTPException(404, f"no job {job_id}")
        return svc.job(job_id)


def _add_result_routes(app: FastAPI, svc: Service) -> None:
    """Reading what the jobs made: rows, comparisons, artifacts; and the health check."""
    settings = svc.settings

    @app.get("/api/results", response_model=None)
    def results(
        job: int | None = None, model: str | None = None, engine: str | None = None,
        precision: str | None = None, batch: int | None = None, format: str = "json",
    ) -> Any:  # fmt: skip
        rows = svc.rows(job, model=model, engine=engine, precision=precision, batch=batch)
        if format == "csv":
            return Response(_csv(rows), media_type="text/csv")
        if format != "json":
            raise InvalidInputError("format must be json or csv")
        return JSONResponse(json.loads(json.dumps(rows, default=str)))

    @app.get("/api/compare")
    def compare(base: str, new: str, threshold: str = "5%") -> dict[str, Any]:
        thr = parse_threshold(threshold)
        b, n = svc.side(base), svc.side(new)
        cmp = compare_sources(b, n, metrics=DEFAULT_METRICS, threshold_pct=thr)
        return json.loads(json.dumps({
            "base": b.label, "new": n.label, "threshold_pct": thr, "rows": cmp.rows,
            "regressions": len(cmp.regressions), "inconclusive": len(cmp.inconclusive),
        }, default=str))  # fmt: skip

    @app.get("/api/artifacts/{sha256}")
    def artifact(sha256: str) -> dict[str, Any]:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInputError("sha256 must be 64 lowercase hex digits")
        for manifest in sorted(svc.artifacts.rglob("manifest.json")):
            try:
                info = json.loads(manifest.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            onnx_info = info.get("onnx") if isinstance(info, dict) else None
            if isinstance(onnx_info, dict) and onnx_info.get("sha256") == sha256:
                return info
        upload = svc.uploads / f"{sha256}.onnx"
        if upload.is_file():
            return {"sha256": sha256, "kind": "upload", "bytes": upload.stat().st_size}
        raise HTTPException(404, f"no artifact with sha256 {sha256}")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "store": shown_url(svc.store.url), "executor": settings.executor}


async def _multipart(request: Request, svc: Service) -> tuple[Any, Path | None, str | None]:
    """The grid and the uploaded model of a multipart request, the model checked and stored
    (streamed to disk with the size limit; nothing kept when it is refused)."""
    limit = svc.settings.max_upload
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():  # the server then reads no more than it says
        raise HTTPException(411, "an upload needs a Content-Length header")
    if int(declared) > limit + 2**20:  # the file, and a grid of up to 1 MiB
        raise TooLarge(f"upload is larger than the limit of {limit} bytes")
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=2**20)
    except MultiPartException as exc:
        raise InvalidInputError(f"multipart body: {exc.message}") from None
    try:
        text = form.get("grid")
        if not isinstance(text, str):
            raise InvalidInputError("multipart: give the grid as a text field named 'grid'")
        try:
            grid = json.loads(text)
        except ValueError:
            raise InvalidInputError("multipart: the 'grid' field is not JSON") from None
        part = form.get("model")
        if part is None or isinstance(part, str):
            raise InvalidInputError("multipart: give the ONNX file as a file field named 'model'")

        def chunks() -> Any:
            part.file.seek(0)
            while chunk := part.file.read(1 << 20):
                yield chunk

        path, sha = save_upload(chunks(), svc.uploads, limit=limit)
        return grid, path, sha
    finally:
        await form.close()


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = columns_for(rows) if rows else list(CONTRACT_COLUMNS)
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()
