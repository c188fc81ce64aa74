"""The fault list, kept as one table: bad input and faults through the real CLI, in a process,
and through the service's HTTP API (``SERVICE_CASES``).

Every case asserts the exit code of the one rule (2 a mistake or bad input, 1 a failed check or
a run that could not finish, 0 fine), at most two lines on stderr, no traceback, a phrase of
the message, and that the working folder holds exactly what it held before, plus what the
case intends. A refusal (exit 2) takes under 10 s and allocates nothing large (its process's
peak RSS stays under 1 GiB, where the refused step would have needed tens of GiB).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a step's progress line ("[export vgg16 1/4] export done in 61.2s") or a step's reason
PROGRESS = re.compile(
    r"^\[[^\]]+ \d+/\d+\] |^exporting \S+: |^reusing verified |^(run|sweep): \S+ \.\.\.$"
    r"|^(run|sweep) \d+/\d+ elapsed |^  measuring: |^recorded as run \d+ in "
    r"|^cnnbench: WARNING: \S+\|\S+: invalid: "  # a measured row's verdict, not the error
    r"|^random weights \(seeded-init:\d+\) for "  # the run's note on its weights
)
QUICK = ["--warmup-count", "1", "--warmup-time", "0", "--min-count", "100", "--min-time",
         "0.05", "--max-time", "1"]  # fmt: skip
RESULTS = (
    "model,engine,precision,device,batch,scenario,latency_ms_p50,throughput_ips,error\n"
    "lenet5,null,fp32,cpu,1,offline,0.001,1000,\n"
)


class _Exploit:
    """A pickle that would run code when unpickled (it must never be)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


