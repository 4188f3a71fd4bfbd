"""Regression tracking (issue 14): stacks from pins, the catalog and its change points, bisect, the CI check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.base.errors import XeonftError
from harness.config.stack import Stack
from harness.history.bisect import bisect
from harness.history.changepoints import detect_steps
from harness.history.releases import between, companion, parse_index


def _fake_library(slow_from: int, noise: float = 0.05, seed: int = 0):
    """Runs of a cell under fake releases 1.0 .. 1.n: 20% slower from release `slow_from` on."""
    rng = np.random.default_rng(seed)
    calls: list[str] = []

    def measure(version: str, n: int) -> list[float]:
        calls.append(version)
        slow = int(version.split(".")[1]) >= slow_from
        return list(100 * (0.8 if slow else 1.0) * np.exp(rng.normal(0, noise, n)))

    return measure, calls


@pytest.mark.parametrize("slow_from", [1, 5, 11, 15])
def test_bisect_finds_the_release_that_slowed_the_cell_in_log2_rounds(slow_from):
    versions = [f"1.{i}" for i in range(16)]
    measure, calls = _fake_library(slow_from)
    result = bisect(versions, measure)
    assert result.direction == "slower" and result.certain
    assert result.culprit == f"1.{slow_from}" and result.last_good == f"1.{slow_from - 1}"
    assert result.rounds <= 4  # log2(16): each round halves the releases left
    assert result.verdicts[result.culprit].verdict == "slower"
    assert len(set(calls)) == 2 + result.rounds  # good, bad, and one release a round


def test_bisect_with_no_change_says_so_and_skips_releases_that_do_not_run():
    versions = [f"1.{i}" for i in range(8)]
    measure, _ = _fake_library(slow_from=99, noise=0.01)
    result = bisect(versions, measure, max_runs=4)
    assert result.direction is None and result.culprit is None and result.rounds == 0
    assert "nothing to bisect" in result.notes[0]

    slow, _ = _fake_library(slow_from=5)
    broken = {"1.3"}
    result = bisect(versions, lambda v, n: [] if v in broken else slow(v, n))
    assert result.culprit == "1.5" and result.skipped == ["1.3"]


def test_release_lists_come_from_the_index_in_order():
    text = "peft (0.21.2)\nAvailable versions: 0.21.2, 0.21.1, 0.20.0, 0.19.1, 0.10.0, 0.9.0\n"
    versions = parse_index(text)
    assert versions == ["0.9.0", "0.10.0", "0.19.1", "0.20.0", "0.21.1", "0.21.2"]  # by version, not by text
    assert between(versions, "0.10.0", "0.21.1") == ["0.10.0", "0.19.1", "0.20.0", "0.21.1"]
    assert between(versions, "0.21.1", "0.19.1") == ["0.21.1", "0.20.0", "0.19.1"]  # an improvement, bisected
    assert companion("2.8.1", ["2.7.0", "2.8.0", "2.9.0"]) == "2.8.0"
    from harness.base.errors import XeonftError

    with pytest.raises(XeonftError, match=r"0\.15\.0 not released"):
        between(versions, "0.15.0", "0.21.1")


def test_change_points_are_found_where_runs_differ_and_nowhere_else():
    rng = np.random.default_rng(3)
    step = [list(100 * (0.75 if i >= 3 else 1) * np.exp(rng.normal(0, 0.05, 3))) for i in range(6)]
    found = detect_steps(step)
    assert [(s.index, s.verdict) for s in found] == [(3, "slower")]
    assert 0.70 < found[0].ratio < 0.80
    flat = [list(100 * np.exp(rng.normal(0, 0.15, 3))) for _ in range(8)]
    assert detect_steps(flat) == []


def test_stack_keys_are_stable_and_follow_the_pins(tmp_path):
    from harness.launch.stacks import stack_key

    a = Stack(name="a", pins=["tqdm==4.66.4", "rich==13.7.1"])
    same = Stack(name="b", pins=["rich==13.7.1", "tqdm==4.66.4", " "])  # another name, the same set
    assert stack_key(a) == stack_key(same) and a.pins == ("rich==13.7.1", "tqdm==4.66.4")
    assert stack_key(a) != stack_key(Stack(name="a", pins=["tqdm==4.66.5", "rich==13.7.1"]))
    req = tmp_path / "pins.txt"
    req.write_text("# a requirements file\ntqdm==4.66.4  # pinned\n\nrich==13.7.1\n")
    assert stack_key(Stack(name="f", requirements=str(req))) == stack_key(a)


def test_a_stack_layered_over_the_environment_sees_its_pin_and_the_shared_torch():
    import importlib.metadata as md

    import torch

    from harness.launch import stacks

    stack = Stack(name="old-tqdm", pins=["tqdm==4.66.4"])
    folder = stacks.build(stack)
    made = stacks.info(stack)
    assert made is not None and made["changed"]["tqdm"] == {"shared": md.version("tqdm"), "stack": "4.66.4"}
    assert set(made["changed"]) == {"tqdm"}  # nothing else was installed: torch and the rest are shared
    assert made["bytes"] < 20 * 2**20
    python = stacks.interpreter(stack)
    probe = ("import json, tqdm, torch, harness; print(json.dumps([tqdm.__version__, torch.__file__, "
             "torch.__version__, harness.__file__]))")
    tqdm_v, torch_file, torch_v, harness_file = json.loads(subprocess.check_output([python, "-c", probe]))
    assert tqdm_v == "4.66.4"
    assert torch_v == torch.__version__ and Path(torch_file) == Path(torch.__file__)
    assert Path(harness_file).resolve() == Path(cli.__file__).resolve().parent / "__init__.py"
    assert not str(Path(torch_file)).startswith(str(folder))
    assert stacks.build(stack) == folder  # built once, reused


def _relabel(store_root: Path, lib: str, version: str) -> None:
    """Say which release of `lib` a result set's runs ran under (the runs themselves are real)."""
    for path in (store_root / "cells").glob("*.json"):
        data = json.loads(path.read_text())
        if data.get("result"):
            data["result"].setdefault("packages", {})[lib] = version
            path.write_text(json.dumps(data))


