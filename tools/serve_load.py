"""Reads against the service while a job runs, and the job's overhead against `cnnbench sweep`.

    python tools/serve_load.py --requests 2000 --concurrency 16

Starts ``cnnbench serve`` on a free loopback port with a scratch store, submits a job (LeNet-5
on ONNX Runtime, batches 1-8, offline: long enough to be running throughout), then sends a
bounded number of GETs from ``--concurrency`` threads (each with its own keep-alive
connection), cycling over ``/api/jobs/{id}``, ``/api/jobs``, ``/api/results?job={id}`` and
``/``. Printed: requests, concurrency, errors (non-2xx or failed connections), latency
p50/p99/max, whether the job was running for all of it; then a second job of the same grid, with
no load, submitted -> finished (from the API), against the same grid run by ``cnnbench sweep``
on the same cached artifacts.
Loopback only; nothing is left behind.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

GRID = {"models": ["lenet5"], "engines": ["onnxruntime"], "precisions": ["fp32"],
        "batches": [1, 2, 3, 4, 5, 6, 7, 8], "scenarios": ["offline"],
        "stop": {"warmup_count": 5, "warmup_time": 0.2, "min_time": 2.0, "max_time": 4.0}}  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    res = conn.getresponse()
    return res.status, res.read()


def _once(port: int, path: str) -> bytes:
    """One GET on a connection of its own (the driver's calls are far apart: uvicorn closes
    keep-alive connections idle for 5 s)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        return _get(c, path)[1]
    finally:
        c.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        port = _port()
        env = {**os.environ, "CNNBENCH_TOKEN": "load"}
        srv = subprocess.Popen(
            [sys.executable, "-m", "cnnbench", "serve", "--port", str(port), "--db",
             f"sqlite:///{tmp}/s.db", "--data", f"{tmp}/data"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(300):
                try:
                    if _get(conn, "/api/health")[0] == 200:
                        break
                except OSError:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    time.sleep(0.2)
            conn.request("POST", "/api/jobs", json.dumps(GRID),
                         {"Authorization": "Bearer load", "Content-Type": "application/json"})  # fmt: skip
            job = json.loads(conn.getresponse().read())
            jid = job["id"]
            while json.loads(_once(port, f"/api/jobs/{jid}"))["state"] != "running":
                time.sleep(0.1)
            time.sleep(3.0)  # into the measuring
            paths = [f"/api/jobs/{jid}", "/api/jobs", f"/api/results?job={jid}", "/"]
            lat: list[float] = []
            errors = 0
            lock = threading.Lock()
            counter = iter(range(a.requests))

            def worker() -> None:
                nonlocal errors
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                for i in counter:
                    t0 = time.perf_counter()
                    try:
                        status, _ = _get(c, paths[i % len(paths)])
                        ok = 200 <= status < 300
                    except OSError:
                        ok = False
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    dt = time.perf_counter() - t0
                    with lock:
                        lat.append(dt)
                        errors += not ok

            load0 = os.getloadavg()[0]
            threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            state = json.loads(_once(port, f"/api/jobs/{jid}"))["state"]
            ms = np.array(lat) * 1e3
            print(f"{len(lat)} GETs, concurrency {a.concurrency}, {errors} error(s), {wall:.1f} s "
                  f"({len(lat) / wall:.0f} req/s); latency ms p50 {np.percentile(ms, 50):.2f} "
                  f"p99 {np.percentile(ms, 99):.2f} max {ms.max():.2f}; job {state} at the end "
                  f"(load {load0:.2f} -> {os.getloadavg()[0]:.2f})")  # fmt: skip
            while json.loads(_once(port, f"/api/jobs/{jid}"))["state"] in ("queued", "running"):
                time.sleep(0.5)
            # the job overhead, without the load: the same grid again (its files are cached)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/api/jobs", json.dumps(GRID),
                         {"Authorization": "Bearer load", "Content-Type": "application/json"})  # fmt: skip
            jid2 = json.loads(conn.getresponse().read())["id"]
            while (j := json.loads(_once(port, f"/api/jobs/{jid2}")))["state"] in (
                "queued",
                "running",
            ):
                time.sleep(0.5)
            job_s = (
                datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["created_at"])
            ).total_seconds()
        finally:
            srv.terminate()
            srv.wait(30)
        cfg = Path(tmp) / "grid.yaml"
        cfg.write_text(yaml.safe_dump({**GRID, "artifacts": f"{tmp}/data/artifacts"}))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnbench", "sweep", str(cfg), "--out",
                        f"{tmp}/sweep.csv", "--no-db"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        sweep_s = time.perf_counter() - t0
        print(f"a second job of the grid, no load: {j['state']} in {job_s:.1f} s (submitted -> "
              f"finished); the same grid by cnnbench sweep: {sweep_s:.1f} s; job - sweep = "
              f"{job_s - sweep_s:+.1f} s over {j['cells_total']} cells")  # fmt: skip


if __name__ == "__main__":
    main()
