"""The service's answers: the deployment decision over a job or the store, and the submit form.

* ``GET /api/recommend?source=job:N|db:REF&p99_ms=&...``: :func:`bench.report.recommend.
  recommend` over those rows, as JSON (the same function as ``cnnbench recommend``);
* :func:`decision_block`: the decision and its constraints form, for the job and history pages;
* ``GET /submit`` and ``POST /submit``: a grid submitted from a form, behind the token (the
  same validation as ``POST /api/jobs``; the same defaults as a sweep file).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from cnnbench import engines
from cnnbench.bench.measure.scenarios import canonical_scenario
from cnnbench.bench.report.html import CSS as REPORT_CSS
from cnnbench.bench.report.html import decision_html
from cnnbench.bench.report.recommend import OBJECTIVES, Constraints, Decision, candidates, recommend
from cnnbench.errors import CnnbenchError, InvalidInputError, first_line
from cnnbench.models import get_spec
from cnnbench.serve.api_models import ERRORS, VALIDATE_S, Name, Ref
from cnnbench.serve.layout import page

if TYPE_CHECKING:
    from cnnbench.serve.app import Service

#: the constraint parameters a page or the API takes, as query parameters
PARAMS = ("p99_ms", "min_throughput", "max_memory_mb", "min_top1", "max_top1_drop", "scenario",
          "engine", "device", "objective", "allow_invalid")  # fmt: skip


def _published(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float | None, str | None]]:
    out: dict[str, tuple[float | None, str | None]] = {}
    for m in {str(r.get("model")) for r in rows if r.get("model")}:
        try:
            spec = get_spec(m)
            out[m] = (spec.top1, spec.top1_source)
        except CnnbenchError:  # an upload registered only in its job's process
            out[m] = (None, None)
    return out


def constraints_from(q: Mapping[str, Any]) -> Constraints:
    """The constraints of a request's query (names parsed here, where they enter)."""

    def number(name: str) -> float | None:
        v = q.get(name)
        if v in (None, ""):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number, got {v!r}") from None
        if not 0 <= f < float("inf"):
            raise InvalidInputError(f"{name} must be a finite number >= 0, got {v!r}")
        return f

    eng = q.get("engine") or ""
    return Constraints(
        p99_ms=number("p99_ms"), min_throughput=number("min_throughput"),
        max_memory_mb=number("max_memory_mb"), min_top1=number("min_top1"),
        max_top1_drop=number("max_top1_drop"),
        scenario=canonical_scenario(q["scenario"]) if q.get("scenario") else None,
        engines=tuple(engines.canonical(e.strip()) for e in eng.split(",") if e.strip()),
        device=engines.parse_device(q["device"]) if q.get("device") else None,
        objective=q.get("objective") or "throughput",
        allow_invalid=str(q.get("allow_invalid", "")).lower() in ("1", "true", "on", "yes"),
    )  # fmt: skip


def decide(rows: Sequence[Mapping[str, Any]], constraints: Constraints) -> Decision:
    """The decision over ``rows`` (null-engine rows left out: they measure the harness)."""
    timing = [r for r in rows if r.get("engine") != "null"]
    return recommend(candidates(timing, _published(timing)), constraints)


def decision_block(rows: Sequence[Mapping[str, Any]], query: Mapping[str, Any], action: str) -> str:
    """The decision over ``rows`` under the query's constraints, with the form that sets them."""
    try:
        constraints = constraints_from(query)
    except CnnbenchError as exc:
        return f'<p class="bad">{html.escape(first_line(exc))}</p>' + _form(query, action)
    body = decision_html(decide(rows, constraints)) if rows else "<p>No rows yet.</p>"
    return f"<style>{REPORT_CSS}</style>{body}{_form(query, action)}"


def _form(query: Mapping[str, Any], action: str) -> str:
    def field(name: str, label: str) -> str:
        v = html.escape(str(query.get(name) or ""))
        return f'<label>{label} <input name="{name}" value="{v}" size="7"></label> '

    chosen = query.get("objective") or "throughput"
    options = "".join(
        f"<option{' selected' if o == chosen else ''}>{o}</option>" for o in OBJECTIVES
    )
    return (
        f'<form method="get" action="{html.escape(action)}"><p>'
        + field("p99_ms", "p99 ≤ ms") + field("min_throughput", "img/s ≥")
        + field("max_memory_mb", "memory ≤ MB") + field("min_top1", "top-1 ≥ %")
        + field("engine", "engines") + field("scenario", "scenario")
        + f'<label>objective <select name="objective">{options}</select></label> '
        + '<button type="submit">decide</button></p></form>'
    )  # fmt: skip


