"""torch's per-module times: forward hooks on every leaf module, timed on the host clock (on
a GPU, each module's work is waited for, which adds a synchronisation per module).

A module called several times in one forward (torchvision's shared ReLU) is a layer per call.
Work outside any leaf module (a residual ``+=``, ``torch.flatten``) is one layer of its own,
``(between modules)``, so the layers add up to the forward. Convolutions and linear layers are
numbered in call order (``extra["weighted_index"]``): the ONNX export of the same model has its
weighted nodes in that order, which is how a torch profile lines up with the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cnnbench.engines.executed import ExecutedLayer
from cnnbench.engines.layer_times import LayerTimes

#: forwards before the profiled queries
WARMUP = 3
_WEIGHTED = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "Linear")
BETWEEN = "(between modules)"


def profile_module(
    model: Any, x: Any, queries: int, precision: str, sync: Callable[[], None] = lambda: None
) -> LayerTimes:
    """Each leaf module's time per query over ``queries`` forwards of ``model`` on ``x``."""
    import torch

    clock = time.perf_counter_ns
    calls: list[tuple[str, str, int]] = []  # (module path, class, ns) in call order
    starts: list[int] = []
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]

    def pre(_m: Any, _i: Any) -> None:
        sync()
        starts.append(clock())

    def post(name: str, kind: str) -> Callable[..., None]:
        def hook(_m: Any, _i: Any, _o: Any) -> None:
            sync()
            calls.append((name, kind, clock() - starts.pop()))

        return hook

    handles = []
    for name, mod in leaves:
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post(name, type(mod).__name__)))
    runs: list[list[tuple[str, str, int]]] = []
    walls: list[float] = []
    try:
        with torch.inference_mode():
            for i in range(WARMUP + queries):
                calls.clear()
                sync()
                t0 = clock()
                model(x)
                sync()
                wall = clock() - t0
                if i >= WARMUP:
                    runs.append(list(calls))
                    walls.append(wall / 1e6)
    finally:
        for h in handles:
            h.remove()
    return _layer_times(runs, walls, precision)


def _layer_times(
    runs: list[list[tuple[str, str, int]]], walls: list[float], precision: str
) -> LayerTimes:
    first = runs[0] if runs else []
    seen: dict[str, int] = {}
    layers: list[ExecutedLayer] = []
    weighted = 0
    for name, kind, _ in first:
        k = seen.get(name, 0)
        seen[name] = k + 1
        extra: dict[str, Any] = {}
        if kind in _WEIGHTED:
            extra["weighted_index"] = weighted
            weighted += 1
        layers.append(
            ExecutedLayer(
                name=name if k == 0 else f"{name}#{k + 1}",
                kind=kind,
                precision=precision,
                kernel=f"torch.nn.{kind}",
                extra=extra,
            )
        )
    times = [[run[i][2] / 1e6 for run in runs if i < len(run)] for i in range(len(first))]
    between = [max(w - sum(c[2] for c in run) / 1e6, 0.0) for w, run in zip(walls, runs, strict=True)]  # fmt: skip
    layers.append(ExecutedLayer(name=BETWEEN, kind="functional", precision=precision))
    times.append(between)
    return LayerTimes(
        layers=layers,
        times_ms=times,
        source="torch module hooks (host clock per leaf module)",
        queries=len(runs),
        wall_ms=walls,
    )
