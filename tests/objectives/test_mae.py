"""MAE objective: HF ViTMAE as the oracle for patchify and the normalized-pixel loss; the encoder never sees
masked patches; training lowers the loss on real digits."""

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from masklab.corrupt import keyed
from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH
from masklab.models.vit_mae import (
    MaskedViT,
    MaskedViTConfig,
    hpm_rank_loss,
    mae_loss,
    normalized_target,
    patchify,
    unpatchify,
)
from masklab.objectives.mae import ink_boxes, mask_for

TINY = dict(
    image_size=8,
    patch_size=2,
    num_channels=1,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
)


def test_patchify_and_loss_match_hugging_face_vitmae():
    cfg = ViTMAEConfig(
        image_size=8,
        patch_size=2,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        norm_pix_loss=True,
    )
    hf = ViTMAEForPreTraining(cfg).eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(patchify(x, 2), hf.patchify(x))
    assert torch.equal(unpatchify(patchify(x, 2), 2, (4, 4), 3), x)
    pm = P.random_patches((4, 4), 0.75, batch=4, seed=0)
    out = hf(x, noise=pm.noise())  # HF masks exactly our patches and reports its loss on them
    assert torch.equal(out.mask.bool(), pm.mask)
    ours, _ = mae_loss(out.logits, normalized_target(patchify(x, 2)), pm.mask)
    assert torch.allclose(ours, out.loss, atol=1e-5)


def test_encoder_never_sees_masked_patches():
    model = MaskedViT(MaskedViTConfig(**TINY)).eval()
    x = torch.rand(3, 1, 8, 8)
    pm = P.random_patches((4, 4), 0.75, batch=3, seed=1)
    y = patchify(x, 2).clone()
    y[pm.mask] = torch.randn_like(y[pm.mask]) * 10  # scribble over every masked patch
    a = model.encoder(patchify(x, 2), pm.ids_keep)
    b = model.encoder(y, pm.ids_keep)
    assert torch.equal(a, b)
    # and the loss only counts masked patches: a perfect prediction there gives zero loss
    target = normalized_target(patchify(x, 2))
    pred = torch.where(pm.mask[..., None], target, torch.randn_like(target))
    assert float(mae_loss(pred, target, pm.mask)[0]) == 0.0


def test_decoder_puts_mask_tokens_where_patches_were_masked():
    # with a zero encoder output, the decoder input at a masked position is exactly the mask token
    model = MaskedViT(MaskedViTConfig(**TINY)).eval()
    pm = P.random_patches((4, 4), 0.5, batch=2, seed=2)
    seen = {}
    model.decoder.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        model.decoder_embed.weight.zero_()
        model.decoder_embed.bias.fill_(7.0)
        model._decode(torch.zeros(2, 8, 16), pm)
    x = seen["x"] - model.decoder_pos
    assert torch.allclose(x[pm.mask], model.mask_token.expand(int(pm.mask.sum()), -1), atol=1e-6)
    assert torch.allclose(x[~pm.mask], torch.full_like(x[~pm.mask], 7.0), atol=1e-6)


def test_hpm_rank_loss_rewards_the_right_order():
    true = torch.stack([torch.randperm(16), torch.randperm(16)]).float() / 16  # distinct losses
    mask = torch.ones(2, 16, dtype=torch.bool)
    good = hpm_rank_loss(1000 * true, true, mask)
    bad = hpm_rank_loss(-1000 * true, true, mask)
    assert float(good) < 0.01 < 10 < float(bad)


def test_ink_boxes_bound_the_digit():
    x = torch.zeros(2, 1, 16, 16)
    x[0, 0, 3:9, 5:7] = 1.0
    assert ink_boxes(x).tolist() == [[5.0, 3.0, 7.0, 9.0], [0.0, 0.0, 16.0, 16.0]]


def test_mask_for_gives_every_strategy_an_exact_count():
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, loss_head=True)).eval()
    x = torch.rand(8, 1, 8, 8)
    keys = keyed.example_keys(0, 0, torch.arange(8))
    for strategy in PATCH.names():
        pm = mask_for(strategy, model, x, keys, 0.5, 0.5)
        counts = pm.mask.sum(1)
        assert bool((counts == counts[0]).all()) and 0 < int(counts[0]) < 16, strategy
        assert model(x, pm).loss.item() > 0


def test_training_lowers_the_masked_loss_on_digits(one_thread, tmp_path):
    from safetensors.torch import load_file
    from sklearn.datasets import load_digits

    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    x = torch.tensor(load_digits().images[:128], dtype=torch.float32)[:, None] / 16  # (128, 1, 8, 8)
    keys = keyed.example_keys(9, 0, torch.arange(64))
    for strategy in ("random", "hpm"):
        cfg = MaskedViTConfig(**{**TINY, "num_attention_heads": 4}, loss_head=strategy == "hpm")
        torch.manual_seed(0)
        before = MaskedViT(cfg).eval()
        pm = mask_for("random", before, x[:64], keys, 0.5, 1.0)
        over = [f"strategy={strategy}", "image_size=8", "dim=16", "depth=1", "decoder_dim=16", "mask_ratio=0.5"]
        over += ["steps=25", "batch_size=32", "lr=5e-3", "warmup=3", "eval_every=0", "ckpt_every=0", "eval_batches=1"]
        train(apply_overrides(get_recipe("mae-digits"), over), tmp_path / strategy, progress=False)  # the one loop
        after = MaskedViT(cfg).eval()
        after.load_state_dict(load_file(tmp_path / strategy / "model" / "model.safetensors"))
        with torch.no_grad():
            assert float(after(x[:64], pm).recon) < 0.8 * float(before(x[:64], pm).recon), strategy
