"""Fast-dLLM's approximate caches (Wu et al. 2025, Sec. 3.2): the layer-by-layer pass equals the model's own forward;
with one layer both caches are exact (layer 0's keys and values depend only on the tokens, which do not change outside
the block), with two they depart from the uncached logits; the first step of every block is uncached; bad input is
refused by name."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import ModernBertConfig, ModernBertForMaskedLM

from masklab.cli import main
from masklab.data.synthetic import RandomHMM
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.sample.approx_cache import BertLayers, _Window, cached_generate
from masklab.sample.generate import as_model_fn

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = token_info(byte_tokenizer())
MASK, PAD = INFO.mask_id, INFO.pad_id


def _bert(layers: int, scale: float = 10.0):
    """A random ModernBERT; ``scale`` x the usual init makes attention sharp enough for context to move the logits."""
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=INFO.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, global_attn_every_n_layers=1, pad_token_id=PAD,
        bos_token_id=INFO.bos_id, eos_token_id=INFO.eos_id, cls_token_id=INFO.bos_id, sep_token_id=INFO.eos_id,
        initializer_range=0.02 * scale,
    )  # fmt: skip
    return ModernBertForMaskedLM._from_config(config, attn_implementation="sdpa").eval()


def _prompts():
    x = torch.full((2, 32), MASK)
    x[:, :6] = torch.tensor([[70, 71, 72, 73, 74, 75], [80, 81, 82, 83, 84, 85]])
    return x


def test_layer_by_layer_pass_equals_the_models_forward():
    model = _bert(2)
    x = torch.randint(5, 200, (3, 24), generator=torch.Generator().manual_seed(1))
    x[1, 20:], x[2, 9:] = PAD, PAD  # padding stays hidden
    real = x != PAD
    ours, kv = BertLayers(model).forward(x, torch.arange(24)[None].expand(3, -1), real)
    assert (ours - as_model_fn(model, PAD)(x))[real].abs().max() < 1e-5
    assert len(kv) == 2 and kv[0][0].shape == (3, 2, 24, 16)  # (K, V) per layer: (rows, heads, positions, head dim)


BERT2 = _bert(2)


@settings(max_examples=12, deadline=None)
@given(cache=st.sampled_from(["prefix", "dual"]), lo=st.integers(0, 20), n=st.integers(1, 8), pad=st.integers(0, 3))
def test_a_cached_step_on_the_refreshed_ids_is_the_uncached_pass(cache, lo, n, pad):
    """Exact where the cache is fresh: a step that reads the cache before any token of the block changed sees the
    keys and values it would recompute, so its logits are the uncached ones, in every layer and with padding."""
    x = torch.randint(5, 200, (2, 24), generator=torch.Generator().manual_seed(lo + 31 * n))
    x[1, 24 - pad :] = PAD  # row 1 right-padded
    hi = min(lo + n, 24)
    window = _Window(BERT2, BertLayers(BERT2), x, lo, hi, cache=cache, mask_id=MASK, pad_id=PAD, departure=None)
    first = window(x[:, lo:hi])  # the refresh: the whole sequence
    again = window(x[:, lo:hi])  # read from the cache
    exact = as_model_fn(BERT2, PAD)(x)[:, lo:hi]
    real = (x != PAD)[:, lo:hi]
    assert (first - exact)[real].abs().max() < 1e-5 and (again - exact)[real].abs().max() < 1e-5


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_one_layer_caches_are_exact_two_layer_caches_depart(cache):
    x = _prompts()
    plain = cached_generate(_bert(1), x, mask_id=MASK, block_length=8, cache="none", seed=[1, 2], return_order=True)
    for layers, exact in [(1, True), (2, False)]:
        departure = []
        g = cached_generate(_bert(layers), x, mask_id=MASK, block_length=8, cache=cache, seed=[1, 2],
                            return_order=True, departure=departure)  # fmt: skip
        # every step but the first of each of the 4 blocks reads the cache (the first refreshes it)
        assert len(departure) == g.nfe - 4
        worst = max(d for d, _ in departure)
        assert (worst < 1e-5) if exact else (worst > 1e-2), (layers, worst)
        if exact:
            assert torch.equal(g.ids, plain.ids) and torch.equal(g.order, plain.order)


def test_dual_departs_at_least_as_much_as_prefix():
    """The dual cache also holds the suffix's stale keys and values: on a random two-layer model it departs no less."""
    x = _prompts()
    worst = {}
    for cache in ("prefix", "dual"):
        departure = []
        cached_generate(_bert(2), x, mask_id=MASK, block_length=8, cache=cache, seed=[1, 2], temperature=0.0,
                        departure=departure)  # fmt: skip
        worst[cache] = sum(kl for _, kl in departure)
    assert worst["dual"] >= worst["prefix"] > 0


