"""The service under hostile input, on loopback: every number bounded (422 in the error shape,
never a 500), pages that work, bodies size-limited, a bad token header a 401, no server path
for a read without the token, refused uploads deleted, figures drawn once, /docs offline, a
grid validated off the event loop with a time cap, and SIGTERM honoured within 5 s."""

from __future__ import annotations

import asyncio
import html
import http.client
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cnnbench[serve]'")

from tests.serve.test_service import GRID, TOKEN, Server, _multipart, start, stop  # noqa: E402

BIG = 99999999999999999999999


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service that queues jobs and runs none: the API alone (one for the module's tests)."""
    tmp = tmp_path_factory.mktemp("held")
    srv = start(tmp, f"sqlite:///{tmp / 's.db'}", tmp / "data", extra=("--hold-jobs",))
    yield srv
    stop(srv)


def _raw(srv: Server, method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> tuple[int, Any]:  # fmt: skip
    port = int(srv.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest(method, path)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    res = conn.getresponse()
    text = res.read().decode()
    conn.close()
    return res.status, json.loads(text)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/jobs/{BIG}", "/api/jobs/0", "/api/jobs/-1", "/api/jobs?limit=100000",
        "/api/jobs?limit=0", f"/api/jobs?offset={BIG}", f"/api/results?batch={BIG}",
        f"/api/results?job={BIG}", "/api/results?format=xml", f"/api/compare?base=db:{BIG}&new=db:1",
        f"/api/compare?base=db:latest~{BIG}&new=db:1", f"/api/compare?base=job:{BIG}&new=db:1",
        "/api/compare?base=db:1&new=db:1&threshold=1e400%", f"/jobs/{BIG}",
        f"/compare?base=job:{BIG}&new=job:1", "/api/artifacts/x", "/api/results?model=" + "m" * 300,
    ],
)  # fmt: skip
def test_numbers_out_of_range_are_422_in_the_error_shape(held: Server, path: str) -> None:
    status, body = held.call("GET", path)
    if path.startswith("/compare"):  # a page: the error in the page, never a 500
        assert status in (200, 422), (status, body)
        return
    assert status == 422, (path, status, body)
    assert set(body) == {"error"} and "\n" not in body["error"], body


def test_limit_is_capped_and_offset_works(held: Server) -> None:
    ids = [held.call("POST", "/api/jobs", GRID)[1]["id"] for _ in range(5)]
    status, page = held.call("GET", "/api/jobs?limit=2&offset=1")
    assert status == 200 and [j["id"] for j in page] == ids[::-1][1:3]
    assert [j["id"] for j in held.call("GET", "/api/jobs?offset=4")[1]] == [ids[0]]
    status, caps = held.call("GET", "/api/limits")
    assert status == 200 and caps["page_limit"] == 1000 and caps["grid_cells"] == 10_000


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"repeats": 10**12}, "repeats"),
        ({"batches": list(range(1, 100_001))}, "lists 100,000 items"),
        ({"batches": list(range(1, 201)), "repeats": 100}, "at most 10,000"),
        ({"timeout_s": "Infinity"}, "timeout_s"),
        ({"batches": [2**70]}, "batch"),
        ({"engines": ["tensorrt"], "engine_options": {"tensorrt": {"cache_dir": "/etc"}}}, "names a path"),
        ({"engines": ["tensorrt"], "engine_options": {"tensorrt": {"timing_cache": "/tmp/t"}}}, "names a path"),
        ({"engines": ["openvino"], "engine_options": {"openvino": {"config": {"CACHE_DIR": "/x"}}}}, "names a path"),
    ],
)  # fmt: skip
def test_grids_past_their_caps_are_422_at_once(held: Server, over: dict, says: str) -> None:
    start_t = time.monotonic()
    status, body = held.call("POST", "/api/jobs", {**GRID, **over})
    assert status == 422 and says in body["error"], body
    assert time.monotonic() - start_t < 10
    assert held.call("GET", "/api/health")[0] == 200


