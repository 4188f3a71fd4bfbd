"""Write docs/schema/*.json and docs/records.md from the record models; `--check` exits 1 when they are stale.

    python scripts/schema.py            regenerate after changing a record model
    python scripts/schema.py --check    what CI runs

`PUBLISHED` is the registry of every model whose records reach the disk, by the name of its schema file: a layer
that adds a record adds its model here (this script sits above every layer, so it may import any of them).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel

from harness.history.machines_model import MachinesFindings
from harness.results.schema import RECORDS, main
from harness.sizing.findings_model import Findings

PUBLISHED: dict[str, type[BaseModel]] = {**RECORDS, "sizing-findings": Findings,
                                         "machines-findings": MachinesFindings}

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], PUBLISHED))
