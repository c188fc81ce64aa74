"""Suite-wide hooks: the suite's own HOME, and the GPU runs' skips.

The suite runs with HOME and every cache, store and runtime folder pointed at one scratch
folder (below), so it never writes to the user's HOME.

On a GPU machine (``-m gpu`` / ``-m trt``) a test module whose top-level import is missing
there (an optional runtime this project's CPU suite has) becomes one skip that names the
module, so the GPU tests still collect and run. In every other run such a module stays a
collection error: the CPU suite must never lose a module silently.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The suite never writes to the user's HOME. Every cache, store and runtime folder, ours and
# the libraries' (cnnbench's cache and store, matplotlib, Chromium, Ray's token, OpenVINO's
# telemetry, torch hub, pip), goes under one scratch folder: HOME itself and the XDG folders
# point there, for this process and every child it starts. tools/ci/home_check.sh (run by
# .ci/run around the suite) checks that the real HOME holds nothing new afterwards.
SCRATCH = Path(tempfile.mkdtemp(prefix="cnnbench-test-home-"))
# removed when pytest exits, whatever ran (a --collect-only run uses no fixture)
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
_ISOLATED = {
    "HOME": SCRATCH,
    "XDG_CACHE_HOME": SCRATCH / ".cache",
    "XDG_CONFIG_HOME": SCRATCH / ".config",
    "XDG_DATA_HOME": SCRATCH / ".local" / "share",
    "XDG_STATE_HOME": SCRATCH / ".local" / "state",
    "MPLCONFIGDIR": SCRATCH / ".config" / "matplotlib",
    "CNNBENCH_CACHE": SCRATCH / ".cache" / "cnnbench",
    # run and sweep record into the results store by default: the suite's go into a scratch
    # file (tests that need another pass --db or set CNNBENCH_DB themselves)
    "CNNBENCH_DB": SCRATCH / "store" / "t.db",
}
for _name, _path in _ISOLATED.items():
    os.environ[_name] = str(_path)


@pytest.fixture(scope="session", autouse=True)
def isolated_home() -> Iterator[Path]:
    """The scratch folder that stands for HOME during the suite (see above); removed after."""
    yield SCRATCH
    shutil.rmtree(SCRATCH, ignore_errors=True)


# The Ctrl-C tests send SIGINT as a terminal does to its foreground job. A launcher that starts
# the suite in the background without job control (`cmd &` in a script, nohup) leaves SIGINT
# ignored, and an ignored signal stays ignored across exec: every CLI child would then run
# through its Ctrl-C. A handler is reset to the default on exec, so setting Python's own here
# gives the children a terminal's disposition (and lets Ctrl-C stop pytest itself).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
