"""The cell spec: everything that defines one benchmark cell, typed, and one versioned JSON
document across every process boundary.

Producers build it from values parsed where they entered: the CLI's option types
(:mod:`cnnbench.cli.run_options`), a sweep file's loader and the service's request
(:mod:`bench.run.sweep_config`), the Python API (:meth:`CellSpec.create`). Consumers read it
back with :meth:`CellSpec.from_json`: the prepare step and the cell child
(:mod:`bench.run.child`), and a Ray task (which gets the object itself). Decoding checks the
version and rebuilds the typed values; it re-parses no name and re-checks no value.

A user's model travels in the spec (``user_model``): the child registers it as it is
(:func:`cnnbench.models.adopt_user_model`) and reads nothing again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cnnbench import engines
from cnnbench.bench.measure.cuda_timing import (
    END_TO_END,
    GPU_COMPUTE,
    check_timing,
    parse_timing,
)
from cnnbench.bench.measure.loadgen import ServerConfig
from cnnbench.bench.measure.scenarios import canonical_scenario, check_batch
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.results.files import cell_key
from cnnbench.errors import ArtifactError, InvalidInputError
from cnnbench.models import (
    adopt_user_model,
    get_spec,
    resolve_weights,
    user_model,
    weights_provenance,
)
from cnnbench.models.spec import ModelSpec
from cnnbench.models.user import UserModel
from cnnbench.precision import Int8Recipe, Precision, parse_precision

#: the version of the JSON document; a reader refuses any other (2: ``timing``, ``fp16_converter``)
SPEC_VERSION = 3


@dataclass(frozen=True)
class CellSpec:
    """One cell, typed: the model, engine, precision, batch, scenario and how it is measured.

    Values are checked before a spec is made (by its producer); the constructor trusts them.
    Use :meth:`create` to make one from loose values (names, text), as the Python API.
    """

    model: str
    model_spec: ModelSpec
    #: a canonical engine name (``onnxruntime``, not ``ort``)
    engine: str
    #: the requested precision (the row's ``precision``)
    precision: Precision = Precision.FP32
    batch: int = 1
    #: a canonical scenario name
    scenario: str = "offline"
    device: str = "cpu"
    threads: int | None = None
    stop: StopRule = field(default_factory=StopRule)
    server: ServerConfig | None = None
    #: the weights file the model loads (None: a seeded initialisation)
    weights: str | None = None
    #: where the weights came from (the row's ``weights``): seeded-init:SEED, sha256:HEX,
    #: torchvision:NAME, timm:NAME, url:URL, or a user ONNX file's onnx-sha256:HEX
    weights_id: str = "seeded-init:0"
    artifacts: str = "artifacts"
    seed: int = 0
    #: the user's model (an ONNX file or module factory), as read where it was named
    user_model: UserModel | None = None
    #: which measurement of the cell this is (0, 1, ... with ``repeats``), each in its process
    repeat: int = 0
    #: how an INT8 or FP8 file is made (quantizer, calibration); used only at those precisions
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    #: this cell's engine options, typed and checked by the engine's schema
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    #: on a GPU, how a query is timed: end_to_end or gpu_compute (bench.measure.cuda_timing)
    timing: str = END_TO_END
    #: how an FP16 file is made (onnxconverter, autocast); used only at precision fp16
    fp16_converter: str = "onnxconverter"
    #: after measuring, profile the cell per layer (not part of its identity: the profile
    #: runs after the measured window, on a session of its own)
    profile: bool = False
    #: set by the launcher's preparation: the ONNX file the engine loads, and its sha256
    onnx_path: str | None = None
    onnx_sha256: str | None = None
    #: set by the launcher: params and MACs (and the matmul peak cached), so the measured
    #: process runs no analysis and no peak microbenchmark of its own
    facts: Mapping[str, Any] | None = None

    @classmethod
    def create(
        cls,
        model: str,
        engine: str,
        *,
        precision: Precision | str = Precision.FP32,
        batch: int = 1,
        scenario: str = "offline",
        device: str | None = None,
        threads: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
        weights: str | None = None,
        seed: int = 0,
        timing: str = END_TO_END,
        **rest: Any,
    ) -> CellSpec:
        """A spec from loose values, each checked once here: the Python API's way in.

        ``model`` is a registered name (zoo or user model), ``engine`` a name or alias,
        ``precision`` a name, ``weights`` a file or torchvision / timm / a URL (fetched and
        checked here), ``timing`` a timing mode; ``rest`` are the other fields, already typed
        (``stop``, ...).
        """
        eng = engines.canonical(engine)
        dev = engines.parse_device(device or engines.default_device(eng))
        scen = canonical_scenario(scenario)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
        check_batch(scen, batch)
        if scen == "server" and rest.get("server") is None:
            raise InvalidInputError("the server scenario needs --target-qps or --find-peak")
        w = resolve_weights(model, weights) if weights is not None else None
        mode = parse_timing(timing)
        check_timing(mode, dev, (scen,))
        opts = engines.check_options(eng, dev, engine_options or {})
        recipe = rest.get("int8")
        rest["int8"] = (recipe if isinstance(recipe, Int8Recipe) else Int8Recipe()).for_engine(
            eng, opts
        )
        return cls(
            model=model,
            model_spec=get_spec(model),
            engine=eng,
            precision=parse_precision(precision),
            batch=batch,
            scenario=scen,
            device=dev,
            threads=None if threads is None else engines.parse_threads(threads),
            engine_options=timing_options(eng, dev, mode, opts),
            timing=mode,
            user_model=user_model(model),
            weights=str(w.path) if w else None,
            weights_id=weights_provenance(model, w, seed),
            seed=seed,
            **rest,
        )

    def options_text(self, *, identity_only: bool = False) -> str:
        """The engine options as ``k=v,...``: all of them, or those that change the result."""
        cls = engines.get_engine_class(self.engine)
        return cls.option_text(self.engine_options, identity_only=identity_only)

    def variant(self) -> str:
        """The cell's choices beyond the grid's axes that change what is measured (blank for
        the defaults): part of its key, so compare never matches two different setups."""
        parts = []
        if self.precision == Precision.INT8:
            if self.int8.quantizer != "ort":
                parts.append(f"quantizer={self.int8.quantizer}")
            parts.append(f"qdq={self.int8.target}")
        if self.precision == Precision.FP16 and self.fp16_converter != "onnxconverter":
            parts.append(f"fp16_converter={self.fp16_converter}")
        if self.timing != END_TO_END:
            parts.append(f"timing={self.timing}")
        opts = self.options_text(identity_only=True)
        if opts:
            parts.append(opts)
        return ",".join(parts)

    def key(self) -> str:
        """The cell's identity in rows, results files and the store (with its repeat)."""
        row: dict[str, Any] = {
            "model": self.model, "engine": self.engine, "precision": self.precision,
            "device": self.device, "batch": self.batch, "scenario": self.scenario,
        }  # fmt: skip
        if self.server is not None and self.scenario == "server":
            row["target_qps"] = None if self.server.find_peak else self.server.target_qps
        row["repeat"] = self.repeat
        row["variant"] = self.variant()
        return cell_key(row)

    def with_repeat(self, repeat: int) -> CellSpec:
        return replace(self, repeat=repeat)

    # ---- the wire ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # nested dataclasses as dicts; Precision stays a str
        d["model_spec"] = self.model_spec.to_dict()
        d["user_model"] = self.user_model.to_dict() if self.user_model else None
        d["engine_options"] = dict(self.engine_options)
        d["facts"] = dict(self.facts) if self.facts is not None else None
        return {"cell_spec_version": SPEC_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellSpec:
        """Decode :meth:`to_dict`'s document; another version is refused in one line."""
        version = d.get("cell_spec_version")
        if version != SPEC_VERSION:
            raise ArtifactError(
                f"cell spec version {version!r}, this cnnbench reads version {SPEC_VERSION}: "
                "the launcher and the cell must run the same cnnbench"
            )
        v = {k: d[k] for k in d if k != "cell_spec_version"}
        v["model_spec"] = ModelSpec.from_dict(v["model_spec"])
        v["precision"] = Precision(v["precision"])
        v["stop"] = StopRule(**v["stop"])
        v["server"] = ServerConfig(**v["server"]) if v.get("server") else None
        v["int8"] = Int8Recipe(**v["int8"])
        v["user_model"] = UserModel.from_dict(v["user_model"]) if v.get("user_model") else None
        return cls(**v)

    @classmethod
    def from_json(cls, text: str) -> CellSpec:
        return cls.from_dict(json.loads(text))

    def adopt(self) -> CellSpec:
        """Register the spec's user model in this process (a child's first step), so every
        lookup by name finds it; returns the spec."""
        if self.user_model is not None:
            adopt_user_model(self.user_model)
        return self


def timing_options(engine: str, device: str, timing: str, options: Mapping[str, Any]) -> dict:
    """``options`` with timing mode ``timing``'s defaults: in ``gpu_compute`` an engine that
    can replay a CUDA graph does (trtexec 11's default), unless the options say otherwise."""
    if timing != GPU_COMPUTE:
        return dict(options)
    return engines.graph_defaults(engine, device, options)
