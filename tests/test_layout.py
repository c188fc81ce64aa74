"""One import name: the wheel and the sdist install ``cnnbench`` alone, with export/engines/bench
inside it; the tools and the tests are not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("export", "engines", "bench")


@pytest.mark.parametrize("stage", STAGES)
def test_stage_folders_stay_at_the_root_and_link_into_the_package(stage: str) -> None:
    link = ROOT / "cnnbench" / stage
    assert (ROOT / stage / "__init__.py").is_file() and not (ROOT / stage).is_symlink()
    assert link.is_symlink() and Path(link.readlink()) == Path("..") / stage


def test_our_stages_import_only_under_cnnbench(tmp_path: Path) -> None:
    # From a folder outside the checkout, as any user of the installed distribution would.
    code = (
        "import importlib.util as u, cnnbench.export.pipeline, cnnbench.engines.base, "
        "cnnbench.bench.run.cell\n"
        "print([n for n in ('export', 'engines', 'bench') if u.find_spec(n) is not None])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _copy_tree(dest: Path) -> Path:
    """The checkout as a clean clone has it: without the root's outputs and caches."""
    anywhere = shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", ".*_cache", ".venv")
    at_root = {"artifacts", "results", "build", "dist"}

    def skip(folder: str, names: list[str]) -> set[str]:
        root = Path(folder) == ROOT
        return set(anywhere(folder, names)) | (
            {n for n in names if n in at_root} if root else set()
        )

    return Path(shutil.copytree(ROOT, dest, symlinks=True, ignore=skip))


def test_wheel_holds_cnnbench_alone(tmp_path: Path) -> None:
    src = _copy_tree(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("cnnbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"cnnbench"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["cnnbench"]
    for module in ("export/pipeline.py", "engines/base.py", "bench/run/cell.py", "cli/common.py"):
        assert f"cnnbench/{module}" in names
    assert "cnnbench/bench/configs/default_cpu.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "tools/")) or "/scripts/" in n]
    assert not [n for n in names if n.endswith((".sh", ".md")) and "dist-info" not in n]


def _fresh_venv(where: Path) -> Path:
    """A new venv whose own site-packages is empty but for what we install; the packages
    cnnbench needs (numpy, click, ...) come from this environment's site-packages, added
    after it by a .pth line (a line adds a folder, it runs none of that folder's .pth files:
    this environment's editable cnnbench stays out)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    (site,) = where.glob("lib/python*/site-packages")
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (site / "deps.pth").write_text("\n".join(ours) + "\n")
    return where / "bin" / "python"


def test_sdist_installs_into_a_fresh_venv_and_imports_every_module(tmp_path: Path) -> None:
    src = _copy_tree(tmp_path / "src")
    build = "from setuptools import build_meta as b; print(b.build_sdist({!r}))".format(
        str(tmp_path / "sdist")
    )
    subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True)
    (sdist,) = (tmp_path / "sdist").glob("cnnbench-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
    assert not [m.name for m in members if m.issym() or m.islnk()], "links in the sdist"
    assert any(m.name.endswith("/cnnbench/bench/run/cell.py") for m in members)
    python = _fresh_venv(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-build-isolation", "--no-index", str(sdist)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = (
        "import importlib, pkgutil, cnnbench\n"
        "names = [m.name for m in pkgutil.walk_packages(cnnbench.__path__, 'cnnbench.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(cnnbench.__file__, len(names))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].startswith(str(tmp_path / "venv")), out
    assert int(out[1]) > 100, out
