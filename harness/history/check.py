"""`xeonft history --check SET`: each cell of a new result set against the catalog's last earlier result set of
the same machine that ran it ok (the last good), by the run-level verdict; a CI job fails on `slower`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.base.stats import decide
from harness.history import catalog


def check(result_set: Path, catalog_path: Path, threshold: float = 0.05, alpha: float = 0.01) -> list[dict[str, Any]]:
    catalog.add(result_set, catalog_path)
    name = str(result_set.resolve())
    rows = catalog.runs(catalog_path)
    new = [r for r in rows if r["result_set"] == name and r["status"] == "ok" and r["tokens_per_second"]]
    out: list[dict[str, Any]] = []
    for ident in dict.fromkeys(r["identity"] for r in new):
        mine = [r for r in new if r["identity"] == ident]
        machine, when = mine[0]["machine"], min(r["date"] or "" for r in mine)
        earlier = [r for r in rows if r["identity"] == ident and r["machine"] == machine and r["result_set"] != name
                   and r["status"] == "ok" and r["tokens_per_second"] and (r["date"] or "") < when]
        label = ", ".join(f"{k}={mine[0]['config'].get(k)}" for k in ("model", "precision", "batch_size"))
        if not earlier:
            out.append({"cell": label, "verdict": "new", "reason": "no earlier run of this cell on this machine"})
            continue
        last = max(earlier, key=lambda r: r["date"] or "")["result_set"]
        base = [r["tokens_per_second"] for r in earlier if r["result_set"] == last]
        v = decide(base, [r["tokens_per_second"] for r in mine], threshold=threshold, alpha=alpha)
        out.append({"cell": label, "verdict": v.verdict, "ratio": v.ratio, "reason": v.reason, "against": last,
                    "versions_before": next(r["versions"] for r in earlier if r["result_set"] == last),
                    "versions_now": mine[0]["versions"]})
    return out
