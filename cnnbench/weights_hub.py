"""Weights by name: where a model's weights come from, resolved once, where ``--weights`` enters.

``--weights`` takes a file, or a name that is fetched and checked here:

* ``torchvision``: the model's published torchvision file (IMAGENET1K_V1), through torch.hub's
  cache (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default), with
  torch.hub's hash rule: the hex after the last ``-`` of the file's name is a prefix of its
  sha256. ``$CNNBENCH_TORCHVISION_MIRROR`` replaces ``https://download.pytorch.org/models``.
* ``timm``: the file timm's pretrained config names (``timm/<model>.<tag>`` on the Hugging
  Face hub), through the Hugging Face hub cache, as timm does (the ``timm`` extra:
  huggingface_hub); a cached blob is checked against its sha256 name.
* ``http://...`` / ``https://...``: a mirror. The same hash rule: the file's name carries a
  sha256 prefix (``resnet18-f37072fd.pth``), or the URL ends in ``#sha256=<hex>``.

A file already in its cache is used offline, after its hash is checked again. No network, or
a hash that does not match: one line, exit 2. Every resolved file has a provenance, the row's
``weights`` column: ``torchvision:NAME``, ``timm:NAME``, ``url:URL``, ``sha256:HEX`` (a file
given by path), or ``seeded-init:SEED`` (no weights: a seeded random initialisation).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cnnbench.artifacts import require_file, sha256_file
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError, WeightsError

#: torchvision's published ImageNet-1k weights (IMAGENET1K_V1), by torchvision builder name
TORCHVISION_BASE = "https://download.pytorch.org/models"
TORCHVISION_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg11": "vgg11-8a719046.pth", "vgg11_bn": "vgg11_bn-6002323d.pth",
    "vgg13": "vgg13-19584684.pth", "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19": "vgg19-dcbb9e9d.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth",
    "googlenet": "googlenet-1378be20.pth",
    "resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}  # fmt: skip
MIRROR_ENV = "CNNBENCH_TORCHVISION_MIRROR"
#: timm's pretrained configs for the zoo models it has (timm 1.0: hf_hub_id "timm/")
TIMM_CONFIGS = {
    "inception_v4": "inception_v4.tf_in1k",
    "inception_resnet_v2": "inception_resnet_v2.tf_in1k",
}
NAMES = ("torchvision", "timm")
#: torch.hub's rule: the hex between the last '-' and the extension is a sha256 prefix
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Weights:
    """A model's weights as resolved: the local file, its sha256 and where it came from."""

    path: Path
    sha256: str
    provenance: str
    #: the URL or hub id it was fetched from (None for a local file)
    source: str | None = None

    @property
    def pretrained(self) -> bool:
        """Published weights (torchvision's, timm's), whose published accuracy applies."""
        return self.provenance.startswith(("torchvision:", "timm:"))


def seeded(seed: int) -> str:
    """The provenance of a seeded random initialisation."""
    return f"seeded-init:{seed}"


def is_name(text: str) -> bool:
    """Whether ``--weights`` names a source (torchvision, timm, a URL) rather than a file."""
    return text in NAMES or text.startswith(("http://", "https://"))


def resolve(model: str, text: str, *, torchvision: str | None, timm_ok: bool) -> Weights:
    """``--weights TEXT`` for ``model`` (its torchvision builder, and whether timm has it):
    fetched and checked as the module says, or a local file's sha256."""
    if text == "torchvision":
        if torchvision is None or torchvision not in TORCHVISION_FILES:
            raise InvalidInputError(
                f"{model} has no torchvision weights; give --weights FILE, or a URL"
            )
        base = os.environ.get(MIRROR_ENV, TORCHVISION_BASE).rstrip("/")
        url = f"{base}/{TORCHVISION_FILES[torchvision]}"
        path = fetch(url, hub_checkpoints() / TORCHVISION_FILES[torchvision])
        return Weights(path, sha256_file(path), f"torchvision:{torchvision}", url)
    if text == "timm":
        if not timm_ok or model not in TIMM_CONFIGS:
            raise InvalidInputError(f"{model} has no timm weights; give --weights FILE, or a URL")
        return _timm(TIMM_CONFIGS[model])
    if text.startswith(("http://", "https://")):
        url = text
        name = Path(urllib.parse.urlsplit(url).path).name
        if not name:
            raise InvalidInputError(f"--weights {url}: the URL names no file")
        path = fetch(url, hub_checkpoints() / name)
        return Weights(path, sha256_file(path), f"url:{url}", url)
    path = require_file(text, "weights file")
    return Weights(path, sha256_file(path), "sha256:" + sha256_file(path))


