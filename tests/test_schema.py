"""One typed schema: the records on disk load as their models (older layouts migrated), the published JSON Schema
is current, a result set written before the change still reports, compares, resumes and joins the catalog, and the
stages' shared rules (the measured window, the p90, combining ranks) each have one home."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.analysis.compare import compare
from harness.base.errors import XeonftError
from harness.config.matrix import parse_matrix
from harness.history import catalog
from harness.launch import plan as plan_module
from harness.measure.steps import Measurement, Step, Summary, measured_window, p90, summarize_steps
from harness.results import schema
from harness.results.records import CellRecord
from harness.results.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
OLD = Path(__file__).parent / "fixtures" / "old-default"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A copy of the result set written by main at 75d2e10 (the fixture itself is never written to)."""
    return Path(shutil.copytree(OLD, tmp_path / "old-default"))


def test_the_published_schema_is_what_the_models_generate():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "schema.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_names_a_stale_a_missing_and_a_leftover_file(tmp_path, capsys):
    models = schema.RECORDS
    assert schema.main(["--docs", str(tmp_path)], models) == 0
    assert schema.main(["--check", "--docs", str(tmp_path)], models) == 0
    (tmp_path / "schema" / "cell-record.json").write_text("{}\n")
    (tmp_path / "records.md").unlink()
    (tmp_path / "schema" / "gone.json").write_text("{}\n")
    capsys.readouterr()
    assert schema.main(["--check", "--docs", str(tmp_path)], models) == 1
    out = capsys.readouterr().out
    assert all(name in out for name in ("cell-record.json", "records.md", "gone.json"))
    # the published schema holds the spec's own fields, and every record field has its description
    published = json.loads(json.dumps(schema.json_schema(CellRecord)))
    assert "warmup_steps" in published["$defs"]["CellSpec"]["properties"]
    assert all(p.get("description") for p in published["properties"].values())


JOINED_SINCE = {"replica": "a", "duet": False}  # launch keys newer than the fixture, at their defaults


def test_every_cell_of_the_old_set_loads_and_a_write_keeps_every_key(old, tmp_path):
    store = ResultStore(old)
    records = store.records()
    assert len(records) == 5 and not store.damaged
    assert {r.spec.config.precision for r in records} == {"bf16-autocast", "bf16", "fp32"}
    again = ResultStore(tmp_path / "again")
    for r in records:
        again.put(r.key, r)
        written = json.loads(again.cell_path(r.key).read_text())
        # a spec is written whole: the launch keys that joined after the set was made appear at their defaults
        assert {k: written["spec"]["launch"].pop(k) for k in JOINED_SINCE} == JOINED_SINCE
        assert written["spec"]["config"].pop("quant") == "none"  # a config field that joined since, at its default
        assert written == json.loads((old / "cells" / f"{r.key}.json").read_text())
    assert records[0].result is not None and records[0].result.packages and records[0].memory.rss_timeline
    # a field this xeonft does not know survives a read and a write, at every level of the record
    path = next((old / "cells").glob("*.json"))
    data = json.loads(path.read_text())
    data["later"] = data["result"]["later"] = data["result"]["summary"]["later"] = 1
    data["result"]["steps"][0]["later"] = data["memory"]["later"] = 1
    path.write_text(json.dumps(data))
    again.put(path.stem, store.get(path.stem))
    rewritten = json.loads(again.cell_path(path.stem).read_text())
    rewritten["spec"]["config"].pop("quant")
    for k in JOINED_SINCE:
        rewritten["spec"]["launch"].pop(k)
    assert rewritten == data


