"""Du-IN's networks against their definitions: the quantizer's code is the brute-force nearest unit code, its EMA
step is the stated formula (unused codes stay), the straight-through estimator passes gradients unchanged, a
codebook of fewer than 2 codes is refused; region tokens read one segment of every channel, channel tokens one
segment of one channel; the decoder puts every token's samples back where they came from."""

import pytest
import torch
import torch.nn.functional as F

from masklab.models.duin import (
    MaskedCodeModel,
    NormEMAQuantizer,
    SignalEmbed,
    SignalEncoder,
    SignalVQVAE,
    kmeans_cosine,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: no OpenMP spin-waits on a shared CPU

C, T, S = 4, 32, 8  # channels, samples, samples per segment


def _quantizer(k=5, decay=0.9):
    torch.manual_seed(0)
    q = NormEMAQuantizer(dim=6, codebook_size=k, code_dim=3, decay=decay)
    q.initted.fill_(True)  # keep the random unit codebook: no k-means on the first batch
    return q


def test_code_is_the_brute_force_nearest_unit_code():
    q = _quantizer().eval()
    z = torch.randn(7, 9, 6)
    z_e = q.encode(z)
    torch.testing.assert_close(z_e.norm(dim=-1), torch.ones(7, 9))
    _, _, codes = q(z)
    brute = torch.cdist(z_e.reshape(-1, 3), q.codebook).argmin(1).view(7, 9)
    assert torch.equal(codes, brute)


def test_ema_step_moves_each_used_code_by_the_formula_and_leaves_unused_codes():
    q = _quantizer(k=5, decay=0.9).train()
    z = torch.randn(40, 6)
    before = q.codebook.clone()
    z_e = q.encode(z).detach()
    codes = torch.cdist(z_e, before).argmin(1)
    q(z)
    for k in range(5):
        members = z_e[codes == k]
        if len(members) == 0:
            assert torch.equal(q.codebook[k], before[k])
        else:
            want = F.normalize(0.9 * before[k] + 0.1 * F.normalize(members.mean(0), dim=0), dim=0)
            torch.testing.assert_close(q.codebook[k], want)
    frozen = q.codebook.clone()
    q.eval()(z)
    assert torch.equal(q.codebook, frozen)  # evaluation never moves the codebook


def test_a_dead_code_restarts_on_the_worst_quantized_vector():
    q = _quantizer(k=5, decay=0.9)
    q.restart = 1.0
    q.usage.copy_(torch.tensor([10.0, 0.0, 10.0, 0.0, 10.0]))  # codes 1 and 3: 0.9 * 0 + 0.1 * count < 1, dead
    seen, revive = {}, q._revive
    q._revive = lambda flat, codes: (seen.update(book=q.codebook.clone(), flat=flat, codes=codes), revive(flat, codes))
    q.train()(torch.randn(8, 6))  # 8 vectors: no code can reach a count of 10
    error = (seen["flat"] - seen["book"][seen["codes"]]).pow(2).sum(-1)
    worst = error.argsort(descending=True)[:2]
    torch.testing.assert_close(q.codebook[[1, 3]], seen["flat"][worst])
    assert torch.equal(q.codebook[[0, 2, 4]], seen["book"][[0, 2, 4]])  # live codes keep their EMA step
    assert q.usage[1] == q.usage[3] == 8 / 5 and (q.usage[[0, 2, 4]] >= 9).all()


def test_straight_through_passes_the_gradient_and_the_codebook_gets_none():
    q = _quantizer().train()
    z = torch.randn(10, 6, requires_grad=True)
    out, loss, _ = q(z)
    out.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not q.codebook.requires_grad


def test_first_training_batch_initialises_the_codebook_by_kmeans():
    torch.manual_seed(0)
    q = NormEMAQuantizer(dim=6, codebook_size=4, code_dim=3, decay=0.0)
    z = torch.randn(64, 6)
    want = kmeans_cosine(q.encode(z).detach(), 4)
    q.train()(z)
    assert bool(q.initted)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(4))
    codes = torch.cdist(q.encode(z).detach(), want).argmin(1)  # decay 0: one EMA step lands on the cluster means
    for k in codes.unique():  # each used code is its k-means cluster's normalised mean after the step
        mean = F.normalize(q.encode(z).detach()[codes == k].mean(0), dim=0)
        torch.testing.assert_close(q.codebook[k], mean)


