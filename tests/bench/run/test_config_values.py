"""A sweep file's and a request's values are bounded where they enter: every number, every list,
every name a scalar, the grid's cells; a config cannot expand (YAML aliases, a file too large)."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnbench.bench.run.sweep_config import config_from_mapping, load_config
from cnnbench.errors import InvalidInputError
from cnnbench.limits import GRID_CELLS

GRID = {"models": ["lenet5"], "engines": ["null"], "precisions": ["fp32"], "batches": [1],
        "scenarios": ["offline"]}  # fmt: skip


def _load(**over: Any) -> Any:
    return config_from_mapping({**GRID, **over}, src="grid", base=Path("."))


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"batches": [2**70]}, "key 'batches': batch must be an integer >= 1 and <= 65_536"),
        ({"batches": ["8"]}, "key 'batches': batch must be"),
        ({"repeats": 10**12}, "key 'repeats': repeats must be"),
        ({"threads": 2**64}, "key 'threads'"),
        ({"seed": -1}, "key 'seed'"),
        ({"seed": 2**40}, "key 'seed'"),
        ({"timeout_s": float("inf")}, "key 'timeout_s'"),
        ({"timeout_s": float("nan")}, "key 'timeout_s'"),
        ({"timeout_s": 0}, "key 'timeout_s'"),
        ({"calib_samples": 10**9, "precisions": ["int8"]}, "key 'calib_samples'"),
        ({"stop": {"max_time": 1e300}}, "key 'stop.max_time'"),
        ({"stop": {"min_count": 10**12}}, "key 'stop.min_count'"),
        ({"stop": {"ci_target": [1, 2]}}, "key 'stop.ci_target'"),
        (
            {"scenarios": ["server"], "server": {"target_qps": float("inf")}},
            "key 'server.target_qps'",
        ),
        ({"batches": list(range(1, 100_002))}, "key 'batches' lists 100,001 items"),
        ({"models": [["lenet5"] * 3]}, "is not a name or a number"),
        ({"weights": {"lenet5": [1, 2, 3]}}, "key 'weights.lenet5'"),
        ({"artifacts": {"a": 1}}, "key 'artifacts'"),
        ({"batches": list(range(1, 101)), "repeats": 101}, "repeats must be"),
        ({"batches": list(range(1, 201)), "repeats": 100}, f"at most {GRID_CELLS:,}"),
    ],
)
def test_out_of_range_values_are_one_line_and_cheap(over: dict[str, Any], says: str) -> None:
    start = time.monotonic()
    with pytest.raises(InvalidInputError) as err:
        _load(**over)
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert time.monotonic() - start < 5  # refused from the lists' lengths, nothing built


def test_the_largest_grid_allowed_is_accepted() -> None:
    cfg = _load(batches=list(range(1, 101)), repeats=100)
    assert cfg.cell_count() == GRID_CELLS == len(cfg.cells()[0])


@pytest.mark.parametrize(
    "text",
    [
        "models: &m [lenet5]\nengines: [null]\nprecisions: [fp32]\nbatches: [1]\n"
        "scenarios: [offline]\nweights: {lenet5: *m}\n",
        # the billion laughs: 9 levels of 10 aliases, under 1 KB
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "models: *i\n",
    ],
    ids=["alias in weights", "billion laughs"],
)
def test_yaml_aliases_are_refused_naming_the_file(text: str, tmp_path: Path) -> None:
    p = tmp_path / "grid.yaml"
    p.write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidInputError, match=f"config {p}: line \\d+: YAML aliases"):
        load_config(p)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000  # refused as the parser meets the alias: nothing expanded


def test_a_config_file_over_1_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text(yaml.safe_dump(GRID) + "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(InvalidInputError, match=f"config {p}: .* bytes; a config file is at most"):
        load_config(p)