def test_history_finds_a_step_at_the_release_that_slowed_a_cell_and_none_elsewhere(slowed_sets, tmp_path, capsys):
    """Three result sets of two configurations (tests/conftest.py's slowed_sets); batch 2 is made slower
    (inject_fault: slow:200%, each step about three times as long) in the third set, labelled release 1.2; batch 1
    never changes. Every check here is at alpha 0.01 and a 25% threshold: two unslowed sets of this tiny model have
    drifted 10-25% apart on this shared machine (a 'faster' step from 1.0 to 1.1 at alpha 0.05 and 10% once failed
    CI), while the slowdown made here is about 67%."""
    from harness.history import catalog
    from harness.history.trend import series

    db = tmp_path / "catalog.sqlite"
    sets = []
    for i, real in enumerate(slowed_sets):
        copy = tmp_path / real.name
        shutil.copytree(real, copy)  # relabelled here; compare's test reads the sets as they ran
        _relabel(copy, "peft", f"1.{i}")
        sets.append(copy)
        if i < 2:
            catalog.add(copy, db)
    # the CI check: the newest set against the catalog's last good set of this machine
    code = cli.main(["history", "--catalog", str(db), "--check", str(sets[2]), "--threshold", "25%", "--alpha", "0.01"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "batch_size=2: slower" in out and "batch_size=1: slower" not in out
    catalog.add(sets[2], db)  # the check writes nothing: the set joins the catalog as the example CI job adds it
    found = {s.label: s for s in series(catalog.runs(db), "peft", threshold=0.25, alpha=0.01)}
    slowed = next(s for label, s in found.items() if "batch_size=2" in label)
    steady = next(s for label, s in found.items() if "batch_size=1" in label)
    assert [p.x for p in slowed.points] == ["1.0", "1.1", "1.2"]
    assert [(st.before, st.after, st.verdict) for st in slowed.steps] == [("1.1", "1.2", "slower")]
    assert steady.steps == []
    assert all(p.work["tokens_per_step"] > 0 for p in slowed.points)
    # the page, from the same data at the same rule: the step where one was made, and a cell without one
    report = tmp_path / "history"
    assert cli.main(["history", "--catalog", str(db), "--by", "peft", "--out", str(report),
                     "--threshold", "25%", "--alpha", "0.01"]) == 0
    page = (report / "report.md").read_text()
    assert "peft 1.1 -> 1.2" in page and "no change point" in page
    assert (report / "index.html").is_file()


def test_each_cell_records_its_packages_and_the_xeonft_commit(sweep):
    _, store = sweep
    record = next(r for r in store.records() if r.status == "ok")
    import torch

    assert record.result.packages["torch"] == torch.__version__
    commit = record.result.xeonft_commit
    # what git says of the checkout the cells ran from: its HEAD, or nothing where it is not a git checkout
    import harness

    head = subprocess.run(["git", "-C", str(Path(harness.__file__).resolve().parents[1]), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:
        assert commit is not None and commit.split("+")[0] == head.stdout.strip() and len(head.stdout.strip()) == 40
    else:
        assert commit is None


def test_a_change_in_the_work_of_a_step_is_named_beside_a_verdict():
    from harness.analysis.compare import work_change

    old = [{"tokens_per_step": 2048, "rows_per_step": 4, "documents_per_step": 12, "padding_share": 0.0,
            "attention_span": 512.0}] * 2
    packed_differently = [{**old[0], "rows_per_step": 1, "attention_span": 180.0}]
    changed = work_change(old, packed_differently)
    assert set(changed) == {"rows_per_step", "attention_span"} and changed["attention_span"] == (512.0, 180.0)
    assert work_change(old, [{**old[0], "tokens_per_step": 2050}]) == {}  # within 2%: the same work


def test_a_stack_that_pins_torch_is_refused_with_its_cost_unless_asked_for(tmp_path, capsys):
    """A torch pin pulls a multi-GB build: said before anything is built, and built only on the command line's word."""
    from harness.launch import stacks

    old = Stack(name="oldtorch", pins=["torch==2.8.0"])
    assert old.torch_pins == ("torch==2.8.0",)
    assert Stack(name="x", pins=["torchao==0.9", "torch-geometric"]).torch_pins == ()
    with pytest.raises(XeonftError, match=r"stack 'oldtorch' pins torch==2.8.0: .*6.3 GB .*--allow-torch-stacks"):
        stacks.build(old)
    assert not stacks.stack_dir(old).exists() and not stacks.stack_dir(old).with_name(
        stacks.stack_dir(old).name + ".building").exists()
    (tmp_path / "m.yaml").write_text(json.dumps({"name": "m", "fixed": {"model": "synthetic:tiny"},
                                                  "axes": {"stack": [{"name": "oldtorch", "pins": ["torch==2.8.0"]}]}}))
    assert cli.main(["run", str(tmp_path / "m.yaml"), "--create-envs", "--out", str(tmp_path / "set")]) == 2
    assert "--allow-torch-stacks" in capsys.readouterr().err
    assert cli.main(["bisect", "--lib", "torch", "--good", "2.8.0", "--bad", "2.13.0",
                     "--out", str(tmp_path / "b")]) == 2
    assert "pins torch==2.8.0" in capsys.readouterr().err


def _dated(root: Path, when: str) -> Path:
    """Say when a synthetic result set ran (its cells record no start, so the catalog dates them by the manifest)."""
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "created": when}))
    return root


def _two_sets(tmp_path: Path, status: str = "ok", axes: dict | None = None) -> tuple[Path, Path, Path]:
    """A catalog holding one earlier synthetic set, and a newer set that is not in it."""
    from harness.history import catalog
    from tests.test_compare import synthetic_set

    rng = np.random.default_rng(7)
    old = _dated(synthetic_set(tmp_path / "old", rng, axes=axes), "2026-01-01T00:00:00+0000")
    new = _dated(synthetic_set(tmp_path / "new", rng, status=status, axes=axes), "2026-02-01T00:00:00+0000")
    db = tmp_path / "catalog.sqlite"
    catalog.add(old, db)
    return old, new, db


def test_the_check_counts_a_newly_failing_cell_as_a_regression_as_compare_does(tmp_path, capsys):
    from harness.analysis.compare import compare
    from harness.history.check import check

    old, new, db = _two_sets(tmp_path, status="failed")
    assert compare(old, new).regressed  # what compare says of the same two sets
    verdicts = check(new, db)
    assert [v.verdict for v in verdicts] == ["failed", "failed"] and all(v.regressed for v in verdicts)
    assert all("failed here" in v.reason and v.against == str(old.resolve()) for v in verdicts)
    assert cli.main(["history", "--catalog", str(db), "--check", str(new)]) == 1
    assert capsys.readouterr().out.count(": failed (measured in") == 2


def test_the_check_labels_configurations_by_what_tells_them_apart(tmp_path, capsys):
    from harness.history.check import check

    _, new, db = _two_sets(tmp_path, axes={"lora_init": ["olora", "gaussian"]})  # same model, precision, batch
    labels = [v.cell for v in check(new, db)]
    assert len(set(labels)) == 2 and "lora_init=olora" in labels[0] and "lora_init=gaussian" in labels[1]
    assert all(v.verdict != "new" for v in check(new, db))  # each found its own last good


def test_the_check_writes_nothing_to_the_catalog(tmp_path):
    from harness.history import catalog
    from harness.history.check import check

    _, new, db = _two_sets(tmp_path)
    before = db.read_bytes()
    assert {v.verdict for v in check(new, db)} <= {"unchanged", "inconclusive", "faster", "slower"}
    assert db.read_bytes() == before
    assert str(new.resolve()) not in {r.result_set for r in catalog.runs(db)}
    assert check(new, tmp_path / "none.sqlite")[0].verdict == "new" and not (tmp_path / "none.sqlite").exists()


def test_a_catalog_file_written_before_still_reads_and_takes_new_sets(tmp_path):
    """The `runs` table as main at 75d2e10 created and filled it (positional inserts): read as typed runs, and a
    result set added beside its rows."""
    import sqlite3

    from harness.history import catalog
    from tests.test_compare import synthetic_set

    db = tmp_path / "catalog.sqlite"
    old = sqlite3.connect(db)
    old.execute("""create table if not exists runs (
  result_set text not null, key text not null, identity text not null, config text not null,
  machine text, cpu text, stack text, versions text, xeonft_commit text, date text, repeat integer,
  status text, tokens_per_second real, eval_loss real, fault text, work text,
  primary key (result_set, key))""")
    old.execute("insert into runs values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ("/r/old", "k1", "ident", json.dumps({"model": "m", "batch_size": 2}), "mach", "cpu", "default",
                 json.dumps({"peft": "0.21.2"}), None, "2026-01-01T00:00:00+0000", 0, "ok", 120.5, 1.5, "none",
                 json.dumps(None)))
    old.commit()
    old.close()
    (run,) = catalog.runs(db)
    assert (run.identity, run.config["batch_size"], run.versions, run.work, run.measured) == \
        ("ident", 2, {"peft": "0.21.2"}, None, True)
    new = synthetic_set(tmp_path / "new", np.random.default_rng(1), repeats=2)
    assert catalog.add(new, db) == 4
    rows = catalog.runs(db)
    assert len(rows) == 5 and rows[0] == run
    assert {r.config["batch_size"] for r in rows if r.result_set == str(new.resolve())} == {1, 2}


