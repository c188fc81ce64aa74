"""A cell's own processes, and how the launcher starts them: the cell spec in, one result out.

Two steps of a cell run in a process of their own, both started the same way::

    python -m cnnbench.bench.run.child prepare|measure CELL.json RESULT.json

* ``prepare``: the ONNX file the cell's engine loads (export, conversion, calibration; cached),
  once per artifact, so that the measured process need not import torch;
* ``measure``: the cell itself, in a fresh process, so host RSS, peak memory and latency are
  the cell's alone. Its samples go beside the result (``RESULT.npy``), written first.

``CELL.json`` is the versioned :class:`~bench.run.cell_spec.CellSpec` document; nothing else
travels on the command line or in the environment (a user's model is in the spec). A crash,
kill or timeout of either becomes one line for the cell's error row.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from cnnbench.artifacts import atomic_write_text
from cnnbench.bench.measure.peak import get_peak
from cnnbench.bench.measure.samples import SAMPLES_KEY
from cnnbench.bench.run.cell import error_row, run_cell_safe
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.prepare import ensure_onnx
from cnnbench.bench.run.scratch import scratch
from cnnbench.errors import CnnbenchError, first_line
from cnnbench.host import child_env, die_with_parent
from cnnbench.precision import Precision
from cnnbench.progress import warn

STEPS = ("prepare", "measure")


def run_isolated(spec: CellSpec, timeout_s: float) -> dict[str, Any]:
    """Measure one cell in a fresh process; a crash, kill or timeout becomes an error row."""
    with scratch("cnnbench-cell-") as tmp:
        result, problem = _spawn("measure", spec, tmp, timeout_s)
        if problem is not None:
            return error_row(spec, problem)
        row = dict(json.loads(result.read_text(encoding="utf-8")))
        if result.with_suffix(".npy").is_file():
            row[SAMPLES_KEY] = np.load(result.with_suffix(".npy"), allow_pickle=False)
        return row


def prepare_isolated(spec: CellSpec, timeout_s: float) -> dict[str, Any]:
    """The cell's ONNX file, prepared in a process of its own: ``onnx_path`` and ``sha256``,
    or ``error``."""
    with scratch("cnnbench-prepare-") as tmp:
        result, problem = _spawn("prepare", spec, tmp, timeout_s)
        if problem is not None:
            return {"error": problem}
        return dict(json.loads(result.read_text(encoding="utf-8")))


def _spawn(step: str, spec: CellSpec, tmp: Path, timeout_s: float) -> tuple[Path, str | None]:
    """Run ``step`` on ``spec`` in a child; its result file, or why there is none."""
    cell, result, errlog = tmp / "cell.json", tmp / "result.json", tmp / "stderr.txt"
    cell.write_text(spec.to_json(), encoding="utf-8")
    cmd = child_command(step, cell, result)
    # its progress and warnings (a cache entry rebuilt, random calibration) reach the user
    with open(errlog, "wb") as err, _Forward(errlog):
        proc = subprocess.Popen(
            cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            if step == "prepare":
                return result, f"prepare timed out after {timeout_s:g}s"
            return result, f"timeout: cell exceeded timeout_s={timeout_s:g}s"
        except BaseException:
            _kill(proc)  # Ctrl-C: stop the child too, then let the sweep end
            raise
    if result.is_file():
        return result, None
    return result, _died(code, _tail(errlog))


def peak_isolated(device: str, precision: Precision, timeout_s: float) -> None:
    """Cache the matmul peak of ``device`` at ``precision`` (``efficiency``'s denominator),
    measured by a process of its own when it is not cached yet. Measured in the launcher, it
    would keep a CUDA context and torch's cached blocks on the GPU for the whole sweep: NVML's
    device-wide figures would count them, and ``--find-max-batch`` would find less room. A
    peak that cannot be measured leaves ``efficiency`` empty, with a warning."""
    if get_peak(device, precision, measure=False) is not None:
        return
    cmd = [sys.executable, "-m", "cnnbench.bench.measure.peak", "--device", device,
           "--precision", str(precision)]  # fmt: skip
    try:
        res = subprocess.run(
            cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=timeout_s, text=True, errors="replace",
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        warn(f"the matmul peak of {device} {precision} took over {timeout_s:g}s; no efficiency")
        return
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        why = " ".join(lines[-1].split())[:200] if lines else f"exit code {res.returncode}"
        warn(
            f"the matmul peak of {device} {precision} could not be measured ({why}); no efficiency"
        )


def child_command(step: str, cell: Path, result: Path) -> list[str]:
    """The command line of a cell's ``step`` process."""
    return [sys.executable, "-m", "cnnbench.bench.run.child", step, str(cell), str(result)]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _died(code: int, stderr_tail: str) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = " (out of memory?)" if -code == signal.SIGKILL else ""
        msg = f"cell process killed by {name}{why}"
    else:
        msg = f"cell process exited with code {code} without a result"
    return f"{msg}: {stderr_tail}" if stderr_tail else msg


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " ".join(lines[-1].split())[:300] if lines else ""


class _Forward:
    """Copies the lines a child writes to its log onto our stderr as they come (its live
    progress and warnings), while the log keeps them for the error row's tail."""

    def __init__(self, path: Path) -> None:
        self.path, self._done = path, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Forward:
        # no thread to be had (a memory limit): the log still keeps it all
        with contextlib.suppress(RuntimeError):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        pos, pending = 0, b""
        while True:
            finished = self._done.wait(0.25)
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            pos += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sys.stderr.write(line.decode(errors="replace") + "\n")
            sys.stderr.flush()
            if finished:
                return


# ---- in the child ----------------------------------------------------------------------------
def _measure(spec: CellSpec, result: Path) -> int:
    # from the process's start to its first own step: the interpreter and the imports
    startup = time.time() - psutil.Process().create_time()
    row = run_cell_safe(spec)
    row["child_startup_s"] = round(startup, 3)
    samples = row.pop(SAMPLES_KEY, None)
    if samples is not None:  # before the row: a row on disk means its samples are there too
        np.save(result.with_suffix(".npy"), np.asarray(samples, dtype=np.int64))
    atomic_write_text(result, json.dumps(row, default=_jsonable) + "\n")
    return 0


def _prepare(spec: CellSpec, result: Path) -> int:
    try:
        path, sha = ensure_onnx(spec)
        out: dict[str, Any] = {"onnx_path": str(path), "sha256": sha}
    except CnnbenchError as exc:
        out = {"error": " ".join(str(exc).split())}
    atomic_write_text(result, json.dumps(out) + "\n")
    return 0 if "error" not in out else 1


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def main(argv: list[str] | None = None) -> int:
    """``prepare|measure CELL.json RESULT.json`` (internal: started by the launcher)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in STEPS:
        print(
            "usage: python -m cnnbench.bench.run.child prepare|measure CELL RESULT", file=sys.stderr
        )
        return 2
    die_with_parent()  # a child never outlives the sweep that started it (a kill -9 of it)
    step, cell, result = args[0], Path(args[1]), Path(args[2])
    try:
        spec = CellSpec.from_json(cell.read_text(encoding="utf-8")).adopt()
    except CnnbenchError as exc:
        print(f"cnnbench: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _measure(spec, result) if step == "measure" else _prepare(spec, result)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback: the launcher makes it the error row
        print(f"{type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
