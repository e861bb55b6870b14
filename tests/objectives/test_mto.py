"""SimMIM and MTO's recalibration against their definitions: the masked layer equals the dense attention whose
visible rows are renormalised over the visible keys (A'_ij = A_ij (1 - m_j) / sum_k A_ik (1 - m_k)); visible tokens
then never depend on the mask token or the masked pixels; SimMIM's loss is the mean L1 over masked pixels."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed
from masklab.corrupt.patches import PatchMask, simmim_patches
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig, patchify, unpatchify
from masklab.objectives.mto import SimMIM, SimMIMObjective, recalibration_mask
from masklab.train import checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: no OpenMP spin-waits on a shared CPU

CFG = MaskedViTConfig(image_size=8, patch_size=2, hidden_size=16, num_hidden_layers=2, num_attention_heads=2)


def _model(mto: bool, seed: int = 0):
    torch.manual_seed(seed)
    vit = MaskedViT(CFG)
    return vit, SimMIM(vit.encoder, mto=mto).eval()


def _mask(seed: int, n: int = 3) -> torch.Tensor:
    return simmim_patches(CFG.grid, 0.5, cell=2, keys=keyed.example_keys(seed, 0, torch.arange(n))).mask


def _recalibrated_layer(layer: torch.nn.TransformerEncoderLayer, x: torch.Tensor, mask: torch.Tensor):
    """One pre-norm block written out: plain softmax weights A, then MTO's renormalisation of the visible rows."""
    sa, (B, N, D) = layer.self_attn, x.shape
    H = sa.num_heads
    q, k, v = (layer.norm1(x) @ sa.in_proj_weight.T + sa.in_proj_bias).chunk(3, -1)
    q, k, v = (t.view(B, N, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, N, d)
    A = torch.softmax(q @ k.transpose(-1, -2) / (D // H) ** 0.5, -1)  # (B, H, N, N)
    kept = A * (~mask)[:, None, None, :]  # masked keys dropped ...
    recal = kept / kept.sum(-1, keepdim=True)  # ... and the visible rows renormalised
    A = torch.where((~mask)[:, None, :, None], recal, A)  # masked queries keep their weights
    x = x + sa.out_proj((A @ v).transpose(1, 2).reshape(B, N, D))
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


def test_recalibrated_attention_equals_the_renormalised_dense_weights():
    _, model = _model(mto=True)
    mask = _mask(1)
    x = torch.randn(3, 16, 16)
    layer = model.encoder.layers[0]
    got = layer(x, src_mask=recalibration_mask(mask, 2))
    torch.testing.assert_close(got, _recalibrated_layer(layer, x, mask), rtol=1e-5, atol=1e-5)


def test_nothing_masked_is_the_plain_encoder():
    _, model = _model(mto=True)
    patches = torch.randn(2, 16, 4)
    none = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(model.encode(patches, none), model.encoder(patches), rtol=0, atol=0)


MODELS = {mto: _model(mto)[1] for mto in (True, False)}  # built once: the property test draws masks and pixels


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_with_mto_visible_tokens_never_see_the_mask_token_or_the_masked_pixels(seed):
    g = torch.Generator().manual_seed(seed)
    patches = torch.randn(3, 16, 4, generator=g)
    mask = _mask(seed)
    other = torch.where(mask[..., None], torch.randn(3, 16, 4, generator=g), patches)  # new masked pixels
    shift = torch.randn(16, generator=g)  # and another mask token
    for mto, model in MODELS.items():
        with torch.no_grad():
            a = model.encode(patches, mask)
            model.mask_token.add_(shift)
            b = model.encode(other, mask)
            model.mask_token.sub_(shift)
        same = torch.allclose(a[~mask], b[~mask], atol=1e-5)
        assert same == mto  # without MTO the visible tokens read the mask token


def test_loss_is_the_mean_l1_over_masked_pixels():
    vit, model = _model(mto=False)
    images = torch.rand(3, 1, 8, 8)
    mask = _mask(2)
    loss, pred = model(images, PatchMask(mask, CFG.grid))
    pixels = unpatchify(mask[..., None].expand(-1, -1, 4).float(), 2, CFG.grid, 1)  # (B, 1, H, W) SimMIM's mask
    rec = unpatchify(pred, 2, CFG.grid, 1)
    want = ((images - rec).abs() * pixels).sum() / pixels.sum() / 1  # / in_chans
    torch.testing.assert_close(loss, want)
    assert torch.equal(patchify(unpatchify(pred, 2, CFG.grid, 1), 2), pred)


def test_checkpoint_is_a_masked_vit_and_resumes_the_head(tmp_path):
    vit, model = _model(mto=True)
    obj = SimMIMObjective(model, vit, ratio=0.5, cell=2)
    loss, _ = obj(torch.rand(4, 1, 8, 8), keyed.example_keys(0, 0, torch.arange(4)))
    loss.backward()
    checkpoint.save(tmp_path / "ckpt", obj, recipe={}, step=1)
    loaded = checkpoint.load(tmp_path / "ckpt").model  # what the image probes read
    assert isinstance(loaded, MaskedViT)
    x = torch.randn(2, 16, 4)
    torch.testing.assert_close(loaded.encoder(x), vit.encoder(x))
    vit2, model2 = _model(mto=True, seed=3)
    again = SimMIMObjective(model2, vit2, ratio=0.5, cell=2)
    again.load_model(tmp_path / "ckpt")
    assert torch.equal(model2.mask_token, model.mask_token) and torch.equal(model2.head.weight, model.head.weight)
    (tmp_path / "ckpt" / "simmim.safetensors").unlink()
    with pytest.raises(ValueError, match="no SimMIM head"):
        again.load_model(tmp_path / "ckpt")


def test_bad_arguments_are_one_line_errors():
    vit, model = _model(mto=True)
    with pytest.raises(ValueError, match="patch mask"):
        model.encode(torch.randn(2, 16, 4), torch.zeros(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="ratio must be in"):
        SimMIMObjective(model, vit, ratio=1.0)
    with pytest.raises(ValueError, match="SimMIM encoder"):
        SimMIMObjective(model, MaskedViT(CFG))
