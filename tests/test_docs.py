"""Every command the README and docs/ show runs as written.

A page's ```bash blocks are its commands; the fence's info string says how one is run:

* ``bash``: run in order, in one scratch folder per page (so a page's commands build on each
  other, as a user's would), each must exit 0, or ``exit=N`` (``exit=0|1``: a command whose
  answer depends on what was measured, as ``recommend`` on a busy machine, where every cell may
  be invalid);
* ``bash background port=N``: a server, started and waited for until it answers on port N,
  stopped when the page is done;
* ``bash gpu``: needs a CUDA GPU; skipped where there is none, saying so;
* ``bash install``: the README's two commands, which install the package: ``.ci/run`` runs
  them exactly as written (tools/ci/readme_commands.py reads them from the README);
* ``yaml file=NAME``: a file the page shows, written into the scratch folder.

A full ``cnnbench`` command written in running text (`` `cnnbench layers lenet5 -p int8` ``)
is run too, after the page's blocks.

The scratch folder holds what the pages say they use: ``my_cnn.onnx`` (a small classifier
exported by plain ``torch.onnx.export``), ``calib_images/`` (32 random 256×256 JPEGs), ``mymodels.py``
(whose ``build()`` returns an ``nn.Module``), and ``bench`` (a link to the checkout's, for
``bench/configs`` and ``bench/scripts``). Running every page is slow (minutes); the default
suite checks that every command parses, against the CLI itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KINDS = {
    "bash": ("background", "gpu", "install", "port", "exit", "checkout"),
    "yaml": ("file",),
}
#: ``checkout``: the block runs in a git checkout of the project (a clone of its HEAD), as a
#: contributor would run the CI scripts
#: programs a shown command may start with
PROGRAMS = ("cnnbench", "curl", "bash", "pip", "pytest")


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str
    flags: dict[str, str]
    text: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[str]:
        """The block's command lines (``\\`` continuations joined, comments and blanks out)."""
        out: list[str] = []
        for raw in self.text.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                out.append(line)
        return out


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        words = m.group(2).split()
        flags = dict(w.split("=", 1) if "=" in w else (w, "") for w in words)
        line = text[: m.start()].count("\n") + 1
        found.append(Block(page, m.group(1), flags, m.group(3), line))
    return found


#: a full command in running text: `cnnbench SUBCOMMAND ARG...` (a bare `cnnbench run` is a name)
INLINE = re.compile(r"`(cnnbench\s+[a-z-]+\s[^`]+)`")


def inline_commands(page: Path) -> list[tuple[int, str]]:
    """The full ``cnnbench`` commands a page writes in running text, outside its blocks."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text(encoding="utf-8"))
    # a command wrapped over lines is one command, as the page shows it
    return [(text[: m.start()].count("\n") + 1, " ".join(m.group(1).split()))
            for m in INLINE.finditer(text)]  # fmt: skip


def _all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def _argv(command: str) -> list[str]:
    """A command's words, without leading VAR=value assignments."""
    words = shlex.split(command)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


# ---- the default suite: every block is known and every cnnbench command parses -------------
def test_every_block_is_of_a_known_kind() -> None:
    problems = []
    for b in _all_blocks():
        if b.lang not in KINDS:
            continue  # text, console output, python: shown, not run
        unknown = set(b.flags) - set(KINDS[b.lang])
        if unknown:
            problems.append(f"{b.where}: unknown flag(s) {sorted(unknown)}")
        if b.lang == "yaml" and "file" not in b.flags:
            problems.append(f"{b.where}: a yaml block names its file (file=NAME)")
        for cmd in b.commands() if b.lang == "bash" else []:
            prog = _argv(cmd)[0] if _argv(cmd) else ""
            if prog not in PROGRAMS:
                problems.append(f"{b.where}: {cmd!r} starts with {prog!r}")
            if prog == "pip" and "install" not in b.flags:
                problems.append(f"{b.where}: an install command outside a 'bash install' block")
    assert not problems, "\n".join(problems)


def test_the_readme_install_commands_are_what_ci_runs() -> None:
    installs = [c for b in blocks(ROOT / "README.md") if "install" in b.flags for c in b.commands()]
    assert len(installs) == 2, installs
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/ci/readme_commands.py"), str(ROOT / "README.md")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines() == installs
    ci = (ROOT / ".ci" / "run").read_text()
    assert "tools/ci/readme_commands.py README.md" in ci and 'bash -c "$test_part"' in ci
    assert 'bash -c "$main_job"' in ci
    assert not [b.where for p in PAGES[1:] for b in blocks(p) if "install" in b.flags]


