"""xeonft's own eval loss: its definition by hand on a tiny Llama, that training lowers it, that sweep cells record
it where they evaluate, and the report's verdict on it."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch


@pytest.fixture
def tiny(rows_file, tokenizer_dir):
    from harness.cell.models import resolve_model
    from harness.config import load_config

    cfg = load_config(model="synthetic:tiny", tokenizer=str(tokenizer_dir), dataset=str(rows_file), seq_len=64,
                      precision="fp32", lora_r=8)
    loaded = resolve_model(cfg.model, torch.float32, cfg.tokenizer)
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()]
    return cfg, loaded, rows


def test_the_own_loss_is_every_token_after_the_first_of_each_row_alone_and_training_lowers_it(tiny):
    from peft import get_peft_model

    from harness.cell.common_eval import CommonEvaluator, eval_rows
    from harness.cell.recipe import lora_config

    cfg, loaded, rows = tiny
    plain = copy.deepcopy(loaded.model).eval()
    ids = eval_rows(loaded.tokenizer, rows, cfg)
    with torch.no_grad():  # by hand: the model's own mean loss per row, weighted by the tokens it predicts
        by_hand = sum(float(plain(input_ids=torch.tensor([x]), labels=torch.tensor([x])).loss) * (len(x) - 1)
                      for x in ids) / sum(len(x) - 1 for x in ids)
    model = get_peft_model(loaded.model, lora_config(cfg))
    ev = CommonEvaluator(model, loaded.tokenizer, rows, cfg)
    assert ev.tokens == sum(len(x) - 1 for x in ids) and all(len(x) <= cfg.seq_len for x in ids)
    assert ev.base_loss == pytest.approx(by_hand, rel=1e-4)  # the initial adapters leave the base as it was
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(8):
        for x in ids:
            opt.zero_grad()
            model(input_ids=torch.tensor([x]), labels=torch.tensor([x])).loss.backward()
            opt.step()
    after = ev.after(model)
    assert after.loss < after.base_loss - 0.1 and after.base_loss == ev.base_loss
    assert after.rows == len(ids) and after.seconds > 0 and model.training  # left as it was found


def test_cells_that_evaluate_record_the_own_loss_and_the_others_do_not(sweep):
    _, store = sweep
    ok = [r for r in store.records() if r.status == "ok" and r.result]
    evaluated = [r for r in ok if r.result.eval_rows and r.repeat == 0]
    assert evaluated and all(r.result.common_eval is not None for r in evaluated)
    for r in evaluated:
        own = r.result.common_eval
        assert own.rows == r.result.eval_rows and own.tokens > own.rows and 0 < own.loss < 20
        assert own.tokens_digest == evaluated[0].result.common_eval.tokens_digest  # one tokenizer, the same tokens
    assert all(r.result.common_eval is None for r in ok if r.repeat > 0)


def test_the_report_says_which_configuration_trains_better_by_the_own_loss():
    from harness.analysis.own_eval import own_eval_table

    df = pd.DataFrame({"identity": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"],
                       "variant": ["old"] * 3 + ["new"] * 3 + ["same"] * 3 + ["one run"],
                       "own_eval_loss": [1.80, 1.801, 1.799, 1.70, 1.701, 1.699, 1.80, 1.8005, 1.7995, 1.75],
                       "own_base_loss": [2.0] * 10, "seed": [0, 1, 2] * 3 + [0]})
    df["own_tokens"] = "same"
    t = own_eval_table(df, "a").set_index("configuration")
    assert t.loc["old", "against the baseline"] == "(the baseline)"
    assert t.loc["new", "against the baseline"].startswith("lower loss (trains better)")
    assert t.loc["same", "against the baseline"].startswith("the same (within 1%)")
    assert t.loc["one run", "against the baseline"].startswith("cannot tell")
    assert t.loc["new", "improvement"] == pytest.approx(0.30)
    assert t.loc["new", "improvement %"] == pytest.approx(15.0)
    assert own_eval_table(df.assign(own_eval_loss=None), "a").empty
    other = df.assign(own_tokens=["same"] * 3 + ["other"] * 7)  # another tokenizer: other tokens, not comparable
    assert own_eval_table(other, "a").set_index("configuration").loc["new", "against the baseline"].startswith(
        "not comparable")
    repeats = df.assign(seed=0)  # three runs of one seed each: one value a side, however much the runs wobble
    t = own_eval_table(repeats, "a").set_index("configuration")
    assert t.loc["new", "against the baseline"].startswith("one value a side") and t.loc["new", "seeds"] == 1


def test_the_own_loss_verdict_takes_one_value_per_seed_over_the_seeds_of_one_configuration():
    from harness.analysis.own_eval import own_eval_table

    # two stacks, three seeds each (each seed its own identity, as a `seed` axis makes them), two runs per seed
    df = pd.DataFrame({"identity": [f"{stack}{seed}" for stack in "ab" for seed in range(3) for _ in range(2)],
                       "seedless": [stack for stack in "ab" for _ in range(6)],
                       "variant": [f"stack={stack} / seed={seed}" for stack in ("old", "new") for seed in range(3)
                                   for _ in range(2)],
                       "seed": [seed for _ in "ab" for seed in range(3) for _ in range(2)],
                       "own_eval_loss": [1.80, 1.80, 1.81, 1.81, 1.79, 1.79, 1.60, 1.60, 1.62, 1.62, 1.61, 1.61],
                       "own_base_loss": [2.0] * 12, "own_tokens": "same"})
    t = own_eval_table(df, "a1").set_index("configuration")
    assert list(t.index) == ["stack=old", "stack=new"]  # the seed left out of the label
    assert t.loc["stack=old", "against the baseline"] == "(the baseline)"
    new = t.loc["stack=new"]
    assert new["seeds"] == 3 and new["runs"] == 6 and new["eval loss"] == pytest.approx(1.61)
    assert new["against the baseline"].startswith("lower loss (trains better)") and "one value per seed" in new[
        "against the baseline"]
    ratio = float(new["against the baseline"].split(": x")[1].split()[0])
    assert own_eval_table(df, None)["against the baseline"].str.startswith("no baseline").all()
    assert ratio == pytest.approx((1.60 * 1.62 * 1.61) ** (1 / 3) / (1.80 * 1.81 * 1.79) ** (1 / 3), abs=1e-4)