def test_co_moving_packages_are_pinned_to_what_was_out_on_the_release_day():
    from harness.history.release_dates import as_of, co_pins, parse_releases

    doc = {"releases": {
        "4.52.4": [{"upload_time_iso_8601": "2025-05-30T10:00:00Z"}],
        "4.53.0": [{"upload_time_iso_8601": "2025-06-26T09:00:00Z"}, {"upload_time_iso_8601": "2025-06-26T08:00:00Z"}],
        "4.54.0rc1": [{"upload_time_iso_8601": "2025-06-01T00:00:00Z"}],  # a pre-release: never a pin
        "4.53.1": [{"upload_time_iso_8601": "2025-07-04T00:00:00Z", "yanked": True}],  # yanked: never a pin
        "4.9.9": []}}  # no files
    tf = parse_releases(doc)
    assert tf == {"4.52.4": "2025-05-30T10:00:00Z", "4.53.0": "2025-06-26T08:00:00Z"}
    assert as_of(tf, "2025-06-20T00:00:00Z") == "4.52.4"
    assert as_of(tf, "2025-06-26T08:00:00Z") == "4.53.0"  # out that moment: a user got it
    assert as_of(tf, "2025-12-01T00:00:00Z", ceiling="4.52.4") == "4.52.4"  # never newer than today's stack
    assert as_of(tf, "2025-01-01T00:00:00Z") is None
    lookup = {"trl": {"0.18.2": "2025-06-15T13:00:00Z", "0.20.0": "2025-07-29T00:00:00Z"}, "transformers": tf}
    assert co_pins("trl", "0.18.2", ["transformers"], {}, lookup) == {"transformers": "4.52.4"}
    assert co_pins("trl", "0.20.0", ["transformers"], {}, lookup) == {"transformers": "4.53.0"}
    with pytest.raises(XeonftError, match="had no release by 2025-06-15"):
        co_pins("trl", "0.18.2", ["transformers"], {}, {**lookup, "transformers": {"9.0": "2026-01-01T00:00:00Z"}})


