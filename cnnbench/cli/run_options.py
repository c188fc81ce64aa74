"""The options of ``run``, as one typed object, shared by every command that takes some of them.

Each flag's value is parsed by its click type, once (:mod:`cnnbench.cli.flags`); what depends
on several flags (engine options per engine and device, the INT8 recipe only with int8, a
user's model and its shape) is checked by :meth:`RunOptions.from_params`. Inside, the
commands and the library receive typed values:

    run      -m -e -p -b -s  --device --threads --weights --artifacts --seed --engine-opt INT8 STOP SERVER
    layers   MODEL -e -p     --device --threads --weights --artifacts --seed --engine-opt INT8
    eval     MODEL -e -p -b  --device --threads --weights --artifacts --seed              INT8
    export   MODEL    -p                        --weights             --seed              INT8
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cnnbench import engines
from cnnbench.bench.measure.cuda_timing import END_TO_END, check_timing
from cnnbench.bench.measure.scenarios import SCENARIOS, check_batch
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.sweep_config import SweepConfig, server_config
from cnnbench.cli.common import resolve_models
from cnnbench.cli.flags import INT8_FIELDS, SERVER_FIELDS, STOP_FIELDS
from cnnbench.engines.options import parse_assignments
from cnnbench.errors import InvalidInputError
from cnnbench.export.calibration import calibration_set
from cnnbench.footprint import check_models
from cnnbench.models import check_weights, get_spec, list_models, resolve_weights
from cnnbench.precision import Int8Recipe, Precision, check_calib_source
from cnnbench.progress import note
from cnnbench.weights_hub import Weights


@dataclass(frozen=True)
class RunOptions:
    """``run``'s options, typed and checked together; other commands fill the fields they
    have (a command without ``--engine`` gets ``engines=()``)."""

    models: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    batches: tuple[int, ...] | None = None
    scenario: str = "offline"
    device: str | None = None
    threads: int | None = None
    #: the one model's weights, resolved (fetched and hash-checked) here
    weights: Weights | None = None
    artifacts: str = "artifacts"
    seed: int = 0
    repeats: int = 1
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    #: per engine of ``engines``, its typed options (checked for its device)
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: StopRule = field(default_factory=StopRule)
    #: the server scenario's flags as given (a ServerConfig needs the batches: :meth:`grid`)
    server: dict[str, Any] = field(default_factory=dict)
    #: on a GPU, how queries are timed (end_to_end, gpu_compute)
    timing: str = END_TO_END
    #: how FP16 files are made (onnxconverter, autocast)
    fp16_converter: str = "onnxconverter"
    #: profile each cell per layer after measuring it
    profile: bool = False

    @property
    def precision(self) -> Precision:
        """The one precision of a command that takes one."""
        return self.precisions[0]

    @property
    def engine(self) -> str:
        """The one engine of a command that takes one."""
        return self.engines[0]

    def device_of(self, engine: str) -> str:
        return self.device or engines.default_device(engine)

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> RunOptions:
        """The options from a command's click parameters (each already parsed by its type):
        what depends on several flags is checked here, once."""
        check_calib_source(p.get("calib_data"))  # a path that is not there: before any import
        models = _models(p)
        engs = _as_tuple(p.get("engines"))
        precisions = _as_tuple(p.get("precisions")) or (Precision.FP32,)
        device = p.get("device")
        kw: dict[str, Any] = {}
        for k in ("threads", "seed", "repeats"):
            if p.get(k) is not None:
                kw[k] = p[k]
        if p.get("artifacts") is not None:
            kw["artifacts"] = str(p["artifacts"])
        if p.get("weights"):
            if len(models) != 1:
                raise InvalidInputError("--weights applies to one model; give a single --model")
            kw["weights"] = resolve_weights(models[0], str(p["weights"]))
        timing = p.get("timing") or END_TO_END
        for e in engs:
            check_timing(timing, device or engines.default_device(e), (p.get("scenario") or "",))
        converter = p.get("fp16_converter")
        if converter and Precision.FP16 not in precisions:
            raise click.UsageError("--fp16-converter: for FP16 only; add --precision fp16")
        opts = cls(
            timing=timing, fp16_converter=converter or "onnxconverter",
            profile=bool(p.get("profile")),
            models=models, engines=engs, precisions=precisions, device=device,
            batches=_as_tuple(p.get("batches")) or None,
            scenario=p.get("scenario") or "offline",
            int8=_int8_recipe(p, precisions),
            engine_options=_engine_options(p.get("engine_opts") or (), engs, device),
            stop=_stop_rule(p), server={k: p[k] for k in SERVER_FIELDS if k in p}, **kw,
        )  # fmt: skip
        opts.check_footprint()
        return opts

    def check_footprint(self) -> None:
        """Size before work: each model's gate, calibration and batches against the memory
        free here (:mod:`cnnbench.footprint`), before anything is exported or allocated."""
        batches = self.batches or (SCENARIOS[self.scenario].default_batch,)
        gate = not self.engines or any(engines.get_engine_class(e).loads_onnx for e in self.engines)
        calib = self.int8.calib_samples if any(p.calibrated for p in self.precisions) else None
        check_models(self.models, batches=batches, gate=gate, calib_samples=calib)

    def grid(self) -> SweepConfig:
        """The grid ``run`` measures. Unlike a sweep file, a batch the scenario cannot take
        (single-stream at batch 8) is an error, not a skipped cell."""
        batches = self.batches or (SCENARIOS[self.scenario].default_batch,)
        for b in batches:
            check_batch(self.scenario, b)
        sv = None
        if self.scenario == "server":
            try:
                sv = server_config(self.server, batches, self.seed)
            except ValueError as exc:
                raise _as_flags(exc) from None
        return SweepConfig(
            models=self.models, engines=self.engines, precisions=self.precisions,
            batches=batches, scenarios=(self.scenario,), device=self.device,
            threads=self.threads, seed=self.seed, artifacts=self.artifacts,
            weights={self.models[0]: self.weights} if self.weights else {},
            timeout_s=max(600.0, self.stop.max_time * 4), stop=self.stop, server=sv,
            repeats=self.repeats, int8=self.int8, timing=self.timing,
            fp16_converter=self.fp16_converter, profile=self.profile,
            engine_options={e: (o,) for e, o in self.engine_options.items()},
        )  # fmt: skip


def _as_tuple(v: Any) -> tuple[Any, ...]:
    if v is None:
        return ()
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _models(p: Mapping[str, Any]) -> tuple[str, ...]:
    """The models named (``--model``/MODEL), each user model registered here, read once;
    with ``--model`` absent on a command that has it, the zoo's ImageNet models."""
    given = p.get("models", p.get("model"))
    if given is None:
        if "models" in p:  # run without --model: the zoo's ImageNet models
            return resolve_models(tuple(list_models(imagenet_only=True)), p)
        return ()
    names = tuple(t.strip() for t in str(given).split(",")) if "models" in p else (str(given),)
    if not all(names):
        raise InvalidInputError(f"--model needs a name or a comma-separated list, got {given!r}")
    models = resolve_models(names, p)
    for m in models:
        get_spec(m)  # an unknown name fails here, with suggestions
    return models


