"""The precision table: one parser, one message, and the values every layer reads from it."""

from __future__ import annotations

import json

import pytest

from cnnbench.errors import InvalidInputError, UnknownNameError
from cnnbench.precision import (
    ONNX_PRECISIONS,
    PRECISIONS,
    Precision,
    parse_precision,
    parse_precisions,
    precision_field,
)


def test_a_precision_is_its_name_everywhere() -> None:
    p = Precision.FP16
    assert p == "fp16" and str(p) == f"{p}" == "fp16" and hash(p) == hash("fp16")
    assert {"fp16": 1}[p] == 1 and json.dumps({"p": p}) == '{"p": "fp16"}'


def test_the_table() -> None:
    assert PRECISIONS == ("fp32", "fp16", "bf16", "int8", "fp8")
    assert ONNX_PRECISIONS == ("fp32", "fp16", "int8", "fp8")  # nothing writes a bf16 ONNX file
    assert [p.torch_dtype_name for p in PRECISIONS] == [
        "float32", "float16", "bfloat16", "int8", "float8_e4m3fn"
    ]  # fmt: skip
    assert [p.from_fp32 for p in ONNX_PRECISIONS] == [False, True, True, True]
    assert [p.calibrated for p in ONNX_PRECISIONS] == [False, False, True, True]
    # FP8 (E4M3) is gated, with bounds for its 3 mantissa bits; INT8 is reported only
    assert Precision.FP8.gate.min_cosine == 0.99 and Precision.FP8.gate.min_top1_agreement == 0.9
    assert Precision.FP32.gate.max_rel_err == 1e-5 and Precision.FP32.gate.min_top1_agreement == 1
    assert (
        Precision.FP16.gate.min_cosine == 0.999
        and Precision.INT8.gate.to_dict()
        == dict.fromkeys(("max_rel_err", "min_cosine", "min_top1_agreement", "min_top5_agreement"))
    )
    assert len({p.marker for p in PRECISIONS}) == 5
    assert Precision.INT8.onnx_dir == "int8"
    with pytest.raises(ValueError, match="no ONNX file"):
        _ = Precision.BF16.onnx_dir


def test_parse_once_with_one_message() -> None:
    assert parse_precision(" INT8 ") is Precision.INT8
    assert parse_precisions("fp32,int8") == (Precision.FP32, Precision.INT8)
    with pytest.raises(UnknownNameError, match="unknown precision 'fp61': did you mean fp16"):
        parse_precision("fp61")
    with pytest.raises(
        InvalidInputError,
        match="export cannot use precision bf16; choose from fp32, fp16, int8, fp8",
    ):
        parse_precision("bf16", ONNX_PRECISIONS, what="export")
    with pytest.raises(InvalidInputError, match="comma-separated"):
        parse_precisions("fp32,,int8")
    with pytest.raises(ValueError, match="precision: unknown precision 'fp64'"):
        precision_field("fp64")


def test_engines_list_only_what_the_export_path_produces() -> None:
    from cnnbench.engines import _ENGINES, probe

    for cls in _ENGINES.values():
        for device in cls.devices:
            runs = cls.precisions_on(device)
            assert set(runs) <= set(cls.precisions)
            if cls.loads_onnx:
                assert all(p.has_onnx for p in runs), (cls.name, device, runs)
    assert _ENGINES["tensorrt"].precisions == ONNX_PRECISIONS
    assert _ENGINES["torch"].precisions_on("cpu") == (Precision.FP32,)
    assert _ENGINES["torch"].precisions_on("cuda") == ("fp32", "fp16", "bf16")
    row = probe("torch").to_dict()
    assert row["precisions_by_device"]["cpu"] == ["fp32"] and row["precisions"] == ["fp32"]
