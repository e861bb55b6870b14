"""``masklab classify``: generative classification with the MLM head, scoring label words at a ``<mask>``."""

from __future__ import annotations

import json
from collections import Counter

from ._registry import COMMAND


def run(args) -> None:
    from masklab.data.stdlib_tasks import CLASSIFY_KEYWORDS as KEYWORDS
    from masklab.data.stdlib_tasks import keyword_task
    from masklab.sample.classify import classify, score_labels
    from masklab.train.checkpoint import load_masked_lm

    if (args.task is None) == (args.text is None):
        raise ValueError("give exactly one of --task or --text")
    model, tok = load_masked_lm(args.model)
    if args.text is not None:
        if not args.labels:
            raise ValueError("--text needs --labels a,b,c")
        labels = [w for w in args.labels.split(",") if w]
        scores = score_labels(model, tok, [args.text], labels, normalize=args.normalize)[0]
        for w, s in sorted(zip(labels, scores.tolist(), strict=True), key=lambda t: -t[1]):
            print(f"{s:9.4f}  {w}")
        return
    texts, gold = keyword_task(args.n, context=args.context, seed=args.seed)
    labels = [w for w in args.labels.split(",") if w] if args.labels else list(KEYWORDS)
    pred = classify(model, tok, texts, labels, normalize=args.normalize)
    acc = sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)
    majority, count = Counter(gold).most_common(1)[0]
    report = {
        "task": args.task,
        "examples": len(gold),
        "normalize": args.normalize,
        "accuracy": acc,
        "majority_class": majority,
        "majority_accuracy": count / len(gold),
    }
    print(json.dumps(report, indent=2))


@COMMAND.register("classify", "generative classification: score candidate label words at a <mask> slot")
def setup(p) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint folder of a masked LM")
    p.add_argument("--task", choices=["stdlib-keywords"], help="built-in evaluation (accuracy vs majority class)")
    p.add_argument("--text", help="text with one <mask> slot")
    p.add_argument("--labels", help="comma-separated candidate labels (default for --task: its label set)")
    p.add_argument("--n", type=int, default=300, help="examples for --task (default 300)")
    p.add_argument("--context", type=int, default=96, help="--task: characters of code each side of the slot")
    p.add_argument("--normalize", choices=["mean", "sum"], default="mean", help="per-token mean or total log-prob")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
