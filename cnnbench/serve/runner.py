"""The job runner: takes queued jobs one at a time and runs each as ``cnnbench sweep``.

The service never measures in its own process: a job is a sweep in a child process (which
runs each cell in a process of its own, or as Ray tasks with ``--executor ray``), writing to
``jobs/<id>/results.csv`` and recording into the store. The child dies with the service
(``host.die_with_parent``); the next start finds the job ``running``, queues it again and
resumes the sweep: finished cells are kept, and each cell is recorded once. Cancelling sends
the sweep Ctrl-C, which keeps every finished row. One job's failure is that job's state;
the runner goes on with the next.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from cnnbench.bench.results.files import read_rows
from cnnbench.bench.run.local import run_id_of
from cnnbench.errors import CnnbenchError, first_line
from cnnbench.host import child_env
from cnnbench.serve.jobs import CANCELLED, DONE, FAILED, JobQueue

POLL_S = 0.5


def job_folder(data: Path, job_id: int) -> Path:
    return data / "jobs" / str(int(job_id))


class JobRunner:
    """A thread that runs the queue's jobs, one after another."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        data: Path,
        db_url: str,
        executor: str = "local",
        ray_address: str | None = None,
    ) -> None:
        self.queue, self.data, self.db_url = queue, data, db_url
        self.executor, self.ray_address = executor, ray_address
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cnnbench-jobs", daemon=True)
        self._proc: subprocess.Popen[bytes] | None = None
        #: per job, the progress last written to the store
        self._shown: dict[int, tuple[int, int, int | None]] = {}

    def start(self) -> list[int]:
        """Queue again what a stopped service left running, then start; the resumed ids."""
        resumed = self.queue.requeue_interrupted()
        self._thread.start()
        return resumed

    def stop(self, timeout: float = 2.0) -> None:
        """Stop taking jobs; a running sweep gets Ctrl-C and is resumed at the next start.
        Waits ``timeout`` s at most (the service's stop is bounded)."""
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.queue.claim()
            except Exception:  # the store is busy or away for a moment: try again
                job = None
            if job is None:
                self._stop.wait(POLL_S)
                continue
            try:
                self._run(job)
            except Exception as exc:  # one job's failure never stops the queue
                self.queue.update(int(job["id"]), state=FAILED, message=first_line(exc))

    def _command(self, folder: Path) -> list[str]:
        cmd = [sys.executable, "-m", "cnnbench", "sweep", str(folder / "config.yaml"),
               "--out", str(folder / "results.csv"), "--resume", "--db", self.db_url,
               "--executor", self.executor, "--format", "json"]  # fmt: skip
        if self.ray_address:
            cmd += ["--ray-address", self.ray_address]
        return cmd

    def _run(self, job: dict[str, Any]) -> None:
        job_id = int(job["id"])
        folder = job_folder(self.data, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(job["grid"], sort_keys=False))
        out, log = folder / "results.csv", folder / "sweep.log"
        with open(log, "ab") as err:
            self._proc = proc = subprocess.Popen(
                self._command(folder), env=child_env(), cwd=folder,
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )  # fmt: skip
            cancelled = False
            while proc.poll() is None:
                if self._stop.wait(POLL_S):
                    # stop() sent Ctrl-C: the job stays running, to be resumed
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
                    return
                self._progress(job_id, out)
                current = self.queue.get(job_id)
                if current is not None and current["cancel_requested"] and not cancelled:
                    cancelled = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGINT)
        self._proc = None
        done, errors, run_id = self._progress(job_id, out)
        if cancelled:
            self.queue.update(job_id, state=CANCELLED, message=f"cancelled after {done} cell(s)")
        elif proc.returncode in (0, 1) and done >= int(job["cells_total"] or 0):
            msg = f"{errors} of {done} cell(s) failed" if errors else None
            self.queue.update(job_id, state=DONE, message=msg)
        else:
            self.queue.update(
                job_id, state=FAILED, message=_last_line(log) or f"sweep exited {proc.returncode}"
            )

    def _progress(self, job_id: int, out: Path) -> tuple[int, int, int | None]:
        """(cells done, error rows, the store's run id), as the results file says now."""
        try:
            rows = read_rows(out) if out.exists() else []
        except CnnbenchError:
            return 0, 0, None
        now = (len(rows), sum(1 for r in rows if r.get("error")), run_id_of(rows))
        if self._shown.get(job_id) != now:  # a write only when a cell has finished
            self.queue.update(job_id, cells_done=now[0], errors=now[1], run_id=now[2])
            self._shown[job_id] = now
        return now


def _last_line(log: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def wait_until_idle(queue: JobQueue, timeout: float = 60.0) -> None:
    """For tests and scripts: until no job is queued or running (or the timeout)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(j["state"] not in ("queued", "running") for j in queue.list_jobs()):
            return
        time.sleep(0.2)
