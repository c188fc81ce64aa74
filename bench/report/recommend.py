"""The deployment decision: which measured configuration to deploy under the user's constraints.

A *candidate* is one measured configuration: model × engine × precision × device × batch ×
scenario (× engine options), its repeats pooled (medians of p50, p99 and throughput over the
repeats, the largest memory). :func:`recommend` keeps the valid candidates that meet every
constraint (latency, throughput, memory, accuracy, scenario, engine, device), ranks them by
the objective, and says why each other candidate was left out: the constraint it broke, an
invalid measurement, a failed cell, or an accuracy nobody measured. With none left it names
the nearest miss. The same function drives ``cnnbench recommend``, the report's first
section, the dashboard's job and history pages and ``GET /api/recommend``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cnnbench.bench.report.rows import invalid, is_accuracy_row, num
from cnnbench.bench.report.top1 import Accuracy, Top1
from cnnbench.bench.results.files import cell_key
from cnnbench.errors import InvalidInputError

OBJECTIVES = ("throughput", "latency", "memory")


@dataclass(frozen=True)
class Constraints:
    """What the user requires; None means no limit. Top-1 is in percent."""

    p99_ms: float | None = None
    min_throughput: float | None = None
    max_memory_mb: float | None = None
    min_top1: float | None = None
    max_top1_drop: float | None = None
    scenario: str | None = None
    engines: tuple[str, ...] = ()
    device: str | None = None
    objective: str = "throughput"
    allow_invalid: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InvalidInputError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if self.min_top1 is not None and self.max_top1_drop is not None:
            raise InvalidInputError("give --min-top1 or --max-top1-drop, not both")

    def describe(self) -> list[str]:
        """Each constraint as one phrase, the defaults said as such."""

        def limit(v: float | None, text: str, default: str) -> str:
            return text.format(v) if v is not None else default

        return [
            limit(self.p99_ms, "p99 latency <= {:g} ms", "p99 latency: no limit (default)"),
            limit(self.min_throughput, "throughput >= {:g} img/s", "throughput: no minimum (default)"),
            limit(self.max_memory_mb, "memory <= {:g} MB", "memory: no limit (default)"),
            (f"top-1 >= {self.min_top1:g} %" if self.min_top1 is not None
             else f"top-1 drop vs FP32 <= {self.max_top1_drop:g} points"
             if self.max_top1_drop is not None else "accuracy: not required (default)"),
            f"scenario: {self.scenario or 'any (default)'}",
            f"engine: {', '.join(self.engines) or 'any (default)'}",
            f"device: {self.device or 'any (default)'}",
            f"objective: {self.objective}" + (" (default)" if self.objective == "throughput" else ""),
            "invalid measurements: " + ("allowed, marked" if self.allow_invalid else "left out (default)"),
        ]  # fmt: skip


@dataclass
class Candidate:
    """One measured configuration, its repeats pooled."""

    cell: str
    model: str
    engine: str
    precision: str
    device: str
    batch: int
    scenario: str
    variant: str
    repeats: int
    p50_ms: float | None
    p99_ms: float | None
    throughput: float | None
    memory_mb: float | None
    memory_source: str
    top1: Top1
    weights: str
    valid: bool
    invalid_reason: str
    error: str
    top1_drop: float | None = None
    #: the share of MACs that ran in int8 (the row's layer report), and the row's warning when
    #: an INT8 cell did not run INT8 (bench.measure.profile_text.int8_warning)
    macs_int8_share: float | None = None
    int8_warning: str = ""

    @property
    def precision_label(self) -> str:
        """The precision as it ran: an INT8 cell that did not run INT8 says so."""
        if self.int8_warning and self.macs_int8_share is not None:
            return f"{self.precision} (NOT INT8: {100 * self.macs_int8_share:.0f}% of MACs int8)"
        return self.precision

    @property
    def label(self) -> str:
        extra = f" [{self.variant}]" if self.variant else ""
        return (f"{self.model} {self.engine} {self.precision_label} {self.device} "
                f"batch {self.batch} {self.scenario}{extra}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(self.top1.to_fields())
        d["label"] = self.label
        return d


@dataclass
class Decision:
    """The choice, the runner-up, the Pareto frontier and why every other candidate was out."""

    constraints: Constraints
    ranked: list[Candidate] = field(default_factory=list)
    frontier: list[Candidate] = field(default_factory=list)
    excluded: list[tuple[Candidate, str]] = field(default_factory=list)
    nearest_miss: tuple[Candidate, str] | None = None

    @property
    def choice(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runner_up(self) -> Candidate | None:
        return self.ranked[1] if len(self.ranked) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "constraints": asdict(self.constraints),
            "constraints_text": self.constraints.describe(),
            "choice": self.choice.to_dict() if self.choice else None,
            "runner_up": self.runner_up.to_dict() if self.runner_up else None,
            "ranked": [c.to_dict() for c in self.ranked],
            "frontier": [c.to_dict() for c in self.frontier],
            "excluded": [{**c.to_dict(), "why": why} for c, why in self.excluded],
            "nearest_miss": (
                {**self.nearest_miss[0].to_dict(), "why": self.nearest_miss[1]}
                if self.nearest_miss else None
            ),
        }  # fmt: skip


def candidates(
    rows: Iterable[Mapping[str, Any]], published: Mapping[str, tuple[float | None, str | None]]
) -> list[Candidate]:
    """The measured configurations of ``rows`` (timing rows; their ``eval`` rows give the
    accuracy), each with its repeats pooled. ``published``: per model, its published top-1
    and source, shown only beside pretrained weights."""
    rows = list(rows)
    acc = Accuracy(rows)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if not is_accuracy_row(r) and r.get("model"):
            groups.setdefault(cell_key(r, repeat=False), []).append(r)
    out = [_pool(key, group, acc, published) for key, group in groups.items()]
    _add_top1_drops(out)
    return out


def _median(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    vals = [v for r in rows if (v := num(r.get(key))) is not None]
    return statistics.median(vals) if vals else None


def _pool(
    key: str,
    group: list[Mapping[str, Any]],
    acc: Accuracy,
    published: Mapping[str, tuple[float | None, str | None]],
) -> Candidate:
    ok = [r for r in group if not r.get("error")]
    first = (ok or group)[0]
    cuda = str(first.get("device", "")).startswith("cuda")
    mem_key = "device_mem_peak_mb" if cuda else "host_peak_rss_mb"
    mems = [v for r in ok if (v := num(r.get(mem_key))) is not None]
    bad = [r for r in ok if invalid(r)]
    pub, src = published.get(str(first.get("model")), (None, None))
    return Candidate(
        cell=key, model=str(first.get("model")), engine=str(first.get("engine")),
        precision=str(first.get("precision")), device=str(first.get("device")),
        batch=int(num(first.get("batch")) or 0), scenario=str(first.get("scenario")),
        variant=str(first.get("variant") or ""), repeats=len(ok),
        p50_ms=_median(ok, "latency_ms_p50"), p99_ms=_median(ok, "latency_ms_p99"),
        throughput=_median(ok, "throughput_ips"), memory_mb=max(mems) if mems else None,
        memory_source="device" if cuda else "host RSS", top1=acc.of(first, pub, src),
        weights=str(first.get("weights") or ""), valid=bool(ok) and not bad,
        invalid_reason=str(bad[0].get("invalid_reason") or "") if bad else "",
        error=str(group[0].get("error") or "") if not ok else "",
        macs_int8_share=_median(ok, "macs_int8_share"),
        int8_warning=next((str(r["int8_warning"]) for r in ok if r.get("int8_warning")), ""),
    )  # fmt: skip


def _add_top1_drops(cands: list[Candidate]) -> None:
    """Each candidate's top-1 drop against its model's FP32 top-1 on the same weights."""
    base: dict[tuple[str, str], float] = {}
    for c in cands:
        if c.precision == "fp32" and c.top1.top1 is not None:
            base.setdefault((c.model, c.weights), c.top1.top1)
    for c in cands:
        b = base.get((c.model, c.weights))
        if b is not None and c.top1.top1 is not None:
            c.top1_drop = b - c.top1.top1


def _misses(c: Candidate, k: Constraints) -> list[tuple[float, str]]:
    """The constraints ``c`` breaks: (how far, relative, and what)."""
    out: list[tuple[float, str]] = []
    if k.p99_ms is not None and c.p99_ms is not None and c.p99_ms > k.p99_ms:
        out.append((c.p99_ms / k.p99_ms - 1, f"p99 {c.p99_ms:.4g} ms > {k.p99_ms:g} ms"))
    if k.min_throughput is not None and (c.throughput or 0) < k.min_throughput:
        t = c.throughput or 0.0
        out.append(
            (
                k.min_throughput / max(t, 1e-9) - 1,
                f"throughput {t:.4g} img/s < {k.min_throughput:g}",
            )
        )
    if k.max_memory_mb is not None and c.memory_mb is not None and c.memory_mb > k.max_memory_mb:
        out.append(
            (
                c.memory_mb / k.max_memory_mb - 1,
                f"memory {c.memory_mb:.4g} MB > {k.max_memory_mb:g} MB",
            )
        )
    if k.min_top1 is not None and c.top1.top1 is not None and c.top1.top1 < k.min_top1:
        out.append(
            ((k.min_top1 - c.top1.top1) / 100, f"top-1 {c.top1.top1:.2f} % < {k.min_top1:g} %")
        )
    if k.max_top1_drop is not None and c.top1_drop is not None and c.top1_drop > k.max_top1_drop:
        out.append(
            (
                (c.top1_drop - k.max_top1_drop) / 100,
                f"top-1 drop {c.top1_drop:.2f} > {k.max_top1_drop:g} points",
            )
        )
    return out  # fmt: skip


def _filtered_out(c: Candidate, k: Constraints) -> str | None:
    """Why ``c`` is not even considered (a filter, a failure, invalid, unknown accuracy)."""
    if k.scenario and c.scenario != k.scenario:
        return f"scenario {c.scenario}, not {k.scenario}"
    if k.engines and c.engine not in k.engines:
        return f"engine {c.engine}, not {'/'.join(k.engines)}"
    if k.device and c.device.split(":")[0] != k.device.split(":")[0]:
        return f"device {c.device}, not {k.device}"
    if c.error:
        return f"failed: {c.error}"
    if not c.valid and not k.allow_invalid:
        return f"invalid: {c.invalid_reason}"
    needs_top1 = k.min_top1 is not None or k.max_top1_drop is not None
    if needs_top1 and c.top1.top1 is None:
        return f"accuracy unknown ({c.top1.detail})"
    if k.max_top1_drop is not None and c.top1_drop is None:
        return "accuracy drop unknown (no FP32 top-1 on the same weights)"
    return None


def _rank_key(c: Candidate, objective: str) -> tuple[float, ...]:
    inf = float("inf")
    thr = -(c.throughput or 0.0)
    lat = c.p99_ms if c.p99_ms is not None else inf
    mem = c.memory_mb if c.memory_mb is not None else inf
    if objective == "latency":
        return (lat, thr, mem)
    if objective == "memory":
        return (mem, thr, lat)
    return (thr, lat, mem)


#: on the frontier, throughputs, p99s and memories within this fraction of each other are a
#: tie: a cell 0.3 MB lighter than one three times as fast is no tradeoff, it is noise
FRONTIER_TIE = 0.05


def _dominates(a: Candidate, b: Candidate, tie: float = FRONTIER_TIE) -> bool:
    """``a`` is at least as good as ``b`` on throughput, p99 latency, memory and accuracy, and
    better on one: speed is both, whatever the objective, so the frontier shows the batch
    tradeoff (the highest throughput, the lowest p99 and what lies between). Speed and memory
    count as equal within ``tie`` (relative); accuracy exactly."""
    inf = float("inf")
    # (a's, b's, tolerance) with lower better
    dims = [
        (-(a.throughput or 0.0), -(b.throughput or 0.0), tie),
        (a.p99_ms if a.p99_ms is not None else inf, b.p99_ms if b.p99_ms is not None else inf, tie),
        (a.memory_mb if a.memory_mb is not None else inf, b.memory_mb if b.memory_mb is not None else inf, tie),
        (-(a.top1.top1 if a.top1.top1 is not None else -inf), -(b.top1.top1 if b.top1.top1 is not None else -inf), 0.0),
    ]  # fmt: skip

    def margin(x: float, y: float, t: float) -> float:
        return t * min(abs(x), abs(y)) if abs(x) != inf and abs(y) != inf else 0.0

    return all(x <= y + margin(x, y, t) for x, y, t in dims) and any(
        x < y - margin(x, y, t) for x, y, t in dims
    )


def frontier(ranked: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other dominates (speed and memory within ``FRONTIER_TIE`` tie); should
    ties make every candidate dominated (a cycle), the strict frontier."""
    front = [c for c in ranked if not any(_dominates(o, c) for o in ranked)]
    return front or [c for c in ranked if not any(_dominates(o, c, 0.0) for o in ranked)]


