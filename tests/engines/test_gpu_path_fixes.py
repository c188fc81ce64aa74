"""Fixes of the GPU path found by reading (issue #13), tested here on fakes and on CPU torch:
these test our logic, never that the GPU path works (``pytest -m gpu`` / ``-m trt`` do that)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.engines.cuda import restore_tf32, strict_fp32, tf32_enabled
from cnnbench.engines.tensorrt_engine import engine_device_memory
from cnnbench.precision import Precision


def test_fp32_means_fp32_tf32_off_then_restored() -> None:
    # a torch before 2.9: only the legacy allow_tf32 flags (torch_module is any object with
    # torch's backends; 2.9 on, see tests/engines/test_gpu_numbers.py)
    b = SimpleNamespace(
        cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=True)),
        cudnn=SimpleNamespace(allow_tf32=True),  # cuDNN's default is on
    )
    torch = SimpleNamespace(backends=b)
    before = strict_fp32(torch)
    assert (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32) == (False, False)
    assert tf32_enabled(torch) is False
    restore_tf32(torch, before)
    assert (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32) == (True, True)
    assert tf32_enabled(torch) is True


def test_engine_device_memory_on_tensorrt_10_0_and_later() -> None:
    # 10.1+ (and 11): device_memory_size_v2; 10.0 has only device_memory_size
    assert engine_device_memory(SimpleNamespace(device_memory_size_v2=3 << 20)) == 3 << 20
    assert engine_device_memory(SimpleNamespace(device_memory_size=5 << 20)) == 5 << 20
    both: Any = SimpleNamespace(device_memory_size_v2=7, device_memory_size=1)
    assert engine_device_memory(both) == 7


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("precision", "strict"), [("fp32", True), ("fp16", False)])
def test_the_torch_engine_turns_tf32_off_for_fp32_on_cuda(
    monkeypatch: pytest.MonkeyPatch, precision: str, strict: bool
) -> None:
    pytest.importorskip("torch")
    import cnnbench.engines.torch_engine as te
    from cnnbench.engines.base import BatchRange, EngineOptions
    from tests.engines.conftest import artifact

    calls = []

    def record(torch: Any) -> tuple[bool, bool]:
        calls.append(torch)
        raise _Stop  # far enough: the rest of load needs a real GPU

    monkeypatch.setattr(te, "require_cuda", lambda device, what: 0)
    monkeypatch.setattr(te, "strict_fp32", record)
    eng = te.TorchEngine(EngineOptions(device="cuda"))
    with pytest.raises(Exception) as err:  # _Stop, or the CPU build's missing CUDA for fp16
        eng.load(artifact("lenet5", precision), BatchRange.fixed(1))
    assert (err.type is _Stop) == strict
    assert bool(calls) == strict


def test_ort_tensorrt_ep_engine_cache_is_keyed_by_the_files_content(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bug 7: ONNX Runtime hashes the file *name* into its engine-cache id, and every artifact
    # is a model.onnx: two files with other weights must never share a cache folder.
    from cnnbench.batch import BatchRange
    from cnnbench.engines.base import EngineOptions
    from cnnbench.engines.onnxruntime_engine import OrtEngine
    from tests.engines.conftest import artifact

    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    paths = []
    for i, content in enumerate((b"weights-a", b"weights-b", b"weights-a")):
        f = tmp_path / f"export{i}" / "model.onnx"
        f.parent.mkdir()
        f.write_bytes(content)
        eng = OrtEngine(EngineOptions("cuda", None, {"providers": ["tensorrt"]}))
        opts = eng._provider_options(
            "TensorrtExecutionProvider", artifact("lenet5", "fp32", f), BatchRange.fixed(4)
        )
        paths.append(opts["trt_engine_cache_path"])
    assert paths[0] != paths[1]  # other weights: another engine
    assert paths[0] == paths[2]  # same bytes elsewhere: the same engine, reused


def test_use_device_makes_cuda_n_current(monkeypatch: pytest.MonkeyPatch) -> None:
    # bug 4: nothing selected cuda:N, so work landed on device 0
    import cnnbench.engines.cuda as cu

    torch = pytest.importorskip("torch")
    made = []
    monkeypatch.setattr(cu, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda i: made.append(i) or contextlib.nullcontext())
    with cu.use_device("cuda:3"):
        pass
    with cu.use_device("cuda"):
        pass
    with cu.use_device("cpu"):
        pass
    assert made == [3, 0]


def test_a_cell_on_cuda_n_runs_under_device_n(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # bug 4 and 5 together: the whole cell (load, measurement, close) runs with cuda:N
    # current, and NVML is asked for that device (here the null engine, which touches no GPU)
    import cnnbench.bench.run.cell as runner
    from cnnbench.bench.measure.timing import StopRule

    entered: list[str] = []
    sampled: list[int] = []

    @contextlib.contextmanager
    def record(device: str) -> Any:
        entered.append(device)
        yield

    class Sampler(runner.NvmlSampler):
        def baseline(self) -> Any:
            sampled.append(self.index)
            return super().baseline()

    monkeypatch.setattr(runner, "use_device", record)
    monkeypatch.setattr(runner, "NvmlSampler", Sampler)
    stop = StopRule(warmup_count=1, warmup_time=0, min_count=3, min_time=0, max_time=1)
    spec = CellSpec.create(
        "lenet5", "null", device="cuda:1", stop=stop, artifacts=str(tmp_path), scenario="offline"
    )
    row = runner.run_cell(spec)
    assert row["error"] is None
    assert entered == ["cuda:1"] and sampled == [1]


def test_tensorrt_lists_only_precisions_that_have_a_file() -> None:
    # bug 8: TensorRT listed bf16, which no export path writes, so `-p bf16` could only fail;
    # strongly typed, it runs exactly the precisions the ONNX files carry
    from cnnbench.engines.tensorrt_engine import TensorRTEngine

    assert Precision.BF16 not in TensorRTEngine.precisions
    assert TensorRTEngine.precisions and all(p.has_onnx for p in TensorRTEngine.precisions)


def test_build_default_profile_is_the_one_run_uses() -> None:
    # minor: build's default 1:8:32 never matched run's fixed profile, so run rebuilt
    from cnnbench.batch import BatchRange
    from cnnbench.cli.engine_cmds import build_cmd
    from cnnbench.engines.trt_cache import BuildOptions, BuildTarget, cache_key

    (opt,) = [p for p in build_cmd.params if p.name == "batches"]
    target = BuildTarget("0" * 64, "10.13.0", "NVIDIA H200", "9.0", "input", (3, 224, 224))
    built = BuildOptions(Precision.FP16, BatchRange.parse(str(opt.default)))
    run_b1 = BuildOptions(Precision.FP16, BatchRange.fixed(1))  # what run_cell loads for -b 1
    assert cache_key(target, built) == cache_key(target, run_b1)


def test_tensorrt_close_drops_every_device_buffer() -> None:
    # minor: close() kept the I/O buffers (and the runtime) alive
    from cnnbench.engines.tensorrt_engine import TensorRTEngine

    eng = TensorRTEngine()
    for name in ("_context", "_engine", "_runtime", "_in", "_out"):
        setattr(eng, name, object())
    eng.close()
    assert all(getattr(eng, n) is None for n in ("_context", "_engine", "_runtime", "_in", "_out"))


# --- the TensorRT build on Polygraphy's loaders: the calls we make, checked on fakes ----------


class _PgFake:
    """Polygraphy's TensorRT loaders as build_plan calls them, recording what it asks for."""

    def __init__(self) -> None:
        self.network_kw: dict[str, Any] = {}
        self.configs: list[dict[str, Any]] = []
        self.built = 0
        tensor = SimpleNamespace(name="input", shape=(-1, 3, 32, 32))
        self.network = SimpleNamespace(get_input=lambda i: tensor)

    def NetworkFromOnnxPath(self, path: str, **kw: Any) -> Any:  # noqa: N802 - Polygraphy's names
        self.network_kw = {"path": path, **kw}
        return lambda: ("builder", self.network, "parser")

    def Profile(self) -> Any:  # noqa: N802
        shapes: dict[str, Any] = {}

        class P:
            def add(self, name: str, min: Any, opt: Any, max: Any) -> Any:  # noqa: A002
                shapes[name] = (min, opt, max)
                return shapes

        return P()

    def CreateConfig(self, **kw: Any) -> Any:  # noqa: N802
        self.configs.append(kw)

        def make(builder: Any, network: Any) -> Any:
            cache = kw.get("load_timing_cache")
            if cache is not None and Path(cache).read_bytes() == b"corrupt":
                raise RuntimeError("timing cache deserialization failed")
            serialized = SimpleNamespace(serialize=lambda: b"fresh-cache")
            return SimpleNamespace(get_timing_cache=lambda: serialized)

        return make

    def EngineBytesFromNetwork(self, network: Any, config: Any) -> Any:  # noqa: N802
        self.built += 1
        return lambda: b"plan"


