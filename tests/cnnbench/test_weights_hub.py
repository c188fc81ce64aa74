"""Weights by name (torchvision, timm, a URL): fetched through the caches, checked by their
hash, one line when they cannot be; and every row says where its weights came from.

Nothing is downloaded from the internet: the URLs are served on loopback by this test, from
files it makes, and the caches are folders it writes."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench import weights_hub
from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError, WeightsError


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # the test's stderr is the CLI's
        pass


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on loopback; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _lenet_weights(folder: Path, *, seed: int = 3) -> Path:
    """A real LeNet-5 state dict, named as torchvision names its files (NAME-<sha256[:8]>)."""
    import torch

    from cnnbench.models import get_model

    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw.pt"
    torch.save(get_model("lenet5", seed=seed).state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    named = folder / f"lenet5-{digest[:8]}.pth"
    raw.rename(named)
    return named


def test_a_url_with_a_matching_hash_loads_and_the_manifest_records_it(
    tmp_path: Path, torch_home: Path
) -> None:
    served = _lenet_weights(tmp_path / "mirror")
    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    with serving(served.parent) as base:
        url = f"{base}/{served.name}"
        res = CliRunner().invoke(
            cli, ["export", "lenet5", "--weights", url, "-o", str(tmp_path / "a")]
        )
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "a/lenet5/fp32/manifest.json").read_text())
    assert manifest["weights"] == f"sha256:{sha}"
    assert manifest["extra"]["weights_source"] == f"url:{url}"
    cached = torch_home / "hub" / "checkpoints" / served.name
    assert cached.read_bytes() == served.read_bytes()
    # the server is gone: the cached file works offline, checked again
    res = CliRunner().invoke(cli, ["export", "lenet5", "--weights", url, "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    # and a run's rows say where the weights came from
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "null", "--weights", url, "--no-db",
                                   "--max-time", "0.5", "--min-time", "0.1", "--in-process",
                                   "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["weights"] == f"url:{url}" and row["weights_file"] == str(cached)


def test_seeded_weights_are_said_on_the_console_and_in_the_row(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "null", "--no-db", "--in-process",
                                   "--max-time", "0.5", "--min-time", "0.1", "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "random weights (seeded-init:0) for lenet5" in res.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["weights"] == "seeded-init:0" and row["weights_file"] is None


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("lenet5-00000000.pth", "does not match 00000000"),  # a wrong hash in the name
        ("lenet5.pth", "nothing to check the file against"),  # no hash at all
    ],
)
def test_a_url_whose_file_cannot_be_checked_is_one_line_and_nothing_is_kept(
    tmp_path: Path, torch_home: Path, name: str, needle: str
) -> None:
    served = _lenet_weights(tmp_path / "mirror")
    served.rename(served.with_name(name))
    with serving(served.parent) as base:
        res = CliRunner().invoke(cli, ["export", "lenet5", "--weights", f"{base}/{name}"])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.stderr
    ckpt = torch_home / "hub" / "checkpoints"
    assert not ckpt.exists() or not list(ckpt.iterdir())


def test_no_network_is_one_line(tmp_path: Path, torch_home: Path) -> None:
    with serving(tmp_path) as base:
        pass  # the port is closed again: nothing answers there
    res = CliRunner().invoke(cli, ["export", "lenet5", "--weights", f"{base}/lenet5-1234abcd.pth"])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot download" in err[0] and "no network" in err[0], res.stderr


def test_torchvision_weights_whose_cached_file_does_not_match_are_refused(
    tmp_path: Path, torch_home: Path
) -> None:
    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "resnet18-f37072fd.pth").write_bytes(b"not the published file")
    res = CliRunner().invoke(cli, ["export", "resnet18", "--weights", "torchvision"])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "does not match f37072fd" in err[0], res.stderr
    res = CliRunner().invoke(cli, ["export", "lenet5", "--weights", "torchvision"])
    assert res.exit_code == 2 and "lenet5 has no torchvision weights" in res.stderr


def test_torchvision_names_its_published_file_and_a_mirror_replaces_the_host(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert weights_hub.TORCHVISION_FILES["resnet50"] == "resnet50-0676ba61.pth"
    seen: list[str] = []

    def fetch(url: str, dest: Path) -> Path:
        seen.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"x")
        return dest

    monkeypatch.setattr(weights_hub, "fetch", fetch)
    monkeypatch.setenv(weights_hub.MIRROR_ENV, "http://mirror.example/models/")
    w = weights_hub.resolve("resnet50", "torchvision", torchvision="resnet50", timm_ok=False)
    assert seen == ["http://mirror.example/models/resnet50-0676ba61.pth"]
    assert w.provenance == "torchvision:resnet50" and w.pretrained


def _hf_cache(root: Path, repo: str, data: bytes, *, blob_name: str | None = None) -> Path:
    """A Hugging Face hub cache holding ``repo``'s model.safetensors, laid out as the hub does."""
    folder = root / ("models--" + repo.replace("/", "--"))
    rev = "0" * 40
    blob = folder / "blobs" / (blob_name or hashlib.sha256(data).hexdigest())
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(Path("../..") / "blobs" / blob.name)
    return snap / "model.safetensors"


def test_timm_weights_come_from_the_hub_cache_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _hf_cache(tmp_path / "hub", "timm/inception_v4.tf_in1k", b"tensors")
    w = weights_hub.resolve("inception_v4", "timm", torchvision=None, timm_ok=True)
    assert w.path == path and w.provenance == "timm:inception_v4.tf_in1k" and w.pretrained
    # a blob whose bytes are not its name's hash
    _hf_cache(tmp_path / "hub2", "timm/inception_resnet_v2.tf_in1k", b"x", blob_name="a" * 64)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub2"))
    with pytest.raises(WeightsError, match="does not match its hub blob"):
        weights_hub.resolve("inception_resnet_v2", "timm", torchvision=None, timm_ok=True)
    # nothing in the cache, and offline: one line
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(InvalidInputError, match="no network, and not in its cache"):
        weights_hub.resolve("inception_v4", "timm", torchvision=None, timm_ok=True)


def test_timm_without_its_extra_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # an import of it fails
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'cnnbench\[timm\]'"):
        weights_hub.resolve("inception_v4", "timm", torchvision=None, timm_ok=True)
    with pytest.raises(InvalidInputError, match="resnet18 has no timm weights"):
        weights_hub.resolve("resnet18", "timm", torchvision="resnet18", timm_ok=False)
