"""Result sets from several machines of one sweep, merged into one.

Each node of a multi-node cell runs its own `xeonft run --node-rank K` and records only its local ranks. Merging
finds the nodes of one cell by its match key and repeat, and recombines every rank of every node into global
figures (tokens summed over all ranks, step time the slowest rank's). Single-node cells are copied as they are.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from harness.errors import XeonftError
from harness.results.ranks import combine_ranks
from harness.results.store import ResultStore, write_json


def _merge_cell(records: list[dict[str, Any]]) -> dict[str, Any]:
    records = sorted(records, key=lambda r: (r.get("result") or {}).get("node_rank", 0))
    first = records[0]
    if len(records) == 1:
        return first
    merged = {**first, "nodes": [{"key": r["key"], "status": r["status"], "reason": r.get("reason"),
                                  "memory": r.get("memory")} for r in records]}
    bad = [r for r in records if r["status"] not in ("ok", "disturbed")]
    if bad:
        return {**merged, "status": bad[0]["status"], "reason": f"node {records.index(bad[0])}: {bad[0].get('reason')}",
                "result": None}
    results = [r["result"] for r in records]
    expected = results[0].get("world_size", 1)
    ranks = [rank for res in results for rank in res["ranks"]]
    if len(ranks) != expected:
        return {**merged, "status": "failed", "result": None,
                "reason": f"merged {len(ranks)} ranks from {len(records)} nodes, expected world size {expected}"}
    combined = combine_ranks(ranks, first["spec"]["warmup_steps"], first["spec"]["measured_steps"])
    result = {**results[0], **combined, "ranks": sorted(ranks, key=lambda r: r["rank"]), "nodes": len(records),
              "rank_peak_rss_sum_bytes": sum(r.get("peak_rss_bytes") or 0 for r in ranks)}
    watched = [r["memory"] for r in records if r.get("memory")]  # a bare cell's nodes are not watched
    memory = {"peak_rss_bytes": sum(m["peak_rss_bytes"] for m in watched),
              "peak_uss_bytes": sum(m["peak_uss_bytes"] for m in watched),
              "foreign_cpu_cores_mean": max(m["foreign_cpu_cores_mean"] for m in watched)} if watched else {}
    disturbed = [r for r in records if r["status"] == "disturbed"]
    status = "disturbed" if disturbed else "ok"
    reason = f"node {records.index(disturbed[0])}: {disturbed[0].get('reason')}" if disturbed else None
    return {**merged, "status": status, "reason": reason, "result": result,
            "memory": {**(first.get("memory") or {}), **memory}}


def merge(sources: list[str | Path], out: str | Path) -> ResultStore:
    """Merge result sets (one per node, or any sets of one sweep) into `out`, a new result set."""
    if len(sources) < 2:
        raise XeonftError("merge needs at least two result sets")
    stores = [ResultStore(s) for s in sources]
    manifests = [s.manifest() for s in stores]
    target = ResultStore(out)
    if target.exists():
        raise XeonftError(f"result set '{target.root}' already exists; merge into a new folder")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for store in stores:
        for r in store.records():
            groups.setdefault((r.get("match_key") or r["key"], r.get("repeat", 0)), []).append(r)
    keys = []
    for records in groups.values():
        cell = _merge_cell(records)
        target.put(cell["key"], cell)
        keys.append(cell["key"])
        for store, rec in ((s, r) for s in stores for r in records if s.get(r["key"]) == r):
            log = store.root / rec.get("log", "")
            if rec.get("log") and log.is_file():
                dest = target.root / f"logs/{rec['key']}.log"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, dest)
    write_json(target.manifest_path, {
        "name": manifests[0].get("name"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "merged_from": [str(s.root) for s in stores], "matrix": manifests[0].get("matrix"),
        "environment": manifests[0].get("environment"), "fingerprint": manifests[0].get("fingerprint"),
        "fingerprints": [m.get("fingerprint") for m in manifests], "cells": keys,
    })
    return target
