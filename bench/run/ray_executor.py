"""Sweeps on Ray: one task per cell, exclusive resources, artifacts built once, nothing lost.

Each cell is a Ray task that runs the local executor's own cell function
(:func:`bench.run.child.run_isolated`: a fresh process per cell) on whichever node Ray places it.

* **Exclusive resources.** A CPU cell asks for the custom resource :data:`BENCH` (one per node:
  one timed CPU cell per node at a time); a GPU cell for ``num_gpus=1``. The local cluster
  that a sweep starts has ``BENCH: 1``; nodes of an existing cluster get it with
  ``ray start --resources='{"cnnbench_bench": 1}'``.
* **Artifacts built once.** The driver exports / converts / calibrates each ONNX file once
  (:meth:`CellRunner.prepare`, as the local executor does), then puts the file's folder in
  Ray's object store. A task uses the file in place when its node sees it with the same
  sha256 (one machine, or a shared folder), else writes the shipped copy into a node-local
  cache keyed by that sha256. TensorRT engines are built by the cell on its node, keyed as
  today. The node's matmul peak is measured by the task, not by the measured process.
* **Rows stream back** as cells finish and go through the same :class:`RowSink` (store, then
  file). Every row's ``env_node`` / ``env_ray_node_id`` name the node that measured it.
* **Faults.** A task whose worker or node died is retried once, on another node where there
  is one; its row then says where and why it failed first (``retried_after``). A cell that
  fails twice is an error row naming both nodes, and the sweep goes on. Ctrl-C cancels the
  outstanding tasks (each kills its cell process) and keeps every finished row.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnbench.artifacts import atomic_write_bytes, cache_dir, sha256_file
from cnnbench.bench.measure.peak import get_peak
from cnnbench.bench.run.cell import error_row
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.child import run_isolated
from cnnbench.bench.run.local import CellRunner, Record, RowSink, sweep_todo
from cnnbench.bench.run.sweep_config import SweepConfig
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.progress import note, warn

#: the per-node resource a timed CPU cell takes whole
BENCH = "cnnbench_bench"
#: how often the driver looks for finished cells (s)
_POLL_S = 0.5


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeUnavailableError(
            "--executor ray needs Ray: pip install 'cnnbench[ray]'"
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected to ``address`` (``auto``, ``ray://HOST:PORT``, ``HOST:PORT``), or to a
    local cluster started here and stopped afterwards (``address`` None)."""
    ray = _ray()
    if ray.is_initialized():  # a caller's own connection (tests, notebooks): use it as is
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address is None:
        kwargs.update(resources={BENCH: 1}, num_cpus=num_cpus or os.cpu_count() or 1)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(
            f"--ray-address {address}: cannot connect to Ray ({first_line(exc)}); give auto, "
            "HOST:PORT or ray://HOST:PORT of a running cluster, or leave it out for a local one"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Shipped:
    """An ONNX artifact folder, as the driver prepared it and as a node gets it."""

    path: str
    sha256: str
    files: Any  # [ObjectRef of {name: bytes}], in a list so Ray does not fetch it eagerly


def _local_copy(ray: Any, shipped: Shipped) -> str:
    """The path of the artifact on this node: the driver's, where it is here with the same
    content; else a copy from the object store under the node's cache, keyed by sha256."""
    here = Path(shipped.path)
    if here.is_file() and sha256_file(here) == shipped.sha256:
        return str(here)
    dest = cache_dir() / "ray-artifacts" / shipped.sha256 / here.name
    if dest.is_file() and sha256_file(dest) == shipped.sha256:
        return str(dest)
    files: dict[str, bytes] = ray.get(shipped.files[0])
    for name, data in files.items():
        atomic_write_bytes(dest.parent / name, data)
    return str(dest)


def _node() -> dict[str, Any]:
    ray = _ray()
    ctx = ray.get_runtime_context()
    return {"env_node": f"{socket.gethostname()}/{ray.util.get_node_ip_address()}",
            "env_ray_node_id": ctx.get_node_id()}  # fmt: skip


class _Where:
    """Which node each running cell is on (a Ray actor on the driver's node), so that a cell
    whose node died can be named and retried elsewhere."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}

    def started(self, key: str, node: dict[str, Any]) -> None:
        self.nodes[key] = node

    def node(self, key: str) -> dict[str, Any] | None:
        return self.nodes.get(key)


def _cell_task(
    spec: CellSpec, shipped: Shipped | None, timeout_s: float, where_actor: Any
) -> dict[str, Any]:
    """One cell on a Ray worker: the artifact where this node can read it, the node's peak
    (cached, outside the measured process), then the local executor's isolated cell (the
    spec carries everything, a user's model included)."""
    ray = _ray()
    where = _node()
    where_actor.started.remote(spec.key(), where)
    if shipped is not None:
        spec = replace(spec, onnx_path=_local_copy(ray, shipped), onnx_sha256=shipped.sha256)
    if spec.engine != "null":
        get_peak(spec.device, spec.precision)
    row = run_isolated(spec, timeout_s)
    row.update(where)
    return row


def _options(ray: Any, spec: CellSpec, avoid: str | None) -> dict[str, Any]:
    opts: dict[str, Any] = {"max_retries": 0, "num_cpus": 0}
    if spec.device.startswith("cuda"):
        opts.update(num_gpus=1, num_cpus=1)
    else:
        opts["resources"] = {BENCH: 1}
    if avoid is not None:
        need = "GPU" if spec.device.startswith("cuda") else BENCH
        other = [
            n["NodeID"] for n in ray.nodes()
            if n.get("Alive") and n["NodeID"] != avoid and n["Resources"].get(need)
        ]  # fmt: skip
        if other:  # else wherever Ray can (the same node, if it came back)
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(other[0], soft=True)
    return opts


def _check_resources(ray: Any, specs: list[CellSpec]) -> None:
    total = ray.cluster_resources()
    if any(not s.device.startswith("cuda") for s in specs) and not total.get(BENCH):
        raise InvalidInputError(
            f"no node of this Ray cluster offers the '{BENCH}' resource that a timed CPU cell "
            f"takes whole; start each node with ray start --resources='{{\"{BENCH}\": 1}}'"
        )
    if any(s.device.startswith("cuda") for s in specs) and not total.get("GPU"):
        raise InvalidInputError("GPU cells, but no node of this Ray cluster has a GPU")


def run_cells_on_ray(
    specs: list[CellSpec],
    runner: CellRunner,
    sink: RowSink,
    *,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Measure ``specs`` as Ray tasks; rows go to ``sink`` as they arrive (see the module)."""
    with connected(address) as ray:
        _check_resources(ray, specs)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        where = ray.remote(_Where).options(num_cpus=0, scheduling_strategy=here).remote()
        task = ray.remote(_cell_task)
        shipped: dict[str, Shipped] = {}
        pending: dict[Any, tuple[CellSpec, Shipped | None]] = {}
        first_try: dict[str, dict[str, Any]] = {}

        def submit(spec: CellSpec, ship: Shipped | None, avoid: str | None = None) -> None:
            opts = _options(ray, spec, avoid)
            ref = task.options(**opts).remote(spec, ship, runner.timeout_s, where)
            pending[ref] = (spec, ship)

        for spec in specs:  # prepared on the driver, once per artifact, before any is measured
            ready = runner.prepare(spec, peak=False)
            if isinstance(ready, dict):
                sink.add(spec.key(), ready)
                continue
            ship = None
            if ready.onnx_path:
                if ready.onnx_path not in shipped:
                    shipped[ready.onnx_path] = _ship(ray, ready.onnx_path, ready.onnx_sha256)
                ship = shipped[ready.onnx_path]
            submit(ready, ship)
        note(f"ray: {len(pending)} cell(s) submitted to {_describe(ray)}")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    spec, ship = pending.pop(ref)
                    key = spec.key()
                    try:
                        row: dict[str, Any] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # our code raised: no retry
                        row = error_row(spec, f"ray task failed: {first_line(exc)}")
                    except ray.exceptions.RayError as exc:  # the worker or node died
                        node = ray.get(where.node.remote(key)) or {}
                        why = f"{_died(exc)} on node {node.get('env_node', 'unknown')}"
                        if key not in first_try:
                            first_try[key] = {"why": why, **node}
                            warn(f"ray: {key}: {why}; retrying once, elsewhere")
                            submit(spec, ship, avoid=node.get("env_ray_node_id"))
                            continue
                        row = error_row(spec, f"{first_try[key]['why']}; retried: {why}")
                        row.update(node)
                    if key in first_try:
                        row["retried_after"] = first_try[key]["why"]
                    sink.add(key, row)
        except KeyboardInterrupt:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)  # KeyboardInterrupt in the task: it kills its cell process
            time.sleep(1.0)
            sink.interrupted()
            raise
    return sink.finish()


def _ship(ray: Any, onnx_path: str, sha: str | None) -> Shipped:
    folder = Path(onnx_path).parent
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return Shipped(onnx_path, sha or sha256_file(onnx_path), [ray.put(files)])


def _died(exc: BaseException) -> str:
    words = {"NodeDiedError": "its node died", "WorkerCrashedError": "its worker died",
             "OwnerDiedError": "its owner died", "ObjectLostError": "its result was lost"}  # fmt: skip
    return words.get(type(exc).__name__, f"{type(exc).__name__}: {first_line(exc, 120)}")


def _describe(ray: Any) -> str:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    bench = sum(int(n["Resources"].get(BENCH, 0)) for n in alive)
    gpus = sum(int(n["Resources"].get("GPU", 0)) for n in alive)
    return f"{len(alive)} node(s), {bench} CPU bench slot(s), {gpus} GPU(s)"


def run_sweep_on_ray(
    cfg: SweepConfig,
    out: Path,
    *,
    resume: bool = False,
    record: Record | None = None,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`bench.run.local.run_sweep` with the cells as Ray tasks: the same pending cells (so
    ``--resume`` works across executors), the same rows, to the same files and store."""
    runner = CellRunner(isolated=True, timeout_s=cfg.timeout_s)
    todo = sweep_todo(cfg, out, resume)
    return run_cells_on_ray(todo, runner, RowSink(out, record, "sweep"), address=address)
