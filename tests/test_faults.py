"""The fault list, kept as one table: bad input and faults through the real CLI, in a process.

Every case asserts the exit code of the one rule (2 a mistake or bad input, 1 a failed check or
a run that could not finish, 0 fine), at most two lines on stderr, no traceback, a phrase of
the message, and that the working folder holds exactly what it held before, plus what the
case intends.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a step's progress line ("[export vgg16 1/4] export done in 61.2s") or a step's reason
PROGRESS = re.compile(
    r"^\[[^\]]+ \d+/\d+\] |^exporting \S+: |^reusing verified |^(run|sweep): \S+ \.\.\.$"
    r"|^(run|sweep) \d+/\d+ elapsed |^  measuring: |^recorded as run \d+ in "
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
    Case("bad batch", ["run", "-m", "lenet5", "-e", "null", "-b", "0"], 2, "'--batch' / '-b': batch must be >= 1"),
    Case("batch not a number", ["run", "-m", "lenet5", "-e", "null", "-b", "x"], 2, "'--batch' / '-b': batch must be a positive integer"),
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


@pytest.mark.parametrize("case", ALL)
def test_fault(case: Case, tmp_path: Path, onnx_file: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    _files(root, onnx_file)
    # the checkout's code, whatever else is installed; a cache of the case's own
    env = {**os.environ, "CNNBENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    if case.first:
        first = [sys.executable, "-m", "cnnbench", *case.first]
        subprocess.run(first, cwd=root, env=env, check=True, capture_output=True, timeout=900)
    before = _snapshot(root)
    cmd = [sys.executable, "-m", "cnnbench", *case.args]
    if case.limit_kb is not None:
        cmd = ["bash", "-c", f'ulimit -v {case.limit_kb} && exec "$@"', "limit", *cmd]
    proc = subprocess.run(
        cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900
    )  # fmt: skip
    # the error lines: progress of the steps that ran before the failure is not part of it
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    if case.code:
        assert len(err) <= 2, proc.stderr
        assert case.says in err[-1], proc.stderr
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


# ---- faults that act on a running command: signals, resume, a corrupted cache, two writers ----

SWEEP = """models: [lenet5]
engines: ['null']
precisions: [fp32]
batches: [1, 2, 3, 4]
scenarios: [offline]
timeout_s: 120
stop: {warmup_count: 1, warmup_time: 0, min_count: 100, min_time: 1.0, max_time: 2}
"""


def _cli(root: Path, tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CNNBENCH_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
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
    proc = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv")
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
    again = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "r.csv", "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    cells = [r["cell"] for r in _rows(out)]
    assert sorted(cells) == sorted(set(cells)) and len(cells) == 4 and cells[: len(kept)] == kept


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
    args = ["run", "-m", "lenet5", "-e", "onnxruntime", "-b", "1", "--artifacts", "art", *QUICK]
    assert _cli(root, tmp_path, *args).wait(timeout=300) == 0
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
