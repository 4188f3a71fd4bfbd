"""Submitting a fleet's jobs through submitit and waiting for them: one job per target, the same callable
(`job.run_target`) and the same code path for Slurm and for this machine (submitit's local executor), so the tests
exercise what a cluster runs.

A Slurm job takes its whole node: one task, `--exclusive`, `--mem=0` (all of the node's memory), and Python run in
the batch step itself rather than through `srun` (a step would get one CPU by default; the batch step has every CPU
of the allocation). Its time limit is `--timeout` minutes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

from harness.base.errors import XeonftError
from harness.base.messages import one_line
from harness.fleet.job import run_target
from harness.fleet.task import Executor, FleetTask, JobReport, Target, TargetOutcome

POLL_SECONDS = 1.0  # how often the submitter looks at its jobs (a stat per job: no load on the machine)
RESULT_GRACE_S = 15.0  # how long an ended job's result file may take to appear (submitit waits as long)
SCHEDULER_SECONDS = 15.0  # how often Slurm (sacct, squeue) is asked about a job: each ask is a process or two
SLURM_COMMANDS = ("sbatch", "srun")  # submitit submits with sbatch and refuses a machine without srun


def names(text: str | None) -> list[str]:
    """A comma-separated flag's values, in order, each once."""
    return list(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))


def node_names(nodelist: str | None) -> list[str]:
    """Slurm's host list syntax (`node[1-3,7],gpu2`) as single nodes, by submitit's own parser."""
    from submitit.slurm.slurm import SlurmParseException, _parse_node_list

    try:
        return list(dict.fromkeys(n for n in _parse_node_list(nodelist or "") if n))
    except SlurmParseException:
        raise XeonftError(f"--nodelist {nodelist!r} is not a Slurm host list (e.g. node1,node2 or node[1-3])") from None


def targets(executor: Executor, partition: str | None, nodelist: str | None) -> list[Target]:
    """The machines to run the matrix on: this one for local; for Slurm one per node of `nodelist` (through the
    partitions given, if any), else one per partition, else one on the cluster's default partition."""
    if executor == "local":
        if partition or nodelist:
            raise XeonftError("--partition and --nodelist choose Slurm machines: they need --executor slurm")
        return [Target("local")]
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        raise XeonftError(f"--executor slurm needs Slurm's {' and '.join(missing)} on PATH, and this machine has "
                          "none: run it on a Slurm login node, or use --executor local")
    nodes, partitions = node_names(nodelist), names(partition)
    if nodes:
        return [Target("slurm", partition=",".join(partitions) or None, node=n) for n in nodes]
    return [Target("slurm", partition=p) for p in partitions] or [Target("slurm")]


def parameters(target: Target, timeout_min: int, name: str) -> dict[str, Any]:
    """The executor's parameters for one target (AutoExecutor's names: generic ones, `slurm_` for Slurm's own)."""
    common: dict[str, Any] = {"name": name, "timeout_min": timeout_min, "nodes": 1, "tasks_per_node": 1}
    if target.executor == "local":
        return common
    slurm: dict[str, Any] = {"slurm_exclusive": True, "slurm_mem": "0", "slurm_use_srun": False}
    if target.partition:
        slurm["slurm_partition"] = target.partition
    if target.node:
        slurm["slurm_nodelist"] = target.node
    return {**common, **slurm}


class QuietSacct(SlurmInfoWatcher):
    """submitit's sacct watcher, sacct's own stderr dropped: on a cluster without accounting, sacct would print
    "Slurm accounting storage is disabled" on every poll (submitit then reads no state, and `Submitted.finished`
    asks squeue)."""

    def _make_command(self) -> list[str] | None:
        command = super()._make_command()
        return None if command is None else ["sh", "-c", '"$@" 2>/dev/null', "sh", *command]


def quiet_submitit() -> None:
    """The submitter prints its own lines: submitit's warnings (a sacct it bypassed, twice over: its logger writes
    to stdout and stderr) are left out unless SUBMITIT_LOG_LEVEL asks for them."""
    if "SUBMITIT_LOG_LEVEL" not in os.environ:
        logging.getLogger("submitit").setLevel(logging.ERROR)
    if not isinstance(submitit.SlurmJob.watcher, QuietSacct):
        submitit.SlurmJob.watcher = QuietSacct(delay_s=600)  # submitit's own delay


def executor_for(kind: Executor, folder: Path) -> submitit.AutoExecutor:
    """submitit's executor for `kind`; its folder (logs, pickles) holds one subfolder per job id."""
    return submitit.AutoExecutor(folder=folder / "%j", cluster=kind)


# Slurm's states of a job that has ended (squeue's long names); any other is pending, running or on its way
ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                   "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"})


