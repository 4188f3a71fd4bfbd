"""Running single cells outside a matrix (sizing's probes, a bisect's versions) into one result set, exactly as
a sweep runs its cells: each in its own process, its record stored before the next one starts."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harness.base.errors import Failure
from harness.config.identity import PROBE_RETRY, should_run
from harness.config.spec import CellSpec
from harness.launch.console import console, one_line
from harness.launch.reference import ReferenceTokens
from harness.launch.supervisor import supervise
from harness.launch.sweep import cell_key
from harness.results.records import CellRecord
from harness.results.store import ResultStore


class Runner:
    """Runs cells into one result set; a cell recorded there before is reused unless the resume rule takes it again
    (`PROBE_RETRY`: all but ok and oom, an oom being a probe's answer). With `reference`, the cells that evaluate
    get the set's reference eval token ids (`harness.launch.reference`)."""

    def __init__(self, store: ResultStore, env_key: str, reference: ReferenceTokens | None = None) -> None:
        self.store, self.env_key, self.reference = store, env_key, reference
        self.keys: list[str] = []

    def run(self, spec: CellSpec, label: str, role: str, axes: dict[str, object] | None = None) -> CellRecord:
        key = cell_key(spec, self.env_key)
        self.keys.append(key)
        earlier = self.store.get(key)
        if earlier is not None and not should_run(earlier.status, retry=PROBE_RETRY):
            console.print(f"  {label}: recorded before ({earlier.status}), reused")
            return earlier
        if self.reference is not None:  # a bisect's stacks: one set of eval token ids for all of them
            spec = self.reference.attach(spec)
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task(f"  {label}", total=spec.timing_warmup_steps + spec.measured_steps)
            record = supervise(spec, key, self.store,
                               on_step=lambda step, total: progress.update(task, completed=step, total=total))
        record.axes = axes or {"role": role, "batch_size": spec.config.batch_size, "threads": spec.config.threads,
                               "ranks": spec.launch.ranks}
        try:
            self.store.put(key, record)
        except OSError as err:
            raise Failure(f"could not record {label} in {self.store.root}: {err.strerror or err}; the cells "
                          "recorded before it are intact") from None
        console.print(one_line(label, record))
        return record
