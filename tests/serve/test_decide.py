"""The service answers: a grid with only models and engines runs with a sweep file's defaults;
GET /api/recommend and the job page give the decision; the submit form is behind the token."""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cnnbench[serve]'")

from tests.serve.test_service import TOKEN, Server, start, stop  # noqa: E402

QUICK = {"warmup_count": 1, "warmup_time": 0, "min_count": 20, "min_time": 0.1, "max_time": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("decide")
    srv = start(tmp, f"sqlite:///{tmp / 's.db'}", tmp / "data")
    yield srv
    stop(srv)


def _get(srv: Server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(srv.url + path, timeout=60) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post_form(
    srv: Server, path: str, fields: dict[str, str], bearer: str | None = None
) -> tuple[int, str, str]:
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(srv.url + path, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if bearer is not None:
        req.add_header("Authorization", f"Bearer {bearer}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=60) as res:
            return res.status, res.headers.get("location", ""), res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("location", ""), exc.read().decode()


def test_a_grid_of_models_and_engines_runs_with_the_sweep_defaults(server: Server) -> None:
    status, job = server.call("POST", "/api/jobs", {"models": ["lenet5"], "engines": ["null"],
                                                    "stop": QUICK})  # fmt: skip
    assert status == 201, job
    assert job["cells_total"] == 1  # fp32, offline, batch 1
    done = server.wait_job(job["id"])
    assert done["state"] == "done", done
    _, rows = server.call("GET", f"/api/results?job={job['id']}")
    assert [(r["precision"], r["scenario"], r["batch"]) for r in rows] == [("fp32", "offline", 1)]
    assert rows[0]["weights"] == "seeded-init:0"


def test_recommend_over_a_job_and_its_page_shows_the_decision(server: Server) -> None:
    status, job = server.call("POST", "/api/jobs", {"models": ["lenet5"],
                                                    "engines": ["onnxruntime"],
                                                    "batches": [1, 4], "stop": QUICK})  # fmt: skip
    assert status == 201, job
    assert server.wait_job(job["id"])["state"] == "done"
    status, d = server.call("GET", f"/api/recommend?source=job:{job['id']}&objective=throughput")
    assert status == 200, d
    assert d["choice"] is None or d["choice"]["engine"] == "onnxruntime"
    assert d["constraints_text"][0] == "p99 latency: no limit (default)"
    status, d = server.call(
        "GET", f"/api/recommend?source=job:{job['id']}&p99_ms=0.000001&allow_invalid=1"
    )
    assert status == 200 and d["choice"] is None and d["nearest_miss"]["why"].startswith("p99")
    for bad in ("p99_ms=-1", "objective=speed", "engine=nope"):
        status, err = server.call("GET", f"/api/recommend?source=job:{job['id']}&{bad}")
        assert status == 422 and set(err) == {"error"}, (bad, err)
    status, page = _get(server, f"/jobs/{job['id']}")
    assert status == 200
    assert page.index("Decision") < page.index("Figures") < page.index("Rows")
    assert "latency_vs_macs.png" in page and "throughput_vs_batch.png" in page
    assert "seeded-init:0" in page  # the rows say their weights are random
    status, page = _get(server, f"/jobs/{job['id']}?p99_ms=0.000001&allow_invalid=on")
    assert status == 200 and "No measured cell meets the constraints" in page


def test_the_submit_form_needs_the_token(server: Server) -> None:
    status, page = _get(server, "/submit")
    assert status == 200 and 'name="token"' in page
    fields = {"models": "lenet5", "engines": "null", "batches": "1, 2"}
    status, _, page = _post_form(server, "/submit", {**fields, "token": "wrong"})
    assert status == 401 and "token" in page
    status, _, page = _post_form(server, "/submit", {**fields, "token": TOKEN, "batches": "x"})
    assert status == 422 and "whole numbers" in page
    status, _, page = _post_form(server, "/submit", {**fields, "token": TOKEN, "engines": "nope"})
    assert status == 422 and "unknown engine" in page
    status, where, _ = _post_form(server, "/submit", {**fields, "token": TOKEN})
    assert status == 303 and where.startswith("/jobs/")
    job = server.call("GET", f"/api{where}")[1]
    assert job["cells_total"] == 2
    # a script may post the form with the API's header instead of the field
    assert _post_form(server, "/submit", fields, bearer="wrong")[0] == 401
    status, where, _ = _post_form(server, "/submit", fields, bearer=TOKEN)
    assert status == 303 and where.startswith("/jobs/")


def test_tradeoff_and_history_read_the_store(server: Server) -> None:
    status, page = _get(server, "/tradeoff")
    assert status == 200 and "random weights have no place on an accuracy axis" in page
    status, page = _get(server, "/history?shared_y=true")
    assert status == 200 and "All panels share one y-range" in page and "<th>commit</th>" in page


def test_a_profiled_job_links_each_cell_to_its_layers(server: Server) -> None:
    status, job = server.call("POST", "/api/jobs", {"models": ["lenet5"],
                                                    "engines": ["onnxruntime"],
                                                    "profile": True, "stop": QUICK})  # fmt: skip
    assert status == 201, job
    assert server.wait_job(job["id"])["state"] == "done"
    _, rows = server.call("GET", f"/api/results?job={job['id']}")
    (row,) = rows
    assert row["profile_file"].startswith("results.csv.profiles/") and row["profile_by_kind"]
    status, page = _get(server, f"/jobs/{job['id']}")
    name = row["profile_file"].rsplit("/", 1)[-1]
    link = f"/jobs/{job['id']}/profile/{name}"
    assert status == 200 and f'href="{link}"' in page
    status, layers = _get(server, link)
    assert status == 200 and "where the time goes" in layers and "layers sum to" in layers
    status, doc = server.call("GET", link + "?format=json")
    assert status == 200 and doc["engine"] == "onnxruntime" and doc["layers"]
    for bad in ("../../s.db", "nope.json", "..%2F..%2Fs.db"):
        status, err = server.call("GET", f"/jobs/{job['id']}/profile/{bad}")
        assert status == 404 and set(err) == {"error"}, (bad, err)
