"""W2v-BERT: wav2vec 2.0's Gumbel quantizer (the Gumbel-max law, straight-through gradients, annealing), the
contrastive loss against its formula, distractors from the same utterance, MLM over the quantizer's code ids, and
the two losses trained end to end."""

import math

import pytest
import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.objectives.w2vbert import (
    GumbelVectorQuantizer,
    W2vBERT,
    W2vBERTObjective,
    code_state_nmi,
    contrastive_loss,
    diversity_loss,
    sample_distractors,
)


def test_gumbel_choices_follow_the_softmax_and_eval_takes_the_argmax():
    """Gumbel-max: argmax(l + g) with keyed Gumbel noise picks entry v with probability softmax(l)_v."""
    torch.manual_seed(0)
    quant = GumbelVectorQuantizer(4, groups=2, entries=5, code_dim=6)
    x = torch.randn(1, 1, 4).expand(1, 6000, 4)
    keys = keyed.example_keys(0, 0, [0])
    u = keyed.uniform(keyed.derive(keys, 7), 6000 * 10, dtype=torch.float64) + 2.0**-25
    gumbel = (-torch.log(-torch.log(u))).float().view(1, 6000, 2, 5)
    quant.tau = (1.0, 1.0, 1.0)
    out = quant(x, gumbel)
    probs = quant.logits(x[:, :1]).softmax(-1)[0, 0]  # (G, V)
    freq = F.one_hot(out.codes[0], 5).float().mean(0)  # (G, V)
    assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / 6000)
    ev = quant(x[:, :3])
    assert torch.equal(ev.codes, quant.logits(x[:, :3]).argmax(-1))
    # q is the concatenation of each group's chosen codevector
    want = torch.cat([quant.codevectors[g, ev.codes[0, 0, g]] for g in range(2)])
    assert torch.allclose(ev.q[0, 0], want)


def test_straight_through_gradient_and_annealing():
    """The forward value is one-hot; the gradient is the gradient of softmax((l + g) / tau) (hard=True)."""
    torch.manual_seed(1)
    quant = GumbelVectorQuantizer(3, groups=1, entries=4, code_dim=2, tau=(2.0, 0.5, 0.5))
    x = torch.randn(1, 2, 3, requires_grad=True)
    g = torch.randn(1, 2, 1, 4)
    w = torch.randn(1, 2, 2)
    (quant(x, g).q * w).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    soft = ((quant.logits(x) + g) / 2.0).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), 4).float()
    q = torch.einsum("btgv,gvd->btgd", hard - soft.detach() + soft, quant.codevectors).flatten(-2)
    (q * w).sum().backward()
    assert torch.allclose(grad, x.grad)
    taus = []
    for n in range(4):
        quant.updates.fill_(n)
        taus.append(quant.temperature())
    assert taus == [2.0, 1.0, 0.5, 0.5]  # max(tau_max * decay ** step, tau_min)
    assert "quantizer.updates" in W2vBERT(3, 8, 1, 0, heads=2).state_dict()  # saved: a resumed run anneals on


def test_diversity_loss_bounds():
    assert float(diversity_loss(torch.tensor(2 * 8.0), 2, 8)) == 0.0  # every entry used equally
    assert abs(float(diversity_loss(torch.tensor(2.0), 2, 8)) - 14 / 16) < 1e-6  # one entry per group


def test_distractors_are_other_masked_frames_of_the_same_row_uniformly():
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, [1, 2, 5, 9]] = True
    mask[1, [4]] = True  # one masked frame: no distractor
    mask[2, 3:8] = True
    pos, valid = sample_distractors(mask, keyed.example_keys(0, 0, range(3)), 3000)
    assert valid[:, 0, 0].tolist() == [True, False, True]
    for b in (0, 2):
        for t in mask[b].nonzero().flatten().tolist():
            drawn = pos[b, t]
            others = [s for s in mask[b].nonzero().flatten().tolist() if s != t]
            assert set(drawn.tolist()) == set(others)  # never itself, never an unmasked frame
            freq = torch.bincount(drawn, minlength=12)[others].float() / len(drawn)
            assert (freq - 1 / len(others)).abs().max() < 0.03


def test_contrastive_loss_is_wav2vec2_eq3():
    """-log exp(cos(c, q_t)/k) / sum over {q_t} u distractors, a distractor equal to q_t left out."""
    torch.manual_seed(2)
    B, T, d, K, kappa = 2, 6, 5, 4, 0.1
    c, q = torch.randn(B, T, d), torch.randn(B, T, d)
    q[0, 3] = q[0, 1]  # frame 3 is the same code as frame 1
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, [1, 3, 4]] = True
    mask[1, [0, 2, 5]] = True
    neg, valid = sample_distractors(mask, keyed.example_keys(1, 0, range(B)), K)
    losses = []
    for b, t in mask.nonzero().tolist():
        cands = [q[b, t]] + [q[b, s] for s in neg[b, t].tolist() if not torch.equal(q[b, s], q[b, t])]
        sims = torch.stack([F.cosine_similarity(c[b, t], v, dim=0) for v in cands]) / kappa
        losses.append(-sims.log_softmax(0)[0])
    assert torch.allclose(contrastive_loss(c, q, mask, neg, valid, kappa), torch.stack(losses).mean(), atol=1e-5)


