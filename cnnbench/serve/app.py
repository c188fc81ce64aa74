"""The HTTP service: a FastAPI app over the results store, the job queue and the job runner.

API (JSON; errors are ``{"error": "one line"}`` with a 4xx status, never a 5xx):

* ``POST /api/jobs``: a grid as JSON, or multipart with ``grid`` (JSON text) and ``model`` (an
  ONNX file); returns ``{"id": N, ...}``. Needs ``Authorization: Bearer $CNNBENCH_TOKEN``.
* ``GET /api/jobs?limit=&offset=``, ``GET /api/jobs/{id}``: state, cells done of total, errors.
* ``DELETE /api/jobs/{id}``: cancel (token).
* ``GET /api/results?job=&model=&engine=&precision=&batch=&format=json|csv&limit=&offset=``.
* ``GET /api/compare?base=&new=&threshold=``: ``job:N``, ``db:RUN_ID``, ``db:latest(~N)``.
* ``GET /api/artifacts/{sha256}``: the manifest of an artifact (or an upload's facts).
* ``GET /api/limits``: the caps on grids, bodies and pages; ``GET /api/health``.
* ``GET /api/recommend?source=job:N|db:REF&p99_ms=...``: the deployment decision, as
  ``cnnbench recommend`` gives it (:mod:`cnnbench.serve.decide`, with ``/submit``, a grid from
  a form behind the token).

Every number a request carries is bounded (:mod:`cnnbench.serve.api_models`, from the table in
:mod:`cnnbench.limits`); bodies are size-limited, reads without the token show no server paths
and, with ``private``, need it (:mod:`cnnbench.serve.guard`); a grid is validated off the event
loop, with a time cap. The dashboard (``/``, ``/jobs/{id}``, ``/history``, ``/compare``,
``/tradeoff``) is in :mod:`cnnbench.serve.pages`, the API's own page (``/docs``, nothing loaded
from the network) in :mod:`cnnbench.serve.docs_page`. FastAPI is imported here, at the top: the
CLI imports this module only in ``cnnbench serve``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cnnbench.bench.results.history import db_source, is_ref
from cnnbench.bench.results.store import Store
from cnnbench.errors import CnnbenchError, InvalidInputError, first_line
from cnnbench.limits import ID
from cnnbench.serve.api_jobs import add_job_routes
from cnnbench.serve.api_reads import add_read_routes
from cnnbench.serve.decide import add_decision_routes
from cnnbench.serve.docs_page import add_docs_page
from cnnbench.serve.grid import validate
from cnnbench.serve.guard import Guard, authorized
from cnnbench.serve.jobs import JOB_FIELDS, JobQueue
from cnnbench.serve.pages import add_pages
from cnnbench.serve.runner import JobRunner
from cnnbench.serve.server import serve_forever
from cnnbench.serve.uploads import DEFAULT_LIMIT, TooLarge

__all__ = ["Service", "Settings", "create_app", "serve_forever"]


@dataclass(frozen=True)
class Settings:
    data: Path
    db_url: str | None = None
    token: str | None = None
    max_upload: int = DEFAULT_LIMIT
    executor: str = "local"
    ray_address: str | None = None
    run_jobs: bool = True
    #: reads need the token too (``serve --private``)
    private: bool = False

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

    def rows(
        self, job: int | None = None, *, limit: int | None = None, offset: int = 0, **where: Any
    ) -> list[dict[str, Any]]:
        """Result rows (of one job's run), filtered on model, engine, precision, batch; a page
        of them with ``limit`` and ``offset``."""
        run_ids = None
        if job is not None:
            run_id = self.job(job)["run_id"]
            run_ids = [run_id] if run_id is not None else []
        return self.store.cells(
            run_ids=run_ids, limit=limit, offset=offset,
            **{k: v for k, v in where.items() if v is not None},
        )  # fmt: skip

    def token_ok(self, given: str, request: Request | None = None) -> bool:
        """Whether ``given`` (a form's field), or else ``request``'s Authorization header, is
        the service's token (constant time, bytes)."""
        header = request.headers.get("authorization", "") if request is not None else ""
        return any(authorized({"authorization": h}, self.settings.token)
                   for h in (f"Bearer {given.strip()}", header))  # fmt: skip

    def submit_grid(self, grid: Any) -> int:
        """Validate ``grid`` as a sweep file is (the same defaults) and queue it: its job id.
        Call it off the event loop (the form's route runs it in a worker thread, capped)."""
        sweep, cfg = validate(grid, upload=None, artifacts=self.artifacts)
        return self.queue.submit(sweep, cells=cfg.cell_count(), upload_sha256=None)

    def side(self, ref: str) -> Any:
        """A comparison side: ``job:N`` (its run) or a ``db:`` ref."""
        if ref.startswith("job:") and ref[4:].isdigit():
            run_id = self.job(int(ID.check(ref[4:], f"{ref[:40]}: a job id")))["run_id"]
            if run_id is None:
                raise InvalidInputError(f"{ref} has no results yet")
            return db_source(self.store, f"db:{run_id}")
        if is_ref(ref):
            return db_source(self.store, ref)
        raise InvalidInputError(f"compare: {ref[:60]!r}: give job:N, db:RUN_ID or db:latest")


def create_app(settings: Settings) -> FastAPI:
    """The service's app: the JSON API, the dashboard, and the job runner started with it."""
    svc = Service(settings)
    app = FastAPI(
        title="cnnbench", version="1", lifespan=_lifespan(svc), docs_url=None, redoc_url=None
    )
    app.state.service = svc
    _add_error_handlers(app)
    add_job_routes(app, svc)
    add_read_routes(app, svc)
    add_pages(app, svc)
    add_decision_routes(app, svc)
    add_docs_page(app)
    roots = [str(settings.data), os.getcwd(), str(Path.home()), sys.prefix, tempfile.gettempdir()]
    app.add_middleware(
        Guard, token=settings.token, private=settings.private,  # type: ignore[arg-type]
        max_upload=settings.max_upload, roots=roots,
    )  # fmt: skip
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
    input (a parameter out of its bounds too), an HTTP error's own status."""

    @app.exception_handler(CnnbenchError)
    async def _bad_input(_: Request, exc: CnnbenchError) -> JSONResponse:
        status = 413 if isinstance(exc, TooLarge) else 422
        return JSONResponse({"error": first_line(exc, 300)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": first_line(Exception(exc.detail), 300)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_line(exc.errors())}, status_code=422)


def validation_line(errors: Any) -> str:
    """FastAPI's list of validation errors as one line: where, and what is wrong."""
    parts = []
    for e in list(errors)[:3]:
        loc = [str(x) for x in e.get("loc", ())]
        where = {"query": "query parameter", "path": "path parameter", "body": "body"}.get(
            loc[0] if loc else "", "value"
        )
        name = ".".join(loc[1:]) or "(whole)"
        parts.append(f"{where} '{name}': {e.get('msg', 'invalid')}")
    return "; ".join(parts)[:300] or "invalid request"
