"""Result rows: the column contract, and CSV / JSON-lines writers that append atomically.

Each row is one benchmark cell. Appending writes one whole line with a single ``write`` on an
``O_APPEND`` descriptor followed by ``fsync``, so a crash or Ctrl-C leaves every finished row
intact and at most drops the row being written. A torn last line (no newline) is cut off before
the next append. When a CSV row brings new columns the file is rewritten (temp + rename) with
the widened header. Writers hold a lock on the file's folder, so two runs can share one file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnbench.artifacts import (
    append_whole,
    atomic_write_bytes,
    atomic_write_text,
    folder_lock,
    probe_writable,
)
from cnnbench.errors import ArtifactError, InvalidInputError
from cnnbench.values import blank, num

#: The contract in /work/shared/DESIGN.md, in this order first.
CONTRACT_COLUMNS = (
    "model", "engine", "precision", "device", "batch", "scenario",
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean",
    "throughput_ips", "samples", "params", "macs",
    "host_peak_rss_mb", "device_mem_peak_mb", "error",
)  # fmt: skip

#: Extra columns, in display order; anything else a row carries goes after these.
EXTRA_COLUMNS = (
    "latency_ms_p95", "latency_ms_stdev", "latency_ms_min", "latency_ms_max",
    "latency_ms_median_ci_low", "latency_ms_median_ci_high", "ci_half_width_pct",
    "device_latency_ms_p50", "device_latency_ms_p90", "device_latency_ms_p99",
    "device_latency_ms_mean", "timing_mode", "latency_kind", "device_timing_method",
    "headline_metric", "headline_value",
    "queries", "wall_s", "gmacs_per_s", "peak_gmacs_per_s", "efficiency", "peak_source",
    "target_qps", "achieved_qps", "max_queue_delay_ms", "latency_bound_ms", "server_peak_qps",
    "mean_batch",
    "artifact_precision", "effective_precision", "engine_version", "threads", "engine_info",
    "layers_source", "macs_int8_share", "macs_fp8_share", "macs_fp16_share", "macs_bf16_share",
    "macs_fp32_share",
    "macs_coverage",
    "variant", "engine_options",
    "host_rss_after_load_mb", "host_peak_rss_scope", "device_mem_source",
    "gpu_nvml_process_peak_mb", "gpu_nvml_device_used_increase_mb",
    "gpu_nvml_device_used_peak_mb", "gpu_nvml_baseline_mb", "torch_cuda_max_allocated_mb",
    "nvml_device_match", "nvml_note",
    "energy_mj_per_image", "energy_j", "energy_source", "energy_note",
    "max_batch", "max_batch_first_oom", "max_batch_limit", "max_batch_trials",
    "fp32_top1_agreement",
    "stop_reason", "warmup_count", "warmup_s", "stop_warmup_count", "stop_warmup_time",
    "stop_min_count", "stop_min_time", "stop_max_time", "stop_ci_target",
    "percentile_method", "ci_method", "ci_level", "throughput_definition",
    "prepare_s", "load_s", "child_startup_s", "cell_process_s", "launch_facts_s", "launch_peak_s",
    "launch_prepare_s", "seed", "weights", "artifact", "artifact_sha256",
    "timestamp", "finished_at", "retried_after", "cell",
)  # fmt: skip

#: Metrics where higher is better (the others, latencies and memory, are better lower)
HIGHER_IS_BETTER = (
    "throughput_ips", "gmacs_per_s", "efficiency", "achieved_qps", "server_peak_qps",
)  # fmt: skip

#: Columns that identify a cell: two rows with the same key measured the same thing.
KEY_COLUMNS = ("model", "engine", "precision", "device", "batch", "scenario")

THROUGHPUT_DEFINITION = "images/s = batch x completed queries / wall time of the measured window"


def cell_key(row: Mapping[str, Any], *, repeat: bool = True) -> str:
    """A stable string key of a row's cell (server cells include their target QPS).

    Repeated measurements of a cell (``repeat`` 1, 2, ...) get ``#r1``, ``#r2``, ... so a
    resumed sweep knows each; ``repeat=False`` gives the cell's key alone (to match cells).
    """
    parts = [str(row.get(k, "")) for k in KEY_COLUMNS]
    if not blank(row.get("variant")):  # e.g. quantizer=modelopt: another setup, another cell
        parts.append(str(row["variant"]))
    if str(row.get("scenario")) == "server":
        qps = row.get("target_qps")
        q = num(qps)
        parts.append("peak" if blank(qps) else f"qps={q if q is not None else math.nan:g}")
    key = "|".join(parts)
    r = num(row.get("repeat"))
    return f"{key}#r{int(r)}" if repeat and r else key


def columns_for(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ordered columns covering ``rows``: the contract, known extras, the rest, then env_*."""
    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    known = [c for c in EXTRA_COLUMNS if c in keys]
    rest = sorted(k for k in keys if k not in CONTRACT_COLUMNS and k not in EXTRA_COLUMNS)
    return [*CONTRACT_COLUMNS, *known, *sorted(rest, key=lambda k: (k.startswith("env_"), k))]


