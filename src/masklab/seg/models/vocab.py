"""The word-level tokenizer of the canvas segmentation models: every piece of a referring expression, of Text4Seg
descriptors (R-RLE or plain) and of Text4Seg++ bricks is one token, and decoding is lossless.

Text is cut by one regular expression (a GPT-2-like split, one punctuation character at a time so that tags stay
whole): the tags ``<seg> </seg> <p> </p> <box> </box>``, a word or number with an optional leading space, one
punctuation character with an optional leading space, or a run of whitespace. For example

    "<seg>others *16| the 7 *1\\n others *16\\n</seg>"
    -> <seg> | others | " *" | 16 | "|" | " the" | " 7" | " *" | 1 | "\\n " | others | " *" | 16 | "\\n" | </seg>

so a run ``label *count`` costs (words of the label) + 2 tokens and a separator one, as with a real LLM tokenizer
whose merges keep ``" *"`` and small numbers whole. The vocabulary is enumerated from the canvas grammar
(:mod:`masklab.data.canvases`) and the numbers up to the image size, not learnt from data, so it is the same for
every run; a piece outside it is a ``ValueError`` naming it. The tokenizer is a Hugging Face
``PreTrainedTokenizerFast`` (``tokenizers`` WordLevel model, Split pre-tokenizer, Fuse decoder), saved with every
checkpoint.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from masklab.data.canvases import CATEGORIES

__all__ = ["SPLIT", "SPECIALS", "WORDS", "seg_tokenizer", "encode"]

SPLIT = r"\[SEG\]|</?seg>|</?p>|</?box>| ?\w+| ?[^\w\s]|\s+"  # one match = one token
TAGS = ("<seg>", "</seg>", "<p>", "</p>", "<box>", "</box>")
# pad first (id 0: the empty slot of a packed row); <image> fills the image positions, <mask> STAMP's mask
# tokens, [SEG] MLLMSeg's segmentation token
SPECIALS = ("<pad>", "<eos>", "<unk>", "<image>", "<mask>", "[SEG]")
# the words of the canvas referring expressions, the background label, and the brick cell labels 0/1 (numbers)
WORDS = ("the", "object", "largest", "smallest", "leftmost", "rightmost", "topmost", "bottommost", "left", "right",
         "of", "above", "below", "others", *CATEGORIES)  # fmt: skip
PUNCTUATION = ("*", "|", "[", "]", ",", ":", ".")
WHITESPACE = (" ", "\n", "\n ")


def _pieces(max_number: int) -> list[str]:
    words = list(dict.fromkeys([*WORDS, *(str(n) for n in range(max_number + 1)), *PUNCTUATION]))
    return [*TAGS, *words, *(" " + w for w in words), *WHITESPACE]


def seg_tokenizer(max_number: int = 64) -> PreTrainedTokenizerFast:
    """The tokenizer: specials (``<pad>`` = 0), tags, the grammar's words and the numbers 0..``max_number`` (run
    counts and box coordinates), each with and without a leading space, punctuation and whitespace."""
    if isinstance(max_number, bool) or not isinstance(max_number, int) or max_number < 1:
        raise ValueError(f"max_number must be a positive int, got {max_number!r}")
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*SPECIALS, *_pieces(max_number)]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT), behavior="isolated")
    tok.decoder = decoders.Fuse()  # concatenate the pieces: decode(encode(text)) == text
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        mask_token="<mask>",
        additional_special_tokens=["<image>", "[SEG]"],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 16,
    )


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text``; a piece outside the vocabulary is a ValueError naming it (never a silent <unk>)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    if unk in ids:
        pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        bad = [p for p, _ in pieces if tokenizer.convert_tokens_to_ids(p) == unk]
        raise ValueError(f"text has pieces outside the segmentation vocabulary: {bad[:5]} in {text[:60]!r}")
    return ids
