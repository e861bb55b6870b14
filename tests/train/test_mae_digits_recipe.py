"""The mae-digits recipe builds the digits task, rejects bad strategies and trains through the shared loop."""

import pytest

from masklab.train.loop import train
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides


def test_mae_digits_builds_and_trains_a_few_steps(tmp_path, one_thread):
    r = apply_overrides(
        get_recipe("mae-digits"),
        [
            "strategy=hpm",
            "steps=3",
            "eval_every=0",
            "ckpt_every=0",
            "eval_batches=1",
            "dim=16",
            "decoder_dim=16",
            "depth=1",
        ],
    )
    task = r.build()
    assert tuple(task.train.shape) == (1347, 1, 16, 16) and tuple(task.valid.shape) == (450, 1, 16, 16)
    summary = train(r, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and summary["eval"]["recon"] > 0
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("strategy=zigzag", "strategy must be one of"),
        ("mask_ratio=1.0", "mask_ratio must be in"),
        ("patch_size=3", "not a multiple"),
    ],
)
def test_mae_digits_rejects_bad_overrides(bad, msg):
    with pytest.raises(ValueError, match=msg):
        apply_overrides(get_recipe("mae-digits"), [bad])
