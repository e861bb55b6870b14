"""The RAMP reader: span exact match against a per-slot loop, the loss falls on a toy where the answer is in the
passage, and the recipe refuses bad settings."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data import ramp as R
from masklab.data.tokenizers import build_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.masksearch import RAMPReader, span_hits
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides


@st.composite
def slotted_rows(draw, slot=3, max_spans=4, length=20):
    """(pred, labels): rows with 0..max_spans slots of ``slot`` labelled tokens at random places."""
    rows_p, rows_l = [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, max_spans))
        starts = sorted(draw(st.lists(st.integers(0, length // slot - 1), min_size=n, max_size=n, unique=True)))
        labels = torch.full((length,), -100)
        for s in starts:
            labels[s * slot : (s + 1) * slot] = torch.tensor(
                draw(st.lists(st.integers(0, 2), min_size=slot, max_size=slot))
            )
        rows_l.append(labels)
        rows_p.append(torch.tensor(draw(st.lists(st.integers(0, 2), min_size=length, max_size=length))))
    return torch.stack(rows_p), torch.stack(rows_l)


@settings(max_examples=50, deadline=None)
@given(slotted_rows())
def test_span_hits_match_a_slot_by_slot_loop(case):
    pred, labels = case
    hits, spans = span_hits(pred, labels, slot=3, max_spans=4)
    for i in range(len(labels)):
        at = (labels[i] != -100).nonzero().flatten().tolist()
        slots = [at[j : j + 3] for j in range(0, len(at), 3)]
        expect = [all(pred[i, p] == labels[i, p] for p in s) for s in slots]
        assert spans[i] == len(slots) and hits[i].tolist() == expect + [False] * (4 - len(slots))


def test_span_hits_refuse_partial_slots():
    labels = torch.full((1, 8), -100)
    labels[0, :4] = 1
    with pytest.raises(ValueError, match="whole slots"):
        span_hits(labels.clamp(min=0), labels, slot=3, max_spans=2)


def test_training_lowers_the_loss_on_a_toy(one_thread):
    """A toy where the passage spells the answer: 40 Adam steps of a micro reader lower the slot loss."""
    tok = build_tokenizer("bytes")
    info = token_info(tok)
    words = ["alpha_1", "beta_22", "gamma_3", "delta_4", "eps_55", "zeta_6", "eta_77", "theta_8"]
    examples = [R.RampExample(f"Set {w} now.", f"Set {R.MASK} now.", (w,), ("identifier",), "t.py") for w in words]
    rows = R.encode_reader(tok, examples, [f"x = {w}" for w in words], 48, slot=8)
    torch.manual_seed(0)
    reader = RAMPReader(build_model("modernbert", "micro", info, 48), info.pad_id, 8, max_spans=1)
    opt = torch.optim.AdamW(reader.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, metrics = reader(rows, None)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first and set(metrics) == {"span_em", "example_em"}


@pytest.mark.parametrize(
    "bad, msg",
    [("retrieval=google", "retrieval must be"), ("slot=0", "slot must be"), ("arch=llama", "modernbert"),
     ("max_spans=0", "max_spans must be")],
)  # fmt: skip
def test_recipe_refuses_bad_settings(bad, msg):
    with pytest.raises(ValueError, match=msg):
        apply_overrides(get_recipe("masksearch-mini"), [bad])
