"""``cnnbench serve`` as users meet it: a real uvicorn server on loopback, in its own process,
with a token; jobs through the API; bad uploads; a kill -9 and a restart mid-job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnnbench.bench.results.files import cell_key
from cnnbench.bench.results.store import Store

pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cnnbench[serve]'")
pytest.importorskip("uvicorn", reason="the service needs uvicorn: pip install 'cnnbench[serve]'")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken"
GRID = {"models": ["lenet5"], "engines": ["onnxruntime", "null"], "precisions": ["fp32"],
        "batches": [1], "scenarios": ["offline"],
        "stop": {"warmup_count": 1, "warmup_time": 0, "min_time": 0.2, "max_time": 1}}  # fmt: skip
#: an ONNX model nobody in this project wrote: ZFNet-512 from the ONNX package's test data
ZFNET = Path(__import__("onnx").__file__).parent / "backend/test/data/light/light_zfnet512.onnx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    db: str
    data: Path
    proc: subprocess.Popen[str]

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
             raw: bytes | None = None, ctype: str = "application/json") -> tuple[int, Any]:  # fmt: skip
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                text = res.read().decode()
                status = res.status
        except urllib.error.HTTPError as exc:
            text, status = exc.read().decode(), exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def wait_job(self, job_id: int, timeout: float = 180) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            _, job = self.call("GET", f"/api/jobs/{job_id}")
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not end: {job}")


def _prebuilt_lenet5() -> Path:
    """LeNet-5's verified FP32 artifact, exported once for the suite by the CLI (the folder
    that holds ``lenet5/``)."""
    root = Path(os.environ["HOME"]) / "prebuilt-artifacts"  # the suite's scratch HOME
    if not (root / "lenet5" / "fp32" / "manifest.json").is_file():
        cmd = [sys.executable, "-m", "cnnbench", "export", "lenet5", "--out", str(root)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return root


def start(tmp: Path, db: str, data: Path, *, host: str = "127.0.0.1", token: str | None = TOKEN, cwd: Path | None = None, extra: tuple[str, ...] = (), limit_kb: int | None = None, fresh: bool = False) -> Server:  # fmt: skip
    """The service on a free port. Its artifacts folder starts with LeNet-5's verified FP32
    file, as a service that has run a job before (``fresh``: empty, so the first job exports)."""
    if not fresh:
        dest = (cwd or Path.cwd()) / data / "artifacts" / "lenet5"
        if not dest.exists():
            shutil.copytree(_prebuilt_lenet5() / "lenet5", dest)
    port = _free_port()
    # the session's cache (tests/conftest.py): the matmul peak and the model facts are measured
    # once for the suite, not once per service
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CNNBENCH_TOKEN", None)
    if token:
        env["CNNBENCH_TOKEN"] = token
    cmd = [sys.executable, "-m", "cnnbench", "serve", "--db", db, "--port", str(port),
           "--host", host, "--data", str(data), *extra]  # fmt: skip
    if limit_kb is not None:  # an address-space limit (ulimit -v), as on a small machine
        cmd = ["bash", "-c", f'ulimit -v {limit_kb} && exec "$@"', "limit", *cmd]
    proc = subprocess.Popen(
        cmd,
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    srv = Server(f"http://127.0.0.1:{port}", db, (cwd or Path.cwd()) / data, proc)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if srv.call("GET", "/api/health")[0] == 200:
                return srv
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not start")


def stop(srv: Server, sig: int = signal.SIGINT) -> None:
    if srv.proc.poll() is None:
        srv.proc.send_signal(sig)
        try:
            srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data")
    yield srv
    stop(srv)


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A service with nothing exported yet: its first job exports LeNet-5, the whole path."""
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data", fresh=True)
    yield srv
    stop(srv)


def _multipart(grid: dict[str, Any], payload: bytes, filename: str = "m.onnx") -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"grid\"\r\n\r\n{json.dumps(grid)}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{b}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={b}"


def test_a_job_runs_and_its_rows_come_back_and_writes_need_the_token(fresh_server: Server) -> None:
    server = fresh_server
    status, err = server.call("POST", "/api/jobs", GRID, token=None)
    assert status == 401 and "Bearer" in err["error"]
    status, err = server.call("POST", "/api/jobs", GRID, token="wrong")
    assert status == 401
    status, job = server.call("POST", "/api/jobs", GRID)
    assert status == 201 and job["state"] == "queued" and job["cells_total"] == 2
    done = server.wait_job(job["id"])
    assert done["state"] == "done" and done["cells_done"] == 2 and done["errors"] == 0, done
    status, rows = server.call("GET", f"/api/results?job={job['id']}")
    assert status == 200 and sorted(r["engine"] for r in rows) == ["null", "onnxruntime"]
    assert all(r["run_id"] == done["run_id"] for r in rows)
    status, text = server.call("GET", f"/api/results?job={job['id']}&format=csv")
    assert status == 200 and text.splitlines()[0].startswith("model,engine,precision")
    status, cmp = server.call("GET", f"/api/compare?base=job:{job['id']}&new=job:{job['id']}")
    assert status == 200 and cmp["regressions"] == 0 and len(cmp["rows"]) == 4
    status, jobs = server.call("GET", "/api/jobs")
    assert status == 200 and [j["id"] for j in jobs] == [job["id"]]
    status, _ = server.call("DELETE", f"/api/jobs/{job['id']}", token=None)
    assert status == 401
    sha = next(r["artifact_sha256"] for r in rows if r["engine"] == "onnxruntime")
    status, manifest = server.call("GET", f"/api/artifacts/{sha}")
    assert status == 200 and manifest["model"] == "lenet5" and manifest["onnx"]["sha256"] == sha
    status, _ = server.call("GET", "/docs")
    assert status == 200


