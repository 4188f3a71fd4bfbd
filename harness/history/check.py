"""`xeonft history --check SET`: each configuration of a new result set against the catalog's last earlier result
set of the same machine that measured it (the last good), by the run-level verdict. A configuration that measured
there and fails now is `failed`, as `compare` calls it; a CI job fails on either (`CheckVerdict.regressed`). The
check reads the catalog and the set and writes neither: adding the set is `history --add`'s (or the sweep's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.analysis.compare import REGRESSIONS
from harness.base.stats import decide
from harness.history import catalog
from harness.history.catalog import CatalogRun
from harness.history.trend import labels
from harness.results.store import ResultStore


@dataclass(frozen=True)
class CheckVerdict:
    """One configuration of the checked set against its last good result set."""

    cell: str  # the configuration's label: the fields that tell the set's configurations apart
    verdict: str  # new | slower | faster | unchanged | inconclusive | failed
    reason: str
    ratio: float | None = None
    against: str | None = None  # the last good result set
    versions_before: dict[str, str] | None = None
    versions_now: dict[str, str] | None = None

    @property
    def regressed(self) -> bool:
        return self.verdict in REGRESSIONS


def _statuses(rows: list[CatalogRun]) -> str:
    return ", ".join(sorted({r.status for r in rows}))


def check(result_set: Path, where: catalog.Where, threshold: float = 0.05,
          alpha: float = 0.01) -> list[CheckVerdict]:
    mine_id = ResultStore(result_set).set_id()
    earlier_sets = [r for r in catalog.runs(where) if r.set_id != mine_id and r.measured]
    groups: dict[str, list[CatalogRun]] = {}
    for r in catalog.runs_of_set(result_set):
        groups.setdefault(r.identity, []).append(r)
    named = labels({ident: mine[0].config for ident, mine in groups.items()}, shown=("model", "precision",
                                                                                     "batch_size"))
    out: list[CheckVerdict] = []
    for ident, mine in groups.items():
        label, machine, when = named[ident], mine[0].machine, min(r.date or "" for r in mine)
        measured = [r for r in mine if r.measured]
        # the sets that began before this one, each whole: a set whose rounds interleaved with this one's keeps its
        # later runs too (each run before this set's first one would cut it short)
        theirs = [r for r in earlier_sets if r.identity == ident and r.machine == machine]
        began: dict[str, str] = {}
        for r in theirs:
            began[r.set_id] = min(began.get(r.set_id, r.date or ""), r.date or "")
        earlier = [r for r in theirs if began[r.set_id] < when]
        if not earlier:
            here = "" if measured else f"; here: {_statuses(mine)}"
            out.append(CheckVerdict(label, "new", f"no earlier run of this cell on this machine{here}"))
            continue
        latest = max(earlier, key=lambda r: (began[r.set_id], r.date or ""))
        last = latest.result_set
        before = [r for r in earlier if r.set_id == latest.set_id]
        if measured:
            v = decide([float(r.tokens_per_second or 0) for r in before],
                       [float(r.tokens_per_second or 0) for r in measured], threshold=threshold, alpha=alpha)
            verdict, reason, ratio = v.verdict, v.reason, v.ratio
        else:
            verdict, reason, ratio = "failed", f"measured in {last}, {_statuses(mine)} here", None
        out.append(CheckVerdict(label, verdict, reason, ratio=ratio, against=last,
                                versions_before=before[0].versions, versions_now=mine[0].versions))
    return out