@dataclass
class Submitted:
    target: Target
    job: submitit.Job[TargetOutcome]
    queue_state: str | None = None  # the state squeue last gave, where sacct gives none
    asked: float = 0.0  # when Slurm was last asked

    def finished(self) -> bool:
        """Whether the job has ended. A local job is its process. A Slurm job has ended when its result file is
        there (a stat, each poll) or, every SCHEDULER_SECONDS only, when Slurm says so: the asks are processes, and
        where the submitter shares a node with a job they would load it. submitit asks sacct; on a cluster without
        accounting (sacct answers nothing, the state stays UNKNOWN) a job that died without a result would look
        pending for ever, so squeue is asked too: a job it lists in an ended state, or no longer knows, has ended."""
        if not isinstance(self.job, submitit.SlurmJob):
            return self.job.done()
        if self.job.paths.result_pickle.exists():
            return True
        if time.monotonic() - self.asked < SCHEDULER_SECONDS:
            return False
        self.asked = time.monotonic()
        if self.job.done():
            return True
        if self.job.state.upper() != "UNKNOWN":
            return False
        try:
            queue = subprocess.run(["squeue", "-h", "-j", self.job.job_id, "--states=all", "-o", "%T"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if queue.returncode != 0:  # ended long enough ago to be forgotten, or the controller does not answer
            return "invalid job id" in queue.stderr.lower()
        listed = queue.stdout.split()
        if listed:
            self.queue_state = listed[0]
        return not listed or listed[0] in ENDED

    @property
    def state(self) -> str:
        state = self.job.state
        return self.queue_state if state.upper() == "UNKNOWN" and self.queue_state else state


def submit(task: FleetTask, where: Sequence[Target], folder: Path, timeout_min: int, name: str) -> list[Submitted]:
    """One job per target, each handed the same task."""
    quiet_submitit()
    out: list[Submitted] = []
    for target in where:
        executor = executor_for(target.executor, folder)  # one each: a target's parameters never leak to the next
        executor.update_parameters(**parameters(target, timeout_min, name))
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # sbatch's refusal: said once, in the error below
                job = executor.submit(run_target, task)
        except Exception as err:  # sbatch refused (an unknown partition or node, a limit): the user's request
            for s in out:
                s.job.cancel(check=False)
            raise XeonftError(f"submitting the job for {target.label} failed: {_first_line(str(err))}"
                              + (f"; cancelled the {len(out)} job(s) submitted before it" if out else "")) from None
        out.append(Submitted(target, job))
    return out


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    picked = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "no message")
    return one_line(picked, 200)


def _last_line(trace: str) -> str:
    """A job's exception as its traceback's last line, the exception's module dropped (`XeonftError: ...`)."""
    lines = [ln for ln in trace.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    tail = next((ln for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Failure|Unavailable)\b", ln)),
                lines[-1] if lines else "an exception")
    return one_line(re.sub(r"^(?:\w+\.)+(\w+)", r"\1", tail.strip()), 240)


def _has_result(job: submitit.Job[TargetOutcome], grace_s: float) -> bool:
    """Whether an ended job left its result file (a shared filesystem may show it a little late)."""
    deadline = time.monotonic() + grace_s
    while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return job.paths.result_pickle.exists()


def report_of(s: Submitted) -> JobReport:
    """An ended job as a report: its outcome, or why it has none. submitit's own `exception()` is asked only once
    the result file is there: without one it waits for a state that a cluster without accounting never gives."""
    job, log = s.job, Path(s.job.paths.stderr)
    if not _has_result(job, RESULT_GRACE_S):
        return JobReport(s.target, job.job_id, log, failure=f"ended without a result (state {s.state}: "
                         "cancelled, timed out, killed or its node failed)")
    error = job.exception()
    if error is None:
        try:
            return JobReport(s.target, job.job_id, log, outcome=job.result())
        except Exception as err:  # a result that does not unpickle here
            return JobReport(s.target, job.job_id, log, failure=f"its result could not be read ({err})")
    if isinstance(error, FailedJobError):
        trace = str(error).split("-" * 22, 2)
        failure = f"raised {_last_line(trace[1] if len(trace) > 1 else str(error))}"
    else:
        failure = one_line(str(error), 240)
    return JobReport(s.target, job.job_id, log, failure=failure)


def wait(submitted: Sequence[Submitted], on_done: Callable[[JobReport], None] | None = None,
         poll_s: float = POLL_SECONDS) -> list[JobReport]:
    """Wait for every job; call `on_done` as each ends. Interrupted (Ctrl-C, SIGTERM), it cancels the jobs still
    running and says which."""
    pending, reports = list(submitted), []
    try:
        while pending:
            for s in [s for s in pending if s.finished()]:
                pending.remove(s)
                report = report_of(s)
                reports.append(report)
                if on_done is not None:
                    on_done(report)
            if pending:
                time.sleep(poll_s)
    except KeyboardInterrupt as err:
        for s in pending:
            s.job.cancel(check=False)
        raise KeyboardInterrupt(f"{err or 'Ctrl-C'}; cancelled {len(pending)} job(s): "
                                + ", ".join(f"{s.target.label} (job {s.job.job_id})" for s in pending)) from None
    return reports
