"""Every engine available here (torch, onnxruntime, openvino) agrees with torch FP32 eager.

lenet5 runs in the default suite; resnet18 and googlenet (exports of ~10-20 s each) are marked
slow. FP32 results use FP32_GATE. OpenVINO's default may compute in BF16 on CPUs with BF16
units: then its effective precision must say so and it is held to the reduced-precision gate;
with ``inference_precision=f32`` it must meet FP32_GATE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cnnbench.engines import create, probe
from cnnbench.engines.base import BatchRange, EngineOptions
from cnnbench.export.parity import FP16_GATE, FP32_GATE, Tolerances
from cnnbench.export.parity import compare as parity
from tests.engines.conftest import artifact, inputs, reference

MODELS = [
    "lenet5",
    pytest.param("resnet18", marks=pytest.mark.slow),
    pytest.param("googlenet", marks=pytest.mark.slow),
]
CASES: list[tuple[str, dict[str, Any]]] = [
    ("torch", {}),
    ("onnxruntime", {}),
    ("openvino", {}),
    ("openvino", {"inference_precision": "f32"}),
]
# Reduced precision (BF16/FP16 compute): the FP16 gate (cosine >= 0.999, top-1 >= 0.99).
REDUCED: Tolerances = FP16_GATE


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("engine", "extra"),
    CASES,
    ids=lambda c: (
        (",".join(f"{k}={v}" for k, v in c.items()) or "default") if isinstance(c, dict) else c
    ),
)
def test_engine_agrees_with_torch_fp32(
    onnx_fp32: Callable[[str], Path], model: str, engine: str, extra: dict[str, Any]
) -> None:
    if not probe(engine).available:
        pytest.skip(f"{engine} unavailable: {probe(engine).reason}")
    x = inputs(model, batch=2)
    ref = reference(model, x)
    art = artifact(model, "fp32", onnx_fp32(model) if engine != "torch" else None)
    with create(engine, EngineOptions(extra=extra)) as eng:
        eng.load(art, BatchRange(1, 2, 4))
        out = eng.infer(x)
        ran = eng.describe()["effective_precision"]
    assert out.shape == ref.shape
    tol = FP32_GATE if ran == "fp32" else REDUCED
    report = parity(ref, out, tol)
    assert report, f"{engine} {extra} ran {ran}:\n{report.explain()}"
