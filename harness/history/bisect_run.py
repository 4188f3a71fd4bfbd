"""Bisecting for real (`xeonft bisect`): a library's releases between a good and a bad version, each built as a stack
over xeonft's own environment and run on one cell with enough repeats for a run-level verdict, searched by the pure
`harness.history.bisect` for the first version whose throughput (or eval loss) changed beyond the threshold with
significance. The cells land in one result set; adding it to the catalog is the verb's call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.analysis.summary import parse_selector
from harness.base.errors import XeonftError
from harness.config.matrix import load_matrix
from harness.config.spec import CellSpec
from harness.config.stack import Stack
from harness.history import releases
from harness.history.bisect import BisectResult, bisect
from harness.launch import stacks
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.runner import Runner
from harness.launch.sweep import axis_values
from harness.measure.fingerprint import environment_key, fingerprint
from harness.results.store import ResultStore


def pick_cell(matrix_path: str, selector: str | None) -> CellSpec:
    """The one configuration of the matrix the selector names (any matrix axis, e.g. precision=bf16,batch_size=4)."""
    matrix = load_matrix(matrix_path)
    first = [c for c in matrix.cells if c.repeat == 0]
    wanted = parse_selector(selector) if selector else {}
    chosen = [c for c in first if all(str(axis_values(c, [k])[k]) == str(v) for k, v in wanted.items())]
    if len(chosen) != 1:
        names = "; ".join(" ".join(f"{k}={v}" for k, v in axis_values(c, list(matrix.axes)).items()) for c in chosen)
        raise XeonftError(f"--cell {selector or '(none)'} matches {len(chosen)} configurations of {matrix_path}"
                          + (f": {names}" if chosen else "") + "; name exactly one")
    return chosen[0]


def pins_for(libs: list[str], version: str, companions: dict[str, list[str]]) -> list[str]:
    pins = [f"{libs[0]}=={version}"]
    for lib in libs[1:]:
        match = releases.companion(version, companions[lib])
        if match is None:
            raise XeonftError(f"{lib} has no release matching {libs[0]} {version} (same major.minor)")
        pins.append(f"{lib}=={match}")
    return pins


def run_bisect(libs: list[str], good: str, bad: str, matrix_path: str, selector: str | None, out: Path,
               runs: int = 3, max_runs: int = 6, threshold: float = 0.05, alpha: float = 0.01,
               metric: str = "throughput", allow_torch: bool = False) -> tuple[BisectResult, dict[str, Any]]:
    """The bisect's result, and its timings (each stack's build: seconds and size; the wall time). Stacks that
    pin torch (a bisect of torch itself) are refused before anything runs unless `allow_torch`."""
    spec = pick_cell(matrix_path, selector)
    first = stacks.torch_cost(Stack(name=f"{libs[0]}-{good}", pins=tuple(f"{lib}=={good}" for lib in libs)))
    if first and not allow_torch:
        raise XeonftError(f"{first}, and so does every stack of this bisect; pass {stacks.ALLOW_TORCH_FLAG}")
    versions = releases.between(releases.available(libs[0]), good, bad)
    companions = {lib: releases.available(lib) for lib in libs[1:]}
    console.print(f"[bold]bisect[/] {libs[0]}: {len(versions)} releases from {versions[0]} to {versions[-1]}: "
                  f"{', '.join(versions)}")
    store = ResultStore(out)
    timings: dict[str, Any] = {"builds": {}, "started": time.time()}
    fp = fingerprint()
    counts: dict[str, int] = {}

    def measure(version: str, n: int) -> list[float]:
        stack = Stack(name=f"{libs[0]}-{version}", pins=tuple(pins_for(libs, version, companions)))
        if stacks.info(stack) is None:
            t0 = time.perf_counter()
            try:
                stacks.build(stack, allow_torch=allow_torch)
            except XeonftError as err:
                console.print(f"[red]{version}: the stack does not build[/] ({str(err).splitlines()[0]})")
                return []
            timings["builds"][version] = {"seconds": time.perf_counter() - t0, **_size(stack)}
        values = []
        for _ in range(n):
            repeat = counts.get(version, 0)
            counts[version] = repeat + 1
            # bisecting the loss needs it from every run, not only a version's first
            cell = spec.model_copy(update={"repeat": repeat, "launch": spec.launch.model_copy(update={"stack": stack}),
                                           **({"evaluate": "every"} if metric == "loss" else {})})
            rec = runner.run(cell, f"{libs[0]} {version} run {repeat + 1}", "bisect",
                             axes={"stack": stack.name, libs[0]: version})
            summary = rec.result.summary if rec.result else None
            if rec.status != "ok" or summary is None:
                continue
            if metric == "loss":
                if rec.result and rec.result.eval_loss:
                    values.append(1.0 / rec.result.eval_loss)  # higher is better, as for throughput
            elif summary.tokens_per_second:
                values.append(summary.tokens_per_second)
        return values

    with termination_as_interrupt(), ResultSetLock(out), MachineLock(wait=True):
        store.open({"name": out.name, "bisect": {"libs": libs, "good": good, "bad": bad}}, fp, environment_key(fp),
                   [], resume=True)
        runner = Runner(store, environment_key(fp))
        try:
            result = bisect(versions, measure, threshold=threshold, alpha=alpha, runs=runs, max_runs=max_runs)
        except ValueError as err:  # the good or the bad release did not run: nothing to compare against
            raise XeonftError(f"bisect {libs[0]}: {err}; see the cells in {out}") from None
        store.add_cells(runner.keys)
    timings["wall_seconds"] = time.time() - timings.pop("started")
    return result, timings


def _size(stack: Stack) -> dict[str, Any]:
    made = stacks.info(stack) or {}
    return {"bytes": made.get("bytes"), "changed": made.get("changed")}
