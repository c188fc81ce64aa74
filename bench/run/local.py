"""The local executor: each cell in its own process, rows appended as they finish, resumable.

A crashed, killed (out of memory) or timed-out cell process becomes a row whose ``error`` says
so, and the sweep goes on. Rerunning with ``--resume`` skips cells that already have a row
without error and retries the others (their old error rows are dropped). Ctrl-C stops the
running cell; every row already appended stays (each is written with one fsynced write).
The grid and its validation live in :mod:`bench.run.sweep_config`; the cell's processes in
:mod:`bench.run.child`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnbench.bench.measure import samples
from cnnbench.bench.measure.profile import PROFILE_KEY, store_profile
from cnnbench.bench.results.files import append_row, cell_key, read_rows, write_rows
from cnnbench.bench.run.cell import check_runtime, error_row, error_text, run_cell_safe
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.child import peak_isolated, prepare_isolated, run_isolated
from cnnbench.bench.run.prepare import model_facts, needs_onnx
from cnnbench.bench.run.sweep_config import SweepConfig, load_config
from cnnbench.errors import CnnbenchError, InvalidInputError, ResultsWriteError, first_line
from cnnbench.precision import Int8Recipe
from cnnbench.progress import note, track, warn
from cnnbench.values import num

#: records one row (and its samples) in the results store; the error's text when it could not
Record = Callable[[dict[str, Any], Any], "str | None"]

__all__ = [
    "CellRunner", "Record", "RowSink", "SweepConfig", "check_fresh", "load_config",
    "pending_cells", "resume_run_id", "run_cells", "run_id_of", "run_sweep",
    "sweep_todo",
]  # fmt: skip


def check_fresh(out: Path, resume: bool) -> None:
    """An existing results file is continued only with ``resume``; one line otherwise."""
    if out.exists() and not resume:
        raise InvalidInputError(
            f"{out} exists; add --resume to continue it, or choose another --out"
        )


def pending_cells(specs: list[CellSpec], out: Path, resume: bool) -> tuple[list[CellSpec], int]:
    """Cells still to run, and how many were already done; drops stale error rows on resume."""
    check_fresh(out, resume)
    if not out.exists():
        return specs, 0
    rows = read_rows(out)
    done = {cell_key(r) for r in rows if not r.get("error")}
    todo = [s for s in specs if s.key() not in done]
    retry = {s.key() for s in todo}
    kept = [r for r in rows if not (r.get("error") and cell_key(r) in retry)]
    if len(kept) != len(rows):
        write_rows(out, kept)
    return todo, len(specs) - len(todo)


def run_sweep(
    cfg: SweepConfig, out: Path, *, resume: bool = False, record: Record | None = None
) -> list[dict[str, Any]]:
    """Run every pending cell of ``cfg``, each in its own process, appending rows to ``out``
    (and recording them with ``record``, the results store's, when given)."""
    runner = CellRunner(isolated=True, timeout_s=cfg.timeout_s)
    return run_cells(sweep_todo(cfg, out, resume), runner, out=out, record=record)


def sweep_todo(cfg: SweepConfig, out: Path, resume: bool) -> list[CellSpec]:
    """The cells of ``cfg`` a sweep into ``out`` still has to measure, whichever executor
    measures them (saying what it skips)."""
    specs, skipped = cfg.cells()
    if skipped:
        note(f"sweep: skipping {len(skipped)} combination(s) single-stream runs only at batch 1")
    todo, done = pending_cells(specs, out, resume)
    if done:
        note(f"sweep: {done} of {len(specs)} cells already in {out}; running {len(todo)}")
    return todo


def resume_run_id(out: Path) -> int | None:
    """The store's run id the rows of an existing results file were recorded under (the last
    row's), so that a resumed sweep goes on recording into the same run."""
    return run_id_of(read_rows(out)) if out.exists() else None


def run_id_of(rows: list[dict[str, Any]]) -> int | None:
    """The store's run id of the last of ``rows`` that has one."""
    ids = [n for r in rows if (n := num(r.get("run_id"))) is not None]
    return int(ids[-1]) if ids else None


def run_cells(
    specs: list[CellSpec],
    runner: CellRunner,
    *,
    out: Path | None,
    label: str = "sweep",
    extra_fields: dict[str, Any] | None = None,
    record: Record | None = None,
) -> list[dict[str, Any]]:
    """Run ``specs`` in order with ``runner``; each row (with ``extra_fields`` added) is
    recorded in the results store (``record``: the row with its samples, one transaction)
    and appended to ``out`` as it finishes.

    ``cnnbench run`` and ``cnnbench sweep`` both measure through here: only the cells and
    whether each gets its own process differ. Ctrl-C keeps every finished row.
    """
    sink = RowSink(out, record, label)
    try:
        for spec in track(specs, total=len(specs), description=label):
            note(f"{label}: {spec.key()} ...")
            row = runner(spec)
            row.update(extra_fields or {})
            sink.add(spec.key(), row)
    except KeyboardInterrupt:
        sink.interrupted()
        raise
    return sink.finish()


class RowSink:
    """Where finished rows go, as they come, whichever executor measured them: the results
    store first (row and samples in one transaction), then ``out`` (samples, then the row).

    A kill between the two leaves the cell to be measured again on ``--resume`` (a second row
    in the store, the later one wins), never a cell missing. A write that fails is reported
    once and measuring goes on; :meth:`finish` then raises with every row, to be printed.
    """

    def __init__(self, out: Path | None, record: Record | None, label: str) -> None:
        self.out, self.record, self.label = out, record, label
        self.rows: list[dict[str, Any]] = []
        self.failed_write: str | None = None
        self.failed_record: str | None = None

    def add(self, key: str, row: dict[str, Any]) -> None:
        # when the executor had the row: the spacing of these is the cost per cell, whatever ran it
        row.setdefault("finished_at", datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        try:  # the profile's file first: the row (store and file) points to it
            store_profile(self.out if self.failed_write is None else None, row)
        except OSError as exc:
            row.pop(PROFILE_KEY, None)
            warn(f"{key}: cannot write its profile: {exc.strerror}; the row keeps its summary")
        if self.record is not None and (err := self.record(row, row.get(samples.SAMPLES_KEY))):
            self.failed_record = err
            warn(f"{err}; measuring goes on" + (f", rows go to {self.out}" if self.out else ""))
        if self.out is not None and self.failed_write is None:
            try:  # first the samples, then the row pointing to them: both or neither
                samples.write_row(self.out, row, append_row)
            except (OSError, CnnbenchError) as exc:  # keep measuring; print every row
                self.failed_write = f"cannot write {self.out}: {first_line(exc)}"
                warn(f"{self.failed_write}; the rows are printed instead")
        row.pop(samples.SAMPLES_KEY, None)
        self.rows.append(row)
        if row.get("error"):
            note(f"{self.label}: {key}: {row['error']}")
        elif not row.get("valid"):
            warn(f"{key}: invalid: {row.get('invalid_reason')}")
        if row.get("int8_warning"):
            warn(f"{key}: {row['int8_warning']}")

    def interrupted(self) -> None:
        where = f" are in {self.out}" if self.out is not None else " were measured"
        note(f"{self.label}: interrupted; {len(self.rows)} finished row(s) of this run{where}")

    def finish(self) -> list[dict[str, Any]]:
        rows = self.rows
        if self.failed_write is not None:
            raise ResultsWriteError(f"{self.failed_write}; {len(rows)} row(s) printed above", rows)
        if self.failed_record is not None:
            where = f"they are in {self.out}" if self.out is not None else "they are printed above"
            raise ResultsWriteError(f"{self.failed_record}; {where}", rows)
        return rows


class CellRunner:
    """Measures one cell: in a fresh process (``isolated``) or in this one.

    A cell whose runtime is missing here becomes an error row without starting anything.
    Isolated, the ONNX file of each (model, precision) is prepared once, in a process of its
    own, before the cells that load it; a crash, kill or timeout becomes that cell's error row.
    """

    def __init__(self, *, isolated: bool, timeout_s: float) -> None:
        self.isolated = isolated
        self.timeout_s = timeout_s
        self._prepared: dict[tuple[str, str, Int8Recipe | str], dict[str, Any]] = {}
        self._runtime: dict[tuple[str, str, str], str | None] = {}
        self._facts: dict[str, dict[str, Any]] = {}
        self._peaks: set[tuple[str, str]] = set()
        #: seconds the launcher spent on the current cell's behalf (facts, peak, prepare)
        self._spent: dict[str, float] = {}

    def __call__(self, spec: CellSpec) -> dict[str, Any]:
        rt = (spec.engine, spec.device, spec.precision)
        if rt not in self._runtime:
            try:
                check_runtime(*rt)
                self._runtime[rt] = None
            except CnnbenchError as exc:
                self._runtime[rt] = error_text(exc)
        if self._runtime[rt]:
            return error_row(spec, str(self._runtime[rt]))
        if not self.isolated:
            return run_cell_safe(spec)
        self._spent = {}
        ready = self.prepare(spec)
        if isinstance(ready, dict):
            return ready
        t0 = time.perf_counter()
        row = run_isolated(ready, self.timeout_s)
        # where the cell's time went before and around its measurement (tools/cold_start.py)
        row["cell_process_s"] = round(time.perf_counter() - t0, 3)
        row.update({f"launch_{k}_s": round(v, 3) for k, v in self._spent.items()})
        return row

    def prepare(self, spec: CellSpec, *, peak: bool = True) -> CellSpec | dict[str, Any]:
        """What the measured process should not do itself, done once per model / artifact:
        the analysis (params, MACs), the peak microbenchmark (``peak``: on this machine) and
        the export; the cell ready to measure, or its error row."""
        clock = time.perf_counter
        t0 = clock()
        if spec.model not in self._facts:
            self._facts[spec.model] = model_facts(spec.model)
        self._spent["facts"] = clock() - t0
        peak_key = (spec.device, spec.precision)
        t0 = clock()
        if peak and spec.engine != "null" and peak_key not in self._peaks:  # measured or read once
            peak_isolated(*peak_key, self.timeout_s)  # never here: it would hold GPU memory
            self._peaks.add(peak_key)
        self._spent["peak"] = clock() - t0
        run = replace(spec, facts=self._facts[spec.model])
        if needs_onnx(spec.engine):
            made = spec.int8 if spec.precision.calibrated else spec.fp16_converter
            k = (spec.model, spec.precision, made)
            if k not in self._prepared:
                t0 = clock()
                self._prepared[k] = prepare_isolated(spec, self.timeout_s)
                self._spent["prepare"] = clock() - t0
            info = self._prepared[k]
            if info.get("error"):
                return error_row(spec, f"prepare failed: {info['error']}")
            run = replace(run, onnx_path=info.get("onnx_path"), onnx_sha256=info.get("sha256"))
        return run
