"""Engine overhead: our onnxruntime/openvino engines against plain runtime loops on the same file.

For each model, batch and runtime, the engine's ``infer`` and a plain loop (``sess.run`` on an
``InferenceSession`` with the same options and threads; for OpenVINO, on a compiled model with
the same config, both ``infer_request.infer({0: x})`` plus the output tensor's data and a tuned
loop that writes into the request's input buffer and calls ``infer()``) are timed in interleaved
rounds. Within a round the two are called alternately, call by call (which goes first alternates
too), so load on the shared CPU hits both alike; each adjacent pair gives a latency ratio
(engine / plain) and the median over all pairs is kept. That runs twice, building the engine
first and then the plain loop first (build order alone moves latency by 1-3% here); the reported
ratio is the geometric mean of the two (goal <= 1.02). ``--control`` adds plain vs plain (A/A).

    python tools/engine_vs_plain.py --models resnet50,lenet5 --batches 1,8 --rounds 40 --control
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.batch import BatchRange
from cnnbench.data.images import random_batches
from cnnbench.engines import create
from cnnbench.engines.base import Artifact, EngineOptions
from cnnbench.engines.onnxruntime_engine import physical_cores, session_options
from cnnbench.engines.openvino_engine import compile_config
from cnnbench.export.pipeline import ensure_fp32
from cnnbench.models import get_spec
from cnnbench.precision import Precision

Call = Callable[[], Any]


def plain_ort(path: Path, threads: int, x: np.ndarray) -> Call:
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    feed = {sess.get_inputs()[0].name: x}
    outs = [sess.get_outputs()[0].name]
    return partial(sess.run, outs, feed)  # no Python frame of ours around the call


def _ov_request(path: Path, threads: int, batch: int) -> Any:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    shape = list(model.inputs[0].get_partial_shape())
    model.reshape({0: ov.PartialShape([ov.Dimension(batch), *shape[1:]])})
    return core.compile_model(model, "CPU", compile_config(threads)).create_infer_request()


def plain_ov(path: Path, threads: int, x: np.ndarray) -> Call:
    """The documented loop: ``infer({0: x})`` then the output tensor's data."""
    req = _ov_request(path, threads, x.shape[0])
    out = req.get_output_tensor

    def call() -> Any:
        req.infer({0: x})
        return out(0).data

    return call


def plain_ov_tuned(path: Path, threads: int, x: np.ndarray) -> Call:
    """OpenVINO used well: write into the request's input buffer, ``infer()``, read the output."""
    req = _ov_request(path, threads, x.shape[0])
    view = req.get_input_tensor(0).data
    out = req.get_output_tensor

    def call() -> Any:
        view[...] = x
        req.infer()
        return out(0).data

    return call


def _timed(fn: Call, into: list[int]) -> None:
    t0 = time.perf_counter_ns()
    fn()
    into.append(time.perf_counter_ns() - t0)


def compare(engine: Call, plain: Call, rounds: int, block_s: float) -> dict[str, float]:
    """Median over adjacent (engine, plain) call pairs of their latency ratio."""
    for _ in range(5):  # warm-up both
        engine(), plain()
    probe: list[int] = []
    for _ in range(5):
        _timed(plain, probe)
    iters = max(3, round(block_s / max(statistics.median(probe) / 1e9, 1e-7)))
    pairs, eng_all, plain_all = [], [], []
    for r in range(rounds):
        e: list[int] = []
        p: list[int] = []
        for i in range(iters):
            # call by call, alternating which goes first, so load hits both alike
            first, second = ((engine, e), (plain, p)) if (r + i) % 2 else ((plain, p), (engine, e))
            _timed(*first)
            _timed(*second)
        pairs += [a / b for a, b in zip(e, p, strict=True)]
        eng_all += e
        plain_all += p
    return {
        "engine_ms": statistics.median(eng_all) / 1e6,
        "plain_ms": statistics.median(plain_all) / 1e6,
        "ratio": statistics.median(pairs),
        "iters": iters,
    }