def test_json_bodies_have_a_size_limit(held: Server) -> None:
    big = b'{"models": [' + b'"lenet5", ' * 200_000 + b'"lenet5"]}'
    status, body = _raw(held, "POST", "/api/jobs", {
        "Authorization": f"Bearer {TOKEN}".encode(), "Content-Type": b"application/json",
        "Content-Length": str(len(big)).encode()}, big)  # fmt: skip
    assert status == 413 and "limit of 1048576 bytes" in body["error"]
    port = int(held.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:  # chunked, no length
        s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for _ in range(40):
            s.sendall(b"10000\r\n" + b" " * 0x10000 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        head = s.recv(200).decode()
    assert head.startswith("HTTP/1.1 413"), head


@pytest.mark.parametrize("header", [b"Bearer t\xe9ok", b"Bearer \xff\xfe", b"\xe9", b"Bearer"])
def test_a_bad_authorization_header_is_401(held: Server, header: bytes) -> None:
    body = json.dumps(GRID).encode()
    status, err = _raw(held, "POST", "/api/jobs", {"Authorization": header,
                       "Content-Type": b"application/json", "Content-Length": str(len(body)).encode()}, body)  # fmt: skip
    assert status == 401 and "Bearer" in err["error"]
    assert _raw(held, "DELETE", "/api/jobs/1", {"Authorization": header})[0] == 401


def test_a_validation_error_has_the_documented_shape(held: Server) -> None:
    status, body = held.call("GET", "/api/jobs?limit=ten")
    assert status == 422 and body == {
        "error": "query parameter 'limit': Input should be a valid integer, unable to parse string as an integer"
    }


def test_reads_without_the_token_show_no_server_paths(held: Server) -> None:
    status, job = held.call("POST", "/api/jobs", GRID)
    data = str(held.data.absolute())
    assert status == 201 and data in json.dumps(job)  # the token's holder sees them
    for path in ("/api/jobs", f"/api/jobs/{job['id']}", "/", f"/jobs/{job['id']}", "/api/health"):
        status, body = held.call("GET", path, token=None)
        text = body if isinstance(body, str) else json.dumps(body)
        assert status == 200 and data not in text, (path, text[:500])
        assert not re.search(r"(?<![\w.:/~-])/(tmp|root|home|work)/", text), (path, text[:500])


def test_private_puts_reads_behind_the_token(tmp_path: Path) -> None:
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "d", extra=("--hold-jobs", "--private"))  # fmt: skip
    try:
        for path in ("/api/jobs", "/", "/docs", "/openapi.json", "/api/limits"):
            assert srv.call("GET", path, token=None)[0] == 401, path
            assert srv.call("GET", path)[0] == 200, path
        assert srv.call("GET", "/api/health", token=None)[0] == 200
    finally:
        stop(srv)


def _tiny_onnx(tmp: Path, *, side: int = 8) -> bytes:
    import onnx

    from tests.cnnbench.test_onnx_external import tiny

    m = tiny()
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = side, side
    onnx.save(m, tmp / "m.onnx")
    return (tmp / "m.onnx").read_bytes()


@pytest.mark.parametrize(
    ("grid", "side", "says"),
    [
        ({**GRID, "models": ["upload"], "engines": ["nope"]}, 8, "unknown engine"),
        ({**GRID, "models": ["upload"], "engines": ["onnxruntime"]}, 40_000, "needs at least"),
    ],
    ids=["a bad grid", "an input too large for this machine"],
)
def test_refused_uploads_are_deleted(held: Server, tmp_path: Path, grid: dict, side: int, says: str) -> None:  # fmt: skip
    body, ctype = _multipart(grid, _tiny_onnx(tmp_path, side=side))
    start_t = time.monotonic()
    status, err = held.call("POST", "/api/jobs", raw=body, ctype=ctype)
    assert status == 422 and says in err["error"], err
    assert time.monotonic() - start_t < 10
    assert list((held.data / "uploads").iterdir()) == []


def test_docs_work_offline(held: Server) -> None:
    status, page = held.call("GET", "/docs", token=None)
    assert status == 200 and "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "an asset from the network"
    _, spec = held.call("GET", "/openapi.json")
    for path in spec["paths"]:
        assert html.escape(path) in page
    assert "&lt;= 1000" in page  # the page states the bounds


def test_figures_are_drawn_once_per_content(tmp_path: Path) -> None:
    srv = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data")
    try:
        _, job = srv.call("POST", "/api/jobs", {**GRID, "engines": ["null"]})
        assert srv.wait_job(job["id"])["state"] == "done"
        assert srv.call("GET", "/tradeoff")[0] == 200
        pngs = list((srv.data / "plots").rglob("*.png"))
        assert pngs, "no figure drawn"
        before = {p: p.stat().st_mtime_ns for p in pngs}
        start_t = time.monotonic()
        assert srv.call("GET", "/tradeoff")[0] == 200
        assert time.monotonic() - start_t < 2  # served, not drawn again
        assert {p: p.stat().st_mtime_ns for p in pngs} == before
    finally:
        stop(srv)


def test_sigterm_is_honoured_within_5s_during_an_upload(tmp_path: Path) -> None:
    held = start(tmp_path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data")
    port = int(held.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: 100000000\r\n\r\n"
              + b'--zz\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
              + b"x" * 1_000_000)  # fmt: skip
    time.sleep(1.0)  # the upload is being read, and the rest never comes
    start_t = time.monotonic()
    held.proc.send_signal(signal.SIGTERM)
    _, err = held.proc.communicate(timeout=30)
    assert time.monotonic() - start_t < 5
    assert "Traceback" not in err, err
    s.close()


# ---- in process: the grid's validation off the event loop, with a time cap --------------------


def _asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    """One request straight into the ASGI app (no HTTP client library needed)."""
    out: dict[str, Any] = {"body": b""}
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"content-type", b"application/json"),
             (b"content-length", str(len(body)).encode())], "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "root_path": ""}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return out["status"], json.loads(out["body"])


