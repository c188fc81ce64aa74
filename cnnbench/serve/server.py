"""Running the app under uvicorn so that SIGTERM (or Ctrl-C) is honoured within seconds,
whatever a request is doing.

uvicorn stops gracefully: it stops accepting, waits for the requests in flight, runs the
app's shutdown (the job runner sends its sweep Ctrl-C; the job is resumed at the next start).
Its wait for requests is capped here (:data:`GRACE_S`), and a watchdog started by the signal
ends the process after :data:`STOP_S` in any case: a request's worker thread that is still
busy (a grid being validated, a file being checked) cannot keep the process alive, and the
sweep a job runs dies with it (its children die with their parent).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import FrameType
from typing import Any

import uvicorn

#: seconds uvicorn waits for requests in flight after a stop signal (an int: its type)
GRACE_S = 2
#: seconds after the first stop signal when the process ends, whatever still runs
STOP_S = 4.0


class _Server(uvicorn.Server):
    """uvicorn's server, with a watchdog armed by the first stop signal."""

    _armed = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._armed:
            self._armed = True
            timer = threading.Timer(STOP_S, _stop_now)
            timer.daemon = True
            timer.start()
        super().handle_exit(sig, frame)


def _stop_now() -> None:
    print("cnnbench serve: stopped with work still running (it resumes at the next start)",
          file=sys.stderr, flush=True)  # fmt: skip
    os._exit(0)


class OneLine(logging.Filter):
    """A log record with an exception (a request cancelled at shutdown) as one line: the
    message and the exception's type and first line, never a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
            record.msg = (
                f"{record.getMessage()}: {type(exc).__name__}{': ' + first if first else ''}"
            )
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def serve_forever(app: Any, *, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT; gone within :data:`STOP_S` s."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_S
    )
    for name in ("uvicorn.error", "uvicorn.asgi"):
        logging.getLogger(name).addFilter(OneLine())
    _Server(config).run()
