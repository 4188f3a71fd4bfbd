"""What runs on a target machine: the whole matrix, one cell at a time, exactly as `xeonft run` runs it
(`run_sweep`, with its machine lock), into `<out root>/<matrix name>@<host>`; then the set is bundled
(`<out root>/bundles/<matrix name>@<host>.xeonft.tar.gz`) and joins the shared catalog when one was given. A
top-level function of an installed module, so submitit pickles it by reference and the target imports it from the
same xeonft checkout."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

from harness.base.errors import XeonftError
from harness.config.matrix import Matrix, load_matrix
from harness.fleet.task import FleetTask, TargetOutcome, file_digest
from harness.history import catalog
from harness.launch.sweep import run_sweep
from harness.results import bundle


def host_name() -> str:
    """The machine's name as a result set's folder carries it (`tiny@node1`)."""
    return socket.gethostname()


def result_set_folder(out_root: Path, matrix_name: str, host: str) -> Path:
    return out_root / f"{matrix_name}@{host}"


def bundle_path(out_root: Path, matrix_name: str, host: str) -> Path:
    return out_root / "bundles" / f"{matrix_name}@{host}{bundle.SUFFIX}"


def the_matrix(task: FleetTask, host: str) -> Matrix:
    """The matrix the task was submitted with, or a refusal: a matrix removed or changed after submission would
    run other cells on this machine than on the others."""
    path = task.matrix
    if not path.is_file():
        raise XeonftError(f"matrix {path} is not on {host}: it was removed after submission, or this machine does "
                          "not see the shared filesystem")
    if file_digest(path) != task.matrix_sha256:
        raise XeonftError(f"matrix {path} changed after it was submitted (its SHA-256 differs): refused, so that "
                          "every machine runs the same cells; submit again")
    matrix = load_matrix(path, trust_remote_code=task.trust_remote_code)
    return matrix.with_memory_limit(task.memory_limit) if task.memory_limit else matrix


def add_to_catalog(result_set: Path, where: str) -> str | None:
    """Add the set to a catalog (a file, or a postgresql:// URL); one that cannot take it is a warning (returned),
    never the job's failure: the cells are safe in the set, and the submitter says so."""
    try:
        catalog.add(result_set, where)
    except XeonftError as err:
        return f"the cells are recorded in {result_set}, but {err}"
    return None


def write_bundle(result_set: Path, out: Path) -> tuple[Path | None, str | None]:
    """The set as one bundle file (`xeonft import` takes it where the filesystem is not shared); one that cannot
    be written is a warning, not the job's failure: the set itself is recorded."""
    try:
        return bundle.write(result_set, out).path, None
    except (XeonftError, OSError) as err:
        return None, f"the cells are recorded in {result_set}, but its bundle {out} could not be written: {err}"


def run_target(task: FleetTask) -> TargetOutcome:
    """Run the whole matrix on this machine, bundle its set, add it to the shared catalog if one was given, and
    return what came of it."""
    host = host_name()
    matrix = the_matrix(task, host)
    store = run_sweep(matrix, out=result_set_folder(task.out_root, matrix.name, host), resume=task.resume,
                      retry_failed=task.retry_failed, wait=task.wait, create_envs=task.create_envs,
                      allow_torch_stacks=task.allow_torch_stacks)
    statuses: Counter[str] = Counter(r.status for r in store.records(warn=False))
    bundled, bundle_warning = write_bundle(store.root, bundle_path(task.out_root, matrix.name, host))
    warning = add_to_catalog(store.root, task.catalog) if task.catalog else None
    return TargetOutcome(host=host, result_set=store.root, statuses=dict(statuses), bundle=bundled,
                         catalog_warning=warning, bundle_warning=bundle_warning)
