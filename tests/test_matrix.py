import pytest

from harness.base.errors import XeonftError
from harness.cli import main
from harness.config.identity import match_key, store_key, twin_key
from harness.config.matrix import parse_matrix


def doc(**changes):
    d = {"name": "m", "fixed": {"model": "synthetic:tiny"}, "axes": {"precision": ["fp32", "bf16"],
                                                                    "batch_size": [1, 2]}}
    d.update(changes)
    return d


def test_axes_expand_to_their_product_minus_exclusions_with_repeats_interleaved():
    m = parse_matrix(doc(exclude=[{"precision": "bf16", "batch_size": [2]}], repeats=2,
                         measure={"warmup_steps": 2, "steps": 3}))
    combos = [(c.config.precision, c.config.batch_size, c.repeat) for c in m.cells]
    assert combos == [("fp32", 1, 0), ("fp32", 2, 0), ("bf16", 1, 0), ("fp32", 1, 1), ("fp32", 2, 1), ("bf16", 1, 1)]
    cell = m.cells[0]
    assert cell.config.max_steps == 5 and cell.config.eval_steps == 5 and not cell.config.save_checkpoints
    assert cell.config.prompts == () and cell.config.lora_init == "olora"  # the recipe underneath
    assert len({store_key(c, "env") for c in m.cells}) == 6
    assert store_key(cell, "env") != store_key(cell, "other-env") and match_key(m.cells[0]) == match_key(m.cells[3])


def test_launcher_settings_are_axes_too():
    m = parse_matrix(doc(axes={"pinning": ["none", "cores"], "allocator": ["default", "jemalloc"]}))
    assert {(c.launch.pinning, c.launch.allocator) for c in m.cells} == {
        ("none", "default"), ("none", "jemalloc"), ("cores", "default"), ("cores", "jemalloc")}


@pytest.mark.parametrize("changes, message", [
    ({"axes": {"precison": ["fp32"]}}, "unknown key 'precison'"),
    ({"axes": {"precision": ["fp32", "fp8"]}}, r"precision=fp8.*precision"),
    ({"axes": {"pinning": ["sockets"]}}, "pinning"),
    ({"axes": {"batch_size": []}}, "'batch_size' has no values"),
    ({"exclude": [{"threads": 1}]}, "exclude\\[0\\]: 'threads' is not an axis"),
    ({"fixed": {"max_steps": 3}}, "'max_steps' is set by the sweep"),
    ({"repeat": 2}, "unknown key 'repeat'"),
    ({"name": "../escape"}, "name"),
    ({"exclude": [{"precision": ["fp32", "bf16"]}]}, "every cell is excluded"),
    ({"axes": {"inject_fault": ["slow:ten%"]}}, r"inject_fault 'slow:ten%': expected one of none, crash, hang, oom, "
                                                r"slow or slow:N%"),
    ({"axes": {"inject_fault": ["slow:0%"]}}, "the slowdown must be above 0%"),
    ({"axes": {"replica": ["a", "../b"]}}, "replica"),
    ({"order": "random"}, "expected 'shuffled', 'fixed' or"),
    ({"order": {"shuffle": True, "seed": -1}}, "seed"),
])
def test_a_bad_matrix_is_refused_naming_the_problem(changes, message):
    with pytest.raises(XeonftError, match=message):
        parse_matrix(doc(**changes))


def test_a_bad_matrix_exits_2_and_runs_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\naxes:\n  precision: [fp32, fp16]\n")
    out = tmp_path / "results"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "precision" in err and "'fp16'" in err and "Traceback" not in err
    assert not out.exists()


def test_shipped_matrices_are_valid():
    from pathlib import Path

    from harness.config.matrix import load_matrix

    shipped = sorted(Path(__file__).parent.parent.joinpath("bench", "matrices").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"smoke", "default", "seed-1b"}
    for path in shipped:
        assert load_matrix(path).cells


