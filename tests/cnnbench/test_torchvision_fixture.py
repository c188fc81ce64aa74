"""Our torchvision-compatible models have torchvision's exact state-dict keys and shapes.

The fixture ``tests/fixtures/torchvision_state_dicts.json`` is recorded from torchvision itself by
``tests/fixtures/make_torchvision_fixture.py``. The cross-check below goes further where
torchvision can be run (imported here, or a separate interpreter named by
``CNNBENCH_TORCHVISION_PYTHON``, default ``/tmp/tvenv/bin/python``): it loads a torchvision
state dict into our model through ``get_model(weights=...)`` and compares eval-mode logits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cnnbench.models import get_model, get_spec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torchvision_state_dicts.json"
DOC = json.loads(FIXTURE.read_text())
NAMES = sorted(DOC["models"])


def _our_listing(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = get_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_fixture_covers_every_torchvision_compatible_model() -> None:
    assert DOC["torchvision"].startswith("0.29.1")
    expected = {
        "alexnet_tv",
        *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
        "googlenet",
        *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    }
    assert set(NAMES) == expected


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_torchvision(name: str) -> None:
    entry = DOC["models"][name]
    assert get_spec(name).torchvision == entry["builder"]
    theirs = {k: tuple(shape) for k, shape in entry["state_dict"]}
    ours = _our_listing(name)
    missing = [k for k in theirs if k not in ours]
    unexpected = [k for k in ours if k not in theirs]
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not wrong, f"shape mismatches (ours, torchvision): {dict(list(wrong.items())[:5])}"


# --- cross-check with torchvision itself -----------------------------------------------------

FAST_CROSS = ("resnet18", "googlenet")
CROSS = [*FAST_CROSS, pytest.param("resnet50", marks=pytest.mark.slow)]

# Runs under an interpreter with torchvision: for each name, a randomly initialised torchvision
# network (BN statistics randomised too, so eps and running stats matter), one input, its logits.
_DUMP = """
import sys, torch
from torchvision import models
out = sys.argv[1]
for name in sys.argv[2:]:
    torch.manual_seed(0)
    kw = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
    m = getattr(models, name)(weights=None, **kw).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
            torch.nn.init.uniform_(mod.bias, -0.1, 0.1)
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        y = m(x)
    torch.save(m.state_dict(), f"{out}/{name}.pt")
    torch.save({"x": x, "y": y}, f"{out}/{name}.io.pt")
"""


def _torchvision_runner() -> list[str] | None:
    if importlib.util.find_spec("torchvision") is not None:
        return [sys.executable]
    exe = os.environ.get("CNNBENCH_TORCHVISION_PYTHON", "/tmp/tvenv/bin/python")
    return [exe] if Path(exe).is_file() else None


@pytest.fixture(scope="module")
def torchvision_dump(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``get(name)`` -> folder holding ``name.pt`` and ``name.io.pt`` (fast names dumped at once)."""
    runner = _torchvision_runner()
    if runner is None:
        pytest.skip(
            "torchvision is not importable and no interpreter with it was found "
            "(set CNNBENCH_TORCHVISION_PYTHON to one)"
        )
    out = tmp_path_factory.mktemp("tv")
    done: set[str] = set()

    def get(name: str) -> Path:
        if name not in done:
            # One interpreter start for all fast names: importing torchvision dominates.
            names = [n for n in FAST_CROSS if n not in done] if name in FAST_CROSS else [name]
            proc = subprocess.run(
                [*runner, "-c", _DUMP, str(out), *names],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            done.update(names)
        return out

    return get


@pytest.mark.parametrize("name", CROSS)
def test_torchvision_weights_load_and_agree(
    name: str, torchvision_dump: Callable[[str], Path]
) -> None:
    folder = torchvision_dump(name)
    model = get_model(name, weights=folder / f"{name}.pt")
    io = torch.load(folder / f"{name}.io.pt", weights_only=True)
    with torch.no_grad():
        y = model(io["x"])
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, io["y"], rtol=1e-4, atol=1e-5)
