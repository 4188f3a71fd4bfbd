"""Result sets from several machines of one sweep, merged into one.

Each node of a multi-node cell runs its own `xeonft run --node-rank K` and records only its local ranks. Merging
finds the nodes of one cell by its match key and repeat, and recombines every rank of every node into global
figures (tokens summed over all ranks, step time the slowest rank's). Single-node cells are copied as they are.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from harness.base.errors import XeonftError
from harness.results.records import SCHEMA_VERSION, CellRecord, Manifest, Measurement, Memory, NodeOutcome
from harness.results.store import ResultStore


def _merge_cell(records: list[CellRecord]) -> CellRecord:
    records = sorted(records, key=lambda r: (r.result.node_rank or 0) if r.result else 0)
    first = records[0]
    if len(records) == 1:
        return first
    nodes = [NodeOutcome(key=r.key, status=r.status, reason=r.reason, memory=r.memory) for r in records]
    merged = first.model_copy(update={"nodes": nodes})
    bad = [r for r in records if not r.measured]
    if bad:
        return merged.model_copy(update={"status": bad[0].status, "result": None,
                                         "reason": f"node {records.index(bad[0])}: {bad[0].reason}"})
    results = [r.result for r in records if r.result is not None]
    expected = results[0].world_size
    ranks = sorted((rank for res in results for rank in (res.ranks or [])), key=lambda r: r.rank)
    if len(ranks) != expected:
        return merged.model_copy(update={
            "status": "failed", "result": None,
            "reason": f"merged {len(ranks)} ranks from {len(records)} nodes, expected world size {expected}"})
    combined = Measurement.of_ranks(ranks, first.spec.timing_warmup_steps, first.spec.measured_steps)
    result = results[0].model_copy(update={
        **dict(combined), "ranks": ranks, "nodes": len(records),
        "rank_peak_rss_sum_bytes": sum(r.peak_rss_bytes or 0 for r in ranks)})
    watched = [r.memory for r in records if r.memory and r.memory.peak_rss_bytes is not None]  # bare: unwatched
    memory = Memory.across_nodes(watched, first.memory) if watched else first.memory or Memory()
    disturbed = [r for r in records if r.status == "disturbed"]
    return merged.model_copy(update={
        "status": "disturbed" if disturbed else "ok", "result": result, "memory": memory,
        "reason": f"node {records.index(disturbed[0])}: {disturbed[0].reason}" if disturbed else None})


def merge(sources: list[str | Path], out: str | Path) -> ResultStore:
    """Merge result sets (one per node, or any sets of one sweep) into `out`, a new result set."""
    if len(sources) < 2:
        raise XeonftError("merge needs at least two result sets")
    stores = [ResultStore(s) for s in sources]
    manifests = [s.manifest() for s in stores]
    target = ResultStore(out)
    if target.exists():
        raise XeonftError(f"result set '{target.root}' already exists; merge into a new folder")
    groups: dict[tuple[str, int], list[tuple[ResultStore, CellRecord]]] = {}
    for store in stores:
        for r in store.records():
            groups.setdefault((r.match_key or r.key, r.repeat), []).append((store, r))
    keys = []
    for members in groups.values():
        cell = _merge_cell([r for _, r in members])
        target.put(cell.key, cell)
        keys.append(cell.key)
        for store, rec in members:
            log = store.root / (rec.log or "")
            if rec.log and log.is_file():
                dest = target.root / f"logs/{rec.key}.log"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, dest)
    target.write_manifest(Manifest(
        schema_version=SCHEMA_VERSION, name=manifests[0].name, set_id=uuid.uuid4().hex,  # a new set
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        merged_from=[str(s.root) for s in stores], matrix=manifests[0].matrix,
        environment=manifests[0].environment, fingerprint=manifests[0].fingerprint,
        peak_tflops=manifests[0].peak_tflops,
        fingerprints=[m.fingerprint.model_dump(mode="json") for m in manifests], cells=keys))
    return target
