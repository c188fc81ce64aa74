"""The fault list, kept as one table: bad input and faults through the real CLI, in a process.

Every case asserts the exit code of the one rule (2 a mistake or bad input, 1 a failed check or
a run that could not finish, 0 fine), at most two lines on stderr, no traceback, a phrase of
the message, and that the working folder holds exactly what it held before, plus what the
case intends.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a step's progress line ("[export vgg16 1/4] export done in 61.2s") or a step's reason
PROGRESS = re.compile(r"^\[[^\]]+ \d+/\d+\] |^exporting \S+: ")
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
    Case("bad batch", ["run", "-m", "lenet5", "-e", "null", "-b", "0"], 2, "--batch must be >= 1"),
    Case("batch not a number", ["run", "-m", "lenet5", "-e", "null", "-b", "x"], 2, "--batch must be"),
    Case("single-stream batch 8", ["run", "-m", "lenet5", "-e", "null", "-s", "single-stream", "-b", "8"], 2, "single-stream runs batch 1"),
    Case("precision the engine lacks", [*RUN[:4], "torch", "-p", "int8"], 2, "cannot run int8 on cpu"),
    Case("out under /proc", [*RUN, "--out", "/proc/nope/r.csv"], 2, "cannot write results under /proc/nope"),
    Case("out under a regular file", [*RUN, "--out", "a_file/r.csv"], 2, "Not a directory"),
    Case("out with a bad suffix", [*RUN, "--out", "r.txt"], 2, "must end in .csv or .jsonl"),
    Case("out is not our results file", [*RUN, "--out", "other.csv"], 2, "not a cnnbench results file", check=_untouched("other.csv")),
    Case("out is not UTF-8", [*RUN, "--out", "latin1.csv"], 2, "is not UTF-8"),
    Case("run appends to our results file", [*RUN, "--out", "results.csv"], 0, "", adds=("results.csv", "results.csv.samples")),
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
    before = _snapshot(root)
    # the checkout's code, whatever else is installed; a cache of the case's own
    env = {**os.environ, "CNNBENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
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
