"""Machine kinds: the facts that decide whether two machines' runs may pool, read from real fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

from harness.measure.kind import machine_facts

SHARED = Path(__file__).parent / "fixtures" / "old-default" / "manifest.json"


def _fingerprint() -> dict:
    return json.loads(SHARED.read_text())["fingerprint"]


def test_a_real_fingerprint_gives_its_facts_and_a_label_people_can_read():
    facts = machine_facts(_fingerprint())
    assert facts.cores and facts.memory_gib and facts.cpu
    assert str(facts.cores) in facts.label and f"{facts.memory_gib} GiB" in facts.label
    assert ("no AMX" in facts.label) == (not facts.amx)


def test_the_hostname_and_a_few_hundred_mib_do_not_change_the_kind_but_cores_flags_or_sockets_do():
    fp = _fingerprint()
    base = machine_facts(fp)
    renamed = machine_facts({**fp, "hostname": "other", "memory_bytes": fp["memory_bytes"] + 200 * 2**20})
    assert renamed.kind == base.kind and renamed.hostname != base.hostname
    more_cores = machine_facts({**fp, "topology": {**fp["topology"], "physical_cores": 64}})
    amx = machine_facts({**fp, "cpu": {**fp["cpu"], "flags": {**fp["cpu"]["flags"], "amx_bf16": True,
                                                              "amx_tile": True}}})
    two_sockets = machine_facts({**fp, "topology": {**fp["topology"], "sockets": 2}})
    assert len({base.kind, more_cores.kind, amx.kind, two_sockets.kind}) == 4
    assert amx.amx and "AMX" in amx.label and "no AMX" not in amx.label


def test_a_fingerprint_with_parts_missing_still_has_facts():
    facts = machine_facts({"cpu": {"brand": "Intel Xeon", "flags": {"avx2": True}}})
    assert facts.cores is None and facts.memory_gib is None and facts.flags == ("avx2",)
    assert facts.label == "Intel Xeon, AVX2, no AMX"
    assert machine_facts(None).label == "unknown CPU, no AMX"
