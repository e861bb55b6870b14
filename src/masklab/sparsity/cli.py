"""Prune a Hugging Face or masklab checkpoint folder to N:M and save it: ``masklab sparsify``.

    masklab sparsify --model DIR --method wanda --calib stdlib --out DIR_2of4

The model class is the checkpoint's ``config.architectures[0]`` from transformers (``AutoModel`` if absent).
The output folder is a ``save_pretrained`` folder with the tokenizer, an unchanged copy of ``masklab.json`` if
the input had one, and ``sparsity.json`` (the arguments and the per-layer report).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .apply import METHODS, sparsify_

CALIB_HELP = "calibration text: 'stdlib' (stdlib docstrings) or a .txt file with one text per line"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (save_pretrained layout)")
    parser.add_argument("--method", default="magnitude", choices=sorted(METHODS), help="pruning method")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=2, help="weights kept per group")
    parser.add_argument("--m", type=int, default=4, help="group size along the input dimension")
    parser.add_argument("--calib", default=None, help=CALIB_HELP)
    parser.add_argument("--calib-samples", type=int, default=64, help="number of calibration texts")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per calibration text")
    parser.add_argument("--batch-size", type=int, default=16, help="calibration batch size")
    parser.add_argument("--filter", default=None, help="regex on layer names (default: all Linear but heads)")
    parser.add_argument("--steps", type=int, default=100, help="MaskLLM training steps")
    parser.add_argument("--pad", action="store_true", help="pad input dims that m does not divide")


def load_checkpoint(folder: str | Path):
    """``(model, tokenizer_or_None)`` from a save_pretrained folder, offline."""
    import transformers

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint (config.json) in {folder}")
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    model = (cls or transformers.AutoModel).from_pretrained(folder, local_files_only=True)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError):
        tok = None
    return model, tok


def _calib_batches(args, tok, model=None):
    from .calib import stdlib_docstrings, tokenize_batches

    if args.calib is None:
        return None
    if tok is None:
        raise ValueError(f"checkpoint {args.model} has no tokenizer to encode --calib text")
    if args.calib == "stdlib":
        texts = stdlib_docstrings("train", limit=args.calib_samples)
    else:
        path = Path(args.calib)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file {path} does not exist")
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()][: args.calib_samples]
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or args.max_length
    return tokenize_batches(tok, texts, args.batch_size, min(args.max_length, limit))


def run(args: argparse.Namespace) -> int:
    model, tok = load_checkpoint(args.model)
    calib = _calib_batches(args, tok, model)
    options = {"pad": True} if args.pad else {}
    if args.method == "maskllm":
        options = {"steps": args.steps}
    report = sparsify_(model, args.method, args.n, args.m, calib=calib, filter=args.filter, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tok is not None:
        tok.save_pretrained(out)
    src_meta = Path(args.model) / "masklab.json"
    if src_meta.is_file():
        shutil.copyfile(src_meta, out / "masklab.json")
    record = {"args": {k: v for k, v in vars(args).items() if not callable(v)}, "report": report.to_dict()}
    (out / "sparsity.json").write_text(json.dumps(record, indent=2))
    print(report.table())
    print(f"saved {out}")
    return 0
