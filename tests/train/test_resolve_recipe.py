"""A resumed run takes its recipe from the checkpoint; the saved recipe is parsed like overrides."""

import pytest

from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides, from_dict, resolve_recipe, to_dict


def _saved(**kw):
    return to_dict(apply_overrides(get_recipe("mdm-tiny"), [f"{k}={v}" for k, v in kw.items()]))


def test_resume_keeps_the_saved_steps():
    # issue 21.2: a run saved with steps=40, resumed with no overrides, must not rebuild the default 300 steps
    saved = _saved(steps=40, max_minutes=0.05)
    r = resolve_recipe("mdm-tiny", [], saved)
    assert r.steps == 40 and r.max_minutes == 0.05
    assert resolve_recipe(None, [], saved).steps == 40


def test_resume_overrides_change_only_the_keys_named():
    saved = _saved(steps=40, lr=0.002)
    r = resolve_recipe(None, ["max_minutes=0", "steps=60"], saved)
    assert (r.steps, r.max_minutes, r.lr) == (60, 0.0, 0.002)


@pytest.mark.parametrize("bad", ["preset=micro", "tokenizer=bpe:512", "seq_len=64", "lr=0.1"])
def test_resume_refuses_keys_that_cannot_change_mid_run(bad):
    with pytest.raises(ValueError, match=f"cannot resume with {bad.split('=')[0]} changed"):
        resolve_recipe(None, [bad], _saved(steps=40))


def test_resume_refuses_another_recipe_name():
    with pytest.raises(ValueError, match="trained with recipe 'mdm-tiny'"):
        resolve_recipe("mlm", [], _saved())


def test_new_run_is_the_registered_recipe_with_overrides():
    assert resolve_recipe("mdm-tiny", ["steps=7"], None).steps == 7
    with pytest.raises(ValueError, match="recipe"):
        resolve_recipe(None, [], None)


@pytest.mark.parametrize(
    "field, value, msg",
    [("seq_len", "banana", "seq_len='banana': expected int"), ("lr", [1], "lr"), ("steps", 2.5, "expected int")],
)
def test_saved_recipe_is_type_checked(field, value, msg):
    # issue 21.12: a wrongly typed field in masklab.json is one ValueError naming it, not a TypeError later
    saved = {**_saved(), field: value}
    with pytest.raises(ValueError, match=msg) as e:
        from_dict(saved)
    assert "\n" not in str(e.value)


def test_saved_json_values_round_trip():
    saved = _saved(steps=40, max_minutes=0)
    saved["max_minutes"] = 0  # JSON may store a float field as an int
    r = from_dict(saved)
    assert r.steps == 40 and isinstance(r.max_minutes, float)
