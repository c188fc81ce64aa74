"""Commands: ``models`` (the zoo at a glance) and ``inspect`` (one model, layer by layer)."""

from __future__ import annotations

from typing import Any

import click

from cnnbench import limits
from cnnbench.analysis_cache import zoo_listing
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import bounded, weights_option
from cnnbench.footprint import check_fits
from cnnbench.models import get_spec

_CONVENTION = """\b
Counting convention:
  params       trainable parameters used by the inference forward (weights = without biases)
  MACs         multiply-accumulates of conv and linear layers only
               (conv: output elements x in_channels/groups x kh x kw; linear: out x in)
  FLOPs        2 x MACs
  connections  as in LeCun et al. 1998: conv/linear units count their inputs + 1 for a bias;
               pooling units their window; activations, norms, dropout: 0
  activations  output elements per sample (totals: input + layers with connections)
  receptive    size, jump and start (centre of the first unit) in input pixels, pixel i
  field        spanning [i, i+1) (the input row: 1, 1, 0.5); follows the real dataflow
               (branches merge to the largest field; after global pooling or flatten+linear
               the field spans the whole map and may exceed the image)
"""

_MODEL_COLUMNS = ("name", "family", "input", "params", "MACs", "top1", "top1_source")
_CSV_MODEL_COLUMNS = (
    "name", "family", "input_shape", "num_classes", "params", "params_all", "macs", "gmacs",
    "activations", "top1", "top1_source", "imagenet",
)  # fmt: skip
_LAYER_COLUMNS = (
    "name", "type", "output_shape", "params", "weights", "connections", "macs", "activations",
    "rf_size", "rf_jump", "rf_start",
)  # fmt: skip
_TOTAL_COLUMNS = ("params", "params_all", "weights", "connections", "macs", "flops", "activations")


@cli.command("models", epilog=_CONVENTION)
@format_option()
@click.option("--imagenet", is_flag=True, help="Only the ImageNet-1k classifiers.")
@click.option(
    "--no-cache", is_flag=True, help="Recompute the analysis instead of reading the cache."
)
def models_cmd(fmt: str, imagenet: bool, no_cache: bool) -> None:
    """List the zoo: family, input shape (C,H,W), parameters, MACs and published top-1.

    params counts the parameters the inference forward uses: GoogLeNet's auxiliary classifiers
    (training only) are excluded; params_all (json/csv) includes them. MACs are at the model's
    own input shape. Results are cached (keyed by the zoo's source and the torch version).
    """
    rows = zoo_listing(imagenet_only=imagenet, use_cache=not no_cache)
    if fmt == "json":
        emit_json(rows)
    elif fmt == "csv":
        emit_csv([{**r, "input_shape": _shape(r["input_shape"])} for r in rows], _CSV_MODEL_COLUMNS)
    else:
        shown = [{**r, "input": _shape(r["input_shape"]), "MACs": _si(r["macs"])} for r in rows]
        emit_table(shown, _MODEL_COLUMNS, title="cnnbench model zoo (params used at inference)")


@cli.command("inspect", epilog=_CONVENTION)
@click.argument("model")
@format_option()
@weights_option
@click.option(
    "--input-size",
    type=bounded(limits.INPUT_SIDE),
    default=None,
    metavar="H",
    help="Square input side (H = W). Default: the model's own input size.",
)
def inspect_cmd(model: str, fmt: str, weights: str | None, input_size: int | None) -> None:
    """Per-layer table of MODEL: output shape, params, connections, MACs, activations, receptive
    field (size, jump, start) and totals.

    MACs = multiply-accumulates of conv and linear layers; FLOPs = 2 x MACs; connections as in
    LeCun 1998; activations = output elements per sample; receptive field in input pixels.
    """
    from cnnbench.analysis import analyze  # torch-bound: imported where used, as torch is

    spec = get_spec(model)
    shape = None
    if input_size is not None:
        shape = (spec.input_shape[0], input_size, input_size)
        check_fits(model, shape, {"analysis": 1})
    result = analyze(model, input_shape=shape, weights=weights)
    doc = result.to_dict()
    if fmt == "json":
        emit_json(doc)
        return
    layers = [_flat(r) for r in doc["layers"]]
    if fmt == "csv":
        total = {**{c: doc["totals"].get(c, "") for c in _LAYER_COLUMNS}, "name": "total"}
        emit_csv([*layers, total], _LAYER_COLUMNS)
        return
    title = f"{doc['model']} @ {_shape(doc['input_shape'])}"
    emit_table(layers, _LAYER_COLUMNS, title=title)
    totals = {**doc["totals"], "gmacs": round(doc["totals"]["macs"] / 1e9, 3)}
    emit_table([totals], (*_TOTAL_COLUMNS, "gmacs"), title="totals")
    for note in doc["notes"]:
        click.echo(f"note: {note}", err=True)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "output_shape": _shape(row["output_shape"])}


def _si(n: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _shape(shape: list[int]) -> str:
    return "x".join(str(v) for v in shape)
