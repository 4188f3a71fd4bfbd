"""One home for identity and status (issue 21): the keys of result sets written before stay the keys computed now,
and the resume rule is one rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.identity import (
    MEASURED,
    PROBE_RETRY,
    STATUSES,
    Configuration,
    lineage_key,
    match_key,
    retried,
    should_run,
    store_key,
    twin_key,
)
from harness.config.spec import CellSpec
from harness.launch.sweep import cell_key
from harness.results import records

BUNDLE = Path("/work/shared/bundles/epyc-2026-12-01-default")
_bundle = pytest.mark.skipif(not BUNDLE.is_dir(), reason="the result set of another machine is not here")


@_bundle
def test_the_keys_of_a_result_set_written_before_are_the_keys_computed_now():
    """Every cell file of a set written by main at 75d2e10: its recorded key and match key are what the code
    computes from its spec and the manifest's environment (a changed hash would make --resume run it again and
    compare miss it)."""
    environment = json.loads((BUNDLE / "manifest.json").read_text())["environment"]
    cells = sorted((BUNDLE / "cells").glob("*.json"))
    assert len(cells) == 18
    for path in cells:
        data = json.loads(path.read_text())
        spec = CellSpec.model_validate(data["spec"])
        assert store_key(spec, environment) == data["key"] == path.stem
        assert cell_key(spec, environment) == data["key"]  # the sweep's key: the default environment adds no pins
        assert match_key(spec) == data["match_key"]
        # the catalog's identity and the twin are the match key here (no stack, default env, fully instrumented)
        assert lineage_key(spec) == twin_key(spec) == data["match_key"]


def test_the_resume_rule_is_one_rule_for_sweeps_and_probes():
    assert set(MEASURED) <= set(STATUSES) and records.MEASURED is MEASURED and records.STATUSES is STATUSES
    runs = {s for s in STATUSES if should_run(s, resume=True, retry=retried(False))}
    assert runs == {"disturbed"}
    assert {s for s in STATUSES if should_run(s, resume=True, retry=retried(True))} == {"disturbed", "failed",
                                                                                       "oom", "timeout"}
    assert all(should_run(s, resume=False) for s in STATUSES) and should_run(None)
    # a probe (sizing, bisect) is reused when it measured or ran out of memory, taken again otherwise
    assert {s for s in STATUSES if not should_run(s, retry=PROBE_RETRY)} == {"ok", "oom"}


def test_a_configuration_groups_repeats_and_pairs_a_slowed_cell_with_its_twin():
    plain, slowed, crashing = (Configuration("abc", fault) for fault in ("none", "slow", "crash"))
    assert len({plain.grouping, slowed.grouping, crashing.grouping}) == 3  # three configurations in one set
    assert plain.counterpart == slowed.counterpart == "abc" != crashing.counterpart  # across sets