def _fake_trt(version: str) -> Any:
    return SimpleNamespace(
        __version__=version,
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        ProfilingVerbosity=SimpleNamespace(DETAILED="DETAILED"),
    )


@pytest.mark.parametrize(("version", "strongly"), [("10.13.0", True), ("11.0.0", False)])
def test_trt_build_clears_tf32_and_is_strongly_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str, strongly: bool
) -> None:
    # bug 1, TensorRT side: BuilderFlag.TF32 is on by default; Polygraphy clears it for tf32=False
    import cnnbench.engines.trt_build as tb
    from cnnbench.batch import BatchRange
    from cnnbench.engines.trt_cache import BuildOptions

    pg = _PgFake()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(version))
    monkeypatch.setattr(tb, "_polygraphy", lambda: pg)
    plan = tb.build_plan(
        tmp_path / "model.onnx", BuildOptions(Precision.FP32, BatchRange(1, 4, 8), 256, 3), None
    )
    assert plan == b"plan" and pg.built == 1
    (cfg,) = pg.configs
    assert cfg["tf32"] is False
    assert pg.network_kw["strongly_typed"] is strongly  # on 11 the flag is gone: always strong
    assert cfg["profiles"] == [{"input": ((1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))}]
    assert cfg["memory_pool_limits"] == {"WORKSPACE": 256 << 20}
    assert cfg["builder_optimization_level"] == 3
    assert cfg["profiling_verbosity"] == "DETAILED"


