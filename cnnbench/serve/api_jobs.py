"""``/api/jobs``: submit (token), list, one job, cancel (token).

A grid is validated off the event loop (a worker thread) and abandoned after
:data:`cnnbench.serve.api_models.VALIDATE_S`, so no request can stall the service; its bounds
(cells, repeats, list lengths) are checked from its lists' lengths before anything is built.
An uploaded file is streamed to disk, checked in a worker thread too, and deleted again when
the request is refused after all (a bad grid, a model too large for this machine), unless
another job uses the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from cnnbench.errors import InvalidInputError
from cnnbench.serve.api_models import ERRORS, GRID_BYTES, VALIDATE_S, JobId, Page, grid_schema
from cnnbench.serve.grid import validate
from cnnbench.serve.guard import authorized
from cnnbench.serve.jobs import JOB_FIELDS
from cnnbench.serve.uploads import TooLarge, save_upload

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

#: uploads are kept or deleted under this lock (two requests may bring the same file)
_UPLOADS = threading.Lock()


def need_token(request: Request, token: str | None) -> None:
    """401 unless the request carries the token (constant time, bytes, any header)."""
    if not authorized({"authorization": request.headers.get("authorization", "")}, token):
        raise HTTPException(401, "write endpoints need Authorization: Bearer <CNNBENCH_TOKEN>")


def _body_spec() -> dict[str, Any]:
    grid = grid_schema()
    multipart = {
        "type": "object", "required": ["grid", "model"],
        "properties": {"grid": {"type": "string", "maxLength": GRID_BYTES},
                       "model": {"type": "string", "format": "binary"}},
    }  # fmt: skip
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": grid}, "multipart/form-data": {"schema": multipart}}}}  # fmt: skip


def add_job_routes(app: FastAPI, svc: Service) -> None:
    """``/api/jobs``: submit (token), list, one job, cancel (token)."""
    settings = svc.settings

    @app.post("/api/jobs", status_code=201, responses=ERRORS, openapi_extra=_body_spec())
    async def submit(request: Request) -> dict[str, Any]:
        need_token(request, settings.token)
        upload, sha = None, None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            grid, upload, sha = await _multipart(request, svc)
        else:
            try:
                grid = json.loads(await request.body() or b"null")
            except (ValueError, RecursionError):
                raise InvalidInputError("body is not JSON; send a grid object") from None
        try:
            sweep, cells = await asyncio.wait_for(
                run_in_threadpool(_validate, svc, grid, upload), VALIDATE_S
            )
            # queued only once validated in time: an abandoned validation queues nothing
            job_id = await run_in_threadpool(
                svc.queue.submit, sweep, cells=cells, upload_sha256=sha
            )
        except TimeoutError:
            if sha is not None:
                await run_in_threadpool(_drop_upload, svc, upload, sha)
            raise InvalidInputError(
                f"the grid's validation took longer than {VALIDATE_S:g}s; make it smaller"
            ) from None
        except BaseException:
            if sha is not None:
                await run_in_threadpool(_drop_upload, svc, upload, sha)
            raise
        return svc.job(job_id)

    @app.get("/api/jobs", responses=ERRORS)
    def jobs(page: Annotated[Page, Depends()]) -> list[dict[str, Any]]:
        found = svc.queue.list_jobs(limit=page.limit, offset=page.offset)
        return [{k: j.get(k) for k in JOB_FIELDS} for j in found]

    @app.get("/api/jobs/{job_id}", responses=ERRORS)
    def job(job_id: JobId) -> dict[str, Any]:
        return svc.job(job_id)

    @app.delete("/api/jobs/{job_id}", responses=ERRORS)
    def cancel(job_id: JobId, request: Request) -> dict[str, Any]:
        need_token(request, settings.token)
        if svc.queue.cancel(job_id) is None:
            raise HTTPException(404, f"no job {job_id}")
        return svc.job(job_id)


def _validate(svc: Service, grid: Any, upload: Path | None) -> tuple[dict[str, Any], int]:
    """The grid validated (in a worker thread): the sweep the job runs and its cell count."""
    sweep, cfg = validate(grid, upload=upload, artifacts=svc.artifacts)
    return sweep, cfg.cell_count()


def _keep_upload(chunks: Any, folder: Path, limit: int) -> tuple[Path, str]:
    """:func:`save_upload` (in a worker thread), under the uploads' lock."""
    with _UPLOADS:
        return save_upload(chunks, folder, limit=limit)


def _drop_upload(svc: Service, path: Path | None, sha: str) -> None:
    """A refused request's upload is deleted, unless a job uses the same file."""
    with _UPLOADS:
        if path is not None and not svc.queue.uses_upload(sha):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def _multipart(request: Request, svc: Service) -> tuple[Any, Path | None, str | None]:
    """The grid and the uploaded model of a multipart request, the model checked and stored
    (streamed to disk with the size limit, checked off the event loop; nothing kept when it
    is refused)."""
    limit = svc.settings.max_upload
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():  # the server then reads no more than it says
        raise HTTPException(411, "an upload needs a Content-Length header")
    if int(declared) > limit + GRID_BYTES:  # the file, and a grid of up to 1 MiB
        raise TooLarge(f"upload is larger than the limit of {limit} bytes")
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=GRID_BYTES)
    except MultiPartException as exc:
        raise InvalidInputError(f"multipart body: {exc.message}") from None
    try:
        text = form.get("grid")
        if not isinstance(text, str):
            raise InvalidInputError("multipart: give the grid as a text field named 'grid'")
        try:
            grid = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidInputError("multipart: the 'grid' field is not JSON") from None
        part = form.get("model")
        if part is None or isinstance(part, str):
            raise InvalidInputError("multipart: give the ONNX file as a file field named 'model'")

        def chunks() -> Any:
            part.file.seek(0)
            while chunk := part.file.read(1 << 20):
                yield chunk

        path, sha = await run_in_threadpool(_keep_upload, chunks(), svc.uploads, limit)
        return grid, path, sha
    finally:
        await form.close()