def test_a_bisect_step_names_the_packages_that_moved_and_whether_the_work_changed():
    from harness.history.bisect import BisectResult
    from harness.history.bisect_report import culprit_lines

    result = BisectResult(versions=["0.18.2", "0.19.0", "0.20.0"], direction="slower", culprit="0.19.0",
                          last_good="0.18.2", certain=True, rounds=1,
                          runs={"0.18.2": [100.0, 102.0, 101.0], "0.19.0": [60.0, 58.0, 59.0]})
    work = {"tokens_per_step": 2048, "rows_per_step": 4, "documents_per_step": 12, "padding_share": 0.0,
            "attention_span": 90.0}
    timings = {"stacks": {"0.18.2": {"resolved": {"trl": "0.18.2", "accelerate": "1.7.0"}},
                          "0.19.0": {"resolved": {"trl": "0.19.0", "accelerate": "1.8.0"}}},
               "work": {"0.18.2": [work], "0.19.0": [{**work, "rows_per_step": 1}]}}
    lines = culprit_lines(result, ["trl"], timings)
    assert "accelerate 1.7.0 -> 1.8.0, trl 0.18.2 -> 0.19.0" in lines[0]
    assert "the work of a step changed (rows per step 4 -> 1)" in lines[1] and "x1.71" in lines[1]
    timings["work"]["0.19.0"] = [work]
    assert "the work of a step is the same" in culprit_lines(result, ["trl"], timings)[1]


