"""Data parallelism with torchrun: two ranks of one core each on this machine, over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from harness.base.errors import XeonftError
from harness.launch.sweep import run_sweep
from harness.render.report import render
from harness.results.merge import merge
from tests.conftest import disk_records, tiny_matrix

MEASURE = {"warmup_steps": 1, "steps": 4}


@pytest.fixture(scope="module")
def ddp(rows_file, tokenizer_dir, tmp_path_factory):
    m = tiny_matrix(rows_file, tokenizer_dir, axes={"ranks": [1, 2], "inject_fault": ["none", "crash"]},
                    exclude=[{"ranks": 1, "inject_fault": "crash"}], measure=MEASURE)
    m = m.model_copy(update={"cells": [c.model_copy(update={"config": c.config.model_copy(update={"threads": None})})
                                       for c in m.cells]})
    return run_sweep(m, out=tmp_path_factory.mktemp("ddp") / "ddp")


def cell(store, ranks, fault="none"):
    (r,) = [r for r in disk_records(store) if r["axes"] == {"ranks": ranks, "inject_fault": fault}]
    return r


def test_lora_weights_are_identical_on_both_ranks(ddp):
    res = cell(ddp, 2)["result"]
    assert res["world_size"] == 2 and [r["rank"] for r in res["ranks"]] == [0, 1]
    checksums = {r["lora_checksum"] for r in res["ranks"]}
    assert len(checksums) == 1
    assert res["summary"]["allreduce_seconds"] > 0


def test_global_tokens_per_second_is_both_ranks_tokens_over_the_step_time(ddp):
    res = cell(ddp, 2)["result"]
    ranks = res["ranks"]
    warm = res["summary"]["warmup_steps"]
    tokens = seconds = 0.0
    for i in range(warm, len(ranks[0]["steps"])):
        tokens += sum(r["steps"][i]["tokens"] for r in ranks)
        seconds += max(r["steps"][i]["seconds"] for r in ranks)
    assert res["summary"]["tokens_per_second"] == pytest.approx(tokens / seconds)
    assert all(r["summary"]["measured_tokens"] > 0 for r in ranks)
    # trl gathers its own count across the ranks: the same global total
    assert res["summary"]["tokens_all_steps"] == res["summary"]["trl_num_tokens"]


def test_each_rank_has_its_own_core_and_threads(ddp):
    record = cell(ddp, 2)
    ranks = record["result"]["ranks"]
    affinities = [set(r["binding"]["affinity"]) for r in ranks]
    assert all(len(a) == 1 for a in affinities) and not affinities[0] & affinities[1]
    assert [r["torch_threads"] for r in ranks] == [1, 1]
    assert [p["cpus"] for p in record["launch"]["rank_placements"]] == [sorted(a) for a in affinities]
    assert all(r["peak_rss_bytes"] > 0 for r in ranks)
    assert record["result"]["rank_peak_rss_sum_bytes"] == sum(r["peak_rss_bytes"] for r in ranks)
    assert "torch.distributed.run" in record["launch"]["command"]


def test_a_rank_that_dies_fails_the_cell_with_a_reason_and_the_sweep_goes_on(ddp):
    dead = cell(ddp, 2, "crash")
    assert dead["status"] == "failed"
    assert dead["reason"].startswith("rank 1 died (killed by SIGSEGV)")
    assert cell(ddp, 1)["status"] == "ok" and cell(ddp, 2)["status"] == "ok"


def test_the_report_shows_scaling(ddp, tmp_path):
    out = render(ddp.root, out=tmp_path / "report", baseline="ranks=1").folder
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "scaling" in (out / "index.html").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_over_loopback_merge_into_one_result(rows_file, tokenizer_dir, tmp_path):
    """Two launchers, as two machines would run them, rendezvous over loopback; their results merge."""
    doc = {"name": "two-nodes", "measure": MEASURE, "timeout_s": 120, "peak": False,
           "fixed": {"model": "synthetic:tiny", "tokenizer": str(tokenizer_dir), "dataset": str(rows_file),
                     "eval_size": 4, "seq_len": 64, "nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{free_port()}"},
           "axes": {"precision": ["fp32"]}}
    matrix = tmp_path / "two.yaml"
    matrix.write_text(json.dumps(doc))  # JSON is YAML
    # each "machine" has its own benchmark lock, as two real machines would
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "run", str(matrix), "--node-rank", str(k),
                               "--out", str(tmp_path / f"node{k}")], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "XEONFT_MACHINE_LOCK": str(tmp_path / f"machine{k}.lock")})
             for k in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    merged = merge([tmp_path / "node0", tmp_path / "node1"], tmp_path / "merged")
    (record,) = disk_records(merged)
    assert record["status"] in ("ok", "disturbed")  # the other "node" shares this machine's cores
    res = record["result"]
    assert res["world_size"] == 2 and res["nodes"] == 2 and [r["rank"] for r in res["ranks"]] == [0, 1]
    assert len({r["lora_checksum"] for r in res["ranks"]}) == 1
    assert res["summary"]["tokens_all_steps"] == res["summary"]["trl_num_tokens"]


def test_distributed_settings_are_validated(rows_file, tokenizer_dir):
    with pytest.raises(XeonftError, match="needs rdzv_endpoint"):
        tiny_matrix(rows_file, tokenizer_dir, axes={"nnodes": [2]}, exclude=[])
    with pytest.raises(XeonftError, match="nnodes > 1"):
        tiny_matrix(rows_file, tokenizer_dir, axes={"ranks": [2]}, exclude=[]).for_node(1)