def hub_checkpoints() -> Path:
    """torch.hub's checkpoint cache, found as torch.hub finds it (without importing torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(home).expanduser() / "hub" / "checkpoints"


def expected_hash(url: str) -> str:
    """The sha256 (or its prefix) a URL promises: ``#sha256=HEX``, else the hex in its file's
    name; a URL that promises none is refused (nothing could check the file)."""
    parts = urllib.parse.urlsplit(url)
    frag = parts.fragment
    if frag.startswith("sha256="):
        hexa = frag[len("sha256=") :].lower()
        if re.fullmatch(r"[a-f0-9]{8,64}", hexa):
            return hexa
    m = _HASH_IN_NAME.search(Path(parts.path).name)
    if m:
        return m.group(1)
    raise InvalidInputError(
        f"--weights {url}: nothing to check the file against; name it NAME-<sha256 prefix>.pth "
        "(as torchvision does) or end the URL with #sha256=<hex>"
    )


def fetch(url: str, dest: Path) -> Path:
    """``dest`` (a cache entry for ``url``), downloaded if missing, its hash checked either way."""
    want = expected_hash(url)
    if dest.is_file():
        _check(dest, want, url, cached=True)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as res:  # noqa: S310
                    while chunk := res.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise InvalidInputError(
                    f"cannot download {url} ({reason}); with no network, put the file at {dest} "
                    "or give --weights FILE"
                ) from None
        got = digest.hexdigest()
        if not got.startswith(want):
            raise WeightsError(
                f"{url}: sha256 {got[:16]}... does not match {want} that the URL promises: not "
                "the published file (nothing was kept)"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _check(path: Path, want: str, url: str, *, cached: bool) -> None:
    got = sha256_file(path)
    if not got.startswith(want):
        where = "cached " if cached else ""
        raise WeightsError(
            f"{where}weights {path}: sha256 {got[:16]}... does not match {want} from {url}; "
            "delete the file to download it again"
        )


def _timm(config: str) -> Weights:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise RuntimeUnavailableError(
            "--weights timm needs huggingface_hub: pip install 'cnnbench[timm]'"
        ) from None
    repo = f"timm/{config}"
    # the hub reads these once, when imported; read here, they follow the environment now
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        path = Path(
            hf_hub_download(
                repo, "model.safetensors", cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                local_files_only=offline,
            )
        )  # fmt: skip
    except LocalEntryNotFoundError:
        raise InvalidInputError(
            f"cannot fetch {repo} from the Hugging Face hub (no network, and not in its cache); "
            "give --weights FILE"
        ) from None
    except Exception as exc:  # the hub's own errors: one line, never a traceback
        raise InvalidInputError(f"cannot fetch {repo}: {type(exc).__name__}: {exc}") from None
    blob = path.resolve()
    got = sha256_file(blob)
    if re.fullmatch(r"[a-f0-9]{64}", blob.name) and blob.name != got:
        raise WeightsError(
            f"cached weights {path}: sha256 {got[:16]}... does not match its hub blob "
            f"{blob.name[:16]}...; delete it to download it again"
        )
    return Weights(path, got, f"timm:{config}", f"hf://{repo}/model.safetensors")
