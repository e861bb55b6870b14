"""ERNIE-Gram (Xiao et al. 2021, Sec. 3): one [MASK] per n-gram in the explicit input, the coarse loss is the CE
over V_F u V_N identities, the fine queries see the context and only themselves (Fig. 3b), the generator's
samples reach the main model's input, and the mlm-ngram recipe trains and reloads."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import ModernBertConfig, ModernBertForMaskedLM

from masklab.cli import main
from masklab.compare.flops import flops_per_step
from masklab.corrupt import keyed
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.ngram import ErnieGram
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

V, MASK, PAD = 700, 3, 0
INFO = TokenInfo(vocab_size=V, mask_id=MASK, pad_id=PAD, eos_id=2, bos_id=1, special_ids=(0, 1, 2, 3),
                 never_mask=(0, 1, 3))  # fmt: skip


@pytest.fixture(scope="module")
def data():
    """Random rows with planted collocations ("7 8 9", "20 21"), a few padded, and their lexicon."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 600, (64, 40), generator=g)
    ids[:, 5:8] = torch.tensor([7, 8, 9])
    ids[::2, 20:22] = torch.tensor([20, 21])
    ids[:6, -5:] = PAD
    lex = NgramLexicon.build(ids, V, size=4, min_count=5, special_ids=INFO.special_ids)
    return ids, keyed.example_keys(0, 0, torch.arange(64)), lex


class Toy(nn.Module):
    """A 'masked LM' without attention: logits = decoder(embedding(token)), so every logit is a fixed function of
    its own input token. Records what it was given."""

    def __init__(self, hidden=8):
        super().__init__()
        self.config = SimpleNamespace(_attn_implementation="sdpa", layer_types=None)
        self.emb, self.decoder = nn.Embedding(V, hidden), nn.Linear(hidden, V)
        self.seen = {}

    def get_input_embeddings(self):
        return self.emb

    def get_output_embeddings(self):
        return self.decoder

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None):
        self.seen = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         inputs_embeds=inputs_embeds)  # fmt: skip
        return self.decoder(self.emb(input_ids) if inputs_embeds is None else inputs_embeds)


def _objective(model, lex, **kw):
    torch.manual_seed(0)
    o = ErnieGram(model, INFO, prob=0.3, max_predictions=kw.pop("max_predictions", 20), **kw)
    o.seq_len = 40
    o.set_lexicon(lex)
    return o


def _collapsed(ids, keys, lex, P=20):
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=INFO.special_ids, prob=0.3, collapse=True, pad_id=PAD)
    return ngram_mask(ids, keys, lex, max_tokens=P, length=ids.shape[1], **kw)


def test_explicit_input_has_one_mask_per_ngram_and_fine_queries_per_token(data):
    ids, keys, lex = data
    toy = Toy()
    _objective(toy, lex)(ids, keys)
    L = ids.shape[1]
    seen, c = toy.seen, _collapsed(ids, keys, lex)
    context, fine = seen["input_ids"][:, :L], seen["input_ids"][:, L:]
    first = c.fine_targets[..., 0] != -100  # the first token of every masked unit, in the collapsed rows
    n_tokens = (c.fine_targets != -100).sum(-1)
    assert (n_tokens[first] >= 2).sum() > 20  # n-grams were masked, not only single tokens
    assert torch.equal(context == MASK, first)  # ONE [MASK] per n-gram, and only there
    assert torch.equal(context[~first], c.inputs[~first])
    for r in range(len(ids)):  # the explicit row is the original with each masked n-gram replaced by one [MASK]
        rebuilt = []
        for j in range(int(c.attention_mask[r].sum())):
            rebuilt += c.fine_targets[r, j][: n_tokens[r, j]].tolist() if first[r, j] else [int(context[r, j])]
        assert rebuilt == ids[r][ids[r] != PAD].tolist()
        # fine queries: one [MASK] per token of each masked n-gram, at that token's original position
        want = [int(c.source[r, j]) + k for j in first[r].nonzero().flatten().tolist() for k in range(n_tokens[r, j])]
        got = seen["position_ids"][r, L:][fine[r] == MASK].tolist()
        assert got == want and (fine[r] != MASK).sum() == fine.shape[1] - len(want)
        # context tokens keep their original positions
        real = int(c.attention_mask[r].sum())
        assert seen["position_ids"][r, :real].tolist() == c.source[r, :real].tolist()