@pytest.mark.parametrize("k", [1, 0, 2.0, True])
def test_codebook_needs_at_least_two_codes(k):
    with pytest.raises(ValueError, match="codebook_size must be an int >= 2"):
        NormEMAQuantizer(dim=4, codebook_size=k, code_dim=2)


@pytest.mark.parametrize("tokens", ["region", "channel"])
def test_a_token_reads_only_its_own_segment_and_for_channel_tokens_its_own_channel(tokens):
    torch.manual_seed(0)
    e = SignalEmbed(tokens, C, T, S, dim=8, d_neural=5)
    x = torch.randn(2, T, C)
    base = e(x)
    y = x.clone()
    y[:, S : 2 * S, 1] += 1.0  # change segment 1 of channel 1
    changed = (e(y) - base).abs().sum(-1) > 0  # (B, N)
    if tokens == "region":
        assert changed.tolist() == [[n == 1 for n in range(T // S)]] * 2
    else:  # channel-major: token c * S_count + s
        assert changed.tolist() == [[n == 1 * (T // S) + 1 for n in range(C * T // S)]] * 2


def test_channel_features_are_averaged_over_channels_or_kept_per_channel():
    torch.manual_seed(0)
    enc = SignalEncoder(SignalEmbed("channel", C, T, S, dim=8), 8, 1, 2)
    x = torch.randn(3, T, C)
    h = enc(x).view(3, C, T // S, 8)  # channel-major tokens
    torch.testing.assert_close(enc.features(x), h.mean(1).flatten(1))
    torch.testing.assert_close(enc.features(x, pool="concat"), h.flatten(1))
    with pytest.raises(ValueError, match="pool must be"):
        enc.features(x, pool="max")


class Pattern(torch.nn.Module):
    """A head that ignores its input and returns a fixed [N, per-token] pattern for every example."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern

    def forward(self, h):
        return self.pattern.expand(h.shape[0], -1, -1)


@pytest.mark.parametrize("tokens", ["region", "channel"])
def test_decoder_puts_each_tokens_samples_back_in_place(tokens):
    torch.manual_seed(0)
    embed = SignalEmbed(tokens, C, T, S, dim=8, d_neural=5)
    vq = SignalVQVAE(SignalEncoder(embed, 8, 1, 2), NormEMAQuantizer(8, 4, 3), 8, 1, 2)
    per = vq.head.out_features
    N = embed.num_tokens
    pattern = (1000 * torch.arange(N)[:, None] + torch.arange(per)).float()  # token n's k-th output
    vq.head = Pattern(pattern)
    out = vq.decode(torch.zeros(1, N, 8))[0]  # (T, C)
    for t in range(T):
        for c in range(C):
            if tokens == "region":  # token t // S holds (sample within segment, channel)
                want = 1000 * (t // S) + (t % S) * C + c
            else:  # token c * (T / S) + t // S holds one channel's segment
                want = 1000 * (c * (T // S) + t // S) + t % S
            assert out[t, c] == want


def test_masked_tokens_enter_the_encoder_as_the_mask_embedding():
    torch.manual_seed(0)
    embed = SignalEmbed("region", C, T, S, dim=8, d_neural=5)
    model = MaskedCodeModel(SignalEncoder(embed, 8, 1, 2), 8, codebook_size=4)
    seen = {}
    model.encoder.run = lambda tokens: seen.update(tokens=tokens) or torch.zeros(*tokens.shape)
    x = torch.randn(2, T, C)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    model(x, mask)
    assert torch.equal(seen["tokens"][mask], model.mask_emb.expand(int(mask.sum()), -1))
    assert torch.equal(seen["tokens"][~mask], embed(x)[~mask])
    with pytest.raises(ValueError, match="mask must be"):
        model(x, mask[:, :3])