def _int8_recipe(p: Mapping[str, Any], precisions: tuple[Precision, ...]) -> Int8Recipe:
    given = {k: p[k] for k in INT8_FIELDS if p.get(k) is not None}
    if given and not any(q.calibrated for q in precisions):
        flags = "/".join("--" + k.replace("_", "-") for k in given)
        raise click.UsageError(f"{flags}: for INT8 and FP8 only; add --precision int8 or fp8")
    if Precision.FP8 in precisions and given.get("calib_method"):
        Int8Recipe(quantizer="modelopt", calib_method=given["calib_method"])  # FP8 is ModelOpt's
    if given.get("calib_data") not in (None, "digits", "random"):
        given["calib_data"] = str(Path(given["calib_data"]).absolute())  # cells run elsewhere
    return Int8Recipe(**given)


def _engine_options(
    texts: tuple[str, ...], engs: tuple[str, ...], device: str | None
) -> dict[str, dict[str, Any]]:
    """``--engine-opt`` texts typed per engine by its schema and checked for its device."""
    if texts and not engs:
        raise click.UsageError("--engine-opt needs --engine")
    schemas = {e: engines.get_engine_class(e).option_schema for e in engs}
    given = parse_assignments(texts, schemas, engines.canonical)
    out: dict[str, dict[str, Any]] = {}
    for e in engs:  # every engine: its defaults must suit the device too (cuda_graphs on cpu)
        typed = engines.check_options(e, device or engines.default_device(e), given.get(e, {}))
        if typed:
            out[e] = typed
    return out


def _stop_rule(p: Mapping[str, Any]) -> StopRule:
    try:
        return StopRule(**{k: p[k] for k in STOP_FIELDS if p.get(k) is not None})
    except ValueError as exc:
        raise _as_flags(exc) from None


# StopRule / ServerConfig field names as the flags spell them
_FLAG_FIELDS = STOP_FIELDS + SERVER_FIELDS


def _as_flags(exc: ValueError) -> InvalidInputError:
    """A config ValueError with its field names spelled as the flags."""
    msg = str(exc)
    for f in _FLAG_FIELDS:
        msg = msg.replace(f, "--" + f.replace("_", "-"))
    return InvalidInputError(msg)


def check_inputs(cfg: SweepConfig) -> None:
    """Inputs that would fail every cell fail here, once, before the first: the weights, and
    INT8 calibration data given as a path (its images or array are read and checked)."""
    for model, w in cfg.weights.items():
        check_weights(model, w.path)
    data = cfg.int8.calib_data
    if any(p.calibrated for p in cfg.precisions) and data not in (None, "digits", "random"):
        for model in cfg.models:
            calibration_set(get_spec(model), data, samples=cfg.int8.calib_samples)


def say_random_weights(models: tuple[str, ...] | list[str], provenance: dict[str, str]) -> None:
    """One console line (stderr) naming the models on a seeded random initialisation: their
    timings are real, their accuracy is not."""
    seeded = [m for m in models if provenance.get(m, "").startswith("seeded-init:")]
    if not seeded:
        return
    names = ", ".join(seeded[:3]) + (f" and {len(seeded) - 3} more" if len(seeded) > 3 else "")
    seeds = sorted({provenance[m] for m in seeded})
    note(
        f"random weights ({', '.join(seeds)}) for {names}: timings are real, accuracy is not "
        "meaningful; give --weights FILE|torchvision|timm|URL for trained ones"
    )
