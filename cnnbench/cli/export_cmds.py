"""Commands: ``export`` (PyTorch -> verified ONNX + manifest) and ``verify`` (re-check a file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cnnbench import limits
from cnnbench.batch import BatchRange
from cnnbench.cli.common import PrecisionType, cli, resolve_models
from cnnbench.cli.flags import (
    bounded,
    fp16_converter_option,
    precision_option,
    qdq_target_option,
    quantizer_option,
    user_model_options,
    weights_option,
)
from cnnbench.cli.run_options import say_random_weights
from cnnbench.errors import CheckFailedError, InvalidInputError
from cnnbench.export.calibration import calibration_set
from cnnbench.export.convert import DEFAULT_CALIB_SAMPLES, convert
from cnnbench.export.gate import print_report
from cnnbench.export.parity import report_from_dict
from cnnbench.export.pipeline import ensure_fp32, export_fp32, verify_onnx
from cnnbench.export.verify import recorded_precision
from cnnbench.footprint import check_file, check_models
from cnnbench.models import get_spec, resolve_weights, weights_provenance
from cnnbench.precision import CALIB_METHODS, ONNX_PRECISIONS, Precision, check_calib_source

_TOL_HELP = """\b
Parity gate (ONNX Runtime CPU vs PyTorch eager FP32, K seeded batches of preprocessed random
images, or real images with --data). Metrics per output: max abs error, max error relative to
max |reference|, cosine similarity per sample (min, mean), top-1 agreement, top-5 overlap.
Defaults: fp32 rel <= 1e-5, cosine >= 0.99999, top-1 agreement 1.0; fp16 cosine >= 0.999,
top-1 >= 0.99; int8 report only. --rtol/--cosine/--top1/--top5 override the bounds of the
gate for the requested precision. A failed gate prints the table and exits 1.
"""


def _batch_range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None

    try:
        return BatchRange.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _tolerance_options(f: Callable[..., Any]) -> Callable[..., Any]:
    unit = bounded(limits.FRACTION)
    opts = [
        click.option("--rtol", type=bounded(limits.RELATIVE_ERROR), help="Max relative error."),
        click.option("--cosine", type=bounded(limits.COSINE), help="Min cosine similarity."),
        click.option("--top1", type=unit, help="Min top-1 agreement (fraction, 0..1)."),
        click.option("--top5", type=unit, help="Min top-5 overlap (fraction, 0..1)."),
        click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Image folder."),
        click.option(
            "--samples", type=bounded(limits.GATE_SAMPLES), default=3, show_default=True,
            help="Batches the parity gate compares.",
        ),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


@cli.command("export", epilog=_TOL_HELP)
@click.argument("model")
@weights_option
@click.option(
    "--opset",
    type=bounded(limits.OPSET),
    default=None,
    help="ONNX opset (default 18, the exporter's own).",
)
@click.option("--batch", "-b", "fixed", type=bounded(limits.BATCH), help="Fixed batch size.")
@click.option(
    "--dynamic-batch", "dyn", callback=_batch_range, metavar="MIN:OPT:MAX",
    help="Dynamic batch axis and the range engines should serve (default 1:8:64).",
)  # fmt: skip
@click.option(
    "--out", "-o", "out_dir", type=click.Path(file_okay=False), default="artifacts",
    show_default=True, help="Artifact root: writes OUT/<model>/<precision>/model.onnx.",
)  # fmt: skip
@click.option("--no-check", is_flag=True, help="Skip the parity gate.")
@_tolerance_options
@precision_option(
    many=False, choices=ONNX_PRECISIONS, what="export", dest="precision",
    help="The file's precision: fp32, or fp16/int8/fp8 (E4M3) converted from the verified "
    "fp32 file.",
)  # fmt: skip
@click.option(
    "--calib-data",
    type=click.Path(),
    help="INT8/FP8 calibration: an image folder, a .npy array of preprocessed inputs "
    "(N,C,H,W), 'digits' or 'random'.",
)
@click.option("--calib-method", type=click.Choice(CALIB_METHODS))
@click.option(
    "--calib-samples", type=bounded(limits.CALIB_SAMPLES), help="INT8/FP8 calibration images used."
)
@quantizer_option
@qdq_target_option
@fp16_converter_option
@click.option(
    "--seed", type=bounded(limits.SEED), default=0, show_default=True,
    help="Weight-init + input seed.",
)  # fmt: skip
@user_model_options
def export_cmd(
    model: str,
    weights: str | None,
    opset: int | None,
    fixed: int | None,
    dyn: Any,
    out_dir: str,
    no_check: bool,
    rtol: float | None,
    cosine: float | None,
    top1: float | None,
    top5: float | None,
    data_dir: str | None,
    samples: int,
    precision: Precision,
    calib_data: str | None,
    calib_method: str | None,
    calib_samples: int | None,
    quantizer: str | None,
    qdq_target: str | None,
    fp16_converter: str | None,
    seed: int,
    input_shape: str | None,
    name: str | None,
    mean: str | None,
    std: str | None,
) -> None:
    """Export MODEL to ONNX, check it, and gate it on parity with PyTorch.

    MODEL is a zoo name, your ONNX file (x.onnx: imported, and gated on parity with itself on
    ONNX Runtime's CPU provider, as there is no PyTorch source) or your module factory
    (package.module:callable, with --input-shape).

    Writes OUT/<model>/<precision>/model.onnx and manifest.json (opset, input, dynamic axes,
    sha256, versions, parity metrics, step timings) and prints the ONNX path last. The file is
    published only after the gate passes; a failure or Ctrl-C leaves the folder as it was.
    The same model and weights give a byte-identical file.
    """
    if fixed is not None and dyn is not None:
        raise click.UsageError("--batch and --dynamic-batch are mutually exclusive")
    check_calib_source(calib_data)  # before the zoo (and torch) is imported
    (model,) = resolve_models(
        (model,), {"input_shape": input_shape, "name": name, "mean": mean, "std": std}
    )
    int8_given = (calib_data, calib_method, calib_samples, quantizer, qdq_target)
    if not precision.calibrated and any(int8_given):
        raise click.UsageError(
            "--calib-data/--calib-method/--calib-samples/--quantizer/--qdq-target need "
            "--precision int8 or fp8"
        )
    if fp16_converter and precision != Precision.FP16:
        raise click.UsageError("--fp16-converter needs --precision fp16")
    batch = BatchRange.fixed(fixed) if fixed is not None else dyn
    calib = (calib_samples or DEFAULT_CALIB_SAMPLES) if precision.calibrated else None
    check_models([model], batches=[fixed] if fixed else [], gate=not no_check, calib_samples=calib)
    dynamic = None if fixed is None and dyn is None else fixed is None
    overrides = _overrides(rtol, cosine, top1, top5)
    w = resolve_weights(model, weights) if weights else None
    wid = weights_provenance(model, w, seed)
    say_random_weights([model], {model: wid})
    common = dict(
        weights=w.path if w else None, out_dir=out_dir, opset=opset, batch=batch,
        dynamic=dynamic, check=not no_check, data_dir=data_dir, seed=seed, samples=samples,
        weights_source=wid,
    )  # fmt: skip
    if not precision.from_fp32:
        tol = precision.gate.replace(**overrides)
        result = export_fp32(model, **common, tolerances=tol)  # type: ignore[arg-type]
    else:
        conv = dict(
            calib_data=calib_data, calib_method=calib_method, calib_samples=calib_samples,
            quantizer=quantizer, qdq_target=qdq_target, fp16_converter=fp16_converter,
        )  # fmt: skip
        result = _convert(model, precision, common, overrides, conv)
    _print_parity(result.manifest, title=f"parity: {model} {precision}")
    click.echo(str(result.onnx_path))


def _overrides(
    rtol: float | None, cosine: float | None, top1: float | None, top5: float | None
) -> dict[str, float]:
    changes = {"max_rel_err": rtol, "min_cosine": cosine, "min_top1_agreement": top1,
               "min_top5_agreement": top5}  # fmt: skip
    return {k: v for k, v in changes.items() if v is not None}


def _convert(
    model: str,
    precision: Precision,
    common: dict[str, Any],
    overrides: dict[str, float],
    conv: dict[str, Any],
) -> Any:
    kwargs: dict[str, Any] = {k: v for k, v in conv.items() if v is not None}
    if precision.calibrated:  # bad calibration data fails now, before the FP32 export
        samples = conv["calib_samples"] or DEFAULT_CALIB_SAMPLES
        kwargs["_calib"] = calibration_set(
            get_spec(model), conv["calib_data"], samples=samples, seed=common["seed"]
        )
    # the FP32 file is gated with the FP32 defaults; tolerance flags bound the converted model
    fp32 = ensure_fp32(model, **common)
    if overrides:
        kwargs["tolerances"] = precision.gate.replace(**overrides)
    return convert(
        model, fp32, precision, out_dir=common["out_dir"], check=common["check"],
        seed=common["seed"], **kwargs,
    )  # fmt: skip


def _print_parity(manifest: dict[str, Any], *, title: str) -> None:
    parity = manifest.get("parity")
    if isinstance(parity, dict) and "metrics" in parity:
        ref = parity.get("reference")
        print_report(
            report_from_dict(parity), title=f"{title} (reference: {ref})" if ref else title
        )


@cli.command("verify", epilog=_TOL_HELP)
@click.argument("onnx_file", metavar="ONNX", type=click.Path(dir_okay=False))
@click.option(
    "--model",
    help="The model the file holds (default: recorded in the file): a zoo name, your ONNX "
    "file or module factory.",
)
@weights_option
@_tolerance_options
@click.option(
    "--gate", "preset", type=PrecisionType(ONNX_PRECISIONS, what="--gate"), default=None,
    help="Tolerance preset: fp32 (strict), fp16 (top-1 >= 0.99, cosine >= 0.999), int8 "
    "(report only). Default: the precision recorded in the file, else fp32.",
)  # fmt: skip
@click.option("--batch", type=bounded(limits.BATCH), help="Batch size (default 2 or the file's).")
@click.option(
    "--seed",
    type=bounded(limits.SEED),
    default=None,
    help="Weight-init + input seed (default: recorded).",
)
@user_model_options
def verify_cmd(
    onnx_file: str,
    model: str | None,
    weights: str | None,
    rtol: float | None,
    cosine: float | None,
    top1: float | None,
    top5: float | None,
    data_dir: str | None,
    samples: int,
    preset: Precision | None,
    batch: int | None,
    seed: int | None,
    input_shape: str | None,
    name: str | None,
    mean: str | None,
    std: str | None,
) -> None:
    """Re-check an existing ONNX file: onnx.checker, its manifest's sha256, and the parity gate.

    The reference is PyTorch eager FP32 of --model; for your own ONNX file (--model x.onnx)
    it is that file on ONNX Runtime's CPU provider.

    Prints the parity table; exits 1 if the gate fails, 2 if the file is missing or corrupt.
    """
    if not Path(onnx_file).is_file():
        raise InvalidInputError(f"ONNX file not found: {onnx_file}")
    check_file(onnx_file, batch=batch, step="parity gate")
    if model is not None:
        (model,) = resolve_models(
            (model,), {"input_shape": input_shape, "name": name, "mean": mean, "std": std}
        )
    overrides = _overrides(rtol, cosine, top1, top5)
    tol = None
    if preset is not None or overrides:
        tol = (preset or recorded_precision(onnx_file)).gate.replace(**overrides)
    report = verify_onnx(
        onnx_file, model, seed=seed, data_dir=data_dir, samples=samples,
        weights=resolve_weights(model, weights).path if weights and model else weights,
        batch=batch, tolerances=tol,
    )  # fmt: skip
    print_report(report, title=f"parity: {onnx_file}")
    if not report:
        raise CheckFailedError(f"parity gate failed for {onnx_file}: {'; '.join(report.failures)}")
    click.echo(f"PASS {onnx_file}")
