"""Progress for long work, on stderr: a rich bar on a terminal, plain lines elsewhere (CI logs)."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cnnbench.artifacts import atomic_write_text, cache_dir

T = TypeVar("T")


def _tty() -> bool:
    return sys.stderr.isatty()


_pinned: list[TextIO] = []


@contextlib.contextmanager
def keep_stderr() -> Iterator[None]:
    """Our status lines keep going to the current stderr while the code inside redirects
    ``sys.stderr`` (to silence an exporter's chatter), so progress still shows."""
    _pinned.append(sys.stderr)
    try:
        yield
    finally:
        _pinned.pop()


def _err() -> TextIO:
    return _pinned[-1] if _pinned else sys.stderr


def note(message: str) -> None:
    """One status line on stderr."""
    print(message, file=_err(), flush=True)


def warn(message: str) -> None:
    """A loud warning line on stderr."""
    print(f"cnnbench: WARNING: {message}", file=_err(), flush=True)


class StepHistory:
    """How long each step of a kind of work took before, to estimate how long it takes now.

    Durations go to ``step-times.jsonl`` in the cache (one JSON line per finished step). The
    estimate for a step is the median of its last runs on the same subject (e.g. the same
    model); for a subject never seen it scales the median seconds per unit of ``size`` (e.g.
    parameters) of the others; with no history it is None. A history that cannot be read or
    written costs only the estimate, never the work.
    """

    KEEP = 4000  # lines; older ones are dropped when the file grows past twice this
    FILE = "step-times.jsonl"

    def __init__(
        self, work: str, subject: str, size: float | None = None, path: Path | None = None
    ) -> None:
        self.work, self.subject, self.size = work, subject, size
        self.path = path if path is not None else cache_dir() / self.FILE
        self._records: list[dict[str, Any]] | None = None

    def _load(self) -> list[dict[str, Any]]:
        if self._records is None:
            self._records = []
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError):
                        rec = json.loads(line)
                        if isinstance(rec, dict) and rec.get("work") == self.work:
                            self._records.append(rec)
        return self._records

    def estimate(self, step: str) -> float | None:
        recs = [r for r in self._load() if r.get("step") == step and _pos(r.get("seconds"))]
        same = [float(r["seconds"]) for r in recs if r.get("subject") == self.subject]
        if same:
            return statistics.median(same[-5:])
        if self.size and self.size > 0:
            rates = [float(r["seconds"]) / float(r["size"]) for r in recs if _pos(r.get("size"))]
            if rates:
                return statistics.median(rates[-20:]) * self.size
        return None

    def record(self, step: str, seconds: float) -> None:
        rec = {"work": self.work, "step": step, "subject": self.subject, "seconds": seconds}
        if self.size:
            rec["size"] = self.size
        self._load().append(rec)
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(rec) + "\n").encode())
            finally:
                os.close(fd)
            if self.path.stat().st_size > self.KEEP * 2 * 120:  # ~120 bytes a line
                lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
                if len(lines) > 2 * self.KEEP:
                    atomic_write_text(self.path, "".join(lines[-self.KEEP :]))


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _secs(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Steps:
    """Named, timed steps: ``with steps.step("export"): ...``; durations land in ``timings``.

    A step announces itself once it has run for ``SLOW_S`` (so a long one shows it is under
    way), then prints a line every ``HEARTBEAT_S`` with its elapsed time and an ETA, and says
    when it is done; a step that fails quickly prints nothing, leaving the error's one line
    alone on stderr. ETAs come from ``history`` (earlier runs of the same work): the current
    step's estimate less its elapsed time, plus the estimates of the steps in ``plan`` that are
    still to come. Without history a step says so instead of guessing.
    """

    SLOW_S = 0.5
    HEARTBEAT_S = 10.0

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        plan: Sequence[str] = (),
        history: StepHistory | None = None,
    ) -> None:
        self.label = label
        self.plan = list(plan)
        self.total = total if total is not None else len(self.plan)
        self.index = 0
        self.history = history
        self.timings: dict[str, float] = {}

    def skip(self, name: str) -> None:
        """``name`` will not run this time: drop it from the plan and the count."""
        if name in self.plan:
            self.plan.remove(name)
        self.total -= 1

    def _estimate(self, name: str) -> float | None:
        return self.history.estimate(name) if self.history is not None else None

    def _later(self, name: str) -> list[str]:
        """The planned steps after ``name`` (none when ``name`` is not in the plan)."""
        return self.plan[self.plan.index(name) + 1 :] if name in self.plan else []

    def eta(self, name: str, elapsed: float) -> float | None:
        """Seconds left for the whole job while step ``name`` has run ``elapsed`` seconds."""
        here = self._estimate(name)
        if here is None:
            return None
        rest = [self._estimate(n) for n in self._later(name)]
        return max(here - elapsed, 0.0) + sum(r for r in rest if r is not None)

    def _eta_text(self, name: str, elapsed: float) -> str:
        if self.history is None:
            return ""
        eta = self.eta(name, elapsed)
        if eta is None:
            return ", no ETA yet (no earlier run on this machine)"
        expected = self._estimate(name) or 0.0
        if elapsed > expected * 1.5 and elapsed > 2:
            return f", eta unknown (longer than the {_secs(expected)} it took before)"
        return f", eta {_secs(eta)}"

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.index += 1
        head = f"[{self.label} {self.index}/{self.total}] {name}"
        t0 = time.perf_counter()
        done = threading.Event()

        def beat() -> None:
            if done.wait(self.SLOW_S):
                return
            note(f"{head} ...{self._eta_text(name, time.perf_counter() - t0)}")
            while not done.wait(self.HEARTBEAT_S):
                el = time.perf_counter() - t0
                note(f"{head}: {_secs(el)} elapsed{self._eta_text(name, el)}")

        thread = threading.Thread(target=beat, name=f"progress {name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 4)
        if self.history is not None:
            self.history.record(name, dt)
        rest = self._rest_text(name)
        note(f"{head} done in {dt:.2f}s{rest}")

    def _rest_text(self, name: str) -> str:
        if self.history is None or name not in self.plan:
            return ""
        rest = [self._estimate(n) for n in self._later(name)]
        if not rest:
            return ""
        if any(r is None for r in rest):
            return ""
        return f", eta {_secs(sum(r for r in rest if r is not None))} for the rest"


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate with a progress bar and ETA (rich on a TTY, a line every ~10% otherwise)."""
    seq = items
    n = total if total is not None else (len(seq) if hasattr(seq, "__len__") else None)  # type: ignore[arg-type]
    if _tty():
        cols = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*cols, console=Console(stderr=True), transient=False) as prog:
            task = prog.add_task(description, total=n)
            for item in seq:
                yield item
                prog.advance(task)
        return
    t0 = time.perf_counter()
    step = max(1, (n or 10) // 10)
    for i, item in enumerate(seq, 1):
        yield item
        if n and (i % step == 0 or i == n):
            el = time.perf_counter() - t0
            eta = el / i * (n - i)
            note(f"{description} {i}/{n} elapsed {el:.0f}s eta {eta:.0f}s")
