"""Bisecting for real (`xeonft bisect`): a library's releases between a good and a bad version, each built as a stack
over xeonft's own environment and run on one cell with enough repeats for a run-level verdict, searched by the pure
`harness.history.bisect` for the first version whose throughput (or eval loss) changed beyond the threshold with
significance. The cells land in one result set; adding it to the catalog is the verb's call."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.analysis.summary import parse_selector
from harness.base.errors import XeonftError
from harness.base.stats import decide
from harness.config.matrix import load_matrix
from harness.config.spec import CellSpec
from harness.config.stack import Stack
from harness.history import release_dates, releases
from harness.history.bisect import BisectResult, bisect
from harness.launch import stacks
from harness.launch.console import console
from harness.launch.convert import prepare_models
from harness.launch.lifeline import termination_as_interrupt
from harness.launch.locks import MachineLock, ResultSetLock
from harness.launch.reference import ReferenceTokens
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


class DatedPins:
    """The pins of each bisect step when packages move with the bisected library by date
    (`harness.history.release_dates`): each co-moving package at its newest release out on the step's release day,
    capped by the version this environment holds. The release this environment holds is today's stack as it is."""

    def __init__(self, primary: str, others: list[str], lookup: dict[str, dict[str, str]] | None = None):
        import importlib.metadata as md

        self.primary, self.others = primary, others
        self.lookup = lookup or {name: release_dates.published(name) for name in [primary, *others]}
        self.installed: dict[str, str] = {}
        for name in [primary, *others]:
            with contextlib.suppress(md.PackageNotFoundError):
                self.installed[name] = md.version(name)

    def pins(self, version: str) -> list[str]:
        if self.installed.get(self.primary) == version:
            moved = {n: self.installed[n] for n in self.others if n in self.installed}
        else:
            moved = release_dates.co_pins(self.primary, version, self.others, self.installed, self.lookup)
        return [f"{self.primary}=={version}", *(f"{n}=={v}" for n, v in moved.items())]

    def day(self, version: str) -> str:
        return self.lookup[self.primary].get(version, "")[:10]


def moved_between(a: dict[str, str], b: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """The packages whose versions differ between two stacks' resolved sets."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def run_bisect(libs: list[str], good: str, bad: str, matrix_path: str, selector: str | None, out: Path,
               runs: int = 3, max_runs: int = 6, threshold: float = 0.05, alpha: float = 0.01,
               metric: str = "throughput", allow_torch: bool = False, with_: list[str] | None = None,
               put_back: bool = True) -> tuple[BisectResult, dict[str, Any]]:
    """The bisect's result, and its timings (each stack's build: seconds and size; each version's pins, resolved
    set and work of a step; the put-back runs; the wall time). Stacks that pin torch (a bisect of torch itself)
    are refused before anything runs unless `allow_torch`. With `with_`, those packages move by release date
    (`DatedPins`); at the culprit, each pinned package that moved is put back to its last-good version in the
    culprit's stack, and measured, to say which of them changed the speed."""
    spec = pick_cell(matrix_path, selector)
    first = stacks.torch_cost(Stack(name=f"{libs[0]}-{good}", pins=tuple(f"{lib}=={good}" for lib in libs)))
    if first and not allow_torch:
        raise XeonftError(f"{first}, and so does every stack of this bisect; pass {stacks.ALLOW_TORCH_FLAG}")
    if with_ and len(libs) > 1:
        raise XeonftError("--with (packages moving by date) and a second --lib (moving by major.minor) do not "
                          "combine: name the co-moving packages one way")
    versions = releases.between(releases.available(libs[0]), good, bad)
    companions = {lib: releases.available(lib) for lib in libs[1:]}
    dated = DatedPins(libs[0], with_) if with_ else None
    console.print(f"[bold]bisect[/] {libs[0]}: {len(versions)} releases from {versions[0]} to {versions[-1]}: "
                  f"{', '.join(versions)}")
    store = ResultStore(out)
    timings: dict[str, Any] = {"builds": {}, "stacks": {}, "work": {}, "put_back": {}, "started": time.time()}
    fp = fingerprint()
    began = time.strftime("%Y-%m-%dT%H:%M:%S%z")  # the records' own format: a run started before is reused
    counts: dict[str, int] = {}

    def stack_of(version: str) -> Stack:
        pins = dated.pins(version) if dated else pins_for(libs, version, companions)
        return Stack(name=f"{libs[0]}-{version}", pins=tuple(pins))

    def measure(version: str, n: int, stack: Stack | None = None, label: str | None = None) -> list[float]:
        stack = stack or stack_of(version)
        label = label or version
        if stacks.info(stack) is None:
            t0 = time.perf_counter()
            try:
                stacks.build(stack, allow_torch=allow_torch)
            except XeonftError as err:
                console.print(f"[red]{version}: the stack does not build[/] ({str(err).splitlines()[0]})")
                return []
            timings["builds"][label] = {"seconds": time.perf_counter() - t0, **_size(stack)}
        made = stacks.info(stack) or {}
        timings["stacks"][label] = {"pins": list(stack.resolved().pins), "resolved": made.get("resolved", {}),
                                    "day": dated.day(version) if dated else None}
        values = []
        for _ in range(n):
            repeat = counts.get(label, 0)
            counts[label] = repeat + 1
            # bisecting the loss needs it from every run, not only a version's first
            cell = spec.model_copy(update={"repeat": repeat, "launch": spec.launch.model_copy(update={"stack": stack}),
                                           **({"evaluate": "every"} if metric == "loss" else {})})
            axes: dict[str, object] = {"stack": stack.name, libs[0]: version}
            if label != version:  # a moved package put back: not a release of its own (history leaves it out)
                axes["put_back"] = label
            rec = runner.run(cell, f"{stack.name} run {repeat + 1}", "bisect", axes=axes)
            timings["cell_seconds"] = timings.get("cell_seconds", 0.0) + (rec.wall_seconds or 0.0)
            if rec.started and rec.started < began:  # recorded by an earlier try of this bisect, reused here
                timings["reused"] = timings.get("reused", 0) + 1
            summary = rec.result.summary if rec.result else None
            if rec.status != "ok" or summary is None:
                first = next(iter((rec.reason or "").splitlines()), "")
                timings.setdefault("failures", {})[label] = f"{rec.status}: {first[:160]}"
                continue
            if (work := rec.step_work()) is not None:
                timings["work"].setdefault(label, []).append(work)
            if rec.result and rec.result.common_eval:  # xeonft's own eval loss: one definition in every stack
                own = rec.result.common_eval
                timings.setdefault("own_eval", {}).setdefault(label, []).append(
                    {"loss": own.loss, "base_loss": own.base_loss, "tokens": own.tokens_digest})
            if metric == "loss":
                if rec.result and rec.result.eval_loss:
                    values.append(1.0 / rec.result.eval_loss)  # higher is better, as for throughput
            elif summary.tokens_per_second:
                values.append(summary.tokens_per_second)
        return values

    with termination_as_interrupt(), ResultSetLock(out), MachineLock(wait=True):
        prepare_models([spec], stacks=True)  # before any stack's transformers converts the model its own way
        store.open({"name": out.name, "bisect": {"libs": libs, "good": good, "bad": bad}}, fp, environment_key(fp),
                   [], resume=True)
        runner = Runner(store, environment_key(fp), ReferenceTokens(out))
        try:
            result = bisect(versions, measure, threshold=threshold, alpha=alpha, runs=runs, max_runs=max_runs)
            if dated and put_back and result.culprit and result.last_good:
                timings["put_back"] = _put_back(result, dated, stack_of, measure, runs, threshold, alpha, max_runs)
        except ValueError as err:  # the good or the bad release did not run: nothing to compare against
            raise XeonftError(f"bisect {libs[0]}: {err}; see the cells in {out}") from None
        finally:
            store.add_cells(runner.keys)
    timings["wall_seconds"] = time.time() - timings.pop("started")
    return result, timings


