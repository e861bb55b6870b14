"""The spec grammar reads every factory's name back, and layer-wise specs assign each layer once."""

import pytest
import torch

from masklab.attention import mods as M
from masklab.attention.compile import to_dense
from masklab.attention.spec import FACTORIES, parse, parse_layers, parse_layerwise

EXAMPLES = {
    "causal": M.causal(),
    "sliding_window:4": M.sliding_window(4),
    "document:3,5,8": M.document([3, 5, 8]),
    "causal&sliding_window:8": M.and_masks(M.causal(), M.sliding_window(8)),
    "causal&(sliding_window:4|sinks:2)": M.and_masks(M.causal(), M.or_masks(M.sliding_window(4), M.sinks(2))),
    "sliding_window:4|sinks:2&causal": M.or_masks(M.sliding_window(4), M.and_masks(M.sinks(2), M.causal())),
    "~causal": M.not_mask(M.causal()),
    "dilated_sliding_window:3,2": M.dilated_sliding_window(3, 2),
    "document:8,8&causal": M.and_masks(M.document([8, 8]), M.causal()),
    "bidir:10,16": M.bidirectional([10, 16]),
}


@pytest.mark.parametrize("spec", sorted(EXAMPLES))
def test_spec_builds_the_same_mask_and_name_round_trips(spec):
    want = EXAMPLES[spec]
    got = parse(spec)
    n = want.seq_len or 16
    assert torch.equal(to_dense(got, n, n), to_dense(want, n, n))
    again = parse(got.__name__)  # names are specs too
    assert again.__name__ == got.__name__
    assert torch.equal(to_dense(again, n, n), to_dense(want, n, n))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_registered_factory_parses(name):
    args = {
        "dilated_sliding_window": ":3,2",
        "padding": ":4,6",
        "document": ":4,6",
        "causal_document": ":4,6",
    }
    one = {"prefix_lm", "sliding_window", "local_window", "sinks", "block_causal"}
    spec = name + args.get(name, ":3" if name in one else "")
    fn = parse(spec)
    assert parse(fn.__name__).__name__ == fn.__name__


def test_layerwise_grammar():
    plan = parse_layerwise("layerwise:bidir=0-1,causal=2-3")
    assert list(plan) == [0, 1, 2, 3]
    assert [f.__name__ for f in plan.values()] == ["full", "full", "causal", "causal"]
    plan = parse_layerwise("layerwise:bidir=0,2,causal=1,3")
    assert [plan[i].__name__ for i in range(4)] == ["full", "causal", "full", "causal"]
    plan = parse_layerwise("layerwise:document:4,4=0;causal&sliding_window:2=1-2")
    assert plan[0].__name__ == "document_4_4" and plan[2].__name__ == "causal&sliding_window_2"
    assert parse_layers("0-2,5") == [0, 1, 2, 5]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sliding_window:-4", "-4"),
        ("nope", "unknown mask 'nope'"),
        ("causal&", "expected a mask name"),
        ("causal)", "trailing"),
        ("(causal", "expected"),
        ("document", "needs a list"),
        ("causal:3", "takes no arguments"),
        ("", "non-empty"),
        ("layerwise:causal=0", "layer-wise"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        parse(spec)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("layerwise:causal=0-1,bidir=1", "layer 1 assigned twice"),
        ("layerwise:causal=2-1", "end before start"),
        ("layerwise:causal", "MASK=LAYERS"),
        ("causal", "must start with"),
    ],
)
def test_bad_layerwise_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layerwise(spec)