#: the constraints a request may give, bounded (cnnbench.serve.api_models)
Ms = Annotated[float | None, Query(gt=0, le=3_600_000, description="p99 latency bound, ms.")]
PerSecond = Annotated[float | None, Query(ge=0, le=1e12, description="Images per second.")]
Mb = Annotated[float | None, Query(gt=0, le=2**40, description="Memory bound, MB.")]
Percent = Annotated[float | None, Query(ge=0, le=100, description="Top-1, in points.")]
Objective = Annotated[Literal["throughput", "latency", "memory"], Query()]
#: a field of the submit form (a comma-separated list, or the token)
Field = Annotated[str, Form(max_length=2000)]


def add_decision_routes(app: FastAPI, svc: Service) -> None:
    """``/api/recommend`` and the submit form (see the module)."""

    @app.get("/api/recommend", responses=ERRORS)
    def recommend_api(
        source: Ref,
        p99_ms: Ms = None, min_throughput: PerSecond = None, max_memory_mb: Mb = None,
        min_top1: Percent = None, max_top1_drop: Percent = None, scenario: Name = None,
        engine: Name = None, device: Name = None, objective: Objective = "throughput",
        allow_invalid: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        q = {"p99_ms": p99_ms, "min_throughput": min_throughput, "max_memory_mb": max_memory_mb,
             "min_top1": min_top1, "max_top1_drop": max_top1_drop, "scenario": scenario,
             "engine": engine, "device": device, "objective": objective,
             "allow_invalid": "1" if allow_invalid else ""}  # fmt: skip
        return decide(svc.side(source).rows, constraints_from(q)).to_dict()

    @app.get("/submit", response_class=HTMLResponse)
    def submit_form() -> HTMLResponse:
        return _submit_page(svc, None, {})

    @app.post("/submit", response_model=None, responses=ERRORS)
    async def submit_post(
        request: Request, token: Field = "", models: Field = "", engines: Field = "",
        precisions: Field = "", batches: Field = "", scenarios: Field = "",
    ) -> Any:  # fmt: skip
        given = {"models": models, "engines": engines, "precisions": precisions,
                 "batches": batches, "scenarios": scenarios}  # fmt: skip
        # the form's token field, or the API's Authorization header (a script posting the form)
        if svc.settings.token is not None and not svc.token_ok(token, request):
            return _submit_page(svc, "a write needs the service's token", given, status=401)
        try:
            grid: dict[str, Any] = {k: _items(v) for k, v in given.items() if v.strip()}
            if "batches" in grid:
                grid["batches"] = [int(b) for b in grid["batches"]]
            # validated off the event loop, capped, then queued (as POST /api/jobs)
            job_id = await asyncio.wait_for(run_in_threadpool(svc.submit_grid, grid), VALIDATE_S)
        except ValueError:
            return _submit_page(svc, "batches must be whole numbers", given, status=422)
        except TimeoutError:
            msg = f"the grid's validation took longer than {VALIDATE_S:g}s; make it smaller"
            return _submit_page(svc, msg, given, status=422)
        except CnnbenchError as exc:
            return _submit_page(svc, first_line(exc, 300), given, status=422)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


def _submit_page(
    svc: Service, error: str | None, given: Mapping[str, str], *, status: int = 200
) -> HTMLResponse:
    def field(name: str, label: str, hint: str) -> str:
        v = html.escape(given.get(name, ""))
        return (f'<p><label>{label}<br><input name="{name}" value="{v}" size="50" '
                f'placeholder="{html.escape(hint)}"></label></p>')  # fmt: skip

    token = ('<p><label>token<br><input name="token" type="password" size="30"></label></p>'
             if svc.settings.token is not None else "")  # fmt: skip
    err = f'<p class="bad">{html.escape(error)}</p>' if error else ""
    body = (
        f"{err}<p>A grid, as a sweep file has it: models and engines are needed; the rest "
        "default to fp32, offline and each scenario's own batch.</p>"
        '<form method="post" action="/submit">'
        + field("models", "models", "lenet5, resnet18")
        + field("engines", "engines", "onnxruntime, openvino")
        + field("precisions", "precisions", "fp32, int8 (default fp32)")
        + field("batches", "batches", "1, 8 (default: the scenario's)")
        + field("scenarios", "scenarios", "offline (default)")
        + token + '<p><button type="submit">submit</button></p></form>'
    )  # fmt: skip
    resp = page("Submit a grid", body)
    resp.status_code = status
    return resp


def query_string(query: Mapping[str, Any]) -> str:
    """The constraint parameters of ``query``, to carry to another page."""
    kept = {k: v for k, v in query.items() if k in PARAMS and v not in (None, "")}
    return ("?" + urlencode(kept)) if kept else ""