def test_the_seed_stack_as_pins_is_the_seed_environment_without_its_torch():
    seed = Stack(name="seed", requirements="envs/seed-2025.txt").resolved().pins
    pins = Stack(name="seed-2025-pins", requirements="envs/seed-2025-pins.txt")
    libraries = {"transformers", "trl", "peft", "datasets", "accelerate"}
    assert set(pins.resolved().pins) == {p for p in seed if p.split("==")[0] in libraries}
    assert pins.torch_pins == ()  # shares xeonft's torch: seconds to build, not a 7 GB environment


def test_the_release_this_environment_holds_is_todays_stack_and_older_ones_are_capped_by_it():
    import importlib.metadata as md

    from harness.history.bisect_run import DatedPins

    held = md.version("transformers")
    lookup = {"trl": {"0.18.2": "2025-06-15T13:00:00Z", md.version("trl"): "2099-01-01T00:00:00Z"},
              "transformers": {"4.52.4": "2025-05-30T10:00:00Z", held: "2026-01-01T00:00:00Z",
                               "99.0.0": "2026-02-01T00:00:00Z"}}
    dated = DatedPins("trl", ["transformers"], lookup=lookup)
    assert dated.pins("0.18.2") == ["trl==0.18.2", "transformers==4.52.4"] and dated.day("0.18.2") == "2025-06-15"
    # the installed trl: this environment as it is, not what was out on its (here: future) day
    assert dated.pins(md.version("trl")) == [f"trl=={md.version('trl')}", f"transformers=={held}"]
    lookup["trl"]["0.30.0"] = "2026-03-01T00:00:00Z"  # after a transformers newer than this environment's
    assert dated.pins("0.30.0") == ["trl==0.30.0", f"transformers=={held}"]


