"""Engine options: typed per engine, one parser for --engine-opt text, YAML and Python values,
one-line errors naming the known keys, and the options in the row and the cell's key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cnnbench.bench.run.cell import base_row
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.sweep_config import SweepConfig, load_config
from cnnbench.cli.run_options import RunOptions
from cnnbench.engines import canonical, create, engine_names, get_engine_class
from cnnbench.engines.base import BatchRange, EngineOptions
from cnnbench.engines.openvino_engine import compile_config
from cnnbench.engines.options import Option, parse_assignments
from cnnbench.errors import InvalidInputError
from tests.engines.conftest import artifact


def _flags(*opts: str, engines: tuple[str, ...] = ("openvino",)) -> SweepConfig:
    """The grid of ``run -m lenet5 -e ENGINES -b 1 --engine-opt OPT...``, as its flags give it."""
    params = {"models": "lenet5", "engines": tuple(canonical(e) for e in engines),
              "batches": (1,), "engine_opts": opts}  # fmt: skip
    return RunOptions.from_params(params).grid()


@pytest.mark.parametrize(
    ("engine", "text", "typed"),
    [
        ("openvino", "inference_precision=F32", {"inference_precision": "f32"}),
        ("openvino", "num_streams=2", {"num_streams": 2}),
        ("openvino", "num_streams=auto", {"num_streams": "auto"}),
        ("openvino", "snippets=Disable", {"snippets": "disable"}),
        ("openvino", 'config={"ENABLE_CPU_PINNING": false}', {"config": {"ENABLE_CPU_PINNING": False}}),
        ("torch", "compile=true", {"compile": True}),
        ("torch", "compile=max-autotune", {"compile": "max-autotune"}),
        ("torch", "channels_last=off", {"channels_last": False}),
        ("onnxruntime", "graph_optimization_level=basic", {"graph_optimization_level": "basic"}),
        ("onnxruntime", "providers=cpu", {"providers": ["cpu"]}),
        ("tensorrt", "workspace_mb=512", {"workspace_mb": 512}),
        ("tensorrt", "builder_optimization_level=5", {"builder_optimization_level": 5}),
        ("tensorrt", "timing_cache=off", {"timing_cache": "off"}),
        ("tensorrt", "cache_dir=/tmp/x", {"cache_dir": "/tmp/x"}),
    ],
)  # fmt: skip
def test_text_values_come_out_typed(engine: str, text: str, typed: dict[str, Any]) -> None:
    schemas = {engine: get_engine_class(engine).option_schema}
    assert parse_assignments([text], schemas) == {engine: typed}


@pytest.mark.parametrize(
    ("engine", "text", "message"),
    [
        ("openvino", "inference_precision=fp64", "inference_precision: not a known value.*f32|bf16"),
        ("openvino", "num_streams=0", "num_streams: out of range"),
        ("openvino", "num_streams=two", "num_streams: not an integer"),
        ("openvino", "config=[1]", "config: not a JSON object"),
        ("openvino", "snippets=off", "snippets: not a known value.*enable|disable"),
        ("torch", "compile=fast", "compile: not true or false"),
        ("onnxruntime", "graph_optimization_level=99", "not a known value"),
        ("tensorrt", "builder_optimization_level=6", "out of range.*0..5"),
        ("openvino", "pin_fp32=true", "no engine of this run has 'pin_fp32'.*inference_precision"),
        ("openvino", "nothing", "takes KEY=VALUE"),
        ("openvino", "torch.compile=true", "engine torch is not in this run"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_naming_what_is_known(
    engine: str, text: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as err:
        _flags(text, engines=(engine,))
    assert "\n" not in str(err.value)


def test_unqualified_key_goes_to_every_engine_that_has_it_and_qualified_to_one() -> None:
    schemas = {e: get_engine_class(e).option_schema for e in ("torch", "openvino")}
    got = parse_assignments(["compile=true", "ov.hint=throughput"], schemas, canonical)
    assert got == {"torch": {"compile": True}, "openvino": {"hint": "throughput"}}
    with pytest.raises(InvalidInputError, match="given twice"):
        parse_assignments(["hint=latency", "openvino.hint=throughput"], schemas)


def test_every_engine_checks_python_values_too() -> None:
    for name in engine_names():
        with pytest.raises(InvalidInputError, match=f"unknown {name} option 'nope'"):
            create(name, EngineOptions(extra={"nope": 1}))
        with pytest.raises(InvalidInputError, match=f"unknown {name} option 'nope'"):
            get_engine_class(name).check_options("cpu", {"nope": 1})  # no engine is made
    with pytest.raises(InvalidInputError, match="num_streams: not an integer"):
        create("openvino", EngineOptions(extra={"num_streams": True}))
    # combinations with the device are the engine's own checks, made as early
    with pytest.raises(InvalidInputError, match="cuda_graphs needs --device cuda"):
        CellSpec.create("lenet5", "torch", engine_options={"cuda_graphs": "true"})
    with pytest.raises(InvalidInputError, match="cuda_graphs needs --device cuda"):
        _flags("cuda_graphs=true", engines=("torch",))


def test_checking_options_makes_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid's options are checked by the engine's schema, never by making an engine: the
    only engine of a cell is the one its process loads."""
    made: list[str] = []
    for name in engine_names():
        cls = get_engine_class(name)
        real = cls.__init__

        def init(self: Any, options: Any = None, _real: Any = real, _name: str = name) -> None:
            made.append(_name)
            _real(self, options)

        monkeypatch.setattr(cls, "__init__", init)
    cfg = _flags("num_streams=2", "ort.graph_optimization_level=basic",
                 engines=("openvino", "onnxruntime", "torch", "null"))  # fmt: skip
    specs, _ = cfg.cells()
    CellSpec.from_json(specs[0].to_json())
    assert specs and made == []


