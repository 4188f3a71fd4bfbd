"""`xeonft machines`: the same configurations on several machines, pooled by kind, with speed and cost verdicts
from run-level tests, rendered as a page. Result sets are built in the store's own format (runs drawn with a known
spread) and given real fingerprints of different kinds; a real sizing file supplies a job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.base.errors import XeonftError
from harness.history import catalog
from harness.history.machines import SourcedRun, compare_machines
from harness.history.machines_model import MachinesFindings
from harness.history.prices import parse_price, prices
from harness.render.machines import render_machines
from harness.results.store import ResultStore
from tests.test_compare import synthetic_set
from tests.test_exit_codes import one_bounded_line

FIXTURE = Path(__file__).parent / "fixtures" / "old-default"
SIZING = Path(__file__).parent / "data" / "sizing-8a30fe4.json"


def _fingerprint(**change) -> dict:
    fp = json.loads((FIXTURE / "manifest.json").read_text())["fingerprint"]
    for part, values in change.items():
        fp[part] = {**fp[part], **values} if isinstance(values, dict) else values
    return fp


EPYC = _fingerprint()
XEON = _fingerprint(hostname="xeon-1", cpu={"brand": "Intel(R) Xeon(R) Platinum 8480+", "family": 6, "model": 143,
                                            "flags": {**EPYC["cpu"]["flags"], "amx_bf16": True, "amx_tile": True}},
                    topology={"physical_cores": 56, "sockets": 1})


def machine_set(root: Path, fp: dict, speed: float, seed: int, repeats: int = 4, cv: float = 0.04) -> Path:
    """A result set of one configuration (batch 1) run `repeats` times on the machine `fp` describes."""
    synthetic_set(root, np.random.default_rng(seed), speed=(speed,), axes={"batch_size": [1]}, repeats=repeats,
                  run_cv=cv)
    store = ResultStore(root)
    manifest = store.manifest()
    store.write_manifest(manifest.model_copy(update={"fingerprint": type(manifest.fingerprint).model_validate(fp)}))
    return root


def sourced(*folders: Path) -> list[SourcedRun]:
    return [SourcedRun(source=str(f), run=r) for f in folders for r in catalog.runs_of_set(f)]


def test_a_faster_dearer_machine_is_the_fastest_and_the_cheap_one_the_cheapest_with_the_cost_by_hand(tmp_path):
    epyc = machine_set(tmp_path / "epyc", EPYC, speed=100.0, seed=1)
    xeon = machine_set(tmp_path / "xeon", XEON, speed=250.0, seed=2)
    names = {str(epyc): "epyc", str(xeon): "xeon"}
    found = compare_machines(sourced(epyc, xeon), names=names, prices={"epyc": 0.10, "xeon": 2.00})
    (config,) = found.configurations
    assert config.fastest == "xeon" and config.cheapest == "epyc"
    (speed,) = config.speed
    assert speed.machine == "epyc" and speed.verdict == "slower" and speed.high < 0.5
    (cost,) = config.cost
    assert cost.machine == "xeon" and cost.verdict == "slower"  # fewer tokens per dollar: dearer per token
    assert cost.ratio == pytest.approx((250 / 2.0) / (100 / 0.10), rel=0.1)
    by = {r.machine: r for r in config.results}
    assert by["epyc"].cost_per_million_tokens == pytest.approx(0.10 / (by["epyc"].tokens_per_second * 3600) * 1e6)
    assert by["epyc"].cost_low < by["epyc"].cost_per_million_tokens < by["epyc"].cost_high
    assert [m.name for m in found.machines] == ["xeon", "epyc"]
    assert "AMX" in found.machines[0].label and "no AMX" in found.machines[1].label
    assert any("Fastest" in line and "xeon" in line for line in found.verdict)
    assert any("Cheapest" in line and "epyc" in line for line in found.verdict)


def test_machines_of_one_kind_pool_unless_named_apart_and_different_kinds_never_pool(tmp_path):
    a = machine_set(tmp_path / "a", EPYC, speed=100.0, seed=3)
    b = machine_set(tmp_path / "b", {**EPYC, "hostname": "other", "memory_bytes": EPYC["memory_bytes"] + 2**27},
                    speed=100.0, seed=4)
    pooled = compare_machines(sourced(a, b))
    assert len(pooled.machines) == 1 and pooled.machines[0].runs == 8
    assert sorted(pooled.machines[0].hosts) == sorted({EPYC["hostname"], "other"})
    apart = compare_machines(sourced(a, b), names={"other": "second", str(a): "first"})
    assert sorted(m.name for m in apart.machines) == ["first", "second"]
    (config,) = apart.configurations
    assert config.speed[0].verdict != "slower"  # the same speed: never called slower
    x = machine_set(tmp_path / "x", XEON, speed=100.0, seed=5)
    with pytest.raises(XeonftError, match="different kinds never pool"):
        compare_machines(sourced(a, x), names={str(a): "same", str(x): "same"})
    with pytest.raises(XeonftError, match="no run's source"):
        compare_machines(sourced(a), names={"nowhere": "n"})


def test_too_few_runs_or_no_prices_are_said_plainly(tmp_path):
    a = machine_set(tmp_path / "a", EPYC, speed=100.0, seed=6, repeats=1)
    x = machine_set(tmp_path / "x", XEON, speed=120.0, seed=7, repeats=1)
    found = compare_machines(sourced(a, x), prices={"xeon-1": 1.0})
    (config,) = found.configurations
    assert config.speed[0].verdict == "inconclusive" and config.cheapest is None
    assert any("cannot be told apart" in line for line in found.verdict)
    assert any("No cost verdict: no price for" in line for line in found.verdict)
    only = compare_machines(sourced(a))
    assert "nothing to compare" in only.verdict[0]
    with pytest.raises(XeonftError, match="no machine is named 'ghost'"):
        compare_machines(sourced(a), prices={"ghost": 1.0})


def test_prices_read_as_a_user_writes_them(tmp_path):
    assert parse_price("xeon-8480=4.20/h") == ("xeon-8480", 4.2)
    assert parse_price("a b=$2.5/hour") == ("a b", 2.5)
    for bad in ("xeon", "x=-1", "x=0", "x=abc/h"):
        with pytest.raises(XeonftError):
            parse_price(bad)
    path = tmp_path / "prices.yaml"
    path.write_text("prices:\n  epyc: 0.12\n  xeon: '3.1/h'\n")
    assert prices(["epyc=0.2"], [path]) == {"epyc": 0.2, "xeon": 3.1}
    path.write_text("- a list\n")
    with pytest.raises(XeonftError, match="expected a mapping"):
        prices([], [path])


def test_the_page_through_the_cli_escapes_what_it_shows_and_its_json_reads_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a = machine_set(tmp_path / "a", EPYC, speed=100.0, seed=8)
    x = machine_set(tmp_path / "x", XEON, speed=260.0, seed=9)
    sizing = tmp_path / "size"
    sizing.mkdir()
    shutil.copy(SIZING, sizing / "sizing.json")
    code = cli.main(["machines", str(a), str(x), "--name", f"{a}=<b>epyc</b>", "--price", "<b>epyc</b>=0.1/h",
                     "--price", "xeon-1=2", "--sizing", str(sizing), "--out", "page"])
    out = capsys.readouterr().out
    assert code == 0 and "Fastest" in out
    html = (tmp_path / "page" / "index.html").read_text()
    assert "<b>epyc</b>" not in html and "&lt;b&gt;epyc&lt;/b&gt;" in html
    assert html.count("data:image/png;base64") == 2  # throughput and cost
    found = MachinesFindings.model_validate_json((tmp_path / "page" / "machines.json").read_text())
    (job,) = found.jobs
    sized = json.loads(SIZING.read_text())["recommendation"]
    assert job.hours == pytest.approx(sized["projected_seconds"] / 3600)
    assert job.machine == "<b>epyc</b>" and job.cost == pytest.approx(job.hours * 0.1)  # the sizing's CPU is EPYC
    assert "## Verdict" in (tmp_path / "page" / "report.md").read_text()


def test_bad_input_is_one_line(tmp_path, capsys):
    a = machine_set(tmp_path / "a", EPYC, speed=100.0, seed=10, repeats=2)
    for argv in (["machines", str(a), "--price", "nope"], ["machines", str(tmp_path / "missing")],
                 ["machines", str(a), "--name", "x"], ["machines", str(a), "--cell", "batch_size=99"]):
        assert cli.main(argv) == 2, argv
        one_bounded_line(capsys.readouterr().err)
    render_machines(compare_machines(sourced(a)), tmp_path / "one")  # one machine still renders
    assert (tmp_path / "one" / "index.html").is_file()


def test_two_machines_in_a_shared_postgresql_catalog_compare_and_the_password_never_shows(postgres_url, tmp_path,
                                                                                         capsys):
    """Each machine adds its own set to one PostgreSQL catalog (as a fleet does); the page reads the catalog."""
    from sqlalchemy.engine import make_url

    a = machine_set(tmp_path / "a", EPYC, speed=100.0, seed=11)
    x = machine_set(tmp_path / "x", XEON, speed=300.0, seed=12)
    for folder in (a, x):
        assert cli.main(["history", "--add", str(folder), "--catalog", postgres_url, "--out",
                         str(tmp_path / "h")]) == 0
    capsys.readouterr()
    assert cli.main(["machines", "--catalog", postgres_url, "--price", "xeon-1=3/h", "--price", "vm=0.1/h",
                     "--out", str(tmp_path / "page")]) == 0
    printed = capsys.readouterr()
    found = MachinesFindings.model_validate_json((tmp_path / "page" / "machines.json").read_text())
    assert [m.name for m in found.machines] == ["xeon-1", "vm"] and found.configurations[0].fastest == "xeon-1"
    assert found.configurations[0].cheapest == "vm"
    password = make_url(postgres_url).password
    assert password and all(password not in text for text in (
        printed.out, printed.err, *(p.read_text() for p in (tmp_path / "page").glob("*.*") if p.suffix != ".png")))


def test_two_real_machines_bundles_render_a_page_pooled_by_default_and_apart_when_named(tmp_path, capsys):
    """This repo's bundle of a real default sweep (2026-12-02) beside a bundle of the real set of another machine
    of the same kind (2026-12-01, tests/fixtures/old-default): one kind, one host name, so one machine unless named."""
    real = Path(__file__).parent / "fixtures" / "epyc-2026-12-02-default.xeonft.tar.gz"
    other = tmp_path / "other.xeonft.tar.gz"
    assert cli.main(["bundle", str(FIXTURE), "--out", str(other)]) == 0
    assert cli.main(["machines", str(real), str(other), "--out", str(tmp_path / "pooled")]) == 0
    pooled = MachinesFindings.model_validate_json((tmp_path / "pooled" / "machines.json").read_text())
    assert len(pooled.machines) == 1 and pooled.machines[0].runs == 18 + 5
    assert cli.main(["machines", str(real), str(other), "--name", f"{real}=today", "--name", f"{other}=before",
                     "--price", "today=0.15/h", "--price", "before=0.15/h", "--out", str(tmp_path / "apart")]) == 0
    apart = MachinesFindings.model_validate_json((tmp_path / "apart" / "machines.json").read_text())
    assert {m.name for m in apart.machines} == {"today", "before"}
    top = next(c for c in apart.configurations if c.identity == apart.headline)
    assert "bf16-autocast" in top.label and "batch_size=4" in top.label
    today = next(r for r in top.results if r.machine == "today")
    assert today.cost_per_million_tokens == pytest.approx(0.15 / (today.tokens_per_second * 3600) * 1e6)
    assert today.mfu and 0 < today.mfu < 1 and today.gemm_tflops
    assert capsys.readouterr().out.count("\n") >= 3
