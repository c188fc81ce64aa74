"""Command: recommend (what to deploy, under your constraints, from measured results)."""

from __future__ import annotations

from typing import Any

import click

from cnnbench import limits
from cnnbench.bench.report.recommend import (
    OBJECTIVES,
    Constraints,
    Decision,
    candidates,
    decision_lines,
    recommend,
)
from cnnbench.bench.results.files import read_rows
from cnnbench.bench.results.history import db_source, is_ref, machine_filter
from cnnbench.bench.results.store import Store
from cnnbench.cli.common import cli, emit_json, emit_table, format_option
from cnnbench.cli.flags import DeviceType, ScenarioType, bounded, engine_option, options
from cnnbench.cli.output_options import db_option
from cnnbench.errors import CheckFailedError, InvalidInputError
from cnnbench.models import get_spec
from cnnbench.serve.jobs import JobQueue

_COLUMNS = ("label", "throughput", "p99_ms", "memory_mb", "top1", "top1_source", "repeats", "valid")
_LABELS = {"label": "cell", "throughput": "img/s", "p99_ms": "p99 ms", "memory_mb": "memory MB",
           "top1": "top-1 %", "top1_source": "top-1 from", "repeats": "n"}  # fmt: skip


def load_source_rows(sources: tuple[str, ...], db: str | None, machine: str | None) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of results files, store runs (``db:latest``, ``db:ID``) and service jobs (``job:N``)."""
    rows: list[dict[str, Any]] = []
    store: Store | None = None
    try:
        for src in sources:
            if is_ref(src) or src.startswith("job:"):
                store = store or Store.open(db)
                rows += _store_rows(store, src, machine)
            else:
                rows += read_rows(src)
    finally:
        if store is not None:
            store.close()
    if not rows:
        raise InvalidInputError(f"no result rows in {', '.join(sources)}")
    return rows


def _store_rows(store: Store, src: str, machine: str | None) -> list[dict[str, Any]]:
    if src.startswith("job:"):
        if not src[4:].isdigit():
            raise InvalidInputError(f"{src}: a job is job:N")
        job = JobQueue(store).get(int(src[4:]))
        if job is None or job.get("run_id") is None:
            raise InvalidInputError(f"{src}: no such job with results in this store")
        src = f"db:{job['run_id']}"
    return db_source(store, src, machine=machine_filter(machine)).rows


def published_top1(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, str | None]]:
    """Each model's published top-1 and its source (shown only beside published weights)."""
    out: dict[str, tuple[float | None, str | None]] = {}
    for m in {str(r.get("model")) for r in rows if r.get("model")}:
        try:
            spec = get_spec(m)
        except Exception:  # a user model that is not registered here: no published figure
            out[m] = (None, None)
            continue
        out[m] = (spec.top1, spec.top1_source)
    return out


constraint_options = options(
    click.option("--p99-ms", type=bounded(limits.LATENCY_MS), help="Largest p99 latency (ms)."),
    click.option("--min-throughput", type=bounded(limits.THROUGHPUT), help="Smallest throughput (img/s)."),
    click.option("--max-memory-mb", type=bounded(limits.MEMORY_MB), help="Largest peak memory (MB): the device's on a GPU, host RSS on the CPU."),
    click.option("--min-top1", type=bounded(limits.TOP1), help="Smallest top-1 (%), measured on the cell's artifact or published for published weights."),
    click.option("--max-top1-drop", type=bounded(limits.TOP1), help="Largest top-1 drop (points) against the same model's FP32 on the same weights."),
    click.option("--scenario", "-s", type=ScenarioType(), default=None, help="Only this scenario."),
    engine_option(None, help="Only these engines."),
    click.option("--device", type=DeviceType(), default=None, help="Only this device (cpu, cuda)."),
    click.option("--objective", type=click.Choice(OBJECTIVES), default="throughput", show_default=True, help="What the choice maximises (throughput) or minimises (latency: p99; memory)."),
    click.option("--allow-invalid", is_flag=True, help="Consider invalid measurements too (marked)."),
)  # fmt: skip


def constraints_from(o: dict[str, Any]) -> Constraints:
    """The decision's constraints from the flags above (each already parsed by its type)."""
    return Constraints(
        p99_ms=o["p99_ms"], min_throughput=o["min_throughput"], max_memory_mb=o["max_memory_mb"],
        min_top1=o["min_top1"], max_top1_drop=o["max_top1_drop"], scenario=o["scenario"],
        engines=tuple(o["engines"] or ()), device=o["device"], objective=o["objective"],
        allow_invalid=o["allow_invalid"],
    )  # fmt: skip


@cli.command("recommend")
@click.argument("sources", nargs=-1, required=True, metavar="RESULTS|db:REF|job:N...")
@constraint_options
@db_option
@click.option("--machine", default=None, help="db:latest among this machine's runs ('this': here).")
@format_option()
def recommend_cmd(sources: tuple[str, ...], **o: Any) -> None:  # fmt: skip
    """What to deploy: the measured cell that meets every constraint, best by the objective.

    \b
    Prints the constraints used (defaults stated), the choice and the runner-up, the Pareto
    frontier over throughput, p99 latency, memory and accuracy, and why every other cell was
    left out: a constraint it broke, an invalid measurement, a failed cell, or unknown accuracy.
    Exit 0 when a cell meets the constraints; 1 when none does (naming the nearest miss);
    2 on bad input.
    """
    rows = load_source_rows(sources, o["db"], o["machine"])
    constraints = constraints_from(o)
    cands = candidates(rows, published_top1(rows))
    if not cands:
        raise InvalidInputError(f"no measured cells in {', '.join(sources)} (only eval rows?)")
    decision = recommend(cands, constraints)
    if o["fmt"] == "json":
        emit_json(decision.to_dict())
    else:
        _print(decision)
    if decision.choice is None:
        near = decision.nearest_miss
        why = f"nearest miss: {near[0].label} ({near[1]})" if near else "see why each is out"
        raise CheckFailedError(f"no cell meets the constraints; {why}")


def _print(d: Decision) -> None:
    for line in decision_lines(d):
        click.echo(line)
    if d.frontier:
        emit_table([c.to_dict() for c in d.frontier], _COLUMNS,
                   title="Pareto frontier (throughput, p99, memory, accuracy)", labels=_LABELS)  # fmt: skip
    if d.excluded:
        emit_table([{"label": c.label, "why": why} for c, why in d.excluded], ("label", "why"),
                   title="left out", labels={"label": "cell", "why": "why"})  # fmt: skip
