"""MEAP objective: next-token loss on the clean sequence with masked inputs; prob=0 is plain next-token LM."""

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.ar import AR
from masklab.objectives.meap import MEAP

INFO = TokenInfo(vocab_size=30, mask_id=1, pad_id=0, eos_id=2, bos_id=3, special_ids=(0, 1, 2, 3), never_mask=(0, 1, 3))


class Spy(torch.nn.Module):
    """A 'model' that records its input and returns fixed logits."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(30, 30))
        self.seen = None

    def forward(self, input_ids):
        self.seen = input_ids
        return self.w[input_ids]


def test_targets_are_clean_next_tokens_and_inputs_are_masked():
    spy = Spy()
    batch = torch.randint(4, 30, (8, 20))
    keys = keyed.example_keys(0, 0, range(8))
    loss, m = MEAP(spy, INFO, prob=0.2)(batch, keys)
    seen = spy.seen
    assert ((seen == 1).sum(1) == 4).all() and torch.equal(seen[seen != 1], batch[seen != 1])
    want = F.cross_entropy(spy.w[seen][:, :-1].flatten(0, 1), batch[:, 1:].flatten())
    assert torch.allclose(loss, want)
    clean_loss, _ = MEAP(spy, INFO, prob=0.0)(batch, keys)
    ar_loss, _ = AR(spy, INFO)(batch, keys)
    assert torch.allclose(clean_loss, ar_loss)


def test_sft_loss_is_the_mean_over_the_original_response_and_the_copy_masks():
    """MEAP-SFT: one forward over the originals and their masked copies; the loss is the mean next-token CE over
    every supervised token (HF's causal-LM loss over a batch holding both), and each step costs two rows' compute."""
    spy = Spy()
    L, B = 80, 6
    ids = torch.randint(4, 30, (B, L))
    ids[:, 0] = 3  # BOS
    prompt = torch.tensor([5, 8, 10, 3, 6, 7])
    ids[:, 70:] = 2  # EOS after the response
    batch = torch.cat([prompt[:, None], ids], 1)
    keys = keyed.example_keys(0, 0, range(B))
    obj = MEAP(spy, INFO, prob=0.1, sft=True, min_response=50)
    loss, m = obj(batch, keys)
    seen = spy.seen
    assert seen.shape == (2 * B, L) and torch.equal(seen[:B], ids)
    logp = torch.log_softmax(spy.w[seen][:, :-1], -1)  # (2B, L-1, V): position t predicts token t + 1
    terms = []
    for r in range(B):
        for t in range(prompt[r], 71):  # the original: response tokens and the EOS at 70
            terms.append(-logp[r, t - 1, ids[r, t]])
        for t in (seen[B + r] == 1).nonzero().flatten().tolist():  # the copy: its masked positions only
            terms.append(-logp[B + r, t - 1, ids[r, t]])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)
    assert int((seen[B:] == 1).sum()) == sum(max(1, int((70 - p) * 0.1)) for p in prompt.tolist())
    assert obj.flop_groups()[0][1] == 2.0 and MEAP(spy, INFO).flop_groups()[0][1] == 1.0


def test_meap_recipe_sft_option_builds_prompt_response_rows(tmp_path):
    import json

    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    pairs = [{"prompt": f"Write f{i}:\n", "response": f"def f{i}(x):\n    return x + {i}\n" * 4} for i in range(30)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs))
    base = get_recipe("meap")
    assert not base.sft and base.prob() == 0.15  # pre-training by default
    r = apply_overrides(base, ["sft=true", f"data={tmp_path / 'pairs.jsonl'}", "preset=micro", "seq_len=96"])
    task = r.build()
    assert task.objective.sft and task.objective.prob == 0.1  # MEAP-SFT's ratio
    assert task.train.shape[1] == 97 and (task.train[:, 0] > 0).all()  # prompt length, then the ids
    loss, m = task.objective(task.train[:4], keyed.example_keys(0, 0, range(4)))
    assert torch.isfinite(loss) and m["mask_frac"] > 0