def test_bad_input_is_a_one_line_4xx_and_stores_nothing(server: Server) -> None:
    body, ctype = _multipart({**GRID, "models": ["upload"]}, os.urandom(5 * 2**20))
    status, err = server.call("POST", "/api/jobs", raw=body, ctype=ctype)
    assert 400 <= status < 500 and "not an ONNX model" in err["error"], err
    assert list((server.data / "uploads").iterdir()) == []  # nothing kept
    for grid, words in (
        ({**GRID, "artifacts": "/etc"}, "not accepted"),
        ({**GRID, "models": ["../../x.onnx"]}, "not a zoo name"),
        ({**GRID, "calib_data": "/data/imagenet"}, "calib_data"),
        ({**GRID, "engines": ["nope"]}, "engines"),
        ({**GRID, "batches": [0]}, "batch"),
        ("[1, 2]", "JSON object"),
    ):
        status, err = server.call("POST", "/api/jobs", grid)
        assert status == 422 and words in err["error"] and "\n" not in err["error"], (grid, err)
    status, jobs = server.call("GET", "/api/jobs")
    assert jobs == []
    status, err = server.call("GET", "/api/artifacts/../../etc/passwd")
    assert status in (404, 422)


@pytest.mark.skipif(not ZFNET.is_file(), reason=f"{ZFNET} is not installed here")
def test_an_uploaded_onnx_file_nobody_here_wrote_runs_to_done(server: Server) -> None:
    grid = {**GRID, "models": ["upload"], "engines": ["onnxruntime"]}
    body, ctype = _multipart(grid, ZFNET.read_bytes(), filename="../../zfnet.onnx")
    status, job = server.call("POST", "/api/jobs", raw=body, ctype=ctype)
    assert status == 201, job
    stored = list((server.data / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{job['upload_sha256']}.onnx"]  # by content, not name
    done = server.wait_job(job["id"])
    assert done["state"] == "done" and done["errors"] == 0, done
    _, rows = server.call("GET", f"/api/results?job={job['id']}")
    assert rows[0]["model"] == f"upload-{job['upload_sha256'][:12]}" and rows[0]["macs"] > 0


def test_an_upload_runs_with_a_relative_data_folder(tmp_path: Path) -> None:
    """--data given relative to where the service starts (as docs/service.md shows): the
    uploaded file's stored path must still be found by the job (it was looked for under the
    artifacts folder)."""
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", Path("serve-data"), cwd=tmp_path)
    try:
        grid = {**GRID, "models": ["upload"], "engines": ["null"]}
        body, ctype = _multipart(grid, ZFNET.read_bytes(), filename="zfnet.onnx")
        status, job = srv.call("POST", "/api/jobs", raw=body, ctype=ctype)
        assert status == 201, job
        assert srv.wait_job(job["id"])["state"] == "done"
    finally:
        stop(srv)


@pytest.mark.slow  # a process killed mid-run and recovered: tens of seconds
def test_a_killed_service_resumes_its_job_and_records_each_cell_once(tmp_path: Path) -> None:
    db, data = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data"
    srv = start(tmp_path, db, data)
    grid = {**GRID, "engines": ["null"], "batches": [1, 2, 3, 4, 5, 6],
            "stop": {"warmup_count": 1, "warmup_time": 0, "min_time": 1.0, "max_time": 2}}  # fmt: skip
    _, job = srv.call("POST", "/api/jobs", grid)
    end = time.monotonic() + 120
    while srv.call("GET", f"/api/jobs/{job['id']}")[1]["cells_done"] < 2:
        assert time.monotonic() < end
        time.sleep(0.2)
    stop(srv, signal.SIGKILL)  # the service dies; its sweep dies with it
    srv = start(tmp_path, db, data)
    try:
        done = srv.wait_job(job["id"])
    finally:
        stop(srv)
    assert done["state"] == "done" and done["cells_done"] == 6 and done["attempts"] == 2, done
    with Store.open(db) as store:
        cells = store.cells(run_ids=[done["run_id"]])
    keys = [cell_key(r) for r in cells]
    assert len(keys) == len(set(keys)) == 6  # each cell recorded exactly once


def test_beyond_loopback_without_a_token_it_refuses_to_start(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cnnbench", "serve", "--host", "0.0.0.0", "--db",
         f"sqlite:///{tmp_path / 's.db'}", "--data", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "CNNBENCH_TOKEN"}, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert res.returncode == 2 and "CNNBENCH_TOKEN" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_reads_while_a_job_runs_have_no_errors(server: Server) -> None:
    """A bounded loopback load (400 GETs from 8 threads) while a job measures: every read
    answers 2xx (its latencies are the load script's to report, not a test's to time)."""
    import concurrent.futures

    grid = {**GRID, "engines": ["null"], "batches": [1, 2, 3],
            "stop": {"warmup_count": 1, "warmup_time": 0, "min_time": 1.0, "max_time": 2}}  # fmt: skip
    _, job = server.call("POST", "/api/jobs", grid)
    while server.call("GET", f"/api/jobs/{job['id']}")[1]["state"] != "running":
        time.sleep(0.1)
    paths = [f"/api/jobs/{job['id']}", "/api/jobs", f"/api/results?job={job['id']}", "/"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: server.call("GET", paths[i % 4])[0], range(400)))
    assert statuses.count(200) == 400
    assert server.call("GET", f"/api/jobs/{job['id']}")[1]["state"] == "running"
    assert server.wait_job(job["id"])["state"] == "done"
