"""Engine-cache keys, integrity checks and profile logic, tested without TensorRT."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from cnnbench.batch import BatchRange
from cnnbench.cli import cli
from cnnbench.engines.trt_build import ensure_engine, network_flags, onnx_input, profile_shapes
from cnnbench.engines.trt_cache import BuildOptions, BuildTarget, EngineCache, cache_key
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError
from cnnbench.precision import Precision

TARGET = BuildTarget(
    "ab" * 32, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "input", (3, 224, 224)
)
OPTS = BuildOptions(Precision.FP16, BatchRange(1, 8, 32), workspace_mb=1024, opt_level=3)


def _no_tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return True
    return getattr(tensorrt, "__version__", None) is None


def test_key_is_stable_and_hex() -> None:
    k = cache_key(TARGET, OPTS)
    assert k == cache_key(dataclasses.replace(TARGET), dataclasses.replace(OPTS))
    assert len(k) == 64 and int(k, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"trt_version": "11.0.0.1"},
        {"gpu_name": "NVIDIA L4"},
        {"compute_capability": "8.9"},
        {"input_name": "x"},
        {"input_shape": (3, 299, 299)},
    ],
)
def test_key_changes_with_the_target(change: dict[str, object]) -> None:
    assert cache_key(dataclasses.replace(TARGET, **change), OPTS) != cache_key(TARGET, OPTS)


@pytest.mark.parametrize(
    "change",
    [
        {"precision": "int8"},
        {"batches": BatchRange(1, 16, 32)},
        {"batches": BatchRange(1, 8, 64)},
        {"workspace_mb": 2048},
        {"workspace_mb": None},
        {"opt_level": 5},
    ],
)
def test_key_changes_with_the_options(change: dict[str, object]) -> None:
    assert cache_key(TARGET, dataclasses.replace(OPTS, **change)) != cache_key(TARGET, OPTS)


def test_build_options_validate() -> None:
    with pytest.raises(ValueError, match="precision"):
        BuildOptions("fp64", BatchRange.fixed(1))
    with pytest.raises(ValueError, match="opt_level"):
        BuildOptions(Precision.FP16, BatchRange.fixed(1), opt_level=6)
    with pytest.raises(ValueError, match="workspace_mb"):
        BuildOptions(Precision.FP16, BatchRange.fixed(1), workspace_mb=0)


def test_store_then_load_roundtrip(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = cache_key(TARGET, OPTS)
    plan = bytes(range(256)) * 100
    path = cache.store(key, plan, {"onnx": "m.onnx"})
    assert path == tmp_path / f"{key}.engine" and path.read_bytes() == plan
    meta = json.loads(cache.meta_path(key).read_text())
    assert meta["size"] == len(plan) and meta["key"] == key and meta["onnx"] == "m.onnx"
    assert cache.load(key) == plan
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{key}.engine", f"{key}.json"])


def test_missing_entry_is_none_without_warning(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert EngineCache(tmp_path).load("0" * 64) is None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_sidecar", "bad_sidecar", "other_key"])
def test_damaged_entry_is_rejected_and_removed(tmp_path: Path, capsys, damage: str) -> None:  # type: ignore[no-untyped-def]
    cache = EngineCache(tmp_path)
    key = cache_key(TARGET, OPTS)
    plan = b"\x01" * 4096
    cache.store(key, plan)
    eng, meta = cache.engine_path(key), cache.meta_path(key)
    if damage == "truncate":
        eng.write_bytes(plan[:1000])
    elif damage == "flip":
        eng.write_bytes(b"\x02" + plan[1:])
    elif damage == "no_sidecar":
        meta.unlink()
    elif damage == "bad_sidecar":
        meta.write_text("{not json")
    else:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": "f" * 64}))
    assert cache.load(key) is None
    err = capsys.readouterr().err
    assert "WARNING" in err and "rebuilding" in err and len(err.strip().splitlines()) == 1
    assert not eng.exists() and not meta.exists()
    cache.store(key, plan)  # the rebuild's write makes it whole again
    assert cache.load(key) == plan


def test_timing_cache_path_names_version_and_gpu(tmp_path: Path) -> None:
    p = EngineCache(tmp_path).timing_cache_path("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
    assert p.parent == tmp_path
    assert p.name == "timing-trt10.13.0.35-sm9.0-nvidia-h100-80gb-hbm3.cache"


def test_profile_shapes_for_a_dynamic_batch() -> None:
    lo, opt, hi = profile_shapes(BatchRange(1, 8, 32), ("N", 3, 224, 224))
    assert (lo, opt, hi) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert profile_shapes(BatchRange.fixed(4), (-1, 1, 32, 32))[2] == (4, 1, 32, 32)


def test_profile_shapes_reject_what_the_file_cannot_serve() -> None:
    with pytest.raises(InvalidInputError, match="fixed batch of 1"):
        profile_shapes(BatchRange(1, 8, 32), (1, 3, 224, 224))
    assert profile_shapes(BatchRange.fixed(1), (1, 3, 224, 224))[0] == (1, 3, 224, 224)
    with pytest.raises(InvalidInputError, match="fixed non-batch dims"):
        profile_shapes(BatchRange.fixed(1), ("N", 3, "H", "W"))


def test_onnx_input_reads_name_and_dims(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["images", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert onnx_input(path) == ("images", ("batch", 3, 8, 8))


def test_network_flags_are_strongly_typed_on_10_and_none_on_11() -> None:
    flag = SimpleNamespace(STRONGLY_TYPED=1)
    assert (
        network_flags(SimpleNamespace(__version__="10.13.0.35", NetworkDefinitionCreationFlag=flag))
        == 2
    )
    assert network_flags(SimpleNamespace(__version__="11.0.0.4")) == 0


@pytest.mark.skipif(not _no_tensorrt(), reason="TensorRT is installed here")
def test_ensure_engine_without_tensorrt_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailableError) as exc:
        ensure_engine(tmp_path / "m.onnx", OPTS, cache=EngineCache(tmp_path))
    assert "TensorRT is not installed" in str(exc.value) and "cnnbench[trt]" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not _no_tensorrt(), reason="TensorRT is installed here")
def test_cli_build_without_tensorrt_exits_2_with_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["build", "lenet5", "--batch", "1:8:32", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "TensorRT is not installed" in res.output
    assert list(tmp_path.iterdir()) == []  # failed before exporting anything


def test_cli_build_rejects_a_bad_range() -> None:
    res = CliRunner().invoke(cli, ["build", "lenet5", "--batch", "8:1:3"])
    assert res.exit_code == 2 and "min <= opt <= max" in res.output


@pytest.mark.trt
def test_build_and_run_lenet5_with_tensorrt(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    if _no_tensorrt():
        pytest.skip("TensorRT is not installed")
    import numpy as np

    from cnnbench.engines import create
    from cnnbench.engines.base import Artifact, EngineOptions
    from cnnbench.export.parity import FP32_GATE, compare
    from cnnbench.export.pipeline import ensure_fp32

    try:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU")
    except ImportError:
        pytest.skip("no torch")
    onnx_path = ensure_fp32("lenet5", out_dir=tmp_path).onnx_path
    art = Artifact("lenet5", Precision.FP32, (1, 32, 32), 10, onnx_path=onnx_path)
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    ref = create("torch")
    ref.load(art, BatchRange(1, 4, 8))
    opts = EngineOptions(device="cuda", extra={"cache_dir": str(tmp_path / "trt")})
    with create("trt", opts) as eng:
        eng.load(art, BatchRange(1, 4, 8))
        assert compare(ref.infer(x), eng.infer(x), FP32_GATE)
        assert eng.describe()["built_now"] is True
        assert eng.memory()["engine_device_memory_mb"] >= 0
    with create("trt", opts) as eng:  # second load: a cache hit
        eng.load(art, BatchRange(1, 4, 8))
        assert eng.describe()["built_now"] is False


def test_build_progress_monitor_prints_phases_and_an_eta(capsys) -> None:  # type: ignore[no-untyped-def]
    """Our monitor's logic, on a stand-in for ``trt.IProgressMonitor`` (not TensorRT itself)."""
    import types

    from cnnbench.engines.trt_build import progress_monitor

    class Base:
        def __init__(self) -> None:
            self.inited = True

    fake = types.SimpleNamespace(IProgressMonitor=Base)
    mon = progress_monitor(fake, "build m", every_s=0.0)
    assert isinstance(mon, Base) and mon.inited
    mon.phase_start("Building engine", None, 4)
    mon.phase_start("Tactic selection", "Building engine", 10)
    assert mon.step_complete("Tactic selection", 4) is True
    mon.phase_finish("Tactic selection")
    assert mon.step_complete("Tactic selection", 5) is True  # a finished phase prints nothing
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[build m] Building engine (4 steps)"  # only top-level phases announce
    assert err[1].startswith("[build m] Tactic selection 5/10, eta ") and len(err) == 2
    assert progress_monitor(types.SimpleNamespace(), "x") is None  # bindings without it