def test_a_middle_release_beyond_the_threshold_but_too_noisy_to_confirm_marks_the_culprit_uncertain():
    # three releases: 1.1 is a step of its own (x0.85) whose runs scatter too much to confirm; 1.2 is far slower
    runs = {"1.0": [100.0, 101.0, 99.0], "1.1": [80.0, 92.0, 78.0, 90.0], "1.2": [50.0, 51.0, 49.0]}
    taken: dict[str, int] = {}

    def measure(version: str, n: int) -> list[float]:
        start = taken.get(version, 0)
        taken[version] = start + n
        values = runs[version]
        return [values[(start + i) % len(values)] for i in range(n)]

    result = bisect(["1.0", "1.1", "1.2"], measure, max_runs=4)
    assert result.culprit == "1.2" and not result.certain
    assert any(n.startswith("1.1: x0.") and "more runs" in n for n in result.notes)


def _catalog_run(trl: str, transformers: str, tps: float, repeat: int, stack: str | None = None) -> object:
    from harness.history.catalog import CatalogRun

    return CatalogRun(set_id="s", result_set="r", key=f"{trl}-{transformers}-{repeat}", identity="cell",
                      config={"model": "default", "precision": "bf16-autocast"}, machine="m", facts=None, cpu="cpu",
                      stack=stack or f"trl-{trl}", versions={"trl": trl, "transformers": transformers},
                      xeonft_commit=None, date=f"2026-12-03T10:0{repeat}", repeat=repeat, status="ok",
                      tokens_per_second=tps,
                      eval_loss=None, mfu=None, gemm_tflops=None, fault=None, work=None)


def test_history_by_a_library_keeps_a_put_back_stack_out_of_its_release_and_names_it():
    from harness.history.trend import series

    rows = [_catalog_run("0.18.2", "4.52.4", 320.0 + i, i) for i in range(3)]
    rows += [_catalog_run("0.19.0", "4.52.4", 250.0 + i, i) for i in range(3)]
    back = "trl-0.19.0-back-transformers-4.53.1"  # a moved package put back, as many runs as the release has
    rows += [_catalog_run("0.19.0", "4.53.1", 400.0 + i, i, stack=back) for i in range(3)]
    rows += [_catalog_run("0.18.2", "4.52.4", 500.0 + i, i, stack="patched") for i in range(2)]  # same versions
    (s,) = series(rows, "trl")
    assert [p.x for p in s.points] == ["0.18.2", "0.19.0"]
    assert s.points[1].n == 3 and max(s.points[1].runs) < 300  # the put-back runs did not join the release
    assert s.points[1].stacks == ["trl-0.19.0"]
    assert s.points[1].aside == ("3 run(s) with transformers 4.53.1",)
    assert s.points[0].aside == ("2 run(s) on stack patched",) and s.points[0].n == 3
    (by_date,) = series(rows, "date")  # by date every run counts: there is no library to hold fixed
    assert sum(p.n for p in by_date.points) == 11


