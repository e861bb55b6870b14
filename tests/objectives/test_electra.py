"""ELECTRA objective with DeBERTaV3 embedding sharing: which loss updates which embedding (Sec. 3, Eq. 5), the
zero-initialised delta, and a saved discriminator that loads as a plain HF model holding E_G + E_delta."""

import pytest
import torch
from transformers import ModernBertForTokenClassification

from masklab.corrupt import keyed
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.electra import GDESEmbedding
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

V = 40
INFO = TokenInfo(
    vocab_size=V, mask_id=1, pad_id=0, eos_id=2, bos_id=3, special_ids=(0, 1, 2, 3, 4), never_mask=(0, 1, 3)
)


def build(sharing):
    from masklab.models import build_model

    torch.manual_seed(0)
    model = build_model("modernbert", "micro", INFO, 16)
    r = apply_overrides(get_recipe("electra"), [f"sharing={sharing}", "preset=micro"])
    return r.build_objective(model, INFO)


def grads(obj, part):
    """Backward of one loss alone: 'gen' (MLM) or 'disc' (RTD)."""
    obj.zero_grad(set_to_none=True)
    obj.gen_weight, obj.rtd_weight = (1.0, 0.0) if part == "gen" else (0.0, 1.0)
    loss, m = obj(torch.randint(5, V, (4, 16)), keyed.example_keys(0, 0, range(4)))
    assert torch.isfinite(loss) and 0 <= m["replaced_frac"] <= 1
    loss.backward()
    obj.gen_weight, obj.rtd_weight = 1.0, 50.0


def test_gdes_rtd_loss_only_moves_delta_and_mlm_only_moves_generator_embedding():
    obj = build("gdes")
    emb = obj.model.get_input_embeddings()
    assert isinstance(emb, GDESEmbedding) and torch.equal(emb.delta, torch.zeros_like(emb.delta))
    g_emb = obj.generator.get_input_embeddings().weight
    assert emb.base.weight is g_emb and torch.equal(emb.weight, g_emb)
    grads(obj, "disc")  # discriminator loss alone
    assert g_emb.grad is None or g_emb.grad.abs().max() < 1e-6, "RTD loss leaked into E_G"
    assert emb.delta.grad is not None and emb.delta.grad.abs().max() > 0
    grads(obj, "gen")  # generator loss alone
    assert g_emb.grad.abs().max() > 0 and (emb.delta.grad is None or emb.delta.grad.abs().max() == 0)


def test_es_shares_one_table_trained_by_both_and_none_shares_nothing():
    es = build("es")
    assert es.model.get_input_embeddings() is es.generator.get_input_embeddings()
    grads(es, "disc")
    assert es.generator.get_input_embeddings().weight.grad.abs().max() > 0  # the tug-of-war
    none = build("none")
    assert none.model.get_input_embeddings().weight is not none.generator.get_input_embeddings().weight


def test_saved_discriminator_is_plain_hf_with_materialised_embedding(tmp_path):
    obj = build("gdes")
    emb = obj.model.get_input_embeddings()
    with torch.no_grad():
        emb.delta.add_(0.5)
    obj.save_model(tmp_path)
    plain = ModernBertForTokenClassification.from_pretrained(tmp_path)
    assert torch.allclose(plain.get_input_embeddings().weight, emb.base.weight + 0.5)
    again = build("gdes")
    again.load_model(tmp_path)
    assert torch.equal(again.model.get_input_embeddings().delta, emb.delta)
    for (k, a), b in zip(obj.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_bad_sharing():
    with pytest.raises(ValueError, match="sharing"):
        apply_overrides(get_recipe("electra"), ["sharing=half"])
