"""Seeded, deterministic training of small zoo models on bundled data (LeNet-5 on digits).

Determinism: one seed drives the weight init (``get_model(seed=...)``) and the shuffling
(a private ``torch.Generator``); training runs with ``torch.use_deterministic_algorithms(True)``
and a fixed thread count (default 1), so the same seed and thread count give bit-identical
weights on the same machine and torch build. Global torch settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.artifacts import (
    DEFAULT_ARTIFACTS,
    atomic_write_bytes,
    atomic_write_json,
    sha256_file,
)
from cnnbench.data import digits
from cnnbench.errors import InvalidInputError
from cnnbench.models import get_model, get_spec
from cnnbench.progress import note, track

DATASETS = ("digits",)


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how. Defaults reach >= 97% top-1 for lenet5 on the digits test split.

    AdamW with a one-cycle schedule peaking at ``lr``; each training image is shifted by up to
    ``shift`` pixels; the loss is cross-entropy of ``logits * temperature`` (the model's logits
    and predictions are unchanged).
    """

    model: str = "lenet5"
    dataset: str = "digits"
    epochs: int = 30
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    shift: int = 1
    temperature: float = 0.1
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name in ("epochs", "batch", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not isinstance(self.shift, int) or not 0 <= self.shift <= 6:
            raise ValueError(f"shift must be an integer in 0..6, got {self.shift!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass
class TrainResult:
    """Where the weights went and how good they are (top-1 as fractions in [0, 1])."""

    weights: Path
    config: TrainConfig
    train_top1: float
    test_top1: float
    train_samples: int
    test_samples: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = str(self.weights)
        return d


def default_weights_path(model: str, dataset: str) -> Path:
    """``artifacts/<model>/<dataset>/weights.pt``."""
    return DEFAULT_ARTIFACTS / model / dataset / "weights.pt"


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, restored on exit."""
    import torch

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def train(config: TrainConfig, out: str | Path | None = None) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; write the state dict atomically to ``out``.

    Also writes ``train.json`` (config, accuracy, sha256) beside the weights.

    Raises:
        InvalidInputError: a model the dataset cannot feed, or an unwritable ``out``.
    """
    import torch
    import torch.nn.functional as F

    spec = get_spec(config.model)
    if tuple(spec.input_shape) != (1, 32, 32):
        raise InvalidInputError(
            f"training on {config.dataset} supports 1x32x32 models (lenet5); {config.model} "
            f"expects {'x'.join(map(str, spec.input_shape))}"
        )
    out_path = Path(out) if out is not None else default_weights_path(config.model, config.dataset)
    train_split = digits.load_split("train", spec)
    test_split = digits.load_split("test", spec)
    x_tr = torch.from_numpy(train_split.images)
    y_tr = torch.from_numpy(train_split.labels)
    n = len(train_split)
    background = float(x_tr.min())

    t0 = time.perf_counter()
    losses: list[float] = []
    with deterministic_torch(config.threads):
        model = get_model(config.model, seed=config.seed, eval_mode=False)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = (n + config.batch - 1) // config.batch
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
        gen = torch.Generator().manual_seed(config.seed)
        for _ in track(range(config.epochs), config.epochs, "train epochs"):
            model.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, config.batch):
                idx = perm[i : i + config.batch]
                xb = _shift(x_tr[idx], config.shift, gen, background)
                # the RBF logits (-squared distances) span hundreds; scaling them in the loss
                # only keeps cross-entropy from acting as a hard margin (unstable, overfits)
                loss = F.cross_entropy(model(xb) * config.temperature, y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            losses.append(round(total / n, 6))
        model.eval()
        train_top1 = _top1(model, train_split.images, train_split.labels)
        test_top1 = _top1(model, test_split.images, test_split.labels)
    seconds = time.perf_counter() - t0

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    # into memory first: torch.save names the zip's root folder after the file, and the temp
    # file's random name would make identical weights hash differently
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out_path, buf.getvalue())
    result = TrainResult(
        weights=out_path,
        config=config,
        train_top1=train_top1,
        test_top1=test_top1,
        train_samples=n,
        test_samples=len(test_split),
        seconds=round(seconds, 3),
        losses=losses,
        sha256=sha256_file(out_path),
    )
    atomic_write_json(out_path.with_name(out_path.stem + ".train.json"), result.to_dict())
    note(
        f"trained {config.model} on {config.dataset}: train top-1 {train_top1:.4f}, "
        f"test top-1 {test_top1:.4f} ({len(test_split)} images) in {seconds:.1f}s"
    )
    return result


def _shift(x: Any, max_shift: int, gen: Any, background: float) -> Any:
    """Translate each image by up to ``max_shift`` pixels (augmentation; digits sit in a 6-pixel
    margin, so nothing of the digit leaves the canvas)."""
    import torch

    if max_shift == 0:
        return x
    k = 2 * max_shift + 1
    pad = torch.nn.functional.pad(x, (max_shift,) * 4, value=background)
    dy = torch.randint(0, k, (x.shape[0],), generator=gen).tolist()
    dx = torch.randint(0, k, (x.shape[0],), generator=gen).tolist()
    h, w = x.shape[-2:]
    return torch.stack(
        [pad[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))]
    )


def _top1(model: Any, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch):
            logits = model(torch.from_numpy(images[i : i + batch]))
            correct += int((logits.argmax(dim=1).numpy() == labels[i : i + batch]).sum())
    return correct / len(labels)