def _put_back(result: BisectResult, dated: DatedPins, stack_of: Callable[[str], Stack],
              measure: Callable[..., list[float]], runs: int, threshold: float, alpha: float,
              max_runs: int) -> dict[str, dict[str, Any]]:
    """Each pinned package that moved between the last good and the culprit's stacks, put back to its last-good
    version in the culprit's stack: its runs, and their verdicts against both ends of the step. The package
    whose return moves the speed back (significantly, against the culprit's runs) is a cause; its verdict against
    the last good says whether all the way."""
    assert result.culprit and result.last_good
    good_stack, bad_stack = stack_of(result.last_good), stack_of(result.culprit)
    good_pins = dict(p.split("==", 1) for p in good_stack.pins)
    bad_pins = dict(p.split("==", 1) for p in bad_stack.pins)
    out: dict[str, dict[str, Any]] = {}
    for name in [dated.primary, *dated.others]:
        if good_pins.get(name) == bad_pins.get(name) or name not in good_pins:
            continue
        pins = {**bad_pins, name: good_pins[name]}
        label = f"{result.culprit}, {name} {good_pins[name]}"
        stack = Stack(name=f"{dated.primary}-{result.culprit}-back-{name}-{good_pins[name]}",
                      pins=tuple(f"{k}=={v}" for k, v in pins.items()))
        values = measure(result.culprit, runs, stack=stack, label=label)
        entry: dict[str, Any] = {"package": name, "from": bad_pins[name], "to": good_pins[name], "runs": values}
        if len(values) >= 2:
            good_runs, bad_runs = result.runs[result.last_good], result.runs[result.culprit]
            entry["vs_good"] = decide(good_runs, values, threshold=threshold, alpha=alpha)
            entry["vs_culprit"] = decide(bad_runs, values, threshold=threshold, alpha=alpha)
            while entry["vs_culprit"].verdict == "inconclusive" and len(values) < max_runs:
                values += measure(result.culprit, 1, stack=stack, label=label)
                entry["vs_good"] = decide(good_runs, values, threshold=threshold, alpha=alpha)
                entry["vs_culprit"] = decide(bad_runs, values, threshold=threshold, alpha=alpha)
            back = "faster" if result.direction == "slower" else "slower"
            entry["restores"] = entry["vs_culprit"].verdict == back
        else:
            entry["restores"] = None  # it did not build or run: the note says so
        out[label] = entry
    return out


def _size(stack: Stack) -> dict[str, Any]:
    made = stacks.info(stack) or {}
    return {"bytes": made.get("bytes"), "changed": made.get("changed")}
