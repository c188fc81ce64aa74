"""Commands: ``train`` (seeded training on bundled data) and ``eval`` (measured accuracy)."""

from __future__ import annotations

import functools
from typing import Any

import click

from cnnbench import limits
from cnnbench.bench.results.files import append_row, check_output
from cnnbench.bench.run.accuracy import evaluate
from cnnbench.bench.run.eval_folders import accuracy_row, eval_folder
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import (
    DatasetType,
    batch_option,
    bounded,
    device_option,
    engine_option,
    int8_options,
    precision_option,
    threads_option,
    user_model_options,
    weights_option,
)
from cnnbench.cli.run_options import RunOptions
from cnnbench.data.folders import parse_max_bad
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import unsupported
from cnnbench.errors import InvalidInputError
from cnnbench.models import resolve_weights
from cnnbench.progress import note
from cnnbench.training import TrainConfig, default_weights_path, train
from cnnbench.weights_hub import Weights

_EVAL_COLUMNS = (
    "model", "engine", "precision", "quantizer", "dataset", "samples", "top1", "top5", "source",
)  # fmt: skip


@cli.command("train")
@click.argument("model")
@click.option(
    "--dataset", type=click.Choice(("digits",)), default="digits", show_default=True,
    help="Training data: sklearn's bundled digits, train split (1,347 images).",
)  # fmt: skip
@click.option("--epochs", type=bounded(limits.EPOCHS), help="Passes over the data [default: 30].")
@click.option("--batch", type=bounded(limits.BATCH), help="Batch size [default: 32].")
@click.option("--lr", type=bounded(limits.LEARNING_RATE), help="Peak learning rate.")
@click.option(
    "--seed", type=bounded(limits.SEED), default=0, show_default=True,
    help="Init + shuffling seed.",
)  # fmt: skip
@click.option(
    "--threads", type=bounded(limits.THREADS), default=1, show_default=True,
    help="Torch threads (fixed, so runs are reproducible).",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None,
    help="Weights file [default: artifacts/<model>/<dataset>/weights.pt].",
)  # fmt: skip
@format_option()
def train_cmd(
    model: str,
    dataset: str,
    epochs: int | None,
    batch: int | None,
    lr: float | None,
    seed: int,
    threads: int,
    out: str | None,
    fmt: str,
) -> None:
    """Train MODEL (lenet5) on DATASET, seeded and deterministic; print the weights path last.

    The test split is held out: the reported test top-1 is measured on images never trained on.
    Also writes <weights>.train.json (config, accuracy, loss per epoch, sha256).
    """
    kwargs: dict[str, Any] = dict(model=model, dataset=dataset, seed=seed, threads=threads)
    for key, value in (("epochs", epochs), ("batch", batch), ("lr", lr)):
        if value is not None:
            kwargs[key] = value
    try:
        config = TrainConfig(**kwargs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    result = train(config, out)
    row = {
        "model": model,
        "dataset": dataset,
        "epochs": config.epochs,
        "seed": seed,
        "train_top1": result.train_top1,
        "test_top1": result.test_top1,
        "test_samples": result.test_samples,
        "seconds": result.seconds,
        "weights": str(result.weights),
    }
    if fmt == "json":
        emit_json(row)
    elif fmt == "csv":
        emit_csv([row])
    else:
        emit_table([row], list(row)[:-1], title=f"train {model} on {dataset}")
    click.echo(str(result.weights))


@cli.command("eval")
@click.argument("model")
@weights_option
@click.option(
    "--dataset", type=DatasetType(), default="digits", show_default=True,
    help="Labelled evaluation data: digits (the held-out test split, 450 images).",
)  # fmt: skip
@precision_option(many=False, what="eval")
@engine_option("torch", many=False, help="torch, onnxruntime (ort), openvino (ov), tensorrt (trt).")
@batch_option("64", many=False, help="Batch size.")
@click.option(
    "--artifacts", type=click.Path(file_okay=False), default=None,
    help="Root for the ONNX files evaluated [default: <cache>/eval].",
)  # fmt: skip
@int8_options
@threads_option
@device_option
@click.option(
    "--seed", type=bounded(limits.SEED), default=0, show_default=True,
    help="Weight-init seed (no --weights).",
)  # fmt: skip
@click.option(
    "--data", type=click.Path(file_okay=False), default=None,
    help="Image folder instead of --dataset: ImageFolder (class subfolders) or a flat "
    "ImageNet-val folder with --labels.",
)  # fmt: skip
@click.option(
    "--labels", type=click.Path(dir_okay=False), default=None,
    help="With --data: 'filename label' lines or one label per sorted image (flat folder), "
    "or a class-index JSON (folder name -> class index).",
)  # fmt: skip
@click.option(
    "--workers", type=bounded(limits.WORKERS), default=4, show_default=True,
    help="With --data: image decoding threads.",
)  # fmt: skip
@click.option(
    "--max-bad", default="1%", show_default=True,
    help="With --data: unreadable images tolerated (count N, fraction or N%); more fail.",
)  # fmt: skip
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), default=None,
    help="Append the result as a row (top1/top5 in %, accuracy_source) to a results "
    ".csv/.jsonl, e.g. the run's, for `cnnbench report`.",
)  # fmt: skip
@format_option()
@user_model_options
def eval_cmd(**o: Any) -> None:
    """Measure MODEL's top-1 / top-5 on labelled data at PRECISION on ENGINE.

    MODEL is a zoo name, your ONNX file (x.onnx) or your module factory (pkg.mod:fn).

    ONNX engines run the verified file for the precision (exported, converted and cached as
    needed; INT8 is calibrated on the digits TRAIN split, never on the evaluated test split).
    JSON: top1 and top5 are fractions in [0, 1]; samples is the evaluated split's size.
    """
    if o["labels"] is not None and o["data"] is None:
        raise click.UsageError("--labels needs --data DIR")
    if o["out"] is not None:
        check_output(o["out"])  # a bad --out fails before the evaluation, not after
    opts = RunOptions.from_params(o)
    (model,) = opts.models
    device = opts.device_of(opts.engine)
    runs = get_engine_class(opts.engine).precisions_on(device)
    if opts.precision not in runs:  # before any weights are looked for
        raise unsupported(opts.engine, opts.precision, device, runs)
    weights = opts.weights
    if weights is None and o["data"] is None:
        weights = _trained_weights(model, o["dataset"])
    if o["data"] is not None:
        run: Any = functools.partial(
            eval_folder, model, o["data"], labels=o["labels"], workers=o["workers"],
            max_bad=parse_max_bad(o["max_bad"]),
        )  # fmt: skip
    else:
        run = functools.partial(evaluate, model, dataset=o["dataset"])
    result = run(
        weights=weights, precision=opts.precision, engine=opts.engine, batch=o["batches"],
        artifacts=o["artifacts"], int8=opts.int8, seed=opts.seed, threads=opts.threads,
        device=device, fp16_converter=opts.fp16_converter,
    )  # fmt: skip
    fmt = o["fmt"]
    if fmt == "json":
        emit_json(result)
    elif fmt == "csv":
        emit_csv([result], _EVAL_COLUMNS)
    else:
        emit_table([result], _EVAL_COLUMNS, title=f"accuracy: {model}")
    if o["out"] is not None:
        append_row(o["out"], accuracy_row(result))
        click.echo(str(o["out"]), err=fmt != "table")


def _trained_weights(model: str, dataset: str) -> Weights:
    """The weights ``cnnbench train MODEL --dataset DATASET`` wrote (its default path, the
    same key: model and dataset), or one line naming --weights."""
    path = default_weights_path(model, dataset)
    if not path.is_file():
        raise InvalidInputError(
            f"no trained weights for {model} on {dataset} ({path} does not exist): run "
            f"`cnnbench train {model} --dataset {dataset}` first, or give --weights FILE"
        )
    note(f"eval {model}: the weights train wrote, {path}")
    return resolve_weights(model, str(path))