def test_a_slow_validation_runs_off_the_loop_and_is_cut_at_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnbench.serve import api_jobs
    from cnnbench.serve.app import Settings, create_app

    release, finished = threading.Event(), threading.Event()
    real = api_jobs.validate

    def slow_validate(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)  # a validation that takes longer than its cap, then succeeds
        try:
            return real(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(api_jobs, "validate", slow_validate)
    monkeypatch.setattr(api_jobs, "VALIDATE_S", 0.5)
    app = create_app(Settings(data=tmp_path / "d", db_url=f"sqlite:///{tmp_path / 's.db'}",
                              run_jobs=False))  # fmt: skip
    start_t = time.monotonic()
    status, body = _asgi_call(app, "POST", "/api/jobs", json.dumps(GRID).encode())
    release.set()
    assert status == 422 and "took longer than" in body["error"], body
    assert time.monotonic() - start_t < 5
    assert finished.wait(30)
    time.sleep(0.5)
    assert app.state.service.queue.list_jobs() == []  # an abandoned validation queues nothing


def test_every_parameter_of_every_route_is_bounded(tmp_path: Path) -> None:
    """A route added later is held to it too: each integer or number parameter has a minimum
    and a maximum, each text parameter a length, a pattern or a list of values."""
    from cnnbench.serve.app import Settings, create_app

    app = create_app(Settings(data=tmp_path / "d", db_url=f"sqlite:///{tmp_path / 's.db'}",
                              run_jobs=False))  # fmt: skip
    loose = []
    for path, methods in app.openapi()["paths"].items():
        for method, op in methods.items():
            for p in op.get("parameters", []):
                for sch in p["schema"].get("anyOf", [p["schema"]]):
                    kind = sch.get("type")
                    if kind in ("integer", "number"):
                        ok = "maximum" in sch and ("minimum" in sch or "exclusiveMinimum" in sch)
                    elif kind == "string":
                        ok = any(k in sch for k in ("maxLength", "pattern", "enum"))
                    else:
                        ok = kind in ("null", "boolean")
                    if not ok:
                        loose.append(f"{method.upper()} {path} {p['name']}: {sch}")
    assert not loose, "bound these (cnnbench/serve/api_models.py):\n" + "\n".join(loose)