def recommend(cands: Sequence[Candidate], constraints: Constraints) -> Decision:
    """Keep the candidates that meet every constraint, rank them by the objective, and say why
    each other one was left out (see the module)."""
    d = Decision(constraints)
    near: list[tuple[float, Candidate, str]] = []
    for c in cands:
        why = _filtered_out(c, constraints)
        if why is not None:
            d.excluded.append((c, why))
            continue
        misses = _misses(c, constraints)
        if misses:
            reason = "; ".join(m for _, m in misses)
            d.excluded.append((c, reason))
            near.append((max(f for f, _ in misses), c, reason))
            continue
        d.ranked.append(c)
    d.ranked.sort(key=lambda c: _rank_key(c, constraints.objective))
    d.frontier = frontier(d.ranked)
    if not d.ranked and near:
        _, c, why = min(near, key=lambda t: t[0])
        d.nearest_miss = (c, why)
    return d


def summary(c: Candidate) -> str:
    """A candidate's figures in one phrase."""
    parts = [
        f"{_num(c.throughput)} img/s" if c.throughput is not None else "throughput -",
        f"p99 {c.p99_ms:.4g} ms" if c.p99_ms is not None else "p99 -",
        f"{c.memory_mb:,.4g} MB {c.memory_source}" if c.memory_mb is not None else "memory -",
        _top1_text(c.top1),
    ]
    if c.repeats > 1:
        parts.append(f"median of {c.repeats} repeats")
    if not c.valid:
        parts.append(f"INVALID: {c.invalid_reason}")
    if c.int8_warning:
        parts.append(c.int8_warning)
    return ", ".join(parts)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"


def _top1_text(t: Top1) -> str:
    if t.top1 is None:
        return f"top-1: {t.detail}"
    return f"top-1 {t.top1:.2f} % ({t.source})"


def decision_lines(d: Decision) -> list[str]:
    """The decision as text: constraints, choice, runner-up (the frontier and the excluded
    cells are tables of their own)."""
    lines = ["constraints: " + "; ".join(d.constraints.describe())]
    if d.choice is not None:
        lines.append(f"choice: {d.choice.label}: {summary(d.choice)}")
        if d.runner_up is not None:
            lines.append(f"runner-up: {d.runner_up.label}: {summary(d.runner_up)}")
    elif d.nearest_miss is not None:
        c, why = d.nearest_miss
        lines.append(f"no cell meets the constraints; nearest miss: {c.label} ({why})")
    else:
        lines.append("no cell meets the constraints, and none comes near (see why each is out)")
    return lines
