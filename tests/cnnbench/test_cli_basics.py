"""CLI behaviour: fast --help without torch, one-line errors with suggestions, exit codes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from cnnbench.cli import cli

_NO_TORCH = textwrap.dedent(
    """
    import sys
    from cnnbench.cli import cli
    try:
        cli.main({args!r}, prog_name="cnnbench")
    except SystemExit as exc:
        assert exc.code == 0, exc.code
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not loaded, loaded[:5]
    print("NO_TORCH_OK")
    """
)


@pytest.mark.parametrize(
    "args", [["--help"], ["models", "--help"], ["inspect", "--help"], ["--version"]]
)
def test_help_does_not_import_torch(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH.format(args=args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NO_TORCH_OK" in proc.stdout


def test_console_entry_point_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cnnbench", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "models" in proc.stdout and "inspect" in proc.stdout


def test_unknown_model_is_one_line_with_suggestion_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cnnbench", "inspect", "resnet5O"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cnnbench: error: unknown model 'resnet5O': did you mean resnet50")
    assert proc.stdout == ""


def test_inspect_help_states_the_counting_convention() -> None:
    res = CliRunner().invoke(cli, ["inspect", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for phrase in (
        "MACs = multiply-accumulates of conv and linear layers",
        "FLOPs = 2 x MACs",
        "LeCun",
        "activations = output elements per sample",
        "receptive field in input pixels",
    ):
        assert phrase in text, phrase


def test_models_help_says_aux_classifiers_are_excluded() -> None:
    res = CliRunner().invoke(cli, ["models", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "auxiliary classifiers (training only) are excluded" in text
    assert "--imagenet" in text


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["inspect"], ["inspect", "lenet5", "--format", "yaml"]],
)
def test_usage_mistakes_exit_2_without_traceback(args: list[str]) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert res.stderr.startswith("cnnbench: error:")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
