"""A fleet round, as `xeonft run MATRIX --executor ...` runs it: check the request here (the matrix loads, the flags
fit, the targets exist) before anything is submitted; submit one job per target; print one line per machine as
its job ends; record the returned sets in the local catalog when no shared one was given; fail (exit 3) when any
job failed, after every other machine's results are kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from sqlalchemy.engine import URL

from harness.base.errors import Failure, XeonftError
from harness.config.matrix import load_matrix
from harness.fleet import submit
from harness.fleet.job import add_to_catalog
from harness.fleet.task import Executor, FleetTask, JobReport, file_digest
from harness.history import catalog
from harness.history.catalog_db import CatalogLocation
from harness.launch.console import console
from harness.launch.lifeline import termination_as_interrupt

DEFAULT_TIMEOUT_MIN = 180  # a machine's whole matrix; the default sweep takes about 35 minutes on 2 cores
LOGS = "fleet-logs"  # submitit's folder under the out root: <out root>/fleet-logs/<matrix name>/<job id>/
PASSWORD_VARIABLE = "PGPASSWORD"  # libpq reads a password the URL leaves out from here


@dataclass(frozen=True)
class SharedCatalog:
    """A shared catalog as the jobs get it: `where` travels in the task (a file by its absolute path, a database
    URL without its password), the password in the jobs' environment (libpq's PGPASSWORD), so that it is never
    written into the pickled task submitit keeps beside the results."""

    where: str
    password: str | None = None

    @classmethod
    def of(cls, value: str) -> SharedCatalog:
        location = CatalogLocation.parse(value)  # a URL that is no catalog: one line, before anything is submitted
        if location.url is None:
            return cls(str(location.file.resolve()))
        url = location.url  # URL.set(password=None) keeps the password: build the URL anew without it
        bare = URL.create(url.drivername, username=url.username, host=url.host, port=url.port,
                          database=url.database, query=url.query).render_as_string(hide_password=False)
        return cls(bare, location.url.password)


@contextmanager
def password_for_jobs(password: str | None) -> Iterator[None]:
    """PGPASSWORD set while the jobs are submitted (submitit's local executor and sbatch hand the submitter's
    environment to each job), as it was afterwards."""
    if password is None:
        yield
        return
    before = os.environ.get(PASSWORD_VARIABLE)
    os.environ[PASSWORD_VARIABLE] = password
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PASSWORD_VARIABLE, None)
        else:
            os.environ[PASSWORD_VARIABLE] = before


def line(report: JobReport) -> str:
    """The line a machine's job ends with (rich markup; every value from outside escaped)."""
    where = f"{report.target.label}, job {report.job_id}"
    o = report.outcome
    if o is None:
        return (f"[red]failed[/] {escape(where)}: {escape(report.failure or 'no result')}; "
                f"log: {escape(str(report.log))}")
    colour = "green" if o.cells_not_ok == 0 else "yellow"
    others = ", ".join(f"{n} {s}" for s, n in sorted(o.statuses.items()) if s != "ok")
    text = (f"[{colour}]{escape(o.host)}[/]: {o.cells_ok} cell(s) ok, {o.cells_not_ok} not ok"
            + (f" ({escape(others)})" if others else "") + f" -> {escape(str(o.result_set))}"
            + (f", bundle {escape(str(o.bundle))}" if o.bundle else "") + f" ({escape(where)})")
    for warning in (o.bundle_warning, o.catalog_warning):
        if warning:
            text += f"\n[yellow]warning:[/] {escape(warning)}"
    return text


def run_fleet(matrix_path: str, executor: Executor, *, out: str | None = None, partition: str | None = None,
              nodelist: str | None = None, timeout_min: int | None = None, shared_catalog: str | None = None,
              memory_limit: str | None = None, resume: bool = False, retry_failed: bool = False, wait: bool = True,
              create_envs: bool = False, allow_torch_stacks: bool = False,
              trust_remote_code: bool = False) -> list[JobReport]:
    """Run the matrix on every target; return the jobs' reports. Raises Failure (exit 3) when any job failed."""
    timeout = DEFAULT_TIMEOUT_MIN if timeout_min is None else timeout_min
    if timeout <= 0:
        raise XeonftError(f"--timeout is in minutes and must be above 0, not {timeout}")
    where = submit.targets(executor, partition, nodelist)
    path = Path(matrix_path).resolve()
    matrix = load_matrix(path, trust_remote_code=trust_remote_code)  # a bad matrix is refused here, not per job
    if memory_limit:
        matrix = matrix.with_memory_limit(memory_limit)
    if any(c.launch.nnodes > 1 for c in matrix.cells):
        raise XeonftError("a fleet runs the whole matrix on each machine alone: cells with nnodes > 1 span several "
                          "machines, run them with --node-rank on each")
    root = Path(out or "results").resolve()
    shared = SharedCatalog.of(shared_catalog) if shared_catalog else None
    task = FleetTask(matrix=path, matrix_sha256=file_digest(path), out_root=root,
                     catalog=shared.where if shared else None, memory_limit=memory_limit,
                     resume=resume, retry_failed=retry_failed, wait=wait, create_envs=create_envs,
                     allow_torch_stacks=allow_torch_stacks, trust_remote_code=trust_remote_code)
    logs = root / LOGS / matrix.name
    with termination_as_interrupt():
        with password_for_jobs(shared.password if shared else None):
            jobs = submit.submit(task, where, logs, timeout, name=f"xeonft-{matrix.name}")
        console.print(f"[bold]xeonft run[/] {escape(matrix.name)}: {len(matrix.cells)} cells on each of "
                      f"{len(jobs)} machine(s) through {executor}: "
                      + ", ".join(escape(f"{s.target.label} (job {s.job.job_id})") for s in jobs)
                      + f"; logs in {escape(str(logs))}", soft_wrap=True)
        reports = submit.wait(jobs, on_done=lambda r: console.print(line(r), soft_wrap=True))
    if task.catalog is None:
        _record_locally(reports, catalog.default_path(root))
    failed = [r for r in reports if not r.ok]
    if failed:
        kept = len(reports) - len(failed)
        raise Failure(f"{len(failed)} of {len(reports)} job(s) failed ("
                      + ", ".join(r.target.label for r in failed) + f"); the {kept} other machine(s)' results are "
                      "kept" + (f" in {root}" if kept else "") + ": each failed job's line above names its log")
    return reports


def _record_locally(reports: list[JobReport], local: Path) -> None:
    """No shared catalog: the submitter adds every returned set to the catalog beside the sets."""
    for r in reports:
        if r.outcome is not None:
            warning = add_to_catalog(r.outcome.result_set, str(local))
            if warning:
                console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)

