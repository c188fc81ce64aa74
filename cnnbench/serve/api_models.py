"""What a request to the service may carry, with its bounds: the path and query parameters
(ids, pages, filters), the grid's documented schema, and the error shape.

Every number comes from :mod:`cnnbench.limits`, the table the CLI and the sweep loader use, so
the service states the same caps (``GET /api/limits``, and the OpenAPI schema at
``/openapi.json``). A parameter out of range is a 422 ``{"error": "one line"}``, never a 500.
A route added later takes its ids as :data:`JobId` (or another ``Path(ge, le)`` from the
table), its pages as :class:`Page`, and its errors from the handlers in
:mod:`cnnbench.serve.app`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel

from cnnbench import limits
from cnnbench.bench.measure.cuda_timing import TIMING_MODES
from cnnbench.bench.measure.scenarios import SCENARIOS
from cnnbench.engines import engine_names
from cnnbench.limits import Bound
from cnnbench.models import list_models
from cnnbench.precision import FP16_CONVERTERS, PRECISIONS, QDQ_TARGETS

#: the grid of a JSON request (the multipart ``grid`` field has the same cap)
GRID_BYTES = limits.CONFIG_BYTES
#: a grid's validation runs off the event loop and is abandoned (422) after this long
VALIDATE_S = 30.0


def _query(bound: Bound, default: Any, description: str) -> Any:
    return Query(default, ge=bound.lo, le=bound.hi, description=description)


JobId = Annotated[int, Path(ge=limits.ID.lo, le=limits.ID.hi, description="A job's id.")]
OptionalJob = Annotated[
    int | None, Query(ge=limits.ID.lo, le=limits.ID.hi, description="Only this job's rows.")
]
BatchFilter = Annotated[
    int | None, Query(ge=limits.BATCH.lo, le=limits.BATCH.hi, description="Only this batch.")
]
Name = Annotated[str | None, Query(max_length=200, description="Only rows with this value.")]
Ref = Annotated[
    str, Query(min_length=1, max_length=200, description="job:N, db:RUN_ID, db:latest(~N)")
]
Threshold = Annotated[str, Query(max_length=20, description="A regression threshold: 5% or 0.05.")]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv.")]


class Page:
    """A page of a read: ``limit`` rows (at most :data:`cnnbench.limits.LIMIT`, default
    :data:`cnnbench.limits.PAGE_DEFAULT`) after skipping ``offset``. Use as a dependency:
    ``page: Annotated[Page, Depends()]``."""

    def __init__(
        self,
        limit: int = _query(limits.LIMIT, limits.PAGE_DEFAULT, "At most this many rows."),
        offset: int = _query(limits.OFFSET, 0, "Skip this many rows first."),
    ) -> None:
        self.limit, self.offset = limit, offset


class ErrorBody(BaseModel):
    """Every error: one line, with a 4xx status."""

    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in (
        (401, "a write (or, with --private, any read) without the token"),
        (404, "no such job or artifact"),
        (413, "a body or upload over its size limit"),
        (422, "a value out of range, or a grid the service refuses"),
    )
}


def _int(bound: Bound) -> dict[str, Any]:
    return {"type": "integer", "minimum": int(bound.lo), "maximum": int(bound.hi)}


def _num(bound: Bound) -> dict[str, Any]:
    key = "exclusiveMinimum" if bound.lo_open else "minimum"
    return {"type": "number", key: bound.lo, "maximum": bound.hi}


def _names(choices: list[str], items: int = limits.GRID_LIST_ITEMS) -> dict[str, Any]:
    """A list of names: the canonical ones are listed (aliases, ort for onnxruntime, are
    accepted too)."""
    return {"type": "array", "minItems": 1, "maxItems": items,
            "items": {"type": "string", "enum": choices}}  # fmt: skip


def grid_schema() -> dict[str, Any]:
    """The JSON schema of a grid (``POST /api/jobs``), with the bounds the loader checks."""
    stop: dict[str, Any] = {k: _int(b) if b.integer else _num(b) for k, b in _STOP.items()}
    stop["early"] = {"type": "boolean"}
    server = {k: _num(b) for k, b in _SERVER.items()} | {"find_peak": {"type": "boolean"}}
    return {
        "type": "object",
        "additionalProperties": False,
        # the rest default as in a sweep file: fp32, offline, each scenario's own batch
        "required": ["models", "engines"],
        "properties": {
            "models": _names([*list_models(), "upload"]),
            "engines": _names(engine_names(), 16),
            "precisions": _names([str(p) for p in PRECISIONS], 16),
            "batches": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.GRID_LIST_ITEMS,
                "items": _int(limits.BATCH),
            },  # fmt: skip
            "scenarios": _names(list(SCENARIOS), 8),
            "repeats": _int(limits.REPEATS),
            "seed": _int(limits.SEED),
            "threads": _int(limits.THREADS),
            "timeout_s": _num(limits.TIMEOUT_S),
            "device": {"type": "string", "maxLength": 16},
            "stop": {"type": "object", "additionalProperties": False, "properties": stop},
            "server": {"type": "object", "additionalProperties": False, "properties": server},
            "engine_options": {"type": "object"},
            "quantizer": {"type": "string", "enum": ["ort", "modelopt"]},
            "calib_method": {"type": "string", "maxLength": 32},
            "calib_samples": _int(limits.CALIB_SAMPLES),
            "calib_data": {"type": "string", "enum": ["digits", "random"]},
            "qdq_target": {"type": "string", "enum": list(QDQ_TARGETS)},
            "profile": {"type": "boolean"},
            "timing": {"type": "string", "enum": list(TIMING_MODES)},
            "fp16_converter": {"type": "string", "enum": list(FP16_CONVERTERS)},
        },
    }


_STOP = {
    "warmup_count": limits.WARMUP_COUNT, "warmup_time": limits.SECONDS,
    "min_count": limits.MIN_COUNT, "min_time": limits.SECONDS, "max_time": limits.SECONDS,
    "ci_target": limits.CI_TARGET,
}  # fmt: skip
_SERVER = {
    "target_qps": limits.QPS, "max_queue_delay_ms": limits.MILLISECONDS,
    "latency_bound_ms": limits.MILLISECONDS, "peak_time": limits.SECONDS,
}  # fmt: skip


def stated_limits(max_upload: int) -> dict[str, Any]:
    """The caps the service applies, as ``GET /api/limits`` states them."""
    return {
        "grid_cells": limits.GRID_CELLS,
        "grid_list_items": limits.GRID_LIST_ITEMS,
        "repeats": int(limits.REPEATS.hi),
        "batch": int(limits.BATCH.hi),
        "threads": int(limits.THREADS.hi),
        "timeout_s": limits.TIMEOUT_S.hi,
        "json_body_bytes": GRID_BYTES,
        "upload_bytes": max_upload,
        "page_limit": int(limits.LIMIT.hi),
        "page_default": limits.PAGE_DEFAULT,
        "validation_s": VALIDATE_S,
    }
