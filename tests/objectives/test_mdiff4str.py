"""MDiff4STR's losses against a transcription of OpenOCR's ``MDiffDecoder.forward_train``, the decoder's
attention (bidirectional for MDiff4STR, causal for the autoregressive reader), reading with every decoder, and a
checkpoint round trip."""

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import mdiff4str_noise
from masklab.data.digit_strings import CLASSES, EOS, MASK, PAD, VOCAB, DigitStrings
from masklab.models.scene_text import decode, encode, scene_text_model
from masklab.objectives.mdiff4str import ARReader, MDiff4STR
from masklab.sample.str_decoders import STR_DECODER

WORLD = DigitStrings(max_len=4, min_len=2, lexicon=0, jitter=4)


def small(cls=MDiff4STR, **kw):
    torch.manual_seed(0)
    model = scene_text_model(WORLD.image_shape, WORLD.length, VOCAB, pad_id=PAD, dim=16, encoder_layers=1,
                             decoder_layers=1, heads=2)  # fmt: skip
    return cls(model, WORLD, **kw)


def batch(n=12, seed=0):
    return WORLD.pack(*WORLD.sample(n, "train", seed=seed))


def test_losses_are_openocr_forward_train(one_thread):
    """loss = sum(CE[masked] / p_mask / (length + 1)) / B + mean CE of the reflect input over the label (OpenOCR's
    ignore_index is <pad>, the last id; rec_loss_weight = reflect_loss_weight = 1)."""
    obj = small()
    rows, keys = batch(), keyed.example_keys(0, 0, range(12))
    loss, metrics = obj(rows, keys)
    pixels, labels = WORLD.unpack(rows)
    c = mdiff4str_noise(labels, keys, mask_id=MASK, vocab_size=VOCAB, special_ids=(PAD,), pad_id=PAD)
    memory = encode(obj.model, pixels)
    B, L = labels.shape
    length = (labels != PAD).sum(1)  # the characters and the EOS: OpenOCR's data['length']
    p_mask = c.p_mask[:, None].repeat(1, L)
    noisy_data_length = (length + 1)[:, None].repeat(1, L)
    logits = decode(obj.model, c.inputs, memory)[..., :CLASSES]
    m = c.mask
    token_loss = F.cross_entropy(logits[m], labels[m], reduction="none", ignore_index=PAD) / p_mask[m]
    denoise = torch.sum(token_loss / noisy_data_length[m]) / B
    reflect_logits = decode(obj.model, c.reflect.inputs, memory)[..., :CLASSES]
    reflect = F.cross_entropy(reflect_logits.flatten(0, 1), labels.flatten(0, 1), ignore_index=PAD)
    assert torch.allclose(metrics["denoise"], denoise) and torch.allclose(metrics["reflect"], reflect)
    assert torch.allclose(loss, denoise + reflect)
    mdm = small(strategies=("random",), reflect_weight=0.0)
    loss, metrics = mdm(rows, keys)
    assert "reflect" not in metrics and mdm.passes == 1 and torch.allclose(loss, metrics["denoise"])


def test_mdiff4str_decoder_is_bidirectional_and_the_ar_reader_causal(one_thread):
    rows = batch(4)
    pixels, labels = WORLD.unpack(rows)
    for obj, causal in ((small(), False), (small(ARReader), True)):
        memory = encode(obj.model, pixels)
        other = labels.clone()
        other[:, -1] = (other[:, -1] + 1) % CLASSES
        a, b = obj.logits(labels, memory), obj.logits(other, memory)
        assert torch.allclose(a[:, :-1], b[:, :-1]) == causal  # earlier positions see the last one iff bidirectional


def test_ar_reader_greedy_reads_its_own_teacher_forced_argmax(one_thread):
    """Greedy reading is consistent with training's teacher forcing: fed [start, its own reading], the causal
    decoder's argmax at every read position is the reading."""
    obj = small(ARReader).eval()
    pixels, _ = WORLD.unpack(batch(6))
    out = obj.recognize(pixels)
    ids = out.ids
    inputs = torch.cat([torch.full_like(ids[:, :1], MASK), ids[:, :-1]], dim=1)
    again = obj.logits(inputs, encode(obj.model, pixels)).argmax(-1)
    for row, n in zip(range(6), ((ids == EOS).float().argmax(1) + 1).tolist(), strict=True):
        upto = n if (ids[row] == EOS).any() else WORLD.length
        assert torch.equal(again[row, :upto], ids[row, :upto])


def test_every_decoder_reads_and_a_checkpoint_round_trips(tmp_path, one_thread):
    obj = small(steps=2)
    pixels, _ = WORLD.unpack(batch(5))
    for name in STR_DECODER.names():
        out = obj.recognize(pixels, decoder=name, keys=keyed.eval_keys(0, torch.arange(5)))
        assert out.probs.shape == (5, WORLD.length, CLASSES) and out.passes >= 1
        assert torch.allclose(out.probs.sum(-1), torch.ones(5, WORLD.length))
    valid = batch(16, seed=9)
    before = obj.evaluate(valid)
    assert 0.0 <= before["word_acc"] <= 1.0
    obj.save_model(tmp_path)
    again = small(steps=2)
    again.load_model(tmp_path)
    assert again.evaluate(valid) == before