def test_options_are_in_the_row_and_the_cell_key() -> None:
    plain = CellSpec.create("lenet5", "openvino")
    f32 = CellSpec.create("lenet5", "openvino", engine_options={"inference_precision": "f32"})
    cached = CellSpec.create("lenet5", "tensorrt", device="cuda", engine_options={"rebuild": "yes"})
    assert plain.variant() == "" and f32.variant() == "inference_precision=f32"
    assert plain.key() != f32.key() and f32.key().endswith("|inference_precision=f32")
    row = base_row(f32)
    assert row["engine_options"] == "inference_precision=f32" and row["cell"] == f32.key()
    # a forced rebuild is recorded but is not another cell
    assert cached.variant() == "" and base_row(cached)["engine_options"] == "rebuild=true"
    # the options survive the trip to the cell's process, typed
    assert CellSpec.from_json(f32.to_json()).engine_options == {"inference_precision": "f32"}


def test_run_flags_give_the_cells_their_options() -> None:
    cfg = _flags("inference_precision=f32", "num_streams=1")
    (spec,), _ = cfg.cells()
    assert spec.engine_options == {"inference_precision": "f32", "num_streams": 1}
    assert spec.variant() == "inference_precision=f32,num_streams=1"


def test_sweep_yaml_takes_one_set_or_a_list_of_sets(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "models: [lenet5]\nengines: [ort, ov]\nprecisions: [fp32]\nbatches: [1]\n"
        "scenarios: [offline]\nengine_options:\n  ov: [{}, {inference_precision: f32}]\n"
        "  onnxruntime: {graph_optimization_level: extended}\n"
    )
    specs, _ = load_config(cfg).cells()
    assert [(s.engine, s.variant()) for s in specs] == [
        ("onnxruntime", "graph_optimization_level=extended"),
        ("openvino", ""),
        ("openvino", "inference_precision=f32"),
    ]
    for body, message in [
        ("  torch: {compile: true}\n", "engine torch is not in 'engines'"),
        ("  ov: {inference_precision: f64}\n", "engine_options.openvino.*not a known value"),
        ("  ov: [{hint: latency}, {hint: latency}]\n", "listed twice"),
        ("  ov: 3\n", "must be a mapping or a list of mappings"),
    ]:
        cfg.write_text(
            "models: [lenet5]\nengines: [ov]\nprecisions: [fp32]\nbatches: [1]\n"
            f"scenarios: [offline]\nengine_options:\n{body}"
        )
        with pytest.raises(InvalidInputError, match=message):
            load_config(cfg)


