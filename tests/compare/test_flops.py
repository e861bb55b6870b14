"""The budget's FLOP count (6 x trained + 2 x frozen matmul parameters x tokens) against
torch.utils.flop_counter.FlopCounterMode on one training step of every recipe: within 10%."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from masklab.compare.flops import flops_per_step, param_counts
from masklab.corrupt import keyed
from masklab.train.recipes import RECIPES, get_recipe
from masklab.train.recipes.base import apply_overrides


def _small(name, corpus):
    r = get_recipe(name)
    if r.modality == "text":
        return apply_overrides(r, ["preset=micro", "batch_size=4", f"data={corpus}", "tokenizer=bytes"]
                               + ([] if name == "mdm-sft" else ["seq_len=64"]))  # fmt: skip
    return apply_overrides(r, ["batch_size=8"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_formula_matches_the_flop_counter(name, small_corpus, one_thread):
    recipe = _small(name, small_corpus if name != "mdm-sft" else "stdlib-sft")
    task = recipe.build()
    x = task.train[: recipe.batch_size]
    keys = keyed.example_keys(0, 0, torch.arange(len(x)))
    task.objective.train()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # a frozen teacher's fused encoder-layer op escapes the counter
    try:
        with FlopCounterMode(display=False) as counter:
            loss, _ = task.objective(x, keys, position=torch.arange(len(x)), batch_size=len(x), batch_key=keys.sum())
            loss.backward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    measured, counted = counter.get_total_flops(), flops_per_step(recipe, task)
    assert abs(counted / measured - 1) <= 0.10, (name, counted, measured)


def test_frozen_parameters_count_a_forward_only():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    m[0].requires_grad_(False)
    assert param_counts(m) == (10, 20)
