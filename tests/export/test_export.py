"""The export pipeline and the manifest: files, determinism, reuse, interrupts, parity in a
separate process. LeNet-5 keeps the default share cheap; every other zoo model is slow-marked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnbench.artifacts import sha256_file
from cnnbench.errors import ArtifactError
from cnnbench.export import manifest as mf


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory, memo_installer: Any) -> mf.ExportResult:
    from cnnbench.export.pipeline import export_fp32

    with pytest.MonkeyPatch.context() as mp:
        memo_installer(mp)
        return export_fp32("lenet5", out_dir=tmp_path_factory.mktemp("art"))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_manifest_fields(lenet: mf.ExportResult) -> None:
    m = lenet.manifest
    assert lenet.onnx_path.name == "model.onnx" and lenet.onnx_path.parent.name == "fp32"
    assert lenet.onnx_path.parent.parent.name == "lenet5"
    assert (m["model"], m["precision"], m["opset"], m["exporter"]) == (
        "lenet5",
        "fp32",
        18,
        "dynamo",
    )
    assert m["input"] == {"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}
    assert m["output"]["name"] == "logits" and m["output"]["shape"] == ["batch", 10]
    assert m["dynamic_axes"] == {"input": {"0": "batch"}, "logits": {"0": "batch"}}
    assert m["batch"] == {"min": 1, "opt": 8, "max": 64}
    assert m["onnx"]["sha256"] == sha256_file(lenet.onnx_path)
    assert m["onnx"]["bytes"] == lenet.onnx_path.stat().st_size
    assert m["weights"] == "seeded-init:0"
    import onnx
    import torch

    assert m["versions"]["torch"] == torch.__version__ and m["versions"]["onnx"] == onnx.__version__
    assert set(m["timings_s"]) == {"export", "check", "simplify", "parity"}
    assert all(v >= 0 for v in m["timings_s"].values())
    p = m["parity"]
    assert p["passed"] is True and p["reference"] == "torch-eager-fp32"
    assert p["samples"] == 3 * 2 + 1  # 3 batches of 2, plus one single-sample batch
    assert 0 <= p["metrics"]["max_rel_err"] <= 1e-5 and p["metrics"]["top1_agreement"] == 1.0
    # the written manifest is what the result says
    assert mf.read_manifest(lenet.manifest_path) == json.loads(json.dumps(m, default=str))
    assert _leftovers(lenet.onnx_path.parent) == []


def test_onnx_graph_interface(lenet: mf.ExportResult) -> None:
    import onnx

    proto = onnx.load(str(lenet.onnx_path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["cnnbench.model"] == "lenet5" and meta["cnnbench.weights"] == "seeded-init:0"
    # no source paths (stack traces) survive: they would make the bytes machine-dependent
    assert b"lenet.py" not in lenet.onnx_path.read_bytes()


def test_reexport_is_byte_identical(lenet: mf.ExportResult, tmp_path: Path) -> None:
    from cnnbench.export.pipeline import export_fp32

    again = export_fp32("lenet5", out_dir=tmp_path, check=False)
    assert again.sha256 == lenet.sha256
    assert again.onnx_path.read_bytes() == lenet.onnx_path.read_bytes()
    assert again.manifest["parity"] is None


def test_manifest_read_errors(tmp_path: Path, lenet: mf.ExportResult) -> None:
    with pytest.raises(ArtifactError, match="manifest not found"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"model": "x",')
    with pytest.raises(ArtifactError, match="corrupt"):
        mf.read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text('{"model": "x"}')
    with pytest.raises(ArtifactError, match="lacks"):
        mf.read_manifest(tmp_path)
    # a tampered ONNX file no longer matches its manifest
    art = tmp_path / "copy"
    art.mkdir()
    (art / "manifest.json").write_bytes(lenet.manifest_path.read_bytes())
    data = bytearray(lenet.onnx_path.read_bytes())
    data[-10] ^= 0xFF
    (art / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        mf.verify_artifact(art)
    (art / "model.onnx").write_bytes(lenet.onnx_path.read_bytes())
    assert mf.verify_artifact(art / "model.onnx")[1]["model"] == "lenet5"


def test_ensure_fp32_reuses_then_rebuilds(
    lenet: mf.ExportResult, tmp_path: Path, memo_export: list[str]
) -> None:
    import shutil

    import cnnbench.export.pipeline as pl
    from cnnbench.export.fp32_artifact import DEFAULT_DYNAMIC_BATCH

    root = tmp_path / "art"
    shutil.copytree(lenet.onnx_path.parent.parent.parent, root)
    hit = pl.ensure_fp32("lenet5", out_dir=root, batch=pl.BatchRange(1, 4, 16))
    assert memo_export == [] and hit.sha256 == lenet.sha256  # reused: no export at all
    assert mf.read_manifest(hit.manifest_path)["batch"] == {"min": 1, "opt": 4, "max": 16}
    # a corrupt cached file is detected and rebuilt, never trusted
    hit.onnx_path.write_bytes(b"\x00" * 64)
    rebuilt = pl.ensure_fp32("lenet5", out_dir=root, samples=1)
    assert len(memo_export) == 1 and rebuilt.sha256 == lenet.sha256
    assert rebuilt.manifest["parity"]["passed"]
    # what else forces a re-export
    folder = root / "lenet5" / "fp32"
    same = dict(model="lenet5", wid="seeded-init:0", opset=18, check=True)
    dyn = dict(batch=DEFAULT_DYNAMIC_BATCH, dynamic=True)
    assert pl._reuse_problem(folder, **same, **dyn) is None
    assert "weights" in str(pl._reuse_problem(folder, **{**same, "wid": "seeded-init:3"}, **dyn))
    assert "opset" in str(pl._reuse_problem(folder, **{**same, "opset": 17}, **dyn))
    fixed = dict(batch=pl.BatchRange.fixed(8), dynamic=False)
    assert "batch axis" in str(pl._reuse_problem(folder, **same, **fixed))
    m = mf.read_manifest(folder)
    m["versions"]["torch"] = "0.0.1"
    mf.write_manifest(folder / "manifest.json", m)
    assert "torch version" in str(pl._reuse_problem(folder, **same, **dyn))


@pytest.mark.parametrize("where", ["export", "save", "parity"])
def test_interrupt_leaves_no_partial_files(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo_export: list[str]
) -> None:
    import cnnbench.export.pipeline as pl
    from cnnbench.export import graph

    seen: list[Path] = []

    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    def half_written(model: Any, path: Path) -> list[str]:
        path.write_bytes(model.SerializeToString()[:1000])  # Ctrl-C in the middle of the write
        seen.append(path)
        raise KeyboardInterrupt

    if where == "save":
        monkeypatch.setattr(graph, "save", half_written)
    else:
        monkeypatch.setattr(pl, "export_module" if where == "export" else "gate", boom)
    with pytest.raises(KeyboardInterrupt):
        pl.export_fp32("lenet5", out_dir=tmp_path)
    # nothing partial, and no empty folder either: the folders the export made are gone again
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == []
    assert all(not p.exists() for p in seen) and len(seen) == (where == "save")


def test_fallback_exporter_and_fixed_batch(tmp_path: Path) -> None:
    from cnnbench.export.pipeline import BatchRange, export_fp32

    res = export_fp32("lenet5", out_dir=tmp_path, opset=13, batch=BatchRange.fixed(3), samples=1)
    m = res.manifest
    assert (m["exporter"], m["opset"]) == ("torchscript", 13)  # dynamo stays at 18 here
    assert "dynamo" in m["extra"]["exporter_notes"][0]
    assert m["input"]["shape"] == [3, 1, 32, 32] and m["dynamic_axes"] == {}
    assert m["parity"]["passed"] and m["parity"]["batch"] == 3


def test_external_data_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo_export: list[str]
) -> None:
    from cnnbench.export import graph
    from cnnbench.export.pipeline import export_fp32, verify_onnx

    monkeypatch.setattr(graph, "EXTERNAL_DATA_THRESHOLD", 0)  # pretend LeNet-5 is over 2 GB
    res = export_fp32("lenet5", out_dir=tmp_path, samples=1)
    data = res.onnx_path.with_name("model.onnx.data")
    assert res.manifest["onnx"]["external_data"] == ["model.onnx.data"]
    assert data.stat().st_size > 200_000 > res.onnx_path.stat().st_size
    assert "over 2 GiB" in res.manifest["extra"]["exporter_notes"][-1]
    assert set(res.manifest["timings_s"]) == {"export", "check", "parity"}  # checked from file
    assert res.manifest["parity"]["passed"]
    assert mf.verify_artifact(res.onnx_path.parent)[0] == res.onnx_path
    assert verify_onnx(res.onnx_path, samples=1)


def test_weights_from_state_dict_in_separate_process(tmp_path: Path) -> None:
    """Export resnet18 with perturbed saved weights; a fresh process running ONNX Runtime on the
    file and PyTorch with the same state dict agrees within 1e-5 relative error."""
    import torch

    from cnnbench.export.pipeline import export_fp32
    from cnnbench.models import get_model

    gen = torch.Generator().manual_seed(7)
    state = get_model("resnet18").state_dict()
    perturbed = {
        k: v * (1 + 0.1 * torch.rand(v.shape, generator=gen)) if v.is_floating_point() else v
        for k, v in state.items()
    }
    weights = tmp_path / "resnet18.pt"
    torch.save(perturbed, weights)
    res = export_fp32("resnet18", weights=weights, out_dir=tmp_path, samples=1)
    assert res.manifest["weights"] == "sha256:" + sha256_file(weights)
    assert res.manifest["parity"]["passed"]

    script = textwrap.dedent(
        f"""
        import numpy as np, onnxruntime as ort, torch
        from cnnbench.models import get_model
        model = get_model("resnet18", weights={str(weights)!r})
        x = np.random.default_rng(3).standard_normal((2, 3, 224, 224)).astype(np.float32)
        sess = ort.InferenceSession({str(res.onnx_path)!r}, providers=["CPUExecutionProvider"])
        got = sess.run(["logits"], {{"input": x}})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        same = bool((got.argmax(1) == ref.argmax(1)).all())
        print(f"REL {{rel:.3e}} SAME {{same}}")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    rel = float(line.split()[1])
    assert rel <= 1e-5 and line.endswith("SAME True"), line
    # and the seeded-init model differs from these weights: the check can fail
    unperturbed = get_model("resnet18")
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype("f4"))
    with torch.no_grad():
        assert not torch.allclose(unperturbed(x), get_model("resnet18", weights=weights)(x))


@pytest.mark.slow
def test_reexport_in_other_processes_is_byte_identical(tmp_path: Path) -> None:
    """Two fresh processes with different hash seeds write the same bytes."""
    import os

    shas = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = tmp_path / seed
        cmd = [sys.executable, "-m", "cnnbench", "export", "googlenet", "--out", str(out)]
        proc = subprocess.run([*cmd, "--no-check"], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        shas.append(sha256_file(proc.stdout.strip().splitlines()[-1]))
    assert shas[0] == shas[1]


def _zoo_models() -> list[str]:
    from cnnbench.models import list_models

    return [m for m in list_models() if m not in ("lenet5", "resnet18")]


@pytest.mark.slow
@pytest.mark.parametrize("model", _zoo_models())
def test_zoo_model_exports_and_passes_fp32_gate(model: str, tmp_path: Path) -> None:
    from cnnbench.export.pipeline import export_fp32, verify_onnx

    res = export_fp32(model, out_dir=tmp_path, samples=2)
    assert res.manifest["parity"]["passed"], res.manifest["parity"]
    assert res.manifest["parity"]["metrics"]["max_rel_err"] <= 1e-5
    assert verify_onnx(res.onnx_path, samples=1)
