"""Issue 14.4: for the same (seed, epoch, example index) the collator path (``masklab.collate``, as
``transformers.Trainer`` uses it) and the objective path (``masklab.objectives``, as masklab's loop uses it) give
identical inputs and masks, for every registered token strategy."""

import pytest
import torch
from torch import nn

from masklab.collate import MDMCollator, MEAPCollator, MLMCollator, RTDCollator
from masklab.corrupt import keyed
from masklab.corrupt.ngram import NgramLexicon
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.objectives.electra import ELECTRA
from masklab.objectives.mdm import MDM
from masklab.objectives.meap import MEAP
from masklab.objectives.mlm import MLM, CorruptionMLM

TOK = byte_tokenizer()
INFO = token_info(TOK)
TEXTS = [f" the cat number {i} sat on the mat, unbelievably quietly, again and again" for i in range(6)]
# each row ends with EOS, as the training stream does: one never-mask rule must decide for both paths
IDS = [TOK(t, add_special_tokens=False)["input_ids"][:23] + [INFO.eos_id] for t in TEXTS] * 2
SEED, EPOCH = 3, 2


class Recorder(nn.Module):
    """A stand-in model: records the ids it is given and returns logits [B, L, V]."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(INFO.vocab_size, 8)
        self.head = nn.Linear(8, INFO.vocab_size)
        self.seen: list[torch.Tensor] = []

    def get_input_embeddings(self):
        return self.emb

    def forward(self, input_ids):
        self.seen.append(input_ids.clone())
        return self.head(self.emb(input_ids))


def lexicon():
    return NgramLexicon.build(IDS, INFO.vocab_size, size=20, min_count=2, special_ids=INFO.special_ids)


def paths(name):
    """(collator, objective, model whose first input is the corrupted batch) for a registered strategy."""
    model = Recorder()
    if name == "random":
        return MLMCollator(TOK, "random", prob=0.3, seed=SEED, epoch=EPOCH), MLM(model, INFO, prob=0.3), model
    if name in ("whole_word", "span", "ngram"):
        lex = lexicon() if name == "ngram" else None
        col = MLMCollator(TOK, name, prob=0.3, seed=SEED, epoch=EPOCH, lexicon=lex)
        obj = CorruptionMLM(model, INFO, name, prob=0.3)
        obj.lexicon = lex
        return col, obj, model
    if name == "mdm":
        return (
            MDMCollator(TOK, seed=SEED, epoch=EPOCH, t_sampling="stratified"),
            MDM(model, INFO, t_sampling="stratified"),
            model,
        )
    if name == "meap":
        return MEAPCollator(TOK, prob=0.3, seed=SEED, epoch=EPOCH), MEAP(model, INFO, prob=0.3), model
    if name == "electra":
        gen = Recorder()
        return (
            RTDCollator(TOK, prob=0.3, seed=SEED, epoch=EPOCH),
            ELECTRA(model, gen, INFO, sharing="none", prob=0.3),
            gen,
        )
    raise AssertionError(f"token strategy {name!r} has no collator-vs-objective case: add one here")


@pytest.mark.filterwarnings("ignore:strategy")
@pytest.mark.parametrize("name", TOKEN.names())
def test_collator_path_equals_objective_path(name):
    collator, objective, model = paths(name)
    idx = torch.tensor([5, 0, 17, 3, 9, 1, 2, 4, 6, 7, 8, 10])
    out = collator([{"input_ids": ids, "idx": int(i)} for ids, i in zip(IDS, idx, strict=True)])
    batch = torch.tensor(IDS)  # equal lengths: no padding, so both paths see the same rows
    keys = keyed.train_keys(SEED, EPOCH, idx)
    with torch.no_grad():
        objective(batch, keys, position=torch.arange(len(idx)), batch_size=len(idx), batch_key=keyed.batch_key(keys))
    seen = model.seen[0]
    assert torch.equal(out["input_ids"], seen), name
    changed = seen != batch
    assert changed.any(), name
    if name != "meap":  # MEAP's labels are the clean sequence
        assert ((out["labels"] != -100) | ~changed).all()


def test_every_row_has_the_same_length():
    assert len({len(x) for x in IDS}) == 1
