"""Progress for long work, on stderr: a rich bar on a terminal, plain lines elsewhere (CI logs)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def _tty() -> bool:
    return sys.stderr.isatty()


def note(message: str) -> None:
    """One status line on stderr."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A loud warning line on stderr."""
    print(f"cnnbench: WARNING: {message}", file=sys.stderr, flush=True)


class Steps:
    """Named, timed steps: ``with steps.step("export"): ...``; durations land in ``timings``.

    A step announces itself once it has run for ``SLOW_S`` (so a long one shows it is under
    way) and says when it is done; a step that fails quickly prints nothing, leaving the
    error's one line alone on stderr.
    """

    SLOW_S = 0.5

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.index = 0
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.index += 1
        head = f"[{self.label} {self.index}/{self.total}] {name}"
        timer = threading.Timer(self.SLOW_S, note, args=(f"{head} ...",))
        timer.daemon = True
        timer.start()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            timer.cancel()
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 4)
        note(f"{head} done in {dt:.2f}s")


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