def _saved_bisect():
    from harness.base.stats import decide
    from harness.history.bisect import BisectResult
    from harness.history.bisect_report import SavedBisect

    good, bad = [320.0, 322.0, 315.0], [178.0, 164.0, 183.0]
    culprit = [250.0, 248.0, 255.0]
    result = BisectResult(versions=["0.18.2", "0.19.0", "<b>1.0</b>"], direction="slower", culprit="0.19.0",
                          last_good="0.18.2", certain=False, rounds=1,
                          runs={"0.18.2": good, "0.19.0": culprit, "<b>1.0</b>": bad},
                          notes=["0.19.0: a note with <script>x</script>"])
    result.verdicts = {"0.19.0": decide(good, culprit), "<b>1.0</b>": decide(good, bad), "0.18.2": decide(good, bad)}
    work = {"tokens_per_step": 2048.0, "rows_per_step": 4.0, "documents_per_step": 4.0, "padding_share": 0.0,
            "attention_span": 512.0}
    timings = {
        "builds": {"0.19.0": {"seconds": 12.0, "bytes": 2**20}},
        "stacks": {"0.18.2": {"resolved": {"trl": "0.18.2", "transformers": "4.52.4"}, "day": "2025-06-15"},
                   "0.19.0": {"resolved": {"trl": "0.19.0", "transformers": "4.52.4"}, "day": "2025-06-20"},
                   "<b>1.0</b>": {"resolved": {"trl": "1.0", "transformers": "5.23.0"}, "day": None}},
        "work": {"0.18.2": [work], "0.19.0": [{**work, "rows_per_step": 1.0, "attention_span": 2041.0}]},
        "put_back": {"0.19.0, trl 0.18.2": {"package": "trl", "from": "0.19.0", "to": "0.18.2",
                                            "runs": [318.0, 321.0], "vs_good": decide(good, [318.0, 321.0]),
                                            "vs_culprit": decide(culprit, [318.0, 321.0]), "restores": True}},
        "wall_seconds": 600.0, "cell_seconds": 540.0, "reused": 2}
    return SavedBisect(libs=["trl"], metric="throughput", threshold=0.05, alpha=0.01, result=result,
                       timings=timings, cpu="Intel(R) Xeon(R) Processor")


def test_a_bisect_outcome_is_saved_and_read_back_whole(tmp_path):
    from harness.history import bisect_report

    saved = _saved_bisect()
    bisect_report.save(tmp_path, saved)
    back = bisect_report.load(tmp_path)
    assert back.result == saved.result  # verdicts come back as Verdicts, equal field by field
    assert back.timings["put_back"]["0.19.0, trl 0.18.2"]["vs_culprit"] == \
        saved.timings["put_back"]["0.19.0, trl 0.18.2"]["vs_culprit"]
    assert back.lines() == saved.lines()
    (tmp_path / bisect_report.SAVED).write_text('{"layout": 1, "libs": ["trl"]', encoding="utf-8")
    with pytest.raises(XeonftError, match="damaged bisect outcome") as err:
        bisect_report.load(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(XeonftError, match="no saved bisect outcome"):
        bisect_report.load(tmp_path / "elsewhere")


def test_the_bisect_page_shows_each_release_its_verdict_the_work_and_the_put_backs_escaped(tmp_path):
    from harness.render.bisect import render_bisect, version_table

    saved = _saved_bisect()
    table = version_table(saved)
    assert list(table["trl"]) == ["0.18.2", "0.19.0", "<b>1.0</b>"]
    assert list(table["culprit"]) == ["last good", "culprit", ""]
    assert table.loc[1, "verdict"] == "slower" and table.loc[1, "rows"] == 1.0 and table.loc[1, "span"] == 2041.0
    assert np.isnan(table.loc[0, "ratio"])  # the good release is the base, not compared with itself
    assert table.loc[2, "ratio"] == pytest.approx(saved.result.verdicts["<b>1.0</b>"].ratio)
    assert list(table["transformers"]) == ["4.52.4", "4.52.4", "5.23.0"]  # only the packages that vary
    page = render_bisect(saved, tmp_path).read_text(encoding="utf-8")
    assert "Culprit: trl 0.19.0" in page and "uncertain" in page and "2025-06-20" in page
    assert "&lt;b&gt;1.0&lt;/b&gt;" in page and "<b>1.0</b>" not in page and "<script>x" not in page
    assert "put back" in page and "trl 0.19.0 -&gt; 0.18.2" in page and "reusing 2 run(s)" in page
    assert "data:image/png;base64," in page