def test_an_environment_that_does_not_exist_is_refused_before_anything_runs(tmp_path, capsys):
    matrix = tmp_path / "envs.yaml"
    matrix.write_text("name: envs\nfixed: {model: synthetic:tiny}\naxes:\n  env: [default, no-such-env]\n")
    out = tmp_path / "results"
    assert main(["run", str(matrix), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "environment 'no-such-env' does not exist" in err and "xeonft env create no-such-env" in err
    assert not out.exists()


def test_env_create_needs_a_requirement_file(capsys):
    assert main(["env", "create", "no-such-env"]) == 2
    err = capsys.readouterr().err
    assert "no requirement file envs/no-such-env.txt" in err and "seed-2025" in err


def test_a_preset_axis_layers_a_recipe_over_fixed_and_under_the_other_axes(tmp_path):
    (tmp_path / "mine.yaml").write_text("batch_size: 7\nprecision: bf16\nmax_steps: 99\neval_steps: 1\n")
    m = parse_matrix(doc(fixed={"model": "synthetic:tiny", "batch_size": 3},
                         axes={"preset": ["none", "mine.yaml"], "precision": ["fp32"]}), base_dir=tmp_path)
    plain, mine = m.cells
    assert (plain.preset, plain.config.batch_size, plain.config.precision) == ("none", 3, "fp32")
    assert (mine.preset, mine.config.batch_size, mine.config.precision) == ("mine.yaml", 7, "fp32")
    # the sweep still owns steps and evaluation
    assert mine.config.max_steps == plain.config.max_steps and mine.config.eval_steps == plain.config.eval_steps
    assert match_key(plain) != match_key(mine)


def test_fields_added_later_leave_the_keys_of_earlier_result_sets_alone():
    import hashlib
    import json

    cell = parse_matrix(doc()).cells[0]
    # the layout before `preset`, `instrument`, `memory_limit`, `stack`, `replica`, `duet`, `lm_head` and `quant` joined
    # (each left out at its default), and `evaluate` and `own_eval_tokens` (in no key)
    old_dump = cell.model_dump(mode="json", exclude={"timeout_s": True, "preset": True, "evaluate": True,
                                                     "own_eval_tokens": True,
                                                     "launch": {"instrument": True, "memory_limit": True,
                                                                "stack": True, "replica": True, "duet": True},
                                                     "config": {"lm_head": True, "quant": True}})
    old_key = hashlib.sha256(json.dumps({"spec": old_dump, "env": "e"}, sort_keys=True).encode()).hexdigest()[:16]
    assert store_key(cell, "e") == old_key
    given = cell.model_copy(update={"own_eval_tokens": "/results/x/own-eval-tokens/k.json"})  # set by the launcher
    assert store_key(given, "e") == old_key and match_key(given) == match_key(cell)
    bare = parse_matrix(doc(fixed={"model": "synthetic:tiny", "instrument": "bare"})).cells[0]
    assert store_key(bare, "e") != store_key(cell, "e") and twin_key(bare) == twin_key(cell)
    fused = parse_matrix(doc(fixed={"model": "synthetic:tiny", "lm_head": "fused"})).cells[0]
    assert store_key(fused, "e") != store_key(cell, "e") and fused.config.digest() != cell.config.digest()


def test_an_unknown_preset_is_refused():
    with pytest.raises(XeonftError, match="preset: 'turbo' is neither a YAML file nor a shipped recipe"):
        parse_matrix(doc(axes={"preset": ["turbo"]}))


def test_a_replica_axis_is_an_aa_pair_and_slow_takes_a_size():
    m = parse_matrix(doc(axes={"replica": ["a", "b"], "inject_fault": ["none", "slow:10%"]},
                         exclude=[{"replica": "b", "inject_fault": "slow:10%"}]))
    a, slowed, b = (next(c for c in m.cells if (c.launch.replica, c.launch.inject_fault) == pair)
                    for pair in (("a", "none"), ("a", "slow:10%"), ("b", "none")))
    plain = parse_matrix(doc(axes={})).cells[0]
    # replica a is the cell as it was before the axis existed; b is another configuration that runs the same work
    assert store_key(a, "e") == store_key(plain, "e") and match_key(a) == match_key(plain)
    assert match_key(b) != match_key(a) and b.config == a.config
    # a slowed cell keeps its normal twin's match key (a slowdown test compares the two) but not its store key
    assert match_key(slowed) == match_key(a) and store_key(slowed, "e") != store_key(a, "e")
    assert len(m.cells) == 3


def test_the_order_of_each_round_is_shuffled_from_a_seed_or_kept_as_listed():
    from harness.launch.order import in_rounds, sweep_seed

    m = parse_matrix(doc(axes={"batch_size": [1, 2, 3, 4, 5, 6]}, repeats=3))
    assert m.order.shuffle and m.order.seed is None
    listed = [c.config.batch_size for c in m.cells[:6]]

    def sizes(seed, order=m.order):
        return [[c.config.batch_size for c in in_rounds(m.cells, order, seed)[r * 6:(r + 1) * 6]] for r in range(3)]

    first = sizes(11)
    assert first == sizes(11)  # the same seed, the same order: a resume keeps it
    assert all(sorted(r) == listed for r in first)  # every cell of a round runs in that round, once
    assert len({tuple(r) for r in first}) > 1 and first != sizes(12)  # rounds differ, seeds differ
    assert sizes(11, parse_matrix(doc(axes={"batch_size": [1, 2, 3, 4, 5, 6]}, order="fixed")).order)[0] == listed
    assert sweep_seed(m.order, 5) == 5  # recorded by the sweep it resumes
    assert sweep_seed(parse_matrix(doc(order={"seed": 9})).order, None) == 9
    assert 0 <= sweep_seed(m.order, None) < 2**31