def measure(
    rt: str,
    art: Artifact,
    make_plain: Callable[[Path, int, np.ndarray], Call],
    x: np.ndarray,
    threads: int,
    rounds: int,
    block_s: float,
    control: bool,
) -> dict[str, Any]:
    """Two trials, the engine built first in one and the plain loop first in the other.

    The order in which two runtimes are built shifts their latencies by ~1-3% here (memory
    placement); the geometric mean of the two trials' ratios cancels that. ``control`` also runs
    plain against a second plain (an A/A ratio: this setup's noise floor).
    """
    assert art.onnx_path is not None
    path, b = art.onnx_path, x.shape[0]
    ratios, eng_ms, plain_ms, iters = [], [], [], 0
    for engine_first in (True, False):
        opts = EngineOptions(threads=threads)
        if engine_first:
            eng = create(rt, opts)
            eng.load(art, BatchRange.fixed(b))
            plain = make_plain(path, threads, x)
        else:
            plain = make_plain(path, threads, x)
            eng = create(rt, opts)
            eng.load(art, BatchRange.fixed(b))
        with eng:
            res = compare(partial(eng.infer, x), plain, max(1, rounds // 2), block_s)
        ratios.append(res["ratio"])
        eng_ms.append(res["engine_ms"])
        plain_ms.append(res["plain_ms"])
        iters = int(res["iters"])
    out = {
        "engine_ms": statistics.fmean(eng_ms),
        "plain_ms": statistics.fmean(plain_ms),
        "ratio": statistics.geometric_mean(ratios),
        "trials": ratios,
        "iters": iters,
        "aa": float("nan"),
    }
    if control:
        a, b2 = make_plain(path, threads, x), make_plain(path, threads, x)
        aa = [compare(a, b2, max(1, rounds // 2), block_s)["ratio"]]
        aa.append(compare(b2, a, max(1, rounds // 2), block_s)["ratio"])
        out["aa"] = max(aa)  # the worse of plain-vs-plain, in both roles
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="resnet50,lenet5")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--runtimes", default="onnxruntime,openvino")
    ap.add_argument("--rounds", type=int, default=30, help="rounds, split over the two trials")
    ap.add_argument("--block-s", type=float, default=0.2, help="target seconds per round")
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--control", action="store_true", help="also time plain vs plain (A/A)")
    ap.add_argument("--out", default="artifacts", help="where the FP32 ONNX files live")
    args = ap.parse_args(argv)

    threads = args.threads or physical_cores()
    plains = {
        "onnxruntime": [("sess.run", plain_ort)],
        "openvino": [("infer({0:x})", plain_ov), ("tuned", plain_ov_tuned)],
    }
    print(f"threads={threads} rounds={args.rounds} block_s={args.block_s}", file=sys.stderr)
    print(
        f"{'model':<10} {'batch':>5} {'runtime':<12} {'plain loop':<13} {'engine_ms':>10} "
        f"{'plain_ms':>10} {'ratio':>7} {'trials':>13} {'a/a':>6} {'iters':>6}"
    )
    worst = 0.0
    for model in args.models.split(","):
        spec = get_spec(model)
        path = Path(ensure_fp32(model, out_dir=args.out).onnx_path)
        art = Artifact(model, Precision.FP32, spec.input_shape, spec.num_classes, onnx_path=path)
        for b in (int(v) for v in args.batches.split(",")):
            x = random_batches(spec, count=1, batch=b, seed=0)[0]
            for rt in args.runtimes.split(","):
                for label, make_plain in plains[rt]:
                    res = measure(
                        rt, art, make_plain, x, threads, args.rounds, args.block_s, args.control
                    )
                    worst = max(worst, res["ratio"])
                    trials = "/".join(f"{t:.3f}" for t in res["trials"])
                    print(
                        f"{model:<10} {b:>5} {rt:<12} {label:<13} {res['engine_ms']:>10.3f} "
                        f"{res['plain_ms']:>10.3f} {res['ratio']:>7.3f} {trials:>13} "
                        f"{res['aa']:>6.3f} {res['iters']:>6}",
                        flush=True,
                    )
    print(f"worst ratio engine/plain: {worst:.3f} (goal <= 1.02)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
