"""DrBERT against BERT's MLM: the plain decoder is the ``mlm`` objective bit for bit, the decoder sits exactly
between the encoder and the MLM head (h + P[0..L) then the blocks), only during the objective's forward, and the
checkpoint is the plain masked LM that every probe loads."""

import pytest
import torch

from masklab.corrupt import keyed
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.drbert import DECODER_FILE, DrBERT
from masklab.objectives.mlm import MLM
from masklab.train import checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: no OpenMP spin-waits on a shared CPU

INFO = token_info(byte_tokenizer())
L = 24


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("modernbert", "micro", INFO, L)


def _batch(n=4):
    g = torch.Generator().manual_seed(1)
    return torch.randint(5, INFO.vocab_size, (n, L), generator=g), keyed.example_keys(0, 0, torch.arange(n))


def test_plain_decoder_is_the_mlm_objective_bit_for_bit():
    model = _model()
    ids, keys = _batch()
    ref_loss, ref = MLM(model, INFO)(ids, keys)
    loss, m = DrBERT(model, INFO, decoder="plain")(ids, keys)
    assert torch.equal(loss, ref_loss) and torch.equal(m["masked_acc"], ref["masked_acc"])


@pytest.mark.parametrize("decoder", ["positions", "layers", "layers+positions"])
def test_the_head_reads_the_decoder_of_the_encoder_output(decoder):
    model = _model()
    obj = DrBERT(model, INFO, decoder=decoder, decoder_layers=2, max_len=L)
    seen = {}
    model.model.register_forward_hook(lambda _, __, out: seen.update(h=out.last_hidden_state))
    model.head.register_forward_hook(lambda _, args, __: seen.update(head_in=args[0]))  # what the head computed on
    obj(*_batch())
    h = seen["h"]
    want = h + obj.decoder.positions.weight[:L] if "positions" in decoder else h  # DeBERTa EMD's H + P
    if "layers" in decoder:
        for block in obj.decoder.blocks:
            want = block(want)
        want = obj.decoder.norm(want)
    torch.testing.assert_close(seen["head_in"], want, rtol=0, atol=0)


def test_the_decoder_is_gone_outside_the_objective_forward():
    model = _model()
    ids, keys = _batch()
    before = model(input_ids=ids).logits
    obj = DrBERT(model, INFO, decoder="layers+positions", max_len=L)
    loss, _ = obj(ids, keys)
    assert torch.equal(model(input_ids=ids).logits, before)  # the saved model's own forward: no decoder
    plain_loss, _ = MLM(model, INFO)(ids, keys)
    assert not torch.isclose(loss, plain_loss)  # while training, the head reads the decoder's output
    loss.backward()
    assert all(p.grad is not None for p in obj.decoder.parameters())


def test_checkpoint_is_the_plain_masked_lm_and_resumes_the_decoder(tmp_path):
    obj = DrBERT(_model(), INFO, decoder="layers+positions", max_len=L)
    with torch.no_grad():
        for p in obj.decoder.parameters():
            p.add_(0.1)
    checkpoint.save(tmp_path / "ckpt", obj, recipe={}, step=1)
    loaded = checkpoint.load(tmp_path / "ckpt").model  # what every probe loads
    assert type(loaded).__name__ == "ModernBertForMaskedLM"
    assert not any("blocks" in k or "positions" in k for k in loaded.state_dict())
    ids, _ = _batch()
    with torch.no_grad():
        h_saved = loaded(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        h_trained = obj.model.eval()(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(h_saved, h_trained)
    again = DrBERT(_model(seed=5), INFO, decoder="layers+positions", max_len=L)
    again.load_model(tmp_path / "ckpt")
    for a, b in zip(again.decoder.state_dict().values(), obj.decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    (tmp_path / "ckpt" / DECODER_FILE).unlink()
    with pytest.raises(ValueError, match="no DrBERT decoder"):
        again.load_model(tmp_path / "ckpt")


def test_bad_arguments_are_one_line_errors():
    model = _model()
    with pytest.raises(ValueError, match="decoder must be one of"):
        DrBERT(model, INFO, decoder="deberta")
    with pytest.raises(ValueError, match="decoder_layers must be >= 1"):
        DrBERT(model, INFO, decoder="layers", decoder_layers=0)
    obj = DrBERT(model, INFO, decoder="positions", max_len=8)
    with pytest.raises(ValueError, match="longer than the decoder's 8"):
        obj(*_batch())
    with pytest.raises(ValueError, match="MLM head"):
        DrBERT(torch.nn.Linear(2, 2), INFO, decoder="plain")
