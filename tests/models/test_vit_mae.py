"""The masked ViT is a Hugging Face model: ViTMAE's field names, exact save_pretrained / from_pretrained and
AutoModel round trips (the sin-cos tables, which are not saved, come back too), and a trained mae-digits run folder
loads through masklab.train.checkpoint.load."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, ViTMAEConfig

from masklab.corrupt import patches as P
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig, MaskedViTModel, sincos_2d

SHARED = [
    "image_size",
    "patch_size",
    "num_channels",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_num_attention_heads",
    "decoder_intermediate_size",
    "mask_ratio",
    "norm_pix_loss",
]
TINY = dict(image_size=8, patch_size=2, hidden_size=16, num_hidden_layers=2, num_attention_heads=2)


def _model(loss_head=False):
    torch.manual_seed(0)
    return MaskedViT(MaskedViTConfig(**TINY, decoder_hidden_size=12, loss_head=loss_head)).eval()


def _mask():
    return P.random_patches((4, 4), 0.75, batch=3, seed=0)


def test_config_names_the_fields_it_shares_with_vitmae_as_vitmae_does():
    ours, theirs = MaskedViTConfig().to_dict(), ViTMAEConfig().to_dict()
    assert all(name in ours and name in theirs for name in SHARED)
    c = MaskedViTConfig(hidden_size=32, decoder_hidden_size=16, num_attention_heads=8)
    assert (c.intermediate_size, c.decoder_intermediate_size, c.decoder_num_attention_heads) == (64, 32, 8)
    assert c.grid == (8, 8) and c.patch_dim == 4
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        MaskedViTConfig(image_size=15, patch_size=2)


def test_state_dict_keys_are_the_mae_layout_without_the_position_tables():
    keys = set(_model(loss_head=True).state_dict())
    assert {"encoder.embed.weight", "encoder.layers.1.self_attn.in_proj_weight", "encoder.norm.weight"} <= keys
    assert {"decoder_embed.weight", "mask_token", "decoder.layers.0.linear1.weight", "decoder_norm.bias"} <= keys
    assert "head.weight" in keys and not any(k.endswith("pos") for k in keys)
    # HPM's loss predictor is a decoder of its own (reference decoder_blocks_losspred, decoder_norm_losspred,
    # decoder_pred_losspred with patch_size**2 * channels outputs)
    assert {"loss_decoder.layers.0.linear1.weight", "loss_decoder_norm.weight", "loss_head.weight"} <= keys
    assert _model(loss_head=True).state_dict()["loss_head.weight"].shape == (4, 12)
    assert not any(k.startswith("loss_") for k in _model().state_dict())


def test_decoder_blocks_start_independent():
    """Each decoder block is initialised on its own, as the reference's ModuleList of Blocks (nn.TransformerEncoder
    would deep-copy one block into every layer)."""
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, decoder_num_hidden_layers=2, loss_head=True))
    for stack in (model.decoder, model.loss_decoder):
        assert not torch.equal(stack.layers[0].linear1.weight, stack.layers[1].linear1.weight)
    assert not torch.equal(model.decoder.layers[0].linear1.weight, model.loss_decoder.layers[0].linear1.weight)


@pytest.mark.parametrize("loss_head", [False, True])
def test_save_pretrained_round_trips_exactly_through_the_class_and_automodel(tmp_path, loss_head):
    model = _model(loss_head)
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "masklab-vit-mae"
    assert set(load_file(tmp_path / "model.safetensors")) == set(model.state_dict())
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MaskedViTConfig)
    x, pm = torch.rand(3, 1, 8, 8), _mask()
    with torch.no_grad():
        want = model(x, pm)
    for again in (MaskedViT.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        again.eval()
        assert type(again) is MaskedViT
        assert all(getattr(again.config, k) == getattr(model.config, k) for k in [*SHARED, "loss_head"])
        assert torch.equal(again.encoder.pos, sincos_2d((4, 4), 16))
        assert torch.equal(again.decoder_pos, sincos_2d((4, 4), 12))
        with torch.no_grad():
            got = again(x, pm)
        assert torch.equal(got.logits, want.logits) and torch.equal(got.loss, want.loss)
        assert torch.equal(again.features(x), model.features(x))
        if loss_head:
            assert torch.equal(again.predict_loss(x), model.predict_loss(x))


def test_the_encoder_loads_alone_and_a_folder_missing_weights_is_refused(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "full")
    encoder = MaskedViTModel.from_pretrained(tmp_path / "full").eval()
    patches = torch.rand(3, 16, 4)
    with torch.no_grad():
        assert torch.equal(encoder(patches, _mask().ids_keep), model.encoder(patches, _mask().ids_keep))
    encoder.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="lacks .* parameters of MaskedViT"):
        MaskedViT.from_pretrained(tmp_path / "encoder")


def test_a_trained_mae_run_folder_loads_through_checkpoint_load(tmp_path, one_thread):
    from masklab.train import checkpoint
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    over = ["strategy=hpm", "image_size=8", "dim=16", "depth=1", "decoder_dim=16", "mask_ratio=0.5"]
    over += ["steps=2", "batch_size=16", "eval_every=0", "ckpt_every=0", "eval_batches=1"]
    train(apply_overrides(get_recipe("mae-digits"), over), tmp_path / "run", progress=False)
    loaded = checkpoint.load(tmp_path / "run")
    files = loaded.manifest["files"].keys()
    assert files >= {"config.json", "model.safetensors", "teacher/model.safetensors", "teacher/ema.json"}
    assert loaded.tokenizer is None
    teacher = MaskedViT.from_pretrained(tmp_path / "run" / "model" / "teacher")  # HPM's EMA teacher, a HF model too
    assert teacher.config.loss_head
    model = loaded.model
    assert isinstance(model, MaskedViT) and not model.training
    assert model.config.loss_head and model.config.mask_ratio == 0.5 and model.config.hidden_size == 16
    fresh = MaskedViT(model.config).eval()
    fresh.load_state_dict(load_file(tmp_path / "run" / "model" / "model.safetensors"))
    x, pm = torch.rand(3, 1, 8, 8), _mask()
    with torch.no_grad():
        assert torch.equal(model(x, pm).logits, fresh(x, pm).logits)