def test_openvino_compile_config_follows_hint_and_streams() -> None:
    assert compile_config(4) == {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 4, "NUM_STREAMS": 1,
    }  # fmt: skip
    tput = compile_config(4, "bf16", "throughput")
    assert "NUM_STREAMS" not in tput and tput["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config(4, None, "throughput", "auto")["NUM_STREAMS"] == "AUTO"
    assert compile_config(4, snippets="disable")["SNIPPETS_MODE"] == "DISABLE"
    assert "SNIPPETS_MODE" not in compile_config(4)


def _int8_residual_block(path: Path) -> Path:
    """A residual block placed the TensorRT way: Q/DQ on conv inputs, int8 weights, the conv
    branch left float into the Add, the identity (the block's quantized input) the Add's other
    input, then ReLU and the next conv's input Q/DQ."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes: list[Any] = []
    inits: list[Any] = []

    def scale(tag: str) -> list[str]:
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), f"{tag}_s"))
        inits.append(numpy_helper.from_array(np.array(0, np.int8), f"{tag}_z"))
        return [f"{tag}_s", f"{tag}_z"]

    def qdq(src: str) -> str:
        nodes.append(helper.make_node("QuantizeLinear", [src, *scale(src)], [f"{src}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{src}_q", *scale(src + "d")],
                                      [f"{src}_dq"]))  # fmt: skip
        return f"{src}_dq"

    def conv(src: str, name: str, k: int) -> str:
        w = rng.integers(-100, 100, (32, 32, k, k), dtype=np.int8)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"),
                      numpy_helper.from_array(np.zeros(32, np.float32), f"{name}_b")])  # fmt: skip
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_w", *scale(name)],
                                      [f"{name}_wdq"]))  # fmt: skip
        nodes.append(helper.make_node("Conv", [src, f"{name}_wdq", f"{name}_b"], [name],
                                      name=name, pads=[k // 2] * 4))  # fmt: skip
        return name

    x = qdq("x")
    nodes.append(helper.make_node("Relu", [conv(x, "conv1", 3)], ["r1"], name="relu1"))
    nodes.append(helper.make_node("Add", [conv(qdq("r1"), "conv2", 3), x], ["s"], name="add"))
    nodes.append(helper.make_node("Relu", ["s"], ["r2"], name="relu2"))
    conv(qdq("r2"), "conv3", 1)
    g = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 16, 16])],
        [helper.make_tensor_value_info("conv3", TensorProto.FLOAT, [1, 32, 16, 16])], inits,
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_openvino_snippets_off_lets_the_conv_absorb_the_residual_add(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from cnnbench.engines.base import Artifact
    from cnnbench.precision import Precision

    art = Artifact(model="block", precision=Precision.INT8, input_shape=(32, 16, 16), num_classes=32,
                   input_name="x",
                   onnx_path=_int8_residual_block(tmp_path / "block.onnx"))  # fmt: skip
    absorbed_by = {}
    for snippets in ("enable", "disable"):
        with create("ov", EngineOptions(threads=1, extra={"snippets": snippets})) as eng:
            eng.load(art, BatchRange.fixed(1))
            assert eng.describe()["requested_config"]["SNIPPETS_MODE"] == snippets.upper()
            layers = eng.executed_layers() or []
        absorbed_by[snippets] = next(la.kind for la in layers if "add" in la.nodes)
    # the Add (and the ReLU after it) run inside conv2 once Snippets step aside; with them on,
    # OpenVINO 2024-2026 run them as a Subgraph of their own (recorded, not required)
    assert absorbed_by["disable"] == "Convolution", absorbed_by


def test_openvino_runs_the_requested_precision_and_hint(onnx_fp32: Callable[[str], Path]) -> None:
    pytest.importorskip("openvino")
    art = artifact("lenet5", onnx_path=onnx_fp32("lenet5"))
    opts = {"inference_precision": "f32", "hint": "throughput", "num_streams": 2}
    with create("ov", EngineOptions(threads=2, extra=opts)) as eng:
        eng.load(art, BatchRange.fixed(2))
        info = eng.describe()
    assert info["effective_precision"] == "fp32" and info["streams"] == 2
    assert info["performance_hint"] == "THROUGHPUT"
    bad = EngineOptions(extra={"config": {"NO_SUCH_PROPERTY": 1}})
    with create("ov", bad) as eng, pytest.raises(InvalidInputError, match="refused the options"):
        eng.load(art, BatchRange.fixed(2))


def test_onnxruntime_sets_the_graph_optimization_level(onnx_fp32: Callable[[str], Path]) -> None:
    import onnxruntime as ort

    art = artifact("lenet5", onnx_path=onnx_fp32("lenet5"))
    with create("ort", EngineOptions(extra={"graph_optimization_level": "basic"})) as eng:
        eng.load(art, BatchRange.fixed(1))
        so = eng._sess.get_session_options()  # type: ignore[attr-defined]
        info = eng.describe()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert info["graph_optimization_level"] == "ORT_ENABLE_BASIC"


def test_option_describe_spells_the_values() -> None:
    assert Option("n", "int", "", minimum=1, words=("auto",)).describe() == "n=INT >=1|auto"
    assert Option("p", "str", "", words=("off",), metavar="PATH").describe() == "p=PATH|off"
