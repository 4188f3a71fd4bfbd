"""bf16 cells on a CPU without bf16 GEMM kernels: recorded `unavailable` at once, saying why, unless asked for.

Whether this CPU has the kernels is the fingerprint's `torch_build.bf16_kernels`; here it is made to say no, so the
refusal is checked on every CPU (on an AVX2 one it is the truth)."""

from __future__ import annotations

import pytest

from harness.config.matrix import parse_matrix
from harness.launch import emulation
from harness.launch import sweep as sweep_module
from harness.launch.sweep import run_sweep
from harness.render.report import render
from tests.conftest import tiny_matrix


@pytest.fixture
def no_bf16_kernels(monkeypatch):
    real = sweep_module.fingerprint

    def fingerprint():
        fp = real()
        # as an AVX2 CPU's: no bf16 kernels, so no AMX either
        return {**fp, "cpu": {**fp["cpu"], "amx": False}, "torch_build": {**fp["torch_build"], "bf16_kernels": False}}

    monkeypatch.setattr(sweep_module, "fingerprint", fingerprint)
    monkeypatch.delenv(emulation.EMULATED_VAR)


def test_bf16_cells_where_bf16_is_emulated_are_unavailable_and_fp32_runs(no_bf16_kernels, rows_file,
                                                                         tokenizer_dir, tmp_path, capsys):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["fp32", "bf16", "bf16-autocast"], "batch_size": [4]},
                    exclude=[])
    store = run_sweep(m, out=tmp_path / "e")
    by = {r.spec.config.precision: r for r in store.records()}
    assert by["fp32"].status == "ok"
    for precision in ("bf16", "bf16-autocast"):
        r = by[precision]
        assert r.status == "unavailable" and r.result is None and r.peak is None
        assert f"precision {precision}: this CPU has no bf16 GEMM kernels" in r.reason
        assert "emulated_bf16: true" in r.reason
    out = capsys.readouterr().err  # the launcher's console writes to stderr
    assert "torch emulates every bf16 GEMM on it" in out  # the sweep's note, from the same fingerprint
    rep = render(store.root, out=tmp_path / "rep")
    assert any("no bf16 GEMM kernels" in n for n in rep.notes)
    # the default baseline (the recipe's bf16-autocast batch 4) ran nowhere here: said, not a blank headline
    assert "has no measured run here (unavailable: precision bf16-autocast" in rep.baseline
    assert "pass --baseline" in rep.baseline and rep.headline is None


def test_the_matrix_asks_for_emulated_bf16_and_it_runs(no_bf16_kernels, rows_file, tokenizer_dir, tmp_path):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"precision": ["bf16"]}, exclude=[], emulated_bf16=True)
    (r,) = run_sweep(m, out=tmp_path / "e").records()
    assert r.status == "ok" and r.result.summary.tokens_per_second > 0
    assert m.document["emulated_bf16"] is True  # the manifest keeps what the matrix asked


def test_the_matrix_key_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(emulation.EMULATED_VAR, "1")
    assert emulation.allowed(None) and not emulation.allowed(False)
    monkeypatch.delenv(emulation.EMULATED_VAR)
    assert not emulation.allowed(None) and emulation.allowed(True)
    with pytest.raises(Exception, match="emulated_bf16"):
        parse_matrix({"name": "x", "fixed": {"model": "synthetic:tiny"}, "emulated_bf16": "sometimes"})


def test_finetune_of_emulated_bf16_is_one_message_before_anything_runs(monkeypatch, rows_file, tokenizer_dir,
                                                                        tmp_path, capsys):
    from harness import cli
    from harness.measure import fingerprint

    monkeypatch.setattr(fingerprint, "torch_build", lambda: {"bf16_kernels": False})
    monkeypatch.delenv(emulation.EMULATED_VAR)
    args = ["finetune", "--config", "quick", "--model", "synthetic:tiny", "--tokenizer", str(tokenizer_dir),
            "--dataset", str(rows_file), "--out", str(tmp_path / "ft")]
    assert cli.main([*args, "--precision", "bf16-autocast"]) == 2
    err = capsys.readouterr().err
    assert "finetune: precision bf16-autocast: this CPU has no bf16 GEMM kernels" in err
    assert "--precision fp32" in err and "Traceback" not in err
    assert not (tmp_path / "ft").exists()
    emulation.refuse_job("fp32", "finetune")  # fp32 is never refused
    monkeypatch.setenv(emulation.EMULATED_VAR, "1")
    emulation.refuse_job("bf16", "finetune")  # asked for