def test_a_corrupt_timing_cache_is_replaced_not_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # bug 3: a corrupt cache made every later build fail, and the bad file stayed
    import cnnbench.engines.trt_build as tb
    from cnnbench.batch import BatchRange
    from cnnbench.engines.trt_cache import BuildOptions

    pg = _PgFake()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.13.0"))
    monkeypatch.setattr(tb, "_polygraphy", lambda: pg)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"corrupt")
    opts = BuildOptions(Precision.FP16, BatchRange.fixed(1))
    assert tb.build_plan(tmp_path / "model.onnx", opts, cache) == b"plan"
    assert "unreadable" in capsys.readouterr().err
    assert [c["load_timing_cache"] for c in pg.configs] == [str(cache), None]
    assert cache.read_bytes() == b"fresh-cache"  # the bad file is gone, the new cache saved
    assert tb.build_plan(tmp_path / "model.onnx", opts, cache) == b"plan"  # and reused
    assert pg.configs[-1]["load_timing_cache"] == str(cache)


def test_trt_build_without_polygraphy_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnbench.engines.trt_build as tb
    from cnnbench.errors import RuntimeUnavailableError

    monkeypatch.setitem(sys.modules, "polygraphy", None)
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", None)
    with pytest.raises(RuntimeUnavailableError, match="Polygraphy is not installed"):
        tb._polygraphy()


def test_a_timing_cache_tensorrt_refused_is_dropped_after_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # TensorRT may refuse a cache (set_timing_cache -> False, ignored by Polygraphy): then the
    # config holds none after the build, and the bad file must not stay
    import cnnbench.engines.trt_build as tb
    from cnnbench.batch import BatchRange
    from cnnbench.engines.trt_cache import BuildOptions

    pg = _PgFake()
    make = pg.CreateConfig
    pg.CreateConfig = lambda **kw: (  # type: ignore[method-assign]
        lambda b, n: (make(**kw)(b, n), SimpleNamespace(get_timing_cache=lambda: None))[1]
    )
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.13.0"))
    monkeypatch.setattr(tb, "_polygraphy", lambda: pg)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"refused")
    opts = BuildOptions(Precision.FP16, BatchRange.fixed(1))
    assert tb.build_plan(tmp_path / "model.onnx", opts, cache) == b"plan"
    assert not cache.exists()
