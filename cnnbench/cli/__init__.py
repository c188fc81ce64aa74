"""The ``cnnbench`` command line. Each stage's commands live in their own module."""

from cnnbench.cli.common import cli
from cnnbench.host import die_with_parent

# Each module adds its commands to ``cli``; importing them imports no heavy runtime.
from cnnbench.cli import (  # noqa: E402,F401  isort: skip
    zoo_cmds,
    export_cmds,
    data_cmds,
    engine_cmds,
    bench_cmds,
    layers_cmds,
    profile_cmds,
    report_cmds,
    recommend_cmds,
    store_cmds,
    serve_cmds,
)


def main() -> None:
    """Console-script entry point."""
    die_with_parent()  # launched by the service: never outlive it
    cli.main(prog_name="cnnbench")


__all__ = ["cli", "main"]
