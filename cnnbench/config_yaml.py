"""YAML config files read so that they cannot expand: a size cap before reading, and no aliases.

YAML's anchors and aliases (``&a`` / ``*a``) let a file of a few hundred bytes stand for
gigabytes once expanded (nested aliases double at each level); a config has no need of them.
A file over :data:`cnnbench.limits.CONFIG_BYTES` is refused before it is read, an alias as
soon as the parser meets it (before anything is built), and every message names the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cnnbench.errors import InvalidInputError
from cnnbench.limits import CONFIG_BYTES


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases where the composer meets them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasError(event.start_mark)
        return super().compose_node(parent, index)


class _AliasError(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("alias")
        self.mark = mark


def read_yaml(path: str | Path, *, what: str = "config") -> Any:
    """The document of YAML file ``path``; one-line InvalidInputError naming the file when it
    is missing, too large, not UTF-8, not YAML, or uses an alias."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{what} file not found: {p}")
    size = p.stat().st_size
    if size > CONFIG_BYTES:
        raise InvalidInputError(
            f"{what} {p}: {size:,} bytes; a {what} file is at most {CONFIG_BYTES:,} bytes"
        )
    try:
        text = p.read_bytes()[: CONFIG_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} {p}: is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except _AliasError as exc:
        raise InvalidInputError(
            f"{what} {p}: line {exc.mark.line + 1}: YAML aliases (*name) are not accepted in a "
            f"{what}; write the values out"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InvalidInputError(f"{what} {p}: not valid YAML{where}") from None
