"""Every number has bounds: the table (cnnbench/limits.py), and every command's numeric flags
held to it, so a new command (or a new flag) is covered the day it is added."""

from __future__ import annotations

import math
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from cnnbench import limits
from cnnbench.cli import cli
from cnnbench.cli.flags import BatchType, BoundType
from cnnbench.errors import InvalidInputError


def _params() -> Iterator[tuple[str, click.Parameter]]:
    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Parameter]]:
        for p in cmd.params:
            yield path, p
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}")

    return walk(cli, "cnnbench")


def test_every_numeric_flag_of_every_command_is_bounded() -> None:
    """Plain int/float, open-ended ranges and FloatRange (which lets nan through) are refused:
    a number comes in through a BoundType (or a closed IntRange, like --port)."""
    loose = []
    for path, p in _params():
        t = p.type
        if isinstance(t, (BoundType, BatchType)):
            continue
        if isinstance(t, click.types.IntRange) and t.min is not None and t.max is not None:
            continue
        if isinstance(t, (click.types.FloatParamType, click.types.IntParamType)):
            loose.append(f"{path} {p.opts[0] if p.opts else p.name}: {t!r}")
    assert not loose, "give these a bounded type (cnnbench.cli.flags.bounded):\n" + "\n".join(loose)


@pytest.mark.parametrize(
    ("bound", "value", "ok"),
    [
        (limits.BATCH, 1, 1),
        (limits.BATCH, "8", 8),
        (limits.BATCH, 0, None),
        (limits.BATCH, 10**20, None),
        (limits.BATCH, "1" * 500, None),
        (limits.BATCH, True, None),
        (limits.BATCH, 2.0, 2),
        (limits.BATCH, 2.5, None),
        (limits.TIMEOUT_S, math.inf, None),
        (limits.TIMEOUT_S, "Infinity", None),
        (limits.TIMEOUT_S, "nan", None),
        (limits.TIMEOUT_S, 0, None),
        (limits.TIMEOUT_S, 10**400, None),
        (limits.TIMEOUT_S, 30, 30.0),
        (limits.ID, 2**63, None),
        (limits.ID, 2**63 - 1, 2**63 - 1),
    ],
)
def test_a_bound_takes_what_is_in_range_and_refuses_the_rest(
    bound: limits.Bound, value: object, ok: object
) -> None:
    if ok is None:
        with pytest.raises(InvalidInputError, match=f"{bound.what} must be"):
            bound.check(value)
    else:
        assert bound.check(value) == ok


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "-m", "lenet5", "-e", "null", "-b", "100000000000000000000"], "batch must be"),
        (["run", "-m", "lenet5", "-e", "null", "--repeats", "1000000"], "repeats must be"),
        (["run", "-m", "lenet5", "-e", "null", "--threads", "99999999999"], "threads must be"),
        (["run", "-m", "lenet5", "-e", "null", "--max-time", "inf"], "seconds must be"),
        (["run", "-m", "lenet5", "-e", "null", "--ci-target", "nan"], "ci_target must be"),
        (["run", "-m", "lenet5", "-e", "null", "--seed", "-1"], "seed must be"),
        (["history", "--run", "9223372036854775808"], "id must be"),
        (["history", "--limit", "0"], "limit must be"),
        (["export", "lenet5", "--dynamic-batch", "1:8:99999999999999999999"], "batch must be"),
        (["serve", "--max-upload", "9" * 400], "--max-upload"),
    ],
)
def test_numbers_out_of_range_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert says in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