def test_the_old_set_reports_compares_with_itself_resumes_and_joins_the_catalog(old, tmp_path, monkeypatch, capsys):
    assert cli.main(["report", str(old), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Running under a hypervisor" in md and "brg_matmul:avx512_core_bf16" in md
    assert cli.main(["compare", str(old), str(old)]) == 0  # no regression against itself
    assert not compare(old, old).regressed
    # a resume of its matrix on its machine skips the five cells it holds and runs the others
    manifest = ResultStore(old).manifest()
    monkeypatch.setattr(plan_module, "environment_key", lambda fp: manifest.environment)
    table = plan_module.plan(parse_matrix(manifest.matrix), old, resume=True, retry_failed=False,
                             results_dir=tmp_path)
    keys, actions = (list(c._cells) for c in table.columns if c.header in ("key", "action"))
    assert sorted(k for k, a in zip(keys, actions, strict=True) if a == "skip") == sorted(manifest.cells)
    assert actions.count("run") == len(actions) - 5
    db = tmp_path / "catalog.sqlite"
    assert catalog.add(old, db) == 5
    rows = catalog.runs(db)
    assert {r.status for r in rows} == {"ok"} and all((r.tokens_per_second or 0) > 0 for r in rows)
    assert all(r.versions["trl"] == "1.16.0" for r in rows)


def _first_layout(record: dict) -> dict:
    """A record as xeonft first wrote them (7a487bc): no schema_version, the spec's variables under `env` at its
    top level and a launch section of three fields."""
    spec = dict(record["spec"])
    spec["env"] = spec.pop("variables")
    spec["launch"] = {k: spec["launch"][k] for k in ("pinning", "allocator", "inject_fault")}
    data = {k: v for k, v in record.items() if k != "schema_version"}
    return {**data, "spec": spec}


def test_a_record_of_the_first_layout_is_migrated_as_it_is_read_and_joins_the_catalog(old, tmp_path):
    path = next((old / "cells").glob("*.json"))
    data = json.loads(path.read_text())
    first = _first_layout(data)
    first["spec"]["env"] = [["MALLOC_ARENA_MAX", "2"]]
    path.write_text(json.dumps(first))
    record = ResultStore(old).get(path.stem)
    assert record is not None and record.spec.variables == (("MALLOC_ARENA_MAX", "2"),)
    assert record.spec.launch.env == "default" and record.schema_version == 2
    assert catalog.add(old, tmp_path / "catalog.sqlite") == 5  # the first layout's cell is not left out


def test_a_newer_record_is_refused_with_one_message():
    with pytest.raises(XeonftError, match="newer than this xeonft reads"):
        CellRecord.model_validate({**json.loads(next((OLD / "cells").glob("*.json")).read_text()),
                                   "schema_version": 99})


def _steps(seconds: list[float], tokens: int = 100, hwm: int | None = 10) -> list[Step]:
    return [Step(step=i + 1, seconds=t, compute_seconds=t, data_seconds=0.0, tokens=tokens, sequences=2,
                 loss=float(i), hwm_bytes=hwm, rows=1, slots=tokens, doc_sq=tokens**2 // 2, row_sq=tokens**2)
            for i, t in enumerate(seconds)]


def test_the_summary_declares_every_key_it_writes():
    summary = summarize_steps(_steps([2.0, 1.0, 1.0, 3.0, 9.0]), timing_warmup=1, measured=3)
    assert isinstance(summary, Summary) and not summary.model_extra
    assert summary.model_fields_set == set(Summary.model_fields)
    assert summary.measured_steps == 3 and summary.measured_seconds == 5.0 and summary.tokens_per_second == 60.0
    assert summary.step_seconds_p90 == 3.0 and summary.measured_padding == 0


def test_the_measured_window_and_the_p90_have_one_rule():
    steps = list(range(10))
    assert steps[measured_window(2, 3)] == [2, 3, 4] and steps[measured_window(2, None)] == steps[2:]
    assert steps[measured_window(8, 5)] == [8, 9]
    assert p90([]) == 0.0 and p90([5.0]) == 5.0 and p90([float(v) for v in range(1, 11)]) == 9.0
    result = Measurement(summary=summarize_steps(_steps([9.0, 1.0, 1.0, 8.0]), 1, 2), steps=_steps([9.0, 1.0, 1.0,
                                                                                                     8.0]))
    assert [s.step for s in result.measured_steps()] == [2, 3]  # not the warm-up, not the step after the window


def test_ranks_combine_as_the_total_tokens_over_the_slowest_ranks_time():
    fast, slow = _steps([1.0, 1.0, 1.0]), _steps([1.0, 2.0, 3.0, 4.0], tokens=50, hwm=None)
    slow[1] = slow[1].model_copy(update={"hwm_bytes": 7})
    ranks = [Measurement(steps=fast, evals=[{"step": 3, "seconds": 0.5}], summary=Summary(trl_num_tokens=450)),
             Measurement(steps=slow)]
    combined = Measurement.of_ranks(ranks, timing_warmup=1)
    assert [s.seconds for s in combined.steps] == [1.0, 2.0, 3.0]  # as many as the shortest rank, the slowest time
    assert [s.tokens for s in combined.steps] == [150] * 3
    padded = [s.model_copy(update={"rows": 1, "slots": s.tokens + 10, "doc_sq": 4, "row_sq": 9}) for s in fast]
    (step, *_) = Measurement.of_ranks([Measurement(steps=padded), Measurement(steps=padded)], timing_warmup=1).steps
    assert (step.rows, step.slots, step.doc_sq, step.row_sq) == (2, 2 * (fast[0].tokens + 10), 8, 18)  # all summed
    assert combined.steps[0].loss == 0.0 and [s.hwm_bytes for s in combined.steps] == [None, 17, None]
    assert combined.summary.tokens_per_second == 300 / 5.0  # never the mean of the ranks' own throughputs
    assert combined.summary.trl_num_tokens == 450 and combined.summary.eval_seconds == 0.5


def test_a_record_written_now_has_every_key_of_one_written_before(rows_file, tokenizer_dir, tmp_path):
    """The typed hand-offs leave the layout on disk as it was: a fresh cell's record holds every key that the
    old set's records hold, at every level (no key lost to a model's unset default)."""
    from harness.launch.sweep import run_sweep
    from tests.conftest import tiny_matrix

    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32"]}, exclude=[],
                    measure={"warmup_steps": 1, "steps": 2})
    store = run_sweep(m, out=tmp_path / "now")
    (path,) = store.cells_dir.glob("*.json")
    now, before = json.loads(path.read_text()), json.loads(next((OLD / "cells").glob("*.json")).read_text())
    assert set(before) <= set(now)
    for part in ("spec", "launch", "memory"):
        assert set(before[part]) <= set(now[part]), part
    assert set(before["result"]) <= set(now["result"])
    assert set(before["result"]["summary"]) <= set(now["result"]["summary"])
    # a step has every key it had, and one more since: when it ended (wall clock), which a duet's overlap needs
    assert all(set(step) - set(before["result"]["steps"][0]) == {"ended"} for step in now["result"]["steps"])
    assert now["schema_version"] == 2 and ResultStore(store.root).records()[0].measured
