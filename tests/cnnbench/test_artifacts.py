from __future__ import annotations

import os
import stat

import pytest

from cnnbench.artifacts import atomic_path, atomic_write_json, atomic_write_text, sha256_file
from cnnbench.errors import ArtifactError


def test_atomic_write_gives_normal_file_mode(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert p.read_text() == '{\n  "a": 1\n}\n'


def test_atomic_path_leaves_nothing_on_interrupt(tmp_path) -> None:
    dest = tmp_path / "out" / "model.onnx"
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_path_keeps_old_file_until_success(tmp_path) -> None:
    dest = atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("new")
        raise RuntimeError("boom")
    assert dest.read_text() == "old"
    atomic_write_text(dest, "new")
    assert dest.read_text() == "new"


def test_sha256_of_missing_file_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="file not found"):
        sha256_file(tmp_path / "nope")
