"""Prompts with placeholders anywhere, and the DIJA-style expansion to the model's native mask tokens."""

import pytest

from masklab.data.tokenizers import byte_tokenizer
from masklab.sample.infill import interleave, parse_prompt, red_team_prompt

TOK = byte_tokenizer()


def test_placeholders_expand_to_mask_ids_in_place():
    ids = parse_prompt("ab<mask:3>c<mask>", TOK)
    m = TOK.mask_token_id
    assert ids == TOK("ab", add_special_tokens=False)["input_ids"] + [m] * 3 + TOK("c", add_special_tokens=False)[
        "input_ids"
    ] + [m]


def test_red_team_prompt_gives_n_native_mask_tokens_per_placeholder():
    template = interleave("Explain the procedure.", ["Step 1:", "Step 2:"], span=5)
    assert template == "Explain the procedure.\nStep 1: <mask:5>\nStep 2: <mask:5>"
    text = red_team_prompt(template, TOK)
    assert TOK(text, add_special_tokens=False)["input_ids"].count(TOK.mask_token_id) == 10
    assert red_team_prompt("a <mask:2> b", mask_token="<|mdm_mask|>") == "a <|mdm_mask|><|mdm_mask|> b"


def test_a_template_without_placeholders_gets_dijas_36_masks_at_its_end():
    # DIJA's reference (run_harmbench/models/harmbench_*.py, process_prompt_instruct): DEFAULT_MASK_COUNTS = 36,
    # appended to the prompt when it holds no mask token
    text = red_team_prompt("Explain the procedure.", TOK)
    ids = TOK(text, add_special_tokens=False)["input_ids"]
    prompt = TOK("Explain the procedure.", add_special_tokens=False)["input_ids"]
    assert ids.count(TOK.mask_token_id) == 36
    assert ids == prompt + [TOK.mask_token_id] * 36  # all at the end, after the untouched prompt
    assert red_team_prompt("x", mask_token="<|mdm_mask|>") == "x" + "<|mdm_mask|>" * 36
    assert red_team_prompt("x", mask_token="<|mask|>", mask_counts=3) == "x<|mask|><|mask|><|mask|>"


def test_a_template_with_masks_gets_none_appended():
    template = interleave("Explain the procedure.", ["Step 1:"], span=4)
    text = red_team_prompt(template, TOK)
    assert text == "Explain the procedure.\nStep 1: " + "<mask>" * 4
    assert TOK(text, add_special_tokens=False)["input_ids"].count(TOK.mask_token_id) == 4
    # native mask text already in the template counts as a mask, as the reference's `MASK_TOKEN not in prompt`
    assert red_team_prompt("a <|mdm_mask|> b", mask_token="<|mdm_mask|>") == "a <|mdm_mask|> b"


@pytest.mark.parametrize("bad", [-1, 2.5, "36", True, None])
def test_a_bad_mask_count_is_refused_by_name(bad):
    """Not a count of masks: one ValueError naming ``mask_counts``, never Python's own error about ``str * x``."""
    with pytest.raises(ValueError, match="mask_counts must be >= 0 and an integer"):
        red_team_prompt("x", mask_token="<|mdm_mask|>", mask_counts=bad)


def test_bad_placeholders_are_refused():
    with pytest.raises(ValueError, match="<mask:0> asks for no tokens"):
        parse_prompt("x<mask:0>", TOK)
    with pytest.raises(ValueError, match="no mask placeholder"):
        parse_prompt("plain text", TOK)
    with pytest.raises(ValueError, match="no native mask token"):
        red_team_prompt("a <mask>")
    with pytest.raises(ValueError, match="no native mask token"):
        red_team_prompt("no placeholder")  # appending needs the native mask text too
    with pytest.raises(ValueError, match="mask_counts=0 appends none"):
        red_team_prompt("no placeholder", TOK, mask_counts=0)
    with pytest.raises(ValueError, match="mask_counts must be >= 0"):
        red_team_prompt("a <mask>", TOK, mask_counts=-1)
    with pytest.raises(ValueError, match="tokenized to"):
        red_team_prompt("a <mask:2>", TOK, mask_token="<not-a-special>")
