"""Shared fixture for the export tests: serve repeated identical exports from memory.

The exporter is deterministic (tests/export/test_export.py::test_reexport_is_byte_identical
checks it with two real exports), so tests about what happens *after* the export step (gate
failures, interrupts, reuse, external data, CLI wiring) can skip re-tracing the same model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

_MEMO: dict[Any, Any] = {}


def _install(mp: pytest.MonkeyPatch) -> list[str]:
    """Wrap export.pipeline.export_module with the memo; returns a log of 'hit'/'miss'."""
    import cnnbench.export.pipeline as pl

    real, log = pl.export_module, []

    def cached(module: Any, shape: tuple[int, ...], **kw: Any) -> Any:
        digest = hashlib.sha256()
        for name, value in module.state_dict().items():
            digest.update(name.encode())
            digest.update(value.numpy().tobytes())
        key = (type(module).__name__, digest.hexdigest(), shape, tuple(sorted(kw.items())))
        log.append("hit" if key in _MEMO else "miss")
        if key not in _MEMO:
            _MEMO[key] = real(module, shape, **kw)
        hit = _MEMO[key]
        proto = type(hit.proto)()
        proto.CopyFrom(hit.proto)  # the pipeline edits the proto in place
        return type(hit)(proto, hit.exporter, hit.notes)

    mp.setattr(pl, "export_module", cached)
    return log


@pytest.fixture(scope="session")
def memo_installer() -> Callable[[pytest.MonkeyPatch], list[str]]:
    """For module-scoped fixtures: ``with pytest.MonkeyPatch.context() as mp: install(mp)``."""
    return _install


@pytest.fixture
def memo_export(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Memoised exports for one test; returns the hit/miss log."""
    return _install(monkeypatch)
