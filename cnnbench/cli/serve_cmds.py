"""Command: serve (the HTTP API, the job queue and the dashboard)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from cnnbench import limits
from cnnbench.bench.results.store_url import data_dir
from cnnbench.cli.common import cli
from cnnbench.cli.output_options import db_option
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError

TOKEN_ENV = "CNNBENCH_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
          "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30}  # fmt: skip


def parse_size(text: str) -> int:
    """``2GiB``, ``500MB``, ``1048576`` -> bytes, within :data:`cnnbench.limits.BYTES`;
    one-line error otherwise."""
    m = _SIZE.match(text) if len(text) <= 40 else None
    if not m or float(m.group(1)) <= 0:
        raise InvalidInputError(f"--max-upload {text!r}: give a size like 2GiB, 500MB or 1048576")
    size = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if size > limits.BYTES.hi:
        raise InvalidInputError(
            f"--max-upload {text!r}: at most {int(limits.BYTES.hi)} bytes (1 TiB)"
        )
    return max(1, int(size))


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
    help="How jobs run: local (one cell after another) or ray (a cell per device).",
)  # fmt: skip
@click.option("--ray-address", default=None, help="An existing Ray cluster for --executor ray.")
@click.option(
    "--data", type=click.Path(file_okay=False), default=None,
    help="Folder for uploads, job files, artifacts and figures (default: "
    "~/.local/share/cnnbench/service).",
)  # fmt: skip
@click.option("--max-upload", default="2GiB", show_default=True, help="Largest ONNX upload.")
@click.option(
    "--private", is_flag=True,
    help=f"Reads need the token too (all but /api/health); needs {TOKEN_ENV}.",
)  # fmt: skip
@click.option(
    "--hold-jobs", is_flag=True,
    help="Accept and queue jobs but run none (a maintenance window, or tests of the API).",
)  # fmt: skip
def serve(**o: Any) -> None:
    """The benchmark service: an HTTP API (OpenAPI docs at /docs), a job queue in the results
    store, and a dashboard (jobs, results, history, compare, accuracy vs operations).

    \b
    Write endpoints (POST/DELETE /api/jobs) need Authorization: Bearer $CNNBENCH_TOKEN when
    the variable is set; listening beyond loopback needs it set; --private puts reads behind
    it too. Reads without the token show no server paths. Every number is bounded and bodies
    are size-limited (GET /api/limits); SIGTERM stops the service within 5 s. Jobs run as
    `cnnbench sweep` in a child process, never in the service; a restart resumes queued and
    interrupted jobs.
    """
    token = os.environ.get(TOKEN_ENV) or None
    if o["host"] not in LOOPBACK and token is None:
        raise InvalidInputError(
            f"--host {o['host']} is beyond loopback: set {TOKEN_ENV} so that writes need a token"
        )
    if o["private"] and token is None:
        raise InvalidInputError(f"--private puts reads behind the token: set {TOKEN_ENV}")
    limit = parse_size(o["max_upload"])
    try:
        from cnnbench.serve.app import Settings, create_app, serve_forever
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"cnnbench serve needs {exc.name}: pip install 'cnnbench[serve]'"
        ) from None
    data = Path(o["data"]) if o["data"] else data_dir() / "service"
    settings = Settings(
        data=data, db_url=o["db"], token=token, max_upload=limit, executor=o["executor"],
        ray_address=o["ray_address"], run_jobs=not o["hold_jobs"], private=o["private"],
    )  # fmt: skip
    app = create_app(settings)
    click.echo(f"cnnbench serve: http://{o['host']}:{o['port']}/ (API docs at /docs)", err=True)
    serve_forever(app, host=o["host"], port=o["port"])
