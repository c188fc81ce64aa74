"""The bounds of every number a user gives, in one table, and the memory this machine has free.

Each number that enters (a flag, a sweep file's key, a request's field or query parameter) is
checked against its :class:`Bound` where it enters: the CLI's click types
(:mod:`cnnbench.cli.flags`), the sweep/request loader (:mod:`bench.run.sweep_config`), the
service's request models. A value out of range is one line naming it, never an overflow deep
inside (a batch past 64 bits once reached SQLite; a ``repeats: 10**12`` built a list of cells).

The ranges are generous for real use and small enough that nothing derived from them (cells of
a grid, samples of a cell, an SQL id) can overflow or run for ever.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cnnbench.errors import InvalidInputError

#: SQLite's and PostgreSQL's largest BIGINT: every id, limit and offset fits in one
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Bound:
    """A closed (or, at ``lo`` with ``lo_open``, half-open) range of integers or finite numbers."""

    what: str
    lo: float
    hi: float
    integer: bool = True
    #: the low end itself is refused (a timeout of 0 s)
    lo_open: bool = False

    def describe(self) -> str:
        lo = f"> {_num(self.lo)}" if self.lo_open else f">= {_num(self.lo)}"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} {lo} and <= {_num(self.hi)}"

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` as an int (or a finite float), or a one-line InvalidInputError naming
        ``name`` (default: what the bound is of). Text is parsed; booleans are refused."""
        label = name or self.what
        v = self._parse(value, label)
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        if not (low_ok and v <= self.hi):
            raise InvalidInputError(f"{label} must be {self.describe()}, got {_shown(value)}")
        return v

    def _parse(self, value: Any, label: str) -> Any:
        bad = InvalidInputError(f"{label} must be {self.describe()}, got {_shown(value)}")
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            text = value.strip()
            if len(text) > 40:  # no number we accept is longer; int() of a huge text is slow
                raise bad
            try:
                value = int(text) if self.integer else float(text)
            except ValueError:
                raise bad from None
        if self.integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise bad
            return value
        if not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, int) and abs(value) > 2**63:
            raise bad
        f = float(value)
        if not math.isfinite(f):
            raise bad
        return f


def _num(x: float) -> str:
    return f"{int(x):,}".replace(",", "_") if float(x).is_integer() else f"{x:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the table -----------------------------------------------------------------------------
BATCH = Bound("batch", 1, 65_536)
REPEATS = Bound("repeats", 1, 100)
THREADS = Bound("threads", 1, 1_024)
SEED = Bound("seed", 0, 2**32 - 1)
CALIB_SAMPLES = Bound("calibration samples", 1, 100_000)
WARMUP_COUNT = Bound("warmup_count", 0, 1_000_000)
MIN_COUNT = Bound("min_count", 1, 10_000_000)
#: the stop rule's times, the peak search's budget (s)
SECONDS = Bound("seconds", 0, 86_400, integer=False)
#: a cell's timeout (s): a week at most, never 0, never infinite
TIMEOUT_S = Bound("timeout_s", 0, 7 * 86_400, integer=False, lo_open=True)
QPS = Bound("target_qps", 0, 1_000_000, integer=False, lo_open=True)
MILLISECONDS = Bound("milliseconds", 0, 3_600_000, integer=False)
CI_TARGET = Bound("ci_target", 0, 100, integer=False, lo_open=True)
#: a deployment decision's constraints (recommend, report, GET /api/recommend)
LATENCY_MS = Bound("latency (ms)", 0, 3_600_000, integer=False, lo_open=True)
THROUGHPUT = Bound("throughput (img/s)", 0, 1e12, integer=False)
MEMORY_MB = Bound("memory (MB)", 0, 2**30, integer=False, lo_open=True)
TOP1 = Bound("top-1 (%)", 0, 100, integer=False)
#: a per-layer profile: its queries, and the layers a table shows (0: all)
QUERIES = Bound("queries", 1, 10_000)
SHOWN_LAYERS = Bound("top", 0, 100_000)
#: the CLI's other numbers: training, export, the parity gate, TensorRT, the service
EPOCHS = Bound("epochs", 1, 10_000)
LEARNING_RATE = Bound("learning rate", 0, 10, integer=False, lo_open=True)
WORKERS = Bound("workers", 1, 1_024)
#: wide: the exporter names the opsets it can write (export.onnx_export.resolve_opset)
OPSET = Bound("opset", 1, 1_000)
#: a square input's side (``inspect --input-size``)
INPUT_SIDE = Bound("input size", 1, 16_384)
GATE_SAMPLES = Bound("samples", 1, 10_000)
RELATIVE_ERROR = Bound("rtol", 0, 1e9, integer=False)
FRACTION = Bound("fraction", 0, 1, integer=False)
COSINE = Bound("cosine", -1, 1, integer=False)
WORKSPACE_MB = Bound("workspace (MB)", 1, 2**24)
#: ids of runs, jobs and cells (what the store's BIGINT holds)
ID = Bound("id", 1, INT64_MAX)
#: a page of a read: at most this many rows, default :data:`PAGE_DEFAULT`
LIMIT = Bound("limit", 1, 1_000)
PAGE_DEFAULT = 100
OFFSET = Bound("offset", 0, INT64_MAX)
#: a count of rows the CLI may ask the store for
ROWS = Bound("limit", 1, INT64_MAX)
#: sizes in bytes (an upload limit)
BYTES = Bound("size", 1, 2**40)
#: a grid's cells (after repeats), and the entries of one of its lists
GRID_CELLS = 10_000
GRID_LIST_ITEMS = 1_000
#: a sweep file's or a request's size in bytes: read whole only below this
CONFIG_BYTES = 1 << 20

# ---- memory --------------------------------------------------------------------------------


def available_memory() -> tuple[int, str]:
    """Bytes a new process may still allocate here, and what bounds it: the least of the
    kernel's MemAvailable, the cgroup's memory.max less its use, and this process's address
    space limit (``ulimit -v``) less what it maps already."""
    found = [(int(psutil.virtual_memory().available), "available memory")]
    cg = _cgroup_free()
    if cg is not None:
        found.append((cg, "the cgroup's memory.max"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = int(psutil.Process().memory_info().vms)
        found.append((max(0, soft - used), "the address-space limit (ulimit -v)"))
    return min(found)


def _cgroup_free() -> int | None:
    base = Path("/sys/fs/cgroup")
    try:
        text = (base / "memory.max").read_text().strip()
        if text == "max":
            return None
        return max(0, int(text) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def gib(nbytes: float) -> str:
    """Bytes as GiB for messages (``12.3 GiB``), or MiB below 1 GiB."""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"
