"""Suite-wide hooks.

On a GPU machine (``-m gpu`` / ``-m trt``) a test module whose top-level import is missing
there (an optional runtime this project's CPU suite has) becomes one skip that names the
module, so the GPU tests still collect and run. In every other run such a module stays a
collection error: the CPU suite must never lose a module silently.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

import pytest

# run and sweep record into the results store by default: the suite's go into a scratch file,
# never into the user's own store (tests that need one pass --db or set CNNBENCH_DB themselves)
os.environ["CNNBENCH_DB"] = os.path.join(tempfile.mkdtemp(prefix="cnnbench-test-db-"), "t.db")

_MISSING = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


def device_run(markexpr: str) -> bool:
    """Whether ``-m markexpr`` selects the GPU or TensorRT tests."""
    return bool(re.search(r"(?<!not )\b(gpu|trt)\b", markexpr or ""))


def missing_module(longrepr: str) -> str | None:
    m = _MISSING.search(longrepr)
    return m.group(1) if m else None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if not (rep.failed and isinstance(collector, pytest.Module)):
        return
    if not device_run(collector.config.getoption("markexpr", "")):
        return
    name = missing_module(str(rep.longrepr))
    if name is None:
        return
    rep.outcome = "skipped"
    rep.longrepr = (str(collector.path), 0, f"Skipped: {name} is not installed here")