def _cnnbench_commands() -> list[tuple[str, list[str]]]:
    out = [
        (f"{page.relative_to(ROOT)}:{line}: {cmd}", _argv(cmd)[1:])
        for page in PAGES
        for line, cmd in inline_commands(page)
    ]
    for b in _all_blocks():
        if b.lang != "bash" or "install" in b.flags:
            continue
        for cmd in b.commands():
            argv = _argv(cmd)
            if argv and argv[0] == "cnnbench":
                out.append((f"{b.where}: {cmd}", argv[1:]))
    return out


def test_every_cnnbench_command_parses() -> None:
    """Each shown ``cnnbench`` command names a real command, and its options parse and convert
    (names, numbers, choices), checked against the CLI itself without running it."""
    from cnnbench.cli import cli

    problems = []
    commands = _cnnbench_commands()
    assert len(commands) > 40
    for where, args in commands:
        name, rest = args[0], args[1:]
        cmd = cli.commands.get(name)
        if cmd is None:
            problems.append(f"{where}: no command {name!r}")
            continue
        try:
            cmd.make_context(f"cnnbench {name}", list(rest))
        except click.ClickException as exc:
            problems.append(f"{where}: {exc.format_message()}")
    assert not problems, "\n".join(problems)


# ---- the slow suite: every page, run ------------------------------------------------------------
@dataclass
class _Session:
    folder: Path
    env: dict[str, str]
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _prepare(folder: Path) -> None:
    """The files the pages say they use."""
    import numpy as np
    import torch
    from PIL import Image

    (folder / "bench").symlink_to(ROOT / "bench")
    (folder / "mymodels.py").write_text(
        "from torch import nn\n\n\n"
        "def build() -> nn.Module:\n"
        "    return nn.Sequential(\n"
        "        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "        nn.Flatten(), nn.Linear(32, 10),\n"
        "    )\n"
    )
    sys.path.insert(0, str(folder))
    try:
        import mymodels  # type: ignore[import-not-found]

        torch.manual_seed(0)
        net = mymodels.build().eval()
        torch.onnx.export(
            net, (torch.randn(1, 3, 64, 64),), str(folder / "my_cnn.onnx"),
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("mymodels", None)
    images = folder / "calib_images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(32):
        pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img{i:02d}.jpg")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise AssertionError(f"nothing listened on port {port} within {timeout:g}s")


def _checkout(s: _Session) -> Path:
    """A clone of the repository's HEAD in the session's folder (made once)."""
    dest = s.folder / "checkout"
    if not dest.exists():
        if not (ROOT / ".git").exists():
            pytest.fail("a 'checkout' block needs the tests to run from a git clone of cnnbench")
        subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=120)
    return dest


def _run_block(s: _Session, b: Block) -> None:
    if b.lang == "yaml":
        (s.folder / b.flags["file"]).write_text(b.text)
        return
    if b.lang != "bash" or "install" in b.flags:
        return
    if "gpu" in b.flags and not _has_cuda():
        s.skipped.append(f"{b.where}: needs a CUDA GPU")
        return
    cwd = _checkout(s) if "checkout" in b.flags else s.folder
    for cmd in b.commands():
        if "background" in b.flags:
            proc = subprocess.Popen(
                ["bash", "-c", cmd], cwd=s.folder, env=s.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            s.servers.append(proc)
            _wait_for_port(int(b.flags["port"]), proc)
            continue
        res = subprocess.run(
            ["bash", "-c", cmd], cwd=cwd, env=s.env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        want = {int(c) for c in b.flags.get("exit", "0").split("|")}
        assert res.returncode in want, (
            f"{b.where}: {cmd}\nexit {res.returncode} (want {want})\n{res.stdout[-2000:]}"
            f"\n{res.stderr[-3000:]}"
        )


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture
def session(tmp_path: Path) -> Iterator[_Session]:
    scripts = sysconfig.get_path("scripts")
    home = tmp_path / "home"  # each page is a new user: its own HOME, caches and default store
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("CNNBENCH_DB", "CNNBENCH_CACHE", "MPLCONFIGDIR"):
        env.pop(name, None)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_STATE_HOME=str(home / ".local/state"))  # fmt: skip
    _prepare(tmp_path)
    s = _Session(tmp_path, env)
    try:
        yield s
    finally:
        for proc in s.servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_commands_of_a_page_run(page: Path, session: _Session) -> None:
    for b in blocks(page):
        _run_block(session, b)
    for line, cmd in inline_commands(page):  # the page's commands in running text, last
        _run_block(session, Block(page, "bash", {}, cmd, line))
    if session.skipped:
        print("skipped here:", *session.skipped, sep="\n  ")
