"""Shared pieces of the report's figures: saving (PNG + SVG), captions, log axes, the precisions'
markers, and point labels that do not overlap each other, the markers or the axes' edges.

Labels: a greedy placer: each label tries positions around its point (8 directions, growing distances),
measured in display space with the figure's renderer, and takes the first free one (else the
least-overlapping). Far-placed labels get a thin leader line. Call it after the axes' limits and
scales are final.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.artifacts import atomic_path
from cnnbench.precision import PRECISIONS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels
#: each precision's marker in every figure (the precision table's)
PREC_MARKERS = {p.value: p.marker for p in PRECISIONS}


@dataclass(frozen=True)
class Plot:
    """One saved figure: its files (PNG, SVG), a title and the caption shown under it."""

    name: str
    title: str
    caption: str
    files: list[Path]


_ANGLES = (45, -45, 135, -135, 0, 180, 90, -90)
_STEPS_PT = (2.0, 7.0, 14.0, 24.0, 36.0)
_CORE_PT = 6.0  # the part of another marker a label must not cover
_BUBBLE_WEIGHT = 0.02  # covering the rest of a big bubble is cheap (labels have a white box)


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _circle_hit(box: Box, cx: float, cy: float, r: float) -> float:
    nx = min(max(cx, box[0]), box[2])
    ny = min(max(cy, box[1]), box[3])
    d = math.hypot(cx - nx, cy - ny)
    return (r - d) * r if d < r else 0.0


def _outside(box: Box, frame: Box) -> float:
    return sum(
        max(0.0, v)
        for v in (frame[0] - box[0], frame[1] - box[1], box[2] - frame[2], box[3] - frame[3])
    )


def place_labels(
    ax: Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    texts: Sequence[str],
    radii_pt: Sequence[float],
    *,
    fontsize: float = 8.5,
) -> None:
    """Annotate each (x, y) with its text, keeping labels clear of markers of ``radii_pt``."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    px = fig.dpi / 72.0
    frame_bb = ax.get_window_extent(renderer)
    frame: Box = (frame_bb.x0, frame_bb.y0, frame_bb.x1, frame_bb.y1)
    centres = [tuple(ax.transData.transform((x, y))) for x, y in zip(xs, ys, strict=True)]
    discs = [(cx, cy, r * px) for (cx, cy), r in zip(centres, radii_pt, strict=True)]
    placed: list[Box] = []
    order = sorted(range(len(texts)), key=lambda i: -radii_pt[i])
    for i in order:
        ann = ax.annotate(
            texts[i], (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points",
            fontsize=fontsize, ha="left", va="bottom", zorder=5,
        )  # fmt: skip
        bb = ann.get_window_extent(renderer)
        w, h = bb.width, bb.height
        cx, cy = centres[i]
        best: tuple[float, float, float, float] | None = None
        for step in _STEPS_PT:
            dist = (min(radii_pt[i], _CORE_PT + 0.6 * radii_pt[i]) + step) * px
            for deg in _ANGLES:
                c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
                x0 = cx + (dist * c if c > 0.1 else (-dist * abs(c) - w if c < -0.1 else -w / 2))
                y0 = cy + (dist * s if s > 0.1 else (-dist * abs(s) - h if s < -0.1 else -h / 2))
                box: Box = (x0, y0, x0 + w, y0 + h)
                score = sum(_overlap(box, p) for p in placed) * 10
                # Other markers: their centres must stay visible; their bubbles may be covered.
                score += sum(
                    _circle_hit(box, x, y, min(r, _CORE_PT * px)) * 20
                    + _circle_hit(box, x, y, r) * _BUBBLE_WEIGHT
                    for j, (x, y, r) in enumerate(discs)
                    if j != i
                )
                score += _outside(box, frame) * 50
                if best is None or score < best[0]:
                    best = (score, x0, y0, dist)
                if score == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        _, x0, y0, dist = best
        ann.remove()
        far = dist > (radii_pt[i] + 8) * px
        ax.annotate(
            texts[i], (xs[i], ys[i]), xytext=((x0 - cx) / px, (y0 - cy) / px),
            textcoords="offset points", fontsize=fontsize, ha="left", va="bottom", zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6} if far else None,
        )  # fmt: skip
        placed.append((x0, y0, x0 + w, y0 + h))


def save(fig: Figure, out: Path, name: str, title: str, caption: str) -> Plot:
    files = []
    for ext in ("png", "svg"):
        dest = out / f"{name}.{ext}"
        with atomic_path(dest, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight", metadata=_meta(ext))
        files.append(dest)
    import matplotlib.pyplot as plt

    plt.close(fig)

    return Plot(name, title, caption, files)


def _meta(ext: str) -> dict[str, Any]:
    # No dates in the files: the same results give the same bytes.
    return {"Date": None} if ext == "svg" else {}


def log_axis(ax: Axes, axis: str, base: int = 10) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    if base == 10:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
