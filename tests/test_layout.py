"""One import name: the wheel installs ``cnnbench`` alone, with export/engines/bench inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
        "cnnbench.bench.runner\n"
        "print([n for n in ('export', 'engines', 'bench') if u.find_spec(n) is not None])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _copy_tree(dest: Path) -> Path:
    skip = shutil.ignore_patterns(
        ".git", "artifacts", "results", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
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
    for module in ("export/pipeline.py", "engines/base.py", "bench/runner.py", "cli/app.py"):
        assert f"cnnbench/{module}" in names
    assert "cnnbench/bench/configs/default_cpu.yaml" in names
    assert not [n for n in names if "/scripts/" in n or n.startswith("tests/")]
