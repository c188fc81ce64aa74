"""Reading what the jobs made: rows (a page at a time), comparisons, artifacts; the limits the
service applies and its health."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from cnnbench.bench.results.compare import DEFAULT_METRICS, compare_sources, parse_threshold
from cnnbench.bench.results.files import CONTRACT_COLUMNS, columns_for
from cnnbench.bench.results.store_url import shown_url
from cnnbench.serve.api_models import (
    ERRORS,
    BatchFilter,
    Format,
    Name,
    OptionalJob,
    Page,
    Ref,
    Threshold,
    stated_limits,
)

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

Sha256 = Annotated[
    str, Path(pattern="^[0-9a-f]{64}$", description="64 lowercase hex digits: a file's sha256.")
]


def add_read_routes(app: FastAPI, svc: Service) -> None:
    """``/api/results``, ``/api/compare``, ``/api/artifacts/{sha256}``, ``/api/limits`` and
    ``/api/health``."""
    settings = svc.settings

    @app.get("/api/results", response_model=None, responses=ERRORS)
    def results(
        page: Annotated[Page, Depends()], job: OptionalJob = None, model: Name = None,
        engine: Name = None, precision: Name = None, batch: BatchFilter = None,
        format: Format = "json",
    ) -> Any:  # fmt: skip
        rows = svc.rows(
            job, limit=page.limit, offset=page.offset, model=model, engine=engine,
            precision=precision, batch=batch,
        )  # fmt: skip
        if format == "csv":
            return Response(_csv(rows), media_type="text/csv")
        return JSONResponse(json.loads(json.dumps(rows, default=str)))

    @app.get("/api/compare", responses=ERRORS)
    def compare(base: Ref, new: Ref, threshold: Threshold = "5%") -> dict[str, Any]:
        thr = parse_threshold(threshold)
        b, n = svc.side(base), svc.side(new)
        cmp = compare_sources(b, n, metrics=DEFAULT_METRICS, threshold_pct=thr)
        return json.loads(json.dumps({
            "base": b.label, "new": n.label, "threshold_pct": thr, "rows": cmp.rows,
            "regressions": len(cmp.regressions), "inconclusive": len(cmp.inconclusive),
        }, default=str))  # fmt: skip

    @app.get("/api/artifacts/{sha256}", responses=ERRORS)
    def artifact(sha256: Sha256) -> dict[str, Any]:
        for manifest in sorted(svc.artifacts.rglob("manifest.json")):
            try:
                info = json.loads(manifest.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            onnx_info = info.get("onnx") if isinstance(info, dict) else None
            if isinstance(onnx_info, dict) and onnx_info.get("sha256") == sha256:
                return info  # type: ignore[no-any-return]
        upload = svc.uploads / f"{sha256}.onnx"
        if upload.is_file():
            return {"sha256": sha256, "kind": "upload", "bytes": upload.stat().st_size}
        raise HTTPException(404, f"no artifact with sha256 {sha256}")

    @app.get("/api/limits")
    def service_limits() -> dict[str, Any]:
        """The caps on grids, bodies, uploads and pages this service applies."""
        return stated_limits(settings.max_upload)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "store": shown_url(svc.store.url), "executor": settings.executor}


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = columns_for(rows) if rows else list(CONTRACT_COLUMNS)
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()
