"""Name lookup with "did you mean" suggestions, shared by every registry."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from cnnbench.errors import UnknownNameError

T = TypeVar("T")


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return a short 'did you mean ...?' phrase, or a list of valid names if nothing is close."""
    options = sorted(choices)
    close = difflib.get_close_matches(name.lower(), options, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"choose from: {shown}"


def lookup(kind: str, name: str, table: Mapping[str, T]) -> T:
    """Return ``table[name]`` or raise UnknownNameError naming the closest choices."""
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(f"unknown {kind} '{name}': {suggest(name, table)}") from None