def _hmm_batch(B=16, T=32):
    from masklab.data.hmm_frames import GaussianHMM

    hmm = GaussianHMM(4, 8, noise=0.5, seed=0)
    return hmm.sample(B, T, seed=1)


def test_mlm_targets_are_the_quantizer_codes_and_masked_frames_are_hidden():
    torch.manual_seed(3)
    frames, _ = _hmm_batch(4, 20)
    model = W2vBERT(8, dim=16, depth=1, mlm_depth=1, heads=2, entries=6, max_len=20).eval()
    obj = W2vBERTObjective(model, mask_prob=0.3, mask_length=3, negatives=5).eval()
    keys = keyed.example_keys(0, 0, range(4))
    mask, noise, _ = obj._draws(frames, keys)
    out = model(frames, mask, noise)
    other = torch.where(mask[..., None], torch.randn_like(frames) * 7, frames)
    again = model(other, mask, noise)
    assert torch.allclose(out.context, again.context) and torch.allclose(out.mlm_logits, again.mlm_logits)
    assert torch.equal(out.quantized.codes[~mask], again.quantized.codes[~mask])  # the quantizer sees the frames
    # L_m is the cross-entropy of the MLM head against the quantizer's ids at the masked frames
    loss, metrics = obj(frames, keys)
    want = F.cross_entropy(out.mlm_logits[mask].flatten(0, 1), out.quantized.codes[mask].flatten())
    assert torch.allclose(metrics["mlm"], want)


def test_end_to_end_gradients(one_thread):
    """L_m's gradient reaches the contrastive module and the feature encoder (one network trained end to end,
    unlike vq-wav2vec's two stages); its targets are discrete ids, so the codebook learns from L_c alone."""
    torch.manual_seed(4)
    frames, _ = _hmm_batch(8, 32)
    model = W2vBERT(8, dim=16, depth=1, mlm_depth=1, heads=2, entries=8, max_len=32)
    obj = W2vBERTObjective(model, mask_prob=0.2, mask_length=4, negatives=10, contrastive_weight=0.0)
    loss, _ = obj(frames, keyed.example_keys(0, 0, range(8)))
    loss.backward()
    assert model.contrastive.layers[0].linear1.weight.grad.abs().sum() > 0
    assert model.feature.weight.grad.abs().sum() > 0
    assert model.quantizer.codevectors.grad is None or not model.quantizer.codevectors.grad.any()
    model.zero_grad()
    obj = W2vBERTObjective(model, mask_prob=0.2, mask_length=4, negatives=10, mlm_weight=0.0)
    obj(frames, keyed.example_keys(0, 0, range(8)))[0].backward()
    assert model.quantizer.codevectors.grad.abs().sum() > 0 and model.quantizer.weight_proj.weight.grad.any()


def test_annealing_counts_optimizer_steps_not_micro_batches(one_thread):
    """The temperature follows optimizer steps: a global batch of 8 in two micro-batches of 4 is one step, and
    held-out evaluation does not anneal."""
    frames, _ = _hmm_batch(8, 16)
    model = W2vBERT(8, dim=16, depth=1, mlm_depth=0, heads=2, entries=4, max_len=16, tau=(2.0, 0.5, 0.5))
    obj = W2vBERTObjective(model, mask_prob=0.3, mask_length=3, negatives=4, mlm_weight=0.0)
    for step in range(2):
        for half in (slice(0, 4), slice(4, 8)):
            obj(frames[half], keyed.train_keys(0, step, torch.arange(8)[half]), batch_size=8)
    assert float(model.quantizer.updates) == 2.0 and model.quantizer.temperature() == 0.5
    obj.evaluate(frames)
    assert float(model.quantizer.updates) == 2.0


def test_bad_configurations():
    with pytest.raises(ValueError, match="mlm_depth"):
        W2vBERTObjective(W2vBERT(4, 8, 1, 0, heads=2))
    with pytest.raises(ValueError, match="groups"):
        GumbelVectorQuantizer(4, groups=3, entries=4, code_dim=8)
    with pytest.raises(ValueError, match="tau"):
        GumbelVectorQuantizer(4, groups=1, entries=4, code_dim=8, tau=(0.5, 2.0, 0.9))


def test_code_state_nmi():
    """1 when the codes rename the states, 0 when they say nothing about them."""
    states = torch.arange(6).repeat(50)
    assert abs(code_state_nmi((states * 7 + 3) % 6, states) - 1.0) < 1e-9
    assert code_state_nmi(torch.zeros_like(states), states) == 0.0
