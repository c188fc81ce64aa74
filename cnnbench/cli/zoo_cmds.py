"""Commands: (filled in by its stage)."""

from cnnbench.cli.app import cli  # noqa: F401
