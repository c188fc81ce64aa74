"""A profile in words: the layer sum beside the p50 (flagged past 15%), where the time went by
executed precision and layer type, the conversion overhead, and why an INT8 cell is not INT8."""

from __future__ import annotations

from cnnbench.bench.measure.profile import GAP_FLAG, Profile
from cnnbench.engines.executed import SHARE_PRECISIONS


def headline(prof: Profile) -> str:
    """``layers sum to X ms per query; the cell's p50 is Y ms (gap Z%)``, flagged past 15%."""
    total = prof.layer_time_ms_total
    if prof.latency_ms_p50 is None:
        return f"layers sum to {total:.3f} ms per query ({prof.queries} profiled queries)"
    g = prof.gap
    flag = (
        f"  GAP OVER {100 * GAP_FLAG:.0f}%: the profile does not account for the measured time "
        "(profiler overhead, work outside the layers, or a noisy machine)"
        if g.get("flag")
        else ""
    )
    return (
        f"layers sum to {total:.3f} ms per query; the cell's p50 is {prof.latency_ms_p50:.3f} ms "
        f"(sum/p50 {g['ratio']:.2f}, {g['pct']:+.1f}%; {prof.queries} profiled queries){flag}"
    )


def summary_lines(prof: Profile) -> list[str]:
    """Time by executed precision and conversion; the biggest type/precision buckets; the
    INT8 warning where it applies."""
    s = prof.summary
    shares = [
        f"{p} {100 * s[f'time_{p}_share']:.1f}%"
        for p in SHARE_PRECISIONS
        if s.get(f"time_{p}_share")
    ]
    conv = s.get("conversion_time_share") or 0.0
    lines = [
        "time by executed precision: "
        + (", ".join(shares) or "none")
        + f"; conversion overhead {100 * conv:.1f}% in {s.get('conversion_layers', 0)} "
        "layer(s) the runtime added"
    ]
    kinds = list((s.get("time_by_kind_ms") or {}).items())[:6]
    if kinds:
        total = prof.layer_time_ms_total or 1.0
        lines.append("by layer type: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in kinds))
    warning = int8_warning(prof.precision, _mac_int8_share(prof), prof, engine=prof.engine)
    if warning:
        lines.append(f"WARNING: {warning}")
    return lines


def _mac_int8_share(prof: Profile) -> float | None:
    macs = [layer for layer in prof.layers if layer.macs and not layer.conversion]
    total = sum(layer.macs or 0 for layer in macs)
    if not total:
        return None
    return sum(layer.macs or 0 for layer in macs if layer.precision == "int8") / total


def int8_warning(
    precision: str,
    macs_int8_share: float | None,
    prof: Profile | None = None,
    *,
    engine: str = "",
    qdq_target: str | None = None,
) -> str:
    """Why an INT8 cell is not INT8 where it runs (under half its MACs ran in int8), or ''."""
    if precision != "int8" or macs_int8_share is None or macs_int8_share >= 0.5:
        return ""
    why = "its weighted layers ran in float between quantize/dequantize nodes"
    if qdq_target and engine and qdq_target != engine:
        why += f" (the file's Q/DQ is placed for {qdq_target}, not for {engine}'s fusion rules)"
    if prof is not None:
        qdq = [layer for layer in prof.layers if layer.conversion and "uantize" in layer.type]
        if qdq:
            t = sum(layer.time_ms for layer in qdq)
            why += f"; {len(qdq)} Q/DQ layers did not fuse, {t:.3g} ms per query"
    fix = (
        f"--qdq-target {engine}"
        if engine in ("onnxruntime", "openvino", "tensorrt")
        else "--qdq-target"
    )
    return (
        f"INT8 cell ran only {100 * macs_int8_share:.0f}% of its MACs in int8: {why}; place "
        f"Q/DQ for this runtime ({fix}) or compare it as the float cell it is"
    )
