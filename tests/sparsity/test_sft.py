"""LT-SFT sparse differences: bit-exact compose/apply/revert, file round trip, the two-phase recipe, the L1 pull
towards theta_0 and the iterations of cambridgeltl/composable-sft (src/sft/lt_sft.py, src/sft/trainer.py)."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from masklab.sparsity.sft import SparseDiff, apply_, compose, diff_between, lt_sft, topk_changed


def _model(seed=0):
    torch.manual_seed(seed)  # parameter init only; masks and diffs below use their own generators
    return nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3))


def _random_diff(model, k, seed):
    g = torch.Generator().manual_seed(seed)
    d = SparseDiff()
    for name, p in model.named_parameters():
        idx = torch.randperm(p.numel(), generator=g)[:k].sort().values
        d.indices[name], d.values[name] = idx, torch.randn(idx.numel(), generator=g) * 1e-2
        d.shapes[name] = tuple(p.shape)
    return d


def _state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _bits_equal(a, b):
    return all(torch.equal(a[n].view(torch.int32), b[n].view(torch.int32)) for n in a)


def test_compose_apply_then_revert_restores_weights_bit_for_bit():
    model = _model()
    before = _state(model)
    d1, d2, d3 = (_random_diff(model, 15, s) for s in (1, 2, 3))  # overlapping entries
    handle = apply_(model, compose(d1, d2, d3))
    assert not _bits_equal(before, _state(model))
    handle.revert()
    assert _bits_equal(before, _state(model))


def test_plain_subtraction_would_not_be_exact_but_handles_are():
    # why apply_ keeps an undo record: (w + v) - v != w in floating point
    w, v = torch.tensor([0.1]), torch.tensor([1e8 / 3])
    assert not torch.equal((w + v) - v, w)
    model = _model(1)
    before = _state(model)
    handles = [apply_(model, _random_diff(model, 30, s), alpha=1e3) for s in (4, 5)]
    for h in reversed(handles):
        h.revert()
    assert _bits_equal(before, _state(model))


def test_compose_equals_sequential_application():
    a, b = _model(2), _model(2)
    d1, d2 = _random_diff(a, 20, 6), _random_diff(a, 20, 7)
    apply_(a, compose(d1, d2))
    apply_(b, d1)
    apply_(b, d2)
    for n, p in a.named_parameters():
        assert torch.allclose(p, dict(b.named_parameters())[n], atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = _model()
    d = _random_diff(model, 7, 8)
    d.save(tmp_path / "d.safetensors")
    e = SparseDiff.load(tmp_path / "d.safetensors")
    assert e.shapes == d.shapes
    for n in d.indices:
        assert torch.equal(e.indices[n], d.indices[n]) and torch.equal(e.values[n], d.values[n])
        assert e.indices[n].dtype == torch.int64


def test_topk_changed_selects_globally_largest_changes():
    before = {"a": torch.zeros(4), "b": torch.zeros(2, 2)}
    after = {"a": torch.tensor([0.1, -5.0, 0.2, 0.0]), "b": torch.tensor([[3.0, 0.0], [0.0, -0.3]])}
    masks = topk_changed(before, after, 3)
    assert masks["a"].tolist() == [False, True, False, False]
    assert masks["b"].tolist() == [[True, False], [False, True]]
    d = diff_between(before, after, masks)
    assert d.indices["a"].tolist() == [1] and torch.equal(d.values["b"], torch.tensor([3.0, -0.3]))


def test_lt_sft_trains_exactly_k_entries_and_leaves_the_model_at_theta0():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 10, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    batches = [(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = _model(3)
    before = _state(model)

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    d = lt_sft(model, loss_fn, batches, k=40, steps_full=20, steps_sparse=20, lr=1e-2)
    assert d.nnz == 40
    assert _bits_equal(before, _state(model))
    with torch.no_grad():
        base = sum(float(loss_fn(model, b)) for b in batches)
    h = apply_(model, d)
    with torch.no_grad():
        assert sum(float(loss_fn(model, b)) for b in batches) < base
    changed = sum(int((p != before[n]).sum()) for n, p in model.named_parameters())
    assert changed <= 40
    h.revert()
    assert _bits_equal(before, _state(model))


class _Vector(nn.Module):
    """A model that is one parameter vector theta (theta_0 = 0)."""

    def __init__(self, n):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n))


def test_l1_pull_gives_the_soft_thresholded_optimum():
    # L = 1/2 ||theta - c||^2 + lambda / N * sum |theta - theta_0|: the minimiser is the soft threshold
    # sign(c) * max(|c| - lambda / N, 0), here lambda / N = 1.2 / 6 = 0.2 (N counts every model parameter)
    c = torch.tensor([1.0, -0.5, 0.1, -0.15, 0.3, 0.0])

    def loss_fn(m, batch):
        return 0.5 * (m.theta - c).pow(2).sum()

    for l1, want in ((1.2, (c.abs() - 0.2).clamp_min(0) * c.sign()), (0.0, c)):
        d = lt_sft(_Vector(6), loss_fn, [None], k=6, steps_full=400, lr=1e-2, l1=l1)
        assert torch.allclose(d.values["theta"], want, atol=0.02), (l1, d.values["theta"])


def test_iterations_grow_the_ticket_from_the_previous_sparse_fit():
    # L = 1/2 (a + b - 1)^2 + 1/2 (c - 0.3)^2 from theta_0 = 0, k = 2. One shot: phase 1 moves a and b to 0.5 and
    # c to 0.3, so the ticket is {a, b} and c is never fitted. Two iterations of k = 1: the first fits a (or b)
    # alone to 1; the second full fine-tune starts from that fit, so a + b = 1 already holds, only c moves and
    # joins the ticket: the loss reaches 0 (reference lt_sft.py: phase 1 of each iteration starts from
    # previous_params, and already selected entries are excluded).
    def loss_fn(m, batch):
        a, b, c = m.theta
        return 0.5 * (a + b - 1) ** 2 + 0.5 * (c - 0.3) ** 2

    final = {}
    for iterations in (1, 2):
        model = _Vector(3)
        d = lt_sft(model, loss_fn, [None], k=2, steps_full=200, lr=0.05, iterations=iterations)
        assert d.nnz == 2
        apply_(model, d)
        with torch.no_grad():
            final[iterations] = (set(d.indices["theta"].tolist()), float(loss_fn(model, None)))
    assert final[1][0] == {0, 1} and final[1][1] == pytest.approx(0.045, abs=1e-4)
    assert 2 in final[2][0] and len(final[2][0] & {0, 1}) == 1 and final[2][1] < 1e-6


def test_topk_changed_never_picks_excluded_entries():
    before = {"a": torch.zeros(5)}
    after = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])}
    masks = topk_changed(before, after, 2, exclude={"a": torch.tensor([True, False, True, False, False])})
    assert masks["a"].tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="k must be in"):
        topk_changed(before, after, 4, exclude={"a": torch.tensor([True, False, True, False, False])})


def test_bad_inputs_raise(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="k must be in"):
        topk_changed({"a": torch.zeros(3)}, {"a": torch.ones(3)}, 4)
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        lt_sft(model, lambda m, b: m(b).sum(), [torch.ones(1, 10)], k=1, filter=lambda n, p: False)
    with pytest.raises(ValueError, match="iterations must be"):
        lt_sft(model, lambda m, b: m(b).sum(), [torch.ones(1, 10)], k=1, iterations=0)
    bad = SparseDiff({"nope.weight": torch.tensor([0])}, {"nope.weight": torch.tensor([1.0])}, {"nope.weight": (1,)})
    with pytest.raises(ValueError, match="nope.weight"):
        apply_(model, bad)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a masklab sparse diff"):
        SparseDiff.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        SparseDiff.load(tmp_path / "missing.safetensors")
