"""Du-IN's objectives against the reference's definitions: masked code prediction sees each trial under a keyed
MAE mask and its complement and scores every token once, from the pass that masked it, against the frozen
tokenizer's codes; the tokenizer never trains; a masked-code run refuses a tokenizer of another shape; the recipes
refuse a codebook of fewer than 2 codes."""

import pytest
import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.corrupt.patches import random_patches
from masklab.objectives.duin import complementary_masks
from masklab.train import checkpoint
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: no OpenMP spin-waits on a shared CPU

SMALL = ["train_trials=16", "dim=16", "heads=2", "depth=1", "codebook=8"]


def _task(name, *over):
    return apply_overrides(get_recipe(name), [*SMALL, *over]).build()


def test_masks_are_maes_keyed_count_and_its_complement():
    keys = keyed.example_keys(0, 0, torch.arange(5))
    mask, other = complementary_masks(keys, 8, 0.5)
    assert torch.equal(mask, random_patches((1, 8), 0.5, keys=keys).mask)
    assert torch.equal(other, ~mask) and (mask.sum(1) == 8 - int(8 * 0.5)).all()
    assert torch.equal(complementary_masks(keys, 8, 0.5)[0], mask)  # keyed: the same every time


def test_every_token_is_scored_once_from_the_pass_that_masked_it():
    task = _task("duin-mae")
    obj = task.objective.train()
    x, keys = task.train[:4], keyed.example_keys(0, 0, torch.arange(4))
    loss, metrics = obj(x, keys)
    codes = obj.tokenizer.codes(x)
    mask, other = complementary_masks(keys, codes.shape[1], 0.5)
    logits = torch.where(mask[..., None], obj.model(x, mask), obj.model(x, other))
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1), codes.flatten()))
    assert metrics["code_acc"] == (logits.argmax(-1) == codes).float().mean()


def test_the_tokenizer_is_frozen():
    task = _task("duin-mae")
    obj = task.objective.train()
    before = {k: v.clone() for k, v in obj.tokenizer.state_dict().items()}
    loss, _ = obj(task.train[:8], keyed.example_keys(0, 0, torch.arange(8)))
    loss.backward()
    assert not obj.tokenizer.training and all(p.grad is None for p in obj.tokenizer.parameters())
    assert all(torch.equal(v, obj.tokenizer.state_dict()[k]) for k, v in before.items())  # codebook unmoved


def test_a_trained_tokenizer_is_loaded_and_a_mismatched_one_refused(tmp_path):
    vq = _task("duin-vqvae", "seed=3").objective
    vq.train()(torch.randn(8, 128, 16), None)  # one training forward: k-means initialises the codebook
    checkpoint.save(tmp_path / "vq", vq, recipe=_recipe_dict("duin-vqvae", "seed=3"), step=1)
    task = _task("duin-mae", f"tokenizer={tmp_path / 'vq'}")
    for k, v in vq.model.state_dict().items():
        assert torch.equal(task.objective.tokenizer.state_dict()[k], v)
    with pytest.raises(ValueError, match="other seg_len"):
        _task("duin-mae", f"tokenizer={tmp_path / 'vq'}", "seg_len=32")
    checkpoint.save(tmp_path / "mae", task.objective, recipe=_recipe_dict("duin-mae"), step=1)
    with pytest.raises(ValueError, match="not a duin-vqvae checkpoint"):
        _task("duin-mae", f"tokenizer={tmp_path / 'mae'}")


def _recipe_dict(name, *over):
    from masklab.train.recipes.base import to_dict

    return to_dict(apply_overrides(get_recipe(name), [*SMALL, *over]))


@pytest.mark.parametrize("name", ["duin-vqvae", "duin-mae"])
def test_bad_recipes_are_one_line_errors(name):
    for bad, msg in [
        ("codebook=1", "codebook must be >= 2"),
        ("tokens=electrode", "tokens must be one of"),
        ("seg_len=24", "seg_len must divide"),
        ("regions=3", "regions dividing channels"),
        ("data=eeg", "word-signals"),
    ]:
        with pytest.raises(ValueError, match=msg):
            apply_overrides(get_recipe(name), [bad])