def format_of(path: Path | str) -> str:
    """'csv' or 'jsonl' from the file name; anything else is a one-line error."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise InvalidInputError(f"results file must end in .csv or .jsonl, got {path}")


def _cell_text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _csv_line(row: Mapping[str, Any], columns: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell_text(row.get(c)) for c in columns])
    return buf.getvalue()


def _header_line(cols: list[str]) -> str:
    return _csv_line({c: c for c in cols}, cols)


def _append_bytes(path: Path, data: bytes) -> None:
    append_whole(path, data)  # whole or not at all: a short write is cut back


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a write interrupted by a kill)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])


def append_row(path: Path | str, row: Mapping[str, Any]) -> None:
    """Append one row to a CSV or JSON-lines file, atomically at the line level.

    Concurrent writers (two ``cnnbench run --out r.csv``) take turns under a folder lock, so
    neither the first header nor a widened one can overwrite the other's rows.
    """
    path = Path(path)
    format_of(path)
    with folder_lock(path):
        _append_row(path, row)


def _append_row(path: Path, row: Mapping[str, Any]) -> None:
    fmt = format_of(path)
    if path.exists() and path.stat().st_size:
        _cut_torn_tail(path)
    if fmt == "jsonl":
        line = json.dumps({k: _json_safe(v) for k, v in row.items()}, default=str) + "\n"
        _append_bytes(path, line.encode("utf-8"))
        return
    header = _csv_header(path)
    if header is None:
        cols = columns_for([row])
        atomic_write_text(path, _header_line(cols) + _csv_line(row, cols))
        return
    if any(k not in header for k in row):
        write_rows(path, [*read_rows(path), dict(row)])
        return
    _append_bytes(path, _csv_line(row, header).encode("utf-8"))


def write_rows(path: Path | str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as a whole new file (temp + rename)."""
    path = Path(path)
    if format_of(path) == "jsonl":
        text = "".join(
            json.dumps({k: _json_safe(v) for k, v in r.items()}, default=str) + "\n" for r in rows
        )
        return atomic_write_text(path, text)
    cols = columns_for(rows)
    text = _header_line(cols) + "".join(_csv_line(r, cols) for r in rows)
    return atomic_write_text(path, text)


def _csv_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    return next(csv.reader(io.StringIO(_read_text(path))), None)


def _read_text(path: Path) -> str:
    """A results file's text: UTF-8, with or without the byte-order mark spreadsheets write."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ArtifactError(
            f"{path} is not UTF-8 text; a results file is UTF-8 CSV or JSON lines (re-save it "
            "as UTF-8)"
        ) from None


def check_output(path: Path | str) -> Path:
    """Validate a results file to write, before any work: its suffix, that its folder can be
    written (probed, leaving nothing behind), and that an existing file is a results file of
    ours (rows are added to it). One-line InvalidInputError otherwise."""
    path = Path(path)
    format_of(path)
    if path.exists():
        if not path.is_file():
            raise InvalidInputError(f"--out {path} exists and is not a file; choose a file name")
        try:
            rows = read_rows(path)
        except ArtifactError as exc:
            raise InvalidInputError(f"--out {path} is not a cnnbench results file: {exc}") from None
        if rows and not all(c in rows[0] for c in ("model", "engine", "precision")):
            raise InvalidInputError(
                f"--out {path} exists and is not a cnnbench results file (no model/engine/"
                "precision columns); choose another file"
            )
    probe_writable(path.parent, what="results")
    return path


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """Read a results file; numbers come back as int/float, empty cells as None.

    A torn last line (no trailing newline) is ignored.
    """
    path = Path(path)
    fmt = format_of(path)
    if not path.is_file():
        raise ArtifactError(f"results file not found: {path}")
    text = _read_text(path)
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows: list[dict[str, Any]] = []
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise ArtifactError(f"{path}:{i} is not a JSON object; fix or remove it") from None
            if not isinstance(obj, dict):
                raise ArtifactError(f"{path}:{i} is not a JSON object; fix or remove it")
            rows.append(obj)
        return rows
    for rec in csv.DictReader(io.StringIO(text)):
        rows.append({k: _parse(v) for k, v in rec.items() if k is not None})
    return rows


def _parse(v: str | None) -> Any:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v
