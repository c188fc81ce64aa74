"""Size before work: a model's declared input, and what the gate, calibration and the measured
batch hold at once, against the memory free here, before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnbench import footprint
from cnnbench.errors import InvalidInputError
from cnnbench.models import register_user_model
from cnnbench.models.user import forget_all
from tests.cnnbench.test_onnx_external import tiny


def test_the_largest_step_is_checked_against_what_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(footprint, "available_memory", lambda: (10 * 2**20, "available memory"))
    # 3x224x224 float32 = 588 KiB, held 3 times: 4 images (6.9 MiB) fit in 10 MiB, 256 do not
    footprint.check_fits("m", (3, 224, 224), {"parity gate": 2, "measurement": 4})
    with pytest.raises(InvalidInputError) as err:
        footprint.check_fits("m", (3, 224, 224), {"parity gate": 2, "INT8 calibration": 256})
    msg = str(err.value)
    assert msg.startswith(
        "m: input 3x224x224 float32, 256 image(s) at once in the INT8 calibration"
    )
    assert "10 MiB is free here (available memory)" in msg


def test_a_zoo_model_at_a_huge_batch_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="65536 image"):
        footprint.check_models(["resnet50"], batches=[1, 65536], gate=True, calib_samples=None)
    footprint.check_models(["resnet50"], batches=[1, 8], gate=True, calib_samples=256)


def test_a_user_file_declaring_a_huge_input_is_refused(tmp_path: Path) -> None:
    import onnx

    forget_all()
    m = tiny()
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 40_000, 40_000
    onnx.save(m, tmp_path / "big.onnx")
    name = register_user_model(str(tmp_path / "big.onnx")).name
    with pytest.raises(InvalidInputError, match="big: input 3x40000x40000 float32, 2 image"):
        footprint.check_models([name], batches=[1], gate=True, calib_samples=None)
    with pytest.raises(InvalidInputError, match="1 image"):
        footprint.check_file(tmp_path / "big.onnx", batch=1, step="measurement")
    forget_all()
