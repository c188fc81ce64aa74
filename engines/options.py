"""Typed engine options: each engine declares its keys once, and every way of setting them
(``--engine-opt KEY=VALUE`` on ``run``, ``engine_options:`` in a sweep file, the Python API)
goes through one parser with one-line errors that name the known keys.

A value from the command line is text (``num_streams=2``, ``compile=true``); one from YAML or
Python already has its type. Both are checked against the option's kind and range, and come
out as the typed value the engine uses. An option whose ``identity`` is true changes what is
measured, so it is part of the cell's key (``variant``) and ``compare`` never matches two cells
that differ in it; the others (a cache folder, a forced rebuild) are recorded but not keyed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cnnbench.errors import InvalidInputError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Option:
    """One engine option: its kind (bool, int, str, choice, list or json) and its limits."""

    name: str
    kind: str
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    #: besides the kind: these words are accepted too (e.g. num_streams=auto, compile=mode)
    words: tuple[str, ...] = ()
    #: whether the option changes what is measured (then it is part of the cell's key)
    identity: bool = True
    #: how help spells a str option's value (PATH, DIR)
    metavar: str = "TEXT"
    #: the value names a file or folder on the machine that runs the engine (a cache): a
    #: request to the service may not set it (:func:`paths_named`)
    names_path: bool = False

    def __post_init__(self) -> None:
        assert self.kind in ("bool", "int", "str", "choice", "list", "json"), self.kind

    def describe(self) -> str:
        """``name=KIND`` as ``--engine-opt`` spells it, for help and errors."""
        if self.kind == "choice":
            return f"{self.name}={'|'.join(self.choices)}"
        if self.kind == "int":
            lo = "" if self.minimum is None else str(self.minimum)
            hi = "" if self.maximum is None else str(self.maximum)
            rng = f"{lo}..{hi}" if hi else f">={lo}" if lo else ""
            words = "|".join(self.words)
            return f"{self.name}=INT{f' {rng}' if rng else ''}{f'|{words}' if words else ''}"
        if self.kind == "bool":
            words = "|".join(self.words)
            return f"{self.name}=true|false{f'|{words}' if words else ''}"
        if self.kind == "str":
            return f"{self.name}={self.metavar}{''.join('|' + w for w in self.words)}"
        return f"{self.name}={self.kind.upper()}"

    def parse(self, value: Any, engine: str) -> Any:
        """The typed value of ``value`` (text or already typed), or a one-line error."""

        def bad(why: str) -> InvalidInputError:
            return InvalidInputError(
                f"{engine} option {self.name}: {why}, got {value!r} (expected {self.describe()})"
            )

        text = value.strip() if isinstance(value, str) else None
        if text is not None and text.lower() in self.words:
            return text.lower()
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise bad("not true or false")
        if self.kind == "int":
            if isinstance(value, bool):
                raise bad("not an integer")
            if isinstance(value, int):
                n = value
            else:
                try:
                    n = int(str(text))
                except ValueError:
                    raise bad("not an integer") from None
            if (self.minimum is not None and n < self.minimum) or (
                self.maximum is not None and n > self.maximum
            ):
                raise bad("out of range")
            return n
        if self.kind == "choice":
            word = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if word not in self.choices:
                raise bad("not a known value")
            return word
        if self.kind == "list":
            if isinstance(value, (list, tuple)):
                items = [str(v).strip() for v in value]
            elif text is not None:
                items = [t.strip() for t in text.split(",")]
            else:
                raise bad("not a list")
            if not items or not all(items):
                raise bad("empty item in the list")
            return items
        if self.kind == "json":
            if isinstance(value, Mapping):
                return dict(value)
            try:
                loaded = json.loads(text) if text is not None else None
            except ValueError:
                raise bad("not a JSON object") from None
            if not isinstance(loaded, dict):
                raise bad("not a JSON object")
            return loaded
        if text is None or not text:
            raise bad("not a non-empty string")
        return text


#: keys of a ``json`` option (OpenVINO's properties) whose values are paths: CACHE_DIR, ...
_PATH_KEY = re.compile(r"DIR|PATH|FILE|CACHE|DUMP|LOG", re.I)


def paths_named(schema: Iterable[Option], options: Mapping[str, Any]) -> list[str]:
    """The options (or ``option.KEY`` of a JSON option) in typed ``options`` that name a path
    on the machine: what a request from the network may not set."""
    found = []
    for opt in schema:
        if opt.name not in options:
            continue
        value = options[opt.name]
        if opt.names_path and not (isinstance(value, str) and value in opt.words):
            found.append(opt.name)
        elif opt.kind == "json" and isinstance(value, Mapping):
            found += [f"{opt.name}.{k}" for k in value if _PATH_KEY.search(str(k))]
    return found


def known_keys(engine: str, schema: Iterable[Option]) -> str:
    return ", ".join(o.describe() for o in schema) or f"{engine} takes no options"


def check_options(
    engine: str, schema: tuple[Option, ...], given: Mapping[str, Any]
) -> dict[str, Any]:
    """``given`` with each value parsed by its option; an unknown key is one line naming the
    known ones."""
    by_name = {o.name: o for o in schema}
    out: dict[str, Any] = {}
    for key, value in given.items():
        opt = by_name.get(str(key))
        if opt is None:
            raise InvalidInputError(
                f"unknown {engine} option {key!r}; known: {known_keys(engine, schema)}"
            )
        out[opt.name] = opt.parse(value, engine)
    return out


def parse_assignments(
    texts: Iterable[str],
    schemas: Mapping[str, tuple[Option, ...]],
    canonical: Callable[[str], str] = str,
) -> dict[str, dict[str, Any]]:
    """``--engine-opt`` values (``KEY=VALUE`` or ``ENGINE.KEY=VALUE``, repeatable) as typed
    options per engine of ``schemas`` (the run's engines, canonical names).

    An unqualified key goes to every engine of the run that has it, and must belong to one.
    """
    out: dict[str, dict[str, Any]] = {e: {} for e in schemas}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(
                f"--engine-opt takes KEY=VALUE (or ENGINE.KEY=VALUE), got {text!r}"
            )
        targets: list[str]
        engine, dot, name = key.rpartition(".")
        if dot:
            engine = canonical(engine)
            if engine not in schemas:
                raise InvalidInputError(
                    f"--engine-opt {text}: engine {engine} is not in this run "
                    f"(--engine {','.join(schemas)})"
                )
            targets, key = [engine], name
        else:
            targets = [e for e, s in schemas.items() if any(o.name == key for o in s)]
            if not targets:
                known = "; ".join(f"{e}: {known_keys(e, s)}" for e, s in schemas.items())
                raise InvalidInputError(
                    f"--engine-opt: no engine of this run has {key!r} ({known})"
                )
        for e in targets:
            if key in out[e]:
                raise InvalidInputError(f"--engine-opt {key} given twice for {e}")
            out[e].update(check_options(e, schemas[e], {key: value}))
    return {e: opts for e, opts in out.items() if opts}


def render(options: Mapping[str, Any], schema: tuple[Option, ...], *, identity_only: bool) -> str:
    """``k=v,k=v`` in the schema's order (what a row's ``variant`` and ``engine_options`` say)."""
    parts = []
    for opt in schema:
        if opt.name not in options or (identity_only and not opt.identity):
            continue
        v = options[opt.name]
        if isinstance(v, bool):
            text = str(v).lower()
        elif isinstance(v, (list, tuple)):
            text = "+".join(str(x) for x in v)
        elif isinstance(v, dict):
            text = json.dumps(v, sort_keys=True, separators=(",", ":"))
        else:
            text = str(v)
        parts.append(f"{opt.name}={text}")
    return ",".join(parts)