def _files(root: Path, onnx: Path) -> None:
    """The inputs the cases use, made fresh in each case's folder."""
    import torch

    (root / "other.csv").write_text("a,b\n1,2\n")
    (root / "latin1.csv").write_bytes("model,engine\nmodèle,x\n".encode("latin-1"))
    (root / "bom.csv").write_bytes(b"\xef\xbb\xbf" + RESULTS.encode())
    (root / "results.csv").write_text(RESULTS)
    (root / "a_file").write_text("x")
    (root / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"weight": torch.zeros(2)}, root / "wrong_keys.pt")
    with open(root / "exploit.pt", "wb") as fh:
        pickle.dump({"w": _Exploit()}, fh)
    torch.save({"w": _Exploit()}, root / "exploit_zip.pt")
    (root / "empty.onnx").write_bytes(b"")
    (root / "junk.onnx").write_bytes(b"\x08\x07garbage" * 50)
    data = onnx.read_bytes()
    (root / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (root / "lenet5.onnx").write_bytes(data)
    np.save(root / "calib_wrong.npy", np.zeros((4, 3, 224, 224), np.float32))
    np.save(root / "calib_ok.npy", np.random.default_rng(0).random((8, 1, 32, 32), np.float32))
    (root / "empty_dir").mkdir()
    (root / "bad.yaml").write_text("models: [lenet5\n")
    _hostile(root)


#: a sweep file's grid, for the hostile sweep files
GRID_YAML = "engines: ['null']\nprecisions: [fp32]\nbatches: [1]\nscenarios: [offline]\n"
#: the billion laughs: nine levels of ten aliases in under 1 KB
LAUGHS = (
    "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "models: *i\n"
)


def _hostile(root: Path) -> None:
    """Hostile inputs: an ONNX file that declares a 40000x40000 input, one whose external data
    leaves its folder, YAML that expands, absurd repeats."""
    import onnx

    from tests.cnnbench.test_onnx_external import tiny

    big = tiny()
    dims = big.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = 40_000
    onnx.save(big, root / "big.onnx")
    onnx.save(tiny("../outside.bin"), root / "ext.onnx")
    (root / "laughs.yaml").write_text(LAUGHS)
    (root / "aliased.yaml").write_text(
        "models: &m [lenet5]\n" + GRID_YAML + "weights: {lenet5: *m}\n"
    )
    (root / "repeats.yaml").write_text(
        "models: [lenet5]\n" + GRID_YAML + "repeats: 1000000000000\n"
    )


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    says: str
    #: paths (relative to the case's folder) the case may add; everything else stays as it was
    adds: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = field(default=None, compare=False)
    #: an address-space limit for the process (``ulimit -v``, KB)
    limit_kb: int | None = None
    #: a command run first, without the limit, whose outputs are part of the "before"
    first: tuple[str, ...] = ()
    #: a file-size limit for the process (``ulimit -f``, KB): a full disk
    fsize_kb: int | None = None
    #: prepares the case's folder (part of the "before")
    setup: Callable[[Path], None] | None = field(default=None, compare=False)
    #: held around the command (a lock on the store), given the case's scratch folder
    during: Callable[[Path], contextlib.AbstractContextManager[None]] | None = field(
        default=None, compare=False
    )
    #: more environment for the command
    env: tuple[tuple[str, str], ...] = ()


def _untouched(name: str) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        assert (root / name).read_bytes() == _ORIGINAL[name]

    return check


_ORIGINAL = {"other.csv": b"a,b\n1,2\n", "results.csv": RESULTS.encode()}
RUN = ["run", "-m", "lenet5", "-e", "null", "-b", "1", *QUICK]

CASES = [
    Case("unknown model", ["run", "-m", "lenet6", "-e", "null"], 2, "unknown model 'lenet6'"),
    Case("unknown engine", ["run", "-m", "lenet5", "-e", "tensorflow"], 2, "unknown engine"),
    Case("unknown precision", [*RUN, "-p", "fp61"], 2, "unknown precision 'fp61'"),
    Case("unknown scenario", [*RUN, "-s", "burst"], 2, "unknown scenario 'burst'"),
    Case("bad batch", ["run", "-m", "lenet5", "-e", "null", "-b", "0"], 2, "'--batch' / '-b': batch must be an integer >= 1 and <= 65_536, got '0'"),
    Case("batch not a number", ["run", "-m", "lenet5", "-e", "null", "-b", "x"], 2, "'--batch' / '-b': batch must be an integer >= 1 and <= 65_536, got 'x'"),
    Case("single-stream batch 8", ["run", "-m", "lenet5", "-e", "null", "-s", "single-stream", "-b", "8"], 2, "single-stream runs batch 1"),
    Case("precision the engine lacks", [*RUN[:4], "torch", "-p", "int8"], 2, "cannot run int8 on cpu"),
    Case("out under /proc", [*RUN, "--out", "/proc/nope/r.csv"], 2, "cannot write results under /proc/nope"),
    Case("out under a regular file", [*RUN, "--out", "a_file/r.csv"], 2, "Not a directory"),
    Case("out with a bad suffix", [*RUN, "--out", "r.txt"], 2, "must end in .csv or .jsonl"),
    Case("out is not our results file", [*RUN, "--out", "other.csv"], 2, "not a cnnbench results file", check=_untouched("other.csv")),
    Case("out is not UTF-8", [*RUN, "--out", "latin1.csv"], 2, "is not UTF-8"),
    Case("run appends to our results file", [*RUN, "--out", "results.csv"], 0, "", adds=("results.csv", "results.csv.samples")),
    Case("run writes into a new folder", [*RUN, "--out", "new/dir/r.csv"], 0, "", adds=("new",), check=lambda root: None if (root / "new/dir/r.csv.samples").is_file() else pytest.fail("no samples")),
    Case("report of a non-UTF-8 file", ["report", "latin1.csv", "--out", "rep"], 2, "is not UTF-8"),
    Case("compare a non-UTF-8 file", ["compare", "latin1.csv", "results.csv"], 2, "is not UTF-8"),
    Case("sweep --resume a non-UTF-8 file", ["sweep", "bad.yaml", "--out", "latin1.csv", "--resume"], 2, "is not UTF-8"),
    Case("report of a CSV with a byte-order mark", ["report", "bom.csv", "--out", "rep", "--format", "json"], 0, "", adds=("rep",)),
    Case("compare without a shared cell", ["compare", "results.csv", "other.csv"], 2, "not a cnnbench results file"),
    Case("sweep config missing", ["sweep", "nope.yaml"], 2, "config file not found"),
    Case("sweep config not YAML", ["sweep", "bad.yaml", "--out", "s.csv"], 2, "not valid YAML"),
    Case("weights not a checkpoint (run)", [*RUN[:4], "onnxruntime", "--weights", "junk.pt"], 2, "not a torch checkpoint"),
    Case("weights not a checkpoint (export)", ["export", "lenet5", "--weights", "junk.pt", "--out", "art"], 2, "not a torch checkpoint"),
    Case("weights with other keys", ["export", "lenet5", "--weights", "wrong_keys.pt", "--out", "art"], 2, "do not match the model"),
    Case("weights that run code (plain pickle)", [*RUN[:4], "onnxruntime", "--weights", "exploit.pt"], 2, "not a torch checkpoint"),
    Case("weights that run code (torch.save)", ["export", "lenet5", "--weights", "exploit_zip.pt", "--out", "art"], 2, "never unpickles code"),
    Case("calibration data missing", ["export", "lenet5", "--precision", "int8", "--calib-data", "nope", "--out", "art"], 2, "calibration data not found"),
    Case("calibration folder empty", ["export", "lenet5", "--precision", "int8", "--calib-data", "empty_dir", "--out", "art"], 2, "no images"),
    Case("calibration array of the wrong shape", ["export", "lenet5", "--precision", "int8", "--calib-data", "calib_wrong.npy", "--out", "art"], 2, "shape"),
    Case("export out under a regular file", ["export", "lenet5", "--out", "a_file/art"], 2, "cannot write artifacts under a_file"),
    Case("verify an empty file", ["verify", "empty.onnx", "--model", "lenet5"], 2, "empty.onnx"),
    Case("verify a corrupt file", ["verify", "junk.onnx", "--model", "lenet5"], 2, "not a valid ONNX file"),
    Case("verify a truncated file", ["verify", "truncated.onnx", "--model", "lenet5"], 2, "truncated.onnx"),
    Case("verify against another model", ["verify", "lenet5.onnx", "--model", "resnet18"], 2, "holds lenet5 (input 1x32x32), not resnet18"),
    Case("a run that cannot run here, dry", ["run", "-m", "lenet5", "-e", "trt", "--dry-run"], 2, "engine tensorrt is unavailable here"),
    # ---- hostile input and failing parts (#29), a case per class ----
    # 1. size before work: the parity gate would allocate 107 GiB, a batch 110 GiB (an 8 GB
    #    address space here, so that no machine is big enough to start the work)
    Case("an ONNX file declaring a huge input (run)", ["run", "-m", "big.onnx", "-e", "onnxruntime", "--out", "r.csv"], 2, "needs at least", limit_kb=8_000_000),
    Case("an ONNX file declaring a huge input (export)", ["export", "big.onnx", "--out", "art"], 2, "needs at least", limit_kb=8_000_000),
    Case("a zoo model at a batch no memory holds", ["run", "-m", "resnet50", "-e", "null", "-b", "65536"], 2, "needs at least", limit_kb=8_000_000),
    # 2. every number bounded (each flag's bound: tests/cnnbench/test_limits.py, in process)
    Case("a batch past 64 bits", ["run", "-m", "lenet5", "-e", "null", "-b", "1" + "0" * 20, "--out", "r.csv"], 2, "batch must be an integer"),
    Case("a sweep of 10**12 repeats", ["sweep", "repeats.yaml", "--out", "s.csv"], 2, "repeats must be"),
    # 3. external data that leaves its folder, whatever onnx and onnxruntime would do (every
    #    command that takes a file: tests/cnnbench/test_onnx_external.py, in process)
    Case("external data outside the folder (run)", ["run", "-m", "ext.onnx", "-e", "onnxruntime"], 2, "outside the model's folder"),
    Case("external data outside the folder (export)", ["export", "ext.onnx", "--out", "art"], 2, "outside the model's folder"),
    # 4. configs that cannot expand (a file over 1 MiB: tests/bench/run/test_config_values.py)
    Case("YAML aliases in an accepted key", ["sweep", "aliased.yaml", "--out", "s.csv"], 2, "aliased.yaml: line 6: YAML aliases"),
    Case("the billion laughs", ["sweep", "laughs.yaml", "--out", "s.csv"], 2, "laughs.yaml: line 2: YAML aliases"),
    # 5. a store that dies: locked past its timeout, it says it waited, and nothing is measured
    Case("a store locked past its timeout", [*RUN, "--out", "r.csv"], 2, "database is locked", during=lambda tmp: _locked(tmp / "locked.db"), env=(("CNNBENCH_DB_TIMEOUT", "2"),)),
    # 6. samples never torn: a full disk (a file-size limit) cuts the samples' write short: it is
    #    cut back, the row is printed, not written, and nothing is left behind
    Case("a short write of the samples", [*RUN, "--out", "r.csv", "--no-db"], 1, "cannot write r.csv", setup=lambda root: (root / "r.csv.samples").write_bytes(b"\0" * (8192 * 1024 - 300)), fsize_kb=8192),
]  # fmt: skip


SLOW_CASES = [
    # 528 MB of weights cannot be serialised in 3 GB of address space: one line, exit 1, no folder
    Case("export under a 3 GB memory limit", ["export", "vgg16", "--out", "art"], 1, "out of memory", limit_kb=3_000_000),
    # the cell cannot allocate its buffers: an error row that says so, exit 1, the row kept
    Case("run under a 900 MB memory limit", ["run", "-m", "resnet50", "-e", "onnxruntime", "-b", "64", "--artifacts", "art", "--out", "r.csv", *QUICK], 1, "out of memory", adds=("r.csv", "r.csv.samples"), limit_kb=900_000, first=("export", "resnet50", "--out", "art")),
]  # fmt: skip
ALL = [pytest.param(c, id=c.name) for c in CASES] + [
    pytest.param(c, id=c.name, marks=pytest.mark.slow) for c in SLOW_CASES
]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnbench.export.pipeline import export_fp32

    root = tmp_path_factory.mktemp("onnx")
    return Path(export_fp32("lenet5", out_dir=root, check=False).onnx_path)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def _locked(db: Path) -> Iterator[None]:
    """The store ``db`` (made first), its write lock held by another connection."""
    from cnnbench.bench.results.store import Store

    Store.open(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    #: the process's peak resident memory (KB): its VmHWM, read while it runs
    maxrss_kb: int


#: a case's command is stopped (and fails) after this long
CASE_TIMEOUT_S = 900


def _hwm_kb(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM, of its own address space since it
    exec'd), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _run_measured(cmd: list[str], **kw: object) -> Ran:
    """``cmd`` to its end, with its wall time and its own peak RSS, killed with its process
    group after CASE_TIMEOUT_S. The peak is VmHWM, read every 10 ms while it runs: wait4's
    ru_maxrss counts the address space a child had before it exec'd, which is a copy of this
    (large) test process's, not the command's own."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)  # type: ignore[call-overload]  # fmt: skip
    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()))
        for k, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            hwm = _hwm_kb(proc.pid)
            if hwm is not None:
                peak[0] = max(peak[0], hwm)
            done.wait(0.01)

    readers.append(threading.Thread(target=watch))
    for t in readers:
        t.start()
    timer = threading.Timer(CASE_TIMEOUT_S, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, _usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return Ran(proc.returncode, out["out"], out["err"], time.monotonic() - start, peak[0])


@pytest.mark.parametrize("case", ALL)
def test_fault(case: Case, tmp_path: Path, onnx_file: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    _files(root, onnx_file)
    # the checkout's code, whatever else is installed; the session's cache (tests/conftest.py:
    # the matmul peak and the model facts measured once for the suite)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if case.during is not None:
        env["CNNBENCH_DB"] = str(tmp_path / "locked.db")
    env.update(dict(case.env))
    if case.first:
        first = [sys.executable, "-m", "cnnbench", *case.first]
        subprocess.run(first, cwd=root, env=env, check=True, capture_output=True, timeout=900)
    if case.setup is not None:
        case.setup(root)
    before = _snapshot(root)
    cmd = [sys.executable, "-m", "cnnbench", *case.args]
    if case.limit_kb is not None:
        cmd = ["bash", "-c", f'ulimit -v {case.limit_kb} && exec "$@"', "limit", *cmd]
    if case.fsize_kb is not None:
        cmd = ["bash", "-c", f'ulimit -f {case.fsize_kb} && exec "$@"', "limit", *cmd]
    with case.during(tmp_path) if case.during is not None else contextlib.nullcontext():
        proc = _run_measured(cmd, cwd=root, env=env)
    # the error lines: progress of the steps that ran before the failure is not part of it
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    if case.code:
        assert len(err) <= 2, proc.stderr
        assert case.says in err[-1], proc.stderr
    if case.code == 2:  # a refusal: quick, and nothing large allocated
        assert proc.wall_s < 10, f"refused after {proc.wall_s:.1f} s"
        assert proc.maxrss_kb < 1 << 20, f"peak RSS {proc.maxrss_kb} KB"
    after = _snapshot(root)
    added = {p for p in after if p not in before}
    changed = {p for p in before if p in after and after[p] != before[p]}
    gone = {p for p in before if p not in after}
    allowed = {
        p for p in added | changed if any(p == a or p.startswith(a + "/") for a in case.adds)
    }
    assert not (added | changed | gone) - allowed, (added, changed, gone)
    assert not (root / "PWNED").exists()
    if case.check is not None:
        case.check(root)


# ---- the service: the same classes through its HTTP API (7), on loopback ---------------------


@dataclass(frozen=True)
class HttpCase:
    name: str
    method: str
    path: str
    status: int
    says: str
    #: a JSON body, or raw bytes (with ``ctype``), or a multipart upload of ``upload`` with ``body``
    body: object = None
    raw: bytes | None = None
    ctype: str = "application/json"
    upload: str | None = None
    #: the Authorization header's value (bytes: as sent); None: the service's token
    auth: bytes | None = None


HTTP_GRID = {"models": ["lenet5"], "engines": ["null"], "precisions": ["fp32"], "batches": [1],
             "scenarios": ["offline"]}  # fmt: skip
BIG_ID = "9" * 25
SERVICE_CASES = [
    # 1. size before work
    HttpCase("an upload declaring a huge input", "POST", "/api/jobs", 422, "needs at least", body={**HTTP_GRID, "models": ["upload"], "engines": ["onnxruntime"]}, upload="big.onnx"),
    # 2. every number bounded, pages that work
    HttpCase("a job id past 64 bits", "GET", f"/api/jobs/{BIG_ID}", 422, "path parameter 'job_id'"),
    HttpCase("a limit past its cap", "GET", "/api/jobs?limit=100000", 422, "query parameter 'limit'"),
    HttpCase("an offset past 64 bits", "GET", f"/api/jobs?offset={BIG_ID}", 422, "query parameter 'offset'"),
    HttpCase("a batch filter past 64 bits", "GET", f"/api/results?batch={BIG_ID}", 422, "query parameter 'batch'"),
    HttpCase("a run ref past 64 bits", "GET", f"/api/compare?base=db:{BIG_ID}&new=db:1", 422, "a run id must be"),
    HttpCase("repeats 10**12", "POST", "/api/jobs", 422, "repeats must be", body={**HTTP_GRID, "repeats": 10**12}),
    HttpCase("100,000 batches", "POST", "/api/jobs", 422, "at most 1,000", body={**HTTP_GRID, "batches": list(range(1, 100_001))}),
    HttpCase("timeout_s Infinity", "POST", "/api/jobs", 422, "timeout_s must be", raw=json.dumps({**HTTP_GRID, "timeout_s": float("inf")}).encode()),
    # 3. external data
    HttpCase("an upload with external data", "POST", "/api/jobs", 422, "external data", body={**HTTP_GRID, "models": ["upload"]}, upload="ext.onnx"),
    # 7. the service's details
    HttpCase("a non-ASCII byte in the token", "POST", "/api/jobs", 401, "Bearer", body=HTTP_GRID, auth=b"Bearer t\xe9ok"),
    HttpCase("a JSON body over 1 MiB", "POST", "/api/jobs", 413, "limit of 1048576 bytes", raw=b"[" + b"1," * (1 << 20) + b"1]"),
    HttpCase("an engine option naming a server path", "POST", "/api/jobs", 422, "names a path", body={**HTTP_GRID, "engines": ["openvino"], "engine_options": {"openvino": {"config": {"CACHE_DIR": "/etc"}}}}),
    HttpCase("a validation error's shape", "GET", "/api/jobs?limit=ten", 422, "query parameter 'limit'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The service, holding its jobs, in an 8 GB address space (so that no machine holds the
    huge upload), with the hostile files beside it."""
    pytest.importorskip(
        "fastapi", reason="the service needs fastapi: pip install 'cnnbench[serve]'"
    )
    from tests.serve.test_service import start, stop

    tmp = tmp_path_factory.mktemp("service")
    _hostile(tmp)
    srv = start(
        tmp, f"sqlite:///{tmp / 's.db'}", tmp / "data", extra=("--hold-jobs",), limit_kb=12_000_000
    )
    srv.files = tmp  # type: ignore[attr-defined]
    yield srv
    stop(srv)
    _, err = srv.proc.communicate()
    assert "Traceback" not in err, err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in SERVICE_CASES])
def test_service_fault(case: HttpCase, service: object) -> None:
    import http.client

    from tests.serve.test_service import TOKEN, _multipart

    srv: Any = service
    body, ctype = case.raw, case.ctype
    if case.upload is not None:
        body, ctype = _multipart(case.body, (srv.files / case.upload).read_bytes())  # type: ignore[arg-type]
    elif body is None and case.body is not None:
        body = json.dumps(case.body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=60)
    conn.putrequest(case.method, case.path)
    conn.putheader("Authorization", case.auth or f"Bearer {TOKEN}".encode())
    if body is not None:
        conn.putheader("Content-Type", ctype)
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    start = time.monotonic()
    if body is not None:
        conn.send(body)
    res = conn.getresponse()
    answer = json.loads(res.read())
    assert res.status == case.status, answer
    assert set(answer) == {"error"} and case.says in answer["error"] and "\n" not in answer["error"]
    assert time.monotonic() - start < 10
    assert list((srv.data / "uploads").glob("*")) == []  # a refused upload is not kept


# ---- faults that act on a running command: signals, resume, a corrupted cache, two writers ----

SWEEP = """models: [lenet5]
engines: ['null']
precisions: [fp32]
batches: [1, 2, 3, 4]
scenarios: [offline]
timeout_s: 120
stop: {warmup_count: 1, warmup_time: 0, min_count: 100, min_time: 0.3, max_time: 1}
"""


def _cli(root: Path, tmp: Path, *args: str, tmpdir: Path | None = None) -> subprocess.Popen[str]:
    """The CLI in ``root``, with the session's cache (as test_fault's); ``tmpdir``: its
    temporary folder, where what a killed launcher leaves is looked at (not for Ray: its
    sockets under a long folder pass the 107-byte limit of a socket's path)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if tmpdir is not None:
        tmpdir.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "cnnbench", *args], cwd=root, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def _wait_for(cond: Callable[[], bool], timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "the condition never came"
        time.sleep(0.05)


def _rows(path: Path) -> list[dict[str, object]]:
    from cnnbench.bench.results.files import read_rows

    return read_rows(path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "kill -9"])
def test_a_stopped_sweep_keeps_its_rows_and_resumes(sig: signal.Signals, tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    (root / "s.yaml").write_text(SWEEP)
    out = root / "r.csv"
    proc = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv", tmpdir=tmp_path / "tmp")
    _wait_for(lambda: out.is_file() and len(_rows(out)) >= 1)
    os.killpg(proc.pid, sig)  # the sweep and the cell it is measuring
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    if sig == signal.SIGINT:
        lines = [ln for ln in err.splitlines() if ln.startswith("cnnbench: error")]
        assert lines == [
            "cnnbench: error: interrupted; finished results were kept, partial files removed"
        ]
        assert "Traceback" not in err
    kept = [r["cell"] for r in _rows(out)]
    assert kept and all(r["error"] is None for r in _rows(out))
    again = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv", "--resume",
                 tmpdir=tmp_path / "tmp")  # fmt: skip
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    cells = [r["cell"] for r in _rows(out)]
    assert sorted(cells) == sorted(set(cells)) and len(cells) == 4 and cells[: len(kept)] == kept
    # the cell folders of a launcher killed outright are removed by the next one
    assert not [p.name for p in (tmp_path / "tmp").glob("cnnbench-*")]


def _worker(sweep_pid: int) -> int | None:
    """The pid of the cell process a sweep is measuring in, if one is running."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(sweep_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = child.cmdline()
                if "cnnbench.bench.run.child" in cmd and "measure" in cmd:
                    return int(child.pid)
    return None


def test_kill_9_of_a_worker_is_an_error_row_and_resume_retries_it(tmp_path: Path) -> None:
    """kill -9 of the cell process alone (as the kernel's OOM killer would): the sweep says so
    in that cell's row, measures the other cells, and --resume measures the killed one again."""
    root = tmp_path / "work"
    root.mkdir()
    (root / "s.yaml").write_text(SWEEP)
    out = root / "r.csv"
    proc = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv")
    _wait_for(lambda: _worker(proc.pid) is not None)
    worker = _worker(proc.pid)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # the sweep ran, one cell could not finish
    assert "Traceback" not in err
    rows = _rows(out)
    bad = [r for r in rows if r["error"]]
    assert len(rows) == 4 and len(bad) == 1, rows
    assert "killed by SIGKILL" in str(bad[0]["error"])
    again = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv", "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    rows = _rows(out)
    assert len(rows) == 4 and all(r["error"] is None for r in rows)


def test_ctrl_c_during_an_export_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C mid-export: exit 130 (or death by SIGINT, where a library holds the signal past
    our handler), one line, and no file or folder left; if the signal came too late, the export
    finished and its folder is whole."""
    root = tmp_path / "work"
    root.mkdir()
    proc = _cli(root, tmp_path, "export", "resnet18", "--out", "art")
    time.sleep(2.0)  # the exporter at work
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    if proc.returncode == 0:
        assert set(files) >= {"art/resnet18/fp32/model.onnx", "art/resnet18/fp32/manifest.json"}
        return
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines()[-1].startswith("cnnbench: error: interrupted")
    assert files == []


def test_a_corrupted_cache_entry_is_rebuilt(tmp_path: Path, onnx_file: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    from tests.serve.test_service import _prebuilt_lenet5

    # a verified artifact, as `cnnbench export lenet5 --out art` leaves it (made once per suite)
    shutil.copytree(_prebuilt_lenet5() / "lenet5", root / "art" / "lenet5")
    args = ["run", "-m", "lenet5", "-e", "onnxruntime", "-b", "1", "--artifacts", "art", *QUICK]
    model = root / "art" / "lenet5" / "fp32" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the manifest's sha256 no longer matches
    model.write_bytes(bytes(data))
    proc = _cli(root, tmp_path, *args, "--out", "r.jsonl")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "cached artifact unusable" in err
    assert _rows(root / "r.jsonl")[0]["error"] is None


def test_two_writers_to_one_results_file_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    args = ["run", "-m", "lenet5", "-e", "null", "-b", "1,2,3", "--out", "r.csv", *QUICK]
    procs = [_cli(root, tmp_path, *args) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = _rows(root / "r.csv")
    assert len(rows) == 6 and all(r["error"] is None for r in rows)


def test_rows_are_printed_when_the_results_file_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from cnnbench.bench.run import local as sweep_mod
    from cnnbench.cli import cli

    def disk_full(path: object, row: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sweep_mod, "append_row", disk_full)
    args = ["run", "-m", "lenet5", "-e", "null", "-b", "1,2", "--out", str(tmp_path / "r.csv"),
            "--format", "json", *QUICK]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    assert "cannot write" in res.stderr and "No space left on device" in res.stderr
    assert res.stdout.count('"model": "lenet5"') == 2  # both measured rows, printed all the same