def test_coarse_loss_is_cross_entropy_over_tokens_and_lexicon_ids(data):
    """Explicit mode (Eq. 4) on a fixed-logit toy: every [MASK] slot gets the logits [decoder(e) | V_N head(e)],
    e the [MASK] embedding; the loss is the mean CE against the unit's identity: its token for a single token,
    V + lexicon id for an n-gram."""
    ids, keys, lex = data
    toy = Toy()
    o = _objective(toy, lex, mode="explicit")
    loss, metrics = o(ids, keys)
    c = _collapsed(ids, keys, lex)
    first = c.fine_targets[..., 0] != -100
    identity = torch.where(c.ngram_targets >= 0, V + c.ngram_targets, c.targets)[first]  # (units,)
    assert (identity >= V).sum() > 20 and (identity < V).sum() > 20
    e = toy.emb.weight[MASK]
    union = torch.cat([toy.decoder(e), o.heads["ngram"](e)])  # (V + |V_N|,)
    want = -torch.log_softmax(union, 0)[identity].mean()
    assert torch.allclose(loss, want, atol=1e-6) and torch.allclose(metrics["coarse_ce"], want, atol=1e-6)


def _micro(sliding: bool) -> ModernBertForMaskedLM:
    cfg = ModernBertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64, pad_token_id=PAD,
                           global_attn_every_n_layers=2 if sliding else 1, local_attention=8)  # fmt: skip
    torch.manual_seed(0)
    return ModernBertForMaskedLM._from_config(cfg, attn_implementation="sdpa").eval()


@pytest.mark.parametrize("sliding", [False, True])
def test_two_streams_never_see_each_other(data, sliding):
    """Fig. 3b: context tokens see only the context, a fine query the context and itself. Changing the fine
    queries leaves every context output as it was; changing one fine query leaves the others; a context token
    reaches the fine queries; context padding reaches nobody."""
    ids, keys, lex = data
    model = _micro(sliding)
    o = _objective(model, lex)
    B, L, Fq = 4, 12, 5
    context = ids[:B, :L].clone()
    lengths = torch.tensor([12, 12, 9, 7])
    context[torch.arange(L) >= lengths[:, None]] = PAD
    fine = torch.full((B, Fq), MASK)
    pos = torch.cat([torch.arange(L).expand(B, L), torch.tensor([[2, 3, 4, 9, 10]]).expand(B, Fq)], 1)

    def run(ctx, fq, p=pos):
        with torch.no_grad():
            return o._forward(model, torch.cat([ctx, fq], 1), p, lengths)[0]

    def moved(a, b):
        return float((a - b).abs().max()) > 1e-4

    base = run(context, fine)
    other = run(context, torch.randint(100, 600, (B, Fq)), torch.cat([pos[:, :L], torch.randint(0, L, (B, Fq))], 1))
    assert torch.allclose(base[:, :L], other[:, :L], atol=1e-6)
    one = fine.clone()
    one[:, 0] = 123
    changed = run(context, one)
    assert torch.allclose(base[:, L + 1 :], changed[:, L + 1 :], atol=1e-6)
    assert moved(base[:, L], changed[:, L])
    ctx2 = context.clone()
    ctx2[:, 1] = 321
    assert moved(base[:, L:], run(ctx2, fine)[:, L:])
    padded = context.clone()
    padded[torch.arange(L) >= lengths[:, None]] = 555
    again = run(padded, fine)
    real = torch.arange(L) < lengths[:, None]
    assert torch.allclose(base[:, :L][real], again[:, :L][real], atol=1e-6)
    assert torch.allclose(base[:, L:], again[:, L:], atol=1e-6)


