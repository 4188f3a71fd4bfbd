"""The isolated cell: `python -m harness.cell.worker SPEC.json RESULT.json`.

It knows nothing of matrices: it reads one CellSpec, trains the recipe for the spec's steps (`harness.cell.train`)
and writes what it measured (a `CellResult` as JSON, which the launcher reads back into the model). Progress goes to
stdout as `@@xeonft step N M` lines for the launcher; everything else goes to stderr. Exit 0 on success, 2 on bad
input, 3 when the cell cannot run here (IPEX missing); the last stderr line says why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from harness.cell.protocol import BOUND_VAR, ERROR_PREFIX, PLACEMENTS_VAR, UNAVAILABLE_PREFIX, world


def bind_rank(argv: list[str]) -> None:
    """Put this rank on its own cores (and memory node) before torch loads: numactl by re-exec, where installed
    (the pid torchrun watches stays the same), else sched_setaffinity; OMP_NUM_THREADS = its core count."""
    placements = os.environ.get(PLACEMENTS_VAR)
    if not placements or os.environ.get(BOUND_VAR):
        return
    _, local_rank, _ = world()
    mine = json.loads(placements)[local_rank]
    cpus, node = mine["cpus"], mine.get("mem_node")
    os.environ.update(OMP_NUM_THREADS=str(len(cpus)), MKL_NUM_THREADS=str(len(cpus)), OMP_PROC_BIND="close",
                      OMP_PLACES="cores", **{BOUND_VAR: "1"})
    numactl = shutil.which("numactl")
    if numactl:
        args = [numactl, f"--physcpubind={','.join(map(str, cpus))}"]
        if node is not None:
            args.append(f"--membind={node}")
        os.execv(numactl, [*args, sys.executable, "-m", "harness.cell.worker", *argv])
    os.sched_setaffinity(0, cpus)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from harness.base.errors import Unavailable, XeonftError
    from harness.cell.lifeline import install_in_worker
    from harness.cell.train import train_cell
    from harness.config.spec import CellSpec

    warnings.filterwarnings("ignore", category=FutureWarning)
    from pydantic import ValidationError

    args = list(argv if argv is not None else sys.argv[1:])
    install_in_worker()  # a rank dies with torchrun's agent, a cell with its launcher
    bind_rank(args)
    spec_path, result_path = args[:2]
    rank, _, world_size = world()
    if world_size > 1:  # every rank writes its own result beside the path it was given
        result_path = str(Path(result_path).with_name(f"result.rank{rank}.json"))
    try:
        spec = CellSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    except ValidationError as err:
        print(f"{ERROR_PREFIX} the cell spec does not fit this xeonft's CellSpec (a different version?): "
              f"{err.errors()[0]['loc']}: {err.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        result = train_cell(spec)
    except Unavailable as err:
        print(f"{UNAVAILABLE_PREFIX} {err}", file=sys.stderr)
        return err.exit_code
    except XeonftError as err:
        print(f"{ERROR_PREFIX} {err}", file=sys.stderr)
        return 2
    tmp = Path(result_path).with_suffix(".partial")
    tmp.write_text(result.model_dump_json(exclude_unset=True, fallback=str), encoding="utf-8")
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
