"""Shared fixtures: FP32 ONNX files exported once per session (exports take seconds each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnnbench.engines.base import Artifact
from cnnbench.precision import Precision


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact folder for the session, so FP16/INT8 conversions reuse the FP32 exports."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def onnx_fp32(artifact_root: Path) -> Callable[[str], Path]:
    """``onnx_fp32(model)`` -> path of its FP32 ONNX file (dynamic batch), exported on first use."""
    from cnnbench.export.pipeline import ensure_fp32

    root = artifact_root
    made: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in made:
            made[model] = Path(ensure_fp32(model, out_dir=root, check=False).onnx_path)
        return made[model]

    return get


def artifact(model: str, precision: str = "fp32", onnx_path: Path | None = None) -> Artifact:
    from cnnbench.models import get_spec

    spec = get_spec(model)
    prec = Precision(precision)  # the tests name precisions as text; the library takes them typed
    return Artifact(model, prec, spec.input_shape, spec.num_classes, onnx_path=onnx_path)


def inputs(model: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Seeded random images through the model's normalisation (float32 NCHW)."""
    from cnnbench.data.images import random_batches
    from cnnbench.models import get_spec

    return random_batches(get_spec(model), count=1, batch=batch, seed=seed)[0]


def reference(model: str, x: np.ndarray) -> np.ndarray:
    """Torch eager FP32 logits of the zoo model (seeded init)."""
    import torch

    from cnnbench.models import get_model

    with torch.inference_mode():
        return get_model(model)(torch.from_numpy(x)).numpy()