def test_blocks_are_decoded_in_order_with_any_model_when_uncached():
    logits = torch.randn(3, 14, 8, generator=torch.Generator().manual_seed(0))
    x = torch.full((3, 14), 8)
    x[:, :2] = 1
    g = cached_generate(lambda ids: logits[: len(ids)], x, mask_id=8, block_length=4, cache="none", sampler="fhs",
                        return_order=True)  # fmt: skip
    assert not (g.ids == 8).any()
    o = g.order
    for lo in (4, 8):  # every reveal of an earlier block comes before every reveal of a later one
        assert o[:, 2:lo].max(1).values.lt(o[:, lo:].min(1).values).all()


def test_a_row_stops_at_its_eos_across_blocks():
    def model(x):  # EOS (id 3) certain at position 5; token 1 elsewhere
        out = torch.full(x.shape + (6,), -30.0)
        out[..., 1] = 0.0
        return out

    class Eos:
        def __call__(self, x):
            out = model(x)
            if x.shape[1] == 16:
                out[:, 5, 1], out[:, 5, 3] = -30.0, 0.0
            return out

    x = torch.full((1, 16), 4)
    x[:, 0] = 2
    g = cached_generate(Eos(), x, mask_id=4, block_length=4, cache="none", eos_id=3, fill_id=0, return_order=True)
    assert g.ids[0].tolist() == [2, 1, 1, 1, 1, 3] + [0] * 10
    assert g.nfe == 5  # block 0 (3 masks) and block 1 (up to the EOS); blocks 2 and 3 need no call


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"cache": "full"}, "cache must be one of"),
        ({"block_length": 0}, "block_length must be a positive int"),
        ({"cfg_scale": 1.0}, "cfg_scale"),
        ({"sampler": "nope"}, "nope"),
    ],
)
def test_bad_input_is_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        cached_generate(_bert(1), _prompts(), mask_id=MASK, **kw)


def test_a_model_without_modernbert_layers_is_refused_for_the_caches():
    hmm = RandomHMM(states=4, symbols=8, seed=0)
    with pytest.raises(ValueError, match="cache: the approximate caches run ModernBERT's layers"):
        cached_generate(hmm, torch.full((1, 8), hmm.mask_id), mask_id=hmm.mask_id, cache="dual", block_length=4)


@pytest.fixture(scope="module")
def micro_mdm(tmp_path_factory):
    out = tmp_path_factory.mktemp("approx") / "mdm"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build_model("modernbert", "micro", INFO, 32).save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_generate_approx_cache_on_the_command_line(micro_mdm, cache, capsys):
    """``masklab generate --approx-cache`` prints what :func:`cached_generate` fills in, blocks of --block-length."""
    prompt = "x = <mask:12>"
    argv = ["generate", "--model", str(micro_mdm), "--prompt", prompt, "--seed", "3", "--block-length", "4"]
    assert main([*argv, "--approx-cache", cache]) == 0
    out = capsys.readouterr().out
    tok = byte_tokenizer()
    model = ModernBertForMaskedLM.from_pretrained(micro_mdm).eval()
    x = torch.tensor([tok("x = ", add_special_tokens=False)["input_ids"] + [MASK] * 12])
    ids = cached_generate(model, x, mask_id=MASK, block_length=4, cache=cache, seed=3)
    assert out.rstrip("\n") == tok.decode(ids[0])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--approx-cache", "dual", "--cache"], "--approx-cache is for a bidirectional MDM"),
        (["--approx-cache", "prefix", "--block-length", "0"], "block_length must be a positive int, got 0"),
    ],
)
def test_generate_approx_cache_bad_input_is_one_line(micro_mdm, extra, message, capsys):
    assert main(["generate", "--model", str(micro_mdm), "--prompt", "x = <mask:3>", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("masklab: error: ") and message in err and err.count("\n") == 1