def test_generator_samples_replace_the_masks_and_label_rtd(data):
    """Enhanced relation modelling (Fig. 4): the generator's sample fills each [MASK] of the main input; a
    sampled n-gram is embedded by its row of the V_N head; RTD labels are 1 where the sample differs from the
    original identity."""
    ids, keys, lex = data
    main_toy, gen_toy = Toy(), Toy()
    o = _objective(main_toy, lex, generator=gen_toy)
    j = next(i for i, t in enumerate(lex.tokens.tolist()) if t == [7, 8, 9])  # the planted trigram's lexicon id
    with torch.no_grad():  # the generator puts all its mass on that trigram
        gen_toy.decoder.weight.zero_()
        gen_toy.decoder.bias.zero_()
        o.heads["gen_ngram"].weight.zero_()
        o.heads["gen_ngram"].bias.zero_()
        o.heads["gen_ngram"].bias[j] = 100.0
    loss, metrics = o(ids, keys)
    c = _collapsed(ids, keys, lex)
    L = ids.shape[1]
    first = c.fine_targets[..., 0] != -100
    embeds = main_toy.seen["inputs_embeds"][:, :L]
    assert torch.equal(embeds[first], o.heads["ngram"].weight[j].expand(int(first.sum()), -1))
    assert torch.equal(embeds[~first], main_toy.emb(c.inputs)[~first])
    identity = torch.where(c.ngram_targets >= 0, V + c.ngram_targets, c.targets)
    replaced = (first & (identity != V + j)).float()
    real = c.attention_mask.bool()
    rtd_logit = o.heads["rtd"](embeds)[..., 0]  # the toy's features are its input embeddings
    want = F.binary_cross_entropy_with_logits(rtd_logit[real], replaced[real])
    assert torch.allclose(metrics["rtd_loss"], want, atol=1e-6)
    assert 0 < float(metrics["replaced_frac"]) < 1  # where "7 8 9" itself was masked, nothing was replaced


@pytest.mark.parametrize("extra", [["generator=true"], ["ngram_mode=explicit"]])
def test_flop_groups_match_the_flop_counter(extra, small_corpus, one_thread):
    small = ["preset=micro", "batch_size=4", f"data={small_corpus}", "tokenizer=bytes", "seq_len=64"]
    r = apply_overrides(get_recipe("mlm-ngram"), [*small, "lexicon_min_count=2", *extra])
    task = r.build()
    x = task.train[:4]
    with FlopCounterMode(display=False) as counter:
        loss, _ = task.objective(x, keyed.example_keys(0, 0, torch.arange(4)))
        loss.backward()
    assert abs(flops_per_step(r, task) / counter.get_total_flops() - 1) <= 0.10


def test_recipe_trains_and_reloads(small_corpus, tmp_path):
    """A few steps of the generator variant through the CLI (the default is trained in test_token_recipes); the
    checkpoint's heads and generator reload to the same held-out numbers."""
    extra = ["generator=true", "ngram_mode=explicit", "lexicon_score=pmi"]
    out = tmp_path / "run"
    fast = ["preset=micro", "tokenizer=bytes", "seq_len=16", "batch_size=4", "steps=3", "warmup=1", "eval_every=0",
            "ckpt_every=0", "eval_batches=1", "log_every=1", "lexicon_min_count=2"]  # fmt: skip
    args = ["train", "--recipe", "mlm-ngram", "--data", str(small_corpus), "--out", str(out), "--no-progress"]
    assert main([*args, *fast, *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3 and summary["eval"]["ngram_share"] > 0
    assert all(v == v for v in summary["eval"].values())  # finite
    from masklab.train.evaluate import evaluate_checkpoint

    again = evaluate_checkpoint(out, batches=1, device="cpu")  # the heads (and generator) reload exactly
    assert again["coarse_ce"] == pytest.approx(summary["eval"]["coarse_ce"], rel=1e-5)


def test_recipe_refuses_bad_options():
    r = get_recipe("mlm-ngram")
    assert (r.ngram_mode, r.lexicon_score, r.generator) == ("comprehensive", "tstat", False)  # the paper's method
    for bad, match in [("ngram_mode=spans", "ngram_mode"), ("lexicon_score=chi2", "lexicon_score"),
                       ("sampling=top", "sampling")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            apply_overrides(r, [bad])
    with pytest.raises(ValueError, match="generator"):
        apply_overrides(r, ["generator=true", "ngram_mode=contiguous"])
