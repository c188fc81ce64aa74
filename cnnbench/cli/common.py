"""The click group and the pieces every command shares.

The CLI is the top layer: its modules import the stages (export, engines, bench) at the top.
Those import torch, onnxruntime, openvino, tensorrt and matplotlib only inside the functions
that use them, so ``cnnbench --help`` imports none of them and a missing runtime only breaks
the command that needs it.
"""

from __future__ import annotations

import csv
import errno
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cnnbench import __version__
from cnnbench.errors import CnnbenchError
from cnnbench.models.registry import register_user_model
from cnnbench.models.user import is_user_model
from cnnbench.precision import PRECISIONS, Precision, parse_precision, parse_precisions

FORMATS = ("table", "json", "csv")


class CnnbenchGroup(click.Group):
    """A group whose errors are one line on stderr: exit 2 for mistakes, 1 for failed checks."""

    def main(self, args: Sequence[str] | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx else "cnnbench"
            _fail(f"{exc.format_message()} (see '{cmd} --help')", 2)
        except click.exceptions.Abort:  # click's form of a KeyboardInterrupt
            _fail("interrupted; finished results were kept, partial files removed", 130)
        except KeyboardInterrupt:
            _fail("interrupted; finished results were kept, partial files removed", 130)
        except CnnbenchError as exc:
            _fail(str(exc), exc.exit_code)
        except Exception as exc:
            if not _out_of_memory(exc):
                raise
            _fail(
                "out of memory; free memory, raise the process's limit (ulimit -v) or use a "
                "smaller model or batch",
                1,
            )
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except BrokenPipeError:
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or protobuf's EncodeError, which is how a failed allocation surfaces when
    an ONNX graph is measured or serialised under a memory limit."""
    kind = type(exc)
    return (
        isinstance(exc, MemoryError)
        or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM)
        or (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc))
        or (kind.__name__ == "EncodeError" and kind.__module__.startswith("google.protobuf"))
    )


def _fail(message: str, code: int) -> None:
    click.echo(f"cnnbench: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(cls=CnnbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnbench")
def cli() -> None:
    """cnnbench: reference CNNs, verified ONNX export (FP32/FP16/INT8), one benchmark harness.

    \b
    Typical use:
      cnnbench models                       list the zoo
      cnnbench inspect resnet50             per-layer params, MACs, receptive fields
      cnnbench export googlenet             ONNX + parity gate + manifest
      cnnbench run --engine ort --batch 8   latency / throughput / memory

    \b
    Exit codes: 0 success; 2 a mistake or bad input (unknown name, bad value, missing,
    corrupt or unwritable file, absent runtime), found before any work where it can be;
    1 a failed check (parity gate, regression) or a run attempted that could not finish
    (a failed cell, out of memory, results that could not be written). Errors are one line.
    """


def format_option(default: str = "table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format table|json|csv``."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


class PrecisionType(click.ParamType):
    """``--precision``: parsed here, once, by :func:`cnnbench.precision.parse_precision`.

    ``many`` takes a comma-separated list (a tuple of Precision); ``choices`` is what the
    command can use, ``what`` names the command in the error.
    """

    name = "precision"

    def __init__(
        self,
        choices: tuple[Precision, ...] = PRECISIONS,
        *,
        what: str | None = None,
        many: bool = False,
    ) -> None:
        self.choices, self.what, self.many = choices, what, many

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "[" + "|".join(self.choices) + "]" + ("[,...]" if self.many else "")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (Precision, tuple)):
            return value
        try:
            if self.many:
                return parse_precisions(value, self.choices, what=self.what)
            return parse_precision(value, self.choices, what=self.what)
        except CnnbenchError as exc:
            self.fail(str(exc), param, ctx)


#: a user's model (``--model x.onnx`` / ``module:callable``): how to read it
USER_MODEL_FIELDS = ("input_shape", "name", "mean", "std")


def resolve_models(names: Sequence[str], o: Mapping[str, Any]) -> tuple[str, ...]:
    """Model names as the registry knows them: each ``x.onnx`` or ``module:callable`` becomes
    a registered user model (read with ``o``'s user-model options)."""
    users = [n for n in names if is_user_model(n)]
    given = {k: o.get(k) for k in USER_MODEL_FIELDS if o.get(k) is not None}
    if given and not users:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise click.UsageError(f"{flags} describe your own model: give --model x.onnx or module:fn")
    if given.get("name") and len(users) > 1:
        raise click.UsageError("--name names one model; give one user model per command")
    return tuple(register_user_model(n, **given).name if is_user_model(n) else n for n in names)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, default=str))


def emit_csv(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print dict rows as CSV on stdout."""
    cols = list(columns or (rows[0].keys() if rows else []))
    writer = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def emit_table(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    title: str | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """Print dict rows as a rich table on stdout (right-aligned numbers, thousands separators).

    ``labels`` gives short headers (``p50 ms``); headers and cells wrap rather than being cut.
    The table fits the terminal; off a terminal (logs, pipes) it is 160 characters wide.
    """
    table = Table(title=title, show_lines=False)
    for c in columns:
        numeric = any(isinstance(r.get(c), (int, float)) for r in rows)
        label = (labels or {}).get(c, c)
        table.add_column(label, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in columns))
    console = Console()
    Console(width=console.width if console.is_terminal else 160).print(table)


def _cell(v: Any) -> str:
    return escape(_text(v))  # "cnnbench[trt]" must not be read as rich markup


def _text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)
