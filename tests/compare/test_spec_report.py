"""RUN and budget grammar, spec files, and the statistics behind table.md (against scipy's own intervals/tests)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from masklab.compare.report import mean_ci, mean_ci_text, paired, verdicts, write_table
from masklab.compare.spec import load_spec, parse_budget, parse_run

KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
VALUE = st.from_regex(r"[A-Za-z0-9.+-]{1,6}(,[a-z_]{1,4})?", fullmatch=True)


@given(st.from_regex(r"[a-z][a-z-]{0,8}", fullmatch=True), st.lists(st.tuples(KEY, VALUE), max_size=4))
def test_run_text_round_trips(recipe, pairs):
    """recipe:key=value,... splits on the commas that start a key=, so a value may hold commas (q_proj,v_proj)."""
    text = recipe + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    run = parse_run(text)
    assert (run.label, run.recipe, run.overrides) == (text, recipe, tuple(f"{k}={v}" for k, v in pairs))


@pytest.mark.parametrize("bad", ["tokens", "steps=10", "tokens=abc", "tokens=0", "flops=-1", "=5"])
def test_bad_budgets_are_one_error(bad):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(bad)


def test_spec_file_holds_the_same_fields(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('budget = "flops=1e12"\nseeds = 2\nprobes = ["keyword"]\nset = ["preset=micro"]\n'
                 '[[run]]\nrecipe = "mlm"\n[[run]]\nrecipe = "electra"\nset = { sharing = "gdes" }\n')  # fmt: skip
    c = load_spec(f)
    assert [r.label for r in c.runs] == ["mlm", "electra:sharing=gdes"]
    assert (str(c.budget), c.seeds, c.probes, c.shared) == ("flops=1e+12", 2, ("keyword",), ("preset=micro",))


MALFORMED = [
    'budget = "tokens=10"',
    '[[run]]\nrecipe = "mlm"',
    'budget = "tokens=10"\nrun = 3',
    "budget = [",
    'budget = "tokens=10"\nsteps = 3\n[[run]]\nrecipe = "mlm"',
    'budget = "tokens=10"\n[[run]]\nrecipe = "mlm"\ncolour = 1',
    'budget = "tokens=10"\nseeds = 0\n[[run]]\nrecipe = "mlm"',
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_specs_are_one_error(tmp_path, text):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match="spec"):
        load_spec(f)


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=8))
def test_mean_ci_is_students_t_interval(values):
    mean, half = mean_ci(values)
    if np.std(values) == 0:
        assert half == 0 or math.isclose(half, 0, abs_tol=1e-9)
        return
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert math.isclose(mean - half, lo, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(mean + half, hi, rel_tol=1e-6, abs_tol=1e-6)


def test_mean_ci_text_prints_the_t_interval_scaled_and_the_mean_alone_for_one_value():
    values = [0.1, 0.2, 0.4]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert mean_ci_text(values, 1, 100) == f"{100 * np.mean(values):.1f} ± {100 * (hi - lo) / 2:.1f}"
    assert mean_ci_text([0.25]) == "0.250"


def test_paired_test_is_scipys_and_one_seed_has_no_ci():
    a, b = [60.0, 62.0, 58.0], [64.0, 65.0, 63.5]
    d, half, p = paired(a, b)
    assert math.isclose(d, np.mean(np.subtract(b, a)))
    assert math.isclose(p, stats.ttest_rel(b, a).pvalue)
    assert math.isnan(paired([1.0], [2.0])[1])


def _records(metric, a, b):
    base = {"steps": 1, "tokens": 1, "flops": 1.0, "train_seconds": 1.0}
    runs = (("mlm", a), ("electra", b))
    return [{"run": name, "seed": s, **base, "metrics": {metric: v}} for name, vals in runs for s, v in enumerate(vals)]


def test_verdicts_respect_the_metrics_direction():
    better_acc = verdicts(_records("keyword_acc", [40, 42, 41], [50, 53, 51]), ["keyword"])
    assert better_acc[0].startswith("electra > mlm on keyword_acc by 10.33")
    lower_nll = verdicts(_records("nll_bits", [9.0, 9.2, 9.1], [8.0, 8.1, 8.2]), ["nll"])
    assert lower_nll[0].startswith("electra > mlm on nll_bits")  # lower NLL is the better one
    worse_nll = verdicts(_records("nll_bits", [8.0, 8.1, 8.2], [9.0, 9.2, 9.1]), ["nll"])
    assert worse_nll[0].startswith("mlm > electra on nll_bits")
    tie = verdicts(_records("keyword_acc", [40, 50, 45], [45, 44, 47]), ["keyword"])
    assert "≈" in tie[0] and "includes 0" in tie[0]


def test_table_bolds_the_best_mean_by_direction(tmp_path):
    text = write_table(_records("nll_bits", [9.0, 9.2, 9.1], [8.0, 8.1, 8.2]), ["nll"], tmp_path / "t.md", "tokens=1")
    rows = [r for r in text.splitlines() if r.startswith("| `")]
    assert "**" in rows[1] and "**" not in rows[0]


def test_flops_are_written_in_a_readable_unit():
    from masklab.compare.report import flop_unit

    assert flop_unit(4.5e11) == ("GFLOPs", 1e9) and flop_unit(2e12) == ("TFLOPs", 1e12)
    assert flop_unit(3e15) == ("PFLOPs", 1e15)
